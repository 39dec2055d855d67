/*
 * store_pg.c: the job store on PostgreSQL through libpq (store_backend.h).
 *
 * One connection per handle, as one SQLite handle per worker. Statements are
 * prepared once per connection (again after a reconnect). The schema is the
 * SQLite one in PostgreSQL types; migrations run at open under an advisory
 * lock, so of several instances starting at once one migrates and the others
 * wait, then find the schema current.
 *
 * Never a hang: the connection has connect_timeout, tcp_user_timeout and
 * keepalives, and every session sets statement_timeout (10 s), lock_timeout
 * and idle_in_transaction_session_timeout. lock_timeout is short (100 ms):
 * a worker's batch holds its row locks until the loop iteration commits, so
 * two batches (workers, instances) touching one job would make a loop wait
 * on another loop, or deadlock; instead the second statement fails (-2), its
 * savepoint is rolled back and its step runs again later, re-reading the job. A lost connection makes every call
 * fail with -2 (the API answers 503) and is re-established by the next call
 * after a short back-off, so workers reconnect by themselves.
 *
 * Claims lock their rows FOR UPDATE SKIP LOCKED: instances sharing the
 * database never claim the same due row, and a row leased by a live lease is
 * never claimed either (lease_until, renewed by store_work_renew).
 */
#define STORE_FN(name) pg_store_##name
#include "store_backend.h"
#include "sign.h"
#include "store.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PG_SCHEMA_VERSION 4
/* Back-off between reconnect attempts while PostgreSQL is unreachable. */
#define PG_RETRY_MS 1000
/* pg_advisory_lock key of migrations ("genrelay" in ASCII, truncated). */
#define PG_MIGRATE_LOCK 0x67656e72656c6179LL
#define PG_MAX_PARAMS 24

enum {
	Q_META_GET, Q_META_SET,
	Q_JOB_INSERT, Q_JOB_GET, Q_JOB_GET_C, Q_JOB_UPDATE, Q_JOB_COUNT,
	Q_IDEM_GET, Q_IDEM_PUT,
	Q_WORK_ADD, Q_WORK_CLAIM, Q_WORK_DONE, Q_WORK_RESCHED, Q_WORK_BECOME, Q_WORK_DROP_K,
	Q_WORK_DROP_ALL, Q_WORK_NEXT, Q_WORK_RELEASE, Q_WORK_RELEASE_P, Q_WORK_RENEW,
	Q_WORK_OWNERS, Q_WORK_COUNT,
	Q_DLV_INSERT, Q_DLV_GET, Q_DLV_UPDATE, Q_ATT_INSERT, Q_DLV_OF_JOB,
	Q_ATT_OF_DLV, Q_CB_INSERT, Q_EV_ADD, Q_EV_LIST,
	Q_SLOT_LOCK, Q_SLOT_COUNT, Q_SLOT_TAKE, Q_SLOT_HOLD, Q_EV_COUNT, Q_CB_OF_JOB,
	Q_CUST_ADD, Q_CUST_KEY, Q_CUST_BY_KEY, Q_CUST_BY_NAME, Q_CUST_LIST, Q_CUST_DEL,
	Q_QUEUE_STATS,
	Q_COUNT
};

#define JOB_COLS "id,customer,model_id,targets,target_idx,provider,model,status," \
	"request_id,track_id,input,webhook_url,hook,output,error_code,error_message," \
	"data,attempt,polls,created_at,updated_at,completed_at,submit_deadline,deadline"

static const char *const sql[Q_COUNT] = {
	[Q_META_GET] = "SELECT value FROM meta WHERE key=$1",
	[Q_META_SET] = "INSERT INTO meta(key,value) VALUES($1,$2) "
		       "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
	[Q_JOB_INSERT] = "INSERT INTO jobs(" JOB_COLS ") VALUES($1,$2,$3,$4,$5,$6,$7,$8,"
			 "$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,$23,$24)",
	[Q_JOB_GET] = "SELECT " JOB_COLS " FROM jobs WHERE id=$1",
	[Q_JOB_GET_C] = "SELECT " JOB_COLS " FROM jobs WHERE id=$1 AND customer=$2",
	[Q_JOB_UPDATE] = "UPDATE jobs SET target_idx=$2,provider=$3,model=$4,status=$5,"
			 "request_id=$6,output=$7,error_code=$8,error_message=$9,data=$10,"
			 "attempt=$11,polls=$12,updated_at=$13,completed_at=$14,"
			 "submit_deadline=$15,deadline=$16 WHERE id=$1 AND status<2",
	/* ^ an ended job is never written again: of two workers (or instances)
	 * ending one job at once (a callback racing a poll), the second finds
	 * no row to update and rolls back (store_job_update answers -2). Reads
	 * take no lock, so a batch holds row locks only from its writes on. */
	[Q_JOB_COUNT] = "SELECT count(*) FROM jobs",
	[Q_IDEM_GET] = "SELECT body_hash,job_id FROM idempotency WHERE customer=$1 AND key=$2",
	[Q_IDEM_PUT] = "INSERT INTO idempotency(customer,key,body_hash,job_id,created_at) "
		       "VALUES($1,$2,$3,$4,$5)",
	[Q_WORK_ADD] = "INSERT INTO work(job_id,kind,ref,due_at,lease_owner,lease_until,tries) "
		       "VALUES($1,$2,$3,$4,$5,$6,0) RETURNING id",
	[Q_WORK_CLAIM] = "UPDATE work SET lease_owner=$1, lease_until=$2 WHERE id IN "
			 "(SELECT id FROM work WHERE due_at<=$3 AND lease_until<=$3 "
			 "ORDER BY due_at LIMIT $4 FOR UPDATE SKIP LOCKED) "
			 "RETURNING id,job_id,kind,ref,due_at,tries",
	[Q_WORK_DONE] = "DELETE FROM work WHERE id=$1",
	[Q_WORK_RESCHED] = "UPDATE work SET due_at=$2, lease_owner=NULL, lease_until=0, tries=$3 WHERE id=$1",
	[Q_WORK_BECOME] = "UPDATE work SET kind=$2, due_at=$3, lease_owner=NULL, lease_until=0, tries=0 WHERE id=$1",
	[Q_WORK_DROP_K] = "DELETE FROM work WHERE job_id=$1 AND kind=$2 AND id<>$3",
	[Q_WORK_DROP_ALL] = "DELETE FROM work WHERE job_id=$1 AND id<>$3 AND kind<>$2",
	[Q_WORK_NEXT] = "SELECT min(due_at) FROM work WHERE lease_until<=$1",
	[Q_WORK_RELEASE] = "UPDATE work SET lease_owner=NULL, lease_until=0 "
			   "WHERE lease_owner=$1 OR lease_owner=$1||'#slot'",
	[Q_WORK_RELEASE_P] = "UPDATE work SET lease_owner=NULL, lease_until=0 "
			     "WHERE left(lease_owner,length($1))=$1",
	/* A row another transaction has locked (being dropped or claimed) is
	 * skipped, never waited for: the heartbeat runs outside any savepoint. */
	[Q_WORK_RENEW] = "UPDATE work SET lease_until=$2 WHERE id IN (SELECT id FROM work "
			 "WHERE id=ANY($3::bigint[]) AND lease_owner=$1 AND lease_until>0 "
			 "FOR UPDATE SKIP LOCKED)",
	[Q_WORK_OWNERS] = "SELECT DISTINCT lease_owner FROM work WHERE lease_owner IS NOT NULL",
	[Q_WORK_COUNT] = "SELECT count(*) FROM work WHERE kind=$1",
	[Q_QUEUE_STATS] = "SELECT COALESCE(SUM(CASE WHEN lease_until<=$1 AND due_at<=$1 THEN 1 ELSE 0 END),0),"
			  " COALESCE(SUM(CASE WHEN lease_until>$1 THEN 1 ELSE 0 END),0),"
			  " COALESCE(SUM(CASE WHEN kind=2 AND lease_until<=$1 AND due_at>$1 THEN 1 ELSE 0 END),0),"
			  " COALESCE(MIN(CASE WHEN lease_until<=$1 AND due_at<=$1 THEN due_at END),0),"
			  " pg_database_size(current_database()) FROM work",
	[Q_DLV_INSERT] = "INSERT INTO deliveries(id,job_id,event,url,status,attempts,created_at,next_at) "
			 "VALUES($1,$2,$3,$4,$5,$6,$7,$8)",
	[Q_DLV_GET] = "SELECT id,job_id,event,url,status,attempts,created_at,next_at "
		      "FROM deliveries WHERE id=$1",
	[Q_DLV_UPDATE] = "UPDATE deliveries SET status=$2,attempts=$3,next_at=$4 WHERE id=$1",
	[Q_ATT_INSERT] = "INSERT INTO attempts(delivery_id,job_id,at,status_code,latency_ms,error,script_version,body) "
			 "VALUES($1,$2,$3,$4,$5,$6,$7,$8)",
	[Q_DLV_OF_JOB] = "SELECT id,event,url,status,attempts,created_at,next_at FROM deliveries "
			 "WHERE job_id=$1 ORDER BY created_at, id",
	[Q_ATT_OF_DLV] = "SELECT at,status_code,latency_ms,error,script_version,encode(body,'hex') FROM attempts "
			 "WHERE delivery_id=$1 ORDER BY id",
	[Q_CB_INSERT] = "INSERT INTO callbacks(job_id,provider,at,outcome,body) VALUES($1,$2,$3,$4,$5)",
	[Q_EV_ADD] = "INSERT INTO events(job_id,at,kind,detail) VALUES($1,$2,$3,$4)",
	[Q_EV_LIST] = "SELECT at,kind,detail FROM events WHERE job_id=$1 ORDER BY id",
	/* Provider caps (store_work_take_slot): the count and the take are one
	 * decision across instances, so they run under a per-provider lock held
	 * to the end of the transaction. */
	[Q_SLOT_LOCK] = "SELECT pg_advisory_xact_lock(hashtext('genrelay-slot:'||$1))",
	[Q_SLOT_COUNT] = "SELECT "
		"count(*) FILTER (WHERE w.kind=2 OR (w.id<>$3 AND coalesce(w.lease_owner,'') LIKE '%#slot' "
		"AND w.lease_until>$2)), "
		"count(*) FILTER (WHERE w.kind=1 AND w.id<>$3 AND w.due_at<=$2 "
		"AND NOT (coalesce(w.lease_owner,'') LIKE '%#slot' AND w.lease_until>$2) "
		"AND (w.due_at<$4 OR (w.due_at=$4 AND w.id<$3))) "
		"FROM work w JOIN jobs j ON j.id=w.job_id WHERE w.kind IN (1,2) AND j.provider=$1",
	[Q_SLOT_TAKE] = "UPDATE work SET lease_owner=coalesce(lease_owner,'')||'#slot' "
			"WHERE id=$1 AND coalesce(lease_owner,'') NOT LIKE '%#slot'",
	[Q_SLOT_HOLD] = "UPDATE work SET lease_owner='cap-wait', lease_until=$2 WHERE id=$1",
	[Q_EV_COUNT] = "SELECT count(*) FROM events WHERE job_id=$1 AND kind=$2",
	[Q_CB_OF_JOB] = "SELECT at,provider,outcome,length(body) FROM callbacks WHERE job_id=$1 ORDER BY id",
	[Q_CUST_ADD] = "INSERT INTO customers(name,key_sha256,webhook_secret,hook,webhook_url,created_at,"
		       "updated_at) VALUES($1,$2,$3,$4,$5,$6,$6) ON CONFLICT DO NOTHING",
	[Q_CUST_KEY] = "UPDATE customers SET key_sha256=$2, updated_at=$3 WHERE name=$1",
	[Q_CUST_BY_KEY] = "SELECT name,key_sha256,webhook_secret,hook,webhook_url,created_at "
			  "FROM customers WHERE key_sha256=$1",
	[Q_CUST_BY_NAME] = "SELECT name,key_sha256,webhook_secret,hook,webhook_url,created_at "
			   "FROM customers WHERE name=$1",
	[Q_CUST_LIST] = "SELECT name,hook,webhook_url,webhook_secret IS NOT NULL,created_at "
			"FROM customers ORDER BY name COLLATE \"C\"",
	[Q_CUST_DEL] = "DELETE FROM customers WHERE name=$1",
};

