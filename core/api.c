/*
 * api.c: the unified API v1: routing, validation, the group commit of new
 * jobs, sync waits and long-polls.
 */
#include "api.h"
#include "usage_api.h"
#include "budget.h"

#include "callbacks.h"
#include "config.h"
#include "customers.h"
#include "engine.h"
#include "fetch.h"
#include "front.h"
#include "jscan.h"
#include "log.h"
#include "metrics.h"
#include "ratelimit.h"
#include "modelid.h"
#include "script.h"
#include "server.h"
#include "sign.h"
#include "store.h"
#include "ui.h"
#include "urlguard.h"
#include "worker.h"
#include "openapi.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ID_MAX 64
#define MODEL_MAX 256
#define TRACK_MAX 256
#define IDEM_MAX 255
#define URL_MAX 2048

static int id_ok(const char *s)
{
	size_t n = 0;
	for (; s[n]; n++)
		if (!isalnum((unsigned char)s[n]) && s[n] != '_' && s[n] != '-')
			return 0;
	return n > 0 && n <= ID_MAX;
}

static int printable(const char *s, size_t max)
{
	size_t n = 0;
	for (; s[n]; n++)
		if ((unsigned char)s[n] < 0x21 || s[n] == 0x7f)
			return 0;
	return n > 0 && n <= max;
}


/*
 * The customer of the request's API key, or NULL after answering 401 (no or
 * unknown key) or 429 (over customers.NAME.rate; every authenticated request
 * takes a token). Done once per request: intake (api_admit) may have done it
 * from the headers already.
 */
static const struct config_customer *authenticate(struct request *r)
{
	if (r->authed)
		return r->authed;
	const char *h = server_header(r, "Authorization");
	if (!h || strncasecmp(h, "Bearer ", 7) != 0) {
		server_respond_error(r, 401, "UNAUTHORIZED",
				     "missing Authorization: Bearer <api key>");
		return NULL;
	}
	const struct config_customer *c = customers_by_key(r->w->customers, r->w->cfg, r->w->store, h + 7);
	if (!c) {
		server_respond_error(r, 401, "UNAUTHORIZED", "unknown API key");
		return NULL;
	}
	long retry_s = 1;
	if (!ratelimit_take(r->w->rates, c, loop_now_ms(), &retry_s)) {
		char ra[24];
		server_respond_error(r, 429, "RATE_LIMITED",
				     "over the rate of %g requests per second (burst %g); retry in %ld s",
				     c->rate_per_s, c->rate_burst, retry_s);
		snprintf(ra, sizeof ra, "%ld", retry_s);
		server_response_header(r, "Retry-After", ra);
		return NULL;
	}
	r->authed = c;
	return c;
}

/*
 * Admin surfaces: Authorization: Bearer <admin_key>. Answers 401 (and
 * returns 0) when the key is missing or wrong, or no admin_key is set.
 */
static int authenticate_admin(struct request *r)
{
	const char *h = server_header(r, "Authorization");
	if (!h || strncasecmp(h, "Bearer ", 7) != 0) {
		server_respond_error(r, 401, "UNAUTHORIZED",
				     "missing Authorization: Bearer <admin key>");
		return 0;
	}
	if (!config_is_admin_key(r->w->cfg, h + 7)) {
		server_respond_error(r, 401, "UNAUTHORIZED",
				     r->w->cfg->admin_key ? "not the admin key"
							  : "no admin_key is configured");
		return 0;
	}
	return 1;
}

/* /metrics on the API listener: the metrics_token or the admin key. */
static int authenticate_metrics(struct request *r)
{
	const char *h = server_header(r, "Authorization");
	if (h && strncasecmp(h, "Bearer ", 7) == 0 && config_is_metrics_token(r->w->cfg, h + 7))
		return 1;
	return authenticate_admin(r);
}

/* The run answer, {"job_id","status","model_id","request_id","message"};
 * built as text since it is on the ingest path of every job. */
static void respond_run_shape(struct request *r, unsigned status, const struct job *j)
{
	if (r->front) { /* submitted through a front: the front shapes it */
		front_answer(r, j);
		return;
	}
	struct buf b;
	buf_init(&b, 4096);
	buf_adds(&b, "{\"job_id\":");
	buf_add_json_str(&b, j->id);
	buf_adds(&b, ",\"status\":");
	buf_add_json_str(&b, job_terminal(j->status) ? job_status_name(j->status) : "processing");
	buf_adds(&b, ",\"model_id\":");
	buf_add_json_str(&b, j->model_id);
	buf_adds(&b, ",\"request_id\":");
	buf_add_json_str(&b, j->request_id);
	buf_printf(&b, ",\"message\":\"accepted; poll GET /v1/jobs/%s or wait for the webhook\"}", j->id);
	size_t len;
	char *text = buf_steal(&b, &len);
	server_respond_raw(r, status, text, len, "application/json");
}

