/*
 * script_vm.h: one loaded version of one script (struct vm, script_int.h):
 * a state with the limits, the sandbox and ctx; the chunk loaded and
 * checked against the contract; protected calls into it.
 *
 * Layer (script_int.h): calls script_contract, script_ctx, script_sandbox,
 * script_limits and script_util. Called by script_call, script_examples and
 * script_host.
 */
#ifndef GENRELAY_SCRIPT_VM_H
#define GENRELAY_SCRIPT_VM_H

#include "script_int.h"

/*
 * Builds a vm for one script: state, sandbox, ctx, the chunk run and its
 * table checked (script_contract.h), models and settings prepared. Its
 * examples are not run (examples_run). cfg and libs are borrowed (cfg for
 * the vm's lifetime); src is copied. Returns the vm (free with vm_free) or
 * NULL with "providers/x.lua:LINE: reason" in err.
 */
struct vm *vm_new(const struct config *cfg, enum script_kind kind, const char *name,
		  const char *src, size_t len, const struct libset *libs,
		  const unsigned char sha[32], char *err, size_t errlen);
void vm_free(struct vm *vm);

/*
 * Runs f(ud) in protected mode under a fresh budget. On success the nres
 * results are on the stack above *base; on failure err holds the redacted
 * error ("providers/x.lua:LINE: msg"), the stack is back at *base and -1
 * is returned.
 */
int vm_pcall(struct vm *vm, lua_CFunction f, void *ud, int nres,
	     char *err, size_t errlen, int *base);

/*
 * Calls the script's fn with args (borrowed) and ctx placed as the contract
 * says (contract_ctx_position). example: ctx comes from ex_ctx (an
 * example's ctx object, or NULL) instead of ctx. On success returns 0 with
 * *out a new reference (json null for nil); a second result that is a
 * string (verify's reason) is copied into err, else err is emptied.
 * -2: no such function. -1: the script raised or broke a limit (err says
 * where), or returned something that is not JSON.
 */
int vm_call(struct vm *vm, const char *fn, json_t *const *args, size_t nargs,
	    const struct script_ctx *ctx, const json_t *ex_ctx, int example,
	    json_t **out, char *err, size_t errlen);

/*
 * How a call gets its arguments into Lua. VM_ARGS_PUSH converts args anew.
 * VM_ARGS_KEEP converts them and keeps the Lua values in the vm for the
 * next call; VM_ARGS_REUSE passes the kept values (converted when none are
 * kept), so two functions called on the same input (verify and on_callback)
 * share one conversion and see the same tables: what the first changes in
 * them, the second sees. vm_args_drop releases the kept values (never raises).
 */
enum vm_args { VM_ARGS_PUSH = 0, VM_ARGS_KEEP, VM_ARGS_REUSE };

/* vm_call with the arguments passed as mode says. With VM_ARGS_REUSE, args
 * and nargs must be those of the VM_ARGS_KEEP call. */
int vm_call_args(struct vm *vm, const char *fn, json_t *const *args, size_t nargs,
		 const struct script_ctx *ctx, const json_t *ex_ctx, int example,
		 enum vm_args mode, json_t **out, char *err, size_t errlen);
void vm_args_drop(struct vm *vm);

/* 1 when the script's table has a function named fn. */
int vm_has_fn(struct vm *vm, const char *fn);

#endif
