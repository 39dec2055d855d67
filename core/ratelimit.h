/*
 * ratelimit.h: per-customer token buckets (customers.NAME.rate).
 *
 * A bucket holds up to `burst` tokens and gains `per_s` tokens a second;
 * each authenticated request of the customer takes one, and a request that
 * finds less than one token is answered 429 RATE_LIMITED with Retry-After.
 * One table per process, shared by its workers (a mutex per bucket).
 *
 * On SQLite (one instance) the buckets are in memory. On PostgreSQL they
 * are rows of the store, shared by every instance: an instance takes
 * ratelimit_batch() tokens at a time from the customer's row (one round
 * trip on a connection of its own) and spends them locally, so across n
 * instances at most n * (batch - 1) requests more than the bucket holds get
 * through, and an instance that stops forgets at most batch - 1. While the
 * store cannot answer, each instance falls back to its in-memory bucket.
 */
#ifndef GENRELAY_RATELIMIT_H
#define GENRELAY_RATELIMIT_H

#include <stdint.h>

struct config;
struct config_customer;
struct ratelimit;

struct ratelimit_bucket {
	double tokens;
	int64_t at_ms;   /* monotonic time of the last refill */
	int started;     /* 0: full at the first take */
};

/*
 * The bucket arithmetic, without locking: refills b up to now_ms and takes
 * one token. Returns 1 when taken; 0 when empty, with the whole seconds
 * (at least 1) until a token is there in *retry_after_s.
 */
int ratelimit_bucket_take(struct ratelimit_bucket *b, double per_s, double burst,
			  int64_t now_ms, long *retry_after_s);

/* How many tokens an instance takes from a shared bucket at once: a tenth
 * of a second's worth, at most a quarter of the burst, at least 1. */
int ratelimit_batch(double per_s, double burst);

/* A table with one bucket per customer of cfg (cfg must outlive it), or NULL
 * when out of memory. */
struct ratelimit *ratelimit_new(const struct config *cfg);
void ratelimit_free(struct ratelimit *rl);

/*
 * Takes a token for customer c (a customer of the table's config) at
 * now_ms (monotonic). Returns 1 when allowed (always for a customer without
 * a rate, or rl NULL), else 0 with *retry_after_s. Thread-safe.
 */
int ratelimit_take(struct ratelimit *rl, const struct config_customer *c, int64_t now_ms,
		   long *retry_after_s);

#endif
