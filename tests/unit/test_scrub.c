/*
 * test_scrub.c: secret scrubbing and Lua literal redaction (core/scrub.c).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "scrub.h"
#include "check.h"

#include <stdlib.h>
#include <string.h>

static void test_empty(void)
{
	struct scrub *s = scrub_new();
	CHECK(s != NULL);
	CHECK_EQ_INT(scrub_count(s), 0);
	CHECK(!scrub_found(s, "anything", 8));
	CHECK(scrub_dup(s, "anything", 8, NULL) == NULL);
	CHECK_EQ_INT(scrub_add(s, NULL), 0);
	CHECK_EQ_INT(scrub_add(s, ""), 0);
	CHECK_EQ_INT(scrub_count(s), 0);
	/* A NULL scrubber finds nothing. */
	CHECK(!scrub_found(NULL, "x", 1));
	scrub_free(s);
	scrub_free(NULL);
}

static void test_replace(void)
{
	struct scrub *s = scrub_new();
	CHECK_EQ_INT(scrub_add(s, "sk-live-0123456789"), 0);
	CHECK_EQ_INT(scrub_add(s, "sk-live-0123456789"), 0); /* kept once */
	CHECK_EQ_INT(scrub_count(s), 1);
	const char *in = "provider said: Authorization: Bearer sk-live-0123456789 is invalid";
	CHECK(scrub_found(s, in, strlen(in)));
	size_t n = 0;
	char *out = scrub_dup(s, in, strlen(in), &n);
	CHECK_STR_EQ(out, "provider said: Authorization: Bearer [redacted] is invalid");
	CHECK_EQ_INT(n, strlen("provider said: Authorization: Bearer [redacted] is invalid"));
	free(out);
	/* Every occurrence, at the ends too, and "Key <key>" forms. */
	in = "sk-live-0123456789Key sk-live-0123456789sk-live-0123456789";
	out = scrub_dup(s, in, strlen(in), NULL);
	CHECK_STR_EQ(out, "[redacted]Key [redacted][redacted]");
	free(out);
	/* Not found: NULL, the caller keeps its text. */
	CHECK(scrub_dup(s, "sk-live-012345678", 17, NULL) == NULL);
	scrub_free(s);
}

static void test_overlap_longest_first(void)
{
	struct scrub *s = scrub_new();
	scrub_add(s, "abcdefgh");
	scrub_add(s, "abcdefgh-and-more");
	const char *in = "x abcdefgh-and-more y abcdefgh z";
	char *out = scrub_dup(s, in, strlen(in), NULL);
	/* The longer secret is replaced whole, no tail of it left. */
	CHECK_STR_EQ(out, "x [redacted] y [redacted] z");
	free(out);
	scrub_free(s);
}

static void test_short_secret(void)
{
	struct scrub *s = scrub_new();
	/* Short secrets are still scrubbed; scrub_add says they are short. */
	CHECK_EQ_INT(scrub_add(s, "k3y"), 1);
	CHECK_EQ_INT(scrub_add(s, "k3y"), 1);
	CHECK_EQ_INT(scrub_add(s, "long-enough"), 0);
	CHECK_EQ_INT(scrub_short_count(s), 1);
	char buf[64] = "the k3y leaked";
	CHECK_EQ_INT(scrub_buf(s, buf, sizeof buf), 1);
	CHECK_STR_EQ(buf, "the [redacted] leaked");
	scrub_free(s);
}

static void test_buf_truncates(void)
{
	struct scrub *s = scrub_new();
	scrub_add(s, "abcdefgh");
	char buf[12] = "abcdefgh xy";
	/* "[redacted] xy" is 13 bytes: cut to 11, never past the buffer. */
	scrub_buf(s, buf, sizeof buf);
	CHECK_STR_EQ(buf, "[redacted] ");
	scrub_free(s);
}

static void test_str(void)
{
	struct scrub *s = scrub_new();
	scrub_add(s, "topsecret-value");
	char *m = strdup("error: topsecret-value");
	CHECK_EQ_INT(scrub_str(s, &m), 0);
	CHECK_STR_EQ(m, "error: [redacted]");
	free(m);
	m = NULL;
	CHECK_EQ_INT(scrub_str(s, &m), 0);
	CHECK(m == NULL);
	scrub_free(s);
}

static void test_json_escaped(void)
{
	struct scrub *s = scrub_new();
	scrub_add(s, "pa\"ss\\word-123");
	CHECK_EQ_INT(scrub_count(s), 2);
	/* As it appears inside JSON text. */
	const char *in = "{\"message\":\"bad pa\\\"ss\\\\word-123\"}";
	char *out = scrub_dup(s, in, strlen(in), NULL);
	CHECK_STR_EQ(out, "{\"message\":\"bad [redacted]\"}");
	free(out);
	scrub_free(s);
}

