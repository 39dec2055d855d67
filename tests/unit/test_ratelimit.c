/*
 * test_ratelimit.c: the token bucket's arithmetic and the per-customer table.
 */
#include "check.h"

#include "config.h"
#include "ratelimit.h"

#include <stdio.h>
#include <stdlib.h>

int main(void)
{
	struct ratelimit_bucket b = { 0 };
	long ra = 0;

	/* a full bucket of 3 at the first take; the 4th take is refused */
	for (int i = 0; i < 3; i++)
		CHECK_EQ_INT(ratelimit_bucket_take(&b, 1.0, 3, 1000, &ra), 1);
	CHECK_EQ_INT(ratelimit_bucket_take(&b, 1.0, 3, 1000, &ra), 0);
	CHECK_EQ_INT(ra, 1);
	/* refill: half a second gives half a token (still refused), one second one */
	CHECK_EQ_INT(ratelimit_bucket_take(&b, 1.0, 3, 1500, &ra), 0);
	CHECK_EQ_INT(ra, 1);
	CHECK_EQ_INT(ratelimit_bucket_take(&b, 1.0, 3, 2000, &ra), 1);
	CHECK_EQ_INT(ratelimit_bucket_take(&b, 1.0, 3, 2000, &ra), 0);
	/* never more than burst after a long pause */
	for (int i = 0; i < 3; i++)
		CHECK_EQ_INT(ratelimit_bucket_take(&b, 1.0, 3, 100000, &ra), 1);
	CHECK_EQ_INT(ratelimit_bucket_take(&b, 1.0, 3, 100000, &ra), 0);
	/* Retry-After is whole seconds, at least 1: 0.1/s needs 10 s per token */
	struct ratelimit_bucket slow = { 0 };
	CHECK_EQ_INT(ratelimit_bucket_take(&slow, 0.1, 1, 0, &ra), 1);
	CHECK_EQ_INT(ratelimit_bucket_take(&slow, 0.1, 1, 0, &ra), 0);
	CHECK_EQ_INT(ra, 10);
	CHECK_EQ_INT(ratelimit_bucket_take(&slow, 0.1, 1, 2500, &ra), 0);
	CHECK_EQ_INT(ra, 8); /* 0.25 token there: 7.5 s more, rounded up */
	/* a fast rate still says at least 1 s */
	struct ratelimit_bucket fast = { 0 };
	CHECK_EQ_INT(ratelimit_bucket_take(&fast, 1000, 1, 0, &ra), 1);
	CHECK_EQ_INT(ratelimit_bucket_take(&fast, 1000, 1, 0, &ra), 0);
	CHECK_EQ_INT(ra, 1);

	/* the batch an instance takes from a shared bucket: a tenth of a
	 * second's worth, at most a quarter of the burst, at least one */
	CHECK_EQ_INT(ratelimit_batch(1000, 1000), 100);
	CHECK_EQ_INT(ratelimit_batch(1000, 40), 10);
	CHECK_EQ_INT(ratelimit_batch(5, 20), 1);
	CHECK_EQ_INT(ratelimit_batch(0.01, 20), 1);
	CHECK_EQ_INT(ratelimit_batch(100, 2), 1);

	/* the table: one bucket per customer, customers without a rate unlimited */
	char path[] = "/tmp/genrelay-rl-XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	FILE *f = fdopen(fd, "w");
	fprintf(f, "customers = {\n"
		   "  a = { api_key = 'key-a', rate = { per_s = 1, burst = 2 } },\n"
		   "  b = { api_key = 'key-b' },\n"
		   "  c = { api_key = 'key-c', rate = { per_s = 0.5 } },\n"
		   "}\n");
	fclose(f);
	char err[512];
	struct config *cfg = config_load(path, err, sizeof err);
	remove(path);
	CHECK(cfg != NULL);
	if (!cfg) {
		fprintf(stderr, "    %s\n", err);
		return check_done();
	}
	const struct config_customer *a = config_customer_by_name(cfg, "a");
	const struct config_customer *bc = config_customer_by_name(cfg, "b");
	const struct config_customer *c = config_customer_by_name(cfg, "c");
	CHECK(a->rate_per_s == 1 && a->rate_burst == 2);
	CHECK(bc->rate_per_s == 0);
	CHECK(c->rate_burst == 1); /* burst defaults to ceil(per_s), at least 1 */
	struct ratelimit *rl = ratelimit_new(cfg);
	CHECK_EQ_INT(ratelimit_take(rl, a, 0, &ra), 1);
	CHECK_EQ_INT(ratelimit_take(rl, a, 0, &ra), 1);
	CHECK_EQ_INT(ratelimit_take(rl, a, 0, &ra), 0);
	for (int i = 0; i < 100; i++)
		CHECK_EQ_INT(ratelimit_take(rl, bc, 0, &ra), 1);
	CHECK_EQ_INT(ratelimit_take(rl, c, 0, &ra), 1); /* its own bucket */
	CHECK_EQ_INT(ratelimit_take(rl, c, 0, &ra), 0);
	CHECK_EQ_INT(ra, 2);
	CHECK_EQ_INT(ratelimit_take(NULL, a, 0, &ra), 1);
	ratelimit_free(rl);
	config_free(cfg);
	return check_done();
}
