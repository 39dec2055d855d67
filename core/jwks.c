/*
 * jwks.c: the providers' signing keys, fetched and cached per worker (jwks.h).
 */
#include "jwks.h"

#include "config.h"
#include "engine_int.h"
#include "fetch.h"
#include "log.h"
#include "worker.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JWKS_MAX_AGE_MS (24 * 3600 * 1000LL)
#define JWKS_REFRESH_MS 60000
#define JWKS_TIMEOUT_MS 10000
#define JWKS_RESPONSE_MAX (256 * 1024)

/* One fetch in flight; owned by its fetch until jwks_done. */
struct jwks_fetch {
	struct worker *w;
	char provider[64];
	struct jwks_fetch *next, **pprev; /* the worker's fetches in flight */
};

/* Each worker's fetches in flight (by w->index): a fetch aborted when the
 * worker stops never calls back, so jwks_free frees what is left. */
static struct jwks_fetch *inflight[64];

static void unlist(struct jwks_fetch *jf)
{
	*jf->pprev = jf->next;
	if (jf->next)
		jf->next->pprev = jf->pprev;
}

void jwks_free(struct worker *w)
{
	while (inflight[w->index]) {
		struct jwks_fetch *jf = inflight[w->index];
		unlist(jf);
		free(jf);
	}
}

static void jwks_done(void *arg, const struct fetch_response *res)
{
	struct jwks_fetch *jf = arg;
	struct worker *w = jf->w;
	json_t *entry = json_object_get(w->engine->jwks, jf->provider);
	json_object_set_new(entry, "pending", json_false());
	json_t *doc = !res->error && res->status == 200
		? json_loadb(res->body, res->body_len, 0, NULL) : NULL;
	json_t *keys = json_object_get(doc, "keys");
	if (json_is_array(keys)) {
		json_object_set(entry, "keys", keys);
		json_object_set_new(entry, "at", json_integer(loop_wall_ms()));
		log_info("jwks: %zu key(s) for %s", json_array_size(keys), jf->provider);
	} else if (res->error) {
		log_warn("jwks: fetching keys for %s failed: %s", jf->provider, res->error);
	} else {
		log_warn("jwks: fetching keys for %s failed: HTTP %ld", jf->provider, res->status);
	}
	json_decref(doc);
	unlist(jf);
	free(jf);
}

json_t *jwks_provider_keys(struct worker *w, const char *provider, int refresh)
{
	const char *url = json_string_value(engine_setting(w, provider, "jwks_url"));
	if (!url)
		return NULL;
	json_t *cache = w->engine->jwks;
	json_t *entry = json_object_get(cache, provider);
	if (!entry) {
		entry = json_object();
		json_object_set_new(cache, provider, entry);
	}
	json_t *keys = json_object_get(entry, "keys");
	int64_t age = loop_wall_ms() - json_integer_value(json_object_get(entry, "at"));
	int stale = !keys || age > JWKS_MAX_AGE_MS || (refresh && age > JWKS_REFRESH_MS);
	if (!stale || json_is_true(json_object_get(entry, "pending")))
		return keys;
	struct jwks_fetch *jf = calloc(1, sizeof *jf);
	if (!jf)
		return keys;
	jf->w = w;
	snprintf(jf->provider, sizeof jf->provider, "%s", provider);
	struct fetch_request fr = {
		.method = "GET", .url = url,
		.headers = curl_slist_append(NULL, "Accept: application/json"),
		.timeout_ms = JWKS_TIMEOUT_MS, .max_response = JWKS_RESPONSE_MAX,
		.proxy = json_string_value(json_object_get(config_provider(w->cfg, provider), "proxy")),
	};
	jf->next = inflight[w->index];
	jf->pprev = &inflight[w->index];
	if (jf->next)
		jf->next->pprev = &jf->next;
	inflight[w->index] = jf;
	if (fetch_start(w->fetch, &fr, jwks_done, jf) == 0) {
		json_object_set_new(entry, "pending", json_true());
	} else {
		unlist(jf);
		free(jf);
	}
	return keys;
}
