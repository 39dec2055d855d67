/*
 * ingest.c: new runs into the store (see ingest.h).
 *
 * One run, in order:
 *   ingest_submit: resolve_targets (model id -> "provider:model" targets),
 *   the customer's budget, job_build (the job row as it will be inserted),
 *   then queued on the worker's batch with r suspended;
 *   ingest_flush (the same loop iteration): the group commit, the answers,
 *   and the hand-over of each new job's submit to the engine.
 */
#include "ingest.h"

#include "budget.h"
#include "buf.h"
#include "config.h"
#include "engine.h"
#include "job.h"
#include "log.h"
#include "metrics.h"
#include "script.h"
#include "server.h"
#include "sign.h"
#include "store.h"
#include "worker.h"

#include <openssl/crypto.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A run queued for the group commit (r->ingest); freed once answered, or
 * when its request goes first. */
struct ingest_run {
	struct request *r;
	const struct ingest_answers *how;
	const struct config_customer *c;
	struct job job;               /* the row to insert; owned */
	char idem_key[RUNREQ_IDEM_MAX + 1]; /* "" when none */
	char idem_hash[RUNREQ_IDEM_HASH_LEN];
	double wait_s;                /* > 0: a sync run, waits after its commit */
	int outcome;                  /* after the commit: 0 new, 1 replay, 2 conflict */
	char replay_job[48];          /* outcome 1: the key's first job */
	int64_t work_id;              /* the submit row; < 0: left for the due timer */
	struct ingest_run *next;      /* the worker's batch */
};

static int fail(struct api_error *err, unsigned status, const char *code, const char *msg)
{
	err->status = status;
	snprintf(err->code, sizeof err->code, "%s", code);
	snprintf(err->message, sizeof err->message, "%s", msg);
	return -1;
}

static void run_free(struct ingest_run *run)
{
	if (run->r)
		run->r->ingest = NULL;
	job_clear(&run->job);
	free(run);
}

/*
 * Resolves a model id to its targets: a "provider:model" string for one
 * target, an array of them for an alias. NULL (with why) when nothing
 * serves it. Caller owns the result.
 */
static json_t *resolve_targets(struct worker *w, const struct modelid *mid, const char *model,
			       char *why, size_t whylen)
{
	struct script_provider_info info;
	if (mid->provider[0]) {
		if (script_provider_info(w->scripts, mid->provider, &info) < 0) {
			snprintf(why, whylen, "no provider '%s'", mid->provider);
			return NULL;
		}
		if (!info.configured) {
			snprintf(why, whylen, "provider '%s' is not configured (no providers.%s in the config)",
				 mid->provider, mid->provider);
			return NULL;
		}
		return json_string(model);
	}
	const struct config_alias *a = config_alias(w->cfg, model);
	if (a) {
		json_t *arr = json_array();
		for (size_t i = 0; i < a->ntargets; i++)
			json_array_append_new(arr, json_string(a->targets[i]));
		return arr;
	}
	char prov[64], target[RUNREQ_MODEL_MAX + 80];
	if (script_route(w->scripts, model, prov, sizeof prov) == 0) {
		snprintf(target, sizeof target, "%s:%s", prov, model);
		return json_string(target);
	}
	snprintf(why, whylen, "no configured provider serves model '%.200s'", model);
	return NULL;
}

/*
 * A new job id in the form sign_random_id gives ("job_", 10 characters of
 * Crockford base32 of the creation time in ms, big endian, then 16 of 80
 * random bits), into id (at least 31 bytes). The random bits come from a
 * per-thread pool filled by one sign_random (OpenSSL's CSPRNG) call per 64
 * ids instead of one call per id; bytes are wiped from the pool as they are
 * taken. Falls back to sign_random_id when the pool cannot be filled.
 */
#define ID_RANDOM_BYTES 10
#define ID_POOL_BYTES (64 * ID_RANDOM_BYTES)
static _Thread_local struct {
	unsigned char b[ID_POOL_BYTES];
	size_t used; /* bytes taken from the front; ID_POOL_BYTES: empty */
} id_pool = { .used = ID_POOL_BYTES };

