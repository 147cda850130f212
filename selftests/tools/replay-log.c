// SPDX-License-Identifier: GPL-2.0
/*
 * replay-log: read a dm-log-writes log and replay it, for the dm-vmcache
 * crash replay selftest (vmcache_crash_replay.sh).
 *
 * The log format is the kernel's (drivers/md/dm-log-writes.c,
 * Documentation/admin-guide/device-mapper/log-writes.rst): a super block in
 * the first sector (magic, version, nr_entries, sectorsize), then for each
 * entry one sector with its header (sector, nr_sectors, flags, data_len;
 * a mark's name follows the header in the same sector) and, unless it is a
 * discard or a mark, nr_sectors sectors of data.  Sectors are in units of
 * the logged device's logical block size (sectorsize).  Writes are logged
 * when the flush that made them durable completed, FUA writes when they
 * completed: replaying entries 0..N gives what a device would hold had the
 * power gone after entry N; writes after the last FLUSH before N may be
 * lost in any combination (a volatile write cache).
 *
 *   replay-log list LOG                   one line per entry
 *   replay-log replay LOG TARGET [--from N] [--upto N | --mark NAME]
 *                  [--unflushed all|none|odd|even|seed:S]
 *       write entries FROM..UPTO (inclusive) to TARGET; with --unflushed
 *       other than all, entries after the last FLUSH at or before UPTO
 *       (except FUA writes, durable when they completed) are kept or
 *       dropped by their rank among those writes: odd ranks, even ranks,
 *       a pseudo-random half chosen by seed S, or none
 *   replay-log points LOG [--after-mark NAME] [--flushes N] [--inside N]
 *                  [--subsets N] [--seed S]
 *       crash points to replay, "<entry> <policy> <kind>" sorted by entry:
 *       up to N flush/FUA entries, N points between two flushes, N flush
 *       intervals replayed with subsets of their unflushed writes
 *   replay-log context LOG N              the test's marks before entry N:
 *       "durable=G issued=G2 mode=M flush=F" (marks "sync:G",
 *       "issued:G", "mode:M")
 *   replay-log write DEV --journal FILE --first-gen G --count N --seed S
 *                  [--blocks B] [--dsync] [--fsync]
 *       N random 4 KiB writes (O_DIRECT), each 512-byte sector stamped
 *       with its device offset and the write's generation; "gen block"
 *       appended to FILE for each
 *   replay-log verify DEV --journal FILE --durable G --issued G2
 *       every 4 KiB block holds the last generation written to it up to
 *       G, or a later one written up to G2 (each sector on its own: no
 *       write is atomic); a block never written up to G may read zero
 *   replay-log diff A B                    4 KiB blocks that differ, with
 *       the generations each holds
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define LOG_FLUSH_FLAG		(1 << 0)
#define LOG_FUA_FLAG		(1 << 1)
#define LOG_DISCARD_FLAG	(1 << 2)
#define LOG_MARK_FLAG		(1 << 3)
#define LOG_METADATA_FLAG	(1 << 4)
#define WRITE_LOG_VERSION	1ULL
#define WRITE_LOG_MAGIC		0x6a736677736872ULL

#define BLK			4096u
#define SEC			512u
#define SECS_PER_BLK		(BLK / SEC)
#define STAMP_MAGIC		0x504d545359504c52ULL	/* "RLPYSTMP" */
#define MAX_REPORT		20

struct entry {
	uint64_t sector;	/* in sectorsize units */
	uint64_t nr_sectors;
	uint64_t flags;
	uint64_t data_off;	/* byte offset of the data in the log */
	char *mark;
};

struct log {
	int fd;
	uint32_t ss;		/* sectorsize */
	uint64_t nr;
	struct entry *e;
};

static const char *prog = "replay-log";

static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

static uint64_t le64(const unsigned char *p)
{
	uint64_t v = 0;
	int i;

	for (i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static uint32_t le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static void put64(unsigned char *p, uint64_t v)
{
	int i;

	for (i = 0; i < 8; i++, v >>= 8)
		p[i] = v & 0xff;
}

static uint64_t parse_u64(const char *s, const char *what)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s || *end)
		die("bad %s: %s", what, s);
	return v;
}

