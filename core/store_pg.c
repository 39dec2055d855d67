/*
 * store_pg.c: the job store on PostgreSQL through libpq (store_backend.h),
 * the top of its layers (store_pg_int.h lists them): the calls of the hot
 * path (jobs, work, deliveries), open and close, and the ops table (so it
 * calls every file below). The statements' texts are store_pg_stmt.c's, the
 * connection and the pipeline store_pg_conn.c's, batches and transactions
 * store_pg_tx.c's, the row cache store_pg_cache.c's, the admin views
 * store_pg_views.c's.
 *
 * One connection per handle, as one SQLite handle per worker. The schema is
 * the SQLite one in PostgreSQL types; migrations run at open under an
 * advisory lock, so of several instances starting at once one migrates and
 * the others wait, then find the schema current.
 *
 * Claims lock their rows FOR UPDATE SKIP LOCKED: instances sharing the
 * database never claim the same due row, and a row leased by a live lease is
 * never claimed either (lease_until, renewed by store_work_renew). A claim
 * brings the rows' jobs (and deliveries) with it, so the steps it starts
 * read nothing more.
 */
#include "store_pg_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---------- row helpers ---------- */

static void read_delivery(PGresult *r, int row, int c, struct delivery *d)
{
	memset(d, 0, sizeof *d);
	pg_copy_val(r, row, c + 0, d->id, sizeof d->id);
	pg_copy_val(r, row, c + 1, d->job_id, sizeof d->job_id);
	pg_copy_val(r, row, c + 2, d->event, sizeof d->event);
	d->url = pg_val_dup(r, row, c + 3);
	pg_copy_val(r, row, c + 4, d->status, sizeof d->status);
	d->attempts = (int)pg_val_int(r, row, c + 5);
	d->created_at = pg_val_int(r, row, c + 6);
	d->next_at = pg_val_int(r, row, c + 7);
}

/* A read: 0 with *out holding at least one row, 1 when none, <0 error. */
static int read_row(struct store *s, int q, struct params *p, PGresult **out)
{
	int rc = pg_exec(s, q, p, PG_READ, out);
	if (rc < 0)
		return rc;
	if (PQntuples(*out) == 0) {
		PQclear(*out);
		*out = NULL;
		return 1;
	}
	return 0;
}

/*
 * Rows into the cache. A write the cache could not keep (another of the
 * batch's writes held its slot) makes the batch's reads keep their order,
 * so they see it in the database.
 */
static void keep_job(struct store *s, const struct job *j, int write)
{
	if (pg_cache_put_job(s->cache, j, s->iteration, s->batch_id, write) && write)
		s->must_order = 1;
}

static void keep_delivery(struct store *s, const struct delivery *d, int write)
{
	if (pg_cache_put_delivery(s->cache, d, s->iteration, s->batch_id, write) && write)
		s->must_order = 1;
}

/* ---------- meta, jobs, idempotency ---------- */

int store_meta_get(struct store *s, const char *key, char *out, size_t outlen)
{
	struct params p = { 0 };
	PGresult *r;
	p_text(&p, key);
	int rc = read_row(s, Q_META_GET, &p, &r);
	if (rc == 0) {
		pg_copy_val(r, 0, 0, out, outlen);
		PQclear(r);
	}
	return rc;
}

int store_meta_set(struct store *s, const char *key, const char *value)
{
	struct params p = { 0 };
	p_text(&p, key);
	p_text(&p, value);
	s->must_order = 1; /* a read of it in this batch must see it */
	return pg_defer(s, Q_META_SET, &p, PEND_WRITE);
}

static void job_params(struct params *p, const struct job *j)
{
	p_int(p, j->target_idx);
	p_text(p, j->provider);
	p_text(p, j->model);
	p_int(p, (int)j->status);
	p_text(p, j->request_id);
}

static void p_opt_int(struct params *p, int64_t v)
{
	if (v)
		p_int(p, v);
	else
		p_text(p, NULL);
}

