/*
 * engine.c: due work for one worker: submits, polls, webhook deliveries and
 * provider cancels, each a leased row in the store driven by fetches on the
 * worker's loop.
 */
#include "engine.h"

#include "buf.h"
#include "config.h"
#include "customers.h"
#include "fetch.h"
#include "keypool.h"
#include "usage.h"
#include "log.h"
#include "metrics.h"
#include "retry.h"
#include "script.h"
#include "scrub.h"
#include "sign.h"
#include "urlguard.h"
#include "worker.h"

#include <curl/curl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CLAIM_MAX 128
/* A claimed row's lease (jobs.lease_s); the worker renews it while it runs. */
#define LEASE_MS ((int64_t)(w->cfg->lease_s * 1000))
#define PROVIDER_TIMEOUT_MS 30000
#define PROVIDER_RESPONSE_MAX (4 << 20)
#define MAX_NEXT_HOPS 5
#define ERR_MAX 512
#define RETRY_IN_MAX_MS 300000  /* cap on an adapter's retry_in (and Retry-After) */
#define CAP_RECHECK_MS 500      /* a job held by a provider's max_inflight looks again after this */

enum step_kind { STEP_SUBMIT, STEP_POLL, STEP_DELIVER, STEP_CANCEL, STEP_JWKS };

/* One piece of work in flight; owned by the engine until its fetch ends. */
struct step {
	struct worker *w;
	enum step_kind kind;
	struct work wk;
	int hops;
	int target_idx;   /* the job's target when the step started */
	char provider[64];
	char version[32];
	int64_t started_ms;
};

static int64_t now_ms(void)
{
	return loop_wall_ms();
}

static double rnd01(void)
{
	uint32_t v;
	if (sign_random(&v, sizeof v) < 0)
		return 0.5;
	return (double)v / 4294967296.0;
}

/* ---------- due timer ---------- */

static void due_fire(struct loop_timer *t);

void engine_kick(struct worker *w, int64_t due_at)
{
	if (w->stopping || w->cfg->role == ROLE_API)
		return;
	int64_t delay = due_at - now_ms();
	if (delay < 0)
		delay = 0;
	int64_t at = loop_now_ms() + delay;
	if (!loop_timer_active(&w->due_timer) || w->due_timer.at_ms > at)
		loop_timer_set(w->loop, &w->due_timer, at);
}

static void due_fire(struct loop_timer *t)
{
	struct worker *w = t->arg;
	struct work items[CLAIM_MAX];
	size_t n = 0, room = CLAIM_MAX;
	int64_t now = now_ms();
	if (w->stopping)
		return;
	/* Bounded concurrency: claim only what this worker may run now; the
	 * rest waits in the store (due, unleased) for the next round. */
	if (w->inflight_steps >= w->cfg->max_inflight) {
		loop_timer_set(w->loop, &w->due_timer, loop_now_ms() + 20);
		return;
	}
	if ((long)room > w->cfg->max_inflight - w->inflight_steps)
		room = (size_t)(w->cfg->max_inflight - w->inflight_steps);
	if (store_work_claim(w->store, w->owner, now, LEASE_MS, items, room, &n) < 0) {
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
		delay = next - now_ms();
		if (delay < 5)
			delay = 5;
		if (delay > check)
			delay = check;
	}
	loop_timer_set(w->loop, &w->due_timer, loop_now_ms() + delay);
}

void engine_init(struct worker *w)
{
	loop_timer_init(&w->due_timer, due_fire, w);
	if (w->cfg->role != ROLE_API)
		loop_timer_set(w->loop, &w->due_timer, loop_now_ms());
}

void engine_shutdown(struct worker *w)
{
	loop_timer_stop(w->loop, &w->due_timer);
}

/* ---------- helpers ---------- */

/* The lease heartbeat (worker.c) renews exactly the rows of running steps:
 * each step's work id is listed while it runs. */
static void live_add(struct worker *w, int64_t id)
{
	if (id <= 0)
		return;
	if (w->nlive == w->caplive) {
		size_t ncap = w->caplive ? w->caplive * 2 : 64;
		int64_t *nl = realloc(w->live_work, ncap * sizeof *nl);
		if (!nl)
			return; /* not renewed: the row's lease may expire and it runs again */
		w->live_work = nl;
		w->caplive = ncap;
	}
	w->live_work[w->nlive++] = id;
}

static void live_remove(struct worker *w, int64_t id)
{
	for (size_t i = w->nlive; id > 0 && i-- > 0;) {
		if (w->live_work[i] == id) {
			w->live_work[i] = w->live_work[--w->nlive];
			return;
		}
	}
}

static struct step *step_new(struct worker *w, enum step_kind kind, const struct work *wk)
{
	struct step *s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	s->w = w;
	s->kind = kind;
	if (wk)
		s->wk = *wk;
	s->started_ms = now_ms();
	w->inflight_steps++;
	live_add(w, s->wk.id);
	return s;
}

static void step_free(struct step *s)
{
	s->w->inflight_steps--;
	live_remove(s->w, s->wk.id);
	free(s);
}

json_t *engine_job_arg(const struct job *j)
{
	json_t *o = json_object();
	json_object_set_new(o, "id", json_string(j->id));
	json_object_set_new(o, "model", json_string(j->model ? j->model : ""));
	json_object_set_new(o, "model_id", json_string(j->model_id ? j->model_id : ""));
	json_t *input = j->input ? json_loads(j->input, 0, NULL) : NULL;
	json_object_set_new(o, "input", input ? input : json_object());
	if (j->track_id)
		json_object_set_new(o, "track_id", json_string(j->track_id));
	if (j->request_id)
		json_object_set_new(o, "request_id", json_string(j->request_id));
	json_t *data = j->data ? json_loads(j->data, 0, NULL) : NULL;
	json_object_set_new(o, "data", data ? data : json_object());
	json_object_set_new(o, "attempt", json_integer(j->attempt + 1));
	return o;
}

void engine_callback_url(struct worker *w, const struct job *j, char *out, size_t outlen)
{
	char token[40] = "invalid";
	if (sign_callback_token(w->server_secret, j->id, token, sizeof token) < 0)
		snprintf(token, sizeof token, "invalid");
	snprintf(out, outlen, "%s/v1/callbacks/%s/%s/%s", w->cfg->public_url,
		 j->provider ? j->provider : "none", j->id, token);
}

static void add_header(void *arg, const char *name, const char *value)
{
	json_object_set_new(arg, name, json_stringn_nocheck(value, strlen(value)));
}

/* The `res` table handed to scripts for a provider's answer. Caller owns. */
static json_t *response_arg(const struct fetch_response *res)
{
	json_t *o = json_object(), *h = json_object();
	json_object_set_new(o, "status", json_integer(res->status));
	json_object_set_new(o, "url", json_string(res->url ? res->url : ""));
	fetch_each_header(res->headers, res->headers_len, add_header, h);
	json_object_set_new(o, "headers", h);
	json_object_set_new(o, "body", json_stringn_nocheck(res->body, res->body_len));
	json_t *parsed = res->body_len ? json_loadb(res->body, res->body_len,
						    JSON_DECODE_ANY, NULL) : NULL;
	if (parsed)
		json_object_set_new(o, "json", parsed);
	return o;
}

static int header_ok(const char *s)
{
	for (; *s; s++)
		if (*s == '\r' || *s == '\n')
			return 0;
	return 1;
}

/*
 * Turns a script's request table into a started fetch. Returns 0, or -1 with
 * err (the step is not freed).
 */
