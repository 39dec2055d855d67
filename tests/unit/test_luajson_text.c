/*
 * test_luajson_text.c: JSON text straight to Lua and Lua straight to JSON
 * text (core/luajson_text.c), each against the jansson path it replaces:
 * json_loadb + luajson_push (the same acceptance, the same Lua values) and
 * luajson_to_json + json_dumps (the same bytes, or a refusal where the
 * jansson path is taken), on fixed cases, mutated documents and random
 * values.
 */
#include "check.h"
#include "buf.h"
#include "luajson.h"
#include "luajson_text.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* same(a, b): equal Lua values of the shapes luajson builds (same types,
 * integer or float subtype, array marker, keys and values). */
static const char same_src[] =
	"local function same(a, b)\n"
	"  if type(a) ~= type(b) then return false end\n"
	"  if type(a) == 'number' then return math.type(a) == math.type(b) and (a == b or (a ~= a and b ~= b)) end\n"
	"  if type(a) ~= 'table' then return a == b end\n"
	"  if getmetatable(a) ~= getmetatable(b) then return false end\n"
	"  for k, v in pairs(a) do if not same(v, b[k]) then return false end end\n"
	"  for k in pairs(b) do if a[k] == nil then return false end end\n"
	"  return true\n"
	"end\n"
	"return same\n";

static int ndecoded, nrefused;

/*
 * luajson_decode of text against jansson's json_loadb (JSON_DECODE_ANY) and
 * luajson_push of its tree: both refuse, or both give the same Lua value.
 */
static void check_decode(lua_State *L, const char *text, size_t len)
{
	int top = lua_gettop(L);
	json_t *ref = json_loadb(text, len, JSON_DECODE_ANY, NULL);
	int rc = luajson_decode(L, text, len, 1);
	if (!ref) {
		CHECK_EQ_INT(rc, -1);
		if (rc != -1)
			fprintf(stderr, "    jansson refuses, decode took: %.*s\n", (int)len, text);
		CHECK_EQ_INT(lua_gettop(L), top);
		lua_settop(L, top);
		nrefused++;
		return;
	}
	CHECK_EQ_INT(rc, 0);
	if (rc != 0) {
		fprintf(stderr, "    jansson takes, decode refused (%d): %.*s (", rc, (int)len, text);
		for (size_t i = 0; i < len; i++)
			fprintf(stderr, "%02x", (unsigned char)text[i]);
		fprintf(stderr, ")\n");
		json_decref(ref);
		lua_settop(L, top);
		return;
	}
	CHECK_EQ_INT(lua_gettop(L), top + 1);
	lua_getglobal(L, "same");
	lua_insert(L, -2);
	CHECK_EQ_INT(luajson_push(L, ref), 0);
	CHECK_EQ_INT(lua_pcall(L, 2, 1, 0), LUA_OK);
	CHECK(lua_toboolean(L, -1));
	if (!lua_toboolean(L, -1))
		fprintf(stderr, "    different values for: %.*s\n", (int)len, text);
	lua_settop(L, top);
	json_decref(ref);
	ndecoded++;
}

static void check_decode_s(lua_State *L, const char *text)
{
	check_decode(L, text, strlen(text));
}

/* Deterministic mutations of valid documents (bytes changed, inserted and
 * cut), each checked against jansson. */
static void check_decode_mutations(lua_State *L)
{
	static const char *const seeds[] = {
		"{\"request_id\":\"3f1c\",\"status\":\"OK\",\"payload\":{\"images\":[{\"url\":\"https://x/a.png\",\"w\":1024,\"h\":768.5}],\"seed\":-42,\"nsfw\":[false,true,null]}}",
		"[1,-0,0.5,1e3,-2E-2,\"a\\u00e9\\ud83d\\ude00\\n\\\"\",{},[]]",
		"\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"",
	};
	const char charset[] = "{}[]:,\"\\ 0123456789.eE+-tfnulrsa\x00\x1f\x7f\x80\xbf\xc0\xc2\xe0\xed\xf0\xf4\xf5\xff";
	unsigned long x = 88172645463325252UL;
	char buf[512];
	for (size_t s = 0; s < sizeof seeds / sizeof seeds[0]; s++) {
		size_t n0 = strlen(seeds[s]);
		for (int round = 0; round < 3000; round++) {
			size_t n = n0;
			memcpy(buf, seeds[s], n);
			int edits = 1 + round % 3;
			for (int e = 0; e < edits; e++) {
				x ^= x << 13;
				x ^= x >> 7;
				x ^= x << 17;
				size_t at = n ? (size_t)(x % n) : 0;
				char c = charset[(x >> 20) % (sizeof charset - 1)];
				switch ((x >> 40) % 3) {
				case 0:
					if (n)
						buf[at] = c;
					break;
				case 1:
					if (n + 1 < sizeof buf) {
						memmove(buf + at + 1, buf + at, n - at);
						buf[at] = c;
						n++;
					}
					break;
				default:
					n = at;
					break;
				}
			}
			check_decode(L, buf, n);
		}
	}
}

