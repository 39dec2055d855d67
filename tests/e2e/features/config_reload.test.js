'use strict';
// Config reload without a restart: SIGHUP (and `genrelay reload`) re-reads
// the config file; a new customer, a removed one and changed limits take
// effect at once; a broken config changes nothing and the reason is logged;
// restart-only settings keep their values (logged); jobs in flight finish
// across reloads, their webhooks delivered. Reloads are counted on /metrics
// (applied, refused, the time of the last applied one); old configuration
// generations are freed once no request that arrived under them (or under
// an older one) is alive: genrelay_config_generations stays bounded over 50
// reloads with jobs flowing (run it under ASan: no use-after-free).

const { describe, test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
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

// Reload helpers over a stack (its fields are filled in once `before` ran).
function reloading(stack) {
  const count = (re) => (stack.gr.log().match(re) || []).length;
  const statusWith = async (key) => (await stack.gr.as(key)('GET', '/v1/jobs?limit=1')).status;

  // Writes the config and reloads; resolves once /metrics counts the reload
  // as applied (or, with `expect`, a regex of the log line that says why,
  // as refused, and that line is in the log). The counter, not the log
  // (whose kept tail is bounded), says when each of many reloads is done.
  async function reload(text, { expect = null, viaCli = false } = {}) {
    fs.writeFileSync(stack.gr.configPath, text);
    const counter = `genrelay_config_reloads_total{result="${expect ? 'refused' : 'applied'}"}`;
    const before = (await scrape())[counter];
    const logged = expect ? count(expect) : 0;
    if (viaCli) {
      const isPg = String(stack.gr.dbPath).startsWith('postgres');
      const r = await run(['reload', '--config', stack.gr.configPath, ...(isPg ? ['--pid', String(stack.gr.child.pid)] : [])]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /sent SIGHUP/);
    } else {
      process.kill(stack.gr.child.pid, 'SIGHUP');
    }
    await h.waitFor(async () => (await scrape())[counter] > before, 15000, { what: counter });
    if (expect) await h.waitFor(() => count(expect) > logged, 15000, { what: `log ${expect}` });
  }
  // The metrics that are plain numbers (and the labelled reload counter),
  // from one scrape: {'name' or 'name{labels}': value}.
  async function scrape() {
    const r = await stack.gr.admin('GET', '/metrics');
    assert.equal(r.status, 200, r.text);
    const out = {};
    for (const m of r.text.matchAll(/^(genrelay_config_[a-z_]+(?:\{[^}]*\})?) (\S+)$/gm)) out[m[1]] = Number(m[2]);
    return out;
  }
  const withConfig = (fn) => {
    const c = JSON.parse(JSON.stringify(stack.gr.config));
    fn(c);
    return h.renderConfig(c);
  };
  return { count, statusWith, reload, scrape, withConfig, ...h.jobHelpers(stack) };
}

