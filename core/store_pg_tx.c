/*
 * store_pg_tx.c: the PostgreSQL store's batches (store_pg_int.h), the
 * layer above store_pg_conn.c: units chained by savepoints inside a
 * worker's batch transaction, the units that answer requests committed on
 * their own, statements run in a batch or ahead of it (pg_exec, pg_defer),
 * work id blocks, and store_begin / commit / rollback / flush.
 */
#include "store_pg_int.h"

#include "log.h"
#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Unleased work due sooner than this after a commit is announced (NOTIFY):
 * later work is found by the idle workers' due timer anyway. */
#define PG_NOTIFY_SOON_MS 5000
/* Work ids a connection takes from the sequence at once (its increment). */
#define PG_ID_BLOCK 256

/*
 * Units. In a batch, each store_begin group (and each statement outside one)
 * is a unit: it starts with ROLLBACK TO SAVEPOINT ok, which undoes nothing
 * after a unit that succeeded (that one ended with RELEASE ok; SAVEPOINT ok)
 * and the statements of one that failed (the server skipped its end up to
 * its sync, leaving the transaction aborted at the savepoint); it ends with
 * a sync. So a unit that fails (a step racing another instance for a job,
 * a lock timeout) is rolled back alone and the batch goes on. A unit that
 * answers a request (a run, a callback, a customer's read) and joins the
 * batch carries an answer mark (store_answer_mark); when it fails, the mark
 * is noted (pg_unit_failed) and the answer held for it becomes a 503
 * (store_answer_lost), while the batch, and every other step's result in
 * it, commits.
 */
/* ---------- guesses ---------- */

static void drop_guesses(struct store *s)
{
	for (int i = 0; i < s->nguess; i++)
		free(s->guess[i].request_id);
	s->nguess = 0;
	s->guess_failed = 0;
}

static int guess_pending(struct store *s)
{
	for (int i = 0; i < s->nguess; i++)
		if (!s->guess[i].checked)
			return 1;
	return 0;
}

static void guess_params(struct params *p, const struct pg_guess *g)
{
	p_text(p, g->id);
	p_int(p, g->updated_at);
	p_int(p, g->status);
	p_int(p, g->target_idx);
	p_int(p, g->attempt);
	p_int(p, g->polls);
	p_text(p, g->request_id);
}

int pg_guess_check(struct store *s, const struct pg_guess *g)
{
	struct params p = { 0 };
	s->guess[g - s->guess].checked = 1;
	guess_params(&p, g);
	return pg_send_q(s, Q_JOB_CHECK, &p, PEND_WRITE, NULL);
}

/* Queues the check of each guess not checked yet into the open unit. */
static int send_guesses(struct store *s)
{
	int rc = 0;
	for (int i = 0; rc == 0 && i < s->nguess; i++)
		if (!s->guess[i].checked)
			rc = pg_guess_check(s, &s->guess[i]);
	return rc;
}

/* The group answers a request: each guess not checked yet is read back now
 * (a round trip, as the read it stood for); one that does not hold fails
 * the group at its store_commit. */
static void check_guesses_now(struct store *s)
{
	for (int i = 0; i < s->nguess; i++) {
		struct pg_guess *g = &s->guess[i];
		if (g->checked)
			continue;
		g->checked = 1;
		struct params p = { 0 };
		PGresult *r = NULL;
		guess_params(&p, g);
		if (pg_exec(s, Q_JOB_SAME, &p, PG_READ, &r) < 0 || pg_val_int(r, 0, 0) != 1) {
			s->guess_failed = 1;
			pg_cache_drop_job(s->cache, g->id);
			snprintf(s->err, sizeof s->err, "postgresql: job %s changed elsewhere", g->id);
		}
		PQclear(r);
	}
}

int pg_guess_job(struct store *s, const struct job *j)
{
	if (!s->batching || s->depth <= 0 || s->aborted || s->nguess >= PG_MAX_GUESSES ||
	    strlen(j->id) >= sizeof s->guess[0].id)
		return 1;
	struct pg_guess *g = &s->guess[s->nguess];
	memset(g, 0, sizeof *g);
	if (j->request_id && !(g->request_id = strdup(j->request_id)))
		return 1;
	memcpy(g->id, j->id, strlen(j->id) + 1);
	g->updated_at = j->updated_at;
	g->status = (int)j->status;
	g->target_idx = j->target_idx;
	g->attempt = j->attempt;
	g->polls = j->polls;
	s->nguess++;
	return 0;
}

