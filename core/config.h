/*
 * config.h: the configuration, read from a trusted Lua file.
 *
 * Every key has a default, so config_load(NULL, ...) gives a working
 * configuration (127.0.0.1:8080, sqlite:genrelay.db, scripts/). The struct is
 * immutable once loaded and shared read-only by all workers.
 */
#ifndef GENRELAY_CONFIG_H
#define GENRELAY_CONFIG_H

#include <jansson.h>
#include <stddef.h>

struct config_customer {
	char *name;
	char *api_key;        /* secret */
	char *webhook_secret; /* secret; "whsec_<base64 of 24+ bytes>" or raw, checked at load */
	char *hook;           /* hook script name, default "default" */
	char *webhook_url;    /* default webhook for jobs that give none, or NULL */
	unsigned char api_key_sha256[32]; /* for the constant-time key lookup */
	double rate_per_s;    /* rate = { per_s, burst }: token refill per second; 0: no limit */
	double rate_burst;    /* bucket size (requests), at least 1 */
	/* budget = { amount, unit, period, warn_at }: budget_amount 0 is none */
	double budget_amount;
	char budget_unit[8];    /* "usd" or "credits" */
	char budget_period[8];  /* "month", "day" or "total" (UTC) */
	double budget_warn_at;  /* fraction for budget.warning, 0: none */
};

struct config_alias {
	char *name;
	char **targets;       /* "provider:model", tried in order */
	size_t ntargets;
	int failover_on_failure; /* also move on after PROVIDER_FAILURE/REJECTED */
};

/* workers = "auto" on PostgreSQL: loops (threads), each with its own
 * connection, so that one waiting on a round trip leaves the others
 * serving. SQLite gets one. */
#define CONFIG_PG_WORKERS 16

/* What a serving instance does (`genrelay serve --role`). */
enum config_role {
	ROLE_ALL = 0, /* answers HTTP and runs due work */
	ROLE_API,     /* answers HTTP (run, jobs, callbacks), never runs due work */
	ROLE_WORKER,  /* runs due work, answers only /healthz and /metrics */
};

struct config {
	char *path;           /* file it came from, or NULL */
	char *listen;         /* "127.0.0.1:8080" or "[::1]:8080" */
	char *public_url;     /* base URL providers call back, no trailing '/' */
	char *store;          /* "sqlite:PATH" or "postgresql://..." (store = { url = ... } too) */
	double retention_days; /* store.retention_days: finished jobs purged after (0: kept) */
	char *scripts;        /* scripts directory */
	int workers;
	/* Callback-token key: the config, else GENRELAY_SERVER_SECRET, else NULL
	 * (generated and kept in the store). */
	char *server_secret;
	/* The key before a rotation, still accepted for callbacks: the config,
	 * else GENRELAY_SERVER_SECRET_PREVIOUS, else NULL. */
	char *server_secret_previous;
	int store_insecure_permissions; /* start on a group/world-readable store */
	char *admin_key;      /* key of admin surfaces (/v1/scripts, /ui, /metrics); NULL: none */
	unsigned char admin_key_sha256[32];
	char *metrics_token;  /* bearer token for /metrics only (secret); NULL: none */
	unsigned char metrics_token_sha256[32];
	char *metrics_listen; /* "host:port": open /metrics and /healthz only; NULL: none */
	char *durability;     /* "normal" (survives a crash) or "fsync" (survives power loss) */
	char *log_level;      /* "debug", "info", "warn", "error" (log.level or log_level) */
	char *log_format;     /* "text" or "json" (log.format) */

	json_t *providers;    /* object: name -> object of settings (secrets inside) */
	/* Every configured secret, for scrub_*() on outgoing text. Built by
	 * config_load; main adds the stored server secret before the workers
	 * start; read-only after that. Owned. */
	struct scrub *scrub;

	struct config_customer *customers;
	size_t ncustomers;
	struct config_alias *aliases;
	size_t naliases;

	/* webhooks = { ... } */
	double *retry;        /* seconds between tries */
	size_t nretry;
	double webhook_timeout_s;
	double retry_jitter;  /* fraction 0..1, default 0.2 */
	int require_https;
	int allow_private;
	size_t webhook_response_bytes; /* cap on a receiver's response body */
	char *webhook_proxy;  /* explicit proxy for deliveries, or NULL: direct (the
			       * environment's http_proxy ... is never used) */

	/* jobs = { ... } */
	double submit_window_s;   /* retry submits this long, then PROVIDER_UNAVAILABLE */
	double job_deadline_s;    /* no result by then: PROVIDER_TIMEOUT */
	double poll_after_s;      /* first poll when a callback is expected */
	double poll_interval_s;   /* later polls start at this, doubling up to poll_max_s */
	double poll_max_s;
	double sync_wait_s;       /* default wait for sync / Prefer: wait */
	int failover_after;       /* retryable submit failures on a target before the next target */
	double lease_s;           /* a claimed row's lease; renewed every lease_s/3 while it runs */
	double due_check_s;       /* longest sleep of the due timer: the safety net under
				   * announcements of new work (PostgreSQL LISTEN/NOTIFY) */
	int role;                 /* enum config_role: set by `serve --role` (not a config key) */

	/* limits = { ... } */
	size_t body_bytes;
	size_t buffered_bytes;    /* request bodies buffered at once, all connections of the process */
	long lua_instructions;
	size_t lua_memory_mb;
	int max_connections;
	double connection_timeout_s;
	int max_inflight;         /* provider steps and deliveries running at once per worker */
	int per_host;             /* of those, in libcurl at once per destination; more wait */
	long store_max_mb;        /* cap on the store file (0: none); past it the API answers 503 */
};

/*
 * Loads path (NULL: defaults only). Returns a new config (caller frees with
 * config_free) or NULL with the first problem in err, naming the key.
 */
struct config *config_load(const char *path, char *err, size_t errlen);
void config_free(struct config *c);

/*
 * A reload (SIGHUP, `genrelay reload`): reads cur->path again. Returns the
 * new config (caller frees) or NULL with the reason in err, cur untouched.
 * Settings a running process cannot change (listen, metrics_listen,
 * workers, store, store.retention_days, durability, scripts, the server
 * secrets, limits.max_connections, limits.connection_timeout_s,
 * limits.max_inflight, limits.buffered_bytes) keep cur's values in the new
 * config; the keys of those that differed in the file are listed in
 * changed ("" when none), for the log.
 */
struct config *config_reload(const struct config *cur, char *changed, size_t changedlen,
			     char *err, size_t errlen);

/* Customer whose api_key equals key (constant time per customer), or NULL. */
const struct config_customer *config_customer_by_key(const struct config *c,
						     const char *key);
/* 1 when key is the configured admin key (constant time), else 0. */
int config_is_admin_key(const struct config *c, const char *key);
/* 1 when key is the configured metrics_token (constant time), else 0. */
int config_is_metrics_token(const struct config *c, const char *key);
const struct config_customer *config_customer_by_name(const struct config *c,
						      const char *name);
const struct config_alias *config_alias(const struct config *c, const char *name);
/* Settings object of a provider (borrowed), or NULL when not configured. */
json_t *config_provider(const struct config *c, const char *name);

#endif
