/*
 * script_contract.h: the script contract as the loader enforces it
 * (written once, for people, in docs/scripts.md, "The contract").
 *
 * At load a script's table is checked for its kind: the functions it must
 * and may have; the order of their parameters where the script names them
 * `ctx` or `job` (an adapter written verify(req, job, ctx) is refused with
 * the signature to write); the provider fields the core reads
 * (callback_requires, poll_404_limit, errors, on_error). A script that still
 * uses lib/util.lua's removed ctx_job is refused too, saying what to delete.
 *
 * Layer (script_int.h): calls script_util. Called by script_vm.
 */
#ifndef GENRELAY_SCRIPT_CONTRACT_H
#define GENRELAY_SCRIPT_CONTRACT_H

#include "script_int.h"

/*
 * Checks the script's table at index T for vm's kind and records the
 * provider fields in vm. On a violation pushes the message (without the
 * chunk name) and returns -1: the caller raises it.
 */
int contract_check_table(lua_State *L, int T, struct vm *vm);

/*
 * Source checks that need no state: 0, or -1 with
 * "providers/x.lua:LINE: ..." in err. Comments and strings are skipped.
 */
int contract_check_source(const struct vm *vm, const char *src, size_t len,
			  char *err, size_t errlen);

/*
 * The position (0-based) at which ctx goes among nargs arguments of fn:
 * after them all, except verify(req, ctx, job), where it is second.
 */
size_t contract_ctx_position(const char *fn, size_t nargs);

#endif
