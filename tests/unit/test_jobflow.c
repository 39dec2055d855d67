/*
 * test_jobflow.c: the job flow (core/jobflow.c, and the callback's parse
 * path in core/callbacks.c) against a real SQLite store in a temp file and
 * a real script host with a tiny adapter. No network, no HTTP: the workers
 * run with --role api, so the work a change queues (a delivery, a failover's
 * submit) goes back to the store, due, instead of running, once
 * engine_after_commit takes it from the queue.
 *
 * What it checks: a result applied ends the job with its delivery row and
 * "ended" event, and the job_ended hook runs once, after the commit (seen
 * from another connection); failover to the next target; a callback racing
 * a poll (two ends of one job, two workers) leaves one terminal state and
 * one delivery; a malformed result fails the job with SCRIPT_ERROR; cancel;
 * verify/on_callback through callbacks_parse; settings read without a copy;
 * the work an end queues waits for engine_after_commit.
 */
#include "callbacks.h"
#include "config.h"
#include "customers.h"
#include "engine.h"
#include "engine_int.h"
#include "fetch.h"
#include "jobflow.h"
#include "log.h"
#include "script.h"
#include "store.h"
#include "worker.h"
#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[] = "/tmp/genrelay-test-jobflow-XXXXXX";
static char spec[300];
static struct store *observer;  /* another connection: sees only what is committed */
static int ended_calls[2];
static int ended_committed[2];  /* the hook saw the job terminal from the observer */

static const char adapter[] =
	"return {\n"
	"  name = 'testp', models = { '^test/' },\n"
	"  defaults = { base_url = 'http://127.0.0.1:9/testp', poll_after_s = 7 },\n"
	"  submit = function(job, ctx) return { url = ctx.config.base_url .. '/run', body = job.input } end,\n"
	"  on_submitted = function(res, job, ctx) return { state = 'processing', request_id = 'r1' } end,\n"
	"  verify = function(req, ctx, job)\n"
	"    if req.headers['x-sig'] == 'good-' .. job.id then return true end\n"
	"    return false, 'bad signature'\n"
	"  end,\n"
	"  on_callback = function(req, job, ctx)\n"
	"    if req.query.raise then error('cannot read this') end\n"
	"    return req.json\n"
	"  end,\n"
	"  cancel = function(job, ctx) return { method = 'POST', url = ctx.config.base_url .. '/cancel' } end,\n"
	"}\n";

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	CHECK(f != NULL);
	if (!f)
		return;
	fputs(text, f);
	fclose(f);
}

static void on_ended(struct worker *w, const char *job_id)
{
	struct job j;
	ended_calls[w->index]++;
	if (store_job_get(observer, job_id, NULL, &j) == 0) {
		ended_committed[w->index] += job_terminal(j.status);
		job_clear(&j);
	}
}

static int worker_up(struct worker *w, int index, const struct config *cfg)
{
	char err[512];
	memset(w, 0, sizeof *w);
	w->index = index;
	snprintf(w->owner, sizeof w->owner, "test:%d", index);
	w->cfg = cfg;
	w->server_secret = "test-server-secret-0123456789abcdef";
	w->loop = loop_new();
	w->fetch = fetcher_new(w->loop, 4);
	w->customers = customers_new();
	w->store = store_open(spec, 0, err, sizeof err);
	w->scripts = script_host_new(cfg);
	if (!w->loop || !w->fetch || !w->customers || !w->store || !w->scripts) {
		fprintf(stderr, "worker: %s\n", err);
		return -1;
	}
	if (script_host_load(w->scripts, err, sizeof err) < 0) {
		fprintf(stderr, "scripts: %s\n", err);
		return -1;
	}
	w->hooks.job_ended = on_ended;
	return engine_init(w);
}

static void worker_down(struct worker *w)
{
	fetcher_free(w->fetch);
	engine_free(w);
	script_host_free(w->scripts);
	store_close(w->store);
	customers_free(w->customers);
	loop_free(w->loop);
}