/* An error answer of a run: in the front's shape when it came through one. */
static void run_error(struct request *r, unsigned status, const char *code, const char *msg)
{
	if (r->front)
		front_error(r, status, code, msg);
	else
		server_respond_error(r, status, code, "%s", msg);
}

/* Answers a failed lookup: 404 with code when absent (rc 1), else 503. */
static void respond_lookup_error(struct request *r, int rc, const char *code, const char *what)
{
	if (rc == 1)
		server_respond_error(r, 404, code, "no such %s", what);
	else
		server_respond_error(r, 503, "UNAVAILABLE", "the store is unavailable");
}

/* ---------- waiters (sync runs and long-polls) ---------- */

static void waiter_unlink(struct request *r)
{
	if (r->prevp) {
		*r->prevp = r->next;
		if (r->next)
			r->next->prevp = r->prevp;
		r->prevp = NULL;
		r->next = NULL;
	}
	loop_timer_stop(r->w->loop, &r->timer);
}

/* Answers a waiter with the job as it is now. */
static void waiter_answer(struct request *r)
{
	struct worker *w = r->w;
	struct job j;
	waiter_unlink(r);
	r->wait = WAIT_NONE;
	int rc = store_job_get(w->store, r->wait_job, NULL, &j);
	if (rc != 0) {
		if (r->front)
			run_error(r, rc == 1 ? 404 : 503, rc == 1 ? "JOB_NOT_FOUND" : "UNAVAILABLE",
				  rc == 1 ? "no such job" : "the store is unavailable");
		else
			respond_lookup_error(r, rc, "JOB_NOT_FOUND", "job");
		return;
	}
	if (r->front)
		front_answer(r, &j);
	else if (r->sync && !job_terminal(j.status))
		respond_run_shape(r, 202, &j);
	else
		server_respond_json(r, 200, job_to_json(&j));
	job_clear(&j);
}

static void waiter_timeout(struct loop_timer *t)
{
	waiter_answer(t->arg);
}

static void waiter_add(struct request *r, double secs)
{
	struct worker *w = r->w;
	r->wait = WAIT_JOB;
	r->next = w->waiters;
	if (w->waiters)
		w->waiters->prevp = &r->next;
	r->prevp = &w->waiters;
	w->waiters = r;
	r->timer.cb = waiter_timeout;
	r->timer.arg = r;
	loop_timer_set(w->loop, &r->timer, loop_now_ms() + (int64_t)(secs * 1000));
	server_suspend(r);
}

void api_job_ended(struct worker *w, const char *job_id)
{
	struct request *r = w->waiters, *n;
	front_job_ended(w, job_id);
	for (; r; r = n) {
		n = r->next;
		if (strcmp(r->wait_job, job_id) == 0)
			waiter_answer(r);
	}
}

void api_waiters_tick(struct worker *w)
{
	struct request *r = w->waiters, *n;
	if (w->cfg->workers <= 1)
		return;
	for (; r; r = n) {
		struct job j;
		n = r->next;
		if (store_job_get(w->store, r->wait_job, NULL, &j) == 0) {
			int t = job_terminal(j.status);
			job_clear(&j);
			if (t)
				waiter_answer(r);
		}
	}
}

void api_request_gone(struct request *r)
{
	if (r->front)
		front_request_gone(r);
	if (r->wait == WAIT_JOB) {
		waiter_unlink(r);
	} else if (r->wait == WAIT_BATCH) {
		/* Still queued for the commit: take it out of the batch. */
		struct worker *w = r->w;
		struct request **pp = &w->batch;
		while (*pp && *pp != r)
			pp = &(*pp)->next;
		if (*pp) {
			*pp = r->next;
			if (w->batch_tail == &r->next)
				w->batch_tail = pp;
		}
	}
	r->wait = WAIT_NONE;
}

void api_abort_all(struct worker *w)
{
	while (w->waiters)
		waiter_answer(w->waiters);
	front_abort_all(w);
	api_flush(w);
}

/* ---------- POST /v1/models/{model}/run ---------- */

/* Resolves a model id to its targets: a "provider:model" string for one
 * target, an array of them for an alias. NULL: unknown. Caller owns. */
