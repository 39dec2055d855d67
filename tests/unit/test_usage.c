/*
 * test_usage.c: costs and price tables (core/usage.c), the time forms of
 * GET /v1/usage (core/usage_api.c), and the usage rows of the SQLite store.
 */
#include "usage.h"
#include "usage_api.h"
#include "budget.h"
#include "store.h"
#include "check.h"

#include <stdlib.h>
#include <unistd.h>

static void test_cost_of(void)
{
	json_t *in = json_pack("{s:f,s:s}", "amount", 1.5, "unit", "usd");
	json_t *c = usage_cost_of(in);
	CHECK(c != NULL);
	CHECK_STR_EQ(json_string_value(json_object_get(c, "source")), "provider");
	CHECK(json_number_value(json_object_get(c, "amount")) == 1.5);
	json_decref(c);
	json_decref(in);
	static const char *const bad[] = {
		"{\"amount\":-1,\"unit\":\"usd\"}", "{\"amount\":1,\"unit\":\"eur\"}",
		"{\"amount\":\"1\",\"unit\":\"usd\"}", "{\"unit\":\"usd\"}",
		"{\"amount\":1,\"unit\":\"usd\",\"source\":\"guess\"}", "[1]", "7",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		json_t *b = json_loads(bad[i], JSON_DECODE_ANY, NULL);
		c = usage_cost_of(b);
		CHECK(c == NULL);
		json_decref(c);
		json_decref(b);
	}
	CHECK(usage_cost_of(NULL) == NULL);
	in = json_pack("{s:i,s:s,s:s}", "amount", 3, "unit", "credits", "source", "estimate");
	c = usage_cost_of(in);
	CHECK(c && json_number_value(json_object_get(c, "amount")) == 3);
	json_decref(c);
	json_decref(in);
}

static void test_estimate(void)
{
	json_t *ps = json_loads("{\"prices\":{\"flux\":{\"per_image\":0.025},"
				"\"vid\":{\"per_job\":0.1,\"per_video\":0.5,\"unit\":\"credits\"}}}", 0, NULL);
	json_t *c = usage_estimate(ps, "flux", "{\"type\":\"image\",\"items\":[{\"url\":\"a\"},"
				   "{\"type\":\"image\",\"url\":\"b\"},{\"type\":\"video\",\"url\":\"c\"}]}");
	CHECK(c != NULL);
	CHECK(json_number_value(json_object_get(c, "amount")) == 0.05);
	CHECK_STR_EQ(json_string_value(json_object_get(c, "unit")), "usd");
	CHECK_STR_EQ(json_string_value(json_object_get(c, "source")), "estimate");
	json_decref(c);
	c = usage_estimate(ps, "vid", "{\"type\":\"video\",\"items\":[{\"url\":\"v\"}]}");
	CHECK(c && json_number_value(json_object_get(c, "amount")) == 0.6);
	CHECK_STR_EQ(json_string_value(json_object_get(c, "unit")), "credits");
	json_decref(c);
	CHECK(usage_estimate(ps, "other", "{}") == NULL);
	CHECK(usage_estimate(NULL, "flux", NULL) == NULL);
	c = usage_estimate(ps, "flux", NULL); /* no output: nothing priced */
	CHECK(c && json_number_value(json_object_get(c, "amount")) == 0);
	json_decref(c);
	char why[300];
	CHECK_EQ_INT(usage_prices_check(json_object_get(ps, "prices"), why, sizeof why), 0);
	json_decref(ps);
	static const char *const bad[] = {
		"[]", "{\"m\":1}", "{\"m\":{\"per_image\":-1}}", "{\"m\":{\"per_pixel\":1}}",
		"{\"m\":{\"unit\":\"eur\"}}", "{\"m\":{\"per_job\":\"1\"}}",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		json_t *b = json_loads(bad[i], 0, NULL);
		CHECK(usage_prices_check(b, why, sizeof why) < 0);
		json_decref(b);
	}
}

