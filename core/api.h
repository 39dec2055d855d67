/*
 * api.h: the unified API v1 over HTTP: authentication, routing and the
 * handlers. A run is parsed by runreq.c and queued by ingest.c; waits are
 * waiters.c's. The worker gives these functions to the server as its
 * handlers (server.h) and sets api_job_ended as its job_ended hook.
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
/* The connection ended: every layer forgets r (queued run, waiter, front). */
void api_request_gone(struct request *r);
/* A job reached a terminal state on this worker (committed): wakes its
 * waiters and front status streams. */
void api_job_ended(struct worker *w, const char *job_id);
/* Shutdown: answers every waiting request and commits the queued runs. */
void api_abort_all(struct worker *w);

#endif
