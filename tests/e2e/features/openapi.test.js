'use strict';
// The OpenAPI document: what genrelay serves at /v1/openapi.json is
// docs/openapi.yaml; the harness's check of every answer (lib/openapi.js)
// refuses answers the document does not describe; deliberately broken
// requests, also on raw sockets, get documented answers.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { createRequire } = require('node:module');
const { describe, test } = require('node:test');
const h = require('../lib/harness');
const { checkResponse, SPEC } = require('../lib/openapi');

const YAML = createRequire(path.join(h.SRC, 'tools', 'openapi', 'package.json'))('yaml');

// Sends raw bytes; resolves {status, headers, text} of the answer (or
// status null when the server closed without one).
function raw(port, bytes, timeoutMs = 10000) {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    const chunks = [];
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      const t = Buffer.concat(chunks).toString('latin1');
      const end = t.indexOf('\r\n\r\n');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(t);
      const headers = {};
      for (const line of t.slice(0, end < 0 ? t.length : end).split('\r\n').slice(1)) {
        const i = line.indexOf(':');
        if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
      }
      resolve({ status: m ? Number(m[1]) : null, headers, text: end < 0 ? '' : t.slice(end + 4) });
    };
    const timer = setTimeout(finish, timeoutMs);
    s.on('connect', () => s.end(Buffer.from(bytes, 'latin1')));
    s.on('data', (d) => {
      chunks.push(d);
      const t = Buffer.concat(chunks).toString('latin1');
      const end = t.indexOf('\r\n\r\n');
      const cl = end > 0 && /content-length:\s*(\d+)/i.exec(t.slice(0, end));
      if (cl && t.length - end - 4 >= Number(cl[1])) finish();
    });
    s.on('error', finish);
    s.on('close', finish);
  });
}

const JOB = {
  job_id: 'job_01',
  status: 'succeeded',
  model_id: 'fal-ai/flux/dev',
  provider: 'fal',
  request_id: 'r1',
  track_id: null,
  output: { type: 'image', items: [{ type: 'image', url: 'https://x/a.png', content_type: 'image/png' }] },
  error: null,
  created_at: '2026-12-01T09:00:00.000Z',
  completed_at: '2026-12-01T09:00:01.000Z',
};
const JSON_CT = { 'content-type': 'application/json' };

