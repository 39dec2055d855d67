/*
 * test_runreq.c: the run request's parser and validator (core/runreq.c):
 * every documented refusal of a bad run (docs/openapi.yaml, RunRequest;
 * DESIGN.md's error codes) with its status and code, the order the rules
 * are checked in, and good bodies parsed into the right fields.
 */
#include "runreq.h"
#include "check.h"
#include "config.h"
#include "urlguard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct urlguard_policy strict = { .require_https = 1, .allow_private = 0 };
static const struct urlguard_policy loose = { .require_https = 0, .allow_private = 1 };

static struct config_customer signing = { .name = "acme", .webhook_secret = "whsec_x" };
static struct config_customer unsigned_ = { .name = "bare" };

static struct runreq_ctx ctx_for(const char *model)
{
	struct runreq_ctx c = {
		.model = model,
		.sync_wait_s = 55,
		.customer = &signing,
		.guard = &strict,
	};
	return c;
}

static struct runreq rq;
static struct api_error err;

static int parse_ctx(const struct runreq_ctx *c, const char *body)
{
	memset(&err, 0, sizeof err);
	return runreq_parse(body, body ? strlen(body) : 0, c, &rq, &err);
}

static int parse(const char *body)
{
	struct runreq_ctx c = ctx_for("fal-ai/flux/dev");
	return parse_ctx(&c, body);
}

/* body is refused with status and code, and message contains what. */
#define REFUSED(rc_expr, st, cd, what)                                            \
	do {                                                                    \
		CHECK_EQ_INT((rc_expr), -1);                                     \
		CHECK_EQ_INT(err.status, (st));                                 \
		CHECK_STR_EQ(err.code, (cd));                                   \
		CHECK(strstr(err.message, (what)) != NULL);                     \
		if (!strstr(err.message, (what)))                               \
			fprintf(stderr, "    message: %s\n", err.message);    \
	} while (0)

static void test_model(void)
{
	struct runreq_ctx c = ctx_for("fal-ai//dev");
	REFUSED(parse_ctx(&c, "{\"input\":{}}"), 404, "MODEL_NOT_FOUND", "invalid model id");
	c.model = "a b";
	REFUSED(parse_ctx(&c, "{\"input\":{}}"), 404, "MODEL_NOT_FOUND", "unprintable or too long");
	char longm[RUNREQ_MODEL_MAX + 2];
	memset(longm, 'm', sizeof longm - 1);
	longm[sizeof longm - 1] = '\0';
	c.model = longm;
	REFUSED(parse_ctx(&c, "{\"input\":{}}"), 404, "MODEL_NOT_FOUND", "unprintable or too long");
	c.model = "../etc/passwd";
	REFUSED(parse_ctx(&c, "{\"input\":{}}"), 404, "MODEL_NOT_FOUND", "invalid model id");
	/* The model is checked before the body: a bad model with a bad body is a 404. */
	c.model = "fal-ai//dev";
	REFUSED(parse_ctx(&c, "not json"), 404, "MODEL_NOT_FOUND", "invalid model id");
	/* A provider prefix is parsed into mid. */
	c.model = "fal:fal-ai/flux/dev";
	CHECK_EQ_INT(parse_ctx(&c, "{\"input\":{}}"), 0);
	CHECK_STR_EQ(rq.mid.provider, "fal");
	CHECK_STR_EQ(rq.mid.model, "fal-ai/flux/dev");
	CHECK_STR_EQ(rq.run.model, "fal:fal-ai/flux/dev");
}