static void put_job(struct worker *w, const char *id, const char *model_id, const char *targets)
{
	struct job j;
	int64_t now = loop_wall_ms();
	memset(&j, 0, sizeof j);
	snprintf(j.id, sizeof j.id, "%s", id);
	j.customer = "acme";
	j.model_id = (char *)model_id;
	j.targets = (char *)targets;
	j.provider = "testp";
	j.model = "a";
	j.status = JOB_PROCESSING;
	j.request_id = "r1";
	j.input = "{\"prompt\":\"a lighthouse\"}";
	j.webhook_url = "https://receiver.example/hook";
	j.data = "{}";
	j.created_at = j.updated_at = now;
	j.submit_deadline = now + 300000;
	j.deadline = now + 3600000;
	CHECK_EQ_INT(store_job_insert(w->store, &j), 0);
	int64_t wid;
	CHECK_EQ_INT(store_work_add(w->store, id, WORK_POLL, NULL, now + 60000, NULL, 0, &wid), 0);
}

static enum job_status status_of(const char *id)
{
	struct job j;
	if (store_job_get(observer, id, NULL, &j) != 0)
		return (enum job_status)-1;
	enum job_status s = j.status;
	job_clear(&j);
	return s;
}

/* Number of the job's events of kind, and the last one's detail (caller
 * frees) in *last when not NULL. */
static int events_of(const char *id, const char *kind, json_t **last)
{
	json_t *ev = store_job_events(observer, id), *v;
	size_t i;
	int n = 0;
	if (last)
		*last = NULL;
	json_array_foreach(ev, i, v) {
		if (strcmp(json_string_value(json_object_get(v, "kind")), kind) != 0)
			continue;
		n++;
		if (last) {
			json_decref(*last);
			*last = json_incref(json_object_get(v, "detail"));
		}
	}
	json_decref(ev);
	return n;
}

/* The job's deliveries: their number, and the first one's event name. */
static int deliveries_of(const char *id, char *event, size_t eventlen)
{
	json_t *ds = store_job_deliveries(observer, id);
	int n = (int)json_array_size(ds);
	if (event)
		snprintf(event, eventlen, "%s",
			 n ? json_string_value(json_object_get(json_array_get(ds, 0), "event")) : "");
	json_decref(ds);
	return n;
}

static int end_with(struct worker *w, const char *id, json_t *res, const char *via)
{
	struct jobflow f;
	int rc = jobflow_begin(w, &f, id, NULL);
	CHECK_EQ_INT(rc, 0);
	if (rc != 0)
		return rc;
	jobflow_apply_result(&f.job, res, 0, "testp");
	rc = jobflow_end(&f, via);
	job_clear(&f.job);
	return rc;
}

static void test_result_ends_job(struct worker *w)
{
	put_job(w, "job_ok", "testp:a", "[\"testp:a\"]");
	json_t *res = json_pack("{s:s,s:{s:s,s:[{s:s,s:s}]},s:{s:f,s:s}}", "state", "succeeded",
				"output", "type", "image", "items", "type", "image", "url",
				"https://cdn.example/a.png", "cost", "amount", 0.25, "unit", "usd");
	struct jobflow f;
	CHECK_EQ_INT(jobflow_begin(w, &f, "job_ok", NULL), 0);
	CHECK_EQ_INT(jobflow_apply_result(&f.job, res, 200, "testp"), 1);
	CHECK_EQ_INT(f.job.status, JOB_SUCCEEDED);
	CHECK_EQ_INT(ended_calls[0], 0);
	CHECK_EQ_INT(jobflow_end(&f, "poll"), 0);
	job_clear(&f.job);
	json_decref(res);

	CHECK_EQ_INT(ended_calls[0], 1);
	CHECK_EQ_INT(ended_committed[0], 1); /* the hook ran after the commit */
	CHECK_EQ_INT(status_of("job_ok"), JOB_SUCCEEDED);
	char event[32];
	CHECK_EQ_INT(deliveries_of("job_ok", event, sizeof event), 1);
	CHECK_STR_EQ(event, "job.succeeded");
	json_t *ended;
	CHECK_EQ_INT(events_of("job_ok", "ended", &ended), 1);
	CHECK_STR_EQ(json_string_value(json_object_get(ended, "via")), "poll");
	CHECK_STR_EQ(json_string_value(json_object_get(ended, "status")), "succeeded");
	CHECK(json_string_value(json_object_get(ended, "script_version")) != NULL);
	/* The detail's shape, as json_pack made it: every key in order, null
	 * when unset (the store keeps the text; its order survives the read). */
	char want[256], *got = json_dumps(ended, JSON_COMPACT);
	snprintf(want, sizeof want,
		 "{\"status\":\"succeeded\",\"error\":null,\"provider\":\"testp\","
		 "\"script_version\":\"%s\",\"via\":\"poll\"}",
		 json_string_value(json_object_get(ended, "script_version")));
	CHECK_STR_EQ(got, want);
	free(got);
	json_decref(ended);
	/* Its pending provider work is dropped; its delivery is queued. */
	CHECK_EQ_INT(store_work_count(observer, WORK_POLL), 0);
	CHECK_EQ_INT(store_work_count(observer, WORK_DELIVER), 1);
	/* The adapter's cost is the job's usage. */
	json_t *u = store_usage_totals(observer, "acme", 0, loop_wall_ms() + 1, NULL);
	CHECK_EQ_INT(json_array_size(u), 1);
	CHECK(json_number_value(json_object_get(json_array_get(u, 0), "amount")) == 0.25);
	json_decref(u);
}

