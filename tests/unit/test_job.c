/* test_job.c: core/job.c, the time format of job objects. */
#include "job.h"
#include "check.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* What job_time printed before its hand-made path: the reference. */
static void libc_time(int64_t ms, char *out, size_t outlen)
{
	time_t s = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&s, &tm);
	char base[32];
	strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, outlen, "%s.%03dZ", base, (int)(ms % 1000));
}

static int same(int64_t ms)
{
	char a[40], b[40];
	memset(a, 'x', sizeof a);
	job_time(ms, a, sizeof a);
	libc_time(ms, b, sizeof b);
	if (strcmp(a, b) != 0) {
		fprintf(stderr, "    %lld: %s != %s\n", (long long)ms, a, b);
		return 0;
	}
	return 1;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void test_job_time(void)
{
	static const int64_t fixed[] = {
		0, 1, 999, 1000, 86399999, 86400000,
		951782400000LL,      /* 2000-02-29 */
		951868799999LL,      /* 2000-02-29T23:59:59.999 */
		4107542400000LL,     /* 2100-03-01 */
		4107456000000LL,     /* 2100-02-28 */
		94694399999LL,       /* 1972-12-31T23:59:59.999 */
		1764547200123LL,     /* 2025-12-01 */
		253402300799999LL,   /* 9999-12-31T23:59:59.999: the last by hand */
		253402300800000LL,   /* 10000: libc */
		-1, -1000, -86400001,
	};
	for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
		CHECK(same(fixed[i]));
	/* every day boundary of 1970 to 2200, and random instants up to 9999 */
	int bad = 0;
	for (int64_t d = 0; d < 84000 && bad < 5; d++)
		bad += !same(d * 86400000LL) + !same(d * 86400000LL + 86399999);
	for (int i = 0; i < 200000 && bad < 5; i++)
		bad += !same((int64_t)(next() % 253402300800000ull));
	CHECK_EQ_INT(bad, 0);

	/* A short out takes the libc path and is cut like snprintf cuts. */
	char small[10];
	job_time(951782400000LL, small, sizeof small);
	CHECK_STR_EQ(small, "2000-02-2");
}

int main(void)
{
	test_job_time();
	return check_done();
}
