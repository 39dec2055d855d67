/*
 * retention.h: a thread that purges finished jobs older than
 * store.retention_days (store_purge), in small batches that each hold their
 * locks for one short transaction.
 */
#ifndef GENRELAY_RETENTION_H
#define GENRELAY_RETENTION_H

#include <stddef.h>

struct config;
struct retention;

/* Starts the thread on its own store connection when retention_days > 0.
 * NULL when retention is off (err empty) or on failure (err says why). */
struct retention *retention_start(const struct config *cfg, char *err, size_t errlen);
/* Stops the thread and frees it (NULL: nothing). */
void retention_stop(struct retention *r);

#endif
