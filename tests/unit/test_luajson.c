/*
 * test_luajson.c: Lua <-> jansson conversion (core/luajson.c).
 */
#include "check.h"
#include "luajson.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>

/* Runs a Lua snippet that leaves one value on the stack, converts it. */
static json_t *from_lua(lua_State *L, const char *code, char *err, size_t errlen)
{
	int top = lua_gettop(L);
	json_t *j;
	if (luaL_loadstring(L, code) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
		fprintf(stderr, "lua error: %s\n", lua_tostring(L, -1));
		lua_settop(L, top);
		return NULL;
	}
	err[0] = '\0';
	j = luajson_to_json(L, -1, err, errlen);
	CHECK_EQ_INT(lua_gettop(L), top + 1); /* conversion leaves the stack alone */
	lua_settop(L, top);
	return j;
}

static char *dump(const json_t *j)
{
	return j ? json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT | JSON_SORT_KEYS) : NULL;
}

static void check_lua_dump(lua_State *L, const char *code, const char *want)
{
	char err[256];
	json_t *j = from_lua(L, code, err, sizeof err);
	char *s = dump(j);
	CHECK_STR_EQ(s, want);
	if (!s)
		fprintf(stderr, "    for %s: %s\n", code, err);
	free(s);
	json_decref(j);
}

static void check_lua_err(lua_State *L, const char *code, const char *want_sub)
{
	char err[1024]; /* the path of a value LUAJSON_MAX_DEPTH deep is long */
	json_t *j = from_lua(L, code, err, sizeof err);
	CHECK(j == NULL);
	CHECK(strstr(err, want_sub) != NULL);
	if (!strstr(err, want_sub))
		fprintf(stderr, "    for %s: err=\"%s\", want \"%s\"\n", code, err, want_sub);
	json_decref(j);
}

/* json text -> Lua -> json text, compared after sorting keys. */
static void check_round_trip(lua_State *L, const char *text)
{
	json_error_t je;
	json_t *in = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
	char err[256];
	int top = lua_gettop(L);
	CHECK(in != NULL);
	if (!in)
		return;
	CHECK_EQ_INT(luajson_push(L, in), 0);
	CHECK_EQ_INT(lua_gettop(L), top + 1);
	json_t *out = luajson_to_json(L, -1, err, sizeof err);
	lua_settop(L, top);
	CHECK(out != NULL);
	CHECK(out && json_equal(in, out));
	if (out && !json_equal(in, out)) {
		char *a = dump(in), *b = dump(out);
		fprintf(stderr, "    %s != %s\n", a, b);
		free(a);
		free(b);
	}
	json_decref(in);
	json_decref(out);
}

static json_t *nested_arrays(int depth)
{
	json_t *v = json_integer(1);
	for (int i = 0; i < depth; i++) {
		json_t *a = json_array();
		json_array_append_new(a, v);
		v = a;
	}
	return v;
}

