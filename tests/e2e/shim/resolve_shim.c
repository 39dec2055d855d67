/*
 * resolve_shim.c: an LD_PRELOAD library for the SSRF tests. It answers
 * getaddrinfo() for names under ".genrelay.test" from a hosts file the test
 * rewrites at will (GENRELAY_SHIM_HOSTS, lines "name address"), read again on
 * every call, so a test can make a name resolve to loopback, or change its
 * address between the submit and the delivery (DNS rebinding). Every other
 * name goes to the real resolver. Nothing else is intercepted.
 *
 *     LD_PRELOAD=libgenrelay_resolve_shim.so GENRELAY_SHIM_HOSTS=/tmp/hosts genrelay serve ...
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef int (*gai_fn)(const char *, const char *, const struct addrinfo *, struct addrinfo **);

static const char SUFFIX[] = ".genrelay.test";

static int ours(const char *node, char *name, size_t len)
{
	size_t n, s = sizeof SUFFIX - 1;

	if (!node)
		return 0;
	n = strlen(node);
	if (n && node[n - 1] == '.')
		n--;
	if (n <= s || n >= len || strncasecmp(node + n - s, SUFFIX, s) != 0)
		return 0;
	memcpy(name, node, n);
	name[n] = '\0';
	return 1;
}

/* The address of name in the hosts file into addr; 0, or -1 when absent. */
static int lookup(const char *name, char *addr, size_t len)
{
	const char *path = getenv("GENRELAY_SHIM_HOSTS");
	char line[512], n[256], a[128];
	FILE *f;
	int found = -1;

	if (!path || !(f = fopen(path, "r")))
		return -1;
	while (fgets(line, sizeof line, f)) {
		if (sscanf(line, "%255s %127s", n, a) == 2 && strcasecmp(n, name) == 0) {
			snprintf(addr, len, "%s", a);
			found = 0;
			break;
		}
	}
	fclose(f);
	return found;
}

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
		struct addrinfo **res)
{
	static gai_fn real;
	char name[256], addr[128];
	struct addrinfo h;

	if (!real)
		real = (gai_fn)dlsym(RTLD_NEXT, "getaddrinfo");
	if (!real)
		return EAI_SYSTEM;
	if (!ours(node, name, sizeof name))
		return real(node, service, hints, res);
	if (lookup(name, addr, sizeof addr) < 0)
		return EAI_NONAME;
	memset(&h, 0, sizeof h);
	if (hints)
		h = *hints;
	h.ai_flags |= AI_NUMERICHOST;
	h.ai_flags &= ~(AI_CANONNAME | AI_ADDRCONFIG);
	h.ai_family = AF_UNSPEC;
	return real(addr, service, &h, res);
}
