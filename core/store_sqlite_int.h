/*
 * store_sqlite_int.h: private to the SQLite store (store_sqlite*.c): the
 * handle, the statements' indexes and the prepared-statement cache, and the
 * helpers the store's files share. The files are layered, each calling only
 * the ones below it (tools/layers checks it on the built objects):
 *
 *   store_sqlite.c         open, pragmas, permissions, close, errors, the
 *                          ops table (so it calls every file below)
 *   store_sqlite_views.c   deliveries and attempts, the API's and the
 *                          dashboard's listings, stats, usage, customers
 *   store_sqlite_jobs.c    jobs, idempotency keys, events, callback records,
 *                          retention (store_purge)
 *   store_sqlite_work.c    work rows: claims, leases, provider slots
 *   store_sqlite_schema.c  the schema, its migrations and the meta table
 *   store_sqlite_tx.c      transactions, batching, busy waits, checkpoints
 *   store_sqlite_stmt.c    the statements prepared once per handle
 *
 * Every statement is prepared once per handle and reset right after use so
 * no read snapshot is held. Write transactions begin IMMEDIATE, so a writer
 * waits on the busy timeout instead of failing when it would upgrade.
 */
#ifndef GENRELAY_STORE_SQLITE_INT_H
#define GENRELAY_STORE_SQLITE_INT_H

#define STORE_FN(name) sqlite_store_##name
#include "store_backend.h"
#include "store.h"

#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
	Q_BEGIN, Q_COMMIT, Q_ROLLBACK, Q_SAVEPOINT, Q_RELEASE, Q_ROLLBACK_TO,
	Q_META_GET, Q_META_SET,
	Q_JOB_INSERT, Q_JOB_GET, Q_JOB_GET_C, Q_JOB_UPDATE, Q_JOB_COUNT,
	Q_IDEM_GET, Q_IDEM_PUT,
	Q_WORK_ADD, Q_WORK_CLAIM, Q_WORK_DONE, Q_WORK_RESCHED, Q_WORK_BECOME, Q_WORK_DROP_K,
	Q_WORK_DROP_ALL, Q_WORK_NEXT, Q_WORK_RELEASE, Q_WORK_RELEASE_P,
	Q_WORK_OWNERS, Q_WORK_COUNT,
	Q_DLV_INSERT, Q_DLV_GET, Q_DLV_UPDATE, Q_ATT_INSERT, Q_DLV_OF_JOB,
	Q_ATT_OF_DLV, Q_CB_INSERT, Q_EV_ADD, Q_EV_LIST, Q_WORK_RENEW,
	Q_SLOT_COUNT, Q_SLOT_TAKE, Q_SLOT_HOLD, Q_EV_COUNT, Q_QUEUE_STATS,
	Q_COUNT
};

#define JOB_COLS "id,customer,model_id,targets,target_idx,provider,model,status," \
	"request_id,track_id,input,webhook_url,hook,output,error_code,error_message," \
	"data,attempt,polls,created_at,updated_at,completed_at,submit_deadline,deadline"

/* The statements' texts, by Q_ index (store_sqlite_stmt.c). */
extern const char *const sqlite_sql[Q_COUNT];

struct store {
	const struct store_ops *ops; /* first: store.c dispatches through it */
	sqlite3 *db;
	sqlite3_stmt *st[Q_COUNT];
	int in_tx;
	int batching; /* writes join one transaction, committed by store_flush */
	int open;     /* that transaction is open */
	int depth;    /* store_begin nesting (savepoints) inside it */
	int64_t unavailable_until; /* monotonic ms: writes fail fast until then */
	int64_t busy_deadline; /* monotonic ms: the current lock wait gives up then */
	int aborted;  /* SQLite rolled the shared transaction back (full, I/O): the
		       * rest of this batch fails and store_flush reports it */
	char err[256];
};

/* ---------- the prepared-statement cache (every file) ---------- */

static inline int fail(struct store *s, int rc)
{
	snprintf(s->err, sizeof s->err, "%s", sqlite3_errmsg(s->db));
	if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED || rc == SQLITE_FULL ||
	    rc == SQLITE_IOERR || (rc & 0xff) == SQLITE_IOERR || rc == SQLITE_READONLY)
		return -2;
	return -1;
}

static inline sqlite3_stmt *q(struct store *s, int i)
{
	sqlite3_stmt *st = s->st[i];
	if (!st && sqlite3_prepare_v3(s->db, sqlite_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
				      &s->st[i], NULL) != SQLITE_OK)
		return NULL;
	return s->st[i];
}

static inline void bind_text(sqlite3_stmt *st, int i, const char *v)
{
	if (v)
		sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, i);
}

/* Steps a statement that returns no row, then resets it. */
static inline int exec_stmt(struct store *s, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);
	int ret = rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : fail(s, rc);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return ret;
}

static inline char *col_dup(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	return t ? strdup((const char *)t) : NULL;
}

static inline json_t *col_json_str(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	return t ? json_string((const char *)t) : json_null();
}

static inline int64_t count_query(struct store *s, int qi, int kind)
{
	sqlite3_stmt *st = q(s, qi);
	if (kind)
		sqlite3_bind_int(st, 1, kind);
	int64_t n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return n;
}

/* ---------- store_sqlite_tx.c ---------- */

/* The handle's busy handler (arg: the store): waits up to STORE_BUSY_MS on
 * another writer's lock. */
int sqlite_busy_default(void *arg, int n);
/* In batching mode, opens the shared write transaction on first use; 0 or <0
 * (-2: locked or full, fails fast for a while). */
int sqlite_ensure_tx(struct store *s);
/* Steps a write statement (inside the batch's transaction when batching),
 * then resets it; 0 or <0. */
int sqlite_write_stmt(struct store *s, sqlite3_stmt *st);
/* Runs trusted SQL text (pragmas, migrations); 0, -1, or -2 (busy or full). */
int sqlite_exec_sql(struct store *s, const char *text);

/* ---------- store_sqlite_schema.c ---------- */

/* Brings the schema to SCHEMA_VERSION; 0, or -1 with err. */
int sqlite_migrate(struct store *s, char *err, size_t errlen);

/* ---------- store_sqlite_jobs.c ---------- */

/* Reads a row of JOB_COLS into *j (caller clears it with job_clear). */
void sqlite_read_job(sqlite3_stmt *st, struct job *j);

#endif
