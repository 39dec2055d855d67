'use strict';
// examples/receiver.js on its own: Standard Webhooks verification and the
// fail/hang controls the e2e tests rely on.

const { describe, test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const h = require('../lib/harness');
const { verifyStandardWebhook, secretKey } = require('../../../examples/receiver');

const SECRET = h.ACME.webhook_secret;

function signed(body, { id = `msg_${crypto.randomBytes(6).toString('hex')}`, ts = Math.floor(Date.now() / 1000), secret = SECRET } = {}) {
  const text = JSON.stringify(body);
  const sig = crypto.createHmac('sha256', secretKey(secret)).update(`${id}.${ts}.${text}`).digest('base64');
  return { text, headers: { 'content-type': 'application/json', 'webhook-id': id, 'webhook-timestamp': String(ts), 'webhook-signature': `v1,${sig}` } };
}

describe('example receiver', () => {
  let rcv;
  before(async () => {
    rcv = await h.startReceiver({ secret: SECRET });
  });
  after(async () => {
    if (rcv) await rcv.stop();
  });
  const post = (p, s) => h.request(rcv.url + p, { method: 'POST', body: s.text, headers: s.headers });

  test('verifyStandardWebhook: the spec example secret form, tolerance, rotation', () => {
    const s = signed({ a: 1 }, { id: 'msg_1', ts: 1700000000 });
    const key = secretKey(SECRET);
    assert.equal(key.length, 24);
    assert.equal(verifyStandardWebhook(s.headers, Buffer.from(s.text), key, 1700000000).ok, true);
    assert.equal(verifyStandardWebhook(s.headers, Buffer.from(s.text), key, 1700000000 + 299).ok, true);
    assert.equal(verifyStandardWebhook(s.headers, Buffer.from(s.text), key, 1700000000 + 301).ok, false);
    assert.equal(verifyStandardWebhook(s.headers, Buffer.from(s.text + ' '), key, 1700000000).ok, false);
    assert.equal(verifyStandardWebhook({ ...s.headers, 'webhook-id': 'msg_2' }, Buffer.from(s.text), key, 1700000000).ok, false);
    const rotated = { ...s.headers, 'webhook-signature': `v1,${Buffer.alloc(32).toString('base64')} ${s.headers['webhook-signature']}` };
    assert.equal(verifyStandardWebhook(rotated, Buffer.from(s.text), key, 1700000000).ok, true);
    assert.equal(verifyStandardWebhook({ ...s.headers, 'webhook-signature': s.headers['webhook-signature'].replace('v1,', 'v2,') }, Buffer.from(s.text), key, 1700000000).ok, false);
  });

  test('records verified deliveries (200) and refuses bad ones (401)', async () => {
    const good = signed({ job_id: 'job_r1' });
    assert.equal((await post('/hooks/a?x=1', good)).status, 200);
    const forged = signed({ job_id: 'job_r2' }, { secret: 'whsec_' + Buffer.from('another key').toString('base64') });
    assert.equal((await post('/hooks/a', forged)).status, 401);
    const stale = signed({ job_id: 'job_r3' }, { ts: Math.floor(Date.now() / 1000) - 600 });
    assert.equal((await post('/hooks/a', stale)).status, 401);
    assert.equal((await post('/hooks/a', good)).status, 200);

    const all = await rcv.received();
    const r1 = all.filter((d) => d.body.job_id === 'job_r1');
    assert.equal(r1.length, 2);
    assert.equal(r1[0].verified, true);
    assert.equal(r1[0].path, '/hooks/a?x=1');
    assert.equal(r1[0].duplicate, false);
    assert.equal(r1[1].duplicate, true, 'same webhook-id again');
    assert.equal(r1[0].id, good.headers['webhook-id']);
    assert.equal(r1[0].timestamp, good.headers['webhook-timestamp']);
    assert.equal(all.find((d) => d.body.job_id === 'job_r2').verified, false);
    assert.equal(all.find((d) => d.body.job_id === 'job_r3').verified, false);
    assert.deepEqual((await rcv.forJob('job_r1')).length, 2);
  });

  test('fail: the next N deliveries (optionally under a path) answer the status', async () => {
    await rcv.fail(2, 503, '/only/here');
    assert.equal((await post('/elsewhere', signed({ n: 0 }))).status, 200, 'other paths unaffected');
    assert.equal((await post('/only/here/1', signed({ n: 1 }))).status, 503);
    assert.equal((await post('/only/here/2', signed({ n: 2 }))).status, 503);
    assert.equal((await post('/only/here/3', signed({ n: 3 }))).status, 200);
    const got = (await rcv.forPath('/only/here')).map((d) => d.answered);
    assert.deepEqual(got, [503, 503, 200]);
  });

  test('hang: the next delivery gets no answer', async () => {
    await rcv.hang(1);
    await assert.rejects(h.request(rcv.url + '/hang', { method: 'POST', body: '{}', timeoutMs: 700 }), /timed out/);
    assert.equal((await post('/after-hang', signed({}))).status, 200);
  });

  test('reset forgets deliveries', async () => {
    await rcv.reset();
    assert.equal((await rcv.received()).length, 0);
  });
});
