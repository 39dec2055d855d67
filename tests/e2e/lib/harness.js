'use strict';
// Helpers for genrelay's end-to-end tests (node:test).
//
//   const h = require('./lib/harness');
//   const stack = h.useStack({ config: { jobs: { poll_after_s: 2 } } }); // before/after hooks
//   test('...', async () => {
//     const r = await stack.api('POST', '/v1/models/fal-ai/flux/dev/run', { input: {...} });
//   });
//
// Everything that waits is bounded; every child process is killed by
// stack.close() (registered with after()) and, as a last resort, when the
// test process exits.

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { after, before } = require('node:test');
const pg = require('./pg');

const REPO = path.resolve(__dirname, '..', '..', '..');
const SRC = process.env.GENRELAY_SRC || REPO;
const BIN = process.env.GENRELAY_BIN || path.join(SRC, 'build', 'genrelay');
const PROVSIM = path.join(SRC, 'tests', 'sim', 'provsim.js');
const RECEIVER = path.join(SRC, 'examples', 'receiver.js');

const ACME = { name: 'acme', api_key: 'acme-key', webhook_secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw' };
// The admin key of the test config: the admin surfaces (GET /v1/scripts).
const ADMIN_KEY = 'admin-key-0123456789abcdef';
const GLOBEX = { name: 'globex', api_key: 'globex-key', webhook_secret: 'whsec_Z2xvYmV4LXRlc3Qtc2VjcmV0LTAxMjM0NTY3ODk=' };
// Every test genrelay also has a metrics token (/metrics takes it or the admin key).
const METRICS_TOKEN = 'metrics-test-token-0123456789';

// ---------------------------------------------------------------------------
// Small utilities

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Polls fn (sync or async) until it returns a truthy value, which is
// returned. Throws after timeoutMs with the last value or error in the
// message. An exception in fn counts as "not yet", unless it has e.fatal set.
async function waitFor(fn, timeoutMs = 10000, { interval = 50, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  let lastErr;
  for (let i = 0; ; i++) {
    try {
      last = await fn();
      lastErr = undefined;
      if (last) return last;
    } catch (e) {
      if (e && e.fatal) throw e; // fn says waiting is pointless
      lastErr = e;
    }
    if (Date.now() >= deadline) break;
    await sleep(Math.min(interval, Math.max(1, deadline - Date.now())));
  }
  const detail = lastErr ? `last error: ${lastErr.message}` : `last value: ${safeJson(last)}`;
  throw new Error(`waitFor(${what}) timed out after ${timeoutMs} ms; ${detail}`);
}

function safeJson(v) {
  try {
    const s = JSON.stringify(v);
    return s && s.length > 500 ? s.slice(0, 500) + '...' : s;
  } catch (e) {
    return String(v);
  }
}

// A port that was free a moment ago (bind port 0, read it, close).
function freePort(host = '127.0.0.1') {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, host, () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// One HTTP request. body: undefined (none), string/Buffer (sent as is) or
// any other value (sent as JSON). Resolves {status, headers, text, body}
// where body is the parsed JSON or null. Bounded by timeoutMs. A response
// that arrives before the request body is fully written (e.g. an early 413)
// is still returned.
function request(url, { method = 'GET', headers = {}, body, timeoutMs = 30000 } = {}) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const h = {};
    for (const [k, v] of Object.entries(headers)) if (v !== null && v !== undefined) h[k.toLowerCase()] = v;
    let payload = null;
    if (body !== undefined) {
      if (typeof body === 'string' || Buffer.isBuffer(body)) payload = Buffer.from(body);
      else {
        payload = Buffer.from(JSON.stringify(body));
        if (!h['content-type']) h['content-type'] = 'application/json';
      }
      h['content-length'] = String(payload.length);
    }
    let done = false;
    let gotResponse = false;
    const finish = (fn, v) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      fn(v);
    };
    const req = http.request(u, { method, headers: h, agent: false }, (res) => {
      gotResponse = true;
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed = null;
        try {
          parsed = text ? JSON.parse(text) : null;
        } catch (e) {
          parsed = null;
        }
        const answer = { status: res.statusCode, headers: res.headers, text, body: parsed };
        const undocumented = checkAnswer(method, u, answer);
        if (undocumented) finish(reject, undocumented);
        else finish(resolve, answer);
      });
      res.on('error', (e) => finish(reject, e));
    });
    const timer = setTimeout(() => {
      req.destroy();
      finish(reject, new Error(`${method} ${url} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    req.on('error', (e) => {
      // EPIPE/ECONNRESET while still writing a body the server refused:
      // the response may be on its way or already parsed.
      if (gotResponse) return;
      setTimeout(() => finish(reject, e), 200);
    });
    if (payload) req.end(payload);
    else req.end();
  });
}

// ---------------------------------------------------------------------------
// Every answer of a genrelay started here is checked against
// docs/openapi.yaml (lib/openapi.js): one the document does not describe
// rejects the request with a fatal error (waitFor does not retry it), and is
// remembered, so that stack.close() and the process exit fail too even when a
// test swallowed the error. GENRELAY_OPENAPI_VALIDATE=0 turns it off.

const API_ORIGINS = new Set(); // origins of the genrelays started by this process
const undocumentedAnswers = [];
const VALIDATE = process.env.GENRELAY_OPENAPI_VALIDATE !== '0';

function checkAnswer(method, u, answer) {
  if (!VALIDATE || !API_ORIGINS.has(u.origin)) return null;
  const why = require('./openapi').checkResponse(method, u.pathname + u.search, answer.status, answer.headers, answer.text);
  if (!why) return null;
  const e = new Error(`answer not described by docs/openapi.yaml: ${method} ${(u.pathname + u.search).slice(0, 200)} -> ${why}`);
  e.fatal = true;
  e.answer = answer;
  undocumentedAnswers.push(e.message);
  return e;
}

function assertAnswersDocumented() {
  if (undocumentedAnswers.length) throw new Error(`${undocumentedAnswers.length} answer(s) not described by docs/openapi.yaml:\n${undocumentedAnswers.slice(0, 10).join('\n')}`);
}

process.on('exit', () => {
  if (undocumentedAnswers.length) {
    process.stderr.write(`\n${undocumentedAnswers.length} answer(s) not described by docs/openapi.yaml:\n${undocumentedAnswers.slice(0, 20).join('\n')}\n`);
    process.exitCode = 1;
  }
});

// ---------------------------------------------------------------------------
// JS value -> Lua literal, and config merging

const LUA_EXPR = Symbol('lua');
// A raw Lua expression to embed in the config, e.g. lua('os.getenv("FAL_KEY")').
function lua(expr) {
  return { [LUA_EXPR]: expr };
}

const LUA_KEYWORDS = new Set('and break do else elseif end false for function goto if in local nil not or repeat return then true until while'.split(' '));

function luaString(s) {
  // Pure-ASCII output: quotes, backslashes, control bytes and every byte of
  // a non-ASCII character become escapes (\ddd is always 3 digits, so a
  // following digit cannot be swallowed).
  let out = '"';
  for (const b of Buffer.from(String(s), 'utf8')) {
    if (b === 0x22) out += '\\"';
    else if (b === 0x5c) out += '\\\\';
    else if (b === 0x0a) out += '\\n';
    else if (b < 0x20 || b >= 0x7f) out += '\\' + String(b).padStart(3, '0');
    else out += String.fromCharCode(b);
  }
  return out + '"';
}

// Renders a JS value as a Lua literal: null/undefined -> nil, arrays ->
// sequences, plain objects -> tables with ["key"] = value (identifier keys bare).
function toLua(v, indent = '') {
  if (v === null || v === undefined) return 'nil';
  if (typeof v === 'object' && v[LUA_EXPR] !== undefined) return v[LUA_EXPR];
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new Error(`cannot render ${v} in Lua`);
    return String(v);
  }
  if (typeof v === 'string') return luaString(v);
  const inner = indent + '  ';
  if (Array.isArray(v)) {
    if (!v.length) return '{}';
    return '{\n' + v.map((x) => inner + toLua(x, inner) + ',\n').join('') + indent + '}';
  }
  if (typeof v === 'object') {
    const keys = Object.keys(v).filter((k) => v[k] !== undefined && v[k] !== null);
    if (!keys.length) return '{}';
    return (
      '{\n' +
      keys
        .map((k) => {
          const key = /^[A-Za-z_][A-Za-z0-9_]*$/.test(k) && !LUA_KEYWORDS.has(k) ? k : `[${luaString(k)}]`;
          return `${inner}${key} = ${toLua(v[k], inner)},\n`;
        })
        .join('') +
      indent +
      '}'
    );
  }
  throw new Error(`cannot render ${typeof v} in Lua`);
}

// The config file: one global assignment per top-level key, as DESIGN.md shows.
function renderConfig(cfg) {
  const lines = ['-- written by tests/e2e/lib/harness.js'];
  for (const [k, v] of Object.entries(cfg)) {
    if (v === undefined || v === null) continue;
    lines.push(`${k} = ${toLua(v)}`);
  }
  return lines.join('\n') + '\n';
}

function isPlainObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && v[LUA_EXPR] === undefined && !Buffer.isBuffer(v);
}

// Deep merge: plain objects merge key by key; arrays and scalars replace;
// a null in `over` deletes the key.
function deepMerge(base, over) {
  if (!isPlainObject(base) || !isPlainObject(over)) return over === undefined ? base : over;
  const out = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (v === null) delete out[k];
    else if (v === undefined) continue;
    else out[k] = isPlainObject(v) && isPlainObject(out[k]) ? deepMerge(out[k], v) : v;
  }
  return out;
}

// The test configuration (DESIGN.md "Configuration") for genrelay on `port`
// with its files in `dir` and providers at provsim `simUrl`.
function defaultConfig({ port, dir, simUrl }) {
  const addr = `127.0.0.1:${port}`;
  return {
    listen: addr,
    public_url: `http://${addr}`,
    store: `sqlite:${path.join(dir, 'genrelay.db')}`,
    scripts: path.join(SRC, 'scripts'),
    admin_key: ADMIN_KEY,
    metrics_token: METRICS_TOKEN,
    providers: {
      fal: { base_url: `${simUrl}/fal`, key: 'fal-test-key', jwks_url: `${simUrl}/fal/.well-known/jwks.json` },
      krea: { base_url: `${simUrl}/krea`, key: 'krea-test-key' },
      // provsim takes http loopback callbacks (unless --strict-callbacks), so the
      // adapters' callback_requires is lifted; no ModelsLab queue cap in tests.
      modelslab: { base_url: `${simUrl}/modelslab/api/v6`, key: 'modelslab-test-key', callback_requires: false, max_inflight: 0 },
      artificialstudio: { base_url: `${simUrl}/artificialstudio`, key: 'artificialstudio-test-key', callback_requires: false },
      abstrakt: { base_url: `${simUrl}/abstrakt`, key: 'abstrakt-test-key', webhook_secret: 'abstrakt-sim-secret' },
    },
    customers: {
      acme: { api_key: ACME.api_key, webhook_secret: ACME.webhook_secret },
      globex: { api_key: GLOBEX.api_key, webhook_secret: GLOBEX.webhook_secret },
    },
    webhooks: { retry: [0.2, 0.4, 0.8], timeout_s: 2, require_https: false, allow_private: true },
    jobs: { poll_after_s: 1, poll_interval_s: 0.3, submit_window_s: 10, job_deadline_s: 30 },
  };
}

// ---------------------------------------------------------------------------
// Child processes

const children = new Set();
process.on('exit', () => {
  for (const c of children) {
    try {
      c.kill('SIGKILL');
    } catch (e) {
      /* already gone */
    }
  }
});

// Spawns a process and waits (bounded) for a stdout line matching re.
// Returns {child, match, log()}; log() gives the output seen so far.
function spawnAndWait(cmd, args, { re, timeoutMs = 10000, cwd, env, logFile } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env: env || process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    const out = [];
    let outLen = 0;
    const file = logFile ? fs.createWriteStream(logFile, { flags: 'a' }) : null;
    const log = () => out.join('');
    let stdoutBuf = '';
    let settled = false;
    const settle = (fn, v) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      fn(v);
    };
    const keep = (s) => {
      out.push(s);
      outLen += s.length;
      while (outLen > 200000 && out.length > 1) outLen -= out.shift().length;
      if (file) file.write(s);
    };
    child.stdout.on('data', (d) => {
      const s = d.toString();
      keep(s);
      if (!re || settled) return;
      stdoutBuf += s;
      const m = re.exec(stdoutBuf);
      if (m) settle(resolve, { child, match: m, log });
    });
    child.stderr.on('data', (d) => keep(d.toString()));
    child.on('error', (e) => settle(reject, new Error(`${cmd}: ${e.message}`)));
    // The log file ends on 'close' (all output read), not on 'exit': a
    // sanitizer report written at exit may still be in the pipe then.
    child.on('close', () => {
      if (file) file.end();
    });
    child.on('exit', (code, sig) => {
      children.delete(child);
      settle(reject, new Error(`${path.basename(cmd)} ${args.join(' ')} exited (${code ?? sig}) before it was ready:\n${tail(log())}`));
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      settle(reject, new Error(`${path.basename(cmd)} not ready within ${timeoutMs} ms:\n${tail(log())}`));
    }, timeoutMs);
    if (!re) settle(resolve, { child, match: null, log });
  });
}

