'use strict';
// Several instances on one PostgreSQL: an api-role instance's runs reach an
// idle worker-role instance through LISTEN/NOTIFY (its due timer's safety
// net set to an hour), and a customer's rate limit holds across instances
// through the store's shared bucket. Real processes: genrelay, provsim and a
// PostgreSQL started for this file (lib/pg.js) as an unprivileged user.
//
// Every wait is for an observed state, bounded; nothing assumes how long
// anything takes.

const { describe, test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../lib/harness');
const R = require('../lib/reliability');

const { spawn } = require('node:child_process');

const MODEL = 'fal-ai/flux/dev';
const T = { timeout: 240000 };

// A row lock held from a psql session of its own: BEGIN and `sql` (a
// SELECT ... FOR UPDATE) run at once; the lock holds until release(), which
// commits and waits for psql to exit.
async function holdRowLock(storeUrl, sql) {
  const u = new URL(storeUrl);
  const p = spawn('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', u.hostname, '-p', u.port, '-U', 'postgres', '-d', u.pathname.slice(1)], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, PGCONNECT_TIMEOUT: '10' },
  });
  let out = '';
  p.stdout.on('data', (d) => (out += d));
  p.stderr.on('data', (d) => (out += d));
  const exited = new Promise((resolve) => p.on('close', resolve));
  p.stdin.write(`BEGIN;\n${sql};\n\\echo row-locked\n`);
  await h.waitFor(() => {
    if (p.exitCode !== null) throw Object.assign(new Error(`psql exited: ${out}`), { fatal: true });
    return out.includes('row-locked');
  }, 15000, { interval: 20, what: 'the row lock' });
  return {
    release: async () => {
      p.stdin.end('COMMIT;\n');
      await exited;
    },
  };
}

async function metric(gr, name) {
  const r = await gr.admin('GET', '/metrics');
  assert.equal(r.status, 200, r.text);
  const m = new RegExp(`^${name} ([0-9.e+-]+)$`, 'm').exec(r.text);
  return m ? Number(m[1]) : 0;
}

