/*
 * receiver.c: the fast local upstream for `make bench`.
 *
 * One thread, libmicrohttpd in external-epoll mode (as genrelay and the
 * ceiling server run it), so that neither the webhook receiver nor the
 * provider stub is the bottleneck of a measurement. It plays two parts:
 *
 *   POST /fal/...   a fal queue submit: 200 {"request_id":"bench-N",...}
 *                   (used by the ingest runs, so genrelay's submit step has a
 *                   provider to talk to that costs next to nothing)
 *   POST /raw/...   a provider callback posted straight here (the end-to-end
 *                   ceiling: provsim without genrelay): counted and recorded
 *                   (by the body's "request_id") without a signature check, 204
 *   POST /sink/...  answered 204 and only counted ("sink"): the target of
 *                   bench_parts' curl loop (what a request costs the client)
 *   POST (other)    a webhook delivery: the Standard Webhooks signature is
 *                   verified (HMAC-SHA256 of "id.timestamp.body" under the
 *                   --secret key, every "v1,<base64>" entry), the arrival is
 *                   recorded (job_id from the body, CLOCK_MONOTONIC ns taken
 *                   when the request's headers are parsed) and answered 204,
 *                   or 401 when the signature does not verify.
 *   GET  /_stats    {"webhooks","verified","bad","raw","fal_submits","sink","connections" (TCP
 *                   connections accepted),"first_ns","last_ns","now_ns","recorded"}
 *   GET  /_arrivals one line per recorded delivery: "JOB_ID NS V\n" (V: 1 verified)
 *   POST /_reset    forgets counters and arrivals
 *
 *   receiver --listen 127.0.0.1:0 --secret whsec_... [--count-file PATH]
 *   -> prints "receiver listening on http://127.0.0.1:PORT"; SIGTERM ends it.
 *
 * --count-file keeps the number of verified deliveries plus raw posts in the first 8 bytes
 * of PATH (mmap'd, native int64), so a wrk script can throttle on it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BODY_MAX (1024 * 1024)
#define RECORDS_MAX (4u << 20)

struct arrival {
	char job_id[40];
	int64_t ns;
	int verified;
};

struct req {
	int64_t t_ns;
	size_t len;
	char *body;
	int too_large;
};

static volatile sig_atomic_t stop;
static unsigned char key[256];
static size_t key_len;
static struct arrival *arrivals;
static size_t narrivals, caparrivals;
static long long n_webhooks, n_verified, n_bad, n_raw, n_fal, n_conns, n_sink;
static int64_t first_ns, last_ns;
static volatile int64_t *count_map;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static int64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int set_key(const char *secret)
{
	if (strncmp(secret, "whsec_", 6) == 0) {
		int n = EVP_DecodeBlock(key, (const unsigned char *)secret + 6, (int)strlen(secret + 6));
		if (n < 0)
			return -1;
		/* EVP_DecodeBlock counts '=' padding as zero bytes. */
		size_t sl = strlen(secret);
		while (sl > 6 && secret[sl - 1] == '=') {
			n--;
			sl--;
		}
		key_len = (size_t)n;
		return 0;
	}
	key_len = strlen(secret);
	if (key_len > sizeof key)
		return -1;
	memcpy(key, secret, key_len);
	return 0;
}

/* 1 when one of the "v1,<base64>" entries of sig matches. */
static int verify(struct MHD_Connection *conn, const char *body, size_t len)
{
	const char *id = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "webhook-id");
	const char *ts = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "webhook-timestamp");
	const char *sig = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "webhook-signature");
	if (!id || !ts || !sig)
		return 0;
	unsigned char mac[32];
	unsigned int maclen = sizeof mac;
	size_t il = strlen(id), tl = strlen(ts);
	size_t ml = il + tl + 2 + len;
	char *msg = malloc(ml);
	if (!msg)
		return 0;
	memcpy(msg, id, il);
	msg[il] = '.';
	memcpy(msg + il + 1, ts, tl);
	msg[il + 1 + tl] = '.';
	memcpy(msg + il + tl + 2, body, len);
	HMAC(EVP_sha256(), key, (int)key_len, (unsigned char *)msg, ml, mac, &maclen);
	free(msg);
	char want[64];
	int wl = EVP_EncodeBlock((unsigned char *)want, mac, (int)maclen);
	for (const char *p = sig; *p;) {
		while (*p == ' ')
			p++;
		const char *e = strchr(p, ' ');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (n == (size_t)wl + 3 && strncmp(p, "v1,", 3) == 0 &&
		    CRYPTO_memcmp(p + 3, want, (size_t)wl) == 0)
			return 1;
		p += n;
	}
	return 0;
}

