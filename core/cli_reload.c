/*
 * cli_reload.c: `genrelay reload` (see cli_reload.h).
 */
#include "cli_reload.h"

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

int cli_reload(int argc, char **argv)
{
	const char *path = NULL;
	long pid = 0;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
			path = argv[++i];
		} else if (strcmp(argv[i], "--pid") == 0 && i + 1 < argc) {
			char *end;
			pid = strtol(argv[++i], &end, 10);
			if (*end || pid <= 0) {
				fprintf(stderr, "genrelay: --pid: not a process id\n");
				return 2;
			}
		} else {
			fprintf(stderr, "usage: genrelay reload [--config FILE] [--pid PID]\n");
			return 2;
		}
	}
	if (!pid) {
		char err[1024], lock[PATH_MAX];
		struct config *cfg = config_load(path, err, sizeof err);
		if (!cfg) {
			fprintf(stderr, "genrelay: %s\n", err);
			return 2;
		}
		int sqlite = strncmp(cfg->store, "sqlite:", 7) == 0;
		snprintf(lock, sizeof lock, "%s.lock", sqlite ? cfg->store + 7 : "");
		config_free(cfg);
		if (!sqlite) {
			fprintf(stderr, "genrelay: the store is not SQLite: give --pid PID (or send SIGHUP)\n");
			return 2;
		}
		int fd = open(lock, O_RDONLY | O_CLOEXEC);
		char buf[32] = "";
		if (fd >= 0 && flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK) {
			ssize_t got = pread(fd, buf, sizeof buf - 1, 0);
			buf[got > 0 ? got : 0] = '\0';
			pid = strtol(buf, NULL, 10);
		}
		if (fd >= 0)
			close(fd);
		if (pid <= 0) {
			fprintf(stderr, "genrelay: no genrelay is serving the store of this configuration\n");
			return 1;
		}
	}
	char comm_path[64], comm[64] = "";
	snprintf(comm_path, sizeof comm_path, "/proc/%ld/comm", pid);
	FILE *f = fopen(comm_path, "r");
	if (f) {
		if (!fgets(comm, sizeof comm, f))
			comm[0] = '\0';
		fclose(f);
	}
	if (strncmp(comm, "genrelay", 8) != 0) {
		fprintf(stderr, "genrelay: process %ld is not a genrelay\n", pid);
		return 1;
	}
	if (kill((pid_t)pid, SIGHUP) < 0) {
		fprintf(stderr, "genrelay: signalling %ld: %s\n", pid, strerror(errno));
		return 1;
	}
	printf("sent SIGHUP to genrelay (pid %ld); its log says whether the configuration was applied\n", pid);
	return 0;
}
