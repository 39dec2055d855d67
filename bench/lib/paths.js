'use strict';
// The `paths` group of bench/run.js: CPU per job of genrelay's own process
// (user + system from /proc, every thread) on each path, beside the
// path's composite ceiling: the sum of what its parts cost on their own,
// measured in the same run by small programs (bench_ceiling for a bare
// libmicrohttpd answer, bench_parts for curl multi / SQLite rows / Ed25519 /
// HMAC, bench_scriptcost for the Lua mapping). Also the store rows written
// per job (bench/rowcount, an LD_PRELOAD shim counting sqlite3_step
// executions and rows changed per statement), the delivery rate against wrk
// to the same receiver, and everything with workers = 1 and 2.
//
// Paths:
//   ingest_alone   POST run -> commit -> 202, the provider never answers
//                  (once max_inflight submits hang, jobs are only committed)
//   ingest_submit  the same with fal's submit answered at once (bench_receiver /fal)
//   callback       fal's Ed25519-signed callback (provsim): verify, parse, end
//                  the job; jobs without webhook_url, so no delivery follows
//   delivery       a backlog of finished jobs drained to bench_receiver
//   e2e            run -> submit -> signed callback -> webhook, paced
//
// Each path's rows per job come from the workers = 1 run; bench_parts sqlite
// replays them (same statements, same rows, the same number of jobs per
// transaction) for that path's SQLite part.

const fs = require('node:fs');
const path = require('node:path');

