/*
 * jobflow.h: the one place that changes a job's state.
 *
 * Submits, polls, callbacks, cancels, deadlines and failures all change a
 * job the same way:
 *
 *     struct jobflow f;
 *     if (jobflow_begin(w, &f, job_id, NULL) == 0) {  // begin, re-read the row
 *         ... decide from f.job (never from an older copy) ...
 *         jobflow_end(&f, "poll");     // or jobflow_commit / jobflow_rollback
 *         job_clear(&f.job);
 *     }
 *
 * jobflow_begin opens a transaction and reads the job row inside it; the
 * change is written to that row, so a job that another worker (or a callback
 * racing a poll) ended meanwhile is seen ended and never moved out of its
 * end: ending a job that was terminal when read changes nothing (jobflow_end
 * returns 1). The end of a job (jobflow_end_tx) writes its terminal
 * state, its cost, drops its pending provider work, queues its webhook
 * delivery and the "ended" event, or moves it to its alias's next target;
 * after the commit come the metrics, the log line, the work to start
 * (queued with engine_after_add, started at the end of the loop iteration)
 * and w->hooks.job_ended, exactly once per end; a job that ended or moved
 * to its next target lets go of its pool key's slot (keypool_release).
 *
 * Layer (engine_int.h): calls engine_work.c only; called by steps.c,
 * callbacks.c and engine.c (jobflow_cancel).
 *
 * Loop thread only. Every jobflow_begin that returned 0 is finished by
 * exactly one of jobflow_commit, jobflow_end or jobflow_rollback.
 */
#ifndef GENRELAY_JOBFLOW_H
#define GENRELAY_JOBFLOW_H

#include <jansson.h>
#include <stdint.h>

#include "job.h"
#include "store.h"

struct worker;

#define JOBFLOW_AFTER_MAX 4

struct jobflow {
	struct worker *w;
	struct job job;        /* the row as read in the transaction; the caller
				* changes it and clears it (job_clear) after finishing */
	json_t *targets;       /* job.targets parsed (borrowed from a step), or
				* NULL: parsed when a failover needs them */
	struct work after[JOBFLOW_AFTER_MAX]; /* queued by jobflow_commit, started once committed */
	int nafter;
	int64_t kick_at;       /* > 0: the due timer fires by then, after the commit */
	/* private */
	int open;              /* the transaction is open */
	int ended;             /* jobflow_end_tx ran: notify after the commit */
	int moved;             /* jobflow_failover_tx moved the job: its pool key is let go */
	enum job_status read_status;
};

/*
 * Begins a transaction and reads job id (customer non-NULL: only that
 * customer's) into f->job. 0: the transaction is open; 1: no such job, <0:
 * a store error (nothing open, f->job empty in both).
 */
int jobflow_begin(struct worker *w, struct jobflow *f, const char *job_id,
		  const char *customer);

/*
 * In f's transaction: ends f->job, which the caller set terminal (or failed
 * with a code its alias fails over on: it then moves to its next target and
 * a submit of it goes into f->after). via says how the end came, for the
 * "ended" event ("callback", "poll", "submit", "deadline"; NULL: not said,
 * e.g. a customer's cancel). 0; 1 when the job was terminal when read
 * (nothing written: its first end stands); <0 on a store error. On 1 or <0
 * the caller rolls back.
 */
int jobflow_end_tx(struct jobflow *f, const char *via);

/* Commits f's transaction, then: when the job ended, its metrics, log line
 * and w->hooks.job_ended (once); when it ended or moved to its next
 * target, its pool key's max_inflight slot is let go; f->after is queued to start after the
 * store's commit (engine_after_add) and the due timer kicked for
 * f->kick_at. 0, or <0 when the commit failed (rolled back, nothing
 * queued). */
int jobflow_commit(struct jobflow *f);
/* Rolls f's transaction back; nothing is started. */
void jobflow_rollback(struct jobflow *f);
/* jobflow_end_tx then jobflow_commit (rolled back when the job had ended
 * already, 1, or on a store error, <0, logged: the work row that led here
 * runs again). 0 when this call ended it. */
int jobflow_end(struct jobflow *f, const char *via);
/* Sets f->job failed with code and message, then jobflow_end. */
int jobflow_fail(struct jobflow *f, const char *code, const char *message, const char *via);

/*
 * In f's transaction: moves f->job to its next target when it has one
 * (queued again, nothing of the last provider kept, a "failover" event with
 * code and reason, its work replaced by a submit in f->after): 1. 0 when it
 * has no next target (nothing changed), <0 on a store error.
 */
int jobflow_failover_tx(struct jobflow *f, const char *code, const char *reason);
/* 1 when j has a target after its current one (targets: j's parsed, or
 * NULL to parse them). */
int jobflow_has_next_target(const struct job *j, json_t *targets);

/*
 * Applies a script result ({state, request_id, output, error, data, cost})
 * to j (in memory). http_status is the provider's answer (0 for callbacks).
 * Returns 1 when j became terminal, 0 when it is still running, -1 on a
 * malformed result (j set to failed with SCRIPT_ERROR naming script_name).
 */
int jobflow_apply_result(struct job *j, json_t *res, long http_status,
			 const char *script_name);
/* Merges the object data (borrowed; anything else is ignored) into j's data. */
void jobflow_merge_data(struct job *j, json_t *data);

/*
 * Cancels job id (customer's, or anyone's when customer is NULL): ended as
 * canceled, with a provider cancel queued when the adapter has one. An
 * ended job is left as it is. 0 with *j filled (caller clears), 1 when
 * absent, <0 on a store error.
 */
int jobflow_cancel(struct worker *w, const char *id, const char *customer, struct job *j);

#endif
