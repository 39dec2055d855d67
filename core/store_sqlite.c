/*
 * store_sqlite.c: the job store on an embedded SQLite file (WAL mode).
 *
 * Every statement is prepared once per handle and reset right after use so
 * no read snapshot is held. Write transactions begin IMMEDIATE, so a writer
 * waits on the busy timeout instead of failing when it would upgrade.
 */
#define STORE_FN(name) sqlite_store_##name
#include "store_backend.h"
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SCHEMA_VERSION 5
/* How long a worker may wait on another writer's lock (workers of one
 * process hold it for one loop iteration, a few ms), and how long writes then
 * fail fast before the next try, so a lock held elsewhere stalls the loop at
 * most half the time while it lasts. */
#define STORE_BUSY_MS 1000
#define STORE_BACKOFF_MS 1000
/* Bytes of WAL kept on disk for reuse after a restart (see store_checkpoint). */
#define WAL_SIZE_LIMIT (64 * 1024 * 1024)

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

static const char *const sql[Q_COUNT] = {
	[Q_BEGIN] = "BEGIN IMMEDIATE",
	[Q_COMMIT] = "COMMIT",
	[Q_ROLLBACK] = "ROLLBACK",
	[Q_SAVEPOINT] = "SAVEPOINT sp",
	[Q_RELEASE] = "RELEASE sp",
	[Q_ROLLBACK_TO] = "ROLLBACK TO sp",
	[Q_META_GET] = "SELECT value FROM meta WHERE key=?1",
	[Q_META_SET] = "INSERT INTO meta(key,value) VALUES(?1,?2) "
		       "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
	[Q_JOB_INSERT] = "INSERT INTO jobs(" JOB_COLS ") VALUES(?1,?2,?3,?4,?5,?6,?7,?8,"
			 "?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21,?22,?23,?24)",
	[Q_JOB_GET] = "SELECT " JOB_COLS " FROM jobs WHERE id=?1",
	[Q_JOB_GET_C] = "SELECT " JOB_COLS " FROM jobs WHERE id=?1 AND customer=?2",
	[Q_JOB_UPDATE] = "UPDATE jobs SET target_idx=?5,provider=?6,model=?7,status=?8,"
			 "request_id=?9,output=?14,error_code=?15,error_message=?16,data=?17,"
			 "attempt=?18,polls=?19,updated_at=?21,completed_at=?22,"
			 "submit_deadline=?23,deadline=?24 WHERE id=?1",
	[Q_JOB_COUNT] = "SELECT count(*) FROM jobs",
	[Q_IDEM_GET] = "SELECT body_hash,job_id FROM idempotency WHERE customer=?1 AND key=?2",
	[Q_IDEM_PUT] = "INSERT INTO idempotency(customer,key,body_hash,job_id,created_at) "
		       "VALUES(?1,?2,?3,?4,?5)",
	[Q_WORK_ADD] = "INSERT INTO work(job_id,kind,ref,due_at,lease_owner,lease_until,tries) "
		       "VALUES(?1,?2,?3,?4,?5,?6,0)",
	[Q_WORK_CLAIM] = "UPDATE work SET lease_owner=?1, lease_until=?2 WHERE id IN "
			 "(SELECT id FROM work WHERE due_at<=?3 AND lease_until<=?3 "
			 "ORDER BY due_at LIMIT ?4) "
			 "RETURNING id,job_id,kind,ref,due_at,tries",
	[Q_WORK_DONE] = "DELETE FROM work WHERE id=?1",
	[Q_WORK_RESCHED] = "UPDATE work SET due_at=?2, lease_owner=NULL, lease_until=0, tries=?3 WHERE id=?1",
	[Q_WORK_BECOME] = "UPDATE work SET kind=?2, due_at=?3, lease_owner=NULL, lease_until=0, tries=0 WHERE id=?1",
	[Q_WORK_DROP_K] = "DELETE FROM work WHERE job_id=?1 AND kind=?2 AND id<>?3",
	[Q_WORK_DROP_ALL] = "DELETE FROM work WHERE job_id=?1 AND id<>?3 AND kind<>?2",
	[Q_WORK_NEXT] = "SELECT due_at FROM work WHERE lease_until<=?1 ORDER BY due_at LIMIT 1",
	[Q_WORK_RELEASE] = "UPDATE work SET lease_owner=NULL, lease_until=0 "
			   "WHERE lease_owner=?1 OR lease_owner=?1||'#slot'",
	[Q_WORK_RELEASE_P] = "UPDATE work SET lease_owner=NULL, lease_until=0 "
			     "WHERE substr(lease_owner,1,length(?1))=?1",
	[Q_WORK_OWNERS] = "SELECT DISTINCT lease_owner FROM work WHERE lease_owner IS NOT NULL",
	[Q_WORK_COUNT] = "SELECT count(*) FROM work WHERE kind=?1",
	[Q_QUEUE_STATS] = "SELECT COALESCE(SUM(lease_until<=?1 AND due_at<=?1),0),"
			  " COALESCE(SUM(lease_until>?1),0),"
			  " COALESCE(SUM(kind=2 AND lease_until<=?1 AND due_at>?1),0),"
			  " COALESCE(MIN(CASE WHEN lease_until<=?1 AND due_at<=?1 THEN due_at END),0),"
			  " (SELECT page_count*page_size FROM pragma_page_count(), pragma_page_size())"
			  " FROM work",
	[Q_DLV_INSERT] = "INSERT INTO deliveries(id,job_id,event,url,status,attempts,created_at,next_at) "
			 "VALUES(?1,?2,?3,?4,?5,?6,?7,?8)",
	[Q_DLV_GET] = "SELECT id,job_id,event,url,status,attempts,created_at,next_at "
		      "FROM deliveries WHERE id=?1",
	[Q_DLV_UPDATE] = "UPDATE deliveries SET status=?5,attempts=?6,next_at=?8 WHERE id=?1",
	[Q_ATT_INSERT] = "INSERT INTO attempts(delivery_id,job_id,at,status_code,latency_ms,error,script_version,body) "
			 "VALUES(?1,?2,?3,?4,?5,?6,?7,?8)",
	[Q_DLV_OF_JOB] = "SELECT id,event,url,status,attempts,created_at,next_at FROM deliveries "
			 "WHERE job_id=?1 ORDER BY created_at, id",
	[Q_ATT_OF_DLV] = "SELECT at,status_code,latency_ms,error,script_version,body FROM attempts "
			 "WHERE delivery_id=?1 ORDER BY id",
	[Q_CB_INSERT] = "INSERT INTO callbacks(job_id,provider,at,outcome,body) VALUES(?1,?2,?3,?4,?5)",
	[Q_EV_ADD] = "INSERT INTO events(job_id,at,kind,detail) VALUES(?1,?2,?3,?4)",
	[Q_EV_LIST] = "SELECT at,kind,detail FROM events WHERE job_id=?1 ORDER BY id",
	/* A provider's load: ?1 provider, ?2 now, ?3 row id, ?4 its due_at.
	 * Column 0: in flight (poll rows, and submit rows running with a slot);
	 * column 1: submits waiting ahead of row ?3 (due, not running). */
	[Q_SLOT_COUNT] = "SELECT "
		"coalesce(sum(w.kind=2 OR (w.id<>?3 AND coalesce(w.lease_owner,'') LIKE '%#slot' "
		"AND w.lease_until>?2)),0), "
		"coalesce(sum(w.kind=1 AND w.id<>?3 AND w.due_at<=?2 "
		"AND NOT (coalesce(w.lease_owner,'') LIKE '%#slot' AND w.lease_until>?2) "
		"AND (w.due_at<?4 OR (w.due_at=?4 AND w.id<?3))),0) "
		"FROM work w JOIN jobs j ON j.id=w.job_id WHERE w.kind IN (1,2) AND j.provider=?1",
	[Q_SLOT_TAKE] = "UPDATE work SET lease_owner=coalesce(lease_owner,'')||'#slot' "
			"WHERE id=?1 AND coalesce(lease_owner,'') NOT LIKE '%#slot'",
	[Q_SLOT_HOLD] = "UPDATE work SET lease_owner='cap-wait', lease_until=?2 WHERE id=?1",
	[Q_EV_COUNT] = "SELECT count(*) FROM events WHERE job_id=?1 AND kind=?2",
	[Q_WORK_RENEW] = "UPDATE work SET lease_until=?2 WHERE id=?3 AND lease_owner=?1 AND lease_until>0",
};

