/*
 * fuzz_api.c: libFuzzer target for the run request of the API.
 *
 * The input is a run body. It goes through the functions POST
 * /v1/models/{model}/run uses, linked from the core:
 *
 *   0. jscan_object() (the validating scanner runreq_parse uses), checked
 *      against jansson: what jscan accepts, jansson must accept, and so
 *      must each member span;
 *   1. runreq_parse() under each webhook URL policy, with and without a
 *      customer webhook secret: a refusal is a documented status and code
 *      with a terminated message that never echoes URL userinfo; a looser
 *      policy accepts what a stricter one does;
 *   2. an accepted run agrees with jansson's reading of the body (only the
 *      documented members; input an object; webhook_url, track_id the
 *      decoded strings; the wait a documented value);
 *   3. a struct job filled from the run, job_to_json() and engine_job_arg()
 *      (what provider scripts get), each dumped and parsed back: the input
 *      survives the round trip unchanged.
 *
 * Build: tests/fuzz/CMakeLists.txt (clang, -fsanitize=fuzzer,address,undefined);
 * run: tests/fuzz/run-fuzzer api 60.
 */
#include "config.h"
#include "engine.h"
#include "job.h"
#include "jscan.h"
#include "runreq.h"
#include "urlguard.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Strictest first: each accepts a superset of the one before. */
static const struct urlguard_policy policies[] = {
	{ .require_https = 1, .allow_private = 0 },
	{ .require_https = 0, .allow_private = 0 },
	{ .require_https = 0, .allow_private = 1 },
};
#define NPOLICIES (sizeof policies / sizeof policies[0])

static struct config_customer signing = { .name = "acme", .webhook_secret = "whsec_x" };
static struct config_customer bare = { .name = "bare" };

/* text must parse back to something equal to want. */
static void round_trip(const char *text, const json_t *want)
{
	json_t *back = json_loads(text, 0, NULL);
	if (!back || !json_equal(back, want))
		abort();
	json_decref(back);
}

static void check_jscan(const uint8_t *data, size_t size)
{
	struct jscan_member m[8];
	size_t n = 0, pos = 0;
	char err[128];
	if (jscan_object((const char *)data, size, m, 8, &n, err, sizeof err, &pos) < 0) {
		if (pos > size)
			abort();
		return;
	}
	json_t *doc = json_loadb((const char *)data, size, 0, NULL);
	if (!json_is_object(doc))
		abort();
	json_decref(doc);
	for (size_t i = 0; i < n; i++) {
		json_t *v = json_loadb(m[i].val, m[i].len, JSON_DECODE_ANY, NULL);
		if (!v)
			abort();
		json_decref(v);
	}
}

/* A refusal: a documented status and code, a terminated message. */
static void check_refusal(const struct api_error *e)
{
	if (strnlen(e->message, sizeof e->message) == sizeof e->message ||
	    strnlen(e->code, sizeof e->code) == sizeof e->code)
		abort();
	if (e->status == 400 ? strcmp(e->code, "INVALID_REQUEST") != 0
	    : e->status == 404 ? strcmp(e->code, "MODEL_NOT_FOUND") != 0 : 1)
		abort();
	if (strncmp(e->message, "\"webhook_url\" refused", 21) == 0 && strstr(e->message, "hunter2"))
		abort(); /* URL userinfo is never echoed */
}

