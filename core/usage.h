/*
 * usage.h: the cost of a job, as an adapter reports it or as the price table
 * of its provider's settings estimates it.
 *
 * A cost is { amount = n >= 0, unit = "usd" | "credits",
 * source = "provider" | "estimate" }. providers.NAME.prices =
 * { [model] = { per_job = n, per_image = n, per_video = n, unit = "usd" } }
 * prices a succeeded job that reported no cost: per_job plus per_image (or
 * per_video) times the output's items of that type (source "estimate").
 */
#ifndef GENRELAY_USAGE_H
#define GENRELAY_USAGE_H

#include <jansson.h>

/* A checked copy of an adapter's result.cost (source defaults to
 * "provider"), or NULL when it is missing or malformed. Caller owns. */
json_t *usage_cost_of(const json_t *cost);

/* The estimate of a succeeded job of model with output (JSON text, may be
 * NULL) from settings' prices, or NULL when no price applies. Caller owns. */
json_t *usage_estimate(const json_t *settings, const char *model, const char *output);

/* 0 when prices (providers.NAME.prices) is well-formed, else -1 with why. */
int usage_prices_check(const json_t *prices, char *why, size_t whylen);

#endif
