/*
 * loop.c: epoll event loop with a binary min-heap of timers.
 */
#include "loop.h"
#include "log.h"
#include "metrics.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include <stdatomic.h>

#define LOOP_MAX_EVENTS 256

struct loop {
	int epfd;
	int wakefd;
	struct loop_io wake_io;
	atomic_int stop;
	struct loop_timer **heap; /* 1-based */
	size_t nheap, capheap;
	/* The timers of the pass run_timers is running, in due order; a slot is
	 * NULL once its timer was stopped or re-armed by an earlier callback. */
	struct loop_timer **ready;
	size_t nready, capready;
	loop_idle_cb idle;
	void *idle_arg;
	void **deferred;
	size_t ndeferred, capdeferred;
};

int64_t loop_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t loop_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void wake_cb(struct loop_io *io, uint32_t events)
{
	uint64_t v;
	(void)events;
	while (read(io->fd, &v, sizeof v) > 0)
		;
}

struct loop *loop_new(void)
{
	struct loop *l = calloc(1, sizeof *l);
	if (!l)
		return NULL;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	l->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	l->capheap = 64;
	l->heap = calloc(l->capheap + 1, sizeof *l->heap);
	if (l->epfd < 0 || l->wakefd < 0 || !l->heap ||
	    loop_io_add(l, &l->wake_io, l->wakefd, EPOLLIN, wake_cb, l) < 0) {
		loop_free(l);
		return NULL;
	}
	return l;
}

void loop_free(struct loop *l)
{
	if (!l)
		return;
	if (l->epfd >= 0)
		close(l->epfd);
	if (l->wakefd >= 0)
		close(l->wakefd);
	for (size_t i = 0; i < l->ndeferred; i++)
		free(l->deferred[i]);
	free(l->deferred);
	free(l->ready);
	free(l->heap);
	free(l);
}

int loop_io_add(struct loop *l, struct loop_io *io, int fd, uint32_t events,
		loop_io_cb cb, void *arg)
{
	struct epoll_event ev = { .events = events, .data.ptr = io };
	io->fd = fd;
	io->events = events;
	io->cb = cb;
	io->arg = arg;
	return epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

int loop_io_mod(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = io };
	io->events = events;
	return epoll_ctl(l->epfd, EPOLL_CTL_MOD, io->fd, &ev) < 0 ? -errno : 0;
}

int loop_io_del(struct loop *l, struct loop_io *io)
{
	io->cb = NULL;
	return epoll_ctl(l->epfd, EPOLL_CTL_DEL, io->fd, NULL) < 0 ? -errno : 0;
}

/* ---- timers: 1-based binary heap ordered by at_ms ---- */

static void heap_swap(struct loop *l, size_t a, size_t b)
{
	struct loop_timer *t = l->heap[a];
	l->heap[a] = l->heap[b];
	l->heap[b] = t;
	l->heap[a]->heap_idx = a;
	l->heap[b]->heap_idx = b;
}

static void heap_up(struct loop *l, size_t i)
{
	while (i > 1 && l->heap[i / 2]->at_ms > l->heap[i]->at_ms) {
		heap_swap(l, i, i / 2);
		i /= 2;
	}
}

static void heap_down(struct loop *l, size_t i)
{
	for (;;) {
		size_t m = i, c = 2 * i;
		if (c <= l->nheap && l->heap[c]->at_ms < l->heap[m]->at_ms)
			m = c;
		if (c + 1 <= l->nheap && l->heap[c + 1]->at_ms < l->heap[m]->at_ms)
			m = c + 1;
		if (m == i)
			return;
		heap_swap(l, i, m);
		i = m;
	}
}

void loop_timer_init(struct loop_timer *t, loop_timer_cb cb, void *arg)
{
	memset(t, 0, sizeof *t);
	t->cb = cb;
	t->arg = arg;
}

int loop_timer_active(const struct loop_timer *t)
{
	return t->heap_idx != 0;
}

/*
 * heap_idx of a timer taken out of the heap for the pass being run: this bit
 * and its slot in l->ready. It stays non-zero, so the timer is still active
 * until its callback runs.
 */
#define TIMER_READY ((size_t)1 << (sizeof(size_t) * 8 - 1))

void loop_timer_stop(struct loop *l, struct loop_timer *t)
{
	size_t i = t->heap_idx;
	if (!i)
		return;
	if (i & TIMER_READY) {
		l->ready[i & ~TIMER_READY] = NULL;
		t->heap_idx = 0;
		return;
	}
	heap_swap(l, i, l->nheap);
	l->nheap--;
	t->heap_idx = 0;
	if (i <= l->nheap) {
		heap_up(l, i);
		heap_down(l, i);
	}
}

