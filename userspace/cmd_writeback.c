// SPDX-License-Identifier: GPL-2.0
/*
 * vmcachectl writeback-offline: the dirty data of a cache written back to
 * its origin from userspace, for when the kernel module does not load.
 *
 * The metadata is read and judged as the kernel loads it (ondisk.c).  Every
 * dirty sub-block (every valid one after a power cut in FLUX) is copied
 * from the data area to the origin, the origin is flushed, and only then
 * are the blocks recorded clean with the kernel's commit protocol: each
 * changed mapping page to the copy that does not hold its newest version,
 * stamped seq + 1, a flush, the other superblock slot with seq + 1, a
 * flush.  A run stopped anywhere leaves the previous commit in force, so
 * running it again gives the same end result.
 *
 * --dry-run lists the extents; --export copies them to an image file plus
 * a list instead of the origin, and writes nothing to either device.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "args.h"
#include "cli.h"
#include "cmds.h"
#include "json.h"
#include "ondisk.h"

#define COPY_BYTES	(4u << 20)	/* largest single write to the origin */
#define JOBS_DEFAULT	16u		/* copies in flight */
#define JOBS_MAX	64u
#define COMMIT_EVERY	(1ULL << 30)	/* bytes copied between commits */
#define PAGE_RUN	256u		/* mapping pages per metadata write */
#define PROGRESS_TTY	0.25		/* seconds between redraws */
#define PROGRESS_PLAIN	2.0		/* seconds between lines otherwise */
#define BAR_WIDTH	24

/* a run of sub-blocks of one cache block to copy, in bytes */
struct wb_piece {
	uint64_t cb;		/* cache block */
	uint64_t ooff;		/* on the origin */
	uint64_t coff;		/* on the cache device */
	uint64_t len;
};

/* what a run found and did, for the report */
struct wb_plan {
	struct wb_piece *p;
	size_t n;
	uint64_t blocks;	/* cache blocks with something to copy */
	uint64_t bytes;
	uint64_t extents;	/* origin-contiguous runs of pieces */
	bool flux;		/* FLUX without CLEAN_SHUTDOWN: every valid sub-block */
};

/* the writes of one run, counted for progress and the test hook */
struct wb_io {
	const struct wb_req *r;
	atomic_uint_fast64_t writes;	/* write slots taken (test hook) */
	atomic_uint_fast64_t done;	/* bytes copied */
	atomic_bool failed, stopped;	/* an error; the hook's stop */
	uint64_t total;			/* bytes */
	double t0, last;
	bool show, tty;
};

static int cmp_piece(const void *a, const void *b)
{
	const struct wb_piece *x = a, *y = b;

	return x->ooff < y->ooff ? -1 : x->ooff > y->ooff;
}

/* what the kernel would write back, sorted by origin offset */
static int plan_build(const struct vmc_meta *m, struct wb_plan *pl)
{
	uint64_t bs = le32toh(m->sb.block_size), sub = bs / VMC_SUBBLOCKS;
	uint64_t data = le64toh(m->sb.data_start) * 512;
	size_t cap = 0;

	memset(pl, 0, sizeof(*pl));
	pl->flux = (le32toh(m->sb.flags) & (VMC_SB_FLUX | VMC_SB_CLEAN_SHUTDOWN)) ==
		   VMC_SB_FLUX;
	for (uint64_t cb = 0; cb < m->lay.nr_blocks; cb++) {
		uint64_t e = m->entries[cb];
		unsigned int mask = pl->flux ? vmc_entry_valid(e) : vmc_entry_dirty(e);

		if (!vmc_entry_valid(e) || !mask)
			continue;
		pl->blocks++;
		for (unsigned int i = 0; i < VMC_SUBBLOCKS;) {
			unsigned int j = i;

			if (!(mask & (1u << i))) {
				i++;
				continue;
			}
			while (j < VMC_SUBBLOCKS && (mask & (1u << j)))
				j++;
			if (pl->n == cap) {
				struct wb_piece *np;

				cap = cap ? 2 * cap : 1024;
				np = realloc(pl->p, cap * sizeof(*np));
				if (!np) {
					vmc_err("out of memory");
					return -1;
				}
				pl->p = np;
			}
			pl->p[pl->n].cb = cb;
			pl->p[pl->n].ooff = vmc_entry_oblock(e) * bs + i * sub;
			pl->p[pl->n].coff = data + cb * bs + i * sub;
			pl->p[pl->n].len = (j - i) * sub;
			pl->bytes += pl->p[pl->n].len;
			pl->n++;
			i = j;
		}
	}
	if (pl->n)
		qsort(pl->p, pl->n, sizeof(*pl->p), cmp_piece);
	for (size_t i = 0; i < pl->n; i++)
		if (!i || pl->p[i].ooff != pl->p[i - 1].ooff + pl->p[i - 1].len)
			pl->extents++;
	return 0;
}

