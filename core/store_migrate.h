/*
 * store_migrate.h: `genrelay store migrate --from sqlite:FILE --to postgresql://...`
 */
#ifndef GENRELAY_STORE_MIGRATE_H
#define GENRELAY_STORE_MIGRATE_H

/* argv: the arguments after "store migrate". Exit status: 0 done and
 * verified, 1 failed or counts differ, 2 usage. */
int store_migrate_main(int argc, char **argv);

#endif
