#!/usr/bin/env node
'use strict';
// The postgresql benchmark group: bench/postgresql.js [--smoke] [--seconds S] BUILD_DIR
//
// Runs bench/run's ingest and end-to-end groups on SQLite and on PostgreSQL
// in the same run (a server of its own: tests/e2e/lib/pg.js), then end to end
// on PostgreSQL with 1 and 5 ms of round-trip time added between genrelay and
// the database (tools/delayproxy.js), and with more workers at 5 ms (each
// worker has its own connection: the synchronous store's answer to latency).
// Each variant is `bench/run --only ... --out FILE` with GENRELAY_TEST_STORE=pg
// (and GENRELAY_TEST_PG_RTT_MS): the harness gives every genrelay of the run
// a database of its own on a PostgreSQL that run starts. Prints a table and writes
// bench/results/postgresql.json (--smoke: BUILD_DIR/bench/postgresql-smoke.json).
//
// Targets (from the issue; reported, met or not): PostgreSQL end to end >= 0.5
// of SQLite's; genrelay CPU per job on PostgreSQL <= 1.5x SQLite's; at 1 and
// 5 ms added RTT >= 0.7 of the 0 ms figure. genrelay_loop_stall_max_seconds
// (the longest loop iteration) is read from /metrics at the end of each run.

const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const pg = require('../tests/e2e/lib/pg');

const args = process.argv.slice(2);
const smoke = args.includes('--smoke');
const build = path.resolve(args.filter((a) => !a.startsWith('--')).pop() || 'build');
const SRC = path.resolve(__dirname, '..');

// store: null (SQLite) or the added RTT in ms for PostgreSQL (each genrelay
// of the run gets a database of its own on a server bench/run starts).
function runBench(only, rtt, extra, out) {
  const env = { ...process.env, GENRELAY_BENCH_CONFIG: JSON.stringify(extra) };
  delete env.GENRELAY_TEST_STORE;
  delete env.GENRELAY_TEST_PG_RTT_MS;
  if (rtt !== null) Object.assign(env, { GENRELAY_TEST_STORE: 'pg', GENRELAY_TEST_PG_RTT_MS: String(rtt) });
  const r = spawnSync(path.join(SRC, 'bench', 'run'), [...(smoke ? ['--smoke'] : []), '--only', only, '--out', out, build], {
    encoding: 'utf8',
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 64 << 20,
    timeout: 1800000,
  });
  process.stdout.write(r.stdout || '');
  try {
    return JSON.parse(fs.readFileSync(out, 'utf8'));
  } catch (e) {
    return { figures: [], failures: [`${only}: no result (${r.status})`] };
  }
}

function fig(res, key) {
  return (res.figures || []).find((f) => f.key === key) || null;
}

async function main() {
  if (!pg.available()) throw new Error('PostgreSQL binaries not found (tools/install-deps installs postgresql)');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'genrelay-bench-pg-'));
  const variants = [];
  let seq = 0;
  const run = (label, only, rtt, extra = {}) => {
    process.stdout.write(`\n== postgresql group: ${label}\n`);
    const res = runBench(only, rtt, extra, path.join(tmp, `${++seq}.json`));
    variants.push({ label, store: rtt === null ? 'sqlite' : 'postgresql', rtt_ms: rtt, extra, res });
    return res;
  };
  try {
    const sq = run('sqlite', 'ingest,e2e', null);
    const p0 = run('postgresql 0 ms', 'ingest,e2e', 0);
    const p1 = run('postgresql +1 ms RTT', 'e2e', 1);
    const p5 = run('postgresql +5 ms RTT', 'e2e', 5);
    const p5w = run('postgresql +5 ms RTT, 16 workers', 'e2e', 5, { workers: 16 });

    const e = (r) => (fig(r, 'e2e') || {}).value;
    const cpu = (r) => ((fig(r, 'e2e') || {}).detail || {}).cpu_us_per_job;
    const ing = (r) => (fig(r, 'ingest') || {}).value;
    const rows = [
      ['ingest jobs/s', ing(sq), ing(p0)],
      ['end to end jobs/s', e(sq), e(p0)],
      ['end to end CPU us/job', cpu(sq), cpu(p0)],
    ];
    const ratio = (a, b) => (typeof a === 'number' && typeof b === 'number' && b > 0 ? Math.round((a / b) * 100) / 100 : null);
    const summary = {
      mode: smoke ? 'smoke' : 'full',
      at: new Date().toISOString(),
      machine: { nproc: os.cpus().length, cpu: os.cpus()[0] && os.cpus()[0].model },
      sqlite: { ingest: ing(sq), e2e: e(sq), e2e_cpu_us_per_job: cpu(sq) },
      postgresql: { ingest: ing(p0), e2e: e(p0), e2e_cpu_us_per_job: cpu(p0) },
      rtt: { '0ms': e(p0), '1ms': e(p1), '5ms': e(p5), '5ms_16_workers': e(p5w) },
      targets: {
        e2e_pg_over_sqlite: { value: ratio(e(p0), e(sq)), target: '>= 0.5' },
        cpu_pg_over_sqlite: { value: ratio(cpu(p0), cpu(sq)), target: '<= 1.5' },
        rtt1_over_0: { value: ratio(e(p1), e(p0)), target: '>= 0.7' },
        rtt5_over_0: { value: ratio(e(p5), e(p0)), target: '>= 0.7' },
        rtt5_16_workers_over_0: { value: ratio(e(p5w), e(p0)), target: '>= 0.7' },
      },
      variants: variants.map((v) => ({ label: v.label, extra: v.extra, figures: v.res.figures, failures: v.res.failures })),
    };
    process.stdout.write('\npostgresql group\n');
    process.stdout.write(`| figure | SQLite | PostgreSQL |\n|---|---|---|\n${rows.map((r) => `| ${r[0]} | ${r[1] ?? '-'} | ${r[2] ?? '-'} |`).join('\n')}\n`);
    process.stdout.write(`end to end at added RTT: 0 ms ${e(p0)}, 1 ms ${e(p1)}, 5 ms ${e(p5)}, 5 ms with 16 workers ${e(p5w)} jobs/s\n`);
    process.stdout.write(`targets: ${JSON.stringify(summary.targets)}\n`);
    const out = smoke ? path.join(build, 'bench', 'postgresql-smoke.json') : path.join(SRC, 'bench', 'results', 'postgresql.json');
    fs.mkdirSync(path.dirname(out), { recursive: true });
    fs.writeFileSync(out, JSON.stringify(summary, null, 2) + '\n');
    process.stdout.write(`wrote ${out}\n`);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((e) => {
  process.stderr.write(`bench/postgresql.js: ${e.stack || e.message}\n`);
  process.exit(1);
});
