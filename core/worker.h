/*
 * worker.h: one worker = one thread running a complete event loop: the HTTP
 * server, outbound fetches, the due-work engine and its own script host and
 * store connection. Workers share only the immutable config.
 */
#ifndef GENRELAY_WORKER_H
#define GENRELAY_WORKER_H

#include <jansson.h>
#include <pthread.h>
#include <stdint.h>

#include "confgen.h"
#include "loop.h"
#include "urlguard.h"

struct config;
struct fetcher;
struct store;
struct script_host;
struct server;
struct request;
struct work;
struct ingest_run;
struct waiter;
struct engine;

struct worker {
	int index;
	char owner[128];             /* lease owner: "host:pid:index:rand" */
	const struct config *cfg;    /* gen->cfg */
	struct config_gen *gen;      /* the generation it runs, held (confgen.h); NULL: none */
	const char *server_secret;   /* borrowed from the process */
	/* Also accepted for callbacks (NULL: none); [i] only until
	 * server_secret_previous_until[i] (wall ms) when that is not 0. */
	const char *server_secret_previous[2];
	int64_t server_secret_previous_until[2];
	struct urlguard_policy guard;
	int listen_fd;               /* shared SO_REUSEPORT socket of this worker */
	int metrics_fd;              /* metrics_listen socket (worker 0 only), else -1 */
	struct ratelimit *rates;     /* customers' token buckets; shared, owned by main */
	struct customers *customers; /* stored customers' cache (customers.h), owned */

	struct loop *loop;
	struct fetcher *fetch;
	struct store *store;
	struct script_host *scripts;
	struct server *server;
	struct server *metrics_server; /* open /metrics listener, or NULL */

	/* engine state */
	struct loop_timer due_timer;   /* claims due work from the store */
	struct loop_timer tick_timer;  /* 1 s housekeeping: waiters, jwks, reload */
	int64_t next_due;              /* earliest due time this worker knows of */
	struct ingest_run *batch;      /* runs waiting for the group commit (ingest.c) */
	struct ingest_run **batch_tail;
	struct waiter *waiters;        /* sync runs and long-polls (waiters.c) */
	void *front_streams;           /* front.c: status streams (server-sent events) */
	int inotify_fd;
	struct loop_io inotify_io;
	int64_t reload_at;             /* debounce: refresh scripts at this time */
	int stopping;
	long inflight_steps;           /* provider steps and deliveries running */
	struct engine *engine;         /* engine.c's own state: steps in flight, work
					* waiting for the commit, caches */
	/*
	 * Notifications that go up a layer. The worker sets them at start; the
	 * lower layers call them and never include the higher ones' headers.
	 * job_ended: a job reached a terminal state and its transaction is
	 * committed (wakes long-poll waiters and front streams).
	 */
	struct {
		void (*job_ended)(struct worker *w, const char *job_id);
	} hooks;

	pthread_t thread;
	int started;
};

/* Hands g (a config generation, confgen.h: owned by main) to the worker
 * (thread-safe): it switches to it at the top of its next loop iteration
 * (w->cfg, w->rates, the URL guard policy, the store size cap, its script
 * host), never in the middle of a callback, holding g before it drops the
 * hold on the one it ran. */
void worker_set_config(struct worker *w, struct config_gen *g);

/* Commits the store's pending writes, releases the answers held for them
 * and starts the work that waited for them. */
void worker_commit(struct worker *w);

/* Creates and starts a worker thread; 0 or -1 with err. */
int worker_start(struct worker *w, char *err, size_t errlen);
/* Asks the worker to drain and stop (thread-safe). */
void worker_stop(struct worker *w);
/* Joins the thread and frees everything the worker owns. */
void worker_join(struct worker *w);

#endif
