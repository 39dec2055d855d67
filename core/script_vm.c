/*
 * script_vm.c: one loaded version of one script (see script_vm.h).
 *
 * A vm is one lua_State with a counting allocator (memory cap), a count
 * hook (instruction budget per call), a sandbox environment built from an
 * allowlist, and a ctx table built once per state; a call only sets ctx's
 * per-call fields.
 */
#include "script_vm.h"
#include "buf.h"
#include "config.h"
#include "luajson.h"
#include "luajson_text.h"
#include "metrics.h"
#include "scrub.h"
#include "sign.h"
#include "script_contract.h"
#include "script_ctx.h"
#include "script_limits.h"
#include "script_sandbox.h"

#include <lauxlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MODELS_MAX 256 /* patterns per provider */

static void sha256_hex12(const unsigned char sha[32], char out[13])
{
	char hex[65];
	sign_hex_encode((const char *)sha, 32, hex, sizeof hex);
	memcpy(out, hex, 12);
	out[12] = '\0';
}

/* A settings key that may hold a secret: contains key, secret, token or
 * password (any case). New object: o without such keys (NULL o gives {}). */
static json_t *strip_secrets(const json_t *o)
{
	json_t *r = json_object();
	const char *k;
	json_t *v;
	if (!r || !o)
		return r;
	json_object_foreach((json_t *)o, k, v)
		if (!scrub_key_is_secret(k))
			json_object_set(r, k, v);
	return r;
}

/*
 * Every script error leaves through here (job errors, /v1/scripts, logs):
 * what Lua quoted of the script's string literals is redacted
 * (scrub_lua_message), then every configured secret.
 */
static void redact_error(const struct vm *vm, char *err, size_t errlen)
{
	if (!err || !errlen)
		return;
	scrub_lua_message(err, errlen, vm->literals);
	scrub_buf(vm->cfg ? vm->cfg->scrub : NULL, err, errlen);
}

static void vm_error_text(struct vm *vm, int rc, char *err, size_t errlen);

/*
 * Formats the error of a failed pcall (message on top of the stack) as
 * "providers/x.lua:LINE: msg", naming the script when Lua did not, redacted.
 */
static void vm_error(struct vm *vm, int rc, char *err, size_t errlen)
{
	vm_error_text(vm, rc, err, errlen);
	redact_error(vm, err, errlen);
}

static void vm_error_text(struct vm *vm, int rc, char *err, size_t errlen)
{
	lua_State *L = vm->L;
	const char *msg;
	size_t cl = strlen(vm->chunk);

	if (vm->budget_hit) {
		if (strncmp(vm->budget_where, vm->chunk, cl) == 0)
			script_set_err(err, errlen, "%s: instruction budget exceeded", vm->budget_where);
		else
			script_set_err(err, errlen, "%s: %s: instruction budget exceeded",
				vm->chunk, vm->budget_where);
		return;
	}
	msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
	if (rc == LUA_ERRMEM || (vm->mem_hit && msg && strcasestr(msg, "memory"))) {
		if (vm->mem_hit && vm->mem_where[0] && strncmp(vm->mem_where, vm->chunk, cl) == 0)
			script_set_err(err, errlen, "%s: memory cap exceeded", vm->mem_where);
		else
			script_set_err(err, errlen, "%s: memory cap exceeded", vm->chunk);
		return;
	}
	if (!msg) {
		script_set_err(err, errlen, "%s: error object is a %s value", vm->chunk,
			luaL_typename(L, -1));
		return;
	}
	if (strncmp(msg, vm->chunk, cl) == 0 && msg[cl] == ':')
		script_set_err(err, errlen, "%s", msg);
	else
		script_set_err(err, errlen, "%s: %s", vm->chunk, msg);
}

int vm_pcall(struct vm *vm, lua_CFunction f, void *ud, int nres,
		    char *err, size_t errlen, int *base)
{
	lua_State *L = vm->L;
	int rc;
	*base = lua_gettop(L);
	limits_reset(vm);
	lua_pushcfunction(L, f);
	lua_pushlightuserdata(L, ud);
	rc = lua_pcall(L, 1, nres, 0);
	if (rc == LUA_OK && vm->budget_hit) {
		/* caught by the script's pcall and returned through a tail call */
		rc = LUA_ERRRUN;
	}
	if (rc != LUA_OK) {
		vm_error(vm, rc, err, errlen);
		lua_settop(L, *base);
		return -1;
	}
	return 0;
}

