/*
 * script.c: the Lua host (see script.h and docs/scripts.md).
 *
 * Every loaded script version is a `struct vm`: one lua_State with a
 * counting allocator (memory cap), a count hook (instruction budget per
 * call), a sandbox environment built from an allowlist, and a `ctx` table
 * built once per state; a call only sets ctx's per-call fields. A host keeps
 * one entry per script file (sorted by kind, then name) with its running vm,
 * the identity of the last file content tried, and the last error.
 *
 * Everything that may allocate Lua memory runs inside lua_pcall (memory
 * errors raise), so a cap hit never reaches the panic handler.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "script.h"
#include "config.h"
#include "log.h"
#include "luajson.h"
#include "metrics.h"
#include "scrub.h"
#include "sign.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int luaopen_cjson(lua_State *L);
int luaopen_cjson_safe(lua_State *L);

#define SCRIPT_NAME_MAX 40            /* keeps "providers/NAME.lua" within LUA_IDSIZE */
#define SCRIPT_FILE_MAX (1024 * 1024) /* bytes per script or lib file */
#define HOOK_STEP 1000                /* instructions between budget checks */
#define LOG_MSG_MAX 1000              /* bytes of a script's log line */
#define MODELS_MAX 256                /* patterns per provider */
#define POLL_404_LIMIT 3              /* default consecutive poll 404s that end a job */

/* Registry keys (addresses of these bytes). */
static const char K_ENV = 0, K_LOADED = 0, K_LIBSRC = 0, K_LOADING = 0;

static const char *const kind_dir[] = { "providers", "hooks", "fronts" };
static const char *const kind_name[] = { "provider", "hook", "front" };

/* One loaded version of one script. */
struct vm {
	lua_State *L;
	/* memory cap (the allocator's ud is this struct) */
	size_t mem_used, mem_cap;
	int mem_hit;
	char mem_where[96]; /* "providers/x.lua:LINE" of the first refused allocation */
	/* instruction budget */
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
	double now; /* ctx.now() for this call when > 0 */
	const char *key; /* ctx.secret("key") for this call when set (a pool key) */
	/* registry refs */
	int ref_table, ref_ctx, ref_config, ref_defaults, ref_find, ref_patterns;
	size_t npatterns;
	json_t *models;   /* provider: the `models` patterns as given */
	json_t *settings; /* defaults overlaid by config, secrets removed */
	json_t *defaults; /* defaults alone, secrets removed */
	/* provider: what script_provider_info reports */
	int configured;         /* providers.NAME is in the config */
	int cb_https, cb_public; /* callback_requires, after the config's override */
	int poll_404_limit;     /* consecutive poll 404s before on_polled sees one */
	char *literals;   /* the script's string literals (scrub_lua_literals) */
};

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

struct entry {
	enum script_kind kind;
	char name[SCRIPT_NAME_MAX + 1];
	struct vm *vm;       /* running version, or NULL */
	char *last_error;    /* why the last attempt failed, or NULL */
	time_t loaded_at;
	struct stat st;      /* identity of the last content tried */
	int have_st;
	unsigned char sha[32];
	int have_sha;
	int seen;
};

struct script_host {
	const struct config *cfg;
	struct entry *e;
	size_t n, cap;
	struct libset libs;
	/* script_host_new_file: the directory scanned instead of cfg->scripts,
	 * and the one script of it the host loads */
	char *dir;
	int one;
	enum script_kind one_kind;
	char one_name[SCRIPT_NAME_MAX + 1];
};

/* The scripts directory a host scans. */
static const char *host_dir(const struct script_host *h)
{
	if (h->dir)
		return h->dir;
	return h->cfg->scripts ? h->cfg->scripts : "scripts";
}

/* ---------------------------------------------------------------- utilities */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static int valid_name(const char *s, size_t n)
{
	if (n == 0 || n > SCRIPT_NAME_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '_')
			return 0;
	return 1;
}

/* "NAME.lua" with a valid NAME: copies NAME into out (SCRIPT_NAME_MAX+1). */
static int lua_file_name(const char *fname, char *out)
{
	size_t n = strlen(fname);
	if (n < 5 || strcmp(fname + n - 4, ".lua") != 0 || !valid_name(fname, n - 4))
		return 0;
	memcpy(out, fname, n - 4);
	out[n - 4] = '\0';
	return 1;
}

/* Reads a regular file of at most SCRIPT_FILE_MAX bytes. Caller frees *buf. */
static int read_file(const char *path, char **buf, size_t *len, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	char *b = NULL;
	size_t n = 0;
	if (!f) {
		set_err(err, errlen, "cannot open: %s", strerror(errno));
		return -1;
	}
	b = malloc(SCRIPT_FILE_MAX + 1);
	if (!b) {
		fclose(f);
		set_err(err, errlen, "out of memory");
		return -1;
	}
	n = fread(b, 1, SCRIPT_FILE_MAX + 1, f);
	if (ferror(f) || n > SCRIPT_FILE_MAX) {
		if (n > SCRIPT_FILE_MAX)
			set_err(err, errlen, "file larger than %d bytes", SCRIPT_FILE_MAX);
		else
			set_err(err, errlen, "read error");
		fclose(f);
		free(b);
		return -1;
	}
	fclose(f);
	b[n] = '\0';
	*buf = b;
	*len = n;
	return 0;
}

static void sha256_hex12(const unsigned char sha[32], char out[13])
{
	char hex[65];
	sign_hex_encode(sha, 32, hex, sizeof hex);
	memcpy(out, hex, 12);
	out[12] = '\0';
}

static int same_file(const struct stat *a, const struct stat *b)
{
	return a->st_size == b->st_size && a->st_ino == b->st_ino &&
	       a->st_dev == b->st_dev && a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
	       a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* A settings key that may hold a secret: contains key, secret, token or
 * password (any case). */
static int secret_looking(const char *k)
{
	return scrub_key_is_secret(k);
}

/* New object: o without secret-looking keys (NULL o gives {}). */
static json_t *strip_secrets(const json_t *o)
{
	json_t *r = json_object();
	const char *k;
	json_t *v;
	if (!r || !o)
		return r;
	json_object_foreach((json_t *)o, k, v)
		if (!secret_looking(k))
			json_object_set(r, k, v);
	return r;
}

/* ---------------------------------------------------------- memory and budget */

/*
 * lua_Alloc with a cap. When ptr is NULL, osize is a type tag, not a size.
 * Growth past the cap fails (Lua then runs an emergency collection and
 * raises a memory error); shrinking never fails, as Lua requires.
 */
static void *vm_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	struct vm *vm = ud;
	size_t old = ptr ? osize : 0;
	void *p;

	if (nsize == 0) {
		free(ptr);
		vm->mem_used -= old;
		return NULL;
	}
	if (nsize > old && nsize - old > vm->mem_cap - vm->mem_used) {
		if (!vm->mem_hit && vm->L && vm->hook_step) {
			/* Where the script was: lua_getstack/lua_getinfo("Sl") do not
			 * allocate, so they are safe to call from here. */
			lua_Debug ar;
			vm->mem_where[0] = '\0';
			for (int level = 0; level < 32 && lua_getstack(vm->L, level, &ar); level++) {
				if (lua_getinfo(vm->L, "Sl", &ar) && ar.currentline > 0) {
					snprintf(vm->mem_where, sizeof vm->mem_where, "%s:%d",
						 ar.short_src, ar.currentline);
					break;
				}
			}
		}
		vm->mem_hit = 1;
		return NULL;
	}
	p = realloc(ptr, nsize);
	if (!p) {
		if (nsize <= old)
			return ptr; /* keep the larger block */
		vm->mem_hit = 1;
		return NULL;
	}
	vm->mem_used = vm->mem_used - old + nsize;
	return p;
}

static struct vm *vm_of(lua_State *L)
{
	return *(struct vm **)lua_getextraspace(L);
}

/*
 * Count hook. Once the budget is spent it records where, switches to firing
 * on every instruction and raises each time, so a pcall inside the script
 * cannot swallow the error and carry on.
 */
static void budget_hook(lua_State *L, lua_Debug *ar)
{
	struct vm *vm = vm_of(L);
	vm->count += vm->hook_step;
	if (!vm->budget_hit && vm->count < vm->budget)
		return;
	if (!vm->budget_hit) {
		vm->budget_hit = 1;
		if (lua_getinfo(L, "Sl", ar) && ar->currentline > 0)
			snprintf(vm->budget_where, sizeof vm->budget_where, "%s:%d",
				 ar->short_src, ar->currentline);
		else
			snprintf(vm->budget_where, sizeof vm->budget_where, "%s", vm->chunk);
		vm->hook_step = 1;
		lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
	}
	lua_pushliteral(L, "instruction budget exceeded");
	lua_error(L);
}

static void budget_reset(struct vm *vm)
{
	vm->count = 0;
	vm->budget_hit = 0;
	vm->mem_hit = 0;
	vm->mem_where[0] = '\0';
	if (vm->hook_step != HOOK_STEP) {
		vm->hook_step = HOOK_STEP;
		lua_sethook(vm->L, budget_hook, LUA_MASKCOUNT, HOOK_STEP);
	}
}

/*
 * Every script error leaves through here (job errors, /v1/scripts, logs):
 * what Lua quoted of the script's string literals is redacted
 * (scrub_lua_message), then every configured secret.
 */
static void redact_error(const struct vm *vm, char *err, size_t errlen)
{
	if (!err || !errlen)
		return;
	scrub_lua_message(err, errlen, vm->literals);
	scrub_buf(vm->cfg ? vm->cfg->scrub : NULL, err, errlen);
}

static void vm_error_text(struct vm *vm, int rc, char *err, size_t errlen);

/*
 * Formats the error of a failed pcall (message on top of the stack) as
 * "providers/x.lua:LINE: msg", naming the script when Lua did not, redacted.
 */
static void vm_error(struct vm *vm, int rc, char *err, size_t errlen)
{
	vm_error_text(vm, rc, err, errlen);
	redact_error(vm, err, errlen);
}

static void vm_error_text(struct vm *vm, int rc, char *err, size_t errlen)
{
	lua_State *L = vm->L;
	const char *msg;
	size_t cl = strlen(vm->chunk);

	if (vm->budget_hit) {
		if (strncmp(vm->budget_where, vm->chunk, cl) == 0)
			set_err(err, errlen, "%s: instruction budget exceeded", vm->budget_where);
		else
			set_err(err, errlen, "%s: %s: instruction budget exceeded",
				vm->chunk, vm->budget_where);
		return;
	}
	msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
	if (rc == LUA_ERRMEM || (vm->mem_hit && msg && strcasestr(msg, "memory"))) {
		if (vm->mem_hit && vm->mem_where[0] && strncmp(vm->mem_where, vm->chunk, cl) == 0)
			set_err(err, errlen, "%s: memory cap exceeded", vm->mem_where);
		else
			set_err(err, errlen, "%s: memory cap exceeded", vm->chunk);
		return;
	}
	if (!msg) {
		set_err(err, errlen, "%s: error object is a %s value", vm->chunk,
			luaL_typename(L, -1));
		return;
	}
	if (strncmp(msg, vm->chunk, cl) == 0 && msg[cl] == ':')
		set_err(err, errlen, "%s", msg);
	else
		set_err(err, errlen, "%s: %s", vm->chunk, msg);
}

