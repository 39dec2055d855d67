/*
 * worker.c: a worker thread's life: set-up, the loop, draining on stop.
 */
#include "worker.h"

#include "api.h"
#include "config.h"
#include "customers.h"
#include "engine.h"
#include "fetch.h"
#include "ingest.h"
#include "log.h"
#include "metrics.h"
#include "script.h"
#include "server.h"
#include "store.h"
#include "waiters.h"

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <unistd.h>

#define DRAIN_MS 10000

void worker_commit(struct worker *w);
#define RELOAD_DEBOUNCE_MS 100
#define RELOAD_MAX_DELAY_MS 400 /* a stream of events cannot hold a reload back longer */

static atomic_int stop_requested[64];
static struct loop_timer drain_timer[64];
static struct loop_timer reload_timer[64];
static int64_t drain_deadline[64];
static int64_t reload_first_event[64];

static int finishing[64];
static _Atomic(struct config_gen *) pending_gen[64];

void worker_set_config(struct worker *w, struct config_gen *g)
{
	atomic_store(&pending_gen[w->index], g);
	if (w->loop)
		loop_wake(w->loop);
}

/* Switches to a published config generation (the worker's thread, between
 * callbacks, so nothing running sees a half-changed config). */
static void take_config(struct worker *w)
{
	struct config_gen *g = atomic_exchange(&pending_gen[w->index], NULL);
	if (!g)
		return;
	struct config_gen *old = w->gen;
	confgen_hold(g);
	w->gen = g;
	w->cfg = g->cfg;
	w->rates = g->rates;
	w->guard.require_https = g->cfg->require_https;
	w->guard.allow_private = g->cfg->allow_private;
	store_set_max_size(w->store, (long long)g->cfg->store_max_mb * 1024 * 1024);
	script_host_set_config(w->scripts, g->cfg);
	confgen_release(old); /* nothing of this worker reads it any more */
	log_debug("worker %d: reloaded configuration in use", w->index);
}

static void finish_drain(struct worker *w)
{
	api_abort_all(w);
	/* Commit what is pending without starting the work it queued: the loop
	 * stops below, so a fetch started now would be abandoned (its step
	 * leaked, its row leased by a process that is gone, and a webhook
	 * possibly sent but never recorded). The rows stay due in the store,
	 * and their leases are released after the commit. */
	finishing[w->index] = 1;
	worker_commit(w);
	if (store_work_release(w->store, w->owner) < 0)
		log_warn("store: releasing leases: %s", store_errmsg(w->store));
	worker_commit(w);
	server_run(w->server);
	loop_stop(w->loop);
}

static void drain_check(struct loop_timer *t)
{
	struct worker *w = t->arg;
	if (w->inflight_steps <= 0 || loop_now_ms() >= drain_deadline[w->index]) {
		if (w->inflight_steps > 0)
			log_warn("worker %d: %ld step(s) still running at the drain deadline; "
				 "their leases are released and they will run again",
				 w->index, w->inflight_steps);
		finish_drain(w);
		return;
	}
	loop_timer_set(w->loop, t, loop_now_ms() + 20);
}

static void begin_drain(struct worker *w)
{
	if (w->stopping)
		return;
	w->stopping = 1;
	log_info("worker %d: draining", w->index);
	server_quiesce(w->server);
	server_quiesce(w->metrics_server);
	engine_shutdown(w);
	ingest_flush(w);
	drain_deadline[w->index] = loop_now_ms() + DRAIN_MS;
	loop_timer_init(&drain_timer[w->index], drain_check, w);
	loop_timer_set(w->loop, &drain_timer[w->index], loop_now_ms());
}

/*
 * The end of every loop iteration (idle), and before anything that must not
 * hold the write lock: commits the store's batch, releases the answers that
 * waited for it, and starts the work the engine queued for after the commit
 * (engine_after_commit). It runs while either is pending, so queued work
 * starts in this iteration even when there was nothing to commit.
 */
void worker_commit(struct worker *w)
{
	for (int round = 0; round < 1000 && (store_pending(w->store) || engine_after_pending(w)); round++) {
		int rc = store_flush(w->store);
		if (rc < 0)
			log_warn("store: commit failed: %s", store_errmsg(w->store));
		server_release(w->server, rc == 0);
		server_release(w->metrics_server, rc == 0);
		engine_after_commit(w, rc == 0 && !finishing[w->index]);
	}
}

