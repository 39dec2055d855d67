#!/usr/bin/env node
'use strict';
// genrelay's benchmark suite (`make bench` runs `bench/run build`).
//
//   bench/run [--smoke] [--only LIST] [--profile DIR] [--out FILE] BUILD_DIR
//
// Each figure is measured side by side with the ceiling it is compared
// against, in the same run (alternating rounds where that helps), and
// reported as an absolute number and a ratio. Prints a table and writes
// bench/results/latest.json (--smoke: BUILD_DIR/bench/smoke.json; --only:
// bench/results/only-GROUPS.json).
//
// --smoke  every figure at a tiny scale, no thresholds; exits 1 when a
//          figure is missing or not a number (the bench_smoke ctest).
// --only   comma-separated groups: ingest (ingest, ingest fsync), reload,
//          delivery, e2e, latency, script, scale (memory, lookup at scale),
//          postgresql (bench/postgresql.js; in a full run, not in --smoke).
// --profile DIR  also records `perf record --call-graph dwarf` of genrelay
//          during the ingest, reload, delivery and end-to-end runs into DIR
//          (summarise with bench/perf-summary.js).
//
// Environment: GENRELAY_BENCH_CONFIG (JSON merged into every genrelay
// config), GENRELAY_BENCH_CALLBACK_WORKERS (provsim --callback-workers,
// default 0), GENRELAY_BENCH_KEEP=1 (keep the temporary directory).
//
// Load only ever targets 127.0.0.1; every load generator is bounded in
// count and time. See bench/README.md for the method of every figure.

const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const SRC = path.resolve(__dirname, '..');

function usage(msg) {
  if (msg) process.stderr.write(`bench: ${msg}\n`);
  process.stderr.write('usage: bench/run [--smoke] [--only ingest,reload,delivery,e2e,latency,script,scale,paths,postgresql] [--profile DIR] [--out FILE] BUILD_DIR\n');
  process.exit(2);
}

const GROUPS = ['ingest', 'reload', 'delivery', 'e2e', 'latency', 'script', 'scale', 'paths', 'postgresql'];
const opts = { smoke: false, only: null, build: null, profile: null, out: null };
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  if (a === '--smoke') opts.smoke = true;
  else if (a === '--only') opts.only = (process.argv[++i] || '').split(',').filter(Boolean);
  else if (a === '--profile') opts.profile = path.resolve(process.argv[++i] || usage('--profile needs a dir'));
  else if (a === '--out') opts.out = path.resolve(process.argv[++i] || usage('--out needs a file'));
  else if (a === '-h' || a === '--help') usage();
  else if (a.startsWith('-')) usage(`unknown option ${a}`);
  else if (!opts.build) opts.build = path.resolve(a);
  else usage(`unexpected argument ${a}`);
}
if (!opts.build) usage('BUILD_DIR is required');
for (const g of opts.only || []) if (!GROUPS.includes(g)) usage(`unknown group ${g}`);

for (const bin of ['genrelay', 'bench/bench_ceiling', 'bench/bench_receiver', 'bench/bench_storegen', 'bench/bench_scriptcost', 'bench/bench_parts', 'bench/libgenrelay_rowcount.so']) {
  if (!fs.existsSync(path.join(opts.build, bin))) usage(`${path.join(opts.build, bin)} is missing: build first (cmake --build ${opts.build})`);
}

// The run uses a snapshot of the genrelay binary, so that a rebuild during
// the run neither mixes two builds nor leaves perf without symbols (with
// --profile the snapshot stays beside the perf data).
const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'genrelay-bench-'));
const BUILT_BIN = process.env.GENRELAY_BIN || path.join(opts.build, 'genrelay');
if (opts.profile) fs.mkdirSync(opts.profile, { recursive: true });
const RUN_BIN = path.join(opts.profile || tmpRoot, 'genrelay');
fs.copyFileSync(BUILT_BIN, RUN_BIN);
fs.chmodSync(RUN_BIN, 0o755);

// harness.js reads these when it loads.
process.env.GENRELAY_BIN = RUN_BIN;
process.env.GENRELAY_SRC = process.env.GENRELAY_SRC || SRC;
const h = require('../tests/e2e/lib/harness');
const P = require('./lib/procs');

// ---------------------------------------------------------------------------
// Scale of each measurement: full and smoke.

const FULL = {
  ingest: { rounds: 3, seconds: 5, connections: 32, warmup: true, diagnostic: true },
  reload: { rounds: 3, seconds: 8, rewrites: 10, warmup: true },
  delivery: { jobs: 60000, ceilingSeconds: 4, connections: 64, warmup: true },
  e2e: { seconds: 65, warmup: 5, maxRate: 8000, window: 3000, delayMs: 100, ceilingSeconds: 15, connections: 64 },
  latency: { rate: 1000, seconds: 8, warmup: 1, delayMs: 50, settleMs: 1500, lowRate: 100, lowSeconds: 4 },
  script: { iterations: 20000, rounds: 5 },
  scale: { bigJobs: 1000000, bigWaiting: 100000, smallJobs: 1000, smallWaiting: 100, rounds: 3, seconds: 5, rate: 2000, warmup: 2, burst: 2 },
  paths: {
    workers: [1, 2], ingestSeconds: 5, connections: 32, cbRate: 2000, cbSeconds: 5, cbMarginS: 4, deliveryJobs: 30000, e2eSeconds: 15, e2eWindow: 3000, e2eMaxRate: 8000,
    partSeconds: 3, curlRequests: 30000, sqlJobs: 20000, luaIterations: 10000, cryptoIterations: 5000, hookCeilingSeconds: 3,
  },
};
const SMOKE = {
  ingest: { rounds: 1, seconds: 1, connections: 16, warmup: false, diagnostic: false },
  reload: { rounds: 1, seconds: 2, rewrites: 10, warmup: false },
  delivery: { jobs: 1500, ceilingSeconds: 1, connections: 16, warmup: false },
  e2e: { seconds: 3, warmup: 0.5, maxRate: 2000, window: 1000, delayMs: 20, ceilingSeconds: 1, connections: 16 },
  latency: { rate: 200, seconds: 1, warmup: 0.3, delayMs: 20, settleMs: 500 },
  script: { iterations: 1500, rounds: 3 },
  scale: { bigJobs: 20000, bigWaiting: 2000, smallJobs: 1000, smallWaiting: 100, rounds: 1, seconds: 1, rate: 1000, warmup: 0, burst: 1 },
  paths: {
    workers: [1, 2], ingestSeconds: 1, connections: 16, cbRate: 300, cbSeconds: 1, cbMarginS: 1.5, deliveryJobs: 1000, e2eSeconds: 2, e2eWindow: 1000, e2eMaxRate: 2000,
    partSeconds: 1, curlRequests: 2000, sqlJobs: 2000, luaIterations: 1000, cryptoIterations: 500, hookCeilingSeconds: 1,
  },
};
const S = opts.smoke ? SMOKE : FULL;

