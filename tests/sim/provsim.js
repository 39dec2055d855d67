#!/usr/bin/env node
'use strict';
// provsim: a simulator of five AI media providers' real APIs, for genrelay's
// tests and benchmarks. No dependencies beyond Node.js (>= 18).
//
//   node tests/sim/provsim.js --listen 127.0.0.1:0 [--abstrakt-secret S]
//        [--abstrakt-timestamp] [--abstrakt-sync-ms 55000] [--max-jobs 200000]
//        [--callback-workers N]   (threads posting callbacks; default 1 with >= 4 CPUs, else 0)
//        [--time-scale F]         (multiplies the providers' callback retry delays; default 1)
//        [--modelslab-queue-limit N]  (ModelsLab answers 429 {status:"error",message,retry_after:30}
//                                      while N of its requests are queued; GET /_control/modelslab/queue)
//        [--strict-callbacks]     (Artificial Studio refuses http and private webhook URLs, ModelsLab http)
//
// Prints exactly one line, "provsim listening on http://127.0.0.1:PORT", then
// serves:
//   /fal/...               fal queue API            (providers/fal.js)
//   /krea/...              Krea API                 (providers/krea.js)
//   /modelslab/api/v6/...  ModelsLab v6             (providers/modelslab.js)
//   /artificialstudio/...  Artificial Studio        (providers/artificialstudio.js)
//   /abstrakt/...          abstrakt                 (providers/abstrakt.js)
//   /files/<id>.<ext>      output files (a 1x1 PNG, a tiny MP4 header, ...)
//   /_control/...          test control:
//       POST /_control/{provider}/down | up   make a whole surface answer 503
//       GET  /_control/requests[?provider=P]  inbound requests, newest last (max 10,000)
//       GET  /_control/callbacks[?provider=P] callbacks sent: {provider,url,ref,kind,attempt,status,error,at}
//       POST /_control/reset                  clear both logs, http_status counters, down switches
//
// Per-key behaviour: a credential whose value contains "sim-429" answers 429
// (Retry-After: 60) on every call, "sim-401" 401 and "sim-403" 403.
// POST /_control/keys/revoke {"key":"...","status":401|403} refuses one
// credential from then on (a key revoked while its jobs run); reset clears it.
//
// Tests steer each job with an optional `sim` object in the model input:
//   {"delay_ms":200, "outcome":"success|fail", "callback":"normal|none|duplicate|late|malformed",
//    "http_status":503, "http_times":1, "message":"failure text"}
// (see tests/sim/README.md).

const http = require('node:http');
const os = require('node:os');
const { Sim, makeContext } = require('./lib/common');

const PROVIDERS = ['fal', 'krea', 'modelslab', 'artificialstudio', 'abstrakt'];
const MAX_BODY = 16 * 1024 * 1024;

const PNG_1X1 = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=', 'base64');
const MP4_FTYP = Buffer.from('000000186674797069736f6d0000020069736f6d69736f32', 'hex');
const FILES = {
  png: ['image/png', PNG_1X1],
  mp4: ['video/mp4', MP4_FTYP],
  gif: ['image/gif', Buffer.from('R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7', 'base64')],
  mp3: ['audio/mpeg', Buffer.from('fffb9000', 'hex')],
};

function cpuCount() {
  return os.availableParallelism ? os.availableParallelism() : os.cpus().length;
}

