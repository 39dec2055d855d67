#include "job.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const names[] = {
	"queued", "processing", "succeeded", "failed", "canceled",
};

const char *job_status_name(enum job_status s)
{
	return (unsigned)s < 5 ? names[s] : "unknown";
}

int job_status_parse(const char *s, enum job_status *out)
{
	for (int i = 0; i < 5; i++) {
		if (strcmp(s, names[i]) == 0) {
			*out = (enum job_status)i;
			return 0;
		}
	}
	return -1;
}

int job_terminal(enum job_status s)
{
	return s == JOB_SUCCEEDED || s == JOB_FAILED || s == JOB_CANCELED;
}

void job_clear(struct job *j)
{
	char **f[] = { &j->customer, &j->model_id, &j->targets, &j->provider,
		       &j->model, &j->request_id, &j->track_id, &j->input,
		       &j->webhook_url, &j->hook, &j->output, &j->error_code,
		       &j->error_message, &j->data };
	for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
		free(*f[i]);
		*f[i] = NULL;
	}
}

int job_set(char **field, const char *v)
{
	char *c = NULL;
	if (v && !(c = strdup(v)))
		return -1;
	free(*field);
	*field = c;
	return 0;
}

int job_copy(struct job *dst, const struct job *src)
{
	*dst = *src;
	char **f[] = { &dst->customer, &dst->model_id, &dst->targets, &dst->provider,
		       &dst->model, &dst->request_id, &dst->track_id, &dst->input,
		       &dst->webhook_url, &dst->hook, &dst->output, &dst->error_code,
		       &dst->error_message, &dst->data };
	for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
		*f[i] = NULL;
	char *const from[] = { src->customer, src->model_id, src->targets, src->provider,
			       src->model, src->request_id, src->track_id, src->input,
			       src->webhook_url, src->hook, src->output, src->error_code,
			       src->error_message, src->data };
	for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
		if (from[i] && !(*f[i] = strdup(from[i]))) {
			job_clear(dst);
			return -1;
		}
	}
	return 0;
}

/* n as exactly w decimal digits at p (n < 10^w). */
static void digits(char *p, unsigned n, int w)
{
	while (w-- > 0) {
		p[w] = (char)('0' + n % 10);
		n /= 10;
	}
}

/*
 * Times from 1970 to 9999 are formatted by hand: gmtime_r, strftime and
 * snprintf cost about 3,000 instructions, and every job object (each API
 * answer, each webhook's event) formats two times. The date is the proleptic
 * Gregorian one gmtime_r gives (days to civil date: H. Hinnant's algorithm).
 * Anything else (negative, later, a short out) takes the libc path.
 */
void job_time(int64_t ms, char *out, size_t outlen)
{
	if (ms >= 0 && ms < 253402300800000LL && outlen >= 25) {
		int64_t secs = ms / 1000;
		unsigned sod = (unsigned)(secs % 86400);
		unsigned doe, yoe, doy, mp, day, mon;
		int64_t days = secs / 86400 + 719468, era = days / 146097, y;
		doe = (unsigned)(days - era * 146097);
		yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
		doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
		mp = (5 * doy + 2) / 153;
		day = doy - (153 * mp + 2) / 5 + 1;
		mon = mp < 10 ? mp + 3 : mp - 9;
		y = (int64_t)yoe + era * 400 + (mon <= 2);
		digits(out, (unsigned)y, 4);
		out[4] = '-';
		digits(out + 5, mon, 2);
		out[7] = '-';
		digits(out + 8, day, 2);
		out[10] = 'T';
		digits(out + 11, sod / 3600, 2);
		out[13] = ':';
		digits(out + 14, sod / 60 % 60, 2);
		out[16] = ':';
		digits(out + 17, sod % 60, 2);
		out[19] = '.';
		digits(out + 20, (unsigned)(ms % 1000), 3);
		out[23] = 'Z';
		out[24] = '\0';
		return;
	}
	time_t s = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&s, &tm);
	char base[32];
	strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, outlen, "%s.%03dZ", base, (int)(ms % 1000));
}

static json_t *str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

json_t *job_time_json(int64_t ms)
{
	char t[40];
	if (!ms)
		return json_null();
	job_time(ms, t, sizeof t);
	return json_string(t);
}

json_t *job_to_json(const struct job *j)
{
	json_t *o = json_object();
	json_object_set_new(o, "job_id", json_string(j->id));
	json_object_set_new(o, "status", json_string(job_status_name(j->status)));
	json_object_set_new(o, "model_id", str_or_null(j->model_id));
	json_object_set_new(o, "provider", str_or_null(j->provider));
	json_object_set_new(o, "request_id", str_or_null(j->request_id));
	json_object_set_new(o, "track_id", str_or_null(j->track_id));
	json_t *out = j->output ? json_loads(j->output, 0, NULL) : NULL;
	json_object_set_new(o, "output", out ? out : json_null());
	if (j->error_code) {
		json_t *e = json_object();
		json_object_set_new(e, "code", json_string(j->error_code));
		json_object_set_new(e, "message", str_or_null(j->error_message));
		json_object_set_new(o, "error", e);
	} else {
		json_object_set_new(o, "error", json_null());
	}
	json_object_set_new(o, "created_at", job_time_json(j->created_at));
	json_object_set_new(o, "completed_at", job_time_json(j->completed_at));
	/* cost: what the job cost (data.cost, kept by the engine), or null. */
	json_t *cost = NULL;
	if (j->data && strstr(j->data, "\"cost\"")) {
		json_t *d = json_loads(j->data, 0, NULL);
		cost = json_incref(json_object_get(d, "cost"));
		json_decref(d);
	}
	json_object_set_new(o, "cost", cost && json_is_object(cost) ? cost : json_null());
	if (cost && !json_is_object(cost))
		json_decref(cost);
	return o;
}

json_t *job_script_arg(const struct job *j, json_t *input)
{
	json_t *o = json_object();
	json_object_set_new(o, "id", json_string(j->id));
	json_object_set_new(o, "model", json_string(j->model ? j->model : ""));
	json_object_set_new(o, "model_id", json_string(j->model_id ? j->model_id : ""));
	if (input)
		json_object_set(o, "input", input);
	else
		input = j->input ? json_loads(j->input, 0, NULL) : NULL;
	if (!json_object_get(o, "input"))
		json_object_set_new(o, "input", input ? input : json_object());
	if (j->track_id)
		json_object_set_new(o, "track_id", json_string(j->track_id));
	if (j->request_id)
		json_object_set_new(o, "request_id", json_string(j->request_id));
	json_t *data = j->data && strcmp(j->data, "{}") != 0 ? json_loads(j->data, 0, NULL) : NULL;
	json_object_set_new(o, "data", data ? data : json_object());
	json_object_set_new(o, "attempt", json_integer(j->attempt + 1));
	return o;
}