const ACME = h.ACME;
const MODEL_PATH = '/v1/models/fal-ai/flux/dev/run';
const PROMPT = 'a lighthouse on a cliff at dusk, long exposure, waves crashing below, volumetric light, 35mm film';

// ---------------------------------------------------------------------------
// Output helpers

const t0 = Date.now();
function progress(msg) {
  const s = Math.floor((Date.now() - t0) / 1000);
  process.stdout.write(`  [${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}] ${msg}\n`);
}

const fmt = (v, digits = 0) =>
  typeof v === 'number' && Number.isFinite(v) ? v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : String(v);
const median = (xs) => {
  const a = xs.filter((x) => Number.isFinite(x)).sort((x, y) => x - y);
  if (!a.length) return NaN;
  return a.length % 2 ? a[(a.length - 1) / 2] : (a[a.length / 2 - 1] + a[a.length / 2]) / 2;
};
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
function percentile(sorted, p) {
  if (!sorted.length) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}
const monoNs = () => process.hrtime.bigint();
const round = (x, d = 3) => (Number.isFinite(x) ? Math.round(x * 10 ** d) / 10 ** d : x);

// Calls fn every ms while the promise p is pending; resolves p's value.
async function during(p, ms, fn) {
  const timer = setInterval(() => {
    Promise.resolve()
      .then(fn)
      .catch(() => {});
  }, ms);
  try {
    return await p;
  } finally {
    clearInterval(timer);
  }
}

const figures = [];
const failures = [];
// Adds one line of the table. value/ceiling are numbers; ratio is
// value/ceiling unless given; pass is null in smoke runs.
function figure(f) {
  if (f.ratio === undefined) f.ratio = f.value / f.ceiling;
  f.value = round(f.value);
  f.ceiling = round(f.ceiling);
  f.ratio = round(f.ratio);
  if (opts.smoke) f.pass = null;
  figures.push(f);
  const mark = f.pass === null || f.pass === undefined ? '' : f.pass ? ' PASS' : ' MISS';
  progress(`${f.name}: ${fmt(f.value, f.digits || 0)} ${f.unit} vs ${fmt(f.ceiling, f.digits || 0)} ${f.ceiling_unit} (${f.ceiling_label}) = ${fmt(f.ratio, 2)}${mark}`);
}

// ---------------------------------------------------------------------------
// Shared pieces

const cleanups = [];
async function cleanup() {
  for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => {});
  cleanups.length = 0;
  if (!process.env.GENRELAY_BENCH_KEEP) fs.rmSync(tmpRoot, { recursive: true, force: true });
}

function tmpFile(name, text) {
  const p = path.join(tmpRoot, name);
  fs.writeFileSync(p, text);
  return p;
}

// A run request body: ~200 bytes of input, webhook_url, track_id.
function runBody(webhookUrl, sim) {
  const input = { prompt: PROMPT, image_size: 'landscape_4_3', num_inference_steps: 28, guidance_scale: 3.5, num_images: 1, seed: 42 };
  if (sim) input.sim = sim;
  return JSON.stringify({ input, webhook_url: webhookUrl, track_id: 'bench-order-000001' });
}

// Config over the harness defaults: fal at base (a provsim or the receiver's
// /fal stub), long poll delays (callbacks, or nothing, are expected), and
// webhook settings that do not retry within a run.
function benchConfig(falBase, extra = {}) {
  return h.deepMerge(
    {
      providers: { fal: { base_url: falBase, jwks_url: `${falBase}/.well-known/jwks.json` } },
      webhooks: { retry: [1, 2, 5, 10, 30], timeout_s: 10, require_https: false, allow_private: true },
      jobs: { poll_after_s: 60, poll_interval_s: 5, submit_window_s: 120, job_deadline_s: 900 },
    },
    extra,
  );
}

// GENRELAY_BENCH_CONFIG: JSON merged into every genrelay config of the run
// (to try a knob, e.g. '{"limits":{"max_inflight":256}}').
const CONFIG_OVERRIDE = process.env.GENRELAY_BENCH_CONFIG ? JSON.parse(process.env.GENRELAY_BENCH_CONFIG) : null;

async function startGenrelay(config, dir, env) {
  if (CONFIG_OVERRIDE) config = h.deepMerge(config, CONFIG_OVERRIDE);
  const gr = await h.startGenrelay({ config, dir, readyMs: 60000, env });
  cleanups.push(() => gr.stop());
  return gr;
}

async function startReceiver(countFile) {
  const r = await P.startReceiver(opts.build, { secret: ACME.webhook_secret, countFile });
  cleanups.push(() => r.stop());
  return r;
}

async function startProvsim(args = []) {
  const s = await h.startProvsim({ args });
  cleanups.push(() => s.stop());
  return s;
}

// A provider that accepts connections and never reads or answers, stopped
// with the rest.
async function blackhole() {
  const hole = await P.blackhole();
  cleanups.push(hole.stop);
  return { url: hole.url };
}

async function stopAll() {
  for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => {});
  cleanups.length = 0;
}

async function maybeProfile(gr, seconds, name) {
  if (!opts.profile) return null;
  fs.mkdirSync(opts.profile, { recursive: true });
  return P.perfRecord(gr.child.pid, seconds, path.join(opts.profile, `${name}.perf.data`));
}

// ---------------------------------------------------------------------------
// ingest and ingest with durability = "fsync", against the bare MHD ceiling