// Waits (bounded) until a child's stdout and stderr are fully read.
function waitClosed(child, timeoutMs = 10000) {
  if (child.exitCode === null && child.signalCode === null) return Promise.resolve(false);
  if (child.stdout && child.stdout.readableEnded && child.stderr && child.stderr.readableEnded) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    child.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

// What AddressSanitizer, LeakSanitizer and UndefinedBehaviorSanitizer print
// (make test-asan): any of it in genrelay's output fails the test.
const SANITIZER_RE = /AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:|ThreadSanitizer|MemorySanitizer/;

// The sanitizer report in text (from the first matching line), or null.
function sanitizerReport(text) {
  const m = SANITIZER_RE.exec(text || '');
  if (!m) return null;
  const start = text.lastIndexOf('\n', m.index) + 1;
  return text.slice(start, start + 4000);
}

function tail(s, lines = 40) {
  return s.split('\n').slice(-lines).join('\n');
}

// Sends sig and waits (bounded) for the exit; SIGKILL after timeoutMs.
// Resolves {code, signal}. The default outlasts genrelay's own drain on
// SIGTERM (up to 10 s of in-flight steps, then leases released and the
// store closed), so a loaded machine never turns a clean exit into a kill.
function stopChild(child, sig = 'SIGTERM', timeoutMs = 30000) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve({ code: child.exitCode, signal: child.signalCode });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal });
    });
    child.kill(sig);
  });
}

