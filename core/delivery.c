/*
 * delivery.c: webhook deliveries (delivery.h). A delivery runs in named
 * steps: load it and its job, pick the hook, make the body and headers,
 * sign, send; its answer is recorded as an attempt.
 */
#include "delivery.h"

#include "config.h"
#include "customers.h"
#include "engine.h"
#include "engine_int.h"
#include "fetch.h"
#include "log.h"
#include "metrics.h"
#include "retry.h"
#include "script.h"
#include "scrub.h"
#include "sign.h"
#include "worker.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The body an attempt sent is kept with the attempt, up to this many bytes
 * (the dashboard shows it; the receiver got all of it). */
#define ATTEMPT_BODY_KEEP (16 * 1024)

/* A delivery in flight: a step, the delivery row and what it sent. */
struct deliver_step {
	struct step base;
	struct delivery d;  /* d.url owned */
	size_t sent_len;    /* bytes of sent[] kept (the body, truncated) */
	char sent[];        /* ATTEMPT_BODY_KEEP at most */
};

/* What an attempt sends: made by the hook, then signed. */
struct outgoing {
	char *body;               /* owned */
	size_t len;
	struct curl_slist *hl;    /* owned until the fetch takes it */
	int has_ct;               /* the hook set Content-Type */
	char version[32];         /* the hook's script version, "" for none */
};

static void outgoing_free(struct outgoing *o)
{
	free(o->body);
	curl_slist_free_all(o->hl);
	o->body = NULL;
	o->hl = NULL;
}

/* src into dst[0..size), cut to fit, NUL-terminated (snprintf "%s" without
 * the format machinery: this runs several times per delivery). */
