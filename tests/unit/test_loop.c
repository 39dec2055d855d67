/*
 * test_loop.c: the event loop (core/loop.c): timers fire in due order and
 * never early; a timer re-armed or stopped from a callback behaves, and one
 * re-armed for a time already past cannot hold the loop; io watchers on a
 * pipe; the idle callback; loop_defer_free (ASan sees any use after free);
 * loop_wake and loop_stop from another thread; loop_stop from a callback,
 * and a loop run again after a stop.
 *
 * No verdict depends on how long anything took. A watchdog (alarm) turns a
 * loop that never returns into a failed test instead of a hung one.
 */
#include "check.h"
#include "loop.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static void stop_cb(struct loop_timer *t)
{
	loop_stop(t->arg);
}

/* ---- timers in due order -------------------------------------------------- */

struct order {
	struct loop *l;
	int fired[64];
	int n;
	int early; /* fired before its deadline */
};

struct tagged {
	struct loop_timer t;
	struct order *o;
	int tag;
};

static void tagged_cb(struct loop_timer *t)
{
	struct tagged *x = t->arg;
	if (loop_now_ms() < t->at_ms)
		x->o->early++;
	if (x->o->n < 64)
		x->o->fired[x->o->n++] = x->tag;
}

static void test_due_order(void)
{
	struct loop *l = loop_new();
	CHECK(l != NULL);
	if (!l)
		return;
	struct order o = { .l = l };
	static const int offs[] = { 50, 10, 30, 20, 40, -5 };
	struct tagged ts[6];
	int64_t now = loop_now_ms();
	for (int i = 0; i < 6; i++) {
		ts[i].o = &o;
		ts[i].tag = offs[i];
		loop_timer_init(&ts[i].t, tagged_cb, &ts[i]);
		CHECK_EQ_INT(loop_timer_active(&ts[i].t), 0);
		loop_timer_set(l, &ts[i].t, now + offs[i]);
		CHECK_EQ_INT(loop_timer_active(&ts[i].t), 1);
	}
	struct loop_timer end;
	loop_timer_init(&end, stop_cb, l);
	loop_timer_set(l, &end, now + 60);
	CHECK_EQ_INT(loop_run(l), 0);
	static const int want[] = { -5, 10, 20, 30, 40, 50 };
	CHECK_EQ_INT(o.n, 6);
	for (int i = 0; i < 6 && i < o.n; i++)
		CHECK_EQ_INT(o.fired[i], want[i]);
	CHECK_EQ_INT(o.early, 0);
	for (int i = 0; i < 6; i++)
		CHECK_EQ_INT(loop_timer_active(&ts[i].t), 0);
	loop_free(l);
}

/*
 * The heap under load: many timers (past the initial capacity) with
 * scattered deadlines, all already due, some moved and then a third stopped
 * before the run: the rest fire once each, in deadline order.
 */
enum { HEAP_N = 700 };
static struct loop_timer heap_ts[HEAP_N];
static int heap_fires[HEAP_N], heap_nfired, heap_unordered;
static int64_t heap_last;

static void heap_cb(struct loop_timer *t)
{
	int i = (int)(t - heap_ts);
	heap_fires[i]++;
	heap_nfired++;
	if (t->at_ms < heap_last)
		heap_unordered++;
	heap_last = t->at_ms;
}

static void test_heap_many(void)
{
	struct loop *l = loop_new();
	CHECK(l != NULL);
	if (!l)
		return;
	int64_t base = loop_now_ms() - 10000; /* every deadline is in the past */
	unsigned seed = 12345;
	for (int i = 0; i < HEAP_N; i++) {
		seed = seed * 1103515245u + 12345u;
		loop_timer_init(&heap_ts[i], heap_cb, NULL);
		loop_timer_set(l, &heap_ts[i], base + (int64_t)(seed >> 16) % 5000);
	}
	int want = 0;
	for (int i = 1; i < HEAP_N; i += 7) /* moved while armed */
		loop_timer_set(l, &heap_ts[i], base + 5000 + i);
	for (int i = 0; i < HEAP_N; i += 3)
		loop_timer_stop(l, &heap_ts[i]);
	loop_timer_stop(l, &heap_ts[0]); /* stopping an idle timer: nothing */
	for (int i = 0; i < HEAP_N; i++)
		want += i % 3 != 0;
	struct loop_timer end;
	loop_timer_init(&end, stop_cb, l);
	loop_timer_set(l, &end, loop_now_ms());
	heap_last = INT64_MIN;
	CHECK_EQ_INT(loop_run(l), 0);
	CHECK_EQ_INT(heap_nfired, want);
	CHECK_EQ_INT(heap_unordered, 0);
	int wrong = 0;
	for (int i = 0; i < HEAP_N; i++) {
		if (heap_fires[i] != (i % 3 != 0))
			wrong++;
		CHECK_EQ_INT(loop_timer_active(&heap_ts[i]), 0);
	}
	CHECK_EQ_INT(wrong, 0);
	loop_free(l);
}

