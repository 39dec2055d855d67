/*
 * test_script_host.c: the Lua host (core/script_host.c, script_vm.c):
 * loading, calls and their arguments, secrets and settings, routing,
 * unconfigured providers, load checks, hot reload and script_check_file.
 * Scripts are written into a temporary directory (script_fixture.h).
 */
#include "check.h"
#include "script_fixture.h"

/* ------------------------------------------------------------------ tests */

static void test_load(void)
{
	char err[1024];
	int rc = script_host_load(host, err, sizeof err);
	CHECK_EQ_INT(rc, 0);
	if (rc != 0)
		fprintf(stderr, "    load: %s\n", err);
	CHECK(script_exists(host, SCRIPT_PROVIDER, "good"));
	CHECK(script_exists(host, SCRIPT_PROVIDER, "evil"));
	CHECK(script_exists(host, SCRIPT_HOOK, "default"));
	CHECK(!script_exists(host, SCRIPT_HOOK, "good"));
	CHECK(!script_exists(host, SCRIPT_PROVIDER, "nope"));
	CHECK(script_has_fn(host, SCRIPT_PROVIDER, "good", "submit"));
	CHECK(script_has_fn(host, SCRIPT_PROVIDER, "good", "verify"));
	CHECK(!script_has_fn(host, SCRIPT_PROVIDER, "good", "poll"));
	CHECK(!script_has_fn(host, SCRIPT_PROVIDER, "good", "name"));
	const char *v = script_version(host, SCRIPT_PROVIDER, "good");
	CHECK(v != NULL && strlen(v) == 12);
	CHECK(script_version(host, SCRIPT_PROVIDER, "nope") == NULL);
}

