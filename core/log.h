/*
 * log.h: a tiny thread-safe logger.
 *
 * One line per message on stderr (held lines: log_hold), text (the default):
 *   2026-11-22T19:00:00.123Z level=info <message> [job_id=.. customer=.. provider=.. request_id=..]
 * or JSON (log_set_format), one object per line:
 *   {"ts":"2026-11-22T19:00:00.123Z","level":"info","msg":"...","job_id":"..",...}
 * The bracketed/extra fields are the calling thread's log context (below),
 * each present only when set.
 * Control characters in the message are replaced by spaces so that one call
 * always gives one line. Messages above LOG_LINE_MAX bytes are truncated.
 * Never pass secrets in a message; configured ones are scrubbed anyway
 * (log_set_scrub).
 */
#ifndef GENRELAY_LOG_H
#define GENRELAY_LOG_H

#define LOG_LINE_MAX 4096

enum log_level {
	LOG_LEVEL_DEBUG = 0,
	LOG_LEVEL_INFO = 1,
	LOG_LEVEL_WARN = 2,
	LOG_LEVEL_ERROR = 3,
};

#if defined(__GNUC__)
#define LOG_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define LOG_PRINTF(a, b)
#endif

struct scrub;
/*
 * Every line is scrubbed of s's secrets (scrub.h) before it is written. s is
 * borrowed and must stay valid and unchanged while anything logs with it;
 * it may be replaced while other threads log (a reload): the one replaced
 * may be freed once log_scrub_idle() has answered 1 after the replacement.
 * NULL: no scrubbing.
 */
void log_set_scrub(const struct scrub *s);
/* 1 when no log call is using a scrubber now: every scrubber replaced
 * before this call is no longer in use. Thread-safe. */
int log_scrub_idle(void);
/* Messages below level are dropped. Default LOG_LEVEL_INFO. Thread-safe. */
void log_set_level(int level);
int log_get_level(void);
/* "debug", "info", "warn" (or "warning"), "error" -> level; -1 otherwise. */
int log_level_parse(const char *s);
/* 1 when a message at level would be written (skip expensive formatting). */
int log_enabled(int level);

enum log_format { LOG_FORMAT_TEXT = 0, LOG_FORMAT_JSON = 1 };
/* Default LOG_FORMAT_TEXT. Set before other threads start. */
void log_set_format(int format);
/* "text" or "json" -> format; -1 otherwise. */
int log_format_parse(const char *s);

/*
 * The calling thread's log context: added to each line it logs until
 * changed or cleared. Values are copied (cut at LOG_CTX_MAX - 1 bytes);
 * NULL or "" clears that field. The event loop clears it after each event
 * it dispatches, so a context never leaks into an unrelated line.
 */
#define LOG_CTX_MAX 64
void log_ctx_job(const char *job_id, const char *customer, const char *provider);
void log_ctx_request(const char *request_id);
void log_ctx_clear(void);

/*
 * Lines held per thread. log_hold(1): the calling thread's lines are kept
 * in its own buffer and written together (one write) at log_flush, when the
 * buffer is full, or with the first warning or error (which is written at
 * once, after the lines before it). The workers hold their lines and flush
 * at the end of every loop iteration, so a process killed at any moment
 * loses at most the info and debug lines of the iteration it was in.
 * log_hold(0) writes what is held and stops holding. Other threads (and a
 * thread whose buffer could not be allocated) write each line at once.
 */
void log_hold(int on);
void log_flush(void);

void log_msg(int level, const char *fmt, ...) LOG_PRINTF(2, 3);
void log_debug(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_info(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_warn(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_error(const char *fmt, ...) LOG_PRINTF(1, 2);

#endif