static void new_job_id(char *id, size_t idlen, int64_t now_ms)
{
	static const char crockford32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
	if (idlen < 4 + 26 + 1)
		return;
	if (id_pool.used + ID_RANDOM_BYTES > ID_POOL_BYTES) {
		if (sign_random(id_pool.b, sizeof id_pool.b) < 0) {
			sign_random_id("job_", id, idlen);
			return;
		}
		id_pool.used = 0;
	}
	unsigned char *r = id_pool.b + id_pool.used;
	id_pool.used += ID_RANDOM_BYTES;
	uint64_t ms = (uint64_t)now_ms;
	char *p = id + 4;
	memcpy(id, "job_", 4);
	for (int i = 9; i >= 0; i--, ms >>= 5)
		p[i] = crockford32[ms & 31];
	for (int i = 0; i < 2; i++) {
		const unsigned char *q = r + 5 * i;
		uint64_t v = (uint64_t)q[0] << 32 | (uint64_t)q[1] << 24 | (uint64_t)q[2] << 16 |
			     (uint64_t)q[3] << 8 | q[4];
		for (int k = 7; k >= 0; k--, v >>= 5)
			p[10 + 8 * i + k] = crockford32[v & 31];
	}
	p[26] = '\0';
	OPENSSL_cleanse(r, ID_RANDOM_BYTES);
}

/*
 * Fills the job row of a new run: a fresh id, the targets (borrowed; the
 * first one is the provider and model tried first), what the customer
 * sent and the deadlines. Strings are copied; job_clear frees them.
 */
static void job_build(struct worker *w, struct job *j, const struct config_customer *c,
		      const struct runreq *rq, json_t *targets)
{
	const struct api_run *run = &rq->run;
	int64_t now = loop_wall_ms();
	new_job_id(j->id, sizeof j->id, now);
	j->customer = strdup(c->name);
	j->model_id = strdup(run->model);
	const char *first;
	if (json_is_string(targets)) {
		struct buf tb;
		buf_init(&tb, RUNREQ_MODEL_MAX + 128);
		buf_add(&tb, "[", 1);
		buf_add_json_str(&tb, json_string_value(targets));
		buf_add(&tb, "]", 1);
		j->targets = buf_steal(&tb, NULL);
		first = json_string_value(targets);
	} else {
		j->targets = json_dumps(targets, JSON_COMPACT);
		first = json_string_value(json_array_get(targets, 0));
	}
	const char *colon = strchr(first, ':');
	j->provider = strndup(first, (size_t)(colon - first));
	j->model = strdup(colon + 1);
	j->status = JOB_QUEUED;
	j->track_id = run->track_id ? strdup(run->track_id) : NULL;
	j->input = strndup(run->input, run->input_len);
	j->webhook_url = rq->webhook_url ? strdup(rq->webhook_url) : NULL;
	j->hook = run->hook ? strdup(run->hook) : c->hook ? strdup(c->hook) : NULL;
	j->created_at = j->updated_at = now;
	j->submit_deadline = now + (int64_t)(w->cfg->submit_window_s * 1000);
	j->deadline = now + (int64_t)(w->cfg->job_deadline_s * 1000);
}

int ingest_submit(struct request *r, const struct config_customer *c, const struct runreq *rq,
		  const struct ingest_answers *how, struct api_error *err)
{
	struct worker *w = r->w;
	const struct api_run *run = &rq->run;
	char why[300];
	json_t *targets = resolve_targets(w, &rq->mid, run->model, why, sizeof why);
	if (!targets)
		return fail(err, 404, "MODEL_NOT_FOUND", why);
	/* A customer past its budget: refused before the job exists. */
	double spent = 0;
	int over = budget_exceeded(w->store, c, loop_wall_ms(), &spent);
	if (over != 0) {
		json_decref(targets);
		if (over < 0)
			return fail(err, 503, "UNAVAILABLE", "the store is unavailable");
		snprintf(why, sizeof why, "the budget of %g %s (per %s) is used up: %g spent",
			 c->budget_amount, c->budget_unit, c->budget_period, spent);
		return fail(err, 402, "BUDGET_EXCEEDED", why);
	}
	struct ingest_run *q = calloc(1, sizeof *q);
	if (!q) {
		json_decref(targets);
		return fail(err, 503, "UNAVAILABLE", "out of memory");
	}
	job_build(w, &q->job, c, rq, targets);
	json_decref(targets);
	if (run->idem_key) {
		runreq_idem_hash(run->model, run->idem_body, run->idem_body_len, q->idem_hash,
				 sizeof q->idem_hash);
		snprintf(q->idem_key, sizeof q->idem_key, "%s", run->idem_key);
	}
	q->r = r;
	q->how = how;
	q->c = c;
	q->wait_s = run->wait_s;
	r->ingest = q;
	*w->batch_tail = q;
	w->batch_tail = &q->next;
	server_suspend(r);
	return 0;
}

/*
 * Inside the batch's transaction: the run's Idempotency-Key (a replay or a
 * conflict ends there), its job row and its submit work row, leased to
 * this worker while *room (taken from) lasts. 0, or -1 on a store error.
 */
