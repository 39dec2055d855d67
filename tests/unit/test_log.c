/*
 * test_log.c: the logger (core/log.c): one line per message, and every line
 * scrubbed of the configured secrets, a line cut at LOG_LINE_MAX included;
 * a scrubber replaced while threads log is freed once log_scrub_idle says
 * so (ASan: never while a thread still uses it).
 */
#include "check.h"
#include "log.h"
#include "scrub.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
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

static atomic_int lines_logged;

static void *log_lines(void *arg)
{
	(void)arg;
	for (int i = 0; i < 3000; i++) {
		log_info("thread line %d with ZQXJK-secret-0123456789", i);
		atomic_fetch_add(&lines_logged, 1);
	}
	return NULL;
}

/* Two threads log while the scrubber is replaced; the old one is freed as
 * soon as the log says no call uses it. */
static void test_replace_while_logging(void)
{
	struct scrub *old = scrub_new(), *next = scrub_new();
	scrub_add(old, "ZQXJK-secret-0123456789");
	scrub_add(next, "ZQXJK-secret-0123456789");
	log_set_scrub(old);
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, log_lines, NULL);
	/* Replaced while both log (bounded wait: they log 6000 lines). */
	while (atomic_load(&lines_logged) < 200)
		sched_yield();
	log_set_scrub(next);
	int freed = 0;
	for (long i = 0; i < 1000000 && !freed; i++) {
		if (log_scrub_idle()) {
			scrub_free(old);
			freed = 1;
		}
	}
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	CHECK(log_scrub_idle());
	if (!freed)
		scrub_free(old);
	const char *t = captured();
	CHECK(strstr(t, "with [redacted]\n") != NULL); /* the first lines (text[] holds a few) */
	CHECK(strstr(t, "ZQXJK") == NULL);
	log_set_scrub(NULL);
	scrub_free(next);
}

/* A thread that holds its lines writes them at log_flush, in order; a
 * warning is written at once with the lines before it; log_hold(0) writes
 * the rest. Timestamps and context are as on lines written at once. */
static void test_hold(void)
{
	captured();
	log_hold(1);
	log_ctx_job("job_h", "acme", "fal");
	log_info("held one");
	log_info("held two");
	const char *t = captured();
	CHECK(strstr(t, "held") == NULL);
	log_flush();
	t = captured();
	const char *a = strstr(t, "level=info held one job_id=job_h customer=acme provider=fal\n");
	const char *b = strstr(t, "level=info held two job_id=job_h");
	CHECK(a != NULL && b != NULL && a < b);
	CHECK(strlen(t) > 24 && t[4] == '-' && t[10] == 'T' && t[19] == '.' && t[23] == 'Z');
	log_flush(); /* nothing held: writes nothing */
	CHECK(captured()[0] == '\0');
	log_info("before the warning");
	log_warn("the warning");
	t = captured();
	a = strstr(t, "before the warning");
	b = strstr(t, "level=warn the warning");
	CHECK(a != NULL && b != NULL && a < b);
	/* More than the buffer holds: every line written, in order, none cut. */
	for (int i = 0; i < 200; i++)
		log_info("line %03d %0*d", i, 100, 0);
	log_info("last held");
	t = captured(); /* the first ~30 KB, written when the buffer filled */
	CHECK(strncmp(strstr(t, "level=info line 000 ") ? strstr(t, "level=info line 000 ") : "", "level=info line 000 0", 21) == 0);
	CHECK(strstr(t, "last held") == NULL);
	log_hold(0);
	t = captured();
	CHECK(strstr(t, "last held job_id=job_h") != NULL);
	log_info("not held");
	CHECK(strstr(captured(), "not held") != NULL);
	log_ctx_clear();
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

	/* The thread's context goes on each line, text and JSON. */
	log_set_scrub(s);
	log_ctx_job("job_abc", "acme", "fal");
	log_ctx_request("req_1");
	log_info("step done");
	t = captured();
	CHECK(strstr(t, "level=info step done job_id=job_abc customer=acme provider=fal request_id=req_1\n") != NULL);
	CHECK(log_format_parse("json") == LOG_FORMAT_JSON && log_format_parse("text") == LOG_FORMAT_TEXT);
	CHECK(log_format_parse("xml") == -1);
	log_set_format(LOG_FORMAT_JSON);
	log_warn("quote \" backslash \\ tab\t secret %s", "ZQXJK-secret-0123456789");
	t = captured();
	CHECK(strncmp(t, "{\"ts\":\"", 7) == 0);
	CHECK(strstr(t, "\"level\":\"warn\",\"msg\":\"quote \\\" backslash \\\\ tab\\u0009 secret [redacted]\","
			"\"job_id\":\"job_abc\",\"customer\":\"acme\",\"provider\":\"fal\",\"request_id\":\"req_1\"}\n") != NULL);
	CHECK(strstr(t, "ZQXJK") == NULL);
	/* Cleared: no context fields at all. */
	log_ctx_clear();
	log_info("bare");
	t = captured();
	CHECK(strstr(t, "\"msg\":\"bare\"}\n") != NULL);
	CHECK(strstr(t, "job_id") == NULL);
	/* A cut line is still one JSON object. */
	log_info("%s", big);
	t = captured();
	CHECK(t[0] == '{' && strlen(t) > 2 && t[strlen(t) - 2] == '}' && strchr(t, '\n') == t + strlen(t) - 1);
	log_set_format(LOG_FORMAT_TEXT);
	log_set_scrub(NULL);
	scrub_free(s);
	captured();
	test_hold();
	test_replace_while_logging();
	unlink(path);
	return check_done();
}
