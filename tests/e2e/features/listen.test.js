'use strict';
// `genrelay listen`: genrelay delivers to the inspector, which verifies the
// signature, prints the delivery and forwards it to a test app
// (examples/receiver.js, which verifies again), passing the app's answer
// back. A delivery signed with another secret is shown as failed, answered
// 401 and not forwarded; with --forward-unverified it is forwarded.

const assert = require('node:assert/strict');
const { describe, test, after } = require('node:test');
const h = require('../lib/harness');

async function startListen(args) {
  const p = await h.spawnAndWait(h.BIN, ['listen', '--port', '0', ...args], {
    re: /^genrelay listen: listening on (http:\/\/\S+)$/m,
  });
  return {
    child: p.child,
    url: p.match[1],
    log: p.log,
    // SIGTERM: listen exits 0 (checked), so the sanitizers' exit checks run.
    stop: async () => assert.equal((await h.stopChild(p.child)).code, 0),
  };
}

describe('genrelay listen', () => {
  const stack = h.useStack();
  const { waitTerminal } = h.jobHelpers(stack);
  let app;
  let listen;
  let loose;

  after(async () => {
    await Promise.all([app && app.stop(), listen && listen.stop(), loose && loose.stop()]);
    // Under make test-asan: a sanitizer report from listen fails the suite.
    for (const l of [listen, loose].filter(Boolean)) {
      await h.waitClosed(l.child);
      assert.equal(h.sanitizerReport(l.log()), null, 'genrelay listen printed a sanitizer report');
    }
  });

  async function submit(api, url, prompt) {
    const r = await api('POST', '/v1/models/fal-ai/flux/dev/run', { input: { prompt }, webhook_url: url });
    assert.equal(r.status, 202, r.text);
    return r.body.job_id;
  }

  async function deliveries(id, api = stack.api) {
    const r = await api('GET', `/v1/jobs/${id}/deliveries`);
    assert.equal(r.status, 200, r.text);
    return r.body.data;
  }

  test('verifies, prints and forwards a delivery; the app answer goes back to genrelay', async () => {
    app = await h.startReceiver({ secret: h.ACME.webhook_secret });
    listen = await startListen(['--secret', h.ACME.webhook_secret, '--forward', `${app.url}/app/hook`]);
    assert.doesNotMatch(listen.log(), new RegExp(h.ACME.webhook_secret.slice(6)), 'the secret is never printed');

    const id = await submit(stack.api, `${listen.url}/hook`, 'listen ok');
    await waitTerminal(id);
    const got = await h.waitFor(async () => {
      const all = await app.forJob(id);
      return all.length && all;
    }, 20000, { what: `the app got ${id}` });
    assert.equal(got[0].verified, true, 'the forward keeps body and webhook-* headers: the app verifies it too');
    assert.equal(got[0].path, '/app/hook');
    const dl = await h.waitFor(async () => {
      const d = await deliveries(id);
      return d.length && d[0].status === 'delivered' && d;
    }, 20000, { what: 'delivered' });
    const msg = dl[0].delivery_id;
    const out = await h.waitFor(() => listen.log().includes(`[${msg}] forwarded`) && listen.log(), 5000, { what: 'listen output' });
    assert.match(out, new RegExp(`--> POST /hook  ${msg}`));
    assert.match(out, new RegExp(`\\[${msg}\\] signature valid`));
    assert.match(out, new RegExp(`\\[${msg}\\] forwarded to ${app.url}/app/hook: 200`));
    assert.match(out, new RegExp(`\\n +"job_id": "${id}"`), 'the JSON body is pretty-printed');

    // The app's failure is genrelay's: 500 comes back and the delivery is retried.
    await app.fail(1, 500, '/app');
    const id2 = await submit(stack.api, `${listen.url}/hook`, 'listen retry');
    const dl2 = await h.waitFor(async () => {
      const d = await deliveries(id2);
      return d.length && d[0].status === 'delivered' && d;
    }, 20000, { what: 'delivered after a retry' });
    assert.deepEqual(dl2[0].attempts.map((a) => a.status_code), [500, 200]);
    assert.match(listen.log(), new RegExp(`\\[${dl2[0].delivery_id}\\] forwarded to \\S+: 500`));
  });

  test('a delivery signed with another secret is shown as failed, answered 401 and not forwarded', async () => {
    // globex's deliveries are signed with globex's secret, not the one listen checks.
    const globex = stack.gr.as(h.GLOBEX.api_key);
    const id = await submit(globex, `${listen.url}/hook`, 'listen bad signature');
    const dl = await h.waitFor(async () => {
      const d = await deliveries(id, globex);
      return d.length && d[0].attempts.length >= 1 && d;
    }, 20000, { what: 'an attempt' });
    const msg = dl[0].delivery_id;
    assert.equal(dl[0].attempts[0].status_code, 401);
    const out = await h.waitFor(() => listen.log().includes(`[${msg}] not forwarded`) && listen.log(), 5000, { what: 'listen output' });
    assert.match(out, new RegExp(`\\[${msg}\\] signature INVALID: no v1 signature matches`));
    assert.equal((await app.forJob(id)).length, 0, 'the app never saw it');

    // --forward-unverified forwards it anyway (to exercise the app's own check).
    loose = await startListen(['--secret', h.ACME.webhook_secret, '--forward', `${app.url}/loose`, '--forward-unverified']);
    const id2 = await submit(globex, `${loose.url}/hook`, 'listen forwarded unverified');
    const seen = await h.waitFor(async () => {
      const all = await app.forJob(id2);
      return all.length && all;
    }, 20000, { what: `the app got ${id2}` });
    assert.equal(seen[0].verified, false, "the app's own check refuses it");
    assert.match(loose.log(), /signature INVALID/);
  });

  test('usage errors exit 2 without listening', async () => {
    const { spawnSync } = require('node:child_process');
    const r = spawnSync(h.BIN, ['listen', '--secret', 'whsec_!!!'], { encoding: 'utf8', timeout: 10000 });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--secret is not whsec_/);
    const r2 = spawnSync(h.BIN, ['listen', '--forward', 'ftp://x'], { encoding: 'utf8', timeout: 10000 });
    assert.equal(r2.status, 2);
  });
});
