/*
 * test_fetch.c: the fetcher (core/fetch.c) on a real loop against a tiny
 * HTTP server of the test's own (libmicrohttpd on 127.0.0.1, port 0, its
 * own thread): GET and POST round-trips with headers and body, the response
 * cap, a timeout, a refused connection, the URL guard (a loopback address
 * refused without a connection being made, allowed when private addresses
 * are), many concurrent requests (at most FETCH_PER_HOST connections to one
 * host, the rest waiting their turn), requests that wait keeping their
 * deadline, and fetcher_free with requests in flight and waiting.
 *
 * No verdict depends on how long anything took; a loop watchdog (a timer
 * far past every request's own timeout) turns a callback that never comes
 * into a failed check instead of a hang.
 */
#include "check.h"
#include "fetch.h"
#include "loop.h"
#include "urlguard.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- the test server ------------------------------------------------------ */

static atomic_int connections; /* accepted by the server, ever */
static atomic_int requests;    /* complete requests answered */

struct upload {
	char *body;
	size_t len;
};

static enum MHD_Result accept_cb(void *cls, const struct sockaddr *addr, socklen_t len)
{
	(void)cls;
	(void)addr;
	(void)len;
	atomic_fetch_add(&connections, 1);
	return MHD_YES;
}

static void completed_cb(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	(void)cls;
	(void)c;
	(void)toe;
	struct upload *u = *con_cls;
	if (u) {
		free(u->body);
		free(u);
		*con_cls = NULL;
	}
}

static enum MHD_Result answer(struct MHD_Connection *c, unsigned status, char *text, size_t len)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
	MHD_add_response_header(r, "X-Reply", "yes");
	MHD_add_response_header(r, "Content-Type", "text/plain");
	enum MHD_Result ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	atomic_fetch_add(&requests, 1);
	return ret;
}

/*
 * /echo: "METHOD|X-Test header|Content-Type|body" with status 201 for a
 * POST, 200 otherwise. /big?n=N: N bytes of 'b'. /status?code=N: that
 * status, empty body.
 */
static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
			       const char *method, const char *version, const char *data,
			       size_t *data_size, void **con_cls)
{
	(void)cls;
	(void)version;
	struct upload *u = *con_cls;
	if (!u) {
		u = calloc(1, sizeof *u);
		if (!u)
			return MHD_NO;
		*con_cls = u;
		return MHD_YES;
	}
	if (*data_size) {
		char *nb = realloc(u->body, u->len + *data_size + 1);
		if (!nb)
			return MHD_NO;
		memcpy(nb + u->len, data, *data_size);
		u->body = nb;
		u->len += *data_size;
		u->body[u->len] = '\0';
		*data_size = 0;
		return MHD_YES;
	}
	if (strcmp(url, "/echo") == 0) {
		const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Test");
		const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
		size_t n = strlen(method) + (h ? strlen(h) : 1) + (ct ? strlen(ct) : 1) + u->len + 8;
		char *text = malloc(n);
		if (!text)
			return MHD_NO;
		int k = snprintf(text, n, "%s|%s|%s|%s", method, h ? h : "-", ct ? ct : "-",
				 u->body ? u->body : "");
		return answer(c, strcmp(method, "POST") == 0 ? 201 : 200, text, (size_t)k);
	}
	if (strcmp(url, "/big") == 0) {
		const char *ns = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "n");
		size_t n = ns ? strtoul(ns, NULL, 10) : 0;
		char *text = malloc(n + 1);
		if (!text)
			return MHD_NO;
		memset(text, 'b', n);
		return answer(c, 200, text, n);
	}
	if (strcmp(url, "/status") == 0) {
		const char *cs = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "code");
		return answer(c, cs ? (unsigned)atoi(cs) : 500, strdup(""), 0);
	}
	return answer(c, 404, strdup("no such path"), 12);
}

static struct MHD_Daemon *server;
static int server_port;

static int server_start(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	server = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, 0,
				  accept_cb, NULL, handler, NULL,
				  MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
				  MHD_OPTION_NOTIFY_COMPLETED, completed_cb, NULL,
				  MHD_OPTION_CONNECTION_LIMIT, (unsigned)1000,
				  MHD_OPTION_END);
	if (!server)
		return -1;
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(server, MHD_DAEMON_INFO_BIND_PORT);
	server_port = info ? info->port : 0;
	return server_port > 0 ? 0 : -1;
}

