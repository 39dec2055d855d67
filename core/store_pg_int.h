/*
 * store_pg_int.h: private to the PostgreSQL store (store_pg*.c). The files
 * are layered, each calling only the ones below it (tools/layers checks it
 * on the built objects):
 *
 *   store_pg.c         the hot path (jobs, work, deliveries), open and
 *                      close, the ops table (so it calls every file below)
 *   store_pg_views.c   the API's and the dashboard's listings, stats,
 *                      usage, customers, retention, the rate buckets
 *   store_pg_schema.c  the schema and its migrations (blocking, at open)
 *   store_pg_tx.c      units, batches, transactions; statements run in a
 *                      batch or ahead of it (pg_exec, pg_defer); work ids
 *   store_pg_conn.c    the connection, pipeline mode, the outbox, the round
 *                      trip (and what it reads back: a failed unit, a lost
 *                      batch), LISTEN/NOTIFY
 *   store_pg_cache.c   rows the connection read or wrote
 *   store_pg_stmt.c    the statements' texts, parameters, clocks, the
 *                      helpers that read a result's values and rows
 *
 * The connection runs in libpq's pipeline mode, nonblocking, for its whole
 * life (store_pg_conn.c). A statement is either *deferred* (a write whose
 * result no caller reads: queued in the store's outbox, sent with the next
 * round trip, its error noticed then) or *waited for* (a read, or a write
 * whose answer decides something: one round trip). In batching mode (a
 * worker's connection) the writes of one loop iteration are one transaction,
 * committed by store_flush in one round trip. Within it each store_begin
 * group, and each statement outside one, is a *unit* chained by savepoints,
 * rolled back alone when it fails. A unit that answers a request commits as
 * a transaction of its own at its close (one round trip) when the batch has
 * not reached the server, so its caller learns its fate; otherwise it joins
 * the batch, and if it fails it is rolled back alone like any other unit
 * while the batch commits: the answer it held is then a 503
 * (store_answer_lost), and the other steps' writes are kept. Reads, and claims, run
 * ahead of a batch the server has not seen, in autocommit, so the batch's
 * writes hold their locks for one round trip.
 *
 * Rows the connection read or wrote are kept in a small cache
 * (store_pg_cache.c) so the steps that follow a write on the same worker do
 * not read them back: a job or delivery is served from it only in the loop
 * iteration it was read or written in (store_idle() ends one), an ended job
 * (never written again) for PG_CACHE_ENDED_MS.
 */
#ifndef GENRELAY_STORE_PG_INT_H
#define GENRELAY_STORE_PG_INT_H

#define STORE_FN(name) pg_store_##name
#include "store_backend.h"
#include "store.h"

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#define PG_MAX_PARAMS 24

enum {
	Q_META_GET, Q_META_SET,
	Q_JOB_INSERT, Q_JOB_GET, Q_JOB_GET_C, Q_JOB_UPDATE, Q_JOB_UPDATE_DEFER, Q_JOB_MOVE, Q_JOB_MOVE_DEFER, Q_JOB_COUNT,
	Q_IDEM_GET, Q_IDEM_PUT,
	Q_WORK_ADD, Q_WORK_ADD_ID, Q_WORK_IDS, Q_WORK_CLAIM, Q_WORK_DONE, Q_WORK_RESCHED,
	Q_WORK_BECOME, Q_WORK_DROP_K, Q_WORK_DROP_ALL, Q_WORK_NEXT, Q_WORK_RELEASE,
	Q_WORK_RELEASE_P, Q_WORK_RENEW, Q_WORK_OWNERS, Q_WORK_COUNT,
	Q_DLV_INSERT, Q_DLV_GET, Q_DLV_UPDATE, Q_ATT_INSERT, Q_DLV_OF_JOB,
	Q_ATT_OF_DLV, Q_CB_INSERT, Q_EV_ADD, Q_EV_LIST,
	Q_SLOT_LOCK, Q_SLOT_COUNT, Q_SLOT_TAKE, Q_SLOT_HOLD, Q_EV_COUNT, Q_CB_OF_JOB,
	Q_CUST_ADD, Q_CUST_KEY, Q_CUST_BY_KEY, Q_CUST_BY_NAME, Q_CUST_LIST, Q_CUST_DEL,
	Q_QUEUE_STATS, Q_USAGE_ADD, Q_NOTIFY, Q_RATE_TAKE, Q_RATE_ROW, Q_WORK_AGAIN,
	Q_JOB_CHECK, Q_JOB_UPDATE_CHECKED, Q_JOB_SAME,
	Q_COUNT
};

