/*
 * jsondump.c: see jsondump.h.
 */
#include "jsondump.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSONDUMP_MAX_DEPTH 512
#define JSONDUMP_MAX_TEXT ((size_t)1 << 30)

int jsondump_real(struct buf *b, double d)
{
	char s[64];
	int n = snprintf(s, sizeof s - 3, "%.17g", d);
	if (n < 0 || (size_t)n >= sizeof s - 3)
		return -1;
	size_t len = (size_t)n;
	if (!strchr(s, '.') && !strchr(s, 'e')) {
		memcpy(s + len, ".0", 3);
		len += 2;
	}
	/* No '+' and no leading zeros in the exponent. */
	char *start = strchr(s, 'e');
	if (start) {
		start++;
		char *end = start + 1;
		if (*start == '-')
			start++;
		while (*end == '0')
			end++;
		if (end != start) {
			memmove(start, end, len - (size_t)(end - s));
			len -= (size_t)(end - start);
		}
	}
	return buf_add(b, s, len);
}

static int dump(struct buf *b, const json_t *v, int depth)
{
	char num[32];
	switch (json_typeof(v)) {
	case JSON_OBJECT: {
		if (depth >= JSONDUMP_MAX_DEPTH || buf_add(b, "{", 1) < 0)
			return -1;
		int first = 1;
		for (void *it = json_object_iter((json_t *)v); it;
		     it = json_object_iter_next((json_t *)v, it), first = 0)
			if ((!first && buf_add(b, ",", 1) < 0) ||
			    buf_add_json_strn(b, json_object_iter_key(it), json_object_iter_key_len(it)) < 0 ||
			    buf_add(b, ":", 1) < 0 || dump(b, json_object_iter_value(it), depth + 1) < 0)
				return -1;
		return buf_add(b, "}", 1);
	}
	case JSON_ARRAY: {
		if (depth >= JSONDUMP_MAX_DEPTH || buf_add(b, "[", 1) < 0)
			return -1;
		size_t n = json_array_size(v);
		for (size_t i = 0; i < n; i++)
			if ((i && buf_add(b, ",", 1) < 0) || dump(b, json_array_get(v, i), depth + 1) < 0)
				return -1;
		return buf_add(b, "]", 1);
	}
	case JSON_STRING:
		return buf_add_json_strn(b, json_string_value(v), json_string_length(v));
	case JSON_INTEGER:
		return buf_add(b, num, (size_t)snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT,
							 json_integer_value(v)));
	case JSON_REAL:
		return jsondump_real(b, json_real_value(v));
	case JSON_TRUE:
		return buf_add(b, "true", 4);
	case JSON_FALSE:
		return buf_add(b, "false", 5);
	case JSON_NULL:
		return buf_add(b, "null", 4);
	}
	return -1;
}

int jsondump_add(struct buf *b, const json_t *v)
{
	size_t start = b->len;
	if (v && dump(b, v, 0) == 0)
		return 0;
	b->len = start;
	if (b->p)
		b->p[start] = '\0';
	return -1;
}

char *jsondump(const json_t *v, size_t flags)
{
	if (!v || flags & ~(size_t)(JSON_COMPACT | JSON_ENCODE_ANY) || !(flags & JSON_COMPACT) ||
	    (!(flags & JSON_ENCODE_ANY) && !json_is_object(v) && !json_is_array(v)))
		return json_dumps(v, flags);
	struct buf b;
	buf_init(&b, JSONDUMP_MAX_TEXT);
	if (jsondump_add(&b, v) < 0) {
		buf_free(&b);
		return json_dumps(v, flags);
	}
	return buf_steal(&b, NULL);
}
