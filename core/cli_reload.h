/*
 * cli_reload.h: `genrelay reload`, asks a serving genrelay to re-read its
 * configuration.
 */
#ifndef GENRELAY_CLI_RELOAD_H
#define GENRELAY_CLI_RELOAD_H

/*
 * genrelay reload [--config FILE] [--pid PID]: sends SIGHUP to the running
 * genrelay. Without --pid it is found through its store: a serving process
 * holds the lock file STORE.lock of a SQLite store with its pid in it (a
 * PostgreSQL store has no such file: give --pid, or kill -HUP). The
 * process re-reads its own --config file; the log says what happened.
 * argv holds the arguments after "reload". Returns the exit status: 0 sent,
 * 1 no genrelay found (or not signalled), 2 a usage or config error.
 */
int cli_reload(int argc, char **argv);

#endif
