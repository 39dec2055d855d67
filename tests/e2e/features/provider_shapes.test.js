'use strict';
// End-to-end tests of the provider shapes docs/provider-facts.md records,
// against provsim emitting them on request (the `sim` object): fal's
// payload_error and namespaced app ids, abstrakt's three callback forms and
// per-job webhook_secret, the request id unsigned providers' callbacks must
// name, Krea's full state list and ModelsLab's processing webhooks.
//
//   GENRELAY_BIN=$PWD/build/genrelay node --test tests/e2e/features/provider_shapes.test.js
//
// fal and abstrakt poll only after 120 s here, so a job of theirs that ends
// within the test ended through its callback (or a poll the callback asked for).

const { after, describe, test } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const h = require('../lib/harness');

const T = { timeout: 60000 };
const uniq = (name) => `${name}-${crypto.randomBytes(5).toString('hex')}`;

describe('provider shapes end to end', { concurrency: true }, () => {
  let stack = null;
  after(() => {
    if (stack && stack.gr && !stack.gr.running()) throw new Error(`genrelay died during the tests:\n${stack.gr.logTail(60)}`);
  });
  stack = h.useStack({
    config: {
      providers: { fal: { poll_after_s: 120 }, abstrakt: { poll_after_s: 120 } },
      jobs: { job_deadline_s: 60 },
    },
  });
  const { getJob, waitTerminal, waitDelivered } = h.jobHelpers(stack);
  const hookUrl = (name) => `${stack.receiver.url}/s/${uniq(name)}`;

  async function submit(model, input, extra = {}) {
    const r = await stack.api('POST', `/v1/models/${model}/run`, { input, ...extra });
    assert.equal(r.status, 202, r.text);
    return r.body.job_id;
  }

  // provsim's record of the job's submit (found by the job id in the callback URL).
  async function submitOf(prov, jobId, cbOf) {
    return h.waitFor(async () => (await stack.sim.requests(prov)).find((r) => r.method === 'POST' && (cbOf(r) || '').includes(`/${jobId}/`)), 10000, { what: `${prov} submit of ${jobId}` });
  }
  const CB = {
    fal: (r) => r.query && r.query.fal_webhook,
    abstrakt: (r) => r.body && r.body.webhook_url,
    krea: (r) => r.headers['x-webhook-url'],
    modelslab: (r) => r.body && r.body.webhook,
    artificialstudio: (r) => r.body && r.body.webhook,
  };

  function assertOneFile(job) {
    assert.equal(job.status, 'succeeded', JSON.stringify(job));
    assert.equal(job.output.items.length, 1, JSON.stringify(job.output));
    assert.ok(job.output.items[0].url.startsWith(`${stack.sim.url}/files/`), job.output.items[0].url);
  }

  // --- fal ------------------------------------------------------------------

  for (const [label, model, prefix, extra] of [
    ['plain id', 'fal-ai/flux/dev', 'fal-ai/flux', {}],
    ['namespaced id (workflows/owner/app/path)', 'fal:workflows/acme/pipe/v2', 'workflows/acme/pipe', {}],
    ['namespaced id, submit answer without *_url', 'fal:workflows/acme/pipe/v2', 'workflows/acme/pipe', { urls: false }],
  ]) {
    test(`fal ${label}: an OK webhook with payload null + payload_error fetches status then result at once; the job ends with the fetched output`, T, async () => {
      const id = await submit(model, { prompt: uniq('fal pe'), sim: { delay_ms: 200, payload_error: true, ...extra } }, { webhook_url: hookUrl('fal-pe') });
      const job = await waitTerminal(id, 30000);
      assertOneFile(job);
      const rid = job.request_id;
      const calls = (await stack.sim.requests('fal')).filter((r) => r.path.includes(`/requests/${rid}`));
      const paths = calls.map((r) => `${r.method} ${r.path}`);
      assert.deepEqual(paths, [`GET /fal/${prefix}/requests/${rid}/status`, `GET /fal/${prefix}/requests/${rid}`], 'status, then result, under the request prefix');
      // (A webhook that overtakes the stored submit answer is answered 503
      // and comes again on fal's retry schedule.)
      const cbs = (await stack.sim.callbacks('fal')).filter((c) => c.ref === rid);
      assert.ok(cbs.some((c) => c.status === 200), `the payload_error webhook was acknowledged: ${JSON.stringify(cbs)}`);
      const [d] = await waitDelivered(id);
      assert.deepEqual(d.body.output, job.output, 'the customer gets the fetched output');
    });
  }

  // --- abstrakt --------------------------------------------------------------

  test('abstrakt: all three callback forms end the job with their items; each run carries its own random webhook_secret, which signs the callback', T, async () => {
    const forms = [{ form: 'api' }, { form: 'tutorial' }, { form: 'envelope', progress: true }, { form: 'api', sign_with: 'account' }];
    const ids = await Promise.all(forms.map((f) => submit('abstrakt:fal-ai/flux/schnell', { prompt: uniq(`abs ${f.form}`), sim: { delay_ms: 300, ...f } }, { webhook_url: hookUrl('abs') })));
    const secrets = new Set();
    for (const [i, id] of ids.entries()) {
      const job = await waitTerminal(id, 30000);
      assertOneFile(job);
      const s = await submitOf('abstrakt', id, CB.abstrakt);
      assert.match(s.body.webhook_secret, /^[0-9a-f]{64}$/, 'a 32-byte random secret per job');
      secrets.add(s.body.webhook_secret);
      const cbs = (await stack.sim.callbacks('abstrakt')).filter((c) => c.ref === job.request_id);
      assert.ok(cbs.length >= 1 && cbs.every((c) => c.status === 200), `form ${JSON.stringify(forms[i])}: every callback accepted: ${JSON.stringify(cbs)}`);
      if (forms[i].progress) assert.equal(cbs.length, 3, 'job.started and job.progress were acknowledged too');
      const polls = (await stack.sim.requests('abstrakt')).filter((r) => r.method === 'GET' && r.path === `/abstrakt/v1/jobs/${job.request_id}`);
      assert.equal(polls.length, 0, 'ended by the callback, not by polling');
      await waitDelivered(id);
    }
    assert.equal(secrets.size, ids.length, 'no two jobs share a secret');

    // The secret is the provider's and ours only: not in the job, its events,
    // its deliveries or genrelay's log.
    for (const id of ids) {
      const s = (await submitOf('abstrakt', id, CB.abstrakt)).body.webhook_secret;
      const seen = [
        (await stack.api('GET', `/v1/jobs/${id}`)).text,
        (await stack.api('GET', `/v1/jobs/${id}/events`)).text,
        (await stack.api('GET', `/v1/jobs/${id}/deliveries`)).text,
        JSON.stringify(await stack.receiver.forJob(id)),
        stack.gr.log(),
      ];
      for (const text of seen) assert.ok(!text.includes(s), 'the per-job secret is not exposed');
    }
  });

  test('abstrakt: a callback signed with another job\'s secret is refused; the job\'s own callback then completes it', T, async () => {
    const a = await submit('abstrakt:fal-ai/flux/schnell', { prompt: uniq('abs a'), sim: { delay_ms: 100 } }, { webhook_url: hookUrl('abs-a') });
    const b = await submit('abstrakt:fal-ai/flux/schnell', { prompt: uniq('abs b'), sim: { delay_ms: 2500 } }, { webhook_url: hookUrl('abs-b') });
    const sa = await submitOf('abstrakt', a, CB.abstrakt);
    const sb = await submitOf('abstrakt', b, CB.abstrakt);
    const before = await h.waitFor(async () => {
      const j = await getJob(b);
      return j.request_id && j;
    }, 10000);
    const body = JSON.stringify({ request_id: before.request_id, status: 'completed', result: { items: [{ type: 'image', url: 'https://evil.example/x.png' }] } });
    const sig = crypto.createHmac('sha256', sa.body.webhook_secret).update(body).digest('hex');
    const r = await h.request(sb.body.webhook_url, { method: 'POST', headers: { 'content-type': 'application/json', 'x-abstrakt-signature': sig }, body });
    assert.equal(r.status, 401, r.text);
    assert.deepEqual(await getJob(b), before, 'job untouched');
    const job = await waitTerminal(b, 30000);
    assertOneFile(job);
    assert.ok(!JSON.stringify(job).includes('evil.example'));
  });

  // --- unsigned providers: the callback must name the job's request id ------

  const UNSIGNED = {
    krea: {
      model: 'krea:image/bfl/flux-1-dev',
      good: (rid) => ({ body: { job_id: rid, status: 'completed', result: { urls: ['https://evil.example/k.png'] } } }),
      none: () => ({ body: { status: 'completed', result: { urls: ['https://evil.example/k.png'] } } }),
      other: () => ({ body: { job_id: crypto.randomUUID(), status: 'completed', result: { urls: ['https://evil.example/k.png'] } } }),
    },
    modelslab: {
      model: 'modelslab:images/text2img',
      none: () => ({ body: { status: 'success', output: ['https://evil.example/m.png'] } }),
      other: () => ({ body: { status: 'success', id: 1, output: ['https://evil.example/m.png'] } }),
    },
    artificialstudio: {
      model: 'artificialstudio:create-image',
      none: () => ({ body: { status: 'success', type: 'image', output: 'https://evil.example/a.png' }, headers: { 'x-webhook-source': 'artificial-studio' } }),
      other: () => ({ body: { id: 'ffffffffffffffffffffffff', status: 'success', type: 'image', output: 'https://evil.example/a.png' }, headers: { 'x-media-id': 'ffffffffffffffffffffffff' } }),
    },
  };
  for (const [prov, U] of Object.entries(UNSIGNED)) {
    test(`${prov}: a callback naming no request id, or another one, is refused (401) and leaves the job untouched`, T, async () => {
      const id = await submit(U.model, { prompt: uniq(`${prov} unsigned`), sim: { delay_ms: 1500, callback: 'none' } }, { webhook_url: hookUrl(prov) });
      const s = await submitOf(prov, id, CB[prov]);
      const before = await h.waitFor(async () => {
        const j = await getJob(id);
        return j.request_id && j;
      }, 10000);
      for (const kind of ['none', 'other']) {
        const { body, headers } = U[kind](before.request_id);
        const r = await h.request(CB[prov](s), { method: 'POST', headers: { 'content-type': 'application/json', ...(headers || {}) }, body: JSON.stringify(body) });
        assert.equal(r.status, 401, `${kind}: ${r.text}`);
        assert.equal(r.body.error.code, 'UNAUTHORIZED');
      }
      const mid = await getJob(id);
      assert.equal(mid.status, 'processing');
      const job = await waitTerminal(id, 30000);
      assertOneFile(job);
      assert.ok(!JSON.stringify(job).includes('evil.example'), 'the refused bodies left no trace');
    });
  }

  // --- Krea states, ModelsLab progress webhooks ------------------------------

  test('krea: a job walking backlogged, queued, scheduled, processing, sampling, intermediate-complete stays processing, then succeeds by polling', T, async () => {
    const id = await submit('krea:image/bfl/flux-1-dev', { prompt: uniq('krea full'), sim: { delay_ms: 3000, states: 'full', callback: 'none' } });
    const mid = await getJob(id);
    assert.ok(['queued', 'processing'].includes(mid.status), mid.status);
    const job = await waitTerminal(id, 30000);
    assertOneFile(job);
    const polls = (await stack.sim.requests('krea')).filter((r) => r.method === 'GET' && r.path === `/krea/jobs/${job.request_id}`);
    assert.ok(polls.length >= 2, `polled through the states (${polls.length} polls)`);
  });

  test('modelslab: a processing webhook with eta and future_links is acknowledged without ending the job; the final webhook ends it, one delivery', T, async () => {
    const id = await submit('modelslab:images/text2img', { prompt: uniq('ml progress'), sim: { delay_ms: 1500, progress: true } }, { webhook_url: hookUrl('ml') });
    const job = await waitTerminal(id, 30000);
    assertOneFile(job);
    const cbs = await h.waitFor(async () => {
      const l = (await stack.sim.callbacks('modelslab')).filter((c) => c.ref === job.request_id);
      return l.length >= 2 && l;
    }, 10000, { what: 'both ModelsLab webhooks in the log' });
    // The processing webhook is acknowledged (or, had it overtaken the stored
    // submit answer, answered 503); the final one ends the job.
    assert.ok([200, 503].includes(cbs[0].status), JSON.stringify(cbs));
    assert.equal(cbs[cbs.length - 1].status, 200, JSON.stringify(cbs));
    const all = await waitDelivered(id);
    assert.equal(all.length, 1, 'one delivery');
  });
});
