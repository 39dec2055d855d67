/*
 * script_contract.c: the load-time checks of the script contract (see
 * script_contract.h and docs/scripts.md, "The contract").
 */
#include "script_contract.h"
#include "config.h"

#include <ctype.h>
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#define POLL_404_LIMIT 3 /* default consecutive poll 404s that end a job */
#define PARAMS_MAX 4

/* One function of the contract and its parameters, in the order the core
 * passes them. */
struct signature {
	const char *fn;
	const char *params[PARAMS_MAX + 1];
};

static const struct signature provider_sigs[] = {
	{ "submit", { "job", "ctx" } },
	{ "on_submitted", { "res", "job", "ctx" } },
	{ "on_callback", { "req", "job", "ctx" } },
	{ "verify", { "req", "ctx", "job" } },
	{ "poll", { "job", "ctx" } },
	{ "on_polled", { "res", "job", "ctx" } },
	{ "cancel", { "job", "ctx" } },
	{ "on_error", { "res", "job", "ctx" } },
	{ NULL, { NULL } },
};
static const struct signature hook_sigs[] = {
	{ "transform", { "event", "ctx" } },
	{ NULL, { NULL } },
};
static const struct signature front_sigs[] = {
	{ "request", { "req", "ctx" } },
	{ "respond", { "reply", "job", "req", "ctx" } },
	{ "error", { "err", "req", "ctx" } },
	{ "webhook", { "event", "ctx" } },
	{ NULL, { NULL } },
};
static const struct signature *const sigs_of[SCRIPT_KINDS] = { provider_sigs, hook_sigs, front_sigs };

size_t contract_ctx_position(const char *fn, size_t nargs)
{
	return fn && strcmp(fn, "verify") == 0 && nargs > 1 ? 1 : nargs;
}

/* "verify(req, ctx, job)" */
static void format_sig(const char *fn, const char *const *names, int n, char *out, size_t outlen)
{
	size_t o = (size_t)snprintf(out, outlen, "%s(", fn);
	for (int i = 0; i < n && o < outlen; i++)
		o += (size_t)snprintf(out + o, outlen - o, "%s%s", i ? ", " : "", names[i]);
	if (o < outlen)
		snprintf(out + o, outlen - o, ")");
}

static int sig_index(const struct signature *s, const char *name)
{
	for (int i = 0; i < PARAMS_MAX && s->params[i]; i++)
		if (strcmp(s->params[i], name) == 0)
			return i;
	return -1;
}

/*
 * The parameter order rule: a parameter the script names `ctx` or `job`
 * must stand where the core passes ctx or the job. Other names (and
 * vararg functions) are not judged. The function is at the top of the
 * stack and stays there. Pushes the message and returns -1 on a violation.
 */
static int check_params(lua_State *L, const struct signature *s)
{
	const char *names[PARAMS_MAX + 1] = { 0 };
	lua_Debug ar;
	int n;

	lua_pushvalue(L, -1);
	if (!lua_getinfo(L, ">u", &ar) || ar.nparams == 0)
		return 0;
	n = ar.nparams > PARAMS_MAX ? PARAMS_MAX : ar.nparams;
	for (int i = 0; i < n; i++)
		names[i] = lua_getlocal(L, NULL, i + 1);
	for (int i = 0; i < n; i++) {
		int want;
		if (!names[i] || (strcmp(names[i], "ctx") != 0 && strcmp(names[i], "job") != 0))
			continue;
		want = sig_index(s, names[i]);
		if (want < 0 || want == i)
			continue;
		{
			char got[128], should[128];
			int ns = 0;
			while (ns < PARAMS_MAX && s->params[ns])
				ns++;
			format_sig(s->fn, names, n, got, sizeof got);
			format_sig(s->fn, s->params, ns, should, sizeof should);
			lua_pushfstring(L, "%s takes %s as argument %d, but the core passes it as "
					"argument %d: write %s (docs/scripts.md, \"The contract\")",
					got, names[i], i + 1, want + 1, should);
		}
		return -1;
	}
	return 0;
}

/*
 * Reads a provider table's optional `callback_requires = { https = bool,
 * public = bool }`. On a malformed field pushes the message and returns -1.
 */
