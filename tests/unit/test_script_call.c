/*
 * test_script_call.c: the core's checks around provider steps
 * (core/script_call.c, docs/scripts.md "What the core checks"): a non-2xx
 * answer never reaches on_submitted or on_polled of an adapter that says
 * errors = "core"; on_error sees it first; the default is a failed
 * result with the body's message (lib/util.lua's res_message), for adapters
 * that declare errors = "core" (or on_error); after any submit,
 * "processing" without a request id fails PROVIDER_FAILURE.
 */
#include "check.h"
#include "script_fixture.h"

/* An adapter whose on_submitted and on_polled raise on an error answer, so
 * a call that reaches them shows. */
static const char steps_lua[] =
	"return { name = 'steps',\n"
	"  submit = function(job, ctx) return {} end,\n"
	"  on_submitted = function(res, job, ctx)\n"
	"    if res.status >= 300 then error('on_submitted saw ' .. res.status) end\n"
	"    return { state = res.json.state or 'processing', request_id = res.json.id }\n"
	"  end,\n"
	"  on_callback = function(req, job, ctx) return { state = 'processing' } end,\n"
	"  poll = function(job, ctx) return {} end,\n"
	"  on_polled = function(res, job, ctx)\n"
	"    if res.status >= 300 then error('on_polled saw ' .. res.status) end\n"
	"    return { state = 'processing' }\n"
	"  end,\n"
	"%s}\n";

static void put_steps(const char *extra)
{
	char text[4096];
	snprintf(text, sizeof text, steps_lua, extra);
	write_file("providers/steps.lua", text);
	touch_later("providers/steps.lua");
	script_host_refresh(host);
	CHECK(script_exists(host, SCRIPT_PROVIDER, "steps"));
}

/* Calls steps.fn(res, job); returns the result (caller frees) or NULL,
 * with rc in *rc. */
static json_t *step(const char *fn, const char *res_json, int *rc, char *err, size_t errlen)
{
	json_t *out = NULL;
	char args[2048];
	snprintf(args, sizeof args, "[%s, {\"id\":\"job_1\",\"data\":{}}]", res_json);
	*rc = call("steps", fn, args, NULL, &out, err, errlen);
	return out;
}

static const char *str_at(json_t *o, const char *a, const char *b)
{
	json_t *v = json_object_get(o, a);
	return json_string_value(b ? json_object_get(v, b) : v);
}

static void test_error_answers(void)
{
	char err[512];
	int rc;
	json_t *r;

	/* an adapter that declares nothing (written before) sees every answer */
	put_steps("");
	r = step("on_submitted", "{\"status\":400,\"json\":{}}", &rc, err, sizeof err);
	CHECK_EQ_INT(rc, -1);
	CHECK(strstr(err, "on_submitted saw 400") != NULL);
	r = step("on_polled", "{\"status\":404,\"json\":{}}", &rc, err, sizeof err);
	CHECK_EQ_INT(rc, -1);
	CHECK(strstr(err, "on_polled saw 404") != NULL);

	put_steps("  errors = 'core',\n");
	/* the default, without lib/util.lua's res_message (the fixture's lib has
	 * none): a body that is not JSON, else "HTTP <status>" */
	r = step("on_submitted", "{\"status\":400,\"body\":\"plain refusal\"}", &rc, err, sizeof err);
	CHECK_EQ_INT(rc, 0);
	CHECK_STR_EQ(str_at(r, "state", NULL), "failed");
	CHECK_STR_EQ(str_at(r, "error", "message"), "plain refusal");
	CHECK(json_object_get(json_object_get(r, "error"), "code") == NULL); /* the core picks it */
	json_decref(r);
	r = step("on_polled", "{\"status\":404,\"body\":\"{}\",\"json\":{}}", &rc, err, sizeof err);
	CHECK_EQ_INT(rc, 0);
	CHECK_STR_EQ(str_at(r, "error", "message"), "HTTP 404");
	CHECK_STR_EQ(str_at(r, "error", "code"), "PROVIDER_FAILURE");
	json_decref(r);
	/* ... and the common shapes of a JSON error body */
	r = step("on_submitted", "{\"status\":422,\"json\":{\"error\":{\"message\":\"width too large\"}}}",
		 &rc, err, sizeof err);
	CHECK_STR_EQ(str_at(r, "error", "message"), "width too large");
	json_decref(r);
	r = step("on_submitted", "{\"status\":401,\"json\":{\"error\":\"bad key\"}}", &rc, err, sizeof err);
	CHECK_STR_EQ(str_at(r, "error", "message"), "bad key");
	json_decref(r);
	r = step("on_submitted", "{\"status\":402,\"json\":{\"message\":\"no credits\"}}", &rc, err, sizeof err);
	CHECK_STR_EQ(str_at(r, "error", "message"), "no credits");
	json_decref(r);
	r = step("on_polled", "{\"status\":404,\"json\":{\"detail\":\"Not Found\"}}", &rc, err, sizeof err);
	CHECK_STR_EQ(str_at(r, "error", "message"), "Not Found");
	json_decref(r);

	/* with the shipped lib/util.lua: the body's message in its many shapes */
	{
		char path[1024], *text = NULL;
		size_t n = 0;
		const char *src = getenv("GENRELAY_SRC") ? getenv("GENRELAY_SRC") : ".";
		snprintf(path, sizeof path, "%s/scripts/lib/util.lua", src);
		FILE *f = fopen(path, "rb");
		CHECK(f != NULL);
		if (f) {
			text = calloc(1, 1 << 20);
			n = text ? fread(text, 1, (1 << 20) - 1, f) : 0;
			fclose(f);
		}
		CHECK(n > 0);
		if (n > 0) {
			write_file("lib/util.lua", text);
			touch_later("lib/util.lua");
			script_host_refresh(host);
		}
		free(text);
	}
	r = step("on_submitted", "{\"status\":422,\"body\":\"{}\",\"json\":{\"detail\":[{\"loc\":[\"body\",\"prompt\"],"
		 "\"msg\":\"field required\"}]}}", &rc, err, sizeof err);
	CHECK_EQ_INT(rc, 0);
	CHECK_STR_EQ(str_at(r, "error", "message"), "field required (body.prompt)");
	json_decref(r);
	r = step("on_polled", "{\"status\":500,\"body\":\"{}\",\"json\":{\"error\":{\"message\":\"model crashed\"}}}",
		 &rc, err, sizeof err);
	CHECK_EQ_INT(rc, 0);
	CHECK_STR_EQ(str_at(r, "error", "message"), "model crashed");
	CHECK_STR_EQ(str_at(r, "error", "code"), "PROVIDER_FAILURE");
	json_decref(r);
	/* a 2xx still goes to the script; 3xx does not */
	r = step("on_submitted", "{\"status\":201,\"json\":{\"id\":\"r1\"}}", &rc, err, sizeof err);
	CHECK_EQ_INT(rc, 0);
	CHECK_STR_EQ(str_at(r, "request_id", NULL), "r1");
	json_decref(r);
	r = step("on_submitted", "{\"status\":302,\"json\":{}}", &rc, err, sizeof err);
	CHECK_EQ_INT(rc, 0);
	CHECK_STR_EQ(str_at(r, "state", NULL), "failed");
	json_decref(r);

	/* on_error sees it first; nil leaves the default */
	put_steps("  on_error = function(res, job, ctx)\n"
		  "    if res.status == 429 then return { state = 'retry', retry_in = res.json.wait } end\n"
		  "    if res.status == 418 then error('teapot') end\n"
		  "  end,\n");
	r = step("on_submitted", "{\"status\":429,\"json\":{\"wait\":30}}", &rc, err, sizeof err);
	CHECK_EQ_INT(rc, 0);
	CHECK_STR_EQ(str_at(r, "state", NULL), "retry");
	CHECK_EQ_INT(json_integer_value(json_object_get(r, "retry_in")), 30);
	json_decref(r);
	r = step("on_submitted", "{\"status\":401,\"json\":{\"message\":\"bad key\"}}", &rc, err, sizeof err);
	CHECK_EQ_INT(rc, 0);
	CHECK_STR_EQ(str_at(r, "error", "message"), "bad key");
	json_decref(r);
	r = step("on_polled", "{\"status\":418,\"json\":{}}", &rc, err, sizeof err);
	CHECK_EQ_INT(rc, -1);
	CHECK(strstr(err, "providers/steps.lua:") != NULL && strstr(err, "teapot") != NULL);
	json_decref(r);

	/* errors = "script" says so explicitly */
	put_steps("  errors = 'script',\n");
	r = step("on_submitted", "{\"status\":400,\"json\":{}}", &rc, err, sizeof err);
	CHECK_EQ_INT(rc, -1);
	CHECK(strstr(err, "on_submitted saw 400") != NULL);
	r = step("on_polled", "{\"status\":404,\"json\":{}}", &rc, err, sizeof err);
	CHECK_EQ_INT(rc, -1);
	CHECK(strstr(err, "on_polled saw 404") != NULL);
}

