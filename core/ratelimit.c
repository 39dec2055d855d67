/*
 * ratelimit.c: see ratelimit.h.
 */
#include "ratelimit.h"

#include "config.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>

struct slot {
	pthread_mutex_t mu;
	struct ratelimit_bucket b;
};

struct ratelimit {
	const struct config *cfg;
	struct slot *slots; /* one per cfg->customers[i] */
	size_t n;
};

int ratelimit_bucket_take(struct ratelimit_bucket *b, double per_s, double burst,
			  int64_t now_ms, long *retry_after_s)
{
	if (!b->started) {
		b->started = 1;
		b->tokens = burst;
		b->at_ms = now_ms;
	}
	if (now_ms > b->at_ms) {
		b->tokens += (double)(now_ms - b->at_ms) / 1000.0 * per_s;
		if (b->tokens > burst)
			b->tokens = burst;
		b->at_ms = now_ms;
	}
	if (b->tokens >= 1.0) {
		b->tokens -= 1.0;
		return 1;
	}
	double wait = ceil((1.0 - b->tokens) / per_s);
	*retry_after_s = wait < 1 ? 1 : wait > 1e9 ? 1000000000L : (long)wait;
	return 0;
}

struct ratelimit *ratelimit_new(const struct config *cfg)
{
	struct ratelimit *rl = calloc(1, sizeof *rl);
	if (!rl)
		return NULL;
	rl->cfg = cfg;
	rl->n = cfg->ncustomers;
	rl->slots = rl->n ? calloc(rl->n, sizeof *rl->slots) : NULL;
	if (rl->n && !rl->slots) {
		free(rl);
		return NULL;
	}
	for (size_t i = 0; i < rl->n; i++)
		pthread_mutex_init(&rl->slots[i].mu, NULL);
	return rl;
}

void ratelimit_free(struct ratelimit *rl)
{
	if (!rl)
		return;
	for (size_t i = 0; i < rl->n; i++)
		pthread_mutex_destroy(&rl->slots[i].mu);
	free(rl->slots);
	free(rl);
}

int ratelimit_take(struct ratelimit *rl, const struct config_customer *c, int64_t now_ms,
		   long *retry_after_s)
{
	if (!rl || !c || c->rate_per_s <= 0)
		return 1;
	size_t i = (size_t)(c - rl->cfg->customers);
	if (c < rl->cfg->customers || i >= rl->n)
		return 1;
	struct slot *s = &rl->slots[i];
	pthread_mutex_lock(&s->mu);
	int ok = ratelimit_bucket_take(&s->b, c->rate_per_s, c->rate_burst, now_ms, retry_after_s);
	pthread_mutex_unlock(&s->mu);
	return ok;
}
