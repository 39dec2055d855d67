'use strict';
// The fronts' synchronous answers past jobs.sync_wait_s: OpenAI's SDK gets a
// clear error with the job id to poll and does not submit the job again
// (x-should-retry: false, even with retries on); fal's sync protocol gets a
// 504 naming the status URL; the job itself goes on and ends.

const { describe, test } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const path = require('node:path');
const { createRequire } = require('node:module');
const h = require('../lib/harness');

let OpenAI = null;
try {
  OpenAI = createRequire(path.join(h.SRC, 'tests', 'clients', 'package.json'))('openai');
} catch (e) {
  OpenAI = null;
}

describe('fronts past the sync wait', { skip: OpenAI ? false : 'openai not installed: run `npm ci --prefix tests/clients`' }, () => {
  const stack = h.useStack({ config: { jobs: { sync_wait_s: 1 } } });
  const { waitTerminal } = h.jobHelpers(stack);
  const MODEL = 'fal-ai/flux/dev';
  const sent = async (prompt) => (await h.request(`${stack.sim.url}/_control/requests`)).body.filter((r) => r.provider === 'fal' && r.method === 'POST' && r.body && r.body.prompt === prompt);

  test('openai: 504 job_pending with the job id, not retried; the job ends', async () => {
    const client = new OpenAI({ apiKey: h.ACME.api_key, baseURL: `${stack.gr.url}/openai/v1`, maxRetries: 2 });
    const prompt = `slow ${crypto.randomUUID()}`;
    let jobId;
    await assert.rejects(client.images.generate({ model: MODEL, prompt, sim: { delay_ms: 3000 } }), (e) => {
      assert.ok(e instanceof OpenAI.APIError, String(e));
      assert.equal(e.status, 504);
      assert.equal(e.code, 'job_pending');
      assert.match(e.error.job_id, /^job_/);
      assert.match(e.message, /poll GET \/v1\/jobs\/job_/);
      jobId = e.error.job_id;
      return true;
    });
    assert.equal((await sent(prompt)).length, 1, 'the SDK did not submit it again');
    assert.equal((await waitTerminal(jobId)).status, 'succeeded');
  });

  test('fal sync: 504 with the status URL to poll', async () => {
    const prompt = `slow fal ${crypto.randomUUID()}`;
    const r = await h.request(`${stack.gr.url}/fal/run/${MODEL}`, {
      method: 'POST',
      headers: { authorization: `Key ${h.ACME.api_key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ prompt, sim: { delay_ms: 3000 } }),
    });
    assert.equal(r.status, 504, r.text);
    const id = r.headers['x-fal-request-id'];
    assert.match(id, /^job_/);
    assert.ok(r.body.detail.includes(`${stack.gr.url}/fal/queue/fal-ai/flux/requests/${id}/status`), r.text);
    const st = await h.waitFor(async () => {
      const s = await h.request(`${stack.gr.url}/fal/queue/fal-ai/flux/requests/${id}/status`, { headers: { authorization: `Key ${h.ACME.api_key}` } });
      return s.body.status === 'COMPLETED' && s;
    }, 15000, { what: 'COMPLETED', interval: 100 });
    assert.equal(st.status, 200);
  });
});