/* ---- timers changed from callbacks ---------------------------------------- */

struct rearm {
	struct loop *l;
	struct loop_timer self, victim, moved, end;
	int self_fires, victim_fires, moved_fires;
	int64_t moved_to;
	int order[8], n;
};

static void rearm_self_cb(struct loop_timer *t)
{
	struct rearm *r = t->arg;
	r->self_fires++;
	if (r->n < 8)
		r->order[r->n++] = 1;
	if (r->self_fires == 1) {
		/* Both were due in this same pass: one stopped, one moved. */
		loop_timer_stop(r->l, &r->victim);
		r->moved_to = loop_now_ms() + 15;
		loop_timer_set(r->l, &r->moved, r->moved_to);
	}
	if (r->self_fires < 3)
		loop_timer_set(r->l, t, loop_now_ms() + 2);
	CHECK_EQ_INT(loop_timer_active(t), r->self_fires < 3);
}

static void rearm_victim_cb(struct loop_timer *t)
{
	struct rearm *r = t->arg;
	r->victim_fires++;
}

static void rearm_moved_cb(struct loop_timer *t)
{
	struct rearm *r = t->arg;
	r->moved_fires++;
	if (loop_now_ms() < r->moved_to)
		r->moved_fires += 100; /* fired at its old deadline */
	if (r->n < 8)
		r->order[r->n++] = 2;
	loop_timer_set(r->l, &r->end, loop_now_ms());
}

static void test_rearm_from_callback(void)
{
	struct rearm r = { .l = loop_new() };
	CHECK(r.l != NULL);
	if (!r.l)
		return;
	int64_t now = loop_now_ms();
	loop_timer_init(&r.self, rearm_self_cb, &r);
	loop_timer_init(&r.victim, rearm_victim_cb, &r);
	loop_timer_init(&r.moved, rearm_moved_cb, &r);
	loop_timer_init(&r.end, stop_cb, r.l);
	/* All three due in the first pass, self first. */
	loop_timer_set(r.l, &r.self, now - 30);
	loop_timer_set(r.l, &r.victim, now - 20);
	loop_timer_set(r.l, &r.moved, now - 10);
	CHECK_EQ_INT(loop_run(r.l), 0);
	CHECK_EQ_INT(r.self_fires, 3);
	CHECK_EQ_INT(r.victim_fires, 0);
	CHECK_EQ_INT(r.moved_fires, 1);
	CHECK_EQ_INT(loop_timer_active(&r.victim), 0);
	/* self's three firings (2 ms apart) all came before moved's (15 ms). */
	CHECK_EQ_INT(r.n, 4);
	CHECK_EQ_INT(r.order[3], 2);
	loop_free(r.l);
}

/*
 * A timer that re-arms itself for a time already past (or now) from its own
 * callback runs again on a later iteration: io events and the idle callback
 * get their turn in between, and other timers due in the same pass fire
 * before its second run.
 */
struct eager {
	struct loop *l;
	struct loop_timer spin, other;
	struct loop_io io;
	int pipefd[2];
	int log[16], n;
	int spins, idles, io_seen;
};

enum { EV_SPIN = 1, EV_OTHER, EV_IO, EV_IDLE };

static void eager_note(struct eager *e, int ev)
{
	if (e->n < 16)
		e->log[e->n++] = ev;
}

static void eager_spin_cb(struct loop_timer *t)
{
	struct eager *e = t->arg;
	e->spins++;
	eager_note(e, EV_SPIN);
	if (e->spins == 1) {
		ssize_t w = write(e->pipefd[1], "x", 1);
		CHECK_EQ_INT(w, 1);
	}
	if (e->spins < 1000)
		loop_timer_set(e->l, t, e->spins % 2 ? 0 : loop_now_ms());
}

static void eager_other_cb(struct loop_timer *t)
{
	eager_note(t->arg, EV_OTHER);
}

static void eager_io_cb(struct loop_io *io, uint32_t events)
{
	struct eager *e = io->arg;
	char c;
	CHECK(events & EPOLLIN);
	CHECK_EQ_INT(read(io->fd, &c, 1), 1);
	e->io_seen++;
	eager_note(e, EV_IO);
	loop_stop(e->l);
}

