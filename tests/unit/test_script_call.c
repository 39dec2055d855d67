/*
 * test_script_call.c: the core's checks around provider steps
 * (core/script_call.c, docs/scripts.md "What the core checks"): a non-2xx
 * answer never reaches on_submitted or on_polled of an adapter that says
 * errors = "core"; on_error sees it first; the default is a failed
 * result with the body's message (lib/util.lua's res_message), for adapters
 * that declare errors = "core" (or on_error); after any submit,
 * "processing" without a request id fails PROVIDER_FAILURE. And the inbound
 * callback path (script_callback): verify then on_callback on one conversion
 * of req and job, the body decoded into req.json only when it is JSON, the
 * verdicts, and ctx.keys rebuilt when the keys change. And script_call_fields:
 * a field of the argument given as text, the result's body rendered as
 * the text json_dumps would print.
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

/* verify marks req and job; on_callback reports what it saw of both, of
 * req.json and of ctx.keys. */
static const char inbound_lua[] =
	"return { name = 'inbound',\n"
	"  submit = function(job, ctx) return {} end,\n"
	"  on_submitted = function(res, job, ctx) return { state = 'processing', request_id = 'r' } end,\n"
	"  verify = function(req, ctx, job)\n"
	"    if req.headers['x-refuse'] then return false, 'told to refuse' end\n"
	"    if req.headers['x-raise'] then error('verify raised') end\n"
	"    req.verified = true; job.verified = true\n"
	"    return true\n"
	"  end,\n"
	"  on_callback = function(req, job, ctx)\n"
	"    if req.headers['x-fail'] then error('on_callback raised') end\n"
	"    local j = req.json\n"
	"    return { state = 'succeeded', output = {\n"
	"      req_verified = req.verified == true, job_verified = job.verified == true,\n"
	"      has_json = j ~= nil, n_type = j and math.type(j.n) or 'none',\n"
	"      f_type = j and math.type(j.f) or 'none', items = j and #j.items or -1,\n"
	"      items_marked = j and getmetatable(j.items) ~= nil or false,\n"
	"      null_is_null = j and j.z == ctx.null or false, s = j and j.s or '',\n"
	"      body = req.body, key = ctx.keys and ctx.keys[1] and ctx.keys[1].kid or 'none',\n"
	"      input_len = #job.input, input_marked = getmetatable(job.input) ~= nil } }\n"
	"  end,\n"
	"  poll = function(job, ctx) return {} end,\n"
	"  on_polled = function(res, job, ctx) return { state = 'processing' } end,\n"
	"}\n";

static int inbound(const char *header, const char *body, json_t *keys, int *is_json,
		   json_t **out, char *err, size_t errlen)
{
	json_t *req = json_pack("{s:{s:s},s:{},s:s}", "headers", header ? header : "x-none", "1",
				"query", "body", body);
	json_t *job = json_pack("{s:s,s:{}}", "id", "job_1", "input");
	struct script_ctx ctx = { .provider = "inbound", .keys = keys };
	struct script_json_field f[2] = {
		{ .arg = 0, .key = "json", .text = body, .len = strlen(body) },
		{ .arg = 1, .key = "input", .text = "[1,2]", .len = 5, .container = 1 },
	};
	int rc = script_callback(host, "inbound", req, job, f, 2, &ctx, out, err, errlen);
	*is_json = f[0].ok;
	json_decref(req);
	json_decref(job);
	return rc;
}

static int out_bool(json_t *r, const char *k)
{
	return json_is_true(json_object_get(json_object_get(r, "output"), k));
}

static const char *out_str(json_t *r, const char *k)
{
	return json_string_value(json_object_get(json_object_get(r, "output"), k));
}

