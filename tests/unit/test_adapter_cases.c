/*
 * test_adapter_cases.c: runs the adapter cases, recorded payloads in and
 * expected results out, against the shipped scripts (docs/scripts.md,
 * "Adapter cases").
 *
 * For every CASES/NAME.json ({kind, name, config, script?, cases: [{name, fn, args,
 * ctx? {callback_url, keys, now}, expect? | expect_error?}]}) it loads SCRIPTS with a configuration
 * whose providers[name] is the file's config, runs each case through
 * script_call and matches `expect` as a subset (script_json_subset) or
 * `expect_error` as a substring of the error. Each failure prints the file
 * and case name. A file with "script": "PATH" (relative to CASES) runs
 * against that script instead, loaded beside SCRIPTS/lib (so lib helpers
 * such as lib/standard_webhooks.lua are tested through an adapter). It fails when there are no case files, and when any script
 * under SCRIPTS does not load (its examples included).
 *
 * SCRIPTS is $GENRELAY_SCRIPTS_DIR or $GENRELAY_SRC/scripts; CASES is
 * $GENRELAY_CASES_DIR or $GENRELAY_SRC/tests/adapter_cases ($GENRELAY_SRC defaults
 * to "."). Without either variable it then runs docs/examples/tests against
 * docs/examples (the Lumen example of docs/providers.md).
 * $GENRELAY_CASE_FILTER runs only case files whose name contains it.
 */
#include "check.h"
#include "config.h"
#include "log.h"
#include "script.h"

#include <dirent.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char scripts_dir[1024], cases_dir[1024];

static int is_json_file(const struct dirent *d)
{
	size_t n = strlen(d->d_name);
	return n > 5 && d->d_name[0] != '.' && strcmp(d->d_name + n - 5, ".json") == 0;
}

/* A default configuration pointing at dir, with providers (taken). */
static struct config *make_config(const char *dir, json_t *providers)
{
	char err[256];
	struct config *c = config_load(NULL, err, sizeof err);
	if (!c) {
		fprintf(stderr, "config: %s\n", err);
		json_decref(providers);
		return NULL;
	}
	free(c->scripts);
	c->scripts = strdup(dir);
	json_decref(c->providers);
	c->providers = providers ? providers : json_object();
	return c;
}

/*
 * A scripts directory in tmpl (mkdtemp template, rewritten) holding
 * SCRIPTS/lib and the one script rel (relative to CASES) as KIND/NAME.lua,
 * both as symbolic links. 0 or -1.
 */
static int fixture_dir(char *tmpl, enum script_kind k, const char *name, const char *rel)
{
	char a[2048], b[2048];
	if (!mkdtemp(tmpl))
		return -1;
	snprintf(a, sizeof a, "%s/lib", scripts_dir);
	snprintf(b, sizeof b, "%s/lib", tmpl);
	if (a[0] != '/' && realpath(scripts_dir, a))
		strncat(a, "/lib", sizeof a - strlen(a) - 1);
	if (symlink(a, b) < 0)
		return -1;
	snprintf(b, sizeof b, "%s/%s", tmpl, k == SCRIPT_PROVIDER ? "providers" : "hooks");
	if (mkdir(b, 0700) < 0)
		return -1;
	snprintf(a, sizeof a, "%s/%s", cases_dir, rel);
	{
		char abs[PATH_MAX];
		if (!realpath(a, abs))
			return -1;
		snprintf(b, sizeof b, "%s/%s/%s.lua", tmpl, k == SCRIPT_PROVIDER ? "providers" : "hooks",
			 name);
		return symlink(abs, b);
	}
}

/* Removes what fixture_dir made. */
static void fixture_remove(const char *dir)
{
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
}

/* Every script loads (and passes its own examples) with an empty config. */
static void check_all_load(void)
{
	char err[1024];
	struct config *c = make_config(scripts_dir, NULL);
	struct script_host *h;
	json_t *list, *v;
	size_t i;

	if (!c) {
		CHECK(0);
		return;
	}
	h = script_host_new(c);
	int rc = script_host_load(h, err, sizeof err);
	CHECK_EQ_INT(rc, 0);
	list = script_host_list(h);
	json_array_foreach(list, i, v) {
		json_t *e = json_object_get(v, "last_error");
		if (json_is_string(e))
			fprintf(stderr, "%s %s does not load: %s\n",
				json_string_value(json_object_get(v, "kind")),
				json_string_value(json_object_get(v, "name")), json_string_value(e));
	}
	if (rc != 0 && json_array_size(list) == 0)
		fprintf(stderr, "scripts: %s\n", err);
	CHECK(json_array_size(list) > 0);
	json_decref(list);
	script_host_free(h);
	config_free(c);
}

