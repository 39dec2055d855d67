/*
 * callbacks.h: inbound provider callbacks,
 * POST /v1/callbacks/{provider}/{job_id}/{token}.
 */
#ifndef GENRELAY_CALLBACKS_H
#define GENRELAY_CALLBACKS_H

struct request;
struct worker;

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

void callbacks_handle(struct request *r, const char *provider, const char *job_id,
		      const char *token);

#endif
