/*
 * luajson_text.c: JSON text to Lua values and back without a jansson tree
 * in between (see luajson_text.h).
 */
#include "luajson_text.h"
#include "buf.h"
#include "jsondump.h"
#include "luajson.h"

#include <errno.h>
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------- JSON text straight into Lua ---------- */

/*
 * A parser with jansson's rules (json_loadb with JSON_DECODE_ANY, as the
 * core reads bodies) that builds the Lua values luajson_push would build
 * from jansson's tree, without the tree. Refused like jansson: invalid
 * UTF-8 (overlong forms, surrogates, past U+10FFFF), control characters in
 * strings, \u0000, lone surrogate escapes, leading zeros, integers outside
 * 64 bits, reals that overflow, anything after the value but whitespace.
 */
struct dec {
	lua_State *L;
	const unsigned char *p, *end;
	int too_deep;
};

#define DEC_FAIL (-1)

static void dec_ws(struct dec *d)
{
	while (d->p < d->end && (*d->p == ' ' || *d->p == '\t' || *d->p == '\n' || *d->p == '\r'))
		d->p++;
}

static int hex4(const unsigned char *p, const unsigned char *end, unsigned *out)
{
	unsigned v = 0;
	if (end - p < 4)
		return -1;
	for (int i = 0; i < 4; i++) {
		unsigned c = p[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return -1;
	}
	*out = v;
	return 0;
}

static void add_utf8(luaL_Buffer *b, unsigned v)
{
	if (v < 0x80) {
		luaL_addchar(b, (char)v);
	} else if (v < 0x800) {
		luaL_addchar(b, (char)(0xC0 | (v >> 6)));
		luaL_addchar(b, (char)(0x80 | (v & 0x3F)));
	} else if (v < 0x10000) {
		luaL_addchar(b, (char)(0xE0 | (v >> 12)));
		luaL_addchar(b, (char)(0x80 | ((v >> 6) & 0x3F)));
		luaL_addchar(b, (char)(0x80 | (v & 0x3F)));
	} else {
		luaL_addchar(b, (char)(0xF0 | (v >> 18)));
		luaL_addchar(b, (char)(0x80 | ((v >> 12) & 0x3F)));
		luaL_addchar(b, (char)(0x80 | ((v >> 6) & 0x3F)));
		luaL_addchar(b, (char)(0x80 | (v & 0x3F)));
	}
}

/* The string whose opening quote is at d->p, pushed. 0 or DEC_FAIL. */
static int dec_string(struct dec *d)
{
	const unsigned char *p = d->p + 1, *start = p;
	/* the common case: no escapes, pushed straight from the text */
	while (p < d->end && *p != '"' && *p != '\\') {
		size_t n;
		if (*p >= 0x20 && *p < 0x80) { /* ASCII, the common case */
			p++;
			continue;
		}
		if (*p < 0x20 || !(n = buf_utf8_len(p, d->end)))
			return DEC_FAIL;
		p += n;
	}
	if (p >= d->end)
		return DEC_FAIL;
	if (*p == '"') {
		lua_pushlstring(d->L, (const char *)start, (size_t)(p - start));
		d->p = p + 1;
		return 0;
	}
	luaL_Buffer b;
	luaL_buffinit(d->L, &b);
	luaL_addlstring(&b, (const char *)start, (size_t)(p - start));
	while (p < d->end && *p != '"') {
		if (*p == '\\') {
			if (d->end - p < 2)
				return DEC_FAIL;
			unsigned c = p[1], v, lo;
			p += 2;
			switch (c) {
			case '"': case '\\': case '/': luaL_addchar(&b, (char)c); break;
			case 'b': luaL_addchar(&b, '\b'); break;
			case 'f': luaL_addchar(&b, '\f'); break;
			case 'n': luaL_addchar(&b, '\n'); break;
			case 'r': luaL_addchar(&b, '\r'); break;
			case 't': luaL_addchar(&b, '\t'); break;
			case 'u':
				if (hex4(p, d->end, &v) < 0)
					return DEC_FAIL;
				p += 4;
				if (v >= 0xD800 && v <= 0xDBFF) {
					if (d->end - p < 6 || p[0] != '\\' || p[1] != 'u' ||
					    hex4(p + 2, d->end, &lo) < 0 || lo < 0xDC00 || lo > 0xDFFF)
						return DEC_FAIL;
					p += 6;
					v = 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00);
				} else if ((v >= 0xDC00 && v <= 0xDFFF) || v == 0) {
					return DEC_FAIL;
				}
				add_utf8(&b, v);
				break;
			default:
				return DEC_FAIL;
			}
			continue;
		}
		size_t n;
		if (*p < 0x20 || !(n = buf_utf8_len(p, d->end)))
			return DEC_FAIL;
		luaL_addlstring(&b, (const char *)p, n);
		p += n;
	}
	if (p >= d->end)
		return DEC_FAIL;
	luaL_pushresult(&b);
	d->p = p + 1;
	return 0;
}