/* A port on 127.0.0.1 that nothing listens on (bound, then closed). */
static int closed_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof sa;
	int port = 0;
	if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		port = ntohs(sa.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

/* A listening socket that never accepts: connections complete in the
 * kernel's backlog and no answer ever comes. Returns the fd; *port set. */
static int silent_listener(int *port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof sa;
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 16) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	*port = ntohs(sa.sin_port);
	return fd;
}

/* ---- the client side ------------------------------------------------------ */

struct result {
	int done;
	long status;
	char *error;
	char *body;
	size_t body_len;
	int truncated;
	char reply_header[64];
	char url[256];
};

struct run {
	struct loop *l;
	struct fetcher *f;
	struct loop_timer watchdog;
	int pending;
	int watchdog_fired;
};

struct call {
	struct run *run;
	struct result *res;
};

static void result_clear(struct result *r)
{
	free(r->error);
	free(r->body);
	memset(r, 0, sizeof *r);
}

static void done_cb(void *arg, const struct fetch_response *res)
{
	struct call *c = arg;
	struct result *r = c->res;
	r->done++;
	r->status = res->status;
	r->error = res->error ? strdup(res->error) : NULL;
	r->body = malloc(res->body_len + 1);
	if (r->body) {
		memcpy(r->body, res->body, res->body_len);
		r->body[res->body_len] = '\0';
	}
	r->body_len = res->body_len;
	r->truncated = res->truncated;
	r->reply_header[0] = '\0';
	fetch_header(res->headers, res->headers_len, "X-Reply", r->reply_header,
		     sizeof r->reply_header);
	snprintf(r->url, sizeof r->url, "%s", res->url ? res->url : "");
	if (--c->run->pending == 0)
		loop_stop(c->run->l);
	free(c);
}

static void watchdog_cb(struct loop_timer *t)
{
	struct run *run = t->arg;
	run->watchdog_fired = 1;
	loop_stop(run->l);
}

static int run_init(struct run *run)
{
	memset(run, 0, sizeof *run);
	run->l = loop_new();
	run->f = run->l ? fetcher_new(run->l, 16) : NULL;
	loop_timer_init(&run->watchdog, watchdog_cb, run);
	return run->f ? 0 : -1;
}

static void run_free(struct run *run)
{
	fetcher_free(run->f);
	loop_free(run->l);
}

/* Starts one request; 0 or what fetch_start returned. */
static int start(struct run *run, struct fetch_request *req, struct result *res)
{
	struct call *c = calloc(1, sizeof *c);
	if (!c)
		return -1;
	c->run = run;
	c->res = res;
	run->pending++;
	int rc = fetch_start(run->f, req, done_cb, c);
	if (rc < 0) {
		run->pending--;
		free(c);
	}
	return rc;
}

/* Runs the loop until every started request called back. */
static void run_all(struct run *run)
{
	if (run->pending == 0)
		return;
	loop_timer_set(run->l, &run->watchdog, loop_now_ms() + 60000);
	CHECK_EQ_INT(loop_run(run->l), 0);
	CHECK_EQ_INT(run->watchdog_fired, 0);
	CHECK_EQ_INT(run->pending, 0);
	loop_timer_stop(run->l, &run->watchdog);
}

static void url_of(char *out, size_t n, const char *path)
{
	snprintf(out, n, "http://127.0.0.1:%d%s", server_port, path);
}

/* ---- the tests ------------------------------------------------------------ */