static void test_request_id(void)
{
	char err[512];
	int rc;
	json_t *r;

	put_steps(""); /* judged whatever the adapter declares */
	r = step("on_submitted", "{\"status\":200,\"json\":{}}", &rc, err, sizeof err);
	CHECK_EQ_INT(rc, 0);
	CHECK_STR_EQ(str_at(r, "state", NULL), "failed");
	CHECK_STR_EQ(str_at(r, "error", "code"), "PROVIDER_FAILURE");
	CHECK_STR_EQ(str_at(r, "error", "message"), "steps: submit answer has no request id");
	json_decref(r);
	r = step("on_submitted", "{\"status\":200,\"json\":{\"id\":\"\"}}", &rc, err, sizeof err);
	CHECK_STR_EQ(str_at(r, "error", "message"), "steps: submit answer has no request id");
	json_decref(r);
	r = step("on_submitted", "{\"status\":200,\"json\":{\"id\":42}}", &rc, err, sizeof err);
	CHECK_EQ_INT(rc, 0);
	CHECK_STR_EQ(str_at(r, "state", NULL), "processing");
	CHECK_EQ_INT(json_integer_value(json_object_get(r, "request_id")), 42);
	json_decref(r);
	/* a finished answer needs no id; a poll is not judged */
	r = step("on_submitted", "{\"status\":200,\"json\":{\"state\":\"succeeded\"}}", &rc, err, sizeof err);
	CHECK_STR_EQ(str_at(r, "state", NULL), "succeeded");
	json_decref(r);
	r = step("on_polled", "{\"status\":200,\"json\":{}}", &rc, err, sizeof err);
	CHECK_STR_EQ(str_at(r, "state", NULL), "processing");
	json_decref(r);
	/* on_error's answer to a submit is judged too */
	put_steps("  on_error = function(res, job, ctx) return { state = 'processing' } end,\n");
	r = step("on_submitted", "{\"status\":400,\"json\":{}}", &rc, err, sizeof err);
	CHECK_STR_EQ(str_at(r, "error", "message"), "steps: submit answer has no request id");
	json_decref(r);
	remove_file("providers/steps.lua");
	script_host_refresh(host);
}

int main(void)
{
	if (fixture_setup() < 0)
		return 1;
	CHECK_EQ_INT(fixture_load(), 0);
	test_error_answers();
	test_request_id();
	CHECK(ping_ok());
	fixture_teardown();
	return check_done();
}
