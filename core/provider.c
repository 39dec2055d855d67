/*
 * provider.c: the engine's calls to a provider (engine_int.h): an adapter
 * function called for a job with its ctx (callback URL, the job's pool key),
 * a script's request table turned into a fetch on the worker's loop, and a
 * fetch's answer turned into the `res` table scripts get.
 *
 * Layer (engine_int.h): calls engine_work.c only; called by steps.c.
 */
#include "config.h"
#include "engine_int.h"
#include "fetch.h"
#include "keypool.h"
#include "metrics.h"
#include "retry.h"
#include "script.h"
#include "sign.h"
#include "worker.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PROVIDER_TIMEOUT_MS 30000
#define PROVIDER_RESPONSE_MAX (4 << 20)
#define RETRY_AFTER_MAX_MS 300000  /* cap on a provider's Retry-After */

/* ---------- requests and answers ---------- */

/*
 * The callback URL of job j into out. The token (an HMAC of the job id) is
 * made once per step and kept in st: every provider call of the step (submit
 * and on_submitted, or poll and on_polled) is for the same job.
 */
static void callback_url(struct step *st, const struct job *j, char *out, size_t outlen)
{
	struct worker *w = st->w;
	char own[40];
	int mine = st->job.id[0] && strcmp(st->job.id, j->id) == 0;
	char *token = mine ? st->cb_token : own;
	if (!mine || !token[0]) {
		if (sign_callback_token(w->server_secret, j->id, token, sizeof own) < 0)
			snprintf(token, sizeof own, "invalid");
	}
	snprintf(out, outlen, "%s/v1/callbacks/%s/%s/%s", w->cfg->public_url,
		 j->provider ? j->provider : "none", j->id, token);
}

static void add_header(void *arg, const char *name, const char *value)
{
	json_object_set_new(arg, name, json_stringn_nocheck(value, strlen(value)));
}

/* The `res` table handed to scripts for a provider's answer. Caller owns. */
json_t *provider_response_arg(const struct fetch_response *res)
{
	json_t *o = json_object(), *h = json_object();
	json_object_set_new(o, "status", json_integer(res->status));
	const char *url = res->url ? res->url : "";
	json_object_set_new(o, "url", json_stringn_nocheck(url, strlen(url))); /* bytes, as the body */
	fetch_each_header(res->headers, res->headers_len, add_header, h);
	json_object_set_new(o, "headers", h);
	json_object_set_new(o, "body", json_stringn_nocheck(res->body, res->body_len));
	json_t *parsed = res->body_len ? json_loadb(res->body, res->body_len,
						    JSON_DECODE_ANY, NULL) : NULL;
	if (parsed)
		json_object_set_new(o, "json", parsed);
	return o;
}

void provider_describe(const struct fetch_response *res, char *out, size_t outlen)
{
	if (res->error)
		snprintf(out, outlen, "%s", res->error);
	else
		snprintf(out, outlen, "HTTP %ld", res->status);
}

int64_t provider_retry_after(const struct fetch_response *res)
{
	char v[128];
	if (fetch_header(res->headers, res->headers_len, "retry-after", v, sizeof v) < 0)
		return -1;
	return retry_after_ms(v, loop_wall_ms() / 1000, RETRY_AFTER_MAX_MS);
}

static int header_ok(const char *s)
{
	for (; *s; s++)
		if (*s == '\r' || *s == '\n')
			return 0;
	return 1;
}

/*
 * Turns a script's request table ({method?, url, headers?, body?}) into a
 * fetch started for st (borrowed by the fetch until cb ran). Returns 0, or
 * -1 with err (cb is then never called; st is still the caller's).
 */
int provider_request_start(struct step *st, json_t *req, fetch_done_cb cb,
			 char *err, size_t errlen)
{
	struct worker *w = st->w;
	const char *provider = st->job.provider;
	if (!json_is_object(req)) {
		snprintf(err, errlen, "%s: request must be a table", provider);
		return -1;
	}
	const char *url = json_string_value(json_object_get(req, "url"));
	const char *method = json_string_value(json_object_get(req, "method"));
	json_t *body = json_object_get(req, "body");
	if (!url || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)) {
		snprintf(err, errlen, "%s: request.url must be an http(s) URL", provider);
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
				 provider, k);
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
		.proxy = json_string_value(json_object_get(config_provider(w->cfg, provider), "proxy")),
	};
	int rc = fetch_start(w->fetch, &fr, cb, st);
	free(text);
	if (rc < 0) {
		snprintf(err, errlen, "cannot start request");
		return -1;
	}
	return 0;
}

/* ---------- key pools ---------- */

/* The id of the pool key a job took (its data's "key_id") into id; "" none. */
void provider_key_id(const struct job *j, char *id, size_t idlen)
{
	json_t *d = j->data && strstr(j->data, "\"key_id\"") ? json_loads(j->data, 0, NULL) : NULL;
	const char *v = json_string_value(json_object_get(d, "key_id"));
	snprintf(id, idlen, "%s", v ? v : "");
	json_decref(d);
}

/* The job's key from its provider's pool (borrowed from the config), or
 * NULL: no pool, or the config no longer has the job's key (the adapter then
 * reads the settings' `key`). */
static const char *pool_key(struct worker *w, const struct job *j)
{
	json_t *ps = config_provider(w->cfg, j->provider);
	char id[KEYPOOL_ID_MAX];
	if (!keypool_size(ps))
		return NULL;
	provider_key_id(j, id, sizeof id);
	return id[0] ? keypool_key(ps, id) : NULL;
}

/* A usable key remains in the provider's pool now (1), else 0. A key at
 * its max_inflight counts as usable: a slot frees when a job ends. */
int provider_pool_has_usable(const char *provider, const json_t *ps)
{
	char id[KEYPOOL_ID_MAX];
	int64_t wait;
	int rc = keypool_pick(provider, ps, loop_wall_ms(), 0, id, sizeof id, &wait);
	return rc == 0 || rc == -2;
}

/*
 * Calls the adapter's fn for job j (the step's job, or its row re-read):
 * fn(job, ctx), or fn(first, job, ctx) when first is given (borrowed).
 * 0 with *out (caller owns), or <0 with err (counted as a script error).
 */
int provider_call(struct step *st, const struct job *j, const char *fn,
			 json_t *first, json_t **out, char *err, size_t errlen)
{
	struct worker *w = st->w;
	char cb_url[512];
	json_t *jarg = step_job_arg(st, j);
	json_t *args[2];
	size_t nargs = 0;
	if (first)
		args[nargs++] = first;
	args[nargs++] = jarg;
	struct script_provider_info info;
	script_provider_info(w->scripts, j->provider, &info);
	if (info.callbacks)
		callback_url(st, j, cb_url, sizeof cb_url);
	/* providers.NAME.callbacks = false: poll only, no callback URL sent. */
	struct script_ctx ctx = { .provider = j->provider,
				  .callback_url = info.callbacks ? cb_url : NULL, .keys = NULL,
				  .key = pool_key(w, j) };
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
