/*
 * scrub.c: see scrub.h.
 *
 * Matching is exact bytes. scrub_found and the fast path of scrub_dup look
 * for each needle with memmem (most texts hold none); a text that does is
 * rebuilt in one left-to-right pass that tries the longest needle first at
 * each position, so a secret that contains another one is replaced whole.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "scrub.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct needle {
	char *p;
	size_t n;
};

struct scrub {
	struct needle *v;     /* longest first */
	size_t n, cap;
	size_t nshort;            /* secrets added shorter than SCRUB_SHORT */
	unsigned char first[256]; /* 1 when a needle starts with that byte */
	size_t shortest;          /* the shortest needle's length (0: none) */
	uint64_t pair[1024];      /* bit a << 8 | b: a needle starts with bytes a, b */
	uint64_t stride[1024];    /* the same bits for bytes 0, 1 and 1, 2 of needles of 3+ */
};

struct scrub *scrub_new(void)
{
	return calloc(1, sizeof(struct scrub));
}

void scrub_free(struct scrub *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++) {
		memset(s->v[i].p, 0, s->v[i].n);
		free(s->v[i].p);
	}
	free(s->v);
	free(s);
}

size_t scrub_count(const struct scrub *s)
{
	return s ? s->n : 0;
}

size_t scrub_short_count(const struct scrub *s)
{
	return s ? s->nshort : 0;
}

/* Adds p[0..n) once, keeping the list sorted longest first. 1 added, 0
 * already there, -1 out of memory. */
static int add_needle(struct scrub *s, const char *p, size_t n)
{
	size_t at = 0;
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i].n == n && memcmp(s->v[i].p, p, n) == 0)
			return 0;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		struct needle *v = realloc(s->v, cap * sizeof *v);
		if (!v)
			return -1;
		s->v = v;
		s->cap = cap;
	}
	char *copy = malloc(n + 1);
	if (!copy)
		return -1;
	memcpy(copy, p, n);
	copy[n] = '\0';
	while (at < s->n && s->v[at].n >= n)
		at++;
	memmove(s->v + at + 1, s->v + at, (s->n - at) * sizeof *s->v);
	s->v[at].p = copy;
	s->v[at].n = n;
	s->n++;
	s->first[(unsigned char)p[0]] = 1;
	if (n >= 2) {
		unsigned k = (unsigned)(unsigned char)p[0] << 8 | (unsigned char)p[1];
		s->pair[k >> 6] |= (uint64_t)1 << (k & 63);
		s->stride[k >> 6] |= (uint64_t)1 << (k & 63);
	}
	if (n >= 3) {
		unsigned k = (unsigned)(unsigned char)p[1] << 8 | (unsigned char)p[2];
		s->stride[k >> 6] |= (uint64_t)1 << (k & 63);
	}
	if (!s->shortest || n < s->shortest)
		s->shortest = n;
	return 1;
}

/* The secret as jansson writes it inside a JSON string, when that differs
 * (caller frees), else NULL. *err is set when out of memory. */
static char *json_escaped(const char *secret, size_t n, int *err)
{
	int needs = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)secret[i];
		if (c == '"' || c == '\\' || c < 0x20)
			needs = 1;
	}
	if (!needs)
		return NULL;
	char *out = malloc(n * 6 + 1), *o = out;
	if (!out) {
		*err = 1;
		return NULL;
	}
	static const char hex[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)secret[i];
		const char *esc = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\n' ? "\\n"
				: c == '\r' ? "\\r" : c == '\t' ? "\\t" : c == '\b' ? "\\b"
				: c == '\f' ? "\\f" : NULL;
		if (esc) {
			size_t l = strlen(esc);
			memcpy(o, esc, l);
			o += l;
		} else if (c < 0x20) {
			*o++ = '\\';
			*o++ = 'u';
			*o++ = '0';
			*o++ = '0';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		} else {
			*o++ = (char)c;
		}
	}
	*o = '\0';
	return out;
}

int scrub_add(struct scrub *s, const char *secret)
{
	if (!s || !secret || !*secret)
		return 0;
	size_t n = strlen(secret);
	int err = 0, added = add_needle(s, secret, n);
	if (added < 0)
		return -1;
	if (added && n < SCRUB_SHORT)
		s->nshort++;
	char *esc = json_escaped(secret, n, &err);
	if (err)
		return -1;
	if (esc) {
		int rc = add_needle(s, esc, strlen(esc));
		memset(esc, 0, strlen(esc));
		free(esc);
		if (rc < 0)
			return -1;
	}
	return n < SCRUB_SHORT ? 1 : 0;
}