int store_job_insert(struct store *s, const struct job *j)
{
	struct params p = { 0 };
	p_text(&p, j->id);
	p_text(&p, j->customer);
	p_text(&p, j->model_id);
	p_text(&p, j->targets);
	job_params(&p, j);
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
	p_opt_int(&p, j->completed_at);
	p_int(&p, j->submit_deadline);
	p_int(&p, j->deadline);
	int rc = pg_defer(s, Q_JOB_INSERT, &p, PEND_WRITE);
	pg_mark_answer(s);
	if (rc == 0)
		keep_job(s, j, 2);
	return rc;
}

/* The update of j, guarded by the row not having ended, and for a move
 * (from >= 0) by the row still being on target from. */
static int job_write(struct store *s, const struct job *j, int from)
{
	struct params p = { 0 };
	p_text(&p, j->id);
	job_params(&p, j);
	p_text(&p, j->output);
	p_text(&p, j->error_code);
	p_text(&p, j->error_message);
	p_text(&p, j->data);
	p_int(&p, j->attempt);
	p_int(&p, j->polls);
	p_int(&p, j->updated_at);
	p_opt_int(&p, j->completed_at);
	p_int(&p, j->submit_deadline);
	p_int(&p, j->deadline);
	if (from >= 0)
		p_int(&p, from);
	if (s->batching) {
		/* A job its group took as a guess: the update checks it; a move
		 * checks it first, in a statement of its own (the move's own
		 * condition is the target it moves from). */
		const struct pg_guess *g = pg_guess_of(s, j->id);
		int rc = 0;
		if (g && from >= 0) {
			rc = pg_guess_check(s, g);
			g = NULL;
		} else if (g) {
			p_int(&p, g->updated_at);
			p_int(&p, g->status);
			p_int(&p, g->target_idx);
			p_int(&p, g->attempt);
			p_int(&p, g->polls);
			p_text(&p, g->request_id);
		}
		if (rc == 0)
			rc = pg_defer(s, from >= 0 ? Q_JOB_MOVE_DEFER : g ? Q_JOB_UPDATE_CHECKED
				      : Q_JOB_UPDATE_DEFER, &p, PEND_WRITE);
		if (g)
			pg_guess_taken(s, g);
		if (rc == 0)
			keep_job(s, j, 1);
		return rc;
	}
	PGresult *r;
	int rc = pg_exec(s, from >= 0 ? Q_JOB_MOVE : Q_JOB_UPDATE, &p, PG_WRITE, &r);
	if (rc < 0)
		return rc;
	int n = atoi(PQcmdTuples(r));
	PQclear(r);
	if (n == 0) {
		/* Ended (or moved) meanwhile by another worker or instance: this
		 * copy is stale. The caller rolls back; its work row, run again,
		 * finds the job ended or elsewhere. */
		snprintf(s->err, sizeof s->err, "postgresql: job %s already %s elsewhere", j->id,
			 from >= 0 ? "moved or ended" : "ended");
		return -2;
	}
	return 0;
}

int store_job_update(struct store *s, const struct job *j)
{
	return job_write(s, j, -1);
}

int store_job_move(struct store *s, const struct job *j, int from_idx)
{
	return job_write(s, j, from_idx);
}

int store_job_get(struct store *s, const char *id, const char *customer, struct job *j)
{
	/* The engine's reads (no customer) may come from the cache; the API's
	 * (a customer's) always read the database. */
	if (pg_cache_get_job(s->cache, id, s->iteration, customer ? s->batch_id + 1 : 0, j) == 0) {
		if (!customer || (j->customer && strcmp(j->customer, customer) == 0))
			return 0;
		job_clear(j);
		return 1;
	}
	/* An engine read in a group (the submit's answer) may take the copy
	 * this connection inserted, from an earlier iteration, as a guess that
	 * the group's unit checks in the database instead of a read now. */
	if (!customer && s->depth > 0 && pg_cache_guess_job(s->cache, id, j) == 0) {
		int g = pg_guess_job(s, j);
		if (g == 0)
			return 0;
		job_clear(j);
		if (g < 0)
			return -2;
	}
	struct params p = { 0 };
	PGresult *r;
	p_text(&p, id);
	if (customer) {
		p_text(&p, customer);
		pg_mark_answer(s);
	}
	int rc = read_row(s, customer ? Q_JOB_GET_C : Q_JOB_GET, &p, &r);
	if (rc == 0) {
		pg_read_job(r, 0, 0, j);
		PQclear(r);
		keep_job(s, j, 0);
	}
	return rc;
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
		pg_copy_val(r, 0, 0, hash, hashlen);
		pg_copy_val(r, 0, 1, job_id, idlen);
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
	s->must_order = 1; /* a later request of the batch with the key must see it */
	return pg_defer(s, Q_IDEM_PUT, &p, PEND_WRITE);
}