static void test_failover(struct worker *w)
{
	int before = ended_calls[0];
	put_job(w, "job_fo", "any", "[\"testp:a\",\"testp:b\"]");
	json_t *fail = json_pack("{s:s,s:{s:s,s:s}}", "state", "failed", "error", "code",
				 "PROVIDER_FAILURE", "message", "the model broke");
	CHECK_EQ_INT(end_with(w, "job_fo", fail, "callback"), 0);
	/* Not an end: the job runs again on its next target. */
	CHECK_EQ_INT(ended_calls[0], before);
	struct job j;
	CHECK_EQ_INT(store_job_get(observer, "job_fo", NULL, &j), 0);
	CHECK_EQ_INT(j.status, JOB_QUEUED);
	CHECK_EQ_INT(j.target_idx, 1);
	CHECK_STR_EQ(j.model, "b");
	CHECK(j.request_id == NULL && j.error_code == NULL);
	job_clear(&j);
	json_t *fo;
	CHECK_EQ_INT(events_of("job_fo", "failover", &fo), 1);
	CHECK_STR_EQ(json_string_value(json_object_get(fo, "from")), "testp:a");
	CHECK_STR_EQ(json_string_value(json_object_get(fo, "to")), "testp:b");
	CHECK_STR_EQ(json_string_value(json_object_get(fo, "code")), "PROVIDER_FAILURE");
	json_decref(fo);
	CHECK_EQ_INT(events_of("job_fo", "ended", NULL), 0);
	CHECK_EQ_INT(deliveries_of("job_fo", NULL, 0), 0);
	CHECK_EQ_INT(store_work_count(observer, WORK_SUBMIT), 1);

	/* The last target's failure ends it. */
	CHECK_EQ_INT(end_with(w, "job_fo", fail, "callback"), 0);
	CHECK_EQ_INT(ended_calls[0], before + 1);
	CHECK_EQ_INT(status_of("job_fo"), JOB_FAILED);
	char event[32];
	CHECK_EQ_INT(deliveries_of("job_fo", event, sizeof event), 1);
	CHECK_STR_EQ(event, "job.failed");
	CHECK_EQ_INT(store_work_count(observer, WORK_SUBMIT), 0);
	json_decref(fail);
	CHECK_EQ_INT(jobflow_has_next_target(&(struct job){ .targets = "[\"x:a\",\"x:b\"]" }, NULL), 1);
	CHECK_EQ_INT(jobflow_has_next_target(&(struct job){ .targets = "[\"x:a\",\"x:b\"]",
							   .target_idx = 1 }, NULL), 0);
}

/* A callback and a poll end the same job on two workers: the poll's answer
 * was taken from a copy loaded before the callback ended the job. */
