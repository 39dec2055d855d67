/*
 * runreq.h: the run request of the unified API (POST /v1/models/{model}/run),
 * parsed and checked without any HTTP machinery: text and headers in, a
 * struct api_run or a documented error out. api.c calls it for every run,
 * front.c calls runreq_check for the runs a front maps, and the unit test
 * and the fuzz target call the same functions.
 *
 * The rules (docs/openapi.yaml, RunRequest):
 *   - {model}: the model id grammar (modelid.h), printable, at most 256
 *     bytes; else 404 MODEL_NOT_FOUND;
 *   - the body: one JSON object (jscan.h: strict RFC 8259, nesting bounded),
 *     members input (an object, required), webhook_url (null or a string of
 *     at most 2048 bytes), track_id (null or a string of 1 to 256 bytes, no
 *     U+0000), sync (true or false), nothing else; else 400 INVALID_REQUEST;
 *   - webhook_url, or the customer's configured one: the URL guard policy,
 *     and a customer webhook_secret to sign deliveries with; else 400;
 *   - Idempotency-Key: 1 to 255 printable ASCII characters; else 400;
 *   - "sync": true waits sync_wait_s; Prefer: wait waits sync_wait_s, and
 *     Prefer: wait=N waits N seconds, clamped to 0..300.
 * Resolving the model to providers and the budget are the ingest's
 * (ingest.c): they need the scripts and the store.
 */
#ifndef GENRELAY_RUNREQ_H
#define GENRELAY_RUNREQ_H

#include <stddef.h>

#include "modelid.h"

struct config_customer;
struct urlguard_policy;

#define RUNREQ_MODEL_MAX MODELID_MAX
#define RUNREQ_TRACK_MAX 256
#define RUNREQ_IDEM_MAX 255
#define RUNREQ_URL_MAX 2048
#define RUNREQ_WAIT_MAX_S 300
/* The hex SHA-256 an Idempotency-Key is stored with, and its NUL. */
#define RUNREQ_IDEM_HASH_LEN 65

/* A run to submit, already parsed (the unified API's body, or what a front
 * mapped a client's request to). Everything is borrowed for the call. */
struct api_run {
	const char *model;        /* model id or alias, as asked for */
	const char *input;        /* JSON object text */
	size_t input_len;
	const char *webhook_url;  /* NULL: the customer's configured one, if any */
	const char *track_id;     /* NULL: none */
	const char *hook;         /* NULL: the customer's hook (recorded on the job) */
	double wait_s;            /* > 0: answer once the job ends, or after this long */
	const char *idem_key;     /* Idempotency-Key, or NULL */
	const char *idem_body;    /* what the key's hash covers, with the model */
	size_t idem_body_len;
};

/* Why a run was refused: HTTP status, unified error code and message. */
struct api_error {
	unsigned status;
	char code[32];
	char message[512];
};

/* What a run request carries outside its body. All borrowed. */
struct runreq_ctx {
	const char *model;                      /* {model} of the path */
	const char *prefer;                     /* Prefer header, or NULL */
	const char *idem_key;                   /* Idempotency-Key header, or NULL */
	double sync_wait_s;                     /* jobs.sync_wait_s */
	const struct config_customer *customer; /* authenticated */
	const struct urlguard_policy *guard;    /* webhook URL policy */
};

/*
 * A run, parsed and checked. run's strings point into the body and the ctx
 * given to runreq_parse (which must outlive it) or into the buffers below.
 */
struct runreq {
	struct api_run run;
	struct modelid mid;         /* run.model parsed (points into it) */
	const char *webhook_url;    /* where deliveries go: run's, or the customer's; NULL: none */
	/* jscan_string wants room for one more UTF-8 sequence than it writes */
	char url_buf[RUNREQ_URL_MAX + 5];
	char track_buf[RUNREQ_TRACK_MAX + 5];
};

/*
 * Parses and checks a unified run request: body[0..len) (need not be
 * NUL-terminated; NULL when len is 0) with ctx. 0 with *out filled, or -1
 * with *err (status, code, message) filled; the checks run in the order of
 * the rules above, so the first broken rule is the one reported.
 */
int runreq_parse(const char *body, size_t len, const struct runreq_ctx *ctx,
		 struct runreq *out, struct api_error *err);

/*
 * Checks a run that did not come from a unified body (a front's): out->run
 * set by the caller; checks the model id, the webhook URL (run's, else the
 * customer's) and the Idempotency-Key, and sets out->mid and
 * out->webhook_url. 0, or -1 with *err filled.
 */
int runreq_check(struct runreq *out, const struct config_customer *c,
		 const struct urlguard_policy *guard, struct api_error *err);

/*
 * What an Idempotency-Key is stored with: the hex SHA-256 of the model, a
 * newline and the body, into hex (at least RUNREQ_IDEM_HASH_LEN bytes).
 */
void runreq_idem_hash(const char *model, const char *body, size_t len, char *hex, size_t hexlen);

#endif