/* An accepted run says what jansson reads in the same body. */
static void check_accepted(const struct runreq *rq, const uint8_t *data, size_t size)
{
	/* jscan refused duplicate top-level members; nested ones: the last wins */
	json_t *body = json_loadb((const char *)data, size, 0, NULL);
	if (!json_is_object(body))
		abort();
	const char *key;
	json_t *v;
	json_object_foreach(body, key, v) {
		if (strcmp(key, "input") && strcmp(key, "webhook_url") && strcmp(key, "track_id") &&
		    strcmp(key, "sync"))
			abort();
	}
	json_t *input = json_object_get(body, "input");
	json_t *hook = json_object_get(body, "webhook_url");
	json_t *track = json_object_get(body, "track_id");
	json_t *sync = json_object_get(body, "sync");
	if (!json_is_object(input) || (sync && !json_is_boolean(sync)))
		abort();
	json_t *span = json_loadb(rq->run.input, rq->run.input_len, 0, NULL);
	if (!span || !json_equal(span, input))
		abort();
	json_decref(span);
	if (json_is_string(hook) ? !rq->run.webhook_url ||
					   strcmp(rq->run.webhook_url, json_string_value(hook)) != 0
				 : rq->run.webhook_url != NULL)
		abort();
	if (json_is_string(track)
		    ? !rq->run.track_id || strcmp(rq->run.track_id, json_string_value(track)) != 0 ||
			      json_string_length(track) == 0 || json_string_length(track) > RUNREQ_TRACK_MAX
		    : rq->run.track_id != NULL)
		abort();
	if (rq->run.wait_s != (json_is_true(sync) ? 55.0 : 0.0))
		abort();
	json_decref(body);
}

/* The job built from an accepted run survives every JSON view of it. */
static void check_job(const struct runreq *rq)
{
	json_t *input = json_loadb(rq->run.input, rq->run.input_len, 0, NULL);
	if (!input)
		abort();
	struct job j;
	memset(&j, 0, sizeof j);
	snprintf(j.id, sizeof j.id, "job_fuzz");
	j.customer = strdup("acme");
	j.model_id = strdup(rq->run.model);
	j.targets = strdup("[\"fal:fal-ai/flux/dev\"]");
	j.provider = strdup("fal");
	j.model = strdup("fal-ai/flux/dev");
	j.status = JOB_QUEUED;
	j.track_id = rq->run.track_id ? strdup(rq->run.track_id) : NULL;
	j.input = strndup(rq->run.input, rq->run.input_len);
	j.webhook_url = rq->webhook_url ? strdup(rq->webhook_url) : NULL;
	j.created_at = j.updated_at = 1700000000000LL;

	json_t *obj = job_to_json(&j);
	char *text = json_dumps(obj, JSON_COMPACT);
	if (!text)
		abort();
	round_trip(text, obj);
	if (j.track_id && strcmp(json_string_value(json_object_get(obj, "track_id")), j.track_id) != 0)
		abort();
	free(text);
	json_decref(obj);

	json_t *arg = engine_job_arg(&j);
	if (!json_equal(json_object_get(arg, "input"), input))
		abort();
	json_decref(arg);

	/* What a terminal job carries back: output and error survive too. */
	j.status = JOB_SUCCEEDED;
	j.output = json_dumps(input, JSON_COMPACT | JSON_ENCODE_ANY);
	j.completed_at = j.created_at + 1;
	obj = job_to_json(&j);
	text = json_dumps(obj, JSON_COMPACT);
	if (!text)
		abort();
	round_trip(text, obj);
	free(text);
	json_decref(obj);
	job_clear(&j);
	json_decref(input);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_jscan(data, size);
	static struct runreq rq; /* ~2 KiB: off the stack */
	struct api_error err;
	struct runreq_ctx ctx = {
		.model = "fal-ai/flux/dev",
		.sync_wait_s = 55,
		.customer = &signing,
	};
	int prev = -1;
	for (size_t i = 0; i < NPOLICIES; i++) {
		ctx.guard = &policies[i];
		memset(&err, 'x', sizeof err);
		int rc = runreq_parse((const char *)data, size, &ctx, &rq, &err);
		if (rc != 0 && rc != -1)
			abort();
		if (rc < 0)
			check_refusal(&err);
		if (prev == 0 && rc != 0)
			abort(); /* a looser policy refused what a stricter one took */
		prev = rc;
	}
	if (prev != 0)
		return 0;
	check_accepted(&rq, data, size);
	check_job(&rq);
	/* Without a webhook secret, a run with a webhook is refused, others are not. */
	ctx.customer = &bare;
	int rc = runreq_parse((const char *)data, size, &ctx, &rq, &err);
	if (rq.run.webhook_url ? rc != -1 || !strstr(err.message, "webhook_secret") : rc != 0)
		abort();
	return 0;
}
