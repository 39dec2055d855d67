/*
 * retry.h: backoff policy for submits, polls and webhook deliveries.
 */
#ifndef GENRELAY_RETRY_H
#define GENRELAY_RETRY_H

#include <stddef.h>
#include <stdint.h>

/*
 * Delay in milliseconds before try number `attempt` (1 = the first retry,
 * after the first failure) under schedule[0..n) given in seconds. Past the end
 * of the schedule returns -1 (give up). jitter is the fraction (0..1) of the
 * delay that is randomised: the result is in [d*(1-jitter), d]. rnd is a
 * uniform random number in [0,1) supplied by the caller so tests are exact.
 */
int64_t retry_schedule_delay(const double *schedule, size_t n, unsigned attempt,
			     double jitter, double rnd);

/*
 * Exponential backoff: base_ms * 2^(attempt-1), capped at max_ms, with the
 * same jitter rule. attempt starts at 1.
 */
int64_t retry_backoff_delay(int64_t base_ms, int64_t max_ms, unsigned attempt,
			    double jitter, double rnd);

/*
 * Parses an HTTP Retry-After value (delta seconds or an IMF-fixdate) into
 * milliseconds from now_s (unix seconds). Returns -1 when absent or unparsable;
 * values are capped at cap_ms.
 */
int64_t retry_after_ms(const char *value, int64_t now_s, int64_t cap_ms);

/* 1 when an HTTP status (or 0 for a network error) is worth retrying:
 * network errors, 408, 425, 429 and 5xx. */
int retry_status_retryable(long status);

#endif
