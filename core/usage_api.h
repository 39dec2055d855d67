/*
 * usage_api.h: GET /v1/usage?from=&to=&group_by=model|provider|day, the
 * totals of the costs of a customer's jobs (or, for the admin, of every
 * customer's, per customer).
 */
#ifndef GENRELAY_USAGE_API_H
#define GENRELAY_USAGE_API_H

#include <stdint.h>

struct request;
struct store;

/* Answers the request: customer's totals (NULL: every customer's).
 * 400 INVALID_REQUEST on a bad from, to or group_by; 503 when the store fails. */
void usage_api_respond(struct request *r, struct store *store, const char *customer);

/* "YYYY-MM-DD" or "YYYY-MM-DDTHH:MM:SS[.fff]Z" (UTC) as wall ms; -1 when not one. */
int64_t usage_parse_time(const char *s);

#endif
