/*
 * metrics.h: process-wide counters and histograms, exported in Prometheus
 * text format (version 0.0.4).
 *
 * Every worker thread may bump any metric: values are relaxed atomics, and
 * a labelled series is created once under a mutex and never freed (see
 * metrics.c). Label values come from the configuration and the scripts
 * (provider names, model aliases, script names) or from fixed sets
 * (step, outcome, state, verdict, status class); never a job id, customer
 * or URL. Each labelled family holds at most METRICS_MAX_SERIES series;
 * past that, new label sets are counted in one series whose labels are
 * all "_other", so a scrape stays bounded whatever the configuration.
 */
#ifndef GENRELAY_METRICS_H
#define GENRELAY_METRICS_H

#include "buf.h"

#include <jansson.h>

#define METRICS_MAX_SERIES 64
#define METRICS_LABEL_MAX 64 /* longer label values are cut */

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
	M_STORE_ROUND_TRIPS,
	M_STORE_WAKEUPS,
	M_COUNT
};

void metrics_inc(enum metric m);
/* One loop iteration (epoll wake to the next wait) took us microseconds:
 * keeps the longest, exported as genrelay_loop_stall_max_seconds. */
void metrics_loop_iteration(long us);
void metrics_add(enum metric m, long n);

/* A job reached state (accepted, succeeded, failed, canceled) on provider
 * for model alias (genrelay_jobs_total). Terminal states with secs >= 0 also
 * observe genrelay_job_duration_seconds (created to terminal). */
void metrics_job(const char *provider, const char *alias, const char *state, double secs);
/* A provider call of step (submit, poll, cancel) ended: error (transport) or
 * an HTTP status; ms its duration (submits feed
 * genrelay_provider_submit_duration_seconds). */
void metrics_provider_call(const char *provider, const char *step, int error, long status,
			   double ms);
/* A webhook attempt ended: error (transport) or an HTTP status, ms long. */
void metrics_delivery(int error, long status, double ms);
/* A delivery answered 2xx secs after its job's result came in. */
void metrics_result_to_webhook(double secs);
/* A callback for provider (a configured one, else NULL) got verdict
 * (applied, duplicate, ignored, rejected). */
void metrics_callback(const char *provider, const char *verdict);
/* A call into script (its chunk name); failed when it raised or broke a limit. */
void metrics_script_call(const char *script, int failed);
/* n scripts were reloaded. */
void metrics_reloads(long n);
/* A store commit took secs. */
void metrics_store_commit(double secs);
/* The configuration was loaded at start (reload 0), or a reload (SIGHUP,
 * genrelay reload) was applied or refused (reload 1: counted in
 * genrelay_config_reloads_total{result}). The start and an applied reload
 * set genrelay_config_last_reload_success_timestamp_seconds to wall_s and
 * genrelay_config_last_reload_successful to 1; a refused one sets it to 0. */
void metrics_config_reload(int reload, int applied, double wall_s);
/* n configuration generations are held in memory now (the one in use, the
 * first, and older ones that requests still use). */
void metrics_config_generations(long n);

/* Figures read at scrape time; a negative value leaves its metric out. */
struct metrics_gauges {
	long inflight_fetches;  /* this worker's outbound requests */
	long jobs_stored;
	long queue_due;         /* work due and not leased */
	long queue_leased;      /* work under a live lease (running) */
	long queue_waiting;     /* poll rows not yet due: jobs waiting for a result */
	double oldest_due_age_s;
	long long store_bytes;
	long long store_max_bytes;
	/* The config's providers (borrowed; NULL leaves it out): their key
	 * pools' states feed genrelay_provider_keys{provider,state}. */
	const json_t *providers;
};
/* Appends the text exposition. */
void metrics_render(struct buf *b, const struct metrics_gauges *g);

#endif
