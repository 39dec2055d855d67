/*
 * linger.c: lingering close (see linger.h).
 */
#include "linger.h"

#include "loop.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

struct lingering {
	struct lingering *next, **prevp;
	struct linger_set *ls;
	struct loop_io io;
	int64_t until;
	size_t dropped;
};

void linger_init(struct linger_set *ls, struct loop *loop)
{
	ls->loop = loop;
	ls->head = NULL;
	ls->n = 0;
}

static void linger_end(struct lingering *g)
{
	struct linger_set *ls = g->ls;
	loop_io_del(ls->loop, &g->io);
	g->io.cb = NULL;
	close(g->io.fd);
	*g->prevp = g->next;
	if (g->next)
		g->next->prevp = g->prevp;
	ls->n--;
	loop_defer_free(ls->loop, g); /* an event for it may be pending */
}

static void linger_read(struct loop_io *io, uint32_t events)
{
	struct lingering *g = io->arg;
	char drop[16384];
	(void)events;
	for (;;) {
		ssize_t n = recv(io->fd, drop, sizeof drop, MSG_DONTWAIT);
		if (n > 0) {
			g->dropped += (size_t)n;
			if (g->dropped <= LINGER_BYTES)
				continue;
		} else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
			return;
		}
		linger_end(g); /* closed by the client, an error, or enough dropped */
		return;
	}
}

void linger_start(struct linger_set *ls, int fd)
{
	if (ls->n >= LINGER_MAX)
		return;
	struct lingering *g = calloc(1, sizeof *g);
	int dfd = g ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
	if (dfd < 0) {
		free(g);
		return;
	}
	g->ls = ls;
	g->until = loop_now_ms() + LINGER_MS;
	if (loop_io_add(ls->loop, &g->io, dfd, EPOLLIN, linger_read, g) < 0) {
		close(dfd);
		free(g);
		return;
	}
	shutdown(dfd, SHUT_WR); /* FIN after the answer already queued */
	g->next = ls->head;
	if (ls->head)
		ls->head->prevp = &g->next;
	g->prevp = &ls->head;
	ls->head = g;
	ls->n++;
}

void linger_sweep(struct linger_set *ls, int64_t now)
{
	for (struct lingering *g = ls->head, *n; g; g = n) {
		n = g->next;
		if (now >= g->until)
			linger_end(g);
	}
}

void linger_close_all(struct linger_set *ls)
{
	while (ls->head)
		linger_end(ls->head);
}