static void test_calls(void)
{
	json_t *out = NULL;
	char err[512];
	struct script_ctx ctx = { .provider = "good",
				  .callback_url = "http://127.0.0.1:8080/v1/callbacks/good/job_9/tok" };

	/* submit with the configured secret and settings */
	int rc = call("good", "submit", "[{\"id\":\"job_9\",\"model\":\"good/x\",\"input\":{\"prompt\":\"cat\"}}]",
		      &ctx, &out, err, sizeof err);
	CHECK_EQ_INT(rc, 0);
	CHECK_STR_EQ(json_string_value(json_object_get(out, "url")), "http://sim/good/run/good/x");
	CHECK_STR_EQ(json_string_value(json_object_get(json_object_get(out, "headers"), "Authorization")),
		     "Key good-secret");
	CHECK_STR_EQ(json_string_value(json_object_get(json_object_get(out, "body"), "webhook")),
		     ctx.callback_url);
	CHECK_STR_EQ(json_string_value(json_object_get(json_object_get(out, "body"), "prompt")), "cat");
	json_decref(out);

	/* callback parsing */
	rc = call("good", "on_callback", "[{\"json\":{\"status\":\"OK\",\"url\":\"https://x/y.png\"},\"headers\":{}},{\"id\":\"job_9\"}]",
		  &ctx, &out, err, sizeof err);
	CHECK_EQ_INT(rc, 0);
	CHECK_STR_EQ(json_string_value(json_object_get(out, "state")), "succeeded");
	CHECK(json_is_array(json_object_get(json_object_get(out, "output"), "items")));
	json_decref(out);

	/* verify: ctx is the second argument; the reason comes back in err */
	rc = call("good", "verify", "[{\"headers\":{\"x-sig\":\"good\"}},{\"id\":\"job_1\"}]", &ctx, &out,
		  err, sizeof err);
	CHECK_EQ_INT(rc, 0);
	CHECK(json_is_true(out));
	CHECK_STR_EQ(err, "");
	json_decref(out);
	rc = call("good", "verify", "[{\"headers\":{\"x-sig\":\"bad\"}},{\"id\":\"job_1\"}]", &ctx, &out,
		  err, sizeof err);
	CHECK_EQ_INT(rc, 0);
	CHECK(json_is_false(out));
	CHECK_STR_EQ(err, "bad signature");
	json_decref(out);
	rc = call("good", "verify", "[{\"headers\":{}}]", NULL, &out, err, sizeof err);
	CHECK_EQ_INT(rc, 0); /* verify(req, ctx) with no job */
	CHECK(json_is_false(out));
	json_decref(out);

	/* arguments and ctx */
	struct script_ctx c2 = { .provider = "evil", .callback_url = "http://cb" };
	c2.keys = J("[{\"kty\":\"OKP\",\"x\":\"abc\"}]");
	rc = call("evil", "echo", "[[], {\"k\":[1,2,{\"z\":null}]}]", &c2, &out, err, sizeof err);
	CHECK_EQ_INT(rc, 0);
	{
		json_t *want = J("{\"a\":[],\"b\":{\"k\":[1,2,{\"z\":null}]},\"n\":3,\"cb\":\"http://cb\","
				 "\"keys\":[{\"kty\":\"OKP\",\"x\":\"abc\"}]}");
		CHECK(json_equal(out, want));
		json_decref(want);
	}
	json_decref(out);
	json_decref(c2.keys);
	/* per-call fields do not leak into the next call */
	rc = call("evil", "echo", "[1, 2]", NULL, &out, err, sizeof err);
	CHECK_EQ_INT(rc, 0);
	CHECK(json_object_get(out, "cb") == NULL && json_object_get(out, "keys") == NULL);
	json_decref(out);

	/* nil -> null; empty array marker; null */
	rc = call("evil", "ret_nil", NULL, NULL, &out, err, sizeof err);
	CHECK_EQ_INT(rc, 0);
	CHECK(json_is_null(out));
	json_decref(out);
	rc = call("evil", "ret_empty", NULL, NULL, &out, err, sizeof err);
	CHECK_EQ_INT(rc, 0);
	CHECK(json_is_array(json_object_get(out, "list")));
	CHECK(json_is_object(json_object_get(out, "obj")));
	CHECK(json_is_null(json_object_get(out, "null")));
	json_decref(out);

	/* errors name script and line */
	rc = call("evil", "boom", NULL, NULL, &out, err, sizeof err);
	CHECK_EQ_INT(rc, -1);
	CHECK_STR_EQ(err, "providers/evil.lua:6: kaboom");
	CHECK(out == NULL);
	rc = call("evil", "ret_fn", NULL, NULL, &out, err, sizeof err);
	CHECK_EQ_INT(rc, -1);
	CHECK(strstr(err, "providers/evil.lua: ret_fn returned a value that is not JSON: f: a function") != NULL);
	rc = call("evil", "no_such_fn", NULL, NULL, &out, err, sizeof err);
	CHECK_EQ_INT(rc, -2);
	rc = call("nope", "submit", NULL, NULL, &out, err, sizeof err);
	CHECK_EQ_INT(rc, -2);
	rc = script_call(host, SCRIPT_HOOK, "evil", "submit", NULL, 0, NULL, &out, err, sizeof err);
	CHECK_EQ_INT(rc, -2);

	/* a hook */
	{
		json_t *ev = J("{\"job_id\":\"job_5\",\"type\":\"job.failed\"}");
		rc = script_call(host, SCRIPT_HOOK, "default", "transform", &ev, 1, NULL, &out, err,
				 sizeof err);
		CHECK_EQ_INT(rc, 0);
		CHECK_STR_EQ(json_string_value(json_object_get(json_object_get(out, "body"), "id")), "job_5");
		CHECK(json_object_get(json_object_get(out, "body"), "secret") == NULL); /* hooks get no secrets */
		json_decref(out);
		json_decref(ev);
		ev = J("{\"job_id\":\"job_5\",\"type\":\"job.skip\"}");
		rc = script_call(host, SCRIPT_HOOK, "default", "transform", &ev, 1, NULL, &out, err,
				 sizeof err);
		CHECK_EQ_INT(rc, 0);
		CHECK(json_is_null(out));
		json_decref(out);
		json_decref(ev);
	}
}

