'use strict';
// End-to-end tests of model aliases with several targets (failover), against
// provsim and the example receiver.
//
//   GENRELAY_BIN=$PWD/build/genrelay node --test tests/e2e/features/failover.test.js
//
// provsim's down switches are global, so the tests of this file run one
// after the other, and each one leaves every surface up.
//
// On PostgreSQL (e2e_pg_failover) the first suite runs 16 loops: a job's
// submit answer and its callback may then reach two loops at once, and
// both may try to move it to the next target; it moves once.

const { after, describe, test } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const h = require('../lib/harness');
const pg = require('../lib/pg');

const KREA = 'krea:image/bfl/flux-1-dev';
const FAL = 'fal:fal-ai/flux/dev';
const { TERMINAL } = h;
const T = { timeout: 60000 };

const uniq = (name) => `${name}-${crypto.randomBytes(5).toString('hex')}`;

describe('failover between the targets of a model alias', () => {
  let stack = null;
  after(async () => {
    if (!stack || !stack.sim) return;
    await Promise.all([stack.sim.up('krea'), stack.sim.up('fal')]).catch(() => {});
    if (stack.gr && !stack.gr.running()) throw new Error(`genrelay died during the tests:\n${stack.gr.logTail(60)}`);
  });
  stack = h.useStack({
    config: {
      workers: pg.enabled() ? 16 : undefined,
      models: {
        'flux-dev': [KREA, FAL],
        'flux-dev-fof': { targets: [KREA, FAL], failover_on_failure: true },
        'unreachable-first': ['artificialstudio:create-image', FAL],
      },
      // Nothing listens on 127.0.0.1:9: every call to this provider is a network error.
      providers: { artificialstudio: { base_url: 'http://127.0.0.1:9/artificialstudio' } },
      // A down provider is left after 2 retryable submit failures (failover_after),
      // or once the 2 s submit window has passed, whichever comes first.
      jobs: { submit_window_s: 2, failover_after: 2 },
    },
  });
  const { getJob, waitTerminal } = h.jobHelpers(stack);

  // --- helpers ------------------------------------------------------------

  const hookPath = (name) => `/f/${uniq(name)}`;

  async function submit(model, input, extra = {}) {
    const p = hookPath(model);
    const r = await stack.api('POST', `/v1/models/${model}/run`, { input, webhook_url: stack.receiver.url + p, ...extra });
    assert.equal(r.status, 202, r.text);
    assert.equal(r.body.model_id, model);
    return r.body.job_id;
  }

  // The one verified delivery of a job (and no second one).
  async function delivery(id) {
    const [d] = await h.waitFor(async () => {
      const l = await stack.receiver.forJob(id);
      return l.some((x) => x.answered === 200) && l;
    }, 15000, { what: `delivery of ${id}`, interval: 100 });
    assert.equal(d.verified, true, d.reason);
    await h.sleep(300);
    assert.equal((await stack.receiver.forJob(id)).length, 1, 'one delivery');
    return d;
  }

  async function events(id) {
    const r = await stack.api('GET', `/v1/jobs/${id}/events`);
    assert.equal(r.status, 200, r.text);
    const list = Array.isArray(r.body) ? r.body : r.body.data;
    assert.ok(Array.isArray(list), r.text);
    for (const e of list) {
      assert.equal(typeof e.kind, 'string');
      assert.ok('at' in e && 'detail' in e, JSON.stringify(e));
    }
    return list;
  }

  // Submits provsim received for this job, per provider (found through the
  // job id in the callback URL: Krea's X-Webhook-URL header, fal's fal_webhook).
  async function submitsTo(id) {
    const reqs = await stack.sim.requests();
    const mine = (u) => typeof u === 'string' && u.includes(`/${id}/`);
    return {
      krea: reqs.filter((r) => r.provider === 'krea' && r.method === 'POST' && mine(r.headers['x-webhook-url'])),
      fal: reqs.filter((r) => r.provider === 'fal' && r.method === 'POST' && mine(r.query && r.query.fal_webhook)),
    };
  }

  const kinds = (evs) => evs.map((e) => e.kind);

  // --- tests ----------------------------------------------------------------

  test('Krea down: a flux-dev job fails over to fal and succeeds; the events show every attempt', T, async () => {
    await stack.sim.down('krea');
    try {
      const t0 = Date.now();
      const id = await submit('flux-dev', { prompt: uniq('down'), sim: { delay_ms: 150 } });
      const j = await waitTerminal(id);
      assert.equal(j.status, 'succeeded', JSON.stringify(j));
      assert.equal(j.provider, 'fal', 'the provider that finally ran it');
      assert.equal(j.model_id, 'flux-dev');
      assert.ok(Date.now() - t0 < 8000, `failed over quickly (${Date.now() - t0} ms)`);

      const d = await delivery(id);
      assert.equal(d.body.status, 'succeeded');
      assert.equal(d.body.provider, 'fal');
      assert.equal(d.body.model_id, 'flux-dev');

      const evs = await events(id);
      const k = kinds(evs);
      const fo = evs.filter((e) => e.kind === 'failover');
      assert.equal(fo.length, 1, `one failover: ${JSON.stringify(evs)}`);
      assert.match(String(fo[0].detail.from), /^krea(:|$)/);
      assert.match(String(fo[0].detail.to), /^fal(:|$)/);
      assert.equal(fo[0].detail.code, 'PROVIDER_UNAVAILABLE');
      assert.equal(typeof fo[0].detail.reason, 'string');
      const iFo = k.indexOf('failover');
      assert.ok(k.slice(0, iFo).includes('submit_retry'), `Krea's failed attempts come first: ${k}`);
      assert.ok(k.slice(0, iFo).every((x) => x === 'submit_retry'), `nothing but retries before the failover: ${k}`);
      for (const e of evs.slice(0, iFo)) assert.equal(e.detail.provider, 'krea');
      const sub = evs.filter((e) => e.kind === 'submitted');
      assert.equal(sub.length, 1, k.join(','));
      assert.equal(sub[0].detail.provider, 'fal');
      assert.ok(k.indexOf('submitted') > iFo);
      assert.equal(k[k.length - 1], 'ended');
      assert.equal(evs[evs.length - 1].detail.status, 'succeeded');

      const s = await submitsTo(id);
      assert.ok(s.krea.length >= 1, 'Krea was tried');
      assert.equal(s.fal.length, 1, 'fal ran it');
      assert.equal(s.fal[0].headers.authorization, 'Key fal-test-key');
    } finally {
      await stack.sim.up('krea');
    }
  });

  test('both targets down: the job fails with PROVIDER_UNAVAILABLE after trying each', T, async () => {
    await Promise.all([stack.sim.down('krea'), stack.sim.down('fal')]);
    try {
      const id = await submit('flux-dev', { prompt: uniq('both-down'), sim: { delay_ms: 150 } });
      const j = await waitTerminal(id);
      assert.equal(j.status, 'failed', JSON.stringify(j));
      assert.equal(j.error.code, 'PROVIDER_UNAVAILABLE');
      assert.equal(j.provider, 'fal', 'the last target tried');
      assert.equal(j.output, null);
      const d = await delivery(id);
      assert.equal(d.body.status, 'failed');
      assert.equal(d.body.error.code, 'PROVIDER_UNAVAILABLE');

      const evs = await events(id);
      const k = kinds(evs);
      assert.equal(k.filter((x) => x === 'failover').length, 1, k.join(','));
      assert.ok(!k.includes('submitted'), k.join(','));
      assert.equal(k[k.length - 1], 'ended');
      assert.equal(evs[evs.length - 1].detail.error, 'PROVIDER_UNAVAILABLE');
      const s = await submitsTo(id);
      assert.ok(s.krea.length >= 1 && s.fal.length >= 1, `each target tried: krea ${s.krea.length}, fal ${s.fal.length}`);
    } finally {
      await Promise.all([stack.sim.up('krea'), stack.sim.up('fal')]);
    }
  });

  test('network errors: an unreachable first target fails over to the next', T, async () => {
    const id = await submit('unreachable-first', { prompt: uniq('unreachable'), sim: { delay_ms: 150 } });
    const j = await waitTerminal(id);
    assert.equal(j.status, 'succeeded', JSON.stringify(j));
    assert.equal(j.provider, 'fal');
    const evs = await events(id);
    const fo = evs.filter((e) => e.kind === 'failover');
    assert.equal(fo.length, 1, JSON.stringify(evs));
    assert.match(String(fo[0].detail.from), /^artificialstudio(:|$)/);
    assert.equal(fo[0].detail.code, 'PROVIDER_UNAVAILABLE');
    assert.ok(evs.some((e) => e.kind === 'submit_retry' && e.detail.provider === 'artificialstudio'), JSON.stringify(evs));
    assert.equal((await delivery(id)).body.provider, 'fal');
  });

  test('after /_control/krea/up, flux-dev runs on Krea again, without failover', T, async () => {
    const id = await submit('flux-dev', { prompt: uniq('up'), sim: { delay_ms: 150 } });
    const j = await waitTerminal(id);
    assert.equal(j.status, 'succeeded', JSON.stringify(j));
    assert.equal(j.provider, 'krea');
    const k = kinds(await events(id));
    assert.ok(!k.includes('failover'), k.join(','));
    assert.deepEqual(k.filter((x) => x !== 'submit_retry'), ['submitted', 'ended']);
    const s = await submitsTo(id);
    assert.equal(s.krea.length, 1);
    assert.equal(s.fal.length, 0);
    assert.equal((await delivery(id)).body.provider, 'krea');
  });

  test('a PROVIDER_FAILURE on the first target does not fail over (plain alias)', T, async () => {
    // delay_ms 0: Krea's submit answer already says failed; 150: the failure comes by callback.
    for (const delay of [0, 150]) {
      const id = await submit('flux-dev', { prompt: uniq(`fail-${delay}`), sim: { outcome: 'fail', delay_ms: delay, message: 'krea broke' } });
      const j = await waitTerminal(id);
      assert.equal(j.status, 'failed', JSON.stringify(j));
      assert.equal(j.error.code, 'PROVIDER_FAILURE');
      assert.equal(j.error.message, 'krea broke');
      assert.equal(j.provider, 'krea');
      assert.ok(!kinds(await events(id)).includes('failover'));
      assert.equal((await submitsTo(id)).fal.length, 0, 'fal not tried');
      assert.equal((await delivery(id)).body.error.code, 'PROVIDER_FAILURE');
    }
  });

  test('a PROVIDER_REJECTED (4xx) on the first target does not fail over', T, async () => {
    const id = await submit('flux-dev', { prompt: uniq('rejected'), sim: { http_status: 400 } });
    const j = await waitTerminal(id);
    assert.equal(j.status, 'failed', JSON.stringify(j));
    assert.equal(j.error.code, 'PROVIDER_REJECTED');
    assert.equal(j.provider, 'krea');
    assert.ok(!kinds(await events(id)).includes('failover'));
    assert.equal((await submitsTo(id)).fal.length, 0, 'fal not tried');
  });

  // The third case: Krea's failure callback overtakes its submit answer
  // (answer_delay_ms holds the answer back), so the callback moves the job
  // to fal while the Krea submit is still in flight; the late submit answer
  // must then change nothing.
  // fal runs long there, so the late Krea answer finds the job live on fal.
  for (const [delay, how, hold] of [[0, "in Krea's submit answer", 0], [150, "in Krea's callback", 0],
    [0, "in Krea's callback that overtakes its submit answer", 500]]) {
    test(`failover_on_failure: a PROVIDER_FAILURE ${how} moves the job to the next target`, T, async () => {
      // The steering is in the input, so fal fails as well: what matters is
      // that fal was tried and the history shows the move.
      const sim = { outcome: 'fail', delay_ms: delay, message: 'both broke' };
      if (hold) Object.assign(sim, { answer_delay_ms: hold, per_provider: { fal: { answer_delay_ms: 0, delay_ms: 2 * hold } } });
      const id = await submit('flux-dev-fof', { prompt: uniq(`fof-${delay}-${hold}`), sim });
      const j = await waitTerminal(id);
      assert.equal(j.status, 'failed', JSON.stringify(j));
      assert.equal(j.error.code, 'PROVIDER_FAILURE');
      assert.equal(j.provider, 'fal', `moved to fal: ${JSON.stringify(j)}`);
      const evs = await events(id);
      const fo = evs.filter((e) => e.kind === 'failover');
      assert.equal(fo.length, 1, JSON.stringify(evs));
      assert.match(String(fo[0].detail.from), /^krea(:|$)/);
      assert.match(String(fo[0].detail.to), /^fal(:|$)/);
      assert.equal(fo[0].detail.code, 'PROVIDER_FAILURE');
      // Each provider's submit answer was applied once, by that provider's
      // script: a Krea answer arriving after the move is dropped.
      const submitted = evs.filter((e) => e.kind === 'submitted');
      assert.ok(submitted.filter((e) => e.detail.provider === 'fal').length <= 1, JSON.stringify(evs));
      if (hold) {
        assert.equal(submitted.length, 1, `only fal's answer applied: ${JSON.stringify(evs)}`);
        // The end came from fal's own failure, which provsim reports no
        // sooner than fal's delay after the move (a lower bound that load
        // only makes later); Krea's late answer at `hold` must not end it.
        const at = (k) => Date.parse(evs.find((e) => e.kind === k).at);
        assert.ok(at('ended') - at('failover') >= 2 * hold - 50, JSON.stringify(evs));
      }
      const s = await submitsTo(id);
      assert.equal(s.krea.length, 1);
      assert.equal(s.fal.length, 1);
      const d = await delivery(id);
      assert.equal(d.body.provider, 'fal');
      assert.equal(d.body.status, 'failed');
    });
  }
});

