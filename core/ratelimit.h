/*
 * ratelimit.h: per-customer token buckets (customers.NAME.rate).
 *
 * A bucket holds up to `burst` tokens and gains `per_s` tokens a second;
 * each authenticated request of the customer takes one, and a request that
 * finds less than one token is answered 429 RATE_LIMITED with Retry-After.
 * One table per process, shared by its workers (a mutex per bucket), so the
 * limit holds for one genrelay process; several instances each enforce their
 * own.
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
