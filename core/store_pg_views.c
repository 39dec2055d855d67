/*
 * store_pg_views.c: the PostgreSQL store's reads for the API's lists, the
 * dashboard and the CLI, stored customers, retention and the shared rate
 * buckets (store_pg_int.h). None is on the hot path of a job; each is one
 * round trip. The layer above store_pg_tx.c (pg_exec) and the ones below
 * it; the ops table (store_pg.c) calls it.
 */
#include "store_pg_int.h"

#include "sign.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Runs one statement built from trusted text with p's parameters; the rows,
 * or NULL on error (recorded). Caller PQclears. */
static PGresult *query_once(struct store *s, const char *text, struct params *p)
{
	PGresult *r;
	return pg_exec_text(s, text, p, &r) == 0 ? r : NULL;
}

/* A read: 0 with *out holding at least one row, 1 when none, <0 error. */
static int read_row(struct store *s, int q, struct params *p, PGresult **out)
{
	int rc = pg_exec(s, q, p, PG_READ, out);
	if (rc < 0)
		return rc;
	if (PQntuples(*out) == 0) {
		PQclear(*out);
		*out = NULL;
		return 1;
	}
	return 0;
}

int store_set_max_size(struct store *s, long long max_bytes)
{
	(void)s;
	(void)max_bytes; /* the database's size is the server's to cap */
	return 0;
}

int store_set_autocheckpoint(struct store *s, int on)
{
	(void)s;
	(void)on;
	return 0;
}

int store_checkpoint(struct store *s, int *wal_frames, int *copied)
{
	(void)s;
	if (wal_frames)
		*wal_frames = 0;
	if (copied)
		*copied = 0;
	return 0;
}

json_t *store_job_list(struct store *s, const char *customer, const char *status,
		       const char *cursor, int limit)
{
	char text[512];
	struct params p = { 0 };
	enum job_status js = JOB_QUEUED;
	p_text(&p, customer);
	int n_status = 0, n_cursor = 0;
	if (status) {
		p_int(&p, job_status_parse(status, &js) == 0 ? (int)js : -1);
		n_status = p.n;
	}
	if (cursor) {
		p_text(&p, cursor);
		n_cursor = p.n;
	}
	p_int(&p, limit + 1);
	char cs[32] = "", cc[32] = "";
	if (n_status)
		snprintf(cs, sizeof cs, " AND status=$%d", n_status);
	if (n_cursor)
		snprintf(cc, sizeof cc, " AND id<$%d", n_cursor);
	snprintf(text, sizeof text, "SELECT " JOB_COLS " FROM jobs WHERE customer=$1%s%s "
		 "ORDER BY id DESC LIMIT $%d", cs, cc, p.n);
	PGresult *r = query_once(s, text, &p);
	if (!r)
		return NULL;
	json_t *arr = json_array(), *next = json_null();
	int rows = PQntuples(r);
	for (int i = 0; i < rows; i++) {
		if (i == limit) {
			json_decref(next);
			next = json_string(json_string_value(json_object_get(
				json_array_get(arr, json_array_size(arr) - 1), "job_id")));
			break;
		}
		struct job j;
		pg_read_job(r, i, 0, &j);
		json_array_append_new(arr, job_to_json(&j));
		job_clear(&j);
	}
	PQclear(r);
	json_t *o = json_object();
	json_object_set_new(o, "data", arr);
	json_object_set_new(o, "next_cursor", next);
	return o;
}

static int64_t count_query(struct store *s, int qi, int kind)
{
	struct params p = { 0 };
	PGresult *r;
	if (kind)
		p_int(&p, kind);
	if (read_row(s, qi, &p, &r) != 0)
		return -1;
	int64_t n = pg_val_int(r, 0, 0);
	PQclear(r);
	return n;
}

int64_t store_job_count(struct store *s)
{
	return count_query(s, Q_JOB_COUNT, 0);
}

