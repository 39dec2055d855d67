/*
 * test_script.c: the Lua host (core/script.c): sandbox, limits, ctx,
 * calls, routing, examples and hot reload. Scripts are written into a
 * temporary directory by the test itself.
 */
#include "check.h"
#include "config.h"
#include "log.h"
#include "script.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char root[] = "/tmp/genrelay-script-XXXXXX";
static struct config *cfg;
static struct script_host *host;

static void write_file(const char *rel, const char *text)
{
	char path[512];
	FILE *f;
	snprintf(path, sizeof path, "%s/%s", root, rel);
	f = fopen(path, "w");
	if (!f) {
		perror(path);
		exit(1);
	}
	fputs(text, f);
	fclose(f);
}

static void remove_file(const char *rel)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", root, rel);
	unlink(path);
}

/* ------------------------------------------------------------ the scripts */

static const char good_lua[] =
	"local util = require('lib.util')\n"
	"return {\n"
	"  name = 'good',\n"
	"  models = { 'good/.+', 'exact%-model' },\n"
	"  callback = true,\n"
	"  defaults = { base_url = 'https://good.example', api_key = 'default-key', timeout = 5 },\n"
	"  submit = function(job, ctx)\n"
	"    return { method = 'POST', url = ctx.config.base_url .. '/run/' .. job.model,\n"
	"             headers = { Authorization = 'Key ' .. (ctx.secret('key') or 'none') },\n"
	"             body = { prompt = job.input.prompt, webhook = ctx.callback_url } }\n"
	"  end,\n"
	"  on_submitted = function(res, job, ctx)\n"
	"    return { state = 'processing', request_id = res.json.request_id }\n"
	"  end,\n"
	"  on_callback = function(req, job, ctx)\n"
	"    if req.json.status ~= 'OK' then\n"
	"      return { state = 'failed', error = { code = 'PROVIDER_FAILURE', message = req.json.error } }\n"
	"    end\n"
	"    return { state = 'succeeded', output = { type = 'image', items = { { type = 'image', url = req.json.url } } } }\n"
	"  end,\n"
	"  verify = function(req, ctx, job)\n"
	"    if type(ctx) ~= 'table' or not ctx.json then error('ctx is not the second argument') end\n"
	"    if job and job.id ~= 'job_1' then error('job is not the third argument') end\n"
	"    if req.headers['x-sig'] == 'good' then return true end\n"
	"    return false, 'bad signature'\n"
	"  end,\n"
	"  upper = function(s, ctx) return s:upper() end,\n"
	"  lib = function(ctx) return util.value end,\n"
	"  version = function(ctx) return 1 end,\n"
	"  examples = {\n"
	"    { name = 'callback ok', fn = 'on_callback',\n"
	"      args = { { json = { status = 'OK', url = 'u' }, headers = {} }, { id = 'job_1', data = {} } },\n"
	"      expect = { state = 'succeeded', output = { items = { { url = 'u' } } } } },\n"
	"    { fn = 'submit', args = { { id = 'job_1', model = 'good/m', input = { prompt = 'p' } } },\n"
	"      expect = { url = 'https://good.example/run/good/m', headers = { Authorization = 'Key example-key' },\n"
	"                 body = { webhook = 'https://genrelay.invalid/v1/callbacks/good/job_example/example-token' } } },\n"
	"    { fn = 'submit', args = { { id = 'job_1', model = 'm', input = {} } },\n"
	"      ctx = { secrets = { key = 'given' }, callback_url = 'http://cb' },\n"
	"      expect = { headers = { Authorization = 'Key given' }, body = { webhook = 'http://cb' } } },\n"
	"    { fn = 'on_submitted', args = { { status = 200 }, {} }, expect_error = 'attempt to index' },\n"
	"  },\n"
	"}\n";

/* Line numbers matter below: boom is on line 6, spin on line 7. */
static const char evil_lua[] =
	"return {\n"
	"  name = 'evil',\n"
	"  models = { '^evil/.*$' },\n"
	"  submit = function() return {} end, on_submitted = function() return {} end,\n"
	"  on_callback = function() return {} end,\n"
	"  boom = function(ctx) error('kaboom') end,\n"
	"  spin = function(ctx) while true do end end,\n"
	"  ping = function(ctx) return 'pong' end,\n"
	"  eval = function(code, ctx)\n"
	"    local f, e = load(code, '=(eval)')\n"
	"    if not f then error(e, 0) end\n"
	"    return f(ctx)\n"
	"  end,\n"
	"  echo = function(a, b, ctx) return { a = a, b = b, n = select('#', a, b, ctx), cb = ctx.callback_url, keys = ctx.keys } end,\n"
	"  ret_fn = function(ctx) return { f = print } end,\n"
	"  ret_nil = function(ctx) return nil end,\n"
	"  ret_empty = function(ctx) return { list = ctx.array({}), obj = {}, null = ctx.null } end,\n"
	"  secret = function(name, ctx) return { v = ctx.secret(name), config = ctx.config } end,\n"
	"  clobber = function(ctx) string.upper = function() return 'pwned' end; return ('x'):upper() end,\n"
	"  work = function(n, ctx) local s = 0 for i = 1, n do s = s + i end return s end,\n"
	"}\n";

static const char hook_lua[] =
	"return {\n"
	"  transform = function(event, ctx)\n"
	"    if event.type == 'job.skip' then return nil end\n"
	"    return { body = { id = event.job_id, kind = event.type, secret = ctx.secret('key') },\n"
	"             headers = { ['X-Event'] = event.type } }\n"
	"  end,\n"
	"  examples = { { fn = 'transform', args = { { job_id = 'job_1', type = 'job.succeeded' } },\n"
	"                 expect = { body = { id = 'job_1' }, headers = { ['X-Event'] = 'job.succeeded' } } } },\n"
	"}\n";

static const char util_v1[] = "return { value = 'lib-v1' }\n";
static const char util_v2[] = "return { value = 'lib-v2' }\n";

/* --------------------------------------------------------------- helpers */

static json_t *J(const char *text)
{
	json_error_t e;
	json_t *j = json_loads(text, JSON_DECODE_ANY, &e);
	if (!j)
		fprintf(stderr, "bad test json: %s: %s\n", text, e.text);
	return j;
}

/* Calls name.fn with args given as a JSON array text; returns rc. */
static int call(const char *name, const char *fn, const char *args_json,
		const struct script_ctx *ctx, json_t **out, char *err, size_t errlen)
{
	json_t *args = J(args_json ? args_json : "[]");
	json_t *argv[8];
	size_t n = json_array_size(args);
	for (size_t i = 0; i < n && i < 8; i++)
		argv[i] = json_array_get(args, i);
	int rc = script_call(host, SCRIPT_PROVIDER, name, fn, argv, n, ctx, out, err, errlen);
	json_decref(args);
	return rc;
}