/* Records one arrival; the id is the string value of "key" in the body. */
static void record(const char *body, const char *key, int64_t t, int ok)
{
	if (narrivals >= RECORDS_MAX)
		return;
	if (narrivals == caparrivals) {
		size_t cap = caparrivals ? caparrivals * 2 : 65536;
		struct arrival *a = realloc(arrivals, cap * sizeof *a);
		if (!a)
			return;
		arrivals = a;
		caparrivals = cap;
	}
	struct arrival *a = &arrivals[narrivals++];
	a->ns = t;
	a->verified = ok;
	a->job_id[0] = '\0';
	const char *p = body ? strstr(body, key) : NULL;
	if (p) {
		p += strlen(key);
		size_t i = 0;
		while (p[i] && p[i] != '"' && i < sizeof a->job_id - 1) {
			a->job_id[i] = p[i];
			i++;
		}
		a->job_id[i] = '\0';
	}
}

static enum MHD_Result send_buf(struct MHD_Connection *conn, unsigned status, char *text,
				size_t len, const char *ct)
{
	struct MHD_Response *resp =
		MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(text);
		return MHD_NO;
	}
	if (ct)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ct);
	enum MHD_Result rc = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return rc;
}

static enum MHD_Result send_static(struct MHD_Connection *conn, unsigned status)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	if (!resp)
		return MHD_NO;
	enum MHD_Result rc = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return rc;
}

static enum MHD_Result stats(struct MHD_Connection *conn)
{
	char *t = malloc(512);
	if (!t)
		return MHD_NO;
	int n = snprintf(t, 512,
			 "{\"webhooks\":%lld,\"verified\":%lld,\"bad\":%lld,\"raw\":%lld,\"fal_submits\":%lld,"
			 "\"sink\":%lld,\"connections\":%lld,\"first_ns\":%lld,\"last_ns\":%lld,\"now_ns\":%lld,\"recorded\":%zu}",
			 n_webhooks, n_verified, n_bad, n_raw, n_fal, n_sink, n_conns, (long long)first_ns,
			 (long long)last_ns, (long long)mono_ns(), narrivals);
	return send_buf(conn, 200, t, (size_t)n, "application/json");
}

static enum MHD_Result dump(struct MHD_Connection *conn)
{
	size_t cap = narrivals * 72 + 1, len = 0;
	char *t = malloc(cap);
	if (!t)
		return MHD_NO;
	for (size_t i = 0; i < narrivals; i++)
		len += (size_t)snprintf(t + len, cap - len, "%s %lld %d\n",
					arrivals[i].job_id[0] ? arrivals[i].job_id : "-",
					(long long)arrivals[i].ns, arrivals[i].verified);
	return send_buf(conn, 200, t, len, "text/plain");
}

static void reset(void)
{
	narrivals = 0;
	n_webhooks = n_verified = n_bad = n_raw = n_fal = n_conns = n_sink = 0;
	first_ns = last_ns = 0;
	if (count_map)
		*count_map = 0;
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *conn, const char *url,
				 const char *method, const char *version,
				 const char *upload_data, size_t *upload_data_size,
				 void **con_cls)
{
	struct req *r = *con_cls;
	(void)cls;
	(void)version;
	if (!r) {
		r = calloc(1, sizeof *r);
		if (!r)
			return MHD_NO;
		r->t_ns = mono_ns();
		*con_cls = r;
		return MHD_YES;
	}
	if (*upload_data_size) {
		size_t n = *upload_data_size;
		if (r->len + n > BODY_MAX) {
			r->too_large = 1;
		} else if (!r->too_large) {
			char *p = realloc(r->body, r->len + n + 1);
			if (!p)
				return MHD_NO;
			r->body = p;
			memcpy(r->body + r->len, upload_data, n);
			r->len += n;
			r->body[r->len] = '\0';
		}
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (strcmp(method, "GET") == 0) {
		if (strcmp(url, "/_stats") == 0)
			return stats(conn);
		if (strcmp(url, "/_arrivals") == 0)
			return dump(conn);
		return send_static(conn, 404);
	}
	if (strcmp(method, "POST") != 0)
		return send_static(conn, 405);
	if (strcmp(url, "/_reset") == 0) {
		reset();
		return send_static(conn, 204);
	}
	if (strncmp(url, "/fal/", 5) == 0) {
		long long id = ++n_fal;
		char *t = malloc(256);
		if (!t)
			return MHD_NO;
		int n = snprintf(t, 256,
				 "{\"request_id\":\"bench-%lld\",\"gateway_request_id\":\"bench-%lld\","
				 "\"status\":\"IN_QUEUE\",\"queue_position\":0}", id, id);
		return send_buf(conn, 200, t, (size_t)n, "application/json");
	}
	if (strncmp(url, "/sink/", 6) == 0) {
		n_sink++;
		return send_static(conn, 204);
	}
	if (strncmp(url, "/raw/", 5) == 0) {
		n_raw++;
		if (count_map)
			*count_map = n_verified + n_raw;
		if (!first_ns)
			first_ns = r->t_ns;
		last_ns = r->t_ns;
		record(r->body, "\"request_id\":\"", r->t_ns, 1);
		return send_static(conn, 204);
	}
	int ok = !r->too_large && verify(conn, r->body ? r->body : "", r->len);
	n_webhooks++;
	if (ok) {
		n_verified++;
		if (count_map)
			*count_map = n_verified + n_raw;
	} else {
		n_bad++;
	}
	if (!first_ns)
		first_ns = r->t_ns;
	last_ns = r->t_ns;
	record(r->body, "\"job_id\":\"", r->t_ns, ok);
	return send_static(conn, ok ? 204 : 401);
}

static void connection_cb(void *cls, struct MHD_Connection *conn, void **socket_context,
			  enum MHD_ConnectionNotificationCode toe)
{
	(void)cls;
	(void)conn;
	(void)socket_context;
	if (toe == MHD_CONNECTION_NOTIFY_STARTED)
		n_conns++;
}

static void completed_cb(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct req *r = *con_cls;
	(void)cls;
	(void)conn;
	(void)toe;
	if (r) {
		free(r->body);
		free(r);
		*con_cls = NULL;
	}
}

static int listen_on(const char *spec, int *port_out)
{
	char host[64];
	const char *c = strrchr(spec, ':');
	if (!c || (size_t)(c - spec) >= sizeof host)
		return -1;
	memcpy(host, spec, (size_t)(c - spec));
	host[c - spec] = '\0';
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(c + 1)) };
	if (inet_pton(AF_INET, host, &a.sin_addr) != 1)
		return -1;
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
	    bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 4096) < 0)
		return -1;
	socklen_t len = sizeof a;
	getsockname(fd, (struct sockaddr *)&a, &len);
	*port_out = ntohs(a.sin_port);
	return fd;
}

