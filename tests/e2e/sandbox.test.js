'use strict';
// The Lua sandbox inside a running genrelay (issue 4). A provider script and
// a hook script each try every item of the list: os.execute, io.open,
// require outside scripts/lib and cjson, load of a binary chunk, debug,
// package.loadlib, string.rep to gigabytes, an endless loop (also inside
// pcall), deep recursion, collectgarbage abuse, changing the shared string
// metatable, reading another provider's secret. Each must fail that job (or
// that delivery attempt) with SCRIPT_ERROR naming the script, while the
// worker keeps answering /healthz and other customers' jobs go through.
// tests/unit/test_script_sandbox.c and test_script_limits.c cover the same list at the C level.
//
//   GENRELAY_BIN=$PWD/build/genrelay node --test tests/e2e/sandbox.test.js

const { describe, test } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const h = require('./lib/harness');
const sd = require('./lib/scriptdir');

const T = { timeout: 60000 };
const SECRET = h.ACME.webhook_secret;
const dir = sd.copyScripts();
const PWNED = path.join(dir, 'pwned'); // must never exist

const lq = (s) => JSON.stringify(s); // a JSON string is a valid Lua string literal here (ASCII)

// One line per action, so an error's line says which action raised.
// `line`: the core reports the line of the action (memory errors included).
const ACTIONS = {
  os_execute: { lua: `return os.execute(${lq(`touch ${PWNED}`)})`, re: /attempt to call a nil value \(field 'execute'\)/, line: true },
  io_open: { lua: `return io.open(${lq(PWNED)}, "w"):write("x")`, re: /attempt to index a nil value \(global 'io'\)/, line: true },
  require_os: { lua: 'return require("os").execute("id")', re: /require: module 'os' not allowed/, line: true },
  require_io: { lua: 'return require("io").open("/etc/passwd")', re: /require: module 'io' not allowed/, line: true },
  require_path: { lua: 'return require("../../../../etc/passwd")', re: /require: module .* not allowed/, line: true },
  require_lib_escape: { lua: 'return require("lib.util/../../../etc/passwd")', re: /require: module .* not allowed/, line: true },
  require_c_module: { lua: 'return require("socket.core")', re: /require: module 'socket.core' not allowed/, line: true },
  binary_chunk: { lua: 'return assert(load("\\27LuaT\\0\\25\\147\\r\\n\\26\\n\\4\\8\\8xV\\0\\0\\0\\0\\0\\0\\0\\0\\0\\0\\0\\40w@"))()', re: /attempt to load a binary chunk/, line: true },
  binary_chunk_mode: { lua: 'return assert(load("\\27Lua", "x", "b"))()', re: /attempt to load a binary chunk/, line: true },
  debug: { lua: 'return debug.sethook(function() end, "", 0)', re: /attempt to index a nil value \(global 'debug'\)/, line: true },
  loadlib: { lua: 'return package.loadlib("libc.so.6", "system")("id")', re: /attempt to index a nil value \(global 'package'\)/, line: true },
  string_rep: { lua: 'return #string.rep("x", 1 << 30)', re: /memory cap exceeded/, line: true },
  string_rep_many: { lua: 'local t = {} for i = 1, 64 do t[i] = string.rep("y", 32 << 20) .. i end return #t', re: /memory cap exceeded/, line: true },
  endless_loop: { lua: 'while true do end', re: /instruction budget exceeded/, line: true },
  endless_in_pcall: { lua: 'while true do pcall(function() while true do end end) end', re: /instruction budget exceeded/, line: true },
  deep_recursion: { lua: 'local function f(n) return 1 + f(n + 1) end return f(1)', re: /stack overflow|memory cap exceeded/, line: true },
  collectgarbage: { lua: 'collectgarbage("stop") return collectgarbage("collect")', re: /collectgarbage: only "count" is allowed/, line: true },
  string_metatable: { lua: 'getmetatable("").__index = { upper = function() return "pwned" end }', re: /attempt to index a boolean value/, line: true },
  other_secret: {
    lua: 'local k = ctx.secret("fal.key") or ctx.secret("providers.fal.key") or ctx.secret("../fal") or ctx.config.key or rawget(ctx, "fal") return "Key " .. k',
    re: /attempt to concatenate a nil value \(local 'k'\)/, line: true,
  },
};
// Allowed: a script may change its own string table; no other script sees it.
const CLOBBER = 'string.upper = function() return "pwned" end string.format = function() return "pwned" end string.gsub = function() return "pwned", 0 end';

function actionTable() {
  const lines = Object.entries(ACTIONS).map(([k, a]) => `A.${k} = function(ctx) ${a.lua} end -- @${k}`);
  lines.push(`A.clobber_own_string = function(ctx) ${CLOBBER} end -- @clobber_own_string`);
  return `local A = {}\n${lines.join('\n')}\n`;
}