/* The statements, prepared once per connection (store_pg_stmt.c). */
extern const char *const pg_sql[Q_COUNT];

/* What a queued result is, so the round trip that reads it knows what to do. */
enum pg_pend_kind {
	PEND_WRITE,    /* a deferred write: its error fails its unit */
	PEND_PREPARE,  /* PQsendPrepare of statement q */
	PEND_WANT,     /* a result the caller waits for (*dest) */
	PEND_CTL,      /* BEGIN, a savepoint: its failure loses the batch */
	PEND_UNIT,     /* the ROLLBACK TO SAVEPOINT that starts a unit */
	PEND_SYNC,     /* a sync point */
	PEND_UNIT_END, /* the sync that ends a unit (answer: it answers a request) */
};

#define PG_UNIT_UNDONE 2 /* pg_pend.answer: the caller rolled the unit back */
/* Answering units of one batch that may fail alone; past that the batch
 * is lost as a whole. */
#define PG_LOST_MAX 64
/* Work rows a connection makes due again at once after their outcome's
 * unit failed (store_idle); past that they wait for their lease. */
#define PG_AGAIN_MAX 128
/* How soon such a row runs again. */
#define PG_AGAIN_MS 1000

struct pg_pend {
	unsigned char kind;
	unsigned char answer; /* PEND_UNIT_END */
	short q;           /* statement index, or -1 */
	uint64_t mark;     /* PEND_UNIT_END: the unit's mark (store_answer_mark) */
	int64_t wid;       /* PEND_UNIT_END: the work row whose outcome it writes, or 0 */
	PGresult **dest;   /* PEND_WANT: where the result goes */
};

struct pg_cache;
struct pg_out;

/* A job's row the open group took from the cache as a guess (what the
 * database must still hold for the group's unit to stand). */
#define PG_MAX_GUESSES 4
struct pg_guess {
	char id[48];
	int64_t updated_at;
	int status, target_idx, attempt, polls;
	char *request_id; /* owned, or NULL */
	int checked;      /* its check is queued (or its update checks it) */
};

