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

/*
 * The reserved ranges, from the IANA IPv4 and IPv6 Special-Purpose Address
 * Registries (RFC 6890 and later additions), checked November 2026. Every
 * entry there that is not plain global unicast is refused, including the
 * documentation and benchmarking ranges (never a legitimate webhook target)
 * and the anycast ones (AS112, AMT, 6to4 relays: infrastructure, not
 * receivers).
 *
 * IPv4 (a in host byte order):
 *   0.0.0.0/8        "this network"                        RFC 791
 *   10.0.0.0/8       private                               RFC 1918
 *   100.64.0.0/10    shared address space (CGNAT)          RFC 6598
 *   127.0.0.0/8      loopback                              RFC 1122
 *   169.254.0.0/16   link-local (cloud metadata)           RFC 3927
 *   172.16.0.0/12    private                               RFC 1918
 *   192.0.0.0/24     IETF protocol assignments (DS-Lite, NAT64 discovery,
 *                    PCP/TURN anycast, Oracle metadata 192.0.0.192)  RFC 6890
 *   192.0.2.0/24     documentation TEST-NET-1              RFC 5737
 *   192.31.196.0/24  AS112-v4                              RFC 7535
 *   192.52.193.0/24  AMT                                   RFC 7450
 *   192.88.99.0/24   6to4 relay anycast (deprecated)       RFC 7526
 *   192.168.0.0/16   private                               RFC 1918
 *   192.175.48.0/24  direct delegation AS112               RFC 7534
 *   198.18.0.0/15    benchmarking                          RFC 2544
 *   198.51.100.0/24  documentation TEST-NET-2              RFC 5737
 *   203.0.113.0/24   documentation TEST-NET-3              RFC 5737
 *   224.0.0.0/4      multicast                             RFC 5771
 *   240.0.0.0/4      reserved, and 255.255.255.255 broadcast RFC 1112, 919
 */
static const struct {
	uint32_t net;
	unsigned len;
} v4_reserved[] = {
	{ 0x00000000u, 8 }, { 0x0a000000u, 8 }, { 0x64400000u, 10 },
	{ 0x7f000000u, 8 }, { 0xa9fe0000u, 16 }, { 0xac100000u, 12 },
	{ 0xc0000000u, 24 }, { 0xc0000200u, 24 }, { 0xc01fc400u, 24 },
	{ 0xc034c100u, 24 }, { 0xc0586300u, 24 }, { 0xc0a80000u, 16 },
	{ 0xc0af3000u, 24 }, { 0xc6120000u, 15 }, { 0xc6336400u, 24 },
	{ 0xcb007100u, 24 }, { 0xe0000000u, 4 }, { 0xf0000000u, 4 },
};

static int v4_blocked(uint32_t a)
{
	for (size_t i = 0; i < sizeof v4_reserved / sizeof v4_reserved[0]; i++) {
		uint32_t mask = 0xffffffffu << (32 - v4_reserved[i].len);
		if ((a & mask) == v4_reserved[i].net)
			return 1;
	}
	return 0;
}

/*
 * IPv6, refused outright:
 *   ::/128           unspecified                           RFC 4291
 *   ::1/128          loopback                              RFC 4291
 *   100::/64         discard-only                          RFC 6666
 *   100:0:0:1::/64   dummy prefix                          RFC 9780
 *   2001::/23        IETF protocol assignments, with every sub-block:
 *                    Teredo 2001::/32 (RFC 4380; refused whatever client
 *                    IPv4 it embeds, since a Teredo relay reaches it),
 *                    PCP/TURN/DNS-SD anycast 2001:1::1-3, benchmarking
 *                    2001:2::/48, AMT 2001:3::/32, AS112 2001:4:112::/48,
 *                    ORCHID 2001:10::/28, ORCHIDv2 2001:20::/28, drone
 *                    remote ID 2001:30::/28                RFC 2928
 *   2001:db8::/32    documentation                         RFC 3849
 *   2620:4f:8000::/48 direct delegation AS112              RFC 7534
 *   3fff::/20        documentation                         RFC 9637
 *   5f00::/16        SRv6 SIDs                             RFC 9602
 *   fc00::/7         unique local                          RFC 4193
 *   fe80::/10        link-local                            RFC 4291
 *   fec0::/10        site-local (deprecated)               RFC 3879
 *   ff00::/8         multicast                             RFC 4291
 * judged by the IPv4 address they embed (see v6_embedded_blocked):
 *   ::ffff:0:0/96    IPv4-mapped                           RFC 4291
 *   ::ffff:0:0:0/96  IPv4-translated (SIIT)                RFC 2765, 7915
 *   ::/96            IPv4-compatible (deprecated)          RFC 4291
 *   64:ff9b::/96     NAT64 well-known prefix               RFC 6052, 6146
 *   64:ff9b:1::/48   local-use NAT64                       RFC 8215
 *   2002::/16        6to4                                  RFC 3056
 * and everything outside 2000::/3 (the only global unicast allocation; the
 * rest of the space is reserved by the IETF) is refused too.
 */
static const struct {
	unsigned char net[16];
	unsigned len;
} v6_reserved[] = {
	{ { 0 }, 128 },
	{ { [15] = 1 }, 128 },
	{ { 0x01, 0x00 }, 64 },
	{ { 0x01, 0x00, [6] = 0x00, [7] = 0x01 }, 64 },
	{ { 0x20, 0x01 }, 23 },
	{ { 0x20, 0x01, 0x0d, 0xb8 }, 32 },
	{ { 0x26, 0x20, 0x00, 0x4f, 0x80, 0x00 }, 48 },
	{ { 0x3f, 0xff }, 20 },
	{ { 0x5f, 0x00 }, 16 },
	{ { 0xfc }, 7 },
	{ { 0xfe, 0x80 }, 10 },
	{ { 0xfe, 0xc0 }, 10 },
	{ { 0xff }, 8 },
};

