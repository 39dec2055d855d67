/*
 * store.c: the store_* functions of store.h, each dispatching to the
 * backend that store_open() chose from the spec (store_backend.h).
 */
#include "store.h"
#include "store_backend.h"
#include "metrics.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* Every backend's struct store begins with its ops pointer. */
#define OPS(s) (*(const struct store_ops *const *)(const void *)(s))

struct store *store_open(const char *spec, int fsync, char *err, size_t errlen)
{
	if (strncmp(spec, "sqlite:", 7) == 0)
		return sqlite_store_open(spec, fsync, err, errlen);
	if (strncmp(spec, "postgresql://", 13) == 0 || strncmp(spec, "postgres://", 11) == 0)
		return pg_store_open(spec, fsync, err, errlen);
	snprintf(err, errlen, "store: unsupported store (want sqlite:PATH or postgresql://...)");
	return NULL;
}

int store_schema_version(void)
{
	return sqlite_store_schema_version();
}

void store_describe(const char *spec, char *out, size_t outlen)
{
	const char *scheme = strstr(spec, "://");
	if (strncmp(spec, "sqlite:", 7) == 0 || !scheme) {
		snprintf(out, outlen, "%s", spec);
		return;
	}
	const char *auth = scheme + 3, *end = auth + strcspn(auth, "/?");
	const char *at = memchr(auth, '@', (size_t)(end - auth));
	const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
	size_t path = strcspn(end, "?");
	if (colon) /* user:password@ -> user:***@ */
		snprintf(out, outlen, "%.*s:***%.*s%.*s", (int)(colon - spec), spec,
			 (int)(end - at), at, (int)path, end);
	else
		snprintf(out, outlen, "%.*s%.*s", (int)(end - spec), spec, (int)path, end);
}

const char *store_kind(struct store *s)
{
	return OPS(s)->name;
}

void store_close(struct store *s)
{
	if (s)
		OPS(s)->close(s);
}

int store_set_max_size(struct store *s, long long max_bytes)
{
	return OPS(s)->set_max_size(s, max_bytes);
}

const char *store_errmsg(struct store *s)
{
	return OPS(s)->errmsg(s);
}

void store_set_batching(struct store *s, int on)
{
	OPS(s)->set_batching(s, on);
}

int store_set_autocheckpoint(struct store *s, int on)
{
	return OPS(s)->set_autocheckpoint(s, on);
}

int store_checkpoint(struct store *s, int *wal_frames, int *copied)
{
	return OPS(s)->checkpoint(s, wal_frames, copied);
}

int store_pending(struct store *s)
{
	return OPS(s)->pending(s);
}

/* Seconds on the monotonic clock, for genrelay_store_commit_duration_seconds. */
static double mono_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int store_flush(struct store *s)
{
	if (!OPS(s)->pending(s))
		return OPS(s)->flush(s);
	double t0 = mono_s();
	int rc = OPS(s)->flush(s);
	metrics_store_commit(mono_s() - t0);
	return rc;
}

uint64_t store_answer_mark(struct store *s)
{
	return OPS(s)->answer_mark ? OPS(s)->answer_mark(s) : 0;
}

int store_answer_lost(struct store *s, uint64_t mark)
{
	return OPS(s)->answer_lost ? OPS(s)->answer_lost(s, mark) : 0;
}

int store_begin(struct store *s)
{
	return OPS(s)->begin(s);
}

int store_commit(struct store *s)
{
	double t0 = mono_s();
	int rc = OPS(s)->commit(s);
	metrics_store_commit(mono_s() - t0);
	return rc;
}

void store_rollback(struct store *s)
{
	OPS(s)->rollback(s);
}

int store_meta_get(struct store *s, const char *key, char *out, size_t outlen)
{
	return OPS(s)->meta_get(s, key, out, outlen);
}

int store_meta_set(struct store *s, const char *key, const char *value)
{
	return OPS(s)->meta_set(s, key, value);
}

