/*
 * store_sqlite.c: the job store on an embedded SQLite file (WAL mode):
 * open (pragmas, migrations), file permissions, close, errors, and the ops
 * table store.c dispatches through. store_sqlite_int.h lists the other
 * files of the store and how they fit.
 */
#include "store_sqlite_int.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

/* Bytes of WAL kept on disk for reuse after a restart (see store_checkpoint). */
#define WAL_SIZE_LIMIT (64 * 1024 * 1024)

const char *store_errmsg(struct store *s)
{
	return s->err;
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
	sqlite3_busy_handler(s->db, sqlite_busy_default, s);
	/* journal_size_limit: a WAL that grew past it (readers held a restart
	 * back) is cut back to it when it restarts; below it, it is kept and
	 * overwritten in place. */
	char pragmas[320];
	snprintf(pragmas, sizeof pragmas,
		 "PRAGMA page_size=4096; PRAGMA journal_mode=WAL; PRAGMA synchronous=%s; PRAGMA foreign_keys=OFF;"
		 "PRAGMA cache_size=-24576; PRAGMA temp_store=MEMORY; PRAGMA wal_autocheckpoint=%d;"
		 "PRAGMA journal_size_limit=%d;",
		 fsync ? "FULL" : "NORMAL", 4000, WAL_SIZE_LIMIT);
	if (sqlite_exec_sql(s, pragmas) < 0 || sqlite_migrate(s, err, errlen) < 0) {
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
	return sqlite_exec_sql(s, pragma);
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

static const struct store_ops sqlite_ops = { STORE_OPS_INIT("sqlite") };
