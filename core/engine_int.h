/*
 * engine_int.h: what the engine's files share, and nothing outside them
 * includes (as SQLite's sqliteInt.h). The engine is layered; each file
 * calls only the files below it, never one above (tools/layers checks it
 * on the built objects):
 *
 *   callbacks.c      a provider's callback: the HTTP layer's handler, which
 *                    calls engine.c (engine_provider_keys), jobflow.c and
 *                    engine_work.c
 *   engine.c         the due timer's claims, dispatch of a row to its step,
 *                    starting the work queued for after the commit, and
 *                    what the worker and the HTTP layer call (engine.h)
 *   steps.c          submit, poll and cancel at the provider
 *   delivery.c       webhook delivery
 *   jobflow.c        the one place that changes a job's state
 *   provider.c       the calls to a provider (adapter functions, requests)
 *   jwks.c           the providers' signing keys
 *   engine_work.c    bottom: arming the due timer, the steps in flight and
 *                    their leases, a row's outcome, events, random numbers,
 *                    settings, and the queue of work to start after the
 *                    store's commit (engine_after_add)
 *
 * engine.c calls steps.c, delivery.c, jobflow.c, jwks.c and engine_work.c;
 * steps.c calls jobflow.c, provider.c and engine_work.c; delivery.c,
 * jobflow.c, provider.c and jwks.c call engine_work.c only, which calls
 * none of them.
 *
 * A lower file that has work to start (a delivery, a failover's submit, a
 * provider cancel, a redelivery) never dispatches it: it queues it with
 * engine_after_add, and engine_after_commit (engine.c), which worker_commit
 * calls at the end of every loop iteration, starts it once the store has
 * committed.
 *
 * The upper layers (worker, HTTP) see engine.h only. Nothing here includes
 * api.h, server.h, front.h, ui.h or microhttpd.h: a notification that goes up
 * a layer goes through w->hooks (worker.h).
 *
 * Everything runs on the worker's loop thread.
 */
#ifndef GENRELAY_ENGINE_INT_H
#define GENRELAY_ENGINE_INT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "job.h"
#include "store.h"

struct config;
struct script_provider_info;
struct worker;

/* Work to start once the store commits; job taken when not NULL. */
struct engine_after {
	struct work wk;
	struct job *job;
	uint64_t mark; /* engine_after_add_written: the group's store_answer_mark, else 0 */
};

/* The engine's own state of one worker (w->engine), made by engine_init. */
struct engine {
	struct step *steps;            /* in flight, newest first */
	struct engine_after *after;    /* waiting for the commit (engine_after_add) */
	size_t nafter, capafter;
	json_t *jwks;                  /* jwks.c: provider -> {"keys":[...],"at":ms,"pending"} */
	int64_t renew_at;              /* next lease heartbeat, monotonic ms */
};

/* A claimed row's lease (jobs.lease_s); the heartbeat renews it while its
 * step runs. */
#define ENGINE_LEASE_MS(w) ((int64_t)((w)->cfg->lease_s * 1000))
#define ENGINE_ERR_MAX 512

enum step_kind { STEP_SUBMIT, STEP_POLL, STEP_DELIVER, STEP_CANCEL };

/*
 * One piece of due work in flight, from the load of its job to its result.
 * Owned by the engine (its list of steps in flight) from step_new to
 * step_free; a fetch started for it borrows it until its callback ran.
 *
 * job is the job as loaded when the step began, with input and targets
 * parsed once (they never change during a job's life). It is what the
 * step's requests are built from; the step's result is applied to the row
 * as re-read inside the result's transaction (jobflow_begin), never to this
 * copy, so a job that ended meanwhile is never moved out of its end.
 */
struct step {
	struct worker *w;
	enum step_kind kind;
	struct work wk;        /* the row the step runs under its lease */
	struct job job;        /* owned; empty for deliveries */
	json_t *input;         /* job.input parsed (owned), or NULL */
	json_t *targets;       /* job.targets parsed (owned), or NULL */
	int hops;              /* poll: `next` requests followed so far */
	char version[32];      /* the script version that built the request */
	char cb_token[40];     /* provider.c: job.id's callback token, made on first use ("" not yet) */
	int64_t started_ms;
	struct step *prev, *next; /* the engine's list of steps in flight */
};

/* ---------- engine_work.c: the bottom layer, callable from every file ---------- */

/*
 * A new step for row wk (copied), listed as in flight (its lease is renewed
 * by the heartbeat) and counted in w->inflight_steps. size is the bytes to
 * allocate, at least sizeof(struct step), for a step embedded at the start
 * of a larger struct (a delivery's); zeroed. job: the row's job, taken (the
 * caller's struct is left empty), or NULL. NULL when out of memory (job is
 * then cleared).
 */
struct step *step_new(struct worker *w, enum step_kind kind, const struct work *wk,
		      struct job *job, size_t size);
