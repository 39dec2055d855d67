/*
 * test_ssrf_matrix.c: the SSRF guard's decision (core/urlguard.c) over a
 * generated matrix of spellings, for the addresses no end-to-end test may
 * touch: private, link-local, cloud metadata, CGNAT, multicast, reserved and
 * unspecified (loopback is here too; the e2e test tests/e2e/reliability/ssrf.test.js
 * proves it on a real socket).
 *
 * For every blocked IPv4 address: dotted, decimal, hex, octal, dotted
 * hex/octal, mixed, the short forms a.b.c / a.b / a in every base, trailing
 * dots, ports, IPv4-mapped and IPv4-compatible IPv6 (dotted and hex), NAT64,
 * zone ids, and userinfo wrappers, plus every IPv6 translation prefix that
 * embeds it (SIIT ::ffff:0:0/96, local-use NAT64 64:ff9b:1::/48 in each
 * RFC 6052 layout, 6to4 2002::/16); for every blocked IPv6 address (the IANA
 * special-purpose registry, Teredo, space outside 2000::/3): compressed,
 * expanded, upper case, zone ids. Each must be refused under allow_private =
 * false and (for address rules) accepted under allow_private = true, which
 * proves the spelling was read as that address and not merely as junk. The
 * same spellings of public control addresses must be accepted. The
 * connect-time check (urlguard_addr_blocked) is run on each address as
 * sockaddr_in, and as IPv4-mapped, -compatible, SIIT, NAT64 (well-known and
 * local-use) and 6to4 sockaddr_in6, and from curl's text form of a peer
 * (urlguard_ip_blocked, what the pre-request check of reused connections
 * uses).
 *
 * Counts go to $GENRELAY_RELIABILITY_DIR/ssrf_unit.json.
 */
#include "urlguard.h"
#include "check.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const struct urlguard_policy strict = { .require_https = 1, .allow_private = 0 };
static const struct urlguard_policy open_ = { .require_https = 1, .allow_private = 1 };

static int spellings, sockaddr_checks, addresses;

static int check_url(const struct urlguard_policy *p, const char *url)
{
	char err[160];
	return urlguard_check_url(p, url, err, sizeof err);
}

#define EXPECT(cond, url, what)                                                      \
	do {                                                                         \
		if (!check_result_((cond), __FILE__, __LINE__, what))                \
			fprintf(stderr, "    url: %s\n", url);                           \
	} while (0)

/* A spelling of a blocked address: refused strictly, accepted when private is allowed. */
static void private_url(const char *url)
{
	spellings++;
	EXPECT(check_url(&strict, url) == -1, url, "refused with allow_private = false");
	EXPECT(check_url(&open_, url) == 0, url, "accepted with allow_private = true");
}

/* A spelling of a public address: accepted under both. */
static void public_url(const char *url)
{
	spellings++;
	EXPECT(check_url(&strict, url) == 0, url, "public spelling accepted");
}

/* Refused under every policy (userinfo tricks). */
static void never_url(const char *url)
{
	spellings++;
	EXPECT(check_url(&strict, url) == -1 && check_url(&open_, url) == -1, url, "refused under every policy");
}

struct v4 {
	const char *what;
	unsigned char b[4];
};