static void test_decode(lua_State *L)
{
	CHECK_EQ_INT(luaL_dostring(L, same_src), LUA_OK);
	lua_setglobal(L, "same");
	static const char *const texts[] = {
		"{}", "[]", "null", "true", "false", "0", "-0", "1", "-1", "12345678901234567",
		"9223372036854775807", "-9223372036854775808", "9223372036854775808",
		"-9223372036854775809", "1.5", "-1.5e10", "1E400", "-1e400", "1e-400", "0.0",
		"1.", ".5", "01", "-01", "+1", "-", "1e", "1e+", "0x10", "NaN", "Infinity",
		"\"\"", "\"abc\"", "\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"", "\"\\u00e9\\u20ac\"",
		"\"\\ud83d\\ude00\"", "\"\\ud83d\"", "\"\\ude00\"", "\"\\ud83d\\u0041\"",
		"\"\\u0000\"", "\"\\u00\"", "\"\\x\"", "\"\x01\"", "\"\x7f\"", "\"\t\"",
		"\"\xc3\xa9\"", "\"\xc3\"", "\"\xc0\x80\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"",
		"\"\xe0\x80\xaf\"", "\"\xf0\x9f\x98\x80\"", "\"\xff\"", "\"unterminated",
		" {\"a\" : [ 1 , 2 ] }\n", "{\"a\":1,}", "[1,]", "[,1]", "{\"a\"}", "{\"a\":}",
		"{1:2}", "{\"a\":1 \"b\":2}", "[1 2]", "{\"a\":1,\"a\":2}", "[[],[[]],{}]",
		"truex", "true1", "nul", "[true,false,null]", "{} x", "1 2", "", "   ", "\xef\xbb\xbf{}",
		"{\"k\\u0000\":1}", "{\"\\u00e9\":{\"x\":[1.25,{\"y\":null}]}}",
	};
	for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
		check_decode_s(L, texts[i]);
	/* a NUL byte inside the text (not an escape) */
	check_decode(L, "[1,\0]", 5);
	check_decode(L, "\"a\0b\"", 5);
	check_decode_mutations(L);
	CHECK(ndecoded > 100 && nrefused > 100);

	/* depth: counted as luajson_push counts it, from the depth given */
	{
		char deep[2 * LUAJSON_MAX_DEPTH + 8];
		int top = lua_gettop(L);
		size_t n = 0;
		for (int i = 0; i < LUAJSON_MAX_DEPTH - 1; i++)
			deep[n++] = '[';
		deep[n++] = '1';
		for (int i = 0; i < LUAJSON_MAX_DEPTH - 1; i++)
			deep[n++] = ']';
		CHECK_EQ_INT(luajson_decode(L, deep, n, 1), 0); /* the 1 is at LUAJSON_MAX_DEPTH */
		lua_settop(L, top);
		CHECK_EQ_INT(luajson_decode(L, deep, n, 2), -2);
		CHECK_EQ_INT(lua_gettop(L), top);
	}
}

static int nencoded, nrefused_enc;

/* luajson_encode of the value on top against json_dumps of luajson_to_json:
 * the same bytes, or a refusal where jansson fails too or where the value
 * has a key luajson_encode leaves to jansson (allowed: key_ok 0). */
static void check_encode_top(lua_State *L, int key_ok)
{
	char err[256];
	struct buf b;
	buf_init(&b, 1 << 20);
	int top = lua_gettop(L);
	int rc = luajson_encode(L, -1, &b);
	CHECK_EQ_INT(lua_gettop(L), top);
	json_t *j = luajson_to_json(L, -1, err, sizeof err);
	char *ref = j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
	if (rc == 0) {
		CHECK(ref != NULL);
		CHECK(ref && strcmp(ref, b.p) == 0);
		if (!ref || strcmp(ref, b.p) != 0)
			fprintf(stderr, "    encode: %s\n    jansson: %s\n", b.p, ref ? ref : "(fails)");
		nencoded++;
	} else {
		CHECK(ref == NULL || !key_ok);
		if (ref && key_ok)
			fprintf(stderr, "    encode refused what jansson dumps: %s\n", ref);
		CHECK_EQ_INT((int)b.len, 0);
		nrefused_enc++;
	}
	free(ref);
	json_decref(j);
	buf_free(&b);
}

static void check_encode(lua_State *L, const char *code, int key_ok)
{
	if (luaL_loadstring(L, code) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
		fprintf(stderr, "lua error: %s\n", lua_tostring(L, -1));
		CHECK(0);
		lua_pop(L, 1);
		return;
	}
	check_encode_top(L, key_ok);
	lua_pop(L, 1);
}

/* Random values (a deterministic generator in Lua): nested objects,
 * marked and plain arrays, strings of awkward bytes, all kinds of numbers. */
