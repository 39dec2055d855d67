/*
 * store_backend.h: the seam between store.c (the store_* functions of
 * store.h, which dispatch) and the store backends (store_sqlite*.c through
 * store_sqlite_int.h, store_pg*.c through store_pg_int.h). Nothing else
 * includes it.
 *
 * A backend defines STORE_FN(name) (e.g. sqlite_store_##name) and includes
 * this file before store.h: every store_* name of store.h is then renamed to
 * the backend's own, so the backend writes its functions under their usual
 * names and the compiler checks each against store.h's prototype. Its
 * struct store must begin with `const struct store_ops *ops`, set by its
 * open function to its ops table (STORE_OPS_INIT fills one).
 */
#ifndef GENRELAY_STORE_BACKEND_H
#define GENRELAY_STORE_BACKEND_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "job.h"

struct store;
struct work;
struct delivery;
struct job_filter;
struct store_customer;
struct store_queue;
enum work_kind;

struct store_ops {
	const char *name; /* "sqlite", "postgresql" */
	void (*close)(struct store *s);
	int (*set_max_size)(struct store *s, long long max_bytes);
	const char *(*errmsg)(struct store *s);
	void (*set_batching)(struct store *s, int on);
	int (*set_autocheckpoint)(struct store *s, int on);
	int (*checkpoint)(struct store *s, int *wal_frames, int *copied);
	int (*pending)(struct store *s);
	int (*flush)(struct store *s);
	int (*begin)(struct store *s);
	int (*commit)(struct store *s);
	void (*rollback)(struct store *s);
	int (*meta_get)(struct store *s, const char *key, char *out, size_t outlen);
	int (*meta_set)(struct store *s, const char *key, const char *value);
	int (*job_insert)(struct store *s, const struct job *j);
	int (*job_get)(struct store *s, const char *id, const char *customer, struct job *j);
	int (*job_update)(struct store *s, const struct job *j);
	json_t *(*job_list)(struct store *s, const char *customer, const char *status,
			    const char *cursor, int limit);
	int64_t (*job_count)(struct store *s);
	int (*idem_get)(struct store *s, const char *customer, const char *key,
			char *hash, size_t hashlen, char *job_id, size_t idlen);
	int (*idem_put)(struct store *s, const char *customer, const char *key,
			const char *hash, const char *job_id, int64_t now);
	int (*work_add)(struct store *s, const char *job_id, enum work_kind kind,
			const char *ref, int64_t due_at, const char *owner,
			int64_t lease_until, int64_t *id);
	int (*work_claim)(struct store *s, const char *owner, int64_t now,
			  int64_t lease_ms, struct work *out, size_t max, size_t *n);
	int (*work_done)(struct store *s, int64_t id);
	int (*work_reschedule)(struct store *s, int64_t id, int64_t due_at, int tries);
	int (*work_become)(struct store *s, int64_t id, enum work_kind kind, int64_t due_at);
	int (*work_drop)(struct store *s, const char *job_id, enum work_kind kind, int64_t keep_id);
	int (*work_next_due)(struct store *s, int64_t now, int64_t *due);
	int (*work_release)(struct store *s, const char *owner);
	int (*work_release_prefix)(struct store *s, const char *prefix);
	int (*work_renew)(struct store *s, const char *owner, const int64_t *ids, size_t n,
			  int64_t lease_until);
	json_t *(*work_owners)(struct store *s);
	int64_t (*work_count)(struct store *s, enum work_kind kind);
	int (*delivery_insert)(struct store *s, const struct delivery *d);
	int (*delivery_get)(struct store *s, const char *id, struct delivery *d);
	int (*delivery_update)(struct store *s, const struct delivery *d);
	int (*attempt_insert)(struct store *s, const char *delivery_id, const char *job_id,
			      int64_t at, long status, double latency_ms, const char *error,
			      const char *script_version, const char *body, size_t body_len);
	json_t *(*job_deliveries)(struct store *s, const char *job_id);
	int (*callback_insert)(struct store *s, const char *job_id, const char *provider,
			       int64_t at, const char *outcome, const char *body, size_t bodylen);
	int (*event_add)(struct store *s, const char *job_id, int64_t at, const char *kind,
			 const char *detail);
	json_t *(*job_events)(struct store *s, const char *job_id);
	int (*purge)(struct store *s, int64_t before, int limit, int *purged);
	int (*work_take_slot)(struct store *s, int64_t id, const char *provider, int64_t due_at,
			      int64_t now, long cap, int64_t hold_ms);
	int64_t (*event_count)(struct store *s, const char *job_id, const char *kind);
	json_t *(*job_search)(struct store *s, const struct job_filter *f);
	json_t *(*delivery_list)(struct store *s, const char *state, const char *customer,
				 int limit);
	json_t *(*provider_stats)(struct store *s, int64_t since);
	json_t *(*job_callbacks)(struct store *s, const char *job_id);
	int (*customer_add)(struct store *s, const struct store_customer *c);
	int (*customer_set_key)(struct store *s, const char *name, const char *key_sha256);
	int (*customer_get)(struct store *s, const char *key_sha256, const char *name,
			    struct store_customer *out);
	json_t *(*customer_list)(struct store *s);
	int (*customer_remove)(struct store *s, const char *name);
	int (*usage_add)(struct store *s, const char *job_id, const char *customer,
			 const char *provider, const char *model, double amount,
			 const char *unit, const char *source, int64_t at);
	json_t *(*usage_totals)(struct store *s, const char *customer, int64_t from, int64_t to,
				const char *group_by);
	int (*queue_stats)(struct store *s, int64_t now, struct store_queue *q);
	/* Optional (NULL: store.c's default; see store.h). */
	void (*idle)(struct store *s);
	int (*listen)(struct store *s);
	int (*notify_fd)(struct store *s, int watched);
	int (*notify_read)(struct store *s, int64_t *due_at);
	int (*rate_take)(struct store *s, const char *key, double per_s, double burst, int want,
			 int *granted, double *tokens);
	uint64_t (*answer_mark)(struct store *s);
	int (*answer_lost)(struct store *s, uint64_t mark);
	int (*job_move)(struct store *s, const struct job *j, int from_idx);
};

