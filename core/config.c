/*
 * config.c: the configuration file (see config.h).
 *
 * The file runs in a full Lua state (it is trusted and may call os.getenv)
 * with a fresh environment table whose __index is the standard globals, so
 * after the run that table holds exactly what the file set. Every key is then
 * type- and range-checked; unknown keys are errors so typos are caught.
 * Error messages name the key and never include a value that may be secret.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "config.h"
#include "usage.h"
#include "modelid.h"
#include "luajson.h"
#include "sign.h"
#include "scrub.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_LEN 64

/* Loader state: the Lua state and where the first error goes. */
struct ld {
	lua_State *L;
	const char *file;
	char *err;
	size_t errlen;
};

static const double default_retry[] = { 5, 15, 60, 300, 900, 3600, 21600, 43200, 86400 };

static int lerr(struct ld *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Writes "FILE: message" into d->err. Returns -1. */
static int lerr(struct ld *d, const char *fmt, ...)
{
	va_list ap;
	size_t n = 0;

	if (!d->err || !d->errlen)
		return -1;
	if (d->file) {
		int r = snprintf(d->err, d->errlen, "%s: ", d->file);
		n = r < 0 ? 0 : (size_t)r;
		if (n >= d->errlen)
			return -1;
	}
	va_start(ap, fmt);
	vsnprintf(d->err + n, d->errlen - n, fmt, ap);
	va_end(ap);
	return -1;
}

/* [A-Za-z0-9_]{1,64}: provider, hook and script names. */
static int is_ident(const char *s)
{
	size_t n = 0;
	if (!s || !*s)
		return 0;
	for (; *s; s++, n++)
		if (!isalnum((unsigned char)*s) && *s != '_')
			return 0;
	return n <= NAME_MAX_LEN;
}

static int valid_port(const char *p)
{
	long v = 0;
	if (!*p || strlen(p) > 5)
		return 0;
	for (; *p; p++) {
		if (!isdigit((unsigned char)*p))
			return 0;
		v = v * 10 + (*p - '0');
	}
	return v <= 65535;
}

/* host:port or [v6]:port; the host is an IPv4 address or a name. */
static int valid_listen(const char *s)
{
	if (s[0] == '[') {
		const char *e = strchr(s, ']');
		char v6[64];
		unsigned char buf[16];
		size_t n;
		if (!e || e[1] != ':')
			return 0;
		n = (size_t)(e - s - 1);
		if (n == 0 || n >= sizeof v6)
			return 0;
		memcpy(v6, s + 1, n);
		v6[n] = '\0';
		if (inet_pton(AF_INET6, v6, buf) != 1)
			return 0;
		return valid_port(e + 2);
	}
	const char *colon = strrchr(s, ':');
	if (!colon || colon == s)
		return 0;
	for (const char *p = s; p < colon; p++)
		if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-')
			return 0;
	return valid_port(colon + 1);
}

/* http(s)://host[...] without whitespace, query or fragment. */
static int valid_http_url(const char *s, int allow_query)
{
	const char *h;
	if (strncmp(s, "http://", 7) == 0)
		h = s + 7;
	else if (strncmp(s, "https://", 8) == 0)
		h = s + 8;
	else
		return 0;
	if (!*h || *h == '/' || *h == ':')
		return 0;
	for (const char *p = s; *p; p++) {
		unsigned char ch = (unsigned char)*p;
		if (ch <= 0x20 || ch == 0x7f)
			return 0;
		if (!allow_query && (ch == '?' || ch == '#'))
			return 0;
	}
	return 1;
}

/*
 * A proxy URL for curl: http, https, socks4, socks4a, socks5 or socks5h, a
 * host, no whitespace or control characters. It may carry credentials, so
 * errors about it never quote it.
 */
static int valid_proxy_url(const char *s)
{
	static const char *const schemes[] = { "http://", "https://", "socks4://",
		"socks4a://", "socks5://", "socks5h://", NULL };
	const char *h = NULL;
	for (int i = 0; schemes[i]; i++)
		if (strncmp(s, schemes[i], strlen(schemes[i])) == 0)
			h = s + strlen(schemes[i]);
	if (!h)
		return 0;
	size_t alen = strcspn(h, "/?#");
	const char *at = NULL;
	for (size_t i = 0; i < alen; i++)
		if (h[i] == '@')
			at = h + i;
	if (at)
		h = at + 1;
	if (h == s + strlen(s) || strchr("/?#:", *h))
		return 0;
	for (const char *p = s; *p; p++) {
		unsigned char ch = (unsigned char)*p;
		if (ch <= 0x20 || ch == 0x7f)
			return 0;
	}
	return 1;
}

/* Default public URL from the listen address (wildcards become loopback). */
static char *public_url_from_listen(const char *listen)
{
	char buf[300];
	const char *colon = strrchr(listen, ':');
	size_t hl = colon ? (size_t)(colon - listen) : strlen(listen);
	const char *port = colon ? colon + 1 : "8080";
	char host[256];

	if (hl >= sizeof host)
		hl = sizeof host - 1;
	memcpy(host, listen, hl);
	host[hl] = '\0';
	if (strcmp(host, "0.0.0.0") == 0 || host[0] == '\0')
		strcpy(host, "127.0.0.1");
	else if (strcmp(host, "[::]") == 0)
		strcpy(host, "[::1]");
	snprintf(buf, sizeof buf, "http://%s:%s", host, port);
	return strdup(buf);
}

/* Pushes t[key] (raw) for the table at tidx; returns its type. */
static int rawfield(lua_State *L, int tidx, const char *key)
{
	lua_pushstring(L, key);
	return lua_rawget(L, tidx);
}

/*
 * The value on top of the stack as a string into *out (replacing the old
 * one); nil keeps *out. Pops the value. Secrets are never echoed anyway:
 * no helper here prints values.
 */
static int take_str(struct ld *d, const char *key, char **out, int nonempty)
{
	lua_State *L = d->L;
	int t = lua_type(L, -1);
	if (t == LUA_TNIL) {
		lua_pop(L, 1);
		return 0;
	}
	if (t != LUA_TSTRING) {
		lua_pop(L, 1);
		return lerr(d, "%s: must be a string", key);
	}
	size_t len;
	const char *s = lua_tolstring(L, -1, &len);
	if (strlen(s) != len) {
		lua_pop(L, 1);
		return lerr(d, "%s: must not contain NUL bytes", key);
	}
	if (nonempty && len == 0) {
		lua_pop(L, 1);
		return lerr(d, "%s: must not be empty", key);
	}
	char *v = strdup(s);
	lua_pop(L, 1);
	if (!v)
		return lerr(d, "out of memory");
	free(*out);
	*out = v;
	return 0;
}

static int get_str(struct ld *d, int tidx, const char *field, const char *key,
		   char **out, int nonempty)
{
	rawfield(d->L, tidx, field);
	return take_str(d, key, out, nonempty);
}

/* A number in [min, max] (max < 0: no upper bound); nil keeps *out. */
static int get_num(struct ld *d, int tidx, const char *field, const char *key,
		   double *out, double min, double max, int min_exclusive)
{
	lua_State *L = d->L;
	int t = rawfield(L, tidx, field);
	if (t == LUA_TNIL) {
		lua_pop(L, 1);
		return 0;
	}
	if (t != LUA_TNUMBER) {
		lua_pop(L, 1);
		return lerr(d, "%s: must be a number", key);
	}
	double v = lua_tonumber(L, -1);
	lua_pop(L, 1);
	if (!isfinite(v) || (min_exclusive ? v <= min : v < min) ||
	    (max >= 0 && v > max)) {
		if (max >= 0)
			return lerr(d, "%s: must be %s %g and at most %g", key,
				    min_exclusive ? "above" : "at least", min, max);
		return lerr(d, "%s: must be %s %g", key,
			    min_exclusive ? "above" : "at least", min);
	}
	*out = v;
	return 0;
}

/* An integer in [min, max]; nil keeps *out. */
/* Number of entries of the table at index t (any keys). */
static size_t table_count(lua_State *L, int t)
{
	size_t n = 0;
	lua_pushnil(L);
	while (lua_next(L, t)) {
		lua_pop(L, 1);
		n++;
	}
	return n;
}

static int get_int(struct ld *d, int tidx, const char *field, const char *key,
		   long long *out, long long min, long long max)
{
	lua_State *L = d->L;
	int t = rawfield(L, tidx, field);
	if (t == LUA_TNIL) {
		lua_pop(L, 1);
		return 0;
	}
	int isnum = 0;
	lua_Integer v = lua_tointegerx(L, -1, &isnum);
	lua_pop(L, 1);
	if (t != LUA_TNUMBER || !isnum)
		return lerr(d, "%s: must be an integer", key);
	if (v < min || v > max)
		return lerr(d, "%s: must be between %lld and %lld", key, min, max);
	*out = v;
	return 0;
}

static int get_bool(struct ld *d, int tidx, const char *field, const char *key,
		    int *out)
{
	lua_State *L = d->L;
	int t = rawfield(L, tidx, field);
	if (t == LUA_TNIL) {
		lua_pop(L, 1);
		return 0;
	}
	if (t != LUA_TBOOLEAN) {
		lua_pop(L, 1);
		return lerr(d, "%s: must be true or false", key);
	}
	*out = lua_toboolean(L, -1);
	lua_pop(L, 1);
	return 0;
}

/*
 * Every key of the table at tidx must be a string listed in allowed
 * (NULL-terminated). prefix is the table's own key path ("" at top level).
 */
static int check_keys(struct ld *d, int tidx, const char *prefix,
		      const char *const *allowed)
{
	lua_State *L = d->L;
	lua_pushnil(L);
	while (lua_next(L, tidx)) {
		lua_pop(L, 1);
		if (lua_type(L, -1) != LUA_TSTRING) {
			lua_pop(L, 1);
			return lerr(d, "%s%skeys must be strings", prefix,
				    *prefix ? ": " : "");
		}
		const char *k = lua_tostring(L, -1);
		int ok = 0;
		for (const char *const *a = allowed; *a; a++)
			if (strcmp(*a, k) == 0)
				ok = 1;
		if (!ok) {
			int r = lerr(d, "unknown key '%s%s%.64s'%s", prefix,
				     *prefix ? "." : "", k,
				     *prefix ? "" : " (use local for helper variables)");
			lua_pop(L, 1);
			return r;
		}
	}
	return 0;
}

/* Pushes t[field] when it is a table (returns 1), nothing for nil (0), or
 * fails (-1). */
static int sub_table(struct ld *d, int tidx, const char *field, const char *key)
{
	int t = rawfield(d->L, tidx, field);
	if (t == LUA_TNIL) {
		lua_pop(d->L, 1);
		return 0;
	}
	if (t != LUA_TTABLE) {
		lua_pop(d->L, 1);
		return lerr(d, "%s: must be a table", key);
	}
	return 1;
}

static int load_webhooks(struct ld *d, struct config *c, int env)
{
	static const char *const keys[] = { "retry", "timeout_s", "retry_jitter",
		"require_https", "allow_private", "response_bytes", "proxy", NULL };
	lua_State *L = d->L;
	int r = sub_table(d, env, "webhooks", "webhooks");
	if (r <= 0)
		return r;
	int t = lua_gettop(L);
	long long rb = (long long)c->webhook_response_bytes;
	if (check_keys(d, t, "webhooks", keys) < 0 ||
	    get_num(d, t, "timeout_s", "webhooks.timeout_s", &c->webhook_timeout_s, 0, 3600, 1) < 0 ||
	    get_num(d, t, "retry_jitter", "webhooks.retry_jitter", &c->retry_jitter, 0, 1, 0) < 0 ||
	    get_bool(d, t, "require_https", "webhooks.require_https", &c->require_https) < 0 ||
	    get_bool(d, t, "allow_private", "webhooks.allow_private", &c->allow_private) < 0 ||
	    get_int(d, t, "response_bytes", "webhooks.response_bytes", &rb, 1, 1LL << 30) < 0 ||
	    get_str(d, t, "proxy", "webhooks.proxy", &c->webhook_proxy, 1) < 0)
		return -1;
	c->webhook_response_bytes = (size_t)rb;
	if (c->webhook_proxy && !valid_proxy_url(c->webhook_proxy))
		return lerr(d, "webhooks.proxy: must be a proxy URL (http, https, socks4, socks4a, socks5 or socks5h)");

	int rt = rawfield(L, t, "retry");
	if (rt != LUA_TNIL) {
		if (rt != LUA_TTABLE)
			return lerr(d, "webhooks.retry: must be a list of seconds");
		size_t n = (size_t)lua_rawlen(L, -1);
		size_t count = 0;
		lua_pushnil(L);
		while (lua_next(L, -2)) {
			lua_pop(L, 1);
			count++;
		}
		if (n == 0 || count != n)
			return lerr(d, "webhooks.retry: must be a non-empty list of seconds");
		if (n > 100)
			return lerr(d, "webhooks.retry: at most 100 entries");
		double *v = calloc(n, sizeof *v);
		if (!v)
			return lerr(d, "out of memory");
		for (size_t i = 0; i < n; i++) {
			lua_rawgeti(L, -1, (lua_Integer)i + 1);
			double x = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : -1;
			lua_pop(L, 1);
			if (!isfinite(x) || x <= 0 || x > 30 * 86400.0) {
				free(v);
				return lerr(d, "webhooks.retry[%zu]: must be a number of seconds above 0 and at most 2592000", i + 1);
			}
			v[i] = x;
		}
		free(c->retry);
		c->retry = v;
		c->nretry = n;
	}
	lua_settop(L, t - 1);
	return 0;
}

static int load_jobs(struct ld *d, struct config *c, int env)
{
	static const char *const keys[] = { "submit_window_s", "job_deadline_s",
		"poll_after_s", "poll_interval_s", "poll_max_s", "sync_wait_s",
		"failover_after", "lease_s", "due_check_s", NULL };
	int r = sub_table(d, env, "jobs", "jobs");
	if (r <= 0)
		return r;
	int t = lua_gettop(d->L);
	const double day = 86400.0;
	if (check_keys(d, t, "jobs", keys) < 0 ||
	    get_num(d, t, "submit_window_s", "jobs.submit_window_s", &c->submit_window_s, 0, 30 * day, 1) < 0 ||
	    get_num(d, t, "job_deadline_s", "jobs.job_deadline_s", &c->job_deadline_s, 0, 30 * day, 1) < 0 ||
	    get_num(d, t, "poll_after_s", "jobs.poll_after_s", &c->poll_after_s, 0, 30 * day, 1) < 0 ||
	    get_num(d, t, "poll_interval_s", "jobs.poll_interval_s", &c->poll_interval_s, 0, 30 * day, 1) < 0 ||
	    get_num(d, t, "poll_max_s", "jobs.poll_max_s", &c->poll_max_s, 0, 30 * day, 1) < 0 ||
	    get_num(d, t, "sync_wait_s", "jobs.sync_wait_s", &c->sync_wait_s, 0, 3600, 1) < 0 ||
	    get_num(d, t, "lease_s", "jobs.lease_s", &c->lease_s, 3, 3600, 0) < 0 ||
	    get_num(d, t, "due_check_s", "jobs.due_check_s", &c->due_check_s, 0.01, 3600, 0) < 0)
		return -1;
	long long fa = c->failover_after;
	if (get_int(d, t, "failover_after", "jobs.failover_after", &fa, 1, 1000) < 0)
		return -1;
	c->failover_after = (int)fa;
	if (c->poll_max_s < c->poll_interval_s)
		return lerr(d, "jobs.poll_max_s: must be at least jobs.poll_interval_s");
	lua_settop(d->L, t - 1);
	return 0;
}

/* log = { level = "info", format = "text" }; log.level overrides log_level. */
static int load_log(struct ld *d, struct config *c, int env)
{
	static const char *const keys[] = { "level", "format", NULL };
	int r = sub_table(d, env, "log", "log");
	if (r <= 0)
		return r;
	int t = lua_gettop(d->L);
	if (check_keys(d, t, "log", keys) < 0 ||
	    get_str(d, t, "level", "log.level", &c->log_level, 1) < 0 ||
	    get_str(d, t, "format", "log.format", &c->log_format, 1) < 0)
		return -1;
	lua_settop(d->L, t - 1);
	return 0;
}

static int load_limits(struct ld *d, struct config *c, int env)
{
	static const char *const keys[] = { "body_bytes", "lua_instructions",
		"lua_memory_mb", "max_connections", "connection_timeout_s",
		"max_inflight", "store_max_mb", "buffered_bytes", NULL };
	int r = sub_table(d, env, "limits", "limits");
	if (r <= 0)
		return r;
	int t = lua_gettop(d->L);
	long long bb = (long long)c->body_bytes, li = c->lua_instructions;
	long long mm = (long long)c->lua_memory_mb, mc = c->max_connections;
	if (check_keys(d, t, "limits", keys) < 0 ||
	    get_int(d, t, "body_bytes", "limits.body_bytes", &bb, 1, 1LL << 30) < 0 ||
	    get_int(d, t, "lua_instructions", "limits.lua_instructions", &li, 1000, 1000000000000LL) < 0 ||
	    get_int(d, t, "lua_memory_mb", "limits.lua_memory_mb", &mm, 1, 4096) < 0 ||
	    get_int(d, t, "max_connections", "limits.max_connections", &mc, 1, 1000000) < 0 ||
	    get_num(d, t, "connection_timeout_s", "limits.connection_timeout_s", &c->connection_timeout_s, 0, 3600, 1) < 0)
		return -1;
	c->body_bytes = (size_t)bb;
	c->lua_instructions = (long)li;
	c->lua_memory_mb = (size_t)mm;
	c->max_connections = (int)mc;
	long long mi = c->max_inflight, sm = c->store_max_mb;
	if (get_int(d, t, "max_inflight", "limits.max_inflight", &mi, 1, 1000000) < 0 ||
	    get_int(d, t, "store_max_mb", "limits.store_max_mb", &sm, 0, 1LL << 30) < 0)
		return -1;
	c->max_inflight = (int)mi;
	c->store_max_mb = (long)sm;
	/* Unset, it is at least one body, so a large body_bytes alone still works. */
	long long bu = (long long)c->buffered_bytes;
	if (bu < bb)
		bu = bb;
	if (get_int(d, t, "buffered_bytes", "limits.buffered_bytes", &bu, 1, 1LL << 40) < 0)
		return -1;
	if (bu < bb)
		return lerr(d, "limits.buffered_bytes: must be at least limits.body_bytes (%lld)", bb);
	c->buffered_bytes = (size_t)bu;
	lua_settop(d->L, t - 1);
	return 0;
}

/*
 * The provider keys the core reads (the rest belong to the adapter):
 * max_inflight / queue_limit (integers >= 0: jobs submitted and not yet
 * terminal, 0 no cap), callbacks (false: poll only), callback_requires (a
 * table { https = bool, public = bool } or false: overrides the adapter's).
 */
/* providers.NAME.keys: an array of { key = string, weight = integer 1..1000,
 * id = identifier (default "key" and the position, from 1), max_inflight =
 * integer 0..1000000 (0: no cap) }, ids unique. */
static int check_key_pool(struct ld *d, const char *name, json_t *keys)
{
	if (!keys)
		return 0;
	if (!json_is_array(keys) || json_array_size(keys) == 0 || json_array_size(keys) > 1024)
		return lerr(d, "providers.%s.keys: must be a list of 1 to 1024 { key = \"...\", weight = n, id = \"name\" }", name);
	for (size_t i = 0; i < json_array_size(keys); i++) {
		json_t *e = json_array_get(keys, i), *v;
		const char *k;
		if (!json_is_object(e))
			return lerr(d, "providers.%s.keys[%zu]: must be a table { key = \"...\", weight = n, id = \"name\" }", name, i + 1);
		json_object_foreach(e, k, v) {
			if (strcmp(k, "key") && strcmp(k, "weight") && strcmp(k, "id") &&
			    strcmp(k, "max_inflight"))
				return lerr(d, "providers.%s.keys[%zu].%s: unknown (key, weight, id, max_inflight)", name, i + 1, k);
		}
		v = json_object_get(e, "max_inflight");
		if (v && (!json_is_integer(v) || json_integer_value(v) < 0 ||
			  json_integer_value(v) > 1000000))
			return lerr(d, "providers.%s.keys[%zu].max_inflight: must be an integer from 0 to 1000000", name, i + 1);
		v = json_object_get(e, "key");
		if (!json_is_string(v) || !json_string_length(v))
			return lerr(d, "providers.%s.keys[%zu].key: must be a non-empty string", name, i + 1);
		v = json_object_get(e, "weight");
		if (v && (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 1000))
			return lerr(d, "providers.%s.keys[%zu].weight: must be an integer from 1 to 1000", name, i + 1);
		v = json_object_get(e, "id");
		if (v && (!json_is_string(v) || !json_string_length(v) || json_string_length(v) > 63 ||
			  !is_ident(json_string_value(v))))
			return lerr(d, "providers.%s.keys[%zu].id: must be an identifier ([A-Za-z0-9_]+, at most 63)", name, i + 1);
		char id[32];
		snprintf(id, sizeof id, "key%zu", i + 1);
		const char *mine = v ? json_string_value(v) : id;
		for (size_t j = 0; j < i; j++) {
			json_t *o = json_object_get(json_array_get(keys, j), "id");
			char oid[32];
			snprintf(oid, sizeof oid, "key%zu", j + 1);
			if (strcmp(o ? json_string_value(o) : oid, mine) == 0)
				return lerr(d, "providers.%s.keys[%zu].id: %s is taken by keys[%zu]", name, i + 1, mine, j + 1);
		}
	}
	return 0;
}

static int check_provider_keys(struct ld *d, const char *name, json_t *o)
{
	static const char *const caps[] = { "max_inflight", "queue_limit", NULL };
	for (const char *const *k = caps; *k; k++) {
		json_t *v = json_object_get(o, *k);
		if (v && (!json_is_integer(v) || json_integer_value(v) < 0 ||
			  json_integer_value(v) > 1000000))
			return lerr(d, "providers.%s.%s: must be an integer from 0 to 1000000", name, *k);
	}
	if (check_key_pool(d, name, json_object_get(o, "keys")) < 0)
		return -1;
	json_t *prices = json_object_get(o, "prices");
	char pwhy[300];
	if (prices && usage_prices_check(prices, pwhy, sizeof pwhy) < 0)
		return lerr(d, "providers.%s.prices%s%s", name, pwhy[0] == '[' ? "" : ": ", pwhy);
	json_t *cb = json_object_get(o, "callbacks");
	if (cb && !json_is_boolean(cb))
		return lerr(d, "providers.%s.callbacks: must be true or false", name);
	json_t *cr = json_object_get(o, "callback_requires");
	if (cr && !json_is_false(cr)) {
		const char *k;
		json_t *v;
		if (!json_is_object(cr))
			return lerr(d, "providers.%s.callback_requires: must be { https = bool, public = bool } or false", name);
		json_object_foreach(cr, k, v) {
			if ((strcmp(k, "https") && strcmp(k, "public")) || !json_is_boolean(v))
				return lerr(d, "providers.%s.callback_requires: must be { https = bool, public = bool } or false", name);
		}
	}
	return 0;
}

static int load_providers(struct ld *d, struct config *c, int env)
{
	lua_State *L = d->L;
	char jerr[300];
	int r = sub_table(d, env, "providers", "providers");
	if (r <= 0)
		return r;
	int t = lua_gettop(L);
	lua_pushnil(L);
	while (lua_next(L, t)) {
		if (lua_type(L, -2) != LUA_TSTRING || !is_ident(lua_tostring(L, -2)))
			return lerr(d, "providers: names must be identifiers ([A-Za-z0-9_]+)");
		const char *name = lua_tostring(L, -2);
		if (lua_type(L, -1) != LUA_TTABLE)
			return lerr(d, "providers.%s: must be a table of settings", name);
		json_t *o = luajson_to_json(L, -1, jerr, sizeof jerr);
		if (!o)
			return lerr(d, "providers.%s.%s", name, jerr);
		if (!json_is_object(o)) {
			json_decref(o);
			return lerr(d, "providers.%s: must be a table of settings", name);
		}
		json_t *proxy = json_object_get(o, "proxy");
		if (proxy && (!json_is_string(proxy) || !valid_proxy_url(json_string_value(proxy)))) {
			json_decref(o);
			return lerr(d, "providers.%s.proxy: must be a proxy URL (http, https, socks4, socks4a, socks5 or socks5h)", name);
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

static int cmp_customer(const void *a, const void *b)
{
	return strcmp(((const struct config_customer *)a)->name,
		      ((const struct config_customer *)b)->name);
}

static int cmp_alias(const void *a, const void *b)
{
	return strcmp(((const struct config_alias *)a)->name,
		      ((const struct config_alias *)b)->name);
}

/* customers.NAME.rate = { per_s = N, burst = M } (burst defaults to
 * ceil(per_s), at least 1). Absent: no limit. */
static int load_rate(struct ld *d, int ct, const char *prefix, struct config_customer *cu)
{
	static const char *const keys[] = { "per_s", "burst", NULL };
	char key[160];
	snprintf(key, sizeof key, "%s.rate", prefix);
	int r = sub_table(d, ct, "rate", key);
	if (r <= 0)
		return r;
	int t = lua_gettop(d->L);
	if (check_keys(d, t, key, keys) < 0)
		return -1;
	snprintf(key, sizeof key, "%s.rate.per_s", prefix);
	if (rawfield(d->L, t, "per_s") == LUA_TNIL)
		return lerr(d, "%s: is required", key);
	lua_pop(d->L, 1);
	if (get_num(d, t, "per_s", key, &cu->rate_per_s, 0, 1e6, 1) < 0)
		return -1;
	long long burst = (long long)ceil(cu->rate_per_s);
	if (burst < 1)
		burst = 1;
	snprintf(key, sizeof key, "%s.rate.burst", prefix);
	if (get_int(d, t, "burst", key, &burst, 1, 1000000000) < 0)
		return -1;
	cu->rate_burst = (double)burst;
	lua_settop(d->L, t - 1);
	return 0;
}

/* The string field of table t into out (one of the allowed values); nil
 * keeps out. */
static int get_word(struct ld *d, int t, const char *field, const char *key,
		    const char *const *allowed, char *out, size_t outlen)
{
	int ty = rawfield(d->L, t, field);
	if (ty == LUA_TNIL) {
		lua_pop(d->L, 1);
		return 0;
	}
	const char *v = ty == LUA_TSTRING ? lua_tostring(d->L, -1) : NULL;
	for (const char *const *a = allowed; v && *a; a++) {
		if (strcmp(v, *a) == 0) {
			snprintf(out, outlen, "%s", v);
			lua_pop(d->L, 1);
			return 0;
		}
	}
	lua_pop(d->L, 1);
	char list[96] = "";
	for (const char *const *a = allowed; *a; a++)
		snprintf(list + strlen(list), sizeof list - strlen(list), "%s\"%s\"",
			 a == allowed ? "" : a[1] ? ", " : " or ", *a);
	return lerr(d, "%s: must be %s", key, list);
}

/* customers.NAME.budget = { amount = n > 0, unit = "usd" | "credits",
 * period = "month" | "day" | "total", warn_at = fraction (0, 1) }. */
static int load_budget(struct ld *d, int ct, const char *prefix, struct config_customer *cu)
{
	static const char *const keys[] = { "amount", "unit", "period", "warn_at", NULL };
	static const char *const units[] = { "usd", "credits", NULL };
	static const char *const periods[] = { "month", "day", "total", NULL };
	char key[160];
	snprintf(cu->budget_unit, sizeof cu->budget_unit, "usd");
	snprintf(cu->budget_period, sizeof cu->budget_period, "month");
	snprintf(key, sizeof key, "%s.budget", prefix);
	int r = sub_table(d, ct, "budget", key);
	if (r <= 0)
		return r;
	int t = lua_gettop(d->L);
	if (check_keys(d, t, key, keys) < 0)
		return -1;
	snprintf(key, sizeof key, "%s.budget.amount", prefix);
	if (rawfield(d->L, t, "amount") == LUA_TNIL)
		return lerr(d, "%s: is required", key);
	lua_pop(d->L, 1);
	if (get_num(d, t, "amount", key, &cu->budget_amount, 0, 1e12, 1) < 0)
		return -1;
	snprintf(key, sizeof key, "%s.budget.unit", prefix);
	if (get_word(d, t, "unit", key, units, cu->budget_unit, sizeof cu->budget_unit) < 0)
		return -1;
	snprintf(key, sizeof key, "%s.budget.period", prefix);
	if (get_word(d, t, "period", key, periods, cu->budget_period, sizeof cu->budget_period) < 0)
		return -1;
	snprintf(key, sizeof key, "%s.budget.warn_at", prefix);
	double warn = 0.5; /* any value inside (0, 1): left as is when unset */
	if (get_num(d, t, "warn_at", key, &warn, -1e12, -1, 0) < 0)
		return -1;
	if (!(warn > 0 && warn < 1))
		return lerr(d, "%s: must be a fraction above 0 and below 1 (0.8: warn at 80%% of the amount)", key);
	if (rawfield(d->L, t, "warn_at") != LUA_TNIL)
		cu->budget_warn_at = warn;
	lua_pop(d->L, 1);
	lua_settop(d->L, t - 1);
	return 0;
}

static int load_customers(struct ld *d, struct config *c, int env)
{
	static const char *const keys[] = { "api_key", "webhook_secret", "hook",
		"webhook_url", "rate", "budget", NULL };
	lua_State *L = d->L;
	char key[160], prefix[100];
	int r = sub_table(d, env, "customers", "customers");
	if (r <= 0)
		return r;
	int t = lua_gettop(L);
	size_t n = table_count(L, t);
	if (n == 0) {
		lua_settop(L, t - 1);
		return 0;
	}
	c->customers = calloc(n, sizeof *c->customers);
	if (!c->customers)
		return lerr(d, "out of memory");
	lua_pushnil(L);
	while (lua_next(L, t)) {
		if (lua_type(L, -2) != LUA_TSTRING)
			return lerr(d, "customers: names must be strings");
		const char *name = lua_tostring(L, -2);
		if (!is_ident(name))
			return lerr(d, "customers.%.64s: name must be an identifier ([A-Za-z0-9_]+)", name);
		struct config_customer *cu = &c->customers[c->ncustomers++];
		if (!(cu->name = strdup(name)) || !(cu->hook = strdup("default")))
			return lerr(d, "out of memory");
		snprintf(prefix, sizeof prefix, "customers.%s", name);
		if (lua_type(L, -1) != LUA_TTABLE)
			return lerr(d, "%s: must be a table", prefix);
		int ct = lua_gettop(L);
		if (check_keys(d, ct, prefix, keys) < 0)
			return -1;
		snprintf(key, sizeof key, "%s.api_key", prefix);
		if (rawfield(L, ct, "api_key") == LUA_TNIL)
			return lerr(d, "%s: is required", key);
		if (take_str(d, key, &cu->api_key, 1) < 0)
			return -1;
		snprintf(key, sizeof key, "%s.webhook_secret", prefix);
		if (get_str(d, ct, "webhook_secret", key, &cu->webhook_secret, 1) < 0)
			return -1;
		char why[96];
		if (cu->webhook_secret &&
		    sign_webhook_secret_check(cu->webhook_secret, why, sizeof why) < 0)
			return lerr(d, "%s: %s", key, why);
		snprintf(key, sizeof key, "%s.hook", prefix);
		if (get_str(d, ct, "hook", key, &cu->hook, 1) < 0)
			return -1;
		if (!is_ident(cu->hook))
			return lerr(d, "%s: must be a hook name ([A-Za-z0-9_]+)", key);
		if (load_rate(d, ct, prefix, cu) < 0 || load_budget(d, ct, prefix, cu) < 0)
			return -1;
		snprintf(key, sizeof key, "%s.webhook_url", prefix);
		if (get_str(d, ct, "webhook_url", key, &cu->webhook_url, 1) < 0)
			return -1;
		if (cu->webhook_url && !valid_http_url(cu->webhook_url, 1))
			return lerr(d, "%s: must be an http(s) URL", key);
		if (cu->webhook_url && !cu->webhook_secret)
			return lerr(d, "%s.webhook_secret: is required with a webhook_url (deliveries are always signed)", prefix);
		EVP_Digest(cu->api_key, strlen(cu->api_key), cu->api_key_sha256,
			   NULL, EVP_sha256(), NULL);
		lua_pop(L, 1);
	}
	qsort(c->customers, c->ncustomers, sizeof *c->customers, cmp_customer);
	for (size_t i = 0; i < c->ncustomers; i++)
		for (size_t j = i + 1; j < c->ncustomers; j++)
			if (strcmp(c->customers[i].api_key, c->customers[j].api_key) == 0)
				return lerr(d, "customers.%s.api_key: same as customers.%s.api_key (keys must be unique)",
					    c->customers[j].name, c->customers[i].name);
	lua_settop(L, t - 1);
	return 0;
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
			return lerr(d, "out of memory");
		if (!valid_target(lua_tostring(L, lt)))
			return lerr(d, "%s: must be \"provider:model\"", key);
		if (!(a->targets[0] = strdup(lua_tostring(L, lt))))
			return lerr(d, "out of memory");
		a->ntargets = 1;
		return 0;
	}
	if (lua_type(L, lt) != LUA_TTABLE)
		return lerr(d, "%s: must be a list of \"provider:model\" targets", key);
	size_t n = (size_t)lua_rawlen(L, lt), count = 0;
	lua_pushnil(L);
	while (lua_next(L, lt)) {
		lua_pop(L, 1);
		count++;
	}
	if (n == 0 || count != n)
		return lerr(d, "%s: must be a non-empty list of \"provider:model\" targets", key);
	if (n > 32)
		return lerr(d, "%s: at most 32 targets", key);
	a->targets = calloc(n, sizeof *a->targets);
	if (!a->targets)
		return lerr(d, "out of memory");
	for (size_t i = 0; i < n; i++) {
		lua_rawgeti(L, lt, (lua_Integer)i + 1);
		if (lua_type(L, -1) != LUA_TSTRING || !valid_target(lua_tostring(L, -1)))
			return lerr(d, "%s[%zu]: must be \"provider:model\"", key, i + 1);
		if (!(a->targets[i] = strdup(lua_tostring(L, -1))))
			return lerr(d, "out of memory");
		a->ntargets++;
		lua_pop(L, 1);
	}
	return 0;
}

static int load_models(struct ld *d, struct config *c, int env)
{
	static const char *const keys[] = { "targets", "failover_on_failure", NULL };
	lua_State *L = d->L;
	char key[200];
	int r = sub_table(d, env, "models", "models");
	if (r <= 0)
		return r;
	int t = lua_gettop(L);
	size_t n = table_count(L, t);
	if (n == 0) {
		lua_settop(L, t - 1);
		return 0;
	}
	c->aliases = calloc(n, sizeof *c->aliases);
	if (!c->aliases)
		return lerr(d, "out of memory");
	lua_pushnil(L);
	while (lua_next(L, t)) {
		if (lua_type(L, -2) != LUA_TSTRING)
			return lerr(d, "models: alias names must be strings");
		size_t nl;
		const char *name = lua_tolstring(L, -2, &nl);
		if (nl == 0 || nl > 256 || strlen(name) != nl)
			return lerr(d, "models: alias names must be 1 to 256 bytes");
		struct config_alias *a = &c->aliases[c->naliases++];
		if (!(a->name = strdup(name)))
			return lerr(d, "out of memory");
		snprintf(key, sizeof key, "models.%.100s", name);
		int vt = lua_gettop(L);
		if (lua_type(L, vt) == LUA_TTABLE && rawfield(L, vt, "targets") != LUA_TNIL) {
			lua_pop(L, 1);
			if (check_keys(d, vt, key, keys) < 0)
				return -1;
			size_t kl = strlen(key);
			snprintf(key + kl, sizeof key - kl, ".failover_on_failure");
			if (get_bool(d, vt, "failover_on_failure", key, &a->failover_on_failure) < 0)
				return -1;
			rawfield(L, vt, "targets");
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

static int set_defaults(struct config *c)
{
	c->listen = strdup("127.0.0.1:8080");
	c->store = strdup("sqlite:genrelay.db");
	c->scripts = strdup("scripts");
	c->durability = strdup("normal");
	c->log_level = strdup("info");
	c->log_format = strdup("text");
	c->providers = json_object();
	c->retry = malloc(sizeof default_retry);
	if (!c->listen || !c->store || !c->scripts || !c->durability ||
	    !c->log_level || !c->log_format || !c->providers || !c->retry)
		return -1;
	memcpy(c->retry, default_retry, sizeof default_retry);
	c->nretry = sizeof default_retry / sizeof default_retry[0];
	c->workers = 1;
	c->webhook_timeout_s = 10;
	c->retry_jitter = 0.2;
	c->require_https = 1;
	c->allow_private = 0;
	c->webhook_response_bytes = 65536;
	c->submit_window_s = 300;
	c->job_deadline_s = 3600;
	c->poll_after_s = 30;
	c->poll_interval_s = 5;
	c->poll_max_s = 300;
	c->sync_wait_s = 55;
	c->failover_after = 3;
	c->lease_s = 30;
	c->due_check_s = 1;
	c->max_inflight = 1024;
	c->store_max_mb = 0;
	c->body_bytes = 1048576;
	c->buffered_bytes = 64 * 1048576;
	c->lua_instructions = 10000000;
	c->lua_memory_mb = 32;
	c->max_connections = 10000;
	c->connection_timeout_s = 30;
	return 0;
}

/*
 * A Lua error of the config file, with what Lua quoted from the file's
 * string literals (they may be secrets) redacted: scrub_lua_message with the
 * literals of the file.
 */
static void redact_lua_error(char *msg, size_t cap, const char *path)
{
	char *lits = NULL;
	FILE *f = fopen(path, "rb");
	if (f) {
		size_t cap_src = 1 << 20, n;
		char *src = malloc(cap_src);
		if (src) {
			n = fread(src, 1, cap_src, f);
			lits = scrub_lua_literals(src, n);
			free(src);
		}
		fclose(f);
	}
	scrub_lua_message(msg, cap, lits);
	free(lits);
}

static const char *const top_keys[] = { "listen", "public_url", "store",
	"scripts", "workers", "server_secret", "server_secret_previous",
	"store_insecure_permissions", "admin_key", "metrics_token", "metrics_listen",
	"durability", "log_level", "log",
	"providers", "customers", "models", "webhooks", "jobs", "limits", NULL };

/* Runs the file and reads its keys into c. 0 or -1 with d->err set. */
static int load_file(struct ld *d, struct config *c, const char *path)
{
	lua_State *L = d->L;
	int env;

	luaL_openlibs(L);
	lua_newtable(L);
	env = lua_gettop(L);
	lua_createtable(L, 0, 1);
	lua_pushglobaltable(L);
	lua_setfield(L, -2, "__index");
	lua_setmetatable(L, env);

	int rc = luaL_loadfilex(L, path, "t");
	if (rc == LUA_OK) {
		lua_pushvalue(L, env);
		lua_setupvalue(L, -2, 1);
		rc = lua_pcall(L, 0, 0, 0);
	}
	if (rc != LUA_OK) {
		char msg[512];
		const char *m = lua_tostring(L, -1);
		snprintf(msg, sizeof msg, "%s", m ? m : "error object is not a string");
		redact_lua_error(msg, sizeof msg, path);
		d->file = NULL; /* Lua's message already names the file */
		lerr(d, "%s", msg);
		d->file = path;
		return -1;
	}
	lua_settop(L, env);

	if (check_keys(d, env, "", top_keys) < 0)
		return -1;

	if (get_str(d, env, "listen", "listen", &c->listen, 1) < 0)
		return -1;
	if (!valid_listen(c->listen))
		return lerr(d, "listen: must be host:port or [ipv6]:port, got \"%.100s\"", c->listen);

	if (get_str(d, env, "public_url", "public_url", &c->public_url, 1) < 0)
		return -1;
	if (c->public_url) {
		if (!valid_http_url(c->public_url, 0))
			return lerr(d, "public_url: must be an http:// or https:// URL without query");
		size_t n = strlen(c->public_url);
		while (n > 0 && c->public_url[n - 1] == '/')
			c->public_url[--n] = '\0';
	}

	/* store = "spec", or store = { url = "spec", retention_days = N }. */
	if (rawfield(d->L, env, "store") == LUA_TTABLE) {
		static const char *const skeys[] = { "url", "retention_days", NULL };
		int st = lua_gettop(d->L);
		if (check_keys(d, st, "store", skeys) < 0 ||
		    get_str(d, st, "url", "store.url", &c->store, 1) < 0 ||
		    get_num(d, st, "retention_days", "store.retention_days", &c->retention_days,
			    0, 36500, 0) < 0)
			return -1;
		lua_settop(d->L, st - 1);
	} else {
		lua_pop(d->L, 1);
		if (get_str(d, env, "store", "store", &c->store, 1) < 0)
			return -1;
	}
	if (!((strncmp(c->store, "sqlite:", 7) == 0 && c->store[7]) ||
	      strncmp(c->store, "postgresql://", 13) == 0 ||
	      strncmp(c->store, "postgres://", 11) == 0))
		return lerr(d, "store: must be \"sqlite:PATH\" or \"postgresql://...\"");

	if (get_str(d, env, "scripts", "scripts", &c->scripts, 1) < 0)
		return -1;

	/* workers = N (default 1), or "auto": one loop on SQLite (one writer
	 * anyway), CONFIG_PG_WORKERS on PostgreSQL, each with its own
	 * connection, so a loop waiting on a round trip leaves others serving. */
	long long w = c->workers, autow = 0;
	if (rawfield(d->L, env, "workers") == LUA_TSTRING &&
	    strcmp(lua_tostring(d->L, -1), "auto") == 0) {
		lua_pop(d->L, 1);
		autow = 1;
	} else {
		lua_pop(d->L, 1);
		if (get_int(d, env, "workers", "workers", &w, 1, 64) < 0)
			return lerr(d, "workers: must be an integer from 1 to 64, or \"auto\"");
	}
	c->workers = !autow ? (int)w : strncmp(c->store, "sqlite:", 7) == 0 ? 1 : CONFIG_PG_WORKERS;

	if (get_str(d, env, "server_secret", "server_secret", &c->server_secret, 1) < 0 ||
	    get_str(d, env, "server_secret_previous", "server_secret_previous",
		    &c->server_secret_previous, 1) < 0 ||
	    get_bool(d, env, "store_insecure_permissions", "store_insecure_permissions",
		     &c->store_insecure_permissions) < 0)
		return -1;

	if (get_str(d, env, "admin_key", "admin_key", &c->admin_key, 1) < 0)
		return -1;
	if (c->admin_key) {
		if (strlen(c->admin_key) < 16)
			return lerr(d, "admin_key: must be at least 16 bytes");
		if (!EVP_Digest(c->admin_key, strlen(c->admin_key), c->admin_key_sha256, NULL,
				EVP_sha256(), NULL))
			return lerr(d, "admin_key: cannot hash");
	}

	if (get_str(d, env, "metrics_token", "metrics_token", &c->metrics_token, 1) < 0)
		return -1;
	if (c->metrics_token) {
		if (strlen(c->metrics_token) < 16)
			return lerr(d, "metrics_token: must be at least 16 bytes");
		if (!EVP_Digest(c->metrics_token, strlen(c->metrics_token), c->metrics_token_sha256,
				NULL, EVP_sha256(), NULL))
			return lerr(d, "metrics_token: cannot hash");
	}
	if (get_str(d, env, "metrics_listen", "metrics_listen", &c->metrics_listen, 1) < 0)
		return -1;
	if (c->metrics_listen && !valid_listen(c->metrics_listen))
		return lerr(d, "metrics_listen: must be host:port or [ipv6]:port, got \"%.100s\"",
			    c->metrics_listen);

	if (get_str(d, env, "durability", "durability", &c->durability, 1) < 0)
		return -1;
	if (strcmp(c->durability, "normal") != 0 && strcmp(c->durability, "fsync") != 0)
		return lerr(d, "durability: must be \"normal\" or \"fsync\"");

	if (get_str(d, env, "log_level", "log_level", &c->log_level, 1) < 0 || load_log(d, c, env) < 0)
		return -1;
	if (strcmp(c->log_level, "debug") && strcmp(c->log_level, "info") &&
	    strcmp(c->log_level, "warn") && strcmp(c->log_level, "error"))
		return lerr(d, "log_level: must be \"debug\", \"info\", \"warn\" or \"error\" (so must log.level)");
	if (strcmp(c->log_format, "text") && strcmp(c->log_format, "json"))
		return lerr(d, "log.format: must be \"text\" or \"json\"");

	if (load_providers(d, c, env) < 0 || load_customers(d, c, env) < 0 ||
	    load_models(d, c, env) < 0 || load_webhooks(d, c, env) < 0 ||
	    load_jobs(d, c, env) < 0 || load_limits(d, c, env) < 0)
		return -1;
	return 0;
}

/*
 * server_secret and server_secret_previous not set in the file come from the
 * environment. Both must be at least 16 bytes, wherever they come from.
 */
static int load_secrets_env(struct ld *d, struct config *c)
{
	static const struct {
		const char *key, *env;
		size_t off;
	} v[] = {
		{ "server_secret", "GENRELAY_SERVER_SECRET", offsetof(struct config, server_secret) },
		{ "server_secret_previous", "GENRELAY_SERVER_SECRET_PREVIOUS",
		  offsetof(struct config, server_secret_previous) },
	};
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		char **field = (char **)((char *)c + v[i].off);
		const char *e = getenv(v[i].env);
		int from_env = 0;
		if (!*field && e && *e) {
			if (!(*field = strdup(e)))
				return lerr(d, "out of memory");
			from_env = 1;
		}
		if (*field && strlen(*field) < 16)
			return lerr(d, "%s: must be at least 16 bytes", from_env ? v[i].env : v[i].key);
	}
	return 0;
}

/* Every string under a secret-looking key, at any depth, is a secret; but
 * not an `id` (a key pool's ids are recorded with jobs: names, not secrets). */
static int scrub_json_secrets(struct scrub *s, json_t *v, int secret)
{
	const char *k;
	json_t *x;
	size_t i;
	if (json_is_string(v))
		return secret && scrub_add(s, json_string_value(v)) < 0 ? -1 : 0;
	if (json_is_object(v)) {
		json_object_foreach(v, k, x)
			if (scrub_json_secrets(s, x, scrub_key_is_secret(k) ||
					       (secret && strcmp(k, "id") != 0)) < 0)
				return -1;
	} else if (json_is_array(v)) {
		json_array_foreach(v, i, x)
			if (scrub_json_secrets(s, x, secret) < 0)
				return -1;
	}
	return 0;
}

/*
 * c->scrub from every secret of the config: provider settings under
 * secret-looking keys, customers' API keys and webhook secrets (a "whsec_"
 * secret also without its prefix), the server secrets and the admin key.
 */
static int build_scrub(struct ld *d, struct config *c)
{
	struct scrub *s = scrub_new();
	int rc = 0;
	if (!s)
		return lerr(d, "out of memory");
	c->scrub = s;
	rc |= scrub_json_secrets(s, c->providers, 0);
	for (size_t i = 0; i < c->ncustomers; i++) {
		const char *ws = c->customers[i].webhook_secret;
		rc |= scrub_add(s, c->customers[i].api_key) < 0 ? -1 : 0;
		rc |= scrub_add(s, ws) < 0 ? -1 : 0;
		if (ws && strncmp(ws, "whsec_", 6) == 0)
			rc |= scrub_add(s, ws + 6) < 0 ? -1 : 0;
	}
	rc |= scrub_add(s, c->server_secret) < 0 ? -1 : 0;
	rc |= scrub_add(s, c->server_secret_previous) < 0 ? -1 : 0;
	rc |= scrub_add(s, c->admin_key) < 0 ? -1 : 0;
	return rc < 0 ? lerr(d, "out of memory") : 0;
}

struct config *config_load(const char *path, char *err, size_t errlen)
{
	struct ld d = { NULL, path, err, errlen };
	struct config *c = calloc(1, sizeof *c);

	if (err && errlen)
		err[0] = '\0';
	if (!c || set_defaults(c) < 0) {
		lerr(&d, "out of memory");
		goto fail;
	}
	if (path) {
		if (!(c->path = strdup(path))) {
			lerr(&d, "out of memory");
			goto fail;
		}
		d.L = luaL_newstate();
		if (!d.L) {
			lerr(&d, "out of memory");
			goto fail;
		}
		if (load_file(&d, c, path) < 0)
			goto fail;
		lua_close(d.L);
		d.L = NULL;
	}
	if (!c->public_url && !(c->public_url = public_url_from_listen(c->listen))) {
		lerr(&d, "out of memory");
		goto fail;
	}
	if (load_secrets_env(&d, c) < 0 || build_scrub(&d, c) < 0)
		goto fail;
	return c;
fail:
	if (d.L)
		lua_close(d.L);
	config_free(c);
	return NULL;
}

void config_free(struct config *c)
{
	if (!c)
		return;
	free(c->path);
	free(c->listen);
	free(c->public_url);
	free(c->store);
	free(c->scripts);
	if (c->server_secret)
		OPENSSL_cleanse(c->server_secret, strlen(c->server_secret));
	free(c->server_secret);
	if (c->server_secret_previous)
		OPENSSL_cleanse(c->server_secret_previous, strlen(c->server_secret_previous));
	free(c->server_secret_previous);
	scrub_free(c->scrub);
	free(c->admin_key);
	if (c->metrics_token)
		OPENSSL_cleanse(c->metrics_token, strlen(c->metrics_token));
	free(c->metrics_token);
	free(c->metrics_listen);
	free(c->durability);
	free(c->log_level);
	free(c->log_format);
	if (c->webhook_proxy)
		OPENSSL_cleanse(c->webhook_proxy, strlen(c->webhook_proxy));
	free(c->webhook_proxy);
	json_decref(c->providers);
	for (size_t i = 0; i < c->ncustomers; i++) {
		struct config_customer *cu = &c->customers[i];
		if (cu->api_key)
			OPENSSL_cleanse(cu->api_key, strlen(cu->api_key));
		if (cu->webhook_secret)
			OPENSSL_cleanse(cu->webhook_secret, strlen(cu->webhook_secret));
		free(cu->name);
		free(cu->api_key);
		free(cu->webhook_secret);
		free(cu->hook);
		free(cu->webhook_url);
	}
	free(c->customers);
	for (size_t i = 0; i < c->naliases; i++) {
		for (size_t j = 0; j < c->aliases[i].ntargets; j++)
			free(c->aliases[i].targets[j]);
		free(c->aliases[i].targets);
		free(c->aliases[i].name);
	}
	free(c->aliases);
	free(c->retry);
	free(c);
}

/*
 * Compares SHA-256 digests, so neither the key's length nor its content
 * leaks through timing; every customer is compared, with no early exit.
 */
const struct config_customer *config_customer_by_key(const struct config *c,
						     const char *key)
{
	unsigned char h[32];
	const struct config_customer *found = NULL;

	if (!c || !key || !*key || c->ncustomers == 0)
		return NULL;
	if (!EVP_Digest(key, strlen(key), h, NULL, EVP_sha256(), NULL))
		return NULL;
	for (size_t i = 0; i < c->ncustomers; i++) {
		int eq = CRYPTO_memcmp(h, c->customers[i].api_key_sha256, sizeof h) == 0;
		if (eq && !found)
			found = &c->customers[i];
	}
	return found;
}

int config_is_admin_key(const struct config *c, const char *key)
{
	unsigned char h[32];

	if (!c || !c->admin_key || !key || !*key)
		return 0;
	if (!EVP_Digest(key, strlen(key), h, NULL, EVP_sha256(), NULL))
		return 0;
	return CRYPTO_memcmp(h, c->admin_key_sha256, sizeof h) == 0;
}

int config_is_metrics_token(const struct config *c, const char *key)
{
	unsigned char h[32];

	if (!c || !c->metrics_token || !key || !*key)
		return 0;
	if (!EVP_Digest(key, strlen(key), h, NULL, EVP_sha256(), NULL))
		return 0;
	return CRYPTO_memcmp(h, c->metrics_token_sha256, sizeof h) == 0;
}

const struct config_customer *config_customer_by_name(const struct config *c,
						      const char *name)
{
	if (!c || !name)
		return NULL;
	for (size_t i = 0; i < c->ncustomers; i++)
		if (strcmp(c->customers[i].name, name) == 0)
			return &c->customers[i];
	return NULL;
}

const struct config_alias *config_alias(const struct config *c, const char *name)
{
	if (!c || !name)
		return NULL;
	for (size_t i = 0; i < c->naliases; i++)
		if (strcmp(c->aliases[i].name, name) == 0)
			return &c->aliases[i];
	return NULL;
}

json_t *config_provider(const struct config *c, const char *name)
{
	json_t *o;
	if (!c || !name || !c->providers)
		return NULL;
	o = json_object_get(c->providers, name);
	return json_is_object(o) ? o : NULL;
}

/* ------------------------------------------------------------ reload */

static void note_changed(char *out, size_t outlen, const char *key)
{
	size_t n = strlen(out);
	snprintf(out + n, outlen - n, "%s%s", n ? ", " : "", key);
}

static int same_opt(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* Puts cur's value of a restart-only string back into n: 0 or -1 (memory). */
static int keep_str(char **dst, const char *cur, char *changed, size_t len, const char *key)
{
	if (same_opt(*dst, cur))
		return 0;
	note_changed(changed, len, key);
	free(*dst);
	*dst = cur ? strdup(cur) : NULL;
	return cur && !*dst ? -1 : 0;
}

struct config *config_reload(const struct config *cur, char *changed, size_t changedlen,
			     char *err, size_t errlen)
{
	changed[0] = '\0';
	struct config *n = config_load(cur->path, err, errlen);
	if (!n)
		return NULL;
	int rc = 0;
	rc |= keep_str(&n->listen, cur->listen, changed, changedlen, "listen");
	rc |= keep_str(&n->metrics_listen, cur->metrics_listen, changed, changedlen, "metrics_listen");
	rc |= keep_str(&n->store, cur->store, changed, changedlen, "store");
	rc |= keep_str(&n->scripts, cur->scripts, changed, changedlen, "scripts");
	rc |= keep_str(&n->durability, cur->durability, changed, changedlen, "durability");
	rc |= keep_str(&n->server_secret, cur->server_secret, changed, changedlen, "server_secret");
	rc |= keep_str(&n->server_secret_previous, cur->server_secret_previous, changed, changedlen,
		       "server_secret_previous");
#define KEEP_NUM(field, key) \
	do { \
		if (n->field != cur->field) { \
			note_changed(changed, changedlen, key); \
			n->field = cur->field; \
		} \
	} while (0)
	KEEP_NUM(workers, "workers");
	KEEP_NUM(retention_days, "store.retention_days");
	KEEP_NUM(store_insecure_permissions, "store_insecure_permissions");
	KEEP_NUM(max_connections, "limits.max_connections");
	KEEP_NUM(connection_timeout_s, "limits.connection_timeout_s");
	KEEP_NUM(max_inflight, "limits.max_inflight");
	KEEP_NUM(buffered_bytes, "limits.buffered_bytes");
#undef KEEP_NUM
	n->role = cur->role;
	if (rc < 0) {
		snprintf(err, errlen, "out of memory");
		config_free(n);
		return NULL;
	}
	return n;
}
