/*
 * test_confgen.c: when an old configuration generation is freed
 * (core/confgen.c): never the first or the newest; never while it or an
 * older one has a holder; in order once the holders are gone. ASan checks
 * that what is freed is not touched and that nothing leaks.
 */
#include "check.h"
#include "confgen.h"
#include "config.h"
#include "ratelimit.h"

#include <stdlib.h>

static struct config_gen *add(struct config_gens *s)
{
	char err[256];
	struct config *c = config_load(NULL, err, sizeof err);
	struct ratelimit *r = c ? ratelimit_new(c) : NULL;
	struct config_gen *g = r ? confgen_add(s, c, r) : NULL;
	CHECK(g != NULL);
	return g;
}

int main(void)
{
	char err[256];
	struct config *c = config_load(NULL, err, sizeof err);
	struct config_gens *s = confgen_new(c, ratelimit_new(c));
	CHECK(s != NULL);
	struct config_gen *first = confgen_newest(s);
	CHECK_EQ_INT(first->seq, 1);
	CHECK(first->cfg == c);
	CHECK_EQ_INT(confgen_collect(s), 1);

	/* A worker runs the first; two reloads. The worker still holds the
	 * first, so nothing is freed; the newest never is. */
	confgen_hold(first);
	struct config_gen *g2 = add(s), *g3 = add(s);
	CHECK_EQ_INT(g2->seq, 2);
	CHECK_EQ_INT(g3->seq, 3);
	CHECK(confgen_newest(s) == g3);
	CHECK_EQ_INT(confgen_collect(s), 3);

	/* A request arrived under g2 and the worker moved to g3 (hold the new
	 * one, then drop the old): g2 is held by the request. */
	confgen_hold(g2); /* the request */
	confgen_hold(g3); /* the worker takes g3 ... */
	confgen_release(first); /* ... and drops the first */
	struct config_gen *g4 = add(s);
	CHECK_EQ_INT(confgen_collect(s), 4);
	/* The worker moves on to g4: g3 has no holder, but the request's g2 is
	 * older, and the request may point into g3 too: g3 stays. */
	confgen_hold(g4);
	confgen_release(g3);
	add(s);
	CHECK_EQ_INT(confgen_collect(s), 5);
	CHECK_EQ_INT(atomic_load(&g3->holders), 0);
	/* The request ends: g2, g3 go; the first stays (never freed), g4 is
	 * held by the worker and stays with everything newer. */
	confgen_release(g2);
	CHECK_EQ_INT(confgen_collect(s), 3);
	CHECK(first->newer == g4);
	/* The worker drops g4 for the newest: only the first and the newest. */
	struct config_gen *g5 = confgen_newest(s);
	confgen_hold(g5);
	confgen_release(g4);
	CHECK_EQ_INT(confgen_collect(s), 2);
	CHECK(first->newer == g5);
	CHECK_EQ_INT(confgen_collect(s), 2);

	/* Holders of the first block everything newer. */
	confgen_hold(first);
	struct config_gen *g6 = add(s);
	add(s);
	confgen_hold(g6);
	confgen_release(g5);
	confgen_release(g6);
	CHECK_EQ_INT(confgen_collect(s), 4);
	confgen_release(first);
	CHECK_EQ_INT(confgen_collect(s), 2);

	/* NULL holds are nothing (a worker of a unit test has no generation). */
	confgen_hold(NULL);
	confgen_release(NULL);
	confgen_free(s); /* held or not: after the workers are joined */
	return check_done();
}