/* The backends' open functions (store.c's store_open picks one by spec). */
struct store *sqlite_store_open(const char *spec, int fsync, char *err, size_t errlen);
struct store *pg_store_open(const char *spec, int fsync, char *err, size_t errlen);
int sqlite_store_schema_version(void);
int pg_store_schema_version(void);

#ifdef STORE_FN
#define store_open STORE_FN(open)
#define store_close STORE_FN(close)
#define store_set_max_size STORE_FN(set_max_size)
#define store_errmsg STORE_FN(errmsg)
#define store_schema_version STORE_FN(schema_version)
#define store_set_batching STORE_FN(set_batching)
#define store_set_autocheckpoint STORE_FN(set_autocheckpoint)
#define store_checkpoint STORE_FN(checkpoint)
#define store_pending STORE_FN(pending)
#define store_flush STORE_FN(flush)
#define store_begin STORE_FN(begin)
#define store_commit STORE_FN(commit)
#define store_rollback STORE_FN(rollback)
#define store_meta_get STORE_FN(meta_get)
#define store_meta_set STORE_FN(meta_set)
#define store_job_insert STORE_FN(job_insert)
#define store_job_get STORE_FN(job_get)
#define store_job_update STORE_FN(job_update)
#define store_job_list STORE_FN(job_list)
#define store_job_count STORE_FN(job_count)
#define store_idem_get STORE_FN(idem_get)
#define store_idem_put STORE_FN(idem_put)
#define store_work_add STORE_FN(work_add)
#define store_work_claim STORE_FN(work_claim)
#define store_work_done STORE_FN(work_done)
#define store_work_reschedule STORE_FN(work_reschedule)
#define store_work_become STORE_FN(work_become)
#define store_work_drop STORE_FN(work_drop)
#define store_work_next_due STORE_FN(work_next_due)
#define store_work_release STORE_FN(work_release)
#define store_work_release_prefix STORE_FN(work_release_prefix)
#define store_work_renew STORE_FN(work_renew)
#define store_work_owners STORE_FN(work_owners)
#define store_work_count STORE_FN(work_count)
#define store_delivery_insert STORE_FN(delivery_insert)
#define store_delivery_get STORE_FN(delivery_get)
#define store_delivery_update STORE_FN(delivery_update)
#define store_attempt_insert STORE_FN(attempt_insert)
#define store_job_deliveries STORE_FN(job_deliveries)
#define store_callback_insert STORE_FN(callback_insert)
#define store_event_add STORE_FN(event_add)
#define store_job_events STORE_FN(job_events)
#define store_purge STORE_FN(purge)
#define store_work_take_slot STORE_FN(work_take_slot)
#define store_event_count STORE_FN(event_count)
#define store_usage_add STORE_FN(usage_add)
#define store_usage_totals STORE_FN(usage_totals)
#define store_job_search STORE_FN(job_search)
#define store_delivery_list STORE_FN(delivery_list)
#define store_provider_stats STORE_FN(provider_stats)
#define store_job_callbacks STORE_FN(job_callbacks)
#define store_customer_add STORE_FN(customer_add)
#define store_customer_set_key STORE_FN(customer_set_key)
#define store_customer_get STORE_FN(customer_get)
#define store_customer_list STORE_FN(customer_list)
#define store_customer_remove STORE_FN(customer_remove)
#define store_queue_stats STORE_FN(queue_stats)
#define store_idle STORE_FN(idle)
#define store_listen STORE_FN(listen)
#define store_notify_fd STORE_FN(notify_fd)
#define store_notify_read STORE_FN(notify_read)
#define store_rate_take STORE_FN(rate_take)
#define store_answer_mark STORE_FN(answer_mark)
#define store_job_move STORE_FN(job_move)
#define store_answer_lost STORE_FN(answer_lost)

