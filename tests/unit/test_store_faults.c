/*
 * test_store_faults.c: the store (core/store.h) on the real SQLite backend
 * under injected faults, and the store contracts the other store tests do
 * not cover.
 *
 * Faults come from a VFS of this test's own that wraps the default one
 * ("unix") and is registered as the default before any store opens, so the
 * store is used exactly as the server uses it. Armed, the shim fails the
 * Nth write or sync (and, when persistent, every one after it) with the
 * code asked for, as a full disk or a failing device would.
 *
 * What must hold: a commit that fails leaves nothing half-written (a job and
 * its work row are both there or neither, also after a reopen that recovers
 * the WAL), the store reports the error and works again once the fault
 * clears; a lock held by another connection gives -2 ("busy", the caller
 * answers 503) within the busy timeout, not a hang; a full disk on insert is
 * an error while existing jobs stay readable. Then: two owners claiming at
 * once never hold the same work; an expired lease is claimable again;
 * idempotency keys.
 */
#include "check.h"
#include "store.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- the fault-injecting VFS ---------------------------------------------- */

enum fault_op { FAULT_WRITE, FAULT_SYNC };

static struct {
	int armed;
	enum fault_op op;
	int countdown;   /* calls of op still allowed before the first failure */
	int persistent;  /* keep failing after the first failure */
	int rc;          /* what the failing call returns */
	int fired;       /* failures injected since arming */
} fault;

static void fault_arm(enum fault_op op, int after, int rc, int persistent)
{
	fault.op = op;
	fault.countdown = after;
	fault.rc = rc;
	fault.persistent = persistent;
	fault.fired = 0;
	fault.armed = 1;
}

static void fault_clear(void)
{
	fault.armed = 0;
}

/* 1 when this call of op must fail. */
static int fault_hit(enum fault_op op)
{
	if (!fault.armed || fault.op != op)
		return 0;
	if (fault.countdown > 0) {
		fault.countdown--;
		return 0;
	}
	fault.fired++;
	if (!fault.persistent)
		fault.armed = 0;
	return 1;
}

struct shim_file {
	sqlite3_file base;
	sqlite3_file *real; /* the wrapped VFS's file, right after this struct */
};

static sqlite3_vfs *real_vfs;
static sqlite3_vfs shim_vfs;

#define REAL(f) (((struct shim_file *)(f))->real)

static int shim_close(sqlite3_file *f)
{
	return REAL(f)->pMethods->xClose(REAL(f));
}

static int shim_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off)
{
	return REAL(f)->pMethods->xRead(REAL(f), buf, n, off);
}

static int shim_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off)
{
	if (fault_hit(FAULT_WRITE))
		return fault.rc;
	return REAL(f)->pMethods->xWrite(REAL(f), buf, n, off);
}

static int shim_truncate(sqlite3_file *f, sqlite3_int64 size)
{
	return REAL(f)->pMethods->xTruncate(REAL(f), size);
}

static int shim_sync(sqlite3_file *f, int flags)
{
	if (fault_hit(FAULT_SYNC))
		return fault.rc;
	return REAL(f)->pMethods->xSync(REAL(f), flags);
}

static int shim_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
	return REAL(f)->pMethods->xFileSize(REAL(f), size);
}

static int shim_lock(sqlite3_file *f, int level)
{
	return REAL(f)->pMethods->xLock(REAL(f), level);
}

static int shim_unlock(sqlite3_file *f, int level)
{
	return REAL(f)->pMethods->xUnlock(REAL(f), level);
}

static int shim_check_reserved(sqlite3_file *f, int *out)
{
	return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}

static int shim_file_control(sqlite3_file *f, int op, void *arg)
{
	return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}

static int shim_sector_size(sqlite3_file *f)
{
	return REAL(f)->pMethods->xSectorSize(REAL(f));
}

static int shim_device_chars(sqlite3_file *f)
{
	return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}

static int shim_shm_map(sqlite3_file *f, int pg, int pgsz, int extend, void volatile **p)
{
	return REAL(f)->pMethods->xShmMap(REAL(f), pg, pgsz, extend, p);
}

static int shim_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
	return REAL(f)->pMethods->xShmLock(REAL(f), offset, n, flags);
}

static void shim_shm_barrier(sqlite3_file *f)
{
	REAL(f)->pMethods->xShmBarrier(REAL(f));
}

