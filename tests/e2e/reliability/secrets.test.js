'use strict';
// Secrets: the store's files are the owner's only, and a store others may
// read is refused; the server secret (callback tokens) comes from the config
// or the environment and is rotated without breaking the callbacks of jobs in
// flight; every configured secret is scrubbed from what leaves genrelay (job
// errors, events, webhooks, logs, script errors); string literals of a script
// are redacted from its errors; GET /v1/scripts answers the admin key only.

const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { describe, test, before, after } = require('node:test');
const h = require('../lib/harness');
const R = require('../lib/reliability');
const sd = require('../lib/scriptdir');

const T = { timeout: 120000 };
const KREA = 'krea:image/bfl/flux-1-dev';
const canSql = R.havePython() || R.haveSqliteCli();
const uniq = (name) => `${name}-${process.hrtime.bigint().toString(36)}`;

// Figures for tools/reliability-report (README "Reliability").
const figures = { store_files: 0, refused_stores: 0, previous_accepted: 0, dropped_refused: 0, texts: 0, secrets: 0, leaks: 0, literal_errors: 0 };
after(() => R.report('secrets', figures));

// What a service usually runs with: without the fix the store would be 0644.
process.umask(0o022);

const mode = (file) => fs.statSync(file).mode & 0o777;
const tmpDir = () => fs.mkdtempSync(path.join(os.tmpdir(), 'genrelay-secrets-'));

async function submit(api, input, extra = {}, model = KREA) {
  const r = await api('POST', `/v1/models/${model}/run`, { input, ...extra });
  assert.equal(r.status, 202, r.text);
  return r.body.job_id;
}

async function getJob(api, id) {
  const r = await api('GET', `/v1/jobs/${id}`);
  assert.equal(r.status, 200, r.text);
  return r.body;
}

function waitTerminal(api, id, ms = 20000) {
  return h.waitFor(async () => {
    const j = await getJob(api, id);
    return h.TERMINAL.has(j.status) && j;
  }, ms, { what: `job ${id} terminal`, interval: 100 });
}

// The callback URL genrelay gave Krea for the submit whose prompt is prompt.
async function kreaCallbackUrl(sim, prompt) {
  return h.waitFor(async () => {
    const subs = (await sim.requests('krea')).filter((r) => r.method === 'POST' && r.body && r.body.prompt === prompt);
    return subs.length && subs[0].headers['x-webhook-url'];
  }, 10000, { what: `krea submit of ${prompt}` });
}

// A Krea webhook body for the job with provider id rid.
function kreaBody(rid, status, sim) {
  const now = new Date().toISOString();
  return {
    job_id: rid,
    status,
    created_at: now,
    completed_at: status === 'completed' ? now : null,
    result: status === 'completed' ? { urls: [`${sim.url}/files/${rid}.png`] } : null,
  };
}

// A job accepted by Krea (it has its request id), with no callback coming
// from provsim: the test posts the callbacks itself.
async function acceptedKreaJob(stack, api) {
  const prompt = uniq('rotate');
  const id = await submit(api, { prompt, sim: { delay_ms: 600000, callback: 'none' } });
  const job = await h.waitFor(async () => {
    const j = await getJob(api, id);
    return j.request_id && j;
  }, 10000, { what: `job ${id} accepted` });
  return { id, rid: job.request_id, url: await kreaCallbackUrl(stack.sim, prompt) };
}

// Rewrites gr's config file with over merged in (null deletes a key) and restarts it.
async function restartWith(gr, over) {
  gr.config = h.deepMerge(gr.config, over);
  fs.writeFileSync(gr.configPath, h.renderConfig(gr.config));
  await gr.restart();
}

const post = (url, body) => h.request(url, { method: 'POST', body });