struct setup_args {
	struct vm *vm;
	const struct libset *libs;
};

/* Protected: the sandbox and ctx. */
static int vm_setup(lua_State *L)
{
	struct setup_args *a = lua_touserdata(L, 1);
	lua_settop(L, 0);
	sandbox_open(L, a->vm, a->libs);
	ctxlib_build(L, a->vm, -1);
	return 0;
}

void vm_free(struct vm *vm)
{
	if (!vm)
		return;
	if (vm->L)
		lua_close(vm->L);
	json_decref(vm->keys_src);
	json_decref(vm->models);
	json_decref(vm->settings);
	json_decref(vm->defaults);
	free(vm->literals);
	free(vm);
}

/* Strips one leading '^' and one trailing unescaped '$' (patterns are
 * anchored by the host anyway). */
static void push_anchored(lua_State *L, const char *p, size_t n)
{
	luaL_Buffer b;
	if (n && p[0] == '^') {
		p++;
		n--;
	}
	if (n && p[n - 1] == '$' && !(n >= 2 && p[n - 2] == '%'))
		n--;
	luaL_buffinit(L, &b);
	luaL_addchar(&b, '^');
	luaL_addlstring(&b, p, n);
	luaL_addchar(&b, '$');
	luaL_pushresult(&b);
}

struct load_args {
	struct vm *vm;
	const char *src;
	size_t len;
};

static int load_fail(lua_State *L, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	lua_pushvfstring(L, fmt, ap);
	va_end(ap);
	return lua_error(L);
}

/*
 * Protected: compiles and runs the chunk, checks the returned table for its
 * kind, prepares models patterns and settings, and keeps the table.
 */
static int vm_load_body(lua_State *L)
{
	struct load_args *a = lua_touserdata(L, 1);
	struct vm *vm = a->vm;
	char chunkname[sizeof vm->chunk + 1];
	char jerr[256];
	int T;

	lua_settop(L, 0);
	snprintf(chunkname, sizeof chunkname, "@%s", vm->chunk);
	if (luaL_loadbufferx(L, a->src, a->len, chunkname, "t") != LUA_OK)
		return lua_error(L);
	lua_rawgetp(L, LUA_REGISTRYINDEX, &script_key_env);
	lua_setupvalue(L, -2, 1);
	lua_call(L, 0, 1);
	if (!lua_istable(L, 1))
		return load_fail(L, "must return a table, not %s", luaL_typename(L, 1));
	T = 1;

	if (contract_check_table(L, T, vm) < 0)
		return lua_error(L);

	/* models: a list of Lua patterns, checked by matching once */
	vm->models = json_array();
	if (!vm->models)
		return load_fail(L, "out of memory");
	lua_newtable(L); /* anchored patterns */
	int P = lua_gettop(L);
	int mt = lua_getfield(L, T, "models");
	if (mt != LUA_TNIL) {
		if (mt != LUA_TTABLE)
			return load_fail(L, "models must be a list of patterns");
		lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
		if (n > MODELS_MAX)
			return load_fail(L, "models: at most %d patterns", MODELS_MAX);
		for (lua_Integer i = 1; i <= n; i++) {
			size_t pl;
			if (lua_rawgeti(L, -1, i) != LUA_TSTRING)
				return load_fail(L, "models[%d] must be a string", (int)i);
			const char *p = lua_tolstring(L, -1, &pl);
			if (json_array_append_new(vm->models, json_stringn_nocheck(p, pl)) < 0)
				return load_fail(L, "out of memory");
			push_anchored(L, p, pl);
			lua_rawgeti(L, LUA_REGISTRYINDEX, vm->ref_find);
			lua_pushliteral(L, "");
			lua_pushvalue(L, -3);
			if (lua_pcall(L, 2, 0, 0) != LUA_OK)
				return load_fail(L, "models[%d]: %s", (int)i, lua_tostring(L, -1));
			lua_rawseti(L, P, i);
			lua_pop(L, 1);
		}
		vm->npatterns = (size_t)n;
	}
	lua_pop(L, 1);
	vm->ref_patterns = luaL_ref(L, LUA_REGISTRYINDEX);

	/* defaults and settings */
	{
		json_t *def = NULL, *merged;
		json_t *conf = vm->kind == SCRIPT_PROVIDER ? config_provider(vm->cfg, vm->name) : NULL;
		int dt = lua_getfield(L, T, "defaults");
		if (dt != LUA_TNIL) {
			if (dt != LUA_TTABLE)
				return load_fail(L, "defaults must be a table");
			def = luajson_to_json(L, -1, jerr, sizeof jerr);
			if (!def)
				return load_fail(L, "defaults.%s", jerr);
			if (!json_is_object(def)) {
				json_decref(def);
				return load_fail(L, "defaults must be a table of settings");
			}
		}
		lua_pop(L, 1);
		vm->defaults = strip_secrets(def);
		merged = def ? json_deep_copy(def) : json_object();
		json_decref(def);
		if (merged && conf)
			json_object_update(merged, conf);
		vm->settings = strip_secrets(merged);
		json_decref(merged);
		if (!vm->defaults || !vm->settings)
			return load_fail(L, "out of memory");
		if (luajson_push(L, vm->settings) < 0)
			return load_fail(L, "settings nested too deeply");
		vm->ref_config = luaL_ref(L, LUA_REGISTRYINDEX);
		if (luajson_push(L, vm->defaults) < 0)
			return load_fail(L, "defaults nested too deeply");
		vm->ref_defaults = luaL_ref(L, LUA_REGISTRYINDEX);
	}

	lua_pushvalue(L, T);
	vm->ref_table = luaL_ref(L, LUA_REGISTRYINDEX);
	return 0;
}

