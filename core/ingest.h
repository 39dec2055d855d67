/*
 * ingest.h: new runs into the store. A checked run (runreq.h) is resolved
 * to its providers, checked against the customer's budget, built into a
 * job and queued; once per loop iteration the queue is committed in one
 * transaction (the group commit) and each run's request is answered after
 * the commit, never before. The submits are then handed to the engine.
 */
#ifndef GENRELAY_INGEST_H
#define GENRELAY_INGEST_H

#include "runreq.h"
#include "waiters.h"

struct request;
struct worker;
struct job;
struct config_customer;

/* How a run's request is answered (the unified API's shapes or a front's);
 * static, borrowed while the run is queued or waits. */
struct ingest_answers {
	/* committed (or, for a repeated Idempotency-Key, the first job) */
	void (*accepted)(struct request *r, const struct job *j);
	/* a sync run's wait ended (job ended or time ran out); wait.error
	 * also answers the refusals after the commit (409, 503) */
	struct waiter_answers wait;
};

/*
 * Queues the run rq (checked by runreq_parse or runreq_check; borrowed for
 * the call) of customer c for this iteration's group commit: r is suspended
 * and answered through how after the commit. Returns 0, or -1 with *err
 * filled and nothing answered (404 MODEL_NOT_FOUND when no provider serves
 * the model, 402 BUDGET_EXCEEDED, 503 UNAVAILABLE).
 */
int ingest_submit(struct request *r, const struct config_customer *c, const struct runreq *rq,
		  const struct ingest_answers *how, struct api_error *err);

/*
 * The group commit: commits every run queued since the last call in one
 * transaction and answers their requests. Called once per loop iteration
 * (the worker's idle callback) and when draining; the caller holds no open
 * transaction on w->store. See ingest.c for what the transaction holds.
 */
void ingest_flush(struct worker *w);

/* r's connection ended: takes its run out of the queue, if queued. */
void ingest_request_gone(struct request *r);

#endif