/* jansson's lexer reads one character past a number or a literal and puts
 * it back; a NUL byte put back that way is dropped from its stream. So that
 * both agree on what is JSON, one NUL byte right after such a token is
 * skipped here too. */
static void dec_after_token(struct dec *d)
{
	if (d->p < d->end && *d->p == '\0')
		d->p++;
}

static int is_digit(unsigned c)
{
	return c >= '0' && c <= '9';
}

/* The number at d->p, pushed (an integer when it has no fraction or
 * exponent, as jansson's json_integer). 0 or DEC_FAIL. */
static int dec_number(struct dec *d)
{
	const unsigned char *p = d->p, *s = p;
	int real = 0;
	if (p < d->end && *p == '-')
		p++;
	if (p < d->end && *p == '0') {
		p++;
		if (p < d->end && is_digit(*p))
			return DEC_FAIL;
	} else if (p < d->end && is_digit(*p)) {
		while (p < d->end && is_digit(*p))
			p++;
	} else {
		return DEC_FAIL;
	}
	if (p < d->end && *p == '.') {
		real = 1;
		p++;
		if (p >= d->end || !is_digit(*p))
			return DEC_FAIL;
		while (p < d->end && is_digit(*p))
			p++;
	}
	if (p < d->end && (*p == 'e' || *p == 'E')) {
		real = 1;
		p++;
		if (p < d->end && (*p == '+' || *p == '-'))
			p++;
		if (p >= d->end || !is_digit(*p))
			return DEC_FAIL;
		while (p < d->end && is_digit(*p))
			p++;
	}
	size_t n = (size_t)(p - s);
	char small[64];
	const char *text;
	if (n < sizeof small) {
		memcpy(small, s, n);
		small[n] = '\0';
		text = small;
	} else {
		lua_pushlstring(d->L, (const char *)s, n); /* NUL-terminated copy */
		text = lua_tostring(d->L, -1);
	}
	char *endp;
	int ok;
	errno = 0;
	if (!real) {
		long long v = strtoll(text, &endp, 10);
		ok = errno != ERANGE;
		if (text != small)
			lua_pop(d->L, 1);
		if (ok)
			lua_pushinteger(d->L, (lua_Integer)v);
	} else {
		double v = strtod(text, &endp);
		ok = !((v == HUGE_VAL || v == -HUGE_VAL) && errno == ERANGE);
		if (text != small)
			lua_pop(d->L, 1);
		if (ok)
			lua_pushnumber(d->L, v);
	}
	if (!ok)
		return DEC_FAIL;
	d->p = p;
	dec_after_token(d);
	return 0;
}

static int dec_literal(struct dec *d, const char *word, size_t n)
{
	if ((size_t)(d->end - d->p) < n || memcmp(d->p, word, n) != 0)
		return DEC_FAIL;
	d->p += n;
	dec_after_token(d);
	return 0;
}

static int dec_value(struct dec *d, int depth);

