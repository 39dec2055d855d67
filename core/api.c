/*
 * api.c: the unified API v1 over HTTP: authentication, routing and the
 * handlers. Runs are parsed by runreq.c and queued by ingest.c; waits are
 * waiters.c's. Job state is changed only through them and the engine
 * (cancel, redeliver).
 */
#include "api.h"

#include "callbacks.h"
#include "config.h"
#include "customers.h"
#include "engine.h"
#include "fetch.h"
#include "front.h"
#include "ingest.h"
#include "metrics.h"
#include "openapi.h"
#include "ratelimit.h"
#include "runreq.h"
#include "script.h"
#include "server.h"
#include "store.h"
#include "ui.h"
#include "usage_api.h"
#include "waiters.h"
#include "worker.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ID_MAX 64

static int id_ok(const char *s)
{
	size_t n = 0;
	for (; s[n]; n++)
		if (!isalnum((unsigned char)s[n]) && s[n] != '_' && s[n] != '-')
			return 0;
	return n > 0 && n <= ID_MAX;
}

static const struct config_customer *admit_customer(struct request *r,
						   const struct config_customer *c);

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
	return admit_customer(r, customers_by_key(r->w->customers, r->w->cfg, r->w->store, h + 7));
}

/* authenticate's end, for the customer c of the request's key (NULL: none):
 * c after taking a rate token, or NULL after answering 401 or 429. */
static const struct config_customer *admit_customer(struct request *r,
						   const struct config_customer *c)
{
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

/* Answers a failed lookup: 404 with code when absent (rc 1), else 503. */
static void respond_lookup_error(struct request *r, int rc, const char *code, const char *what)
{
	if (rc == 1)
		server_respond_error(r, 404, code, "no such %s", what);
	else
		server_respond_error(r, 503, "UNAVAILABLE", "the store is unavailable");
}

/* ---------- how runs and waits are answered ---------- */

static void answer_accepted(struct request *r, const struct job *j)
{
	respond_run_shape(r, 202, j);
}

/* A sync run's wait ended: 200 with the job when it ended, else the 202. */
static void answer_sync(struct request *r, const struct job *j)
{
	if (job_terminal(j->status))
		server_respond_json(r, 200, job_to_json(j));
	else
		respond_run_shape(r, 202, j);
}

/* A long-poll ended: the job as it is. */
static void answer_polled(struct request *r, const struct job *j)
{
	server_respond_json(r, 200, job_to_json(j));
}

static void answer_error(struct request *r, unsigned status, const char *code, const char *msg)
{
	server_respond_error(r, status, code, "%s", msg);
}

static const struct ingest_answers run_answers = {
	.accepted = answer_accepted,
	.wait = { .job = answer_sync, .error = answer_error },
};
static const struct waiter_answers poll_answers = { .job = answer_polled, .error = answer_error };

void api_job_ended(struct worker *w, const char *job_id)
{
	front_job_ended(w, job_id);
	waiters_job_ended(w, job_id);
}

void api_request_gone(struct request *r)
{
	front_request_gone(r);
	ingest_request_gone(r);
	waiters_request_gone(r);
}

void api_abort_all(struct worker *w)
{
	waiters_abort_all(w);
	front_abort_all(w);
	ingest_flush(w);
}

/* ---------- POST /v1/models/{model}/run ---------- */

/*
 * A run, in three steps, each its own module's:
 *   1. authenticate: the API key (done from the headers at intake for any
 *      request with a body, so this finds it done);
 *   2. runreq_parse: the body and the Prefer and Idempotency-Key headers
 *      against the documented rules, into a checked run (runreq.h);
 *   3. ingest_submit: the model resolved to its providers, the budget, the
 *      job built and queued for this iteration's group commit; r is
 *      answered after the commit (202, or 200 once a sync run's job ends).
 * Refusals of steps 2 and 3 are answered here with their documented code.
 */
static void handle_run(struct request *r, const char *model)
{
	const struct config_customer *c = authenticate(r);
	if (!c)
		return;
	const struct runreq_ctx ctx = {
		.model = model,
		.prefer = server_header(r, "Prefer"),
		.idem_key = server_header(r, "Idempotency-Key"),
		.sync_wait_s = r->w->cfg->sync_wait_s,
		.customer = c,
		.guard = &r->w->guard,
	};
	struct runreq rq;
	struct api_error err;
	if (runreq_parse(r->body.p, r->body.len, &ctx, &rq, &err) < 0 ||
	    ingest_submit(r, c, &rq, &run_answers, &err) < 0)
		server_respond_error(r, err.status, err.code, "%s", err.message);
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
		waiters_add(r, j.id, wait, &poll_answers);
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
	/* The customer's key first (every run carries one), so a customer's
	 * key is hashed once; the admin key is looked for only in keys that are
	 * no customer's, or whose digest is the admin key's too. */
	const char *h = server_header(r, "Authorization");
	if (!h || strncasecmp(h, "Bearer ", 7) != 0)
		return authenticate(r) ? 0 : -1; /* answers 401 */
	const struct config *cfg = r->w->cfg;
	const struct config_customer *c = customers_by_key(r->w->customers, cfg, r->w->store, h + 7);
	if (c ? cfg->admin_key && CRYPTO_memcmp(c->api_key_sha256, cfg->admin_key_sha256,
						sizeof cfg->admin_key_sha256) == 0
	      : config_is_admin_key(cfg, h + 7))
		return 0;
	return admit_customer(r, c) ? 0 : -1;
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
			char model[RUNREQ_MODEL_MAX + 1];
			size_t ml = n - 15;
			if (ml > RUNREQ_MODEL_MAX) {
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
