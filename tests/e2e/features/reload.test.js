'use strict';
// Hot reload of scripts: a change under scripts/ (new, changed or
// removed file) is in effect on every worker within a second, without a
// restart; a file that fails to compile, to check or its examples never
// replaces the running version (the reason is logged and shown by
// GET /v1/scripts); no request fails because of a reload, under load; job
// steps and deliveries record the version of the script that ran them.
//
//   GENRELAY_BIN=$PWD/build/genrelay node --test tests/e2e/features/reload.test.js
//
// No pass/fail assertion depends on how fast something happened: "within a
// second" is checked by looking, 1 s after the write, at what is in effect.
// The time the new version first showed up is reported as a diagnostic.

const { describe, test } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const h = require('../lib/harness');
const sd = require('../lib/scriptdir');

const MODEL = 'fal-ai/flux/dev';
const RUN = `/v1/models/${MODEL}/run`;
const T = { timeout: 90000 };
const SECRET = h.ACME.webhook_secret;

// The live hook in version `tag`: its body names the version.
const liveHook = (tag) => `-- the live hook, ${tag}
return {
	transform = function(event, ctx)
		return { body = { shape = "${tag}", job_id = event.job_id } }
	end,
	examples = {
		{ fn = "transform", args = { { job_id = "job_1" } }, expect = { body = { shape = "${tag}" } } },
	},
}
`;
const GONE = `return { transform = function(event, ctx) return { body = { gone_hook = true, id = event.job_id } } end }
`;
const EXTRA_PROVIDER = `-- added while genrelay runs
return {
	name = "extra_prov",
	models = { "extra/.+" },
	submit = function(job, ctx)
		return { method = "GET", url = ctx.config.base_url .. "/.well-known/jwks.json" }
	end,
	on_submitted = function(res, job, ctx)
		return { state = "succeeded", request_id = "x-" .. job.id,
			output = { type = "image", items = { { type = "image", url = "https://example.invalid/x.png" } } } }
	end,
	on_callback = function(req, job, ctx) return { state = "processing" } end,
}
`;

const customer = (name, hook) => ({ api_key: `${name}-key`, webhook_secret: SECRET, hook });
const CUSTOMERS = {
  acme: customer('acme', 'live'),
  globex: customer('globex', 'gone'),
  loader: customer('loader', 'default'),
};

const dir = sd.copyScripts({ 'hooks/live.lua': liveHook('v1'), 'hooks/gone.lua': GONE });

