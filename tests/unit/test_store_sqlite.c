/*
 * test_store_sqlite.c: the permissions of the SQLite store's files
 * (core/store_sqlite.c): created 0600 whatever the umask, a store others may
 * read or write refused unless allowed, wider -wal/-shm files narrowed; and
 * the WAL: written again from its start after checkpoints instead of growing,
 * and a checkpoint that a reader holds back is no error.
 */
#include "check.h"
#include "job.h"
#include "store.h"

#include <sqlite3.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/genrelay-store-XXXXXX";

static unsigned mode_of(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (unsigned)(st.st_mode & 0777) : 01000;
}

static void path_in(char *out, size_t n, const char *name)
{
	snprintf(out, n, "%s/%s", tmpdir, name);
}

static void test_created_private(void)
{
	char db[300], spec[320], wal[320], shm[320], err[512] = "";
	path_in(db, sizeof db, "a.db");
	snprintf(spec, sizeof spec, "sqlite:%s", db);
	snprintf(wal, sizeof wal, "%s-wal", db);
	snprintf(shm, sizeof shm, "%s-shm", db);
	mode_t old = umask(022); /* would give 0644 */
	struct store *s = store_open(spec, 0, err, sizeof err);
	CHECK(s != NULL);
	if (!s) {
		fprintf(stderr, "    %s\n", err);
		umask(old);
		return;
	}
	CHECK(store_meta_set(s, "k", "v") == 0); /* a write: the WAL is in use */
	CHECK_EQ_INT(mode_of(db), 0600);
	CHECK_EQ_INT(mode_of(wal), 0600);
	CHECK_EQ_INT(mode_of(shm), 0600);
	CHECK_EQ_INT(store_check_permissions(spec, 0, err, sizeof err), 0);
	store_close(s);
	umask(old);
	unlink(wal);
	unlink(shm);
	unlink(db);
}

static void test_refused(void)
{
	char db[300], spec[320], err[1024] = "";
	path_in(db, sizeof db, "b.db");
	snprintf(spec, sizeof spec, "sqlite:%s", db);
	/* No file yet: nothing to refuse (store_open creates it 0600). */
	CHECK_EQ_INT(store_check_permissions(spec, 0, err, sizeof err), 0);
	FILE *f = fopen(db, "w");
	if (f)
		fclose(f);
	static const unsigned bad[] = { 0644, 0640, 0604, 0620, 0602 };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		chmod(db, bad[i]);
		err[0] = '\0';
		CHECK_EQ_INT(store_check_permissions(spec, 0, err, sizeof err), -1);
		CHECK(strstr(err, db) != NULL);
		CHECK(strstr(err, "chmod 600") != NULL);
		CHECK(strstr(err, "store_insecure_permissions = true") != NULL);
		/* Allowed by the operator: starts, the mode is left alone. */
		CHECK_EQ_INT(store_check_permissions(spec, 1, err, sizeof err), 0);
		CHECK_EQ_INT(mode_of(db), bad[i]);
	}
	chmod(db, 0600);
	CHECK_EQ_INT(store_check_permissions(spec, 0, err, sizeof err), 0);
	chmod(db, 0400);
	CHECK_EQ_INT(store_check_permissions(spec, 0, err, sizeof err), 0);
	unlink(db);
	/* Not a file store: nothing to check. */
	CHECK_EQ_INT(store_check_permissions("postgresql://db/x", 0, err, sizeof err), 0);
}

static void test_side_files_narrowed(void)
{
	char db[300], spec[320], wal[320], shm[320], err[512] = "";
	path_in(db, sizeof db, "c.db");
	snprintf(spec, sizeof spec, "sqlite:%s", db);
	snprintf(wal, sizeof wal, "%s-wal", db);
	snprintf(shm, sizeof shm, "%s-shm", db);
	const char *files[] = { db, wal, shm };
	for (int i = 0; i < 3; i++) {
		FILE *f = fopen(files[i], "w");
		if (f) {
			fputs("x", f);
			fclose(f);
		}
	}
	chmod(db, 0600);
	chmod(wal, 0644);
	chmod(shm, 0666);
	CHECK_EQ_INT(store_check_permissions(spec, 0, err, sizeof err), 0);
	CHECK_EQ_INT(mode_of(wal), 0600);
	CHECK_EQ_INT(mode_of(shm), 0600);
	for (int i = 0; i < 3; i++)
		unlink(files[i]);
}

