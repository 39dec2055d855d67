/*
 * script_fixture.h: the scripts and helpers the Lua host's unit tests share
 * (test_script_host.c, test_script_sandbox.c, test_script_limits.c,
 * test_script_ctx.c, test_script_contract.c). fixture_setup() writes the
 * scripts into a temporary directory and loads a host over it;
 * fixture_teardown() frees it and removes the directory. Include check.h
 * first, from one file per test program.
 */
#ifndef GENRELAY_SCRIPT_FIXTURE_H
#define GENRELAY_SCRIPT_FIXTURE_H

#include "config.h"
#include "log.h"
#include "script.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char root[] = "/tmp/genrelay-script-XXXXXX";
static struct config *cfg;
static struct script_host *host;

static inline void write_file(const char *rel, const char *text)
{
	char path[512];
	FILE *f;
	snprintf(path, sizeof path, "%s/%s", root, rel);
	f = fopen(path, "w");
	if (!f) {
		perror(path);
		exit(1);
	}
	fputs(text, f);
	fclose(f);
}

static inline void remove_file(const char *rel)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", root, rel);
	unlink(path);
}

/* ------------------------------------------------------------ the scripts */

static const char good_lua[] __attribute__((unused)) =
	"local util = require('lib.util')\n"
	"return {\n"
	"  name = 'good',\n"
	"  models = { 'good/.+', 'exact%-model' },\n"
	"  defaults = { base_url = 'https://good.example', api_key = 'default-key', timeout = 5 },\n"
	"  submit = function(job, ctx)\n"
	"    return { method = 'POST', url = ctx.config.base_url .. '/run/' .. job.model,\n"
	"             headers = { Authorization = 'Key ' .. (ctx.secret('key') or 'none') },\n"
	"             body = { prompt = job.input.prompt, webhook = ctx.callback_url } }\n"
	"  end,\n"
	"  on_submitted = function(res, job, ctx)\n"
	"    return { state = 'processing', request_id = res.json.request_id }\n"
	"  end,\n"
	"  on_callback = function(req, job, ctx)\n"
	"    if req.json.status ~= 'OK' then\n"
	"      return { state = 'failed', error = { code = 'PROVIDER_FAILURE', message = req.json.error } }\n"
	"    end\n"
	"    return { state = 'succeeded', output = { type = 'image', items = { { type = 'image', url = req.json.url } } } }\n"
	"  end,\n"
	"  verify = function(req, ctx, job)\n"
	"    if type(ctx) ~= 'table' or not ctx.json then error('ctx is not the second argument') end\n"
	"    if job and job.id ~= 'job_1' then error('job is not the third argument') end\n"
	"    if req.headers['x-sig'] == 'good' then return true end\n"
	"    return false, 'bad signature'\n"
	"  end,\n"
	"  upper = function(s, ctx) return s:upper() end,\n"
	"  lib = function(ctx) return util.value end,\n"
	"  version = function(ctx) return 1 end,\n"
	"  examples = {\n"
	"    { name = 'callback ok', fn = 'on_callback',\n"
	"      args = { { json = { status = 'OK', url = 'u' }, headers = {} }, { id = 'job_1', data = {} } },\n"
	"      expect = { state = 'succeeded', output = { items = { { url = 'u' } } } } },\n"
	"    { fn = 'submit', args = { { id = 'job_1', model = 'good/m', input = { prompt = 'p' } } },\n"
	"      expect = { url = 'https://good.example/run/good/m', headers = { Authorization = 'Key example-key' },\n"
	"                 body = { webhook = 'https://genrelay.invalid/v1/callbacks/good/job_example/example-token' } } },\n"
	"    { fn = 'submit', args = { { id = 'job_1', model = 'm', input = {} } },\n"
	"      ctx = { secrets = { key = 'given' }, callback_url = 'http://cb' },\n"
	"      expect = { headers = { Authorization = 'Key given' }, body = { webhook = 'http://cb' } } },\n"
	"    { fn = 'on_submitted', args = { { status = 200 }, {} }, expect_error = 'attempt to index' },\n"
	"  },\n"
	"}\n";