static int ping_ok(void)
{
	json_t *out = NULL;
	char err[512];
	int rc = call("evil", "ping", NULL, NULL, &out, err, sizeof err);
	int ok = rc == 0 && json_is_string(out) && strcmp(json_string_value(out), "pong") == 0;
	json_decref(out);
	return ok;
}

/* evil.eval(code) must fail with an error containing want, then the host
 * must still serve a normal call. */
static void check_blocked(const char *code, const char *want)
{
	json_t *out = NULL;
	char err[512] = "";
	json_t *arg = json_string(code);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int rc = script_call(host, SCRIPT_PROVIDER, "evil", "eval", &arg, 1, NULL, &out,
			     err, sizeof err);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (getenv("GENRELAY_TEST_VERBOSE"))
		fprintf(stderr, "%6.1f ms  %s\n", ((double)(t1.tv_sec - t0.tv_sec) * 1e3 +
			(double)(t1.tv_nsec - t0.tv_nsec) / 1e6), code);
	CHECK_EQ_INT(rc, -1);
	CHECK(strncmp(err, "providers/evil.lua", 18) == 0);
	CHECK(strstr(err, want) != NULL);
	if (rc != -1 || !strstr(err, want))
		fprintf(stderr, "    code: %s\n    err: %s\n    want: %s\n", code, err, want);
	CHECK(ping_ok());
	json_decref(out);
	json_decref(arg);
}

/* evil.eval(code) must succeed and return JSON equal to want_json. */
static void check_eval(const char *code, const char *want_json)
{
	json_t *out = NULL, *want = J(want_json);
	char err[512] = "";
	json_t *arg = json_string(code);
	int rc = script_call(host, SCRIPT_PROVIDER, "evil", "eval", &arg, 1, NULL, &out,
			     err, sizeof err);
	CHECK_EQ_INT(rc, 0);
	CHECK(out && want && json_equal(out, want));
	if (rc != 0 || !out || !json_equal(out, want)) {
		char *s = out ? json_dumps(out, JSON_ENCODE_ANY) : NULL;
		fprintf(stderr, "    code: %s\n    got: %s err: %s\n    want: %s\n", code,
			s ? s : "-", err, want_json);
		free(s);
	}
	json_decref(out);
	json_decref(want);
	json_decref(arg);
}

static json_t *list_entry(const char *name)
{
	json_t *l = script_host_list(host), *v, *r = NULL;
	size_t i;
	json_array_foreach(l, i, v)
		if (strcmp(json_string_value(json_object_get(v, "name")), name) == 0)
			r = json_incref(v);
	json_decref(l);
	return r;
}

static const char *last_error(const char *name, char *buf, size_t n)
{
	json_t *e = list_entry(name);
	const char *s = e ? json_string_value(json_object_get(e, "last_error")) : NULL;
	snprintf(buf, n, "%s", s ? s : "");
	json_decref(e);
	return s ? buf : NULL;
}

/* Makes sure a rewrite is seen as a change even within one clock tick. */
static void touch_later(const char *rel)
{
	char path[512];
	struct timespec ts[2];
	static long bump = 1;
	snprintf(path, sizeof path, "%s/%s", root, rel);
	clock_gettime(CLOCK_REALTIME, &ts[0]);
	ts[1] = ts[0];
	ts[1].tv_sec += bump++;
	utimensat(AT_FDCWD, path, ts, 0);
}

/* ------------------------------------------------------------------ tests */

static void test_load(void)
{
	char err[1024];
	int rc = script_host_load(host, err, sizeof err);
	CHECK_EQ_INT(rc, 0);
	if (rc != 0)
		fprintf(stderr, "    load: %s\n", err);
	CHECK(script_exists(host, SCRIPT_PROVIDER, "good"));
	CHECK(script_exists(host, SCRIPT_PROVIDER, "evil"));
	CHECK(script_exists(host, SCRIPT_HOOK, "default"));
	CHECK(!script_exists(host, SCRIPT_HOOK, "good"));
	CHECK(!script_exists(host, SCRIPT_PROVIDER, "nope"));
	CHECK(script_has_fn(host, SCRIPT_PROVIDER, "good", "submit"));
	CHECK(script_has_fn(host, SCRIPT_PROVIDER, "good", "verify"));
	CHECK(!script_has_fn(host, SCRIPT_PROVIDER, "good", "poll"));
	CHECK(!script_has_fn(host, SCRIPT_PROVIDER, "good", "name"));
	const char *v = script_version(host, SCRIPT_PROVIDER, "good");
	CHECK(v != NULL && strlen(v) == 12);
	CHECK(script_version(host, SCRIPT_PROVIDER, "nope") == NULL);
}

