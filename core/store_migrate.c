/*
 * store_migrate.c: copies a SQLite store into PostgreSQL.
 *
 * The destination's schema comes from store_open() (its migrations). Then
 * table by table, in key order, batches of rows go over with COPY, one
 * transaction per batch: a run that stops (killed, PostgreSQL gone) is
 * resumed by running it again, which starts after the greatest key the
 * destination already has. Keys compare bytewise on both sides (SQLite's
 * BINARY collation, PostgreSQL's "C"). Identity sequences are moved past the
 * copied ids, and the row counts of every table are compared at the end.
 *
 * The source must not be in use: its lock file (PATH.lock, held by a serving
 * genrelay) must be free.
 */
#include "store_migrate.h"
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#define MIGRATE_BATCH 5000

struct table {
	const char *name;
	const char *cols;   /* copied columns, in order */
	const char *key;    /* resume key: one column, or "customer,key" */
	int int_key;        /* the key is an integer id with an identity sequence */
	int bytea_col;      /* index of a BYTEA column (-1: none) */
};

static const struct table tables[] = {
	{ "jobs", "id,customer,model_id,targets,target_idx,provider,model,status,"
		  "request_id,track_id,input,webhook_url,hook,output,error_code,error_message,"
		  "data,attempt,polls,created_at,updated_at,completed_at,submit_deadline,deadline",
	  "id", 0, -1 },
	{ "idempotency", "customer,key,body_hash,job_id,created_at", "customer,key", 0, -1 },
	{ "work", "id,job_id,kind,ref,due_at,lease_owner,lease_until,tries", "id", 1, -1 },
	{ "deliveries", "id,job_id,event,url,status,attempts,created_at,next_at", "id", 0, -1 },
	{ "attempts", "id,delivery_id,job_id,at,status_code,latency_ms,error,script_version",
	  "id", 1, -1 },
	{ "callbacks", "id,job_id,provider,at,outcome,body", "id", 1, 5 },
	{ "events", "id,job_id,at,kind,detail", "id", 1, -1 },
	{ "customers", "name,key_sha256,webhook_secret,hook,webhook_url,created_at,updated_at",
	  "name", 0, -1 },
	{ "usage", "job_id,customer,provider,model,amount,unit,source,at", "job_id", 0, -1 },
};

/* Appends v to buf (COPY text format: backslash escapes, \N for NULL). */
static int copy_field(char **buf, size_t *len, size_t *cap, const unsigned char *v, int n, int bytea)
{
	size_t need = *len + (size_t)n * 2 + 8;
	if (need > *cap) {
		size_t nc = *cap ? *cap : 65536;
		while (nc < need)
			nc *= 2;
		char *nb = realloc(*buf, nc);
		if (!nb)
			return -1;
		*buf = nb;
		*cap = nc;
	}
	char *o = *buf + *len;
	if (!v) {
		memcpy(o, "\\N", 2);
		*len += 2;
		return 0;
	}
	if (bytea) {
		static const char hex[] = "0123456789abcdef";
		memcpy(o, "\\\\x", 3);
		o += 3;
		for (int i = 0; i < n; i++) {
			*o++ = hex[v[i] >> 4];
			*o++ = hex[v[i] & 15];
		}
	} else {
		for (int i = 0; i < n; i++) {
			unsigned char c = v[i];
			if (c == '\\' || c == '\t' || c == '\n' || c == '\r') {
				*o++ = '\\';
				*o++ = c == '\t' ? 't' : c == '\n' ? 'n' : c == '\r' ? 'r' : '\\';
			} else if (c) {
				*o++ = (char)c;
			}
		}
	}
	*len = (size_t)(o - *buf);
	return 0;
}

static int pg_ok(PGconn *c, PGresult *r, const char *what)
{
	ExecStatusType st = PQresultStatus(r);
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_COPY_IN) {
		PQclear(r);
		return 0;
	}
	fprintf(stderr, "genrelay: store migrate: %s: %s", what,
		r ? PQresultErrorMessage(r) : PQerrorMessage(c));
	PQclear(r);
	return -1;
}

