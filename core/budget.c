#define _DEFAULT_SOURCE /* timegm, gmtime_r */
/*
 * budget.c: the spend of a customer's period from the store's usage rows,
 * and the crossing of its warning line (see budget.h).
 */
#include "budget.h"
#include "config.h"
#include "job.h"
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

/* c's spend in the budget's unit over [from, to). 0, or <0 on a store error. */
static int spend_of(struct store *s, const struct config_customer *c, int64_t from, int64_t to,
		    double *sum)
{
	json_t *rows = store_usage_totals(s, c->name, from, to, NULL);
	size_t i;
	json_t *row;
	*sum = 0;
	if (!rows)
		return -1;
	json_array_foreach(rows, i, row) {
		if (strcmp(json_string_value(json_object_get(row, "unit")), c->budget_unit) == 0)
			*sum += json_number_value(json_object_get(row, "amount"));
	}
	json_decref(rows);
	return 0;
}

int budget_exceeded(struct store *s, const struct config_customer *c, int64_t now, double *spent)
{
	double sum = 0;
	if (spent)
		*spent = 0;
	if (!(c->budget_amount > 0))
		return 0;
	if (spend_of(s, c, budget_period_start(c->budget_period, now), now + 1, &sum) < 0)
		return -1;
	if (spent)
		*spent = sum;
	return sum >= c->budget_amount ? 1 : 0;
}

int budget_warn_crossed(struct store *s, const struct config_customer *c, double amount,
			const char *unit, int64_t now, double *spent)
{
	double after = 0;
	*spent = 0;
	if (!c || !(c->budget_amount > 0) || !(c->budget_warn_at > 0) || !(amount > 0) || !unit ||
	    strcmp(unit, c->budget_unit) != 0)
		return 0;
	double before = 0;
	if (spend_of(s, c, budget_period_start(c->budget_period, now), now + 1, &before) < 0)
		return -1;
	double line = c->budget_warn_at * c->budget_amount;
	after = before + amount;
	*spent = after;
	return before < line && after >= line ? 1 : 0;
}

json_t *budget_warning_body(const struct config_customer *c, double spent, const char *job_id,
			    int64_t at)
{
	char when[40];
	job_time(at, when, sizeof when);
	return json_pack("{s:s,s:s,s:{s:f,s:s,s:s,s:f},s:f,s:f,s:s,s:s}", "type", "budget.warning",
			 "customer", c->name, "budget", "amount", c->budget_amount, "unit",
			 c->budget_unit, "period", c->budget_period, "warn_at", c->budget_warn_at,
			 "spent", spent, "fraction", spent / c->budget_amount, "job_id", job_id,
			 "at", when);
}