async function benchIngest() {
  const c = S.ingest;
  progress(`ingest: ${c.rounds} round(s) of ceiling / genrelay / genrelay fsync, ${c.seconds} s each, wrk -t1 -c${c.connections}`);
  const recv = await startReceiver();
  const ceiling = await P.startCeiling(opts.build);
  cleanups.push(() => ceiling.stop());
  const cfg = benchConfig(`${recv.url}/fal`);
  const grNormal = await startGenrelay(cfg);
  const grFsync = await startGenrelay(h.deepMerge(cfg, { durability: 'fsync' }));
  const body = tmpFile('ingest-body.json', runBody(`${recv.url}/hook/acme`));
  const run = (url, seconds = c.seconds) =>
    P.wrk({ url: url + MODEL_PATH, script: 'run.lua', args: [body, ACME.api_key], connections: c.connections, seconds });
  if (c.warmup) {
    // Warm-up (connections, caches, the JWKS fetch, SQLite file growth).
    await run(ceiling.url, 1);
    await run(grNormal.url, 1);
    await run(grFsync.url, 1);
  }
  const res = { ceiling: [], normal: [], fsync: [] };
  const cpu = { normal: [], fsync: [] };
  for (let r = 0; r < c.rounds; r++) {
    res.ceiling.push(await run(ceiling.url));
    for (const [k, gr] of [['normal', grNormal], ['fsync', grFsync]]) {
      const before = P.cpuSeconds(gr.child.pid);
      const st0 = await recv.stats();
      const prof = r === 0 ? maybeProfile(gr, Math.max(1, c.seconds - 1), `ingest-${k}`) : null;
      const w = await run(gr.url);
      await prof;
      cpu[k].push(((P.cpuSeconds(gr.child.pid) - before) / Math.max(1, w.requests)) * 1e6);
      const st1 = await recv.stats();
      w.submits = st1.fal_submits - st0.fal_submits;
      w.submit_connections = st1.connections - st0.connections;
      res[k].push(w);
    }
    progress(`ingest round ${r + 1}/${c.rounds}: ceiling ${fmt(res.ceiling[r].rps)} req/s, genrelay ${fmt(res.normal[r].rps)} jobs/s, fsync ${fmt(res.fsync[r].rps)} jobs/s`);
  }
  const good = (w) => (w.requests - w.errors.status) / w.duration_s;
  // Diagnostic: the same ingest with a provider that accepts connections and
  // never answers. Once max_inflight submits hang, new jobs are committed and
  // answered without a submit: what the API path costs on its own.
  let alone = null;
  if (c.diagnostic) {
    const hole = await blackhole();
    const grAlone = await startGenrelay(benchConfig(`${hole.url}/fal`));
    await run(grAlone.url, 2);
    const before = P.cpuSeconds(grAlone.child.pid);
    const prof = maybeProfile(grAlone, Math.max(1, c.seconds - 1), 'ingest-alone');
    const w = await run(grAlone.url);
    await prof;
    alone = { jobs_per_s: round(good(w), 0), cpu_us_per_job: round(((P.cpuSeconds(grAlone.child.pid) - before) / Math.max(1, w.requests)) * 1e6, 1) };
    progress(`ingest without provider round trips (diagnostic): ${fmt(alone.jobs_per_s)} jobs/s, ${alone.cpu_us_per_job} us CPU per job`);
    await grAlone.kill('SIGKILL'); // its hanging submits would hold a SIGTERM drain for 10 s
  }
  const ceil = median(res.ceiling.map(good));
  const normal = median(res.normal.map(good));
  const fsyncV = median(res.fsync.map(good));
  const m = await P.metrics(grNormal.url);
  const bad = (k) => res[k].reduce((a, w) => a + w.errors.status + w.errors.connect + w.errors.read + w.errors.write + w.errors.timeout, 0);
  const detail = (k) => ({
    rounds: res[k].map((w) => round(good(w), 0)),
    p50_ms: round(median(res[k].map((w) => w.latency_us.p50)) / 1000),
    p99_ms: round(median(res[k].map((w) => w.latency_us.p99)) / 1000),
    failed_requests: bad(k),
    cpu_us_per_job: cpu[k].length ? round(median(cpu[k]), 1) : undefined,
    provider_submits: res[k].reduce((a, w) => a + w.submits, 0),
    provider_connections_opened: res[k].reduce((a, w) => a + w.submit_connections, 0),
  });
  const ceilDetail = { rounds: res.ceiling.map((w) => round(good(w), 0)), p99_ms: round(median(res.ceiling.map((w) => w.latency_us.p99)) / 1000) };
  figure({
    key: 'ingest', name: 'ingest', value: normal, unit: 'jobs/s', ceiling: ceil, ceiling_unit: 'req/s', ceiling_label: 'bare MHD server',
    target: '>= 0.5 of ceiling and >= 20,000 jobs/s', pass: normal / ceil >= 0.5 && normal >= 20000,
    detail: { genrelay: detail('normal'), ceiling: ceilDetail, jobs_accepted_total: m.genrelay_jobs_accepted_total, jobs_stored: m.genrelay_jobs_stored, without_provider_round_trips: alone || undefined },
    command: 'bench/run --only ingest build',
  });
  figure({
    key: 'ingest_fsync', name: 'ingest, fsync durability', value: fsyncV, unit: 'jobs/s', ceiling: ceil, ceiling_unit: 'req/s', ceiling_label: 'bare MHD server',
    target: '>= 0.4 of ceiling', pass: fsyncV / ceil >= 0.4,
    detail: { genrelay: detail('fsync'), ceiling: ceilDetail },
    command: 'bench/run --only ingest build',
  });
  await stopAll();
}

// ---------------------------------------------------------------------------
// reload under load: the same ingest with and without 10 script rewrites