/*
 * Runs f(ud) in protected mode under a fresh budget. On success the nres
 * results are on the stack above the returned base; on failure err is set,
 * the stack is back at base and -1 is returned.
 */
static int vm_pcall(struct vm *vm, lua_CFunction f, void *ud, int nres,
		    char *err, size_t errlen, int *base)
{
	lua_State *L = vm->L;
	int rc;
	*base = lua_gettop(L);
	budget_reset(vm);
	lua_pushcfunction(L, f);
	lua_pushlightuserdata(L, ud);
	rc = lua_pcall(L, 1, nres, 0);
	if (rc == LUA_OK && vm->budget_hit) {
		/* caught by the script's pcall and returned through a tail call */
		rc = LUA_ERRRUN;
	}
	if (rc != LUA_OK) {
		vm_error(vm, rc, err, errlen);
		lua_settop(L, *base);
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------ sandbox functions */

/*
 * Raises the budget error from C (as the hook would) and arms the hook to
 * fire on every instruction.
 */
static int budget_raise(lua_State *L, struct vm *vm)
{
	if (!vm->budget_hit) {
		lua_Debug ar;
		vm->budget_hit = 1;
		if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "Sl", &ar) && ar.currentline > 0)
			snprintf(vm->budget_where, sizeof vm->budget_where, "%s:%d",
				 ar.short_src, ar.currentline);
		else
			snprintf(vm->budget_where, sizeof vm->budget_where, "%s", vm->chunk);
		vm->hook_step = 1;
		lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
	}
	lua_pushliteral(L, "instruction budget exceeded");
	return lua_error(L);
}

/*
 * How a wrapped C function is charged against the instruction budget. The
 * count hook never runs inside C functions, so without this a loop of a few
 * instructions around a scan of a large string (or a C loop bounded only by
 * an integer argument, like string.rep("", 2^62) or table.move) could run
 * for minutes or forever within the budget. One instruction is charged per
 * CHARGE_UNIT bytes or elements of work; the rules avoid charging common
 * linear patterns quadratically (appends, anchored matches, s:sub(i, i)).
 */
#define CHARGE_UNIT 8
enum charge_kind {
	CH_NONE = -1,
	CH_OUT,    /* the strings and values it returns */
	CH_SCAN,   /* its string arguments, plus CH_OUT */
	CH_FIND,   /* string.find / match: what was scanned, plus CH_OUT */
	CH_REP,    /* string.rep: the count, plus CH_OUT */
	CH_SORT,   /* table.sort: n log n */
	CH_SHIFT,  /* table.insert / remove with a position: the elements shifted */
	CH_MOVE,   /* table.move: the range */
};

static enum charge_kind charge_kind_of(const char *lib, const char *fn)
{
	if (strcmp(lib, "string") == 0) {
		if (!strcmp(fn, "find") || !strcmp(fn, "match"))
			return CH_FIND;
		if (!strcmp(fn, "gsub") || !strcmp(fn, "gmatch"))
			return CH_SCAN;
		if (!strcmp(fn, "rep"))
			return CH_REP;
		return CH_OUT;
	}
	if (strcmp(lib, "table") == 0) {
		if (!strcmp(fn, "sort"))
			return CH_SORT;
		if (!strcmp(fn, "insert") || !strcmp(fn, "remove"))
			return CH_SHIFT;
		if (!strcmp(fn, "move"))
			return CH_MOVE;
		return CH_OUT;
	}
	if (strcmp(lib, "utf8") == 0 || strcmp(lib, "cjson") == 0 || strcmp(lib, "ctx") == 0)
		return CH_SCAN;
	return CH_NONE;
}

/* Adds units of work to the count; raises the budget error when spent. */
static void charge(lua_State *L, struct vm *vm, double units)
{
	if (units >= 1) {
		double total = (double)vm->count + units / CHARGE_UNIT;
		vm->count = total >= (double)vm->budget ? vm->budget : (long)total;
	}
	if (vm->count >= vm->budget || vm->budget_hit)
		budget_raise(L, vm);
}

/* Length of the table at 1 as the table library sees it (__len counts). */
static double table_len(lua_State *L)
{
	double n;
	if (lua_type(L, 1) != LUA_TTABLE)
		return 0;
	if (luaL_getmetafield(L, 1, "__len") == LUA_TNIL)
		return (double)lua_rawlen(L, 1);
	lua_pop(L, 1);
	lua_len(L, 1);
	n = lua_type(L, -1) == LUA_TNUMBER ? (double)lua_tonumber(L, -1) : 0;
	lua_pop(L, 1);
	return n;
}

/* The wrapper: upvalue 1 the function, 2 its charge_kind, 3 true for
 * table.remove (whose position is its second argument, not its third). */
static int sb_charged(lua_State *L)
{
	struct vm *vm = vm_of(L);
	int n = lua_gettop(L), kind = (int)lua_tointeger(L, lua_upvalueindex(2));
	double pre = 0, post = 0, slen = 0, init = 1;
	int anchored = 0, nres;

	switch (kind) {
	case CH_SCAN:
		for (int i = 1; i <= n; i++)
			if (lua_type(L, i) == LUA_TSTRING)
				pre += (double)lua_rawlen(L, i);
		break;
	case CH_FIND:
		if (lua_type(L, 1) == LUA_TSTRING) {
			slen = (double)lua_rawlen(L, 1);
			if (lua_type(L, 3) == LUA_TNUMBER) {
				init = (double)lua_tonumber(L, 3);
				if (init < 0)
					init = slen + init + 1;
				if (init < 1)
					init = 1;
			}
			anchored = lua_type(L, 2) == LUA_TSTRING && lua_tostring(L, 2)[0] == '^' &&
				   !lua_toboolean(L, 4);
		}
		break;
	case CH_REP:
		/* rep("", n) loops n times making nothing; otherwise its output
		 * (charged below, capped by memory) bounds its work */
		if (lua_type(L, 2) == LUA_TNUMBER && lua_tonumber(L, 2) > 0 &&
		    lua_type(L, 1) == LUA_TSTRING && lua_rawlen(L, 1) == 0 &&
		    (lua_type(L, 3) != LUA_TSTRING || lua_rawlen(L, 3) == 0))
			pre = (double)lua_tonumber(L, 2);
		break;
	case CH_SORT: {
		double m = table_len(L);
		pre = m > 1 ? m * log2(m) * CHARGE_UNIT : 0;
		break;
	}
	case CH_SHIFT:
		/* with a position, the elements from there to the end (as __len
		 * says) are shifted; appending and popping shift nothing */
		if (n >= (lua_toboolean(L, lua_upvalueindex(3)) ? 2 : 3)) {
			double len = table_len(L);
			double pos = lua_type(L, 2) == LUA_TNUMBER ? (double)lua_tonumber(L, 2) : 1;
			pre = len - pos + 1 > 0 ? len - pos + 1 : 0;
		}
		break;
	case CH_MOVE:
		if (lua_type(L, 2) == LUA_TNUMBER && lua_type(L, 3) == LUA_TNUMBER &&
		    lua_tonumber(L, 3) >= lua_tonumber(L, 2))
			pre = (double)lua_tonumber(L, 3) - (double)lua_tonumber(L, 2) + 1;
		pre *= 4;
		break;
	}
	charge(L, vm, pre);
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_insert(L, 1);
	lua_call(L, n, LUA_MULTRET);
	nres = lua_gettop(L);
	post = nres;
	for (int i = 1; i <= nres; i++)
		if (lua_type(L, i) == LUA_TSTRING)
			post += (double)lua_rawlen(L, i);
	if (kind == CH_FIND && !anchored && init <= slen) {
		if (nres >= 1 && lua_isnil(L, 1))
			post += slen - init + 1;
		else if (nres >= 2 && lua_type(L, 2) == LUA_TNUMBER)
			post += (double)lua_tonumber(L, 2) - init + 1;
	}
	charge(L, vm, post);
	return nres;
}

/* Joins the arguments with tabs into a log line tagged with the script. */
static int sb_log(lua_State *L)
{
	struct vm *vm = vm_of(L);
	int n = lua_gettop(L);
	luaL_Buffer b;
	luaL_buffinit(L, &b);
	for (int i = 1; i <= n; i++) {
		if (i > 1)
			luaL_addchar(&b, '\t');
		luaL_tolstring(L, i, NULL);
		luaL_addvalue(&b);
	}
	luaL_pushresult(&b);
	{
		size_t len;
		const char *s = lua_tolstring(L, -1, &len);
		log_info("%s: %.*s", vm->chunk, (int)(len > LOG_MSG_MAX ? LOG_MSG_MAX : len), s);
	}
	return 0;
}

/* load(chunk [, chunkname [, mode [, env]]]): text only; env defaults to the
 * sandbox. Upvalue 1 is the real load. */
static int sb_load(lua_State *L)
{
	int has_env = !lua_isnone(L, 4);
	luaL_checkany(L, 1);
	if (lua_type(L, 1) == LUA_TSTRING) /* parsing is work done in C */
		charge(L, vm_of(L), (double)lua_rawlen(L, 1));
	lua_settop(L, 4);
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_pushvalue(L, 1);
	if (lua_isnoneornil(L, 2))
		lua_pushliteral(L, "=(load)");
	else
		lua_pushvalue(L, 2);
	lua_pushliteral(L, "t");
	if (has_env)
		lua_pushvalue(L, 4);
	else
		lua_rawgetp(L, LUA_REGISTRYINDEX, &K_ENV);
	lua_call(L, 4, 2);
	if (lua_isnil(L, -2))
		return 2; /* nil, message */
	lua_pop(L, 1);
	return 1;
}

static int sb_collectgarbage(lua_State *L)
{
	const char *opt = luaL_optstring(L, 1, "collect");
	if (strcmp(opt, "count") != 0)
		return luaL_error(L, "collectgarbage: only \"count\" is allowed");
	int k = lua_gc(L, LUA_GCCOUNT), b = lua_gc(L, LUA_GCCOUNTB);
	lua_pushnumber(L, (lua_Number)k + (lua_Number)b / 1024);
	return 1;
}

/*
 * Raises again when a protected call failed because of a limit: the budget
 * (also enforced by the hook), or the memory cap (a memory error, or any
 * error while the allocator refused memory, such as cjson.safe's). Catching
 * those would let a script spin on them: each memory error costs a full
 * emergency collection but only a few instructions.
 */
static void rethrow_limit(lua_State *L, struct vm *vm, int status, int mem_before)
{
	if (status == LUA_ERRMEM || vm->mem_hit || vm->budget_hit)
		lua_error(L);
	vm->mem_hit = mem_before;
}