static const char pg_schema_v1[] =
	"CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);"
	"CREATE TABLE jobs("
	" id TEXT PRIMARY KEY, customer TEXT NOT NULL, model_id TEXT NOT NULL,"
	" targets TEXT NOT NULL, target_idx INTEGER NOT NULL DEFAULT 0,"
	" provider TEXT, model TEXT, status INTEGER NOT NULL,"
	" request_id TEXT, track_id TEXT, input TEXT NOT NULL, webhook_url TEXT, hook TEXT,"
	" output TEXT, error_code TEXT, error_message TEXT, data TEXT,"
	" attempt INTEGER NOT NULL DEFAULT 0, polls INTEGER NOT NULL DEFAULT 0,"
	" created_at BIGINT NOT NULL, updated_at BIGINT, completed_at BIGINT,"
	" submit_deadline BIGINT, deadline BIGINT);"
	"CREATE INDEX jobs_customer ON jobs(customer, id);"
	"CREATE INDEX jobs_completed ON jobs(completed_at) WHERE completed_at IS NOT NULL;"
	"CREATE TABLE work(id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
	" job_id TEXT NOT NULL, kind INTEGER NOT NULL, ref TEXT, due_at BIGINT NOT NULL,"
	" lease_owner TEXT, lease_until BIGINT NOT NULL DEFAULT 0, tries INTEGER NOT NULL DEFAULT 0);"
	"CREATE INDEX work_due ON work(due_at);"
	"CREATE INDEX work_job ON work(job_id);"
	"CREATE INDEX work_owner ON work(lease_owner) WHERE lease_owner IS NOT NULL;"
	"CREATE TABLE deliveries(id TEXT PRIMARY KEY, job_id TEXT NOT NULL, event TEXT NOT NULL,"
	" url TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
	" created_at BIGINT, next_at BIGINT);"
	"CREATE INDEX deliveries_job ON deliveries(job_id);"
	"CREATE TABLE attempts(id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
	" delivery_id TEXT NOT NULL, job_id TEXT NOT NULL, at BIGINT, status_code INTEGER,"
	" latency_ms DOUBLE PRECISION, error TEXT, script_version TEXT);"
	"CREATE INDEX attempts_delivery ON attempts(delivery_id);"
	"CREATE INDEX attempts_job ON attempts(job_id);"
	"CREATE TABLE idempotency(customer TEXT NOT NULL, key TEXT NOT NULL, body_hash TEXT NOT NULL,"
	" job_id TEXT NOT NULL, created_at BIGINT, PRIMARY KEY(customer, key));"
	"CREATE INDEX idempotency_job ON idempotency(job_id);"
	"CREATE TABLE callbacks(id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
	" job_id TEXT, provider TEXT, at BIGINT, outcome TEXT, body BYTEA);"
	"CREATE INDEX callbacks_job ON callbacks(job_id);"
	"CREATE TABLE events(id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
	" job_id TEXT NOT NULL, at BIGINT, kind TEXT, detail TEXT);"
	"CREATE INDEX events_job ON events(job_id);";

/* pg_migrations[v] brings a database at version v to v+1. */
/* v2: the body each delivery attempt sent (bytes: a hook may send any). */
static const char pg_schema_v2[] = "ALTER TABLE attempts ADD COLUMN body BYTEA;";

/* v3: customers added with `genrelay customers add` (API key hashed). */
static const char pg_schema_v3[] =
	"CREATE TABLE customers(name TEXT PRIMARY KEY, key_sha256 TEXT NOT NULL UNIQUE,"
	" webhook_secret TEXT, hook TEXT, webhook_url TEXT, created_at BIGINT, updated_at BIGINT);";

/* v4: the cost of each ended job that has one (GET /v1/usage, budgets). */
static const char pg_schema_v4[] =
	"CREATE TABLE usage(job_id TEXT PRIMARY KEY, customer TEXT NOT NULL, provider TEXT,"
	" model TEXT, amount DOUBLE PRECISION NOT NULL, unit TEXT NOT NULL, source TEXT,"
	" at BIGINT NOT NULL);"
	"CREATE INDEX usage_customer_at ON usage(customer, at);";

static const char *const pg_migrations[PG_SCHEMA_VERSION] = { pg_schema_v1, pg_schema_v2, pg_schema_v3, pg_schema_v4 };