struct call {
	struct vm *vm;
	const char *fn;
	json_t *const *args;
	size_t nargs;
	const struct script_ctx *ctx;
	const json_t *ex_ctx; /* examples: the example's ctx object, or NULL */
	enum vm_args args_mode;
	int missing;
};

/* 1 when text (len bytes) starts, after whitespace, with an object or an
 * array: what json_loads without JSON_DECODE_ANY takes at the top. */
static int starts_container(const char *text, size_t len)
{
	size_t i = 0;
	while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r'))
		i++;
	return i < len && (text[i] == '{' || text[i] == '[');
}

/*
 * Protected: the text of field f decoded and set as the field of the table
 * on top (argument i), as if the argument had held jansson's parse of it:
 * text that is not JSON sets nothing (the argument's own value stays), and
 * JSON nested too deeply for Lua raises as luajson_push would.
 */
static void push_field(lua_State *L, struct script_json_field *f, size_t i)
{
	int rc = f->container && !starts_container(f->text, f->len)
		? -1 : luajson_decode(L, f->text, f->len, 2);
	f->ok = rc == 0;
	if (rc == -2) {
		json_t *j = json_loadb(f->text, f->len, f->container ? 0 : JSON_DECODE_ANY, NULL);
		if (j) {
			json_decref(j);
			luaL_error(L, "argument %d is nested too deeply", (int)i + 1);
		}
	}
	if (rc != 0)
		return;
	if (!lua_istable(L, -2)) {
		lua_pop(L, 1);
		return;
	}
	lua_pushstring(L, f->key);
	lua_insert(L, -2);
	lua_rawset(L, -3);
}

/* Protected, inside call_tramp: arguments i of c pushed, from the kept
 * values when c reuses them. */
static void push_arg(lua_State *L, struct call *c, size_t i, int kept)
{
	if (kept) {
		lua_rawgeti(L, kept, (lua_Integer)i + 1);
		return;
	}
	if (luajson_push(L, c->args[i]) < 0)
		luaL_error(L, "argument %d is nested too deeply", (int)i + 1);
	for (size_t k = 0; k < c->vm->nfields; k++) {
		struct script_json_field *f = &c->vm->fields[k];
		if (f->arg == i && f->text && f->key)
			push_field(L, f, i);
	}
}

/*
 * Protected: script.fn(args..., ctx), two results. ctx goes last, except
 * for verify(req, ctx, job) where it is the second argument.
 */