static void eager_idle_cb(void *arg)
{
	struct eager *e = arg;
	e->idles++;
	eager_note(e, EV_IDLE);
}

static void test_rearm_in_past(void)
{
	struct eager e = { .l = loop_new() };
	CHECK(e.l != NULL);
	if (!e.l)
		return;
	CHECK_EQ_INT(pipe2(e.pipefd, O_NONBLOCK | O_CLOEXEC), 0);
	CHECK_EQ_INT(loop_io_add(e.l, &e.io, e.pipefd[0], EPOLLIN, eager_io_cb, &e), 0);
	loop_set_idle(e.l, eager_idle_cb, &e);
	int64_t now = loop_now_ms();
	loop_timer_init(&e.spin, eager_spin_cb, &e);
	loop_timer_init(&e.other, eager_other_cb, &e);
	loop_timer_set(e.l, &e.spin, now - 100);
	loop_timer_set(e.l, &e.other, now - 50);
	CHECK_EQ_INT(loop_run(e.l), 0);
	/* Pass 1: spin, other, idle. Pass 2: the pipe, then spin again. */
	static const int want[] = { EV_SPIN, EV_OTHER, EV_IDLE, EV_IO, EV_SPIN, EV_IDLE };
	CHECK_EQ_INT(e.n, 6);
	for (int i = 0; i < 6 && i < e.n; i++)
		CHECK_EQ_INT(e.log[i], want[i]);
	CHECK_EQ_INT(e.spins, 2);
	CHECK_EQ_INT(e.io_seen, 1);
	CHECK_EQ_INT(loop_timer_active(&e.spin), 1);
	loop_timer_stop(e.l, &e.spin);
	CHECK_EQ_INT(loop_timer_active(&e.spin), 0);
	loop_io_del(e.l, &e.io);
	close(e.pipefd[0]);
	close(e.pipefd[1]);
	loop_free(e.l);
}

/* ---- io watchers ---------------------------------------------------------- */

struct pipes {
	struct loop *l;
	struct loop_io rd, wr;
	int fds[2];
	char got[64];
	size_t ngot;
	int rd_calls, wr_calls, idles;
	struct loop_timer end;
};

static void pipe_rd_cb(struct loop_io *io, uint32_t events)
{
	struct pipes *p = io->arg;
	p->rd_calls++;
	CHECK(events & EPOLLIN);
	ssize_t n;
	while ((n = read(io->fd, p->got + p->ngot, sizeof p->got - 1 - p->ngot)) > 0)
		p->ngot += (size_t)n;
	p->got[p->ngot] = '\0';
	if (strcmp(p->got, "hello world") == 0) {
		/* Done reading: drop the watcher; bytes written later are not
		 * seen, and the loop ends on a timer due now. */
		CHECK_EQ_INT(loop_io_del(p->l, io), 0);
		CHECK_EQ_INT(write(p->fds[1], "!", 1), 1);
		loop_timer_set(p->l, &p->end, loop_now_ms());
	}
}

static void pipe_wr_cb(struct loop_io *io, uint32_t events)
{
	struct pipes *p = io->arg;
	p->wr_calls++;
	CHECK(events & EPOLLOUT);
	/* Writable: write the first half, then stop asking (level-triggered
	 * EPOLLOUT would fire every iteration). */
	if (p->wr_calls == 1) {
		CHECK_EQ_INT(write(io->fd, "hello", 5), 5);
		CHECK_EQ_INT(loop_io_mod(p->l, io, 0), 0);
	}
}

static void pipe_idle_cb(void *arg)
{
	struct pipes *p = arg;
	p->idles++;
	if (p->idles == 1) /* the second half, from the idle callback */
		CHECK_EQ_INT(write(p->fds[1], " world", 6), 6);
}