static void test_secrets(void)
{
	json_t *out = NULL, *arg;
	char err[256];
	const char *names[] = { "good", "good.key", "../good", "providers.good.key", "" };

	/* a provider reads its own settings ... */
	arg = json_string("key");
	CHECK_EQ_INT(script_call(host, SCRIPT_PROVIDER, "evil", "secret", &arg, 1, NULL, &out, err, sizeof err), 0);
	CHECK_STR_EQ(json_string_value(json_object_get(out, "v")), "evil-secret");
	CHECK(json_object_get(json_object_get(out, "config"), "key") == NULL);
	json_decref(out);
	/* ... even when the caller names another provider */
	struct script_ctx other = { .provider = "good" };
	CHECK_EQ_INT(script_call(host, SCRIPT_PROVIDER, "evil", "secret", &arg, 1, &other, &out, err, sizeof err), 0);
	CHECK_STR_EQ(json_string_value(json_object_get(out, "v")), "evil-secret");
	json_decref(out);
	json_decref(arg);
	/* another provider's secret is unreachable */
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		arg = json_string(names[i]);
		CHECK_EQ_INT(script_call(host, SCRIPT_PROVIDER, "evil", "secret", &arg, 1, NULL, &out, err, sizeof err), 0);
		CHECK(json_object_get(out, "v") == NULL);
		json_decref(out);
		json_decref(arg);
	}
	/* settings: defaults overlaid by config, secret-looking keys removed */
	json_t *s = script_provider_settings(host, "good");
	CHECK(s != NULL);
	CHECK_STR_EQ(json_string_value(json_object_get(s, "base_url")), "http://sim/good");
	CHECK_EQ_INT(json_integer_value(json_object_get(s, "timeout")), 5);
	CHECK_STR_EQ(json_string_value(json_object_get(s, "region")), "eu");
	CHECK(json_object_get(s, "key") == NULL);
	CHECK(json_object_get(s, "api_key") == NULL);
	CHECK(json_object_get(s, "webhook_secret") == NULL);
	CHECK(json_object_get(s, "Auth_Token") == NULL);
	CHECK(json_object_get(s, "password") == NULL);
	json_decref(s);
	CHECK(script_provider_settings(host, "nope") == NULL);
}

static void test_route(void)
{
	char out[64];
	CHECK_EQ_INT(script_route(host, "good/x", out, sizeof out), 0);
	CHECK_STR_EQ(out, "good");
	CHECK_EQ_INT(script_route(host, "exact-model", out, sizeof out), 0);
	CHECK_STR_EQ(out, "good");
	CHECK_EQ_INT(script_route(host, "evil/anything/at/all", out, sizeof out), 0);
	CHECK_STR_EQ(out, "evil");
	CHECK_EQ_INT(script_route(host, "good/", out, sizeof out), -1);
	CHECK_EQ_INT(script_route(host, "xgood/x", out, sizeof out), -1);
	CHECK_EQ_INT(script_route(host, "exact-modelX", out, sizeof out), -1);
	CHECK_EQ_INT(script_route(host, "exactXmodel", out, sizeof out), -1);
	CHECK_EQ_INT(script_route(host, "", out, sizeof out), -1);

	json_t *m = script_host_models(host);
	CHECK(json_is_array(m));
	json_t *want = J("[{\"provider\":\"evil\",\"models\":[\"^evil/.*$\"]},"
			 "{\"provider\":\"good\",\"models\":[\"good/.+\",\"exact%-model\"]}]");
	CHECK(json_equal(m, want));
	json_decref(want);
	json_decref(m);
}

static void check_not_loaded(const char *rel, const char *name, const char *text, const char *want);

/* A provider with no settings in the config is loaded and checked but never
 * routed or listed; script_provider_info reports its declarations. */