struct store {
	const struct store_ops *ops; /* first: store.c dispatches through it */
	PGconn *conn;
	char *conninfo;         /* the spec, owned */
	int prepared[Q_COUNT];  /* prepared on this connection */
	int in_tx;
	int batching;
	int open;               /* the shared transaction is open */
	int depth;              /* savepoints inside it */
	int aborted;            /* it was lost: the rest of the batch fails */
	int64_t retry_at;       /* monotonic ms: no reconnect before */
	char err[256];
};

/* Text parameters of one statement (values point into buf or caller memory). */
struct params {
	int n;
	const char *v[PG_MAX_PARAMS];
	int len[PG_MAX_PARAMS];
	int fmt[PG_MAX_PARAMS];
	char buf[PG_MAX_PARAMS][32];
};

static void p_text(struct params *p, const char *v)
{
	p->fmt[p->n] = 0;
	p->len[p->n] = 0;
	p->v[p->n++] = v;
}

static void p_int(struct params *p, int64_t v)
{
	snprintf(p->buf[p->n], sizeof p->buf[0], "%lld", (long long)v);
	p_text(p, p->buf[p->n]);
}

static void p_double(struct params *p, double v)
{
	snprintf(p->buf[p->n], sizeof p->buf[0], "%.17g", v);
	p_text(p, p->buf[p->n]);
}

static void p_bytes(struct params *p, const char *v, size_t len)
{
	p->fmt[p->n] = 1;
	p->len[p->n] = (int)len;
	p->v[p->n++] = v;
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int store_schema_version(void)
{
	return PG_SCHEMA_VERSION;
}

const char *store_errmsg(struct store *s)
{
	return s->err;
}

static void set_err(struct store *s, const char *what, const char *msg)
{
	snprintf(s->err, sizeof s->err, "postgresql: %s%s%.*s", what, what[0] ? ": " : "",
		 (int)(strcspn(msg, "\n")), msg);
}

/* The connection is gone: forget it (and the transaction it carried). */
static void drop_conn(struct store *s)
{
	if (s->conn)
		PQfinish(s->conn);
	s->conn = NULL;
	memset(s->prepared, 0, sizeof s->prepared);
	if (s->open || s->depth)
		s->aborted = 1;
	s->open = 0;
	s->depth = 0;
	s->in_tx = 0;
	s->retry_at = mono_ms() + PG_RETRY_MS;
}

/* Server notices (WARNING/NOTICE) are not errors: dropped. */
static void quiet_notice(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

/* Opens the connection; 0, or -2 (unreachable; err says why). */
static int connect_db(struct store *s)
{
	const char *keys[] = { "dbname", "connect_timeout", "keepalives", "keepalives_idle",
			       "keepalives_interval", "keepalives_count", "tcp_user_timeout",
			       "options", "application_name", NULL };
	const char *vals[] = { s->conninfo, "5", "1", "10", "5", "2", "10000",
			       "-c statement_timeout=10000 -c lock_timeout=100"
			       " -c idle_in_transaction_session_timeout=60000",
			       "genrelay", NULL };
	s->conn = PQconnectdbParams(keys, vals, 1);
	if (!s->conn || PQstatus(s->conn) != CONNECTION_OK) {
		set_err(s, "cannot connect", s->conn ? PQerrorMessage(s->conn) : "out of memory");
		drop_conn(s);
		return -2;
	}
	PQsetNoticeProcessor(s->conn, quiet_notice, NULL);
	s->retry_at = 0;
	return 0;
}

/* A usable connection, reconnecting when the last one was lost. */
static int ensure_conn(struct store *s)
{
	if (s->conn && PQstatus(s->conn) == CONNECTION_OK)
		return 0;
	if (s->conn)
		drop_conn(s);
	if (s->retry_at && mono_ms() < s->retry_at) {
		if (!s->err[0])
			snprintf(s->err, sizeof s->err, "postgresql: unavailable; reconnecting shortly");
		return -2;
	}
	return connect_db(s);
}

/*
 * Maps a failed result to -1/-2 and records why. Lost connections, timeouts,
 * lock and serialization conflicts, shutdowns and full disks are -2 (try
 * later); anything else (a constraint, a bad statement) is -1.
 */
static int fail_res(struct store *s, PGresult *r)
{
	const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	set_err(s, "", r && PQresultErrorMessage(r)[0] ? PQresultErrorMessage(r)
					     : PQerrorMessage(s->conn));
	int rc = -1;
	if (!state || PQstatus(s->conn) != CONNECTION_OK)
		rc = -2;
	else if (strncmp(state, "08", 2) == 0 || strncmp(state, "53", 2) == 0 ||
		 strncmp(state, "57", 2) == 0 || strncmp(state, "40", 2) == 0 ||
		 strcmp(state, "55P03") == 0 || strncmp(state, "58", 2) == 0)
		rc = -2;
	if (PQstatus(s->conn) != CONNECTION_OK) {
		drop_conn(s);
	} else if (PQtransactionStatus(s->conn) == PQTRANS_INERROR && s->depth == 0) {
		/* The shared (or the caller's) transaction cannot go on: end it,
		 * and fail what is left of it. */
		PQclear(PQexec(s->conn, "ROLLBACK"));
		if (s->open)
			s->aborted = 1;
		s->open = 0;
		s->in_tx = 0;
		rc = -2;
	}
	return rc;
}

/*
 * Runs prepared statement i with p; *out receives the result when it
 * returned rows (caller PQclears). 0 or <0.
 */
static int run(struct store *s, int i, struct params *p, PGresult **out)
{
	if (out)
		*out = NULL;
	int rc = ensure_conn(s);
	if (rc < 0)
		return rc;
	if (!s->prepared[i]) {
		/* Named per statement so each is prepared once per connection. */
		char name[16];
		snprintf(name, sizeof name, "q%d", i);
		PGresult *r = PQprepare(s->conn, name, sql[i], 0, NULL);
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			rc = fail_res(s, r);
			PQclear(r);
			return rc;
		}
		PQclear(r);
		s->prepared[i] = 1;
	}
	char name[16];
	snprintf(name, sizeof name, "q%d", i);
	PGresult *r = PQexecPrepared(s->conn, name, p ? p->n : 0, p ? p->v : NULL,
				     p ? p->len : NULL, p ? p->fmt : NULL, 0);
	ExecStatusType st = PQresultStatus(r);
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		rc = fail_res(s, r);
		PQclear(r);
		return rc;
	}
	if (out)
		*out = r;
	else
		PQclear(r);
	return 0;
}

/* Runs a plain command (BEGIN, COMMIT, SAVEPOINT ...). */
static int command(struct store *s, const char *text)
{
	int rc = ensure_conn(s);
	if (rc < 0)
		return rc;
	PGresult *r = PQexec(s->conn, text);
	if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
		rc = fail_res(s, r);
		PQclear(r);
		return rc;
	}
	/* COMMIT of a failed transaction "succeeds" as ROLLBACK. */
	if (strcmp(text, "COMMIT") == 0 && strcmp(PQcmdStatus(r), "ROLLBACK") == 0) {
		snprintf(s->err, sizeof s->err, "postgresql: the transaction was rolled back");
		rc = -2;
	}
	PQclear(r);
	return rc;
}

/* In batching mode, opens the shared transaction on first write. */
static int ensure_tx(struct store *s)
{
	if (!s->batching || s->open)
		return 0;
	if (s->aborted)
		return -2;
	int rc = command(s, "BEGIN");
	if (rc == 0)
		s->open = 1;
	return rc;
}

static int write_q(struct store *s, int i, struct params *p, PGresult **out)
{
	int rc = ensure_tx(s);
	if (rc < 0)
		return rc;
	return run(s, i, p, out);
}

