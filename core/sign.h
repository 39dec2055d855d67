/*
 * sign.h: encodings, digests, MACs and signatures (OpenSSL 3 EVP).
 *
 * Every function writes into a caller-provided buffer and returns the number
 * of bytes written, or a negative number on failure (bad input, buffer too
 * small). Nothing here allocates except where noted.
 */
#ifndef GENRELAY_SIGN_H
#define GENRELAY_SIGN_H

#include <stddef.h>
#include <stdint.h>

#define SIGN_SHA256_LEN 32

/* Standard base64 with padding. out needs 4*ceil(n/3)+1 bytes; NUL-terminated. */
int sign_base64_encode(const void *in, size_t n, char *out, size_t outlen);
/*
 * Decodes standard or URL-safe base64, padding optional; whitespace is an
 * error. out needs 3*ceil(n/4) bytes.
 */
int sign_base64_decode(const char *in, size_t n, void *out, size_t outlen);
/* Lower-case hex. out needs 2n+1 bytes; NUL-terminated. */
int sign_hex_encode(const void *in, size_t n, char *out, size_t outlen);
/* Either case; odd length or a non-hex digit is an error. */
int sign_hex_decode(const char *in, size_t n, void *out, size_t outlen);

/* SHA-256 of data into out[32]. Returns 32. */
int sign_sha256(const void *data, size_t n, unsigned char out[SIGN_SHA256_LEN]);
/* HMAC-SHA256 into out[32]. Returns 32. */
int sign_hmac_sha256(const void *key, size_t keylen, const void *data, size_t n,
		     unsigned char out[SIGN_SHA256_LEN]);
/* Ed25519 verification with a 32-byte raw public key. 1 valid, 0 not, <0 error. */
int sign_ed25519_verify(const unsigned char *pub, size_t publen,
			const void *msg, size_t msglen,
			const unsigned char *sig, size_t siglen);
/* Constant-time equality of two buffers (lengths compared first). 1 equal. */
int sign_equal(const void *a, size_t alen, const void *b, size_t blen);

/*
 * Decodes a Standard Webhooks secret into key bytes: "whsec_<base64>" is
 * base64-decoded; any other string is used as raw bytes. Returns key length.
 */
int sign_webhook_key(const char *secret, unsigned char *key, size_t keylen);
/* Shortest decoded whsec_ key accepted (Standard Webhooks: 24 to 64 bytes). */
#define SIGN_WEBHOOK_KEY_MIN 24
/*
 * Whether secret can sign deliveries: "whsec_" followed by base64 (either
 * alphabet, padding optional, no whitespace) of 24 to 512 bytes, or a raw
 * secret of 1 to 512 bytes. Returns the key length, or -1 with the reason in
 * err (which never contains the secret).
 */
int sign_webhook_secret_check(const char *secret, char *err, size_t errlen);
/*
 * Standard Webhooks signature header value "v1,<base64 HMAC-SHA256 of
 * id.timestamp.body>" under secret (as for sign_webhook_key). out needs at
 * least 64 bytes. Returns strlen(out).
 */
int sign_webhook(const char *secret, const char *msg_id, int64_t timestamp,
		 const void *body, size_t bodylen, char *out, size_t outlen);

/*
 * Callback token: lower-case hex HMAC-SHA256 of job_id under server_secret,
 * truncated to 32 hex characters. out needs 33 bytes.
 */
int sign_callback_token(const char *server_secret, const char *job_id,
			char *out, size_t outlen);
/* 1 when token is the valid callback token of job_id (constant time). */
int sign_callback_token_ok(const char *server_secret, const char *job_id,
			   const char *token);

/* Fills buf with n cryptographically random bytes. 0 or -1. */
int sign_random(void *buf, size_t n);
/* A random id "<prefix><26 chars of Crockford base32>", e.g. "job_01H...". */
int sign_random_id(const char *prefix, char *out, size_t outlen);

#endif