const EVIL_PROVIDER = `-- Tries, on request (input.action), what the sandbox must refuse.
${actionTable()}
return {
	name = "evil",
	models = { "evil/.+" },
	submit = function(job, ctx)
		local act = A[job.input.action]
		if act then act(ctx) end
		return { method = "GET", url = ctx.config.base_url .. "/.well-known/jwks.json" }
	end,
	on_submitted = function(res, job, ctx)
		return { state = "succeeded", request_id = "evil-" .. job.id,
			output = { type = "image", items = { { type = "image", url = "https://example.invalid/" .. ("ok"):upper() } } } }
	end,
	on_callback = function(req, job, ctx) return { state = "processing" } end,
}
`;
const EVIL_HOOK = `-- Tries, on request (the job's track_id), what the sandbox must refuse.
${actionTable()}
return {
	transform = function(event, ctx)
		local act = A[event.track_id]
		if act then act(ctx) end
		return { body = { survived = event.track_id, job_id = event.job_id } }
	end,
}
`;
// The bystanders' hook uses the string methods the evil scripts clobber.
const SHOUT_HOOK = `return {
	transform = function(event, ctx)
		return { body = { job_id = event.job_id, status = event.status:upper(), line = string.format("%s/%d", "ok", 1),
			clean = ("a-b"):gsub("-", "+") } }
	end,
}
`;

sd.write(dir, 'providers/evil.lua', EVIL_PROVIDER);
sd.write(dir, 'hooks/evil.lua', EVIL_HOOK);
sd.write(dir, 'hooks/shout.lua', SHOUT_HOOK);

const customer = (name, hook) => ({ api_key: `${name}-key`, webhook_secret: SECRET, hook });
const CUSTOMERS = { acme: customer('acme', 'default'), mallory: customer('mallory', 'evil'), globex: customer('globex', 'shout') };

