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
//   node bench/callgrind.js BUILD_DIR [--jobs N] [--out FILE.callgrind]
//
// Prints a table (instructions per job) and writes the callgrind file
// (default BUILD_DIR/bench/e2e.callgrind; read it with callgrind_annotate
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
const out = path.resolve(opt('--out', path.join(build, 'bench', 'e2e.callgrind')));

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
  ['submit: run_submit', ['run_submit']],
  ['submit: submit_done', ['submit_done']],
  ['callback: callbacks_handle', ['callbacks_handle']],
  ['Lua calls, every step (vm_call)', ['vm_call']],
  ['Ed25519 (sign_ed25519_verify)', ['sign_ed25519_verify']],
  ['delivery: run_deliver', ['run_deliver']],
  ['delivery: deliver_done', ['deliver_done']],
  ['libmicrohttpd + kernel entry (MHD_run)', ['MHD_run']],
  ['libcurl (curl_multi_socket_action)', ['curl_multi_socket_action']],
  ['SQLite statements (sqlite3_step)', ['sqlite3_step']],
  ['commits (store_flush)', ['store_flush']],
  ['JSON parse (json_loads + json_loadb)', ['json_loads'], ['json_loadb']],
  ['JSON print (json_dumps)', ['json_dumps']],
  ['Lua <- JSON (luajson_push)', ['luajson_push']],
  ['whole loop thread (worker_main)', ['worker_main']],
];

async function main() {
  const recv = await P.startReceiver(build, { secret: h.ACME.webhook_secret });
  const sim = await h.startProvsim({ args: ['--callback-workers', '0'] });
  const gr = await h.startGenrelay({
    config: {
      providers: { fal: { base_url: `${sim.url}/fal`, jwks_url: `${sim.url}/fal/.well-known/jwks.json` } },
      webhooks: { retry: [1, 2, 5], timeout_s: 10, require_https: false, allow_private: true },
      jobs: { poll_after_s: 60, poll_interval_s: 5, submit_window_s: 120, job_deadline_s: 900 },
    },
    readyMs: 180000,
  });
  try {
    await h.sleep(3000); // fal's JWKS, fetched at start (slow under valgrind)
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
    let st;
    while (Date.now() < end) {
      st = await recv.stats();
      if (st.verified >= N) break;
      await h.sleep(500);
    }
    if (!st || st.verified < N) throw new Error(`only ${st && st.verified} of ${N} webhooks arrived`);
  } finally {
    await gr.stop();
    await sim.stop();
    await recv.stop();
  }
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
  const w = Math.max(...rows.map((x) => x[0].length));
  process.stdout.write(`instructions per job (callgrind, ${N} jobs end to end, inclusive; ${out})\n`);
  for (const [l, v] of rows) process.stdout.write(`  ${l.padEnd(w)}  ${v.padStart(12)}\n`);
  fs.rmSync(tmp, { recursive: true, force: true });
  process.exit(0);
}

main().catch((e) => {
  process.stderr.write(`callgrind: ${e.stack || e}\n`);
  process.exit(1);
});