static void *xalloc(size_t n)
{
	void *p;

	if (posix_memalign(&p, BLK, n ? n : BLK))
		die("out of memory (%zu bytes)", n);
	return p;
}

/* O_DIRECT where the file allows it (block devices), plain otherwise. */
static int open_dev(const char *path, int flags)
{
	int fd = open(path, flags | O_DIRECT);

	if (fd < 0 && errno == EINVAL)
		fd = open(path, flags);
	if (fd < 0)
		die("%s: %s", path, strerror(errno));
	return fd;
}

static void pread_all(int fd, void *buf, size_t n, uint64_t off)
{
	size_t done = 0;

	while (done < n) {
		ssize_t r = pread(fd, (char *)buf + done, n - done, off + done);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			die("read at %" PRIu64 ": %s", off + done, strerror(errno));
		if (r == 0)
			die("short read at %" PRIu64, off + done);
		done += r;
	}
}

static void pwrite_all(int fd, const void *buf, size_t n, uint64_t off)
{
	size_t done = 0;

	while (done < n) {
		ssize_t r = pwrite(fd, (const char *)buf + done, n - done, off + done);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			die("write at %" PRIu64 ": %s", off + done,
			    r < 0 ? strerror(errno) : "nothing written");
		done += r;
	}
}

static uint64_t dev_size(int fd)
{
	struct stat st;
	uint64_t sz;

	if (fstat(fd, &st))
		die("fstat: %s", strerror(errno));
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, &sz))
			die("BLKGETSIZE64: %s", strerror(errno));
		return sz;
	}
	return st.st_size;
}

/* ------------------------------------------------------------ the log */

static void log_open(struct log *l, const char *path)
{
	unsigned char *buf = xalloc(BLK);
	uint64_t pos, i, size;

	l->fd = open_dev(path, O_RDONLY);
	size = dev_size(l->fd);
	pread_all(l->fd, buf, SEC, 0);
	if (le64(buf) != WRITE_LOG_MAGIC)
		die("%s: not a dm-log-writes log (magic %#" PRIx64 ")", path, le64(buf));
	if (le64(buf + 8) != WRITE_LOG_VERSION)
		die("%s: log version %" PRIu64 " not supported", path, le64(buf + 8));
	l->nr = le64(buf + 16);
	l->ss = le32(buf + 24);
	if (l->ss < SEC || l->ss > BLK || (l->ss & (l->ss - 1)))
		die("%s: bad sectorsize %u", path, l->ss);
	l->e = calloc(l->nr ? l->nr : 1, sizeof(*l->e));
	if (!l->e)
		die("out of memory");
	pos = l->ss;
	for (i = 0; i < l->nr; i++) {
		struct entry *e = &l->e[i];
		uint64_t dlen;

		if (pos + l->ss > size)
			die("%s: entry %" PRIu64 " past the end of the log", path, i);
		pread_all(l->fd, buf, l->ss, pos);
		e->sector = le64(buf);
		e->nr_sectors = le64(buf + 8);
		e->flags = le64(buf + 16);
		dlen = le64(buf + 24);
		pos += l->ss;
		if (e->flags & LOG_MARK_FLAG) {
			size_t n = dlen < l->ss - 32 ? dlen : l->ss - 32;

			e->mark = calloc(1, n + 1);
			if (!e->mark)
				die("out of memory");
			memcpy(e->mark, buf + 32, n);
			e->mark[strcspn(e->mark, "\n")] = 0;
			e->nr_sectors = 0;
		}
		e->data_off = pos;
		if (!(e->flags & LOG_DISCARD_FLAG))
			pos += e->nr_sectors * l->ss;
		if (pos > size)
			die("%s: data of entry %" PRIu64 " past the end of the log", path, i);
	}
	free(buf);
}

static const char *flag_str(uint64_t f)
{
	static char s[64];

	s[0] = 0;
	if (f & LOG_FLUSH_FLAG)
		strcat(s, "FLUSH,");
	if (f & LOG_FUA_FLAG)
		strcat(s, "FUA,");
	if (f & LOG_DISCARD_FLAG)
		strcat(s, "DISCARD,");
	if (f & LOG_MARK_FLAG)
		strcat(s, "MARK,");
	if (f & LOG_METADATA_FLAG)
		strcat(s, "META,");
	if (!s[0])
		return "WRITE";
	s[strlen(s) - 1] = 0;
	return s;
}

