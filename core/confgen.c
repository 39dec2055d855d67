/*
 * confgen.c: configuration generations and their reclamation (the rule is
 * in confgen.h). The set is a list from the oldest (the first) to the
 * newest; only main changes the list, workers and requests only move the
 * holder counts.
 */
#include "confgen.h"

#include "config.h"
#include "log.h"
#include "ratelimit.h"

#include <stdlib.h>

struct config_gens {
	struct config_gen *oldest; /* the first; never freed before confgen_free */
	struct config_gen *newest;
	size_t n;
};

static struct config_gen *gen_new(struct config *cfg, struct ratelimit *rates, uint64_t seq)
{
	struct config_gen *g = calloc(1, sizeof *g);
	if (!g)
		return NULL;
	g->cfg = cfg;
	g->rates = rates;
	g->seq = seq;
	atomic_init(&g->holders, 0);
	return g;
}

static void gen_free(struct config_gen *g)
{
	ratelimit_free(g->rates);
	config_free((struct config *)g->cfg);
	free(g);
}

struct config_gens *confgen_new(struct config *cfg, struct ratelimit *rates)
{
	struct config_gens *s = calloc(1, sizeof *s);
	struct config_gen *g = s ? gen_new(cfg, rates, 1) : NULL;
	if (!g) {
		free(s);
		return NULL;
	}
	s->oldest = s->newest = g;
	s->n = 1;
	return s;
}

struct config_gen *confgen_newest(struct config_gens *s)
{
	return s->newest;
}

struct config_gen *confgen_add(struct config_gens *s, struct config *cfg, struct ratelimit *rates)
{
	struct config_gen *g = gen_new(cfg, rates, s->newest->seq + 1);
	if (!g)
		return NULL;
	s->newest->newer = g;
	s->newest = g;
	s->n++;
	return g;
}

void confgen_hold(struct config_gen *g)
{
	if (g)
		atomic_fetch_add(&g->holders, 1);
}

void confgen_release(struct config_gen *g)
{
	if (g)
		atomic_fetch_sub(&g->holders, 1);
}

/*
 * Walks from the oldest: once a generation has a holder, it and every
 * newer one stay. Sequentially consistent loads in list order: a worker
 * takes the newer generation before it drops the older one, so a walk that
 * sees the older one without holders sees the newer one held.
 */
size_t confgen_collect(struct config_gens *s)
{
	if (!log_scrub_idle())
		return s->n; /* a log call may be scrubbing with an old config's secrets */
	struct config_gen *prev = s->oldest;
	if (atomic_load(&prev->holders) > 0)
		return s->n;
	while (prev->newer && prev->newer != s->newest) {
		struct config_gen *g = prev->newer;
		if (atomic_load(&g->holders) > 0)
			break;
		prev->newer = g->newer;
		log_debug("config generation %llu freed", (unsigned long long)g->seq);
		gen_free(g);
		s->n--;
	}
	return s->n;
}

void confgen_free(struct config_gens *s)
{
	if (!s)
		return;
	for (struct config_gen *g = s->oldest, *next; g; g = next) {
		next = g->newer;
		gen_free(g);
	}
	free(s);
}
