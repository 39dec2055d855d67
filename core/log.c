/*
 * log.c: see log.h. Each line is formatted into a stack buffer and written
 * with a single fputs, so stdio's stream lock keeps lines from interleaving.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "log.h"
#include "scrub.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static atomic_int log_level = LOG_LEVEL_INFO;
static _Atomic(const struct scrub *) log_scrub;

void log_set_scrub(const struct scrub *s)
{
	atomic_store(&log_scrub, s);
}

static const char *const level_names[] = { "debug", "info", "warn", "error" };

void log_set_level(int level)
{
	if (level < LOG_LEVEL_DEBUG)
		level = LOG_LEVEL_DEBUG;
	if (level > LOG_LEVEL_ERROR)
		level = LOG_LEVEL_ERROR;
	atomic_store(&log_level, level);
}

int log_get_level(void)
{
	return atomic_load(&log_level);
}

int log_level_parse(const char *s)
{
	if (!s)
		return -1;
	for (int i = 0; i < 4; i++)
		if (strcmp(s, level_names[i]) == 0)
			return i;
	if (strcmp(s, "warning") == 0)
		return LOG_LEVEL_WARN;
	return -1;
}

int log_enabled(int level)
{
	return level >= atomic_load(&log_level);
}

static void log_vwrite(int level, const char *fmt, va_list ap)
{
	char line[LOG_LINE_MAX + 64];
	struct timespec ts;
	struct tm tm;
	size_t n;
	int r;

	if (level < LOG_LEVEL_DEBUG || level > LOG_LEVEL_ERROR)
		level = LOG_LEVEL_ERROR;
	if (!log_enabled(level))
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
	r = snprintf(line + n, sizeof line - n, ".%03ldZ level=%s ",
		     ts.tv_nsec / 1000000L, level_names[level]);
	if (r < 0)
		return;
	n += (size_t)r;
	va_list full;
	va_copy(full, ap);
	r = vsnprintf(line + n, LOG_LINE_MAX + 1, fmt, ap);
	if (r < 0) {
		va_end(full);
		return;
	}
	{
		size_t m = (size_t)r > LOG_LINE_MAX ? LOG_LINE_MAX : (size_t)r;
		const struct scrub *sc = atomic_load(&log_scrub);
		char *whole = NULL;
		if (sc && scrub_count(sc) && (size_t)r > LOG_LINE_MAX &&
		    (whole = malloc((size_t)r + 1)) != NULL) {
			/* Scrubbed before the cut, so no secret is cut in two with
			 * its head left in the line. */
			vsnprintf(whole, (size_t)r + 1, fmt, full);
			char *t = scrub_dup(sc, whole, (size_t)r, NULL);
			const char *src = t ? t : whole;
			m = strlen(src) > LOG_LINE_MAX ? LOG_LINE_MAX : strlen(src);
			memcpy(line + n, src, m);
			line[n + m] = '\0';
			free(t);
			free(whole);
		} else if (sc && scrub_found(sc, line + n, m)) {
			scrub_buf(sc, line + n, LOG_LINE_MAX + 1);
			m = strlen(line + n);
		}
		va_end(full);
		for (size_t i = n; i < n + m; i++)
			if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
				line[i] = ' ';
		n += m;
	}
	line[n++] = '\n';
	line[n] = '\0';
	fputs(line, stderr);
}

void log_msg(int level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vwrite(level, fmt, ap);
	va_end(ap);
}

#define LOG_FN(fname, lvl)                      \
	void fname(const char *fmt, ...)        \
	{                                       \
		va_list ap;                     \
		va_start(ap, fmt);              \
		log_vwrite(lvl, fmt, ap);       \
		va_end(ap);                     \
	}

LOG_FN(log_debug, LOG_LEVEL_DEBUG)
LOG_FN(log_info, LOG_LEVEL_INFO)
LOG_FN(log_warn, LOG_LEVEL_WARN)
LOG_FN(log_error, LOG_LEVEL_ERROR)