static bool is_flush(const struct entry *e)
{
	return e->flags & LOG_FLUSH_FLAG;
}

/* A write that may be lost when the power goes before the next flush. */
static bool is_volatile_write(const struct entry *e)
{
	return !(e->flags & (LOG_FLUSH_FLAG | LOG_FUA_FLAG | LOG_MARK_FLAG)) &&
	       e->nr_sectors;
}

static int64_t find_mark(const struct log *l, const char *name)
{
	uint64_t i;

	for (i = 0; i < l->nr; i++)
		if (l->e[i].mark && !strcmp(l->e[i].mark, name))
			return i;
	return -1;
}

/* The last FLUSH entry at or before n, -1 if none. */
static int64_t last_flush(const struct log *l, int64_t n)
{
	for (; n >= 0; n--)
		if (is_flush(&l->e[n]))
			return n;
	return -1;
}

static int cmd_list(int argc, char **argv)
{
	struct log l;
	uint64_t i;

	if (argc != 1)
		die("usage: list LOG");
	log_open(&l, argv[0]);
	printf("# entries %" PRIu64 " sectorsize %u\n", l.nr, l.ss);
	for (i = 0; i < l.nr; i++) {
		const struct entry *e = &l.e[i];
		uint64_t mul = l.ss / SEC;

		printf("%" PRIu64 " %s %" PRIu64 " %" PRIu64 "%s%s\n", i,
		       flag_str(e->flags), e->sector * mul, e->nr_sectors * mul,
		       e->mark ? " " : "", e->mark ? e->mark : "");
	}
	return 0;
}

/* --------------------------------------------------------------- replay */

static uint64_t rng_state;

static uint64_t rng(void)
{
	/* xorshift64* */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545F4914F6CDD1DULL;
}

static void rng_seed(uint64_t s)
{
	rng_state = s * 0x9E3779B97F4A7C15ULL + 0x1234567;
	if (!rng_state)
		rng_state = 1;
	rng();
}

enum policy { P_ALL, P_NONE, P_ODD, P_EVEN, P_SEED };

static enum policy parse_policy(const char *s, uint64_t *seed)
{
	if (!strcmp(s, "all"))
		return P_ALL;
	if (!strcmp(s, "none"))
		return P_NONE;
	if (!strcmp(s, "odd"))
		return P_ODD;
	if (!strcmp(s, "even"))
		return P_EVEN;
	if (!strncmp(s, "seed:", 5)) {
		*seed = parse_u64(s + 5, "seed");
		return P_SEED;
	}
	die("bad --unflushed policy %s (all, none, odd, even, seed:S)", s);
	return P_ALL;
}

static void apply(const struct log *l, int tfd, const struct entry *e,
		  unsigned char **buf, size_t *bufsz)
{
	size_t n = e->nr_sectors * l->ss;

	if (!n || (e->flags & LOG_MARK_FLAG))
		return;
	if (n > *bufsz) {
		free(*buf);
		*buf = xalloc(n);
		*bufsz = n;
	}
	if (e->flags & LOG_DISCARD_FLAG)
		memset(*buf, 0, n);	/* discarded data is undefined: zeros */
	else
		pread_all(l->fd, *buf, n, e->data_off);
	pwrite_all(tfd, *buf, n, e->sector * l->ss);
}

