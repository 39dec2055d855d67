/*
 * luajson.h: conversion between Lua values and jansson values.
 *
 * JSON null <-> the lightuserdata NULL (cjson.null). JSON arrays become Lua
 * sequences carrying the array marker metatable (luajson_array_mt), so that an
 * empty array survives the round trip; a Lua table is an array when it has that
 * metatable or its keys are exactly 1..n with n >= 1, otherwise an object whose
 * keys must be strings (numbers are converted with %d / %.14g). Integers stay
 * integers; a float with an integral value within 2^53 also becomes a JSON
 * integer (lua-cjson decodes every number as a float). Strings keep their
 * bytes (no UTF-8 check on the way out of Lua). Shared (non-cyclic) subtables
 * are converted once per reference; a cycle is an error.
 */
#ifndef GENRELAY_LUAJSON_H
#define GENRELAY_LUAJSON_H

#include <jansson.h>
#include <lua.h>

#include "jsonlimit.h"

/* Tables deep, both ways; room for an input of JSON_MAX_DEPTH inside its
 * envelopes (see jsonlimit.h). */
#define LUAJSON_MAX_DEPTH (JSON_MAX_DEPTH + JSON_ENVELOPE_DEPTH)

/*
 * Pushes v (borrowed) as a Lua value (NULL pushes null). Returns 0, or -1
 * when too deep (nothing pushed). It allocates Lua memory, so it may raise a
 * memory error: call it in protected mode when the state has a memory cap.
 */
int luajson_push(lua_State *L, const json_t *v);

/*
 * Converts the Lua value at idx into a new json_t (caller owns the
 * reference); nil becomes null. Returns NULL and writes a reason into err
 * for functions, userdata other than null, cycles/too deep nesting, NaN/inf,
 * or bad keys; the reason starts with the path of the offending value
 * ("output.items[1].url: a function is not convertible to JSON"). Never
 * raises and leaves the stack as it was.
 */
json_t *luajson_to_json(lua_State *L, int idx, char *err, size_t errlen);

/* luajson_to_json, leaving out the field skip (NULL: none) of the value
 * when it is a table converted to an object. */
json_t *luajson_to_json_skip(lua_State *L, int idx, const char *skip, char *err, size_t errlen);

/* 1 when the table at idx carries the array marker metatable. Never
 * allocates or raises. */
int luajson_is_marked_array(lua_State *L, int idx);
/* 1 when the table at idx is a sequence 1..n with n >= 1 and nothing else
 * (how luajson_to_json tells an unmarked array); *n gets n. */
int luajson_is_sequence(lua_State *L, int idx, lua_Integer *n);

/* Pushes the shared array marker metatable (created on first use). */
void luajson_array_mt(lua_State *L);

#endif
