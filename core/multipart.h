/*
 * multipart.h: a small bounded parser of multipart/form-data bodies (RFC
 * 7578) already held in memory (the server caps their size), for the fronts.
 */
#ifndef GENRELAY_MULTIPART_H
#define GENRELAY_MULTIPART_H

#include <jansson.h>
#include <stddef.h>

#define MULTIPART_PARTS_MAX 32

/*
 * Parses body (len bytes) sent with Content-Type ctype into form, the
 * {name: value} of fields, and files, an array of {field, filename,
 * content_type, size, data_url} for parts with a filename (data_url:
 * "data:<type>;base64,..."). form and files are borrowed and filled. At most
 * MULTIPART_PARTS_MAX parts. 0, or -1 with the reason in why (what was added
 * before the error stays; the caller drops both).
 */
int multipart_parse(const char *ctype, const char *body, size_t len, json_t *form,
		    json_t *files, char *why, size_t whylen);

#endif
