/*
 * front.c: routing and HTTP glue of the client-compatible fronts.
 *
 * One request through a front:
 *   1. front_dispatch: /NAME/rest with fronts/NAME.lua loaded; the customer
 *      is authenticated from the headers; the body is parsed (JSON, or
 *      multipart into fields and data-URL files) into `req`.
 *   2. The script's request(req, ctx) returns an operation (docs/scripts.md,
 *      "Fronts"): respond, submit, get, cancel or stream.
 *   3. The core carries it out (runreq_check and ingest_submit, the store,
 *      engine_cancel_job, a status-stream timer) and, once there is a job
 *      to show, calls the script's respond(reply, job, req, ctx) for the
 *      answer's status, body and headers; errors go through
 *      error(err, req, ctx).
 * Outputs are inlined (fetched through core/fetch.c, base64 in
 * job.output.items[i].b64) before respond when the operation asks for it.
 */
#include "front.h"

#include "buf.h"
#include "config.h"
#include "customers.h"
#include "engine.h"
#include "fetch.h"
#include "ingest.h"
#include "job.h"
#include "log.h"
#include "metrics.h"
#include "multipart.h"
#include "runreq.h"
#include "script.h"
#include "server.h"
#include "sign.h"
#include "store.h"
#include "worker.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define FRONT_NAME_MAX 40
#define STREAM_TICK_MS 200
#define FRONT_BODY_DEPTH 32 /* well inside what the Lua bridge takes (LUAJSON_MAX_DEPTH) */
#define STREAM_OUT_MAX ((size_t)1 << 20)

/* The front's state of one request (r->front); freed by front_request_gone,
 * or by the last inline fetch when the request went first. */
struct front_req {
	struct request *r;          /* NULL once the request is gone */
	struct worker *w;
	char name[FRONT_NAME_MAX + 1];
	const struct config_customer *c;
	json_t *req;                /* what request() saw; respond() sees it too */
	char reply[64];             /* respond()'s first argument */
	int inline_outputs;         /* fetch outputs before respond() */
	/* inline fetches */
	json_t *job;                /* the job being inlined */
	int fetching;               /* fetches in flight */
	size_t inlined;             /* bytes inlined so far */
	/* status stream */
	int streaming, done;
	char job_id[48];
	struct loop_timer timer;
	int64_t stream_until;
	struct buf out;             /* event bytes not yet read by MHD */
	size_t out_pos;
	char *last;                 /* the last event's data */
	struct front_req *next, **prevp; /* the worker's streams */
};

static struct front_req **streams_of(struct worker *w)
{
	return (struct front_req **)&w->front_streams;
}

static void fr_free(struct front_req *fr)
{
	if (!fr)
		return;
	if (fr->prevp) {
		*fr->prevp = fr->next;
		if (fr->next)
			fr->next->prevp = fr->prevp;
	}
	loop_timer_stop(fr->w->loop, &fr->timer);
	json_decref(fr->req);
	json_decref(fr->job);
	buf_free(&fr->out);
	free(fr->last);
	free(fr);
}

void front_request_gone(struct request *r)
{
	struct front_req *fr = r->front;
	r->front = NULL;
	if (!fr)
		return;
	fr->r = NULL;
	if (fr->fetching == 0)
		fr_free(fr);
}

/* ---------- answers ---------- */

/* Sends a script's answer {status, body, headers, content_type} (ans
 * borrowed); a status outside 200..599 becomes dflt_status, headers that
 * break the hook header rules are left out. */
