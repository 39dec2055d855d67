/*
 * test_script_contract.c: the load-time checks of the script contract
 * (core/script_contract.c): the parameter order rule for ctx and job, the
 * removed ctx_job, the provider fields errors and on_error; adapters written
 * against the documented order, or finding ctx by its shape, keep loading
 * and working; script_verify calls verify(req, ctx, job).
 */
#include "check.h"
#include "script_fixture.h"

static const char prov_tail[] =
	"  submit = function(job, ctx) return {} end,\n"
	"  on_submitted = function(res, job, ctx) return { state = 'processing', request_id = 'r' } end,\n"
	"  on_callback = function(req, job, ctx) return { state = 'processing' } end,\n";

/* Writes providers/NAME.lua as "return { name = NAME, <body> <prov_tail> }"
 * (hooks and fronts: body only) and refreshes. */
static void put(const char *rel, const char *name, const char *body, int provider)
{
	char text[4096];
	if (provider)
		snprintf(text, sizeof text, "return { name = '%s',\n%s%s}\n", name, body, prov_tail);
	else
		snprintf(text, sizeof text, "%s", body);
	write_file(rel, text);
	touch_later(rel);
	script_host_refresh(host);
}

/* rel must not load, with want in its last_error. */
static void refused(const char *rel, const char *name, enum script_kind kind, const char *body,
		    int provider, const char *want)
{
	char buf[1024];
	put(rel, name, body, provider);
	CHECK(!script_exists(host, kind, name));
	CHECK(last_error(name, buf, sizeof buf) != NULL);
	CHECK(strstr(buf, want) != NULL);
	if (!strstr(buf, want))
		fprintf(stderr, "    %s: last_error \"%s\"\n    want \"%s\"\n", rel, buf, want);
	remove_file(rel);
	script_host_refresh(host);
}

static void test_param_order(void)
{
	refused("providers/oldverify.lua", "oldverify", SCRIPT_PROVIDER,
		"  verify = function(req, job, ctx) return true end,\n", 1,
		"providers/oldverify.lua: verify(req, job, ctx) takes job as argument 2, but the core "
		"passes it as argument 3: write verify(req, ctx, job) (docs/scripts.md, \"The contract\")");
	refused("providers/twoverify.lua", "twoverify", SCRIPT_PROVIDER,
		"  verify = function(req, job) return true end,\n", 1,
		"verify(req, job) takes job as argument 2, but the core passes it as argument 3");
	refused("providers/ctxfirst.lua", "ctxfirst", SCRIPT_PROVIDER,
		"  poll = function(ctx, job) return {} end, on_polled = function(res, job, ctx) end,\n", 1,
		"poll(ctx, job) takes ctx as argument 1, but the core passes it as argument 2: write poll(job, ctx)");
	refused("providers/swapcb.lua", "swapcb", SCRIPT_PROVIDER,
		"  on_error = function(res, ctx, job) end,\n", 1,
		"on_error(res, ctx, job) takes ctx as argument 2");
	refused("hooks/swaphook.lua", "swaphook", SCRIPT_HOOK,
		"return { transform = function(ctx, event) return nil end }\n", 0,
		"hooks/swaphook.lua: transform(ctx, event) takes ctx as argument 1, but the core passes it "
		"as argument 2: write transform(event, ctx)");
	refused("fronts/swapfront.lua", "swapfront", SCRIPT_FRONT,
		"return { request = function(req, ctx) end, respond = function(reply, req, job, ctx) end,\n"
		"  error = function(err, req, ctx) end }\n", 0,
		"respond(reply, req, job, ctx) takes job as argument 3, but the core passes it as argument 2: "
		"write respond(reply, job, req, ctx)");

	/* other names, fewer parameters, varargs and non-contract functions are not judged */
	put("providers/free.lua", "free",
	    "  verify = function(req, a, b) local ctx = (type(a) == 'table' and a.secret) and a or b\n"
	    "    return ctx.secret('key') == 'free-secret' and b and b.id == 'job_1' end,\n"
	    "  poll = function(...) return {} end, on_polled = function(res) return { state = 'processing' } end,\n"
	    "  cancel = function(job) return nil end, helper = function(ctx, job) return 1 end,\n", 1);
	CHECK(script_exists(host, SCRIPT_PROVIDER, "free"));
	/* a hook naming its event `job` is fine: the event is the job object */
	put("hooks/jobhook.lua", "jobhook", "return { transform = function(job, ctx) return { body = job } end }\n", 0);
	CHECK(script_exists(host, SCRIPT_HOOK, "jobhook"));
	remove_file("hooks/jobhook.lua");
}

/* An adapter written as docs/scripts.md documents verify(req, ctx, job), and
 * one that finds ctx by its shape, both get ctx second through script_verify
 * and script_call. */
