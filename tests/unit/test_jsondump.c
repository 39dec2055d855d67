/*
 * test_jsondump.c: core/jsondump.c against json_dumps itself: the same
 * bytes for every tree (fixed cases and random ones), NULL where jansson
 * gives NULL, and a refusal that leaves the buffer as it was.
 */
#include "check.h"

#include "jsondump.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int same(const json_t *v, size_t flags)
{
	char *want = json_dumps(v, flags), *got = jsondump(v, flags);
	int ok = (!want && !got) || (want && got && strcmp(want, got) == 0);
	if (!ok)
		fprintf(stderr, "    jansson: %s\n    jsondump: %s\n", want ? want : "(null)",
			got ? got : "(null)");
	free(want);
	free(got);
	return ok;
}

/* Both flag sets; and jsondump_add writes the same as the compact dump
 * (own: 1), or refuses and writes nothing (own: 0, jsondump then takes
 * jansson's way). Takes v. */
static void check_own(json_t *v, int own)
{
	CHECK(same(v, JSON_COMPACT));
	CHECK(same(v, JSON_COMPACT | JSON_ENCODE_ANY));
	struct buf b;
	buf_init(&b, 1 << 20);
	buf_adds(&b, "pre");
	char *want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	int rc = jsondump_add(&b, v);
	CHECK_EQ_INT(rc, own ? 0 : -1);
	if (own && want)
		CHECK_STR_EQ(b.p + 3, want);
	if (!own)
		CHECK_STR_EQ(b.p, "pre");
	free(want);
	buf_free(&b);
	json_decref(v);
}

static void check_tree(json_t *v)
{
	check_own(v, 1);
}

static void test_fixed(void)
{
	static const double reals[] = { 0.0, -0.0, 0.1, 0.25, 1.0, -1.5, 1e300, -1e-300, 1e-7,
		1e21, 1e22, 123456789012345678.0, 5e-324, DBL_MAX, DBL_MIN, 3.141592653589793,
		2.5e-5, 100.0, 1e16, 0.30000000000000004 };
	for (size_t i = 0; i < sizeof reals / sizeof reals[0]; i++)
		check_tree(json_pack("{s:f}", "r", reals[i]));
	check_tree(json_pack("[I,I,I,i]", (json_int_t)INT64_MAX, (json_int_t)INT64_MIN, (json_int_t)0, -7));
	check_tree(json_pack("{s:b,s:b,s:n,s:{},s:[]}", "t", 1, "f", 0, "n", "o", "a"));
	check_tree(json_pack("{s:s,s:s,s:s}", "quote\"key", "a\"b\\c\n\t\b\f\x01\x1f/",
			     "utf8", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "", ""));
	check_tree(json_pack("{s:{s:[{s:[s,i,f]}]}}", "output", "images", "url",
			     "https://cdn.example/a.png?x=1&y=2", 1024, 0.5));
	/* Insertion order, kept through a delete and a set again. */
	json_t *o = json_pack("{s:i,s:i,s:i}", "z", 1, "a", 2, "m", 3);
	json_object_del(o, "a");
	json_object_set_new(o, "a", json_integer(4));
	json_object_set_new(o, "z", json_integer(5));
	check_tree(o);
	/* A key and a string holding a NUL (jansson writes their length). */
	o = json_object();
	json_object_setn_new(o, "k\0ey", 4, json_stringn("v\0al", 4));
	check_tree(o);
	/* Scalars at the top: only with JSON_ENCODE_ANY. */
	check_tree(json_string("top"));
	check_tree(json_integer(42));
	check_tree(json_real(2.5));
	check_tree(json_null());
	/* Not UTF-8 (as luajson builds strings unchecked): jansson refuses a
	 * value (NULL), and writes a key up to the bad byte (not JSON); either
	 * way jsondump gives what jansson gives. */
	check_own(json_pack("{s:o}", "bad", json_stringn_nocheck("a\xff", 2)), 0);
	o = json_object();
	json_object_set_new_nocheck(o, "bad\xc3", json_true());
	check_own(o, 0);
	json_t *a = json_array();
	json_array_append_new(a, json_string("ok"));
	json_array_append_new(a, json_stringn_nocheck("\xed\xa0\x80", 3));
	check_own(a, 0);
	/* Deeper than jsondump goes: jansson's own text. */
	json_t *deep = json_array();
	for (int i = 0; i < 600; i++) {
		json_t *up = json_array();
		json_array_append_new(up, deep);
		deep = up;
	}
	check_own(deep, 0);
	CHECK(jsondump(NULL, JSON_COMPACT) == NULL);
}

static unsigned seed = 4242;
static unsigned next(void)
{
	seed = seed * 1103515245u + 12345u;
	return seed >> 16;
}

static json_t *random_value(int depth)
{
	static const char *const strs[] = { "", "a", "image/png", "caf\xc3\xa9", "\"q\"", "\\",
		"line\nbreak", "\x7f", "\t\x02", "\xe2\x80\xa8", "https://x.example/a?b=c" };
	switch (next() % (depth > 4 ? 5 : 7)) {
	case 0: return json_string(strs[next() % (sizeof strs / sizeof strs[0])]);
	case 1: return json_integer((json_int_t)next() * (next() % 2 ? -1 : 1) * (json_int_t)next());
	case 2: {
		double d = (double)next() / (double)(next() + 1) * pow(10, (int)(next() % 40) - 20);
		return json_real(next() % 2 ? -d : d);
	}
	case 3: return next() % 2 ? json_true() : json_false();
	case 4: return json_null();
	case 5: {
		json_t *a = json_array();
		for (unsigned i = next() % 5; i > 0; i--)
			json_array_append_new(a, random_value(depth + 1));
		return a;
	}
	default: {
		json_t *o = json_object();
		for (unsigned i = next() % 5; i > 0; i--) {
			char k[16];
			snprintf(k, sizeof k, "k%u", next() % 8);
			json_object_set_new(o, k, random_value(depth + 1));
		}
		return o;
	}
	}
}

static void test_random(void)
{
	int agree = 1;
	for (int i = 0; i < 3000 && agree; i++) {
		json_t *v = random_value(0);
		agree = same(v, JSON_COMPACT | JSON_ENCODE_ANY) && same(v, JSON_COMPACT);
		json_decref(v);
	}
	CHECK(agree);
}

int main(void)
{
	test_fixed();
	test_random();
	return check_done();
}
