/*
 * buf.h: a growable byte buffer with a hard size limit fixed at creation.
 *
 * Every buffer holding untrusted input is created with the most it may hold;
 * an append past that fails with -1 and leaves the buffer as it was. The
 * content is always NUL-terminated (the terminator is not counted in len).
 */
#ifndef GENRELAY_BUF_H
#define GENRELAY_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
	char *p;
	size_t len;
	size_t cap;
	size_t max;
};

void buf_init(struct buf *b, size_t max);
void buf_free(struct buf *b);
void buf_reset(struct buf *b);
int buf_add(struct buf *b, const void *data, size_t n);
int buf_adds(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Appends s as a JSON string literal (with quotes); NULL appends null. */
int buf_add_json_str(struct buf *b, const char *s);
/* Gives up the memory (caller frees); the buffer is empty afterwards. */
char *buf_steal(struct buf *b, size_t *len);

#endif
