'use strict';
// The added cost of a front per job (docs/fronts.md), measured against the
// unified API in the same run, on the same genrelay and provsim:
//   queue: POST /v1/models/M/run (202)          vs fal's queue submit, POST /fal/queue/M
//   sync:  POST /v1/models/M/run, Prefer: wait  vs OpenAI's POST /openai/v1/images/generations
// Each job runs to its end on provsim's fal (callbacks). The figure is
// genrelay's CPU time per job (utime + stime over the jobs, drained), the
// front's over the unified API's; target <= 1.2x. Rounds alternate the two
// paths; the median of each is kept.
//
//   node bench/fronts.js [--smoke] [--out FILE] BUILD_DIR     (make bench runs it after bench/run)
//
// Traffic only to 127.0.0.1; every loop is bounded in count and time.

const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');

const args = process.argv.slice(2);
const smoke = args.includes('--smoke');
const outIdx = args.indexOf('--out');
const out = outIdx >= 0 ? args[outIdx + 1] : null;
const build = args.filter((a, i) => !a.startsWith('--') && (outIdx < 0 || i !== outIdx + 1))[0];
if (!build) {
  process.stderr.write('usage: node bench/fronts.js [--smoke] [--out FILE] BUILD_DIR\n');
  process.exit(2);
}
const SRC = path.resolve(__dirname, '..');
process.env.GENRELAY_BIN = process.env.GENRELAY_BIN || path.join(path.resolve(build), 'genrelay');
process.env.GENRELAY_SRC = process.env.GENRELAY_SRC || SRC;
const h = require('../tests/e2e/lib/harness');
const P = require('./lib/procs');

const JOBS = smoke ? 200 : 3000;
const ROUNDS = smoke ? 1 : 3;
const CONCURRENCY = 32;
const MODEL = 'fal-ai/flux/dev';
const INPUT = { prompt: 'a lighthouse on a cliff at dusk, long exposure, waves crashing below', num_images: 1, seed: 42, sim: { delay_ms: 20 } };

const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });

function post(url, headers, body) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', agent, headers: { ...headers, 'content-length': Buffer.byteLength(body) } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.setTimeout(60000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(body);
  });
}

// n requests at CONCURRENCY in flight; resolves the count of each status.
async function load(n, send) {
  let next = 0;
  const statuses = {};
  async function lane() {
    while (next < n) {
      next++;
      const s = await send().catch(() => 0);
      statuses[s] = (statuses[s] || 0) + 1;
    }
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, lane));
  return statuses;
}

async function ended(gr) {
  const m = await P.metrics(gr.url);
  return (m.genrelay_jobs_succeeded_total || 0) + (m.genrelay_jobs_failed_total || 0) + (m.genrelay_jobs_canceled_total || 0);
}

// Runs n jobs through one path and waits (bounded) until all have ended;
// resolves genrelay's CPU microseconds per job.
async function measure(gr, path_, headers, body, okStatus) {
  const before = await ended(gr);
  const cpu0 = P.cpuSeconds(gr.child.pid);
  const st = await load(JOBS, () => post(gr.url + path_, headers, body));
  if ((st[okStatus] || 0) !== JOBS) throw new Error(`${path_}: statuses ${JSON.stringify(st)}`);
  await h.waitFor(async () => (await ended(gr)) - before >= JOBS, 120000, { what: `${JOBS} jobs ended`, interval: 100 });
  return ((P.cpuSeconds(gr.child.pid) - cpu0) / JOBS) * 1e6;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main() {
  const sim = await h.startProvsim({ args: ['--callback-workers', '0'] });
  const gr = await h.startGenrelay({
    simUrl: sim.url,
    readyMs: 60000,
    config: { jobs: { poll_after_s: 60, submit_window_s: 120, job_deadline_s: 300 }, limits: { max_inflight: 256 } },
  });
  const figures = [];
  try {
    await h.sleep(500); // fal's JWKS, fetched at start, verifies the callbacks
    const bearer = { authorization: `Bearer ${h.ACME.api_key}`, 'content-type': 'application/json' };
    const key = { authorization: `Key ${h.ACME.api_key}`, 'content-type': 'application/json' };
    const pairs = [
      {
        key: 'front_fal_queue', name: 'fal front (queue submit)',
        base: [`/v1/models/${MODEL}/run`, bearer, JSON.stringify({ input: INPUT }), 202],
        front: [`/fal/queue/${MODEL}`, key, JSON.stringify(INPUT), 200],
      },
      {
        key: 'front_openai_sync', name: 'OpenAI front (sync)',
        base: [`/v1/models/${MODEL}/run`, { ...bearer, prefer: 'wait=60' }, JSON.stringify({ input: { ...INPUT, image_size: { width: 512, height: 512 } } }), 200],
        front: ['/openai/v1/images/generations', bearer, JSON.stringify({ model: MODEL, prompt: INPUT.prompt, n: 1, size: '512x512', seed: 42, sim: INPUT.sim }), 200],
      },
    ];
    for (const p of pairs) {
      await measure(gr, ...p.base); // warm-up (connections, statement caches)
      const base = [];
      const front = [];
      for (let i = 0; i < ROUNDS; i++) {
        base.push(await measure(gr, ...p.base));
        front.push(await measure(gr, ...p.front));
      }
      const b = median(base);
      const f = median(front);
      const ratio = f / b;
      const fig = {
        key: p.key, name: p.name, value: Math.round(f * 10) / 10, unit: 'CPU us/job',
        ceiling: Math.round(b * 10) / 10, ceiling_unit: 'CPU us/job', ceiling_label: 'unified API, same run',
        ratio: Math.round(ratio * 100) / 100, target: '<= 1.2x', pass: smoke ? null : ratio <= 1.2,
        detail: { jobs_per_round: JOBS, rounds: ROUNDS, concurrency: CONCURRENCY, unified_rounds: base.map((x) => Math.round(x)), front_rounds: front.map((x) => Math.round(x)) },
        command: 'node bench/fronts.js build',
      };
      figures.push(fig);
      process.stdout.write(`  ${fig.name}: ${fig.value} us/job vs ${fig.ceiling} us/job (unified API) = ${fig.ratio}x${fig.pass === null ? '' : fig.pass ? ' PASS' : ' MISS'}\n`);
    }
  } finally {
    agent.destroy();
    await gr.stop();
    await sim.stop();
    fs.rmSync(gr.dir, { recursive: true, force: true });
  }
  const file = out || (smoke ? path.join(build, 'bench', 'fronts-smoke.json') : path.join(SRC, 'bench', 'results', 'fronts.json'));
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify({ started_at: new Date().toISOString(), nproc: os.cpus().length, loadavg: os.loadavg(), figures }, null, 2) + '\n');
  process.stdout.write(`wrote ${file}\n`);
  if (figures.length !== 2 || figures.some((f) => !Number.isFinite(f.ratio))) process.exit(1);
}

main().catch((e) => {
  process.stderr.write(`bench/fronts.js: ${e.stack || e.message}\n`);
  process.exit(1);
});
