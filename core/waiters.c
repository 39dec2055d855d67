/*
 * waiters.c: sync runs and long-polls waiting for their job to end (see
 * waiters.h). The waiters of a worker are one list (w->waiters); each has
 * its own timer for when its time runs out.
 */
#include "waiters.h"

#include "config.h"
#include "job.h"
#include "loop.h"
#include "server.h"
#include "store.h"
#include "worker.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct waiter {
	struct request *r;
	struct worker *w;
	const struct waiter_answers *how;
	char job_id[48];
	struct loop_timer timer;
	struct waiter *next, **prevp;
};

/* Takes wt off the worker's list and r, and frees it. */
static void waiter_free(struct waiter *wt)
{
	*wt->prevp = wt->next;
	if (wt->next)
		wt->next->prevp = wt->prevp;
	loop_timer_stop(wt->w->loop, &wt->timer);
	wt->r->waiter = NULL;
	free(wt);
}

/* Answers the waiter with its job as the store has it now (frees wt). */
static void waiter_answer(struct waiter *wt)
{
	struct request *r = wt->r;
	const struct waiter_answers *how = wt->how;
	struct job j;
	int rc = store_job_get(wt->w->store, wt->job_id, NULL, &j);
	waiter_free(wt);
	if (rc == 1) {
		how->error(r, 404, "JOB_NOT_FOUND", "no such job");
	} else if (rc != 0) {
		how->error(r, 503, "UNAVAILABLE", "the store is unavailable");
	} else {
		how->job(r, &j);
		job_clear(&j);
	}
}

static void waiter_timeout(struct loop_timer *t)
{
	waiter_answer(t->arg);
}

void waiters_add(struct request *r, const char *job_id, double secs,
		 const struct waiter_answers *how)
{
	struct worker *w = r->w;
	struct waiter *wt = calloc(1, sizeof *wt);
	if (!wt) {
		how->error(r, 503, "UNAVAILABLE", "out of memory");
		return;
	}
	wt->r = r;
	wt->w = w;
	wt->how = how;
	snprintf(wt->job_id, sizeof wt->job_id, "%s", job_id);
	wt->next = w->waiters;
	if (w->waiters)
		w->waiters->prevp = &wt->next;
	wt->prevp = &w->waiters;
	w->waiters = wt;
	r->waiter = wt;
	loop_timer_init(&wt->timer, waiter_timeout, wt);
	loop_timer_set(w->loop, &wt->timer, loop_now_ms() + (int64_t)(secs * 1000));
	server_suspend(r);
}

void waiters_job_ended(struct worker *w, const char *job_id)
{
	struct waiter *wt = w->waiters, *n;
	for (; wt; wt = n) {
		n = wt->next;
		if (strcmp(wt->job_id, job_id) == 0)
			waiter_answer(wt);
	}
}

void waiters_tick(struct worker *w)
{
	struct waiter *wt = w->waiters, *n;
	if (w->cfg->workers <= 1)
		return;
	for (; wt; wt = n) {
		struct job j;
		n = wt->next;
		if (store_job_get(w->store, wt->job_id, NULL, &j) == 0) {
			int t = job_terminal(j.status);
			job_clear(&j);
			if (t)
				waiter_answer(wt);
		}
	}
}

void waiters_request_gone(struct request *r)
{
	if (r->waiter)
		waiter_free(r->waiter);
}

void waiters_abort_all(struct worker *w)
{
	while (w->waiters)
		waiter_answer(w->waiters);
}
