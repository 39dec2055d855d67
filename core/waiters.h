/*
 * waiters.h: requests waiting for a job to end: sync runs (once their job
 * is committed) and long-polls (GET /v1/jobs/{id}?wait=N).
 *
 * A waiter is answered, with the job as the store has it then, when the job
 * ends on this worker (waiters_job_ended), when waiters_tick sees it ended
 * on another worker, or when its time runs out. How it is answered is the
 * caller's (the unified API's shapes or a front's), given as functions, so
 * this module calls nothing above it.
 */
#ifndef GENRELAY_WAITERS_H
#define GENRELAY_WAITERS_H

struct request;
struct worker;
struct job;

/* How a waiter's request is answered; static, borrowed while it waits. */
struct waiter_answers {
	/* the job as it is now (ended, or not when the time ran out) */
	void (*job)(struct request *r, const struct job *j);
	/* the job could not be read (404 JOB_NOT_FOUND, 503 UNAVAILABLE) */
	void (*error)(struct request *r, unsigned status, const char *code, const char *message);
};

/*
 * Suspends r until job_id ends or secs pass, then answers it through how.
 * r must not be waiting already. Out of memory: answered 503 at once.
 */
void waiters_add(struct request *r, const char *job_id, double secs,
		 const struct waiter_answers *how);
/* Job job_id ended on this worker (committed): answers its waiters. */
void waiters_job_ended(struct worker *w, const char *job_id);
/* Re-reads the jobs of the waiters (only with several workers: a job may
 * end on another one) and answers those that ended. */
void waiters_tick(struct worker *w);
/* r's connection ended: forgets its waiter, if it has one. */
void waiters_request_gone(struct request *r);
/* Shutdown: answers every waiter now. */
void waiters_abort_all(struct worker *w);

#endif