static int map_count_file(const char *path)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || ftruncate(fd, 4096) < 0)
		return -1;
	void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return -1;
	count_map = p;
	*count_map = 0;
	return 0;
}

int main(int argc, char **argv)
{
	const char *listen_spec = "127.0.0.1:0", *secret = NULL, *count_file = NULL;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc)
			listen_spec = argv[++i];
		else if (strcmp(argv[i], "--secret") == 0 && i + 1 < argc)
			secret = argv[++i];
		else if (strcmp(argv[i], "--count-file") == 0 && i + 1 < argc)
			count_file = argv[++i];
		else
			secret = NULL, i = argc;
	}
	if (!secret || set_key(secret) < 0) {
		fprintf(stderr, "usage: receiver --secret whsec_... [--listen 127.0.0.1:PORT] [--count-file PATH]\n");
		return 2;
	}
	if (count_file && map_count_file(count_file) < 0) {
		fprintf(stderr, "receiver: cannot map %s: %s\n", count_file, strerror(errno));
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	/* A bench helper never outlives the run that started it. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	int port = 0;
	int lfd = listen_on(listen_spec, &port);
	if (lfd < 0) {
		fprintf(stderr, "receiver: cannot listen on %s: %s\n", listen_spec, strerror(errno));
		return 1;
	}
	struct MHD_Daemon *d = MHD_start_daemon(
		MHD_USE_EPOLL | MHD_USE_TURBO, 0, NULL, NULL, access_cb, NULL,
		MHD_OPTION_LISTEN_SOCKET, lfd,
		MHD_OPTION_NOTIFY_COMPLETED, completed_cb, NULL,
		MHD_OPTION_NOTIFY_CONNECTION, connection_cb, NULL,
		MHD_OPTION_CONNECTION_LIMIT, 20000u,
		MHD_OPTION_CONNECTION_TIMEOUT, 60u,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)64 * 1024,
		MHD_OPTION_END);
	if (!d) {
		fprintf(stderr, "receiver: cannot start the HTTP server\n");
		return 1;
	}
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_EPOLL_FD);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = { .events = EPOLLIN };
	if (!info || ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, info->epoll_fd, &ev) < 0) {
		fprintf(stderr, "receiver: cannot watch the server\n");
		return 1;
	}
	printf("receiver listening on http://127.0.0.1:%d\n", port);
	fflush(stdout);
	while (!stop) {
		MHD_UNSIGNED_LONG_LONG to;
		int timeout = 1000;
		if (MHD_get_timeout(d, &to) == MHD_YES && to < 1000)
			timeout = (int)to;
		struct epoll_event out[16];
		int n = epoll_wait(ep, out, 16, timeout);
		if (n < 0 && errno != EINTR)
			break;
		MHD_run(d);
	}
	MHD_stop_daemon(d);
	close(ep);
	free(arrivals);
	return 0;
}
