/*
 * config.c: the configuration file (see config.h): config_load and
 * config_free, the lookups, the defaults, the file's run and its top-level
 * keys, and the webhooks, jobs, log and limits tables. config_int.h says
 * how the loader is cut into files and how the file is read.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "config_int.h"
#include "fetch.h"
#include "scrub.h"

#include <lualib.h>
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double default_retry[] = { 5, 15, 60, 300, 900, 3600, 21600, 43200, 86400 };

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

static int load_webhooks(struct ld *d, struct config *c, int env)
{
	static const char *const keys[] = { "retry", "timeout_s", "retry_jitter",
		"require_https", "allow_private", "response_bytes", "proxy", NULL };
	lua_State *L = d->L;
	int r = cfg_sub_table(d, env, "webhooks", "webhooks");
	if (r <= 0)
		return r;
	int t = lua_gettop(L);
	long long rb = (long long)c->webhook_response_bytes;
	if (cfg_check_keys(d, t, "webhooks", keys) < 0 ||
	    cfg_get_num(d, t, "timeout_s", "webhooks.timeout_s", &c->webhook_timeout_s, 0, 3600, 1) < 0 ||
	    cfg_get_num(d, t, "retry_jitter", "webhooks.retry_jitter", &c->retry_jitter, 0, 1, 0) < 0 ||
	    cfg_get_bool(d, t, "require_https", "webhooks.require_https", &c->require_https) < 0 ||
	    cfg_get_bool(d, t, "allow_private", "webhooks.allow_private", &c->allow_private) < 0 ||
	    cfg_get_int(d, t, "response_bytes", "webhooks.response_bytes", &rb, 1, 1LL << 30) < 0 ||
	    cfg_get_str(d, t, "proxy", "webhooks.proxy", &c->webhook_proxy, 1) < 0)
		return -1;
	c->webhook_response_bytes = (size_t)rb;
	if (c->webhook_proxy && !cfg_valid_proxy_url(c->webhook_proxy))
		return cfg_lerr(d, "webhooks.proxy: must be a proxy URL (http, https, socks4, socks4a, socks5 or socks5h)");

	int rt = cfg_rawfield(L, t, "retry");
	if (rt != LUA_TNIL) {
		if (rt != LUA_TTABLE)
			return cfg_lerr(d, "webhooks.retry: must be a list of seconds");
		size_t n = (size_t)lua_rawlen(L, -1);
		size_t count = 0;
		lua_pushnil(L);
		while (lua_next(L, -2)) {
			lua_pop(L, 1);
			count++;
		}
		if (n == 0 || count != n)
			return cfg_lerr(d, "webhooks.retry: must be a non-empty list of seconds");
		if (n > 100)
			return cfg_lerr(d, "webhooks.retry: at most 100 entries");
		double *v = calloc(n, sizeof *v);
		if (!v)
			return cfg_lerr(d, "out of memory");
		for (size_t i = 0; i < n; i++) {
			lua_rawgeti(L, -1, (lua_Integer)i + 1);
			double x = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : -1;
			lua_pop(L, 1);
			if (!isfinite(x) || x <= 0 || x > 30 * 86400.0) {
				free(v);
				return cfg_lerr(d, "webhooks.retry[%zu]: must be a number of seconds above 0 and at most 2592000", i + 1);
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
	int r = cfg_sub_table(d, env, "jobs", "jobs");
	if (r <= 0)
		return r;
	int t = lua_gettop(d->L);
	const double day = 86400.0;
	if (cfg_check_keys(d, t, "jobs", keys) < 0 ||
	    cfg_get_num(d, t, "submit_window_s", "jobs.submit_window_s", &c->submit_window_s, 0, 30 * day, 1) < 0 ||
	    cfg_get_num(d, t, "job_deadline_s", "jobs.job_deadline_s", &c->job_deadline_s, 0, 30 * day, 1) < 0 ||
	    cfg_get_num(d, t, "poll_after_s", "jobs.poll_after_s", &c->poll_after_s, 0, 30 * day, 1) < 0 ||
	    cfg_get_num(d, t, "poll_interval_s", "jobs.poll_interval_s", &c->poll_interval_s, 0, 30 * day, 1) < 0 ||
	    cfg_get_num(d, t, "poll_max_s", "jobs.poll_max_s", &c->poll_max_s, 0, 30 * day, 1) < 0 ||
	    cfg_get_num(d, t, "sync_wait_s", "jobs.sync_wait_s", &c->sync_wait_s, 0, 3600, 1) < 0 ||
	    cfg_get_num(d, t, "lease_s", "jobs.lease_s", &c->lease_s, 3, 3600, 0) < 0 ||
	    cfg_get_num(d, t, "due_check_s", "jobs.due_check_s", &c->due_check_s, 0.01, 3600, 0) < 0)
		return -1;
	long long fa = c->failover_after;
	if (cfg_get_int(d, t, "failover_after", "jobs.failover_after", &fa, 1, 1000) < 0)
		return -1;
	c->failover_after = (int)fa;
	if (c->poll_max_s < c->poll_interval_s)
		return cfg_lerr(d, "jobs.poll_max_s: must be at least jobs.poll_interval_s");
	lua_settop(d->L, t - 1);
	return 0;
}

/* log = { level = "info", format = "text" }; log.level overrides log_level. */
static int load_log(struct ld *d, struct config *c, int env)
{
	static const char *const keys[] = { "level", "format", NULL };
	int r = cfg_sub_table(d, env, "log", "log");
	if (r <= 0)
		return r;
	int t = lua_gettop(d->L);
	if (cfg_check_keys(d, t, "log", keys) < 0 ||
	    cfg_get_str(d, t, "level", "log.level", &c->log_level, 1) < 0 ||
	    cfg_get_str(d, t, "format", "log.format", &c->log_format, 1) < 0)
		return -1;
	lua_settop(d->L, t - 1);
	return 0;
}

