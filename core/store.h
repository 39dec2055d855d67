/*
 * store.h: the durable job store.
 *
 * One store handle per worker thread (never shared). Every write that must be
 * atomic runs between store_begin() and store_commit(); a function that is
 * called outside a transaction commits on its own. Times are wall-clock
 * milliseconds. Return values: 0 ok, 1 not found (where noted), -1 error
 * (store_errmsg() says why), -2 busy/full (the caller answers 503).
 */
#ifndef GENRELAY_STORE_H
#define GENRELAY_STORE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "job.h"

struct store;

enum work_kind { WORK_SUBMIT = 1, WORK_POLL = 2, WORK_DELIVER = 3, WORK_CANCEL = 4 };

struct work {
	int64_t id;
	char job_id[48];
	enum work_kind kind;
	char ref[48];     /* delivery id for WORK_DELIVER */
	int64_t due_at;
	int tries;        /* retries so far; poll rows: consecutive 404 answers */
};

struct delivery {
	char id[48];      /* "msg_..." sent as webhook-id on every attempt */
	char job_id[48];
	char event[32];   /* job.succeeded, job.failed, job.canceled */
	char *url;        /* owned */
	char status[16];  /* pending, delivered, dead, skipped */
	int attempts;
	int64_t created_at;
	int64_t next_at;
};

/*
 * Refuses (-1 with err naming the file and the fix) a store file that group
 * or others may read or write, unless allow_insecure; makes -wal and -shm
 * files no wider than the database file. 0 when the file does not exist yet
 * (store_open creates it 0600) or the store is not a file.
 */
int store_check_permissions(const char *spec, int allow_insecure, char *err, size_t errlen);
/*
 * spec is "sqlite:PATH" (store_sqlite.c) or "postgresql://..." /
 * "postgres://..." (a libpq connection URI, store_pg.c); store.c dispatches
 * every function below to the backend the spec names. fsync: SQLite's
 * synchronous=FULL instead of NORMAL (PostgreSQL: synchronous_commit stays
 * on either way).
 * A new SQLite database file is created 0600 (its -wal and -shm get its
 * mode).
 */
struct store *store_open(const char *spec, int fsync, char *err, size_t errlen);
void store_close(struct store *s);
/* Caps the store file at max_bytes (0: no cap); writes past it fail with -2. */
int store_set_max_size(struct store *s, long long max_bytes);
const char *store_errmsg(struct store *s);
/* The spec for logs: a PostgreSQL URL without its password and query. */
void store_describe(const char *spec, char *out, size_t outlen);
/* "sqlite" or "postgresql". */
const char *store_kind(struct store *s);
/* The schema version this build writes. */
int store_schema_version(void);

/*
 * Batching (the server's mode): every write joins one transaction that stays
 * open until store_flush() commits it, so all the work of one loop
 * iteration is one commit; store_begin/commit/rollback become savepoints
 * inside it. A caller must not promise durability (answer 202, acknowledge
 * a callback) before store_flush() returned 0.
 */
void store_set_batching(struct store *s, int on);
/*
 * WAL checkpoints. A worker's connection turns automatic checkpoints off
 * (they would run, with their fsyncs, on the event loop); a separate thread
 * calls store_checkpoint(): PASSIVE, never waiting for writers or readers,
 * except that on SQLite a WAL past 16 MB is then restarted, which holds
 * writers back while it copies the few frames left and syncs.
 */
int store_set_autocheckpoint(struct store *s, int on);
int store_checkpoint(struct store *s, int *wal_frames, int *copied);

/*
 * The worker's loop is about to wait for events (the end of an iteration,
 * after its commit and the work that waited for it). PostgreSQL: rows kept
 * from this iteration's reads and writes are no longer taken as current
 * (another instance may change them from now on). SQLite: nothing.
 */
void store_idle(struct store *s);

