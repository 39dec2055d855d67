/*
 * ui.c: the dashboard's routes: its pages, the login that sets the session
 * cookie, and the admin JSON views the pages read (jobs across customers, a
 * job's timeline, failing and dead deliveries with retry, scripts,
 * providers). Reads go to the store and script host; the one action,
 * retrying deliveries, goes through engine_redeliver() like the API's.
 */
#include "ui.h"

#include "config.h"
#include "engine.h"
#include "job.h"
#include "keypool.h"
#include "loop.h"
#include "script.h"
#include "server.h"
#include "store.h"
#include "ui_session.h"
#include "worker.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define SESSION_COOKIE "genrelay_session"
#define SESSION_S (12 * 3600)
#define LOGIN_BODY_MAX 1024
#define BULK_RETRY_MAX 1000
#define STATS_WINDOW_MS (3600 * 1000)

int ui_owns(const char *url)
{
	return strncmp(url, "/ui", 3) == 0 && (url[3] == '\0' || url[3] == '/' || url[3] == '?');
}

static const struct ui_asset *asset(const char *path)
{
	for (unsigned long i = 0; i < ui_asset_count; i++)
		if (strcmp(ui_assets[i].path, path) == 0)
			return &ui_assets[i];
	return NULL;
}

/* Headers every dashboard answer carries: no framing, no inline script, no
 * caching of admin data, no referrer leaking job ids. */
static void page_headers(struct request *r)
{
	server_response_header(r, "Content-Security-Policy",
			       "default-src 'none'; script-src 'self'; style-src 'self'; "
			       "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
			       "frame-ancestors 'none'; base-uri 'none'");
	server_response_header(r, "X-Frame-Options", "DENY");
	server_response_header(r, "X-Content-Type-Options", "nosniff");
	server_response_header(r, "Referrer-Policy", "no-referrer");
	server_response_header(r, "Cache-Control", "no-store");
}

static void send_asset(struct request *r, unsigned status, const struct ui_asset *a)
{
	char *copy = malloc(a->len ? a->len : 1);
	if (!copy) {
		server_respond_error(r, 503, "UNAVAILABLE", "out of memory");
		return;
	}
	memcpy(copy, a->data, a->len);
	server_respond_raw(r, status, copy, a->len, a->content_type);
	page_headers(r);
}

static void redirect(struct request *r, const char *to)
{
	server_respond_raw(r, 303, strdup(""), 0, "text/plain");
	server_response_header(r, "Location", to);
	page_headers(r);
}

static void send_json(struct request *r, json_t *v)
{
	if (!v) {
		server_respond_error(r, 503, "UNAVAILABLE", "the store is unavailable");
		return;
	}
	server_respond_json(r, 200, v);
	page_headers(r);
}

/* The session cookie's value when it is a valid session, else NULL. */
static const char *session_of(struct request *r, const unsigned char *key, char *buf, size_t n)
{
	const char *cookie = server_header(r, "Cookie");
	if (!cookie || ui_cookie_get(cookie, SESSION_COOKIE, buf, n) < 0)
		return NULL;
	return ui_session_valid(key, buf, loop_wall_ms() / 1000) ? buf : NULL;
}

/* Decodes one application/x-www-form-urlencoded field of body into out. */
static int form_field(const char *body, size_t len, const char *name, char *out, size_t outlen)
{
	size_t nl = strlen(name), i = 0;
	while (i < len) {
		size_t end = i;
		while (end < len && body[end] != '&')
			end++;
		if (end - i > nl && strncmp(body + i, name, nl) == 0 && body[i + nl] == '=') {
			size_t o = 0;
			for (size_t k = i + nl + 1; k < end; k++) {
				char c = body[k];
				if (c == '+') {
					c = ' ';
				} else if (c == '%' && k + 2 < end + 1 && isxdigit((unsigned char)body[k + 1]) &&
					   isxdigit((unsigned char)body[k + 2])) {
					char hex[3] = { body[k + 1], body[k + 2], 0 };
					c = (char)strtol(hex, NULL, 16);
					k += 2;
				}
				if (o + 1 >= outlen)
					return -1;
				out[o++] = c;
			}
			out[o] = '\0';
			return (int)o;
		}
		i = end + 1;
	}
	return -1;
}

