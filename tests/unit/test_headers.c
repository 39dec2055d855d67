/*
 * test_headers.c: the rules for request headers a script sets
 * (fetch_header_field_check, fetch_header_name_matches in core/fetch.c), as
 * the delivery path applies them to a hook's headers: RFC 9110 tokens only,
 * no whitespace around names, no control characters in values, and the
 * transport's and the signature's names refused in every spelling.
 *
 * Counts go to $GENRELAY_RELIABILITY_DIR/hook_headers_unit.json.
 */
#include "fetch.h"
#include "check.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int refused, accepted;

static int check(const char *name, const char *value, size_t vlen, char *err, size_t errlen)
{
	return fetch_header_field_check(name, value, vlen, err, errlen);
}

static void expect_refused(const char *name, const char *value, size_t vlen, const char *why)
{
	char err[400] = "";
	int rc = check(name, value, vlen, err, sizeof err);
	if (!check_result_(rc == -1, __FILE__, __LINE__, "header refused"))
		fprintf(stderr, "    name: '%s'\n", name);
	if (!check_result_(strstr(err, why) != NULL, __FILE__, __LINE__, "reason"))
		fprintf(stderr, "    name: '%s' err: %s want: %s\n", name, err, why);
	/* The reason names the header and never quotes the value. */
	CHECK(strncmp(err, "header '", 8) == 0);
	if (value && vlen > 3)
		CHECK(strstr(err, value) == NULL);
	refused++;
}

static void expect_ok(const char *name, const char *value)
{
	char err[400] = "";
	int rc = check(name, value, strlen(value), err, sizeof err);
	if (!check_result_(rc == 0, __FILE__, __LINE__, "header accepted"))
		fprintf(stderr, "    name: '%s' err: %s\n", name, err);
	accepted++;
}

/* Every case and '-'/'_' spelling of name (2^letters, at most 4096 distinct). */
static void every_spelling_refused(const char *name, const char *why)
{
	size_t n = strlen(name);
	char v[64];
	unsigned letters = 0;
	for (size_t i = 0; i < n; i++)
		if (isalpha((unsigned char)name[i]) || name[i] == '-')
			letters++;
	unsigned long combos = letters > 12 ? 4096 : 1ul << letters;
	for (unsigned long m = 0; m < combos; m++) {
		unsigned k = 0; /* bit k % 12 of m: distinct m, distinct spelling */
		for (size_t i = 0; i < n; i++) {
			char c = name[i];
			if (isalpha((unsigned char)c) || c == '-') {
				int flip = (int)((m >> (k++ % 12)) & 1);
				if (c == '-')
					c = flip ? '_' : '-';
				else
					c = flip ? (char)toupper((unsigned char)c) : (char)tolower((unsigned char)c);
			}
			v[i] = c;
		}
		v[n] = '\0';
		expect_refused(v, "x", 1, why);
	}
}

static void test_names(void)
{
	/* Transport and framing headers, every spelling. */
	static const char *const transport[] = { "Host", "Content-Length", "Transfer-Encoding",
		"Connection", "Keep-Alive", "Proxy-Connection", "TE", "Trailer", "Upgrade", "Expect" };
	for (size_t i = 0; i < sizeof transport / sizeof transport[0]; i++)
		every_spelling_refused(transport[i], "is set by the transport");

	/* Tokens only. */
	expect_refused("", "x", 1, "empty name");
	expect_refused(" X-A", "x", 1, "whitespace before or after");
	expect_refused("X-A ", "x", 1, "whitespace before or after");
	expect_refused("\tX-A", "x", 1, "whitespace before or after");
	expect_refused("X-A\t", "x", 1, "whitespace before or after");
	expect_refused(" Host", "x", 1, "whitespace");
	expect_refused("Host ", "x", 1, "whitespace");
	expect_refused("Content-Length\r\n", "x", 1, "whitespace");
	expect_refused("X-A\r\nHost", "x", 1, "not an RFC 9110 token");
	expect_refused("X A", "x", 1, "not an RFC 9110 token");
	expect_refused("X:A", "x", 1, "not an RFC 9110 token");
	expect_refused("Host:", "x", 1, "not an RFC 9110 token");
	expect_refused("X-A\x7f", "x", 1, "not an RFC 9110 token");
	expect_refused("X-\xc3\xa9", "x", 1, "not an RFC 9110 token");
	for (const char *sep = "()<>@,;\\\"/[]?={}"; *sep; sep++) {
		char nm[8];
		snprintf(nm, sizeof nm, "X%cA", *sep);
		expect_refused(nm, "x", 1, "not an RFC 9110 token");
	}
	char longname[300];
	memset(longname, 'a', 257);
	longname[257] = '\0';
	expect_refused(longname, "x", 1, "longer than 256");

	/* Every tchar is fine in a name, and so are ordinary names. */
	expect_ok("!#$%&'*+-.^_`|~09AZaz", "x");
	expect_ok("X-Webhook-Source", "artificial-studio");
	expect_ok("Content-Type", "text/plain; charset=utf-8");
	expect_ok("Authorization", "Bearer abc");
	expect_ok("X-Host", "h");
	expect_ok("Hosts", "h");
	expect_ok("X-Content-Length", "1");
	expect_ok("Webhook", "plain word, no dash");
	expect_ok("X-Webhook-Id", "ok: not the webhook- prefix");
}

