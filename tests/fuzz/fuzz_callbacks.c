/*
 * fuzz_callbacks.c: libFuzzer target for provider callback parsing through
 * the Lua host: the request table is built by the handler's own builder
 * (callbacks_request_arg), each provider script's verify() and
 * on_callback() (the real scripts/providers/NAME.lua) run through the
 * handler's own path (callbacks_parse), and a result is applied to a job
 * with jobflow_apply_result(), as callbacks_handle() does.
 *
 * Input: byte 0 picks the provider (fal, krea, modelslab, artificialstudio,
 * abstrakt); then a header block ("name: value" lines) up to the first empty
 * line; then, when the next line starts with '?', a query string
 * ("a=1&b=2", one line); the rest is the body. Seeds in
 * tests/fuzz/corpus/callbacks are the real callbacks provsim posts.
 *
 * Beyond "never crash": callbacks_parse answers one of its verdicts (a
 * script error is fine, the host must contain it), error text is
 * terminated, and an applied result leaves the job in a valid state with an
 * error code of the documented shape when it failed.
 */
#include "callbacks.h"
#include "config.h"
#include "jobflow.h"
#include "job.h"
#include "log.h"
#include "script.h"

#include <ctype.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef GENRELAY_SRC_DIR
#define GENRELAY_SRC_DIR "."
#endif

static const char *const providers[] = { "fal", "krea", "modelslab", "artificialstudio", "abstrakt" };
static struct config *cfg;
static struct script_host *host;
static json_t *jwks_keys;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char err[512], path[1024];
	(void)argc;
	(void)argv;
	log_set_level(LOG_LEVEL_ERROR + 1); /* quiet: script errors are expected */
	cfg = config_load(NULL, err, sizeof err);
	if (!cfg) {
		fprintf(stderr, "fuzz_callbacks: config: %s\n", err);
		abort();
	}
	const char *src = getenv("GENRELAY_SRC");
	snprintf(path, sizeof path, "%s/scripts", src ? src : GENRELAY_SRC_DIR);
	free(cfg->scripts);
	cfg->scripts = strdup(path);
	cfg->lua_instructions = 1000000;
	cfg->lua_memory_mb = 16;
	json_decref(cfg->providers);
	cfg->providers = json_pack(
		"{s:{s:s,s:s,s:s},s:{s:s,s:s},s:{s:s,s:s},s:{s:s,s:s},s:{s:s,s:s,s:s}}",
		"fal", "base_url", "http://127.0.0.1:9/fal", "key", "fal-key", "jwks_url",
		"http://127.0.0.1:9/fal/.well-known/jwks.json",
		"krea", "base_url", "http://127.0.0.1:9/krea", "key", "krea-key",
		"modelslab", "base_url", "http://127.0.0.1:9/modelslab/api/v6", "key", "ml-key",
		"artificialstudio", "base_url", "http://127.0.0.1:9/artificialstudio", "key", "as-key",
		"abstrakt", "base_url", "http://127.0.0.1:9/abstrakt", "key", "ab-key",
		"webhook_secret", "abstrakt-sim-secret");
	host = script_host_new(cfg);
	if (!host || script_host_load(host, err, sizeof err) < 0) {
		fprintf(stderr, "fuzz_callbacks: scripts under %s: %s\n", path, err);
		abort();
	}
	for (size_t i = 0; i < sizeof providers / sizeof providers[0]; i++)
		if (!script_exists(host, SCRIPT_PROVIDER, providers[i])) {
			fprintf(stderr, "fuzz_callbacks: no script for %s\n", providers[i]);
			abort();
		}
	/* A fixed Ed25519 key (RFC 8032 test 1), as a JWKS "keys" array. */
	jwks_keys = json_pack("[{s:s,s:s,s:s}]", "kty", "OKP", "crv", "Ed25519", "x",
			      "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo");
	return 0;
}

#define FIELDS_MAX 64

/* Splits "name: value" into a field (both copied into buf, NUL-terminated,
 * as the HTTP server hands them over: any bytes). 0, or -1 for no colon. */
static int header_field(const char *line, size_t n, struct callbacks_field *f, char **buf)
{
	const char *colon = memchr(line, ':', n);
	if (!colon || colon == line)
		return -1;
	const char *v = colon + 1, *e = line + n;
	while (v < e && (*v == ' ' || *v == '\t'))
		v++;
	while (e > v && (e[-1] == '\r' || e[-1] == ' '))
		e--;
	char *name = strndup(line, (size_t)(colon - line));
	char *val = strndup(v, (size_t)(e - v));
	buf[0] = name;
	buf[1] = val;
	f->name = name;
	f->value = val;
	return name && val ? 0 : -1;
}

