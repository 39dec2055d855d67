/*
 * cli_customers.h: `genrelay customers add|list|rotate-key|remove`, customers
 * kept in the store (see customers.h). The command opens the store itself
 * (the --config file's store, or --store SPEC); a running genrelay sees the
 * change within CUSTOMERS_TTL_MS, without a restart.
 */
#ifndef GENRELAY_CLI_CUSTOMERS_H
#define GENRELAY_CLI_CUSTOMERS_H

/*
 *   genrelay customers add NAME [--webhook-secret whsec_...|-] [--hook NAME] [--webhook-url URL]
 *   genrelay customers list [--json]
 *   genrelay customers rotate-key NAME
 *   genrelay customers remove NAME
 * each with [--config FILE | --store SPEC]. add and rotate-key print the new
 * API key alone on stdout (once: only its SHA-256 is stored). argv holds
 * the arguments after "customers". Returns the exit status: 0 done, 1 the
 * store refused or failed (no such customer, name taken), 2 a usage error.
 */
int cli_customers(int argc, char **argv);

#endif
