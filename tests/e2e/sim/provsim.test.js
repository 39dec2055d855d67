'use strict';
// provsim on its own: the four non-fal surfaces, steering and control.
// (fal is covered with fal's own client in fal_client.test.js.)

const { describe, test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const http = require('node:http');
const h = require('../lib/harness');

const T = { timeout: 30000 };

// A local server recording POSTs; answers `statusFor(path)` (default 200).
function startHookServer() {
  const hits = [];
  const statusFor = new Map();
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      hits.push({ path: req.url, headers: req.headers, raw, text: raw.toString('utf8'), at: Date.now() });
      res.writeHead(statusFor.get(req.url) || 200);
      res.end();
    });
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const url = `http://127.0.0.1:${server.address().port}`;
      resolve({ server, hits, statusFor, url, at: (p) => hits.filter((x) => x.path === p) });
    });
  });
}

const uniq = (s) => `${s}-${crypto.randomBytes(4).toString('hex')}`;

describe('provsim', () => {
  let sim;
  let hook;
  const call = (method, p, body, headers = {}) => h.request(sim.url + p, { method, body, headers });

  before(async () => {
    [sim, hook] = await Promise.all([h.startProvsim(), startHookServer()]);
  });
  after(async () => {
    if (hook) await new Promise((r) => hook.server.close(r));
    if (sim) await sim.stop();
  });

  describe('krea', () => {
    const auth = { authorization: 'Bearer krea-key' };

    test('auth, submit with X-Webhook-URL, states, webhook with result.urls', T, async () => {
      const noauth = await call('POST', '/krea/generate/image/bfl/flux-1-dev', { prompt: 'x' });
      assert.equal(noauth.status, 401);
      assert.equal(typeof noauth.body.error, 'string');

      const p = `/${uniq('krea')}`;
      const r = await call('POST', '/krea/generate/image/bfl/flux-1-dev', { prompt: 'x', sim: { delay_ms: 500 } }, { ...auth, 'x-webhook-url': hook.url + p });
      assert.equal(r.status, 200);
      assert.match(r.body.job_id, /^[0-9a-f-]{36}$/);
      assert.equal(r.body.status, 'queued');
      assert.equal(r.body.completed_at, null);
      assert.equal(r.body.result, null);
      await h.sleep(200);
      assert.equal((await call('GET', `/krea/jobs/${r.body.job_id}`, undefined, auth)).body.status, 'processing');

      const [hit] = await h.waitFor(() => hook.at(p).length && hook.at(p), 5000);
      const wb = JSON.parse(hit.text);
      assert.equal(wb.job_id, r.body.job_id);
      assert.equal(wb.status, 'completed');
      assert.match(wb.result.urls[0], new RegExp(`^${sim.url}/files/.+\\.png$`));
      assert.ok(wb.completed_at);
      const g = await call('GET', `/krea/jobs/${r.body.job_id}`, undefined, auth);
      assert.deepEqual(g.body, wb);
      assert.equal((await call('GET', '/krea/jobs/nope', undefined, auth)).status, 404);
    });

    test('failure and cancel', T, async () => {
      const p = `/${uniq('kreafail')}`;
      const f = await call('POST', '/krea/generate/video/kling/kling-2.5', { prompt: 'x', sim: { outcome: 'fail', delay_ms: 50, message: 'boom' } }, { ...auth, 'x-webhook-url': hook.url + p });
      const [hit] = await h.waitFor(() => hook.at(p).length && hook.at(p), 5000);
      const wb = JSON.parse(hit.text);
      assert.equal(wb.job_id, f.body.job_id);
      assert.equal(wb.status, 'failed');
      assert.equal(wb.result.error, 'boom');

      const pc = `/${uniq('kreacancel')}`;
      const c = await call('POST', '/krea/generate/image/bfl/flux-1-dev', { prompt: 'x', sim: { delay_ms: 5000 } }, { ...auth, 'x-webhook-url': hook.url + pc });
      const del = await call('DELETE', `/krea/jobs/${c.body.job_id}`, undefined, auth);
      assert.equal(del.status, 200);
      assert.equal(del.text, '');
      assert.equal((await call('GET', `/krea/jobs/${c.body.job_id}`, undefined, auth)).body.status, 'cancelled');
      const [ch] = await h.waitFor(() => hook.at(pc).length && hook.at(pc), 5000);
      assert.equal(JSON.parse(ch.text).status, 'cancelled');
      assert.equal((await call('DELETE', `/krea/jobs/${c.body.job_id}`, undefined, auth)).status, 400);
    });
  });

  describe('modelslab', () => {
    test('key in body, processing answer, fetch_result, webhook echoing track_id', T, async () => {
      const nokey = await call('POST', '/modelslab/api/v6/images/text2img', { prompt: 'x' });
      assert.equal(nokey.status, 401);
      assert.equal(nokey.body.status, 'error');
      assert.equal(typeof nokey.body.message, 'string');

      const p = `/${uniq('ml')}`;
      const r = await call('POST', '/modelslab/api/v6/images/text2img', { key: 'k', prompt: 'x', samples: 2, webhook: hook.url + p, track_id: 'trk-1', sim: { delay_ms: 400 } });
      assert.equal(r.status, 200);
      assert.equal(r.body.status, 'processing');
      assert.ok(Number.isInteger(r.body.id));
      assert.ok(r.body.eta >= 1);
      assert.equal(r.body.fetch_result, `${sim.url}/modelslab/api/v6/images/fetch/${r.body.id}`);
      assert.equal(r.body.future_links.length, 2);

      const fetchPath = new URL(r.body.fetch_result).pathname;
      assert.equal((await call('POST', fetchPath, {})).status, 401, 'fetch needs the key too');
      assert.equal((await call('POST', fetchPath, { key: 'k' })).body.status, 'processing');

      const [hit] = await h.waitFor(() => hook.at(p).length && hook.at(p), 5000);
      const wb = JSON.parse(hit.text);
      assert.equal(wb.status, 'success');
      assert.equal(wb.id, r.body.id);
      assert.equal(wb.track_id, 'trk-1');
      assert.deepEqual(wb.output, r.body.future_links);
      assert.equal(typeof wb.generationTime, 'number');
      assert.equal(wb.meta.prompt, 'x');

      const done = await call('POST', fetchPath, { key: 'k' });
      assert.equal(done.body.status, 'success');
      assert.deepEqual(done.body.output, r.body.future_links);
      const variant = await call('POST', '/modelslab/api/v6/images/fetch', { key: 'k', request_id: r.body.id });
      assert.equal(variant.body.status, 'success');
    });

    test('failure: webhook status failed, fetch status error; delay 0 answers at once', T, async () => {
      const p = `/${uniq('mlfail')}`;
      const r = await call('POST', '/modelslab/api/v6/video/text2video', { key: 'k', prompt: 'x', webhook: hook.url + p, track_id: 't2', sim: { outcome: 'fail', delay_ms: 50, message: 'Processing failed: x' } });
      assert.match(r.body.future_links[0], /\.mp4$/);
      const [hit] = await h.waitFor(() => hook.at(p).length && hook.at(p), 5000);
      assert.deepEqual(JSON.parse(hit.text), { status: 'failed', id: r.body.id, message: 'Processing failed: x', track_id: 't2' });
      const f = await call('POST', `/modelslab/api/v6/video/fetch/${r.body.id}`, { key: 'k' });
      assert.equal(f.body.status, 'error');
      assert.equal(f.body.message, 'Processing failed: x');

      const now = await call('POST', '/modelslab/api/v6/images/text2img', { key: 'k', prompt: 'x', sim: { delay_ms: 0 } });
      assert.equal(now.body.status, 'success');
      assert.equal(now.body.output.length, 1);
    });
  });

  describe('artificialstudio', () => {
    const auth = { authorization: 'as-key' };

    test('raw key, strict body, 202, states, success-only webhook with its headers', T, async () => {
      assert.equal((await call('POST', '/artificialstudio/api/run', { tool: 'create-image' }, { authorization: 'Bearer as-key' })).status, 401);
      const strict = await call('POST', '/artificialstudio/api/run', { tool: 'create-image', input: {}, track_id: 'x' }, auth);
      assert.equal(strict.status, 400);
      assert.match(strict.body.message, /track_id/);

      const p = `/${uniq('as')}`;
      const r = await call('POST', '/artificialstudio/api/run', { tool: 'create-image', input: { prompt: 'x', model: 'flux', sim: { delay_ms: 500 } }, webhook: hook.url + p }, auth);
      assert.equal(r.status, 202);
      assert.match(r.body.id, /^[0-9a-f]{24}$/);
      assert.equal(r.body.status, 'processing');
      assert.equal(r.body.tool, 'create-image');
      assert.ok(r.body.createdAt);
      const mid = await call('GET', `/artificialstudio/api/generations/${r.body.id}`, undefined, auth);
      assert.ok(['pending', 'processing', 'uploading'].includes(mid.body.status));
      assert.equal(mid.body.output, null);

      const [hit] = await h.waitFor(() => hook.at(p).length && hook.at(p), 5000);
      assert.equal(hit.headers['x-webhook-source'], 'artificial-studio');
      assert.equal(hit.headers['x-media-id'], r.body.id);
      const wb = JSON.parse(hit.text);
      assert.equal(wb.status, 'success');
      assert.equal(typeof wb.output, 'string');
      assert.equal(wb.type, 'image');
      const g = await call('GET', `/artificialstudio/api/generations/${r.body.id}`, undefined, auth);
      assert.equal(g.body.status, 'success');
      assert.equal(g.body.output, wb.output);
      assert.equal(g.body.payload.prompt, 'x');
    });

    test('failure: status error with the reason, and no webhook', T, async () => {
      const p = `/${uniq('asfail')}`;
      const r = await call('POST', '/artificialstudio/api/run', { tool: 'create-image', input: { prompt: 'x', sim: { outcome: 'fail', delay_ms: 50, message: 'nsfw' } }, webhook: hook.url + p }, auth);
      const g = await h.waitFor(async () => {
        const x = await call('GET', `/artificialstudio/api/generations/${r.body.id}`, undefined, auth);
        return x.body.status === 'error' && x.body;
      }, 5000);
      assert.equal(g.error, 'nsfw');
      await h.sleep(200);
      assert.equal(hook.at(p).length, 0);
      assert.equal((await call('GET', '/artificialstudio/api/generations/000000000000000000000000', undefined, auth)).status, 404);
    });
  });

  describe('abstrakt', () => {
    const auth = { authorization: 'Bearer abs-key' };
    const hmac = (key, s) => crypto.createHmac('sha256', key).update(s).digest('hex');

    test('sync run answers 200 completed; webhook_url answers 202 and a signed webhook follows', T, async () => {
      const s = await call('POST', '/abstrakt/v1/models/fal-ai/flux/schnell/run', { input: { prompt: 'x', sim: { delay_ms: 100 } } }, auth);
      assert.equal(s.status, 200);
      assert.equal(s.body.status, 'completed');
      assert.equal(s.body.model_id, 'fal-ai/flux/schnell');
      assert.equal(s.body.output.items[0].type, 'image');

      const p = `/${uniq('abs')}`;
      const r = await call('POST', '/abstrakt/v1/models/fal-ai/flux/schnell/run', { input: { prompt: 'x', sim: { delay_ms: 300 } }, webhook_url: hook.url + p }, auth);
      assert.equal(r.status, 202);
      assert.match(r.body.job_id, /^job_/);
      assert.equal(r.body.status, 'processing');
      assert.equal(typeof r.body.request_id, 'string');
      assert.equal(typeof r.body.message, 'string');
      const [hit] = await h.waitFor(() => hook.at(p).length && hook.at(p), 5000);
      assert.equal(hit.headers['x-abstrakt-signature'], hmac('abstrakt-sim-secret', hit.raw));
      assert.equal(hit.headers['x-abstrakt-timestamp'], undefined);
      const wb = JSON.parse(hit.text);
      assert.equal(wb.job_id, r.body.job_id);
      assert.equal(wb.status, 'succeeded');
      assert.equal(wb.output.items.length, 1);
      const g = await call('GET', `/abstrakt/v1/jobs/${r.body.job_id}`, undefined, auth);
      assert.equal(g.body.status, 'completed');
      assert.deepEqual(g.body.output, wb.output);

      const a = await call('POST', '/abstrakt/v1/models/m/run', { input: {}, sync: false }, auth);
      assert.equal(a.status, 202);
    });

    test('failure webhook, cancel', T, async () => {
      const p = `/${uniq('absfail')}`;
      await call('POST', '/abstrakt/v1/models/m/run', { input: { sim: { outcome: 'fail', delay_ms: 50, message: 'bad' } }, webhook_url: hook.url + p }, auth);
      const [hit] = await h.waitFor(() => hook.at(p).length && hook.at(p), 5000);
      const wb = JSON.parse(hit.text);
      assert.equal(wb.status, 'failed');
      assert.deepEqual(wb.error, { code: 'PROVIDER_FAILURE', message: 'bad' });

      const c = await call('POST', '/abstrakt/v1/models/m/run', { input: { sim: { delay_ms: 5000 } }, sync: false }, auth);
      assert.equal((await call('DELETE', `/abstrakt/v1/jobs/${c.body.job_id}`, undefined, auth)).status, 200);
      assert.equal((await call('GET', `/abstrakt/v1/jobs/${c.body.job_id}`, undefined, auth)).body.status, 'cancelled');
      assert.equal((await call('DELETE', `/abstrakt/v1/jobs/${c.body.job_id}`, undefined, auth)).status, 409);
      assert.equal((await call('GET', '/abstrakt/v1/jobs/job_nope', undefined, auth)).status, 404);
      assert.equal((await call('GET', '/abstrakt/v1/jobs/job_nope')).status, 401);
    });

    test('--abstrakt-timestamp signs "{ts}.{body}" and sends X-Abstrakt-Timestamp', T, async () => {
      const sim2 = await h.startProvsim({ args: ['--abstrakt-timestamp', '--abstrakt-secret', 'other-secret'] });
      try {
        const p = `/${uniq('absts')}`;
        await h.request(`${sim2.url}/abstrakt/v1/models/m/run`, { method: 'POST', body: { input: {}, webhook_url: hook.url + p }, headers: auth });
        const [hit] = await h.waitFor(() => hook.at(p).length && hook.at(p), 5000);
        const ts = hit.headers['x-abstrakt-timestamp'];
        assert.match(ts, /^\d+$/);
        assert.ok(Math.abs(Number(ts) - Date.now() / 1000) < 10);
        assert.equal(hit.headers['x-abstrakt-signature'], hmac('other-secret', `${ts}.${hit.text}`));
      } finally {
        await sim2.stop();
      }
    });
  });

  describe('steering and control', () => {
    const falAuth = { authorization: 'Key k' };

    test('callback modes: none, duplicate, late, malformed', T, async () => {
      const send = async (mode) => {
        const p = `/${uniq(mode)}`;
        const r = await call('POST', `/fal/fal-ai/flux/dev?fal_webhook=${encodeURIComponent(hook.url + p)}`, { prompt: 'x', sim: { delay_ms: 50, callback: mode } }, falAuth);
        assert.equal(r.status, 200);
        return { p, rid: r.body.request_id };
      };
      const none = await send('none');
      const dup = await send('duplicate');
      const late = await send('late');
      const bad = await send('malformed');
      await h.waitFor(() => hook.at(dup.p).length === 2, 5000, { what: 'duplicate' });
      const lateHits = await h.waitFor(() => hook.at(late.p).length === 2 && hook.at(late.p), 5000, { what: 'late' });
      assert.ok(lateHits[1].at - lateHits[0].at >= 900, 'late one about 1 s after');
      assert.equal(lateHits[0].text, lateHits[1].text);
      const [m] = await h.waitFor(() => hook.at(bad.p).length && hook.at(bad.p), 5000);
      assert.throws(() => JSON.parse(m.text));
      assert.ok(m.headers['x-fal-webhook-signature'], 'still signed');
      assert.equal(hook.at(none.p).length, 0);
      assert.equal(hook.at(dup.p).length, 2);
      const log = await sim.callbacks('fal');
      assert.deepEqual(log.filter((c) => c.ref === dup.rid).map((c) => c.kind), ['normal', 'duplicate']);
      assert.equal(log.filter((c) => c.ref === none.rid).length, 0);
    });

    test('a failing Krea callback target is tried once (Krea documents no retries)', T, async () => {
      const p = `/${uniq('retry')}`;
      hook.statusFor.set(p, 500);
      const r = await call('POST', `/krea/generate/image/a/b`, { prompt: 'x', sim: { delay_ms: 10 } }, { authorization: 'Bearer k', 'x-webhook-url': hook.url + p });
      const log = await h.waitFor(async () => {
        const l = (await sim.callbacks('krea')).filter((c) => c.ref === r.body.job_id);
        return l.length && l;
      }, 6000, { what: 'the try in the log' });
      assert.deepEqual(log.map((c) => [c.attempt, c.status]), [[1, 500]]);
      assert.equal(hook.at(p).length, 1);
    });

    test('http_status/http_times per identical body, in the provider shape, with Retry-After', T, async () => {
      const body = { key: 'k', prompt: uniq('x'), sim: { http_status: 429, http_times: 2 } };
      const a = await call('POST', '/modelslab/api/v6/images/text2img', body);
      assert.equal(a.status, 429);
      assert.equal(a.headers['retry-after'], '1');
      assert.equal(a.body.status, 'error');
      const other = await call('POST', '/modelslab/api/v6/images/text2img', { ...body, prompt: 'different' });
      assert.equal(other.status, 429, 'another body counts separately');
      assert.equal((await call('POST', '/modelslab/api/v6/images/text2img', body)).status, 429);
      assert.equal((await call('POST', '/modelslab/api/v6/images/text2img', body)).status, 200);
      const f = await call('POST', '/fal/fal-ai/flux/dev', { prompt: uniq('y'), sim: { http_status: 503 } }, falAuth);
      assert.equal(f.status, 503);
      assert.equal(typeof f.body.detail, 'string');
      assert.equal(f.headers['retry-after'], '1');
      const as = await call('POST', '/artificialstudio/api/run', { tool: 't', input: { sim: { http_status: 500 } } }, { authorization: 'k' });
      assert.equal(as.status, 500);
      assert.equal(typeof as.body.message, 'string');
      assert.equal(as.headers['retry-after'], undefined);
    });

    test('http_times counts one JSON body in any key order or spacing as identical', T, async () => {
      // Each of genrelay's workers encodes a request with its own Lua state,
      // so the same request may come with its keys in another order.
      const prompt = uniq('order');
      const json = { 'content-type': 'application/json' };
      const bodies = [
        `{"key":"k","prompt":"${prompt}","sim":{"http_status":503,"http_times":2}}`,
        `{"sim":{"http_times":2,"http_status":503},"prompt":"${prompt}","key":"k"}`,
        `{ "prompt": "${prompt}", "sim": { "http_status": 503, "http_times": 2 }, "key": "k" }`,
      ];
      const got = [];
      for (const b of bodies) got.push((await call('POST', '/modelslab/api/v6/images/text2img', b, json)).status);
      assert.deepEqual(got, [503, 503, 200], 'the third submit of the same content goes through');
    });

    test('SIGTERM ends provsim promptly with exit 0, despite pending jobs and open connections', T, async () => {
      for (const w of ['0', '1']) {
        const s2 = await h.startProvsim({ args: ['--callback-workers', w] });
        const agent = new http.Agent({ keepAlive: true });
        await h.request(`${s2.url}/fal/a/b?fal_webhook=${encodeURIComponent(hook.url + '/never')}`, { method: 'POST', body: { sim: { delay_ms: 60000 } }, headers: falAuth });
        await new Promise((resolve) => http.get(`${s2.url}/fal/.well-known/jwks.json`, { agent }, (res) => res.resume().on('end', resolve)));
        const t0 = Date.now();
        const r = await s2.stop();
        agent.destroy();
        assert.equal(r.code, 0, `workers=${w}: ${JSON.stringify(r)}`);
        assert.ok(Date.now() - t0 < 1500, `workers=${w}: took ${Date.now() - t0} ms`);
      }
    });

    test('down/up, request log, reset', T, async () => {
      await sim.down('krea');
      const d = await call('GET', '/krea/jobs/x', undefined, { authorization: 'Bearer k' });
      assert.equal(d.status, 503);
      assert.equal(typeof d.body.error, 'string');
      assert.equal(d.headers['retry-after'], '1');
      assert.equal((await call('GET', '/fal/.well-known/jwks.json')).status, 200, 'other surfaces are up');
      await sim.up('krea');
      assert.equal((await call('GET', '/krea/jobs/x', undefined, { authorization: 'Bearer k' })).status, 404);

      const tag = uniq('log');
      await call('POST', `/fal/fal-ai/flux/dev?fal_webhook=${encodeURIComponent('http://127.0.0.1:9/x')}&tag=${tag}`, { prompt: tag }, falAuth);
      const reqs = await sim.requests('fal');
      const last = reqs[reqs.length - 1];
      assert.equal(last.method, 'POST');
      assert.equal(last.path, '/fal/fal-ai/flux/dev');
      assert.equal(last.query.tag, tag);
      assert.equal(last.query.fal_webhook, 'http://127.0.0.1:9/x');
      assert.equal(last.headers.authorization, 'Key k');
      assert.deepEqual(last.body, { prompt: tag });
      assert.ok((await sim.requests()).some((r) => r.provider === 'krea'));
      assert.ok(!(await sim.requests('krea')).some((r) => r.provider !== 'krea'));

      await sim.reset();
      assert.equal((await sim.requests()).length, 0);
      assert.equal((await sim.callbacks()).length, 0);
    });
  });
});

