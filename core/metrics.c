#include "metrics.h"

#include <stdatomic.h>

static atomic_long counters[M_COUNT];

static const struct {
	const char *name;
	const char *help;
} info[M_COUNT] = {
	[M_HTTP_REQUESTS] = { "genrelay_http_requests_total", "API requests answered" },
	[M_JOBS_ACCEPTED] = { "genrelay_jobs_accepted_total", "Jobs committed and answered 202" },
	[M_JOBS_SUCCEEDED] = { "genrelay_jobs_succeeded_total", "Jobs that ended succeeded" },
	[M_JOBS_FAILED] = { "genrelay_jobs_failed_total", "Jobs that ended failed" },
	[M_JOBS_CANCELED] = { "genrelay_jobs_canceled_total", "Jobs canceled" },
	[M_SUBMITS] = { "genrelay_provider_submits_total", "Submit requests sent to providers" },
	[M_SUBMIT_RETRIES] = { "genrelay_provider_submit_retries_total", "Submits retried after a temporary failure" },
	[M_FAILOVERS] = { "genrelay_failovers_total", "Jobs moved to their next target" },
	[M_POLLS] = { "genrelay_provider_polls_total", "Poll requests sent to providers" },
	[M_CALLBACKS] = { "genrelay_callbacks_total", "Provider callbacks received" },
	[M_CALLBACKS_REJECTED] = { "genrelay_callbacks_rejected_total", "Callbacks refused (token or signature)" },
	[M_CALLBACKS_DUPLICATE] = { "genrelay_callbacks_duplicate_total", "Callbacks for jobs already terminal" },
	[M_DELIVERY_ATTEMPTS] = { "genrelay_delivery_attempts_total", "Webhook delivery attempts" },
	[M_DELIVERIES_OK] = { "genrelay_deliveries_succeeded_total", "Webhooks answered 2xx" },
	[M_DELIVERIES_FAILED] = { "genrelay_delivery_attempts_failed_total", "Webhook attempts that failed" },
	[M_DELIVERIES_DEAD] = { "genrelay_deliveries_dead_total", "Webhooks dead after the last try" },
	[M_SCRIPT_ERRORS] = { "genrelay_script_errors_total", "Script calls that raised or broke a limit" },
	[M_STORE_ERRORS] = { "genrelay_store_errors_total", "Store operations that failed" },
};

void metrics_inc(enum metric m)
{
	atomic_fetch_add_explicit(&counters[m], 1, memory_order_relaxed);
}

void metrics_add(enum metric m, long n)
{
	atomic_fetch_add_explicit(&counters[m], n, memory_order_relaxed);
}

static atomic_long loop_max_us;

void metrics_loop_iteration(long us)
{
	long cur = atomic_load_explicit(&loop_max_us, memory_order_relaxed);
	while (us > cur && !atomic_compare_exchange_weak_explicit(&loop_max_us, &cur, us,
								  memory_order_relaxed,
								  memory_order_relaxed))
		;
}

void metrics_render(struct buf *b, long inflight_fetches, long jobs_stored)
{
	for (int i = 0; i < M_COUNT; i++) {
		buf_printf(b, "# HELP %s %s\n# TYPE %s counter\n%s %ld\n", info[i].name,
			   info[i].help, info[i].name, info[i].name,
			   atomic_load_explicit(&counters[i], memory_order_relaxed));
	}
	buf_printf(b, "# HELP genrelay_outbound_inflight Outbound HTTP requests in flight on this worker\n"
		      "# TYPE genrelay_outbound_inflight gauge\ngenrelay_outbound_inflight %ld\n",
		   inflight_fetches);
	buf_printf(b, "# HELP genrelay_jobs_stored Jobs in the store\n"
		      "# TYPE genrelay_jobs_stored gauge\ngenrelay_jobs_stored %ld\n",
		   jobs_stored);
	buf_printf(b, "# HELP genrelay_loop_stall_max_seconds Longest event-loop iteration since start\n"
		      "# TYPE genrelay_loop_stall_max_seconds gauge\ngenrelay_loop_stall_max_seconds %.6f\n",
		   (double)atomic_load_explicit(&loop_max_us, memory_order_relaxed) / 1e6);
}