static void send_answer(struct request *r, json_t *ans, unsigned dflt_status)
{
	json_t *st = json_object_get(ans, "status");
	json_t *body = json_object_get(ans, "body");
	const char *ct = json_string_value(json_object_get(ans, "content_type"));
	unsigned status = dflt_status;
	char cerr[128];
	if (ct && fetch_header_field_check("Content-Type", ct, strlen(ct), cerr, sizeof cerr) < 0)
		ct = NULL; /* a script's type with CR, LF ... is never sent */
	if (json_is_integer(st) && json_integer_value(st) >= 200 && json_integer_value(st) <= 599)
		status = (unsigned)json_integer_value(st);
	char *text = NULL;
	size_t len = 0;
	if (json_is_string(body)) {
		len = json_string_length(body);
		text = malloc(len + 1);
		if (text)
			memcpy(text, json_string_value(body), len + 1);
		if (!ct)
			ct = "text/plain; charset=utf-8";
	} else if (body && !json_is_null(body)) {
		text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
		len = text ? strlen(text) : 0;
	} else {
		text = strdup("");
	}
	if (!text) {
		server_respond_error(r, 503, "UNAVAILABLE", "out of memory");
		return;
	}
	server_respond_raw(r, status, text, len, ct ? ct : "application/json");
	const char *k;
	json_t *v;
	char herr[256];
	json_object_foreach(json_object_get(ans, "headers"), k, v) {
		const char *sv = json_string_value(v);
		if (!sv || fetch_header_field_check(k, sv, json_string_length(v), herr, sizeof herr) < 0 ||
		    fetch_header_name_matches(k, "content-type"))
			continue;
		server_answer_header(r, k, sv);
	}
}

/* Calls fronts/NAME.lua fn(args...). 0 with *out, or -1 with err. */
static int call(struct front_req *fr, const char *fn, json_t **args, size_t nargs,
		json_t **out, char *err, size_t errlen)
{
	struct script_ctx ctx = {0};
	int rc = script_call(fr->w->scripts, SCRIPT_FRONT, fr->name, fn, args, nargs, &ctx, out,
			     err, errlen);
	if (rc < 0) {
		metrics_inc(M_SCRIPT_ERRORS);
		log_warn("fronts: %s", err);
	}
	return rc;
}

static void answer_error(struct front_req *fr, struct request *r, unsigned status,
			 const char *code, const char *msg)
{
	json_t *e = json_pack("{s:i,s:s,s:s}", "status", (int)status, "code", code, "message", msg);
	json_t *args[2] = { e, fr->req ? fr->req : json_null() };
	json_t *out = NULL;
	char err[512];
	if (call(fr, "error", args, 2, &out, err, sizeof err) == 0 && json_is_object(out))
		send_answer(r, out, status);
	else
		server_respond_error(r, status, code, "%s", msg);
	json_decref(out);
	json_decref(e);
}

void front_error(struct request *r, unsigned status, const char *code, const char *msg)
{
	struct front_req *fr = r->front;
	if (!fr) {
		server_respond_error(r, status, code, "%s", msg);
		return;
	}
	answer_error(fr, r, status, code, msg);
}

/* respond(reply, job, req) for a job object (borrowed). */
static void answer_job(struct front_req *fr, struct request *r, json_t *job)
{
	json_t *reply = json_string(fr->reply);
	json_t *args[3] = { reply, job, fr->req };
	json_t *out = NULL;
	char err[512];
	if (call(fr, "respond", args, 3, &out, err, sizeof err) < 0 || !json_is_object(out)) {
		json_decref(out);
		json_decref(reply);
		server_respond_error(r, 502, "SCRIPT_ERROR", "the front could not shape the answer");
		return;
	}
	send_answer(r, out, 200);
	json_decref(out);
	json_decref(reply);
}

/* ---------- inline outputs ---------- */

struct inline_fetch {
	struct front_req *fr;
	json_t *item; /* borrowed from fr->job */
};

static void inline_finish(struct front_req *fr)
{
	if (!fr->r) {
		fr_free(fr);
		return;
	}
	answer_job(fr, fr->r, fr->job);
}

static void inline_done(void *arg, const struct fetch_response *res)
{
	struct inline_fetch *f = arg;
	struct front_req *fr = f->fr;
	fr->fetching--;
	if (fr->r) {
		if (res->error || res->status != 200) {
			json_object_set_new(f->item, "inline_error",
					    json_string(res->error ? res->error : "the output URL did not answer 200"));
		} else if (res->truncated || fr->inlined + res->body_len > FRONT_INLINE_MAX) {
			json_object_set_new(f->item, "inline_error", json_string("output too large to inline"));
		} else {
			size_t n = 4 * ((res->body_len + 2) / 3) + 1;
			char *b64 = malloc(n);
			if (b64 && sign_base64_encode(res->body, res->body_len, b64, n) >= 0) {
				json_object_set_new(f->item, "b64", json_string(b64));
				fr->inlined += res->body_len;
				char ct[128];
				if (!json_is_string(json_object_get(f->item, "content_type")) &&
				    fetch_header(res->headers, res->headers_len, "content-type", ct, sizeof ct) > 0)
					json_object_set_new(f->item, "content_type", json_string(ct));
			}
			free(b64);
		}
	}
	free(f);
	if (fr->fetching == 0)
		inline_finish(fr);
}