int store_queue_stats(struct store *s, int64_t now, struct store_queue *qs)
{
	struct params p = { 0 };
	PGresult *r;
	p_int(&p, now);
	if (read_row(s, Q_QUEUE_STATS, &p, &r) != 0)
		return -1;
	qs->due = pg_val_int(r, 0, 0);
	qs->leased = pg_val_int(r, 0, 1);
	qs->waiting = pg_val_int(r, 0, 2);
	qs->oldest_due_at = pg_val_int(r, 0, 3);
	qs->size_bytes = pg_val_int(r, 0, 4);
	PQclear(r);
	return 0;
}

int64_t store_work_count(struct store *s, enum work_kind kind)
{
	return count_query(s, Q_WORK_COUNT, (int)kind);
}


json_t *store_work_owners(struct store *s)
{
	PGresult *r;
	json_t *a = json_array();
	if (pg_exec(s, Q_WORK_OWNERS, NULL, PG_READ, &r) < 0)
		return a;
	for (int i = 0; i < PQntuples(r); i++)
		json_array_append_new(a, json_string(PQgetvalue(r, i, 0)));
	PQclear(r);
	return a;
}



/* A body kept as bytes (read back in hex) as a JSON string: UTF-8 text as
 * it is, anything else a note (JSON carries UTF-8 only). */
static json_t *hex_text(const char *hex)
{
	size_t n = strlen(hex) / 2;
	char *raw = malloc(n + 1);
	json_t *v = NULL;
	if (raw && sign_hex_decode(hex, 2 * n, raw, n + 1) == (int)n)
		v = json_stringn(raw, n);
	free(raw);
	return v ? v : json_string("(not UTF-8 text)");
}

json_t *store_job_deliveries(struct store *s, const char *job_id)
{
	struct params p = { 0 };
	PGresult *r;
	p_text(&p, job_id);
	json_t *arr = json_array();
	if (pg_exec(s, Q_DLV_OF_JOB, &p, PG_READ, &r) < 0)
		return arr;
	for (int i = 0; i < PQntuples(r); i++) {
		json_t *d = json_object();
		json_object_set_new(d, "delivery_id", pg_val_json_str(r, i, 0));
		json_object_set_new(d, "event", pg_val_json_str(r, i, 1));
		json_object_set_new(d, "url", pg_val_json_str(r, i, 2));
		json_object_set_new(d, "status", pg_val_json_str(r, i, 3));
		json_object_set_new(d, "attempt_count", json_integer(pg_val_int(r, i, 4)));
		json_object_set_new(d, "created_at", job_time_json(pg_val_int(r, i, 5)));
		int64_t next = pg_val_int(r, i, 6);
		json_object_set_new(d, "next_attempt_at", next ? job_time_json(next) : json_null());
		json_array_append_new(arr, d);
	}
	PQclear(r);
	size_t i;
	json_t *d;
	json_array_foreach(arr, i, d) {
		struct params pa = { 0 };
		PGresult *a;
		p_text(&pa, json_string_value(json_object_get(d, "delivery_id")));
		json_t *atts = json_array();
		if (pg_exec(s, Q_ATT_OF_DLV, &pa, PG_READ, &a) == 0) {
			for (int k = 0; k < PQntuples(a); k++) {
				json_t *o = json_object();
				json_object_set_new(o, "at", job_time_json(pg_val_int(a, k, 0)));
				json_object_set_new(o, "status_code", PQgetisnull(a, k, 1)
					? json_null() : json_integer(pg_val_int(a, k, 1)));
				json_object_set_new(o, "latency_ms",
						    json_real(strtod(PQgetvalue(a, k, 2), NULL)));
				json_object_set_new(o, "error", pg_val_json_str(a, k, 3));
				json_object_set_new(o, "script_version", pg_val_json_str(a, k, 4));
				if (!PQgetisnull(a, k, 5))
					json_object_set_new(o, "body", hex_text(PQgetvalue(a, k, 5)));
				json_array_append_new(atts, o);
			}
			PQclear(a);
		}
		json_object_set_new(d, "attempts", atts);
	}
	return arr;
}


