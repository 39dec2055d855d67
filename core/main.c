/*
 * main.c: the genrelay command line.
 *
 *   genrelay serve [--config FILE] [--role api|worker|all]
 *   genrelay listen [--port N] [--secret whsec_...] [--forward URL] ...
 *   genrelay store migrate --from SPEC --to SPEC
 *   genrelay check [--config FILE]
 *   genrelay scripts check [--config FILE] [FILE...]
 *   genrelay scripts test FILE --event JSON [--fn NAME] [--config FILE]
 *   genrelay jobs list|show|cancel ...      (cli_admin.h)
 *   genrelay deliveries list|retry ...
 *   genrelay customers add|list|rotate-key|remove ...   (cli_customers.h)
 *   genrelay reload [--config FILE] [--pid PID]
 *   genrelay version
 */
#include "cli_admin.h"
#include "cli_customers.h"
#include "cli_reload.h"
#include "customers.h"
#include "cli_scripts.h"
#include "cli_listen.h"
#include "checkpointer.h"
#include "confgen.h"
#include "config.h"
#include "engine.h"
#include "log.h"
#include "metrics.h"
#include "ratelimit.h"
#include "retention.h"
#include "script.h"
#include "scrub.h"
#include "sign.h"
#include "store.h"
#include "store_migrate.h"
#include "worker.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define VERSION "0.1.0"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: genrelay serve [--config FILE] [--role api|worker|all]\n"
		"       genrelay listen [--port N] [--secret whsec_...] [--forward URL] (--help for more)\n"
		"       genrelay store migrate --from sqlite:FILE --to postgresql://...\n"
		"       genrelay check [--config FILE]\n"
		"       genrelay scripts check [--config FILE] [FILE...]\n"
		"       genrelay scripts test FILE --event JSON [--fn NAME] [--config FILE]\n"
		"       genrelay jobs list|show|cancel ...        (genrelay jobs --help)\n"
		"       genrelay deliveries list|retry ...        (genrelay deliveries --help)\n"
		"       genrelay customers add|list|rotate-key|remove ... (genrelay customers --help)\n"
		"       genrelay reload [--config FILE] [--pid PID]\n"
		"       genrelay version\n");
}

/* Parses "host:port" or "[v6]:port" and binds a listening socket with
 * SO_REUSEPORT. Returns the fd or -1 with err. */
static int listen_on(const char *spec, int probe, char *err, size_t errlen)
{
	char host[256];
	const char *port;
	if (spec[0] == '[') {
		const char *end = strchr(spec, ']');
		if (!end || end[1] != ':' || (size_t)(end - spec - 1) >= sizeof host)
			goto bad;
		memcpy(host, spec + 1, (size_t)(end - spec - 1));
		host[end - spec - 1] = '\0';
		port = end + 2;
	} else {
		const char *c = strrchr(spec, ':');
		if (!c || (size_t)(c - spec) >= sizeof host)
			goto bad;
		memcpy(host, spec, (size_t)(c - spec));
		host[c - spec] = '\0';
		port = c + 1;
	}
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV }, *ai;
	int rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &ai);
	if (rc != 0) {
		snprintf(err, errlen, "listen %s: %s", spec, gai_strerror(rc));
		return -1;
	}
	int one = 1;
	if (probe) {
		/* Without SO_REUSEPORT a bind fails when anyone listens there
		 * already, so a second genrelay cannot silently share the port. */
		int pfd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (pfd >= 0 && (setsockopt(pfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
				 bind(pfd, ai->ai_addr, ai->ai_addrlen) < 0)) {
			snprintf(err, errlen, "listen %s: %s", spec, strerror(errno));
			close(pfd);
			freeaddrinfo(ai);
			return -1;
		}
		if (pfd >= 0)
			close(pfd);
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 4096) < 0) {
		snprintf(err, errlen, "listen %s: %s", spec, strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return -1;
	}
	freeaddrinfo(ai);
	return fd;
bad:
	snprintf(err, errlen, "listen: '%s' is not host:port or [v6]:port", spec);
	return -1;
}

