/*
 * store_sqlite_views.c: the SQLite store's deliveries and their attempts,
 * and the reads and writes off the hot path (store_sqlite_int.h): the
 * API's and the dashboard's listings, provider stats, usage, customers.
 */
#include "store_sqlite_int.h"

#include <time.h>

static void bind_delivery(sqlite3_stmt *st, const struct delivery *d)
{
	bind_text(st, 1, d->id);
	bind_text(st, 2, d->job_id);
	bind_text(st, 3, d->event);
	bind_text(st, 4, d->url);
	bind_text(st, 5, d->status);
	sqlite3_bind_int(st, 6, d->attempts);
	sqlite3_bind_int64(st, 7, d->created_at);
	sqlite3_bind_int64(st, 8, d->next_at);
}

int store_delivery_insert(struct store *s, const struct delivery *d)
{
	sqlite3_stmt *st = q(s, Q_DLV_INSERT);
	bind_delivery(st, d);
	return sqlite_write_stmt(s, st);
}

int store_delivery_update(struct store *s, const struct delivery *d)
{
	sqlite3_stmt *st = q(s, Q_DLV_UPDATE);
	bind_delivery(st, d);
	return sqlite_write_stmt(s, st);
}

int store_delivery_get(struct store *s, const char *id, struct delivery *d)
{
	sqlite3_stmt *st = q(s, Q_DLV_GET);
	bind_text(st, 1, id);
	int rc = sqlite3_step(st), ret = 1;
	if (rc == SQLITE_ROW) {
		memset(d, 0, sizeof *d);
		snprintf(d->id, sizeof d->id, "%s", (const char *)sqlite3_column_text(st, 0));
		snprintf(d->job_id, sizeof d->job_id, "%s", (const char *)sqlite3_column_text(st, 1));
		snprintf(d->event, sizeof d->event, "%s", (const char *)sqlite3_column_text(st, 2));
		d->url = col_dup(st, 3);
		snprintf(d->status, sizeof d->status, "%s", (const char *)sqlite3_column_text(st, 4));
		d->attempts = sqlite3_column_int(st, 5);
		d->created_at = sqlite3_column_int64(st, 6);
		d->next_at = sqlite3_column_int64(st, 7);
		ret = 0;
	} else if (rc != SQLITE_DONE) {
		ret = fail(s, rc);
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return ret;
}

int store_attempt_insert(struct store *s, const char *delivery_id,
			 const char *job_id, int64_t at, long status,
			 double latency_ms, const char *error,
			 const char *script_version, const char *body, size_t body_len)
{
	sqlite3_stmt *st = q(s, Q_ATT_INSERT);
	bind_text(st, 1, delivery_id);
	bind_text(st, 2, job_id);
	sqlite3_bind_int64(st, 3, at);
	if (status)
		sqlite3_bind_int(st, 4, (int)status);
	else
		sqlite3_bind_null(st, 4);
	sqlite3_bind_double(st, 5, latency_ms);
	bind_text(st, 6, error);
	bind_text(st, 7, script_version);
	if (body)
		sqlite3_bind_text(st, 8, body, (int)body_len, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 8);
	return sqlite_write_stmt(s, st);
}

json_t *store_job_deliveries(struct store *s, const char *job_id)
{
	sqlite3_stmt *st = q(s, Q_DLV_OF_JOB);
	bind_text(st, 1, job_id);
	json_t *arr = json_array();
	while (sqlite3_step(st) == SQLITE_ROW) {
		json_t *d = json_object();
		json_object_set_new(d, "delivery_id", col_json_str(st, 0));
		json_object_set_new(d, "event", col_json_str(st, 1));
		json_object_set_new(d, "url", col_json_str(st, 2));
		json_object_set_new(d, "status", col_json_str(st, 3));
		json_object_set_new(d, "attempt_count", json_integer(sqlite3_column_int(st, 4)));
		json_object_set_new(d, "created_at", job_time_json(sqlite3_column_int64(st, 5)));
		int64_t next = sqlite3_column_int64(st, 6);
		json_object_set_new(d, "next_attempt_at", next ? job_time_json(next) : json_null());
		json_array_append_new(arr, d);
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	size_t i;
	json_t *d;
	json_array_foreach(arr, i, d) {
		sqlite3_stmt *a = q(s, Q_ATT_OF_DLV);
		bind_text(a, 1, json_string_value(json_object_get(d, "delivery_id")));
		json_t *atts = json_array();
		while (sqlite3_step(a) == SQLITE_ROW) {
			json_t *o = json_object();
			json_object_set_new(o, "at", job_time_json(sqlite3_column_int64(a, 0)));
			json_object_set_new(o, "status_code", sqlite3_column_type(a, 1) == SQLITE_NULL
				? json_null() : json_integer(sqlite3_column_int(a, 1)));
			json_object_set_new(o, "latency_ms", json_real(sqlite3_column_double(a, 2)));
			json_object_set_new(o, "error", col_json_str(a, 3));
			json_object_set_new(o, "script_version", col_json_str(a, 4));
			if (sqlite3_column_type(a, 5) != SQLITE_NULL) {
				/* A hook may send any bytes; JSON carries UTF-8 only. */
				json_t *b = json_stringn((const char *)sqlite3_column_text(a, 5),
							 (size_t)sqlite3_column_bytes(a, 5));
				json_object_set_new(o, "body", b ? b : json_string("(not UTF-8 text)"));
			}
			json_array_append_new(atts, o);
		}
		sqlite3_reset(a);
		sqlite3_clear_bindings(a);
		json_object_set_new(d, "attempts", atts);
	}
	return arr;
}

/* ---------- admin views (dashboard) ---------- */

/* Runs a one-off statement built from trusted text; NULL on error. */
static sqlite3_stmt *prepare_once(struct store *s, const char *text)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(s->db, text, -1, &st, NULL) != SQLITE_OK) {
		fail(s, SQLITE_ERROR);
		return NULL;
	}
	return st;
}

