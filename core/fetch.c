/*
 * fetch.c: libcurl multi socket API on the worker's epoll loop.
 *
 * Easy handles are kept in a free list and reused, so connections stay in the
 * multi handle's cache and no allocation happens per request after warm-up.
 * A reused handle is not reset: the options every transfer shares (callbacks,
 * the SSRF guard's socket and peer checks, protocols, no redirects, user
 * agent, connect timeout) are set once when the handle is made
 * (easy_configure), and fetch_start sets again every option a request may
 * change (URL, headers, timeout, proxy and no-proxy list, method and body),
 * so nothing one transfer chose carries over into the next. The response and
 * header buffers keep their memory between transfers when it is small.
 *
 * Two connection pools (two multi handles on the same loop): guarded
 * transfers (a customer-chosen URL, fetch_request.guard set) and the rest
 * (providers, JWKS). A connection opened for one kind never carries the
 * other, so a webhook to the host:port of a provider reached at a private
 * address cannot ride the provider's connection, and a provider request never
 * rides a connection a customer's URL chose. Within the guarded pool the peer
 * of every transfer is checked again before its request is sent
 * (CURLOPT_PREREQFUNCTION, which curl calls for new and reused connections
 * alike), on top of the check when the socket is opened.
 *
 * At most per_host (FETCH_PER_HOST unless set: limits.per_host) transfers per destination (pool and
 * scheme://host:port of the URL) are in libcurl at once; the rest wait here,
 * first in first out, and start as earlier ones finish. libcurl's cost per
 * transfer grows with the transfers its multi handle holds, and every
 * transfer it starts without an idle connection opens a new one: a burst of
 * 1,024 webhooks to one receiver would open 1,024 connections and pay the
 * 1,024-in-flight price on each. A waiting transfer keeps its deadline: it
 * starts with what is left of its timeout, or fails when nothing is left.
 *
 * Proxies: a guarded transfer never takes a proxy from the environment
 * (http_proxy, HTTPS_PROXY, ALL_PROXY, no_proxy ...): it goes direct, or
 * through the proxy its request names (webhooks.proxy), which is then the
 * only peer and is trusted to apply its own egress rules. Other transfers
 * use the proxy their request names, or curl's environment defaults.
 */
#include "fetch.h"

#include "buf.h"
#include "log.h"
#include "loop.h"
#include "urlguard.h"

#include <ctype.h>
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#define FETCH_HEADER_MAX (32 * 1024)
#define DEST_BUCKETS 64
#define DEST_KEY_MAX 256

struct dest;

struct transfer {
	struct fetcher *f;
	CURL *easy;
	struct curl_slist *headers;
	char *body;         /* owned: copied or taken from the request */
	struct buf resp;
	struct buf head;
	int truncated;
	int blocked;
	int check_peer; /* guarded, private addresses refused, no proxy */
	struct pool *pool;
	struct dest *dest;  /* its destination while accepted and not finished */
	int64_t queued_at;  /* loop_now_ms when it started waiting */
	long timeout_ms;    /* the whole request's */
	fetch_done_cb cb;
	void *arg;
	char errbuf[CURL_ERROR_SIZE];
	struct transfer *next; /* free list / in-flight list */
	struct transfer *prev;
};

/* One connection pool: a multi handle and its timer. */
struct pool {
	struct fetcher *f;
	CURLM *multi;
	struct loop_timer timer;
};

enum { POOL_PLAIN, POOL_GUARDED, POOL_COUNT };

/* One destination: its transfers in libcurl and those waiting (FIFO). */
struct dest {
	struct dest *next; /* hash chain */
	size_t active;
	int pins; /* > 0 while the fetcher runs callbacks with d in hand */
	struct transfer *qhead, *qtail; /* linked through transfer.next */
	char key[DEST_KEY_MAX];
};

struct fetcher {
	struct loop *loop;
	struct pool pools[POOL_COUNT];
	struct transfer *free;
	struct transfer *active;
	size_t inflight; /* accepted and not called back: in libcurl or waiting */
	size_t per_host; /* transfers in libcurl at once per destination */
	int in_timer;
	struct dest *dests[DEST_BUCKETS];
};

struct sock {
	struct loop_io io;
	struct pool *p;
	curl_socket_t fd;
};

static void check_done(struct pool *p);