static const char *arg_config(int argc, char **argv, int *first_free)
{
	const char *path = NULL;
	int i = 0;
	for (; i < argc; i++) {
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
			path = argv[++i];
		else
			break;
	}
	if (first_free)
		*first_free = i;
	return path;
}

/*
 * Leases held by an earlier process of this host that is gone (killed) are
 * released at once rather than waiting for them to expire.
 */
static void release_dead_leases(struct store *s, const char *host)
{
	json_t *owners = store_work_owners(s);
	size_t i;
	json_t *o;
	json_array_foreach(owners, i, o) {
		const char *name = json_string_value(o);
		char h[256];
		int pid = 0;
		const char *c1 = strchr(name, ':');
		if (!c1 || (size_t)(c1 - name) >= sizeof h)
			continue;
		memcpy(h, name, (size_t)(c1 - name));
		h[c1 - name] = '\0';
		pid = atoi(c1 + 1);
		if (strcmp(h, host) != 0 || pid <= 0 || pid == getpid())
			continue;
		if (kill(pid, 0) == 0 || errno != ESRCH)
			continue;
		char prefix[300];
		snprintf(prefix, sizeof prefix, "%s:%d:", h, pid);
		if (store_work_release_prefix(s, prefix) == 0)
			log_info("released the leases of dead process %d", pid);
	}
	json_decref(owners);
}

/*
 * Warnings about configured providers (genrelay check prints them, serve
 * logs them; neither fails): callbacks the provider would refuse at
 * public_url (its jobs are refused at submit), alias targets whose provider
 * is not configured. Returns the number of warnings.
 */
static int warn_providers(const struct config *cfg, struct script_host *h, int to_log)
{
	int n = 0;
	char why[768];
	const char *name;
	json_t *v;
	json_object_foreach(cfg->providers, name, v) {
		struct script_provider_info info;
		if (script_provider_info(h, name, &info) < 0)
			continue;
		if (engine_callbacks_refused(cfg->public_url, name, &info, why, sizeof why)) {
			if (to_log)
				log_warn("providers.%s: its jobs will be refused (PROVIDER_UNAVAILABLE): %s", name, why);
			else
				fprintf(stderr, "genrelay: warning: providers.%s: its jobs will be refused "
					"(PROVIDER_UNAVAILABLE): %s\n", name, why);
			n++;
		}
	}
	for (size_t i = 0; i < cfg->naliases; i++) {
		for (size_t k = 0; k < cfg->aliases[i].ntargets; k++) {
			const char *t = cfg->aliases[i].targets[k];
			const char *c = strchr(t, ':');
			char prov[65];
			if (!c || (size_t)(c - t) >= sizeof prov)
				continue;
			memcpy(prov, t, (size_t)(c - t));
			prov[c - t] = '\0';
			if (script_exists(h, SCRIPT_PROVIDER, prov) && !config_provider(cfg, prov)) {
				if (to_log)
					log_warn("models.%s: target '%s': provider %s is not configured", cfg->aliases[i].name, t, prov);
				else
					fprintf(stderr, "genrelay: warning: models.%s: target '%s': provider %s is not configured\n",
						cfg->aliases[i].name, t, prov);
				n++;
			}
		}
	}
	return n;
}

/* Short secrets are scrubbed too, so text equal to one is redacted: say so. */
static void warn_short_secrets(const struct config *cfg)
{
	size_t n = scrub_short_count(cfg->scrub);
	if (n)
		log_warn("%zu configured secret(s) shorter than %d bytes: they are scrubbed "
			 "from every outgoing text, so ordinary text equal to one is redacted too; "
			 "use longer secrets", n, SCRUB_SHORT);
}

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * The callback-token secrets. current: the config's (file or environment),
 * else the one kept in the store, else a new one kept in the store. When the
 * config's replaces a stored one, the stored one stays valid as a previous
 * secret (prev, up to *until, wall ms) for jobs.job_deadline_s after the
 * first start that replaced it, then is deleted from the store. prev is ""
 * when there is none. Every secret found is added to cfg->scrub. 0 or -1
 * (printed).
 */