static const struct v4 blocked4[] = {
	{ "loopback", { 127, 0, 0, 1 } },
	{ "loopback", { 127, 1, 2, 3 } },
	{ "loopback", { 127, 255, 255, 254 } },
	{ "unspecified", { 0, 0, 0, 0 } },
	{ "this network", { 0, 1, 2, 3 } },
	{ "private 10/8", { 10, 0, 0, 1 } },
	{ "private 10/8", { 10, 255, 255, 254 } },
	{ "private 172.16/12", { 172, 16, 0, 1 } },
	{ "private 172.16/12", { 172, 20, 30, 40 } },
	{ "private 172.16/12", { 172, 31, 255, 254 } },
	{ "private 192.168/16", { 192, 168, 0, 1 } },
	{ "private 192.168/16", { 192, 168, 1, 254 } },
	{ "CGNAT 100.64/10", { 100, 64, 0, 1 } },
	{ "Alibaba metadata", { 100, 100, 100, 200 } },
	{ "CGNAT 100.64/10", { 100, 127, 255, 254 } },
	{ "link-local", { 169, 254, 0, 1 } },
	{ "AWS/GCP/Azure metadata", { 169, 254, 169, 254 } },
	{ "ECS task metadata", { 169, 254, 170, 2 } },
	{ "AWS time sync", { 169, 254, 169, 123 } },
	{ "Oracle Cloud metadata", { 192, 0, 0, 192 } },
	{ "IETF protocol assignments", { 192, 0, 0, 8 } },
	{ "benchmarking 198.18/15", { 198, 18, 0, 1 } },
	{ "benchmarking 198.18/15", { 198, 19, 255, 254 } },
	{ "multicast", { 224, 0, 0, 1 } },
	{ "multicast SSDP", { 239, 255, 255, 250 } },
	{ "reserved 240/4", { 240, 0, 0, 1 } },
	{ "reserved 240/4", { 250, 1, 2, 3 } },
	{ "broadcast", { 255, 255, 255, 255 } },
	{ "IETF protocol assignments", { 192, 0, 0, 9 } },
	{ "IETF protocol assignments", { 192, 0, 0, 170 } },
	{ "documentation TEST-NET-1", { 192, 0, 2, 1 } },
	{ "AS112-v4", { 192, 31, 196, 1 } },
	{ "AMT", { 192, 52, 193, 1 } },
	{ "6to4 relay anycast", { 192, 88, 99, 1 } },
	{ "direct delegation AS112", { 192, 175, 48, 1 } },
	{ "documentation TEST-NET-2", { 198, 51, 100, 1 } },
	{ "documentation TEST-NET-3", { 203, 0, 113, 1 } },
};

static const struct v4 public4[] = {
	{ "public", { 8, 8, 8, 8 } },
	{ "public", { 1, 1, 1, 1 } },
	{ "public", { 93, 184, 216, 34 } },
	{ "edge above 10/8", { 11, 0, 0, 1 } },
	{ "edge above 172.16/12", { 172, 32, 0, 1 } },
	{ "edge above 100.64/10", { 100, 128, 0, 1 } },
	{ "edge above 169.254/16", { 169, 255, 0, 1 } },
	{ "edge above 192.168/16", { 192, 169, 0, 1 } },
	{ "edge below 224/4", { 223, 255, 255, 254 } },
	{ "edge above 192.0.2/24", { 192, 0, 3, 0 } },
	{ "edge below 192.88.99/24", { 192, 88, 98, 255 } },
	{ "edge above 198.51.100/24", { 198, 51, 101, 0 } },
	{ "edge below 203.0.113/24", { 203, 0, 112, 255 } },
};

