/*
 * script_ctx.c: the ctx table scripts receive (see script_ctx.h and
 * docs/scripts.md, "ctx").
 */
#include "script_ctx.h"
#include "config.h"
#include "luajson.h"
#include "sign.h"
#include "script_sandbox.h"

#include <ctype.h>
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static int ctx_array(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	luajson_array_mt(L);
	lua_setmetatable(L, 1);
	return 1;
}

/* ctx.secret(name): the script's own provider settings from the config; in
 * examples the example's ctx.secrets or "example-NAME". Hooks get nil. */
static int ctx_secret(lua_State *L)
{
	struct vm *vm = vm_of(L);
	const char *k = luaL_checkstring(L, 1);
	json_t *v = NULL;

	if (vm->kind != SCRIPT_PROVIDER) {
		lua_pushnil(L);
		return 1;
	}
	if (vm->example_mode) {
		v = vm->example_secrets ? json_object_get(vm->example_secrets, k) : NULL;
		if (!v) {
			lua_pushfstring(L, "example-%s", k);
			return 1;
		}
	} else if (vm->key && strcmp(k, "key") == 0) {
		lua_pushstring(L, vm->key);
		return 1;
	} else {
		json_t *p = config_provider(vm->cfg, vm->name);
		v = p ? json_object_get(p, k) : NULL;
	}
	if (!v || json_is_null(v))
		lua_pushnil(L);
	else if (luajson_push(L, v) < 0)
		lua_pushnil(L);
	return 1;
}

static int ctx_hmac_sha256(lua_State *L)
{
	size_t kl, ml;
	const char *k = luaL_checklstring(L, 1, &kl);
	const char *m = luaL_checklstring(L, 2, &ml);
	unsigned char out[SIGN_SHA256_LEN];
	if (sign_hmac_sha256(k, kl, m, ml, out) != SIGN_SHA256_LEN)
		return luaL_error(L, "hmac_sha256 failed");
	lua_pushlstring(L, (const char *)out, sizeof out);
	return 1;
}

static int ctx_sha256(lua_State *L)
{
	size_t n;
	const char *s = luaL_checklstring(L, 1, &n);
	unsigned char out[SIGN_SHA256_LEN];
	if (sign_sha256(s, n, out) != SIGN_SHA256_LEN)
		return luaL_error(L, "sha256 failed");
	lua_pushlstring(L, (const char *)out, sizeof out);
	return 1;
}

static int ctx_ed25519_verify(lua_State *L)
{
	size_t pl, ml, sl;
	const char *pub = luaL_checklstring(L, 1, &pl);
	const char *msg = luaL_checklstring(L, 2, &ml);
	const char *sig = luaL_checklstring(L, 3, &sl);
	lua_pushboolean(L, pl == 32 && sl == 64 &&
			sign_ed25519_verify((const unsigned char *)pub, pl, msg, ml,
					    (const unsigned char *)sig, sl) == 1);
	return 1;
}

static int ctx_base64(lua_State *L)
{
	size_t n;
	const char *s = luaL_checklstring(L, 1, &n);
	size_t need = (n + 2) / 3 * 4 + 1;
	luaL_Buffer b;
	char *out = luaL_buffinitsize(L, &b, need);
	if (sign_base64_encode(s, n, out, need) < 0)
		return luaL_error(L, "base64: input too large");
	luaL_pushresultsize(&b, strlen(out));
	return 1;
}

static int ctx_base64_decode(lua_State *L)
{
	size_t n;
	const char *s = luaL_checklstring(L, 1, &n);
	size_t need = (n + 3) / 4 * 3 + 1;
	luaL_Buffer b;
	char *out = luaL_buffinitsize(L, &b, need);
	int r = sign_base64_decode(s, n, out, need);
	if (r < 0) {
		lua_pushnil(L);
		return 1;
	}
	luaL_pushresultsize(&b, (size_t)r);
	return 1;
}

static int ctx_hex(lua_State *L)
{
	size_t n;
	const char *s = luaL_checklstring(L, 1, &n);
	size_t need = 2 * n + 1;
	luaL_Buffer b;
	char *out = luaL_buffinitsize(L, &b, need);
	if (sign_hex_encode(s, n, out, need) < 0)
		return luaL_error(L, "hex: input too large");
	luaL_pushresultsize(&b, 2 * n);
	return 1;
}

static int ctx_hex_decode(lua_State *L)
{
	size_t n;
	const char *s = luaL_checklstring(L, 1, &n);
	size_t need = n / 2 + 1;
	luaL_Buffer b;
	char *out = luaL_buffinitsize(L, &b, need);
	int r = sign_hex_decode(s, n, out, need);
	if (r < 0) {
		lua_pushnil(L);
		return 1;
	}
	luaL_pushresultsize(&b, (size_t)r);
	return 1;
}

static int ctx_equal(lua_State *L)
{
	size_t al, bl;
	const char *a = luaL_checklstring(L, 1, &al);
	const char *b = luaL_checklstring(L, 2, &bl);
	lua_pushboolean(L, sign_equal(a, al, b, bl) == 1);
	return 1;
}

