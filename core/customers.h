/*
 * customers.h: who an API key belongs to. Customers come from two places:
 * the configuration (customers = { ... }) and the store (added with
 * `genrelay customers add`, API key kept only as its SHA-256). Config
 * customers are looked up first and win on a name clash.
 *
 * Each worker has its own cache of stored customers (no locks): a hit is
 * trusted for CUSTOMERS_TTL_MS, an unknown key is remembered as unknown for
 * CUSTOMERS_NEG_TTL_MS, so a key added or rotated with the CLI takes effect
 * within about two seconds and unknown keys cannot hammer the store.
 *
 * Ownership: the struct config_customer returned for a stored customer is
 * owned by the cache and stays valid until customers_free (requests and
 * deliveries may hold it across loop iterations); a customer whose row
 * changed gets a new struct, the old one is kept (retired) until then, so
 * memory grows only with rotations and edits, never with lookups.
 */
#ifndef GENRELAY_CUSTOMERS_H
#define GENRELAY_CUSTOMERS_H

#include <stddef.h>

struct config;
struct config_customer;
struct store;
struct customers;

#define CUSTOMERS_TTL_MS 2000
#define CUSTOMERS_NEG_TTL_MS 1000
/* Generated API keys: "gr_" and 64 hex digits (32 random bytes). */
#define CUSTOMERS_KEY_LEN 67

struct customers *customers_new(void);
void customers_free(struct customers *cs);

/* The customer of API key `key`: the config's, else the store's (cached);
 * NULL when unknown. On a store error a customer cached before is still
 * used (a key seen valid stays valid through a store outage). */
const struct config_customer *customers_by_key(struct customers *cs, const struct config *cfg,
					       struct store *s, const char *key);
/* The customer named `name` (config first, then the store, cached), or NULL. */
const struct config_customer *customers_by_name(struct customers *cs, const struct config *cfg,
						struct store *s, const char *name);

/* hex (64 digits and NUL) of SHA-256(key). */
void customers_key_hash(const char *key, char hex[65]);
/* A new random API key (CUSTOMERS_KEY_LEN chars and NUL). 0 or -1. */
int customers_new_key(char out[CUSTOMERS_KEY_LEN + 1]);
/* 1 when name is a valid customer name (1..64 of [A-Za-z0-9_.-]), else 0. */
int customers_name_ok(const char *name);

#endif
