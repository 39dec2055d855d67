/*
 * cli_customers.c: the customers commands (see cli_customers.h).
 */
#include "cli_customers.h"

#include "config.h"
#include "customers.h"
#include "sign.h"
#include "store.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void usage(FILE *f)
{
	fprintf(f,
		"usage: genrelay customers add NAME [--webhook-secret whsec_...|-] [--hook NAME] [--webhook-url URL]\n"
		"       genrelay customers list [--json]\n"
		"       genrelay customers rotate-key NAME\n"
		"       genrelay customers remove NAME\n"
		"options of every command: --config FILE (its store; its customers are checked\n"
		"  against) or --store SPEC (sqlite:PATH or postgresql://...)\n"
		"add and rotate-key print the new API key on stdout, once: the store keeps only\n"
		"its SHA-256. --webhook-secret - reads the secret from stdin (not in ps).\n");
}

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads one line of stdin into out (without the newline). 0 or -1. */
static int read_line(char *out, size_t outlen)
{
	if (!fgets(out, (int)outlen, stdin))
		return -1;
	out[strcspn(out, "\r\n")] = '\0';
	return 0;
}

static int unique_key(struct store *s, char key[CUSTOMERS_KEY_LEN + 1], char hex[65])
{
	for (int i = 0; i < 8; i++) {
		struct store_customer other;
		if (customers_new_key(key) < 0)
			return -1;
		customers_key_hash(key, hex);
		int rc = store_customer_get(s, hex, NULL, &other);
		if (rc == 1)
			return 0;
		if (rc < 0)
			return -1;
	}
	return -1;
}

static int cmd_add(struct store *s, const struct config *cfg, const char *name, const char *secret,
		   const char *hook, const char *url)
{
	struct store_customer c;
	char err[256], line[600];
	memset(&c, 0, sizeof c);
	if (config_customer_by_name(cfg, name)) {
		fprintf(stderr, "genrelay: customer '%s' is in the configuration already\n", name);
		return 1;
	}
	if (secret && strcmp(secret, "-") == 0) {
		if (read_line(line, sizeof line) < 0) {
			fprintf(stderr, "genrelay: --webhook-secret -: nothing on stdin\n");
			return 2;
		}
		secret = line;
	}
	if (secret && (strlen(secret) >= sizeof c.webhook_secret ||
		       sign_webhook_secret_check(secret, err, sizeof err) < 0)) {
		fprintf(stderr, "genrelay: --webhook-secret: %s\n",
			strlen(secret) >= sizeof c.webhook_secret ? "too long" : err);
		return 2;
	}
	if (hook && !customers_name_ok(hook)) {
		fprintf(stderr, "genrelay: --hook: not a script name ([A-Za-z0-9_.-], 1 to 64)\n");
		return 2;
	}
	if (url && ((strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) ||
		    strlen(url) >= sizeof c.webhook_url)) {
		fprintf(stderr, "genrelay: --webhook-url: not an http:// or https:// URL (under 2048 bytes)\n");
		return 2;
	}
	if (url && !secret) {
		fprintf(stderr, "genrelay: --webhook-url needs --webhook-secret (deliveries are signed)\n");
		return 2;
	}
	char key[CUSTOMERS_KEY_LEN + 1];
	if (unique_key(s, key, c.key_sha256) < 0) {
		fprintf(stderr, "genrelay: store: %s\n", store_errmsg(s));
		return 1;
	}
	snprintf(c.name, sizeof c.name, "%s", name);
	if (secret) /* shorter than the field: checked above */
		memcpy(c.webhook_secret, secret, strlen(secret) + 1);
	snprintf(c.hook, sizeof c.hook, "%s", hook ? hook : "");
	snprintf(c.webhook_url, sizeof c.webhook_url, "%s", url ? url : "");
	c.created_at = wall_ms();
	int rc = store_customer_add(s, &c);
	memset(c.webhook_secret, 0, sizeof c.webhook_secret);
	memset(line, 0, sizeof line);
	if (rc < 0) {
		fprintf(stderr, "genrelay: store: %s\n", store_errmsg(s));
		return 1;
	}
	if (rc == 1) {
		fprintf(stderr, "genrelay: customer '%s' exists already (rotate-key gives it a new key)\n", name);
		return 1;
	}
	printf("%s\n", key);
	fprintf(stderr, "customer %s added; its API key is above, shown once (the store keeps only its hash)\n", name);
	return 0;
}

static int cmd_rotate(struct store *s, const char *name)
{
	char key[CUSTOMERS_KEY_LEN + 1], hex[65];
	if (unique_key(s, key, hex) < 0) {
		fprintf(stderr, "genrelay: store: %s\n", store_errmsg(s));
		return 1;
	}
	int rc = store_customer_set_key(s, name, hex);
	if (rc < 0) {
		fprintf(stderr, "genrelay: store: %s\n", store_errmsg(s));
		return 1;
	}
	if (rc == 1) {
		fprintf(stderr, "genrelay: no stored customer '%s'\n", name);
		return 1;
	}
	printf("%s\n", key);
	fprintf(stderr, "customer %s: new API key above, shown once; the old one stops working "
		"within %d s\n", name, CUSTOMERS_TTL_MS / 1000);
	return 0;
}