/* pcall(f, ...) that cannot catch limit errors. */
static int sb_pcall(lua_State *L)
{
	struct vm *vm = vm_of(L);
	int n = lua_gettop(L), mem_before = vm->mem_hit, st;
	luaL_checkany(L, 1);
	vm->mem_hit = 0;
	lua_pushboolean(L, 1);
	lua_insert(L, 1);
	st = lua_pcall(L, n - 1, LUA_MULTRET, 0);
	if (st == LUA_OK) {
		vm->mem_hit |= mem_before;
		return lua_gettop(L);
	}
	rethrow_limit(L, vm, st, mem_before);
	lua_pushboolean(L, 0);
	lua_insert(L, -2);
	return 2;
}

/*
 * xpcall(f, msgh, ...) as pcall(f, ...) followed by msgh(err). Lua runs a
 * message handler before unwinding, and when the error was raised from the
 * count hook, hooks are still disabled at that point: a handler that loops
 * would escape the budget. Without the debug library a handler cannot look
 * at the failed stack anyway, so running it after the unwind loses nothing.
 */
static int sb_xpcall(lua_State *L)
{
	struct vm *vm = vm_of(L);
	int n = lua_gettop(L), mem_before = vm->mem_hit, st;
	luaL_checktype(L, 2, LUA_TFUNCTION);
	vm->mem_hit = 0;
	lua_pushboolean(L, 1);
	lua_pushvalue(L, 1);
	for (int i = 3; i <= n; i++)
		lua_pushvalue(L, i);
	st = lua_pcall(L, n - 2, LUA_MULTRET, 0);
	if (st == LUA_OK) {
		vm->mem_hit |= mem_before;
		return lua_gettop(L) - n;
	}
	rethrow_limit(L, vm, st, mem_before);
	lua_pushvalue(L, 2);
	lua_insert(L, -2);
	vm->mem_hit = 0;
	st = lua_pcall(L, 1, 1, 0); /* an error in the handler is returned as is */
	if (st != LUA_OK)
		rethrow_limit(L, vm, st, mem_before);
	else
		vm->mem_hit |= mem_before;
	lua_pushboolean(L, 0);
	lua_insert(L, -2);
	return 2;
}

/* setmetatable without __gc: finalizers run with hooks disabled, so an
 * endless __gc would escape the instruction budget. */
static int sb_setmetatable(lua_State *L)
{
	int t = lua_type(L, 2);
	luaL_checktype(L, 1, LUA_TTABLE);
	luaL_argexpected(L, t == LUA_TNIL || t == LUA_TTABLE, 2, "nil or table");
	if (t == LUA_TTABLE) {
		lua_pushliteral(L, "__gc");
		if (lua_rawget(L, 2) != LUA_TNIL)
			return luaL_error(L, "setmetatable: __gc metamethods are not allowed");
		lua_pop(L, 1);
	}
	if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL)
		return luaL_error(L, "cannot change a protected metatable");
	lua_settop(L, 2);
	lua_setmetatable(L, 1);
	return 1;
}

/* cjson's decode wrapped: refuse inputs that cannot fit in the remaining
 * memory before cjson mallocs its scratch buffer (which a memory error in
 * the middle of decoding would leak). Upvalue 1 is the real decode. */
static int sb_json_decode(lua_State *L)
{
	struct vm *vm = vm_of(L);
	size_t len;
	luaL_checklstring(L, 1, &len);
	if (len > (vm->mem_cap - vm->mem_used) / 4) {
		lua_gc(L, LUA_GCCOLLECT);
		if (len > (vm->mem_cap - vm->mem_used) / 4)
			return luaL_error(L, "not enough memory");
	}
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_insert(L, 1);
	lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
	return lua_gettop(L);
}

/* require("cjson" | "cjson.safe" | "lib.NAME"); lib modules load once per
 * state from the sources copied into it, into the same sandbox. */
static int sb_require(lua_State *L)
{
	size_t len;
	const char *name = luaL_checklstring(L, 1, &len);
	char chunk[SCRIPT_NAME_MAX + 16];

	if (strcmp(name, "cjson") == 0 || strcmp(name, "cjson.safe") == 0) {
		lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
		lua_getfield(L, -1, name);
		return 1;
	}
	if (len < 5 || strncmp(name, "lib.", 4) != 0 || !valid_name(name + 4, len - 4)) {
		if (len > 80)
			return luaL_error(L, "require: module name not allowed (only cjson and lib.NAME)");
		return luaL_error(L, "require: module '%s' not allowed (only cjson and lib.NAME)", name);
	}
	lua_settop(L, 1);
	lua_rawgetp(L, LUA_REGISTRYINDEX, &K_LOADED); /* 2 */
	lua_getfield(L, 2, name + 4);                 /* 3 */
	if (lua_touserdata(L, 3) == (void *)&K_LOADING)
		return luaL_error(L, "require: circular require of '%s'", name);
	if (!lua_isnil(L, 3))
		return 1;
	lua_pop(L, 1);
	lua_rawgetp(L, LUA_REGISTRYINDEX, &K_LIBSRC);
	if (lua_getfield(L, -1, name + 4) != LUA_TSTRING)
		return luaL_error(L, "require: module '%s' not found (no lib/%s.lua)", name, name + 4);
	{
		size_t sl;
		const char *src = lua_tolstring(L, -1, &sl);
		snprintf(chunk, sizeof chunk, "@lib/%s.lua", name + 4);
		if (luaL_loadbufferx(L, src, sl, chunk, "t") != LUA_OK)
			return lua_error(L);
	}
	lua_rawgetp(L, LUA_REGISTRYINDEX, &K_ENV);
	lua_setupvalue(L, -2, 1);
	lua_pushlightuserdata(L, (void *)&K_LOADING);
	lua_setfield(L, 2, name + 4);
	lua_pushvalue(L, 1);
	if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
		lua_pushnil(L);
		lua_setfield(L, 2, name + 4);
		return lua_error(L);
	}
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		lua_pushboolean(L, 1);
	}
	lua_pushvalue(L, -1);
	lua_setfield(L, 2, name + 4);
	return 1;
}

/* ------------------------------------------------------------- ctx functions */

static int ctx_array(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	luajson_array_mt(L);
	lua_setmetatable(L, 1);
	return 1;
}

/* ctx.secret(name): the script's own provider settings from the config; in
 * examples the example's ctx.secrets or "example-NAME". Hooks get nil. */
static int ctx_secret(lua_State *L)
{
	struct vm *vm = vm_of(L);
	const char *k = luaL_checkstring(L, 1);
	json_t *v = NULL;

	if (vm->kind != SCRIPT_PROVIDER) {
		lua_pushnil(L);
		return 1;
	}
	if (vm->example_mode) {
		v = vm->example_secrets ? json_object_get(vm->example_secrets, k) : NULL;
		if (!v) {
			lua_pushfstring(L, "example-%s", k);
			return 1;
		}
	} else if (vm->key && strcmp(k, "key") == 0) {
		lua_pushstring(L, vm->key);
		return 1;
	} else {
		json_t *p = config_provider(vm->cfg, vm->name);
		v = p ? json_object_get(p, k) : NULL;
	}
	if (!v || json_is_null(v))
		lua_pushnil(L);
	else if (luajson_push(L, v) < 0)
		lua_pushnil(L);
	return 1;
}

static int ctx_hmac_sha256(lua_State *L)
{
	size_t kl, ml;
	const char *k = luaL_checklstring(L, 1, &kl);
	const char *m = luaL_checklstring(L, 2, &ml);
	unsigned char out[SIGN_SHA256_LEN];
	if (sign_hmac_sha256(k, kl, m, ml, out) != SIGN_SHA256_LEN)
		return luaL_error(L, "hmac_sha256 failed");
	lua_pushlstring(L, (const char *)out, sizeof out);
	return 1;
}

static int ctx_sha256(lua_State *L)
{
	size_t n;
	const char *s = luaL_checklstring(L, 1, &n);
	unsigned char out[SIGN_SHA256_LEN];
	if (sign_sha256(s, n, out) != SIGN_SHA256_LEN)
		return luaL_error(L, "sha256 failed");
	lua_pushlstring(L, (const char *)out, sizeof out);
	return 1;
}

static int ctx_ed25519_verify(lua_State *L)
{
	size_t pl, ml, sl;
	const char *pub = luaL_checklstring(L, 1, &pl);
	const char *msg = luaL_checklstring(L, 2, &ml);
	const char *sig = luaL_checklstring(L, 3, &sl);
	lua_pushboolean(L, pl == 32 && sl == 64 &&
			sign_ed25519_verify((const unsigned char *)pub, pl, msg, ml,
					    (const unsigned char *)sig, sl) == 1);
	return 1;
}

static int ctx_base64(lua_State *L)
{
	size_t n;
	const char *s = luaL_checklstring(L, 1, &n);
	size_t need = (n + 2) / 3 * 4 + 1;
	luaL_Buffer b;
	char *out = luaL_buffinitsize(L, &b, need);
	if (sign_base64_encode(s, n, out, need) < 0)
		return luaL_error(L, "base64: input too large");
	luaL_pushresultsize(&b, strlen(out));
	return 1;
}

static int ctx_base64_decode(lua_State *L)
{
	size_t n;
	const char *s = luaL_checklstring(L, 1, &n);
	size_t need = (n + 3) / 4 * 3 + 1;
	luaL_Buffer b;
	char *out = luaL_buffinitsize(L, &b, need);
	int r = sign_base64_decode(s, n, out, need);
	if (r < 0) {
		lua_pushnil(L);
		return 1;
	}
	luaL_pushresultsize(&b, (size_t)r);
	return 1;
}

static int ctx_hex(lua_State *L)
{
	size_t n;
	const char *s = luaL_checklstring(L, 1, &n);
	size_t need = 2 * n + 1;
	luaL_Buffer b;
	char *out = luaL_buffinitsize(L, &b, need);
	if (sign_hex_encode(s, n, out, need) < 0)
		return luaL_error(L, "hex: input too large");
	luaL_pushresultsize(&b, 2 * n);
	return 1;
}

static int ctx_hex_decode(lua_State *L)
{
	size_t n;
	const char *s = luaL_checklstring(L, 1, &n);
	size_t need = n / 2 + 1;
	luaL_Buffer b;
	char *out = luaL_buffinitsize(L, &b, need);
	int r = sign_hex_decode(s, n, out, need);
	if (r < 0) {
		lua_pushnil(L);
		return 1;
	}
	luaL_pushresultsize(&b, (size_t)r);
	return 1;
}

static int ctx_equal(lua_State *L)
{
	size_t al, bl;
	const char *a = luaL_checklstring(L, 1, &al);
	const char *b = luaL_checklstring(L, 2, &bl);
	lua_pushboolean(L, sign_equal(a, al, b, bl) == 1);
	return 1;
}

