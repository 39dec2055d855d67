/*
 * store_sqlite_jobs.c: the SQLite store's jobs (store_sqlite_int.h): their
 * rows, idempotency keys, events, callback records, and retention
 * (store_purge).
 */
#include "store_sqlite_int.h"

static void bind_job(sqlite3_stmt *st, const struct job *j)
{
	bind_text(st, 1, j->id);
	bind_text(st, 2, j->customer);
	bind_text(st, 3, j->model_id);
	bind_text(st, 4, j->targets);
	sqlite3_bind_int(st, 5, j->target_idx);
	bind_text(st, 6, j->provider);
	bind_text(st, 7, j->model);
	sqlite3_bind_int(st, 8, (int)j->status);
	bind_text(st, 9, j->request_id);
	bind_text(st, 10, j->track_id);
	bind_text(st, 11, j->input);
	bind_text(st, 12, j->webhook_url);
	bind_text(st, 13, j->hook);
	bind_text(st, 14, j->output);
	bind_text(st, 15, j->error_code);
	bind_text(st, 16, j->error_message);
	bind_text(st, 17, j->data);
	sqlite3_bind_int(st, 18, j->attempt);
	sqlite3_bind_int(st, 19, j->polls);
	sqlite3_bind_int64(st, 20, j->created_at);
	sqlite3_bind_int64(st, 21, j->updated_at);
	if (j->completed_at)
		sqlite3_bind_int64(st, 22, j->completed_at);
	else
		sqlite3_bind_null(st, 22);
	sqlite3_bind_int64(st, 23, j->submit_deadline);
	sqlite3_bind_int64(st, 24, j->deadline);
}

int store_job_insert(struct store *s, const struct job *j)
{
	sqlite3_stmt *st = q(s, Q_JOB_INSERT);
	bind_job(st, j);
	return sqlite_write_stmt(s, st);
}

int store_job_update(struct store *s, const struct job *j)
{
	sqlite3_stmt *st = q(s, Q_JOB_UPDATE);
	bind_job(st, j);
	return sqlite_write_stmt(s, st);
}

void sqlite_read_job(sqlite3_stmt *st, struct job *j)
{
	memset(j, 0, sizeof *j);
	snprintf(j->id, sizeof j->id, "%s", (const char *)sqlite3_column_text(st, 0));
	j->customer = col_dup(st, 1);
	j->model_id = col_dup(st, 2);
	j->targets = col_dup(st, 3);
	j->target_idx = sqlite3_column_int(st, 4);
	j->provider = col_dup(st, 5);
	j->model = col_dup(st, 6);
	j->status = (enum job_status)sqlite3_column_int(st, 7);
	j->request_id = col_dup(st, 8);
	j->track_id = col_dup(st, 9);
	j->input = col_dup(st, 10);
	j->webhook_url = col_dup(st, 11);
	j->hook = col_dup(st, 12);
	j->output = col_dup(st, 13);
	j->error_code = col_dup(st, 14);
	j->error_message = col_dup(st, 15);
	j->data = col_dup(st, 16);
	j->attempt = sqlite3_column_int(st, 17);
	j->polls = sqlite3_column_int(st, 18);
	j->created_at = sqlite3_column_int64(st, 19);
	j->updated_at = sqlite3_column_int64(st, 20);
	j->completed_at = sqlite3_column_int64(st, 21);
	j->submit_deadline = sqlite3_column_int64(st, 22);
	j->deadline = sqlite3_column_int64(st, 23);
}

int store_job_get(struct store *s, const char *id, const char *customer, struct job *j)
{
	sqlite3_stmt *st = q(s, customer ? Q_JOB_GET_C : Q_JOB_GET);
	bind_text(st, 1, id);
	if (customer)
		bind_text(st, 2, customer);
	int rc = sqlite3_step(st), ret = 1;
	if (rc == SQLITE_ROW) {
		sqlite_read_job(st, j);
		ret = 0;
	} else if (rc != SQLITE_DONE) {
		ret = fail(s, rc);
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return ret;
}

json_t *store_job_list(struct store *s, const char *customer, const char *status,
		       const char *cursor, int limit)
{
	char text[512];
	snprintf(text, sizeof text, "SELECT " JOB_COLS " FROM jobs WHERE customer=?1%s%s "
		 "ORDER BY id DESC LIMIT ?4",
		 status ? " AND status=?2" : "", cursor ? " AND id<?3" : "");
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(s->db, text, -1, &st, NULL) != SQLITE_OK) {
		fail(s, SQLITE_ERROR);
		return NULL;
	}
	enum job_status js = JOB_QUEUED;
	bind_text(st, 1, customer);
	if (status && job_status_parse(status, &js) == 0)
		sqlite3_bind_int(st, 2, (int)js);
	else if (status)
		sqlite3_bind_int(st, 2, -1);
	if (cursor)
		bind_text(st, 3, cursor);
	sqlite3_bind_int(st, 4, limit + 1);
	json_t *arr = json_array(), *next = json_null();
	int n = 0, rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct job j;
		sqlite_read_job(st, &j);
		if (n++ == limit) {
			json_decref(next);
			next = json_string(json_string_value(json_object_get(
				json_array_get(arr, json_array_size(arr) - 1), "job_id")));
			job_clear(&j);
			break;
		}
		json_array_append_new(arr, job_to_json(&j));
		job_clear(&j);
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		fail(s, rc);
		sqlite3_finalize(st);
		json_decref(arr);
		json_decref(next);
		return NULL;
	}
	sqlite3_finalize(st);
	json_t *o = json_object();
	json_object_set_new(o, "data", arr);
	json_object_set_new(o, "next_cursor", next);
	return o;
}

int64_t store_job_count(struct store *s)
{
	return count_query(s, Q_JOB_COUNT, 0);
}

