/*
 * test_script_limits.c: the limits (core/script_limits.c): the memory cap and the
 * instruction budget trip with the documented errors ("providers/x.lua:LINE:
 * memory cap exceeded", "...: instruction budget exceeded"), also through
 * the script's pcall and xpcall and inside C functions, and the budget is
 * per call.
 */
#include "check.h"
#include "script_fixture.h"

static void test_limits(void)
{
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

}

int main(void)
{
	if (fixture_setup() < 0)
		return 1;
	CHECK_EQ_INT(fixture_load(), 0);
	test_limits();
	CHECK(ping_ok());
	fixture_teardown();
	return check_done();
}
