/*
 * jscan.c: see jscan.h. A recursive-descent validator over a byte range;
 * recursion is bounded by JSCAN_MAX_DEPTH.
 */
#include "jscan.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSCAN_STR_(x) #x
#define JSCAN_STR(x) JSCAN_STR_(x)
#define JSCAN_DEPTH_TEXT JSCAN_STR(JSON_MAX_DEPTH)

struct sc {
	const unsigned char *p, *end, *start;
	const char *err;
};

static int fail(struct sc *s, const char *why)
{
	if (!s->err)
		s->err = why;
	return -1;
}

static void ws(struct sc *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
		s->p++;
}

static int hex4(const unsigned char *p, unsigned *out)
{
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		unsigned c = p[i], d;
		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return -1;
		v = v << 4 | d;
	}
	*out = v;
	return 0;
}

/* One UTF-8 sequence starting at s->p (its first byte >= 0x80). */
static int utf8(struct sc *s)
{
	const unsigned char *p = s->p;
	size_t left = (size_t)(s->end - p);
	unsigned c = p[0], cp;
	int n;
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		cp = c & 0x07;
	} else {
		return fail(s, "invalid UTF-8");
	}
	if (left < (size_t)n)
		return fail(s, "truncated UTF-8");
	for (int i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return fail(s, "invalid UTF-8");
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return fail(s, "invalid UTF-8");
	s->p += n;
	return 0;
}

static int string(struct sc *s)
{
	s->p++; /* opening quote */
	while (s->p < s->end) {
		unsigned c = *s->p;
		if (c == '"') {
			s->p++;
			return 0;
		}
		if (c < 0x20)
			return fail(s, "control character in a string");
		if (c == '\\') {
			if (s->end - s->p < 2)
				break;
			unsigned e = s->p[1];
			if (e == 'u') {
				unsigned u, lo;
				if (s->end - s->p < 6 || hex4(s->p + 2, &u) < 0)
					return fail(s, "bad \\u escape");
				if (u == 0)
					return fail(s, "\\u0000 is not allowed in a string");
				s->p += 6;
				if (u >= 0xdc00 && u <= 0xdfff)
					return fail(s, "lone low surrogate");
				if (u >= 0xd800 && u <= 0xdbff) {
					if (s->end - s->p < 6 || s->p[0] != '\\' || s->p[1] != 'u' ||
					    hex4(s->p + 2, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff)
						return fail(s, "lone high surrogate");
					s->p += 6;
				}
				continue;
			}
			if (!strchr("\"\\/bfnrt", (int)e) || e == 0)
				return fail(s, "bad escape in a string");
			s->p += 2;
			continue;
		}
		if (c >= 0x80) {
			if (utf8(s) < 0)
				return -1;
			continue;
		}
		s->p++;
	}
	return fail(s, "unterminated string");
}

static int digits(struct sc *s)
{
	const unsigned char *b = s->p;
	while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
		s->p++;
	return s->p > b ? 0 : fail(s, "bad number");
}

/*
 * The number grammar, then its range: an integer must fit in 64 bits and a
 * real must not overflow a double (1e999), since later stages (jansson, the
 * Lua host) could not represent it.
 */
static int number_range(struct sc *s, const unsigned char *b, int is_real)
{
	char buf[512];
	size_t n = (size_t)(s->p - b);
	if (n >= sizeof buf)
		return fail(s, "number too long");
	memcpy(buf, b, n);
	buf[n] = '\0';
	errno = 0;
	if (is_real) {
		double d = strtod(buf, NULL);
		if (isinf(d) || (errno == ERANGE && d != 0))
			return fail(s, "number out of range");
	} else {
		(void)strtoll(buf, NULL, 10);
		if (errno == ERANGE)
			return fail(s, "integer out of range");
	}
	return 0;
}

static int number(struct sc *s)
{
	const unsigned char *b = s->p;
	int is_real = 0;
	if (*s->p == '-')
		s->p++;
	if (s->p < s->end && *s->p == '0')
		s->p++;
	else if (digits(s) < 0)
		return -1;
	if (s->p < s->end && *s->p == '.') {
		s->p++;
		is_real = 1;
		if (digits(s) < 0)
			return -1;
	}
	if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
		s->p++;
		is_real = 1;
		if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
			s->p++;
		if (digits(s) < 0)
			return -1;
	}
	return number_range(s, b, is_real);
}

static int literal(struct sc *s, const char *word)
{
	size_t n = strlen(word);
	if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
		return fail(s, "unexpected character");
	s->p += n;
	return 0;
}

static int value(struct sc *s, int depth, enum jscan_type *type);

