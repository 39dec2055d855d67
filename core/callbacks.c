/*
 * callbacks.c: a provider's result arrives (callbacks.h). The handler
 * checks the URL token, re-reads the job inside a transaction (jobflow),
 * refuses callbacks for jobs that do not run on that provider, records
 * duplicates, runs the adapter's verify() and on_callback(), and ends the
 * job through jobflow; the answer goes out after the commit.
 */
#include "callbacks.h"

#include "engine.h"
#include "engine_int.h"
#include "jobflow.h"
#include "log.h"
#include "metrics.h"
#include "script.h"
#include "server.h"
#include "sign.h"
#include "store.h"
#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CALLBACK_BODY_KEEP (64 * 1024)
/* At most this many callback_refused events per job: an attacker who knows
 * a job id cannot grow its history without bound (later refusals are still
 * logged and counted in the metrics). */
#define REFUSED_EVENTS_MAX 20

/* ---------- the request and the scripts: plain functions ---------- */

/* req without its `json` field unless parse is set (callbacks_request_arg). */
static json_t *request_fields(const struct callbacks_field *headers, size_t nheaders,
			      const struct callbacks_field *query, size_t nquery,
			      const char *body, size_t body_len, int parse)
{
	json_t *o = json_object(), *h = json_object(), *q = json_object();
	for (size_t i = 0; i < nheaders; i++) {
		const char *name = headers[i].name, *value = headers[i].value ? headers[i].value : "";
		char low[128];
		size_t k = 0;
		for (; name[k] && k < sizeof low - 1; k++)
			low[k] = (char)((name[k] >= 'A' && name[k] <= 'Z') ? name[k] + 32 : name[k]);
		low[k] = '\0';
		json_object_set_new(h, low, json_stringn_nocheck(value, strlen(value)));
	}
	for (size_t i = 0; i < nquery; i++)
		json_object_set_new(q, query[i].name, json_string(query[i].value ? query[i].value : ""));
	json_object_set_new(o, "headers", h);
	json_object_set_new(o, "query", q);
	json_object_set_new(o, "body", json_stringn_nocheck(body ? body : "", body ? body_len : 0));
	json_t *parsed = parse && body && body_len
		? json_loadb(body, body_len, JSON_DECODE_ANY, NULL) : NULL;
	if (parsed)
		json_object_set_new(o, "json", parsed);
	return o;
}

json_t *callbacks_request_arg(const struct callbacks_field *headers, size_t nheaders,
			      const struct callbacks_field *query, size_t nquery,
			      const char *body, size_t body_len)
{
	return request_fields(headers, nheaders, query, nquery, body, body_len, 1);
}

/* callbacks_parse, with fields of req and job given as JSON text. */
static int parse_callback(struct script_host *h, const char *provider, json_t *req,
			  json_t *job, struct script_json_field *fields, size_t nfields,
			  json_t *keys, json_t **res, char *err, size_t errlen)
{
	struct script_ctx ctx = { .provider = provider, .keys = keys };
	err[0] = '\0';
	switch (script_callback(h, provider, req, job, fields, nfields, &ctx, res, err, errlen)) {
	case 1:
		return CALLBACKS_RESULT;
	case 0:
		/* verify's `false, "reason"` (or its error): the reason is in err. */
		if (!err[0])
			snprintf(err, errlen, "signature verification failed");
		return CALLBACKS_REFUSED;
	default:
		*res = NULL;
		return CALLBACKS_SCRIPT_ERROR;
	}
}

int callbacks_parse(struct script_host *h, const char *provider, json_t *req, json_t *job,
		    json_t *keys, json_t **res, char *err, size_t errlen)
{
	return parse_callback(h, provider, req, job, NULL, 0, keys, res, err, errlen);
}

/* ---------- records ---------- */

static int targets_include(const struct job *j, const char *provider)
{
	if (j->provider && strcmp(j->provider, provider) == 0)
		return 1;
	json_t *t = j->targets ? json_loads(j->targets, 0, NULL) : NULL;
	size_t i;
	json_t *v;
	int found = 0;
	size_t plen = strlen(provider);
	json_array_foreach(t, i, v) {
		const char *s = json_string_value(v);
		if (s && strncmp(s, provider, plen) == 0 && s[plen] == ':')
			found = 1;
	}
	json_decref(t);
	return found;
}