/* ---- I/O -------------------------------------------------------------- */

/* vmc_err keeps the last message: one thread at a time */
static pthread_mutex_t err_lock = PTHREAD_MUTEX_INITIALIZER;

static int xpio(int fd, const char *path, void *buf, uint64_t len, uint64_t off,
		bool write)
{
	uint64_t done = 0;

	while (done < len) {
		ssize_t n = write ? pwrite(fd, (char *)buf + done, len - done,
					   (off_t)(off + done)) :
				    pread(fd, (char *)buf + done, len - done,
					  (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int e = errno;

			pthread_mutex_lock(&err_lock);
			vmc_err("%s %s at byte %" PRIu64 ": %s",
				write ? "writing" : "reading", path, off + done,
				n < 0 ? strerror(e) : "beyond its end");
			pthread_mutex_unlock(&err_lock);
			return -1;
		}
		done += (uint64_t)n;
	}
	return 0;
}

static void progress(struct wb_io *io, bool last)
{
	uint64_t copied = atomic_load(&io->done);
	double now = now_mono(), el = now - io->t0, rate;
	double frac = io->total ? (double)copied / (double)io->total : 1.0;
	char bar[BAR_WIDTH + 1], done[32], total[32], speed[32], eta[32];
	int fill = (int)(frac * BAR_WIDTH);

	if (!io->show || (!last && now - io->last <
			  (io->tty ? PROGRESS_TTY : PROGRESS_PLAIN)))
		return;
	io->last = now;
	rate = el > 0 ? (double)copied / el : 0;
	memset(bar, '#', (size_t)fill);
	memset(bar + fill, '-', (size_t)(BAR_WIDTH - fill));
	bar[BAR_WIDTH] = '\0';
	fmt_bytes(copied, done, sizeof(done));
	fmt_bytes(io->total, total, sizeof(total));
	fmt_bytes((uint64_t)rate, speed, sizeof(speed));
	fmt_duration(rate > 0 ? (double)(io->total - copied) / rate : -1, eta,
		     sizeof(eta));
	fprintf(stderr, "%s[%s] %5.1f%%  %s of %s, %s/s, ETA %s%s",
		io->tty ? "\r" : "", bar, 100 * frac, done, total, speed, eta,
		io->tty ? (last ? "\033[K\n" : "\033[K") : "\n");
	fflush(stderr);
}

/*
 * The test hook, taken before each write: false once the run has made its
 * r->stop_after writes, as a crash would (nothing more is written).
 */
static bool may_write(struct wb_io *io)
{
	uint64_t n = atomic_fetch_add(&io->writes, 1) + 1;

	if (!io->r->stop_after || n <= io->r->stop_after)
		return true;
	atomic_store(&io->stopped, true);
	return false;
}

static void stop_note(struct wb_io *io)
{
	if (io->show && io->tty)
		fputc('\n', stderr);
	vmc_err("stopped after %" PRIu64 " writes (--test-stop-after)",
		io->r->stop_after);
}

/*
 * A write: origin-contiguous pieces (at most COPY_BYTES), going to dst at
 * their origin offset or, for an export, at their place in the image
 * (pieces back to back in origin order).
 */
struct wb_run {
	size_t first, end;	/* pieces */
	uint64_t dst, len;
};

struct wb_pool {
	const struct wb_plan *pl;
	const struct wb_run *runs;
	size_t nr_runs;		/* runs[next..nr_runs) to copy */
	atomic_size_t next;
	atomic_uint live;
	uint64_t buf_len;	/* the longest run, page-rounded */
	struct vmc_dev *cache;
	int dst;
	const char *dst_path;
	struct wb_io *io;
};

static size_t runs_build(const struct wb_plan *pl, bool export,
			 struct wb_run *runs, uint64_t *longest)
{
	uint64_t img = 0;
	size_t n = 0;

	*longest = 0;
	for (size_t i = 0; i < pl->n;) {
		struct wb_run *r = &runs[n++];

		r->first = i;
		r->dst = export ? img : pl->p[i].ooff;
		r->len = 0;
		while (i < pl->n && pl->p[i].ooff == pl->p[r->first].ooff + r->len &&
		       r->len + pl->p[i].len <= COPY_BYTES)
			r->len += pl->p[i++].len;
		r->end = i;
		img += r->len;
		if (r->len > *longest)
			*longest = r->len;
	}
	return n;
}

/* one run: its pieces read (cache-contiguous ones together), one write */
static int copy_run(struct wb_pool *w, const struct wb_run *run, uint8_t *buf)
{
	const struct wb_piece *p = w->pl->p;
	uint64_t rc = 0, rlen = 0, rbuf = 0, fill = 0;
	int ret;

	for (size_t i = run->first; i < run->end; i++) {
		if (rlen && p[i].coff != rc + rlen) {
			if (xpio(w->cache->fd, w->cache->path, buf + rbuf, rlen, rc, false))
				return -1;
			rlen = 0;
		}
		if (!rlen) {
			rc = p[i].coff;
			rbuf = fill;
		}
		rlen += p[i].len;
		fill += p[i].len;
	}
	if (rlen && xpio(w->cache->fd, w->cache->path, buf + rbuf, rlen, rc, false))
		return -1;
	if (!may_write(w->io))
		return 1;
	ret = xpio(w->dst, w->dst_path, buf, run->len, run->dst, true);
	if (!ret)
		atomic_fetch_add(&w->io->done, run->len);
	return ret;
}

static void *copy_worker(void *arg)
{
	struct wb_pool *w = arg;
	void *buf = NULL;
	size_t i;

	/* not zeroed: every byte written is read first */
	if (posix_memalign(&buf, VMC_PAGE_SIZE, w->buf_len))
		buf = NULL;
	if (!buf) {
		pthread_mutex_lock(&err_lock);
		vmc_err("out of memory");
		pthread_mutex_unlock(&err_lock);
		atomic_store(&w->io->failed, true);
	}
	while (buf && !atomic_load(&w->io->failed) &&
	       !atomic_load(&w->io->stopped) && !stop_requested() &&
	       (i = atomic_fetch_add(&w->next, 1)) < w->nr_runs) {
		int r;

		r = copy_run(w, &w->runs[i], buf);
		if (r < 0)
			atomic_store(&w->io->failed, true);
		if (r)
			break;
	}
	free(buf);
	atomic_fetch_sub(&w->live, 1);
	return NULL;
}

/*
 * Copies runs[first..end) to dst with up to r->jobs writes in flight, in
 * origin order as far as they go; the main thread shows the progress.
 */
static int copy_runs(const struct wb_plan *pl, const struct wb_run *runs,
		     size_t first, size_t end, uint64_t buf_len,
		     struct vmc_dev *cache, int dst, const char *dst_path,
		     struct wb_io *io)
{
	unsigned int jobs = io->r->jobs ? (unsigned int)io->r->jobs : JOBS_DEFAULT;
	struct wb_pool w = {
		.pl = pl, .runs = runs, .nr_runs = end, .buf_len = buf_len,
		.cache = cache, .dst = dst, .dst_path = dst_path, .io = io,
	};
	pthread_t tid[JOBS_MAX];
	unsigned int started = 0;
	char done[32];

	if (first == end)
		return 0;
	if (jobs > end - first)
		jobs = (unsigned int)(end - first);
	atomic_init(&w.next, first);
	atomic_init(&w.live, jobs);
	for (; started < jobs; started++) {
		if (pthread_create(&tid[started], NULL, copy_worker, &w)) {
			vmc_err("cannot start a copy thread");
			atomic_store(&io->failed, true);
			atomic_fetch_sub(&w.live, jobs - started);
			break;
		}
	}
	while (atomic_load(&w.live)) {
		progress(io, false);
		sleep_or_stop(0.05);
	}
	for (unsigned int i = 0; i < started; i++)
		pthread_join(tid[i], NULL);
	if (atomic_load(&io->failed))
		return -1;
	if (atomic_load(&io->stopped)) {
		stop_note(io);
		return -1;
	}
	if (stop_requested()) {
		if (io->show && io->tty)
			fputc('\n', stderr);
		vmc_err("interrupted after %s; what was not committed clean yet stays dirty: run the command again",
			fmt_bytes(atomic_load(&io->done), done, sizeof(done)));
		return -1;
	}
	return 0;
}

/* the runs of a plan; *buf_len the longest, page-rounded */
static struct wb_run *runs_alloc(const struct wb_plan *pl, bool export,
				 size_t *nr, uint64_t *buf_len)
{
	struct wb_run *runs = malloc((pl->n ? pl->n : 1) * sizeof(*runs));

	if (!runs) {
		vmc_err("out of memory");
		return NULL;
	}
	*nr = runs_build(pl, export, runs, buf_len);
	*buf_len = (*buf_len + VMC_PAGE_SIZE - 1) / VMC_PAGE_SIZE * VMC_PAGE_SIZE;
	if (!*buf_len)
		*buf_len = VMC_PAGE_SIZE;
	return runs;
}

/* ---- the commit ------------------------------------------------------- */

/* the area a commit writes page p to: the one not holding its newest copy */
static unsigned int target_slot(const struct vmc_meta *m, uint64_t p)
{
	return (m->mpage_use[p] & 1) ^ 1;
}

/*
 * data_crc: a CRC page copy left by an interrupted commit (stamped above
 * the superblock) would come to life with seq + 1: rewrite it with the
 * copy in use, after the mapping pages covering its blocks (which the
 * caller marked changed) are durable, as the kernel does.
 */
static int crc_leftovers(struct vmc_dev *d, struct vmc_meta *m, uint64_t seq,
			 uint8_t *buf)
{
	bool synced = false;

	for (uint64_t q = 0; m->data_crc && q < m->lay.nr_cpages; q++) {
		struct vmc_cpage *pg = (void *)buf;

		if (!(m->cpage_use[q] & VMC_MP_FUTURE))
			continue;
		if (!synced && vmc_dev_sync(d))
			return -1;
		synced = true;
		memcpy(pg, &m->cpages[q], VMC_PAGE_SIZE);
		pg->hdr.seq = htole64(seq);
		vmc_mpage_seal(m->sb.uuid, (void *)pg);
		if (vmc_dev_write(d, pg, 1, vmc_cpage_sector(&m->lay,
				  (m->cpage_use[q] & 1) ^ 1, q)))
			return -1;
	}
	return 0;
}

/*
 * Records the blocks of pieces [first, end) clean, as a kernel commit
 * would: the changed mapping pages (and any page holding a copy newer than
 * the superblock, which seq + 1 would otherwise bring to life) to the copy
 * not in use, stamped seq + 1; a flush; the other superblock slot; a
 * flush.  The last commit (final) also drops FLUX and says clean shutdown;
 * the ones before keep the flags, so that a crash between them leaves
 * what the rest of the cache needs.  m follows: it is the commit in force.
 */
static int commit_clean(struct vmc_dev *d, struct vmc_meta *m,
			const struct wb_plan *pl, size_t first, size_t end,
			bool final, struct wb_io *io)
{
	uint64_t seq = le64toh(m->sb.seq) + 1, nr = m->lay.nr_mpages, nr_dirty = 0;
	uint8_t *changed = calloc(nr ? nr : 1, 1), *buf;
	struct vmc_superblock *sb;
	int other = !m->slot, ret = -1;
	bool any = final;
	uint32_t flags;

	buf = vmc_pages_alloc(PAGE_RUN);
	if (!changed || !buf) {
		vmc_err("out of memory");
		goto out;
	}
	for (size_t i = first; i < end; i++) {
		uint64_t cb = pl->p[i].cb, e = m->entries[cb];

		if (!vmc_entry_dirty(e))
			continue;
		m->entries[cb] = vmc_entry_pack(vmc_entry_oblock(e),
						vmc_entry_valid(e), 0);
		changed[cb / VMC_ENTRIES_PER_PAGE] = 1;
		any = true;
	}
	if (!any) {	/* nothing to record yet */
		ret = 0;
		goto out;
	}
	for (uint64_t p = 0; p < nr; p++)
		if (m->mpage_use[p] & VMC_MP_FUTURE)
			changed[p] = 1;
	for (uint64_t q = 0; m->data_crc && q < m->lay.nr_cpages; q++) {
		uint64_t b0 = q * VMC_CRC_BLOCKS_PER_PAGE;
		uint64_t b1 = b0 + VMC_CRC_BLOCKS_PER_PAGE - 1;

		if (!(m->cpage_use[q] & VMC_MP_FUTURE))
			continue;
		if (b1 >= m->lay.nr_blocks)
			b1 = m->lay.nr_blocks - 1;
		changed[b0 / VMC_ENTRIES_PER_PAGE] = 1;
		changed[b1 / VMC_ENTRIES_PER_PAGE] = 1;
	}
	for (uint64_t cb = 0; cb < m->lay.nr_blocks; cb++)
		nr_dirty += vmc_entry_dirty(m->entries[cb]) != 0;
	for (uint64_t p = 0; p < nr;) {
		unsigned int slot = target_slot(m, p), k = 0;

		if (!changed[p]) {
			p++;
			continue;
		}
		/* a run of changed pages going to the same area */
		while (p + k < nr && k < PAGE_RUN && changed[p + k] &&
		       target_slot(m, p + k) == slot) {
			struct vmc_mpage *pg = (void *)(buf + (size_t)k * VMC_PAGE_SIZE);
			uint64_t first_cb = (p + k) * VMC_ENTRIES_PER_PAGE;

			memset(pg, 0, sizeof(*pg));
			pg->hdr.index = htole32((uint32_t)(p + k));
			pg->hdr.seq = htole64(seq);
			for (uint64_t i = 0; i < VMC_ENTRIES_PER_PAGE &&
			     first_cb + i < m->lay.nr_blocks; i++)
				pg->entries[i] = htole64(m->entries[first_cb + i]);
			vmc_mpage_seal(m->sb.uuid, pg);
			k++;
		}
		if (!may_write(io)) {
			stop_note(io);
			goto out;
		}
		if (vmc_dev_write(d, buf, k, vmc_mpage_sector(&m->lay, slot, p)))
			goto out;
		p += k;
	}
	if (crc_leftovers(d, m, seq, buf))
		goto out;
	/* the pages durable before the superblock that gives them meaning */
	if (vmc_dev_sync(d))
		goto out;
	sb = (void *)buf;
	memset(buf, 0, VMC_PAGE_SIZE);
	*sb = m->sb;
	flags = le32toh(sb->flags);
	if (final)
		flags = (flags & ~VMC_SB_FLUX) | VMC_SB_CLEAN_SHUTDOWN;
	sb->flags = htole32(flags);
	sb->location = htole64((uint64_t)other * VMC_PAGE_SECTORS);
	sb->seq = htole64(seq);
	sb->nr_dirty = htole64(nr_dirty);
	sb->nr_valid = htole64(m->nr_valid);
	sb->commit_time = htole64((uint64_t)time(NULL));
	vmc_sb_seal(sb);
	if (!may_write(io)) {
		stop_note(io);
		goto out;
	}
	if (vmc_dev_write(d, sb, 1, (uint64_t)other * VMC_PAGE_SECTORS) ||
	    vmc_dev_sync(d))
		goto out;
	/* this commit is the one in force now */
	m->sb = *sb;
	m->slot = other;
	m->nr_dirty = nr_dirty;
	for (uint64_t p = 0; p < nr; p++)
		if (changed[p])
			m->mpage_use[p] = (uint8_t)target_slot(m, p);
	for (uint64_t q = 0; m->data_crc && q < m->lay.nr_cpages; q++)
		if (m->cpage_use[q] & VMC_MP_FUTURE)
			m->cpage_use[q] = (m->cpage_use[q] & 1) ^ 1;
	ret = 0;
out:
	free(changed);
	free(buf);
	return ret;
}

/*
 * The writeback: batches of about r->commit_every bytes, each copied,
 * the origin flushed, then its blocks committed clean (a block whose
 * pieces straddle the end of a batch waits for the next one), so that an
 * interrupted run keeps what it finished.
 */
static int writeback(const struct wb_req *r, struct vmc_dev *cache,
		     struct vmc_dev *origin, struct vmc_meta *m,
		     const struct wb_plan *pl, struct wb_io *io)
{
	uint64_t every = r->commit_every ? r->commit_every : COMMIT_EVERY;
	size_t nr_runs, r0 = 0, clean_from = 0;
	uint64_t buf_len;
	struct wb_run *runs = runs_alloc(pl, false, &nr_runs, &buf_len);
	int ret = -1;

	if (!runs)
		return -1;
	for (;;) {
		size_t r1 = r0, e;
		uint64_t bytes = 0;
		bool final;

		while (r1 < nr_runs && (r1 == r0 || bytes < every))
			bytes += runs[r1++].len;
		final = r1 == nr_runs;
		/* nothing is recorded clean before the origin has it on stable media */
		if (copy_runs(pl, runs, r0, r1, buf_len, cache, origin->fd,
			      origin->path, io) || vmc_dev_sync(origin))
			goto out;
		e = final ? pl->n : runs[r1].first;
		while (!final && e > clean_from && pl->p[e - 1].cb == pl->p[e].cb)
			e--;
		if (final)
			progress(io, true);
		if (commit_clean(cache, m, pl, clean_from, e, final, io))
			goto out;
		clean_from = e;
		r0 = r1;
		if (final)
			break;
	}
	ret = 0;
out:
	free(runs);
	return ret;
}

/* ---- reading and judging ---------------------------------------------- */

/* the metadata as the kernel loads it, or -1 with the reason given */
static int load_meta(struct vmc_dev *d, struct vmc_meta *m)
{
	if (vmc_meta_read_sb(d, m))
		return -1;
	if (m->slot < 0) {
		if (m->blank)
			vmc_err("%s is blank: it holds no cache, so no dirty data (if it held a cache, it was wiped or replaced and that data is gone)",
				d->path);
		else
			vmc_err("%s holds no valid vmcache superblock ('vmcachectl check %s' says why)",
				d->path, d->path);
		return -1;
	}
	if (le32toh(m->sb.flags) & VMC_SB_NEEDS_CHECK) {
		vmc_err("%s: the metadata is flagged needs_check, which the kernel refuses too; run 'vmcachectl check %s' first",
			d->path, d->path);
		return -1;
	}
	if (vmc_meta_read_mappings(d, m))
		return -1;
	if (m->count[VMC_ERROR]) {
		vmc_err("%s: the metadata has %zu errors, the kernel would refuse it: 'vmcachectl check %s' lists them",
			d->path, m->count[VMC_ERROR], d->path);
		return -1;
	}
	return 0;
}

/* ---- output ----------------------------------------------------------- */

static void list_text(const struct vmc_meta *m, const struct wb_plan *pl)
{
	uint64_t bs = le32toh(m->sb.block_size);

	printf("%16s %12s  %s\n", "origin offset", "length", "origin blocks");
	for (size_t i = 0; i < pl->n;) {
		uint64_t start = pl->p[i].ooff, end = start;

		while (i < pl->n && pl->p[i].ooff == end)
			end += pl->p[i++].len;
		printf("%16" PRIu64 " %12" PRIu64 "  %" PRIu64 "-%" PRIu64 "\n",
		       start, end - start, start / bs, (end - 1) / bs);
	}
}

static void list_json(struct json *j, const struct vmc_meta *m,
		      const struct wb_plan *pl)
{
	uint64_t bs = le32toh(m->sb.block_size);

	json_begin_array(j, "extents");
	for (size_t i = 0; i < pl->n;) {
		uint64_t start = pl->p[i].ooff, end = start;

		while (i < pl->n && pl->p[i].ooff == end)
			end += pl->p[i++].len;
		json_begin_object(j, NULL);
		json_u64(j, "offset", start);
		json_u64(j, "length", end - start);
		json_u64(j, "first_block", start / bs);
		json_u64(j, "last_block", (end - 1) / bs);
		json_end_object(j);
	}
	json_end_array(j);
}

static const char *what_name(const struct wb_plan *pl)
{
	return pl->flux ? "cached (FLUX: every valid sub-block)" : "dirty";
}

static void report(const struct wb_req *r, const struct vmc_meta *m,
		   const struct wb_plan *pl, const char *result, uint64_t seq,
		   double secs)
{
	char size[32], dur[32];
	struct json j;

	if (!r->json) {
		fmt_bytes(pl->bytes, size, sizeof(size));
		if (r->dry_run) {
			printf("%s: %" PRIu64 " %s blocks, %" PRIu64 " extents, %" PRIu64
			       " bytes (%s) to write back; superblock slot %d, seq %" PRIu64 "\n",
			       r->cache, pl->blocks, what_name(pl), pl->extents,
			       pl->bytes, size, m->slot, le64toh(m->sb.seq));
			if (pl->n)
				list_text(m, pl);
		} else if (!strcmp(result, "nothing")) {
			printf("%s: nothing to write back (0 dirty blocks, seq %" PRIu64
			       "); nothing written\n", r->cache, seq);
		} else if (r->export) {
			printf("%s: %" PRIu64 " %s blocks, %" PRIu64 " extents, %s exported to %s (list in %s.list) in %s; the devices are unchanged\n",
			       r->cache, pl->blocks, what_name(pl), pl->extents,
			       size, r->export, r->export,
			       fmt_duration(secs, dur, sizeof(dur)));
		} else {
			printf("%s: %" PRIu64 " %s blocks, %" PRIu64 " extents, %s written back to %s in %s (%.2f s); recorded clean at seq %" PRIu64 ": 0 dirty blocks\n",
			       r->cache, pl->blocks, what_name(pl), pl->extents, size,
			       r->origin, fmt_duration(secs, dur, sizeof(dur)), secs,
			       seq);
		}
		return;
	}
	json_init(&j, stdout);
	json_begin_object(&j, NULL);
	json_str(&j, "cache", r->cache);
	if (r->origin)
		json_str(&j, "origin", r->origin);
	else
		json_null(&j, "origin");
	json_str(&j, "result", result);
	json_bool(&j, "flux", pl->flux);
	json_u64(&j, "seq", seq);
	json_u64(&j, "blocks", pl->blocks);
	json_u64(&j, "extent_count", pl->extents);
	json_u64(&j, "bytes", pl->bytes);
	if (r->export)
		json_str(&j, "export", r->export);
	if (!r->dry_run)
		json_double(&j, "seconds", secs);
	else
		list_json(&j, m, pl);
	json_end_object(&j);
	json_finish(&j);
}

/* ---- export ----------------------------------------------------------- */

static int export_list(const char *path, const struct vmc_meta *m,
		       const struct wb_plan *pl, const char *cache)
{
	uint64_t img = 0;
	char uuid[37];
	FILE *f = fopen(path, "wx");

	if (!f) {
		vmc_err("cannot create %s: %s", path, strerror(errno));
		return -1;
	}
	vmc_uuid_str(m->sb.uuid, uuid);
	fprintf(f, "# vmcachectl writeback-offline --export of %s: uuid %s, seq %" PRIu64
		", block size %u, origin %" PRIu64 " sectors, %s\n",
		cache, uuid, le64toh(m->sb.seq), le32toh(m->sb.block_size),
		le64toh(m->sb.origin_sectors),
		pl->flux ? "FLUX (every valid sub-block)" : "dirty sub-blocks");
	fprintf(f, "# origin_byte_offset length image_byte_offset\n");
	for (size_t i = 0; i < pl->n;) {
		uint64_t start = pl->p[i].ooff, end = start;

		while (i < pl->n && pl->p[i].ooff == end)
			end += pl->p[i++].len;
		fprintf(f, "%" PRIu64 " %" PRIu64 " %" PRIu64 "\n", start,
			end - start, img);
		img += end - start;
	}
	if (fflush(f) || fsync(fileno(f))) {
		vmc_err("writing %s: %s", path, strerror(errno));
		fclose(f);
		return -1;
	}
	return fclose(f) ? -1 : 0;
}

static int do_export(const struct wb_req *r, struct vmc_dev *cache,
		     const struct vmc_meta *m, const struct wb_plan *pl,
		     struct wb_io *io)
{
	struct wb_run *runs;
	size_t nr_runs;
	uint64_t buf_len;
	char list[4096];
	int fd, ret;

	if ((size_t)snprintf(list, sizeof(list), "%s.list", r->export) >= sizeof(list)) {
		vmc_err("--export: path too long");
		return -1;
	}
	fd = open(r->export, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		vmc_err("cannot create %s: %s%s", r->export, strerror(errno),
			errno == EEXIST ? " (an export never overwrites a file)" : "");
		return -1;
	}
	runs = runs_alloc(pl, true, &nr_runs, &buf_len);
	ret = runs ? copy_runs(pl, runs, 0, nr_runs, buf_len, cache, fd,
			       r->export, io) : -1;
	free(runs);
	if (!ret && fsync(fd)) {
		vmc_err("writing %s: %s", r->export, strerror(errno));
		ret = -1;
	}
	close(fd);
	if (!ret)
		ret = export_list(list, m, pl, r->cache);
	return ret;
}

/* ---- the command ------------------------------------------------------ */

int writeback_offline_run(const struct wb_req *r)
{
	bool write = !r->dry_run && !r->export;
	struct vmc_dev cache = { .fd = -1 }, origin = { .fd = -1 };
	struct vmc_meta m;
	struct wb_plan pl = { 0 };
	struct wb_io io = { .r = r };
	uint64_t seq;
	double t0;
	int ret = EXIT_FAIL;

	memset(&m, 0, sizeof(m));
	vmc_clear_error();
	if (vmc_dev_open(&cache, r->cache, write ? VMC_DEV_WRITE : 0))
		goto out;
	if (r->origin) {
		if (vmc_dev_open(&origin, r->origin, write ? VMC_DEV_WRITE : 0))
			goto out;
		if (cache.is_blk && origin.is_blk && cache.rdev == origin.rdev) {
			vmc_err("the cache and the origin are the same device");
			goto out;
		}
	}
	if (load_meta(&cache, &m))
		goto out;
	/* data_crc: damaged dirty data must not replace the origin's copy */
	if (vmc_meta_check_data(&cache, &m))
		goto out;
	if (m.nr_crc_bad) {
		vmc_err("%s: %" PRIu64 " dirty sectors fail their checksum ('vmcachectl check %s' lists them): written back they would replace the origin's older copies with damaged data; nothing written (the kernel drops them at writeback)",
			r->cache, m.nr_crc_bad, r->cache);
		goto out;
	}
	if (r->origin && origin.sectors != le64toh(m.sb.origin_sectors)) {
		vmc_err("%s caches an origin of %" PRIu64 " sectors, %s has %" PRIu64
			": the wrong origin (the kernel refuses it too); nothing written",
			r->cache, le64toh(m.sb.origin_sectors), r->origin,
			origin.sectors);
		goto out;
	}
	if (plan_build(&m, &pl))
		goto out;
	seq = le64toh(m.sb.seq);
	if (r->dry_run) {
		report(r, &m, &pl, "dry_run", seq, 0);
		ret = EXIT_OK;
		goto out;
	}
	if (!pl.n && (!pl.flux || r->export)) {
		report(r, &m, &pl, "nothing", seq, 0);
		ret = EXIT_OK;
		goto out;
	}
	io.total = pl.bytes;
	io.tty = isatty(STDERR_FILENO);
	io.show = r->progress || (io.tty && !r->no_progress);
	io.t0 = t0 = now_mono();
	io.last = -1e9;
	catch_stop_signals();
	if (r->export) {
		if (do_export(r, &cache, &m, &pl, &io))
			goto out;
		progress(&io, true);
		report(r, &m, &pl, "exported", seq, now_mono() - t0);
		ret = EXIT_OK;
		goto out;
	}
	if (writeback(r, &cache, &origin, &m, &pl, &io))
		goto out;
	seq = le64toh(m.sb.seq);
	/* read back what the kernel will load */
	vmc_meta_free(&m);
	if (load_meta(&cache, &m))
		goto out;
	if (le64toh(m.sb.seq) != seq || m.nr_dirty ||
	    (le32toh(m.sb.flags) & VMC_SB_FLUX)) {
		vmc_err("%s: the commit did not read back (seq %" PRIu64 ", %" PRIu64
			" dirty blocks); run 'vmcachectl check %s'",
			r->cache, le64toh(m.sb.seq), m.nr_dirty, r->cache);
		goto out;
	}
	report(r, &m, &pl, "clean", seq, now_mono() - t0);
	ret = EXIT_OK;
out:
	if (ret != EXIT_OK && r->json)
		vmc_json_error();
	free(pl.p);
	vmc_meta_free(&m);
	vmc_dev_close(&cache);
	vmc_dev_close(&origin);
	return ret;
}

int cmd_writeback_offline(int argc, char **argv)
{
	const char *pos[2] = { NULL, NULL };
	struct wb_req r = { 0 };
	const struct opt opts[] = {
		{ "dry-run", 'n', OPT_FLAG, &r.dry_run, NULL },
		{ "export", 'e', OPT_STR, &r.export, NULL },
		{ "json", 'j', OPT_FLAG, &r.json, NULL },
		{ "progress", 'p', OPT_FLAG, &r.progress, NULL },
		{ "no-progress", 0, OPT_FLAG, &r.no_progress, NULL },
		{ "jobs", 0, OPT_U64, &r.jobs, NULL },
		/* not in the usage: tests stop a run as a crash would */
		{ "test-stop-after", 0, OPT_U64, &r.stop_after, NULL },
		/* not in the usage: small batches for the tests */
		{ "test-commit-every", 0, OPT_U64, &r.commit_every, NULL },
	};
	const struct cmd_spec spec = {
		"writeback-offline",
		"writeback-offline CACHE_DEV ORIGIN_DEV [--progress|--no-progress] [--jobs N] [--json]\n"
		"   or: vmcachectl writeback-offline CACHE_DEV [ORIGIN_DEV] --dry-run [--json]\n"
		"   or: vmcachectl writeback-offline CACHE_DEV [ORIGIN_DEV] --export FILE [--json]\n"
		"Without the kernel module (the cache must not be active): copy every dirty\n"
		"sub-block of the cache to the origin, flush it, then record the blocks clean\n"
		"with the kernel's commit protocol, every 1 GiB copied.  Safe to interrupt\n"
		"and to run again.\n"
		"After a power cut in FLUX, every cached sub-block is copied (the cache\n"
		"copy wins, as the kernel does).  Refuses devices in use, a cache recorded\n"
		"for an origin of another size, metadata the kernel would refuse.\n"
		"  -n, --dry-run      list the extents to write back (origin byte offset,\n"
		"                     length, origin blocks) and the bytes; write nothing\n"
		"  -e, --export FILE  copy the extents to the new image FILE and list them\n"
		"                     in FILE.list (origin offset, length, image offset, in\n"
		"                     bytes); nothing is written to either device\n"
		"  -p, --progress     progress with an ETA on stderr even when it is not a\n"
		"                     terminal (on a terminal it is shown by default)\n"
		"      --no-progress  no progress\n"
		"      --jobs N       copies in flight, 1..64 (default 16)\n"
		"  -j, --json         one JSON document (with --dry-run, every extent)",
		opts, ARRAY_SIZE(opts), pos, 1, 2, NULL,
	};
	int ret = parse_args(argc, argv, &spec);

	if (ret != PARSE_RUN)
		return ret;
	r.cache = pos[0];
	r.origin = pos[1];
	if (r.dry_run && r.export) {
		vmc_err("--dry-run and --export exclude each other");
		return EXIT_USAGE;
	}
	if (!r.origin && !r.dry_run && !r.export) {
		vmc_err("give the origin device (only --dry-run and --export do without it)");
		return EXIT_USAGE;
	}
	if (r.jobs > JOBS_MAX) {
		vmc_err("--jobs: at most %u", JOBS_MAX);
		return EXIT_USAGE;
	}
	if (r.progress && r.no_progress) {
		vmc_err("--progress and --no-progress exclude each other");
		return EXIT_USAGE;
	}
	return writeback_offline_run(&r);
}
