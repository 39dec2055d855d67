/*
 * checkpointer.h: a thread that checkpoints the store's WAL, so the fsyncs of
 * a checkpoint never run on a worker's event loop.
 */
#ifndef GENRELAY_CHECKPOINTER_H
#define GENRELAY_CHECKPOINTER_H

#include <stddef.h>

struct config;
struct checkpointer;

/* Starts the thread on its own store connection. NULL with err on failure. */
struct checkpointer *checkpointer_start(const struct config *cfg, char *err, size_t errlen);
/* Stops the thread (one last checkpoint first) and frees it. */
void checkpointer_stop(struct checkpointer *c);

#endif