static void handle_login(struct request *r, const unsigned char *key)
{
	char given[512], token[UI_SESSION_TOKEN_MAX], cookie[UI_SESSION_TOKEN_MAX + 128];
	if (strcmp(r->method, "GET") == 0) {
		send_asset(r, 200, asset("/ui/login.html"));
		return;
	}
	if (strcmp(r->method, "POST") != 0) {
		server_respond_error(r, 405, "METHOD_NOT_ALLOWED", "%s is not allowed here", r->method);
		return;
	}
	if (r->body.len > LOGIN_BODY_MAX ||
	    form_field(r->body.p ? r->body.p : "", r->body.len, "key", given, sizeof given) < 0 ||
	    !config_is_admin_key(r->w->cfg, given)) {
		redirect(r, "/ui/login?failed=1");
		return;
	}
	if (ui_session_issue(key, loop_wall_ms() / 1000 + SESSION_S, token, sizeof token) < 0) {
		server_respond_error(r, 503, "UNAVAILABLE", "cannot start a session");
		return;
	}
	snprintf(cookie, sizeof cookie,
		 SESSION_COOKIE "=%s; Path=/ui; Max-Age=%d; HttpOnly; Secure; SameSite=Strict",
		 token, SESSION_S);
	redirect(r, "/ui/");
	server_response_header(r, "Set-Cookie", cookie);
}

/* A time filter: Unix milliseconds, or RFC 3339 in UTC ("...Z", as the API
 * writes times). 0 when absent, -1 when malformed. */
static int64_t query_time(struct request *r, const char *name)
{
	const char *v = server_query(r, name);
	if (!v || !*v)
		return 0;
	char *end;
	long long n = strtoll(v, &end, 10);
	if (*end == '\0')
		return n >= 0 ? n : -1;
	struct tm tm = {0};
	int ms = 0;
	const char *p = strptime(v, "%Y-%m-%dT%H:%M:%S", &tm);
	if (p && *p == '.') {
		int digits = 0;
		for (p++; isdigit((unsigned char)*p); p++, digits++)
			if (digits < 3)
				ms = ms * 10 + (*p - '0');
		for (; digits < 3; digits++)
			ms *= 10;
	}
	if (!p || strcmp(p, "Z") != 0)
		return -1;
	return (int64_t)timegm(&tm) * 1000 + ms;
}

static const char *query_str(struct request *r, const char *name)
{
	const char *v = server_query(r, name);
	return v && *v ? v : NULL;
}

static void view_jobs(struct request *r)
{
	const char *lim = query_str(r, "limit");
	struct job_filter f = {
		.customer = query_str(r, "customer"), .provider = query_str(r, "provider"),
		.status = query_str(r, "status"), .q = query_str(r, "q"),
		.cursor = query_str(r, "cursor"), .limit = lim ? atoi(lim) : 50,
	};
	enum job_status js;
	f.since = query_time(r, "since");
	f.until = query_time(r, "until");
	if (f.limit < 1 || f.limit > 200 || f.since < 0 || f.until < 0 ||
	    (f.status && job_status_parse(f.status, &js) < 0)) {
		server_respond_error(r, 400, "INVALID_REQUEST",
				     "limit is 1 to 200, since/until RFC 3339 or Unix ms, status a job status");
		return;
	}
	send_json(r, store_job_search(r->w->store, &f));
}

static void view_job(struct request *r, const char *id)
{
	struct job j;
	int rc = store_job_get(r->w->store, id, NULL, &j);
	if (rc != 0) {
		server_respond_error(r, rc == 1 ? 404 : 503, rc == 1 ? "JOB_NOT_FOUND" : "UNAVAILABLE",
				     rc == 1 ? "no such job" : "the store is unavailable");
		return;
	}
	json_t *o = job_to_json(&j);
	json_object_set_new(o, "customer", json_string(j.customer));
	json_object_set_new(o, "webhook_url", j.webhook_url ? json_string(j.webhook_url) : json_null());
	json_t *v = json_object();
	json_object_set_new(v, "job", o);
	json_object_set_new(v, "events", store_job_events(r->w->store, j.id));
	json_object_set_new(v, "deliveries", store_job_deliveries(r->w->store, j.id));
	json_t *cbs = store_job_callbacks(r->w->store, j.id);
	json_object_set_new(v, "callbacks", cbs ? cbs : json_array());
	job_clear(&j);
	send_json(r, v);
}

static int delivery_state(const char *s)
{
	return s && (strcmp(s, "failing") == 0 || strcmp(s, "dead") == 0);
}

static void view_deliveries(struct request *r)
{
	const char *state = query_str(r, "state");
	if (!state)
		state = "dead";
	if (!delivery_state(state)) {
		server_respond_error(r, 400, "INVALID_REQUEST", "state is failing or dead");
		return;
	}
	json_t *l = store_delivery_list(r->w->store, state, query_str(r, "customer"), 200);
	send_json(r, l ? json_pack("{s:o}", "data", l) : NULL);
}