json_t *store_job_events(struct store *s, const char *job_id)
{
	struct params p = { 0 };
	PGresult *r;
	p_text(&p, job_id);
	json_t *arr = json_array();
	if (pg_exec(s, Q_EV_LIST, &p, PG_READ, &r) < 0)
		return arr;
	for (int i = 0; i < PQntuples(r); i++) {
		json_t *o = json_object();
		json_object_set_new(o, "at", job_time_json(pg_val_int(r, i, 0)));
		json_object_set_new(o, "kind", pg_val_json_str(r, i, 1));
		const char *detail = PQgetisnull(r, i, 2) ? NULL : PQgetvalue(r, i, 2);
		json_t *dj = detail ? json_loads(detail, 0, NULL) : NULL;
		json_object_set_new(o, "detail", dj ? dj : pg_val_json_str(r, i, 2));
		json_array_append_new(arr, o);
	}
	PQclear(r);
	return arr;
}

/* One purge batch: the finished jobs with no work left, oldest first, and
 * everything that hangs off them; SKIP LOCKED so it never waits on a worker. */
static const char purge_sql[] =
	"WITH ids AS (SELECT id FROM jobs WHERE completed_at IS NOT NULL AND completed_at<$1"
	" AND status IN (2,3,4) AND NOT EXISTS (SELECT 1 FROM work WHERE work.job_id=jobs.id)"
	" ORDER BY completed_at LIMIT $2 FOR UPDATE SKIP LOCKED),"
	" a AS (DELETE FROM attempts WHERE job_id IN (SELECT id FROM ids)),"
	" d AS (DELETE FROM deliveries WHERE job_id IN (SELECT id FROM ids)),"
	" e AS (DELETE FROM events WHERE job_id IN (SELECT id FROM ids)),"
	" c AS (DELETE FROM callbacks WHERE job_id IN (SELECT id FROM ids)),"
	" k AS (DELETE FROM idempotency WHERE job_id IN (SELECT id FROM ids))"
	" DELETE FROM jobs WHERE id IN (SELECT id FROM ids)";

int store_purge(struct store *s, int64_t before, int limit, int *purged)
{
	*purged = 0;
	if (s->batching || s->in_tx) {
		snprintf(s->err, sizeof s->err, "store_purge runs outside transactions");
		return -1;
	}
	struct params p = { 0 };
	PGresult *r;
	p_int(&p, before);
	p_int(&p, limit);
	int rc = pg_exec_text(s, purge_sql, &p, &r);
	if (rc < 0)
		return rc;
	*purged = atoi(PQcmdTuples(r));
	PQclear(r);
	return 0;
}



/* ---------- usage ---------- */


json_t *store_usage_totals(struct store *s, const char *customer, int64_t from, int64_t to,
			   const char *group_by)
{
	const char *key = !group_by ? "''"
		: strcmp(group_by, "model") == 0 ? "coalesce(provider,'')||':'||coalesce(model,'')"
		: strcmp(group_by, "provider") == 0 ? "coalesce(provider,'')"
		: strcmp(group_by, "day") == 0
		? "to_char(to_timestamp(at / 1000) AT TIME ZONE 'UTC', 'YYYY-MM-DD')" : "''";
	char text[600];
	snprintf(text, sizeof text, "SELECT customer, %s, unit, sum(amount), count(*) FROM usage"
		 " WHERE ($1::text IS NULL OR customer=$1::text) AND at>=$2::bigint AND at<$3::bigint"
		 " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3", key);
	struct params p = { 0 };
	p_text(&p, customer);
	p_int(&p, from);
	p_int(&p, to);
	PGresult *r = query_once(s, text, &p);
	if (!r)
		return NULL;
	json_t *arr = json_array();
	for (int i = 0; i < PQntuples(r); i++) {
		json_t *o = json_object();
		if (!customer)
			json_object_set_new(o, "customer", json_string(PQgetvalue(r, i, 0)));
		if (group_by)
			json_object_set_new(o, "key", json_string(PQgetvalue(r, i, 1)));
		json_object_set_new(o, "unit", json_string(PQgetvalue(r, i, 2)));
		json_object_set_new(o, "amount", json_real(strtod(PQgetvalue(r, i, 3), NULL)));
		json_object_set_new(o, "jobs", json_integer(pg_val_int(r, i, 4)));
		json_array_append_new(arr, o);
	}
	PQclear(r);
	return arr;
}

