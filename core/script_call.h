/*
 * script_call.h: the call path into a script, with the core's part of the
 * provider contract (docs/scripts.md, "What the core checks"):
 *
 * - for an adapter that declares errors = "core" (or has on_error),
 *   on_submitted and on_polled never see a non-2xx answer (res.status a
 *   number outside 200..299). Its on_error(res, job, ctx), when it has one,
 *   sees it first; a result from it is used as is. Otherwise (or when
 *   on_error returns nil) the result is { state = "failed", error = { message =
 *   lib/util.lua's res_message(res) } }, with code PROVIDER_FAILURE after a
 *   poll; after a submit the code is left to the core (PROVIDER_REJECTED
 *   for a 4xx).
 *   Adapters that declare nothing (written before) see every answer.
 * - after any submit, a result with state "processing" and no request_id
 *   becomes failed PROVIDER_FAILURE "<provider>: submit answer has no
 *   request id".
 *
 * Layer (script_int.h): calls script_vm and script_util. Called by
 * script_examples and script_host.
 */
#ifndef GENRELAY_SCRIPT_CALL_H
#define GENRELAY_SCRIPT_CALL_H

#include "script_int.h"

/* vm_call (script_vm.h) with the checks above; same arguments and return
 * values. Every caller (script_call, examples) goes through here. */
int scall_run(struct vm *vm, const char *fn, json_t *const *args, size_t nargs,
	      const struct script_ctx *ctx, const json_t *ex_ctx, int example,
	      json_t **out, char *err, size_t errlen);

/*
 * A provider's inbound callback: verify(req, ctx, job) when the adapter has
 * one, then on_callback(req, job, ctx), with req and job (borrowed; job may
 * be NULL) converted to Lua once for both calls (VM_ARGS_KEEP, script_vm.h).
 * fields (nfields, may be 0): fields of req and job given as JSON text
 * (script.h, struct script_json_field), decoded once, in the first call.
 * Returns 1 with *out on_callback's result (a new reference); 0 when verify
 * refused (returned anything but true, or raised): err holds its reason or
 * error, or is empty; -1 when on_callback raised or broke a limit (err).
 */
int scall_callback(struct vm *vm, json_t *req, json_t *job, struct script_json_field *fields,
		   size_t nfields, const struct script_ctx *ctx, json_t **out, char *err,
		   size_t errlen);

#endif
