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
static atomic_int log_format = LOG_FORMAT_TEXT;

static _Thread_local struct {
	char job_id[LOG_CTX_MAX], customer[LOG_CTX_MAX], provider[LOG_CTX_MAX],
		request_id[LOG_CTX_MAX];
} ctx;

void log_set_format(int format)
{
	atomic_store(&log_format, format == LOG_FORMAT_JSON ? LOG_FORMAT_JSON : LOG_FORMAT_TEXT);
}

int log_format_parse(const char *s)
{
	if (s && strcmp(s, "text") == 0)
		return LOG_FORMAT_TEXT;
	if (s && strcmp(s, "json") == 0)
		return LOG_FORMAT_JSON;
	return -1;
}

static void ctx_put(char *dst, const char *v)
{
	snprintf(dst, LOG_CTX_MAX, "%s", v ? v : "");
}

void log_ctx_job(const char *job_id, const char *customer, const char *provider)
{
	ctx_put(ctx.job_id, job_id);
	ctx_put(ctx.customer, customer);
	ctx_put(ctx.provider, provider);
}

void log_ctx_request(const char *request_id)
{
	ctx_put(ctx.request_id, request_id);
}

void log_ctx_clear(void)
{
	ctx.job_id[0] = ctx.customer[0] = ctx.provider[0] = ctx.request_id[0] = '\0';
}

/* Appends v to out[*n..cap) as the inside of a JSON string. */
static void json_put(char *out, size_t *n, size_t cap, const char *v, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	for (size_t i = 0; i < len && *n + 7 < cap; i++) {
		unsigned char c = (unsigned char)v[i];
		if (c == '"' || c == '\\') {
			out[(*n)++] = '\\';
			out[(*n)++] = (char)c;
		} else if (c < 0x20 || c == 0x7f) {
			out[(*n)++] = '\\';
			out[(*n)++] = 'u';
			out[(*n)++] = '0';
			out[(*n)++] = '0';
			out[(*n)++] = hex[c >> 4];
			out[(*n)++] = hex[c & 15];
		} else {
			out[(*n)++] = (char)c;
		}
	}
}

/* Appends the thread's context fields in the chosen format. */
static void put_ctx(char *out, size_t *n, size_t cap, int json)
{
	const char *names[] = { "job_id", "customer", "provider", "request_id" };
	const char *vals[] = { ctx.job_id, ctx.customer, ctx.provider, ctx.request_id };
	for (int i = 0; i < 4; i++) {
		if (!vals[i][0])
			continue;
		int r = snprintf(out + *n, cap - *n, json ? ",\"%s\":\"" : " %s=", names[i]);
		if (r < 0 || (size_t)r >= cap - *n)
			return;
		*n += (size_t)r;
		if (json) {
			json_put(out, n, cap, vals[i], strlen(vals[i]));
			if (*n + 1 < cap)
				out[(*n)++] = '"';
		} else {
			for (const char *p = vals[i]; *p && *n + 1 < cap; p++)
				out[(*n)++] = (unsigned char)*p <= ' ' || *p == 0x7f ? '_' : *p;
		}
	}
	out[*n] = '\0';
}
static _Atomic(const struct scrub *) log_scrub;
/* Log calls between loading log_scrub and their last use of it. A caller
 * that sees 0 after replacing log_scrub knows nobody uses the old one: a
 * reader that loaded it had raised the count first (sequentially consistent
 * order), and lowers it only when done. */
static atomic_long scrub_readers;

void log_set_scrub(const struct scrub *s)
{
	atomic_store(&log_scrub, s);
}

int log_scrub_idle(void)
{
	return atomic_load(&scrub_readers) == 0;
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
	char ts_s[40];
	struct timespec ts;
	struct tm tm;
	size_t n = 0;
	int r;

	if (level < LOG_LEVEL_DEBUG || level > LOG_LEVEL_ERROR)
		level = LOG_LEVEL_ERROR;
	if (!log_enabled(level))
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t tn = strftime(ts_s, sizeof ts_s, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ts_s + tn, sizeof ts_s - tn, ".%03ldZ", ts.tv_nsec / 1000000L);
	va_list full;
	va_copy(full, ap);
	r = vsnprintf(line, LOG_LINE_MAX + 1, fmt, ap);
	if (r < 0) {
		va_end(full);
		return;
	}
	{
		size_t m = (size_t)r > LOG_LINE_MAX ? LOG_LINE_MAX : (size_t)r;
		atomic_fetch_add(&scrub_readers, 1);
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
			memcpy(line, src, m);
			line[m] = '\0';
			free(t);
			free(whole);
		} else if (sc && scrub_found(sc, line, m)) {
			scrub_buf(sc, line, LOG_LINE_MAX + 1);
			m = strlen(line);
		}
		atomic_fetch_sub(&scrub_readers, 1);
		va_end(full);
		n = m;
	}
	/* line[0..n) is the scrubbed message; the output goes to out. */
	char out[LOG_LINE_MAX * 2 + 6 * LOG_CTX_MAX * 4 + 128];
	size_t o = 0;
	if (atomic_load(&log_format) == LOG_FORMAT_JSON) {
		r = snprintf(out, sizeof out, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"", ts_s,
			     level_names[level]);
		o = (size_t)(r < 0 ? 0 : r);
		json_put(out, &o, sizeof out - 8 * LOG_CTX_MAX, line, n);
		out[o++] = '"';
		put_ctx(out, &o, sizeof out - 4, 1);
		out[o++] = '}';
	} else {
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
				line[i] = ' ';
		r = snprintf(out, sizeof out, "%s level=%s %.*s", ts_s, level_names[level], (int)n,
			     line);
		o = (size_t)(r < 0 ? 0 : r);
		if (o >= sizeof out)
			o = sizeof out - 1;
		put_ctx(out, &o, sizeof out - 4, 0);
	}
	out[o++] = '\n';
	out[o] = '\0';
	fputs(out, stderr);
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