static void test_inbound(void)
{
	char err[512];
	int is_json = -1;
	json_t *r = NULL;
	const char *body = "{\"n\":5,\"f\":2.5,\"items\":[1,2,3],\"z\":null,\"s\":\"caf\\u00e9\"}";

	write_file("providers/inbound.lua", inbound_lua);
	touch_later("providers/inbound.lua");
	script_host_refresh(host);
	CHECK(script_exists(host, SCRIPT_PROVIDER, "inbound"));

	/* accepted: on_callback sees what verify changed (one conversion), and
	 * req.json as jansson's parse would have given it */
	json_t *keys1 = json_pack("[{s:s}]", "kid", "k1");
	CHECK_EQ_INT(inbound(NULL, body, keys1, &is_json, &r, err, sizeof err), 1);
	CHECK_EQ_INT(is_json, 1);
	CHECK(out_bool(r, "req_verified") && out_bool(r, "job_verified") && out_bool(r, "has_json"));
	CHECK_STR_EQ(out_str(r, "n_type"), "integer");
	CHECK_STR_EQ(out_str(r, "f_type"), "float");
	CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(r, "output"), "items")), 3);
	CHECK(out_bool(r, "items_marked") && out_bool(r, "null_is_null"));
	CHECK_STR_EQ(out_str(r, "s"), "caf\xc3\xa9");
	CHECK_STR_EQ(out_str(r, "body"), body);
	CHECK_STR_EQ(out_str(r, "key"), "k1");
	/* job.input given as text replaced the job's own {} */
	CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(r, "output"), "input_len")), 2);
	CHECK(out_bool(r, "input_marked"));
	json_decref(r);

	/* the same keys again (the cached table), then new keys: the new ones */
	CHECK_EQ_INT(inbound(NULL, body, keys1, &is_json, &r, err, sizeof err), 1);
	CHECK_STR_EQ(out_str(r, "key"), "k1");
	json_decref(r);
	json_t *keys2 = json_pack("[{s:s}]", "kid", "k2");
	CHECK_EQ_INT(inbound(NULL, body, keys2, &is_json, &r, err, sizeof err), 1);
	CHECK_STR_EQ(out_str(r, "key"), "k2");
	json_decref(r);
	CHECK_EQ_INT(inbound(NULL, body, NULL, &is_json, &r, err, sizeof err), 1);
	CHECK_STR_EQ(out_str(r, "key"), "none");
	json_decref(r);
	json_decref(keys1);
	json_decref(keys2);

	/* a body that is not JSON: no req.json; each call converts anew (what
	 * the previous call's verify marked is gone) */
	CHECK_EQ_INT(inbound(NULL, "{\"n\":", NULL, &is_json, &r, err, sizeof err), 1);
	CHECK_EQ_INT(is_json, 0);
	CHECK(!out_bool(r, "has_json"));
	CHECK(out_bool(r, "req_verified"));
	json_decref(r);

	/* refused, raised in verify, raised in on_callback */
	CHECK_EQ_INT(inbound("x-refuse", body, NULL, &is_json, &r, err, sizeof err), 0);
	CHECK(r == NULL);
	CHECK_STR_EQ(err, "told to refuse");
	CHECK_EQ_INT(inbound("x-raise", body, NULL, &is_json, &r, err, sizeof err), 0);
	CHECK(r == NULL && strstr(err, "verify raised") != NULL);
	CHECK_EQ_INT(inbound("x-fail", body, NULL, &is_json, &r, err, sizeof err), -1);
	CHECK(r == NULL && strstr(err, "on_callback raised") != NULL);
	/* after every kind of outcome the next callback runs as the first did */
	CHECK_EQ_INT(inbound(NULL, body, NULL, &is_json, &r, err, sizeof err), 1);
	CHECK(out_bool(r, "req_verified") && out_bool(r, "has_json"));
	json_decref(r);

	/* not loaded */
	struct script_ctx ctx = { .provider = "nope" };
	json_t *req = json_object();
	CHECK_EQ_INT(script_callback(host, "nope", req, NULL, NULL, 0, &ctx, &r, err, sizeof err), -2);
	CHECK(r == NULL);
	json_decref(req);
	remove_file("providers/inbound.lua");
	script_host_refresh(host);
}

/* A hook whose body echoes the event's output and a few awkward values. */
static const char render_lua[] =
	"return {\n"
	"  transform = function(event, ctx)\n"
	"    if event.type == 'string' then return { body = 'as is', headers = { ['X-A'] = '1' } } end\n"
	"    if event.type == 'fn' then return { body = { f = function() end } } end\n"
	"    if event.type == 'meta' then return setmetatable({ body = { x = 1 } }, {}) end\n"
	"    return { body = { out = event.output, id = event.job_id, f = 0.1, big = 2^60,\n"
	"                      s = 'tab\\t \\\"q\\\" / \\1 \\195\\169', e = ctx.array({}) },\n"
	"             headers = { ['X-Event'] = event.type } }\n"
	"  end,\n"
	"}\n";

