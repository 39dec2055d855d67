'use strict';
// End-to-end tests of the Krea, ModelsLab, Artificial Studio and abstrakt
// adapters (fal has tests/e2e/features/fal.test.js), against provsim and the example
// receiver, plus one table-driven test over all five providers: the same
// request reaches the receiver signed and in the same shape.
//
//   GENRELAY_BIN=$PWD/build/genrelay node --test tests/e2e/features/providers.test.js
//
// One stack serves the whole file. Every test uses its own prompt and its own
// receiver path, and finds its provider requests through the job id in the
// callback URL genrelay passed, so the tests run in parallel.

const { after, describe, test } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const h = require('../lib/harness');

const { TERMINAL } = h;
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;
const JOB_KEYS = ['job_id', 'status', 'model_id', 'provider', 'request_id', 'track_id', 'output', 'error', 'created_at', 'completed_at'];
const T = { timeout: 60000 };

const uniq = (name) => `${name}-${crypto.randomBytes(5).toString('hex')}`;
const cbPattern = (prov, jobId) => new RegExp(`^http://127\\.0\\.0\\.1:\\d+/v1/callbacks/${prov}/${jobId}/[^/]+$`);

// What each provider must receive. `cb(r)` is the callback URL a recorded
// submit carries (null when it is not a submit); `checkSubmit` asserts auth,
// path and body; `isPoll`/`isCancel` recognise the follow-up calls for a
// provider request id; `auth(r)` asserts a follow-up call's credentials.
const PROVIDERS = {
  krea: {
    model: 'krea:image/bfl/flux-1-dev',
    cancel: true,
    cb: (r) => (r.method === 'POST' && r.headers['x-webhook-url']) || null,
    checkSubmit(s, { input }) {
      assert.equal(s.path, '/krea/generate/image/bfl/flux-1-dev');
      assert.equal(s.headers.authorization, 'Bearer krea-test-key');
      assert.deepEqual(s.body, input, 'the body is the input as given');
    },
    auth: (r) => assert.equal(r.headers.authorization, 'Bearer krea-test-key'),
    isPoll: (r, rid) => r.method === 'GET' && r.path === `/krea/jobs/${rid}`,
    isCancel: (r, rid) => r.method === 'DELETE' && r.path === `/krea/jobs/${rid}`,
  },
  modelslab: {
    model: 'modelslab:images/text2img',
    cancel: false,
    cb: (r) => (r.method === 'POST' && r.body && typeof r.body.webhook === 'string' && r.body.webhook) || null,
    checkSubmit(s, { input, trackId, jobId }) {
      assert.equal(s.path, '/modelslab/api/v6/images/text2img');
      assert.equal(s.body.key, 'modelslab-test-key', 'the key travels in the body');
      assert.equal(s.headers.authorization, undefined, 'no Authorization header');
      assert.equal(s.body.track_id, trackId || jobId, 'track_id is passed');
      for (const [k, v] of Object.entries(input)) assert.deepEqual(s.body[k], v, `input field ${k} is top-level`);
    },
    auth: (r) => assert.equal(r.body && r.body.key, 'modelslab-test-key'),
    isPoll: (r, rid) => r.method === 'POST' && (r.path === `/modelslab/api/v6/images/fetch/${rid}` || (r.path === '/modelslab/api/v6/images/fetch' && String(r.body && r.body.request_id) === rid)),
    isCancel: () => false,
  },
  artificialstudio: {
    model: 'artificialstudio:create-image',
    cancel: false,
    cb: (r) => (r.method === 'POST' && r.body && typeof r.body.webhook === 'string' && r.body.webhook) || null,
    checkSubmit(s, { input }) {
      assert.equal(s.path, '/artificialstudio/api/run');
      assert.equal(s.headers.authorization, 'artificialstudio-test-key', 'the raw key, no Bearer');
      assert.deepEqual(Object.keys(s.body).sort(), ['input', 'tool', 'webhook'], 'only the documented top-level fields');
      assert.equal(s.body.tool, 'create-image');
      assert.deepEqual(s.body.input, input);
    },
    auth: (r) => assert.equal(r.headers.authorization, 'artificialstudio-test-key'),
    isPoll: (r, rid) => r.method === 'GET' && r.path === `/artificialstudio/api/generations/${rid}`,
    isCancel: () => false,
  },
  abstrakt: {
    model: 'abstrakt:fal-ai/flux/schnell',
    cancel: true,
    cb: (r) => (r.method === 'POST' && r.body && typeof r.body.webhook_url === 'string' && r.body.webhook_url) || null,
    checkSubmit(s, { input }) {
      assert.equal(s.path, '/abstrakt/v1/models/fal-ai/flux/schnell/run');
      assert.equal(s.headers.authorization, 'Bearer abstrakt-test-key');
      assert.deepEqual(s.body.input, input);
      assert.equal(s.body.sync, false, 'async mode');
    },
    auth: (r) => assert.equal(r.headers.authorization, 'Bearer abstrakt-test-key'),
    isPoll: (r, rid) => r.method === 'GET' && r.path === `/abstrakt/v1/jobs/${rid}`,
    isCancel: (r, rid) => r.method === 'DELETE' && r.path === `/abstrakt/v1/jobs/${rid}`,
  },
  fal: {
    model: 'fal:fal-ai/flux/dev',
    cancel: true,
    cb: (r) => (r.method === 'POST' && r.query && r.query.fal_webhook) || null,
    checkSubmit(s, { input }) {
      assert.equal(s.path, '/fal/fal-ai/flux/dev');
      assert.equal(s.headers.authorization, 'Key fal-test-key');
      assert.deepEqual(s.body, input);
    },
    auth: (r) => assert.equal(r.headers.authorization, 'Key fal-test-key'),
    isPoll: (r, rid) => r.method === 'GET' && r.path.startsWith('/fal/fal-ai/flux/requests/' + rid),
    isCancel: (r, rid) => r.method === 'PUT' && r.path === `/fal/fal-ai/flux/requests/${rid}/cancel`,
  },
};
const NEW_FOUR = ['krea', 'modelslab', 'artificialstudio', 'abstrakt'];

