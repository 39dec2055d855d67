/*
 * test_keypool.c: weighted key choice, 429 cool-downs and 401/403 broken
 * marks and per-key max_inflight holds of a provider's key pool
 * (core/keypool.c).
 */
#include "keypool.h"
#include "check.h"

#include <stdlib.h>

static json_t *pool(void)
{
	return json_pack("{s:[{s:s,s:i,s:s},{s:s},{s:s,s:i}]}", "keys",
			 "key", "secret-a", "weight", 2, "id", "a",
			 "key", "secret-b",
			 "key", "secret-c", "weight", 1);
}

static void test_pick_by_weight(void)
{
	json_t *ps = pool();
	char id[KEYPOOL_ID_MAX];
	int64_t wait = 0;
	CHECK_EQ_INT(keypool_size(ps), 3);
	CHECK_STR_EQ(keypool_key(ps, "a"), "secret-a");
	CHECK_STR_EQ(keypool_key(ps, "key2"), "secret-b");
	CHECK_STR_EQ(keypool_key(ps, "key3"), "secret-c");
	CHECK(keypool_key(ps, "key1") == NULL); /* key 1 is named a */
	CHECK(keypool_key(ps, NULL) == NULL);
	/* weights 2, 1, 1: r in [0, .5) a, [.5, .75) key2, [.75, 1) key3 */
	CHECK_EQ_INT(keypool_pick("fal", ps, 1000, 0.0, id, sizeof id, &wait), 0);
	CHECK_STR_EQ(id, "a");
	CHECK_EQ_INT(keypool_pick("fal", ps, 1000, 0.49, id, sizeof id, &wait), 0);
	CHECK_STR_EQ(id, "a");
	CHECK_EQ_INT(keypool_pick("fal", ps, 1000, 0.5, id, sizeof id, &wait), 0);
	CHECK_STR_EQ(id, "key2");
	CHECK_EQ_INT(keypool_pick("fal", ps, 1000, 0.99, id, sizeof id, &wait), 0);
	CHECK_STR_EQ(id, "key3");
	json_t *none = json_object();
	CHECK_EQ_INT(keypool_size(none), 0);
	CHECK_EQ_INT(keypool_pick("fal", none, 1000, 0.3, id, sizeof id, &wait), -1);
	json_decref(none);
	json_decref(ps);
}

static void test_cool_and_break(void)
{
	json_t *ps = pool();
	char id[KEYPOOL_ID_MAX];
	int64_t wait = 0;
	keypool_reset();
	keypool_cool("fal", ps, "a", 5000);
	/* a cools down until 5000: every r takes key2 or key3 */
	for (int i = 0; i < 10; i++) {
		CHECK_EQ_INT(keypool_pick("fal", ps, 1000, i / 10.0, id, sizeof id, &wait), 0);
		CHECK(strcmp(id, "a") != 0);
	}
	/* another provider's pool with the same ids is not affected */
	CHECK_EQ_INT(keypool_pick("krea", ps, 1000, 0.0, id, sizeof id, &wait), 0);
	CHECK_STR_EQ(id, "a");
	CHECK_EQ_INT(keypool_break("fal", ps, "key2"), 1);
	CHECK_EQ_INT(keypool_break("fal", ps, "key2"), 0); /* logged once */
	CHECK_EQ_INT(keypool_broken_count("fal", ps), 1);
	CHECK_EQ_INT(keypool_pick("fal", ps, 1000, 0.0, id, sizeof id, &wait), 0);
	CHECK_STR_EQ(id, "key3");
	CHECK_EQ_INT(keypool_break("fal", ps, "key3"), 1);
	/* a cools down, the rest is broken: wait for a */
	CHECK_EQ_INT(keypool_pick("fal", ps, 1000, 0.0, id, sizeof id, &wait), -1);
	CHECK_EQ_INT(wait, 4000);
	/* the cool-down ends */
	CHECK_EQ_INT(keypool_pick("fal", ps, 5000, 0.9, id, sizeof id, &wait), 0);
	CHECK_STR_EQ(id, "a");
	CHECK_EQ_INT(keypool_break("fal", ps, "a"), 1);
	CHECK_EQ_INT(keypool_pick("fal", ps, 6000, 0.0, id, sizeof id, &wait), -1);
	CHECK_EQ_INT(wait, -1); /* every key broken */
	CHECK_EQ_INT(keypool_break("fal", ps, "nope"), 0);
	/* a key whose value changes in the config is a new key */
	json_object_set_new(json_array_get(json_object_get(ps, "keys"), 1), "key", json_string("secret-b2"));
	CHECK_EQ_INT(keypool_broken_count("fal", ps), 2);
	CHECK_EQ_INT(keypool_pick("fal", ps, 6000, 0.0, id, sizeof id, &wait), 0);
	CHECK_STR_EQ(id, "key2");
	keypool_reset();
	CHECK_EQ_INT(keypool_broken_count("fal", ps), 0);
	json_decref(ps);
}

