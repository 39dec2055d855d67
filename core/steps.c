/*
 * steps.c: the provider steps of a job: submit, poll and cancel at the
 * provider. Each calls the adapter for a request (provider.c builds and
 * starts it on the worker's fetcher), hands the answer to the adapter and
 * applies the result through jobflow (jobflow.h), on the job row as re-read
 * then.
 *
 * Also here: the keys of a provider's key pool (keypool.h: weighted, a
 * key's own max_inflight, 429 cool-downs, 401/403 on any step marking it
 * broken), the provider's max_inflight slots (store_work_take_slot) and
 * the retry of submits
 * (backoff, Retry-After, the adapter's retry_in, the submit window and
 * failover_after).
 *
 * Layer (engine_int.h): calls jobflow.c, provider.c and engine_work.c;
 * called by engine.c, which dispatches the rows.
 */
#include "config.h"
#include "engine.h"
#include "engine_int.h"
#include "fetch.h"
#include "jobflow.h"
#include "keypool.h"
#include "log.h"
#include "metrics.h"
#include "retry.h"
#include "scrub.h"
#include "script.h"
#include "urlguard.h"
#include "worker.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NEXT_HOPS 5
#define RETRY_IN_MAX_MS 300000  /* cap on an adapter's retry_in */
#define CAP_RECHECK_MS 500      /* a job held by a provider's max_inflight looks again after this */

/* ---------- the job's row, re-read ---------- */

/*
 * Begins the change that a step's answer (or its failure) makes: re-reads
 * the job in a transaction (jobflow_begin). 0 with f open when the job is
 * still the step's: not ended, and on the target the step ran for. 1 when
 * it is gone or ended (the step's row is finished), or moved on (a callback
 * that overtook the step ended it or moved it to its next target, whose
 * work replaced this row: the answer is dropped), or on a store error (the
 * row runs again in a second); nothing is open then.
 */
static int step_begin(struct step *st, struct jobflow *f)
{
	struct worker *w = st->w;
	int rc = jobflow_begin(w, f, st->wk.job_id, NULL);
	if (rc < 0) {
		metrics_inc(M_STORE_ERRORS);
		engine_reschedule(w, &st->wk, loop_wall_ms() + 1000, st->wk.tries);
		return 1;
	}
	if (rc == 1) {
		engine_work_done(w, &st->wk);
		return 1;
	}
	const struct job *j = &f->job;
	if (job_terminal(j->status)) {
		keypool_release(j->id); /* ended where this step did not see it */
		engine_work_done(w, &st->wk);
		jobflow_commit(f);
		job_clear(&f->job);
		return 1;
	}
	if (j->target_idx != st->job.target_idx || !j->provider || !st->job.provider ||
	    strcmp(j->provider, st->job.provider) != 0) {
		jobflow_rollback(f);
		job_clear(&f->job);
		return 1;
	}
	f->targets = st->targets;
	log_ctx_job(j->id, j->customer, j->provider);
	return 0;
}

/* Ends st's job as failed (code, message) on its row re-read, and frees st. */
static void step_fail(struct step *st, const char *code, const char *message, const char *via)
{
	struct jobflow f;
	if (step_begin(st, &f) == 0) {
		jobflow_fail(&f, code, message, via);
		job_clear(&f.job);
	}
	step_free(st);
}

/* ---------- submit ---------- */

static void submit_done(void *arg, const struct fetch_response *res);

int steps_callbacks_refused(const char *public_url, const char *provider,
			    const struct script_provider_info *info, char *why, size_t whylen)
{
	if (!info->callbacks || (!info->callback_https && !info->callback_public))
		return 0;
	struct urlguard_policy pol = { .require_https = info->callback_https,
				       .allow_private = !info->callback_public };
	char reason[256];
	if (urlguard_check_url(&pol, public_url ? public_url : "", reason, sizeof reason) == 0)
		return 0;
	snprintf(why, whylen, "%s needs callbacks at %s%s%s address, and public_url (%.200s) is not one "
		 "(%s); set public_url, or providers.%s.callbacks = false to poll only",
		 provider, info->callback_https ? "an https" : "a",
		 info->callback_https && info->callback_public ? ", public" : "",
		 info->callback_public ? (info->callback_https ? "" : " public") : "",
		 public_url ? public_url : "", reason, provider);
	return 1;
}

