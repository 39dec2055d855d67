/*
 * urlguard.c: SSRF rules for outbound webhook URLs.
 *
 * A URL is judged twice: once from its raw text (our own strict split of
 * scheme, authority, host and port) and once from what libcurl's URL parser
 * makes of it, since libcurl is what will fetch it. Both must pass, so a
 * difference between the two parsers can only make us refuse more.
 */
#include "urlguard.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#define URL_MAX 2048
#define HOST_MAX 255

static void set_err(char *err, size_t errlen, const char *msg)
{
	size_t n;

	if (err == NULL || errlen == 0)
		return;
	n = strlen(msg);
	if (n >= errlen)
		n = errlen - 1;
	memcpy(err, msg, n);
	err[n] = '\0';
}

/* a is in host byte order. */
static int v4_blocked(uint32_t a)
{
	unsigned o1 = a >> 24, o2 = (a >> 16) & 255, o3 = (a >> 8) & 255;

	return o1 == 0 || o1 == 10 || o1 == 127 || o1 >= 224 ||
	       (o1 == 100 && (o2 & 0xc0) == 64) ||
	       (o1 == 169 && o2 == 254) ||
	       (o1 == 172 && (o2 & 0xf0) == 16) ||
	       (o1 == 192 && o2 == 0 && o3 == 0) ||
	       (o1 == 192 && o2 == 168) ||
	       (o1 == 198 && (o2 & 0xfe) == 18);
}

/*
 * Addresses that embed an IPv4 address (mapped, compatible, NAT64) are judged
 * by it; :: and ::1 fall in 0/8 that way. fe80::/9 covers link-local and the
 * deprecated site-local fec0::/10.
 */
static int v6_blocked(const unsigned char b[16])
{
	static const unsigned char mapped[12] = { [10] = 0xff, [11] = 0xff };
	static const unsigned char compat[12] = { 0 };
	static const unsigned char nat64[12] = { 0x00, 0x64, 0xff, 0x9b };

	if (memcmp(b, mapped, 12) == 0 || memcmp(b, compat, 12) == 0 ||
	    memcmp(b, nat64, 12) == 0)
		return v4_blocked((uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 |
				  (uint32_t)b[14] << 8 | b[15]);
	return (b[0] & 0xfe) == 0xfc || b[0] == 0xff ||
	       (b[0] == 0xfe && (b[1] & 0x80) == 0x80);
}

int urlguard_addr_blocked(const struct sockaddr *sa, socklen_t len)
{
	if (sa == NULL)
		return 1;
	if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
		struct sockaddr_in sin;
		memcpy(&sin, sa, sizeof sin);
		return v4_blocked(ntohl(sin.sin_addr.s_addr));
	}
	if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
		struct sockaddr_in6 sin6;
		memcpy(&sin6, sa, sizeof sin6);
		return v6_blocked(sin6.sin6_addr.s6_addr);
	}
	return 1;
}

static int is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* WHATWG's rule: a last label of digits, or 0x and hex digits, is IPv4. */
static int ends_in_number(const char *host, size_t n)
{
	size_t start = n, i;

	while (start > 0 && host[start - 1] != '.')
		start--;
	if (start == n)
		return 0;
	if (n - start >= 2 && host[start] == '0' && (host[start + 1] | 0x20) == 'x') {
		for (i = start + 2; i < n; i++)
			if (!is_hex(host[i]))
				return 0;
		return 1;
	}
	for (i = start; i < n; i++)
		if (host[i] < '0' || host[i] > '9')
			return 0;
	return 1;
}

static int has_suffix_ci(const char *s, size_t n, const char *suffix)
{
	size_t m = strlen(suffix);

	return n >= m && strncasecmp(s + n - m, suffix, m) == 0;
}

/*
 * Judges one host as written in a URL (h[0..n), brackets included for IPv6).
 * Shape errors are refused under any policy; addresses and local names only
 * when !allow_private. Returns 0 or -1 with err set.
 */
static int judge_host(const struct urlguard_policy *p, const char *h, size_t n,
		      char *err, size_t errlen)
{
	char buf[HOST_MAX + 1];
	size_t i;
	int dots = 0;

	if (n == 0) {
		set_err(err, errlen, "missing host");
		return -1;
	}
	if (n > HOST_MAX) {
		set_err(err, errlen, "host too long");
		return -1;
	}
	if (h[0] == '[') {
		struct in6_addr a6;
		const char *zone;
		size_t alen;

		if (n < 3 || h[n - 1] != ']') {
			set_err(err, errlen, "malformed IPv6 address");
			return -1;
		}
		alen = n - 2;
		zone = memchr(h + 1, '%', alen);
		if (zone != NULL)
			alen = (size_t)(zone - (h + 1));
		memcpy(buf, h + 1, alen);
		buf[alen] = '\0';
		if (inet_pton(AF_INET6, buf, &a6) != 1 ||
		    (zone != NULL && zone + 1 == h + n - 1)) {
			set_err(err, errlen, "malformed IPv6 address");
			return -1;
		}
		if (p->allow_private)
			return 0;
		if (zone != NULL) {
			set_err(err, errlen, "scoped IPv6 address not allowed");
			return -1;
		}
		if (v6_blocked(a6.s6_addr)) {
			set_err(err, errlen, "host is a private or reserved address");
			return -1;
		}
		return 0;
	}

	for (i = 0; i < n; i++) {
		char c = h[i];
		if (c == '.') {
			dots++;
			if (i == 0 || h[i - 1] == '.') {
				set_err(err, errlen, "malformed host");
				return -1;
			}
		} else if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			     (c >= '0' && c <= '9') || c == '-' || c == '_')) {
			set_err(err, errlen, "malformed host");
			return -1;
		}
	}
	if (h[n - 1] == '.') {
		n--;
		dots--;
	}
	memcpy(buf, h, n);
	buf[n] = '\0';

	if (ends_in_number(buf, n)) {
		struct in_addr a4;
		if (inet_aton(buf, &a4) == 0) {
			set_err(err, errlen, "malformed IPv4 address");
			return -1;
		}
		if (!p->allow_private && v4_blocked(ntohl(a4.s_addr))) {
			set_err(err, errlen, "host is a private or reserved address");
			return -1;
		}
		return 0;
	}
	if (p->allow_private)
		return 0;
	if (strcasecmp(buf, "localhost") == 0 || has_suffix_ci(buf, n, ".localhost") ||
	    strcasecmp(buf, "metadata.google.internal") == 0) {
		set_err(err, errlen, "host is a local name");
		return -1;
	}
	if (dots == 0) {
		set_err(err, errlen, "host is not a public name");
		return -1;
	}
	return 0;
}

