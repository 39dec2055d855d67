/*
 * loop.h: one epoll event loop per worker.
 *
 * A loop watches file descriptors (struct loop_io) and runs timers (struct
 * loop_timer). Both structs are owned by the caller and must stay valid while
 * registered. Callbacks run on the loop's thread; a callback may add, change or
 * remove any watcher or timer, including its own. Nothing here allocates per
 * event.
 */
#ifndef GENRELAY_LOOP_H
#define GENRELAY_LOOP_H

#include <stddef.h>
#include <stdint.h>

struct loop;
struct loop_io;
struct loop_timer;

typedef void (*loop_io_cb)(struct loop_io *io, uint32_t events);
typedef void (*loop_timer_cb)(struct loop_timer *t);
typedef void (*loop_idle_cb)(void *arg);

struct loop_io {
	int fd;
	uint32_t events;  /* EPOLLIN | EPOLLOUT ... as registered */
	loop_io_cb cb;
	void *arg;
};

struct loop_timer {
	int64_t at_ms;   /* monotonic deadline; see loop_now_ms() */
	loop_timer_cb cb;
	void *arg;
	size_t heap_idx; /* private: place in the heap or the pass, 0 when idle */
};

/* Creates a loop; returns NULL on failure. Caller frees with loop_free. */
struct loop *loop_new(void);
void loop_free(struct loop *l);

/* Monotonic milliseconds (CLOCK_MONOTONIC). */
int64_t loop_now_ms(void);
/* Wall clock in milliseconds since the epoch. */
int64_t loop_wall_ms(void);

/* Registers, changes or removes an fd watcher. Return 0 or -errno. */
int loop_io_add(struct loop *l, struct loop_io *io, int fd, uint32_t events,
		loop_io_cb cb, void *arg);
int loop_io_mod(struct loop *l, struct loop_io *io, uint32_t events);
int loop_io_del(struct loop *l, struct loop_io *io);

/* Arms t to fire once at monotonic time at_ms (re-arming moves it). Timers
 * due together fire in deadline order; one armed from a timer callback for a
 * time already due fires in the next pass, after the loop polls again. */
void loop_timer_init(struct loop_timer *t, loop_timer_cb cb, void *arg);
void loop_timer_set(struct loop *l, struct loop_timer *t, int64_t at_ms);
void loop_timer_stop(struct loop *l, struct loop_timer *t);
int loop_timer_active(const struct loop_timer *t);

/*
 * Sets the function run after every batch of events, before the loop sleeps
 * again (group commit and MHD resumption hang off this). One per loop.
 */
void loop_set_idle(struct loop *l, loop_idle_cb cb, void *arg);

/*
 * Frees p (with free()) after the current batch of events has been handled, so
 * a watcher removed in a callback can still receive an already-fetched event
 * safely. Call loop_io_del first and set io->cb to NULL or keep it valid.
 */
void loop_defer_free(struct loop *l, void *p);

/* Runs until loop_stop is called (from a callback or another thread). Each
 * loop_stop ends one loop_run (one asked before it ends it at once), and the
 * loop may be run again after. */
int loop_run(struct loop *l);
/* Thread-safe: wakes the loop and makes loop_run return. */
void loop_stop(struct loop *l);
/* Thread-safe: wakes the loop so it runs its idle callback. */
void loop_wake(struct loop *l);

#endif