static void test_secret_keys(void)
{
	CHECK(scrub_key_is_secret("key"));
	CHECK(scrub_key_is_secret("api_KEY"));
	CHECK(scrub_key_is_secret("webhook_secret"));
	CHECK(scrub_key_is_secret("Token"));
	CHECK(scrub_key_is_secret("password"));
	CHECK(!scrub_key_is_secret("base_url"));
	CHECK(!scrub_key_is_secret("jwks_url"));
	CHECK(!scrub_key_is_secret(""));
}

static int has_literal(const char *block, const char *want)
{
	for (const char *l = block; l && *l; l += strlen(l) + 1)
		if (strcmp(l, want) == 0)
			return 1;
	return 0;
}

static void test_lua_literals(void)
{
	const char *src =
		"-- a comment with 'not a literal here'\n"
		"local a = \"double-quoted\"\n"
		"local b = 'single \\'quoted\\''\n"
		"--[[ long comment \"nope-nope\" ]]\n"
		"local c = [==[long ]] bracket]==]\n"
		"local d = \"esc\\x41\\65\\u{42}\\n\"\n"
		"local e = \"x\"\n";
	char *lits = scrub_lua_literals(src, strlen(src));
	CHECK(lits != NULL);
	CHECK(has_literal(lits, "double-quoted"));
	CHECK(has_literal(lits, "single 'quoted'"));
	CHECK(has_literal(lits, "long ]] bracket"));
	CHECK(has_literal(lits, "escAAB\n"));
	CHECK(!has_literal(lits, "not a literal here"));
	CHECK(!has_literal(lits, "nope-nope"));
	CHECK(!has_literal(lits, "x")); /* shorter than 2 bytes */
	free(lits);
	CHECK(scrub_lua_literals("local x = 1", 11) == NULL);
	/* Unfinished strings and brackets end at the line or the source. */
	const char *unf = "x = \"sk-unfinished\ny = [[open";
	lits = scrub_lua_literals(unf, strlen(unf));
	CHECK(has_literal(lits, "sk-unfinished"));
	CHECK(has_literal(lits, "open"));
	free(lits);
}

static void test_lua_message(void)
{
	char m[256];
	/* A syntax error's string token. */
	snprintf(m, sizeof m, "providers/x.lua:3: unfinished string near '\"sk-live-abcdef'");
	scrub_lua_message(m, sizeof m, NULL);
	CHECK_STR_EQ(m, "providers/x.lua:3: unfinished string near a string literal");
	snprintf(m, sizeof m, "x.lua:1: '=' expected near '[==[sk-long]==]'");
	scrub_lua_message(m, sizeof m, NULL);
	CHECK_STR_EQ(m, "x.lua:1: '=' expected near a string literal");
	/* A token that is not a string stays. */
	snprintf(m, sizeof m, "x.lua:1: unexpected symbol near '['");
	scrub_lua_message(m, sizeof m, NULL);
	CHECK_STR_EQ(m, "x.lua:1: unexpected symbol near '['");
	/* A string constant in a runtime error. */
	snprintf(m, sizeof m,
		 "x.lua:2: attempt to perform arithmetic on a string value (constant 'sk-live-abcdef')");
	scrub_lua_message(m, sizeof m, NULL);
	CHECK_STR_EQ(m, "x.lua:2: attempt to perform arithmetic on a string value (constant [redacted])");
	/* A quote holding one of the source's literals; identifiers stay. */
	const char *src = "local t = {} ; return t[\"Bearer sk-live-abcdef\"].x + t.images.y";
	char *lits = scrub_lua_literals(src, strlen(src));
	snprintf(m, sizeof m, "x.lua:1: attempt to index a nil value (field 'Bearer sk-live-abcdef')");
	scrub_lua_message(m, sizeof m, lits);
	CHECK_STR_EQ(m, "x.lua:1: attempt to index a nil value (field '[redacted]')");
	snprintf(m, sizeof m, "x.lua:1: attempt to index a nil value (field 'images')");
	scrub_lua_message(m, sizeof m, lits);
	CHECK_STR_EQ(m, "x.lua:1: attempt to index a nil value (field 'images')");
	/* A message cut inside the quote: the head of the literal goes too. */
	snprintf(m, sizeof m, "x.lua:1: attempt to index a nil value (field 'Bearer sk-li");
	scrub_lua_message(m, sizeof m, lits);
	CHECK_STR_EQ(m, "x.lua:1: attempt to index a nil value (field '[redacted]')");
	snprintf(m, sizeof m, "x.lua:2: attempt to call a string value (constant 'sk-li");
	scrub_lua_message(m, sizeof m, lits);
	CHECK_STR_EQ(m, "x.lua:2: attempt to call a string value (constant [redacted])");
	/* Only Lua's variable info: other quotes stay, even of a literal. */
	snprintf(m, sizeof m, "x.lua:1: require: module 'Bearer sk-live-abcdef' not allowed");
	scrub_lua_message(m, sizeof m, lits);
	CHECK_STR_EQ(m, "x.lua:1: require: module 'Bearer sk-live-abcdef' not allowed");
	free(lits);
	/* Growth is cut at the buffer. */
	char small[24] = "a.lua:1: near '\"\"'";
	scrub_lua_message(small, sizeof small, NULL);
	CHECK(strlen(small) < sizeof small);
	CHECK(strstr(small, "\"\"") == NULL);
}