/* Appends " AND <col><op>$n" for a parameter just added. */
static void cond(char *out, size_t outlen, const char *fmt, int n)
{
	size_t used = strlen(out);
	snprintf(out + used, outlen - used, fmt, n, n);
}

json_t *store_job_search(struct store *s, const struct job_filter *f)
{
	char where[512] = "", text[1024];
	struct params p = { 0 };
	enum job_status js = JOB_QUEUED;
	if (f->customer) {
		p_text(&p, f->customer);
		cond(where, sizeof where, " AND customer=$%d", p.n);
	}
	if (f->provider) {
		p_text(&p, f->provider);
		cond(where, sizeof where, " AND provider=$%d", p.n);
	}
	if (f->status) {
		p_int(&p, job_status_parse(f->status, &js) == 0 ? (int)js : -1);
		cond(where, sizeof where, " AND status=$%d", p.n);
	}
	if (f->q) {
		p_text(&p, f->q);
		cond(where, sizeof where, " AND (id=$%d OR track_id=$%d)", p.n);
	}
	if (f->since) {
		p_int(&p, f->since);
		cond(where, sizeof where, " AND created_at>=$%d", p.n);
	}
	if (f->until) {
		p_int(&p, f->until);
		cond(where, sizeof where, " AND created_at<$%d", p.n);
	}
	if (f->cursor) {
		p_text(&p, f->cursor);
		cond(where, sizeof where, " AND id<$%d", p.n);
	}
	p_int(&p, f->limit + 1);
	snprintf(text, sizeof text, "SELECT " JOB_COLS " FROM jobs WHERE true%s ORDER BY id DESC LIMIT $%d",
		 where, p.n);
	PGresult *r = query_once(s, text, &p);
	if (!r)
		return NULL;
	json_t *arr = json_array(), *next = json_null();
	for (int i = 0; i < PQntuples(r); i++) {
		if (i == f->limit) {
			json_decref(next);
			next = json_string(json_string_value(json_object_get(
				json_array_get(arr, json_array_size(arr) - 1), "job_id")));
			break;
		}
		struct job j;
		pg_read_job(r, i, 0, &j);
		json_t *o = job_to_json(&j);
		json_object_set_new(o, "customer", json_string(j.customer));
		json_array_append_new(arr, o);
		job_clear(&j);
	}
	PQclear(r);
	return json_pack("{s:o,s:o}", "data", arr, "next_cursor", next);
}

json_t *store_delivery_list(struct store *s, const char *state, const char *customer, int limit)
{
	char text[1024];
	struct params p = { 0 };
	int dead = strcmp(state, "dead") == 0;
	p_int(&p, limit);
	if (customer)
		p_text(&p, customer);
	snprintf(text, sizeof text,
		 "SELECT d.id, d.job_id, j.customer, d.event, d.url, d.status, d.attempts, d.next_at,"
		 " (SELECT a.status_code FROM attempts a WHERE a.delivery_id=d.id ORDER BY a.id DESC LIMIT 1),"
		 " (SELECT a.error FROM attempts a WHERE a.delivery_id=d.id ORDER BY a.id DESC LIMIT 1)"
		 " FROM deliveries d JOIN jobs j ON j.id=d.job_id"
		 " WHERE %s%s ORDER BY d.created_at DESC LIMIT $1",
		 dead ? "d.status='dead'" : "d.status='pending' AND d.attempts>0",
		 customer ? " AND j.customer=$2" : "");
	PGresult *r = query_once(s, text, &p);
	if (!r)
		return NULL;
	json_t *arr = json_array();
	for (int i = 0; i < PQntuples(r); i++) {
		json_t *d = json_object();
		json_object_set_new(d, "delivery_id", pg_val_json_str(r, i, 0));
		json_object_set_new(d, "job_id", pg_val_json_str(r, i, 1));
		json_object_set_new(d, "customer", pg_val_json_str(r, i, 2));
		json_object_set_new(d, "event", pg_val_json_str(r, i, 3));
		json_object_set_new(d, "url", pg_val_json_str(r, i, 4));
		json_object_set_new(d, "status", pg_val_json_str(r, i, 5));
		json_object_set_new(d, "attempt_count", json_integer(pg_val_int(r, i, 6)));
		int64_t next = pg_val_int(r, i, 7);
		json_object_set_new(d, "next_attempt_at", next ? job_time_json(next) : json_null());
		json_object_set_new(d, "last_status_code", PQgetisnull(r, i, 8)
				    ? json_null() : json_integer(pg_val_int(r, i, 8)));
		json_object_set_new(d, "last_error", pg_val_json_str(r, i, 9));
		json_array_append_new(arr, d);
	}
	PQclear(r);
	return arr;
}

