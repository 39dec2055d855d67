/*
 * budget.h: customers' budgets (customers.NAME.budget), checked against the
 * usage rows in the store, so every worker and instance sees the same spend.
 *
 * A run is refused (402 BUDGET_EXCEEDED) when the customer's recorded spend
 * in the current period is at or past the budget. Spend is recorded when a
 * job ends, so runs admitted while others are still in flight can go over:
 * with at most N of the customer's jobs in flight, the spend ends at most
 * N x (the largest cost of one job) past the budget (the job that crosses
 * the line, and the ones admitted before its cost was recorded, finish).
 *
 * warn_at (a fraction in (0, 1)) warns the customer once its spend crosses
 * warn_at x amount: the end of a job whose cost takes the period's spend
 * from below that line to at or above it queues a `budget.warning`
 * delivery in the same transaction. The crossing is computed from the
 * spend before and after that cost as the transaction sees it: on SQLite
 * (one writer at a time) exactly once per crossing; on PostgreSQL jobs of
 * the customer ending at the same moment see each other's cost only once
 * committed, so at the edge each of them may send one (at most one per
 * concurrently ending job), or, when none crosses alone but they do
 * together, none.
 */
#ifndef GENRELAY_BUDGET_H
#define GENRELAY_BUDGET_H

#include <jansson.h>
#include <stdint.h>

struct store;
struct config_customer;

/* Start (wall ms, UTC) of the period ("month", "day", "total": 0) holding now. */
int64_t budget_period_start(const char *period, int64_t now);

/* 1 when c's budget is used up at now, 0 when not or c has none, <0 on a
 * store error. *spent (may be NULL) gets the period's spend in the budget's unit. */
int budget_exceeded(struct store *s, const struct config_customer *c, int64_t now, double *spent);

/*
 * In the caller's transaction, before a job's cost (amount in unit) is
 * recorded at now: 1 when it takes c's spend in the period from below
 * warn_at x amount to at or above it (*spent: the spend with it), 0 when
 * not, when c has no warn_at or the unit is not the budget's; <0 on a
 * store error.
 */
int budget_warn_crossed(struct store *s, const struct config_customer *c, double amount,
			const char *unit, int64_t now, double *spent);

/*
 * The body of a budget.warning event (a new object, caller owns):
 * {type:"budget.warning", customer, budget:{amount,unit,period,warn_at},
 * spent, fraction (spent / amount), job_id (the job whose cost crossed),
 * at (RFC 3339 of at, wall ms)}.
 */
json_t *budget_warning_body(const struct config_customer *c, double spent, const char *job_id,
			    int64_t at);

#endif
