/*
 * test_customers.c: stored customers (core/customers.c) on a SQLite store:
 * the key kept only hashed, lookups by key and by name through the cache,
 * config customers first, unknown keys cached as unknown, a changed row
 * getting a new view while the old one stays valid; the store functions'
 * refusals; config_reload keeping restart-only settings.
 */
#include "config.h"
#include "customers.h"
#include "store.h"
#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void add(struct store *s, const char *name, const char *key, const char *secret)
{
	struct store_customer c;
	memset(&c, 0, sizeof c);
	snprintf(c.name, sizeof c.name, "%s", name);
	customers_key_hash(key, c.key_sha256);
	snprintf(c.webhook_secret, sizeof c.webhook_secret, "%s", secret ? secret : "");
	c.created_at = 1000;
	CHECK_EQ_INT(store_customer_add(s, &c), 0);
}

static void test_keys(void)
{
	char k1[CUSTOMERS_KEY_LEN + 1], k2[CUSTOMERS_KEY_LEN + 1], hex[65];
	CHECK_EQ_INT(customers_new_key(k1), 0);
	CHECK_EQ_INT(customers_new_key(k2), 0);
	CHECK_EQ_INT((int)strlen(k1), CUSTOMERS_KEY_LEN);
	CHECK(strncmp(k1, "gr_", 3) == 0);
	CHECK(strcmp(k1, k2) != 0);
	customers_key_hash("abc", hex);
	CHECK_STR_EQ(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	CHECK(customers_name_ok("acme-2.eu_x"));
	CHECK(!customers_name_ok(""));
	CHECK(!customers_name_ok("a b"));
	CHECK(!customers_name_ok("a/b"));
}

static void test_store_and_cache(void)
{
	char dir[] = "/tmp/genrelay-test-customers-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char spec[128], err[256] = "", conf[200];
	snprintf(spec, sizeof spec, "sqlite:%s/s.db", dir);
	snprintf(conf, sizeof conf, "%s/c.lua", dir);
	FILE *f = fopen(conf, "w");
	fprintf(f, "store = '%s'\ncustomers = { acme = { api_key = 'acme-key-0123456789' } }\n", spec);
	fclose(f);
	struct config *cfg = config_load(conf, err, sizeof err);
	CHECK(cfg != NULL);
	struct store *s = store_open(spec, 0, err, sizeof err);
	CHECK(s != NULL);
	if (!cfg || !s)
		return;
	add(s, "initech", "key-one", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
	/* Taken name, taken key hash. */
	struct store_customer c;
	memset(&c, 0, sizeof c);
	snprintf(c.name, sizeof c.name, "initech");
	customers_key_hash("other", c.key_sha256);
	CHECK_EQ_INT(store_customer_add(s, &c), 1);
	snprintf(c.name, sizeof c.name, "other");
	customers_key_hash("key-one", c.key_sha256);
	CHECK_EQ_INT(store_customer_add(s, &c), 1);
	CHECK_EQ_INT(store_customer_set_key(s, "nobody", c.key_sha256), 1);
	CHECK_EQ_INT(store_customer_remove(s, "nobody"), 1);

	struct customers *cs = customers_new();
	const struct config_customer *a = customers_by_key(cs, cfg, s, "acme-key-0123456789");
	CHECK(a && strcmp(a->name, "acme") == 0);
	const struct config_customer *i1 = customers_by_key(cs, cfg, s, "key-one");
	CHECK(i1 && strcmp(i1->name, "initech") == 0);
	CHECK(i1 && i1->api_key == NULL); /* never in clear */
	CHECK(i1 && i1->webhook_secret && strncmp(i1->webhook_secret, "whsec_", 6) == 0);
	CHECK(customers_by_key(cs, cfg, s, "key-one") == i1); /* cached: the same view */
	CHECK(customers_by_name(cs, cfg, s, "initech") == i1);
	CHECK(customers_by_key(cs, cfg, s, "nope") == NULL);
	/* Unknown keys are cached as unknown: one added now is not seen yet. */
	add(s, "late", "nope", NULL);
	CHECK(customers_by_key(cs, cfg, s, "nope") == NULL);
	/* A fresh cache sees both; a rotated key is found by its new hash and
	 * gets a new view, the old view's strings stay valid. */
	struct customers *cs2 = customers_new();
	const struct config_customer *l = customers_by_key(cs2, cfg, s, "nope");
	CHECK(l && strcmp(l->name, "late") == 0 && l->webhook_secret == NULL);
	const struct config_customer *old = customers_by_key(cs2, cfg, s, "key-one");
	char hex[65];
	customers_key_hash("key-two", hex);
	CHECK_EQ_INT(store_customer_set_key(s, "initech", hex), 0);
	const struct config_customer *nw = customers_by_key(cs2, cfg, s, "key-two");
	CHECK(nw && old && nw != old && strcmp(old->name, "initech") == 0);
	CHECK(store_customer_get(s, hex, NULL, &c) == 0 && strcmp(c.name, "initech") == 0);
	json_t *list = store_customer_list(s);
	CHECK(list && json_array_size(list) == 2);
	char *text = json_dumps(list, 0);
	CHECK(text && !strstr(text, hex) && !strstr(text, "whsec_"));
	free(text);
	json_decref(list);
	CHECK_EQ_INT(store_customer_remove(s, "late"), 0);
	customers_free(cs);
	customers_free(cs2);

	/* config_reload: restart-only settings keep their values. */
	f = fopen(conf, "w");
	fprintf(f, "store = '%s.other'\nworkers = 7\ncustomers = { b = { api_key = 'b-key-0123456789' } }\n", spec);
	fclose(f);
	char changed[256];
	struct config *next = config_reload(cfg, changed, sizeof changed, err, sizeof err);
	CHECK(next != NULL);
	if (next) {
		CHECK_STR_EQ(next->store, cfg->store);
		CHECK_EQ_INT(next->workers, cfg->workers);
		CHECK(strstr(changed, "store") && strstr(changed, "workers"));
		CHECK(config_customer_by_key(next, "b-key-0123456789") != NULL);
		CHECK(config_customer_by_key(next, "acme-key-0123456789") == NULL);
		config_free(next);
	}
	f = fopen(conf, "w");
	fprintf(f, "this is not lua\n");
	fclose(f);
	CHECK(config_reload(cfg, changed, sizeof changed, err, sizeof err) == NULL);
	CHECK(err[0] != '\0');
	store_close(s);
	config_free(cfg);
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	CHECK_EQ_INT(system(cmd), 0);
}

int main(void)
{
	test_keys();
	test_store_and_cache();
	return check_done();
}