static json_t *resolve_model(struct worker *w, const struct modelid *mid, const char *model,
			     char *why, size_t whylen)
{
	struct script_provider_info info;
	if (mid->provider[0]) {
		if (script_provider_info(w->scripts, mid->provider, &info) < 0) {
			snprintf(why, whylen, "no provider '%s'", mid->provider);
			return NULL;
		}
		if (!info.configured) {
			snprintf(why, whylen, "provider '%s' is not configured (no providers.%s in the config)",
				 mid->provider, mid->provider);
			return NULL;
		}
		return json_string(model);
	}
	const struct config_alias *a = config_alias(w->cfg, model);
	if (a) {
		json_t *arr = json_array();
		for (size_t i = 0; i < a->ntargets; i++)
			json_array_append_new(arr, json_string(a->targets[i]));
		return arr;
	}
	char prov[64], target[MODEL_MAX + 80];
	if (script_route(w->scripts, model, prov, sizeof prov) == 0) {
		snprintf(target, sizeof target, "%s:%s", prov, model);
		return json_string(target);
	}
	snprintf(why, whylen, "no configured provider serves model '%.200s'", model);
	return NULL;
}

/* Checks a model id's grammar into *mid; 0, or -1 with err filled. */
static int model_check(const char *model, struct modelid *mid, struct api_error *err)
{
	char why_model[300];
	if (!printable(model, MODEL_MAX) || modelid_parse(model, mid, why_model, sizeof why_model) < 0) {
		err->status = 404;
		snprintf(err->code, sizeof err->code, "MODEL_NOT_FOUND");
		snprintf(err->message, sizeof err->message,
			 "invalid model id: %s (segments of letters, digits, '-', '_' and '.' "
			 "joined by '/', an optional ':version', an optional 'provider:' prefix)",
			 printable(model, MODEL_MAX) ? why_model : "unprintable or too long");
		return -1;
	}
	return 0;
}

static int run_fail(struct api_error *err, unsigned status, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int run_fail(struct api_error *err, unsigned status, const char *code, const char *fmt, ...)
{
	va_list ap;
	err->status = status;
	snprintf(err->code, sizeof err->code, "%s", code);
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof err->message, fmt, ap);
	va_end(ap);
	return -1;
}

static void handle_run(struct request *r, const char *model)
{
	struct worker *w = r->w;
	const struct config_customer *c = authenticate(r);
	if (!c)
		return;
	struct modelid mid;
	struct api_error err;
	if (model_check(model, &mid, &err) < 0) {
		server_respond_error(r, err.status, err.code, "%s", err.message);
		return;
	}
	/* The body is validated in full but not built into a tree: `input` is
	 * kept as the customer sent it (see jscan.h). */
	struct jscan_member m[8];
	size_t nm = 0, pos = 0;
	char why_json[128];
	if (jscan_object(r->body.p ? r->body.p : "", r->body.len, m, 8, &nm, why_json,
			 sizeof why_json, &pos) < 0) {
		server_respond_error(r, 400, "INVALID_REQUEST", "body is not a valid JSON object: %s (at byte %zu)",
				     why_json, pos);
		return;
	}
	const struct jscan_member *input = NULL, *hook_url = NULL, *track = NULL, *sync = NULL;
	for (size_t i = 0; i < nm; i++) {
		const struct jscan_member *x = &m[i];
		if (!x->key_too_long && strcmp(x->key, "input") == 0)
			input = x;
		else if (!x->key_too_long && strcmp(x->key, "webhook_url") == 0)
			hook_url = x;
		else if (!x->key_too_long && strcmp(x->key, "track_id") == 0)
			track = x;
		else if (!x->key_too_long && strcmp(x->key, "sync") == 0)
			sync = x;
		else {
			server_respond_error(r, 400, "INVALID_REQUEST",
					     "unknown field \"%.64s\" (allowed: input, webhook_url, track_id, sync)",
					     x->key);
			return;
		}
	}
	if (!input) {
		server_respond_error(r, 400, "INVALID_REQUEST", "\"input\" is required");
		return;
	}
	if (input->type != JSCAN_OBJECT) {
		server_respond_error(r, 400, "INVALID_REQUEST", "\"input\" must be an object");
		return;
	}
	char url_buf[URL_MAX + 1], track_buf[TRACK_MAX + 1];
	const char *url = NULL, *track_id = NULL;
	if (hook_url && hook_url->type != JSCAN_NULL) {
		if (hook_url->type != JSCAN_STRING) {
			server_respond_error(r, 400, "INVALID_REQUEST", "\"webhook_url\" must be a string");
			return;
		}
		if (jscan_string(hook_url->val, hook_url->len, url_buf, sizeof url_buf) < 0) {
			server_respond_error(r, 400, "INVALID_REQUEST", "\"webhook_url\" refused: longer than %d bytes",
					     URL_MAX);
			return;
		}
		url = url_buf;
	}
	if (track && track->type != JSCAN_NULL) {
		int tl = track->type == JSCAN_STRING
			? jscan_string(track->val, track->len, track_buf, sizeof track_buf) : -1;
		if (tl <= 0 || strlen(track_buf) != (size_t)tl) {
			server_respond_error(r, 400, "INVALID_REQUEST",
					     "\"track_id\" must be a string of 1 to %d bytes", TRACK_MAX);
			return;
		}
		track_id = track_buf;
	}
	if (sync && sync->type != JSCAN_TRUE && sync->type != JSCAN_FALSE) {
		server_respond_error(r, 400, "INVALID_REQUEST", "\"sync\" must be true or false");
		return;
	}
	const char *prefer = server_header(r, "Prefer");
	double wait_s = 0;
	if (sync && sync->type == JSCAN_TRUE)
		wait_s = w->cfg->sync_wait_s;
	if (prefer && strncmp(prefer, "wait", 4) == 0) {
		wait_s = w->cfg->sync_wait_s;
		if (prefer[4] == '=') {
			wait_s = strtod(prefer + 5, NULL);
			if (wait_s < 0)
				wait_s = 0;
			if (wait_s > 300)
				wait_s = 300;
		}
	}
	struct api_run run = {
		.model = model,
		.input = input->val,
		.input_len = input->len,
		.webhook_url = url,
		.track_id = track_id,
		.wait_s = wait_s,
		.idem_key = server_header(r, "Idempotency-Key"),
		.idem_body = r->body.p,
		.idem_body_len = r->body.len,
	};
	if (api_submit(r, c, &run, &err) < 0)
		server_respond_error(r, err.status, err.code, "%s", err.message);
}