static void test_unconfigured(void)
{
	char out[64];
	struct script_provider_info info;
	write_file("providers/idle.lua",
		   "return { name = 'idle', models = { 'idle/.+' },\n"
		   "  callback_requires = { https = true, public = true }, poll_404_limit = 5,\n"
		   "  submit = function(job, ctx) return { url = 'http://x/' } end,\n"
		   "  on_submitted = function(res, job, ctx) return { state = 'processing' } end,\n"
		   "  on_callback = function(req, job, ctx) return { state = 'processing' } end }\n");
	script_host_refresh(host);
	CHECK(script_exists(host, SCRIPT_PROVIDER, "idle"));
	CHECK_EQ_INT(script_route(host, "idle/x", out, sizeof out), -1);
	json_t *m = script_host_models(host);
	size_t i;
	json_t *v;
	int listed = 0;
	json_array_foreach(m, i, v)
		if (strcmp(json_string_value(json_object_get(v, "provider")), "idle") == 0)
			listed = 1;
	CHECK_EQ_INT(listed, 0);
	json_decref(m);
	CHECK_EQ_INT(script_provider_info(host, "idle", &info), 0);
	CHECK_EQ_INT(info.configured, 0);
	CHECK_EQ_INT(info.callback_https, 1);
	CHECK_EQ_INT(info.callback_public, 1);
	CHECK_EQ_INT(info.poll_404_limit, 5);
	CHECK_EQ_INT(script_provider_info(host, "good", &info), 0);
	CHECK_EQ_INT(info.configured, 1);
	CHECK_EQ_INT(info.callbacks, 1);
	CHECK_EQ_INT(info.callback_https, 0);
	CHECK_EQ_INT(info.poll_404_limit, 3);
	CHECK_EQ_INT(info.max_inflight, 0);
	CHECK_EQ_INT(script_provider_info(host, "nope", &info), -1);
	remove_file("providers/idle.lua");
	script_host_refresh(host);
	check_not_loaded("providers/badreq.lua", "badreq",
			 "return { name = 'badreq', callback_requires = 5,\n"
			 "  submit = function() end, on_submitted = function() end, on_callback = function() end }\n",
			 "callback_requires must be a table");
	check_not_loaded("providers/bad404.lua", "bad404",
			 "return { name = 'bad404', poll_404_limit = 0,\n"
			 "  submit = function() end, on_submitted = function() end, on_callback = function() end }\n",
			 "poll_404_limit must be an integer");
}

static void check_not_loaded(const char *rel, const char *name, const char *text, const char *want)
{
	char buf[1024];
	write_file(rel, text);
	script_host_refresh(host);
	CHECK(!script_exists(host, SCRIPT_PROVIDER, name));
	CHECK(last_error(name, buf, sizeof buf) != NULL);
	CHECK(strstr(buf, want) != NULL);
	if (!strstr(buf, want))
		fprintf(stderr, "    %s: last_error \"%s\", want \"%s\"\n", rel, buf, want);
	remove_file(rel);
	script_host_refresh(host);
	CHECK(list_entry(name) == NULL);
}

static void test_load_checks(void)
{
	check_not_loaded("providers/named.lua", "named",
			 "return { name = 'other', submit = print, on_submitted = print, on_callback = print }",
			 "providers/named.lua: name must be \"named\"");
	check_not_loaded("providers/noname.lua", "noname",
			 "return { submit = print, on_submitted = print, on_callback = print }", "name must be");
	check_not_loaded("providers/missing.lua", "missing",
			 "return { name = 'missing', submit = function() end, on_submitted = function() end }",
			 "missing function on_callback");
	check_not_loaded("providers/nopolled.lua", "nopolled",
			 "local f = function() end\n"
			 "return { name = 'nopolled', submit = f, on_submitted = f, on_callback = f, poll = f }",
			 "on_polled");
	check_not_loaded("providers/notable.lua", "notable", "return 42", "must return a table");
	check_not_loaded("providers/syntax.lua", "syntax", "return {\n  name = 'syntax',,\n}",
			 "providers/syntax.lua:2:");
	check_not_loaded("providers/spinner.lua", "spinner", "while true do end",
			 "providers/spinner.lua:1: instruction budget exceeded");
	check_not_loaded("providers/hog.lua", "hog", "local t = {} while true do t[#t+1] = ('x'):rep(65536) .. #t end",
			 "providers/hog.lua:1: memory cap exceeded");
	check_not_loaded("providers/badpat.lua", "badpat",
			 "local f = function() end\n"
			 "return { name = 'badpat', models = { 'ok', '[a' }, submit = f, on_submitted = f, on_callback = f }",
			 "models[2]: malformed pattern");
	check_not_loaded("providers/badex.lua", "badex",
			 "local f = function() return { state = 'failed' } end\n"
			 "return { name = 'badex', submit = f, on_submitted = f, on_callback = f,\n"
			 "  examples = { { fn = 'on_callback', args = { {}, {} }, expect = { state = 'succeeded' } } } }",
			 "example 1 (on_callback): state: expected \"succeeded\", got \"failed\"");
	check_not_loaded("providers/badex2.lua", "badex2",
			 "local f = function() return { state = 'ok' } end\n"
			 "return { name = 'badex2', submit = f, on_submitted = f, on_callback = f,\n"
			 "  examples = { { name = 'must raise', fn = 'submit', args = {}, expect_error = 'boom' } } }",
			 "example 1 (must raise): expected an error containing \"boom\", got none");
	check_not_loaded("providers/badex3.lua", "badex3",
			 "local f = function() return { state = 'ok' } end\n"
			 "return { name = 'badex3', submit = f, on_submitted = f, on_callback = f,\n"
			 "  examples = { { fn = 'nothere', args = {} } } }",
			 "no function nothere");
	check_not_loaded("providers/badreq.lua", "badreq", "require('os')", "not allowed");
	check_not_loaded("providers/badlib.lua", "badlib", "require('lib.absent')", "not found");
	check_not_loaded("providers/baddef.lua", "baddef",
			 "local f = function() end\n"
			 "return { name = 'baddef', defaults = { x = f }, submit = f, on_submitted = f, on_callback = f }",
			 "defaults.x: a function");
	/* files with names that are not script names are ignored */
	write_file("providers/bad-name.lua", "return 1");
	script_host_refresh(host);
	CHECK(list_entry("bad-name") == NULL);
	remove_file("providers/bad-name.lua");
}