static void io_cb(struct loop_io *io, uint32_t events)
{
	struct sock *s = io->arg;
	struct pool *p = s->p;
	int flags = 0, running;
	if (events & EPOLLIN)
		flags |= CURL_CSELECT_IN;
	if (events & EPOLLOUT)
		flags |= CURL_CSELECT_OUT;
	if (events & (EPOLLERR | EPOLLHUP))
		flags |= CURL_CSELECT_ERR;
	curl_multi_socket_action(p->multi, s->fd, flags, &running);
	check_done(p);
}

static int socket_cb(CURL *e, curl_socket_t fd, int what, void *userp, void *sockp)
{
	struct pool *p = userp;
	struct fetcher *f = p->f;
	struct sock *s = sockp;
	(void)e;
	if (what == CURL_POLL_REMOVE) {
		if (s) {
			loop_io_del(f->loop, &s->io);
			curl_multi_assign(p->multi, fd, NULL);
			loop_defer_free(f->loop, s);
		}
		return 0;
	}
	uint32_t ev = 0;
	if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
		ev |= EPOLLIN;
	if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
		ev |= EPOLLOUT;
	if (!s) {
		s = calloc(1, sizeof *s);
		if (!s)
			return -1;
		s->p = p;
		s->fd = fd;
		if (loop_io_add(f->loop, &s->io, fd, ev, io_cb, s) < 0) {
			free(s);
			return -1;
		}
		curl_multi_assign(p->multi, fd, s);
	} else {
		loop_io_mod(f->loop, &s->io, ev);
	}
	return 0;
}

