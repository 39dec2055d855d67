/*
 * test_retry.c: backoff policy (core/retry.c).
 */
#include "retry.h"
#include "check.h"

#include <limits.h>
#include <math.h>

static const double schedule[] = { 5, 15, 60, 300, 900, 3600, 21600, 43200, 86400 };
#define NSCHED (sizeof schedule / sizeof schedule[0])

static void test_schedule(void)
{
	static const double odd[] = { 0.25, -3, 0, 1e300 };
	static const double rnds[] = { 0, 1e-9, 0.25, 0.5, 0.75, 0.999999999 };
	unsigned a;
	size_t r;
	int out_of_bounds = 0;

	CHECK_EQ_INT(retry_schedule_delay(schedule, NSCHED, 1, 0, 0.5), 5000);
	CHECK_EQ_INT(retry_schedule_delay(schedule, NSCHED, 2, 0, 0.5), 15000);
	CHECK_EQ_INT(retry_schedule_delay(schedule, NSCHED, 4, 0, 0.5), 300000);
	CHECK_EQ_INT(retry_schedule_delay(schedule, NSCHED, 9, 0, 0.5), 86400000);
	/* Attempt 0 is the original try: no delay. */
	CHECK_EQ_INT(retry_schedule_delay(schedule, NSCHED, 0, 0, 0.5), 0);

	/* Give up past the end. */
	CHECK_EQ_INT(retry_schedule_delay(schedule, NSCHED, 10, 0, 0.5), -1);
	CHECK_EQ_INT(retry_schedule_delay(schedule, NSCHED, UINT_MAX, 0.2, 0.5), -1);
	CHECK_EQ_INT(retry_schedule_delay(schedule, 0, 1, 0, 0), -1);
	CHECK_EQ_INT(retry_schedule_delay(NULL, 3, 1, 0, 0), -1);

	/* Jitter: exact values, then bounds [d*(1-j), d] over attempts and rnd. */
	CHECK_EQ_INT(retry_schedule_delay(schedule, NSCHED, 1, 0.2, 0), 5000);
	CHECK_EQ_INT(retry_schedule_delay(schedule, NSCHED, 1, 0.2, 0.5), 4500);
	CHECK_EQ_INT(retry_schedule_delay(schedule, NSCHED, 1, 0.2, 0.999999999), 4000);
	CHECK_EQ_INT(retry_schedule_delay(schedule, NSCHED, 3, 1.0, 0.5), 30000);
	for (a = 1; a <= NSCHED; a++) {
		int64_t d = (int64_t)(schedule[a - 1] * 1000);
		for (r = 0; r < sizeof rnds / sizeof rnds[0]; r++) {
			int64_t v = retry_schedule_delay(schedule, NSCHED, a, 0.3, rnds[r]);
			if (v > d || v < d - (int64_t)(d * 0.3 + 0.5))
				out_of_bounds++;
		}
	}
	CHECK_EQ_INT(out_of_bounds, 0);

	/* Out-of-range jitter and rnd are clamped; NaN counts as 0. */
	CHECK_EQ_INT(retry_schedule_delay(schedule, NSCHED, 1, 5.0, 0.5), 2500);
	CHECK_EQ_INT(retry_schedule_delay(schedule, NSCHED, 1, -1.0, 0.5), 5000);
	CHECK_EQ_INT(retry_schedule_delay(schedule, NSCHED, 1, 0.2, 7.0), 4000);
	CHECK_EQ_INT(retry_schedule_delay(schedule, NSCHED, 1, 0.2, -1.0), 5000);
	CHECK_EQ_INT(retry_schedule_delay(schedule, NSCHED, 1, NAN, 0.5), 5000);
	CHECK_EQ_INT(retry_schedule_delay(schedule, NSCHED, 1, 0.2, NAN), 5000);

	/* Odd schedules: fractions kept, negatives are 0, huge values saturate. */
	CHECK_EQ_INT(retry_schedule_delay(odd, 4, 1, 0, 0), 250);
	CHECK_EQ_INT(retry_schedule_delay(odd, 4, 2, 0, 0), 0);
	CHECK_EQ_INT(retry_schedule_delay(odd, 4, 3, 0.5, 0.5), 0);
	CHECK_EQ_INT(retry_schedule_delay(odd, 4, 4, 0, 0), 1000000000000000000LL);
	CHECK_EQ_INT(retry_schedule_delay(odd, 4, 4, 1, 0.5), 500000000000000000LL);
}