static void copy_str(char *dst, size_t size, const char *src)
{
	size_t n = strlen(src);
	if (n >= size)
		n = size - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* v in decimal, in out (NUL-terminated); returns where it starts in out. */
static const char *decimal(int64_t v, char out[24])
{
	char *p = out + 23;
	uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
	*p = '\0';
	do {
		*--p = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		*--p = '-';
	return p;
}

/* Appends the header line "name: value" to o's list (cut at 511 bytes). */
static void header_add(struct outgoing *o, const char *name, const char *value)
{
	char line[512];
	size_t n = strlen(name);
	memcpy(line, name, n);
	line[n] = ':';
	line[n + 1] = ' ';
	copy_str(line + n + 2, sizeof line - n - 2, value);
	o->hl = curl_slist_append(o->hl, line);
}

/* ---------- attempts ---------- */

/* Records one failed or refused attempt and schedules the next try (or
 * marks the delivery dead after the last). sent: what it sent, or NULL. */
static void delivery_failed(struct worker *w, struct delivery *d, const struct work *wk,
			    long status, double latency, const char *error,
			    int64_t retry_after, const char *version,
			    const char *sent, size_t sent_len)
{
	int64_t now = loop_wall_ms();
	d->attempts++;
	int64_t delay = retry_schedule_delay(w->cfg->retry, w->cfg->nretry,
					     (unsigned)d->attempts, w->cfg->retry_jitter, engine_random());
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

/* A hook's script error fails the attempt like any other failure. */
static void hook_failed(struct worker *w, struct delivery *d, const struct work *wk,
			const char *msg, const char *version)
{
	metrics_inc(M_SCRIPT_ERRORS);
	delivery_failed(w, d, wk, 0, 0, msg, -1, version, NULL, 0);
}

/* The hook returned nil: the delivery is skipped, recorded as such. */
static void delivery_skipped(struct worker *w, struct delivery *d, const struct work *wk,
			     const char *version)
{
	snprintf(d->status, sizeof d->status, "skipped");
	if (store_begin(w->store) < 0)
		return;
	store_attempt_insert(w->store, d->id, d->job_id, loop_wall_ms(), 0, 0,
			     "skipped by hook", version, NULL, 0);
	store_delivery_update(w->store, d);
	store_work_done(w->store, wk->id);
	if (store_commit(w->store) < 0)
		store_rollback(w->store);
}

/* ---------- the steps of a delivery ---------- */

/*
 * Step 1: loads the delivery of row wk and its job. 0; or 1 when the row
 * is finished (the delivery or job is gone, or the delivery is no longer
 * pending) or left for a second later (a store error: never leased for a
 * whole lease, never dropped).
 */
static int deliver_load(struct worker *w, const struct work *wk, struct delivery *d, struct job *j)
{
	int rc = store_delivery_get(w->store, wk->ref, d);
	if (rc == 0 && strcmp(d->status, "pending") != 0) {
		free(d->url);
		rc = 1;
	} else if (rc == 0 && (rc = store_job_get(w->store, d->job_id, NULL, j)) != 0) {
		free(d->url);
	}
	if (rc == 1) {
		engine_work_done(w, wk);
	} else if (rc < 0) {
		metrics_inc(M_STORE_ERRORS);
		engine_reschedule(w, wk, loop_wall_ms() + 1000, wk->tries);
	}
	return rc != 0;
}

/* Which script shapes the body. */
struct hook_choice {
	enum script_kind kind;
	const char *name;   /* borrowed from the customer or the job */
	const char *fn;
};

/*
 * Step 2: the customer's hook as configured now (not when the job was
 * made, so an operator's change applies to pending deliveries too); a job
 * submitted through a front with the client's own webhook shape (fal's
 * fal_webhook) records "front:NAME": that front's webhook().
 */
static struct hook_choice deliver_hook(const struct config_customer *cust, const struct job *j)
{
	struct hook_choice h = { SCRIPT_HOOK, cust && cust->hook ? cust->hook : "default", "transform" };
	if (j->hook && strncmp(j->hook, "front:", 6) == 0) {
		h.kind = SCRIPT_FRONT;
		h.name = j->hook + 6;
		h.fn = "webhook";
	}
	return h;
}

/* Step 3b: the headers a hook returned. A header the hook may not send
 * fails the attempt, naming it, like any other hook error: dropping it
 * quietly would hide the mistake. 0, or -1 with herr. */
static int hook_headers(json_t *headers, struct outgoing *o, char *herr, size_t herrlen)
{
	const char *k;
	json_t *v;
	json_object_foreach(headers, k, v) {
		const char *sv = json_string_value(v);
		if (fetch_header_field_check(k, sv, sv ? json_string_length(v) : 0, herr, herrlen) < 0)
			return -1;
		if (fetch_header_name_matches(k, "webhook-*")) {
			snprintf(herr, herrlen, "header '%s' is set by the core (Standard Webhooks), not by a hook", k);
			return -1;
		}
		if (fetch_header_name_matches(k, "content-type"))
			o->has_ct = 1;
		char line[4096];
		snprintf(line, sizeof line, "%s: %s", k, sv);
		o->hl = curl_slist_append(o->hl, line);
	}
	return 0;
}

/*
 * Step 3: the body and headers, from the hook's transform (or the job
 * object itself for the default shape when no default hook is loaded).
 * event is the job object with "output" null; output (may be NULL) is the
 * job's stored output text, which goes to the hook as text decoded in Lua
 * (script_json_field) and is parsed here only for the body made without a
 * hook. 0 with *o filled; 1 when the attempt is over (skipped by the hook,
 * or failed and recorded).
 */
static int deliver_body(struct worker *w, struct delivery *d, const struct work *wk,
			const struct hook_choice *h, json_t *event, const char *output,
			struct outgoing *o)
{
	char err[ENGINE_ERR_MAX], msg[ENGINE_ERR_MAX + 16];
	const char *version = script_version(w->scripts, h->kind, h->name);
	copy_str(o->version, sizeof o->version, version ? version : "");
	if (!version && strcmp(h->name, "default") != 0) {
		/* The customer's shape is not loaded (removed, or broken since
		 * start-up): retry on the schedule rather than send another shape. */
		snprintf(msg, sizeof msg, "SCRIPT_ERROR: %s/%.64s.lua: not loaded",
			 h->kind == SCRIPT_FRONT ? "fronts" : "hooks", h->name);
		hook_failed(w, d, wk, msg, NULL);
		return 1;
	}
	if (!script_exists(w->scripts, h->kind, h->name)) {
		json_t *parsed = output ? json_loads(output, 0, NULL) : NULL;
		if (parsed)
			json_object_set_new(event, "output", parsed);
		o->body = json_dumps(event, JSON_COMPACT);
		o->len = o->body ? strlen(o->body) : 0;
		return 0;
	}
	json_t *out = NULL;
	struct script_ctx ctx = {0};
	struct script_json_field f = { .arg = 0, .key = "output", .text = output,
				       .len = output ? strlen(output) : 0, .container = 1 };
	struct script_rendered rb = { .key = "body" };
	if (script_call_fields(w->scripts, h->kind, h->name, h->fn, &event, 1, &f, 1, &rb, &ctx,
			       &out, err, sizeof err) < 0) {
		snprintf(msg, sizeof msg, "SCRIPT_ERROR: %s", err);
		hook_failed(w, d, wk, msg, o->version);
		return 1;
	}
	if (json_is_null(out)) {
		json_decref(out);
		free(rb.text);
		delivery_skipped(w, d, wk, o->version);
		return 1;
	}
	json_t *b = json_object_get(out, "body");
	if (rb.text) { /* a table (or number, boolean, null) body, already JSON text */
		o->body = rb.text;
		o->len = rb.len;
	} else if (json_is_string(b)) {
		o->len = json_string_length(b);
		o->body = malloc(o->len + 1);
		if (o->body)
			memcpy(o->body, json_string_value(b), o->len + 1);
	} else if (b) {
		o->body = json_dumps(b, JSON_COMPACT | JSON_ENCODE_ANY);
		o->len = o->body ? strlen(o->body) : 0;
	}
	char herr[400] = "";
	int bad = hook_headers(json_object_get(out, "headers"), o, herr, sizeof herr);
	json_decref(out);
	if (bad) {
		snprintf(msg, sizeof msg, "SCRIPT_ERROR: hooks/%.64s.lua: %s", h->name, herr);
		hook_failed(w, d, wk, msg, o->version);
		return 1;
	}
	if (!o->body) {
		delivery_failed(w, d, wk, 0, 0, "SCRIPT_ERROR: transform returned no body",
				-1, o->version, NULL, 0);
		return 1;
	}
	return 0;
}

/*
 * Step 4: scrubs the body of every configured secret (a hook may put
 * anything in it), then signs the scrubbed bytes: webhook-id,
 * webhook-timestamp, webhook-signature. Never sent unsigned: without a
 * signature the attempt is recorded as failed and nothing goes out (1).
 */
static int deliver_sign(struct worker *w, struct delivery *d, const struct work *wk,
			const struct config_customer *cust, struct outgoing *o)
{
	size_t n = 0;
	char *t = o->body ? scrub_dup(w->cfg->scrub, o->body, o->len, &n) : NULL;
	if (t) {
		free(o->body);
		o->body = t;
		o->len = n;
	}
	int64_t ts = loop_wall_ms() / 1000;
	char tss[24], sig[128];
	header_add(o, "webhook-id", d->id);
	header_add(o, "webhook-timestamp", decimal(ts, tss));
	if (!cust || !cust->webhook_secret ||
	    sign_webhook(cust->webhook_secret, d->id, ts, o->body, o->len, sig, sizeof sig) <= 0) {
		delivery_failed(w, d, wk, 0, 0, !cust || !cust->webhook_secret
				? "not signed, not sent: the customer has no webhook_secret"
				: "not signed, not sent: signing failed", -1, o->version, NULL, 0);
		return 1;
	}
	header_add(o, "webhook-signature", sig);
	if (!o->has_ct)
		o->hl = curl_slist_append(o->hl, "Content-Type: application/json");
	o->hl = curl_slist_append(o->hl, "Expect:");
	return 0;
}

static void deliver_done(void *arg, const struct fetch_response *res);

/*
 * Step 5: POSTs o to the delivery's URL through the URL guard, as a step
 * in flight that keeps the start of the body for the attempt's record. d's
 * url is taken (*d's is NULL after); o's headers and body are taken by the
 * fetch (sent without a copy).
 */
static void deliver_send(struct worker *w, struct delivery *d, const struct work *wk,
			 struct outgoing *o)
{
	size_t keep = o->len < ATTEMPT_BODY_KEEP ? o->len : ATTEMPT_BODY_KEEP;
	while (keep < o->len && keep > 0 && ((unsigned char)o->body[keep] & 0xC0) == 0x80)
		keep--; /* cut at a character boundary */
	struct deliver_step *ds = (struct deliver_step *)step_new(w, STEP_DELIVER, wk, NULL,
								  sizeof *ds + keep + 1);
	if (!ds) {
		delivery_failed(w, d, wk, 0, 0, "out of memory", -1, o->version, NULL, 0);
		return;
	}
	memcpy(ds->sent, o->body, keep);
	ds->sent_len = keep;
	copy_str(ds->base.version, sizeof ds->base.version, o->version);
	ds->d = *d;
	d->url = NULL; /* owned by ds now */
	struct fetch_request fr = {
		.method = "POST", .url = ds->d.url, .headers = o->hl, .owned_body = o->body,
		.body_len = o->len, .timeout_ms = (long)(w->cfg->webhook_timeout_s * 1000),
		.max_response = w->cfg->webhook_response_bytes, .guard = &w->guard,
		.proxy = w->cfg->webhook_proxy,
	};
	o->hl = NULL; /* both taken by fetch_start, started or not */
	o->body = NULL;
	metrics_inc(M_DELIVERY_ATTEMPTS);
	if (fetch_start(w->fetch, &fr, deliver_done, ds) < 0) {
		delivery_failed(w, &ds->d, wk, 0, 0, "cannot start request", -1, o->version, NULL, 0);
		free(ds->d.url);
		step_free(&ds->base);
	}
}

/*
 * Step 3, for a budget.warning (budget.h): the body is the one the job's
 * end made, kept in the job's "budget_warning" event with this delivery's
 * id, sent as it is: a customer's hook shapes job events only. 0 with
 * o->body; 1 when the attempt failed (recorded).
 */
static int deliver_warning_body(struct worker *w, struct delivery *d, const struct work *wk,
				struct outgoing *o)
{
	json_t *events = store_job_events(w->store, d->job_id), *ev, *body = NULL;
	size_t i;
	json_array_foreach(events, i, ev) {
		json_t *detail = json_object_get(ev, "detail");
		const char *kind = json_string_value(json_object_get(ev, "kind"));
		const char *id = json_string_value(json_object_get(detail, "delivery_id"));
		if (kind && strcmp(kind, "budget_warning") == 0 && id && strcmp(id, d->id) == 0) {
			body = json_copy(detail);
			break;
		}
	}
	json_decref(events);
	if (!body) {
		delivery_failed(w, d, wk, 0, 0, events ? "budget.warning: its event is gone"
				: "budget.warning: the store failed", -1, NULL, NULL, 0);
		return 1;
	}
	json_object_del(body, "delivery_id");
	o->body = json_dumps(body, JSON_COMPACT);
	o->len = o->body ? strlen(o->body) : 0;
	json_decref(body);
	if (!o->body) {
		delivery_failed(w, d, wk, 0, 0, "out of memory", -1, NULL, NULL, 0);
		return 1;
	}
	return 0;
}

void delivery_run(struct worker *w, const struct work *wk)
{
	struct delivery d;
	struct job j;
	struct outgoing o = {0};
	json_t *event = NULL;
	int rc;
	if (deliver_load(w, wk, &d, &j))
		return;
	log_ctx_job(j.id, j.customer, j.provider);
	const struct config_customer *cust = customers_by_name(w->customers, w->cfg, w->store, j.customer);
	if (strcmp(d.event, "budget.warning") == 0) {
		rc = deliver_warning_body(w, &d, wk, &o);
	} else {
		struct hook_choice h = deliver_hook(cust, &j);
		/* the job object without its output (a shallow copy, read only):
		 * deliver_body passes the stored text on */
		struct job bare = j;
		bare.output = NULL;
		event = job_to_json(&bare);
		json_object_set_new(event, "type", json_string(d.event));
		rc = deliver_body(w, &d, wk, &h, event, j.output, &o);
	}
	if (rc == 0 && deliver_sign(w, &d, wk, cust, &o) == 0)
		deliver_send(w, &d, wk, &o);
	outgoing_free(&o);
	free(d.url);
	json_decref(event);
	job_clear(&j);
}

/* The receiver's answer: 2xx delivers, anything else is a failed attempt. */
static void deliver_done(void *arg, const struct fetch_response *res)
{
	struct deliver_step *ds = arg;
	struct worker *w = ds->base.w;
	struct delivery *d = &ds->d;
	const struct work *wk = &ds->base.wk;
	metrics_delivery(res->error != NULL, res->status, res->total_ms);
	if (!res->error && res->status >= 200 && res->status < 300) {
		d->attempts++;
		copy_str(d->status, sizeof d->status, "delivered");
		d->next_at = 0;
		metrics_inc(M_DELIVERIES_OK);
		if (d->created_at > 0)
			metrics_result_to_webhook((double)(loop_wall_ms() - d->created_at) / 1000.0);
		if (store_begin(w->store) < 0 ||
		    store_attempt_insert(w->store, d->id, d->job_id, loop_wall_ms(), res->status,
					 res->total_ms, NULL, ds->base.version, ds->sent, ds->sent_len) < 0 ||
		    store_delivery_update(w->store, d) < 0 ||
		    store_work_done(w->store, wk->id) < 0 || store_commit(w->store) < 0) {
			store_rollback(w->store);
			metrics_inc(M_STORE_ERRORS);
		}
	} else {
		char why[256];
		if (res->error)
			snprintf(why, sizeof why, "%s", res->error);
		int64_t after = -1;
		char v[128];
		if (fetch_header(res->headers, res->headers_len, "retry-after", v, sizeof v) >= 0)
			after = retry_after_ms(v, loop_wall_ms() / 1000, 300000);
		delivery_failed(w, d, wk, res->status, res->total_ms, res->error ? why : NULL,
				after, ds->base.version, ds->sent, ds->sent_len);
	}
	free(d->url);
	step_free(&ds->base);
}

int delivery_redeliver(struct worker *w, struct delivery *d)
{
	int64_t now = loop_wall_ms();
	struct work wk = { .kind = WORK_DELIVER, .due_at = now };
	snprintf(wk.job_id, sizeof wk.job_id, "%s", d->job_id);
	snprintf(wk.ref, sizeof wk.ref, "%s", d->id);
	snprintf(d->status, sizeof d->status, "pending");
	d->next_at = now;
	if (store_begin(w->store) < 0)
		return -1;
	if (store_delivery_update(w->store, d) < 0 ||
	    store_work_add(w->store, d->job_id, WORK_DELIVER, d->id, now, w->owner,
			   now + ENGINE_LEASE_MS(w), &wk.id) < 0 || store_commit(w->store) < 0) {
		store_rollback(w->store);
		return -1;
	}
	engine_after_add_written(w, &wk); /* started after the store's commit */
	return 0;
}