static void test_callback_races_poll(struct worker *a, struct worker *b)
{
	int a0 = ended_calls[0], b0 = ended_calls[1];
	put_job(a, "job_race", "testp:a", "[\"testp:a\"]");
	struct job stale;
	CHECK_EQ_INT(store_job_get(b->store, "job_race", NULL, &stale), 0);
	CHECK_EQ_INT(stale.status, JOB_PROCESSING);

	/* Worker a: the callback, through the handler's own parse path. */
	struct callbacks_field h[] = { { "X-Sig", "good-job_race" }, { "Content-Type", "application/json" } };
	const char *body = "{\"state\":\"succeeded\",\"output\":{\"type\":\"image\",\"items\":[]}}";
	json_t *req = callbacks_request_arg(h, 2, NULL, 0, body, strlen(body));
	CHECK_STR_EQ(json_string_value(json_object_get(json_object_get(req, "headers"), "x-sig")),
		     "good-job_race");
	json_t *jarg = job_script_arg(&stale, NULL), *res = NULL;
	char err[256];
	CHECK_EQ_INT(callbacks_parse(a->scripts, "testp", req, jarg, NULL, &res, err, sizeof err),
		     CALLBACKS_RESULT);
	CHECK_EQ_INT(end_with(a, "job_race", res, "callback"), 0);
	json_decref(res);
	json_decref(jarg);
	json_decref(req);

	/* Worker b: the poll's failure arrives; the row it re-reads has ended. */
	json_t *fail = json_pack("{s:s,s:{s:s}}", "state", "failed", "error", "message", "late");
	struct jobflow f;
	CHECK_EQ_INT(jobflow_begin(b, &f, "job_race", NULL), 0);
	CHECK_EQ_INT(f.job.status, JOB_SUCCEEDED);
	jobflow_apply_result(&f.job, fail, 0, "testp");
	CHECK_EQ_INT(jobflow_end(&f, "poll"), 1); /* ended already: nothing written */
	job_clear(&f.job);
	json_decref(fail);
	job_clear(&stale);

	CHECK_EQ_INT(status_of("job_race"), JOB_SUCCEEDED);
	CHECK_EQ_INT(deliveries_of("job_race", NULL, 0), 1);
	CHECK_EQ_INT(events_of("job_race", "ended", NULL), 1);
	CHECK_EQ_INT(ended_calls[0], a0 + 1);
	CHECK_EQ_INT(ended_calls[1], b0);
}

static void test_malformed_result(struct worker *w)
{
	put_job(w, "job_bad", "testp:a", "[\"testp:a\"]");
	json_t *res = json_pack("{s:s}", "state", "done-ish");
	struct jobflow f;
	CHECK_EQ_INT(jobflow_begin(w, &f, "job_bad", NULL), 0);
	CHECK_EQ_INT(jobflow_apply_result(&f.job, res, 200, "providers/testp.lua"), -1);
	CHECK_EQ_INT(f.job.status, JOB_FAILED);
	CHECK_STR_EQ(f.job.error_code, "SCRIPT_ERROR");
	CHECK(strstr(f.job.error_message, "providers/testp.lua: result.state must be") != NULL);
	CHECK_EQ_INT(jobflow_end(&f, "poll"), 0);
	job_clear(&f.job);
	json_decref(res);
	CHECK_EQ_INT(status_of("job_bad"), JOB_FAILED);
	char event[32];
	CHECK_EQ_INT(deliveries_of("job_bad", event, sizeof event), 1);
	CHECK_STR_EQ(event, "job.failed");
	json_t *ended;
	CHECK_EQ_INT(events_of("job_bad", "ended", &ended), 1);
	CHECK_STR_EQ(json_string_value(json_object_get(ended, "error")), "SCRIPT_ERROR");
	CHECK_STR_EQ(json_string_value(json_object_get(ended, "via")), "poll");
	json_decref(ended);
	/* A value that is not UTF-8 (never written by the core, which checks
	 * codes): the event is still added, with what jansson makes of it (no
	 * detail), never as text that is not JSON. */
	put_job(w, "job_bytes", "testp:a", "[\"testp:a\"]");
	CHECK_EQ_INT(jobflow_begin(w, &f, "job_bytes", NULL), 0);
	f.job.status = JOB_FAILED;
	job_set(&f.job.error_code, "BAD_\xff");
	CHECK_EQ_INT(jobflow_end(&f, "poll"), 0);
	job_clear(&f.job);
	CHECK_EQ_INT(events_of("job_bytes", "ended", &ended), 1);
	CHECK(ended == NULL || json_is_null(ended));
	json_decref(ended);
	/* Still running: a processing result is not an end. */
	struct job j = { .status = JOB_PROCESSING };
	json_t *proc = json_pack("{s:s,s:s,s:{s:s}}", "state", "processing", "request_id", "r9",
				 "data", "k", "v");
	CHECK_EQ_INT(jobflow_apply_result(&j, proc, 200, "testp"), 0);
	CHECK_STR_EQ(j.request_id, "r9");
	CHECK(j.data && strstr(j.data, "\"k\":\"v\"") != NULL);
	json_decref(proc);
	job_clear(&j);
}