describe('the sandbox in a running genrelay', () => {
  const stack = h.useStack({
    config: (base) =>
      h.deepMerge(base, {
        scripts: dir,
        workers: 1, // one worker: the one that ran the script must keep serving
        customers: CUSTOMERS,
        providers: { evil: { base_url: base.providers.fal.base_url, key: 'evil-own-key' } },
        webhooks: { retry: [0.5, 1, 2] },
      }),
  });
  const uniq = (name) => `${name}-${crypto.randomBytes(5).toString('hex')}`;
  const as = (cust) => stack.gr.as(CUSTOMERS[cust].api_key);
  const errors = {}; // action -> {provider, hook} messages, for the line check

  async function submit(cust, model, input, extra = {}) {
    const r = await as(cust)('POST', `/v1/models/${model}/run`, { input, ...extra });
    assert.equal(r.status, 202, r.text);
    return r.body.job_id;
  }
  async function terminal(cust, id) {
    return h.waitFor(async () => {
      const r = await as(cust)('GET', `/v1/jobs/${id}`);
      return ['succeeded', 'failed', 'canceled'].includes(r.body.status) && r.body;
    }, 30000, { what: `job ${id} terminal`, interval: 50 });
  }
  async function firstAttempt(cust, id) {
    return h.waitFor(async () => {
      const r = await as(cust)('GET', `/v1/jobs/${id}/deliveries`);
      const d = r.body.data[0];
      return d && d.attempts.length >= 1 && d;
    }, 30000, { what: `first delivery attempt of ${id}`, interval: 50 });
  }
  // /healthz answers while `work` runs and after; a globex job (fal, shout
  // hook) started alongside goes through and is delivered in its shape.
  async function whileServing(work) {
    let stop = false;
    const health = [];
    const pinger = (async () => {
      while (!stop) {
        const r = await h.request(stack.gr.url + '/healthz', { timeoutMs: 5000 }).catch((e) => ({ status: e.message }));
        health.push(r.status);
        await h.sleep(25);
      }
    })();
    const p = `/bystander/${uniq('b')}`;
    const bystander = submit('globex', 'fal-ai/flux/dev', { prompt: uniq('by') }, { webhook_url: stack.receiver.url + p });
    const result = await work();
    const id = await bystander;
    const [d] = await h.waitFor(async () => {
      const l = (await stack.receiver.forPath(p)).filter((x) => x.answered === 200);
      return l.length && l;
    }, 20000, { what: 'the bystander delivery', interval: 50 });
    stop = true;
    await pinger;
    const hr = await h.request(stack.gr.url + '/healthz');
    health.push(hr.status);
    assert.ok(health.length >= 2 && health.every((s) => s === 200), `/healthz answered 200 throughout: ${health}`);
    assert.deepEqual(d.body, { job_id: id, status: 'SUCCEEDED', line: 'ok/1', clean: 'a+b' }, 'another customer\'s job, its hook unaffected');
    assert.equal(d.verified, true);
    return result;
  }
  function expectMessage(msg, file, action) {
    const a = ACTIONS[action];
    const text = file.startsWith('providers') ? EVIL_PROVIDER : EVIL_HOOK;
    const line = sd.lineOf(text, `-- @${action}`);
    const head = a.line ? `${file}:${line}: ` : `${file}(:${line})?: `;
    assert.match(msg, new RegExp('^' + head.replace(/[.\/]/g, (c) => '\\' + c) + '.*' + a.re.source), `${action}: ${msg}`);
    assert.ok(!msg.includes('fal-test-key') && !msg.includes('evil-own-key'), 'no secret in the message');
  }

  for (const action of Object.keys(ACTIONS)) {
    test(`provider script: ${action} fails the job with SCRIPT_ERROR; the worker keeps serving`, T, async () => {
      const p = `/evilprov/${uniq(action)}`;
      const j = await whileServing(async () => {
        const id = await submit('acme', 'evil/sandbox', { action }, { webhook_url: stack.receiver.url + p });
        return terminal('acme', id);
      });
      assert.equal(j.status, 'failed');
      assert.equal(j.error.code, 'SCRIPT_ERROR');
      expectMessage(j.error.message, 'providers/evil.lua', action);
      (errors[action] = errors[action] || {}).provider = j.error.message;
      // The customer is told, through its own (default) hook.
      const [d] = await h.waitFor(async () => {
        const l = (await stack.receiver.forPath(p)).filter((x) => x.answered === 200);
        return l.length && l;
      }, 20000, { what: 'delivery of the failed job' });
      assert.equal(d.body.error.code, 'SCRIPT_ERROR');
      assert.equal(fs.existsSync(PWNED), false, 'nothing written on the machine');
    });
  }

  for (const action of Object.keys(ACTIONS)) {
    test(`hook script: ${action} fails the delivery attempt with SCRIPT_ERROR; the worker keeps serving`, T, async () => {
      const p = `/evilhook/${uniq(action)}`;
      const d = await whileServing(async () => {
        const id = await submit('mallory', 'fal-ai/flux/dev', { prompt: uniq('m') }, { webhook_url: stack.receiver.url + p, track_id: action });
        return firstAttempt('mallory', id);
      });
      const a = d.attempts[0];
      assert.equal(a.status_code, null, 'nothing sent');
      assert.ok(a.error.startsWith('SCRIPT_ERROR: '), a.error);
      expectMessage(a.error.slice('SCRIPT_ERROR: '.length), 'hooks/evil.lua', action);
      assert.equal(a.script_version, sd.version(EVIL_HOOK));
      assert.equal(d.status, 'pending', 'retried on the schedule');
      (errors[action] = errors[action] || {}).hook = a.error;
      assert.equal((await stack.receiver.forPath(p)).length, 0);
      assert.equal(fs.existsSync(PWNED), false, 'nothing written on the machine');
    });
  }

  test('a script that changes its own string table affects no other script', T, async () => {
    // Provider: the evil adapter clobbers string.upper/format/gsub and goes
    // on; fal and the shout hook (bystander) still get the real ones.
    const j = await whileServing(async () => {
      const id = await submit('acme', 'evil/sandbox', { action: 'clobber_own_string' });
      return terminal('acme', id);
    });
    assert.equal(j.status, 'succeeded');
    assert.equal(j.output.items[0].url, 'https://example.invalid/pwned', 'its own state did change');
    // Hook: same inside the evil hook.
    const p = `/evilhook/${uniq('clobber')}`;
    await whileServing(async () => {
      await submit('mallory', 'fal-ai/flux/dev', { prompt: uniq('c') }, { webhook_url: stack.receiver.url + p, track_id: 'clobber_own_string' });
      return h.waitFor(async () => (await stack.receiver.forPath(p)).some((x) => x.answered === 200), 20000, { what: 'clobbering hook delivered' });
    });
  });

  test('after all of it the evil scripts still work and the scripts are unchanged', T, async () => {
    const j = await whileServing(async () => terminal('acme', await submit('acme', 'evil/sandbox', { action: 'none' })));
    assert.equal(j.status, 'succeeded');
    const s = await sd.scripts(stack.gr.admin);
    assert.equal(s['providers/evil'].version, sd.version(EVIL_PROVIDER));
    assert.equal(s['hooks/evil'].version, sd.version(EVIL_HOOK));
    assert.equal(s['providers/evil'].last_error, null);
    assert.equal(fs.existsSync(PWNED), false);
    assert.equal(stack.gr.running(), true);
  });

  // Issue 4 wants every SCRIPT_ERROR to name script and line, memory errors
  // included (the allocator records where the script was).
  test('every sandbox SCRIPT_ERROR names the script line', T, () => {
    const missing = [];
    for (const [action, m] of Object.entries(errors)) {
      for (const [where, msg] of Object.entries(m)) {
        if (!/^(SCRIPT_ERROR: )?(providers|hooks)\/evil\.lua:\d+: /.test(msg)) missing.push(`${where} ${action}: ${msg}`);
      }
    }
    assert.deepEqual(missing, []);
  });
});