static void test_calls(void)
{
	json_t *out = NULL;
	char err[512];
	struct script_ctx ctx = { .provider = "good",
				  .callback_url = "http://127.0.0.1:8080/v1/callbacks/good/job_9/tok" };

	/* submit with the configured secret and settings */
	int rc = call("good", "submit", "[{\"id\":\"job_9\",\"model\":\"good/x\",\"input\":{\"prompt\":\"cat\"}}]",
		      &ctx, &out, err, sizeof err);
	CHECK_EQ_INT(rc, 0);
	CHECK_STR_EQ(json_string_value(json_object_get(out, "url")), "http://sim/good/run/good/x");
	CHECK_STR_EQ(json_string_value(json_object_get(json_object_get(out, "headers"), "Authorization")),
		     "Key good-secret");
	CHECK_STR_EQ(json_string_value(json_object_get(json_object_get(out, "body"), "webhook")),
		     ctx.callback_url);
	CHECK_STR_EQ(json_string_value(json_object_get(json_object_get(out, "body"), "prompt")), "cat");
	json_decref(out);

	/* callback parsing */
	rc = call("good", "on_callback", "[{\"json\":{\"status\":\"OK\",\"url\":\"https://x/y.png\"},\"headers\":{}},{\"id\":\"job_9\"}]",
		  &ctx, &out, err, sizeof err);
	CHECK_EQ_INT(rc, 0);
	CHECK_STR_EQ(json_string_value(json_object_get(out, "state")), "succeeded");
	CHECK(json_is_array(json_object_get(json_object_get(out, "output"), "items")));
	json_decref(out);

	/* verify: ctx is the second argument; the reason comes back in err */
	rc = call("good", "verify", "[{\"headers\":{\"x-sig\":\"good\"}},{\"id\":\"job_1\"}]", &ctx, &out,
		  err, sizeof err);
	CHECK_EQ_INT(rc, 0);
	CHECK(json_is_true(out));
	CHECK_STR_EQ(err, "");
	json_decref(out);
	rc = call("good", "verify", "[{\"headers\":{\"x-sig\":\"bad\"}},{\"id\":\"job_1\"}]", &ctx, &out,
		  err, sizeof err);
	CHECK_EQ_INT(rc, 0);
	CHECK(json_is_false(out));
	CHECK_STR_EQ(err, "bad signature");
	json_decref(out);
	rc = call("good", "verify", "[{\"headers\":{}}]", NULL, &out, err, sizeof err);
	CHECK_EQ_INT(rc, 0); /* verify(req, ctx) with no job */
	CHECK(json_is_false(out));
	json_decref(out);

	/* arguments and ctx */
	struct script_ctx c2 = { .provider = "evil", .callback_url = "http://cb" };
	c2.keys = J("[{\"kty\":\"OKP\",\"x\":\"abc\"}]");
	rc = call("evil", "echo", "[[], {\"k\":[1,2,{\"z\":null}]}]", &c2, &out, err, sizeof err);
	CHECK_EQ_INT(rc, 0);
	{
		json_t *want = J("{\"a\":[],\"b\":{\"k\":[1,2,{\"z\":null}]},\"n\":3,\"cb\":\"http://cb\","
				 "\"keys\":[{\"kty\":\"OKP\",\"x\":\"abc\"}]}");
		CHECK(json_equal(out, want));
		json_decref(want);
	}
	json_decref(out);
	json_decref(c2.keys);
	/* per-call fields do not leak into the next call */
	rc = call("evil", "echo", "[1, 2]", NULL, &out, err, sizeof err);
	CHECK_EQ_INT(rc, 0);
	CHECK(json_object_get(out, "cb") == NULL && json_object_get(out, "keys") == NULL);
	json_decref(out);

	/* nil -> null; empty array marker; null */
	rc = call("evil", "ret_nil", NULL, NULL, &out, err, sizeof err);
	CHECK_EQ_INT(rc, 0);
	CHECK(json_is_null(out));
	json_decref(out);
	rc = call("evil", "ret_empty", NULL, NULL, &out, err, sizeof err);
	CHECK_EQ_INT(rc, 0);
	CHECK(json_is_array(json_object_get(out, "list")));
	CHECK(json_is_object(json_object_get(out, "obj")));
	CHECK(json_is_null(json_object_get(out, "null")));
	json_decref(out);

	/* errors name script and line */
	rc = call("evil", "boom", NULL, NULL, &out, err, sizeof err);
	CHECK_EQ_INT(rc, -1);
	CHECK_STR_EQ(err, "providers/evil.lua:6: kaboom");
	CHECK(out == NULL);
	rc = call("evil", "ret_fn", NULL, NULL, &out, err, sizeof err);
	CHECK_EQ_INT(rc, -1);
	CHECK(strstr(err, "providers/evil.lua: ret_fn returned a value that is not JSON: f: a function") != NULL);
	rc = call("evil", "no_such_fn", NULL, NULL, &out, err, sizeof err);
	CHECK_EQ_INT(rc, -2);
	rc = call("nope", "submit", NULL, NULL, &out, err, sizeof err);
	CHECK_EQ_INT(rc, -2);
	rc = script_call(host, SCRIPT_HOOK, "evil", "submit", NULL, 0, NULL, &out, err, sizeof err);
	CHECK_EQ_INT(rc, -2);

	/* a hook */
	{
		json_t *ev = J("{\"job_id\":\"job_5\",\"type\":\"job.failed\"}");
		rc = script_call(host, SCRIPT_HOOK, "default", "transform", &ev, 1, NULL, &out, err,
				 sizeof err);
		CHECK_EQ_INT(rc, 0);
		CHECK_STR_EQ(json_string_value(json_object_get(json_object_get(out, "body"), "id")), "job_5");
		CHECK(json_object_get(json_object_get(out, "body"), "secret") == NULL); /* hooks get no secrets */
		json_decref(out);
		json_decref(ev);
		ev = J("{\"job_id\":\"job_5\",\"type\":\"job.skip\"}");
		rc = script_call(host, SCRIPT_HOOK, "default", "transform", &ev, 1, NULL, &out, err,
				 sizeof err);
		CHECK_EQ_INT(rc, 0);
		CHECK(json_is_null(out));
		json_decref(out);
		json_decref(ev);
	}
}

