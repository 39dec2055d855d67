/*
 * keypool.c: weighted choice of a provider's API key, with 429 cool-downs
 * and 401/403 broken marks, and per-key max_inflight holds (see
 * keypool.h). The marks live in one small array under a mutex; an
 * instance has a few pools of a few keys. The holds (one per job in
 * flight on a capped key, so at most the sum of the caps) are a second
 * array under the same mutex.
 */
#include "keypool.h"
#include "sign.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mark {
	char ident[160]; /* provider/id/digest */
	int64_t cool_until;
	int broken;
};

/* A job's slot of a capped key, until the job lets go or until passes. */
struct hold {
	char job[KEYPOOL_JOB_MAX];
	char ident[160];
	int64_t until;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct mark *marks;
static size_t nmarks, capmarks;
static struct hold *holds;
static size_t nholds, capholds;

static const json_t *pool_of(const json_t *settings)
{
	const json_t *k = json_object_get(settings, "keys");
	return json_is_array(k) ? k : NULL;
}

/* The id of pool entry i: its `id`, else "key" and its 1-based position. */
static void entry_id(const json_t *e, size_t i, char *out, size_t outlen)
{
	const char *id = json_string_value(json_object_get(e, "id"));
	if (id)
		snprintf(out, outlen, "%s", id);
	else
		snprintf(out, outlen, "key%zu", i + 1);
}

size_t keypool_size(const json_t *settings)
{
	const json_t *p = pool_of(settings);
	return p ? json_array_size(p) : 0;
}

static const json_t *entry_by_id(const json_t *settings, const char *id)
{
	const json_t *p = pool_of(settings);
	char eid[KEYPOOL_ID_MAX];
	for (size_t i = 0; p && id && i < json_array_size(p); i++) {
		const json_t *e = json_array_get(p, i);
		entry_id(e, i, eid, sizeof eid);
		if (strcmp(eid, id) == 0)
			return e;
	}
	return NULL;
}

const char *keypool_key(const json_t *settings, const char *id)
{
	return json_string_value(json_object_get(entry_by_id(settings, id), "key"));
}

static void ident_of(const char *provider, const char *id, const char *key, char *out, size_t outlen)
{
	unsigned char d[SIGN_SHA256_LEN];
	sign_sha256(key ? key : "", key ? strlen(key) : 0, d);
	snprintf(out, outlen, "%.60s/%.64s/%02x%02x%02x%02x%02x%02x%02x%02x", provider, id,
		 d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]);
}

/* The mark of ident; created when create. Called under lock. */
static struct mark *mark_get(const char *ident, int create)
{
	for (size_t i = 0; i < nmarks; i++)
		if (strcmp(marks[i].ident, ident) == 0)
			return &marks[i];
	if (!create)
		return NULL;
	if (nmarks == capmarks) {
		size_t nc = capmarks ? capmarks * 2 : 8;
		struct mark *m = realloc(marks, nc * sizeof *m);
		if (!m)
			return NULL;
		marks = m;
		capmarks = nc;
	}
	struct mark *m = &marks[nmarks++];
	memset(m, 0, sizeof *m);
	snprintf(m->ident, sizeof m->ident, "%s", ident);
	return m;
}

static long weight_of(const json_t *e)
{
	const json_t *w = json_object_get(e, "weight");
	return json_is_integer(w) && json_integer_value(w) > 0 ? (long)json_integer_value(w) : 1;
}

/* The key's max_inflight (0: no cap). */
static long cap_of(const json_t *e)
{
	const json_t *c = json_object_get(e, "max_inflight");
	return json_is_integer(c) && json_integer_value(c) > 0 ? (long)json_integer_value(c) : 0;
}

/* Holds of ident alive at now. Called under lock. */
static size_t held_locked(const char *ident, int64_t now)
{
	size_t n = 0;
	for (size_t i = 0; i < nholds; i++)
		n += holds[i].until > now && strcmp(holds[i].ident, ident) == 0;
	return n;
}

/* Drops job's hold (job NULL: none) and every lapsed one. Called under lock. */
static void release_locked(const char *job, int64_t now)
{
	for (size_t i = 0; i < nholds;) {
		if ((job && strcmp(holds[i].job, job) == 0) || (now > 0 && holds[i].until <= now))
			holds[i] = holds[--nholds];
		else
			i++;
	}
}

static int hold_add_locked(const char *job, const char *ident, int64_t until)
{
	if (nholds == capholds) {
		size_t nc = capholds ? capholds * 2 : 16;
		struct hold *h = realloc(holds, nc * sizeof *h);
		if (!h)
			return -1;
		holds = h;
		capholds = nc;
	}
	struct hold *h = &holds[nholds++];
	snprintf(h->job, sizeof h->job, "%s", job);
	snprintf(h->ident, sizeof h->ident, "%s", ident);
	h->until = until;
	return 0;
}

