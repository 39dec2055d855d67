/*
 * fetch.c: libcurl multi socket API on the worker's epoll loop.
 *
 * Easy handles are kept in a free list and reused, so connections stay in the
 * multi handle's cache and no allocation happens per request after warm-up.
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

struct transfer {
	struct fetcher *f;
	CURL *easy;
	struct curl_slist *headers;
	char *body;
	struct buf resp;
	struct buf head;
	int truncated;
	int blocked;
	int check_peer; /* guarded, private addresses refused, no proxy */
	struct pool *pool;
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

struct fetcher {
	struct loop *loop;
	struct pool pools[POOL_COUNT];
	struct transfer *free;
	struct transfer *active;
	size_t inflight;
	int in_timer;
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

struct fetcher *fetcher_new(struct loop *l, long max_connections)
{
	struct fetcher *f = calloc(1, sizeof *f);
	if (!f)
		return NULL;
	f->loop = l;
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

/* Frees what one request owned and puts its easy handle on the free list. */
static void recycle(struct fetcher *f, struct transfer *t)
{
	curl_slist_free_all(t->headers);
	t->headers = NULL;
	free(t->body);
	t->body = NULL;
	buf_free(&t->resp);
	buf_free(&t->head);
	t->next = f->free;
	f->free = t;
}

int fetch_start(struct fetcher *f, const struct fetch_request *req,
		fetch_done_cb cb, void *arg)
{
	struct transfer *t = f->free;
	if (t) {
		f->free = t->next;
		curl_easy_reset(t->easy);
	} else {
		t = calloc(1, sizeof *t);
		if (!t || !(t->easy = curl_easy_init())) {
			free(t);
			curl_slist_free_all(req->headers);
			return -1;
		}
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
	t->errbuf[0] = '\0';
	buf_init(&t->resp, req->max_response ? req->max_response : 1 << 20);
	buf_init(&t->head, FETCH_HEADER_MAX);

	CURL *e = t->easy;
	curl_easy_setopt(e, CURLOPT_URL, req->url);
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
	if (req->guard) {
		/* "" is no proxy at all: the environment is not consulted. With a
		 * proxy, an empty no-proxy list keeps no_proxy from sending some
		 * hosts direct (and unchecked). */
		curl_easy_setopt(e, CURLOPT_PROXY, req->proxy ? req->proxy : "");
		curl_easy_setopt(e, CURLOPT_NOPROXY, "");
	} else if (req->proxy) {
		curl_easy_setopt(e, CURLOPT_PROXY, req->proxy);
	}
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, req->timeout_ms > 0 ? req->timeout_ms : 30000L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "genrelay/0.1");
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
	curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, NULL);
	if (req->body) {
		t->body = malloc(req->body_len + 1);
		if (!t->body)
			goto fail;
		memcpy(t->body, req->body, req->body_len);
		t->body[req->body_len] = '\0';
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)req->body_len);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, t->body);
	}
	if (strcmp(req->method, "GET") == 0 && !req->body)
		curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	else if (strcmp(req->method, "HEAD") == 0) /* a HEAD answer has no body to wait for */
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	else if (strcmp(req->method, "POST") != 0 || !req->body)
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
	if (strcmp(req->method, "POST") == 0 && !req->body) {
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, 0L);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
	}

	if (curl_multi_add_handle(t->pool->multi, e) != CURLM_OK)
		goto fail;
	t->prev = NULL;
	t->next = f->active;
	if (f->active)
		f->active->prev = t;
	f->active = t;
	f->inflight++;
	return 0;
fail:
	recycle(f, t);
	return -1;
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

	t->cb(t->arg, &res);
	log_ctx_clear();
	recycle(f, t);
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
