/*
 * webhook_verify.h: the receiving side of Standard Webhooks, as a receiver
 * of genrelay's deliveries checks them (genrelay listen, the C example
 * receiver in examples/receivers/c).
 */
#ifndef GENRELAY_WEBHOOK_VERIFY_H
#define GENRELAY_WEBHOOK_VERIFY_H

#include <stddef.h>
#include <stdint.h>

/* How far a webhook-timestamp may be from now, in seconds. */
#define WEBHOOK_VERIFY_TOLERANCE_S 300

/*
 * Checks one delivery: id, timestamp and signature are the webhook-id,
 * webhook-timestamp and webhook-signature header values (any may be NULL:
 * refused), body the raw bytes as received, secret as for sign_webhook_key
 * ("whsec_<base64>" or raw bytes). The signature header may hold several
 * space-separated "v1,<base64>" entries; one matching (constant-time) is
 * enough. A timestamp further than tolerance_s from now is refused.
 * Returns 1 valid, 0 refused with the reason in why (never the secret).
 */
int webhook_verify(const char *secret, const char *id, const char *timestamp,
		   const char *signature, const void *body, size_t bodylen,
		   int64_t now, int64_t tolerance_s, char *why, size_t whylen);

#endif
