/*
 * delivery.h: webhook deliveries (Standard Webhooks).
 *
 * A job that ends with a webhook_url gets a delivery row and a work row
 * (jobflow.c). Running it: the delivery and its job are loaded, the body is
 * made by the customer's hook (or the front's webhook, or the job object
 * as is), scrubbed of every configured secret, signed with the customer's
 * webhook secret (never sent unsigned) and POSTed through the URL guard.
 * Every attempt is recorded with what it sent; a failure is retried on
 * webhooks.retry with jitter, honouring Retry-After, until the delivery is
 * dead (it can be sent again with delivery_redeliver). The delivery id is the
 * webhook-id of every attempt, so receivers can deduplicate.
 *
 * Layer (engine_int.h): calls engine_work.c only; called by engine.c.
 */
#ifndef GENRELAY_DELIVERY_H
#define GENRELAY_DELIVERY_H

struct delivery;
struct work;
struct worker;

/* Runs the delivery row wk, which this worker holds the lease of. */
void delivery_run(struct worker *w, const struct work *wk);

/*
 * Sends delivery d again now (also a dead one): pending, due now, a work
 * row leased to this worker, committed, then queued to start after the
 * store's commit (engine_after_add: at the end of this loop iteration).
 * d stays the caller's.
 * Returns 0, or -1 when the store failed (nothing changed).
 */
int delivery_redeliver(struct worker *w, struct delivery *d);

#endif
