/*
 * log.c: see log.h. Each line is formatted straight into the calling
 * thread's output buffer (the timestamp's text up to the second is kept per
 * thread and made again only when the second changes) and written with one
 * fwrite of whole lines, so stdio's stream lock keeps lines from
 * interleaving. A thread that holds its lines (log_hold: the workers' loops)
 * writes them together at log_flush, at the end of each loop iteration.
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

/* The longest line the formatter writes: the message JSON-escaped (at most
 * LOG_LINE_MAX * 2 bytes are kept of it, see json_put's cap), the context
 * fields escaped, the timestamp and the names. */
#define LINE_OUT_MAX (LOG_LINE_MAX * 2 + 6 * LOG_CTX_MAX * 4 + 128)
/* A held thread's buffer: several lines, written when the next line might
 * not fit, at a warning or an error, and at log_flush. */
#define HOLD_MAX (4 * LINE_OUT_MAX)

static _Thread_local struct {
	char *buf;       /* HOLD_MAX bytes while the thread holds its lines, else NULL */
	size_t len;      /* bytes of whole lines in buf */
	time_t sec;      /* the second sec_text shows; -1 none yet */
	char sec_text[24]; /* "YYYY-MM-DDTHH:MM:SS" */
} out = { NULL, 0, -1, "" };

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
	size_t n = v ? strnlen(v, LOG_CTX_MAX - 1) : 0;
	memcpy(dst, v ? v : "", n);
	dst[n] = '\0';
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

/* Appends s[0..len) to out[*n..cap) as far as it fits (one byte is left for
 * the line's end). */
static void put(char *out, size_t *n, size_t cap, const char *s, size_t len)
{
	if (*n + len + 1 > cap)
		len = cap > *n + 1 ? cap - *n - 1 : 0;
	memcpy(out + *n, s, len);
	*n += len;
}

