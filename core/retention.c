/*
 * retention.c: see retention.h. Every pass purges batches of RETENTION_BATCH
 * jobs until one comes back short, then sleeps; a pass runs every quarter of
 * the retention period, at least every minute and at most every 200 ms.
 */
#include "retention.h"

#include "config.h"
#include "log.h"
#include "store.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RETENTION_BATCH 500

struct retention {
	struct store *store;
	double keep_ms;
	long interval_ms;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stop;
	long long purged; /* total, for the log */
};

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A pass that takes longer than this says how far it got, and when it ends. */
#define RETENTION_PROGRESS_MS 5000

static void pass(struct retention *r)
{
	int64_t start = wall_ms(), said = start;
	int64_t before = start - (int64_t)r->keep_ms;
	long long in_pass = 0;
	for (int round = 0; round < 1000; round++) {
		int n = 0;
		if (store_purge(r->store, before, RETENTION_BATCH, &n) < 0) {
			log_warn("retention: purge failed after %lld jobs in this pass: %s", in_pass,
				 store_errmsg(r->store));
			return;
		}
		r->purged += n;
		in_pass += n;
		if (n > 0)
			log_debug("retention: purged %d finished jobs (%lld in all)", n, r->purged);
		int64_t now = wall_ms();
		if (n < RETENTION_BATCH) {
			if (now - start >= RETENTION_PROGRESS_MS)
				log_info("retention: pass done: %lld finished jobs purged in %.1f s",
					 in_pass, (double)(now - start) / 1000.0);
			return;
		}
		if (now - said >= RETENTION_PROGRESS_MS) {
			log_info("retention: purging: %lld finished jobs so far in this pass (%.0f/s)",
				 in_pass, (double)in_pass * 1000.0 / (double)(now - start));
			said = now;
		}
		pthread_mutex_lock(&r->mu);
		int stop = r->stop;
		pthread_mutex_unlock(&r->mu);
		if (stop)
			return;
	}
}

static void *run(void *arg)
{
	struct retention *r = arg;
	pthread_mutex_lock(&r->mu);
	while (!r->stop) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += r->interval_ms / 1000;
		ts.tv_nsec += (r->interval_ms % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&r->cv, &r->mu, &ts);
		if (r->stop)
			break;
		pthread_mutex_unlock(&r->mu);
		pass(r);
		pthread_mutex_lock(&r->mu);
	}
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

struct retention *retention_start(const struct config *cfg, char *err, size_t errlen)
{
	err[0] = '\0';
	if (cfg->retention_days <= 0)
		return NULL;
	struct retention *r = calloc(1, sizeof *r);
	if (!r) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	r->keep_ms = cfg->retention_days * 86400000.0;
	double iv = r->keep_ms / 4;
	r->interval_ms = iv > 60000 ? 60000 : iv < 200 ? 200 : (long)iv;
	r->store = store_open(cfg->store, strcmp(cfg->durability, "fsync") == 0, err, errlen);
	if (!r->store) {
		free(r);
		return NULL;
	}
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	if (pthread_create(&r->thread, NULL, run, r) != 0) {
		snprintf(err, errlen, "cannot start the retention thread");
		store_close(r->store);
		pthread_cond_destroy(&r->cv);
		pthread_mutex_destroy(&r->mu);
		free(r);
		return NULL;
	}
	return r;
}

void retention_stop(struct retention *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->mu);
	r->stop = 1;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
	pthread_join(r->thread, NULL);
	store_close(r->store);
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mu);
	free(r);
}
