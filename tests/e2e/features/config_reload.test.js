'use strict';
// Config reload without a restart: SIGHUP (and `genrelay reload`) re-reads
// the config file; a new customer, a removed one and changed limits take
// effect at once; a broken config changes nothing and the reason is logged;
// restart-only settings keep their values (logged); jobs in flight finish
// across reloads, their webhooks delivered.

const { describe, test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { execFile } = require('node:child_process');
const h = require('../lib/harness');

const T = { timeout: 90000 };
const INITECH = { api_key: 'initech-reload-key-0123456789', webhook_secret: h.ACME.webhook_secret };

function run(args) {
  return new Promise((resolve) => {
    execFile(h.BIN, args, { timeout: 30000, cwd: '/' }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

describe('config reload', () => {
  const stack = h.useStack();
  const { waitTerminal, waitDelivered } = h.jobHelpers(stack);
  const count = (re) => (stack.gr.log().match(re) || []).length;
  const statusWith = async (key) => (await stack.gr.as(key)('GET', '/v1/jobs?limit=1')).status;

  // Writes the config (the running one changed by fn) and reloads; resolves
  // once the log says the reload was applied (or refused: `expect`).
  async function reload(text, { expect = /reload: configuration applied/g, viaCli = false } = {}) {
    fs.writeFileSync(stack.gr.configPath, text);
    const before = count(expect);
    if (viaCli) {
      const isPg = String(stack.gr.dbPath).startsWith('postgres');
      const r = await run(['reload', '--config', stack.gr.configPath, ...(isPg ? ['--pid', String(stack.gr.child.pid)] : [])]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /sent SIGHUP/);
    } else {
      process.kill(stack.gr.child.pid, 'SIGHUP');
    }
    await h.waitFor(() => count(expect) > before, 15000, { what: `log ${expect}` });
  }
  const withConfig = (fn) => {
    const c = JSON.parse(JSON.stringify(stack.gr.config));
    fn(c);
    return h.renderConfig(c);
  };

  test('a new customer and its rate limit take effect; jobs in flight finish', T, async () => {
    assert.equal(await statusWith(INITECH.api_key), 401);
    const slow = await stack.api('POST', '/v1/models/fal-ai/flux/dev/run',
      { input: { prompt: 'across reloads', sim: { delay_ms: 1500 } }, webhook_url: stack.receiver.url + '/inflight' });
    assert.equal(slow.status, 202, slow.text);

    await reload(withConfig((c) => { c.customers.initech = { ...INITECH, rate: { per_s: 0.01, burst: 2 } }; }));
    // The workers take the new generation at their next loop iteration.
    await h.waitFor(async () => (await statusWith(INITECH.api_key)) !== 401, 10000, { what: 'initech accepted' });
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push(await statusWith(INITECH.api_key));
    assert.ok(statuses.includes(429), `over the new rate: ${statuses}`);
    assert.equal(await statusWith(h.ACME.api_key), 200);

    const done = await waitTerminal(slow.body.job_id);
    assert.equal(done.status, 'succeeded');
    const got = await waitDelivered(slow.body.job_id);
    assert.ok(got.some((d) => d.verified === true));
  });

  test('genrelay reload: a changed rate and a removed customer', T, async () => {
    await reload(withConfig((c) => {
      c.customers.initech = { ...INITECH, rate: { per_s: 1000, burst: 1000 } };
      delete c.customers.globex;
    }), { viaCli: true });
    await h.waitFor(async () => (await statusWith(h.GLOBEX.api_key)) === 401, 10000, { what: 'globex removed' });
    for (let i = 0; i < 6; i++) assert.equal(await statusWith(INITECH.api_key), 200);
  });

  test('a broken config changes nothing and the reason is logged', T, async () => {
    const expect = /reload: [^\n]*the configuration in use is unchanged/g;
    await reload('this is { not lua', { expect });
    assert.equal(await statusWith(INITECH.api_key), 200);
    assert.equal(await statusWith(h.ACME.api_key), 200);
    // A config that loads but names a missing hook is refused too.
    await reload(withConfig((c) => { c.customers.initech = { ...INITECH, hook: 'no_such_hook' }; delete c.customers.acme; }), { expect });
    assert.match(stack.gr.log(), /customers\.initech\.hook: no script hooks\/no_such_hook\.lua/);
    assert.equal(await statusWith(h.ACME.api_key), 200);
    // A bad value names its key.
    await reload(withConfig((c) => { c.jobs.job_deadline_s = 'soon'; }), { expect });
    assert.match(stack.gr.log(), /reload: [^\n]*job_deadline_s/);
    // Secrets never reach the log.
    assert.ok(!stack.gr.log().includes(INITECH.api_key));
  });

  test('restart-only settings keep their values and are named in the log', T, async () => {
    const port = await h.freePort();
    await reload(withConfig((c) => { c.listen = `127.0.0.1:${port}`; c.workers = 3; }));
    assert.match(stack.gr.log(), /reload: [^\n]*listen[^\n]*workers[^\n]*need a restart/);
    assert.equal(await statusWith(h.ACME.api_key), 200); // still on the old address
    const r = await run(['reload', '--config', '/nonexistent/genrelay.conf.lua']);
    assert.notEqual(r.code, 0);
  });
});