/* Applies the migrations this database lacks, under the advisory lock. */
static int migrate(struct store *s, char *err, size_t errlen)
{
	char lock[96];
	snprintf(lock, sizeof lock, "SELECT pg_advisory_lock(%lld)", (long long)PG_MIGRATE_LOCK);
	if (command(s, "SET statement_timeout=120000") < 0 || command(s, lock) < 0)
		goto bad;
	int version = 0;
	PGresult *r = PQexec(s->conn, "SELECT to_regclass('meta') IS NOT NULL");
	int have_meta = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
			strcmp(PQgetvalue(r, 0, 0), "t") == 0;
	PQclear(r);
	if (have_meta) {
		r = PQexec(s->conn, "SELECT value FROM meta WHERE key='schema_version'");
		if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
			version = atoi(PQgetvalue(r, 0, 0));
		PQclear(r);
	}
	if (version > PG_SCHEMA_VERSION) {
		snprintf(err, errlen, "store schema version %d is newer than this build (%d)",
			 version, PG_SCHEMA_VERSION);
		goto unlock;
	}
	while (version < PG_SCHEMA_VERSION) {
		char set[160];
		snprintf(set, sizeof set,
			 "INSERT INTO meta(key,value) VALUES('schema_version','%d') "
			 "ON CONFLICT(key) DO UPDATE SET value=excluded.value", version + 1);
		if (command(s, "BEGIN") < 0)
			goto bad;
		if (command(s, pg_migrations[version]) < 0 || command(s, set) < 0 ||
		    command(s, "COMMIT") < 0) {
			command(s, "ROLLBACK");
			goto bad;
		}
		version++;
	}
	snprintf(lock, sizeof lock, "SELECT pg_advisory_unlock(%lld)", (long long)PG_MIGRATE_LOCK);
	if (command(s, lock) < 0 || command(s, "SET statement_timeout=10000") < 0)
		goto bad;
	return 0;
bad:
	snprintf(err, errlen, "store migration failed: %s", s->err);
	return -1;
unlock:
	snprintf(lock, sizeof lock, "SELECT pg_advisory_unlock(%lld)", (long long)PG_MIGRATE_LOCK);
	command(s, lock);
	return -1;
}

static const struct store_ops pg_ops;

struct store *store_open(const char *spec, int fsync, char *err, size_t errlen)
{
	(void)fsync; /* synchronous_commit is the server's, on by default */
	struct store *s = calloc(1, sizeof *s);
	if (!s || !(s->conninfo = strdup(spec))) {
		free(s);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->ops = &pg_ops;
	if (connect_db(s) < 0) {
		/* The message never repeats the spec: it may carry a password. */
		snprintf(err, errlen, "store: %s", s->err);
		store_close(s);
		return NULL;
	}
	if (migrate(s, err, errlen) < 0) {
		store_close(s);
		return NULL;
	}
	return s;
}

void store_close(struct store *s)
{
	if (!s)
		return;
	if (s->conn)
		PQfinish(s->conn);
	free(s->conninfo);
	free(s);
}

int store_set_max_size(struct store *s, long long max_bytes)
{
	(void)s;
	(void)max_bytes; /* the database's size is the server's to cap */
	return 0;
}

int store_set_autocheckpoint(struct store *s, int on)
{
	(void)s;
	(void)on;
	return 0;
}

int store_checkpoint(struct store *s, int *wal_frames, int *copied)
{
	(void)s;
	if (wal_frames)
		*wal_frames = 0;
	if (copied)
		*copied = 0;
	return 0;
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
		if (!strstr(s->err, "rolled back"))
			snprintf(s->err + strlen(s->err), sizeof s->err - strlen(s->err),
				 "%s(the batch was rolled back)", s->err[0] ? " " : "");
		return -2;
	}
	if (!s->open)
		return 0;
	s->depth = 0;
	s->open = 0;
	int rc = command(s, "COMMIT");
	if (rc < 0 && s->conn && PQtransactionStatus(s->conn) != PQTRANS_IDLE)
		PQclear(PQexec(s->conn, "ROLLBACK"));
	s->aborted = 0;
	return rc < 0 ? -2 : 0;
}

int store_begin(struct store *s)
{
	if (s->batching) {
		int rc = ensure_tx(s);
		if (rc == 0)
			rc = command(s, "SAVEPOINT sp");
		if (rc == 0)
			s->depth++;
		return rc;
	}
	int rc = command(s, "BEGIN");
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
		return command(s, "RELEASE sp");
	}
	if (!s->in_tx)
		return -2;
	s->in_tx = 0;
	return command(s, "COMMIT");
}

void store_rollback(struct store *s)
{
	if (s->batching) {
		if (s->depth <= 0)
			return;
		s->depth--;
		if (!s->conn || !s->open)
			return;
		if (command(s, "ROLLBACK TO sp") == 0)
			command(s, "RELEASE sp");
		return;
	}
	if (s->conn && PQtransactionStatus(s->conn) != PQTRANS_IDLE)
		PQclear(PQexec(s->conn, "ROLLBACK"));
	s->in_tx = 0;
}

/* A read: 0 with *out holding at least one row, 1 when none, <0 error. */
static int read_row(struct store *s, int i, struct params *p, PGresult **out)
{
	int rc = run(s, i, p, out);
	if (rc < 0)
		return rc;
	if (PQntuples(*out) == 0) {
		PQclear(*out);
		*out = NULL;
		return 1;
	}
	return 0;
}

static void copy_val(PGresult *r, int row, int col, char *out, size_t outlen)
{
	snprintf(out, outlen, "%s", PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col));
}

int store_meta_get(struct store *s, const char *key, char *out, size_t outlen)
{
	struct params p = { 0 };
	PGresult *r;
	p_text(&p, key);
	int rc = read_row(s, Q_META_GET, &p, &r);
	if (rc == 0) {
		copy_val(r, 0, 0, out, outlen);
		PQclear(r);
	}
	return rc;
}

int store_meta_set(struct store *s, const char *key, const char *value)
{
	struct params p = { 0 };
	p_text(&p, key);
	p_text(&p, value);
	return write_q(s, Q_META_SET, &p, NULL);
}

int store_job_insert(struct store *s, const struct job *j)
{
	struct params p = { 0 };
	p_text(&p, j->id);
	p_text(&p, j->customer);
	p_text(&p, j->model_id);
	p_text(&p, j->targets);
	p_int(&p, j->target_idx);
	p_text(&p, j->provider);
	p_text(&p, j->model);
	p_int(&p, (int)j->status);
	p_text(&p, j->request_id);
	p_text(&p, j->track_id);
	p_text(&p, j->input);
	p_text(&p, j->webhook_url);
	p_text(&p, j->hook);
	p_text(&p, j->output);
	p_text(&p, j->error_code);
	p_text(&p, j->error_message);
	p_text(&p, j->data);
	p_int(&p, j->attempt);
	p_int(&p, j->polls);
	p_int(&p, j->created_at);
	p_int(&p, j->updated_at);
	if (j->completed_at)
		p_int(&p, j->completed_at);
	else
		p_text(&p, NULL);
	p_int(&p, j->submit_deadline);
	p_int(&p, j->deadline);
	return write_q(s, Q_JOB_INSERT, &p, NULL);
}

int store_job_update(struct store *s, const struct job *j)
{
	struct params p = { 0 };
	p_text(&p, j->id);
	p_int(&p, j->target_idx);
	p_text(&p, j->provider);
	p_text(&p, j->model);
	p_int(&p, (int)j->status);
	p_text(&p, j->request_id);
	p_text(&p, j->output);
	p_text(&p, j->error_code);
	p_text(&p, j->error_message);
	p_text(&p, j->data);
	p_int(&p, j->attempt);
	p_int(&p, j->polls);
	p_int(&p, j->updated_at);
	if (j->completed_at)
		p_int(&p, j->completed_at);
	else
		p_text(&p, NULL);
	p_int(&p, j->submit_deadline);
	p_int(&p, j->deadline);
	PGresult *r;
	int rc = write_q(s, Q_JOB_UPDATE, &p, &r);
	if (rc < 0)
		return rc;
	int n = atoi(PQcmdTuples(r));
	PQclear(r);
	if (n == 0) {
		/* Ended meanwhile by another worker or instance (a callback racing a
		 * poll): this caller's copy is stale. It rolls back, and its work
		 * row, run again, finds the job ended. */
		snprintf(s->err, sizeof s->err, "postgresql: job %s already ended elsewhere", j->id);
		return -2;
	}
	return 0;
}

static char *val_dup(PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? NULL : strdup(PQgetvalue(r, row, col));
}

