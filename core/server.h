/*
 * server.h: the HTTP transport (libmicrohttpd in external-epoll mode on the
 * worker's loop): connections, intake limits, suspend and resume, answers.
 * What a request means is the handlers' (struct server_handlers, given by
 * the worker): a request is answered at once with server_respond*() from
 * inside the dispatch handler, or suspended with server_suspend() and
 * answered later with server_respond*() from any loop callback.
 */
#ifndef GENRELAY_SERVER_H
#define GENRELAY_SERVER_H

#include <jansson.h>
#include <stdint.h>

#include "buf.h"
#include "loop.h"

struct worker;
struct MHD_Connection;
struct MHD_Response;
struct config_customer;
struct config_gen;
struct ingest_run;
struct waiter;

/* Per-request state; owned by the server, freed when MHD completes it. */
struct request {
	struct worker *w;
	struct server *srv;      /* the listener it came in on */
	struct MHD_Connection *conn;
	int metrics_only;        /* came in on metrics_listen: /metrics and /healthz only */
	int at_intake;           /* answering from the headers, before any body byte */
	size_t reserved;         /* bytes of limits.buffered_bytes held for the body */
	struct config_gen *gen;  /* held from arrival to completion (confgen.h) */
	char method[8];
	char *url;               /* path, percent-decoded by MHD */
	struct buf body;
	int too_large;
	int suspended;
	int answered;            /* a response is queued or pending */
	struct MHD_Response *response;
	unsigned status;
	int64_t started_ms;
	char request_id[64];     /* X-Request-Id: the client's when sane, else generated */

	struct request *dnext;   /* server.c: held answers */
	uint64_t hold_mark;      /* the hold handler's: what the held answer waits on */
	void *stream;            /* server.c: the state of a streamed answer */

	/* The layers above keep their state of the request here; each owner
	 * frees its own when the gone handler runs. */
	const struct config_customer *authed; /* api.c: authenticated customer, or NULL */
	int token_checked;         /* callbacks.c: the URL token held at intake */
	struct ingest_run *ingest; /* ingest.c: queued for the group commit */
	struct waiter *waiter;     /* waiters.c: waiting for a job to end */
	void *front;               /* front.c: handled by a front */
};

/*
 * What requests mean, given to the server by the layer above (the worker
 * wires the API's functions in). The server calls nothing else above it.
 */
struct server_handlers {
	/* Headers in, a body announced: 0 lets the body be read, -1 means r
	 * was answered from its headers (401, 404, 429 ...). */
	int (*admit)(struct request *r);
	/* The whole request is in: answer it, or suspend it. */
	void (*dispatch)(struct request *r);
	/* The connection ended (answered or not): forget r. */
	void (*gone)(struct request *r);
	/* 1 when an answer given now must wait for the store's commit, which
	 * then sends it (server_release): what it says may not be durable
	 * yet. Not asked for answers from the headers. */
	int (*hold)(struct request *r);
	/* Optional: after a commit, 1 when r's held answer did not hold (its
	 * writes were rolled back alone while the rest committed). */
	int (*lost)(struct request *r);
};

/*
 * The API listener on w->listen_fd, with the handlers h (borrowed for the
 * server's life). Intake: a request that carries a body is admitted from
 * its headers (h->admit) before any body byte is read, and reserves its
 * Content-Length (or limits.body_bytes when chunked) from the process-wide
 * limits.buffered_bytes budget, answering 503 at once when the budget is
 * spent; the reservation is given back when the request ends.
 */
struct server *server_new(struct worker *w, const struct server_handlers *h, char *err,
			  size_t errlen);
/* The open metrics listener on fd (taken), with the handlers h: requests
 * are marked metrics_only and may carry no body. */
struct server *server_new_metrics(struct worker *w, const struct server_handlers *h, int fd,
				  char *err, size_t errlen);
/* Stops accepting new connections (listening socket handed back). */
void server_quiesce(struct server *s);
/* Resumes every suspended request (the caller answers them first). */
void server_free(struct server *s);
/* Runs MHD if anything is pending (after resumes). */
void server_run(struct server *s);
long server_connections(struct server *s);

/* Header value (case-insensitive) or NULL; borrowed for the request. */
const char *server_header(struct request *r, const char *name);
const char *server_query(struct request *r, const char *name);
/* Calls fn for every request header. */
void server_each_header(struct request *r,
			void (*fn)(void *arg, const char *name, const char *value),
			void *arg);

/* Calls fn for every query-string argument (value "" when it has none). */
void server_each_query(struct request *r,
		       void (*fn)(void *arg, const char *name, const char *value),
		       void *arg);

void server_suspend(struct request *r);
/* Sends body (ownership taken, malloc'd) with a status and content type. */
void server_respond_raw(struct request *r, unsigned status, char *body, size_t len,
			const char *content_type);
/* Adds a header to the answer just given with server_respond*(). */
void server_response_header(struct request *r, const char *name, const char *value);
/* Body bytes reserved right now by all requests of the process. */
size_t server_buffered_bytes(void);
/* Sends v as JSON (reference stolen). */
void server_respond_json(struct request *r, unsigned status, json_t *v);
/* Sends {"error":{"code","message"}}. */
void server_respond_error(struct request *r, unsigned status, const char *code,
			  const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/*
 * Sends the answers held back until the store's commit (every answer the
 * hold handler marked, so no 202 or callback acknowledgement leaves before
 * its commit). committed 0: the commit failed, and those below 400 are
 * answered 503 instead; so are those the lost handler names.
 */
void server_release(struct server *s, int committed);
/*
 * A streamed answer (chunked, e.g. text/event-stream). read(cls, buf, max)
 * returns bytes written, 0 when it has nothing yet (the connection is then
 * paused until server_stream_wake), or -1 at the end of the stream.
 * free_cls(cls) runs once MHD is done with the response. The request may be
 * gone before that (the gone handler tells its owner).
 */
typedef long (*server_stream_fn)(void *cls, char *buf, size_t max);
void server_respond_stream(struct request *r, unsigned status, const char *content_type,
			   server_stream_fn read, void *cls, void (*free_cls)(void *));
/* Resumes a stream paused by its read function returning 0. */
void server_stream_wake(struct request *r);
/* Adds a header to the answer queued or held for r (after server_respond_*). */
void server_answer_header(struct request *r, const char *name, const char *value);

/* 1 when a resumed request waits for server_run(). */
int server_need_run(struct server *s);

#endif