static void test_ctx_helpers(void)
{
	check_eval("local ctx = ... return ctx.hex(ctx.hmac_sha256('key', 'The quick brown fox jumps over the lazy dog'))",
		   "\"f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8\"");
	check_eval("local ctx = ... return ctx.hex(ctx.sha256('abc'))",
		   "\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"");
	check_eval("local ctx = ... return { ctx.base64('hello'), ctx.base64_decode('aGVsbG8'),"
		   " ctx.hex(ctx.base64_decode('-_8')), ctx.base64_decode('!!') == nil, ctx.base64('') }",
		   "[\"aGVsbG8=\",\"hello\",\"fbff\",true,\"\"]");
	check_eval("local ctx = ... return { ctx.hex('hi'), ctx.hex_decode('6869'), ctx.hex_decode('6G') == nil,"
		   " ctx.hex_decode('686') == nil }",
		   "[\"6869\",\"hi\",true,true]");
	check_eval("local ctx = ... return { ctx.equal('a', 'a'), ctx.equal('a', 'b'), ctx.equal('a', 'ab') }",
		   "[true,false,false]");
	check_eval("local ctx = ... return ctx.url_encode('a b/c~d-e_f.g&h=\\xc3\\xa9')",
		   "\"a%20b%2Fc~d-e_f.g%26h%3D%C3%A9\"");
	check_eval("local ctx = ... return { ctx.now() > 1.7e9, type(ctx.now()) }", "[true,\"number\"]");
	check_eval("local ctx = ... local a, b = ctx.random_hex(32), ctx.random_hex(32)"
		   " return { #a, a:match('^[0-9a-f]+$') ~= nil, a ~= b, #ctx.random_hex(1),"
		   " pcall(ctx.random_hex, 0), (pcall(ctx.random_hex, 65)) }",
		   "[64,true,true,2,false,false]");
	{
		/* a fixed clock for tests */
		struct script_ctx fixed = { .now = 1767225605.5 };
		json_t *out = NULL, *arg = json_string("local ctx = ... return ctx.now()");
		char err[256];
		CHECK_EQ_INT(script_call(host, SCRIPT_PROVIDER, "evil", "eval", &arg, 1, &fixed, &out, err, sizeof err), 0);
		CHECK(json_is_real(out) && json_real_value(out) == 1767225605.5);
		json_decref(out);
		CHECK_EQ_INT(script_call(host, SCRIPT_PROVIDER, "evil", "eval", &arg, 1, NULL, &out, err, sizeof err), 0);
		CHECK(json_number_value(out) > 1767225605.5 || json_number_value(out) < 1767225605.0);
		json_decref(out);
		json_decref(arg);
	}
	check_eval("local ctx = ... local p = ctx.hex_decode('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a')"
		   " local s = ctx.hex_decode('e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b')"
		   " return { ctx.ed25519_verify(p, '', s), ctx.ed25519_verify(p, 'x', s), ctx.ed25519_verify('short', '', s) }",
		   "[true,false,false]");
	check_eval("local ctx = ... return ctx.json.decode(ctx.json.encode({ a = { 1, 2 } }))", "{\"a\":[1,2]}");
	check_eval("local ctx = ... return ctx.json.decode('{\"n\":null}').n == ctx.null", "true");
	check_eval("local ctx = ... return require('cjson') == ctx.json", "true");
	check_eval("local ctx = ... local ok, e = pcall(ctx.json.decode, '[NaN]') return ok", "false");
	check_eval("local ctx = ... local ok = pcall(ctx.json.decode, string.rep('[', 100) .. string.rep(']', 100)) return ok",
		   "false");
	check_eval("local v, e = require('cjson.safe').decode('{') return { v == nil, e }",
		   "[true,\"Expected object key string but found T_END at character 2\"]");
	check_eval("local ctx = ... ctx.log('hello from a script') print('print', 'works', 1) return true", "true");
}

static void test_sandbox(void)
{
	/* os, io, debug, package, dofile, loadfile, coroutine */
	check_blocked("return os.execute('echo pwned')", "execute");
	check_blocked("return os.getenv('HOME')", "getenv");
	check_blocked("return os.exit(1)", "exit");
	check_blocked("return os.remove('/tmp/x')", "remove");
	check_blocked("return io.open('/etc/passwd')", "global 'io'");
	check_blocked("return debug.getinfo(1)", "global 'debug'");
	check_blocked("return package.loadlib('libc.so.6', 'system')", "global 'package'");
	check_blocked("return dofile('/etc/passwd')", "global 'dofile'");
	check_blocked("return loadfile('/etc/passwd')", "global 'loadfile'");
	check_blocked("return coroutine.create(print)", "global 'coroutine'");
	check_blocked("return string.dump(function() end)", "dump");
	check_blocked("return math.randomseed(1)", "randomseed");
	check_eval("return { type(os.time()), type(os.date('!%Y')), type(os.clock()), math.random(1, 1), utf8.char(233) }",
		   "[\"number\",\"string\",\"number\",1,\"\\u00e9\"]");
	check_eval("return rawget(_G, 'io') == nil and rawget(_G, 'debug') == nil and _G.os.execute == nil", "true");

	/* require: only cjson and lib.NAME */
	check_blocked("return require('os')", "not allowed");
	check_blocked("return require('io')", "not allowed");
	check_blocked("return require('debug')", "not allowed");
	check_blocked("return require('lib/../x')", "not allowed");
	check_blocked("return require('lib.../evil')", "not allowed");
	check_blocked("return require('lib.util/../../etc')", "not allowed");
	check_blocked("return require('../lib/util')", "not allowed");
	check_blocked("return require('lib.')", "not allowed");
	check_blocked("return require('lib.nothere')", "not found");
	check_eval("return require('lib.util').value", "\"lib-v1\"");
	check_eval("return require('lib.util') == require('lib.util')", "true");

	/* load: text only, sandboxed env */
	check_blocked("local f, e = load('\\27LuaT\\0\\25\\147\\r\\n\\26\\n') if not f then error(e) end return f()",
		      "binary chunk");
	check_blocked("local f, e = load('\\27Lua', 'x', 'b') if not f then error(e) end return f()", "binary chunk");
	check_eval("return load('return io')() == nil", "true");
	check_eval("return load('return x', 'c', 't', { x = 5 })()", "5");
	check_eval("local parts = { 'return ', '42' } local i = 0"
		   " return load(function() i = i + 1 return parts[i] end)()", "42");

	/* collectgarbage beyond count */
	check_blocked("collectgarbage('collect') return 1", "only \"count\"");
	check_blocked("collectgarbage('stop') return 1", "only \"count\"");
	check_blocked("collectgarbage() return 1", "only \"count\"");
	check_blocked("collectgarbage('generational') return 1", "only \"count\"");
	check_eval("return type(collectgarbage('count'))", "\"number\"");

	/* metatables: the string metatable is hidden; no __gc */
	check_eval("return getmetatable('')", "false");
	check_blocked("getmetatable('').__index = { upper = function() return 'pwned' end }", "boolean");
	check_blocked("return setmetatable({}, { __gc = function() while true do end end })", "__gc");
	check_eval("local mt = {} local t = setmetatable({}, mt) mt.__gc = function() while true do end end"
		   " t = nil return 1", "1");
	check_eval("return setmetatable({}, { __index = function(t, k) return k .. '!' end }).hi", "\"hi!\"");
	check_eval("local ctx = ... return getmetatable(ctx.array({}))", "false");
	check_blocked("local ctx = ... local a = ctx.array({}) return setmetatable(a, {})", "protected metatable");
	check_blocked("local x <close> = setmetatable({}, { __close = function() while true do end end }) error('e')",
		      "instruction budget exceeded");
	check_blocked("do local x <close> = setmetatable({}, { __close = function() while true do end end }) end",
		      "instruction budget exceeded");

	/* memory cap */
	check_blocked("return #string.rep('x', 1 << 30)", "providers/evil.lua: memory cap exceeded");
	check_blocked("local t = {} for i = 1, 1e9 do t[i] = ('x'):rep(100) .. i end return #t", "memory cap exceeded");
	check_blocked("local s = 'x' while true do s = s .. s end", "memory cap exceeded");
	check_blocked("local t = {} while true do local ok = pcall(function() t[#t + 1] = ('y'):rep(4096) .. #t end) end",
		      "exceeded");
	check_blocked("return ('x'):rep(2^40)", "too large");
	check_blocked("return ('x'):rep(2^40, ',')", "too large");
	check_blocked("return (''):rep(math.maxinteger)", "instruction budget exceeded");
	check_blocked("return (''):rep(math.maxinteger, '')", "instruction budget exceeded");
	check_blocked("return table.move({}, 1, math.maxinteger - 1, 2)", "instruction budget exceeded");
	check_blocked("local t = setmetatable({}, { __len = function() return math.maxinteger end })"
		      " table.insert(t, 1, 'x')", "instruction budget exceeded");
	check_blocked("local t = setmetatable({}, { __len = function() return math.maxinteger end })"
		      " return table.remove(t, 1)", "instruction budget exceeded");
	check_blocked("local t = setmetatable({}, { __index = tostring }) return #table.concat(t, '', 1, 1e15)",
		      "exceeded");
	/* linear patterns stay linear: appends, pops, anchored and advancing scans, s:sub(i, i) */
	check_eval("local t = {} for i = 1, 30000 do table.insert(t, i) end"
		   " for i = 1, 29000 do table.remove(t) end return #t", "1000");
	check_eval("local s = ('ab '):rep(20000) local n, pos = 0, 1"
		   " while true do local a, b = s:find('%s', pos) if not a then break end n = n + 1 pos = b + 1 end"
		   " return n", "20000");
	check_eval("local s = ('ab '):rep(20000) local n, pos = 0, 1"
		   " while pos <= #s do local w = s:match('^%S+', pos) if w then n = n + 1 pos = pos + #w"
		   " else pos = pos + 1 end end return n", "20000");
	check_eval("local s = ('abc'):rep(20000) local n = 0"
		   " for i = 1, #s do if s:sub(i, i) == 'a' then n = n + 1 end end return n", "20000");
	check_blocked("local t = {} while true do pcall(function() t[#t + 1] = ('y'):rep(4096) .. #t end) end",
		      "memory cap exceeded");
	check_blocked("local t = {} while true do xpcall(function() t[#t + 1] = ('y'):rep(4096) .. #t end, print) end",
		      "memory cap exceeded");
	check_blocked("local s = ('[1,'):rep(1e6) while true do pcall(require('cjson.safe').decode, s .. '1]') end",
		      "exceeded");
	check_eval("local ok, e = pcall(error, 'plain', 0) return { ok, e }", "[false,\"plain\"]");
	check_eval("return { pcall(function(a) return a * 2, 'x' end, 21) }", "[true,42,\"x\"]");
	/* work in C counts: a loop of scans over a large string runs out of budget */
	check_blocked("local s = ('x'):rep(4e6) while true do s:find('y', 1, true) end", "instruction budget exceeded");
	check_blocked("local s = ('x'):rep(4e6) for i = 1, 1e6 do s:upper() end", "exceeded");
	check_blocked("local t = {} for i = 1, 1e5 do t[i] = i end while true do table.sort(t) end",
		      "instruction budget exceeded");
	{
		/* exact message for a direct memory failure */
		json_t *out = NULL, *arg = json_string("return #string.rep('x', 1 << 30)");
		char err[256];
		int rc = script_call(host, SCRIPT_PROVIDER, "evil", "eval", &arg, 1, NULL, &out, err, sizeof err);
		CHECK_EQ_INT(rc, -1);
		CHECK_STR_EQ(err, "providers/evil.lua: memory cap exceeded");
		json_decref(arg);
	}

	/* instruction budget, also when the script pcalls */
	check_blocked("while true do end", "instruction budget exceeded");
	check_blocked("while true do pcall(function() while true do end end) end", "instruction budget exceeded");
	check_blocked("for i = 1, 3 do pcall(function() while true do end end) end return 'escaped'",
		      "instruction budget exceeded");
	check_blocked("local ok = xpcall(function() while true do end end, function(e) while true do end end)"
		      " return 'escaped'", "instruction budget exceeded");
	check_blocked("local ok, e = pcall(function() while true do end end) return e", "instruction budget exceeded");
	check_blocked("return pcall(function() while true do end end)", "instruction budget exceeded");
	check_blocked("return xpcall(function() while true do end end, function(e) return 'handled' end)",
		      "instruction budget exceeded");
	check_eval("return { xpcall(function(a, b) return a + b, 'r' end, print, 1, 2) }", "[true,3,\"r\"]");
	check_eval("return { xpcall(error, function(e) return 'handled ' .. e end, 'x', 0) }",
		   "[false,\"handled x\"]");
	check_eval("return { xpcall(error, function(e) error('again', 0) end, 'x', 0) }", "[false,\"again\"]");
	check_blocked("return string.gsub(string.rep('a', 1e6), 'a', function() while true do end end)",
		      "instruction budget exceeded");
	{
		json_t *out = NULL;
		char err[256];
		int rc = call("evil", "spin", NULL, NULL, &out, err, sizeof err);
		CHECK_EQ_INT(rc, -1);
		CHECK_STR_EQ(err, "providers/evil.lua:7: instruction budget exceeded");
		/* the budget is per call: a call just under it still works afterwards */
		rc = call("evil", "work", "[100000]", NULL, &out, err, sizeof err);
		CHECK_EQ_INT(rc, 0);
		CHECK_EQ_INT(json_integer_value(out), 5000050000LL);
		json_decref(out);
	}

	/* deep recursion */
	check_blocked("local function f(n) return 1 + f(n + 1) end return f(1)", "");
	check_blocked("local function f(n) return f(n + 1) + 1 end return f(1)", "");
	check_blocked("local t = setmetatable({}, {}) getmetatable(t).__index = function(t, k) return t[k] end return t.x",
		      "");

	/* a script changing its own string table does not touch another script */
	{
		json_t *out = NULL, *arg = json_string("abc");
		char err[256];
		int rc = call("evil", "clobber", NULL, NULL, &out, err, sizeof err);
		CHECK_EQ_INT(rc, 0);
		CHECK_STR_EQ(json_string_value(out), "pwned");
		json_decref(out);
		rc = script_call(host, SCRIPT_PROVIDER, "good", "upper", &arg, 1, NULL, &out, err, sizeof err);
		CHECK_EQ_INT(rc, 0);
		CHECK_STR_EQ(json_string_value(out), "ABC");
		json_decref(out);
		json_decref(arg);
	}
}

static void test_secrets(void)
{
	json_t *out = NULL, *arg;
	char err[256];
	const char *names[] = { "good", "good.key", "../good", "providers.good.key", "" };

	/* a provider reads its own settings ... */
	arg = json_string("key");
	CHECK_EQ_INT(script_call(host, SCRIPT_PROVIDER, "evil", "secret", &arg, 1, NULL, &out, err, sizeof err), 0);
	CHECK_STR_EQ(json_string_value(json_object_get(out, "v")), "evil-secret");
	CHECK(json_object_get(json_object_get(out, "config"), "key") == NULL);
	json_decref(out);
	/* ... even when the caller names another provider */
	struct script_ctx other = { .provider = "good" };
	CHECK_EQ_INT(script_call(host, SCRIPT_PROVIDER, "evil", "secret", &arg, 1, &other, &out, err, sizeof err), 0);
	CHECK_STR_EQ(json_string_value(json_object_get(out, "v")), "evil-secret");
	json_decref(out);
	json_decref(arg);
	/* another provider's secret is unreachable */
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		arg = json_string(names[i]);
		CHECK_EQ_INT(script_call(host, SCRIPT_PROVIDER, "evil", "secret", &arg, 1, NULL, &out, err, sizeof err), 0);
		CHECK(json_object_get(out, "v") == NULL);
		json_decref(out);
		json_decref(arg);
	}
	/* settings: defaults overlaid by config, secret-looking keys removed */
	json_t *s = script_provider_settings(host, "good");
	CHECK(s != NULL);
	CHECK_STR_EQ(json_string_value(json_object_get(s, "base_url")), "http://sim/good");
	CHECK_EQ_INT(json_integer_value(json_object_get(s, "timeout")), 5);
	CHECK_STR_EQ(json_string_value(json_object_get(s, "region")), "eu");
	CHECK(json_object_get(s, "key") == NULL);
	CHECK(json_object_get(s, "api_key") == NULL);
	CHECK(json_object_get(s, "webhook_secret") == NULL);
	CHECK(json_object_get(s, "Auth_Token") == NULL);
	CHECK(json_object_get(s, "password") == NULL);
	json_decref(s);
	CHECK(script_provider_settings(host, "nope") == NULL);
}