// SQL text (as store_sqlite.c prepares it) -> replay kind of bench_parts.
const KINDS = [
  [/^INSERT INTO jobs\(/, 'job_insert'],
  [/^UPDATE jobs SET/, 'job_update'],
  [/^INSERT INTO work\(/, 'work_add'],
  [/^UPDATE work SET lease_owner=\?1, lease_until=\?2 WHERE id IN/, 'work_claim'],
  [/^DELETE FROM work WHERE id=/, 'work_done'],
  [/^UPDATE work SET kind=/, 'work_become'],
  [/^UPDATE work SET due_at=/, 'work_resched'],
  [/^DELETE FROM work WHERE job_id=/, 'work_drop'],
  [/^INSERT INTO deliveries/, 'dlv_insert'],
  [/^UPDATE deliveries/, 'dlv_update'],
  [/^INSERT INTO attempts/, 'att_insert'],
  [/^INSERT INTO callbacks/, 'cb_insert'],
  [/^INSERT INTO events/, 'ev_add'],
  [/^INSERT INTO idempotency/, 'idem_put'],
];

function readRowcount(file) {
  const m = new Map();
  let text = '';
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    return m;
  }
  for (const line of text.split('\n')) {
    const [e, r, ...rest] = line.split('\t');
    if (!rest.length) continue;
    m.set(rest.join('\t'), { execs: Number(e), rows: Number(r) });
  }
  return m;
}

// Per-job summary of the statements run between two snapshots.
function rowsPerJob(before, after, jobs) {
  const per = {};
  let rows = 0;
  let commits = 0;
  let savepoints = 0;
  let reads = 0;
  let readStatements = {};
  const recipe = {};
  let unreplayed = 0;
  for (const [sql, a] of after) {
    const b = before.get(sql) || { execs: 0, rows: 0 };
    const execs = a.execs - b.execs;
    const changed = a.rows - b.rows;
    if (execs <= 0 && changed <= 0) continue;
    if (/^COMMIT/.test(sql)) commits += execs;
    else if (/^SAVEPOINT/.test(sql)) savepoints += execs;
    else if (/^(BEGIN|RELEASE|ROLLBACK|PRAGMA)/.test(sql)) continue;
    else if (/^SELECT/.test(sql)) {
      reads += execs;
      const key = sql.replace(/^SELECT .* FROM (\w+) WHERE (.{0,40}).*$/, '$1 WHERE $2').slice(0, 60);
      readStatements[key] = (readStatements[key] || 0) + execs / jobs;
    } else {
      const k = (KINDS.find(([re]) => re.test(sql)) || [null, null])[1];
      rows += changed;
      const name = k || sql.slice(0, 40);
      per[name] = per[name] || { statements: 0, rows: 0 };
      per[name].statements += execs / jobs;
      per[name].rows += changed / jobs;
      if (k) {
        recipe[k] = recipe[k] || { steps: 0, rows: 0 };
        recipe[k].steps += execs / jobs;
        recipe[k].rows += changed / jobs;
      } else unreplayed += changed / jobs;
    }
  }
  const r3 = (x) => Math.round(x * 1000) / 1000;
  for (const v of Object.values(per)) {
    v.statements = r3(v.statements);
    v.rows = r3(v.rows);
  }
  for (const k of Object.keys(readStatements)) readStatements[k] = r3(readStatements[k]);
  return {
    rows_per_job: r3(rows / jobs),
    write_statements: per,
    commits_per_job: r3(commits / jobs),
    jobs_per_commit: commits ? r3(jobs / commits) : jobs,
    savepoints_per_job: r3(savepoints / jobs),
    reads_per_job: r3(reads / jobs),
    reads: readStatements,
    unreplayed_rows_per_job: r3(unreplayed),
    recipe: Object.entries(recipe)
      .filter(([, v]) => v.steps > 0.0005)
      .map(([k, v]) => `${k}:${v.steps.toFixed(4)}:${v.rows.toFixed(4)}`)
      .join(','),
  };
}

async function benchPaths(X) {
  const { S, opts, h, P, progress, fmt, round, figure } = X;
  const c = S.paths;
  const shim = path.join(opts.build, 'bench', 'libgenrelay_rowcount.so');
  const parts = path.join(opts.build, 'bench', 'bench_parts');
  let seq = 0;

  // A genrelay with the row counter; snapshot() -> {cpu, rows, m}.
  const start = async (config, dir) => {
    const file = path.join(X.tmpRoot, `rowcount-${++seq}.tsv`);
    // Under a sanitizer build the preloaded shim comes before libasan in the
    // library list, which ASan refuses unless told the order is fine.
    const asan = `${process.env.ASAN_OPTIONS ? `${process.env.ASAN_OPTIONS}:` : ''}verify_asan_link_order=0`;
    const gr = await X.startGenrelay(config, dir, { LD_PRELOAD: shim, GENRELAY_ROWCOUNT_FILE: file, ASAN_OPTIONS: asan });
    gr.snapshot = async () => {
      await h.sleep(250); // the shim rewrites its file every 100 ms
      return { cpu: P.cpuSeconds(gr.child.pid), rows: readRowcount(file), m: await P.metrics(gr.url) };
    };
    return gr;
  };
  const waitUntil = async (cond, ms) => {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      if (await cond()) return true;
      await h.sleep(100);
    }
    return false;
  };
  const summary = (s0, s1, jobs, extra = {}) => ({
    jobs,
    cpu_us_per_job: round(((s1.cpu - s0.cpu) / Math.max(1, jobs)) * 1e6, 1),
    cpu_s: round(s1.cpu - s0.cpu, 2),
    store: rowsPerJob(s0.rows, s1.rows, Math.max(1, jobs)),
    ...extra,
  });
  const ingestBody = X.tmpFile('paths-ingest.json', X.runBody('http://127.0.0.1:9/hook/acme'));
  const wrkRun = (gr, seconds) =>
    P.wrk({ url: gr.url + X.MODEL_PATH, script: 'run.lua', args: [ingestBody, X.ACME.api_key], connections: c.connections, seconds });
  const good = (w) => (w.requests - w.errors.status) / w.duration_s;
  // --profile: perf record of the workers = 1 run of each path.
  const prof1 = (workers, gr, seconds, name) => (workers === c.workers[0] ? X.maybeProfile(gr, Math.max(1, seconds), name) : null);

  async function ingestAlone(workers) {
    const hole = await X.blackhole();
    const gr = await start(X.benchConfig(`${hole.url}/fal`, { workers }));
    await wrkRun(gr, 1); // fills max_inflight with hanging submits
    const s0 = await gr.snapshot();
    const prof = prof1(workers, gr, c.ingestSeconds - 1, 'paths-ingest-alone');
    const w = await wrkRun(gr, c.ingestSeconds);
    await prof;
    const s1 = await gr.snapshot();
    const jobs = s1.m.genrelay_jobs_accepted_total - s0.m.genrelay_jobs_accepted_total;
    await gr.kill('SIGKILL'); // its hanging submits would hold a SIGTERM drain
    await X.stopAll();
    return summary(s0, s1, jobs, { jobs_per_s: round(good(w), 0), p99_ms: round(w.latency_us.p99 / 1000) });
  }

  async function ingestSubmit(workers) {
    const recv = await X.startReceiver();
    const gr = await start(X.benchConfig(`${recv.url}/fal`, { workers }));
    const caughtUp = async () => {
      const m = await P.metrics(gr.url);
      return m.genrelay_provider_submits_total >= m.genrelay_jobs_accepted_total;
    };
    await wrkRun(gr, 1);
    await waitUntil(caughtUp, 15000);
    const s0 = await gr.snapshot();
    const prof = prof1(workers, gr, c.ingestSeconds - 1, 'paths-ingest-submit');
    const w = await wrkRun(gr, c.ingestSeconds);
    await prof;
    const all = await waitUntil(caughtUp, 30000);
    const s1 = await gr.snapshot();
    const jobs = s1.m.genrelay_jobs_accepted_total - s0.m.genrelay_jobs_accepted_total;
    const submits = s1.m.genrelay_provider_submits_total - s0.m.genrelay_provider_submits_total;
    await X.stopAll();
    return summary(s0, s1, jobs, { jobs_per_s: round(good(w), 0), p99_ms: round(w.latency_us.p99 / 1000), submits, all_submitted: all });
  }

  async function callback(workers) {
    const sim = await X.startProvsim(['--callback-workers', '0']);
    const gr = await start(X.benchConfig(`${sim.url}/fal`, { workers, jobs: { poll_after_s: 120 } }));
    await h.sleep(1000); // fal's JWKS
    const delayMs = (c.cbSeconds + c.cbMarginS) * 1000; // every submit done before the first callback
    const input = JSON.parse(X.runBody('x', { delay_ms: delayMs })).input;
    const body = X.tmpFile(`paths-cb-${workers}.json`, JSON.stringify({ input, track_id: 'bench-cb' })); // no webhook_url: nothing to deliver
    const t0 = Date.now();
    await P.wrk({ url: gr.url + X.MODEL_PATH, script: 'paced.lua', args: [body, c.cbRate, 0, '', `Bearer ${X.ACME.api_key}`], connections: 16, seconds: c.cbSeconds });
    await waitUntil(async () => {
      const m = await P.metrics(gr.url);
      return m.genrelay_provider_submits_total >= m.genrelay_jobs_accepted_total;
    }, 15000);
    const s0 = await gr.snapshot();
    const early = s0.m.genrelay_callbacks_total || 0;
    const jobs = s0.m.genrelay_jobs_accepted_total;
    // The callbacks arrive from about delayMs after the first submit, for cbSeconds.
    const prof = X.opts.profile && workers === c.workers[0]
      ? (async () => { await h.sleep(Math.max(0, delayMs - (Date.now() - t0)) + 500); return X.maybeProfile(gr, Math.max(1, c.cbSeconds - 1), 'paths-callback'); })()
      : null;
    const all = await waitUntil(async () => {
      const m = await P.metrics(gr.url);
      return m.genrelay_callbacks_total >= jobs && m.genrelay_jobs_succeeded_total >= jobs;
    }, delayMs + 30000);
    await prof;
    const s1 = await gr.snapshot();
    await X.stopAll();
    const n = s1.m.genrelay_callbacks_total - early;
    return summary(s0, s1, n, {
      offered_rate: c.cbRate, callbacks_before_window: early, all_ended: all, jobs_succeeded: s1.m.genrelay_jobs_succeeded_total,
      callbacks_rejected: s1.m.genrelay_callbacks_rejected_total, window_s: round((Date.now() - t0) / 1000, 1),
    });
  }

  async function delivery(workers) {
    const recv = await X.startReceiver();
    const signed = X.tmpFile('paths-signed.tsv', X.signedBodies(1000));
    const hookRun = () => P.wrk({ url: `${recv.url}/hook/acme`, script: 'hooks.lua', args: [signed], connections: 64, seconds: c.hookCeilingSeconds });
    const wrkRate = (await hookRun()).rps;
    await recv.reset();
    const dir = fs.mkdtempSync(path.join(X.tmpRoot, `paths-delivery-${workers}-`));
    const gen = await P.run(path.join(opts.build, 'bench', 'bench_storegen'),
      ['--db', path.join(dir, 'genrelay.db'), '--jobs', String(c.deliveryJobs), '--deliveries', '--webhook', `${recv.url}/hook/acme`, '--ids-sample', '0'], { timeoutMs: 300000 });
    if (gen.code !== 0) throw new Error(`storegen: ${gen.stderr}`);
    // genrelay starts draining as soon as it is up, so the window is its
    // whole life: the baseline is what the same genrelay costs to start
    // and idle 250 ms on an empty store (measured just before), no rows.
    const idle = await start(X.benchConfig(`${recv.url}/fal`, { workers }));
    const startup = (await idle.snapshot()).cpu;
    await idle.stop();
    const gr = await start(X.benchConfig(`${recv.url}/fal`, { workers }), dir);
    const s0 = { cpu: startup, rows: new Map() };
    const st0 = { verified: 0 };
    const prof = prof1(workers, gr, Math.max(1, Math.min(4, Math.floor(c.deliveryJobs / 15000))), 'paths-delivery');
    await waitUntil(async () => (await recv.stats()).verified >= c.deliveryJobs, Math.max(30000, c.deliveryJobs * 2));
    await prof;
    const s1 = await gr.snapshot();
    const st = await recv.stats();
    await X.stopAll();
    const n = st.verified - st0.verified;
    const span = Number(BigInt(st.last_ns) - BigInt(st.first_ns)) / 1e9;
    const rate = (st.verified - 1) / span;
    return summary(s0, s1, n, {
      webhooks_per_s: round(rate, 0), wrk_same_receiver_per_s: round(wrkRate, 0), rate_ratio: round(rate / wrkRate), verified: st.verified,
      bad: st.bad, connections_opened: st.connections, startup_cpu_s: round(startup, 3),
    });
  }

  async function e2e(workers) {
    const countFile = path.join(X.tmpRoot, `paths-e2e-count-${workers}`);
    const recv = await X.startReceiver(countFile);
    const sim = await X.startProvsim(['--callback-workers', '0']);
    const gr = await start(X.benchConfig(`${sim.url}/fal`, { workers, jobs: { poll_after_s: 30 } }));
    await h.sleep(1000);
    const body = X.tmpFile(`paths-e2e-${workers}.json`, X.runBody(`${recv.url}/hook/acme`, { delay_ms: 100 }));
    await recv.reset();
    const s0 = await gr.snapshot();
    const prof = X.opts.profile && workers === c.workers[0]
      ? (async () => { await h.sleep(3000); return X.maybeProfile(gr, Math.min(10, c.e2eSeconds - 4), 'paths-e2e'); })()
      : null;
    const w = await P.wrk({
      url: gr.url + X.MODEL_PATH, script: 'paced.lua', args: [body, c.e2eMaxRate, c.e2eWindow, countFile, `Bearer ${X.ACME.api_key}`],
      connections: 64, seconds: c.e2eSeconds, timeoutS: 10,
    });
    const mid = await recv.stats();
    await prof;
    let last = -1;
    let still = Date.now();
    for (;;) {
      const m = await P.metrics(gr.url);
      const st = await recv.stats();
      if (st.verified >= m.genrelay_jobs_accepted_total) break;
      if (st.verified !== last) {
        last = st.verified;
        still = Date.now();
      } else if (Date.now() - still > 20000) break;
      await h.sleep(200);
    }
    const s1 = await gr.snapshot();
    const st = await recv.stats();
    await X.stopAll();
    const accepted = s1.m.genrelay_jobs_accepted_total;
    return summary(s0, s1, st.verified, {
      jobs_per_s: round(mid.verified / w.duration_s, 0), accepted, delivered_verified: st.verified, lost: accepted - st.verified,
      callbacks_rejected: s1.m.genrelay_callbacks_rejected_total, webhook_connections_opened: st.connections,
    });
  }

  const PATHS = { ingest_alone: ingestAlone, ingest_submit: ingestSubmit, callback, delivery, e2e };
  const measured = {};
  for (const workers of c.workers) measured[workers] = {};
  // Path by path, workers 1 then 2 back to back, so that other load on the
  // machine hits both alike.
  for (const [name, fn] of Object.entries(PATHS)) {
    for (const workers of c.workers) {
      const r = await fn(workers);
      measured[workers][name] = r;
      progress(`paths, workers ${workers}: ${name}: ${fmt(r.cpu_us_per_job, 1)} us CPU per job over ${fmt(r.jobs)} jobs, ${r.store.rows_per_job} store rows per job (${r.store.jobs_per_commit} jobs per commit)${r.jobs_per_s ? `, ${fmt(r.jobs_per_s)} jobs/s` : ''}${r.webhooks_per_s ? `, ${fmt(r.webhooks_per_s)} webhooks/s` : ''}`);
    }
  }

  // ---- the parts, each on its own
  progress('paths: the parts on their own (bare MHD, curl multi, SQLite rows, Lua, Ed25519, HMAC)');
  const part = {};
  const runJson = async (bin, args, timeoutMs = 300000) => {
    const r = await P.run(bin, args, { timeoutMs });
    if (r.code !== 0) throw new Error(`${path.basename(bin)} ${args[0]}: ${r.stderr || r.stdout}`);
    return JSON.parse(r.stdout.trim().split('\n').pop());
  };
  // bare libmicrohttpd: CPU per answered request of bench_ceiling under wrk.
  const cbBodyText = JSON.stringify({ request_id: '3f1c2a9e-7b44-4c1e-9a51-2d8f0c6b7e13', status: 'OK', payload: { prompt: 'x'.repeat(1340) } });
  const cbBody = X.tmpFile('paths-cbbody.json', cbBodyText);
  for (const held of [false, true]) {
    const ceil = await P.startCeiling(opts.build, held ? ['--suspend'] : []);
    const mhd = async (file) => {
      await P.wrk({ url: ceil.url + X.MODEL_PATH, script: 'run.lua', args: [file, X.ACME.api_key], connections: c.connections, seconds: 1 });
      const c0 = P.cpuSeconds(ceil.pid);
      const w = await P.wrk({ url: ceil.url + X.MODEL_PATH, script: 'run.lua', args: [file, X.ACME.api_key], connections: c.connections, seconds: c.partSeconds });
      return { cpu_us: round(((P.cpuSeconds(ceil.pid) - c0) / Math.max(1, w.requests)) * 1e6, 2), req_per_s: round(w.rps, 0) };
    };
    if (held) {
      // Diagnostic, not a part: the same answer held for one loop iteration
      // (suspend + resume), as genrelay holds every answer for its commit.
      part.mhd_run.held_us = (await mhd(ingestBody)).cpu_us;
    } else {
      part.mhd_run = await mhd(ingestBody);
      part.mhd_callback = await mhd(cbBody);
    }
    await ceil.stop();
  }
  // curl multi, kept-alive connections, to the same stub.
  {
    const recv = await X.startReceiver();
    const input = X.tmpFile('paths-input.json', JSON.stringify(JSON.parse(X.runBody('x')).input));
    const cbUrl = encodeURIComponent('http://127.0.0.1:8080/v1/callbacks/fal/job_01JDBENCH0000000000000001/Zm9vYmFyYmF6cXV4MDEyMzQ1Njc4OWFiY2RlZg');
    const sub = await runJson(parts, ['curl', '--url', `${recv.url}/fal/fal-ai/flux/dev?fal_webhook=${cbUrl}`, '--body', input,
      '--header', 'Content-Type: application/json', '--header', 'Authorization: Key bench-fal-key', '--concurrency', '32', '--requests', String(c.curlRequests)]);
    const event = X.signedBodies(1).split('\t')[3].trim(); // the default hook's body shape, 434 bytes
    const ev = X.tmpFile('paths-event.json', event);
    const hook = await runJson(parts, ['curl', '--url', `${recv.url}/sink/acme`, '--body', ev, '--header', 'Content-Type: application/json',
      '--header', 'webhook-id: msg_01JDBENCH0000000000000001', '--header', 'webhook-timestamp: 1732300004',
      '--header', 'webhook-signature: v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=', '--concurrency', '32', '--requests', String(c.curlRequests)]);
    // Diagnostics (not parts): the same webhook loop with fetch.c's
    // per-request work (--as-fetch), at 32 and at 1,024 transfers in flight
    // (limits.max_inflight's default): what libcurl costs as genrelay drives it.
    const hookArgs = ['curl', '--url', `${recv.url}/sink/acme`, '--body', ev, '--header', 'Content-Type: application/json',
      '--header', 'webhook-id: msg_01JDBENCH0000000000000001', '--header', 'webhook-timestamp: 1732300004',
      '--header', 'webhook-signature: v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=', '--requests', String(c.curlRequests), '--as-fetch'];
    const asFetch32 = await runJson(parts, [...hookArgs, '--concurrency', '32']);
    const asFetch1024 = await runJson(parts, [...hookArgs, '--concurrency', '1024']);
    part.curl_submit = { cpu_us: round(sub.cpu_ns_per_op / 1000, 2), body_bytes: sub.body_bytes, concurrency: 32 };
    part.curl_webhook = {
      cpu_us: round(hook.cpu_ns_per_op / 1000, 2), body_bytes: hook.body_bytes, concurrency: 32,
      as_fetch_c32_us: round(asFetch32.cpu_ns_per_op / 1000, 2), as_fetch_c1024_us: round(asFetch1024.cpu_ns_per_op / 1000, 2),
    };
    await X.stopAll();
  }
  {
    const o = await runJson(path.join(opts.build, 'bench', 'bench_scriptcost'),
      ['--scripts', path.join(X.SRC, 'scripts'), '--iterations', String(c.luaIterations), '--rounds', '3']);
    for (const k of ['submit', 'on_submitted', 'on_callback', 'transform']) part[`lua_${k}`] = { cpu_us: round(o.lua_ns[k] / 1000, 2) };
  }
  {
    const ed = await runJson(parts, ['ed25519', '--iterations', String(c.cryptoIterations)]);
    part.ed25519 = { cpu_us: round(ed.cpu_ns_per_op / 1000, 2), verify_only_us: round(ed.verify_only_cpu_ns / 1000, 2) };
    const hm = await runJson(parts, ['hmac', '--iterations', String(c.cryptoIterations * 10)]);
    part.hmac_token = { cpu_us: round(hm.token_cpu_ns / 1000, 2), oneshot_us: round(hm.token_oneshot_cpu_ns / 1000, 2) };
    part.hmac_webhook = { cpu_us: round(hm.webhook_cpu_ns / 1000, 2), oneshot_us: round(hm.webhook_oneshot_cpu_ns / 1000, 2) };
  }
  // SQLite: each path's rows (as measured with workers = 1), replayed.
  for (const name of Object.keys(PATHS)) {
    const st = measured[c.workers[0]][name].store;
    if (!st.recipe) {
      part[`sql_${name}`] = { cpu_us: 0, rows_per_job: 0 };
      continue;
    }
    const db = path.join(fs.mkdtempSync(path.join(X.tmpRoot, `sql-${name}-`)), 'genrelay.db');
    const o = await runJson(parts, ['sqlite', '--db', db, '--recipe', st.recipe, '--per-commit', String(Math.max(1, st.jobs_per_commit)), '--jobs', String(c.sqlJobs)]);
    part[`sql_${name}`] = { cpu_us: round(o.cpu_ns_per_op / 1000, 2), rows_per_job: o.rows_per_job, jobs_per_commit: o.jobs_per_commit, cpu_us_per_row: round(o.cpu_ns_per_row / 1000, 2) };
  }

  // ---- composite ceilings: the parts each path needs per job
  const lua4 = ['lua_submit', 'lua_on_submitted', 'lua_on_callback', 'lua_transform'];
  const COMPOSE = {
    ingest_alone: ['mhd_run', 'sql_ingest_alone'],
    ingest_submit: ['mhd_run', 'curl_submit', 'lua_submit', 'lua_on_submitted', 'hmac_token', 'sql_ingest_submit'],
    callback: ['mhd_callback', 'ed25519', 'hmac_token', 'lua_on_callback', 'sql_callback'],
    delivery: ['curl_webhook', 'lua_transform', 'hmac_webhook', 'sql_delivery'],
    e2e: ['mhd_run', 'mhd_callback', 'curl_submit', 'curl_webhook', ...lua4, 'ed25519', 'hmac_token', 'hmac_token', 'hmac_webhook', 'sql_e2e'],
  };
  const LABEL = {
    ingest_alone: 'ingest alone (commit, 202)', ingest_submit: 'ingest + provider submit', callback: 'provider callback (verify, parse, end)',
    delivery: 'webhook delivery', e2e: 'end to end (fal signed callbacks)',
  };
  const rowsOut = [];
  const w1 = c.workers[0];
  const w2 = c.workers[1];
  for (const name of Object.keys(PATHS)) {
    const a = measured[w1][name];
    const b = w2 ? measured[w2][name] : null;
    const ceilParts = {};
    for (const k of COMPOSE[name]) ceilParts[k] = round((ceilParts[k] || 0) + part[k].cpu_us, 2);
    const ceiling = Object.values(ceilParts).reduce((x, y) => x + y, 0);
    const ratio = a.cpu_us_per_job / ceiling;
    let target = 'reported';
    let pass;
    if (name === 'ingest_submit' || name === 'callback') {
      target = '<= 1.5x ceiling';
      pass = ratio <= 1.5;
    } else if (name === 'delivery') {
      target = '<= 1.5x ceiling, rate >= 0.3 of wrk';
      pass = ratio <= 1.5 && a.rate_ratio >= 0.3;
    } else if (name === 'e2e') {
      target = '<= 200 us/job, none lost';
      pass = a.cpu_us_per_job <= 200 && a.lost === 0;
    }
    const rate = (r) => (r ? r.jobs_per_s || r.webhooks_per_s || null : null);
    const row = {
      key: `cpu_${name}`, name: `CPU/job: ${LABEL[name]}`, value: a.cpu_us_per_job, unit: 'us/job', ceiling, ceiling_unit: 'us/job', ceiling_label: 'composite',
      ratio, target, pass, digits: 1,
      detail: {
        ceiling_parts_us: ceilParts,
        [`workers_${w1}`]: a,
        ...(b ? { [`workers_${w2}`]: b, [`ratio_workers_${w2}`]: round(b.cpu_us_per_job / ceiling) } : {}),
        store_rows_per_job: a.store.rows_per_job,
        store_rows_cost_alone_us: part[`sql_${name}`].cpu_us,
        rate: { [`workers_${w1}`]: rate(a), ...(b ? { [`workers_${w2}`]: rate(b) } : {}) },
      },
      command: 'bench/run --only paths build',
    };
    figure(row);
    rowsOut.push(row);
  }
  // workers 1 vs 2 on ingest and end to end (the rule for workers = "auto").
  if (w2) {
    for (const [name, label] of [['ingest_submit', 'ingest + submit'], ['e2e', 'end to end']]) {
      const a = measured[w1][name].jobs_per_s;
      const b = measured[w2][name].jobs_per_s;
      figure({
        key: `workers_${name}`, name: `workers ${w2} vs ${w1}: ${label}`, value: b, unit: 'jobs/s', ceiling: a, ceiling_unit: 'jobs/s', ceiling_label: `workers ${w1}`,
        target: 'auto is the default only if faster', pass: undefined,
        detail: { cpu_us_per_job: { [`workers_${w1}`]: measured[w1][name].cpu_us_per_job, [`workers_${w2}`]: measured[w2][name].cpu_us_per_job } },
        command: 'bench/run --only paths build',
      });
    }
  }
  X.pathsTable = { rows: rowsOut, parts: part, workers: c.workers };
}

