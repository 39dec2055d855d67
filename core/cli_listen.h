/*
 * cli_listen.h: `genrelay listen`, a local webhook inspector for developers.
 */
#ifndef GENRELAY_CLI_LISTEN_H
#define GENRELAY_CLI_LISTEN_H

/*
 * genrelay listen [--port N] [--host ADDR] [--secret whsec_...]
 *                 [--forward URL] [--forward-unverified] [--max-body BYTES]
 *                 [--forward-timeout S] [--count N]
 *
 * argv holds the arguments after "listen". Receives webhook deliveries on
 * ADDR:N (127.0.0.1, port 0 = any free one; the first line printed says
 * which), verifies each one's Standard Webhooks signature under --secret (or
 * $GENRELAY_WEBHOOK_SECRET), pretty-prints it, and with --forward posts it
 * (same body and webhook-* headers) to URL and shows the app's answer.
 *
 * Answers to the sender: with --forward, the app's status (502 when the app
 * cannot be reached); without, 200. A delivery whose signature does not
 * verify is answered 401 and is not forwarded unless --forward-unverified
 * is given (to exercise the app's own check), so the app only sees what a
 * real receiver should accept. Runs until SIGINT/SIGTERM, or until --count
 * deliveries were shown. Returns the exit status: 0, or 2 on a usage error
 * or when the port cannot be bound.
 */
int cli_listen(int argc, char **argv);

#endif
