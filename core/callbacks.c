/*
 * callbacks.c: a provider's result arrives. The per-job token proves the
 * URL came from us; the provider's own signature (verify()) is checked where
 * it signs. The job is re-read inside a write transaction, so a duplicate or
 * late callback never moves a job out of a terminal state: it is recorded and
 * acknowledged.
 */
#include "callbacks.h"

#include "config.h"
#include "engine.h"
#include "log.h"
#include "metrics.h"
#include "script.h"
#include "server.h"
#include "sign.h"
#include "store.h"
#include "worker.h"

#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CALLBACK_BODY_KEEP (64 * 1024)
/* At most this many callback_refused events per job: an attacker who knows
 * a job id cannot grow its history without bound (later refusals are still
 * logged and counted in the metrics). */
#define REFUSED_EVENTS_MAX 20

static void add_lower(void *arg, const char *name, const char *value)
{
	char low[128];
	size_t i = 0;
	for (; name[i] && i < sizeof low - 1; i++)
		low[i] = (char)((name[i] >= 'A' && name[i] <= 'Z') ? name[i] + 32 : name[i]);
	low[i] = '\0';
	json_object_set_new(arg, low, json_stringn_nocheck(value, strlen(value)));
}

static enum MHD_Result add_query(void *cls, enum MHD_ValueKind kind, const char *key,
				 const char *value)
{
	(void)kind;
	json_object_set_new(cls, key, json_string(value ? value : ""));
	return MHD_YES;
}

static json_t *request_arg(struct request *r)
{
	json_t *o = json_object(), *h = json_object(), *q = json_object();
	server_each_header(r, add_lower, h);
	MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, add_query, q);
	json_object_set_new(o, "headers", h);
	json_object_set_new(o, "query", q);
	json_object_set_new(o, "body", json_stringn_nocheck(r->body.p ? r->body.p : "", r->body.len));
	json_t *parsed = r->body.len ? json_loadb(r->body.p, r->body.len, JSON_DECODE_ANY, NULL) : NULL;
	if (parsed)
		json_object_set_new(o, "json", parsed);
	return o;
}

static int targets_include(const struct job *j, const char *provider)
{
	if (j->provider && strcmp(j->provider, provider) == 0)
		return 1;
	json_t *t = json_loads(j->targets, 0, NULL);
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
	struct job j;
	if (store_begin(w->store) < 0)
		return;
	if (store_job_get(w->store, job_id, NULL, &j) == 0) {
		refused_event(w, job_id, provider, reason);
		job_clear(&j);
	}
	if (store_commit(w->store) < 0)
		store_rollback(w->store);
}

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

