/*
 * callbacks.h: inbound provider callbacks,
 * POST /v1/callbacks/{provider}/{job_id}/{token}.
 */
#ifndef GENRELAY_CALLBACKS_H
#define GENRELAY_CALLBACKS_H

struct request;

void callbacks_handle(struct request *r, const char *provider, const char *job_id,
		      const char *token);

#endif
