/*
 * store_sqlite_schema.c: the SQLite store's schema, its migrations v1..v5
 * (run at open, each in a transaction of its own) and the meta table.
 */
#include "store_sqlite_int.h"

#define SCHEMA_VERSION 5

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

int store_schema_version(void)
{
	return SCHEMA_VERSION;
}

int sqlite_migrate(struct store *s, char *err, size_t errlen)
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
		if (sqlite_exec_sql(s, "BEGIN IMMEDIATE") < 0)
			goto bad;
		if (sqlite_exec_sql(s, migrations[version]) < 0 || sqlite_exec_sql(s, pragma) < 0 ||
		    sqlite_exec_sql(s, "COMMIT") < 0) {
			sqlite_exec_sql(s, "ROLLBACK");
			goto bad;
		}
		version++;
	}
	return 0;
bad:
	snprintf(err, errlen, "store migration failed: %s", s->err[0] ? s->err : sqlite3_errmsg(s->db));
	return -1;
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
	return sqlite_write_stmt(s, st);
}
