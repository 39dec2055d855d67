/*
 * test_script_ctx.c: the ctx bindings (core/script_ctx.c): hashes, MACs,
 * signatures, encodings, the clock, random bytes, cjson and logging, as a
 * script sees them.
 */
#include "check.h"
#include "script_fixture.h"

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

int main(void)
{
	if (fixture_setup() < 0)
		return 1;
	CHECK_EQ_INT(fixture_load(), 0);
	test_ctx_helpers();
	CHECK(ping_ok());
	fixture_teardown();
	return check_done();
}