// ---------------------------------------------------------------------------
// provsim

async function startProvsim({ args = [] } = {}) {
  const { child, match, log } = await spawnAndWait(process.execPath, [PROVSIM, '--listen', '127.0.0.1:0', ...args], {
    re: /^provsim listening on (http:\/\/\S+)$/m,
  });
  const url = match[1];
  const ctl = async (method, p, body) => {
    const r = await request(url + p, { method, body });
    if (r.status !== 200) throw new Error(`provsim ${method} ${p}: ${r.status} ${r.text}`);
    return r.body;
  };
  return {
    url,
    child,
    log,
    // Inbound requests provsim recorded ({provider, method, path, query, headers, body, at}), oldest first.
    requests: (provider) => ctl('GET', '/_control/requests' + (provider ? `?provider=${provider}` : '')),
    // Callbacks provsim posted ({provider, url, ref, kind, attempt, status, error, at}).
    callbacks: (provider) => ctl('GET', '/_control/callbacks' + (provider ? `?provider=${provider}` : '')),
    reset: () => ctl('POST', '/_control/reset'),
    down: (provider) => ctl('POST', `/_control/${provider}/down`),
    up: (provider) => ctl('POST', `/_control/${provider}/up`),
    // Refuses one credential (401 or 403) on every call from now on.
    revokeKey: (key, status = 401) => ctl('POST', '/_control/keys/revoke', { key, status }),
    stop: () => stopChild(child),
  };
}

