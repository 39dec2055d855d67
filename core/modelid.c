/*
 * modelid.c: the model id grammar (see modelid.h).
 */
#include "modelid.h"

#include <stdio.h>
#include <string.h>

static int seg_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_' || c == '.';
}

static int prov_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

static int bad(char *why, size_t whylen, const char *msg)
{
	if (why && whylen)
		snprintf(why, whylen, "%s", msg);
	return -1;
}

int modelid_parse(const char *id, struct modelid *out, char *why, size_t whylen)
{
	memset(out, 0, sizeof *out);
	size_t len = id ? strlen(id) : 0;
	if (len == 0)
		return bad(why, whylen, "empty model id");
	if (len > MODELID_MAX)
		return bad(why, whylen, "model id longer than 256 bytes");
	const char *colon = strchr(id, ':'), *p = id;
	if (colon && !memchr(id, '/', (size_t)(colon - id))) {
		size_t n = (size_t)(colon - id);
		if (n == 0 || n > 64)
			return bad(why, whylen, "provider prefix must be 1 to 64 letters, digits or '_'");
		for (size_t i = 0; i < n; i++)
			if (!prov_char(id[i]))
				return bad(why, whylen, "provider prefix must be letters, digits or '_'");
		memcpy(out->provider, id, n);
		out->provider[n] = '\0';
		p = colon + 1;
	}
	out->model = p;
	if (!*p)
		return bad(why, whylen, "no model after the provider prefix");
	/* path: segments joined by '/' */
	for (;;) {
		const char *seg = p;
		while (seg_char(*p))
			p++;
		size_t n = (size_t)(p - seg);
		if (n == 0)
			return bad(why, whylen, *p && *p != '/' && *p != ':'
				   ? "model ids are letters, digits, '-', '_', '.', '/' and one ':version'"
				   : "empty path segment");
		if ((n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
			return bad(why, whylen, "'.' and '..' segments are not allowed");
		if (*p == '/') {
			p++;
			continue;
		}
		break;
	}
	if (*p == ':') {
		const char *v = ++p;
		while (seg_char(*p))
			p++;
		if (p == v)
			return bad(why, whylen, "empty version after ':'");
		if ((p - v == 1 && v[0] == '.') || (p - v == 2 && v[0] == '.' && v[1] == '.'))
			return bad(why, whylen, "'.' and '..' versions are not allowed");
		out->version = v;
	}
	if (*p)
		return bad(why, whylen, "model ids are letters, digits, '-', '_', '.', '/' and one ':version'");
	return 0;
}