int api_submit(struct request *r, const struct config_customer *c, const struct api_run *run,
	       struct api_error *err)
{
	struct worker *w = r->w;
	const char *model = run->model;
	const char *url = run->webhook_url, *track_id = run->track_id;
	struct modelid mid;
	char why_model[300];
	if (model_check(model, &mid, err) < 0)
		return -1;
	if (!url)
		url = c->webhook_url;
	if (url) {
		char why[256];
		if (urlguard_check_url(&w->guard, url, why, sizeof why) < 0)
			return run_fail(err, 400, "INVALID_REQUEST", "\"webhook_url\" refused: %s", why);
		if (!c->webhook_secret) /* deliveries are always signed */
			return run_fail(err, 400, "INVALID_REQUEST",
					"\"webhook_url\" refused: the customer has no webhook_secret to sign deliveries with");
	}
	const char *idem = run->idem_key;
	if (idem && !printable(idem, IDEM_MAX))
		return run_fail(err, 400, "INVALID_REQUEST",
				"Idempotency-Key must be 1 to %d printable characters", IDEM_MAX);
	json_t *targets = resolve_model(w, &mid, model, why_model, sizeof why_model);
	if (!targets)
		return run_fail(err, 404, "MODEL_NOT_FOUND", "%s", why_model);
	/* A customer past its budget: refused before the job exists. */
	double spent = 0;
	int over = budget_exceeded(w->store, c, loop_wall_ms(), &spent);
	if (over != 0) {
		json_decref(targets);
		if (over < 0)
			return run_fail(err, 503, "UNAVAILABLE", "the store is unavailable");
		return run_fail(err, 402, "BUDGET_EXCEEDED", "the budget of %g %s (per %s) is used up: %g spent",
				c->budget_amount, c->budget_unit, c->budget_period, spent);
	}
	double wait_s = run->wait_s;

	struct job *j = &r->job;
	int64_t now = loop_wall_ms();
	sign_random_id("job_", j->id, sizeof j->id);
	j->customer = strdup(c->name);
	j->model_id = strdup(model);
	const char *first;
	if (json_is_string(targets)) {
		struct buf tb;
		buf_init(&tb, MODEL_MAX + 128);
		buf_add(&tb, "[", 1);
		buf_add_json_str(&tb, json_string_value(targets));
		buf_add(&tb, "]", 1);
		j->targets = buf_steal(&tb, NULL);
		first = json_string_value(targets);
	} else {
		j->targets = json_dumps(targets, JSON_COMPACT);
		first = json_string_value(json_array_get(targets, 0));
	}
	const char *colon = strchr(first, ':');
	j->provider = strndup(first, (size_t)(colon - first));
	j->model = strdup(colon + 1);
	json_decref(targets);
	j->status = JOB_QUEUED;
	j->track_id = track_id ? strdup(track_id) : NULL;
	j->input = strndup(run->input, run->input_len);
	j->webhook_url = url ? strdup(url) : NULL;
	j->hook = run->hook ? strdup(run->hook) : c->hook ? strdup(c->hook) : NULL;
	j->created_at = j->updated_at = now;
	j->submit_deadline = now + (int64_t)(w->cfg->submit_window_s * 1000);
	j->deadline = now + (int64_t)(w->cfg->job_deadline_s * 1000);
	if (idem) {
		unsigned char h[SIGN_SHA256_LEN];
		struct buf b;
		buf_init(&b, run->idem_body_len + MODEL_MAX + 2);
		buf_adds(&b, model);
		buf_add(&b, "\n", 1);
		buf_add(&b, run->idem_body, run->idem_body_len);
		sign_sha256(b.p, b.len, h);
		buf_free(&b);
		sign_hex_encode(h, sizeof h, r->idem_hash, sizeof r->idem_hash);
		snprintf(r->idem_key, sizeof r->idem_key, "%s", idem);
	}
	r->customer = c;
	r->sync = wait_s > 0;
	r->wait_until = (int64_t)(wait_s * 1000);
	r->wait = WAIT_BATCH;
	r->next = NULL;
	*w->batch_tail = r;
	w->batch_tail = &r->next;
	server_suspend(r);
	return 0;
}

