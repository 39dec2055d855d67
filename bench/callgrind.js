#!/usr/bin/env node
'use strict';
// Instructions per job, per step, end to end: genrelay under
// `valgrind --tool=callgrind` runs N fal jobs (provsim, Ed25519-signed
// callbacks, webhooks to bench_receiver), then the inclusive instruction
// counts of the functions that carry each step are divided by N. Unlike
// perf samples these counts repeat from run to run (within a few %) and do
// not depend on other load on the machine, so they are the numbers to
// compare a change against.
//
//   node bench/callgrind.js BUILD_DIR [--jobs N] [--mode e2e|submit|ingest]
//                           [--out FILE.callgrind] [--functions f1,f2,...]
//                           [--annotate FILE.callgrind]
//
// --mode e2e (the default): the whole path as above. --mode submit: ingest +
// provider submit, as the `paths` group's line: fal is bench_receiver's /fal
// stub (answers 200 {"request_id"}), no callback comes; done when genrelay
// has handled every submit answer. --mode ingest: ingest alone: fal is a
// socket that accepts and never answers, with limits.max_inflight = 4: the
// first 4 submits hang, every other job is only committed and answered.
// --functions adds a row per named function (inclusive, per job);
// --annotate reads an existing callgrind file of N jobs instead of running.
//
// Prints a table (instructions per job) and writes the callgrind file
// (default BUILD_DIR/bench/MODE.callgrind; read it with callgrind_annotate
// --inclusive=yes). About a minute for 300 jobs.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const args = process.argv.slice(2);
const build = path.resolve(args.find((a) => !a.startsWith('--') && !/^\d+$/.test(a)) || 'build');
const opt = (name, d) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : d;
};
const N = Number(opt('--jobs', '300'));
const MODE = opt('--mode', 'e2e');
if (!['e2e', 'submit', 'ingest'].includes(MODE)) throw new Error(`--mode ${MODE}: e2e, submit or ingest`);
const annotateOnly = opt('--annotate', null);
const out = path.resolve(annotateOnly || opt('--out', path.join(build, 'bench', `${MODE}.callgrind`)));
const extraFns = (opt('--functions', '') || '').split(',').filter(Boolean);

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'genrelay-callgrind-'));
const wrapper = path.join(tmp, 'genrelay-callgrind');
fs.writeFileSync(wrapper, `#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file=${out} ${path.join(build, 'genrelay')} "$@"\n`);
fs.chmodSync(wrapper, 0o755);
process.env.GENRELAY_BIN = wrapper;
process.env.GENRELAY_SRC = process.env.GENRELAY_SRC || path.resolve(__dirname, '..');
const h = require('../tests/e2e/lib/harness');
const P = require('./lib/procs');

// Functions whose inclusive counts are the steps (the first that exists of
// each alternative list is used; the core changes under this script).
const STEPS = [
  ['API: run request (handle_run + the group commit)', ['handle_run'], ['ingest_flush', 'api_flush']],
  ['submit: steps_submit', ['steps_submit', 'run_submit']],
  ['submit: submit_done', ['submit_done']],
  ['callback: callbacks_handle', ['callbacks_handle']],
  ['Lua calls, every step (vm_call)', ['vm_call_args', 'vm_call']],
  ['Ed25519 (sign_ed25519_verify)', ['sign_ed25519_verify']],
  ['delivery: delivery_run', ['delivery_run', 'run_deliver']],
  ['delivery: deliver_done', ['deliver_done']],
  ['libmicrohttpd + kernel entry (MHD_run)', ['MHD_run']],
  ['libcurl (curl_multi_socket_action)', ['curl_multi_socket_action']],
  ['SQLite statements (sqlite3_step)', ['sqlite3_step']],
  ['commits (store_flush)', ['store_flush']],
  ['JSON parse (json_loads + json_loadb)', ['json_loads'], ['json_loadb']],
  ['JSON print (json_dumps)', ['json_dumps']],
  ['Lua <- JSON (luajson_push)', ['luajson_push']],
  ['  handle_run', ['handle_run']],
  ['  ingest_flush (job rows, the commit, the answers)', ['ingest_flush']],
  ['  urlguard_check_url', ['urlguard_check_url']],
  ['  sign_random_id', ['sign_random_id']],
  ['  authenticate', ['authenticate']],
  ['  store_job_insert', ['store_job_insert']],
  ['  store_work_add', ['store_work_add']],
  ['  log lines (log_vwrite)', ['log_vwrite']],
  ['  provider_call', ['provider_call']],
  ['  sign_callback_token', ['sign_callback_token']],
  ['  step_job_arg', ['step_job_arg']],
  ['  provider_response_arg', ['provider_response_arg']],
  ['  provider_request_start', ['provider_request_start']],
  ['  step_begin / jobflow_begin', ['jobflow_begin']],
  ['  engine_event', ['engine_event']],
  ['  fetch_start', ['fetch_start']],
  ['whole loop thread (worker_main)', ['worker_main']],
];