/*
 * The pick (keypool_pick, keypool_take): job non-NULL takes a slot of the
 * picked key for job until until, after letting go of job's current one.
 */
static int pick(const char *provider, const json_t *settings, const char *job, int64_t until,
		int64_t now, double r, char *id, size_t idlen, int64_t *wait_ms)
{
	const json_t *p = pool_of(settings);
	size_t n = p ? json_array_size(p) : 0;
	char eid[KEYPOOL_ID_MAX], ident[160];
	long total = 0;
	int64_t first_end = -1;
	int capped = 0, rc = -1;
	*wait_ms = -1;
	if (n == 0 || n > 1024)
		return -1;
	char usable[1024];
	pthread_mutex_lock(&lock);
	if (job)
		release_locked(job, now);
	for (size_t i = 0; i < n; i++) {
		const json_t *e = json_array_get(p, i);
		entry_id(e, i, eid, sizeof eid);
		ident_of(provider, eid, json_string_value(json_object_get(e, "key")), ident, sizeof ident);
		const struct mark *m = mark_get(ident, 0);
		usable[i] = !m || (!m->broken && m->cool_until <= now);
		if (m && !m->broken && m->cool_until > now &&
		    (first_end < 0 || m->cool_until < first_end))
			first_end = m->cool_until;
		long cap = cap_of(e);
		if (usable[i] && cap > 0 && held_locked(ident, now) >= (size_t)cap) {
			usable[i] = 0;
			capped = 1;
		}
		if (usable[i])
			total += weight_of(e);
	}
	if (total == 0) {
		*wait_ms = first_end < 0 ? -1 : first_end - now;
		rc = capped ? -2 : -1;
		goto out;
	}
	long at = (long)(r * (double)total);
	if (at >= total)
		at = total - 1;
	for (size_t i = 0; i < n; i++) {
		if (!usable[i])
			continue;
		const json_t *e = json_array_get(p, i);
		at -= weight_of(e);
		if (at < 0) {
			entry_id(e, i, id, idlen);
			rc = 0;
			if (job && cap_of(e) > 0) {
				ident_of(provider, id, json_string_value(json_object_get(e, "key")),
					 ident, sizeof ident);
				if (hold_add_locked(job, ident, until) < 0)
					rc = -2; /* out of memory: wait as if at the cap */
			}
			break;
		}
	}
out:
	pthread_mutex_unlock(&lock);
	return rc;
}

int keypool_pick(const char *provider, const json_t *settings, int64_t now, double r,
		 char *id, size_t idlen, int64_t *wait_ms)
{
	return pick(provider, settings, NULL, 0, now, r, id, idlen, wait_ms);
}

int keypool_take(const char *provider, const json_t *settings, const char *job_id,
		 int64_t until, int64_t now, double r, char *id, size_t idlen, int64_t *wait_ms)
{
	return pick(provider, settings, job_id ? job_id : "", until, now, r, id, idlen, wait_ms);
}

void keypool_release(const char *job_id)
{
	if (!job_id)
		return;
	pthread_mutex_lock(&lock);
	release_locked(job_id, 0);
	pthread_mutex_unlock(&lock);
}

size_t keypool_holders(const char *provider, const json_t *settings, int64_t now,
		       char ids[][KEYPOOL_JOB_MAX], size_t max)
{
	const json_t *p = pool_of(settings);
	char eid[KEYPOOL_ID_MAX], ident[160];
	size_t got = 0;
	pthread_mutex_lock(&lock);
	for (size_t i = 0; p && i < json_array_size(p); i++) {
		const json_t *e = json_array_get(p, i);
		if (!cap_of(e))
			continue;
		entry_id(e, i, eid, sizeof eid);
		ident_of(provider, eid, json_string_value(json_object_get(e, "key")), ident, sizeof ident);
		for (size_t k = 0; k < nholds && got < max; k++)
			if (holds[k].until > now && strcmp(holds[k].ident, ident) == 0)
				snprintf(ids[got++], KEYPOOL_JOB_MAX, "%s", holds[k].job);
	}
	pthread_mutex_unlock(&lock);
	return got;
}

size_t keypool_inflight(const char *provider, const json_t *settings, const char *id, int64_t now)
{
	const json_t *e = entry_by_id(settings, id);
	char ident[160];
	size_t n;
	if (!e)
		return 0;
	ident_of(provider, id, json_string_value(json_object_get(e, "key")), ident, sizeof ident);
	pthread_mutex_lock(&lock);
	n = held_locked(ident, now);
	pthread_mutex_unlock(&lock);
	return n;
}

