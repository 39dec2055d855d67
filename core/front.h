/*
 * front.h: client-compatible fronts (docs/fronts.md).
 *
 * A front is a script, scripts/fronts/NAME.lua, that maps one client
 * protocol (fal's queue and sync protocols, OpenAI's images API, ...) to
 * genrelay's unified runs and jobs. Every request under /NAME/ of a loaded
 * front goes to it. The core does what the script cannot: it authenticates
 * the customer from the headers (Authorization: Key <key> or Bearer <key>),
 * parses the body (JSON, or multipart/form-data into fields and data-URL
 * files), submits runs through ingest_submit, reads and cancels jobs, waits,
 * streams status as server-sent events, and fetches outputs to inline them
 * (bounded); the script only maps shapes.
 */
#ifndef GENRELAY_FRONT_H
#define GENRELAY_FRONT_H

struct request;
struct worker;
struct job;
struct config_customer;

/* Total bytes of outputs one answer may inline (b64_json, data URLs). */
#define FRONT_INLINE_MAX ((size_t)16 << 20)

/*
 * Handles r when its path is /NAME/... and fronts/NAME.lua is loaded: answers
 * it or suspends it, and returns 1. Returns 0 (nothing done) otherwise.
 */
int front_dispatch(struct request *r);
/* 1 when r's path belongs to a loaded front (from the URL alone: callable
 * as soon as the headers are in, before any body byte is read). */
int front_owns(struct request *r);
/*
 * The customer a front request authenticates as, from its headers alone
 * (Authorization: Key <key> or Bearer <key>), so it can be checked before
 * any body byte is read. NULL: missing or unknown key.
 */
const struct config_customer *front_customer(struct request *r);
/* Answers r, a run submitted through a front, with job as it is now. */
void front_answer(struct request *r, const struct job *j);
/* Answers r in its front's error shape (unified code and message given). */
void front_error(struct request *r, unsigned status, const char *code, const char *msg);
/* The connection of r ended: frees the front's state of r. */
void front_request_gone(struct request *r);
/* A job ended on this worker: its status streams send the change now
 * (streams of jobs ended elsewhere see it on their next read). */
void front_job_ended(struct worker *w, const char *job_id);
/* Shutdown: ends every status stream of the worker. */
void front_abort_all(struct worker *w);

#endif
