// SPDX-License-Identifier: GPL-2.0
/*
 * fsmark-lite: an fs_mark-like small-file writer for the VM benchmark
 * (bench/vm/).  Creates <count> files of <size> bytes spread over <dirs>
 * subdirectories of <dir>; each file is created, written, fsync()ed and
 * closed, as fs_mark -S 1 does.  Prints "files <n> seconds <s> files_per_s
 * <r>" on success.
 *
 *   fsmark-lite <dir> <count> <size> <dirs>
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	char path[4096];
	long count, size, dirs, i;
	double t0, t;
	char *buf;

	if (argc != 5) {
		fprintf(stderr, "usage: %s <dir> <count> <size> <dirs>\n", argv[0]);
		return 2;
	}
	count = atol(argv[2]);
	size = atol(argv[3]);
	dirs = atol(argv[4]);
	if (count <= 0 || size <= 0 || dirs <= 0) {
		fprintf(stderr, "fsmark-lite: count, size and dirs must be > 0\n");
		return 2;
	}
	buf = malloc(size);
	if (!buf)
		return 1;
	for (i = 0; i < size; i++)
		buf[i] = (char)(i * 131 + 7);
	t0 = now();
	for (i = 0; i < dirs; i++) {
		snprintf(path, sizeof(path), "%s/d%03ld", argv[1], i);
		if (mkdir(path, 0755) && errno != EEXIST) {
			perror(path);
			return 1;
		}
	}
	for (i = 0; i < count; i++) {
		int fd;

		snprintf(path, sizeof(path), "%s/d%03ld/f%07ld", argv[1], i % dirs, i);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0) {
			perror(path);
			return 1;
		}
		/* a different first word per file: no two files alike */
		memcpy(buf, &i, sizeof(i));
		if (write(fd, buf, size) != size || fsync(fd) || close(fd)) {
			perror(path);
			return 1;
		}
	}
	t = now() - t0;
	printf("files %ld seconds %.3f files_per_s %.1f\n", count, t, count / t);
	return 0;
}
