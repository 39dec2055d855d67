'use strict';
// provsim's fal surface driven by fal's own JS client (@fal-ai/client,
// pinned in tests/sim/package.json; install with `npm ci --prefix tests/sim`).
// Only the host is rewritten, through the client's requestMiddleware, so this
// checks that provsim answers the way fal does for the calls the client makes.
// Runs against provsim alone (no genrelay).

const { describe, test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const http = require('node:http');
const path = require('node:path');
const { createRequire } = require('node:module');
const h = require('../lib/harness');

let falLib = null;
try {
  falLib = createRequire(path.join(h.SRC, 'tests', 'sim', 'package.json'))('@fal-ai/client');
} catch (e) {
  falLib = null;
}

const MODEL = 'fal-ai/flux/dev';

// A local server that records what is POSTed to it (the fal webhook target).
function startHookServer() {
  const hits = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      hits.push({ headers: req.headers, raw: Buffer.concat(chunks), url: req.url });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"ok":true}');
    });
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve({ server, hits, url: `http://127.0.0.1:${server.address().port}` }));
  });
}

// fal's webhook verification as its docs and verifiers describe it: Ed25519
// over "request_id\nuser_id\ntimestamp\nhex(sha256(body))", any JWKS key.
function verifyFalWebhook(headers, raw, jwks, nowS = Math.floor(Date.now() / 1000)) {
  const rid = headers['x-fal-webhook-request-id'];
  const uid = headers['x-fal-webhook-user-id'];
  const ts = headers['x-fal-webhook-timestamp'];
  const sig = headers['x-fal-webhook-signature'];
  if (!rid || !uid || !ts || !sig) return false;
  if (Math.abs(nowS - Number(ts)) > 300) return false;
  const msg = Buffer.from([rid, uid, ts, crypto.createHash('sha256').update(raw).digest('hex')].join('\n'));
  const sigBuf = Buffer.from(sig, 'hex');
  return jwks.keys.some((k) => {
    const key = crypto.createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: k.x }, format: 'jwk' });
    return crypto.verify(null, msg, key, sigBuf);
  });
}