describe('genrelay with the krea, modelslab, artificialstudio and abstrakt adapters', { concurrency: true }, () => {
  // Registered before useStack's hook so that it runs before the stack is
  // closed: genrelay must have survived every test.
  let stack = null;
  after(() => {
    if (stack && stack.gr && !stack.gr.running()) {
      const c = stack.gr.child;
      throw new Error(`genrelay died during the tests (${c && (c.exitCode ?? c.signalCode)}):\n${stack.gr.logTail(60)}`);
    }
  });
  stack = h.useStack();
  const { getJob, waitTerminal, waitDelivered } = h.jobHelpers(stack);

  // --- helpers ------------------------------------------------------------

  const hookPath = (name) => `/p/${uniq(name)}`;
  const hookUrl = (p) => stack.receiver.url + p;

  async function submit(prov, input, extra = {}, model = PROVIDERS[prov].model) {
    const r = await stack.api('POST', `/v1/models/${model}/run`, { input, ...extra });
    assert.equal(r.status, 202, r.text);
    assert.match(r.body.job_id, /^job_/);
    assert.equal(r.body.status, 'processing');
    assert.equal(r.body.model_id, model);
    return r.body.job_id;
  }

  // Every request provsim recorded for this job: the submits (found by the
  // callback URL, which names the job) and, once the provider id is known,
  // every call naming that id.
  async function requestsOf(prov, jobId, rid) {
    const P = PROVIDERS[prov];
    const reqs = await stack.sim.requests(prov);
    const submits = reqs.filter((r) => {
      const cb = P.cb(r);
      return cb && cb.includes(`/${jobId}/`);
    });
    const polls = rid ? reqs.filter((r) => P.isPoll(r, rid)) : [];
    const cancels = rid ? reqs.filter((r) => P.isCancel(r, rid)) : [];
    const all = rid ? reqs.filter((r) => submits.includes(r) || r.path.includes(rid) || (r.body && String(r.body.request_id) === rid)) : submits;
    return { submits, polls, cancels, all };
  }

  async function callbacksOf(prov, rid) {
    return (await stack.sim.callbacks(prov)).filter((c) => c.ref === rid);
  }

  // The unified job object (GET or webhook body).
  function assertUnified(j, { jobId, prov, status, trackId = null, model = PROVIDERS[prov].model }) {
    for (const k of JOB_KEYS) assert.ok(k in j, `job object has ${k}: ${JSON.stringify(j)}`);
    assert.equal(j.job_id, jobId);
    assert.equal(j.status, status, JSON.stringify(j));
    assert.equal(j.model_id, model);
    assert.equal(j.provider, prov);
    assert.equal(j.track_id, trackId);
    assert.match(j.created_at, RFC3339);
    if (TERMINAL.has(status)) assert.match(j.completed_at, RFC3339);
    if (status === 'succeeded') {
      assert.equal(j.error, null);
      assert.equal(typeof j.request_id, 'string');
      assert.ok(j.request_id.length > 0);
      assert.equal(j.output.type, 'image');
      assert.ok(Array.isArray(j.output.items) && j.output.items.length >= 1, JSON.stringify(j.output));
      for (const it of j.output.items) {
        assert.equal(it.type, 'image');
        assert.ok(it.url.startsWith(`${stack.sim.url}/files/`), it.url);
        if (it.content_type !== undefined) assert.equal(it.content_type, 'image/png');
      }
    } else {
      assert.equal(j.output, null);
      assert.equal(typeof j.error.code, 'string');
      assert.equal(typeof j.error.message, 'string');
    }
  }

  // One verified delivery, then no second one; returns it.
  async function oneDelivery(id, quietMs = 500) {
    const [d] = await waitDelivered(id);
    assert.equal(d.verified, true, d.reason);
    assert.ok(d.id, 'webhook-id');
    await h.sleep(quietMs);
    const all = await stack.receiver.forJob(id);
    assert.equal(all.length, 1, `exactly one delivery: ${JSON.stringify(all.map((x) => x.body && x.body.status))}`);
    return d;
  }

  async function assertGetAgrees(id, d) {
    const j = await getJob(id);
    for (const k of JOB_KEYS) assert.deepEqual(j[k], d.body[k], `GET and delivery agree on ${k}`);
    return j;
  }

  // --- per provider -----------------------------------------------------------

  for (const prov of NEW_FOUR) {
    const P = PROVIDERS[prov];

    describe(prov, { concurrency: true }, () => {
      test(`${prov}: model routing, auth and callback URL in the right place; one signed delivery of the unified job`, T, async () => {
        const p = hookPath(`${prov}-ok`);
        const trackId = uniq('trk');
        const input = { prompt: uniq(`${prov} ok`), sim: { delay_ms: 150 } };
        if (prov === 'modelslab') input.model_id = 'flux'; // ModelsLab's own model id travels in the input
        const id = await submit(prov, input, { webhook_url: hookUrl(p), track_id: trackId });

        const d = await oneDelivery(id);
        assert.equal(d.path, p);
        assertUnified(d.body, { jobId: id, prov, status: 'succeeded', trackId });
        const j = await assertGetAgrees(id, d);

        const { submits } = await requestsOf(prov, id, j.request_id);
        assert.equal(submits.length, 1, 'one submit');
        const s = submits[0];
        P.checkSubmit(s, { input, trackId, jobId: id });
        assert.match(P.cb(s), cbPattern(prov, id), 'our callback URL');
        assert.equal(new URL(P.cb(s)).origin, stack.gr.url);
        if (prov === 'modelslab') assert.equal(s.body.model_id, 'flux');

        // The provider's callback reached genrelay and was accepted (abstrakt's is signed and verified).
        const cbs = await h.waitFor(async () => {
          const l = await callbacksOf(prov, j.request_id);
          return l.length && l;
        }, 5000, { what: `${prov} callback in provsim's log` });
        assert.ok(cbs.some((c) => c.kind === 'normal' && c.status === 200), `callback accepted: ${JSON.stringify(cbs)}`);
      });

      test(`${prov}: provider failure ends failed with PROVIDER_FAILURE and the provider's message`, T, async () => {
        const p = hookPath(`${prov}-fail`);
        const message = uniq('the model exploded');
        const id = await submit(prov, { prompt: uniq(`${prov} fail`), sim: { outcome: 'fail', delay_ms: 150, message } }, { webhook_url: hookUrl(p), track_id: 'trk-fail' });
        const d = await oneDelivery(id);
        assertUnified(d.body, { jobId: id, prov, status: 'failed', trackId: 'trk-fail' });
        assert.equal(d.body.error.code, 'PROVIDER_FAILURE');
        assert.equal(d.body.error.message, message);
        await assertGetAgrees(id, d);
      });

      test(`${prov}: no callback: the job succeeds by polling, with the right credentials`, T, async () => {
        const p = hookPath(`${prov}-poll`);
        const id = await submit(prov, { prompt: uniq(`${prov} poll`), sim: { callback: 'none', delay_ms: 200 } }, { webhook_url: hookUrl(p) });
        const d = await oneDelivery(id, 300);
        assertUnified(d.body, { jobId: id, prov, status: 'succeeded' });
        const rid = d.body.request_id;
        assert.equal((await callbacksOf(prov, rid)).length, 0, 'provsim sent no callback');
        const { polls } = await requestsOf(prov, id, rid);
        assert.ok(polls.length >= 1, 'genrelay polled');
        for (const r of polls) P.auth(r);
      });

      test(`${prov}: duplicate callback is acknowledged; one delivery`, T, async () => {
        const p = hookPath(`${prov}-dup`);
        const id = await submit(prov, { prompt: uniq(`${prov} dup`), sim: { callback: 'duplicate', delay_ms: 150 } }, { webhook_url: hookUrl(p) });
        await waitDelivered(id);
        const j = await getJob(id);
        assertUnified(j, { jobId: id, prov, status: 'succeeded' });
        const cbs = await h.waitFor(async () => {
          const l = await callbacksOf(prov, j.request_id);
          return l.some((c) => c.kind === 'duplicate') && l;
        }, 10000, { what: 'duplicate callback sent' });
        for (const c of cbs) assert.equal(c.status, 200, `callback acknowledged: ${JSON.stringify(c)}`);
        await h.sleep(400);
        assert.equal((await stack.receiver.forJob(id)).length, 1, 'one delivery');
        const after = await getJob(id);
        assert.equal(after.status, 'succeeded');
        assert.equal(after.completed_at, j.completed_at);
      });

      test(`${prov}: a 429 in the provider's error shape (Retry-After: 1) is retried, then the job succeeds`, T, async () => {
        const p = hookPath(`${prov}-429`);
        const prompt = uniq(`${prov} busy`);
        // delay_ms: the callback comes a second after the accepted submit, so
        // that even on a loaded machine the submit answer is applied first
        // (a callback that overtakes it is legal and ends the job without a
        // "submitted" event, which this test does not look at).
        const id = await submit(prov, { prompt, sim: { http_status: 429, http_times: 1, delay_ms: 1000 } }, { webhook_url: hookUrl(p) });
        const d = await oneDelivery(id, 200);
        assertUnified(d.body, { jobId: id, prov, status: 'succeeded' });
        const { submits } = await requestsOf(prov, id);
        assert.equal(submits.length, 2, 'one refused submit and one accepted');
        assert.ok(submits[1].at - submits[0].at >= 900, 'Retry-After honoured');
        const k = (await stack.api('GET', `/v1/jobs/${id}/events`)).body.data.map((e) => e.kind);
        assert.deepEqual(k, ['submit_retry', 'submitted', 'ended']);
      });

      if (P.cancel) {
        test(`${prov}: DELETE cancels the job and is forwarded to the provider`, T, async () => {
          const p = hookPath(`${prov}-cancel`);
          const id = await submit(prov, { prompt: uniq(`${prov} cancel`), sim: { delay_ms: 4000 } }, { webhook_url: hookUrl(p) });
          const { request_id: rid } = await h.waitFor(async () => {
            const j = await getJob(id);
            return j.request_id && j;
          }, 10000, { what: 'job submitted' });
          const del = await stack.api('DELETE', `/v1/jobs/${id}`);
          assert.equal(del.status, 200, del.text);
          assert.equal(del.body.status, 'canceled');
          const j = await waitTerminal(id, 5000);
          assertUnified(j, { jobId: id, prov, status: 'canceled' });
          assert.equal(j.error.code, 'CANCELED');
          const c = await h.waitFor(async () => (await requestsOf(prov, id, rid)).cancels[0], 10000, { what: `cancel at ${prov}` });
          P.auth(c);
          const d = await oneDelivery(id, 800); // Krea posts a webhook for the cancelled job too: acknowledged, not delivered again
          assertUnified(d.body, { jobId: id, prov, status: 'canceled' });
          assert.equal((await getJob(id)).status, 'canceled');
        });
      } else {
        test(`${prov}: DELETE cancels locally (no cancel call); the provider's later result is ignored`, T, async () => {
          const p = hookPath(`${prov}-cancel`);
          // 3 s: the DELETE lands while the provider still runs the job, also on a
          // loaded machine; its result comes after and must be ignored.
          const id = await submit(prov, { prompt: uniq(`${prov} cancel`), sim: { delay_ms: 3000 } }, { webhook_url: hookUrl(p) });
          const { request_id: rid } = await h.waitFor(async () => {
            const j = await getJob(id);
            return j.request_id && j;
          }, 10000, { what: 'job submitted' });
          const del = await stack.api('DELETE', `/v1/jobs/${id}`);
          assert.equal(del.status, 200, del.text);
          assert.equal(del.body.status, 'canceled');
          const canceledAt = Date.now();
          // The provider finishes anyway and posts its (success) callback: acknowledged, ignored.
          const cbs = await h.waitFor(async () => {
            const l = await callbacksOf(prov, rid);
            return l.length && l;
          }, 10000, { what: 'the provider result callback' });
          for (const c of cbs) assert.equal(c.status, 200, `late result acknowledged: ${JSON.stringify(c)}`);
          await h.sleep(300);
          const j = await getJob(id);
          assertUnified(j, { jobId: id, prov, status: 'canceled' });
          assert.equal(j.error.code, 'CANCELED');
          const d = await oneDelivery(id, 200);
          assertUnified(d.body, { jobId: id, prov, status: 'canceled' });
          const { all } = await requestsOf(prov, id, rid);
          const late = all.filter((r) => r.at > canceledAt + 200);
          assert.deepEqual(late.map((r) => `${r.method} ${r.path}`), [], 'no provider call after the cancel');
        });
      }
    });
  }

  // --- provider specifics -------------------------------------------------------

  test('modelslab: a job that is done at once (delay_ms 0) is answered in the submit response; no poll needed', T, async () => {
    for (const outcome of ['success', 'fail']) {
      const p = hookPath(`modelslab-instant-${outcome}`);
      const id = await submit('modelslab', { prompt: uniq('instant'), sim: { delay_ms: 0, outcome, callback: 'none' } }, { webhook_url: hookUrl(p) });
      const d = await oneDelivery(id, 200);
      assertUnified(d.body, { jobId: id, prov: 'modelslab', status: outcome === 'success' ? 'succeeded' : 'failed' });
      if (outcome === 'fail') assert.equal(d.body.error.code, 'PROVIDER_FAILURE');
      const { polls } = await requestsOf('modelslab', id, d.body.request_id);
      assert.equal(polls.length, 0, 'no fetch');
    }
  });

  // --- abstrakt signatures ------------------------------------------------------

  test('abstrakt: a forged callback (wrong X-Abstrakt-Signature) to the real callback URL is 401 and leaves the job untouched', T, async () => {
    const p = hookPath('abstrakt-forged');
    // The real callback comes after 4 s: the forged ones must all be sent
    // while the job is still live, also on a loaded machine.
    const id = await submit('abstrakt', { prompt: uniq('abstrakt forged'), sim: { delay_ms: 4000 } }, { webhook_url: hookUrl(p) });
    const before = await h.waitFor(async () => {
      const j = await getJob(id);
      return j.request_id && j;
    }, 10000, { what: 'job submitted' });
    const { submits } = await requestsOf('abstrakt', id);
    assert.equal(submits.length, 1);
    const cbUrl = submits[0].body.webhook_url;
    assert.match(cbUrl, cbPattern('abstrakt', id));

    const body = JSON.stringify({ job_id: before.request_id, status: 'succeeded', output: { type: 'image', items: [{ type: 'image', url: 'https://evil.example/forged.png' }] } });
    const wrong = crypto.createHmac('sha256', 'not-the-secret').update(body).digest('hex');
    for (const headers of [{ 'x-abstrakt-signature': wrong }, {}, { 'x-abstrakt-signature': 'zz' }]) {
      const r = await h.request(cbUrl, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
      assert.equal(r.status, 401, r.text);
      assert.equal(r.body.error.code, 'UNAUTHORIZED');
    }
    // A body changed after signing fails too.
    const good = crypto.createHmac('sha256', 'abstrakt-sim-secret').update(body).digest('hex');
    const tampered = body.replace('forged', 'forgex');
    const r2 = await h.request(cbUrl, { method: 'POST', headers: { 'content-type': 'application/json', 'x-abstrakt-signature': good }, body: tampered });
    assert.equal(r2.status, 401, r2.text);

    const mid = await getJob(id);
    assert.equal(mid.status, 'processing');
    assert.deepEqual(mid, before, 'job untouched');
    assert.equal((await stack.receiver.forJob(id)).length, 0, 'nothing delivered');

    // The real, signed callback still completes the job with the real output.
    const d = await oneDelivery(id, 200);
    assertUnified(d.body, { jobId: id, prov: 'abstrakt', status: 'succeeded' });
    assert.ok(!JSON.stringify(d.body).includes('evil.example'));
  });

  // --- the five providers alike -----------------------------------------------

  test('all five providers: the same request to each of the five providers reaches the receiver signed and in the same shape, on success and failure, with and without callback', T, async () => {
    const cases = [];
    for (const prov of Object.keys(PROVIDERS)) {
      for (const outcome of ['success', 'fail']) {
        for (const callback of ['normal', 'none']) cases.push({ prov, outcome, callback });
      }
    }
    const message = uniq('done-when failure');
    const run = async (c) => {
      const p = hookPath(`dw-${c.prov}-${c.outcome}-${c.callback}`);
      const trackId = uniq('dw');
      // The same request shape for every provider; only the model id differs.
      const body = { input: { prompt: uniq('a red fox'), sim: { delay_ms: 150, outcome: c.outcome, callback: c.callback, message } }, webhook_url: hookUrl(p), track_id: trackId };
      const r = await stack.api('POST', `/v1/models/${PROVIDERS[c.prov].model}/run`, body);
      assert.equal(r.status, 202, `${c.prov}: ${r.text}`);
      const id = r.body.job_id;
      const [d] = await waitDelivered(id, 1, 25000);
      return { ...c, id, d, trackId };
    };
    const results = await Promise.all(cases.map(run));
    await h.sleep(300);
    const shapes = new Set();
    for (const x of results) {
      const label = `${x.prov}/${x.outcome}/${x.callback}`;
      assert.equal(x.d.verified, true, `${label}: ${x.d.reason}`);
      assert.equal((await stack.receiver.forJob(x.id)).length, 1, `${label}: one delivery`);
      const status = x.outcome === 'success' ? 'succeeded' : 'failed';
      assertUnified(x.d.body, { jobId: x.id, prov: x.prov, status, trackId: x.trackId });
      if (status === 'failed') {
        assert.equal(x.d.body.error.code, 'PROVIDER_FAILURE', label);
        assert.ok(x.d.body.error.message.includes(message), `${label}: the provider's message in ${JSON.stringify(x.d.body.error)}`);
      }
      shapes.add(`${status}:${Object.keys(x.d.body).sort().join(',')}`);
      if (x.callback === 'none') {
        assert.equal((await callbacksOf(x.prov, x.d.body.request_id)).length, 0, `${label}: no provider callback`);
      }
    }
    const keysets = new Set([...shapes].map((s) => s.split(':')[1]));
    assert.equal(keysets.size, 1, `one body shape for all: ${[...shapes].join(' | ')}`);
  });
});
