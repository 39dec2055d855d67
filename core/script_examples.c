/*
 * script_examples.c: the examples runner and the JSON subset matcher (see
 * script_examples.h and script.h).
 */
#include "script_examples.h"
#include "luajson.h"
#include "script_call.h"
#include "script_vm.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
		return luaL_error(L, "examples must be a list");
	a->list = luajson_to_json(L, 2, a->err, sizeof a->err);
	if (!a->list)
		return luaL_error(L, "examples: %s", a->err);
	return 0;
}

/* Runs every example; 0 or -1 with the first failure in err. */
int examples_run(struct vm *vm, char *err, size_t errlen)
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
		script_set_err(err, errlen, "%s: examples must be a list", vm->chunk);
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
			script_set_err(err, errlen, "%s: %s: needs fn", vm->chunk, label);
			rc = -1;
			break;
		}
		if (args && !json_is_array(args) &&
		    !(json_is_object(args) && json_object_size(args) == 0)) {
			script_set_err(err, errlen, "%s: %s: args must be a list", vm->chunk, label);
			rc = -1;
			break;
		}
		if (json_is_array(args)) {
			nargs = json_array_size(args);
			argv = calloc(nargs + 1, sizeof *argv);
			if (!argv) {
				script_set_err(err, errlen, "out of memory");
				rc = -1;
				break;
			}
			for (size_t j = 0; j < nargs; j++)
				argv[j] = json_array_get(args, j);
		}
		int r = scall_run(vm, json_string_value(fn), argv, nargs, NULL,
				json_is_object(exctx) ? exctx : NULL, 1, &out, e2, sizeof e2);
		free(argv);
		if (r == -2) {
			script_set_err(err, errlen, "%s: %s: no function %s", vm->chunk, label,
				json_string_value(fn));
			rc = -1;
		} else if (json_is_string(experr)) {
			if (r == 0) {
				script_set_err(err, errlen, "%s: %s: expected an error containing \"%s\", got none",
					vm->chunk, label, json_string_value(experr));
				rc = -1;
			} else if (!strstr(e2, json_string_value(experr))) {
				script_set_err(err, errlen, "%s: %s: expected an error containing \"%s\", got: %s",
					vm->chunk, label, json_string_value(experr), e2);
				rc = -1;
			}
		} else if (r < 0) {
			script_set_err(err, errlen, "%s: %s: %s", vm->chunk, label, e2);
			rc = -1;
		} else if (expect && !script_json_subset(expect, out, where, sizeof where)) {
			script_set_err(err, errlen, "%s: %s (%s): %s", vm->chunk, label,
				json_string_value(fn), where);
			rc = -1;
		}
		json_decref(out);
	}
	json_decref(a.list);
	return rc;
}

