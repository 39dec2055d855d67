/*
 * config_customers.c: the customers table: API keys (unique, hashed for
 * the lookup), webhook secrets and URLs, hooks, rates and budgets. See
 * config_int.h.
 */
#include "config_int.h"
#include "sign.h"

#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_customer(const void *a, const void *b)
{
	return strcmp(((const struct config_customer *)a)->name,
		      ((const struct config_customer *)b)->name);
}

/* customers.NAME.rate = { per_s = N, burst = M } (burst defaults to
 * ceil(per_s), at least 1). Absent: no limit. */
static int load_rate(struct ld *d, int ct, const char *prefix, struct config_customer *cu)
{
	static const char *const keys[] = { "per_s", "burst", NULL };
	char key[160];
	snprintf(key, sizeof key, "%s.rate", prefix);
	int r = cfg_sub_table(d, ct, "rate", key);
	if (r <= 0)
		return r;
	int t = lua_gettop(d->L);
	if (cfg_check_keys(d, t, key, keys) < 0)
		return -1;
	snprintf(key, sizeof key, "%s.rate.per_s", prefix);
	if (cfg_rawfield(d->L, t, "per_s") == LUA_TNIL)
		return cfg_lerr(d, "%s: is required", key);
	lua_pop(d->L, 1);
	if (cfg_get_num(d, t, "per_s", key, &cu->rate_per_s, 0, 1e6, 1) < 0)
		return -1;
	long long burst = (long long)ceil(cu->rate_per_s);
	if (burst < 1)
		burst = 1;
	snprintf(key, sizeof key, "%s.rate.burst", prefix);
	if (cfg_get_int(d, t, "burst", key, &burst, 1, 1000000000) < 0)
		return -1;
	cu->rate_burst = (double)burst;
	lua_settop(d->L, t - 1);
	return 0;
}

/* The string field of table t into out (one of the allowed values); nil
 * keeps out. */
static int get_word(struct ld *d, int t, const char *field, const char *key,
		    const char *const *allowed, char *out, size_t outlen)
{
	int ty = cfg_rawfield(d->L, t, field);
	if (ty == LUA_TNIL) {
		lua_pop(d->L, 1);
		return 0;
	}
	const char *v = ty == LUA_TSTRING ? lua_tostring(d->L, -1) : NULL;
	for (const char *const *a = allowed; v && *a; a++) {
		if (strcmp(v, *a) == 0) {
			snprintf(out, outlen, "%s", v);
			lua_pop(d->L, 1);
			return 0;
		}
	}
	lua_pop(d->L, 1);
	char list[96] = "";
	for (const char *const *a = allowed; *a; a++)
		snprintf(list + strlen(list), sizeof list - strlen(list), "%s\"%s\"",
			 a == allowed ? "" : a[1] ? ", " : " or ", *a);
	return cfg_lerr(d, "%s: must be %s", key, list);
}

/* customers.NAME.budget = { amount = n > 0, unit = "usd" | "credits",
 * period = "month" | "day" | "total", warn_at = fraction (0, 1) }. */
static int load_budget(struct ld *d, int ct, const char *prefix, struct config_customer *cu)
{
	static const char *const keys[] = { "amount", "unit", "period", "warn_at", NULL };
	static const char *const units[] = { "usd", "credits", NULL };
	static const char *const periods[] = { "month", "day", "total", NULL };
	char key[160];
	snprintf(cu->budget_unit, sizeof cu->budget_unit, "usd");
	snprintf(cu->budget_period, sizeof cu->budget_period, "month");
	snprintf(key, sizeof key, "%s.budget", prefix);
	int r = cfg_sub_table(d, ct, "budget", key);
	if (r <= 0)
		return r;
	int t = lua_gettop(d->L);
	if (cfg_check_keys(d, t, key, keys) < 0)
		return -1;
	snprintf(key, sizeof key, "%s.budget.amount", prefix);
	if (cfg_rawfield(d->L, t, "amount") == LUA_TNIL)
		return cfg_lerr(d, "%s: is required", key);
	lua_pop(d->L, 1);
	if (cfg_get_num(d, t, "amount", key, &cu->budget_amount, 0, 1e12, 1) < 0)
		return -1;
	snprintf(key, sizeof key, "%s.budget.unit", prefix);
	if (get_word(d, t, "unit", key, units, cu->budget_unit, sizeof cu->budget_unit) < 0)
		return -1;
	snprintf(key, sizeof key, "%s.budget.period", prefix);
	if (get_word(d, t, "period", key, periods, cu->budget_period, sizeof cu->budget_period) < 0)
		return -1;
	snprintf(key, sizeof key, "%s.budget.warn_at", prefix);
	/* Unset: 0, no warning. A number is checked here for the message that
	 * says what the fraction means. */
	double warn = 0;
	if (cfg_get_num(d, t, "warn_at", key, &warn, -1e12, -1, 0) < 0)
		return -1;
	if (cfg_rawfield(d->L, t, "warn_at") != LUA_TNIL && !(warn > 0 && warn < 1))
		return cfg_lerr(d, "%s: must be a fraction above 0 and below 1 (0.8: warn at 80%% of the amount)", key);
	lua_pop(d->L, 1);
	cu->budget_warn_at = warn;
	lua_settop(d->L, t - 1);
	return 0;
}