static int read_requires(lua_State *L, int idx, int *https, int *pub, const char *what)
{
	if (lua_isnil(L, idx))
		return 0;
	if (!lua_istable(L, idx)) {
		lua_pushfstring(L, "%s must be a table { https = bool, public = bool }", what);
		return -1;
	}
	lua_getfield(L, idx, "https");
	lua_getfield(L, idx, "public");
	if ((!lua_isnil(L, -2) && !lua_isboolean(L, -2)) || (!lua_isnil(L, -1) && !lua_isboolean(L, -1))) {
		lua_pop(L, 2);
		lua_pushfstring(L, "%s.https and .public must be booleans", what);
		return -1;
	}
	*https = lua_toboolean(L, -2);
	*pub = lua_toboolean(L, -1);
	lua_pop(L, 2);
	return 0;
}

/*
 * The provider fields the core reads: whether the config has settings for
 * it, callback_requires (the config may override it, e.g. for a simulator),
 * poll_404_limit (default POLL_404_LIMIT), errors and on_error. Pushes the
 * message and returns -1 on a malformed field.
 */
static int provider_fields(lua_State *L, int T, struct vm *vm)
{
	json_t *conf = config_provider(vm->cfg, vm->name);
	vm->configured = conf != NULL;
	vm->cb_https = vm->cb_public = 0;
	lua_getfield(L, T, "callback_requires");
	if (read_requires(L, lua_gettop(L), &vm->cb_https, &vm->cb_public, "callback_requires") < 0)
		return -1;
	lua_pop(L, 1);
	json_t *ov = json_object_get(conf, "callback_requires");
	if (ov) {
		if (json_is_false(ov)) {
			vm->cb_https = vm->cb_public = 0;
		} else if (json_is_object(ov)) {
			json_t *hs = json_object_get(ov, "https"), *pb = json_object_get(ov, "public");
			if (hs)
				vm->cb_https = json_is_true(hs);
			if (pb)
				vm->cb_public = json_is_true(pb);
		}
	}
	vm->poll_404_limit = POLL_404_LIMIT;
	if (lua_getfield(L, T, "poll_404_limit") != LUA_TNIL) {
		if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 || lua_tointeger(L, -1) > 1000) {
			lua_pushliteral(L, "poll_404_limit must be an integer from 1 to 1000");
			return -1;
		}
		vm->poll_404_limit = (int)lua_tointeger(L, -1);
	}
	lua_pop(L, 1);
	vm->errors_by_core = 0;
	if (lua_getfield(L, T, "errors") != LUA_TNIL) {
		const char *e = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
		if (!e || (strcmp(e, "core") != 0 && strcmp(e, "script") != 0)) {
			lua_pushliteral(L, "errors must be \"core\" or \"script\" (the default)");
			return -1;
		}
		vm->errors_by_core = strcmp(e, "core") == 0;
	}
	lua_pop(L, 1);
	vm->has_on_error = lua_getfield(L, T, "on_error") == LUA_TFUNCTION;
	lua_pop(L, 1);
	if (vm->has_on_error)
		vm->errors_by_core = 1; /* on_error exists only where the core handles them */
	return 0;
}

