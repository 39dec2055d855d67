/*
 * cli_scripts.c: `genrelay scripts test`: runs one hook transform or one
 * provider step on a payload given on the command line and prints what it
 * returned, so a customer's webhook shape or an adapter change can be tried
 * before the file goes live. The file is loaded on its own through
 * script_host_new_file(), with the same sandbox, limits, checks and examples
 * as in the server.
 */
#include "cli_scripts.h"

#include "config.h"
#include "log.h"
#include "script.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EVENT_MAX (16 << 20) /* bytes of an --event payload read from a file */
#define NAME_MAX_LEN 64

static const char *const provider_fns[] = { "submit", "on_submitted", "on_callback",
	"on_polled", "poll", "cancel", "verify", NULL };

static void test_usage(FILE *f)
{
	fprintf(f,
		"usage: genrelay scripts test FILE --event JSON [--fn NAME] [--config FILE] [--ctx JSON]\n"
		"  FILE     DIR/hooks/NAME.lua (runs transform) or DIR/providers/NAME.lua (needs --fn)\n"
		"  --event  the payload: a JSON array is the argument list, anything else the\n"
		"           single argument (ctx is added as in the server); @PATH a file, - stdin\n"
		"  --fn     provider function: submit, on_submitted, on_callback, on_polled,\n"
		"           poll, cancel or verify\n"
		"  --config the configuration whose provider settings and limits apply\n"
		"  --ctx    {\"callback_url\": \"...\", \"keys\": [JWKS keys]} for provider steps\n"
		"Prints the result as JSON. Exit status: 0 the call returned, 1 the script\n"
		"failed to load or raised (the error on stderr), 2 a usage or input error.\n");
}

/* Reads all of f, at most EVENT_MAX bytes. Caller frees; NULL on failure. */
static char *read_all(FILE *f, size_t *len)
{
	size_t cap = 4096, n = 0;
	char *b = malloc(cap);
	while (b) {
		if (n == cap) {
			if (cap >= EVENT_MAX) {
				free(b);
				errno = EFBIG;
				return NULL;
			}
			cap *= 2;
			char *nb = realloc(b, cap);
			if (!nb) {
				free(b);
				return NULL;
			}
			b = nb;
		}
		size_t r = fread(b + n, 1, cap - n, f);
		n += r;
		if (r == 0) {
			if (ferror(f)) {
				free(b);
				return NULL;
			}
			break;
		}
	}
	*len = n;
	return b;
}

/*
 * Parses a JSON option value: the text itself, @PATH (a file) or - (stdin).
 * Returns a new reference or NULL after printing why.
 */
static json_t *json_arg(const char *opt, const char *v)
{
	json_error_t je;
	json_t *j;
	if (v[0] == '@' || strcmp(v, "-") == 0) {
		FILE *f = v[0] == '@' ? fopen(v + 1, "rb") : stdin;
		size_t len = 0;
		char *text = f ? read_all(f, &len) : NULL;
		int e = errno;
		if (f && f != stdin)
			fclose(f);
		if (!text) {
			fprintf(stderr, "genrelay: %s %s: %s\n", opt, v, strerror(e));
			return NULL;
		}
		j = json_loadb(text, len, JSON_DECODE_ANY, &je);
		free(text);
	} else {
		j = json_loads(v, JSON_DECODE_ANY, &je);
	}
	if (!j)
		fprintf(stderr, "genrelay: %s: not JSON: %s (line %d, column %d)\n", opt,
			je.text, je.line, je.column);
	return j;
}

static int known_provider_fn(const char *fn)
{
	for (const char *const *p = provider_fns; *p; p++)
		if (strcmp(*p, fn) == 0)
			return 1;
	return 0;
}

/* The job argument of a provider step: its last argument (submit(job),
 * on_callback(req, job), ...) when that is an object with a string id. */
static const char *job_id_of(json_t *const *args, size_t nargs)
{
	const char *id = nargs ? json_string_value(json_object_get(args[nargs - 1], "id")) : NULL;
	return id && *id && strlen(id) < 100 && !strpbrk(id, "/?#") ? id : "job_test";
}

