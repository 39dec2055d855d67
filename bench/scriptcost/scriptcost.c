/*
 * scriptcost.c: the Lua time genrelay spends per job, against the cost of
 * merely decoding and encoding the same payloads with lua-cjson.
 *
 *   scriptcost --scripts DIR [--iterations N] [--rounds R]
 *
 * The scripts are loaded through script.h exactly as a worker loads them
 * (script_host_new + script_host_load on a config read by config_load from a
 * small file written to /tmp). One "job" is the three script calls every
 * fal job with a webhook costs (four calls):
 *
 *   providers/fal.lua submit(job, ctx)            the submit mapping
 *   providers/fal.lua on_submitted(res, job, ctx) reading fal's submit answer
 *   providers/fal.lua on_callback(req, job, ctx)  parsing fal's webhook
 *   hooks/default.lua transform(event, ctx)       the default webhook hook
 *
 * on realistic payloads (a ~200 byte flux input, the callback provsim posts,
 * the job object genrelay delivers). The arguments are built once, as the
 * core builds them (engine_job_arg, job_to_json); the timed part is
 * script_call() itself: jansson -> Lua, the script, Lua -> jansson.
 *
 * The ceiling is a plain Lua state with cjson alone (lua-cjson 2.1, the module
 * scripts use), decoding the JSON text of every argument of those three calls
 * (job, req, job, event) and encoding each decoded table again, driven from C
 * with one lua_pcall per operation like script_call.
 *
 * Rounds alternate (script, cjson, script, cjson ...); the median round of each
 * is reported, in CPU time of the thread (CLOCK_THREAD_CPUTIME_ID). Prints
 * one JSON object to stdout.
 */
#include "config.h"
#include "engine.h"
#include "job.h"
#include "script.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int luaopen_cjson(lua_State *L);

#define MAX_ROUNDS 15

/* CPU time of this thread, not wall time: on a shared machine preemption
 * would otherwise count as script time. */
static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void die(const char *what, const char *err)
{
	fprintf(stderr, "scriptcost: %s: %s\n", what, err);
	exit(1);
}

static const char callback_body[] =
	"{\"request_id\":\"3f1c2a9e-7b44-4c1e-9a51-2d8f0c6b7e13\","
	"\"gateway_request_id\":\"3f1c2a9e-7b44-4c1e-9a51-2d8f0c6b7e13\",\"status\":\"OK\","
	"\"payload\":{\"images\":[{\"url\":\"http://127.0.0.1:41234/files/5b0d9c1e.png\","
	"\"content_type\":\"image/png\",\"file_name\":\"5b0d9c1e.png\",\"file_size\":68,"
	"\"width\":1,\"height\":1}],\"timings\":{\"inference\":0.2},\"seed\":42,"
	"\"has_nsfw_concepts\":[false],\"prompt\":\"a lighthouse on a cliff at dusk, long exposure, "
	"waves crashing below, volumetric light\"},\"error\":null}";

struct call {
	enum script_kind kind;
	const char *script, *fn;
	json_t *args[2];
	size_t nargs;
	const struct script_ctx *ctx;
	double ns[MAX_ROUNDS];
};

/* Runs one call n times; returns ns per call. */
static double time_call(struct script_host *h, struct call *c, long n)
{
	char err[512];
	double t0 = now_ns();
	for (long i = 0; i < n; i++) {
		json_t *out = NULL;
		if (script_call(h, c->kind, c->script, c->fn, c->args, c->nargs, c->ctx, &out,
				err, sizeof err) < 0)
			die(c->fn, err);
		json_decref(out);
	}
	return (now_ns() - t0) / (double)n;
}

/* cjson.decode(text) then cjson.encode(result), n times; ns per round trip. */
static double time_cjson(lua_State *L, const char *text, long n)
{
	lua_getglobal(L, "cjson");
	lua_getfield(L, -1, "decode");
	lua_getfield(L, -2, "encode");
	int dec = lua_gettop(L) - 1, enc = lua_gettop(L);
	double t0 = now_ns();
	for (long i = 0; i < n; i++) {
		lua_pushvalue(L, dec);
		lua_pushstring(L, text);
		if (lua_pcall(L, 1, 1, 0) != LUA_OK)
			die("cjson.decode", lua_tostring(L, -1));
		lua_pushvalue(L, enc);
		lua_insert(L, -2);
		if (lua_pcall(L, 1, 1, 0) != LUA_OK)
			die("cjson.encode", lua_tostring(L, -1));
		lua_pop(L, 1);
	}
	double t = (now_ns() - t0) / (double)n;
	lua_pop(L, 3);
	return t;
}

