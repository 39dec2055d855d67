/*
 * jsonlimit.h: the one nesting limit for JSON a customer sends.
 *
 * Depth counts containers: {} and [] are depth 1, {"a":[1]} is depth 2, a
 * scalar adds nothing. The API refuses (400 INVALID_REQUEST) a run whose
 * `input` is deeper than JSON_MAX_DEPTH (jscan.c), and the Lua bridge
 * (luajson.c, and lua-cjson inside the sandbox) converts values up to
 * JSON_MAX_DEPTH + JSON_ENVELOPE_DEPTH, the room for what the core and a
 * script put around an input (the job table, a request body wrapping it).
 * So every input the API accepts reaches the scripts; none fails later as a
 * SCRIPT_ERROR for its depth.
 */
#ifndef GENRELAY_JSONLIMIT_H
#define GENRELAY_JSONLIMIT_H

#define JSON_MAX_DEPTH 64
#define JSON_ENVELOPE_DEPTH 16

#endif