describe('openapi', () => {
  const stack = h.useStack();

  test('GET /v1/openapi.json serves docs/openapi.yaml, without a key', async () => {
    const r = await stack.gr.as(null)('GET', '/v1/openapi.json');
    assert.equal(r.status, 200, r.text);
    assert.match(r.headers['content-type'], /^application\/json/);
    assert.deepEqual(r.body, YAML.parse(fs.readFileSync(SPEC, 'utf8')), 'the binary embeds a stale document: rebuild');
    assert.equal(r.body.openapi, '3.1.0');
    const bad = await stack.gr.as(null)('POST', '/v1/openapi.json');
    assert.equal(bad.status, 405);
  });

  test('the document covers every route the server answers', () => {
    const doc = YAML.parse(fs.readFileSync(SPEC, 'utf8'));
    for (const p of ['/v1/models/{model}/run', '/v1/jobs', '/v1/jobs/{id}', '/v1/jobs/{id}/deliveries', '/v1/jobs/{id}/events',
      '/v1/deliveries/{id}/retry', '/v1/models', '/v1/scripts', '/v1/callbacks/{provider}/{job_id}/{token}', '/healthz', '/metrics', '/v1/openapi.json']) {
      assert.ok(doc.paths[p], `${p} is documented`);
    }
    assert.deepEqual(Object.keys(doc.webhooks).sort(), ['budget.warning', 'job.canceled', 'job.failed', 'job.succeeded']);
    assert.ok(doc.components.securitySchemes.apiKey && doc.components.securitySchemes.adminKey);
  });

  test('the check refuses answers the document does not describe', () => {
    assert.equal(checkResponse('GET', '/v1/jobs/job_01', 200, JSON_CT, JSON.stringify(JOB)), null);
    // A missing field, an unknown field, a wrong type, a status not listed.
    const { output, ...noOutput } = JOB;
    assert.match(checkResponse('GET', '/v1/jobs/job_01', 200, JSON_CT, JSON.stringify(noOutput)), /output/);
    assert.match(checkResponse('GET', '/v1/jobs/job_01', 200, JSON_CT, JSON.stringify({ ...JOB, secret: 1 })), /additional|secret/);
    assert.match(checkResponse('GET', '/v1/jobs/job_01', 200, JSON_CT, JSON.stringify({ ...JOB, status: 'lost' })), /status/);
    assert.match(checkResponse('GET', '/v1/jobs/job_01', 418, JSON_CT, '{}'), /documents no 418/);
    assert.match(checkResponse('GET', '/v1/jobs/job_01', 200, { 'content-type': 'text/plain' }, 'x'), /Content-Type/);
    // Errors carry the code of their status.
    const err = (code) => JSON.stringify({ error: { code, message: 'm' } });
    assert.equal(checkResponse('GET', '/v1/jobs/job_x', 404, JSON_CT, err('JOB_NOT_FOUND')), null);
    assert.match(checkResponse('GET', '/v1/jobs/job_x', 404, JSON_CT, err('MODEL_NOT_FOUND')), /code/);
    assert.match(checkResponse('GET', '/v1/jobs/job_x', 500, JSON_CT, err('INTERNAL')), /no 500/);
    // 429 needs Retry-After.
    assert.match(checkResponse('GET', '/v1/jobs', 429, JSON_CT, err('RATE_LIMITED')), /Retry-After/);
    assert.equal(checkResponse('GET', '/v1/jobs', 429, { ...JSON_CT, 'retry-after': '3' }, err('RATE_LIMITED')), null);
    // Unlisted paths and methods answer as the document says, nothing else.
    assert.equal(checkResponse('GET', '/nowhere', 404, JSON_CT, err('NOT_FOUND')), null);
    assert.match(checkResponse('GET', '/nowhere', 200, JSON_CT, '{}'), /x-unmatched-path documents no 200/);
    assert.equal(checkResponse('PATCH', '/v1/jobs', 405, JSON_CT, err('METHOD_NOT_ALLOWED')), null);
    assert.match(checkResponse('PATCH', '/v1/jobs', 200, JSON_CT, '{"data":[],"next_cursor":null}'), /x-other-methods/);
    // The dashboard is declared outside the API; /uix is not under it.
    assert.equal(checkResponse('GET', '/ui/jobs', 200, { 'content-type': 'text/html' }, '<html>'), null);
    assert.match(checkResponse('GET', '/uix', 200, { 'content-type': 'text/html' }, '<html>'), /x-unmatched-path/);
    // A model id may span segments; a percent-encoded slash is a slash.
    assert.equal(checkResponse('POST', '/v1/models/fal-ai/flux/dev/run', 404, JSON_CT, err('MODEL_NOT_FOUND')), null);
    assert.equal(checkResponse('GET', '/v1/jobs/a%2Fb', 404, JSON_CT, err('NOT_FOUND')), null);
  });

  test('answers to real traffic are documented (checked by the harness on each call)', async () => {
    const api = stack.api;
    const run = await api('POST', '/v1/models/fal-ai/flux/dev/run', { input: { prompt: 'a cat' }, webhook_url: `${stack.receiver.url}/hook`, track_id: 't1' },
      { 'idempotency-key': 'openapi-1' });
    assert.equal(run.status, 202, run.text);
    const id = run.body.job_id;
    const { waitTerminal, waitDelivered } = h.jobHelpers(stack);
    await waitTerminal(id);
    await waitDelivered(id);
    const again = await api('POST', '/v1/models/fal-ai/flux/dev/run', { input: { prompt: 'a cat' }, webhook_url: `${stack.receiver.url}/hook`, track_id: 't1' },
      { 'idempotency-key': 'openapi-1' });
    assert.equal(again.status, 202);
    assert.equal((await api('POST', '/v1/models/fal-ai/flux/dev/run', { input: { prompt: 'a dog' } }, { 'idempotency-key': 'openapi-1' })).status, 409);
    const sync = await api('POST', '/v1/models/fal-ai/flux/dev/run', { input: { prompt: 'sync' }, sync: true });
    assert.equal(sync.status, 200, sync.text);
    assert.equal((await api('GET', `/v1/jobs/${id}?wait=1`)).status, 200);
    assert.equal((await api('GET', '/v1/jobs?limit=1')).status, 200);
    assert.equal((await api('GET', '/v1/jobs?limit=0')).status, 400);
    assert.equal((await api('GET', '/v1/jobs?status=lost')).status, 400);
    const dl = await api('GET', `/v1/jobs/${id}/deliveries`);
    assert.equal(dl.status, 200);
    assert.equal((await api('GET', `/v1/jobs/${id}/events`)).status, 200);
    assert.equal((await api('POST', `/v1/deliveries/${dl.body.data[0].delivery_id}/retry`)).status, 202);
    assert.equal((await api('POST', '/v1/deliveries/msg_nope/retry')).status, 404);
    assert.equal((await api('DELETE', `/v1/jobs/${id}`)).status, 200);
    assert.equal((await api('GET', '/v1/models')).status, 200);
    // Admin surfaces: 200, or 401 where they need the admin key (either is checked).
    assert.ok([200, 401].includes((await api('GET', '/v1/scripts')).status));
    assert.ok([200, 401].includes((await stack.gr.as(null)('GET', '/metrics')).status));
    assert.equal((await api('GET', '/healthz')).status, 200);
    assert.equal((await stack.gr.as(null)('GET', '/v1/jobs')).status, 401);
    assert.equal((await stack.gr.as('wrong')('GET', `/v1/jobs/${id}`)).status, 401);
    assert.equal((await api('GET', '/v1/jobs/job_nope')).status, 404);
    assert.equal((await api('PUT', '/v1/jobs')).status, 405);
    assert.equal((await api('GET', '/v1/nothing')).status, 404);
    assert.equal((await api('POST', '/v1/models/no-such/model/run', { input: {} })).status, 404);
    assert.equal((await api('POST', '/v1/models/fal-ai/flux/dev/run', '{"input":')).status, 400);
    assert.equal((await api('POST', '/v1/callbacks/fal/job_nope/0123')).status, 401);
    assert.equal((await api('GET', '/v1/callbacks/fal/job_nope/0123')).status, 405);
  });

  test('deliberately broken requests on raw sockets get documented answers', async () => {
    const { port } = stack.gr;
    const key = `Authorization: Bearer ${h.ACME.api_key}\r\n`;
    const cases = [
      ['POST', '/v1/models/fal-ai/flux/dev/run', `POST /v1/models/fal-ai/flux/dev/run HTTP/1.1\r\nHost: x\r\n${key}Content-Length: 9\r\n\r\n{"input":`],
      ['POST', '/v1/models/fal-ai/flux/dev/run', `POST /v1/models/fal-ai/flux/dev/run HTTP/1.1\r\nHost: x\r\n${key}Content-Length: 99999999999999999999\r\n\r\n{}`],
      ['POST', '/v1/models/fal-ai/flux/dev/run', `POST /v1/models/fal-ai/flux/dev/run HTTP/1.1\r\nHost: x\r\n${key}Content-Length: 5000000\r\n\r\n{}`],
      ['POST', '/v1/models/fal-ai/flux/dev/run', `POST /v1/models/fal-ai/flux/dev/run HTTP/1.1\r\nHost: x\r\n${key}Transfer-Encoding: chunked\r\n\r\n3\r\n{"i\r\n0\r\n\r\n`],
      ['GET', '/v1/jobs/x', `GET /v1/jobs/${'a'.repeat(20000)} HTTP/1.1\r\nHost: x\r\n\r\n`],
      ['GET', '/v1/jobs', `GET /v1/jobs HTTP/1.1\r\nHost: x\r\nX-Big: ${'b'.repeat(20000)}\r\n\r\n`],
      ['GET', '/v1/jobs/..%2f..%2fetc', `GET /v1/jobs/..%2f..%2fetc HTTP/1.1\r\nHost: x\r\n${key}\r\n`],
      ['DELETE', '/v1/jobs/%00', `DELETE /v1/jobs/%00 HTTP/1.1\r\nHost: x\r\n${key}\r\n`],
      ['GET', '/v1/jobs', `GET /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer\r\n\r\n`],
      ['POST', '/v1/callbacks/fal/j/t', `POST /v1/callbacks/fal/j/t HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n{{{`],
    ];
    let answered = 0;
    for (const [method, p, bytes] of cases) {
      const r = await raw(port, bytes);
      if (r.status === null) continue; // closed without an answer: nothing to describe
      answered++;
      // The path as sent on the request line (the long one is the 20000-byte id).
      const line = bytes.slice(0, bytes.indexOf(' HTTP/1.1')).split(' ')[1];
      const why = checkResponse(method, line || p, r.status, r.headers, r.text);
      assert.equal(why, null, `${method} ${p.slice(0, 60)} -> ${r.status}: ${why}`);
    }
    assert.ok(answered >= 8, `${answered} of ${cases.length} answered`);
    assert.ok((await stack.api('GET', '/healthz')).status === 200);
  });
});