static int cmd_replay(int argc, char **argv)
{
	struct log l;
	const char *mark = NULL, *pol_s = "all";
	int64_t from = 0, upto = -1, flush, i;
	uint64_t seed = 0, rank = 0, kept = 0, dropped = 0, written = 0;
	enum policy pol;
	unsigned char *buf = NULL;
	size_t bufsz = 0;
	char dlist[4096] = "";
	int tfd, a;

	if (argc < 2)
		die("usage: replay LOG TARGET [--from N] [--upto N | --mark NAME] [--unflushed POLICY]");
	for (a = 2; a < argc; a++) {
		if (a + 1 >= argc)
			die("%s needs a value", argv[a]);
		if (!strcmp(argv[a], "--from"))
			from = parse_u64(argv[++a], "entry");
		else if (!strcmp(argv[a], "--upto"))
			upto = parse_u64(argv[++a], "entry");
		else if (!strcmp(argv[a], "--mark"))
			mark = argv[++a];
		else if (!strcmp(argv[a], "--unflushed"))
			pol_s = argv[++a];
		else
			die("unknown option %s", argv[a]);
	}
	pol = parse_policy(pol_s, &seed);
	log_open(&l, argv[0]);
	if (mark) {
		upto = find_mark(&l, mark);
		if (upto < 0)
			die("no mark %s in the log", mark);
	}
	if (upto < 0)
		upto = l.nr - 1;
	if (upto >= (int64_t)l.nr)
		die("entry %" PRId64 " past the last one (%" PRIu64 ")", upto, l.nr - 1);
	flush = pol == P_ALL ? upto : last_flush(&l, upto);
	if (pol == P_SEED)
		rng_seed(seed);
	tfd = open_dev(argv[1], O_WRONLY);
	for (i = from; i <= upto; i++) {
		const struct entry *e = &l.e[i];

		if (i > flush && is_volatile_write(e)) {
			bool keep;

			switch (pol) {
			case P_NONE:
				keep = false;
				break;
			case P_ODD:
				keep = rank & 1;
				break;
			case P_EVEN:
				keep = !(rank & 1);
				break;
			case P_SEED:
				keep = (rng() >> 33) & 1;
				break;
			default:
				keep = true;
			}
			rank++;
			if (!keep) {
				size_t len = strlen(dlist);

				dropped++;
				if (len < sizeof(dlist) - 32)
					snprintf(dlist + len, sizeof(dlist) - len,
						 "%s%" PRId64, len ? "," : "", i);
				continue;
			}
			kept++;
		}
		if (e->nr_sectors && !e->mark)
			written++;
		apply(&l, tfd, e, &buf, &bufsz);
	}
	if (fsync(tfd))
		die("fsync: %s", strerror(errno));
	close(tfd);
	printf("replayed entries %" PRId64 "..%" PRId64 ": %" PRIu64 " writes", from, upto, written);
	if (pol != P_ALL)
		printf("; after flush entry %" PRId64 " kept %" PRIu64 ", dropped %" PRIu64
		       " unflushed writes%s%s", flush, kept, dropped,
		       dropped ? ": " : "", dlist);
	printf("\n");
	free(buf);
	return 0;
}

/* --------------------------------------------------------------- points */

struct point {
	int64_t entry;
	const char *policy;
	const char *kind;
};

static int point_cmp(const void *a, const void *b)
{
	const struct point *x = a, *y = b;

	if (x->entry != y->entry)
		return x->entry < y->entry ? -1 : 1;
	return strcmp(x->policy, y->policy);
}

/* pick up to want of the n candidates, evenly spread, last one included */
static bool pick(uint64_t idx, uint64_t n, uint64_t want)
{
	uint64_t k;

	if (n <= want)
		return true;
	if (!want)
		return false;
	/* candidate idx is picked when it is the first to reach slot k */
	for (k = 1; k <= want; k++) {
		uint64_t at = (k * n + want - 1) / want - 1;

		if (at == idx)
			return true;
	}
	return false;
}