static void test_get_and_post(void)
{
	struct run run;
	CHECK_EQ_INT(run_init(&run), 0);
	char url[128];
	url_of(url, sizeof url, "/echo");
	struct result get = {0}, post = {0}, put = {0}, post_empty = {0};

	struct fetch_request g = { .method = "GET", .url = url, .timeout_ms = 20000 };
	g.headers = curl_slist_append(NULL, "X-Test: get-header");
	CHECK_EQ_INT(start(&run, &g, &get), 0);

	static const char body[] = "{\"prompt\":\"a cat\",\"n\":1}";
	struct fetch_request p = { .method = "POST", .url = url, .timeout_ms = 20000,
				   .body = body, .body_len = sizeof body - 1 };
	p.headers = curl_slist_append(NULL, "X-Test: post-header");
	p.headers = curl_slist_append(p.headers, "Content-Type: application/json");
	CHECK_EQ_INT(start(&run, &p, &post), 0);

	/* A body with a NUL in it is sent as given (body_len, not strlen). */
	static const char bin[] = { 'a', 'b', 'c' };
	struct fetch_request u = { .method = "PUT", .url = url, .timeout_ms = 20000,
				   .body = bin, .body_len = sizeof bin };
	CHECK_EQ_INT(start(&run, &u, &put), 0);

	struct fetch_request pe = { .method = "POST", .url = url, .timeout_ms = 20000 };
	CHECK_EQ_INT(start(&run, &pe, &post_empty), 0);
	run_all(&run);

	CHECK_EQ_INT(get.done, 1);
	CHECK_EQ_INT(get.status, 200);
	CHECK(get.error == NULL);
	CHECK_STR_EQ(get.body, "GET|get-header|-|");
	CHECK_STR_EQ(get.reply_header, "yes");
	CHECK_STR_EQ(get.url, url);
	CHECK_EQ_INT(get.truncated, 0);

	CHECK_EQ_INT(post.done, 1);
	CHECK_EQ_INT(post.status, 201);
	CHECK(post.error == NULL);
	CHECK_STR_EQ(post.body, "POST|post-header|application/json|{\"prompt\":\"a cat\",\"n\":1}");
	CHECK_STR_EQ(post.reply_header, "yes");

	CHECK_EQ_INT(put.status, 200);
	CHECK_STR_EQ(put.body, "PUT|-|application/x-www-form-urlencoded|abc");
	CHECK_EQ_INT(post_empty.status, 201);
	CHECK(post_empty.body && strncmp(post_empty.body, "POST|-|", 7) == 0);

	/* HEAD: the status and headers, no body waited for. */
	struct result head = {0};
	struct fetch_request hd = { .method = "HEAD", .url = url, .timeout_ms = 5000 };
	CHECK_EQ_INT(start(&run, &hd, &head), 0);
	run_all(&run);
	CHECK_EQ_INT(head.status, 200);
	CHECK(head.error == NULL);
	if (head.error)
		fprintf(stderr, "    HEAD: %s\n", head.error);
	CHECK_EQ_INT(head.body_len, 0);
	CHECK_STR_EQ(head.reply_header, "yes");
	result_clear(&head);

	/* A non-2xx status is a response, not an error. */
	struct result st = {0};
	char surl[128];
	url_of(surl, sizeof surl, "/status?code=503");
	struct fetch_request s = { .method = "GET", .url = surl, .timeout_ms = 20000 };
	CHECK_EQ_INT(start(&run, &s, &st), 0);
	run_all(&run);
	CHECK_EQ_INT(st.status, 503);
	CHECK(st.error == NULL);
	CHECK_EQ_INT(st.body_len, 0);
	CHECK_EQ_INT(fetcher_inflight(run.f), 0);

	result_clear(&get);
	result_clear(&post);
	result_clear(&put);
	result_clear(&post_empty);
	result_clear(&st);
	run_free(&run);
}

/* max_response: the body kept is cut at the cap and marked truncated (the
 * rest is read and dropped, the status still arrives); at the cap exactly,
 * nothing is cut. */
static void test_response_cap(void)
{
	struct run run;
	CHECK_EQ_INT(run_init(&run), 0);
	char big[128], exact[128];
	url_of(big, sizeof big, "/big?n=300000");
	url_of(exact, sizeof exact, "/big?n=1000");
	struct result rb = {0}, re = {0};
	struct fetch_request b = { .method = "GET", .url = big, .timeout_ms = 20000,
				   .max_response = 1000 };
	struct fetch_request e = { .method = "GET", .url = exact, .timeout_ms = 20000,
				   .max_response = 1000 };
	CHECK_EQ_INT(start(&run, &b, &rb), 0);
	CHECK_EQ_INT(start(&run, &e, &re), 0);
	run_all(&run);
	CHECK_EQ_INT(rb.status, 200);
	CHECK_EQ_INT(rb.truncated, 1);
	CHECK_EQ_INT(rb.body_len, 1000);
	CHECK(rb.body && strspn(rb.body, "b") == 1000);
	CHECK_EQ_INT(re.status, 200);
	CHECK_EQ_INT(re.truncated, 0);
	CHECK_EQ_INT(re.body_len, 1000);
	result_clear(&rb);
	result_clear(&re);
	run_free(&run);
}

/* A server that never answers: the request's own timeout ends it with an
 * error and no status. */