static void test_reload(void)
{
	char buf[1024], v1[16], v2[16];
	const char *v;
	json_t *out = NULL;
	char err[256];
	static const char good_v2_tail[] = "\n-- v2\n";
	char *good_v2 = malloc(sizeof good_lua + sizeof good_v2_tail);

	snprintf(good_v2, sizeof good_lua + sizeof good_v2_tail, "%s%s", good_lua, good_v2_tail);
	/* patch version() to return 2 */
	char *p = strstr(good_v2, "return 1 end");
	CHECK(p != NULL);
	if (p)
		p[7] = '2';

	CHECK_EQ_INT(script_host_refresh(host), 0); /* nothing changed */
	v = script_version(host, SCRIPT_PROVIDER, "good");
	snprintf(v1, sizeof v1, "%s", v ? v : "");

	/* a changed valid file replaces the version */
	write_file("providers/good.lua", good_v2);
	touch_later("providers/good.lua");
	CHECK_EQ_INT(script_host_refresh(host), 1);
	v = script_version(host, SCRIPT_PROVIDER, "good");
	snprintf(v2, sizeof v2, "%s", v ? v : "");
	CHECK(strcmp(v1, v2) != 0 && strlen(v2) == 12);
	CHECK_EQ_INT(call("good", "version", NULL, NULL, &out, err, sizeof err), 0);
	CHECK_EQ_INT(json_integer_value(out), 2);
	json_decref(out);
	CHECK(last_error("good", buf, sizeof buf) == NULL);

	/* a syntax error keeps the running version and shows last_error */
	write_file("providers/good.lua", "return { name = 'good', submit = function( }\n");
	touch_later("providers/good.lua");
	CHECK_EQ_INT(script_host_refresh(host), 0);
	CHECK_STR_EQ(script_version(host, SCRIPT_PROVIDER, "good"), v2);
	CHECK(last_error("good", buf, sizeof buf) != NULL);
	CHECK(strstr(buf, "providers/good.lua:1:") != NULL);
	CHECK_EQ_INT(call("good", "version", NULL, NULL, &out, err, sizeof err), 0);
	CHECK_EQ_INT(json_integer_value(out), 2);
	json_decref(out);
	/* the same broken content is not retried on every refresh */
	CHECK_EQ_INT(script_host_refresh(host), 0);

	/* a failing example keeps it too */
	{
		char *bad = strdup(good_lua);
		char *q = strstr(bad, "expect = { state = 'succeeded'");
		CHECK(q != NULL);
		if (q)
			memcpy(q + 20, "failed'   ", 10);
		write_file("providers/good.lua", bad);
		touch_later("providers/good.lua");
		CHECK_EQ_INT(script_host_refresh(host), 0);
		CHECK_STR_EQ(script_version(host, SCRIPT_PROVIDER, "good"), v2);
		CHECK(last_error("good", buf, sizeof buf) != NULL);
		CHECK(strstr(buf, "example 1 (callback ok)") != NULL);
		free(bad);
	}

	/* the original content loads again, with the original version */
	write_file("providers/good.lua", good_lua);
	touch_later("providers/good.lua");
	CHECK_EQ_INT(script_host_refresh(host), 1);
	CHECK_STR_EQ(script_version(host, SCRIPT_PROVIDER, "good"), v1);
	CHECK(last_error("good", buf, sizeof buf) == NULL);

	/* a lib change reloads every script */
	CHECK_EQ_INT(call("good", "lib", NULL, NULL, &out, err, sizeof err), 0);
	CHECK_STR_EQ(json_string_value(out), "lib-v1");
	json_decref(out);
	write_file("lib/util.lua", util_v2);
	touch_later("lib/util.lua");
	CHECK_EQ_INT(script_host_refresh(host), 3); /* good, evil, hooks/default */
	CHECK_EQ_INT(call("good", "lib", NULL, NULL, &out, err, sizeof err), 0);
	CHECK_STR_EQ(json_string_value(out), "lib-v2");
	json_decref(out);
	/* a broken lib keeps the scripts that need it on the old lib */
	write_file("lib/util.lua", "return {{{");
	touch_later("lib/util.lua");
	script_host_refresh(host);
	CHECK(last_error("good", buf, sizeof buf) != NULL);
	CHECK(strstr(buf, "lib/util.lua:1:") != NULL);
	CHECK_EQ_INT(call("good", "lib", NULL, NULL, &out, err, sizeof err), 0);
	CHECK_STR_EQ(json_string_value(out), "lib-v2");
	json_decref(out);
	CHECK(last_error("evil", buf, sizeof buf) == NULL); /* evil does not use the lib */
	write_file("lib/util.lua", util_v1);
	touch_later("lib/util.lua");
	script_host_refresh(host);
	CHECK(last_error("good", buf, sizeof buf) == NULL);

	/* a new file is added, a removed file unloads */
	write_file("providers/extra.lua",
		   "local f = function() return {} end\n"
		   "return { name = 'extra', models = { 'extra/.*' }, submit = f, on_submitted = f, on_callback = f }\n");
	CHECK_EQ_INT(script_host_refresh(host), 1);
	CHECK(script_exists(host, SCRIPT_PROVIDER, "extra"));
	remove_file("providers/extra.lua");
	CHECK_EQ_INT(script_host_refresh(host), 1);
	CHECK(!script_exists(host, SCRIPT_PROVIDER, "extra"));
	CHECK(list_entry("extra") == NULL);
	CHECK_EQ_INT(call("extra", "submit", NULL, NULL, &out, err, sizeof err), -2);

	/* list */
	{
		json_t *e = list_entry("good");
		CHECK(e != NULL);
		CHECK_STR_EQ(json_string_value(json_object_get(e, "kind")), "provider");
		CHECK_STR_EQ(json_string_value(json_object_get(e, "version")), v1);
		CHECK(json_is_string(json_object_get(e, "loaded_at")));
		CHECK(json_is_null(json_object_get(e, "last_error")));
		json_decref(e);
		e = list_entry("default");
		CHECK(e && strcmp(json_string_value(json_object_get(e, "kind")), "hook") == 0);
		json_decref(e);
	}
	free(good_v2);
}

