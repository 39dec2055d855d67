'use strict';
// End-to-end tests of provider key pools (providers.NAME.keys), against
// provsim's per-key behaviour (a key containing "sim-429" is rate-limited,
// "sim-401" refused):
//   - a pool of three keys where one answers 429 and one 401: every job
//     succeeds on the remaining key, the refused key is logged once;
//   - a pool of two good keys: every later step of a job (status, result,
//     cancel) uses the key its submit used;
//   - no key value in job records, events or logs;
//   - the broken key on /metrics (genrelay_provider_keys, provider and state
//     labels only, promtool-clean) and on the dashboard's providers view (by
//     id, never by value).
//
//   GENRELAY_BIN=$PWD/build/genrelay node --test tests/e2e/features/keypool.test.js

const { describe, test } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { spawnSync } = require('node:child_process');
const h = require('../lib/harness');

const T = { timeout: 90000 };
const FAL_MODEL = 'fal:fal-ai/flux/dev';
const uniq = (name) => `${name}-${crypto.randomBytes(5).toString('hex')}`;

async function run(stack, input) {
  const r = await stack.api('POST', `/v1/models/${FAL_MODEL}/run`, { input });
  assert.equal(r.status, 202, r.text);
  return r.body.job_id;
}

async function events(stack, id) {
  const r = await stack.api('GET', `/v1/jobs/${id}/events`);
  assert.equal(r.status, 200, r.text);
  return r.body.data;
}

// The fal requests of one job: its submits (by the unique prompt) and the
// calls about its request id, each with the key it carried.
async function falCalls(stack, prompt, requestId) {
  const all = await stack.sim.requests('fal');
  const key = (r) => String(r.headers.authorization || '').replace(/^Key\s+/, '');
  const submits = all.filter((r) => r.method === 'POST' && r.body && r.body.prompt === prompt).map(key);
  const later = requestId ? all.filter((r) => r.path.includes(`/requests/${requestId}`)).map((r) => ({ path: r.path, method: r.method, key: key(r) })) : [];
  return { submits, later };
}

