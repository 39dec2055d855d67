'use strict';
// Helpers for the reliability tests: figures written to
// build/reliability/*.json for tools/reliability-report, a counting webhook
// receiver that can go down, fail, hang or redirect, a load generator, store
// inspection through sqlite3 (python3's module or the sqlite3 CLI), and
// process probes (VmRSS, open descriptors).
//
// Soak mode (GENRELAY_SOAK=1, `make soak`) makes the tests bigger and longer;
// every wait stays bounded.

const { spawn, spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const h = require('./harness');
const { verifyStandardWebhook, secretKey } = require(path.join(h.SRC, 'examples', 'receiver.js'));

const SOAK = process.env.GENRELAY_SOAK === '1';
const TERMINAL = new Set(['succeeded', 'failed', 'canceled']);

// ---------------------------------------------------------------------------
// Figures

// build/reliability beside the binary under test (build/ or build-asan/).
function reportDir() {
  return process.env.GENRELAY_RELIABILITY_DIR || path.join(path.dirname(h.BIN), 'reliability');
}

// Writes {name, mode, binary, at, ...figures} to <dir>/<name>[.soak].json.
function report(name, figures) {
  const dir = reportDir();
  // The PostgreSQL runs of a suite keep figures of their own.
  if (process.env.GENRELAY_TEST_STORE === 'pg') name = `pg_${name}`;
  fs.mkdirSync(dir, { recursive: true });
  const rec = {
    name,
    mode: SOAK ? 'soak' : 'test',
    binary: path.relative(h.SRC, h.BIN),
    at: new Date().toISOString(),
    ...figures,
  };
  const file = path.join(dir, `${name}${SOAK ? '.soak' : ''}.json`);
  fs.writeFileSync(file, JSON.stringify(rec, null, 2) + '\n');
  process.stdout.write(`reliability ${name}: ${JSON.stringify(figures)}\n`);
  return rec;
}

// ---------------------------------------------------------------------------
// A webhook receiver in the test process, on a fixed port so it can go down
// and come back. Verifies Standard Webhooks signatures with the example
// receiver's verifier and keeps a compact record per delivery.

function startCountingReceiver({ secret = h.ACME.webhook_secret, secrets = {}, host = '127.0.0.1', port = 0 } = {}) {
  const keys = { default: secretKey(secret) };
  for (const [p, s] of Object.entries(secrets)) keys[p] = secretKey(s);
  const records = [];
  const seen = new Set();
  const byJob = new Map(); // job_id -> [record]
  let mode = 'ok'; // ok | fail | hang | redirect
  let modeArg = null;
  const hanging = new Set();
  const sockets = new Set();
  let server = null;

  function handler(req, res) {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      let body = null;
      try {
        body = JSON.parse(raw.toString('utf8'));
      } catch (e) {
        body = null;
      }
      const prefix = Object.keys(keys).find((p) => p !== 'default' && req.url.startsWith(p));
      const check = verifyStandardWebhook(req.headers, raw, keys[prefix || 'default']);
      const id = req.headers['webhook-id'] || null;
      const rec = {
        id,
        job_id: body && body.job_id,
        status: body && body.status,
        error: body && body.error ? body.error.code : null,
        path: req.url,
        verified: check.ok,
        duplicate: id !== null && seen.has(id),
        at: Date.now(),
        answered: null,
      };
      if (id !== null) seen.add(id);
      records.push(rec);
      if (rec.job_id) {
        if (!byJob.has(rec.job_id)) byJob.set(rec.job_id, []);
        byJob.get(rec.job_id).push(rec);
      }
      if (mode === 'hang') {
        hanging.add(res);
        res.on('close', () => hanging.delete(res));
        return;
      }
      if (mode === 'fail') {
        rec.answered = modeArg || 500;
        res.writeHead(rec.answered, { 'content-type': 'application/json' });
        return res.end('{"error":"failing on purpose"}');
      }
      if (mode === 'redirect') {
        rec.answered = 302;
        res.writeHead(302, { location: modeArg });
        return res.end();
      }
      rec.answered = check.ok ? 200 : 401;
      res.writeHead(rec.answered, { 'content-type': 'application/json' });
      res.end(check.ok ? '{"ok":true}' : JSON.stringify({ error: check.reason }));
    });
  }

  const r = {
    host,
    port,
    get url() {
      return `http://${host.includes(':') ? `[${host}]` : host}:${r.port}`;
    },
    records,
    byJob,
    // Deliveries answered 200 for job id.
    delivered: (jobId) => (byJob.get(jobId) || []).filter((x) => x.answered === 200),
    setMode(m, arg = null) {
      mode = m;
      modeArg = arg;
      if (m !== 'hang') for (const res of hanging) res.destroy();
    },
    listening: () => !!server,
    async start() {
      if (server) return;
      server = http.createServer(handler);
      server.keepAliveTimeout = 5000;
      server.requestTimeout = 0;
      server.on('connection', (s) => {
        sockets.add(s);
        s.on('close', () => sockets.delete(s));
      });
      await new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(r.port, host, () => {
          r.port = server.address().port;
          resolve();
        });
      });
    },
    // Goes down: the port refuses connections, open ones are cut.
    async stop() {
      if (!server) return;
      const s = server;
      server = null;
      for (const res of hanging) res.destroy();
      for (const sock of sockets) sock.destroy();
      await new Promise((resolve) => s.close(() => resolve()));
    },
    // Per-path summary: deliveries, distinct webhook-ids, duplicates.
    summary(prefix = '') {
      const recs = records.filter((x) => x.path.startsWith(prefix));
      return {
        deliveries: recs.length,
        ok: recs.filter((x) => x.answered === 200).length,
        duplicates: recs.filter((x) => x.duplicate && x.answered === 200).length,
        unverified: recs.filter((x) => !x.verified).length,
      };
    },
  };
  return r.start().then(() => r);
}