static int dec_array(struct dec *d, int depth)
{
	lua_Integer i = 0;
	d->p++;
	lua_createtable(d->L, 0, 0);
	dec_ws(d);
	if (d->p < d->end && *d->p == ']') {
		d->p++;
	} else {
		for (;;) {
			if (dec_value(d, depth + 1) < 0)
				return DEC_FAIL;
			lua_rawseti(d->L, -2, ++i);
			dec_ws(d);
			if (d->p < d->end && *d->p == ',') {
				d->p++;
				continue;
			}
			if (d->p < d->end && *d->p == ']') {
				d->p++;
				break;
			}
			return DEC_FAIL;
		}
	}
	luajson_array_mt(d->L);
	lua_setmetatable(d->L, -2);
	return 0;
}

static int dec_object(struct dec *d, int depth)
{
	d->p++;
	lua_createtable(d->L, 0, 0);
	dec_ws(d);
	if (d->p < d->end && *d->p == '}') {
		d->p++;
		return 0;
	}
	for (;;) {
		dec_ws(d);
		if (d->p >= d->end || *d->p != '"' || dec_string(d) < 0)
			return DEC_FAIL;
		dec_ws(d);
		if (d->p >= d->end || *d->p != ':')
			return DEC_FAIL;
		d->p++;
		if (dec_value(d, depth + 1) < 0)
			return DEC_FAIL;
		lua_rawset(d->L, -3);
		dec_ws(d);
		if (d->p < d->end && *d->p == ',') {
			d->p++;
			continue;
		}
		if (d->p < d->end && *d->p == '}') {
			d->p++;
			return 0;
		}
		return DEC_FAIL;
	}
}

static int dec_value(struct dec *d, int depth)
{
	if (depth > LUAJSON_MAX_DEPTH || !lua_checkstack(d->L, 6)) {
		d->too_deep = 1;
		return DEC_FAIL;
	}
	dec_ws(d);
	if (d->p >= d->end)
		return DEC_FAIL;
	switch (*d->p) {
	case '{': return dec_object(d, depth);
	case '[': return dec_array(d, depth);
	case '"': return dec_string(d);
	case 't':
		if (dec_literal(d, "true", 4) < 0)
			return DEC_FAIL;
		lua_pushboolean(d->L, 1);
		return 0;
	case 'f':
		if (dec_literal(d, "false", 5) < 0)
			return DEC_FAIL;
		lua_pushboolean(d->L, 0);
		return 0;
	case 'n':
		if (dec_literal(d, "null", 4) < 0)
			return DEC_FAIL;
		lua_pushlightuserdata(d->L, NULL);
		return 0;
	default:
		return dec_number(d);
	}
}

int luajson_decode(lua_State *L, const char *text, size_t len, int depth)
{
	struct dec d = { L, (const unsigned char *)text, (const unsigned char *)text + len, 0 };
	int top = lua_gettop(L);
	if (!text || dec_value(&d, depth) < 0) {
		lua_settop(L, top);
		return d.too_deep ? -2 : -1;
	}
	dec_ws(&d);
	if (d.p != d.end) {
		lua_settop(L, top);
		return -1;
	}
	return 0;
}

/* ---------- Lua values straight to JSON text ---------- */

/*
 * The text json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) gives for v =
 * luajson_to_json of the value, byte for byte, without building v: objects
 * in the order lua_next visits them (the order luajson_to_json inserts
 * them, which jansson keeps), strings escaped as jansson escapes them
 * (\" \\ \b \f \n \r \t, other controls \uXXXX, nothing else), integers
 * and integral floats within 2^53 as integers, other floats as jansson's
 * "%.17g" with its fix-ups. Whatever it does not render the same way is
 * refused, for the caller to take the jansson path: a key that is not a
 * string or holds a NUL, invalid UTF-8, and everything luajson_to_json
 * refuses (cycles, depth, NaN, functions ...).
 */
struct enc {
	lua_State *L;
	struct buf *b;
	const void *seen[LUAJSON_MAX_DEPTH + 1];
	int depth;
};

static int enc_value(struct enc *e, int idx);

static int enc_string(struct enc *e, const char *s, size_t n)
{
	return buf_add_json_strn(e->b, s, n); /* -1 on invalid UTF-8, as json_dumps */
}

