/*
 * sign.c: encodings, digests, MACs and signatures on OpenSSL 3's EVP API.
 */
#include "sign.h"

#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

/* Longest decoded webhook key sign_webhook accepts (real ones are 24-64). */
#define WEBHOOK_KEY_MAX 512
#define CALLBACK_TOKEN_HEX 32
#define RANDOM_ID_CHARS 26

/* ---------- pre-keyed HMAC-SHA256 contexts, per thread ---------- */

/*
 * A one-shot HMAC (HMAC(), or EVP_MAC_fetch + init per message) costs
 * OpenSSL 3 a digest fetch, a context and the key schedule every time: 20 to
 * 35 thousand instructions for a 32-byte message. The same few keys sign
 * everything on a thread (the server secret and its previous ones, the
 * customers' webhook secrets), so each thread keeps up to MAC_SLOTS contexts
 * keyed once, least recently used replaced; a message then costs an
 * EVP_MAC_init with no key (back to the keyed state), the updates and the
 * final. The cache owns copies of its keys (wiped when a slot is replaced or
 * the thread ends); the thread's cache is freed by a thread-exit destructor.
 */
#define MAC_SLOTS 8
#define MAC_KEY_MAX 512

struct mac_slot {
	EVP_MAC_CTX *ctx; /* NULL: free slot */
	size_t keylen;
	unsigned long used;
	unsigned char key[MAC_KEY_MAX];
};

struct mac_cache {
	EVP_MAC *mac;
	unsigned long clock;
	struct mac_slot slot[MAC_SLOTS];
};

static pthread_key_t mac_key;
static pthread_once_t mac_once = PTHREAD_ONCE_INIT;
static int mac_key_ok;

static void mac_cache_free(void *p)
{
	struct mac_cache *c = p;
	if (!c)
		return;
	for (int i = 0; i < MAC_SLOTS; i++)
		EVP_MAC_CTX_free(c->slot[i].ctx);
	EVP_MAC_free(c->mac);
	OPENSSL_cleanse(c, sizeof *c);
	free(c);
}

static void mac_key_init(void)
{
	mac_key_ok = pthread_key_create(&mac_key, mac_cache_free) == 0;
}

/*
 * The calling thread's context keyed with key, reset to its keyed state and
 * ready for EVP_MAC_update; borrowed (the thread's cache owns it) until the
 * thread's next call here. NULL on failure (no cache: the caller does a
 * one-shot MAC).
 */
static EVP_MAC_CTX *mac_keyed(const void *key, size_t keylen)
{
	struct mac_cache *c;
	struct mac_slot *s = NULL, *lru = NULL;
	OSSL_PARAM params[2];

	if (keylen > MAC_KEY_MAX || pthread_once(&mac_once, mac_key_init) != 0 || !mac_key_ok)
		return NULL;
	c = pthread_getspecific(mac_key);
	if (!c) {
		c = calloc(1, sizeof *c);
		if (!c)
			return NULL;
		c->mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
		if (!c->mac || pthread_setspecific(mac_key, c) != 0) {
			mac_cache_free(c);
			return NULL;
		}
	}
	for (int i = 0; i < MAC_SLOTS && !s; i++) {
		struct mac_slot *t = &c->slot[i];
		if (t->ctx && t->keylen == keylen && CRYPTO_memcmp(t->key, key, keylen) == 0)
			s = t;
		else if (!lru || !t->ctx || (lru->ctx && t->used < lru->used))
			lru = t;
	}
	if (s) {
		if (!EVP_MAC_init(s->ctx, NULL, 0, NULL))
			return NULL;
		s->used = ++c->clock;
		return s->ctx;
	}
	s = lru;
	EVP_MAC_CTX_free(s->ctx);
	OPENSSL_cleanse(s->key, sizeof s->key);
	s->ctx = EVP_MAC_CTX_new(c->mac);
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	/* OpenSSL 3 refuses a NULL key, but an empty one is valid HMAC. */
	if (!s->ctx || !EVP_MAC_init(s->ctx, keylen > 0 ? key : (const void *)"", keylen, params)) {
		EVP_MAC_CTX_free(s->ctx);
		s->ctx = NULL;
		return NULL;
	}
	if (keylen > 0)
		memcpy(s->key, key, keylen);
	s->keylen = keylen;
	s->used = ++c->clock;
	return s->ctx;
}

