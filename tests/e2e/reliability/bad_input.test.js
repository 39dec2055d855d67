'use strict';
// Bad input: never a crash, never a 500, always the documented
// error. Malformed, truncated, deeply nested (100,000 levels) and huge
// JSON; invalid UTF-8; NaN and Infinity; wrong types for every field;
// unknown and duplicate fields; empty bodies; random and mutated bodies;
// oversized headers and URLs; malformed HTTP; path traversal in every id;
// callbacks with a wrong token, a bad, malformed or stale fal signature, or
// a valid signature replayed for another job (refused, job untouched).
//
// Every input is counted (build/reliability/bad_input.json). Errors from
// genrelay carry {"error":{"code","message"}}; the few refusals made by
// libmicrohttpd itself before genrelay sees the request (header block over
// the connection's memory, unparseable request lines) are checked for a 4xx
// status (431, 414, 413, 400, 505) without the JSON shape.

const { describe, test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const http = require('node:http');
const net = require('node:net');
const h = require('../lib/harness');
const R = require('../lib/reliability');

const FAL = 'fal-ai/flux/dev';
const RUN = `/v1/models/${FAL}/run`;
const T = { timeout: 240000 };

// A seeded PRNG (mulberry32) so random inputs are the same on every run.
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Sends raw bytes on a fresh connection; resolves {status, text, closed}
// with whatever came back before the server closed or timeoutMs passed.
function raw(port, bytes, timeoutMs = 10000) {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    const chunks = [];
    let done = false;
    const finish = (closed) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      const text = Buffer.concat(chunks).toString('latin1');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      resolve({ status: m ? Number(m[1]) : null, text, closed });
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    s.on('connect', () => s.end(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes, 'latin1')));
    s.on('data', (d) => {
      chunks.push(d);
      const t = Buffer.concat(chunks).toString('latin1');
      const m = /\r\n\r\n/.exec(t);
      if (m) {
        const cl = /content-length:\s*(\d+)/i.exec(t.slice(0, m.index));
        if (cl && t.length - m.index - 4 >= Number(cl[1])) finish(false);
      }
    });
    s.on('error', () => finish(true));
    s.on('close', () => finish(true));
  });
}

