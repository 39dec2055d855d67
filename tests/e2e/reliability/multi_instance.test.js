'use strict';
// Several instances on one PostgreSQL behind HAProxy, one of them killed.
//
// Three genrelays share a database (lib/pg.js starts it) behind HAProxy,
// health-checked on /healthz (the configuration docs/deploy.md shows). Jobs go
// through HAProxy to provsim (callbacks normal, missing, duplicated, late) and
// back to a receiver; mid-run one instance is killed with kill -9 and later
// restarted. Every accepted job ends terminal with the outcome provsim was
// told and is delivered, with one delivery id; provider submits run twice
// only for work whose lease expired with the dead instance (counted and
// reported, as are the ingest errors HAProxy let through while its check
// caught up and how long the dead instance's work took to resume). The store
// is consistent at the end. Figures: build/reliability/multi_instance.json.

const { describe, test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const h = require('../lib/harness');
const R = require('../lib/reliability');
const pg = require('../lib/pg');

const N = R.SOAK ? 20000 : 5000;
const LEASE_S = 5;
const CHECK_MS = 500;
const WAIT_MS = R.SOAK ? 600000 : 180000;

function haproxyConfig(front, backs) {
  return [
    'global',
    '    maxconn 4096',
    'defaults',
    '    mode http',
    '    timeout connect 2s',
    '    timeout client 60s',
    '    timeout server 60s',
    '    retries 2',
    '    option redispatch',
    'frontend genrelay',
    `    bind 127.0.0.1:${front}`,
    '    default_backend genrelay',
    'backend genrelay',
    '    balance roundrobin',
    '    option httpchk GET /healthz',
    '    http-check expect status 200',
    `    default-server inter ${CHECK_MS}ms fall 2 rise 1`,
    ...backs.map((p, i) => `    server g${i + 1} 127.0.0.1:${p} check`),
    '',
  ].join('\n');
}

describe('three instances on one PostgreSQL behind HAProxy', () => {
  let server;
  let sim;
  let rcv;
  let lb;
  let lbUrl;
  let dir;
  const grs = [];

  before(async () => {
    [server, sim, rcv] = await Promise.all([pg.start({ settings: { log_lock_waits: 'on' } }), h.startProvsim(), R.startCountingReceiver()]);
    const store = await server.createDb('multi');
    for (let i = 0; i < 3; i++) {
      grs.push(
        await h.startGenrelay({
          simUrl: sim.url,
          config: { store, workers: 2, jobs: { poll_after_s: 1, poll_interval_s: 0.3, poll_max_s: 1, submit_window_s: 60, job_deadline_s: 900, lease_s: LEASE_S } },
        }),
      );
    }
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'genrelay-haproxy-'));
    const front = await h.freePort();
    fs.writeFileSync(path.join(dir, 'haproxy.cfg'), haproxyConfig(front, grs.map((g) => g.port)));
    lb = spawn('haproxy', ['-db', '-f', path.join(dir, 'haproxy.cfg')], { stdio: ['ignore', 'pipe', 'pipe'] });
    let lbLog = '';
    lb.stdout.on('data', (d) => (lbLog += d));
    lb.stderr.on('data', (d) => (lbLog += d));
    lbUrl = `http://127.0.0.1:${front}`;
    await h.waitFor(async () => {
      if (lb.exitCode !== null) throw Object.assign(new Error(`haproxy exited: ${lbLog}`), { fatal: true });
      const r = await h.request(lbUrl + '/healthz', { timeoutMs: 1000 }).catch(() => null);
      return r && r.status === 200;
    }, 20000, { what: 'haproxy answering' });
  });

  after(async () => {
    if (lb) await h.stopChild(lb);
    await Promise.all(grs.map((g) => g.stop().catch(() => {})));
    const reports = [];
    for (const g of grs) reports.push(...(await g.sanitizerReports()));
    await R.shutdown(null, rcv, sim);
    if (server) await server.destroy();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(reports, [], 'sanitizer reports');
  });

  test(`${N} jobs, one instance killed with kill -9 and restarted: nothing lost`, { timeout: WAIT_MS * 3 }, async () => {
    const tag = 'multi';
    const hook = `/${tag}`;
    const lbApi = (method, p, body, headers = {}, opts = {}) =>
      h.request(lbUrl + p, { method, headers: { authorization: `Bearer ${h.ACME.api_key}`, ...headers }, body, timeoutMs: opts.timeoutMs || 30000 });
    const stats = { resubmits: 0 };
    const accepted = new Map();
    const refused = [];
    const ingestErrors = []; // [ms since start] of non-202 answers and failed connections
    const errCodes = {};
    const t0 = Date.now();
    const countingApi = async (...a) => {
      let r;
      try {
        r = await lbApi(...a);
      } catch (e) {
        ingestErrors.push(Date.now() - t0);
        throw e;
      }
      if (r.status !== 202 && r.status !== 200) {
        ingestErrors.push(Date.now() - t0);
        errCodes[r.status] = (errCodes[r.status] || 0) + 1;
      }
      // HAProxy's answer when the instance died mid-request: the client
      // retries it like a lost connection (same Idempotency-Key).
      if (r.status === 502 || r.status === 504) throw new Error(`haproxy ${r.status}`);
      return r;
    };
    let killAt = null;
    let restartAt = null;
    const victim = grs[1];
    const submitter = R.pool(N, 32, async (i) => {
      const model = R.MODELS[i % R.MODELS.length];
      const fail = i % 20 === 7;
      const cb = ['normal', 'normal', 'none', 'duplicate', 'late'][i % 5];
      const payload = {
        input: { prompt: `${tag}-${i}`, sim: { delay_ms: 50 + ((i * 7919) % 1500), callback: cb, outcome: fail ? 'fail' : 'success' } },
        webhook_url: rcv.url + hook,
      };
      const r = await R.submitReliably(() => countingApi, model, payload, { stats, deadlineMs: 120000 });
      if (r.job_id) accepted.set(r.job_id, fail ? 'failed' : 'succeeded');
      else refused.push(r);
    });
    const killer = (async () => {
      await h.waitFor(() => accepted.size >= N * 0.4, WAIT_MS, { what: '40% accepted' });
      killAt = Date.now() - t0;
      await victim.kill('SIGKILL');
      await h.waitFor(() => accepted.size >= N * 0.7 || accepted.size + refused.length >= N, WAIT_MS, { what: '70% accepted' });
      restartAt = Date.now() - t0;
      await victim.restart();
    })();
    await submitter;
    await killer;

    const ids = [...accepted.keys()];
    const missing = () => ids.filter((id) => rcv.delivered(id).length === 0);
    try {
      await h.waitFor(() => missing().length === 0, WAIT_MS, { interval: 500, what: `all ${ids.length} jobs delivered` });
    } catch (e) {
      /* reported below */
    }
    const lastDelivery = Math.max(0, ...rcv.records.filter((x) => x.path === hook).map((x) => x.at)) - t0;
    const notDelivered = missing();
    const jobs = await R.fetchJobs(grs[0].api, ids, 16);
    const notTerminal = ids.filter((id) => !jobs.get(id) || !R.TERMINAL.has(jobs.get(id).status));
    const wrongOutcome = ids.filter((id) => jobs.get(id) && R.TERMINAL.has(jobs.get(id).status) && jobs.get(id).status !== accepted.get(id));
    const recs = rcv.records.filter((x) => x.path === hook);
    const duplicates = recs.filter((x) => x.duplicate && x.answered === 200).length;
    const twoIds = ids.filter((id) => new Set(rcv.delivered(id).map((x) => x.id)).size > 1);
    // Provider submits per prompt: more than one is a step run again.
    const perPrompt = new Map();
    for (const x of await sim.requests()) {
      const p = x.method === 'POST' && x.body && (x.body.prompt || (x.body.input && x.body.input.prompt));
      if (typeof p === 'string' && p.startsWith(`${tag}-`)) perPrompt.set(p, (perPrompt.get(p) || 0) + 1);
    }
    const runTwice = [...perPrompt.values()].filter((n) => n > 1).length;
    const consistency = R.storeConsistency(grs[0].dbPath);
    // The longest event-loop iteration of each instance (lock waits, store
    // round trips and scripts all count).
    const stalls = [];
    for (const g of grs) {
      const t = (await h.request(g.url + '/metrics').catch(() => ({ text: '' }))).text || '';
      const m = /^genrelay_loop_stall_max_seconds ([\d.]+)/m.exec(t);
      if (m) stalls.push(Number(m[1]));
    }
    const errWindow = ingestErrors.length ? Math.max(...ingestErrors) - Math.min(...ingestErrors) : 0;
    const figures = {
      instances: 3,
      jobs_submitted: N,
      jobs_accepted: ids.length,
      jobs_refused: refused.length,
      kill9_at_s: killAt / 1000,
      restart_at_s: restartAt / 1000,
      ingest_errors: ingestErrors.length,
      ingest_error_statuses: errCodes,
      ingest_error_window_ms: errWindow,
      health_check_interval_ms: CHECK_MS,
      resubmits: stats.resubmits,
      deliveries: recs.length,
      duplicates,
      jobs_with_two_delivery_ids: twoIds.length,
      provider_steps_run_twice: runTwice,
      lease_s: LEASE_S,
      lost: notDelivered.length,
      not_terminal: notTerminal.length,
      wrong_outcome: wrongOutcome.length,
      store_consistent: consistency.ok,
      loop_stall_max_s: stalls.length ? Math.max(...stalls) : null,
      seconds: Math.round(lastDelivery / 1000),
    };
    R.report('multi_instance', figures);
    // GENRELAY_DEBUG_MULTI=1: what PostgreSQL logged about lock waits.
    if (process.env.GENRELAY_DEBUG_MULTI) {
      const lines = server.log().split('\n').filter((l) => /STATEMENT|deadlock detected|canceling/i.test(l));
      const counts = {};
      for (const l of lines) {
        const k = l.replace(/^.*?(STATEMENT|ERROR)/, '$1').slice(0, 160);
        counts[k] = (counts[k] || 0) + 1;
      }
      process.stdout.write(`postgresql log: ${JSON.stringify(counts, null, 1)}\n`);
    }
    assert.equal(refused.length, 0, `refused: ${JSON.stringify(refused.slice(0, 3))}`);
    assert.deepEqual(notDelivered, [], 'every accepted job delivered');
    assert.deepEqual(notTerminal, [], 'every accepted job terminal');
    assert.deepEqual(wrongOutcome, [], 'outcomes as provsim was told');
    assert.deepEqual(twoIds, [], 'one delivery id per job');
    assert.ok(consistency.ok, consistency.problems.join('\n'));
  });
});