async function benchReload() {
  const c = S.reload;
  progress(`reload under load: ${c.rounds} round(s) of ingest ${c.seconds} s without / with ${c.rewrites} rewrites of providers/fal.lua`);
  const recv = await startReceiver();
  const scripts = path.join(tmpRoot, 'reload-scripts');
  fs.cpSync(path.join(SRC, 'scripts'), scripts, { recursive: true });
  const falPath = path.join(scripts, 'providers', 'fal.lua');
  const original = fs.readFileSync(falPath, 'utf8');
  const gr = await startGenrelay(benchConfig(`${recv.url}/fal`, { scripts }));
  const body = tmpFile('reload-body.json', runBody(`${recv.url}/hook/acme`));
  const run = (seconds) =>
    P.wrk({ url: gr.url + MODEL_PATH, script: 'run_timeline.lua', args: [body, ACME.api_key], connections: S.ingest.connections, seconds });
  await run(1);
  const base = [];
  const withReload = [];
  const reloadsSeen = [];
  let versionOk = true;
  let n = 0;
  const countReloads = () => (gr.log().match(/script\(s\) reloaded/g) || []).length;
  for (let r = 0; r < c.rounds; r++) {
    // (With --profile both runs of the first round are profiled alike.)
    const profBase = r === 0 ? maybeProfile(gr, c.seconds - 1, 'reload-without') : null;
    base.push(await run(c.seconds));
    await profBase;
    // Rewrites spread over the run: same semantics, a new comment (so a new
    // hash, a real compile + examples + swap each time).
    const before = countReloads();
    const interval = ((c.seconds - 0.6) * 1000) / c.rewrites;
    let last = original;
    const writer = (async () => {
      await h.sleep(300);
      for (let i = 0; i < c.rewrites; i++) {
        last = `${original}\n-- bench reload ${++n}\n`;
        fs.writeFileSync(falPath, last);
        await h.sleep(interval);
      }
    })();
    const prof = r === 0 ? maybeProfile(gr, c.seconds - 1, 'reload-with') : null;
    withReload.push(await run(c.seconds));
    await writer;
    await prof;
    await h.sleep(400);
    reloadsSeen.push(countReloads() - before);
    const want = crypto.createHash('sha256').update(last).digest('hex').slice(0, 12);
    const list = await gr.admin('GET', '/v1/scripts');
    const fal = ((list.body && list.body.data) || []).find((s) => s.name === 'fal' && s.kind !== 'hook');
    if (!fal || fal.version !== want) versionOk = false;
    progress(`reload round ${r + 1}/${c.rounds}: without ${fmt(base[r].rps)} jobs/s, with ${c.rewrites} rewrites ${fmt(withReload[r].rps)} jobs/s, ${reloadsSeen[r]} reload(s) logged`);
  }
  fs.writeFileSync(falPath, original);
  const failed = (w) => w.errors.status + w.errors.connect + w.errors.read + w.errors.write + w.errors.timeout;
  const good = (w) => (w.requests - w.errors.status) / w.duration_s;
  const b = median(base.map(good));
  const wv = median(withReload.map(good));
  const nFailed = withReload.reduce((a, w) => a + failed(w), 0);
  // Worst 250 ms bucket of the reload runs against the median bucket of the
  // baseline runs (the first and the partial last bucket left out).
  const buckets = (w) => String(w.buckets_2xx || '').split(',').map(Number).slice(1, -1).filter((x) => Number.isFinite(x));
  const baseBucket = median(base.flatMap(buckets));
  const worstBucket = Math.min(...withReload.flatMap(buckets));
  const worstBaseBucket = Math.min(...base.flatMap(buckets));
  figure({
    key: 'reload', name: 'reload under load', value: wv, unit: 'jobs/s', ceiling: b, ceiling_unit: 'jobs/s', ceiling_label: 'same run, no rewrites',
    target: '0 failed requests, dip <= 10% (ratio >= 0.9)', pass: nFailed === 0 && wv / b >= 0.9 && versionOk,
    detail: {
      failed_requests: nFailed, dip_pct: round((1 - wv / b) * 100, 1), rewrites_per_run: c.rewrites, reloads_logged: reloadsSeen,
      final_version_matches: versionOk, worst_250ms_bucket_vs_median: round(worstBucket / baseBucket),
      worst_250ms_bucket_without_rewrites_vs_median: round(worstBaseBucket / baseBucket),
      rounds_without: base.map((w) => round(good(w), 0)), rounds_with: withReload.map((w) => round(good(w), 0)),
      max_latency_ms_without: base.map((w) => round(w.latency_us.max / 1000, 1)), max_latency_ms_with: withReload.map((w) => round(w.latency_us.max / 1000, 1)),
      p99_ms_without: base.map((w) => round(w.latency_us.p99 / 1000, 1)), p99_ms_with: withReload.map((w) => round(w.latency_us.p99 / 1000, 1)),
    },
    command: 'bench/run --only reload build',
  });
  await stopAll();
}

// ---------------------------------------------------------------------------
// delivery: a backlog of finished jobs drained to the fast receiver, against
// wrk posting the same signed bodies to that receiver

// n webhook bodies shaped like genrelay's default hook output, each signed
// (Standard Webhooks, the acme secret, timestamp now) as a TSV line for hooks.lua.
function signedBodies(n) {
  const key = Buffer.from(ACME.webhook_secret.slice(6), 'base64');
  const ts = String(Math.floor(Date.now() / 1000));
  const lines = [];
  for (let i = 0; i < n; i++) {
    const id = `msg_01JDBENCH${String(i).padStart(16, '0')}`;
    const body = JSON.stringify({
      type: 'job.succeeded', job_id: `job_01JDBENCH${String(i).padStart(16, '0')}`, status: 'succeeded', model_id: 'fal-ai/flux/dev', provider: 'fal',
      request_id: crypto.randomUUID(), track_id: `bench-${i}`,
      output: { type: 'image', items: [{ type: 'image', url: `https://v3.fal.media/files/bench/${crypto.randomUUID()}.png`, content_type: 'image/png' }] },
      error: null, created_at: '2024-11-22T19:40:00.000Z', completed_at: '2024-11-22T19:40:04.000Z',
    });
    const sig = crypto.createHmac('sha256', key).update(`${id}.${ts}.${body}`).digest('base64');
    lines.push(`${id}\t${ts}\tv1,${sig}\t${body}`);
  }
  return lines.join('\n') + '\n';
}

async function benchDelivery() {
  const c = S.delivery;
  progress(`delivery: ${fmt(c.jobs)} finished jobs with pending webhooks drained by genrelay, against wrk -c${c.connections} posting signed bodies to the same receiver`);
  const recv = await startReceiver();
  const signed = tmpFile('signed.tsv', signedBodies(1000));
  const ceilingRun = () =>
    P.wrk({ url: `${recv.url}/hook/acme`, script: 'hooks.lua', args: [signed], connections: c.connections, seconds: c.ceilingSeconds });
  if (c.warmup) await ceilingRun();
  await recv.reset();
  const c1 = await ceilingRun();
  const st1 = await recv.stats();
  if (st1.bad > 0) throw new Error(`delivery ceiling: the receiver refused ${st1.bad} signed bodies`);

  const dir = fs.mkdtempSync(path.join(tmpRoot, 'delivery-'));
  const gen = await P.run(path.join(opts.build, 'bench', 'bench_storegen'),
    ['--db', path.join(dir, 'genrelay.db'), '--jobs', String(c.jobs), '--deliveries', '--webhook', `${recv.url}/hook/acme`, '--ids-sample', '0'], { timeoutMs: 300000 });
  if (gen.code !== 0) throw new Error(`storegen: ${gen.stderr}`);
  await recv.reset();
  const gr = await startGenrelay(benchConfig(`${recv.url}/fal`), dir);
  const cpu0 = P.cpuSeconds(gr.child.pid);
  const prof = maybeProfile(gr, opts.smoke ? 1 : 4, 'delivery');
  const deadline = Date.now() + Math.max(30000, c.jobs * 2);
  let st;
  let lastPrint = Date.now();
  for (;;) {
    st = await recv.stats();
    if (st.verified + st.bad >= c.jobs || Date.now() > deadline) break;
    if (Date.now() - lastPrint > 5000) {
      progress(`delivery: ${fmt(st.verified)} / ${fmt(c.jobs)} webhooks received`);
      lastPrint = Date.now();
    }
    await h.sleep(100);
  }
  await prof;
  const cpu = P.cpuSeconds(gr.child.pid) - cpu0;
  const conns = st.connections; // TCP connections genrelay opened to deliver
  const span = Number(BigInt(st.last_ns) - BigInt(st.first_ns)) / 1e9;
  const rate = (st.verified - 1) / span;
  await recv.reset();
  const c2 = await ceilingRun();
  const ceil = mean([c1.rps, c2.rps]);
  figure({
    key: 'delivery', name: 'delivery', value: rate, unit: 'webhooks/s', ceiling: ceil, ceiling_unit: 'req/s', ceiling_label: 'wrk -> same receiver',
    target: '>= 0.3 of ceiling', pass: st.verified === c.jobs && st.bad === 0 && rate / ceil >= 0.3,
    detail: { jobs: c.jobs, verified: st.verified, bad_signatures: st.bad, connections_opened: conns, seconds: round(span, 2), cpu_us_per_webhook: round((cpu / Math.max(1, st.verified)) * 1e6, 1), ceiling_rounds: [round(c1.rps, 0), round(c2.rps, 0)] },
    command: 'bench/run --only delivery build',
  });
  await stopAll();
}