/* ---------- due work ---------- */

int store_work_add(struct store *s, const char *job_id, enum work_kind kind,
		   const char *ref, int64_t due_at, const char *owner,
		   int64_t lease_until, int64_t *id)
{
	struct params p = { 0 };
	int64_t wid = 0;
	int rc;
	if (s->batching && (rc = pg_work_id(s, &wid)) < 0)
		return rc;
	if (s->batching)
		p_int(&p, wid);
	p_text(&p, job_id);
	p_int(&p, (int)kind);
	p_text(&p, ref);
	p_int(&p, due_at);
	p_text(&p, owner);
	p_int(&p, owner ? lease_until : 0);
	if (s->batching) {
		rc = pg_defer(s, Q_WORK_ADD_ID, &p, PEND_WRITE);
	} else {
		PGresult *r;
		rc = pg_exec(s, Q_WORK_ADD, &p, PG_WRITE, &r);
		if (rc == 0) {
			wid = pg_val_int(r, 0, 0);
			PQclear(r);
		}
	}
	if (rc == 0 && id)
		*id = wid;
	if (rc == 0 && !owner)
		pg_note_due(s, due_at);
	return rc;
}

int store_work_claim(struct store *s, const char *owner, int64_t now,
		     int64_t lease_ms, struct work *out, size_t max, size_t *n)
{
	struct params p = { 0 };
	PGresult *r = NULL;
	*n = 0;
	p_text(&p, owner);
	p_int(&p, now + lease_ms);
	p_int(&p, now);
	p_int(&p, (int64_t)max);
	int rc = pg_exec(s, Q_WORK_CLAIM, &p, PG_ALONE, &r);
	if (rc < 0)
		return rc;
	int rows = PQntuples(r);
	for (int i = 0; i < rows && *n < max; i++) {
		struct work *w = &out[(*n)++];
		memset(w, 0, sizeof *w);
		w->id = pg_val_int(r, i, 0);
		pg_copy_val(r, i, 1, w->job_id, sizeof w->job_id);
		w->kind = (enum work_kind)pg_val_int(r, i, 2);
		pg_copy_val(r, i, 3, w->ref, sizeof w->ref);
		w->due_at = pg_val_int(r, i, 4);
		w->tries = (int)pg_val_int(r, i, 5);
		if (!PQgetisnull(r, i, 6)) {
			struct job j;
			pg_read_job(r, i, 6, &j);
			keep_job(s, &j, 0);
			job_clear(&j);
		}
		if (!PQgetisnull(r, i, 6 + JOB_NCOLS)) {
			struct delivery d;
			read_delivery(r, i, 6 + JOB_NCOLS, &d);
			keep_delivery(s, &d, 0);
			free(d.url);
		}
	}
	PQclear(r);
	return 0;
}

int store_work_done(struct store *s, int64_t id)
{
	struct params p = { 0 };
	p_int(&p, id);
	pg_unit_work(s, id);
	return pg_defer(s, Q_WORK_DONE, &p, PEND_WRITE);
}

int store_work_reschedule(struct store *s, int64_t id, int64_t due_at, int tries)
{
	struct params p = { 0 };
	p_int(&p, id);
	p_int(&p, due_at);
	p_int(&p, tries);
	pg_unit_work(s, id);
	int rc = pg_defer(s, Q_WORK_RESCHED, &p, PEND_WRITE);
	if (rc == 0)
		pg_note_due(s, due_at);
	return rc;
}

