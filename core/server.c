/*
 * server.c: libmicrohttpd in external-epoll mode on the worker's loop.
 *
 * MHD's epoll fd is one watcher on the loop; MHD_run() runs whenever it is
 * readable or MHD's own timeout passes. Suspended requests are resumed with
 * their response attached, and the access handler queues it on the next call.
 */
#include "server.h"

#include "config.h"
#include "linger.h"
#include "log.h"
#include "metrics.h"
#include "worker.h"

#include "scrub.h"

#include <ctype.h>
#include <errno.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

struct server {
	struct worker *w;
	const struct server_handlers *h; /* borrowed */
	int metrics_only;       /* the open metrics listener */
	struct MHD_Daemon *d;
	struct loop_io io;
	struct loop_timer timer;
	int need_run;
	int listen_fd;
	struct request *held;   /* answers the hold handler keeps until the commit */
	struct conn *conns;     /* every open connection, for the slow-client sweep */
	struct loop_timer sweep;
	struct linger_set lingers; /* sockets closing after an answer from the headers */
};

/*
 * Per-connection state for the slow-client sweep. libmicrohttpd's own
 * timeout only counts idle time, so a client dribbling a header byte at a
 * time (slow-loris) or a body byte at a time would hold its slot forever.
 * Each connection must deliver its headers, and then its body, within
 * limits.connection_timeout_s; the sweep shuts down the socket of any that
 * does not. A request being processed (suspended, answering) is never cut.
 */
enum conn_phase { CONN_HEADERS, CONN_BODY, CONN_BUSY };

struct conn {
	struct conn *next, **prevp;
	int fd;
	enum conn_phase phase;
	int64_t since_ms;
	int holds_body;         /* its request holds a buffered_bytes reservation */
	int linger;             /* answered from the headers: linger when MHD closes it */
};

/* The stream's state as MHD's content reader sees it. */
struct stream_ctx {
	struct request *r;   /* NULL once the request is gone */
	server_stream_fn read;
	void *cls;
	void (*free_cls)(void *);
	int paused;
};

/*
 * libmicrohttpd (epoll, edge-triggered) can miss a client's close that
 * arrives together with the last body bytes: the short read makes it assume
 * the socket is drained, and no later edge comes. Such a connection would
 * keep its body's reservation until its timeout, so the sweep looks at every
 * connection holding one, and shuts down a socket whose peer has gone, which
 * MHD then sees.
 */
static int peer_gone(int fd)
{
	char c;
	ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/*
 * MHD takes its listening socket out of its epoll set while it is at
 * limits.max_connections and puts it back only at the start of a later
 * MHD_run(); if the connections that made room were its last events (idle
 * timeouts), nothing would call it again and connections waiting in the
 * backlog, and every new one, would never be accepted. So MHD runs at least
 * once a second.
 */
#define SERVER_RUN_MAX_MS 1000

/* Connections the open metrics listener takes at once. */
#define METRICS_MAX_CONNECTIONS 64

/*
 * Body bytes reserved by the requests of every worker of the process
 * (limits.buffered_bytes). A request reserves what it may buffer before it
 * reads a byte, so the sum of the buffers never passes the limit.
 */
static atomic_size_t buffered_total;

/* Reserves n bytes of the budget; 0, or -1 (nothing reserved) when they do
 * not fit. */
static int buffered_reserve(size_t n, size_t limit)
{
	size_t cur = atomic_load_explicit(&buffered_total, memory_order_relaxed);
	do {
		if (n > limit || cur > limit - n)
			return -1;
	} while (!atomic_compare_exchange_weak_explicit(&buffered_total, &cur, cur + n,
						       memory_order_relaxed, memory_order_relaxed));
	return 0;
}

static void buffered_release(size_t n)
{
	if (n)
		atomic_fetch_sub_explicit(&buffered_total, n, memory_order_relaxed);
}

size_t server_buffered_bytes(void)
{
	return atomic_load_explicit(&buffered_total, memory_order_relaxed);
}

static void arm_timer(struct server *s)
{
	MHD_UNSIGNED_LONG_LONG to;
	if (MHD_get_timeout(s->d, &to) != MHD_YES || to > SERVER_RUN_MAX_MS)
		to = SERVER_RUN_MAX_MS;
	loop_timer_set(s->w->loop, &s->timer, loop_now_ms() + (int64_t)to);
}

void server_run(struct server *s)
{
	if (!s || !s->d)
		return;
	s->need_run = 0;
	MHD_run(s->d);
	arm_timer(s);
}

static void io_cb(struct loop_io *io, uint32_t events)
{
	(void)events;
	server_run(io->arg);
}

static void timer_cb(struct loop_timer *t)
{
	server_run(t->arg);
}

static void queue_pending(struct request *r)
{
	if (r->response) {
		MHD_queue_response(r->conn, r->status, r->response);
		MHD_destroy_response(r->response);
		r->response = NULL;
	}
}

static struct conn *conn_of(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	return ci ? ci->socket_context : NULL;
}

static void conn_phase(struct MHD_Connection *c, enum conn_phase phase)
{
	struct conn *k = conn_of(c);
	if (k) {
		k->phase = phase;
		k->since_ms = loop_now_ms();
	}
}

static void notify_conn(void *cls, struct MHD_Connection *c, void **ctx,
			enum MHD_ConnectionNotificationCode code)
{
	struct server *s = cls;
	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		struct conn *k = calloc(1, sizeof *k);
		if (!k)
			return;
		const union MHD_ConnectionInfo *ci =
			MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
		k->fd = ci ? ci->connect_fd : -1;
		k->phase = CONN_HEADERS;
		k->since_ms = loop_now_ms();
		k->next = s->conns;
		if (s->conns)
			s->conns->prevp = &k->next;
		k->prevp = &s->conns;
		s->conns = k;
		*ctx = k;
	} else if (*ctx) {
		struct conn *k = *ctx;
		if (k->linger && k->fd >= 0)
			linger_start(&s->lingers, k->fd);
		*k->prevp = k->next;
		if (k->next)
			k->next->prevp = k->prevp;
		free(k);
		*ctx = NULL;
	}
}