// ---------------------------------------------------------------------------
// end to end through provsim with callbacks, and provsim alone as the ceiling

async function benchE2E() {
  const c = S.e2e;
  const provsimArgs = ['--callback-workers', process.env.GENRELAY_BENCH_CALLBACK_WORKERS || '0'];
  progress(`end to end: ${c.seconds} s of run requests (rate adapts to keep <= ${fmt(c.window)} jobs outstanding, max ${fmt(c.maxRate)}/s) -> provsim (fal, delay ${c.delayMs} ms, callbacks) -> genrelay -> receiver`);
  const countFile = path.join(tmpRoot, 'e2e-count');
  const recv = await startReceiver(countFile);
  const sim = await startProvsim(provsimArgs);
  const gr = await startGenrelay(benchConfig(`${sim.url}/fal`, { jobs: { poll_after_s: 30 } }));
  // genrelay fetches fal's JWKS when it starts; callbacks before that are refused.
  await h.sleep(1000);
  const body = tmpFile('e2e-body.json', runBody(`${recv.url}/hook/acme`, { delay_ms: c.delayMs }));
  await recv.reset();
  const start = monoNs();
  const cpu0 = P.cpuSeconds(gr.child.pid);
  const prof = opts.profile ? (async () => { await h.sleep(c.warmup * 1000); return maybeProfile(gr, Math.min(10, c.seconds - c.warmup), 'e2e'); })() : null;
  let lastPrint = Date.now();
  const w = await during(
    P.wrk({ url: gr.url + MODEL_PATH, script: 'paced.lua', args: [body, c.maxRate, c.window, countFile, `Bearer ${ACME.api_key}`], connections: c.connections, seconds: c.seconds, timeoutS: 10 }),
    1000,
    async () => {
      if (Date.now() - lastPrint < 10000) return;
      lastPrint = Date.now();
      const st = await recv.stats();
      const el = Number(monoNs() - start) / 1e9;
      progress(`end to end: ${fmt(el, 0)} s / ${c.seconds} s, ${fmt(st.verified)} webhooks verified (${fmt(st.verified / el)}/s so far)`);
    },
  );
  await prof;
  const end = monoNs();
  const cpuRun = P.cpuSeconds(gr.child.pid) - cpu0;
  // Drain: everything accepted (genrelay's own count, which includes requests
  // wrk gave up on at the end) must arrive, verified. Bounded: 20 s without
  // progress.
  let accepted = (await P.metrics(gr.url)).genrelay_jobs_accepted_total;
  let st = await recv.stats();
  let last = st.verified;
  let still = Date.now();
  while (st.verified < accepted && Date.now() - still < 20000) {
    await h.sleep(250);
    st = await recv.stats();
    accepted = (await P.metrics(gr.url)).genrelay_jobs_accepted_total;
    if (st.verified !== last) {
      last = st.verified;
      still = Date.now();
    }
  }
  const arrivals = await recv.arrivals();
  const m = await P.metrics(gr.url);
  accepted = m.genrelay_jobs_accepted_total;
  const winStart = start + BigInt(Math.round(c.warmup * 1e9));
  const seen = new Set();
  let inWindow = 0;
  let dup = 0;
  const buckets = new Map();
  for (const a of arrivals) {
    if (!a.verified) continue;
    if (seen.has(a.job)) {
      dup++;
      continue;
    }
    seen.add(a.job);
    if (a.ns >= winStart && a.ns <= end) {
      inWindow++;
      const b = Math.floor(Number(a.ns - winStart) / 10e9);
      buckets.set(b, (buckets.get(b) || 0) + 1);
    }
  }
  const winS = Number(end - winStart) / 1e9;
  const rate = inWindow / winS;
  const full = [...buckets.entries()].filter(([b]) => (b + 1) * 10 <= winS).map(([, n]) => n / 10);
  const lost = accepted - seen.size;
  progress(`end to end: ${fmt(accepted)} accepted, ${fmt(seen.size)} delivered verified, ${lost} missing after the drain, ${dup} duplicate(s)`);
  await stopAll();

  // The ceiling: provsim alone, submits straight from wrk, its callbacks
  // posted straight to the receiver, same pacing rule.
  progress(`end to end ceiling: provsim alone for ${c.ceilingSeconds} s (wrk -> provsim fal submit, callbacks -> receiver)`);
  const recv2 = await startReceiver(countFile);
  const sim2 = await startProvsim(provsimArgs);
  const input = JSON.parse(runBody('x', { delay_ms: c.delayMs })).input;
  const body2 = tmpFile('e2e-ceiling-body.json', JSON.stringify(input));
  const hook = encodeURIComponent(`${recv2.url}/raw/fal`);
  const warm = Math.min(c.warmup, c.ceilingSeconds / 3);
  await recv2.reset();
  const s2 = monoNs();
  await P.wrk({ url: `${sim2.url}/fal/fal-ai/flux/dev?fal_webhook=${hook}`, script: 'paced.lua', args: [body2, c.maxRate * 2, c.window, countFile, 'Key bench-fal-key'], connections: c.connections, seconds: c.ceilingSeconds, timeoutS: 10 });
  const e2 = monoNs();
  const arr2 = await recv2.arrivals();
  const w2 = s2 + BigInt(Math.round(warm * 1e9));
  const n2 = arr2.filter((a) => a.ns >= w2 && a.ns <= e2).length;
  const ceil = n2 / (Number(e2 - w2) / 1e9);
  await stopAll();

  figure({
    key: 'e2e', name: 'end to end', value: rate, unit: 'jobs/s', ceiling: ceil, ceiling_unit: 'jobs/s', ceiling_label: 'provsim alone',
    target: '>= 0.6 of provsim alone, none lost', pass: rate / ceil >= 0.6 && lost === 0 && !opts.smoke,
    detail: {
      seconds: round(winS, 1), accepted, delivered_verified: seen.size, lost, duplicates: dup,
      jobs_failed: m.genrelay_jobs_failed_total, callbacks_rejected: m.genrelay_callbacks_rejected_total,
      polls: m.genrelay_provider_polls_total, delivery_failures: m.genrelay_delivery_attempts_failed_total,
      rate_per_10s: full.map((x) => round(x, 0)), wrk_requests: w.requests, wrk_non2xx: w.errors.status,
      webhook_connections_opened: st.connections, final_offered_rate: round(w.final_rate, 0), cpu_us_per_job: round((cpuRun / Math.max(1, inWindow)) * 1e6, 1),
      provsim_callback_workers: Number(provsimArgs[1]),
      loop_stall_max_s: m.genrelay_loop_stall_max_seconds, store_round_trips_per_job: round((m.genrelay_store_round_trips_total || 0) / Math.max(1, accepted), 2),
    },
    command: 'bench/run --only e2e build',
  });
}