static int server_secrets(struct config *cfg, struct store *s, char current[128],
			  char prev[128], int64_t *until)
{
	char stored[128] = "", at[32] = "";
	int64_t now = wall_ms();
	prev[0] = '\0';
	*until = 0;
	if (store_meta_get(s, "server_secret", stored, sizeof stored) != 0)
		stored[0] = '\0';
	if (store_meta_get(s, "server_secret_retired_at", at, sizeof at) != 0)
		at[0] = '\0';
	if (cfg->server_secret) {
		snprintf(current, 128, "%s", cfg->server_secret);
		if (stored[0] && strcmp(stored, current) != 0) {
			int64_t retired = at[0] ? strtoll(at, NULL, 10) : now;
			if (!at[0]) {
				snprintf(at, sizeof at, "%lld", (long long)now);
				if (store_meta_set(s, "server_secret_retired_at", at) < 0)
					goto fail;
			}
			*until = retired + (int64_t)(cfg->job_deadline_s * 1000);
			if (now > *until) {
				/* No job of its time can still be running. */
				if (store_meta_set(s, "server_secret", "") < 0 ||
				    store_meta_set(s, "server_secret_retired_at", "") < 0)
					goto fail;
				log_info("server secret: the one kept in the store is past "
					 "jobs.job_deadline_s since it was replaced; deleted");
				*until = 0;
			} else {
				snprintf(prev, 128, "%s", stored);
				log_info("server secret from the configuration; the store's is "
					 "still accepted for callbacks for %.0f s",
					 (double)(*until - now) / 1000.0);
			}
		}
	} else if (stored[0]) {
		snprintf(current, 128, "%s", stored);
		if (at[0] && store_meta_set(s, "server_secret_retired_at", "") < 0)
			goto fail;
	} else {
		unsigned char raw[32];
		sign_random(raw, sizeof raw);
		sign_hex_encode(raw, sizeof raw, current, 128);
		if (store_meta_set(s, "server_secret", current) < 0 ||
		    (at[0] && store_meta_set(s, "server_secret_retired_at", "") < 0))
			goto fail;
	}
	if (scrub_add(cfg->scrub, current) < 0 || scrub_add(cfg->scrub, stored) < 0) {
		fprintf(stderr, "genrelay: out of memory\n");
		return -1;
	}
	return 0;
fail:
	fprintf(stderr, "genrelay: store: %s\n", store_errmsg(s));
	return -1;
}

/*
 * The webhook secrets of the customers kept in the store join cfg->scrub
 * (it is read-only once the workers run, so customers added later are
 * scrubbed from the next reload or restart on; their secret is only ever
 * used as an HMAC key, never put in outgoing text). 0 or -1 (printed).
 */
static int scrub_stored_secrets(struct config *cfg, struct store *s)
{
	json_t *l = store_customer_list(s);
	if (!l) {
		fprintf(stderr, "genrelay: store: %s\n", store_errmsg(s));
		return -1;
	}
	size_t i;
	json_t *o;
	int rc = 0;
	json_array_foreach(l, i, o) {
		struct store_customer c;
		if (!json_is_true(json_object_get(o, "has_webhook_secret")) ||
		    store_customer_get(s, NULL, json_string_value(json_object_get(o, "name")), &c) != 0)
			continue;
		if (scrub_add(cfg->scrub, c.webhook_secret) < 0)
			rc = -1;
		memset(c.webhook_secret, 0, sizeof c.webhook_secret);
	}
	json_decref(l);
	if (rc < 0)
		fprintf(stderr, "genrelay: out of memory\n");
	return rc;
}

/*
 * SQLite allows one serving instance per store file: an exclusive lock on
 * PATH.lock, held until the process ends (the kernel drops it when the
 * process dies, so a restart after a crash finds it free). 0, or -1 with err.
 */