void api_flush(struct worker *w)
{
	struct request *batch = w->batch, *r, *n;
	if (!batch)
		return;
	w->batch = NULL;
	w->batch_tail = &w->batch;
	int64_t now = loop_wall_ms();
	/* New jobs run at once while the worker has room; past max_inflight
	 * their submit rows stay unleased and the due timer claims them. */
	long room = w->cfg->max_inflight - w->inflight_steps;
	int ok = store_begin(w->store) == 0;
	for (r = batch; ok && r; r = r->next) {
		r->outcome = 0;
		if (r->idem_key[0]) {
			char hash[80], jid[48];
			int rc = store_idem_get(w->store, r->customer->name, r->idem_key,
						hash, sizeof hash, jid, sizeof jid);
			if (rc < 0) {
				ok = 0;
				break;
			}
			if (rc == 0) {
				r->outcome = strcmp(hash, r->idem_hash) == 0 ? 1 : 2;
				snprintf(r->wait_job, sizeof r->wait_job, "%s", jid);
				continue;
			}
			if (store_idem_put(w->store, r->customer->name, r->idem_key, r->idem_hash,
					   r->job.id, now) < 0) {
				ok = 0;
				break;
			}
		}
		int run_now = room-- > 0;
		if (store_job_insert(w->store, &r->job) < 0 ||
		    store_work_add(w->store, r->job.id, WORK_SUBMIT, NULL, now,
				   run_now ? w->owner : NULL, now + (int64_t)(w->cfg->lease_s * 1000), &r->work_id) < 0)
			ok = 0;
		if (!run_now)
			r->work_id = -r->work_id - 1; /* marks "left for the due timer" */
	}
	if (ok && store_commit(w->store) < 0)
		ok = 0;
	if (!ok) {
		store_rollback(w->store);
		metrics_inc(M_STORE_ERRORS);
		log_warn("store: committing %s", store_errmsg(w->store));
	}
	for (r = batch; r; r = n) {
		n = r->next;
		r->next = NULL;
		r->wait = WAIT_NONE;
		if (!ok) {
			run_error(r, 503, "UNAVAILABLE", "the job store is unavailable; retry later");
			continue;
		}
		if (r->outcome == 2) {
			run_error(r, 409, "IDEMPOTENCY_CONFLICT",
				  "Idempotency-Key was used with a different request");
			continue;
		}
		if (r->outcome == 1) {
			struct job j;
			if (store_job_get(w->store, r->wait_job, NULL, &j) == 0) {
				respond_run_shape(r, 202, &j);
				job_clear(&j);
			} else {
				run_error(r, 503, "UNAVAILABLE", "the job store is unavailable");
			}
			continue;
		}
		metrics_inc(M_JOBS_ACCEPTED);
		metrics_job(r->job.provider, config_alias(w->cfg, r->job.model_id) ? r->job.model_id : "direct",
			    "accepted", -1);
		log_ctx_job(r->job.id, r->job.customer, r->job.provider);
		log_ctx_request(r->request_id);
		log_info("job %s accepted for model %s", r->job.id, r->job.model_id);
		int run_now = r->work_id >= 0;
		struct work wk = { .id = r->work_id, .kind = WORK_SUBMIT, .due_at = now };
		snprintf(wk.job_id, sizeof wk.job_id, "%s", r->job.id);
		snprintf(r->wait_job, sizeof r->wait_job, "%s", r->job.id);
		if (r->sync) {
			r->suspended = 1; /* still suspended since the batch */
			waiter_add(r, (double)r->wait_until / 1000.0);
		} else {
			respond_run_shape(r, 202, &r->job);
		}
		if (run_now)
			engine_dispatch_new(w, &wk, &r->job);
		else
			engine_kick(w, now);
	}
}

