/*
 * config_secrets.c: the configuration's secrets: the server secrets from
 * the environment, the scrubber built from every secret, and Lua errors
 * about the file with its string literals redacted. See config_int.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "config_int.h"
#include "scrub.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * A Lua error of the config file, with what Lua quoted from the file's
 * string literals (they may be secrets) redacted: scrub_lua_message with the
 * literals of the file.
 */
void cfg_redact_lua_error(char *msg, size_t cap, const char *path)
{
	char *lits = NULL;
	FILE *f = fopen(path, "rb");
	if (f) {
		size_t cap_src = 1 << 20, n;
		char *src = malloc(cap_src);
		if (src) {
			n = fread(src, 1, cap_src, f);
			lits = scrub_lua_literals(src, n);
			free(src);
		}
		fclose(f);
	}
	scrub_lua_message(msg, cap, lits);
	free(lits);
}

/*
 * server_secret and server_secret_previous not set in the file come from the
 * environment. Both must be at least 16 bytes, wherever they come from.
 */
int cfg_load_secrets_env(struct ld *d, struct config *c)
{
	static const struct {
		const char *key, *env;
		size_t off;
	} v[] = {
		{ "server_secret", "GENRELAY_SERVER_SECRET", offsetof(struct config, server_secret) },
		{ "server_secret_previous", "GENRELAY_SERVER_SECRET_PREVIOUS",
		  offsetof(struct config, server_secret_previous) },
	};
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		char **field = (char **)((char *)c + v[i].off);
		const char *e = getenv(v[i].env);
		int from_env = 0;
		if (!*field && e && *e) {
			if (!(*field = strdup(e)))
				return cfg_lerr(d, "out of memory");
			from_env = 1;
		}
		if (*field && strlen(*field) < 16)
			return cfg_lerr(d, "%s: must be at least 16 bytes", from_env ? v[i].env : v[i].key);
	}
	return 0;
}

/* Every string under a secret-looking key, at any depth, is a secret; but
 * not an `id` (a key pool's ids are recorded with jobs: names, not secrets). */
static int scrub_json_secrets(struct scrub *s, json_t *v, int secret)
{
	const char *k;
	json_t *x;
	size_t i;
	if (json_is_string(v))
		return secret && scrub_add(s, json_string_value(v)) < 0 ? -1 : 0;
	if (json_is_object(v)) {
		json_object_foreach(v, k, x)
			if (scrub_json_secrets(s, x, scrub_key_is_secret(k) ||
					       (secret && strcmp(k, "id") != 0)) < 0)
				return -1;
	} else if (json_is_array(v)) {
		json_array_foreach(v, i, x)
			if (scrub_json_secrets(s, x, secret) < 0)
				return -1;
	}
	return 0;
}

/*
 * c->scrub from every secret of the config: provider settings under
 * secret-looking keys, customers' API keys and webhook secrets (a "whsec_"
 * secret also without its prefix), the server secrets and the admin key.
 */
int cfg_build_scrub(struct ld *d, struct config *c)
{
	struct scrub *s = scrub_new();
	int rc = 0;
	if (!s)
		return cfg_lerr(d, "out of memory");
	c->scrub = s;
	rc |= scrub_json_secrets(s, c->providers, 0);
	for (size_t i = 0; i < c->ncustomers; i++) {
		const char *ws = c->customers[i].webhook_secret;
		rc |= scrub_add(s, c->customers[i].api_key) < 0 ? -1 : 0;
		rc |= scrub_add(s, ws) < 0 ? -1 : 0;
		if (ws && strncmp(ws, "whsec_", 6) == 0)
			rc |= scrub_add(s, ws + 6) < 0 ? -1 : 0;
	}
	rc |= scrub_add(s, c->server_secret) < 0 ? -1 : 0;
	rc |= scrub_add(s, c->server_secret_previous) < 0 ? -1 : 0;
	rc |= scrub_add(s, c->admin_key) < 0 ? -1 : 0;
	return rc < 0 ? cfg_lerr(d, "out of memory") : 0;
}