void loop_timer_set(struct loop *l, struct loop_timer *t, int64_t at_ms)
{
	if (t->heap_idx & TIMER_READY)
		loop_timer_stop(l, t); /* back into the heap, for a later pass */
	if (t->heap_idx) {
		t->at_ms = at_ms;
		heap_up(l, t->heap_idx);
		heap_down(l, t->heap_idx);
		return;
	}
	if (l->nheap == l->capheap) {
		size_t ncap = l->capheap * 2;
		struct loop_timer **nh = realloc(l->heap, (ncap + 1) * sizeof *nh);
		if (!nh)
			abort(); /* a timer we cannot arm would silently stall work */
		l->heap = nh;
		l->capheap = ncap;
	}
	t->at_ms = at_ms;
	l->heap[++l->nheap] = t;
	t->heap_idx = l->nheap;
	heap_up(l, l->nheap);
}

void loop_set_idle(struct loop *l, loop_idle_cb cb, void *arg)
{
	l->idle = cb;
	l->idle_arg = arg;
}

/*
 * Runs the timers due now, in due order. They leave the heap first, so a
 * timer that a callback re-arms for a time already past (or now) runs in a
 * later pass, after the loop has polled its descriptors again: it cannot
 * hold the loop, nor go ahead of the other timers of this pass.
 */
static void run_timers(struct loop *l)
{
	int64_t now = loop_now_ms();
	l->nready = 0;
	while (l->nheap && l->heap[1]->at_ms <= now) {
		struct loop_timer *t = l->heap[1];
		loop_timer_stop(l, t);
		if (l->nready == l->capready) {
			size_t ncap = l->capready ? l->capready * 2 : 64;
			struct loop_timer **nr = realloc(l->ready, ncap * sizeof *nr);
			if (!nr)
				abort(); /* as for the heap: a lost timer stalls work */
			l->ready = nr;
			l->capready = ncap;
		}
		t->heap_idx = TIMER_READY | l->nready;
		l->ready[l->nready++] = t;
	}
	for (size_t i = 0; i < l->nready; i++) {
		struct loop_timer *t = l->ready[i];
		if (!t)
			continue; /* stopped or re-armed by an earlier callback */
		l->ready[i] = NULL;
		t->heap_idx = 0;
		t->cb(t);
		log_ctx_clear();
	}
	l->nready = 0;
}

void loop_defer_free(struct loop *l, void *p)
{
	if (l->ndeferred == l->capdeferred) {
		size_t ncap = l->capdeferred ? l->capdeferred * 2 : 64;
		void **nd = realloc(l->deferred, ncap * sizeof *nd);
		if (!nd)
			abort();
		l->deferred = nd;
		l->capdeferred = ncap;
	}
	l->deferred[l->ndeferred++] = p;
}

static void run_deferred(struct loop *l)
{
	for (size_t i = 0; i < l->ndeferred; i++)
		free(l->deferred[i]);
	l->ndeferred = 0;
}

/* Each loop_stop ends one loop_run, which consumes it as it returns, so the
 * loop may be run again; a stop asked before loop_run makes it return at
 * once. */
int loop_run(struct loop *l)
{
	struct epoll_event evs[LOOP_MAX_EVENTS];
	while (!atomic_exchange(&l->stop, 0)) {
		int timeout = -1;
		if (l->nheap) {
			int64_t d = l->heap[1]->at_ms - loop_now_ms();
			timeout = d < 0 ? 0 : d > 60000 ? 60000 : (int)d;
		}
		log_flush(); /* the lines this thread held in the last iteration */
		int n = epoll_wait(l->epfd, evs, LOOP_MAX_EVENTS, timeout);
		if (n < 0 && errno != EINTR)
			return -errno;
		struct timespec woke;
		clock_gettime(CLOCK_MONOTONIC, &woke);
		for (int i = 0; i < n; i++) {
			struct loop_io *io = evs[i].data.ptr;
			if (io->cb)
				io->cb(io, evs[i].events);
			log_ctx_clear(); /* no event's log context leaks into the next */
		}
		run_deferred(l);
		run_timers(l);
		if (l->idle)
			l->idle(l->idle_arg);
		log_ctx_clear();
		run_deferred(l);
		struct timespec done;
		clock_gettime(CLOCK_MONOTONIC, &done);
		metrics_loop_iteration((long)((done.tv_sec - woke.tv_sec) * 1000000L +
					      (done.tv_nsec - woke.tv_nsec) / 1000));
	}
	return 0;
}

void loop_stop(struct loop *l)
{
	atomic_store(&l->stop, 1);
	loop_wake(l);
}

void loop_wake(struct loop *l)
{
	uint64_t one = 1;
	ssize_t r = write(l->wakefd, &one, sizeof one);
	(void)r;
}