/* New due work announced by another worker or instance (store.h) wakes this
 * one; its due timer stays the safety net. The descriptor changes after a
 * reconnect, so it is checked again after each read and every tick. */
static struct loop_io notify_io[64];
static void notify_watch(struct worker *w);

static void notify_cb(struct loop_io *io, uint32_t events)
{
	struct worker *w = io->arg;
	int64_t due;
	(void)events;
	if (store_notify_read(w->store, &due) > 0) {
		metrics_inc(M_STORE_WAKEUPS);
		engine_kick(w, due);
	}
	notify_watch(w);
}

static void notify_watch(struct worker *w)
{
	struct loop_io *io = &notify_io[w->index];
	int watched = io->cb ? io->fd : -1, fd = store_notify_fd(w->store, watched);
	if (fd == watched)
		return;
	if (io->cb)
		loop_io_del(w->loop, io);
	io->cb = NULL;
	if (fd >= 0 && loop_io_add(w->loop, io, fd, EPOLLIN, notify_cb, w) == 0)
		engine_kick(w, loop_wall_ms()); /* what was announced while away */
}

static void idle(void *arg)
{
	struct worker *w = arg;
	take_config(w);
	if (atomic_load(&stop_requested[w->index]))
		begin_drain(w);
	ingest_flush(w);
	worker_commit(w);
	for (int i = 0; i < 64 && (server_need_run(w->server) || server_need_run(w->metrics_server)); i++) {
		server_run(w->server);
		server_run(w->metrics_server);
		ingest_flush(w);
		worker_commit(w);
	}
	store_idle(w->store);
}

static void tick(struct loop_timer *t)
{
	struct worker *w = t->arg;
	waiters_tick(w);
	engine_renew_leases(w); /* a step may outlast one lease; a dead worker's rows free up within one */
	if (w->cfg->role != ROLE_API)
		notify_watch(w);
	loop_timer_set(w->loop, t, loop_now_ms() + 1000);
}

static void reload_fire(struct loop_timer *t)
{
	struct worker *w = t->arg;
	/* Compiling and checking scripts takes a while: never hold the store's
	 * write lock (and the other workers) through it. */
	worker_commit(w);
	int n = script_host_refresh(w->scripts);
	if (n > 0) {
		metrics_reloads(n);
		log_info("worker %d: %d script(s) reloaded", w->index, n);
	}
}

static void inotify_cb(struct loop_io *io, uint32_t events)
{
	struct worker *w = io->arg;
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	(void)events;
	while (read(io->fd, buf, sizeof buf) > 0)
		;
	int64_t now = loop_now_ms(), at = now + RELOAD_DEBOUNCE_MS;
	if (!loop_timer_active(&reload_timer[w->index]))
		reload_first_event[w->index] = now;
	else if (at > reload_first_event[w->index] + RELOAD_MAX_DELAY_MS)
		at = reload_first_event[w->index] + RELOAD_MAX_DELAY_MS;
	loop_timer_set(w->loop, &reload_timer[w->index], at);
}

static void watch_scripts(struct worker *w)
{
	static const char *const sub[] = { "", "/providers", "/hooks", "/fronts", "/lib" };
	w->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (w->inotify_fd < 0)
		return;
	for (size_t i = 0; i < sizeof sub / sizeof sub[0]; i++) {
		char path[PATH_MAX];
		snprintf(path, sizeof path, "%s%s", w->cfg->scripts, sub[i]);
		inotify_add_watch(w->inotify_fd, path, IN_CLOSE_WRITE | IN_MOVED_TO |
				  IN_MOVED_FROM | IN_DELETE | IN_CREATE | IN_ATTRIB);
	}
	loop_timer_init(&reload_timer[w->index], reload_fire, w);
	loop_io_add(w->loop, &w->inotify_io, w->inotify_fd, EPOLLIN, inotify_cb, w);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	w->hooks.job_ended = api_job_ended;
	if (engine_init(w) < 0) {
		log_error("worker %d: out of memory", w->index);
		return NULL;
	}
	if (w->cfg->role != ROLE_API && store_listen(w->store) == 0)
		notify_watch(w);
	loop_timer_init(&w->tick_timer, tick, w);
	loop_timer_set(w->loop, &w->tick_timer, loop_now_ms() + 1000);
	/* Load signing keys early so the first callbacks can be verified. */
	json_t *models = script_host_models(w->scripts);
	size_t i;
	json_t *m;
	json_array_foreach(models, i, m)
		engine_provider_keys(w, json_string_value(json_object_get(m, "provider")), 0);
	json_decref(models);
	log_hold(1); /* lines are written once per loop iteration (log.h) */
	loop_run(w->loop);
	log_hold(0);
	return NULL;
}