/* In the caller's transaction: the callback and its outcome, with the
 * start of its body. */
static void record(struct worker *w, const char *job_id, const char *provider,
		   const char *outcome, struct request *r)
{
	size_t n = r->body.len > CALLBACK_BODY_KEEP ? CALLBACK_BODY_KEEP : r->body.len;
	metrics_callback(provider, outcome); /* a configured provider of the job */
	if (store_callback_insert(w->store, job_id, provider, loop_wall_ms(), outcome,
				  r->body.p, n) < 0)
		metrics_inc(M_STORE_ERRORS);
}

/*
 * Inside a transaction: records a refused callback of a known job as a
 * `callback_refused` event {provider, reason}, up to REFUSED_EVENTS_MAX per job.
 */
static void refused_event(struct worker *w, const char *job_id, const char *provider,
			  const char *reason)
{
	int64_t n = store_event_count(w->store, job_id, "callback_refused");
	if (n < 0 || n >= REFUSED_EVENTS_MAX)
		return;
	json_t *d = json_pack("{s:s,s:s}", "provider", provider, "reason", reason);
	char *text = json_dumps(d, JSON_COMPACT);
	json_decref(d);
	if (store_event_add(w->store, job_id, loop_wall_ms(), "callback_refused", text) < 0)
		metrics_inc(M_STORE_ERRORS);
	free(text);
}

/* Outside a transaction: the same for a callback refused before the job was
 * read (a bad token); nothing is recorded when no such job exists. */
static void refused_event_tx(struct worker *w, const char *job_id, const char *provider,
			     const char *reason)
{
	struct jobflow f;
	if (jobflow_begin(w, &f, job_id, NULL) != 0)
		return;
	refused_event(w, job_id, provider, reason);
	jobflow_commit(&f);
	job_clear(&f.job);
}

/* ---------- the token ---------- */

/*
 * The token is checked against the current server secret, then each previous
 * one still in force (a rotation keeps the callbacks of jobs in flight
 * working). Every candidate is computed and compared in constant time, with
 * no early exit, so timing shows neither which one matched nor how many there
 * are configured.
 */
int callbacks_token_ok(const struct worker *w, const char *job_id, const char *token)
{
	int64_t now = loop_wall_ms();
	int ok = sign_callback_token_ok(w->server_secret, job_id, token);
	for (int i = 0; i < 2; i++) {
		const char *p = w->server_secret_previous[i];
		int64_t until = w->server_secret_previous_until[i];
		int in_force = p != NULL && (until == 0 || now <= until);
		ok |= sign_callback_token_ok(in_force ? p : w->server_secret, job_id, token) &
		      in_force;
	}
	return ok;
}

int callbacks_admit(struct request *r, const char *provider, const char *job_id,
		    const char *token)
{
	if (r->token_checked || callbacks_token_ok(r->w, job_id, token)) {
		r->token_checked = 1; /* intake checked it: the handler does not again */
		return 0;
	}
	metrics_inc(M_CALLBACKS);
	metrics_inc(M_CALLBACKS_REJECTED);
	metrics_callback(NULL, "rejected"); /* the path's provider is not checked yet */
	refused_event_tx(r->w, job_id, provider, "invalid callback token");
	server_respond_error(r, 401, "UNAUTHORIZED", "invalid callback token");
	return -1;
}

/* ---------- the handler ---------- */

static void ack(struct request *r, const char *status)
{
	server_respond_json(r, 200, json_pack("{s:b,s:s}", "ok", 1, "status", status));
}

/* 1 when a callback result asks for the next poll at a time (`poll_in`). */
static int wants_poll(json_t *res)
{
	json_t *pi = json_object_get(res, "poll_in");
	return json_is_number(pi) && json_number_value(pi) >= 0;
}

/*
 * A `processing` callback result with `poll_in` (seconds, >= 0) moves the
 * job's poll to now + poll_in (capped at the deadline): the callback says
 * the result is ready to fetch (fal's payload_error) or when it will be.
 * Only for a submitted job (a request id is known), inside the caller's
 * transaction. Returns the new due time, or 0 when nothing moved.
 */
