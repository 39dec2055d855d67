/*
 * fuzz_urlguard.c: libFuzzer target for core/urlguard.c.
 *
 *     clang -std=c11 -D_GNU_SOURCE -g -fsanitize=fuzzer,address,undefined -Icore \
 *         tests/fuzz/fuzz_urlguard.c core/urlguard.c -lcurl -o fuzz_urlguard
 *     ./fuzz_urlguard -max_total_time=60 NEW_DIR tests/fuzz/corpus/urlguard
 *
 * Beyond "never crash", checks that the policy knobs only ever loosen: a URL
 * accepted under the strict policy is accepted under every looser one, and
 * that an IPv4 address is judged the same as its IPv4-mapped IPv6 form.
 */
#include "urlguard.h"

#include <arpa/inet.h>

#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check_addr(const uint8_t *data, size_t size)
{
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;
	int b4, b6;

	if (size < 16)
		return;
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	memcpy(&sin.sin_addr, data, 4);
	memset(&sin6, 0, sizeof sin6);
	sin6.sin6_family = AF_INET6;
	sin6.sin6_addr.s6_addr[10] = 0xff;
	sin6.sin6_addr.s6_addr[11] = 0xff;
	memcpy(&sin6.sin6_addr.s6_addr[12], data, 4);
	b4 = urlguard_addr_blocked((const struct sockaddr *)&sin, sizeof sin);
	b6 = urlguard_addr_blocked((const struct sockaddr *)&sin6, sizeof sin6);
	if (b4 != b6 || (b4 != 0 && b4 != 1))
		abort();
	memcpy(sin6.sin6_addr.s6_addr, data, 16);
	b6 = urlguard_addr_blocked((const struct sockaddr *)&sin6, sizeof sin6);
	if (b6 != 0 && b6 != 1)
		abort();
	/* The text form (curl's CURLINFO_PRIMARY_IP, checked on reused
	 * connections) is judged like the socket address. */
	char text[INET6_ADDRSTRLEN];
	if (inet_ntop(AF_INET6, &sin6.sin6_addr, text, sizeof text) == NULL ||
	    urlguard_ip_blocked(text) != b6)
		abort();
	if (inet_ntop(AF_INET, &sin.sin_addr, text, sizeof text) == NULL ||
	    urlguard_ip_blocked(text) != b4)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Ordered strictest first; each accepts a superset of the one before. */
	static const struct urlguard_policy pol[3] = {
		{ .require_https = 1, .allow_private = 0 },
		{ .require_https = 1, .allow_private = 1 },
		{ .require_https = 0, .allow_private = 1 },
	};
	char err[64];
	char *url;
	int prev = -1;
	size_t i;

	check_addr(data, size);
	url = malloc(size + 1);
	if (url == NULL)
		return 0;
	memcpy(url, data, size);
	url[size] = '\0';
	for (i = 0; i < sizeof pol / sizeof pol[0]; i++) {
		int rc = urlguard_check_url(&pol[i], url, err, sizeof err);
		if ((rc != 0 && rc != -1) || strnlen(err, sizeof err) == sizeof err)
			abort();
		if ((rc == 0) != (err[0] == '\0'))
			abort();
		if (prev == 0 && rc != 0)
			abort();
		prev = rc;
	}
	free(url);
	return 0;
}
