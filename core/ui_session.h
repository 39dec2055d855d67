/*
 * ui_session.h: the dashboard's session cookie and CSRF token.
 *
 * Sessions are stateless, so every worker and every instance accepts a
 * session another one issued: the cookie value is "<expiry>.<nonce>.<mac>",
 * the MAC an HMAC-SHA256 under a key derived from the admin key (changing
 * the admin key ends every session). The CSRF token of a session is another
 * MAC of the cookie value under the same key; the dashboard's scripts send
 * it as X-CSRF-Token with every action.
 *
 * Pure functions on caller buffers; nothing here allocates.
 */
#ifndef GENRELAY_UI_SESSION_H
#define GENRELAY_UI_SESSION_H

#include <stddef.h>
#include <stdint.h>

#define UI_SESSION_KEY_LEN 32
#define UI_SESSION_TOKEN_MAX 128
#define UI_CSRF_TOKEN_MAX 48

/* Derives the session key from the admin key. Returns 0, or -1 without one. */
int ui_session_key(const char *admin_key, unsigned char key[UI_SESSION_KEY_LEN]);
/*
 * Writes a new session token valid until expires_s (Unix seconds) into out
 * (UI_SESSION_TOKEN_MAX bytes). Returns its length, or -1.
 */
int ui_session_issue(const unsigned char key[UI_SESSION_KEY_LEN], int64_t expires_s,
		     char *out, size_t outlen);
/* 1 when token is a session issued under key and not expired at now_s, else 0. */
int ui_session_valid(const unsigned char key[UI_SESSION_KEY_LEN], const char *token,
		     int64_t now_s);
/* The CSRF token of a session token into out (UI_CSRF_TOKEN_MAX). Returns its length or -1. */
int ui_csrf_token(const unsigned char key[UI_SESSION_KEY_LEN], const char *session,
		  char *out, size_t outlen);
/* 1 when csrf is the CSRF token of session (constant time), else 0. */
int ui_csrf_valid(const unsigned char key[UI_SESSION_KEY_LEN], const char *session,
		  const char *csrf);
/*
 * The value of cookie name in a Cookie header, copied into out. Returns its
 * length, or -1 when absent or too long.
 */
int ui_cookie_get(const char *header, const char *name, char *out, size_t outlen);

#endif
