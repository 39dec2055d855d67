'use strict';
// The client-compatible fronts (scripts/fronts/, docs/fronts.md) driven by
// the vendors' own client libraries, unchanged, pinned in
// tests/clients/package.json (tools/install-deps runs `npm ci` there):
// @fal-ai/client (queue and stream, through proxyUrl and with genrelay as
// the queue host), ai + @ai-sdk/fal (generateImage on fal's sync protocol),
// openai (images.generate / images.edit). genrelay + provsim on loopback.

const { describe, test } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const path = require('node:path');
const { createRequire } = require('node:module');
const h = require('../lib/harness');

let libs = null;
try {
  const req = createRequire(path.join(h.SRC, 'tests', 'clients', 'package.json'));
  libs = { fal: req('@fal-ai/client'), ai: req('ai'), aiFal: req('@ai-sdk/fal'), OpenAI: req('openai') };
} catch (e) {
  libs = null;
}
const SKIP = libs ? false : 'client libraries not installed: run `npm ci --prefix tests/clients`';

const FAL_MODEL = 'fal-ai/flux/dev';
const ALIAS = 'flux-any'; // krea first, then fal
const PNG = Buffer.from('89504e470d0a1a0a', 'hex');

describe('client-compatible fronts with the vendors\' clients', { skip: SKIP }, () => {
  const stack = h.useStack({
    config: { models: { [ALIAS]: ['krea:bfl/flux-1-dev', `fal:${FAL_MODEL}`] } },
  });
  const { getJob } = h.jobHelpers(stack);

  // fal's client with genrelay as its proxy (x-fal-target-url on every call).
  const falProxied = () =>
    libs.fal.createFalClient({ credentials: h.ACME.api_key, proxyUrl: { url: `${stack.gr.url}/fal/proxy`, when: () => true } });
  // fal's client with genrelay as the queue host (requests rewritten by a middleware).
  const falDirect = (seen = []) =>
    libs.fal.createFalClient({
      credentials: h.ACME.api_key,
      requestMiddleware: async (req) => {
        const url = req.url.replace(/^https:\/\/queue\.fal\.run/, `${stack.gr.url}/fal/queue`);
        seen.push(`${req.method} ${url}`);
        return { ...req, url };
      },
    });

  async function simRequests(filter) {
    const r = await h.request(`${stack.sim.url}/_control/requests`);
    return r.body.filter(filter);
  }

  // --- @fal-ai/client ---------------------------------------------------

  test('fal.subscribe through proxyUrl: a fal model, the provider key stays in genrelay', async () => {
    const prompt = `a lighthouse ${crypto.randomUUID()}`;
    const updates = [];
    const res = await falProxied().subscribe(FAL_MODEL, {
      input: { prompt, sim: { delay_ms: 400 } },
      pollInterval: 100,
      logs: true,
      onQueueUpdate: (u) => updates.push(u.status),
    });
    assert.match(res.requestId, /^job_/);
    assert.equal(res.data.images.length, 1);
    assert.match(res.data.images[0].url, new RegExp(`^${stack.sim.url}/files/`));
    assert.equal(res.data.images[0].content_type, 'image/png');
    assert.ok(updates.includes('COMPLETED'), updates.join(','));
    const job = await getJob(res.requestId);
    assert.equal(job.status, 'succeeded');
    assert.equal(job.provider, 'fal');
    const sent = await simRequests((r) => r.provider === 'fal' && r.method === 'POST' && r.body && r.body.prompt === prompt);
    assert.equal(sent.length, 1);
    assert.equal(sent[0].headers.authorization, 'Key fal-test-key');
  });

  test('fal.subscribe of an alias (genrelay/NAME) runs on Krea and answers in fal\'s shape', async () => {
    const prompt = `an alias ${crypto.randomUUID()}`;
    const res = await falProxied().subscribe(`genrelay/${ALIAS}`, { input: { prompt }, pollInterval: 100 });
    assert.match(res.data.images[0].url, new RegExp(`^${stack.sim.url}/files/`));
    const job = await getJob(res.requestId);
    assert.equal(job.provider, 'krea');
    assert.equal(job.model_id, ALIAS);
    const sent = await simRequests((r) => r.provider === 'krea' && r.body && r.body.prompt === prompt);
    assert.equal(sent.length, 1);
    assert.equal(sent[0].headers.authorization, 'Bearer krea-test-key');
  });

  test('fal.run (fal\'s sync protocol) through proxyUrl', async () => {
    const res = await falProxied().run(FAL_MODEL, { input: { prompt: 'sync through the proxy' } });
    assert.match(res.requestId, /^job_/);
    assert.match(res.data.images[0].url, new RegExp(`^${stack.sim.url}/files/`));
    assert.equal((await getJob(res.requestId)).status, 'succeeded');
  });

  test('fal.queue submit / status / result with genrelay as the queue host', async () => {
    const seen = [];
    const fal = falDirect(seen);
    const sub = await fal.queue.submit(FAL_MODEL, { input: { prompt: 'queue', sim: { delay_ms: 800 } } });
    assert.equal(sub.status, 'IN_QUEUE');
    assert.equal(sub.queue_position, 0);
    assert.equal(sub.status_url, `${stack.gr.url}/fal/queue/fal-ai/flux/requests/${sub.request_id}/status`);
    assert.equal(sub.response_url, `${stack.gr.url}/fal/queue/fal-ai/flux/requests/${sub.request_id}`);
    const early = await fal.queue.status(FAL_MODEL, { requestId: sub.request_id, logs: true });
    assert.ok(['IN_QUEUE', 'IN_PROGRESS'].includes(early.status), early.status);
    const done = await h.waitFor(async () => {
      const s = await fal.queue.status(FAL_MODEL, { requestId: sub.request_id });
      return s.status === 'COMPLETED' && s;
    }, 15000, { what: 'COMPLETED', interval: 100 });
    assert.equal(done.request_id, sub.request_id);
    const result = await fal.queue.result(FAL_MODEL, { requestId: sub.request_id });
    assert.equal(result.requestId, sub.request_id);
    assert.equal(result.data.images.length, 1);
    assert.ok(seen.some((s) => s === `GET ${stack.gr.url}/fal/queue/fal-ai/flux/requests/${sub.request_id}/status?logs=1`), seen.join('\n'));
  });

  test('fal.queue.cancel cancels the job; its result is then the client\'s error', async () => {
    const fal = falDirect();
    const sub = await fal.queue.submit(FAL_MODEL, { input: { prompt: 'cancel me', sim: { delay_ms: 20000 } } });
    await fal.queue.cancel(FAL_MODEL, { requestId: sub.request_id });
    assert.equal((await getJob(sub.request_id)).status, 'canceled');
    const st = await fal.queue.status(FAL_MODEL, { requestId: sub.request_id });
    assert.equal(st.status, 'COMPLETED');
    await assert.rejects(fal.queue.result(FAL_MODEL, { requestId: sub.request_id }), (e) => {
      assert.ok(e instanceof libs.fal.ApiError, String(e));
      assert.equal(e.status, 400);
      assert.match(e.body.detail, /canceled/);
      return true;
    });
  });

  test('a failed job becomes the fal client\'s error', async () => {
    await assert.rejects(
      falProxied().subscribe(FAL_MODEL, { input: { prompt: 'fail', sim: { outcome: 'fail', message: 'no lighthouse today' } }, pollInterval: 100 }),
      (e) => {
        assert.ok(e instanceof libs.fal.ApiError, String(e));
        assert.ok(e.status >= 400 && e.status < 600, String(e.status));
        assert.match(JSON.stringify(e.body), /no lighthouse today/);
        return true;
      },
    );
  });

  test('the status stream (server-sent events) brings every change, then COMPLETED', async () => {
    const fal = falProxied();
    const sub = await fal.queue.submit(FAL_MODEL, { input: { prompt: 'stream', sim: { delay_ms: 1500 } } });
    const stream = await fal.queue.streamStatus(FAL_MODEL, { requestId: sub.request_id, logs: true });
    const events = [];
    stream.on('data', (d) => events.push(d.status));
    const last = await stream.done();
    assert.equal(last.status, 'COMPLETED');
    assert.equal(events[events.length - 1], 'COMPLETED');
    assert.ok(events.length >= 2, `an update before COMPLETED: ${events.join(',')}`);
    assert.ok(events.slice(0, -1).every((s) => s === 'IN_QUEUE' || s === 'IN_PROGRESS'), events.join(','));
    // subscribe in streaming mode ends the same way
    const res = await fal.subscribe(FAL_MODEL, { input: { prompt: 'stream 2', sim: { delay_ms: 300 } }, mode: 'streaming' });
    assert.equal(res.data.images.length, 1);
  });

  test('fal_webhook becomes the job\'s webhook, in fal\'s shape, signed with Standard Webhooks', async () => {
    const hookPath = `/fal-hook/${crypto.randomUUID()}`;
    const sub = await falProxied().queue.submit(FAL_MODEL, { input: { prompt: 'hook' }, webhookUrl: stack.receiver.url + hookPath });
    const got = await h.waitFor(async () => {
      const all = await stack.receiver.forPath(hookPath);
      return all.length > 0 && all;
    }, 15000, { what: 'fal webhook delivery', interval: 100 });
    const d = got[0];
    assert.equal(d.verified, true, d.reason);
    assert.ok(d.headers['webhook-signature']);
    assert.equal(d.body.request_id, sub.request_id);
    assert.equal(d.body.status, 'OK');
    assert.match(d.body.payload.images[0].url, new RegExp(`^${stack.sim.url}/files/`));
    // a failed job: fal's ERROR shape
    const failPath = `/fal-hook/${crypto.randomUUID()}`;
    const sub2 = await falProxied().queue.submit(FAL_MODEL, { input: { prompt: 'hook fail', sim: { outcome: 'fail', message: 'no ink' } }, webhookUrl: stack.receiver.url + failPath });
    const got2 = await h.waitFor(async () => {
      const all = await stack.receiver.forPath(failPath);
      return all.length > 0 && all;
    }, 15000, { what: 'fal webhook of a failed job', interval: 100 });
    assert.equal(got2[0].verified, true, got2[0].reason);
    assert.equal(got2[0].body.request_id, sub2.request_id);
    assert.equal(got2[0].body.status, 'ERROR');
    assert.match(got2[0].body.error, /no ink/);
  });

  test('bad input through the fal front gets fal\'s error shapes, never a 500', async () => {
    const fal = falProxied();
    await assert.rejects(fal.queue.submit(FAL_MODEL, { input: [1, 2] }), (e) => {
      assert.ok(e instanceof libs.fal.ValidationError, String(e));
      assert.equal(e.status, 422);
      return true;
    });
    await assert.rejects(fal.queue.submit('nobody/serves-this', { input: { prompt: 'x' } }), (e) => e.status === 404 && typeof e.body.detail === 'string');
    const wrongKey = libs.fal.createFalClient({ credentials: 'not-a-key', proxyUrl: { url: `${stack.gr.url}/fal/proxy`, when: () => true } });
    await assert.rejects(wrongKey.queue.submit(FAL_MODEL, { input: { prompt: 'x' } }), (e) => e.status === 401 && /unknown API key/.test(e.body.detail));
    await assert.rejects(fal.queue.status(FAL_MODEL, { requestId: 'job_doesnotexist' }), (e) => e.status === 404);
    const K = { authorization: `Key ${h.ACME.api_key}`, 'content-type': 'application/json' };
    const cases = [
      ['POST', '/fal/queue/fal-ai/flux/dev', '{"prompt":', K],
      ['POST', '/fal/run/fal-ai/flux/dev', '"a string"', K],
      ['GET', '/fal/run/fal-ai/flux/dev', undefined, K],
      ['POST', '/fal/proxy', '{}', { ...K, 'x-fal-target-url': 'https://example.com/x' }],
      ['POST', '/fal/proxy', '{}', { ...K, 'x-fal-target-url': 'not a url' }],
      ['GET', '/fal/queue/fal-ai/flux/requests/../../x', undefined, K],
      ['DELETE', '/fal/queue/fal-ai/flux/requests/job_x/cancel', undefined, K],
      ['POST', '/fal/queue/fal-ai/flux/dev?fal_webhook=ftp://x', '{}', K],
      ['POST', '/fal/nowhere', '{}', K],
      ['POST', '/fal/queue/fal-ai/flux/dev', '{"a":' + '['.repeat(200) + ']'.repeat(200) + '}', K],
      ['POST', '/fal/queue/fal-ai/flux/dev', '{}', { authorization: 'Bearer nope' }],
    ];
    for (const [method, p, body, headers] of cases) {
      const r = await h.request(stack.gr.url + p, { method, headers, body });
      assert.ok(r.status >= 400 && r.status < 500, `${method} ${p}: ${r.status} ${r.text}`);
      assert.ok(r.body && r.body.detail !== undefined, `${method} ${p}: fal's {detail} shape: ${r.text}`);
    }
  });

  // --- ai + @ai-sdk/fal -------------------------------------------------

  test('generateImage (ai + @ai-sdk/fal, baseURL) for a fal model and for an alias on Krea', async () => {
    const fal = libs.aiFal.createFal({ apiKey: h.ACME.api_key, baseURL: `${stack.gr.url}/fal/run` });
    const generate = libs.ai.generateImage || libs.ai.experimental_generateImage;
    for (const [model, provider] of [[FAL_MODEL, 'fal'], [`genrelay/${ALIAS}`, 'krea']]) {
      const prompt = `ai sdk ${crypto.randomUUID()}`;
      // syncMode: fal's sync_mode, the image comes back inline as a data URI
      const { images } = await generate({ model: fal.image(model), prompt, providerOptions: { fal: { syncMode: true } } });
      assert.equal(images.length, 1);
      assert.deepEqual(Buffer.from(images[0].uint8Array.slice(0, 8)), PNG);
      const sent = await simRequests((r) => r.provider === provider && r.method === 'POST' && r.body && r.body.prompt === prompt);
      assert.equal(sent.length, 1, `${model} ran on ${provider}`);
    }
  });

  test('@ai-sdk/fal errors: an unknown model and a failed job are the SDK\'s API errors', async () => {
    const fal = libs.aiFal.createFal({ apiKey: h.ACME.api_key, baseURL: `${stack.gr.url}/fal/run` });
    const generate = libs.ai.generateImage || libs.ai.experimental_generateImage;
    await assert.rejects(generate({ model: fal.image('nobody/serves-this'), prompt: 'x', maxRetries: 0 }), (e) => {
      assert.equal(e.statusCode, 404);
      assert.match(String(e.message), /no configured provider serves/);
      return true;
    });
    await assert.rejects(
      generate({ model: fal.image(FAL_MODEL), prompt: 'x', maxRetries: 0, providerOptions: { fal: { sim: { outcome: 'fail', message: 'ink ran out' } } } }),
      (e) => {
        assert.ok(e.statusCode >= 400, String(e.statusCode));
        assert.match(String(e.message), /ink ran out/);
        return true;
      },
    );
  });

  // --- openai -----------------------------------------------------------

  const openai = () => new libs.OpenAI({ apiKey: h.ACME.api_key, baseURL: `${stack.gr.url}/openai/v1`, maxRetries: 0 });

  test('openai images.generate for two providers (a fal model and an alias on Krea), url and b64_json', async () => {
    for (const [model, provider] of [[FAL_MODEL, 'fal'], [ALIAS, 'krea']]) {
      const prompt = `openai ${crypto.randomUUID()}`;
      const r = await openai().images.generate({ model, prompt, n: 1, size: '512x512' });
      assert.ok(Number.isInteger(r.created) && r.created > 1.7e9, String(r.created));
      assert.equal(r.data.length, 1);
      assert.match(r.data[0].url, new RegExp(`^${stack.sim.url}/files/`));
      const sent = await simRequests((x) => x.provider === provider && x.method === 'POST' && x.body && x.body.prompt === prompt);
      assert.equal(sent.length, 1, `${model} ran on ${provider}`);
      assert.deepEqual(sent[0].body.image_size, { width: 512, height: 512 });
    }
    const b = await openai().images.generate({ model: FAL_MODEL, prompt: 'b64', response_format: 'b64_json' });
    assert.deepEqual(Buffer.from(b.data[0].b64_json, 'base64').subarray(0, 8), PNG);
  });

  test('an Idempotency-Key header through the OpenAI front answers the same job again', async () => {
    const key = `idem-${crypto.randomUUID()}`;
    const client = new libs.OpenAI({ apiKey: h.ACME.api_key, baseURL: `${stack.gr.url}/openai/v1`, maxRetries: 0, defaultHeaders: { 'Idempotency-Key': key } });
    const prompt = `idem ${crypto.randomUUID()}`;
    const a = await client.images.generate({ model: FAL_MODEL, prompt });
    const b = await client.images.generate({ model: FAL_MODEL, prompt });
    assert.equal(b.data[0].url, a.data[0].url);
    const sent = await simRequests((x) => x.provider === 'fal' && x.method === 'POST' && x.body && x.body.prompt === prompt);
    assert.equal(sent.length, 1, 'one job');
    await assert.rejects(client.images.generate({ model: FAL_MODEL, prompt: 'another body' }), (e) => e.status === 409 && e.error.type === 'invalid_request_error');
  });

  test('openai images.edit with an uploaded file: the image reaches the provider', async () => {
    const img = Buffer.concat([PNG, crypto.randomBytes(64)]);
    const prompt = `edit ${crypto.randomUUID()}`;
    const file = await libs.OpenAI.toFile(img, 'in.png', { type: 'image/png' });
    const r = await openai().images.edit({ model: FAL_MODEL, prompt, image: file });
    assert.match(r.data[0].url, new RegExp(`^${stack.sim.url}/files/`));
    const sent = await simRequests((x) => x.provider === 'fal' && x.method === 'POST' && x.body && x.body.prompt === prompt);
    assert.equal(sent.length, 1);
    assert.equal(sent[0].body.image_url, `data:image/png;base64,${img.toString('base64')}`);
  });

  test('openai error path: OpenAI\'s error shapes and statuses, never a 500', async () => {
    const check = async (p, cls, status, code) => {
      await assert.rejects(p, (e) => {
        assert.ok(e instanceof cls, `${e && e.constructor && e.constructor.name}: ${e && e.message}`);
        assert.equal(e.status, status);
        if (code) assert.equal(e.code, code);
        return true;
      });
    };
    await check(openai().images.generate({ model: 'nobody/serves-this', prompt: 'x' }), libs.OpenAI.NotFoundError, 404, 'model_not_found');
    await check(openai().images.generate({ model: FAL_MODEL }), libs.OpenAI.BadRequestError, 400, 'missing_required_parameter');
    await check(openai().images.generate({ model: FAL_MODEL, prompt: 'x', n: 99 }), libs.OpenAI.BadRequestError, 400);
    await check(openai().images.generate({ model: FAL_MODEL, prompt: 'x', size: 'huge' }), libs.OpenAI.BadRequestError, 400);
    const wrong = new libs.OpenAI({ apiKey: 'nope', baseURL: `${stack.gr.url}/openai/v1`, maxRetries: 0 });
    await check(wrong.images.generate({ model: FAL_MODEL, prompt: 'x' }), libs.OpenAI.AuthenticationError, 401, 'invalid_api_key');
    // a failed job: the provider's message, the job id to look it up
    await assert.rejects(openai().images.generate({ model: FAL_MODEL, prompt: 'x', sim: { outcome: 'fail', message: 'melted' } }), (e) => {
      assert.ok(e instanceof libs.OpenAI.APIError, String(e));
      assert.ok(e.status >= 400, String(e.status));
      assert.match(e.message, /melted/);
      assert.match(e.error.job_id, /^job_/);
      return true;
    });
    const B = { authorization: `Bearer ${h.ACME.api_key}` };
    const cases = [
      ['POST', '/openai/v1/images/generations', '{nope', { ...B, 'content-type': 'application/json' }],
      ['POST', '/openai/v1/images/generations', '[]', { ...B, 'content-type': 'application/json' }],
      ['POST', '/openai/v1/images/generations', '{"model":"m","prompt":"p","x":' + '['.repeat(100) + ']'.repeat(100) + '}', { ...B, 'content-type': 'application/json' }],
      ['GET', '/openai/v1/images/generations', undefined, B],
      ['POST', '/openai/v1/chat/completions', '{}', { ...B, 'content-type': 'application/json' }],
      ['POST', '/openai/v1/images/edits', '{"model":"m","prompt":"p"}', { ...B, 'content-type': 'application/json' }],
      ['POST', '/openai/v1/images/edits', '--x\r\nbroken', { ...B, 'content-type': 'multipart/form-data; boundary=x' }],
      ['POST', '/openai/v1/images/edits', '--x\r\nContent-Disposition: form-data; name="model"\r\n\r\nm\r\n--x--', { ...B, 'content-type': 'multipart/form-data; boundary=x' }],
      ['POST', '/openai/v1/images/edits', 'x', { ...B, 'content-type': 'multipart/form-data' }],
    ];
    for (const [method, p, body, headers] of cases) {
      const r = await h.request(stack.gr.url + p, { method, headers, body });
      assert.ok(r.status >= 400 && r.status < 500, `${method} ${p}: ${r.status} ${r.text}`);
      assert.ok(r.body && r.body.error && typeof r.body.error.message === 'string' && r.body.error.type, `${method} ${p}: ${r.text}`);
    }
  });

  test('the unified API is unchanged beside the fronts', async () => {
    const r = await stack.api('POST', `/v1/models/${FAL_MODEL}/run`, { input: { prompt: 'plain' } });
    assert.equal(r.status, 202);
    assert.match(r.body.job_id, /^job_/);
    const s = await (stack.gr.admin || stack.api)('GET', '/v1/scripts'); // admin-only where an admin key is configured
    const fronts = s.body.data.filter((x) => x.kind === 'front').map((x) => x.name).sort();
    assert.deepEqual(fronts, ['fal', 'openai']);
  });
});