describe('store permissions', () => {
  test('the database, -wal and -shm files are created 0600', T, async () => {
    const stack = await h.startStack();
    try {
      const id = await submit(stack.api, { prompt: uniq('perm'), sim: { delay_ms: 50 } });
      await waitTerminal(stack.api, id);
      const db = stack.gr.dbPath;
      for (const f of [db, `${db}-wal`, `${db}-shm`]) {
        assert.ok(fs.existsSync(f), `${f} exists while genrelay runs`);
        assert.equal(mode(f).toString(8), '600', `${f} is the owner's only`);
        figures.store_files++;
      }
    } finally {
      await stack.close();
    }
  });

  test('a store readable by others is refused with the file and the fix; store_insecure_permissions = true starts it', T, async () => {
    const dir = tmpDir();
    try {
      const db = path.join(dir, 'genrelay.db');
      fs.writeFileSync(db, '');
      fs.chmodSync(db, 0o644);
      const port = await h.freePort();
      const cfgPath = path.join(dir, 'genrelay.conf.lua');
      fs.writeFileSync(cfgPath, h.renderConfig(h.defaultConfig({ port, dir, simUrl: 'http://127.0.0.1:9' })));
      const r = spawnSync(h.BIN, ['serve', '--config', cfgPath], { encoding: 'utf8', timeout: 30000 });
      assert.equal(r.status, 2, `exit status; stderr: ${r.stderr}`);
      assert.ok(r.stderr.includes(db), r.stderr);
      assert.match(r.stderr, /readable or writable by group or others \(mode 0644\)/);
      assert.match(r.stderr, /chmod 600/);
      assert.match(r.stderr, /store_insecure_permissions = true/);
      assert.equal(mode(db).toString(8), '644', 'a refused store is left as it was');
      figures.refused_stores++;

      const gr = await h.startGenrelay({ dir, config: { store_insecure_permissions: true } });
      try {
        assert.equal((await gr.api('GET', '/v1/jobs')).status, 200);
      } finally {
        await gr.stop();
        await gr.assertNoSanitizerReport();
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('-wal and -shm files left wider than the database are narrowed at start', T, async () => {
    const dir = tmpDir();
    try {
      const gr = await h.startGenrelay({ dir });
      const db = gr.dbPath;
      await submit(gr.api, { prompt: uniq('wal') }); // a 202 is a commit: the WAL has it
      await gr.kill('SIGKILL'); // leaves -wal and -shm behind
      for (const f of [`${db}-wal`, `${db}-shm`]) {
        assert.ok(fs.existsSync(f), `${f} left by the killed process`);
        fs.chmodSync(f, 0o644);
      }
      await gr.restart();
      for (const f of [db, `${db}-wal`, `${db}-shm`]) {
        assert.equal(mode(f).toString(8), '600', f);
        figures.store_files++;
      }
      await gr.stop();
      await gr.assertNoSanitizerReport();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('server secret rotation', () => {
  const A = 'secret-A-0123456789abcdef';
  const B = 'secret-B-0123456789abcdef';
  let stack;
  before(async () => {
    // No provider callbacks (the test posts them) and no polls meanwhile.
    stack = await h.startStack({ genrelay: false });
    stack.gr = await h.startGenrelay({
      simUrl: stack.sim.url,
      config: { jobs: { poll_after_s: 600, poll_interval_s: 600, poll_max_s: 600, job_deadline_s: 600 } },
      env: { GENRELAY_SERVER_SECRET: A, GENRELAY_SERVER_SECRET_PREVIOUS: '' },
    });
    stack.api = stack.gr.api;
  });
  after(async () => {
    if (stack) await stack.close();
  });

  test('jobs submitted under A keep their callbacks after a restart with B and A as previous, and lose them once A is dropped', T, async () => {
    const gr = stack.gr;
    const j1 = await acceptedKreaJob(stack, stack.api); // token under A (from the environment)
    const badToken = j1.url.replace(/[0-9a-f]{32}$/, '0'.repeat(32));
    assert.notEqual(badToken, j1.url);
    assert.equal((await post(badToken, kreaBody(j1.rid, 'processing', stack.sim))).status, 401, 'a wrong token is refused');
    let r = await post(j1.url, kreaBody(j1.rid, 'processing', stack.sim));
    assert.equal(r.status, 200, `under A: ${r.text}`);

    // Rotation: B is current (the config wins over the environment), A previous.
    await restartWith(gr, { server_secret: B, server_secret_previous: A });
    r = await post(j1.url, kreaBody(j1.rid, 'processing', stack.sim));
    assert.equal(r.status, 200, `A as previous: ${r.text}`);
    assert.equal(r.body.status, 'ignored');
    figures.previous_accepted++;
    const j2 = await acceptedKreaJob(stack, stack.api); // token under B
    assert.notEqual(j2.url.slice(-32), j1.url.slice(-32));
    assert.equal((await post(badToken, kreaBody(j1.rid, 'processing', stack.sim))).status, 401);

    // A dropped: its tokens are refused, B's still work.
    await restartWith(gr, { server_secret_previous: null });
    r = await post(j1.url, kreaBody(j1.rid, 'completed', stack.sim));
    assert.equal(r.status, 401, `A dropped: ${r.text}`);
    figures.dropped_refused++;
    assert.equal((await getJob(stack.api, j1.id)).status, 'processing', 'a refused callback changes nothing');
    r = await post(j2.url, kreaBody(j2.rid, 'completed', stack.sim));
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.status, 'applied');
    assert.equal((await waitTerminal(stack.api, j2.id)).status, 'succeeded');
    // Neither secret is written to the log.
    assert.ok(!gr.log().includes(A) && !gr.log().includes(B), 'no server secret in the log');
  });

  test('a secret moved from the store to the config: the stored one counts as previous for jobs.job_deadline_s, then is deleted', T, async () => {
    const dir = tmpDir();
    const gr = await h.startGenrelay({
      simUrl: stack.sim.url,
      dir,
      config: { jobs: { poll_after_s: 600, poll_interval_s: 600, poll_max_s: 600, job_deadline_s: 600 } },
      env: { GENRELAY_SERVER_SECRET: '', GENRELAY_SERVER_SECRET_PREVIOUS: '' },
    });
    try {
      const j = await acceptedKreaJob(stack, gr.api); // token under the generated, stored secret
      const stored = canSql ? R.sqlRows(gr.dbPath, "SELECT value FROM meta WHERE key='server_secret'")[0].value : null;
      if (canSql) assert.match(stored, /^[0-9a-f]{64}$/);

      await restartWith(gr, { server_secret: B });
      let r = await post(j.url, kreaBody(j.rid, 'processing', stack.sim));
      assert.equal(r.status, 200, `the stored secret as previous: ${r.text}`);
      figures.previous_accepted++;
      assert.match(gr.log(), /the store's is still accepted for callbacks/);

      // The longest job lifetime passes (1 s here): the stored secret is
      // refused, and deleted from the store at the next start.
      await restartWith(gr, { jobs: { job_deadline_s: 1 } });
      await h.waitFor(async () => (await post(j.url, kreaBody(j.rid, 'processing', stack.sim))).status === 401, 20000,
        { what: 'the stored secret refused after jobs.job_deadline_s', interval: 200 });
      await gr.restart();
      r = await post(j.url, kreaBody(j.rid, 'processing', stack.sim));
      assert.equal(r.status, 401);
      figures.dropped_refused++;
      if (canSql) {
        assert.equal(R.sqlRows(gr.dbPath, "SELECT value FROM meta WHERE key='server_secret'")[0].value, '', 'deleted from the store');
        assert.ok(!gr.log().includes(stored), 'the stored secret is not logged');
      }
    } finally {
      await gr.stop();
      await gr.assertNoSanitizerReport();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('secrets scrubbed from what leaves genrelay', () => {
  const LEAKY_KEY = 'leaky-provider-key-0123';
  const LITERAL = 'sk-live-LITERAL-in-source-42';
  // A provider that puts its key everywhere it can: a log line, a failure
  // message and a raised error.
  const LEAKY = `return {
	name = "leaky",
	models = { "leaky/.+" },
	submit = function(job, ctx)
		ctx.log("submitting with Key " .. ctx.secret("key"))
		if job.input.action == "raise" then error("auth failed for Key " .. ctx.secret("key")) end
		return { method = "GET", url = ctx.config.base_url .. "/.well-known/jwks.json" }
	end,
	on_submitted = function(res, job, ctx)
		return { state = "failed", error = { code = "PROVIDER_FAILURE",
			message = "echo: Authorization: Key " .. ctx.secret("key") } }
	end,
	on_callback = function(req, job, ctx) return { state = "processing" } end,
}
`;
  // Fails to load, with a string literal that Lua would quote in the error.
  const BROKEN_CONSTANT = `local key = "${LITERAL}"\nlocal x = ("${LITERAL}")()\nreturn { name = "broken_constant" }\n`;
  const BROKEN_SYNTAX = `local key = "${LITERAL}\nreturn { name = "broken_syntax" }\n`;
  const dir = sd.copyScripts({
    'providers/leaky.lua': LEAKY,
    'providers/broken_constant.lua': BROKEN_CONSTANT,
    'providers/broken_syntax.lua': BROKEN_SYNTAX,
  });
  const stack = h.useStack({
    config: (base) => h.deepMerge(base, {
      scripts: dir,
      providers: { leaky: { base_url: base.providers.fal.base_url, key: LEAKY_KEY } },
      // A failure that fails over: its reason goes into the job's events.
      models: { echo_then_fal: { targets: [KREA, 'fal:fal-ai/flux/dev'], failover_on_failure: true } },
    }),
  });
  const SECRETS = () => [
    'krea-test-key', LEAKY_KEY, h.ACME.api_key, h.ACME.webhook_secret, h.ACME.webhook_secret.slice(6),
    h.GLOBEX.api_key, h.ADMIN_KEY, 'abstrakt-sim-secret',
  ];
  const assertClean = (what, text) => {
    figures.texts++;
    figures.secrets = SECRETS().length;
    for (const s of SECRETS()) if (text.includes(s)) figures.leaks++;
    for (const s of SECRETS()) assert.ok(!text.includes(s), `${what} contains the secret ${s.slice(0, 4)}...: ${text.slice(0, 400)}`);
  };

  test('a provider echoing its Authorization header: not in the job error, events, webhook or log', T, async () => {
    const hook = `${stack.receiver.url}/secrets-echo`;
    const id = await submit(stack.api, { prompt: uniq('echo'), sim: { outcome: 'fail', delay_ms: 100, echo_auth: true } },
      { webhook_url: hook });
    const j = await waitTerminal(stack.api, id);
    assert.equal(j.status, 'failed');
    // The provider did echo the key, and genrelay redacted it.
    const seen = (await stack.sim.requests('krea')).filter((r) => r.headers.authorization === 'Bearer krea-test-key');
    assert.ok(seen.length > 0, 'provsim saw the key');
    assert.match(j.error.message, /\(Authorization: Bearer \[redacted\]\)/);
    assertClean('job error', JSON.stringify(j));
    const ev = await stack.api('GET', `/v1/jobs/${id}/events`);
    assert.equal(ev.status, 200);
    assertClean('events', ev.text);
    const dl = await h.waitFor(async () => {
      const all = await stack.receiver.forJob(id);
      return all.length && all;
    }, 20000, { what: 'webhook of the failed job' });
    assert.match(JSON.stringify(dl[0].body), /\[redacted\]/);
    assert.equal(dl[0].verified, true, 'the signature covers the scrubbed body');
    assertClean('webhook body', JSON.stringify(dl[0].body));
    assertClean('log', stack.gr.log());
  });

  test('an echoed key in a failure that fails over: not in the failover event', T, async () => {
    const id = await submit(stack.api, { prompt: uniq('echo-fo'), sim: { outcome: 'fail', delay_ms: 100, echo_auth: true } },
      {}, 'echo_then_fal');
    const j = await waitTerminal(stack.api, id);
    assert.equal(j.status, 'failed');
    assert.equal(j.provider, 'fal', 'failed over to fal');
    const ev = await stack.api('GET', `/v1/jobs/${id}/events`);
    assert.equal(ev.status, 200);
    const fo = ev.body.data.find((e) => e.kind === 'failover' || e.type === 'failover');
    assert.ok(fo, `a failover event: ${ev.text}`);
    assert.match(JSON.stringify(fo), /Authorization: Bearer \[redacted\]/);
    assertClean('events', ev.text);
  });

  test('a script logging, failing with and raising its key: redacted in the job, the log and script errors', T, async () => {
    const failed = await waitTerminal(stack.api, await submit(stack.api, { prompt: 'x' }, {}, 'leaky/model'));
    assert.equal(failed.status, 'failed');
    assert.equal(failed.error.message, 'echo: Authorization: Key [redacted]');
    const raised = await waitTerminal(stack.api, await submit(stack.api, { prompt: 'x', action: 'raise' }, {}, 'leaky/model'));
    assert.equal(raised.error.code, 'SCRIPT_ERROR');
    assert.match(raised.error.message, /auth failed for Key \[redacted\]/);
    await h.waitFor(() => /leaky\.lua: submitting with Key \[redacted\]/.test(stack.gr.log()), 10000, { what: 'the script log line' });
    assertClean('log', stack.gr.log());
    assertClean('job', JSON.stringify(failed) + JSON.stringify(raised));
  });

  test('script load errors: string literals redacted; GET /v1/scripts only for the admin key', T, async () => {
    const list = await sd.scripts(stack.gr.admin);
    for (const name of ['providers/broken_constant', 'providers/broken_syntax']) {
      const e = list[name] && list[name].last_error;
      assert.ok(e, `${name} has a load error`);
      assert.ok(!e.includes('LITERAL'), `${name}: ${e}`);
      assert.match(e, new RegExp(`^${name}\\.lua:\\d+: `));
      figures.literal_errors++;
    }
    assert.match(list['providers/broken_constant'].last_error, /\(constant \[redacted\]\)/);
    assert.match(list['providers/broken_syntax'].last_error, /near a string literal/);
    assert.ok(!stack.gr.log().includes(LITERAL), 'not in the log either');

    const asCustomer = await stack.api('GET', '/v1/scripts');
    assert.equal(asCustomer.status, 401, asCustomer.text);
    assert.equal(asCustomer.body.error.code, 'UNAUTHORIZED');
    assert.ok(!asCustomer.text.includes('broken'), 'nothing of the scripts shown');
    assert.equal((await stack.gr.as(null)('GET', '/v1/scripts')).status, 401);
    assert.equal((await stack.gr.admin('GET', '/v1/scripts')).status, 200);
  });
});
