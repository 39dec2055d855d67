/*
 * test_keypool.c: weighted key choice, 429 cool-downs and 401/403 broken
 * marks of a provider's key pool (core/keypool.c).
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

int main(void)
{
	test_pick_by_weight();
	test_cool_and_break();
	test_views();
	keypool_reset();
	return check_done();
}
