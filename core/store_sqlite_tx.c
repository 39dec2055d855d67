/*
 * store_sqlite_tx.c: the SQLite store's transactions (store_sqlite_int.h):
 * store_begin / commit / rollback, the batching of a worker's writes into one
 * transaction (store_flush), the busy waits on another writer's lock, and
 * WAL checkpoints.
 */
#include "store_sqlite_int.h"

#include <time.h>

/* How long a worker may wait on another writer's lock (workers of one
 * process hold it for one loop iteration, a few ms), and how long writes then
 * fail fast before the next try, so a lock held elsewhere stalls the loop at
 * most half the time while it lasts. */
#define STORE_BUSY_MS 1000
#define STORE_BACKOFF_MS 1000

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * A busy handler with a deadline (monotonic ms): polls the lock every
 * BUSY_POLL_US instead of SQLite's 1, 2, 5, 10 ms steps, so a writer that
 * waits on a short lock waits about as long as the lock is held.
 */
#define BUSY_POLL_US 100

static int busy_until(void *arg, int n)
{
	(void)n;
	const int64_t *deadline = arg;
	if (mono_ms() >= *deadline)
		return 0;
	struct timespec ts = { 0, BUSY_POLL_US * 1000L };
	nanosleep(&ts, NULL);
	return 1;
}

int sqlite_busy_default(void *arg, int n)
{
	struct store *s = arg;
	if (n == 0)
		s->busy_deadline = mono_ms() + STORE_BUSY_MS;
	return busy_until(&s->busy_deadline, n);
}

/*
 * In batching mode, opens the shared write transaction on first use. When
 * the store was locked or full a moment ago, fails at once for a short while
 * instead of waiting on the lock again, so the loop never stalls behind
 * another process's lock.
 */
int sqlite_ensure_tx(struct store *s)
{
	if (!s->batching || s->open)
		return 0;
	if (s->aborted)
		return -2;
	if (s->unavailable_until && mono_ms() < s->unavailable_until) {
		snprintf(s->err, sizeof s->err, "store unavailable (locked or full); retrying shortly");
		return -2;
	}
	int rc = exec_stmt(s, q(s, Q_BEGIN));
	if (rc == 0) {
		s->open = 1;
		s->unavailable_until = 0;
	} else if (rc == -2) {
		s->unavailable_until = mono_ms() + STORE_BACKOFF_MS;
	}
	return rc;
}

int sqlite_write_stmt(struct store *s, sqlite3_stmt *st)
{
	int rc = sqlite_ensure_tx(s);
	if (rc < 0) {
		sqlite3_reset(st);
		sqlite3_clear_bindings(st);
		return rc;
	}
	rc = exec_stmt(s, st);
	if (rc < 0 && s->open && sqlite3_get_autocommit(s->db)) {
		/* SQLite undid the whole transaction (disk full, I/O error): nothing
		 * of this batch may be written piecemeal in autocommit mode now. */
		s->open = 0;
		s->depth = 0;
		s->aborted = 1;
		s->unavailable_until = mono_ms() + STORE_BACKOFF_MS;
		rc = -2;
	}
	return rc;
}

int sqlite_exec_sql(struct store *s, const char *text)
{
	char *msg = NULL;
	int rc = sqlite3_exec(s->db, text, NULL, NULL, &msg);
	if (rc != SQLITE_OK) {
		snprintf(s->err, sizeof s->err, "%s", msg ? msg : sqlite3_errstr(rc));
		sqlite3_free(msg);
		return rc == SQLITE_BUSY || rc == SQLITE_FULL ? -2 : -1;
	}
	return 0;
}

int store_begin(struct store *s)
{
	if (s->batching) {
		int rc = sqlite_ensure_tx(s);
		if (rc == 0)
			rc = exec_stmt(s, q(s, Q_SAVEPOINT));
		if (rc == 0)
			s->depth++;
		return rc;
	}
	int rc = exec_stmt(s, q(s, Q_BEGIN));
	if (rc == 0)
		s->in_tx = 1;
	return rc;
}

