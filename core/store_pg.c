/*
 * store_pg.c: the job store on PostgreSQL through libpq (store_backend.h):
 * its statements, the calls of the hot path (jobs, work, deliveries) and
 * the ops table. The connection, the pipeline and transactions are
 * store_pg_conn.c's, the row cache store_pg_cache.c's, the admin views
 * store_pg_views.c's (store_pg_int.h describes how they fit).
 *
 * One connection per handle, as one SQLite handle per worker. The schema is
 * the SQLite one in PostgreSQL types; migrations run at open under an
 * advisory lock, so of several instances starting at once one migrates and
 * the others wait, then find the schema current.
 *
 * Claims lock their rows FOR UPDATE SKIP LOCKED: instances sharing the
 * database never claim the same due row, and a row leased by a live lease is
 * never claimed either (lease_until, renewed by store_work_renew). A claim
 * brings the rows' jobs (and deliveries) with it, so the steps it starts
 * read nothing more.
 */
#include "store_pg_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JOB_COLS_J "j.id,j.customer,j.model_id,j.targets,j.target_idx,j.provider,j.model," \
	"j.status,j.request_id,j.track_id,j.input,j.webhook_url,j.hook,j.output,j.error_code," \
	"j.error_message,j.data,j.attempt,j.polls,j.created_at,j.updated_at,j.completed_at," \
	"j.submit_deadline,j.deadline"
#define JOB_SET "target_idx=$2,provider=$3,model=$4,status=$5,request_id=$6,output=$7," \
	"error_code=$8,error_message=$9,data=$10,attempt=$11,polls=$12,updated_at=$13," \
	"completed_at=$14,submit_deadline=$15,deadline=$16"
#define DLV_COLS "id,job_id,event,url,status,attempts,created_at,next_at"
#define NOW_MS "(extract(epoch FROM statement_timestamp())*1000)::bigint"
#define RATE_REFILL "LEAST($3::float8, tokens + GREATEST(0, " NOW_MS " - at_ms) / 1000.0 * $2::float8)"