/* Messages as this build's Lua really gives them. */
#include <lauxlib.h>
#include <lualib.h>

static void lua_error_of(const char *src, char *out, size_t cap)
{
	lua_State *L = luaL_newstate();
	luaL_openlibs(L);
	int rc = luaL_loadbufferx(L, src, strlen(src), "=x.lua", "t");
	if (rc == LUA_OK)
		rc = lua_pcall(L, 0, 0, 0);
	snprintf(out, cap, "%s", rc == LUA_OK ? "(no error)" : lua_tostring(L, -1));
	lua_close(L);
}

static void test_real_lua_messages(void)
{
	static const char *const srcs[] = {
		"local key = \"sk-live-REALSECRET\nreturn key",     /* unfinished string */
		"print('a' 'sk-live-REALSECRET')",                  /* syntax error near the string */
		"print('a' [==[sk-live-REALSECRET]==])",            /* near a long string */
		"local t = {} ; local y = t[\"sk-live-REALSECRET\"].z", /* index a nil field */
		"local t = {} ; t['sk-live-REALSECRET']()",         /* call a nil field */
		"(\"sk-live-REALSECRET\")()",                        /* call a constant */
	};
	int leaked_raw = 0;
	for (size_t i = 0; i < sizeof srcs / sizeof srcs[0]; i++) {
		char m[512];
		lua_error_of(srcs[i], m, sizeof m);
		CHECK(strstr(m, "no error") == NULL);
		if (strstr(m, "REALSECRET"))
			leaked_raw++;
		char *lits = scrub_lua_literals(srcs[i], strlen(srcs[i]));
		scrub_lua_message(m, sizeof m, lits);
		free(lits);
		if (strstr(m, "REALSECRET"))
			fprintf(stderr, "    leaked: %s\n", m);
		CHECK(strstr(m, "REALSECRET") == NULL);
		CHECK(strncmp(m, "x.lua:", 6) == 0);
	}
	/* The cases are real: Lua itself quotes the literal in most. */
	CHECK_EQ_INT(leaked_raw, 6);
}

/* Random messages built from the pieces the redaction looks for, in
 * buffers of every small size: it never writes past cap, always leaves a
 * NUL-terminated string, and never leaves a literal in variable info. */
static void test_lua_message_random(void)
{
	static const char *const pieces[] = { " near '", "(constant '", "(field '", "')", "'",
		"\"", "[[", "[=", "sk-live-abcdef", "x", " ", "near", "(constant ", ")" };
	const char *src = "local a = 'sk-live-abcdef'";
	char *lits = scrub_lua_literals(src, strlen(src));
	unsigned seed = 12345;
	int ok = 1;
	for (int round = 0; round < 20000; round++) {
		char msg[160] = "";
		int n = 1 + (int)((seed = seed * 1103515245u + 12345u) >> 16) % 12;
		for (int i = 0; i < n; i++) {
			seed = seed * 1103515245u + 12345u;
			strncat(msg, pieces[(seed >> 16) % (sizeof pieces / sizeof pieces[0])],
				sizeof msg - strlen(msg) - 1);
		}
		size_t cap = 1 + (size_t)(round % 64);
		char *buf = malloc(cap);
		size_t ml = strlen(msg) < cap - 1 ? strlen(msg) : cap - 1;
		memcpy(buf, msg, ml);
		buf[ml] = '\0';
		scrub_lua_message(buf, cap, lits);
		if (strlen(buf) >= cap)
			ok = 0;
		if (strstr(buf, "(field 'sk-live-abcdef')"))
			ok = 0;
		free(buf);
	}
	free(lits);
	CHECK(ok);
}