int cli_scripts_test(int argc, char **argv)
{
	const char *file = NULL, *event_s = NULL, *fn = NULL, *config_path = NULL, *ctx_s = NULL;
	struct config *cfg = NULL;
	struct script_host *h = NULL;
	json_t *event = NULL, *ctxj = NULL, *out = NULL, **args = NULL;
	enum script_kind kind;
	struct script_ctx ctx = { 0 };
	char name[NAME_MAX_LEN], err[1024], cb_url[1024];
	char *text;
	size_t nargs = 0;
	int rc = 2, level, r;

	for (int i = 0; i < argc; i++) {
		const char **slot = strcmp(argv[i], "--event") == 0 ? &event_s
				  : strcmp(argv[i], "--fn") == 0 ? &fn
				  : strcmp(argv[i], "--config") == 0 ? &config_path
				  : strcmp(argv[i], "--ctx") == 0 ? &ctx_s : NULL;
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			test_usage(stdout);
			return 0;
		}
		if (slot) {
			if (i + 1 >= argc) {
				fprintf(stderr, "genrelay: %s needs a value\n", argv[i]);
				test_usage(stderr);
				return 2;
			}
			*slot = argv[++i];
		} else if (argv[i][0] == '-' && argv[i][1] == '-') {
			fprintf(stderr, "genrelay: unknown option %s\n", argv[i]);
			test_usage(stderr);
			return 2;
		} else if (!file) {
			file = argv[i];
		} else {
			fprintf(stderr, "genrelay: one FILE only (got %s and %s)\n", file, argv[i]);
			test_usage(stderr);
			return 2;
		}
	}
	if (!file || !event_s) {
		fprintf(stderr, "genrelay: scripts test needs FILE and --event\n");
		test_usage(stderr);
		return 2;
	}
	if (!(cfg = config_load(config_path, err, sizeof err))) {
		fprintf(stderr, "genrelay: %s\n", err);
		return 2;
	}
	if (!(event = json_arg("--event", event_s)) || (ctx_s && !(ctxj = json_arg("--ctx", ctx_s))))
		goto out;
	if (ctxj && !json_is_object(ctxj)) {
		fprintf(stderr, "genrelay: --ctx must be a JSON object\n");
		goto out;
	}

	/* The loader logs what it does; the error is printed once, below. */
	level = log_get_level();
	log_set_level(LOG_LEVEL_ERROR);
	h = script_host_new_file(cfg, file, &kind, name, sizeof name, err, sizeof err);
	log_set_level(level);
	if (!h) {
		fprintf(stderr, "%s\n", err);
		rc = 1;
		goto out;
	}
	if (kind == SCRIPT_HOOK) {
		if (fn && strcmp(fn, "transform") != 0) {
			fprintf(stderr, "genrelay: a hook has one function, transform (not %s)\n", fn);
			goto out;
		}
		fn = "transform";
	} else if (kind == SCRIPT_FRONT) {
		if (!fn || (strcmp(fn, "request") != 0 && strcmp(fn, "respond") != 0 &&
			    strcmp(fn, "error") != 0 && strcmp(fn, "webhook") != 0)) {
			fprintf(stderr, "genrelay: a front needs --fn request, respond, error or webhook\n");
			goto out;
		}
	} else if (!fn || !known_provider_fn(fn)) {
		fprintf(stderr, "genrelay: a provider script needs --fn submit, on_submitted, "
			"on_callback, on_polled, poll, cancel or verify%s%s\n",
			fn ? ", not " : "", fn ? fn : "");
		goto out;
	}

	if (json_is_array(event)) {
		nargs = json_array_size(event);
		args = calloc(nargs + 1, sizeof *args);
		if (!args)
			goto out;
		for (size_t i = 0; i < nargs; i++)
			args[i] = json_array_get(event, i);
	} else {
		args = calloc(1, sizeof *args);
		if (!args)
			goto out;
		args[0] = event;
		nargs = 1;
	}

	if (kind == SCRIPT_PROVIDER) {
		const char *cb = json_string_value(json_object_get(ctxj, "callback_url"));
		if (!cb) {
			snprintf(cb_url, sizeof cb_url, "%s/v1/callbacks/%s/%s/test-token",
				 cfg->public_url, name, job_id_of(args, nargs));
			cb = cb_url;
		}
		ctx.provider = name;
		ctx.callback_url = cb;
		ctx.keys = json_object_get(ctxj, "keys");
	}
	r = script_call(h, kind, name, fn, args, nargs, &ctx, &out, err, sizeof err);
	if (r < 0) {
		fprintf(stderr, "%s\n", err);
		rc = 1;
		goto out;
	}
	text = json_dumps(out, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_ENCODE_ANY);
	if (!text) {
		fprintf(stderr, "genrelay: cannot print the result\n");
		rc = 1;
		goto out;
	}
	printf("%s\n", text);
	free(text);
	if (err[0])
		fprintf(stderr, "%s: %s\n", fn, err); /* verify's reason */
	if (kind == SCRIPT_HOOK && json_is_null(out))
		fprintf(stderr, "transform returned nil: this delivery would be skipped\n");
	rc = fflush(stdout) == 0 ? 0 : 1;
out:
	free(args);
	json_decref(out);
	json_decref(event);
	json_decref(ctxj);
	script_host_free(h);
	config_free(cfg);
	return rc;
}