describe('hot reload', () => {
  const stack = h.useStack({
    config: (base) =>
      h.deepMerge(base, {
        scripts: dir,
        workers: 2,
        customers: CUSTOMERS,
        providers: { extra_prov: { base_url: base.providers.fal.base_url } },
        webhooks: { retry: [0.3, 0.6, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1] },
      }),
  });

  const uniq = (name) => `${name}-${crypto.randomBytes(5).toString('hex')}`;
  const as = (cust) => stack.gr.as(CUSTOMERS[cust].api_key);
  let current = liveHook('v1'); // the live hook's running source

  async function submit(cust, input, extra = {}, model = MODEL) {
    const r = await as(cust)('POST', `/v1/models/${model}/run`, { input, ...extra });
    assert.equal(r.status, 202, r.text);
    return r.body.job_id;
  }
  async function deliveries(cust, id) {
    const r = await as(cust)('GET', `/v1/jobs/${id}/deliveries`);
    assert.equal(r.status, 200, r.text);
    return r.body.data;
  }
  async function events(cust, id) {
    const r = await as(cust)('GET', `/v1/jobs/${id}/events`);
    assert.equal(r.status, 200, r.text);
    return r.body.data;
  }
  function waitDelivery(cust, id, pred, ms = 20000, what = 'delivery') {
    return h.waitFor(async () => {
      const l = await deliveries(cust, id);
      return l.length === 1 && pred(l[0]) && l[0];
    }, ms, { what: `${what} of ${id}`, interval: 100 });
  }
  // Runs n acme jobs and returns [{body, attempt}] of their deliveries.
  async function liveDeliveries(n) {
    const p = `/live/${uniq('d')}`;
    const ids = [];
    for (let i = 0; i < n; i++) ids.push(await submit('acme', { prompt: uniq('live') }, { webhook_url: stack.receiver.url + p }));
    const out = [];
    for (const id of ids) {
      const dl = await waitDelivery('acme', id, (d) => d.status === 'delivered');
      const got = (await stack.receiver.forPath(p)).filter((d) => d.id === dl.delivery_id && d.answered === 200);
      assert.equal(got.length, 1);
      out.push({ id, body: got[0].body, attempt: dl.attempts[dl.attempts.length - 1] });
    }
    return out;
  }
  // Writes rel and returns the wall time of the write; reports (diagnostic
  // only) when GET /v1/scripts first showed `expect(views)`.
  async function writeAndWatch(t, rel, text, { atomic = false, shows } = {}) {
    const t0 = Date.now();
    if (text === null) sd.remove(dir, rel);
    else sd.write(dir, rel, text, { atomic });
    if (shows) {
      while (Date.now() - t0 < 1000) {
        if (shows(await sd.scripts(stack.gr.admin))) {
          t.diagnostic(`${rel}: change visible in GET /v1/scripts ${Date.now() - t0} ms after the write`);
          break;
        }
        await h.sleep(10);
      }
    }
    return t0;
  }
  // Sleeps until 1 s after t0, then returns 12 views of GET /v1/scripts.
  async function viewsAfterOneSecond(t0) {
    const wait = t0 + 1000 - Date.now();
    if (wait > 0) await h.sleep(wait);
    return sd.scriptsViews(stack.gr.admin, 12);
  }

  test('a changed hook is in effect on every worker 1 s after the write, in place or by rename; deliveries record the version that ran', T, async (t) => {
    const before = await liveDeliveries(2);
    for (const d of before) {
      assert.deepEqual(d.body, { shape: 'v1', job_id: d.id });
      assert.equal(d.attempt.script_version, sd.version(current));
    }
    for (const [tag, atomic] of [['v2', false], ['v3', true]]) {
      const text = liveHook(tag);
      const v = sd.version(text);
      const t0 = await writeAndWatch(t, 'hooks/live.lua', text, { atomic, shows: (s) => s['hooks/live'].version === v });
      const views = await viewsAfterOneSecond(t0);
      for (const s of views) {
        assert.equal(s['hooks/live'].version, v, `every answer shows ${tag} 1 s after the write`);
        assert.equal(s['hooks/live'].last_error, null);
      }
      const after = await liveDeliveries(6);
      for (const d of after) {
        assert.deepEqual(d.body, { shape: tag, job_id: d.id }, `delivered in the ${tag} shape`);
        assert.equal(d.attempt.script_version, v, 'the attempt records the version that ran');
      }
      current = text;
    }
    // The earlier deliveries keep the version they ran with.
    for (const d of before) {
      const [dl] = await deliveries('acme', d.id);
      assert.equal(dl.attempts[0].script_version, sd.version(liveHook('v1')));
    }
  });

  test('a file that fails to compile, to check or its examples never replaces the running version; the reason is logged and shown', T, async (t) => {
    const running = sd.version(current);
    const tag = /-- the live hook, (\w+)/.exec(current)[1];
    const BROKEN = [
      { what: 'syntax error', text: 'return {\n\ttransform = function(event, ctx)\n\t\treturn { body = \n', re: /^hooks\/live\.lua:\d+: .*expected/ },
      { what: 'raises while loading', text: 'local x = nil\nerror("refusing to load")\n', re: /^hooks\/live\.lua:2: refusing to load$/ },
      { what: 'not a table', text: 'return 42\n', re: /^hooks\/live\.lua: .*must return a table/ },
      { what: 'no transform', text: 'return { transfrom = function() end }\n', re: /missing function transform/ },
      { what: 'failing example', text: liveHook('v9').replace('expect = { body = { shape = "v9" } }', 'expect = { body = { shape = "other" } }'), re: /^hooks\/live\.lua: example 1.*body\.shape: expected "other", got "v9"/ },
      { what: 'endless loop while loading', text: 'while true do end\n', re: /^hooks\/live\.lua:1: instruction budget exceeded$/ },
      { what: 'memory bomb while loading', text: 'local s = string.rep("x", 1 << 30)\nreturn { transform = function() end }\n', re: /^hooks\/live\.lua.*memory cap exceeded/ },
      { what: 'empty file', text: '', re: /^hooks\/live\.lua: .*must return a table/ },
    ];
    for (const b of BROKEN) {
      const t0 = await writeAndWatch(t, 'hooks/live.lua', b.text, { shows: (s) => b.re.test(s['hooks/live'].last_error || '') });
      const views = await viewsAfterOneSecond(t0);
      for (const s of views) {
        assert.equal(s['hooks/live'].version, running, `${b.what}: the running version stays`);
        assert.match(s['hooks/live'].last_error || '', b.re, `${b.what}: last_error`);
      }
      // Logged: a warning naming the file, the version kept and the reason.
      const reason = views[0]['hooks/live'].last_error;
      await h.waitFor(() => stack.gr.log().split('\n').some((l) => /level=warn/.test(l) && l.includes('hooks/live.lua') && l.includes(running) && l.includes(reason)), 2000, { what: `warning for ${b.what} in the log` });
      const [d] = await liveDeliveries(1);
      assert.deepEqual(d.body, { shape: tag, job_id: d.id }, `${b.what}: deliveries keep the running shape`);
      assert.equal(d.attempt.script_version, running);
    }
    // Fixing the file loads it and clears the error.
    const fixed = liveHook('v4');
    const t0 = await writeAndWatch(t, 'hooks/live.lua', fixed, { shows: (s) => s['hooks/live'].version === sd.version(fixed) });
    for (const s of await viewsAfterOneSecond(t0)) {
      assert.equal(s['hooks/live'].version, sd.version(fixed));
      assert.equal(s['hooks/live'].last_error, null);
    }
    const [d] = await liveDeliveries(1);
    assert.deepEqual(d.body, { shape: 'v4', job_id: d.id });
    current = fixed;
  });

  test('a new file loads and a removed one unloads within a second (hooks and providers)', T, async (t) => {
    const extra = 'return { transform = function(event, ctx) return { body = {} } end }\n';
    let t0 = await writeAndWatch(t, 'hooks/extra.lua', extra, { shows: (s) => !!s['hooks/extra'] });
    for (const s of await viewsAfterOneSecond(t0)) assert.equal(s['hooks/extra'] && s['hooks/extra'].version, sd.version(extra));
    t0 = await writeAndWatch(t, 'hooks/extra.lua', null, { shows: (s) => !s['hooks/extra'] });
    for (const s of await viewsAfterOneSecond(t0)) assert.equal(s['hooks/extra'], undefined, 'removed hook unloaded');

    // A provider added while running serves its models; removed, it does not.
    assert.equal((await stack.api('POST', '/v1/models/extra/thing/run', { input: {} })).status, 404);
    t0 = await writeAndWatch(t, 'providers/extra_prov.lua', EXTRA_PROVIDER, { shows: (s) => !!s['providers/extra_prov'] });
    await viewsAfterOneSecond(t0);
    const id = await submit('loader', { prompt: 'x' }, {}, 'extra/thing');
    const j = await h.waitFor(async () => {
      const r = await as('loader')('GET', `/v1/jobs/${id}`);
      return r.body.status === 'succeeded' && r.body;
    }, 10000, { what: 'extra_prov job succeeded' });
    assert.equal(j.provider, 'extra_prov');
    const ev = (await events('loader', id)).find((e) => e.kind === 'ended');
    assert.equal(ev.detail.script_version, sd.version(EXTRA_PROVIDER), 'the step records the new script\'s version');
    t0 = await writeAndWatch(t, 'providers/extra_prov.lua', null, { shows: (s) => !s['providers/extra_prov'] });
    for (const s of await viewsAfterOneSecond(t0)) assert.equal(s['providers/extra_prov'], undefined);
    for (let i = 0; i < 6; i++) {
      const r = await stack.api('POST', '/v1/models/extra/thing/run', { input: {} });
      assert.equal(r.status, 404, r.text);
      assert.equal(r.body.error.code, 'MODEL_NOT_FOUND');
    }
  });

  test('a customer whose hook file is removed gets SCRIPT_ERROR attempts (not another shape) until the file is back', T, async (t) => {
    const t0 = await writeAndWatch(t, 'hooks/gone.lua', null, { shows: (s) => !s['hooks/gone'] });
    for (const s of await viewsAfterOneSecond(t0)) assert.equal(s['hooks/gone'], undefined);
    const p = `/gone/${uniq('g')}`;
    const id = await submit('globex', { prompt: uniq('gone') }, { webhook_url: stack.receiver.url + p });
    const failing = await waitDelivery('globex', id, (d) => d.attempts.length >= 2, 20000, 'two failed attempts');
    assert.equal(failing.status, 'pending');
    for (const a of failing.attempts) assert.equal(a.error, 'SCRIPT_ERROR: hooks/gone.lua: not loaded');
    assert.equal((await stack.receiver.forPath(p)).length, 0, 'nothing sent in some other shape');
    sd.write(dir, 'hooks/gone.lua', GONE);
    const done = await waitDelivery('globex', id, (d) => d.status === 'delivered', 20000, 'delivered once the hook is back');
    assert.equal(done.attempts[done.attempts.length - 1].script_version, sd.version(GONE));
    const got = (await stack.receiver.forPath(p)).filter((d) => d.answered === 200);
    assert.equal(got.length, 1);
    assert.deepEqual(got[0].body, { gone_hook: true, id });
    assert.equal(got[0].verified, true);
  });

  test('job steps record the provider script version that ran them, before and after a reload', T, async (t) => {
    const check = async (text) => {
      const v = sd.version(text);
      assert.equal((await sd.scripts(stack.gr.admin))['providers/fal'].version, v);
      const id = await submit('loader', { prompt: uniq('ver') });
      await h.waitFor(async () => (await events('loader', id)).some((e) => e.kind === 'ended'), 20000, { what: 'job ended' });
      const ev = await events('loader', id);
      const submitted = ev.find((e) => e.kind === 'submitted');
      const ended = ev.find((e) => e.kind === 'ended');
      assert.equal(submitted.detail.script_version, v, 'submitted records the version');
      assert.equal(ended.detail.script_version, v, 'ended (on_callback) records the version');
      assert.equal(ended.detail.status, 'succeeded');
    };
    const orig = sd.read(dir, 'providers/fal.lua');
    await check(orig);
    const changed = orig + '\n-- reloaded by reload.test.js\n';
    const t0 = await writeAndWatch(t, 'providers/fal.lua', changed, { shows: (s) => s['providers/fal'].version === sd.version(changed) });
    for (const s of await viewsAfterOneSecond(t0)) assert.equal(s['providers/fal'].version, sd.version(changed));
    await check(changed);
  });

  test('no request fails while scripts are rewritten 10 times under a steady stream of run requests', T, async (t) => {
    const p = `/load/${uniq('l')}`;
    const statuses = new Map();
    const errors = [];
    const ids = [];
    let stop = false;
    const client = async () => {
      while (!stop) {
        try {
          const r = await as('loader')('POST', RUN, { input: { prompt: uniq('load') }, webhook_url: stack.receiver.url + p }, {}, { timeoutMs: 10000 });
          statuses.set(r.status, (statuses.get(r.status) || 0) + 1);
          if (r.status === 202) ids.push(r.body.job_id);
          else errors.push(`${r.status} ${r.text}`);
        } catch (e) {
          errors.push(e.message);
        }
        await h.sleep(20);
      }
    };
    const fal = sd.read(dir, 'providers/fal.lua');
    const krea = sd.read(dir, 'providers/krea.lua');
    const util = sd.read(dir, 'lib/util.lua');
    const dflt = sd.read(dir, 'hooks/default.lua');
    const REWRITES = [
      ['providers/fal.lua', fal + '\n-- load 1\n'],
      ['hooks/default.lua', dflt + '\n-- load 2\n', { atomic: true }],
      ['lib/util.lua', util + '\n-- load 3: every script reloads\n'],
      ['providers/fal.lua', 'return { name = "fal", submit = \n'], // broken: the running fal stays
      ['providers/fal.lua', fal + '\n-- load 5\n', { atomic: true }],
      ['hooks/live.lua', liveHook('v5')],
      ['providers/krea.lua', krea + '\n-- load 7\n'],
      ['lib/util.lua', util + '\n-- load 8\n', { atomic: true }],
      ['hooks/default.lua', 'return nil\n'], // broken: the running default stays
      ['hooks/default.lua', dflt + '\n-- load 10\n'],
    ];
    const clients = Array.from({ length: 4 }, client);
    await h.sleep(300);
    for (const [rel, text, opts] of REWRITES) {
      sd.write(dir, rel, text, opts);
      await h.sleep(250);
    }
    await h.sleep(1000);
    stop = true;
    await Promise.all(clients);
    t.diagnostic(`${ids.length} run requests during the rewrites: ${JSON.stringify(Object.fromEntries(statuses))}`);
    assert.deepEqual(errors, [], 'every run request answered 202');
    assert.ok(ids.length >= 50, `a steady stream (${ids.length} requests)`);

    // The final versions are the ones running, on every worker, without errors.
    for (const s of await sd.scriptsViews(stack.gr.admin, 12)) {
      assert.equal(s['providers/fal'].version, sd.version(fal + '\n-- load 5\n'));
      assert.equal(s['hooks/default'].version, sd.version(dflt + '\n-- load 10\n'));
      for (const k of ['providers/fal', 'hooks/default', 'providers/krea', 'hooks/live']) assert.equal(s[k].last_error, null, k);
    }
    // Every job accepted during the rewrites succeeded and was delivered once.
    await h.waitFor(async () => (await stack.receiver.forPath(p)).filter((d) => d.answered === 200).length >= ids.length, 60000, { what: `${ids.length} deliveries`, interval: 250 });
    const got = (await stack.receiver.forPath(p)).filter((d) => d.answered === 200);
    const byJob = new Map(got.map((d) => [d.body.job_id, d]));
    for (const id of ids) {
      const d = byJob.get(id);
      assert.ok(d, `job ${id} delivered`);
      assert.equal(d.body.status, 'succeeded', `job ${id}: ${JSON.stringify(d.body.error)}`);
      assert.equal(d.verified, true);
    }
    assert.equal((await h.request(stack.gr.url + '/healthz')).status, 200);
  });
});
