/*
 * retry.c: backoff policy for submits, polls and webhook deliveries.
 */
#include "retry.h"

#include <string.h>

/* Longest delay any function here returns: about 31 million years. */
#define DELAY_MAX_MS 1000000000000000000LL

/*
 * Removes up to jitter*d from d: the result lies in [d*(1-jitter), d].
 * jitter is clamped to [0,1] and rnd to [0,1]; NaN counts as 0.
 */
static int64_t apply_jitter(int64_t d, double jitter, double rnd)
{
	double cut;
	int64_t c;

	if (!(jitter > 0) || !(rnd > 0) || d <= 0)
		return d;
	if (jitter > 1)
		jitter = 1;
	if (rnd > 1)
		rnd = 1;
	cut = (double)d * jitter * rnd;
	c = cut >= (double)DELAY_MAX_MS ? DELAY_MAX_MS : (int64_t)(cut + 0.5);
	return c > d ? 0 : d - c;
}

/*
 * attempt 0 (the original try) has no delay. Negative or NaN schedule
 * entries count as 0; fractional seconds are kept to the millisecond.
 */
int64_t retry_schedule_delay(const double *schedule, size_t n, unsigned attempt,
			     double jitter, double rnd)
{
	double s;
	int64_t d;

	if (attempt == 0)
		return 0;
	if (schedule == NULL || attempt > n)
		return -1;
	s = schedule[attempt - 1] * 1000.0;
	if (!(s > 0))
		d = 0;
	else if (s >= (double)DELAY_MAX_MS)
		d = DELAY_MAX_MS;
	else
		d = (int64_t)(s + 0.5);
	return apply_jitter(d, jitter, rnd);
}

/*
 * attempt 0 has no delay; base_ms <= 0 gives 0; max_ms <= 0 means no cap
 * beyond DELAY_MAX_MS. Doubling saturates instead of overflowing.
 */
int64_t retry_backoff_delay(int64_t base_ms, int64_t max_ms, unsigned attempt,
			    double jitter, double rnd)
{
	int64_t limit = max_ms > 0 && max_ms < DELAY_MAX_MS ? max_ms : DELAY_MAX_MS;
	int64_t d = base_ms;
	unsigned k;

	if (attempt == 0 || base_ms <= 0)
		return 0;
	for (k = 1; k < attempt && d < limit; k++)
		d = d > limit / 2 ? limit : d * 2;
	if (d > limit)
		d = limit;
	return apply_jitter(d, jitter, rnd);
}

static const char *const month_names[12] = {
	"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	"Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
};

static const char *const day_names[7] = {
	"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun",
};

static const char *const long_day_names[7] = {
	"Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday",
};

/* Reads exactly n digits (n <= 4) at *s and advances past them. */
static int take_digits(const char **s, int n, int *out)
{
	int v = 0, i;

	for (i = 0; i < n; i++) {
		char c = (*s)[i];
		if (c < '0' || c > '9')
			return -1;
		v = v * 10 + (c - '0');
	}
	*s += n;
	*out = v;
	return 0;
}

static int take_lit(const char **s, const char *lit)
{
	size_t n = strlen(lit);

	if (strncmp(*s, lit, n) != 0)
		return -1;
	*s += n;
	return 0;
}

static int take_name(const char **s, const char *const *names, int count)
{
	int i;

	for (i = 0; i < count; i++)
		if (take_lit(s, names[i]) == 0)
			return i;
	return -1;
}

static int take_time(const char **s, int *h, int *m, int *sec)
{
	if (take_digits(s, 2, h) || take_lit(s, ":") || take_digits(s, 2, m) ||
	    take_lit(s, ":") || take_digits(s, 2, sec))
		return -1;
	return 0;
}