/* Starts fetching every output URL of fr->job; answers at once when none. */
static void inline_start(struct front_req *fr)
{
	json_t *items = json_object_get(json_object_get(fr->job, "output"), "items");
	size_t i;
	json_t *item;
	fr->fetching = 1; /* held while starting, so no callback answers early */
	json_array_foreach(items, i, item) {
		const char *url = json_string_value(json_object_get(item, "url"));
		if (!url || strncmp(url, "data:", 5) == 0)
			continue;
		struct inline_fetch *f = calloc(1, sizeof *f);
		if (!f)
			continue;
		f->fr = fr;
		f->item = item;
		struct fetch_request fq = {
			.method = "GET",
			.url = url,
			.timeout_ms = 30000,
			.max_response = FRONT_INLINE_MAX,
			.guard = &fr->w->guard,
		};
		fr->fetching++;
		if (fetch_start(fr->w->fetch, &fq, inline_done, f) < 0) {
			fr->fetching--;
			json_object_set_new(item, "inline_error", json_string("cannot fetch the output"));
			free(f);
		}
	}
	if (--fr->fetching == 0)
		inline_finish(fr);
}

void front_answer(struct request *r, const struct job *j)
{
	struct front_req *fr = r->front;
	if (!fr)
		return;
	json_t *job = job_to_json(j);
	if (fr->inline_outputs && j->status == JOB_SUCCEEDED && fr->fetching == 0) {
		json_decref(fr->job);
		fr->job = job;
		server_suspend(r);
		inline_start(fr);
		return;
	}
	answer_job(fr, r, job);
	json_decref(job);
}

/* ---------- status streams (server-sent events) ---------- */

static long stream_read(void *cls, char *out, size_t max)
{
	struct front_req *fr = cls;
	size_t left = fr->out.len - fr->out_pos;
	if (left == 0)
		return fr->done ? -1 : 0;
	if (left > max)
		left = max;
	memcpy(out, fr->out.p + fr->out_pos, left);
	fr->out_pos += left;
	if (fr->out_pos == fr->out.len) {
		buf_reset(&fr->out);
		fr->out_pos = 0;
	}
	return (long)left;
}

/* Reads the job and queues an event when respond() says something new. */
static void stream_poll(struct front_req *fr)
{
	struct job j;
	struct request *r = fr->r;
	if (!r || fr->done)
		return;
	int rc = store_job_get(fr->w->store, fr->job_id, fr->c->name, &j);
	if (rc == 0) {
		json_t *job = job_to_json(&j);
		json_t *reply = json_string(fr->reply);
		json_t *args[3] = { reply, job, fr->req };
		json_t *ans = NULL;
		char err[512];
		int terminal = job_terminal(j.status);
		job_clear(&j);
		if (call(fr, "respond", args, 3, &ans, err, sizeof err) == 0) {
			json_t *body = json_object_get(ans, "body");
			char *text = body ? json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
			if (text && (!fr->last || strcmp(text, fr->last) != 0)) {
				buf_adds(&fr->out, "data: ");
				buf_adds(&fr->out, text);
				buf_adds(&fr->out, "\n\n");
				free(fr->last);
				fr->last = text;
				text = NULL;
			}
			free(text);
		} else {
			terminal = 1;
		}
		json_decref(ans);
		json_decref(reply);
		json_decref(job);
		if (terminal)
			fr->done = 1;
	} else if (rc == 1) {
		fr->done = 1;
	}
	if (loop_now_ms() >= fr->stream_until)
		fr->done = 1;
	server_stream_wake(r);
	if (!fr->done)
		loop_timer_set(fr->w->loop, &fr->timer, loop_now_ms() + STREAM_TICK_MS);
}

static void stream_tick(struct loop_timer *t)
{
	stream_poll(t->arg);
}