static void timer_fire(struct loop_timer *t)
{
	struct pool *p = t->arg;
	int running;
	curl_multi_socket_action(p->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done(p);
}

static int timer_cb(CURLM *m, long timeout_ms, void *userp)
{
	struct pool *p = userp;
	(void)m;
	if (timeout_ms < 0)
		loop_timer_stop(p->f->loop, &p->timer);
	else
		loop_timer_set(p->f->loop, &p->timer, loop_now_ms() + timeout_ms);
	return 0;
}

static void pools_free(struct fetcher *f)
{
	for (int i = 0; i < POOL_COUNT; i++) {
		struct pool *p = &f->pools[i];
		if (p->multi)
			curl_multi_cleanup(p->multi);
		loop_timer_stop(f->loop, &p->timer);
	}
}

void fetcher_set_per_host(struct fetcher *f, long per_host)
{
	f->per_host = per_host < 1 ? 1 : (size_t)per_host;
}

struct fetcher *fetcher_new(struct loop *l, long max_connections)
{
	struct fetcher *f = calloc(1, sizeof *f);
	if (!f)
		return NULL;
	f->loop = l;
	f->per_host = FETCH_PER_HOST;
	for (int i = 0; i < POOL_COUNT; i++) {
		f->pools[i].f = f;
		loop_timer_init(&f->pools[i].timer, timer_fire, &f->pools[i]);
	}
	for (int i = 0; i < POOL_COUNT; i++) {
		struct pool *p = &f->pools[i];
		p->multi = curl_multi_init();
		if (!p->multi) {
			pools_free(f);
			free(f);
			return NULL;
		}
		curl_multi_setopt(p->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
		curl_multi_setopt(p->multi, CURLMOPT_SOCKETDATA, p);
		curl_multi_setopt(p->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
		curl_multi_setopt(p->multi, CURLMOPT_TIMERDATA, p);
		curl_multi_setopt(p->multi, CURLMOPT_MAXCONNECTS, max_connections);
	}
	return f;
}

static void transfer_destroy(struct transfer *t)
{
	curl_easy_cleanup(t->easy);
	curl_slist_free_all(t->headers);
	free(t->body);
	buf_free(&t->resp);
	buf_free(&t->head);
	free(t);
}

void fetcher_free(struct fetcher *f)
{
	if (!f)
		return;
	struct transfer *t, *n;
	for (t = f->active; t; t = n) {
		n = t->next;
		curl_multi_remove_handle(t->pool->multi, t->easy);
		transfer_destroy(t);
	}
	for (t = f->free; t; t = n) {
		n = t->next;
		transfer_destroy(t);
	}
	for (int i = 0; i < DEST_BUCKETS; i++) {
		struct dest *d, *dn;
		for (d = f->dests[i]; d; d = dn) {
			dn = d->next;
			for (t = d->qhead; t; t = n) {
				n = t->next;
				transfer_destroy(t);
			}
			free(d);
		}
	}
	pools_free(f);
	free(f);
}

size_t fetcher_inflight(const struct fetcher *f)
{
	return f->inflight;
}

static size_t write_cb(char *p, size_t sz, size_t n, void *ud)
{
	struct transfer *t = ud;
	size_t len = sz * n;
	if (!t->truncated && buf_add(&t->resp, p, len) < 0) {
		size_t room = t->resp.max - t->resp.len;
		buf_add(&t->resp, p, room);
		t->truncated = 1;
	}
	return len;
}

static size_t header_cb(char *p, size_t sz, size_t n, void *ud)
{
	struct transfer *t = ud;
	size_t len = sz * n;
	/* A new status line starts the final response's block (after 100-continue). */
	if (len > 5 && memcmp(p, "HTTP/", 5) == 0)
		buf_reset(&t->head);
	if (buf_add(&t->head, p, len) < 0)
		return 0;
	return len;
}

static curl_socket_t opensocket_cb(void *ud, curlsocktype purpose,
				   struct curl_sockaddr *a)
{
	struct transfer *t = ud;
	(void)purpose;
	if (t->check_peer && urlguard_addr_blocked(&a->addr, a->addrlen)) {
		t->blocked = 1;
		return CURL_SOCKET_BAD;
	}
	return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

/*
 * Called by curl once the transfer has its connection, new or reused, before
 * the request is sent: the connected peer is checked whatever opened it.
 */
static int prereq_cb(void *ud, char *primary_ip, char *local_ip,
		     int primary_port, int local_port)
{
	struct transfer *t = ud;
	(void)local_ip;
	(void)primary_port;
	(void)local_port;
	if (t->check_peer && urlguard_ip_blocked(primary_ip)) {
		t->blocked = 1;
		return CURL_PREREQFUNC_ABORT;
	}
	return CURL_PREREQFUNC_OK;
}

/* ---------- destinations ---------- */

/* "P|scheme://authority" of url in pool p into key (cut at DEST_KEY_MAX: a
 * longer authority only shares its cap with others of the same prefix). */
static void dest_key(const char *url, int p, char key[DEST_KEY_MAX])
{
	const char *a = strstr(url, "://");
	size_t n = a ? (size_t)(a + 3 - url) : 0;
	if (a)
		n += strcspn(a + 3, "/?#");
	else
		n = strlen(url);
	if (n > DEST_KEY_MAX - 3)
		n = DEST_KEY_MAX - 3;
	key[0] = (char)('0' + p);
	key[1] = '|';
	for (size_t i = 0; i < n; i++)
		key[2 + i] = (char)tolower((unsigned char)url[i]);
	key[2 + n] = '\0';
}

static unsigned dest_hash(const char *key)
{
	unsigned h = 2166136261u;
	for (; *key; key++)
		h = (h ^ (unsigned char)*key) * 16777619u;
	return h % DEST_BUCKETS;
}

/* The destination of key, made when new; NULL when out of memory. */
static struct dest *dest_get(struct fetcher *f, const char *key)
{
	unsigned b = dest_hash(key);
	struct dest *d;
	for (d = f->dests[b]; d; d = d->next)
		if (strcmp(d->key, key) == 0)
			return d;
	d = calloc(1, sizeof *d);
	if (!d)
		return NULL;
	snprintf(d->key, sizeof d->key, "%s", key);
	d->next = f->dests[b];
	f->dests[b] = d;
	return d;
}

/* Frees d once nothing runs or waits there. */
static void dest_release(struct fetcher *f, struct dest *d)
{
	if (d->active || d->qhead || d->pins)
		return;
	struct dest **pp = &f->dests[dest_hash(d->key)];
	while (*pp && *pp != d)
		pp = &(*pp)->next;
	if (*pp)
		*pp = d->next;
	free(d);
}

/* Buffers at most this large keep their memory for the handle's next
 * transfer; larger ones are freed (a free list of big buffers would hold
 * the largest answer ever seen once per handle). */
#define KEEP_BUF_MAX 4096

static void buf_recycle(struct buf *b)
{
	if (b->cap > KEEP_BUF_MAX)
		buf_free(b);
	else
		buf_reset(b);
}

/* Frees what one request owned and puts its easy handle on the free list. */
static void recycle(struct fetcher *f, struct transfer *t)
{
	curl_slist_free_all(t->headers);
	t->headers = NULL;
	free(t->body);
	t->body = NULL;
	buf_recycle(&t->resp);
	buf_recycle(&t->head);
	t->dest = NULL;
	t->next = f->free;
	f->free = t;
}

/* Puts t on the list of transfers in libcurl. */
static void link_active(struct fetcher *f, struct transfer *t)
{
	t->prev = NULL;
	t->next = f->active;
	if (f->active)
		f->active->prev = t;
	f->active = t;
}

/*
 * The options every transfer of t's handle shares, set once when the handle
 * is made; fetch_start never resets the handle, so these hold for all its
 * transfers (the SSRF guard's checks read t->check_peer, set per request).
 */
static void easy_configure(struct transfer *t)
{
	CURL *e = t->easy;
	curl_easy_setopt(e, CURLOPT_PRIVATE, t);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->errbuf);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, t);
	curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, opensocket_cb);
	curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, t);
	curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, prereq_cb);
	curl_easy_setopt(e, CURLOPT_PREREQDATA, t);
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "genrelay/0.1");
	curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, NULL);
}