static void test_io_pipe(void)
{
	struct pipes p = { .l = loop_new() };
	CHECK(p.l != NULL);
	if (!p.l)
		return;
	CHECK_EQ_INT(pipe2(p.fds, O_NONBLOCK | O_CLOEXEC), 0);
	CHECK_EQ_INT(loop_io_add(p.l, &p.rd, p.fds[0], EPOLLIN, pipe_rd_cb, &p), 0);
	CHECK_EQ_INT(loop_io_add(p.l, &p.wr, p.fds[1], EPOLLOUT, pipe_wr_cb, &p), 0);
	CHECK_EQ_INT(p.rd.fd, p.fds[0]);
	CHECK_EQ_INT(p.rd.events, EPOLLIN);
	/* The same fd twice is refused with -errno. */
	struct loop_io dup;
	CHECK(loop_io_add(p.l, &dup, p.fds[0], EPOLLIN, pipe_rd_cb, &p) < 0);
	loop_set_idle(p.l, pipe_idle_cb, &p);
	loop_timer_init(&p.end, stop_cb, p.l);
	CHECK_EQ_INT(loop_run(p.l), 0);
	CHECK_STR_EQ(p.got, "hello world");
	CHECK_EQ_INT(p.wr_calls, 1);
	CHECK(p.rd_calls >= 1 && p.rd_calls <= 2);
	CHECK(p.idles >= 2);
	char c;
	CHECK_EQ_INT(read(p.fds[0], &c, 1), 1); /* the "!" no watcher read */
	CHECK_EQ_INT(c, '!');
	CHECK(loop_io_del(p.l, &p.rd) < 0);     /* already removed */
	CHECK_EQ_INT(loop_io_del(p.l, &p.wr), 0);
	close(p.fds[0]);
	close(p.fds[1]);
	loop_free(p.l);
}

/* ---- loop_defer_free ------------------------------------------------------ */

static struct owned_io *deferred_peer;

struct owned_io {
	struct loop_io io;
	int fds[2];
	struct owned_io *peer;
	int *calls;
	struct loop *l;
};

/*
 * Both pipes are readable in the same batch. The first callback removes the
 * other watcher and frees it with loop_defer_free: its already-fetched
 * event must not run (and ASan would see the loop read freed memory if the
 * free were not deferred to the end of the batch).
 */
static void owned_cb(struct loop_io *io, uint32_t events)
{
	struct owned_io *me = io->arg;
	(void)events;
	(*me->calls)++;
	struct owned_io *peer = me->peer;
	if (peer) {
		me->peer = NULL;
		peer->peer = NULL;
		CHECK_EQ_INT(loop_io_del(me->l, &peer->io), 0);
		close(peer->fds[0]);
		close(peer->fds[1]);
		deferred_peer = peer;
		loop_defer_free(me->l, peer);
	}
	char buf[8];
	while (read(io->fd, buf, sizeof buf) > 0)
		;
	loop_stop(me->l);
}

static void idle_defer_cb(void *arg)
{
	/* Memory handed over from the idle callback is freed too (LeakSanitizer
	 * would report it otherwise). */
	struct loop *l = arg;
	loop_defer_free(l, malloc(32));
}

static void test_defer_free(void)
{
	struct loop *l = loop_new();
	CHECK(l != NULL);
	if (!l)
		return;
	int calls = 0;
	struct owned_io *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
	CHECK(a && b);
	if (!a || !b) {
		free(a);
		free(b);
		loop_free(l);
		return;
	}
	struct owned_io *both[] = { a, b };
	for (int i = 0; i < 2; i++) {
		CHECK_EQ_INT(pipe2(both[i]->fds, O_NONBLOCK | O_CLOEXEC), 0);
		both[i]->calls = &calls;
		both[i]->l = l;
		CHECK_EQ_INT(write(both[i]->fds[1], "x", 1), 1);
	}
	a->peer = b;
	b->peer = a;
	for (int i = 0; i < 2; i++)
		CHECK_EQ_INT(loop_io_add(l, &both[i]->io, both[i]->fds[0], EPOLLIN, owned_cb,
					 both[i]), 0);
	loop_set_idle(l, idle_defer_cb, l);
	CHECK_EQ_INT(loop_run(l), 0);
	CHECK_EQ_INT(calls, 1);
	CHECK(deferred_peer == a || deferred_peer == b);
	/* The one that ran is still ours; the other went to the loop. */
	struct owned_io *left = deferred_peer == a ? b : a;
	CHECK_EQ_INT(loop_io_del(l, &left->io), 0);
	close(left->fds[0]);
	close(left->fds[1]);
	free(left);
	loop_free(l);
}

/* ---- wake and stop from another thread ------------------------------------ */

static pid_t loop_tid;

/* Waits (bounded) until the loop's thread sleeps in the kernel, so the wake
 * really interrupts a blocked epoll_wait; wakes it anyway when the state
 * cannot be read. */
static void wait_blocked(void)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)loop_tid);
	for (int i = 0; i < 5000; i++) {
		FILE *f = fopen(path, "r");
		if (!f)
			return;
		char buf[512];
		size_t n = fread(buf, 1, sizeof buf - 1, f);
		fclose(f);
		buf[n] = '\0';
		const char *close_paren = strrchr(buf, ')');
		if (close_paren && close_paren[1] == ' ' && close_paren[2] == 'S')
			return;
		sleep_ms(1);
	}
}

