/*
 * api.h: the unified API v1 handlers (routing, validation, group commit,
 * sync waits and long-polls).
 */
#ifndef GENRELAY_API_H
#define GENRELAY_API_H

#include <stddef.h>

struct request;
struct worker;
struct job;
struct config_customer;

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

/*
 * Submits a run for an authenticated customer: validates the model, the
 * webhook URL and the key, resolves the targets and queues the job for this
 * iteration's group commit (r is suspended and answered after the commit:
 * with the run shape, or through the front when r->front is set). Returns 0,
 * or -1 with *err filled and nothing answered.
 */
int api_submit(struct request *r, const struct config_customer *c, const struct api_run *run,
	       struct api_error *err);

/*
 * Decides from the headers alone whether a request may send its body: the
 * API key (or the admin key), or the token in a callback URL, is checked
 * before any body byte is read. Returns 0 (admitted), or -1 after answering
 * (401, 404, 429).
 */
int api_admit(struct request *r);
/* Routes a complete request; answers it or suspends it. */
void api_dispatch(struct request *r);
/* The connection ended: unlink r from any list it is on. */
void api_request_gone(struct request *r);
/* Commits the pending batch of run requests in one transaction and answers
 * them (called once per loop iteration). */
void api_flush(struct worker *w);
/* A job reached a terminal state on this worker: wake its waiters. */
void api_job_ended(struct worker *w, const char *job_id);
/* Re-checks waiters against the store (jobs ended on another worker) and
 * answers those whose time ran out. */
void api_waiters_tick(struct worker *w);
/* Answers every suspended request with 503 (shutdown). */
void api_abort_all(struct worker *w);

#endif