// jobs.failover_after alone (a long submit window): a down target is left
// after that many consecutive retryable failures, not at the window's end.
describe('jobs.failover_after', () => {
  const stack = h.useStack({
    config: { models: { 'flux-dev': [KREA, FAL] }, jobs: { submit_window_s: 20, failover_after: 2 } },
  });

  test('Krea down: the job moves to fal after 2 failed submits, long before the 20 s window ends', T, async () => {
    await stack.sim.down('krea');
    try {
      const t0 = Date.now();
      const r = await stack.api('POST', '/v1/models/flux-dev/run', { input: { prompt: uniq('fa'), sim: { delay_ms: 100 } } });
      assert.equal(r.status, 202, r.text);
      const id = r.body.job_id;
      const j = await h.waitFor(async () => {
        const x = (await stack.api('GET', `/v1/jobs/${id}`)).body;
        return TERMINAL.has(x.status) && x;
      }, 15000, { what: 'job terminal', interval: 100 });
      assert.equal(j.status, 'succeeded', JSON.stringify(j));
      assert.equal(j.provider, 'fal');
      assert.ok(Date.now() - t0 < 6000, `failed over after ${Date.now() - t0} ms`);
      const krea = (await stack.sim.requests('krea')).filter((x) => x.method === 'POST' && (x.headers['x-webhook-url'] || '').includes(`/${id}/`));
      assert.equal(krea.length, 2, 'two submits to Krea');
      const evs = (await stack.api('GET', `/v1/jobs/${id}/events`)).body.data;
      const k = evs.map((e) => e.kind);
      assert.deepEqual(k, ['submit_retry', 'failover', 'submitted', 'ended']);
    } finally {
      await stack.sim.up('krea');
    }
  });
});
