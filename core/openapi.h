/*
 * openapi.h: the API's OpenAPI 3.1 document (docs/openapi.yaml), converted
 * to JSON and built into the binary, so that nothing is read from the source
 * tree at run time.
 */
#ifndef GENRELAY_OPENAPI_H
#define GENRELAY_OPENAPI_H

#include <stddef.h>

/* The document as compact JSON, NUL-terminated; static storage, never freed.
 * *len gets its length. Returns NULL (and *len 0) in a build that did not
 * generate it (the fuzz targets). */
const char *openapi_json(size_t *len);

#endif