static int load_limits(struct ld *d, struct config *c, int env)
{
	static const char *const keys[] = { "body_bytes", "lua_instructions",
		"lua_memory_mb", "max_connections", "connection_timeout_s",
		"max_inflight", "per_host", "store_max_mb", "buffered_bytes", NULL };
	int r = cfg_sub_table(d, env, "limits", "limits");
	if (r <= 0)
		return r;
	int t = lua_gettop(d->L);
	long long bb = (long long)c->body_bytes, li = c->lua_instructions;
	long long mm = (long long)c->lua_memory_mb, mc = c->max_connections;
	if (cfg_check_keys(d, t, "limits", keys) < 0 ||
	    cfg_get_int(d, t, "body_bytes", "limits.body_bytes", &bb, 1, 1LL << 30) < 0 ||
	    cfg_get_int(d, t, "lua_instructions", "limits.lua_instructions", &li, 1000, 1000000000000LL) < 0 ||
	    cfg_get_int(d, t, "lua_memory_mb", "limits.lua_memory_mb", &mm, 1, 4096) < 0 ||
	    cfg_get_int(d, t, "max_connections", "limits.max_connections", &mc, 1, 1000000) < 0 ||
	    cfg_get_num(d, t, "connection_timeout_s", "limits.connection_timeout_s", &c->connection_timeout_s, 0, 3600, 1) < 0)
		return -1;
	c->body_bytes = (size_t)bb;
	c->lua_instructions = (long)li;
	c->lua_memory_mb = (size_t)mm;
	c->max_connections = (int)mc;
	long long mi = c->max_inflight, ph = c->per_host, sm = c->store_max_mb;
	if (cfg_get_int(d, t, "max_inflight", "limits.max_inflight", &mi, 1, 1000000) < 0 ||
	    cfg_get_int(d, t, "per_host", "limits.per_host", &ph, 1, 1000000) < 0 ||
	    cfg_get_int(d, t, "store_max_mb", "limits.store_max_mb", &sm, 0, 1LL << 30) < 0)
		return -1;
	c->max_inflight = (int)mi;
	c->per_host = (int)ph;
	c->store_max_mb = (long)sm;
	/* Unset, it is at least one body, so a large body_bytes alone still works. */
	long long bu = (long long)c->buffered_bytes;
	if (bu < bb)
		bu = bb;
	if (cfg_get_int(d, t, "buffered_bytes", "limits.buffered_bytes", &bu, 1, 1LL << 40) < 0)
		return -1;
	if (bu < bb)
		return cfg_lerr(d, "limits.buffered_bytes: must be at least limits.body_bytes (%lld)", bb);
	c->buffered_bytes = (size_t)bu;
	lua_settop(d->L, t - 1);
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
	c->per_host = FETCH_PER_HOST;
	c->store_max_mb = 0;
	c->body_bytes = 1048576;
	c->buffered_bytes = 64 * 1048576;
	c->lua_instructions = 10000000;
	c->lua_memory_mb = 32;
	c->max_connections = 10000;
	c->connection_timeout_s = 30;
	return 0;
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
		cfg_redact_lua_error(msg, sizeof msg, path);
		d->file = NULL; /* Lua's message already names the file */
		cfg_lerr(d, "%s", msg);
		d->file = path;
		return -1;
	}
	lua_settop(L, env);

	if (cfg_check_keys(d, env, "", top_keys) < 0)
		return -1;

	if (cfg_get_str(d, env, "listen", "listen", &c->listen, 1) < 0)
		return -1;
	if (!cfg_valid_listen(c->listen))
		return cfg_lerr(d, "listen: must be host:port or [ipv6]:port, got \"%.100s\"", c->listen);

	if (cfg_get_str(d, env, "public_url", "public_url", &c->public_url, 1) < 0)
		return -1;
	if (c->public_url) {
		if (!cfg_valid_http_url(c->public_url, 0))
			return cfg_lerr(d, "public_url: must be an http:// or https:// URL without query");
		size_t n = strlen(c->public_url);
		while (n > 0 && c->public_url[n - 1] == '/')
			c->public_url[--n] = '\0';
	}

	/* store = "spec", or store = { url = "spec", retention_days = N }. */
	if (cfg_rawfield(d->L, env, "store") == LUA_TTABLE) {
		static const char *const skeys[] = { "url", "retention_days", NULL };
		int st = lua_gettop(d->L);
		if (cfg_check_keys(d, st, "store", skeys) < 0 ||
		    cfg_get_str(d, st, "url", "store.url", &c->store, 1) < 0 ||
		    cfg_get_num(d, st, "retention_days", "store.retention_days", &c->retention_days,
			    0, 36500, 0) < 0)
			return -1;
		lua_settop(d->L, st - 1);
	} else {
		lua_pop(d->L, 1);
		if (cfg_get_str(d, env, "store", "store", &c->store, 1) < 0)
			return -1;
	}
	if (!((strncmp(c->store, "sqlite:", 7) == 0 && c->store[7]) ||
	      strncmp(c->store, "postgresql://", 13) == 0 ||
	      strncmp(c->store, "postgres://", 11) == 0))
		return cfg_lerr(d, "store: must be \"sqlite:PATH\" or \"postgresql://...\"");

	if (cfg_get_str(d, env, "scripts", "scripts", &c->scripts, 1) < 0)
		return -1;

	/* workers = N (default 1), or "auto": one loop on SQLite (one writer
	 * anyway), CONFIG_PG_WORKERS on PostgreSQL, each with its own
	 * connection, so a loop waiting on a round trip leaves others serving. */
	long long w = c->workers, autow = 0;
	if (cfg_rawfield(d->L, env, "workers") == LUA_TSTRING &&
	    strcmp(lua_tostring(d->L, -1), "auto") == 0) {
		lua_pop(d->L, 1);
		autow = 1;
	} else {
		lua_pop(d->L, 1);
		if (cfg_get_int(d, env, "workers", "workers", &w, 1, 64) < 0)
			return cfg_lerr(d, "workers: must be an integer from 1 to 64, or \"auto\"");
	}
	c->workers = !autow ? (int)w : strncmp(c->store, "sqlite:", 7) == 0 ? 1 : CONFIG_PG_WORKERS;

	if (cfg_get_str(d, env, "server_secret", "server_secret", &c->server_secret, 1) < 0 ||
	    cfg_get_str(d, env, "server_secret_previous", "server_secret_previous",
		    &c->server_secret_previous, 1) < 0 ||
	    cfg_get_bool(d, env, "store_insecure_permissions", "store_insecure_permissions",
		     &c->store_insecure_permissions) < 0)
		return -1;

	if (cfg_get_str(d, env, "admin_key", "admin_key", &c->admin_key, 1) < 0)
		return -1;
	if (c->admin_key) {
		if (strlen(c->admin_key) < 16)
			return cfg_lerr(d, "admin_key: must be at least 16 bytes");
		if (!EVP_Digest(c->admin_key, strlen(c->admin_key), c->admin_key_sha256, NULL,
				EVP_sha256(), NULL))
			return cfg_lerr(d, "admin_key: cannot hash");
	}

	if (cfg_get_str(d, env, "metrics_token", "metrics_token", &c->metrics_token, 1) < 0)
		return -1;
	if (c->metrics_token) {
		if (strlen(c->metrics_token) < 16)
			return cfg_lerr(d, "metrics_token: must be at least 16 bytes");
		if (!EVP_Digest(c->metrics_token, strlen(c->metrics_token), c->metrics_token_sha256,
				NULL, EVP_sha256(), NULL))
			return cfg_lerr(d, "metrics_token: cannot hash");
	}
	if (cfg_get_str(d, env, "metrics_listen", "metrics_listen", &c->metrics_listen, 1) < 0)
		return -1;
	if (c->metrics_listen && !cfg_valid_listen(c->metrics_listen))
		return cfg_lerr(d, "metrics_listen: must be host:port or [ipv6]:port, got \"%.100s\"",
			    c->metrics_listen);

	if (cfg_get_str(d, env, "durability", "durability", &c->durability, 1) < 0)
		return -1;
	if (strcmp(c->durability, "normal") != 0 && strcmp(c->durability, "fsync") != 0)
		return cfg_lerr(d, "durability: must be \"normal\" or \"fsync\"");

	if (cfg_get_str(d, env, "log_level", "log_level", &c->log_level, 1) < 0 || load_log(d, c, env) < 0)
		return -1;
	if (strcmp(c->log_level, "debug") && strcmp(c->log_level, "info") &&
	    strcmp(c->log_level, "warn") && strcmp(c->log_level, "error"))
		return cfg_lerr(d, "log_level: must be \"debug\", \"info\", \"warn\" or \"error\" (so must log.level)");
	if (strcmp(c->log_format, "text") && strcmp(c->log_format, "json"))
		return cfg_lerr(d, "log.format: must be \"text\" or \"json\"");

	if (cfg_load_providers(d, c, env) < 0 || cfg_load_customers(d, c, env) < 0 ||
	    cfg_load_models(d, c, env) < 0 || load_webhooks(d, c, env) < 0 ||
	    load_jobs(d, c, env) < 0 || load_limits(d, c, env) < 0)
		return -1;
	return 0;
}