static void sweep_cb(struct loop_timer *t)
{
	struct server *s = t->arg;
	int64_t now = loop_now_ms();
	int64_t limit = (int64_t)(s->w->cfg->connection_timeout_s * 1000);
	for (struct conn *k = s->conns; k; k = k->next) {
		if (k->fd < 0 || k->phase == CONN_BUSY)
			continue;
		if ((limit > 0 && now - k->since_ms > limit) ||
		    (k->holds_body && k->phase == CONN_BODY && peer_gone(k->fd)))
			shutdown(k->fd, SHUT_RDWR); /* MHD sees the close and cleans up */
	}
	linger_sweep(&s->lingers, now);
	loop_timer_set(s->w->loop, &s->sweep, now + 1000);
}

/*
 * First call, headers only: a request with a body is admitted (h->admit) and
 * gets its share of the buffered_bytes budget, or is answered at once. An
 * answer queued now makes MHD send it and close the connection without
 * reading the body (nor sending 100 Continue).
 */
static void intake(struct server *s, struct request *r)
{
	const struct config *cfg = s->w->cfg;
	const char *cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
						     MHD_HTTP_HEADER_CONTENT_LENGTH);
	const char *te = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
						     MHD_HTTP_HEADER_TRANSFER_ENCODING);
	unsigned long long announced = cl ? strtoull(cl, NULL, 10) : 0;
	if (!te && announced == 0)
		return; /* no body: dispatched once MHD has the whole request */
	r->at_intake = 1;
	if (s->h->admit(r) < 0) {
		/* answered (401, 404, 429) */
	} else if (announced > cfg->body_bytes) {
		server_respond_error(r, 413, "PAYLOAD_TOO_LARGE", "body exceeds %zu bytes",
				     cfg->body_bytes);
	} else {
		size_t want = te ? cfg->body_bytes : (size_t)announced;
		if (buffered_reserve(want, cfg->buffered_bytes) < 0) {
			server_respond_error(r, 503, "UNAVAILABLE",
					     "too many request bodies in flight; retry");
			server_response_header(r, "Retry-After", "1");
		} else {
			r->reserved = want;
			buf_init(&r->body, want);
			struct conn *k = conn_of(r->conn);
			if (k)
				k->holds_body = 1;
		}
	}
	r->at_intake = 0;
	if (r->response) {
		struct conn *k = conn_of(r->conn);
		if (k)
			k->linger = 1;
		queue_pending(r);
	}
}

