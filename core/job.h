/*
 * job.h: the job record and its unified JSON shape.
 */
#ifndef GENRELAY_JOB_H
#define GENRELAY_JOB_H

#include <jansson.h>
#include <stdint.h>

enum job_status {
	JOB_QUEUED = 0,
	JOB_PROCESSING,
	JOB_SUCCEEDED,
	JOB_FAILED,
	JOB_CANCELED,
};

/* Every string is owned by the struct (freed by job_clear); NULL = absent. */
struct job {
	char id[48];
	char *customer;
	char *model_id;      /* what the customer asked for */
	char *targets;       /* JSON array of "provider:model" */
	int target_idx;
	char *provider;      /* current target's provider */
	char *model;         /* current target's provider-side model */
	enum job_status status;
	char *request_id;
	char *track_id;
	char *input;         /* JSON object text */
	char *webhook_url;
	char *hook;
	char *output;        /* JSON text or NULL */
	char *error_code;
	char *error_message;
	char *data;          /* JSON object text: what scripts asked to keep */
	int attempt;         /* submit attempts on the current target */
	int polls;
	int64_t created_at;  /* wall ms */
	int64_t updated_at;
	int64_t completed_at;
	int64_t submit_deadline;
	int64_t deadline;
};

const char *job_status_name(enum job_status s);
int job_status_parse(const char *s, enum job_status *out);
int job_terminal(enum job_status s);
void job_clear(struct job *j);
/* Replaces *field with a copy of v (NULL clears). 0 or -1. */
int job_set(char **field, const char *v);

/* Copies src into dst (every string duplicated; dst's old contents are not
 * freed). 0, or -1 out of memory (dst cleared). */
int job_copy(struct job *dst, const struct job *src);

/* The unified job object; caller owns the result. */
json_t *job_to_json(const struct job *j);
/*
 * The `job` table handed to provider scripts ({id, model, model_id, input,
 * track_id?, request_id?, data, attempt}); caller owns. input is j's input
 * already parsed (borrowed, shared with the result), or NULL to parse it.
 */
json_t *job_script_arg(const struct job *j, json_t *input);
/* RFC 3339 UTC with milliseconds as a JSON string; null for 0. Caller owns. */
json_t *job_time_json(int64_t ms);
/* RFC 3339 UTC with milliseconds into out (>= 32 bytes). */
void job_time(int64_t ms, char *out, size_t outlen);

#endif
