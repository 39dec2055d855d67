/*
 * jsondump.h: a jansson tree as JSON text, byte for byte what json_dumps
 * writes with JSON_COMPACT (objects in their insertion order, strings as
 * buf_add_json_strn, reals as jsonp_dtostr), in one pass into a buffer
 * instead of jansson's per-character dump: for the job's texts (output,
 * data) that every result writes.
 */
#ifndef GENRELAY_JSONDUMP_H
#define GENRELAY_JSONDUMP_H

#include <jansson.h>
#include <stddef.h>

#include "buf.h"

/* Appends v as json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) writes it.
 * -1 when it would not be the same (a string or key that is not UTF-8, a
 * tree deeper than 512), past b's limit or out of memory: b is then left
 * as it was. */
int jsondump_add(struct buf *b, const json_t *v);
/* json_dumps(v, flags) for flags JSON_COMPACT, with or without
 * JSON_ENCODE_ANY: written by jsondump_add, jansson's own way when that
 * refuses (so NULL where json_dumps gives NULL). Caller frees. */
char *jsondump(const json_t *v, size_t flags);
/* Appends the real d as jansson writes it (jsonp_dtostr, precision 17);
 * d must be finite. */
int jsondump_real(struct buf *b, double d);

#endif