int store_idem_get(struct store *s, const char *customer, const char *key,
		   char *hash, size_t hashlen, char *job_id, size_t idlen)
{
	sqlite3_stmt *st = q(s, Q_IDEM_GET);
	bind_text(st, 1, customer);
	bind_text(st, 2, key);
	int rc = sqlite3_step(st), ret = 1;
	if (rc == SQLITE_ROW) {
		snprintf(hash, hashlen, "%s", (const char *)sqlite3_column_text(st, 0));
		snprintf(job_id, idlen, "%s", (const char *)sqlite3_column_text(st, 1));
		ret = 0;
	} else if (rc != SQLITE_DONE) {
		ret = fail(s, rc);
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return ret;
}

int store_idem_put(struct store *s, const char *customer, const char *key,
		   const char *hash, const char *job_id, int64_t now)
{
	sqlite3_stmt *st = q(s, Q_IDEM_PUT);
	bind_text(st, 1, customer);
	bind_text(st, 2, key);
	bind_text(st, 3, hash);
	bind_text(st, 4, job_id);
	sqlite3_bind_int64(st, 5, now);
	return sqlite_write_stmt(s, st);
}

int store_callback_insert(struct store *s, const char *job_id, const char *provider,
			  int64_t at, const char *outcome, const char *body, size_t bodylen)
{
	sqlite3_stmt *st = q(s, Q_CB_INSERT);
	bind_text(st, 1, job_id);
	bind_text(st, 2, provider);
	sqlite3_bind_int64(st, 3, at);
	bind_text(st, 4, outcome);
	if (body)
		sqlite3_bind_text(st, 5, body, (int)bodylen, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 5);
	return sqlite_write_stmt(s, st);
}

int store_event_add(struct store *s, const char *job_id, int64_t at,
		    const char *kind, const char *detail)
{
	sqlite3_stmt *st = q(s, Q_EV_ADD);
	bind_text(st, 1, job_id);
	sqlite3_bind_int64(st, 2, at);
	bind_text(st, 3, kind);
	bind_text(st, 4, detail);
	return sqlite_write_stmt(s, st);
}

json_t *store_job_events(struct store *s, const char *job_id)
{
	sqlite3_stmt *st = q(s, Q_EV_LIST);
	bind_text(st, 1, job_id);
	json_t *arr = json_array();
	while (sqlite3_step(st) == SQLITE_ROW) {
		json_t *o = json_object();
		json_object_set_new(o, "at", job_time_json(sqlite3_column_int64(st, 0)));
		json_object_set_new(o, "kind", col_json_str(st, 1));
		const char *detail = (const char *)sqlite3_column_text(st, 2);
		json_t *dj = detail ? json_loads(detail, 0, NULL) : NULL;
		json_object_set_new(o, "detail", dj ? dj : col_json_str(st, 2));
		json_array_append_new(arr, o);
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return arr;
}

int64_t store_event_count(struct store *s, const char *job_id, const char *kind)
{
	sqlite3_stmt *st = q(s, Q_EV_COUNT);
	bind_text(st, 1, job_id);
	bind_text(st, 2, kind);
	int64_t n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return n;
}

/* The purge's steps, in order: pick the batch, delete its rows table by
 * table (jobs last), forget the batch. */
static const char *const purge_sql[] = {
	"CREATE TEMP TABLE IF NOT EXISTS purge_ids(id TEXT PRIMARY KEY) WITHOUT ROWID",
	"DELETE FROM purge_ids",
	"INSERT INTO purge_ids SELECT id FROM jobs WHERE completed_at IS NOT NULL AND completed_at<?1"
	" AND status IN (2,3,4) AND NOT EXISTS (SELECT 1 FROM work WHERE work.job_id=jobs.id)"
	" ORDER BY completed_at LIMIT ?2",
	"DELETE FROM attempts WHERE job_id IN (SELECT id FROM purge_ids)",
	"DELETE FROM deliveries WHERE job_id IN (SELECT id FROM purge_ids)",
	"DELETE FROM events WHERE job_id IN (SELECT id FROM purge_ids)",
	"DELETE FROM callbacks WHERE job_id IN (SELECT id FROM purge_ids)",
	"DELETE FROM idempotency WHERE job_id IN (SELECT id FROM purge_ids)",
	"DELETE FROM jobs WHERE id IN (SELECT id FROM purge_ids)",
};

int store_purge(struct store *s, int64_t before, int limit, int *purged)
{
	*purged = 0;
	if (s->batching || s->in_tx) {
		snprintf(s->err, sizeof s->err, "store_purge runs outside transactions");
		return -1;
	}
	int rc = exec_stmt(s, q(s, Q_BEGIN));
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < sizeof purge_sql / sizeof purge_sql[0] && rc == 0; i++) {
		sqlite3_stmt *st;
		if (sqlite3_prepare_v2(s->db, purge_sql[i], -1, &st, NULL) != SQLITE_OK) {
			rc = fail(s, sqlite3_errcode(s->db));
			break;
		}
		if (i == 2) {
			sqlite3_bind_int64(st, 1, before);
			sqlite3_bind_int(st, 2, limit);
		}
		int src = sqlite3_step(st);
		if (src != SQLITE_DONE && src != SQLITE_ROW)
			rc = fail(s, src);
		else if (i == 2)
			*purged = sqlite3_changes(s->db);
		sqlite3_finalize(st);
	}
	if (rc == 0)
		rc = exec_stmt(s, q(s, Q_COMMIT));
	if (rc < 0) {
		*purged = 0;
		if (sqlite3_get_autocommit(s->db) == 0)
			exec_stmt(s, q(s, Q_ROLLBACK));
	}
	return rc;
}