static int call_tramp(lua_State *L)
{
	struct call *c = lua_touserdata(L, 1);
	struct vm *vm = c->vm;
	size_t ctx_pos = contract_ctx_position(c->fn, c->nargs);

	lua_settop(L, 0);
	if (c->nargs > 200 || !lua_checkstack(L, (int)c->nargs + 8))
		return luaL_error(L, "too many arguments");
	lua_rawgeti(L, LUA_REGISTRYINDEX, vm->ref_table); /* 1 */
	if (lua_getfield(L, 1, c->fn) != LUA_TFUNCTION) { /* 2 */
		c->missing = 1;
		return 0;
	}
	ctxlib_push(L, vm, c->ctx, c->ex_ctx); /* 3 */
	int kept = 0;
	if (c->args_mode == VM_ARGS_REUSE && vm->ref_args != LUA_NOREF) {
		lua_rawgeti(L, LUA_REGISTRYINDEX, vm->ref_args); /* 4 */
		kept = 4;
	} else if (c->args_mode == VM_ARGS_KEEP) {
		lua_createtable(L, (int)c->nargs, 0); /* 4 */
		for (size_t i = 0; i < c->nargs; i++) {
			push_arg(L, c, i, 0);
			lua_rawseti(L, 4, (lua_Integer)i + 1);
		}
		vm_args_drop(vm);
		lua_pushvalue(L, 4);
		vm->ref_args = luaL_ref(L, LUA_REGISTRYINDEX);
		kept = 4;
	}
	lua_pushvalue(L, 2);
	for (size_t i = 0; i < c->nargs; i++) {
		if (i == ctx_pos)
			lua_pushvalue(L, 3);
		push_arg(L, c, i, kept);
	}
	if (ctx_pos == c->nargs)
		lua_pushvalue(L, 3);
	lua_call(L, (int)c->nargs + 1, 2);
	return 2;
}

/* The most bytes a rendered result field may take (more: jansson's path). */
#define RENDER_MAX ((size_t)64 * 1024 * 1024)

/*
 * vm->render: the result at idx, a table with no metatable whose field
 * render->key is neither nil nor a string, gets that field rendered as
 * JSON text (luajson_encode) into render->text. Returns the key, to be
 * left out of the result's conversion, or NULL when nothing was rendered
 * (the field then goes the jansson way, as without render). Never raises.
 */
static const char *render_field(struct vm *vm, int idx)
{
	struct script_rendered *r = vm->render;
	lua_State *L = vm->L;
	const char *skip = NULL;
	size_t klen = r && r->key ? strlen(r->key) : 0;
	if (!r || !r->key || r->text || lua_type(L, idx) != LUA_TTABLE)
		return NULL;
	if (lua_getmetatable(L, idx)) {
		lua_pop(L, 1);
		return NULL;
	}
	if (!lua_checkstack(L, 8))
		return NULL;
	/* Found by walking the keys: outside protected mode nothing here may
	 * allocate Lua memory (pushing the key as a string could). */
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		size_t n;
		const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &n) : NULL;
		int t = lua_type(L, -1);
		if (k && n == klen && memcmp(k, r->key, n) == 0) {
			if (t != LUA_TNIL && t != LUA_TSTRING) {
				struct buf b;
				buf_init(&b, RENDER_MAX);
				if (luajson_encode(L, -1, &b) == 0) {
					r->text = buf_steal(&b, &r->len);
					skip = r->text ? r->key : NULL;
				}
				buf_free(&b);
			}
			lua_pop(L, 2);
			break;
		}
		lua_pop(L, 1);
	}
	return skip;
}

void vm_args_drop(struct vm *vm)
{
	if (vm->ref_args != LUA_NOREF)
		luaL_unref(vm->L, LUA_REGISTRYINDEX, vm->ref_args);
	vm->ref_args = LUA_NOREF;
}

int vm_call(struct vm *vm, const char *fn, json_t *const *args, size_t nargs,
	    const struct script_ctx *ctx, const json_t *ex_ctx, int example,
	    json_t **out, char *err, size_t errlen)
{
	return vm_call_args(vm, fn, args, nargs, ctx, ex_ctx, example, VM_ARGS_PUSH,
			    out, err, errlen);
}

int vm_call_args(struct vm *vm, const char *fn, json_t *const *args, size_t nargs,
		 const struct script_ctx *ctx, const json_t *ex_ctx, int example,
		 enum vm_args mode, json_t **out, char *err, size_t errlen)
{
	struct call c = { vm, fn, args, nargs, ctx, ex_ctx, mode, 0 };
	lua_State *L = vm->L;
	char jerr[256];
	int base, rc;