static int start_request(struct step *st, json_t *req, fetch_done_cb cb,
			 char *err, size_t errlen)
{
	struct worker *w = st->w;
	if (!json_is_object(req)) {
		snprintf(err, errlen, "%s: request must be a table", st->provider);
		return -1;
	}
	const char *url = json_string_value(json_object_get(req, "url"));
	const char *method = json_string_value(json_object_get(req, "method"));
	json_t *body = json_object_get(req, "body");
	if (!url || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)) {
		snprintf(err, errlen, "%s: request.url must be an http(s) URL", st->provider);
		return -1;
	}
	if (!method)
		method = body && !json_is_null(body) ? "POST" : "GET";
	struct curl_slist *hl = NULL;
	int has_ct = 0;
	const char *k;
	json_t *v;
	json_object_foreach(json_object_get(req, "headers"), k, v) {
		const char *sv = json_string_value(v);
		char line[4096];
		if (!sv || !header_ok(k) || !header_ok(sv)) {
			curl_slist_free_all(hl);
			snprintf(err, errlen, "%s: request header '%s' must be a one-line string",
				 st->provider, k);
			return -1;
		}
		if (strcasecmp(k, "content-type") == 0)
			has_ct = 1;
		snprintf(line, sizeof line, "%s: %s", k, sv);
		hl = curl_slist_append(hl, line);
	}
	char *text = NULL;
	size_t len = 0;
	if (json_is_string(body)) {
		len = json_string_length(body);
		text = malloc(len + 1);
		if (text)
			memcpy(text, json_string_value(body), len + 1);
	} else if (body && !json_is_null(body)) {
		text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
		len = text ? strlen(text) : 0;
		if (!has_ct)
			hl = curl_slist_append(hl, "Content-Type: application/json");
	}
	hl = curl_slist_append(hl, "Accept: application/json");
	hl = curl_slist_append(hl, "Expect:");
	struct fetch_request fr = {
		.method = method, .url = url, .headers = hl,
		.body = text, .body_len = len,
		.timeout_ms = PROVIDER_TIMEOUT_MS,
		.max_response = PROVIDER_RESPONSE_MAX,
		.proxy = json_string_value(json_object_get(config_provider(w->cfg, st->provider), "proxy")),
	};
	int rc = fetch_start(w->fetch, &fr, cb, st);
	free(text);
	if (rc < 0) {
		snprintf(err, errlen, "cannot start request");
		return -1;
	}
	return 0;
}