int store_job_insert(struct store *s, const struct job *j)
{
	return OPS(s)->job_insert(s, j);
}

int store_job_get(struct store *s, const char *id, const char *customer, struct job *j)
{
	return OPS(s)->job_get(s, id, customer, j);
}

int store_job_update(struct store *s, const struct job *j)
{
	return OPS(s)->job_update(s, j);
}

int store_job_move(struct store *s, const struct job *j, int from_idx)
{
	return OPS(s)->job_move ? OPS(s)->job_move(s, j, from_idx) : OPS(s)->job_update(s, j);
}

json_t *store_job_list(struct store *s, const char *customer, const char *status, const char *cursor, int limit)
{
	return OPS(s)->job_list(s, customer, status, cursor, limit);
}

int64_t store_job_count(struct store *s)
{
	return OPS(s)->job_count(s);
}

int store_idem_get(struct store *s, const char *customer, const char *key, char *hash, size_t hashlen, char *job_id, size_t idlen)
{
	return OPS(s)->idem_get(s, customer, key, hash, hashlen, job_id, idlen);
}

int store_idem_put(struct store *s, const char *customer, const char *key, const char *hash, const char *job_id, int64_t now)
{
	return OPS(s)->idem_put(s, customer, key, hash, job_id, now);
}

int store_work_add(struct store *s, const char *job_id, enum work_kind kind, const char *ref, int64_t due_at, const char *owner, int64_t lease_until, int64_t *id)
{
	return OPS(s)->work_add(s, job_id, kind, ref, due_at, owner, lease_until, id);
}

int store_work_claim(struct store *s, const char *owner, int64_t now, int64_t lease_ms, struct work *out, size_t max, size_t *n)
{
	return OPS(s)->work_claim(s, owner, now, lease_ms, out, max, n);
}

int store_work_done(struct store *s, int64_t id)
{
	return OPS(s)->work_done(s, id);
}

int store_work_reschedule(struct store *s, int64_t id, int64_t due_at, int tries)
{
	return OPS(s)->work_reschedule(s, id, due_at, tries);
}

int store_work_become(struct store *s, int64_t id, enum work_kind kind, int64_t due_at)
{
	return OPS(s)->work_become(s, id, kind, due_at);
}

int store_work_drop(struct store *s, const char *job_id, enum work_kind kind, int64_t keep_id)
{
	return OPS(s)->work_drop(s, job_id, kind, keep_id);
}

int store_work_next_due(struct store *s, int64_t now, int64_t *due)
{
	return OPS(s)->work_next_due(s, now, due);
}

int store_work_release(struct store *s, const char *owner)
{
	return OPS(s)->work_release(s, owner);
}

int store_work_release_prefix(struct store *s, const char *prefix)
{
	return OPS(s)->work_release_prefix(s, prefix);
}

int store_work_renew(struct store *s, const char *owner, const int64_t *ids, size_t n, int64_t lease_until)
{
	return OPS(s)->work_renew(s, owner, ids, n, lease_until);
}

json_t *store_work_owners(struct store *s)
{
	return OPS(s)->work_owners(s);
}

int64_t store_work_count(struct store *s, enum work_kind kind)
{
	return OPS(s)->work_count(s, kind);
}

int store_delivery_insert(struct store *s, const struct delivery *d)
{
	return OPS(s)->delivery_insert(s, d);
}

int store_delivery_get(struct store *s, const char *id, struct delivery *d)
{
	return OPS(s)->delivery_get(s, id, d);
}

int store_delivery_update(struct store *s, const struct delivery *d)
{
	return OPS(s)->delivery_update(s, d);
}

int store_attempt_insert(struct store *s, const char *delivery_id, const char *job_id, int64_t at, long status, double latency_ms, const char *error, const char *script_version, const char *body, size_t body_len)
{
	return OPS(s)->attempt_insert(s, delivery_id, job_id, at, status, latency_ms, error, script_version, body, body_len);
}

