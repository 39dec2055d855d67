'use strict';
// End-to-end tests of the core features providers need, against provsim's
// --strict-callbacks and --modelslab-queue-limit shapes:
//   - model ids (one grammar, ':version' tails) and unconfigured adapters;
//   - callback_requires: refused at submit (or failed over) without calling
//     the provider, unless the provider polls only (callbacks = false);
//   - providers.NAME.max_inflight: jobs past the cap wait, in order;
//   - a 429 whose wait is in the body (ModelsLab's retry_after);
//   - polls: 5xx never ends a job, a 404 only after poll_404_limit;
//   - events: how the end came (callback or poll), refused callbacks.
//
//   GENRELAY_BIN=$PWD/build/genrelay node --test tests/e2e/features/provider_core.test.js
//
// provsim's queue and down switches are shared, so the tests run one after
// the other and each leaves every surface up and the ModelsLab queue empty.

const { after, describe, test } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const h = require('../lib/harness');
const pg = require('../lib/pg');
const sd = require('../lib/scriptdir');

const T = { timeout: 90000 };
const SERVER_SECRET = 'provider-core-test-secret-0123456789';

// A small adapter over provsim's Artificial Studio surface that polls only:
// input.poll_id (when set) replaces the id it polls, so a test can make its
// polls answer 404. verify refuses a callback carrying x-refuse.
const POLLTEST = `return {
	name = "polltest",
	models = {},
	poll_404_limit = 2,
	submit = function(job, ctx)
		return { method = "POST", url = ctx.config.base_url .. "/api/run", headers = { Authorization = "k" },
			body = { tool = "create-image", input = job.input } }
	end,
	on_submitted = function(res, job, ctx)
		if res.status ~= 202 then return { state = "failed", error = { message = "submit " .. res.status } } end
		return { state = "processing", request_id = res.json.id }
	end,
	verify = function(req, ctx, job)
		if req.headers["x-refuse"] then return false, "refused by the test" end
		return true
	end,
	on_callback = function(req, job, ctx) return { state = "processing" } end,
	poll = function(job, ctx)
		local id = (job.input or {}).poll_id or job.request_id
		return { method = "GET", url = ctx.config.base_url .. "/api/generations/" .. id, headers = { Authorization = "k" } }
	end,
	on_polled = function(res, job, ctx)
		if res.status == 404 then return { state = "failed", error = { code = "PROVIDER_FAILURE", message = "polltest: gone" } } end
		local b = res.json or {}
		if b.status == "success" then
			return { state = "succeeded", output = { type = "image", items = { { type = "image", url = b.output } } } }
		end
		return { state = "processing" }
	end,
}
`;

const modelslabSrc = fs.readFileSync(path.join(h.SRC, 'scripts', 'providers', 'modelslab.lua'), 'utf8');
const dir = sd.copyScripts({
  'providers/polltest.lua': POLLTEST,
  // The ModelsLab adapter again under another name, without a cap.
  'providers/modelslab_nocap.lua': modelslabSrc.replace('name = "modelslab"', 'name = "modelslab_nocap"'),
});

// The configuration of this file's genrelay (and of the second instance
// sharing its store).
function coreConfig(base) {
  const sim = base.providers.modelslab.base_url.replace(/\/modelslab\/api\/v6$/, '');
  // The fal adapter again, not configured, with its JWKS at provsim (so
  // a fetch it should not make would stay on loopback and be seen).
  const falSrc = fs.readFileSync(path.join(h.SRC, 'scripts', 'providers', 'fal.lua'), 'utf8');
  const copy = falSrc.replace('name = "fal"', 'name = "falcopy"')
    .replace(/jwks_url = "[^"]*"/, `jwks_url = "${sim}/fal/.well-known/jwks.json?who=falcopy"`);
  assert.ok(copy.includes('who=falcopy') && copy.includes('name = "falcopy"'), 'the fal adapter has a jwks_url default');
  const copyPath = path.join(dir, 'providers', 'falcopy.lua');
  if (!fs.existsSync(copyPath) || fs.readFileSync(copyPath, 'utf8') !== copy) sd.write(dir, 'providers/falcopy.lua', copy);
  const cfg = h.deepMerge(base, {
    scripts: dir,
    server_secret: SERVER_SECRET,
    providers: {
      krea: null, // not configured: loaded and checked, never routed
      // The adapter's own callback_requires (https, public) applies.
      artificialstudio: { callback_requires: null },
      // https required, but poll only: no callback URL is sent.
      modelslab: { callback_requires: null, callbacks: false, max_inflight: 1 },
      modelslab_nocap: { base_url: `${sim}/modelslab/api/v6`, key: 'modelslab-nocap-key', callbacks: false, max_inflight: 0 },
      polltest: { base_url: `${sim}/artificialstudio` },
    },
    models: { 'as-then-fal': ['artificialstudio:create-image', 'fal:fal-ai/flux/dev'] },
    // A submit window longer than ModelsLab's retry_after (30 s), which the
    // core honours only within the window.
    jobs: { poll_after_s: 0.5, poll_interval_s: 0.3, poll_max_s: 1, submit_window_s: 120 },
  });
  return cfg;
}