static void test_timeout(void)
{
	int port = 0;
	int lfd = silent_listener(&port);
	CHECK(lfd >= 0);
	if (lfd < 0)
		return;
	struct run run;
	CHECK_EQ_INT(run_init(&run), 0);
	char url[128];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/never", port);
	struct result r = {0};
	struct fetch_request req = { .method = "GET", .url = url, .timeout_ms = 300 };
	CHECK_EQ_INT(start(&run, &req, &r), 0);
	run_all(&run);
	CHECK_EQ_INT(r.done, 1);
	CHECK_EQ_INT(r.status, 0);
	CHECK(r.error != NULL);
	CHECK(r.error && strstr(r.error, "timed out") != NULL);
	result_clear(&r);
	run_free(&run);
	close(lfd);
}

static void test_refused(void)
{
	struct run run;
	CHECK_EQ_INT(run_init(&run), 0);
	int port = closed_port();
	CHECK(port > 0);
	char url[128];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/x", port);
	struct result r = {0};
	struct fetch_request req = { .method = "GET", .url = url, .timeout_ms = 20000 };
	CHECK_EQ_INT(start(&run, &req, &r), 0);
	run_all(&run);
	CHECK_EQ_INT(r.done, 1);
	CHECK_EQ_INT(r.status, 0);
	CHECK(r.error != NULL);
	CHECK(r.error && (strstr(r.error, "connect") || strstr(r.error, "Connect")));
	/* A URL curl cannot use at all: an error in the callback, not a crash. */
	struct result bad = {0};
	struct fetch_request b = { .method = "GET", .url = "ftp://127.0.0.1/x", .timeout_ms = 2000 };
	int rc = start(&run, &b, &bad);
	run_all(&run);
	if (rc == 0) {
		CHECK_EQ_INT(bad.done, 1);
		CHECK(bad.error != NULL);
		CHECK_EQ_INT(bad.status, 0);
	}
	result_clear(&r);
	result_clear(&bad);
	run_free(&run);
}

/*
 * The guard: a loopback address is refused when private addresses are not
 * allowed, before anything reaches the server (no connection accepted), by
 * IP literal and by a name that resolves there; allowed when they are.
 */
static void test_guard(void)
{
	struct run run;
	CHECK_EQ_INT(run_init(&run), 0);
	char url[128], named[128];
	url_of(url, sizeof url, "/echo");
	snprintf(named, sizeof named, "http://localhost:%d/echo", server_port);
	struct urlguard_policy strict = { .require_https = 0, .allow_private = 0 };
	struct urlguard_policy open = { .require_https = 0, .allow_private = 1 };

	int conns = atomic_load(&connections), reqs = atomic_load(&requests);
	struct result r1 = {0}, r2 = {0};
	struct fetch_request a = { .method = "POST", .url = url, .timeout_ms = 20000,
				   .body = "{}", .body_len = 2, .guard = &strict };
	a.headers = curl_slist_append(NULL, "X-Test: must-not-arrive");
	struct fetch_request b = { .method = "GET", .url = named, .timeout_ms = 20000,
				   .guard = &strict };
	CHECK_EQ_INT(start(&run, &a, &r1), 0);
	CHECK_EQ_INT(start(&run, &b, &r2), 0);
	run_all(&run);
	CHECK_EQ_INT(r1.status, 0);
	CHECK_EQ_INT(r2.status, 0);
	CHECK(r1.error && strstr(r1.error, "address not allowed") != NULL);
	CHECK(r2.error && strstr(r2.error, "address not allowed") != NULL);
	CHECK_EQ_INT(atomic_load(&connections), conns);
	CHECK_EQ_INT(atomic_load(&requests), reqs);

	/* Allowed: the request arrives. */
	struct result r3 = {0};
	struct fetch_request c = { .method = "GET", .url = url, .timeout_ms = 20000,
				   .guard = &open };
	c.headers = curl_slist_append(NULL, "X-Test: guarded-ok");
	CHECK_EQ_INT(start(&run, &c, &r3), 0);
	run_all(&run);
	CHECK_EQ_INT(r3.status, 200);
	CHECK(r3.error == NULL);
	CHECK_STR_EQ(r3.body, "GET|guarded-ok|-|");
	CHECK(atomic_load(&connections) > conns);
	CHECK_EQ_INT(atomic_load(&requests), reqs + 1);

	/* An unguarded request to the same place is not checked at all. */
	struct result r4 = {0};
	struct fetch_request d = { .method = "GET", .url = url, .timeout_ms = 20000 };
	CHECK_EQ_INT(start(&run, &d, &r4), 0);
	run_all(&run);
	CHECK_EQ_INT(r4.status, 200);

	/* And a strict one after them, on a warm pool: still refused, still
	 * nothing reaches the server (reused connections are checked too). */
	reqs = atomic_load(&requests);
	struct result r5 = {0};
	struct fetch_request e = { .method = "GET", .url = url, .timeout_ms = 20000,
				   .guard = &strict };
	CHECK_EQ_INT(start(&run, &e, &r5), 0);
	run_all(&run);
	CHECK_EQ_INT(r5.status, 0);
	CHECK(r5.error && strstr(r5.error, "address not allowed") != NULL);
	CHECK_EQ_INT(atomic_load(&requests), reqs);

	result_clear(&r1);
	result_clear(&r2);
	result_clear(&r3);
	result_clear(&r4);
	result_clear(&r5);
	run_free(&run);
}

