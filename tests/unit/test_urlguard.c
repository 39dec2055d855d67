/*
 * test_urlguard.c: SSRF rules (core/urlguard.c). Pure unit tests: nothing here
 * resolves a name or opens a connection.
 */
#include "urlguard.h"
#include "check.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>

static const struct urlguard_policy strict = { .require_https = 1, .allow_private = 0 };
static const struct urlguard_policy open_ = { .require_https = 1, .allow_private = 1 };
static const struct urlguard_policy plain = { .require_https = 0, .allow_private = 0 };
static const struct urlguard_policy lax = { .require_https = 0, .allow_private = 1 };
static char err[128];

#define OK(p, url) CHECK_EQ_INT(urlguard_check_url(&(p), url, err, sizeof err), 0)
#define REFUSED(p, url) CHECK_EQ_INT(urlguard_check_url(&(p), url, err, sizeof err), -1)
/* An address or local-name rule: refused by default, allowed by allow_private. */
#define PRIVATE(url)                 \
	do {                         \
		REFUSED(strict, url); \
		OK(open_, url);       \
	} while (0)
/* A shape rule: refused under every policy. */
#define NEVER(url)                   \
	do {                         \
		REFUSED(strict, url); \
		REFUSED(lax, url);    \
	} while (0)
#define PUBLIC(url)                  \
	do {                         \
		OK(strict, url);      \
		OK(open_, url);       \
	} while (0)

static void test_public(void)
{
	PUBLIC("https://example.com/hook");
	PUBLIC("https://example.com./hook");
	PUBLIC("https://EXAMPLE.com/Hook");
	PUBLIC("HTTPS://example.com/hook");
	PUBLIC("https://hooks.example.co.uk:8443/path/to?q=1&r=%20#frag");
	PUBLIC("https://a_b.example.com/");
	PUBLIC("https://example.com");
	PUBLIC("https://example.com?x=1");
	PUBLIC("https://example.com:/x");
	PUBLIC("https://1.2.3.4/x");
	PUBLIC("https://8.8.8.8/");
	PUBLIC("https://134744072/");
	PUBLIC("https://localhost.example.com/");
	PUBLIC("https://mylocalhost.com/");
	PUBLIC("https://[2606:4700:4700::1111]/");
	PUBLIC("https://[2001:4860:4860::8888]:8443/x");
	PUBLIC("https://[::ffff:8.8.8.8]/");
	PUBLIC("https://[64:ff9b::8.8.8.8]/");
	/* Translation prefixes embedding a public IPv4 address. */
	PUBLIC("https://[::ffff:0:8.8.8.8]/");
	PUBLIC("https://[64:ff9b:1::808:808]/");
	PUBLIC("https://[2002:808:808::1]/");
	/* Just outside special-purpose blocks. */
	PUBLIC("https://[2001:200::1]/");
	PUBLIC("https://[2001:db9::1]/");
	PUBLIC("https://[3fff:1000::1]/");
	PUBLIC("https://[2620:4f:8001::1]/");
	PUBLIC("https://192.0.1.255/");
	PUBLIC("https://192.0.3.0/");
	PUBLIC("https://198.51.99.255/");
	PUBLIC("https://203.0.114.0/");
	/* Edges next to blocked ranges. */
	PUBLIC("https://11.0.0.0/");
	PUBLIC("https://100.128.0.1/");
	PUBLIC("https://172.32.0.1/");
	PUBLIC("https://169.255.0.1/");
	PUBLIC("https://198.20.0.1/");
	PUBLIC("https://223.255.255.255/");
}

