/*
 * store_pg_conn.c: the PostgreSQL store's connection (store_pg_int.h), the
 * layer above store_pg_cache.c and store_pg_stmt.c: libpq pipeline mode,
 * the outbox and the round trip (with what it reads back: a unit that
 * failed, a batch that was lost), the LISTEN/NOTIFY announcements of new
 * due work. Running statements in a batch or ahead of it is
 * store_pg_tx.c's, open and close store_pg.c's.
 *
 * Never a hang: the connection has connect_timeout, tcp_user_timeout and
 * keepalives; every session sets statement_timeout (10 s), lock_timeout
 * and idle_in_transaction_session_timeout; every wait on the socket is
 * bounded (PG_IO_TIMEOUT_MS), past which the connection counts as lost.
 * lock_timeout is 100 ms: a batch's writes reach the server only with its
 * commit, so they hold their row locks for about one round trip, and a unit
 * that must wait longer for another's (two instances on one job) fails
 * (-2) rather than wait on a stalled loop, or deadlock. A lost connection
 * makes every call fail with -2 (the API answers 503) and is opened again
 * by the next call after a short back-off, so workers reconnect by
 * themselves. Prepared statements run with generic plans
 * (plan_cache_mode): each is a lookup by key or a short index range whose
 * plan does not depend on its values, so binding it plans nothing.
 */
#include "store_pg_int.h"

#include "log.h"
#include "metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Back-off between reconnect attempts while PostgreSQL is unreachable. */
#define PG_RETRY_MS 1000
/* The longest wait for the server within one round trip. */
#define PG_IO_TIMEOUT_MS 15000
#define PG_CHANNEL "genrelay_work"

/* ---------- errors ---------- */

void pg_set_err(struct store *s, const char *what, const char *msg)
{
	/* msg may be s->err itself (an error passed on): formatted apart first. */
	char line[sizeof s->err];
	snprintf(line, sizeof line, "%.*s", (int)strcspn(msg, "\n"), msg);
	/* Cut to fit (the return value read: the cut is meant). */
	if (snprintf(s->err, sizeof s->err, "postgresql: %s%s%s", what, what[0] ? ": " : "",
		     line) < 0)
		s->err[0] = '\0';
}

const char *store_errmsg(struct store *s)
{
	return s->err;
}

/* ---------- the connection ---------- */

void pg_outbox_clear(struct store *s);

/* The connection is gone: forget it, what was on its way, and the batch. */
static void drop_conn(struct store *s)
{
	if (s->conn)
		PQfinish(s->conn);
	s->conn = NULL;
	memset(s->prepared, 0, sizeof s->prepared);
	s->npend = 0;
	pg_outbox_clear(s);
	if (s->open || s->depth)
		s->aborted = 1;
	s->open = 0;
	s->tx_sent = 0;
	s->must_order = 0;
	s->in_tx = 0;
	s->in_unit = 0;
	s->unit_failed = 0;
	s->unit_work = 0;
	s->notify_due = 0;
	pg_cache_clear(s->cache);
	s->retry_at = pg_mono_ms() + PG_RETRY_MS;
}