/* Appends the thread's context fields in the chosen format. */
static void put_ctx(char *out, size_t *n, size_t cap, int json)
{
	static const char *const names[] = { "job_id", "customer", "provider", "request_id" };
	static const size_t name_len[] = { 6, 8, 8, 10 };
	const char *vals[] = { ctx.job_id, ctx.customer, ctx.provider, ctx.request_id };
	for (int i = 0; i < 4; i++) {
		if (!vals[i][0])
			continue;
		if (*n + name_len[i] + 5 >= cap)
			return;
		if (json) {
			put(out, n, cap, ",\"", 2);
			put(out, n, cap, names[i], name_len[i]);
			put(out, n, cap, "\":\"", 3);
			json_put(out, n, cap, vals[i], strlen(vals[i]));
			if (*n + 1 < cap)
				out[(*n)++] = '"';
		} else {
			out[(*n)++] = ' ';
			put(out, n, cap, names[i], name_len[i]);
			out[(*n)++] = '=';
			for (const char *p = vals[i]; *p && *n + 1 < cap; p++)
				out[(*n)++] = (unsigned char)*p <= ' ' || *p == 0x7f ? '_' : *p;
		}
	}
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

/* Writes buf[0..len) of whole lines to stderr. */
static void write_out(const char *buf, size_t len)
{
	if (len)
		fwrite(buf, 1, len, stderr);
}

void log_hold(int on)
{
	if (on && !out.buf) {
		out.buf = malloc(HOLD_MAX); /* none: lines are written one by one */
		out.len = 0;
	} else if (!on && out.buf) {
		write_out(out.buf, out.len);
		free(out.buf);
		out.buf = NULL;
		out.len = 0;
	}
}

void log_flush(void)
{
	if (out.buf && out.len) {
		write_out(out.buf, out.len);
		out.len = 0;
	}
}

/* The timestamp "YYYY-MM-DDTHH:MM:SS.mmmZ" (24 bytes) into ts. */
static void timestamp(char ts[24])
{
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	if (now.tv_sec != out.sec) {
		struct tm tm;
		gmtime_r(&now.tv_sec, &tm);
		if (strftime(out.sec_text, sizeof out.sec_text, "%Y-%m-%dT%H:%M:%S", &tm) != 19)
			memcpy(out.sec_text, "0000-00-00T00:00:00", 20);
		out.sec = now.tv_sec;
	}
	long ms = now.tv_nsec / 1000000L;
	memcpy(ts, out.sec_text, 19);
	ts[19] = '.';
	ts[20] = (char)('0' + ms / 100);
	ts[21] = (char)('0' + ms / 10 % 10);
	ts[22] = (char)('0' + ms % 10);
	ts[23] = 'Z';
}

static void log_line(int level, const char *msg, size_t n);

/*
 * Formats and writes one line. The message is formatted once; when a
 * scrubber is set and the message is longer than LOG_LINE_MAX, the whole
 * text must be scrubbed before the cut (so no secret is cut in two with its
 * head left in the line): log_vwrite then answers the message's full length
 * and writes nothing, and the caller formats it again into a buffer of that
 * size (log_whole). Else 0.
 */
static size_t log_vwrite(int level, const char *fmt, va_list ap)
{
	char line[LOG_LINE_MAX + 1];
	if (level < LOG_LEVEL_DEBUG || level > LOG_LEVEL_ERROR)
		level = LOG_LEVEL_ERROR;
	if (!log_enabled(level))
		return 0;
	int r = vsnprintf(line, sizeof line, fmt, ap);
	if (r < 0)
		return 0;
	size_t m = (size_t)r > LOG_LINE_MAX ? LOG_LINE_MAX : (size_t)r;
	atomic_fetch_add(&scrub_readers, 1);
	const struct scrub *sc = atomic_load(&log_scrub);
	if (sc && scrub_count(sc) && (size_t)r > LOG_LINE_MAX) {
		atomic_fetch_sub(&scrub_readers, 1);
		return (size_t)r;
	}
	if (sc && scrub_found(sc, line, m)) {
		scrub_buf(sc, line, LOG_LINE_MAX + 1);
		m = strlen(line);
	}
	atomic_fetch_sub(&scrub_readers, 1);
	log_line(level, line, m);
	return 0;
}

/* The second pass of a long message (see log_vwrite): formatted whole into a
 * buffer of len + 1 bytes, scrubbed, cut and written. */
static void log_whole(int level, size_t len, const char *fmt, va_list ap)
{
	char line[LOG_LINE_MAX + 1];
	char *whole = malloc(len + 1);
	if (!whole)
		return; /* not written unscrubbed */
	vsnprintf(whole, len + 1, fmt, ap);
	if (level < LOG_LEVEL_DEBUG || level > LOG_LEVEL_ERROR)
		level = LOG_LEVEL_ERROR;
	atomic_fetch_add(&scrub_readers, 1);
	const struct scrub *sc = atomic_load(&log_scrub);
	char *t = sc ? scrub_dup(sc, whole, len, NULL) : NULL;
	int lost = !t && sc && scrub_found(sc, whole, len); /* no memory to scrub it */
	atomic_fetch_sub(&scrub_readers, 1);
	if (lost) {
		free(whole);
		return; /* not written unscrubbed */
	}
	const char *src = t ? t : whole;
	size_t m = strlen(src) > LOG_LINE_MAX ? LOG_LINE_MAX : strlen(src);
	memcpy(line, src, m);
	line[m] = '\0';
	free(t);
	free(whole);
	log_line(level, line, m);
}

/* Writes the line of msg[0..n), the scrubbed message (n <= LOG_LINE_MAX;
 * the text form writes its control characters as spaces), into the thread's
 * held lines or at once. */
static void log_line(int level, const char *msg, size_t n)
{
	char stack[LINE_OUT_MAX + 1];
	char *o;
	size_t cap = LINE_OUT_MAX, k = 0;
	if (out.buf) {
		if (HOLD_MAX - out.len < LINE_OUT_MAX + 1)
			log_flush();
		o = out.buf + out.len;
	} else {
		o = stack;
	}
	char ts[24];
	timestamp(ts);
	const char *name = level_names[level];
	size_t name_len = strlen(name);
	if (atomic_load(&log_format) == LOG_FORMAT_JSON) {
		put(o, &k, cap, "{\"ts\":\"", 7);
		put(o, &k, cap, ts, 24);
		put(o, &k, cap, "\",\"level\":\"", 11);
		put(o, &k, cap, name, name_len);
		put(o, &k, cap, "\",\"msg\":\"", 9);
		json_put(o, &k, cap - 8 * LOG_CTX_MAX, msg, n);
		o[k++] = '"';
		put_ctx(o, &k, cap - 4, 1);
		o[k++] = '}';
	} else {
		put(o, &k, cap, ts, 24);
		put(o, &k, cap, " level=", 7);
		put(o, &k, cap, name, name_len);
		o[k++] = ' ';
		for (size_t i = 0; i < n; i++) {
			unsigned char c = (unsigned char)msg[i];
			o[k++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
		}
		put_ctx(o, &k, cap - 4, 0);
	}
	o[k++] = '\n';
	if (out.buf) {
		out.len += k;
		if (level >= LOG_LEVEL_WARN) /* warnings and errors are not held */
			log_flush();
	} else {
		write_out(o, k);
	}
}

void log_msg(int level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	size_t whole = log_vwrite(level, fmt, ap);
	va_end(ap);
	if (whole) {
		va_start(ap, fmt);
		log_whole(level, whole, fmt, ap);
		va_end(ap);
	}
}

#define LOG_FN(fname, lvl)                                      \
	void fname(const char *fmt, ...)                        \
	{                                                       \
		va_list ap;                                     \
		va_start(ap, fmt);                              \
		size_t whole = log_vwrite(lvl, fmt, ap);        \
		va_end(ap);                                     \
		if (whole) {                                    \
			va_start(ap, fmt);                      \
			log_whole(lvl, whole, fmt, ap);         \
			va_end(ap);                             \
		}                                               \
	}

LOG_FN(log_debug, LOG_LEVEL_DEBUG)
LOG_FN(log_info, LOG_LEVEL_INFO)
LOG_FN(log_warn, LOG_LEVEL_WARN)
LOG_FN(log_error, LOG_LEVEL_ERROR)
