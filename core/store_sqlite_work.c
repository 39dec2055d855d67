/*
 * store_sqlite_work.c: the SQLite store's work rows (store_sqlite_int.h):
 * scheduling, claims and their leases, provider slots, queue counts.
 */
#include "store_sqlite_int.h"

int store_queue_stats(struct store *s, int64_t now, struct store_queue *qs)
{
	sqlite3_stmt *st = q(s, Q_QUEUE_STATS);
	sqlite3_bind_int64(st, 1, now);
	int rc = sqlite3_step(st), ret = 0;
	if (rc == SQLITE_ROW) {
		qs->due = sqlite3_column_int64(st, 0);
		qs->leased = sqlite3_column_int64(st, 1);
		qs->waiting = sqlite3_column_int64(st, 2);
		qs->oldest_due_at = sqlite3_column_int64(st, 3);
		qs->size_bytes = sqlite3_column_int64(st, 4);
	} else {
		ret = fail(s, rc);
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return ret;
}

int64_t store_work_count(struct store *s, enum work_kind kind)
{
	return count_query(s, Q_WORK_COUNT, (int)kind);
}

int store_work_add(struct store *s, const char *job_id, enum work_kind kind,
		   const char *ref, int64_t due_at, const char *owner,
		   int64_t lease_until, int64_t *id)
{
	sqlite3_stmt *st = q(s, Q_WORK_ADD);
	bind_text(st, 1, job_id);
	sqlite3_bind_int(st, 2, (int)kind);
	bind_text(st, 3, ref);
	sqlite3_bind_int64(st, 4, due_at);
	bind_text(st, 5, owner);
	sqlite3_bind_int64(st, 6, owner ? lease_until : 0);
	int rc = sqlite_write_stmt(s, st);
	if (rc == 0 && id)
		*id = sqlite3_last_insert_rowid(s->db);
	return rc;
}

int store_work_claim(struct store *s, const char *owner, int64_t now,
		     int64_t lease_ms, struct work *out, size_t max, size_t *n)
{
	*n = 0;
	int trc = sqlite_ensure_tx(s);
	if (trc < 0)
		return trc;
	sqlite3_stmt *st = q(s, Q_WORK_CLAIM);
	bind_text(st, 1, owner);
	sqlite3_bind_int64(st, 2, now + lease_ms);
	sqlite3_bind_int64(st, 3, now);
	sqlite3_bind_int64(st, 4, (sqlite3_int64)max);
	*n = 0;
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW && *n < max) {
		struct work *w = &out[(*n)++];
		memset(w, 0, sizeof *w);
		w->id = sqlite3_column_int64(st, 0);
		snprintf(w->job_id, sizeof w->job_id, "%s", (const char *)sqlite3_column_text(st, 1));
		w->kind = (enum work_kind)sqlite3_column_int(st, 2);
		const unsigned char *ref = sqlite3_column_text(st, 3);
		snprintf(w->ref, sizeof w->ref, "%s", ref ? (const char *)ref : "");
		w->due_at = sqlite3_column_int64(st, 4);
		w->tries = sqlite3_column_int(st, 5);
	}
	int ret = rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : fail(s, rc);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return ret;
}

int store_work_done(struct store *s, int64_t id)
{
	sqlite3_stmt *st = q(s, Q_WORK_DONE);
	sqlite3_bind_int64(st, 1, id);
	return sqlite_write_stmt(s, st);
}

int store_work_reschedule(struct store *s, int64_t id, int64_t due_at, int tries)
{
	sqlite3_stmt *st = q(s, Q_WORK_RESCHED);
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, due_at);
	sqlite3_bind_int(st, 3, tries);
	return sqlite_write_stmt(s, st);
}

int store_work_become(struct store *s, int64_t id, enum work_kind kind, int64_t due_at)
{
	sqlite3_stmt *st = q(s, Q_WORK_BECOME);
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int(st, 2, (int)kind);
	sqlite3_bind_int64(st, 3, due_at);
	return sqlite_write_stmt(s, st);
}

int store_work_drop(struct store *s, const char *job_id, enum work_kind kind,
		    int64_t keep_id)
{
	/* kind 0 drops every kind except deliveries, which outlive the job's end. */
	sqlite3_stmt *st = q(s, kind ? Q_WORK_DROP_K : Q_WORK_DROP_ALL);
	bind_text(st, 1, job_id);
	sqlite3_bind_int(st, 2, kind ? (int)kind : WORK_DELIVER);
	sqlite3_bind_int64(st, 3, keep_id);
	return sqlite_write_stmt(s, st);
}

int store_work_next_due(struct store *s, int64_t now, int64_t *due)
{
	sqlite3_stmt *st = q(s, Q_WORK_NEXT);
	sqlite3_bind_int64(st, 1, now);
	int rc = sqlite3_step(st), ret = 1;
	if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) {
		*due = sqlite3_column_int64(st, 0);
		ret = 0;
	} else if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		ret = fail(s, rc);
	}
	sqlite3_reset(st);
	return ret;
}

int store_work_release(struct store *s, const char *owner)
{
	sqlite3_stmt *st = q(s, Q_WORK_RELEASE);
	bind_text(st, 1, owner);
	return sqlite_write_stmt(s, st);
}

int store_work_release_prefix(struct store *s, const char *prefix)
{
	sqlite3_stmt *st = q(s, Q_WORK_RELEASE_P);
	bind_text(st, 1, prefix);
	return sqlite_write_stmt(s, st);
}

json_t *store_work_owners(struct store *s)
{
	sqlite3_stmt *st = q(s, Q_WORK_OWNERS);
	json_t *a = json_array();
	while (sqlite3_step(st) == SQLITE_ROW)
		json_array_append_new(a, json_string((const char *)sqlite3_column_text(st, 0)));
	sqlite3_reset(st);
	return a;
}

int store_work_take_slot(struct store *s, int64_t id, const char *provider, int64_t due_at,
			 int64_t now, long cap, int64_t hold_ms)
{
	int rc = sqlite_ensure_tx(s);
	if (rc < 0)
		return rc;
	sqlite3_stmt *st = q(s, Q_SLOT_COUNT);
	bind_text(st, 1, provider);
	sqlite3_bind_int64(st, 2, now);
	sqlite3_bind_int64(st, 3, id);
	sqlite3_bind_int64(st, 4, due_at);
	rc = sqlite3_step(st);
	int64_t inflight = 0, ahead = 0;
	if (rc == SQLITE_ROW) {
		inflight = sqlite3_column_int64(st, 0);
		ahead = sqlite3_column_int64(st, 1);
	}
	int ret = rc == SQLITE_ROW ? 0 : fail(s, rc);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (ret < 0)
		return ret;
	int admit = inflight + ahead < (int64_t)cap;
	st = q(s, admit ? Q_SLOT_TAKE : Q_SLOT_HOLD);
	sqlite3_bind_int64(st, 1, id);
	if (!admit) {
		int64_t place = 1 + ahead / (cap > 0 ? cap : 1);
		sqlite3_bind_int64(st, 2, now + hold_ms * (place > 20 ? 20 : place));
	}
	ret = sqlite_write_stmt(s, st);
	return ret < 0 ? ret : admit;
}

int store_work_renew(struct store *s, const char *owner, const int64_t *ids, size_t n,
		     int64_t lease_until)
{
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		sqlite3_stmt *st = q(s, Q_WORK_RENEW);
		bind_text(st, 1, owner);
		sqlite3_bind_int64(st, 2, lease_until);
		sqlite3_bind_int64(st, 3, ids[i]);
		rc = sqlite_write_stmt(s, st);
	}
	return rc;
}