const char *const pg_sql[Q_COUNT] = {
	[Q_META_GET] = "SELECT value FROM meta WHERE key=$1",
	[Q_META_SET] = "INSERT INTO meta(key,value) VALUES($1,$2) "
		       "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
	[Q_JOB_INSERT] = "INSERT INTO jobs(" JOB_COLS ") VALUES($1,$2,$3,$4,$5,$6,$7,$8,"
			 "$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,$23,$24)",
	[Q_JOB_GET] = "SELECT " JOB_COLS " FROM jobs WHERE id=$1",
	[Q_JOB_GET_C] = "SELECT " JOB_COLS " FROM jobs WHERE id=$1 AND customer=$2",
	[Q_JOB_UPDATE] = "UPDATE jobs SET " JOB_SET " WHERE id=$1 AND status<2",
	/* ^ an ended job is never written again: of two workers (or instances)
	 * ending one job at once (a callback racing a poll), the second finds
	 * no row to update and rolls back (-2). In a batch the update is
	 * deferred, and finding no row fails the batch (GR001) instead. */
	[Q_JOB_UPDATE_DEFER] = "WITH u AS (UPDATE jobs SET " JOB_SET " WHERE id=$1 AND status<2 "
			       "RETURNING 1) SELECT genrelay_one_row((SELECT count(*) FROM u), "
			       "'job '||$1||' already ended elsewhere')",
	[Q_JOB_COUNT] = "SELECT count(*) FROM jobs",
	[Q_IDEM_GET] = "SELECT body_hash,job_id FROM idempotency WHERE customer=$1 AND key=$2",
	[Q_IDEM_PUT] = "INSERT INTO idempotency(customer,key,body_hash,job_id,created_at) "
		       "VALUES($1,$2,$3,$4,$5)",
	[Q_WORK_ADD] = "INSERT INTO work(job_id,kind,ref,due_at,lease_owner,lease_until,tries) "
		       "VALUES($1,$2,$3,$4,$5,$6,0) RETURNING id",
	[Q_WORK_ADD_ID] = "INSERT INTO work(id,job_id,kind,ref,due_at,lease_owner,lease_until,tries) "
			  "VALUES($1,$2,$3,$4,$5,$6,$7,0)",
	[Q_WORK_IDS] = "SELECT nextval(pg_get_serial_sequence('work','id'))",
	[Q_WORK_CLAIM] = "WITH c AS (UPDATE work SET lease_owner=$1, lease_until=$2 WHERE id IN "
			 "(SELECT id FROM work WHERE due_at<=$3 AND lease_until<=$3 "
			 "ORDER BY due_at LIMIT $4 FOR UPDATE SKIP LOCKED) "
			 "RETURNING id,job_id,kind,ref,due_at,tries) "
			 "SELECT c.id,c.job_id,c.kind,c.ref,c.due_at,c.tries," JOB_COLS_J ","
			 "d.id,d.job_id,d.event,d.url,d.status,d.attempts,d.created_at,d.next_at "
			 "FROM c LEFT JOIN jobs j ON j.id=c.job_id "
			 "LEFT JOIN deliveries d ON c.kind=3 AND d.id=c.ref ORDER BY c.due_at, c.id",
	[Q_WORK_DONE] = "DELETE FROM work WHERE id=$1",
	[Q_WORK_RESCHED] = "UPDATE work SET due_at=$2, lease_owner=NULL, lease_until=0, tries=$3 WHERE id=$1",
	[Q_WORK_BECOME] = "UPDATE work SET kind=$2, due_at=$3, lease_owner=NULL, lease_until=0, tries=0 WHERE id=$1",
	[Q_WORK_DROP_K] = "DELETE FROM work WHERE job_id=$1 AND kind=$2 AND id<>$3",
	[Q_WORK_DROP_ALL] = "DELETE FROM work WHERE job_id=$1 AND id<>$3 AND kind<>$2",
	[Q_WORK_NEXT] = "SELECT min(due_at) FROM work WHERE lease_until<=$1",
	[Q_WORK_RELEASE] = "UPDATE work SET lease_owner=NULL, lease_until=0 "
			   "WHERE lease_owner=$1 OR lease_owner=$1||'#slot'",
	[Q_WORK_RELEASE_P] = "UPDATE work SET lease_owner=NULL, lease_until=0 "
			     "WHERE left(lease_owner,length($1))=$1",
	/* A row another transaction has locked (being dropped or claimed) is
	 * skipped, never waited for. */
	[Q_WORK_RENEW] = "UPDATE work SET lease_until=$2 WHERE id IN (SELECT id FROM work "
			 "WHERE id=ANY($3::bigint[]) AND lease_owner=$1 AND lease_until>0 "
			 "FOR UPDATE SKIP LOCKED)",
	[Q_WORK_OWNERS] = "SELECT DISTINCT lease_owner FROM work WHERE lease_owner IS NOT NULL",
	[Q_WORK_COUNT] = "SELECT count(*) FROM work WHERE kind=$1",
	[Q_QUEUE_STATS] = "SELECT COALESCE(SUM(CASE WHEN lease_until<=$1 AND due_at<=$1 THEN 1 ELSE 0 END),0),"
			  " COALESCE(SUM(CASE WHEN lease_until>$1 THEN 1 ELSE 0 END),0),"
			  " COALESCE(SUM(CASE WHEN kind=2 AND lease_until<=$1 AND due_at>$1 THEN 1 ELSE 0 END),0),"
			  " COALESCE(MIN(CASE WHEN lease_until<=$1 AND due_at<=$1 THEN due_at END),0),"
			  " pg_database_size(current_database()) FROM work",
	[Q_DLV_INSERT] = "INSERT INTO deliveries(" DLV_COLS ") VALUES($1,$2,$3,$4,$5,$6,$7,$8)",
	[Q_DLV_GET] = "SELECT " DLV_COLS " FROM deliveries WHERE id=$1",
	[Q_DLV_UPDATE] = "UPDATE deliveries SET status=$2,attempts=$3,next_at=$4 WHERE id=$1",
	[Q_ATT_INSERT] = "INSERT INTO attempts(delivery_id,job_id,at,status_code,latency_ms,error,script_version,body) "
			 "VALUES($1,$2,$3,$4,$5,$6,$7,$8)",
	[Q_DLV_OF_JOB] = "SELECT id,event,url,status,attempts,created_at,next_at FROM deliveries "
			 "WHERE job_id=$1 ORDER BY created_at, id",
	[Q_ATT_OF_DLV] = "SELECT at,status_code,latency_ms,error,script_version,encode(body,'hex') FROM attempts "
			 "WHERE delivery_id=$1 ORDER BY id",
	[Q_CB_INSERT] = "INSERT INTO callbacks(job_id,provider,at,outcome,body) VALUES($1,$2,$3,$4,$5)",
	[Q_EV_ADD] = "INSERT INTO events(job_id,at,kind,detail) VALUES($1,$2,$3,$4)",
	[Q_EV_LIST] = "SELECT at,kind,detail FROM events WHERE job_id=$1 ORDER BY id",
	/* Provider caps (store_work_take_slot): the count and the take are one
	 * decision across instances, so they run under a per-provider lock held
	 * to the end of the transaction. */
	[Q_SLOT_LOCK] = "SELECT pg_advisory_xact_lock(hashtext('genrelay-slot:'||$1))",
	[Q_SLOT_COUNT] = "SELECT "
		"count(*) FILTER (WHERE w.kind=2 OR (w.id<>$3 AND coalesce(w.lease_owner,'') LIKE '%#slot' "
		"AND w.lease_until>$2)), "
		"count(*) FILTER (WHERE w.kind=1 AND w.id<>$3 AND w.due_at<=$2 "
		"AND NOT (coalesce(w.lease_owner,'') LIKE '%#slot' AND w.lease_until>$2) "
		"AND (w.due_at<$4 OR (w.due_at=$4 AND w.id<$3))) "
		"FROM work w JOIN jobs j ON j.id=w.job_id WHERE w.kind IN (1,2) AND j.provider=$1",
	[Q_SLOT_TAKE] = "UPDATE work SET lease_owner=coalesce(lease_owner,'')||'#slot' "
			"WHERE id=$1 AND coalesce(lease_owner,'') NOT LIKE '%#slot'",
	[Q_SLOT_HOLD] = "UPDATE work SET lease_owner='cap-wait', lease_until=$2 WHERE id=$1",
	[Q_EV_COUNT] = "SELECT count(*) FROM events WHERE job_id=$1 AND kind=$2",
	[Q_CB_OF_JOB] = "SELECT at,provider,outcome,length(body) FROM callbacks WHERE job_id=$1 ORDER BY id",
	[Q_CUST_ADD] = "INSERT INTO customers(name,key_sha256,webhook_secret,hook,webhook_url,created_at,"
		       "updated_at) VALUES($1,$2,$3,$4,$5,$6,$6) ON CONFLICT DO NOTHING",
	[Q_CUST_KEY] = "UPDATE customers SET key_sha256=$2, updated_at=$3 WHERE name=$1",
	[Q_CUST_BY_KEY] = "SELECT name,key_sha256,webhook_secret,hook,webhook_url,created_at "
			  "FROM customers WHERE key_sha256=$1",
	[Q_CUST_BY_NAME] = "SELECT name,key_sha256,webhook_secret,hook,webhook_url,created_at "
			   "FROM customers WHERE name=$1",
	[Q_CUST_LIST] = "SELECT name,hook,webhook_url,webhook_secret IS NOT NULL,created_at "
			"FROM customers ORDER BY name COLLATE \"C\"",
	[Q_CUST_DEL] = "DELETE FROM customers WHERE name=$1",
	[Q_USAGE_ADD] = "INSERT INTO usage(job_id,customer,provider,model,amount,unit,source,at)"
			" VALUES($1,$2,$3,$4,$5::double precision,$6,$7,$8::bigint)"
			" ON CONFLICT (job_id) DO NOTHING",
	[Q_NOTIFY] = "SELECT pg_notify('genrelay_work', $1)",
	/* A shared token bucket: refilled at $2 a second up to $3, gives at
	 * most $4 whole tokens; the database's clock, so instances agree. */
	[Q_RATE_TAKE] = "UPDATE rate_buckets SET granted=LEAST($4::float8, floor(" RATE_REFILL ")),"
			" tokens=" RATE_REFILL " - LEAST($4::float8, floor(" RATE_REFILL ")),"
			" at_ms=GREATEST(at_ms, " NOW_MS ") WHERE key=$1 RETURNING granted, tokens",
	/* A unit that answers a request counts itself (transaction-local, and
	 * undone with its savepoint when it fails); the commit checks the count. */
	[Q_ANSWERED] = "SELECT set_config('genrelay.answered', (coalesce(nullif("
		       "current_setting('genrelay.answered', true), ''), '0')::int + 1)::text, true)",
	[Q_ANSWERED_CHECK] = "SELECT genrelay_one_row(CASE WHEN coalesce(nullif(current_setting("
			     "'genrelay.answered', true), ''), '0') = $1 THEN 1 ELSE 0 END, "
			     "'a step that answered a request was rolled back')",
	[Q_RATE_ROW] = "INSERT INTO rate_buckets(key,tokens,at_ms) VALUES($1,$2::float8," NOW_MS ")"
		       " ON CONFLICT DO NOTHING",
};