static const char schema_v1[] =
	"CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;"
	"CREATE TABLE jobs("
	" id TEXT PRIMARY KEY, customer TEXT NOT NULL, model_id TEXT NOT NULL,"
	" targets TEXT NOT NULL, target_idx INTEGER NOT NULL DEFAULT 0,"
	" provider TEXT, model TEXT, status INTEGER NOT NULL,"
	" request_id TEXT, track_id TEXT, input TEXT NOT NULL, webhook_url TEXT, hook TEXT,"
	" output TEXT, error_code TEXT, error_message TEXT, data TEXT,"
	" attempt INTEGER NOT NULL DEFAULT 0, polls INTEGER NOT NULL DEFAULT 0,"
	" created_at INTEGER NOT NULL, updated_at INTEGER, completed_at INTEGER,"
	" submit_deadline INTEGER, deadline INTEGER) WITHOUT ROWID;"
	"CREATE INDEX jobs_customer ON jobs(customer, id);"
	"CREATE TABLE work(id INTEGER PRIMARY KEY, job_id TEXT NOT NULL, kind INTEGER NOT NULL,"
	" ref TEXT, due_at INTEGER NOT NULL, lease_owner TEXT, lease_until INTEGER NOT NULL DEFAULT 0,"
	" tries INTEGER NOT NULL DEFAULT 0);"
	"CREATE INDEX work_due ON work(due_at);"
	"CREATE INDEX work_job ON work(job_id);"
	"CREATE TABLE deliveries(id TEXT PRIMARY KEY, job_id TEXT NOT NULL, event TEXT NOT NULL,"
	" url TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
	" created_at INTEGER, next_at INTEGER) WITHOUT ROWID;"
	"CREATE INDEX deliveries_job ON deliveries(job_id);"
	"CREATE TABLE attempts(id INTEGER PRIMARY KEY, delivery_id TEXT NOT NULL, job_id TEXT NOT NULL,"
	" at INTEGER, status_code INTEGER, latency_ms REAL, error TEXT, script_version TEXT);"
	"CREATE INDEX attempts_delivery ON attempts(delivery_id);"
	"CREATE TABLE idempotency(customer TEXT NOT NULL, key TEXT NOT NULL, body_hash TEXT NOT NULL,"
	" job_id TEXT NOT NULL, created_at INTEGER, PRIMARY KEY(customer, key)) WITHOUT ROWID;"
	"CREATE TABLE callbacks(id INTEGER PRIMARY KEY, job_id TEXT, provider TEXT, at INTEGER,"
	" outcome TEXT, body TEXT);"
	"CREATE INDEX callbacks_job ON callbacks(job_id);"
	"CREATE TABLE events(id INTEGER PRIMARY KEY, job_id TEXT NOT NULL, at INTEGER,"
	" kind TEXT, detail TEXT);"
	"CREATE INDEX events_job ON events(job_id);";