/* Every host spelling of an IPv4 address into out[]; returns the count. */
static int spell4(const unsigned char *b, char out[][96], int max)
{
	unsigned long u = ((unsigned long)b[0] << 24) | ((unsigned long)b[1] << 16) |
			  ((unsigned long)b[2] << 8) | b[3];
	unsigned long low16 = ((unsigned long)b[2] << 8) | b[3];
	unsigned long low24 = ((unsigned long)b[1] << 16) | low16;
	int n = 0;
#define ADD(...)                                                  \
	do {                                                      \
		if (n < max)                                      \
			snprintf(out[n++], 96, __VA_ARGS__);      \
	} while (0)
	ADD("%u.%u.%u.%u", b[0], b[1], b[2], b[3]);
	ADD("%u.%u.%u.%u.", b[0], b[1], b[2], b[3]);
	ADD("%lu", u);
	ADD("0x%lx", u);
	ADD("0X%lX", u);
	ADD("0x%08lx", u);
	ADD("0%lo", u);
	ADD("00%lo", u);
	ADD("0x%x.0x%x.0x%x.0x%x", b[0], b[1], b[2], b[3]);
	ADD("0X%02X.0X%02X.0X%02X.0X%02X", b[0], b[1], b[2], b[3]);
	ADD("0%o.0%o.0%o.0%o", b[0], b[1], b[2], b[3]);
	ADD("0%04o.0%04o.0%04o.0%04o", b[0], b[1], b[2], b[3]);
	ADD("0x%x.%u.%u.%u", b[0], b[1], b[2], b[3]);
	ADD("0%o.%u.0x%x.%u", b[0], b[1], b[2], b[3]);
	ADD("%u.%u.%lu", b[0], b[1], low16);
	ADD("%u.%u.0x%lx", b[0], b[1], low16);
	ADD("%u.%u.0%lo", b[0], b[1], low16);
	ADD("%u.%lu", b[0], low24);
	ADD("%u.0x%lx", b[0], low24);
	ADD("0x%x.0%lo", b[0], low24);
	ADD("%u.%lu.", b[0], low24);
#undef ADD
	return n;
}

static void test_ipv4(void)
{
	char sp[32][96], url[4096];
	for (size_t i = 0; i < sizeof blocked4 / sizeof blocked4[0]; i++) {
		const unsigned char *b = blocked4[i].b;
		int n = spell4(b, sp, 32);
		addresses++;
		for (int k = 0; k < n; k++) {
			snprintf(url, sizeof url, "https://%s/hook", sp[k]);
			private_url(url);
			snprintf(url, sizeof url, "https://%s:8443/hook?x=1", sp[k]);
			private_url(url);
			snprintf(url, sizeof url, "HTTPS://%s", sp[k]);
			private_url(url);
			snprintf(url, sizeof url, "https://good.example@%s/", sp[k]);
			never_url(url);
			snprintf(url, sizeof url, "https://%s@good.example/", sp[k]);
			never_url(url);
		}
		/* IPv6 forms of the same address. */
		const char *v6[] = { "::ffff:%u.%u.%u.%u", "::FFFF:%u.%u.%u.%u", "0:0:0:0:0:ffff:%u.%u.%u.%u",
				     "0000:0000:0000:0000:0000:ffff:%u.%u.%u.%u", "::%u.%u.%u.%u",
				     "64:ff9b::%u.%u.%u.%u" };
		for (size_t k = 0; k < sizeof v6 / sizeof v6[0]; k++) {
			char host[96];
			snprintf(host, sizeof host, v6[k], b[0], b[1], b[2], b[3]);
			snprintf(url, sizeof url, "https://[%s]/", host);
			private_url(url);
			snprintf(url, sizeof url, "https://[%s]:443/x", host);
			private_url(url);
			snprintf(url, sizeof url, "https://[%s%%25eth0]/", host);
			private_url(url);
		}
		const char *hex6[] = { "::ffff:%x:%x", "::FFFF:%X:%X", "0::ffff:%04x:%04x", "64:ff9b::%x:%x" };
		for (size_t k = 0; k < sizeof hex6 / sizeof hex6[0]; k++) {
			char host[96];
			snprintf(host, sizeof host, hex6[k], (b[0] << 8) | b[1], (b[2] << 8) | b[3]);
			snprintf(url, sizeof url, "https://[%s]/", host);
			private_url(url);
		}
		/* Translation prefixes: SIIT, local-use NAT64 (/96 layout dotted and
		 * hex, and the /48, /56, /64 layouts), 6to4. */
		char tr[8][96];
		unsigned w0 = (b[0] << 8) | b[1], w1 = (b[2] << 8) | b[3];
		snprintf(tr[0], 96, "::ffff:0:%u.%u.%u.%u", b[0], b[1], b[2], b[3]);
		snprintf(tr[1], 96, "::FFFF:0:%X:%X", w0, w1);
		snprintf(tr[2], 96, "64:ff9b:1::%u.%u.%u.%u", b[0], b[1], b[2], b[3]);
		snprintf(tr[3], 96, "64:FF9B:1:0:0:0:%x:%x", w0, w1);
		snprintf(tr[4], 96, "64:ff9b:1:%x:%x:%x::", w0, b[2], b[3] << 8);
		snprintf(tr[5], 96, "64:ff9b:1:%x:%x:%x::", b[0], b[1], w1);
		snprintf(tr[6], 96, "64:ff9b:1:0:%x:%x:%x:0", b[0], (b[1] << 8) | b[2], b[3] << 8);
		snprintf(tr[7], 96, "2002:%x:%x::", w0, w1);
		for (size_t k = 0; k < 8; k++) {
			snprintf(url, sizeof url, "https://[%s]/", tr[k]);
			private_url(url);
			snprintf(url, sizeof url, "https://[%s]:8443/x", tr[k]);
			private_url(url);
		}
		snprintf(url, sizeof url, "https://[2002:%x:%x:1:2:3:4:5]/", w0, w1);
		private_url(url);
		/* IPv4-compatible in hex (::a.b.c.d), except where that is ::, ::1 (own rules). */
		if (b[0] || b[1]) {
			char host[96];
			snprintf(host, sizeof host, "::%x:%x", (b[0] << 8) | b[1], (b[2] << 8) | b[3]);
			snprintf(url, sizeof url, "https://[%s]/", host);
			private_url(url);
		}
	}
	for (size_t i = 0; i < sizeof public4 / sizeof public4[0]; i++) {
		int n = spell4(public4[i].b, sp, 32);
		const unsigned char *b = public4[i].b;
		for (int k = 0; k < n; k++) {
			snprintf(url, sizeof url, "https://%s/hook", sp[k]);
			public_url(url);
		}
		snprintf(url, sizeof url, "https://[::ffff:%u.%u.%u.%u]/", b[0], b[1], b[2], b[3]);
		public_url(url);
		snprintf(url, sizeof url, "https://[64:ff9b::%u.%u.%u.%u]/", b[0], b[1], b[2], b[3]);
		public_url(url);
		snprintf(url, sizeof url, "https://[::ffff:0:%u.%u.%u.%u]/", b[0], b[1], b[2], b[3]);
		public_url(url);
		snprintf(url, sizeof url, "https://[64:ff9b:1::%u.%u.%u.%u]/", b[0], b[1], b[2], b[3]);
		public_url(url);
		snprintf(url, sizeof url, "https://[2002:%x:%x::1]/", (b[0] << 8) | b[1], (b[2] << 8) | b[3]);
		public_url(url);
	}
}