/*
 * A provider with max_inflight: takes one of its slots for this submit (1),
 * or holds the row, due as it was, for CAP_RECHECK_MS or longer the further
 * back it is (0; the job keeps its place: rows due earlier go first).
 * <0 on a store error.
 */
static int take_slot(struct worker *w, const struct work *wk, const char *provider, long cap)
{
	int64_t now = loop_wall_ms();
	int rc = -1;
	if (store_begin(w->store) < 0)
		goto fail;
	rc = store_work_take_slot(w->store, wk->id, provider, wk->due_at, now, cap,
				  CAP_RECHECK_MS);
	if (rc < 0 || store_commit(w->store) < 0) {
		store_rollback(w->store);
		goto fail;
	}
	if (rc == 0)
		engine_kick(w, now + CAP_RECHECK_MS);
	return rc;
fail:
	metrics_inc(M_STORE_ERRORS);
	return -1;
}

/*
 * In f's transaction: the submit gave up on f's target (reason): the job
 * moves to its next target when allowed and it has one, else ends failed
 * with PROVIDER_UNAVAILABLE. Finishes f.
 */
static void submit_give_up(struct jobflow *f, const char *reason, int allow_failover)
{
	const char *code = "PROVIDER_UNAVAILABLE";
	int rc = allow_failover ? jobflow_failover_tx(f, code, reason) : 0;
	if (rc < 0) {
		jobflow_rollback(f);
		metrics_inc(M_STORE_ERRORS);
		return;
	}
	if (rc == 1) {
		if (jobflow_commit(f) < 0)
			metrics_inc(M_STORE_ERRORS);
		return;
	}
	char msg[ENGINE_ERR_MAX];
	snprintf(msg, sizeof msg, "provider %.64s unavailable: %.420s", f->job.provider, reason);
	jobflow_fail(f, code, msg, NULL);
}

/* The submit of st's job cannot go out (why): gives up on its target. Frees st. */
static void submit_refused(struct step *st, const char *why)
{
	struct jobflow f;
	if (step_begin(st, &f) == 0) {
		submit_give_up(&f, why, 1);
		job_clear(&f.job);
	}
	step_free(st);
}

/*
 * In f's transaction: the submit is tried again after retry_after ms (<0:
 * the backoff), or gives up when that passes the submit window, or when
 * the job has tried failover_after times and has a next target. Finishes f.
 */
static void submit_retry(struct step *st, struct jobflow *f, int64_t retry_after,
			 const char *reason)
{
	struct worker *w = st->w;
	struct job *j = &f->job;
	int64_t now = loop_wall_ms();
	j->attempt++;
	int64_t delay = retry_backoff_delay(500, 30000, (unsigned)j->attempt,
					    w->cfg->retry_jitter, engine_random());
	if (retry_after >= 0)
		delay = retry_after;
	metrics_inc(M_SUBMIT_RETRIES);
	if (now + delay > j->submit_deadline ||
	    (jobflow_has_next_target(j, st->targets) && j->attempt >= w->cfg->failover_after)) {
		submit_give_up(f, reason, 1);
		return;
	}
	j->updated_at = now;
	engine_event(w, j->id, "submit_retry", json_pack("{s:s,s:i,s:s,s:I}", "provider",
		     j->provider, "attempt", j->attempt, "reason", reason, "delay_ms", (json_int_t)delay));
	if (store_job_update(w->store, j) < 0 ||
	    store_work_reschedule(w->store, st->wk.id, now + delay, st->wk.tries + 1) < 0) {
		jobflow_rollback(f);
		metrics_inc(M_STORE_ERRORS);
		return;
	}
	f->kick_at = now + delay;
	if (jobflow_commit(f) < 0)
		metrics_inc(M_STORE_ERRORS);
}

/*
 * Lets go of the slots of ps's capped keys held by jobs that ended (or
 * are gone, or moved to another provider) where this worker did not see it
 * end: on another instance, or a hold left behind. Returns how many were
 * let go. Reads the store outside a transaction (as a step's load does).
 */
static size_t release_ended_holders(struct worker *w, const char *provider, const json_t *ps)
{
	char held[64][KEYPOOL_JOB_MAX];
	size_t n = keypool_holders(provider, ps, loop_wall_ms(), held, 64), freed = 0;
	for (size_t i = 0; i < n; i++) {
		struct job j;
		int rc = store_job_get(w->store, held[i], NULL, &j);
		if (rc < 0)
			continue;
		if (rc == 1 || job_terminal(j.status) || !j.provider || strcmp(j.provider, provider)) {
			keypool_release(held[i]);
			freed++;
		}
		if (rc == 0)
			job_clear(&j);
	}
	return freed;
}