int contract_check_table(lua_State *L, int T, struct vm *vm)
{
	static const char *const prov_fns[] = { "submit", "on_submitted", "on_callback", NULL };
	static const char *const hook_fns[] = { "transform", NULL };
	static const char *const front_fns[] = { "request", "respond", "error", NULL };
	static const char *const prov_opt[] = { "verify", "poll", "on_polled", "cancel", "on_error", NULL };
	static const char *const front_opt[] = { "webhook", NULL };
	static const char *const none[] = { NULL };
	const char *const *req = vm->kind == SCRIPT_PROVIDER ? prov_fns
			       : vm->kind == SCRIPT_FRONT ? front_fns : hook_fns;
	const char *const *opt = vm->kind == SCRIPT_PROVIDER ? prov_opt
			       : vm->kind == SCRIPT_FRONT ? front_opt : none;

	lua_getfield(L, T, "name");
	if (vm->kind == SCRIPT_PROVIDER || !lua_isnil(L, -1)) {
		if (lua_type(L, -1) != LUA_TSTRING || strcmp(lua_tostring(L, -1), vm->name) != 0) {
			lua_pushfstring(L, "name must be \"%s\" (the file name)", vm->name);
			return -1;
		}
	}
	lua_pop(L, 1);
	for (; *req; req++) {
		if (lua_getfield(L, T, *req) != LUA_TFUNCTION) {
			lua_pushfstring(L, "missing function %s", *req);
			return -1;
		}
		lua_pop(L, 1);
	}
	for (; *opt; opt++) {
		int t = lua_getfield(L, T, *opt);
		lua_pop(L, 1);
		if (t != LUA_TNIL && t != LUA_TFUNCTION) {
			lua_pushfstring(L, "%s must be a function", *opt);
			return -1;
		}
	}
	if (vm->kind == SCRIPT_PROVIDER) {
		lua_getfield(L, T, "poll");
		int has_poll = !lua_isnil(L, -1);
		lua_getfield(L, T, "on_polled");
		int has_polled = !lua_isnil(L, -1);
		lua_pop(L, 2);
		if (has_poll && !has_polled) {
			lua_pushliteral(L, "missing function on_polled (needed with poll)");
			return -1;
		}
	}
	for (const struct signature *s = sigs_of[vm->kind]; s->fn; s++) {
		if (lua_getfield(L, T, s->fn) == LUA_TFUNCTION && check_params(L, s) < 0)
			return -1;
		lua_pop(L, 1);
	}
	if (vm->kind == SCRIPT_PROVIDER && provider_fields(L, T, vm) < 0)
		return -1;
	return 0;
}

/* Length of the long bracket opening at s ("[[" 0, "[==[" 2), or -1. */
static int long_bracket(const char *s, const char *end)
{
	int level = 0;
	if (s >= end || *s != '[')
		return -1;
	s++;
	while (s < end && *s == '=') {
		level++;
		s++;
	}
	return s < end && *s == '[' ? level : -1;
}

/* Skips a long string or comment body of the given level, from after its
 * opening bracket; returns the position after the closing one (or end). */
static const char *skip_long(const char *s, const char *end, int level, int *line)
{
	for (; s < end; s++) {
		if (*s == '\n')
			(*line)++;
		if (*s == ']') {
			const char *p = s + 1;
			int l = 0;
			while (p < end && *p == '=') {
				l++;
				p++;
			}
			if (l == level && p < end && *p == ']')
				return p + 1;
		}
	}
	return end;
}

/*
 * Finds the identifier word in Lua source outside comments and strings;
 * returns its line, or 0 when absent.
 */
static int find_identifier(const char *src, size_t len, const char *word)
{
	const char *s = src, *end = src + len;
	size_t wl = strlen(word);
	int line = 1;

	while (s < end) {
		int lv;
		if (*s == '\n') {
			line++;
			s++;
		} else if (s + 1 < end && s[0] == '-' && s[1] == '-') {
			s += 2;
			if ((lv = long_bracket(s, end)) >= 0) {
				s = skip_long(s + lv + 2, end, lv, &line);
			} else {
				while (s < end && *s != '\n')
					s++;
			}
		} else if ((lv = long_bracket(s, end)) >= 0) {
			s = skip_long(s + lv + 2, end, lv, &line);
		} else if (*s == '"' || *s == '\'') {
			char q = *s++;
			while (s < end && *s != q && *s != '\n') {
				if (*s == '\\' && s + 1 < end) {
					if (s[1] == '\n')
						line++;
					s++;
				}
				s++;
			}
			if (s < end)
				s++;
		} else if (isalpha((unsigned char)*s) || *s == '_') {
			const char *w = s;
			while (s < end && (isalnum((unsigned char)*s) || *s == '_'))
				s++;
			if ((size_t)(s - w) == wl && memcmp(w, word, wl) == 0)
				return line;
		} else {
			s++;
		}
	}
	return 0;
}

int contract_check_source(const struct vm *vm, const char *src, size_t len,
			  char *err, size_t errlen)
{
	int line = find_identifier(src, len, "ctx_job");
	if (line) {
		script_set_err(err, errlen,
			       "%s:%d: ctx_job is gone from lib/util.lua: the core always calls "
			       "verify(req, ctx, job), so delete the line that calls ctx_job and "
			       "write verify(req, ctx, job) (docs/scripts.md, \"The contract\")",
			       vm->chunk, line);
		return -1;
	}
	return 0;
}
