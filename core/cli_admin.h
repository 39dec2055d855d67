/*
 * cli_admin.h: `genrelay jobs ...` and `genrelay deliveries ...`, an
 * operator's commands against a running genrelay's admin views (/ui/api/,
 * docs/dashboard.md) with the admin key.
 */
#ifndef GENRELAY_CLI_ADMIN_H
#define GENRELAY_CLI_ADMIN_H

/*
 * genrelay jobs list [--customer C] [--provider P] [--status S] [--search Q] [--limit N]
 * genrelay jobs show ID
 * genrelay jobs cancel ID
 * genrelay deliveries list [--state dead|failing] [--customer C]
 * genrelay deliveries retry ID... | --all [--state dead|failing] [--customer C]
 *
 * Every command takes [--url URL] [--admin-key KEY] [--config FILE] [--json]:
 * the URL defaults to the config's listen address (or 127.0.0.1:8080), the
 * key to $GENRELAY_ADMIN_KEY or the config's admin_key. argv holds the
 * arguments after "jobs" or "deliveries". Returns the exit status: 0 done,
 * 1 the server refused or failed, 2 a usage error.
 */
int cli_admin(const char *group, int argc, char **argv);

#endif