static void test_backoff(void)
{
	CHECK_EQ_INT(retry_backoff_delay(1000, 60000, 1, 0, 0), 1000);
	CHECK_EQ_INT(retry_backoff_delay(1000, 60000, 2, 0, 0), 2000);
	CHECK_EQ_INT(retry_backoff_delay(1000, 60000, 3, 0, 0), 4000);
	CHECK_EQ_INT(retry_backoff_delay(1000, 60000, 6, 0, 0), 32000);
	/* Capped. */
	CHECK_EQ_INT(retry_backoff_delay(1000, 60000, 7, 0, 0), 60000);
	CHECK_EQ_INT(retry_backoff_delay(1000, 60000, 64, 0, 0), 60000);
	CHECK_EQ_INT(retry_backoff_delay(1000, 60000, UINT_MAX, 0, 0), 60000);
	CHECK_EQ_INT(retry_backoff_delay(1000, 500, 1, 0, 0), 500);
	/* No cap: doubling saturates instead of overflowing. */
	CHECK_EQ_INT(retry_backoff_delay(1000, 0, 11, 0, 0), 1024000);
	CHECK_EQ_INT(retry_backoff_delay(1000, 0, 200, 0, 0), 1000000000000000000LL);
	CHECK_EQ_INT(retry_backoff_delay(INT64_MAX, 0, 2, 0, 0), 1000000000000000000LL);
	/* Degenerate input. */
	CHECK_EQ_INT(retry_backoff_delay(1000, 60000, 0, 0, 0), 0);
	CHECK_EQ_INT(retry_backoff_delay(0, 60000, 5, 0, 0), 0);
	CHECK_EQ_INT(retry_backoff_delay(-5, 60000, 5, 0, 0), 0);
	/* Jitter after the cap. */
	CHECK_EQ_INT(retry_backoff_delay(1000, 60000, 3, 0.5, 0.5), 3000);
	CHECK_EQ_INT(retry_backoff_delay(1000, 60000, 10, 0.5, 0.999999999), 30000);
	CHECK(retry_backoff_delay(1000, 60000, 10, 0.1, 0.7) >= 54000);
	CHECK(retry_backoff_delay(1000, 60000, 10, 0.1, 0.7) <= 60000);
}