/* Retention (store_purge) finds finished jobs by completion time. */
static const char schema_v2[] =
	"CREATE INDEX jobs_completed ON jobs(completed_at) WHERE completed_at IS NOT NULL;";

/* Migrations: migrations[v] brings a store at version v to v+1. */
/* v3: the body each delivery attempt sent. */
static const char schema_v3[] = "ALTER TABLE attempts ADD COLUMN body TEXT;";

/* v4: customers added with `genrelay customers add` (API key hashed). */
static const char schema_v4[] =
	"CREATE TABLE customers(name TEXT PRIMARY KEY, key_sha256 TEXT NOT NULL UNIQUE,"
	" webhook_secret TEXT, hook TEXT, webhook_url TEXT, created_at INTEGER,"
	" updated_at INTEGER) WITHOUT ROWID;";

/* v5: the cost of each ended job that has one (GET /v1/usage, budgets). */
static const char schema_v5[] =
	"CREATE TABLE usage(job_id TEXT PRIMARY KEY, customer TEXT NOT NULL, provider TEXT,"
	" model TEXT, amount REAL NOT NULL, unit TEXT NOT NULL, source TEXT, at INTEGER NOT NULL);"
	"CREATE INDEX usage_customer_at ON usage(customer, at);";

static const char *const migrations[SCHEMA_VERSION] = { schema_v1, schema_v2, schema_v3, schema_v4, schema_v5 };

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