static int v6_in(const unsigned char b[16], const unsigned char net[16], unsigned len)
{
	unsigned full = len / 8, rest = len % 8;

	if (memcmp(b, net, full) != 0)
		return 0;
	if (rest == 0)
		return 1;
	unsigned char mask = (unsigned char)(0xff << (8 - rest));
	return (b[full] & mask) == (net[full] & mask);
}

static uint32_t v4_at(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/*
 * RFC 6052 layouts: for a prefix of len bits, where the four IPv4 octets
 * sit (bits 64-71, byte 8, are the reserved "u" octet and skipped).
 */
static const struct {
	unsigned len;
	unsigned char at[4];
} rfc6052[] = {
	{ 48, { 6, 7, 9, 10 } },
	{ 56, { 7, 9, 10, 11 } },
	{ 64, { 9, 10, 11, 12 } },
	{ 96, { 12, 13, 14, 15 } },
};

/*
 * For an address under a translation prefix: 1 when the IPv4 address it
 * stands for is blocked, 0 when not, -1 when b is under none.
 *
 * The local-use prefix 64:ff9b:1::/48 may be followed by any RFC 6052 prefix
 * length from /48 to /96, and which one a network uses is not visible in
 * the address, so every layout that fits (u octet and the bits after the
 * IPv4 zero, as RFC 6052 requires) is decoded, and the address is blocked
 * when any of them is, or when none fits. (A shorter layout leaves the last
 * 32 bits zero, which the /96 layout reads as 0.0.0.0: in practice only the
 * /96 layout of a public address passes.)
 */
static int v6_embedded_blocked(const unsigned char b[16])
{
	static const unsigned char zero[12] = { 0 };
	static const unsigned char mapped[12] = { [10] = 0xff, [11] = 0xff };
	static const unsigned char siit[12] = { [8] = 0xff, [9] = 0xff };
	static const unsigned char nat64[12] = { 0x00, 0x64, 0xff, 0x9b };
	static const unsigned char local64[6] = { 0x00, 0x64, 0xff, 0x9b, 0x00, 0x01 };

	if (memcmp(b, mapped, 12) == 0 || memcmp(b, siit, 12) == 0 ||
	    memcmp(b, zero, 12) == 0 || memcmp(b, nat64, 12) == 0)
		return v4_blocked(v4_at(b + 12));
	if (b[0] == 0x20 && b[1] == 0x02)
		return v4_blocked(v4_at(b + 2));
	if (memcmp(b, local64, 6) == 0) {
		int fits = 0;
		if (b[8] != 0)
			return 1;
		for (size_t i = 0; i < sizeof rfc6052 / sizeof rfc6052[0]; i++) {
			unsigned after = rfc6052[i].at[3] + 1u;
			unsigned char o[4];
			if (after < 16 && memcmp(b + after, zero, 16 - after) != 0)
				continue;
			fits = 1;
			for (int k = 0; k < 4; k++)
				o[k] = b[rfc6052[i].at[k]];
			if (v4_blocked(v4_at(o)))
				return 1;
		}
		return !fits;
	}
	return -1;
}

static int v6_blocked(const unsigned char b[16])
{
	for (size_t i = 0; i < sizeof v6_reserved / sizeof v6_reserved[0]; i++)
		if (v6_in(b, v6_reserved[i].net, v6_reserved[i].len))
			return 1;
	int e = v6_embedded_blocked(b);
	if (e >= 0)
		return e;
	return (b[0] & 0xe0) != 0x20;
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

int urlguard_ip_blocked(const char *ip)
{
	struct in_addr a4;
	struct in6_addr a6;

	if (ip == NULL)
		return 1;
	if (inet_pton(AF_INET, ip, &a4) == 1)
		return v4_blocked(ntohl(a4.s_addr));
	if (inet_pton(AF_INET6, ip, &a6) == 1)
		return v6_blocked(a6.s6_addr);
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

/*
 * URLs accepted lately by this thread, per policy: the verdict is a function
 * of the URL's text and the policy alone (no name is resolved here), and
 * customers send the same few webhook URLs job after job, so a URL seen
 * again is accepted without parsing it twice more (libcurl's parse is most
 * of the cost). Only acceptances are kept (a refusal is made again, with its
 * reason); URLs of OK_CACHE_URL bytes or more are not kept.
 */
#define OK_CACHE_N 8
#define OK_CACHE_URL 256
static _Thread_local struct {
	char url[OK_CACHE_URL]; /* "" unused */
	unsigned char policy;
} ok_cache[OK_CACHE_N];
static _Thread_local unsigned ok_cache_next;

static unsigned char policy_bits(const struct urlguard_policy *p)
{
	return (unsigned char)((p->require_https ? 1 : 0) | (p->allow_private ? 2 : 0));
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
	size_t n = strnlen(url, OK_CACHE_URL);
	unsigned char pol = policy_bits(p);
	if (n > 0 && n < OK_CACHE_URL)
		for (unsigned i = 0; i < OK_CACHE_N; i++)
			if (ok_cache[i].policy == pol && memcmp(ok_cache[i].url, url, n + 1) == 0)
				return 0;
	if (check_raw(p, url, &https, err, errlen) < 0 ||
	    check_curl(p, url, https, err, errlen) < 0)
		return -1;
	if (n > 0 && n < OK_CACHE_URL) {
		unsigned i = ok_cache_next++ % OK_CACHE_N;
		memcpy(ok_cache[i].url, url, n + 1);
		ok_cache[i].policy = pol;
	}
	return 0;
}
