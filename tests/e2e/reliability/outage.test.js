'use strict';
// Outages: a provider surface down, the webhook receiver down.
//
// Provider outage: a provsim surface answers 503 (its own error shape,
// Retry-After: 1) for a while. Jobs submitted while it is down retry and
// finish when it returns, or fail with PROVIDER_UNAVAILABLE once their submit
// window passes; jobs on an alias fail over to the next target; jobs already
// running keep polling through the outage. None is stuck.
//
// Receiver outage: the webhook receiver refuses connections. Deliveries are
// retried on the configured schedule (never sooner than schedule x (1 -
// jitter)) and all arrive once it returns; past the schedule they are dead,
// nothing arrives by itself, and POST /v1/deliveries/{id}/retry delivers each
// one with its original webhook-id.
//
// Every step waits for an observed state (a job's events, a delivery's
// status), never for a fixed time, so no assertion depends on timing.
// make soak: the surface and the receiver are down for a minute each, under
// continuous load.

const { describe, test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../lib/harness');
const R = require('../lib/reliability');

const KREA = 'krea:image/bfl/flux-1-dev';
const FAL = 'fal:fal-ai/flux/dev';
const ALIAS = 'rel-outage-alias';
const P = R.SOAK
  ? { window: 30, outageMs: 60000, perBatch: 100, gapMs: 250, retry: [1, 2, 4, 8, 16, 32, 64], rcvOutageMs: 60000, waitMs: 400000 }
  : { window: 6, outageMs: 0, perBatch: 30, gapMs: 0, retry: [0.5, 1, 2, 3], rcvOutageMs: 3000, waitMs: 60000 };
const T = { timeout: P.waitMs * 4 };

describe('outages', () => {
  let sim;
  let rcv;
  let gr;
  const figures = {};

  before(async () => {
    sim = await h.startProvsim();
    rcv = await R.startCountingReceiver();
    gr = await h.startGenrelay({
      simUrl: sim.url,
      config: {
        models: { [ALIAS]: [KREA, FAL] },
        jobs: { poll_after_s: 1, poll_interval_s: 0.3, poll_max_s: 1, submit_window_s: P.window, job_deadline_s: 900, failover_after: 3 },
        webhooks: { retry: P.retry, timeout_s: 2 },
      },
    });
  });

  after(() => R.shutdown(gr, rcv, sim));

  async function submit(model, input, hook) {
    const r = await gr.api('POST', `/v1/models/${model}/run`, { input, webhook_url: rcv.url + hook });
    assert.equal(r.status, 202, r.text);
    return r.body.job_id;
  }
  async function job(id) {
    const r = await gr.api('GET', `/v1/jobs/${id}`);
    assert.equal(r.status, 200, r.text);
    return r.body;
  }
  async function events(id) {
    const r = await gr.api('GET', `/v1/jobs/${id}/events`);
    assert.equal(r.status, 200, r.text);
    return r.body.data || [];
  }
  async function deliveries(id) {
    const r = await gr.api('GET', `/v1/jobs/${id}/deliveries`);
    assert.equal(r.status, 200, r.text);
    return r.body.data || [];
  }
  async function allTerminal(ids, what) {
    const out = new Map();
    await h.waitFor(
      async () => {
        const m = await R.fetchJobs(gr.api, ids.filter((id) => !out.has(id)), 8);
        for (const [id, j] of m) if (j && R.TERMINAL.has(j.status)) out.set(id, j);
        return out.size === ids.length;
      },
      P.waitMs,
      { interval: 250, what },
    );
    return out;
  }

  test('provider outage: jobs wait and finish, or fail with PROVIDER_UNAVAILABLE past the window; aliases fail over; none is stuck', T, async () => {
    const hook = '/provider-outage';
    // Running jobs (polling only) that will poll through the outage.
    const running = [];
    for (let i = 0; i < 10; i++) running.push(await submit(KREA, { prompt: `run-${i}`, sim: { delay_ms: 2500, callback: 'none' } }, hook));
    await h.waitFor(async () => (await R.fetchJobs(gr.api, running)).size === running.length && [...(await R.fetchJobs(gr.api, running)).values()].every((j) => j && j.request_id), 20000, {
      what: 'running jobs submitted to krea',
    });

    await sim.down('krea');
    const downAt = Date.now();
    // A: direct jobs whose whole window passes while krea is down.
    // F: alias jobs (krea, then fal): they fail over.
    const A = [];
    const F = [];
    for (let i = 0; i < P.perBatch; i++) {
      A.push(await submit(KREA, { prompt: `a-${i}` }, hook));
      F.push(await submit(ALIAS, { prompt: `f-${i}` }, hook));
    }
    const endA = await allTerminal(A, 'direct jobs end while krea is down');
    const endF = await allTerminal(F, 'alias jobs end while krea is down');

    // C (soak): continuous submits until the outage has lasted outageMs.
    const C = [];
    while (Date.now() - downAt < P.outageMs) {
      C.push(await submit(KREA, { prompt: `c-${C.length}` }, hook));
      C.push(await submit(ALIAS, { prompt: `cf-${C.length}` }, hook));
      await h.sleep(P.gapMs);
    }

    // B: direct jobs that have tried and failed at least once when krea returns.
    const B = [];
    for (let i = 0; i < P.perBatch; i++) B.push(await submit(KREA, { prompt: `b-${i}` }, hook));
    await h.waitFor(async () => {
      for (const id of B) if (!(await events(id)).some((e) => e.kind === 'submit_retry')) return false;
      return true;
    }, P.waitMs, { what: 'every B job retried once against the down surface' });
    await sim.up('krea');
    const outageMs = Date.now() - downAt;

    const endB = await allTerminal(B, 'B jobs end after krea returns');
    const endRun = await allTerminal(running, 'running jobs end after krea returns');
    const endC = await allTerminal(C, 'C jobs end');

    // A: failed with PROVIDER_UNAVAILABLE (the window passed while down).
    for (const [id, j] of endA) {
      assert.equal(j.status, 'failed', `${id}: ${JSON.stringify(j)}`);
      assert.equal(j.error.code, 'PROVIDER_UNAVAILABLE', `${id}: ${JSON.stringify(j.error)}`);
    }
    // F: succeeded on fal after a failover.
    let failovers = 0;
    for (const [id, j] of endF) {
      assert.equal(j.status, 'succeeded', `${id}: ${JSON.stringify(j)}`);
      assert.equal(j.provider, 'fal', `${id} failed over to fal`);
      if ((await events(id)).some((e) => e.kind === 'failover')) failovers++;
    }
    assert.equal(failovers, F.length, 'every alias job records its failover');
    // B and the running jobs: waited and finished.
    for (const [id, j] of [...endB, ...endRun]) assert.equal(j.status, 'succeeded', `${id}: ${JSON.stringify(j)}`);
    // C: either outcome, nothing else.
    for (const [id, j] of endC) {
      const ok = j.status === 'succeeded' || (j.status === 'failed' && j.error.code === 'PROVIDER_UNAVAILABLE');
      assert.ok(ok, `${id}: ${JSON.stringify(j)}`);
    }
    const all = [...A, ...F, ...B, ...C, ...running];
    await h.waitFor(() => all.every((id) => rcv.delivered(id).length >= 1), P.waitMs, { what: 'every outage job delivered' });
    const cons = R.storeConsistency(gr.dbPath);
    assert.ok(cons.ok, cons.problems.join('\n'));
    Object.assign(figures, {
      provider_outage_s: Math.round(outageMs / 100) / 10,
      provider_outage_jobs: all.length,
      provider_outage_failed_unavailable: [...endA.values(), ...endC.values()].filter((j) => j.status === 'failed').length,
      provider_outage_failed_over: failovers + [...endC.values()].filter((j) => j.provider === 'fal').length,
      provider_outage_waited_and_finished: endB.size + endRun.size + [...endC.values()].filter((j) => j.status === 'succeeded' && j.provider === 'krea').length,
      provider_outage_stuck: 0,
    });
  });

  test('receiver outage: deliveries retry on schedule and all arrive when it returns; dead ones are replayed', T, async () => {
    const jitter = 0.2; // the default webhooks.retry_jitter
    // Phase 1: the receiver is down; every delivery fails at least once; it returns.
    await rcv.stop();
    const downAt = Date.now();
    const hook1 = '/receiver-outage-1';
    const ids1 = [];
    for (let i = 0; i < P.perBatch; i++) ids1.push(await submit(FAL, { prompt: `r1-${i}`, sim: { delay_ms: 100 } }, hook1));
    await h.waitFor(async () => {
      for (const id of ids1) {
        const d = await deliveries(id);
        if (!d.length || !d[0].attempts.length || d[0].status !== 'pending') return false;
      }
      return true;
    }, P.waitMs, { what: 'every delivery failed at least once while the receiver is down' });
    while (Date.now() - downAt < P.rcvOutageMs) await h.sleep(500);
    await rcv.start();
    const outage1 = Date.now() - downAt;
    await h.waitFor(() => ids1.every((id) => rcv.delivered(id).length >= 1), P.waitMs, { what: 'phase 1 deliveries arrive' });
    let scheduleChecks = 0;
    let attempts1 = 0;
    for (const id of ids1) {
      const [d] = await deliveries(id);
      assert.equal(d.status, 'delivered', JSON.stringify(d));
      assert.ok(d.attempts.length >= 2, `retried: ${JSON.stringify(d)}`);
      attempts1 += d.attempts.length;
      assert.equal(rcv.delivered(id).length, 1, 'delivered once');
      assert.equal(rcv.delivered(id)[0].id, d.delivery_id, 'webhook-id is the delivery id');
      for (let k = 0; k + 1 < d.attempts.length; k++) {
        const a = d.attempts[k];
        assert.ok(a.error && !a.status_code, `attempt ${k + 1} failed with a connection error: ${JSON.stringify(a)}`);
        const gap = Date.parse(d.attempts[k + 1].at) - Date.parse(a.at);
        const min = P.retry[k] * 1000 * (1 - jitter) - 5;
        assert.ok(gap >= min, `attempt ${k + 2} of ${id} came ${gap} ms after the previous one; the schedule says at least ${min}`);
        scheduleChecks++;
      }
    }

    // Phase 2: down past the whole schedule: dead; nothing arrives by itself; replay.
    await rcv.stop();
    const hook2 = '/receiver-outage-2';
    const ids2 = [];
    for (let i = 0; i < P.perBatch; i++) ids2.push(await submit(FAL, { prompt: `r2-${i}`, sim: { delay_ms: 100 } }, hook2));
    const dead = new Map();
    await h.waitFor(async () => {
      for (const id of ids2) {
        if (dead.has(id)) continue;
        const [d] = await deliveries(id);
        if (d && d.status === 'dead') dead.set(id, d);
      }
      return dead.size === ids2.length;
    }, P.waitMs * 2, { what: 'every delivery dead after the schedule' });
    for (const d of dead.values()) assert.equal(d.attempts.length, P.retry.length + 1, `one try plus one per schedule entry: ${JSON.stringify(d)}`);
    await rcv.start();
    // A dead delivery stays dead: a job is checked again after a later one is delivered.
    const probe = await submit(FAL, { prompt: 'probe', sim: { delay_ms: 50 } }, '/receiver-outage-probe');
    await h.waitFor(() => rcv.delivered(probe).length >= 1, P.waitMs, { what: 'probe delivered' });
    for (const id of ids2) assert.equal((rcv.byJob.get(id) || []).length, 0, `dead delivery of ${id} not sent by itself`);
    for (const [id, d] of dead) {
      const r = await gr.api('POST', `/v1/deliveries/${d.delivery_id}/retry`);
      assert.equal(r.status, 202, r.text);
      assert.equal(r.body.delivery_id, d.delivery_id);
      void id;
    }
    await h.waitFor(() => ids2.every((id) => rcv.delivered(id).length >= 1), P.waitMs, { what: 'replayed deliveries arrive' });
    for (const [id, d] of dead) {
      const got = rcv.delivered(id);
      assert.equal(got.length, 1, `replayed once: ${id}`);
      assert.equal(got[0].id, d.delivery_id, 'the replay keeps the webhook-id');
      assert.equal(got[0].verified, true);
      const [after] = await deliveries(id);
      assert.equal(after.status, 'delivered');
    }
    const cons = R.storeConsistency(gr.dbPath);
    assert.ok(cons.ok, cons.problems.join('\n'));
    Object.assign(figures, {
      receiver_outage_s: Math.round(outage1 / 100) / 10,
      receiver_outage_deliveries_retried: ids1.length,
      receiver_outage_attempts: attempts1,
      receiver_outage_schedule_checks: scheduleChecks,
      receiver_dead_replayed: dead.size,
      receiver_outage_lost: 0,
    });
  });

  test('figures', () => {
    R.report('outages', figures);
  });
});