// ---------------------------------------------------------------------------
// receiver (examples/receiver.js)

async function startReceiver({ secret = ACME.webhook_secret } = {}) {
  const { child, match, log } = await spawnAndWait(process.execPath, [RECEIVER, '--listen', '127.0.0.1:0', '--secret', secret], {
    re: /^receiver listening on (http:\/\/\S+)$/m,
  });
  const url = match[1];
  const ctl = async (p, body) => {
    const r = await request(url + p, { method: 'POST', body });
    if (r.status !== 200) throw new Error(`receiver ${p}: ${r.status} ${r.text}`);
    return r.body;
  };
  const received = async () => (await request(url + '/_received')).body;
  return {
    url,
    child,
    log,
    // Every delivery: [{id, timestamp, verified, reason, duplicate, headers, body, path, at, answered}].
    received,
    // Deliveries whose body.job_id is jobId.
    forJob: async (jobId) => (await received()).filter((d) => d.body && d.body.job_id === jobId),
    // Deliveries to paths starting with prefix.
    forPath: async (prefix) => (await received()).filter((d) => d.path.startsWith(prefix)),
    fail: (count, status = 500, pathPrefix) => ctl('/_control/fail', { count, status, path: pathPrefix }),
    hang: (count, pathPrefix) => ctl('/_control/hang', { count, path: pathPrefix }),
    reset: () => ctl('/_control/reset', {}),
    stop: () => stopChild(child),
  };
}

