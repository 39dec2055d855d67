/*
 * linger.h: lingering close of sockets answered from their headers.
 *
 * A request answered from its headers (401, 413, 429, 503) is closed by
 * libmicrohttpd without reading the body the client may still be sending,
 * and closing a socket with unread data sends a reset, which can make the
 * client lose the answer. So the server hands over a duplicate of the
 * descriptor just before MHD closes it: FIN is sent after the answer, what
 * still arrives is read and dropped (nothing is kept) until the client
 * closes, LINGER_MS pass or LINGER_BYTES were dropped, and the socket is
 * closed. At most LINGER_MAX per set; past that a socket is closed at once.
 */
#ifndef GENRELAY_LINGER_H
#define GENRELAY_LINGER_H

#include <stdint.h>

#define LINGER_MS 2000
#define LINGER_BYTES ((size_t)8 << 20)
#define LINGER_MAX 256

struct loop;
struct lingering;

/* The sockets lingering on one loop; the caller owns the struct. */
struct linger_set {
	struct loop *loop;
	struct lingering *head;
	int n;
};

void linger_init(struct linger_set *ls, struct loop *loop);
/* Lingers on a duplicate of fd (fd itself stays the caller's). */
void linger_start(struct linger_set *ls, int fd);
/* Closes the sockets whose time ran out by now (loop ms). */
void linger_sweep(struct linger_set *ls, int64_t now);
/* Closes every lingering socket. */
void linger_close_all(struct linger_set *ls);

#endif
