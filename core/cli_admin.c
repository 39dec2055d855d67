/*
 * cli_admin.c: operator commands over HTTP to a running genrelay (see
 * cli_admin.h). A command line tool, so it uses curl's blocking easy API.
 */
#include "cli_admin.h"

#include "buf.h"
#include "config.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ANSWER_MAX (16u << 20)
#define TIMEOUT_S 30L

struct opts {
	const char *url, *key, *config;
	const char *customer, *provider, *status, *search, *state, *limit;
	int json, all;
	char **rest;  /* positional arguments */
	int nrest;
	char base[512];
	char *key_owned;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: genrelay jobs list [--customer C] [--provider P] [--status S] [--search Q] [--limit N]\n"
		"       genrelay jobs show ID\n"
		"       genrelay jobs cancel ID\n"
		"       genrelay deliveries list [--state dead|failing] [--customer C]\n"
		"       genrelay deliveries retry ID... | --all [--state dead|failing] [--customer C]\n"
		"options of every command: --url URL, --admin-key KEY ($GENRELAY_ADMIN_KEY),\n"
		"  --config FILE (its listen address and admin_key), --json (the server's answer as is)\n");
}

static size_t collect(char *p, size_t size, size_t n, void *arg)
{
	return buf_add(arg, p, size * n) < 0 ? 0 : size * n;
}

/*
 * One call to the admin views: method path (under /ui/api/). *out gets the
 * parsed answer (caller decrefs) when it is 2xx. Returns 0, or 1 with the
 * reason printed.
 */
static int call(struct opts *o, const char *method, const char *path, json_t **out)
{
	char url[2048], auth[1024];
	struct buf b;
	long status = 0;
	int rc = 1;
	*out = NULL;
	snprintf(url, sizeof url, "%s/ui/api/%s", o->base, path);
	snprintf(auth, sizeof auth, "Authorization: Bearer %s", o->key);
	CURL *e = curl_easy_init();
	if (!e)
		return 1;
	buf_init(&b, ANSWER_MAX);
	struct curl_slist *h = curl_slist_append(NULL, auth);
	h = curl_slist_append(h, "Accept: application/json");
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	if (strcmp(method, "POST") == 0)
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(e, CURLOPT_TIMEOUT, TIMEOUT_S);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	CURLcode cc = curl_easy_perform(e);
	if (cc != CURLE_OK) {
		fprintf(stderr, "genrelay: %s: %s\n", o->base, curl_easy_strerror(cc));
		goto out;
	}
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
	json_t *v = json_loadb(b.p ? b.p : "", b.len, 0, NULL);
	if (status < 200 || status > 299) {
		const char *msg = json_string_value(json_object_get(json_object_get(v, "error"), "message"));
		fprintf(stderr, "genrelay: HTTP %ld: %s\n", status, msg ? msg : "(no message)");
		json_decref(v);
		goto out;
	}
	if (!v) {
		fprintf(stderr, "genrelay: the answer is not JSON\n");
		goto out;
	}
	*out = v;
	rc = 0;
out:
	curl_slist_free_all(h);
	curl_easy_cleanup(e);
	buf_free(&b);
	return rc;
}

/* Appends "&name=value" (value percent-encoded) when value is set. */
static void add_query(struct buf *q, const char *name, const char *value)
{
	if (!value)
		return;
	char *enc = curl_easy_escape(NULL, value, 0);
	buf_printf(q, "%s%s=%s", q->len ? "&" : "", name, enc ? enc : "");
	curl_free(enc);
}

/* "<prefix><id, percent-encoded><suffix>" into out (a path under /ui/api/). */
static void id_path(char *out, size_t outlen, const char *prefix, const char *id,
		    const char *suffix)
{
	char *enc = curl_easy_escape(NULL, id, 0);
	snprintf(out, outlen, "%s%s%s", prefix, enc ? enc : "", suffix);
	curl_free(enc);
}

static const char *str(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "-";
}

static void print_json(json_t *v)
{
	char *t = json_dumps(v, JSON_INDENT(2));
	if (t)
		printf("%s\n", t);
	free(t);
}

static int jobs_list(struct opts *o)
{
	struct buf q;
	json_t *v;
	buf_init(&q, 4096);
	add_query(&q, "customer", o->customer);
	add_query(&q, "provider", o->provider);
	add_query(&q, "status", o->status);
	add_query(&q, "q", o->search);
	add_query(&q, "limit", o->limit);
	char path[4200];
	snprintf(path, sizeof path, "jobs%s%s", q.len ? "?" : "", q.len ? q.p : "");
	buf_free(&q);
	if (call(o, "GET", path, &v))
		return 1;
	if (o->json) {
		print_json(v);
	} else {
		size_t i;
		json_t *j;
		printf("%-32s %-12s %-10s %-11s %-24s %s\n", "JOB", "CUSTOMER", "PROVIDER", "STATE",
		       "CREATED", "MODEL");
		json_array_foreach(json_object_get(v, "data"), i, j)
			printf("%-32s %-12s %-10s %-11s %-24s %s\n", str(j, "job_id"), str(j, "customer"),
			       str(j, "provider"), str(j, "status"), str(j, "created_at"), str(j, "model_id"));
		if (json_is_string(json_object_get(v, "next_cursor")))
			printf("(more: --limit N, newest first)\n");
	}
	json_decref(v);
	return 0;
}

