#!/usr/bin/env node
'use strict';
// Where a PostgreSQL job's time goes: N fal jobs end to end (provsim,
// Ed25519-signed callbacks, webhooks to bench_receiver) on a fresh
// PostgreSQL (tests/e2e/lib/pg.js), then per job: genrelay's round trips
// and CPU, the postgres backends' CPU, commits (pg_stat_database), WAL
// (pg_stat_wal) and row writes per table (pg_stat_user_tables, with the
// share of updates that were HOT).
//
//   node bench/pgprofile.js BUILD_DIR [--jobs N] [--conc C] [--workers W]
//        [--rtt MS] [--perf DIR] [--callgrind FILE] [--json FILE]
//
// --perf DIR: `perf record -g` on genrelay and on the backends while the
// jobs run (DIR/genrelay.data, DIR/postgres.data, and their top symbols
// printed). --callgrind FILE: genrelay under callgrind (instruction counts
// repeat from run to run; read with callgrind_annotate --inclusive=yes).
// --statements: log_min_duration_statement=0 while the jobs run, then the
// statements per job and their server time (execute phase), by statement
// (the logging itself costs the server time: leave it out of CPU figures).

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');

const args = process.argv.slice(2);
const opt = (name, d) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : d;
};
const build = path.resolve(args.find((a, i) => !a.startsWith('--') && (i === 0 || !args[i - 1].startsWith('--'))) || 'build');
const N = Number(opt('--jobs', '1000'));
const CONC = Number(opt('--conc', '32'));
const WORKERS = opt('--workers', '1');
const RTT = Number(opt('--rtt', '0'));
const perfDir = opt('--perf', null);
const cgOut = opt('--callgrind', null);
const jsonOut = opt('--json', null);
const statements = args.includes('--statements');

