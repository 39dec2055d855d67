/*
 * script_host.c: the host (see script.h): one entry per script file,
 * sorted by kind, then name, with its running vm, the identity of the last
 * content tried and the last error. A reload reads compile -> check ->
 * swap: a changed file is compiled in a fresh state and checked against
 * the contract (vm_new), its examples run (examples_run), and only then
 * does it replace the running version; anything else keeps the running
 * version and records why.
 *
 * The top layer of the host (script_int.h): calls script_examples,
 * script_call, script_vm, script_fs and script_util, and is called by the
 * rest of the core through script.h.
 */
#include "script.h"
#include "config.h"
#include "log.h"
#include "sign.h"
#include "script_call.h"
#include "script_examples.h"
#include "script_fs.h"
#include "script_int.h"
#include "script_vm.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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
	scriptfs_lib_free(&h->libs);
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
 * Compile and check: a new vm for the script (compiled in a fresh state,
 * checked against the contract), then its examples. Returns the vm (caller
 * frees) or NULL with the reason in err.
 */
static struct vm *build_vm(const struct config *cfg, enum script_kind kind, const char *name,
			   const char *src, size_t len, const struct libset *libs,
			   const unsigned char sha[32], char *err, size_t errlen)
{
	struct vm *vm = vm_new(cfg, kind, name, src, len, libs, sha, err, errlen);
	if (!vm)
		return NULL;
	if (examples_run(vm, err, errlen) < 0) {
		vm_free(vm);
		return NULL;
	}
	lua_gc(vm->L, LUA_GCCOLLECT);
	return vm;
}

/*
 * Tries src (the file's content, read) for entry e. On success
 * the new vm replaces the old one; otherwise the old stays and the reason is
 * recorded. Returns 1 when replaced, 0 when not.
 */
