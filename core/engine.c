/*
 * engine.c: the due-work engine of one worker (engine.h): the due timer
 * that claims rows while the worker has room, the steps in flight and their
 * lease heartbeat, the work that waits for the store's commit, and the
 * dispatch of a row to its step (steps.c, delivery.c).
 *
 * The top of the engine (engine_int.h): it calls steps.c, delivery.c,
 * jobflow.c, jwks.c and engine_work.c, and none of them calls it. The work
 * they queue for after the commit (engine_after_add) is started here, by
 * engine_after_commit.
 */
#include "engine.h"

#include "config.h"
#include "delivery.h"
#include "engine_int.h"
#include "jobflow.h"
#include "jwks.h"
#include "log.h"
#include "metrics.h"
#include "script.h"
#include "scrub.h"
#include "sign.h"
#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLAIM_MAX 128

/* ---------- due timer ---------- */

/*
 * Claims what this worker may run now (bounded by max_inflight: the rest
 * waits in the store, due and unleased, for the next round) and dispatches
 * it; then sleeps until the next due row, at most a second (another worker
 * or instance may add work).
 */
static void due_fire(struct loop_timer *t)
{
	struct worker *w = t->arg;
	struct work items[CLAIM_MAX];
	size_t n = 0, room = CLAIM_MAX;
	int64_t now = loop_wall_ms();
	if (w->stopping)
		return;
	if (w->inflight_steps >= w->cfg->max_inflight) {
		loop_timer_set(w->loop, &w->due_timer, loop_now_ms() + 20);
		return;
	}
	if ((long)room > w->cfg->max_inflight - w->inflight_steps)
		room = (size_t)(w->cfg->max_inflight - w->inflight_steps);
	if (store_work_claim(w->store, w->owner, now, ENGINE_LEASE_MS(w), items, room, &n) < 0) {
		metrics_inc(M_STORE_ERRORS);
		log_warn("store: claiming work failed: %s", store_errmsg(w->store));
		loop_timer_set(w->loop, &w->due_timer, loop_now_ms() + 1000);
		return;
	}
	for (size_t i = 0; i < n; i++)
		engine_dispatch(w, &items[i]);
	if (n == room) {
		loop_timer_set(w->loop, &w->due_timer, loop_now_ms() + (n == CLAIM_MAX ? 0 : 20));
		return;
	}
	int64_t next;
	/* jobs.due_check_s bounds the sleep: the safety net under the store's
	 * announcements of new work (engine_kick). */
	int64_t check = (int64_t)(w->cfg->due_check_s * 1000), delay = check;
	if (store_work_next_due(w->store, now, &next) == 0) {
		delay = next - loop_wall_ms();
		if (delay < 5)
			delay = 5;
		if (delay > check)
			delay = check;
	}
	loop_timer_set(w->loop, &w->due_timer, loop_now_ms() + delay);
}

int engine_init(struct worker *w)
{
	if (!w->engine && !(w->engine = calloc(1, sizeof *w->engine)))
		return -1;
	if (!w->engine->jwks && !(w->engine->jwks = json_object()))
		return -1;
	loop_timer_init(&w->due_timer, due_fire, w);
	if (w->cfg->role != ROLE_API)
		loop_timer_set(w->loop, &w->due_timer, loop_now_ms());
	return 0;
}

void engine_shutdown(struct worker *w)
{
	loop_timer_stop(w->loop, &w->due_timer);
}

void engine_free(struct worker *w)
{
	struct engine *e = w->engine;
	if (!e)
		return;
	while (e->steps)
		step_free(e->steps);
	for (size_t i = 0; i < e->nafter; i++) {
		if (e->after[i].job)
			job_clear(e->after[i].job);
		free(e->after[i].job);
	}
	free(e->after);
	jwks_free(w); /* after the fetcher, like the steps */
	json_decref(e->jwks);
	free(e);
	w->engine = NULL;
}

/* ---------- dispatch, and the work that waited for the commit ---------- */

/* Runs wk now; job: its job (taken) or NULL. */
static void run(struct worker *w, const struct work *wk, struct job *job)
{
	log_ctx_job(wk->job_id, NULL, NULL); /* the step's load adds customer and provider */
	if (w->cfg->role == ROLE_API) {
		/* --role api never runs work: the row goes back to the store, due
		 * now and unleased, for the workers to claim. */
		if (store_work_reschedule(w->store, wk->id, loop_wall_ms(), wk->tries) < 0)
			log_warn("store: handing work over: %s", store_errmsg(w->store));
		goto drop;
	}
	switch (wk->kind) {
	case WORK_SUBMIT:
		steps_submit(w, wk, job); /* takes the job's strings */
		free(job);
		return;
	case WORK_POLL:
		steps_poll(w, wk);
		break;
	case WORK_DELIVER:
		delivery_run(w, wk);
		break;
	case WORK_CANCEL:
		steps_cancel(w, wk);
		break;
	default:
		engine_work_done(w, wk);
	}
drop:
	if (job)
		job_clear(job);
	free(job);
}

void engine_dispatch(struct worker *w, const struct work *wk)
{
	/* The row (or its lease) is not committed yet: start after the commit. */
	if (store_pending(w->store))
		engine_after_add(w, wk, NULL);
	else
		run(w, wk, NULL);
}

void engine_dispatch_new(struct worker *w, const struct work *wk, const struct job *j)
{
	/* The copy is owned by the after queue, then by the submit's step. */
	struct job *copy = calloc(1, sizeof *copy);
	if (copy && job_copy(copy, j) < 0) {
		free(copy);
		copy = NULL; /* the submit reads the job back */
	}
	if (store_pending(w->store))
		engine_after_add(w, wk, copy);
	else
		run(w, wk, copy);
}

void engine_after_commit(struct worker *w, int committed)
{
	struct engine *e = w->engine;
	if (!e)
		return;
	size_t n = e->nafter;
	struct engine_after *list = e->after;
	e->after = NULL;
	e->nafter = e->capafter = 0;
	/* Work a group wrote that was rolled back alone went with it; told
	 * apart before any of the rest runs (what runs may begin the next
	 * batch, which forgets this one's losses). */
	for (size_t i = 0; i < n; i++)
		if (list[i].mark && store_answer_lost(w->store, list[i].mark))
			list[i].mark = UINT64_MAX;
	for (size_t i = 0; i < n; i++) {
		if (committed && list[i].mark != UINT64_MAX) {
			run(w, &list[i].wk, list[i].job);
		} else if (list[i].job) {
			job_clear(list[i].job);
			free(list[i].job);
		}
	}
	free(list);
}

/* ---------- what the HTTP layer calls, held by other modules ---------- */

int engine_cancel_job(struct worker *w, const char *id, const char *customer, struct job *j)
{
	return jobflow_cancel(w, id, customer, j);
}

int engine_redeliver(struct worker *w, struct delivery *d)
{
	return delivery_redeliver(w, d);
}

json_t *engine_provider_keys(struct worker *w, const char *provider, int refresh)
{
	return jwks_provider_keys(w, provider, refresh);
}

json_t *engine_job_arg(const struct job *j)
{
	return job_script_arg(j, NULL);
}

int engine_callbacks_refused(const char *public_url, const char *provider,
			     const struct script_provider_info *info, char *why, size_t whylen)
{
	return steps_callbacks_refused(public_url, provider, info, why, whylen);
}
