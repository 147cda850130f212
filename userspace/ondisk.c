// SPDX-License-Identifier: GPL-2.0
/*
 * vmcachectl: offline metadata access.  Reads both superblock slots and
 * both copies of every mapping page and picks what the kernel would load
 * (vmcache_ondisk.h): the valid superblock with the highest seq, and per
 * page the valid copy with the highest seq not above the superblock's.
 * Every problem found becomes one message with a severity; nothing here
 * writes except vmc_format() and vmc_wipe().
 */
#include "ondisk.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define L32(x) le32toh(x)
#define L64(x) le64toh(x)
#define CHUNK_PAGES 256u	/* pages per read or write, 1 MiB */

/* ---- CRC-32C ---------------------------------------------------------- */

#define CRC32C_POLY_REFLECTED 0x82f63b78u

uint32_t vmc_crc32c(uint32_t crc, const void *buf, size_t len)
{
	static uint32_t table[256];
	const uint8_t *p = buf;

	if (!table[1]) {
		for (uint32_t i = 0; i < 256; i++) {
			uint32_t c = i;

			for (int k = 0; k < 8; k++)
				c = c & 1 ? (c >> 1) ^ CRC32C_POLY_REFLECTED : c >> 1;
			table[i] = c;
		}
	}
	while (len--)
		crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return crc;
}

/* continues crc over a page whose first 4 bytes (csum) count as zero */
static uint32_t page_crc(uint32_t crc, const void *page)
{
	static const uint8_t zero_csum[4];

	crc = vmc_crc32c(crc, zero_csum, sizeof(zero_csum));
	crc = vmc_crc32c(crc, (const uint8_t *)page + sizeof(zero_csum),
			 VMC_PAGE_SIZE - sizeof(zero_csum));
	return ~crc;
}

uint32_t vmc_sb_csum(const struct vmc_superblock *sb)
{
	return page_crc(VMC_CRC_SEED, sb);
}

uint32_t vmc_mpage_csum(const uint8_t uuid[16], const struct vmc_mpage *pg)
{
	return page_crc(vmc_crc32c(VMC_CRC_SEED, uuid, 16), pg);
}

void vmc_sb_seal(struct vmc_superblock *sb)
{
	sb->csum = htole32(vmc_sb_csum(sb));
}

void vmc_mpage_seal(const uint8_t uuid[16], struct vmc_mpage *pg)
{
	pg->hdr.csum = htole32(vmc_mpage_csum(uuid, pg));
}

/* ---- device access ------------------------------------------------------ */

void *vmc_pages_alloc(uint64_t pages)
{
	void *p;

	if (posix_memalign(&p, VMC_PAGE_SIZE, pages * VMC_PAGE_SIZE))
		return NULL;
	memset(p, 0, pages * VMC_PAGE_SIZE);
	return p;
}

