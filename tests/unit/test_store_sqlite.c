/*
 * test_store_sqlite.c: the permissions of the SQLite store's files
 * (core/store_sqlite.c): created 0600 whatever the umask, a store others may
 * read or write refused unless allowed, wider -wal/-shm files narrowed.
 */
#include "check.h"
#include "store.h"

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

int main(void)
{
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	test_created_private();
	test_refused();
	test_side_files_narrowed();
	rmdir(tmpdir);
	return check_done();
}
