/*
 * customers.c: stored customers and the per-worker cache (see customers.h).
 */
#include "customers.h"

#include "config.h"
#include "sign.h"
#include "store.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NEG_SLOTS 512

struct entry {
	struct config_customer c;  /* the view handed out; strings owned */
	char key_hex[65];
	int64_t expires;           /* monotonic ms: re-read from the store after */
	struct entry *next;
};

struct neg {
	char key_hex[65];
	int64_t expires;
};

struct customers {
	struct entry *live;        /* current rows, one per name */
	struct entry *retired;     /* replaced rows, kept until customers_free */
	struct neg neg[NEG_SLOTS]; /* unknown keys, direct-mapped by hash */
};

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct customers *customers_new(void)
{
	return calloc(1, sizeof(struct customers));
}

static void entry_free(struct entry *e)
{
	if (e->c.webhook_secret)
		memset(e->c.webhook_secret, 0, strlen(e->c.webhook_secret));
	free(e->c.name);
	free(e->c.webhook_secret);
	free(e->c.hook);
	free(e->c.webhook_url);
	free(e);
}

void customers_free(struct customers *cs)
{
	if (!cs)
		return;
	for (struct entry **l = (struct entry *[]){ cs->live, cs->retired }, **end = l + 2; l < end; l++) {
		for (struct entry *e = *l, *n; e; e = n) {
			n = e->next;
			entry_free(e);
		}
	}
	free(cs);
}

void customers_key_hash(const char *key, char hex[65])
{
	unsigned char h[SIGN_SHA256_LEN];
	sign_sha256(key, strlen(key), h);
	sign_hex_encode(h, sizeof h, hex, 65);
}

int customers_new_key(char out[CUSTOMERS_KEY_LEN + 1])
{
	unsigned char raw[32];
	if (sign_random(raw, sizeof raw) < 0)
		return -1;
	memcpy(out, "gr_", 3);
	return sign_hex_encode(raw, sizeof raw, out + 3, CUSTOMERS_KEY_LEN + 1 - 3) < 0 ? -1 : 0;
}

int customers_name_ok(const char *name)
{
	size_t n = 0;
	for (; name[n]; n++) {
		char ch = name[n];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		      ch == '_' || ch == '-' || ch == '.'))
			return 0;
	}
	return n >= 1 && n <= 64;
}

static char *dup_or_null(const char *v)
{
	return v && v[0] ? strdup(v) : NULL;
}

static int same_str(const char *a, const char *b)
{
	return strcmp(a ? a : "", b ? b : "") == 0;
}

static int same_row(const struct entry *e, const struct store_customer *r)
{
	return strcmp(e->key_hex, r->key_sha256) == 0 && same_str(e->c.name, r->name) &&
	       same_str(e->c.webhook_secret, r->webhook_secret) && same_str(e->c.hook, r->hook) &&
	       same_str(e->c.webhook_url, r->webhook_url);
}

/* Moves the live entry e (found at *link) to the retired list. */
static void retire(struct customers *cs, struct entry **link)
{
	struct entry *e = *link;
	*link = e->next;
	e->next = cs->retired;
	cs->retired = e;
}

static struct entry **find_live(struct customers *cs, const char *key_hex, const char *name)
{
	struct entry **l = &cs->live;
	for (; *l; l = &(*l)->next)
		if ((key_hex && strcmp((*l)->key_hex, key_hex) == 0) ||
		    (name && strcmp((*l)->c.name, name) == 0))
			return l;
	return NULL;
}

/* Makes row r the live entry of its name (reusing an identical one). */
static const struct config_customer *install(struct customers *cs, const struct store_customer *r,
					     int64_t now)
{
	struct entry **l = find_live(cs, NULL, r->name);
	if (l && same_row(*l, r)) {
		(*l)->expires = now + CUSTOMERS_TTL_MS;
		return &(*l)->c;
	}
	if (l)
		retire(cs, l);
	/* Another live entry with this key hash (a name reused) is stale too. */
	while ((l = find_live(cs, r->key_sha256, NULL)))
		retire(cs, l);
	struct entry *e = calloc(1, sizeof *e);
	if (!e)
		return NULL;
	e->c.name = strdup(r->name);
	e->c.webhook_secret = dup_or_null(r->webhook_secret);
	e->c.hook = dup_or_null(r->hook);
	e->c.webhook_url = dup_or_null(r->webhook_url);
	if (!e->c.name || (r->webhook_secret[0] && !e->c.webhook_secret) ||
	    (r->hook[0] && !e->c.hook) || (r->webhook_url[0] && !e->c.webhook_url)) {
		entry_free(e);
		return NULL;
	}
	sign_hex_decode(r->key_sha256, 64, e->c.api_key_sha256, sizeof e->c.api_key_sha256);
	memcpy(e->key_hex, r->key_sha256, sizeof e->key_hex);
	e->expires = now + CUSTOMERS_TTL_MS;
	e->next = cs->live;
	cs->live = e;
	return &e->c;
}

const struct config_customer *customers_by_key(struct customers *cs, const struct config *cfg,
					       struct store *s, const char *key)
{
	const struct config_customer *c = config_customer_by_key(cfg, key);
	if (c || !cs || !s)
		return c;
	char hex[65];
	customers_key_hash(key, hex);
	int64_t now = mono_ms();
	struct entry **l = find_live(cs, hex, NULL);
	if (l && (*l)->expires > now)
		return &(*l)->c;
	unsigned char h0 = 0, h1 = 0;
	sign_hex_decode(hex, 2, &h0, 1);
	sign_hex_decode(hex + 2, 2, &h1, 1);
	struct neg *ng = &cs->neg[((unsigned)h0 << 8 | h1) % NEG_SLOTS];
	if (!l && ng->expires > now && strcmp(ng->key_hex, hex) == 0)
		return NULL;
	struct store_customer row;
	int rc = store_customer_get(s, hex, NULL, &row);
	if (rc < 0)
		return l ? &(*l)->c : NULL; /* store trouble: what was known stays */
	if (rc == 1 || config_customer_by_name(cfg, row.name)) {
		/* Unknown (or shadowed by a config customer of that name). */
		if (l)
			retire(cs, l);
		memcpy(ng->key_hex, hex, sizeof ng->key_hex);
		ng->expires = now + CUSTOMERS_NEG_TTL_MS;
		return NULL;
	}
	return install(cs, &row, now);
}

const struct config_customer *customers_by_name(struct customers *cs, const struct config *cfg,
						struct store *s, const char *name)
{
	const struct config_customer *c = config_customer_by_name(cfg, name);
	if (c || !cs || !s || !name)
		return c;
	int64_t now = mono_ms();
	struct entry **l = find_live(cs, NULL, name);
	if (l && (*l)->expires > now)
		return &(*l)->c;
	struct store_customer row;
	int rc = store_customer_get(s, NULL, name, &row);
	if (rc < 0)
		return l ? &(*l)->c : NULL;
	if (rc == 1) {
		if (l)
			retire(cs, l);
		return NULL;
	}
	return install(cs, &row, now);
}