/*
 * The request id: the client's X-Request-Id when it is a sane token (1 to
 * 63 bytes of letters, digits and "-_.:", no configured secret), else
 * "req_" and 16 random hex digits (a per-thread generator seeded once from
 * the kernel).
 */
static void request_id_choose(struct server *s, struct request *r)
{
	const char *h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-Request-Id");
	size_t n = h ? strlen(h) : 0;
	int sane = n > 0 && n < sizeof r->request_id;
	for (size_t i = 0; sane && i < n; i++)
		sane = isalnum((unsigned char)h[i]) || strchr("-_.:", h[i]) != NULL;
	if (sane && !scrub_found(s->w->cfg->scrub, h, n)) {
		memcpy(r->request_id, h, n + 1);
		return;
	}
	static _Thread_local uint64_t state;
	if (!state && (getrandom(&state, sizeof state, 0) != sizeof state || !state))
		state = (uint64_t)loop_wall_ms() ^ (uint64_t)(uintptr_t)r;
	uint64_t z = (state += 0x9e3779b97f4a7c15ULL); /* splitmix64 */
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	z ^= z >> 31;
	snprintf(r->request_id, sizeof r->request_id, "req_%016llx", (unsigned long long)z);
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *conn,
				 const char *url, const char *method,
				 const char *version, const char *upload_data,
				 size_t *upload_data_size, void **con_cls)
{
	struct server *s = cls;
	struct request *r = *con_cls;
	(void)version;
	if (!r) {
		r = calloc(1, sizeof *r);
		if (!r)
			return MHD_NO;
		r->w = s->w;
		r->gen = s->w->gen;
		confgen_hold(r->gen); /* it may keep pointers into the config */
		r->srv = s;
		r->conn = conn;
		r->metrics_only = s->metrics_only;
		snprintf(r->method, sizeof r->method, "%s", method);
		r->url = strdup(url);
		r->started_ms = loop_now_ms();
		buf_init(&r->body, 0);
		*con_cls = r;
		conn_phase(conn, CONN_BODY);
		if (!r->url)
			return MHD_NO;
		request_id_choose(s, r);
		log_ctx_clear();
		log_ctx_request(r->request_id);
		intake(s, r);
		return MHD_YES;
	}
	log_ctx_clear();
	log_ctx_request(r->request_id);
	if (*upload_data_size) {
		if (!r->too_large && !r->answered &&
		    buf_add(&r->body, upload_data, *upload_data_size) < 0)
			r->too_large = 1;
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (r->response) {
		queue_pending(r);
		return MHD_YES;
	}
	conn_phase(conn, CONN_BUSY);
	if (r->answered || r->suspended)
		return MHD_YES;
	if (r->too_large) {
		server_respond_error(r, 413, "PAYLOAD_TOO_LARGE", "body exceeds %zu bytes",
				     s->w->cfg->body_bytes);
		return MHD_YES;
	}
	s->h->dispatch(r);
	if (r->response && !r->suspended)
		queue_pending(r);
	return MHD_YES;
}

static void completed_cb(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct server *s = cls;
	struct request *r = *con_cls;
	(void)toe;
	if (!r)
		return;
	conn_phase(conn, CONN_HEADERS);
	struct conn *k = conn_of(conn);
	if (k)
		k->holds_body = 0;
	s->h->gone(r);
	if (r->stream)
		((struct stream_ctx *)r->stream)->r = NULL;
	if (r->response)
		MHD_destroy_response(r->response);
	buf_free(&r->body);
	buffered_release(r->reserved);
	free(r->url);
	confgen_release(r->gen);
	free(r);
	*con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char line[512];
	(void)cls;
	vsnprintf(line, sizeof line, fmt, ap);
	size_t n = strlen(line);
	while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	log_debug("http: %s", line);
}

static struct server *start(struct worker *w, const struct server_handlers *h, int fd,
			    int metrics_only, const char *where, char *err, size_t errlen)
{
	struct server *s = calloc(1, sizeof *s);
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->w = w;
	linger_init(&s->lingers, w->loop);
	s->h = h;
	s->metrics_only = metrics_only;
	s->listen_fd = fd;
	loop_timer_init(&s->timer, timer_cb, s);
	unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TURBO |
			 MHD_USE_ERROR_LOG;
	unsigned limit = metrics_only ? METRICS_MAX_CONNECTIONS : (unsigned)w->cfg->max_connections;
	s->d = MHD_start_daemon(flags, 0, NULL, NULL, access_cb, s,
				MHD_OPTION_LISTEN_SOCKET, fd,
				MHD_OPTION_NOTIFY_COMPLETED, completed_cb, s,
				MHD_OPTION_NOTIFY_CONNECTION, notify_conn, s,
				MHD_OPTION_CONNECTION_LIMIT, limit,
				MHD_OPTION_CONNECTION_TIMEOUT,
				(unsigned)w->cfg->connection_timeout_s,
				MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)16 * 1024,
				MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
				MHD_OPTION_END);
	if (!s->d) {
		snprintf(err, errlen, "cannot start the HTTP server on %s", where);
		free(s);
		return NULL;
	}
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_EPOLL_FD);
	if (!info || loop_io_add(w->loop, &s->io, info->epoll_fd, EPOLLIN, io_cb, s) < 0) {
		snprintf(err, errlen, "cannot watch the HTTP server");
		MHD_stop_daemon(s->d);
		free(s);
		return NULL;
	}
	arm_timer(s);
	loop_timer_init(&s->sweep, sweep_cb, s);
	loop_timer_set(w->loop, &s->sweep, loop_now_ms() + 1000);
	return s;
}