static void test_parse_time(void)
{
	CHECK_EQ_INT(usage_parse_time("1970-01-02"), 86400000);
	CHECK_EQ_INT(usage_parse_time("2026-12-01T10:00:00Z"), 1796119200000LL);
	CHECK_EQ_INT(usage_parse_time("2026-12-01T10:00:00.123Z"), 1796119200000LL);
	static const char *const bad[] = { "", "yesterday", "2026-13-01", "2026-12-01T10:00:00",
					   "2026-12-01T25:00:00Z", "2026-12-01T10:00:00.1234Z",
					   "2026-12-01T10:00:00.x2Z", "2026-12-1", "1969-12-31" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		CHECK_EQ_INT(usage_parse_time(bad[i]), -1);
	CHECK_EQ_INT(usage_parse_time(NULL), -1);
}

static void test_store_usage(void)
{
	char dir[] = "/tmp/genrelay-test-usage-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char spec[128], err[256] = "";
	snprintf(spec, sizeof spec, "sqlite:%s/s.db", dir);
	struct store *s = store_open(spec, 0, err, sizeof err);
	CHECK(s != NULL);
	if (!s)
		return;
	CHECK_EQ_INT(store_usage_add(s, "job_1", "acme", "fal", "flux", 0.5, "usd", "estimate", 1000), 0);
	CHECK_EQ_INT(store_usage_add(s, "job_1", "acme", "fal", "flux", 9, "usd", "estimate", 1000), 0); /* once per job */
	CHECK_EQ_INT(store_usage_add(s, "job_2", "acme", "krea", "x", 0.25, "usd", "provider", 86400000 + 5), 0);
	CHECK_EQ_INT(store_usage_add(s, "job_3", "globex", "abstrakt", "y", 2, "credits", "provider", 2000), 0);
	json_t *t = store_usage_totals(s, "acme", 0, 1LL << 50, NULL);
	CHECK_EQ_INT(json_array_size(t), 1);
	CHECK(json_number_value(json_object_get(json_array_get(t, 0), "amount")) == 0.75);
	CHECK_EQ_INT(json_integer_value(json_object_get(json_array_get(t, 0), "jobs")), 2);
	CHECK(json_object_get(json_array_get(t, 0), "customer") == NULL);
	json_decref(t);
	t = store_usage_totals(s, "acme", 0, 1LL << 50, "day");
	CHECK_EQ_INT(json_array_size(t), 2);
	CHECK_STR_EQ(json_string_value(json_object_get(json_array_get(t, 0), "key")), "1970-01-01");
	CHECK_STR_EQ(json_string_value(json_object_get(json_array_get(t, 1), "key")), "1970-01-02");
	json_decref(t);
	t = store_usage_totals(s, "acme", 1001, 1LL << 50, "model"); /* from is inclusive, job_1 at 1000 */
	CHECK_EQ_INT(json_array_size(t), 1);
	CHECK_STR_EQ(json_string_value(json_object_get(json_array_get(t, 0), "key")), "krea:x");
	json_decref(t);
	t = store_usage_totals(s, NULL, 0, 1LL << 50, "provider");
	CHECK_EQ_INT(json_array_size(t), 3);
	CHECK_STR_EQ(json_string_value(json_object_get(json_array_get(t, 2), "customer")), "globex");
	CHECK_STR_EQ(json_string_value(json_object_get(json_array_get(t, 2), "unit")), "credits");
	json_decref(t);
	store_close(s);
	char cmd[256];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	CHECK_EQ_INT(system(cmd), 0);
}

static void test_period_start(void)
{
	int64_t now = usage_parse_time("2026-12-17T13:45:10Z") + 250;
	CHECK_EQ_INT(budget_period_start("month", now), usage_parse_time("2026-12-01"));
	CHECK_EQ_INT(budget_period_start("day", now), usage_parse_time("2026-12-17"));
	CHECK_EQ_INT(budget_period_start("total", now), 0);
}

int main(void)
{
	test_period_start();
	test_cost_of();
	test_estimate();
	test_parse_time();
	test_store_usage();
	return check_done();
}