/* The ops table of the including backend: const struct store_ops X = { STORE_OPS_INIT("name") };
 * the optional ops are set after it by the backends that have them. */
#define STORE_OPS_INIT(backend_name) \
	.name = backend_name, .close = store_close, .set_max_size = store_set_max_size, \
	.errmsg = store_errmsg, .set_batching = store_set_batching, \
	.set_autocheckpoint = store_set_autocheckpoint, .checkpoint = store_checkpoint, \
	.pending = store_pending, .flush = store_flush, .begin = store_begin, \
	.commit = store_commit, .rollback = store_rollback, .meta_get = store_meta_get, \
	.meta_set = store_meta_set, .job_insert = store_job_insert, .job_get = store_job_get, \
	.job_update = store_job_update, .job_list = store_job_list, .job_count = store_job_count, \
	.idem_get = store_idem_get, .idem_put = store_idem_put, .work_add = store_work_add, \
	.work_claim = store_work_claim, .work_done = store_work_done, \
	.work_reschedule = store_work_reschedule, .work_become = store_work_become, \
	.work_drop = store_work_drop, .work_next_due = store_work_next_due, \
	.work_release = store_work_release, .work_release_prefix = store_work_release_prefix, \
	.work_renew = store_work_renew, .work_owners = store_work_owners, \
	.work_count = store_work_count, .delivery_insert = store_delivery_insert, \
	.delivery_get = store_delivery_get, .delivery_update = store_delivery_update, \
	.attempt_insert = store_attempt_insert, .job_deliveries = store_job_deliveries, \
	.callback_insert = store_callback_insert, .event_add = store_event_add, \
	.job_events = store_job_events, .purge = store_purge, \
	.work_take_slot = store_work_take_slot, .event_count = store_event_count, \
	.job_search = store_job_search, .delivery_list = store_delivery_list, \
	.provider_stats = store_provider_stats, .job_callbacks = store_job_callbacks, \
	.customer_add = store_customer_add, .customer_set_key = store_customer_set_key, \
	.customer_get = store_customer_get, .customer_list = store_customer_list, \
	.customer_remove = store_customer_remove, \
	.usage_add = store_usage_add, .usage_totals = store_usage_totals, \
	.queue_stats = store_queue_stats
#endif

#endif
