/*
 * script_sandbox.c: the sandboxed builtins and require (see
 * script_sandbox.h).
 */
#include "script_sandbox.h"
#include "log.h"
#include "luajson.h"
#include "script_limits.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>

#define LOG_MSG_MAX 1000 /* bytes of a script's log line */

int luaopen_cjson(lua_State *L);
int luaopen_cjson_safe(lua_State *L);

/* Joins the arguments with tabs into a log line tagged with the script. */
int sandbox_log(lua_State *L)
{
	struct vm *vm = vm_of(L);
	int n = lua_gettop(L);
	luaL_Buffer b;
	luaL_buffinit(L, &b);
	for (int i = 1; i <= n; i++) {
		if (i > 1)
			luaL_addchar(&b, '\t');
		luaL_tolstring(L, i, NULL);
		luaL_addvalue(&b);
	}
	luaL_pushresult(&b);
	{
		size_t len;
		const char *s = lua_tolstring(L, -1, &len);
		log_info("%s: %.*s", vm->chunk, (int)(len > LOG_MSG_MAX ? LOG_MSG_MAX : len), s);
	}
	return 0;
}

/* load(chunk [, chunkname [, mode [, env]]]): text only; env defaults to the
 * sandbox. Upvalue 1 is the real load. */
static int sb_load(lua_State *L)
{
	int has_env = !lua_isnone(L, 4);
	luaL_checkany(L, 1);
	if (lua_type(L, 1) == LUA_TSTRING) /* parsing is work done in C */
		limits_charge(L, vm_of(L), (double)lua_rawlen(L, 1));
	lua_settop(L, 4);
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_pushvalue(L, 1);
	if (lua_isnoneornil(L, 2))
		lua_pushliteral(L, "=(load)");
	else
		lua_pushvalue(L, 2);
	lua_pushliteral(L, "t");
	if (has_env)
		lua_pushvalue(L, 4);
	else
		lua_rawgetp(L, LUA_REGISTRYINDEX, &script_key_env);
	lua_call(L, 4, 2);
	if (lua_isnil(L, -2))
		return 2; /* nil, message */
	lua_pop(L, 1);
	return 1;
}

static int sb_collectgarbage(lua_State *L)
{
	const char *opt = luaL_optstring(L, 1, "collect");
	if (strcmp(opt, "count") != 0)
		return luaL_error(L, "collectgarbage: only \"count\" is allowed");
	int k = lua_gc(L, LUA_GCCOUNT), b = lua_gc(L, LUA_GCCOUNTB);
	lua_pushnumber(L, (lua_Number)k + (lua_Number)b / 1024);
	return 1;
}

/* pcall(f, ...) that cannot catch limit errors. */
static int sb_pcall(lua_State *L)
{
	struct vm *vm = vm_of(L);
	int n = lua_gettop(L), mem_before = vm->mem_hit, st;
	luaL_checkany(L, 1);
	vm->mem_hit = 0;
	lua_pushboolean(L, 1);
	lua_insert(L, 1);
	st = lua_pcall(L, n - 1, LUA_MULTRET, 0);
	if (st == LUA_OK) {
		vm->mem_hit |= mem_before;
		return lua_gettop(L);
	}
	limits_rethrow(L, vm, st, mem_before);
	lua_pushboolean(L, 0);
	lua_insert(L, -2);
	return 2;
}

/*
 * xpcall(f, msgh, ...) as pcall(f, ...) followed by msgh(err). Lua runs a
 * message handler before unwinding, and when the error was raised from the
 * count hook, hooks are still disabled at that point: a handler that loops
 * would escape the budget. Without the debug library a handler cannot look
 * at the failed stack anyway, so running it after the unwind loses nothing.
 */
