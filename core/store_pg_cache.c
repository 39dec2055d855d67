/*
 * store_pg_cache.c: the rows a PostgreSQL store connection read or wrote
 * (store_pg_int.h), so that a step that follows on the same worker (the
 * submit after its run's commit, the delivery after the callback's, a claim's
 * steps) reads nothing back.
 *
 * Direct-mapped by a hash of the id: a slot holds one copy, replaced by the
 * next row that hashes there, so the memory is bounded (PG_CACHE_JOBS +
 * PG_CACHE_DELIVERIES copies) and a collision is only a miss. A copy answers
 * in the loop iteration it was made in (another connection may change the
 * row after that), a job that had ended for PG_CACHE_ENDED_MS (an ended job
 * is never written again; only retention deletes it). A later iteration may
 * take the copy of a job this connection inserted and has not written or
 * read since, for PG_CACHE_SPEC_MS, as a *guess* (pg_cache_guess_job: the
 * submit's answer finds the run's insert; nobody but a cancel or a callback
 * that overtook the answer writes a job before that answer is stored, while
 * the rows of later steps are also polled and called back elsewhere):
 * the caller then has the unit that follows check the row in the database
 * (store_pg_tx.c), so a copy another connection made stale fails that unit
 * instead of being believed.
 *
 * Its layer: above store_pg_stmt.c (the clock) only.
 */
#include "store_pg_int.h"

#include <stdlib.h>
#include <string.h>

#define PG_CACHE_JOBS 2048
#define PG_CACHE_DELIVERIES 256

struct job_slot {
	struct job j;       /* j.id[0] == 0: empty */
	uint64_t it;
	uint64_t dirty;     /* batch that wrote it + 1; 0: read */
	int64_t at_ms;      /* monotonic, when it was kept */
	int own;            /* this connection's own write: 2 its insert, 1 an update; 0 a read */
};

struct delivery_slot {
	struct delivery d;  /* d.id[0] == 0: empty */
	uint64_t it;
	uint64_t dirty;
};

struct pg_cache {
	struct job_slot jobs[PG_CACHE_JOBS];
	struct delivery_slot deliveries[PG_CACHE_DELIVERIES];
};

static size_t hash(const char *id, size_t n)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (; *id; id++)
		h = (h ^ (unsigned char)*id) * 16777619u;
	return h % n;
}

struct pg_cache *pg_cache_new(void)
{
	return calloc(1, sizeof(struct pg_cache));
}

void pg_cache_clear(struct pg_cache *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < PG_CACHE_JOBS; i++)
		if (c->jobs[i].j.id[0]) {
			job_clear(&c->jobs[i].j);
			c->jobs[i].j.id[0] = '\0';
		}
	for (size_t i = 0; i < PG_CACHE_DELIVERIES; i++)
		if (c->deliveries[i].d.id[0]) {
			free(c->deliveries[i].d.url);
			memset(&c->deliveries[i].d, 0, sizeof c->deliveries[i].d);
		}
}

void pg_cache_free(struct pg_cache *c)
{
	pg_cache_clear(c);
	free(c);
}

static char *dup_or_null(const char *v)
{
	return v ? strdup(v) : NULL;
}

/* A deep copy of src into dst (dst's strings are new); -1 out of memory. */
static int copy_job(struct job *dst, const struct job *src)
{
	*dst = *src;
	char **f[] = { &dst->customer, &dst->model_id, &dst->targets, &dst->provider, &dst->model,
		       &dst->request_id, &dst->track_id, &dst->input, &dst->webhook_url, &dst->hook,
		       &dst->output, &dst->error_code, &dst->error_message, &dst->data };
	int ok = 1;
	for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
		const char *v = *f[i];
		*f[i] = ok ? dup_or_null(v) : NULL;
		if (v && !*f[i])
			ok = 0;
	}
	if (!ok)
		job_clear(dst);
	return ok ? 0 : -1;
}

int pg_cache_put_job(struct pg_cache *c, const struct job *j, uint64_t it, uint64_t batch,
		     int write)
{
	if (!c || !j->id[0])
		return 1;
	struct job_slot *sl = &c->jobs[hash(j->id, PG_CACHE_JOBS)];
	int other = sl->j.id[0] && strcmp(sl->j.id, j->id) != 0 && sl->dirty == batch + 1;
	if (other && !write)
		return 0; /* the batch's own write stays */
	if (sl->j.id[0])
		job_clear(&sl->j);
	if (copy_job(&sl->j, j) < 0) {
		memset(&sl->j, 0, sizeof sl->j);
		return 1;
	}
	sl->it = it;
	sl->at_ms = pg_mono_ms();
	sl->dirty = write ? batch + 1 : 0;
	sl->own = write;
	return other;
}

int pg_cache_get_job(struct pg_cache *c, const char *id, uint64_t it, uint64_t dirty,
		     struct job *j)
{
	if (!c)
		return 1;
	struct job_slot *sl = &c->jobs[hash(id, PG_CACHE_JOBS)];
	if (!sl->j.id[0] || strcmp(sl->j.id, id) != 0 || (dirty && sl->dirty != dirty))
		return 1;
	int current = sl->it == it ||
		      (job_terminal(sl->j.status) && pg_mono_ms() - sl->at_ms < PG_CACHE_ENDED_MS);
	if (!current)
		return 1;
	return copy_job(j, &sl->j) < 0 ? 1 : 0;
}

int pg_cache_guess_job(struct pg_cache *c, const char *id, struct job *j)
{
	if (!c)
		return 1;
	struct job_slot *sl = &c->jobs[hash(id, PG_CACHE_JOBS)];
	if (!sl->j.id[0] || strcmp(sl->j.id, id) != 0 || sl->own != 2 ||
	    pg_mono_ms() - sl->at_ms >= PG_CACHE_SPEC_MS)
		return 1;
	return copy_job(j, &sl->j) < 0 ? 1 : 0;
}

void pg_cache_drop_job(struct pg_cache *c, const char *id)
{
	if (!c)
		return;
	struct job_slot *sl = &c->jobs[hash(id, PG_CACHE_JOBS)];
	if (sl->j.id[0] && strcmp(sl->j.id, id) == 0) {
		job_clear(&sl->j);
		memset(&sl->j, 0, sizeof sl->j);
		sl->dirty = 0;
	}
}

int pg_cache_put_delivery(struct pg_cache *c, const struct delivery *d, uint64_t it,
			  uint64_t batch, int write)
{
	if (!c || !d->id[0])
		return 1;
	struct delivery_slot *sl = &c->deliveries[hash(d->id, PG_CACHE_DELIVERIES)];
	int other = sl->d.id[0] && strcmp(sl->d.id, d->id) != 0 && sl->dirty == batch + 1;
	if (other && !write)
		return 0;
	sl->dirty = write ? batch + 1 : 0;
	free(sl->d.url);
	sl->d = *d;
	sl->d.url = dup_or_null(d->url);
	if (d->url && !sl->d.url) {
		memset(&sl->d, 0, sizeof sl->d);
		return 1;
	}
	sl->it = it;
	return other;
}

int pg_cache_get_delivery(struct pg_cache *c, const char *id, uint64_t it, struct delivery *d)
{
	if (!c)
		return 1;
	struct delivery_slot *sl = &c->deliveries[hash(id, PG_CACHE_DELIVERIES)];
	if (!sl->d.id[0] || strcmp(sl->d.id, id) != 0 || sl->it != it)
		return 1;
	*d = sl->d;
	d->url = dup_or_null(sl->d.url);
	return sl->d.url && !d->url ? 1 : 0;
}
