/*
 * config_read.c: the configuration loader's primitives (config_int.h):
 * errors, typed getters over the file's tables, key checks, and the syntax
 * of names, listen addresses and URLs.
 */
#include "config_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_LEN 64

/* Writes "FILE: message" into d->err. Returns -1. */
int cfg_lerr(struct ld *d, const char *fmt, ...)
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
int cfg_is_ident(const char *s)
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
int cfg_valid_listen(const char *s)
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
int cfg_valid_http_url(const char *s, int allow_query)
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
int cfg_valid_proxy_url(const char *s)
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

/* Pushes t[key] (raw) for the table at tidx; returns its type. */
int cfg_rawfield(lua_State *L, int tidx, const char *key)
{
	lua_pushstring(L, key);
	return lua_rawget(L, tidx);
}

/*
 * The value on top of the stack as a string into *out (replacing the old
 * one); nil keeps *out. Pops the value. Secrets are never echoed anyway:
 * no helper here prints values.
 */
int cfg_take_str(struct ld *d, const char *key, char **out, int nonempty)
{
	lua_State *L = d->L;
	int t = lua_type(L, -1);
	if (t == LUA_TNIL) {
		lua_pop(L, 1);
		return 0;
	}
	if (t != LUA_TSTRING) {
		lua_pop(L, 1);
		return cfg_lerr(d, "%s: must be a string", key);
	}
	size_t len;
	const char *s = lua_tolstring(L, -1, &len);
	if (strlen(s) != len) {
		lua_pop(L, 1);
		return cfg_lerr(d, "%s: must not contain NUL bytes", key);
	}
	if (nonempty && len == 0) {
		lua_pop(L, 1);
		return cfg_lerr(d, "%s: must not be empty", key);
	}
	char *v = strdup(s);
	lua_pop(L, 1);
	if (!v)
		return cfg_lerr(d, "out of memory");
	free(*out);
	*out = v;
	return 0;
}

int cfg_get_str(struct ld *d, int tidx, const char *field, const char *key,
		   char **out, int nonempty)
{
	cfg_rawfield(d->L, tidx, field);
	return cfg_take_str(d, key, out, nonempty);
}

/* A number in [min, max] (max < 0: no upper bound); nil keeps *out. */
int cfg_get_num(struct ld *d, int tidx, const char *field, const char *key,
		   double *out, double min, double max, int min_exclusive)
{
	lua_State *L = d->L;
	int t = cfg_rawfield(L, tidx, field);
	if (t == LUA_TNIL) {
		lua_pop(L, 1);
		return 0;
	}
	if (t != LUA_TNUMBER) {
		lua_pop(L, 1);
		return cfg_lerr(d, "%s: must be a number", key);
	}
	double v = lua_tonumber(L, -1);
	lua_pop(L, 1);
	if (!isfinite(v) || (min_exclusive ? v <= min : v < min) ||
	    (max >= 0 && v > max)) {
		if (max >= 0)
			return cfg_lerr(d, "%s: must be %s %g and at most %g", key,
				    min_exclusive ? "above" : "at least", min, max);
		return cfg_lerr(d, "%s: must be %s %g", key,
			    min_exclusive ? "above" : "at least", min);
	}
	*out = v;
	return 0;
}

/* An integer in [min, max]; nil keeps *out. */
int cfg_get_int(struct ld *d, int tidx, const char *field, const char *key,
		   long long *out, long long min, long long max)
{
	lua_State *L = d->L;
	int t = cfg_rawfield(L, tidx, field);
	if (t == LUA_TNIL) {
		lua_pop(L, 1);
		return 0;
	}
	int isnum = 0;
	lua_Integer v = lua_tointegerx(L, -1, &isnum);
	lua_pop(L, 1);
	if (t != LUA_TNUMBER || !isnum)
		return cfg_lerr(d, "%s: must be an integer", key);
	if (v < min || v > max)
		return cfg_lerr(d, "%s: must be between %lld and %lld", key, min, max);
	*out = v;
	return 0;
}

/* Number of entries of the table at index t (any keys). */
size_t cfg_table_count(lua_State *L, int t)
{
	size_t n = 0;
	lua_pushnil(L);
	while (lua_next(L, t)) {
		lua_pop(L, 1);
		n++;
	}
	return n;
}

int cfg_get_bool(struct ld *d, int tidx, const char *field, const char *key,
		    int *out)
{
	lua_State *L = d->L;
	int t = cfg_rawfield(L, tidx, field);
	if (t == LUA_TNIL) {
		lua_pop(L, 1);
		return 0;
	}
	if (t != LUA_TBOOLEAN) {
		lua_pop(L, 1);
		return cfg_lerr(d, "%s: must be true or false", key);
	}
	*out = lua_toboolean(L, -1);
	lua_pop(L, 1);
	return 0;
}

/*
 * Every key of the table at tidx must be a string listed in allowed
 * (NULL-terminated). prefix is the table's own key path ("" at top level).
 */
int cfg_check_keys(struct ld *d, int tidx, const char *prefix,
		      const char *const *allowed)
{
	lua_State *L = d->L;
	lua_pushnil(L);
	while (lua_next(L, tidx)) {
		lua_pop(L, 1);
		if (lua_type(L, -1) != LUA_TSTRING) {
			lua_pop(L, 1);
			return cfg_lerr(d, "%s%skeys must be strings", prefix,
				    *prefix ? ": " : "");
		}
		const char *k = lua_tostring(L, -1);
		int ok = 0;
		for (const char *const *a = allowed; *a; a++)
			if (strcmp(*a, k) == 0)
				ok = 1;
		if (!ok) {
			int r = cfg_lerr(d, "unknown key '%s%s%.64s'%s", prefix,
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
int cfg_sub_table(struct ld *d, int tidx, const char *field, const char *key)
{
	int t = cfg_rawfield(d->L, tidx, field);
	if (t == LUA_TNIL) {
		lua_pop(d->L, 1);
		return 0;
	}
	if (t != LUA_TTABLE) {
		lua_pop(d->L, 1);
		return cfg_lerr(d, "%s: must be a table", key);
	}
	return 1;
}