static int lock_sqlite_store(const char *spec, char *err, size_t errlen)
{
	if (strncmp(spec, "sqlite:", 7) != 0)
		return 0;
	char path[PATH_MAX];
	if (snprintf(path, sizeof path, "%s.lock", spec + 7) >= (int)sizeof path) {
		snprintf(err, errlen, "store: path too long");
		return -1;
	}
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "store: cannot open %.900s: %s", path, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		char pid[32] = "";
		ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
		pid[n > 0 ? n : 0] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		snprintf(err, errlen, "store %s is in use by another genrelay%s%s%s: SQLite allows one "
			 "instance per store file (several instances need a PostgreSQL store)",
			 spec, pid[0] ? " (pid " : "", pid, pid[0] ? ")" : "");
		close(fd);
		return -1;
	}
	char pid[32];
	int len = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)len, 0) < 0)
		log_warn("store: cannot write %s: %s", path, strerror(errno));
	return 0; /* fd stays open (and locked) until exit */
}

/* The configurations of a serving process (confgen.h: generations, and
 * when an old one is freed). */
struct reload_ctx {
	struct config_gens *gens;   /* owned: the first config and every reload */
	struct worker *ws;
	int n;
	const char *secret;         /* the callback-token secrets, for scrubbing */
	const char *stored_prev;
};

static double wall_s(void)
{
	return (double)wall_ms() / 1000.0;
}

/* Frees the generations no one uses any more (confgen.h has the rule). */
static void collect_configs(struct reload_ctx *rc)
{
	metrics_config_generations((long)confgen_collect(rc->gens));
}

/*
 * SIGHUP: reads the config file again; a config that does not load or whose
 * customers name a hook with no script changes nothing (the reason is
 * logged). Otherwise the workers switch to it at their next loop
 * iteration: customers, keys, rates, providers, models, webhooks, jobs and
 * most limits at once; the restart-only settings keep their values and are
 * named in the log when the file changed them. 0 applied, -1 refused.
 */
static int reload_config(struct reload_ctx *rc)
{
	char err[1024], changed[512];
	const struct config *cur = confgen_newest(rc->gens)->cfg;
	struct config *next = config_reload(cur, changed, sizeof changed, err, sizeof err);
	if (!next) {
		log_warn("reload: %s; the configuration in use is unchanged", err);
		return -1;
	}
	struct script_host *sh = script_host_new(next);
	int ok = sh != NULL;
	if (sh) {
		script_host_load(sh, err, sizeof err); /* the workers report script failures */
		for (size_t i = 0; ok && i < next->ncustomers; i++) {
			const char *hook = next->customers[i].hook ? next->customers[i].hook : "default";
			if (!script_exists(sh, SCRIPT_HOOK, hook)) {
				log_warn("reload: customers.%s.hook: no script hooks/%s.lua; the "
					 "configuration in use is unchanged", next->customers[i].name, hook);
				ok = 0;
			}
		}
		if (ok)
			warn_providers(next, sh, 1);
	}
	script_host_free(sh);
	struct store *s = ok ? store_open(next->store, strcmp(next->durability, "fsync") == 0,
					  err, sizeof err) : NULL;
	if (ok && !s)
		log_warn("reload: store: %s; the configuration in use is unchanged", err);
	ok = ok && s && scrub_add(next->scrub, rc->secret) == 0 &&
	     scrub_add(next->scrub, rc->stored_prev) == 0 && scrub_stored_secrets(next, s) == 0;
	store_close(s);
	struct ratelimit *rates = ok ? ratelimit_new(next) : NULL;
	struct config_gen *g = rates ? confgen_add(rc->gens, next, rates) : NULL;
	if (!g) {
		if (ok)
			log_warn("reload: out of memory; the configuration in use is unchanged");
		ratelimit_free(rates);
		config_free(next);
		return -1;
	}
	log_set_level(log_level_parse(next->log_level));
	log_set_scrub(next->scrub);
	warn_short_secrets(next);
	for (int i = 0; i < rc->n; i++)
		worker_set_config(&rc->ws[i], g);
	log_info("reload: configuration applied (%zu customer(s), %zu provider(s), %zu model alias(es))",
		 next->ncustomers, json_object_size(next->providers), next->naliases);
	if (changed[0])
		log_warn("reload: %s changed in the file: these need a restart and keep their "
			 "values until then", changed);
	return 0;
}