static void test_ipv4_spellings(void)
{
	PRIVATE("https://127.0.0.1/");
	PRIVATE("https://127.0.0.1:8443/x");
	PRIVATE("https://127.1/");
	PRIVATE("https://127.0.1/");
	PRIVATE("https://2130706433/");
	PRIVATE("https://0177.0.0.1/");
	PRIVATE("https://0177.1/");
	PRIVATE("https://0x7f.1/");
	PRIVATE("https://0X7F.1/");
	PRIVATE("https://0x7f.0.0.1/");
	PRIVATE("https://0x7f000001/");
	PRIVATE("https://017700000001/");
	PRIVATE("https://127.0.0.1./");
	PRIVATE("https://127.255.255.254/");
	PRIVATE("https://0/");
	PRIVATE("https://0.0.0.0/");
	PRIVATE("https://10.0.0.1/");
	PRIVATE("https://167772161/");
	PRIVATE("https://012.0.0.1/");
	PRIVATE("https://172.16.0.1/");
	PRIVATE("https://172.31.255.255/");
	PRIVATE("https://192.168.1.1/");
	PRIVATE("https://0xc0.0xa8.1.1/");
	PRIVATE("https://169.254.169.254/latest/meta-data/");
	PRIVATE("https://0xa9fea9fe/");
	PRIVATE("https://2852039166/");
	PRIVATE("https://169.254.43518/");
	PRIVATE("https://100.64.0.1/");
	PRIVATE("https://100.127.255.255/");
	PRIVATE("https://192.0.0.1/");
	PRIVATE("https://198.18.0.1/");
	PRIVATE("https://198.19.255.255/");
	PRIVATE("https://224.0.0.1/");
	PRIVATE("https://239.255.255.250/");
	PRIVATE("https://240.0.0.1/");
	PRIVATE("https://255.255.255.255/");
	PRIVATE("https://4294967295/");
}

static void test_ipv6_spellings(void)
{
	PRIVATE("https://[::1]/");
	PRIVATE("https://[::1]:8443/");
	PRIVATE("https://[0:0:0:0:0:0:0:1]/");
	PRIVATE("https://[::]/");
	PRIVATE("https://[fe80::1]/");
	PRIVATE("https://[fe80::1%25eth0]/");
	PRIVATE("https://[fe80::1%eth0]/");
	PRIVATE("https://[FE80::1]/");
	PRIVATE("https://[fec0::1]/");
	PRIVATE("https://[fc00::1]/");
	PRIVATE("https://[fd00::1]/");
	PRIVATE("https://[fd12:3456:789a::1]/");
	PRIVATE("https://[ff02::1]/");
	PRIVATE("https://[::ffff:127.0.0.1]/");
	PRIVATE("https://[::ffff:7f00:1]/");
	PRIVATE("https://[::FFFF:7F00:1]/");
	PRIVATE("https://[0:0:0:0:0:ffff:127.0.0.1]/");
	PRIVATE("https://[::ffff:10.0.0.1]/");
	PRIVATE("https://[::ffff:a9fe:a9fe]/");
	PRIVATE("https://[::127.0.0.1]/");
	PRIVATE("https://[::7f00:1]/");
	PRIVATE("https://[::10.0.0.1]/");
	PRIVATE("https://[64:ff9b::127.0.0.1]/");
	PRIVATE("https://[64:ff9b::a9fe:a9fe]/");
	/* A zone id on a global address still names a local interface. */
	PRIVATE("https://[2001:db8::1%25eth0]/");
	/* Translation prefixes embedding loopback, every one decoded. */
	PRIVATE("https://[::ffff:0:127.0.0.1]/");  /* SIIT */
	PRIVATE("https://[::ffff:0:7f00:1]/");
	PRIVATE("https://[64:ff9b:1::7f00:1]/");   /* local-use NAT64, /96 layout */
	PRIVATE("https://[64:ff9b:1::127.0.0.1]/");
	PRIVATE("https://[64:ff9b:1:7f00:0:100::]/"); /* /48 layout */
	PRIVATE("https://[64:ff9b:1:a9:fe:a9fe::]/"); /* /56 layout: 169.254.169.254 */
	PRIVATE("https://[64:ff9b:1:0:7f:0:1:0]/");   /* /64 layout */
	PRIVATE("https://[2002:7f00:1::]/");       /* 6to4 */
	PRIVATE("https://[2002:7f00:1::1]/");
	PRIVATE("https://[2002:a9fe:a9fe::]/");
	PRIVATE("https://[2002:c058:6301::]/");    /* 6to4 of the 6to4 relay anycast */
	PRIVATE("https://[2001:0:4136:e378:8000:63bf:80ff:fffe]/"); /* Teredo, client 127.0.0.1 */
	PRIVATE("https://[2001:0:4136:e378:8000:63bf:f7f7:f7f7]/"); /* Teredo, client 8.8.8.8 */
	PRIVATE("https://[100::1]/");              /* discard */
	PRIVATE("https://[100:0:0:1::1]/");        /* dummy */
	PRIVATE("https://[2001:db8::1]/");
	PRIVATE("https://[3fff::1]/");
	PRIVATE("https://[5f00::1]/");
	PRIVATE("https://[4000::1]/");             /* outside 2000::/3 */
	PRIVATE("https://192.0.2.1/");
	PRIVATE("https://192.88.99.1/");
	PRIVATE("https://203.0.113.7/");
}

