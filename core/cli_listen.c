/*
 * cli_listen.c: `genrelay listen`, a local webhook inspector (what
 * `stripe listen` is for Stripe): deliveries arrive on a loopback port, their
 * Standard Webhooks signature is checked, they are printed, and optionally
 * forwarded to the developer's app, whose answer is printed and passed back.
 *
 * A developer tool, so the design is simple and blocking, but bounded:
 * libmicrohttpd runs one internal polling thread that handles one request at
 * a time (the forward happens inside the handler, with a timeout); bodies
 * are capped (--max-body) in and out; connections time out; the main thread
 * only waits for a signal. Nothing here is shared with the server.
 */
#include "cli_listen.h"

#include "buf.h"
#include "sign.h"
#include "webhook_verify.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#define LISTEN_BODY_DEFAULT (1 << 20)
#define LISTEN_BODY_MAX (64 << 20)
#define APP_ANSWER_MAX (64 * 1024)   /* bytes of the app's answer kept */
#define PRINT_BODY_MAX (16 * 1024)   /* bytes of a body printed */

struct listen_opts {
	const char *host;
	int port;
	const char *secret;        /* borrowed from argv or the environment */
	const char *forward;
	int forward_unverified;
	size_t max_body;
	long forward_timeout_s;
	long count;                /* 0: unlimited */
};

/* The state of one request, freed in completed_cb. */
struct listen_req {
	struct buf body;
	int too_large;
	int handled;    /* answered: counts towards --count once sent */
};

struct listen_state {
	const struct listen_opts *o;
	CURL *curl;                 /* used by MHD's single thread only */
	long seen;
	atomic_int done;            /* --count reached */
	pthread_t main_thread;
};

static void listen_usage(FILE *f)
{
	fprintf(f,
		"usage: genrelay listen [--port N] [--host ADDR] [--secret whsec_...]\n"
		"                       [--forward URL] [--forward-unverified]\n"
		"                       [--max-body BYTES] [--forward-timeout S] [--count N]\n"
		"  --port     port to listen on (default 0: any free port, printed)\n"
		"  --host     address to listen on (default 127.0.0.1)\n"
		"  --secret   the customer's webhook_secret; default $GENRELAY_WEBHOOK_SECRET;\n"
		"             without one signatures are shown but not checked\n"
		"  --forward  post each delivery (body and webhook-* headers) to URL and\n"
		"             answer the sender with the app's status\n"
		"  --forward-unverified  forward deliveries whose signature failed too\n"
		"             (by default they are answered 401 and not forwarded)\n"
		"  --max-body largest body taken, in bytes (default 1048576)\n"
		"  --forward-timeout  seconds to wait for the app (default 10)\n"
		"  --count    exit after N deliveries\n");
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (!*s || *end || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

static int parse_args(int argc, char **argv, struct listen_opts *o)
{
	long v;
	o->host = "127.0.0.1";
	o->max_body = LISTEN_BODY_DEFAULT;
	o->forward_timeout_s = 10;
	o->secret = getenv("GENRELAY_WEBHOOK_SECRET");
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--forward-unverified") == 0) {
			o->forward_unverified = 1;
			continue;
		}
		if (!val) {
			fprintf(stderr, "genrelay listen: %s needs a value\n", a);
			return -1;
		}
		i++;
		if (strcmp(a, "--port") == 0 && parse_long(val, 0, 65535, &v) == 0)
			o->port = (int)v;
		else if (strcmp(a, "--host") == 0)
			o->host = val;
		else if (strcmp(a, "--secret") == 0)
			o->secret = val;
		else if (strcmp(a, "--forward") == 0 &&
			 (strncmp(val, "http://", 7) == 0 || strncmp(val, "https://", 8) == 0))
			o->forward = val;
		else if (strcmp(a, "--max-body") == 0 && parse_long(val, 1, LISTEN_BODY_MAX, &v) == 0)
			o->max_body = (size_t)v;
		else if (strcmp(a, "--forward-timeout") == 0 && parse_long(val, 1, 300, &v) == 0)
			o->forward_timeout_s = v;
		else if (strcmp(a, "--count") == 0 && parse_long(val, 1, 1000000000L, &v) == 0)
			o->count = v;
		else {
			fprintf(stderr, "genrelay listen: bad option %s %s\n", a,
				strcmp(a, "--secret") == 0 ? "(value hidden)" : val);
			return -1;
		}
	}
	if (o->secret && !*o->secret)
		o->secret = NULL;
	if (o->secret) {
		unsigned char key[512];
		if (sign_webhook_key(o->secret, key, sizeof key) <= 0) {
			fprintf(stderr, "genrelay listen: --secret is not whsec_<base64> (or is empty)\n");
			return -1;
		}
	}
	return 0;
}