json_t *store_provider_stats(struct store *s, int64_t since)
{
	struct params p = { 0 };
	p_int(&p, since);
	PGresult *r = query_once(s,
		"SELECT provider, status, count(*), avg(completed_at-created_at),"
		" max(completed_at-created_at) FROM jobs"
		" WHERE completed_at>=$1 AND provider IS NOT NULL GROUP BY provider, status", &p);
	if (!r)
		return NULL;
	json_t *o = json_object();
	for (int i = 0; i < PQntuples(r); i++) {
		const char *prov = PQgetvalue(r, i, 0);
		enum job_status js = (enum job_status)pg_val_int(r, i, 1);
		json_t *e = json_object_get(o, prov);
		if (!e) {
			e = json_pack("{s:i,s:i,s:i,s:n,s:n}", "succeeded", 0, "failed", 0,
				      "canceled", 0, "avg_duration_ms", "max_duration_ms");
			json_object_set_new(o, prov, e);
		}
		json_object_set_new(e, job_status_name(js), json_integer(pg_val_int(r, i, 2)));
		if (js == JOB_SUCCEEDED) {
			json_object_set_new(e, "avg_duration_ms", json_real(strtod(PQgetvalue(r, i, 3), NULL)));
			json_object_set_new(e, "max_duration_ms", json_integer(pg_val_int(r, i, 4)));
		}
	}
	PQclear(r);
	return o;
}

json_t *store_job_callbacks(struct store *s, const char *job_id)
{
	struct params p = { 0 };
	PGresult *r;
	p_text(&p, job_id);
	if (pg_exec(s, Q_CB_OF_JOB, &p, PG_READ, &r) < 0)
		return NULL;
	json_t *arr = json_array();
	for (int i = 0; i < PQntuples(r); i++) {
		json_t *o = json_object();
		json_object_set_new(o, "at", job_time_json(pg_val_int(r, i, 0)));
		json_object_set_new(o, "provider", pg_val_json_str(r, i, 1));
		json_object_set_new(o, "outcome", pg_val_json_str(r, i, 2));
		json_object_set_new(o, "body_bytes", json_integer(pg_val_int(r, i, 3)));
		json_array_append_new(arr, o);
	}
	PQclear(r);
	return arr;
}

static const char *nonempty(const char *v)
{
	return v && v[0] ? v : NULL;
}


/* A write of one row: 0 when it changed one, 1 when none, <0 error. */
static int write_one(struct store *s, int qi, struct params *p)
{
	PGresult *r;
	int rc = pg_exec(s, qi, p, PG_WRITE, &r);
	if (rc < 0)
		return rc;
	int n = r ? atoi(PQcmdTuples(r)) : 0;
	PQclear(r);
	return n == 1 ? 0 : 1;
}

int store_customer_add(struct store *s, const struct store_customer *c)
{
	struct params p = { 0 };
	p_text(&p, c->name);
	p_text(&p, c->key_sha256);
	p_text(&p, nonempty(c->webhook_secret));
	p_text(&p, nonempty(c->hook));
	p_text(&p, nonempty(c->webhook_url));
	p_int(&p, c->created_at);
	return write_one(s, Q_CUST_ADD, &p);
}

