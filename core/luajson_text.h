/*
 * luajson_text.h: JSON text straight to Lua values and Lua values straight
 * to JSON text, with exactly the results of going through jansson
 * (json_loadb + luajson_push, luajson_to_json + json_dumps) but without
 * building its tree: for the hot paths (a callback's body, a job's stored
 * texts, a webhook's body), where the tree was only a step between the two.
 */
#ifndef GENRELAY_LUAJSON_TEXT_H
#define GENRELAY_LUAJSON_TEXT_H

#include <lua.h>
#include <stddef.h>

struct buf;

/*
 * Decodes JSON text (any value, jansson's rules: what json_loadb with
 * JSON_DECODE_ANY accepts) and pushes what luajson_push would push for
 * jansson's result, without building it. depth: the depth the value has
 * where it goes (1 for an argument, 2 for a field of one), as luajson_push
 * counts it. Returns 0 (one value pushed), -1 when the text is not JSON, or
 * -2 when it nests past LUAJSON_MAX_DEPTH (nothing pushed on failure). It
 * allocates Lua memory: call it in protected mode.
 */
int luajson_decode(lua_State *L, const char *text, size_t len, int depth);

/*
 * Appends to out the JSON text json_dumps(JSON_COMPACT | JSON_ENCODE_ANY)
 * would give for luajson_to_json of the value at idx, byte for byte,
 * without building the jansson tree. Returns 0, or -1 (out as it was) for
 * what it does not render exactly so: a key that is not a string or holds a
 * NUL byte, invalid UTF-8, out's size limit, and whatever luajson_to_json
 * refuses; the caller then takes the jansson path. Never raises; leaves the
 * stack as it was.
 */
int luajson_encode(lua_State *L, int idx, struct buf *out);

#endif