/* Prints s (n bytes) with control bytes escaped, at most max bytes. */
static void print_text(FILE *f, const char *s, size_t n, size_t max)
{
	size_t m = n < max ? n : max;
	for (size_t i = 0; i < m; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\n')
			fputs("\n    ", f);
		else if (c < 0x20 || c == 0x7f)
			fprintf(f, "\\x%02x", c);
		else
			fputc(c, f);
	}
	if (m < n)
		fprintf(f, "... (%zu more bytes)", n - m);
	fputc('\n', f);
}

/* A JSON body indented, anything else as text; both capped. */
static void print_body(FILE *f, const char *body, size_t len)
{
	json_t *v = len ? json_loadb(body, len, JSON_DECODE_ANY, NULL) : NULL;
	char *pretty = v ? json_dumps(v, JSON_INDENT(2) | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER) : NULL;
	fputs("    ", f);
	if (pretty)
		print_text(f, pretty, strlen(pretty), PRINT_BODY_MAX);
	else if (len)
		print_text(f, body, len, PRINT_BODY_MAX);
	else
		fputs("(empty body)\n", f);
	free(pretty);
	json_decref(v);
}

static int skip_header(const char *name)
{
	static const char *const skip[] = { "host", "content-length", "connection", "expect",
		"transfer-encoding", "accept", "accept-encoding", NULL };
	for (int i = 0; skip[i]; i++)
		if (strcasecmp(name, skip[i]) == 0)
			return 1;
	return 0;
}

/* What each_header does with each header: print it (f set), collect it
 * for the forward (collect set), or both. */
struct hdr_ctx {
	FILE *f;
	int collect;
	struct curl_slist *fwd;
};

static enum MHD_Result each_header(void *cls, enum MHD_ValueKind kind, const char *key,
				   const char *value)
{
	struct hdr_ctx *h = cls;
	(void)kind;
	if (!value || skip_header(key))
		return MHD_YES;
	if (h->f) {
		fprintf(h->f, "    %s: ", key);
		print_text(h->f, value, strlen(value), 512);
	}
	if (h->collect) {
		char line[4096];
		if (snprintf(line, sizeof line, "%s: %s", key, value) < (int)sizeof line) {
			struct curl_slist *n = curl_slist_append(h->fwd, line);
			if (n)
				h->fwd = n;
		}
	}
	return MHD_YES;
}

static size_t app_write(char *p, size_t size, size_t n, void *arg)
{
	struct buf *b = arg;
	size_t len = size * n;
	if (b->len < b->max) {
		size_t room = b->max - b->len;
		buf_add(b, p, len < room ? len : room);
	}
	return len; /* read and drop the rest: the answer is only shown */
}

/*
 * Posts the delivery to the app. Returns the app's HTTP status, or 0 when
 * it could not be reached (the reason in why). answer gets its body (capped).
 */