static void test_body_json(void)
{
	const char *bad[] = {
		NULL, "", "   ", "null", "[]", "[{\"input\":{}}]", "\"input\"", "42",
		"{\"input\":{}", "{\"input\":{}}}", "{\"input\":{},}", "{'input':{}}",
		"{\"input\":{\"a\":NaN}}", "{\"input\":{\"a\":Infinity}}", "{\"input\":{\"a\":0x10}}",
		"{\"input\":{\"a\":\"\\u0000\"}}", "{\"input\":{\"a\":\"\xff\"}}",
		"{\"input\":{},\"input\":{}}", /* duplicate member */
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		REFUSED(parse(bad[i]), 400, "INVALID_REQUEST", "body is not a valid JSON object");
		CHECK(strstr(err.message, "(at byte ") != NULL);
	}
	/* Nesting deeper than the bound is refused, whatever the member. */
	size_t depth = 200;
	char *deep = malloc(depth * 2 + 32);
	size_t n = 0;
	n += (size_t)sprintf(deep, "{\"input\":");
	for (size_t i = 0; i < depth; i++)
		deep[n++] = '[';
	for (size_t i = 0; i < depth; i++)
		deep[n++] = ']';
	deep[n++] = '}';
	deep[n] = '\0';
	REFUSED(parse(deep), 400, "INVALID_REQUEST", "body is not a valid JSON object");
	free(deep);
	/* ... and a value as deep as allowed is taken. */
	char ok[512];
	n = (size_t)sprintf(ok, "{\"input\":{\"a\":");
	for (int i = 0; i < 60; i++)
		ok[n++] = '[';
	for (int i = 0; i < 60; i++)
		ok[n++] = ']';
	ok[n++] = '}';
	ok[n++] = '}';
	ok[n] = '\0';
	CHECK_EQ_INT(parse(ok), 0);
}

static void test_fields(void)
{
	REFUSED(parse("{\"input\":{},\"prompt\":\"x\"}"), 400, "INVALID_REQUEST", "unknown field \"prompt\"");
	REFUSED(parse("{\"Input\":{}}"), 400, "INVALID_REQUEST", "unknown field");
	char longkey[200];
	snprintf(longkey, sizeof longkey, "{\"input\":{},\"%0100d\":1}", 0);
	REFUSED(parse(longkey), 400, "INVALID_REQUEST", "unknown field");
	REFUSED(parse("{}"), 400, "INVALID_REQUEST", "\"input\" is required");
	REFUSED(parse("{\"webhook_url\":null}"), 400, "INVALID_REQUEST", "\"input\" is required");
	const char *not_obj[] = { "[]", "null", "\"x\"", "1", "true" };
	for (size_t i = 0; i < sizeof not_obj / sizeof not_obj[0]; i++) {
		char b[64];
		snprintf(b, sizeof b, "{\"input\":%s}", not_obj[i]);
		REFUSED(parse(b), 400, "INVALID_REQUEST", "\"input\" must be an object");
	}
	REFUSED(parse("{\"input\":{},\"webhook_url\":1}"), 400, "INVALID_REQUEST",
		"\"webhook_url\" must be a string");
	REFUSED(parse("{\"input\":{},\"webhook_url\":{}}"), 400, "INVALID_REQUEST",
		"\"webhook_url\" must be a string");
	const char *bad_track[] = { "\"\"", "1", "[]", "true", "{}" };
	for (size_t i = 0; i < sizeof bad_track / sizeof bad_track[0]; i++) {
		char b[64];
		snprintf(b, sizeof b, "{\"input\":{},\"track_id\":%s}", bad_track[i]);
		REFUSED(parse(b), 400, "INVALID_REQUEST", "\"track_id\" must be a string of 1 to 256 bytes");
	}
	char track[300];
	int tn = snprintf(track, sizeof track, "{\"input\":{},\"track_id\":\"");
	memset(track + tn, 't', 257);
	snprintf(track + tn + 257, sizeof track - (size_t)tn - 257, "\"}");
	REFUSED(parse(track), 400, "INVALID_REQUEST", "\"track_id\" must be a string");
	snprintf(track + tn + 256, sizeof track - (size_t)tn - 256, "\"}");
	CHECK_EQ_INT(parse(track), 0);
	if (err.status)
		fprintf(stderr, "    message: %s\n", err.message);
	CHECK_EQ_INT(strlen(rq.run.track_id), 256);
	/* No U+0000 anywhere, so a track id is never cut short. */
	REFUSED(parse("{\"input\":{},\"track_id\":\"a\\u0000b\"}"), 400, "INVALID_REQUEST",
		"not allowed in a string");
	const char *bad_sync[] = { "1", "0", "\"true\"", "null", "{}" };
	for (size_t i = 0; i < sizeof bad_sync / sizeof bad_sync[0]; i++) {
		char b[64];
		snprintf(b, sizeof b, "{\"input\":{},\"sync\":%s}", bad_sync[i]);
		REFUSED(parse(b), 400, "INVALID_REQUEST", "\"sync\" must be true or false");
	}
}