/* Line numbers matter below: boom is on line 6, spin on line 7. */
static const char evil_lua[] __attribute__((unused)) =
	"return {\n"
	"  name = 'evil',\n"
	"  models = { '^evil/.*$' },\n"
	"  submit = function() return {} end, on_submitted = function() return {} end,\n"
	"  on_callback = function() return {} end,\n"
	"  boom = function(ctx) error('kaboom') end,\n"
	"  spin = function(ctx) while true do end end,\n"
	"  ping = function(ctx) return 'pong' end,\n"
	"  eval = function(code, ctx)\n"
	"    local f, e = load(code, '=(eval)')\n"
	"    if not f then error(e, 0) end\n"
	"    return f(ctx)\n"
	"  end,\n"
	"  echo = function(a, b, ctx) return { a = a, b = b, n = select('#', a, b, ctx), cb = ctx.callback_url, keys = ctx.keys } end,\n"
	"  ret_fn = function(ctx) return { f = print } end,\n"
	"  ret_nil = function(ctx) return nil end,\n"
	"  ret_empty = function(ctx) return { list = ctx.array({}), obj = {}, null = ctx.null } end,\n"
	"  secret = function(name, ctx) return { v = ctx.secret(name), config = ctx.config } end,\n"
	"  clobber = function(ctx) string.upper = function() return 'pwned' end; return ('x'):upper() end,\n"
	"  work = function(n, ctx) local s = 0 for i = 1, n do s = s + i end return s end,\n"
	"}\n";

static const char hook_lua[] __attribute__((unused)) =
	"return {\n"
	"  transform = function(event, ctx)\n"
	"    if event.type == 'job.skip' then return nil end\n"
	"    return { body = { id = event.job_id, kind = event.type, secret = ctx.secret('key') },\n"
	"             headers = { ['X-Event'] = event.type } }\n"
	"  end,\n"
	"  examples = { { fn = 'transform', args = { { job_id = 'job_1', type = 'job.succeeded' } },\n"
	"                 expect = { body = { id = 'job_1' }, headers = { ['X-Event'] = 'job.succeeded' } } } },\n"
	"}\n";

static const char util_v1[] __attribute__((unused)) = "return { value = 'lib-v1' }\n";
static const char util_v2[] __attribute__((unused)) = "return { value = 'lib-v2' }\n";

/* --------------------------------------------------------------- helpers */

static inline json_t *J(const char *text)
{
	json_error_t e;
	json_t *j = json_loads(text, JSON_DECODE_ANY, &e);
	if (!j)
		fprintf(stderr, "bad test json: %s: %s\n", text, e.text);
	return j;
}

/* Calls name.fn with args given as a JSON array text; returns rc. */
static inline int call(const char *name, const char *fn, const char *args_json,
		const struct script_ctx *ctx, json_t **out, char *err, size_t errlen)
{
	json_t *args = J(args_json ? args_json : "[]");
	json_t *argv[8];
	size_t n = json_array_size(args);
	for (size_t i = 0; i < n && i < 8; i++)
		argv[i] = json_array_get(args, i);
	int rc = script_call(host, SCRIPT_PROVIDER, name, fn, argv, n, ctx, out, err, errlen);
	json_decref(args);
	return rc;
}

static inline int ping_ok(void)
{
	json_t *out = NULL;
	char err[512];
	int rc = call("evil", "ping", NULL, NULL, &out, err, sizeof err);
	int ok = rc == 0 && json_is_string(out) && strcmp(json_string_value(out), "pong") == 0;
	json_decref(out);
	return ok;
}

/* evil.eval(code) must fail with an error containing want, then the host
 * must still serve a normal call. */
static inline void check_blocked(const char *code, const char *want)
{
	json_t *out = NULL;
	char err[512] = "";
	json_t *arg = json_string(code);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int rc = script_call(host, SCRIPT_PROVIDER, "evil", "eval", &arg, 1, NULL, &out,
			     err, sizeof err);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (getenv("GENRELAY_TEST_VERBOSE"))
		fprintf(stderr, "%6.1f ms  %s\n", ((double)(t1.tv_sec - t0.tv_sec) * 1e3 +
			(double)(t1.tv_nsec - t0.tv_nsec) / 1e6), code);
	CHECK_EQ_INT(rc, -1);
	CHECK(strncmp(err, "providers/evil.lua", 18) == 0);
	CHECK(strstr(err, want) != NULL);
	if (rc != -1 || !strstr(err, want))
		fprintf(stderr, "    code: %s\n    err: %s\n    want: %s\n", code, err, want);
	CHECK(ping_ok());
	json_decref(out);
	json_decref(arg);
}