/* Server notices (WARNING/NOTICE) are not errors: dropped. */
static void quiet_notice(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

int pg_lost(struct store *s, const char *why)
{
	pg_set_err(s, "connection lost", why ? why : s->conn ? PQerrorMessage(s->conn) : "");
	drop_conn(s);
	return -2;
}

static int push_pend(struct store *s, enum pg_pend_kind kind, int q, PGresult **dest)
{
	if (s->npend == s->cappend) {
		size_t cap = s->cappend ? s->cappend * 2 : 64;
		struct pg_pend *n = realloc(s->pend, cap * sizeof *n);
		if (!n) {
			snprintf(s->err, sizeof s->err, "postgresql: out of memory");
			return -1;
		}
		s->pend = n;
		s->cappend = cap;
	}
	s->pend[s->npend++] = (struct pg_pend){ .kind = (unsigned char)kind, .q = (short)q,
						 .dest = dest };
	return 0;
}

/* Blocking commands before the pipeline starts (set-up, migrations). */
int pg_command(struct store *s, const char *text)
{
	PGresult *r = PQexec(s->conn, text);
	metrics_inc(M_STORE_ROUND_TRIPS);
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
	if (!ok)
		pg_set_err(s, "", PQresultErrorMessage(r)[0] ? PQresultErrorMessage(r)
							     : PQerrorMessage(s->conn));
	PQclear(r);
	return ok ? 0 : -1;
}

int pg_connect(struct store *s)
{
	const char *keys[] = { "dbname", "connect_timeout", "keepalives", "keepalives_idle",
			       "keepalives_interval", "keepalives_count", "tcp_user_timeout",
			       "options", "application_name", NULL };
	const char *vals[] = { s->conninfo, "5", "1", "10", "5", "2", "10000",
			       "-c statement_timeout=10000 -c lock_timeout=100"
			       " -c idle_in_transaction_session_timeout=60000"
			       " -c plan_cache_mode=force_generic_plan",
			       "genrelay", NULL };
	s->conn = PQconnectdbParams(keys, vals, 1);
	if (!s->conn || PQstatus(s->conn) != CONNECTION_OK) {
		pg_set_err(s, "cannot connect", s->conn ? PQerrorMessage(s->conn) : "out of memory");
		drop_conn(s);
		return -2;
	}
	PQsetNoticeProcessor(s->conn, quiet_notice, NULL);
	s->conn_gen++;
	if (s->listening && pg_command(s, "LISTEN " PG_CHANNEL) < 0)
		return pg_lost(s, s->err);
	s->retry_at = 0;
	return 0;
}

static int push_pend(struct store *s, enum pg_pend_kind kind, int q, PGresult **dest);

/*
 * Prepares every statement at once (one round trip, in autocommit), so
 * that no Parse is sent inside a batch: there, a Parse that the server
 * skips because an earlier statement of its unit failed leaves the later
 * units of the same round trip naming a statement that does not exist, and
 * fails them too (one of them answering a request loses the batch). A
 * statement whose Parse fails here is prepared where it is first used.
 */
static int prepare_all(struct store *s)
{
	char name[16];
	for (int q = 0; q < Q_COUNT; q++) {
		if (s->prepared[q])
			continue;
		snprintf(name, sizeof name, "q%d", q);
		if (PQsendPrepare(s->conn, name, pg_sql[q], 0, NULL) != 1)
			return pg_lost(s, NULL);
		if (push_pend(s, PEND_PREPARE, q, NULL) < 0)
			return pg_lost(s, s->err);
		s->prepared[q] = 1;
	}
	s->alone = 1;
	pg_round_trip(s); /* a failed Parse has reset its prepared[] */
	s->alone = 0;
	return s->conn ? 0 : -2;
}

/* Pipeline mode, nonblocking: after the blocking set-up of a connection. */
int pg_start_pipeline(struct store *s)
{
	if (PQsetnonblocking(s->conn, 1) != 0 || PQenterPipelineMode(s->conn) != 1)
		return pg_lost(s, "cannot enter pipeline mode");
	return prepare_all(s);
}

int pg_ensure(struct store *s)
{
	if (s->conn && PQstatus(s->conn) == CONNECTION_OK)
		return 0;
	if (s->conn)
		drop_conn(s);
	if (s->retry_at && pg_mono_ms() < s->retry_at) {
		if (!s->err[0])
			snprintf(s->err, sizeof s->err, "postgresql: unavailable; reconnecting shortly");
		return -2;
	}
	int rc = pg_connect(s);
	return rc < 0 ? rc : pg_start_pipeline(s);
}

/* ---------- one round trip ---------- */

/*
 * The next result of the pipeline, waiting for it (bounded), sending what
 * libpq still holds meanwhile. NULL at the end of a statement's results,
 * or when the connection was lost (*gone set; s dropped).
 */
static PGresult *next_result(struct store *s, int *gone)
{
	int64_t deadline = pg_mono_ms() + PG_IO_TIMEOUT_MS;
	for (;;) {
		int f = PQflush(s->conn);
		if (f < 0)
			break;
		if (!PQisBusy(s->conn))
			return PQgetResult(s->conn);
		int ms = (int)(deadline - pg_mono_ms());
		if (ms <= 0) {
			*gone = 1;
			pg_lost(s, "no answer from the server in time");
			return NULL;
		}
		struct pollfd pfd = { .fd = PQsocket(s->conn), .events = POLLIN | (f ? POLLOUT : 0) };
		int rc = poll(&pfd, 1, ms);
		if (rc < 0 && errno != EINTR)
			break;
		if (rc > 0 && (pfd.revents & (POLLIN | POLLERR | POLLHUP)) && !PQconsumeInput(s->conn))
			break;
	}
	*gone = 1;
	pg_lost(s, NULL);
	return NULL;
}

static int classify(struct store *s, PGresult *r)
{
	const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
	pg_set_err(s, "", PQresultErrorMessage(r)[0] ? PQresultErrorMessage(r)
						     : PQerrorMessage(s->conn));
	if (!state || strncmp(state, "08", 2) == 0 || strncmp(state, "53", 2) == 0 ||
	    strncmp(state, "57", 2) == 0 || strncmp(state, "40", 2) == 0 ||
	    strcmp(state, "55P03") == 0 || strncmp(state, "58", 2) == 0 ||
	    strcmp(state, "GR001") == 0)
		return -2; /* unavailable, a conflict, a timeout, a stale row: later */
	return -1;
}

/*
 * The outbox: what is queued goes to libpq only when a round trip needs an
 * answer (a read, the commit), so the server runs a batch's writes as late as
 * it can and holds their row locks for as short a time as it can (libpq's
 * sync sends at once). Parameters are copied; texts are literals or live
 * until the round trip of the same call.
 */
void pg_outbox_clear(struct store *s)
{
	for (size_t i = 0; i < s->nout; i++)
		free(s->out[i].v);
	s->nout = 0;
}

int pg_outbox_add(struct store *s, struct pg_out o, const struct params *p)
{
	if (s->nout == s->capout) {
		size_t cap = s->capout ? s->capout * 2 : 64;
		struct pg_out *n = realloc(s->out, cap * sizeof *n);
		if (!n)
			goto oom;
		s->out = n;
		s->capout = cap;
	}
	if (p && p->n) {
		size_t data = 0;
		for (int i = 0; i < p->n; i++)
			if (p->v[i])
				data += p->fmt[i] ? (size_t)p->len[i] : strlen(p->v[i]) + 1;
		size_t head = (size_t)p->n * (sizeof(char *) + 2 * sizeof(int));
		char *blk = malloc(head + data + 1);
		if (!blk)
			goto oom;
		o.v = (const char **)(void *)blk;
		o.len = (int *)(void *)(blk + (size_t)p->n * sizeof(char *));
		o.fmt = o.len + p->n;
		char *d = blk + head;
		for (int i = 0; i < p->n; i++) {
			o.len[i] = p->len[i];
			o.fmt[i] = p->fmt[i];
			if (!p->v[i]) {
				o.v[i] = NULL;
				continue;
			}
			size_t k = p->fmt[i] ? (size_t)p->len[i] : strlen(p->v[i]) + 1;
			memcpy(d, p->v[i], k);
			o.v[i] = d;
			d += k;
		}
		o.n = p->n;
	}
	s->out[s->nout++] = o;
	return 0;
oom:
	snprintf(s->err, sizeof s->err, "postgresql: out of memory");
	return -1;
}

int pg_send_text(struct store *s, const char *text, struct params *p, enum pg_pend_kind kind,
		     PGresult **dest)
{
	return pg_outbox_add(s, (struct pg_out){ .kind = (unsigned char)kind, .q = -1, .text = text,
					      .dest = dest }, p);
}

int pg_send_q(struct store *s, int q, struct params *p, enum pg_pend_kind kind, PGresult **dest)
{
	return pg_outbox_add(s, (struct pg_out){ .kind = (unsigned char)kind, .q = (short)q,
					      .dest = dest }, p);
}

int pg_send_sync(struct store *s, enum pg_pend_kind kind, int answer)
{
	return pg_outbox_add(s, (struct pg_out){ .kind = (unsigned char)kind, .q = -2,
					      .answer = (unsigned char)answer }, NULL);
}

/* Hands the outbox to libpq (statements, prepares, syncs), in order. */
static int outbox_emit(struct store *s)
{
	int rc = 0;
	if (s->open && s->nout)
		s->tx_sent = 1; /* the batch's BEGIN is first */
	for (size_t i = 0; rc == 0 && i < s->nout; i++) {
		struct pg_out *o = &s->out[i];
		char name[16];
		if (o->q == -2) {
			if (PQpipelineSync(s->conn) != 1 || push_pend(s, o->kind, -1, NULL) < 0)
				rc = -1;
			else {
				s->pend[s->npend - 1].answer = o->answer;
				s->pend[s->npend - 1].mark = o->mark;
				s->pend[s->npend - 1].wid = o->wid;
			}
			continue;
		}
		if (o->q == -1) {
			if (PQsendQueryParams(s->conn, o->text, o->n, NULL, o->v, o->len, o->fmt, 0) != 1 ||
			    push_pend(s, o->kind, -1, o->dest) < 0)
				rc = -1;
			continue;
		}
		snprintf(name, sizeof name, "q%d", o->q);
		if (!s->prepared[o->q]) {
			if (PQsendPrepare(s->conn, name, pg_sql[o->q], 0, NULL) != 1 ||
			    push_pend(s, PEND_PREPARE, o->q, NULL) < 0) {
				rc = -1;
				continue;
			}
			s->prepared[o->q] = 1;
		}
		if (PQsendQueryPrepared(s->conn, name, o->n, o->v, o->len, o->fmt, 0) != 1 ||
		    push_pend(s, o->kind, o->q, o->dest) < 0)
			rc = -1;
	}
	pg_outbox_clear(s);
	return rc < 0 ? pg_lost(s, NULL) : 0;
}

/*
 * Sends a sync and reads every result queued so far. A PEND_WANT result goes
 * to its *dest (NULL when it failed). Returns 0, or the error of the first
 * statement waited for that failed (-1/-2).
 */
int pg_round_trip(struct store *s)
{
	if (pg_send_sync(s, PEND_SYNC, 0) < 0 || outbox_emit(s) < 0)
		return -2;
	metrics_inc(M_STORE_ROUND_TRIPS);
	int rc = 0, gone = 0, lost_tx = 0;
	size_t n = s->npend;
	for (size_t i = 0; i < n; i++) {
		struct pg_pend e = s->pend[i];
		if (e.dest)
			*e.dest = NULL;
		PGresult *r = next_result(s, &gone);
		if (gone)
			return -2;
		ExecStatusType st = PQresultStatus(r);
		if (e.kind == PEND_SYNC || e.kind == PEND_UNIT_END) {
			PQclear(r);
			if (st != PGRES_PIPELINE_SYNC)
				return pg_lost(s, "the pipeline went out of step");
			if (e.kind == PEND_UNIT_END && s->unit_failed && e.answer != PG_UNIT_UNDONE)
				pg_unit_failed(s, e.mark, e.answer == 1, e.wid);
			if (e.kind == PEND_UNIT_END)
				s->unit_failed = 0;
			continue;
		}
		int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
		if (e.kind == PEND_UNIT)
			s->unit_failed = 0;
		if (!ok) {
			int erc = st == PGRES_PIPELINE_ABORTED ? -2 : classify(s, r);
			if ((e.kind == PEND_WANT || s->alone) && rc == 0)
				rc = erc;
			if (e.kind == PEND_PREPARE)
				s->prepared[e.q] = 0;
			if ((e.kind == PEND_CTL || e.kind == PEND_UNIT) && st != PGRES_PIPELINE_ABORTED &&
			    !s->alone)
				lost_tx = 1; /* BEGIN or a savepoint itself failed: the batch is gone */
			if (!s->alone)
				s->unit_failed = 1;
		}
		if (ok && e.dest) {
			*e.dest = r;
			r = NULL;
		}
		PQclear(r);
		if ((r = next_result(s, &gone)) != NULL) /* the end of its results */
			PQclear(r);
		if (gone)
			return -2;
	}
	s->npend = 0;
	if (lost_tx || (!s->batching && rc < 0 && s->in_tx))
		pg_batch_lost(s);
	return rc;
}

/* ---------- what a round trip reads back: a failed unit, a lost batch ---------- */

/* A unit failed (see store_pg_tx.c on units): the rows it wrote leave the
 * cache; its mark is noted, so that the answer held for it (answers: it
 * answered a request) becomes a 503 and the work it queued for after the
 * commit is dropped, while the rest of the batch commits. */
void pg_unit_failed(struct store *s, uint64_t mark, int answers, int64_t wid)
{
	pg_cache_clear(s->cache); /* it may hold rows the unit wrote */
	metrics_inc(M_STORE_ERRORS);
	if (mark) {
		if (s->nlost == PG_LOST_MAX) {
			s->aborted = 1; /* too many to tell apart: the batch goes */
			return;
		}
		s->lost[s->nlost++] = mark;
	}
	if (answers) {
		log_warn("store: a request's writes were rolled back (it is answered 503): %s", s->err);
		return;
	}
	if (wid && s->nagain < PG_AGAIN_MAX) {
		s->again[s->nagain++] = wid;
		log_warn("store: a step's writes were rolled back (it runs again shortly): %s", s->err);
		return;
	}
	log_warn("store: a step's writes were rolled back (it runs again when its lease ends): %s",
		 s->err);
}

void pg_batch_lost(struct store *s)
{
	int had = s->tx_sent || s->in_tx;
	if (s->open && !s->tx_sent)
		pg_outbox_clear(s); /* never sent: nothing to roll back on the server */
	s->open = 0;
	s->tx_sent = 0;
	s->must_order = 0;
	s->batch_id++;
	s->tx_sent = 0;
	s->must_order = 0;
	s->in_tx = 0;
	s->in_unit = 0;
	s->unit_failed = 0;
	s->unit_work = 0;
	s->notify_due = 0;
	if (s->batching && had)
		s->aborted = 1;
	pg_cache_clear(s->cache);
	if (!s->conn || !had)
		return;
	char keep[sizeof s->err];
	memcpy(keep, s->err, sizeof keep);
	PGresult *r = NULL;
	if (pg_send_text(s, "ROLLBACK", NULL, PEND_WANT, &r) == 0)
		pg_round_trip(s);
	PQclear(r);
	memcpy(s->err, keep, sizeof keep);
}

/* ---------- announcements of new work (LISTEN/NOTIFY) ---------- */

int store_listen(struct store *s)
{
	if (s->listening)
		return 0;
	s->listening = 1;
	int rc = pg_ensure(s);
	if (rc < 0)
		return rc; /* LISTEN comes with the next connection */
	PGresult *r = NULL;
	rc = pg_send_text(s, "LISTEN " PG_CHANNEL, NULL, PEND_WANT, &r);
	if (rc == 0)
		rc = pg_round_trip(s);
	PQclear(r);
	return rc;
}

/*
 * The descriptor the worker watches is a dup of the connection's socket,
 * owned here: when the connection is lost it stays open (readable at its
 * end) until the worker has stopped watching it and asks again, so a
 * number the worker still has registered never names another socket.
 */
int store_notify_fd(struct store *s, int watched)
{
	if (s->nfd >= 0 && (!s->conn || s->nfd_gen != s->conn_gen)) {
		if (s->nfd == watched)
			return watched; /* stale, but still watched: the caller lets go first */
		close(s->nfd);
		s->nfd = -1;
	}
	if (s->nfd < 0 && s->listening && pg_ensure(s) == 0) {
		s->nfd = fcntl(PQsocket(s->conn), F_DUPFD_CLOEXEC, 0);
		s->nfd_gen = s->conn_gen;
	}
	return s->nfd;
}

int store_notify_read(struct store *s, int64_t *due_at)
{
	*due_at = 0;
	if (!s->conn || s->nfd_gen != s->conn_gen)
		return -2;
	if (!PQconsumeInput(s->conn))
		return pg_lost(s, NULL);
	int got = 0, self = PQbackendPID(s->conn);
	PGnotify *n;
	while ((n = PQnotifies(s->conn)) != NULL) {
		if (n->be_pid != self) {
			int64_t due = strtoll(n->extra, NULL, 10);
			if (!got || due < *due_at)
				*due_at = due;
			got = 1;
		}
		PQfreemem(n);
	}
	return got;
}