/* The operators' views: states by key id, counts, never a key's value. */
static void test_views(void)
{
	json_t *ps = pool();
	size_t n[KEYPOOL_NSTATES];
	keypool_reset();
	CHECK_EQ_INT(keypool_count_states("fal", ps, 1000, n), 3);
	CHECK_EQ_INT(n[KEYPOOL_USABLE], 3);
	CHECK_EQ_INT(n[KEYPOOL_COOLING] + n[KEYPOOL_BROKEN], 0);
	keypool_cool("fal", ps, "a", 5000);
	keypool_break("fal", ps, "key3");
	CHECK_EQ_INT(keypool_count_states("fal", ps, 1000, n), 3);
	CHECK_EQ_INT(n[KEYPOOL_USABLE], 1);
	CHECK_EQ_INT(n[KEYPOOL_COOLING], 1);
	CHECK_EQ_INT(n[KEYPOOL_BROKEN], 1);
	/* another provider's marks are its own */
	CHECK_EQ_INT(keypool_count_states("krea", ps, 1000, n), 3);
	CHECK_EQ_INT(n[KEYPOOL_USABLE], 3);
	json_t *d = keypool_describe("fal", ps, 1000);
	char *text = json_dumps(d, JSON_COMPACT);
	CHECK_STR_EQ(text, "[{\"id\":\"a\",\"state\":\"cooling\",\"cooling_s\":4},"
			   "{\"id\":\"key2\",\"state\":\"usable\"},"
			   "{\"id\":\"key3\",\"state\":\"broken\"}]");
	CHECK(text && !strstr(text, "secret"));
	free(text);
	json_decref(d);
	/* the cool-down over, a is usable again; key3 stays broken */
	CHECK_EQ_INT(keypool_count_states("fal", ps, 5000, n), 3);
	CHECK_EQ_INT(n[KEYPOOL_USABLE], 2);
	CHECK_EQ_INT(n[KEYPOOL_BROKEN], 1);
	CHECK_STR_EQ(keypool_state_name(KEYPOOL_COOLING), "cooling");
	json_t *none = json_object();
	CHECK(keypool_describe("fal", none, 1000) == NULL);
	CHECK_EQ_INT(keypool_count_states("fal", none, 1000, n), 0);
	CHECK_EQ_INT(n[KEYPOOL_USABLE], 0);
	json_decref(none);
	json_decref(ps);
	keypool_reset();
}

/* max_inflight: a key at its cap is skipped; slots are taken at submit and
 * let go when the job ends, moves on, or its hold lapses. */
