/*
 * runreq.c: the run request's parser and validator (rules in runreq.h).
 *
 * The body is validated in full but not built into a tree: `input` is kept
 * as the customer sent it (see jscan.h), so the ingest path parses nothing
 * twice.
 */
#include "runreq.h"

#include "buf.h"
#include "config.h"
#include "jscan.h"
#include "sign.h"
#include "urlguard.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Members jscan hands out: the four allowed and room to name an unknown
 * one; a body with more is refused by jscan itself. */
#define RUN_MEMBERS 8

static int fail(struct api_error *err, unsigned status, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int fail(struct api_error *err, unsigned status, const char *code, const char *fmt, ...)
{
	va_list ap;
	err->status = status;
	snprintf(err->code, sizeof err->code, "%s", code);
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof err->message, fmt, ap);
	va_end(ap);
	return -1;
}

/* 1 when s is 1..max bytes of printable ASCII without spaces. */
static int printable(const char *s, size_t max)
{
	size_t n = 0;
	for (; s[n]; n++)
		if ((unsigned char)s[n] < 0x21 || s[n] == 0x7f)
			return 0;
	return n > 0 && n <= max;
}

/* The model id's grammar, into *mid; 0, or -1 with err (404) filled. */
static int check_model(const char *model, struct modelid *mid, struct api_error *err)
{
	char why[300];
	if (printable(model, RUNREQ_MODEL_MAX) && modelid_parse(model, mid, why, sizeof why) == 0)
		return 0;
	return fail(err, 404, "MODEL_NOT_FOUND",
		    "invalid model id: %s (segments of letters, digits, '-', '_' and '.' "
		    "joined by '/', an optional ':version', an optional 'provider:' prefix)",
		    printable(model, RUNREQ_MODEL_MAX) ? why : "unprintable or too long");
}

/* The rules after the model's: webhook URL, its secret, the key. */
static int check_rest(struct runreq *out, const struct config_customer *c,
		      const struct urlguard_policy *guard, struct api_error *err)
{
	const char *url = out->run.webhook_url ? out->run.webhook_url : c->webhook_url;
	if (url) {
		char why[256];
		if (urlguard_check_url(guard, url, why, sizeof why) < 0)
			return fail(err, 400, "INVALID_REQUEST", "\"webhook_url\" refused: %s", why);
		if (!c->webhook_secret) /* deliveries are always signed */
			return fail(err, 400, "INVALID_REQUEST",
				    "\"webhook_url\" refused: the customer has no webhook_secret to sign deliveries with");
	}
	const char *idem = out->run.idem_key;
	if (idem && !printable(idem, RUNREQ_IDEM_MAX))
		return fail(err, 400, "INVALID_REQUEST",
			    "Idempotency-Key must be 1 to %d printable characters", RUNREQ_IDEM_MAX);
	out->webhook_url = url;
	return 0;
}

int runreq_check(struct runreq *out, const struct config_customer *c,
		 const struct urlguard_policy *guard, struct api_error *err)
{
	if (check_model(out->run.model, &out->mid, err) < 0)
		return -1;
	return check_rest(out, c, guard, err);
}

/* The wait the request asks for: "sync": true, then Prefer: wait[=N]. */
static double wait_asked(int sync, const char *prefer, double sync_wait_s)
{
	double wait_s = sync ? sync_wait_s : 0;
	if (prefer && strncmp(prefer, "wait", 4) == 0) {
		wait_s = sync_wait_s;
		if (prefer[4] == '=') {
			wait_s = strtod(prefer + 5, NULL);
			if (wait_s < 0 || wait_s != wait_s)
				wait_s = 0;
			if (wait_s > RUNREQ_WAIT_MAX_S)
				wait_s = RUNREQ_WAIT_MAX_S;
		}
	}
	return wait_s;
}