/*
 * "{id}/{action}" into id (idlen bytes): 0, or -1 after answering 404 when seg
 * is not that shape.
 */
static int id_action(struct request *r, const char *seg, const char *action, char *id,
		     size_t idlen)
{
	const char *slash = strchr(seg, '/');
	if (!slash || slash[1] == '\0' || strcmp(slash + 1, action) != 0 ||
	    (size_t)(slash - seg) >= idlen) {
		server_respond_error(r, 404, "NOT_FOUND", "no such resource");
		return -1;
	}
	memcpy(id, seg, (size_t)(slash - seg));
	id[slash - seg] = '\0';
	return 0;
}

/* POST /ui/api/jobs/{id}/cancel: seg is "{id}/cancel". */
static void action_cancel(struct request *r, const char *seg)
{
	char id[64];
	struct job j;
	if (id_action(r, seg, "cancel", id, sizeof id) < 0)
		return;
	int rc = engine_cancel_job(r->w, id, NULL, &j);
	if (rc != 0) {
		server_respond_error(r, rc == 1 ? 404 : 503, rc == 1 ? "JOB_NOT_FOUND" : "UNAVAILABLE",
				     rc == 1 ? "no such job" : "the store is unavailable");
		return;
	}
	send_json(r, job_to_json(&j));
	job_clear(&j);
}

/* Retries delivery id; 0, 1 when absent, -1 on a store error. */
static int retry_one(struct worker *w, const char *id)
{
	struct delivery d;
	int rc = store_delivery_get(w->store, id, &d);
	if (rc != 0)
		return rc;
	rc = engine_redeliver(w, &d);
	free(d.url);
	return rc;
}

static void action_retry(struct request *r, const char *id)
{
	int rc = retry_one(r->w, id);
	if (rc != 0) {
		server_respond_error(r, rc == 1 ? 404 : 503,
				     rc == 1 ? "DELIVERY_NOT_FOUND" : "UNAVAILABLE",
				     rc == 1 ? "no such delivery" : "the store is unavailable");
		return;
	}
	send_json(r, json_pack("{s:s,s:s}", "delivery_id", id, "status", "pending"));
}

/* Retries every delivery of a filter (state, customer), up to BULK_RETRY_MAX. */
static void action_retry_all(struct request *r)
{
	const char *state = query_str(r, "state");
	if (!delivery_state(state)) {
		server_respond_error(r, 400, "INVALID_REQUEST", "state is failing or dead");
		return;
	}
	json_t *l = store_delivery_list(r->w->store, state, query_str(r, "customer"),
					BULK_RETRY_MAX);
	if (!l) {
		send_json(r, NULL);
		return;
	}
	size_t i, n = 0, failed = 0;
	json_t *d;
	json_array_foreach(l, i, d) {
		if (retry_one(r->w, json_string_value(json_object_get(d, "delivery_id"))) == 0)
			n++;
		else
			failed++;
	}
	json_decref(l);
	send_json(r, json_pack("{s:I,s:I}", "retried", (json_int_t)n, "failed", (json_int_t)failed));
}

static void view_providers(struct request *r)
{
	const struct config *c = r->w->cfg;
	json_t *names = json_array(), *keys = json_object();
	const char *k;
	json_t *v;
	json_object_foreach(c->providers, k, v) {
		json_array_append_new(names, json_string(k));
		json_t *pool = keypool_describe(k, v, loop_wall_ms()); /* ids and states only */
		if (pool)
			json_object_set_new(keys, k, pool);
	}
	json_t *stats = store_provider_stats(r->w->store, loop_wall_ms() - STATS_WINDOW_MS);
	if (!stats) {
		json_decref(names);
		json_decref(keys);
		send_json(r, NULL);
		return;
	}
	send_json(r, json_pack("{s:o,s:o,s:i,s:o}", "configured", names, "stats", stats,
			       "window_s", STATS_WINDOW_MS / 1000, "keys", keys));
}

