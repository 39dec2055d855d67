/*
 * test_ui_session.c: dashboard sessions and CSRF tokens (core/ui_session.c).
 */
#include "ui_session.h"
#include "check.h"

#include <string.h>

static void test_sessions(void)
{
	unsigned char key[UI_SESSION_KEY_LEN], other[UI_SESSION_KEY_LEN];
	char tok[UI_SESSION_TOKEN_MAX], tok2[UI_SESSION_TOKEN_MAX], bad[UI_SESSION_TOKEN_MAX];

	CHECK_EQ_INT(ui_session_key(NULL, key), -1);
	CHECK_EQ_INT(ui_session_key("", key), -1);
	CHECK_EQ_INT(ui_session_key("admin-key-0123456789abcdef", key), 0);
	CHECK_EQ_INT(ui_session_key("admin-key-0123456789abcdeF", other), 0);
	CHECK(memcmp(key, other, sizeof key) != 0);

	CHECK(ui_session_issue(key, 2000, tok, sizeof tok) > 0);
	CHECK(ui_session_issue(key, 2000, tok2, sizeof tok2) > 0);
	CHECK(strcmp(tok, tok2) != 0); /* a fresh nonce each time */
	CHECK_EQ_INT(ui_session_valid(key, tok, 1999), 1);
	CHECK_EQ_INT(ui_session_valid(key, tok, 2000), 0); /* expired */
	CHECK_EQ_INT(ui_session_valid(other, tok, 1000), 0); /* another admin key */
	CHECK_EQ_INT(ui_session_valid(key, NULL, 1000), 0);
	CHECK_EQ_INT(ui_session_valid(key, "", 1000), 0);
	CHECK_EQ_INT(ui_session_valid(key, "9999999999.x.y", 1000), 0);

	/* Any changed character, the expiry above all, breaks the MAC. */
	int accepted = 0;
	for (size_t i = 0; tok[i]; i++) {
		strcpy(bad, tok);
		bad[i] = bad[i] == '9' ? '8' : '9';
		accepted += ui_session_valid(key, bad, 1000);
	}
	CHECK_EQ_INT(accepted, 0);
	strcpy(bad, tok);
	bad[strlen(bad) - 1] = '\0';
	CHECK_EQ_INT(ui_session_valid(key, bad, 1000), 0);
	CHECK_EQ_INT(ui_session_issue(key, 2000, tok2, 20), -1); /* too small */
}

static void test_csrf(void)
{
	unsigned char key[UI_SESSION_KEY_LEN];
	char tok[UI_SESSION_TOKEN_MAX], tok2[UI_SESSION_TOKEN_MAX], c1[UI_CSRF_TOKEN_MAX], c2[UI_CSRF_TOKEN_MAX];
	ui_session_key("admin-key-0123456789abcdef", key);
	ui_session_issue(key, 2000, tok, sizeof tok);
	ui_session_issue(key, 2000, tok2, sizeof tok2);
	CHECK_EQ_INT(ui_csrf_token(key, tok, c1, sizeof c1), 32);
	CHECK_EQ_INT(ui_csrf_token(key, tok2, c2, sizeof c2), 32);
	CHECK(strcmp(c1, c2) != 0);
	CHECK_EQ_INT(ui_csrf_valid(key, tok, c1), 1);
	CHECK_EQ_INT(ui_csrf_valid(key, tok, c2), 0); /* another session's token */
	CHECK_EQ_INT(ui_csrf_valid(key, tok, ""), 0);
	CHECK_EQ_INT(ui_csrf_valid(key, tok, NULL), 0);
	CHECK_EQ_INT(ui_csrf_valid(key, NULL, c1), 0);
	/* The session MAC is not the CSRF token (different labels). */
	CHECK_EQ_INT(ui_csrf_valid(key, tok, strrchr(tok, '.') + 1), 0);
}

static void test_cookies(void)
{
	char v[64];
	CHECK_EQ_INT(ui_cookie_get("a=1; genrelay_session=xyz; b=2", "genrelay_session", v, sizeof v), 3);
	CHECK_STR_EQ(v, "xyz");
	CHECK_EQ_INT(ui_cookie_get("genrelay_session=abc", "genrelay_session", v, sizeof v), 3);
	CHECK_STR_EQ(v, "abc");
	CHECK_EQ_INT(ui_cookie_get("xgenrelay_session=abc", "genrelay_session", v, sizeof v), -1);
	CHECK_EQ_INT(ui_cookie_get("genrelay_sessionx=abc", "genrelay_session", v, sizeof v), -1);
	CHECK_EQ_INT(ui_cookie_get("", "genrelay_session", v, sizeof v), -1);
	CHECK_EQ_INT(ui_cookie_get("genrelay_session=0123456789", "genrelay_session", v, 5), -1);
}

int main(void)
{
	test_sessions();
	test_csrf();
	test_cookies();
	return check_done();
}
