/*
 * script_ctx.h: ctx, the table every script call receives (docs/scripts.md,
 * "ctx"): json, null, array, secret, config, callback_url, keys, the hashes
 * and signatures, base64, hex, equal, url_encode, now, random_hex, log.
 * It is built once per state; a call only sets its per-call fields.
 * ctx.secret and ctx.config read the settings of the script's own provider
 * (never another's); hooks and fronts get none.
 *
 * Layer (script_int.h): calls script_sandbox. Called by script_vm.
 */
#ifndef GENRELAY_SCRIPT_CTX_H
#define GENRELAY_SCRIPT_CTX_H

#include "script_int.h"

/* Builds ctx with cjson (the module at index cjson) as ctx.json and keeps
 * it as vm->ref_ctx. Protected mode only (it allocates). */
void ctxlib_build(lua_State *L, struct vm *vm, int cjson);

/*
 * Sets ctx's per-call fields (callback_url, keys, config) and pushes ctx.
 * In example mode (vm->example_mode) they come from ex_ctx (an example's
 * ctx object, or NULL): a placeholder callback URL, its keys, and
 * ctx.config holding the script's defaults alone. ctx and ex_ctx are
 * borrowed for the call.
 */
void ctxlib_push(lua_State *L, struct vm *vm, const struct script_ctx *ctx, const json_t *ex_ctx);

#endif