// The CPU-per-job table printed after the main one.
function pathsTable(t, fmt) {
  if (!t) return '';
  const [w1, w2] = t.workers;
  const head = ['path', `CPU/job (w=${w1})`, 'composite ceiling', 'ratio'];
  if (w2) head.push(`CPU/job (w=${w2})`, 'ratio');
  head.push(`rate (w=${w1})`);
  if (w2) head.push(`rate (w=${w2})`);
  head.push('store rows/job', 'rows alone', 'target', 'result');
  const rows = [head];
  for (const f of t.rows) {
    const a = f.detail[`workers_${w1}`];
    const b = w2 ? f.detail[`workers_${w2}`] : null;
    const rate = (r) => (r.jobs_per_s ? `${fmt(r.jobs_per_s)} jobs/s` : r.webhooks_per_s ? `${fmt(r.webhooks_per_s)}/s (wrk ${fmt(r.wrk_same_receiver_per_s)}/s)` : `${fmt(r.offered_rate)}/s offered`);
    const row = [f.name.replace(/^CPU\/job: /, ''), `${fmt(a.cpu_us_per_job, 1)} us`, `${fmt(f.ceiling, 1)} us`, fmt(f.ratio, 2)];
    if (b) row.push(`${fmt(b.cpu_us_per_job, 1)} us`, fmt(b.cpu_us_per_job / f.ceiling, 2));
    row.push(rate(a));
    if (b) row.push(rate(b));
    row.push(`${fmt(a.store.rows_per_job, 1)} (${fmt(a.store.jobs_per_commit, 1)} jobs/commit)`, `${fmt(f.detail.store_rows_cost_alone_us, 1)} us`, f.target, f.pass === null ? 'smoke' : f.pass === undefined ? '-' : f.pass ? 'PASS' : 'MISS');
    rows.push(row);
  }
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const line = (r) => '| ' + r.map((x, i) => x.padEnd(w[i])).join(' | ') + ' |';
  const parts = Object.entries(t.parts).map(([k, v]) => `${k} ${fmt(v.cpu_us, 2)} us`).join(', ');
  return [line(rows[0]), '|' + w.map((n) => '-'.repeat(n + 2)).join('|') + '|', ...rows.slice(1).map(line), '', `parts (CPU per operation, each on its own): ${parts}`].join('\n');
}

module.exports = { benchPaths, pathsTable, rowsPerJob, readRowcount };
