/*
 * fuzz_multipart.c: libFuzzer target for core/multipart.c, the parser of
 * the multipart/form-data bodies the fronts take (OpenAI's images/edits).
 *
 * The input's first line is the Content-Type value (boundary included), the
 * rest the body, copied into a buffer of exactly its size so ASan sees any
 * read past it. Beyond "never crash": at most MULTIPART_PARTS_MAX parts, and
 * every file's data URL is "data:<type>;base64," and the base64 of `size`
 * bytes.
 */
#include "multipart.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size);
	if (!nl)
		return 0;
	size_t clen = (size_t)(nl - data);
	char *ctype = malloc(clen + 1);
	size_t blen = size - clen - 1;
	char *body = malloc(blen ? blen : 1);
	json_t *form = json_object(), *files = json_array();
	char why[128];
	if (!ctype || !body || !form || !files)
		goto out;
	memcpy(ctype, data, clen);
	ctype[clen] = '\0';
	memcpy(body, nl + 1, blen);
	if (multipart_parse(ctype, body, blen, form, files, why, sizeof why) == 0) {
		if (json_object_size(form) + json_array_size(files) > MULTIPART_PARTS_MAX)
			abort();
		size_t i;
		json_t *f;
		json_array_foreach(files, i, f) {
			const char *u = json_string_value(json_object_get(f, "data_url"));
			const char *ct = json_string_value(json_object_get(f, "content_type"));
			json_int_t n = json_integer_value(json_object_get(f, "size"));
			if (!u || !ct || strncmp(u, "data:", 5) != 0 || strncmp(u + 5, ct, strlen(ct)) != 0)
				abort();
			const char *b = strstr(u + 5 + strlen(ct), ";base64,");
			if (!b || strlen(b + 8) != (size_t)(4 * ((n + 2) / 3)))
				abort();
		}
	}
out:
	json_decref(form);
	json_decref(files);
	free(ctype);
	free(body);
	return 0;
}