static int sb_xpcall(lua_State *L)
{
	struct vm *vm = vm_of(L);
	int n = lua_gettop(L), mem_before = vm->mem_hit, st;
	luaL_checktype(L, 2, LUA_TFUNCTION);
	vm->mem_hit = 0;
	lua_pushboolean(L, 1);
	lua_pushvalue(L, 1);
	for (int i = 3; i <= n; i++)
		lua_pushvalue(L, i);
	st = lua_pcall(L, n - 2, LUA_MULTRET, 0);
	if (st == LUA_OK) {
		vm->mem_hit |= mem_before;
		return lua_gettop(L) - n;
	}
	limits_rethrow(L, vm, st, mem_before);
	lua_pushvalue(L, 2);
	lua_insert(L, -2);
	vm->mem_hit = 0;
	st = lua_pcall(L, 1, 1, 0); /* an error in the handler is returned as is */
	if (st != LUA_OK)
		limits_rethrow(L, vm, st, mem_before);
	else
		vm->mem_hit |= mem_before;
	lua_pushboolean(L, 0);
	lua_insert(L, -2);
	return 2;
}

/* setmetatable without __gc: finalizers run with hooks disabled, so an
 * endless __gc would escape the instruction budget. */
static int sb_setmetatable(lua_State *L)
{
	int t = lua_type(L, 2);
	luaL_checktype(L, 1, LUA_TTABLE);
	luaL_argexpected(L, t == LUA_TNIL || t == LUA_TTABLE, 2, "nil or table");
	if (t == LUA_TTABLE) {
		lua_pushliteral(L, "__gc");
		if (lua_rawget(L, 2) != LUA_TNIL)
			return luaL_error(L, "setmetatable: __gc metamethods are not allowed");
		lua_pop(L, 1);
	}
	if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL)
		return luaL_error(L, "cannot change a protected metatable");
	lua_settop(L, 2);
	lua_setmetatable(L, 1);
	return 1;
}

/* cjson's decode wrapped: refuse inputs that cannot fit in the remaining
 * memory before cjson mallocs its scratch buffer (which a memory error in
 * the middle of decoding would leak). Upvalue 1 is the real decode. */
static int sb_json_decode(lua_State *L)
{
	struct vm *vm = vm_of(L);
	size_t len;
	luaL_checklstring(L, 1, &len);
	if (len > (vm->mem_cap - vm->mem_used) / 4) {
		lua_gc(L, LUA_GCCOLLECT);
		if (len > (vm->mem_cap - vm->mem_used) / 4)
			return luaL_error(L, "not enough memory");
	}
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_insert(L, 1);
	lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
	return lua_gettop(L);
}

/* require("cjson" | "cjson.safe" | "lib.NAME"); lib modules load once per
 * state from the sources copied into it, into the same sandbox. */
static int sb_require(lua_State *L)
{
	size_t len;
	const char *name = luaL_checklstring(L, 1, &len);
	char chunk[SCRIPT_NAME_MAX + 16];

	if (strcmp(name, "cjson") == 0 || strcmp(name, "cjson.safe") == 0) {
		lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
		lua_getfield(L, -1, name);
		return 1;
	}
	if (len < 5 || strncmp(name, "lib.", 4) != 0 || !script_valid_name(name + 4, len - 4)) {
		if (len > 80)
			return luaL_error(L, "require: module name not allowed (only cjson and lib.NAME)");
		return luaL_error(L, "require: module '%s' not allowed (only cjson and lib.NAME)", name);
	}
	lua_settop(L, 1);
	lua_rawgetp(L, LUA_REGISTRYINDEX, &script_key_loaded); /* 2 */
	lua_getfield(L, 2, name + 4);                 /* 3 */
	if (lua_touserdata(L, 3) == (void *)&script_key_loading)
		return luaL_error(L, "require: circular require of '%s'", name);
	if (!lua_isnil(L, 3))
		return 1;
	lua_pop(L, 1);
	lua_rawgetp(L, LUA_REGISTRYINDEX, &script_key_libsrc);
	if (lua_getfield(L, -1, name + 4) != LUA_TSTRING)
		return luaL_error(L, "require: module '%s' not found (no lib/%s.lua)", name, name + 4);
	{
		size_t sl;
		const char *src = lua_tolstring(L, -1, &sl);
		snprintf(chunk, sizeof chunk, "@lib/%s.lua", name + 4);
		if (luaL_loadbufferx(L, src, sl, chunk, "t") != LUA_OK)
			return lua_error(L);
	}
	lua_rawgetp(L, LUA_REGISTRYINDEX, &script_key_env);
	lua_setupvalue(L, -2, 1);
	lua_pushlightuserdata(L, (void *)&script_key_loading);
	lua_setfield(L, 2, name + 4);
	lua_pushvalue(L, 1);
	if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
		lua_pushnil(L);
		lua_setfield(L, 2, name + 4);
		return lua_error(L);
	}
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		lua_pushboolean(L, 1);
	}
	lua_pushvalue(L, -1);
	lua_setfield(L, 2, name + 4);
	return 1;
}

