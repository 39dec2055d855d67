/*
 * store_pg_stmt.c: the bottom layer of the PostgreSQL store
 * (store_pg_int.h): the statements' texts, prepared once per connection,
 * the parameters of a statement, the clocks, and the helpers that read a
 * result's values and rows. Calls no other file of the store.
 */
#include "store_pg_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
	/* The same for a job taken from the cache as a guess (pg_guess_job):
	 * the row must also still be what the guess held. */
	[Q_JOB_SAME] = "SELECT count(*) FROM jobs WHERE id=$1 AND updated_at=$2 AND status=$3 AND "
		       "target_idx=$4 AND attempt=$5 AND polls=$6 AND request_id IS NOT DISTINCT FROM $7",
	[Q_JOB_UPDATE_CHECKED] = "WITH u AS (UPDATE jobs SET " JOB_SET " WHERE id=$1 AND status<2 "
				 "AND updated_at=$17 AND status=$18 AND target_idx=$19 AND attempt=$20 "
				 "AND polls=$21 AND request_id IS NOT DISTINCT FROM $22 RETURNING 1) "
				 "SELECT genrelay_one_row((SELECT count(*) FROM u), "
				 "'job '||$1||' ended or changed elsewhere')",
	/* A move to the next target (failover) also needs the row still on the
	 * target it moves from ($17): of two steps moving one job at once (its
	 * submit answer and its callback, on two workers), the second rolls
	 * back. */
	[Q_JOB_MOVE] = "UPDATE jobs SET " JOB_SET " WHERE id=$1 AND status<2 AND target_idx=$17",
	[Q_JOB_MOVE_DEFER] = "WITH u AS (UPDATE jobs SET " JOB_SET " WHERE id=$1 AND status<2 "
			     "AND target_idx=$17 RETURNING 1) SELECT genrelay_one_row((SELECT count(*) "
			     "FROM u), 'job '||$1||' already moved or ended elsewhere')",
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
	/* A job's row taken from the cache as a guess (pg_guess_job) is still
	 * the database's: same version (updated_at) and the same state. */
	[Q_JOB_CHECK] = "SELECT genrelay_one_row((SELECT count(*) FROM jobs WHERE id=$1 AND "
			"updated_at=$2 AND status=$3 AND target_idx=$4 AND attempt=$5 AND polls=$6 "
			"AND request_id IS NOT DISTINCT FROM $7), 'job '||$1||' changed elsewhere')",
	/* Rows whose outcome was rolled back (their step is over): due again
	 * soon rather than when their lease ends. */
	[Q_WORK_AGAIN] = "UPDATE work SET lease_until=$2 WHERE id=ANY($1::bigint[]) AND lease_until>$2",
	[Q_RATE_ROW] = "INSERT INTO rate_buckets(key,tokens,at_ms) VALUES($1,$2::float8," NOW_MS ")"
		       " ON CONFLICT DO NOTHING",
};

/* ---------- parameters, clocks ---------- */

void p_text(struct params *p, const char *v)
{
	p->fmt[p->n] = 0;
	p->len[p->n] = 0;
	p->v[p->n++] = v;
}

/* Decimal digits by hand: snprintf's format machinery was a tenth of the
 * store's own instructions per job (a job's statements carry ~60 integers). */
void p_int(struct params *p, int64_t v)
{
	char tmp[24], *out = p->buf[p->n];
	uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
	int n = 0;
	do {
		tmp[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	size_t k = 0;
	if (v < 0)
		out[k++] = '-';
	while (n)
		out[k++] = tmp[--n];
	out[k] = '\0';
	p_text(p, out);
}

void pg_copy_val(PGresult *r, int row, int col, char *out, size_t outlen)
{
	const char *v = PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col);
	size_t n = strlen(v);
	if (n >= outlen)
		n = outlen - 1;
	memcpy(out, v, n);
	out[n] = '\0';
}

void p_double(struct params *p, double v)
{
	snprintf(p->buf[p->n], sizeof p->buf[0], "%.17g", v);
	p_text(p, p->buf[p->n]);
}

void p_bytes(struct params *p, const char *v, size_t len)
{
	p->fmt[p->n] = 1;
	p->len[p->n] = (int)len;
	p->v[p->n++] = v;
}

int64_t pg_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t pg_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---------- values and rows of a result ---------- */


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