static int enc_number(struct enc *e, int idx)
{
	char s[32];
	long long v;
	if (lua_isinteger(e->L, idx)) {
		v = (long long)lua_tointeger(e->L, idx);
	} else {
		lua_Number d = lua_tonumber(e->L, idx);
		if (isnan(d) || isinf(d))
			return -1;
		if (!(d == floor(d) && fabs(d) <= 9007199254740992.0))
			return jsondump_real(e->b, (double)d);
		v = (long long)d;
	}
	int n = snprintf(s, sizeof s, "%lld", v);
	return buf_add(e->b, s, (size_t)n);
}

static int enc_array(struct enc *e, int idx, lua_Integer n)
{
	if (buf_add(e->b, "[", 1) < 0)
		return -1;
	for (lua_Integer i = 1; i <= n; i++) {
		if (i > 1 && buf_add(e->b, ",", 1) < 0)
			return -1;
		lua_rawgeti(e->L, idx, i);
		int rc = enc_value(e, lua_gettop(e->L));
		lua_pop(e->L, 1);
		if (rc < 0)
			return -1;
	}
	return buf_add(e->b, "]", 1);
}

static int enc_object(struct enc *e, int idx)
{
	int first = 1;
	if (buf_add(e->b, "{", 1) < 0)
		return -1;
	lua_pushnil(e->L);
	while (lua_next(e->L, idx)) {
		size_t kl;
		const char *k;
		if (lua_type(e->L, -2) != LUA_TSTRING || (k = lua_tolstring(e->L, -2, &kl),
							   memchr(k, '\0', kl) != NULL) ||
		    (!first && buf_add(e->b, ",", 1) < 0) || enc_string(e, k, kl) < 0 ||
		    buf_add(e->b, ":", 1) < 0 || enc_value(e, lua_gettop(e->L)) < 0) {
			lua_pop(e->L, 2);
			return -1;
		}
		first = 0;
		lua_pop(e->L, 1);
	}
	return buf_add(e->b, "}", 1);
}

static int enc_table(struct enc *e, int idx)
{
	const void *p = lua_topointer(e->L, idx);
	lua_Integer n = 0;
	int marked = 0, rc;
	for (int i = 0; i < e->depth; i++)
		if (e->seen[i] == p)
			return -1;
	if (e->depth >= LUAJSON_MAX_DEPTH || !lua_checkstack(e->L, 6))
		return -1;
	e->seen[e->depth++] = p;
	marked = luajson_is_marked_array(e->L, idx);
	if (marked)
		rc = enc_array(e, idx, (lua_Integer)lua_rawlen(e->L, idx));
	else if (luajson_is_sequence(e->L, idx, &n))
		rc = enc_array(e, idx, n);
	else
		rc = enc_object(e, idx);
	e->depth--;
	return rc;
}

static int enc_value(struct enc *e, int idx)
{
	switch (lua_type(e->L, idx)) {
	case LUA_TNIL:
		return buf_add(e->b, "null", 4);
	case LUA_TBOOLEAN:
		return lua_toboolean(e->L, idx) ? buf_add(e->b, "true", 4) : buf_add(e->b, "false", 5);
	case LUA_TNUMBER:
		return enc_number(e, idx);
	case LUA_TSTRING: {
		size_t n;
		const char *s = lua_tolstring(e->L, idx, &n);
		return enc_string(e, s, n);
	}
	case LUA_TTABLE:
		return enc_table(e, idx);
	case LUA_TLIGHTUSERDATA:
		return lua_touserdata(e->L, idx) == NULL ? buf_add(e->b, "null", 4) : -1;
	default:
		return -1;
	}
}

int luajson_encode(lua_State *L, int idx, struct buf *out)
{
	struct enc e = { .L = L, .b = out, .depth = 0 };
	int top = lua_gettop(L);
	size_t start = out->len;
	int rc = enc_value(&e, lua_absindex(L, idx));
	lua_settop(L, top);
	if (rc < 0) {
		out->len = start;
		if (out->p)
			out->p[start] = '\0';
		return -1;
	}
	return 0;
}