/* The MAC of the n parts under key into out (SIGN_SHA256_LEN bytes), through
 * the thread's keyed context. 0, or -1 (out unspecified). */
static int mac_parts(const void *key, size_t keylen, const void *const *part,
		     const size_t *len, int n, unsigned char out[SIGN_SHA256_LEN])
{
	EVP_MAC_CTX *ctx = mac_keyed(key, keylen);
	size_t outlen = 0;
	if (!ctx)
		return -1;
	for (int i = 0; i < n; i++)
		if (len[i] > 0 && !EVP_MAC_update(ctx, part[i], len[i]))
			return -1;
	if (!EVP_MAC_final(ctx, out, &outlen, SIGN_SHA256_LEN) || outlen != SIGN_SHA256_LEN)
		return -1;
	return 0;
}

static const char b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char hex_digits[] = "0123456789abcdef";
static const char crockford32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

int sign_base64_encode(const void *in, size_t n, char *out, size_t outlen)
{
	const unsigned char *p = in;
	size_t need, i, o = 0;

	if (n > (size_t)INT_MAX / 4 * 3 - 3)
		return -1;
	need = (n + 2) / 3 * 4;
	if (out == NULL || outlen < need + 1 || (n > 0 && in == NULL))
		return -1;
	for (i = 0; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		out[o++] = b64_alphabet[v >> 18];
		out[o++] = b64_alphabet[(v >> 12) & 63];
		out[o++] = b64_alphabet[(v >> 6) & 63];
		out[o++] = b64_alphabet[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)p[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)p[i + 1] << 8;
		out[o++] = b64_alphabet[v >> 18];
		out[o++] = b64_alphabet[(v >> 12) & 63];
		out[o++] = i + 1 < n ? b64_alphabet[(v >> 6) & 63] : '=';
		out[o++] = '=';
	}
	out[o] = '\0';
	return (int)o;
}

static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+' || c == '-')
		return 62;
	if (c == '/' || c == '_')
		return 63;
	return -1;
}

/*
 * Accepts both alphabets and missing padding. When padding is present the
 * input must be a whole number of quads with at most two '=' at the end.
 * Unused trailing bits are ignored, as most encoders and decoders do.
 */
