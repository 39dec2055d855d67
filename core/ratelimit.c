/*
 * ratelimit.c: see ratelimit.h.
 */
#include "ratelimit.h"

#include "config.h"
#include "log.h"
#include "store.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* After a failure of the shared buckets, the in-process ones are used for
 * this long before the store is tried again. */
#define SHARED_RETRY_MS 5000

struct slot {
	pthread_mutex_t mu;
	struct ratelimit_bucket b; /* in-process bucket (one instance, or the store failing) */
	double held;               /* shared: tokens taken from the store, not used yet */
};

struct ratelimit {
	const struct config *cfg;
	struct slot *slots; /* one per cfg->customers[i] */
	size_t n;
	int shared;         /* buckets in the store (PostgreSQL), shared by instances */
};

/*
 * The store connection of the shared buckets: one per process, opened at
 * the first take that needs it, used by every table (config generation)
 * and worker under shared_mu, closed with the last table.
 */
static pthread_mutex_t shared_mu = PTHREAD_MUTEX_INITIALIZER;
static struct store *shared_store;
static int shared_refs;
static int64_t shared_retry_at;

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

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

int ratelimit_batch(double per_s, double burst)
{
	double k = ceil(per_s / 10), cap = floor(burst / 4);
	if (k > cap)
		k = cap;
	return k < 1 ? 1 : k > 100000 ? 100000 : (int)k;
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
	rl->shared = cfg->store && strncmp(cfg->store, "sqlite:", 7) != 0;
	if (rl->shared) {
		pthread_mutex_lock(&shared_mu);
		shared_refs++;
		pthread_mutex_unlock(&shared_mu);
	}
	return rl;
}

void ratelimit_free(struct ratelimit *rl)
{
	if (!rl)
		return;
	if (rl->shared) {
		pthread_mutex_lock(&shared_mu);
		if (--shared_refs == 0) {
			store_close(shared_store);
			shared_store = NULL;
		}
		pthread_mutex_unlock(&shared_mu);
	}
	for (size_t i = 0; i < rl->n; i++)
		pthread_mutex_destroy(&rl->slots[i].mu);
	free(rl->slots);
	free(rl);
}

/*
 * Takes up to want tokens of customer c's shared bucket: 0 with *granted and
 * *left, or -1 when the store cannot answer (the caller uses its
 * in-process bucket meanwhile).
 */
static int shared_take(const struct ratelimit *rl, const struct config_customer *c, int want,
		       int *granted, double *left)
{
	char err[256];
	int rc = -1;
	pthread_mutex_lock(&shared_mu);
	if (!shared_store && mono_ms() >= shared_retry_at) {
		shared_store = store_open(rl->cfg->store, 0, err, sizeof err);
		if (!shared_store)
			log_warn("rate limits: %s (each instance counts alone meanwhile)", err);
	}
	if (shared_store) {
		rc = store_rate_take(shared_store, c->name, c->rate_per_s, c->rate_burst, want,
				     granted, left);
		if (rc != 0)
			log_warn("rate limits: the shared bucket failed: %s (each instance counts "
				 "alone meanwhile)", store_errmsg(shared_store));
	}
	if (rc != 0) {
		shared_retry_at = mono_ms() + SHARED_RETRY_MS;
		rc = -1;
	}
	pthread_mutex_unlock(&shared_mu);
	return rc;
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
	if (rl->shared && s->held >= 1.0) {
		s->held -= 1.0;
		pthread_mutex_unlock(&s->mu);
		return 1;
	}
	pthread_mutex_unlock(&s->mu);
	int granted = 0;
	double left = 0;
	if (rl->shared &&
	    shared_take(rl, c, ratelimit_batch(c->rate_per_s, c->rate_burst), &granted, &left) == 0) {
		if (granted < 1) {
			double wait = ceil((1.0 - left) / c->rate_per_s);
			*retry_after_s = wait < 1 ? 1 : wait > 1e9 ? 1000000000L : (long)wait;
			return 0;
		}
		pthread_mutex_lock(&s->mu);
		s->held += granted - 1;
		pthread_mutex_unlock(&s->mu);
		return 1;
	}
	pthread_mutex_lock(&s->mu);
	int ok = ratelimit_bucket_take(&s->b, c->rate_per_s, c->rate_burst, now_ms, retry_after_s);
	pthread_mutex_unlock(&s->mu);
	return ok;
}
