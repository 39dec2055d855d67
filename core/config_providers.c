/*
 * config_providers.c: the providers table (the keys the core reads: caps,
 * key pools, prices, callbacks, proxies; the rest is the adapter's) and the
 * models table (aliases and their targets). See config_int.h.
 */
#include "config_int.h"
#include "luajson.h"
#include "modelid.h"
#include "usage.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* providers.NAME.keys: an array of { key = string, weight = integer 1..1000,
 * id = identifier (default "key" and the position, from 1), max_inflight =
 * integer 0..1000000 (0: no cap) }, ids unique. */
static int check_key_pool(struct ld *d, const char *name, json_t *keys)
{
	if (!keys)
		return 0;
	if (!json_is_array(keys) || json_array_size(keys) == 0 || json_array_size(keys) > 1024)
		return cfg_lerr(d, "providers.%s.keys: must be a list of 1 to 1024 { key = \"...\", weight = n, id = \"name\" }", name);
	for (size_t i = 0; i < json_array_size(keys); i++) {
		json_t *e = json_array_get(keys, i), *v;
		const char *k;
		if (!json_is_object(e))
			return cfg_lerr(d, "providers.%s.keys[%zu]: must be a table { key = \"...\", weight = n, id = \"name\" }", name, i + 1);
		json_object_foreach(e, k, v) {
			if (strcmp(k, "key") && strcmp(k, "weight") && strcmp(k, "id") &&
			    strcmp(k, "max_inflight"))
				return cfg_lerr(d, "providers.%s.keys[%zu].%s: unknown (key, weight, id, max_inflight)", name, i + 1, k);
		}
		v = json_object_get(e, "max_inflight");
		if (v && (!json_is_integer(v) || json_integer_value(v) < 0 ||
			  json_integer_value(v) > 1000000))
			return cfg_lerr(d, "providers.%s.keys[%zu].max_inflight: must be an integer from 0 to 1000000", name, i + 1);
		v = json_object_get(e, "key");
		if (!json_is_string(v) || !json_string_length(v))
			return cfg_lerr(d, "providers.%s.keys[%zu].key: must be a non-empty string", name, i + 1);
		v = json_object_get(e, "weight");
		if (v && (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 1000))
			return cfg_lerr(d, "providers.%s.keys[%zu].weight: must be an integer from 1 to 1000", name, i + 1);
		v = json_object_get(e, "id");
		if (v && (!json_is_string(v) || !json_string_length(v) || json_string_length(v) > 63 ||
			  !cfg_is_ident(json_string_value(v))))
			return cfg_lerr(d, "providers.%s.keys[%zu].id: must be an identifier ([A-Za-z0-9_]+, at most 63)", name, i + 1);
		char id[32];
		snprintf(id, sizeof id, "key%zu", i + 1);
		const char *mine = v ? json_string_value(v) : id;
		for (size_t j = 0; j < i; j++) {
			json_t *o = json_object_get(json_array_get(keys, j), "id");
			char oid[32];
			snprintf(oid, sizeof oid, "key%zu", j + 1);
			if (strcmp(o ? json_string_value(o) : oid, mine) == 0)
				return cfg_lerr(d, "providers.%s.keys[%zu].id: %s is taken by keys[%zu]", name, i + 1, mine, j + 1);
		}
	}
	return 0;
}

/*
 * The provider keys the core reads (the rest belong to the adapter):
 * max_inflight / queue_limit (integers >= 0: jobs submitted and not yet
 * terminal, 0 no cap), callbacks (false: poll only), callback_requires (a
 * table { https = bool, public = bool } or false: overrides the adapter's).
 */
