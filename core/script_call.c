/*
 * script_call.c: the call path, with the core's checks around provider
 * steps (see script_call.h).
 */
#include "script_call.h"
#include "luajson.h"
#include "script_vm.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#define MESSAGE_MAX 512 /* bytes of a message taken from an error answer */

struct message_args {
	const json_t *res;
	char msg[MESSAGE_MAX];
};

/* Protected: require("lib.util").res_message(res), through the sandbox's
 * own require (so it runs on the lib version the host checked). */
static int message_tramp(lua_State *L)
{
	struct message_args *a = lua_touserdata(L, 1);
	lua_settop(L, 0);
	lua_rawgetp(L, LUA_REGISTRYINDEX, &script_key_env);
	if (lua_getfield(L, 1, "require") != LUA_TFUNCTION)
		return 0;
	lua_pushliteral(L, "lib.util");
	lua_call(L, 1, 1);
	if (!lua_istable(L, -1) || lua_getfield(L, -1, "res_message") != LUA_TFUNCTION)
		return 0;
	if (luajson_push(L, a->res) < 0)
		return 0;
	lua_call(L, 1, 1);
	if (lua_type(L, -1) == LUA_TSTRING)
		snprintf(a->msg, sizeof a->msg, "%s", lua_tostring(L, -1));
	return 0;
}

/* A non-empty string, or NULL. */
static const char *text_of(const json_t *v)
{
	const char *s = json_string_value(v);
	return s && *s ? s : NULL;
}

/*
 * The message of an error answer: lib/util.lua's res_message when the
 * scripts directory has it (every shape of error body it knows); else the
 * JSON body's error.message, error, message or detail (a string); else
 * the start of a body that is not JSON; else "HTTP <status>".
 */
static void answer_message(struct vm *vm, const json_t *res, long status, char *out, size_t outlen)
{
	struct message_args a = { res, "" };
	char err[256];
	int base;
	if (vm_pcall(vm, message_tramp, &a, 0, err, sizeof err, &base) == 0 && a.msg[0]) {
		snprintf(out, outlen, "%s", a.msg);
		return;
	}
	const json_t *j = json_object_get(res, "json"), *e = json_object_get(j, "error");
	const char *m = text_of(json_object_get(e, "message"));
	if (!m)
		m = text_of(e);
	if (!m)
		m = text_of(json_object_get(j, "message"));
	if (!m)
		m = text_of(json_object_get(j, "detail"));
	if (m) {
		snprintf(out, outlen, "%.500s", m);
		return;
	}
	const char *body = json_string_value(json_object_get(res, "body"));
	if (body && *body && !j)
		snprintf(out, outlen, "%.200s", body);
	else
		snprintf(out, outlen, "HTTP %ld", status);
}

static json_t *failed(const char *code, const char *message)
{
	json_t *e = json_pack("{s:s}", "message", message);
	if (e && code)
		json_object_set_new(e, "code", json_string(code));
	return json_pack("{s:s,s:o*}", "state", "failed", "error", e);
}

/* The status of res when it is a number outside 2xx, else 0. */
static long error_status(json_t *const *args, size_t nargs)
{
	json_t *st = nargs ? json_object_get(args[0], "status") : NULL;
	double v;
	if (!json_is_number(st))
		return 0;
	v = json_number_value(st);
	return v >= 200 && v < 300 ? 0 : (long)v;
}

/* A request id the core can keep: a non-empty string or an integer. */
static int has_request_id(const json_t *result)
{
	const json_t *rid = json_object_get(result, "request_id");
	return (json_is_string(rid) && json_string_length(rid) > 0) || json_is_integer(rid);
}

int scall_run(struct vm *vm, const char *fn, json_t *const *args, size_t nargs,
	      const struct script_ctx *ctx, const json_t *ex_ctx, int example,
	      json_t **out, char *err, size_t errlen)
{
	int submit, rc;
	long status;
	char msg[MESSAGE_MAX + 64];

	if (vm->kind != SCRIPT_PROVIDER || !fn)
		return vm_call(vm, fn, args, nargs, ctx, ex_ctx, example, out, err, errlen);
	submit = strcmp(fn, "on_submitted") == 0;
	if (!submit && strcmp(fn, "on_polled") != 0)
		return vm_call(vm, fn, args, nargs, ctx, ex_ctx, example, out, err, errlen);

	status = vm->errors_by_core ? error_status(args, nargs) : 0;
	if (!status) {
		rc = vm_call(vm, fn, args, nargs, ctx, ex_ctx, example, out, err, errlen);
	} else {
		*out = NULL;
		rc = 0;
		if (vm->has_on_error) {
			rc = vm_call(vm, "on_error", args, nargs, ctx, ex_ctx, example, out, err, errlen);
			if (rc == 0 && json_is_null(*out)) {
				json_decref(*out);
				*out = NULL;
			}
		}
		if (rc == 0 && !*out) {
			answer_message(vm, args[0], status, msg, sizeof msg);
			*out = failed(submit ? NULL : "PROVIDER_FAILURE", msg);
			if (!*out) {
				script_set_err(err, errlen, "%s: out of memory", vm->chunk);
				return -1;
			}
			if (err && errlen)
				err[0] = '\0';
		}
	}
	if (rc != 0 || !submit)
		return rc;
	{
		const char *state = json_string_value(json_object_get(*out, "state"));
		if (state && strcmp(state, "processing") == 0 && !has_request_id(*out)) {
			snprintf(msg, sizeof msg, "%s: submit answer has no request id", vm->name);
			json_decref(*out);
			*out = failed("PROVIDER_FAILURE", msg);
			if (!*out) {
				script_set_err(err, errlen, "%s: out of memory", vm->chunk);
				return -1;
			}
		}
	}
	return 0;
}

/* scall_callback's two calls (vm->fields set by the caller); its return
 * values. */
static int callback_calls(struct vm *vm, json_t *const *args, size_t nargs,
			  const struct script_ctx *ctx, json_t **out, char *err, size_t errlen)
{
	enum vm_args mode = VM_ARGS_PUSH;
	json_t *res = NULL;
	int rc;

	if (vm_has_fn(vm, "verify")) {
		if (err && errlen)
			err[0] = '\0';
		rc = vm_call_args(vm, "verify", args, nargs, ctx, NULL, 0, VM_ARGS_KEEP,
				  &res, err, errlen);
		if (rc < 0 || !json_is_true(res)) {
			/* raised (the error in err), or `false, "reason"` */
			json_decref(res);
			vm_args_drop(vm);
			return 0;
		}
		json_decref(res);
		mode = VM_ARGS_REUSE;
	}
	rc = vm_call_args(vm, "on_callback", args, nargs, ctx, NULL, 0, mode, out, err, errlen);
	vm_args_drop(vm);
	if (rc < 0) {
		json_decref(*out);
		*out = NULL;
		return -1;
	}
	return 1;
}

int scall_callback(struct vm *vm, json_t *req, json_t *job, struct script_json_field *fields,
		   size_t nfields, const struct script_ctx *ctx, json_t **out, char *err,
		   size_t errlen)
{
	json_t *args[2] = { req, job };
	int rc;

	*out = NULL;
	for (size_t i = 0; i < nfields; i++)
		fields[i].ok = 0;
	vm->fields = fields;
	vm->nfields = nfields;
	rc = callback_calls(vm, args, job ? 2 : 1, ctx, out, err, errlen);
	vm->fields = NULL;
	vm->nfields = 0;
	return rc;
}