/* Many needles (the pass over byte pairs): the same answer as looking for
 * each with memmem, on random texts over a small alphabet (so needles and
 * their heads turn up often), with a needle planted at every offset (both
 * parities: the pass reads every second pair when all needles have 3 bytes
 * or more) and at the very end. minlen: the shortest needle (2 takes the
 * pass over every pair, 3 and more the one over every second pair). */
static void found_many_random(size_t minlen)
{
	struct scrub *s = scrub_new();
	char needles[12][16];
	unsigned seed = 12345;
	for (int i = 0; i < 12; i++) {
		size_t n = minlen + (size_t)(i % 5);
		for (size_t k = 0; k < n; k++) {
			seed = seed * 1103515245u + 12345u;
			needles[i][k] = (char)('a' + (seed >> 16) % 4);
		}
		needles[i][n] = '\0';
		scrub_add(s, needles[i]);
	}
	CHECK(scrub_count(s) >= 5);
	int agree = 1, hits = 0;
	char text[200];
	for (int round = 0; round < 6000 && agree; round++) {
		size_t len = (size_t)(round % 120);
		for (size_t k = 0; k < len; k++) {
			seed = seed * 1103515245u + 12345u;
			text[k] = (char)('a' + (seed >> 16) % 4);
		}
		const char *nd = needles[round % 12];
		size_t nl = strlen(nd);
		if (round % 7 == 0 && len >= 16) /* a needle at the very end */
			memcpy(text + len - nl, nd, nl);
		else if (round % 3 == 0 && len >= nl) /* or anywhere */
			memcpy(text + (size_t)(round / 3) % (len - nl + 1), nd, nl);
		int want = 0;
		for (int i = 0; i < 12; i++)
			if (memmem(text, len, needles[i], strlen(needles[i])))
				want = 1;
		hits += want;
		agree = scrub_found(s, text, len) == want;
		if (!agree)
			fprintf(stderr, "    minlen %zu, round %d: %.*s\n", minlen, round, (int)len, text);
	}
	CHECK(agree);
	CHECK(hits > 100);
	scrub_free(s);
}

/*
 * As above with needles that hold few of the text's byte pairs, so the pass
 * skips (scrub_found moves on m - 1 bytes where no needle's pair stands): a
 * needle put anywhere is still found, and a shorter one added after longer
 * ones (the shortest shrinks) too.
 */
static void test_found_skip_random(void)
{
	unsigned seed = 777;
#define NEXT() (seed = seed * 1103515245u + 12345u, seed >> 16)
	for (int set = 0; set < 40; set++) {
		struct scrub *s = scrub_new();
		char needles[10][40];
		int nn = 6 + set % 5;
		for (int i = 0; i < nn; i++) {
			/* Longest first, then one short one last on odd sets. */
			size_t n = (set & 1) && i == nn - 1 ? 3 + NEXT() % 4 : 10 + NEXT() % 25;
			for (size_t k = 0; k < n; k++)
				needles[i][k] = (char)(33 + NEXT() % 94);
			needles[i][n] = '\0';
			scrub_add(s, needles[i]);
		}
		int agree = 1, hits = 0;
		char text[400];
		for (int round = 0; round < 400 && agree; round++) {
			size_t len = NEXT() % 300;
			for (size_t k = 0; k < len; k++)
				text[k] = (char)(32 + NEXT() % 95);
			if (round % 3 == 0) { /* a needle somewhere, whole or cut by the end */
				const char *nd = needles[NEXT() % (unsigned)nn];
				size_t nl = strlen(nd), at = len ? NEXT() % len : 0;
				for (size_t k = 0; k < nl && at + k < len; k++)
					text[at + k] = nd[k];
			}
			int want = 0;
			for (int i = 0; i < nn; i++)
				if (memmem(text, len, needles[i], strlen(needles[i])))
					want = 1;
			hits += want;
			agree = scrub_found(s, text, len) == want;
			if (want) { /* and scrub_dup takes them all out */
				size_t ol;
				char *out = scrub_dup(s, text, len, &ol);
				CHECK(out != NULL);
				for (int i = 0; out && i < nn; i++)
					CHECK(!memmem(out, ol, needles[i], strlen(needles[i])));
				free(out);
			}
		}
		CHECK(agree);
		CHECK(hits > 60);
		scrub_free(s);
	}
#undef NEXT
}

static void test_found_many_random(void)
{
	found_many_random(8);
	found_many_random(3);
	found_many_random(2);
}

int main(void)
{
	test_empty();
	test_replace();
	test_overlap_longest_first();
	test_short_secret();
	test_buf_truncates();
	test_str();
	test_json_escaped();
	test_secret_keys();
	test_lua_literals();
	test_lua_message();
	test_real_lua_messages();
	test_lua_message_random();
	test_found_many_random();
	test_found_skip_random();
	return check_done();
}