/* ---------- usage ---------- */

int store_usage_add(struct store *s, const char *job_id, const char *customer,
		    const char *provider, const char *model, double amount,
		    const char *unit, const char *source, int64_t at)
{
	sqlite3_stmt *st = prepare_once(s, "INSERT OR IGNORE INTO usage(job_id,customer,provider,"
					"model,amount,unit,source,at) VALUES(?1,?2,?3,?4,?5,?6,?7,?8)");
	if (!st)
		return -1;
	bind_text(st, 1, job_id);
	bind_text(st, 2, customer);
	bind_text(st, 3, provider);
	bind_text(st, 4, model);
	sqlite3_bind_double(st, 5, amount);
	bind_text(st, 6, unit);
	bind_text(st, 7, source);
	sqlite3_bind_int64(st, 8, at);
	int rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : fail(s, rc);
}

json_t *store_usage_totals(struct store *s, const char *customer, int64_t from, int64_t to,
			   const char *group_by)
{
	const char *key = !group_by ? "''"
		: strcmp(group_by, "model") == 0 ? "coalesce(provider,'')||':'||coalesce(model,'')"
		: strcmp(group_by, "provider") == 0 ? "coalesce(provider,'')"
		: strcmp(group_by, "day") == 0 ? "strftime('%Y-%m-%d', at / 1000, 'unixepoch')" : "''";
	char text[600];
	snprintf(text, sizeof text, "SELECT customer, %s, unit, sum(amount), count(*) FROM usage"
		 " WHERE (?1 IS NULL OR customer=?1) AND at>=?2 AND at<?3"
		 " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3", key);
	sqlite3_stmt *st = prepare_once(s, text);
	if (!st)
		return NULL;
	bind_text(st, 1, customer);
	sqlite3_bind_int64(st, 2, from);
	sqlite3_bind_int64(st, 3, to);
	json_t *arr = json_array();
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		json_t *o = json_object();
		if (!customer)
			json_object_set_new(o, "customer", json_string((const char *)sqlite3_column_text(st, 0)));
		if (group_by)
			json_object_set_new(o, "key", json_string((const char *)sqlite3_column_text(st, 1)));
		json_object_set_new(o, "unit", json_string((const char *)sqlite3_column_text(st, 2)));
		json_object_set_new(o, "amount", json_real(sqlite3_column_double(st, 3)));
		json_object_set_new(o, "jobs", json_integer(sqlite3_column_int64(st, 4)));
		json_array_append_new(arr, o);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		fail(s, rc);
		json_decref(arr);
		return NULL;
	}
	return arr;
}