static int64_t days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int days_in_month(int y, int m)
{
	static const int days[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

	return m == 2 && leap ? 29 : days[m - 1];
}

/*
 * Parses the three HTTP-date forms RFC 9110 makes recipients accept:
 * IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT", RFC 850 "Sunday, 06-Nov-94
 * 08:49:37 GMT" (two-digit years below 70 are 20xx) and asctime "Sun Nov  6
 * 08:49:37 1994". The day name is not cross-checked. Returns 0 and unix
 * seconds in *t, or -1.
 */
static int parse_http_date(const char *s, int64_t *t)
{
	int y, mon, d, h, mi, sec;
	const char *p = s;

	if (take_name(&p, long_day_names, 7) >= 0) {
		if (take_lit(&p, ", ") || take_digits(&p, 2, &d) || take_lit(&p, "-") ||
		    (mon = take_name(&p, month_names, 12)) < 0 || take_lit(&p, "-") ||
		    take_digits(&p, 2, &y) || take_lit(&p, " ") ||
		    take_time(&p, &h, &mi, &sec) || take_lit(&p, " GMT"))
			return -1;
		y += y < 70 ? 2000 : 1900;
	} else if (take_name(&p, day_names, 7) >= 0 && take_lit(&p, ", ") == 0) {
		if (take_digits(&p, 2, &d) || take_lit(&p, " ") ||
		    (mon = take_name(&p, month_names, 12)) < 0 || take_lit(&p, " ") ||
		    take_digits(&p, 4, &y) || take_lit(&p, " ") ||
		    take_time(&p, &h, &mi, &sec) || take_lit(&p, " GMT"))
			return -1;
	} else {
		p = s;
		if (take_name(&p, day_names, 7) < 0 || take_lit(&p, " ") ||
		    (mon = take_name(&p, month_names, 12)) < 0 || take_lit(&p, " "))
			return -1;
		if (*p == ' ')
			p++;
		if (take_digits(&p, p[0] != '\0' && p[1] == ' ' ? 1 : 2, &d) ||
		    take_lit(&p, " ") ||
		    take_time(&p, &h, &mi, &sec) || take_lit(&p, " ") ||
		    take_digits(&p, 4, &y))
			return -1;
	}
	if (*p != '\0')
		return -1;
	mon += 1;
	if (d < 1 || d > days_in_month(y, mon) || h > 23 || mi > 59 || sec > 60)
		return -1;
	*t = days_from_civil(y, mon, d) * 86400 + h * 3600 + mi * 60 + sec;
	return 0;
}

/*
 * Leading and trailing spaces or tabs are ignored. Delta seconds are plain
 * digits (no sign); a date in the past gives 0. cap_ms <= 0 means no cap
 * beyond DELAY_MAX_MS. Values of 64 bytes or more (after leading
 * whitespace) are refused.
 */
int64_t retry_after_ms(const char *value, int64_t now_s, int64_t cap_ms)
{
	char buf[64];
	const char *p;
	size_t n;
	int64_t limit = cap_ms > 0 && cap_ms < DELAY_MAX_MS ? cap_ms : DELAY_MAX_MS;
	int64_t ms;

	if (value == NULL)
		return -1;
	while (*value == ' ' || *value == '\t')
		value++;
	n = strnlen(value, sizeof buf);
	if (n >= sizeof buf)
		return -1;
	while (n > 0 && (value[n - 1] == ' ' || value[n - 1] == '\t'))
		n--;
	if (n == 0)
		return -1;
	memcpy(buf, value, n);
	buf[n] = '\0';

	if (buf[0] >= '0' && buf[0] <= '9') {
		ms = 0;
		for (p = buf; *p != '\0'; p++) {
			if (*p < '0' || *p > '9')
				return -1;
			if (ms > DELAY_MAX_MS / 10)
				ms = DELAY_MAX_MS;
			else
				ms = ms * 10 + (*p - '0') * 1000;
		}
	} else {
		int64_t t;
		if (parse_http_date(buf, &t) < 0)
			return -1;
		if (t <= now_s)
			ms = 0;
		else if (now_s < t - DELAY_MAX_MS / 1000)
			ms = DELAY_MAX_MS;
		else
			ms = (t - now_s) * 1000;
	}
	return ms > limit ? limit : ms;
}

int retry_status_retryable(long status)
{
	return status == 0 || status == 408 || status == 425 || status == 429 ||
	       (status >= 500 && status <= 599);
}
