/*
 * A genrelay webhook receiver in C, verifying each delivery with genrelay's
 * own signing code (core/sign.c through core/webhook_verify.c).
 *
 *   WEBHOOK_SECRET=whsec_... example_receiver_c [--listen 127.0.0.1:3000]
 *
 * Built by the project's CMake as build/example_receiver_c (libmicrohttpd,
 * linked with genrelay_core). Outside the project: compile receiver.c with
 * core/webhook_verify.c, core/sign.c and core/buf.c, and link libmicrohttpd
 * and libcrypto.
 *
 * What matters for any receiver: verify the raw body exactly as received,
 * refuse stale timestamps, compare in constant time (webhook_verify does
 * all three), answer 2xx quickly, and deduplicate on webhook-id (delivery is
 * at least once; a replay keeps its id).
 */
#include "webhook_verify.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_BODY (1 << 20)
#define SEEN_MAX 1024

struct req {
	char *body;
	size_t len;
	int too_large;
};

static const char *secret;
/* The last SEEN_MAX webhook-ids (a real app keeps them in its database);
 * touched by MHD's one polling thread only. */
static char seen[SEEN_MAX][80];
static size_t seen_next;

static int seen_before(const char *id)
{
	for (size_t i = 0; i < SEEN_MAX; i++)
		if (strcmp(seen[i], id) == 0)
			return 1;
	snprintf(seen[seen_next], sizeof seen[0], "%s", id);
	seen_next = (seen_next + 1) % SEEN_MAX;
	return 0;
}

static enum MHD_Result answer(struct MHD_Connection *c, unsigned status)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
	enum MHD_Result ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *data,
				  size_t *size, void **state)
{
	struct req *q = *state;
	(void)cls;
	(void)url;
	(void)version;
	if (!q) {
		if (strcmp(method, "POST") != 0)
			return answer(c, 405);
		*state = q = calloc(1, sizeof *q);
		return q ? MHD_YES : MHD_NO;
	}
	if (*size) {
		if (!q->too_large && q->len + *size <= MAX_BODY) {
			char *nb = realloc(q->body, q->len + *size);
			if (nb) {
				memcpy(nb + q->len, data, *size);
				q->body = nb;
				q->len += *size;
			} else {
				q->too_large = 1;
			}
		} else {
			q->too_large = 1;
		}
		*size = 0;
		return MHD_YES;
	}
	if (q->too_large)
		return answer(c, 413);
	const char *id = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "webhook-id");
	const char *ts = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "webhook-timestamp");
	const char *sig = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "webhook-signature");
	char why[256];
	if (!webhook_verify(secret, id, ts, sig, q->body ? q->body : "", q->len, (int64_t)time(NULL),
			    WEBHOOK_VERIFY_TOLERANCE_S, why, sizeof why)) {
		printf("rejected %s: %s\n", id ? id : "-", why);
		return answer(c, 401);
	}
	if (seen_before(id))
		printf("duplicate %s\n", id);
	else
		printf("accepted %s (%zu bytes)\n", id, q->len);
	return answer(c, 204);
}

static void on_done(void *cls, struct MHD_Connection *c, void **state,
		    enum MHD_RequestTerminationCode toe)
{
	struct req *q = *state;
	(void)cls;
	(void)c;
	(void)toe;
	if (q) {
		free(q->body);
		free(q);
		*state = NULL;
	}
}

int main(int argc, char **argv)
{
	const char *listen = "127.0.0.1:3000";
	if (argc == 3 && strcmp(argv[1], "--listen") == 0)
		listen = argv[2];
	secret = getenv("WEBHOOK_SECRET");
	if (!secret || !*secret) {
		fprintf(stderr, "set WEBHOOK_SECRET to the customer's webhook_secret (whsec_...)\n");
		return 2;
	}
	const char *colon = strrchr(listen, ':');
	char host[64];
	if (!colon || (size_t)(colon - listen) >= sizeof host) {
		fprintf(stderr, "--listen HOST:PORT\n");
		return 2;
	}
	memcpy(host, listen, (size_t)(colon - listen));
	host[colon - listen] = '\0';
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1)) };
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
		fprintf(stderr, "--listen needs a numeric IPv4 address\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL,
						on_request, NULL,
						MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
						MHD_OPTION_NOTIFY_COMPLETED, on_done, NULL,
						MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30,
						MHD_OPTION_END);
	if (!d) {
		fprintf(stderr, "cannot listen on %s\n", listen);
		return 2;
	}
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	printf("listening on http://%s:%u\n", host, info ? (unsigned)info->port : 0u);
	int sig;
	sigwait(&set, &sig);
	MHD_stop_daemon(d);
	return 0;
}
