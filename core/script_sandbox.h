/*
 * script_sandbox.h: the environment scripts run in (docs/scripts.md,
 * "Sandbox"), built from an allowlist: the base functions that cannot
 * escape, string (no dump), table, math (no randomseed), utf8, os.time,
 * os.date and os.clock, text-only load, pcall/xpcall that cannot catch a
 * limit, setmetatable without __gc, and require for cjson and lib.NAME
 * (scripts/lib/NAME.lua, from the sources the host copied into the state).
 * No io, no debug, no os beyond the clock, no dofile or loadfile.
 *
 * Layer (script_int.h): calls script_limits and script_util. Called by
 * script_ctx and script_vm.
 */
#ifndef GENRELAY_SCRIPT_SANDBOX_H
#define GENRELAY_SCRIPT_SANDBOX_H

#include "script_int.h"

/*
 * Opens the allowed libraries in vm's state and stores the sandbox as the
 * registry's script_key_env, with libs' sources (copied) and an empty
 * require cache. Leaves the configured cjson module on top of the stack.
 * Raises on memory errors: call it in protected mode, on an empty stack.
 */
void sandbox_open(lua_State *L, struct vm *vm, const struct libset *libs);

/* Pushes a copy of the table at src without the fields named in skip
 * (NULL-terminated); its functions are charged as lib.NAME (limits_wrap). */
void sandbox_copy_except(lua_State *L, int src, const char *const *skip, const char *lib);

/* print(...) and ctx.log(...): the arguments joined with tabs, logged at
 * info tagged with the script's chunk name (at most 1000 bytes). */
int sandbox_log(lua_State *L);

#endif