static int64_t poll_soon(struct worker *w, const struct job *j, json_t *res)
{
	json_t *pi = json_object_get(res, "poll_in");
	if (!wants_poll(res) || !j->request_id)
		return 0;
	int64_t due = loop_wall_ms() + (int64_t)(json_number_value(pi) * 1000);
	if (due > j->deadline)
		due = j->deadline;
	int64_t id;
	if (store_work_drop(w->store, j->id, WORK_POLL, 0) < 0 ||
	    store_work_add(w->store, j->id, WORK_POLL, NULL, due, NULL, 0, &id) < 0) {
		metrics_inc(M_STORE_ERRORS);
		return 0;
	}
	return due;
}

struct fields {
	struct callbacks_field *v;
	size_t n, cap;
};

static void collect(void *arg, const char *name, const char *value)
{
	struct fields *fs = arg;
	if (fs->n == fs->cap) {
		size_t ncap = fs->cap ? fs->cap * 2 : 32;
		struct callbacks_field *nv = realloc(fs->v, ncap * sizeof *nv);
		if (!nv)
			return;
		fs->v = nv;
		fs->cap = ncap;
	}
	fs->v[fs->n].name = name;
	fs->v[fs->n].value = value;
	fs->n++;
}

/* The `req` table of r (callbacks_request_arg over its headers, query and
 * body) without `json`: the scripts' host decodes the body into it. Caller
 * owns. */
static json_t *request_arg(struct request *r)
{
	struct fields h = {0}, q = {0};
	server_each_header(r, collect, &h);
	server_each_query(r, collect, &q);
	json_t *o = request_fields(h.v, h.n, q.v, q.n, r->body.p, r->body.len, 0);
	free(h.v);
	free(q.v);
	return o;
}

/*
 * In f's transaction: a callback that is not a result (progress, or a body
 * the adapter could not read) keeps the job waiting and polling; a body that
 * is not JSON is recorded as a refused callback. Finishes f and answers.
 */
static void not_a_result(struct request *r, struct jobflow *f, const char *provider,
			 int is_json, json_t *res)
{
	struct worker *w = f->w;
	const struct job *j = &f->job;
	if (wants_poll(res) && !j->request_id) {
		/* It came before the submit answer was stored: nothing to poll
		 * with yet, so the provider is asked to send it again. */
		jobflow_rollback(f);
		server_respond_error(r, 503, "UNAVAILABLE",
				     "the job's submit answer is not stored yet; retry");
		return;
	}
	f->kick_at = poll_soon(w, j, res);
	record(w, j->id, provider, "ignored", r);
	if (!is_json)
		refused_event(w, j->id, provider, "malformed: the body is not JSON");
	if (jobflow_commit(f) < 0) {
		server_respond_error(r, 503, "UNAVAILABLE", "the store is unavailable; retry");
		return;
	}
	ack(r, "ignored");
}

/* In f's transaction: verify() refused the callback. Finishes f and answers. */
static void refused(struct request *r, struct jobflow *f, const char *provider,
		    const char *why, int needs_keys)
{
	struct worker *w = f->w;
	char reason[600];
	metrics_inc(M_CALLBACKS_REJECTED);
	record(w, f->job.id, provider, "rejected", r);
	snprintf(reason, sizeof reason, "verify refused it: %s", why);
	refused_event(w, f->job.id, provider, reason);
	jobflow_commit(f);
	if (needs_keys) /* perhaps signed with a key genrelay has not seen yet */
		engine_provider_keys(w, provider, 1);
	log_info("callback for %s refused: %s", f->job.id, why);
	server_respond_error(r, 401, "UNAUTHORIZED", "callback refused: %s", why);
}

/*
 * In f's transaction, for a live job on provider: runs verify() and
 * on_callback() and applies the result, ending the job through jobflow.
 * Finishes f and answers.
 */
