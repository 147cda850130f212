// SPDX-License-Identifier: GPL-2.0
/*
 * unstable-write: O_DIRECT writes from a buffer that another thread keeps
 * changing while they are in flight, then a read of every block written.
 *
 *   unstable-write <device> <first block> <blocks> <rounds>
 *
 * Every 8-byte word of the buffer is UW_MAGIC | generation; the changing
 * thread rewrites the whole buffer with the next generation, over and
 * over.  Each round writes the buffer to the <blocks> 4 KiB blocks from
 * <first block>.  Afterwards each block is read back with O_DIRECT: the
 * read must succeed (a checksum taken over other bytes than the ones
 * written would fail it) and every word must be a value the buffer held.
 * Exit 0 when all is well, 1 otherwise (the reason on standard error).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define UW_BLOCK	4096
#define UW_WORDS	(UW_BLOCK / 8)
#define UW_MAGIC	0x5557000000000000ULL
#define UW_GEN_MASK	0x0000ffffffffffffULL

static uint64_t *buf;
static int stop;
static uint64_t last_gen;

static void *change(void *arg)
{
	uint64_t gen = 1;

	(void)arg;
	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
		for (size_t i = 0; i < UW_WORDS; i++)
			__atomic_store_n(&buf[i], UW_MAGIC | gen, __ATOMIC_RELAXED);
		__atomic_store_n(&last_gen, gen, __ATOMIC_RELAXED);
		gen++;
	}
	return NULL;
}

static unsigned long long number(const char *s, const char *what)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end) {
		fprintf(stderr, "unstable-write: bad %s '%s'\n", what, s);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	unsigned long long first, blocks, rounds, r, b;
	uint64_t *rbuf, top;
	pthread_t t;
	int fd, bad = 0;

	if (argc != 5) {
		fprintf(stderr, "usage: unstable-write <device> <first block> <blocks> <rounds>\n");
		return 2;
	}
	first = number(argv[2], "first block");
	blocks = number(argv[3], "block count");
	rounds = number(argv[4], "round count");
	fd = open(argv[1], O_RDWR | O_DIRECT);
	if (fd < 0) {
		fprintf(stderr, "unstable-write: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	if (posix_memalign((void **)&buf, UW_BLOCK, UW_BLOCK) ||
	    posix_memalign((void **)&rbuf, UW_BLOCK, UW_BLOCK)) {
		fprintf(stderr, "unstable-write: out of memory\n");
		return 1;
	}
	for (size_t i = 0; i < UW_WORDS; i++)
		buf[i] = UW_MAGIC;
	if (pthread_create(&t, NULL, change, NULL)) {
		fprintf(stderr, "unstable-write: cannot start a thread\n");
		return 1;
	}
	for (r = 0; r < rounds && !bad; r++) {
		for (b = 0; b < blocks; b++) {
			ssize_t n = pwrite(fd, buf, UW_BLOCK,
					   (off_t)((first + b) * UW_BLOCK));

			if (n != UW_BLOCK) {
				fprintf(stderr, "unstable-write: write of block %llu: %s\n",
					first + b, n < 0 ? strerror(errno) : "short");
				bad = 1;
				break;
			}
		}
	}
	__atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
	pthread_join(t, NULL);
	top = last_gen + 1;
	for (b = 0; b < blocks && !bad; b++) {
		ssize_t n = pread(fd, rbuf, UW_BLOCK, (off_t)((first + b) * UW_BLOCK));

		if (n != UW_BLOCK) {
			fprintf(stderr, "unstable-write: read of block %llu: %s\n",
				first + b, n < 0 ? strerror(errno) : "short");
			bad = 1;
			break;
		}
		for (size_t i = 0; i < UW_WORDS; i++) {
			uint64_t w = rbuf[i];

			if ((w & ~UW_GEN_MASK) != UW_MAGIC || (w & UW_GEN_MASK) > top) {
				fprintf(stderr, "unstable-write: block %llu word %zu is 0x%016" PRIx64
					", never in the buffer\n", first + b, i, w);
				bad = 1;
				break;
			}
		}
	}
	close(fd);
	if (!bad)
		printf("unstable-write: %llu writes of a changing buffer, %llu blocks read back\n",
		       rounds * blocks, blocks);
	return bad;
}