static void test_route(void)
{
	char out[64];
	CHECK_EQ_INT(script_route(host, "good/x", out, sizeof out), 0);
	CHECK_STR_EQ(out, "good");
	CHECK_EQ_INT(script_route(host, "exact-model", out, sizeof out), 0);
	CHECK_STR_EQ(out, "good");
	CHECK_EQ_INT(script_route(host, "evil/anything/at/all", out, sizeof out), 0);
	CHECK_STR_EQ(out, "evil");
	CHECK_EQ_INT(script_route(host, "good/", out, sizeof out), -1);
	CHECK_EQ_INT(script_route(host, "xgood/x", out, sizeof out), -1);
	CHECK_EQ_INT(script_route(host, "exact-modelX", out, sizeof out), -1);
	CHECK_EQ_INT(script_route(host, "exactXmodel", out, sizeof out), -1);
	CHECK_EQ_INT(script_route(host, "", out, sizeof out), -1);

	json_t *m = script_host_models(host);
	CHECK(json_is_array(m));
	json_t *want = J("[{\"provider\":\"evil\",\"models\":[\"^evil/.*$\"]},"
			 "{\"provider\":\"good\",\"models\":[\"good/.+\",\"exact%-model\"]}]");
	CHECK(json_equal(m, want));
	json_decref(want);
	json_decref(m);
}

