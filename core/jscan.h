/*
 * jscan.h: a strict, validating JSON scanner for request bodies.
 *
 * The run request is parsed on the ingest path of every job, and its `input`
 * is stored as the customer sent it: building a tree (and printing it again)
 * costs several times more than checking the text and handing out spans. So
 * jscan validates the whole document (RFC 8259: UTF-8, escapes, surrogate
 * pairs, the number grammar without NaN or Infinity, no U+0000 in strings,
 * nesting bounded by JSCAN_MAX_DEPTH) and reports the members of the top-level object as spans
 * into the caller's buffer. Nothing is allocated.
 */
#ifndef GENRELAY_JSCAN_H
#define GENRELAY_JSCAN_H

#include <stddef.h>

#include "jsonlimit.h"

/* Containers counted from the top-level object (depth 1), so a member value
 * may be JSON_MAX_DEPTH deep (see jsonlimit.h). */
#define JSCAN_MAX_DEPTH (JSON_MAX_DEPTH + 1)
#define JSCAN_KEY_MAX 64

enum jscan_type { JSCAN_NULL, JSCAN_FALSE, JSCAN_TRUE, JSCAN_NUMBER, JSCAN_STRING,
		  JSCAN_ARRAY, JSCAN_OBJECT };

struct jscan_member {
	char key[JSCAN_KEY_MAX]; /* decoded; longer keys are truncated and flagged */
	int key_too_long;
	enum jscan_type type;
	const char *val;         /* the value's text (strings with their quotes) */
	size_t len;
};

/*
 * Validates text[0..len) as one JSON object and fills out[0..*n) with its
 * members (at most max; more is an error). Duplicate member names at the top
 * level are an error. Returns 0, or -1 with a reason in err and the byte
 * offset in *pos.
 */
int jscan_object(const char *text, size_t len, struct jscan_member *out, size_t max,
		 size_t *n, char *err, size_t errlen, size_t *pos);

/*
 * Decodes a JSON string value (the span with its quotes, as jscan gave it)
 * into out, NUL-terminated. Returns the length, or -1 when it does not fit.
 */
int jscan_string(const char *val, size_t len, char *out, size_t outlen);

#endif