static void test_max_inflight(void)
{
	json_t *ps = json_pack("{s:[{s:s,s:s,s:i},{s:s,s:s}]}", "keys",
			       "id", "capped", "key", "secret-x", "max_inflight", 2,
			       "id", "free", "key", "secret-y");
	json_t *one = json_pack("{s:[{s:s,s:i}]}", "keys", "key", "secret-z", "max_inflight", 1);
	char id[KEYPOOL_ID_MAX], held[4][KEYPOOL_JOB_MAX];
	int64_t wait = 0;
	keypool_reset();
	/* r 0 picks "capped" while it has a slot: two jobs take both */
	CHECK_EQ_INT(keypool_take("fal", ps, "job_1", 99000, 1000, 0.0, id, sizeof id, &wait), 0);
	CHECK_STR_EQ(id, "capped");
	CHECK_EQ_INT(keypool_take("fal", ps, "job_2", 99000, 1000, 0.0, id, sizeof id, &wait), 0);
	CHECK_STR_EQ(id, "capped");
	CHECK_EQ_INT(keypool_inflight("fal", ps, "capped", 1000), 2);
	/* at its cap: skipped, the uncapped key takes the rest, uncounted */
	CHECK_EQ_INT(keypool_take("fal", ps, "job_3", 99000, 1000, 0.0, id, sizeof id, &wait), 0);
	CHECK_STR_EQ(id, "free");
	CHECK_EQ_INT(keypool_inflight("fal", ps, "free", 1000), 0);
	CHECK_EQ_INT(keypool_pick("fal", ps, 1000, 0.0, id, sizeof id, &wait), 0);
	CHECK_STR_EQ(id, "free");
	CHECK_EQ_INT(keypool_holders("fal", ps, 1000, held, 4), 2);
	/* a job that ends lets go: the key is picked again */
	keypool_release("job_1");
	keypool_release("job_1"); /* idempotent */
	CHECK_EQ_INT(keypool_inflight("fal", ps, "capped", 1000), 1);
	CHECK_EQ_INT(keypool_pick("fal", ps, 1000, 0.0, id, sizeof id, &wait), 0);
	CHECK_STR_EQ(id, "capped");
	/* a job's second submit lets go of its first key's slot */
	CHECK_EQ_INT(keypool_take("fal", ps, "job_2", 99000, 1000, 0.99, id, sizeof id, &wait), 0);
	CHECK_STR_EQ(id, "free");
	CHECK_EQ_INT(keypool_inflight("fal", ps, "capped", 1000), 0);

	/* a pool of one key with max_inflight 1: the second job waits (-2) */
	CHECK_EQ_INT(keypool_take("krea", one, "job_a", 5000, 1000, 0.5, id, sizeof id, &wait), 0);
	CHECK_STR_EQ(id, "key1");
	CHECK_EQ_INT(keypool_take("krea", one, "job_b", 5000, 1000, 0.5, id, sizeof id, &wait), -2);
	CHECK_EQ_INT(wait, -1);
	CHECK_EQ_INT(keypool_inflight("krea", one, "key1", 1000), 1); /* nothing held on -2 */
	CHECK_EQ_INT(keypool_holders("krea", one, 1000, held, 4), 1);
	CHECK_STR_EQ(held[0], "job_a");
	/* at its cap and cooling: still -2, with the cool-down's end */
	keypool_cool("krea", one, "key1", 3000);
	CHECK_EQ_INT(keypool_pick("krea", one, 1000, 0.5, id, sizeof id, &wait), -1);
	CHECK_EQ_INT(wait, 2000); /* cooling (checked before the cap) */
	/* the hold lapses at its until (the job's deadline) */
	CHECK_EQ_INT(keypool_inflight("krea", one, "key1", 5000), 0);
	CHECK_EQ_INT(keypool_take("krea", one, "job_b", 9000, 5000, 0.5, id, sizeof id, &wait), 0);
	CHECK_EQ_INT(keypool_inflight("krea", one, "key1", 5000), 1);
	/* broken keys are out whatever their slots: every key broken is -1 */
	keypool_break("krea", one, "key1");
	CHECK_EQ_INT(keypool_take("krea", one, "job_c", 9000, 5000, 0.5, id, sizeof id, &wait), -1);
	CHECK_EQ_INT(wait, -1);
	keypool_release("job_b");
	CHECK_EQ_INT(keypool_inflight("krea", one, "key1", 5000), 0);
	keypool_reset();
	CHECK_EQ_INT(keypool_inflight("fal", ps, "capped", 1000), 0);
	json_decref(one);
	json_decref(ps);
}

int main(void)
{
	test_pick_by_weight();
	test_cool_and_break();
	test_views();
	test_max_inflight();
	keypool_reset();
	return check_done();
}