int store_schema_version(void)
{
	return SCHEMA_VERSION;
}

const char *store_errmsg(struct store *s)
{
	return s->err;
}

static int fail(struct store *s, int rc)
{
	snprintf(s->err, sizeof s->err, "%s", sqlite3_errmsg(s->db));
	if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED || rc == SQLITE_FULL ||
	    rc == SQLITE_IOERR || (rc & 0xff) == SQLITE_IOERR || rc == SQLITE_READONLY)
		return -2;
	return -1;
}

static sqlite3_stmt *q(struct store *s, int i)
{
	sqlite3_stmt *st = s->st[i];
	if (!st && sqlite3_prepare_v3(s->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT,
				      &s->st[i], NULL) != SQLITE_OK)
		return NULL;
	return s->st[i];
}

static void bind_text(sqlite3_stmt *st, int i, const char *v)
{
	if (v)
		sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, i);
}

/* Steps a statement that returns no row, then resets it. */
static int exec_stmt(struct store *s, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);
	int ret = rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : fail(s, rc);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return ret;
}

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

static int busy_default(void *arg, int n)
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
static int ensure_tx(struct store *s)
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

static int write_stmt(struct store *s, sqlite3_stmt *st)
{
	int rc = ensure_tx(s);
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

static int exec_sql(struct store *s, const char *text)
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

static int migrate(struct store *s, char *err, size_t errlen)
{
	int version = 0;
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
		goto bad;
	if (sqlite3_step(st) == SQLITE_ROW)
		version = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	if (version > SCHEMA_VERSION) {
		snprintf(err, errlen, "store schema version %d is newer than this build (%d)",
			 version, SCHEMA_VERSION);
		return -1;
	}
	while (version < SCHEMA_VERSION) {
		char pragma[64];
		snprintf(pragma, sizeof pragma, "PRAGMA user_version=%d", version + 1);
		if (exec_sql(s, "BEGIN IMMEDIATE") < 0)
			goto bad;
		if (exec_sql(s, migrations[version]) < 0 || exec_sql(s, pragma) < 0 ||
		    exec_sql(s, "COMMIT") < 0) {
			exec_sql(s, "ROLLBACK");
			goto bad;
		}
		version++;
	}
	return 0;
bad:
	snprintf(err, errlen, "store migration failed: %s", s->err[0] ? s->err : sqlite3_errmsg(s->db));
	return -1;
}

/*
 * Store files are the owner's only: the database file is created 0600
 * before SQLite opens it (an O_CREAT with that mode rather than a umask
 * around the open: umask is per process and other threads may create files
 * meanwhile), and SQLite gives the -wal and -shm files it creates the
 * database file's mode.
 */
static int create_private(const char *path, char *err, size_t errlen)
{
	if (strcmp(path, ":memory:") == 0)
		return 0;
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		if (errno == EEXIST)
			return 0;
		snprintf(err, errlen, "store: cannot create %s: %s", path, strerror(errno));
		return -1;
	}
	close(fd);
	return 0;
}

#define STORE_OTHERS_RW (S_IRGRP | S_IWGRP | S_IROTH | S_IWOTH)

int store_check_permissions(const char *spec, int allow_insecure, char *err, size_t errlen)
{
	struct stat st;
	char side[4096];
	if (strncmp(spec, "sqlite:", 7) != 0)
		return 0;
	const char *path = spec + 7;
	if (stat(path, &st) < 0)
		return 0; /* created 0600 by store_open */
	if ((st.st_mode & STORE_OTHERS_RW) && !allow_insecure) {
		snprintf(err, errlen,
			 "store: %s is readable or writable by group or others (mode %04o); it holds "
			 "the jobs and the server secret that signs callback URLs. Fix: chmod 600 "
			 "%s %s-wal %s-shm, or set store_insecure_permissions = true",
			 path, (unsigned)(st.st_mode & 07777), path, path, path);
		return -1;
	}
	/* -wal and -shm left by an older build or another tool: no wider than
	 * the database file. */
	static const char *const ext[] = { "-wal", "-shm", "-journal" };
	for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++) {
		struct stat ss;
		snprintf(side, sizeof side, "%s%s", path, ext[i]);
		if (stat(side, &ss) < 0 || !(ss.st_mode & ~st.st_mode & 0777))
			continue;
		if (chmod(side, st.st_mode & 0777) < 0) {
			snprintf(err, errlen, "store: %s has mode %04o, wider than %s, and chmod "
				 "failed: %s", side, (unsigned)(ss.st_mode & 07777), path, strerror(errno));
			return -1;
		}
	}
	return 0;
}

