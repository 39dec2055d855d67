/*
 * usage_api.c: GET /v1/usage (see usage_api.h). The store sums; this checks
 * the query and shapes the answer:
 *   {"from", "to", "group_by", "data": [{customer?, key?, unit, amount, jobs}],
 *    "totals": [{unit, amount, jobs}]}
 */
#define _DEFAULT_SOURCE /* timegm */
#include "usage_api.h"
#include "job.h"
#include "server.h"
#include "store.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

int64_t usage_parse_time(const char *s)
{
	struct tm tm;
	int y, mo, d, h = 0, mi = 0, sec = 0, n = 0;
	size_t len = s ? strlen(s) : 0;
	if (len == 10) {
		if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3 || n != 10)
			return -1;
	} else if (len >= 20 && s[len - 1] == 'Z') {
		if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 ||
		    n != 19 || (len > 20 && (s[19] != '.' || len > 24)))
			return -1;
		for (size_t i = 20; i + 1 < len; i++)
			if (s[i] < '0' || s[i] > '9')
				return -1;
	} else {
		return -1;
	}
	if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
		return -1;
	memset(&tm, 0, sizeof tm);
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	time_t t = timegm(&tm);
	return t < 0 ? -1 : (int64_t)t * 1000;
}

static int64_t wall_ms(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

void usage_api_respond(struct request *r, struct store *store, const char *customer)
{
	const char *fs = server_query(r, "from"), *ts = server_query(r, "to");
	const char *g = server_query(r, "group_by");
	int64_t from = fs ? usage_parse_time(fs) : 0;
	int64_t to = ts ? usage_parse_time(ts) : wall_ms() + 1;
	if (from < 0 || to < 0) {
		server_respond_error(r, 400, "INVALID_REQUEST",
				     "from and to must be dates (YYYY-MM-DD) or UTC times (YYYY-MM-DDTHH:MM:SSZ)");
		return;
	}
	if (g && strcmp(g, "model") && strcmp(g, "provider") && strcmp(g, "day")) {
		server_respond_error(r, 400, "INVALID_REQUEST", "group_by must be model, provider or day");
		return;
	}
	json_t *data = store_usage_totals(store, customer, from, to, g);
	json_t *all = data ? store_usage_totals(store, customer, from, to, NULL) : NULL;
	if (!data || !all) {
		json_decref(data);
		server_respond_error(r, 503, "UNAVAILABLE", "the store is unavailable");
		return;
	}
	/* totals: per unit, across customers for the admin */
	json_t *totals = json_array(), *row;
	size_t i;
	json_array_foreach(all, i, row) {
		const char *unit = json_string_value(json_object_get(row, "unit"));
		json_t *t = NULL, *x;
		size_t k;
		json_array_foreach(totals, k, x)
			if (strcmp(json_string_value(json_object_get(x, "unit")), unit) == 0)
				t = x;
		if (!t) {
			t = json_pack("{s:s,s:f,s:I}", "unit", unit, "amount", 0.0, "jobs", (json_int_t)0);
			json_array_append_new(totals, t);
		}
		json_object_set_new(t, "amount", json_real(json_number_value(json_object_get(t, "amount")) +
							   json_number_value(json_object_get(row, "amount"))));
		json_object_set_new(t, "jobs", json_integer(json_integer_value(json_object_get(t, "jobs")) +
							    json_integer_value(json_object_get(row, "jobs"))));
	}
	json_decref(all);
	json_t *o = json_pack("{s:o,s:o,s:s?,s:o,s:o}", "from", job_time_json(from), "to", job_time_json(to),
			      "group_by", g, "data", data, "totals", totals);
	server_respond_json(r, 200, o);
}