static long forward(struct listen_state *st, struct MHD_Connection *c, const char *method,
		    const struct buf *body, struct buf *answer, char *why, size_t whylen,
		    double *ms)
{
	CURL *e = st->curl;
	struct hdr_ctx h = { NULL, 1, NULL };
	MHD_get_connection_values(c, MHD_HEADER_KIND, each_header, &h);
	struct curl_slist *with_expect = curl_slist_append(h.fwd, "Expect:");
	if (with_expect)
		h.fwd = with_expect;
	curl_easy_reset(e);
	curl_easy_setopt(e, CURLOPT_URL, st->o->forward);
	curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, body->p ? body->p : "");
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body->len);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, h.fwd);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT, st->o->forward_timeout_s);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, st->o->forward_timeout_s);
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_PROXY, "");
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, app_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, answer);
	char errbuf[CURL_ERROR_SIZE] = "";
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
	CURLcode rc = curl_easy_perform(e);
	curl_slist_free_all(h.fwd);
	double t = 0;
	curl_easy_getinfo(e, CURLINFO_TOTAL_TIME, &t);
	*ms = t * 1000;
	if (rc != CURLE_OK) {
		snprintf(why, whylen, "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
		return 0;
	}
	long status = 0;
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
	return status;
}

static enum MHD_Result respond(struct MHD_Connection *c, unsigned status, const char *text)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), (void *)text,
								 MHD_RESPMEM_MUST_COPY);
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	enum MHD_Result ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

/* One whole delivery: check, print, forward, answer. */
static enum MHD_Result handle(struct listen_state *st, struct MHD_Connection *c,
			      const char *url, const char *method, struct listen_req *q)
{
	const struct listen_opts *o = st->o;
	FILE *f = stdout;
	const char *id = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "webhook-id");
	const char *ts = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "webhook-timestamp");
	const char *sig = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "webhook-signature");
	const char *tag = id ? id : "no webhook-id";
	char stamp[32], why[256] = "";
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);

	fprintf(f, "--> %s %.200s  %.80s  %s\n", method, url, tag, stamp);
	struct hdr_ctx h = { f, 0, NULL };
	MHD_get_connection_values(c, MHD_HEADER_KIND, each_header, &h);
	if (q->too_large) {
		fprintf(f, "[%.80s] refused: body over %zu bytes (--max-body)\n", tag, o->max_body);
		fflush(f);
		q->handled = 1;
		return respond(c, 413, "{\"error\":{\"code\":\"PAYLOAD_TOO_LARGE\",\"message\":\"body over --max-body\"}}");
	}
	print_body(f, q->body.p, q->body.len);

	int verified = -1; /* -1: not checked */
	if (o->secret) {
		verified = webhook_verify(o->secret, id, ts, sig, q->body.p ? q->body.p : "", q->body.len,
					  (int64_t)now, WEBHOOK_VERIFY_TOLERANCE_S, why, sizeof why);
		if (verified)
			fprintf(f, "[%.80s] signature valid\n", tag);
		else
			fprintf(f, "[%.80s] signature INVALID: %s\n", tag, why);
	} else {
		fprintf(f, "[%.80s] signature not checked (no --secret)\n", tag);
	}

	unsigned status = verified == 0 ? 401 : 200;
	const char *answer = verified == 0
		? "{\"error\":{\"code\":\"UNAUTHORIZED\",\"message\":\"signature did not verify\"}}"
		: "{\"ok\":true}";
	char *app_answer = NULL;
	if (o->forward && (verified != 0 || o->forward_unverified)) {
		struct buf ab;
		double ms = 0;
		buf_init(&ab, APP_ANSWER_MAX);
		long s = forward(st, c, method, &q->body, &ab, why, sizeof why, &ms);
		if (s == 0) {
			fprintf(f, "[%.80s] forward to %s failed: %s\n", tag, o->forward, why);
			status = 502;
			answer = "{\"error\":{\"code\":\"UNAVAILABLE\",\"message\":\"the forward target did not answer\"}}";
		} else {
			fprintf(f, "[%.80s] forwarded to %s: %ld in %.0f ms\n", tag, o->forward, s, ms);
			print_body(f, ab.p, ab.len);
			status = (unsigned)s;
			app_answer = buf_steal(&ab, NULL);
			answer = app_answer ? app_answer : "";
		}
		buf_free(&ab);
	} else if (o->forward) {
		fprintf(f, "[%.80s] not forwarded: the signature did not verify (--forward-unverified forwards it)\n", tag);
	}
	fprintf(f, "<-- answered %u\n\n", status);
	fflush(f);
	enum MHD_Result ret = respond(c, status, answer);
	free(app_answer);
	q->handled = 1;
	return ret;
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *c, const char *url,
				 const char *method, const char *version,
				 const char *upload, size_t *upload_size, void **con_cls)
{
	struct listen_state *st = cls;
	struct listen_req *q = *con_cls;
	(void)version;
	if (!q) {
		q = calloc(1, sizeof *q);
		if (!q)
			return MHD_NO;
		buf_init(&q->body, st->o->max_body);
		*con_cls = q;
		return MHD_YES;
	}
	if (*upload_size) {
		if (!q->too_large && buf_add(&q->body, upload, *upload_size) < 0)
			q->too_large = 1;
		*upload_size = 0;
		return MHD_YES;
	}
	return handle(st, c, url, method, q);
}