static const struct store_ops sqlite_ops;

struct store *store_open(const char *spec, int fsync, char *err, size_t errlen)
{
	if (strncmp(spec, "sqlite:", 7) != 0) {
		snprintf(err, errlen, "store: unsupported store '%s' (want sqlite:PATH)", spec);
		return NULL;
	}
	if (create_private(spec + 7, err, errlen) < 0)
		return NULL;
	struct store *s = calloc(1, sizeof *s);
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->ops = &sqlite_ops;
	int rc = sqlite3_open_v2(spec + 7, &s->db,
				 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
				 NULL);
	if (rc != SQLITE_OK) {
		snprintf(err, errlen, "store: cannot open %s: %s", spec + 7,
			 s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
		store_close(s);
		return NULL;
	}
	sqlite3_busy_handler(s->db, busy_default, s);
	/* journal_size_limit: a WAL that grew past it (readers held a restart
	 * back) is cut back to it when it restarts; below it, it is kept and
	 * overwritten in place. */
	char pragmas[320];
	snprintf(pragmas, sizeof pragmas,
		 "PRAGMA page_size=4096; PRAGMA journal_mode=WAL; PRAGMA synchronous=%s; PRAGMA foreign_keys=OFF;"
		 "PRAGMA cache_size=-24576; PRAGMA temp_store=MEMORY; PRAGMA wal_autocheckpoint=%d;"
		 "PRAGMA journal_size_limit=%d;",
		 fsync ? "FULL" : "NORMAL", 4000, WAL_SIZE_LIMIT);
	if (exec_sql(s, pragmas) < 0 || migrate(s, err, errlen) < 0) {
		if (!err[0] || strncmp(err, "store", 5) != 0)
			snprintf(err, errlen, "store: %s", s->err);
		store_close(s);
		return NULL;
	}
	return s;
}

int store_set_max_size(struct store *s, long long max_bytes)
{
	char pragma[96];
	if (max_bytes <= 0)
		return 0;
	long long pages = max_bytes / 4096;
	snprintf(pragma, sizeof pragma, "PRAGMA max_page_count=%lld", pages < 16 ? 16 : pages);
	return exec_sql(s, pragma);
}

void store_close(struct store *s)
{
	if (!s)
		return;
	for (int i = 0; i < Q_COUNT; i++)
		sqlite3_finalize(s->st[i]);
	sqlite3_close(s->db);
	free(s);
}

int store_begin(struct store *s)
{
	if (s->batching) {
		int rc = ensure_tx(s);
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
	return exec_sql(s, on ? "PRAGMA wal_autocheckpoint=4000" : "PRAGMA wal_autocheckpoint=0");
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
		sqlite3_busy_handler(s->db, busy_default, s);
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

int store_meta_get(struct store *s, const char *key, char *out, size_t outlen)
{
	sqlite3_stmt *st = q(s, Q_META_GET);
	bind_text(st, 1, key);
	int rc = sqlite3_step(st), ret = 1;
	if (rc == SQLITE_ROW) {
		snprintf(out, outlen, "%s", (const char *)sqlite3_column_text(st, 0));
		ret = 0;
	} else if (rc != SQLITE_DONE) {
		ret = fail(s, rc);
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return ret;
}

int store_meta_set(struct store *s, const char *key, const char *value)
{
	sqlite3_stmt *st = q(s, Q_META_SET);
	bind_text(st, 1, key);
	bind_text(st, 2, value);
	return write_stmt(s, st);
}

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
	return write_stmt(s, st);
}

int store_job_update(struct store *s, const struct job *j)
{
	sqlite3_stmt *st = q(s, Q_JOB_UPDATE);
	bind_job(st, j);
	return write_stmt(s, st);
}

static char *col_dup(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	return t ? strdup((const char *)t) : NULL;
}

static void read_job(sqlite3_stmt *st, struct job *j)
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
		read_job(st, j);
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
		read_job(st, &j);
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

static int64_t count_query(struct store *s, int qi, int kind)
{
	sqlite3_stmt *st = q(s, qi);
	if (kind)
		sqlite3_bind_int(st, 1, kind);
	int64_t n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return n;
}

int64_t store_job_count(struct store *s)
{
	return count_query(s, Q_JOB_COUNT, 0);
}

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
	return write_stmt(s, st);
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
	int rc = write_stmt(s, st);
	if (rc == 0 && id)
		*id = sqlite3_last_insert_rowid(s->db);
	return rc;
}

int store_work_claim(struct store *s, const char *owner, int64_t now,
		     int64_t lease_ms, struct work *out, size_t max, size_t *n)
{
	*n = 0;
	int trc = ensure_tx(s);
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
	return write_stmt(s, st);
}

int store_work_reschedule(struct store *s, int64_t id, int64_t due_at, int tries)
{
	sqlite3_stmt *st = q(s, Q_WORK_RESCHED);
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, due_at);
	sqlite3_bind_int(st, 3, tries);
	return write_stmt(s, st);
}

int store_work_become(struct store *s, int64_t id, enum work_kind kind, int64_t due_at)
{
	sqlite3_stmt *st = q(s, Q_WORK_BECOME);
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int(st, 2, (int)kind);
	sqlite3_bind_int64(st, 3, due_at);
	return write_stmt(s, st);
}

int store_work_drop(struct store *s, const char *job_id, enum work_kind kind,
		    int64_t keep_id)
{
	/* kind 0 drops every kind except deliveries, which outlive the job's end. */
	sqlite3_stmt *st = q(s, kind ? Q_WORK_DROP_K : Q_WORK_DROP_ALL);
	bind_text(st, 1, job_id);
	sqlite3_bind_int(st, 2, kind ? (int)kind : WORK_DELIVER);
	sqlite3_bind_int64(st, 3, keep_id);
	return write_stmt(s, st);
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
	return write_stmt(s, st);
}

int store_work_release_prefix(struct store *s, const char *prefix)
{
	sqlite3_stmt *st = q(s, Q_WORK_RELEASE_P);
	bind_text(st, 1, prefix);
	return write_stmt(s, st);
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
	return write_stmt(s, st);
}

int store_delivery_update(struct store *s, const struct delivery *d)
{
	sqlite3_stmt *st = q(s, Q_DLV_UPDATE);
	bind_delivery(st, d);
	return write_stmt(s, st);
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
	return write_stmt(s, st);
}

static json_t *col_json_str(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	return t ? json_string((const char *)t) : json_null();
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
	return write_stmt(s, st);
}

int store_event_add(struct store *s, const char *job_id, int64_t at,
		    const char *kind, const char *detail)
{
	sqlite3_stmt *st = q(s, Q_EV_ADD);
	bind_text(st, 1, job_id);
	sqlite3_bind_int64(st, 2, at);
	bind_text(st, 3, kind);
	bind_text(st, 4, detail);
	return write_stmt(s, st);
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

int store_work_take_slot(struct store *s, int64_t id, const char *provider, int64_t due_at,
			 int64_t now, long cap, int64_t hold_ms)
{
	int rc = ensure_tx(s);
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
	ret = write_stmt(s, st);
	return ret < 0 ? ret : admit;
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
		read_job(st, &j);
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
int store_work_renew(struct store *s, const char *owner, const int64_t *ids, size_t n,
		     int64_t lease_until)
{
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		sqlite3_stmt *st = q(s, Q_WORK_RENEW);
		bind_text(st, 1, owner);
		sqlite3_bind_int64(st, 2, lease_until);
		sqlite3_bind_int64(st, 3, ids[i]);
		rc = write_stmt(s, st);
	}
	return rc;
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

/* Runs a one-off write (prepared, stepped, finalized): 0 with *changes, or <0. */
static int write_once(struct store *s, sqlite3_stmt *st, int *changes)
{
	int rc = write_stmt(s, st);
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

static const struct store_ops sqlite_ops = { STORE_OPS_INIT("sqlite") };