/* Empty (scheme default) or 1..65535. */
static int port_ok(const char *s, size_t n)
{
	unsigned long v = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return 0;
		v = v * 10 + (unsigned long)(s[i] - '0');
		if (v > 65535)
			return 0;
	}
	return n == 0 || v > 0;
}

/*
 * The raw pass: characters, scheme, authority, userinfo, port and host as
 * written. Sets *https. Returns 0 or -1 with err set.
 */
static int check_raw(const struct urlguard_policy *p, const char *url,
		     int *https, char *err, size_t errlen)
{
	const char *auth, *host, *rest;
	size_t n, alen, hlen, i;

	n = strnlen(url, URL_MAX + 1);
	if (n == 0) {
		set_err(err, errlen, "empty URL");
		return -1;
	}
	if (n > URL_MAX) {
		set_err(err, errlen, "URL too long");
		return -1;
	}
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)url[i];
		if (c <= 0x20 || c == 0x7f) {
			set_err(err, errlen, "URL contains whitespace or control characters");
			return -1;
		}
		if (c >= 0x80) {
			set_err(err, errlen, "URL contains non-ASCII characters");
			return -1;
		}
		if (c == '\\') {
			set_err(err, errlen, "URL contains a backslash");
			return -1;
		}
	}
	if (strncasecmp(url, "https://", 8) == 0) {
		*https = 1;
		auth = url + 8;
	} else if (strncasecmp(url, "http://", 7) == 0) {
		*https = 0;
		auth = url + 7;
	} else {
		set_err(err, errlen, strncasecmp(url, "http:", 5) == 0 ||
					     strncasecmp(url, "https:", 6) == 0
				     ? "malformed URL"
				     : "scheme not allowed (http or https only)");
		return -1;
	}
	if (!*https && p->require_https) {
		set_err(err, errlen, "https required");
		return -1;
	}
	alen = strcspn(auth, "/?#");
	if (memchr(auth, '@', alen) != NULL) {
		set_err(err, errlen, "userinfo not allowed in URL");
		return -1;
	}
	host = auth;
	if (alen > 0 && auth[0] == '[') {
		const char *close = memchr(auth, ']', alen);
		if (close == NULL) {
			set_err(err, errlen, "malformed IPv6 address");
			return -1;
		}
		rest = close + 1;
	} else {
		rest = memchr(auth, ':', alen);
		if (rest == NULL)
			rest = auth + alen;
	}
	hlen = (size_t)(rest - host);
	if (rest < auth + alen &&
	    (rest[0] != ':' || !port_ok(rest + 1, (size_t)(auth + alen - rest - 1)))) {
		set_err(err, errlen, "invalid port");
		return -1;
	}
	return judge_host(p, host, hlen, err, errlen);
}

/* The second pass, on libcurl's reading of the URL. */
static int check_curl(const struct urlguard_policy *p, const char *url, int https,
		      char *err, size_t errlen)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL, *part = NULL;
	int rc = -1;

	if (u == NULL) {
		set_err(err, errlen, "out of memory");
		return -1;
	}
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
		set_err(err, errlen, "malformed URL");
		goto out;
	}
	if (strcmp(scheme, https ? "https" : "http") != 0) {
		set_err(err, errlen, "scheme not allowed (http or https only)");
		goto out;
	}
	if (curl_url_get(u, CURLUPART_USER, &part, 0) != CURLUE_NO_USER ||
	    curl_url_get(u, CURLUPART_PASSWORD, &part, 0) != CURLUE_NO_PASSWORD ||
	    curl_url_get(u, CURLUPART_OPTIONS, &part, 0) != CURLUE_NO_OPTIONS) {
		set_err(err, errlen, "userinfo not allowed in URL");
		goto out;
	}
	if (curl_url_get(u, CURLUPART_ZONEID, &part, 0) != CURLUE_NO_ZONEID &&
	    !p->allow_private) {
		set_err(err, errlen, "scoped IPv6 address not allowed");
		goto out;
	}
	rc = judge_host(p, host, strlen(host), err, errlen);
out:
	curl_free(part);
	curl_free(host);
	curl_free(scheme);
	curl_url_cleanup(u);
	return rc;
}

int urlguard_check_url(const struct urlguard_policy *p, const char *url,
		       char *err, size_t errlen)
{
	int https = 0;

	set_err(err, errlen, "");
	if (p == NULL || url == NULL) {
		set_err(err, errlen, "missing URL");
		return -1;
	}
	if (check_raw(p, url, &https, err, errlen) < 0)
		return -1;
	return check_curl(p, url, https, err, errlen);
}