// ---------------------------------------------------------------------------
// added latency: provider callback sent -> webhook at the receiver, at 1,000 jobs/s

async function benchLatency() {
  const c = S.latency;
  progress(`added latency: ${c.rate} jobs/s for ${c.seconds} s through provsim (fal, delay ${c.delayMs} ms); callback send time (provsim) -> webhook arrival (receiver), both CLOCK_MONOTONIC`);
  const recv = await startReceiver();
  const sim = await startProvsim(['--callback-workers', '0']);
  const gr = await startGenrelay(benchConfig(`${sim.url}/fal`, { jobs: { poll_after_s: 30 } }));
  await h.sleep(500);
  const body = tmpFile('latency-body.json', runBody(`${recv.url}/hook/acme`, { delay_ms: c.delayMs }));
  // One paced run; resolves the sorted latencies (ms) of the jobs whose
  // callback was sent after the warm-up, and what was seen.
  const measure = async (rate, seconds) => {
    await recv.reset();
    await sim.reset();
    const start = monoNs();
    const w = await P.wrk({ url: gr.url + MODEL_PATH, script: 'paced.lua', args: [body, rate, 0, '', `Bearer ${ACME.api_key}`], connections: 16, seconds });
    await h.sleep(c.delayMs + c.settleMs);
    const [cbs, arrivals] = await Promise.all([sim.callbacks('fal'), recv.arrivals()]);
    const sent = new Map();
    for (const cb of cbs) {
      const m = /\/v1\/callbacks\/fal\/([^/]+)\//.exec(cb.url);
      if (m && cb.kind === 'normal' && cb.attempt === 1 && cb.sent_us) sent.set(m[1], cb.sent_us);
    }
    const from = Number(start / 1000n) + c.warmup * 1e6;
    const lat = [];
    for (const a of arrivals) {
      const t = sent.get(a.job);
      if (t === undefined || !a.verified || t < from) continue;
      lat.push((Number(a.ns / 1000n) - t) / 1000);
    }
    lat.sort((a, b) => a - b);
    if (!lat.length) throw new Error(`added latency: no callback could be matched with a webhook (${cbs.length} callbacks, ${arrivals.length} webhooks)`);
    progress(`added latency at ${rate}/s: ${lat.length} jobs matched (${cbs.length} callbacks logged, ${arrivals.length} webhooks), p50 ${fmt(percentile(lat, 50), 3)} ms, p99 ${fmt(percentile(lat, 99), 3)} ms, max ${fmt(lat[lat.length - 1], 3)} ms`);
    return { lat, w };
  };
  const main = await measure(c.rate, c.seconds);
  const lat = main.lat;
  const p50 = percentile(lat, 50);
  const p99 = percentile(lat, 99);
  const detail = {
    jobs: lat.length, offered_rate: c.rate, achieved_rate: round(main.w.rps, 0), p90_ms: round(percentile(lat, 90)), p999_ms: round(percentile(lat, 99.9)),
    max_ms: round(lat[lat.length - 1]), run_request_p99_ms: round(main.w.latency_us.p99 / 1000),
  };
  if (c.lowRate) {
    // Diagnostic: the same at a rate far below capacity (no queueing).
    const low = await measure(c.lowRate, c.lowSeconds);
    detail[`at_${c.lowRate}_per_s`] = { jobs: low.lat.length, p50_ms: round(percentile(low.lat, 50)), p99_ms: round(percentile(low.lat, 99)), max_ms: round(low.lat[low.lat.length - 1]) };
  }
  figure({ key: 'latency_p50', name: 'added latency p50', value: p50, unit: 'ms', ceiling: 1, ceiling_unit: 'ms', ceiling_label: 'target', target: 'p50 <= 1 ms', pass: p50 <= 1, digits: 3, detail, command: 'bench/run --only latency build' });
  figure({ key: 'latency_p99', name: 'added latency p99', value: p99, unit: 'ms', ceiling: 3, ceiling_unit: 'ms', ceiling_label: 'target', target: 'p99 <= 3 ms', pass: p99 <= 3, digits: 3, detail, command: 'bench/run --only latency build' });
  await stopAll();
}

// ---------------------------------------------------------------------------
// script cost: Lua per job against cjson alone

async function benchScript() {
  const c = S.script;
  progress(`script cost: fal submit + fal on_callback + default transform, ${fmt(c.iterations)} iterations x ${c.rounds} rounds, against cjson decode+encode of the same payloads`);
  const r = await P.run(path.join(opts.build, 'bench', 'bench_scriptcost'),
    ['--scripts', path.join(SRC, 'scripts'), '--iterations', String(c.iterations), '--rounds', String(c.rounds)], { timeoutMs: 300000 });
  if (r.code !== 0) throw new Error(`scriptcost failed: ${r.stderr}`);
  const o = JSON.parse(r.stdout.trim().split('\n').pop());
  figure({
    key: 'script_cost', name: 'script cost', value: o.lua_ns_per_job / 1000, unit: 'us/job', ceiling: o.cjson_ns_per_job / 1000, ceiling_unit: 'us/job', ceiling_label: 'cjson decode+encode',
    ratio: o.ratio, target: '<= 2x', pass: o.ratio <= 2, digits: 2,
    detail: { lua_us: mapObj(o.lua_ns, (x) => round(x / 1000, 2)), cjson_us: mapObj(o.cjson_ns, (x) => round(x / 1000, 2)), payload_bytes: o.payload_bytes, iterations: o.iterations, rounds: o.rounds },
    command: `bench/run --only script build   # or: build/bench/bench_scriptcost --scripts scripts --iterations ${c.iterations} --rounds ${c.rounds}`,
  });
}