static void test_names(void)
{
	PRIVATE("https://localhost/");
	PRIVATE("https://LOCALHOST/");
	PRIVATE("https://LocalHost:8443/x");
	PRIVATE("https://localhost./");
	PRIVATE("https://foo.localhost/");
	PRIVATE("https://a.b.LOCALHOST./");
	PRIVATE("https://metadata.google.internal/computeMetadata/v1/");
	PRIVATE("https://METADATA.GOOGLE.INTERNAL./");
	/* Single-label names resolve through search domains to internal hosts. */
	PRIVATE("https://intranet/");
	PRIVATE("https://metadata/");
}

static void test_shape(void)
{
	char url[2100];

	/* Empty hosts. */
	NEVER("https:///x");
	NEVER("https://");
	NEVER("https://:443/");
	NEVER("https://?x");
	NEVER("https://#x");
	NEVER("https://[]/");
	NEVER("https://./");
	NEVER("");

	/* Userinfo, and the message never echoes it. */
	NEVER("https://good.example@127.0.0.1/");
	NEVER("https://good.example@example.com/");
	NEVER("https://user:hunter2@example.com/");
	CHECK_STR_EQ(err, "userinfo not allowed in URL");
	NEVER("https://@example.com/");
	NEVER("https://:pw@example.com/");
	NEVER("https://example.com:443@evil.example/");
	NEVER("https://example.com%40evil.example/");

	/* Backslashes, control characters, whitespace, non-ASCII. */
	NEVER("https://example.com\\@127.0.0.1/");
	NEVER("https:\\\\example.com/");
	NEVER("https://example.com/a\\b");
	NEVER("https://example.com/a b");
	NEVER(" https://example.com/");
	NEVER("https://example.com/\t");
	NEVER("https://exa\nmple.com/");
	NEVER("https://example.com\r\n/");
	NEVER("https://example.com/\x7f");
	NEVER("https://example.com/\x01");
	NEVER("https://ex\xc3\xa4mple.com/");
	NEVER("https://\xef\xbc\x91\xef\xbc\x92\xef\xbc\x97.0.0.1/");
	NEVER("https://127\xe3\x80\x82""0.0.1/");

	/* Malformed hosts and ports. */
	NEVER("https://1.2.3.4.5/");
	NEVER("https://127.0.0.256/");
	NEVER("https://0x/");
	NEVER("https://%6c%6f%63%61%6c%68%6f%73%74/");
	NEVER("https://exa%2emple.com/");
	NEVER("https://a..b/");
	NEVER("https://.example.com/");
	NEVER("https://example.com../");
	NEVER("https://[::1/");
	NEVER("https://[zzz]/");
	NEVER("https://[::1]x/");
	NEVER("https://[fe80::1%]/");
	NEVER("https://[::ffff:0x7f.1]/");
	NEVER("https://example.com:0/");
	NEVER("https://example.com:65536/");
	NEVER("https://example.com:99999999999999999999/");
	NEVER("https://example.com:abc/");
	NEVER("https://example.com:-1/");
	NEVER("https://example.com:80:80/");
	NEVER("https://::1/");

	/* Length: 2048 bytes pass, 2049 do not. */
	memset(url, 'a', sizeof url);
	memcpy(url, "https://example.com/", 20);
	url[2048] = '\0';
	PUBLIC(url);
	url[2048] = 'a';
	url[2049] = '\0';
	NEVER(url);
	CHECK_STR_EQ(err, "URL too long");

	/* NULL in, and err optional. */
	CHECK_EQ_INT(urlguard_check_url(&strict, NULL, err, sizeof err), -1);
	CHECK_EQ_INT(urlguard_check_url(&strict, "https://localhost/", NULL, 0), -1);
	CHECK_EQ_INT(urlguard_check_url(&strict, "https://example.com/", NULL, 0), 0);
	CHECK_EQ_INT(urlguard_check_url(&strict, "https://localhost/", err, 4), -1);
	CHECK_EQ_INT(strlen(err), 3);
}