describe('bad input', () => {
  let sim;
  let gr;
  let jwks; // our own JWKS server: provsim's key plus the test's key
  const key = crypto.generateKeyPairSync('ed25519');
  const counts = { inputs: 0, by_area: {} };
  const statuses = {};

  before(async () => {
    sim = await h.startProvsim();
    const simJwks = (await h.request(`${sim.url}/fal/.well-known/jwks.json`)).body;
    const ours = key.publicKey.export({ format: 'jwk' });
    const doc = JSON.stringify({ keys: [...simJwks.keys, { kty: 'OKP', crv: 'Ed25519', x: ours.x, kid: 'test', use: 'sig', alg: 'EdDSA' }] });
    jwks = http.createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(doc);
    });
    await new Promise((r) => jwks.listen(0, '127.0.0.1', r));
    gr = await h.startGenrelay({
      simUrl: sim.url,
      config: {
        providers: { fal: { jwks_url: `http://127.0.0.1:${jwks.address().port}/jwks.json` } },
        jobs: { poll_after_s: 600, job_deadline_s: 900 },
      },
    });
  });

  after(async () => {
    R.report('bad_input', { inputs_tried: counts.inputs, by_area: counts.by_area, statuses, crashes: gr && !gr.running() ? 1 : 0, http_500: statuses['500'] || 0 });
    await R.shutdown(gr, () => jwks && new Promise((r) => jwks.close(r)), sim);
  });

  function count(area, status) {
    counts.inputs++;
    counts.by_area[area] = (counts.by_area[area] || 0) + 1;
    statuses[status] = (statuses[status] || 0) + 1;
  }

  // Checks a genrelay error answer: status, code, JSON shape.
  function expectError(r, status, code, what) {
    const msg = `${what}: expected ${status} ${code}, got ${r.status} ${String(r.text).slice(0, 300)}`;
    assert.notEqual(r.status, 500, msg);
    assert.equal(r.status, status, msg);
    assert.ok(r.body && r.body.error && typeof r.body.error.message === 'string' && r.body.error.message.length > 0, msg);
    assert.equal(r.body.error.code, code, msg);
  }

  async function post(area, body, status, code, headers = {}, p = RUN) {
    const r = await gr.api('POST', p, body, { 'content-type': 'application/json', ...headers });
    count(area, r.status);
    expectError(r, status, code, `${area} ${JSON.stringify(String(typeof body === 'string' ? body : Buffer.isBuffer(body) ? body.toString('latin1') : JSON.stringify(body)).slice(0, 120))}`);
    return r;
  }

  async function alive() {
    const r = await gr.api('GET', '/healthz');
    assert.equal(r.status, 200, `genrelay still serves after the inputs: ${r.status}`);
    assert.ok(gr.running(), 'genrelay still running');
  }

  test('malformed and truncated JSON', T, async () => {
    const malformed = [
      '{', '}', '[', ']', '{"input":', '{"input":{}', '{input:{}}', "{'input':{}}", '{"input":{},}', '{"input":{}}}', '{"input":{}} x',
      '[1,2', 'nul', 'tru', 'fals', '"', '"abc', '{"input":{"a":01}}', '{"input":{"a":.5}}', '{"input":{"a":1.}}', '{"input":{"a":1e}}',
      '{"input":{"a":+1}}', '{"input":{"a":0x10}}', '{"input":{"a":"\\x41"}}', '{"input":{"a":"\\u12"}}', '{"input":{"a":"\\ud800"}}',
      '{"input":{"a":"\\udc00x"}}', '{"input":{"a":"tab\there"}}', '{"input":{"a":"nl\nhere"}}', '{"input":{"a":undefined}}',
      '{"input":{"a":[1,]}}', '{"input":{"a":[,1]}}', '{"input":{"a"}}', '{"input":{:1}}', '{"input" {}}', '{"input"::{}}',
      '{"input":{}}\u0000', '\u0000{"input":{}}', '\ufeff{"input":{}}', '/* c */{"input":{}}', '{"input":{}} // c', 'garbage', '\u0000',
      '{"input":{"a":"\\"}}', '{"input":{"a":"unterminated}}', '{"input":{"a":1}', '{{}}', '{"input":[}', '{"input":{"a":tRue}}', '{"input":{"a":Null}}',
    ];
    for (const b of malformed) await post('malformed', b, 400, 'INVALID_REQUEST');
    // Every proper prefix of valid bodies.
    const valids = [
      JSON.stringify({ input: { prompt: 'a cat', n: 1, x: [1.5, true, null, { y: 'é' }] }, webhook_url: 'http://127.0.0.1:9/x', track_id: 't-1', sync: false }),
      JSON.stringify({ input: { prompt: 'ünïcödé 🐱', nested: { a: { b: { c: [] } } } } }),
    ];
    for (const v of valids) {
      const buf = Buffer.from(v);
      for (let k = 0; k < buf.length; k++) {
        const r = await gr.api('POST', RUN, buf.subarray(0, k), { 'content-type': 'application/json' });
        count('truncated', r.status);
        expectError(r, 400, 'INVALID_REQUEST', `prefix ${k} of ${v}`);
      }
    }
    await alive();
  });

  test('deeply nested (100,000 levels), deep but valid, and huge JSON', T, async () => {
    for (const [open, close] of [['[', ']'], ['{"a":', '}']]) {
      for (const depth of [3000, 100000]) {
        const body = `{"input":{"x":${open.repeat(depth)}1${close.repeat(depth)}}}`;
        await post('nested', body, 400, 'INVALID_REQUEST');
      }
    }
    // Unbalanced deep nesting (truncated deep input).
    await post('nested', `{"input":{"x":${'['.repeat(100000)}}}`, 400, 'INVALID_REQUEST');
    // Deep but well-formed, past the input depth limit (64, README "Limits"):
    // refused at submit, never accepted to fail later in the Lua bridge
    // (inbound_limits.test.js runs an input exactly at the limit to the end).
    for (const depth of [100, 500, 1000, 2000]) {
      const body = `{"input":{"prompt":"deep","x":${'['.repeat(depth)}${']'.repeat(depth)}}}`;
      const r = await gr.api('POST', RUN, body, { 'content-type': 'application/json' });
      count('nested_valid', r.status);
      expectError(r, 400, 'INVALID_REQUEST', `depth ${depth}`);
    }
    // Huge: over limits.body_bytes (1 MiB) with and without Content-Length.
    const huge = `{"input":{"prompt":"${'x'.repeat(1100000)}"}}`;
    await post('huge', huge, 413, 'PAYLOAD_TOO_LARGE');
    await post('huge', `{"input":{"a":[${'1,'.repeat(600000)}1]}}`, 413, 'PAYLOAD_TOO_LARGE');
    const chunked = await new Promise((resolve, reject) => {
      const req = http.request(gr.url + RUN, { method: 'POST', headers: { authorization: `Bearer ${h.ACME.api_key}`, 'content-type': 'application/json', 'transfer-encoding': 'chunked' } }, (res) => {
        let t = '';
        res.on('data', (d) => (t += d));
        res.on('end', () => resolve({ status: res.statusCode, text: t, body: JSON.parse(t) }));
      });
      req.on('error', reject);
      for (let i = 0; i < 40; i++) req.write('x'.repeat(32 * 1024));
      req.end();
    });
    count('huge', chunked.status);
    expectError(chunked, 413, 'PAYLOAD_TOO_LARGE', 'chunked 1.3 MB');
    // Content-Length lies: larger than the limit but a tiny body.
    const lie = await raw(gr.port, `POST ${RUN} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${h.ACME.api_key}\r\nContent-Length: 99999999999999999999\r\n\r\n{}`);
    count('huge', lie.status);
    assert.ok(lie.status === 413 || lie.status === 400, `Content-Length 1e20: ${lie.text.slice(0, 200)}`);
    // Just under the limit is fine.
    const big = `{"input":{"prompt":"${'y'.repeat(1000000)}"}}`;
    const ok = await gr.api('POST', RUN, big, { 'content-type': 'application/json' });
    count('huge', ok.status);
    assert.equal(ok.status, 202, ok.text.slice(0, 200));
    await alive();
  });

  test('invalid UTF-8, NaN and Infinity, numbers out of range', T, async () => {
    const bad = [
      [0xff], [0xfe], [0xc3, 0x28], [0xc0, 0xaf], [0xe0, 0x80, 0xaf], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80],
      [0xe2, 0x82], [0xf0, 0x9f, 0x98], [0x80], [0xbf], [0xc3], [0xef, 0xbf, 0xbf, 0xff],
    ];
    for (const seq of bad) {
      const b = Buffer.from(seq);
      await post('utf8', Buffer.concat([Buffer.from('{"input":{"prompt":"'), b, Buffer.from('"}}')]), 400, 'INVALID_REQUEST');
      await post('utf8', Buffer.concat([Buffer.from('{"input":{"'), b, Buffer.from('":1}}')]), 400, 'INVALID_REQUEST');
    }
    await post('utf8', Buffer.concat([Buffer.from('{"track_id":"'), Buffer.from([0xff]), Buffer.from('","input":{}}')]), 400, 'INVALID_REQUEST');
    for (const n of ['NaN', '-NaN', 'Infinity', '-Infinity', 'inf', '-inf', 'nan', '1e999', '-1e999', '1e400', '123456789012345678901234567890e999']) {
      await post('nan_inf', `{"input":{"seed":${n}}}`, 400, 'INVALID_REQUEST');
    }
    // In range but odd: accepted.
    for (const n of ['-0', '1e-400', '9223372036854775807', '1.7976931348623157e308', '5e-324']) {
      const r = await gr.api('POST', RUN, `{"input":{"seed":${n}}}`, { 'content-type': 'application/json' });
      count('nan_inf', r.status);
      assert.ok(r.status === 202 || r.status === 400, `${n}: ${r.status} ${r.text}`);
      if (r.status === 400) expectError(r, 400, 'INVALID_REQUEST', n);
    }
    // Big integers beyond int64.
    await post('nan_inf', '{"input":{"seed":92233720368547758070}}', 400, 'INVALID_REQUEST');
    await alive();
  });

  test('wrong types for every field, unknown and duplicate fields, empty bodies', T, async () => {
    const vals = { string: 's', number: 1, float: 1.5, true: true, false: false, null: null, array: [], object: {}, emptystring: '' };
    const allowed = {
      input: ['object'],
      webhook_url: ['null'], // a string is checked by the URL guard below
      track_id: ['null', 'string'],
      sync: ['true', 'false'],
    };
    for (const field of Object.keys(allowed)) {
      for (const [name, v] of Object.entries(vals)) {
        if (allowed[field].includes(name)) continue;
        if (field === 'webhook_url' && (name === 'string' || name === 'emptystring')) continue;
        const body = { input: { prompt: 'x' }, [field]: v };
        if (field === 'input') body.input = v;
        await post('wrong_type', body, 400, 'INVALID_REQUEST');
      }
    }
    for (const v of ['s', '', 'ftp://x', 'http://', 'not a url']) await post('wrong_type', { input: {}, webhook_url: v }, 400, 'INVALID_REQUEST');
    await post('wrong_type', { input: {}, track_id: 'x'.repeat(257) }, 400, 'INVALID_REQUEST');
    for (const v of [[], 's', 1, 1.5, true, false, null, [{ input: {} }]]) await post('wrong_type', v, 400, 'INVALID_REQUEST');
    for (const extra of ['foo', 'Input', 'INPUT', 'webhook', 'model', '__proto__', 'constructor', '', ' input', 'input ', 'in\u0000put']) {
      await post('unknown_field', `{"input":{},${JSON.stringify(extra)}:1}`, 400, 'INVALID_REQUEST');
    }
    for (const dup of ['{"input":{},"input":{}}', '{"input":{},"sync":true,"sync":false}', '{"track_id":"a","input":{},"track_id":"b"}']) {
      await post('duplicate_field', dup, 400, 'INVALID_REQUEST');
    }
    for (const b of ['', ' ', '\n', '\r\n\r\n', '{}', 'null', '""', '0', '[]']) await post('empty', b, 400, 'INVALID_REQUEST');
    // Empty body with no Content-Type and no Content-Length.
    const r = await gr.api('POST', RUN, undefined);
    count('empty', r.status);
    expectError(r, 400, 'INVALID_REQUEST', 'no body');
    // Idempotency-Key out of bounds.
    await post('headers', { input: {} }, 400, 'INVALID_REQUEST', { 'idempotency-key': 'k'.repeat(256) });
    await alive();
  });

  test('random and mutated bodies (seeded): never a 500', T, async () => {
    const rnd = prng(6);
    const base = Buffer.from(JSON.stringify({ input: { prompt: 'mutate me', n: 2, list: [1, 'two', { three: 3 }] }, track_id: 'trk', sync: false }));
    let accepted = 0;
    for (let i = 0; i < 300; i++) {
      let b;
      if (i < 100) {
        b = Buffer.alloc(1 + Math.floor(rnd() * 200));
        for (let k = 0; k < b.length; k++) b[k] = Math.floor(rnd() * 256);
      } else {
        b = Buffer.from(base);
        const flips = 1 + Math.floor(rnd() * 4);
        for (let f = 0; f < flips; f++) b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256);
      }
      const r = await gr.api('POST', RUN, b, { 'content-type': 'application/json' });
      count('random', r.status);
      if (r.status === 202) {
        accepted++;
        continue;
      }
      assert.ok([400, 404].includes(r.status), `input ${i} (${b.toString('hex').slice(0, 80)}): ${r.status} ${r.text}`);
      expectError(r, r.status, r.status === 400 ? 'INVALID_REQUEST' : 'MODEL_NOT_FOUND', `random ${i}`);
    }
    assert.ok(accepted < 300);
    await alive();
  });

  test('oversized headers and URLs, malformed HTTP: a 4xx or a closed connection, never a 500', T, async () => {
    const port = gr.port;
    const auth = `Authorization: Bearer ${h.ACME.api_key}\r\n`;
    const cases = [
      ['one 70 KB header', `GET /v1/jobs HTTP/1.1\r\nHost: x\r\n${auth}X-Big: ${'a'.repeat(70000)}\r\n\r\n`],
      ['2,000 headers', `GET /v1/jobs HTTP/1.1\r\nHost: x\r\n${auth}${Array.from({ length: 2000 }, (_, i) => `X-H${i}: v\r\n`).join('')}\r\n`],
      ['100 KB URL', `GET /v1/jobs/${'a'.repeat(100000)} HTTP/1.1\r\nHost: x\r\n${auth}\r\n`],
      ['60 KB URL', `GET /v1/jobs/${'a'.repeat(60000)} HTTP/1.1\r\nHost: x\r\n${auth}\r\n`],
      ['8 KB query', `GET /v1/jobs?status=${'q'.repeat(8000)} HTTP/1.1\r\nHost: x\r\n${auth}\r\n`],
      ['70 KB Authorization', `GET /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${'k'.repeat(70000)}\r\n\r\n`],
      ['garbage line', 'GARBAGE\r\n\r\n'],
      ['binary', '\x00\x01\x02\x03\xff\xfe\r\n\r\n'],
      ['HTTP/9.9', `GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n`],
      ['no version', `GET /healthz\r\n\r\n`],
      ['lower-case method', `get /healthz HTTP/1.1\r\nHost: x\r\n\r\n`],
      ['unknown method', `BREW /healthz HTTP/1.1\r\nHost: x\r\n\r\n`],
      ['header without colon', `GET /healthz HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n`],
      ['header with NUL', `GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n`],
      ['bare LF', `GET /healthz HTTP/1.1\nHost: x\n\n`],
      ['negative Content-Length', `POST ${RUN} HTTP/1.1\r\nHost: x\r\n${auth}Content-Length: -5\r\n\r\n{}`],
      ['two Content-Lengths', `POST ${RUN} HTTP/1.1\r\nHost: x\r\n${auth}Content-Length: 2\r\nContent-Length: 30\r\n\r\n{}`],
      ['CL and chunked', `POST ${RUN} HTTP/1.1\r\nHost: x\r\n${auth}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`],
      ['bad chunk size', `POST ${RUN} HTTP/1.1\r\nHost: x\r\n${auth}Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n`],
      ['huge chunk size', `POST ${RUN} HTTP/1.1\r\nHost: x\r\n${auth}Transfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nabc\r\n0\r\n\r\n`],
      ['Idempotency-Key with control byte', `POST ${RUN} HTTP/1.1\r\nHost: x\r\n${auth}Idempotency-Key: a\x01b\r\nContent-Length: 12\r\n\r\n{"input":{}}`],
      ['absolute URI', `GET http://evil.example/v1/jobs HTTP/1.1\r\nHost: x\r\n${auth}\r\n`],
      ['asterisk', `OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n`],
      ['percent NUL in path', `GET /v1/jobs/job_%00 HTTP/1.1\r\nHost: x\r\n${auth}\r\n`],
      ['bad percent in path', `GET /v1/jobs/%zz%4 HTTP/1.1\r\nHost: x\r\n${auth}\r\n`],
    ];
    const seen = {};
    for (const [name, bytes] of cases) {
      const r = await raw(port, bytes);
      count('http', r.status === null ? 'closed' : r.status);
      seen[name] = r.status;
      assert.notEqual(r.status, 500, `${name}: ${r.text.slice(0, 300)}`);
      assert.ok(r.status === null || (r.status >= 400 && r.status < 600) || r.status === 200 || r.status === 404, `${name}: ${r.text.slice(0, 200)}`);
      if (r.status !== null && r.status >= 500) assert.ok([501, 505].includes(r.status), `${name}: ${r.status}`);
      // Refusals made by genrelay carry the JSON error shape.
      const body = r.text.split('\r\n\r\n').slice(1).join('\r\n\r\n');
      if (r.status >= 400 && /application\/json/i.test(r.text.split('\r\n\r\n')[0])) assert.match(body, /"error":\{"code":"[A-Z_]+"/, name);
    }
    for (const name of ['one 70 KB header', '2,000 headers', '100 KB URL', '70 KB Authorization']) {
      assert.ok(seen[name] === null || [400, 413, 414, 431].includes(seen[name]), `${name}: ${seen[name]}`);
    }
    await alive();
  });

  test('path traversal and junk in ids: the documented 404s, nothing outside the id space is touched', T, async () => {
    const ids = [
      '..', '.', '../etc/passwd', '..%2F..%2Fetc%2Fpasswd', '%2e%2e', '%2e%2e%2f%2e%2e%2fetc', 'job_%00', 'job_..', "job_'OR'1'='1", 'job_"', 'job_%3Cscript%3E',
      'job_%E2%80%AE', 'job_%FF', 'a'.repeat(65), 'a'.repeat(2000), 'job_%20x', '%20', 'job_\\..\\x', '*', 'job_*', 'job_%25',
    ];
    const expectFor = (seg, rs) => rs.status === 404 && rs.body && rs.body.error;
    for (const id of ids) {
      for (const [m, p, codes] of [
        ['GET', `/v1/jobs/${id}`, ['JOB_NOT_FOUND', 'NOT_FOUND']],
        ['DELETE', `/v1/jobs/${id}`, ['JOB_NOT_FOUND', 'NOT_FOUND']],
        ['GET', `/v1/jobs/${id}/deliveries`, ['JOB_NOT_FOUND', 'NOT_FOUND']],
        ['GET', `/v1/jobs/${id}/events`, ['JOB_NOT_FOUND', 'NOT_FOUND']],
        ['POST', `/v1/deliveries/${id}/retry`, ['DELIVERY_NOT_FOUND', 'NOT_FOUND']],
      ]) {
        const r = await gr.api(m, p);
        count('traversal', r.status);
        assert.ok(expectFor(id, r), `${m} ${p}: ${r.status} ${r.text}`);
        assert.ok(codes.includes(r.body.error.code), `${m} ${p}: ${r.body.error.code}`);
      }
    }
    // Query parameters.
    for (const q of ['limit=abc', 'limit=0', 'limit=101', 'limit=-1', 'limit=1e3', 'limit=', 'status=bogus', 'status=', 'cursor=../x', 'cursor=%00', `cursor=${'c'.repeat(100)}`]) {
      const r = await gr.api('GET', `/v1/jobs?${q}`);
      count('query', r.status);
      expectError(r, 400, 'INVALID_REQUEST', q);
    }
    const live = await gr.api('POST', RUN, { input: { prompt: 'waiter', sim: { delay_ms: 60000 } } });
    assert.equal(live.status, 202);
    for (const w of ['abc', '-1', 'NaN', 'nan', '1x', '']) {
      const r = await gr.api('GET', `/v1/jobs/${live.body.job_id}?wait=${w}`);
      count('query', r.status);
      if (w === '') assert.ok(r.status === 200 || r.status === 400, `wait=: ${r.status}`);
      else expectError(r, 400, 'INVALID_REQUEST', `wait=${w}`);
    }
    // Another customer's job is not found, not forbidden.
    const other = await gr.as(h.GLOBEX.api_key)('GET', `/v1/jobs/${live.body.job_id}`);
    count('traversal', other.status);
    expectError(other, 404, 'JOB_NOT_FOUND', 'another customer');
    // Model ids that climb out of the provider's API path (or add a query)
    // are refused: no request carrying a provider's key reaches provsim
    // outside that provider's surface.
    const before = (await sim.requests()).length;
    const acceptedModels = [];
    for (const m of [
      'fal:../krea/generate/image/bfl/flux-1-dev', 'fal:fal-ai/../../krea/jobs', 'fal:./../krea/jobs', 'krea:../../fal/fal-ai/flux/dev',
      'modelslab:../../../../fal/fal-ai/flux/dev', 'fal:x?fal_webhook=http://127.0.0.1:9/evil', 'fal:x#frag', 'fal:x\\..\\..\\krea', 'fal:%2e%2e/krea/jobs',
    ]) {
      // Percent-encoded, so no URL parser on the way normalises the dot
      // segments; genrelay's HTTP server decodes the path.
      const r = await gr.api('POST', `/v1/models/${encodeURIComponent(m)}/run`, { input: { prompt: 'traverse' } });
      count('traversal', r.status);
      if (!(r.status === 404 || r.status === 400)) acceptedModels.push(`${m} -> ${r.status}`);
    }
    await h.sleep(1500);
    const keyOf = { fal: 'Key fal-test-key', krea: 'Bearer krea-test-key' };
    const reqs = (await sim.requests()).slice(before);
    const escaped = reqs.filter((x) => Object.entries(keyOf).some(([p, k]) => x.headers.authorization === k && x.provider !== p));
    const injected = reqs.filter((x) => x.query && typeof x.query.fal_webhook === 'string' && x.query.fal_webhook.includes('/evil'));
    assert.deepEqual(
      { accepted: acceptedModels, escaped: escaped.map((x) => `${x.method} ${x.path} (${x.headers.authorization})`), injected: injected.map((x) => `${x.method} ${x.path}?fal_webhook=${x.query.fal_webhook}`) },
      { accepted: [], escaped: [], injected: [] },
      'model ids are passed into provider URLs unchecked: dot segments leave the provider path (with its key), "?" adds query parameters',
    );
    // Auth edge cases.
    for (const a of [null, '', 'Bearer', 'Bearer ', 'Bearer wrong', 'Basic YWNtZTphY21l', `Bearer ${'k'.repeat(8000)}`, `bearer ${h.ACME.api_key}x`, `Bearer  ${h.ACME.api_key}`]) {
      const r = await gr.api('GET', '/v1/jobs', undefined, { authorization: a });
      count('auth', r.status);
      expectError(r, 401, 'UNAUTHORIZED', `Authorization ${String(a).slice(0, 20)}`);
    }
    for (const [m, p] of [['PUT', '/v1/jobs'], ['POST', '/v1/jobs'], ['DELETE', '/v1/models'], ['GET', `/v1/deliveries/x/retry`], ['PATCH', `/v1/jobs/${live.body.job_id}`]]) {
      const r = await gr.api(m, p);
      count('method', r.status);
      expectError(r, 405, 'METHOD_NOT_ALLOWED', `${m} ${p}`);
    }
    await alive();
  });

  test('callbacks: wrong token, bad, malformed or stale fal signatures, a signature replayed for another job: refused, job untouched', T, async () => {
    // Two fal jobs whose provider side runs a long time, so only our callbacks land.
    const submit = async (tag) => {
      const r = await gr.api('POST', RUN, { input: { prompt: tag, sim: { delay_ms: 120000, callback: 'none' } } });
      assert.equal(r.status, 202, r.text);
      const id = r.body.job_id;
      const j = await h.waitFor(async () => {
        const g = await gr.api('GET', `/v1/jobs/${id}`);
        return g.body.request_id && g.body;
      }, 20000, { what: `${tag} submitted to fal` });
      const sub = (await sim.requests('fal')).find((x) => x.method === 'POST' && x.query.fal_webhook && x.query.fal_webhook.includes(`/${id}/`));
      return { id, rid: j.request_id, url: new URL(sub.query.fal_webhook) };
    };
    const j1 = await submit('cb-1');
    const j2 = await submit('cb-2');
    const cbPath = (j) => j.url.pathname;
    const body = (rid, status = 'OK') =>
      JSON.stringify({ request_id: rid, gateway_request_id: rid, status, payload: { images: [{ url: `${sim.url}/files/forged.png`, content_type: 'image/png' }] } });
    const sign = (rid, ts, b, priv = key.privateKey) => {
      const msg = `${rid}\nprovsim-user\n${ts}\n${crypto.createHash('sha256').update(b).digest('hex')}`;
      return crypto.sign(null, Buffer.from(msg), priv).toString('hex');
    };
    const headers = (rid, ts, sig) => ({
      'x-fal-webhook-request-id': rid,
      'x-fal-webhook-user-id': 'provsim-user',
      'x-fal-webhook-timestamp': String(ts),
      'x-fal-webhook-signature': sig,
    });
    const now = () => Math.floor(Date.now() / 1000);
    const cb = async (area, p, b, hd, status, code) => {
      const r = await h.request(gr.url + p, { method: 'POST', body: b, headers: { 'content-type': 'application/json', ...hd } });
      count(area, r.status);
      if (code) expectError(r, status, code, `${area} ${p}`);
      else assert.equal(r.status, status, `${area}: ${r.status} ${r.text}`);
      return r;
    };
    const untouched = async (j) => {
      const g = await gr.api('GET', `/v1/jobs/${j.id}`);
      assert.equal(g.body.status, 'processing', `job ${j.id} untouched: ${g.text}`);
      assert.equal(g.body.output, null);
    };
    const b1 = body(j1.rid);
    const good1 = headers(j1.rid, now(), sign(j1.rid, now(), b1));
    const tok = cbPath(j1).split('/').pop();
    const flipped = tok.slice(0, -1) + (tok.slice(-1) === '0' ? '1' : '0');
    // Wrong, missing, truncated, other job's tokens.
    for (const p of [
      cbPath(j1).replace(/[^/]+$/, flipped),
      cbPath(j1).replace(/[^/]+$/, 'x'),
      cbPath(j1).replace(/[^/]+$/, tok.slice(0, 16)),
      cbPath(j1).replace(/[^/]+$/, tok + 'a'),
      cbPath(j1).replace(/[^/]+$/, cbPath(j2).split('/').pop()),
      cbPath(j1).replace(/[^/]+$/, tok.toUpperCase() === tok ? tok.toLowerCase() : tok.toUpperCase()),
    ]) {
      await cb('callback_token', p, b1, good1, 401, 'UNAUTHORIZED');
    }
    await cb('callback_token', cbPath(j1).replace(/\/[^/]+$/, ''), b1, good1, 404, 'NOT_FOUND');
    // Right token, bad signatures.
    const ts = now();
    const badSigs = [
      ['random signature', headers(j1.rid, ts, crypto.randomBytes(64).toString('hex'))],
      ['signature by an unknown key', headers(j1.rid, ts, sign(j1.rid, ts, b1, crypto.generateKeyPairSync('ed25519').privateKey))],
      ['short signature', headers(j1.rid, ts, 'abcd')],
      ['non-hex signature', headers(j1.rid, ts, 'zz'.repeat(64))],
      ['empty signature', headers(j1.rid, ts, '')],
      ['stale timestamp (-10 min)', headers(j1.rid, ts - 600, sign(j1.rid, ts - 600, b1))],
      ['future timestamp (+10 min)', headers(j1.rid, ts + 600, sign(j1.rid, ts + 600, b1))],
      ['non-numeric timestamp', headers(j1.rid, 'soon', sign(j1.rid, 'soon', b1))],
      ['signed over another body', headers(j1.rid, ts, sign(j1.rid, ts, body(j1.rid, 'ERROR')))],
      ['request id header of another job', headers(j2.rid, ts, sign(j2.rid, ts, b1))],
      ['no signature headers', {}],
      ['signature of the user id changed', { ...headers(j1.rid, ts, sign(j1.rid, ts, b1)), 'x-fal-webhook-user-id': 'someone-else' }],
    ];
    for (const [, hd] of badSigs) await cb('callback_signature', cbPath(j1), b1, hd, 401, 'UNAUTHORIZED');
    await untouched(j1);
    // A valid callback of job 2 replayed to job 1's URL: refused.
    const b2 = body(j2.rid);
    const ts2 = now();
    const good2 = headers(j2.rid, ts2, sign(j2.rid, ts2, b2));
    await cb('callback_replay', cbPath(j1), b2, good2, 401, 'UNAUTHORIZED');
    await untouched(j1);
    // ...and to the right URL it applies; again there: acknowledged, nothing changes.
    const ok = await cb('callback_replay', cbPath(j2), b2, good2, 200);
    assert.equal(ok.body.status, 'applied', ok.text);
    const after2 = (await gr.api('GET', `/v1/jobs/${j2.id}`)).body;
    assert.equal(after2.status, 'succeeded');
    const ts3 = now();
    const fail2 = body(j2.rid, 'ERROR');
    const dup = await cb('callback_replay', cbPath(j2), fail2, headers(j2.rid, ts3, sign(j2.rid, ts3, fail2)), 200);
    assert.equal(dup.body.status, 'duplicate', dup.text);
    assert.deepEqual((await gr.api('GET', `/v1/jobs/${j2.id}`)).body, after2, 'a late callback never moves a terminal job');
    await untouched(j1);
    // The job-1 URL under another provider name, a provider that does not exist, traversal.
    for (const prov of ['krea', 'abstrakt', 'nosuch', '..', '.', '%2e%2e']) {
      const p = cbPath(j1).replace('/v1/callbacks/fal/', `/v1/callbacks/${prov}/`);
      const r = await h.request(gr.url + p, { method: 'POST', body: b1, headers: { 'content-type': 'application/json', ...good1 } });
      count('callback_provider', r.status);
      assert.ok(r.status === 404 || r.status === 401, `${prov}: ${r.status} ${r.text}`);
      expectError(r, r.status, r.status === 404 ? (r.body.error.code === 'NOT_FOUND' ? 'NOT_FOUND' : 'JOB_NOT_FOUND') : 'UNAUTHORIZED', prov);
    }
    // Garbage callback bodies with a valid token and signature: acknowledged or refused, never a crash; job stays sane.
    for (const gb of ['', 'null', '[]', '{"status":"OK"}', '{"request_id":1}', '{', '\u00ff\u00fe', JSON.stringify({ request_id: j1.rid, status: 'OK', payload: 'not an object' })]) {
      const t = now();
      const r = await h.request(gr.url + cbPath(j1), { method: 'POST', body: gb, headers: { 'content-type': 'application/json', ...headers(j1.rid, t, sign(j1.rid, t, gb)) } });
      count('callback_body', r.status);
      assert.ok([200, 400, 401].includes(r.status), `${JSON.stringify(gb)}: ${r.status} ${r.text}`);
    }
    const g1 = (await gr.api('GET', `/v1/jobs/${j1.id}`)).body;
    assert.ok(['processing', 'succeeded', 'failed'].includes(g1.status), JSON.stringify(g1));
    await alive();
  });
});