static void stream_start(struct front_req *fr, struct request *r)
{
	struct worker *w = fr->w;
	struct front_req **head = streams_of(w);
	fr->streaming = 1;
	buf_init(&fr->out, STREAM_OUT_MAX);
	fr->stream_until = loop_now_ms() + (int64_t)(w->cfg->job_deadline_s * 1000) + 60000;
	fr->next = *head;
	if (*head)
		(*head)->prevp = &fr->next;
	fr->prevp = head;
	*head = fr;
	loop_timer_init(&fr->timer, stream_tick, fr);
	server_respond_stream(r, 200, "text/event-stream", stream_read, fr, NULL);
	server_answer_header(r, "x-fal-request-id", fr->job_id);
	stream_poll(fr);
}

void front_job_ended(struct worker *w, const char *job_id)
{
	struct front_req *fr = *streams_of(w), *n;
	for (; fr; fr = n) {
		n = fr->next;
		if (strcmp(fr->job_id, job_id) == 0) {
			loop_timer_stop(w->loop, &fr->timer);
			stream_poll(fr);
		}
	}
}

void front_abort_all(struct worker *w)
{
	for (struct front_req *fr = *streams_of(w); fr; fr = fr->next) {
		fr->done = 1;
		loop_timer_stop(w->loop, &fr->timer);
		if (fr->r)
			server_stream_wake(fr->r);
	}
}

/* ---------- the request as the script sees it ---------- */

static void add_lower(void *arg, const char *name, const char *value)
{
	char k[128];
	size_t i = 0;
	for (; name[i] && i < sizeof k - 1; i++)
		k[i] = (char)tolower((unsigned char)name[i]);
	k[i] = '\0';
	if (strcmp(k, "authorization") == 0 || strcmp(k, "cookie") == 0)
		return; /* the key is the core's: never shown to a script */
	json_object_set_new(arg, k, json_string(value));
}

static void add_query(void *arg, const char *name, const char *value)
{
	json_object_set_new(arg, name, json_string(value));
}

/* Nesting depth of v (a scalar is 0), counting no further than max + 1. */
static int json_depth(const json_t *v, int max)
{
	int d = 0;
	size_t i;
	const char *k;
	json_t *x;
	if (max < 0)
		return 1;
	if (json_is_object(v)) {
		json_object_foreach((json_t *)v, k, x) {
			int e = json_depth(x, max - 1);
			if (e > d)
				d = e;
		}
		return d + 1;
	}
	if (json_is_array(v)) {
		json_array_foreach(v, i, x) {
			int e = json_depth(x, max - 1);
			if (e > d)
				d = e;
		}
		return d + 1;
	}
	return 0;
}