static long long size_of(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

/* Writes n jobs with a 3 KB input each (about one page per job) in one
 * worker-style batch; 0 when committed. */
static int write_jobs(struct store *s, int from, int n)
{
	static char input[3000];
	memset(input, 'x', sizeof input - 3);
	input[0] = '"';
	input[sizeof input - 2] = '"';
	for (int i = from; i < from + n; i++) {
		struct job j = { .customer = "acme", .model_id = "m", .targets = "[]",
				 .status = JOB_QUEUED, .input = input, .created_at = i };
		snprintf(j.id, sizeof j.id, "job_%08d", i);
		if (store_job_insert(s, &j) < 0)
			return -1;
	}
	return store_flush(s);
}

static void test_wal_reused(void)
{
	char db[300], spec[320], wal[320], err[512] = "";
	path_in(db, sizeof db, "wal.db");
	snprintf(spec, sizeof spec, "sqlite:%s", db);
	snprintf(wal, sizeof wal, "%s-wal", db);
	struct store *w = store_open(spec, 0, err, sizeof err);
	struct store *c = store_open(spec, 0, err, sizeof err);
	CHECK(w != NULL && c != NULL);
	if (!w || !c) {
		fprintf(stderr, "    %s\n", err);
		store_close(w);
		store_close(c);
		return;
	}
	store_set_autocheckpoint(w, 0); /* as a worker's connection */
	store_set_batching(w, 1);
	int next = 0, frames = 0, copied = 0;
	/* More than a restart's worth of frames, and a reader that holds a
	 * snapshot in the middle of them: the checkpoint copies what it may and
	 * is no error; the writer is not locked out afterwards. */
	for (int b = 0; b < 25; b++, next += 200)
		CHECK_EQ_INT(write_jobs(w, next, 200), 0);
	sqlite3 *r = NULL;
	CHECK_EQ_INT(sqlite3_open_v2(db, &r, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	CHECK_EQ_INT(sqlite3_exec(r, "BEGIN; SELECT count(*) FROM jobs;", NULL, NULL, NULL), SQLITE_OK);
	CHECK_EQ_INT(write_jobs(w, next, 200), 0);
	next += 200;
	CHECK_EQ_INT(store_checkpoint(c, &frames, &copied), 0);
	CHECK(frames > 4096);
	CHECK(copied < frames);
	CHECK_EQ_INT(write_jobs(w, next, 200), 0);
	next += 200;
	sqlite3_exec(r, "COMMIT", NULL, NULL, NULL);
	sqlite3_close(r);
	/* Nothing holds it back now: every frame is copied and the next writes
	 * go to the start of the WAL, which keeps its size (reused in place,
	 * neither grown nor cut). */
	CHECK_EQ_INT(store_checkpoint(c, &frames, &copied), 0);
	CHECK_EQ_INT(copied, frames);
	long long size = size_of(wal);
	CHECK(size > 4096LL * 4096);
	for (int round = 0; round < 3; round++) {
		for (int b = 0; b < 10; b++, next += 200)
			CHECK_EQ_INT(write_jobs(w, next, 200), 0);
		CHECK_EQ_INT(store_checkpoint(c, &frames, &copied), 0);
		CHECK_EQ_INT(copied, frames);
		CHECK(size_of(wal) == size);
	}
	struct job j;
	CHECK_EQ_INT(store_job_get(w, "job_00000000", NULL, &j), 0);
	job_clear(&j);
	char last[48];
	snprintf(last, sizeof last, "job_%08d", next - 1);
	CHECK_EQ_INT(store_job_get(c, last, NULL, &j), 0);
	job_clear(&j);
	store_close(c);
	store_close(w);
	const char *ext[] = { "", "-wal", "-shm" };
	for (int i = 0; i < 3; i++) {
		char f[340];
		snprintf(f, sizeof f, "%s%s", db, ext[i]);
		unlink(f);
	}
}

int main(void)
{
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	test_created_private();
	test_refused();
	test_side_files_narrowed();
	test_wal_reused();
	rmdir(tmpdir);
	return check_done();
}