function mapObj(o, f) {
  const out = {};
  for (const [k, v] of Object.entries(o || {})) out[k] = f(v);
  return out;
}

// ---------------------------------------------------------------------------
// memory and lookup at scale: a 1,000,000-job store next to a 1,000-job one

async function benchScale() {
  const c = S.scale;
  progress(`scale: generating stores of ${fmt(c.bigJobs)} jobs (${fmt(c.bigWaiting)} waiting for callbacks) and ${fmt(c.smallJobs)} jobs`);
  const recv = await startReceiver();
  const gen = async (name, jobs, waiting) => {
    const dir = fs.mkdtempSync(path.join(tmpRoot, `${name}-`));
    const ids = path.join(dir, 'ids.txt');
    const r = await during(
      P.run(path.join(opts.build, 'bench', 'bench_storegen'), ['--db', path.join(dir, 'genrelay.db'), '--jobs', String(jobs), '--waiting', String(waiting), '--ids', ids], { timeoutMs: 600000 }),
      10000,
      () => progress(`scale: still generating the ${name} store`),
    );
    if (r.code !== 0) throw new Error(`storegen: ${r.stderr}`);
    return { dir, ids, gen: JSON.parse(r.stdout.trim()) };
  };
  const big = await gen('big', c.bigJobs, c.bigWaiting);
  const small = await gen('small', c.smallJobs, c.smallWaiting);
  progress(`scale: ${fmt(c.bigJobs)} jobs written in ${big.gen.seconds} s (${fmt(fs.statSync(path.join(big.dir, 'genrelay.db')).size / 2 ** 20, 0)} MB)`);
  const cfg = benchConfig(`${recv.url}/fal`);
  const grBig = await startGenrelay(cfg, big.dir);
  const grSmall = await startGenrelay(cfg, small.dir);
  const look = (gr, ids, seconds) =>
    P.wrk({ url: gr.url, script: 'get_jobs.lua', args: [ids, ACME.api_key, c.rate], connections: 8, seconds });
  if (c.warmup) {
    // Warm-up: both caches and code paths.
    await look(grBig, big.ids, c.warmup);
    await look(grSmall, small.ids, c.warmup);
  }
  const rs = { big: [], small: [] };
  // Both at once, so that whatever else runs on the machine hits both alike.
  for (let r = 0; r < c.rounds; r++) {
    const [a, b] = await Promise.all([look(grSmall, small.ids, c.seconds), look(grBig, big.ids, c.seconds)]);
    rs.small.push(a);
    rs.big.push(b);
    progress(`lookup round ${r + 1}/${c.rounds}: p99 ${fmt(rs.small[r].latency_us.p99 / 1000, 3)} ms with ${fmt(c.smallJobs)} jobs, ${fmt(rs.big[r].latency_us.p99 / 1000, 3)} ms with ${fmt(c.bigJobs)}`);
  }
  const non2xx = [...rs.big, ...rs.small].reduce((a, w) => a + w.errors.status, 0);
  if (non2xx) throw new Error(`lookup: ${non2xx} GET(s) did not answer 200 (ids/customer mismatch?)`);
  const memWarm = P.memoryMb(grBig.child.pid);
  // An ingest burst on the big store too: the write path, curl and the
  // batch commit all warm, then read memory again.
  const body = tmpFile('scale-body.json', runBody(`${recv.url}/hook/acme`));
  await P.wrk({ url: grBig.url + MODEL_PATH, script: 'run.lua', args: [body, ACME.api_key], connections: S.ingest.connections, seconds: c.burst });
  await h.sleep(500);
  const memBurst = P.memoryMb(grBig.child.pid);
  const memSmall = P.memoryMb(grSmall.child.pid);
  const rss = Math.max(memWarm.rss, memBurst.rss);
  const p99Big = median(rs.big.map((w) => w.latency_us.p99)) / 1000;
  const p99Small = median(rs.small.map((w) => w.latency_us.p99)) / 1000;
  figure({
    key: 'memory', name: 'memory', value: rss, unit: 'MB RSS', ceiling: 64, ceiling_unit: 'MB', ceiling_label: 'budget', target: '<= 64 MB', pass: rss <= 64, digits: 1,
    detail: { jobs: c.bigJobs, waiting: c.bigWaiting, rss_after_lookups_mb: round(memWarm.rss, 1), rss_after_ingest_burst_mb: round(memBurst.rss, 1), peak_hwm_mb: round(memBurst.hwm, 1), rss_with_1000_jobs_mb: round(memSmall.rss, 1), store_mb: round(fs.statSync(path.join(big.dir, 'genrelay.db')).size / 2 ** 20, 0) },
    command: 'bench/run --only scale build',
  });
  figure({
    key: 'lookup', name: 'lookup at scale p99', value: p99Big, unit: `ms (${fmt(c.bigJobs)} jobs)`, ceiling: p99Small, ceiling_unit: `ms (${fmt(c.smallJobs)} jobs)`, ceiling_label: 'small store', target: 'within 20% (ratio <= 1.2)',
    pass: p99Big / p99Small <= 1.2, digits: 3,
    detail: { rate_per_s: c.rate, p50_big_ms: round(median(rs.big.map((w) => w.latency_us.p50)) / 1000), p50_small_ms: round(median(rs.small.map((w) => w.latency_us.p50)) / 1000), rounds_big_p99_ms: rs.big.map((w) => round(w.latency_us.p99 / 1000)), rounds_small_p99_ms: rs.small.map((w) => round(w.latency_us.p99 / 1000)) },
    command: 'bench/run --only scale build',
  });
  await stopAll();
}

// ---------------------------------------------------------------------------