describe('provsim with @fal-ai/client', { skip: falLib ? false : '@fal-ai/client not installed: run `npm ci --prefix tests/sim`' }, () => {
  let sim;
  let hook;
  let fal;
  const seen = []; // URLs the client asked for, after rewriting

  before(async () => {
    sim = await h.startProvsim();
    hook = await startHookServer();
    fal = falLib.createFalClient({
      credentials: 'k',
      requestMiddleware: async (req) => {
        const url = req.url.replace(/^https:\/\/queue\.fal\.run/, `${sim.url}/fal`);
        seen.push(`${req.method} ${url}`);
        return { ...req, url };
      },
    });
  });
  after(async () => {
    if (hook) await new Promise((r) => hook.server.close(r));
    if (sim) await sim.stop();
  });

  test('subscribe returns the images and the request id', async () => {
    const prompt = `a cat ${crypto.randomUUID()}`;
    const result = await fal.subscribe(MODEL, { input: { prompt, num_images: 2, sim: { delay_ms: 700 } }, pollInterval: 100 });
    assert.ok(result.requestId, 'requestId from the x-fal-request-id header');
    assert.equal(result.data.images.length, 2);
    for (const img of result.data.images) {
      assert.match(img.url, new RegExp(`^${sim.url}/files/[^/]+\\.png$`));
      assert.equal(img.content_type, 'image/png');
      const file = await h.request(img.url);
      assert.equal(file.status, 200);
      assert.equal(file.headers['content-type'], 'image/png');
    }
    assert.equal(result.data.prompt, prompt);

    const reqs = (await sim.requests('fal')).filter((r) => r.body && r.body.prompt === prompt || r.path.includes(result.requestId));
    const submit = reqs.find((r) => r.method === 'POST');
    assert.equal(submit.path, `/fal/${MODEL}`);
    assert.equal(submit.headers.authorization, 'Key k');
    assert.equal(submit.body.prompt, prompt);
    const statusPolls = reqs.filter((r) => r.method === 'GET' && r.path === `/fal/fal-ai/flux/requests/${result.requestId}/status`);
    assert.ok(statusPolls.length >= 2, `the client polled status until COMPLETED (${statusPolls.length} polls)`);
    assert.ok(reqs.some((r) => r.method === 'GET' && r.path === `/fal/fal-ai/flux/requests/${result.requestId}`), 'result fetched');
  });

  test('queue.status says IN_QUEUE/IN_PROGRESS (202) then COMPLETED (200)', async () => {
    const { request_id: rid, status, status_url } = await fal.queue.submit(MODEL, { input: { prompt: 'x', sim: { delay_ms: 600 } } });
    assert.equal(status, 'IN_QUEUE');
    assert.equal(status_url, `${sim.url}/fal/fal-ai/flux/requests/${rid}/status`);
    const early = await fal.queue.status(MODEL, { requestId: rid, logs: true });
    assert.ok(['IN_QUEUE', 'IN_PROGRESS'].includes(early.status), early.status);
    const raw = await h.request(`${sim.url}/fal/fal-ai/flux/requests/${rid}/status`, { headers: { authorization: 'Key k' } });
    assert.equal(raw.status, 202);
    const done = await h.waitFor(async () => {
      const s = await fal.queue.status(MODEL, { requestId: rid });
      return s.status === 'COMPLETED' && s;
    }, 5000);
    assert.equal(done.request_id, rid);
    const raw2 = await h.request(`${sim.url}/fal/fal-ai/flux/requests/${rid}/status`, { headers: { authorization: 'Key k' } });
    assert.equal(raw2.status, 200);
  });

  test('queue.submit with webhookUrl: a callback verifiable against the JWKS arrives', async () => {
    const prompt = `webhook ${crypto.randomUUID()}`;
    const { request_id: rid } = await fal.queue.submit(MODEL, { input: { prompt, sim: { delay_ms: 200 } }, webhookUrl: `${hook.url}/fal-hook?x=1` });
    const submit = (await sim.requests('fal')).find((r) => r.method === 'POST' && r.body && r.body.prompt === prompt);
    assert.equal(submit.query.fal_webhook, `${hook.url}/fal-hook?x=1`);

    const hit = await h.waitFor(() => hook.hits.find((x) => x.headers['x-fal-webhook-request-id'] === rid), 5000, { what: 'fal webhook' });
    assert.equal(hit.url, '/fal-hook?x=1');
    const jwks = (await h.request(`${sim.url}/fal/.well-known/jwks.json`)).body;
    assert.equal(jwks.keys[0].kty, 'OKP');
    assert.equal(jwks.keys[0].crv, 'Ed25519');
    assert.equal(Buffer.from(jwks.keys[0].x, 'base64url').length, 32);
    assert.ok(verifyFalWebhook(hit.headers, hit.raw, jwks), 'signature verifies');
    assert.ok(!verifyFalWebhook(hit.headers, Buffer.concat([hit.raw, Buffer.from(' ')]), jwks), 'a changed body does not verify');

    const body = JSON.parse(hit.raw);
    assert.equal(body.request_id, rid);
    assert.equal(body.gateway_request_id, rid);
    assert.equal(body.status, 'OK');
    assert.equal(body.error, null);
    assert.match(body.payload.images[0].url, /\/files\/.+\.png$/);

    // The same result through the queue API.
    const res = await fal.queue.result(MODEL, { requestId: rid });
    assert.deepEqual(res.data, body.payload);
    assert.equal(res.requestId, rid);
  });

  test('a failing job makes subscribe reject with a ValidationError, and the webhook says ERROR', async () => {
    await assert.rejects(
      fal.subscribe(MODEL, { input: { prompt: 'bad', sim: { outcome: 'fail', delay_ms: 100, message: 'nope' } }, pollInterval: 100 }),
      (err) => {
        assert.equal(err.name, 'ValidationError');
        assert.equal(err.status, 422);
        assert.ok(Array.isArray(err.body.detail));
        assert.equal(err.fieldErrors[0].msg, 'nope');
        return true;
      },
    );
    const { request_id: rid } = await fal.queue.submit(MODEL, { input: { prompt: 'bad', sim: { outcome: 'fail', delay_ms: 50 } }, webhookUrl: `${hook.url}/fail-hook` });
    const hit = await h.waitFor(() => hook.hits.find((x) => x.headers['x-fal-webhook-request-id'] === rid), 5000, { what: 'failure webhook' });
    const body = JSON.parse(hit.raw);
    assert.equal(body.status, 'ERROR');
    assert.equal(body.error, 'Invalid status code: 422');
    assert.ok(Array.isArray(body.payload.detail));
  });

  test('queue.cancel cancels a slow job; no webhook follows', async () => {
    const { request_id: rid } = await fal.queue.submit(MODEL, { input: { prompt: 'slow', sim: { delay_ms: 5000 } }, webhookUrl: `${hook.url}/cancel-hook` });
    await fal.queue.cancel(MODEL, { requestId: rid });
    const put = (await sim.requests('fal')).find((r) => r.method === 'PUT' && r.path === `/fal/fal-ai/flux/requests/${rid}/cancel`);
    assert.ok(put, 'provsim saw PUT .../cancel');
    const s = await fal.queue.status(MODEL, { requestId: rid });
    assert.equal(s.status, 'COMPLETED');
    await assert.rejects(fal.queue.result(MODEL, { requestId: rid }), (err) => err.status === 499);
    // Cancelling again: already completed.
    await assert.rejects(fal.queue.cancel(MODEL, { requestId: rid }), (err) => err.status === 400 && err.body.status === 'ALREADY_COMPLETED');
    await assert.rejects(fal.queue.cancel(MODEL, { requestId: crypto.randomUUID() }), (err) => err.status === 404);
    await h.sleep(300);
    assert.equal(hook.hits.filter((x) => x.headers['x-fal-webhook-request-id'] === rid).length, 0);
  });

  test('the client retries a 503 on submit and then succeeds', async () => {
    const prompt = `flaky ${crypto.randomUUID()}`;
    const result = await fal.subscribe(MODEL, { input: { prompt, sim: { http_status: 503, http_times: 1, delay_ms: 50 } }, pollInterval: 100 });
    assert.equal(result.data.images.length, 1);
    const submits = (await sim.requests('fal')).filter((r) => r.method === 'POST' && r.body && r.body.prompt === prompt);
    assert.equal(submits.length, 2, 'one 503, then one accepted');
  });

  test('status of an unknown request is 404, and status under the full model path is refused (docs/provider-facts.md: owner/app only)', async () => {
    await assert.rejects(fal.queue.status(MODEL, { requestId: crypto.randomUUID() }), (err) => err.status === 404 && typeof err.body.detail === 'string');
    const { request_id: rid } = await fal.queue.submit(MODEL, { input: { prompt: 'p' } });
    const r = await h.request(`${sim.url}/fal/fal-ai/flux/dev/requests/${rid}/status`, { headers: { authorization: 'Key k' } });
    assert.equal(r.status, 404);
  });

  test('a namespaced app id (workflows/owner/app/path): the client polls and fetches under the namespace, and provsim answers there', async () => {
    const NS = 'workflows/acme/pipe/v2';
    const prompt = `ns ${crypto.randomUUID()}`;
    const result = await fal.subscribe(NS, { input: { prompt, sim: { delay_ms: 300 } }, pollInterval: 100 });
    assert.equal(result.data.images.length, 1);
    const reqs = (await sim.requests('fal')).filter((r) => r.path.includes(result.requestId));
    assert.ok(reqs.some((r) => r.method === 'GET' && r.path === `/fal/workflows/acme/pipe/requests/${result.requestId}/status`), 'status under the namespace');
    assert.ok(reqs.some((r) => r.method === 'GET' && r.path === `/fal/workflows/acme/pipe/requests/${result.requestId}`), 'result under the namespace');
    const r = await h.request(`${sim.url}/fal/acme/pipe/requests/${result.requestId}/status`, { headers: { authorization: 'Key k' } });
    assert.equal(r.status, 404, 'without the namespace the request is unknown');
  });

  test('the client only called provsim (no other host)', () => {
    assert.ok(seen.length > 0);
    for (const s of seen) assert.ok(s.split(' ')[1].startsWith(`${sim.url}/fal/`), s);
  });
});