static const char *const blocked6[] = {
	"::1", "::", "0:0:0:0:0:0:0:1", "0000:0000:0000:0000:0000:0000:0000:0001", "0:0:0:0:0:0:0:0",
	"fe80::1", "fe80::abcd:1234", "FE80::1", "febf:ffff::1", "fe80:0:0:0:0:0:0:1",
	"fc00::1", "fd00::1", "fd00:ec2::254", "FD00:EC2::254", "fd12:3456:789a::1", "fdff:ffff:ffff:ffff:ffff:ffff:ffff:fffe",
	"ff02::1", "ff05::2", "ff0e::1", "FF02::FB", "fec0::1", "fec0:0:0:ffff::1",
	/* the rest of the IANA special-purpose registry */
	"100::1", "100::ffff:ffff:ffff:ffff", "100:0:0:1::1", "2001::1", "2001:1::1", "2001:1::2", "2001:1::3",
	"2001:2::1", "2001:3::1", "2001:4:112::1", "2001:10::1", "2001:20::1", "2001:30::1",
	"2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db8::1", "2001:DB8:FFFF::1", "2620:4f:8000::1",
	"3fff::1", "3fff:fff:ffff::1", "5f00::1", "5f00:1234::1",
	/* Teredo with loopback, metadata and public client addresses */
	"2001:0:4136:e378:8000:63bf:80ff:fffe", "2001:0:4136:e378:8000:63bf:5601:5601",
	"2001:0:4136:e378:8000:63bf:f7f7:f7f7",
	/* translation forms (in hex) of loopback, metadata, 6to4 relay */
	"::ffff:0:7f00:1", "64:ff9b:1::7f00:1", "64:ff9b:1::a9fe:a9fe", "64:ff9b:1:ffff:ffff::7f00:1",
	"2002:7f00:1::", "2002:a9fe:a9fe::1", "2002:c058:6301::", "2002::1",
	/* outside 2000::/3: reserved by the IETF */
	"4000::1", "fbff::1", "1::1", "e000::1", "64:ff9b:0:0:1::808:808",
};