static void test_schemes(void)
{
	NEVER("file:///etc/passwd");
	NEVER("file://localhost/etc/passwd");
	NEVER("gopher://example.com/_GET");
	NEVER("ftp://example.com/");
	NEVER("dict://example.com:11211/stat");
	NEVER("ldap://example.com/");
	NEVER("tftp://example.com/x");
	NEVER("ws://example.com/");
	NEVER("javascript:alert(1)");
	NEVER("data:text/plain,hi");
	NEVER("example.com/hook");
	NEVER("//example.com/hook");
	NEVER("https:example.com");
	NEVER("https:/example.com");
	NEVER("http:/example.com");
	NEVER("httpx://example.com/");

	/* https required unless the policy says otherwise. */
	REFUSED(strict, "http://example.com/hook");
	REFUSED(open_, "http://example.com/hook");
	CHECK_STR_EQ(err, "https required");
	OK(plain, "http://example.com/hook");
	OK(plain, "HTTP://example.com/hook");
	OK(plain, "https://example.com/hook");
	REFUSED(plain, "http://127.0.0.1/");
	OK(lax, "http://127.0.0.1:8080/hook");
	OK(lax, "http://localhost:8080/hook");
	OK(lax, "http://receiver:9000/hook");
}

static int blocked4(const char *ip)
{
	struct sockaddr_in sin;

	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_port = htons(443);
	if (inet_pton(AF_INET, ip, &sin.sin_addr) != 1)
		return -1;
	return urlguard_addr_blocked((const struct sockaddr *)&sin, sizeof sin);
}

static int blocked6(const char *ip)
{
	struct sockaddr_storage ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

	memset(&ss, 0, sizeof ss);
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(443);
	if (inet_pton(AF_INET6, ip, &sin6->sin6_addr) != 1)
		return -1;
	return urlguard_addr_blocked((const struct sockaddr *)&ss, sizeof *sin6);
}

#define BLOCKED4(ip) CHECK_EQ_INT(blocked4(ip), 1)
#define ALLOWED4(ip) CHECK_EQ_INT(blocked4(ip), 0)
#define BLOCKED6(ip) CHECK_EQ_INT(blocked6(ip), 1)
#define ALLOWED6(ip) CHECK_EQ_INT(blocked6(ip), 0)