struct store {
	const struct store_ops *ops; /* first: store.c dispatches through it */
	PGconn *conn;
	char *conninfo;            /* the spec, owned */
	unsigned char prepared[Q_COUNT]; /* sent PQsendPrepare on this connection */
	int batching;
	int open;                  /* the batch transaction is open (BEGIN queued) */
	int tx_sent;               /* ... and its BEGIN reached libpq */
	int must_order;            /* reads may not go ahead of the batch's writes */
	uint64_t batch_id;         /* batches so far (the cache's dirty marks) */
	int in_tx;                 /* not batching: inside store_begin's BEGIN */
	int aborted;               /* the batch was lost: the rest of it fails */
	int depth;                 /* store_begin groups open */
	int in_unit;               /* a unit is open (store_pg_conn.c) */
	int unit_answer;           /* ... and answers a request */
	int mark_next;             /* the group's unit, once open, answers a request */
	size_t unit_start;         /* the open unit's first outbox entry */
	int alone;                 /* a round trip of a transaction of its own */
	int unit_failed;           /* reading results: the unit being read failed */
	uint64_t answer_seq;       /* answer marks given so far (store_answer_mark) */
	uint64_t lost[PG_LOST_MAX]; /* marks of this batch's units rolled back */
	size_t nlost;
	int64_t unit_work;         /* the open unit writes this work row's outcome (pg_unit_work) */
	int64_t again[PG_AGAIN_MAX]; /* work rows whose outcome was rolled back: due again soon */
	size_t nagain;
	int64_t retry_at;          /* monotonic ms: no reconnect before */
	struct pg_pend *pend;      /* results on their way, in order */
	size_t npend, cappend;
	struct pg_out *out;        /* queued, not handed to libpq yet (store_pg_conn.c) */
	size_t nout, capout;
	int64_t id_next, id_end;   /* work ids reserved from the sequence: [next, end) */
	int listening;             /* LISTEN on this connection (store_listen) */
	int nfd;                   /* dup of its socket the worker watches, or -1 */
	unsigned nfd_gen;          /* the connection nfd belongs to (conn_gen then) */
	unsigned conn_gen;         /* connections opened so far */
	int64_t notify_due;        /* earliest due time of unleased work written in the batch; 0 none */
	struct pg_cache *cache;
	uint64_t iteration;        /* store_idle() calls so far */
	struct pg_guess guess[PG_MAX_GUESSES]; /* the open group's guessed rows */
	int nguess;                /* ... how many */
	int guess_failed;          /* ... one was checked at once and failed */
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

/* ---- store_pg_stmt.c: parameters, clocks, a result's values and rows ---- */

void p_text(struct params *p, const char *v);
void p_int(struct params *p, int64_t v);
void p_double(struct params *p, double v);
void p_bytes(struct params *p, const char *v, size_t len);

int64_t pg_mono_ms(void);
int64_t pg_wall_ms(void);

#define JOB_COLS "id,customer,model_id,targets,target_idx,provider,model,status," \
	"request_id,track_id,input,webhook_url,hook,output,error_code,error_message," \
	"data,attempt,polls,created_at,updated_at,completed_at,submit_deadline,deadline"
#define JOB_NCOLS 24

void pg_copy_val(PGresult *r, int row, int col, char *out, size_t outlen);
char *pg_val_dup(PGresult *r, int row, int col);
int64_t pg_val_int(PGresult *r, int row, int col);
json_t *pg_val_json_str(PGresult *r, int row, int col);
/* Fills *j from row of r, columns from col on in JOB_COLS order. */
void pg_read_job(PGresult *r, int row, int col, struct job *j);

/* ---- store_pg_conn.c: the connection, the pipeline, the round trip ---- */

void pg_set_err(struct store *s, const char *what, const char *msg);
/* Opens s->conn (blocking; then pipeline mode). 0 or -2 with s->err. */
int pg_connect(struct store *s);
/* A usable connection, reconnecting after PG_RETRY_MS when the last one
 * was lost. 0 or -2. */
int pg_ensure(struct store *s);
/* Pipeline mode, nonblocking, after the blocking set-up of a connection
 * (store_open's migrations). 0 or -2 (the connection is dropped). */
int pg_start_pipeline(struct store *s);

/* A queued statement of the outbox (params copied, texts literal). */
struct pg_out {
	unsigned char kind, answer;
	short q;             /* >= 0 a prepared statement, -1 text, -2 a sync */
	uint64_t mark;       /* a sync that ends an answering unit: its answer mark */
	int64_t wid;         /* a sync that ends a unit: the work row it ends, or 0 */
	const char *text;
	PGresult **dest;
	int n;
	const char **v;      /* n values, then lengths and formats, in one block */
	int *len, *fmt;
};

int pg_lost(struct store *s, const char *why);
/* Blocking command before the pipeline starts (set-up, migrations); 0 or -1. */
int pg_command(struct store *s, const char *text);
void pg_outbox_clear(struct store *s);
int pg_outbox_add(struct store *s, struct pg_out o, const struct params *p);
int pg_send_text(struct store *s, const char *text, struct params *p, enum pg_pend_kind kind,
		 PGresult **dest);
int pg_send_q(struct store *s, int q, struct params *p, enum pg_pend_kind kind, PGresult **dest);
int pg_send_sync(struct store *s, enum pg_pend_kind kind, int answer);
/* Sends a sync and reads every result queued so far (see store_pg_conn.c). */
int pg_round_trip(struct store *s);
/* A unit failed (read back by pg_round_trip): mark is the answer mark of a
 * unit that answers a request, 0 for one that does not; wid the work row
 * whose outcome it wrote, or 0. */
void pg_unit_failed(struct store *s, uint64_t mark, int answers, int64_t wid);
/* The batch (or the caller's transaction) is lost: rolled back on the server,
 * the rest of the batch fails until store_flush. */
void pg_batch_lost(struct store *s);

/* ---- store_pg_tx.c: units, statements in a batch or ahead of it ---- */

/* In a batch: opens the batch transaction and the unit the next statements join. */
int pg_ensure_unit(struct store *s);
/* Ends the open unit (undo: rolls it back). 0 or -2. */
int pg_close_unit(struct store *s, int undo);
enum { PG_READ, PG_WRITE, PG_ALONE /* a write that may commit on its own */ };

/*
 * Runs statement q with p and waits for it (one round trip, with everything
 * queued before it). *out gets its result when out is non-NULL (caller
 * PQclears). 0, -1 (the statement failed), -2 (the store is unavailable,
 * or the batch it ran in was lost). mode PG_WRITE joins the batch; PG_READ
 * and PG_ALONE run ahead of it, in autocommit, while the server has seen
 * none of it (else in order, inside it).
 */
int pg_exec(struct store *s, int q, struct params *p, int mode, PGresult **out);
/* The same for a statement built at run time (admin views); reads only
 * outside a batch. */
int pg_exec_text(struct store *s, const char *text, struct params *p, PGresult **out);
/*
 * A write whose result nobody reads: in batching mode queued into the
 * batch (0 at once; an error fails the batch at store_flush); otherwise run
 * and waited for. libpq copies p's values when it queues the statement.
 */
int pg_defer(struct store *s, int q, struct params *p, enum pg_pend_kind kind);
/* The open unit answers a request (a run, a callback, a customer's read):
 * if it fails, it is rolled back alone and its answer says so
 * (store_answer_lost). */
void pg_mark_answer(struct store *s);
/* The next work id of the connection's reserved block (a round trip every
 * PG_ID_BLOCK ids). 0 or <0. */
int pg_work_id(struct store *s, int64_t *id);
/* The open (or next) unit writes the outcome of work row id (done,
 * rescheduled, turned into another kind): if the unit fails, the row runs
 * again within PG_AGAIN_MS instead of waiting for its lease. */
void pg_unit_work(struct store *s, int64_t id);
/* Unleased work due at due_at was written in this batch: the commit
 * announces it (NOTIFY) when it is due soon. */
void pg_note_due(struct store *s, int64_t due_at);
/*
 * In a store_begin group of a batch: j, taken from the cache as a guess
 * (pg_cache_guess_job), stands for the job's row. The group's unit checks
 * that the database still holds it (its writes are undone with the unit if
 * not: the caller answers 503, a step runs again): the job's update in the
 * group checks it (Q_JOB_UPDATE_CHECKED), else a check is queued into the
 * unit at the group's end (a group that wrote nothing opens one for it).
 * A group that turns out to answer a request (pg_mark_answer) checks its
 * guesses at once with a read instead, and its store_commit fails (-2, its
 * unit undone) if one does not hold: an answer's unit may join a batch
 * already on the server, which it must never make fail.
 * 0, or 1 when the group cannot take another guess (read the row instead).
 */
int pg_guess_job(struct store *s, const struct job *j);
/* The open group's guess of job id not checked yet, or NULL: its update
 * checks it instead (pg_guess_taken), saving the check of its own. */
const struct pg_guess *pg_guess_of(struct store *s, const char *id);
void pg_guess_taken(struct store *s, const struct pg_guess *g);
/* Queues g's check (Q_JOB_CHECK) into the open unit now, before a write of
 * the row whose own condition is not the guess (a move). */
int pg_guess_check(struct store *s, const struct pg_guess *g);

/* ---- store_pg_schema.c ---- */

/* Applies the migrations the database lacks, under an advisory lock. */
int pg_migrate(struct store *s, char *err, size_t errlen);

/* ---- store_pg_cache.c: rows this connection read or wrote ---- */

#define PG_CACHE_ENDED_MS 30000
/* How long a copy may be taken as a guess, checked by the unit that follows. */
#define PG_CACHE_SPEC_MS 60000

struct pg_cache *pg_cache_new(void);
void pg_cache_free(struct pg_cache *c);
/* Forgets everything (a rollback, a lost batch, a reconnect). */
void pg_cache_clear(struct pg_cache *c);
/* Keeps a copy of j, read or (write) written now in iteration it by batch
 * batch. A written copy stays until the batch ends: a read never replaces
 * it; 1 when a write had to replace another's (the batch's reads must then
 * keep their order), else 0. */
int pg_cache_put_job(struct pg_cache *c, const struct job *j, uint64_t it, uint64_t batch,
		     int write);
/* 0 with *j a copy (caller clears) when the cache may answer for id in
 * iteration it (dirty non-zero: only the copy batch dirty - 1 wrote); 1
 * otherwise. */
int pg_cache_get_job(struct pg_cache *c, const char *id, uint64_t it, uint64_t dirty,
		     struct job *j);
/* 0 with *j a copy (caller clears) of the job's row as this connection
 * inserted it (and has not written or read it since), up to PG_CACHE_SPEC_MS
 * ago, whatever the iteration: a guess that another connection may have made
 * stale since; 1 otherwise. write 2 at pg_cache_put_job: an insert. */
int pg_cache_guess_job(struct pg_cache *c, const char *id, struct job *j);
/* Forgets the copy of job id (the next read of it goes to the database). */
void pg_cache_drop_job(struct pg_cache *c, const char *id);
int pg_cache_put_delivery(struct pg_cache *c, const struct delivery *d, uint64_t it,
			  uint64_t batch, int write);
int pg_cache_get_delivery(struct pg_cache *c, const char *id, uint64_t it, struct delivery *d);

#endif