/*
 * Announcements of new due work between instances (PostgreSQL LISTEN/NOTIFY;
 * SQLite has none: store_listen answers 1, store_notify_fd -1). A batch that
 * wrote unleased work due soon announces it with its commit.
 * store_listen: this connection listens (again after every reconnect); 0,
 * 1 unsupported, <0 error (it listens once connected again).
 * store_notify_fd: the descriptor to watch for reading, owned by the store,
 * or -1. It changes after a reconnect: watched is the one the caller watches
 * now (-1: none); when the answer differs, the caller stops watching
 * watched and watches the answer (the store closes the old one at the next
 * call that does not find it watched).
 * store_notify_read: reads what arrived; 1 with *due_at (wall ms) the
 * earliest due time another connection announced, 0 nothing, <0 error (ask
 * store_notify_fd again).
 */
int store_listen(struct store *s);
int store_notify_fd(struct store *s, int watched);
int store_notify_read(struct store *s, int64_t *due_at);

/*
 * A token bucket shared by every instance on the store (PostgreSQL): takes
 * up to want whole tokens from bucket key, refilled at per_s a second up to
 * burst on the database's clock, in a statement of its own (never inside a
 * batch). *granted gets how many, *tokens what is left. 0, 1 unsupported
 * (SQLite: one instance, buckets in memory), <0 error.
 */
int store_rate_take(struct store *s, const char *key, double per_s, double burst, int want,
		    int *granted, double *tokens);

/* 1 when writes wait for store_flush(). */
int store_pending(struct store *s);
/* Commits the shared transaction. 0, or <0 when everything since the last
 * flush was rolled back. */
int store_flush(struct store *s);
/*
 * Answers held for the commit, one by one. A write group that answers a
 * request (a run, a callback) may be rolled back alone inside a batch
 * that commits (PostgreSQL: a unit that failed at the server); its answer
 * must not say it held, and the work it queued for after the commit
 * (a failover's next submit, a delivery) must not start. store_answer_mark:
 * taken when such an answer is held, or right after a group's
 * store_commit, it names the last group closed so far. After store_flush
 * returned 0, store_answer_lost says 1 when that group was rolled back
 * (the request is answered 503, the work is dropped: its rows went with
 * the group), else 0. SQLite commits or rolls back a batch whole: always 0.
 */
uint64_t store_answer_mark(struct store *s);
int store_answer_lost(struct store *s, uint64_t mark);

int store_begin(struct store *s);
int store_commit(struct store *s);
void store_rollback(struct store *s);

/* meta key/value; get returns 1 when absent. out is NUL-terminated. */
int store_meta_get(struct store *s, const char *key, char *out, size_t outlen);
int store_meta_set(struct store *s, const char *key, const char *value);

int store_job_insert(struct store *s, const struct job *j);
/* Fills *j (caller clears with job_clear). 1 when absent. customer non-NULL
 * restricts to that customer's jobs. */
int store_job_get(struct store *s, const char *id, const char *customer, struct job *j);
/* Writes every mutable field of j. */
int store_job_update(struct store *s, const struct job *j);
/* store_job_update for a job moved to its next target (j->target_idx),
 * written only while the stored row is still on target from_idx: of two
 * steps moving one job at once, the second fails like a write to an ended
 * job. SQLite: store_job_update (its writers run one at a time, each
 * reading inside its own write transaction). */
int store_job_move(struct store *s, const struct job *j, int from_idx);
/* Newest first. status may be NULL; cursor is a job id (exclusive) or NULL.
 * Returns {"data":[jobs...],"next_cursor":id|null}; caller owns. */
json_t *store_job_list(struct store *s, const char *customer, const char *status,
		       const char *cursor, int limit);
int64_t store_job_count(struct store *s);

/* Idempotency keys. get returns 1 when absent; hash/job_id copied out. */
int store_idem_get(struct store *s, const char *customer, const char *key,
		   char *hash, size_t hashlen, char *job_id, size_t idlen);
int store_idem_put(struct store *s, const char *customer, const char *key,
		   const char *hash, const char *job_id, int64_t now);

/*
 * Due work. store_work_add inserts a row (leased to owner until lease_until
 * when owner is non-NULL, so the caller may run it at once) and returns its
 * id through *id. store_work_claim leases up to max due rows not leased by a
 * live lease. done deletes; reschedule moves the due time and drops the lease.
 */
