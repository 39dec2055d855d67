'use strict';
// `genrelay jobs ...` and `genrelay deliveries ...` against a running
// genrelay: list, show and cancel jobs; list dead deliveries and retry them
// all, with progress; refusals with a wrong or missing admin key.

const { describe, test } = require('node:test');
const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const h = require('../lib/harness');

const ADMIN = 'admin-key-0123456789abcdef';
const T = { timeout: 90000 };

function run(args, env = {}) {
  return new Promise((resolve) => {
    const e = { ...process.env, ...env };
    delete e.GENRELAY_ADMIN_KEY;
    Object.assign(e, env);
    execFile(h.BIN, args, { env: e, timeout: 30000, cwd: '/' }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

describe('admin CLI', () => {
  const stack = h.useStack({ config: { admin_key: ADMIN } });
  const { waitTerminal } = h.jobHelpers(stack);
  const cli = (...args) => run([...args, '--url', stack.gr.url, '--admin-key', ADMIN]);

  async function submit(input, extra = {}) {
    const r = await stack.api('POST', '/v1/models/fal-ai/flux/dev/run', { input, ...extra });
    assert.equal(r.status, 202, r.text);
    return r.body.job_id;
  }

  test('jobs list, show and cancel', T, async () => {
    const done = await submit({ prompt: 'cli done', sim: { delay_ms: 50 } }, { track_id: 'cli-track' });
    await waitTerminal(done);
    const slow = await submit({ prompt: 'cli slow', sim: { delay_ms: 20000 } });

    const list = await cli('jobs', 'list', '--customer', 'acme');
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /^JOB\s+CUSTOMER\s+PROVIDER\s+STATE/);
    assert.ok(list.stdout.includes(done) && list.stdout.includes(slow), list.stdout);
    const byTrack = await cli('jobs', 'list', '--search', 'cli-track', '--json');
    assert.equal(byTrack.code, 0, byTrack.stderr);
    assert.deepEqual(JSON.parse(byTrack.stdout).data.map((j) => j.job_id), [done]);
    const none = await cli('jobs', 'list', '--customer', 'globex', '--json');
    assert.equal(JSON.parse(none.stdout).data.length, 0);

    const show = await cli('jobs', 'show', done);
    assert.equal(show.code, 0, show.stderr);
    assert.match(show.stdout, new RegExp(`^job\\s+${done}$`, 'm'));
    assert.match(show.stdout, /^state\s+succeeded$/m);
    assert.match(show.stdout, /submitted/);

    const cancel = await cli('jobs', 'cancel', slow);
    assert.equal(cancel.code, 0, cancel.stderr);
    assert.equal(cancel.stdout.trim(), `${slow} canceled`);
    const j = await stack.api('GET', `/v1/jobs/${slow}`);
    assert.equal(j.body.status, 'canceled');
    assert.equal(j.body.error.message, 'canceled by an operator');

    const missing = await cli('jobs', 'show', 'job_nope');
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /HTTP 404: no such job/);
  });

  test('deliveries list and retry --all, with progress', T, async () => {
    const path = `/cli-dead/${Date.now()}`;
    await stack.receiver.fail(8, 500, path);
    const ids = [];
    for (let i = 0; i < 2; i++) ids.push(await submit({ prompt: `cli dead ${i}`, sim: { delay_ms: 20 } }, { webhook_url: stack.receiver.url + path }));
    await h.waitFor(async () => {
      for (const id of ids) {
        const d = await stack.api('GET', `/v1/jobs/${id}/deliveries`);
        if (!d.body.data.length || d.body.data[0].status !== 'dead') return false;
      }
      return true;
    }, 30000, { what: 'both deliveries dead', interval: 100 });

    const list = await cli('deliveries', 'list', '--state', 'dead', '--customer', 'acme');
    assert.equal(list.code, 0, list.stderr);
    for (const id of ids) assert.ok(list.stdout.includes(id), list.stdout);
    assert.match(list.stdout, /HTTP 500/);

    const retry = await cli('deliveries', 'retry', '--all', '--state', 'dead', '--customer', 'acme');
    assert.equal(retry.code, 0, retry.stderr);
    assert.match(retry.stderr, /retried 2\/2/);
    assert.equal(retry.stdout.trim(), '2 retried, 0 failed');
    for (const id of ids) {
      await h.waitFor(async () => (await stack.receiver.forJob(id)).some((x) => x.answered === 200 && x.verified),
        15000, { what: `redelivery of ${id}` });
    }
    const after = await cli('deliveries', 'list', '--json');
    assert.equal(JSON.parse(after.stdout).data.filter((d) => ids.includes(d.job_id)).length, 0);
  });

  test('a wrong or missing admin key is refused', T, async () => {
    const wrong = await run(['jobs', 'list', '--url', stack.gr.url, '--admin-key', 'not-the-admin-key']);
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /HTTP 401/);
    assert.ok(!wrong.stderr.includes('not-the-admin-key'));
    const missing = await run(['jobs', 'list', '--url', stack.gr.url]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /no admin key/);
    const byEnv = await run(['deliveries', 'list', '--url', stack.gr.url], { GENRELAY_ADMIN_KEY: ADMIN });
    assert.equal(byEnv.code, 0, byEnv.stderr);
    const usage = await run(['jobs', 'frobnicate']);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /usage: genrelay jobs list/);
  });
});