static int shim_shm_unmap(sqlite3_file *f, int delete_flag)
{
	return REAL(f)->pMethods->xShmUnmap(REAL(f), delete_flag);
}

static int shim_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp)
{
	return REAL(f)->pMethods->xFetch(REAL(f), off, n, pp);
}

static int shim_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
	return REAL(f)->pMethods->xUnfetch(REAL(f), off, p);
}

static const sqlite3_io_methods shim_io = {
	.iVersion = 3,
	.xClose = shim_close,
	.xRead = shim_read,
	.xWrite = shim_write,
	.xTruncate = shim_truncate,
	.xSync = shim_sync,
	.xFileSize = shim_file_size,
	.xLock = shim_lock,
	.xUnlock = shim_unlock,
	.xCheckReservedLock = shim_check_reserved,
	.xFileControl = shim_file_control,
	.xSectorSize = shim_sector_size,
	.xDeviceCharacteristics = shim_device_chars,
	.xShmMap = shim_shm_map,
	.xShmLock = shim_shm_lock,
	.xShmBarrier = shim_shm_barrier,
	.xShmUnmap = shim_shm_unmap,
	.xFetch = shim_fetch,
	.xUnfetch = shim_unfetch,
};

static int shim_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out_flags)
{
	(void)vfs;
	struct shim_file *sf = (struct shim_file *)f;
	sf->real = (sqlite3_file *)(sf + 1);
	int rc = real_vfs->xOpen(real_vfs, name, sf->real, flags, out_flags);
	/* SQLite calls xClose only when pMethods is set. */
	sf->base.pMethods = rc == SQLITE_OK && sf->real->pMethods ? &shim_io : NULL;
	return rc;
}

/* Makes the shim the default VFS; the real one (iVersion 3: shm and mmap)
 * does all the work. */
static int shim_install(void)
{
	real_vfs = sqlite3_vfs_find(NULL);
	if (!real_vfs)
		return -1;
	shim_vfs = *real_vfs;
	shim_vfs.zName = "genrelay-faults";
	shim_vfs.szOsFile = (int)sizeof(struct shim_file) + real_vfs->szOsFile;
	shim_vfs.xOpen = shim_open;
	return sqlite3_vfs_register(&shim_vfs, 1) == SQLITE_OK ? 0 : -1;
}

/* ---- helpers -------------------------------------------------------------- */

static char tmpdir[] = "/tmp/genrelay-store-faults-XXXXXX";

static void spec_of(char *spec, size_t n, const char *name)
{
	snprintf(spec, n, "sqlite:%s/%s", tmpdir, name);
}

static struct store *open_store(const char *spec, int fsync)
{
	char err[512] = "";
	struct store *s = store_open(spec, fsync, err, sizeof err);
	if (!s)
		fprintf(stderr, "    store_open %s: %s\n", spec, err);
	return s;
}

static void job_init(struct job *j, const char *id)
{
	memset(j, 0, sizeof *j);
	snprintf(j->id, sizeof j->id, "%s", id);
	j->customer = "acme";
	j->model_id = "fal-ai/flux/dev";
	j->targets = "[\"fal:fal-ai/flux/dev\"]";
	j->provider = "fal";
	j->model = "fal-ai/flux/dev";
	j->input = "{\"prompt\":\"a lighthouse at dusk, oil on canvas\"}";
	j->status = JOB_QUEUED;
	j->created_at = 1000;
	j->updated_at = 1000;
}

/* A job and its submit row in one transaction, as the API writes them.
 * Returns what the first failing call returned, or 0. */
static int insert_job_tx(struct store *s, const char *id)
{
	struct job j;
	job_init(&j, id);
	int rc = store_begin(s);
	if (rc < 0)
		return rc;
	int64_t wid;
	if ((rc = store_job_insert(s, &j)) < 0 ||
	    (rc = store_work_add(s, id, WORK_SUBMIT, NULL, 0, NULL, 0, &wid)) < 0) {
		store_rollback(s);
		return rc;
	}
	return store_commit(s);
}

static int has_job(struct store *s, const char *id)
{
	struct job j;
	int rc = store_job_get(s, id, NULL, &j);
	if (rc == 0)
		job_clear(&j);
	return rc == 0;
}

/* 1 when the job has a submit row (claimed here with a lease that expires at
 * once, so the row stays claimable). */