// ---------------------------------------------------------------------------
// genrelay

// The SQLite file of a store spec ("sqlite:PATH" or { url = ... }), or the
// PostgreSQL URL itself.
function storeFile(store) {
  const spec = store && typeof store === 'object' ? store.url : store;
  if (typeof spec !== 'string') return null;
  return spec.startsWith('sqlite:') ? spec.slice(7) : spec;
}

// Starts genrelay with the default test config deep-merged with `config`
// (an object, or a function (defaults) => config). Files go to a fresh temp
// dir (or `dir`); args are added to `serve` (e.g. ['--role', 'api']).
// Resolves once GET /healthz answers 200 (bounded by readyMs).
async function startGenrelay({ simUrl, config, dir, readyMs = 10000, env, args = [] } = {}) {
  if (!fs.existsSync(BIN)) throw new Error(`genrelay binary not found at ${BIN} (set GENRELAY_BIN)`);
  dir = dir || fs.mkdtempSync(path.join(os.tmpdir(), 'genrelay-e2e-'));
  const port = await freePort();
  const base = defaultConfig({ port, dir, simUrl: simUrl || 'http://127.0.0.1:9' });
  // GENRELAY_TEST_STORE=pg: the store is a database of its own on the test
  // file's PostgreSQL (lib/pg.js), the same one again for the same dir.
  if (pg.enabled()) base.store = await pg.dbForDir(dir);
  const cfg = typeof config === 'function' ? config(base) : deepMerge(base, config || {});
  const configPath = path.join(dir, 'genrelay.conf.lua');
  fs.writeFileSync(configPath, renderConfig(cfg));
  const url = cfg.public_url || `http://${cfg.listen}`;
  API_ORIGINS.add(new URL(url).origin);
  const logFile = path.join(dir, 'genrelay.log');

  let proc = null;
  const launches = []; // every process started, for the sanitizer check
  async function launch() {
    const p = await spawnAndWait(BIN, ['serve', '--config', configPath, ...args], { cwd: dir, env: Object.assign({}, process.env, env || {}), logFile });
    proc = p;
    launches.push(p);
    const healthy = () =>
      request(url + '/healthz', { timeoutMs: 1000 }).then(
        (r) => r.status === 200,
        () => false,
      );
    try {
      await waitFor(
        async () => {
          if (p.child.exitCode !== null || p.child.signalCode !== null) {
            throw Object.assign(new Error(`genrelay exited (${p.child.exitCode ?? p.child.signalCode})`), { fatal: true });
          }
          return healthy();
        },
        readyMs,
        { interval: 50, what: 'genrelay /healthz' },
      );
    } catch (e) {
      await stopChild(p.child, 'SIGKILL');
      throw new Error(`genrelay did not become healthy at ${url}: ${e.message}\n--- genrelay output ---\n${tail(p.log())}`);
    }
  }
  await launch();

  const defaultKey = ACME.api_key;
  const api = makeApi(url, defaultKey);
  const gr = {
    url,
    port,
    dir,
    configPath,
    config: cfg,
    // The SQLite file, or (GENRELAY_TEST_STORE=pg) the database's URL, which
    // reliability.js's store readers take as well.
    dbPath: storeFile(cfg.store),
    api,
    // api bound to another customer's key (or null for none).
    as: (key) => makeApi(url, key),
    // api bound to the admin key (admin surfaces such as GET /v1/scripts).
    admin: makeApi(url, cfg.admin_key || ADMIN_KEY),
    get child() {
      return proc && proc.child;
    },
    log: () => (proc ? proc.log() : ''),
    logTail: (n) => tail(proc ? proc.log() : '', n),
    running: () => !!proc && proc.child.exitCode === null && proc.child.signalCode === null,
    // Sends sig (default SIGTERM) and waits for the exit: {code, signal}.
    kill: (sig = 'SIGTERM') => (proc ? stopChild(proc.child, sig) : Promise.resolve(null)),
    // Stops it if running (SIGTERM), then starts it again on the same
    // config, port and database; resolves once healthy.
    restart: async () => {
      if (gr.running()) await stopChild(proc.child, 'SIGTERM');
      await launch();
    },
    stop: async () => {
      if (gr.running()) return stopChild(proc.child, 'SIGTERM');
      return null;
    },
    // Sanitizer reports (ASan, LSan, UBSan) in the output of every process
    // this gr started, once their output is fully read: [text...].
    sanitizerReports: async () => {
      const found = [];
      for (const p of launches) {
        await waitClosed(p.child);
        const rep = sanitizerReport(p.log());
        if (rep) found.push(rep);
      }
      return found;
    },
    // Throws when any of them printed a sanitizer report (call after stop()).
    assertNoSanitizerReport: async () => {
      const found = await gr.sanitizerReports();
      if (found.length) {
        throw new Error(`genrelay printed a sanitizer report (files in ${dir}):\n${found.join('\n---\n')}`);
      }
    },
  };
  return gr;
}

