/*
 * fetch.h: outbound HTTP on the worker's loop (libcurl multi socket API).
 *
 * Nothing here blocks: fetch_start() queues the request and returns; the
 * callback runs later on the loop thread, exactly once, unless fetch_start
 * failed (then it is never called) or the fetcher is freed first.
 */
#ifndef GENRELAY_FETCH_H
#define GENRELAY_FETCH_H

#include <stddef.h>
#include <stdint.h>

struct loop;
struct fetcher;
struct urlguard_policy;
struct curl_slist;

struct fetch_request {
	const char *method;          /* "GET", "POST", "PUT", "DELETE", ... */
	const char *url;
	struct curl_slist *headers;  /* "Name: value" lines; fetch_start takes ownership */
	const char *body;            /* copied; NULL for none */
	size_t body_len;
	long timeout_ms;             /* whole request */
	size_t max_response;         /* body bytes kept; the rest is read and dropped */
	const struct urlguard_policy *guard; /* non-NULL: refuse blocked addresses at connect */
};

struct fetch_response {
	long status;         /* HTTP status, 0 when no response arrived */
	const char *error;   /* NULL when a response arrived, else the reason */
	const char *body;    /* NUL-terminated, borrowed until the callback returns */
	size_t body_len;
	int truncated;       /* body exceeded max_response */
	const char *headers; /* raw header block, borrowed */
	size_t headers_len;
	double total_ms;
	const char *url;     /* the URL requested, borrowed */
};

typedef void (*fetch_done_cb)(void *arg, const struct fetch_response *res);

/* max_connections: idle connections kept for reuse; at least the number of
 * requests that may run at once, or curl closes connections as they end. */
struct fetcher *fetcher_new(struct loop *l, long max_connections);
/* Aborts everything in flight; their callbacks are not called. */
void fetcher_free(struct fetcher *f);

/* Starts a request. 0, or -1 (callback not called; headers freed). */
int fetch_start(struct fetcher *f, const struct fetch_request *req,
		fetch_done_cb cb, void *arg);

size_t fetcher_inflight(const struct fetcher *f);

/*
 * Finds header name (case-insensitive) in a raw header block; copies its
 * trimmed value into out. Returns the value length or -1 when absent.
 */
int fetch_header(const char *headers, size_t len, const char *name,
		 char *out, size_t outlen);

/*
 * Calls fn(name, value) for every header line of the final response, names
 * lower-cased. Name and value are NUL-terminated copies valid during fn.
 */
void fetch_each_header(const char *headers, size_t len,
		       void (*fn)(void *arg, const char *name, const char *value),
		       void *arg);

#endif
