#define _DEFAULT_SOURCE /* timegm, gmtime_r */
/*
 * budget.c: the spend of a customer's period from the store's usage rows
 * (see budget.h).
 */
#include "budget.h"
#include "config.h"
#include "store.h"

#include <jansson.h>
#include <string.h>
#include <time.h>

int64_t budget_period_start(const char *period, int64_t now)
{
	if (!period || strcmp(period, "total") == 0)
		return 0;
	time_t t = (time_t)(now / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
	if (strcmp(period, "month") == 0)
		tm.tm_mday = 1;
	return (int64_t)timegm(&tm) * 1000;
}

int budget_exceeded(struct store *s, const struct config_customer *c, int64_t now, double *spent)
{
	if (spent)
		*spent = 0;
	if (!(c->budget_amount > 0))
		return 0;
	json_t *rows = store_usage_totals(s, c->name, budget_period_start(c->budget_period, now),
					  now + 1, NULL);
	if (!rows)
		return -1;
	double sum = 0;
	size_t i;
	json_t *row;
	json_array_foreach(rows, i, row) {
		if (strcmp(json_string_value(json_object_get(row, "unit")), c->budget_unit) == 0)
			sum += json_number_value(json_object_get(row, "amount"));
	}
	json_decref(rows);
	if (spent)
		*spent = sum;
	return sum >= c->budget_amount ? 1 : 0;
}