struct server *server_new(struct worker *w, const struct server_handlers *h, char *err,
			  size_t errlen)
{
	return start(w, h, w->listen_fd, 0, w->cfg->listen, err, errlen);
}

struct server *server_new_metrics(struct worker *w, const struct server_handlers *h, int fd,
				  char *err, size_t errlen)
{
	struct server *s = start(w, h, fd, 1, w->cfg->metrics_listen, err, errlen);
	if (!s)
		close(fd);
	return s;
}

void server_quiesce(struct server *s)
{
	if (!s || !s->d)
		return;
	MHD_socket fd = MHD_quiesce_daemon(s->d);
	if (fd != MHD_INVALID_SOCKET)
		close(fd);
}

void server_free(struct server *s)
{
	if (!s)
		return;
	loop_io_del(s->w->loop, &s->io);
	loop_timer_stop(s->w->loop, &s->timer);
	loop_timer_stop(s->w->loop, &s->sweep);
	MHD_stop_daemon(s->d);
	linger_close_all(&s->lingers);
	free(s);
}

long server_connections(struct server *s)
{
	const union MHD_DaemonInfo *info =
		MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
	return info ? (long)info->num_connections : 0;
}

const char *server_header(struct request *r, const char *name)
{
	return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

const char *server_query(struct request *r, const char *name)
{
	return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

struct each_ctx {
	void (*fn)(void *, const char *, const char *);
	void *arg;
};

static enum MHD_Result each_cb(void *cls, enum MHD_ValueKind kind, const char *key,
			       const char *value)
{
	struct each_ctx *c = cls;
	(void)kind;
	c->fn(c->arg, key, value ? value : "");
	return MHD_YES;
}

void server_each_header(struct request *r,
			void (*fn)(void *arg, const char *name, const char *value),
			void *arg)
{
	struct each_ctx c = { fn, arg };
	MHD_get_connection_values(r->conn, MHD_HEADER_KIND, each_cb, &c);
}

void server_each_query(struct request *r,
		       void (*fn)(void *arg, const char *name, const char *value),
		       void *arg)
{
	struct each_ctx c = { fn, arg };
	MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, each_cb, &c);
}

void server_suspend(struct request *r)
{
	if (r->suspended)
		return;
	r->suspended = 1;
	MHD_suspend_connection(r->conn);
}

void server_respond_raw(struct request *r, unsigned status, char *body, size_t len,
			const char *content_type)
{
	if (r->answered) {
		free(body);
		return;
	}
	struct MHD_Response *resp =
		MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(body);
		return;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	MHD_add_response_header(resp, "X-Request-Id", r->request_id);
	r->response = resp;
	r->status = status;
	r->answered = 1;
	metrics_inc(M_HTTP_REQUESTS);
	if (log_enabled(LOG_LEVEL_DEBUG))
		log_debug("http: %s answered %u (request %s)", r->method, status, r->request_id);
	struct server *s = r->srv;
	if (!r->at_intake && s->h->hold && s->h->hold(r)) {
		/* Held until the commit: what it says may not be durable yet.
		 * (An answer from the headers says nothing about the store.) */
		if (!r->suspended) {
			r->suspended = 1;
			MHD_suspend_connection(r->conn);
		}
		r->dnext = s->held;
		s->held = r;
		return;
	}
	if (r->suspended) {
		r->suspended = 0;
		MHD_resume_connection(r->conn);
		r->srv->need_run = 1;
	}
}


void server_respond_json(struct request *r, unsigned status, json_t *v)
{
	char *text = json_dumps(v, JSON_COMPACT);
	json_decref(v);
	if (!text) {
		server_respond_error(r, 500, "INTERNAL", "response encoding failed");
		return;
	}
	server_respond_raw(r, status, text, strlen(text), "application/json");
}

void server_respond_error(struct request *r, unsigned status, const char *code,
			  const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	struct buf b;
	buf_init(&b, 4096);
	buf_adds(&b, "{\"error\":{\"code\":");
	buf_add_json_str(&b, code);
	buf_adds(&b, ",\"message\":");
	buf_add_json_str(&b, msg);
	buf_adds(&b, "}}");
	size_t len;
	char *text = buf_steal(&b, &len);
	server_respond_raw(r, status, text, len, "application/json");
}

void server_release(struct server *s, int committed)
{
	if (!s)
		return;
	struct request *r = s->held, *n;
	s->held = NULL;
	for (; r; r = n) {
		n = r->dnext;
		r->dnext = NULL;
		if ((!committed || (s->h->lost && s->h->lost(r))) && r->status < 400) {
			MHD_destroy_response(r->response);
			r->response = NULL;
			r->answered = 0;
			r->suspended = 0; /* answered below through the normal path */
			MHD_resume_connection(r->conn);
			s->need_run = 1;
			server_respond_error(r, 503, "UNAVAILABLE", "the job store is unavailable; retry");
			continue;
		}
		r->suspended = 0;
		MHD_resume_connection(r->conn);
		s->need_run = 1;
	}
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct stream_ctx *sc = cls;
	(void)pos;
	long n = sc->read(sc->cls, buf, max);
	if (n < 0)
		return MHD_CONTENT_READER_END_OF_STREAM;
	if (n == 0 && sc->r && !sc->paused) {
		/* Nothing yet: pause, so MHD does not spin on this connection. */
		sc->paused = 1;
		sc->r->suspended = 1;
		MHD_suspend_connection(sc->r->conn);
	}
	return (ssize_t)n;
}

static void stream_free(void *cls)
{
	struct stream_ctx *sc = cls;
	if (sc->free_cls)
		sc->free_cls(sc->cls);
	if (sc->r && sc->r->stream == sc)
		sc->r->stream = NULL;
	free(sc);
}

void server_respond_stream(struct request *r, unsigned status, const char *content_type,
			   server_stream_fn read, void *cls, void (*free_cls)(void *))
{
	struct stream_ctx *sc = calloc(1, sizeof *sc);
	if (r->answered || !sc) {
		free(sc);
		if (free_cls)
			free_cls(cls);
		return;
	}
	sc->r = r;
	sc->read = read;
	sc->cls = cls;
	sc->free_cls = free_cls;
	struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096,
								      stream_reader, sc, stream_free);
	if (!resp) {
		stream_free(sc);
		server_respond_error(r, 503, "UNAVAILABLE", "cannot stream");
		return;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
	MHD_add_response_header(resp, "X-Request-Id", r->request_id);
	r->stream = sc;
	r->response = resp;
	r->status = status;
	r->answered = 1;
	metrics_inc(M_HTTP_REQUESTS);
	if (r->suspended) {
		r->suspended = 0;
		MHD_resume_connection(r->conn);
		r->srv->need_run = 1;
	}
}

void server_stream_wake(struct request *r)
{
	struct stream_ctx *sc = r->stream;
	if (!sc || !sc->paused)
		return;
	sc->paused = 0;
	r->suspended = 0;
	MHD_resume_connection(r->conn);
	r->srv->need_run = 1;
}

void server_answer_header(struct request *r, const char *name, const char *value)
{
	if (r->response)
		MHD_add_response_header(r->response, name, value);
}

int server_need_run(struct server *s)
{
	return s && s->need_run;
}

void server_response_header(struct request *r, const char *name, const char *value)
{
	if (r->response)
		MHD_add_response_header(r->response, name, value);
}