json_t *store_job_deliveries(struct store *s, const char *job_id)
{
	return OPS(s)->job_deliveries(s, job_id);
}

int store_callback_insert(struct store *s, const char *job_id, const char *provider, int64_t at, const char *outcome, const char *body, size_t bodylen)
{
	return OPS(s)->callback_insert(s, job_id, provider, at, outcome, body, bodylen);
}

int store_event_add(struct store *s, const char *job_id, int64_t at, const char *kind, const char *detail)
{
	return OPS(s)->event_add(s, job_id, at, kind, detail);
}

json_t *store_job_events(struct store *s, const char *job_id)
{
	return OPS(s)->job_events(s, job_id);
}

int store_purge(struct store *s, int64_t before, int limit, int *purged)
{
	return OPS(s)->purge(s, before, limit, purged);
}

int store_work_take_slot(struct store *s, int64_t id, const char *provider, int64_t due_at,
			 int64_t now, long cap, int64_t hold_ms)
{
	return OPS(s)->work_take_slot(s, id, provider, due_at, now, cap, hold_ms);
}

int64_t store_event_count(struct store *s, const char *job_id, const char *kind)
{
	return OPS(s)->event_count(s, job_id, kind);
}

json_t *store_job_search(struct store *s, const struct job_filter *f)
{
	return OPS(s)->job_search(s, f);
}

json_t *store_delivery_list(struct store *s, const char *state, const char *customer, int limit)
{
	return OPS(s)->delivery_list(s, state, customer, limit);
}

json_t *store_provider_stats(struct store *s, int64_t since)
{
	return OPS(s)->provider_stats(s, since);
}

json_t *store_job_callbacks(struct store *s, const char *job_id)
{
	return OPS(s)->job_callbacks(s, job_id);
}

int store_customer_add(struct store *s, const struct store_customer *c)
{
	return OPS(s)->customer_add(s, c);
}

int store_customer_set_key(struct store *s, const char *name, const char *key_sha256)
{
	return OPS(s)->customer_set_key(s, name, key_sha256);
}

int store_customer_get(struct store *s, const char *key_sha256, const char *name,
		       struct store_customer *out)
{
	return OPS(s)->customer_get(s, key_sha256, name, out);
}

json_t *store_customer_list(struct store *s)
{
	return OPS(s)->customer_list(s);
}

int store_customer_remove(struct store *s, const char *name)
{
	return OPS(s)->customer_remove(s, name);
}

int store_usage_add(struct store *s, const char *job_id, const char *customer,
		    const char *provider, const char *model, double amount,
		    const char *unit, const char *source, int64_t at)
{
	return OPS(s)->usage_add(s, job_id, customer, provider, model, amount, unit, source, at);
}

json_t *store_usage_totals(struct store *s, const char *customer, int64_t from, int64_t to,
			   const char *group_by)
{
	return OPS(s)->usage_totals(s, customer, from, to, group_by);
}

int store_queue_stats(struct store *s, int64_t now, struct store_queue *q)
{
	return OPS(s)->queue_stats(s, now, q);
}

void store_idle(struct store *s)
{
	if (OPS(s)->idle)
		OPS(s)->idle(s);
}

int store_listen(struct store *s)
{
	return OPS(s)->listen ? OPS(s)->listen(s) : 1;
}

int store_notify_fd(struct store *s, int watched)
{
	return OPS(s)->notify_fd ? OPS(s)->notify_fd(s, watched) : -1;
}

int store_notify_read(struct store *s, int64_t *due_at)
{
	*due_at = 0;
	return OPS(s)->notify_read ? OPS(s)->notify_read(s, due_at) : 0;
}

int store_rate_take(struct store *s, const char *key, double per_s, double burst, int want,
		    int *granted, double *tokens)
{
	*granted = 0;
	*tokens = 0;
	return OPS(s)->rate_take ? OPS(s)->rate_take(s, key, per_s, burst, want, granted, tokens)
				 : 1;
}