static void merge_data(struct job *j, json_t *data)
{
	if (!json_is_object(data))
		return;
	json_t *cur = j->data ? json_loads(j->data, 0, NULL) : NULL;
	if (!json_is_object(cur)) {
		json_decref(cur);
		cur = json_object();
	}
	json_object_update(cur, data);
	char *text = json_dumps(cur, JSON_COMPACT);
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

int engine_apply_result(struct worker *w, struct job *j, json_t *res,
			long http_status, const char *script_name)
{
	(void)w;
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
	merge_data(j, json_object_get(res, "data"));
	/* An adapter's cost of the job is kept with it (data.cost). */
	json_t *cost = usage_cost_of(json_object_get(res, "cost"));
	if (cost) {
		json_t *cd = json_pack("{s:o}", "cost", cost);
		merge_data(j, cd);
		json_decref(cd);
	}
	j->status = st;
	if (st == JOB_SUCCEEDED) {
		json_t *out = json_object_get(res, "output");
		free(j->output);
		j->output = out && !json_is_null(out) ? json_dumps(out, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
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

/* The target after the current one, or NULL. Borrowed from *holder. */
static const char *next_target(const struct job *j, json_t **holder)
{
	*holder = json_loads(j->targets, 0, NULL);
	return json_string_value(json_array_get(*holder, (size_t)j->target_idx + 1));
}

static void event_add(struct worker *w, const char *job_id, const char *kind, json_t *detail)
{
	char *text = json_dumps(detail, JSON_COMPACT);
	json_decref(detail);
	scrub_str(w->cfg->scrub, &text); /* reasons may quote a provider */
	if (store_event_add(w->store, job_id, now_ms(), kind, text) < 0)
		metrics_inc(M_STORE_ERRORS);
	free(text);
}

/* Moves j (in memory) to its next target: queued again, nothing of the last
 * provider kept. Returns the event detail (caller owns). */
static json_t *to_next_target(struct worker *w, struct job *j, const char *next,
			      const char *code, const char *reason)
{
	char from[400];
	snprintf(from, sizeof from, "%s:%s", j->provider, j->model);
	json_t *detail = json_pack("{s:s,s:s,s:s,s:s}", "from", from, "to", next,
				   "code", code, "reason", reason);
	j->target_idx++;
	set_target(j, next);
	j->attempt = 0;
	j->polls = 0;
	j->status = JOB_QUEUED;
	j->completed_at = 0;
	job_set(&j->request_id, NULL);
	job_set(&j->data, NULL);
	job_set(&j->error_code, NULL);
	job_set(&j->error_message, NULL);
	job_set(&j->output, NULL);
	j->submit_deadline = now_ms() + (int64_t)(w->cfg->submit_window_s * 1000);
	j->updated_at = now_ms();
	metrics_inc(M_FAILOVERS);
	return detail;
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

int engine_end_job_tx(struct worker *w, struct job *j, struct work *out, int *nout)
{
	return engine_end_job_via_tx(w, j, NULL, out, nout);
}

/*
 * The cost of an ending job: the adapter's (data.cost) or, for a succeeded
 * job without one, the estimate of its provider's price table (kept in
 * data.cost too); recorded as the job's usage row in the caller's
 * transaction. <0 on a store error.
 */
static int record_cost(struct worker *w, struct job *j, int64_t now)
{
	json_t *d = j->data ? json_loads(j->data, 0, NULL) : NULL;
	json_t *cost = usage_cost_of(json_object_get(d, "cost"));
	json_decref(d);
	if (!cost && j->status == JOB_SUCCEEDED && j->provider) {
		cost = usage_estimate(config_provider(w->cfg, j->provider), j->model, j->output);
		if (cost) {
			json_t *cd = json_pack("{s:O}", "cost", cost);
			merge_data(j, cd);
			json_decref(cd);
		}
	}
	if (!cost)
		return 0;
	int rc = store_usage_add(w->store, j->id, j->customer, j->provider, j->model,
				 json_number_value(json_object_get(cost, "amount")),
				 json_string_value(json_object_get(cost, "unit")),
				 json_string_value(json_object_get(cost, "source")), now);
	json_decref(cost);
	return rc < 0 ? -1 : 0;
}

int engine_end_job_via_tx(struct worker *w, struct job *j, const char *via,
			  struct work *out, int *nout)
{
	int64_t now = now_ms();
	*nout = 0;
	/* What providers and scripts wrote into the job leaves genrelay (the
	 * job record, its events, the webhook): no configured secret in it. */
	scrub_str(w->cfg->scrub, &j->error_message);
	scrub_str(w->cfg->scrub, &j->output);
	scrub_str(w->cfg->scrub, &j->data);
	json_t *holder = NULL;
	const char *next = fails_over(w, j) ? next_target(j, &holder) : NULL;
	if (next) {
		json_t *detail = to_next_target(w, j, next, j->error_code,
						j->error_message ? j->error_message : "failed");
		json_decref(holder);
		int64_t id;
		event_add(w, j->id, "failover", detail);
		if (store_job_update(w->store, j) < 0 || store_work_drop(w->store, j->id, 0, 0) < 0 ||
		    store_work_add(w->store, j->id, WORK_SUBMIT, NULL, now, w->owner,
				   now + LEASE_MS, &id) < 0)
			return -1;
		memset(out, 0, sizeof *out);
		out->id = id;
		out->kind = WORK_SUBMIT;
		out->due_at = now;
		snprintf(out->job_id, sizeof out->job_id, "%s", j->id);
		*nout = 1;
		return 0;
	}
	json_decref(holder);
	j->updated_at = now;
	if (!j->completed_at)
		j->completed_at = now;
	if (record_cost(w, j, now) < 0)
		return -1;
	if (store_job_update(w->store, j) < 0 || store_work_drop(w->store, j->id, 0, 0) < 0)
		return -1;
	/* script_version: the provider script in effect when the job ended;
	 * when a step gave the result (on_submitted, on_callback, on_polled, or
	 * one that raised), the version that ran it. */
	event_add(w, j->id, "ended", json_pack("{s:s,s:s?,s:s?,s:s?,s:s?}", "status",
		  job_status_name(j->status), "error", j->error_code, "provider", j->provider,
		  "script_version", j->provider ? script_version(w->scripts, SCRIPT_PROVIDER,
								 j->provider) : NULL, "via", via));
	if (!j->webhook_url)
		return 0;
	struct delivery d = {0};
	sign_random_id("msg_", d.id, sizeof d.id);
	snprintf(d.job_id, sizeof d.job_id, "%s", j->id);
	snprintf(d.event, sizeof d.event, "job.%s", job_status_name(j->status));
	d.url = j->webhook_url;
	snprintf(d.status, sizeof d.status, "pending");
	d.created_at = now;
	d.next_at = now;
	int64_t id;
	if (store_delivery_insert(w->store, &d) < 0 ||
	    store_work_add(w->store, j->id, WORK_DELIVER, d.id, now, w->owner,
			   now + LEASE_MS, &id) < 0)
		return -1;
	memset(out, 0, sizeof *out);
	out->id = id;
	out->kind = WORK_DELIVER;
	out->due_at = now;
	snprintf(out->job_id, sizeof out->job_id, "%s", j->id);
	snprintf(out->ref, sizeof out->ref, "%s", d.id);
	*nout = 1;
	return 0;
}

void engine_job_ended(struct worker *w, const struct job *j, const struct work *out, int nout)
{
	if (!job_terminal(j->status)) { /* failed over: it runs again */
		for (int i = 0; i < nout; i++)
			engine_dispatch(w, &out[i]);
		return;
	}
	metrics_inc(j->status == JOB_SUCCEEDED ? M_JOBS_SUCCEEDED
		    : j->status == JOB_CANCELED ? M_JOBS_CANCELED : M_JOBS_FAILED);
	log_ctx_job(j->id, j->customer, j->provider);
	log_info("job %s %s", j->id, job_status_name(j->status));
	metrics_job(j->provider, config_alias(w->cfg, j->model_id) ? j->model_id : "direct",
		    job_status_name(j->status),
		    j->completed_at > j->created_at ? (double)(j->completed_at - j->created_at) / 1000.0 : 0);
	for (int i = 0; i < nout; i++)
		engine_dispatch(w, &out[i]);
	if (w->hooks.job_ended)
		w->hooks.job_ended(w, j->id);
}

/*
 * Ends job j (already set terminal in memory) and finishes the work row
 * that led here, in one transaction. Returns 0 or a store error.
 */
static int end_job(struct worker *w, struct job *j, int64_t work_id, const char *via)
{
	struct work out;
	int nout = 0;
	if (store_begin(w->store) < 0)
		goto fail;
	if (engine_end_job_via_tx(w, j, via, &out, &nout) < 0 ||
	    (work_id && store_work_done(w->store, work_id) < 0)) {
		store_rollback(w->store);
		goto fail;
	}
	if (store_commit(w->store) < 0)
		goto fail;
	engine_job_ended(w, j, &out, nout);
	return 0;
fail:
	metrics_inc(M_STORE_ERRORS);
	log_warn("store: ending job %s failed: %s (the work row will run again)",
		 j->id, store_errmsg(w->store));
	return -1;
}

static void fail_via(struct worker *w, struct job *j, int64_t work_id,
		     const char *code, const char *message, const char *via)
{
	j->status = JOB_FAILED;
	job_set(&j->error_code, code);
	job_set(&j->error_message, message);
	end_job(w, j, work_id, via);
}

static void fail_loaded(struct worker *w, struct job *j, int64_t work_id,
			const char *code, const char *message)
{
	fail_via(w, j, work_id, code, message, NULL);
}

void engine_fail_job(struct worker *w, const char *job_id, const char *code,
		     const char *message)
{
	struct job j;
	if (store_job_get(w->store, job_id, NULL, &j) != 0)
		return;
	if (!job_terminal(j.status))
		fail_loaded(w, &j, 0, code, message);
	job_clear(&j);
}

/* Releases a work row to run again at due (wall ms). */
static void reschedule(struct worker *w, const struct work *wk, int64_t due, int tries)
{
	if (store_work_reschedule(w->store, wk->id, due, tries) < 0) {
		metrics_inc(M_STORE_ERRORS);
		return;
	}
	engine_kick(w, due);
}

static void work_done(struct worker *w, const struct work *wk)
{
	if (store_work_done(w->store, wk->id) < 0)
		metrics_inc(M_STORE_ERRORS);
}

/* Loads the job of a work row; returns 0, or 1 when it is gone or ended
 * (the row is then finished). */
static int load_live_job(struct worker *w, const struct work *wk, struct job *j)
{
	int rc = store_job_get(w->store, wk->job_id, NULL, j);
	if (rc < 0) {
		metrics_inc(M_STORE_ERRORS);
		reschedule(w, wk, now_ms() + 1000, wk->tries);
		return 1;
	}
	if (rc == 1) {
		work_done(w, wk);
		return 1;
	}
	if (job_terminal(j->status)) {
		job_clear(j);
		work_done(w, wk);
		return 1;
	}
	log_ctx_job(j->id, j->customer, j->provider);
	return 0;
}

/*
 * A provider step's answer is stale when the job moved on while the request
 * ran: a callback that overtook it ended the job or moved it to another
 * target (its work row was dropped then). A stale answer is dropped: the
 * job's current step owns it now.
 */
static int step_stale(const struct step *st, const struct job *j)
{
	return j->target_idx != st->target_idx || !j->provider ||
	       strcmp(j->provider, st->provider) != 0;
}

/* ---------- key pools ---------- */

/* The id of the pool key a job took (its data's "key_id") into id; "" none. */
static void job_key_id(const struct job *j, char *id, size_t idlen)
{
	json_t *d = j->data ? json_loads(j->data, 0, NULL) : NULL;
	const char *v = json_string_value(json_object_get(d, "key_id"));
	snprintf(id, idlen, "%s", v ? v : "");
	json_decref(d);
}

/* The job's key from its provider's pool (borrowed from the config), or
 * NULL: no pool, or the config no longer has the job's key (the adapter then
 * reads the settings' `key`). */
static const char *job_pool_key(struct worker *w, const struct job *j)
{
	json_t *ps = config_provider(w->cfg, j->provider);
	char id[KEYPOOL_ID_MAX];
	if (!keypool_size(ps))
		return NULL;
	job_key_id(j, id, sizeof id);
	return id[0] ? keypool_key(ps, id) : NULL;
}

/* A usable key remains in the provider's pool now (1), else 0. */
static int pool_has_usable(const char *provider, const json_t *ps)
{
	char id[KEYPOOL_ID_MAX];
	int64_t wait;
	return keypool_pick(provider, ps, now_ms(), 0, id, sizeof id, &wait) == 0;
}

static int call_provider(struct worker *w, struct job *j, const char *fn,
			 json_t *first, json_t **out, char *err, size_t errlen)
{
	char cb_url[512];
	json_t *jarg = engine_job_arg(j);
	json_t *args[2];
	size_t nargs = 0;
	if (first)
		args[nargs++] = first;
	args[nargs++] = jarg;
	engine_callback_url(w, j, cb_url, sizeof cb_url);
	struct script_provider_info info;
	script_provider_info(w->scripts, j->provider, &info);
	/* providers.NAME.callbacks = false: poll only, no callback URL sent. */
	struct script_ctx ctx = { .provider = j->provider,
				  .callback_url = info.callbacks ? cb_url : NULL, .keys = NULL,
				  .key = job_pool_key(w, j) };
	int rc = script_call(w->scripts, SCRIPT_PROVIDER, j->provider, fn, args, nargs,
			     &ctx, out, err, errlen);
	json_decref(jarg);
	if (rc == -2)
		snprintf(err, errlen, "providers/%s.lua: no function %s (or no such script)",
			 j->provider, fn);
	if (rc < 0)
		metrics_inc(M_SCRIPT_ERRORS);
	return rc;
}

/* ---------- submit ---------- */

static void submit_done(void *arg, const struct fetch_response *res);
static void submit_give_up(struct worker *w, struct job *j, const struct work *wk,
			   const char *code, const char *reason, int allow_failover);
static void submit_retry(struct worker *w, struct job *j, const struct work *wk,
			 int64_t retry_after, const char *reason);

int engine_callbacks_refused(const char *public_url, const char *provider,
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
	int64_t now = now_ms();
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

static void run_submit(struct worker *w, const struct work *wk)
{
	struct job j;
	char err[ERR_MAX];
	if (load_live_job(w, wk, &j))
		return;
	struct script_provider_info info;
	char why[ERR_MAX];
	if (script_provider_info(w->scripts, j.provider, &info) == 0 && !info.configured) {
		snprintf(why, sizeof why, "provider %s is not configured (no providers.%s in the config)",
			 j.provider, j.provider);
		submit_give_up(w, &j, wk, "PROVIDER_UNAVAILABLE", why, 1);
		job_clear(&j);
		return;
	}
	/* Refused at submit, without calling the provider: it would refuse the
	 * callback URL (or never reach it). An alias moves to its next target. */
	if (engine_callbacks_refused(w->cfg->public_url, j.provider, &info, why, sizeof why)) {
		submit_give_up(w, &j, wk, "PROVIDER_UNAVAILABLE", why, 1);
		job_clear(&j);
		return;
	}
	if (info.max_inflight > 0) {
		int slot = take_slot(w, wk, j.provider, info.max_inflight);
		if (slot < 0) /* the store failed: look again in a second */
			reschedule(w, wk, now_ms() + 1000, wk->tries);
		if (slot != 1) {
			job_clear(&j);
			return;
		}
	}
	/* A provider with a key pool: every submit takes a usable key, whose id
	 * is kept with the job before the request goes out. */
	json_t *ps = config_provider(w->cfg, j.provider);
	int pooled = keypool_size(ps) > 0;
	if (pooled) {
		char kid[KEYPOOL_ID_MAX];
		int64_t wait;
		if (keypool_pick(j.provider, ps, now_ms(), rnd01(), kid, sizeof kid, &wait) < 0) {
			if (wait < 0) {
				snprintf(why, sizeof why, "every key of providers.%s.keys was refused (HTTP 401/403)",
					 j.provider);
				submit_give_up(w, &j, wk, "PROVIDER_UNAVAILABLE", why, 1);
			} else {
				snprintf(why, sizeof why, "every key of providers.%s.keys cools down after HTTP 429",
					 j.provider);
				submit_retry(w, &j, wk, wait, why);
			}
			job_clear(&j);
			return;
		}
		json_t *kd = json_pack("{s:s}", "key_id", kid);
		merge_data(&j, kd);
		json_decref(kd);
	}
	json_t *req = NULL;
	if (call_provider(w, &j, "submit", NULL, &req, err, sizeof err) < 0) {
		fail_loaded(w, &j, wk->id, "SCRIPT_ERROR", err);
		job_clear(&j);
		return;
	}
	/* A submit request's `data` (e.g. a per-job secret the provider will sign
	 * its callback with) is stored before the request goes out. */
	json_t *rdata = json_object_get(req, "data");
	int has_rdata = json_is_object(rdata) && json_object_size(rdata) > 0;
	if (has_rdata || pooled) {
		merge_data(&j, rdata);
		j.updated_at = now_ms();
		if (store_job_update(w->store, &j) < 0) {
			metrics_inc(M_STORE_ERRORS);
			json_decref(req);
			reschedule(w, wk, now_ms() + 1000, wk->tries);
			job_clear(&j);
			return;
		}
	}
	struct step *st = step_new(w, STEP_SUBMIT, wk);
	snprintf(st->provider, sizeof st->provider, "%s", j.provider);
	st->target_idx = j.target_idx;
	const char *v = script_version(w->scripts, SCRIPT_PROVIDER, j.provider);
	snprintf(st->version, sizeof st->version, "%s", v ? v : "");
	metrics_inc(M_SUBMITS);
	if (start_request(st, req, submit_done, err, sizeof err) < 0) {
		step_free(st);
		fail_loaded(w, &j, wk->id, "SCRIPT_ERROR", err);
	}
	json_decref(req);
	job_clear(&j);
}

/* Moves j to its next target, or ends it with PROVIDER_UNAVAILABLE. */
static void submit_give_up(struct worker *w, struct job *j, const struct work *wk,
			   const char *code, const char *reason, int allow_failover)
{
	json_t *holder = NULL;
	const char *next = allow_failover ? next_target(j, &holder) : NULL;
	if (next) {
		json_t *detail = to_next_target(w, j, next, code, reason);
		if (store_begin(w->store) == 0) {
			event_add(w, j->id, "failover", detail);
			detail = NULL;
			if (store_job_update(w->store, j) < 0 ||
			    store_work_reschedule(w->store, wk->id, now_ms(), 0) < 0 ||
			    store_commit(w->store) < 0) {
				store_rollback(w->store);
				metrics_inc(M_STORE_ERRORS);
			}
		}
		json_decref(detail);
		json_decref(holder);
		engine_kick(w, now_ms());
		return;
	}
	json_decref(holder);
	if (strcmp(code, "PROVIDER_UNAVAILABLE") == 0) {
		char msg[ERR_MAX];
		snprintf(msg, sizeof msg, "provider %s unavailable: %s", j->provider, reason);
		fail_loaded(w, j, wk->id, code, msg);
	} else {
		end_job(w, j, wk->id, "submit");
	}
}

static void submit_retry(struct worker *w, struct job *j, const struct work *wk,
			 int64_t retry_after, const char *reason)
{
	int64_t now = now_ms();
	j->attempt++;
	int64_t delay = retry_backoff_delay(500, 30000, (unsigned)j->attempt,
					    w->cfg->retry_jitter, rnd01());
	if (retry_after >= 0)
		delay = retry_after;
	metrics_inc(M_SUBMIT_RETRIES);
	json_t *holder = NULL;
	int has_next = next_target(j, &holder) != NULL;
	json_decref(holder);
	if (now + delay > j->submit_deadline ||
	    (has_next && j->attempt >= w->cfg->failover_after)) {
		submit_give_up(w, j, wk, "PROVIDER_UNAVAILABLE", reason, 1);
		return;
	}
	j->updated_at = now;
	if (store_begin(w->store) < 0)
		goto fail;
	event_add(w, j->id, "submit_retry", json_pack("{s:s,s:i,s:s,s:I}", "provider",
		  j->provider, "attempt", j->attempt, "reason", reason, "delay_ms", (json_int_t)delay));
	if (store_job_update(w->store, j) < 0 ||
	    store_work_reschedule(w->store, wk->id, now + delay, wk->tries + 1) < 0 ||
	    store_commit(w->store) < 0) {
		store_rollback(w->store);
		goto fail;
	}
	engine_kick(w, now + delay);
	return;
fail:
	metrics_inc(M_STORE_ERRORS);
}

static int64_t header_retry_after(const struct fetch_response *res)
{
	char v[128];
	if (fetch_header(res->headers, res->headers_len, "retry-after", v, sizeof v) < 0)
		return -1;
	return retry_after_ms(v, now_ms() / 1000, 300000);
}

static void describe(const struct fetch_response *res, char *out, size_t outlen)
{
	if (res->error)
		snprintf(out, outlen, "%s", res->error);
	else
		snprintf(out, outlen, "HTTP %ld", res->status);
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

static void submit_done(void *arg, const struct fetch_response *res)
{
	struct step *st = arg;
	struct worker *w = st->w;
	struct job j;
	char err[ERR_MAX], why[256];
	const struct work *wk = &st->wk;
	metrics_provider_call(st->provider, "submit", res->error != NULL, res->status, res->total_ms);
	if (load_live_job(w, wk, &j))
		goto out;
	if (step_stale(st, &j))
		goto out_job;
	describe(res, why, sizeof why);
	json_t *ps = config_provider(w->cfg, j.provider);
	char kid[KEYPOOL_ID_MAX] = "";
	if (keypool_size(ps))
		job_key_id(&j, kid, sizeof kid);
	if (kid[0] && !res->error && (res->status == 401 || res->status == 403)) {
		/* A refused key leaves the pool until the config changes; the job
		 * tries another one at once while one is left. */
		if (keypool_break(j.provider, ps, kid))
			log_warn("provider %s: key %s refused (HTTP %ld): out of the pool until the config changes",
				 j.provider, kid, res->status);
		if (pool_has_usable(j.provider, ps)) {
			submit_retry(w, &j, wk, 0, why);
			goto out_job;
		}
	}
	if (res->error || retry_status_retryable(res->status)) {
		int64_t after = header_retry_after(res);
		if (!res->error && res->status == 429) {
			/* The adapter sees a 429 and may read the wait from the body
			 * ({state = "retry", retry_in = s}); any other answer, or a
			 * script error, leaves the core's retry (Retry-After or backoff). */
			json_t *rarg = response_arg(res), *result = NULL;
			if (call_provider(w, &j, "on_submitted", rarg, &result, err, sizeof err) == 0 &&
			    is_retry(result)) {
				int64_t ri = retry_in_ms(result);
				const char *m = json_string_value(json_object_get(
					json_object_get(result, "error"), "message"));
				if (ri >= 0)
					after = ri;
				if (m)
					snprintf(why, sizeof why, "HTTP 429: %.200s", m);
			}
			json_decref(rarg);
			json_decref(result);
			/* A rate-limited pool key cools down for the time the
			 * provider named (a minute when it named none); the job's
			 * next submit takes another key at once if one is usable. */
			if (kid[0]) {
				keypool_cool(j.provider, ps, kid, now_ms() + (after >= 0 ? after : 60000));
				if (pool_has_usable(j.provider, ps))
					after = 0;
			}
		}
		submit_retry(w, &j, wk, after, why);
		goto out_job;
	}
	json_t *rarg = response_arg(res), *result = NULL;
	int rc = call_provider(w, &j, "on_submitted", rarg, &result, err, sizeof err);
	json_decref(rarg);
	if (rc < 0) {
		fail_loaded(w, &j, wk->id, "SCRIPT_ERROR", err);
		goto out_job;
	}
	if (is_retry(result)) {
		int64_t after = retry_in_ms(result);
		json_t *e = json_object_get(result, "error");
		const char *m = json_string_value(json_object_get(e, "message"));
		submit_retry(w, &j, wk, after, m ? m : "provider asked to retry");
		json_decref(result);
		goto out_job;
	}
	int term = engine_apply_result(w, &j, result, res->status, st->provider);
	json_t *poll_in = json_object_get(result, "poll_in");
	int64_t now = now_ms();
	if (term != 0) {
		end_job(w, &j, wk->id, "submit");
		json_decref(result);
		goto out_job;
	}
	/* Accepted: wait for the callback, polling as a fallback. A provider's
	 * settings may carry its own poll_after_s. */
	json_t *settings = script_provider_settings(w->scripts, j.provider);
	json_t *pa = json_object_get(settings, "poll_after_s");
	struct script_provider_info info;
	script_provider_info(w->scripts, j.provider, &info);
	double first = json_is_number(poll_in) ? json_number_value(poll_in)
		     : !info.callbacks ? w->cfg->poll_interval_s /* no callback will come */
		     : json_is_number(pa) ? json_number_value(pa) : w->cfg->poll_after_s;
	json_decref(settings);
	int64_t due = now + (int64_t)(first * 1000);
	if (due > j.deadline)
		due = j.deadline;
	j.updated_at = now;
	if (store_begin(w->store) < 0)
		goto store_fail;
	event_add(w, j.id, "submitted", json_pack("{s:s,s:s,s:s?,s:i,s:s,s:s?}", "provider", j.provider,
		  "model", j.model, "request_id", j.request_id, "http_status", (int)res->status,
		  "script_version", st->version, "key_id", kid[0] ? kid : NULL));
	if (store_job_update(w->store, &j) < 0 ||
	    store_work_become(w->store, wk->id, WORK_POLL, due) < 0 || store_commit(w->store) < 0) {
		store_rollback(w->store);
		goto store_fail;
	}
	json_decref(result);
	engine_kick(w, due);
	goto out_job;
store_fail:
	json_decref(result);
	metrics_inc(M_STORE_ERRORS);
out_job:
	job_clear(&j);
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

/* Polls again later. n404: the consecutive 404 answers so far, kept in the
 * poll row's tries (a poll row has no other use for it). */
static void poll_later(struct worker *w, struct job *j, const struct work *wk, json_t *poll_in,
		       int n404)
{
	int64_t due = now_ms() + poll_delay(w, j, poll_in);
	if (due > j->deadline)
		due = j->deadline;
	j->polls++;
	j->updated_at = now_ms();
	if (store_begin(w->store) < 0 || store_job_update(w->store, j) < 0 ||
	    store_work_reschedule(w->store, wk->id, due, n404) < 0 ||
	    store_commit(w->store) < 0) {
		store_rollback(w->store);
		metrics_inc(M_STORE_ERRORS);
		return;
	}
	engine_kick(w, due);
}

static void run_poll(struct worker *w, const struct work *wk)
{
	struct job j;
	char err[ERR_MAX];
	if (load_live_job(w, wk, &j))
		return;
	if (now_ms() >= j.deadline) {
		fail_via(w, &j, wk->id, "PROVIDER_TIMEOUT",
			 "no result from the provider before the job's deadline", "deadline");
		job_clear(&j);
		return;
	}
	if (!j.request_id || !script_has_fn(w->scripts, SCRIPT_PROVIDER, j.provider, "poll")) {
		/* Nothing to poll with: wait for the callback until the deadline. */
		reschedule(w, wk, j.deadline, wk->tries);
		job_clear(&j);
		return;
	}
	json_t *req = NULL;
	if (call_provider(w, &j, "poll", NULL, &req, err, sizeof err) < 0) {
		fail_loaded(w, &j, wk->id, "SCRIPT_ERROR", err);
		job_clear(&j);
		return;
	}
	struct step *st = step_new(w, STEP_POLL, wk);
	snprintf(st->provider, sizeof st->provider, "%s", j.provider);
	st->target_idx = j.target_idx;
	metrics_inc(M_POLLS);
	if (start_request(st, req, poll_done, err, sizeof err) < 0) {
		step_free(st);
		fail_loaded(w, &j, wk->id, "SCRIPT_ERROR", err);
	}
	json_decref(req);
	job_clear(&j);
}

static void poll_done(void *arg, const struct fetch_response *res)
{
	struct step *st = arg;
	struct worker *w = st->w;
	struct job j;
	char err[ERR_MAX];
	const struct work *wk = &st->wk;
	metrics_provider_call(st->provider, "poll", res->error != NULL, res->status, res->total_ms);
	if (load_live_job(w, wk, &j))
		goto out;
	if (step_stale(st, &j))
		goto out_job;
	/* A network error, 429 or 5xx on a poll never ends a job: it polls again
	 * on the schedule. The one exception is a `next` request's HTTP 500: fal's
	 * result call relays the model's own status, so the script sees it (502,
	 * 503 and 504 there are the gateway's, and retried). A 404 ends nothing
	 * until the adapter's poll_404_limit consecutive ones (default 3): a
	 * provider that has not indexed a new request yet answers 404 too. */
	if (res->error || (retry_status_retryable(res->status) &&
			   !(st->hops > 0 && res->status == 500))) {
		poll_later(w, &j, wk, NULL, wk->tries);
		goto out_job;
	}
	if (res->status == 404) {
		struct script_provider_info info;
		script_provider_info(w->scripts, j.provider, &info);
		if (wk->tries + 1 < info.poll_404_limit) {
			poll_later(w, &j, wk, NULL, wk->tries + 1);
			goto out_job;
		}
	}
	json_t *rarg = response_arg(res), *result = NULL;
	int rc = call_provider(w, &j, "on_polled", rarg, &result, err, sizeof err);
	json_decref(rarg);
	if (rc < 0) {
		fail_loaded(w, &j, wk->id, "SCRIPT_ERROR", err);
		goto out_job;
	}
	json_t *next = json_object_get(result, "next");
	if (json_is_object(next) && st->hops < MAX_NEXT_HOPS) {
		merge_data(&j, json_object_get(result, "data"));
		if (json_object_get(result, "data")) {
			j.updated_at = now_ms();
			store_job_update(w->store, &j);
		}
		st->hops++;
		if (start_request(st, next, poll_done, err, sizeof err) < 0) {
			fail_loaded(w, &j, wk->id, "SCRIPT_ERROR", err);
			json_decref(result);
			goto out_job;
		}
		json_decref(result);
		job_clear(&j);
		return; /* the step lives on */
	}
	int term = engine_apply_result(w, &j, result, res->status, st->provider);
	if (term != 0)
		end_job(w, &j, wk->id, "poll");
	else
		poll_later(w, &j, wk, json_object_get(result, "poll_in"), 0);
	json_decref(result);
out_job:
	job_clear(&j);
out:
	step_free(st);
}

/* ---------- cancel at the provider ---------- */

static void cancel_done(void *arg, const struct fetch_response *res)
{
	struct step *st = arg;
	struct worker *w = st->w;
	char why[256];
	metrics_provider_call(st->provider, "cancel", res->error != NULL, res->status, res->total_ms);
	describe(res, why, sizeof why);
	if ((res->error || retry_status_retryable(res->status)) && st->wk.tries < 5) {
		reschedule(w, &st->wk, now_ms() + 2000 * (st->wk.tries + 1), st->wk.tries + 1);
	} else {
		if (store_begin(w->store) == 0) {
			event_add(w, st->wk.job_id, "provider_cancel",
				  json_pack("{s:s,s:s}", "provider", st->provider, "result", why));
			store_work_done(w->store, st->wk.id);
			if (store_commit(w->store) < 0)
				store_rollback(w->store);
		}
	}
	step_free(st);
}

static void run_cancel(struct worker *w, const struct work *wk)
{
	struct job j;
	char err[ERR_MAX];
	int rc = store_job_get(w->store, wk->job_id, NULL, &j);
	if (rc != 0) {
		work_done(w, wk);
		return;
	}
	log_ctx_job(j.id, j.customer, j.provider);
	json_t *req = NULL;
	if (!j.request_id || call_provider(w, &j, "cancel", NULL, &req, err, sizeof err) < 0 ||
	    !json_is_object(req)) {
		json_decref(req);
		work_done(w, wk);
		job_clear(&j);
		return;
	}
	struct step *st = step_new(w, STEP_CANCEL, wk);
	snprintf(st->provider, sizeof st->provider, "%s", j.provider);
	if (start_request(st, req, cancel_done, err, sizeof err) < 0) {
		step_free(st);
		work_done(w, wk);
	}
	json_decref(req);
	job_clear(&j);
}

/* ---------- webhook delivery ---------- */

static void deliver_done(void *arg, const struct fetch_response *res);

/* A webhook body leaves scrubbed of every configured secret (a hook may put
 * anything in it); the signature covers the scrubbed bytes. */
static void scrub_body(struct worker *w, char **body, size_t *bodylen)
{
	size_t n = 0;
	char *t = *body ? scrub_dup(w->cfg->scrub, *body, *bodylen, &n) : NULL;
	if (t) {
		free(*body);
		*body = t;
		*bodylen = n;
	}
}

/* Records one failed or refused attempt and schedules the next try. */
static void delivery_failed(struct worker *w, struct delivery *d, const struct work *wk,
			    long status, double latency, const char *error,
			    int64_t retry_after, const char *version,
			    const char *sent, size_t sent_len)
{
	int64_t now = now_ms();
	d->attempts++;
	int64_t delay = retry_schedule_delay(w->cfg->retry, w->cfg->nretry,
					     (unsigned)d->attempts, w->cfg->retry_jitter, rnd01());
	if (delay >= 0 && retry_after > delay)
		delay = retry_after;
	metrics_inc(M_DELIVERIES_FAILED);
	if (delay < 0) {
		snprintf(d->status, sizeof d->status, "dead");
		d->next_at = 0;
		metrics_inc(M_DELIVERIES_DEAD);
	} else {
		d->next_at = now + delay;
	}
	if (store_begin(w->store) < 0)
		goto fail;
	char *why = error ? strdup(error) : NULL;
	scrub_str(w->cfg->scrub, &why);
	int bad = store_attempt_insert(w->store, d->id, d->job_id, now, status, latency, why, version,
				       sent, sent_len) < 0;
	free(why);
	if (bad ||
	    store_delivery_update(w->store, d) < 0 ||
	    (delay < 0 ? store_work_done(w->store, wk->id)
		       : store_work_reschedule(w->store, wk->id, d->next_at, wk->tries + 1)) < 0 ||
	    store_commit(w->store) < 0) {
		store_rollback(w->store);
		goto fail;
	}
	if (delay >= 0)
		engine_kick(w, d->next_at);
	return;
fail:
	metrics_inc(M_STORE_ERRORS);
}

/* The body an attempt sent is kept with the attempt, up to this many bytes
 * (the dashboard shows it; the receiver got all of it). */
#define ATTEMPT_BODY_KEEP (16 * 1024)

struct deliver_step {
	struct step base;
	struct delivery d;
	size_t sent_len;  /* bytes of sent[] kept (the body, truncated) */
	char sent[];      /* ATTEMPT_BODY_KEEP at most */
};

static void run_deliver(struct worker *w, const struct work *wk)
{
	struct delivery d;
	struct job j;
	char err[ERR_MAX];
	/* A store error leaves the row for a second later (never leased for a
	 * whole lease, never dropped); a delivery or job that is gone, or a
	 * delivery no longer pending, finishes the row. */
	int rc = store_delivery_get(w->store, wk->ref, &d);
	if (rc == 0 && strcmp(d.status, "pending") != 0) {
		free(d.url);
		rc = 1;
	} else if (rc == 0 && (rc = store_job_get(w->store, d.job_id, NULL, &j)) != 0) {
		free(d.url);
	}
	if (rc != 0) {
		if (rc == 1) {
			work_done(w, wk);
		} else {
			metrics_inc(M_STORE_ERRORS);
			reschedule(w, wk, now_ms() + 1000, wk->tries);
		}
		return;
	}
	log_ctx_job(j.id, j.customer, j.provider);
	const struct config_customer *cust = customers_by_name(w->customers, w->cfg, w->store, j.customer);
	/* The customer's hook as configured now (not when the job was made), so
	 * an operator's change applies to pending deliveries too. */
	const char *hook = cust && cust->hook ? cust->hook : "default";
	/* A job submitted through a front with the client's own webhook shape
	 * (fal's fal_webhook) records "front:NAME": that front's webhook(). */
	enum script_kind hkind = SCRIPT_HOOK;
	const char *hfn = "transform";
	if (j.hook && strncmp(j.hook, "front:", 6) == 0) {
		hkind = SCRIPT_FRONT;
		hook = j.hook + 6;
		hfn = "webhook";
	}
	json_t *event = job_to_json(&j);
	json_object_set_new(event, "type", json_string(d.event));
	const char *version = script_version(w->scripts, hkind, hook);
	char ver[32];
	snprintf(ver, sizeof ver, "%s", version ? version : "");
	char *body = NULL;
	size_t bodylen = 0;
	struct curl_slist *hl = NULL;
	int has_ct = 0;
	if (!version && strcmp(hook, "default") != 0) {
		/* The customer's shape is not loaded (removed, or broken since
		 * start-up): retry on the schedule rather than send another shape. */
		metrics_inc(M_SCRIPT_ERRORS);
		char msg[ERR_MAX];
		snprintf(msg, sizeof msg, "SCRIPT_ERROR: %s/%.64s.lua: not loaded",
			 hkind == SCRIPT_FRONT ? "fronts" : "hooks", hook);
		delivery_failed(w, &d, wk, 0, 0, msg, -1, NULL, NULL, 0);
		goto done;
	}
	if (script_exists(w->scripts, hkind, hook)) {
		json_t *out = NULL;
		struct script_ctx ctx = {0};
		if (script_call(w->scripts, hkind, hook, hfn, &event, 1, &ctx,
				&out, err, sizeof err) < 0) {
			metrics_inc(M_SCRIPT_ERRORS);
			char msg[ERR_MAX + 16];
			snprintf(msg, sizeof msg, "SCRIPT_ERROR: %s", err);
			delivery_failed(w, &d, wk, 0, 0, msg, -1, ver, NULL, 0);
			goto done;
		}
		if (json_is_null(out)) {
			snprintf(d.status, sizeof d.status, "skipped");
			if (store_begin(w->store) == 0) {
				store_attempt_insert(w->store, d.id, d.job_id, now_ms(), 0, 0,
						     "skipped by hook", ver, NULL, 0);
				store_delivery_update(w->store, &d);
				store_work_done(w->store, wk->id);
				if (store_commit(w->store) < 0)
					store_rollback(w->store);
			}
			json_decref(out);
			goto done;
		}
		json_t *b = json_object_get(out, "body");
		if (json_is_string(b)) {
			bodylen = json_string_length(b);
			body = malloc(bodylen + 1);
			memcpy(body, json_string_value(b), bodylen + 1);
		} else if (b) {
			body = json_dumps(b, JSON_COMPACT | JSON_ENCODE_ANY);
			bodylen = body ? strlen(body) : 0;
		}
		/* A header the hook may not send fails the attempt, naming it, like
		 * any other hook error: dropping it quietly would hide the mistake. */
		const char *k;
		json_t *v;
		char herr[400] = "";
		json_object_foreach(json_object_get(out, "headers"), k, v) {
			const char *sv = json_string_value(v);
			if (fetch_header_field_check(k, sv, sv ? json_string_length(v) : 0,
						     herr, sizeof herr) < 0)
				break;
			if (fetch_header_name_matches(k, "webhook-*")) {
				snprintf(herr, sizeof herr, "header '%s' is set by the core (Standard Webhooks), not by a hook", k);
				break;
			}
			if (fetch_header_name_matches(k, "content-type"))
				has_ct = 1;
			char line[4096];
			snprintf(line, sizeof line, "%s: %s", k, sv);
			hl = curl_slist_append(hl, line);
		}
		json_decref(out);
		if (herr[0]) {
			curl_slist_free_all(hl);
			metrics_inc(M_SCRIPT_ERRORS);
			char msg[ERR_MAX];
			snprintf(msg, sizeof msg, "SCRIPT_ERROR: hooks/%.64s.lua: %s", hook, herr);
			delivery_failed(w, &d, wk, 0, 0, msg, -1, ver, NULL, 0);
			goto done;
		}
		if (!body) {
			curl_slist_free_all(hl);
			delivery_failed(w, &d, wk, 0, 0, "SCRIPT_ERROR: transform returned no body",
					-1, ver, NULL, 0);
			goto done;
		}
	} else {
		body = json_dumps(event, JSON_COMPACT);
		bodylen = strlen(body);
	}
	scrub_body(w, &body, &bodylen);
	int64_t ts = now_ms() / 1000;
	char line[512], sig[128];
	snprintf(line, sizeof line, "webhook-id: %s", d.id);
	hl = curl_slist_append(hl, line);
	snprintf(line, sizeof line, "webhook-timestamp: %lld", (long long)ts);
	hl = curl_slist_append(hl, line);
	/* Never sent unsigned: no signature, no request (the attempt is recorded). */
	if (!cust || !cust->webhook_secret ||
	    sign_webhook(cust->webhook_secret, d.id, ts, body, bodylen, sig, sizeof sig) <= 0) {
		curl_slist_free_all(hl);
		delivery_failed(w, &d, wk, 0, 0, !cust || !cust->webhook_secret
				? "not signed, not sent: the customer has no webhook_secret"
				: "not signed, not sent: signing failed", -1, ver, NULL, 0);
		goto done;
	}
	snprintf(line, sizeof line, "webhook-signature: %s", sig);
	hl = curl_slist_append(hl, line);
	if (!has_ct)
		hl = curl_slist_append(hl, "Content-Type: application/json");
	hl = curl_slist_append(hl, "Expect:");
	size_t keep = bodylen < ATTEMPT_BODY_KEEP ? bodylen : ATTEMPT_BODY_KEEP;
	while (keep < bodylen && keep > 0 && ((unsigned char)body[keep] & 0xC0) == 0x80)
		keep--; /* cut at a character boundary */
	struct deliver_step *ds = calloc(1, sizeof *ds + keep + 1);
	if (!ds) {
		curl_slist_free_all(hl);
		delivery_failed(w, &d, wk, 0, 0, "out of memory", -1, ver, NULL, 0);
		goto done;
	}
	memcpy(ds->sent, body, keep);
	ds->sent_len = keep;
	ds->base.w = w;
	ds->base.kind = STEP_DELIVER;
	ds->base.wk = *wk;
	ds->base.started_ms = now_ms();
	snprintf(ds->base.version, sizeof ds->base.version, "%s", ver);
	w->inflight_steps++;
	live_add(w, wk->id);
	ds->d = d;
	d.url = NULL; /* owned by ds now */
	struct fetch_request fr = {
		.method = "POST", .url = ds->d.url, .headers = hl, .body = body,
		.body_len = bodylen, .timeout_ms = (long)(w->cfg->webhook_timeout_s * 1000),
		.max_response = w->cfg->webhook_response_bytes, .guard = &w->guard,
		.proxy = w->cfg->webhook_proxy,
	};
	metrics_inc(M_DELIVERY_ATTEMPTS);
	if (fetch_start(w->fetch, &fr, deliver_done, ds) < 0) {
		delivery_failed(w, &ds->d, wk, 0, 0, "cannot start request", -1, ver, NULL, 0);
		free(ds->d.url);
		w->inflight_steps--;
		live_remove(w, wk->id);
		free(ds);
	}
done:
	free(body);
	free(d.url);
	json_decref(event);
	job_clear(&j);
}

static void deliver_done(void *arg, const struct fetch_response *res)
{
	struct deliver_step *ds = arg;
	struct worker *w = ds->base.w;
	struct delivery *d = &ds->d;
	const struct work *wk = &ds->base.wk;
	metrics_delivery(res->error != NULL, res->status, res->total_ms);
	if (!res->error && res->status >= 200 && res->status < 300) {
		d->attempts++;
		snprintf(d->status, sizeof d->status, "delivered");
		d->next_at = 0;
		metrics_inc(M_DELIVERIES_OK);
		if (d->created_at > 0)
			metrics_result_to_webhook((double)(now_ms() - d->created_at) / 1000.0);
		if (store_begin(w->store) < 0 ||
		    store_attempt_insert(w->store, d->id, d->job_id, now_ms(), res->status,
					 res->total_ms, NULL, ds->base.version, ds->sent, ds->sent_len) < 0 ||
		    store_delivery_update(w->store, d) < 0 ||
		    store_work_done(w->store, wk->id) < 0 || store_commit(w->store) < 0) {
			store_rollback(w->store);
			metrics_inc(M_STORE_ERRORS);
		}
	} else {
		char why[256];
		describe(res, why, sizeof why);
		delivery_failed(w, d, wk, res->status, res->total_ms,
				res->error ? why : NULL, header_retry_after(res), ds->base.version,
				ds->sent, ds->sent_len);
	}
	free(d->url);
	w->inflight_steps--;
	live_remove(w, wk->id);
	free(ds);
}

/* ---------- JWKS ---------- */

struct jwks_step {
	struct worker *w;
	char provider[64];
};

static void jwks_done(void *arg, const struct fetch_response *res)
{
	struct jwks_step *js = arg;
	struct worker *w = js->w;
	json_t *entry = json_object_get(w->jwks, js->provider);
	json_object_set_new(entry, "pending", json_false());
	json_t *doc = !res->error && res->status == 200
		? json_loadb(res->body, res->body_len, 0, NULL) : NULL;
	json_t *keys = json_object_get(doc, "keys");
	if (json_is_array(keys)) {
		json_object_set(entry, "keys", keys);
		json_object_set_new(entry, "at", json_integer(now_ms()));
		log_info("jwks: %zu key(s) for %s", json_array_size(keys), js->provider);
	} else {
		char why[256];
		describe(res, why, sizeof why);
		log_warn("jwks: fetching keys for %s failed: %s", js->provider, why);
	}
	json_decref(doc);
	free(js);
}

json_t *engine_provider_keys(struct worker *w, const char *provider, int refresh)
{
	json_t *settings = script_provider_settings(w->scripts, provider);
	const char *url = json_string_value(json_object_get(settings, "jwks_url"));
	if (!url) {
		json_decref(settings);
		return NULL;
	}
	json_t *entry = json_object_get(w->jwks, provider);
	if (!entry) {
		entry = json_object();
		json_object_set_new(w->jwks, provider, entry);
	}
	json_t *keys = json_object_get(entry, "keys");
	int64_t at = json_integer_value(json_object_get(entry, "at"));
	int stale = !keys || now_ms() - at > 24 * 3600 * 1000LL ||
		    (refresh && now_ms() - at > 60000);
	if (stale && !json_is_true(json_object_get(entry, "pending"))) {
		struct jwks_step *js = calloc(1, sizeof *js);
		js->w = w;
		snprintf(js->provider, sizeof js->provider, "%s", provider);
		struct fetch_request fr = {
			.method = "GET", .url = url,
			.headers = curl_slist_append(NULL, "Accept: application/json"),
			.timeout_ms = 10000, .max_response = 256 * 1024,
			.proxy = json_string_value(json_object_get(config_provider(w->cfg, provider), "proxy")),
		};
		if (fetch_start(w->fetch, &fr, jwks_done, js) == 0)
			json_object_set_new(entry, "pending", json_true());
		else
			free(js);
	}
	json_decref(settings);
	return keys;
}

/* ---------- dispatch ---------- */

int engine_cancel_job(struct worker *w, const char *id, const char *customer, struct job *j)
{
	if (store_begin(w->store) < 0)
		return -1;
	int rc = store_job_get(w->store, id, customer, j);
	if (rc != 0) {
		store_rollback(w->store);
		return rc;
	}
	if (job_terminal(j->status)) {
		store_rollback(w->store);
		return 0;
	}
	struct work out[2];
	int nout = 0;
	j->status = JOB_CANCELED;
	job_set(&j->error_code, "CANCELED");
	job_set(&j->error_message, customer ? "canceled by the customer" : "canceled by an operator");
	int64_t now = now_ms();
	int ok = engine_end_job_tx(w, j, out, &nout) == 0;
	if (ok && j->request_id && script_has_fn(w->scripts, SCRIPT_PROVIDER, j->provider, "cancel")) {
		struct work *ck = &out[nout];
		memset(ck, 0, sizeof *ck);
		ck->kind = WORK_CANCEL;
		ck->due_at = now;
		snprintf(ck->job_id, sizeof ck->job_id, "%s", j->id);
		ok = store_work_add(w->store, j->id, WORK_CANCEL, NULL, now, w->owner,
				    now + LEASE_MS, &ck->id) == 0;
		nout++;
	}
	if (!ok || store_commit(w->store) < 0) {
		store_rollback(w->store);
		job_clear(j);
		return -1;
	}
	engine_job_ended(w, j, out, nout);
	return 0;
}

void engine_dispatch(struct worker *w, const struct work *wk)
{
	if (store_pending(w->store)) {
		/* The row (or its lease) is not committed yet: start after the commit. */
		if (w->nafter == w->capafter) {
			size_t ncap = w->capafter ? w->capafter * 2 : 64;
			struct work *na = realloc(w->after, ncap * sizeof *na);
			if (!na)
				return; /* the lease expires and the row runs later */
			w->after = na;
			w->capafter = ncap;
		}
		w->after[w->nafter++] = *wk;
		return;
	}
	log_ctx_job(wk->job_id, NULL, NULL); /* the step's load adds customer and provider */
	if (w->cfg->role == ROLE_API) {
		/* --role api never runs work: the row goes back to the store, due
		 * now and unleased, for the workers to claim. */
		if (store_work_reschedule(w->store, wk->id, now_ms(), wk->tries) < 0)
			log_warn("store: handing work over: %s", store_errmsg(w->store));
		return;
	}
	switch (wk->kind) {
	case WORK_SUBMIT:
		run_submit(w, wk);
		break;
	case WORK_POLL:
		run_poll(w, wk);
		break;
	case WORK_DELIVER:
		run_deliver(w, wk);
		break;
	case WORK_CANCEL:
		run_cancel(w, wk);
		break;
	default:
		work_done(w, wk);
	}
}

/*
 * Sends delivery d again now (also a dead one): pending, due now, a work
 * row leased to this worker, committed, then started. d stays the caller's.
 * Returns 0, or -1 when the store failed (nothing changed).
 */
int engine_redeliver(struct worker *w, struct delivery *d)
{
	int64_t now = now_ms();
	struct work wk = { .kind = WORK_DELIVER, .due_at = now };
	snprintf(wk.job_id, sizeof wk.job_id, "%s", d->job_id);
	snprintf(wk.ref, sizeof wk.ref, "%s", d->id);
	snprintf(d->status, sizeof d->status, "pending");
	d->next_at = now;
	if (store_begin(w->store) < 0)
		return -1;
	if (store_delivery_update(w->store, d) < 0 ||
	    store_work_add(w->store, d->job_id, WORK_DELIVER, d->id, now, w->owner,
			   now + LEASE_MS, &wk.id) < 0 || store_commit(w->store) < 0) {
		store_rollback(w->store);
		return -1;
	}
	engine_dispatch(w, &wk);
	return 0;
}