/* Runs req alone on run, so the next request takes the same easy handle
 * back from the free list. */
static void one(struct run *run, struct fetch_request *req, struct result *res)
{
	result_clear(res);
	CHECK_EQ_INT(start(run, req, res), 0);
	run_all(run);
}

/*
 * One easy handle, reused without a reset, carries nothing of a request into
 * the next: not its method or body (a DELETE after a POST sends no body, a
 * GET after a HEAD gets its body), not its headers, its response cap or its
 * proxy, and the guard still refuses on it. owned_body is sent as given and
 * freed by the fetcher (ASan would tell).
 */
static void test_reused_handle(void)
{
	struct run run;
	CHECK_EQ_INT(run_init(&run), 0);
	char url[128], big[128];
	url_of(url, sizeof url, "/echo");
	url_of(big, sizeof big, "/big?n=5000");
	struct urlguard_policy strict = { .require_https = 0, .allow_private = 0 };
	struct result r = {0};

	struct fetch_request p = { .method = "POST", .url = url, .timeout_ms = 20000,
				   .body = "{\"a\":1}", .body_len = 7 };
	p.headers = curl_slist_append(NULL, "X-Test: first");
	p.headers = curl_slist_append(p.headers, "Content-Type: application/json");
	one(&run, &p, &r);
	CHECK_STR_EQ(r.body, "POST|first|application/json|{\"a\":1}");

	struct fetch_request del = { .method = "DELETE", .url = url, .timeout_ms = 20000 };
	one(&run, &del, &r);
	CHECK_EQ_INT(r.status, 200);
	CHECK_STR_EQ(r.body, "DELETE|-|-|");

	struct fetch_request hd = { .method = "HEAD", .url = url, .timeout_ms = 5000 };
	one(&run, &hd, &r);
	CHECK_EQ_INT(r.status, 200);
	CHECK_EQ_INT(r.body_len, 0);

	struct fetch_request g = { .method = "GET", .url = url, .timeout_ms = 20000 };
	one(&run, &g, &r);
	CHECK_EQ_INT(r.status, 200);
	CHECK_STR_EQ(r.body, "GET|-|-|");

	char *owned = strdup("owned body");
	struct fetch_request u = { .method = "PUT", .url = url, .timeout_ms = 20000,
				   .owned_body = owned, .body_len = strlen(owned) };
	one(&run, &u, &r);
	CHECK_STR_EQ(r.body, "PUT|-|application/x-www-form-urlencoded|owned body");

	struct fetch_request pe = { .method = "POST", .url = url, .timeout_ms = 20000 };
	one(&run, &pe, &r);
	CHECK_EQ_INT(r.status, 201);
	CHECK(r.body && strncmp(r.body, "POST|-|", 7) == 0 && r.body[strlen(r.body) - 1] == '|');

	struct fetch_request cap = { .method = "GET", .url = big, .timeout_ms = 20000,
				     .max_response = 100 };
	one(&run, &cap, &r);
	CHECK_EQ_INT(r.truncated, 1);
	CHECK_EQ_INT(r.body_len, 100);
	struct fetch_request nocap = { .method = "GET", .url = big, .timeout_ms = 20000 };
	one(&run, &nocap, &r);
	CHECK_EQ_INT(r.truncated, 0);
	CHECK_EQ_INT(r.body_len, 5000);

	/* A proxy named by one request (nothing listens there) is not used by
	 * the next, which names none. */
	struct fetch_request px = { .method = "GET", .url = url, .timeout_ms = 5000,
				    .proxy = "http://127.0.0.1:1" };
	one(&run, &px, &r);
	CHECK_EQ_INT(r.status, 0);
	CHECK(r.error != NULL);
	one(&run, &g, &r);
	CHECK_EQ_INT(r.status, 200);
	CHECK_STR_EQ(r.body, "GET|-|-|");

	/* Guarded on the reused handle: refused before anything is sent; and
	 * the plain request after it is not refused. */
	int reqs = atomic_load(&requests);
	struct fetch_request gd = { .method = "POST", .url = url, .timeout_ms = 20000,
				    .owned_body = strdup("{}"), .body_len = 2, .guard = &strict };
	one(&run, &gd, &r);
	CHECK_EQ_INT(r.status, 0);
	CHECK(r.error && strstr(r.error, "address not allowed") != NULL);
	CHECK_EQ_INT(atomic_load(&requests), reqs);
	one(&run, &g, &r);
	CHECK_EQ_INT(r.status, 200);

	result_clear(&r);
	run_free(&run);
}