static int ctx_url_encode(lua_State *L)
{
	static const char hexd[] = "0123456789ABCDEF";
	size_t n;
	const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
	luaL_Buffer b;
	luaL_buffinit(L, &b);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = s[i];
		if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
			luaL_addchar(&b, (char)c);
		} else {
			luaL_addchar(&b, '%');
			luaL_addchar(&b, hexd[c >> 4]);
			luaL_addchar(&b, hexd[c & 15]);
		}
	}
	luaL_pushresult(&b);
	return 1;
}

/* ctx.random_hex(nbytes): nbytes (1..64) cryptographically random bytes as
 * lower-case hex, e.g. a per-job secret. Raises on a bad count or when the
 * random source fails. */
static int ctx_random_hex(lua_State *L)
{
	lua_Integer n = luaL_checkinteger(L, 1);
	unsigned char raw[64];
	char out[2 * sizeof raw + 1];
	luaL_argcheck(L, n >= 1 && n <= (lua_Integer)sizeof raw, 1, "must be 1..64");
	if (sign_random(raw, (size_t)n) < 0 ||
	    sign_hex_encode((const char *)raw, (size_t)n, out, sizeof out) < 0)
		return luaL_error(L, "random_hex: no random bytes");
	lua_pushlstring(L, out, 2 * (size_t)n);
	return 1;
}

static int ctx_now(lua_State *L)
{
	struct vm *vm = vm_of(L);
	struct timespec ts;
	if (vm->now > 0) {
		lua_pushnumber(L, vm->now);
		return 1;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
	return 1;
}

/* ------------------------------------------------------------- state setup */

/* Copies the named fields of the table at src into a new table (pushed). */
static void copy_fields(lua_State *L, int src, const char *const *names)
{
	lua_newtable(L);
	for (; *names; names++) {
		lua_getfield(L, src, *names);
		lua_setfield(L, -2, *names);
	}
}

/*
 * Copies every field of the table at src except those listed (pushed).
 * Functions are wrapped by sb_charged as charge_kind_of(lib, name) says, so
 * that the work they do in C counts against the instruction budget.
 */
static void copy_except(lua_State *L, int src, const char *const *skip, const char *lib)
{
	src = lua_absindex(L, src);
	lua_newtable(L);
	lua_pushnil(L);
	while (lua_next(L, src)) {
		int drop = 0;
		if (lua_type(L, -2) == LUA_TSTRING)
			for (const char *const *s = skip; *s; s++)
				if (strcmp(lua_tostring(L, -2), *s) == 0)
					drop = 1;
		if (drop) {
			lua_pop(L, 1);
			continue;
		}
		if (lua_type(L, -1) == LUA_TFUNCTION && lua_type(L, -2) == LUA_TSTRING) {
			const char *fn = lua_tostring(L, -2);
			enum charge_kind k = charge_kind_of(lib, fn);
			if (k != CH_NONE) {
				lua_pushinteger(L, k);
				lua_pushboolean(L, strcmp(fn, "remove") == 0);
				lua_pushcclosure(L, sb_charged, 3);
			}
		}
		lua_pushvalue(L, -2);
		lua_insert(L, -2);
		lua_rawset(L, -4);
	}
}

/* Configures a cjson module table on top of the stack for untrusted input. */
static void cjson_setup(lua_State *L)
{
	int m = lua_gettop(L);
	lua_getfield(L, m, "decode_invalid_numbers");
	lua_pushboolean(L, 0);
	lua_call(L, 1, 0);
	lua_getfield(L, m, "decode_max_depth");
	lua_pushinteger(L, LUAJSON_MAX_DEPTH);
	lua_call(L, 1, 0);
	lua_getfield(L, m, "encode_max_depth");
	lua_pushinteger(L, LUAJSON_MAX_DEPTH);
	lua_call(L, 1, 0);
	lua_getfield(L, m, "decode");
	lua_pushcclosure(L, sb_json_decode, 1);
	lua_setfield(L, m, "decode");
	for (int i = 0; i < 2; i++) {
		const char *fn = i ? "decode" : "encode";
		lua_getfield(L, m, fn);
		lua_pushinteger(L, CH_SCAN);
		lua_pushboolean(L, 0);
		lua_pushcclosure(L, sb_charged, 3);
		lua_setfield(L, m, fn);
	}
}

struct setup_args {
	struct vm *vm;
	const struct libset *libs;
};

/*
 * Protected: opens the allowed libraries, builds the sandbox _ENV, the
 * protected string metatable, the lib sources, the require cache and ctx.
 */
static int vm_setup(lua_State *L)
{
	static const char *const base_names[] = { "assert", "error", "ipairs", "next",
		"pairs", "select", "tonumber", "tostring", "type",
		"rawequal", "rawget", "rawset", "rawlen", "getmetatable", "_VERSION", NULL };
	static const char *const no_dump[] = { "dump", NULL };
	static const char *const no_seed[] = { "randomseed", NULL };
	static const char *const none[] = { NULL };
	static const char *const os_names[] = { "time", "date", "clock", NULL };
	static const luaL_Reg ctx_fns[] = {
		{ "array", ctx_array }, { "secret", ctx_secret },
		{ "hmac_sha256", ctx_hmac_sha256 }, { "sha256", ctx_sha256 },
		{ "ed25519_verify", ctx_ed25519_verify }, { "base64", ctx_base64 },
		{ "base64_decode", ctx_base64_decode }, { "hex", ctx_hex },
		{ "hex_decode", ctx_hex_decode }, { "equal", ctx_equal },
		{ "url_encode", ctx_url_encode }, { "now", ctx_now }, { "log", sb_log },
		{ "random_hex", ctx_random_hex },
		{ NULL, NULL } };
	struct setup_args *a = lua_touserdata(L, 1);
	struct vm *vm = a->vm;
	int G, S, str, tbl, mth, utf, os, cj;

	lua_settop(L, 0);
	luaL_requiref(L, "_G", luaopen_base, 0);
	G = lua_gettop(L);
	luaL_requiref(L, LUA_STRLIBNAME, luaopen_string, 0);
	str = lua_gettop(L);
	luaL_requiref(L, LUA_TABLIBNAME, luaopen_table, 0);
	tbl = lua_gettop(L);
	luaL_requiref(L, LUA_MATHLIBNAME, luaopen_math, 0);
	mth = lua_gettop(L);
	luaL_requiref(L, LUA_UTF8LIBNAME, luaopen_utf8, 0);
	utf = lua_gettop(L);
	luaL_requiref(L, LUA_OSLIBNAME, luaopen_os, 0);
	os = lua_gettop(L);
	luaL_requiref(L, "cjson", luaopen_cjson, 0);
	cjson_setup(L);
	cj = lua_gettop(L);
	luaL_requiref(L, "cjson.safe", luaopen_cjson_safe, 0);
	cjson_setup(L);
	lua_pop(L, 1);

	/* the sandbox */
	copy_fields(L, G, base_names);
	S = lua_gettop(L);
	lua_pushvalue(L, S);
	lua_setfield(L, S, "_G");
	lua_getfield(L, G, "load");
	lua_pushcclosure(L, sb_load, 1);
	lua_setfield(L, S, "load");
	lua_pushcfunction(L, sb_collectgarbage);
	lua_setfield(L, S, "collectgarbage");
	lua_pushcfunction(L, sb_setmetatable);
	lua_setfield(L, S, "setmetatable");
	lua_pushcfunction(L, sb_xpcall);
	lua_setfield(L, S, "xpcall");
	lua_pushcfunction(L, sb_pcall);
	lua_setfield(L, S, "pcall");
	lua_pushcfunction(L, sb_require);
	lua_setfield(L, S, "require");
	lua_pushcfunction(L, sb_log);
	lua_setfield(L, S, "print");
	copy_except(L, str, no_dump, "string");
	lua_setfield(L, S, "string");
	copy_except(L, tbl, none, "table");
	lua_setfield(L, S, "table");
	copy_except(L, mth, no_seed, "math");
	lua_setfield(L, S, "math");
	copy_except(L, utf, none, "utf8");
	lua_setfield(L, S, "utf8");
	copy_fields(L, os, os_names);
	lua_setfield(L, S, "os");
	lua_pushvalue(L, S);
	lua_rawsetp(L, LUA_REGISTRYINDEX, &K_ENV);

	/* strings index the sandbox's string table; the metatable is hidden */
	lua_pushliteral(L, "");
	lua_getmetatable(L, -1);
	lua_getfield(L, S, "string");
	lua_setfield(L, -2, "__index");
	lua_pushboolean(L, 0);
	lua_setfield(L, -2, "__metatable");
	lua_pop(L, 2);

	/* the original string.find, for routing (the script cannot replace it) */
	lua_getfield(L, str, "find");
	vm->ref_find = luaL_ref(L, LUA_REGISTRYINDEX);

	/* lib sources and the require cache */
	lua_createtable(L, 0, (int)a->libs->n);
	for (size_t i = 0; i < a->libs->n; i++) {
		lua_pushlstring(L, a->libs->v[i].src, a->libs->v[i].len);
		lua_setfield(L, -2, a->libs->v[i].name);
	}
	lua_rawsetp(L, LUA_REGISTRYINDEX, &K_LIBSRC);
	lua_newtable(L);
	lua_rawsetp(L, LUA_REGISTRYINDEX, &K_LOADED);

	/* ctx: built once, per-call fields set by the caller */
	lua_createtable(L, 0, 16);
	luaL_setfuncs(L, ctx_fns, 0);
	copy_except(L, -1, none, "ctx");
	lua_remove(L, -2);
	lua_pushvalue(L, cj);
	lua_setfield(L, -2, "json");
	lua_pushlightuserdata(L, NULL);
	lua_setfield(L, -2, "null");
	vm->ref_ctx = luaL_ref(L, LUA_REGISTRYINDEX);
	/* hide the array marker: a __gc added to it would mark every array
	 * made later for finalization, and finalizers run without hooks */
	luajson_array_mt(L);
	lua_pushboolean(L, 0);
	lua_setfield(L, -2, "__metatable");
	lua_pop(L, 1);
	return 0;
}

static void vm_free(struct vm *vm)
{
	if (!vm)
		return;
	if (vm->L)
		lua_close(vm->L);
	json_decref(vm->models);
	json_decref(vm->settings);
	json_decref(vm->defaults);
	free(vm->literals);
	free(vm);
}

/* Strips one leading '^' and one trailing unescaped '$' (patterns are
 * anchored by the host anyway). */
static void push_anchored(lua_State *L, const char *p, size_t n)
{
	luaL_Buffer b;
	if (n && p[0] == '^') {
		p++;
		n--;
	}
	if (n && p[n - 1] == '$' && !(n >= 2 && p[n - 2] == '%'))
		n--;
	luaL_buffinit(L, &b);
	luaL_addchar(&b, '^');
	luaL_addlstring(&b, p, n);
	luaL_addchar(&b, '$');
	luaL_pushresult(&b);
}

struct load_args {
	struct vm *vm;
	const char *src;
	size_t len;
};

static int load_fail(lua_State *L, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	lua_pushvfstring(L, fmt, ap);
	va_end(ap);
	return lua_error(L);
}


/*
 * Reads a provider table's optional `callback_requires = { https = bool,
 * public = bool }` and `poll_404_limit = N` (default POLL_404_LIMIT), and
 * whether the config has settings for it. The config may override
 * callback_requires (providers.NAME.callback_requires, e.g. for a simulator
 * or a compatible self-hosted service). On a malformed field pushes the
 * message and returns -1 (the caller raises).
 */
static int read_requires(lua_State *L, int idx, int *https, int *pub, const char *what)
{
	if (lua_isnil(L, idx))
		return 0;
	if (!lua_istable(L, idx)) {
		lua_pushfstring(L, "%s must be a table { https = bool, public = bool }", what);
		return -1;
	}
	lua_getfield(L, idx, "https");
	lua_getfield(L, idx, "public");
	if ((!lua_isnil(L, -2) && !lua_isboolean(L, -2)) || (!lua_isnil(L, -1) && !lua_isboolean(L, -1))) {
		lua_pop(L, 2);
		lua_pushfstring(L, "%s.https and .public must be booleans", what);
		return -1;
	}
	*https = lua_toboolean(L, -2);
	*pub = lua_toboolean(L, -1);
	lua_pop(L, 2);
	return 0;
}

static int load_provider_info(lua_State *L, int T, struct vm *vm)
{
	json_t *conf = config_provider(vm->cfg, vm->name);
	vm->configured = conf != NULL;
	vm->cb_https = vm->cb_public = 0;
	lua_getfield(L, T, "callback_requires");
	int rc = read_requires(L, lua_gettop(L), &vm->cb_https, &vm->cb_public, "callback_requires");
	if (rc < 0) {
		return -1;
	}
	lua_pop(L, 1);
	json_t *ov = json_object_get(conf, "callback_requires");
	if (ov) {
		if (json_is_false(ov)) {
			vm->cb_https = vm->cb_public = 0;
		} else if (json_is_object(ov)) {
			json_t *hs = json_object_get(ov, "https"), *pb = json_object_get(ov, "public");
			if (hs)
				vm->cb_https = json_is_true(hs);
			if (pb)
				vm->cb_public = json_is_true(pb);
		}
	}
	vm->poll_404_limit = POLL_404_LIMIT;
	int t = lua_getfield(L, T, "poll_404_limit");
	if (t != LUA_TNIL) {
		if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 || lua_tointeger(L, -1) > 1000) {
			lua_pushliteral(L, "poll_404_limit must be an integer from 1 to 1000");
			return -1;
		}
		vm->poll_404_limit = (int)lua_tointeger(L, -1);
	}
	lua_pop(L, 1);
	return 0;
}