static long long sq_count(sqlite3 *db, const char *table)
{
	char q[128];
	snprintf(q, sizeof q, "SELECT count(*) FROM %s", table);
	sqlite3_stmt *st;
	long long n = -1;
	if (sqlite3_prepare_v2(db, q, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return n;
}

static long long pg_count(PGconn *c, const char *table)
{
	char q[128];
	snprintf(q, sizeof q, "SELECT count(*) FROM %s", table);
	PGresult *r = PQexec(c, q);
	long long n = PQresultStatus(r) == PGRES_TUPLES_OK ? atoll(PQgetvalue(r, 0, 0)) : -1;
	PQclear(r);
	return n;
}

/* Copies the rows of t after the destination's greatest key. 0 or -1. */
static int copy_table(sqlite3 *db, PGconn *c, const struct table *t, long long *done_total)
{
	int composite = strchr(t->key, ',') != NULL;
	char q[1024];
	/* Where to resume. */
	if (composite)
		snprintf(q, sizeof q, "SELECT customer, key FROM %s ORDER BY customer COLLATE \"C\" DESC, "
			 "key COLLATE \"C\" DESC LIMIT 1", t->name);
	else
		snprintf(q, sizeof q, "SELECT max(%s%s) FROM %s", t->key, t->int_key ? "" : " COLLATE \"C\"",
			 t->name);
	PGresult *r = PQexec(c, q);
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		return pg_ok(c, r, "reading where to resume");
	char *after1 = NULL, *after2 = NULL;
	if (PQntuples(r) == 1 && !PQgetisnull(r, 0, 0)) {
		after1 = strdup(PQgetvalue(r, 0, 0));
		if (composite)
			after2 = strdup(PQgetvalue(r, 0, 1));
	}
	PQclear(r);
	long long total = sq_count(db, t->name), done = pg_count(c, t->name);
	if (composite)
		snprintf(q, sizeof q, "SELECT %s FROM %s WHERE ?1 IS NULL OR (customer, key) > (?1, ?2) "
			 "ORDER BY customer, key", t->cols, t->name);
	else
		snprintf(q, sizeof q, "SELECT %s FROM %s WHERE ?1 IS NULL OR %s > ?1 ORDER BY %s",
			 t->cols, t->name, t->key, t->key);
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, q, -1, &st, NULL) != SQLITE_OK) {
		fprintf(stderr, "genrelay: store migrate: %s: %s\n", t->name, sqlite3_errmsg(db));
		free(after1);
		free(after2);
		return -1;
	}
	if (after1 && t->int_key)
		sqlite3_bind_int64(st, 1, atoll(after1));
	else if (after1)
		sqlite3_bind_text(st, 1, after1, -1, SQLITE_TRANSIENT);
	if (after2)
		sqlite3_bind_text(st, 2, after2, -1, SQLITE_TRANSIENT);
	free(after1);
	free(after2);
	int ncols = sqlite3_column_count(st), rc = 0, more = 1;
	char *buf = NULL;
	size_t cap = 0;
	char copy[1024];
	snprintf(copy, sizeof copy, "COPY %s(%s) FROM STDIN", t->name, t->cols);
	while (more && rc == 0) {
		size_t len = 0;
		int rows = 0, src = SQLITE_DONE;
		while (rows < MIGRATE_BATCH && (src = sqlite3_step(st)) == SQLITE_ROW) {
			for (int i = 0; i < ncols; i++) {
				int bytea = i == t->bytea_col;
				const unsigned char *v = sqlite3_column_type(st, i) == SQLITE_NULL ? NULL
					: bytea ? sqlite3_column_blob(st, i) : sqlite3_column_text(st, i);
				int n = v ? sqlite3_column_bytes(st, i) : 0;
				if (bytea && !v && sqlite3_column_type(st, i) != SQLITE_NULL)
					v = (const unsigned char *)""; /* an empty blob */
				/* copy_field leaves room for the separator. */
				if (copy_field(&buf, &len, &cap, v, n, bytea) < 0) {
					rc = -1;
					break;
				}
				buf[len++] = i + 1 < ncols ? '\t' : '\n';
			}
			rows++;
		}
		if (rows < MIGRATE_BATCH)
			more = 0;
		if (more == 0 && src != SQLITE_DONE && src != SQLITE_ROW) {
			fprintf(stderr, "genrelay: store migrate: reading %s: %s\n", t->name, sqlite3_errmsg(db));
			rc = -1;
		}
		if (rc < 0 || rows == 0)
			break;
		/* One batch, one transaction. */
		if (pg_ok(c, PQexec(c, "BEGIN"), "BEGIN") < 0 || pg_ok(c, PQexec(c, copy), "COPY") < 0 ||
		    PQputCopyData(c, buf, (int)len) != 1 || PQputCopyEnd(c, NULL) != 1 ||
		    pg_ok(c, PQgetResult(c), t->name) < 0 || pg_ok(c, PQexec(c, "COMMIT"), "COMMIT") < 0) {
			PGresult *x;
			while ((x = PQgetResult(c)))
				PQclear(x);
			PQclear(PQexec(c, "ROLLBACK"));
			rc = -1;
			break;
		}
		done += rows;
		*done_total += rows;
		fprintf(stderr, "store migrate: %s %lld/%lld rows (%.0f%%)\n", t->name, done, total,
			total > 0 ? 100.0 * (double)done / (double)total : 100.0);
	}
	sqlite3_finalize(st);
	free(buf);
	if (rc == 0 && t->int_key) {
		snprintf(q, sizeof q, "SELECT setval(pg_get_serial_sequence('%s','%s'), "
			 "greatest((SELECT max(%s) FROM %s), 1))", t->name, t->key, t->key, t->name);
		rc = pg_ok(c, PQexec(c, q), "moving the id sequence");
	}
	return rc;
}