static void test_webhook(void)
{
	REFUSED(parse("{\"input\":{},\"webhook_url\":\"http://example.com/h\"}"), 400,
		"INVALID_REQUEST", "\"webhook_url\" refused");
	REFUSED(parse("{\"input\":{},\"webhook_url\":\"https://127.0.0.1/h\"}"), 400,
		"INVALID_REQUEST", "\"webhook_url\" refused");
	REFUSED(parse("{\"input\":{},\"webhook_url\":\"https://0x7f000001/h\"}"), 400,
		"INVALID_REQUEST", "\"webhook_url\" refused");
	REFUSED(parse("{\"input\":{},\"webhook_url\":\"https://user:hunter2@example.com/\"}"), 400,
		"INVALID_REQUEST", "\"webhook_url\" refused");
	CHECK(strstr(err.message, "hunter2") == NULL);
	REFUSED(parse("{\"input\":{},\"webhook_url\":\"ftp://example.com/\"}"), 400,
		"INVALID_REQUEST", "\"webhook_url\" refused");
	/* Over 2048 bytes once decoded. */
	size_t big = RUNREQ_URL_MAX + 64;
	char *b = malloc(big + 64);
	int n = sprintf(b, "{\"input\":{},\"webhook_url\":\"https://example.com/");
	memset(b + n, 'p', RUNREQ_URL_MAX);
	strcpy(b + n + RUNREQ_URL_MAX, "\"}");
	REFUSED(parse(b), 400, "INVALID_REQUEST", "\"webhook_url\" refused: longer than 2048 bytes");
	free(b);
	/* Under a looser policy the same private http URL is taken. */
	struct runreq_ctx c = ctx_for("fal-ai/flux/dev");
	c.guard = &loose;
	CHECK_EQ_INT(parse_ctx(&c, "{\"input\":{},\"webhook_url\":\"http://127.0.0.1:9/h\"}"), 0);
	CHECK_STR_EQ(rq.webhook_url, "http://127.0.0.1:9/h");
	/* Deliveries are always signed: no webhook_secret, no webhook. */
	c = ctx_for("fal-ai/flux/dev");
	c.customer = &unsigned_;
	REFUSED(parse_ctx(&c, "{\"input\":{},\"webhook_url\":\"https://example.com/h\"}"), 400,
		"INVALID_REQUEST", "no webhook_secret");
	CHECK_EQ_INT(parse_ctx(&c, "{\"input\":{}}"), 0);
	CHECK(rq.webhook_url == NULL);
	/* null is "none": the customer's configured webhook, checked the same way. */
	struct config_customer with_url = signing;
	with_url.webhook_url = "https://hooks.example.com/acme";
	c = ctx_for("fal-ai/flux/dev");
	c.customer = &with_url;
	CHECK_EQ_INT(parse_ctx(&c, "{\"input\":{},\"webhook_url\":null}"), 0);
	CHECK(rq.run.webhook_url == NULL);
	CHECK_STR_EQ(rq.webhook_url, "https://hooks.example.com/acme");
	CHECK_EQ_INT(parse_ctx(&c, "{\"input\":{},\"webhook_url\":\"https://example.com/own\"}"), 0);
	CHECK_STR_EQ(rq.webhook_url, "https://example.com/own");
	with_url.webhook_url = "https://10.0.0.1/acme";
	REFUSED(parse_ctx(&c, "{\"input\":{}}"), 400, "INVALID_REQUEST", "\"webhook_url\" refused");
	with_url.webhook_url = "https://hooks.example.com/acme";
	with_url.webhook_secret = NULL;
	REFUSED(parse_ctx(&c, "{\"input\":{}}"), 400, "INVALID_REQUEST", "no webhook_secret");
}