int main(int argc, char **argv)
{
	const char *scripts = NULL;
	long iters = 20000;
	int rounds = 5;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--scripts") == 0 && i + 1 < argc)
			scripts = argv[++i];
		else if (strcmp(argv[i], "--iterations") == 0 && i + 1 < argc)
			iters = atol(argv[++i]);
		else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
			rounds = atoi(argv[++i]);
		else
			scripts = NULL, i = argc;
	}
	if (!scripts || iters < 1 || rounds < 1 || rounds > MAX_ROUNDS) {
		fprintf(stderr, "usage: scriptcost --scripts DIR [--iterations N] [--rounds R<=%d]\n",
			MAX_ROUNDS);
		return 2;
	}

	/* A config whose scripts are DIR, with fal configured as in production. */
	char cfgpath[] = "/tmp/genrelay-scriptcost-XXXXXX";
	int fd = mkstemp(cfgpath);
	if (fd < 0)
		die("mkstemp", "cannot create the config file");
	FILE *f = fdopen(fd, "w");
	fprintf(f, "scripts = \"%s\"\n"
		   "providers = { fal = { base_url = \"https://queue.fal.run\", key = \"bench-key\","
		   " jwks_url = \"https://rest.alpha.fal.ai/.well-known/jwks.json\" } }\n",
		scripts);
	fclose(f);
	char err[512];
	struct config *cfg = config_load(cfgpath, err, sizeof err);
	unlink(cfgpath);
	if (!cfg)
		die("config", err);
	struct script_host *h = script_host_new(cfg);
	if (!h || script_host_load(h, err, sizeof err) < 0)
		die("loading scripts", h ? err : "no host");
	if (!script_exists(h, SCRIPT_PROVIDER, "fal") || !script_exists(h, SCRIPT_HOOK, "default"))
		die("scripts", "providers/fal.lua or hooks/default.lua missing");

	/* The job as genrelay stores it once fal accepted it. */
	struct job j;
	memset(&j, 0, sizeof j);
	snprintf(j.id, sizeof j.id, "job_01JDBENCH0000000000000001");
	j.customer = "acme";
	j.model_id = "fal-ai/flux/dev";
	j.targets = "[\"fal:fal-ai/flux/dev\"]";
	j.provider = "fal";
	j.model = "fal-ai/flux/dev";
	j.status = JOB_PROCESSING;
	j.request_id = "3f1c2a9e-7b44-4c1e-9a51-2d8f0c6b7e13";
	j.track_id = "order-77812";
	j.input = "{\"prompt\":\"a lighthouse on a cliff at dusk, long exposure, waves crashing below, "
		  "volumetric light\",\"image_size\":\"landscape_4_3\",\"num_inference_steps\":28,"
		  "\"guidance_scale\":3.5,\"num_images\":1,\"seed\":42}";
	j.webhook_url = "https://hooks.example.com/genrelay";
	j.hook = "default";
	j.data = "{\"app\":\"fal-ai/flux\"}";
	j.created_at = 1732300000000;
	j.updated_at = 1732300000050;
	json_t *jarg = engine_job_arg(&j);

	/* The callback request as callbacks.c hands it over. */
	json_t *req = json_object(), *hdr = json_object();
	json_object_set_new(hdr, "host", json_string("127.0.0.1:8080"));
	json_object_set_new(hdr, "content-type", json_string("application/json"));
	json_object_set_new(hdr, "content-length", json_integer((json_int_t)strlen(callback_body)));
	json_object_set_new(hdr, "x-fal-webhook-request-id", json_string(j.request_id));
	json_object_set_new(hdr, "x-fal-webhook-user-id", json_string("provsim-user"));
	json_object_set_new(hdr, "x-fal-webhook-timestamp", json_string("1732300004"));
	json_object_set_new(hdr, "x-fal-webhook-signature",
			    json_string("9b1f0e6c1d2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4"
					"d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4"));
	json_object_set_new(req, "headers", hdr);
	json_object_set_new(req, "query", json_object());
	json_object_set_new(req, "body", json_string(callback_body));
	json_object_set_new(req, "json", json_loads(callback_body, 0, NULL));

	/* The delivered event: the finished job object plus its type. */
	struct job done = j;
	done.status = JOB_SUCCEEDED;
	done.output = "{\"type\":\"image\",\"items\":[{\"type\":\"image\",\"url\":"
		      "\"http://127.0.0.1:41234/files/5b0d9c1e.png\",\"content_type\":\"image/png\"}]}";
	done.completed_at = 1732300004000;
	json_t *event = job_to_json(&done);
	json_object_set_new(event, "type", json_string("job.succeeded"));

	struct script_ctx pctx = { .provider = "fal",
		.callback_url = "http://127.0.0.1:8080/v1/callbacks/fal/job_01JDBENCH0000000000000001/"
				"Zm9vYmFyYmF6cXV4MDEyMzQ1Njc4OWFiY2RlZg" };
	struct script_ctx hctx = { 0 };

	/* fal's submit answer as engine.c's response_arg hands it over. */
	static const char submit_body[] =
		"{\"request_id\":\"3f1c2a9e-7b44-4c1e-9a51-2d8f0c6b7e13\",\"gateway_request_id\":"
		"\"3f1c2a9e-7b44-4c1e-9a51-2d8f0c6b7e13\",\"status\":\"IN_QUEUE\",\"queue_position\":0}";
	json_t *res = json_object(), *rh = json_object();
	json_object_set_new(res, "status", json_integer(200));
	json_object_set_new(res, "url", json_string("https://queue.fal.run/fal-ai/flux/dev"));
	json_object_set_new(rh, "content-type", json_string("application/json"));
	json_object_set_new(rh, "content-length", json_integer((json_int_t)strlen(submit_body)));
	json_object_set_new(res, "headers", rh);
	json_object_set_new(res, "body", json_string(submit_body));
	json_object_set_new(res, "json", json_loads(submit_body, 0, NULL));

	enum { NCALLS = 4 };
	struct call calls[NCALLS] = {
		{ SCRIPT_PROVIDER, "fal", "submit", { jarg, NULL }, 1, &pctx, { 0 } },
		{ SCRIPT_PROVIDER, "fal", "on_submitted", { res, jarg }, 2, &pctx, { 0 } },
		{ SCRIPT_PROVIDER, "fal", "on_callback", { req, jarg }, 2, &pctx, { 0 } },
		{ SCRIPT_HOOK, "default", "transform", { event, NULL }, 1, &hctx, { 0 } },
	};

	/* The ceiling's payloads: the JSON text of every argument above. */
	char *texts[4] = { json_dumps(jarg, JSON_COMPACT), json_dumps(req, JSON_COMPACT),
			   json_dumps(jarg, JSON_COMPACT), json_dumps(event, JSON_COMPACT) };
	lua_State *L = luaL_newstate();
	luaL_openlibs(L);
	luaL_requiref(L, "cjson", luaopen_cjson, 1);
	lua_pop(L, 1);

	/* Warm-up: a tenth of a round of each. */
	for (int c = 0; c < NCALLS; c++)
		time_call(h, &calls[c], iters / 10 + 1);
	for (int t = 0; t < 4; t++)
		time_cjson(L, texts[t], iters / 10 + 1);

	double lua_tot[MAX_ROUNDS], cj_tot[MAX_ROUNDS], cj[4][MAX_ROUNDS];
	for (int r = 0; r < rounds; r++) {
		lua_tot[r] = 0;
		for (int c = 0; c < NCALLS; c++) {
			calls[c].ns[r] = time_call(h, &calls[c], iters);
			/* The script-cost figure keeps its three calls (comparable with
			 * earlier runs); on_submitted is reported on its own. */
			if (c != 1)
				lua_tot[r] += calls[c].ns[r];
		}
		cj_tot[r] = 0;
		for (int t = 0; t < 4; t++) {
			cj[t][r] = time_cjson(L, texts[t], iters);
			cj_tot[r] += cj[t][r];
		}
	}
	double lua_ns = median(lua_tot, rounds), cj_ns = median(cj_tot, rounds);
	printf("{\"iterations\":%ld,\"rounds\":%d,\"lua_ns_per_job\":%.0f,\"cjson_ns_per_job\":%.0f,"
	       "\"ratio\":%.3f,\"lua_ns\":{\"submit\":%.0f,\"on_submitted\":%.0f,\"on_callback\":%.0f,\"transform\":%.0f},"
	       "\"cjson_ns\":{\"job\":%.0f,\"callback_req\":%.0f,\"event\":%.0f},"
	       "\"payload_bytes\":{\"job\":%zu,\"callback_req\":%zu,\"event\":%zu}}\n",
	       iters, rounds, lua_ns, cj_ns, lua_ns / cj_ns, median(calls[0].ns, rounds),
	       median(calls[1].ns, rounds), median(calls[2].ns, rounds), median(calls[3].ns, rounds),
	       median(cj[0], rounds), median(cj[1], rounds), median(cj[3], rounds),
	       strlen(texts[0]), strlen(texts[1]), strlen(texts[3]));
	for (int t = 0; t < 4; t++)
		free(texts[t]);
	lua_close(L);
	json_decref(jarg);
	json_decref(req);
	json_decref(res);
	json_decref(event);
	script_host_free(h);
	config_free(cfg);
	return 0;
}