/*
 * Protected: compiles and runs the chunk, checks the returned table for its
 * kind, prepares models patterns and settings, and keeps the table.
 */
static int vm_load_body(lua_State *L)
{
	struct load_args *a = lua_touserdata(L, 1);
	struct vm *vm = a->vm;
	char chunkname[sizeof vm->chunk + 1];
	char jerr[256];
	int T;

	lua_settop(L, 0);
	snprintf(chunkname, sizeof chunkname, "@%s", vm->chunk);
	if (luaL_loadbufferx(L, a->src, a->len, chunkname, "t") != LUA_OK)
		return lua_error(L);
	lua_rawgetp(L, LUA_REGISTRYINDEX, &K_ENV);
	lua_setupvalue(L, -2, 1);
	lua_call(L, 0, 1);
	if (!lua_istable(L, 1))
		return load_fail(L, "must return a table, not %s", luaL_typename(L, 1));
	T = 1;

	lua_getfield(L, T, "name");
	if (vm->kind == SCRIPT_PROVIDER || !lua_isnil(L, -1)) {
		if (lua_type(L, -1) != LUA_TSTRING || strcmp(lua_tostring(L, -1), vm->name) != 0)
			return load_fail(L, "name must be \"%s\" (the file name)", vm->name);
	}
	lua_pop(L, 1);

	{
		static const char *const prov_fns[] = { "submit", "on_submitted", "on_callback", NULL };
		static const char *const hook_fns[] = { "transform", NULL };
		static const char *const front_fns[] = { "request", "respond", "error", NULL };
		static const char *const opt_fns[] = { "verify", "poll", "on_polled", "cancel", NULL };
		const char *const *req = vm->kind == SCRIPT_PROVIDER ? prov_fns
				       : vm->kind == SCRIPT_FRONT ? front_fns : hook_fns;
		for (; *req; req++) {
			if (lua_getfield(L, T, *req) != LUA_TFUNCTION)
				return load_fail(L, "missing function %s", *req);
			lua_pop(L, 1);
		}
		if (vm->kind == SCRIPT_PROVIDER) {
			for (const char *const *o = opt_fns; *o; o++) {
				int t = lua_getfield(L, T, *o);
				lua_pop(L, 1);
				if (t != LUA_TNIL && t != LUA_TFUNCTION)
					return load_fail(L, "%s must be a function", *o);
			}
			lua_getfield(L, T, "poll");
			int has_poll = !lua_isnil(L, -1);
			lua_getfield(L, T, "on_polled");
			int has_polled = !lua_isnil(L, -1);
			lua_pop(L, 2);
			if (has_poll && !has_polled)
				return load_fail(L, "missing function on_polled (needed with poll)");
		}
		if (vm->kind == SCRIPT_FRONT) {
			int t = lua_getfield(L, T, "webhook");
			lua_pop(L, 1);
			if (t != LUA_TNIL && t != LUA_TFUNCTION)
				return load_fail(L, "webhook must be a function");
		}
	}

	/* models: a list of Lua patterns, checked by matching once */
	vm->models = json_array();
	if (!vm->models)
		return load_fail(L, "out of memory");
	lua_newtable(L); /* anchored patterns */
	int P = lua_gettop(L);
	int mt = lua_getfield(L, T, "models");
	if (mt != LUA_TNIL) {
		if (mt != LUA_TTABLE)
			return load_fail(L, "models must be a list of patterns");
		lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
		if (n > MODELS_MAX)
			return load_fail(L, "models: at most %d patterns", MODELS_MAX);
		for (lua_Integer i = 1; i <= n; i++) {
			size_t pl;
			if (lua_rawgeti(L, -1, i) != LUA_TSTRING)
				return load_fail(L, "models[%d] must be a string", (int)i);
			const char *p = lua_tolstring(L, -1, &pl);
			if (json_array_append_new(vm->models, json_stringn_nocheck(p, pl)) < 0)
				return load_fail(L, "out of memory");
			push_anchored(L, p, pl);
			lua_rawgeti(L, LUA_REGISTRYINDEX, vm->ref_find);
			lua_pushliteral(L, "");
			lua_pushvalue(L, -3);
			if (lua_pcall(L, 2, 0, 0) != LUA_OK)
				return load_fail(L, "models[%d]: %s", (int)i, lua_tostring(L, -1));
			lua_rawseti(L, P, i);
			lua_pop(L, 1);
		}
		vm->npatterns = (size_t)n;
	}
	lua_pop(L, 1);
	vm->ref_patterns = luaL_ref(L, LUA_REGISTRYINDEX);

	/* defaults and settings */
	{
		json_t *def = NULL, *merged;
		json_t *conf = vm->kind == SCRIPT_PROVIDER ? config_provider(vm->cfg, vm->name) : NULL;
		int dt = lua_getfield(L, T, "defaults");
		if (dt != LUA_TNIL) {
			if (dt != LUA_TTABLE)
				return load_fail(L, "defaults must be a table");
			def = luajson_to_json(L, -1, jerr, sizeof jerr);
			if (!def)
				return load_fail(L, "defaults.%s", jerr);
			if (!json_is_object(def)) {
				json_decref(def);
				return load_fail(L, "defaults must be a table of settings");
			}
		}
		lua_pop(L, 1);
		vm->defaults = strip_secrets(def);
		merged = def ? json_deep_copy(def) : json_object();
		json_decref(def);
		if (merged && conf)
			json_object_update(merged, conf);
		vm->settings = strip_secrets(merged);
		json_decref(merged);
		if (!vm->defaults || !vm->settings)
			return load_fail(L, "out of memory");
		if (luajson_push(L, vm->settings) < 0)
			return load_fail(L, "settings nested too deeply");
		vm->ref_config = luaL_ref(L, LUA_REGISTRYINDEX);
		if (luajson_push(L, vm->defaults) < 0)
			return load_fail(L, "defaults nested too deeply");
		vm->ref_defaults = luaL_ref(L, LUA_REGISTRYINDEX);
	}

	if (vm->kind == SCRIPT_PROVIDER && load_provider_info(L, T, vm) < 0)
		return lua_error(L);

	lua_pushvalue(L, T);
	vm->ref_table = luaL_ref(L, LUA_REGISTRYINDEX);
	return 0;
}

/* ------------------------------------------------------------------- calls */

struct call {
	struct vm *vm;
	const char *fn;
	json_t *const *args;
	size_t nargs;
	const struct script_ctx *ctx;
	const json_t *ex_ctx; /* examples: the example's ctx object, or NULL */
	int missing;
};

/* Sets ctx's per-call fields and leaves ctx on the stack. */
static void push_ctx(lua_State *L, struct call *c)
{
	struct vm *vm = c->vm;
	const char *cb = c->ctx ? c->ctx->callback_url : NULL;
	json_t *keys = c->ctx ? c->ctx->keys : NULL;
	char buf[256];

	if (vm->example_mode) {
		json_t *x = c->ex_ctx ? json_object_get(c->ex_ctx, "callback_url") : NULL;
		if (json_is_string(x)) {
			cb = json_string_value(x);
		} else {
			snprintf(buf, sizeof buf,
				 "https://genrelay.invalid/v1/callbacks/%s/job_example/example-token",
				 vm->name);
			cb = buf;
		}
		keys = c->ex_ctx ? json_object_get(c->ex_ctx, "keys") : NULL;
	}
	lua_rawgeti(L, LUA_REGISTRYINDEX, vm->ref_ctx);
	lua_pushliteral(L, "callback_url");
	if (cb)
		lua_pushstring(L, cb);
	else
		lua_pushnil(L);
	lua_rawset(L, -3);
	lua_pushliteral(L, "keys");
	if (!keys || luajson_push(L, keys) < 0)
		lua_pushnil(L);
	lua_rawset(L, -3);
	lua_pushliteral(L, "config");
	lua_rawgeti(L, LUA_REGISTRYINDEX, vm->example_mode ? vm->ref_defaults : vm->ref_config);
	lua_rawset(L, -3);
}

/*
 * Protected: script.fn(args..., ctx), two results. ctx goes last, except
 * for verify(req, ctx, job) where it is the second argument.
 */
