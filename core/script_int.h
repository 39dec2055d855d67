/*
 * script_int.h: what the modules of the Lua host share (script.h is the
 * host's public API; docs/scripts.md is the contract scripts are written
 * against).
 *
 * The host is cut into one concern per file, each with a short header,
 * listed here from the bottom layer up:
 *
 *   script_util.c      script_    shared primitives: error text, the name
 *                                 check, the kinds' names, the registry keys
 *                                 (declared below)
 *   script_limits.c    limits_    memory cap, instruction budget, C-call charging
 *   script_sandbox.c   sandbox_   the sandboxed builtins, require of scripts/lib
 *   script_ctx.c       ctxlib_    the ctx table and its per-call fields
 *   script_contract.c  contract_  load-time checks: what each kind must provide,
 *                                 parameter order, the provider fields
 *   script_fs.c        scriptfs_  the scripts directory: names, reads, lib sources
 *   script_vm.c        vm_        one state: setup, chunk loading, protected calls
 *   script_call.c      scall_     the call path: the core's checks around
 *                                 on_submitted and on_polled
 *   script_examples.c  examples_  a script's own examples; the JSON subset matcher
 *   script_host.c      script_    scan, reload (compile, check, swap), routing,
 *                                 listing, provider info and settings, verify
 *
 * Each calls only modules earlier in this list, so calls go one way: host
 * -> examples -> call -> vm -> contract, ctx -> sandbox -> limits, with fs
 * under host alone and util under all (tools/layers checks it on the built
 * objects). Nothing outside the host includes this header or the modules'
 * headers: the rest of the core sees script.h.
 *
 * Everything that may allocate Lua memory runs inside lua_pcall (memory
 * errors raise), so a cap hit never reaches the panic handler.
 */
#ifndef GENRELAY_SCRIPT_INT_H
#define GENRELAY_SCRIPT_INT_H

#include "script.h"

#include <jansson.h>
#include <lua.h>
#include <stddef.h>
#include <sys/stat.h>

#define SCRIPT_NAME_MAX 40            /* keeps "providers/NAME.lua" within LUA_IDSIZE */
#define SCRIPT_FILE_MAX (1024 * 1024) /* bytes per script or lib file */

/* ---------- script_util.c: callable from every module of the host ---------- */

extern const char *const script_kind_dir[SCRIPT_KINDS];  /* "providers", "hooks", "fronts" */
extern const char *const script_kind_name[SCRIPT_KINDS]; /* "provider", "hook", "front" */

/* Registry keys (their addresses): the sandbox _ENV, the require cache, the
 * lib sources and the marker of a module being loaded. */
extern const char script_key_env, script_key_loaded, script_key_libsrc, script_key_loading;

/* A file under scripts/lib, kept in memory so every state gets the version
 * the host checked (a state copies the sources it may require). */
struct lib_src {
	char name[SCRIPT_NAME_MAX + 1];
	char *src;
	size_t len;
	struct stat st;
	unsigned char sha[32];
	int seen;
};

struct libset {
	struct lib_src *v;
	size_t n, cap;
};

/* One loaded version of one script: its own lua_State and what the host
 * learnt about it at load. Owned by the host entry that runs it. */
struct vm {
	lua_State *L;
	/* memory cap (the allocator's ud is this struct): script_limits.c */
	size_t mem_used, mem_cap;
	int mem_hit;
	char mem_where[96]; /* "providers/x.lua:LINE" of the first refused allocation */
	/* instruction budget: script_limits.c */
	long budget, count;
	int hook_step, budget_hit;
	char budget_where[96];
	/* identity */
	enum script_kind kind;
	char name[SCRIPT_NAME_MAX + 1];
	char chunk[SCRIPT_NAME_MAX + 32]; /* "providers/fal.lua" */
	char version[13];
	const struct config *cfg;
	/* per call: examples use placeholder secrets and script defaults */
	int example_mode;
	const json_t *example_secrets;
	double now;      /* ctx.now() for this call when > 0 */
	const char *key; /* ctx.secret("key") for this call when set (a pool key) */
	/* registry refs */
	int ref_table, ref_ctx, ref_config, ref_defaults, ref_find, ref_patterns;
	/* ctx.keys: the Lua table built from keys_src (a held reference, so the
	 * pointer names one JWKS fetch), rebuilt when the caller's keys change */
	json_t *keys_src;
	int ref_keys;
	/* the Lua values of a call's arguments kept for the next call
	 * (VM_ARGS_KEEP / VM_ARGS_REUSE, script_vm.h): a sequence, or LUA_NOREF */
	int ref_args;
	/* per call: arguments' fields given as JSON text, a field of the
	 * result wanted as JSON text (script.h) */
	struct script_json_field *fields;
	size_t nfields;
	struct script_rendered *render;
	size_t npatterns;
	json_t *models;   /* provider: the `models` patterns as given */
	json_t *settings; /* defaults overlaid by config, secrets removed */
	json_t *defaults; /* defaults alone, secrets removed */
	/* provider: what script_provider_info reports */
	int configured;          /* providers.NAME is in the config */
	int cb_https, cb_public; /* callback_requires, after the config's override */
	int poll_404_limit;      /* consecutive poll 404s before on_polled sees one */
	/* provider: how non-2xx answers reach it (script_contract.c) */
	int errors_by_core; /* errors = "core" or on_error defined: the core handles them */
	int has_on_error;   /* on_error(res, job, ctx) is defined */
	char *literals;       /* the script's string literals (scrub_lua_literals) */
};

/* The vm a state belongs to (kept in the state's extra space). */
static inline struct vm *vm_of(lua_State *L)
{
	return *(struct vm **)lua_getextraspace(L);
}

/* snprintf into err when err is usable. */
void script_set_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* 1 when s[0..n) is a script or module name: [A-Za-z0-9_], 1..SCRIPT_NAME_MAX. */
int script_valid_name(const char *s, size_t n);

#endif
