/*
 * parts.c: what each part of a genrelay path costs on its own, in CPU time
 * (user + system of this process, getrusage), for the composite ceilings of
 * `make bench`.
 *
 *   bench_parts ed25519 [--iterations N]
 *       fal's callback check done directly with libsodium: SHA-256 of a
 *       1,424-byte callback body, hex, "request_id\nuser_id\nts\nhex" and one
 *       crypto_sign_verify_detached against one key.
 *   bench_parts hmac [--iterations N]
 *       HMAC-SHA256 with OpenSSL: a callback token (28-byte job id under the
 *       server secret) and a Standard Webhooks signature ("id.ts.body" of a
 *       434-byte event, base64). Both one-shot HMAC() and a reused EVP_MAC
 *       context; the cheaper is the part.
 *   bench_parts curl --url URL --body FILE [--header H]... [--concurrency C]
 *                    [--requests N] [--api socket|perform]
 *       a libcurl multi loop keeping C transfers in flight, each easy handle
 *       reused (kept-alive connections), POSTing the same request N times;
 *       fails unless every answer is 2xx. --api socket (default) drives it as
 *       core/fetch.c does (CURLMOPT_SOCKETFUNCTION / TIMERFUNCTION, one epoll
 *       set, curl_multi_socket_action); perform uses curl_multi_poll +
 *       curl_multi_perform. --as-fetch adds, per request, what core/fetch.c
 *       does around a transfer (curl_easy_reset of the reused handle, a new
 *       header list and body copy, the same options, headers and body
 *       collected in buffers, the same curl_easy_getinfo calls): the
 *       difference is fetch.c's per-request overhead on its own.
 *   bench_parts sqlite --db PATH --recipe KIND:STEPS[:ROWS],... --per-commit K
 *                      [--jobs N] [--fsync]
 *       SQLite writing, per job, the rows a recipe lists (measured from
 *       genrelay by bench/rowcount), K jobs per transaction, with genrelay's
 *       schema (the store is created by store_open) and pragmas. KIND is one
 *       of job_insert job_update work_add work_claim work_done work_become
 *       work_resched work_drop dlv_insert dlv_update att_insert cb_insert
 *       ev_add idem_put; STEPS is statements per job (fractions accumulate),
 *       ROWS rows changed per job (work_claim: rows per statement =
 *       ROWS/STEPS). Rows a later step updates or deletes exist beforehand
 *       (written before the clock starts).
 *
 * Every mode prints one JSON object on stdout: {"mode", "ops", "cpu_ns_per_op",
 * "wall_ns_per_op", ...}. For `sqlite` an op is a job.
 */
#include "store.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sodium.h>
#include <sqlite3.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static double cpu_ns(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ((double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec) * 1e9 +
	       ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) * 1e3;
}

static double wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void die(const char *what, const char *err)
{
	fprintf(stderr, "bench_parts: %s: %s\n", what, err);
	exit(1);
}

