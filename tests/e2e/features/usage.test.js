'use strict';
// End-to-end tests of the cost of jobs and GET /v1/usage, against provsim:
//   - abstrakt reports credits_used: the job's cost comes from the provider;
//   - fal reports none: the price table of providers.fal.prices estimates it;
//   - the job object and the default webhook carry `cost`;
//   - /v1/usage totals match the sum of the jobs, per group, per customer
//     (the admin sees every customer), bad queries answer 400.
// Runs on PostgreSQL too with GENRELAY_TEST_STORE=pg.
//
//   GENRELAY_BIN=$PWD/build/genrelay node --test tests/e2e/features/usage.test.js

const { describe, test } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../lib/harness');

const T = { timeout: 90000 };
const PER_IMAGE = 0.025;

describe('cost per job and usage totals', () => {
  const stack = h.useStack({
    config: {
      providers: { fal: { prices: { 'fal-ai/flux/dev': { per_image: PER_IMAGE } } } },
    },
  });
  const { waitTerminal, waitDelivered } = h.jobHelpers(stack);
  const jobs = [];

  async function run(model, input, api = stack.api) {
    const r = await api('POST', `/v1/models/${model}/run`, { input, webhook_url: stack.receiver.url + '/usage' });
    assert.equal(r.status, 202, r.text);
    return r.body.job_id;
  }

  test('abstrakt: the cost the provider reports (credits_used)', T, async () => {
    for (let i = 0; i < 2; i++) {
      const id = await run('abstrakt:fal-ai/flux/schnell', { prompt: `usage abstrakt ${i}`, sim: { delay_ms: 50 } });
      const j = await waitTerminal(id, 30000);
      assert.equal(j.status, 'succeeded', JSON.stringify(j));
      assert.deepEqual(j.cost, { amount: 1, unit: 'credits', source: 'provider' });
      jobs.push(j);
      const [d] = await waitDelivered(id);
      assert.deepEqual(d.body.cost, j.cost, 'the default webhook carries the cost');
    }
  });

  test('fal: the estimate of the price table', T, async () => {
    for (let i = 0; i < 3; i++) {
      const id = await run('fal:fal-ai/flux/dev', { prompt: `usage fal ${i}`, num_images: i + 1, sim: { delay_ms: 50 } });
      const j = await waitTerminal(id, 30000);
      assert.equal(j.status, 'succeeded', JSON.stringify(j));
      const images = j.output.items.filter((x) => x.type === 'image').length;
      assert.ok(images >= 1);
      assert.equal(j.cost.unit, 'usd');
      assert.equal(j.cost.source, 'estimate');
      assert.ok(Math.abs(j.cost.amount - PER_IMAGE * images) < 1e-9, JSON.stringify(j.cost));
      jobs.push(j);
    }
    // a model without a price: no cost
    const id = await run('fal:fal-ai/flux/schnell', { prompt: 'usage fal unpriced', sim: { delay_ms: 50 } });
    const j = await waitTerminal(id, 30000);
    assert.equal(j.status, 'succeeded');
    assert.equal(j.cost, null);
  });

  test('GET /v1/usage: totals match the sum of the jobs', T, async () => {
    const sum = (unit) => jobs.filter((j) => j.cost.unit === unit).reduce((a, j) => a + j.cost.amount, 0);
    const near = (a, b) => assert.ok(Math.abs(a - b) < 1e-9, `${a} != ${b}`);
    const r = await stack.api('GET', '/v1/usage');
    assert.equal(r.status, 200, r.text);
    const tot = Object.fromEntries(r.body.totals.map((t) => [t.unit, t]));
    near(tot.usd.amount, sum('usd'));
    near(tot.credits.amount, sum('credits'));
    assert.equal(tot.usd.jobs, 3);
    assert.equal(tot.credits.jobs, 2);

    const m = await stack.api('GET', '/v1/usage?group_by=model');
    assert.equal(m.status, 200, m.text);
    const byKey = Object.fromEntries(m.body.data.map((x) => [x.key, x]));
    near(byKey['fal:fal-ai/flux/dev'].amount, sum('usd'));
    near(byKey['abstrakt:fal-ai/flux/schnell'].amount, 2);
    assert.equal(m.body.group_by, 'model');

    const p = await stack.api('GET', '/v1/usage?group_by=provider');
    assert.deepEqual(p.body.data.map((x) => x.key).sort(), ['abstrakt', 'fal']);

    const today = new Date().toISOString().slice(0, 10);
    const d = await stack.api('GET', `/v1/usage?group_by=day&from=${today}`);
    assert.equal(d.status, 200, d.text);
    // jobs ended today (UTC) or, right at midnight, tomorrow
    const days = d.body.data.reduce((a, x) => a + x.jobs, 0);
    assert.equal(days, 5);
    for (const x of d.body.data) assert.match(x.key, /^\d{4}-\d{2}-\d{2}$/);

    const none = await stack.api('GET', '/v1/usage?to=2000-01-01');
    assert.deepEqual(none.body.data, []);
    assert.deepEqual(none.body.totals, []);

    // another customer sees only its own (none)
    const globex = await stack.gr.as(h.GLOBEX.api_key)('GET', '/v1/usage');
    assert.equal(globex.status, 200, globex.text);
    assert.deepEqual(globex.body.totals, []);

    // the admin sees every customer's, per customer
    const admin = await stack.gr.admin('GET', '/v1/usage?group_by=provider');
    assert.equal(admin.status, 200, admin.text);
    assert.ok(admin.body.data.length >= 2);
    for (const x of admin.body.data) assert.equal(x.customer, 'acme');

    for (const bad of ['group_by=week', 'from=yesterday', 'to=2026-13-01', 'from=2026-01-01T00:00:00']) {
      const b = await stack.api('GET', `/v1/usage?${bad}`);
      assert.equal(b.status, 400, `${bad}: ${b.text}`);
      assert.equal(b.body.error.code, 'INVALID_REQUEST');
    }
    const post = await stack.api('POST', '/v1/usage', {});
    assert.equal(post.status, 405);
  });
});