const struct pg_guess *pg_guess_of(struct store *s, const char *id)
{
	for (int i = 0; i < s->nguess; i++)
		if (!s->guess[i].checked && strcmp(s->guess[i].id, id) == 0)
			return &s->guess[i];
	return NULL;
}

void pg_guess_taken(struct store *s, const struct pg_guess *g)
{
	s->guess[g - s->guess].checked = 1;
}

/* In a batch: the batch transaction and the unit the next statements join. */
int pg_ensure_unit(struct store *s)
{
	if (s->aborted)
		return -2;
	int rc = 0;
	if (!s->open) {
		rc = pg_send_text(s, "BEGIN", NULL, PEND_CTL, NULL);
		if (rc == 0)
			rc = pg_send_text(s, "SAVEPOINT ok", NULL, PEND_CTL, NULL);
		if (rc < 0)
			return rc;
		s->open = 1;
		s->nlost = 0;
	}
	if (!s->in_unit) {
		s->unit_start = s->nout;
		if ((rc = pg_send_text(s, "ROLLBACK TO SAVEPOINT ok", NULL, PEND_UNIT, NULL)) < 0)
			return rc;
		s->in_unit = 1;
		s->unit_answer = s->mark_next;
		s->mark_next = 0;
	}
	return 0;
}

/*
 * A unit that answers a request, while the batch has not reached the
 * server, commits on its own: its statements leave the outbox and run as
 * one transaction now (one round trip), so its caller learns whether it
 * held (and answers 503 if not) and nothing else in the batch depends on
 * it. 0, or -2 with the unit rolled back.
 */
static int commit_alone(struct store *s)
{
	size_t a = s->unit_start + 1, n = s->nout - a;
	struct pg_out *mine = malloc((n ? n : 1) * sizeof *mine);
	if (!mine) {
		snprintf(s->err, sizeof s->err, "postgresql: out of memory");
		return -2;
	}
	memcpy(mine, s->out + a, n * sizeof *mine);
	s->nout = s->unit_start;
	free(s->out[s->nout].v); /* the unit's ROLLBACK TO (no parameters) */
	if (s->nout == 2) {       /* only the batch's BEGIN and SAVEPOINT are left */
		pg_outbox_clear(s);
		s->open = 0;
	}
	struct pg_out *o = s->out;
	size_t no = s->nout, cap = s->capout;
	s->out = NULL;
	s->nout = s->capout = 0;
	PGresult *r = NULL;
	int rc = pg_send_text(s, "BEGIN", NULL, PEND_WRITE, NULL);
	if (rc == 0 && s->capout < 1 + n + 2) {
		struct pg_out *grown = realloc(s->out, (1 + n + 2) * sizeof *grown);
		if (grown) {
			s->out = grown;
			s->capout = 1 + n + 2;
		} else {
			rc = -1;
		}
	}
	if (rc == 0) {
		memcpy(s->out + s->nout, mine, n * sizeof *mine); /* the parameters move along */
		s->nout += n;
		n = 0;
	}
	for (size_t i = 0; i < n; i++) /* not moved: freed here */
		free(mine[i].v);
	char due[32];
	if (rc == 0 && s->notify_due && s->notify_due <= pg_wall_ms() + PG_NOTIFY_SOON_MS) {
		/* What it made due is announced with it (the batch's commit
		 * announces again what the batch made due). */
		struct params p = { 0 };
		snprintf(due, sizeof due, "%lld", (long long)s->notify_due);
		p_text(&p, due);
		rc = pg_send_q(s, Q_NOTIFY, &p, PEND_WRITE, NULL);
	}
	if (rc == 0)
		rc = pg_send_text(s, "COMMIT", NULL, PEND_WANT, &r);
	if (rc == 0) {
		s->alone = 1;
		rc = pg_round_trip(s);
		s->alone = 0;
	}
	s->answer_seq++; /* its caller knows its fate: a mark nothing loses */
	if (rc == 0 && r && strcmp(PQcmdStatus(r), "ROLLBACK") == 0)
		rc = -2;
	PQclear(r);
	if (rc < 0 && s->conn) { /* its transaction is aborted, still open */
		PGresult *rb = NULL;
		if (pg_send_text(s, "ROLLBACK", NULL, PEND_WANT, &rb) == 0) {
			s->alone = 1;
			pg_round_trip(s);
			s->alone = 0;
		}
		PQclear(rb);
	}
	pg_outbox_clear(s);
	free(s->out);
	free(mine);
	s->out = o;
	s->nout = no;
	s->capout = cap;
	if (!s->conn)
		pg_outbox_clear(s);
	if (rc < 0)
		pg_cache_clear(s->cache); /* it may hold the unit's rows */
	return rc < 0 ? -2 : 0;
}