const EXPECTED = {
  ingest: ['ingest', 'ingest_fsync'],
  reload: ['reload'],
  delivery: ['delivery'],
  e2e: ['e2e'],
  latency: ['latency_p50', 'latency_p99'],
  script: ['script_cost'],
  scale: ['memory', 'lookup'],
  paths: ['cpu_ingest_alone', 'cpu_ingest_submit', 'cpu_callback', 'cpu_delivery', 'cpu_e2e', 'workers_ingest_submit', 'workers_e2e'],
  postgresql: [],
};
// The paths group (CPU per job against composite ceilings) lives in lib/paths.js.
const PATHS = require('./lib/paths');
const pathsCtx = {
  S, opts, h, P, progress, fmt, round, figure, SRC, tmpRoot, ACME, MODEL_PATH,
  startGenrelay, startReceiver, startProvsim, blackhole, stopAll, tmpFile, runBody, benchConfig, signedBodies, maybeProfile,
};
const RUNNERS = {
  ingest: benchIngest, reload: benchReload, delivery: benchDelivery, e2e: benchE2E, latency: benchLatency, script: benchScript, scale: benchScale,
  paths: () => PATHS.benchPaths(pathsCtx),
  // The postgresql group is bench/postgresql.js (it runs this file's ingest
  // and e2e groups per store and RTT); its figures go to results/postgresql.json.
  postgresql: async () => {
    const r = require('node:child_process').spawnSync(process.execPath, [path.join(__dirname, 'postgresql.js'), ...(opts.smoke ? ['--smoke'] : []), opts.build], { stdio: 'inherit', timeout: 3600000 });
    if (r.status !== 0) throw new Error(`bench/postgresql.js exited ${r.status}`);
  },
};
// Order: the cheap, CPU-bound ones first; the long end-to-end run last but one.
const ORDER = ['script', 'ingest', 'reload', 'delivery', 'latency', 'paths', 'scale', 'e2e', 'postgresql'];

function table() {
  const rows = [['figure', 'genrelay', 'ceiling', 'ratio', 'target', 'result']];
  for (const f of figures) {
    const d = f.digits || 0;
    rows.push([f.name, `${fmt(f.value, d)} ${f.unit}`, `${fmt(f.ceiling, d)} ${f.ceiling_unit} (${f.ceiling_label})`, fmt(f.ratio, 2), f.target, f.pass === null ? 'smoke' : f.pass === undefined ? '-' : f.pass ? 'PASS' : 'MISS']);
  }
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const line = (r) => '| ' + r.map((c, i) => c.padEnd(w[i])).join(' | ') + ' |';
  return [line(rows[0]), '|' + w.map((n) => '-'.repeat(n + 2)).join('|') + '|', ...rows.slice(1).map(line)].join('\n');
}

async function main() {
  // postgresql (its own long run) only in a full run or when named.
  const groups = ORDER.filter((g) => (opts.only ? opts.only.includes(g) : !(opts.smoke && g === 'postgresql')));
  const info = P.machine();
  // Which core was measured (the lead changes it in parallel): a hash of
  // core/*.[ch] and the binary's build time.
  const hash = crypto.createHash('sha256');
  for (const f of fs.readdirSync(path.join(SRC, 'core')).filter((f) => /\.[ch]$/.test(f)).sort()) hash.update(f).update(fs.readFileSync(path.join(SRC, 'core', f)));
  info.core_sha256 = hash.digest('hex').slice(0, 16);
  info.genrelay_sha256 = crypto.createHash('sha256').update(fs.readFileSync(RUN_BIN)).digest('hex').slice(0, 16);
  info.genrelay_built_at = fs.statSync(BUILT_BIN).mtime.toISOString();
  process.stdout.write(`genrelay bench (${opts.smoke ? 'smoke' : 'full'}) on ${info.nproc} CPU(s), ${info.cpu}, ${info.memory_gb} GB; load ${info.loadavg_at_start.join(' ')}; core ${info.core_sha256}\n`);
  for (const g of groups) {
    try {
      await RUNNERS[g]();
    } catch (e) {
      failures.push(`${g}: ${e.message}`);
      process.stdout.write(`bench: ${g} failed: ${e.stack || e.message}\n`);
      await stopAll();
    }
  }
  info.loadavg_at_end = os.loadavg().map((x) => Math.round(x * 100) / 100);
  const builtAtEnd = fs.statSync(BUILT_BIN).mtime.toISOString();
  if (builtAtEnd !== info.genrelay_built_at) {
    info.genrelay_rebuilt_during_run = builtAtEnd;
    process.stdout.write(`bench: note: ${BUILT_BIN} was rebuilt during the run (${builtAtEnd}); the figures are of the binary as it was at the start\n`);
  }
  process.stdout.write('\n' + table() + '\n');
  if (pathsCtx.pathsTable) process.stdout.write('\nCPU per job of genrelay\'s own process (/proc user+system, all threads) against each path\'s composite ceiling\n' + PATHS.pathsTable(pathsCtx.pathsTable, fmt) + '\n');
  // A partial run (--only) never replaces the full run's latest.json.
  const out =
    opts.out ||
    (opts.smoke ? path.join(opts.build, 'bench', opts.only ? `smoke-${opts.only.join('-')}.json` : 'smoke.json')
      : path.join(SRC, 'bench', 'results', opts.only ? `only-${opts.only.join('-')}.json` : 'latest.json'));
  fs.mkdirSync(path.dirname(out), { recursive: true });
  const result = {
    mode: opts.smoke ? 'smoke' : 'full', started_at: new Date(t0).toISOString(), seconds: Math.round((Date.now() - t0) / 1000), machine: info, groups, figures,
    parts: pathsCtx.pathsTable ? pathsCtx.pathsTable.parts : undefined, failures,
  };
  fs.writeFileSync(out, JSON.stringify(result, null, 2) + '\n');
  process.stdout.write(`\nwrote ${path.relative(process.cwd(), out) || out} (${result.seconds} s)\n`);

  // Every expected figure must be there with numbers.
  const missing = [];
  for (const g of groups) {
    for (const k of EXPECTED[g]) {
      const f = figures.find((x) => x.key === k);
      if (!f) missing.push(`${k}: missing`);
      else for (const field of ['value', 'ceiling', 'ratio']) if (typeof f[field] !== 'number' || !Number.isFinite(f[field])) missing.push(`${k}: ${field} is not a number (${f[field]})`);
    }
  }
  for (const m of missing) process.stdout.write(`bench: figure ${m}\n`);
  await cleanup();
  process.exit(missing.length || failures.length ? 1 : 0);
}

for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143]]) {
  process.on(sig, () => {
    cleanup().finally(() => process.exit(code));
  });
}
main().catch(async (e) => {
  process.stderr.write(`bench: ${e.stack || e}\n`);
  await cleanup();
  process.exit(1);
});
