/*
 * engine_work.c: the bottom layer of the engine (engine_int.h): what every
 * step does with its work, and nothing that starts one.
 *
 * Here: arming the due timer (engine_kick; its callback is engine.c's,
 * set once by engine_init, so arming it calls nothing above), the steps in
 * flight (step_new, step_free, step_load_job, step_job_arg) and their lease
 * heartbeat, a row's outcome (rescheduled or done), job events, random
 * numbers, provider settings, and the queue of work that starts after the
 * store's commit (engine_after_add; engine.c's engine_after_commit starts
 * it). Every file of the engine (and the worker) may call it; it calls
 * none of them.
 */
#include "engine.h"

#include "buf.h"
#include "config.h"
#include "engine_int.h"
#include "jsondump.h"
#include "log.h"
#include "metrics.h"
#include "script.h"
#include "scrub.h"
#include "sign.h"
#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Scrubs text (taken; NULL stays NULL) and adds it as the detail of an
 * event of kind to job_id's history. */
static void event_add(struct worker *w, const char *job_id, const char *kind, char *text)
{
	scrub_str(w->cfg->scrub, &text); /* reasons may quote a provider */
	if (store_event_add(w->store, job_id, loop_wall_ms(), kind, text) < 0)
		metrics_inc(M_STORE_ERRORS);
	free(text);
}

void engine_event(struct worker *w, const char *job_id, const char *kind, json_t *detail)
{
	char *text = jsondump(detail, JSON_COMPACT);
	json_decref(detail);
	event_add(w, job_id, kind, text);
}

int engine_event_fields(struct worker *w, const char *job_id, const char *kind,
			const struct event_field *f, size_t n)
{
	struct buf b;
	char num[24];
	int bad = 0;
	buf_init(&b, 1 << 16);
	bad |= buf_add(&b, "{", 1);
	for (size_t i = 0; i < n && !bad; i++) {
		bad |= buf_adds(&b, i ? ",\"" : "\"");
		bad |= buf_adds(&b, f[i].key);
		bad |= buf_adds(&b, "\":");
		if (f[i].is_num)
			bad |= buf_add(&b, num, (size_t)snprintf(num, sizeof num, "%lld", f[i].num));
		else
			bad |= buf_add_json_utf8(&b, f[i].str);
	}
	bad |= buf_add(&b, "}", 1);
	if (bad) {
		buf_free(&b);
		return -1;
	}
	event_add(w, job_id, kind, buf_steal(&b, NULL));
	return 0;
}

/* A provider's setting, borrowed from its script's settings: valid until
 * the script host next loads or refreshes (no copy per step). */
json_t *engine_setting(struct worker *w, const char *provider, const char *key)
{
	const json_t *ps = provider ? script_provider_settings_ref(w->scripts, provider) : NULL;
	return json_object_get(ps, key);
}

/* ---------- work that starts after the commit ---------- */

void engine_after_add(struct worker *w, const struct work *wk, struct job *job)
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
	e->after[e->nafter].mark = 0;
	e->nafter++;
	return;
drop:
	if (job)
		job_clear(job);
	free(job);
}

void engine_after_add_written(struct worker *w, const struct work *wk)
{
	struct engine *e = w->engine;
	size_t n = e->nafter;
	engine_after_add(w, wk, NULL);
	if (e->nafter > n)
		e->after[n].mark = store_answer_mark(w->store);
}

int engine_after_pending(struct worker *w)
{
	return w->engine && w->engine->nafter > 0;
}