static const char *arg(int argc, char **argv, const char *name, const char *dflt)
{
	for (int i = 2; i + 1 < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return argv[i + 1];
	return dflt;
}

static int flag(int argc, char **argv, const char *name)
{
	for (int i = 2; i < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return 1;
	return 0;
}

/* A callback body of the size provsim posts for fal (1,424 bytes). */
static char *callback_body(void)
{
	size_t n = 1424;
	char *b = malloc(n + 1);
	if (!b)
		die("malloc", "out of memory");
	const char *head = "{\"request_id\":\"3f1c2a9e-7b44-4c1e-9a51-2d8f0c6b7e13\",\"status\":\"OK\","
			   "\"payload\":{\"prompt\":\"";
	size_t hl = strlen(head);
	memcpy(b, head, hl);
	for (size_t i = hl; i < n - 3; i++)
		b[i] = (char)('a' + (i % 26));
	memcpy(b + n - 3, "\"}}", 3);
	b[n] = 0;
	return b;
}

/* ------------------------------------------------------------------ ed25519 */

static int mode_ed25519(long iters)
{
	if (sodium_init() < 0)
		die("sodium_init", "failed");
	unsigned char pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
	crypto_sign_keypair(pk, sk);
	char *body = callback_body();
	size_t blen = strlen(body);
	const char *rid = "3f1c2a9e-7b44-4c1e-9a51-2d8f0c6b7e13", *uid = "provsim-user", *ts = "1732300004";
	/* The signed message, built once by the "provider". */
	unsigned char h[crypto_hash_sha256_BYTES];
	char hex[2 * sizeof h + 1], msg[256];
	crypto_hash_sha256(h, (const unsigned char *)body, blen);
	sodium_bin2hex(hex, sizeof hex, h, sizeof h);
	int ml = snprintf(msg, sizeof msg, "%s\n%s\n%s\n%s", rid, uid, ts, hex);
	unsigned char sig[crypto_sign_BYTES];
	crypto_sign_detached(sig, NULL, (const unsigned char *)msg, (unsigned long long)ml, sk);

	double w0 = wall_ns(), c0 = cpu_ns(), vonly = 0;
	for (long i = 0; i < iters; i++) {
		crypto_hash_sha256(h, (const unsigned char *)body, blen);
		sodium_bin2hex(hex, sizeof hex, h, sizeof h);
		char m2[256];
		int l2 = snprintf(m2, sizeof m2, "%s\n%s\n%s\n%s", rid, uid, ts, hex);
		if (crypto_sign_verify_detached(sig, (const unsigned char *)m2, (unsigned long long)l2, pk) != 0)
			die("ed25519", "the signature does not verify");
	}
	double c1 = cpu_ns(), w1 = wall_ns();
	/* The verification alone, for the record. */
	double c2 = cpu_ns();
	for (long i = 0; i < iters / 4 + 1; i++)
		if (crypto_sign_verify_detached(sig, (const unsigned char *)msg, (unsigned long long)ml, pk) != 0)
			die("ed25519", "the signature does not verify");
	vonly = (cpu_ns() - c2) / (double)(iters / 4 + 1);
	printf("{\"mode\":\"ed25519\",\"ops\":%ld,\"cpu_ns_per_op\":%.0f,\"wall_ns_per_op\":%.0f,"
	       "\"verify_only_cpu_ns\":%.0f,\"body_bytes\":%zu}\n",
	       iters, (c1 - c0) / (double)iters, (w1 - w0) / (double)iters, vonly, blen);
	free(body);
	return 0;
}

/* --------------------------------------------------------------------- hmac */

static double hmac_oneshot(const char *key, size_t kl, const char *m, size_t ml, long iters, int b64)
{
	unsigned char out[EVP_MAX_MD_SIZE];
	unsigned int ol = 0;
	char enc[128];
	double c0 = cpu_ns();
	for (long i = 0; i < iters; i++) {
		if (!HMAC(EVP_sha256(), key, (int)kl, (const unsigned char *)m, ml, out, &ol))
			die("HMAC", "failed");
		if (b64)
			EVP_EncodeBlock((unsigned char *)enc, out, (int)ol);
	}
	return (cpu_ns() - c0) / (double)iters;
}

static double hmac_reused(const char *key, size_t kl, const char *m, size_t ml, long iters, int b64)
{
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC_CTX *base = mac ? EVP_MAC_CTX_new(mac) : NULL;
	char digest[] = "SHA256";
	OSSL_PARAM params[] = { OSSL_PARAM_construct_utf8_string("digest", digest, 0), OSSL_PARAM_construct_end() };
	if (!base || !EVP_MAC_init(base, (const unsigned char *)key, kl, params))
		die("EVP_MAC", "cannot set up HMAC-SHA256");
	unsigned char out[EVP_MAX_MD_SIZE];
	size_t ol = 0;
	char enc[128];
	double c0 = cpu_ns();
	for (long i = 0; i < iters; i++) {
		EVP_MAC_CTX *c = EVP_MAC_CTX_dup(base);
		if (!c || !EVP_MAC_update(c, (const unsigned char *)m, ml) || !EVP_MAC_final(c, out, &ol, sizeof out))
			die("EVP_MAC", "failed");
		EVP_MAC_CTX_free(c);
		if (b64)
			EVP_EncodeBlock((unsigned char *)enc, out, (int)ol);
	}
	double t = (cpu_ns() - c0) / (double)iters;
	EVP_MAC_CTX_free(base);
	EVP_MAC_free(mac);
	return t;
}

static int mode_hmac(long iters)
{
	const char *secret = "bench-server-secret-0123456789abcdef0123456789";
	const char *job = "job_01JDBENCH0000000000000001";
	unsigned char whkey[24];
	memset(whkey, 0x5a, sizeof whkey);
	/* "msg_id.ts.body" with a 434-byte event body. */
	char m[600];
	int n = snprintf(m, sizeof m, "msg_01JDBENCH0000000000000001.1732300004.");
	while (n < 40 + 434)
		m[n++] = 'x';
	m[n] = 0;
	double tok1 = hmac_oneshot(secret, strlen(secret), job, strlen(job), iters, 1);
	double tok2 = hmac_reused(secret, strlen(secret), job, strlen(job), iters, 1);
	double wh1 = hmac_oneshot((const char *)whkey, sizeof whkey, m, (size_t)n, iters, 1);
	double wh2 = hmac_reused((const char *)whkey, sizeof whkey, m, (size_t)n, iters, 1);
	printf("{\"mode\":\"hmac\",\"ops\":%ld,\"token_cpu_ns\":%.0f,\"webhook_cpu_ns\":%.0f,"
	       "\"token_oneshot_cpu_ns\":%.0f,\"token_reused_ctx_cpu_ns\":%.0f,"
	       "\"webhook_oneshot_cpu_ns\":%.0f,\"webhook_reused_ctx_cpu_ns\":%.0f,\"webhook_message_bytes\":%d}\n",
	       iters, fmin(tok1, tok2), fmin(wh1, wh2), tok1, tok2, wh1, wh2, n);
	return 0;
}

/* --------------------------------------------------------------------- curl */

static size_t discard(char *p, size_t s, size_t n, void *u)
{
	(void)p;
	(void)u;
	return s * n;
}

static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		die("open", path);
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *b = malloc((size_t)n + 1);
	if (!b || fread(b, 1, (size_t)n, f) != (size_t)n)
		die("read", path);
	b[n] = 0;
	fclose(f);
	*len = (size_t)n;
	return b;
}

/* The socket API driver (what core/fetch.c does): curl tells which sockets
 * to watch, one epoll set, curl_multi_socket_action per ready socket. */
struct sockdrv {
	int ep;
	long timeout_ms; /* -1: none */
};

static int drv_socket_cb(CURL *e, curl_socket_t fd, int what, void *userp, void *sockp)
{
	struct sockdrv *d = userp;
	(void)e;
	if (what == CURL_POLL_REMOVE) {
		epoll_ctl(d->ep, EPOLL_CTL_DEL, fd, NULL);
		return 0;
	}
	struct epoll_event ev = { .events = 0, .data.fd = fd };
	if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
		ev.events |= EPOLLIN;
	if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
		ev.events |= EPOLLOUT;
	(void)sockp;
	if (epoll_ctl(d->ep, EPOLL_CTL_ADD, fd, &ev) < 0 && epoll_ctl(d->ep, EPOLL_CTL_MOD, fd, &ev) < 0)
		return -1;
	return 0;
}

static int drv_timer_cb(CURLM *m, long timeout_ms, void *userp)
{
	(void)m;
	((struct sockdrv *)userp)->timeout_ms = timeout_ms;
	return 0;
}

struct curlrun {
	CURLM *m;
	CURL **e;
	int conc;
	long total, started, done, bad;
	int warm;
	double c0, w0;
	/* --as-fetch: per request what core/fetch.c does around the transfer */
	int as_fetch;
	const char *url, *body;
	size_t blen;
	char **hdr_lines;
	int nhdr;
	char errbuf[CURL_ERROR_SIZE];
};

struct grow {
	char *p;
	size_t len, cap;
};

static size_t grow_cb(char *p, size_t sz, size_t n, void *ud)
{
	struct grow *g = ud;
	size_t len = sz * n;
	if (g->len + len + 1 > g->cap) {
		size_t c = g->cap ? g->cap * 2 : 1024;
		while (c < g->len + len + 1)
			c *= 2;
		char *q = realloc(g->p, c);
		if (!q)
			return 0;
		g->p = q;
		g->cap = c;
	}
	memcpy(g->p + g->len, p, len);
	g->len += len;
	return len;
}

static struct grow grow_resp, grow_head;
static struct curl_slist *fetch_hdrs[1024];
static char *fetch_body[1024];

/* What fetch_start does before curl_multi_add_handle: reset the reused
 * handle, a fresh header list and body copy, the same options. */
static void as_fetch_setup(struct curlrun *r, CURL *e, int slot)
{
	curl_easy_reset(e);
	curl_slist_free_all(fetch_hdrs[slot]);
	fetch_hdrs[slot] = NULL;
	for (int i = 0; i < r->nhdr; i++)
		fetch_hdrs[slot] = curl_slist_append(fetch_hdrs[slot], r->hdr_lines[i]);
	free(fetch_body[slot]);
	fetch_body[slot] = malloc(r->blen + 1);
	memcpy(fetch_body[slot], r->body, r->blen + 1);
	grow_resp.len = grow_head.len = 0;
	curl_easy_setopt(e, CURLOPT_URL, r->url);
	curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)(intptr_t)slot);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, grow_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &grow_resp);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, grow_cb);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, &grow_head);
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 10000L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "genrelay/0.1");
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, fetch_hdrs[slot]);
	curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, NULL);
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)r->blen);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, fetch_body[slot]);
}