static int cmd_list(struct store *s, int as_json)
{
	json_t *l = store_customer_list(s);
	if (!l) {
		fprintf(stderr, "genrelay: store: %s\n", store_errmsg(s));
		return 1;
	}
	if (as_json) {
		char *t = json_dumps(l, JSON_INDENT(2));
		printf("%s\n", t ? t : "[]");
		free(t);
	} else {
		printf("%-24s %-16s %-7s %-24s %s\n", "NAME", "HOOK", "SECRET", "CREATED", "WEBHOOK_URL");
		size_t i;
		json_t *o;
		json_array_foreach(l, i, o) {
			const char *hook = json_string_value(json_object_get(o, "hook"));
			const char *url = json_string_value(json_object_get(o, "webhook_url"));
			const char *at = json_string_value(json_object_get(o, "created_at"));
			printf("%-24s %-16s %-7s %-24s %s\n", json_string_value(json_object_get(o, "name")),
			       hook ? hook : "default",
			       json_is_true(json_object_get(o, "has_webhook_secret")) ? "yes" : "no",
			       at ? at : "-", url ? url : "-");
		}
	}
	json_decref(l);
	return 0;
}

int cli_customers(int argc, char **argv)
{
	const char *config = NULL, *spec = NULL, *secret = NULL, *hook = NULL, *url = NULL;
	const char *cmd = NULL, *name = NULL;
	int as_json = 0;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		int has = i + 1 < argc;
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			return 0;
		} else if (strcmp(a, "--config") == 0 && has) {
			config = argv[++i];
		} else if (strcmp(a, "--store") == 0 && has) {
			spec = argv[++i];
		} else if (strcmp(a, "--webhook-secret") == 0 && has) {
			secret = argv[++i];
		} else if (strcmp(a, "--hook") == 0 && has) {
			hook = argv[++i];
		} else if (strcmp(a, "--webhook-url") == 0 && has) {
			url = argv[++i];
		} else if (strcmp(a, "--json") == 0) {
			as_json = 1;
		} else if (a[0] == '-') {
			usage(stderr);
			return 2;
		} else if (!cmd) {
			cmd = a;
		} else if (!name) {
			name = a;
		} else {
			usage(stderr);
			return 2;
		}
	}
	int needs_name = cmd && strcmp(cmd, "list") != 0;
	if (!cmd || (strcmp(cmd, "add") != 0 && strcmp(cmd, "list") != 0 &&
		     strcmp(cmd, "rotate-key") != 0 && strcmp(cmd, "remove") != 0) ||
	    (needs_name && !name) || (!needs_name && name) ||
	    ((secret || hook || url) && strcmp(cmd, "add") != 0)) {
		usage(stderr);
		return 2;
	}
	if (name && !customers_name_ok(name)) {
		fprintf(stderr, "genrelay: customer name: [A-Za-z0-9_.-], 1 to 64 characters\n");
		return 2;
	}
	char err[1024];
	struct config *cfg = config_load(config, err, sizeof err);
	if (!cfg) {
		fprintf(stderr, "genrelay: %s\n", err);
		return 2;
	}
	if (!spec)
		spec = cfg->store;
	if (store_check_permissions(spec, cfg->store_insecure_permissions, err, sizeof err) < 0) {
		fprintf(stderr, "genrelay: %s\n", err);
		config_free(cfg);
		return 1;
	}
	struct store *s = store_open(spec, strcmp(cfg->durability, "fsync") == 0, err, sizeof err);
	if (!s) {
		fprintf(stderr, "genrelay: %s\n", err);
		config_free(cfg);
		return 1;
	}
	int rc;
	if (strcmp(cmd, "add") == 0)
		rc = cmd_add(s, cfg, name, secret, hook, url);
	else if (strcmp(cmd, "rotate-key") == 0)
		rc = cmd_rotate(s, name);
	else if (strcmp(cmd, "remove") == 0) {
		rc = store_customer_remove(s, name);
		if (rc < 0)
			fprintf(stderr, "genrelay: store: %s\n", store_errmsg(s));
		else if (rc == 1)
			fprintf(stderr, "genrelay: no stored customer '%s'\n", name);
		else
			fprintf(stderr, "customer %s removed; its key stops working within %d s\n", name,
				CUSTOMERS_TTL_MS / 1000);
		rc = rc == 0 ? 0 : 1;
	} else
		rc = cmd_list(s, as_json);
	store_close(s);
	config_free(cfg);
	return rc;
}
