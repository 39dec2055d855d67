/*
 * checkpointer.c: see checkpointer.h. Every CHECKPOINT_MS it calls
 * store_checkpoint(): a PASSIVE checkpoint, which copies what it can without
 * waiting on anyone, and on SQLite, once the WAL is long, a short RESTART so
 * that the WAL is written from its start again instead of growing.
 */
#include "checkpointer.h"

#include "config.h"
#include "log.h"
#include "store.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHECKPOINT_MS 250

struct checkpointer {
	struct store *store;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stop;
};

static void *run(void *arg)
{
	struct checkpointer *c = arg;
	pthread_mutex_lock(&c->mu);
	while (!c->stop) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += CHECKPOINT_MS * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&c->cv, &c->mu, &ts);
		pthread_mutex_unlock(&c->mu);
		int frames = 0, copied = 0;
		if (store_checkpoint(c->store, &frames, &copied) < 0)
			log_debug("checkpoint: %s", store_errmsg(c->store));
		pthread_mutex_lock(&c->mu);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

struct checkpointer *checkpointer_start(const struct config *cfg, char *err, size_t errlen)
{
	struct checkpointer *c = calloc(1, sizeof *c);
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->store = store_open(cfg->store, strcmp(cfg->durability, "fsync") == 0, err, errlen);
	if (!c->store) {
		free(c);
		return NULL;
	}
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	if (pthread_create(&c->thread, NULL, run, c) != 0) {
		snprintf(err, errlen, "cannot start the checkpoint thread");
		store_close(c->store);
		free(c);
		return NULL;
	}
	return c;
}

void checkpointer_stop(struct checkpointer *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->mu);
	c->stop = 1;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
	pthread_join(c->thread, NULL);
	store_checkpoint(c->store, NULL, NULL);
	store_close(c->store);
	pthread_cond_destroy(&c->cv);
	pthread_mutex_destroy(&c->mu);
	free(c);
}
