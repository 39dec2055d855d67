/*
 * metrics.h: process-wide counters, exported in Prometheus text format.
 * Counters are relaxed atomics: any worker may bump them.
 */
#ifndef GENRELAY_METRICS_H
#define GENRELAY_METRICS_H

#include "buf.h"

enum metric {
	M_HTTP_REQUESTS,
	M_JOBS_ACCEPTED,
	M_JOBS_SUCCEEDED,
	M_JOBS_FAILED,
	M_JOBS_CANCELED,
	M_SUBMITS,
	M_SUBMIT_RETRIES,
	M_FAILOVERS,
	M_POLLS,
	M_CALLBACKS,
	M_CALLBACKS_REJECTED,
	M_CALLBACKS_DUPLICATE,
	M_DELIVERY_ATTEMPTS,
	M_DELIVERIES_OK,
	M_DELIVERIES_FAILED,
	M_DELIVERIES_DEAD,
	M_SCRIPT_ERRORS,
	M_STORE_ERRORS,
	M_COUNT
};

void metrics_inc(enum metric m);
/* One loop iteration (epoll wake to the next wait) took us microseconds:
 * keeps the longest, exported as genrelay_loop_stall_max_seconds. */
void metrics_loop_iteration(long us);
void metrics_add(enum metric m, long n);
/* Appends the text exposition; gauges are passed by the caller. */
void metrics_render(struct buf *b, long inflight_fetches, long jobs_stored);

#endif