static int jobs_show(struct opts *o, const char *id)
{
	char path[256];
	json_t *v;
	id_path(path, sizeof path, "jobs/", id, "");
	if (call(o, "GET", path, &v))
		return 1;
	if (o->json) {
		print_json(v);
		json_decref(v);
		return 0;
	}
	json_t *j = json_object_get(v, "job");
	printf("job       %s\ncustomer  %s\nmodel     %s\nprovider  %s\nstate     %s\n"
	       "created   %s\ncompleted %s\n", str(j, "job_id"), str(j, "customer"),
	       str(j, "model_id"), str(j, "provider"), str(j, "status"), str(j, "created_at"),
	       str(j, "completed_at"));
	json_t *err = json_object_get(j, "error");
	if (json_is_object(err))
		printf("error     %s: %s\n", str(err, "code"), str(err, "message"));
	printf("events:\n");
	size_t i, k;
	json_t *e, *a;
	json_array_foreach(json_object_get(v, "events"), i, e) {
		char *d = json_dumps(json_object_get(e, "detail"), JSON_COMPACT | JSON_ENCODE_ANY);
		printf("  %s  %-12s %s\n", str(e, "at"), str(e, "kind"), d ? d : "");
		free(d);
	}
	printf("deliveries:\n");
	json_array_foreach(json_object_get(v, "deliveries"), i, e) {
		printf("  %s  %s  %s\n", str(e, "delivery_id"), str(e, "event"), str(e, "status"));
		json_array_foreach(json_object_get(e, "attempts"), k, a) {
			json_t *sc = json_object_get(a, "status_code");
			char what[300];
			if (json_is_integer(sc) && json_integer_value(sc) > 0)
				snprintf(what, sizeof what, "HTTP %lld", (long long)json_integer_value(sc));
			else
				snprintf(what, sizeof what, "%s", str(a, "error"));
			printf("    %s  %5.0f ms  %s\n", str(a, "at"),
			       json_number_value(json_object_get(a, "latency_ms")), what);
		}
	}
	json_decref(v);
	return 0;
}

static int jobs_cancel(struct opts *o, const char *id)
{
	char path[256];
	json_t *v;
	id_path(path, sizeof path, "jobs/", id, "/cancel");
	if (call(o, "POST", path, &v))
		return 1;
	if (o->json)
		print_json(v);
	else
		printf("%s %s\n", str(v, "job_id"), str(v, "status"));
	json_decref(v);
	return 0;
}