/*
 * Picks a key from the pool of st's provider (ps), taking one of its slots
 * when it has a max_inflight, and keeps its id in the step's job. 0; or -1
 * when none is usable: the submit retried or given up, or, when every key
 * left is at its max_inflight, the row held for CAP_RECHECK_MS (the job
 * waits for a slot: no attempt is counted, nothing fails).
 */
static int submit_pick_key(struct step *st, json_t *ps)
{
	struct worker *w = st->w;
	const char *provider = st->job.provider;
	char kid[KEYPOOL_ID_MAX], why[ENGINE_ERR_MAX];
	int64_t wait, now = loop_wall_ms();
	/* The hold lapses by the job's deadline at the latest. */
	int64_t until = st->job.deadline > now ? st->job.deadline : now + 3600000;
	int rc = keypool_take(provider, ps, st->job.id, until, now, engine_random(), kid, sizeof kid, &wait);
	if (rc == -2 && release_ended_holders(w, provider, ps) > 0)
		rc = keypool_take(provider, ps, st->job.id, until, now, engine_random(), kid, sizeof kid, &wait);
	if (rc == 0) {
		json_t *kd = json_pack("{s:s}", "key_id", kid);
		jobflow_merge_data(&st->job, kd);
		json_decref(kd);
		return 0;
	}
	if (rc == -2) {
		int64_t due = now + (wait >= 0 && wait < CAP_RECHECK_MS ? wait : CAP_RECHECK_MS);
		engine_reschedule(w, &st->wk, due, st->wk.tries);
		engine_kick(w, due);
		return -1;
	}
	struct jobflow f;
	if (step_begin(st, &f) == 0) {
		if (wait < 0) {
			snprintf(why, sizeof why, "every key of providers.%s.keys was refused (HTTP 401/403)",
				 provider);
			submit_give_up(&f, why, 1);
		} else {
			snprintf(why, sizeof why, "every key of providers.%s.keys cools down after HTTP 429",
				 provider);
			submit_retry(st, &f, wait, why);
		}
		job_clear(&f.job);
	}
	return -1;
}

/*
 * What must be stored before the request goes out: the pool key's id and
 * the request's `data` (e.g. a per-job secret the provider will sign its
 * callback with), merged into the job's row re-read. 0, or 1 when the job
 * moved on or the store failed (the row runs again).
 */
static int submit_keep_data(struct step *st, json_t *rdata, int pooled)
{
	struct worker *w = st->w;
	struct jobflow f;
	if (step_begin(st, &f))
		return 1;
	if (pooled) {
		char kid[KEYPOOL_ID_MAX];
		provider_key_id(&st->job, kid, sizeof kid);
		json_t *kd = json_pack("{s:s}", "key_id", kid);
		jobflow_merge_data(&f.job, kd);
		json_decref(kd);
	}
	jobflow_merge_data(&f.job, rdata);
	f.job.updated_at = loop_wall_ms();
	int rc = store_job_update(w->store, &f.job) < 0 ? -1 : jobflow_commit(&f);
	if (rc < 0 && f.open)
		jobflow_rollback(&f);
	job_clear(&f.job);
	if (rc < 0) {
		metrics_inc(M_STORE_ERRORS);
		engine_reschedule(w, &st->wk, loop_wall_ms() + 1000, st->wk.tries);
		return 1;
	}
	return 0;
}

