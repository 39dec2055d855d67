/*
 * config_reload.c: config_reload (see config.h): the file loaded again, with
 * the keys that only a restart changes kept from the running config and
 * named.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void note_changed(char *out, size_t outlen, const char *key)
{
	size_t n = strlen(out);
	snprintf(out + n, outlen - n, "%s%s", n ? ", " : "", key);
}

static int same_opt(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* Puts cur's value of a restart-only string back into n: 0 or -1 (memory). */
static int keep_str(char **dst, const char *cur, char *changed, size_t len, const char *key)
{
	if (same_opt(*dst, cur))
		return 0;
	note_changed(changed, len, key);
	free(*dst);
	*dst = cur ? strdup(cur) : NULL;
	return cur && !*dst ? -1 : 0;
}

struct config *config_reload(const struct config *cur, char *changed, size_t changedlen,
			     char *err, size_t errlen)
{
	changed[0] = '\0';
	struct config *n = config_load(cur->path, err, errlen);
	if (!n)
		return NULL;
	int rc = 0;
	rc |= keep_str(&n->listen, cur->listen, changed, changedlen, "listen");
	rc |= keep_str(&n->metrics_listen, cur->metrics_listen, changed, changedlen, "metrics_listen");
	rc |= keep_str(&n->store, cur->store, changed, changedlen, "store");
	rc |= keep_str(&n->scripts, cur->scripts, changed, changedlen, "scripts");
	rc |= keep_str(&n->durability, cur->durability, changed, changedlen, "durability");
	rc |= keep_str(&n->server_secret, cur->server_secret, changed, changedlen, "server_secret");
	rc |= keep_str(&n->server_secret_previous, cur->server_secret_previous, changed, changedlen,
		       "server_secret_previous");
#define KEEP_NUM(field, key) \
	do { \
		if (n->field != cur->field) { \
			note_changed(changed, changedlen, key); \
			n->field = cur->field; \
		} \
	} while (0)
	KEEP_NUM(workers, "workers");
	KEEP_NUM(retention_days, "store.retention_days");
	KEEP_NUM(store_insecure_permissions, "store_insecure_permissions");
	KEEP_NUM(max_connections, "limits.max_connections");
	KEEP_NUM(connection_timeout_s, "limits.connection_timeout_s");
	KEEP_NUM(max_inflight, "limits.max_inflight");
	KEEP_NUM(per_host, "limits.per_host");
	KEEP_NUM(buffered_bytes, "limits.buffered_bytes");
#undef KEEP_NUM
	n->role = cur->role;
	if (rc < 0) {
		snprintf(err, errlen, "out of memory");
		config_free(n);
		return NULL;
	}
	return n;
}
