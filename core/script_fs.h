/*
 * script_fs.h: the scripts directory on disk: script file names, reading a
 * file with a size cap, telling whether a file changed, and the sources of
 * scripts/lib kept in memory (struct libset, script_int.h).
 *
 * Layer (script_int.h): calls script_util. Called by script_host.
 */
#ifndef GENRELAY_SCRIPT_FS_H
#define GENRELAY_SCRIPT_FS_H

#include "script_int.h"

/* "NAME.lua" with a valid NAME: copies NAME into out (SCRIPT_NAME_MAX + 1
 * bytes) and returns 1; else 0. */
int scriptfs_name(const char *fname, char *out);

/* Reads a file of at most SCRIPT_FILE_MAX bytes (NUL-terminated). 0 with
 * *buf (caller frees) and *len, or -1 with the reason in err. */
int scriptfs_read(const char *path, char **buf, size_t *len, char *err, size_t errlen);

/* 1 when a and b describe the same file content (size, inode, mtime). */
int scriptfs_same(const struct stat *a, const struct stat *b);

/* Rescans DIR/lib into ls: 1 when anything was added, changed or removed,
 * else 0. Unreadable files are logged and treated as absent. */
int scriptfs_lib_scan(struct libset *ls, const char *dir);
void scriptfs_lib_free(struct libset *ls);

#endif
