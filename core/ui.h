/*
 * ui.h: the operator dashboard under /ui (admin key; see docs/dashboard.md).
 *
 * Pages are static assets built into the binary (ui/ in the source tree);
 * they read the admin JSON views under /ui/api/. A browser logs in with the
 * admin key and gets a session cookie (HttpOnly, Secure, SameSite=Strict);
 * every action it takes carries the session's CSRF token. Tools may call
 * /ui/api/ with "Authorization: Bearer <admin key>" instead.
 */
#ifndef GENRELAY_UI_H
#define GENRELAY_UI_H

struct request;

/* 1 when url belongs to the dashboard (/ui or /ui/...). */
int ui_owns(const char *url);
/*
 * Intake of a dashboard request that carries a body, on its headers: the
 * login form (announced, at most 1 KB) or a session / the admin key. 0
 * admits it; -1 after answering.
 */
int ui_admit(struct request *r);
/* Answers a dashboard request (routing, auth, CSRF, the views). */
void ui_dispatch(struct request *r);

/* The embedded assets (generated from ui/ at build time). */
struct ui_asset {
	const char *path;         /* "/ui/assets/app.js" */
	const char *content_type;
	const unsigned char *data;
	unsigned long len;
};
extern const struct ui_asset ui_assets[];
extern const unsigned long ui_asset_count;

#endif