struct wake {
	struct loop *l;
	atomic_int asked;
	int idles_after_ask;
	int use_stop;
};

static void *waker(void *arg)
{
	struct wake *w = arg;
	wait_blocked();
	atomic_store(&w->asked, 1);
	if (w->use_stop)
		loop_stop(w->l);
	else
		loop_wake(w->l);
	return NULL;
}

static void wake_idle_cb(void *arg)
{
	struct wake *w = arg;
	if (atomic_load(&w->asked)) {
		w->idles_after_ask++;
		loop_stop(w->l);
	}
}

static void test_wake_from_thread(int use_stop)
{
	struct wake w = { .l = loop_new(), .use_stop = use_stop };
	CHECK(w.l != NULL);
	if (!w.l)
		return;
	loop_set_idle(w.l, wake_idle_cb, &w);
	loop_tid = (pid_t)syscall(SYS_gettid);
	pthread_t th;
	CHECK_EQ_INT(pthread_create(&th, NULL, waker, &w), 0);
	/* No timer and no io: only the other thread can end this. */
	CHECK_EQ_INT(loop_run(w.l), 0);
	pthread_join(th, NULL);
	CHECK_EQ_INT(atomic_load(&w.asked), 1);
	/* A wake runs the idle callback; a stop ends the loop after the batch
	 * (the idle callback runs once more, and stops it as well). */
	CHECK_EQ_INT(w.idles_after_ask, 1);
	loop_free(w.l);
}

/* ---- loop_stop from a callback -------------------------------------------- */

struct stopper {
	struct loop *l;
	struct loop_timer t, later;
	int fired, later_fired;
};

static void stopper_cb(struct loop_timer *t)
{
	struct stopper *s = t->arg;
	s->fired++;
	loop_stop(s->l);
	/* Armed for the next pass, which never comes. */
	loop_timer_set(s->l, &s->later, loop_now_ms());
}

static void stopper_later_cb(struct loop_timer *t)
{
	struct stopper *s = t->arg;
	s->later_fired++;
}

static void test_stop_from_callback(void)
{
	struct stopper s = { .l = loop_new() };
	CHECK(s.l != NULL);
	if (!s.l)
		return;
	loop_timer_init(&s.t, stopper_cb, &s);
	loop_timer_init(&s.later, stopper_later_cb, &s);
	loop_timer_set(s.l, &s.t, loop_now_ms() + 5);
	CHECK_EQ_INT(loop_run(s.l), 0);
	CHECK_EQ_INT(s.fired, 1);
	CHECK_EQ_INT(s.later_fired, 0);
	CHECK_EQ_INT(loop_timer_active(&s.later), 1);
	loop_free(s.l);
}

/* A stop is consumed by the loop_run it ends: the loop runs again after,
 * and a stop asked before loop_run ends it at once. */
static void test_run_again(void)
{
	struct stopper s = { .l = loop_new() };
	CHECK(s.l != NULL);
	if (!s.l)
		return;
	loop_timer_init(&s.t, stopper_cb, &s);
	loop_timer_init(&s.later, stopper_later_cb, &s);
	loop_stop(s.l);
	loop_timer_set(s.l, &s.t, loop_now_ms() + 5);
	CHECK_EQ_INT(loop_run(s.l), 0);
	CHECK_EQ_INT(s.fired, 0); /* returned before the timer was due */
	for (int round = 1; round <= 3; round++) {
		loop_timer_set(s.l, &s.t, loop_now_ms());
		CHECK_EQ_INT(loop_run(s.l), 0);
		CHECK_EQ_INT(s.fired, round);
		/* stopper_cb armed `later` for the pass after its own: each new
		 * run fires it first (due), then the stop timer. */
		CHECK_EQ_INT(s.later_fired, round - 1);
	}
	loop_free(s.l);
}

static void test_clocks(void)
{
	int64_t a = loop_now_ms(), b = loop_now_ms();
	CHECK(b >= a);
	/* Wall clock in ms since the epoch: after 2020, before 2100. */
	int64_t w = loop_wall_ms();
	CHECK(w > 1577836800000LL && w < 4102444800000LL);
}

int main(void)
{
	alarm(60); /* a loop that never returns fails the test */
	test_clocks();
	test_due_order();
	test_heap_many();
	test_rearm_from_callback();
	test_rearm_in_past();
	test_io_pipe();
	test_wake_from_thread(0);
	test_wake_from_thread(1);
	test_stop_from_callback();
	test_run_again();
	test_defer_free();
	return check_done();
}