static size_t match_at(const struct scrub *s, const char *t, size_t left);

/*
 * With a few needles, memmem for each; with more (every customer's keys and
 * secrets, in their JSON forms), one pass over the text that looks only at
 * the positions where a needle's first two bytes stand (pair), which most
 * texts have none of; when every needle has 3 bytes or more, that pass reads
 * every second pair of bytes (stride) and tries the two positions it covers.
 */
int scrub_found(const struct scrub *s, const char *text, size_t len)
{
	if (!s || !text || !s->n || len < s->shortest)
		return 0;
	if (s->n <= 4 || s->shortest < 2) {
		for (size_t i = 0; i < s->n; i++)
			if (s->v[i].n <= len && memmem(text, len, s->v[i].p, s->v[i].n))
				return 1;
		return 0;
	}
	const unsigned char *t = (const unsigned char *)text;
	if (s->shortest >= 3) {
		/* Every second position: a needle of 3 bytes or more that starts
		 * at j or at j - 1 has its bytes 0, 1 or 1, 2 at j, j + 1. */
		for (size_t j = 0; j + 1 < len; j += 2) {
			unsigned k = (unsigned)t[j] << 8 | t[j + 1];
			if ((s->stride[k >> 6] >> (k & 63) & 1) &&
			    ((j > 0 && match_at(s, text + j - 1, len - j + 1)) ||
			     match_at(s, text + j, len - j)))
				return 1;
		}
		return 0;
	}
	for (size_t i = 0; i + 1 < len; i++) {
		unsigned k = (unsigned)t[i] << 8 | t[i + 1];
		if ((s->pair[k >> 6] >> (k & 63) & 1) && match_at(s, text + i, len - i))
			return 1;
	}
	return 0;
}

/* Length of the needle that starts at t[0..left), longest first, or 0. */
static size_t match_at(const struct scrub *s, const char *t, size_t left)
{
	if (!s->first[(unsigned char)t[0]])
		return 0;
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i].n <= left && memcmp(t, s->v[i].p, s->v[i].n) == 0)
			return s->v[i].n;
	return 0;
}

char *scrub_dup(const struct scrub *s, const char *text, size_t len, size_t *outlen)
{
	static const size_t rl = sizeof SCRUB_REPLACEMENT - 1;
	if (!scrub_found(s, text, len))
		return NULL;
	/* Worst case: every byte starts a one-byte needle. */
	if (len > (SIZE_MAX - 1) / rl)
		return NULL;
	char *out = malloc(len * rl + 1);
	size_t o = 0;
	if (!out)
		return NULL;
	for (size_t i = 0; i < len;) {
		size_t m = match_at(s, text + i, len - i);
		if (m) {
			memcpy(out + o, SCRUB_REPLACEMENT, rl);
			o += rl;
			i += m;
		} else {
			out[o++] = text[i++];
		}
	}
	out[o] = '\0';
	if (outlen)
		*outlen = o;
	char *shrunk = realloc(out, o + 1);
	return shrunk ? shrunk : out;
}

size_t scrub_buf(const struct scrub *s, char *buf, size_t cap)
{
	size_t n = 0, len = buf ? strlen(buf) : 0;
	if (!buf || !cap || !scrub_found(s, buf, len))
		return 0;
	char *t = scrub_dup(s, buf, len, &len);
	if (!t) { /* no memory: keep nothing */
		buf[0] = '\0';
		return 0;
	}
	for (const char *p = t; (p = strstr(p, SCRUB_REPLACEMENT)); p += sizeof SCRUB_REPLACEMENT - 1)
		n++;
	if (len >= cap)
		len = cap - 1;
	memcpy(buf, t, len);
	buf[len] = '\0';
	free(t);
	return n;
}

int scrub_str(const struct scrub *s, char **str)
{
	if (!str || !*str)
		return 0;
	size_t len = strlen(*str);
	if (!scrub_found(s, *str, len)) /* most texts: one pass, nothing to do */
		return 0;
	char *t = scrub_dup(s, *str, len, NULL);
	free(*str);
	*str = t; /* NULL when out of memory: nothing is kept */
	return t ? 0 : -1;
}