/* Reads finished transfers; puts each handle back while requests are left.
 * Returns 1 when the measured run is complete. */
static int curl_reap(struct curlrun *r)
{
	CURLMsg *msg;
	int left;
	while ((msg = curl_multi_info_read(r->m, &left))) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		CURL *h = msg->easy_handle;
		long code = 0;
		if (r->as_fetch) { /* what fetch.c's finish() reads */
			double secs;
			char *eff = NULL, *priv = NULL;
			curl_easy_getinfo(h, CURLINFO_PRIVATE, &priv);
			curl_easy_getinfo(h, CURLINFO_TOTAL_TIME, &secs);
			curl_easy_getinfo(h, CURLINFO_EFFECTIVE_URL, &eff);
		}
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
		if (msg->data.result != CURLE_OK || code < 200 || code > 299)
			r->bad++;
		curl_multi_remove_handle(r->m, h);
		r->done++;
		if (r->warm && r->done == r->conc) {
			/* Warm-up over (every connection open): the clock starts. */
			r->warm = 0;
			r->done = 0;
			r->started = 0;
			r->c0 = cpu_ns();
			r->w0 = wall_ns();
		}
		if (r->started < r->total) {
			if (r->as_fetch) {
				char *priv = NULL;
				curl_easy_getinfo(h, CURLINFO_PRIVATE, &priv);
				as_fetch_setup(r, h, (int)(intptr_t)priv);
			}
			curl_multi_add_handle(r->m, h);
			r->started++;
		}
	}
	return !r->warm && r->done >= r->total;
}