static void test_addr(void)
{
	struct sockaddr_un sun;
	struct sockaddr_in sin;

	BLOCKED4("0.0.0.0");
	BLOCKED4("0.255.255.255");
	BLOCKED4("10.0.0.1");
	BLOCKED4("10.255.255.255");
	BLOCKED4("100.64.0.0");
	BLOCKED4("100.127.255.255");
	BLOCKED4("127.0.0.1");
	BLOCKED4("127.255.255.255");
	BLOCKED4("169.254.0.1");
	BLOCKED4("169.254.169.254");
	BLOCKED4("172.16.0.0");
	BLOCKED4("172.31.255.255");
	BLOCKED4("192.0.0.8");
	BLOCKED4("192.0.0.0");
	BLOCKED4("192.0.0.255");
	BLOCKED4("192.0.2.0");
	BLOCKED4("192.0.2.255");
	BLOCKED4("192.31.196.1");
	BLOCKED4("192.52.193.1");
	BLOCKED4("192.88.99.1");
	BLOCKED4("192.88.99.255");
	BLOCKED4("192.175.48.1");
	BLOCKED4("198.51.100.1");
	BLOCKED4("203.0.113.1");
	BLOCKED4("203.0.113.255");
	BLOCKED4("192.168.0.1");
	BLOCKED4("192.168.255.255");
	BLOCKED4("198.18.0.0");
	BLOCKED4("198.19.255.255");
	BLOCKED4("224.0.0.1");
	BLOCKED4("239.255.255.255");
	BLOCKED4("240.0.0.0");
	BLOCKED4("255.255.255.255");

	ALLOWED4("1.1.1.1");
	ALLOWED4("8.8.8.8");
	ALLOWED4("9.255.255.255");
	ALLOWED4("11.0.0.0");
	ALLOWED4("100.63.255.255");
	ALLOWED4("100.128.0.0");
	ALLOWED4("126.255.255.255");
	ALLOWED4("128.0.0.0");
	ALLOWED4("169.253.255.255");
	ALLOWED4("169.255.0.0");
	ALLOWED4("172.15.255.255");
	ALLOWED4("172.32.0.0");
	ALLOWED4("192.0.1.0");
	ALLOWED4("192.0.1.255");
	ALLOWED4("192.0.3.0");
	ALLOWED4("192.31.195.255");
	ALLOWED4("192.31.197.0");
	ALLOWED4("192.52.192.255");
	ALLOWED4("192.52.194.0");
	ALLOWED4("192.88.98.255");
	ALLOWED4("192.88.100.0");
	ALLOWED4("192.175.47.255");
	ALLOWED4("192.175.49.0");
	ALLOWED4("198.51.99.255");
	ALLOWED4("198.51.101.0");
	ALLOWED4("203.0.112.255");
	ALLOWED4("203.0.114.0");
	ALLOWED4("192.167.255.255");
	ALLOWED4("192.169.0.0");
	ALLOWED4("198.17.255.255");
	ALLOWED4("198.20.0.0");
	ALLOWED4("223.255.255.255");

	BLOCKED6("::");
	BLOCKED6("::1");
	BLOCKED6("fc00::");
	BLOCKED6("fd00::1");
	BLOCKED6("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
	BLOCKED6("fe80::1");
	BLOCKED6("febf:ffff::1");
	BLOCKED6("fec0::1");
	BLOCKED6("ff00::");
	BLOCKED6("ff02::1");
	BLOCKED6("::ffff:10.0.0.1");
	BLOCKED6("::ffff:127.0.0.1");
	BLOCKED6("::ffff:169.254.169.254");
	BLOCKED6("::ffff:100.64.0.1");
	BLOCKED6("::127.0.0.1");
	BLOCKED6("::10.0.0.1");
	BLOCKED6("64:ff9b::10.0.0.1");
	BLOCKED6("64:ff9b::7f00:1");
	BLOCKED6("64:ff9b::a9fe:a9fe");

	ALLOWED6("2001:4860:4860::8888");
	ALLOWED6("2606:4700:4700::1111");
	ALLOWED6("::ffff:8.8.8.8");
	ALLOWED6("::8.8.8.8");
	ALLOWED6("64:ff9b::8.8.8.8");
	ALLOWED6("::ffff:0:8.8.8.8");
	ALLOWED6("64:ff9b:1::8.8.8.8");
	ALLOWED6("2002:808:808::");
	ALLOWED6("2002:808:808:1234::1");
	ALLOWED6("2001:200::1");
	ALLOWED6("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff");
	ALLOWED6("2001:db9::");
	ALLOWED6("2620:4f:7fff:ffff::1");
	ALLOWED6("2620:4f:8001::");
	ALLOWED6("3ffe:ffff::1");
	ALLOWED6("3fff:1000::");
	ALLOWED6("2000::1");
	ALLOWED6("3fff:ffff::1");

	/* The IPv6 special-purpose registry, each block at both ends. */
	BLOCKED6("100::");
	BLOCKED6("100::ffff:ffff:ffff:ffff");
	BLOCKED6("100:0:0:1::");
	BLOCKED6("100:0:0:1:ffff:ffff:ffff:ffff");
	BLOCKED6("2001::");
	BLOCKED6("2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff");
	BLOCKED6("2001:1::1");
	BLOCKED6("2001:1::2");
	BLOCKED6("2001:1::3");
	BLOCKED6("2001:2::1");
	BLOCKED6("2001:3::1");
	BLOCKED6("2001:4:112::1");
	BLOCKED6("2001:10::1");
	BLOCKED6("2001:20::1");
	BLOCKED6("2001:30::1");
	BLOCKED6("2001:db8::");
	BLOCKED6("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff");
	BLOCKED6("2620:4f:8000::");
	BLOCKED6("2620:4f:8000:ffff:ffff:ffff:ffff:ffff");
	BLOCKED6("3fff::");
	BLOCKED6("3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff");
	BLOCKED6("5f00::1");
	BLOCKED6("5f00:ffff::1");
	BLOCKED6("fbff:ffff::1");
	BLOCKED6("4000::1");
	BLOCKED6("1fff:ffff::1");
	BLOCKED6("e000::1");
	BLOCKED6("::2");
	BLOCKED6("::0.0.0.255");
	/* Teredo: refused with any client address. */
	BLOCKED6("2001:0:4136:e378:8000:63bf:80ff:fffe");
	BLOCKED6("2001:0:4136:e378:8000:63bf:f7f7:f7f7");
	/* Translation prefixes decoded. */
	BLOCKED6("::ffff:0:127.0.0.1");
	BLOCKED6("::ffff:0:10.0.0.1");
	BLOCKED6("::ffff:0:0.0.0.0");
	BLOCKED6("::ffff:0:192.88.99.1");
	BLOCKED6("64:ff9b::192.88.99.1");
	BLOCKED6("64:ff9b::192.0.2.1");
	BLOCKED6("64:ff9b:1::7f00:1");
	BLOCKED6("64:ff9b:1::a9fe:a9fe");
	BLOCKED6("64:ff9b:1:ffff::7f00:1");
	BLOCKED6("64:ff9b:1:7f00:0:100::");   /* /48 */
	BLOCKED6("64:ff9b:1:a:0:0:1::");      /* /48: 10.0.0.0 */
	BLOCKED6("64:ff9b:1:a9:fe:a9fe::");   /* /56: 169.254.169.254 */
	BLOCKED6("64:ff9b:1:0:7f:0:1:0");     /* /64: 127.0.0.1 */
	BLOCKED6("64:ff9b:1:0:ff00::7f00:1"); /* u octet not zero: no layout fits */
	/* The /48 layout of 8.8.8.8 also reads as 0.0.0.0 in the /96 layout:
	 * which one the network uses is unknown, so it is refused. */
	BLOCKED6("64:ff9b:1:808:8:800::");
	BLOCKED6("2002:7f00:1::");
	BLOCKED6("2002:7f00:1:ffff:ffff:ffff:ffff:ffff");
	BLOCKED6("2002:a00:1::");
	BLOCKED6("2002:c058:6301::");
	BLOCKED6("2002::");
	BLOCKED6("2002:e000:1::");
	/* 64:ff9b::/32 outside the /96 is no translation form: reserved space. */
	BLOCKED6("64:ff9b:0:0:1::808:808");

	/* The same decision from curl's text form of a peer. */
	CHECK_EQ_INT(urlguard_ip_blocked("127.0.0.1"), 1);
	CHECK_EQ_INT(urlguard_ip_blocked("::1"), 1);
	CHECK_EQ_INT(urlguard_ip_blocked("::ffff:127.0.0.1"), 1);
	CHECK_EQ_INT(urlguard_ip_blocked("64:ff9b:1::7f00:1"), 1);
	CHECK_EQ_INT(urlguard_ip_blocked("2002:7f00:1::"), 1);
	CHECK_EQ_INT(urlguard_ip_blocked("100::1"), 1);
	CHECK_EQ_INT(urlguard_ip_blocked("192.88.99.1"), 1);
	CHECK_EQ_INT(urlguard_ip_blocked("8.8.8.8"), 0);
	CHECK_EQ_INT(urlguard_ip_blocked("2606:4700:4700::1111"), 0);
	CHECK_EQ_INT(urlguard_ip_blocked(""), 1);
	CHECK_EQ_INT(urlguard_ip_blocked("localhost"), 1);
	CHECK_EQ_INT(urlguard_ip_blocked("127.1"), 1);
	CHECK_EQ_INT(urlguard_ip_blocked("fe80::1%eth0"), 1);
	CHECK_EQ_INT(urlguard_ip_blocked(NULL), 1);

	/* Other families, short lengths and NULL are blocked. */
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	CHECK_EQ_INT(urlguard_addr_blocked((const struct sockaddr *)&sun, sizeof sun), 1);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_UNSPEC;
	CHECK_EQ_INT(urlguard_addr_blocked((const struct sockaddr *)&sin, sizeof sin), 1);
	sin.sin_family = AF_INET;
	inet_pton(AF_INET, "8.8.8.8", &sin.sin_addr);
	CHECK_EQ_INT(urlguard_addr_blocked((const struct sockaddr *)&sin, sizeof sin), 0);
	CHECK_EQ_INT(urlguard_addr_blocked((const struct sockaddr *)&sin, sizeof sin - 1), 1);
	CHECK_EQ_INT(urlguard_addr_blocked(NULL, 0), 1);
}

/* Acceptances are remembered per policy: a URL accepted under one policy is
 * judged again under another, a refusal is made again with its reason, and
 * the verdicts stay the same past the remembered few. */
static void test_remembered(void)
{
	for (int round = 0; round < 3; round++) {
		OK(open_, "https://127.0.0.1/hook");
		REFUSED(strict, "https://127.0.0.1/hook");
		CHECK(err[0] != '\0');
		OK(lax, "http://127.0.0.1/hook");
		REFUSED(open_, "http://127.0.0.1/hook");
		CHECK(strstr(err, "https") != NULL);
		OK(strict, "https://example.com/hook");
		CHECK(err[0] == '\0');
	}
	char url[64];
	for (int i = 0; i < 40; i++) {
		snprintf(url, sizeof url, "https://h%d.example.com/hook", i % 20);
		OK(strict, url);
		snprintf(url, sizeof url, "https://10.0.0.%d/hook", i % 20);
		REFUSED(strict, url);
		OK(open_, url);
	}
	/* Long URLs are judged each time, the same way. */
	static char big[600];
	snprintf(big, sizeof big, "https://example.com/%0500d", 0);
	OK(strict, big);
	OK(strict, big);
	snprintf(big, sizeof big, "https://192.168.1.1/%0500d", 0);
	REFUSED(strict, big);
	REFUSED(strict, big);
}

int main(void)
{
	test_public();
	test_ipv4_spellings();
	test_ipv6_spellings();
	test_names();
	test_shape();
	test_schemes();
	test_addr();
	test_remembered();
	return check_done();
}