static int insert_run(struct worker *w, struct ingest_run *q, long *room, int64_t now)
{
	q->outcome = 0;
	if (q->idem_key[0]) {
		char hash[80];
		int rc = store_idem_get(w->store, q->c->name, q->idem_key, hash, sizeof hash,
					q->replay_job, sizeof q->replay_job);
		if (rc < 0)
			return -1;
		if (rc == 0) {
			q->outcome = strcmp(hash, q->idem_hash) == 0 ? 1 : 2;
			return 0;
		}
		if (store_idem_put(w->store, q->c->name, q->idem_key, q->idem_hash, q->job.id, now) < 0)
			return -1;
	}
	int run_now = (*room)-- > 0;
	if (store_job_insert(w->store, &q->job) < 0 ||
	    store_work_add(w->store, q->job.id, WORK_SUBMIT, NULL, now, run_now ? w->owner : NULL,
			   now + (int64_t)(w->cfg->lease_s * 1000), &q->work_id) < 0)
		return -1;
	if (!run_now)
		q->work_id = -q->work_id - 1; /* marks "left for the due timer" */
	return 0;
}

/* After the commit: answers a run's request and starts its submit (frees q). */
static void answer_run(struct worker *w, struct ingest_run *q, int committed, int64_t now)
{
	struct request *r = q->r;
	const struct ingest_answers *how = q->how;
	if (!committed) {
		run_free(q);
		how->wait.error(r, 503, "UNAVAILABLE", "the job store is unavailable; retry later");
		return;
	}
	if (q->outcome == 2) {
		run_free(q);
		how->wait.error(r, 409, "IDEMPOTENCY_CONFLICT",
				"Idempotency-Key was used with a different request");
		return;
	}
	if (q->outcome == 1) {
		struct job j;
		int rc = store_job_get(w->store, q->replay_job, NULL, &j);
		run_free(q);
		if (rc == 0) {
			how->accepted(r, &j);
			job_clear(&j);
		} else {
			how->wait.error(r, 503, "UNAVAILABLE", "the job store is unavailable");
		}
		return;
	}
	const struct job *j = &q->job;
	metrics_inc(M_JOBS_ACCEPTED);
	metrics_job(j->provider, config_alias(w->cfg, j->model_id) ? j->model_id : "direct",
		    "accepted", -1);
	log_ctx_job(j->id, j->customer, j->provider);
	log_ctx_request(r->request_id);
	log_info("job %s accepted for model %s", j->id, j->model_id);
	int run_now = q->work_id >= 0;
	struct work wk = { .id = q->work_id, .kind = WORK_SUBMIT, .due_at = now };
	snprintf(wk.job_id, sizeof wk.job_id, "%s", j->id);
	if (q->wait_s > 0)
		waiters_add(r, j->id, q->wait_s, &how->wait); /* r is still suspended */
	else
		how->accepted(r, j);
	/* The submit starts from the job just inserted (copied by the engine),
	 * so it is not read back. */
	if (run_now)
		engine_dispatch_new(w, &wk, j);
	else
		engine_kick(w, now);
	run_free(q);
}

/*
 * The group commit. Contract:
 *   - one transaction holds, for every run queued since the last call, its
 *     Idempotency-Key lookup (and row), its job row and its first submit
 *     work row; nothing else is written in it;
 *   - no request is answered before that transaction commits: a 202 means
 *     the job is durable (DESIGN.md). If the commit fails, every run of the
 *     batch is answered 503 and nothing of it is stored;
 *   - new jobs run at once while the worker has room (max_inflight less
 *     the steps running): their submit rows are leased to this worker and
 *     handed to the engine after the commit; the others stay unleased and
 *     due, for the due timer (of any worker) to claim.
 */
void ingest_flush(struct worker *w)
{
	struct ingest_run *batch = w->batch, *q, *n;
	if (!batch)
		return;
	w->batch = NULL;
	w->batch_tail = &w->batch;
	int64_t now = loop_wall_ms();
	long room = w->cfg->max_inflight - w->inflight_steps;
	int ok = store_begin(w->store) == 0;
	for (q = batch; ok && q; q = q->next)
		if (insert_run(w, q, &room, now) < 0)
			ok = 0;
	if (ok && store_commit(w->store) < 0)
		ok = 0;
	if (!ok) {
		store_rollback(w->store);
		metrics_inc(M_STORE_ERRORS);
		log_warn("store: committing %s", store_errmsg(w->store));
	}
	for (q = batch; q; q = n) {
		n = q->next;
		answer_run(w, q, ok, now);
	}
}

void ingest_request_gone(struct request *r)
{
	struct ingest_run *q = r->ingest;
	if (!q)
		return;
	struct worker *w = r->w;
	struct ingest_run **pp = &w->batch;
	while (*pp && *pp != q)
		pp = &(*pp)->next;
	if (*pp) {
		*pp = q->next;
		if (w->batch_tail == &q->next)
			w->batch_tail = pp;
	}
	q->r = NULL;
	r->ingest = NULL;
	run_free(q);
}