int pg_close_unit(struct store *s, int undo)
{
	if (!s->in_unit || !s->conn)
		return 0;
	s->in_unit = 0;
	int64_t wid = s->unit_work; /* a unit committed alone tells its caller */
	s->unit_work = 0;
	if (!undo && s->unit_answer && !s->tx_sent)
		return commit_alone(s);
	int rc = undo ? pg_send_text(s, "ROLLBACK TO SAVEPOINT ok", NULL, PEND_CTL, NULL) : 0;
	if (rc == 0)
		rc = pg_send_text(s, "RELEASE SAVEPOINT ok", NULL, PEND_CTL, NULL);
	if (rc == 0)
		rc = pg_send_text(s, "SAVEPOINT ok", NULL, PEND_CTL, NULL);
	if (rc == 0)
		rc = pg_send_sync(s, PEND_UNIT_END, undo ? PG_UNIT_UNDONE : s->unit_answer);
	if (rc == 0 && !undo) /* the sync just queued; every unit's, for the work it queued */
		s->out[s->nout - 1].mark = ++s->answer_seq;
	if (rc == 0 && !undo)
		s->out[s->nout - 1].wid = wid;
	if (undo)
		pg_cache_clear(s->cache);
	return rc;
}

void pg_mark_answer(struct store *s)
{
	if (s->nguess)
		check_guesses_now(s);
	if (s->in_unit)
		s->unit_answer = 1;
	else if (s->depth > 0)
		s->mark_next = 1; /* for the unit the group's first write opens */
	else
		s->answer_seq++; /* a read ahead of the batch: a mark nothing loses */
}

/* ---------- statements in a batch or ahead of it ---------- */

/*
 * Runs what the outbox holds so far aside, sends only statement q (or text)
 * and a sync, and puts the outbox back: the statement runs on its own, in
 * autocommit, before the batch's writes (which have not reached the server).
 */
static int run_ahead(struct store *s, int q, const char *text, struct params *p, PGresult **r)
{
	struct pg_out *o = s->out;
	size_t n = s->nout, cap = s->capout;
	s->out = NULL;
	s->nout = s->capout = 0;
	int rc = q >= 0 ? pg_send_q(s, q, p, PEND_WANT, r) : pg_send_text(s, text, p, PEND_WANT, r);
	if (rc == 0)
		rc = pg_round_trip(s);
	pg_outbox_clear(s);
	free(s->out);
	s->out = o;
	s->nout = n;
	s->capout = cap;
	if (!s->conn) /* lost meanwhile: what was queued went with it */
		pg_outbox_clear(s);
	return rc;
}

int pg_exec(struct store *s, int q, struct params *p, int mode, PGresult **out)
{
	PGresult *r = NULL;
	if (out)
		*out = NULL;
	if (mode == PG_WRITE && s->aborted)
		return -2;
	int rc = pg_ensure(s);
	if (rc < 0)
		return rc;
	/* Reads (and writes that may commit alone) go ahead of a batch the
	 * server has not seen yet: its writes then run only at the commit and
	 * hold their locks for one round trip. The batch's own rows are read
	 * from the cache; when it cannot promise that, statements keep order. */
	if (s->batching && (mode != PG_WRITE || !s->open) && !s->tx_sent && !s->must_order) {
		rc = run_ahead(s, q, NULL, p, &r);
	} else {
		int in_batch = s->batching && (mode != PG_READ || s->open);
		if (in_batch)
			rc = pg_ensure_unit(s);
		if (rc == 0)
			rc = pg_send_q(s, q, p, PEND_WANT, &r);
		if (rc == 0 && in_batch && s->depth == 0)
			rc = pg_close_unit(s, 0);
		if (rc == 0)
			rc = pg_round_trip(s);
	}
	if (rc == 0 && out)
		*out = r;
	else
		PQclear(r);
	return rc;
}

