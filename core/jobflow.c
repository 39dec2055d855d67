/*
 * jobflow.c: the one place that changes a job's state (jobflow.h): results
 * applied to a job, failover to the next target, the end-of-job transaction
 * and what follows its commit.
 */
#include "jobflow.h"

#include "budget.h"
#include "config.h"
#include "customers.h"
#include "engine.h"
#include "engine_int.h"
#include "jsondump.h"
#include "keypool.h"
#include "log.h"
#include "metrics.h"
#include "script.h"
#include "scrub.h"
#include "sign.h"
#include "usage.h"
#include "worker.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------- the transaction ---------- */

int jobflow_begin(struct worker *w, struct jobflow *f, const char *job_id,
		  const char *customer)
{
	memset(f, 0, sizeof *f);
	f->w = w;
	if (store_begin(w->store) < 0)
		return -1;
	int rc = store_job_get(w->store, job_id, customer, &f->job);
	if (rc != 0) {
		store_rollback(w->store);
		memset(&f->job, 0, sizeof f->job);
		return rc;
	}
	f->open = 1;
	f->read_status = f->job.status;
	return 0;
}

void jobflow_rollback(struct jobflow *f)
{
	assert(f->open);
	if (!f->open)
		return;
	f->open = 0;
	f->ended = 0;
	f->moved = 0;
	f->nafter = 0;
	store_rollback(f->w->store);
}

/* After the commit of a job's end: counts, logs, starts its delivery (or
 * its next target's submit) and tells the upper layers. */
static void after_end(struct worker *w, const struct job *j)
{
	metrics_inc(j->status == JOB_SUCCEEDED ? M_JOBS_SUCCEEDED
		    : j->status == JOB_CANCELED ? M_JOBS_CANCELED : M_JOBS_FAILED);
	log_ctx_job(j->id, j->customer, j->provider);
	log_info("job %s %s", j->id, job_status_name(j->status));
	metrics_job(j->provider, config_alias(w->cfg, j->model_id) ? j->model_id : "direct",
		    job_status_name(j->status),
		    j->completed_at > j->created_at ? (double)(j->completed_at - j->created_at) / 1000.0 : 0);
}

int jobflow_commit(struct jobflow *f)
{
	struct worker *w = f->w;
	assert(f->open);
	if (!f->open)
		return -1;
	f->open = 0;
	if (store_commit(w->store) < 0) {
		store_rollback(w->store);
		f->ended = 0;
		f->moved = 0;
		f->nafter = 0;
		return -1;
	}
	/* A job that failed over is not terminal: it only runs again. */
	int ended = f->ended && job_terminal(f->job.status);
	if (ended)
		after_end(w, &f->job);
	if (ended || f->moved)
		keypool_release(f->job.id); /* its next submit takes a key anew */
	f->moved = 0;
	for (int i = 0; i < f->nafter; i++)
		engine_after_add_written(w, &f->after[i]); /* started after the store's commit */
	f->nafter = 0;
	if (f->kick_at > 0)
		engine_kick(w, f->kick_at);
	if (ended && w->hooks.job_ended)
		w->hooks.job_ended(w, f->job.id);
	f->ended = 0;
	return 0;
}

int jobflow_end(struct jobflow *f, const char *via)
{
	struct worker *w = f->w;
	int rc = jobflow_end_tx(f, via);
	if (rc != 0) {
		jobflow_rollback(f);
		if (rc > 0)
			return 1;
		goto fail;
	}
	if (jobflow_commit(f) < 0)
		goto fail;
	return 0;
fail:
	metrics_inc(M_STORE_ERRORS);
	log_warn("store: ending job %s failed: %s (the work row will run again)",
		 f->job.id, store_errmsg(w->store));
	return -1;
}

int jobflow_fail(struct jobflow *f, const char *code, const char *message, const char *via)
{
	f->job.status = JOB_FAILED;
	job_set(&f->job.error_code, code);
	job_set(&f->job.error_message, message);
	return jobflow_end(f, via);
}