static int mode_curl(int argc, char **argv)
{
	const char *url = arg(argc, argv, "--url", NULL), *bodyf = arg(argc, argv, "--body", NULL);
	const char *api = arg(argc, argv, "--api", "socket");
	int conc = atoi(arg(argc, argv, "--concurrency", "32"));
	long total = atol(arg(argc, argv, "--requests", "20000"));
	int sock = strcmp(api, "socket") == 0;
	if (!url || !bodyf || conc < 1 || conc > 1024 || total < 1 || (!sock && strcmp(api, "perform") != 0))
		die("usage", "curl --url URL --body FILE [--header H]... [--concurrency C] [--requests N] [--api socket|perform]");
	size_t blen;
	char *body = read_file(bodyf, &blen);
	struct curl_slist *hdrs = NULL;
	for (int i = 2; i + 1 < argc; i++)
		if (strcmp(argv[i], "--header") == 0)
			hdrs = curl_slist_append(hdrs, argv[i + 1]);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	struct curlrun r = { .m = curl_multi_init(), .conc = conc, .total = total, .warm = 1,
			     .as_fetch = flag(argc, argv, "--as-fetch"), .url = url, .body = body, .blen = blen };
	r.hdr_lines = calloc((size_t)argc, sizeof *r.hdr_lines);
	for (int i = 2; i + 1 < argc; i++)
		if (strcmp(argv[i], "--header") == 0)
			r.hdr_lines[r.nhdr++] = argv[i + 1];
	struct sockdrv d = { .ep = epoll_create1(EPOLL_CLOEXEC), .timeout_ms = -1 };
	curl_multi_setopt(r.m, CURLMOPT_MAXCONNECTS, (long)conc + 8);
	if (sock) {
		curl_multi_setopt(r.m, CURLMOPT_SOCKETFUNCTION, drv_socket_cb);
		curl_multi_setopt(r.m, CURLMOPT_SOCKETDATA, &d);
		curl_multi_setopt(r.m, CURLMOPT_TIMERFUNCTION, drv_timer_cb);
		curl_multi_setopt(r.m, CURLMOPT_TIMERDATA, &d);
	}
	r.e = calloc((size_t)conc, sizeof *r.e);
	for (int i = 0; i < conc; i++) {
		CURL *e = r.e[i] = curl_easy_init();
		curl_easy_setopt(e, CURLOPT_URL, url);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)blen);
		curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
		curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
		curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 10000L);
		if (r.as_fetch)
			as_fetch_setup(&r, e, i);
	}
	for (int i = 0; i < conc; i++, r.started++)
		curl_multi_add_handle(r.m, r.e[i]);
	double deadline = wall_ns() + 120e9;
	int running = 0;
	if (sock)
		curl_multi_socket_action(r.m, CURL_SOCKET_TIMEOUT, 0, &running);
	for (;;) {
		if (sock) {
			struct epoll_event ev[64];
			int n = epoll_wait(d.ep, ev, 64, d.timeout_ms < 0 ? 1000 : (int)d.timeout_ms);
			if (n == 0)
				curl_multi_socket_action(r.m, CURL_SOCKET_TIMEOUT, 0, &running);
			for (int i = 0; i < n; i++) {
				int fl = (ev[i].events & EPOLLIN ? CURL_CSELECT_IN : 0) |
					 (ev[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
					 (ev[i].events & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0);
				curl_multi_socket_action(r.m, ev[i].data.fd, fl, &running);
			}
			if (d.timeout_ms == 0)
				curl_multi_socket_action(r.m, CURL_SOCKET_TIMEOUT, 0, &running);
		} else {
			curl_multi_perform(r.m, &running);
		}
		if (curl_reap(&r))
			break;
		if (wall_ns() > deadline)
			die("curl", "not done within 120 s");
		if (!sock)
			curl_multi_poll(r.m, NULL, 0, 1000, NULL);
	}
	double c1 = cpu_ns(), w1 = wall_ns();
	long done = r.done;
	if (r.bad)
		fprintf(stderr, "bench_parts: curl: %ld transfer(s) failed or answered non-2xx\n", r.bad);
	printf("{\"mode\":\"curl\",\"as_fetch\":%s,\"api\":\"%s\",\"ops\":%ld,\"cpu_ns_per_op\":%.0f,\"wall_ns_per_op\":%.0f,"
	       "\"concurrency\":%d,\"failed\":%ld,\"body_bytes\":%zu}\n",
	       r.as_fetch ? "true" : "false", api, done, (c1 - r.c0) / (double)(done ? done : 1), (w1 - r.w0) / (double)(done ? done : 1), conc,
	       r.bad, blen);
	for (int i = 0; i < conc; i++)
		curl_easy_cleanup(r.e[i]);
	free(r.e);
	for (int i = 0; i < conc; i++) {
		curl_slist_free_all(fetch_hdrs[i]);
		free(fetch_body[i]);
	}
	free(grow_resp.p);
	free(grow_head.p);
	free(r.hdr_lines);
	curl_multi_cleanup(r.m);
	curl_slist_free_all(hdrs);
	free(body);
	close(d.ep);
	return r.bad ? 1 : 0;
}

/* ------------------------------------------------------------------- sqlite */

/* Statements copied from core/store_sqlite.c (the same rows, the same indexes). */
enum { K_JOB_INSERT, K_JOB_UPDATE, K_WORK_ADD, K_WORK_CLAIM, K_WORK_DONE, K_WORK_BECOME,
       K_WORK_RESCHED, K_WORK_DROP, K_DLV_INSERT, K_DLV_UPDATE, K_ATT_INSERT, K_CB_INSERT,
       K_EV_ADD, K_IDEM_PUT, K_COUNT };

#define JOB_COLS "id,customer,model_id,targets,target_idx,provider,model,status," \
	"request_id,track_id,input,webhook_url,hook,output,error_code,error_message," \
	"data,attempt,polls,created_at,updated_at,completed_at,submit_deadline,deadline"

static const struct {
	const char *name, *sql;
} kinds[K_COUNT] = {
	[K_JOB_INSERT] = { "job_insert", "INSERT INTO jobs(" JOB_COLS ") VALUES(?1,?2,?3,?4,?5,?6,?7,?8,"
					 "?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21,?22,?23,?24)" },
	[K_JOB_UPDATE] = { "job_update", "UPDATE jobs SET target_idx=?5,provider=?6,model=?7,status=?8,"
					 "request_id=?9,output=?14,error_code=?15,error_message=?16,data=?17,"
					 "attempt=?18,polls=?19,updated_at=?21,completed_at=?22,"
					 "submit_deadline=?23,deadline=?24 WHERE id=?1" },
	[K_WORK_ADD] = { "work_add", "INSERT INTO work(job_id,kind,ref,due_at,lease_owner,lease_until,tries) "
				     "VALUES(?1,?2,?3,?4,?5,?6,0)" },
	[K_WORK_CLAIM] = { "work_claim", "UPDATE work SET lease_owner=?1, lease_until=?2 WHERE id IN "
					 "(SELECT id FROM work WHERE due_at<=?3 AND lease_until<=?3 "
					 "ORDER BY due_at LIMIT ?4) RETURNING id,job_id,kind,ref,due_at,tries" },
	[K_WORK_DONE] = { "work_done", "DELETE FROM work WHERE id=?1" },
	[K_WORK_BECOME] = { "work_become", "UPDATE work SET kind=?2, due_at=?3, lease_owner=NULL, "
					   "lease_until=0, tries=0 WHERE id=?1" },
	[K_WORK_RESCHED] = { "work_resched", "UPDATE work SET due_at=?2, lease_owner=NULL, lease_until=0, "
					     "tries=?3 WHERE id=?1" },
	[K_WORK_DROP] = { "work_drop", "DELETE FROM work WHERE job_id=?1 AND kind=?2 AND id<>?3" },
	[K_DLV_INSERT] = { "dlv_insert", "INSERT INTO deliveries(id,job_id,event,url,status,attempts,created_at,next_at) "
					 "VALUES(?1,?2,?3,?4,?5,?6,?7,?8)" },
	[K_DLV_UPDATE] = { "dlv_update", "UPDATE deliveries SET status=?5,attempts=?6,next_at=?8 WHERE id=?1" },
	[K_ATT_INSERT] = { "att_insert", "INSERT INTO attempts(delivery_id,job_id,at,status_code,latency_ms,error,"
					 "script_version) VALUES(?1,?2,?3,?4,?5,?6,?7)" },
	[K_CB_INSERT] = { "cb_insert", "INSERT INTO callbacks(job_id,provider,at,outcome,body) VALUES(?1,?2,?3,?4,?5)" },
	[K_EV_ADD] = { "ev_add", "INSERT INTO events(job_id,at,kind,detail) VALUES(?1,?2,?3,?4)" },
	[K_IDEM_PUT] = { "idem_put", "INSERT INTO idempotency(customer,key,body_hash,job_id,created_at) "
				     "VALUES(?1,?2,?3,?4,?5)" },
};

static const char INPUT[] =
	"{\"prompt\":\"a lighthouse on a cliff at dusk, long exposure, waves crashing below, volumetric "
	"light, 35mm film\",\"image_size\":\"landscape_4_3\",\"num_inference_steps\":28,"
	"\"guidance_scale\":3.5,\"num_images\":1,\"seed\":42}";
static const char OUTPUT[] =
	"{\"type\":\"image\",\"items\":[{\"type\":\"image\",\"url\":\"http://127.0.0.1:41234/files/"
	"5b0d9c1e.png\",\"content_type\":\"image/png\"}]}";

struct replay {
	sqlite3 *db;
	sqlite3_stmt *st[K_COUNT];
	sqlite3_stmt *begin, *commit;
	long long next_work;   /* next pre-written work row to update or delete */
	long long claim_limit; /* rows per claim statement */
	long long serial;
	char *cbbody;
};

static void step(sqlite3 *db, sqlite3_stmt *st)
{
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		;
	if (rc != SQLITE_DONE)
		die("sqlite", sqlite3_errmsg(db));
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
}

static void job_id(char *out, size_t n, const char *prefix, long long i)
{
	snprintf(out, n, "job_01JD%s%018lld", prefix, i);
}

static void bind_job(sqlite3_stmt *st, const char *id, int done)
{
	sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 2, "acme", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, "fal-ai/flux/dev", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, "[\"fal:fal-ai/flux/dev\"]", -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 5, 0);
	sqlite3_bind_text(st, 6, "fal", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 7, "fal-ai/flux/dev", -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 8, done ? 3 : 1);
	sqlite3_bind_text(st, 9, "3f1c2a9e-7b44-4c1e-9a51-2d8f0c6b7e13", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 10, "bench-order-000001", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 11, INPUT, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 12, "http://127.0.0.1:9/hook/acme", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 13, "default", -1, SQLITE_STATIC);
	if (done)
		sqlite3_bind_text(st, 14, OUTPUT, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 17, "{\"app\":\"fal-ai/flux\"}", -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 18, 1);
	sqlite3_bind_int(st, 19, 0);
	sqlite3_bind_int64(st, 20, 1732300000000LL);
	sqlite3_bind_int64(st, 21, 1732300000050LL);
	if (done)
		sqlite3_bind_int64(st, 22, 1732300004000LL);
	sqlite3_bind_int64(st, 23, 1732300120000LL);
	sqlite3_bind_int64(st, 24, 1732300900000LL);
}

