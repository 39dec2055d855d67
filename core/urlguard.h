/*
 * urlguard.h: SSRF rules for outbound webhook URLs.
 *
 * Two checks, both needed: urlguard_check_url() when a URL is accepted (scheme,
 * shape, and IP literals in every spelling), and urlguard_addr_blocked() on the
 * address actually connected to (from curl's CURLOPT_OPENSOCKETFUNCTION), so a
 * name that resolves to a private address, or rebinds after the first check,
 * is refused.
 */
#ifndef GENRELAY_URLGUARD_H
#define GENRELAY_URLGUARD_H

#include <stddef.h>
#include <sys/socket.h>

struct urlguard_policy {
	int require_https; /* refuse http:// */
	int allow_private; /* allow loopback, private, link-local ... */
};

/*
 * Validates url for use as a webhook target. Returns 0 when acceptable, or -1
 * with a human-readable reason in err (never echoing userinfo). Refuses:
 * schemes other than http/https (https only when require_https), missing
 * host, userinfo, URLs over 2048 bytes, control characters and, unless
 * allow_private, hosts that are IP literals (decimal, octal, hex, short forms,
 * IPv6, IPv4-mapped/compatible, with zone ids) in a blocked range, and the
 * names "localhost" / "*.localhost" / "metadata.google.internal".
 */
int urlguard_check_url(const struct urlguard_policy *p, const char *url,
		       char *err, size_t errlen);

/*
 * 1 when the address is blocked under allow_private == 0: IPv4 0/8, 10/8,
 * 100.64/10, 127/8, 169.254/16, 172.16/12, 192.0.0/24, 192.168/16,
 * 198.18/15, 224/4, 240/4, 255.255.255.255; IPv6 ::, ::1, fc00::/7,
 * fe80::/10, ff00::/8, IPv4-mapped ::ffff:0:0/96 and IPv4-compatible ::/96
 * (judged by the embedded IPv4), 64:ff9b::/96 (NAT64, embedded IPv4),
 * fec0::/10 (old site-local). urlguard_check_url() also refuses, unless
 * allow_private, zone ids and dotless names (search domains resolve those
 * inside), and under every policy non-ASCII hosts, '%' outside brackets and
 * numeric last labels that are not valid IPv4. Documentation ranges
 * (192.0.2.0/24, 2001:db8::/32) are not routable and stay allowed.
 */
int urlguard_addr_blocked(const struct sockaddr *sa, socklen_t len);

#endif
