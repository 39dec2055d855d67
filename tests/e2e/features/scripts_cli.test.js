'use strict';
// `genrelay scripts test FILE --event JSON [--fn NAME] [--config FILE]`:
// runs one hook transform or one provider step on a payload and
// prints the result as JSON; exits non-zero with the script error on failure.
// The file is loaded alone (checked, examples run), with scripts/lib beside it.
//
//   GENRELAY_BIN=$PWD/build/genrelay node --test tests/e2e/features/scripts_cli.test.js

const { describe, test } = require('node:test');
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const h = require('../lib/harness');
const sd = require('../lib/scriptdir');

const SUCCEEDED = {
  type: 'job.succeeded', job_id: 'job_1', status: 'succeeded', model_id: 'fal-ai/flux/dev', provider: 'fal',
  request_id: 'r1', track_id: 't1', error: null, created_at: '2026-01-01T00:00:00.000Z', completed_at: '2026-01-01T00:00:01.000Z',
  output: { type: 'image', items: [{ type: 'image', url: 'https://x/a.png', content_type: 'image/png' }, { type: 'image', url: 'https://x/b.png' }] },
};

const dir = sd.copyScripts({
  'hooks/raises.lua': 'return {\n\ttransform = function(event, ctx)\n\t\terror("bad shape for " .. event.status)\n\tend,\n}\n',
  'hooks/skips.lua': 'return { transform = function(event, ctx) return nil end }\n',
  'hooks/spins.lua': 'return {\n\ttransform = function(event, ctx)\n\t\twhile true do end\n\tend,\n}\n',
  'hooks/bloats.lua': 'return { transform = function(event, ctx) return { body = string.rep("x", 1 << 30) } end }\n',
  'hooks/bad_example.lua': 'return {\n\ttransform = function(event, ctx) return { body = { a = 1 } } end,\n\texamples = { { fn = "transform", args = { {} }, expect = { body = { a = 2 } } } },\n}\n',
  'hooks/uses_lib.lua': 'local M = require("lib.shape")\nreturn { transform = function(event, ctx) return { body = M.wrap(event) } end }\n',
  'hooks/broken_sibling.lua': 'return {{{ this is not Lua\n',
  'lib/shape.lua': 'return { wrap = function(e) return { wrapped = e.job_id, n = #e.output.items } end }\n',
  'providers/signs.lua': `return {
	name = "signs",
	submit = function(job, ctx)
		return { url = ctx.config.base_url .. "/run", headers = { Authorization = "Bearer " .. (ctx.secret("key") or "none") },
			body = { prompt = job.input.prompt, hook = ctx.callback_url } }
	end,
	on_submitted = function(res, job, ctx) return { state = "processing", request_id = res.json.id } end,
	on_callback = function(req, job, ctx) return { state = req.json.ok and "succeeded" or "failed", output = req.json.output } end,
	verify = function(req, ctx, job)
		if req.headers["x-sig"] ~= ctx.hex(ctx.hmac_sha256(ctx.secret("webhook_secret") or "", req.body)) then return false, "bad signature" end
		return true
	end,
}
`,
});
const configPath = path.join(dir, 'test.conf.lua');
fs.writeFileSync(configPath, h.renderConfig({
  public_url: 'http://gw.example:9000',
  providers: { signs: { base_url: 'http://prov.example', key: 'k-123', webhook_secret: 'whs' } },
  limits: { lua_instructions: 1000000, lua_memory_mb: 16 },
}));

// Runs genrelay (bounded); input goes to stdin.
function run(args, input) {
  const r = spawnSync(h.BIN, args, { input: input || '', encoding: 'utf8', timeout: 20000 });
  if (r.error) throw r.error;
  return { code: r.status, out: r.stdout, err: r.stderr, json: () => JSON.parse(r.stdout) };
}
const f = (rel) => path.join(dir, rel);
const test1 = (file, event, ...more) => run(['scripts', 'test', f(file), '--event', typeof event === 'string' ? event : JSON.stringify(event), ...more]);

