/*
 * ceiling.c: the ingest ceiling for `make bench`.
 *
 * A bare libmicrohttpd server set up the way genrelay's server.c sets up its
 * own: one thread, MHD in external-epoll mode (MHD_USE_EPOLL | MHD_USE_TURBO
 * | MHD_ALLOW_SUSPEND_RESUME) driven by an epoll loop of our own, the same
 * listening socket options (SO_REUSEPORT, backlog 4096), connection limit,
 * timeout and per-connection memory limit. It reads each request body into a
 * buffer (as genrelay does) and answers a fixed 202 JSON of the shape
 * genrelay's run call answers. It stores nothing and parses nothing: what
 * genrelay achieves over this is the price of its own work.
 *
 * --suspend answers the way genrelay does since its 202 means "committed":
 * each complete request is suspended (MHD_suspend_connection) and resumed
 * after the loop iteration that received it (where genrelay commits), then
 * answered. The difference to the plain ceiling is what holding answers for
 * the group commit costs in libmicrohttpd and the kernel alone.
 *
 *   ceiling --listen 127.0.0.1:0 [--suspend]
 *   -> prints "ceiling listening on http://127.0.0.1:PORT"; SIGTERM ends it (exit 0).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#define BODY_MAX (1024 * 1024)

static volatile sig_atomic_t stop;
static int suspend_mode;

/* Connections suspended in this loop iteration (resumed after MHD_run). */
#define MAX_HELD 16384
static struct MHD_Connection *held[MAX_HELD];
static size_t nheld;

static const char reply[] =
	"{\"job_id\":\"job_01JD0000000000000000000000\",\"status\":\"processing\","
	"\"model_id\":\"fal-ai/flux/dev\",\"request_id\":null,"
	"\"message\":\"accepted; poll GET /v1/jobs/job_01JD0000000000000000000000 or wait for the webhook\"}";

/* Per-request state: the body as read so far (bounded like genrelay's). */
struct req {
	size_t len;
	char *body;
	int too_large;
	int resumed; /* --suspend: held once, now answer */
};

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *conn, const char *url,
				 const char *method, const char *version,
				 const char *upload_data, size_t *upload_data_size,
				 void **con_cls)
{
	struct req *r = *con_cls;
	(void)cls;
	(void)url;
	(void)method;
	(void)version;
	if (!r) {
		r = calloc(1, sizeof *r);
		if (!r)
			return MHD_NO;
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
	if (suspend_mode && !r->resumed && nheld < MAX_HELD) {
		r->resumed = 1;
		held[nheld++] = conn;
		MHD_suspend_connection(conn);
		return MHD_YES;
	}
	struct MHD_Response *resp = MHD_create_response_from_buffer(
		sizeof reply - 1, (void *)reply, MHD_RESPMEM_PERSISTENT);
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	enum MHD_Result rc = MHD_queue_response(conn, r->too_large ? 413 : 202, resp);
	MHD_destroy_response(resp);
	return rc;
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
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0 ||
	    bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 4096) < 0)
		return -1;
	socklen_t len = sizeof a;
	getsockname(fd, (struct sockaddr *)&a, &len);
	*port_out = ntohs(a.sin_port);
	return fd;
}

int main(int argc, char **argv)
{
	const char *listen_spec = "127.0.0.1:0";
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
			listen_spec = argv[++i];
		} else if (strcmp(argv[i], "--suspend") == 0) {
			suspend_mode = 1;
		} else {
			fprintf(stderr, "usage: ceiling [--listen 127.0.0.1:PORT] [--suspend]\n");
			return 2;
		}
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	/* A bench helper never outlives the run that started it. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	int port = 0;
	int lfd = listen_on(listen_spec, &port);
	if (lfd < 0) {
		fprintf(stderr, "ceiling: cannot listen on %s: %s\n", listen_spec, strerror(errno));
		return 1;
	}
	struct MHD_Daemon *d = MHD_start_daemon(
		MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TURBO, 0, NULL, NULL,
		access_cb, NULL,
		MHD_OPTION_LISTEN_SOCKET, lfd,
		MHD_OPTION_NOTIFY_COMPLETED, completed_cb, NULL,
		MHD_OPTION_CONNECTION_LIMIT, 10000u,
		MHD_OPTION_CONNECTION_TIMEOUT, 30u,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)16 * 1024, /* as server.c */
		MHD_OPTION_END);
	if (!d) {
		fprintf(stderr, "ceiling: cannot start the HTTP server\n");
		return 1;
	}
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_EPOLL_FD);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = { .events = EPOLLIN };
	if (!info || ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, info->epoll_fd, &ev) < 0) {
		fprintf(stderr, "ceiling: cannot watch the server\n");
		return 1;
	}
	printf("ceiling listening on http://127.0.0.1:%d\n", port);
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
		/* Where genrelay commits the iteration's jobs, then answers them. */
		if (nheld) {
			for (size_t i = 0; i < nheld; i++)
				MHD_resume_connection(held[i]);
			nheld = 0;
			MHD_run(d); /* as server.c's need_run: answer the resumed ones now */
		}
	}
	MHD_stop_daemon(d);
	close(ep);
	return 0;
}