/* Many requests at once, more than the connection cache holds: every one
 * completes, each with its own answer. */
static void test_concurrent(void)
{
	enum { N = 300 };
	struct run run;
	CHECK_EQ_INT(run_init(&run), 0);
	static struct result rs[N];
	static char urls[N][128];
	static char bodies[N][32];
	int started = 0;
	for (int i = 0; i < N; i++) {
		url_of(urls[i], sizeof urls[i], "/echo");
		int n = snprintf(bodies[i], sizeof bodies[i], "request-%d", i);
		struct fetch_request req = { .method = "POST", .url = urls[i], .timeout_ms = 30000,
					     .body = bodies[i], .body_len = (size_t)n };
		char h[64];
		snprintf(h, sizeof h, "X-Test: h%d", i);
		req.headers = curl_slist_append(NULL, h);
		if (start(&run, &req, &rs[i]) == 0)
			started++;
	}
	CHECK_EQ_INT(started, N);
	CHECK_EQ_INT(fetcher_inflight(run.f), N);
	run_all(&run);
	int ok = 0;
	for (int i = 0; i < N; i++) {
		char want[96];
		snprintf(want, sizeof want, "POST|h%d|application/x-www-form-urlencoded|request-%d", i, i);
		if (rs[i].done == 1 && rs[i].status == 201 && rs[i].body &&
		    strcmp(rs[i].body, want) == 0)
			ok++;
		else if (ok + 5 > i) /* the first few failures, to see why */
			fprintf(stderr, "    request %d: done %d status %ld error %s body %s\n", i,
				rs[i].done, rs[i].status, rs[i].error ? rs[i].error : "-",
				rs[i].body ? rs[i].body : "-");
		result_clear(&rs[i]);
	}
	CHECK_EQ_INT(ok, N);
	CHECK_EQ_INT(fetcher_inflight(run.f), 0);
	run_free(&run);
}

/* Many more requests to one host than its cap (FETCH_PER_HOST, or what
 * fetcher_set_per_host set: per_host > 0): all are answered, over at most
 * that many connections, every one reused by the waiting ones. */
static void per_host_cap(long per_host)
{
	enum { N = 4 * FETCH_PER_HOST + 7 };
	long cap = per_host > 0 ? per_host : FETCH_PER_HOST;
	struct run run;
	CHECK_EQ_INT(run_init(&run), 0);
	/* idle connections kept: as many as may run at once (as a worker does) */
	fetcher_free(run.f);
	run.f = fetcher_new(run.l, FETCH_PER_HOST);
	CHECK(run.f != NULL);
	if (!run.f) {
		loop_free(run.l);
		return;
	}
	if (per_host > 0)
		fetcher_set_per_host(run.f, per_host);
	static struct result rs[N];
	char url[128];
	url_of(url, sizeof url, "/echo");
	int before = atomic_load(&connections), started = 0;
	for (int i = 0; i < N; i++) {
		struct fetch_request req = { .method = "POST", .url = url, .timeout_ms = 30000,
					     .body = "b", .body_len = 1 };
		req.headers = curl_slist_append(NULL, "X-Test: cap");
		if (start(&run, &req, &rs[i]) == 0)
			started++;
	}
	CHECK_EQ_INT(started, N);
	CHECK_EQ_INT(fetcher_inflight(run.f), N);
	run_all(&run);
	int ok = 0;
	for (int i = 0; i < N; i++) {
		if (rs[i].done == 1 && rs[i].status == 201)
			ok++;
		result_clear(&rs[i]);
	}
	CHECK_EQ_INT(ok, N);
	int opened = atomic_load(&connections) - before;
	CHECK(opened >= 1 && opened <= cap);
	CHECK_EQ_INT(fetcher_inflight(run.f), 0);
	run_free(&run);
}