static int ctx_url_encode(lua_State *L)
{
	static const char hexd[] = "0123456789ABCDEF";
	size_t n;
	const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
	luaL_Buffer b;
	luaL_buffinit(L, &b);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = s[i];
		if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
			luaL_addchar(&b, (char)c);
		} else {
			luaL_addchar(&b, '%');
			luaL_addchar(&b, hexd[c >> 4]);
			luaL_addchar(&b, hexd[c & 15]);
		}
	}
	luaL_pushresult(&b);
	return 1;
}

/* ctx.random_hex(nbytes): nbytes (1..64) cryptographically random bytes as
 * lower-case hex, e.g. a per-job secret. Raises on a bad count or when the
 * random source fails. */
static int ctx_random_hex(lua_State *L)
{
	lua_Integer n = luaL_checkinteger(L, 1);
	unsigned char raw[64];
	char out[2 * sizeof raw + 1];
	luaL_argcheck(L, n >= 1 && n <= (lua_Integer)sizeof raw, 1, "must be 1..64");
	if (sign_random(raw, (size_t)n) < 0 ||
	    sign_hex_encode((const char *)raw, (size_t)n, out, sizeof out) < 0)
		return luaL_error(L, "random_hex: no random bytes");
	lua_pushlstring(L, out, 2 * (size_t)n);
	return 1;
}

static int ctx_now(lua_State *L)
{
	struct vm *vm = vm_of(L);
	struct timespec ts;
	if (vm->now > 0) {
		lua_pushnumber(L, vm->now);
		return 1;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
	return 1;
}

void ctxlib_build(lua_State *L, struct vm *vm, int cjson)
{
	static const luaL_Reg ctx_fns[] = {
		{ "array", ctx_array }, { "secret", ctx_secret },
		{ "hmac_sha256", ctx_hmac_sha256 }, { "sha256", ctx_sha256 },
		{ "ed25519_verify", ctx_ed25519_verify }, { "base64", ctx_base64 },
		{ "base64_decode", ctx_base64_decode }, { "hex", ctx_hex },
		{ "hex_decode", ctx_hex_decode }, { "equal", ctx_equal },
		{ "url_encode", ctx_url_encode }, { "now", ctx_now }, { "log", sandbox_log },
		{ "random_hex", ctx_random_hex },
		{ NULL, NULL } };
	static const char *const none[] = { NULL };

	cjson = lua_absindex(L, cjson);
	lua_createtable(L, 0, 16);
	luaL_setfuncs(L, ctx_fns, 0);
	sandbox_copy_except(L, -1, none, "ctx");
	lua_remove(L, -2);
	lua_pushvalue(L, cjson);
	lua_setfield(L, -2, "json");
	lua_pushlightuserdata(L, NULL);
	lua_setfield(L, -2, "null");
	vm->ref_ctx = luaL_ref(L, LUA_REGISTRYINDEX);
}

/*
 * Pushes ctx.keys for keys (borrowed): the table cached in the registry when
 * keys is the object it was built from, else a new table, cached for the next
 * call (examples are not cached: their keys live only for the example).
 * Pushes nil for NULL keys or keys nested too deeply.
 */
static void push_keys(lua_State *L, struct vm *vm, json_t *keys)
{
	if (!keys) {
		lua_pushnil(L);
		return;
	}
	if (!vm->example_mode && keys == vm->keys_src && vm->ref_keys != LUA_NOREF) {
		lua_rawgeti(L, LUA_REGISTRYINDEX, vm->ref_keys);
		return;
	}
	if (luajson_push(L, keys) < 0) {
		lua_pushnil(L);
		return;
	}
	if (vm->example_mode)
		return;
	luaL_unref(L, LUA_REGISTRYINDEX, vm->ref_keys);
	vm->ref_keys = LUA_NOREF; /* luaL_ref below may raise (memory cap) */
	lua_pushvalue(L, -1);
	vm->ref_keys = luaL_ref(L, LUA_REGISTRYINDEX);
	json_decref(vm->keys_src);
	vm->keys_src = json_incref(keys);
}

void ctxlib_push(lua_State *L, struct vm *vm, const struct script_ctx *ctx, const json_t *ex_ctx)
{
	const char *cb = ctx ? ctx->callback_url : NULL;
	json_t *keys = ctx ? ctx->keys : NULL;
	char buf[256];

	if (vm->example_mode) {
		json_t *x = ex_ctx ? json_object_get(ex_ctx, "callback_url") : NULL;
		if (json_is_string(x)) {
			cb = json_string_value(x);
		} else {
			snprintf(buf, sizeof buf,
				 "https://genrelay.invalid/v1/callbacks/%s/job_example/example-token",
				 vm->name);
			cb = buf;
		}
		keys = ex_ctx ? json_object_get(ex_ctx, "keys") : NULL;
	}
	lua_rawgeti(L, LUA_REGISTRYINDEX, vm->ref_ctx);
	lua_pushliteral(L, "callback_url");
	if (cb)
		lua_pushstring(L, cb);
	else
		lua_pushnil(L);
	lua_rawset(L, -3);
	lua_pushliteral(L, "keys");
	push_keys(L, vm, keys);
	lua_rawset(L, -3);
	lua_pushliteral(L, "config");
	lua_rawgeti(L, LUA_REGISTRYINDEX, vm->example_mode ? vm->ref_defaults : vm->ref_config);
	lua_rawset(L, -3);
}

