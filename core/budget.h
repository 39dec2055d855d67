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
 */
#ifndef GENRELAY_BUDGET_H
#define GENRELAY_BUDGET_H

#include <stdint.h>

struct store;
struct config_customer;

/* Start (wall ms, UTC) of the period ("month", "day", "total": 0) holding now. */
int64_t budget_period_start(const char *period, int64_t now);

/* 1 when c's budget is used up at now, 0 when not or c has none, <0 on a
 * store error. *spent (may be NULL) gets the period's spend in the budget's unit. */
int budget_exceeded(struct store *s, const struct config_customer *c, int64_t now, double *spent);

#endif