// The submit answers genrelay handled (provider calls of step submit).
async function submitAnswers(url) {
  const r = await h.request(url + '/metrics', { timeoutMs: 60000, headers: { authorization: `Bearer ${h.METRICS_TOKEN}` } });
  let n = 0;
  for (const line of r.text.split('\n')) {
    const m = /^genrelay_provider_calls_total\{([^}]*)\} ([0-9.e+-]+)$/.exec(line);
    if (m && /step="submit"/.test(m[1])) n += Number(m[2]);
  }
  return n;
}

async function main() {
  if (!annotateOnly) await run();
  report();
}

async function run() {
  const recv = await P.startReceiver(build, { secret: h.ACME.webhook_secret });
  const sim = MODE === 'e2e' ? await h.startProvsim({ args: ['--callback-workers', '0'] })
    : MODE === 'ingest' ? await P.blackhole() : null;
  const falBase = MODE === 'submit' ? `${recv.url}/fal` : `${sim.url}/fal`;
  const gr = await h.startGenrelay({
    config: {
      providers: { fal: { base_url: falBase, jwks_url: `${falBase}/.well-known/jwks.json` } },
      webhooks: { retry: [1, 2, 5], timeout_s: 10, require_https: false, allow_private: true },
      jobs: { poll_after_s: 60, poll_interval_s: 5, submit_window_s: 120, job_deadline_s: 900 },
      // ingest: as the `paths` line once max_inflight submits hang, every
      // new job is only committed and answered.
      ...(MODE === 'ingest' ? { limits: { max_inflight: 4 } } : {}),
    },
    readyMs: 180000,
  });
  try {
    if (MODE === 'e2e') await h.sleep(3000); // fal's JWKS, fetched at start (slow under valgrind)
    const body = JSON.stringify({
      input: { prompt: 'a lighthouse on a cliff at dusk, long exposure', image_size: 'landscape_4_3', num_images: 1, seed: 42, sim: { delay_ms: 100 } },
      webhook_url: `${recv.url}/hook/acme`, track_id: 'callgrind',
    });
    for (let i = 0; i < N; i += 4) {
      await Promise.all(
        [0, 1, 2, 3].filter((k) => i + k < N).map(() =>
          h.request(gr.url + '/v1/models/fal-ai/flux/dev/run', { method: 'POST', headers: { authorization: `Bearer ${h.ACME.api_key}`, 'content-type': 'application/json' }, body, timeoutMs: 60000 })),
      );
    }
    const end = Date.now() + 180000;
    if (MODE === 'e2e') {
      let st;
      while (Date.now() < end) {
        st = await recv.stats();
        if (st.verified >= N) break;
        await h.sleep(500);
      }
      if (!st || st.verified < N) throw new Error(`only ${st && st.verified} of ${N} webhooks arrived`);
    } else if (MODE === 'submit') {
      let n = 0;
      while (Date.now() < end && (n = await submitAnswers(gr.url)) < N) await h.sleep(500);
      if (n < N) throw new Error(`only ${n} of ${N} submit answers handled`);
    }
  } finally {
    await gr.stop();
    if (sim) await sim.stop();
    await recv.stop();
  }
}

function report() {
  const r = spawnSync('callgrind_annotate', ['--inclusive=yes', '--threshold=100', out], { maxBuffer: 1 << 28, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`callgrind_annotate: ${r.stderr}`);
  const ir = new Map();
  for (const line of r.stdout.split('\n')) {
    const m = /^\s*([\d,]+)\s+\([^)]*\)\s+\S*?:([A-Za-z_][\w.]*)(?:'\d+)?\s/.exec(line + ' ') || /^\s*([\d,]+)\s+\S*?:([A-Za-z_][\w.]*)(?:'\d+)?\s/.exec(line + ' ');
    if (!m) continue;
    const n = Number(m[1].replace(/,/g, ''));
    if (!ir.has(m[2]) || ir.get(m[2]) < n) ir.set(m[2], n);
  }
  const rows = [];
  for (const [label, a, b] of STEPS) {
    const v = (a.map((f) => ir.get(f)).find((x) => x !== undefined) || 0) + (b ? b.map((f) => ir.get(f)).find((x) => x !== undefined) || 0 : 0);
    rows.push([label, v ? Math.round(v / N).toLocaleString('en-US') : 'n/a']);
  }
  for (const f of extraFns) {
    const v = ir.get(f);
    rows.push([f, v ? Math.round(v / N).toLocaleString('en-US') : 'n/a']);
  }
  const w = Math.max(...rows.map((x) => x[0].length));
  process.stdout.write(`instructions per job (callgrind, ${N} jobs, mode ${MODE}, inclusive; ${out})\n`);
  for (const [l, v] of rows) process.stdout.write(`  ${l.padEnd(w)}  ${v.padStart(12)}\n`);
  fs.rmSync(tmp, { recursive: true, force: true });
  process.exit(0);
}

main().catch((e) => {
  process.stderr.write(`callgrind: ${e.stack || e}\n`);
  process.exit(1);
});
