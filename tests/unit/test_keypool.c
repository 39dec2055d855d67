/*
 * test_keypool.c: weighted key choice, 429 cool-downs and 401/403 broken
 * marks of a provider's key pool (core/keypool.c).
 */
#include "keypool.h"
#include "check.h"

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

int main(void)
{
	test_pick_by_weight();
	test_cool_and_break();
	keypool_reset();
	return check_done();
}
