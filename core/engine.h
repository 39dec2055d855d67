/*
 * engine.h: runs due work (submit, poll, deliver, cancel) for one worker.
 *
 * Work rows live in the store with a lease; a worker runs a row only while it
 * holds the lease, and every state change of a job is one transaction that
 * re-reads the job first, so two workers (or a callback racing a poll) never
 * move a job out of a terminal state.
 */
#ifndef GENRELAY_ENGINE_H
#define GENRELAY_ENGINE_H

#include <jansson.h>
#include <stdint.h>

#include "job.h"
#include "script.h"
#include "store.h"

struct worker;

void engine_init(struct worker *w);
void engine_shutdown(struct worker *w);
/* Work may be due at due_at (wall ms): make sure the due timer fires by then. */
void engine_kick(struct worker *w, int64_t due_at);
/* Runs a work item this worker already holds the lease of. */
void engine_dispatch(struct worker *w, const struct work *wk);

/*
 * Inside an open transaction: writes j, which the caller has set to a
 * terminal state, drops its pending provider work and queues the webhook
 * delivery (when the job has a webhook). *out gets the work to dispatch after
 * the commit, *nout 0 or 1.
 */
int engine_end_job_tx(struct worker *w, struct job *j, struct work *out, int *nout);
/* The same, with how the end came for the "ended" event's detail ("callback",
 * "poll", "submit", "deadline"; NULL: not said, e.g. a customer's cancel). */
int engine_end_job_via_tx(struct worker *w, struct job *j, const char *via,
			  struct work *out, int *nout);
/* After the commit of engine_end_job_tx: counts, dispatches, wakes waiters. */
void engine_job_ended(struct worker *w, const struct job *j, const struct work *out, int nout);

/*
 * Applies a script result ({state, request_id, output, error, data, poll_in})
 * to j. http_status is the provider's answer (0 for callbacks). Returns 1 when
 * j became terminal, 0 when it is still running, -1 on a malformed result
 * (j set to failed with SCRIPT_ERROR).
 */
int engine_apply_result(struct worker *w, struct job *j, json_t *res,
			long http_status, const char *script_name);

/*
 * 1 when a provider that declares callback_requires (https, public) would
 * refuse callbacks at public_url (judged by its spelling: scheme, and
 * loopback/private literals and localhost names, as the webhook URL guard
 * does), with the reason naming public_url and providers.NAME.callbacks in
 * why; 0 when usable, or when the provider polls only (callbacks = false).
 */
int engine_callbacks_refused(const char *public_url, const char *provider,
			     const struct script_provider_info *info, char *why, size_t whylen);

/* The `job` table handed to provider scripts; caller owns. */
json_t *engine_job_arg(const struct job *j);
/* The callback URL of a job into out. */
void engine_callback_url(struct worker *w, const struct job *j, char *out, size_t outlen);
/* Cached JWKS keys of a provider (borrowed) or NULL; starts a fetch when
 * missing or stale. */
json_t *engine_provider_keys(struct worker *w, const char *provider, int refresh);
/* Sends delivery d again now (also a dead one); 0, or -1 on a store error. */
int engine_redeliver(struct worker *w, struct delivery *d);
/*
 * Cancels job id (customer's, or anyone's when customer is NULL) in its own
 * transaction; an ended job is left as it is. 0 with *j filled (caller
 * clears), 1 when absent, <0 on a store error.
 */
int engine_cancel_job(struct worker *w, const char *id, const char *customer, struct job *j);
/* Ends a job as failed with code/message in its own transaction. */
void engine_fail_job(struct worker *w, const char *job_id, const char *code,
		     const char *message);

/*
 * Cancels job id (customer's, or anyone's when customer is NULL) in its own
 * transaction; an ended job is left as it is. 0 with *j filled (caller
 * clears), 1 when absent, <0 on a store error.
 */
int engine_cancel_job(struct worker *w, const char *id, const char *customer, struct job *j);

#endif