json_t *store_job_search(struct store *s, const struct job_filter *f)
{
	char text[1024];
	snprintf(text, sizeof text, "SELECT " JOB_COLS " FROM jobs WHERE 1%s%s%s%s%s%s%s "
		 "ORDER BY id DESC LIMIT ?8",
		 f->customer ? " AND customer=?1" : "", f->provider ? " AND provider=?2" : "",
		 f->status ? " AND status=?3" : "", f->q ? " AND (id=?4 OR track_id=?4)" : "",
		 f->since ? " AND created_at>=?5" : "", f->until ? " AND created_at<?6" : "",
		 f->cursor ? " AND id<?7" : "");
	sqlite3_stmt *st = prepare_once(s, text);
	if (!st)
		return NULL;
	enum job_status js = JOB_QUEUED;
	bind_text(st, 1, f->customer);
	bind_text(st, 2, f->provider);
	sqlite3_bind_int(st, 3, f->status && job_status_parse(f->status, &js) == 0 ? (int)js : -1);
	bind_text(st, 4, f->q);
	sqlite3_bind_int64(st, 5, f->since);
	sqlite3_bind_int64(st, 6, f->until);
	bind_text(st, 7, f->cursor);
	sqlite3_bind_int(st, 8, f->limit + 1);
	json_t *arr = json_array(), *next = json_null();
	int n = 0, rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct job j;
		sqlite_read_job(st, &j);
		if (n++ == f->limit) {
			json_decref(next);
			next = json_string(json_string_value(json_object_get(
				json_array_get(arr, json_array_size(arr) - 1), "job_id")));
			job_clear(&j);
			break;
		}
		json_t *o = job_to_json(&j);
		json_object_set_new(o, "customer", json_string(j.customer));
		json_array_append_new(arr, o);
		job_clear(&j);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		fail(s, rc);
		json_decref(arr);
		json_decref(next);
		return NULL;
	}
	return json_pack("{s:o,s:o}", "data", arr, "next_cursor", next);
}

json_t *store_delivery_list(struct store *s, const char *state, const char *customer, int limit)
{
	char text[1024];
	int dead = strcmp(state, "dead") == 0;
	snprintf(text, sizeof text,
		 "SELECT d.id, d.job_id, j.customer, d.event, d.url, d.status, d.attempts, d.next_at,"
		 " (SELECT a.status_code FROM attempts a WHERE a.delivery_id=d.id ORDER BY a.id DESC LIMIT 1),"
		 " (SELECT a.error FROM attempts a WHERE a.delivery_id=d.id ORDER BY a.id DESC LIMIT 1)"
		 " FROM deliveries d JOIN jobs j ON j.id=d.job_id"
		 " WHERE %s%s ORDER BY d.created_at DESC LIMIT ?2",
		 dead ? "d.status='dead'" : "d.status='pending' AND d.attempts>0",
		 customer ? " AND j.customer=?1" : "");
	sqlite3_stmt *st = prepare_once(s, text);
	if (!st)
		return NULL;
	bind_text(st, 1, customer);
	sqlite3_bind_int(st, 2, limit);
	json_t *arr = json_array();
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		json_t *d = json_object();
		json_object_set_new(d, "delivery_id", col_json_str(st, 0));
		json_object_set_new(d, "job_id", col_json_str(st, 1));
		json_object_set_new(d, "customer", col_json_str(st, 2));
		json_object_set_new(d, "event", col_json_str(st, 3));
		json_object_set_new(d, "url", col_json_str(st, 4));
		json_object_set_new(d, "status", col_json_str(st, 5));
		json_object_set_new(d, "attempt_count", json_integer(sqlite3_column_int(st, 6)));
		int64_t next = sqlite3_column_int64(st, 7);
		json_object_set_new(d, "next_attempt_at", next ? job_time_json(next) : json_null());
		json_object_set_new(d, "last_status_code", sqlite3_column_type(st, 8) == SQLITE_NULL
				    ? json_null() : json_integer(sqlite3_column_int(st, 8)));
		json_object_set_new(d, "last_error", col_json_str(st, 9));
		json_array_append_new(arr, d);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		fail(s, rc);
		json_decref(arr);
		return NULL;
	}
	return arr;
}