function parseArgs(argv) {
  const o = {
    listen: '127.0.0.1:0',
    abstraktSecret: 'abstrakt-sim-secret',
    abstraktTimestamp: false,
    abstraktSyncMs: 55000,
    maxJobs: 200000,
    timeScale: 1,
    // Threads that post callbacks (0: the main thread does it). A thread
    // pays off only when there are cores to spare; env PROVSIM_CALLBACK_WORKERS
    // or --callback-workers override.
    callbackWorkers: process.env.PROVSIM_CALLBACK_WORKERS !== undefined ? Number(process.env.PROVSIM_CALLBACK_WORKERS) : cpuCount() >= 4 ? 1 : 0,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--listen') o.listen = val();
    else if (a === '--abstrakt-secret') o.abstraktSecret = val();
    else if (a === '--abstrakt-timestamp') o.abstraktTimestamp = true;
    else if (a === '--abstrakt-sync-ms') o.abstraktSyncMs = Number(val());
    else if (a === '--max-jobs') o.maxJobs = Number(val());
    else if (a === '--callback-workers') o.callbackWorkers = Number(val());
    else if (a === '--time-scale') {
      o.timeScale = Number(val());
      if (!(o.timeScale >= 0)) throw new Error('--time-scale wants a number >= 0');
    }
    else if (a === '--modelslab-queue-limit') o.modelslabQueueLimit = Number(val());
    else if (a === '--strict-callbacks') o.strictCallbacks = true;
    else if (a === '--help' || a === '-h') {
      process.stdout.write('usage: provsim.js --listen HOST:PORT [--abstrakt-secret S] [--abstrakt-timestamp] [--abstrakt-sync-ms MS] [--max-jobs N] [--callback-workers N] [--time-scale F] [--modelslab-queue-limit N] [--strict-callbacks]\n');
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  const m = /^\[?([^\]]*?)\]?:(\d+)$/.exec(o.listen);
  if (!m) throw new Error(`--listen wants HOST:PORT, got ${o.listen}`);
  o.host = m[1];
  o.port = Number(m[2]);
  return o;
}

function createProvsim(opts) {
  const sim = new Sim({
    jobCap: opts.maxJobs,
    callbackWorkers: opts.callbackWorkers,
    abstraktSecret: opts.abstraktSecret,
    abstraktTimestamp: opts.abstraktTimestamp,
    timeScale: opts.timeScale,
  });
  const providers = {
    fal: require('./providers/fal')(sim),
    krea: require('./providers/krea')(sim),
    modelslab: require('./providers/modelslab')(sim, { queueLimit: opts.modelslabQueueLimit || 0, strictCallbacks: !!opts.strictCallbacks }),
    artificialstudio: require('./providers/artificialstudio')(sim, { strictCallbacks: !!opts.strictCallbacks }),
    abstrakt: require('./providers/abstrakt')(sim, { syncMs: opts.abstraktSyncMs }),
  };

  function sendJson(res, status, obj) {
    const body = JSON.stringify(obj);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  }

  function control(req, res, segs, query, raw) {
    const m = req.method;
    if (m === 'GET' && segs[0] === 'requests' && segs.length === 1) {
      const p = query.provider;
      return sendJson(res, 200, sim.requests.list(p ? (r) => r.provider === p : null));
    }
    if (m === 'GET' && segs[0] === 'callbacks' && segs.length === 1) {
      const p = query.provider;
      return sendJson(res, 200, sim.callbacksLog.list(p ? (r) => r.provider === p : null));
    }
    if (m === 'GET' && segs[0] === 'modelslab' && segs[1] === 'queue' && segs.length === 2) {
      return sendJson(res, 200, providers.modelslab.queueStats());
    }
    if (m === 'POST' && segs[0] === 'keys' && segs[1] === 'revoke' && segs.length === 2) {
      let b = null;
      try {
        b = JSON.parse(raw ? raw.toString('utf8') : '');
      } catch (e) {
        /* answered below */
      }
      const status = b && (b.status === undefined ? 401 : b.status);
      if (!b || typeof b.key !== 'string' || !b.key || (status !== 401 && status !== 403)) return sendJson(res, 400, { error: 'body: {"key":"...","status":401|403}' });
      revoked.set(b.key, status);
      return sendJson(res, 200, { revoked: revoked.size });
    }
    if (m === 'POST' && segs[0] === 'reset' && segs.length === 1) {
      revoked.clear();
      sim.reset();
      return sendJson(res, 200, { ok: true });
    }
    if (m === 'POST' && segs.length === 2 && providers[segs[0]] && (segs[1] === 'down' || segs[1] === 'up')) {
      if (segs[1] === 'down') sim.down.add(segs[0]);
      else sim.down.delete(segs[0]);
      return sendJson(res, 200, { provider: segs[0], down: sim.down.has(segs[0]) });
    }
    sendJson(res, 404, { error: 'unknown control call' });
  }

  function files(req, res, name) {
    const ext = (/\.([a-z0-9]+)$/.exec(name) || [])[1];
    const f = FILES[ext];
    if (!f || (req.method !== 'GET' && req.method !== 'HEAD')) return sendJson(res, 404, { error: 'not found' });
    res.writeHead(200, { 'content-type': f[0], 'content-length': f[1].length });
    res.end(req.method === 'HEAD' ? undefined : f[1]);
  }

  // sim.per_provider.NAME overrides the steering for that provider only (an
  // alias sends the same input to each of its targets).
  function applyPerProvider(json, provider) {
    const steer = json && typeof json === 'object' && (json.sim || (json.input && json.input.sim));
    const own = steer && steer.per_provider && steer.per_provider[provider];
    if (own && typeof own === 'object') Object.assign(steer, own);
  }

  const revoked = new Map(); // credential -> status, from /_control/keys/revoke

  function keyBehaviour(headers, json) {
    const auth = String(headers.authorization || '').replace(/^\S+\s+/, '');
    const creds = [auth, String(headers['x-api-key'] || ''), json && typeof json === 'object' && typeof json.key === 'string' ? json.key : ''];
    for (const c of creds) if (c && revoked.has(c)) return revoked.get(c);
    const m = /sim-(429|401|403)/.exec(creds.join(' '));
    return m ? Number(m[1]) : 0;
  }

  function route(req, res, raw) {
    const url = req.url;
    const q = url.indexOf('?');
    let path = q < 0 ? url : url.slice(0, q);
    const query = q < 0 ? {} : Object.fromEntries(new URLSearchParams(url.slice(q + 1)));
    try {
      path = decodeURIComponent(path);
    } catch (e) {
      /* keep it raw */
    }
    const slash = path.indexOf('/', 1);
    const first = slash < 0 ? path.slice(1) : path.slice(1, slash);
    const rest = slash < 0 ? '/' : path.slice(slash);

    if (first === '_control') return control(req, res, rest.split('/').filter(Boolean), query, raw);
    if (first === 'files') return files(req, res, rest);
    const prov = providers[first];
    if (!prov) return sendJson(res, 404, { error: `no provider surface at /${first}` });

    const ctx = makeContext(req, res, { path: rest, query, raw });
    applyPerProvider(ctx.json, first);
    sim.requests.push({
      provider: first,
      method: req.method,
      path,
      query,
      headers: req.headers,
      body: ctx.jsonError ? raw.toString('utf8') : ctx.json === undefined ? null : ctx.json,
      at: Date.now(),
    });
    // The JWKS lives on another fal host in reality; it stays up.
    const exempt = first === 'fal' && rest === '/.well-known/jwks.json';
    if (sim.down.has(first) && !exempt) {
      const e = prov.error(503, 'Service temporarily unavailable (provsim: surface is down)');
      return ctx.send(503, e.body, Object.assign({ 'retry-after': '1' }, e.headers));
    }
    // Per-key behaviour, steered by the credential's value (Authorization
    // after its scheme, X-Api-Key, or a body `key`): one containing
    // "sim-429" is rate-limited (429, Retry-After: 60), "sim-401" /
    // "sim-403" is refused, on every call.
    const keyStatus = keyBehaviour(req.headers, ctx.json);
    if (keyStatus) {
      const e = prov.error(keyStatus, keyStatus === 429 ? 'Rate limit exceeded for this key (provsim)' : 'Invalid API key (provsim)');
      return ctx.send(keyStatus, e.body, Object.assign(keyStatus === 429 ? { 'retry-after': '60' } : {}, e.headers));
    }
    try {
      prov.handle(ctx);
    } catch (err) {
      process.stderr.write(`provsim: ${first} handler error: ${err.stack}\n`);
      if (!res.headersSent) {
        const e = prov.error(500, 'provsim internal error');
        ctx.send(500, e.body, e.headers);
      }
    }
  }

  const server = http.createServer((req, res) => {
    const chunks = [];
    let size = 0;
    let tooBig = false;
    req.on('data', (c) => {
      size += c.length;
      if (size > MAX_BODY) tooBig = true;
      else chunks.push(c);
    });
    req.on('end', () => {
      if (tooBig) return sendJson(res, 413, { error: 'body too large' });
      route(req, res, chunks.length === 1 ? chunks[0] : Buffer.concat(chunks));
    });
    req.on('error', () => res.destroy());
  });
  server.keepAliveTimeout = 30000;
  server.headersTimeout = 35000;

  return { sim, server, providers };
}

function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`provsim: ${e.message}\n`);
    process.exit(2);
  }
  const { sim, server } = createProvsim(opts);
  server.on('error', (e) => {
    process.stderr.write(`provsim: ${e.message}\n`);
    process.exit(1);
  });
  server.listen(opts.port, opts.host, () => {
    const addr = server.address();
    const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
    sim.baseUrl = `http://${host}:${addr.port}`;
    process.stdout.write(`provsim listening on ${sim.baseUrl}\n`);
  });
  const stop = () => {
    sim.close();
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

module.exports = { createProvsim, parseArgs, PROVIDERS };

if (require.main === module) main();
