/*
 * api.h: the unified API v1 handlers (routing, validation, group commit,
 * sync waits and long-polls).
 */
#ifndef GENRELAY_API_H
#define GENRELAY_API_H

struct request;
struct worker;

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
