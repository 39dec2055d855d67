/*
 * urlguard.h: SSRF rules for outbound webhook URLs.
 *
 * Two checks, both needed: urlguard_check_url() when a URL is accepted (scheme,
 * shape, and IP literals in every spelling), and urlguard_addr_blocked() on the
 * address actually connected to (from curl's CURLOPT_OPENSOCKETFUNCTION, and
 * again on every transfer's connected peer, reused connections included, from
 * CURLOPT_PREREQFUNCTION: see fetch.c), so a name that resolves to a private
 * address, or rebinds after the first check, is refused.
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
 * 1 when the address is blocked under allow_private == 0: the ranges of the
 * IANA IPv4 and IPv6 special-purpose address registries that are not plain
 * global unicast (loopback, private, CGNAT, link-local, documentation,
 * benchmarking, AS112/AMT/6to4-relay anycast, multicast, reserved, discard,
 * unique-local, site-local, 2001::/23 with Teredo, SRv6 SIDs), every IPv6
 * address outside 2000::/3, and the IPv6 translation forms (IPv4-mapped,
 * SIIT, IPv4-compatible, NAT64 64:ff9b::/96 and 64:ff9b:1::/48, 6to4
 * 2002::/16) judged by the IPv4 address they embed. The full list, with its
 * sources, is at the top of urlguard.c. urlguard_check_url() also refuses,
 * unless allow_private, zone ids and dotless names (search domains resolve
 * those inside), and under every policy non-ASCII hosts, '%' outside brackets
 * and numeric last labels that are not valid IPv4.
 */
int urlguard_addr_blocked(const struct sockaddr *sa, socklen_t len);

/*
 * The same decision on a numeric address as text ("127.0.0.1", "::1"), as
 * curl reports a connection's peer (CURLINFO_PRIMARY_IP). Anything that is
 * not a numeric IPv4 or IPv6 address is blocked.
 */
int urlguard_ip_blocked(const char *ip);

#endif