int store_work_add(struct store *s, const char *job_id, enum work_kind kind,
		   const char *ref, int64_t due_at, const char *owner,
		   int64_t lease_until, int64_t *id);
int store_work_claim(struct store *s, const char *owner, int64_t now,
		     int64_t lease_ms, struct work *out, size_t max, size_t *n);
int store_work_done(struct store *s, int64_t id);
int store_work_reschedule(struct store *s, int64_t id, int64_t due_at, int tries);
/* Turns a row into the next step of its job (a submit into a poll), due at
 * due_at, lease dropped: one update instead of a delete and an insert. */
int store_work_become(struct store *s, int64_t id, enum work_kind kind, int64_t due_at);
/*
 * Provider concurrency caps, counted across workers and instances in the
 * store: a provider's in-flight jobs are its poll rows (jobs submitted and
 * not yet terminal) plus its submit rows running with a slot. Inside a
 * transaction: when in-flight plus the provider's waiting submits due
 * before row id (by due_at, then id) is below cap, marks row id as holding
 * a slot (its lease stays) and returns 1; otherwise leases the row, due as
 * it was, for hold_ms times its place in the queue in caps (1 + queued
 * ahead / cap, at most 20), and returns 0: it keeps its place, and rows
 * far back look again less often. -1 on error.
 */
int store_work_take_slot(struct store *s, int64_t id, const char *provider, int64_t due_at,
			 int64_t now, long cap, int64_t hold_ms);
/* Deletes the job's work of one kind (0: every kind) except keep_id. */
int store_work_drop(struct store *s, const char *job_id, enum work_kind kind,
		    int64_t keep_id);
/* Earliest due time of unleased (or lease-expired) work; 1 when none. */
int store_work_next_due(struct store *s, int64_t now, int64_t *due);
/* Drops every lease held by owner (clean shutdown). */
int store_work_release(struct store *s, const char *owner);
/* Drops leases whose owner starts with prefix (a dead process's). */
int store_work_release_prefix(struct store *s, const char *prefix);
/* Extends to lease_until the leases of rows ids[0..n) still held by owner
 * (the heartbeat of the steps in flight, so a lease can be short; a row
 * whose step ended without releasing it is not among them and expires). */
int store_work_renew(struct store *s, const char *owner, const int64_t *ids, size_t n,
		     int64_t lease_until);
/* Lists distinct lease owners (caller owns the array of strings). */
json_t *store_work_owners(struct store *s);
int64_t store_work_count(struct store *s, enum work_kind kind);

int store_delivery_insert(struct store *s, const struct delivery *d);
/* 1 when absent; d->url owned by caller afterwards (free). */
int store_delivery_get(struct store *s, const char *id, struct delivery *d);
int store_delivery_update(struct store *s, const struct delivery *d);
/* body (borrowed, may be NULL) is what the attempt sent, kept as given. */
int store_attempt_insert(struct store *s, const char *delivery_id,
			 const char *job_id, int64_t at, long status,
			 double latency_ms, const char *error,
			 const char *script_version, const char *body, size_t body_len);
/* [{"delivery_id","event","url","status","attempts":[...]}]; caller owns. */
json_t *store_job_deliveries(struct store *s, const char *job_id);

int store_callback_insert(struct store *s, const char *job_id, const char *provider,
			  int64_t at, const char *outcome, const char *body, size_t bodylen);
/* Job history: a step of the job (submit, failover, callback ...). */
int store_event_add(struct store *s, const char *job_id, int64_t at,
		    const char *kind, const char *detail);
/* Number of the job's events of one kind (>= 0), or -1 on error. */
int64_t store_event_count(struct store *s, const char *job_id, const char *kind);

/*
 * Usage: the cost of an ended job, one row per job (a second call for the
 * same job changes nothing). unit is "usd" or "credits", source "provider"
 * or "estimate". 0, or <0 on a store error.
 */
int store_usage_add(struct store *s, const char *job_id, const char *customer,
		    const char *provider, const char *model, double amount,
		    const char *unit, const char *source, int64_t at);
