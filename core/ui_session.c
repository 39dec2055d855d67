/*
 * ui_session.c: stateless dashboard sessions and their CSRF tokens (see
 * ui_session.h for the format).
 */
#include "ui_session.h"

#include "sign.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAC_HEX 32 /* characters of the MAC kept in a token */

int ui_session_key(const char *admin_key, unsigned char key[UI_SESSION_KEY_LEN])
{
	static const char label[] = "genrelay dashboard session v1";
	if (!admin_key || !*admin_key)
		return -1;
	return sign_hmac_sha256(admin_key, strlen(admin_key), label, sizeof label - 1, key) ==
	       UI_SESSION_KEY_LEN ? 0 : -1;
}

/* Lower-case hex of the first MAC_HEX/2 bytes of HMAC(key, label|data). */
static int mac_hex(const unsigned char key[UI_SESSION_KEY_LEN], char label,
		   const char *data, size_t n, char out[MAC_HEX + 1])
{
	unsigned char mac[SIGN_SHA256_LEN];
	char buf[UI_SESSION_TOKEN_MAX + 2];
	if (n + 1 >= sizeof buf)
		return -1;
	buf[0] = label;
	memcpy(buf + 1, data, n);
	if (sign_hmac_sha256(key, UI_SESSION_KEY_LEN, buf, n + 1, mac) != SIGN_SHA256_LEN)
		return -1;
	return sign_hex_encode(mac, MAC_HEX / 2, out, MAC_HEX + 1) == MAC_HEX ? 0 : -1;
}

int ui_session_issue(const unsigned char key[UI_SESSION_KEY_LEN], int64_t expires_s,
		     char *out, size_t outlen)
{
	unsigned char nonce[12];
	char nhex[25], head[64], mac[MAC_HEX + 1];
	if (RAND_bytes(nonce, sizeof nonce) != 1 ||
	    sign_hex_encode(nonce, sizeof nonce, nhex, sizeof nhex) < 0)
		return -1;
	int hn = snprintf(head, sizeof head, "%lld.%s", (long long)expires_s, nhex);
	if (hn < 0 || (size_t)hn >= sizeof head || mac_hex(key, 's', head, (size_t)hn, mac) < 0)
		return -1;
	int n = snprintf(out, outlen, "%s.%s", head, mac);
	return n < 0 || (size_t)n >= outlen ? -1 : n;
}

int ui_session_valid(const unsigned char key[UI_SESSION_KEY_LEN], const char *token,
		     int64_t now_s)
{
	char mac[MAC_HEX + 1];
	if (!token)
		return 0;
	size_t n = strlen(token);
	if (n < MAC_HEX + 4 || n >= UI_SESSION_TOKEN_MAX)
		return 0;
	const char *dot = token + n - MAC_HEX - 1;
	if (*dot != '.' || mac_hex(key, 's', token, (size_t)(dot - token), mac) < 0)
		return 0;
	if (!sign_equal(mac, MAC_HEX, dot + 1, MAC_HEX))
		return 0;
	char *end;
	long long exp = strtoll(token, &end, 10);
	return *end == '.' && exp > now_s;
}

int ui_csrf_token(const unsigned char key[UI_SESSION_KEY_LEN], const char *session,
		  char *out, size_t outlen)
{
	char mac[MAC_HEX + 1];
	if (!session || outlen < sizeof mac || mac_hex(key, 'c', session, strlen(session), mac) < 0)
		return -1;
	memcpy(out, mac, sizeof mac);
	return MAC_HEX;
}

int ui_csrf_valid(const unsigned char key[UI_SESSION_KEY_LEN], const char *session,
		  const char *csrf)
{
	char want[MAC_HEX + 1];
	if (!csrf || ui_csrf_token(key, session, want, sizeof want) < 0)
		return 0;
	return sign_equal(want, MAC_HEX, csrf, strlen(csrf));
}

int ui_cookie_get(const char *header, const char *name, char *out, size_t outlen)
{
	size_t nl = strlen(name);
	const char *p = header;
	while (p && *p) {
		while (*p == ' ' || *p == ';')
			p++;
		const char *end = strchr(p, ';');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (len > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
			size_t vl = len - nl - 1;
			if (vl + 1 > outlen)
				return -1;
			memcpy(out, p + nl + 1, vl);
			out[vl] = '\0';
			return (int)vl;
		}
		p = end;
	}
	return -1;
}