static void test_verify_order(void)
{
	char why[256];
	json_t *req = J("{\"headers\":{\"x-sig\":\"good\"}}"), *bad = J("{\"headers\":{\"x-sig\":\"no\"}}");
	json_t *job = J("{\"id\":\"job_1\"}");
	struct script_ctx ctx = { .provider = "good" };

	CHECK_EQ_INT(script_verify(host, "good", req, job, &ctx, why, sizeof why), 1);
	CHECK_STR_EQ(why, "");
	CHECK_EQ_INT(script_verify(host, "good", bad, job, &ctx, why, sizeof why), 0);
	CHECK_STR_EQ(why, "bad signature");
	CHECK_EQ_INT(script_verify(host, "good", bad, NULL, &ctx, why, sizeof why), 0);
	CHECK_EQ_INT(script_verify(host, "evil", req, job, &ctx, why, sizeof why), -2); /* no verify */
	CHECK_EQ_INT(script_verify(host, "nope", req, job, &ctx, why, sizeof why), -2);

	json_object_set_new(cfg->providers, "free", json_pack("{s:s}", "key", "free-secret"));
	touch_later("providers/free.lua");
	script_host_refresh(host);
	CHECK_EQ_INT(script_verify(host, "free", req, job, &ctx, why, sizeof why), 1);
	json_object_del(cfg->providers, "free");
	remove_file("providers/free.lua");
	script_host_refresh(host);

	put("providers/raises.lua", "raises", "  verify = function(req, ctx, job) error('no way') end,\n", 1);
	CHECK_EQ_INT(script_verify(host, "raises", req, job, &ctx, why, sizeof why), -1);
	CHECK(strstr(why, "providers/raises.lua:2: no way") != NULL);
	remove_file("providers/raises.lua");
	script_host_refresh(host);
	json_decref(req);
	json_decref(bad);
	json_decref(job);
}

static void test_ctx_job_gone(void)
{
	refused("providers/ctxjob.lua", "ctxjob", SCRIPT_PROVIDER,
		"  verify = function(req, ctx, job)\n    ctx, job = require('lib.util').ctx_job(ctx, job)\n"
		"    return true end,\n", 1,
		"providers/ctxjob.lua:3: ctx_job is gone from lib/util.lua: the core always calls "
		"verify(req, ctx, job), so delete the line that calls ctx_job");
	/* in a comment or a string it is only text */
	put("providers/ctxjobtext.lua", "ctxjobtext",
	    "  -- no U.ctx_job here any more\n  --[[ nor ctx_job here ]]\n  note = 'ctx_job', other = [[ctx_job]],\n", 1);
	CHECK(script_exists(host, SCRIPT_PROVIDER, "ctxjobtext"));
	remove_file("providers/ctxjobtext.lua");
	script_host_refresh(host);
}

static void test_provider_fields(void)
{
	refused("providers/errs.lua", "errs", SCRIPT_PROVIDER, "  errors = 'all',\n", 1,
		"errors must be \"core\" or \"script\" (the default)");
	refused("providers/onerr.lua", "onerr", SCRIPT_PROVIDER, "  on_error = 5,\n", 1,
		"on_error must be a function");
	put("providers/errscore.lua", "errscore", "  errors = 'core', callback = true,\n", 1);
	CHECK(script_exists(host, SCRIPT_PROVIDER, "errscore")); /* unknown fields are ignored */
	remove_file("providers/errscore.lua");
	script_host_refresh(host);
}

/* Settings without a copy. */
static void test_settings_ref(void)
{
	double v = -1;
	const json_t *s = script_provider_settings_ref(host, "good");
	CHECK(s != NULL);
	CHECK_STR_EQ(json_string_value(json_object_get(s, "base_url")), "http://sim/good");
	CHECK(json_object_get(s, "key") == NULL);
	CHECK(script_provider_settings_ref(host, "nope") == NULL);
	CHECK_EQ_INT(script_provider_number(host, "good", "timeout", &v), 0);
	CHECK(v == 5);
	v = -1;
	CHECK_EQ_INT(script_provider_number(host, "good", "base_url", &v), -1);
	CHECK_EQ_INT(script_provider_number(host, "good", "absent", &v), -1);
	CHECK_EQ_INT(script_provider_number(host, "nope", "timeout", &v), -1);
	CHECK(v == -1);
}

int main(void)
{
	if (fixture_setup() < 0)
		return 1;
	CHECK_EQ_INT(fixture_load(), 0);
	test_param_order();
	test_verify_order();
	test_ctx_job_gone();
	test_provider_fields();
	test_settings_ref();
	CHECK(ping_ok());
	fixture_teardown();
	return check_done();
}