static int copy_meta(sqlite3 *db, PGconn *c)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, "SELECT key, value FROM meta WHERE key<>'schema_version'", -1, &st,
			       NULL) != SQLITE_OK)
		return -1;
	int rc = 0;
	while (rc == 0 && sqlite3_step(st) == SQLITE_ROW) {
		const char *v[2] = { (const char *)sqlite3_column_text(st, 0),
				     (const char *)sqlite3_column_text(st, 1) };
		rc = pg_ok(c, PQexecParams(c, "INSERT INTO meta(key,value) VALUES($1,$2) "
					   "ON CONFLICT(key) DO NOTHING", 2, NULL, v, NULL, NULL, 0),
			   "meta");
	}
	sqlite3_finalize(st);
	return rc;
}

int store_migrate_main(int argc, char **argv)
{
	const char *from = NULL, *to = NULL;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--from") == 0 && i + 1 < argc)
			from = argv[++i];
		else if (strcmp(argv[i], "--to") == 0 && i + 1 < argc)
			to = argv[++i];
		else
			from = to = NULL, i = argc;
	}
	if (!from || !to || strncmp(from, "sqlite:", 7) != 0 ||
	    (strncmp(to, "postgresql://", 13) != 0 && strncmp(to, "postgres://", 11) != 0)) {
		fprintf(stderr, "usage: genrelay store migrate --from sqlite:FILE --to postgresql://...\n");
		return 2;
	}
	char lockpath[4096];
	snprintf(lockpath, sizeof lockpath, "%s.lock", from + 7);
	int lfd = open(lockpath, O_RDWR | O_CLOEXEC);
	if (lfd >= 0 && flock(lfd, LOCK_EX | LOCK_NB) < 0) {
		fprintf(stderr, "genrelay: store migrate: %s is in use by a running genrelay: stop it first\n",
			from);
		close(lfd);
		return 1;
	}
	char err[512] = "";
	/* Creates (or checks) the destination's schema. */
	struct store *dst = store_open(to, 0, err, sizeof err);
	if (!dst) {
		fprintf(stderr, "genrelay: %s\n", err);
		return 1;
	}
	store_close(dst);
	/* The source at its own schema version (a write-less open migrates it). */
	struct store *src = store_open(from, 0, err, sizeof err);
	if (!src) {
		fprintf(stderr, "genrelay: %s\n", err);
		return 1;
	}
	store_close(src);
	sqlite3 *db = NULL;
	if (sqlite3_open_v2(from + 7, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
		fprintf(stderr, "genrelay: store migrate: cannot open %s: %s\n", from + 7,
			db ? sqlite3_errmsg(db) : "out of memory");
		sqlite3_close(db);
		return 1;
	}
	PGconn *c = PQconnectdb(to);
	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "genrelay: store migrate: cannot connect: %s", PQerrorMessage(c));
		PQfinish(c);
		sqlite3_close(db);
		return 1;
	}
	long long copied = 0;
	int rc = copy_meta(db, c);
	for (size_t i = 0; rc == 0 && i < sizeof tables / sizeof tables[0]; i++)
		rc = copy_table(db, c, &tables[i], &copied);
	int mismatch = 0;
	if (rc == 0) {
		fprintf(stderr, "store migrate: copied %lld rows; verifying counts\n", copied);
		for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
			long long a = sq_count(db, tables[i].name), b = pg_count(c, tables[i].name);
			printf("%s: sqlite %lld, postgresql %lld%s\n", tables[i].name, a, b,
			       a == b ? "" : "  MISMATCH");
			if (a != b)
				mismatch = 1;
		}
		printf(mismatch ? "store migrate: counts differ\n" : "store migrate: done, every count matches\n");
	}
	PQfinish(c);
	sqlite3_close(db);
	if (lfd >= 0)
		close(lfd);
	return rc == 0 && !mismatch ? 0 : 1;
}