void steps_submit(struct worker *w, const struct work *wk, struct job *job)
{
	char err[ENGINE_ERR_MAX], why[ENGINE_ERR_MAX];
	struct step *st = step_new(w, STEP_SUBMIT, wk, job, sizeof *st); /* takes job's strings */
	if (!st)
		return;
	if (step_load_job(st)) {
		step_free(st);
		return;
	}
	const struct job *j = &st->job;
	struct script_provider_info info;
	if (script_provider_info(w->scripts, j->provider, &info) == 0 && !info.configured) {
		snprintf(why, sizeof why, "provider %s is not configured (no providers.%s in the config)",
			 j->provider, j->provider);
		submit_refused(st, why);
		return;
	}
	/* Refused at submit, without calling the provider: it would refuse the
	 * callback URL (or never reach it). An alias moves to its next target. */
	if (steps_callbacks_refused(w->cfg->public_url, j->provider, &info, why, sizeof why)) {
		submit_refused(st, why);
		return;
	}
	if (info.max_inflight > 0) {
		int slot = take_slot(w, wk, j->provider, info.max_inflight);
		if (slot < 0) /* the store failed: look again in a second */
			engine_reschedule(w, wk, loop_wall_ms() + 1000, wk->tries);
		if (slot != 1) {
			step_free(st);
			return;
		}
	}
	/* A provider with a key pool: every submit takes a usable key, whose id
	 * is kept with the job before the request goes out. */
	json_t *ps = config_provider(w->cfg, j->provider);
	int pooled = keypool_size(ps) > 0;
	if (pooled && submit_pick_key(st, ps) < 0) {
		step_free(st);
		return;
	}
	json_t *req = NULL;
	if (provider_call(st, j, "submit", NULL, &req, err, sizeof err) < 0) {
		step_fail(st, "SCRIPT_ERROR", err, NULL);
		return;
	}
	json_t *rdata = json_object_get(req, "data");
	if ((pooled || (json_is_object(rdata) && json_object_size(rdata) > 0)) &&
	    submit_keep_data(st, rdata, pooled)) {
		json_decref(req);
		step_free(st);
		return;
	}
	const char *v = script_version(w->scripts, SCRIPT_PROVIDER, j->provider);
	snprintf(st->version, sizeof st->version, "%s", v ? v : "");
	metrics_inc(M_SUBMITS);
	if (provider_request_start(st, req, submit_done, err, sizeof err) < 0) /* lends st */
		step_fail(st, "SCRIPT_ERROR", err, NULL);
	json_decref(req);
}

static int is_retry(json_t *result)
{
	const char *state = json_string_value(json_object_get(result, "state"));
	return state && strcmp(state, "retry") == 0;
}

/* An adapter's retry_in (seconds) as ms, capped at RETRY_IN_MAX_MS; -1 none. */
static int64_t retry_in_ms(json_t *result)
{
	json_t *ri = json_object_get(result, "retry_in");
	if (!json_is_number(ri) || !(json_number_value(ri) >= 0))
		return -1;
	double ms = json_number_value(ri) * 1000;
	return ms > RETRY_IN_MAX_MS ? RETRY_IN_MAX_MS : (int64_t)ms;
}

/*
 * In f's transaction: a submit answered with a network error, 429 or 5xx is
 * retried. On a 429 the adapter may name the wait ({state = "retry",
 * retry_in = s}); a pool key that got it cools down for that long (a minute
 * when none was named), and the next submit takes another key at once.
 */
static void submit_retry_answer(struct step *st, struct jobflow *f,
				const struct fetch_response *res, const char *kid,
				char *why, size_t whylen)
{
	int64_t after = provider_retry_after(res);
	if (!res->error && res->status == 429) {
		char err[ENGINE_ERR_MAX];
		json_t *rarg = provider_response_arg(res), *result = NULL;
		if (provider_call(st, &f->job, "on_submitted", rarg, &result, err, sizeof err) == 0 &&
		    is_retry(result)) {
			int64_t ri = retry_in_ms(result);
			const char *m = json_string_value(json_object_get(
				json_object_get(result, "error"), "message"));
			if (ri >= 0)
				after = ri;
			if (m)
				snprintf(why, whylen, "HTTP 429: %.200s", m);
		}
		json_decref(rarg);
		json_decref(result);
		if (kid[0]) {
			json_t *ps = config_provider(st->w->cfg, f->job.provider);
			keypool_cool(f->job.provider, ps, kid, loop_wall_ms() + (after >= 0 ? after : 60000));
			if (provider_pool_has_usable(f->job.provider, ps))
				after = 0;
		}
	}
	submit_retry(st, f, after, why);
}

/*
 * The "submitted" event of every job: {"provider","model","request_id",
 * "http_status","script_version","key_id"} in that order, request_id and
 * key_id null when unset, written as JSON text directly
 * (engine_event_fields: json_pack and json_dumps cost more than the row);
 * jansson's way when a value is not valid UTF-8 (a provider's request id
 * may hold anything). In the caller's transaction.
 */