static void test_retry_after(void)
{
	const int64_t now = 1445412480; /* Wed, 21 Oct 2015 07:28:00 GMT */

	/* Delta seconds. */
	CHECK_EQ_INT(retry_after_ms("120", now, 0), 120000);
	CHECK_EQ_INT(retry_after_ms("0", now, 0), 0);
	CHECK_EQ_INT(retry_after_ms(" 7\t", now, 0), 7000);
	CHECK_EQ_INT(retry_after_ms("007", now, 0), 7000);
	CHECK_EQ_INT(retry_after_ms("120", now, 60000), 60000);
	CHECK_EQ_INT(retry_after_ms("99999999999999999999999999", now, 3600000), 3600000);
	CHECK_EQ_INT(retry_after_ms("99999999999999999999999999", now, 0),
		     1000000000000000000LL);

	/* Garbage and negatives. */
	CHECK_EQ_INT(retry_after_ms(NULL, now, 0), -1);
	CHECK_EQ_INT(retry_after_ms("", now, 0), -1);
	CHECK_EQ_INT(retry_after_ms("   ", now, 0), -1);
	CHECK_EQ_INT(retry_after_ms("-5", now, 0), -1);
	CHECK_EQ_INT(retry_after_ms("+5", now, 0), -1);
	CHECK_EQ_INT(retry_after_ms("1.5", now, 0), -1);
	CHECK_EQ_INT(retry_after_ms("5s", now, 0), -1);
	CHECK_EQ_INT(retry_after_ms("5 6", now, 0), -1);
	CHECK_EQ_INT(retry_after_ms("0x10", now, 0), -1);
	CHECK_EQ_INT(retry_after_ms("soon", now, 0), -1);

	/* IMF-fixdate. */
	CHECK_EQ_INT(retry_after_ms("Wed, 21 Oct 2015 07:29:00 GMT", now, 0), 60000);
	CHECK_EQ_INT(retry_after_ms("Wed, 21 Oct 2015 07:28:00 GMT", now, 0), 0);
	CHECK_EQ_INT(retry_after_ms("Wed, 21 Oct 2015 07:00:00 GMT", now, 0), 0);
	CHECK_EQ_INT(retry_after_ms("Thu, 22 Oct 2015 07:28:00 GMT", now, 0), 86400000);
	CHECK_EQ_INT(retry_after_ms("Thu, 22 Oct 2015 07:28:00 GMT", now, 300000), 300000);
	CHECK_EQ_INT(retry_after_ms("Mon, 29 Feb 2016 00:00:00 GMT", 1456704000 - 1, 0), 1000);
	CHECK_EQ_INT(retry_after_ms("Thu, 31 Dec 2099 23:59:59 GMT", 4102444799 - 2, 0), 2000);
	CHECK_EQ_INT(retry_after_ms("Sun, 06 Nov 1994 08:49:37 GMT", 784111777 - 10, 0), 10000);
	/* The two obsolete forms recipients must accept (RFC 9110 5.6.7). */
	CHECK_EQ_INT(retry_after_ms("Sunday, 06-Nov-94 08:49:37 GMT", 784111777 - 10, 0), 10000);
	CHECK_EQ_INT(retry_after_ms("Sun Nov  6 08:49:37 1994", 784111777 - 10, 0), 10000);
	CHECK_EQ_INT(retry_after_ms("Wed Oct 21 07:29:00 2015", now, 0), 60000);
	CHECK_EQ_INT(retry_after_ms("Wednesday, 21-Oct-15 07:29:00 GMT", now, 0), 60000);

	/* Bad dates. */
	CHECK_EQ_INT(retry_after_ms("Wed, 32 Oct 2015 07:29:00 GMT", now, 0), -1);
	CHECK_EQ_INT(retry_after_ms("Sun, 29 Feb 2015 07:29:00 GMT", now, 0), -1);
	CHECK_EQ_INT(retry_after_ms("Wed, 21 Oct 2015 24:00:00 GMT", now, 0), -1);
	CHECK_EQ_INT(retry_after_ms("Wed, 21 Oct 2015 07:60:00 GMT", now, 0), -1);
	CHECK_EQ_INT(retry_after_ms("Wed, 21 Oct 2015 07:29:00 UTC", now, 0), -1);
	CHECK_EQ_INT(retry_after_ms("Wed, 21 Oct 2015 07:29:00 GMT x", now, 0), -1);
	CHECK_EQ_INT(retry_after_ms("Wed, 21 Foo 2015 07:29:00 GMT", now, 0), -1);
	CHECK_EQ_INT(retry_after_ms("Wed, 1 Oct 2015 07:29:00 GMT", now, 0), -1);
	CHECK_EQ_INT(retry_after_ms("Wed, 21 Oct 15 07:29:00 GMT", now, 0), -1);
	CHECK_EQ_INT(retry_after_ms("Wed, 00 Oct 2015 07:29:00 GMT", now, 0), -1);
	CHECK_EQ_INT(retry_after_ms("2015-10-21T07:29:00Z", now, 0), -1);
	CHECK_EQ_INT(retry_after_ms("Sun Nov ", now, 0), -1);
	CHECK_EQ_INT(retry_after_ms("Sun Nov  6", now, 0), -1);
	CHECK_EQ_INT(retry_after_ms("Sun Nov  6 08:49:37", now, 0), -1);
	CHECK_EQ_INT(retry_after_ms("Sun,", now, 0), -1);
	CHECK_EQ_INT(retry_after_ms("Wed, 21 Oct 2015 07:29:00 GMT                      "
				    "                                                   ",
				    now, 0), -1);
}

static void test_retryable(void)
{
	static const long yes[] = { 0, 408, 425, 429, 500, 502, 503, 504, 599 };
	static const long no[] = { -1, 100, 200, 204, 301, 304, 400, 401, 403, 404,
				   409, 410, 413, 422, 499, 600, 999 };
	size_t i;

	for (i = 0; i < sizeof yes / sizeof yes[0]; i++)
		CHECK_EQ_INT(retry_status_retryable(yes[i]), 1);
	for (i = 0; i < sizeof no / sizeof no[0]; i++)
		CHECK_EQ_INT(retry_status_retryable(no[i]), 0);
}

int main(void)
{
	test_schedule();
	test_backoff();
	test_retry_after();
	test_retryable();
	return check_done();
}