int pg_exec_text(struct store *s, const char *text, struct params *p, PGresult **out)
{
	PGresult *r = NULL;
	*out = NULL;
	int rc = pg_ensure(s);
	if (rc == 0 && s->batching && !s->tx_sent && !s->must_order)
		rc = run_ahead(s, -1, text, p, &r);
	else if (rc == 0 && (rc = pg_send_text(s, text, p, PEND_WANT, &r)) == 0)
		rc = pg_round_trip(s);
	if (rc == 0)
		*out = r;
	else
		PQclear(r);
	return rc;
}

int pg_defer(struct store *s, int q, struct params *p, enum pg_pend_kind kind)
{
	if (!s->batching)
		return pg_exec(s, q, p, PG_WRITE, NULL);
	if (s->aborted)
		return -2;
	int rc = pg_ensure(s);
	if (rc == 0)
		rc = pg_ensure_unit(s);
	if (rc == 0)
		rc = pg_send_q(s, q, p, kind, NULL);
	if (rc == 0 && s->depth == 0)
		rc = pg_close_unit(s, 0);
	return rc;
}

int pg_work_id(struct store *s, int64_t *id)
{
	if (s->id_next >= s->id_end) {
		PGresult *r;
		int rc = pg_exec(s, Q_WORK_IDS, NULL, PG_READ, &r);
		if (rc < 0)
			return rc;
		s->id_next = pg_val_int(r, 0, 0);
		s->id_end = s->id_next + PG_ID_BLOCK;
		PQclear(r);
	}
	*id = s->id_next++;
	return 0;
}

void pg_unit_work(struct store *s, int64_t id)
{
	s->unit_work = id;
}

void pg_note_due(struct store *s, int64_t due_at)
{
	if (!s->notify_due || due_at < s->notify_due)
		s->notify_due = due_at > 0 ? due_at : 1;
}

/* ---------- transactions ---------- */

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
	s->depth = 0;
	if (s->in_unit) {
		send_guesses(s); /* a group left open: its unit still checks them */
		pg_close_unit(s, 0);
	}
	drop_guesses(s);
	if (s->aborted) {
		if (s->open)
			pg_batch_lost(s);
		s->aborted = 0;
		if (!strstr(s->err, "rolled back"))
			snprintf(s->err + strlen(s->err), sizeof s->err - strlen(s->err),
				 "%s(the batch was rolled back)", s->err[0] ? " " : "");
		return -2;
	}
	if (!s->open)
		return 0;
	int rc = 0;
	char due[32];
	if (s->notify_due && s->notify_due <= pg_wall_ms() + PG_NOTIFY_SOON_MS) {
		struct params p = { 0 };
		snprintf(due, sizeof due, "%lld", (long long)s->notify_due);
		p_text(&p, due);
		rc = pg_defer(s, Q_NOTIFY, &p, PEND_WRITE);
	}
	/* Undo a last unit that failed, commit. The units that failed were
	 * rolled back alone; those that answered requests are noted as their
	 * results are read (pg_unit_failed). */
	PGresult *r = NULL;
	if (rc == 0)
		rc = pg_send_text(s, "ROLLBACK TO SAVEPOINT ok", NULL, PEND_CTL, NULL);
	if (rc == 0)
		rc = pg_send_text(s, "COMMIT", NULL, PEND_WANT, &r);
	if (rc == 0)
		rc = pg_round_trip(s);
	/* COMMIT of a failed transaction "succeeds" as ROLLBACK. */
	if (rc == 0 && r && strcmp(PQcmdStatus(r), "ROLLBACK") == 0) {
		snprintf(s->err, sizeof s->err, "postgresql: the transaction was rolled back");
		rc = -2;
	}
	PQclear(r);
	if (rc < 0 && s->conn && s->open && !s->aborted) {
		/* The check (or the commit) failed: the server's transaction
		 * is aborted, still open. */
		s->aborted = 0;
		pg_batch_lost(s);
	}
	if (rc < 0 || s->aborted)
		pg_cache_clear(s->cache);
	s->open = 0;
	s->tx_sent = 0;
	s->must_order = 0;
	s->batch_id++;
	s->in_unit = 0;
	s->unit_work = 0;
	s->notify_due = 0;
	int failed = rc < 0 || s->aborted;
	s->aborted = 0;
	if (failed)
		s->nlost = 0; /* everything failed: the answers are 503 anyway */
	return failed ? -2 : 0;
}