int store_customer_set_key(struct store *s, const char *name, const char *key_sha256)
{
	struct params p = { 0 };
	p_text(&p, name);
	p_text(&p, key_sha256);
	p_int(&p, pg_wall_ms());
	return write_one(s, Q_CUST_KEY, &p);
}

int store_customer_get(struct store *s, const char *key_sha256, const char *name,
		       struct store_customer *out)
{
	struct params p = { 0 };
	PGresult *r;
	p_text(&p, key_sha256 ? key_sha256 : name);
	int rc = read_row(s, key_sha256 ? Q_CUST_BY_KEY : Q_CUST_BY_NAME, &p, &r);
	if (rc == 0) {
		pg_copy_val(r, 0, 0, out->name, sizeof out->name);
		pg_copy_val(r, 0, 1, out->key_sha256, sizeof out->key_sha256);
		pg_copy_val(r, 0, 2, out->webhook_secret, sizeof out->webhook_secret);
		pg_copy_val(r, 0, 3, out->hook, sizeof out->hook);
		pg_copy_val(r, 0, 4, out->webhook_url, sizeof out->webhook_url);
		out->created_at = pg_val_int(r, 0, 5);
		PQclear(r);
	}
	return rc;
}

json_t *store_customer_list(struct store *s)
{
	PGresult *r;
	if (pg_exec(s, Q_CUST_LIST, NULL, PG_READ, &r) < 0)
		return NULL;
	json_t *arr = json_array();
	for (int i = 0; i < PQntuples(r); i++) {
		json_t *o = json_object();
		json_object_set_new(o, "name", pg_val_json_str(r, i, 0));
		json_object_set_new(o, "hook", pg_val_json_str(r, i, 1));
		json_object_set_new(o, "webhook_url", pg_val_json_str(r, i, 2));
		json_object_set_new(o, "has_webhook_secret", json_boolean(PQgetvalue(r, i, 3)[0] == 't'));
		json_object_set_new(o, "created_at", job_time_json(pg_val_int(r, i, 4)));
		json_array_append_new(arr, o);
	}
	PQclear(r);
	return arr;
}

int store_customer_remove(struct store *s, const char *name)
{
	struct params p = { 0 };
	p_text(&p, name);
	return write_one(s, Q_CUST_DEL, &p);
}


/*
 * Takes up to want whole tokens from the shared bucket key (refilled at
 * per_s a second up to burst, on the database's clock), in one statement
 * of its own (never inside a batch). *granted says how many; *tokens what
 * is left (for a Retry-After). 0 or <0.
 */
int store_rate_take(struct store *s, const char *key, double per_s, double burst, int want,
		    int *granted, double *tokens)
{
	*granted = 0;
	*tokens = 0;
	if (s->batching) {
		snprintf(s->err, sizeof s->err, "store_rate_take runs outside batches");
		return -1;
	}
	for (int round = 0; round < 2; round++) {
		struct params p = { 0 };
		PGresult *r;
		p_text(&p, key);
		p_double(&p, per_s);
		p_double(&p, burst);
		p_int(&p, want);
		int rc = pg_exec(s, Q_RATE_TAKE, &p, PG_WRITE, &r);
		if (rc < 0)
			return rc;
		if (PQntuples(r) == 1) {
			*granted = (int)strtod(PQgetvalue(r, 0, 0), NULL);
			*tokens = strtod(PQgetvalue(r, 0, 1), NULL);
			PQclear(r);
			return 0;
		}
		PQclear(r);
		/* A new bucket starts full. */
		struct params q = { 0 };
		p_text(&q, key);
		p_double(&q, burst);
		if ((rc = pg_exec(s, Q_RATE_ROW, &q, PG_WRITE, NULL)) < 0)
			return rc;
	}
	snprintf(s->err, sizeof s->err, "postgresql: rate bucket %s not found", key);
	return -1;
}