int scrub_key_is_secret(const char *k)
{
	static const char *const words[] = { "key", "secret", "token", "password" };
	char low[128];
	size_t n = k ? strlen(k) : 0;
	if (n >= sizeof low)
		n = sizeof low - 1;
	for (size_t i = 0; i < n; i++)
		low[i] = (char)tolower((unsigned char)k[i]);
	low[n] = '\0';
	for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
		if (strstr(low, words[i]))
			return 1;
	return 0;
}

/* ------------------------------------------------------------ Lua literals */

/* A growable block of NUL-terminated strings. */
struct block {
	char *p;
	size_t n, cap;
	int oom;
};

static void block_put(struct block *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->n + n + 2 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (b->n + n + 2 > cap)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p) {
			b->oom = 1;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n++] = '\0';
}

/* At src[i] == '[': the level of a long bracket "[==[" (0 for "[["), or -1. */
static int long_open(const char *src, size_t len, size_t i)
{
	size_t j = i + 1;
	int level = 0;
	while (j < len && src[j] == '=') {
		j++;
		level++;
	}
	return j < len && src[j] == '[' ? level : -1;
}

/* From src[i], just past the opening long bracket of level: the index of the
 * closing bracket (or len when there is none); *after is past it. */
static size_t long_close(const char *src, size_t len, size_t i, int level, size_t *after)
{
	for (size_t j = i; j < len; j++) {
		if (src[j] != ']')
			continue;
		size_t k = j + 1;
		int l = 0;
		while (k < len && src[k] == '=') {
			k++;
			l++;
		}
		if (l == level && k < len && src[k] == ']') {
			*after = k + 1;
			return j;
		}
	}
	*after = len;
	return len;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static size_t utf8_put(unsigned long cp, char *o)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xC0 | (cp >> 6));
		o[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xE0 | (cp >> 12));
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		o[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	o[0] = (char)(0xF0 | ((cp >> 18) & 0x07));
	o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	o[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

/* A short string from src[i] (the quote) to its end or the end of the line;
 * the value, escapes resolved, goes into out (len bytes at most). Returns the
 * index past it. */
static size_t short_string(const char *src, size_t len, size_t i, char *out, size_t *olen)
{
	char q = src[i++];
	size_t o = 0;
	while (i < len && src[i] != q && src[i] != '\n') {
		char c = src[i++];
		if (c != '\\' || i >= len) {
			out[o++] = c;
			continue;
		}
		c = src[i++];
		switch (c) {
		case 'n': out[o++] = '\n'; break;
		case 't': out[o++] = '\t'; break;
		case 'r': out[o++] = '\r'; break;
		case 'a': out[o++] = '\a'; break;
		case 'b': out[o++] = '\b'; break;
		case 'f': out[o++] = '\f'; break;
		case 'v': out[o++] = '\v'; break;
		case 'z':
			while (i < len && isspace((unsigned char)src[i]))
				i++;
			break;
		case 'x':
			if (i + 1 < len && hexval(src[i]) >= 0 && hexval(src[i + 1]) >= 0) {
				out[o++] = (char)(hexval(src[i]) * 16 + hexval(src[i + 1]));
				i += 2;
			}
			break;
		case 'u': {
			unsigned long cp = 0;
			if (i < len && src[i] == '{') {
				i++;
				while (i < len && hexval(src[i]) >= 0 && cp < 0x7FFFFFFF)
					cp = cp * 16 + (unsigned long)hexval(src[i++]);
				if (i < len && src[i] == '}')
					i++;
				o += utf8_put(cp > 0x10FFFF ? 0xFFFD : cp, out + o);
			}
			break;
		}
		default:
			if (isdigit((unsigned char)c)) {
				int v = c - '0';
				for (int k = 0; k < 2 && i < len && isdigit((unsigned char)src[i]); k++)
					v = v * 10 + (src[i++] - '0');
				out[o++] = (char)v;
			} else {
				out[o++] = c; /* \\ \" \' and an escaped newline */
			}
		}
	}
	*olen = o;
	return i < len && src[i] == q ? i + 1 : i;
}

char *scrub_lua_literals(const char *src, size_t len)
{
	struct block b = { 0 };
	/* A value is never longer than its source, plus 4 bytes for a \u{}. */
	char *tmp = malloc(len + 8);
	if (!tmp)
		return NULL;
	for (size_t i = 0; i < len;) {
		char c = src[i];
		if (c == '-' && i + 1 < len && src[i + 1] == '-') {
			i += 2;
			int level = i < len && src[i] == '[' ? long_open(src, len, i) : -1;
			if (level >= 0) {
				long_close(src, len, i + (size_t)level + 2, level, &i);
			} else {
				while (i < len && src[i] != '\n')
					i++;
			}
		} else if (c == '[' && long_open(src, len, i) >= 0) {
			int level = long_open(src, len, i);
			size_t start = i + (size_t)level + 2, after;
			if (start < len && src[start] == '\r')
				start++;
			if (start < len && src[start] == '\n')
				start++;
			size_t end = long_close(src, len, start, level, &after);
			if (end > start && end - start >= 2)
				block_put(&b, src + start, end - start);
			i = after;
		} else if (c == '"' || c == '\'') {
			size_t n = 0;
			i = short_string(src, len, i, tmp, &n);
			if (n >= 2)
				block_put(&b, tmp, n);
		} else {
			i++;
		}
	}
	free(tmp);
	if (b.oom || !b.p) {
		free(b.p);
		return NULL;
	}
	block_put(&b, "", 0); /* the terminator */
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	return b.p;
}

/* 1 when s[0..n) is one of literals of SCRUB_SHORT bytes or more, or (prefix)
 * the head of one, as in a message cut short. */
static int is_literal(const char *literals, const char *s, size_t n, int prefix)
{
	if (!literals || (!prefix && n < SCRUB_SHORT))
		return 0;
	for (const char *l = literals; *l; l += strlen(l) + 1) {
		size_t ll = strlen(l);
		if (ll >= SCRUB_SHORT && (prefix ? n <= ll : n == ll) && memcmp(l, s, n) == 0)
			return 1;
	}
	return 0;
}

/* Length of the variable-info opening at msg ("(field '", "(global '", ...),
 * or 0. */
static size_t varinfo_open(const char *msg)
{
	static const char *const kinds[] = { "(field '", "(global '", "(method '", "(local '",
		"(upvalue '" };
	for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
		size_t n = strlen(kinds[k]);
		if (strncmp(msg, kinds[k], n) == 0)
			return n;
	}
	return 0;
}

/* Appends s[0..n) to out (cap bytes; one kept for the NUL). */
static void put(char *out, size_t cap, size_t *o, const char *s, size_t n)
{
	if (*o + 1 >= cap)
		return;
	if (n > cap - 1 - *o)
		n = cap - 1 - *o;
	memcpy(out + *o, s, n);
	*o += n;
}

void scrub_lua_message(char *msg, size_t cap, const char *literals)
{
	if (!msg || !cap)
		return;
	size_t len = strlen(msg), o = 0;
	char *out = malloc(cap);
	if (!out) {
		msg[0] = '\0';
		return;
	}
	/* A syntax error's token is the end of the message. */
	char *near = strstr(msg, " near '");
	if (near && (near[7] == '"' || near[7] == '\'' ||
		     (near[7] == '[' && (near[8] == '[' || near[8] == '=')))) {
		snprintf(near, cap - (size_t)(near - msg), " near a string literal");
		len = strlen(msg);
	}
	for (size_t i = 0; i < len;) {
		if (strncmp(msg + i, "(constant '", 11) == 0) {
			/* The last "')" of the message: a constant may hold "')". */
			char *end = NULL;
			for (char *p = msg + i + 11; (p = strstr(p, "')")); p++)
				end = p;
			/* No end: the message was cut inside it; drop the rest. */
			put(out, cap, &o, "(constant " SCRUB_REPLACEMENT ")",
			    sizeof "(constant " SCRUB_REPLACEMENT ")" - 1);
			i = end ? (size_t)(end - msg) + 2 : len;
			continue;
		}
		size_t vo = varinfo_open(msg + i);
		const char *close = vo ? strstr(msg + i + vo, "')") : NULL;
		const char *name = msg + i + vo;
		if (vo && (close ? is_literal(literals, name, (size_t)(close - name), 0)
			   : is_literal(literals, name, strlen(name), 1))) {
			put(out, cap, &o, msg + i, vo);
			put(out, cap, &o, SCRUB_REPLACEMENT "')", sizeof SCRUB_REPLACEMENT + 1);
			i = close ? (size_t)(close - msg) + 2 : len;
			continue;
		}
		put(out, cap, &o, msg + i, 1);
		i++;
	}
	out[o] = '\0';
	memcpy(msg, out, o + 1);
	free(out);
}