static void handle_live(struct request *r, struct jobflow *f, const char *provider)
{
	struct worker *w = f->w;
	struct job *j = &f->job;
	char err[ENGINE_ERR_MAX];
	json_t *keys = NULL, *res = NULL;
	int needs_keys = 0;
	if (script_has_fn(w->scripts, SCRIPT_PROVIDER, provider, "verify")) {
		keys = engine_provider_keys(w, provider, 0);
		needs_keys = engine_setting(w, provider, "jwks_url") != NULL;
		if (needs_keys && !keys) {
			jobflow_rollback(f);
			server_respond_error(r, 503, "UNAVAILABLE",
					     "signing keys are not loaded yet; retry");
			return;
		}
	}
	/* The body, the job's input and its data go to Lua as text, decoded
	 * there once (script_json_field): the job table is built without them
	 * (a shallow copy of the job, read only), with job_script_arg's empty
	 * tables in their place for text that is not JSON. */
	struct job bare = *j;
	bare.input = bare.data = NULL;
	json_t *req = request_arg(r), *jarg = job_script_arg(&bare, NULL);
	struct script_json_field fields[3] = {
		{ .arg = 0, .key = "json", .text = r->body.len ? r->body.p : NULL, .len = r->body.len },
		{ .arg = 1, .key = "input", .text = j->input, .len = j->input ? strlen(j->input) : 0,
		  .container = 1 },
		{ .arg = 1, .key = "data", .text = j->data && strcmp(j->data, "{}") != 0 ? j->data : NULL,
		  .len = j->data ? strlen(j->data) : 0, .container = 1 },
	};
	int v = parse_callback(w->scripts, provider, req, jarg, fields, 3, keys, &res, err, sizeof err);
	int is_json = fields[0].ok;
	const char *state = json_string_value(json_object_get(res, "state"));
	if (v == CALLBACKS_REFUSED) {
		refused(r, f, provider, err, needs_keys);
		goto out;
	}
	if (v == CALLBACKS_SCRIPT_ERROR) {
		metrics_inc(M_SCRIPT_ERRORS);
		j->status = JOB_FAILED;
		job_set(&j->error_code, "SCRIPT_ERROR");
		job_set(&j->error_message, err);
	} else if (json_is_null(res) || (state && strcmp(state, "processing") == 0)) {
		not_a_result(r, f, provider, is_json, res);
		goto out;
	} else {
		jobflow_apply_result(j, res, 0, provider);
	}
	record(w, j->id, provider, "applied", r);
	int rc = jobflow_end_tx(f, "callback");
	if (rc != 0) {
		jobflow_rollback(f);
		if (rc < 0)
			goto unavailable;
		ack(r, "duplicate");
		goto out;
	}
	if (jobflow_commit(f) < 0)
		goto unavailable;
	ack(r, "applied");
	goto out;
unavailable:
	metrics_inc(M_STORE_ERRORS);
	server_respond_error(r, 503, "UNAVAILABLE", "the store is unavailable; retry");
out:
	json_decref(res);
	json_decref(req);
	json_decref(jarg);
}

void callbacks_handle(struct request *r, const char *provider, const char *job_id,
		      const char *token)
{
	struct worker *w = r->w;
	struct jobflow f;
	if (callbacks_admit(r, provider, job_id, token) < 0)
		return;
	metrics_inc(M_CALLBACKS);
	int rc = jobflow_begin(w, &f, job_id, NULL);
	if (rc != 0) {
		server_respond_error(r, rc == 1 ? 404 : 503, rc == 1 ? "JOB_NOT_FOUND" : "UNAVAILABLE",
				     rc == 1 ? "no such job" : "the store is unavailable");
		return;
	}
	const struct job *j = &f.job;
	log_ctx_job(j->id, j->customer, j->provider);
	struct script_provider_info info;
	int loaded = script_provider_info(w->scripts, provider, &info) == 0;
	int runs_there = targets_include(j, provider);
	if (!runs_there || !loaded || !info.configured) {
		char why[160];
		snprintf(why, sizeof why, !runs_there ? "the job does not run on %.64s"
			 : "provider %.64s is not configured", provider);
		refused_event(w, j->id, provider, why);
		jobflow_commit(&f);
		metrics_inc(M_CALLBACKS_REJECTED);
		metrics_callback(NULL, "rejected");
		server_respond_error(r, 404, "JOB_NOT_FOUND", "%s", why);
	} else if (job_terminal(j->status) || strcmp(j->provider, provider) != 0) {
		metrics_inc(M_CALLBACKS_DUPLICATE);
		record(w, j->id, provider, "duplicate", r);
		if (jobflow_commit(&f) < 0)
			server_respond_error(r, 503, "UNAVAILABLE", "the store is unavailable; retry");
		else
			ack(r, "duplicate");
	} else {
		handle_live(r, &f, provider);
	}
	job_clear(&f.job);
}