	*out = NULL;
	vm->example_mode = example;
	vm->example_secrets = ex_ctx ? json_object_get(ex_ctx, "secrets") : NULL;
	vm->now = ctx ? ctx->now : 0;
	vm->key = ctx && !example ? ctx->key : NULL;
	if (ex_ctx && json_is_number(json_object_get(ex_ctx, "now")))
		vm->now = json_number_value(json_object_get(ex_ctx, "now"));
	rc = vm_pcall(vm, call_tramp, &c, 2, err, errlen, &base);
	metrics_script_call(vm->chunk, rc < 0);
	vm->example_mode = 0;
	vm->example_secrets = NULL;
	vm->now = 0;
	vm->key = NULL;
	if (rc < 0)
		return -1;
	if (c.missing) {
		lua_settop(L, base);
		script_set_err(err, errlen, "%s: no function %s", vm->chunk, fn);
		return -2;
	}
	const char *skip = render_field(vm, base + 1);
	*out = luajson_to_json_skip(L, base + 1, skip, jerr, sizeof jerr);
	if (!*out) {
		script_set_err(err, errlen, "%s: %s returned a value that is not JSON: %s",
			vm->chunk, fn, jerr);
		lua_settop(L, base);
		return -1;
	}
	if (lua_type(L, base + 2) == LUA_TSTRING) {
		script_set_err(err, errlen, "%s", lua_tostring(L, base + 2));
		scrub_buf(vm->cfg ? vm->cfg->scrub : NULL, err, errlen);
	} else if (err && errlen)
		err[0] = '\0';
	lua_settop(L, base);
	return 0;
}

struct hasfn_args {
	struct vm *vm;
	const char *fn;
	int has;
};

static int hasfn_tramp(lua_State *L)
{
	struct hasfn_args *a = lua_touserdata(L, 1);
	lua_rawgeti(L, LUA_REGISTRYINDEX, a->vm->ref_table);
	a->has = lua_getfield(L, -1, a->fn) == LUA_TFUNCTION;
	return 0;
}

int vm_has_fn(struct vm *vm, const char *fn)
{
	struct hasfn_args a = { vm, fn, 0 };
	char err[128];
	int base;
	if (!vm || !fn)
		return 0;
	if (vm_pcall(vm, hasfn_tramp, &a, 0, err, sizeof err, &base) < 0)
		return 0;
	return a.has;
}

struct vm *vm_new(const struct config *cfg, enum script_kind kind, const char *name,
		  const char *src, size_t len, const struct libset *libs,
		  const unsigned char sha[32], char *err, size_t errlen)
{
	struct vm *vm = calloc(1, sizeof *vm);
	struct setup_args sa;
	struct load_args la;
	int base;

	if (!vm) {
		script_set_err(err, errlen, "%s/%s.lua: out of memory", script_kind_dir[kind], name);
		return NULL;
	}
	vm->kind = kind;
	snprintf(vm->name, sizeof vm->name, "%s", name);
	snprintf(vm->chunk, sizeof vm->chunk, "%s/%s.lua", script_kind_dir[kind], name);
	sha256_hex12(sha, vm->version);
	vm->cfg = cfg;
	vm->literals = scrub_lua_literals(src, len);
	vm->mem_cap = (cfg->lua_memory_mb ? cfg->lua_memory_mb : 32) * (size_t)1024 * 1024;
	vm->budget = cfg->lua_instructions > 0 ? cfg->lua_instructions : 10000000;
	vm->ref_table = vm->ref_ctx = vm->ref_config = vm->ref_defaults = LUA_NOREF;
	vm->ref_find = vm->ref_patterns = vm->ref_keys = vm->ref_args = LUA_NOREF;
	if (contract_check_source(vm, src, len, err, errlen) < 0)
		goto fail;

	vm->L = lua_newstate(limits_alloc, vm);
	if (!vm->L) {
		script_set_err(err, errlen, "%s: cannot create a Lua state", vm->chunk);
		goto fail;
	}
	*(struct vm **)lua_getextraspace(vm->L) = vm;
	vm->hook_step = 0; /* limits_reset installs the hook */

	sa.vm = vm;
	sa.libs = libs;
	if (vm_pcall(vm, vm_setup, &sa, 0, err, errlen, &base) < 0)
		goto fail;
	la.vm = vm;
	la.src = src;
	la.len = len;
	if (vm_pcall(vm, vm_load_body, &la, 0, err, errlen, &base) < 0)
		goto fail;
	return vm;
fail:
	vm_free(vm);
	return NULL;
}