static void test_idempotency_key(void)
{
	struct runreq_ctx c = ctx_for("fal-ai/flux/dev");
	const char *bad[] = { "", "has space", "tab\there", "del\x7f" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		c.idem_key = bad[i];
		REFUSED(parse_ctx(&c, "{\"input\":{}}"), 400, "INVALID_REQUEST",
			"Idempotency-Key must be 1 to 255 printable characters");
	}
	char key[RUNREQ_IDEM_MAX + 2];
	memset(key, 'k', sizeof key - 1);
	key[sizeof key - 1] = '\0';
	c.idem_key = key;
	REFUSED(parse_ctx(&c, "{\"input\":{}}"), 400, "INVALID_REQUEST", "Idempotency-Key");
	key[RUNREQ_IDEM_MAX] = '\0';
	CHECK_EQ_INT(parse_ctx(&c, "{\"input\":{}}"), 0);
	CHECK(rq.run.idem_key == key);
	/* The body rules come first: a bad body with a bad key is about the body. */
	c.idem_key = "has space";
	REFUSED(parse_ctx(&c, "{}"), 400, "INVALID_REQUEST", "\"input\" is required");
}

static void test_wait(void)
{
	struct runreq_ctx c = ctx_for("fal-ai/flux/dev");
	CHECK_EQ_INT(parse_ctx(&c, "{\"input\":{}}"), 0);
	CHECK(rq.run.wait_s == 0);
	CHECK_EQ_INT(parse_ctx(&c, "{\"input\":{},\"sync\":false}"), 0);
	CHECK(rq.run.wait_s == 0);
	CHECK_EQ_INT(parse_ctx(&c, "{\"input\":{},\"sync\":true}"), 0);
	CHECK(rq.run.wait_s == 55);
	struct { const char *prefer; double want; } cases[] = {
		{ "wait", 55 }, { "wait=10", 10 }, { "wait=2.5", 2.5 }, { "wait=1000", 300 },
		{ "wait=-5", 0 }, { "wait=nan", 0 }, { "respond-async", 0 },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		c.prefer = cases[i].prefer;
		CHECK_EQ_INT(parse_ctx(&c, "{\"input\":{}}"), 0);
		CHECK(rq.run.wait_s == cases[i].want);
		if (rq.run.wait_s != cases[i].want)
			fprintf(stderr, "    Prefer: %s gave %g\n", cases[i].prefer, rq.run.wait_s);
	}
	/* Prefer wins over "sync". */
	c.prefer = "wait=3";
	CHECK_EQ_INT(parse_ctx(&c, "{\"input\":{},\"sync\":true}"), 0);
	CHECK(rq.run.wait_s == 3);
}