/* Loads the customer's job id into *j, or answers and returns -1. */
static int load_customer_job(struct request *r, const struct config_customer *c,
			     const char *id, struct job *j)
{
	int rc = id_ok(id) ? store_job_get(r->w->store, id, c->name, j) : 1;
	if (rc != 0) {
		respond_lookup_error(r, rc, "JOB_NOT_FOUND", "job");
		return -1;
	}
	return 0;
}

/* ---------- jobs ---------- */

static void handle_get_job(struct request *r, const char *id)
{
	const struct config_customer *c = authenticate(r);
	struct job j;
	if (!c)
		return;
	if (load_customer_job(r, c, id, &j) < 0)
		return;
	const char *wq = server_query(r, "wait");
	double wait = 0;
	if (wq) {
		char *end;
		wait = strtod(wq, &end);
		if (*end || wait < 0 || wait != wait) {
			job_clear(&j);
			server_respond_error(r, 400, "INVALID_REQUEST", "wait must be a number of seconds");
			return;
		}
		if (wait > 300)
			wait = 300;
	}
	if (wait > 0 && !job_terminal(j.status)) {
		snprintf(r->wait_job, sizeof r->wait_job, "%s", j.id);
		r->sync = 0;
		waiter_add(r, wait);
	} else {
		server_respond_json(r, 200, job_to_json(&j));
	}
	job_clear(&j);
}

static void handle_list_jobs(struct request *r)
{
	const struct config_customer *c = authenticate(r);
	if (!c)
		return;
	const char *status = server_query(r, "status");
	const char *cursor = server_query(r, "cursor");
	const char *lim = server_query(r, "limit");
	enum job_status js;
	int limit = 20;
	if (status && job_status_parse(status, &js) < 0) {
		server_respond_error(r, 400, "INVALID_REQUEST",
				     "status must be queued, processing, succeeded, failed or canceled");
		return;
	}
	if (cursor && !id_ok(cursor)) {
		server_respond_error(r, 400, "INVALID_REQUEST", "invalid cursor");
		return;
	}
	if (lim) {
		char *end;
		long l = strtol(lim, &end, 10);
		if (*end || l < 1 || l > 100) {
			server_respond_error(r, 400, "INVALID_REQUEST", "limit must be 1 to 100");
			return;
		}
		limit = (int)l;
	}
	json_t *res = store_job_list(r->w->store, c->name, status, cursor, limit);
	if (!res)
		server_respond_error(r, 503, "UNAVAILABLE", "the store is unavailable");
	else
		server_respond_json(r, 200, res);
}

static void handle_cancel(struct request *r, const char *id)
{
	const struct config_customer *c = authenticate(r);
	struct job j;
	if (!c)
		return;
	int rc = id_ok(id) ? engine_cancel_job(r->w, id, c->name, &j) : 1;
	if (rc != 0) {
		respond_lookup_error(r, rc, "JOB_NOT_FOUND", "job");
		return;
	}
	server_respond_json(r, 200, job_to_json(&j));
	job_clear(&j);
}

static void handle_job_sub(struct request *r, const char *id, const char *what)
{
	const struct config_customer *c = authenticate(r);
	struct job j;
	if (!c)
		return;
	if (load_customer_job(r, c, id, &j) < 0)
		return;
	json_t *o = json_object();
	json_object_set_new(o, "job_id", json_string(j.id));
	if (strcmp(what, "deliveries") == 0)
		json_object_set_new(o, "data", store_job_deliveries(r->w->store, j.id));
	else
		json_object_set_new(o, "data", store_job_events(r->w->store, j.id));
	job_clear(&j);
	server_respond_json(r, 200, o);
}

static void handle_retry_delivery(struct request *r, const char *id)
{
	struct worker *w = r->w;
	const struct config_customer *c = authenticate(r);
	struct delivery d;
	struct job j;
	if (!c)
		return;
	int rc = id_ok(id) ? store_delivery_get(w->store, id, &d) : 1;
	if (rc == 0) {
		rc = store_job_get(w->store, d.job_id, c->name, &j);
		if (rc == 0)
			job_clear(&j);
		else
			free(d.url);
	}
	if (rc != 0) {
		respond_lookup_error(r, rc, "DELIVERY_NOT_FOUND", "delivery");
		return;
	}
	if (engine_redeliver(w, &d) < 0) {
		free(d.url);
		server_respond_error(r, 503, "UNAVAILABLE", "the store is unavailable");
		return;
	}
	free(d.url);
	server_respond_json(r, 202, json_pack("{s:s,s:s}", "delivery_id", d.id, "status", "pending"));
}