static int check_provider_keys(struct ld *d, const char *name, json_t *o)
{
	static const char *const caps[] = { "max_inflight", "queue_limit", NULL };
	for (const char *const *k = caps; *k; k++) {
		json_t *v = json_object_get(o, *k);
		if (v && (!json_is_integer(v) || json_integer_value(v) < 0 ||
			  json_integer_value(v) > 1000000))
			return cfg_lerr(d, "providers.%s.%s: must be an integer from 0 to 1000000", name, *k);
	}
	if (check_key_pool(d, name, json_object_get(o, "keys")) < 0)
		return -1;
	json_t *prices = json_object_get(o, "prices");
	char pwhy[300];
	if (prices && usage_prices_check(prices, pwhy, sizeof pwhy) < 0)
		return cfg_lerr(d, "providers.%s.prices%s%s", name, pwhy[0] == '[' ? "" : ": ", pwhy);
	json_t *cb = json_object_get(o, "callbacks");
	if (cb && !json_is_boolean(cb))
		return cfg_lerr(d, "providers.%s.callbacks: must be true or false", name);
	json_t *cr = json_object_get(o, "callback_requires");
	if (cr && !json_is_false(cr)) {
		const char *k;
		json_t *v;
		if (!json_is_object(cr))
			return cfg_lerr(d, "providers.%s.callback_requires: must be { https = bool, public = bool } or false", name);
		json_object_foreach(cr, k, v) {
			if ((strcmp(k, "https") && strcmp(k, "public")) || !json_is_boolean(v))
				return cfg_lerr(d, "providers.%s.callback_requires: must be { https = bool, public = bool } or false", name);
		}
	}
	return 0;
}

int cfg_load_providers(struct ld *d, struct config *c, int env)
{
	lua_State *L = d->L;
	char jerr[300];
	int r = cfg_sub_table(d, env, "providers", "providers");
	if (r <= 0)
		return r;
	int t = lua_gettop(L);
	lua_pushnil(L);
	while (lua_next(L, t)) {
		if (lua_type(L, -2) != LUA_TSTRING || !cfg_is_ident(lua_tostring(L, -2)))
			return cfg_lerr(d, "providers: names must be identifiers ([A-Za-z0-9_]+)");
		const char *name = lua_tostring(L, -2);
		if (lua_type(L, -1) != LUA_TTABLE)
			return cfg_lerr(d, "providers.%s: must be a table of settings", name);
		json_t *o = luajson_to_json(L, -1, jerr, sizeof jerr);
		if (!o)
			return cfg_lerr(d, "providers.%s.%s", name, jerr);
		if (!json_is_object(o)) {
			json_decref(o);
			return cfg_lerr(d, "providers.%s: must be a table of settings", name);
		}
		json_t *proxy = json_object_get(o, "proxy");
		if (proxy && (!json_is_string(proxy) || !cfg_valid_proxy_url(json_string_value(proxy)))) {
			json_decref(o);
			return cfg_lerr(d, "providers.%s.proxy: must be a proxy URL (http, https, socks4, socks4a, socks5 or socks5h)", name);
		}
		if (check_provider_keys(d, name, o) < 0) {
			json_decref(o);
			return -1;
		}
		json_object_set_new(c->providers, name, o);
		lua_pop(L, 1);
	}
	lua_settop(L, t - 1);
	return 0;
}

static int cmp_alias(const void *a, const void *b)
{
	return strcmp(((const struct config_alias *)a)->name,
		      ((const struct config_alias *)b)->name);
}

/* "provider:model" in the model id grammar (modelid.h), with a provider prefix. */
static int valid_target(const char *s)
{
	struct modelid mid;
	return modelid_parse(s, &mid, NULL, 0) == 0 && mid.provider[0] != '\0';
}

