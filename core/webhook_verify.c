/*
 * webhook_verify.c: verification of a Standard Webhooks delivery with the
 * same code genrelay signs with (sign.c).
 */
#include "webhook_verify.h"

#include "sign.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int webhook_verify(const char *secret, const char *id, const char *timestamp,
		   const char *signature, const void *body, size_t bodylen,
		   int64_t now, int64_t tolerance_s, char *why, size_t whylen)
{
	char expected[128];
	if (!id || !*id || !timestamp || !*timestamp || !signature || !*signature) {
		snprintf(why, whylen, "missing webhook-id, webhook-timestamp or webhook-signature");
		return 0;
	}
	char *end;
	long long ts = strtoll(timestamp, &end, 10);
	if (*end || timestamp[0] == '-' || timestamp[0] == '+' || end - timestamp > 12) {
		snprintf(why, whylen, "webhook-timestamp is not a number of seconds");
		return 0;
	}
	if (ts < now - tolerance_s || ts > now + tolerance_s) {
		snprintf(why, whylen, "webhook-timestamp is %lld s from now (tolerance %lld s)",
			 ts - (long long)now, (long long)tolerance_s);
		return 0;
	}
	int n = sign_webhook(secret, id, (int64_t)ts, body, bodylen, expected, sizeof expected);
	if (n <= 0) {
		snprintf(why, whylen, "the secret cannot be used (not whsec_<base64>?)");
		return 0;
	}
	/* "v1,<b64> v1,<b64>": compare each entry's whole text in constant time. */
	const char *p = signature;
	while (*p) {
		while (*p == ' ')
			p++;
		const char *e = p;
		while (*e && *e != ' ')
			e++;
		if (e > p && sign_equal(p, (size_t)(e - p), expected, (size_t)n))
			return 1;
		p = e;
	}
	snprintf(why, whylen, "no v1 signature matches");
	return 0;
}