// api(method, path, body, headers, {timeoutMs}) against genrelay with
// `Authorization: Bearer <key>`; a header given as null is left out (so
// {authorization: null} sends no key). Resolves {status, headers, text, body}.
function makeApi(url, key) {
  return (method, p, body, headers = {}, opts = {}) => {
    const h = { accept: 'application/json' };
    if (key) h.authorization = `Bearer ${key}`;
    for (const [k, v] of Object.entries(headers)) h[k.toLowerCase()] = v;
    return request(url + p, { method, headers: h, body, timeoutMs: opts.timeoutMs || 30000 });
  };
}

// ---------------------------------------------------------------------------
// The whole stack: provsim + receiver + genrelay.

async function startStack({ config, provsimArgs, receiverSecret, genrelay = true } = {}) {
  const stack = { sim: null, receiver: null, gr: null };
  stack.close = async () => {
    const keep = process.env.GENRELAY_E2E_KEEP;
    await Promise.all([stack.gr && stack.gr.stop(), stack.sim && stack.sim.stop(), stack.receiver && stack.receiver.stop()].filter(Boolean));
    // A sanitizer report in genrelay's output fails the suite (make test-asan).
    const reports = stack.gr ? await stack.gr.sanitizerReports() : [];
    if (stack.gr && !keep && !reports.length) fs.rmSync(stack.gr.dir, { recursive: true, force: true });
    else if (stack.gr) process.stderr.write(`genrelay e2e files kept in ${stack.gr.dir}\n`);
    if (reports.length) throw new Error(`genrelay printed a sanitizer report:\n${reports.join('\n---\n')}`);
    assertAnswersDocumented();
  };
  try {
    [stack.sim, stack.receiver] = await Promise.all([startProvsim({ args: provsimArgs }), startReceiver({ secret: receiverSecret })]);
    if (genrelay) stack.gr = await startGenrelay({ simUrl: stack.sim.url, config });
  } catch (e) {
    await stack.close();
    throw e;
  }
  stack.api = stack.gr ? stack.gr.api : null;
  return stack;
}

