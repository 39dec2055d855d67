#include "buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void buf_init(struct buf *b, size_t max)
{
	b->p = NULL;
	b->len = b->cap = 0;
	b->max = max;
}

void buf_free(struct buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

void buf_reset(struct buf *b)
{
	b->len = 0;
	if (b->p)
		b->p[0] = '\0';
}

static int grow(struct buf *b, size_t need)
{
	if (need > b->max)
		return -1;
	if (need + 1 <= b->cap)
		return 0;
	size_t ncap = b->cap ? b->cap : 256;
	while (ncap < need + 1)
		ncap *= 2;
	if (ncap > b->max + 1)
		ncap = b->max + 1;
	char *np = realloc(b->p, ncap);
	if (!np)
		return -1;
	b->p = np;
	b->cap = ncap;
	return 0;
}

int buf_add(struct buf *b, const void *data, size_t n)
{
	if (n > b->max - b->len || grow(b, b->len + n) < 0)
		return -1;
	if (n)
		memcpy(b->p + b->len, data, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

int buf_adds(struct buf *b, const char *s)
{
	return buf_add(b, s, strlen(s));
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	char small[256];
	va_start(ap, fmt);
	int n = vsnprintf(small, sizeof small, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -1;
	if ((size_t)n < sizeof small)
		return buf_add(b, small, (size_t)n);
	if ((size_t)n > b->max - b->len || grow(b, b->len + (size_t)n) < 0)
		return -1;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

int buf_add_json_str(struct buf *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	if (!s)
		return buf_add(b, "null", 4);
	if (buf_add(b, "\"", 1) < 0)
		return -1;
	const unsigned char *p = (const unsigned char *)s, *run = p;
	for (; *p; p++) {
		const char *esc = NULL;
		char u[7];
		switch (*p) {
		case '"': esc = "\\\""; break;
		case '\\': esc = "\\\\"; break;
		case '\n': esc = "\\n"; break;
		case '\r': esc = "\\r"; break;
		case '\t': esc = "\\t"; break;
		default:
			if (*p < 0x20) {
				u[0] = '\\'; u[1] = 'u'; u[2] = '0'; u[3] = '0';
				u[4] = hex[*p >> 4]; u[5] = hex[*p & 15]; u[6] = 0;
				esc = u;
			}
		}
		if (esc) {
			if (buf_add(b, run, (size_t)(p - run)) < 0 || buf_adds(b, esc) < 0)
				return -1;
			run = p + 1;
		}
	}
	if (buf_add(b, run, (size_t)(p - run)) < 0)
		return -1;
	return buf_add(b, "\"", 1);
}

size_t buf_utf8_len(const unsigned char *p, const unsigned char *end)
{
	unsigned c = p[0], v;
	size_t n;
	if (c < 0x80)
		return 1;
	if (c < 0xC2)
		return 0;
	if (c < 0xE0) {
		n = 2;
		v = c & 0x1F;
	} else if (c < 0xF0) {
		n = 3;
		v = c & 0x0F;
	} else if (c < 0xF5) {
		n = 4;
		v = c & 0x07;
	} else {
		return 0;
	}
	if ((size_t)(end - p) < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xC0) != 0x80)
			return 0;
		v = (v << 6) | (p[i] & 0x3F);
	}
	if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF) ||
	    (n == 3 && v < 0x800) || (n == 4 && v < 0x10000))
		return 0;
	return n;
}

int buf_add_json_strn(struct buf *b, const char *s, size_t n)
{
	static const char hexd[] = "0123456789ABCDEF";
	const unsigned char *p = (const unsigned char *)s, *end = p + n, *run = p;
	size_t start = b->len;
	if (buf_add(b, "\"", 1) < 0)
		return -1;
	while (p < end) {
		unsigned c = *p;
		if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
			p++;
			continue;
		}
		if (c >= 0x80) {
			size_t k = buf_utf8_len(p, end);
			if (!k)
				goto fail; /* json_dumps refuses invalid UTF-8 */
			p += k;
			continue;
		}
		if (buf_add(b, run, (size_t)(p - run)) < 0)
			goto fail;
		char esc[6] = { '\\', 0, 0, 0, 0, 0 };
		size_t el = 2;
		switch (c) {
		case '"': esc[1] = '"'; break;
		case '\\': esc[1] = '\\'; break;
		case '\b': esc[1] = 'b'; break;
		case '\f': esc[1] = 'f'; break;
		case '\n': esc[1] = 'n'; break;
		case '\r': esc[1] = 'r'; break;
		case '\t': esc[1] = 't'; break;
		default:
			esc[1] = 'u';
			esc[2] = '0';
			esc[3] = '0';
			esc[4] = hexd[c >> 4];
			esc[5] = hexd[c & 15];
			el = 6;
		}
		if (buf_add(b, esc, el) < 0)
			goto fail;
		run = ++p;
	}
	if (buf_add(b, run, (size_t)(p - run)) == 0 && buf_add(b, "\"", 1) == 0)
		return 0;
fail:
	b->len = start;
	if (b->p)
		b->p[start] = '\0';
	return -1;
}

int buf_add_json_utf8(struct buf *b, const char *s)
{
	return s ? buf_add_json_strn(b, s, strlen(s)) : buf_add(b, "null", 4);
}

char *buf_steal(struct buf *b, size_t *len)
{
	char *p = b->p;
	if (!p) {
		p = calloc(1, 1);
	}
	if (len)
		*len = b->len;
	b->p = NULL;
	b->len = b->cap = 0;
	return p;
}