static int call_tramp(lua_State *L)
{
	struct call *c = lua_touserdata(L, 1);
	struct vm *vm = c->vm;
	size_t ctx_pos = strcmp(c->fn, "verify") == 0 && c->nargs > 1 ? 1 : c->nargs;

	lua_settop(L, 0);
	if (c->nargs > 200 || !lua_checkstack(L, (int)c->nargs + 8))
		return luaL_error(L, "too many arguments");
	lua_rawgeti(L, LUA_REGISTRYINDEX, vm->ref_table); /* 1 */
	if (lua_getfield(L, 1, c->fn) != LUA_TFUNCTION) { /* 2 */
		c->missing = 1;
		return 0;
	}
	push_ctx(L, c); /* 3 */
	lua_pushvalue(L, 2);
	for (size_t i = 0; i < c->nargs; i++) {
		if (i == ctx_pos)
			lua_pushvalue(L, 3);
		if (luajson_push(L, c->args[i]) < 0)
			return luaL_error(L, "argument %d is nested too deeply", (int)i + 1);
	}
	if (ctx_pos == c->nargs)
		lua_pushvalue(L, 3);
	lua_call(L, (int)c->nargs + 1, 2);
	return 2;
}

/*
 * Calls fn on vm; see script_call. A second result that is a string (verify's
 * reason) is copied into err on success; otherwise err is emptied.
 */
static int vm_call(struct vm *vm, const char *fn, json_t *const *args, size_t nargs,
		   const struct script_ctx *ctx, const json_t *ex_ctx, int example,
		   json_t **out, char *err, size_t errlen)
{
	struct call c = { vm, fn, args, nargs, ctx, ex_ctx, 0 };
	lua_State *L = vm->L;
	char jerr[256];
	int base, rc;

	*out = NULL;
	vm->example_mode = example;
	vm->example_secrets = ex_ctx ? json_object_get(ex_ctx, "secrets") : NULL;
	vm->now = ctx ? ctx->now : 0;
	vm->key = ctx && !example ? ctx->key : NULL;
	if (ex_ctx && json_is_number(json_object_get(ex_ctx, "now")))
		vm->now = json_number_value(json_object_get(ex_ctx, "now"));
	rc = vm_pcall(vm, call_tramp, &c, 2, err, errlen, &base);
	metrics_script_call(vm->chunk, rc < 0);
	vm->example_mode = 0;
	vm->example_secrets = NULL;
	vm->now = 0;
	vm->key = NULL;
	if (rc < 0)
		return -1;
	if (c.missing) {
		lua_settop(L, base);
		set_err(err, errlen, "%s: no function %s", vm->chunk, fn);
		return -2;
	}
	*out = luajson_to_json(L, base + 1, jerr, sizeof jerr);
	if (!*out) {
		set_err(err, errlen, "%s: %s returned a value that is not JSON: %s",
			vm->chunk, fn, jerr);
		lua_settop(L, base);
		return -1;
	}
	if (lua_type(L, base + 2) == LUA_TSTRING) {
		set_err(err, errlen, "%s", lua_tostring(L, base + 2));
		scrub_buf(vm->cfg ? vm->cfg->scrub : NULL, err, errlen);
	} else if (err && errlen)
		err[0] = '\0';
	lua_settop(L, base);
	return 0;
}

/* ------------------------------------------------------------- json subset */

static void json_brief(const json_t *v, char *out, size_t n)
{
	char *s;
	if (!v) {
		snprintf(out, n, "nothing");
		return;
	}
	s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
	if (!s) {
		snprintf(out, n, "?");
		return;
	}
	if (strlen(s) > 60)
		snprintf(out, n, "%.57s...", s);
	else
		snprintf(out, n, "%s", s);
	free(s);
}

static int subset_at(const json_t *e, const json_t *a, char *path, size_t plen,
		     char *where, size_t wlen)
{
	size_t pn = strlen(path);
	char eb[80], ab[80];

	if (json_is_null(e) && (!a || json_is_null(a)))
		return 1;
	if (json_is_object(e) && json_object_size(e) == 0 && json_is_array(a) &&
	    json_array_size(a) == 0)
		return 1; /* Lua cannot tell {} from [] */
	if (json_is_object(e) && json_is_object(a)) {
		const char *k;
		json_t *v;
		json_object_foreach((json_t *)e, k, v) {
			snprintf(path + pn, plen - pn, "%s%s", pn ? "." : "", k);
			if (!subset_at(v, json_object_get(a, k), path, plen, where, wlen))
				return 0;
			path[pn] = '\0';
		}
		return 1;
	}
	if (json_is_array(e) && json_is_array(a)) {
		if (json_array_size(e) != json_array_size(a)) {
			snprintf(where, wlen, "%s: expected %zu items, got %zu",
				 pn ? path : "(result)", json_array_size(e), json_array_size(a));
			return 0;
		}
		for (size_t i = 0; i < json_array_size(e); i++) {
			snprintf(path + pn, plen - pn, "[%zu]", i + 1);
			if (!subset_at(json_array_get(e, i), json_array_get(a, i), path,
				       plen, where, wlen))
				return 0;
			path[pn] = '\0';
		}
		return 1;
	}
	if (json_is_number(e) && json_is_number(a) &&
	    json_number_value(e) == json_number_value(a))
		return 1;
	if (a && !json_is_number(e) && json_equal(e, a))
		return 1;
	json_brief(e, eb, sizeof eb);
	json_brief(a, ab, sizeof ab);
	snprintf(where, wlen, "%s: expected %s, got %s", pn ? path : "(result)", eb, ab);
	return 0;
}

int script_json_subset(const json_t *expect, const json_t *actual, char *where,
		       size_t wherelen)
{
	char path[512] = "";
	char dummy[8];
	if (!where || !wherelen) {
		where = dummy;
		wherelen = sizeof dummy;
	}
	where[0] = '\0';
	return subset_at(expect, actual, path, sizeof path, where, wherelen);
}

/* ------------------------------------------------------------------ examples */

struct ex_args {
	struct vm *vm;
	json_t *list; /* out: [{fn,args,expect,expect_error,name,ctx}...] */
	char err[256];
};

/* Protected: converts the script's `examples` into JSON. */
static int examples_tramp(lua_State *L)
{
	struct ex_args *a = lua_touserdata(L, 1);
	struct vm *vm = a->vm;
	lua_settop(L, 0);
	lua_rawgeti(L, LUA_REGISTRYINDEX, vm->ref_table);
	int t = lua_getfield(L, 1, "examples");
	if (t == LUA_TNIL)
		return 0;
	if (t != LUA_TTABLE)
		return load_fail(L, "examples must be a list");
	a->list = luajson_to_json(L, 2, a->err, sizeof a->err);
	if (!a->list)
		return load_fail(L, "examples: %s", a->err);
	return 0;
}

/* Runs every example; 0 or -1 with the first failure in err. */
static int vm_run_examples(struct vm *vm, char *err, size_t errlen)
{
	struct ex_args a = { vm, NULL, "" };
	int base, rc = 0;
	char e2[512];

	if (vm_pcall(vm, examples_tramp, &a, 0, err, errlen, &base) < 0) {
		json_decref(a.list);
		return -1;
	}
	if (!a.list)
		return 0;
	if (json_is_object(a.list) && json_object_size(a.list) == 0) {
		json_decref(a.list);
		return 0;
	}
	if (!json_is_array(a.list)) {
		set_err(err, errlen, "%s: examples must be a list", vm->chunk);
		json_decref(a.list);
		return -1;
	}
	for (size_t i = 0; i < json_array_size(a.list) && rc == 0; i++) {
		json_t *ex = json_array_get(a.list, i), *out = NULL;
		json_t *fn = json_object_get(ex, "fn"), *args = json_object_get(ex, "args");
		json_t *expect = json_object_get(ex, "expect");
		json_t *experr = json_object_get(ex, "expect_error");
		json_t *exctx = json_object_get(ex, "ctx");
		json_t *nm = json_object_get(ex, "name");
		char label[128], where[256];
		json_t **argv = NULL;
		size_t nargs = 0;

		if (json_is_string(nm))
			snprintf(label, sizeof label, "example %zu (%.60s)", i + 1, json_string_value(nm));
		else
			snprintf(label, sizeof label, "example %zu", i + 1);
		if (!json_is_object(ex) || !json_is_string(fn)) {
			set_err(err, errlen, "%s: %s: needs fn", vm->chunk, label);
			rc = -1;
			break;
		}
		if (args && !json_is_array(args) &&
		    !(json_is_object(args) && json_object_size(args) == 0)) {
			set_err(err, errlen, "%s: %s: args must be a list", vm->chunk, label);
			rc = -1;
			break;
		}
		if (json_is_array(args)) {
			nargs = json_array_size(args);
			argv = calloc(nargs + 1, sizeof *argv);
			if (!argv) {
				set_err(err, errlen, "out of memory");
				rc = -1;
				break;
			}
			for (size_t j = 0; j < nargs; j++)
				argv[j] = json_array_get(args, j);
		}
		int r = vm_call(vm, json_string_value(fn), argv, nargs, NULL,
				json_is_object(exctx) ? exctx : NULL, 1, &out, e2, sizeof e2);
		free(argv);
		if (r == -2) {
			set_err(err, errlen, "%s: %s: no function %s", vm->chunk, label,
				json_string_value(fn));
			rc = -1;
		} else if (json_is_string(experr)) {
			if (r == 0) {
				set_err(err, errlen, "%s: %s: expected an error containing \"%s\", got none",
					vm->chunk, label, json_string_value(experr));
				rc = -1;
			} else if (!strstr(e2, json_string_value(experr))) {
				set_err(err, errlen, "%s: %s: expected an error containing \"%s\", got: %s",
					vm->chunk, label, json_string_value(experr), e2);
				rc = -1;
			}
		} else if (r < 0) {
			set_err(err, errlen, "%s: %s: %s", vm->chunk, label, e2);
			rc = -1;
		} else if (expect && !script_json_subset(expect, out, where, sizeof where)) {
			set_err(err, errlen, "%s: %s (%s): %s", vm->chunk, label,
				json_string_value(fn), where);
			rc = -1;
		}
		json_decref(out);
	}
	json_decref(a.list);
	return rc;
}

/* -------------------------------------------------------------- vm creation */

/*
 * Builds a new vm for one script: state, sandbox, chunk, checks, examples.
 * Returns it (caller frees with vm_free) or NULL with the reason in err.
 */