/* Splits a query string into fields ("a=1&b"), copies into buf. */
static size_t query_fields(const char *p, size_t n, struct callbacks_field *f, char **buf,
			   size_t max)
{
	size_t k = 0;
	while (n > 0 && k < max) {
		const char *amp = memchr(p, '&', n);
		size_t len = amp ? (size_t)(amp - p) : n;
		const char *eq = memchr(p, '=', len);
		char *name = strndup(p, eq ? (size_t)(eq - p) : len);
		char *val = eq ? strndup(eq + 1, len - (size_t)(eq - p) - 1) : strdup("");
		buf[2 * k] = name;
		buf[2 * k + 1] = val;
		if (name && val && *name) {
			f[k].name = name;
			f[k].value = val;
			k++;
		} else {
			free(name);
			free(val);
			buf[2 * k] = buf[2 * k + 1] = NULL;
		}
		p += amp ? len + 1 : len;
		n -= amp ? len + 1 : len;
	}
	return k;
}

static void check_err(const char *err, size_t len)
{
	if (strnlen(err, len) == len)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const char *prov = providers[data[0] % (sizeof providers / sizeof providers[0])];
	const char *p = (const char *)data + 1, *end = (const char *)data + size;
	struct callbacks_field hf[FIELDS_MAX], qf[FIELDS_MAX];
	char *hbuf[2 * FIELDS_MAX] = {0}, *qbuf[2 * FIELDS_MAX] = {0};
	size_t nh = 0, nq = 0;
	/* Header lines until an empty line. */
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		size_t n = (size_t)(le - p);
		if (n && p[n - 1] == '\r')
			n--;
		if (n == 0) {
			p = nl ? nl + 1 : end;
			break;
		}
		if (nh < FIELDS_MAX && header_field(p, n, &hf[nh], &hbuf[2 * nh]) == 0)
			nh++;
		p = nl ? nl + 1 : end;
	}
	if (p < end && *p == '?') {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		nq = query_fields(p + 1, (size_t)(le - p - 1), qf, qbuf, FIELDS_MAX);
		p = nl ? nl + 1 : end;
	}
	json_t *req = callbacks_request_arg(hf, nh, qf, nq, p, (size_t)(end - p));

	struct job j;
	memset(&j, 0, sizeof j);
	snprintf(j.id, sizeof j.id, "job_fuzz");
	j.customer = strdup("acme");
	j.model_id = strdup("m");
	j.targets = strdup("[]");
	j.provider = strdup(prov);
	j.model = strdup(strcmp(prov, "fal") == 0 ? "fal-ai/flux/dev" : "bfl/flux-1-dev");
	j.status = JOB_PROCESSING;
	j.request_id = strdup("req-1");
	j.input = strdup("{\"prompt\":\"fuzz\"}");
	j.data = strdup("{}");
	json_t *jarg = job_script_arg(&j, NULL);
	json_t *keys = strcmp(prov, "fal") == 0 ? jwks_keys : NULL;
	char err[512];
	json_t *res = NULL;
	if (script_has_fn(host, SCRIPT_PROVIDER, prov, "verify")) {
		/* The adapter's contract: verify answers true or false (or nil),
		 * and a script error is contained. */
		json_t *args[2] = { req, jarg };
		struct script_ctx ctx = { .provider = prov, .keys = keys };
		memset(err, 'x', sizeof err);
		int rc = script_call(host, SCRIPT_PROVIDER, prov, "verify", args, 2, &ctx, &res, err, sizeof err);
		if (rc != 0 && rc != -1)
			abort();
		check_err(err, sizeof err);
		if (rc == 0 && !json_is_boolean(res) && !json_is_null(res))
			abort();
		json_decref(res);
		res = NULL;
	}
	memset(err, 'x', sizeof err);
	int v = callbacks_parse(host, prov, req, jarg, keys, &res, err, sizeof err);
	if (v != CALLBACKS_RESULT && v != CALLBACKS_SCRIPT_ERROR && v != CALLBACKS_REFUSED)
		abort();
	if ((v == CALLBACKS_RESULT) != (res != NULL))
		abort();
	check_err(err, sizeof err);
	if (v != CALLBACKS_RESULT && !err[0])
		abort(); /* a refusal or a script error always says why */
	if (v == CALLBACKS_RESULT && !json_is_null(res)) {
		int t = jobflow_apply_result(&j, res, 0, prov);
		if (t < -1 || t > 1)
			abort();
		if (j.status < JOB_QUEUED || j.status > JOB_CANCELED)
			abort();
		if (j.status == JOB_FAILED) {
			const char *c = j.error_code;
			if (!c || !*c || strlen(c) > 64)
				abort();
			for (; *c; c++)
				if (!((*c >= 'A' && *c <= 'Z') || *c == '_'))
					abort();
		}
		json_t *o = job_to_json(&j);
		char *text = json_dumps(o, JSON_COMPACT);
		if (!text)
			abort();
		free(text);
		json_decref(o);
	}
	json_decref(res);
	json_decref(jarg);
	json_decref(req);
	job_clear(&j);
	for (size_t i = 0; i < 2 * FIELDS_MAX; i++) {
		free(hbuf[i]);
		free(qbuf[i]);
	}
	return 0;
}
