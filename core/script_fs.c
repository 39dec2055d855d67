/*
 * script_fs.c: the scripts directory on disk (see script_fs.h).
 */
#include "script_fs.h"
#include "log.h"
#include "sign.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "NAME.lua" with a valid NAME: copies NAME into out (SCRIPT_NAME_MAX+1). */
int scriptfs_name(const char *fname, char *out)
{
	size_t n = strlen(fname);
	if (n < 5 || strcmp(fname + n - 4, ".lua") != 0 || !script_valid_name(fname, n - 4))
		return 0;
	memcpy(out, fname, n - 4);
	out[n - 4] = '\0';
	return 1;
}

/* Reads a regular file of at most SCRIPT_FILE_MAX bytes. Caller frees *buf. */
int scriptfs_read(const char *path, char **buf, size_t *len, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	char *b = NULL;
	size_t n = 0;
	if (!f) {
		script_set_err(err, errlen, "cannot open: %s", strerror(errno));
		return -1;
	}
	b = malloc(SCRIPT_FILE_MAX + 1);
	if (!b) {
		fclose(f);
		script_set_err(err, errlen, "out of memory");
		return -1;
	}
	n = fread(b, 1, SCRIPT_FILE_MAX + 1, f);
	if (ferror(f) || n > SCRIPT_FILE_MAX) {
		if (n > SCRIPT_FILE_MAX)
			script_set_err(err, errlen, "file larger than %d bytes", SCRIPT_FILE_MAX);
		else
			script_set_err(err, errlen, "read error");
		fclose(f);
		free(b);
		return -1;
	}
	fclose(f);
	b[n] = '\0';
	*buf = b;
	*len = n;
	return 0;
}

int scriptfs_same(const struct stat *a, const struct stat *b)
{
	return a->st_size == b->st_size && a->st_ino == b->st_ino &&
	       a->st_dev == b->st_dev && a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
	       a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

void scriptfs_lib_free(struct libset *ls)
{
	for (size_t i = 0; i < ls->n; i++)
		free(ls->v[i].src);
	free(ls->v);
	ls->v = NULL;
	ls->n = ls->cap = 0;
}

static int cmp_lib(const void *a, const void *b)
{
	return strcmp(((const struct lib_src *)a)->name, ((const struct lib_src *)b)->name);
}

/*
 * Rescans DIR/lib into ls. Returns 1 when anything was added, changed or
 * removed, else 0. Unreadable files are logged and treated as absent.
 */
int scriptfs_lib_scan(struct libset *ls, const char *dir)
{
	char path[4096];
	DIR *d;
	struct dirent *de;
	int changed = 0;

	for (size_t i = 0; i < ls->n; i++)
		ls->v[i].seen = 0;
	snprintf(path, sizeof path, "%s/lib", dir);
	d = opendir(path);
	while (d && (de = readdir(d))) {
		char name[SCRIPT_NAME_MAX + 1];
		struct stat st;
		struct lib_src *l = NULL;
		char *src;
		size_t len;
		unsigned char sha[32];
		char rerr[128];

		if (!scriptfs_name(de->d_name, name))
			continue;
		snprintf(path, sizeof path, "%s/lib/%s", dir, de->d_name);
		if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
			continue;
		for (size_t i = 0; i < ls->n; i++)
			if (strcmp(ls->v[i].name, name) == 0)
				l = &ls->v[i];
		if (l && scriptfs_same(&l->st, &st)) {
			l->seen = 1;
			continue;
		}
		if (scriptfs_read(path, &src, &len, rerr, sizeof rerr) < 0) {
			log_warn("scripts: lib/%s.lua: %s", name, rerr);
			continue;
		}
		sign_sha256(src, len, sha);
		if (l && memcmp(l->sha, sha, 32) == 0) {
			l->st = st;
			l->seen = 1;
			free(src);
			continue;
		}
		if (!l) {
			if (ls->n == ls->cap) {
				size_t nc = ls->cap ? ls->cap * 2 : 8;
				struct lib_src *nv = realloc(ls->v, nc * sizeof *nv);
				if (!nv) {
					free(src);
					continue;
				}
				ls->v = nv;
				ls->cap = nc;
			}
			l = &ls->v[ls->n++];
			memset(l, 0, sizeof *l);
			snprintf(l->name, sizeof l->name, "%s", name);
		}
		free(l->src);
		l->src = src;
		l->len = len;
		l->st = st;
		memcpy(l->sha, sha, 32);
		l->seen = 1;
		changed = 1;
	}
	if (d)
		closedir(d);
	for (size_t i = 0; i < ls->n;) {
		if (!ls->v[i].seen) {
			free(ls->v[i].src);
			ls->v[i] = ls->v[--ls->n];
			changed = 1;
		} else {
			i++;
		}
	}
	if (ls->n > 1)
		qsort(ls->v, ls->n, sizeof *ls->v, cmp_lib);
	return changed;
}