process.env.GENRELAY_TEST_STORE = 'pg';
if (RTT > 0) process.env.GENRELAY_TEST_PG_RTT_MS = String(RTT);
process.env.GENRELAY_SRC = process.env.GENRELAY_SRC || path.resolve(__dirname, '..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'genrelay-pgprofile-'));
if (cgOut) {
  const wrapper = path.join(tmp, 'genrelay-callgrind');
  fs.writeFileSync(wrapper, `#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file=${path.resolve(cgOut)} ${path.join(build, 'genrelay')} "$@"\n`);
  fs.chmodSync(wrapper, 0o755);
  process.env.GENRELAY_BIN = wrapper;
} else {
  process.env.GENRELAY_BIN = process.env.GENRELAY_BIN || path.join(build, 'genrelay');
}
const h = require('../tests/e2e/lib/harness');
const pg = require('../tests/e2e/lib/pg');
const P = require('./lib/procs');

// utime+stime of a process (clock ticks), 0 when gone.
function ticks(pid) {
  try {
    const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return Number(f[11]) + Number(f[12]);
  } catch (e) {
    return 0;
  }
}
const HZ = 100;

async function snapshot(server, db) {
  const q = async (sql) => (await server.sql(sql, db)).trim();
  const [commits, rollbacks] = (await q(`SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname='${db}'`)).split('|').map(Number);
  const [walRecords, walBytes] = (await q('SELECT wal_records, wal_bytes FROM pg_stat_wal')).split('|').map(Number);
  const tables = {};
  for (const line of (await q('SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del FROM pg_stat_user_tables')).split('\n')) {
    if (!line) continue;
    const [t, ins, upd, hot, del] = line.split('|');
    tables[t] = { ins: +ins, upd: +upd, hot: +hot, del: +del };
  }
  const pids = (await q(`SELECT pid FROM pg_stat_activity WHERE datname='${db}' AND pid<>pg_backend_pid()`)).split('\n').filter(Boolean).map(Number);
  return { commits, rollbacks, walRecords, walBytes, tables, pids };
}

function perfStart(pids, file) {
  const c = spawn('perf', ['record', '-g', '-F', '499', '-o', file, '-p', pids.join(',')], { stdio: ['ignore', 'ignore', 'pipe'] });
  return c;
}

function perfTop(file, n = 25) {
  const r = spawnSync('perf', ['report', '-i', file, '--no-children', '--sort', 'dso,sym', '--stdio', '-g', 'none', '--percent-limit', '0.7'], { encoding: 'utf8', maxBuffer: 1 << 26 });
  return r.stdout.split('\n').filter((l) => /^\s+\d/.test(l)).slice(0, n).join('\n');
}

async function main() {
  const server = await pg.shared();
  const recv = await P.startReceiver(build, { secret: h.ACME.webhook_secret });
  const sim = await h.startProvsim({ args: ['--callback-workers', '0'] });
  const gr = await h.startGenrelay({
    config: {
      workers: /^\d+$/.test(WORKERS) ? Number(WORKERS) : WORKERS,
      providers: { fal: { base_url: `${sim.url}/fal`, jwks_url: `${sim.url}/fal/.well-known/jwks.json` } },
      webhooks: { retry: [1, 2, 5], timeout_s: 10, require_https: false, allow_private: true },
      jobs: { poll_after_s: 60, poll_interval_s: 5, submit_window_s: 120, job_deadline_s: 900 },
    },
    readyMs: 180000,
  });
  const db = new URL(gr.config.store).pathname.slice(1);
  const out = {};
  try {
    await h.sleep(cgOut ? 3000 : 500); // fal's JWKS, fetched at start
    const body = JSON.stringify({
      input: { prompt: 'a lighthouse on a cliff at dusk, long exposure', image_size: 'landscape_4_3', num_images: 1, seed: 42, sim: { delay_ms: 100 } },
      webhook_url: `${recv.url}/hook/acme`, track_id: 'pgprofile',
    });
    const run = () => h.request(gr.url + '/v1/models/fal-ai/flux/dev/run', { method: 'POST', headers: { authorization: `Bearer ${h.ACME.api_key}`, 'content-type': 'application/json' }, body, timeoutMs: 60000 });
    // Warm: a few jobs so that connections, statements and JWKS are there.
    await Promise.all([0, 1, 2, 3].map(run));
    await h.waitFor(async () => (await recv.stats()).verified >= 4, 120000, { what: 'warm-up webhooks' });
    const base = (await recv.stats()).verified;
    const m0 = await P.metrics(gr.url);
    const s0 = await snapshot(server, db);
    let logFrom = 0;
    if (statements) {
      logFrom = server.log().length;
      await server.sql("ALTER SYSTEM SET log_min_duration_statement = 0");
      await server.sql("SELECT pg_reload_conf()");
      await h.sleep(300);
    }
    const grPid = gr.child.pid;
    const pgPids = s0.pids;
    const t0 = { gr: ticks(grPid), pg: pgPids.map(ticks) };
    let perfs = [];
    if (perfDir) {
      fs.mkdirSync(perfDir, { recursive: true });
      perfs = [perfStart([grPid], path.join(perfDir, 'genrelay.data')), perfStart(pgPids, path.join(perfDir, 'postgres.data'))];
      await h.sleep(300);
    }
    const start = Date.now();
    let sent = 0;
    let bad = 0;
    await Promise.all(Array.from({ length: CONC }, async () => {
      while (sent < N) {
        sent++;
        const r = await run();
        if (r.status !== 202) bad++;
      }
    }));
    const ingestMs = Date.now() - start;
    await h.waitFor(async () => (await recv.stats()).verified >= base + N, 300000, { interval: 100, what: `${N} webhooks` });
    const wallMs = Date.now() - start;
    for (const p of perfs) p.kill('SIGINT');
    await Promise.all(perfs.map((p) => new Promise((res) => (p.exitCode !== null ? res() : p.on('exit', res)))));
    const t1 = { gr: ticks(grPid), pg: pgPids.map(ticks) };
    if (statements) {
      await server.sql("ALTER SYSTEM RESET log_min_duration_statement");
      await server.sql("SELECT pg_reload_conf()");
      const by = new Map();
      const re = /duration: ([\d.]+) ms {2}(parse|bind|execute) ([^:]*): (.*)$/;
      for (const line of server.log().slice(logFrom).split('\n')) {
        const m = re.exec(line);
        if (!m) continue;
        const key = m[4].replace(/\s+/g, ' ').slice(0, 70);
        const e = by.get(key) || { n: 0, ms: 0, parse_bind_ms: 0 };
        if (m[2] === 'execute') {
          e.n++;
          e.ms += Number(m[1]);
        } else {
          e.parse_bind_ms += Number(m[1]);
        }
        by.set(key, e);
      }
      out.statements = [...by.entries()].sort((a, b) => b[1].ms + b[1].parse_bind_ms - a[1].ms - a[1].parse_bind_ms)
        .map(([k, e]) => ({ statement: k, per_job: Math.round((e.n / N) * 100) / 100, exec_us_per_job: Math.round((e.ms * 1000) / N), parse_bind_us_per_job: Math.round((e.parse_bind_ms * 1000) / N) }));
    }
    // Idle backends report their table and WAL counts within 10 s (PG 15).
    await h.sleep(11000);
    const s1 = await snapshot(server, db);
    const m1 = await P.metrics(gr.url);
    const per = (x) => Math.round((x / N) * 100) / 100;
    const d = (k) => (m1[k] || 0) - (m0[k] || 0);
    out.jobs = N;
    out.workers = WORKERS;
    out.rtt_ms = RTT;
    out.not_202 = bad;
    out.end_to_end_jobs_s = Math.round(N / (wallMs / 1000));
    out.ingest_ms = ingestMs;
    out.round_trips_per_job = per(d('genrelay_store_round_trips_total'));
    out.genrelay_cpu_us_per_job = Math.round(((t1.gr - t0.gr) / HZ / N) * 1e6);
    out.postgres_cpu_us_per_job = Math.round((t1.pg.reduce((a, b) => a + b, 0) - t0.pg.reduce((a, b) => a + b, 0)) / HZ / N * 1e6);
    out.commits_per_job = per(s1.commits - s0.commits);
    out.rollbacks_per_job = per(s1.rollbacks - s0.rollbacks);
    out.wal_records_per_job = per(s1.walRecords - s0.walRecords);
    out.wal_bytes_per_job = Math.round((s1.walBytes - s0.walBytes) / N);
    out.tables = {};
    for (const [t, v] of Object.entries(s1.tables)) {
      const b = s0.tables[t] || { ins: 0, upd: 0, hot: 0, del: 0 };
      const upd = v.upd - b.upd;
      const row = { ins: per(v.ins - b.ins), upd: per(upd), hot_share: upd ? Math.round(((v.hot - b.hot) / upd) * 100) / 100 : null, del: per(v.del - b.del) };
      if (row.ins || row.upd || row.del) out.tables[t] = row;
    }
    out.loop_stall_max_s = m1.genrelay_loop_stall_max_seconds;
    out.store_errors = d('genrelay_store_errors_total');
    const log = gr.log();
    out.log_warnings = (log.match(/\bWARN|warn\b/g) || []).length;
    out.log_sample = log.split('\n').filter((l) => /warn|error/i.test(l)).slice(0, 5);
  } finally {
    await gr.stop();
    await sim.stop();
    await recv.stop();
  }
  process.stdout.write(JSON.stringify(out, null, 1) + '\n');
  if (jsonOut) fs.writeFileSync(jsonOut, JSON.stringify(out, null, 1) + '\n');
  if (perfDir) {
    process.stdout.write(`--- genrelay (perf, self) ---\n${perfTop(path.join(perfDir, 'genrelay.data'))}\n`);
    process.stdout.write(`--- postgres backends (perf, self) ---\n${perfTop(path.join(perfDir, 'postgres.data'))}\n`);
  }
  fs.rmSync(tmp, { recursive: true, force: true });
  process.exit(0);
}

main().catch((e) => {
  process.stderr.write(`pgprofile: ${e.stack || e}\n`);
  process.exit(1);
});