static int cmd_points(int argc, char **argv)
{
	static const char *subset_pol[] = { "odd", "even" };
	static char seeds[64][16];
	struct log l;
	const char *after = NULL;
	uint64_t nflush = 40, ninside = 10, nsubset = 5, seed = 1;
	uint64_t cand_f = 0, cand_i = 0, cand_s = 0, k, np = 0;
	int64_t start = 0, i, prev;
	struct point *p;
	int a;

	if (argc < 1)
		die("usage: points LOG [--after-mark NAME] [--flushes N] [--inside N] [--subsets N] [--seed S]");
	for (a = 1; a < argc; a++) {
		if (a + 1 >= argc)
			die("%s needs a value", argv[a]);
		if (!strcmp(argv[a], "--after-mark"))
			after = argv[++a];
		else if (!strcmp(argv[a], "--flushes"))
			nflush = parse_u64(argv[++a], "count");
		else if (!strcmp(argv[a], "--inside"))
			ninside = parse_u64(argv[++a], "count");
		else if (!strcmp(argv[a], "--subsets"))
			nsubset = parse_u64(argv[++a], "count");
		else if (!strcmp(argv[a], "--seed"))
			seed = parse_u64(argv[++a], "seed");
		else
			die("unknown option %s", argv[a]);
	}
	log_open(&l, argv[0]);
	if (after) {
		start = find_mark(&l, after);
		if (start < 0)
			die("no mark %s in the log", after);
	}
	rng_seed(seed);
	p = calloc(nflush + ninside + 3 * nsubset + 2, sizeof(*p));
	if (!p)
		die("out of memory");
	/* count the candidates: flush/FUA entries; intervals between two
	 * flushes with >= 2 volatile writes (a point inside), with >= 3
	 * (subsets of them)
	 */
	for (int pass = 0; pass < 2; pass++) {
		uint64_t f = 0, in = 0, s = 0;

		prev = start;
		for (i = start + 1; i < (int64_t)l.nr; i++) {
			const struct entry *e = &l.e[i];
			uint64_t nw = 0;
			int64_t j;

			if (e->flags & (LOG_FLUSH_FLAG | LOG_FUA_FLAG)) {
				if (pass && pick(f, cand_f, nflush))
					p[np++] = (struct point){ i, "all", "flush" };
				f++;
			}
			if (!is_flush(e))
				continue;
			for (j = prev + 1; j < i; j++)
				nw += is_volatile_write(&l.e[j]);
			if (nw >= 2) {
				if (pass && pick(in, cand_i, ninside)) {
					/* a random entry strictly inside */
					int64_t at = prev + 1 + rng() % (i - prev - 1);

					p[np++] = (struct point){ at, "all", "inside" };
				}
				in++;
			}
			if (nw >= 3) {
				if (pass && pick(s, cand_s, nsubset)) {
					/* everything up to the flush, the flush
					 * itself lost; three subsets of the
					 * unflushed writes
					 */
					uint64_t c = s % 2;

					p[np++] = (struct point){ i - 1, subset_pol[c], "subset" };
					p[np++] = (struct point){ i - 1, subset_pol[1 - c], "subset" };
					snprintf(seeds[s % 64], sizeof(seeds[0]), "seed:%" PRIu64,
						 seed * 1000 + s);
					p[np++] = (struct point){ i - 1, seeds[s % 64], "subset" };
				}
				s++;
			}
			prev = i;
		}
		cand_f = f;
		cand_i = in;
		cand_s = s;
	}
	/* the end of the log: the state after a clean remove */
	p[np++] = (struct point){ l.nr - 1, "all", "end" };
	qsort(p, np, sizeof(*p), point_cmp);
	printf("# candidates: %" PRIu64 " flush/FUA, %" PRIu64 " intervals, %" PRIu64
	       " subset intervals\n", cand_f, cand_i, cand_s);
	for (k = 0; k < np; k++) {
		if (k && p[k].entry == p[k - 1].entry && !strcmp(p[k].policy, p[k - 1].policy))
			continue;
		printf("%" PRId64 " %s %s\n", p[k].entry, p[k].policy, p[k].kind);
	}
	return 0;
}

/* -------------------------------------------------------------- context */

static int cmd_context(int argc, char **argv)
{
	struct log l;
	int64_t n, i, issued = -1;
	uint64_t durable = 0;
	const char *mode = "writeback";

	if (argc != 2)
		die("usage: context LOG N");
	log_open(&l, argv[0]);
	n = parse_u64(argv[1], "entry");
	if (n >= (int64_t)l.nr)
		die("entry %" PRId64 " past the last one", n);
	for (i = 0; i <= n; i++) {
		const char *m = l.e[i].mark;

		if (!m)
			continue;
		if (!strncmp(m, "sync:", 5))
			durable = parse_u64(m + 5, "sync mark");
		else if (!strncmp(m, "mode:", 5))
			mode = m + 5;
	}
	/* writes issued before the crash: up to the first "issued" mark after n */
	for (i = n + 1; i < (int64_t)l.nr; i++)
		if (l.e[i].mark && !strncmp(l.e[i].mark, "issued:", 7)) {
			issued = parse_u64(l.e[i].mark + 7, "issued mark");
			break;
		}
	if (issued < 0)
		for (i = n; i >= 0; i--)
			if (l.e[i].mark && !strncmp(l.e[i].mark, "issued:", 7)) {
				issued = parse_u64(l.e[i].mark + 7, "issued mark");
				break;
			}
	printf("durable=%" PRIu64 " issued=%" PRId64 " mode=%s flush=%" PRId64 "\n",
	       durable, issued < 0 ? 0 : issued, mode, last_flush(&l, n));
	return 0;
}