void callbacks_handle(struct request *r, const char *provider, const char *job_id,
		      const char *token)
{
	struct worker *w = r->w;
	struct job j;
	char err[512];
	if (callbacks_admit(r, provider, job_id, token) < 0)
		return;
	metrics_inc(M_CALLBACKS);
	if (store_begin(w->store) < 0) {
		server_respond_error(r, 503, "UNAVAILABLE", "the store is unavailable");
		return;
	}
	int rc = store_job_get(w->store, job_id, NULL, &j);
	if (rc != 0) {
		store_rollback(w->store);
		server_respond_error(r, rc == 1 ? 404 : 503, rc == 1 ? "JOB_NOT_FOUND" : "UNAVAILABLE",
				     rc == 1 ? "no such job" : "the store is unavailable");
		return;
	}
	log_ctx_job(j.id, j.customer, j.provider);
	struct script_provider_info info;
	int loaded = script_provider_info(w->scripts, provider, &info) == 0;
	if (!targets_include(&j, provider) || !loaded || !info.configured) {
		char why[160];
		snprintf(why, sizeof why, !targets_include(&j, provider)
			 ? "the job does not run on %.64s" : "provider %.64s is not configured", provider);
		refused_event(w, j.id, provider, why);
		if (store_commit(w->store) < 0)
			store_rollback(w->store);
		job_clear(&j);
		metrics_inc(M_CALLBACKS_REJECTED);
		metrics_callback(NULL, "rejected");
		server_respond_error(r, 404, "JOB_NOT_FOUND", "%s", why);
		return;
	}
	if (job_terminal(j.status) || strcmp(j.provider, provider) != 0) {
		metrics_inc(M_CALLBACKS_DUPLICATE);
		record(w, j.id, provider, "duplicate", r);
		if (store_commit(w->store) < 0)
			store_rollback(w->store);
		ack(r, "duplicate");
		job_clear(&j);
		return;
	}
	json_t *req = request_arg(r), *jarg = engine_job_arg(&j), *res = NULL;
	json_t *args[2] = { req, jarg };
	struct script_ctx ctx = { .provider = provider };
	if (script_has_fn(w->scripts, SCRIPT_PROVIDER, provider, "verify")) {
		ctx.keys = engine_provider_keys(w, provider, 0);
		int needs_keys = json_object_get(script_provider_settings_ref(w->scripts, provider),
						 "jwks_url") != NULL;
		if (needs_keys && !ctx.keys) {
			store_rollback(w->store);
			server_respond_error(r, 503, "UNAVAILABLE",
					     "signing keys are not loaded yet; retry");
			goto out;
		}
		/* verify(req, ctx, job) */
		if (script_verify(w->scripts, provider, req, jarg, &ctx, err, sizeof err) != 1) {
			/* verify's `false, "reason"`: the reason comes back in err. */
			const char *why = err[0] ? err : "signature verification failed";
			metrics_inc(M_CALLBACKS_REJECTED);
			record(w, j.id, provider, "rejected", r);
			char reason[600];
			snprintf(reason, sizeof reason, "verify refused it: %s", why);
			refused_event(w, j.id, provider, reason);
			if (store_commit(w->store) < 0)
				store_rollback(w->store);
			if (needs_keys)
				engine_provider_keys(w, provider, 1);
			log_info("callback for %s refused: %s", j.id, why);
			server_respond_error(r, 401, "UNAUTHORIZED", "callback refused: %s", why);
			goto out;
		}
	}
	rc = script_call(w->scripts, SCRIPT_PROVIDER, provider, "on_callback", args, 2, &ctx,
			 &res, err, sizeof err);
	if (rc < 0) {
		metrics_inc(M_SCRIPT_ERRORS);
		j.status = JOB_FAILED;
		job_set(&j.error_code, "SCRIPT_ERROR");
		job_set(&j.error_message, err);
	} else if (json_is_null(res) ||
		   (json_is_string(json_object_get(res, "state")) &&
		    strcmp(json_string_value(json_object_get(res, "state")), "processing") == 0)) {
		/* Not a result (progress or unreadable): keep waiting and polling. A
		 * body that is not JSON is recorded as a refused callback. */
		if (wants_poll(res) && !j.request_id) {
			/* It came before the submit answer was stored: nothing to poll
			 * with yet, so the provider is asked to send it again. */
			store_rollback(w->store);
			server_respond_error(r, 503, "UNAVAILABLE",
					     "the job's submit answer is not stored yet; retry");
			goto out;
		}
		int64_t due = poll_soon(w, &j, res);
		record(w, j.id, provider, "ignored", r);
		json_t *parsed = json_object_get(req, "json");
		if (!parsed)
			refused_event(w, j.id, provider, "malformed: the body is not JSON");
		if (store_commit(w->store) < 0)
			store_rollback(w->store);
		else if (due)
			engine_kick(w, due);
		ack(r, "ignored");
		goto out;
	} else {
		engine_apply_result(w, &j, res, 0, provider);
	}
	struct work out;
	int nout = 0;
	record(w, j.id, provider, "applied", r);
	if (engine_end_job_via_tx(w, &j, "callback", &out, &nout) < 0 || store_commit(w->store) < 0) {
		store_rollback(w->store);
		metrics_inc(M_STORE_ERRORS);
		server_respond_error(r, 503, "UNAVAILABLE", "the store is unavailable; retry");
		goto out;
	}
	ack(r, "applied");
	engine_job_ended(w, &j, &out, nout);
out:
	json_decref(res);
	json_decref(req);
	json_decref(jarg);
	job_clear(&j);
}