/* Runs one case; returns 1 when it passed. */
static int run_case(struct script_host *h, enum script_kind kind, const char *script,
		    const char *file, size_t idx, json_t *cs)
{
	json_t *fn = json_object_get(cs, "fn"), *args = json_object_get(cs, "args");
	json_t *expect = json_object_get(cs, "expect"), *experr = json_object_get(cs, "expect_error");
	json_t *jctx = json_object_get(cs, "ctx"), *nm = json_object_get(cs, "name");
	json_t *out = NULL, **argv = NULL;
	struct script_ctx ctx = { .provider = kind == SCRIPT_PROVIDER ? script : NULL };
	char label[300], err[2048] = "", where[512];
	size_t nargs = 0;
	int rc, ok = 0;

	snprintf(label, sizeof label, "%s: case %zu '%s'", file, idx + 1,
		 json_is_string(nm) ? json_string_value(nm) : "(no name)");
	if (!json_is_string(fn) || (args && !json_is_array(args)) ||
	    (experr && !json_is_string(experr)) || (jctx && !json_is_object(jctx))) {
		fprintf(stderr, "%s: needs fn (string), args (array), ctx (object), expect_error (string)\n",
			label);
		return 0;
	}
	if (jctx) {
		json_t *cb = json_object_get(jctx, "callback_url"), *keys = json_object_get(jctx, "keys");
		json_t *now = json_object_get(jctx, "now");
		ctx.callback_url = json_is_string(cb) ? json_string_value(cb) : NULL;
		ctx.keys = json_is_array(keys) ? keys : NULL;
		ctx.now = json_is_number(now) ? json_number_value(now) : 0;
	}
	nargs = json_array_size(args);
	argv = calloc(nargs + 1, sizeof *argv);
	if (!argv)
		return 0;
	for (size_t i = 0; i < nargs; i++)
		argv[i] = json_array_get(args, i);
	rc = script_call(h, kind, script, json_string_value(fn), argv, nargs, &ctx, &out, err,
			 sizeof err);
	free(argv);

	if (experr) {
		if (rc == -1 && strstr(err, json_string_value(experr)))
			ok = 1;
		else if (rc == 0)
			fprintf(stderr, "%s: expected an error containing \"%s\", got none\n", label,
				json_string_value(experr));
		else
			fprintf(stderr, "%s: expected an error containing \"%s\", got: %s\n", label,
				json_string_value(experr), err);
	} else if (rc != 0) {
		fprintf(stderr, "%s: %s(): %s\n", label, json_string_value(fn), err);
	} else if (expect && !script_json_subset(expect, out, where, sizeof where)) {
		char *got = json_dumps(out, JSON_ENCODE_ANY | JSON_COMPACT);
		fprintf(stderr, "%s: %s\n    got: %.2000s%s%s\n", label, where, got ? got : "?",
			err[0] ? "\n    second result: " : "", err);
		free(got);
	} else {
		ok = 1;
	}
	json_decref(out);
	return ok;
}