describe('config reload', () => {
  const stack = h.useStack();
  const { statusWith, reload, scrape, withConfig, waitTerminal, waitDelivered } = reloading(stack);

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

  test('reloads are counted on /metrics: applied, refused, and the time of the last applied one', T, async () => {
    const before = await scrape();
    const t0 = Date.now() / 1000;
    await reload(withConfig((c) => { c.customers.initech = { ...INITECH }; }));
    const ok = await scrape();
    assert.equal(ok['genrelay_config_reloads_total{result="applied"}'], before['genrelay_config_reloads_total{result="applied"}'] + 1);
    assert.equal(ok['genrelay_config_reloads_total{result="refused"}'], before['genrelay_config_reloads_total{result="refused"}']);
    assert.equal(ok.genrelay_config_last_reload_successful, 1);
    const at = ok.genrelay_config_last_reload_success_timestamp_seconds;
    assert.ok(at >= t0 - 1 && at <= Date.now() / 1000 + 1, `last applied at ${at}, reload sent at ${t0}`);

    await reload('broken = {', { expect: /reload: [^\n]*the configuration in use is unchanged/g });
    const bad = await scrape();
    assert.equal(bad['genrelay_config_reloads_total{result="refused"}'], ok['genrelay_config_reloads_total{result="refused"}'] + 1);
    assert.equal(bad['genrelay_config_reloads_total{result="applied"}'], ok['genrelay_config_reloads_total{result="applied"}']);
    assert.equal(bad.genrelay_config_last_reload_successful, 0);
    assert.equal(bad.genrelay_config_last_reload_success_timestamp_seconds, at, 'a refused reload leaves the time of the last applied one');
    // The old config stays: initech (added by the reloads above) still works.
    assert.equal(await statusWith(INITECH.api_key), 200);
    assert.equal(await statusWith(h.ACME.api_key), 200);
  });

  test('restart-only settings keep their values and are named in the log', T, async () => {
    const port = await h.freePort();
    await reload(withConfig((c) => { c.listen = `127.0.0.1:${port}`; c.workers = 3; }));
    await h.waitFor(() => /reload: [^\n]*listen[^\n]*workers[^\n]*need a restart/.test(stack.gr.log()), 10000, { what: 'restart-only keys named in the log' });
    assert.equal(await statusWith(h.ACME.api_key), 200); // still on the old address
    const r = await run(['reload', '--config', '/nonexistent/genrelay.conf.lua']);
    assert.notEqual(r.code, 0);
  });

  test('a request that arrived under an old generation keeps it (and the newer ones) until it ends', T, async () => {
    // Each reload adds a customer whose key proves the worker switched to it.
    let n = 0;
    const step = async () => {
      const probe = { api_key: `probe-key-${++n}-0123456789abcdef`, webhook_secret: h.ACME.webhook_secret };
      await reload(withConfig((c) => { c.customers.initech = { ...INITECH }; c.customers[`probe${n}`] = probe; }));
      await h.waitFor(async () => (await statusWith(probe.api_key)) === 200, 10000, { what: `worker on reload ${n}` });
    };
    await step();
    // A run whose headers are in (authenticated at intake: its customer
    // points into the generation in use) and whose body is not.
    const body = JSON.stringify({ input: { prompt: 'slow body across reloads', sim: { delay_ms: 50 } } });
    const sock = net.connect(Number(new URL(stack.gr.url).port), '127.0.0.1');
    let got = '';
    sock.setEncoding('utf8');
    sock.on('data', (d) => { got += d; });
    sock.write(`POST /v1/models/fal-ai/flux/dev/run HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${h.ACME.api_key}\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nExpect: 100-continue\r\n\r\n`);
    try {
      await h.waitFor(() => /^HTTP\/1\.1 100 /.test(got), 10000, { what: '100 Continue: the request is admitted' });
      for (let i = 0; i < 3; i++) await step();
      // The workers run the newest; the request still holds the one it
      // arrived under, so that one and every newer one stay.
      await reload(withConfig((c) => { c.customers.initech = { ...INITECH }; }));
      const held = (await scrape()).genrelay_config_generations;
      assert.ok(held >= 6, `the first, the request's and the 4 newer ones: ${held}`);
      sock.write(body);
      const answered = await h.waitFor(() => /\r\n\r\n\{/.test(got.replace(/^HTTP\/1\.1 100 [^\r]*\r\n\r\n/, '')) && got, 10000, { what: 'the run answered' });
      assert.match(answered, /HTTP\/1\.1 202 /);
      const id = JSON.parse(answered.slice(answered.lastIndexOf('\r\n\r\n') + 4)).job_id;
      assert.equal((await waitTerminal(id)).status, 'succeeded');
    } finally {
      sock.destroy();
    }
    await h.waitFor(async () => (await scrape()).genrelay_config_generations === 2, 20000, { what: 'freed once the request ended' });
  });
});

// Two workers: requests on either hold what they arrived under while the
// other one switches.
describe('config generations over many reloads', () => {
  const stack = h.useStack({ config: { workers: 2 } });
  const { statusWith, reload, scrape, withConfig, waitTerminal, waitDelivered } = reloading(stack);

  test('50 reloads while jobs and waiting requests flow: old generations are freed, every job finishes', { timeout: 300000 }, async () => {
    // Each reload differs (a customer whose rate changes), so each is a new
    // generation. Jobs are submitted and long-polled across the reloads;
    // requests that arrived under an old generation keep it (and every newer
    // one) alive until they end, then the generations are freed.
    await reload(withConfig((c) => { c.customers.initech = { ...INITECH }; }));
    await h.waitFor(async () => (await statusWith(INITECH.api_key)) === 200, 10000, { what: 'initech accepted' });
    const ids = [];
    const waits = [];
    let maxSeen = 0;
    for (let i = 0; i < 50; i++) {
      const r = await stack.api('POST', '/v1/models/fal-ai/flux/dev/run',
        { input: { prompt: `storm ${i}`, sim: { delay_ms: 300 } }, webhook_url: `${stack.receiver.url}/storm/${i}` });
      assert.equal(r.status, 202, r.text);
      ids.push(r.body.job_id);
      if (i % 5 === 0) {
        // Long-polls and sync runs suspended across several reloads.
        waits.push(stack.api('GET', `/v1/jobs/${r.body.job_id}?wait=2`));
        waits.push(stack.api('POST', '/v1/models/fal-ai/flux/dev/run', { input: { prompt: `storm sync ${i}`, sim: { delay_ms: 500 } }, sync: true }));
        waits.push(stack.gr.as(INITECH.api_key)('GET', '/v1/jobs?limit=1'));
      }
      await reload(withConfig((c) => { c.customers.initech = { ...INITECH, rate: { per_s: 1000 + i, burst: 1000 } }; }));
      maxSeen = Math.max(maxSeen, (await scrape()).genrelay_config_generations);
    }
    for (const w of await Promise.all(waits)) assert.ok([200, 202].includes(w.status), `${w.status} ${w.text}`);
    for (const id of ids) {
      assert.equal((await waitTerminal(id, 60000)).status, 'succeeded', id);
      assert.ok((await waitDelivered(id)).some((d) => d.verified === true), `${id} delivered, signed`);
    }
    // Without freeing, 50 reloads would leave 51 generations; once the
    // requests above ended, only the first and the one in use remain.
    const settled = await h.waitFor(async () => {
      const g = (await scrape()).genrelay_config_generations;
      return g <= 2 && g;
    }, 20000, { what: 'old generations freed' });
    assert.equal(settled, 2);
    assert.ok(maxSeen < 51, `generations seen during the reloads: ${maxSeen}`);
    // The last config is the one in use.
    assert.equal(await statusWith(INITECH.api_key), 200);
    assert.equal(await statusWith(h.ACME.api_key), 200);
  });
});