// A TCP port that accepts connections, reads what comes and never answers
// (a receiver that never answers at all). Returns {url, connections(), close()}.
function startBlackhole(host = '127.0.0.1') {
  const net = require('node:net');
  const socks = new Set();
  let accepted = 0;
  const srv = net.createServer((s) => {
    accepted++;
    socks.add(s);
    s.on('error', () => {});
    s.on('close', () => socks.delete(s));
    s.on('data', () => {}); // read and drop the request, never answer
  });
  return new Promise((resolve) => {
    srv.listen(0, host, () => {
      const { port } = srv.address();
      resolve({
        url: `http://${host}:${port}`,
        port,
        accepted: () => accepted,
        open: () => socks.size,
        close: () =>
          new Promise((r) => {
            for (const s of socks) s.destroy();
            srv.close(() => r());
          }),
      });
    });
  });
}

// ---------------------------------------------------------------------------
// Load

const MODELS = [
  'fal-ai/flux/dev',
  'krea:image/bfl/flux-1-dev',
  'abstrakt:fal-ai/flux/schnell',
  'modelslab:images/text2img',
  'artificialstudio:create-image',
];

// Submits one logical job, retrying (bounded) on connection errors and 503
// with the same Idempotency-Key, so a job whose 202 was lost in a crash is
// not submitted twice. Resolves {status, job_id, tries, body}.
async function submitReliably(getApi, model, payload, { key = crypto.randomUUID(), tries = 400, deadlineMs = 120000, stats } = {}) {
  const until = Date.now() + deadlineMs;
  let last = null;
  for (let i = 1; i <= tries && Date.now() < until; i++) {
    try {
      const r = await getApi()('POST', `/v1/models/${model}/run`, payload, { 'idempotency-key': key }, { timeoutMs: 15000 });
      last = r;
      if (r.status === 202 || r.status === 200) return { status: r.status, job_id: r.body.job_id, tries: i, body: r.body, key };
      if (r.status !== 503) return { status: r.status, job_id: null, tries: i, body: r.body, key };
    } catch (e) {
      last = e;
    }
    if (stats) stats.resubmits = (stats.resubmits || 0) + 1;
    await h.sleep(50 + Math.floor(Math.random() * 150));
  }
  return { status: 0, job_id: null, tries, body: null, key, error: String(last && (last.message || last.status)) };
}

// Runs fn(i) for i in [0, n) with `concurrency` workers.
async function pool(n, concurrency, fn) {
  let next = 0;
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= n) return;
      await fn(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker));
}

// ---------------------------------------------------------------------------
// The store, read from outside (never written here, except by the fault
// tests' ballast and lock holders).

function haveSqliteCli() {
  return spawnSync('sqlite3', ['-version'], { encoding: 'utf8' }).status === 0;
}
function havePython() {
  return spawnSync('python3', ['-c', 'import sqlite3'], { encoding: 'utf8' }).status === 0;
}