int cfg_load_customers(struct ld *d, struct config *c, int env)
{
	static const char *const keys[] = { "api_key", "webhook_secret", "hook",
		"webhook_url", "rate", "budget", NULL };
	lua_State *L = d->L;
	char key[160], prefix[100];
	int r = cfg_sub_table(d, env, "customers", "customers");
	if (r <= 0)
		return r;
	int t = lua_gettop(L);
	size_t n = cfg_table_count(L, t);
	if (n == 0) {
		lua_settop(L, t - 1);
		return 0;
	}
	c->customers = calloc(n, sizeof *c->customers);
	if (!c->customers)
		return cfg_lerr(d, "out of memory");
	lua_pushnil(L);
	while (lua_next(L, t)) {
		if (lua_type(L, -2) != LUA_TSTRING)
			return cfg_lerr(d, "customers: names must be strings");
		const char *name = lua_tostring(L, -2);
		if (!cfg_is_ident(name))
			return cfg_lerr(d, "customers.%.64s: name must be an identifier ([A-Za-z0-9_]+)", name);
		struct config_customer *cu = &c->customers[c->ncustomers++];
		if (!(cu->name = strdup(name)) || !(cu->hook = strdup("default")))
			return cfg_lerr(d, "out of memory");
		snprintf(prefix, sizeof prefix, "customers.%s", name);
		if (lua_type(L, -1) != LUA_TTABLE)
			return cfg_lerr(d, "%s: must be a table", prefix);
		int ct = lua_gettop(L);
		if (cfg_check_keys(d, ct, prefix, keys) < 0)
			return -1;
		snprintf(key, sizeof key, "%s.api_key", prefix);
		if (cfg_rawfield(L, ct, "api_key") == LUA_TNIL)
			return cfg_lerr(d, "%s: is required", key);
		if (cfg_take_str(d, key, &cu->api_key, 1) < 0)
			return -1;
		snprintf(key, sizeof key, "%s.webhook_secret", prefix);
		if (cfg_get_str(d, ct, "webhook_secret", key, &cu->webhook_secret, 1) < 0)
			return -1;
		char why[96];
		if (cu->webhook_secret &&
		    sign_webhook_secret_check(cu->webhook_secret, why, sizeof why) < 0)
			return cfg_lerr(d, "%s: %s", key, why);
		snprintf(key, sizeof key, "%s.hook", prefix);
		if (cfg_get_str(d, ct, "hook", key, &cu->hook, 1) < 0)
			return -1;
		if (!cfg_is_ident(cu->hook))
			return cfg_lerr(d, "%s: must be a hook name ([A-Za-z0-9_]+)", key);
		if (load_rate(d, ct, prefix, cu) < 0 || load_budget(d, ct, prefix, cu) < 0)
			return -1;
		snprintf(key, sizeof key, "%s.webhook_url", prefix);
		if (cfg_get_str(d, ct, "webhook_url", key, &cu->webhook_url, 1) < 0)
			return -1;
		if (cu->webhook_url && !cfg_valid_http_url(cu->webhook_url, 1))
			return cfg_lerr(d, "%s: must be an http(s) URL", key);
		if (cu->webhook_url && !cu->webhook_secret)
			return cfg_lerr(d, "%s.webhook_secret: is required with a webhook_url (deliveries are always signed)", prefix);
		EVP_Digest(cu->api_key, strlen(cu->api_key), cu->api_key_sha256,
			   NULL, EVP_sha256(), NULL);
		lua_pop(L, 1);
	}
	qsort(c->customers, c->ncustomers, sizeof *c->customers, cmp_customer);
	for (size_t i = 0; i < c->ncustomers; i++)
		for (size_t j = i + 1; j < c->ncustomers; j++)
			if (strcmp(c->customers[i].api_key, c->customers[j].api_key) == 0)
				return cfg_lerr(d, "customers.%s.api_key: same as customers.%s.api_key (keys must be unique)",
					    c->customers[j].name, c->customers[i].name);
	lua_settop(L, t - 1);
	return 0;
}