describe('customer budgets', () => {
  const BUDGET = 0.1;
  const stack = h.useStack({
    config: {
      providers: { fal: { prices: { 'fal-ai/flux/dev': { per_image: PER_IMAGE } } } },
      customers: { acme: { budget: { amount: BUDGET, unit: 'usd', period: 'month' } } },
    },
  });
  const { waitTerminal } = h.jobHelpers(stack);
  const run = (prompt, delay = 50, api = stack.api) =>
    api('POST', '/v1/models/fal:fal-ai/flux/dev/run', { input: { prompt, num_images: 1, sim: { delay_ms: delay } } });
  const spentNow = async () => {
    const u = await stack.api('GET', '/v1/usage');
    assert.equal(u.status, 200, u.text);
    const t = u.body.totals.find((x) => x.unit === 'usd');
    return t ? t.amount : 0;
  };

  test('runs under the budget go; concurrent runs at the edge overshoot by at most N x one job; then 402', T, async () => {
    const costs = [];
    // 3 x 0.025 = 0.075: under the budget
    for (let i = 0; i < 3; i++) {
      const r = await run(`budget ${i}`);
      assert.equal(r.status, 202, r.text);
      const j = await waitTerminal(r.body.job_id, 30000);
      assert.equal(j.status, 'succeeded');
      costs.push(j.cost.amount);
    }
    assert.ok(await spentNow() < BUDGET);
    // N runs at once at the edge: each is admitted while the recorded spend
    // is under the budget; the ones admitted all finish.
    const N = 6;
    const answers = await Promise.all(Array.from({ length: N }, (_, i) => run(`budget edge ${i}`, 1500)));
    const admitted = answers.filter((a) => a.status === 202);
    for (const a of answers) assert.ok(a.status === 202 || a.status === 402, a.text);
    assert.ok(admitted.length >= 1, 'the spend was under the budget: the first run goes');
    for (const a of admitted) {
      const j = await waitTerminal(a.body.job_id, 30000);
      assert.equal(j.status, 'succeeded', 'a job that crosses the line still finishes');
      costs.push(j.cost.amount);
    }
    const spent = await spentNow();
    assert.ok(Math.abs(spent - costs.reduce((a, b) => a + b, 0)) < 1e-9, 'usage is the sum of the jobs');
    const maxCost = Math.max(...costs);
    assert.ok(spent >= BUDGET, `spent ${spent}`);
    assert.ok(spent - BUDGET <= N * maxCost + 1e-9, `overshoot ${spent - BUDGET} within N x ${maxCost}`);

    // past the budget: refused with 402 before anything reaches a provider
    const before = (await stack.sim.requests('fal')).length;
    const r = await run('budget refused');
    assert.equal(r.status, 402, r.text);
    assert.equal(r.body.error.code, 'BUDGET_EXCEEDED');
    assert.match(r.body.error.message, /budget/);
    await h.sleep(300);
    assert.equal((await stack.sim.requests('fal')).length, before, 'nothing sent to a provider');
    const list = await stack.api('GET', '/v1/jobs?limit=100');
    assert.ok(!list.body.data.some((j) => j.status === 'queued'), 'no job was created');

    // another customer without a budget still runs
    const g = await run('budget globex', 50, stack.gr.as(h.GLOBEX.api_key));
    assert.equal(g.status, 202, g.text);
    const gj = await h.waitFor(async () => {
      const x = (await stack.gr.as(h.GLOBEX.api_key)('GET', `/v1/jobs/${g.body.job_id}`)).body;
      return h.TERMINAL.has(x.status) && x;
    }, 30000, { what: 'the globex job' });
    assert.equal(gj.status, 'succeeded');
  });
});