/*
 * The method and body of req on a handle that may have carried any other
 * method before: first back to what a fresh handle has (GET, no body, no
 * custom method, a body expected), then req's. The body is t->body, which
 * t owns until it is recycled. 0, or -1 when out of memory.
 */
static int easy_method(struct transfer *t, const struct fetch_request *req)
{
	CURL *e = t->easy;
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, NULL);
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, -1L);
	curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, NULL);
	curl_easy_setopt(e, CURLOPT_HTTPGET, 1L); /* also no NOBODY, no upload */
	int has_body = req->owned_body || req->body;
	if (req->owned_body) {
		t->body = req->owned_body;
	} else if (req->body) {
		t->body = malloc(req->body_len + 1);
		if (!t->body)
			return -1;
		memcpy(t->body, req->body, req->body_len);
		t->body[req->body_len] = '\0';
	}
	if (has_body) {
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)req->body_len);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, t->body);
	}
	if (strcmp(req->method, "GET") == 0 && !has_body)
		; /* HTTPGET above */
	else if (strcmp(req->method, "HEAD") == 0) /* a HEAD answer has no body to wait for */
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	else if (strcmp(req->method, "POST") != 0 || !has_body)
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
	if (strcmp(req->method, "POST") == 0 && !has_body) {
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, 0L);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
	}
	return 0;
}

int fetch_start(struct fetcher *f, const struct fetch_request *req,
		fetch_done_cb cb, void *arg)
{
	struct transfer *t = f->free;
	if (t) {
		f->free = t->next;
	} else {
		t = calloc(1, sizeof *t);
		if (!t || !(t->easy = curl_easy_init())) {
			free(t);
			curl_slist_free_all(req->headers);
			free(req->owned_body);
			return -1;
		}
		easy_configure(t);
	}
	t->f = f;
	t->headers = req->headers;
	t->body = NULL;
	t->truncated = t->blocked = 0;
	t->pool = &f->pools[req->guard ? POOL_GUARDED : POOL_PLAIN];
	t->check_peer = req->guard && !req->guard->allow_private &&
			!(req->proxy && *req->proxy);
	t->cb = cb;
	t->arg = arg;
	t->dest = NULL;
	t->timeout_ms = req->timeout_ms > 0 ? req->timeout_ms : 30000L;
	t->errbuf[0] = '\0';
	buf_reset(&t->resp);
	t->resp.max = req->max_response ? req->max_response : 1 << 20;
	buf_reset(&t->head);
	t->head.max = FETCH_HEADER_MAX;

	CURL *e = t->easy;
	curl_easy_setopt(e, CURLOPT_URL, req->url);
	if (req->guard) {
		/* "" is no proxy at all: the environment is not consulted. With a
		 * proxy, an empty no-proxy list keeps no_proxy from sending some
		 * hosts direct (and unchecked). */
		curl_easy_setopt(e, CURLOPT_PROXY, req->proxy ? req->proxy : "");
		curl_easy_setopt(e, CURLOPT_NOPROXY, "");
	} else {
		/* NULL: curl's defaults again (the environment's proxy and no_proxy) */
		curl_easy_setopt(e, CURLOPT_PROXY, req->proxy);
		curl_easy_setopt(e, CURLOPT_NOPROXY, NULL);
	}
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, t->timeout_ms);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
	if (easy_method(t, req) < 0)
		goto fail;

	char key[DEST_KEY_MAX];
	dest_key(req->url, (int)(t->pool - f->pools), key);
	struct dest *d = dest_get(f, key);
	if (!d)
		goto fail;
	if (d->active >= f->per_host || d->qhead) {
		/* waits (behind the others) for a transfer there to finish */
		t->dest = d;
		t->queued_at = loop_now_ms();
		t->next = NULL;
		if (d->qtail)
			d->qtail->next = t;
		else
			d->qhead = t;
		d->qtail = t;
		f->inflight++;
		return 0;
	}
	if (curl_multi_add_handle(t->pool->multi, e) != CURLM_OK) {
		dest_release(f, d);
		goto fail;
	}
	t->dest = d;
	d->active++;
	link_active(f, t);
	f->inflight++;
	return 0;