static void handle_models(struct request *r)
{
	const struct config_customer *c = authenticate(r);
	if (!c)
		return;
	json_t *o = json_object();
	json_object_set_new(o, "providers", script_host_models(r->w->scripts));
	json_t *aliases = json_object();
	for (size_t i = 0; i < r->w->cfg->naliases; i++) {
		const struct config_alias *a = &r->w->cfg->aliases[i];
		json_t *t = json_array();
		for (size_t k = 0; k < a->ntargets; k++)
			json_array_append_new(t, json_string(a->targets[k]));
		json_object_set_new(aliases, a->name, t);
	}
	json_object_set_new(o, "aliases", aliases);
	server_respond_json(r, 200, o);
}

static void handle_metrics(struct request *r)
{
	struct buf b;
	buf_init(&b, 1 << 22); /* a cap: every family at its series cap fits */
	struct metrics_gauges g = { .inflight_fetches = (long)fetcher_inflight(r->w->fetch),
				    .jobs_stored = (long)store_job_count(r->w->store),
				    .queue_due = -1, .store_bytes = -1,
				    .store_max_bytes = (long long)r->w->cfg->store_max_mb << 20,
				    .providers = r->w->cfg->providers };
	struct store_queue q;
	int64_t now = loop_wall_ms();
	if (store_queue_stats(r->w->store, now, &q) == 0) {
		g.queue_due = (long)q.due;
		g.queue_leased = (long)q.leased;
		g.queue_waiting = (long)q.waiting;
		g.oldest_due_age_s = q.oldest_due_at > 0 && q.oldest_due_at < now
					     ? (double)(now - q.oldest_due_at) / 1000.0 : 0;
		g.store_bytes = (long long)q.size_bytes;
	} else {
		metrics_inc(M_STORE_ERRORS);
	}
	metrics_render(&b, &g);
	buf_printf(&b, "# HELP genrelay_buffered_bytes Request body bytes reserved now (limits.buffered_bytes)\n"
		       "# TYPE genrelay_buffered_bytes gauge\ngenrelay_buffered_bytes %zu\n",
		   server_buffered_bytes());
	size_t len;
	char *text = buf_steal(&b, &len);
	server_respond_raw(r, 200, text, len, "text/plain; version=0.0.4");
}

/* The API description (docs/openapi.yaml, built in), no auth: it is public. */
static void handle_openapi(struct request *r)
{
	size_t len;
	const char *doc = openapi_json(&len);
	char *copy = doc ? malloc(len) : NULL;
	if (!copy) {
		server_respond_error(r, 503, "UNAVAILABLE", "no API description in this build");
		return;
	}
	memcpy(copy, doc, len);
	server_respond_raw(r, 200, copy, len, "application/json");
}

/* ---------- routing ---------- */

/* Splits "a/b/c" into at most max segments (in place). Returns the count. */
static int split(char *path, char **seg, int max)
{
	int n = 0;
	char *p = path;
	while (*p && n < max) {
		seg[n++] = p;
		char *s = strchr(p, '/');
		if (!s)
			break;
		*s = '\0';
		p = s + 1;
	}
	return n;
}

static void method_not_allowed(struct request *r)
{
	server_respond_error(r, 405, "METHOD_NOT_ALLOWED", "%s is not allowed here", r->method);
}

int api_admit(struct request *r)
{
	if (r->metrics_only) {
		server_respond_error(r, 404, "NOT_FOUND", "this listener serves /metrics and /healthz only");
		return -1;
	}
	if (strncmp(r->url, "/v1/callbacks/", 14) == 0) {
		/* /v1/callbacks/{provider}/{job}/{token}: the token is an HMAC of
		 * the job id, so it is checked before the provider sends its body. */
		char path[1024], *seg[8];
		if (strlen(r->url) >= sizeof path) {
			server_respond_error(r, 404, "NOT_FOUND", "no such resource");
			return -1;
		}
		snprintf(path, sizeof path, "%s", r->url);
		if (split(path, seg, 8) != 6) {
			server_respond_error(r, 404, "NOT_FOUND", "no such resource");
			return -1;
		}
		return callbacks_admit(r, seg[3], seg[4], seg[5]);
	}
	if (ui_owns(r->url))
		return ui_admit(r);
	if (front_owns(r)) {
		/* A front's client sends its key as the front allows (Key or
		 * Bearer); without a known one the front answers 401 in its
		 * client's shape, before any body byte is read. */
		if (front_customer(r))
			return 0;
		front_dispatch(r);
		return -1;
	}
	if (strncmp(r->url, "/v1/", 4) != 0 && strcmp(r->url, "/metrics") != 0) {
		/* No route outside /v1/ takes a body: no key can make it one. */
		server_respond_error(r, 404, "NOT_FOUND", "no such resource");
		return -1;
	}
	const char *h = server_header(r, "Authorization");
	if (h && strncasecmp(h, "Bearer ", 7) == 0 && config_is_admin_key(r->w->cfg, h + 7))
		return 0;
	return authenticate(r) ? 0 : -1;
}