// Runs one SQL statement read-only against db; returns rows as objects.
function sqlRows(db, sql) {
  if (/^postgres(ql)?:\/\//.test(db)) return pgRows(db, sql);
  if (havePython()) {
    const py = [
      'import json,sqlite3,sys',
      'c=sqlite3.connect("file:"+sys.argv[1]+"?mode=ro",uri=True,timeout=10)',
      'c.row_factory=sqlite3.Row',
      'print(json.dumps([dict(r) for r in c.execute(sys.argv[2]).fetchall()]))',
    ].join('\n');
    const r = spawnSync('python3', ['-c', py, db, sql], { encoding: 'utf8', timeout: 30000, maxBuffer: 256 << 20 });
    if (r.status !== 0) throw new Error(`python3 sqlite3: ${r.stderr}`);
    return JSON.parse(r.stdout);
  }
  const r = spawnSync('sqlite3', ['-readonly', '-json', '-cmd', '.timeout 10000', db, sql], { encoding: 'utf8', timeout: 30000, maxBuffer: 256 << 20 });
  if (r.status !== 0) throw new Error(`sqlite3: ${r.stderr}`);
  return r.stdout.trim() ? JSON.parse(r.stdout) : [];
}

// The same through psql against a PostgreSQL store (GENRELAY_TEST_STORE=pg);
// SQLite's integrity_check stands for the server's own (always "ok" here).
function pgRows(url, sql) {
  if (/^\s*PRAGMA\s+integrity_check/i.test(sql)) return [{ integrity_check: 'ok' }];
  const wrapped = `SELECT coalesce(json_agg(t), '[]'::json) FROM (${sql}) t`;
  const r = spawnSync('psql', ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-d', url, '-c', wrapped], {
    encoding: 'utf8',
    timeout: 30000,
    maxBuffer: 256 << 20,
    env: { ...process.env, PGCONNECT_TIMEOUT: '10' },
  });
  if (r.status !== 0) throw new Error(`psql: ${r.stderr}`);
  return JSON.parse(r.stdout.trim() || '[]');
}

// Runs SQL that writes (the fault tests' ballast); returns stdout.
function sqlExec(db, sql) {
  if (havePython()) {
    const py = 'import sqlite3,sys\nc=sqlite3.connect(sys.argv[1],timeout=30,isolation_level=None)\nc.executescript(sys.argv[2])\nc.close()';
    const r = spawnSync('python3', ['-c', py, db, sql], { encoding: 'utf8', timeout: 60000 });
    if (r.status !== 0) throw new Error(`python3 sqlite3: ${r.stderr}`);
    return r.stdout;
  }
  const r = spawnSync('sqlite3', ['-cmd', '.timeout 30000', db, sql], { encoding: 'utf8', timeout: 60000 });
  if (r.status !== 0) throw new Error(`sqlite3: ${r.stderr}`);
  return r.stdout;
}

// Holds BEGIN EXCLUSIVE on db from another process until release().
// Resolves once the lock is taken.
function holdExclusiveLock(db) {
  let child;
  if (havePython()) {
    const py = [
      'import sqlite3,sys',
      'c=sqlite3.connect(sys.argv[1],timeout=30,isolation_level=None)',
      'c.execute("BEGIN EXCLUSIVE")',
      'print("locked",flush=True)',
      'sys.stdin.read()',
      'c.execute("ROLLBACK")',
      'print("released",flush=True)',
    ].join('\n');
    child = spawn('python3', ['-c', py, db], { stdio: ['pipe', 'pipe', 'pipe'] });
  } else {
    child = spawn('sqlite3', ['-cmd', '.timeout 30000', db], { stdio: ['pipe', 'pipe', 'pipe'] });
    child.stdin.write("BEGIN EXCLUSIVE;\nSELECT 'locked';\n");
  }
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const exited = new Promise((r) => child.on('close', r));
  return h
    .waitFor(() => {
      if (child.exitCode !== null) throw Object.assign(new Error(`lock holder exited: ${err}`), { fatal: true });
      return out.includes('locked');
    }, 30000, { what: 'BEGIN EXCLUSIVE taken' })
    .then(() => ({
      child,
      release: async () => {
        if (!havePython()) child.stdin.write('ROLLBACK;\n');
        child.stdin.end();
        const t = setTimeout(() => child.kill('SIGKILL'), 10000);
        await exited;
        clearTimeout(t);
      },
    }));
}

// Store invariants after a fault: PRAGMA integrity_check is "ok", every job
// has its work or its end (a live job has a submit/poll row; a terminal job
// with a webhook has a delivery; a pending delivery has a deliver row), and
// no work row points at a missing job. Returns {ok, problems[], counts}.
function storeConsistency(db) {
  const problems = [];
  const integrity = sqlRows(db, 'PRAGMA integrity_check').map((r) => Object.values(r)[0]);
  if (!(integrity.length === 1 && integrity[0] === 'ok')) problems.push(`integrity_check: ${integrity.slice(0, 5).join('; ')}`);
  const q = (label, sql) => {
    const rows = sqlRows(db, sql);
    if (rows.length) problems.push(`${label}: ${rows.length} (${JSON.stringify(rows.slice(0, 3))})`);
    return rows.length;
  };
  // status: 0 queued, 1 processing, 2 succeeded, 3 failed, 4 canceled
  q('live job without submit/poll work', 'SELECT id,status FROM jobs WHERE status<2 AND NOT EXISTS (SELECT 1 FROM work w WHERE w.job_id=jobs.id AND w.kind IN (1,2))');
  q('terminal job with webhook but no delivery', 'SELECT id FROM jobs WHERE status>=2 AND webhook_url IS NOT NULL AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.job_id=jobs.id)');
  q('terminal job still holding submit/poll work', 'SELECT job_id,kind FROM work WHERE kind IN (1,2) AND job_id IN (SELECT id FROM jobs WHERE status>=2)');
  q('pending delivery without deliver work', "SELECT id FROM deliveries WHERE status='pending' AND NOT EXISTS (SELECT 1 FROM work w WHERE w.kind=3 AND w.ref=deliveries.id)");
  q('work row of a missing job', 'SELECT id,job_id FROM work WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id=work.job_id)');
  q('delivery of a missing job', 'SELECT id FROM deliveries WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id=deliveries.job_id)');
  q('terminal job without completed_at', 'SELECT id FROM jobs WHERE status>=2 AND completed_at IS NULL');
  const counts = sqlRows(db, 'SELECT (SELECT count(*) FROM jobs) jobs, (SELECT count(*) FROM work) work, (SELECT count(*) FROM deliveries) deliveries')[0];
  return { ok: problems.length === 0, problems, counts, integrity: integrity.join(';') };
}