static const char random_src[] =
	"local seed = ...\n"
	"local x = seed\n"
	"local function rnd(n) x = (x * 1103515245 + 12345) % 2147483648; return x % n end\n"
	"local bytes = { '\"', '\\\\', '/', '\\b', '\\f', '\\n', '\\r', '\\t', '\\1', '\\31', '\\127',\n"
	"  'a', 'Z', ' ', '\\195\\169', '\\226\\130\\172', '\\240\\159\\152\\128', '\\237\\160\\128',\n"
	"  '\\192\\128', '\\255', '\\195', '\\0' }\n"
	"local nums = { 0, -0.0, 1, -1, 0.1, 1/3, 2^53, 2^53 + 2, 2^60, 1e300, -1e-300, 1e-7, 123456789.5,\n"
	"  math.maxinteger, math.mininteger, 5e-324, 1e21, 1e16, 12.0, 0/0, 1/0 }\n"
	"local function str()\n"
	"  local t = {}\n"
	"  for i = 1, rnd(6) do t[#t + 1] = bytes[rnd(#bytes) + 1] end\n"
	"  if rnd(20) == 0 then t = { bytes[rnd(#bytes - 3) + 1] } end\n"
	"  return table.concat(t)\n"
	"end\n"
	"local keybytes = { '\"', '\\\\', '/', '\\n', '\\1', 'a', ' ', '\\195\\169', '\\240\\159\\152\\128' }\n"
	"local function key()\n"
	"  local t = {}\n"
	"  for i = 1, rnd(4) do t[#t + 1] = keybytes[rnd(#keybytes) + 1] end\n"
	"  return table.concat(t)\n"
	"end\n"
	"local function gen(d)\n"
	"  local k = rnd(d > 3 and 5 or 9)\n"
	"  if k == 0 then return str() elseif k == 1 then return nums[rnd(#nums) + 1]\n"
	"  elseif k == 2 then return rnd(2) == 0 elseif k == 3 then return ctxnull\n"
	"  elseif k == 4 then return rnd(1000000) - 500000\n"
	"  elseif k <= 6 then\n"
	"    local t = {}\n"
	"    for i = 1, rnd(5) do t[i] = gen(d + 1) end\n"
	"    if rnd(2) == 0 then setmetatable(t, ARRAY_MT) end\n"
	"    return t\n"
	"  else\n"
	"    local t = {}\n"
	"    for i = 1, rnd(6) do t[key() .. 'k' .. rnd(100)] = gen(d + 1) end\n"
	"    return t\n"
	"  end\n"
	"end\n"
	"return { body = gen(0), n = gen(2) }\n";

static void test_encode(lua_State *L)
{
	lua_pushlightuserdata(L, NULL);
	lua_setglobal(L, "ctxnull");
	check_encode(L, "return {}", 1);
	check_encode(L, "return setmetatable({}, ARRAY_MT)", 1);
	check_encode(L, "return {a = 1, b = {1, 2, 'x'}, c = {d = 'e'}, f = true, g = false}", 1);
	check_encode(L, "return 'a\\0b\\1\\31\\127 \"q\" \\\\ / \\195\\169'", 1);
	check_encode(L, "return {0.1, 1/3, 1e300, -1e-300, 1e-7, 2^53, 2^60, 1e21, 5e-324, -0.0, 12.5}", 1);
	check_encode(L, "return {math.maxinteger, math.mininteger, 0, -1}", 1);
	check_encode(L, "return setmetatable({1, nil, 3}, ARRAY_MT)", 1);
	check_encode(L, "return nil", 1);
	check_encode(L, "return 5", 1);
	check_encode(L, "return '\\255'", 1);          /* invalid UTF-8: both refuse */
	check_encode(L, "return {x = 0/0}", 1);          /* NaN: both refuse */
	check_encode(L, "return {f = print}", 1);
	check_encode(L, "local t = {} t.t = t return t", 1);
	check_encode(L, "return {[1] = 'a', x = 1}", 0);  /* number keys: left to jansson */
	check_encode(L, "return {['a\\0b'] = 1}", 0);
	check_encode(L, "return {['\\255'] = 1}", 0);    /* jansson prints a broken key */
	for (int seed = 1; seed <= 4000; seed++) {
		if (luaL_loadstring(L, random_src) != LUA_OK) {
			fprintf(stderr, "lua error: %s\n", lua_tostring(L, -1));
			CHECK(0);
			return;
		}
		lua_pushinteger(L, seed);
		if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
			fprintf(stderr, "lua error: %s\n", lua_tostring(L, -1));
			CHECK(0);
			return;
		}
		check_encode_top(L, 1);
		lua_getfield(L, -1, "body");
		check_encode_top(L, 1);
		lua_pop(L, 2);
	}
	CHECK(nencoded > 1000 && nrefused_enc > 100);
	/* the size limit: refused, out left as it was */
	{
		struct buf b;
		buf_init(&b, 8);
		CHECK_EQ_INT(buf_add(&b, "ab", 2), 0);
		lua_pushliteral(L, "a string longer than eight bytes");
		CHECK_EQ_INT(luajson_encode(L, -1, &b), -1);
		CHECK_EQ_INT((int)b.len, 2);
		CHECK_STR_EQ(b.p, "ab");
		lua_pop(L, 1);
		buf_free(&b);
	}
}

int main(void)
{
	lua_State *L = luaL_newstate();
	luaL_openlibs(L);
	luajson_array_mt(L);
	lua_setglobal(L, "ARRAY_MT");
	test_decode(L);
	test_encode(L);
	lua_close(L);
	return check_done();
}