static void completed_cb(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct listen_state *st = cls;
	struct listen_req *q = *con_cls;
	(void)c;
	(void)toe;
	if (q) {
		/* --count: stop once the last answer went out. */
		if (q->handled && st->o->count && ++st->seen >= st->o->count &&
		    !atomic_exchange(&st->done, 1))
			pthread_kill(st->main_thread, SIGTERM);
		buf_free(&q->body);
		free(q);
		*con_cls = NULL;
	}
}

int cli_listen(int argc, char **argv)
{
	struct listen_opts o = { 0 };
	if (argc > 0 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)) {
		listen_usage(stdout);
		return 0;
	}
	if (parse_args(argc, argv, &o) < 0) {
		listen_usage(stderr);
		return 2;
	}
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof ss);
	struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
	if (inet_pton(AF_INET, o.host, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons((uint16_t)o.port);
	} else if (inet_pton(AF_INET6, o.host, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)o.port);
		flags |= MHD_USE_IPv6;
	} else {
		fprintf(stderr, "genrelay listen: --host must be a numeric address, not '%s'\n", o.host);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	struct listen_state st = { .o = &o, .curl = curl_easy_init(), .main_thread = pthread_self() };
	/* SIGINT/SIGTERM go to sigwait below, never to MHD's thread. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	struct MHD_Daemon *d = st.curl ? MHD_start_daemon(flags, 0, NULL, NULL, access_cb, &st,
				MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
				MHD_OPTION_NOTIFY_COMPLETED, completed_cb, &st,
				MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30,
				MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
				MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)64 * 1024,
				MHD_OPTION_END) : NULL;
	if (!d) {
		fprintf(stderr, "genrelay listen: cannot listen on %s port %d\n", o.host, o.port);
		if (st.curl)
			curl_easy_cleanup(st.curl);
		curl_global_cleanup();
		return 2;
	}
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	int port = info ? (int)info->port : o.port;
	const char *fmt = strchr(o.host, ':') ? "http://[%s]:%d" : "http://%s:%d";
	char base[128];
	snprintf(base, sizeof base, fmt, o.host, port);
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("genrelay listen: listening on %s\n", base);
	printf("  signatures: %s\n", o.secret ? "checked with the given secret" : "not checked (no --secret)");
	if (o.forward)
		printf("  forwarding to %s%s\n", o.forward,
		       o.forward_unverified ? " (also deliveries whose signature failed)" : "");
	printf("  point a customer's webhook_url (or a job's) at %s/ ; Ctrl-C stops\n\n", base);
	fflush(stdout);
	int sig = 0;
	sigwait(&set, &sig);
	MHD_stop_daemon(d);
	curl_easy_cleanup(st.curl);
	curl_global_cleanup();
	return 0;
}