static void submitted_event(struct worker *w, const struct job *j, long status,
			    const char *version, const char *kid)
{
	const struct event_field submitted[] = {
		{ .key = "provider", .str = j->provider ? j->provider : "" },
		{ .key = "model", .str = j->model ? j->model : "" },
		{ .key = "request_id", .str = j->request_id },
		{ .key = "http_status", .is_num = 1, .num = (int)status },
		{ .key = "script_version", .str = version },
		{ .key = "key_id", .str = kid },
	};
	if (engine_event_fields(w, j->id, "submitted", submitted,
				sizeof submitted / sizeof submitted[0]) < 0)
		engine_event(w, j->id, "submitted", json_pack("{s:s,s:s,s:s?,s:i,s:s,s:s?}",
			     "provider", j->provider, "model", j->model, "request_id", j->request_id,
			     "http_status", (int)status, "script_version", version, "key_id", kid));
}

/*
 * In f's transaction: the provider accepted the submit; the job waits for
 * its callback, with a poll as the fallback (the row becomes the job's poll
 * row), due at the result's poll_in, else the provider's poll_after_s, else
 * jobs.poll_after_s (poll_interval_s for a provider that sends no callback).
 * Finishes f.
 */
static void submit_accepted(struct step *st, struct jobflow *f, json_t *result, long status,
			    const char *kid)
{
	struct worker *w = st->w;
	struct job *j = &f->job;
	json_t *poll_in = json_object_get(result, "poll_in");
	json_t *pa = engine_setting(w, j->provider, "poll_after_s");
	struct script_provider_info info;
	script_provider_info(w->scripts, j->provider, &info);
	double first = json_is_number(poll_in) ? json_number_value(poll_in)
		     : !info.callbacks ? w->cfg->poll_interval_s /* no callback will come */
		     : json_is_number(pa) ? json_number_value(pa) : w->cfg->poll_after_s;
	int64_t now = loop_wall_ms();
	int64_t due = now + (int64_t)(first * 1000);
	if (due > j->deadline)
		due = j->deadline;
	j->updated_at = now;
	submitted_event(w, j, status, st->version, kid[0] ? kid : NULL);
	if (store_job_update(w->store, j) < 0 ||
	    store_work_become(w->store, st->wk.id, WORK_POLL, due) < 0) {
		jobflow_rollback(f);
		metrics_inc(M_STORE_ERRORS);
		return;
	}
	f->kick_at = due;
	if (jobflow_commit(f) < 0)
		metrics_inc(M_STORE_ERRORS);
}

/*
 * A 401/403 from the provider on any step of j (submit, poll, cancel):
 * the job's pool key leaves the pool until the config changes (logged
 * once). 1 when the answer was such a refusal of a pool key, else 0.
 */
static int mark_refused_key(struct worker *w, const struct job *j, const struct fetch_response *res)
{
	if (res->error || (res->status != 401 && res->status != 403) || !j->provider)
		return 0;
	json_t *ps = config_provider(w->cfg, j->provider);
	char kid[KEYPOOL_ID_MAX] = "";
	if (keypool_size(ps))
		provider_key_id(j, kid, sizeof kid);
	if (!kid[0])
		return 0;
	if (keypool_break(j->provider, ps, kid))
		log_warn("provider %s: key %s refused (HTTP %ld): out of the pool until the config changes",
			 j->provider, kid, res->status);
	return 1;
}

/* A submit's answer, on the job's row re-read. */
static void submit_done(void *arg, const struct fetch_response *res)
{
	struct step *st = arg;
	struct worker *w = st->w;
	struct jobflow f;
	char err[ENGINE_ERR_MAX], why[256];
	metrics_provider_call(st->job.provider, "submit", res->error != NULL, res->status, res->total_ms);
	if (step_begin(st, &f))
		goto out;
	struct job *j = &f.job;
	provider_describe(res, why, sizeof why);
	json_t *ps = config_provider(w->cfg, j->provider);
	char kid[KEYPOOL_ID_MAX] = "";
	if (keypool_size(ps))
		provider_key_id(j, kid, sizeof kid);
	if (mark_refused_key(w, j, res)) {
		/* The job tries another key at once while one is left. */
		if (provider_pool_has_usable(j->provider, ps)) {
			submit_retry(st, &f, 0, why);
			goto out_job;
		}
	}
	if (res->error || retry_status_retryable(res->status)) {
		submit_retry_answer(st, &f, res, kid, why, sizeof why);
		goto out_job;
	}
	json_t *rarg = provider_response_arg(res), *result = NULL;
	int rc = provider_call(st, j, "on_submitted", rarg, &result, err, sizeof err);
	json_decref(rarg);
	if (rc < 0) {
		jobflow_fail(&f, "SCRIPT_ERROR", err, NULL);
	} else if (is_retry(result)) {
		const char *m = json_string_value(json_object_get(json_object_get(result, "error"),
								  "message"));
		submit_retry(st, &f, retry_in_ms(result), m ? m : "provider asked to retry");
	} else if (jobflow_apply_result(j, result, res->status, st->job.provider) != 0) {
		jobflow_end(&f, "submit");
	} else {
		submit_accepted(st, &f, result, res->status, kid);
	}
	json_decref(result);
out_job:
	job_clear(&f.job);
out:
	step_free(st);
}

