/*
 * cli_scripts.h: `genrelay scripts test`, one script function on a given
 * payload, outside the server.
 */
#ifndef GENRELAY_CLI_SCRIPTS_H
#define GENRELAY_CLI_SCRIPTS_H

/*
 * genrelay scripts test FILE --event JSON [--fn NAME] [--config FILE] [--ctx JSON]
 *
 * argv holds the arguments after "scripts test". Loads FILE alone (as a
 * reload would: checked, examples run), calls hooks' transform or the
 * provider function --fn with the --event payload (a JSON array is the
 * argument list, anything else the single argument; @PATH reads a file, -
 * stdin) and prints the result as JSON on stdout. Returns the exit status:
 * 0 when the call returned, 1 when the script failed to load or raised (the
 * error on stderr), 2 on a usage or input error.
 */
int cli_scripts_test(int argc, char **argv);

#endif
