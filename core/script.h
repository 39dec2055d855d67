/*
 * script.h: the Lua host. What scripts may rely on (the functions of each
 * kind, their arguments, ctx, the sandbox, what the core checks) is the
 * script contract, written once in docs/scripts.md; this header is the C
 * side. The host's modules and what they share are in script_int.h.
 *
 * A script host belongs to one worker thread. It loads every script under the
 * configured scripts directory: provider adapters (providers/NAME.lua) and
 * webhook transforms (hooks/NAME.lua), client-protocol fronts
 * (fronts/NAME.lua, docs/fronts.md); scripts/lib/NAME.lua are modules those
 * scripts may require as require("lib.NAME"). Each loaded script lives in a
 * lua_State of its own (so a script that changes a shared metatable affects
 * nobody else), with a sandboxed environment, a memory cap (limits.lua_memory_mb)
 * and a per-call instruction budget (limits.lua_instructions).
 *
 * Reload: script_host_refresh() rescans the directory; a new or changed file
 * is compiled in a fresh state, checked (it must return a table with the
 * functions of its kind) and its examples run; only when all of that passes
 * does it replace the running version. A failure leaves the running version
 * (if any) in place and records the reason, shown by script_host_list().
 */
#ifndef GENRELAY_SCRIPT_H
#define GENRELAY_SCRIPT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct script_host;

enum script_kind { SCRIPT_PROVIDER = 0, SCRIPT_HOOK = 1, SCRIPT_FRONT = 2 };
#define SCRIPT_KINDS 3

/* What ctx holds for one call. All pointers are borrowed for the call. */
struct script_ctx {
	const char *provider;     /* ctx.secret() and ctx.config read this provider's settings; NULL for hooks */
	const char *callback_url; /* ctx.callback_url, or NULL */
	json_t *keys;             /* ctx.keys: the provider's cached JWKS "keys" array, or NULL */
	double now;               /* ctx.now() returns this when > 0 (tests); else the wall clock */
	const char *key;          /* the job's key from providers.NAME.keys: ctx.secret("key") returns it; NULL: the settings' key */
};

/* Creates a host for cfg (borrowed for the host's lifetime). Loads nothing. */
struct script_host *script_host_new(const struct config *cfg);
/* A config reload: the host and its scripts read cfg from now on (provider
 * settings, scrub set); cfg must outlive the host. Owner thread only. */
void script_host_set_config(struct script_host *h, const struct config *cfg);
void script_host_free(struct script_host *h);

/*
 * Loads every script. Returns 0, or -1 with the first failure in err
 * ("providers/fal.lua:12: ..."); scripts that loaded stay loaded.
 */
int script_host_load(struct script_host *h, char *err, size_t errlen);

/*
 * Rescans the scripts directory and reloads what changed (by size, mtime
 * and content hash); a removed file unloads its script. Returns the number
 * of scripts replaced, added or removed. Failures are logged and recorded.
 */
int script_host_refresh(struct script_host *h);

/* 1 when a script of that kind and name is loaded. */
int script_exists(struct script_host *h, enum script_kind kind, const char *name);
/* 1 when the loaded script's table has a function named fn. */
int script_has_fn(struct script_host *h, enum script_kind kind,
		  const char *name, const char *fn);
/* Version (first 12 hex chars of SHA-256 of the source) or NULL. Borrowed
 * until the next refresh. */
const char *script_version(struct script_host *h, enum script_kind kind,
			   const char *name);

/*
 * Calls script.fn with args (borrowed) and ctx where docs/scripts.md ("The
 * contract") puts it: last, except verify(req, ctx, job). On success returns
 * 0 and *out holds a new reference to the result (json null when fn
 * returned nil). Returns -2 when the script or function does not exist, -1
 * when the script raised or broke a limit: err then says
 * "providers/fal.lua:12: message" (or "...: instruction budget exceeded" /
 * "...: memory cap exceeded").
 *
 * For a provider's on_submitted and on_polled the core's checks apply
 * (docs/scripts.md, "What the core checks"): for an adapter declaring
 * errors = "core" (or on_error), a non-2xx res goes to its on_error or
 * becomes a failed result without calling fn; after on_submitted,
 * "processing" without a request_id becomes failed PROVIDER_FAILURE.
 *
 * On success, a second return value that is a string (verify's `false,
 * "reason"`) is copied into err; otherwise err is emptied. ctx->provider is
 * not consulted: ctx.secret() and ctx.config always read the settings of
 * the provider script's own name (hooks get none), so no caller can hand
 * one provider's secrets to another's script.
 */
int script_call(struct script_host *h, enum script_kind kind, const char *name,
		const char *fn, json_t *const *args, size_t nargs,
		const struct script_ctx *ctx, json_t **out,
		char *err, size_t errlen);

/*
 * The configured provider whose `models` patterns match model (Lua patterns,
 * anchored), first match in name order (providers without settings in the
 * config are loaded and checked but never routed); copies its name into out. 0 or -1 none.
 */
int script_route(struct script_host *h, const char *model, char *out, size_t outlen);

/* [{"provider":name,"models":[patterns...]}...] of configured providers; caller owns. */
json_t *script_host_models(struct script_host *h);
/* [{"name","kind","version","loaded_at","last_error"}...]; caller owns. */
json_t *script_host_list(struct script_host *h);
/* What the core needs to know of a loaded provider adapter. */
struct script_provider_info {
	int configured;      /* providers.NAME is in the config: routed, started, listed */
	int callbacks;       /* 0 when providers.NAME.callbacks = false (poll only) */
	int callback_https;  /* callback_requires.https (config may override) */
	int callback_public; /* callback_requires.public (config may override) */
	int poll_404_limit;  /* consecutive poll 404s before on_polled sees one */
	long max_inflight;   /* settings max_inflight, else queue_limit; 0: no cap */
};
/* Fills *out for a loaded provider; -1 (out zeroed) when not loaded. */
int script_provider_info(struct script_host *h, const char *name,
			 struct script_provider_info *out);