/* ---------- row helpers ---------- */

void pg_copy_val(PGresult *r, int row, int col, char *out, size_t outlen)
{
	snprintf(out, outlen, "%s", PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col));
}

char *pg_val_dup(PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? NULL : strdup(PQgetvalue(r, row, col));
}

int64_t pg_val_int(PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

json_t *pg_val_json_str(PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? json_null() : json_string(PQgetvalue(r, row, col));
}

void pg_read_job(PGresult *r, int row, int c, struct job *j)
{
	memset(j, 0, sizeof *j);
	pg_copy_val(r, row, c + 0, j->id, sizeof j->id);
	j->customer = pg_val_dup(r, row, c + 1);
	j->model_id = pg_val_dup(r, row, c + 2);
	j->targets = pg_val_dup(r, row, c + 3);
	j->target_idx = (int)pg_val_int(r, row, c + 4);
	j->provider = pg_val_dup(r, row, c + 5);
	j->model = pg_val_dup(r, row, c + 6);
	j->status = (enum job_status)pg_val_int(r, row, c + 7);
	j->request_id = pg_val_dup(r, row, c + 8);
	j->track_id = pg_val_dup(r, row, c + 9);
	j->input = pg_val_dup(r, row, c + 10);
	j->webhook_url = pg_val_dup(r, row, c + 11);
	j->hook = pg_val_dup(r, row, c + 12);
	j->output = pg_val_dup(r, row, c + 13);
	j->error_code = pg_val_dup(r, row, c + 14);
	j->error_message = pg_val_dup(r, row, c + 15);
	j->data = pg_val_dup(r, row, c + 16);
	j->attempt = (int)pg_val_int(r, row, c + 17);
	j->polls = (int)pg_val_int(r, row, c + 18);
	j->created_at = pg_val_int(r, row, c + 19);
	j->updated_at = pg_val_int(r, row, c + 20);
	j->completed_at = pg_val_int(r, row, c + 21);
	j->submit_deadline = pg_val_int(r, row, c + 22);
	j->deadline = pg_val_int(r, row, c + 23);
}

static void read_delivery(PGresult *r, int row, int c, struct delivery *d)
{
	memset(d, 0, sizeof *d);
	pg_copy_val(r, row, c + 0, d->id, sizeof d->id);
	pg_copy_val(r, row, c + 1, d->job_id, sizeof d->job_id);
	pg_copy_val(r, row, c + 2, d->event, sizeof d->event);
	d->url = pg_val_dup(r, row, c + 3);
	pg_copy_val(r, row, c + 4, d->status, sizeof d->status);
	d->attempts = (int)pg_val_int(r, row, c + 5);
	d->created_at = pg_val_int(r, row, c + 6);
	d->next_at = pg_val_int(r, row, c + 7);
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

/*
 * Rows into the cache. A write the cache could not keep (another of the
 * batch's writes held its slot) makes the batch's reads keep their order,
 * so they see it in the database.
 */
static void keep_job(struct store *s, const struct job *j, int write)
{
	if (pg_cache_put_job(s->cache, j, s->iteration, s->batch_id, write) && write)
		s->must_order = 1;
}

static void keep_delivery(struct store *s, const struct delivery *d, int write)
{
	if (pg_cache_put_delivery(s->cache, d, s->iteration, s->batch_id, write) && write)
		s->must_order = 1;
}

/* ---------- meta, jobs, idempotency ---------- */

int store_meta_get(struct store *s, const char *key, char *out, size_t outlen)
{
	struct params p = { 0 };
	PGresult *r;
	p_text(&p, key);
	int rc = read_row(s, Q_META_GET, &p, &r);
	if (rc == 0) {
		pg_copy_val(r, 0, 0, out, outlen);
		PQclear(r);
	}
	return rc;
}

int store_meta_set(struct store *s, const char *key, const char *value)
{
	struct params p = { 0 };
	p_text(&p, key);
	p_text(&p, value);
	s->must_order = 1; /* a read of it in this batch must see it */
	return pg_defer(s, Q_META_SET, &p, PEND_WRITE);
}

static void job_params(struct params *p, const struct job *j)
{
	p_int(p, j->target_idx);
	p_text(p, j->provider);
	p_text(p, j->model);
	p_int(p, (int)j->status);
	p_text(p, j->request_id);
}

static void p_opt_int(struct params *p, int64_t v)
{
	if (v)
		p_int(p, v);
	else
		p_text(p, NULL);
}

int store_job_insert(struct store *s, const struct job *j)
{
	struct params p = { 0 };
	p_text(&p, j->id);
	p_text(&p, j->customer);
	p_text(&p, j->model_id);
	p_text(&p, j->targets);
	job_params(&p, j);
	p_text(&p, j->track_id);
	p_text(&p, j->input);
	p_text(&p, j->webhook_url);
	p_text(&p, j->hook);
	p_text(&p, j->output);
	p_text(&p, j->error_code);
	p_text(&p, j->error_message);
	p_text(&p, j->data);
	p_int(&p, j->attempt);
	p_int(&p, j->polls);
	p_int(&p, j->created_at);
	p_int(&p, j->updated_at);
	p_opt_int(&p, j->completed_at);
	p_int(&p, j->submit_deadline);
	p_int(&p, j->deadline);
	int rc = pg_defer(s, Q_JOB_INSERT, &p, PEND_WRITE);
	pg_mark_answer(s);
	if (rc == 0)
		keep_job(s, j, 1);
	return rc;
}

int store_job_update(struct store *s, const struct job *j)
{
	struct params p = { 0 };
	p_text(&p, j->id);
	job_params(&p, j);
	p_text(&p, j->output);
	p_text(&p, j->error_code);
	p_text(&p, j->error_message);
	p_text(&p, j->data);
	p_int(&p, j->attempt);
	p_int(&p, j->polls);
	p_int(&p, j->updated_at);
	p_opt_int(&p, j->completed_at);
	p_int(&p, j->submit_deadline);
	p_int(&p, j->deadline);
	if (s->batching) {
		int rc = pg_defer(s, Q_JOB_UPDATE_DEFER, &p, PEND_WRITE);
		if (rc == 0)
			keep_job(s, j, 1);
		return rc;
	}
	PGresult *r;
	int rc = pg_exec(s, Q_JOB_UPDATE, &p, PG_WRITE, &r);
	if (rc < 0)
		return rc;
	int n = atoi(PQcmdTuples(r));
	PQclear(r);
	if (n == 0) {
		/* Ended meanwhile by another worker or instance: this copy is
		 * stale. The caller rolls back; its work row, run again, finds
		 * the job ended. */
		snprintf(s->err, sizeof s->err, "postgresql: job %s already ended elsewhere", j->id);
		return -2;
	}
	return 0;
}

int store_job_get(struct store *s, const char *id, const char *customer, struct job *j)
{
	/* The engine's reads (no customer) may come from the cache; the API's
	 * (a customer's) always read the database. */
	if (pg_cache_get_job(s->cache, id, s->iteration, customer ? s->batch_id + 1 : 0, j) == 0) {
		if (!customer || (j->customer && strcmp(j->customer, customer) == 0))
			return 0;
		job_clear(j);
		return 1;
	}
	struct params p = { 0 };
	PGresult *r;
	p_text(&p, id);
	if (customer) {
		p_text(&p, customer);
		pg_mark_answer(s);
	}
	int rc = read_row(s, customer ? Q_JOB_GET_C : Q_JOB_GET, &p, &r);
	if (rc == 0) {
		pg_read_job(r, 0, 0, j);
		PQclear(r);
		keep_job(s, j, 0);
	}
	return rc;
}

int store_idem_get(struct store *s, const char *customer, const char *key,
		   char *hash, size_t hashlen, char *job_id, size_t idlen)
{
	struct params p = { 0 };
	PGresult *r;
	p_text(&p, customer);
	p_text(&p, key);
	int rc = read_row(s, Q_IDEM_GET, &p, &r);
	if (rc == 0) {
		pg_copy_val(r, 0, 0, hash, hashlen);
		pg_copy_val(r, 0, 1, job_id, idlen);
		PQclear(r);
	}
	return rc;
}

int store_idem_put(struct store *s, const char *customer, const char *key,
		   const char *hash, const char *job_id, int64_t now)
{
	struct params p = { 0 };
	p_text(&p, customer);
	p_text(&p, key);
	p_text(&p, hash);
	p_text(&p, job_id);
	p_int(&p, now);
	s->must_order = 1; /* a later request of the batch with the key must see it */
	return pg_defer(s, Q_IDEM_PUT, &p, PEND_WRITE);
}

/* ---------- due work ---------- */

int store_work_add(struct store *s, const char *job_id, enum work_kind kind,
		   const char *ref, int64_t due_at, const char *owner,
		   int64_t lease_until, int64_t *id)
{
	struct params p = { 0 };
	int64_t wid = 0;
	int rc;
	if (s->batching && (rc = pg_work_id(s, &wid)) < 0)
		return rc;
	if (s->batching)
		p_int(&p, wid);
	p_text(&p, job_id);
	p_int(&p, (int)kind);
	p_text(&p, ref);
	p_int(&p, due_at);
	p_text(&p, owner);
	p_int(&p, owner ? lease_until : 0);
	if (s->batching) {
		rc = pg_defer(s, Q_WORK_ADD_ID, &p, PEND_WRITE);
	} else {
		PGresult *r;
		rc = pg_exec(s, Q_WORK_ADD, &p, PG_WRITE, &r);
		if (rc == 0) {
			wid = pg_val_int(r, 0, 0);
			PQclear(r);
		}
	}
	if (rc == 0 && id)
		*id = wid;
	if (rc == 0 && !owner)
		pg_note_due(s, due_at);
	return rc;
}

int store_work_claim(struct store *s, const char *owner, int64_t now,
		     int64_t lease_ms, struct work *out, size_t max, size_t *n)
{
	struct params p = { 0 };
	PGresult *r = NULL;
	*n = 0;
	p_text(&p, owner);
	p_int(&p, now + lease_ms);
	p_int(&p, now);
	p_int(&p, (int64_t)max);
	int rc = pg_exec(s, Q_WORK_CLAIM, &p, PG_ALONE, &r);
	if (rc < 0)
		return rc;
	int rows = PQntuples(r);
	for (int i = 0; i < rows && *n < max; i++) {
		struct work *w = &out[(*n)++];
		memset(w, 0, sizeof *w);
		w->id = pg_val_int(r, i, 0);
		pg_copy_val(r, i, 1, w->job_id, sizeof w->job_id);
		w->kind = (enum work_kind)pg_val_int(r, i, 2);
		pg_copy_val(r, i, 3, w->ref, sizeof w->ref);
		w->due_at = pg_val_int(r, i, 4);
		w->tries = (int)pg_val_int(r, i, 5);
		if (!PQgetisnull(r, i, 6)) {
			struct job j;
			pg_read_job(r, i, 6, &j);
			keep_job(s, &j, 0);
			job_clear(&j);
		}
		if (!PQgetisnull(r, i, 6 + JOB_NCOLS)) {
			struct delivery d;
			read_delivery(r, i, 6 + JOB_NCOLS, &d);
			keep_delivery(s, &d, 0);
			free(d.url);
		}
	}
	PQclear(r);
	return 0;
}

int store_work_done(struct store *s, int64_t id)
{
	struct params p = { 0 };
	p_int(&p, id);
	return pg_defer(s, Q_WORK_DONE, &p, PEND_WRITE);
}

int store_work_reschedule(struct store *s, int64_t id, int64_t due_at, int tries)
{
	struct params p = { 0 };
	p_int(&p, id);
	p_int(&p, due_at);
	p_int(&p, tries);
	int rc = pg_defer(s, Q_WORK_RESCHED, &p, PEND_WRITE);
	if (rc == 0)
		pg_note_due(s, due_at);
	return rc;
}

int store_work_become(struct store *s, int64_t id, enum work_kind kind, int64_t due_at)
{
	struct params p = { 0 };
	p_int(&p, id);
	p_int(&p, (int)kind);
	p_int(&p, due_at);
	int rc = pg_defer(s, Q_WORK_BECOME, &p, PEND_WRITE);
	if (rc == 0)
		pg_note_due(s, due_at);
	return rc;
}

int store_work_drop(struct store *s, const char *job_id, enum work_kind kind,
		    int64_t keep_id)
{
	/* kind 0 drops every kind except deliveries, which outlive the job's end. */
	struct params p = { 0 };
	p_text(&p, job_id);
	p_int(&p, kind ? (int)kind : WORK_DELIVER);
	p_int(&p, keep_id);
	return pg_defer(s, kind ? Q_WORK_DROP_K : Q_WORK_DROP_ALL, &p, PEND_WRITE);
}

int store_work_next_due(struct store *s, int64_t now, int64_t *due)
{
	struct params p = { 0 };
	PGresult *r;
	p_int(&p, now);
	int rc = read_row(s, Q_WORK_NEXT, &p, &r);
	if (rc != 0)
		return rc;
	rc = 1;
	if (!PQgetisnull(r, 0, 0)) {
		*due = pg_val_int(r, 0, 0);
		rc = 0;
	}
	PQclear(r);
	return rc;
}

int store_work_release(struct store *s, const char *owner)
{
	struct params p = { 0 };
	p_text(&p, owner);
	int rc = pg_defer(s, Q_WORK_RELEASE, &p, PEND_WRITE);
	if (rc == 0)
		pg_note_due(s, pg_wall_ms());
	return rc;
}

int store_work_release_prefix(struct store *s, const char *prefix)
{
	struct params p = { 0 };
	p_text(&p, prefix);
	int rc = pg_defer(s, Q_WORK_RELEASE_P, &p, PEND_WRITE);
	if (rc == 0)
		pg_note_due(s, pg_wall_ms());
	return rc;
}

int store_work_renew(struct store *s, const char *owner, const int64_t *ids, size_t n,
		     int64_t lease_until)
{
	if (n == 0)
		return 0;
	/* The ids as an array literal, "{1,2,3}". */
	char *arr = malloc(n * 21 + 3);
	if (!arr) {
		snprintf(s->err, sizeof s->err, "out of memory");
		return -1;
	}
	size_t len = 0;
	arr[len++] = '{';
	for (size_t i = 0; i < n; i++)
		len += (size_t)sprintf(arr + len, "%s%lld", i ? "," : "", (long long)ids[i]);
	arr[len++] = '}';
	arr[len] = '\0';
	struct params p = { 0 };
	p_text(&p, owner);
	p_int(&p, lease_until);
	p_text(&p, arr);
	/* libpq copies the parameters when it queues the statement. */
	int rc = pg_defer(s, Q_WORK_RENEW, &p, PEND_WRITE);
	free(arr);
	return rc;
}

/*
 * Provider caps, counted across workers and instances: see store.h. The
 * lock and the take are queued; the count is the one round trip.
 */
int store_work_take_slot(struct store *s, int64_t id, const char *provider, int64_t due_at,
			 int64_t now, long cap, int64_t hold_ms)
{
	struct params p = { 0 };
	PGresult *r;
	p_text(&p, provider);
	int rc = pg_defer(s, Q_SLOT_LOCK, &p, PEND_WRITE);
	if (rc < 0)
		return rc;
	p_int(&p, now);
	p_int(&p, id);
	p_int(&p, due_at);
	rc = pg_exec(s, Q_SLOT_COUNT, &p, PG_WRITE, &r);
	if (rc < 0)
		return rc;
	int64_t inflight = pg_val_int(r, 0, 0), ahead = pg_val_int(r, 0, 1);
	PQclear(r);
	int admit = inflight + ahead < (int64_t)cap;
	struct params q = { 0 };
	p_int(&q, id);
	if (!admit) {
		int64_t place = 1 + ahead / (cap > 0 ? cap : 1);
		p_int(&q, now + hold_ms * (place > 20 ? 20 : place));
	}
	rc = pg_defer(s, admit ? Q_SLOT_TAKE : Q_SLOT_HOLD, &q, PEND_WRITE);
	return rc < 0 ? rc : admit;
}

/* ---------- deliveries, attempts, callbacks, events, usage ---------- */

static void delivery_params(struct params *p, const struct delivery *d)
{
	p_text(p, d->status);
	p_int(p, d->attempts);
}

int store_delivery_insert(struct store *s, const struct delivery *d)
{
	struct params p = { 0 };
	p_text(&p, d->id);
	p_text(&p, d->job_id);
	p_text(&p, d->event);
	p_text(&p, d->url);
	delivery_params(&p, d);
	p_int(&p, d->created_at);
	p_int(&p, d->next_at);
	int rc = pg_defer(s, Q_DLV_INSERT, &p, PEND_WRITE);
	if (rc == 0)
		keep_delivery(s, d, 1);
	return rc;
}

int store_delivery_update(struct store *s, const struct delivery *d)
{
	struct params p = { 0 };
	p_text(&p, d->id);
	delivery_params(&p, d);
	p_int(&p, d->next_at);
	int rc = pg_defer(s, Q_DLV_UPDATE, &p, PEND_WRITE);
	if (rc == 0)
		keep_delivery(s, d, 1);
	return rc;
}

int store_delivery_get(struct store *s, const char *id, struct delivery *d)
{
	if (pg_cache_get_delivery(s->cache, id, s->iteration, d) == 0)
		return 0;
	struct params p = { 0 };
	PGresult *r;
	p_text(&p, id);
	int rc = read_row(s, Q_DLV_GET, &p, &r);
	if (rc != 0)
		return rc;
	read_delivery(r, 0, 0, d);
	PQclear(r);
	keep_delivery(s, d, 0);
	return 0;
}

int store_attempt_insert(struct store *s, const char *delivery_id,
			 const char *job_id, int64_t at, long status,
			 double latency_ms, const char *error,
			 const char *script_version, const char *body, size_t body_len)
{
	struct params p = { 0 };
	p_text(&p, delivery_id);
	p_text(&p, job_id);
	p_int(&p, at);
	p_opt_int(&p, status);
	p_double(&p, latency_ms);
	p_text(&p, error);
	p_text(&p, script_version);
	if (body)
		p_bytes(&p, body, body_len);
	else
		p_text(&p, NULL);
	return pg_defer(s, Q_ATT_INSERT, &p, PEND_WRITE);
}

int store_callback_insert(struct store *s, const char *job_id, const char *provider,
			  int64_t at, const char *outcome, const char *body, size_t bodylen)
{
	struct params p = { 0 };
	p_text(&p, job_id);
	p_text(&p, provider);
	p_int(&p, at);
	p_text(&p, outcome);
	/* Raw bytes as the provider sent them (not necessarily UTF-8). */
	if (body)
		p_bytes(&p, body, bodylen);
	else
		p_text(&p, NULL);
	pg_mark_answer(s);
	return pg_defer(s, Q_CB_INSERT, &p, PEND_WRITE);
}

int store_event_add(struct store *s, const char *job_id, int64_t at,
		    const char *kind, const char *detail)
{
	struct params p = { 0 };
	p_text(&p, job_id);
	p_int(&p, at);
	p_text(&p, kind);
	p_text(&p, detail);
	return pg_defer(s, Q_EV_ADD, &p, PEND_WRITE);
}

int64_t store_event_count(struct store *s, const char *job_id, const char *kind)
{
	struct params p = { 0 };
	PGresult *r;
	p_text(&p, job_id);
	p_text(&p, kind);
	if (pg_exec(s, Q_EV_COUNT, &p, PG_READ, &r) < 0)
		return -1;
	int64_t n = pg_val_int(r, 0, 0);
	PQclear(r);
	return n;
}

int store_usage_add(struct store *s, const char *job_id, const char *customer,
		    const char *provider, const char *model, double amount,
		    const char *unit, const char *source, int64_t at)
{
	struct params p = { 0 };
	p_text(&p, job_id);
	p_text(&p, customer);
	p_text(&p, provider);
	p_text(&p, model);
	p_double(&p, amount);
	p_text(&p, unit);
	p_text(&p, source);
	p_int(&p, at);
	return pg_defer(s, Q_USAGE_ADD, &p, PEND_WRITE) < 0 ? -1 : 0;
}

const struct store_ops pg_store_ops = {
	STORE_OPS_INIT("postgresql"),
	.idle = store_idle,
	.listen = store_listen,
	.notify_fd = store_notify_fd,
	.notify_read = store_notify_read,
	.rate_take = store_rate_take,
};