static int has_work(struct store *s, const char *id)
{
	struct work w[64];
	size_t n = 0;
	if (store_work_claim(s, "probe", 1LL << 40, 0, w, 64, &n) < 0)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (strcmp(w[i].job_id, id) == 0)
			return 1;
	return 0;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* ---- faults --------------------------------------------------------------- */

/*
 * A commit whose writes fail: nothing of it is there, neither on this
 * connection nor after a reopen that recovers the WAL; the store says why,
 * and the next commit works.
 */
static void test_failed_commit_atomic(int rc_injected, const char *what)
{
	char spec[300];
	spec_of(spec, sizeof spec, "commit.db");
	struct store *s = open_store(spec, 0);
	CHECK(s != NULL);
	if (!s)
		return;
	CHECK_EQ_INT(insert_job_tx(s, "job_before"), 0);

	fault_arm(FAULT_WRITE, 0, rc_injected, 1);
	int rc = insert_job_tx(s, "job_lost");
	fault_clear();
	CHECK(rc < 0);
	CHECK(fault.fired > 0);
	CHECK(store_errmsg(s)[0] != '\0');
	if (rc_injected == SQLITE_FULL) {
		CHECK_EQ_INT(rc, -2);
		CHECK(strstr(store_errmsg(s), "full") != NULL);
	} else {
		CHECK(strstr(store_errmsg(s), "I/O") != NULL);
	}
	CHECK_EQ_INT(has_job(s, "job_lost"), 0);
	CHECK_EQ_INT(has_work(s, "job_lost"), 0);
	CHECK_EQ_INT(has_job(s, "job_before"), 1);
	CHECK_EQ_INT(has_work(s, "job_before"), 1);

	/* The fault cleared: the store works again. */
	CHECK_EQ_INT(insert_job_tx(s, "job_after"), 0);
	CHECK_EQ_INT(has_job(s, "job_after"), 1);
	CHECK_EQ_INT(has_work(s, "job_after"), 1);
	store_close(s);

	s = open_store(spec, 0);
	CHECK(s != NULL);
	if (s) {
		CHECK_EQ_INT(has_job(s, "job_before"), 1);
		CHECK_EQ_INT(has_job(s, "job_after"), 1);
		CHECK_EQ_INT(has_job(s, "job_lost"), 0);
		CHECK_EQ_INT(has_work(s, "job_lost"), 0);
		CHECK_EQ_INT(store_job_count(s), 2);
		CHECK_EQ_INT(store_work_count(s, WORK_SUBMIT), 2);
		store_close(s);
	}
	char db[320];
	snprintf(db, sizeof db, "%s/commit.db", tmpdir);
	unlink(db);
	fprintf(stderr, "  failed commit (%s): atomic, reported, recovered\n", what);
}

/*
 * SQLite's own style of fault test: fail the Nth write (then every write)
 * for N = 0, 1, 2 ... of a transaction big enough to take many writes, until
 * N is past the last write and the commit succeeds. After each try and a
 * reopen, the jobs and their work rows are all there (the commit succeeded)
 * or none of them is; the jobs committed before are always there.
 */
static void test_fault_sweep(int fsync, enum fault_op op)
{
	char spec[300], db[320];
	spec_of(spec, sizeof spec, "sweep.db");
	snprintf(db, sizeof db, "%s/sweep.db", tmpdir);
	enum { PER_TX = 40 };
	int committed = 0, failures = 0;
	for (int after = 0; after < 200 && !committed; after++) {
		struct store *s = open_store(spec, fsync);
		CHECK(s != NULL);
		if (!s)
			return;
		if (after == 0)
			CHECK_EQ_INT(insert_job_tx(s, "job_base"), 0);
		fault_arm(op, after, op == FAULT_SYNC ? SQLITE_IOERR_FSYNC : SQLITE_IOERR_WRITE, 1);
		int rc = store_begin(s);
		for (int i = 0; rc == 0 && i < PER_TX; i++) {
			char id[48];
			snprintf(id, sizeof id, "job_sweep_%02d", i);
			struct job j;
			job_init(&j, id);
			int64_t wid;
			rc = store_job_insert(s, &j);
			if (rc == 0)
				rc = store_work_add(s, id, WORK_SUBMIT, NULL, 0, NULL, 0, &wid);
		}
		if (rc == 0)
			rc = store_commit(s);
		else
			store_rollback(s);
		int fired = fault.fired;
		fault_clear();
		if (rc == 0) {
			/* Past the last write: the fault never fired. */
			CHECK_EQ_INT(fired, 0);
			committed = 1;
		} else {
			failures++;
			CHECK(fired > 0);
			CHECK(store_errmsg(s)[0] != '\0');
		}
		store_close(s);

		s = open_store(spec, fsync);
		CHECK(s != NULL);
		if (!s)
			return;
		int64_t jobs = store_job_count(s);
		int64_t works = store_work_count(s, WORK_SUBMIT);
		CHECK_EQ_INT(has_job(s, "job_base"), 1);
		if (committed) {
			CHECK_EQ_INT(jobs, 1 + PER_TX);
			CHECK_EQ_INT(works, 1 + PER_TX);
		} else {
			if (jobs != 1 || works != 1)
				fprintf(stderr, "    fault after %d %s: %lld jobs, %lld work rows\n",
					after, op == FAULT_SYNC ? "syncs" : "writes",
					(long long)jobs, (long long)works);
			CHECK_EQ_INT(jobs, 1);
			CHECK_EQ_INT(works, 1);
		}
		store_close(s);
	}
	CHECK(committed);
	CHECK(failures > 0);
	fprintf(stderr, "  fault sweep (%s, fsync=%d): %d failed commits left nothing behind\n",
		op == FAULT_SYNC ? "sync" : "write", fsync, failures);
	char side[340];
	unlink(db);
	snprintf(side, sizeof side, "%s-wal", db);
	unlink(side);
	snprintf(side, sizeof side, "%s-shm", db);
	unlink(side);
}

/*
 * The server's batching mode: a batch whose commit fails is rolled back as a
 * whole and store_flush says so; writes fail fast for a moment after (so the
 * loop does not stall on a failing disk), then the store takes writes again.
 */
static void test_batch_fault(void)
{
	char spec[300];
	spec_of(spec, sizeof spec, "batch.db");
	struct store *s = open_store(spec, 0);
	CHECK(s != NULL);
	if (!s)
		return;
	CHECK_EQ_INT(insert_job_tx(s, "job_before"), 0);
	store_set_batching(s, 1);
	CHECK_EQ_INT(insert_job_tx(s, "job_a"), 0);  /* savepoints in the batch */
	CHECK_EQ_INT(insert_job_tx(s, "job_b"), 0);
	CHECK_EQ_INT(store_pending(s), 1);
	fault_arm(FAULT_WRITE, 0, SQLITE_FULL, 1);
	int rc = store_flush(s);
	fault_clear();
	CHECK_EQ_INT(rc, -2);
	CHECK(store_errmsg(s)[0] != '\0');
	CHECK_EQ_INT(store_pending(s), 0);
	store_set_batching(s, 0);
	CHECK_EQ_INT(has_job(s, "job_a"), 0);
	CHECK_EQ_INT(has_job(s, "job_b"), 0);
	CHECK_EQ_INT(has_work(s, "job_a"), 0);
	CHECK_EQ_INT(has_job(s, "job_before"), 1);
	store_set_batching(s, 1);

	/* Writes come back once the fault is gone: bounded wait, no timing in
	 * the verdict. */
	int ok = 0;
	for (int i = 0; i < 200 && !ok; i++) {
		rc = insert_job_tx(s, "job_c");
		if (rc == 0)
			rc = store_flush(s);
		else
			store_flush(s); /* drop what the failed try left */
		if (rc == 0)
			ok = 1;
		else
			sleep_ms(25);
	}
	CHECK(ok);
	store_set_batching(s, 0);
	CHECK_EQ_INT(has_job(s, "job_c"), 1);
	CHECK_EQ_INT(has_work(s, "job_c"), 1);
	store_close(s);
	char db[320];
	snprintf(db, sizeof db, "%s/batch.db", tmpdir);
	unlink(db);
}

/*
 * A write lock held by another connection (another process or tool on the
 * same file): a write gives -2 once the busy timeout runs out, never hangs;
 * reads go on (WAL); once the lock goes, writes work.
 */
static void test_busy_lock(void)
{
	char spec[300], db[320];
	spec_of(spec, sizeof spec, "busy.db");
	snprintf(db, sizeof db, "%s/busy.db", tmpdir);
	struct store *s = open_store(spec, 0);
	CHECK(s != NULL);
	if (!s)
		return;
	CHECK_EQ_INT(insert_job_tx(s, "job_before"), 0);

	sqlite3 *other = NULL;
	CHECK_EQ_INT(sqlite3_open_v2(db, &other, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	CHECK_EQ_INT(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);

	struct job j;
	job_init(&j, "job_locked");
	CHECK_EQ_INT(store_job_insert(s, &j), -2);
	CHECK(strstr(store_errmsg(s), "locked") != NULL);
	CHECK_EQ_INT(insert_job_tx(s, "job_locked"), -2);
	CHECK_EQ_INT(has_job(s, "job_before"), 1); /* readers are not blocked */
	CHECK_EQ_INT(has_job(s, "job_locked"), 0);

	/* Batching: the first write waits out the timeout, the next ones fail
	 * at once while the lock was seen a moment ago. */
	store_set_batching(s, 1);
	CHECK_EQ_INT(store_begin(s), -2);
	CHECK_EQ_INT(store_job_insert(s, &j), -2);
	CHECK(strstr(store_errmsg(s), "unavailable") != NULL);
	CHECK_EQ_INT(store_flush(s), 0); /* nothing was open */
	store_set_batching(s, 0);

	CHECK_EQ_INT(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(other);
	CHECK_EQ_INT(insert_job_tx(s, "job_locked"), 0);
	CHECK_EQ_INT(has_job(s, "job_locked"), 1);
	CHECK_EQ_INT(has_work(s, "job_locked"), 1);
	store_close(s);
	unlink(db);
}

/*
 * A full disk on insert (every write refused, as ENOSPC): the insert fails
 * with -2 and says so; the jobs already there stay readable (and listable);
 * once space is back, inserts work.
 */
static void test_disk_full_insert(void)
{
	char spec[300], db[320];
	spec_of(spec, sizeof spec, "full.db");
	snprintf(db, sizeof db, "%s/full.db", tmpdir);
	struct store *s = open_store(spec, 1);
	CHECK(s != NULL);
	if (!s)
		return;
	for (int i = 0; i < 5; i++) {
		char id[48];
		snprintf(id, sizeof id, "job_old_%d", i);
		CHECK_EQ_INT(insert_job_tx(s, id), 0);
	}
	fault_arm(FAULT_WRITE, 0, SQLITE_FULL, 1);
	struct job j;
	job_init(&j, "job_new");
	CHECK_EQ_INT(store_job_insert(s, &j), -2);
	CHECK(strstr(store_errmsg(s), "full") != NULL);
	CHECK_EQ_INT(store_idem_put(s, "acme", "k-full", "h", "job_new", 1000), -2);
	/* Still armed: reads need no write. */
	for (int i = 0; i < 5; i++) {
		char id[48];
		snprintf(id, sizeof id, "job_old_%d", i);
		CHECK_EQ_INT(has_job(s, id), 1);
	}
	CHECK_EQ_INT(has_job(s, "job_new"), 0);
	json_t *list = store_job_list(s, "acme", NULL, NULL, 10);
	CHECK(list != NULL);
	CHECK_EQ_INT(json_array_size(json_object_get(list, "data")), 5);
	json_decref(list);
	CHECK(fault.fired > 0);
	fault_clear();
	CHECK_EQ_INT(store_job_insert(s, &j), 0);
	CHECK_EQ_INT(has_job(s, "job_new"), 1);
	CHECK_EQ_INT(store_job_count(s), 6);
	store_close(s);
	unlink(db);
}

/* ---- contracts: leases and idempotency ------------------------------------ */

enum { CLAIM_ROWS = 2000 };

static pthread_barrier_t claim_start;

struct claimer {
	const char *spec;
	const char *owner;
	int64_t ids[CLAIM_ROWS];
	size_t n;
	int errors;
	int busy;
};

/* Claims in small batches until nothing unleased is left; keeps every id. */
static void *claim_all(void *arg)
{
	struct claimer *c = arg;
	struct store *s = open_store(c->spec, 0);
	if (!s) {
		c->errors++;
		pthread_barrier_wait(&claim_start);
		return NULL;
	}
	pthread_barrier_wait(&claim_start); /* both connections open: go */
	for (int round = 0; round < 10 * CLAIM_ROWS; round++) {
		struct work w[2];
		size_t n = 0;
		int rc = store_work_claim(s, c->owner, 10000, 60000, w, 2, &n);
		if (rc == -2) { /* the other claimer held the lock past the timeout */
			c->busy++;
			continue;
		}
		if (rc < 0) {
			c->errors++;
			break;
		}
		if (n == 0)
			break;
		for (size_t i = 0; i < n && c->n < CLAIM_ROWS; i++)
			c->ids[c->n++] = w[i].id;
	}
	store_close(s);
	return NULL;
}

/* Two connections taking turns on the same rows at the same instant: each
 * claim takes only rows no live lease holds. */
static void test_claims_alternate(void)
{
	char spec[300], db[320];
	spec_of(spec, sizeof spec, "turns.db");
	snprintf(db, sizeof db, "%s/turns.db", tmpdir);
	struct store *s1 = open_store(spec, 0), *s2 = open_store(spec, 0);
	CHECK(s1 != NULL && s2 != NULL);
	if (!s1 || !s2) {
		store_close(s1);
		store_close(s2);
		return;
	}
	for (int i = 0; i < 10; i++)
		CHECK_EQ_INT(store_work_add(s1, "job_t", WORK_POLL, NULL, i, NULL, 0, NULL), 0);
	int64_t got[10];
	size_t total = 0;
	struct store *turn[] = { s1, s2, s1, s2, s1 };
	const char *owner[] = { "a", "b", "a", "b", "a" };
	for (int t = 0; t < 5; t++) {
		struct work w[3];
		size_t n = 0;
		CHECK_EQ_INT(store_work_claim(turn[t], owner[t], 100, 1000, w, 3, &n), 0);
		CHECK_EQ_INT(n, t < 3 ? 3 : t == 3 ? 1 : 0);
		for (size_t i = 0; i < n && total < 10; i++) {
			for (size_t k = 0; k < total; k++)
				CHECK(got[k] != w[i].id);
			got[total++] = w[i].id;
		}
	}
	CHECK_EQ_INT(total, 10);
	store_close(s1);
	store_close(s2);
	unlink(db);
}

/* Two owners on two connections claim the same rows at once: every row goes
 * to exactly one of them. */
static void test_claims_exclusive(void)
{
	char spec[300], db[320];
	spec_of(spec, sizeof spec, "claims.db");
	snprintf(db, sizeof db, "%s/claims.db", tmpdir);
	struct store *s = open_store(spec, 0);
	CHECK(s != NULL);
	if (!s)
		return;
	CHECK_EQ_INT(store_begin(s), 0);
	for (int i = 0; i < CLAIM_ROWS; i++) {
		char id[48];
		snprintf(id, sizeof id, "job_%04d", i);
		CHECK_EQ_INT(store_work_add(s, id, WORK_POLL, NULL, i, NULL, 0, NULL), 0);
	}
	CHECK_EQ_INT(store_commit(s), 0);

	static struct claimer a, b;
	a = (struct claimer){ .spec = spec, .owner = "w-a" };
	b = (struct claimer){ .spec = spec, .owner = "w-b" };
	pthread_t ta, tb;
	CHECK_EQ_INT(pthread_barrier_init(&claim_start, NULL, 2), 0);
	CHECK_EQ_INT(pthread_create(&ta, NULL, claim_all, &a), 0);
	CHECK_EQ_INT(pthread_create(&tb, NULL, claim_all, &b), 0);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	pthread_barrier_destroy(&claim_start);
	CHECK_EQ_INT(a.errors, 0);
	CHECK_EQ_INT(b.errors, 0);
	CHECK_EQ_INT(a.n + b.n, CLAIM_ROWS);

	static unsigned char seen[CLAIM_ROWS + 1];
	memset(seen, 0, sizeof seen);
	int dup = 0, bad = 0;
	struct claimer *cs[] = { &a, &b };
	int64_t first = -1;
	for (int k = 0; k < 2; k++)
		for (size_t i = 0; i < cs[k]->n; i++)
			if (first < 0 || cs[k]->ids[i] < first)
				first = cs[k]->ids[i];
	for (int k = 0; k < 2; k++)
		for (size_t i = 0; i < cs[k]->n; i++) {
			int64_t off = cs[k]->ids[i] - first;
			if (off < 0 || off >= CLAIM_ROWS) {
				bad++;
				continue;
			}
			if (seen[off]++)
				dup++;
		}
	CHECK_EQ_INT(dup, 0);
	CHECK_EQ_INT(bad, 0);
	fprintf(stderr, "  claims: w-a %zu, w-b %zu rows, no row twice (%d+%d busy retries)\n",
		a.n, b.n, a.busy, b.busy);

	/* Under live leases nothing is claimable; the owners are both listed. */
	struct work w[4];
	size_t n = 9;
	CHECK_EQ_INT(store_work_claim(s, "w-c", 10001, 1000, w, 4, &n), 0);
	CHECK_EQ_INT(n, 0);
	json_t *owners = store_work_owners(s);
	CHECK(owners != NULL);
	CHECK_EQ_INT(json_array_size(owners), (a.n > 0) + (b.n > 0));
	json_decref(owners);
	store_close(s);
	unlink(db);
}

/*
 * Leases: a live lease keeps a row from others; when it expires the row is
 * claimable again, and the old owner's renewal no longer moves it; release
 * and release by prefix drop leases; next_due sees only unleased work.
 */
static void test_lease_expiry(void)
{
	char spec[300], db[320];
	spec_of(spec, sizeof spec, "lease.db");
	snprintf(db, sizeof db, "%s/lease.db", tmpdir);
	struct store *s = open_store(spec, 0);
	CHECK(s != NULL);
	if (!s)
		return;
	int64_t r1, r2;
	CHECK_EQ_INT(store_work_add(s, "job_1", WORK_POLL, NULL, 100, NULL, 0, &r1), 0);
	CHECK_EQ_INT(store_work_add(s, "job_2", WORK_DELIVER, "msg_2", 5000, NULL, 0, &r2), 0);
	int64_t due = 0;
	CHECK_EQ_INT(store_work_next_due(s, 0, &due), 0);
	CHECK_EQ_INT(due, 100);

	struct work w[4];
	size_t n = 0;
	/* Not due yet: nothing. */
	CHECK_EQ_INT(store_work_claim(s, "pid1:w0", 50, 500, w, 4, &n), 0);
	CHECK_EQ_INT(n, 0);
	CHECK_EQ_INT(store_work_claim(s, "pid1:w0", 1000, 500, w, 4, &n), 0);
	CHECK_EQ_INT(n, 1);
	CHECK_EQ_INT(w[0].id, r1);
	CHECK_STR_EQ(w[0].job_id, "job_1");
	CHECK_EQ_INT(w[0].kind, WORK_POLL);
	/* Leased to 1500: another owner gets nothing before, and next_due skips
	 * the leased row. */
	CHECK_EQ_INT(store_work_claim(s, "pid2:w0", 1499, 500, w, 4, &n), 0);
	CHECK_EQ_INT(n, 0);
	CHECK_EQ_INT(store_work_next_due(s, 1499, &due), 0);
	CHECK_EQ_INT(due, 5000);
	/* Expired at 1500: claimable again, by the other owner. */
	CHECK_EQ_INT(store_work_claim(s, "pid2:w0", 1500, 500, w, 4, &n), 0);
	CHECK_EQ_INT(n, 1);
	CHECK_EQ_INT(w[0].id, r1);
	/* The first owner's heartbeat comes too late: the row is not its own. */
	CHECK_EQ_INT(store_work_renew(s, "pid1:w0", &r1, 1, 90000), 0);
	CHECK_EQ_INT(store_work_claim(s, "pid3:w0", 2000, 500, w, 4, &n), 0);
	CHECK_EQ_INT(n, 1); /* the second owner's lease ran to 2000 */
	CHECK_EQ_INT(w[0].id, r1);
	/* A dead process's leases go by prefix; a clean shutdown by owner. */
	CHECK_EQ_INT(store_work_claim(s, "pid3:w1", 6000, 100000, w, 4, &n), 0);
	CHECK_EQ_INT(n, 2); /* pid3:w0's lease ran to 2500; msg_2 due at 5000 */
	CHECK_EQ_INT(store_work_next_due(s, 6000, &due), 1);
	CHECK_EQ_INT(store_work_release_prefix(s, "pid3:"), 0);
	CHECK_EQ_INT(store_work_claim(s, "pid4:w0", 6000, 100000, w, 4, &n), 0);
	CHECK_EQ_INT(n, 2);
	CHECK_EQ_INT(store_work_release(s, "pid4:w1"), 0); /* not the owner: nothing */
	CHECK_EQ_INT(store_work_claim(s, "pid5:w0", 6000, 100, w, 4, &n), 0);
	CHECK_EQ_INT(n, 0);
	CHECK_EQ_INT(store_work_release(s, "pid4:w0"), 0);
	CHECK_EQ_INT(store_work_claim(s, "pid5:w0", 6000, 100, w, 4, &n), 0);
	CHECK_EQ_INT(n, 2);
	/* Reschedule moves the due time and drops the lease; done deletes. */
	CHECK_EQ_INT(store_work_reschedule(s, r2, 9000, 3), 0);
	CHECK_EQ_INT(store_work_done(s, r1), 0);
	CHECK_EQ_INT(store_work_claim(s, "pid6:w0", 8999, 100, w, 4, &n), 0);
	CHECK_EQ_INT(n, 0);
	CHECK_EQ_INT(store_work_claim(s, "pid6:w0", 9000, 100, w, 4, &n), 0);
	CHECK_EQ_INT(n, 1);
	CHECK_EQ_INT(w[0].id, r2);
	CHECK_EQ_INT(w[0].tries, 3);
	CHECK_STR_EQ(w[0].ref, "msg_2");
	CHECK_EQ_INT(store_work_count(s, WORK_POLL), 0);
	CHECK_EQ_INT(store_work_count(s, WORK_DELIVER), 1);
	store_close(s);
	unlink(db);
}

/* Idempotency keys: per customer; a second put of a key fails and leaves the
 * first in place. */
static void test_idempotency(void)
{
	char spec[300], db[320];
	spec_of(spec, sizeof spec, "idem.db");
	snprintf(db, sizeof db, "%s/idem.db", tmpdir);
	struct store *s = open_store(spec, 0);
	CHECK(s != NULL);
	if (!s)
		return;
	char hash[80] = "x", jid[48] = "x";
	CHECK_EQ_INT(store_idem_get(s, "acme", "k1", hash, sizeof hash, jid, sizeof jid), 1);
	CHECK_EQ_INT(store_idem_put(s, "acme", "k1", "sha-one", "job_1", 1000), 0);
	CHECK_EQ_INT(store_idem_get(s, "acme", "k1", hash, sizeof hash, jid, sizeof jid), 0);
	CHECK_STR_EQ(hash, "sha-one");
	CHECK_STR_EQ(jid, "job_1");
	/* Same key again: refused, the first stays. */
	CHECK(store_idem_put(s, "acme", "k1", "sha-two", "job_2", 2000) < 0);
	CHECK_EQ_INT(store_idem_get(s, "acme", "k1", hash, sizeof hash, jid, sizeof jid), 0);
	CHECK_STR_EQ(hash, "sha-one");
	CHECK_STR_EQ(jid, "job_1");
	/* Another customer's key of the same name is its own. */
	CHECK_EQ_INT(store_idem_get(s, "globex", "k1", hash, sizeof hash, jid, sizeof jid), 1);
	CHECK_EQ_INT(store_idem_put(s, "globex", "k1", "sha-g", "job_g", 1000), 0);
	CHECK_EQ_INT(store_idem_get(s, "globex", "k1", hash, sizeof hash, jid, sizeof jid), 0);
	CHECK_STR_EQ(jid, "job_g");
	/* A key put in a transaction that rolls back is not kept. */
	CHECK_EQ_INT(store_begin(s), 0);
	CHECK_EQ_INT(store_idem_put(s, "acme", "k2", "sha-k2", "job_k2", 1000), 0);
	store_rollback(s);
	CHECK_EQ_INT(store_idem_get(s, "acme", "k2", hash, sizeof hash, jid, sizeof jid), 1);
	/* Small buffers are cut, not overrun. */
	char small[4];
	CHECK_EQ_INT(store_idem_get(s, "acme", "k1", small, sizeof small, jid, sizeof jid), 0);
	CHECK_STR_EQ(small, "sha");
	store_close(s);
	unlink(db);
}

int main(void)
{
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	if (shim_install() < 0) {
		fprintf(stderr, "cannot install the fault VFS\n");
		return 1;
	}
	test_failed_commit_atomic(SQLITE_FULL, "disk full");
	test_failed_commit_atomic(SQLITE_IOERR_WRITE, "write error");
	test_fault_sweep(0, FAULT_WRITE);
	test_fault_sweep(1, FAULT_WRITE);
	test_fault_sweep(1, FAULT_SYNC);
	test_batch_fault();
	test_busy_lock();
	test_disk_full_insert();
	test_claims_alternate();
	test_claims_exclusive();
	test_lease_expiry();
	test_idempotency();
	char cmd[400];
	snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
	CHECK_EQ_INT(system(cmd), 0);
	return check_done();
}