/* /ui/api/...: seg points past "/ui/api/". */
static void api(struct request *r, const char *seg, const char *session,
		const unsigned char *key, int bearer)
{
	int get = strcmp(r->method, "GET") == 0, post = strcmp(r->method, "POST") == 0;
	if (post && !bearer && !ui_csrf_valid(key, session, server_header(r, "X-CSRF-Token"))) {
		server_respond_error(r, 403, "FORBIDDEN", "missing or wrong X-CSRF-Token");
		return;
	}
	if (get && strcmp(seg, "session") == 0) {
		char csrf[UI_CSRF_TOKEN_MAX] = "";
		if (session)
			ui_csrf_token(key, session, csrf, sizeof csrf);
		send_json(r, json_pack("{s:s}", "csrf", csrf));
	} else if (get && strcmp(seg, "jobs") == 0) {
		view_jobs(r);
	} else if (get && strncmp(seg, "jobs/", 5) == 0 && !strchr(seg + 5, '/')) {
		view_job(r, seg + 5);
	} else if (post && strncmp(seg, "jobs/", 5) == 0) {
		action_cancel(r, seg + 5);
	} else if (get && strcmp(seg, "deliveries") == 0) {
		view_deliveries(r);
	} else if (post && strcmp(seg, "deliveries/retry") == 0) {
		action_retry_all(r);
	} else if (post && strncmp(seg, "deliveries/", 11) == 0) {
		char id[64];
		if (id_action(r, seg + 11, "retry", id, sizeof id) == 0)
			action_retry(r, id);
	} else if (get && strcmp(seg, "scripts") == 0) {
		send_json(r, json_pack("{s:o}", "data", script_host_list(r->w->scripts)));
	} else if (get && strcmp(seg, "providers") == 0) {
		view_providers(r);
	} else {
		server_respond_error(r, 404, "NOT_FOUND", "no such resource");
	}
}

int ui_admit(struct request *r)
{
	unsigned char key[UI_SESSION_KEY_LEN];
	char buf[UI_SESSION_TOKEN_MAX];
	if (ui_session_key(r->w->cfg->admin_key, key) < 0) {
		server_respond_error(r, 404, "NOT_FOUND", "the dashboard needs admin_key in the config");
		return -1;
	}
	if (strcmp(r->url, "/ui/login") == 0) {
		/* The one body taken before authentication: the login form, small
		 * and announced, so it cannot hold memory open. */
		const char *cl = server_header(r, "Content-Length");
		char *end;
		unsigned long long n = cl ? strtoull(cl, &end, 10) : 0;
		if (!cl || *end) {
			server_respond_error(r, 411, "INVALID_REQUEST", "the login form needs a Content-Length");
			return -1;
		}
		if (n > LOGIN_BODY_MAX) {
			server_respond_error(r, 413, "PAYLOAD_TOO_LARGE", "the login form is at most %d bytes",
					     LOGIN_BODY_MAX);
			return -1;
		}
		return 0;
	}
	const char *auth = server_header(r, "Authorization");
	if (session_of(r, key, buf, sizeof buf) ||
	    (auth && strncasecmp(auth, "Bearer ", 7) == 0 && config_is_admin_key(r->w->cfg, auth + 7)))
		return 0;
	server_respond_error(r, 401, "UNAUTHORIZED", "log in at /ui/login or send the admin key");
	return -1;
}

void ui_dispatch(struct request *r)
{
	unsigned char key[UI_SESSION_KEY_LEN];
	char buf[UI_SESSION_TOKEN_MAX];
	const char *url = r->url;
	if (ui_session_key(r->w->cfg->admin_key, key) < 0) {
		server_respond_error(r, 404, "NOT_FOUND",
				     "the dashboard needs admin_key in the config");
		return;
	}
	if (strncmp(url, "/ui/assets/", 11) == 0) {
		const struct ui_asset *a = asset(url);
		if (a && strcmp(r->method, "GET") == 0)
			send_asset(r, 200, a);
		else
			server_respond_error(r, 404, "NOT_FOUND", "no such resource");
		return;
	}
	if (strcmp(url, "/ui/login") == 0) {
		handle_login(r, key);
		return;
	}
	const char *session = session_of(r, key, buf, sizeof buf);
	const char *auth = server_header(r, "Authorization");
	int bearer = auth && strncasecmp(auth, "Bearer ", 7) == 0 &&
		     config_is_admin_key(r->w->cfg, auth + 7);
	if (strncmp(url, "/ui/api/", 8) == 0) {
		if (!session && !bearer) {
			server_respond_error(r, 401, "UNAUTHORIZED",
					     "log in at /ui/login or send the admin key");
			return;
		}
		api(r, url + 8, session, key, bearer);
		return;
	}
	if (strcmp(url, "/ui/logout") == 0 && strcmp(r->method, "POST") == 0) {
		redirect(r, "/ui/login");
		server_response_header(r, "Set-Cookie", SESSION_COOKIE
				       "=; Path=/ui; Max-Age=0; HttpOnly; Secure; SameSite=Strict");
		return;
	}
	if ((strcmp(url, "/ui") == 0 || strcmp(url, "/ui/") == 0) && strcmp(r->method, "GET") == 0) {
		if (session)
			send_asset(r, 200, asset("/ui/index.html"));
		else
			redirect(r, "/ui/login");
		return;
	}
	server_respond_error(r, 404, "NOT_FOUND", "no such resource");
}