static struct vm *vm_new(const struct config *cfg, enum script_kind kind,
			 const char *name, const char *src, size_t len,
			 const struct libset *libs, const unsigned char sha[32],
			 char *err, size_t errlen)
{
	struct vm *vm = calloc(1, sizeof *vm);
	struct setup_args sa;
	struct load_args la;
	int base;

	if (!vm) {
		set_err(err, errlen, "%s/%s.lua: out of memory", kind_dir[kind], name);
		return NULL;
	}
	vm->kind = kind;
	snprintf(vm->name, sizeof vm->name, "%s", name);
	snprintf(vm->chunk, sizeof vm->chunk, "%s/%s.lua", kind_dir[kind], name);
	sha256_hex12(sha, vm->version);
	vm->cfg = cfg;
	vm->literals = scrub_lua_literals(src, len);
	vm->mem_cap = (cfg->lua_memory_mb ? cfg->lua_memory_mb : 32) * (size_t)1024 * 1024;
	vm->budget = cfg->lua_instructions > 0 ? cfg->lua_instructions : 10000000;
	vm->ref_table = vm->ref_ctx = vm->ref_config = vm->ref_defaults = LUA_NOREF;
	vm->ref_find = vm->ref_patterns = LUA_NOREF;

	vm->L = lua_newstate(vm_alloc, vm);
	if (!vm->L) {
		set_err(err, errlen, "%s: cannot create a Lua state", vm->chunk);
		goto fail;
	}
	*(struct vm **)lua_getextraspace(vm->L) = vm;
	vm->hook_step = 0; /* budget_reset installs the hook */

	sa.vm = vm;
	sa.libs = libs;
	if (vm_pcall(vm, vm_setup, &sa, 0, err, errlen, &base) < 0)
		goto fail;
	la.vm = vm;
	la.src = src;
	la.len = len;
	if (vm_pcall(vm, vm_load_body, &la, 0, err, errlen, &base) < 0)
		goto fail;
	if (vm_run_examples(vm, err, errlen) < 0)
		goto fail;
	lua_gc(vm->L, LUA_GCCOLLECT);
	return vm;
fail:
	vm_free(vm);
	return NULL;
}

/* ------------------------------------------------------------------- libs */

static void libset_free(struct libset *ls)
{
	for (size_t i = 0; i < ls->n; i++)
		free(ls->v[i].src);
	free(ls->v);
	ls->v = NULL;
	ls->n = ls->cap = 0;
}

static int cmp_lib(const void *a, const void *b)
{
	return strcmp(((const struct lib_src *)a)->name, ((const struct lib_src *)b)->name);
}

/*
 * Rescans DIR/lib into ls. Returns 1 when anything was added, changed or
 * removed, else 0. Unreadable files are logged and treated as absent.
 */
static int libset_scan(struct libset *ls, const char *dir)
{
	char path[4096];
	DIR *d;
	struct dirent *de;
	int changed = 0;

	for (size_t i = 0; i < ls->n; i++)
		ls->v[i].seen = 0;
	snprintf(path, sizeof path, "%s/lib", dir);
	d = opendir(path);
	while (d && (de = readdir(d))) {
		char name[SCRIPT_NAME_MAX + 1];
		struct stat st;
		struct lib_src *l = NULL;
		char *src;
		size_t len;
		unsigned char sha[32];
		char rerr[128];

		if (!lua_file_name(de->d_name, name))
			continue;
		snprintf(path, sizeof path, "%s/lib/%s", dir, de->d_name);
		if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
			continue;
		for (size_t i = 0; i < ls->n; i++)
			if (strcmp(ls->v[i].name, name) == 0)
				l = &ls->v[i];
		if (l && same_file(&l->st, &st)) {
			l->seen = 1;
			continue;
		}
		if (read_file(path, &src, &len, rerr, sizeof rerr) < 0) {
			log_warn("scripts: lib/%s.lua: %s", name, rerr);
			continue;
		}
		sign_sha256(src, len, sha);
		if (l && memcmp(l->sha, sha, 32) == 0) {
			l->st = st;
			l->seen = 1;
			free(src);
			continue;
		}
		if (!l) {
			if (ls->n == ls->cap) {
				size_t nc = ls->cap ? ls->cap * 2 : 8;
				struct lib_src *nv = realloc(ls->v, nc * sizeof *nv);
				if (!nv) {
					free(src);
					continue;
				}
				ls->v = nv;
				ls->cap = nc;
			}
			l = &ls->v[ls->n++];
			memset(l, 0, sizeof *l);
			snprintf(l->name, sizeof l->name, "%s", name);
		}
		free(l->src);
		l->src = src;
		l->len = len;
		l->st = st;
		memcpy(l->sha, sha, 32);
		l->seen = 1;
		changed = 1;
	}
	if (d)
		closedir(d);
	for (size_t i = 0; i < ls->n;) {
		if (!ls->v[i].seen) {
			free(ls->v[i].src);
			ls->v[i] = ls->v[--ls->n];
			changed = 1;
		} else {
			i++;
		}
	}
	if (ls->n > 1)
		qsort(ls->v, ls->n, sizeof *ls->v, cmp_lib);
	return changed;
}

/* ------------------------------------------------------------------- host */

struct script_host *script_host_new(const struct config *cfg)
{
	struct script_host *h;
	if (!cfg)
		return NULL;
	h = calloc(1, sizeof *h);
	if (h)
		h->cfg = cfg;
	return h;
}

void script_host_set_config(struct script_host *h, const struct config *cfg)
{
	if (!h || !cfg)
		return;
	h->cfg = cfg;
	for (size_t i = 0; i < h->n; i++)
		if (h->e[i].vm)
			h->e[i].vm->cfg = cfg;
}

void script_host_free(struct script_host *h)
{
	if (!h)
		return;
	for (size_t i = 0; i < h->n; i++) {
		vm_free(h->e[i].vm);
		free(h->e[i].last_error);
	}
	free(h->e);
	libset_free(&h->libs);
	free(h->dir);
	free(h);
}

static struct entry *find_entry(struct script_host *h, enum script_kind kind,
				const char *name)
{
	if (!h || !name)
		return NULL;
	for (size_t i = 0; i < h->n; i++)
		if (h->e[i].kind == kind && strcmp(h->e[i].name, name) == 0)
			return &h->e[i];
	return NULL;
}

static int cmp_entry(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;
	if (x->kind != y->kind)
		return (int)x->kind - (int)y->kind;
	return strcmp(x->name, y->name);
}

static void set_last_error(struct entry *e, const char *msg)
{
	free(e->last_error);
	e->last_error = msg ? strdup(msg) : NULL;
}

/*
 * Tries the file at path for entry e (content already read). On success the
 * new vm replaces the old one; otherwise the old stays and the reason is
 * recorded. Returns 1 when replaced, 0 when not.
 */
static int entry_try(struct script_host *h, struct entry *e, const char *src,
		     size_t len, const unsigned char sha[32], char *first_err,
		     size_t errlen)
{
	char err[1024];
	struct vm *vm = vm_new(h->cfg, e->kind, e->name, src, len, &h->libs, sha, err,
			       sizeof err);
	if (!vm) {
		if (e->vm)
			log_warn("scripts: keeping version %s of %s/%s.lua: %s", e->vm->version,
				 kind_dir[e->kind], e->name, err);
		else
			log_warn("scripts: not loaded: %s", err);
		set_last_error(e, err);
		if (first_err && errlen && !first_err[0])
			snprintf(first_err, errlen, "%s", err);
		return 0;
	}
	log_info("scripts: %s/%s.lua: loaded version %s%s%s", kind_dir[e->kind], e->name,
		 vm->version, e->vm ? " replacing " : "", e->vm ? e->vm->version : "");
	vm_free(e->vm);
	e->vm = vm;
	e->loaded_at = time(NULL);
	set_last_error(e, NULL);
	return 1;
}

/*
 * One pass over providers/ and hooks/: loads what is new or changed (all of
 * it when a lib changed), unloads what is gone. Returns the number of
 * scripts replaced, added or removed; *failures counts failed attempts.
 */
static int host_scan(struct script_host *h, char *first_err, size_t errlen, int *failures)
{
	const char *dir = host_dir(h);
	int libs_changed = libset_scan(&h->libs, dir);
	int changes = 0;
	char path[4096];

	*failures = 0;
	for (size_t i = 0; i < h->n; i++)
		h->e[i].seen = 0;
	for (int kind = 0; kind < SCRIPT_KINDS; kind++) {
		DIR *d;
		struct dirent *de;
		snprintf(path, sizeof path, "%s/%s", dir, kind_dir[kind]);
		d = opendir(path);
		while (d && (de = readdir(d))) {
			char name[SCRIPT_NAME_MAX + 1], rerr[256];
			struct stat st;
			struct entry *e;
			char *src;
			size_t len;
			unsigned char sha[32];

			if (!lua_file_name(de->d_name, name))
				continue;
			if (h->one && (kind != (int)h->one_kind || strcmp(name, h->one_name) != 0))
				continue;
			snprintf(path, sizeof path, "%s/%s/%s", dir, kind_dir[kind], de->d_name);
			if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
				continue;
			e = find_entry(h, (enum script_kind)kind, name);
			if (!e) {
				if (h->n == h->cap) {
					size_t nc = h->cap ? h->cap * 2 : 16;
					struct entry *ne = realloc(h->e, nc * sizeof *ne);
					if (!ne)
						continue;
					h->e = ne;
					h->cap = nc;
				}
				e = &h->e[h->n++];
				memset(e, 0, sizeof *e);
				e->kind = (enum script_kind)kind;
				snprintf(e->name, sizeof e->name, "%s", name);
			}
			e->seen = 1;
			if (e->have_st && same_file(&e->st, &st) && !libs_changed)
				continue;
			if (read_file(path, &src, &len, rerr, sizeof rerr) < 0) {
				char msg[512];
				snprintf(msg, sizeof msg, "%s/%s.lua: %s", kind_dir[kind], name, rerr);
				set_last_error(e, msg);
				(*failures)++;
				if (first_err && errlen && !first_err[0])
					snprintf(first_err, errlen, "%s", msg);
				continue;
			}
			sign_sha256(src, len, sha);
			e->st = st;
			e->have_st = 1;
			if (e->have_sha && memcmp(e->sha, sha, 32) == 0 && !libs_changed) {
				free(src);
				continue;
			}
			memcpy(e->sha, sha, 32);
			e->have_sha = 1;
			if (entry_try(h, e, src, len, sha, first_err, errlen))
				changes++;
			else
				(*failures)++;
			free(src);
		}
		if (d)
			closedir(d);
	}
	for (size_t i = 0; i < h->n;) {
		struct entry *e = &h->e[i];
		if (e->seen) {
			i++;
			continue;
		}
		if (e->vm) {
			log_info("scripts: %s/%s.lua: removed, unloaded version %s",
				 kind_dir[e->kind], e->name, e->vm->version);
			changes++;
		}
		vm_free(e->vm);
		free(e->last_error);
		h->e[i] = h->e[--h->n];
	}
	if (h->n > 1)
		qsort(h->e, h->n, sizeof *h->e, cmp_entry);
	return changes;
}

int script_host_load(struct script_host *h, char *err, size_t errlen)
{
	struct stat st;
	int failures;
	const char *dir;

	if (err && errlen)
		err[0] = '\0';
	if (!h)
		return -1;
	dir = host_dir(h);
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		set_err(err, errlen, "scripts directory '%s' not found", dir);
		return -1;
	}
	host_scan(h, err, errlen, &failures);
	return failures ? -1 : 0;
}

