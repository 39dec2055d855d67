/*
 * usage.c: checks adapters' costs and estimates from price tables (see
 * usage.h). Pure functions of their arguments.
 */
#include "usage.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int unit_ok(const char *u)
{
	return u && (strcmp(u, "usd") == 0 || strcmp(u, "credits") == 0);
}

json_t *usage_cost_of(const json_t *cost)
{
	if (!json_is_object(cost))
		return NULL;
	const json_t *a = json_object_get(cost, "amount");
	const char *unit = json_string_value(json_object_get(cost, "unit"));
	const json_t *src = json_object_get(cost, "source");
	const char *source = src ? json_string_value(src) : "provider";
	if (!json_is_number(a) || !isfinite(json_number_value(a)) || json_number_value(a) < 0 ||
	    json_number_value(a) > 1e12 || !unit_ok(unit) || !source ||
	    (strcmp(source, "provider") && strcmp(source, "estimate")))
		return NULL;
	return json_pack("{s:f,s:s,s:s}", "amount", json_number_value(a), "unit", unit,
			 "source", source);
}

static double price(const json_t *p, const char *k)
{
	const json_t *v = json_object_get(p, k);
	return json_is_number(v) ? json_number_value(v) : 0;
}

json_t *usage_estimate(const json_t *settings, const char *model, const char *output)
{
	const json_t *p = json_object_get(json_object_get(settings, "prices"), model ? model : "");
	if (!json_is_object(p))
		return NULL;
	json_t *out = output ? json_loads(output, 0, NULL) : NULL;
	const char *otype = json_string_value(json_object_get(out, "type"));
	const json_t *items = json_object_get(out, "items");
	size_t images = 0, videos = 0, i;
	const json_t *it;
	json_array_foreach(items, i, it) {
		const char *t = json_string_value(json_object_get(it, "type"));
		if (!t)
			t = otype;
		images += t && strcmp(t, "image") == 0;
		videos += t && strcmp(t, "video") == 0;
	}
	json_decref(out);
	double amount = price(p, "per_job") + price(p, "per_image") * (double)images +
			price(p, "per_video") * (double)videos;
	const char *unit = json_string_value(json_object_get(p, "unit"));
	return json_pack("{s:f,s:s,s:s}", "amount", amount, "unit", unit ? unit : "usd",
			 "source", "estimate");
}

int usage_prices_check(const json_t *prices, char *why, size_t whylen)
{
	const char *model, *k;
	const json_t *p, *v;
	if (!json_is_object(prices)) {
		snprintf(why, whylen, "must be a table { [\"model\"] = { per_image = n, ... } }");
		return -1;
	}
	json_object_foreach((json_t *)prices, model, p) {
		if (!json_is_object(p)) {
			snprintf(why, whylen, "[\"%.100s\"]: must be a table { per_job = n, per_image = n, per_video = n, unit = \"usd\" }", model);
			return -1;
		}
		json_object_foreach((json_t *)p, k, v) {
			if (strcmp(k, "unit") == 0) {
				if (!unit_ok(json_string_value(v))) {
					snprintf(why, whylen, "[\"%.100s\"].unit: must be \"usd\" or \"credits\"", model);
					return -1;
				}
			} else if (strcmp(k, "per_job") && strcmp(k, "per_image") && strcmp(k, "per_video")) {
				snprintf(why, whylen, "[\"%.100s\"].%.40s: unknown (per_job, per_image, per_video, unit)", model, k);
				return -1;
			} else if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 1e9) {
				snprintf(why, whylen, "[\"%.100s\"].%s: must be a number >= 0", model, k);
				return -1;
			}
		}
	}
	return 0;
}
