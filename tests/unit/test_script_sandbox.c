/*
 * test_script_sandbox.c: the sandbox (core/script_sandbox.c): no io, os beyond the
 * clock, debug, package, dofile, loadfile or binary chunks; require only for
 * cjson and lib.NAME; protected metatables; one script's changes never
 * reach another's state.
 */
#include "check.h"
#include "script_fixture.h"

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

int main(void)
{
	if (fixture_setup() < 0)
		return 1;
	CHECK_EQ_INT(fixture_load(), 0);
	test_sandbox();
	CHECK(ping_ok());
	fixture_teardown();
	return check_done();
}
