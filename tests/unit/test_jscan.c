/* tests for core/jscan.c: the strict scanner of request bodies */
#include "check.h"
#include "jscan.h"

#include <stdlib.h>
#include <string.h>

static int scan(const char *text, size_t *n, struct jscan_member *m, size_t max)
{
	char err[128];
	size_t pos;
	return jscan_object(text, strlen(text), m, max, n, err, sizeof err, &pos);
}

static int ok(const char *text)
{
	struct jscan_member m[16];
	size_t n;
	return scan(text, &n, m, 16) == 0;
}

int main(void)
{
	struct jscan_member m[8];
	size_t n = 0;

	/* members as spans, in order */
	CHECK(scan(" {\"input\" : {\"a\":[1,2.5e3,-0,true,false,null,\"x\"]}, \"sync\":true,\"t\":\"q\\\"\"} ",
		   &n, m, 8) == 0);
	CHECK_EQ_INT((int)n, 3);
	CHECK_STR_EQ(m[0].key, "input");
	CHECK_EQ_INT(m[0].type, JSCAN_OBJECT);
	CHECK(m[0].len == strlen("{\"a\":[1,2.5e3,-0,true,false,null,\"x\"]}"));
	CHECK(strncmp(m[0].val, "{\"a\"", 4) == 0);
	CHECK_EQ_INT(m[1].type, JSCAN_TRUE);
	CHECK_EQ_INT(m[2].type, JSCAN_STRING);
	char out[64];
	CHECK_EQ_INT(jscan_string(m[2].val, m[2].len, out, sizeof out), 2);
	CHECK_STR_EQ(out, "q\"");
	CHECK(ok("{}"));
	CHECK(ok("{\"a\":{\"b\":{\"c\":[[[]]]}}}"));
	CHECK(ok("{\"u\":\"\\u00e9\\ud83d\\ude00 caf\xc3\xa9 \xf0\x9f\x98\x80\"}"));

	/* escapes decode to UTF-8, surrogate pairs included */
	const char *esc = "\"a\\n\\t\\/\\u00e9\\ud83d\\ude00\"";
	CHECK_EQ_INT(jscan_string(esc, strlen(esc), out, sizeof out), 10);
	CHECK(memcmp(out, "a\n\t/\xc3\xa9\xf0\x9f\x98\x80", 10) == 0);
	CHECK_EQ_INT(jscan_string(esc, strlen(esc), out, 4), -1); /* does not fit */

	/* refused */
	const char *bad[] = {
		"", "   ", "[]", "\"x\"", "1", "{", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{,}",
		"{\"a\":1}x", "{\"a\":1}{}", "{a:1}", "{'a':1}", "{\"a\":NaN}", "{\"a\":Infinity}",
		"{\"a\":-Infinity}", "{\"a\":1e999}", "{\"a\":-1e999}", "{\"a\":99999999999999999999}",
		"{\"a\":01}", "{\"a\":1.}", "{\"a\":.5}", "{\"a\":+1}", "{\"a\":0x10}", "{\"a\":1e}",
		"{\"a\":tru}", "{\"a\":nul}", "{\"a\":\"\x01\"}", "{\"a\":\"\\x\"}", "{\"a\":\"\\u12\"}",
		"{\"a\":\"\\u0000\"}", "{\"a\":\"\\ud800\"}", "{\"a\":\"\\udc00\"}", "{\"a\":\"\xff\"}",
		"{\"a\":\"\xc0\xaf\"}", "{\"a\":\"\xed\xa0\x80\"}", "{\"a\":\"\xf4\x90\x80\x80\"}",
		"{\"a\":\"\xe2\x82\"}", "{\"a\":\"unterminated}", "{\"a\":[1,2}", "{\"a\":[1,]}",
		"{\"a\":1,\"a\":2}",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		if (ok(bad[i])) {
			fprintf(stderr, "accepted: %s\n", bad[i]);
			CHECK(0);
		}
	}
	/* nesting is bounded; just inside the bound is fine */
	size_t deep = JSCAN_MAX_DEPTH + 5;
	char *d = malloc(deep * 2 + 16);
	size_t o = 0;
	o += (size_t)sprintf(d, "{\"a\":");
	for (size_t i = 0; i < deep; i++)
		d[o++] = '[';
	for (size_t i = 0; i < deep; i++)
		d[o++] = ']';
	d[o++] = '}';
	d[o] = '\0';
	CHECK(!ok(d));
	o = (size_t)sprintf(d, "{\"a\":");
	for (size_t i = 0; i < JSCAN_MAX_DEPTH - 2; i++)
		d[o++] = '[';
	for (size_t i = 0; i < JSCAN_MAX_DEPTH - 2; i++)
		d[o++] = ']';
	d[o++] = '}';
	d[o] = '\0';
	CHECK(ok(d));
	free(d);

	/* the API's input limit: a member JSON_MAX_DEPTH deep (with a scalar at
	 * the bottom) is accepted, one level more is refused */
	for (int extra = 0; extra <= 1; extra++) {
		size_t levels = JSON_MAX_DEPTH + (size_t)extra;
		char *t = malloc(levels * 6 + 32);
		size_t k = (size_t)sprintf(t, "{\"input\":");
		for (size_t i = 0; i < levels; i++)
			k += (size_t)sprintf(t + k, i % 2 ? "[" : "{\"a\":");
		t[k++] = '1';
		for (size_t i = levels; i-- > 0;)
			t[k++] = i % 2 ? ']' : '}';
		t[k++] = '}';
		t[k] = '\0';
		CHECK(ok(t) == !extra);
		free(t);
	}

	/* more members than room is an error, not a truncation */
	CHECK(scan("{\"a\":1,\"b\":2,\"c\":3}", &n, m, 2) < 0);
	/* a long key is flagged, never a match for a short one */
	char longkey[200];
	memset(longkey, 'k', sizeof longkey);
	sprintf(longkey, "{\"input%0100d\":1}", 0);
	CHECK(scan(longkey, &n, m, 8) == 0);
	CHECK(m[0].key_too_long);
	return check_done();
}