struct config *config_load(const char *path, char *err, size_t errlen)
{
	struct ld d = { NULL, path, err, errlen };
	struct config *c = calloc(1, sizeof *c);

	if (err && errlen)
		err[0] = '\0';
	if (!c || set_defaults(c) < 0) {
		cfg_lerr(&d, "out of memory");
		goto fail;
	}
	if (path) {
		if (!(c->path = strdup(path))) {
			cfg_lerr(&d, "out of memory");
			goto fail;
		}
		d.L = luaL_newstate();
		if (!d.L) {
			cfg_lerr(&d, "out of memory");
			goto fail;
		}
		if (load_file(&d, c, path) < 0)
			goto fail;
		lua_close(d.L);
		d.L = NULL;
	}
	if (!c->public_url && !(c->public_url = public_url_from_listen(c->listen))) {
		cfg_lerr(&d, "out of memory");
		goto fail;
	}
	if (cfg_load_secrets_env(&d, c) < 0 || cfg_build_scrub(&d, c) < 0)
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

/* SHA-256 fetched once: EVP_sha256() in EVP_Digest fetches the provider's
 * implementation again on every call (most of the cost of hashing a key). */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
	sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

/* The SHA-256 of key into h: 1, or 0 on failure. */
static int key_sha256(const char *key, unsigned char h[32])
{
	pthread_once(&sha256_once, sha256_fetch);
	return EVP_Digest(key, strlen(key), h, NULL, sha256_md ? sha256_md : EVP_sha256(), NULL);
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
	if (!key_sha256(key, h))
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
	if (!key_sha256(key, h))
		return 0;
	return CRYPTO_memcmp(h, c->admin_key_sha256, sizeof h) == 0;
}

int config_is_metrics_token(const struct config *c, const char *key)
{
	unsigned char h[32];

	if (!c || !c->metrics_token || !key || !*key)
		return 0;
	if (!key_sha256(key, h))
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