static const char *const public6[] = {
	"2001:4860:4860::8888", "2606:4700:4700::1111", "2a00:1450:4001::200e", "2001:200::1",
	"2001:db9::1", "2620:4f:8001::1", "3fff:1000::1", "2002:808:808::1", "64:ff9b:1::808:808",
	"::ffff:0:808:808", "2000::1",
};

static void test_ipv6(void)
{
	char url[256];
	for (size_t i = 0; i < sizeof blocked6 / sizeof blocked6[0]; i++) {
		addresses++;
		snprintf(url, sizeof url, "https://[%s]/", blocked6[i]);
		private_url(url);
		snprintf(url, sizeof url, "https://[%s]:8443/hook", blocked6[i]);
		private_url(url);
		snprintf(url, sizeof url, "https://[%s%%25eth0]/", blocked6[i]);
		private_url(url);
		snprintf(url, sizeof url, "https://[%s%%25lo]:443/", blocked6[i]);
		private_url(url);
		snprintf(url, sizeof url, "https://good.example@[%s]/", blocked6[i]);
		never_url(url);
	}
	for (size_t i = 0; i < sizeof public6 / sizeof public6[0]; i++) {
		snprintf(url, sizeof url, "https://[%s]/", public6[i]);
		public_url(url);
		/* A zone id on any address names a local interface: private. */
		snprintf(url, sizeof url, "https://[%s%%25eth0]/", public6[i]);
		private_url(url);
	}
}

static void test_names(void)
{
	static const char *const names[] = {
		"localhost", "LOCALHOST", "localhost.", "LocalHost.", "a.localhost", "x.y.localhost.",
		"metadata.google.internal", "METADATA.GOOGLE.INTERNAL", "metadata.google.internal.",
		/* dotless names resolve through search domains to internal hosts */
		"metadata", "instance-data", "kubernetes", "intranet", "router",
	};
	char url[256];
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		snprintf(url, sizeof url, "https://%s/", names[i]);
		private_url(url);
		snprintf(url, sizeof url, "https://%s:8443/computeMetadata/v1/", names[i]);
		private_url(url);
	}
}

