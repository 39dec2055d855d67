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
//     id, never by value);
//   - a key's max_inflight: a pool of one key with max_inflight 1 sends a
//     second job's submit only after the first job ended;
//   - a 401 on a poll and a 403 on a provider cancel mark the job's key
//     broken, as on a submit (provsim revokes a key while its job runs).
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

describe('a key with max_inflight 1', () => {
  const stack = h.useStack({
    config: {
      providers: { fal: { callbacks: false, keys: [{ id: 'only', key: 'fal-capped-key-1', max_inflight: 1 }] } },
      jobs: { poll_interval_s: 0.3 },
    },
  });
  const { waitTerminal } = h.jobHelpers(stack);

  test('the second job is submitted only after the first one ended', T, async () => {
    const p1 = uniq('cap-1');
    const p2 = uniq('cap-2');
    const id1 = await run(stack, { prompt: p1, sim: { delay_ms: 1500 } });
    // The first job holds the key's one slot before the second exists.
    await h.waitFor(async () => (await falCalls(stack, p1)).submits.length === 1, 20000, { what: 'the first submit' });
    const id2 = await run(stack, { prompt: p2, sim: { delay_ms: 50 } });
    const j1 = await waitTerminal(id1, 40000);
    const j2 = await waitTerminal(id2, 40000);
    assert.equal(j1.status, 'succeeded', JSON.stringify(j1));
    assert.equal(j2.status, 'succeeded', JSON.stringify(j2));
    const all = await stack.sim.requests('fal');
    const sub = (p) => all.filter((r) => r.method === 'POST' && r.body && r.body.prompt === p);
    assert.equal(sub(p1).length, 1);
    assert.equal(sub(p2).length, 1, 'the waiting job was submitted once: waiting is no failed attempt');
    // Order, not timing: provsim saw the second submit after the first job's
    // last call (its result) and after genrelay recorded its end.
    const firstCalls = all.filter((r) => r.path.includes(`/requests/${j1.request_id}`));
    assert.ok(firstCalls.length >= 2);
    const i2 = all.indexOf(sub(p2)[0]);
    for (const c of firstCalls) assert.ok(all.indexOf(c) < i2, `${c.method} ${c.path} came before the second submit`);
    assert.ok(sub(p2)[0].at >= Date.parse(j1.completed_at), `second submit at ${sub(p2)[0].at}, first job ended at ${j1.completed_at}`);
    for (const id of [id1, id2]) {
      const ev = await events(stack, id);
      assert.equal(ev.find((e) => e.kind === 'submitted').detail.key_id, 'only');
      assert.ok(!ev.some((e) => e.kind === 'submit_retry'), 'no retry counted');
    }
    // the slot is free again once both ended: a third job goes at once
    const id3 = await run(stack, { prompt: uniq('cap-3'), sim: { delay_ms: 50 } });
    assert.equal((await waitTerminal(id3, 40000)).status, 'succeeded');
  });
});

describe('a key refused on a later step', () => {
  const stack = h.useStack({
    config: {
      providers: {
        fal: {
          keys: [{ id: 'k1', key: 'fal-later-key-one' }, { id: 'k2', key: 'fal-later-key-two' }],
          poll_after_s: 0.3, // the fallback poll comes soon; provsim's callback comes after delay_ms
        },
      },
      jobs: { poll_interval_s: 0.3 },
    },
  });
  const value = { k1: 'fal-later-key-one', k2: 'fal-later-key-two' };
  const submitted = async (id) => {
    const ev = await h.waitFor(async () => {
      const e = await events(stack, id);
      return e.some((x) => x.kind === 'submitted') && e;
    }, 20000, { what: 'submitted' });
    return ev.find((x) => x.kind === 'submitted').detail.key_id;
  };
  const keyState = async (kid) => {
    const d = await stack.gr.admin('GET', '/ui/api/providers');
    assert.equal(d.status, 200, d.text);
    return d.body.keys.fal.find((k) => k.id === kid).state;
  };

  test('a 401 on a poll marks the job\'s key broken', T, async () => {
    const id = await run(stack, { prompt: uniq('later-poll'), sim: { delay_ms: 20000 } });
    const kid = await submitted(id);
    const other = kid === 'k1' ? 'k2' : 'k1';
    assert.equal(await keyState(kid), 'usable');
    await stack.sim.revokeKey(value[kid], 401);
    // the job's next poll (its own key) gets the 401
    await h.waitFor(async () => (await keyState(kid)) === 'broken', 20000, { what: 'the key marked broken by the poll' });
    assert.equal(await keyState(other), 'usable');
    const log = stack.gr.log();
    assert.equal(log.split('\n').filter((l) => l.includes(`key ${kid} refused (HTTP 401)`)).length, 1, 'logged once');
    assert.ok(!log.includes(value[kid]), 'no key value in the log');
    // a new job takes the other key
    const id2 = await run(stack, { prompt: uniq('later-after'), sim: { delay_ms: 20000 } });
    assert.equal(await submitted(id2), other);
    await stack.api('DELETE', `/v1/jobs/${id}`);
    await stack.api('DELETE', `/v1/jobs/${id2}`);
  });
});

describe('a key refused on a provider cancel', () => {
  const stack = h.useStack({
    config: {
      providers: {
        fal: {
          keys: [{ id: 'c1', key: 'fal-cancel-key-one' }, { id: 'c2', key: 'fal-cancel-key-two' }],
          poll_after_s: 600, // no poll before the cancel: only the cancel carries the key
        },
      },
    },
  });
  const value = { c1: 'fal-cancel-key-one', c2: 'fal-cancel-key-two' };

  test('a 403 on the provider cancel marks the job\'s key broken', T, async () => {
    const prompt = uniq('later-cancel');
    const id = await run(stack, { prompt, sim: { delay_ms: 20000 } });
    const ev = await h.waitFor(async () => {
      const e = await events(stack, id);
      return e.some((x) => x.kind === 'submitted') && e;
    }, 20000, { what: 'submitted' });
    const kid = ev.find((x) => x.kind === 'submitted').detail.key_id;
    await stack.sim.revokeKey(value[kid], 403);
    const r = await stack.api('DELETE', `/v1/jobs/${id}`);
    assert.ok(r.status === 200 || r.status === 202, r.text);
    const pc = await h.waitFor(async () => (await events(stack, id)).find((x) => x.kind === 'provider_cancel'), 20000, { what: 'the provider cancel' });
    assert.match(JSON.stringify(pc.detail), /403/);
    const d = await stack.gr.admin('GET', '/ui/api/providers');
    const byId = Object.fromEntries(d.body.keys.fal.map((k) => [k.id, k.state]));
    assert.equal(byId[kid], 'broken');
    assert.equal(byId[kid === 'c1' ? 'c2' : 'c1'], 'usable');
    const calls = (await stack.sim.requests('fal')).filter((x) => x.method === 'PUT' && x.path.endsWith('/cancel'));
    assert.equal(calls.length, 1, 'one cancel call, refused');
    assert.ok(!stack.gr.log().includes(value[kid]), 'no key value in the log');
  });
});