static void check_not_loaded(const char *rel, const char *name, const char *text, const char *want);

/* A provider with no settings in the config is loaded and checked but never
 * routed or listed; script_provider_info reports its declarations. */
static void test_unconfigured(void)
{
	char out[64];
	struct script_provider_info info;
	write_file("providers/idle.lua",
		   "return { name = 'idle', models = { 'idle/.+' },\n"
		   "  callback_requires = { https = true, public = true }, poll_404_limit = 5,\n"
		   "  submit = function(job, ctx) return { url = 'http://x/' } end,\n"
		   "  on_submitted = function(res, job, ctx) return { state = 'processing' } end,\n"
		   "  on_callback = function(req, job, ctx) return { state = 'processing' } end }\n");
	script_host_refresh(host);
	CHECK(script_exists(host, SCRIPT_PROVIDER, "idle"));
	CHECK_EQ_INT(script_route(host, "idle/x", out, sizeof out), -1);
	json_t *m = script_host_models(host);
	size_t i;
	json_t *v;
	int listed = 0;
	json_array_foreach(m, i, v)
		if (strcmp(json_string_value(json_object_get(v, "provider")), "idle") == 0)
			listed = 1;
	CHECK_EQ_INT(listed, 0);
	json_decref(m);
	CHECK_EQ_INT(script_provider_info(host, "idle", &info), 0);
	CHECK_EQ_INT(info.configured, 0);
	CHECK_EQ_INT(info.callback_https, 1);
	CHECK_EQ_INT(info.callback_public, 1);
	CHECK_EQ_INT(info.poll_404_limit, 5);
	CHECK_EQ_INT(script_provider_info(host, "good", &info), 0);
	CHECK_EQ_INT(info.configured, 1);
	CHECK_EQ_INT(info.callbacks, 1);
	CHECK_EQ_INT(info.callback_https, 0);
	CHECK_EQ_INT(info.poll_404_limit, 3);
	CHECK_EQ_INT(info.max_inflight, 0);
	CHECK_EQ_INT(script_provider_info(host, "nope", &info), -1);
	remove_file("providers/idle.lua");
	script_host_refresh(host);
	check_not_loaded("providers/badreq.lua", "badreq",
			 "return { name = 'badreq', callback_requires = 5,\n"
			 "  submit = function() end, on_submitted = function() end, on_callback = function() end }\n",
			 "callback_requires must be a table");
	check_not_loaded("providers/bad404.lua", "bad404",
			 "return { name = 'bad404', poll_404_limit = 0,\n"
			 "  submit = function() end, on_submitted = function() end, on_callback = function() end }\n",
			 "poll_404_limit must be an integer");
}

static void check_not_loaded(const char *rel, const char *name, const char *text, const char *want)
{
	char buf[1024];
	write_file(rel, text);
	script_host_refresh(host);
	CHECK(!script_exists(host, SCRIPT_PROVIDER, name));
	CHECK(last_error(name, buf, sizeof buf) != NULL);
	CHECK(strstr(buf, want) != NULL);
	if (!strstr(buf, want))
		fprintf(stderr, "    %s: last_error \"%s\", want \"%s\"\n", rel, buf, want);
	remove_file(rel);
	script_host_refresh(host);
	CHECK(list_entry(name) == NULL);
}

static void test_load_checks(void)
{
	check_not_loaded("providers/named.lua", "named",
			 "return { name = 'other', submit = print, on_submitted = print, on_callback = print }",
			 "providers/named.lua: name must be \"named\"");
	check_not_loaded("providers/noname.lua", "noname",
			 "return { submit = print, on_submitted = print, on_callback = print }", "name must be");
	check_not_loaded("providers/missing.lua", "missing",
			 "return { name = 'missing', submit = function() end, on_submitted = function() end }",
			 "missing function on_callback");
	check_not_loaded("providers/nopolled.lua", "nopolled",
			 "local f = function() end\n"
			 "return { name = 'nopolled', submit = f, on_submitted = f, on_callback = f, poll = f }",
			 "on_polled");
	check_not_loaded("providers/notable.lua", "notable", "return 42", "must return a table");
	check_not_loaded("providers/syntax.lua", "syntax", "return {\n  name = 'syntax',,\n}",
			 "providers/syntax.lua:2:");
	check_not_loaded("providers/spinner.lua", "spinner", "while true do end",
			 "providers/spinner.lua:1: instruction budget exceeded");
	check_not_loaded("providers/hog.lua", "hog", "local t = {} while true do t[#t+1] = ('x'):rep(65536) .. #t end",
			 "providers/hog.lua:1: memory cap exceeded");
	check_not_loaded("providers/badpat.lua", "badpat",
			 "local f = function() end\n"
			 "return { name = 'badpat', models = { 'ok', '[a' }, submit = f, on_submitted = f, on_callback = f }",
			 "models[2]: malformed pattern");
	check_not_loaded("providers/badex.lua", "badex",
			 "local f = function() return { state = 'failed' } end\n"
			 "return { name = 'badex', submit = f, on_submitted = f, on_callback = f,\n"
			 "  examples = { { fn = 'on_callback', args = { {}, {} }, expect = { state = 'succeeded' } } } }",
			 "example 1 (on_callback): state: expected \"succeeded\", got \"failed\"");
	check_not_loaded("providers/badex2.lua", "badex2",
			 "local f = function() return { state = 'ok' } end\n"
			 "return { name = 'badex2', submit = f, on_submitted = f, on_callback = f,\n"
			 "  examples = { { name = 'must raise', fn = 'submit', args = {}, expect_error = 'boom' } } }",
			 "example 1 (must raise): expected an error containing \"boom\", got none");
	check_not_loaded("providers/badex3.lua", "badex3",
			 "local f = function() return { state = 'ok' } end\n"
			 "return { name = 'badex3', submit = f, on_submitted = f, on_callback = f,\n"
			 "  examples = { { fn = 'nothere', args = {} } } }",
			 "no function nothere");
	check_not_loaded("providers/badreq.lua", "badreq", "require('os')", "not allowed");
	check_not_loaded("providers/badlib.lua", "badlib", "require('lib.absent')", "not found");
	check_not_loaded("providers/baddef.lua", "baddef",
			 "local f = function() end\n"
			 "return { name = 'baddef', defaults = { x = f }, submit = f, on_submitted = f, on_callback = f }",
			 "defaults.x: a function");
	/* files with names that are not script names are ignored */
	write_file("providers/bad-name.lua", "return 1");
	script_host_refresh(host);
	CHECK(list_entry("bad-name") == NULL);
	remove_file("providers/bad-name.lua");
}

