/*
 * engine.c: the due-work engine of one worker (engine.h): the due timer
 * that claims rows while the worker has room, the steps in flight and their
 * lease heartbeat, the work that waits for the store's commit, and the
 * dispatch of a row to its step (steps.c, delivery.c).
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

void engine_kick(struct worker *w, int64_t due_at)
{
	if (w->stopping || w->cfg->role == ROLE_API)
		return;
	int64_t delay = due_at - loop_wall_ms();
	if (delay < 0)
		delay = 0;
	int64_t at = loop_now_ms() + delay;
	if (!loop_timer_active(&w->due_timer) || w->due_timer.at_ms > at)
		loop_timer_set(w->loop, &w->due_timer, at);
}

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
	int64_t delay = 1000;
	if (store_work_next_due(w->store, now, &next) == 0) {
		delay = next - loop_wall_ms();
		if (delay < 5)
			delay = 5;
		if (delay > 1000)
			delay = 1000;
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
	json_decref(e->jwks);
	free(e);
	w->engine = NULL;
}

/* ---------- steps in flight ---------- */

struct step *step_new(struct worker *w, enum step_kind kind, const struct work *wk,
		      struct job *job, size_t size)
{
	struct engine *e = w->engine;
	struct step *st = calloc(1, size < sizeof *st ? sizeof *st : size);
	if (!st) {
		if (job)
			job_clear(job);
		return NULL;
	}
	st->w = w;
	st->kind = kind;
	if (wk)
		st->wk = *wk;
	if (job) {
		st->job = *job; /* taken */
		memset(job, 0, sizeof *job);
	}
	st->started_ms = loop_wall_ms();
	st->next = e->steps;
	if (e->steps)
		e->steps->prev = st;
	e->steps = st;
	w->inflight_steps++;
	return st;
}

void step_free(struct step *st)
{
	struct engine *e = st->w->engine;
	if (st->prev)
		st->prev->next = st->next;
	else
		e->steps = st->next;
	if (st->next)
		st->next->prev = st->prev;
	st->w->inflight_steps--;
	job_clear(&st->job);
	json_decref(st->input);
	json_decref(st->targets);
	free(st);
}

int step_load_job(struct step *st)
{
	struct worker *w = st->w;
	if (!st->job.id[0]) {
		int rc = store_job_get(w->store, st->wk.job_id, NULL, &st->job);
		if (rc < 0) {
			metrics_inc(M_STORE_ERRORS);
			engine_reschedule(w, &st->wk, loop_wall_ms() + 1000, st->wk.tries);
			return 1;
		}
		if (rc == 1) {
			engine_work_done(w, &st->wk);
			return 1;
		}
	}
	if (job_terminal(st->job.status)) {
		engine_work_done(w, &st->wk);
		return 1;
	}
	log_ctx_job(st->job.id, st->job.customer, st->job.provider);
	if (!st->input && st->job.input)
		st->input = json_loads(st->job.input, 0, NULL);
	if (!st->targets && st->job.targets)
		st->targets = json_loads(st->job.targets, 0, NULL);
	return 0;
}

json_t *step_job_arg(const struct step *st, const struct job *j)
{
	return job_script_arg(j, st->input);
}

void engine_renew_leases(struct worker *w)
{
	struct engine *e = w->engine;
	int64_t lease_ms = ENGINE_LEASE_MS(w);
	if (!e || loop_now_ms() < e->renew_at)
		return;
	e->renew_at = loop_now_ms() + lease_ms / 3;
	size_t n = 0;
	for (struct step *st = e->steps; st; st = st->next)
		n += st->wk.id > 0;
	if (n == 0)
		return;
	int64_t *ids = malloc(n * sizeof *ids);
	if (!ids)
		return; /* not renewed: a lease may expire and its row run again */
	n = 0;
	for (struct step *st = e->steps; st; st = st->next)
		if (st->wk.id > 0)
			ids[n++] = st->wk.id;
	if (store_work_renew(w->store, w->owner, ids, n, loop_wall_ms() + lease_ms) < 0)
		log_warn("store: renewing leases: %s", store_errmsg(w->store));
	free(ids);
}

/* ---------- helpers shared by the steps ---------- */

double engine_random(void)
{
	uint32_t v;
	if (sign_random(&v, sizeof v) < 0)
		return 0.5;
	return (double)v / 4294967296.0;
}

void engine_reschedule(struct worker *w, const struct work *wk, int64_t due, int tries)
{
	if (store_work_reschedule(w->store, wk->id, due, tries) < 0) {
		metrics_inc(M_STORE_ERRORS);
		return;
	}
	engine_kick(w, due);
}

void engine_work_done(struct worker *w, const struct work *wk)
{
	if (store_work_done(w->store, wk->id) < 0)
		metrics_inc(M_STORE_ERRORS);
}

void engine_event(struct worker *w, const char *job_id, const char *kind, json_t *detail)
{
	char *text = json_dumps(detail, JSON_COMPACT);
	json_decref(detail);
	scrub_str(w->cfg->scrub, &text); /* reasons may quote a provider */
	if (store_event_add(w->store, job_id, loop_wall_ms(), kind, text) < 0)
		metrics_inc(M_STORE_ERRORS);
	free(text);
}

/* A provider's setting, borrowed from its script's settings: valid until
 * the script host next loads or refreshes (no copy per step). */
json_t *engine_setting(struct worker *w, const char *provider, const char *key)
{
	const json_t *ps = provider ? script_provider_settings_ref(w->scripts, provider) : NULL;
	return json_object_get(ps, key);
}

/* ---------- dispatch ---------- */

/* Keeps wk (and job, taken) to start after the store's commit. */
static void after_add(struct worker *w, const struct work *wk, struct job *job)
{
	struct engine *e = w->engine;
	if (e->nafter == e->capafter) {
		size_t ncap = e->capafter ? e->capafter * 2 : 64;
		struct engine_after *na = realloc(e->after, ncap * sizeof *na);
		if (!na)
			goto drop; /* the lease expires and the row runs later */
		e->after = na;
		e->capafter = ncap;
	}
	e->after[e->nafter].wk = *wk;
	e->after[e->nafter].job = job;
	e->nafter++;
	return;
drop:
	if (job)
		job_clear(job);
	free(job);
}

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
		after_add(w, wk, NULL);
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
		after_add(w, wk, copy);
	else
		run(w, wk, copy);
}

int engine_after_pending(struct worker *w)
{
	return w->engine && w->engine->nafter > 0;
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
	for (size_t i = 0; i < n; i++) {
		if (committed) {
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