static void test_render(void)
{
	char err[512];
	json_t *out = NULL, *plain = NULL;
	const char *output = "{\"items\":[{\"url\":\"https://x/a.png\",\"w\":1024}],\"n\":2.5}";

	write_file("hooks/render.lua", render_lua);
	touch_later("hooks/render.lua");
	script_host_refresh(host);
	CHECK(script_exists(host, SCRIPT_HOOK, "render"));

	/* the reference: the whole event as jansson values, the body dumped */
	json_t *full = json_pack("{s:s,s:s,s:o}", "job_id", "job_1", "type", "job.succeeded",
				 "output", json_loads(output, 0, NULL));
	struct script_ctx ctx = {0};
	CHECK_EQ_INT(script_call(host, SCRIPT_HOOK, "render", "transform", &full, 1, &ctx, &plain,
				 err, sizeof err), 0);
	if (!plain)
		fprintf(stderr, "    %s\n", err);
	char *want = json_dumps(json_object_get(plain, "body"), JSON_COMPACT | JSON_ENCODE_ANY);

	/* the output as text, the body rendered: the same bytes, body left out */
	json_t *bare = json_pack("{s:s,s:s,s:n}", "job_id", "job_1", "type", "job.succeeded", "output");
	struct script_json_field f = { .arg = 0, .key = "output", .text = output,
				       .len = strlen(output), .container = 1 };
	struct script_rendered rb = { .key = "body" };
	CHECK_EQ_INT(script_call_fields(host, SCRIPT_HOOK, "render", "transform", &bare, 1, &f, 1,
					&rb, &ctx, &out, err, sizeof err), 0);
	CHECK_EQ_INT(f.ok, 1);
	CHECK(rb.text != NULL && want != NULL);
	CHECK_STR_EQ(rb.text, want);
	CHECK(rb.text && rb.len == strlen(rb.text));
	CHECK(json_object_get(out, "body") == NULL);
	CHECK_STR_EQ(json_string_value(json_object_get(json_object_get(out, "headers"), "X-Event")),
		     "job.succeeded");
	free(rb.text);
	json_decref(out);
	free(want);
	json_decref(plain);
	json_decref(full);

	/* a string body is not rendered; a table with a metatable is left to
	 * jansson; a body that cannot be JSON fails the call, nothing rendered */
	json_object_set_new(bare, "type", json_string("string"));
	CHECK_EQ_INT(script_call_fields(host, SCRIPT_HOOK, "render", "transform", &bare, 1, &f, 1,
					&rb, &ctx, &out, err, sizeof err), 0);
	CHECK(rb.text == NULL);
	CHECK_STR_EQ(json_string_value(json_object_get(out, "body")), "as is");
	json_decref(out);
	json_object_set_new(bare, "type", json_string("meta"));
	CHECK_EQ_INT(script_call_fields(host, SCRIPT_HOOK, "render", "transform", &bare, 1, &f, 1,
					&rb, &ctx, &out, err, sizeof err), 0);
	CHECK(rb.text == NULL);
	CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(out, "body"), "x")), 1);
	json_decref(out);
	json_object_set_new(bare, "type", json_string("fn"));
	CHECK_EQ_INT(script_call_fields(host, SCRIPT_HOOK, "render", "transform", &bare, 1, &f, 1,
					&rb, &ctx, &out, err, sizeof err), -1);
	CHECK(rb.text == NULL && out == NULL);
	CHECK(strstr(err, "not JSON") != NULL);
	json_decref(bare);
	remove_file("hooks/render.lua");
	script_host_refresh(host);
}

int main(void)
{
	if (fixture_setup() < 0)
		return 1;
	CHECK_EQ_INT(fixture_load(), 0);
	test_error_answers();
	test_request_id();
	test_inbound();
	test_render();
	CHECK(ping_ok());
	fixture_teardown();
	return check_done();
}
