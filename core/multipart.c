/*
 * multipart.c: multipart/form-data bodies into fields and data-URL files.
 */
#include "multipart.h"

#include "buf.h"
#include "sign.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Finds needle (nlen bytes) in hay; NULL when absent. */
static const char *memfind(const char *hay, size_t hlen, const char *needle, size_t nlen)
{
	if (nlen == 0 || hlen < nlen)
		return NULL;
	for (size_t i = 0; i + nlen <= hlen; i++)
		if (hay[i] == needle[0] && memcmp(hay + i, needle, nlen) == 0)
			return hay + i;
	return NULL;
}

/* Copies the value of param (name="..." or name=token) from a header value. */
static int header_param(const char *h, size_t hlen, const char *param, char *out, size_t outlen)
{
	size_t pl = strlen(param);
	for (size_t i = 0; i + pl + 1 < hlen; i++) {
		if ((i == 0 || h[i - 1] == ';' || h[i - 1] == ' ') && strncasecmp(h + i, param, pl) == 0 &&
		    h[i + pl] == '=') {
			const char *v = h + i + pl + 1, *end = h + hlen;
			size_t n = 0;
			if (v < end && *v == '"') {
				v++;
				while (v + n < end && v[n] != '"')
					n++;
			} else {
				while (v + n < end && v[n] != ';' && v[n] != ' ' && v[n] != '\r')
					n++;
			}
			if (n >= outlen)
				return -1;
			memcpy(out, v, n);
			out[n] = '\0';
			return 0;
		}
	}
	return -1;
}

int multipart_parse(const char *ctype, const char *body, size_t len, json_t *form,
			   json_t *files, char *why, size_t whylen)
{
	char boundary[80], delim[96];
	if (header_param(ctype, strlen(ctype), "boundary", boundary, sizeof boundary) < 0 || !boundary[0]) {
		snprintf(why, whylen, "multipart body without a boundary");
		return -1;
	}
	int dl = snprintf(delim, sizeof delim, "--%s", boundary);
	const char *p = memfind(body, len, delim, (size_t)dl), *end = body + len;
	int parts = 0;
	if (!p) {
		snprintf(why, whylen, "multipart body without its boundary");
		return -1;
	}
	for (;;) {
		p += dl;
		if (end - p >= 2 && p[0] == '-' && p[1] == '-')
			return 0; /* closing delimiter */
		if (end - p < 2 || p[0] != '\r' || p[1] != '\n')
			break;
		p += 2;
		const char *hend = memfind(p, (size_t)(end - p), "\r\n\r\n", 4);
		if (!hend)
			break;
		const char *data = hend + 4;
		/* the next delimiter is the boundary at the start of a line */
		const char *next = data;
		for (;;) {
			next = memfind(next, (size_t)(end - next), delim, (size_t)dl);
			if (!next || (next - data >= 2 && next[-2] == '\r' && next[-1] == '\n'))
				break;
			next++;
		}
		if (!next)
			break;
		size_t dlen = (size_t)(next - 2 - data);
		if (++parts > MULTIPART_PARTS_MAX) {
			snprintf(why, whylen, "more than %d multipart parts", MULTIPART_PARTS_MAX);
			return -1;
		}
		char name[128] = "", filename[256] = "", pct[128] = "application/octet-stream";
		int has_file = 0;
		for (const char *l = p; l < hend;) {
			const char *le = memfind(l, (size_t)(hend + 2 - l), "\r\n", 2);
			if (!le)
				le = hend;
			size_t ll = (size_t)(le - l);
			if (ll > 20 && strncasecmp(l, "content-disposition:", 20) == 0) {
				header_param(l, ll, "name", name, sizeof name);
				if (header_param(l, ll, "filename", filename, sizeof filename) == 0)
					has_file = 1;
			} else if (ll > 13 && strncasecmp(l, "content-type:", 13) == 0) {
				const char *v = l + 13;
				while (v < le && *v == ' ')
					v++;
				size_t vn = (size_t)(le - v);
				if (vn < sizeof pct) {
					memcpy(pct, v, vn);
					pct[vn] = '\0';
				}
			}
			l = le + 2;
		}
		if (!name[0]) {
			snprintf(why, whylen, "a multipart part without a name");
			return -1;
		}
		if (has_file) {
			size_t n = 4 * ((dlen + 2) / 3) + 1;
			struct buf b;
			buf_init(&b, n + sizeof pct + 16);
			char *b64 = malloc(n);
			if (!b64 || sign_base64_encode(data, dlen, b64, n) < 0) {
				free(b64);
				buf_free(&b);
				snprintf(why, whylen, "out of memory");
				return -1;
			}
			buf_printf(&b, "data:%s;base64,", pct);
			buf_adds(&b, b64);
			free(b64);
			json_t *f = json_pack("{s:s,s:s,s:s,s:I,s:s%}", "field", name, "filename", filename,
					      "content_type", pct, "size", (json_int_t)dlen,
					      "data_url", b.p ? b.p : "", b.len);
			buf_free(&b);
			json_array_append_new(files, f);
		} else {
			json_object_set_new(form, name, json_stringn(data, dlen));
		}
		p = next;
	}
	snprintf(why, whylen, "malformed multipart body");
	return -1;
}