static void test_per_host_cap(void)
{
	per_host_cap(0);
	per_host_cap(3); /* limits.per_host */
}

/* Requests waiting behind FETCH_PER_HOST that never get an answer keep their
 * own deadline: each is called back once, with an error and no status. */
static void test_waiting_deadline(void)
{
	enum { N = FETCH_PER_HOST + 6 };
	int port = 0;
	int lfd = silent_listener(&port);
	CHECK(lfd >= 0);
	if (lfd < 0)
		return;
	struct run run;
	CHECK_EQ_INT(run_init(&run), 0);
	static struct result rs[N];
	char url[128];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/never", port);
	for (int i = 0; i < N; i++) {
		struct fetch_request req = { .method = "GET", .url = url, .timeout_ms = 300 };
		CHECK_EQ_INT(start(&run, &req, &rs[i]), 0);
	}
	CHECK_EQ_INT(fetcher_inflight(run.f), N);
	run_all(&run);
	int failed = 0;
	for (int i = 0; i < N; i++) {
		if (rs[i].done == 1 && rs[i].status == 0 && rs[i].error)
			failed++;
		result_clear(&rs[i]);
	}
	CHECK_EQ_INT(failed, N);
	CHECK_EQ_INT(fetcher_inflight(run.f), 0);
	run_free(&run);
	close(lfd);
}

/* fetcher_free with requests in flight: their callbacks never run, and
 * nothing leaks (ASan). */
static int never_called;

static void never_cb(void *arg, const struct fetch_response *res)
{
	(void)arg;
	(void)res;
	never_called++;
}

static void test_free_in_flight(void)
{
	int port = 0;
	int lfd = silent_listener(&port);
	CHECK(lfd >= 0);
	if (lfd < 0)
		return;
	struct loop *l = loop_new();
	struct fetcher *f = l ? fetcher_new(l, 4) : NULL;
	CHECK(f != NULL);
	if (!f) {
		loop_free(l);
		close(lfd);
		return;
	}
	char url[128];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/never", port);
	for (int i = 0; i < 3; i++) {
		struct fetch_request req = { .method = "POST", .url = url, .timeout_ms = 20000,
					     .body = "x", .body_len = 1 };
		req.headers = curl_slist_append(NULL, "X-Test: 1");
		CHECK_EQ_INT(fetch_start(f, &req, never_cb, NULL), 0);
	}
	CHECK_EQ_INT(fetcher_inflight(f), 3);
	/* and more than the host takes at once: some wait, and are freed too */
	for (int i = 0; i < FETCH_PER_HOST; i++) {
		struct fetch_request req = { .method = "POST", .url = url, .timeout_ms = 20000,
					     .body = "x", .body_len = 1 };
		req.headers = curl_slist_append(NULL, "X-Test: 1");
		CHECK_EQ_INT(fetch_start(f, &req, never_cb, NULL), 0);
	}
	CHECK_EQ_INT(fetcher_inflight(f), 3 + FETCH_PER_HOST);
	fetcher_free(f);
	loop_free(l);
	CHECK_EQ_INT(never_called, 0);
	close(lfd);
}

int main(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	/* Test traffic stays on this machine: no proxy from the environment. */
	unsetenv("http_proxy");
	unsetenv("HTTP_PROXY");
	unsetenv("https_proxy");
	unsetenv("HTTPS_PROXY");
	unsetenv("ALL_PROXY");
	unsetenv("all_proxy");
	if (server_start() < 0) {
		fprintf(stderr, "cannot start the test server\n");
		return 1;
	}
	test_get_and_post();
	test_response_cap();
	test_timeout();
	test_refused();
	test_guard();
	test_reused_handle();
	test_per_host_cap();
	test_waiting_deadline();
	test_concurrent();
	test_free_in_flight();
	MHD_stop_daemon(server);
	curl_global_cleanup();
	return check_done();
}