static struct mark *mark_of_locked(const char *provider, const json_t *settings, const char *id)
{
	const json_t *e = entry_by_id(settings, id);
	char ident[160];
	if (!e)
		return NULL;
	ident_of(provider, id, json_string_value(json_object_get(e, "key")), ident, sizeof ident);
	return mark_get(ident, 1);
}

void keypool_cool(const char *provider, const json_t *settings, const char *id, int64_t until)
{
	pthread_mutex_lock(&lock);
	struct mark *m = mark_of_locked(provider, settings, id);
	if (m && until > m->cool_until)
		m->cool_until = until;
	pthread_mutex_unlock(&lock);
}

int keypool_break(const char *provider, const json_t *settings, const char *id)
{
	int first = 0;
	pthread_mutex_lock(&lock);
	struct mark *m = mark_of_locked(provider, settings, id);
	if (m && !m->broken) {
		m->broken = 1;
		first = 1;
	}
	pthread_mutex_unlock(&lock);
	return first;
}

size_t keypool_broken_count(const char *provider, const json_t *settings)
{
	const json_t *p = pool_of(settings);
	char eid[KEYPOOL_ID_MAX], ident[160];
	size_t broken = 0;
	pthread_mutex_lock(&lock);
	for (size_t i = 0; p && i < json_array_size(p); i++) {
		const json_t *e = json_array_get(p, i);
		entry_id(e, i, eid, sizeof eid);
		ident_of(provider, eid, json_string_value(json_object_get(e, "key")), ident, sizeof ident);
		const struct mark *m = mark_get(ident, 0);
		broken += m && m->broken;
	}
	pthread_mutex_unlock(&lock);
	return broken;
}

void keypool_reset(void)
{
	pthread_mutex_lock(&lock);
	free(marks);
	marks = NULL;
	nmarks = capmarks = 0;
	free(holds);
	holds = NULL;
	nholds = capholds = 0;
	pthread_mutex_unlock(&lock);
}

/* ------------------------------------------------ read-only operator views */

const char *keypool_state_name(enum keypool_state st)
{
	return st == KEYPOOL_BROKEN ? "broken" : st == KEYPOOL_COOLING ? "cooling" : "usable";
}

/* The state of pool entry e (position i) at now; *cool_until its cool-down's
 * end when cooling. Called under lock. */
static enum keypool_state entry_state_locked(const char *provider, const json_t *e, size_t i,
					     int64_t now, char *eid, size_t eidlen,
					     int64_t *cool_until)
{
	char ident[160];
	entry_id(e, i, eid, eidlen);
	ident_of(provider, eid, json_string_value(json_object_get(e, "key")), ident, sizeof ident);
	const struct mark *m = mark_get(ident, 0);
	*cool_until = 0;
	if (m && m->broken)
		return KEYPOOL_BROKEN;
	if (m && m->cool_until > now) {
		*cool_until = m->cool_until;
		return KEYPOOL_COOLING;
	}
	return KEYPOOL_USABLE;
}

size_t keypool_count_states(const char *provider, const json_t *settings, int64_t now,
			    size_t n[KEYPOOL_NSTATES])
{
	const json_t *p = pool_of(settings);
	size_t len = p ? json_array_size(p) : 0;
	char eid[KEYPOOL_ID_MAX];
	int64_t until;
	for (int s = 0; s < KEYPOOL_NSTATES; s++)
		n[s] = 0;
	pthread_mutex_lock(&lock);
	for (size_t i = 0; i < len; i++)
		n[entry_state_locked(provider, json_array_get(p, i), i, now, eid, sizeof eid, &until)]++;
	pthread_mutex_unlock(&lock);
	return len;
}

json_t *keypool_describe(const char *provider, const json_t *settings, int64_t now)
{
	const json_t *p = pool_of(settings);
	if (!p)
		return NULL;
	json_t *out = json_array();
	char eid[KEYPOOL_ID_MAX];
	int64_t until;
	pthread_mutex_lock(&lock);
	for (size_t i = 0; out && i < json_array_size(p); i++) {
		enum keypool_state st = entry_state_locked(provider, json_array_get(p, i), i, now,
							   eid, sizeof eid, &until);
		json_t *o = json_pack("{s:s,s:s}", "id", eid, "state", keypool_state_name(st));
		if (o && st == KEYPOOL_COOLING)
			json_object_set_new(o, "cooling_s", json_integer((until - now + 999) / 1000));
		json_array_append_new(out, o);
	}
	pthread_mutex_unlock(&lock);
	return out;
}