static void test_reload(void)
{
	char buf[1024], v1[16], v2[16];
	const char *v;
	json_t *out = NULL;
	char err[256];
	static const char good_v2_tail[] = "\n-- v2\n";
	char *good_v2 = malloc(sizeof good_lua + sizeof good_v2_tail);

	snprintf(good_v2, sizeof good_lua + sizeof good_v2_tail, "%s%s", good_lua, good_v2_tail);
	/* patch version() to return 2 */
	char *p = strstr(good_v2, "return 1 end");
	CHECK(p != NULL);
	if (p)
		p[7] = '2';

	CHECK_EQ_INT(script_host_refresh(host), 0); /* nothing changed */
	v = script_version(host, SCRIPT_PROVIDER, "good");
	snprintf(v1, sizeof v1, "%s", v ? v : "");

	/* a changed valid file replaces the version */
	write_file("providers/good.lua", good_v2);
	touch_later("providers/good.lua");
	CHECK_EQ_INT(script_host_refresh(host), 1);
	v = script_version(host, SCRIPT_PROVIDER, "good");
	snprintf(v2, sizeof v2, "%s", v ? v : "");
	CHECK(strcmp(v1, v2) != 0 && strlen(v2) == 12);
	CHECK_EQ_INT(call("good", "version", NULL, NULL, &out, err, sizeof err), 0);
	CHECK_EQ_INT(json_integer_value(out), 2);
	json_decref(out);
	CHECK(last_error("good", buf, sizeof buf) == NULL);

	/* a syntax error keeps the running version and shows last_error */
	write_file("providers/good.lua", "return { name = 'good', submit = function( }\n");
	touch_later("providers/good.lua");
	CHECK_EQ_INT(script_host_refresh(host), 0);
	CHECK_STR_EQ(script_version(host, SCRIPT_PROVIDER, "good"), v2);
	CHECK(last_error("good", buf, sizeof buf) != NULL);
	CHECK(strstr(buf, "providers/good.lua:1:") != NULL);
	CHECK_EQ_INT(call("good", "version", NULL, NULL, &out, err, sizeof err), 0);
	CHECK_EQ_INT(json_integer_value(out), 2);
	json_decref(out);
	/* the same broken content is not retried on every refresh */
	CHECK_EQ_INT(script_host_refresh(host), 0);

	/* a failing example keeps it too */
	{
		char *bad = strdup(good_lua);
		char *q = strstr(bad, "expect = { state = 'succeeded'");
		CHECK(q != NULL);
		if (q)
			memcpy(q + 20, "failed'   ", 10);
		write_file("providers/good.lua", bad);
		touch_later("providers/good.lua");
		CHECK_EQ_INT(script_host_refresh(host), 0);
		CHECK_STR_EQ(script_version(host, SCRIPT_PROVIDER, "good"), v2);
		CHECK(last_error("good", buf, sizeof buf) != NULL);
		CHECK(strstr(buf, "example 1 (callback ok)") != NULL);
		free(bad);
	}

	/* the original content loads again, with the original version */
	write_file("providers/good.lua", good_lua);
	touch_later("providers/good.lua");
	CHECK_EQ_INT(script_host_refresh(host), 1);
	CHECK_STR_EQ(script_version(host, SCRIPT_PROVIDER, "good"), v1);
	CHECK(last_error("good", buf, sizeof buf) == NULL);

	/* a lib change reloads every script */
	CHECK_EQ_INT(call("good", "lib", NULL, NULL, &out, err, sizeof err), 0);
	CHECK_STR_EQ(json_string_value(out), "lib-v1");
	json_decref(out);
	write_file("lib/util.lua", util_v2);
	touch_later("lib/util.lua");
	CHECK_EQ_INT(script_host_refresh(host), 3); /* good, evil, hooks/default */
	CHECK_EQ_INT(call("good", "lib", NULL, NULL, &out, err, sizeof err), 0);
	CHECK_STR_EQ(json_string_value(out), "lib-v2");
	json_decref(out);
	/* a broken lib keeps the scripts that need it on the old lib */
	write_file("lib/util.lua", "return {{{");
	touch_later("lib/util.lua");
	script_host_refresh(host);
	CHECK(last_error("good", buf, sizeof buf) != NULL);
	CHECK(strstr(buf, "lib/util.lua:1:") != NULL);
	CHECK_EQ_INT(call("good", "lib", NULL, NULL, &out, err, sizeof err), 0);
	CHECK_STR_EQ(json_string_value(out), "lib-v2");
	json_decref(out);
	CHECK(last_error("evil", buf, sizeof buf) == NULL); /* evil does not use the lib */
	write_file("lib/util.lua", util_v1);
	touch_later("lib/util.lua");
	script_host_refresh(host);
	CHECK(last_error("good", buf, sizeof buf) == NULL);

	/* a new file is added, a removed file unloads */
	write_file("providers/extra.lua",
		   "local f = function() return {} end\n"
		   "return { name = 'extra', models = { 'extra/.*' }, submit = f, on_submitted = f, on_callback = f }\n");
	CHECK_EQ_INT(script_host_refresh(host), 1);
	CHECK(script_exists(host, SCRIPT_PROVIDER, "extra"));
	remove_file("providers/extra.lua");
	CHECK_EQ_INT(script_host_refresh(host), 1);
	CHECK(!script_exists(host, SCRIPT_PROVIDER, "extra"));
	CHECK(list_entry("extra") == NULL);
	CHECK_EQ_INT(call("extra", "submit", NULL, NULL, &out, err, sizeof err), -2);

	/* list */
	{
		json_t *e = list_entry("good");
		CHECK(e != NULL);
		CHECK_STR_EQ(json_string_value(json_object_get(e, "kind")), "provider");
		CHECK_STR_EQ(json_string_value(json_object_get(e, "version")), v1);
		CHECK(json_is_string(json_object_get(e, "loaded_at")));
		CHECK(json_is_null(json_object_get(e, "last_error")));
		json_decref(e);
		e = list_entry("default");
		CHECK(e && strcmp(json_string_value(json_object_get(e, "kind")), "hook") == 0);
		json_decref(e);
	}
	free(good_v2);
}