/* ---------- poll ---------- */

static void poll_done(void *arg, const struct fetch_response *res);

static int64_t poll_delay(struct worker *w, const struct job *j, json_t *poll_in)
{
	if (json_is_number(poll_in) && json_number_value(poll_in) >= 0)
		return (int64_t)(json_number_value(poll_in) * 1000);
	double d = w->cfg->poll_interval_s * pow(1.5, j->polls > 20 ? 20 : j->polls);
	if (d > w->cfg->poll_max_s)
		d = w->cfg->poll_max_s;
	return (int64_t)(d * 1000);
}

/* In f's transaction: polls again later. n404: the consecutive 404 answers
 * so far, kept in the poll row's tries (a poll row has no other use for
 * it). Finishes f. */
static void poll_later(struct step *st, struct jobflow *f, json_t *poll_in, int n404)
{
	struct worker *w = st->w;
	struct job *j = &f->job;
	int64_t due = loop_wall_ms() + poll_delay(w, j, poll_in);
	if (due > j->deadline)
		due = j->deadline;
	j->polls++;
	j->updated_at = loop_wall_ms();
	if (store_job_update(w->store, j) < 0 ||
	    store_work_reschedule(w->store, st->wk.id, due, n404) < 0) {
		jobflow_rollback(f);
		metrics_inc(M_STORE_ERRORS);
		return;
	}
	f->kick_at = due;
	if (jobflow_commit(f) < 0)
		metrics_inc(M_STORE_ERRORS);
}

void steps_poll(struct worker *w, const struct work *wk)
{
	char err[ENGINE_ERR_MAX];
	struct step *st = step_new(w, STEP_POLL, wk, NULL, sizeof *st);
	if (!st)
		return;
	if (step_load_job(st)) {
		step_free(st);
		return;
	}
	const struct job *j = &st->job;
	if (loop_wall_ms() >= j->deadline) {
		step_fail(st, "PROVIDER_TIMEOUT",
			  "no result from the provider before the job's deadline", "deadline");
		return;
	}
	if (!j->request_id || !script_has_fn(w->scripts, SCRIPT_PROVIDER, j->provider, "poll")) {
		/* Nothing to poll with: wait for the callback until the deadline. */
		engine_reschedule(w, wk, j->deadline, wk->tries);
		step_free(st);
		return;
	}
	json_t *req = NULL;
	if (provider_call(st, j, "poll", NULL, &req, err, sizeof err) < 0) {
		step_fail(st, "SCRIPT_ERROR", err, NULL);
		return;
	}
	metrics_inc(M_POLLS);
	if (provider_request_start(st, req, poll_done, err, sizeof err) < 0)
		step_fail(st, "SCRIPT_ERROR", err, NULL);
	json_decref(req);
}

/*
 * In f's transaction: on_polled asked for another request first (fal's
 * status, then its result): the result's data is kept and the request
 * started for the same step. 0 when it runs (f committed; the step lives
 * on), -1 when it could not start (the job failed; f finished).
 */
static int poll_next(struct step *st, struct jobflow *f, json_t *result, json_t *next)
{
	char err[ENGINE_ERR_MAX];
	json_t *data = json_object_get(result, "data");
	jobflow_merge_data(&f->job, data);
	st->hops++;
	if (provider_request_start(st, next, poll_done, err, sizeof err) < 0) {
		jobflow_fail(f, "SCRIPT_ERROR", err, NULL);
		return -1;
	}
	if (data) {
		f->job.updated_at = loop_wall_ms();
		if (store_job_update(st->w->store, &f->job) < 0)
			metrics_inc(M_STORE_ERRORS);
	}
	if (jobflow_commit(f) < 0)
		metrics_inc(M_STORE_ERRORS);
	return 0;
}