static int deliveries_path(struct opts *o, const char *what, char *out, size_t outlen)
{
	struct buf q;
	buf_init(&q, 4096);
	add_query(&q, "state", o->state ? o->state : "dead");
	add_query(&q, "customer", o->customer);
	int n = snprintf(out, outlen, "%s?%s", what, q.p ? q.p : "");
	buf_free(&q);
	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

static int deliveries_list(struct opts *o)
{
	char path[4200];
	json_t *v;
	if (deliveries_path(o, "deliveries", path, sizeof path) < 0 || call(o, "GET", path, &v))
		return 1;
	if (o->json) {
		print_json(v);
	} else {
		size_t i;
		json_t *d;
		printf("%-30s %-32s %-12s %-9s %-8s %s\n", "DELIVERY", "JOB", "CUSTOMER", "STATE",
		       "ATTEMPTS", "LAST");
		json_array_foreach(json_object_get(v, "data"), i, d) {
			json_t *sc = json_object_get(d, "last_status_code");
			char last[300];
			if (json_is_integer(sc))
				snprintf(last, sizeof last, "HTTP %lld", (long long)json_integer_value(sc));
			else
				snprintf(last, sizeof last, "%s", str(d, "last_error"));
			printf("%-30s %-32s %-12s %-9s %-8lld %s\n", str(d, "delivery_id"),
			       str(d, "job_id"), str(d, "customer"), str(d, "status"),
			       (long long)json_integer_value(json_object_get(d, "attempt_count")), last);
		}
	}
	json_decref(v);
	return 0;
}

static int retry_one(struct opts *o, const char *id)
{
	char path[256];
	json_t *v;
	id_path(path, sizeof path, "deliveries/", id, "/retry");
	int rc = call(o, "POST", path, &v);
	json_decref(v);
	return rc;
}

/* Retries the given ids, or every delivery of the filter (--all), one call
 * each, with a progress line. */
static int deliveries_retry(struct opts *o)
{
	json_t *ids = json_array();
	int failed = 0;
	if (o->all) {
		char path[4200];
		json_t *v;
		if (deliveries_path(o, "deliveries", path, sizeof path) < 0 || call(o, "GET", path, &v)) {
			json_decref(ids);
			return 1;
		}
		size_t i;
		json_t *d;
		json_array_foreach(json_object_get(v, "data"), i, d)
			json_array_append(ids, json_object_get(d, "delivery_id"));
		json_decref(v);
	} else {
		for (int i = 0; i < o->nrest; i++)
			json_array_append_new(ids, json_string(o->rest[i]));
	}
	size_t n = json_array_size(ids), i;
	int tty = isatty(STDERR_FILENO);
	json_t *id;
	json_array_foreach(ids, i, id) {
		if (retry_one(o, json_string_value(id)))
			failed++;
		if (tty)
			fprintf(stderr, "\rretried %zu/%zu", i + 1, n);
		else if ((i + 1) % 50 == 0 || i + 1 == n)
			fprintf(stderr, "retried %zu/%zu\n", i + 1, n);
	}
	if (tty && n)
		fprintf(stderr, "\n");
	printf("%zu retried, %d failed\n", n - (size_t)failed, failed);
	json_decref(ids);
	return failed ? 1 : 0;
}

/* The server's URL and the admin key from the options, environment or config. */
static int resolve(struct opts *o)
{
	struct config *c = NULL;
	char err[512];
	if (o->config || !o->url || (!o->key && !getenv("GENRELAY_ADMIN_KEY"))) {
		if (o->config || access("genrelay.conf.lua", R_OK) == 0) {
			c = config_load(o->config ? o->config : "genrelay.conf.lua", err, sizeof err);
			if (!c) {
				fprintf(stderr, "genrelay: %s\n", err);
				return -1;
			}
		}
	}
	if (o->url)
		snprintf(o->base, sizeof o->base, "%s", o->url);
	else
		snprintf(o->base, sizeof o->base, "http://%s", c ? c->listen : "127.0.0.1:8080");
	size_t bl = strlen(o->base);
	if (bl && o->base[bl - 1] == '/')
		o->base[bl - 1] = '\0';
	if (!o->key)
		o->key = getenv("GENRELAY_ADMIN_KEY");
	if (!o->key && c && c->admin_key)
		o->key = o->key_owned = strdup(c->admin_key);
	config_free(c);
	if (!o->key || !*o->key) {
		fprintf(stderr, "genrelay: no admin key (--admin-key, $GENRELAY_ADMIN_KEY or admin_key in --config)\n");
		return -1;
	}
	return 0;
}

int cli_admin(const char *group, int argc, char **argv)
{
	struct opts o = {0};
	char *rest[64];
	o.rest = rest;
	if (argc < 1) {
		usage(stderr);
		return 2;
	}
	const char *verb = argv[0];
	for (int i = 1; i < argc; i++) {
		const char **slot = NULL;
		const char *a = argv[i];
		if (strcmp(a, "--url") == 0) slot = &o.url;
		else if (strcmp(a, "--admin-key") == 0) slot = &o.key;
		else if (strcmp(a, "--config") == 0) slot = &o.config;
		else if (strcmp(a, "--customer") == 0) slot = &o.customer;
		else if (strcmp(a, "--provider") == 0) slot = &o.provider;
		else if (strcmp(a, "--status") == 0) slot = &o.status;
		else if (strcmp(a, "--search") == 0) slot = &o.search;
		else if (strcmp(a, "--state") == 0) slot = &o.state;
		else if (strcmp(a, "--limit") == 0) slot = &o.limit;
		else if (strcmp(a, "--json") == 0) o.json = 1;
		else if (strcmp(a, "--all") == 0) o.all = 1;
		else if (strcmp(a, "--help") == 0) { usage(stdout); return 0; }
		else if (a[0] == '-' || o.nrest == 64) { usage(stderr); return 2; }
		else o.rest[o.nrest++] = argv[i];
		if (slot) {
			if (i + 1 >= argc) {
				usage(stderr);
				return 2;
			}
			*slot = argv[++i];
		}
	}
	int jobs = strcmp(group, "jobs") == 0;
	int list = strcmp(verb, "list") == 0 && o.nrest == 0;
	int one = (strcmp(verb, "show") == 0 || strcmp(verb, "cancel") == 0) && o.nrest == 1;
	int retry = !jobs && strcmp(verb, "retry") == 0 && (o.all ? o.nrest == 0 : o.nrest > 0);
	if (!(list || (jobs && one) || retry)) {
		usage(stderr);
		return 2;
	}
	if (resolve(&o) < 0) {
		free(o.key_owned);
		return 2;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	int rc;
	if (jobs)
		rc = list ? jobs_list(&o) : strcmp(verb, "show") == 0 ? jobs_show(&o, o.rest[0])
									 : jobs_cancel(&o, o.rest[0]);
	else
		rc = list ? deliveries_list(&o) : deliveries_retry(&o);
	curl_global_cleanup();
	free(o.key_owned);
	return rc;
}