json_t *store_provider_stats(struct store *s, int64_t since)
{
	sqlite3_stmt *st = prepare_once(s,
		"SELECT provider, status, count(*), avg(completed_at-created_at),"
		" max(completed_at-created_at) FROM jobs"
		" WHERE completed_at>=?1 AND provider IS NOT NULL GROUP BY provider, status");
	if (!st)
		return NULL;
	sqlite3_bind_int64(st, 1, since);
	json_t *o = json_object();
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *prov = (const char *)sqlite3_column_text(st, 0);
		enum job_status js = (enum job_status)sqlite3_column_int(st, 1);
		json_t *p = json_object_get(o, prov);
		if (!p) {
			p = json_pack("{s:i,s:i,s:i,s:n,s:n}", "succeeded", 0, "failed", 0,
				      "canceled", 0, "avg_duration_ms", "max_duration_ms");
			json_object_set_new(o, prov, p);
		}
		json_object_set_new(p, job_status_name(js), json_integer(sqlite3_column_int64(st, 2)));
		if (js == JOB_SUCCEEDED) {
			json_object_set_new(p, "avg_duration_ms", json_real(sqlite3_column_double(st, 3)));
			json_object_set_new(p, "max_duration_ms", json_integer(sqlite3_column_int64(st, 4)));
		}
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		fail(s, rc);
		json_decref(o);
		return NULL;
	}
	return o;
}

json_t *store_job_callbacks(struct store *s, const char *job_id)
{
	sqlite3_stmt *st = prepare_once(s,
		"SELECT at, provider, outcome, length(body) FROM callbacks WHERE job_id=?1 ORDER BY id");
	if (!st)
		return NULL;
	bind_text(st, 1, job_id);
	json_t *arr = json_array();
	while (sqlite3_step(st) == SQLITE_ROW) {
		json_t *o = json_object();
		json_object_set_new(o, "at", job_time_json(sqlite3_column_int64(st, 0)));
		json_object_set_new(o, "provider", col_json_str(st, 1));
		json_object_set_new(o, "outcome", col_json_str(st, 2));
		json_object_set_new(o, "body_bytes", json_integer(sqlite3_column_int64(st, 3)));
		json_array_append_new(arr, o);
	}
	sqlite3_finalize(st);
	return arr;
}

/* Runs a one-off write (prepared, stepped, finalized): 0 with *changes, or <0. */
static int write_once(struct store *s, sqlite3_stmt *st, int *changes)
{
	int rc = sqlite_write_stmt(s, st);
	*changes = rc == 0 ? sqlite3_changes(s->db) : 0;
	sqlite3_finalize(st);
	return rc;
}

static int64_t wall_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *or_null(const char *v)
{
	return v && v[0] ? v : NULL;
}