/* The script table's `defaults` merged with the configured provider settings,
 * secrets removed; caller owns. NULL when the provider is not loaded. */
json_t *script_provider_settings(struct script_host *h, const char *name);
/* The same settings, borrowed (no copy): valid until the next
 * script_host_load, script_host_refresh or script_host_free on h. NULL when
 * the provider is not loaded. Owner thread only. */
const json_t *script_provider_settings_ref(struct script_host *h, const char *name);
/* One numeric setting (e.g. "poll_after_s") of a loaded provider into *out:
 * 0, or -1 (*out untouched) when unset, not a number or not loaded. */
int script_provider_number(struct script_host *h, const char *name, const char *key,
			   double *out);

/*
 * A field of a call's argument given as JSON text instead of as a jansson
 * value: when the argument is converted to Lua, the text is decoded
 * straight into Lua (luajson_decode) and set as the argument's field `key`,
 * as if the argument had held jansson's parse of it there. Text that is not
 * JSON (or NULL text) sets nothing: the argument's own value of the field
 * stays. Saves building a tree only to convert it.
 */
struct script_json_field {
	size_t arg;       /* the argument (0 for the first; an object) */
	const char *key;
	const char *text; /* borrowed for the call; NULL: nothing to decode */
	size_t len;
	int container;    /* 1: only an object or an array is JSON (as json_loads
			   * without JSON_DECODE_ANY reads stored text) */
	int ok;           /* set by the call: 1 when the text was decoded */
};

/*
 * A field of a call's result wanted as JSON text: when the result is a
 * table (without a metatable) whose field key is neither nil nor a string,
 * that field comes back as the compact text json_dumps would print for its
 * conversion (luajson_encode, byte for byte) and is left out of *out; when
 * it cannot be rendered so, it stays in *out as without this.
 */
struct script_rendered {
	const char *key;
	char *text;       /* set by the call: NUL-terminated, caller frees; NULL: not rendered */
	size_t len;
};

/* script_call with fields (nfields of them) of its arguments given as JSON
 * text (struct script_json_field) and, when render is not NULL, a field of
 * the result as text (struct script_rendered; nothing rendered on failure);
 * same return values. */
int script_call_fields(struct script_host *h, enum script_kind kind, const char *name,
		       const char *fn, json_t *const *args, size_t nargs,
		       struct script_json_field *fields, size_t nfields,
		       struct script_rendered *render, const struct script_ctx *ctx,
		       json_t **out, char *err, size_t errlen);

/*
 * An inbound callback through the provider's scripts: verify(req, ctx, job)
 * when it has one, then on_callback(req, job, ctx), with req and job
 * (borrowed; job may be NULL) converted to Lua once for both calls (what
 * verify changes in them, on_callback sees). fields (nfields, may be 0):
 * fields of req (arg 0) and job (arg 1) given as JSON text, decoded once
 * (their ok says whether each was JSON). Returns 1 with *out on_callback's
 * result (a new reference, json null for nil); 0 refused: verify returned
 * anything but true or raised (its reason or error in err, or err empty);
 * -1 on_callback raised or broke a limit (err); -2 the provider is not
 * loaded.
 */
int script_callback(struct script_host *h, const char *provider, json_t *req, json_t *job,
		    struct script_json_field *fields, size_t nfields,
		    const struct script_ctx *ctx, json_t **out, char *err, size_t errlen);

/*
 * Runs the provider's verify(req, ctx, job) on an inbound callback (job may
 * be NULL: verify(req, ctx)); req and job are borrowed. Returns 1 accepted
 * (verify returned true), 0 refused (anything else; verify's reason, if it
 * gave one, in why), -1 the script raised or broke a limit (the error in
 * why), -2 the provider is not loaded or has no verify.
 */
int script_verify(struct script_host *h, const char *provider, json_t *req, json_t *job,
		  const struct script_ctx *ctx, char *why, size_t whylen);

/*
 * 1 when every key of expect is in actual with a matching value (objects
 * recursively; arrays need the same length and matching items; numbers
 * compare by value; an expected null also matches a missing key; an empty
 * expected object matches an empty array, as Lua cannot tell them apart).
 * On 0, where says what differed ("output.items[1].url: expected "a", got
 * "b""). The matcher used for script examples and recorded-payload tests.
 */
int script_json_subset(const json_t *expect, const json_t *actual, char *where,
		       size_t wherelen);

/*
 * Loads one file on its own (for `genrelay scripts check`) and runs its
 * examples. 0 or -1 with the reason in err.
 */
int script_check_file(const struct config *cfg, const char *path,
		      char *err, size_t errlen);

/*
 * Creates a host over one file (for `genrelay scripts test`): path is
 * DIR/providers/NAME.lua or DIR/hooks/NAME.lua; the host scans DIR instead of
 * cfg->scripts and loads only that script (DIR/lib stays requirable), checked
 * and with its examples run exactly as a reload would. Every other call works
 * on it as on a full host (script_host_refresh rescans just that file).
 * Returns the host (free with script_host_free) and sets *kind and name (the
 * script's name, namelen >= 41 to hold any); NULL with the reason in err
 * ("hooks/x.lua:3: ..."). cfg is borrowed for the host's lifetime.
 */
struct script_host *script_host_new_file(const struct config *cfg, const char *path,
					 enum script_kind *kind, char *name, size_t namelen,
					 char *err, size_t errlen);

#endif