/* A poll's answer, on the job's row re-read. */
static void poll_done(void *arg, const struct fetch_response *res)
{
	struct step *st = arg;
	struct worker *w = st->w;
	struct jobflow f;
	char err[ENGINE_ERR_MAX];
	const struct work *wk = &st->wk;
	metrics_provider_call(st->job.provider, "poll", res->error != NULL, res->status, res->total_ms);
	if (step_begin(st, &f))
		goto out;
	struct job *j = &f.job;
	mark_refused_key(w, j, res); /* the adapter still sees the answer */
	/* A network error, 429 or 5xx on a poll never ends a job: it polls again
	 * on the schedule. The one exception is a `next` request's HTTP 500: fal's
	 * result call relays the model's own status, so the script sees it (502,
	 * 503 and 504 there are the gateway's, and retried). A 404 ends nothing
	 * until the adapter's poll_404_limit consecutive ones (default 3): a
	 * provider that has not indexed a new request yet answers 404 too. */
	if (res->error || (retry_status_retryable(res->status) &&
			   !(st->hops > 0 && res->status == 500))) {
		poll_later(st, &f, NULL, wk->tries);
		goto out_job;
	}
	if (res->status == 404) {
		struct script_provider_info info;
		script_provider_info(w->scripts, j->provider, &info);
		if (wk->tries + 1 < info.poll_404_limit) {
			poll_later(st, &f, NULL, wk->tries + 1);
			goto out_job;
		}
	}
	json_t *rarg = provider_response_arg(res), *result = NULL;
	int rc = provider_call(st, j, "on_polled", rarg, &result, err, sizeof err);
	json_decref(rarg);
	json_t *next = json_object_get(result, "next");
	if (rc < 0) {
		jobflow_fail(&f, "SCRIPT_ERROR", err, NULL);
	} else if (json_is_object(next) && st->hops < MAX_NEXT_HOPS) {
		if (poll_next(st, &f, result, next) == 0) {
			json_decref(result);
			job_clear(&f.job);
			return; /* the step lives on */
		}
	} else if (jobflow_apply_result(j, result, res->status, st->job.provider) != 0) {
		jobflow_end(&f, "poll");
	} else {
		poll_later(st, &f, json_object_get(result, "poll_in"), 0);
	}
	json_decref(result);
out_job:
	job_clear(&f.job);
out:
	step_free(st);
}

/* ---------- cancel at the provider ---------- */

static void cancel_done(void *arg, const struct fetch_response *res)
{
	struct step *st = arg;
	struct worker *w = st->w;
	char why[256];
	metrics_provider_call(st->job.provider, "cancel", res->error != NULL, res->status, res->total_ms);
	mark_refused_key(w, &st->job, res);
	provider_describe(res, why, sizeof why);
	if ((res->error || retry_status_retryable(res->status)) && st->wk.tries < 5) {
		engine_reschedule(w, &st->wk, loop_wall_ms() + 2000 * (st->wk.tries + 1), st->wk.tries + 1);
	} else if (store_begin(w->store) == 0) {
		engine_event(w, st->wk.job_id, "provider_cancel",
			     json_pack("{s:s,s:s}", "provider", st->job.provider, "result", why));
		store_work_done(w->store, st->wk.id);
		if (store_commit(w->store) < 0)
			store_rollback(w->store);
	}
	step_free(st);
}

/* The provider cancel of a job that ended canceled (jobflow_cancel queued it). */
void steps_cancel(struct worker *w, const struct work *wk)
{
	char err[ENGINE_ERR_MAX];
	struct job j;
	if (store_job_get(w->store, wk->job_id, NULL, &j) != 0) {
		engine_work_done(w, wk);
		return;
	}
	log_ctx_job(j.id, j.customer, j.provider);
	struct step *st = step_new(w, STEP_CANCEL, wk, &j, sizeof *st); /* takes j */
	if (!st)
		return;
	json_t *req = NULL;
	if (!st->job.request_id ||
	    provider_call(st, &st->job, "cancel", NULL, &req, err, sizeof err) < 0 ||
	    !json_is_object(req) || provider_request_start(st, req, cancel_done, err, sizeof err) < 0) {
		engine_work_done(w, wk);
		step_free(st);
	}
	json_decref(req);
}