static int members(struct sc *s, int depth, struct jscan_member *out, size_t max, size_t *n)
{
	s->p++; /* { */
	ws(s);
	if (s->p < s->end && *s->p == '}') {
		s->p++;
		return 0;
	}
	for (;;) {
		ws(s);
		if (s->p >= s->end || *s->p != '"')
			return fail(s, "expected a member name");
		const unsigned char *k = s->p;
		if (string(s) < 0)
			return -1;
		if (out) {
			if (*n == max)
				return fail(s, "too many members");
			struct jscan_member *m = &out[*n];
			int kl = jscan_string((const char *)k, (size_t)(s->p - k), m->key, sizeof m->key);
			m->key_too_long = kl < 0;
			if (kl < 0)
				m->key[sizeof m->key - 1] = '\0';
			for (size_t i = 0; i < *n; i++)
				if (!m->key_too_long && !out[i].key_too_long && strcmp(out[i].key, m->key) == 0)
					return fail(s, "duplicate member name");
		}
		ws(s);
		if (s->p >= s->end || *s->p != ':')
			return fail(s, "expected ':'");
		s->p++;
		ws(s);
		const unsigned char *v = s->p;
		enum jscan_type t;
		if (value(s, depth + 1, &t) < 0)
			return -1;
		if (out) {
			out[*n].type = t;
			out[*n].val = (const char *)v;
			out[*n].len = (size_t)(s->p - v);
			(*n)++;
		}
		ws(s);
		if (s->p < s->end && *s->p == ',') {
			s->p++;
			continue;
		}
		if (s->p < s->end && *s->p == '}') {
			s->p++;
			return 0;
		}
		return fail(s, "expected ',' or '}'");
	}
}

static int array(struct sc *s, int depth)
{
	s->p++; /* [ */
	ws(s);
	if (s->p < s->end && *s->p == ']') {
		s->p++;
		return 0;
	}
	for (;;) {
		enum jscan_type t;
		ws(s);
		if (value(s, depth + 1, &t) < 0)
			return -1;
		ws(s);
		if (s->p < s->end && *s->p == ',') {
			s->p++;
			continue;
		}
		if (s->p < s->end && *s->p == ']') {
			s->p++;
			return 0;
		}
		return fail(s, "expected ',' or ']'");
	}
}

static int value(struct sc *s, int depth, enum jscan_type *type)
{
	if (s->p >= s->end)
		return fail(s, "unexpected end of input");
	if ((*s->p == '{' || *s->p == '[') && depth > JSCAN_MAX_DEPTH)
		return fail(s, "nesting deeper than " JSCAN_DEPTH_TEXT " levels in a member");
	switch (*s->p) {
	case '{':
		*type = JSCAN_OBJECT;
		return members(s, depth, NULL, 0, NULL);
	case '[':
		*type = JSCAN_ARRAY;
		return array(s, depth);
	case '"':
		*type = JSCAN_STRING;
		return string(s);
	case 't':
		*type = JSCAN_TRUE;
		return literal(s, "true");
	case 'f':
		*type = JSCAN_FALSE;
		return literal(s, "false");
	case 'n':
		*type = JSCAN_NULL;
		return literal(s, "null");
	default:
		if (*s->p == '-' || (*s->p >= '0' && *s->p <= '9')) {
			*type = JSCAN_NUMBER;
			return number(s);
		}
		return fail(s, "unexpected character");
	}
}

int jscan_object(const char *text, size_t len, struct jscan_member *out, size_t max,
		 size_t *n, char *err, size_t errlen, size_t *pos)
{
	struct sc s = { (const unsigned char *)text, (const unsigned char *)text + len,
			(const unsigned char *)text, NULL };
	*n = 0;
	ws(&s);
	int rc;
	if (s.p >= s.end)
		rc = fail(&s, "empty body");
	else if (*s.p != '{')
		rc = fail(&s, "the body must be a JSON object");
	else
		rc = members(&s, 1, out, max, n);
	if (rc == 0) {
		ws(&s);
		if (s.p != s.end)
			rc = fail(&s, "extra text after the object");
	}
	if (rc < 0) {
		snprintf(err, errlen, "%s", s.err);
		*pos = (size_t)(s.p - s.start);
	}
	return rc;
}

static void put_utf8(char *out, size_t *o, unsigned cp)
{
	if (cp < 0x80) {
		out[(*o)++] = (char)cp;
	} else if (cp < 0x800) {
		out[(*o)++] = (char)(0xc0 | cp >> 6);
		out[(*o)++] = (char)(0x80 | (cp & 0x3f));
	} else if (cp < 0x10000) {
		out[(*o)++] = (char)(0xe0 | cp >> 12);
		out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[(*o)++] = (char)(0x80 | (cp & 0x3f));
	} else {
		out[(*o)++] = (char)(0xf0 | cp >> 18);
		out[(*o)++] = (char)(0x80 | ((cp >> 12) & 0x3f));
		out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[(*o)++] = (char)(0x80 | (cp & 0x3f));
	}
}

int jscan_string(const char *val, size_t len, char *out, size_t outlen)
{
	size_t o = 0;
	if (len < 2 || outlen == 0)
		return -1;
	const char *p = val + 1, *end = val + len - 1;
	while (p < end) {
		unsigned cp;
		if (o + 5 > outlen)
			return -1;
		if (*p != '\\') {
			out[o++] = *p++;
			continue;
		}
		char e = p[1];
		p += 2;
		switch (e) {
		case 'b': out[o++] = '\b'; break;
		case 'f': out[o++] = '\f'; break;
		case 'n': out[o++] = '\n'; break;
		case 'r': out[o++] = '\r'; break;
		case 't': out[o++] = '\t'; break;
		case 'u':
			if (end - p < 4 || hex4((const unsigned char *)p, &cp) < 0)
				return -1;
			p += 4;
			if (cp >= 0xd800 && cp <= 0xdbff) {
				unsigned lo;
				if (end - p < 6 || hex4((const unsigned char *)p + 2, &lo) < 0)
					return -1;
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
				p += 6;
			}
			put_utf8(out, &o, cp);
			break;
		default: out[o++] = e; break;
		}
	}
	out[o] = '\0';
	return (int)o;
}
