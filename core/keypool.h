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
 */
#ifndef GENRELAY_KEYPOOL_H
#define GENRELAY_KEYPOOL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define KEYPOOL_ID_MAX 64

/* Number of keys in settings' pool (0: no pool). settings is a provider's
 * object of the config (borrowed). */
size_t keypool_size(const json_t *settings);

/* The value of the pool key with this id (borrowed from settings), or NULL. */
const char *keypool_key(const json_t *settings, const char *id);

/*
 * Picks a key for a submit at now (ms), r in [0, 1) choosing by weight
 * among the usable keys; copies its id into id. Returns 0; or -1 when no key
 * is usable: *wait_ms is then the time until the first cool-down ends, or -1
 * when every key is broken.
 */
int keypool_pick(const char *provider, const json_t *settings, int64_t now, double r,
		 char *id, size_t idlen, int64_t *wait_ms);

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

/* Forgets every mark (tests). */
void keypool_reset(void);

#endif
