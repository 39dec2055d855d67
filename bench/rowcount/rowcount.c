/*
 * rowcount.c: an LD_PRELOAD shim that counts, per SQL statement, what a
 * process asks SQLite to do: executions and rows changed. `make bench` loads
 * it into genrelay to report the store rows written per job and to give
 * bench_parts the recipe of "the same rows in the same grouping".
 *
 *   LD_PRELOAD=build/bench/libgenrelay_rowcount.so GENRELAY_ROWCOUNT_FILE=PATH genrelay ...
 *
 * It wraps sqlite3_step (calls from the program into libsqlite3; SQLite's
 * own internal steps are not seen). An execution is a step on a statement
 * that was not already running (sqlite3_stmt_busy); rows are
 * sqlite3_changes() when a statement that writes (not sqlite3_stmt_readonly)
 * finishes with SQLITE_DONE. A thread rewrites PATH (temp file + rename)
 * every 100 ms while counts change, and once more at exit:
 *
 *   EXECUTIONS<TAB>ROWS<TAB>SQL TEXT (newlines as spaces)
 *
 * Cost: one pointer-keyed table lookup and an uncontended mutex per step
 * (well under 1 % of a genrelay job). Without GENRELAY_ROWCOUNT_FILE it only
 * forwards.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_SQL 512
#define SLOTS 4096

struct entry {
	char *sql;
	long long execs, rows;
};

struct slot {
	const void *stmt; /* key */
	const char *sqlp; /* sqlite3_sql() pointer when cached: a reused address with new SQL misses */
	int idx;
};

static int (*real_step)(sqlite3_stmt *);
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct entry entries[MAX_SQL];
static int nentries;
static struct slot slots[SLOTS];
static const char *out_path;
static long long version, written;
static pthread_t dumper;
static volatile int stopping;

static int entry_for(const char *sql)
{
	for (int i = 0; i < nentries; i++)
		if (strcmp(entries[i].sql, sql) == 0)
			return i;
	if (nentries == MAX_SQL)
		return -1;
	char *c = strdup(sql);
	if (!c)
		return -1;
	for (char *p = c; *p; p++)
		if (*p == '\n' || *p == '\t' || *p == '\r')
			*p = ' ';
	entries[nentries].sql = c;
	return nentries++;
}

static void dump(void)
{
	char tmp[4096];
	snprintf(tmp, sizeof tmp, "%s.tmp", out_path);
	FILE *f = fopen(tmp, "w");
	if (!f)
		return;
	pthread_mutex_lock(&mu);
	for (int i = 0; i < nentries; i++)
		fprintf(f, "%lld\t%lld\t%s\n", entries[i].execs, entries[i].rows, entries[i].sql);
	written = version;
	pthread_mutex_unlock(&mu);
	fclose(f);
	rename(tmp, out_path);
}

static void *dump_loop(void *arg)
{
	(void)arg;
	struct timespec ts = { 0, 100 * 1000 * 1000 };
	while (!stopping) {
		nanosleep(&ts, NULL);
		pthread_mutex_lock(&mu);
		int changed = version != written;
		pthread_mutex_unlock(&mu);
		if (changed)
			dump();
	}
	return NULL;
}

__attribute__((constructor)) static void rowcount_init(void)
{
	real_step = (int (*)(sqlite3_stmt *))dlsym(RTLD_NEXT, "sqlite3_step");
	out_path = getenv("GENRELAY_ROWCOUNT_FILE");
	if (out_path && *out_path) {
		dump();
		if (pthread_create(&dumper, NULL, dump_loop, NULL) != 0)
			out_path = NULL;
		else
			pthread_detach(dumper);
	} else {
		out_path = NULL;
	}
}

__attribute__((destructor)) static void rowcount_fini(void)
{
	if (out_path) {
		stopping = 1;
		dump();
	}
}

int sqlite3_step(sqlite3_stmt *st)
{
	if (!out_path)
		return real_step(st);
	int fresh = !sqlite3_stmt_busy(st);
	int rc = real_step(st);
	if (rc == SQLITE_ROW && !fresh)
		return rc;
	const char *sqlp = sqlite3_sql(st);
	if (!sqlp)
		return rc;
	long long changes = 0;
	if (rc == SQLITE_DONE && !sqlite3_stmt_readonly(st))
		changes = sqlite3_changes64(sqlite3_db_handle(st));
	pthread_mutex_lock(&mu);
	uintptr_t h = ((uintptr_t)st >> 4) * 2654435761u;
	struct slot *sl = &slots[h % SLOTS];
	int idx;
	if (sl->stmt == st && sl->sqlp == sqlp) {
		idx = sl->idx;
	} else {
		idx = entry_for(sqlp);
		sl->stmt = st;
		sl->sqlp = sqlp;
		sl->idx = idx;
	}
	if (idx >= 0) {
		if (fresh)
			entries[idx].execs++;
		entries[idx].rows += changes;
		version++;
	}
	pthread_mutex_unlock(&mu);
	return rc;
}
