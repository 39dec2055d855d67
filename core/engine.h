/*
 * engine.h: the due-work engine of one worker, as the worker and the HTTP
 * layer see it.
 *
 * Work (submit, poll, deliver, provider cancel) is rows in the store with a
 * due time and a lease. The engine claims due rows while it has room
 * (max_inflight), runs each as a step (steps.c, delivery.c) under its lease,
 * renews the leases of the steps in flight, and changes a job's state only
 * through jobflow.c, which re-reads the job inside the transaction that
 * changes it, so two workers (or a callback racing a poll) never move a job
 * out of a terminal state.
 *
 * Layer: above everything the engine is made of (engine_int.h lists its
 * files, bottom up); called by the worker and the HTTP layer. engine_kick,
 * engine_after_pending and engine_renew_leases are defined in the bottom
 * file (engine_work.c), so the engine's lower files may call engine_kick
 * too; nothing else here is for them.
 *
 * Everything here runs on the worker's loop thread.
 */
#ifndef GENRELAY_ENGINE_H
#define GENRELAY_ENGINE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "job.h"
#include "script.h"
#include "store.h"

struct worker;

/* Sets up w->engine and the due timer (not on --role api). 0 or -1. */
int engine_init(struct worker *w);
/* Stops claiming work (drain); steps in flight finish. */
void engine_shutdown(struct worker *w);
/* Frees w->engine and any step still listed (after the fetcher is freed,
 * whose callbacks then never run). NULL-safe. */
void engine_free(struct worker *w);

/* Work may be due at due_at (wall ms): make sure the due timer fires by then. */
void engine_kick(struct worker *w, int64_t due_at);
/* Runs a work item this worker already holds the lease of; while the store
 * has uncommitted writes it waits for the commit (engine_after_commit). The
 * engine's lower files never call it: they queue with engine_after_add. */
void engine_dispatch(struct worker *w, const struct work *wk);
/* The same for a submit row of a job the caller just inserted: j (borrowed)
 * is copied, so the submit does not read the job back. */
void engine_dispatch_new(struct worker *w, const struct work *wk, const struct job *j);
/* 1 when work waits for the store's commit. */
int engine_after_pending(struct worker *w);
/* After a commit: starts the work that waited for it (committed 1), or drops
 * it (0: the commit failed, or the worker is finishing; its rows stay due in
 * the store). worker_commit calls it at the end of every loop iteration
 * while work waits, whether or not the store had writes. */
void engine_after_commit(struct worker *w, int committed);
/* The lease heartbeat (called every second): every lease_s/3 the rows of
 * the steps in flight get a fresh lease. */
void engine_renew_leases(struct worker *w);

/*
 * Cancels job id (customer's, or anyone's when customer is NULL) in its own
 * transaction; an ended job is left as it is. 0 with *j filled (caller
 * clears), 1 when absent, <0 on a store error.
 */
int engine_cancel_job(struct worker *w, const char *id, const char *customer, struct job *j);
/* Sends delivery d again now (also a dead one); d stays the caller's. 0, or
 * -1 on a store error (nothing changed). */
int engine_redeliver(struct worker *w, struct delivery *d);
/* Cached JWKS keys of a provider (borrowed until the next fetch ends) or
 * NULL; starts a fetch when missing or stale (refresh: stale after a minute). */
json_t *engine_provider_keys(struct worker *w, const char *provider, int refresh);

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

#endif