describe('genrelay scripts test', () => {
  test('a shipped hook: prints the transform result for the given event', () => {
    const r = test1('hooks/modelslab_compat.lua', SUCCEEDED);
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(r.json(), { body: { status: 'success', id: 'job_1', output: ['https://x/a.png', 'https://x/b.png'], track_id: 't1' } });
    const s = test1('hooks/slack.lua', { ...SUCCEEDED, type: 'job.failed', status: 'failed', output: null, error: { code: 'PROVIDER_FAILURE', message: 'a <b>' } });
    assert.equal(s.code, 0, s.err);
    assert.equal(s.json().body.text, ':x: fal-ai/flux/dev failed (job_1): a &lt;b&gt;');
    const d = test1('hooks/default.lua', SUCCEEDED, '--fn', 'transform');
    assert.equal(d.code, 0, d.err);
    assert.deepEqual(d.json(), { body: SUCCEEDED });
  });

  test('a hook that returns nil prints null (the delivery would be skipped)', () => {
    const r = test1('hooks/skips.lua', SUCCEEDED);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out.trim(), 'null');
    assert.match(r.err, /skipped/);
  });

  test('the file is loaded alone: a broken sibling does not matter; scripts/lib beside it is requirable', () => {
    const r = test1('hooks/uses_lib.lua', SUCCEEDED);
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(r.json(), { body: { wrapped: 'job_1', n: 2 } });
    assert.doesNotMatch(r.err, /broken_sibling/);
  });

  test('a script error exits non-zero with the error naming file and line', () => {
    const r = test1('hooks/raises.lua', SUCCEEDED);
    assert.equal(r.code, 1);
    assert.equal(r.out, '');
    assert.equal(r.err.trim(), 'hooks/raises.lua:3: bad shape for succeeded');
    const spin = test1('hooks/spins.lua', SUCCEEDED, '--config', configPath);
    assert.equal(spin.code, 1);
    assert.equal(spin.err.trim(), 'hooks/spins.lua:3: instruction budget exceeded');
    const bloat = test1('hooks/bloats.lua', SUCCEEDED, '--config', configPath);
    assert.equal(bloat.code, 1);
    assert.match(bloat.err, /^hooks\/bloats\.lua(:\d+)?: memory cap exceeded/);
  });

  test('a file that does not load or fails its examples exits non-zero with the reason', () => {
    const ex = test1('hooks/bad_example.lua', SUCCEEDED);
    assert.equal(ex.code, 1);
    assert.match(ex.err, /^hooks\/bad_example\.lua: example 1 \(transform\): body\.a: expected 2, got 1/);
    const syn = test1('hooks/broken_sibling.lua', SUCCEEDED);
    assert.equal(syn.code, 1);
    assert.match(syn.err, /^hooks\/broken_sibling\.lua:1: /);
    const missing = test1('hooks/nothere.lua', SUCCEEDED);
    assert.equal(missing.code, 1);
    assert.match(missing.err, /nothere\.lua: cannot open/);
    const outside = run(['scripts', 'test', configPath, '--event', '{}']);
    assert.equal(outside.code, 1);
    assert.match(outside.err, /must be under providers\/ or hooks\/|not a script name/);
  });

  test('a provider step: --fn with one argument or an argument list; the config\'s settings and secrets apply', () => {
    const job = { id: 'job_77', model: 'm', model_id: 'signs:m', input: { prompt: 'a cat' }, data: {} };
    const sub = test1('providers/signs.lua', job, '--fn', 'submit', '--config', configPath);
    assert.equal(sub.code, 0, sub.err);
    assert.deepEqual(sub.json(), {
      url: 'http://prov.example/run', headers: { Authorization: 'Bearer k-123' },
      body: { prompt: 'a cat', hook: 'http://gw.example:9000/v1/callbacks/signs/job_77/test-token' },
    });
    const cb = test1('providers/signs.lua', [{ headers: {}, body: '{}', json: { ok: true, output: { type: 'image', items: [] } } }, job], '--fn', 'on_callback');
    assert.equal(cb.code, 0, cb.err);
    assert.equal(cb.json().state, 'succeeded');
    const own = test1('providers/signs.lua', job, '--fn', 'submit', '--config', configPath, '--ctx', '{"callback_url":"https://cb.example/x"}');
    assert.equal(own.json().body.hook, 'https://cb.example/x');
  });

  test('verify prints its verdict and reason', () => {
    const body = '{"ok":true}';
    const sig = require('node:crypto').createHmac('sha256', 'whs').update(body).digest('hex');
    const job = { id: 'job_1', data: {} };
    const good = test1('providers/signs.lua', [{ headers: { 'x-sig': sig }, body }, job], '--fn', 'verify', '--config', configPath);
    assert.equal(good.code, 0, good.err);
    assert.equal(good.out.trim(), 'true');
    const bad = test1('providers/signs.lua', [{ headers: { 'x-sig': 'nope' }, body }, job], '--fn', 'verify', '--config', configPath);
    assert.equal(bad.code, 0, bad.err);
    assert.equal(bad.out.trim(), 'false');
    assert.match(bad.err, /verify: bad signature/);
  });

  test('--event @FILE and - (stdin)', () => {
    const ev = path.join(dir, 'event.json');
    fs.writeFileSync(ev, JSON.stringify(SUCCEEDED));
    const a = run(['scripts', 'test', f('hooks/first_url.lua'), '--event', `@${ev}`]);
    assert.equal(a.code, 0, a.err);
    assert.deepEqual(a.json(), { body: { job_id: 'job_1', status: 'succeeded', url: 'https://x/a.png' } });
    const b = run(['scripts', 'test', f('hooks/first_url.lua'), '--event', '-'], JSON.stringify(SUCCEEDED));
    assert.equal(b.code, 0, b.err);
    assert.deepEqual(b.json(), a.json());
  });

  test('usage errors exit 2', () => {
    for (const args of [
      ['scripts', 'test', f('hooks/default.lua')], // no --event
      ['scripts', 'test', '--event', '{}'], // no file
      ['scripts', 'test', f('hooks/default.lua'), '--event', '{nope'], // bad JSON
      ['scripts', 'test', f('hooks/default.lua'), '--event', '{}', '--bogus', 'x'],
      ['scripts', 'test', f('hooks/default.lua'), '--event', '{}', '--fn', 'submit'], // hooks have transform only
      ['scripts', 'test', f('providers/signs.lua'), '--event', '{}'], // provider without --fn
      ['scripts', 'test', f('providers/signs.lua'), '--event', '{}', '--fn', 'os_execute'],
      ['scripts', 'test', f('hooks/default.lua'), '--event', '@/nonexistent/event.json'],
    ]) {
      const r = run(args);
      assert.equal(r.code, 2, `${args.slice(2).join(' ')}: ${r.err}`);
      assert.ok(r.err.length > 0);
      assert.equal(r.out, '');
    }
  });
});