int sign_base64_decode(const char *in, size_t n, void *out, size_t outlen)
{
	unsigned char *q = out;
	size_t len = n, need, i, o = 0;
	uint32_t acc = 0;
	int bits = 0;

	if (n > 0 && in == NULL)
		return -1;
	if (n > (size_t)INT_MAX)
		return -1;
	if (len > 0 && in[len - 1] == '=') {
		if (n % 4 != 0)
			return -1;
		len--;
		if (len > 0 && in[len - 1] == '=')
			len--;
	}
	if (len % 4 == 1)
		return -1;
	need = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0);
	if (need > 0 && (out == NULL || outlen < need))
		return -1;
	for (i = 0; i < len; i++) {
		int v = b64_value((unsigned char)in[i]);
		if (v < 0)
			return -1;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			q[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	return (int)o;
}

int sign_hex_encode(const void *in, size_t n, char *out, size_t outlen)
{
	const unsigned char *p = in;
	size_t i;

	if (n > (size_t)INT_MAX / 2 || out == NULL || outlen < 2 * n + 1 ||
	    (n > 0 && in == NULL))
		return -1;
	for (i = 0; i < n; i++) {
		out[2 * i] = hex_digits[p[i] >> 4];
		out[2 * i + 1] = hex_digits[p[i] & 15];
	}
	out[2 * n] = '\0';
	return (int)(2 * n);
}

static int hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int sign_hex_decode(const char *in, size_t n, void *out, size_t outlen)
{
	unsigned char *q = out;
	size_t i;

	if (n % 2 != 0 || n / 2 > (size_t)INT_MAX || (n > 0 && in == NULL))
		return -1;
	if (n > 0 && (out == NULL || outlen < n / 2))
		return -1;
	for (i = 0; i < n; i += 2) {
		int hi = hex_value((unsigned char)in[i]);
		int lo = hex_value((unsigned char)in[i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		q[i / 2] = (unsigned char)(hi << 4 | lo);
	}
	return (int)(n / 2);
}

int sign_sha256(const void *data, size_t n, unsigned char out[SIGN_SHA256_LEN])
{
	if (n > 0 && data == NULL)
		return -1;
	if (!EVP_Digest(n > 0 ? data : "", n, out, NULL, EVP_sha256(), NULL))
		return -1;
	return SIGN_SHA256_LEN;
}

int sign_hmac_sha256(const void *key, size_t keylen, const void *data, size_t n,
		     unsigned char out[SIGN_SHA256_LEN])
{
	unsigned int len = 0;

	if (keylen > (size_t)INT_MAX || (keylen > 0 && key == NULL) ||
	    (n > 0 && data == NULL))
		return -1;
	{
		const void *part[1] = { data };
		size_t len1[1] = { n };
		if (mac_parts(key, keylen, part, len1, 1, out) == 0)
			return SIGN_SHA256_LEN;
	}
	/* No keyed context (a key over MAC_KEY_MAX, or out of memory): one-shot.
	 * OpenSSL 3 refuses a NULL key, but an empty one is valid HMAC. */
	if (HMAC(EVP_sha256(), keylen > 0 ? key : "", (int)keylen,
		 n > 0 ? data : (const void *)"", n, out, &len) == NULL ||
	    len != SIGN_SHA256_LEN)
		return -1;
	return SIGN_SHA256_LEN;
}

/*
 * A public key that is not 32 bytes is the caller's error (-1); a signature
 * that is not 64 bytes, or does not verify, is simply invalid (0). Clears the
 * OpenSSL error queue so a failed verification leaves nothing behind.
 */
/*
 * Ed25519 through libsodium: on this path (every fal callback) it verifies
 * about 2.5x faster than OpenSSL 3.0's implementation, and it also refuses
 * non-canonical signatures and small-order keys.
 */
int sign_ed25519_verify(const unsigned char *pub, size_t publen,
			const void *msg, size_t msglen,
			const unsigned char *sig, size_t siglen)
{
	if (pub == NULL || publen != 32 || (msglen > 0 && msg == NULL))
		return -1;
	if (sig == NULL || siglen != 64)
		return 0;
	if (sodium_init() < 0) /* idempotent and thread-safe; cheap once done */
		return -1;
	return crypto_sign_verify_detached(sig, msglen > 0 ? msg : (const void *)"",
					   msglen, pub) == 0;
}

int sign_equal(const void *a, size_t alen, const void *b, size_t blen)
{
	if (alen != blen)
		return 0;
	if (alen == 0)
		return 1;
	if (a == NULL || b == NULL)
		return 0;
	return CRYPTO_memcmp(a, b, alen) == 0;
}

int sign_webhook_key(const char *secret, unsigned char *key, size_t keylen)
{
	size_t n;

	if (secret == NULL)
		return -1;
	n = strlen(secret);
	if (strncmp(secret, "whsec_", 6) == 0)
		return sign_base64_decode(secret + 6, n - 6, key, keylen);
	if (n > (size_t)INT_MAX || (n > 0 && (key == NULL || keylen < n)))
		return -1;
	if (n > 0)
		memcpy(key, secret, n);
	return (int)n;
}

int sign_webhook_secret_check(const char *secret, char *err, size_t errlen)
{
	unsigned char key[WEBHOOK_KEY_MAX];
	const char *why = NULL;
	int n;

	if (secret == NULL || *secret == '\0') {
		why = "must not be empty";
		n = -1;
	} else {
		n = sign_webhook_key(secret, key, sizeof key);
		OPENSSL_cleanse(key, sizeof key);
		if (strncmp(secret, "whsec_", 6) == 0) {
			if (n < 0 && strlen(secret) - 6 > (size_t)WEBHOOK_KEY_MAX / 3 * 4)
				why = "whsec_ key longer than 512 bytes";
			else if (n < 0)
				why = "not valid base64 after whsec_";
			else if (n < SIGN_WEBHOOK_KEY_MIN)
				why = "whsec_ key shorter than 24 bytes (decoded)";
		} else if (n < 0) {
			why = "longer than 512 bytes";
		}
	}
	if (why != NULL) {
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "%s", why);
		return -1;
	}
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	return n;
}

/* mac_parts without the cache: a context fetched, keyed and freed. */
static int mac_oneshot(const void *key, size_t keylen, const void *const *part,
		       const size_t *len, int n, unsigned char out[SIGN_SHA256_LEN])
{
	EVP_MAC *hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC_CTX *ctx = hmac != NULL ? EVP_MAC_CTX_new(hmac) : NULL;
	OSSL_PARAM params[2];
	size_t outlen = 0;
	int rc = -1;

	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	if (ctx == NULL || !EVP_MAC_init(ctx, keylen > 0 ? key : (const void *)"", keylen, params))
		goto out;
	for (int i = 0; i < n; i++)
		if (len[i] > 0 && !EVP_MAC_update(ctx, part[i], len[i]))
			goto out;
	if (EVP_MAC_final(ctx, out, &outlen, SIGN_SHA256_LEN) && outlen == SIGN_SHA256_LEN)
		rc = 0;
out:
	EVP_MAC_CTX_free(ctx);
	EVP_MAC_free(hmac);
	return rc;
}

/*
 * Streams "id.timestamp.body" through one HMAC so the body is never copied.
 * The decoded key lives on the stack (at most WEBHOOK_KEY_MAX bytes, longer
 * secrets are refused) and is wiped before returning; the thread's keyed
 * context (above) keeps its own copy.
 */
int sign_webhook(const char *secret, const char *msg_id, int64_t timestamp,
		 const void *body, size_t bodylen, char *out, size_t outlen)
{
	unsigned char key[WEBHOOK_KEY_MAX];
	unsigned char mac[SIGN_SHA256_LEN];
	char ts[32];
	int keylen, tslen, n, rc = -1;

	if (msg_id == NULL || (bodylen > 0 && body == NULL) || out == NULL ||
	    outlen < 64)
		return -1;
	keylen = sign_webhook_key(secret, key, sizeof key);
	if (keylen < 0)
		goto out;
	tslen = snprintf(ts, sizeof ts, "%" PRId64, timestamp);
	{
		char head[256 + 32];
		size_t idlen = strlen(msg_id);
		const void *part[5] = { msg_id, ".", ts, ".", body };
		size_t len[5] = { idlen, 1, (size_t)tslen, 1, bodylen };
		int nparts = 5;
		if (idlen <= 256) { /* "id.timestamp." as one update (ids are short) */
			memcpy(head, msg_id, idlen);
			head[idlen] = '.';
			memcpy(head + idlen + 1, ts, (size_t)tslen);
			head[idlen + 1 + (size_t)tslen] = '.';
			part[0] = head;
			len[0] = idlen + (size_t)tslen + 2;
			part[1] = body;
			len[1] = bodylen;
			nparts = 2;
		}
		if (mac_parts(key, (size_t)keylen, part, len, nparts, mac) < 0 &&
		    mac_oneshot(key, (size_t)keylen, part, len, nparts, mac) < 0)
			goto out;
	}
	memcpy(out, "v1,", 3);
	n = sign_base64_encode(mac, sizeof mac, out + 3, outlen - 3);
	if (n < 0)
		goto out;
	rc = 3 + n;
out:
	OPENSSL_cleanse(key, sizeof key);
	OPENSSL_cleanse(mac, sizeof mac);
	return rc;
}

/*
 * An empty server secret is refused: a token under it would be forgeable by
 * anyone.
 */
int sign_callback_token(const char *server_secret, const char *job_id,
			char *out, size_t outlen)
{
	unsigned char mac[SIGN_SHA256_LEN];
	char hex[2 * SIGN_SHA256_LEN + 1];

	if (server_secret == NULL || server_secret[0] == '\0' || job_id == NULL ||
	    out == NULL || outlen < CALLBACK_TOKEN_HEX + 1)
		return -1;
	if (sign_hmac_sha256(server_secret, strlen(server_secret), job_id,
			     strlen(job_id), mac) < 0)
		return -1;
	sign_hex_encode(mac, sizeof mac, hex, sizeof hex);
	memcpy(out, hex, CALLBACK_TOKEN_HEX);
	out[CALLBACK_TOKEN_HEX] = '\0';
	OPENSSL_cleanse(mac, sizeof mac);
	return CALLBACK_TOKEN_HEX;
}

int sign_callback_token_ok(const char *server_secret, const char *job_id,
			   const char *token)
{
	char want[CALLBACK_TOKEN_HEX + 1];
	int ok;

	if (token == NULL ||
	    sign_callback_token(server_secret, job_id, want, sizeof want) < 0)
		return 0;
	ok = sign_equal(want, CALLBACK_TOKEN_HEX, token,
			strnlen(token, CALLBACK_TOKEN_HEX + 1));
	OPENSSL_cleanse(want, sizeof want);
	return ok;
}

int sign_random(void *buf, size_t n)
{
	unsigned char *p = buf;

	if (n > 0 && buf == NULL)
		return -1;
	while (n > 0) {
		int chunk = n > (size_t)INT_MAX ? INT_MAX : (int)n;
		if (RAND_bytes(p, chunk) != 1)
			return -1;
		p += chunk;
		n -= (size_t)chunk;
	}
	return 0;
}

/*
 * ULID layout: 10 characters of the 48-bit millisecond wall clock (big
 * endian, so ids sort by creation time across calls) and 16 characters of
 * 80 random bits. Order within one millisecond is random.
 */
int sign_random_id(const char *prefix, char *out, size_t outlen)
{
	unsigned char rnd[10];
	struct timespec now;
	uint64_t ms;
	size_t plen = prefix != NULL ? strlen(prefix) : 0;
	char *p;
	int i;

	if (out == NULL || plen > (size_t)INT_MAX - RANDOM_ID_CHARS - 1 ||
	    outlen < plen + RANDOM_ID_CHARS + 1)
		return -1;
	if (clock_gettime(CLOCK_REALTIME, &now) != 0 || sign_random(rnd, sizeof rnd) < 0)
		return -1;
	ms = (uint64_t)now.tv_sec * 1000u + (uint64_t)now.tv_nsec / 1000000u;
	if (plen > 0)
		memcpy(out, prefix, plen);
	p = out + plen;
	for (i = 9; i >= 0; i--) {
		p[i] = crockford32[ms & 31];
		ms >>= 5;
	}
	for (i = 0; i < 2; i++) {
		const unsigned char *r = rnd + 5 * i;
		uint64_t v = (uint64_t)r[0] << 32 | (uint64_t)r[1] << 24 |
			     (uint64_t)r[2] << 16 | (uint64_t)r[3] << 8 | r[4];
		int j;
		for (j = 7; j >= 0; j--) {
			p[10 + 8 * i + j] = crockford32[v & 31];
			v >>= 5;
		}
	}
	p[RANDOM_ID_CHARS] = '\0';
	OPENSSL_cleanse(rnd, sizeof rnd);
	return (int)(plen + RANDOM_ID_CHARS);
}