static void test_check_file(void)
{
	char path[512], err[1024];
	snprintf(path, sizeof path, "%s/providers/good.lua", root);
	CHECK_EQ_INT(script_check_file(cfg, path, err, sizeof err), 0);
	if (err[0])
		fprintf(stderr, "    check_file: %s\n", err);
	snprintf(path, sizeof path, "%s/hooks/default.lua", root);
	CHECK_EQ_INT(script_check_file(cfg, path, err, sizeof err), 0);

	write_file("providers/broken.lua", "return {");
	snprintf(path, sizeof path, "%s/providers/broken.lua", root);
	CHECK_EQ_INT(script_check_file(cfg, path, err, sizeof err), -1);
	CHECK(strstr(err, "providers/broken.lua:1:") != NULL);
	remove_file("providers/broken.lua");

	write_file("lib/notascript.lua", "return {}");
	snprintf(path, sizeof path, "%s/lib/notascript.lua", root);
	CHECK_EQ_INT(script_check_file(cfg, path, err, sizeof err), -1);
	CHECK(strstr(err, "providers/, hooks/ or fronts/") != NULL);
	remove_file("lib/notascript.lua");

	/* fronts: request, respond and error are required; webhook optional */
	write_file("fronts/half.lua", "return { request = function() end, error = function() end }");
	snprintf(path, sizeof path, "%s/fronts/half.lua", root);
	CHECK_EQ_INT(script_check_file(cfg, path, err, sizeof err), -1);
	CHECK(strstr(err, "missing function respond") != NULL);
	write_file("fronts/half.lua", "return { request = function() end, respond = function() end,"
				      " error = function() end, webhook = 1 }");
	CHECK_EQ_INT(script_check_file(cfg, path, err, sizeof err), -1);
	CHECK(strstr(err, "webhook must be a function") != NULL);
	write_file("fronts/half.lua", "return { request = function(req) return { op = 'get', job_id = req.path } end,"
				      " respond = function() end, error = function() end,"
				      " examples = { { fn = 'request', args = { { path = 'j' } }, expect = { op = 'get', job_id = 'j' } } } }");
	CHECK_EQ_INT(script_check_file(cfg, path, err, sizeof err), 0);
	remove_file("fronts/half.lua");

	snprintf(path, sizeof path, "%s/providers/absent.lua", root);
	CHECK_EQ_INT(script_check_file(cfg, path, err, sizeof err), -1);
	CHECK(strstr(err, "absent.lua") != NULL);
}

/* Rough per-job cost of submit mapping plus callback parsing. */
static void bench(void)
{
	json_t *job = J("{\"id\":\"job_01HXYZ\",\"model\":\"good/flux\",\"model_id\":\"good/flux\","
			"\"input\":{\"prompt\":\"a cat on a mat\",\"image_size\":\"square_hd\",\"num_images\":1},"
			"\"data\":{},\"attempt\":1}");
	json_t *req = J("{\"headers\":{\"content-type\":\"application/json\"},\"body\":\"{}\","
			"\"json\":{\"status\":\"OK\",\"url\":\"https://cdn/x.png\"}}");
	struct script_ctx ctx = { .provider = "good",
				  .callback_url = "http://127.0.0.1:8080/v1/callbacks/good/job_01HXYZ/tok" };
	struct timespec a, b;
	char err[256];
	int n = getenv("GENRELAY_BENCH_N") ? atoi(getenv("GENRELAY_BENCH_N")) : 2000, fails = 0;

	clock_gettime(CLOCK_MONOTONIC, &a);
	for (int i = 0; i < n; i++) {
		json_t *out = NULL, *args[2] = { req, job };
		if (script_call(host, SCRIPT_PROVIDER, "good", "submit", &job, 1, &ctx, &out, err, sizeof err))
			fails++;
		json_decref(out);
		if (script_call(host, SCRIPT_PROVIDER, "good", "on_callback", args, 2, &ctx, &out, err, sizeof err))
			fails++;
		json_decref(out);
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	CHECK_EQ_INT(fails, 0);
	printf("submit + on_callback: %.1f us per job (this build)\n",
	       ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / n / 1e3);
	json_decref(job);
	json_decref(req);
}

static void rm_tree(void)
{
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", root);
}

int main(void)
{
	char err[512], path[512];

	log_set_level(getenv("GENRELAY_TEST_VERBOSE") ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR);
	if (!mkdtemp(root)) {
		perror("mkdtemp");
		return 1;
	}
	const char *dirs[] = { "providers", "hooks", "lib", "fronts" };
	for (int i = 0; i < 4; i++) {
		snprintf(path, sizeof path, "%s/%s", root, dirs[i]);
		mkdir(path, 0700);
	}
	write_file("providers/good.lua", good_lua);
	write_file("providers/evil.lua", evil_lua);
	write_file("hooks/default.lua", hook_lua);
	write_file("lib/util.lua", util_v1);
	write_file("lib/README", "not a lib");

	cfg = config_load(NULL, err, sizeof err);
	if (!cfg) {
		fprintf(stderr, "config: %s\n", err);
		return 1;
	}
	free(cfg->scripts);
	cfg->scripts = strdup(root);
	cfg->lua_instructions = 2000000;
	cfg->lua_memory_mb = 8;
	json_decref(cfg->providers);
	cfg->providers = J("{\"good\":{\"key\":\"good-secret\",\"base_url\":\"http://sim/good\",\"region\":\"eu\","
			   "\"webhook_secret\":\"ws\",\"Auth_Token\":\"t\",\"password\":\"p\"},"
			   "\"evil\":{\"key\":\"evil-secret\"}}");

	host = script_host_new(cfg);
	CHECK(host != NULL);
	test_load();
	test_calls();
	test_ctx_helpers();
	test_sandbox();
	test_secrets();
	test_route();
	test_unconfigured();
	test_load_checks();
	test_reload();
	test_check_file();
	bench();
	CHECK(ping_ok());

	script_host_free(host);
	config_free(cfg);
	rm_tree();
	return check_done();
}