/* The server's hold handler: an answer given while the store has writes
 * not yet committed waits for worker_commit (it may report them). */
static int answer_after_commit(struct request *r)
{
	if (!store_pending(r->w->store))
		return 0;
	r->hold_mark = store_answer_mark(r->w->store);
	return 1;
}

/* The server's lost handler: the held answer's writes were rolled back
 * alone in a batch that committed (store.h, store_answer_lost). */
static int answer_lost(struct request *r)
{
	return store_answer_lost(r->w->store, r->hold_mark);
}

int worker_start(struct worker *w, char *err, size_t errlen)
{
	w->batch = NULL;
	w->batch_tail = &w->batch;
	w->inotify_fd = -1;
	if (!(w->customers = customers_new())) {
		snprintf(err, errlen, "worker %d: out of memory", w->index);
		return -1;
	}
	w->guard.require_https = w->cfg->require_https;
	w->guard.allow_private = w->cfg->allow_private;
	if (!(w->loop = loop_new()) || !(w->fetch = fetcher_new(w->loop, (long)w->cfg->max_inflight + 64))) {
		snprintf(err, errlen, "worker %d: cannot create its loop", w->index);
		return -1;
	}
	fetcher_set_per_host(w->fetch, w->cfg->per_host);
	w->store = store_open(w->cfg->store, strcmp(w->cfg->durability, "fsync") == 0, err, errlen);
	if (!w->store)
		return -1;
	store_set_max_size(w->store, (long long)w->cfg->store_max_mb * 1024 * 1024);
	store_set_batching(w->store, 1);
	store_set_autocheckpoint(w->store, 0); /* the checkpointer thread does it */
	w->scripts = script_host_new(w->cfg);
	char serr[512];
	if (!w->scripts) {
		snprintf(err, errlen, "worker %d: cannot create the script host", w->index);
		return -1;
	}
	if (script_host_load(w->scripts, serr, sizeof serr) < 0)
		log_warn("scripts: %s (the other scripts are loaded)", serr);
	static const struct server_handlers api = { .admit = api_admit, .dispatch = api_dispatch,
						    .gone = api_request_gone, .hold = answer_after_commit,
						    .lost = answer_lost };
	if (!(w->server = server_new(w, &api, err, errlen)))
		return -1;
	if (w->metrics_fd >= 0) {
		int fd = w->metrics_fd;
		w->metrics_fd = -1; /* server_new_metrics takes it, started or not */
		if (!(w->metrics_server = server_new_metrics(w, &api, fd, err, errlen)))
			return -1;
	}
	loop_set_idle(w->loop, idle, w);
	watch_scripts(w);
	if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
		snprintf(err, errlen, "worker %d: cannot start its thread", w->index);
		return -1;
	}
	w->started = 1;
	return 0;
}

void worker_stop(struct worker *w)
{
	atomic_store(&stop_requested[w->index], 1);
	if (w->loop)
		loop_wake(w->loop);
}

void worker_join(struct worker *w)
{
	if (w->started)
		pthread_join(w->thread, NULL);
	server_free(w->server);
	server_free(w->metrics_server);
	fetcher_free(w->fetch);
	if (w->inotify_fd >= 0)
		close(w->inotify_fd);
	script_host_free(w->scripts);
	store_close(w->store);
	engine_free(w); /* after the fetcher: no step's callback runs any more */
	customers_free(w->customers);
	loop_free(w->loop);
}
