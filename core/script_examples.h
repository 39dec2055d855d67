/*
 * script_examples.h: a script's own examples (docs/scripts.md,
 * "Examples"), run on every load before the new version may replace the
 * running one. Each example calls one function through the same call path
 * as the server (scall_run), with placeholder secrets, a placeholder
 * callback URL and ctx.config holding the script's defaults alone.
 * The matcher, script_json_subset, is public (script.h).
 *
 * Layer (script_int.h): calls script_call, script_vm and script_util.
 * Called by script_host.
 */
#ifndef GENRELAY_SCRIPT_EXAMPLES_H
#define GENRELAY_SCRIPT_EXAMPLES_H

#include "script_int.h"

/* Runs every example of vm's script; 0, or -1 with the first failure in err
 * ("providers/x.lua: example 2 (name) (fn): output.type: expected ..."). */
int examples_run(struct vm *vm, char *err, size_t errlen);

#endif
