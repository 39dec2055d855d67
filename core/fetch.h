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
	/* Instead of body: a malloc'd body fetch_start takes ownership of,
	 * started or not (freed when the transfer is over, or at once when
	 * fetch_start fails); sent as it is, without a copy. */
	char *owned_body;
	size_t body_len;             /* of body or owned_body */
	long timeout_ms;             /* whole request */
	size_t max_response;         /* body bytes kept; the rest is read and dropped */
	/* Non-NULL: a customer-chosen URL. Its transfer runs in a connection pool
	 * of its own, refuses blocked addresses (unless the policy allows private
	 * ones) when a socket is opened and again on the connected peer of every
	 * transfer, reused connections included, and never uses a proxy from the
	 * environment. */
	const struct urlguard_policy *guard;
	/* A proxy URL to go through ("http://host:port", "socks5h://..."), or
	 * NULL: none for guarded transfers, curl's environment defaults
	 * (http_proxy ...) for the others. Through an explicit proxy the proxy is
	 * the peer and is trusted: the address checks do not apply to it. */
	const char *proxy;
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

/* Transfers in libcurl at once per destination (connection pool and
 * scheme://host:port) unless fetcher_set_per_host says otherwise; more wait
 * in the fetcher, first in first out. */
#define FETCH_PER_HOST 64

/* Sets f's transfers per destination (>= 1; limits.per_host). */
void fetcher_set_per_host(struct fetcher *f, long per_host);

/* Starts a request, or queues it behind the per-destination number of others to the same
 * destination (it keeps its timeout, counted from this call). 0, or -1
 * (callback not called; headers freed). */
int fetch_start(struct fetcher *f, const struct fetch_request *req,
		fetch_done_cb cb, void *arg);

/* Requests accepted and not called back yet (running or waiting). */
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

/*
 * Checks one request header a script wants to send. The name must be an
 * RFC 9110 token (1 to 256 of A-Z a-z 0-9 ! # $ % & ' * + - . ^ _ ` | ~; so
 * no whitespace before or after it, no colon, no control characters); the
 * value (vlen bytes, which may hold a NUL) no CR, LF, NUL or other control
 * character but HTAB; name and value together under 4,000 bytes. Names that
 * belong to the transport are refused in every case and with '_' for '-'
 * (servers and CGI gateways treat the two alike): Host, Content-Length,
 * Transfer-Encoding, Connection, and the other hop-by-hop and framing
 * headers (Keep-Alive, Proxy-Connection, TE, Trailer, Upgrade, Expect).
 * Returns 0, or -1 with a reason in err naming the header (the name with
 * anything unprintable escaped, never the value).
 */
int fetch_header_field_check(const char *name, const char *value, size_t vlen,
			     char *err, size_t errlen);

/*
 * 1 when header name matches pattern, case-insensitively and with '_' equal
 * to '-'; a pattern ending in '*' matches every name that starts with the
 * rest ("webhook-*").
 */
int fetch_header_name_matches(const char *name, const char *pattern);

#endif