/* Runs every case of one file; returns the number of cases run. */
static size_t run_file(const char *file)
{
	char path[2048];
	json_error_t je;
	json_t *root, *kind, *name, *conf, *cases, *providers;
	struct config *c;
	struct script_host *h;
	enum script_kind k;
	size_t ran = 0;
	char fixture[] = "/tmp/genrelay-cases-XXXXXX";
	const char *dir = scripts_dir;

	snprintf(path, sizeof path, "%s/%s", cases_dir, file);
	root = json_load_file(path, JSON_ALLOW_NUL, &je);
	if (!root) {
		fprintf(stderr, "%s:%d: %s\n", file, je.line, je.text);
		CHECK(0);
		return 0;
	}
	kind = json_object_get(root, "kind");
	name = json_object_get(root, "name");
	conf = json_object_get(root, "config");
	cases = json_object_get(root, "cases");
	if (!json_is_string(kind) || !json_is_string(name) || (conf && !json_is_object(conf)) ||
	    !json_is_array(cases) || json_array_size(cases) == 0) {
		fprintf(stderr, "%s: needs kind, name, config (object) and a non-empty cases array\n", file);
		CHECK(0);
		json_decref(root);
		return 0;
	}
	if (strcmp(json_string_value(kind), "provider") == 0) {
		k = SCRIPT_PROVIDER;
	} else if (strcmp(json_string_value(kind), "hook") == 0) {
		k = SCRIPT_HOOK;
	} else {
		fprintf(stderr, "%s: kind must be \"provider\" or \"hook\"\n", file);
		CHECK(0);
		json_decref(root);
		return 0;
	}
	providers = json_object();
	if (k == SCRIPT_PROVIDER)
		json_object_set(providers, json_string_value(name), conf ? conf : json_object());
	if (json_is_string(json_object_get(root, "script"))) {
		if (fixture_dir(fixture, k, json_string_value(name),
				json_string_value(json_object_get(root, "script"))) < 0) {
			fprintf(stderr, "%s: cannot set up script %s\n", file,
				json_string_value(json_object_get(root, "script")));
			CHECK(0);
			json_decref(providers);
			json_decref(root);
			return 0;
		}
		dir = fixture;
	}
	c = make_config(dir, providers);
	h = c ? script_host_new(c) : NULL;
	if (!h) {
		CHECK(0);
		config_free(c);
		json_decref(root);
		return 0;
	}
	{
		char err[1024];
		script_host_load(h, err, sizeof err);
	}
	if (!script_exists(h, k, json_string_value(name))) {
		json_t *list = script_host_list(h), *v;
		size_t i;
		const char *why = "no such file";
		json_array_foreach(list, i, v)
			if (strcmp(json_string_value(json_object_get(v, "name")), json_string_value(name)) == 0 &&
			    json_is_string(json_object_get(v, "last_error")))
				why = json_string_value(json_object_get(v, "last_error"));
		fprintf(stderr, "%s: %s script %s is not loaded: %s\n", file, json_string_value(kind),
			json_string_value(name), why);
		CHECK(0);
		json_decref(list);
	} else {
		json_t *cs;
		size_t i;
		json_array_foreach(cases, i, cs) {
			CHECK(run_case(h, k, json_string_value(name), file, i, cs));
			ran++;
		}
	}
	script_host_free(h);
	config_free(c);
	json_decref(root);
	if (dir == fixture)
		fixture_remove(fixture);
	return ran;
}

/* Runs every case file of cases_dir against scripts_dir; returns the
 * number of cases run. */
static size_t run_dir(const char *filter)
{
	struct dirent **files = NULL;
	size_t total = 0;
	int n = scandir(cases_dir, &files, is_json_file, alphasort);
	if (n <= 0) {
		fprintf(stderr, "no case files (*.json) in %s\n", cases_dir);
		CHECK(n > 0);
		free(files);
		return 0;
	}
	check_all_load();
	for (int i = 0; i < n; i++) {
		if (!filter || strstr(files[i]->d_name, filter))
			total += run_file(files[i]->d_name);
		free(files[i]);
	}
	free(files);
	printf("%s: %d case files, %zu cases\n", cases_dir, n, total);
	return total;
}

int main(void)
{
	const char *src = getenv("GENRELAY_SRC") ? getenv("GENRELAY_SRC") : ".";
	const char *filter = getenv("GENRELAY_CASE_FILTER");
	size_t total;

	log_set_level(getenv("GENRELAY_TEST_VERBOSE") ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR);
	if (getenv("GENRELAY_SCRIPTS_DIR"))
		snprintf(scripts_dir, sizeof scripts_dir, "%s", getenv("GENRELAY_SCRIPTS_DIR"));
	else
		snprintf(scripts_dir, sizeof scripts_dir, "%s/scripts", src);
	if (getenv("GENRELAY_CASES_DIR"))
		snprintf(cases_dir, sizeof cases_dir, "%s", getenv("GENRELAY_CASES_DIR"));
	else
		snprintf(cases_dir, sizeof cases_dir, "%s/tests/adapter_cases", src);
	total = run_dir(filter);
	CHECK(total > 0);
	/* the worked example of docs/providers.md, Lumen, with its own cases */
	if (!getenv("GENRELAY_SCRIPTS_DIR") && !getenv("GENRELAY_CASES_DIR")) {
		snprintf(scripts_dir, sizeof scripts_dir, "%s/docs/examples", src);
		snprintf(cases_dir, sizeof cases_dir, "%s/docs/examples/tests", src);
		CHECK(run_dir(filter) > 0 || filter);
	}
	return check_done();
}
