/*
 * test_sign.c: encodings, digests, MACs, signatures and ids (core/sign.c).
 */
#include "sign.h"
#include "check.h"

#include <openssl/hmac.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static char hexbuf[1024];

/* Hex of a digest, for readable comparisons against published vectors. */
static const char *hex(const unsigned char *p, size_t n)
{
	if (sign_hex_encode(p, n, hexbuf, sizeof hexbuf) < 0)
		return "(encode failed)";
	return hexbuf;
}

static size_t unhex(const char *s, unsigned char *out, size_t outlen)
{
	int n = sign_hex_decode(s, strlen(s), out, outlen);
	return n < 0 ? 0 : (size_t)n;
}

static void test_base64(void)
{
	static const char *const plain[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar" };
	static const char *const coded[] = { "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==",
					     "Zm9vYmE=", "Zm9vYmFy" };
	static const unsigned char bin[] = { 0xfb, 0xff, 0x00, 0x3e, 0x80 };
	unsigned char dec[64];
	char enc[64];
	size_t i;

	for (i = 0; i < sizeof plain / sizeof plain[0]; i++) {
		size_t n = strlen(plain[i]);
		CHECK_EQ_INT(sign_base64_encode(plain[i], n, enc, sizeof enc), strlen(coded[i]));
		CHECK_STR_EQ(enc, coded[i]);
		CHECK_EQ_INT(sign_base64_decode(coded[i], strlen(coded[i]), dec, sizeof dec), n);
		CHECK(memcmp(dec, plain[i], n) == 0);
	}
	/* Padding is optional. */
	CHECK_EQ_INT(sign_base64_decode("Zg", 2, dec, sizeof dec), 1);
	CHECK(dec[0] == 'f');
	CHECK_EQ_INT(sign_base64_decode("Zm9vYmE", 7, dec, sizeof dec), 5);
	CHECK(memcmp(dec, "fooba", 5) == 0);

	/* Binary round trip, and the URL-safe alphabet. */
	CHECK_EQ_INT(sign_base64_encode(bin, sizeof bin, enc, sizeof enc), 8);
	CHECK_STR_EQ(enc, "+/8APoA=");
	CHECK_EQ_INT(sign_base64_decode("+/8APoA=", 8, dec, sizeof dec), 5);
	CHECK(memcmp(dec, bin, 5) == 0);
	CHECK_EQ_INT(sign_base64_decode("-_8APoA", 7, dec, sizeof dec), 5);
	CHECK(memcmp(dec, bin, 5) == 0);

	/* Bad input. */
	CHECK(sign_base64_decode("Zm9v!", 5, dec, sizeof dec) < 0);
	CHECK(sign_base64_decode("Zm9 v", 5, dec, sizeof dec) < 0);
	CHECK(sign_base64_decode("Zm9v\n", 5, dec, sizeof dec) < 0);
	CHECK(sign_base64_decode("Z", 1, dec, sizeof dec) < 0);
	CHECK(sign_base64_decode("Zm9vY", 5, dec, sizeof dec) < 0);
	CHECK(sign_base64_decode("Zg=", 3, dec, sizeof dec) < 0);
	CHECK(sign_base64_decode("Zg===", 5, dec, sizeof dec) < 0);
	CHECK(sign_base64_decode("Z===", 4, dec, sizeof dec) < 0);
	CHECK(sign_base64_decode("====", 4, dec, sizeof dec) < 0);
	CHECK(sign_base64_decode("=Zg=", 4, dec, sizeof dec) < 0);
	CHECK(sign_base64_decode("Zg==Zg==", 8, dec, sizeof dec) < 0);
	CHECK(sign_base64_decode("Zm9v\0mFy", 8, dec, sizeof dec) < 0);

	/* Buffers too small. */
	CHECK(sign_base64_encode("foo", 3, enc, 4) < 0);
	CHECK_EQ_INT(sign_base64_encode("foo", 3, enc, 5), 4);
	CHECK(sign_base64_decode("Zm9vYmFy", 8, dec, 5) < 0);
	CHECK_EQ_INT(sign_base64_decode("Zm9vYmFy", 8, dec, 6), 6);
	CHECK_EQ_INT(sign_base64_decode("", 0, NULL, 0), 0);
}

static void test_hex(void)
{
	static const unsigned char bin[] = { 0x00, 0x01, 0xab, 0xcd, 0xef, 0xff };
	unsigned char dec[16];
	char enc[16];

	CHECK_EQ_INT(sign_hex_encode(bin, sizeof bin, enc, sizeof enc), 12);
	CHECK_STR_EQ(enc, "0001abcdefff");
	CHECK_EQ_INT(sign_hex_decode(enc, 12, dec, sizeof dec), 6);
	CHECK(memcmp(dec, bin, 6) == 0);
	CHECK_EQ_INT(sign_hex_decode("0001ABCDEFFF", 12, dec, sizeof dec), 6);
	CHECK(memcmp(dec, bin, 6) == 0);
	CHECK_EQ_INT(sign_hex_encode("", 0, enc, 1), 0);
	CHECK_STR_EQ(enc, "");

	CHECK(sign_hex_decode("abc", 3, dec, sizeof dec) < 0);
	CHECK(sign_hex_decode("0g", 2, dec, sizeof dec) < 0);
	CHECK(sign_hex_decode("g0", 2, dec, sizeof dec) < 0);
	CHECK(sign_hex_decode(" 0", 2, dec, sizeof dec) < 0);
	CHECK(sign_hex_decode("0x12", 4, dec, sizeof dec) < 0);
	CHECK(sign_hex_decode("0001", 4, dec, 1) < 0);
	CHECK(sign_hex_encode(bin, sizeof bin, enc, 12) < 0);
}

static void test_digests(void)
{
	static const char *const hmac_key_hex =
		"0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b";
	unsigned char key[32], md[SIGN_SHA256_LEN];
	size_t klen;

	CHECK_EQ_INT(sign_sha256("abc", 3, md), 32);
	CHECK_STR_EQ(hex(md, 32),
		     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	CHECK_EQ_INT(sign_sha256(NULL, 0, md), 32);
	CHECK_STR_EQ(hex(md, 32),
		     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");

	/* RFC 4231 test cases 1 and 2. */
	klen = unhex(hmac_key_hex, key, sizeof key);
	CHECK_EQ_INT(klen, 20);
	CHECK_EQ_INT(sign_hmac_sha256(key, klen, "Hi There", 8, md), 32);
	CHECK_STR_EQ(hex(md, 32),
		     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
	CHECK_EQ_INT(sign_hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, md), 32);
	CHECK_STR_EQ(hex(md, 32),
		     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
	/* Empty key and message are valid HMAC input. */
	CHECK_EQ_INT(sign_hmac_sha256(NULL, 0, NULL, 0, md), 32);
	CHECK_STR_EQ(hex(md, 32),
		     "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

static void test_ed25519(void)
{
	unsigned char pub[32], sig[64], msg[1];

	/* RFC 8032 section 7.1, test 1 (empty message). */
	CHECK_EQ_INT(unhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
			   pub, sizeof pub), 32);
	CHECK_EQ_INT(unhex("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
			   "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
			   sig, sizeof sig), 64);
	CHECK_EQ_INT(sign_ed25519_verify(pub, 32, "", 0, sig, 64), 1);
	CHECK_EQ_INT(sign_ed25519_verify(pub, 32, NULL, 0, sig, 64), 1);
	CHECK_EQ_INT(sign_ed25519_verify(pub, 32, "x", 1, sig, 64), 0);
	sig[10] ^= 0x01;
	CHECK_EQ_INT(sign_ed25519_verify(pub, 32, "", 0, sig, 64), 0);
	sig[10] ^= 0x01;
	pub[0] ^= 0x80;
	CHECK_EQ_INT(sign_ed25519_verify(pub, 32, "", 0, sig, 64), 0);
	pub[0] ^= 0x80;
	CHECK_EQ_INT(sign_ed25519_verify(pub, 32, "", 0, sig, 63), 0);
	CHECK(sign_ed25519_verify(pub, 31, "", 0, sig, 64) < 0);

	/* RFC 8032 section 7.1, test 2 (one byte 0x72). */
	CHECK_EQ_INT(unhex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
			   pub, sizeof pub), 32);
	CHECK_EQ_INT(unhex("92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
			   "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
			   sig, sizeof sig), 64);
	msg[0] = 0x72;
	CHECK_EQ_INT(sign_ed25519_verify(pub, 32, msg, 1, sig, 64), 1);
	msg[0] ^= 0x04;
	CHECK_EQ_INT(sign_ed25519_verify(pub, 32, msg, 1, sig, 64), 0);
}

static void test_equal(void)
{
	CHECK_EQ_INT(sign_equal("abc", 3, "abc", 3), 1);
	CHECK_EQ_INT(sign_equal("abc", 3, "abd", 3), 0);
	CHECK_EQ_INT(sign_equal("abc", 3, "abcd", 4), 0);
	CHECK_EQ_INT(sign_equal("", 0, "", 0), 1);
	CHECK_EQ_INT(sign_equal(NULL, 0, "", 0), 1);
}

static void test_webhook(void)
{
	static const char body[] = "{\"test\": 2432232314}";
	unsigned char key[64];
	char sig[64], sig2[64];

	/* The Standard Webhooks specification's own example. */
	CHECK_EQ_INT(sign_webhook("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
				  "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
				  body, strlen(body), sig, sizeof sig), 47);
	CHECK_STR_EQ(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");

	/* Any change to id, timestamp, body or secret changes the signature. */
	CHECK(sign_webhook("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
			   "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265331,
			   body, strlen(body), sig2, sizeof sig2) == 47);
	CHECK(strcmp(sig, sig2) != 0);
	CHECK(sign_webhook("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
			   "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
			   body, strlen(body) - 1, sig2, sizeof sig2) == 47);
	CHECK(strcmp(sig, sig2) != 0);

	/* Raw secrets are used as bytes; whsec_ secrets are decoded. */
	CHECK_EQ_INT(sign_webhook_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", key,
				      sizeof key), 24);
	CHECK_EQ_INT(sign_webhook_key("plain-secret", key, sizeof key), 12);
	CHECK(memcmp(key, "plain-secret", 12) == 0);
	CHECK(sign_webhook_key("plain-secret", key, 11) < 0);
	CHECK(sign_webhook_key("whsec_not base64!", key, sizeof key) < 0);
	CHECK(sign_webhook("whsec_!!!!", "id", 1, "", 0, sig2, sizeof sig2) < 0);
	CHECK_EQ_INT(sign_webhook("", "id", 1, "", 0, sig2, sizeof sig2), 47);
	CHECK(sign_webhook("k", "id", 1, "", 0, sig2, 63) < 0);
	CHECK_EQ_INT(sign_webhook("k", "id", -5, NULL, 0, sig2, sizeof sig2), 47);

	/* What the config accepts is exactly what can sign. */
	char why[96];
	CHECK_EQ_INT(sign_webhook_secret_check("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", why, sizeof why), 24);
	CHECK_STR_EQ(why, "");
	CHECK_EQ_INT(sign_webhook_secret_check("whsec_YmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJi", why, sizeof why), 24);
	CHECK_EQ_INT(sign_webhook_secret_check("plain-secret", why, sizeof why), 12);
	CHECK(sign_webhook_secret_check("whsec_YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWE=", why, sizeof why) < 0);
	CHECK(strstr(why, "shorter than 24") != NULL);
	CHECK(sign_webhook_secret_check("whsec_", why, sizeof why) < 0);
	CHECK(sign_webhook_secret_check("whsec_not base64!", why, sizeof why) < 0);
	CHECK(strstr(why, "not valid base64") != NULL && strstr(why, "base64!") == NULL);
	CHECK(sign_webhook_secret_check("whsec_!!!!", why, sizeof why) < 0);
	CHECK(sign_webhook_secret_check("", why, sizeof why) < 0);
	CHECK(sign_webhook_secret_check(NULL, why, sizeof why) < 0);
	CHECK(sign_webhook_secret_check(NULL, NULL, 0) < 0);
	{
		char big[700];
		memset(big, 'x', sizeof big - 1);
		big[sizeof big - 1] = '\0';
		CHECK(sign_webhook_secret_check(big, why, sizeof why) < 0); /* raw, over 512 */
		memcpy(big, "whsec_", 6);
		CHECK(sign_webhook_secret_check(big, why, sizeof why) < 0);
	}
	/* Every accepted secret signs. */
	CHECK_EQ_INT(sign_webhook("whsec_YmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJi", "id", 1, "b", 1, sig2, sizeof sig2), 47);

	/* "id.timestamp.body" whatever the id's length (ids up to 256 bytes
	 * go in one update with the timestamp, longer ones in parts): the
	 * same bytes as one-shot HMAC() of the joined message. */
	for (size_t idlen = 250; idlen <= 262; idlen++) {
		char id[300], msg[400], want[64];
		unsigned char mac[32];
		unsigned int ml = 0;
		memset(id, 'a' + (int)(idlen % 26), idlen);
		id[idlen] = '\0';
		int n = snprintf(msg, sizeof msg, "%s.%d.%s", id, -1614265330, body);
		HMAC(EVP_sha256(), "plain-secret-key", 16, (const unsigned char *)msg, (size_t)n, mac, &ml);
		memcpy(want, "v1,", 3);
		CHECK(sign_base64_encode(mac, sizeof mac, want + 3, sizeof want - 3) == 44);
		CHECK_EQ_INT(sign_webhook("plain-secret-key", id, -1614265330, body, strlen(body),
					  sig2, sizeof sig2), 47);
		CHECK_STR_EQ(sig2, want);
	}
}

static void test_callback_token(void)
{
	char tok[33], bad[40];

	CHECK_EQ_INT(sign_callback_token("server-secret", "job_1", tok, sizeof tok), 32);
	CHECK_EQ_INT(strlen(tok), 32);
	CHECK(strspn(tok, "0123456789abcdef") == 32);
	CHECK_EQ_INT(sign_callback_token_ok("server-secret", "job_1", tok), 1);
	CHECK_EQ_INT(sign_callback_token_ok("server-secret", "job_2", tok), 0);
	CHECK_EQ_INT(sign_callback_token_ok("other-secret", "job_1", tok), 0);

	memcpy(bad, tok, 31);
	bad[31] = '\0';
	CHECK_EQ_INT(sign_callback_token_ok("server-secret", "job_1", bad), 0);
	memcpy(bad, tok, 33);
	strcat(bad, "0");
	CHECK_EQ_INT(sign_callback_token_ok("server-secret", "job_1", bad), 0);
	memcpy(bad, tok, 33);
	bad[5] = bad[5] == 'a' ? 'b' : 'a';
	CHECK_EQ_INT(sign_callback_token_ok("server-secret", "job_1", bad), 0);
	memcpy(bad, tok, 33);
	bad[31] = 'g';
	CHECK_EQ_INT(sign_callback_token_ok("server-secret", "job_1", bad), 0);
	CHECK_EQ_INT(sign_callback_token_ok("server-secret", "job_1", ""), 0);
	CHECK_EQ_INT(sign_callback_token_ok("server-secret", "job_1", NULL), 0);

	/* An empty server secret signs nothing. */
	CHECK(sign_callback_token("", "job_1", tok, sizeof tok) < 0);
	CHECK_EQ_INT(sign_callback_token_ok("", "job_1", tok), 0);
	CHECK(sign_callback_token("server-secret", "job_1", tok, 32) < 0);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_random(void)
{
	enum { N = 2000 };
	static char ids[N][64];
	static char *sorted[N];
	unsigned char a[32], b[32];
	char first[64], later[64];
	struct timespec pause = { 0, 3 * 1000 * 1000 };
	long long ms = 0, now_ms;
	int i, dup = 0, order = 0, shape = 0;

	CHECK_EQ_INT(sign_random(a, sizeof a), 0);
	CHECK_EQ_INT(sign_random(b, sizeof b), 0);
	CHECK(memcmp(a, b, sizeof a) != 0);
	CHECK_EQ_INT(sign_random(NULL, 0), 0);

	for (i = 0; i < N; i++) {
		if (sign_random_id("job_", ids[i], sizeof ids[i]) != 30 ||
		    strncmp(ids[i], "job_", 4) != 0 ||
		    strspn(ids[i] + 4, "0123456789ABCDEFGHJKMNPQRSTVWXYZ") != 26)
			shape++;
		if (i > 0 && strncmp(ids[i - 1] + 4, ids[i] + 4, 10) > 0)
			order++;
		sorted[i] = ids[i];
	}
	CHECK_EQ_INT(shape, 0);
	CHECK_EQ_INT(order, 0);
	qsort(sorted, N, sizeof sorted[0], cmp_str);
	for (i = 1; i < N; i++)
		if (strcmp(sorted[i - 1], sorted[i]) == 0)
			dup++;
	CHECK_EQ_INT(dup, 0);

	/* The first ten characters are the millisecond clock. */
	for (i = 0; i < 10; i++)
		ms = ms * 32 + (long long)(strchr("0123456789ABCDEFGHJKMNPQRSTVWXYZ",
						  ids[N - 1][4 + i]) -
					   "0123456789ABCDEFGHJKMNPQRSTVWXYZ");
	now_ms = (long long)time(NULL) * 1000;
	CHECK(ms > now_ms - 5000 && ms < now_ms + 5000);

	/* Ids made milliseconds apart sort by creation. */
	CHECK_EQ_INT(sign_random_id("d_", first, sizeof first), 28);
	nanosleep(&pause, NULL);
	CHECK_EQ_INT(sign_random_id("d_", later, sizeof later), 28);
	CHECK(strcmp(first, later) < 0);

	CHECK_EQ_INT(sign_random_id(NULL, first, 27), 26);
	CHECK(sign_random_id(NULL, first, 26) < 0);
	CHECK(sign_random_id("job_", first, 30) < 0);
}

/* One-shot OpenSSL HMAC-SHA256, the reference for the keyed contexts. */
static void ref_hmac(const void *key, size_t kl, const void *m, size_t ml, unsigned char out[32])
{
	unsigned int len = 0;
	HMAC(EVP_sha256(), kl ? key : "", (int)kl, ml ? m : (const void *)"", ml, out, &len);
}

/*
 * The thread's keyed contexts: many keys interleaved (more than the cache
 * holds, so slots are replaced), keys that are prefixes of each other, the
 * empty key and one longer than the cache takes all give what a one-shot
 * HMAC gives, message after message.
 */
static void test_hmac_keyed(void)
{
	char keys[20][80];
	unsigned char want[32], got[32];
	static char longkey[700];
	memset(longkey, 'k', sizeof longkey - 1);
	for (int i = 0; i < 20; i++)
		snprintf(keys[i], sizeof keys[i], "key-%d-%.*s", i % 13, i, "abcdefghijklmnopqrstuvwxyz");
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 20; i++) {
			int k = (i * 7 + round) % 20;
			char msg[64];
			int ml = snprintf(msg, sizeof msg, "job_%d_%d", round, i);
			ref_hmac(keys[k], strlen(keys[k]), msg, (size_t)ml, want);
			CHECK_EQ_INT(sign_hmac_sha256(keys[k], strlen(keys[k]), msg, (size_t)ml, got), 32);
			CHECK(memcmp(want, got, 32) == 0);
			/* the same key again right away: the context is reset, not extended */
			CHECK_EQ_INT(sign_hmac_sha256(keys[k], strlen(keys[k]), msg, (size_t)ml, got), 32);
			CHECK(memcmp(want, got, 32) == 0);
		}
		ref_hmac("", 0, "x", 1, want);
		CHECK_EQ_INT(sign_hmac_sha256("", 0, "x", 1, got), 32);
		CHECK(memcmp(want, got, 32) == 0);
		ref_hmac(longkey, strlen(longkey), "x", 1, want);
		CHECK_EQ_INT(sign_hmac_sha256(longkey, strlen(longkey), "x", 1, got), 32);
		CHECK(memcmp(want, got, 32) == 0);
	}
}

/* Two threads signing with the same keys at once each use their own
 * contexts: every result is right. */
static void *hmac_thread(void *arg)
{
	int *bad = arg;
	unsigned char want[32], got[32];
	for (int i = 0; i < 2000; i++) {
		const char *key = i % 2 ? "secret-one" : "secret-two";
		char msg[32];
		int ml = snprintf(msg, sizeof msg, "job_%d", i);
		ref_hmac(key, strlen(key), msg, (size_t)ml, want);
		if (sign_hmac_sha256(key, strlen(key), msg, (size_t)ml, got) != 32 ||
		    memcmp(want, got, 32) != 0)
			(*bad)++;
	}
	return NULL;
}

static void test_hmac_threads(void)
{
	pthread_t t[2];
	int bad[2] = { 0, 0 };
	for (int i = 0; i < 2; i++)
		CHECK_EQ_INT(pthread_create(&t[i], NULL, hmac_thread, &bad[i]), 0);
	for (int i = 0; i < 2; i++)
		CHECK_EQ_INT(pthread_join(t[i], NULL), 0);
	CHECK_EQ_INT(bad[0] + bad[1], 0);
}

int main(void)
{
	test_base64();
	test_hex();
	test_digests();
	test_ed25519();
	test_equal();
	test_webhook();
	test_callback_token();
	test_random();
	test_hmac_keyed();
	test_hmac_threads();
	return check_done();
}