int store_commit(struct store *s)
{
	if (s->batching) {
		if (s->depth <= 0)
			return 0;
		s->depth--;
		return exec_stmt(s, q(s, Q_RELEASE));
	}
	int rc = exec_stmt(s, q(s, Q_COMMIT));
	if (rc < 0) {
		store_rollback(s);
		return rc;
	}
	s->in_tx = 0;
	return 0;
}

void store_rollback(struct store *s)
{
	if (s->batching) {
		if (s->depth <= 0)
			return;
		s->depth--;
		exec_stmt(s, q(s, Q_ROLLBACK_TO));
		exec_stmt(s, q(s, Q_RELEASE));
		return;
	}
	if (sqlite3_get_autocommit(s->db) == 0)
		exec_stmt(s, q(s, Q_ROLLBACK));
	s->in_tx = 0;
}

int store_set_autocheckpoint(struct store *s, int on)
{
	return sqlite_exec_sql(s, on ? "PRAGMA wal_autocheckpoint=4000" : "PRAGMA wal_autocheckpoint=0");
}

/*
 * The WAL is written from its start again (no file growth: the kernel
 * neither allocates nor zeroes new blocks) once a checkpoint has copied every
 * frame back and a writer begins. Under steady writes a PASSIVE checkpoint
 * never catches up (new frames land while it copies), so once the WAL holds
 * WAL_RESTART_FRAMES a RESTART follows it: it holds the write lock while it
 * copies the few frames written since the PASSIVE one and syncs, then waits
 * for readers of the old WAL, for at most WAL_RESTART_WAIT_MS in all (it gives
 * up and tries at the next checkpoint rather than hold writers back).
 */
#define WAL_RESTART_FRAMES 4096
#define WAL_RESTART_WAIT_MS 20

/* Flushes the pages a checkpoint copied into the database file, and the
 * WAL frames written since, without holding any lock, so that the RESTART
 * that follows has little left to sync while writers wait. */
static void presync(struct store *s)
{
	sqlite3_file *f = NULL;
	if (sqlite3_file_control(s->db, "main", SQLITE_FCNTL_FILE_POINTER, &f) == SQLITE_OK &&
	    f && f->pMethods)
		f->pMethods->xSync(f, SQLITE_SYNC_NORMAL);
	f = NULL;
	if (sqlite3_file_control(s->db, "main", SQLITE_FCNTL_JOURNAL_POINTER, &f) == SQLITE_OK &&
	    f && f->pMethods)
		f->pMethods->xSync(f, SQLITE_SYNC_NORMAL);
}

int store_checkpoint(struct store *s, int *wal_frames, int *copied)
{
	int log = 0, ckpt = 0;
	int rc = sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &ckpt);
	if (rc == SQLITE_OK && log >= WAL_RESTART_FRAMES) {
		presync(s);
		int64_t deadline = mono_ms() + WAL_RESTART_WAIT_MS;
		sqlite3_busy_handler(s->db, busy_until, &deadline);
		rc = sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_RESTART, &log, &ckpt);
		sqlite3_busy_handler(s->db, sqlite_busy_default, s);
		if (rc == SQLITE_BUSY)
			rc = SQLITE_OK; /* a writer or reader was busy: next time */
	}
	if (wal_frames)
		*wal_frames = log;
	if (copied)
		*copied = ckpt;
	return rc == SQLITE_OK ? 0 : fail(s, rc);
}

void store_set_batching(struct store *s, int on)
{
	s->batching = on;
}

int store_pending(struct store *s)
{
	return s->open || s->aborted;
}

int store_flush(struct store *s)
{
	if (s->aborted) {
		s->aborted = 0;
		snprintf(s->err, sizeof s->err, "the batch was rolled back (store full or I/O error)");
		return -2;
	}
	if (!s->open)
		return 0;
	s->depth = 0;
	int rc = exec_stmt(s, q(s, Q_COMMIT));
	if (rc < 0 && sqlite3_get_autocommit(s->db) == 0)
		exec_stmt(s, q(s, Q_ROLLBACK));
	if (rc == -2)
		s->unavailable_until = mono_ms() + STORE_BACKOFF_MS;
	s->open = 0;
	return rc;
}