describe('a pool of three keys, one rate-limited and one revoked', () => {
  const stack = h.useStack({
    config: {
      providers: {
        fal: {
          key: 'fal-unused-single-key',
          callbacks: false, // poll only: every job has status and result calls
          keys: [
            { id: 'limited', key: 'fal-sim-429-aaaaaaaa', weight: 100 },
            { id: 'revoked', key: 'fal-sim-401-bbbbbbbb', weight: 100 },
            { id: 'good', key: 'fal-good-cccccccc', weight: 1 },
          ],
        },
      },
    },
  });
  const { getJob, waitTerminal } = h.jobHelpers(stack);

  test('every job succeeds on the remaining key; every later step uses it', T, async () => {
    const prompts = Array.from({ length: 10 }, (_, i) => uniq(`pool3-${i}`));
    const ids = [];
    for (const p of prompts) ids.push(await run(stack, { prompt: p, sim: { delay_ms: 100 } }));
    for (let i = 0; i < ids.length; i++) {
      const j = await waitTerminal(ids[i], 40000);
      assert.equal(j.status, 'succeeded', JSON.stringify(j));
      const { submits, later } = await falCalls(stack, prompts[i], j.request_id);
      assert.ok(submits.length >= 1);
      assert.equal(submits[submits.length - 1], 'fal-good-cccccccc', `the accepted submit used the good key: ${submits}`);
      for (const k of submits.slice(0, -1)) assert.match(k, /sim-(429|401)/, 'only the failing keys were refused');
      assert.ok(later.length >= 2, `status and result calls: ${JSON.stringify(later)}`);
      for (const c of later) assert.equal(c.key, 'fal-good-cccccccc', `${c.method} ${c.path}`);
      const ev = await events(stack, ids[i]);
      const sub = ev.find((e) => e.kind === 'submitted');
      assert.equal(sub.detail.key_id, 'good');
      const text = JSON.stringify([await getJob(ids[i]), ev]);
      for (const secret of ['fal-good-cccccccc', 'fal-sim-429-aaaaaaaa', 'fal-sim-401-bbbbbbbb']) assert.ok(!text.includes(secret), 'no key in the job or its events');
    }
    // The failing keys weigh 200 of 201: both were tried, and are now out of
    // the pool (revoked) or cooling down for 60 s (limited). A second batch
    // goes to the good key alone, each job in one submit.
    const failing = async () => (await stack.sim.requests('fal')).map((r) => String(r.headers.authorization || '')).filter((a) => /sim-(429|401)/.test(a));
    const before = await failing();
    assert.ok(before.some((a) => a.includes('sim-401')) && before.some((a) => a.includes('sim-429')), 'both failing keys were tried');
    const second = Array.from({ length: 5 }, (_, i) => uniq(`pool3-after-${i}`));
    const ids2 = [];
    for (const p of second) ids2.push(await run(stack, { prompt: p, sim: { delay_ms: 50 } }));
    for (let i = 0; i < ids2.length; i++) {
      const j = await waitTerminal(ids2[i], 40000);
      assert.equal(j.status, 'succeeded', JSON.stringify(j));
      assert.deepEqual((await falCalls(stack, second[i], j.request_id)).submits, ['fal-good-cccccccc']);
    }
    assert.equal((await failing()).length, before.length, 'no call with a failing key after they were marked');
    const log = stack.gr.log();
    assert.equal(log.split('\n').filter((l) => l.includes('key revoked refused (HTTP 401)')).length, 1, 'logged once');
    assert.ok(!log.includes('fal-sim-401-bbbbbbbb') && !log.includes('fal-good-cccccccc'), 'no key in the log');
  });

  test('the broken key shows on /metrics and on the dashboard, by id, never by value', T, async () => {
    // After the test above: "revoked" is broken (until the config changes),
    // "limited" cools down for 60 s from its last 429 (usable again after).
    const m = await stack.gr.admin('GET', '/metrics');
    assert.equal(m.status, 200);
    const series = [...m.text.matchAll(/^genrelay_provider_keys\{(.*)\} (\S+)$/gm)].map((x) => ({ labels: x[1], value: Number(x[2]) }));
    const keys = (state) => series.find((x) => x.labels === `provider="fal",state="${state}"`);
    assert.equal(keys('broken').value, 1, m.text);
    assert.equal(keys('cooling').value + keys('usable').value, 2);
    assert.ok(keys('usable').value >= 1, 'the good key is usable');
    assert.equal(series.length, 3, 'pools only (the other providers have a single key): provider and state, nothing else');
    assert.match(m.text, /# TYPE genrelay_provider_keys gauge/);
    for (const secret of ['fal-good-cccccccc', 'fal-sim-429-aaaaaaaa', 'fal-sim-401-bbbbbbbb']) assert.ok(!m.text.includes(secret), 'no key value on /metrics');
    for (const line of m.text.split('\n').filter((l) => l && !l.startsWith('#'))) assert.doesNotMatch(line, /"(revoked|limited|good)"/, 'no key id in a label');
    const p = spawnSync('promtool', ['check', 'metrics'], { input: m.text, encoding: 'utf8', timeout: 30000 });
    assert.equal(p.error, undefined, 'promtool runs (Debian package prometheus; tools/install-deps)');
    assert.equal(p.status, 0, p.stdout + p.stderr);

    // The dashboard's providers view: the pool's keys by id with their state.
    const d = await stack.gr.admin('GET', '/ui/api/providers');
    assert.equal(d.status, 200, d.text);
    const pool = d.body.keys.fal;
    assert.deepEqual(pool.map((k) => k.id), ['limited', 'revoked', 'good'], 'in the config\'s order');
    const byId = Object.fromEntries(pool.map((k) => [k.id, k]));
    assert.equal(byId.revoked.state, 'broken');
    assert.equal(byId.good.state, 'usable');
    assert.ok(['cooling', 'usable'].includes(byId.limited.state), byId.limited.state);
    if (byId.limited.state === 'cooling') assert.ok(byId.limited.cooling_s > 0 && byId.limited.cooling_s <= 60, JSON.stringify(byId.limited));
    for (const k of pool) assert.deepEqual(Object.keys(k).filter((f) => !['id', 'state', 'cooling_s'].includes(f)), [], 'ids and states only');
    assert.deepEqual(Object.keys(d.body.keys), ['fal'], 'single-key providers have no pool');
    for (const secret of ['fal-good-cccccccc', 'fal-sim-429-aaaaaaaa', 'fal-sim-401-bbbbbbbb']) assert.ok(!d.text.includes(secret), 'no key value on the dashboard');
  });
});

describe('a pool of two good keys', () => {
  const stack = h.useStack({
    config: {
      providers: {
        fal: {
          callbacks: false,
          keys: [{ key: 'fal-pool-key-one' }, { key: 'fal-pool-key-two' }],
        },
      },
    },
  });
  const { waitTerminal } = h.jobHelpers(stack);

  test('every later step of a job uses the key of its submit', T, async () => {
    const prompts = Array.from({ length: 24 }, (_, i) => uniq(`pool2-${i}`));
    const ids = [];
    for (const p of prompts) ids.push(await run(stack, { prompt: p, sim: { delay_ms: 100 } }));
    const used = new Set();
    for (let i = 0; i < ids.length; i++) {
      const j = await waitTerminal(ids[i], 40000);
      assert.equal(j.status, 'succeeded', JSON.stringify(j));
      const { submits, later } = await falCalls(stack, prompts[i], j.request_id);
      assert.equal(submits.length, 1);
      used.add(submits[0]);
      assert.ok(later.length >= 2);
      for (const c of later) assert.equal(c.key, submits[0], `${c.method} ${c.path} uses the job's key`);
      const sub = (await events(stack, ids[i])).find((e) => e.kind === 'submitted');
      assert.equal(sub.detail.key_id, submits[0] === 'fal-pool-key-one' ? 'key1' : 'key2');
    }
    assert.deepEqual([...used].sort(), ['fal-pool-key-one', 'fal-pool-key-two'], 'both keys take jobs');
  });

  test('a cancel uses the key of the job', T, async () => {
    const prompt = uniq('pool2-cancel');
    const id = await run(stack, { prompt, sim: { delay_ms: 20000 } });
    const j = await h.waitFor(async () => {
      const x = (await stack.api('GET', `/v1/jobs/${id}`)).body;
      return x.request_id && x;
    }, 20000, { what: 'submitted' });
    const r = await stack.api('DELETE', `/v1/jobs/${id}`);
    assert.ok(r.status === 200 || r.status === 202, r.text);
    const calls = await h.waitFor(async () => {
      const c = await falCalls(stack, prompt, j.request_id);
      return c.later.some((x) => x.method === 'PUT' && x.path.endsWith('/cancel')) && c;
    }, 20000, { what: 'the cancel call' });
    assert.equal(calls.submits.length, 1);
    for (const c of calls.later) assert.equal(c.key, calls.submits[0], `${c.method} ${c.path}`);
  });
});