/*
 * The end of a loop iteration: rows kept from it are no longer current;
 * work rows whose outcome was rolled back this iteration become due again
 * within PG_AGAIN_MS (their lease stays this worker's until then), in one
 * statement of its own. When that fails they wait for their lease.
 */
void store_idle(struct store *s)
{
	s->iteration++;
	if (!s->nagain || store_pending(s))
		return;
	char *arr = malloc(s->nagain * 21 + 3);
	size_t len = 0;
	if (arr) {
		arr[len++] = '{';
		for (size_t i = 0; i < s->nagain; i++)
			len += (size_t)sprintf(arr + len, "%s%lld", i ? "," : "", (long long)s->again[i]);
		arr[len++] = '}';
		arr[len] = '\0';
		struct params p = { 0 };
		p_text(&p, arr);
		p_int(&p, pg_wall_ms() + PG_AGAIN_MS);
		pg_exec(s, Q_WORK_AGAIN, &p, PG_ALONE, NULL);
		free(arr);
	}
	s->nagain = 0;
}

uint64_t store_answer_mark(struct store *s)
{
	return s->answer_seq;
}

int store_answer_lost(struct store *s, uint64_t mark)
{
	for (size_t i = 0; i < s->nlost; i++)
		if (s->lost[i] == mark)
			return 1;
	return 0;
}

int store_begin(struct store *s)
{
	if (s->batching) {
		if (s->aborted)
			return -2;
		if (s->depth++ == 0 && s->in_unit)
			return pg_close_unit(s, 0) < 0 ? -2 : 0; /* a group is a unit of its own */
		return 0;
	}
	PGresult *r = NULL;
	int rc = pg_ensure(s);
	if (rc == 0)
		rc = pg_send_text(s, "BEGIN", NULL, PEND_WANT, &r);
	if (rc == 0)
		rc = pg_round_trip(s);
	PQclear(r);
	if (rc == 0)
		s->in_tx = 1;
	return rc;
}

int store_commit(struct store *s)
{
	if (s->batching) {
		if (s->aborted)
			return -2; /* the caller's store_rollback closes the group */
		if (s->depth > 0 && --s->depth == 0) {
			if (s->guess_failed) { /* an answer's guess did not hold */
				s->mark_next = 0;
				drop_guesses(s);
				pg_close_unit(s, 1);
				return -2;
			}
			/* The group's unit checks the guesses its updates did not
			 * (a group that wrote nothing opens one for them). */
			int rc = 0;
			if (guess_pending(s) && (rc = pg_ensure_unit(s)) == 0)
				rc = send_guesses(s);
			s->mark_next = 0;
			drop_guesses(s);
			if (rc == 0)
				rc = pg_close_unit(s, 0);
			return rc < 0 ? -2 : 0;
		}
		return 0;
	}
	if (!s->in_tx)
		return -2;
	PGresult *r = NULL;
	int rc = pg_send_text(s, "COMMIT", NULL, PEND_WANT, &r);
	if (rc == 0)
		rc = pg_round_trip(s);
	if (rc == 0 && r && strcmp(PQcmdStatus(r), "ROLLBACK") == 0)
		rc = -2;
	PQclear(r);
	s->in_tx = 0;
	return rc;
}

/* Batching: the group's unit is undone alone (its writes since store_begin). */
void store_rollback(struct store *s)
{
	if (s->batching) {
		if (s->depth <= 0)
			return;
		if (--s->depth == 0) {
			s->mark_next = 0;
			/* What the group decided on a guess is undone: the next
			 * read of those jobs goes to the database. */
			for (int i = 0; i < s->nguess; i++)
				pg_cache_drop_job(s->cache, s->guess[i].id);
			drop_guesses(s);
			pg_close_unit(s, 1);
		}
		return;
	}
	if (!s->in_tx || !s->conn)
		return;
	PGresult *r = NULL;
	if (pg_send_text(s, "ROLLBACK", NULL, PEND_WANT, &r) == 0)
		pg_round_trip(s);
	PQclear(r);
	s->in_tx = 0;
}