int store_work_become(struct store *s, int64_t id, enum work_kind kind, int64_t due_at)
{
	struct params p = { 0 };
	p_int(&p, id);
	p_int(&p, (int)kind);
	p_int(&p, due_at);
	pg_unit_work(s, id);
	int rc = pg_defer(s, Q_WORK_BECOME, &p, PEND_WRITE);
	if (rc == 0)
		pg_note_due(s, due_at);
	return rc;
}

int store_work_drop(struct store *s, const char *job_id, enum work_kind kind,
		    int64_t keep_id)
{
	/* kind 0 drops every kind except deliveries, which outlive the job's end. */
	struct params p = { 0 };
	p_text(&p, job_id);
	p_int(&p, kind ? (int)kind : WORK_DELIVER);
	p_int(&p, keep_id);
	return pg_defer(s, kind ? Q_WORK_DROP_K : Q_WORK_DROP_ALL, &p, PEND_WRITE);
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
		*due = pg_val_int(r, 0, 0);
		rc = 0;
	}
	PQclear(r);
	return rc;
}

int store_work_release(struct store *s, const char *owner)
{
	struct params p = { 0 };
	p_text(&p, owner);
	int rc = pg_defer(s, Q_WORK_RELEASE, &p, PEND_WRITE);
	if (rc == 0)
		pg_note_due(s, pg_wall_ms());
	return rc;
}

int store_work_release_prefix(struct store *s, const char *prefix)
{
	struct params p = { 0 };
	p_text(&p, prefix);
	int rc = pg_defer(s, Q_WORK_RELEASE_P, &p, PEND_WRITE);
	if (rc == 0)
		pg_note_due(s, pg_wall_ms());
	return rc;
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
	/* libpq copies the parameters when it queues the statement. */
	int rc = pg_defer(s, Q_WORK_RENEW, &p, PEND_WRITE);
	free(arr);
	return rc;
}

/*
 * Provider caps, counted across workers and instances: see store.h. The
 * lock and the take are queued; the count is the one round trip.
 */
int store_work_take_slot(struct store *s, int64_t id, const char *provider, int64_t due_at,
			 int64_t now, long cap, int64_t hold_ms)
{
	struct params p = { 0 };
	PGresult *r;
	p_text(&p, provider);
	int rc = pg_defer(s, Q_SLOT_LOCK, &p, PEND_WRITE);
	if (rc < 0)
		return rc;
	p_int(&p, now);
	p_int(&p, id);
	p_int(&p, due_at);
	rc = pg_exec(s, Q_SLOT_COUNT, &p, PG_WRITE, &r);
	if (rc < 0)
		return rc;
	int64_t inflight = pg_val_int(r, 0, 0), ahead = pg_val_int(r, 0, 1);
	PQclear(r);
	int admit = inflight + ahead < (int64_t)cap;
	struct params q = { 0 };
	p_int(&q, id);
	if (!admit) {
		int64_t place = 1 + ahead / (cap > 0 ? cap : 1);
		p_int(&q, now + hold_ms * (place > 20 ? 20 : place));
	}
	rc = pg_defer(s, admit ? Q_SLOT_TAKE : Q_SLOT_HOLD, &q, PEND_WRITE);
	return rc < 0 ? rc : admit;
}

/* ---------- deliveries, attempts, callbacks, events, usage ---------- */

static void delivery_params(struct params *p, const struct delivery *d)
{
	p_text(p, d->status);
	p_int(p, d->attempts);
}

int store_delivery_insert(struct store *s, const struct delivery *d)
{
	struct params p = { 0 };
	p_text(&p, d->id);
	p_text(&p, d->job_id);
	p_text(&p, d->event);
	p_text(&p, d->url);
	delivery_params(&p, d);
	p_int(&p, d->created_at);
	p_int(&p, d->next_at);
	int rc = pg_defer(s, Q_DLV_INSERT, &p, PEND_WRITE);
	if (rc == 0)
		keep_delivery(s, d, 1);
	return rc;
}