/* evil.eval(code) must succeed and return JSON equal to want_json. */
static inline void check_eval(const char *code, const char *want_json)
{
	json_t *out = NULL, *want = J(want_json);
	char err[512] = "";
	json_t *arg = json_string(code);
	int rc = script_call(host, SCRIPT_PROVIDER, "evil", "eval", &arg, 1, NULL, &out,
			     err, sizeof err);
	CHECK_EQ_INT(rc, 0);
	CHECK(out && want && json_equal(out, want));
	if (rc != 0 || !out || !json_equal(out, want)) {
		char *s = out ? json_dumps(out, JSON_ENCODE_ANY) : NULL;
		fprintf(stderr, "    code: %s\n    got: %s err: %s\n    want: %s\n", code,
			s ? s : "-", err, want_json);
		free(s);
	}
	json_decref(out);
	json_decref(want);
	json_decref(arg);
}

static inline json_t *list_entry(const char *name)
{
	json_t *l = script_host_list(host), *v, *r = NULL;
	size_t i;
	json_array_foreach(l, i, v)
		if (strcmp(json_string_value(json_object_get(v, "name")), name) == 0)
			r = json_incref(v);
	json_decref(l);
	return r;
}

static inline const char *last_error(const char *name, char *buf, size_t n)
{
	json_t *e = list_entry(name);
	const char *s = e ? json_string_value(json_object_get(e, "last_error")) : NULL;
	snprintf(buf, n, "%s", s ? s : "");
	json_decref(e);
	return s ? buf : NULL;
}

/* Makes sure a rewrite is seen as a change even within one clock tick. */
static inline void touch_later(const char *rel)
{
	char path[512];
	struct timespec ts[2];
	static long bump = 1;
	snprintf(path, sizeof path, "%s/%s", root, rel);
	clock_gettime(CLOCK_REALTIME, &ts[0]);
	ts[1] = ts[0];
	ts[1].tv_sec += bump++;
	utimensat(AT_FDCWD, path, ts, 0);
}

static inline void rm_tree(void)
{
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", root);
}

/* Writes the scripts, builds cfg and a loaded host. 0, or -1 (reported). */
static inline int fixture_setup(void)
{
	char err[512], path[512];

	log_set_level(getenv("GENRELAY_TEST_VERBOSE") ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR);
	if (!mkdtemp(root)) {
		perror("mkdtemp");
		return -1;
	}
	const char *dirs[] = { "providers", "hooks", "lib", "fronts" };
	for (int i = 0; i < 4; i++) {
		snprintf(path, sizeof path, "%s/%s", root, dirs[i]);
		mkdir(path, 0700);
	}
	write_file("providers/good.lua", good_lua);
	write_file("providers/evil.lua", evil_lua);
	write_file("hooks/default.lua", hook_lua);
	write_file("lib/util.lua", util_v1);
	write_file("lib/README", "not a lib");

	cfg = config_load(NULL, err, sizeof err);
	if (!cfg) {
		fprintf(stderr, "config: %s\n", err);
		return -1;
	}
	free(cfg->scripts);
	cfg->scripts = strdup(root);
	cfg->lua_instructions = 2000000;
	cfg->lua_memory_mb = 8;
	json_decref(cfg->providers);
	cfg->providers = J("{\"good\":{\"key\":\"good-secret\",\"base_url\":\"http://sim/good\",\"region\":\"eu\","
			   "\"webhook_secret\":\"ws\",\"Auth_Token\":\"t\",\"password\":\"p\"},"
			   "\"evil\":{\"key\":\"evil-secret\"}}");

	host = script_host_new(cfg);
	if (!host)
		return -1;
	return 0;
}

/* Loads every script of the fixture; reports and returns -1 on a failure. */
static inline int fixture_load(void)
{
	char err[1024];
	int rc = script_host_load(host, err, sizeof err);
	if (rc != 0)
		fprintf(stderr, "    load: %s\n", err);
	return rc;
}

static inline void fixture_teardown(void)
{
	script_host_free(host);
	config_free(cfg);
	rm_tree();
}

#endif