static void test_cancel(struct worker *w)
{
	int before = ended_calls[0];
	put_job(w, "job_cx", "testp:a", "[\"testp:a\"]");
	struct job j;
	CHECK_EQ_INT(jobflow_cancel(w, "job_cx", "acme", &j), 0);
	CHECK_EQ_INT(j.status, JOB_CANCELED);
	CHECK_STR_EQ(j.error_code, "CANCELED");
	job_clear(&j);
	CHECK_EQ_INT(ended_calls[0], before + 1);
	CHECK_EQ_INT(store_work_count(observer, WORK_CANCEL), 1); /* the adapter has cancel */
	/* Again: left as it is. */
	CHECK_EQ_INT(jobflow_cancel(w, "job_cx", NULL, &j), 0);
	CHECK_EQ_INT(j.status, JOB_CANCELED);
	job_clear(&j);
	CHECK_EQ_INT(ended_calls[0], before + 1);
	CHECK_EQ_INT(deliveries_of("job_cx", NULL, 0), 1);
	CHECK_EQ_INT(jobflow_cancel(w, "job_cx", "someone-else", &j), 1);
	CHECK_EQ_INT(jobflow_cancel(w, "job_none", NULL, &j), 1);
}

static void test_callback_parse(struct worker *w)
{
	struct job j = { .id = "job_p", .model = "a", .model_id = "testp:a", .input = "{}" };
	json_t *jarg = job_script_arg(&j, NULL), *res = NULL;
	char err[256];
	struct callbacks_field bad[] = { { "x-sig", "forged" } };
	json_t *req = callbacks_request_arg(bad, 1, NULL, 0, "{}", 2);
	CHECK_EQ_INT(callbacks_parse(w->scripts, "testp", req, jarg, NULL, &res, err, sizeof err),
		     CALLBACKS_REFUSED);
	CHECK(res == NULL);
	CHECK_STR_EQ(err, "bad signature");
	json_decref(req);

	struct callbacks_field good[] = { { "X-SIG", "good-job_p" } };
	struct callbacks_field q[] = { { "raise", "1" } };
	req = callbacks_request_arg(good, 1, q, 1, "not json", 8);
	CHECK(json_object_get(req, "json") == NULL);
	CHECK_STR_EQ(json_string_value(json_object_get(json_object_get(req, "query"), "raise")), "1");
	CHECK_EQ_INT(callbacks_parse(w->scripts, "testp", req, jarg, NULL, &res, err, sizeof err),
		     CALLBACKS_SCRIPT_ERROR);
	CHECK(strstr(err, "cannot read this") != NULL);
	json_decref(req);

	req = callbacks_request_arg(good, 1, NULL, 0, "not json", 8);
	CHECK_EQ_INT(callbacks_parse(w->scripts, "testp", req, jarg, NULL, &res, err, sizeof err),
		     CALLBACKS_RESULT);
	CHECK(json_is_null(res)); /* no json: on_callback returned nil */
	json_decref(res);
	json_decref(req);
	json_decref(jarg);
}

/* Rows of kind claimable now by another owner (due, not leased) for job id;
 * the claimed ones are handed back at once. */
static int claimable(const char *id, enum work_kind kind)
{
	struct work items[32];
	size_t n = 0;
	int64_t now = loop_wall_ms();
	CHECK_EQ_INT(store_work_claim(observer, "someone-else", now, 30000, items, 32, &n), 0);
	int found = 0;
	for (size_t i = 0; i < n; i++) {
		found += items[i].kind == kind && strcmp(items[i].job_id, id) == 0;
		CHECK_EQ_INT(store_work_reschedule(observer, items[i].id, now, items[i].tries), 0);
	}
	return found;
}

/* What a job's end starts waits in the after-commit queue, leased to this
 * worker, until engine_after_commit: it starts it (here, --role api, hands
 * it back to the store, due and unleased), or drops it when the commit
 * failed (the row stays, leased until its lease runs out). */