static int serve(const char *path, int role)
{
	char err[1024];
	struct config *cfg = config_load(path, err, sizeof err);
	if (!cfg) {
		fprintf(stderr, "genrelay: %s\n", err);
		return 2;
	}
	cfg->role = role;
	if (lock_sqlite_store(cfg->store, err, sizeof err) < 0) {
		fprintf(stderr, "genrelay: %s\n", err);
		config_free(cfg);
		return 2;
	}
	log_set_level(log_level_parse(cfg->log_level));
	log_set_format(log_format_parse(cfg->log_format));
	log_set_scrub(cfg->scrub);
	warn_short_secrets(cfg);
	signal(SIGPIPE, SIG_IGN);
	/* Request bodies (up to limits.body_bytes each) are the big buffers: a
	 * fixed mmap threshold (glibc would raise it after the first big free)
	 * keeps them out of the heaps, so their memory goes back to the kernel
	 * when a request ends instead of staying in a worker's arena. */
	mallopt(M_MMAP_THRESHOLD, 128 * 1024);
	/* Many idle or slow connections must not run out of descriptors first. */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	struct stat sst;
	if (stat(cfg->scripts, &sst) < 0 || !S_ISDIR(sst.st_mode)) {
		fprintf(stderr, "genrelay: scripts: '%s' is not a directory\n", cfg->scripts);
		config_free(cfg);
		return 2;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	{
		struct script_host *sh = script_host_new(cfg);
		char lerr[512];
		if (sh) {
			script_host_load(sh, lerr, sizeof lerr); /* the workers report failures */
			warn_providers(cfg, sh, 1);
		}
		script_host_free(sh);
	}

	if (store_check_permissions(cfg->store, cfg->store_insecure_permissions, err, sizeof err) < 0) {
		fprintf(stderr, "genrelay: %s\n", err);
		config_free(cfg);
		return 2;
	}
	struct store *s = store_open(cfg->store, strcmp(cfg->durability, "fsync") == 0, err, sizeof err);
	if (!s) {
		fprintf(stderr, "genrelay: %s\n", err);
		config_free(cfg);
		return 2;
	}
	char secret[128], stored_prev[128];
	int64_t stored_until = 0;
	if (server_secrets(cfg, s, secret, stored_prev, &stored_until) < 0) {
		store_close(s);
		config_free(cfg);
		return 2;
	}
	char host[64];
	gethostname(host, sizeof host);
	host[sizeof host - 1] = '\0';
	for (char *p = host; *p; p++)
		if (*p == ':')
			*p = '_';
	release_dead_leases(s, host);
	if (scrub_stored_secrets(cfg, s) < 0) {
		store_close(s);
		config_free(cfg);
		return 2;
	}
	store_close(s);

	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	struct checkpointer *ckpt = checkpointer_start(cfg, err, sizeof err);
	if (!ckpt) {
		fprintf(stderr, "genrelay: %s\n", err);
		config_free(cfg);
		return 2;
	}
	struct retention *ret = retention_start(cfg, err, sizeof err);
	if (!ret && err[0]) {
		fprintf(stderr, "genrelay: %s\n", err);
		checkpointer_stop(ckpt);
		config_free(cfg);
		return 2;
	}
	int n = cfg->workers;
	struct worker *ws = calloc((size_t)n, sizeof *ws);
	struct ratelimit *rates = ratelimit_new(cfg);
	struct reload_ctx reload = { .gens = ws && rates ? confgen_new(cfg, rates) : NULL };
	if (!reload.gens) {
		fprintf(stderr, "genrelay: out of memory\n");
		free(ws);
		ratelimit_free(rates);
		retention_stop(ret);
		checkpointer_stop(ckpt);
		config_free(cfg);
		return 2;
	}
	struct config_gen *first = confgen_newest(reload.gens); /* owns cfg and rates now */
	metrics_config_reload(0, 1, wall_s());
	unsigned char rnd[4];
	sign_random(rnd, sizeof rnd);
	int rc = 0, started = 0;
	for (int i = 0; i < n; i++) {
		struct worker *w = &ws[i];
		w->index = i;
		w->cfg = cfg;
		w->gen = first;
		confgen_hold(first);
		w->server_secret = secret;
		w->rates = rates;
		w->metrics_fd = -1;
		/* Callbacks of jobs submitted before a rotation: the configured
		 * previous secret, and a store secret replaced by the config's
		 * until the longest job lifetime after it was replaced. */
		w->server_secret_previous[0] = cfg->server_secret_previous;
		w->server_secret_previous[1] = stored_prev[0] ? stored_prev : NULL;
		w->server_secret_previous_until[1] = stored_until;
		snprintf(w->owner, sizeof w->owner, "%.60s:%d:%d:%02x%02x%02x%02x", host, getpid(), i,
			 rnd[0], rnd[1], rnd[2], rnd[3]);
		w->listen_fd = listen_on(cfg->listen, i == 0, err, sizeof err);
		if (w->listen_fd >= 0 && i == 0 && cfg->metrics_listen) {
			/* Worker 0 serves the open metrics listener on its loop. */
			w->metrics_fd = listen_on(cfg->metrics_listen, 1, err, sizeof err);
			if (w->metrics_fd < 0) {
				close(w->listen_fd);
				w->listen_fd = -1;
			}
		}
		if (w->listen_fd < 0 || worker_start(w, err, sizeof err) < 0) {
			fprintf(stderr, "genrelay: %s\n", err);
			rc = 2;
			break;
		}
		started++;
	}
	if (rc == 0) {
		char where[512];
		store_describe(cfg->store, where, sizeof where);
		log_info("genrelay %s listening on http://%s (%d worker%s, role %s, store %s)", VERSION,
			 cfg->listen, n, n > 1 ? "s" : "", cfg->role == ROLE_API ? "api"
			 : cfg->role == ROLE_WORKER ? "worker" : "all", where);
		if (cfg->metrics_listen)
			log_info("metrics (open) on http://%s/metrics", cfg->metrics_listen);
		reload.ws = ws;
		reload.n = n;
		reload.secret = secret;
		reload.stored_prev = stored_prev;
		int sig = 0;
		for (;;) {
			/* Once a second, old configurations no one uses are freed. */
			struct timespec tick = { .tv_sec = 1 };
			sig = sigtimedwait(&set, NULL, &tick);
			if (sig < 0 && (errno == EAGAIN || errno == EINTR)) {
				collect_configs(&reload);
				continue;
			}
			if (sig != SIGHUP)
				break;
			log_info("SIGHUP: reloading %s", cfg->path ? cfg->path : "the configuration");
			int applied = reload_config(&reload) == 0;
			metrics_config_reload(1, applied, wall_s());
			collect_configs(&reload);
		}
		log_info("%s: draining", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	}
	for (int i = 0; i < started; i++)
		worker_stop(&ws[i]);
	for (int i = 0; i < n; i++)
		if (ws[i].loop || ws[i].store)
			worker_join(&ws[i]);
	free(ws);
	retention_stop(ret);
	checkpointer_stop(ckpt);
	log_set_scrub(NULL);
	confgen_free(reload.gens); /* the first config (cfg) too */
	curl_global_cleanup();
	log_info("stopped");
	return rc;
}

static int check(const char *path)
{
	char err[1024];
	struct config *cfg = config_load(path, err, sizeof err);
	if (!cfg) {
		fprintf(stderr, "genrelay: %s\n", err);
		return 1;
	}
	log_set_scrub(cfg->scrub);
	warn_short_secrets(cfg);
	struct script_host *h = script_host_new(cfg);
	int rc = script_host_load(h, err, sizeof err);
	if (rc < 0)
		fprintf(stderr, "genrelay: %s\n", err);
	for (size_t i = 0; rc == 0 && i < cfg->ncustomers; i++) {
		const char *hook = cfg->customers[i].hook ? cfg->customers[i].hook : "default";
		if (!script_exists(h, SCRIPT_HOOK, hook)) {
			fprintf(stderr, "genrelay: customers.%s.hook: no script hooks/%s.lua\n",
				cfg->customers[i].name, hook);
			rc = -1;
		}
	}
	for (size_t i = 0; rc == 0 && i < cfg->naliases; i++) {
		for (size_t k = 0; k < cfg->aliases[i].ntargets; k++) {
			const char *t = cfg->aliases[i].targets[k];
			char prov[64];
			const char *c = strchr(t, ':');
			size_t len = c ? (size_t)(c - t) : 0;
			if (!c || len >= sizeof prov)
				continue;
			memcpy(prov, t, len);
			prov[len] = '\0';
			if (!script_exists(h, SCRIPT_PROVIDER, prov)) {
				fprintf(stderr, "genrelay: models.%s: no provider script for '%s'\n",
					cfg->aliases[i].name, t);
				rc = -1;
			}
		}
	}
	if (rc == 0)
		warn_providers(cfg, h, 0);
	script_host_free(h);
	log_set_scrub(NULL);
	config_free(cfg);
	if (rc == 0)
		printf("configuration and scripts OK\n");
	return rc == 0 ? 0 : 1;
}

static int scripts_check(int argc, char **argv)
{
	int first = 0;
	const char *path = arg_config(argc, argv, &first);
	char err[1024];
	struct config *cfg = config_load(path, err, sizeof err);
	if (!cfg) {
		fprintf(stderr, "genrelay: %s\n", err);
		return 1;
	}
	int rc = 0;
	if (first == argc) {
		struct script_host *h = script_host_new(cfg);
		if (script_host_load(h, err, sizeof err) < 0) {
			fprintf(stderr, "%s\n", err);
			rc = 1;
		} else {
			printf("all scripts under %s OK\n", cfg->scripts);
		}
		script_host_free(h);
	}
	for (int i = first; i < argc; i++) {
		if (script_check_file(cfg, argv[i], err, sizeof err) < 0) {
			fprintf(stderr, "%s: %s\n", argv[i], err);
			rc = 1;
		} else {
			printf("%s: OK\n", argv[i]);
		}
	}
	config_free(cfg);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "listen") == 0)
		return cli_listen(argc - 2, argv + 2);
	if (strcmp(cmd, "serve") == 0 || strcmp(cmd, "check") == 0) {
		const char *path = NULL, *role = "all";
		for (int i = 2; i < argc; i++) {
			if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
				path = argv[++i];
			} else if (strcmp(cmd, "serve") == 0 && strcmp(argv[i], "--role") == 0 &&
				   i + 1 < argc) {
				role = argv[++i];
			} else {
				usage(stderr);
				return 2;
			}
		}
		int r = strcmp(role, "all") == 0 ? ROLE_ALL : strcmp(role, "api") == 0 ? ROLE_API
			: strcmp(role, "worker") == 0 ? ROLE_WORKER : -1;
		if (r < 0) {
			fprintf(stderr, "genrelay: --role must be api, worker or all (not '%s')\n", role);
			return 2;
		}
		return strcmp(cmd, "serve") == 0 ? serve(path, r) : check(path);
	}
	if (strcmp(cmd, "store") == 0 && argc >= 3 && strcmp(argv[2], "migrate") == 0)
		return store_migrate_main(argc - 3, argv + 3);
	if (strcmp(cmd, "scripts") == 0 && argc >= 3 && strcmp(argv[2], "check") == 0)
		return scripts_check(argc - 3, argv + 3);
	if (strcmp(cmd, "scripts") == 0 && argc >= 3 && strcmp(argv[2], "test") == 0)
		return cli_scripts_test(argc - 3, argv + 3);
	if (strcmp(cmd, "jobs") == 0 || strcmp(cmd, "deliveries") == 0)
		return cli_admin(cmd, argc - 2, argv + 2);
	if (strcmp(cmd, "customers") == 0)
		return cli_customers(argc - 2, argv + 2);
	if (strcmp(cmd, "reload") == 0)
		return cli_reload(argc - 2, argv + 2);
	if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
		printf("genrelay %s\n", VERSION);
		return 0;
	}
	if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0) {
		usage(stdout);
		return 0;
	}
	usage(stderr);
	return 2;
}