int vmc_dev_open(struct vmc_dev *d, const char *path, int flags)
{
	int oflags = (flags & VMC_DEV_WRITE ? O_RDWR : O_RDONLY) | O_CLOEXEC;
	uint64_t bytes = 0;
	struct stat st;

	memset(d, 0, sizeof(*d));
	d->fd = -1;
	d->path = path;
	if (stat(path, &st)) {
		vmc_err("%s: %s", path, strerror(errno));
		return -1;
	}
	if (S_ISBLK(st.st_mode)) {
		d->is_blk = true;
		d->rdev = st.st_rdev;
		oflags |= O_DIRECT | (flags & VMC_DEV_SHARED ? 0 : O_EXCL);
	} else if (!S_ISREG(st.st_mode)) {
		vmc_err("%s is neither a block device nor an image file", path);
		return -1;
	}
	d->fd = open(path, oflags);
	if (d->fd < 0) {
		if (errno == EBUSY)
			vmc_err("%s is in use (mounted, swap, or held by an active cache or another device-mapper or md device); stop that user first",
				path);
		else
			vmc_err("cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	if (d->is_blk ? ioctl(d->fd, BLKGETSIZE64, &bytes) :
			fstat(d->fd, &st)) {
		vmc_err("cannot get the size of %s: %s", path, strerror(errno));
		vmc_dev_close(d);
		return -1;
	}
	d->sectors = (d->is_blk ? bytes : (uint64_t)st.st_size) >> 9;
	return 0;
}

void vmc_dev_close(struct vmc_dev *d)
{
	if (d->fd >= 0)
		close(d->fd);
	d->fd = -1;
}

static int dev_io(struct vmc_dev *d, void *buf, uint64_t pages,
		  uint64_t sector, bool write)
{
	size_t len = pages * VMC_PAGE_SIZE, done = 0;

	while (done < len) {
		off_t off = (off_t)(sector * 512 + done);
		ssize_t n = write ? pwrite(d->fd, (char *)buf + done, len - done, off)
				  : pread(d->fd, (char *)buf + done, len - done, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			vmc_err("%s %s at sector %" PRIu64 ": %s",
				write ? "writing" : "reading", d->path, sector,
				n < 0 ? strerror(errno) : "beyond the end of the device");
			return -1;
		}
		done += (size_t)n;
	}
	return 0;
}

int vmc_dev_read(struct vmc_dev *d, void *buf, uint64_t pages, uint64_t sector)
{
	return dev_io(d, buf, pages, sector, false);
}

int vmc_dev_write(struct vmc_dev *d, const void *buf, uint64_t pages,
		  uint64_t sector)
{
	return dev_io(d, (void *)buf, pages, sector, true);
}

int vmc_dev_sync(struct vmc_dev *d)
{
	if (fsync(d->fd)) {
		vmc_err("flushing %s: %s", d->path, strerror(errno));
		return -1;
	}
	return 0;
}

/* ---- messages ------------------------------------------------------------ */

const char *vmc_sev_name(enum vmc_sev s)
{
	static const char *const names[] = { "info", "warning", "error" };

	return names[s];
}

__attribute__((format(printf, 5, 6)))
static void msg(struct vmc_meta *m, enum vmc_sev sev, int slot,
		const char *stage, const char *fmt, ...)
{
	struct vmc_msg *x;
	va_list ap;

	m->count[sev]++;
	if (m->nr_msgs == VMC_MAX_MSGS)
		return;
	x = &m->msgs[m->nr_msgs++];
	x->sev = sev;
	x->slot = slot;
	x->stage = stage;
	va_start(ap, fmt);
	vsnprintf(x->text, sizeof(x->text), fmt, ap);
	va_end(ap);
}

int vmc_meta_result(const struct vmc_meta *m)
{
	if (m->count[VMC_ERROR])
		return CHECK_CORRUPT;
	return m->count[VMC_WARNING] ? CHECK_WARNINGS : CHECK_CLEAN;
}

void vmc_meta_free(struct vmc_meta *m)
{
	free(m->entries);
	m->entries = NULL;
	free(m->mpage_use);
	m->mpage_use = NULL;
	free(m->cpages);
	m->cpages = NULL;
	free(m->cpage_use);
	m->cpage_use = NULL;
	free(m->crc_bad);
	m->crc_bad = NULL;
	m->nr_crc_bad = 0;
}

static bool all_zero(const void *p, size_t n)
{
	const uint8_t *b = p;

	return !b[0] && !memcmp(b, b + 1, n - 1);
}

/* ---- stage 1: superblock ----------------------------------------------- */

#define SB "superblock"

static bool check_geometry(struct vmc_dev *d, struct vmc_meta *m, int s,
			   const struct vmc_superblock *sb)
{
	uint32_t bs = L32(sb->block_size);
	uint64_t cs = L64(sb->cache_sectors), nb = L64(sb->nr_blocks);
	uint64_t nv = L64(sb->nr_valid), nd = L64(sb->nr_dirty);
	uint32_t flags = L32(sb->flags);
	size_t errors = m->count[VMC_ERROR];
	int crc = !!(L64(sb->incompat) & VMC_FEATURE_INCOMPAT_DATA_CRC);
	struct vmc_layout l;

	if (bs < VMC_BLOCK_SIZE_MIN || bs > VMC_BLOCK_SIZE_MAX || (bs & (bs - 1))) {
		msg(m, VMC_ERROR, s, SB,
		    "slot %d: block_size %u is not a power of two in %u..%u",
		    s, bs, VMC_BLOCK_SIZE_MIN, VMC_BLOCK_SIZE_MAX);
		return false;
	}
	if (cs > d->sectors)
		msg(m, VMC_ERROR, s, SB,
		    "slot %d: cache_sectors is %" PRIu64 " but the device has %" PRIu64
		    " sectors (it shrank, or this is the wrong device)",
		    s, cs, d->sectors);
	if (crc && bs != VMC_BLOCK_SIZE_MIN)
		msg(m, VMC_ERROR, s, SB,
		    "slot %d: data_crc with block_size %u (it needs 4096)", s, bs);
	vmc_compute_layout_crc(cs, bs, crc, &l);
	if (nb != l.nr_blocks)
		msg(m, VMC_ERROR, s, SB,
		    "slot %d: nr_blocks is %" PRIu64 ", the layout of %" PRIu64
		    " sectors has %" PRIu64, s, nb, cs, (uint64_t)l.nr_blocks);
	if (L32(sb->nr_mpages) != l.nr_mpages)
		msg(m, VMC_ERROR, s, SB, "slot %d: nr_mpages is %u, expected %u",
		    s, L32(sb->nr_mpages), l.nr_mpages);
	if (L64(sb->data_start) != l.data_start)
		msg(m, VMC_ERROR, s, SB,
		    "slot %d: data_start is %" PRIu64 ", expected %" PRIu64,
		    s, L64(sb->data_start), (uint64_t)l.data_start);
	if (l.nr_blocks < VMC_MIN_BLOCKS)
		msg(m, VMC_ERROR, s, SB,
		    "slot %d: %" PRIu64 " blocks, fewer than the minimum %u",
		    s, (uint64_t)l.nr_blocks, VMC_MIN_BLOCKS);
	if (!L64(sb->origin_sectors))
		msg(m, VMC_ERROR, s, SB, "slot %d: origin_sectors is 0", s);
	if (!L64(sb->seq))
		msg(m, VMC_ERROR, s, SB, "slot %d: seq is 0 (commits start at 1)", s);
	if (nv > nb)
		msg(m, VMC_ERROR, s, SB,
		    "slot %d: nr_valid %" PRIu64 " exceeds nr_blocks %" PRIu64,
		    s, nv, nb);
	if (nd > nv)
		msg(m, VMC_ERROR, s, SB,
		    "slot %d: nr_dirty %" PRIu64 " exceeds nr_valid %" PRIu64,
		    s, nd, nv);
	if (L32(sb->mode) > VMC_MODE_PASSTHROUGH)
		msg(m, VMC_ERROR, s, SB, "slot %d: unknown mode %u", s,
		    L32(sb->mode));
	if (flags & ~(VMC_SB_CLEAN_SHUTDOWN | VMC_SB_NEEDS_CHECK | VMC_SB_FLUX))
		msg(m, VMC_WARNING, s, SB, "slot %d: unknown flags 0x%x", s,
		    flags & ~(VMC_SB_CLEAN_SHUTDOWN | VMC_SB_NEEDS_CHECK |
			      VMC_SB_FLUX));
	return m->count[VMC_ERROR] == errors;
}

/* location, magic, checksum, version, features, geometry: true if usable */
static bool check_slot(struct vmc_dev *d, struct vmc_meta *m, int s,
		       const struct vmc_superblock *sb)
{
	uint64_t want = (uint64_t)s * VMC_PAGE_SECTORS;
	uint64_t unknown;
	uint32_t crc, v;
	bool ok = true;

	if (all_zero(sb, sizeof(*sb))) {
		msg(m, VMC_INFO, s, SB, "slot %d: empty (never written)", s);
		return false;
	}
	if (L64(sb->location) != want) {
		msg(m, VMC_ERROR, s, SB,
		    "slot %d: location is sector %" PRIu64 ", expected %" PRIu64
		    " (a misdirected write)", s, L64(sb->location), want);
		ok = false;
	}
	if (L64(sb->magic) != VMC_MAGIC) {
		msg(m, VMC_ERROR, s, SB,
		    "slot %d: bad magic 0x%016" PRIx64 ", expected 0x%016llx",
		    s, L64(sb->magic), VMC_MAGIC);
		ok = false;
	}
	crc = vmc_sb_csum(sb);
	if (L32(sb->csum) != crc) {
		msg(m, VMC_ERROR, s, SB,
		    "slot %d: checksum mismatch: stored 0x%08x, computed 0x%08x",
		    s, L32(sb->csum), crc);
		ok = false;
	}
	if (!ok)
		return false;
	v = L32(sb->version);
	if (v < VMC_VERSION_MIN || v > VMC_VERSION_MAX) {
		msg(m, VMC_ERROR, s, SB,
		    "slot %d: format version %u is not supported (this vmcachectl reads %d..%d)",
		    s, v, VMC_VERSION_MIN, VMC_VERSION_MAX);
		return false;
	}
	unknown = L64(sb->incompat) & ~VMC_FEATURE_INCOMPAT_SUPP;
	if (unknown) {
		msg(m, VMC_ERROR, s, SB,
		    "slot %d: unknown incompatible features 0x%" PRIx64
		    ": the kernel refuses to load it", s, unknown);
		return false;
	}
	unknown = L64(sb->compat_ro) & ~VMC_FEATURE_COMPAT_RO_SUPP;
	if (unknown)
		msg(m, VMC_WARNING, s, SB,
		    "slot %d: unknown read-only features 0x%" PRIx64
		    ": only a newer kernel may write it", s, unknown);
	unknown = L64(sb->compat) & ~VMC_FEATURE_COMPAT_SUPP;
	if (unknown)
		msg(m, VMC_INFO, s, SB,
		    "slot %d: unknown compatible features 0x%" PRIx64 " (ignored)",
		    s, unknown);
	return check_geometry(d, m, s, sb);
}

/* the slot not chosen: its errors do not stop a load, they are warnings */
static void demote_slot(struct vmc_meta *m, int s)
{
	for (size_t i = 0; i < m->nr_msgs; i++) {
		if (m->msgs[i].slot == s && m->msgs[i].sev == VMC_ERROR) {
			m->msgs[i].sev = VMC_WARNING;
			m->count[VMC_ERROR]--;
			m->count[VMC_WARNING]++;
		}
	}
}

static void judge_other_slot(struct vmc_meta *m, const struct vmc_superblock *sbs,
			     const bool *valid, int best)
{
	int o = 1 - best;
	uint64_t seq = L64(sbs[best].seq), oseq = L64(sbs[o].seq);

	demote_slot(m, o);
	if (!valid[o]) {
		if (!all_zero(&sbs[o], sizeof(sbs[o])))
			msg(m, VMC_WARNING, o, SB,
			    "slot %d is damaged (a torn write or corruption) and unused; slot %d (seq %" PRIu64
			    ") is used and the next commit rewrites slot %d",
			    o, best, seq, o);
	} else if (memcmp(sbs[o].uuid, sbs[best].uuid, sizeof(sbs[o].uuid))) {
		msg(m, VMC_WARNING, o, SB,
		    "slot %d belongs to another cache (different uuid); slot %d is used",
		    o, best);
	} else if (oseq == seq) {
		msg(m, VMC_WARNING, o, SB,
		    "slots 0 and 1 both have seq %" PRIu64 "; slot %d is used",
		    seq, best);
	} else {
		msg(m, VMC_INFO, o, SB, "slot %d: seq %" PRIu64 ", the previous commit",
		    o, oseq);
	}
}

int vmc_meta_read_sb(struct vmc_dev *d, struct vmc_meta *m)
{
	struct vmc_superblock *sbs;
	struct vmc_layout grown;
	bool valid[VMC_SB_SLOTS];
	int best = -1;

	memset(m, 0, sizeof(*m));
	m->slot = -1;
	if (d->sectors < VMC_SB_SLOTS * VMC_PAGE_SECTORS) {
		vmc_err("%s is too small (%" PRIu64 " sectors) to hold a cache",
			d->path, d->sectors);
		return -1;
	}
	sbs = vmc_pages_alloc(VMC_SB_SLOTS);
	if (!sbs || vmc_dev_read(d, sbs, VMC_SB_SLOTS, 0)) {
		free(sbs);
		return -1;
	}
	m->blank = all_zero(sbs, VMC_SB_SLOTS * VMC_PAGE_SIZE);
	for (int s = 0; s < VMC_SB_SLOTS; s++) {
		valid[s] = check_slot(d, m, s, &sbs[s]);
		if (valid[s] && (best < 0 || L64(sbs[s].seq) > L64(sbs[best].seq)))
			best = s;
	}
	if (best < 0) {
		msg(m, VMC_ERROR, -1, SB, m->blank ?
		    "no superblock: the device is blank (never formatted, or wiped)" :
		    "no valid superblock: not a vmcache cache device, or its superblocks are destroyed");
		free(sbs);
		return 0;
	}
	judge_other_slot(m, sbs, valid, best);
	m->slot = best;
	m->sb = sbs[best];
	free(sbs);

	m->lay.nr_blocks = L64(m->sb.nr_blocks);
	m->lay.nr_mpages = L32(m->sb.nr_mpages);
	m->lay.mapping_start = VMC_SB_SLOTS * VMC_PAGE_SECTORS;
	m->lay.data_start = L64(m->sb.data_start);
	m->data_crc = !!(L64(m->sb.incompat) & VMC_FEATURE_INCOMPAT_DATA_CRC);
	m->lay.nr_cpages = (uint32_t)vmc_cpages_for(m->lay.nr_blocks, m->data_crc);
	m->lay.crc_start = m->lay.mapping_start +
			   2ULL * m->lay.nr_mpages * VMC_PAGE_SECTORS;
	if (L32(m->sb.flags) & VMC_SB_NEEDS_CHECK)
		msg(m, VMC_WARNING, best, SB,
		    "slot %d: the kernel flagged the metadata as needing a check (an I/O error hit it)",
		    best);
	if (!(L32(m->sb.flags) & VMC_SB_CLEAN_SHUTDOWN))
		msg(m, VMC_INFO, best, SB,
		    "slot %d: no clean-shutdown flag (never detached since format, a crash, or the cache is active)",
		    best);
	if ((L32(m->sb.flags) & (VMC_SB_FLUX | VMC_SB_CLEAN_SHUTDOWN)) ==
	    VMC_SB_FLUX)
		msg(m, VMC_INFO, best, SB,
		    "slot %d: writethrough writes were in flux: the next load makes every cached block dirty (the cache copy wins)",
		    best);
	vmc_compute_layout_crc(d->sectors, L32(m->sb.block_size), m->data_crc,
			       &grown);
	if (grown.nr_blocks > m->lay.nr_blocks)
		msg(m, VMC_INFO, best, SB,
		    "the device grew since format: it would hold %" PRIu64
		    " blocks, the cache uses %" PRIu64,
		    (uint64_t)grown.nr_blocks, (uint64_t)m->lay.nr_blocks);
	return 0;
}

/* ---- stage 2: mapping pages and entries ---------------------------------- */

#define MP "mapping"
#define EN "entries"

enum copy_state { CP_EMPTY, CP_CSUM, CP_INDEX, CP_FUTURE, CP_OK };

static enum copy_state copy_state(const struct vmc_meta *m,
				  const struct vmc_mpage *pg, uint64_t index)
{
	if (all_zero(pg, sizeof(*pg)))
		return CP_EMPTY;
	if (L32(pg->hdr.csum) != vmc_mpage_csum(m->sb.uuid, pg))
		return CP_CSUM;
	if (L32(pg->hdr.index) != index)
		return CP_INDEX;
	if (L64(pg->hdr.seq) > L64(m->sb.seq))
		return CP_FUTURE;
	return CP_OK;
}

/*
 * A copy that does not validate while the other one, from the last commit,
 * does is harmless: stale from an earlier format (the checksum covers the
 * uuid), or torn by a crash before its commit.  Those are only counted.
 * If the copy in use is older than the last commit, the bad one may have
 * held newer mappings: a warning.
 */
static void report_copy(struct vmc_meta *m, uint64_t p, int c,
			const struct vmc_mpage *pg, enum copy_state st,
			const struct vmc_mpage *used)
{
	const char *what = st == CP_CSUM ? "a checksum mismatch" : "a wrong index";
	char name = "AB"[c];

	if (used && (st == CP_CSUM || st == CP_INDEX)) {
		if (L64(used->hdr.seq) == L64(m->sb.seq))
			m->nr_unused_bad++;
		else
			msg(m, VMC_WARNING, -1, MP,
			    "mapping page %" PRIu64 " copy %c has %s; the other copy (seq %" PRIu64
			    ") is older than the last commit (%" PRIu64
			    "): a crash during a commit, or newer mappings of this page are lost",
			    p, name, what, L64(used->hdr.seq), L64(m->sb.seq));
		return;
	}
	switch (st) {
	case CP_CSUM:
		msg(m, VMC_ERROR, -1, MP,
		    "mapping page %" PRIu64 " copy %c: checksum mismatch: stored 0x%08x, computed 0x%08x",
		    p, name, L32(pg->hdr.csum), vmc_mpage_csum(m->sb.uuid, pg));
		break;
	case CP_INDEX:
		msg(m, VMC_ERROR, -1, MP,
		    "mapping page %" PRIu64 " copy %c: index field is %u (a misdirected write)",
		    p, name, L32(pg->hdr.index));
		break;
	case CP_FUTURE:
		msg(m, VMC_INFO, -1, MP,
		    "mapping page %" PRIu64 " copy %c: seq %" PRIu64
		    " is newer than the superblock's %" PRIu64
		    ": an interrupted commit, ignored (the next commit overwrites it)",
		    p, name, L64(pg->hdr.seq), L64(m->sb.seq));
		break;
	case CP_EMPTY:
	case CP_OK:
		break;
	}
}

static void check_entries(struct vmc_meta *m, uint64_t p,
			  const struct vmc_mpage *pg)
{
	/* a partial last origin block is never cached */
	uint64_t oblocks = L64(m->sb.origin_sectors) / (L32(m->sb.block_size) >> 9);

	for (size_t i = 0; i < VMC_ENTRIES_PER_PAGE; i++) {
		uint64_t cb = p * VMC_ENTRIES_PER_PAGE + i;
		uint64_t e = L64(pg->entries[i]);
		uint8_t v = vmc_entry_valid(e), dm = vmc_entry_dirty(e);

		if (cb >= m->lay.nr_blocks) {
			if (e)
				msg(m, VMC_ERROR, -1, EN,
				    "mapping page %" PRIu64 " entry %zu is set (0x%016" PRIx64
				    ") but the cache has only %" PRIu64 " blocks",
				    p, i, e, (uint64_t)m->lay.nr_blocks);
			continue;
		}
		m->entries[cb] = e;
		if (e && !v)
			msg(m, VMC_ERROR, -1, EN,
			    "cache block %" PRIu64 ": entry 0x%016" PRIx64
			    " is set but its valid mask is empty", cb, e);
		if (e & VMC_ENTRY_RESERVED_MASK &
		    ~(m->data_crc ? VMC_ENTRY_NOCRC : 0))
			msg(m, VMC_ERROR, -1, EN,
			    "cache block %" PRIu64 ": reserved bits set in 0x%016" PRIx64,
			    cb, e);
		if (dm & ~v)
			msg(m, VMC_ERROR, -1, EN,
			    "cache block %" PRIu64 ": dirty mask 0x%02x is not a subset of valid mask 0x%02x",
			    cb, dm, v);
		if (v && vmc_entry_oblock(e) >= oblocks)
			msg(m, VMC_ERROR, -1, EN,
			    "cache block %" PRIu64 ": origin block %" PRIu64
			    " is beyond the origin (%" PRIu64 " blocks)",
			    cb, (uint64_t)vmc_entry_oblock(e), oblocks);
		m->nr_valid += v != 0;
		m->nr_dirty += dm != 0;
	}
}

static void check_page(struct vmc_meta *m, uint64_t p,
		       const struct vmc_mpage *const cp[2])
{
	uint64_t first = p * VMC_ENTRIES_PER_PAGE;
	uint64_t last = first + VMC_ENTRIES_PER_PAGE - 1;
	enum copy_state st[2];
	int use = -1;

	for (int c = 0; c < 2; c++) {
		st[c] = copy_state(m, cp[c], p);
		if (st[c] == CP_OK &&
		    (use < 0 || L64(cp[c]->hdr.seq) > L64(cp[use]->hdr.seq)))
			use = c;
	}
	for (int c = 0; c < 2; c++)
		report_copy(m, p, c, cp[c], st[c], use >= 0 ? cp[use] : NULL);
	m->mpage_use[p] = (uint8_t)(use < 0 ? VMC_MP_NONE : use) |
			  (st[0] == CP_FUTURE || st[1] == CP_FUTURE ? VMC_MP_FUTURE : 0);
	if (last >= m->lay.nr_blocks)
		last = m->lay.nr_blocks - 1;
	if (use < 0) {
		msg(m, VMC_ERROR, -1, MP,
		    "mapping page %" PRIu64 ": no valid copy: the mappings of cache blocks %"
		    PRIu64 "..%" PRIu64 " are lost", p, first, last);
		return;
	}
	if (st[0] == CP_OK && st[1] == CP_OK &&
	    cp[0]->hdr.seq == cp[1]->hdr.seq &&
	    memcmp(cp[0]->entries, cp[1]->entries, sizeof(cp[0]->entries)))
		msg(m, VMC_WARNING, -1, MP,
		    "mapping page %" PRIu64 ": copies A and B differ but both have seq %"
		    PRIu64 "; copy A is used", p, L64(cp[0]->hdr.seq));
	check_entries(m, p, cp[use]);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void report_duplicate(struct vmc_meta *m, uint64_t oblock, size_t n)
{
	uint64_t cb[2] = { 0, 0 };
	size_t found = 0;

	if (m->nr_msgs == VMC_MAX_MSGS) {	/* not kept: skip the search */
		m->count[VMC_ERROR]++;
		return;
	}
	for (uint64_t i = 0; i < m->lay.nr_blocks && found < 2; i++)
		if (vmc_entry_valid(m->entries[i]) &&
		    vmc_entry_oblock(m->entries[i]) == oblock)
			cb[found++] = i;
	msg(m, VMC_ERROR, -1, EN,
	    "origin block %" PRIu64 " is mapped by %zu cache blocks (%" PRIu64
	    ", %" PRIu64 "%s)", oblock, n, cb[0], cb[1], n > 2 ? ", ..." : "");
}

static int check_duplicates(struct vmc_meta *m)
{
	uint64_t *keys = malloc((m->nr_valid ? m->nr_valid : 1) * sizeof(*keys));
	size_t n = 0;

	if (!keys) {
		vmc_err("out of memory");
		return -1;
	}
	for (uint64_t i = 0; i < m->lay.nr_blocks; i++)
		if (vmc_entry_valid(m->entries[i]))
			keys[n++] = vmc_entry_oblock(m->entries[i]);
	qsort(keys, n, sizeof(*keys), cmp_u64);
	for (size_t i = 0; i < n;) {
		size_t j = i + 1;

		while (j < n && keys[j] == keys[i])
			j++;
		if (j - i > 1)
			report_duplicate(m, keys[i], j - i);
		i = j;
	}
	free(keys);
	return 0;
}

/* ---- the checksum pages (data_crc) -------------------------------------- */

static bool cpage_good(const struct vmc_meta *m, const struct vmc_cpage *pg,
		       uint64_t q)
{
	return L32(pg->hdr.csum) == vmc_mpage_csum(m->sb.uuid, (const void *)pg) &&
	       L32(pg->hdr.index) == (VMC_CPAGE_INDEX_FLAG | (uint32_t)q);
}

/* per CRC page the copy the kernel reads: the newest valid one not above seq */
static int read_crc_pages(struct vmc_dev *d, struct vmc_meta *m)
{
	uint64_t nr = m->lay.nr_cpages, seq = L64(m->sb.seq), future = 0;
	struct vmc_cpage *b = vmc_pages_alloc(1);

	m->cpages = vmc_pages_alloc(nr ? nr : 1);
	m->cpage_use = calloc(nr ? nr : 1, 1);
	if (!b || !m->cpages || !m->cpage_use) {
		free(b);
		vmc_err("out of memory");
		return -1;
	}
	for (uint64_t q = 0; q < nr; q++) {
		struct vmc_cpage *a = &m->cpages[q];
		bool ga, gb, fa, fb;

		if (vmc_dev_read(d, a, 1, vmc_cpage_sector(&m->lay, 0, q)) ||
		    vmc_dev_read(d, b, 1, vmc_cpage_sector(&m->lay, 1, q))) {
			free(b);
			return -1;
		}
		ga = cpage_good(m, a, q);
		gb = cpage_good(m, b, q);
		fa = ga && L64(a->hdr.seq) > seq;
		fb = gb && L64(b->hdr.seq) > seq;
		ga = ga && !fa;
		gb = gb && !fb;
		if (!ga && !gb) {
			msg(m, VMC_ERROR, -1, "checksums",
			    "CRC page %" PRIu64 ": neither copy is valid", q);
			m->cpage_use[q] = VMC_MP_NONE;
			continue;
		}
		if (gb && (!ga || L64(b->hdr.seq) > L64(a->hdr.seq))) {
			memcpy(a, b, VMC_PAGE_SIZE);
			m->cpage_use[q] = 1;
		}
		if (fa || fb) {
			m->cpage_use[q] |= VMC_MP_FUTURE;
			future++;
		}
	}
	free(b);
	if (future)
		msg(m, VMC_INFO, -1, "checksums",
		    "%" PRIu64 " CRC pages hold a copy left by an interrupted commit (the next commit overwrites it)",
		    future);
	return 0;
}

int vmc_meta_read_mappings(struct vmc_dev *d, struct vmc_meta *m)
{
	uint64_t nr = m->lay.nr_mpages;
	uint64_t chunk = nr < CHUNK_PAGES ? nr : CHUNK_PAGES;
	uint8_t *buf[2];
	int ret = -1;

	buf[0] = vmc_pages_alloc(chunk);
	buf[1] = vmc_pages_alloc(chunk);
	m->entries = calloc(m->lay.nr_blocks ? m->lay.nr_blocks : 1,
			    sizeof(*m->entries));
	m->mpage_use = calloc(nr ? nr : 1, 1);
	if (!buf[0] || !buf[1] || !m->entries || !m->mpage_use) {
		vmc_err("out of memory");
		goto out;
	}
	for (uint64_t p0 = 0; p0 < nr; p0 += chunk) {
		uint64_t n = nr - p0 < chunk ? nr - p0 : chunk;

		for (unsigned int c = 0; c < 2; c++)
			if (vmc_dev_read(d, buf[c], n, vmc_mpage_sector(&m->lay, c, p0)))
				goto out;
		for (uint64_t i = 0; i < n; i++) {
			const struct vmc_mpage *cp[2] = {
				(const void *)(buf[0] + i * VMC_PAGE_SIZE),
				(const void *)(buf[1] + i * VMC_PAGE_SIZE),
			};

			check_page(m, p0 + i, cp);
		}
	}
	if (m->nr_unused_bad)
		msg(m, VMC_INFO, -1, MP,
		    "%" PRIu64 " unused mapping page copies do not validate (left from an earlier format, or torn by a crash); the other copy of each, from the last commit, is used",
		    m->nr_unused_bad);
	if (check_duplicates(m))
		goto out;
	if (m->nr_valid != L64(m->sb.nr_valid))
		msg(m, VMC_ERROR, -1, "counts",
		    "the superblock counts %" PRIu64 " mapped blocks, the mappings hold %" PRIu64,
		    L64(m->sb.nr_valid), m->nr_valid);
	if (m->nr_dirty != L64(m->sb.nr_dirty))
		msg(m, VMC_ERROR, -1, "counts",
		    "the superblock counts %" PRIu64 " dirty blocks, the mappings hold %" PRIu64,
		    L64(m->sb.nr_dirty), m->nr_dirty);
	if (m->data_crc && read_crc_pages(d, m))
		goto out;
	ret = 0;
out:
	free(buf[0]);
	free(buf[1]);
	return ret;
}

int vmc_meta_check_data(struct vmc_dev *d, struct vmc_meta *m)
{
	uint8_t *buf;

	if (!m->data_crc || !m->entries || !m->cpages)
		return 0;
	buf = vmc_pages_alloc(1);
	m->crc_bad = calloc(m->lay.nr_blocks ? m->lay.nr_blocks : 1, 1);
	if (!buf || !m->crc_bad) {
		free(buf);
		vmc_err("out of memory");
		return -1;
	}
	for (uint64_t cb = 0; cb < m->lay.nr_blocks; cb++) {
		uint64_t e = m->entries[cb], q = cb / VMC_CRC_BLOCKS_PER_PAGE;
		unsigned int dm = vmc_entry_dirty(e), bad = 0;
		const struct vmc_cpage *pg = &m->cpages[q];

		if (!dm || (e & VMC_ENTRY_NOCRC) ||
		    (m->cpage_use[q] & ~VMC_MP_FUTURE) == VMC_MP_NONE)
			continue;
		/* data_crc: 4 KiB blocks, one page */
		if (vmc_dev_read(d, buf, 1, m->lay.data_start + cb * VMC_PAGE_SECTORS)) {
			free(buf);
			return -1;
		}
		for (unsigned int s = 0; s < VMC_SUBBLOCKS; s++) {
			uint32_t s0 = L32(pg->crc[cb % VMC_CRC_BLOCKS_PER_PAGE][s][0]);
			uint32_t s1 = L32(pg->crc[cb % VMC_CRC_BLOCKS_PER_PAGE][s][1]);
			uint32_t c = ~vmc_crc32c(VMC_CRC_SEED, buf + s * 512, 512);

			if ((dm & (1u << s)) && c != s0 && c != s1)
				bad |= 1u << s;
		}
		if (!bad)
			continue;
		m->crc_bad[cb] = (uint8_t)bad;
		m->nr_crc_bad += (uint64_t)__builtin_popcount(bad);
		msg(m, VMC_WARNING, -1, "data",
		    "cache block %" PRIu64 " (origin block %" PRIu64
		    "): dirty sectors 0x%02x fail their checksum (the kernel fails reads of them and drops them at writeback)",
		    cb, (uint64_t)vmc_entry_oblock(e), bad);
	}
	free(buf);
	return 0;
}

/* ---- superblock fields for dump ----------------------------------------- */

#define F(name, fmt) { #name, offsetof(struct vmc_superblock, name), \
		       sizeof(((struct vmc_superblock *)0)->name), fmt }

const struct vmc_sb_field vmc_sb_fields[] = {
	F(csum, SBF_HEX), F(flags, SBF_HEX), F(location, SBF_DEC),
	F(magic, SBF_HEX), F(version, SBF_DEC), F(mode, SBF_DEC),
	F(compat, SBF_HEX), F(compat_ro, SBF_HEX), F(incompat, SBF_HEX),
	F(seq, SBF_DEC), F(uuid, SBF_UUID), F(block_size, SBF_DEC),
	F(nr_mpages, SBF_DEC), F(nr_blocks, SBF_DEC), F(data_start, SBF_DEC),
	F(cache_sectors, SBF_DEC), F(origin_sectors, SBF_DEC),
	F(nr_dirty, SBF_DEC), F(nr_valid, SBF_DEC), F(format_time, SBF_DEC),
	F(commit_time, SBF_DEC),
};

#undef F

const size_t vmc_nr_sb_fields = ARRAY_SIZE(vmc_sb_fields);

uint64_t vmc_sb_get(const struct vmc_superblock *sb,
		    const struct vmc_sb_field *f)
{
	const uint8_t *p = (const uint8_t *)sb + f->offset;
	uint32_t v32;
	uint64_t v64;

	if (f->size == sizeof(v32)) {
		memcpy(&v32, p, sizeof(v32));
		return L32(v32);
	}
	if (f->size == sizeof(v64)) {
		memcpy(&v64, p, sizeof(v64));
		return L64(v64);
	}
	return 0;
}

void vmc_uuid_str(const uint8_t u[16], char out[37])
{
	char *o = out;

	for (int i = 0; i < 16; i++) {
		o += sprintf(o, "%02x", u[i]);
		if (i == 3 || i == 5 || i == 7 || i == 9)
			*o++ = '-';
	}
	*o = '\0';
}

/* ---- writing -------------------------------------------------------------- */

int vmc_wipe(struct vmc_dev *d)
{
	void *zero = vmc_pages_alloc(VMC_SB_SLOTS);
	int ret;

	if (!zero) {
		vmc_err("out of memory");
		return -1;
	}
	ret = vmc_dev_write(d, zero, VMC_SB_SLOTS, 0) || vmc_dev_sync(d) ? -1 : 0;
	free(zero);
	return ret;
}

/* area A: headers with index and seq 1, no entries; area B: zero */
static int write_mapping_areas(struct vmc_dev *d, const struct vmc_layout *l,
			       const uint8_t uuid[16], uint8_t *buf)
{
	for (unsigned int area = 0; area < 2; area++) {
		for (uint64_t p0 = 0; p0 < l->nr_mpages; p0 += CHUNK_PAGES) {
			uint64_t n = l->nr_mpages - p0;

			if (n > CHUNK_PAGES)
				n = CHUNK_PAGES;
			memset(buf, 0, n * VMC_PAGE_SIZE);
			for (uint64_t i = 0; area == 0 && i < n; i++) {
				struct vmc_mpage *pg = (void *)(buf + i * VMC_PAGE_SIZE);

				pg->hdr.index = htole32((uint32_t)(p0 + i));
				pg->hdr.seq = htole64(1);
				vmc_mpage_seal(uuid, pg);
			}
			if (vmc_dev_write(d, buf, n, vmc_mpage_sector(l, area, p0)))
				return -1;
		}
	}
	return 0;
}

/*
 * Order: wipe both slots (a crash from here on leaves a blank device, which
 * the kernel formats itself), write both mapping areas, flush, then write
 * slot 0 - the only write that carries the magic - and flush again.
 */
int vmc_format(struct vmc_dev *d, uint32_t block_size, uint64_t origin_sectors,
	       uint64_t now, const uint8_t uuid[16])
{
	struct vmc_superblock *sb;
	struct vmc_layout l;
	uint8_t *buf;
	int ret = -1;

	vmc_compute_layout(d->sectors, block_size, &l);
	if (l.nr_blocks < VMC_MIN_BLOCKS) {
		vmc_err("%s is too small: %" PRIu64 " sectors hold %" PRIu64
			" blocks of %u bytes, at least %u are needed",
			d->path, d->sectors, (uint64_t)l.nr_blocks, block_size,
			VMC_MIN_BLOCKS);
		return -1;
	}
	buf = vmc_pages_alloc(CHUNK_PAGES);
	if (!buf) {
		vmc_err("out of memory");
		return -1;
	}
	if (vmc_wipe(d) || write_mapping_areas(d, &l, uuid, buf) || vmc_dev_sync(d))
		goto out;
	memset(buf, 0, VMC_PAGE_SIZE);
	sb = (void *)buf;
	sb->flags = htole32(0);	/* as the kernel: never detached yet */
	sb->location = htole64(0);
	sb->magic = htole64(VMC_MAGIC);
	sb->version = htole32(VMC_VERSION);
	sb->mode = htole32(VMC_MODE_WRITETHROUGH);
	sb->seq = htole64(1);
	memcpy(sb->uuid, uuid, sizeof(sb->uuid));
	sb->block_size = htole32(block_size);
	sb->nr_mpages = htole32(l.nr_mpages);
	sb->nr_blocks = htole64(l.nr_blocks);
	sb->data_start = htole64(l.data_start);
	/* the extent in use, as the kernel records it */
	sb->cache_sectors = htole64(l.data_start + l.nr_blocks * (block_size >> 9));
	sb->origin_sectors = htole64(origin_sectors);
	sb->format_time = htole64(now);
	sb->commit_time = htole64(now);
	vmc_sb_seal(sb);
	if (vmc_dev_write(d, sb, 1, 0) || vmc_dev_sync(d))
		goto out;
	ret = 0;
out:
	free(buf);
	return ret;
}

int vmc_clear_needs_check(struct vmc_dev *d, const struct vmc_meta *m)
{
	struct vmc_superblock *sb = vmc_pages_alloc(1);
	int other = !m->slot, ret;

	if (!sb) {
		vmc_err("out of memory");
		return -1;
	}
	/* a commit that changes nothing but the flag: the next slot, seq + 1 */
	*sb = m->sb;
	sb->flags &= htole32(~VMC_SB_NEEDS_CHECK);
	sb->location = htole64((uint64_t)other * VMC_PAGE_SECTORS);
	sb->seq = htole64(L64(m->sb.seq) + 1);
	sb->commit_time = htole64((uint64_t)time(NULL));
	vmc_sb_seal(sb);
	ret = vmc_dev_write(d, sb, 1, (uint64_t)other * VMC_PAGE_SECTORS) ||
	      vmc_dev_sync(d) ? -1 : 0;
	free(sb);
	return ret;
}
