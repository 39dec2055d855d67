/*
 * keypool.h: a provider's pool of API keys (providers.NAME.keys).
 *
 * providers.NAME.keys = { {key = "...", weight = 2, id = "a"}, ... } beside
 * (or instead of) the single `key`. Each submit of a job takes a key from the
 * pool, weighted, skipping keys that cool down after a 429 or are broken
 * (401/403); the key's id (never the key) is kept in the job's data as
 * "key_id" and every later step of the job uses the same key.
 *
 * Cool-down and broken marks are process-wide (every worker thread of an
 * instance sees them; other instances learn on their own), keyed by
 * provider, key id and a digest of the key's value: a key whose value
 * changes in the config is a new key, with no mark. Thread-safe.
 *
 * A key may cap its jobs in flight (max_inflight = n): the instance's jobs
 * that took it (keypool_take, at submit) and have not let it go
 * (keypool_release, when the job ends or moves to another target). The
 * counts are process-wide like the marks: per instance (each instance of a
 * PostgreSQL deployment counts its own), forgotten by a restart; a hold
 * also lapses at the time its job gave (the job's deadline), so a job that
 * ended elsewhere cannot hold a slot for ever.
 */
#ifndef GENRELAY_KEYPOOL_H
#define GENRELAY_KEYPOOL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define KEYPOOL_ID_MAX 64
#define KEYPOOL_JOB_MAX 48 /* a job id and its NUL */

/* Number of keys in settings' pool (0: no pool). settings is a provider's
 * object of the config (borrowed). */
size_t keypool_size(const json_t *settings);

/* The value of the pool key with this id (borrowed from settings), or NULL. */
const char *keypool_key(const json_t *settings, const char *id);

/*
 * Picks a key for a submit at now (ms), r in [0, 1) choosing by weight
 * among the usable keys (not cooling, not broken, not at their
 * max_inflight); copies its id into id. Takes nothing. Returns 0; -2 when
 * keys that are neither cooling nor broken exist but every one is at its
 * cap (a slot frees when a job ends); or -1 when no key is usable: *wait_ms
 * is then (for -2 too) the time until the first cool-down ends, or -1 when
 * no key cools down (for -1: every key is broken).
 */
int keypool_pick(const char *provider, const json_t *settings, int64_t now, double r,
		 char *id, size_t idlen, int64_t *wait_ms);

/*
 * keypool_pick for job_id's submit, which takes the key: job_id's hold of
 * a slot (of any key) is let go first, then a slot of the picked key is
 * held for job_id until keypool_release or the wall time until (ms), when
 * the key has a max_inflight. Same returns as keypool_pick (nothing held
 * on -1 or -2). Pick and take are one step under the lock, so two workers
 * never take the last slot twice.
 */
int keypool_take(const char *provider, const json_t *settings, const char *job_id,
		 int64_t until, int64_t now, double r, char *id, size_t idlen, int64_t *wait_ms);

/* Lets go of job_id's slot, if it holds one (idempotent). */
void keypool_release(const char *job_id);

/*
 * Copies into ids (up to max) the jobs holding slots of settings' pool at
 * now, so that a caller can let go of the ones that ended where this
 * instance did not see it (another instance, or a lost hold). Returns how
 * many were copied.
 */
size_t keypool_holders(const char *provider, const json_t *settings, int64_t now,
		       char ids[][KEYPOOL_JOB_MAX], size_t max);

/* The number of slots of key id held at now (its jobs in flight here). */
size_t keypool_inflight(const char *provider, const json_t *settings, const char *id, int64_t now);

/* Cools the key down until the wall time until (ms). */
void keypool_cool(const char *provider, const json_t *settings, const char *id, int64_t until);

/* Marks the key broken until its value changes in the config. Returns 1 the
 * first time (the caller logs once), else 0. */
int keypool_break(const char *provider, const json_t *settings, const char *id);

/* Number of keys of the pool that are broken now. */
size_t keypool_broken_count(const char *provider, const json_t *settings);

/*
 * Read-only views for operators (the metrics and the dashboard). A key is
 * usable, cooling (after a 429, until its cool-down ends) or broken (after a
 * 401/403, until its value changes in the config).
 */
enum keypool_state { KEYPOOL_USABLE, KEYPOOL_COOLING, KEYPOOL_BROKEN, KEYPOOL_NSTATES };

/* "usable", "cooling" or "broken". */
const char *keypool_state_name(enum keypool_state st);

/* Counts the keys of settings' pool by their state at now (ms) into
 * n[KEYPOOL_NSTATES] (zeroed first). Returns the pool's size (0: no pool). */
size_t keypool_count_states(const char *provider, const json_t *settings, int64_t now,
			    size_t n[KEYPOOL_NSTATES]);

/* The pool's keys at now (ms) as a new array (caller decrefs) of
 * {"id", "state", "cooling_s"?} in the config's order: ids and states only,
 * never a key's value. NULL when settings has no pool. */
json_t *keypool_describe(const char *provider, const json_t *settings, int64_t now);

/* Forgets every mark and hold (tests). */
void keypool_reset(void);

#endif