describe('budget.warning at warn_at', () => {
  // per_image 0.25 and a budget of 1: four one-image jobs; warn_at 0.5 is
  // crossed by the second (0.25 -> 0.5), exactly, in binary too.
  const stack = h.useStack({
    config: {
      providers: { fal: { prices: { 'fal-ai/flux/dev': { per_image: 0.25 } } } },
      customers: { acme: { budget: { amount: 1, unit: 'usd', period: 'month', warn_at: 0.5 } } },
    },
  });
  const { waitTerminal, waitDelivered } = h.jobHelpers(stack);
  const run = async (prompt) => {
    const r = await stack.api('POST', '/v1/models/fal:fal-ai/flux/dev/run', {
      input: { prompt, num_images: 1, sim: { delay_ms: 50 } }, webhook_url: stack.receiver.url + '/budget',
    });
    assert.equal(r.status, 202, r.text);
    const j = await waitTerminal(r.body.job_id, 30000);
    assert.equal(j.status, 'succeeded', JSON.stringify(j));
    assert.equal(j.cost.amount, 0.25);
    await waitDelivered(j.job_id); // its job.succeeded
    return j;
  };
  const warnings = async () => (await stack.receiver.forPath('/budget')).filter((d) => d.body && d.body.type === 'budget.warning');
  // The deliveries the end of a job queued (a warning is queued in the same
  // transaction as the job's own delivery, so this is complete once the job
  // has ended).
  const events = async (id) => {
    const r = await stack.api('GET', `/v1/jobs/${id}/deliveries`);
    assert.equal(r.status, 200, r.text);
    return r.body.data.map((d) => d.event).sort();
  };

  test('exactly one budget.warning, signed, when the crossing job ends; none before or after', T, async () => {
    const first = await run('warn 1');
    assert.deepEqual(await events(first.job_id), ['job.succeeded'], 'under the line: no warning');
    assert.deepEqual(await warnings(), []);

    const second = await run('warn 2');
    assert.deepEqual(await events(second.job_id), ['budget.warning', 'job.succeeded'], 'the crossing job queues the warning');
    const [w] = await h.waitFor(async () => { const x = await warnings(); return x.length >= 1 && x; }, 20000, { what: 'the budget.warning delivery' });
    assert.equal(w.verified, true, `signed with the customer's secret: ${w.reason}`);
    assert.ok(w.headers['webhook-id'] && w.headers['webhook-signature'], 'Standard Webhooks headers');
    const b = w.body;
    assert.equal(b.type, 'budget.warning');
    assert.equal(b.customer, 'acme');
    assert.deepEqual(b.budget, { amount: 1, unit: 'usd', period: 'month', warn_at: 0.5 });
    assert.equal(b.spent, 0.5);
    assert.equal(b.fraction, 0.5);
    assert.equal(b.job_id, second.job_id);
    assert.match(b.at, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/);
    assert.equal(b.delivery_id, undefined, 'the body only');
    const ev = (await stack.api('GET', `/v1/jobs/${second.job_id}/events`)).body.data;
    assert.equal(ev.filter((e) => e.kind === 'budget_warning').length, 1, 'on the job\'s timeline');

    // later jobs in the same period: past the line already, no warning
    const third = await run('warn 3');
    assert.deepEqual(await events(third.job_id), ['job.succeeded']);
    const fourth = await run('warn 4'); // reaches the budget (1.0): still no second warning
    assert.deepEqual(await events(fourth.job_id), ['job.succeeded']);
    assert.equal((await warnings()).length, 1, 'one warning per crossing');
    assert.equal((await stack.receiver.received()).filter((d) => d.body && d.body.type === 'budget.warning').length, 1);
  });
});