/* Writes one statement of kind k for job i. */
static void replay_one(struct replay *r, int k, long long i)
{
	sqlite3_stmt *st = r->st[k];
	char id[64], ref[64];
	job_id(id, sizeof id, "PRE", i);
	long long s = ++r->serial;
	switch (k) {
	case K_JOB_INSERT:
		job_id(id, sizeof id, "NEW", s);
		bind_job(st, id, 0);
		break;
	case K_JOB_UPDATE:
		bind_job(st, id, 1);
		break;
	case K_WORK_ADD:
		sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int(st, 2, 1);
		sqlite3_bind_int64(st, 4, 1732300000000LL + s);
		sqlite3_bind_int64(st, 6, 0);
		break;
	case K_WORK_CLAIM:
		sqlite3_bind_text(st, 1, "w0", -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, 9000000000000LL);
		sqlite3_bind_int64(st, 3, 8000000000000LL); /* every unleased row is due */
		sqlite3_bind_int64(st, 4, r->claim_limit);
		break;
	case K_WORK_DONE:
	case K_WORK_BECOME:
	case K_WORK_RESCHED:
		sqlite3_bind_int64(st, 1, r->next_work++);
		sqlite3_bind_int(st, 2, 2);
		sqlite3_bind_int64(st, 3, 1732300060000LL + s);
		break;
	case K_WORK_DROP: /* the job's pre-written poll row (kind 3) */
		sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int(st, 2, 3);
		sqlite3_bind_int64(st, 3, 0);
		break;
	case K_DLV_INSERT:
		snprintf(ref, sizeof ref, "dlv_01JDNEW%018lld", s);
		sqlite3_bind_text(st, 1, ref, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 2, id, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 3, "job.succeeded", -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 4, "http://127.0.0.1:9/hook/acme", -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 5, "pending", -1, SQLITE_STATIC);
		sqlite3_bind_int(st, 6, 0);
		sqlite3_bind_int64(st, 7, 1732300004000LL);
		sqlite3_bind_int64(st, 8, 1732300004000LL);
		break;
	case K_DLV_UPDATE:
		snprintf(ref, sizeof ref, "dlv_01JDPRE%018lld", i);
		sqlite3_bind_text(st, 1, ref, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 5, "delivered", -1, SQLITE_STATIC);
		sqlite3_bind_int(st, 6, 1);
		sqlite3_bind_int64(st, 8, 0);
		break;
	case K_ATT_INSERT:
		snprintf(ref, sizeof ref, "dlv_01JDPRE%018lld", i);
		sqlite3_bind_text(st, 1, ref, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 2, id, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 3, 1732300004100LL);
		sqlite3_bind_int(st, 4, 204);
		sqlite3_bind_double(st, 5, 0.4);
		sqlite3_bind_text(st, 7, "3f1c2a9e7b44", -1, SQLITE_STATIC);
		break;
	case K_CB_INSERT:
		sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 2, "fal", -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, 1732300004000LL);
		sqlite3_bind_text(st, 4, "accepted", -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 5, r->cbbody, -1, SQLITE_STATIC); /* kept as received */
		break;
	case K_EV_ADD:
		sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 2, 1732300004000LL);
		sqlite3_bind_text(st, 3, "submitted", -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 4, "{\"provider\":\"fal\",\"request_id\":\"3f1c2a9e-7b44-4c1e-9a51-2d8f0c6b7e13\"}",
				  -1, SQLITE_STATIC);
		break;
	case K_IDEM_PUT:
		snprintf(ref, sizeof ref, "idem-%lld", s);
		sqlite3_bind_text(st, 1, "acme", -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, ref, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 3, "6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b", -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 4, id, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 5, 1732300000000LL);
		break;
	}
	step(r->db, st);
}

