/*
 * confgen.h: the configuration generations of a serving process, and when
 * an old one is freed.
 *
 * The configuration loaded at start and each applied reload is a
 * generation: the config and the customers' rate buckets built for it.
 * Main publishes a new one (worker_set_config); each worker switches to it
 * at the top of its loop.
 *
 * The rule. Each generation counts its holders:
 *   - a worker holds the generation it runs. It takes the new one before it
 *     lets go of the old one, at the top of its loop, where none of its
 *     callbacks runs; it reads a config only through the one it holds;
 *   - a request holds the generation its worker ran when the request
 *     arrived, from the access handler's first call to MHD's completion.
 *     On the way it may keep pointers (its customer, settings) into any
 *     generation its worker ran since: all of them newer than the one held.
 * A generation is freed when a newer one exists, neither it nor any older
 * generation has a holder, and no log call is using a scrubber (the log's
 * scrubber is the config's, and the one replaced at a reload may still be
 * in a log call on another thread: log_scrub_idle). Then no worker runs it
 * and nothing alive started while it or an older one was in use, so nothing
 * can point into it. The first generation is never freed before the end
 * (the checkpointer and retention threads and the workers' start-up
 * settings point into it), but its holders count as above.
 *
 * Provider steps and deliveries need no hold: they keep copies (job, work,
 * provider name, delivery) across their fetches and read w->cfg afresh in
 * each callback. Whatever is added that keeps a pointer into a config
 * across loop iterations must take a hold like a request does.
 *
 * Cost: two atomic operations per request; main walks the few generations
 * alive after each reload and once a second.
 */
#ifndef GENRELAY_CONFGEN_H
#define GENRELAY_CONFGEN_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct ratelimit;

struct config_gen {
	const struct config *cfg;   /* owned by the set */
	struct ratelimit *rates;    /* owned by the set, built for cfg */
	uint64_t seq;               /* 1: the first; +1 per applied reload */
	atomic_long holders;        /* workers running it, requests started under it */
	struct config_gen *newer;
};

/* The generations of a process; main's. */
struct config_gens;

/* A set whose first generation is cfg and rates (taken on success; still
 * the caller's when it returns NULL: out of memory). */
struct config_gens *confgen_new(struct config *cfg, struct ratelimit *rates);
/* The newest generation (borrowed from the set). */
struct config_gen *confgen_newest(struct config_gens *s);
/* Appends a newer generation of cfg and rates (taken on success, else the
 * caller's: NULL, out of memory). Main thread. */
struct config_gen *confgen_add(struct config_gens *s, struct config *cfg, struct ratelimit *rates);

/* Takes and drops a hold on g (thread-safe; NULL: nothing). */
void confgen_hold(struct config_gen *g);
void confgen_release(struct config_gen *g);

/* Frees the generations the rule above allows; returns how many are alive
 * (the first and the newest among them). Main thread. */
size_t confgen_collect(struct config_gens *s);

/* Frees the set and every generation, held or not: call after the workers
 * are joined and the other threads that read the first one are stopped. */
void confgen_free(struct config_gens *s);

#endif
