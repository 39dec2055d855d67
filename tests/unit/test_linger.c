/*
 * test_linger.c: lingering close (core/linger.c) on socket pairs: the peer
 * gets FIN at once, what it still sends is read and dropped until it
 * closes, the time limit and the cap hold, and closing all leaves nothing
 * open.
 */
#include "linger.h"
#include "check.h"
#include "loop.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct linger_set ls;
static struct loop *loop;
static int rounds;

/* Stops the loop once nothing lingers, or after a bounded number of
 * rounds (a failure, checked by the caller). */
static void idle(void *arg)
{
	(void)arg;
	if (ls.n == 0 || ++rounds > 1000)
		loop_stop(loop);
}

static struct loop_timer tick;
static void tick_cb(struct loop_timer *t)
{
	/* keeps the loop turning while the test waits for a condition */
	loop_timer_set(loop, t, loop_now_ms() + 5);
}

static int fd_open(int fd)
{
	return fcntl(fd, F_GETFD) != -1 || errno != EBADF;
}

static void test_fin_then_drop_until_close(void)
{
	int sv[2];
	CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	CHECK(write(sv[0], "answer", 6) == 6); /* the answer MHD queued */
	linger_start(&ls, sv[0]);
	CHECK_EQ_INT(ls.n, 1);
	close(sv[0]); /* what MHD does next */
	/* The peer reads the answer, then end of stream: FIN came after it. */
	char buf[64];
	CHECK(read(sv[1], buf, sizeof buf) == 6);
	CHECK(read(sv[1], buf, sizeof buf) == 0);
	/* It may go on sending its body: read and dropped, no reset. */
	char body[4096];
	memset(body, 'b', sizeof body);
	CHECK(write(sv[1], body, sizeof body) == (ssize_t)sizeof body);
	close(sv[1]);
	rounds = 0;
	loop_run(loop);
	CHECK_EQ_INT(ls.n, 0);
	CHECK(rounds <= 1000);
}

static void test_time_limit(void)
{
	int sv[2];
	CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	linger_start(&ls, sv[0]);
	close(sv[0]);
	CHECK_EQ_INT(ls.n, 1);
	int64_t now = loop_now_ms();
	linger_sweep(&ls, now); /* not yet */
	CHECK_EQ_INT(ls.n, 1);
	linger_sweep(&ls, now + LINGER_MS + 1);
	CHECK_EQ_INT(ls.n, 0);
	/* Closed for good: the peer's writes now fail. */
	char c = 'x';
	ssize_t w = send(sv[1], &c, 1, MSG_NOSIGNAL);
	CHECK(w == -1);
	close(sv[1]);
}

static void test_cap_and_close_all(void)
{
	int peers[LINGER_MAX + 1];
	for (int i = 0; i <= LINGER_MAX; i++) {
		int sv[2];
		CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
		linger_start(&ls, sv[0]);
		close(sv[0]);
		peers[i] = sv[1];
	}
	CHECK_EQ_INT(ls.n, LINGER_MAX); /* past the cap a socket is closed at once */
	char c;
	CHECK(read(peers[LINGER_MAX], &c, 1) == 0);
	linger_close_all(&ls);
	CHECK_EQ_INT(ls.n, 0);
	CHECK(ls.head == NULL);
	for (int i = 0; i <= LINGER_MAX; i++) {
		CHECK(read(peers[i], &c, 1) == 0);
		close(peers[i]);
	}
}

static void test_dup_failure_leaves_fd(void)
{
	/* An fd that is not open: nothing lingers, nothing is closed. */
	int sv[2];
	CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	close(sv[0]);
	linger_start(&ls, sv[0]);
	CHECK_EQ_INT(ls.n, 0);
	CHECK(fd_open(sv[1]));
	close(sv[1]);
}

int main(void)
{
	loop = loop_new();
	CHECK(loop != NULL);
	if (!loop)
		return check_done();
	linger_init(&ls, loop);
	loop_set_idle(loop, idle, NULL);
	loop_timer_init(&tick, tick_cb, NULL);
	loop_timer_set(loop, &tick, loop_now_ms() + 5);
	test_fin_then_drop_until_close();
	test_time_limit();
	test_cap_and_close_all();
	test_dup_failure_leaves_fd();
	loop_timer_stop(loop, &tick);
	loop_free(loop);
	return check_done();
}