/*
 * Totals of the usage rows at [from, to) (ms) of customer (NULL: every
 * customer, each row then naming its "customer"), grouped by group_by
 * ("model": "provider:model", "provider", "day": UTC "YYYY-MM-DD", or NULL:
 * no "key") and unit: a new JSON array of {customer?, key?, unit, amount,
 * jobs}, in key order; NULL on a store error.
 */
json_t *store_usage_totals(struct store *s, const char *customer, int64_t from, int64_t to,
			   const char *group_by);
json_t *store_job_events(struct store *s, const char *job_id);

/*
 * Admin views (the dashboard): across customers. Each returns a new JSON
 * value (caller owns) or NULL on a store error.
 */
struct job_filter {
	const char *customer, *provider, *status; /* NULL: any */
	const char *q;        /* a job id or a track id, exact */
	int64_t since, until; /* created_at window, wall ms; 0: open */
	const char *cursor;   /* job id (exclusive) */
	int limit;
};
/* {"data":[jobs with "customer"],"next_cursor"}, newest first. */
json_t *store_job_search(struct store *s, const struct job_filter *f);
/* state "failing" (pending after a failed attempt) or "dead"; customer NULL:
 * all. Newest first, with the last attempt's status code and error. */
json_t *store_delivery_list(struct store *s, const char *state, const char *customer, int limit);
/* {provider: {succeeded, failed, canceled, avg_duration_ms, max_duration_ms}}
 * of the jobs that ended since `since` (wall ms). */
json_t *store_provider_stats(struct store *s, int64_t since);
/* [{"at","provider","outcome","body_bytes"}] of the callbacks a job got. */
json_t *store_job_callbacks(struct store *s, const char *job_id);
/* Work queue figures at now (wall ms) and the store's size, for /metrics. */
struct store_queue {
	int64_t due;           /* due and not under a live lease */
	int64_t leased;        /* under a live lease (running) */
	int64_t waiting;       /* poll rows not due yet: submitted, waiting for a result */
	int64_t oldest_due_at; /* due_at of the oldest due row; 0: none */
	int64_t size_bytes;    /* the file's or the database's size */
};
int store_queue_stats(struct store *s, int64_t now, struct store_queue *q);
/* Retention: deletes up to limit finished jobs (succeeded, failed, canceled)
 * completed before `before` (wall ms) with their work, deliveries, attempts,
 * callbacks, events and idempotency keys, in one short transaction of its
 * own (never inside a batch). *purged says how many jobs went. */
int store_purge(struct store *s, int64_t before, int limit, int *purged);

/*
 * Stored customers (`genrelay customers ...`, core/customers.c): one row per
 * customer. The API key is kept only as its SHA-256 (lowercase hex); the
 * webhook secret is kept in clear (deliveries are signed with it), which is
 * why the store file is 0600. Fixed-size fields: no ownership to track.
 */
struct store_customer {
	char name[65];
	char key_sha256[65];      /* hex of SHA-256(api key) */
	char webhook_secret[256]; /* "" when none */
	char hook[65];            /* "" when none (the default hook) */
	char webhook_url[2048];   /* "" when none */
	int64_t created_at;       /* wall ms */
};
/* 0 added, 1 a customer of that name (or that key hash) exists, <0 error. */
int store_customer_add(struct store *s, const struct store_customer *c);
/* Replaces the key hash of customer name: 0, 1 no such customer, <0 error. */
int store_customer_set_key(struct store *s, const char *name, const char *key_sha256);
/* The customer whose key hash is key_sha256 (when not NULL) or whose name is
 * name: 0 found (*out filled), 1 none, <0 error. */
int store_customer_get(struct store *s, const char *key_sha256, const char *name,
		       struct store_customer *out);
/* [{"name","hook","webhook_url","has_webhook_secret","created_at"}] by name
 * (never the key hash nor the secret); NULL on a store error. */
json_t *store_customer_list(struct store *s);
/* 0 removed, 1 no such customer, <0 error. */
int store_customer_remove(struct store *s, const char *name);

#endif