// Registers before/after hooks in the current suite (or file) that start a
// stack and always close it. Returns an object whose fields (sim, receiver,
// gr, api) are filled in once `before` ran.
function useStack(opts = {}) {
  const holder = {};
  before(async () => {
    const s = await startStack(opts);
    Object.assign(holder, s);
  });
  after(async () => {
    if (holder.close) await holder.close();
  });
  return holder;
}

// ---------------------------------------------------------------------------
// Job helpers shared by the e2e files: bound to a stack (from useStack or
// startStack), resolved lazily so they work before the stack has started.

const TERMINAL = new Set(['succeeded', 'failed', 'canceled']);

function jobHelpers(stack) {
  const assert = require('node:assert/strict');
  async function getJob(id, api = stack.api) {
    const r = await api('GET', `/v1/jobs/${id}`);
    assert.equal(r.status, 200, r.text);
    return r.body;
  }
  function waitTerminal(id, ms = 20000) {
    return waitFor(async () => {
      const j = await getJob(id);
      return TERMINAL.has(j.status) && j;
    }, ms, { what: `job ${id} terminal`, interval: 100 });
  }
  // Waits until the receiver answered 200 to n deliveries of the job.
  function waitDelivered(id, n = 1, ms = 20000) {
    return waitFor(async () => {
      const all = await stack.receiver.forJob(id);
      return all.filter((d) => d.answered === 200).length >= n && all;
    }, ms, { what: `${n} delivery(ies) of ${id}`, interval: 100 });
  }
  return { getJob, waitTerminal, waitDelivered };
}

module.exports = {
  REPO,
  SRC,
  BIN,
  ACME,
  GLOBEX,
  ADMIN_KEY,
  METRICS_TOKEN,
  sleep,
  waitFor,
  freePort,
  request,
  lua,
  toLua,
  renderConfig,
  deepMerge,
  defaultConfig,
  startProvsim,
  startReceiver,
  startGenrelay,
  startStack,
  useStack,
  stopChild,
  spawnAndWait,
  waitClosed,
  sanitizerReport,
  TERMINAL,
  jobHelpers,
  checkAnswer,
  assertAnswersDocumented,
};
