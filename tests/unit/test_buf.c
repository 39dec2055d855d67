/*
 * test_buf.c: core/buf.c. The limit, and buf_add_json_strn against jansson:
 * the same bytes as json_dumps for every string jansson takes (quotes,
 * every control byte, DEL, multi-byte UTF-8), and a refusal (the buffer
 * left as it was) for every one it refuses (invalid UTF-8).
 */
#include "check.h"

#include "buf.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* json_dumps of the string s[0..n), or NULL when jansson refuses it. */
static char *jansson_text(const char *s, size_t n)
{
	json_t *v = json_stringn(s, n);
	char *t = v ? json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
	json_decref(v);
	return t;
}

/* 1 when jansson takes the string s[0..n). */
static int jansson_takes(const char *s, size_t n)
{
	char *t = jansson_text(s, n);
	free(t);
	return t != NULL;
}

/* buf_add_json_strn of s[0..n) after a prefix writes what json_dumps does,
 * or both refuse it (and the prefix is all that stays). */
static void same_as_jansson(const char *s, size_t n)
{
	struct buf b;
	buf_init(&b, 1 << 16);
	buf_adds(&b, "x:");
	char *want = jansson_text(s, n);
	int rc = buf_add_json_strn(&b, s, n);
	if (want) {
		CHECK_EQ_INT(rc, 0);
		CHECK_STR_EQ(b.p + 2, want);
	} else {
		CHECK_EQ_INT(rc, -1);
		CHECK_EQ_INT(b.len, 2);
		CHECK_STR_EQ(b.p, "x:");
	}
	free(want);
	buf_free(&b);
}

static void test_limit(void)
{
	struct buf b;
	buf_init(&b, 8);
	CHECK_EQ_INT(buf_adds(&b, "12345678"), 0);
	CHECK_EQ_INT(buf_add(&b, "9", 1), -1);
	CHECK_EQ_INT(b.len, 8);
	buf_reset(&b);
	/* An escaped string past the limit: refused whole. */
	CHECK_EQ_INT(buf_adds(&b, "ab"), 0);
	CHECK_EQ_INT(buf_add_json_strn(&b, "\"\"\"", 3), -1);
	CHECK_STR_EQ(b.p, "ab");
	CHECK_EQ_INT(buf_add_json_strn(&b, "abcd", 4), 0);
	CHECK_STR_EQ(b.p, "ab\"abcd\"");
	buf_free(&b);
}

static void test_json_strn_escapes(void)
{
	struct buf b;
	buf_init(&b, 1024);
	CHECK_EQ_INT(buf_add_json_strn(&b, "a\"b\\c/d\b\f\n\r\t\x01\x1b\x1f\x7f", 16), 0);
	CHECK_STR_EQ(b.p, "\"a\\\"b\\\\c/d\\b\\f\\n\\r\\t\\u0001\\u001B\\u001F\x7f\"");
	buf_reset(&b);
	CHECK_EQ_INT(buf_add_json_strn(&b, "nul\0in", 6), 0); /* a length, not a C string */
	CHECK_STR_EQ(b.p, "\"nul\\u0000in\"");
	buf_reset(&b);
	CHECK_EQ_INT(buf_add_json_utf8(&b, NULL), 0);
	CHECK_EQ_INT(buf_add_json_utf8(&b, ""), 0);
	CHECK_STR_EQ(b.p, "null\"\"");
	buf_free(&b);

	/* Every byte below 0x80 alone, between two letters. */
	for (int c = 0; c < 0x80; c++) {
		char s[3] = { 'a', (char)c, 'z' };
		same_as_jansson(s, 3);
	}
	static const char *const valid[] = {
		"plain ascii",
		"caf\xc3\xa9",                 /* U+00E9 */
		"\xe2\x82\xac 5",              /* U+20AC */
		"\xe2\x80\xa8 \xe2\x80\xa9",   /* U+2028, U+2029: left as they are */
		"\xef\xbb\xbf bom",            /* U+FEFF */
		"\xf0\x9f\x98\x80 emoji",      /* U+1F600 */
		"\xf4\x8f\xbf\xbf",            /* U+10FFFF, the last */
		"\xed\x9f\xbf",                /* U+D7FF, below the surrogates */
		"\"quoted\" \\ and \xc3\xa9\n",
	};
	for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++) {
		CHECK(jansson_takes(valid[i], strlen(valid[i])));
		same_as_jansson(valid[i], strlen(valid[i]));
	}
}

static void test_json_strn_invalid_utf8(void)
{
	static const char *const invalid[] = {
		"\x80",                 /* a lone continuation byte */
		"ab\xbf",
		"\xc0\x80",             /* overlong NUL */
		"\xc1\xbf",             /* overlong */
		"\xe0\x80\xaf",         /* overlong '/' */
		"\xf0\x80\x80\xaf",     /* overlong, 4 bytes */
		"\xed\xa0\x80",         /* U+D800, a surrogate */
		"\xed\xbf\xbf",         /* U+DFFF */
		"\xf4\x90\x80\x80",     /* past U+10FFFF */
		"\xf5\x80\x80\x80",
		"\xff",
		"\xc3",                 /* cut short */
		"caf\xc3",
		"\xe2\x82",
		"\xf0\x9f\x98",
		"\xc3(",                /* a continuation that is not one */
		"\xe2(\xac",
		"ok \xe9t\xe9 latin-1",
	};
	for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
		CHECK(!jansson_takes(invalid[i], strlen(invalid[i])));
		same_as_jansson(invalid[i], strlen(invalid[i]));
	}
	/* Refused even when the bad byte comes after escapes already written. */
	struct buf b;
	buf_init(&b, 1024);
	buf_adds(&b, "{");
	CHECK_EQ_INT(buf_add_json_utf8(&b, "\"\n\t\x01 then \xc3\x28"), -1);
	CHECK_STR_EQ(b.p, "{");
	CHECK_EQ_INT(b.len, 1);
	buf_free(&b);
}

int main(void)
{
	test_limit();
	test_json_strn_escapes();
	test_json_strn_invalid_utf8();
	return check_done();
}