/* Reads the target list at the top of the stack into a (pops nothing). */
static int alias_targets(struct ld *d, struct config_alias *a, const char *key)
{
	lua_State *L = d->L;
	int lt = lua_gettop(L);
	if (lua_type(L, lt) == LUA_TSTRING) {
		a->targets = calloc(1, sizeof *a->targets);
		if (!a->targets)
			return cfg_lerr(d, "out of memory");
		if (!valid_target(lua_tostring(L, lt)))
			return cfg_lerr(d, "%s: must be \"provider:model\"", key);
		if (!(a->targets[0] = strdup(lua_tostring(L, lt))))
			return cfg_lerr(d, "out of memory");
		a->ntargets = 1;
		return 0;
	}
	if (lua_type(L, lt) != LUA_TTABLE)
		return cfg_lerr(d, "%s: must be a list of \"provider:model\" targets", key);
	size_t n = (size_t)lua_rawlen(L, lt), count = 0;
	lua_pushnil(L);
	while (lua_next(L, lt)) {
		lua_pop(L, 1);
		count++;
	}
	if (n == 0 || count != n)
		return cfg_lerr(d, "%s: must be a non-empty list of \"provider:model\" targets", key);
	if (n > 32)
		return cfg_lerr(d, "%s: at most 32 targets", key);
	a->targets = calloc(n, sizeof *a->targets);
	if (!a->targets)
		return cfg_lerr(d, "out of memory");
	for (size_t i = 0; i < n; i++) {
		lua_rawgeti(L, lt, (lua_Integer)i + 1);
		if (lua_type(L, -1) != LUA_TSTRING || !valid_target(lua_tostring(L, -1)))
			return cfg_lerr(d, "%s[%zu]: must be \"provider:model\"", key, i + 1);
		if (!(a->targets[i] = strdup(lua_tostring(L, -1))))
			return cfg_lerr(d, "out of memory");
		a->ntargets++;
		lua_pop(L, 1);
	}
	return 0;
}

int cfg_load_models(struct ld *d, struct config *c, int env)
{
	static const char *const keys[] = { "targets", "failover_on_failure", NULL };
	lua_State *L = d->L;
	char key[200];
	int r = cfg_sub_table(d, env, "models", "models");
	if (r <= 0)
		return r;
	int t = lua_gettop(L);
	size_t n = cfg_table_count(L, t);
	if (n == 0) {
		lua_settop(L, t - 1);
		return 0;
	}
	c->aliases = calloc(n, sizeof *c->aliases);
	if (!c->aliases)
		return cfg_lerr(d, "out of memory");
	lua_pushnil(L);
	while (lua_next(L, t)) {
		if (lua_type(L, -2) != LUA_TSTRING)
			return cfg_lerr(d, "models: alias names must be strings");
		size_t nl;
		const char *name = lua_tolstring(L, -2, &nl);
		if (nl == 0 || nl > 256 || strlen(name) != nl)
			return cfg_lerr(d, "models: alias names must be 1 to 256 bytes");
		struct config_alias *a = &c->aliases[c->naliases++];
		if (!(a->name = strdup(name)))
			return cfg_lerr(d, "out of memory");
		snprintf(key, sizeof key, "models.%.100s", name);
		int vt = lua_gettop(L);
		if (lua_type(L, vt) == LUA_TTABLE && cfg_rawfield(L, vt, "targets") != LUA_TNIL) {
			lua_pop(L, 1);
			if (cfg_check_keys(d, vt, key, keys) < 0)
				return -1;
			size_t kl = strlen(key);
			snprintf(key + kl, sizeof key - kl, ".failover_on_failure");
			if (cfg_get_bool(d, vt, "failover_on_failure", key, &a->failover_on_failure) < 0)
				return -1;
			cfg_rawfield(L, vt, "targets");
			snprintf(key + kl, sizeof key - kl, ".targets");
			if (alias_targets(d, a, key) < 0)
				return -1;
		} else {
			if (lua_type(L, vt) == LUA_TTABLE)
				lua_pop(L, 1);
			if (alias_targets(d, a, key) < 0)
				return -1;
		}
		lua_settop(L, vt - 1);
	}
	qsort(c->aliases, c->naliases, sizeof *c->aliases, cmp_alias);
	lua_settop(L, t - 1);
	return 0;
}
