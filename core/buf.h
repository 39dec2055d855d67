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
/* Appends s as a JSON string literal (with quotes); NULL appends null.
 * Bytes of 0x80 and up go as they are, unchecked, and controls other than
 * \n \r \t as \u00xx: for text known to be ASCII. buf_add_json_utf8 writes
 * what jansson writes. */
int buf_add_json_str(struct buf *b, const char *s);
/*
 * Appends s[0..n) as a JSON string literal exactly as jansson's json_dumps
 * writes it (\" \\ \b \f \n \r \t, other control bytes \u00XX in upper
 * case, everything else as it is). -1 when s is not valid UTF-8 (json_dumps
 * refuses it too), past the limit or out of memory: the buffer is then left
 * as it was.
 */
int buf_add_json_strn(struct buf *b, const char *s, size_t n);
/* buf_add_json_strn of a NUL-terminated s; NULL appends null. */
int buf_add_json_utf8(struct buf *b, const char *s);
/* Length of the valid UTF-8 sequence at p (before end), by jansson's rules
 * (no overlong forms, surrogates or code points past U+10FFFF), or 0. */
size_t buf_utf8_len(const unsigned char *p, const unsigned char *end);
/* Gives up the memory (caller frees); the buffer is empty afterwards. */
char *buf_steal(struct buf *b, size_t *len);

#endif