/* Copies the named fields of the table at src into a new table (pushed). */
static void copy_fields(lua_State *L, int src, const char *const *names)
{
	lua_newtable(L);
	for (; *names; names++) {
		lua_getfield(L, src, *names);
		lua_setfield(L, -2, *names);
	}
}

/*
 * Copies every field of the table at src except those listed (pushed).
 * Functions are wrapped by sb_charged as charge_kind_of(lib, name) says, so
 * that the work they do in C counts against the instruction budget.
 */
void sandbox_copy_except(lua_State *L, int src, const char *const *skip, const char *lib)
{
	src = lua_absindex(L, src);
	lua_newtable(L);
	lua_pushnil(L);
	while (lua_next(L, src)) {
		int drop = 0;
		if (lua_type(L, -2) == LUA_TSTRING)
			for (const char *const *s = skip; *s; s++)
				if (strcmp(lua_tostring(L, -2), *s) == 0)
					drop = 1;
		if (drop) {
			lua_pop(L, 1);
			continue;
		}
		if (lua_type(L, -1) == LUA_TFUNCTION && lua_type(L, -2) == LUA_TSTRING)
			limits_wrap(L, lib, lua_tostring(L, -2));
		lua_pushvalue(L, -2);
		lua_insert(L, -2);
		lua_rawset(L, -4);
	}
}

/* Configures a cjson module table on top of the stack for untrusted input. */
static void cjson_setup(lua_State *L)
{
	int m = lua_gettop(L);
	lua_getfield(L, m, "decode_invalid_numbers");
	lua_pushboolean(L, 0);
	lua_call(L, 1, 0);
	lua_getfield(L, m, "decode_max_depth");
	lua_pushinteger(L, LUAJSON_MAX_DEPTH);
	lua_call(L, 1, 0);
	lua_getfield(L, m, "encode_max_depth");
	lua_pushinteger(L, LUAJSON_MAX_DEPTH);
	lua_call(L, 1, 0);
	lua_getfield(L, m, "decode");
	lua_pushcclosure(L, sb_json_decode, 1);
	lua_setfield(L, m, "decode");
	for (int i = 0; i < 2; i++) {
		const char *fn = i ? "decode" : "encode";
		lua_getfield(L, m, fn);
		limits_wrap_scan(L);
		lua_setfield(L, m, fn);
	}
}