static void test_after_commit(struct worker *w)
{
	engine_after_commit(w, 0); /* what the tests above queued */
	CHECK_EQ_INT(engine_after_pending(w), 0);
	json_t *ok = json_pack("{s:s}", "state", "succeeded");

	put_job(w, "job_aq", "testp:a", "[\"testp:a\"]");
	CHECK_EQ_INT(end_with(w, "job_aq", ok, "poll"), 0);
	CHECK_EQ_INT(status_of("job_aq"), JOB_SUCCEEDED); /* committed ... */
	CHECK_EQ_INT(engine_after_pending(w), 1);           /* ... its delivery queued */
	CHECK_EQ_INT(claimable("job_aq", WORK_DELIVER), 0);  /* leased to w meanwhile */
	engine_after_commit(w, 1);
	CHECK_EQ_INT(engine_after_pending(w), 0);
	CHECK_EQ_INT(claimable("job_aq", WORK_DELIVER), 1);

	put_job(w, "job_aq2", "testp:a", "[\"testp:a\"]");
	CHECK_EQ_INT(end_with(w, "job_aq2", ok, "poll"), 0);
	CHECK_EQ_INT(engine_after_pending(w), 1);
	engine_after_commit(w, 0);
	CHECK_EQ_INT(engine_after_pending(w), 0);
	CHECK_EQ_INT(claimable("job_aq2", WORK_DELIVER), 0); /* dropped: still leased, not run */
	CHECK_EQ_INT(store_work_count(observer, WORK_DELIVER) > 0, 1);
	json_decref(ok);
}

static void test_settings(struct worker *w)
{
	json_t *a = engine_setting(w, "testp", "poll_after_s");
	CHECK(json_is_number(a) && json_number_value(a) == 7);
	CHECK(engine_setting(w, "testp", "poll_after_s") == a); /* borrowed, not copied */
	CHECK(engine_setting(w, "testp", "key") == NULL);      /* secrets are not settings */
	CHECK(engine_setting(w, "nosuch", "poll_after_s") == NULL);
}

int main(void)
{
	char path[400], err[512];
	log_set_level(LOG_LEVEL_ERROR + 1);
	CHECK(mkdtemp(dir) != NULL);
	snprintf(spec, sizeof spec, "sqlite:%s/jobs.db", dir);
	snprintf(path, sizeof path, "%s/scripts", dir);
	mkdir(path, 0700);
	snprintf(path, sizeof path, "%s/scripts/providers", dir);
	mkdir(path, 0700);
	snprintf(path, sizeof path, "%s/scripts/providers/testp.lua", dir);
	write_file(path, adapter);
	char conf[2048];
	snprintf(conf, sizeof conf,
		 "store = 'sqlite:%s/jobs.db'\n"
		 "scripts = '%s/scripts'\n"
		 "providers = { testp = { base_url = 'http://127.0.0.1:9/testp', key = 'testp-key' } }\n"
		 "models = { any = { targets = { 'testp:a', 'testp:b' }, failover_on_failure = true } }\n"
		 "customers = { acme = { api_key = 'acme-key-0123456789abcdef',\n"
		 "  webhook_secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw' } }\n",
		 dir, dir);
	snprintf(path, sizeof path, "%s/genrelay.conf.lua", dir);
	write_file(path, conf);
	struct config *cfg = config_load(path, err, sizeof err);
	if (!cfg) {
		fprintf(stderr, "config: %s\n", err);
		return 1;
	}
	cfg->role = ROLE_API; /* queued work goes back to the store instead of running */
	struct worker a, b;
	observer = store_open(spec, 0, err, sizeof err);
	CHECK(observer != NULL);
	if (!observer || worker_up(&a, 0, cfg) < 0 || worker_up(&b, 1, cfg) < 0)
		return check_done() ? 1 : 1;

	test_result_ends_job(&a);
	test_failover(&a);
	test_callback_races_poll(&a, &b);
	test_malformed_result(&a);
	test_cancel(&a);
	test_callback_parse(&a);
	test_settings(&a);
	test_after_commit(&a);

	worker_down(&a);
	worker_down(&b);
	store_close(observer);
	config_free(cfg);
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	return check_done();
}