/* Adds work row (kind, ref) of f's job, due now and leased to this worker,
 * to start after the commit. <0 on a store error. */
static int add_after(struct jobflow *f, enum work_kind kind, const char *ref)
{
	struct worker *w = f->w;
	int64_t now = loop_wall_ms(), id;
	if (f->nafter >= JOBFLOW_AFTER_MAX)
		return -1;
	if (store_work_add(w->store, f->job.id, kind, ref, now, w->owner,
			   now + ENGINE_LEASE_MS(w), &id) < 0)
		return -1;
	struct work *wk = &f->after[f->nafter++];
	memset(wk, 0, sizeof *wk);
	wk->id = id;
	wk->kind = kind;
	wk->due_at = now;
	snprintf(wk->job_id, sizeof wk->job_id, "%s", f->job.id);
	if (ref)
		snprintf(wk->ref, sizeof wk->ref, "%s", ref);
	return 0;
}

/* ---------- results ---------- */

void jobflow_merge_data(struct job *j, json_t *data)
{
	if (!json_is_object(data))
		return;
	json_t *cur = j->data ? json_loads(j->data, 0, NULL) : NULL;
	char *text;
	if (json_is_object(cur)) {
		json_object_update(cur, data);
		text = jsondump(cur, JSON_COMPACT);
	} else { /* nothing kept yet: data is all of it, in its order */
		text = jsondump(data, JSON_COMPACT);
	}
	json_decref(cur);
	free(j->data);
	j->data = text;
}

static int code_ok(const char *c)
{
	size_t n = 0;
	for (; c[n]; n++)
		if (!((c[n] >= 'A' && c[n] <= 'Z') || c[n] == '_'))
			return 0;
	return n > 0 && n <= 64;
}