static void test_check_file(void)
{
	char path[512], err[1024];
	snprintf(path, sizeof path, "%s/providers/good.lua", root);
	CHECK_EQ_INT(script_check_file(cfg, path, err, sizeof err), 0);
	if (err[0])
		fprintf(stderr, "    check_file: %s\n", err);
	snprintf(path, sizeof path, "%s/hooks/default.lua", root);
	CHECK_EQ_INT(script_check_file(cfg, path, err, sizeof err), 0);

	write_file("providers/broken.lua", "return {");
	snprintf(path, sizeof path, "%s/providers/broken.lua", root);
	CHECK_EQ_INT(script_check_file(cfg, path, err, sizeof err), -1);
	CHECK(strstr(err, "providers/broken.lua:1:") != NULL);
	remove_file("providers/broken.lua");

	write_file("lib/notascript.lua", "return {}");
	snprintf(path, sizeof path, "%s/lib/notascript.lua", root);
	CHECK_EQ_INT(script_check_file(cfg, path, err, sizeof err), -1);
	CHECK(strstr(err, "providers/, hooks/ or fronts/") != NULL);
	remove_file("lib/notascript.lua");

	/* fronts: request, respond and error are required; webhook optional */
	write_file("fronts/half.lua", "return { request = function() end, error = function() end }");
	snprintf(path, sizeof path, "%s/fronts/half.lua", root);
	CHECK_EQ_INT(script_check_file(cfg, path, err, sizeof err), -1);
	CHECK(strstr(err, "missing function respond") != NULL);
	write_file("fronts/half.lua", "return { request = function() end, respond = function() end,"
				      " error = function() end, webhook = 1 }");
	CHECK_EQ_INT(script_check_file(cfg, path, err, sizeof err), -1);
	CHECK(strstr(err, "webhook must be a function") != NULL);
	write_file("fronts/half.lua", "return { request = function(req) return { op = 'get', job_id = req.path } end,"
				      " respond = function() end, error = function() end,"
				      " examples = { { fn = 'request', args = { { path = 'j' } }, expect = { op = 'get', job_id = 'j' } } } }");
	CHECK_EQ_INT(script_check_file(cfg, path, err, sizeof err), 0);
	remove_file("fronts/half.lua");

	snprintf(path, sizeof path, "%s/providers/absent.lua", root);
	CHECK_EQ_INT(script_check_file(cfg, path, err, sizeof err), -1);
	CHECK(strstr(err, "absent.lua") != NULL);
}

