/*
 * script_limits.h: the limits every script runs under (docs/scripts.md,
 * "Sandbox"): a memory cap per state, an instruction budget per call, and
 * the charging of work done inside C functions, which the count hook never
 * sees.
 *
 * Errors: a spent budget raises "instruction budget exceeded" and keeps
 * raising on every instruction until the call ends (a pcall in the script
 * cannot swallow it); a refused allocation makes Lua raise a memory error.
 * vm_error (script_vm.h) turns both into "providers/x.lua:LINE: ...".
 *
 * Layer (script_int.h): above script_util; calls nothing else of the
 * host. Called by script_sandbox and script_vm.
 */
#ifndef GENRELAY_SCRIPT_LIMITS_H
#define GENRELAY_SCRIPT_LIMITS_H

#include "script_int.h"

/* lua_Alloc counting bytes against vm->mem_cap; ud is the struct vm. */
void *limits_alloc(void *ud, void *ptr, size_t osize, size_t nsize);

/* A fresh budget for the next call; clears the memory-hit mark. */
void limits_reset(struct vm *vm);

/* Adds units of work (bytes or elements) to the count; raises the budget
 * error when it is spent. */
void limits_charge(lua_State *L, struct vm *vm, double units);

/* After a failed protected call inside the script (pcall, xpcall): raises
 * again when it failed because of a limit, so limits cannot be caught. */
void limits_rethrow(lua_State *L, struct vm *vm, int status, int mem_before);

/*
 * Replaces the function on top of the stack with one charged as lib.fn
 * should be ("string"/"find", "table"/"sort", "ctx"/..., "cjson"/...);
 * leaves it as it is when that function does no unbounded work in C.
 */
void limits_wrap(lua_State *L, const char *lib, const char *fn);

/* Wraps the function on top of the stack as a scan of its string arguments
 * and results (cjson's encode and decode). */
void limits_wrap_scan(lua_State *L);

#endif