int store_delivery_update(struct store *s, const struct delivery *d)
{
	struct params p = { 0 };
	p_text(&p, d->id);
	delivery_params(&p, d);
	p_int(&p, d->next_at);
	int rc = pg_defer(s, Q_DLV_UPDATE, &p, PEND_WRITE);
	if (rc == 0)
		keep_delivery(s, d, 1);
	return rc;
}

int store_delivery_get(struct store *s, const char *id, struct delivery *d)
{
	if (pg_cache_get_delivery(s->cache, id, s->iteration, d) == 0)
		return 0;
	struct params p = { 0 };
	PGresult *r;
	p_text(&p, id);
	int rc = read_row(s, Q_DLV_GET, &p, &r);
	if (rc != 0)
		return rc;
	read_delivery(r, 0, 0, d);
	PQclear(r);
	keep_delivery(s, d, 0);
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
	p_opt_int(&p, status);
	p_double(&p, latency_ms);
	p_text(&p, error);
	p_text(&p, script_version);
	if (body)
		p_bytes(&p, body, body_len);
	else
		p_text(&p, NULL);
	return pg_defer(s, Q_ATT_INSERT, &p, PEND_WRITE);
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
	pg_mark_answer(s);
	return pg_defer(s, Q_CB_INSERT, &p, PEND_WRITE);
}

int store_event_add(struct store *s, const char *job_id, int64_t at,
		    const char *kind, const char *detail)
{
	struct params p = { 0 };
	p_text(&p, job_id);
	p_int(&p, at);
	p_text(&p, kind);
	p_text(&p, detail);
	return pg_defer(s, Q_EV_ADD, &p, PEND_WRITE);
}

int64_t store_event_count(struct store *s, const char *job_id, const char *kind)
{
	struct params p = { 0 };
	PGresult *r;
	p_text(&p, job_id);
	p_text(&p, kind);
	if (pg_exec(s, Q_EV_COUNT, &p, PG_READ, &r) < 0)
		return -1;
	int64_t n = pg_val_int(r, 0, 0);
	PQclear(r);
	return n;
}

int store_usage_add(struct store *s, const char *job_id, const char *customer,
		    const char *provider, const char *model, double amount,
		    const char *unit, const char *source, int64_t at)
{
	struct params p = { 0 };
	p_text(&p, job_id);
	p_text(&p, customer);
	p_text(&p, provider);
	p_text(&p, model);
	p_double(&p, amount);
	p_text(&p, unit);
	p_text(&p, source);
	p_int(&p, at);
	return pg_defer(s, Q_USAGE_ADD, &p, PEND_WRITE) < 0 ? -1 : 0;
}

/* ---------- open, close ---------- */

extern const struct store_ops pg_store_ops;

struct store *store_open(const char *spec, int fsync, char *err, size_t errlen)
{
	(void)fsync; /* synchronous_commit is the server's, on by default */
	struct store *s = calloc(1, sizeof *s);
	if (!s || !(s->conninfo = strdup(spec)) || !(s->cache = pg_cache_new())) {
		if (s)
			free(s->conninfo);
		free(s);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->ops = &pg_store_ops;
	s->nfd = -1;
	if (pg_connect(s) < 0) {
		/* The message never repeats the spec: it may carry a password. */
		snprintf(err, errlen, "store: %s", s->err);
		store_close(s);
		return NULL;
	}
	if (pg_migrate(s, err, errlen) < 0 || pg_start_pipeline(s) < 0) {
		if (!err[0] || !s->conn)
			snprintf(err, errlen, "store: %s", s->err);
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
	if (s->nfd >= 0)
		close(s->nfd);
	pg_cache_free(s->cache);
	for (int i = 0; i < s->nguess; i++)
		free(s->guess[i].request_id);
	pg_outbox_clear(s);
	free(s->out);
	free(s->pend);
	free(s->conninfo);
	free(s);
}

const struct store_ops pg_store_ops = {
	STORE_OPS_INIT("postgresql"),
	.idle = store_idle,
	.listen = store_listen,
	.notify_fd = store_notify_fd,
	.notify_read = store_notify_read,
	.rate_take = store_rate_take,
	.job_move = store_job_move,
	.answer_mark = store_answer_mark,
	.answer_lost = store_answer_lost,
};