describe('instances on one PostgreSQL', () => {
  const env = R.usePgInstances('inst');
  const { newDb, start } = env;

  test('LISTEN/NOTIFY: an idle worker whose due timer sleeps an hour runs each run the api instance accepts', T, async () => {
    const store = await newDb();
    // The worker's due timer looks for work once at start, then at most
    // every hour: only an announcement can wake it for the runs below.
    const worker = await start({ config: { store, workers: 2, jobs: { due_check_s: 3600 } }, args: ['--role', 'worker'] });
    const api = await start({ config: { store }, args: ['--role', 'api'] });
    const woken0 = await metric(worker, 'genrelay_store_wakeups_total');
    const N = 3;
    for (let i = 0; i < N; i++) {
      // One at a time: each run is accepted after the worker went idle again.
      const r = await api.api('POST', `/v1/models/${MODEL}/run`, { input: { prompt: `notify-${i}` }, webhook_url: `${env.rcv.url}/notify` });
      assert.equal(r.status, 202, r.text);
      const id = r.body.job_id;
      await h.waitFor(async () => (await api.api('GET', `/v1/jobs/${id}`)).body.status === 'succeeded', 60000, { what: `job ${id} succeeded` });
      await h.waitFor(async () => env.rcv.delivered(id).length > 0, 30000, { what: `job ${id} delivered` });
      const ev = await api.api('GET', `/v1/jobs/${id}/events`);
      assert.equal(ev.status, 200);
      const kinds = ev.body.data.map((e) => e.kind);
      assert.ok(kinds.indexOf('submitted') >= 0 && kinds.indexOf('submitted') < kinds.indexOf('ended'), kinds.join(','));
    }
    assert.ok((await metric(worker, 'genrelay_store_wakeups_total')) - woken0 >= N, 'the worker was woken by the store for every run');
    assert.equal(await metric(api, 'genrelay_provider_submits_total'), 0, 'the api instance ran nothing');
    assert.ok((await metric(worker, 'genrelay_provider_submits_total')) >= N);
  });

  test('rate limits across instances: two instances together let through the bucket, not twice it', T, async () => {
    const store = await newDb();
    // 10 requests of burst and a refill too slow to add one during the test
    // (one token per 10,000 s): the shared bucket lets through exactly 10
    // (batches of ratelimit_batch(0.0001, 10) = 1 token, so nothing is
    // held back by either instance); buckets of their own would let 20.
    const BURST = 10;
    const rate = { customers: { acme: { rate: { per_s: 0.0001, burst: BURST } } } };
    const a = await start({ config: { store, ...rate } });
    const b = await start({ config: { store, ...rate } });
    const seen = { a: { ok: 0, limited: 0 }, b: { ok: 0, limited: 0 } };
    for (let i = 0; i < 3 * BURST; i++) {
      const [name, gr] = i % 2 ? ['b', b] : ['a', a];
      const r = await gr.api('GET', '/v1/jobs?limit=1');
      if (r.status === 200) seen[name].ok++;
      else {
        assert.equal(r.status, 429, r.text);
        assert.equal(r.body.error.code, 'RATE_LIMITED');
        assert.ok(Number(r.headers['retry-after']) >= 1);
        seen[name].limited++;
      }
    }
    const accepted = seen.a.ok + seen.b.ok;
    assert.equal(accepted, BURST, JSON.stringify(seen));
    assert.ok(seen.a.ok > 0 && seen.b.ok > 0 && seen.a.limited > 0 && seen.b.limited > 0, JSON.stringify(seen));
  });

  test('a step whose outcome is rolled back (a lock timeout) runs again at once, not when its lease ends', T, async () => {
    const store = await newDb();
    // Leases of ten minutes: only a row made due again by the store
    // finishes the job within the test's bounds.
    const gr = await start({ config: { store, jobs: { lease_s: 600, poll_after_s: 0.3, poll_interval_s: 0.2, poll_max_s: 0.3 } } });
    const r = await gr.api('POST', `/v1/models/${MODEL}/run`, { input: { prompt: 'lease-again', sim: { delay_ms: 2500, callback: 'none' } }, webhook_url: `${env.rcv.url}/again` });
    assert.equal(r.status, 202, r.text);
    const id = r.body.job_id;
    await h.waitFor(async () => (await gr.api('GET', `/v1/jobs/${id}`)).body.request_id, 15000, { what: 'the job submitted' });
    const reqId = (await gr.api('GET', `/v1/jobs/${id}`)).body.request_id;
    // Polls have begun; while the job row is locked elsewhere, the poll's
    // update of it times out (lock_timeout) and its unit, which also
    // reschedules the poll row, is rolled back.
    const polled = async () => (await env.sim.requests('fal')).filter((q) => q.method === 'GET' && q.path.includes(reqId)).length;
    await h.waitFor(async () => (await polled()) > 0, 15000, { what: 'the first poll' });
    const errors0 = await metric(gr, 'genrelay_store_errors_total');
    const lock = await holdRowLock(store, `SELECT id FROM jobs WHERE id='${id}' FOR UPDATE`);
    try {
      await h.waitFor(async () => (await metric(gr, 'genrelay_store_errors_total')) > errors0, 15000, { what: "a poll's outcome rolled back" });
    } finally {
      await lock.release();
    }
    assert.ok(/a step's writes were rolled back/.test(gr.log()), "the poll's outcome was rolled back");
    await h.waitFor(async () => (await gr.api('GET', `/v1/jobs/${id}`)).body.status === 'succeeded', 30000, { what: `job ${id} succeeded well within its lease` });
    await h.waitFor(async () => env.rcv.delivered(id).length > 0, 30000, { what: `job ${id} delivered` });
  });
});
