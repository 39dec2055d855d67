/*
 * config_int.h: private to the configuration loader (config*.c): the
 * loader's state and what its files share. The files are layered, each
 * calling only the ones below it (tools/layers checks it on the built
 * objects):
 *
 *   config_reload.c     config_reload: a new config from the same file,
 *                       with the restart-only keys kept from the running one
 *   config.c            config_load, config_free, the lookups; load_file
 *                       (runs the file, the top-level keys), set_defaults,
 *                       and the webhooks, jobs, log and limits tables
 *   config_customers.c  customers: API keys, webhook secrets and URLs,
 *                       hooks, rates, budgets
 *   config_providers.c  providers (key pools, prices, caps, callbacks,
 *                       proxies) and models (aliases and their targets)
 *   config_secrets.c    secrets: from the environment, the scrubber built
 *                       from every secret, Lua errors redacted
 *   config_read.c       the primitives: errors (cfg_lerr), typed getters,
 *                       key checks, and the syntax of names, listen
 *                       addresses and URLs
 *
 * The file runs in a full Lua state (it is trusted and may call os.getenv)
 * with a fresh environment table whose __index is the standard globals, so
 * after the run that table holds exactly what the file set. Every key is then
 * type- and range-checked; unknown keys are errors so typos are caught.
 * Error messages name the key and never include a value that may be secret.
 *
 * A getter reads field of the table at stack index tidx, names it key in
 * errors, leaves the stack as it found it, and keeps *out when the field is
 * nil. Every function returning int gives 0 (or a count) or -1 with the
 * message in d->err.
 */
#ifndef GENRELAY_CONFIG_INT_H
#define GENRELAY_CONFIG_INT_H

#include "config.h"

#include <lauxlib.h>
#include <lua.h>
#include <stddef.h>

/* Loader state: the Lua state and where the first error goes. */
struct ld {
	lua_State *L;
	const char *file;
	char *err;
	size_t errlen;
};

/* ---- config_read.c */

/* Writes "FILE: message" into d->err. Returns -1. */
int cfg_lerr(struct ld *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* [A-Za-z0-9_]{1,64}: provider, hook and script names. */
int cfg_is_ident(const char *s);
/* host:port or [v6]:port; the host is an IPv4 address or a name. */
int cfg_valid_listen(const char *s);
/* http(s)://host[...] without whitespace; query and fragment only when
 * allow_query. */
int cfg_valid_http_url(const char *s, int allow_query);
/* A proxy URL for curl (http, https, socks4, socks4a, socks5, socks5h). */
int cfg_valid_proxy_url(const char *s);

/* Pushes t[key] (raw) for the table at tidx; returns its type. */
int cfg_rawfield(lua_State *L, int tidx, const char *key);
/* The value on top of the stack as a string into *out (replacing it,
 * caller frees); nil keeps *out. Pops the value. */
int cfg_take_str(struct ld *d, const char *key, char **out, int nonempty);
int cfg_get_str(struct ld *d, int tidx, const char *field, const char *key,
		char **out, int nonempty);
/* A number in [min, max] (max < 0: no upper bound). */
int cfg_get_num(struct ld *d, int tidx, const char *field, const char *key,
		double *out, double min, double max, int min_exclusive);
/* An integer in [min, max]. */
int cfg_get_int(struct ld *d, int tidx, const char *field, const char *key,
		long long *out, long long min, long long max);
int cfg_get_bool(struct ld *d, int tidx, const char *field, const char *key,
		 int *out);
/* Number of entries of the table at index t (any keys). */
size_t cfg_table_count(lua_State *L, int t);
/* Every key of the table at tidx is a string listed in allowed
 * (NULL-terminated); prefix is the table's key path ("" at top level). */
int cfg_check_keys(struct ld *d, int tidx, const char *prefix,
		   const char *const *allowed);
/* Pushes t[field] when it is a table (returns 1), nothing for nil (0), or
 * fails (-1). */
int cfg_sub_table(struct ld *d, int tidx, const char *field, const char *key);

/* ---- config_secrets.c */

/* Redacts the file's string literals (they may be secrets) from a Lua
 * error message about the file at path, in place. */
void cfg_redact_lua_error(char *msg, size_t cap, const char *path);
/* server_secret and server_secret_previous from the environment when the
 * file sets none; each at least 16 bytes. */
int cfg_load_secrets_env(struct ld *d, struct config *c);
/* c->scrub (owned by c) from every secret of c. */
int cfg_build_scrub(struct ld *d, struct config *c);

/* ---- config_providers.c, config_customers.c: the tables of the file's
 * environment at index env, into c (which owns what they allocate, also on
 * failure: config_free frees it). */

int cfg_load_providers(struct ld *d, struct config *c, int env);
int cfg_load_models(struct ld *d, struct config *c, int env);
int cfg_load_customers(struct ld *d, struct config *c, int env);

#endif