static void test_good(void)
{
	struct runreq_ctx c = ctx_for("flux-dev");
	c.idem_key = "order-1234";
	const char *body = " { \"track_id\" : \"order-\\u00e9\\/1\", \"input\" : {\"prompt\": \"a \\\"lighthouse\\\"\", "
			   "\"n\": [1, 2.5e3, true, null]} ,\"webhook_url\":\"https:\\/\\/example.com/hook?a=1\","
			   "\"sync\":false } ";
	CHECK_EQ_INT(parse_ctx(&c, body), 0);
	CHECK_STR_EQ(rq.run.model, "flux-dev");
	CHECK_STR_EQ(rq.mid.provider, "");
	/* input is the customer's text, byte for byte, pointing into the body */
	const char *want = "{\"prompt\": \"a \\\"lighthouse\\\"\", \"n\": [1, 2.5e3, true, null]}";
	CHECK_EQ_INT(rq.run.input_len, strlen(want));
	CHECK(rq.run.input >= body && rq.run.input < body + strlen(body));
	CHECK(strncmp(rq.run.input, want, rq.run.input_len) == 0);
	CHECK_STR_EQ(rq.run.webhook_url, "https://example.com/hook?a=1");
	CHECK_STR_EQ(rq.webhook_url, "https://example.com/hook?a=1");
	CHECK_STR_EQ(rq.run.track_id, "order-\xc3\xa9/1");
	CHECK(rq.run.hook == NULL);
	CHECK(rq.run.wait_s == 0);
	CHECK_STR_EQ(rq.run.idem_key, "order-1234");
	CHECK(rq.run.idem_body == body);
	CHECK_EQ_INT(rq.run.idem_body_len, strlen(body));

	/* The smallest run: no webhook, no track id. */
	CHECK_EQ_INT(parse("{\"input\":{}}"), 0);
	CHECK(rq.run.webhook_url == NULL && rq.webhook_url == NULL && rq.run.track_id == NULL);
	CHECK(rq.run.idem_key == NULL);
	CHECK_EQ_INT(rq.run.input_len, 2);
	CHECK(strncmp(rq.run.input, "{}", 2) == 0);
	/* A body need not be NUL-terminated: only len bytes are read. */
	char nonterm[] = "{\"input\":{\"a\":1}}GARBAGE";
	memset(&err, 0, sizeof err);
	struct runreq_ctx c2 = ctx_for("fal-ai/flux/dev");
	CHECK_EQ_INT(runreq_parse(nonterm, 17, &c2, &rq, &err), 0);
	CHECK_EQ_INT(rq.run.input_len, 7);
}

/* A front's run: the same rules through runreq_check. */
static void test_check(void)
{
	struct runreq f = { .run = { .model = "fal-ai/flux/dev", .input = "{}", .input_len = 2 } };
	CHECK_EQ_INT(runreq_check(&f, &signing, &strict, &err), 0);
	CHECK(f.webhook_url == NULL);
	f.run.model = "bad model";
	REFUSED(runreq_check(&f, &signing, &strict, &err), 404, "MODEL_NOT_FOUND", "invalid model id");
	f.run.model = "krea:bfl/flux-1-dev";
	CHECK_EQ_INT(runreq_check(&f, &signing, &strict, &err), 0);
	CHECK_STR_EQ(f.mid.provider, "krea");
	f.run.webhook_url = "http://example.com/";
	REFUSED(runreq_check(&f, &signing, &strict, &err), 400, "INVALID_REQUEST", "\"webhook_url\" refused");
	f.run.webhook_url = "https://example.com/";
	REFUSED(runreq_check(&f, &unsigned_, &strict, &err), 400, "INVALID_REQUEST", "no webhook_secret");
	CHECK_EQ_INT(runreq_check(&f, &signing, &strict, &err), 0);
	CHECK_STR_EQ(f.webhook_url, "https://example.com/");
	f.run.idem_key = "two words";
	REFUSED(runreq_check(&f, &signing, &strict, &err), 400, "INVALID_REQUEST", "Idempotency-Key");
}

static void test_idem_hash(void)
{
	char a[RUNREQ_IDEM_HASH_LEN], b[RUNREQ_IDEM_HASH_LEN], c[RUNREQ_IDEM_HASH_LEN];
	runreq_idem_hash("m", "{\"input\":{}}", 12, a, sizeof a);
	runreq_idem_hash("m", "{\"input\":{}}", 12, b, sizeof b);
	runreq_idem_hash("n", "{\"input\":{}}", 12, c, sizeof c);
	CHECK_EQ_INT(strlen(a), 64);
	CHECK_STR_EQ(a, b);
	CHECK(strcmp(a, c) != 0);
	/* SHA-256 of "m\n{}" */
	runreq_idem_hash("m", "{}", 2, a, sizeof a);
	CHECK_STR_EQ(a, "53f5bc66f51dc3acd573484a5458a0df968e94c0867cec8bd26380f76270f981");
}

int main(void)
{
	test_model();
	test_body_json();
	test_fields();
	test_webhook();
	test_idempotency_key();
	test_wait();
	test_good();
	test_check();
	test_idem_hash();
	return check_done();
}