static int mode_sqlite(int argc, char **argv)
{
	const char *db = arg(argc, argv, "--db", NULL), *recipe = arg(argc, argv, "--recipe", NULL);
	long jobs = atol(arg(argc, argv, "--jobs", "20000"));
	double per_commit = atof(arg(argc, argv, "--per-commit", "1"));
	int fsync = flag(argc, argv, "--fsync");
	if (!db || !recipe || jobs < 1 || per_commit < 1)
		die("usage", "sqlite --db PATH --recipe KIND:STEPS[:ROWS],... --per-commit K [--jobs N] [--fsync]");
	double steps[K_COUNT] = { 0 }, rows[K_COUNT] = { 0 };
	char *rc = strdup(recipe);
	for (char *save = NULL, *t = strtok_r(rc, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		char *c1 = strchr(t, ':');
		if (!c1)
			die("recipe", t);
		*c1 = 0;
		int k = -1;
		for (int i = 0; i < K_COUNT; i++)
			if (strcmp(kinds[i].name, t) == 0)
				k = i;
		if (k < 0)
			die("recipe: unknown kind", t);
		char *c2 = strchr(c1 + 1, ':');
		steps[k] = atof(c1 + 1);
		rows[k] = c2 ? atof(c2 + 1) : steps[k];
	}
	free(rc);

	/* genrelay's schema, written by store_open. */
	char spec[4096], err[512];
	snprintf(spec, sizeof spec, "sqlite:%s", db);
	struct store *s = store_open(spec, fsync, err, sizeof err);
	if (!s)
		die("store_open", err);
	store_close(s);

	struct replay r = { 0 };
	r.cbbody = callback_body();
	if (sqlite3_open_v2(db, &r.db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
		die("sqlite3_open", db);
	char pragmas[256];
	snprintf(pragmas, sizeof pragmas,
		 "PRAGMA journal_mode=WAL; PRAGMA synchronous=%s; PRAGMA foreign_keys=OFF;"
		 "PRAGMA cache_size=-24576; PRAGMA temp_store=MEMORY; PRAGMA wal_autocheckpoint=4000;",
		 fsync ? "FULL" : "NORMAL");
	if (sqlite3_exec(r.db, pragmas, NULL, NULL, NULL) != SQLITE_OK)
		die("pragmas", sqlite3_errmsg(r.db));
	for (int k = 0; k < K_COUNT; k++)
		if (sqlite3_prepare_v3(r.db, kinds[k].sql, -1, SQLITE_PREPARE_PERSISTENT, &r.st[k], NULL) != SQLITE_OK)
			die(kinds[k].name, sqlite3_errmsg(r.db));
	sqlite3_prepare_v2(r.db, "BEGIN IMMEDIATE", -1, &r.begin, NULL);
	sqlite3_prepare_v2(r.db, "COMMIT", -1, &r.commit, NULL);

	/* Rows that later steps update or delete, written before the clock starts:
	 * one job and one delivery per job, and enough work rows. */
	double wsteps = steps[K_WORK_DONE] + steps[K_WORK_BECOME] + steps[K_WORK_RESCHED] + rows[K_WORK_CLAIM];
	long long nwork = (long long)ceil(wsteps * (double)jobs) + 16;
	step(r.db, r.begin);
	sqlite3_stmt *ji = r.st[K_JOB_INSERT];
	for (long i = 0; i < jobs; i++) {
		char id[64], ref[64];
		job_id(id, sizeof id, "PRE", i);
		bind_job(ji, id, 0);
		step(r.db, ji);
		snprintf(ref, sizeof ref, "dlv_01JDPRE%018ld", i);
		sqlite3_stmt *d = r.st[K_DLV_INSERT];
		sqlite3_bind_text(d, 1, ref, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(d, 2, id, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(d, 3, "job.succeeded", -1, SQLITE_STATIC);
		sqlite3_bind_text(d, 4, "http://127.0.0.1:9/hook/acme", -1, SQLITE_STATIC);
		sqlite3_bind_text(d, 5, "pending", -1, SQLITE_STATIC);
		sqlite3_bind_int(d, 6, 0);
		sqlite3_bind_int64(d, 7, 1732300004000LL);
		sqlite3_bind_int64(d, 8, 1732300004000LL);
		step(r.db, d);
	}
	sqlite3_stmt *wa = r.st[K_WORK_ADD];
	for (long long w = 0; w < nwork; w++) {
		char id[64];
		job_id(id, sizeof id, "PRE", w % jobs);
		sqlite3_bind_text(wa, 1, id, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int(wa, 2, 1);
		sqlite3_bind_int64(wa, 4, w); /* due long ago: claimable */
		sqlite3_bind_int64(wa, 6, 0);
		step(r.db, wa);
	}
	if (steps[K_WORK_DROP] > 0) {
		/* One poll row per job for work_drop to delete (as a callback drops
		 * the job's poll row). */
		for (long i = 0; i < jobs; i++) {
			char id[64];
			job_id(id, sizeof id, "PRE", i);
			sqlite3_bind_text(wa, 1, id, -1, SQLITE_TRANSIENT);
			sqlite3_bind_int(wa, 2, 3);
			sqlite3_bind_int64(wa, 4, 9000000000000LL);
			sqlite3_bind_int64(wa, 6, 0);
			step(r.db, wa);
		}
	}
	step(r.db, r.commit);
	sqlite3_exec(r.db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
	r.next_work = 1;
	r.claim_limit = steps[K_WORK_CLAIM] > 0 ? (long long)llround(fmax(1, rows[K_WORK_CLAIM] / steps[K_WORK_CLAIM])) : 1;

	double acc[K_COUNT] = { 0 };
	double c0 = cpu_ns(), w0 = wall_ns();
	double commits = 0, since = 0;
	int open = 0;
	for (long i = 0; i < jobs; i++) {
		if (!open) {
			step(r.db, r.begin);
			open = 1;
		}
		for (int k = 0; k < K_COUNT; k++) {
			acc[k] += steps[k];
			while (acc[k] >= 1 - 1e-9) {
				acc[k] -= 1;
				replay_one(&r, k, i);
			}
		}
		if (++since >= per_commit - 1e-9) {
			step(r.db, r.commit);
			commits++;
			open = 0;
			since -= per_commit;
		}
	}
	if (open) {
		step(r.db, r.commit);
		commits++;
	}
	double c1 = cpu_ns(), w1 = wall_ns();
	double rows_per_job = 0;
	for (int k = 0; k < K_COUNT; k++)
		rows_per_job += rows[k];
	printf("{\"mode\":\"sqlite\",\"ops\":%ld,\"cpu_ns_per_op\":%.0f,\"wall_ns_per_op\":%.0f,"
	       "\"rows_per_job\":%.3f,\"jobs_per_commit\":%.2f,\"commits\":%.0f,\"cpu_ns_per_row\":%.0f,"
	       "\"fsync\":%s}\n",
	       jobs, (c1 - c0) / (double)jobs, (w1 - w0) / (double)jobs, rows_per_job, per_commit, commits,
	       rows_per_job > 0 ? (c1 - c0) / (double)jobs / rows_per_job : 0, fsync ? "true" : "false");
	for (int k = 0; k < K_COUNT; k++)
		sqlite3_finalize(r.st[k]);
	sqlite3_finalize(r.begin);
	sqlite3_finalize(r.commit);
	sqlite3_close(r.db);
	free(r.cbbody);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: bench_parts ed25519|hmac|curl|sqlite [options] (see bench/parts/parts.c)\n");
		return 2;
	}
	long iters = atol(arg(argc, argv, "--iterations", "20000"));
	if (iters < 1)
		iters = 1;
	if (strcmp(argv[1], "ed25519") == 0)
		return mode_ed25519(iters);
	if (strcmp(argv[1], "hmac") == 0)
		return mode_hmac(iters);
	if (strcmp(argv[1], "curl") == 0)
		return mode_curl(argc, argv);
	if (strcmp(argv[1], "sqlite") == 0)
		return mode_sqlite(argc, argv);
	fprintf(stderr, "bench_parts: unknown mode %s\n", argv[1]);
	return 2;
}
