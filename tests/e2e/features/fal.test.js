'use strict';
// Acceptance tests of the genrelay core through the fal adapter, against
// provsim and the example receiver (DESIGN.md is the contract).
//
//   GENRELAY_BIN=build/genrelay node --test tests/e2e/features/fal.test.js
//
// One stack (provsim + receiver + genrelay) serves the whole file; every test
// uses its own receiver path and its own prompt so tests cannot see each
// other's jobs, callbacks or deliveries.

const { describe, test } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const h = require('../lib/harness');

const MODEL = 'fal-ai/flux/dev';
const RUN = `/v1/models/${MODEL}/run`;
const { TERMINAL } = h;
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;
const T = { timeout: 90000 };

describe('genrelay with the fal adapter', () => {
  const stack = h.useStack();
  const { getJob, waitTerminal, waitDelivered } = h.jobHelpers(stack);

  // --- helpers ------------------------------------------------------------

  const uniq = (name) => `${name}-${crypto.randomBytes(5).toString('hex')}`;
  const hookPath = (name) => `/t/${uniq(name)}`;
  const hookUrl = (p) => stack.receiver.url + p;

  function assertError(r, status, code) {
    assert.equal(r.status, status, `expected ${status} ${code}, got ${r.status} ${r.text}`);
    assert.ok(r.body && r.body.error, `error body expected, got ${r.text}`);
    assert.equal(r.body.error.code, code);
    assert.equal(typeof r.body.error.message, 'string');
    assert.ok(r.body.error.message.length > 0);
  }

  function assertAccepted(r) {
    assert.equal(r.status, 202, r.text);
    assert.match(r.body.job_id, /^job_/);
    assert.equal(r.body.status, 'processing');
    assert.equal(r.body.model_id, MODEL);
    assert.equal(r.body.request_id, null);
    assert.equal(typeof r.body.message, 'string');
    return r.body.job_id;
  }

  async function submit(input, extra = {}, headers = {}) {
    return assertAccepted(await stack.api('POST', RUN, { input, ...extra }, headers));
  }

  // The fal submit provsim recorded for this genrelay job (found through the
  // job id in its fal_webhook URL).
  async function falSubmitsOf(jobId) {
    const reqs = await stack.sim.requests('fal');
    return reqs.filter((r) => r.method === 'POST' && r.query.fal_webhook && r.query.fal_webhook.includes(`/${jobId}/`));
  }

  function assertJobObject(j) {
    for (const k of ['job_id', 'status', 'model_id', 'provider', 'request_id', 'track_id', 'output', 'error', 'created_at', 'completed_at']) {
      assert.ok(k in j, `job object has ${k}: ${JSON.stringify(j)}`);
    }
    assert.match(j.created_at, RFC3339);
    if (TERMINAL.has(j.status)) assert.match(j.completed_at, RFC3339);
  }

  function assertSucceeded(j, jobId) {
    assertJobObject(j);
    assert.equal(j.job_id, jobId);
    assert.equal(j.status, 'succeeded');
    assert.equal(j.provider, 'fal');
    assert.equal(j.model_id, MODEL);
    assert.equal(j.error, null);
    assert.equal(typeof j.request_id, 'string');
    assert.equal(j.output.type, 'image');
    assert.ok(j.output.items.length >= 1);
    assert.equal(j.output.items[0].type, 'image');
    assert.ok(j.output.items[0].url.startsWith(`${stack.sim.url}/files/`), j.output.items[0].url);
  }

  // Attempts of a job's deliveries from GET /v1/jobs/{id}/deliveries. The
  // shape beyond "every delivery attempt of the job" is read tolerantly:
  // an array or {data:[...]}, each delivery with an id and attempts[] whose
  // HTTP status is status_code (or status).
  async function deliveriesOf(id) {
    const r = await stack.api('GET', `/v1/jobs/${id}/deliveries`);
    assert.equal(r.status, 200, r.text);
    const list = Array.isArray(r.body) ? r.body : r.body.data || r.body.deliveries;
    assert.ok(Array.isArray(list), `deliveries list expected: ${r.text}`);
    return list.map((d) => ({
      id: d.delivery_id || d.id,
      attempts: (d.attempts || []).map((a) => (a.status_code !== undefined ? a.status_code : a.status)),
      raw: d,
    }));
  }

  // --- (a) success ---------------------------------------------------------

  test('(a) success: one verified delivery of the succeeded job; the fal submit carries fal_webhook and the key', T, async () => {
    const p = hookPath('a');
    const id = await submit({ prompt: 'a cat' }, { webhook_url: hookUrl(p) });

    const [d] = await waitDelivered(id);
    assert.equal(d.verified, true, d.reason);
    assert.equal(d.path, p);
    assert.ok(d.id, 'webhook-id header');
    assertSucceeded(d.body, id);

    await h.sleep(600); // a second delivery would be a bug
    assert.equal((await stack.receiver.forJob(id)).length, 1, 'exactly one delivery');

    const j = await getJob(id);
    assertSucceeded(j, id);
    for (const k of ['job_id', 'status', 'provider', 'model_id', 'request_id', 'track_id', 'output', 'error', 'created_at', 'completed_at']) {
      assert.deepEqual(j[k], d.body[k], `GET and delivery agree on ${k}`);
    }

    const subs = await falSubmitsOf(id);
    assert.equal(subs.length, 1, 'one submit to fal');
    const s = subs[0];
    assert.equal(s.path, `/fal/${MODEL}`);
    assert.equal(s.headers.authorization, 'Key fal-test-key');
    assert.equal(s.body.prompt, 'a cat');
    const cb = new URL(s.query.fal_webhook);
    assert.equal(cb.origin, stack.gr.url);
    assert.match(cb.pathname, new RegExp(`^/v1/callbacks/fal/${id}/[^/]+$`));

    // The fal request id is the job's request_id, and fal's callback for it was accepted.
    const cbs = await h.waitFor(async () => {
      const l = (await stack.sim.callbacks('fal')).filter((c) => c.ref === j.request_id);
      return l.length && l;
    }, 5000, { what: 'the callback in provsim\'s log' });
    assert.ok(cbs.some((c) => c.status >= 200 && c.status < 300), `genrelay accepted the callback: ${JSON.stringify(cbs)}`);

    const list = await stack.api('GET', '/v1/jobs?limit=100');
    assert.equal(list.status, 200, list.text);
    const items = Array.isArray(list.body) ? list.body : list.body.data;
    assert.ok(items.some((x) => x.job_id === id), 'job listed');
  });

  // --- (b) provider failure ------------------------------------------------

  test('(b) provider failure: failed with PROVIDER_FAILURE, delivered', T, async () => {
    const p = hookPath('b');
    const id = await submit({ prompt: uniq('fail'), sim: { outcome: 'fail', delay_ms: 200 } }, { webhook_url: hookUrl(p), track_id: 'trk-b' });
    const [d] = await waitDelivered(id);
    assert.equal(d.verified, true);
    assert.equal(d.body.job_id, id);
    assert.equal(d.body.status, 'failed');
    assert.equal(d.body.error.code, 'PROVIDER_FAILURE');
    assert.equal(typeof d.body.error.message, 'string');
    assert.equal(d.body.output, null);
    assert.equal(d.body.track_id, 'trk-b');
    const j = await getJob(id);
    assert.equal(j.status, 'failed');
    assert.equal(j.error.code, 'PROVIDER_FAILURE');
    assert.equal(j.track_id, 'trk-b');
  });

  // --- (c) duplicate and late callbacks -----------------------------------

  test('(c) duplicate callback: acknowledged, one delivery only', T, async () => {
    const p = hookPath('c');
    const id = await submit({ prompt: uniq('dup'), sim: { callback: 'duplicate' } }, { webhook_url: hookUrl(p) });
    await waitDelivered(id);
    const j = await getJob(id);
    assert.equal(j.status, 'succeeded');
    const cbs = await h.waitFor(async () => {
      const l = (await stack.sim.callbacks('fal')).filter((c) => c.ref === j.request_id);
      return l.some((c) => c.kind === 'duplicate') && l;
    }, 10000, { what: 'duplicate callback sent' });
    for (const c of cbs) assert.ok(c.status >= 200 && c.status < 300, `callback acknowledged: ${JSON.stringify(c)}`);
    await h.sleep(1000);
    assert.equal((await stack.receiver.forJob(id)).length, 1, 'one delivery');
    assert.equal((await getJob(id)).status, 'succeeded');
  });

  test('(c2) late callback (1 s after the first): job stays terminal, one delivery', T, async () => {
    const p = hookPath('c2');
    const id = await submit({ prompt: uniq('late'), sim: { callback: 'late' } }, { webhook_url: hookUrl(p) });
    await waitDelivered(id);
    const j = await getJob(id);
    await h.waitFor(async () => (await stack.sim.callbacks('fal')).some((c) => c.ref === j.request_id && c.kind === 'late'), 10000, { what: 'late callback sent' });
    await h.sleep(800);
    assert.equal((await stack.receiver.forJob(id)).length, 1);
    const after = await getJob(id);
    assert.equal(after.status, 'succeeded');
    assert.equal(after.completed_at, j.completed_at);
  });

  test('(c3) malformed callback: not trusted; the job still succeeds (by polling), one delivery', T, async () => {
    const p = hookPath('c3');
    const id = await submit({ prompt: uniq('malformed'), sim: { callback: 'malformed' } }, { webhook_url: hookUrl(p) });
    const [d] = await waitDelivered(id, 1, 25000);
    assert.equal(d.body.status, 'succeeded');
    assertSucceeded(d.body, id);
    await h.sleep(600);
    assert.equal((await stack.receiver.forJob(id)).length, 1);
  });

  // --- (d) no callback ------------------------------------------------------

  test('(d) no callback: the job succeeds by polling', T, async () => {
    const p = hookPath('d');
    const id = await submit({ prompt: uniq('nocb'), sim: { callback: 'none', delay_ms: 300 } }, { webhook_url: hookUrl(p) });
    const [d] = await waitDelivered(id, 1, 25000);
    assertSucceeded(d.body, id);
    const rid = d.body.request_id;
    assert.equal((await stack.sim.callbacks('fal')).filter((c) => c.ref === rid).length, 0, 'provsim sent no callback');
    const reqs = await stack.sim.requests('fal');
    assert.ok(reqs.some((r) => r.method === 'GET' && r.path.endsWith(`/requests/${rid}/status`) || r.method === 'GET' && r.path.endsWith(`/requests/${rid}`)), 'genrelay polled fal');
    assert.ok(reqs.some((r) => r.method === 'GET' && r.path === `/fal/fal-ai/flux/requests/${rid}`), 'genrelay fetched the result');
  });

  // --- (e) provider 503 then success --------------------------------------

  test('(e) provider answers 503 twice, then accepts: the job succeeds', T, async () => {
    const p = hookPath('e');
    const prompt = uniq('flaky');
    const id = await submit({ prompt, sim: { http_status: 503, http_times: 2 } }, { webhook_url: hookUrl(p) });
    const [d] = await waitDelivered(id, 1, 25000);
    assertSucceeded(d.body, id);
    const subs = (await stack.sim.requests('fal')).filter((r) => r.method === 'POST' && r.body && r.body.prompt === prompt);
    assert.equal(subs.length, 3, 'two refused submits and one accepted');
  });

  // --- (f) receiver failures ----------------------------------------------

  test('(f) receiver answers 500 twice, then 200: three attempts, same webhook-id', T, async () => {
    const p = hookPath('f');
    await stack.receiver.fail(2, 500, p);
    const id = await submit({ prompt: uniq('rcv') }, { webhook_url: hookUrl(p) });
    const all = await waitDelivered(id, 1, 25000);
    assert.equal(all.length, 3, `three attempts at the receiver: ${all.map((x) => x.answered)}`);
    assert.deepEqual(all.map((x) => x.answered), [500, 500, 200]);
    const ids = new Set(all.map((x) => x.id));
    assert.equal(ids.size, 1, 'one webhook-id on every attempt');
    assert.ok(all.every((x) => x.verified), 'every attempt signed');

    const dl = await h.waitFor(async () => {
      const l = await deliveriesOf(id);
      return l.length === 1 && l[0].attempts.length === 3 && l;
    }, 5000, { what: 'three recorded attempts' });
    assert.deepEqual(dl[0].attempts, [500, 500, 200]);
    assert.equal(dl[0].id, [...ids][0], 'the delivery id is the webhook-id');
  });

  // --- (h) auth -------------------------------------------------------------

  test('(h) auth: no key or a wrong key is 401; another customer cannot see the job', T, async () => {
    assertError(await stack.api('POST', RUN, { input: { prompt: 'x' } }, { authorization: null }), 401, 'UNAUTHORIZED');
    assertError(await stack.gr.as('wrong-key')('POST', RUN, { input: { prompt: 'x' } }), 401, 'UNAUTHORIZED');
    assertError(await stack.api('GET', '/v1/jobs', undefined, { authorization: null }), 401, 'UNAUTHORIZED');

    const id = await submit({ prompt: uniq('mine') }, { webhook_url: hookUrl(hookPath('h')) });
    const globex = stack.gr.as(h.GLOBEX.api_key);
    assertError(await globex('GET', `/v1/jobs/${id}`), 404, 'JOB_NOT_FOUND');
    assertError(await globex('DELETE', `/v1/jobs/${id}`), 404, 'JOB_NOT_FOUND');
    assertError(await globex('GET', `/v1/jobs/${id}/deliveries`), 404, 'JOB_NOT_FOUND');
    const list = await globex('GET', '/v1/jobs?limit=100');
    assert.equal(list.status, 200);
    const items = Array.isArray(list.body) ? list.body : list.body.data;
    assert.ok(!items.some((x) => x.job_id === id), "acme's job is not in globex's list");
    assertError(await stack.api('GET', '/v1/jobs/job_doesnotexist'), 404, 'JOB_NOT_FOUND');
    assert.equal((await getJob(id)).job_id, id, 'acme sees it');
  });

  // --- (i) bad input --------------------------------------------------------

  test('(i) bad input is refused with the documented error codes', T, async () => {
    assertError(await stack.api('POST', RUN, '{"input":', { 'content-type': 'application/json' }), 400, 'INVALID_REQUEST');
    assertError(await stack.api('POST', RUN, {}), 400, 'INVALID_REQUEST');
    assertError(await stack.api('POST', RUN, { input: 'a cat' }), 400, 'INVALID_REQUEST');
    assertError(await stack.api('POST', RUN, { input: ['a cat'] }), 400, 'INVALID_REQUEST');
    assertError(await stack.api('POST', RUN, '[1,2]', { 'content-type': 'application/json' }), 400, 'INVALID_REQUEST');
    assertError(await stack.api('POST', '/v1/models/nosuchprovider:some/model/run', { input: { prompt: 'x' } }), 404, 'MODEL_NOT_FOUND');
    assertError(await stack.api('POST', '/v1/models/zz-no-such-model/run', { input: { prompt: 'x' } }), 404, 'MODEL_NOT_FOUND');
    const big = JSON.stringify({ input: { prompt: 'x'.repeat(1024 * 1024 + 100) } }); // default limit 1 MiB
    assertError(await stack.api('POST', RUN, big, { 'content-type': 'application/json' }), 413, 'PAYLOAD_TOO_LARGE');
    for (const bad of ['not a url', 'ftp://example.com/hook', '//no-scheme/hook', 'http://', 42]) {
      assertError(await stack.api('POST', RUN, { input: { prompt: 'x' }, webhook_url: bad }), 400, 'INVALID_REQUEST');
    }
    // Nothing above reached fal.
    const reqs = await stack.sim.requests('fal');
    assert.ok(!reqs.some((r) => r.method === 'POST' && r.body && r.body.prompt === 'x'), 'no refused request was submitted to fal');
  });

  // --- (j) idempotency ------------------------------------------------------

  test('(j) Idempotency-Key: same key and body give the same job; another body is a 409', T, async () => {
    const key = uniq('idem');
    const body = { input: { prompt: uniq('idem') }, webhook_url: hookUrl(hookPath('j')) };
    const first = assertAccepted(await stack.api('POST', RUN, body, { 'idempotency-key': key }));
    const again = await stack.api('POST', RUN, body, { 'idempotency-key': key });
    assert.ok(again.status === 202 || again.status === 200, again.text);
    assert.equal(again.body.job_id, first);
    const other = await stack.api('POST', RUN, { ...body, input: { prompt: 'something else' } }, { 'idempotency-key': key });
    assertError(other, 409, 'IDEMPOTENCY_CONFLICT');
    // Keys belong to a customer: globex's identical request is its own job.
    const g = await stack.gr.as(h.GLOBEX.api_key)('POST', RUN, body, { 'idempotency-key': key });
    assert.equal(g.status, 202, g.text);
    assert.notEqual(g.body.job_id, first);
    await waitTerminal(first);
    const subs = await falSubmitsOf(first);
    assert.equal(subs.length, 1, 'the repeated request did not submit again');
  });

  // --- (k) sync and long-poll ----------------------------------------------

  test('(k) sync:true answers 200 with the finished job; ?wait=N returns once terminal', T, async () => {
    const t0 = Date.now();
    const r = await stack.api('POST', RUN, { input: { prompt: uniq('sync'), sim: { delay_ms: 300 } }, sync: true });
    assert.equal(r.status, 200, r.text);
    assertSucceeded(r.body, r.body.job_id);
    assert.ok(Date.now() - t0 < 20000);

    const pw = await stack.api('POST', RUN, { input: { prompt: uniq('prefer'), sim: { delay_ms: 300 } } }, { prefer: 'wait=10' });
    assert.equal(pw.status, 200, pw.text);
    assert.equal(pw.body.status, 'succeeded');

    // Time runs out: 202 as usual.
    const t1 = Date.now();
    const slow = await stack.api('POST', RUN, { input: { prompt: uniq('slow'), sim: { delay_ms: 4000 } } }, { prefer: 'wait=1' });
    assert.equal(slow.status, 202, slow.text);
    assert.ok(Date.now() - t1 >= 900, 'it waited about 1 s');
    assert.ok(Date.now() - t1 < 3500, 'but not for the job');

    const id = await submit({ prompt: uniq('wait'), sim: { delay_ms: 1500 } });
    const t2 = Date.now();
    const w = await stack.api('GET', `/v1/jobs/${id}?wait=5`);
    const took = Date.now() - t2;
    assert.equal(w.status, 200, w.text);
    assert.equal(w.body.status, 'succeeded', 'returned once terminal');
    assert.ok(took < 4900, `returned before the wait ran out (${took} ms)`);
    assert.ok(took >= 500, `and did wait for the job (${took} ms)`);
  });

  // --- (l) cancel -----------------------------------------------------------

  test('(l) DELETE cancels a slow job and forwards the cancel to fal', T, async () => {
    const p = hookPath('l');
    const id = await submit({ prompt: uniq('cancel'), sim: { delay_ms: 5000 } }, { webhook_url: hookUrl(p) });
    const withRid = await h.waitFor(async () => {
      const j = await getJob(id);
      return j.request_id && j;
    }, 10000, { what: 'job submitted to fal' });
    const del = await stack.api('DELETE', `/v1/jobs/${id}`);
    assert.ok(del.status >= 200 && del.status < 300, del.text);

    const j = await waitTerminal(id, 10000);
    assert.equal(j.status, 'canceled');
    assert.equal(j.error && j.error.code, 'CANCELED');
    const put = await h.waitFor(async () => (await stack.sim.requests('fal')).find((r) => r.method === 'PUT' && r.path === `/fal/fal-ai/flux/requests/${withRid.request_id}/cancel`), 10000, { what: 'PUT cancel at provsim' });
    assert.equal(put.headers.authorization, 'Key fal-test-key');

    const [d] = await waitDelivered(id);
    assert.equal(d.body.status, 'canceled');
    assert.equal(d.verified, true);
  });

  // --- (m) models, health, metrics -----------------------------------------

  test('(m) /v1/models lists fal; /healthz is 200; /metrics is Prometheus text', T, async () => {
    const m = await stack.api('GET', '/v1/models');
    assert.equal(m.status, 200, m.text);
    assert.ok(m.body !== null, 'JSON body');
    assert.match(m.text, /"fal"|fal-ai/, 'fal is listed');

    const hz = await h.request(`${stack.gr.url}/healthz`);
    assert.equal(hz.status, 200);

    const met = await h.request(`${stack.gr.url}/metrics`, { headers: { authorization: `Bearer ${h.METRICS_TOKEN}` } });
    assert.equal(met.status, 200);
    assert.match(met.headers['content-type'] || '', /^text\/plain/);
    const lines = met.text.split('\n').filter((l) => l.trim() !== '');
    assert.ok(lines.some((l) => /^# TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|histogram|summary|untyped)$/.test(l)), 'has # TYPE lines');
    const sample = /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*")*,?\})? (-?[0-9.eE+-]+|NaN|[+-]Inf)( -?\d+)?$/;
    for (const l of lines) {
      if (l.startsWith('#')) assert.match(l, /^# (HELP|TYPE) /, l);
      else assert.match(l, sample, `a valid sample line: ${l}`);
    }
    assert.ok(lines.some((l) => !l.startsWith('#')), 'has samples');
  });

  // --- (g) crash ------------------------------------------------------------
  // Last, since it restarts the gateway the other tests share.

  test('(g) kill -9 right after the 202: after a restart the job is still delivered', T, async () => {
    const p = hookPath('g');
    const id = await submit({ prompt: uniq('crash'), sim: { delay_ms: 500 } }, { webhook_url: hookUrl(p) });
    const res = await stack.gr.kill('SIGKILL');
    assert.equal(res.signal, 'SIGKILL');
    await stack.gr.restart();
    const [d] = await waitDelivered(id, 1, 45000);
    assert.equal(d.verified, true);
    assertSucceeded(d.body, id);
    assert.equal((await getJob(id)).status, 'succeeded');
  });

  test('SIGTERM ends genrelay cleanly (exit 0) and a restart serves the same jobs', T, async () => {
    const id = await submit({ prompt: uniq('term'), sim: { delay_ms: 100 } });
    await waitTerminal(id);
    const res = await stack.gr.kill('SIGTERM');
    assert.equal(res.code, 0, `exit ${JSON.stringify(res)}`);
    await stack.gr.restart();
    assert.equal((await getJob(id)).status, 'succeeded');
  });
});