// ---------------------------------------------------------------------------
// Processes

function vmRssKb(pid) {
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch (e) {
    return null;
  }
}

// 1 when the process runs under AddressSanitizer (make test-asan): its
// allocator quarantine keeps freed memory resident, so memory bounds are
// looser there.
function sanitized(pid) {
  try {
    return /libasan|libclang_rt\.asan/.test(fs.readFileSync(`/proc/${pid}/maps`, 'utf8'));
  } catch (e) {
    return false;
  }
}

function openFds(pid) {
  try {
    return fs.readdirSync(`/proc/${pid}/fd`).length;
  } catch (e) {
    return null;
  }
}

// GET /v1/jobs/{id} for every id (bounded concurrency); returns Map id -> job|null.
async function fetchJobs(api, ids, concurrency = 16) {
  const out = new Map();
  await pool(ids.length, concurrency, async (i) => {
    const id = ids[i];
    try {
      const r = await api('GET', `/v1/jobs/${id}`);
      out.set(id, r.status === 200 ? r.body : null);
    } catch (e) {
      out.set(id, null);
    }
  });
  return out;
}

// Stops genrelay (SIGTERM) and everything else given (objects with stop()),
// always all of them, then throws if genrelay printed a sanitizer report.
// For after() hooks: a throw there must not leave servers running, or the
// test process never exits.
async function shutdown(gr, ...others) {
  let reports = [];
  if (gr) {
    try {
      await gr.stop();
      reports = await gr.sanitizerReports();
    } catch (e) {
      reports = [`stopping genrelay: ${e.message}`];
    }
  }
  for (const o of others) {
    if (!o) continue;
    try {
      await (typeof o === 'function' ? o() : o.stop());
    } catch (e) {
      /* best effort */
    }
  }
  if (reports.length) throw new Error(`genrelay printed a sanitizer report (files kept in ${gr.dir}):\n${reports.join('\n---\n')}`);
}

// Inside a describe(): one PostgreSQL (lib/pg.js), one provsim and one
// counting receiver for the file, started before its tests and stopped
// after them with every genrelay started through env.start (their
// sanitizer reports must be empty). env.server, env.sim and env.rcv are set
// once the before hook ran; env.newDb() makes a fresh database named after
// prefix.
function usePgInstances(prefix) {
  const { before, after } = require('node:test');
  const assert = require('node:assert/strict');
  const pg = require('./pg');
  const env = { server: null, sim: null, rcv: null, grs: [] };
  let seq = 0;
  env.newDb = () => env.server.createDb(`${prefix}_${process.pid}_${++seq}`);
  env.start = async (opts) => {
    const gr = await h.startGenrelay({ simUrl: env.sim.url, ...opts });
    env.grs.push(gr);
    return gr;
  };
  before(async () => {
    [env.server, env.sim, env.rcv] = await Promise.all([pg.start(), h.startProvsim(), startCountingReceiver()]);
  });
  after(async () => {
    for (const gr of env.grs) await gr.stop().catch(() => {});
    const reports = [];
    for (const gr of env.grs) reports.push(...(await gr.sanitizerReports()));
    await shutdown(null, env.rcv, env.sim);
    if (env.server) await env.server.destroy();
    assert.deepEqual(reports, [], 'sanitizer reports');
  });
  return env;
}

module.exports = {
  usePgInstances,
  shutdown,
  SOAK,
  TERMINAL,
  MODELS,
  report,
  reportDir,
  startCountingReceiver,
  startBlackhole,
  submitReliably,
  pool,
  sqlRows,
  sqlExec,
  holdExclusiveLock,
  storeConsistency,
  haveSqliteCli,
  havePython,
  vmRssKb,
  openFds,
  sanitized,
  fetchJobs,
};