int main(void)
{
	lua_State *L = luaL_newstate();
	luaL_openlibs(L);

	/* the array marker is reachable from Lua for the tests */
	luajson_array_mt(L);
	lua_setglobal(L, "ARRAY_MT");

	/* round trips */
	check_round_trip(L, "{\"a\":1,\"b\":[1,2,3],\"c\":{\"d\":\"x\"},\"e\":true,\"f\":false,\"g\":null}");
	check_round_trip(L, "[]");
	check_round_trip(L, "{}");
	check_round_trip(L, "{\"items\":[],\"o\":{}}");
	check_round_trip(L, "[null,null,1]");
	check_round_trip(L, "[1.5,-2.25,1e300]");
	check_round_trip(L, "\"caf\\u00e9 \\u0000 nul\"");
	check_round_trip(L, "9007199254740993");
	check_round_trip(L, "-9223372036854775807");
	check_round_trip(L, "null");
	check_round_trip(L, "[[[[[[\"deep\"]]]]]]");

	/* null is the lightuserdata NULL (cjson.null) */
	{
		json_t *n = json_null();
		luajson_push(L, n);
		CHECK(lua_type(L, -1) == LUA_TLIGHTUSERDATA && lua_touserdata(L, -1) == NULL);
		lua_pop(L, 1);
		luajson_push(L, NULL);
		CHECK(lua_touserdata(L, -1) == NULL);
		lua_pop(L, 1);
	}

	/* JSON arrays carry the marker; empty Lua tables are objects unless marked */
	{
		json_t *a = json_array();
		luajson_push(L, a);
		CHECK(lua_getmetatable(L, -1));
		luajson_array_mt(L);
		CHECK(lua_rawequal(L, -1, -2));
		lua_pop(L, 3);
		json_decref(a);
	}
	check_lua_dump(L, "return {}", "{}");
	check_lua_dump(L, "return setmetatable({}, ARRAY_MT)", "[]");
	check_lua_dump(L, "return {items = setmetatable({}, ARRAY_MT)}", "{\"items\":[]}");
	check_lua_dump(L, "return setmetatable({1, nil, 3}, ARRAY_MT)", "[1,null,3]");

	/* sequences, integers and floats */
	check_lua_dump(L, "return {1, 2, 'x'}", "[1,2,\"x\"]");
	check_lua_dump(L, "return {a = 1, b = 2.5, c = 3.0}", "{\"a\":1,\"b\":2.5,\"c\":3}");
	check_lua_dump(L, "return 2^53", "9007199254740992");
	check_lua_dump(L, "return 2^60", "1.152921504606847e18");
	check_lua_dump(L, "return math.maxinteger", "9223372036854775807");
	check_lua_dump(L, "return nil", "null");
	check_lua_dump(L, "return 'a\\0b'", "\"a\\u0000b\"");

	/* non-string keys */
	check_lua_dump(L, "return {[1] = 'a', x = 1}", "{\"1\":\"a\",\"x\":1}");
	check_lua_dump(L, "return {[1] = 'a', [3] = 'c'}", "{\"1\":\"a\",\"3\":\"c\"}");
	check_lua_dump(L, "return {[0] = 'z'}", "{\"0\":\"z\"}");
	check_lua_dump(L, "return {[1.5] = 'f'}", "{\"1.5\":\"f\"}");
	check_lua_err(L, "return {[true] = 1}", "boolean key");
	check_lua_err(L, "return {a = {[{}] = 1}}", "a: a table key");

	/* NaN and infinities refused, with the path */
	check_lua_err(L, "return 0/0", "NaN");
	check_lua_err(L, "return {a = {b = 1/0}}", "a.b: NaN or infinity");
	check_lua_err(L, "return {x = {-1/0}}", "x[1]: NaN or infinity");

	/* functions, coroutines and userdata refused */
	check_lua_err(L, "return {f = print}", "f: a function is not convertible");
	check_lua_err(L, "return print", "a function");
	check_lua_err(L, "return {co = coroutine.create(print)}", "co: a thread");
	check_lua_err(L, "return {io.stdout}", "[1]: a userdata");

	/* cycles refused; shared (acyclic) subtables allowed */
	check_lua_err(L, "local t = {} t.self = t return t", "self: cycle");
	check_lua_err(L, "local a = {} local b = {a} a[1] = b return a", "cycle");
	check_lua_dump(L, "local s = {1} return {a = s, b = s}", "{\"a\":[1],\"b\":[1]}");

	/* depth limit: LUAJSON_MAX_DEPTH levels are fine, one more is not */
	{
		char code[4096];
		size_t n = 0;
		n += (size_t)snprintf(code + n, sizeof code - n, "return ");
		for (int i = 0; i < LUAJSON_MAX_DEPTH; i++)
			n += (size_t)snprintf(code + n, sizeof code - n, "{");
		for (int i = 0; i < LUAJSON_MAX_DEPTH; i++)
			n += (size_t)snprintf(code + n, sizeof code - n, "}");
		char err[256];
		json_t *j = from_lua(L, code, err, sizeof err);
		CHECK(j != NULL);
		json_decref(j);
		n = 0;
		n += (size_t)snprintf(code + n, sizeof code - n, "return ");
		for (int i = 0; i <= LUAJSON_MAX_DEPTH; i++)
			n += (size_t)snprintf(code + n, sizeof code - n, "{");
		for (int i = 0; i <= LUAJSON_MAX_DEPTH; i++)
			n += (size_t)snprintf(code + n, sizeof code - n, "}");
		check_lua_err(L, code, "nesting too deep");
	}
	{
		int top = lua_gettop(L);
		json_t *ok = nested_arrays(LUAJSON_MAX_DEPTH - 1);
		json_t *deep = nested_arrays(LUAJSON_MAX_DEPTH + 5);
		CHECK_EQ_INT(luajson_push(L, ok), 0);
		CHECK_EQ_INT(lua_gettop(L), top + 1);
		lua_settop(L, top);
		CHECK_EQ_INT(luajson_push(L, deep), -1);
		CHECK_EQ_INT(lua_gettop(L), top); /* nothing left behind */
		json_decref(ok);
		json_decref(deep);
	}

	/* an input as deep as the API accepts (JSON_MAX_DEPTH) goes into a job
	 * table and comes back wrapped in a script's request body */
	{
		int top = lua_gettop(L);
		json_t *job = json_pack("{s:o}", "input", nested_arrays(JSON_MAX_DEPTH));
		CHECK_EQ_INT(luajson_push(L, job), 0);
		lua_setglobal(L, "job");
		char err[256];
		json_t *back = from_lua(L, "return { payload = { body = { arguments = job.input } } }",
					err, sizeof err);
		CHECK(back != NULL);
		if (!back)
			fprintf(stderr, "    %s\n", err);
		json_decref(back);
		json_decref(job);
		lua_settop(L, top);
	}

	/* large array and object keep order and size */
	{
		char err[64];
		json_t *j = from_lua(L, "local t = {} for i = 1, 1000 do t[i] = i end return t",
				     err, sizeof err);
		CHECK(json_is_array(j) && json_array_size(j) == 1000);
		CHECK(json_integer_value(json_array_get(j, 999)) == 1000);
		json_decref(j);
	}


	lua_close(L);
	return check_done();
}