/* Unlists st and frees it with its job. */
void step_free(struct step *st);
/*
 * Loads st->job from the store when the step was started without one, and
 * parses its input and targets. 0; or 1 when the job is gone or ended (the
 * row is finished) or the store failed (the row runs again in a second).
 */
int step_load_job(struct step *st);
/* The `job` table handed to provider scripts for j, with the step's parsed
 * input (j is the step's job or its row re-read later). Caller owns. */
json_t *step_job_arg(const struct step *st, const struct job *j);

/* Releases row wk to run again at due (wall ms) after tries retries. */
void engine_reschedule(struct worker *w, const struct work *wk, int64_t due, int tries);
/* Deletes row wk (its work is done). */
void engine_work_done(struct worker *w, const struct work *wk);
/* Adds an event to the job's history (detail taken, scrubbed of secrets).
 * Meant for the caller's transaction. */
void engine_event(struct worker *w, const char *job_id, const char *kind, json_t *detail);
/* One member of an event's detail (engine_event_fields): str, or NULL for
 * null, or num when is_num. key is written as it is (a plain literal). */
struct event_field {
	const char *key;
	const char *str;
	int is_num;
	long long num;
};
/*
 * engine_event with a detail of n members written as JSON text directly:
 * {"key":value,...} byte for byte as json_dumps(JSON_COMPACT) writes the
 * object json_pack makes of them, without either. -1 when a string is not
 * valid UTF-8 or the text would pass 64 KB: nothing is added, for the
 * caller to take engine_event (jansson's way, whatever it makes of them).
 */
int engine_event_fields(struct worker *w, const char *job_id, const char *kind,
			const struct event_field *f, size_t n);
/* A random number in [0, 1) for jitter and key picks. */
double engine_random(void);
/*
 * One setting of a provider (the script's defaults merged with the config's
 * providers.NAME, secrets removed), or NULL. Borrowed from the script host
 * (script_provider_settings_ref) until it next loads or refreshes: use it
 * within the step, never across a return to the loop.
 */
json_t *engine_setting(struct worker *w, const char *provider, const char *key);
/*
 * Queues row wk (copied; this worker holds its lease, possibly not yet
 * committed) to start after the store's next commit: engine_after_commit
 * (engine.c) starts it at the end of this loop iteration, or drops it when
 * the commit fails (the row stays due in the store). job: the row's job,
 * taken (freed with job_clear and free), or NULL. Out of memory: dropped
 * the same way.
 */
void engine_after_add(struct worker *w, const struct work *wk, struct job *job);
/* The same for a row the group just committed wrote (called right after
 * its store_commit): dropped too when the commit kept the batch but rolled
 * that group back alone (store_answer_lost), since the row went with it. */
void engine_after_add_written(struct worker *w, const struct work *wk);

/* ---------- provider.c: the calls to a provider ---------- */

struct fetch_response;
/*
 * Calls the adapter's fn for job j (the step's job, or its row re-read
 * later): fn(job, ctx), or fn(first, job, ctx) when first is given
 * (borrowed). ctx carries the job's callback URL (unless the provider polls
 * only) and its pool key. 0 with *out (caller owns), or <0 with err
 * (counted as a script error).
 */
int provider_call(struct step *st, const struct job *j, const char *fn,
		  json_t *first, json_t **out, char *err, size_t errlen);
/*
 * Starts the fetch of a script's request table ({method?, url, headers?,
 * body?}) for st, which the fetch borrows until cb ran. 0, or -1 with err
 * (cb is then never called; st is still the caller's).
 */
int provider_request_start(struct step *st, json_t *req,
			   void (*cb)(void *arg, const struct fetch_response *res),
			   char *err, size_t errlen);
/* The `res` table handed to scripts for a provider's answer. Caller owns. */
json_t *provider_response_arg(const struct fetch_response *res);
/* "HTTP 503", or the transport error, into out. */
void provider_describe(const struct fetch_response *res, char *out, size_t outlen);
/* The answer's Retry-After in ms (capped), or -1 when it has none. */
int64_t provider_retry_after(const struct fetch_response *res);
/* The id of the pool key job j took (its data's "key_id") into id; "" none. */
void provider_key_id(const struct job *j, char *id, size_t idlen);
/* 1 when a key of the provider's pool (settings ps) is usable now. */
int provider_pool_has_usable(const char *provider, const json_t *ps);

/* ---------- steps.c ---------- */

/* steps.c: runs a submit, poll or provider cancel row. job: the row's job
 * when the caller has it (taken), else NULL. */
void steps_submit(struct worker *w, const struct work *wk, struct job *job);
void steps_poll(struct worker *w, const struct work *wk);
void steps_cancel(struct worker *w, const struct work *wk);
/* engine_callbacks_refused (engine.h). */
int steps_callbacks_refused(const char *public_url, const char *provider,
			    const struct script_provider_info *info, char *why, size_t whylen);


#endif