static void test_values(void)
{
	expect_ok("X-A", "");
	expect_ok("X-A", "tab\tinside");
	expect_ok("X-A", "caf\xc3\xa9 (obs-text)");
	expect_refused("X-A", "a\r\nHost: evil", 13, "control character");
	expect_refused("X-A", "a\nb", 3, "control character");
	expect_refused("X-A", "a\rb", 3, "control character");
	expect_refused("X-A", "a\0b", 3, "control character");
	expect_refused("X-A", "a\x01" "b", 3, "control character");
	expect_refused("X-A", "a\x7f" "b", 3, "control character");
	expect_refused("X-A", NULL, 0, "must have a string value");
	static char big[4100];
	memset(big, 'v', 4050);
	expect_refused("X-A", big, 4050, "longer than 4000");
}

/* The delivery path refuses webhook-* with fetch_header_name_matches. */
static void test_matches(void)
{
	static const char *const forged[] = { "webhook-id", "Webhook-Id", "WEBHOOK-SIGNATURE",
		"webhook_signature", "Webhook_Timestamp", "webhook-", "WebHook-anything", "webhook_" };
	for (size_t i = 0; i < sizeof forged / sizeof forged[0]; i++) {
		CHECK_EQ_INT(fetch_header_name_matches(forged[i], "webhook-*"), 1);
		refused++;
	}
	every_spelling_refused("Host", "transport");
	CHECK_EQ_INT(fetch_header_name_matches("webhook", "webhook-*"), 0);
	CHECK_EQ_INT(fetch_header_name_matches("x-webhook-id", "webhook-*"), 0);
	CHECK_EQ_INT(fetch_header_name_matches("webhooks-id", "webhook-*"), 0);
	CHECK_EQ_INT(fetch_header_name_matches("Content_Type", "content-type"), 1);
	CHECK_EQ_INT(fetch_header_name_matches("content-typo", "content-type"), 0);
	CHECK_EQ_INT(fetch_header_name_matches("content-type-x", "content-type"), 0);
	CHECK_EQ_INT(fetch_header_name_matches("content-typ", "content-type"), 0);
	/* The reason is safe to record: unprintable bytes escaped. */
	char err[400];
	CHECK(fetch_header_field_check("X\r\nY", "v", 1, err, sizeof err) < 0);
	CHECK(strchr(err, '\r') == NULL && strchr(err, '\n') == NULL);
	CHECK(strstr(err, "X\\x0d\\x0aY") != NULL);
}

static void write_figures(void)
{
	const char *dir = getenv("GENRELAY_RELIABILITY_DIR");
	char path[1024];
	if (!dir || !*dir)
		return;
	mkdir(dir, 0755);
	snprintf(path, sizeof path, "%s/hook_headers_unit.json", dir);
	FILE *f = fopen(path, "w");
	if (!f)
		return;
	fprintf(f, "{\n  \"name\": \"hook_headers_unit\",\n  \"mode\": \"test\",\n  \"refused\": %d,\n"
		"  \"accepted\": %d,\n  \"checks_passed\": %d,\n  \"checks_failed\": %d\n}\n",
		refused, accepted, check_passed_, check_failed_);
	fclose(f);
}

int main(void)
{
	test_names();
	test_values();
	test_matches();
	printf("hook headers: %d refused spellings, %d accepted\n", refused, accepted);
	write_figures();
	return check_done();
}
