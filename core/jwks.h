/*
 * jwks.h: the providers' signing keys (JWKS), cached per worker.
 *
 * A provider whose settings have `jwks_url` signs its callbacks; its keys
 * are fetched on the worker's loop (never blocking), kept for a day, and
 * fetched again sooner when a callback fails verification (at most once a
 * minute). The cache lives in w->engine (engine_init makes it).
 *
 * Layer (engine_int.h): calls engine_work.c only; called by engine.c
 * (engine_provider_keys).
 */
#ifndef GENRELAY_JWKS_H
#define GENRELAY_JWKS_H

#include <jansson.h>

struct worker;

/* The provider's cached "keys" array (borrowed until the next fetch of that
 * provider ends) or NULL; starts a fetch when none is running and the keys
 * are missing, a day old, or (refresh) a minute old. NULL at once, and no
 * fetch, for a provider without jwks_url. */
json_t *jwks_provider_keys(struct worker *w, const char *provider, int refresh);
/* Frees the worker's fetches still in flight, which the stopped fetcher
 * (fetcher_free) will never call back. After fetcher_free. */
void jwks_free(struct worker *w);

#endif
