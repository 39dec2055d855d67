/*
 * callbacks.h: inbound provider callbacks,
 * POST /v1/callbacks/{provider}/{job_id}/{token}.
 *
 * The per-job token proves the URL came from genrelay; the provider's own
 * signature (the adapter's verify()) is checked where it signs. The job is
 * changed through jobflow (re-read inside the transaction), so a duplicate
 * or late callback never moves a job out of a terminal state: it is
 * recorded and acknowledged.
 *
 * The request table a script gets and the verify/parse path are plain
 * functions (callbacks_request_arg, callbacks_parse), with no HTTP server in
 * their signature: the handler and the fuzzer call the same code.
 */
#ifndef GENRELAY_CALLBACKS_H
#define GENRELAY_CALLBACKS_H

#include <jansson.h>
#include <stddef.h>

struct request;
struct script_host;
struct worker;

/* One header or query argument of a request; both strings borrowed. */
struct callbacks_field {
	const char *name;
	const char *value;
};

/*
 * The `req` table handed to verify() and on_callback(): {headers (names
 * lower-cased), query, body, json (the body parsed, when it is JSON)}.
 * Everything is copied; caller owns the result.
 */
json_t *callbacks_request_arg(const struct callbacks_field *headers, size_t nheaders,
			      const struct callbacks_field *query, size_t nquery,
			      const char *body, size_t body_len);

enum callbacks_verdict {
	CALLBACKS_RESULT = 0,        /* *res holds on_callback's result */
	CALLBACKS_SCRIPT_ERROR = -1, /* on_callback raised or broke a limit: err */
	CALLBACKS_REFUSED = -2,      /* verify() said no (or raised): err says why */
};

/*
 * Runs provider's verify(req, ctx, job) when its adapter has one, then
 * on_callback(req, job, ctx). req and job (the job table) are borrowed;
 * keys is the provider's JWKS keys array for ctx.keys (borrowed, or NULL).
 * Returns a verdict; on CALLBACKS_RESULT *res is a new reference (json null
 * for nil), else *res is NULL and err holds the reason.
 */
int callbacks_parse(struct script_host *h, const char *provider, json_t *req, json_t *job,
		    json_t *keys, json_t **res, char *err, size_t errlen);

/* 1 when token is the callback token of job_id under the server secret or a
 * previous one still in force (constant time), else 0. */
int callbacks_token_ok(const struct worker *w, const char *job_id, const char *token);

/*
 * The token check of a callback, on its URL alone (intake runs it before the
 * body is read): 0 when it holds; else the refusal is counted, recorded as a
 * `callback_refused` event of the job (when it exists) and answered 401, -1.
 */
int callbacks_admit(struct request *r, const char *provider, const char *job_id,
		    const char *token);

/* Handles the callback request r (its body read) and answers it. */
void callbacks_handle(struct request *r, const char *provider, const char *job_id,
		      const char *token);

#endif