void sandbox_open(lua_State *L, struct vm *vm, const struct libset *libs)
{
	static const char *const base_names[] = { "assert", "error", "ipairs", "next",
		"pairs", "select", "tonumber", "tostring", "type",
		"rawequal", "rawget", "rawset", "rawlen", "getmetatable", "_VERSION", NULL };
	static const char *const no_dump[] = { "dump", NULL };
	static const char *const no_seed[] = { "randomseed", NULL };
	static const char *const none[] = { NULL };
	static const char *const os_names[] = { "time", "date", "clock", NULL };
	int G, S, str, tbl, mth, utf, os, cj;

	luaL_requiref(L, "_G", luaopen_base, 0);
	G = lua_gettop(L);
	luaL_requiref(L, LUA_STRLIBNAME, luaopen_string, 0);
	str = lua_gettop(L);
	luaL_requiref(L, LUA_TABLIBNAME, luaopen_table, 0);
	tbl = lua_gettop(L);
	luaL_requiref(L, LUA_MATHLIBNAME, luaopen_math, 0);
	mth = lua_gettop(L);
	luaL_requiref(L, LUA_UTF8LIBNAME, luaopen_utf8, 0);
	utf = lua_gettop(L);
	luaL_requiref(L, LUA_OSLIBNAME, luaopen_os, 0);
	os = lua_gettop(L);
	luaL_requiref(L, "cjson", luaopen_cjson, 0);
	cjson_setup(L);
	cj = lua_gettop(L);
	luaL_requiref(L, "cjson.safe", luaopen_cjson_safe, 0);
	cjson_setup(L);
	lua_pop(L, 1);

	/* the sandbox */
	copy_fields(L, G, base_names);
	S = lua_gettop(L);
	lua_pushvalue(L, S);
	lua_setfield(L, S, "_G");
	lua_getfield(L, G, "load");
	lua_pushcclosure(L, sb_load, 1);
	lua_setfield(L, S, "load");
	lua_pushcfunction(L, sb_collectgarbage);
	lua_setfield(L, S, "collectgarbage");
	lua_pushcfunction(L, sb_setmetatable);
	lua_setfield(L, S, "setmetatable");
	lua_pushcfunction(L, sb_xpcall);
	lua_setfield(L, S, "xpcall");
	lua_pushcfunction(L, sb_pcall);
	lua_setfield(L, S, "pcall");
	lua_pushcfunction(L, sb_require);
	lua_setfield(L, S, "require");
	lua_pushcfunction(L, sandbox_log);
	lua_setfield(L, S, "print");
	sandbox_copy_except(L, str, no_dump, "string");
	lua_setfield(L, S, "string");
	sandbox_copy_except(L, tbl, none, "table");
	lua_setfield(L, S, "table");
	sandbox_copy_except(L, mth, no_seed, "math");
	lua_setfield(L, S, "math");
	sandbox_copy_except(L, utf, none, "utf8");
	lua_setfield(L, S, "utf8");
	copy_fields(L, os, os_names);
	lua_setfield(L, S, "os");
	lua_pushvalue(L, S);
	lua_rawsetp(L, LUA_REGISTRYINDEX, &script_key_env);

	/* strings index the sandbox's string table; the metatable is hidden */
	lua_pushliteral(L, "");
	lua_getmetatable(L, -1);
	lua_getfield(L, S, "string");
	lua_setfield(L, -2, "__index");
	lua_pushboolean(L, 0);
	lua_setfield(L, -2, "__metatable");
	lua_pop(L, 2);

	/* the original string.find, for routing (the script cannot replace it) */
	lua_getfield(L, str, "find");
	vm->ref_find = luaL_ref(L, LUA_REGISTRYINDEX);

	/* lib sources and the require cache */
	lua_createtable(L, 0, (int)libs->n);
	for (size_t i = 0; i < libs->n; i++) {
		lua_pushlstring(L, libs->v[i].src, libs->v[i].len);
		lua_setfield(L, -2, libs->v[i].name);
	}
	lua_rawsetp(L, LUA_REGISTRYINDEX, &script_key_libsrc);
	lua_newtable(L);
	lua_rawsetp(L, LUA_REGISTRYINDEX, &script_key_loaded);

	/* hide the array marker: a __gc added to it would mark every array
	 * made later for finalization, and finalizers run without hooks */
	luajson_array_mt(L);
	lua_pushboolean(L, 0);
	lua_setfield(L, -2, "__metatable");
	lua_pop(L, 1);

	lua_pushvalue(L, cj);
}