void api_dispatch(struct request *r)
{
	const char *url = r->url;
	int get = strcmp(r->method, "GET") == 0, post = strcmp(r->method, "POST") == 0;
	int del = strcmp(r->method, "DELETE") == 0;
	if (strcmp(url, "/healthz") == 0) {
		server_respond_json(r, 200, json_pack("{s:s}", "status", r->w->stopping ? "stopping" : "ok"));
		return;
	}
	if (strcmp(url, "/v1/openapi.json") == 0) {
		if (get)
			handle_openapi(r);
		else
			method_not_allowed(r);
		return;
	}
	if (strcmp(url, "/metrics") == 0) {
		/* Open on metrics_listen (a private scrape address), else a key. */
		if (r->metrics_only || authenticate_metrics(r))
			handle_metrics(r);
		return;
	}
	if (r->metrics_only) {
		server_respond_error(r, 404, "NOT_FOUND", "this listener serves /metrics and /healthz only");
		return;
	}
	if (ui_owns(url)) {
		ui_dispatch(r);
		return;
	}
	if (r->w->cfg->role == ROLE_WORKER) {
		server_respond_error(r, 404, "NOT_FOUND",
				     "this instance serves with --role worker: only /healthz and /metrics");
		return;
	}
	if (front_dispatch(r)) /* /NAME/... of a loaded front script */
		return;
	if (strncmp(url, "/v1/models/", 11) == 0 && post) {
		size_t n = strlen(url);
		if (n > 15 && strcmp(url + n - 4, "/run") == 0) {
			char model[MODEL_MAX + 1];
			size_t ml = n - 15;
			if (ml > MODEL_MAX) {
				server_respond_error(r, 404, "MODEL_NOT_FOUND", "model id too long");
				return;
			}
			memcpy(model, url + 11, ml);
			model[ml] = '\0';
			handle_run(r, model);
			return;
		}
	}
	if (strcmp(url, "/v1/models") == 0) {
		if (get)
			handle_models(r);
		else
			method_not_allowed(r);
		return;
	}
	if (strcmp(url, "/v1/scripts") == 0) {
		if (!get) {
			method_not_allowed(r);
		} else if (authenticate_admin(r)) {
			/* Script errors are for the operator, not for customers. */
			json_t *o = json_pack("{s:o}", "data", script_host_list(r->w->scripts));
			server_respond_json(r, 200, o);
		}
		return;
	}
	if (strcmp(url, "/v1/usage") == 0) {
		if (!get) {
			method_not_allowed(r);
		} else {
			/* The admin key sees every customer's totals, per customer. */
			const char *h = server_header(r, "Authorization");
			if (h && strncasecmp(h, "Bearer ", 7) == 0 && config_is_admin_key(r->w->cfg, h + 7)) {
				usage_api_respond(r, r->w->store, NULL);
			} else {
				const struct config_customer *c = authenticate(r);
				if (c)
					usage_api_respond(r, r->w->store, c->name);
			}
		}
		return;
	}
	if (strcmp(url, "/v1/jobs") == 0) {
		if (get)
			handle_list_jobs(r);
		else
			method_not_allowed(r);
		return;
	}
	char path[1024], *seg[8];
	if (strlen(url) >= sizeof path) {
		server_respond_error(r, 404, "NOT_FOUND", "no such resource");
		return;
	}
	snprintf(path, sizeof path, "%s", url);
	int n = split(path, seg, 8);
	/* seg[0] is "" (leading slash) */
	if (n >= 4 && strcmp(seg[1], "v1") == 0 && strcmp(seg[2], "jobs") == 0) {
		if (n == 4) {
			if (get)
				handle_get_job(r, seg[3]);
			else if (del)
				handle_cancel(r, seg[3]);
			else
				method_not_allowed(r);
			return;
		}
		if (n == 5 && (strcmp(seg[4], "deliveries") == 0 || strcmp(seg[4], "events") == 0)) {
			if (get)
				handle_job_sub(r, seg[3], seg[4]);
			else
				method_not_allowed(r);
			return;
		}
	}
	if (n == 5 && strcmp(seg[1], "v1") == 0 && strcmp(seg[2], "deliveries") == 0 &&
	    strcmp(seg[4], "retry") == 0) {
		if (post)
			handle_retry_delivery(r, seg[3]);
		else
			method_not_allowed(r);
		return;
	}
	if (n == 6 && strcmp(seg[1], "v1") == 0 && strcmp(seg[2], "callbacks") == 0) {
		if (post || strcmp(r->method, "PUT") == 0)
			callbacks_handle(r, seg[3], seg[4], seg[5]);
		else
			method_not_allowed(r);
		return;
	}
	server_respond_error(r, 404, "NOT_FOUND", "no such resource");
}