fail:
	recycle(f, t);
	return -1;
}

/* Calls t's callback with an error and no response, then recycles t. */
static void fail_waiting(struct fetcher *f, struct transfer *t, const char *why)
{
	struct fetch_response res = { .error = why, .body = "", .headers = "", .url = "" };
	char *eff = NULL;
	if (curl_easy_getinfo(t->easy, CURLINFO_EFFECTIVE_URL, &eff) == CURLE_OK && eff)
		res.url = eff;
	f->inflight--;
	t->cb(t->arg, &res);
	log_ctx_clear();
	recycle(f, t);
}

/*
 * Starts what waits for d while it has room, each with what is left of its
 * timeout; one whose time ran out while it waited fails without a request.
 * Frees d when nothing is left there. Callbacks run from here may start new
 * transfers (to d too).
 */
static void dest_pump(struct fetcher *f, struct dest *d)
{
	d->pins++;
	while (d->qhead && d->active < f->per_host) {
		struct transfer *t = d->qhead;
		d->qhead = t->next;
		if (!d->qhead)
			d->qtail = NULL;
		long left = t->timeout_ms - (long)(loop_now_ms() - t->queued_at);
		if (left <= 0) {
			fail_waiting(f, t, "timed out waiting for a connection to the host");
			continue;
		}
		curl_easy_setopt(t->easy, CURLOPT_TIMEOUT_MS, left);
		if (curl_multi_add_handle(t->pool->multi, t->easy) != CURLM_OK) {
			fail_waiting(f, t, "cannot start request");
			continue;
		}
		d->active++;
		link_active(f, t);
	}
	d->pins--;
	dest_release(f, d);
}

static void finish(struct fetcher *f, struct transfer *t, CURLcode rc)
{
	struct fetch_response res = {0};
	double secs = 0;
	curl_easy_getinfo(t->easy, CURLINFO_TOTAL_TIME, &secs);
	res.total_ms = secs * 1000.0;
	char *eff = NULL;
	curl_easy_getinfo(t->easy, CURLINFO_EFFECTIVE_URL, &eff);
	res.url = eff ? eff : "";
	if (rc == CURLE_OK) {
		curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &res.status);
	} else if (t->blocked) {
		res.error = "address not allowed (private, loopback or reserved)";
	} else {
		res.error = t->errbuf[0] ? t->errbuf : curl_easy_strerror(rc);
	}
	res.body = t->resp.p ? t->resp.p : "";
	res.body_len = t->resp.len;
	res.truncated = t->truncated;
	res.headers = t->head.p ? t->head.p : "";
	res.headers_len = t->head.len;

	/* Unlink before the callback: it may start new transfers. */
	if (t->prev)
		t->prev->next = t->next;
	else
		f->active = t->next;
	if (t->next)
		t->next->prev = t->prev;
	f->inflight--;
	curl_multi_remove_handle(t->pool->multi, t->easy);
	struct dest *d = t->dest;
	if (d) {
		d->active--;
		d->pins++; /* the callback may start transfers (to d too) */
	}

	t->cb(t->arg, &res);
	log_ctx_clear();
	recycle(f, t);
	if (d) {
		d->pins--;
		dest_pump(f, d);
	}
}

static void check_done(struct pool *p)
{
	struct fetcher *f = p->f;
	CURLMsg *m;
	int left;
	while ((m = curl_multi_info_read(p->multi, &left))) {
		if (m->msg != CURLMSG_DONE)
			continue;
		struct transfer *t = NULL;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&t);
		finish(f, t, m->data.result);
	}
}