/* --------------------------------------------------------- stamped data */

static uint64_t filler_seed(uint64_t off, uint64_t gen)
{
	return off * 0x9E3779B97F4A7C15ULL ^ (gen + 1) * 0xC2B2AE3D27D4EB4FULL;
}

static void stamp_sector(unsigned char *s, uint64_t off, uint64_t gen)
{
	uint64_t x = filler_seed(off, gen);
	unsigned int i;

	put64(s, STAMP_MAGIC);
	put64(s + 8, off);
	put64(s + 16, gen);
	put64(s + 24, ~gen);
	for (i = 32; i < SEC; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		put64(s + i, x);
	}
}

enum sec_state { S_ZERO, S_STAMP, S_OTHER };

/* what a 512-byte sector holds: zeros, a stamp (*off, *gen) or other */
static enum sec_state decode_sector(const unsigned char *s, uint64_t *off, uint64_t *gen)
{
	unsigned char want[SEC];
	unsigned int i;

	for (i = 0; i < SEC && !s[i]; i++)
		;
	if (i == SEC)
		return S_ZERO;
	if (le64(s) != STAMP_MAGIC || le64(s + 24) != ~le64(s + 16))
		return S_OTHER;
	*off = le64(s + 8);
	*gen = le64(s + 16);
	stamp_sector(want, *off, *gen);
	return memcmp(want, s, SEC) ? S_OTHER : S_STAMP;
}

static void describe(char *out, size_t n, const unsigned char *s, uint64_t at)
{
	uint64_t off = 0, gen = 0;

	switch (decode_sector(s, &off, &gen)) {
	case S_ZERO:
		snprintf(out, n, "zeros");
		break;
	case S_STAMP:
		if (off == at)
			snprintf(out, n, "gen %" PRIu64, gen);
		else
			snprintf(out, n, "gen %" PRIu64 " of byte %" PRIu64 " (misplaced)", gen, off);
		break;
	default:
		snprintf(out, n, "unknown data %02x%02x%02x%02x%02x%02x%02x%02x...",
			 s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]);
	}
}

static int cmd_write(int argc, char **argv)
{
	const char *journal = NULL;
	uint64_t first = 0, count = 0, seed = 0, blocks = 0, i;
	bool dsync = false, do_fsync = false;
	unsigned char *buf = xalloc(BLK);
	FILE *j;
	int fd, a;

	if (argc < 1)
		die("usage: write DEV --journal FILE --first-gen G --count N --seed S [--blocks B] [--dsync] [--fsync]");
	for (a = 1; a < argc; a++) {
		if (!strcmp(argv[a], "--dsync")) {
			dsync = true;
			continue;
		}
		if (!strcmp(argv[a], "--fsync")) {
			do_fsync = true;
			continue;
		}
		if (a + 1 >= argc)
			die("%s needs a value", argv[a]);
		if (!strcmp(argv[a], "--journal"))
			journal = argv[++a];
		else if (!strcmp(argv[a], "--first-gen"))
			first = parse_u64(argv[++a], "generation");
		else if (!strcmp(argv[a], "--count"))
			count = parse_u64(argv[++a], "count");
		else if (!strcmp(argv[a], "--seed"))
			seed = parse_u64(argv[++a], "seed");
		else if (!strcmp(argv[a], "--blocks"))
			blocks = parse_u64(argv[++a], "blocks");
		else
			die("unknown option %s", argv[a]);
	}
	if (!journal || !first)
		die("write needs --journal and --first-gen (from 1)");
	fd = open_dev(argv[0], O_WRONLY | (dsync ? O_DSYNC : 0));
	if (!blocks)
		blocks = dev_size(fd) / BLK;
	if (!blocks)
		die("%s: empty", argv[0]);
	j = fopen(journal, "a");
	if (!j)
		die("%s: %s", journal, strerror(errno));
	rng_seed(seed);
	for (i = 0; i < count; i++) {
		uint64_t gen = first + i, r = rng(), b, s;

		/* half the writes go to the first eighth: overwrites */
		b = (r & 1) ? (r >> 8) % (blocks / 8 ? blocks / 8 : 1) : (r >> 8) % blocks;
		for (s = 0; s < SECS_PER_BLK; s++)
			stamp_sector(buf + s * SEC, b * BLK + s * SEC, gen);
		pwrite_all(fd, buf, BLK, b * BLK);
		fprintf(j, "%" PRIu64 " %" PRIu64 "\n", gen, b);
	}
	if (do_fsync && fsync(fd))
		die("fsync: %s", strerror(errno));
	if (fclose(j))
		die("%s: %s", journal, strerror(errno));
	close(fd);
	free(buf);
	printf("%" PRIu64 "\n", first + count - 1);
	return 0;
}

