/*
 * test_log.c: the logger (core/log.c): one line per message, and every line
 * scrubbed of the configured secrets, a line cut at LOG_LINE_MAX included.
 */
#include "check.h"
#include "log.h"
#include "scrub.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char path[] = "/tmp/genrelay-log-XXXXXX";
static char text[4 * LOG_LINE_MAX];

/* Everything written to stderr since the last call. */
static const char *captured(void)
{
	fflush(stderr);
	FILE *f = fopen(path, "r");
	size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
	text[n] = '\0';
	if (f)
		fclose(f);
	if (!freopen(path, "w", stderr))
		text[0] = '\0';
	return text;
}

int main(void)
{
	int fd = mkstemp(path);
	if (fd < 0 || !freopen(path, "w", stderr))
		return 1;
	close(fd);
	struct scrub *s = scrub_new();
	scrub_add(s, "ZQXJK-secret-0123456789");
	log_set_scrub(s);

	log_info("provider said: Bearer %s\nsecond line", "ZQXJK-secret-0123456789");
	const char *t = captured();
	CHECK(strstr(t, "level=info provider said: Bearer [redacted] second line\n") != NULL);
	CHECK(strstr(t, "ZQXJK") == NULL);

	/* A secret across the cut: its head must not stay in the line. */
	static char big[LOG_LINE_MAX + 64];
	memset(big, 'a', LOG_LINE_MAX - 5);
	big[LOG_LINE_MAX - 5] = '\0';
	log_warn("%s%s tail", big, "ZQXJK-secret-0123456789");
	t = captured();
	CHECK(strstr(t, "ZQXJK") == NULL);
	CHECK(strstr(t, "level=warn aaaa") != NULL);
	CHECK(strlen(t) <= LOG_LINE_MAX + 64);

	/* No scrubber: the text as given. */
	log_set_scrub(NULL);
	log_info("plain %s", "ZQXJK-secret-0123456789");
	t = captured();
	CHECK(strstr(t, "plain ZQXJK-secret-0123456789") != NULL);
	scrub_free(s);
	unlink(path);
	return check_done();
}