static int64_t val_int(PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static void read_job(PGresult *r, int row, struct job *j)
{
	memset(j, 0, sizeof *j);
	copy_val(r, row, 0, j->id, sizeof j->id);
	j->customer = val_dup(r, row, 1);
	j->model_id = val_dup(r, row, 2);
	j->targets = val_dup(r, row, 3);
	j->target_idx = (int)val_int(r, row, 4);
	j->provider = val_dup(r, row, 5);
	j->model = val_dup(r, row, 6);
	j->status = (enum job_status)val_int(r, row, 7);
	j->request_id = val_dup(r, row, 8);
	j->track_id = val_dup(r, row, 9);
	j->input = val_dup(r, row, 10);
	j->webhook_url = val_dup(r, row, 11);
	j->hook = val_dup(r, row, 12);
	j->output = val_dup(r, row, 13);
	j->error_code = val_dup(r, row, 14);
	j->error_message = val_dup(r, row, 15);
	j->data = val_dup(r, row, 16);
	j->attempt = (int)val_int(r, row, 17);
	j->polls = (int)val_int(r, row, 18);
	j->created_at = val_int(r, row, 19);
	j->updated_at = val_int(r, row, 20);
	j->completed_at = val_int(r, row, 21);
	j->submit_deadline = val_int(r, row, 22);
	j->deadline = val_int(r, row, 23);
}

int store_job_get(struct store *s, const char *id, const char *customer, struct job *j)
{
	struct params p = { 0 };
	PGresult *r;
	p_text(&p, id);
	if (customer)
		p_text(&p, customer);
	int q = customer ? Q_JOB_GET_C : Q_JOB_GET;
	int rc = read_row(s, q, &p, &r);
	if (rc == 0) {
		read_job(r, 0, j);
		PQclear(r);
	}
	return rc;
}

json_t *store_job_list(struct store *s, const char *customer, const char *status,
		       const char *cursor, int limit)
{
	char text[512];
	struct params p = { 0 };
	enum job_status js = JOB_QUEUED;
	p_text(&p, customer);
	int n_status = 0, n_cursor = 0;
	if (status) {
		p_int(&p, job_status_parse(status, &js) == 0 ? (int)js : -1);
		n_status = p.n;
	}
	if (cursor) {
		p_text(&p, cursor);
		n_cursor = p.n;
	}
	p_int(&p, limit + 1);
	char cs[32] = "", cc[32] = "";
	if (n_status)
		snprintf(cs, sizeof cs, " AND status=$%d", n_status);
	if (n_cursor)
		snprintf(cc, sizeof cc, " AND id<$%d", n_cursor);
	snprintf(text, sizeof text, "SELECT " JOB_COLS " FROM jobs WHERE customer=$1%s%s "
		 "ORDER BY id DESC LIMIT $%d", cs, cc, p.n);
	if (ensure_conn(s) < 0)
		return NULL;
	PGresult *r = PQexecParams(s->conn, text, p.n, NULL, p.v, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		fail_res(s, r);
		PQclear(r);
		return NULL;
	}
	json_t *arr = json_array(), *next = json_null();
	int rows = PQntuples(r);
	for (int i = 0; i < rows; i++) {
		if (i == limit) {
			json_decref(next);
			next = json_string(json_string_value(json_object_get(
				json_array_get(arr, json_array_size(arr) - 1), "job_id")));
			break;
		}
		struct job j;
		read_job(r, i, &j);
		json_array_append_new(arr, job_to_json(&j));
		job_clear(&j);
	}
	PQclear(r);
	json_t *o = json_object();
	json_object_set_new(o, "data", arr);
	json_object_set_new(o, "next_cursor", next);
	return o;
}

static int64_t count_query(struct store *s, int qi, int kind)
{
	struct params p = { 0 };
	PGresult *r;
	if (kind)
		p_int(&p, kind);
	if (read_row(s, qi, &p, &r) != 0)
		return -1;
	int64_t n = val_int(r, 0, 0);
	PQclear(r);
	return n;
}

int64_t store_job_count(struct store *s)
{
	return count_query(s, Q_JOB_COUNT, 0);
}

int store_queue_stats(struct store *s, int64_t now, struct store_queue *qs)
{
	struct params p = { 0 };
	PGresult *r;
	p_int(&p, now);
	if (read_row(s, Q_QUEUE_STATS, &p, &r) != 0)
		return -1;
	qs->due = val_int(r, 0, 0);
	qs->leased = val_int(r, 0, 1);
	qs->waiting = val_int(r, 0, 2);
	qs->oldest_due_at = val_int(r, 0, 3);
	qs->size_bytes = val_int(r, 0, 4);
	PQclear(r);
	return 0;
}

int64_t store_work_count(struct store *s, enum work_kind kind)
{
	return count_query(s, Q_WORK_COUNT, (int)kind);
}

int store_idem_get(struct store *s, const char *customer, const char *key,
		   char *hash, size_t hashlen, char *job_id, size_t idlen)
{
	struct params p = { 0 };
	PGresult *r;
	p_text(&p, customer);
	p_text(&p, key);
	int rc = read_row(s, Q_IDEM_GET, &p, &r);
	if (rc == 0) {
		copy_val(r, 0, 0, hash, hashlen);
		copy_val(r, 0, 1, job_id, idlen);
		PQclear(r);
	}
	return rc;
}

int store_idem_put(struct store *s, const char *customer, const char *key,
		   const char *hash, const char *job_id, int64_t now)
{
	struct params p = { 0 };
	p_text(&p, customer);
	p_text(&p, key);
	p_text(&p, hash);
	p_text(&p, job_id);
	p_int(&p, now);
	return write_q(s, Q_IDEM_PUT, &p, NULL);
}

int store_work_add(struct store *s, const char *job_id, enum work_kind kind,
		   const char *ref, int64_t due_at, const char *owner,
		   int64_t lease_until, int64_t *id)
{
	struct params p = { 0 };
	PGresult *r;
	p_text(&p, job_id);
	p_int(&p, (int)kind);
	p_text(&p, ref);
	p_int(&p, due_at);
	p_text(&p, owner);
	p_int(&p, owner ? lease_until : 0);
	int rc = write_q(s, Q_WORK_ADD, &p, &r);
	if (rc == 0) {
		if (id)
			*id = val_int(r, 0, 0);
		PQclear(r);
	}
	return rc;
}

int store_work_claim(struct store *s, const char *owner, int64_t now,
		     int64_t lease_ms, struct work *out, size_t max, size_t *n)
{
	struct params p = { 0 };
	PGresult *r;
	*n = 0;
	p_text(&p, owner);
	p_int(&p, now + lease_ms);
	p_int(&p, now);
	p_int(&p, (int64_t)max);
	int rc = write_q(s, Q_WORK_CLAIM, &p, &r);
	if (rc < 0)
		return rc;
	int rows = PQntuples(r);
	for (int i = 0; i < rows && *n < max; i++) {
		struct work *w = &out[(*n)++];
		memset(w, 0, sizeof *w);
		w->id = val_int(r, i, 0);
		copy_val(r, i, 1, w->job_id, sizeof w->job_id);
		w->kind = (enum work_kind)val_int(r, i, 2);
		copy_val(r, i, 3, w->ref, sizeof w->ref);
		w->due_at = val_int(r, i, 4);
		w->tries = (int)val_int(r, i, 5);
	}
	PQclear(r);
	return 0;
}

int store_work_done(struct store *s, int64_t id)
{
	struct params p = { 0 };
	p_int(&p, id);
	return write_q(s, Q_WORK_DONE, &p, NULL);
}

int store_work_reschedule(struct store *s, int64_t id, int64_t due_at, int tries)
{
	struct params p = { 0 };
	p_int(&p, id);
	p_int(&p, due_at);
	p_int(&p, tries);
	return write_q(s, Q_WORK_RESCHED, &p, NULL);
}

int store_work_become(struct store *s, int64_t id, enum work_kind kind, int64_t due_at)
{
	struct params p = { 0 };
	p_int(&p, id);
	p_int(&p, (int)kind);
	p_int(&p, due_at);
	return write_q(s, Q_WORK_BECOME, &p, NULL);
}

int store_work_drop(struct store *s, const char *job_id, enum work_kind kind,
		    int64_t keep_id)
{
	/* kind 0 drops every kind except deliveries, which outlive the job's end. */
	struct params p = { 0 };
	p_text(&p, job_id);
	p_int(&p, kind ? (int)kind : WORK_DELIVER);
	p_int(&p, keep_id);
	return write_q(s, kind ? Q_WORK_DROP_K : Q_WORK_DROP_ALL, &p, NULL);
}

int store_work_next_due(struct store *s, int64_t now, int64_t *due)
{
	struct params p = { 0 };
	PGresult *r;
	p_int(&p, now);
	int rc = read_row(s, Q_WORK_NEXT, &p, &r);
	if (rc != 0)
		return rc;
	rc = 1;
	if (!PQgetisnull(r, 0, 0)) {
		*due = val_int(r, 0, 0);
		rc = 0;
	}
	PQclear(r);
	return rc;
}

int store_work_release(struct store *s, const char *owner)
{
	struct params p = { 0 };
	p_text(&p, owner);
	return write_q(s, Q_WORK_RELEASE, &p, NULL);
}

int store_work_release_prefix(struct store *s, const char *prefix)
{
	struct params p = { 0 };
	p_text(&p, prefix);
	return write_q(s, Q_WORK_RELEASE_P, &p, NULL);
}

int store_work_renew(struct store *s, const char *owner, const int64_t *ids, size_t n,
		     int64_t lease_until)
{
	if (n == 0)
		return 0;
	/* The ids as an array literal, "{1,2,3}". */
	char *arr = malloc(n * 21 + 3);
	if (!arr) {
		snprintf(s->err, sizeof s->err, "out of memory");
		return -1;
	}
	size_t len = 0;
	arr[len++] = '{';
	for (size_t i = 0; i < n; i++)
		len += (size_t)sprintf(arr + len, "%s%lld", i ? "," : "", (long long)ids[i]);
	arr[len++] = '}';
	arr[len] = '\0';
	struct params p = { 0 };
	p_text(&p, owner);
	p_int(&p, lease_until);
	p_text(&p, arr);
	int rc = write_q(s, Q_WORK_RENEW, &p, NULL);
	free(arr);
	return rc;
}

json_t *store_work_owners(struct store *s)
{
	PGresult *r;
	json_t *a = json_array();
	if (run(s, Q_WORK_OWNERS, NULL, &r) < 0)
		return a;
	for (int i = 0; i < PQntuples(r); i++)
		json_array_append_new(a, json_string(PQgetvalue(r, i, 0)));
	PQclear(r);
	return a;
}

int store_delivery_insert(struct store *s, const struct delivery *d)
{
	struct params p = { 0 };
	p_text(&p, d->id);
	p_text(&p, d->job_id);
	p_text(&p, d->event);
	p_text(&p, d->url);
	p_text(&p, d->status);
	p_int(&p, d->attempts);
	p_int(&p, d->created_at);
	p_int(&p, d->next_at);
	return write_q(s, Q_DLV_INSERT, &p, NULL);
}

int store_delivery_update(struct store *s, const struct delivery *d)
{
	struct params p = { 0 };
	p_text(&p, d->id);
	p_text(&p, d->status);
	p_int(&p, d->attempts);
	p_int(&p, d->next_at);
	return write_q(s, Q_DLV_UPDATE, &p, NULL);
}

int store_delivery_get(struct store *s, const char *id, struct delivery *d)
{
	struct params p = { 0 };
	PGresult *r;
	p_text(&p, id);
	int rc = read_row(s, Q_DLV_GET, &p, &r);
	if (rc != 0)
		return rc;
	memset(d, 0, sizeof *d);
	copy_val(r, 0, 0, d->id, sizeof d->id);
	copy_val(r, 0, 1, d->job_id, sizeof d->job_id);
	copy_val(r, 0, 2, d->event, sizeof d->event);
	d->url = val_dup(r, 0, 3);
	copy_val(r, 0, 4, d->status, sizeof d->status);
	d->attempts = (int)val_int(r, 0, 5);
	d->created_at = val_int(r, 0, 6);
	d->next_at = val_int(r, 0, 7);
	PQclear(r);
	return 0;
}

int store_attempt_insert(struct store *s, const char *delivery_id,
			 const char *job_id, int64_t at, long status,
			 double latency_ms, const char *error,
			 const char *script_version, const char *body, size_t body_len)
{
	struct params p = { 0 };
	p_text(&p, delivery_id);
	p_text(&p, job_id);
	p_int(&p, at);
	if (status)
		p_int(&p, status);
	else
		p_text(&p, NULL);
	p_double(&p, latency_ms);
	p_text(&p, error);
	p_text(&p, script_version);
	if (body)
		p_bytes(&p, body, body_len);
	else
		p_text(&p, NULL);
	return write_q(s, Q_ATT_INSERT, &p, NULL);
}

static json_t *val_json_str(PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? json_null() : json_string(PQgetvalue(r, row, col));
}

/* A body kept as bytes (read back in hex) as a JSON string: UTF-8 text as
 * it is, anything else a note (JSON carries UTF-8 only). */
static json_t *hex_text(const char *hex)
{
	size_t n = strlen(hex) / 2;
	char *raw = malloc(n + 1);
	json_t *v = NULL;
	if (raw && sign_hex_decode(hex, 2 * n, raw, n + 1) == (int)n)
		v = json_stringn(raw, n);
	free(raw);
	return v ? v : json_string("(not UTF-8 text)");
}

json_t *store_job_deliveries(struct store *s, const char *job_id)
{
	struct params p = { 0 };
	PGresult *r;
	p_text(&p, job_id);
	json_t *arr = json_array();
	if (run(s, Q_DLV_OF_JOB, &p, &r) < 0)
		return arr;
	for (int i = 0; i < PQntuples(r); i++) {
		json_t *d = json_object();
		json_object_set_new(d, "delivery_id", val_json_str(r, i, 0));
		json_object_set_new(d, "event", val_json_str(r, i, 1));
		json_object_set_new(d, "url", val_json_str(r, i, 2));
		json_object_set_new(d, "status", val_json_str(r, i, 3));
		json_object_set_new(d, "attempt_count", json_integer(val_int(r, i, 4)));
		json_object_set_new(d, "created_at", job_time_json(val_int(r, i, 5)));
		int64_t next = val_int(r, i, 6);
		json_object_set_new(d, "next_attempt_at", next ? job_time_json(next) : json_null());
		json_array_append_new(arr, d);
	}
	PQclear(r);
	size_t i;
	json_t *d;
	json_array_foreach(arr, i, d) {
		struct params pa = { 0 };
		PGresult *a;
		p_text(&pa, json_string_value(json_object_get(d, "delivery_id")));
		json_t *atts = json_array();
		if (run(s, Q_ATT_OF_DLV, &pa, &a) == 0) {
			for (int k = 0; k < PQntuples(a); k++) {
				json_t *o = json_object();
				json_object_set_new(o, "at", job_time_json(val_int(a, k, 0)));
				json_object_set_new(o, "status_code", PQgetisnull(a, k, 1)
					? json_null() : json_integer(val_int(a, k, 1)));
				json_object_set_new(o, "latency_ms",
						    json_real(strtod(PQgetvalue(a, k, 2), NULL)));
				json_object_set_new(o, "error", val_json_str(a, k, 3));
				json_object_set_new(o, "script_version", val_json_str(a, k, 4));
				if (!PQgetisnull(a, k, 5))
					json_object_set_new(o, "body", hex_text(PQgetvalue(a, k, 5)));
				json_array_append_new(atts, o);
			}
			PQclear(a);
		}
		json_object_set_new(d, "attempts", atts);
	}
	return arr;
}

int store_callback_insert(struct store *s, const char *job_id, const char *provider,
			  int64_t at, const char *outcome, const char *body, size_t bodylen)
{
	struct params p = { 0 };
	p_text(&p, job_id);
	p_text(&p, provider);
	p_int(&p, at);
	p_text(&p, outcome);
	/* Raw bytes as the provider sent them (not necessarily UTF-8). */
	if (body)
		p_bytes(&p, body, bodylen);
	else
		p_text(&p, NULL);
	return write_q(s, Q_CB_INSERT, &p, NULL);
}

int store_event_add(struct store *s, const char *job_id, int64_t at,
		    const char *kind, const char *detail)
{
	struct params p = { 0 };
	p_text(&p, job_id);
	p_int(&p, at);
	p_text(&p, kind);
	p_text(&p, detail);
	return write_q(s, Q_EV_ADD, &p, NULL);
}

json_t *store_job_events(struct store *s, const char *job_id)
{
	struct params p = { 0 };
	PGresult *r;
	p_text(&p, job_id);
	json_t *arr = json_array();
	if (run(s, Q_EV_LIST, &p, &r) < 0)
		return arr;
	for (int i = 0; i < PQntuples(r); i++) {
		json_t *o = json_object();
		json_object_set_new(o, "at", job_time_json(val_int(r, i, 0)));
		json_object_set_new(o, "kind", val_json_str(r, i, 1));
		const char *detail = PQgetisnull(r, i, 2) ? NULL : PQgetvalue(r, i, 2);
		json_t *dj = detail ? json_loads(detail, 0, NULL) : NULL;
		json_object_set_new(o, "detail", dj ? dj : val_json_str(r, i, 2));
		json_array_append_new(arr, o);
	}
	PQclear(r);
	return arr;
}

/* One purge batch: the finished jobs with no work left, oldest first, and
 * everything that hangs off them; SKIP LOCKED so it never waits on a worker. */
static const char purge_sql[] =
	"WITH ids AS (SELECT id FROM jobs WHERE completed_at IS NOT NULL AND completed_at<$1"
	" AND status IN (2,3,4) AND NOT EXISTS (SELECT 1 FROM work WHERE work.job_id=jobs.id)"
	" ORDER BY completed_at LIMIT $2 FOR UPDATE SKIP LOCKED),"
	" a AS (DELETE FROM attempts WHERE job_id IN (SELECT id FROM ids)),"
	" d AS (DELETE FROM deliveries WHERE job_id IN (SELECT id FROM ids)),"
	" e AS (DELETE FROM events WHERE job_id IN (SELECT id FROM ids)),"
	" c AS (DELETE FROM callbacks WHERE job_id IN (SELECT id FROM ids)),"
	" k AS (DELETE FROM idempotency WHERE job_id IN (SELECT id FROM ids))"
	" DELETE FROM jobs WHERE id IN (SELECT id FROM ids)";

int store_purge(struct store *s, int64_t before, int limit, int *purged)
{
	*purged = 0;
	if (s->batching || s->in_tx) {
		snprintf(s->err, sizeof s->err, "store_purge runs outside transactions");
		return -1;
	}
	int rc = ensure_conn(s);
	if (rc < 0)
		return rc;
	struct params p = { 0 };
	p_int(&p, before);
	p_int(&p, limit);
	PGresult *r = PQexecParams(s->conn, purge_sql, p.n, NULL, p.v, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		rc = fail_res(s, r);
		PQclear(r);
		return rc;
	}
	*purged = atoi(PQcmdTuples(r));
	PQclear(r);
	return 0;
}

/* ---------- provider caps, event counts ---------- */

int store_work_take_slot(struct store *s, int64_t id, const char *provider, int64_t due_at,
			 int64_t now, long cap, int64_t hold_ms)
{
	struct params p = { 0 };
	PGresult *r;
	p_text(&p, provider);
	int rc = write_q(s, Q_SLOT_LOCK, &p, NULL);
	if (rc < 0)
		return rc;
	p_int(&p, now);
	p_int(&p, id);
	p_int(&p, due_at);
	rc = run(s, Q_SLOT_COUNT, &p, &r);
	if (rc < 0)
		return rc;
	int64_t inflight = val_int(r, 0, 0), ahead = val_int(r, 0, 1);
	PQclear(r);
	int admit = inflight + ahead < (int64_t)cap;
	struct params q = { 0 };
	p_int(&q, id);
	if (!admit) {
		int64_t place = 1 + ahead / (cap > 0 ? cap : 1);
		p_int(&q, now + hold_ms * (place > 20 ? 20 : place));
	}
	rc = write_q(s, admit ? Q_SLOT_TAKE : Q_SLOT_HOLD, &q, NULL);
	return rc < 0 ? rc : admit;
}

int64_t store_event_count(struct store *s, const char *job_id, const char *kind)
{
	struct params p = { 0 };
	PGresult *r;
	p_text(&p, job_id);
	p_text(&p, kind);
	if (run(s, Q_EV_COUNT, &p, &r) < 0)
		return -1;
	int64_t n = val_int(r, 0, 0);
	PQclear(r);
	return n;
}

/* ---------- admin views (dashboard) ---------- */

/* Runs one statement built from trusted text with p's parameters; the rows,
 * or NULL on error (recorded). Caller PQclears. */
static PGresult *query_once(struct store *s, const char *text, struct params *p)
{
	if (ensure_conn(s) < 0)
		return NULL;
	PGresult *r = PQexecParams(s->conn, text, p->n, NULL, p->v, p->len, p->fmt, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		fail_res(s, r);
		PQclear(r);
		return NULL;
	}
	return r;
}

/* ---------- usage ---------- */

int store_usage_add(struct store *s, const char *job_id, const char *customer,
		    const char *provider, const char *model, double amount,
		    const char *unit, const char *source, int64_t at)
{
	struct params p = { 0 };
	char amt[40];
	snprintf(amt, sizeof amt, "%.17g", amount);
	p_text(&p, job_id);
	p_text(&p, customer);
	p_text(&p, provider);
	p_text(&p, model);
	p_text(&p, amt);
	p_text(&p, unit);
	p_text(&p, source);
	p_int(&p, at);
	PGresult *r = query_once(s, "INSERT INTO usage(job_id,customer,provider,model,amount,unit,source,at)"
				 " VALUES($1,$2,$3,$4,$5::double precision,$6,$7,$8::bigint)"
				 " ON CONFLICT (job_id) DO NOTHING RETURNING 1", &p);
	if (!r)
		return -1;
	PQclear(r);
	return 0;
}

json_t *store_usage_totals(struct store *s, const char *customer, int64_t from, int64_t to,
			   const char *group_by)
{
	const char *key = !group_by ? "''"
		: strcmp(group_by, "model") == 0 ? "coalesce(provider,'')||':'||coalesce(model,'')"
		: strcmp(group_by, "provider") == 0 ? "coalesce(provider,'')"
		: strcmp(group_by, "day") == 0
		? "to_char(to_timestamp(at / 1000) AT TIME ZONE 'UTC', 'YYYY-MM-DD')" : "''";
	char text[600];
	snprintf(text, sizeof text, "SELECT customer, %s, unit, sum(amount), count(*) FROM usage"
		 " WHERE ($1::text IS NULL OR customer=$1::text) AND at>=$2::bigint AND at<$3::bigint"
		 " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3", key);
	struct params p = { 0 };
	p_text(&p, customer);
	p_int(&p, from);
	p_int(&p, to);
	PGresult *r = query_once(s, text, &p);
	if (!r)
		return NULL;
	json_t *arr = json_array();
	for (int i = 0; i < PQntuples(r); i++) {
		json_t *o = json_object();
		if (!customer)
			json_object_set_new(o, "customer", json_string(PQgetvalue(r, i, 0)));
		if (group_by)
			json_object_set_new(o, "key", json_string(PQgetvalue(r, i, 1)));
		json_object_set_new(o, "unit", json_string(PQgetvalue(r, i, 2)));
		json_object_set_new(o, "amount", json_real(strtod(PQgetvalue(r, i, 3), NULL)));
		json_object_set_new(o, "jobs", json_integer(val_int(r, i, 4)));
		json_array_append_new(arr, o);
	}
	PQclear(r);
	return arr;
}

/* Appends " AND <col><op>$n" for a parameter just added. */
static void cond(char *out, size_t outlen, const char *fmt, int n)
{
	size_t used = strlen(out);
	snprintf(out + used, outlen - used, fmt, n, n);
}

json_t *store_job_search(struct store *s, const struct job_filter *f)
{
	char where[512] = "", text[1024];
	struct params p = { 0 };
	enum job_status js = JOB_QUEUED;
	if (f->customer) {
		p_text(&p, f->customer);
		cond(where, sizeof where, " AND customer=$%d", p.n);
	}
	if (f->provider) {
		p_text(&p, f->provider);
		cond(where, sizeof where, " AND provider=$%d", p.n);
	}
	if (f->status) {
		p_int(&p, job_status_parse(f->status, &js) == 0 ? (int)js : -1);
		cond(where, sizeof where, " AND status=$%d", p.n);
	}
	if (f->q) {
		p_text(&p, f->q);
		cond(where, sizeof where, " AND (id=$%d OR track_id=$%d)", p.n);
	}
	if (f->since) {
		p_int(&p, f->since);
		cond(where, sizeof where, " AND created_at>=$%d", p.n);
	}
	if (f->until) {
		p_int(&p, f->until);
		cond(where, sizeof where, " AND created_at<$%d", p.n);
	}
	if (f->cursor) {
		p_text(&p, f->cursor);
		cond(where, sizeof where, " AND id<$%d", p.n);
	}
	p_int(&p, f->limit + 1);
	snprintf(text, sizeof text, "SELECT " JOB_COLS " FROM jobs WHERE true%s ORDER BY id DESC LIMIT $%d",
		 where, p.n);
	PGresult *r = query_once(s, text, &p);
	if (!r)
		return NULL;
	json_t *arr = json_array(), *next = json_null();
	for (int i = 0; i < PQntuples(r); i++) {
		if (i == f->limit) {
			json_decref(next);
			next = json_string(json_string_value(json_object_get(
				json_array_get(arr, json_array_size(arr) - 1), "job_id")));
			break;
		}
		struct job j;
		read_job(r, i, &j);
		json_t *o = job_to_json(&j);
		json_object_set_new(o, "customer", json_string(j.customer));
		json_array_append_new(arr, o);
		job_clear(&j);
	}
	PQclear(r);
	return json_pack("{s:o,s:o}", "data", arr, "next_cursor", next);
}

json_t *store_delivery_list(struct store *s, const char *state, const char *customer, int limit)
{
	char text[1024];
	struct params p = { 0 };
	int dead = strcmp(state, "dead") == 0;
	p_int(&p, limit);
	if (customer)
		p_text(&p, customer);
	snprintf(text, sizeof text,
		 "SELECT d.id, d.job_id, j.customer, d.event, d.url, d.status, d.attempts, d.next_at,"
		 " (SELECT a.status_code FROM attempts a WHERE a.delivery_id=d.id ORDER BY a.id DESC LIMIT 1),"
		 " (SELECT a.error FROM attempts a WHERE a.delivery_id=d.id ORDER BY a.id DESC LIMIT 1)"
		 " FROM deliveries d JOIN jobs j ON j.id=d.job_id"
		 " WHERE %s%s ORDER BY d.created_at DESC LIMIT $1",
		 dead ? "d.status='dead'" : "d.status='pending' AND d.attempts>0",
		 customer ? " AND j.customer=$2" : "");
	PGresult *r = query_once(s, text, &p);
	if (!r)
		return NULL;
	json_t *arr = json_array();
	for (int i = 0; i < PQntuples(r); i++) {
		json_t *d = json_object();
		json_object_set_new(d, "delivery_id", val_json_str(r, i, 0));
		json_object_set_new(d, "job_id", val_json_str(r, i, 1));
		json_object_set_new(d, "customer", val_json_str(r, i, 2));
		json_object_set_new(d, "event", val_json_str(r, i, 3));
		json_object_set_new(d, "url", val_json_str(r, i, 4));
		json_object_set_new(d, "status", val_json_str(r, i, 5));
		json_object_set_new(d, "attempt_count", json_integer(val_int(r, i, 6)));
		int64_t next = val_int(r, i, 7);
		json_object_set_new(d, "next_attempt_at", next ? job_time_json(next) : json_null());
		json_object_set_new(d, "last_status_code", PQgetisnull(r, i, 8)
				    ? json_null() : json_integer(val_int(r, i, 8)));
		json_object_set_new(d, "last_error", val_json_str(r, i, 9));
		json_array_append_new(arr, d);
	}
	PQclear(r);
	return arr;
}

json_t *store_provider_stats(struct store *s, int64_t since)
{
	struct params p = { 0 };
	p_int(&p, since);
	PGresult *r = query_once(s,
		"SELECT provider, status, count(*), avg(completed_at-created_at),"
		" max(completed_at-created_at) FROM jobs"
		" WHERE completed_at>=$1 AND provider IS NOT NULL GROUP BY provider, status", &p);
	if (!r)
		return NULL;
	json_t *o = json_object();
	for (int i = 0; i < PQntuples(r); i++) {
		const char *prov = PQgetvalue(r, i, 0);
		enum job_status js = (enum job_status)val_int(r, i, 1);
		json_t *e = json_object_get(o, prov);
		if (!e) {
			e = json_pack("{s:i,s:i,s:i,s:n,s:n}", "succeeded", 0, "failed", 0,
				      "canceled", 0, "avg_duration_ms", "max_duration_ms");
			json_object_set_new(o, prov, e);
		}
		json_object_set_new(e, job_status_name(js), json_integer(val_int(r, i, 2)));
		if (js == JOB_SUCCEEDED) {
			json_object_set_new(e, "avg_duration_ms", json_real(strtod(PQgetvalue(r, i, 3), NULL)));
			json_object_set_new(e, "max_duration_ms", json_integer(val_int(r, i, 4)));
		}
	}
	PQclear(r);
	return o;
}

json_t *store_job_callbacks(struct store *s, const char *job_id)
{
	struct params p = { 0 };
	PGresult *r;
	p_text(&p, job_id);
	if (run(s, Q_CB_OF_JOB, &p, &r) < 0)
		return NULL;
	json_t *arr = json_array();
	for (int i = 0; i < PQntuples(r); i++) {
		json_t *o = json_object();
		json_object_set_new(o, "at", job_time_json(val_int(r, i, 0)));
		json_object_set_new(o, "provider", val_json_str(r, i, 1));
		json_object_set_new(o, "outcome", val_json_str(r, i, 2));
		json_object_set_new(o, "body_bytes", json_integer(val_int(r, i, 3)));
		json_array_append_new(arr, o);
	}
	PQclear(r);
	return arr;
}

static const char *nonempty(const char *v)
{
	return v && v[0] ? v : NULL;
}

static int64_t pg_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A write of one row: 0 when it changed one, 1 when none, <0 error. */
static int write_one(struct store *s, int qi, struct params *p)
{
	PGresult *r;
	int rc = write_q(s, qi, p, &r);
	if (rc < 0)
		return rc;
	int n = r ? atoi(PQcmdTuples(r)) : 0;
	PQclear(r);
	return n == 1 ? 0 : 1;
}

int store_customer_add(struct store *s, const struct store_customer *c)
{
	struct params p = { 0 };
	p_text(&p, c->name);
	p_text(&p, c->key_sha256);
	p_text(&p, nonempty(c->webhook_secret));
	p_text(&p, nonempty(c->hook));
	p_text(&p, nonempty(c->webhook_url));
	p_int(&p, c->created_at);
	return write_one(s, Q_CUST_ADD, &p);
}

int store_customer_set_key(struct store *s, const char *name, const char *key_sha256)
{
	struct params p = { 0 };
	p_text(&p, name);
	p_text(&p, key_sha256);
	p_int(&p, pg_wall_ms());
	return write_one(s, Q_CUST_KEY, &p);
}

int store_customer_get(struct store *s, const char *key_sha256, const char *name,
		       struct store_customer *out)
{
	struct params p = { 0 };
	PGresult *r;
	p_text(&p, key_sha256 ? key_sha256 : name);
	int rc = read_row(s, key_sha256 ? Q_CUST_BY_KEY : Q_CUST_BY_NAME, &p, &r);
	if (rc == 0) {
		copy_val(r, 0, 0, out->name, sizeof out->name);
		copy_val(r, 0, 1, out->key_sha256, sizeof out->key_sha256);
		copy_val(r, 0, 2, out->webhook_secret, sizeof out->webhook_secret);
		copy_val(r, 0, 3, out->hook, sizeof out->hook);
		copy_val(r, 0, 4, out->webhook_url, sizeof out->webhook_url);
		out->created_at = val_int(r, 0, 5);
		PQclear(r);
	}
	return rc;
}

json_t *store_customer_list(struct store *s)
{
	PGresult *r;
	if (run(s, Q_CUST_LIST, NULL, &r) < 0)
		return NULL;
	json_t *arr = json_array();
	for (int i = 0; i < PQntuples(r); i++) {
		json_t *o = json_object();
		json_object_set_new(o, "name", val_json_str(r, i, 0));
		json_object_set_new(o, "hook", val_json_str(r, i, 1));
		json_object_set_new(o, "webhook_url", val_json_str(r, i, 2));
		json_object_set_new(o, "has_webhook_secret", json_boolean(PQgetvalue(r, i, 3)[0] == 't'));
		json_object_set_new(o, "created_at", job_time_json(val_int(r, i, 4)));
		json_array_append_new(arr, o);
	}
	PQclear(r);
	return arr;
}

int store_customer_remove(struct store *s, const char *name)
{
	struct params p = { 0 };
	p_text(&p, name);
	return write_one(s, Q_CUST_DEL, &p);
}

static const struct store_ops pg_ops = { STORE_OPS_INIT("postgresql") };