struct journal {
	uint64_t n, cap;
	uint64_t *gen, *blk;
};

static void journal_read(struct journal *jr, const char *path)
{
	FILE *f = fopen(path, "r");
	unsigned long long g, b;

	if (!f)
		die("%s: %s", path, strerror(errno));
	memset(jr, 0, sizeof(*jr));
	while (fscanf(f, "%llu %llu", &g, &b) == 2) {
		if (jr->n == jr->cap) {
			jr->cap = jr->cap ? 2 * jr->cap : 1024;
			jr->gen = realloc(jr->gen, jr->cap * sizeof(*jr->gen));
			jr->blk = realloc(jr->blk, jr->cap * sizeof(*jr->blk));
			if (!jr->gen || !jr->blk)
				die("out of memory");
		}
		jr->gen[jr->n] = g;
		jr->blk[jr->n] = b;
		jr->n++;
	}
	fclose(f);
}

static bool gen_allowed(const struct journal *jr, uint64_t blk, uint64_t gen,
			uint64_t want, uint64_t durable, uint64_t issued)
{
	uint64_t i;

	if (gen == want)
		return true;
	if (gen <= durable || gen > issued)
		return false;
	for (i = 0; i < jr->n; i++)
		if (jr->gen[i] == gen)
			return jr->blk[i] == blk;
	return false;
}