/* The members of the body into out->run and its buffers; 0, or -1 (400). */
static int parse_members(const struct jscan_member *m, size_t nm, struct runreq *out,
			 int *sync, struct api_error *err)
{
	const struct jscan_member *input = NULL, *hook_url = NULL, *track = NULL, *sy = NULL;
	for (size_t i = 0; i < nm; i++) {
		const struct jscan_member *x = &m[i];
		if (!x->key_too_long && strcmp(x->key, "input") == 0)
			input = x;
		else if (!x->key_too_long && strcmp(x->key, "webhook_url") == 0)
			hook_url = x;
		else if (!x->key_too_long && strcmp(x->key, "track_id") == 0)
			track = x;
		else if (!x->key_too_long && strcmp(x->key, "sync") == 0)
			sy = x;
		else
			return fail(err, 400, "INVALID_REQUEST",
				    "unknown field \"%.64s\" (allowed: input, webhook_url, track_id, sync)",
				    x->key);
	}
	if (!input)
		return fail(err, 400, "INVALID_REQUEST", "\"input\" is required");
	if (input->type != JSCAN_OBJECT)
		return fail(err, 400, "INVALID_REQUEST", "\"input\" must be an object");
	out->run.input = input->val;
	out->run.input_len = input->len;
	if (hook_url && hook_url->type != JSCAN_NULL) {
		if (hook_url->type != JSCAN_STRING)
			return fail(err, 400, "INVALID_REQUEST", "\"webhook_url\" must be a string");
		int ul = jscan_string(hook_url->val, hook_url->len, out->url_buf, sizeof out->url_buf);
		if (ul < 0 || ul > RUNREQ_URL_MAX)
			return fail(err, 400, "INVALID_REQUEST",
				    "\"webhook_url\" refused: longer than %d bytes", RUNREQ_URL_MAX);
		out->run.webhook_url = out->url_buf;
	}
	if (track && track->type != JSCAN_NULL) {
		int tl = track->type == JSCAN_STRING
			? jscan_string(track->val, track->len, out->track_buf, sizeof out->track_buf) : -1;
		/* a U+0000 inside would cut the id short: refused */
		if (tl <= 0 || tl > RUNREQ_TRACK_MAX || strlen(out->track_buf) != (size_t)tl)
			return fail(err, 400, "INVALID_REQUEST",
				    "\"track_id\" must be a string of 1 to %d bytes", RUNREQ_TRACK_MAX);
		out->run.track_id = out->track_buf;
	}
	if (sy && sy->type != JSCAN_TRUE && sy->type != JSCAN_FALSE)
		return fail(err, 400, "INVALID_REQUEST", "\"sync\" must be true or false");
	*sync = sy && sy->type == JSCAN_TRUE;
	return 0;
}

int runreq_parse(const char *body, size_t len, const struct runreq_ctx *ctx,
		 struct runreq *out, struct api_error *err)
{
	memset(&out->run, 0, sizeof out->run);
	out->webhook_url = NULL;
	out->run.model = ctx->model;
	if (check_model(ctx->model, &out->mid, err) < 0)
		return -1;
	struct jscan_member m[RUN_MEMBERS];
	size_t nm = 0, pos = 0;
	char why[128];
	if (jscan_object(body ? body : "", body ? len : 0, m, RUN_MEMBERS, &nm, why, sizeof why,
			 &pos) < 0)
		return fail(err, 400, "INVALID_REQUEST", "body is not a valid JSON object: %s (at byte %zu)",
			    why, pos);
	int sync = 0;
	if (parse_members(m, nm, out, &sync, err) < 0)
		return -1;
	out->run.wait_s = wait_asked(sync, ctx->prefer, ctx->sync_wait_s);
	out->run.idem_key = ctx->idem_key;
	out->run.idem_body = body;
	out->run.idem_body_len = len;
	return check_rest(out, ctx->customer, ctx->guard, err);
}

void runreq_idem_hash(const char *model, const char *body, size_t len, char *hex, size_t hexlen)
{
	unsigned char h[SIGN_SHA256_LEN];
	struct buf b;
	buf_init(&b, len + RUNREQ_MODEL_MAX + 2);
	buf_adds(&b, model);
	buf_add(&b, "\n", 1);
	buf_add(&b, body, len);
	sign_sha256(b.p, b.len, h);
	buf_free(&b);
	sign_hex_encode(h, sizeof h, hex, hexlen);
}