int jobflow_apply_result(struct job *j, json_t *res, long http_status,
			 const char *script_name)
{
	const char *state = json_string_value(json_object_get(res, "state"));
	enum job_status st;
	if (!state || job_status_parse(state, &st) < 0 || st == JOB_QUEUED) {
		char msg[256];
		snprintf(msg, sizeof msg, "%s: result.state must be processing, succeeded, failed or canceled (got %s)",
			 script_name, state ? state : "nothing");
		j->status = JOB_FAILED;
		job_set(&j->error_code, "SCRIPT_ERROR");
		job_set(&j->error_message, msg);
		return -1;
	}
	json_t *rid = json_object_get(res, "request_id");
	if (json_is_string(rid)) {
		job_set(&j->request_id, json_string_value(rid));
	} else if (json_is_integer(rid)) {
		char b[32];
		snprintf(b, sizeof b, "%lld", (long long)json_integer_value(rid));
		job_set(&j->request_id, b);
	}
	/* What the adapter keeps with the job, and its cost (data.cost), in
	 * one merge. */
	json_t *data = json_object_get(res, "data");
	json_t *cost = usage_cost_of(json_object_get(res, "cost"));
	if (cost) {
		json_t *cd = json_is_object(data) ? json_copy(data) : json_object();
		json_object_set_new(cd, "cost", cost);
		jobflow_merge_data(j, cd);
		json_decref(cd);
	} else {
		jobflow_merge_data(j, data);
	}
	j->status = st;
	if (st == JOB_SUCCEEDED) {
		json_t *out = json_object_get(res, "output");
		free(j->output);
		j->output = out && !json_is_null(out) ? jsondump(out, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
		job_set(&j->error_code, NULL);
		job_set(&j->error_message, NULL);
	} else if (st == JOB_FAILED || st == JOB_CANCELED) {
		json_t *e = json_object_get(res, "error");
		const char *code = json_string_value(json_object_get(e, "code"));
		const char *msg = json_string_value(json_object_get(e, "message"));
		if (!msg && json_is_string(e))
			msg = json_string_value(e);
		if (st == JOB_CANCELED)
			code = "CANCELED";
		else if (!code || !code_ok(code))
			code = http_status >= 400 && http_status < 500 ? "PROVIDER_REJECTED"
								       : "PROVIDER_FAILURE";
		job_set(&j->error_code, code);
		job_set(&j->error_message, msg ? msg : st == JOB_CANCELED
			? "canceled by the provider" : "the provider reported a failure");
	}
	return job_terminal(st) ? 1 : 0;
}

/* ---------- failover ---------- */

static int set_target(struct job *j, const char *target)
{
	const char *colon = strchr(target, ':');
	if (!colon)
		return -1;
	char prov[64];
	size_t n = (size_t)(colon - target);
	if (n >= sizeof prov)
		return -1;
	memcpy(prov, target, n);
	prov[n] = '\0';
	return job_set(&j->provider, prov) || job_set(&j->model, colon + 1) ? -1 : 0;
}

/* The target after j's current one (borrowed from targets or *holder, which
 * the caller drops), or NULL. */
static const char *next_target(const struct job *j, json_t *targets, json_t **holder)
{
	*holder = NULL;
	if (!targets)
		targets = *holder = j->targets ? json_loads(j->targets, 0, NULL) : NULL;
	return json_string_value(json_array_get(targets, (size_t)j->target_idx + 1));
}

int jobflow_has_next_target(const struct job *j, json_t *targets)
{
	json_t *holder;
	int has = next_target(j, targets, &holder) != NULL;
	json_decref(holder);
	return has;
}

int jobflow_failover_tx(struct jobflow *f, const char *code, const char *reason)
{
	struct worker *w = f->w;
	struct job *j = &f->job;
	json_t *holder;
	assert(f->open);
	const char *next = next_target(j, f->targets, &holder);
	if (!next) {
		json_decref(holder);
		return 0;
	}
	char from[400];
	snprintf(from, sizeof from, "%s:%s", j->provider ? j->provider : "", j->model ? j->model : "");
	engine_event(w, j->id, "failover", json_pack("{s:s,s:s,s:s,s:s}", "from", from, "to", next,
						   "code", code, "reason", reason));
	int64_t now = loop_wall_ms();
	int from_idx = j->target_idx;
	j->target_idx++;
	set_target(j, next);
	json_decref(holder);
	j->attempt = 0;
	j->polls = 0;
	j->status = JOB_QUEUED;
	j->completed_at = 0;
	job_set(&j->request_id, NULL);
	job_set(&j->data, NULL);
	job_set(&j->error_code, NULL);
	job_set(&j->error_message, NULL);
	job_set(&j->output, NULL);
	j->submit_deadline = now + (int64_t)(w->cfg->submit_window_s * 1000);
	j->updated_at = now;
	metrics_inc(M_FAILOVERS);
	f->moved = 1;
	if (store_job_move(w->store, j, from_idx) < 0 || store_work_drop(w->store, j->id, 0, 0) < 0 ||
	    add_after(f, WORK_SUBMIT, NULL) < 0)
		return -1;
	return 1;
}

/* A failure the alias wants retried elsewhere (failover_on_failure). */
static int fails_over(struct worker *w, const struct job *j)
{
	if (j->status != JOB_FAILED || !j->error_code ||
	    (strcmp(j->error_code, "PROVIDER_FAILURE") && strcmp(j->error_code, "PROVIDER_REJECTED")))
		return 0;
	const struct config_alias *al = config_alias(w->cfg, j->model_id);
	return al && al->failover_on_failure;
}

/* ---------- the end of a job ---------- */

/*
 * The cost of an ending job: the adapter's (data.cost) or, for a succeeded
 * job without one, the estimate of its provider's price table (kept in
 * data.cost too); recorded as the job's usage row in the caller's
 * transaction; *amount and unit get it (0 and "": no cost). *warn: 1 when
 * it takes the customer's spend across the budget's warn_at line, *spent
 * the spend with it (budget_warn_crossed). <0 on a store error.
 */
static int record_cost(struct worker *w, struct job *j, int64_t now, double *amount,
		       char *unit, size_t unitlen, int *warn, double *spent)
{
	*amount = 0;
	if (warn)
		*warn = 0;
	unit[0] = '\0';
	json_t *d = j->data && strstr(j->data, "\"cost\"") ? json_loads(j->data, 0, NULL) : NULL;
	json_t *cost = usage_cost_of(json_object_get(d, "cost"));
	json_decref(d);
	if (!cost && j->status == JOB_SUCCEEDED && j->provider) {
		cost = usage_estimate(config_provider(w->cfg, j->provider), j->model, j->output);
		if (cost) {
			json_t *cd = json_pack("{s:O}", "cost", cost);
			jobflow_merge_data(j, cd);
			json_decref(cd);
		}
	}
	if (!cost)
		return 0;
	*amount = json_number_value(json_object_get(cost, "amount"));
	snprintf(unit, unitlen, "%s", json_string_value(json_object_get(cost, "unit")));
	/* The warn line is judged on the spend read before this job's row is
	 * written: a store that sends writes with the commit (PostgreSQL's
	 * pipeline) would not show the row to a read in the same transaction. */
	if (warn && *amount > 0 && j->customer) {
		const struct config_customer *c = customers_by_name(w->customers, w->cfg, w->store,
								   j->customer);
		*warn = c ? budget_warn_crossed(w->store, c, *amount, unit, now, spent) : 0;
		if (*warn < 0) {
			json_decref(cost);
			return -1;
		}
	}
	int rc = store_usage_add(w->store, j->id, j->customer, j->provider, j->model, *amount,
				 unit, json_string_value(json_object_get(cost, "source")), now);
	json_decref(cost);
	return rc < 0 ? -1 : 0;
}

/* The job's webhook delivery row and its work (started after the commit). */
static int queue_delivery(struct jobflow *f, int64_t now)
{
	struct worker *w = f->w;
	const struct job *j = &f->job;
	struct delivery d = {0};
	sign_random_id("msg_", d.id, sizeof d.id);
	snprintf(d.job_id, sizeof d.job_id, "%s", j->id);
	snprintf(d.event, sizeof d.event, "job.%s", job_status_name(j->status));
	d.url = j->webhook_url;
	snprintf(d.status, sizeof d.status, "pending");
	d.created_at = now;
	d.next_at = now;
	if (store_delivery_insert(w->store, &d) < 0)
		return -1;
	return add_after(f, WORK_DELIVER, d.id);
}

/*
 * The ending job's cost took its customer's spend across the budget's
 * warn_at line (record_cost, budget.h; spent: the spend with it): a
 * budget.warning delivery in f's transaction, to the customer's
 * webhook_url, else the job's, and a "budget_warning" event holding the
 * body the delivery sends. <0 on a store error.
 */
static int queue_budget_warning(struct jobflow *f, double spent, int64_t now)
{
	struct worker *w = f->w;
	const struct job *j = &f->job;
	const struct config_customer *c = customers_by_name(w->customers, w->cfg, w->store,
							   j->customer);
	if (!c)
		return 0;
	const char *url = c->webhook_url ? c->webhook_url : j->webhook_url;
	json_t *body = budget_warning_body(c, spent, j->id, now);
	if (!body)
		return -1;
	struct delivery d = {0};
	if (url) {
		sign_random_id("msg_", d.id, sizeof d.id);
		snprintf(d.job_id, sizeof d.job_id, "%s", j->id);
		snprintf(d.event, sizeof d.event, "budget.warning");
		d.url = (char *)url;
		snprintf(d.status, sizeof d.status, "pending");
		d.created_at = now;
		d.next_at = now;
		json_object_set_new(body, "delivery_id", json_string(d.id));
	}
	log_info("customer %s: budget warning (%g of %g %s spent)", c->name, spent,
		 c->budget_amount, c->budget_unit);
	engine_event(w, j->id, "budget_warning", body); /* takes body */
	if (!url)
		return 0; /* nowhere to send it: the event and the log line stay */
	if (store_delivery_insert(w->store, &d) < 0)
		return -1;
	return add_after(f, WORK_DELIVER, d.id);
}

int jobflow_end_tx(struct jobflow *f, const char *via)
{
	struct worker *w = f->w;
	struct job *j = &f->job;
	int64_t now = loop_wall_ms();
	assert(f->open);
	if (!f->open)
		return -1;
	if (job_terminal(f->read_status))
		return 1; /* ended already (by another worker, or a callback): left as it is */
	/* What providers and scripts wrote into the job leaves genrelay (the
	 * job record, its events, the webhook): no configured secret in it. */
	scrub_str(w->cfg->scrub, &j->error_message);
	scrub_str(w->cfg->scrub, &j->output);
	scrub_str(w->cfg->scrub, &j->data);
	if (fails_over(w, j)) {
		int moved = jobflow_failover_tx(f, j->error_code,
						j->error_message ? j->error_message : "failed");
		if (moved != 0)
			return moved < 0 ? -1 : 0;
	}
	if (!job_terminal(j->status)) {
		log_error("job %s: ended while %s", j->id, job_status_name(j->status));
		return -1;
	}
	f->ended = 1;
	j->updated_at = now;
	if (!j->completed_at)
		j->completed_at = now;
	double cost = 0, spent = 0;
	char unit[16];
	int warn = 0;
	if (record_cost(w, j, now, &cost, unit, sizeof unit, &warn, &spent) < 0)
		return -1;
	if (store_job_update(w->store, j) < 0 || store_work_drop(w->store, j->id, 0, 0) < 0)
		return -1;
	/* script_version: the provider script in effect when the job ended;
	 * when a step gave the result (on_submitted, on_callback, on_polled, or
	 * one that raised), the version that ran it. */
	const char *version = j->provider ? script_version(w->scripts, SCRIPT_PROVIDER, j->provider)
					  : NULL;
	const struct event_field ended[] = {
		{ .key = "status", .str = job_status_name(j->status) },
		{ .key = "error", .str = j->error_code },
		{ .key = "provider", .str = j->provider },
		{ .key = "script_version", .str = version },
		{ .key = "via", .str = via },
	};
	if (engine_event_fields(w, j->id, "ended", ended, sizeof ended / sizeof ended[0]) < 0)
		engine_event(w, j->id, "ended", json_pack("{s:s,s:s?,s:s?,s:s?,s:s?}", "status",
			     job_status_name(j->status), "error", j->error_code, "provider",
			     j->provider, "script_version", version, "via", via));
	if (j->webhook_url && queue_delivery(f, now) < 0)
		return -1;
	if (warn && queue_budget_warning(f, spent, now) < 0)
		return -1;
	return 0;
}

/* ---------- cancel ---------- */

int jobflow_cancel(struct worker *w, const char *id, const char *customer, struct job *j)
{
	struct jobflow f;
	int rc = jobflow_begin(w, &f, id, customer);
	if (rc != 0)
		return rc;
	if (job_terminal(f.job.status)) {
		jobflow_rollback(&f);
		*j = f.job; /* moved: the caller clears it */
		return 0;
	}
	f.job.status = JOB_CANCELED;
	job_set(&f.job.error_code, "CANCELED");
	job_set(&f.job.error_message, customer ? "canceled by the customer" : "canceled by an operator");
	/* A submitted job is canceled at the provider too, when its adapter can. */
	int ok = jobflow_end_tx(&f, NULL) == 0;
	if (ok && f.job.request_id && script_has_fn(w->scripts, SCRIPT_PROVIDER, f.job.provider, "cancel"))
		ok = add_after(&f, WORK_CANCEL, NULL) == 0;
	if (!ok)
		jobflow_rollback(&f);
	if (!ok || jobflow_commit(&f) < 0) {
		job_clear(&f.job);
		return -1;
	}
	*j = f.job;
	return 0;
}