static int cmd_verify(int argc, char **argv)
{
	const char *journal = NULL;
	uint64_t durable = 0, issued = 0, nblocks, b, i, *want;
	uint64_t bad = 0, at_durable = 0, later = 0, zero = 0, mixed = 0;
	struct journal jr;
	unsigned char *buf = xalloc(BLK);
	int fd, a;

	if (argc < 1)
		die("usage: verify DEV --journal FILE --durable G --issued G2");
	for (a = 1; a < argc; a++) {
		if (a + 1 >= argc)
			die("%s needs a value", argv[a]);
		if (!strcmp(argv[a], "--journal"))
			journal = argv[++a];
		else if (!strcmp(argv[a], "--durable"))
			durable = parse_u64(argv[++a], "generation");
		else if (!strcmp(argv[a], "--issued"))
			issued = parse_u64(argv[++a], "generation");
		else
			die("unknown option %s", argv[a]);
	}
	if (!journal)
		die("verify needs --journal");
	journal_read(&jr, journal);
	fd = open_dev(argv[0], O_RDONLY);
	nblocks = dev_size(fd) / BLK;
	want = calloc(nblocks ? nblocks : 1, sizeof(*want));
	if (!want)
		die("out of memory");
	for (i = 0; i < jr.n; i++) {
		if (jr.blk[i] >= nblocks)
			die("journal block %" PRIu64 " past the device", jr.blk[i]);
		if (jr.gen[i] <= durable)
			want[jr.blk[i]] = jr.gen[i];
	}
	for (b = 0; b < nblocks; b++) {
		unsigned int s, nd = 0, nl = 0, nz = 0, nbad = 0, first = 0;
		char what[96] = "";

		pread_all(fd, buf, BLK, b * BLK);
		for (s = 0; s < SECS_PER_BLK; s++) {
			const unsigned char *sec = buf + s * SEC;
			uint64_t at = b * BLK + s * SEC, off = 0, gen = 0;
			enum sec_state st = decode_sector(sec, &off, &gen);

			if (st == S_ZERO && !want[b]) {
				nz++;
				continue;
			}
			if (st == S_STAMP && off == at &&
			    gen_allowed(&jr, b, gen, want[b], durable, issued)) {
				if (gen == want[b])
					nd++;
				else
					nl++;
				continue;
			}
			if (!nbad++) {
				first = s;
				describe(what, sizeof(what), sec, at);
			}
		}
		if (nbad) {
			if (bad++ < MAX_REPORT)
				printf("block %" PRIu64 ": %u of %u sectors bad, sector %u holds %s;"
				       " expected %s%" PRIu64 " or a later unflushed gen (durable up to"
				       " gen %" PRIu64 ", issued up to %" PRIu64 ")\n", b, nbad,
				       SECS_PER_BLK, first, what,
				       want[b] ? "gen " : "zeros (never written), gen ",
				       want[b], durable, issued);
		} else if (nz == SECS_PER_BLK) {
			zero++;
		} else if (nd == SECS_PER_BLK) {
			at_durable++;
		} else if (nl == SECS_PER_BLK) {
			later++;
		} else {
			mixed++;
		}
	}
	printf("%s: %" PRIu64 " blocks: %" PRIu64 " at the durable version, %" PRIu64
	       " at a later (unflushed) one, %" PRIu64 " torn between versions, %" PRIu64
	       " never written; %" PRIu64 " bad blocks\n", bad ? "FAIL" : "ok", nblocks,
	       at_durable, later, mixed, zero, bad);
	close(fd);
	free(buf);
	free(want);
	return bad ? 1 : 0;
}

static int cmd_diff(int argc, char **argv)
{
	unsigned char *x = xalloc(BLK), *y = xalloc(BLK);
	uint64_t n, b, ndiff = 0;
	int fa, fb;

	if (argc != 2)
		die("usage: diff A B");
	fa = open_dev(argv[0], O_RDONLY);
	fb = open_dev(argv[1], O_RDONLY);
	n = dev_size(fa);
	if (dev_size(fb) < n)
		n = dev_size(fb);
	for (b = 0; b < n / BLK; b++) {
		char wa[96], wb[96];
		unsigned int s;

		pread_all(fa, x, BLK, b * BLK);
		pread_all(fb, y, BLK, b * BLK);
		if (!memcmp(x, y, BLK))
			continue;
		if (ndiff++ >= MAX_REPORT)
			continue;
		for (s = 0; s < SECS_PER_BLK; s++)
			if (memcmp(x + s * SEC, y + s * SEC, SEC))
				break;
		describe(wa, sizeof(wa), x + s * SEC, b * BLK + s * SEC);
		describe(wb, sizeof(wb), y + s * SEC, b * BLK + s * SEC);
		printf("block %" PRIu64 " (from sector %u): %s, then %s\n", b, s, wa, wb);
	}
	if (dev_size(fa) != dev_size(fb))
		printf("sizes differ: %" PRIu64 " and %" PRIu64 "\n", dev_size(fa), dev_size(fb));
	printf("%" PRIu64 " blocks differ\n", ndiff);
	free(x);
	free(y);
	return ndiff || dev_size(fa) != dev_size(fb);
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(int, char **);
	} cmds[] = {
		{ "list", cmd_list }, { "replay", cmd_replay },
		{ "points", cmd_points }, { "context", cmd_context },
		{ "write", cmd_write }, { "verify", cmd_verify },
		{ "diff", cmd_diff },
	};
	size_t i;

	if (argc < 2) {
		fprintf(stderr, "usage: %s list|replay|points|context|write|verify|diff ...\n", prog);
		return 2;
	}
	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (!strcmp(argv[1], cmds[i].name))
			return cmds[i].fn(argc - 2, argv + 2);
	die("unknown command %s", argv[1]);
	return 2;
}