int store_customer_add(struct store *s, const struct store_customer *c)
{
	sqlite3_stmt *st = prepare_once(s,
		"INSERT INTO customers(name,key_sha256,webhook_secret,hook,webhook_url,created_at,"
		"updated_at) VALUES(?1,?2,?3,?4,?5,?6,?6) ON CONFLICT DO NOTHING");
	if (!st)
		return -1;
	bind_text(st, 1, c->name);
	bind_text(st, 2, c->key_sha256);
	bind_text(st, 3, or_null(c->webhook_secret));
	bind_text(st, 4, or_null(c->hook));
	bind_text(st, 5, or_null(c->webhook_url));
	sqlite3_bind_int64(st, 6, c->created_at);
	int n, rc = write_once(s, st, &n);
	return rc < 0 ? rc : n == 1 ? 0 : 1;
}

int store_customer_set_key(struct store *s, const char *name, const char *key_sha256)
{
	sqlite3_stmt *st = prepare_once(s,
		"UPDATE customers SET key_sha256=?2, updated_at=?3 WHERE name=?1");
	if (!st)
		return -1;
	bind_text(st, 1, name);
	bind_text(st, 2, key_sha256);
	sqlite3_bind_int64(st, 3, wall_now_ms());
	int n, rc = write_once(s, st, &n);
	return rc < 0 ? rc : n == 1 ? 0 : 1;
}

static void col_copy(sqlite3_stmt *st, int col, char *out, size_t outlen)
{
	const unsigned char *v = sqlite3_column_text(st, col);
	snprintf(out, outlen, "%s", v ? (const char *)v : "");
}

int store_customer_get(struct store *s, const char *key_sha256, const char *name,
		       struct store_customer *out)
{
	sqlite3_stmt *st = prepare_once(s, key_sha256
		? "SELECT name,key_sha256,webhook_secret,hook,webhook_url,created_at FROM customers WHERE key_sha256=?1"
		: "SELECT name,key_sha256,webhook_secret,hook,webhook_url,created_at FROM customers WHERE name=?1");
	if (!st)
		return -1;
	bind_text(st, 1, key_sha256 ? key_sha256 : name);
	int rc = sqlite3_step(st), ret = 1;
	if (rc == SQLITE_ROW) {
		col_copy(st, 0, out->name, sizeof out->name);
		col_copy(st, 1, out->key_sha256, sizeof out->key_sha256);
		col_copy(st, 2, out->webhook_secret, sizeof out->webhook_secret);
		col_copy(st, 3, out->hook, sizeof out->hook);
		col_copy(st, 4, out->webhook_url, sizeof out->webhook_url);
		out->created_at = sqlite3_column_int64(st, 5);
		ret = 0;
	} else if (rc != SQLITE_DONE) {
		ret = fail(s, rc);
	}
	sqlite3_finalize(st);
	return ret;
}

json_t *store_customer_list(struct store *s)
{
	sqlite3_stmt *st = prepare_once(s,
		"SELECT name,hook,webhook_url,webhook_secret IS NOT NULL,created_at FROM customers ORDER BY name");
	if (!st)
		return NULL;
	json_t *arr = json_array();
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		json_t *o = json_object();
		json_object_set_new(o, "name", col_json_str(st, 0));
		json_object_set_new(o, "hook", col_json_str(st, 1));
		json_object_set_new(o, "webhook_url", col_json_str(st, 2));
		json_object_set_new(o, "has_webhook_secret", json_boolean(sqlite3_column_int(st, 3)));
		json_object_set_new(o, "created_at", job_time_json(sqlite3_column_int64(st, 4)));
		json_array_append_new(arr, o);
	}
	if (rc != SQLITE_DONE) {
		fail(s, rc);
		json_decref(arr);
		arr = NULL;
	}
	sqlite3_finalize(st);
	return arr;
}

int store_customer_remove(struct store *s, const char *name)
{
	sqlite3_stmt *st = prepare_once(s, "DELETE FROM customers WHERE name=?1");
	if (!st)
		return -1;
	bind_text(st, 1, name);
	int n, rc = write_once(s, st, &n);
	return rc < 0 ? rc : n == 1 ? 0 : 1;
}
