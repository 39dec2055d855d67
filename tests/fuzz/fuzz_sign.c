/*
 * fuzz_sign.c: libFuzzer target for the decoders and verifiers in
 * core/sign.c.
 *
 *     clang -std=c11 -D_GNU_SOURCE -g -fsanitize=fuzzer,address,undefined -Icore \
 *         tests/fuzz/fuzz_sign.c core/sign.c -lcrypto -o fuzz_sign
 *     ./fuzz_sign -max_total_time=60 NEW_DIR tests/fuzz/corpus/sign
 *
 * Buffers are sized exactly as sign.h documents so ASan sees any overrun.
 * Beyond "never crash": base64 and hex decodings survive a re-encode and
 * decode unchanged, and hex re-encodes to the lower-cased input.
 */
#include "sign.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void fuzz_base64(const char *in, size_t n)
{
	size_t cap = (n + 3) / 4 * 3;
	unsigned char *dec = malloc(cap + 1), *again = malloc(cap + 1);
	char *enc = malloc(cap / 3 * 4 + 1);
	int d, e, d2;

	if (dec == NULL || again == NULL || enc == NULL)
		goto out;
	d = sign_base64_decode(in, n, dec, cap);
	if (d < 0)
		goto out;
	e = sign_base64_encode(dec, (size_t)d, enc, cap / 3 * 4 + 1);
	if (e < 0)
		abort();
	d2 = sign_base64_decode(enc, (size_t)e, again, cap);
	if (d2 != d || memcmp(dec, again, (size_t)d) != 0)
		abort();
out:
	free(dec);
	free(again);
	free(enc);
}

static void fuzz_hex(const char *in, size_t n)
{
	unsigned char *dec = malloc(n / 2 + 1);
	char *enc = malloc(n + 1);
	size_t i;
	int d;

	if (dec == NULL || enc == NULL)
		goto out;
	d = sign_hex_decode(in, n, dec, n / 2);
	if (d < 0)
		goto out;
	if (sign_hex_encode(dec, (size_t)d, enc, n + 1) != (int)n)
		abort();
	for (i = 0; i < n; i++) {
		char c = in[i] >= 'A' && in[i] <= 'F' ? (char)(in[i] + 32) : in[i];
		if (enc[i] != c)
			abort();
	}
out:
	free(dec);
	free(enc);
}

/* Input: 32-byte key, 64-byte signature, message; shorter inputs try short keys. */
static void fuzz_ed25519(const uint8_t *data, size_t size)
{
	int rc;

	if (size < 96) {
		rc = sign_ed25519_verify(data, size < 32 ? size : 32, data, size, data, size);
		if (rc != -1 && rc != 0 && rc != 1)
			abort();
		return;
	}
	rc = sign_ed25519_verify(data, 32, data + 96, size - 96, data + 32, 64);
	if (rc != 0 && rc != 1)
		abort();
}

static void fuzz_secrets(const char *s)
{
	char sig[64], tok[33];

	(void)sign_webhook(s, "msg_1", 1614265330, s, strlen(s), sig, sizeof sig);
	if (sign_callback_token("server-secret", s, tok, sizeof tok) != 32)
		abort();
	if (sign_callback_token_ok("server-secret", "job_1", s) &&
	    (sign_callback_token("server-secret", "job_1", tok, sizeof tok) != 32 ||
	     strcmp(tok, s) != 0))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	fuzz_base64(s, size);
	fuzz_hex(s, size);
	fuzz_ed25519(data, size);
	fuzz_secrets(s);
	free(s);
	return 0;
}