/* Rough per-job cost of submit mapping plus callback parsing. */
static void bench(void)
{
	json_t *job = J("{\"id\":\"job_01HXYZ\",\"model\":\"good/flux\",\"model_id\":\"good/flux\","
			"\"input\":{\"prompt\":\"a cat on a mat\",\"image_size\":\"square_hd\",\"num_images\":1},"
			"\"data\":{},\"attempt\":1}");
	json_t *req = J("{\"headers\":{\"content-type\":\"application/json\"},\"body\":\"{}\","
			"\"json\":{\"status\":\"OK\",\"url\":\"https://cdn/x.png\"}}");
	struct script_ctx ctx = { .provider = "good",
				  .callback_url = "http://127.0.0.1:8080/v1/callbacks/good/job_01HXYZ/tok" };
	struct timespec a, b;
	char err[256];
	int n = getenv("GENRELAY_BENCH_N") ? atoi(getenv("GENRELAY_BENCH_N")) : 2000, fails = 0;

	clock_gettime(CLOCK_MONOTONIC, &a);
	for (int i = 0; i < n; i++) {
		json_t *out = NULL, *args[2] = { req, job };
		if (script_call(host, SCRIPT_PROVIDER, "good", "submit", &job, 1, &ctx, &out, err, sizeof err))
			fails++;
		json_decref(out);
		if (script_call(host, SCRIPT_PROVIDER, "good", "on_callback", args, 2, &ctx, &out, err, sizeof err))
			fails++;
		json_decref(out);
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	CHECK_EQ_INT(fails, 0);
	printf("submit + on_callback: %.1f us per job (this build)\n",
	       ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / n / 1e3);
	json_decref(job);
	json_decref(req);
}

int main(void)
{
	if (fixture_setup() < 0)
		return 1;
	CHECK(host != NULL);
	test_load();
	test_calls();
	test_secrets();
	test_route();
	test_unconfigured();
	test_load_checks();
	test_reload();
	test_check_file();
	bench();
	CHECK(ping_ok());
	fixture_teardown();
	return check_done();
}