/* The connect-time check on every address, in every socket form. */
static void test_sockaddr(void)
{
	for (int pass = 0; pass < 2; pass++) {
		const struct v4 *list = pass == 0 ? blocked4 : public4;
		size_t n = pass == 0 ? sizeof blocked4 / sizeof blocked4[0] : sizeof public4 / sizeof public4[0];
		int want = pass == 0 ? 1 : 0;
		for (size_t i = 0; i < n; i++) {
			struct sockaddr_in sin;
			struct sockaddr_in6 s6;
			memset(&sin, 0, sizeof sin);
			sin.sin_family = AF_INET;
			memcpy(&sin.sin_addr, list[i].b, 4);
			CHECK_EQ_INT(urlguard_addr_blocked((struct sockaddr *)&sin, sizeof sin), want);
			sockaddr_checks++;
			char text[16];
			snprintf(text, sizeof text, "%u.%u.%u.%u", list[i].b[0], list[i].b[1], list[i].b[2], list[i].b[3]);
			CHECK_EQ_INT(urlguard_ip_blocked(text), want);
			sockaddr_checks++;
			for (int form = 0; form < 6; form++) {
				unsigned char *a = s6.sin6_addr.s6_addr;
				memset(&s6, 0, sizeof s6);
				s6.sin6_family = AF_INET6;
				if (form == 0) { /* ::ffff:a.b.c.d */
					a[10] = 0xff;
					a[11] = 0xff;
				} else if (form == 2 || form == 4) { /* 64:ff9b::a.b.c.d, 64:ff9b:1::a.b.c.d */
					a[1] = 0x64;
					a[2] = 0xff;
					a[3] = 0x9b;
					a[5] = form == 4;
				} else if (form == 3) { /* ::ffff:0:a.b.c.d */
					a[8] = 0xff;
					a[9] = 0xff;
				}
				if (form == 5) { /* 2002:abcd::/48 */
					a[0] = 0x20;
					a[1] = 0x02;
					memcpy(&a[2], list[i].b, 4);
				} else {
					memcpy(&a[12], list[i].b, 4);
				}
				/* ::a.b.c.d of 0.0.0.0 / 0.0.0.1 is :: / ::1, blocked anyway. */
				CHECK_EQ_INT(urlguard_addr_blocked((struct sockaddr *)&s6, sizeof s6), want);
				sockaddr_checks++;
			}
		}
	}
	for (int pass = 0; pass < 2; pass++) {
		const char *const *list = pass == 0 ? blocked6 : public6;
		size_t n = pass == 0 ? sizeof blocked6 / sizeof blocked6[0] : sizeof public6 / sizeof public6[0];
		for (size_t i = 0; i < n; i++) {
			struct sockaddr_in6 s6;
			memset(&s6, 0, sizeof s6);
			s6.sin6_family = AF_INET6;
			if (inet_pton(AF_INET6, list[i], &s6.sin6_addr) != 1)
				continue;
			int got = urlguard_addr_blocked((struct sockaddr *)&s6, sizeof s6);
			if (!check_result_(got == (pass == 0), __FILE__, __LINE__, "sockaddr_in6 decision"))
				fprintf(stderr, "    address: %s (blocked=%d)\n", list[i], got);
			sockaddr_checks++;
			got = urlguard_ip_blocked(list[i]);
			if (!check_result_(got == (pass == 0), __FILE__, __LINE__, "peer text decision"))
				fprintf(stderr, "    address: %s (blocked=%d)\n", list[i], got);
			sockaddr_checks++;
			/* A scope id on a link-local address changes nothing. */
			s6.sin6_scope_id = 2;
			if (pass == 0)
				CHECK_EQ_INT(urlguard_addr_blocked((struct sockaddr *)&s6, sizeof s6), 1);
		}
	}
}

static void write_figures(void)
{
	const char *dir = getenv("GENRELAY_RELIABILITY_DIR");
	char path[1024];
	if (!dir || !*dir)
		return;
	mkdir(dir, 0755);
	snprintf(path, sizeof path, "%s/ssrf_unit.json", dir);
	FILE *f = fopen(path, "w");
	if (!f)
		return;
	fprintf(f, "{\n  \"name\": \"ssrf_unit\",\n  \"mode\": \"test\",\n  \"spellings\": %d,\n"
		"  \"addresses\": %d,\n  \"sockaddr_checks\": %d,\n  \"checks_passed\": %d,\n"
		"  \"checks_failed\": %d\n}\n", spellings, addresses, sockaddr_checks,
		check_passed_, check_failed_);
	fclose(f);
}

int main(void)
{
	test_ipv4();
	test_ipv6();
	test_names();
	test_sockaddr();
	printf("ssrf matrix: %d URL spellings of %d blocked addresses (plus public controls), %d socket checks\n",
	       spellings, addresses, sockaddr_checks);
	write_figures();
	return check_done();
}