int script_host_refresh(struct script_host *h)
{
	int failures;
	if (!h)
		return 0;
	return host_scan(h, NULL, 0, &failures);
}

static struct vm *find_vm(struct script_host *h, enum script_kind kind, const char *name)
{
	struct entry *e = find_entry(h, kind, name);
	return e ? e->vm : NULL;
}

int script_exists(struct script_host *h, enum script_kind kind, const char *name)
{
	return find_vm(h, kind, name) != NULL;
}

struct hasfn_args {
	struct vm *vm;
	const char *fn;
	int has;
};

static int hasfn_tramp(lua_State *L)
{
	struct hasfn_args *a = lua_touserdata(L, 1);
	lua_rawgeti(L, LUA_REGISTRYINDEX, a->vm->ref_table);
	a->has = lua_getfield(L, -1, a->fn) == LUA_TFUNCTION;
	return 0;
}

int script_has_fn(struct script_host *h, enum script_kind kind, const char *name,
		  const char *fn)
{
	struct vm *vm = find_vm(h, kind, name);
	struct hasfn_args a = { vm, fn, 0 };
	char err[128];
	int base;
	if (!vm || !fn)
		return 0;
	if (vm_pcall(vm, hasfn_tramp, &a, 0, err, sizeof err, &base) < 0)
		return 0;
	return a.has;
}

const char *script_version(struct script_host *h, enum script_kind kind, const char *name)
{
	struct vm *vm = find_vm(h, kind, name);
	return vm ? vm->version : NULL;
}

int script_call(struct script_host *h, enum script_kind kind, const char *name,
		const char *fn, json_t *const *args, size_t nargs,
		const struct script_ctx *ctx, json_t **out, char *err, size_t errlen)
{
	struct vm *vm = find_vm(h, kind, name);
	if (out)
		*out = NULL;
	if (!vm || !fn || !out) {
		set_err(err, errlen, "%s/%s.lua: not loaded", kind_dir[(unsigned)kind < SCRIPT_KINDS ? kind : 0],
			name ? name : "?");
		return -2;
	}
	return vm_call(vm, fn, args, nargs, ctx, NULL, 0, out, err, errlen);
}

struct route_args {
	struct vm *vm;
	const char *model;
	int matched;
};

static int route_tramp(lua_State *L)
{
	struct route_args *a = lua_touserdata(L, 1);
	struct vm *vm = a->vm;
	lua_settop(L, 0);
	lua_rawgeti(L, LUA_REGISTRYINDEX, vm->ref_find);     /* 1 */
	lua_rawgeti(L, LUA_REGISTRYINDEX, vm->ref_patterns); /* 2 */
	lua_pushstring(L, a->model);                         /* 3 */
	for (lua_Integer i = 1; i <= (lua_Integer)vm->npatterns; i++) {
		lua_pushvalue(L, 1);
		lua_pushvalue(L, 3);
		lua_rawgeti(L, 2, i);
		lua_call(L, 2, 1);
		if (!lua_isnil(L, -1)) {
			a->matched = 1;
			return 0;
		}
		lua_pop(L, 1);
	}
	return 0;
}

int script_route(struct script_host *h, const char *model, char *out, size_t outlen)
{
	if (!h || !model)
		return -1;
	for (size_t i = 0; i < h->n; i++) {
		struct entry *e = &h->e[i];
		struct route_args a = { e->vm, model, 0 };
		char err[256];
		int base;
		if (e->kind != SCRIPT_PROVIDER || !e->vm || !e->vm->npatterns || !e->vm->configured)
			continue;
		if (vm_pcall(e->vm, route_tramp, &a, 0, err, sizeof err, &base) < 0) {
			log_warn("scripts: routing: %s", err);
			continue;
		}
		if (a.matched) {
			if (out && outlen)
				snprintf(out, outlen, "%s", e->name);
			return 0;
		}
	}
	return -1;
}

json_t *script_host_models(struct script_host *h)
{
	json_t *r = json_array();
	if (!r || !h)
		return r;
	for (size_t i = 0; i < h->n; i++) {
		struct entry *e = &h->e[i];
		if (e->kind != SCRIPT_PROVIDER || !e->vm || !e->vm->configured)
			continue;
		json_array_append_new(r, json_pack("{s:s, s:O}", "provider", e->name,
						   "models", e->vm->models));
	}
	return r;
}

json_t *script_host_list(struct script_host *h)
{
	json_t *r = json_array();
	if (!r || !h)
		return r;
	for (size_t i = 0; i < h->n; i++) {
		struct entry *e = &h->e[i];
		json_t *o = json_object();
		char ts[32];
		if (!o)
			continue;
		json_object_set_new(o, "name", json_string(e->name));
		json_object_set_new(o, "kind", json_string(kind_name[e->kind]));
		json_object_set_new(o, "version", e->vm ? json_string(e->vm->version) : json_null());
		if (e->vm) {
			struct tm tm;
			gmtime_r(&e->loaded_at, &tm);
			strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
			json_object_set_new(o, "loaded_at", json_string(ts));
		} else {
			json_object_set_new(o, "loaded_at", json_null());
		}
		json_object_set_new(o, "last_error",
				    e->last_error ? json_string(e->last_error) : json_null());
		json_array_append_new(r, o);
	}
	return r;
}

int script_provider_info(struct script_host *h, const char *name,
			 struct script_provider_info *out)
{
	struct vm *vm = find_vm(h, SCRIPT_PROVIDER, name);
	memset(out, 0, sizeof *out);
	if (!vm)
		return -1;
	out->configured = vm->configured;
	out->callback_https = vm->cb_https;
	out->callback_public = vm->cb_public;
	out->poll_404_limit = vm->poll_404_limit;
	json_t *conf = config_provider(vm->cfg, name);
	out->callbacks = !json_is_false(json_object_get(conf, "callbacks"));
	json_t *mi = json_object_get(vm->settings, "max_inflight");
	if (!mi)
		mi = json_object_get(vm->settings, "queue_limit");
	out->max_inflight = json_is_integer(mi) && json_integer_value(mi) > 0
		? (long)json_integer_value(mi) : 0;
	return 0;
}

json_t *script_provider_settings(struct script_host *h, const char *name)
{
	struct vm *vm = find_vm(h, SCRIPT_PROVIDER, name);
	return vm ? json_deep_copy(vm->settings) : NULL;
}

/*
 * Splits DIR/KIND/NAME.lua (KIND providers or hooks) into dir (the scripts
 * directory, "." or "/" when the path has no more), *kind and name
 * (SCRIPT_NAME_MAX + 1 bytes). 0, or -1 with the reason in err.
 */
static int split_script_path(const char *path, char *dir, size_t dirlen,
			     enum script_kind *kind, char *name, char *err, size_t errlen)
{
	char parent[64];
	const char *slash, *base;

	snprintf(dir, dirlen, "%s", path);
	slash = strrchr(dir, '/');
	base = slash ? slash + 1 : dir;
	if (!lua_file_name(base, name)) {
		set_err(err, errlen, "%s: not a script name ([A-Za-z0-9_]+.lua, at most %d characters)",
			path, SCRIPT_NAME_MAX);
		return -1;
	}
	if (!slash) {
		set_err(err, errlen, "%s: must be under providers/, hooks/ or fronts/", path);
		return -1;
	}
	dir[slash - dir] = '\0';
	slash = strrchr(dir, '/');
	{
		const char *pp = slash ? slash + 1 : dir;
		size_t pl = strlen(pp);
		if (pl >= sizeof parent)
			pl = sizeof parent - 1;
		memcpy(parent, pp, pl);
		parent[pl] = '\0';
	}
	if (strcmp(parent, "providers") == 0)
		*kind = SCRIPT_PROVIDER;
	else if (strcmp(parent, "hooks") == 0)
		*kind = SCRIPT_HOOK;
	else if (strcmp(parent, "fronts") == 0)
		*kind = SCRIPT_FRONT;
	else {
		set_err(err, errlen, "%s: must be under providers/, hooks/ or fronts/", path);
		return -1;
	}
	if (slash)
		dir[slash - dir] = '\0';
	else
		snprintf(dir, dirlen, ".");
	if (dir[0] == '\0')
		snprintf(dir, dirlen, "/");
	return 0;
}

int script_check_file(const struct config *cfg, const char *path, char *err,
		      size_t errlen)
{
	char dir[4096], name[SCRIPT_NAME_MAX + 1];
	enum script_kind kind;
	struct libset libs = { NULL, 0, 0 };
	unsigned char sha[32];
	char *src = NULL;
	size_t len;
	struct vm *vm;
	char rerr[256];

	if (err && errlen)
		err[0] = '\0';
	if (!cfg || !path) {
		set_err(err, errlen, "no file");
		return -1;
	}
	if (split_script_path(path, dir, sizeof dir, &kind, name, err, errlen) < 0)
		return -1;
	if (read_file(path, &src, &len, rerr, sizeof rerr) < 0) {
		set_err(err, errlen, "%s: %s", path, rerr);
		return -1;
	}
	libset_scan(&libs, dir);
	sign_sha256(src, len, sha);
	vm = vm_new(cfg, kind, name, src, len, &libs, sha, err, errlen);
	free(src);
	libset_free(&libs);
	if (!vm)
		return -1;
	vm_free(vm);
	return 0;
}

struct script_host *script_host_new_file(const struct config *cfg, const char *path,
					 enum script_kind *kind, char *name, size_t namelen,
					 char *err, size_t errlen)
{
	char dir[4096], nm[SCRIPT_NAME_MAX + 1];
	enum script_kind k;
	struct script_host *h;
	struct stat st;

	if (err && errlen)
		err[0] = '\0';
	if (!cfg || !path) {
		set_err(err, errlen, "no file");
		return NULL;
	}
	if (split_script_path(path, dir, sizeof dir, &k, nm, err, errlen) < 0)
		return NULL;
	if (stat(path, &st) < 0) {
		set_err(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return NULL;
	}
	if (!S_ISREG(st.st_mode)) {
		set_err(err, errlen, "%s: not a regular file", path);
		return NULL;
	}
	h = script_host_new(cfg);
	if (!h || !(h->dir = strdup(dir))) {
		script_host_free(h);
		set_err(err, errlen, "out of memory");
		return NULL;
	}
	h->one = 1;
	h->one_kind = k;
	snprintf(h->one_name, sizeof h->one_name, "%s", nm);
	if (script_host_load(h, err, errlen) < 0) {
		script_host_free(h);
		return NULL;
	}
	if (!script_exists(h, k, nm)) {
		set_err(err, errlen, "%s: not found in %s/%s", path, dir, kind_dir[k]);
		script_host_free(h);
		return NULL;
	}
	if (kind)
		*kind = k;
	if (name && namelen)
		snprintf(name, namelen, "%s", nm);
	return h;
}