describe('core features for providers', () => {
  let stack = null;
  after(async () => {
    if (!stack || !stack.sim) return;
    await stack.sim.up('artificialstudio').catch(() => {});
    if (stack.gr && !stack.gr.running()) throw new Error(`genrelay died during the tests:\n${stack.gr.logTail(60)}`);
  });
  stack = h.useStack({
    provsimArgs: ['--strict-callbacks', '--modelslab-queue-limit', '1'],
    config: coreConfig,
  });
  const { getJob, waitTerminal } = h.jobHelpers(stack);

  async function submit(model, input, extra = {}) {
    const r = await stack.api('POST', `/v1/models/${model}/run`, { input, ...extra });
    assert.equal(r.status, 202, r.text);
    return r.body.job_id;
  }
  async function events(id) {
    const r = await stack.api('GET', `/v1/jobs/${id}/events`);
    assert.equal(r.status, 200, r.text);
    return Array.isArray(r.body) ? r.body : r.body.data;
  }
  const detail = (e) => (typeof e.detail === 'string' ? JSON.parse(e.detail) : e.detail);
  async function ended(id) {
    const e = (await events(id)).filter((x) => x.kind === 'ended');
    assert.equal(e.length, 1, JSON.stringify(e));
    return detail(e[0]);
  }
  async function simRequests(provider, pred = () => true) {
    const r = await h.request(`${stack.sim.url}/_control/requests?provider=${provider}`);
    return r.body.filter(pred);
  }
  async function mlQueue() {
    return (await h.request(`${stack.sim.url}/_control/modelslab/queue`)).body;
  }
  const token = (jobId) => crypto.createHmac('sha256', SERVER_SECRET).update(jobId).digest('hex').slice(0, 32);

  test('model ids: one grammar, with :version tails; unconfigured providers are not routed or listed', T, async () => {
    const models = await stack.api('GET', '/v1/models');
    assert.equal(models.status, 200, models.text);
    const listed = models.body.providers.map((p) => p.provider);
    assert.ok(listed.includes('fal') && listed.includes('modelslab'), models.text);
    assert.ok(!listed.includes('krea'), `krea is not configured: ${models.text}`);
    assert.ok(!listed.includes('falcopy'), models.text);
    // Loaded and checked all the same.
    const scripts = await stack.gr.admin('GET', '/v1/scripts');
    const names = (scripts.body.data || []).map((x) => x.name);
    assert.ok(names.includes('falcopy') && names.includes('krea'), scripts.text);
    // Not started: the configured fal fetched its keys, the unconfigured copy did not.
    await h.waitFor(async () => (await simRequests('fal', (q) => q.path.endsWith('/.well-known/jwks.json') && !q.query.who)).length > 0,
      10000, { what: "fal's JWKS fetch" });
    assert.equal((await simRequests('fal', (q) => q.query.who === 'falcopy')).length, 0, 'no JWKS fetch for an unconfigured adapter');
    let r0 = await stack.api('POST', '/v1/models/falcopy:fal-ai/flux/dev/run', { input: { prompt: 'x' } });
    assert.equal(r0.status, 404, r0.text);
    assert.match(r0.body.error.message, /falcopy.*not configured/);

    const run = (m) => stack.api('POST', `/v1/models/${m}/run`, { input: { prompt: 'x' } });
    let r = await run('krea:image/bfl/flux-1-dev');
    assert.equal(r.status, 404, r.text);
    assert.equal(r.body.error.code, 'MODEL_NOT_FOUND');
    assert.match(r.body.error.message, /krea.*not configured/);
    // An unprefixed id goes only to configured providers' patterns.
    r = await run('image/bfl/flux-1-dev');
    assert.equal(r.status, 404, r.text);
    assert.match(r.body.error.message, /no configured provider/);
    // owner/name:version without a provider prefix is a model id, routed as a whole.
    r = await run('owner/name:v1');
    assert.equal(r.status, 404, r.text);
    assert.match(r.body.error.message, /owner\/name:v1/);
    r = await run('replicate:owner/name:0123abcd');
    assert.equal(r.status, 404, r.text);
    assert.match(r.body.error.message, /no provider 'replicate'/);
    for (const bad of ['fal:owner/name:', 'fal:a:b:c', 'fal:fal-ai//flux', 'bad-prov:x']) {
      r = await run(bad);
      assert.equal(r.status, 404, `${bad}: ${r.text}`);
      assert.match(r.body.error.message, /invalid model id/, bad);
    }
    // A versioned id reaches the provider with its version.
    const id = await submit('fal:fal-ai/flux/dev:v2', { prompt: 'versioned' });
    const seen = await h.waitFor(async () => (await simRequests('fal', (q) => q.method === 'POST' && /fal-ai\/flux\/dev:v2/.test(q.path))).length > 0,
      10000, { what: 'the versioned submit at provsim' });
    assert.ok(seen);
    assert.equal((await getJob(id)).model_id, 'fal:fal-ai/flux/dev:v2');
  });

  test('job ids are job_ and 26 Crockford base32 characters, unique, in creation order; the submitted event names provider, model, request id, status and script version', T, async () => {
    const ids = [];
    for (let i = 0; i < 12; i++) ids.push(await submit('fal:fal-ai/flux/dev', { prompt: `id ${i}`, sim: { delay_ms: 100 } }));
    for (const id of ids) assert.match(id, /^job_[0-9A-HJKMNP-TV-Z]{26}$/);
    assert.equal(new Set(ids).size, ids.length);
    const times = ids.map((id) => [...id.slice(4, 14)].reduce((v, c) => v * 32 + '0123456789ABCDEFGHJKMNPQRSTVWXYZ'.indexOf(c), 0));
    assert.deepEqual([...times].sort((a, b) => a - b), times, 'the time part never goes back');
    assert.ok(Math.abs(times[0] - Date.now()) < 60000, `the time part is the creation time in ms: ${times[0]}`);
    for (const id of ids) {
      const j = await waitTerminal(id);
      assert.equal(j.status, 'succeeded', JSON.stringify(j));
      const sub = (await events(id)).filter((e) => e.kind === 'submitted').map(detail);
      assert.equal(sub.length, 1, JSON.stringify(sub));
      assert.deepEqual(Object.keys(sub[0]), ['provider', 'model', 'request_id', 'http_status', 'script_version', 'key_id']);
      assert.equal(sub[0].provider, 'fal');
      assert.equal(sub[0].model, 'fal-ai/flux/dev');
      assert.equal(sub[0].request_id, j.request_id);
      assert.equal(sub[0].http_status, 200);
      assert.match(sub[0].script_version, /^[0-9a-f]{8,}$/);
      assert.equal(sub[0].key_id, null);
    }
  });

  test('callback_requires: refused at submit without calling the provider; an alias fails over; poll-only providers work', T, async () => {
    const before = (await simRequests('artificialstudio')).length;
    const id = await submit('artificialstudio:create-image', { prompt: 'refused' });
    const j = await waitTerminal(id);
    assert.equal(j.status, 'failed');
    assert.equal(j.error.code, 'PROVIDER_UNAVAILABLE', JSON.stringify(j));
    assert.match(j.error.message, /public_url/);
    assert.match(j.error.message, /providers\.artificialstudio\.callbacks = false/);
    assert.equal((await simRequests('artificialstudio')).length, before, 'the provider was not called');

    const viaAlias = await submit('as-then-fal', { prompt: 'fails over' });
    const ja = await waitTerminal(viaAlias);
    assert.equal(ja.status, 'succeeded', JSON.stringify(ja));
    const fo = (await events(viaAlias)).filter((e) => e.kind === 'failover').map(detail);
    assert.equal(fo.length, 1);
    assert.equal(fo[0].code, 'PROVIDER_UNAVAILABLE');
    assert.match(fo[0].reason, /public_url/);
    assert.equal((await simRequests('artificialstudio')).length, before, 'the provider was not called');

    // ModelsLab needs https callbacks; with callbacks = false no webhook is
    // sent (provsim --strict-callbacks would refuse an http one) and the job
    // ends by poll.
    const ml = await submit('modelslab:images/text2img', { prompt: 'poll only', sim: { delay_ms: 200 } });
    const jm = await waitTerminal(ml);
    assert.equal(jm.status, 'succeeded', JSON.stringify(jm));
    const sent = await simRequests('modelslab', (q) => q.body && q.body.track_id === ml);
    assert.equal(sent.length, 1);
    assert.equal(sent[0].body.webhook, undefined, 'no callback URL sent');
    assert.equal((await ended(ml)).via, 'poll');
  });

  test('provsim --strict-callbacks refuses what the real providers refuse', T, async () => {
    const as = (webhook) => h.request(`${stack.sim.url}/artificialstudio/api/run`, {
      method: 'POST', headers: { authorization: 'k' }, body: { tool: 'create-image', input: { prompt: 'x' }, webhook } });
    for (const url of ['http://127.0.0.1:9/hook', 'https://127.0.0.1:9/hook', 'https://localhost:9/hook', 'https://10.0.0.1/hook']) {
      const r = await as(url);
      assert.equal(r.status, 400, `${url}: ${r.text}`);
      assert.equal(r.body.errors[0].field, 'webhook');
    }
    const ml = (webhook) => h.request(`${stack.sim.url}/modelslab/api/v6/images/text2img`, {
      method: 'POST', body: { key: 'k', prompt: 'x', webhook, sim: { delay_ms: 0 } } });
    let r = await ml('http://127.0.0.1:9/hook');
    assert.equal(r.status, 400, r.text);
    assert.equal(r.body.status, 'error');
    assert.match(r.body.message, /HTTPS/);
    // https at a loopback port nobody listens on: accepted (ModelsLab checks the scheme).
    r = await ml('https://127.0.0.1:9/hook');
    assert.equal(r.status, 200, r.text);
  });

  test('max_inflight: jobs past the cap wait in the store, in order, and the provider never sees its queue overflow', T, async () => {
    await h.waitFor(async () => (await mlQueue()).queued === 0, 10000, { what: 'an empty ModelsLab queue' });
    const before = await mlQueue();
    const ids = [];
    for (let i = 0; i < 4; i++) ids.push(await submit('modelslab:images/text2img', { prompt: `capped ${i}`, sim: { delay_ms: 300 } }));
    for (const id of ids) assert.equal((await waitTerminal(id, 30000)).status, 'succeeded');
    const after = await mlQueue();
    assert.equal(after.refused, before.refused, 'no 429 from the provider: the cap held');
    assert.equal(after.max_queued, 1);
    // The provider saw the submits in the order the jobs were made.
    const order = (await simRequests('modelslab', (q) => q.body && ids.includes(q.body.track_id) && /text2img$/.test(q.path)))
      .map((q) => q.body.track_id);
    assert.deepEqual(order, ids);
  });

  // Several instances share one store only on PostgreSQL (SQLite serves one).
  test('max_inflight holds across two instances sharing one PostgreSQL store', { ...T, skip: !pg.available() && 'no PostgreSQL binaries' }, async () => {
    await h.waitFor(async () => (await mlQueue()).queued === 0, 10000, { what: 'an empty ModelsLab queue' });
    const before = await mlQueue();
    const server = await pg.start();
    const grs = [];
    try {
      const store = await server.createDb('caps');
      for (let i = 0; i < 2; i++) {
        grs.push(await h.startGenrelay({ simUrl: stack.sim.url, config: (base) => Object.assign(coreConfig(base), { store }) }));
      }
      const ids = [];
      for (let i = 0; i < 4; i++) {
        const r = await grs[i % 2].api('POST', '/v1/models/modelslab:images/text2img/run', { input: { prompt: `two instances ${i}`, sim: { delay_ms: 300 } } });
        assert.equal(r.status, 202, r.text);
        ids.push(r.body.job_id);
      }
      for (const id of ids) {
        const j = await h.waitFor(async () => {
          const g = await grs[0].api('GET', `/v1/jobs/${id}`);
          return h.TERMINAL.has(g.body.status) && g.body;
        }, 30000, { what: `job ${id} terminal`, interval: 100 });
        assert.equal(j.status, 'succeeded');
      }
      const afterQ = await mlQueue();
      assert.equal(afterQ.refused, before.refused, 'no 429 from the provider: one cap for both instances');
      assert.equal(afterQ.max_queued, 1);
    } finally {
      for (const g of grs) await g.stop();
      await server.destroy();
    }
    for (const g of grs) await g.assertNoSanitizerReport();
  });

  test('a 429 with the wait in the body: the adapter returns retry_in, the core waits that long', T, async () => {
    await h.waitFor(async () => (await mlQueue()).queued === 0, 10000, { what: 'an empty ModelsLab queue' });
    const first = await submit('modelslab_nocap:images/text2img', { prompt: 'fills the queue', sim: { delay_ms: 20000 } });
    await h.waitFor(async () => (await getJob(first)).status === 'processing', 10000, { what: 'first job accepted' });
    const second = await submit('modelslab_nocap:images/text2img', { prompt: 'queue full' });
    const retry = await h.waitFor(async () => (await events(second)).find((e) => e.kind === 'submit_retry'), 10000,
      { what: 'a submit_retry event' });
    const d = detail(retry);
    assert.equal(d.delay_ms, 30000, JSON.stringify(d)); // retry_after: 30 in the body, no header
    assert.match(d.reason, /queued requests/);
    assert.equal((await getJob(second)).status, 'queued');
    // ModelsLab has no cancel call: its queue stays full for the first job's
    // 20 s; no later test uses it.
    for (const id of [first, second]) assert.equal((await stack.api('DELETE', `/v1/jobs/${id}`)).status, 200);
  });

  test('polls: a 5xx never ends a job; a 404 ends it only after poll_404_limit in a row', T, async () => {
    // 404: the adapter declares poll_404_limit = 2.
    const pollId = `nope${crypto.randomBytes(4).toString('hex')}`;
    const gone = await submit('polltest:x', { prompt: 'gone', poll_id: pollId });
    const jg = await waitTerminal(gone);
    assert.equal(jg.status, 'failed');
    assert.equal(jg.error.message, 'polltest: gone');
    const polls = await simRequests('artificialstudio', (q) => q.path.endsWith(`/api/generations/${pollId}`));
    assert.equal(polls.length, 2, 'ended at the second 404 in a row, not the first');
    assert.equal((await ended(gone)).via, 'poll');

    // 5xx: the surface goes down after the submit; polls keep going and
    // the job ends when it returns.
    const id = await submit('polltest:x', { prompt: 'outage', sim: { delay_ms: 200 } });
    await h.waitFor(async () => (await getJob(id)).status === 'processing', 10000, { what: 'accepted' });
    await stack.sim.down('artificialstudio');
    let rid = null;
    try {
      rid = (await getJob(id)).request_id;
      await h.waitFor(async () => (await simRequests('artificialstudio', (q) => q.path.endsWith(`/api/generations/${rid}`))).length >= 3,
        20000, { what: 'three polls answered 503' });
      assert.equal((await getJob(id)).status, 'processing', 'a 503 on a poll does not end the job');
    } finally {
      await stack.sim.up('artificialstudio');
    }
    const j = await waitTerminal(id);
    assert.equal(j.status, 'succeeded', JSON.stringify(j));
    assert.equal((await ended(id)).via, 'poll');
  });

  test('events: an end by callback says so; refused callbacks are recorded with their reason, at most 20 a job', T, async () => {
    const viaCb = await submit('fal:fal-ai/flux/dev', { prompt: 'by callback', sim: { delay_ms: 100 } });
    assert.equal((await waitTerminal(viaCb)).status, 'succeeded');
    assert.equal((await ended(viaCb)).via, 'callback');

    const id = await submit('polltest:x', { prompt: 'long', sim: { delay_ms: 60000 } });
    await h.waitFor(async () => (await getJob(id)).status === 'processing', 10000, { what: 'accepted' });
    const cb = (prov, tok, body, headers = {}) => h.request(`${stack.gr.url}/v1/callbacks/${prov}/${id}/${tok}`, {
      method: 'POST', headers: Object.assign({ 'content-type': 'application/json' }, headers), body });
    let r = await cb('polltest', 'f'.repeat(32), { status: 'success' });
    assert.equal(r.status, 401, r.text);
    r = await cb('polltest', token(id), { status: 'success' }, { 'x-refuse': '1' });
    assert.equal(r.status, 401, r.text);
    r = await cb('polltest', token(id), 'not json{');
    assert.equal(r.status, 200, r.text);
    r = await cb('fal', token(id), { status: 'OK' });
    assert.equal(r.status, 404, r.text);
    let refused = (await events(id)).filter((e) => e.kind === 'callback_refused').map(detail);
    const reasons = refused.map((d) => d.reason);
    assert.equal(reasons.length, 4, JSON.stringify(refused));
    assert.match(reasons[0], /invalid callback token/);
    assert.match(reasons[1], /verify refused it: refused by the test/);
    assert.match(reasons[2], /malformed/);
    assert.match(reasons[3], /does not run on fal/);
    assert.equal((await getJob(id)).status, 'processing', 'refused callbacks change nothing');
    // A flood is bounded.
    for (let i = 0; i < 30; i++) assert.equal((await cb('polltest', 'e'.repeat(32), {})).status, 401);
    refused = (await events(id)).filter((e) => e.kind === 'callback_refused');
    assert.equal(refused.length, 20);
    assert.equal((await stack.api('DELETE', `/v1/jobs/${id}`)).status, 200);
  });
});