static int name_eq(const char *line, size_t n, const char *name)
{
	size_t k = strlen(name);
	return n > k && line[k] == ':' && strncasecmp(line, name, k) == 0;
}

void fetch_each_header(const char *headers, size_t len,
		       void (*fn)(void *arg, const char *name, const char *value),
		       void *arg)
{
	const char *p = headers, *end = headers + len;
	char name[128], value[2048];
	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		if (!eol)
			eol = end;
		const char *colon = memchr(p, ':', (size_t)(eol - p));
		if (colon && colon > p && (size_t)(colon - p) < sizeof name) {
			size_t nl = (size_t)(colon - p);
			for (size_t i = 0; i < nl; i++)
				name[i] = (char)tolower((unsigned char)p[i]);
			name[nl] = '\0';
			const char *v = colon + 1, *ve = eol;
			while (v < ve && (*v == ' ' || *v == '\t'))
				v++;
			while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
				ve--;
			size_t vl = (size_t)(ve - v);
			if (vl >= sizeof value)
				vl = sizeof value - 1;
			memcpy(value, v, vl);
			value[vl] = '\0';
			fn(arg, name, value);
		}
		p = eol + 1;
	}
}

int fetch_header(const char *headers, size_t len, const char *name,
		 char *out, size_t outlen)
{
	const char *p = headers, *end = headers + len;
	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		if (!eol)
			eol = end;
		if (name_eq(p, (size_t)(eol - p), name)) {
			const char *v = p + strlen(name) + 1, *ve = eol;
			while (v < ve && (*v == ' ' || *v == '\t'))
				v++;
			while (ve > v && (ve[-1] == '\r' || ve[-1] == ' '))
				ve--;
			size_t vl = (size_t)(ve - v);
			if (outlen == 0)
				return (int)vl;
			if (vl >= outlen)
				vl = outlen - 1;
			memcpy(out, v, vl);
			out[vl] = '\0';
			return (int)vl;
		}
		p = eol + 1;
	}
	return -1;
}

static int is_tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static char fold(char c)
{
	return c == '_' ? '-' : (char)tolower((unsigned char)c);
}

int fetch_header_name_matches(const char *name, const char *pattern)
{
	for (; *pattern; name++, pattern++) {
		if (pattern[0] == '*' && pattern[1] == '\0')
			return 1;
		if (*name == '\0' || fold(*name) != fold(*pattern))
			return 0;
	}
	return *name == '\0';
}

/* name for an error message: at most 64 bytes, unprintable bytes as \xNN. */
static void quote_name(const char *name, char *out, size_t outlen)
{
	size_t o = 0;
	for (size_t i = 0; name[i] && i < 64 && o + 5 < outlen; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c < 0x20 || c >= 0x7f || c == '\'' || c == '\\')
			o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", c);
		else
			out[o++] = (char)c;
	}
	if (outlen)
		out[o < outlen ? o : outlen - 1] = '\0';
}

int fetch_header_field_check(const char *name, const char *value, size_t vlen,
			     char *err, size_t errlen)
{
	static const char *const transport[] = { "host", "content-length",
		"transfer-encoding", "connection", "keep-alive", "proxy-connection",
		"te", "trailer", "upgrade", "expect", NULL };
	char q[64 * 4 + 8];
	const char *why = NULL;
	size_t n = name ? strlen(name) : 0;

	quote_name(name ? name : "", q, sizeof q);
	if (n == 0)
		why = "has an empty name";
	else if (n > 256)
		why = "has a name longer than 256 bytes";
	else if (strchr(" \t\r\n", name[0]) || strchr(" \t\r\n", name[n - 1]))
		why = "has whitespace before or after its name";
	for (size_t i = 0; !why && i < n; i++)
		if (!is_tchar((unsigned char)name[i]))
			why = "has a name that is not an RFC 9110 token";
	for (int i = 0; !why && transport[i]; i++)
		if (fetch_header_name_matches(name, transport[i]))
			why = "is set by the transport, not by a script";
	if (!why && value == NULL)
		why = "must have a string value";
	for (size_t i = 0; !why && i < vlen; i++) {
		unsigned char c = (unsigned char)value[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			why = "has a control character (CR, LF, NUL ...) in its value";
	}
	if (!why && n + vlen > 4000)
		why = "is longer than 4000 bytes";
	if (!why)
		return 0;
	if (err && errlen)
		snprintf(err, errlen, "header '%s' %s", q, why);
	return -1;
}
