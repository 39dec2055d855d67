/*
 * scrub.h: removing secrets from text that leaves genrelay.
 *
 * A scrubber is a set of needles (every configured secret, built once from
 * the config by config_load and completed by main before the workers start;
 * immutable, and so shared read-only by every thread, after that). Each
 * occurrence of a needle in a text becomes "[redacted]". Replacing the secret
 * itself also covers the forms it is sent in ("Bearer <key>", "Key <key>",
 * a query parameter). A needle that holds characters JSON escapes is also
 * added in its escaped form, so JSON text is scrubbed as plain text.
 *
 * Secrets of any length are scrubbed, even short ones (a leaked short key is
 * still a leaked key); scrub_add reports those under SCRUB_SHORT so that the
 * operator can be warned that ordinary text may be redacted too.
 *
 * The second half is for error messages of Lua (scripts and the config): the
 * string literals of a source, and the redaction of those Lua quotes in its
 * messages (see scrub_lua_message).
 */
#ifndef GENRELAY_SCRUB_H
#define GENRELAY_SCRUB_H

#include <stddef.h>

#define SCRUB_REPLACEMENT "[redacted]"
/* Secrets shorter than this are still scrubbed but reported by scrub_add. */
#define SCRUB_SHORT 8

struct scrub;

/* An empty scrubber (caller frees with scrub_free), or NULL (out of memory). */
struct scrub *scrub_new(void);
void scrub_free(struct scrub *s);
/*
 * Adds a secret (copied; NULL or "" is ignored, a duplicate is kept once).
 * Returns 0, 1 when the secret is shorter than SCRUB_SHORT bytes, -1 when
 * out of memory. Not thread-safe: only before the scrubber is shared.
 */
int scrub_add(struct scrub *s, const char *secret);
/* Number of needles (escaped forms included). */
size_t scrub_count(const struct scrub *s);
/* Number of distinct secrets added that are shorter than SCRUB_SHORT. */
size_t scrub_short_count(const struct scrub *s);

/* 1 when text[0..len) holds a needle. s may be NULL (nothing to find). */
int scrub_found(const struct scrub *s, const char *text, size_t len);
/*
 * A scrubbed copy of text[0..len) (NUL-terminated, caller frees; its length
 * in *outlen when outlen is not NULL), or NULL when there is nothing to
 * replace or no memory: the caller then keeps text, and checks scrub_found
 * when it must tell the two apart.
 */
char *scrub_dup(const struct scrub *s, const char *text, size_t len, size_t *outlen);
/*
 * Scrubs the NUL-terminated string in buf (cap bytes) in place; the result
 * is truncated to cap-1 bytes when the replacements make it longer. Returns
 * the number of replacements.
 */
size_t scrub_buf(const struct scrub *s, char *buf, size_t cap);
/* Scrubs the malloc'd string *str in place (it may be replaced; NULL is fine).
 * 0, or -1 when out of memory (then *str is freed and set to NULL: a text that
 * cannot be scrubbed is not kept). */
int scrub_str(const struct scrub *s, char **str);

/* 1 when a settings key names a secret: it contains "key", "secret",
 * "token" or "password" in any case. Scripts never see such settings
 * through ctx.config, and every string under such a key is scrubbed. */
int scrub_key_is_secret(const char *key);

/*
 * The string literals of a Lua source ('...', "..." and long brackets; none
 * from comments), each with its escapes resolved, as one block of
 * NUL-terminated strings ending with an empty one. Caller frees. NULL when
 * there is none or no memory. Literals shorter than 2 bytes are left out.
 */
char *scrub_lua_literals(const char *src, size_t len);
/*
 * Redacts, in a Lua error message, what Lua quoted from the source: the
 * token of a syntax error when it is a string (" near '\"...'" becomes
 * " near a string literal"), a string constant ("(constant '...')"), and any
 * other '...' quote whose text is one of literals (from scrub_lua_literals;
 * may be NULL), so t["sk-..."] shows as field '[redacted]'. In place.
 */
void scrub_lua_message(char *msg, size_t cap, const char *literals);

#endif