// Each provider's real callback retry schedule, compressed by --time-scale,
// and the documented shapes the `sim` object asks for.
describe('provsim: retry schedules (--time-scale) and documented shapes', () => {
  const SCALE = 0.0001;
  let sim;
  let hook;
  const call = (method, p, body, headers = {}) => h.request(sim.url + p, { method, body, headers });
  const { RETRY_SCHEDULES } = require('../../sim/lib/callbacks');

  before(async () => {
    [sim, hook] = await Promise.all([h.startProvsim({ args: ['--time-scale', String(SCALE)] }), startHookServer()]);
  });
  after(async () => {
    if (hook) await new Promise((r) => hook.server.close(r));
    if (sim) await sim.stop();
  });

  // Submits one job whose callback goes to a path answering 500; returns {path, ref}.
  const SUBMIT = {
    fal: async (url) => {
      const r = await call('POST', `/fal/fal-ai/flux/dev?fal_webhook=${encodeURIComponent(url)}`, { prompt: 'x', sim: { delay_ms: 10 } }, { authorization: 'Key k' });
      return r.body.request_id;
    },
    krea: async (url) => (await call('POST', '/krea/generate/image/a/b', { prompt: 'x', sim: { delay_ms: 10 } }, { authorization: 'Bearer k', 'x-webhook-url': url })).body.job_id,
    modelslab: async (url) => String((await call('POST', '/modelslab/api/v6/images/text2img', { key: 'k', prompt: 'x', webhook: url, sim: { delay_ms: 10 } })).body.id),
    artificialstudio: async (url) => (await call('POST', '/artificialstudio/api/run', { tool: 'create-image', input: { prompt: 'x', sim: { delay_ms: 10 } }, webhook: url }, { authorization: 'k' })).body.id,
    abstrakt: async (url) => (await call('POST', '/abstrakt/v1/models/m/run', { input: { prompt: 'x', sim: { delay_ms: 10 } }, webhook_url: url }, { authorization: 'Bearer k' })).body.job_id,
  };
  const EXPECTED_TRIES = { fal: 10, artificialstudio: 10, abstrakt: 5, modelslab: 1, krea: 1 };

  for (const prov of Object.keys(SUBMIT)) {
    test(`${prov}: a failing callback target gets the provider's schedule (${EXPECTED_TRIES[prov]} tries)`, { timeout: 60000 }, async () => {
      const p = `/${uniq(`sched-${prov}`)}`;
      hook.statusFor.set(p, 500);
      const ref = await SUBMIT[prov](hook.url + p);
      const want = EXPECTED_TRIES[prov];
      const sched = RETRY_SCHEDULES[prov];
      assert.equal(sched.length + 1, want, 'the schedule table matches the documented count');
      const total = sched.reduce((a, b) => a + b, 0) * 1000 * SCALE;
      const log = await h.waitFor(async () => {
        const l = (await sim.callbacks(prov)).filter((c) => c.ref === ref);
        return l.length === want && l;
      }, 20000 + total, { what: `${want} tries` });
      assert.deepEqual(log.map((c) => c.attempt), Array.from({ length: want }, (_, i) => i + 1));
      assert.ok(log.every((c) => c.status === 500));
      assert.deepEqual(log.map((c) => c.waited_ms), [0, ...sched.map((s) => Math.round(s * 1000 * SCALE))], 'waits follow the schedule, scaled');
      for (let i = 1; i < log.length; i++) assert.ok(log[i].at >= log[i - 1].at, 'in order');
      // No try past the schedule: the hook saw exactly as many as the log.
      await h.waitFor(() => hook.at(p).length >= want, 5000);
      assert.equal(hook.at(p).length, want);
    });
  }

  test('fal: sim.payload_error sends OK with payload null + payload_error; the result is still served; sim.urls false drops *_url', T, async () => {
    const p = `/${uniq('fal-pe')}`;
    const s = await call('POST', `/fal/workflows/acme/pipe/v2?fal_webhook=${encodeURIComponent(hook.url + p)}`, { prompt: 'x', sim: { delay_ms: 50, payload_error: true, urls: false } }, { authorization: 'Key k' });
    assert.equal(s.status, 200);
    assert.equal(s.body.status_url, undefined);
    assert.equal(s.body.response_url, undefined);
    const [hit] = await h.waitFor(() => hook.at(p).length && hook.at(p), 5000);
    const body = JSON.parse(hit.text);
    assert.equal(body.status, 'OK');
    assert.equal(body.payload, null);
    assert.match(body.payload_error, /queue/);
    const rid = s.body.request_id;
    assert.equal((await call('GET', `/fal/acme/pipe/requests/${rid}/status`, null, { authorization: 'Key k' })).status, 404, 'without the namespace: 404');
    const r = await call('GET', `/fal/workflows/acme/pipe/requests/${rid}`, null, { authorization: 'Key k' });
    assert.equal(r.status, 200);
    assert.ok(r.body.images[0].url);
    const s2 = await call('POST', '/fal/workflows/acme/pipe/v2', { prompt: 'y' }, { authorization: 'Key k' });
    assert.match(s2.body.status_url, /\/fal\/workflows\/acme\/pipe\/requests\/[^/]+\/status$/, 'returned URLs keep the namespace');
  });

  test('krea: sim.states "full" walks the whole documented state list', T, async () => {
    const r = await call('POST', '/krea/generate/image/a/b', { prompt: 'x', sim: { delay_ms: 3000, states: 'full' } }, { authorization: 'Bearer k' });
    const seen = new Set([r.body.status]);
    await h.waitFor(async () => {
      const j = await call('GET', `/krea/jobs/${r.body.job_id}`, null, { authorization: 'Bearer k' });
      seen.add(j.body.status);
      return j.body.status === 'completed';
    }, 15000, { interval: 40 });
    for (const st of ['backlogged', 'queued', 'scheduled', 'processing', 'sampling', 'intermediate-complete', 'completed']) assert.ok(seen.has(st), `saw ${st} (${[...seen]})`);
  });

  test('modelslab: sim.progress sends a processing webhook with eta and future_links before the result', T, async () => {
    const p = `/${uniq('ml-progress')}`;
    const r = await call('POST', '/modelslab/api/v6/images/text2img', { key: 'k', prompt: 'x', webhook: hook.url + p, track_id: 't1', sim: { delay_ms: 600, progress: true } });
    const hits = await h.waitFor(() => hook.at(p).length >= 2 && hook.at(p), 5000);
    const [first, last] = hits.map((x) => JSON.parse(x.text));
    assert.equal(first.status, 'processing');
    assert.equal(first.id, r.body.id);
    assert.ok(first.eta >= 1);
    assert.ok(Array.isArray(first.future_links) && first.future_links.length >= 1);
    assert.equal(first.track_id, 't1');
    assert.equal(last.status, 'success');
    assert.deepEqual(last.output, first.future_links, 'the outputs appear where future_links said');
  });

  test('abstrakt: the three callback forms, signed with the request\'s webhook_secret (or the account secret when asked)', T, async () => {
    const hmac = (k, b) => crypto.createHmac('sha256', k).update(b).digest('hex');
    const run = async (sim2, secret) => {
      const p = `/${uniq('abs-form')}`;
      const body = { input: { prompt: 'x', sim: { delay_ms: 300, ...sim2 } }, webhook_url: hook.url + p };
      if (secret) body.webhook_secret = secret;
      const r = await call('POST', '/abstrakt/v1/models/m/run', body, { authorization: 'Bearer k' });
      assert.equal(r.status, 202);
      return { p, id: r.body.job_id };
    };
    const tut = await run({ form: 'tutorial' }, 'per-job-1');
    const env = await run({ form: 'envelope', progress: true }, 'per-job-2');
    const api = await run({ form: 'api', sign_with: 'account' }, 'per-job-3');
    const [t] = await h.waitFor(() => hook.at(tut.p).length && hook.at(tut.p), 5000);
    const tb = JSON.parse(t.text);
    assert.equal(tb.request_id, tut.id);
    assert.equal(tb.status, 'completed');
    assert.ok(tb.result.items[0].url && tb.metrics && tb.timestamp);
    assert.equal(t.headers['x-abstrakt-signature'], hmac('per-job-1', t.text), 'signed with the per-request secret');
    const e = await h.waitFor(() => hook.at(env.p).length >= 3 && hook.at(env.p), 5000);
    assert.deepEqual(e.map((x) => JSON.parse(x.text).event), ['job.started', 'job.progress', 'job.completed']);
    assert.ok(JSON.parse(e[2].text).data.output.items[0].url);
    for (const x of e) assert.equal(x.headers['x-abstrakt-signature'], hmac('per-job-2', x.text));
    const [a] = await h.waitFor(() => hook.at(api.p).length && hook.at(api.p), 5000);
    assert.equal(JSON.parse(a.text).status, 'succeeded');
    assert.equal(a.headers['x-abstrakt-signature'], hmac('abstrakt-sim-secret', a.text), 'sign_with account: the account secret');
  });
});