/* The request table request() and respond() get. Caller owns. */
static json_t *build_req(struct request *r, const char *name, const char *rest)
{
	json_t *q = json_object(), *h = json_object();
	server_each_query(r, add_query, q);
	server_each_header(r, add_lower, h);
	char base[512];
	snprintf(base, sizeof base, "%s/%s", r->w->cfg->public_url, name);
	json_t *req = json_pack("{s:s,s:s,s:o,s:o,s:s}", "method", r->method, "path", rest,
				"query", q, "headers", h, "base_url", base);
	const char *ct = server_header(r, "Content-Type");
	if (r->body.len == 0)
		return req;
	if (ct && strncasecmp(ct, "multipart/form-data", 19) == 0) {
		json_t *form = json_object(), *files = json_array();
		char why[128];
		if (multipart_parse(ct, r->body.p, r->body.len, form, files, why, sizeof why) < 0) {
			json_object_set_new(req, "body_error", json_string(why));
			json_decref(form);
			json_decref(files);
		} else {
			json_object_set_new(req, "form", form);
			json_object_set_new(req, "files", files);
		}
		return req;
	}
	json_error_t je;
	json_t *body = json_loadb(r->body.p, r->body.len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
	if (body && json_depth(body, FRONT_BODY_DEPTH) > FRONT_BODY_DEPTH) {
		json_decref(body);
		json_object_set_new(req, "body_error",
				    json_string("body is nested too deeply (at most 32 levels)"));
	} else if (body) {
		json_object_set_new(req, "body", body);
	} else {
		char why[256];
		snprintf(why, sizeof why, "body is not valid JSON: %s (at byte %d)", je.text, je.position);
		json_object_set_new(req, "body_error", json_string(why));
	}
	return req;
}

/* ---------- operations ---------- */

const struct config_customer *front_customer(struct request *r)
{
	const char *h = server_header(r, "Authorization");
	const char *key = NULL;
	if (h && strncasecmp(h, "Key ", 4) == 0)
		key = h + 4;
	else if (h && strncasecmp(h, "Bearer ", 7) == 0)
		key = h + 7;
	return key ? customers_by_key(r->w->customers, r->w->cfg, r->w->store, key) : NULL;
}

/* A front's runs are answered in the front's shapes, once committed and
 * once a wait ends alike. */
static const struct ingest_answers front_run_answers = {
	.accepted = front_answer,
	.wait = { .job = front_answer, .error = front_error },
};

static void op_submit(struct front_req *fr, struct request *r, json_t *op)
{
	json_t *input = json_object_get(op, "input");
	const char *model = json_string_value(json_object_get(op, "model"));
	if (!model || !json_is_object(input)) {
		answer_error(fr, r, 400, "INVALID_REQUEST",
			     !model ? "a model is required" : "the input must be an object");
		return;
	}
	char *text = json_dumps(input, JSON_COMPACT);
	json_t *wait = json_object_get(op, "wait");
	double wait_s = 0;
	if (json_is_true(wait)) {
		wait_s = fr->w->cfg->sync_wait_s; /* the operator's, up to 3600 s */
	} else if (json_is_number(wait)) {
		wait_s = json_number_value(wait); /* a script's, at most 300 s */
		if (wait_s < 0 || wait_s != wait_s)
			wait_s = 0;
		if (wait_s > 300)
			wait_s = 300;
	}
	char hook[FRONT_NAME_MAX + 8];
	snprintf(hook, sizeof hook, "front:%s", fr->name);
	const char *url = json_string_value(json_object_get(op, "webhook_url"));
	struct runreq rq = { .run = {
		.model = model,
		.input = text ? text : "{}",
		.input_len = text ? strlen(text) : 2,
		.webhook_url = url,
		.track_id = json_string_value(json_object_get(op, "track_id")),
		.hook = url && json_is_true(json_object_get(op, "webhook_shape")) ? hook : NULL,
		.wait_s = wait_s,
		.idem_key = json_string_value(json_object_get(op, "idempotency_key")),
		.idem_body = r->body.p,
		.idem_body_len = r->body.len,
	} };
	struct api_error err;
	if (runreq_check(&rq, fr->c, &fr->w->guard, &err) < 0 ||
	    ingest_submit(r, fr->c, &rq, &front_run_answers, &err) < 0)
		answer_error(fr, r, err.status, err.code, err.message);
	free(text);
}

/* Loads the customer's job, or answers in the front's shape and returns -1. */
static int load_job(struct front_req *fr, struct request *r, const char *id, struct job *j)
{
	int rc = id ? store_job_get(fr->w->store, id, fr->c->name, j) : 1;
	if (rc == 0)
		return 0;
	if (rc == 1)
		answer_error(fr, r, 404, "JOB_NOT_FOUND", "no such request");
	else
		answer_error(fr, r, 503, "UNAVAILABLE", "the store is unavailable");
	return -1;
}

static int id_ok(const char *s)
{
	size_t n = 0;
	for (; s && s[n]; n++)
		if (!isalnum((unsigned char)s[n]) && s[n] != '_' && s[n] != '-')
			return 0;
	return n > 0 && n < 48;
}

static void run_op(struct front_req *fr, struct request *r, json_t *op)
{
	const char *kind = json_string_value(json_object_get(op, "op"));
	const char *reply = json_string_value(json_object_get(op, "reply"));
	const char *id = json_string_value(json_object_get(op, "job_id"));
	snprintf(fr->reply, sizeof fr->reply, "%s", reply ? reply : kind ? kind : "");
	fr->inline_outputs = json_is_true(json_object_get(op, "inline"));
	if (!kind) {
		answer_error(fr, r, 502, "SCRIPT_ERROR", "the front returned no operation");
		return;
	}
	if (strcmp(kind, "respond") == 0) {
		send_answer(r, op, 200);
		return;
	}
	if (strcmp(kind, "error") == 0) {
		json_t *st = json_object_get(op, "status");
		const char *code = json_string_value(json_object_get(op, "code"));
		const char *msg = json_string_value(json_object_get(op, "message"));
		answer_error(fr, r, json_is_integer(st) ? (unsigned)json_integer_value(st) : 400,
			     code ? code : "INVALID_REQUEST", msg ? msg : "invalid request");
		return;
	}
	if (strcmp(kind, "submit") == 0) {
		op_submit(fr, r, op);
		return;
	}
	if (strcmp(kind, "get") != 0 && strcmp(kind, "cancel") != 0 && strcmp(kind, "stream") != 0) {
		answer_error(fr, r, 502, "SCRIPT_ERROR", "the front returned an unknown operation");
		return;
	}
	if (!id_ok(id)) {
		answer_error(fr, r, 404, "JOB_NOT_FOUND", "no such request");
		return;
	}
	struct job j;
	if (strcmp(kind, "cancel") == 0) {
		int rc = engine_cancel_job(fr->w, id, fr->c->name, &j);
		if (rc != 0) {
			answer_error(fr, r, rc == 1 ? 404 : 503, rc == 1 ? "JOB_NOT_FOUND" : "UNAVAILABLE",
				     rc == 1 ? "no such request" : "the store is unavailable");
			return;
		}
	} else if (load_job(fr, r, id, &j) < 0) {
		return;
	}
	if (strcmp(kind, "stream") == 0) {
		snprintf(fr->job_id, sizeof fr->job_id, "%s", j.id);
		job_clear(&j);
		stream_start(fr, r);
		return;
	}
	front_answer(r, &j);
	job_clear(&j);
}

/* Copies the front name of r's path (/NAME/...) into name; 0, or -1 when
 * the path names no loaded front. *rest: the path after /NAME. */
static int front_of(struct request *r, char name[FRONT_NAME_MAX + 1], const char **rest)
{
	const char *url = r->url;
	size_t n = 0;
	if (url[0] != '/')
		return -1;
	for (url++; url[n] && url[n] != '/'; n++)
		if (n >= FRONT_NAME_MAX || !(isalnum((unsigned char)url[n]) || url[n] == '_'))
			return -1;
	if (n == 0)
		return -1;
	memcpy(name, url, n);
	name[n] = '\0';
	/* the unified API's own first segments are never a front's */
	if (strcmp(name, "v1") == 0 || strcmp(name, "healthz") == 0 || strcmp(name, "metrics") == 0)
		return -1;
	if (!script_exists(r->w->scripts, SCRIPT_FRONT, name))
		return -1;
	*rest = url[n] ? url + n : "/";
	return 0;
}

int front_owns(struct request *r)
{
	char name[FRONT_NAME_MAX + 1];
	const char *rest;
	return front_of(r, name, &rest) == 0;
}

int front_dispatch(struct request *r)
{
	struct worker *w = r->w;
	char name[FRONT_NAME_MAX + 1];
	const char *rest;
	if (front_of(r, name, &rest) < 0)
		return 0;
	struct front_req *fr = calloc(1, sizeof *fr);
	if (!fr) {
		server_respond_error(r, 503, "UNAVAILABLE", "out of memory");
		return 1;
	}
	fr->r = r;
	fr->w = w;
	loop_timer_init(&fr->timer, NULL, fr);
	snprintf(fr->name, sizeof fr->name, "%s", name);
	r->front = fr;
	fr->c = front_customer(r);
	if (!fr->c) {
		fr->req = json_pack("{s:s,s:s}", "method", r->method, "path", rest);
		answer_error(fr, r, 401, "UNAUTHORIZED",
			     server_header(r, "Authorization")
				     ? "unknown API key"
				     : "missing Authorization: Key <genrelay api key> (or Bearer)");
		return 1;
	}
	fr->req = build_req(r, name, rest);
	json_object_set_new(fr->req, "customer", json_string(fr->c->name));
	json_t *op = NULL;
	char err[512];
	json_t *args[1] = { fr->req };
	if (call(fr, "request", args, 1, &op, err, sizeof err) < 0 || !json_is_object(op)) {
		json_decref(op);
		answer_error(fr, r, 502, "SCRIPT_ERROR", "the front could not map the request");
		return 1;
	}
	run_op(fr, r, op);
	json_decref(op);
	return 1;
}