static int entry_try(struct script_host *h, struct entry *e, const char *src,
		     size_t len, const unsigned char sha[32], char *first_err,
		     size_t errlen)
{
	char err[1024];
	struct vm *vm = build_vm(h->cfg, e->kind, e->name, src, len, &h->libs, sha, err,
			       sizeof err);
	if (!vm) {
		if (e->vm)
			log_warn("scripts: keeping version %s of %s/%s.lua: %s", e->vm->version,
				 script_kind_dir[e->kind], e->name, err);
		else
			log_warn("scripts: not loaded: %s", err);
		set_last_error(e, err);
		if (first_err && errlen && !first_err[0])
			snprintf(first_err, errlen, "%s", err);
		return 0;
	}
	log_info("scripts: %s/%s.lua: loaded version %s%s%s", script_kind_dir[e->kind], e->name,
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
	int libs_changed = scriptfs_lib_scan(&h->libs, dir);
	int changes = 0;
	char path[4096];

	*failures = 0;
	for (size_t i = 0; i < h->n; i++)
		h->e[i].seen = 0;
	for (int kind = 0; kind < SCRIPT_KINDS; kind++) {
		DIR *d;
		struct dirent *de;
		snprintf(path, sizeof path, "%s/%s", dir, script_kind_dir[kind]);
		d = opendir(path);
		while (d && (de = readdir(d))) {
			char name[SCRIPT_NAME_MAX + 1], rerr[256];
			struct stat st;
			struct entry *e;
			char *src;
			size_t len;
			unsigned char sha[32];

			if (!scriptfs_name(de->d_name, name))
				continue;
			if (h->one && (kind != (int)h->one_kind || strcmp(name, h->one_name) != 0))
				continue;
			snprintf(path, sizeof path, "%s/%s/%s", dir, script_kind_dir[kind], de->d_name);
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
			if (e->have_st && scriptfs_same(&e->st, &st) && !libs_changed)
				continue;
			if (scriptfs_read(path, &src, &len, rerr, sizeof rerr) < 0) {
				char msg[512];
				snprintf(msg, sizeof msg, "%s/%s.lua: %s", script_kind_dir[kind], name, rerr);
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
				 script_kind_dir[e->kind], e->name, e->vm->version);
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
		script_set_err(err, errlen, "scripts directory '%s' not found", dir);
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

int script_has_fn(struct script_host *h, enum script_kind kind, const char *name,
		  const char *fn)
{
	return vm_has_fn(find_vm(h, kind, name), fn);
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
		script_set_err(err, errlen, "%s/%s.lua: not loaded", script_kind_dir[(unsigned)kind < SCRIPT_KINDS ? kind : 0],
			name ? name : "?");
		return -2;
	}
	return scall_run(vm, fn, args, nargs, ctx, NULL, 0, out, err, errlen);
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
		json_object_set_new(o, "kind", json_string(script_kind_name[e->kind]));
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

const json_t *script_provider_settings_ref(struct script_host *h, const char *name)
{
	struct vm *vm = find_vm(h, SCRIPT_PROVIDER, name);
	return vm ? vm->settings : NULL;
}

int script_provider_number(struct script_host *h, const char *name, const char *key,
			   double *out)
{
	const json_t *v = json_object_get(script_provider_settings_ref(h, name), key);
	if (!json_is_number(v))
		return -1;
	*out = json_number_value(v);
	return 0;
}

int script_callback(struct script_host *h, const char *provider, json_t *req, json_t *job,
		    struct script_json_field *fields, size_t nfields,
		    const struct script_ctx *ctx, json_t **out, char *err, size_t errlen)
{
	struct vm *vm = find_vm(h, SCRIPT_PROVIDER, provider);
	*out = NULL;
	for (size_t i = 0; i < nfields; i++)
		fields[i].ok = 0;
	if (!vm) {
		script_set_err(err, errlen, "providers/%s.lua: not loaded", provider ? provider : "?");
		return -2;
	}
	return scall_callback(vm, req, job, fields, nfields, ctx, out, err, errlen);
}

int script_call_fields(struct script_host *h, enum script_kind kind, const char *name,
		       const char *fn, json_t *const *args, size_t nargs,
		       struct script_json_field *fields, size_t nfields,
		       struct script_rendered *render, const struct script_ctx *ctx,
		       json_t **out, char *err, size_t errlen)
{
	struct vm *vm = find_vm(h, kind, name);
	int rc;
	for (size_t i = 0; i < nfields; i++)
		fields[i].ok = 0;
	if (render) {
		render->text = NULL;
		render->len = 0;
	}
	if (!vm)
		return script_call(h, kind, name, fn, args, nargs, ctx, out, err, errlen);
	vm->fields = fields;
	vm->nfields = nfields;
	vm->render = render;
	rc = script_call(h, kind, name, fn, args, nargs, ctx, out, err, errlen);
	vm->fields = NULL;
	vm->nfields = 0;
	vm->render = NULL;
	if (rc < 0 && render) {
		free(render->text);
		render->text = NULL;
		render->len = 0;
	}
	return rc;
}

int script_verify(struct script_host *h, const char *provider, json_t *req, json_t *job,
		  const struct script_ctx *ctx, char *why, size_t whylen)
{
	struct vm *vm = find_vm(h, SCRIPT_PROVIDER, provider);
	json_t *args[2] = { req, job }, *res = NULL;
	int rc;

	if (why && whylen)
		why[0] = '\0';
	if (!vm || !vm_has_fn(vm, "verify"))
		return -2;
	rc = scall_run(vm, "verify", args, job ? 2 : 1, ctx, NULL, 0, &res, why, whylen);
	if (rc < 0) {
		json_decref(res);
		return rc == -2 ? -2 : -1;
	}
	rc = json_is_true(res) ? 1 : 0;
	json_decref(res);
	if (rc == 1 && why && whylen)
		why[0] = '\0';
	return rc;
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
	if (!scriptfs_name(base, name)) {
		script_set_err(err, errlen, "%s: not a script name ([A-Za-z0-9_]+.lua, at most %d characters)",
			path, SCRIPT_NAME_MAX);
		return -1;
	}
	if (!slash) {
		script_set_err(err, errlen, "%s: must be under providers/, hooks/ or fronts/", path);
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
		script_set_err(err, errlen, "%s: must be under providers/, hooks/ or fronts/", path);
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
		script_set_err(err, errlen, "no file");
		return -1;
	}
	if (split_script_path(path, dir, sizeof dir, &kind, name, err, errlen) < 0)
		return -1;
	if (scriptfs_read(path, &src, &len, rerr, sizeof rerr) < 0) {
		script_set_err(err, errlen, "%s: %s", path, rerr);
		return -1;
	}
	scriptfs_lib_scan(&libs, dir);
	sign_sha256(src, len, sha);
	vm = build_vm(cfg, kind, name, src, len, &libs, sha, err, errlen);
	free(src);
	scriptfs_lib_free(&libs);
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
		script_set_err(err, errlen, "no file");
		return NULL;
	}
	if (split_script_path(path, dir, sizeof dir, &k, nm, err, errlen) < 0)
		return NULL;
	if (stat(path, &st) < 0) {
		script_set_err(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return NULL;
	}
	if (!S_ISREG(st.st_mode)) {
		script_set_err(err, errlen, "%s: not a regular file", path);
		return NULL;
	}
	h = script_host_new(cfg);
	if (!h || !(h->dir = strdup(dir))) {
		script_host_free(h);
		script_set_err(err, errlen, "out of memory");
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
		script_set_err(err, errlen, "%s: not found in %s/%s", path, dir, script_kind_dir[k]);
		script_host_free(h);
		return NULL;
	}
	if (kind)
		*kind = k;
	if (name && namelen)
		snprintf(name, namelen, "%s", nm);
	return h;
}
