// SPDX-License-Identifier: GPL-2.0
/*
 * dm-vmcache metadata I/O.
 *
 * Commit protocol (see vmcache_ondisk.h for the layout):
 *  1. Under the cache lock, take the set of changed mapping pages (and the
 *     blocks to free in step 4, the FLUX flag, the waiters); then encode
 *     each of those pages into the staging area, one lock hold per page
 *     (all in the first hold with data_crc: checksums and entries are one
 *     snapshot).  A page encoded later than the first hold may say more
 *     than the snapshot, never less: every change after it is newer
 *     state that was safe to record the moment it was made (a dirty mark
 *     after its data, a clean mark after the origin flush that made it
 *     true, an unmapping before reuse), and marks its page for the next
 *     commit too.  The superblock's counts are the sums of what the
 *     pages on disk map, kept per page.
 *  2. Write each encoded page to the slot that does not hold its newest
 *     committed copy, stamped with seq + 1.
 *  3. Write the other superblock slot with seq + 1 and REQ_PREFLUSH|REQ_FUA:
 *     the preflush makes the data of every completed write and the pages
 *     of step 2 durable before the superblock that points at them.
 *  3a. Before that, if an origin write completed since the last origin
 *     flush, flush the origin: clean data the commit validates (fills,
 *     writethrough writes) must not be newer on the cache than on the
 *     origin's stable media.
 *  4. Only now may blocks unmapped before step 1 be reused.
 * A crash anywhere leaves the previous commit intact: nothing it refers to
 * was overwritten, and a torn page or superblock fails its checksum.  No
 * write is assumed atomic.  Page copies left by a commit that never wrote
 * its superblock carry a sequence number above the durable one; loading
 * marks their pages so the next commit overwrites them first.
 *
 * Each block's ddirty is what the disk surely says is dirty: lowered when
 * a commit takes its snapshot, raised to the snapshot when it completes.
 * A write needing a dirty bit the disk lacks waits for a commit.
 */
#include <linux/blkdev.h>
#include <linux/crc32c.h>
#include <linux/dm-io.h>
#include <linux/ktime.h>
#include <linux/random.h>
#include <linux/vmalloc.h>
#include "vmcache-crc.h"
#include "vmcache-metadata.h"
#include "vmcache-policy.h"

/* pages read per I/O while loading */
#define VMC_LOAD_CHUNK	256u

static u32 sb_csum(const struct vmc_superblock *sb)
{
	__le32 zero = 0;
	u32 crc;

	/* the csum field counts as zero: fold it in front */
	crc = crc32c(VMC_CRC_SEED, &zero, sizeof(zero));
	crc = crc32c(crc, &sb->flags, VMC_PAGE_SIZE - sizeof(sb->csum));
	return ~crc;
}

/* a mapping or CRC page: the uuid, then the page with csum as zero */
u32 vmc_md_page_csum(struct vmcache *c, const struct vmc_mpage_header *hdr)
{
	__le32 zero = 0;
	u32 crc;

	crc = crc32c(VMC_CRC_SEED, c->uuid, sizeof(c->uuid));
	crc = crc32c(crc, &zero, sizeof(zero));
	crc = crc32c(crc, &hdr->index, VMC_PAGE_SIZE - sizeof(hdr->csum));
	return ~crc;
}

static u32 mpage_csum(struct vmcache *c, const struct vmc_mpage *p)
{
	return vmc_md_page_csum(c, &p->hdr);
}

/*
 * A commit holds up flushes and FUA writes: its writes are metadata that
 * a submitter waits for, never held back by the cache device's blk-wbt
 * (which throttles writes without REQ_SYNC | REQ_IDLE).
 */
#define VMC_MD_WRITE_FLAGS	(REQ_IDLE | REQ_META | REQ_PRIO)

/* synchronous: @sectors sectors at @sector from or to @buf (vmalloc or not) */
int vmc_md_rw(struct vmcache *c, blk_opf_t opf, void *buf, sector_t sector,
	      unsigned int sectors)
{
	struct dm_io_region where = {
		.bdev = c->cache_dev->bdev,
		.sector = sector,
		.count = sectors,
	};
	struct dm_io_request req = {
		.bi_opf = opf,
		.client = c->io_client,
	};

	/* (dm-io adds REQ_SYNC: these wait) */
	if (op_is_write(opf))
		req.bi_opf |= VMC_MD_WRITE_FLAGS;
	if (is_vmalloc_addr(buf)) {
		req.mem.type = DM_IO_VMA;
		req.mem.ptr.vma = buf;
	} else {
		req.mem.type = DM_IO_KMEM;
		req.mem.ptr.addr = buf;
	}
	return dm_io(&req, 1, &where, NULL, IOPRIO_DEFAULT);
}

static int md_rw(struct vmcache *c, blk_opf_t opf, void *buf, sector_t sector,
		 unsigned int pages)
{
	return vmc_md_rw(c, opf, buf, sector, pages * VMC_PAGE_SECTORS);
}

static void md_async_done(unsigned long error, void *context)
{
	struct vmc_md_io *io = context;

	if (error)
		io->error = -EIO;
	if (atomic_dec_and_test(&io->pending))
		complete(&io->done);
}

void vmc_md_io_start(struct vmc_md_io *io)
{
	atomic_set(&io->pending, 1);
	io->error = 0;
	init_completion(&io->done);
}

/* write the page at @page (vmalloc) to @sector, counted in @io */
void vmc_md_write_page(struct vmcache *c, struct vmc_md_io *io, void *page,
		       sector_t sector)
{
	struct dm_io_region where = {
		.bdev = c->cache_dev->bdev,
		.sector = sector,
		.count = VMC_PAGE_SECTORS,
	};
	struct dm_io_request req = {
		.bi_opf = REQ_OP_WRITE | REQ_SYNC | VMC_MD_WRITE_FLAGS,
		.mem.type = DM_IO_VMA,
		.mem.ptr.vma = page,
		.notify.fn = md_async_done,
		.notify.context = io,
		.client = c->io_client,
	};

	atomic_inc(&io->pending);
	if (dm_io(&req, 1, &where, NULL, IOPRIO_DEFAULT))
		md_async_done(1, io);
}

/* wait for every write started on @io; -EIO if any failed */
int vmc_md_io_wait(struct vmc_md_io *io)
{
	md_async_done(0, io);
	wait_for_completion_io(&io->done);
	return io->error;
}

/* ------------------------------------------------------------------ */
/* superblock */

enum sb_verdict { SB_ZERO, SB_BAD, SB_GOOD };

static enum sb_verdict sb_check(const struct vmc_superblock *sb, u32 slot,
				char **error)
{
	if (!memchr_inv(sb, 0, VMC_PAGE_SIZE))
		return SB_ZERO;
	/* checks in a fixed order, each with its own reason */
	if (le64_to_cpu(sb->location) != slot * VMC_PAGE_SECTORS) {
		*error = "Superblock location mismatch";
		return SB_BAD;
	}
	if (le64_to_cpu(sb->magic) != VMC_MAGIC) {
		*error = "Not a vmcache cache device (bad magic)";
		return SB_BAD;
	}
	if (le32_to_cpu(sb->csum) != sb_csum(sb)) {
		*error = "Superblock checksum mismatch";
		return SB_BAD;
	}
	if (le32_to_cpu(sb->version) < VMC_VERSION_MIN ||
	    le32_to_cpu(sb->version) > VMC_VERSION_MAX) {
		*error = "Unsupported metadata version";
		return SB_BAD;
	}
	if (le64_to_cpu(sb->incompat) & ~VMC_FEATURE_INCOMPAT_SUPP) {
		*error = "Unsupported incompatible metadata features";
		return SB_BAD;
	}
	return SB_GOOD;
}

static void sb_fill(struct vmcache *c, struct vmc_superblock *sb, u32 slot,
		    u64 seq, u32 flags, u64 nr_dirty, u64 nr_valid)
{
	memset(sb, 0, sizeof(*sb));
	sb->flags = cpu_to_le32(flags);
	sb->location = cpu_to_le64((u64)slot * VMC_PAGE_SECTORS);
	sb->magic = cpu_to_le64(VMC_MAGIC);
	sb->version = cpu_to_le32(VMC_VERSION);
	if (c->data_crc)
		sb->incompat = cpu_to_le64(VMC_FEATURE_INCOMPAT_DATA_CRC);
	sb->mode = cpu_to_le32(c->tun[VMC_T_MODE]);
	sb->seq = cpu_to_le64(seq);
	memcpy(sb->uuid, c->uuid, sizeof(sb->uuid));
	sb->block_size = cpu_to_le32(c->tun[VMC_T_BLOCK_SIZE]);
	sb->nr_mpages = cpu_to_le32(c->layout.nr_mpages);
	sb->nr_blocks = cpu_to_le64(c->layout.nr_blocks);
	sb->data_start = cpu_to_le64(c->layout.data_start);
	sb->cache_sectors = cpu_to_le64(c->layout.data_start +
					((u64)c->nr_blocks << c->block_shift));
	sb->origin_sectors = cpu_to_le64(c->origin_sectors);
	sb->nr_dirty = cpu_to_le64(nr_dirty);
	sb->nr_valid = cpu_to_le64(nr_valid);
	sb->format_time = cpu_to_le64(c->format_time);
	sb->commit_time = cpu_to_le64(ktime_get_real_seconds());
	sb->csum = cpu_to_le32(sb_csum(sb));
}

static int set_geometry(struct vmcache *c, u32 block_size, u64 cache_sectors,
			char **error)
{
	if (block_size < VMC_BLOCK_SIZE_MIN ||
	    block_size > VMC_BLOCK_SIZE_MAX || !is_power_of_2(block_size)) {
		*error = "Invalid block size";
		return -EINVAL;
	}
	/* a sub-block is then one sector: no write covers part of one */
	if (c->data_crc && block_size != VMC_BLOCK_SIZE_MIN) {
		*error = "data_crc needs block_size 4096";
		return -EINVAL;
	}
	c->tun[VMC_T_BLOCK_SIZE] = block_size;
	c->tun[VMC_T_DATA_CRC] = c->data_crc;
	c->block_shift = ilog2(block_size >> SECTOR_SHIFT);
	c->sub_shift = c->block_shift - ilog2(VMC_SUBBLOCKS);
	vmc_compute_layout_crc(cache_sectors, block_size, c->data_crc,
			       &c->layout);
	if (c->layout.nr_blocks < VMC_MIN_BLOCKS) {
		*error = "Cache device too small";
		return -EINVAL;
	}
	if (c->layout.nr_blocks >= VMC_NIL) {
		*error = "Cache device too large for this block size";
		return -EINVAL;
	}
	c->nr_blocks = c->layout.nr_blocks;
	return 0;
}

/*
 * Encode mapping page @p into the staging area (c->lock held).  What it
 * maps replaces the page's share of the totals the superblock records.
 */
static void encode_mpage(struct vmcache *c, u32 p)
{
	struct vmc_mpage *mp = c->staging + (size_t)p * VMC_PAGE_SIZE;
	struct vmc_mpage_count n = { 0, 0 };
	u32 first = p * VMC_ENTRIES_PER_PAGE, i;

	for (i = 0; i < VMC_ENTRIES_PER_PAGE; i++) {
		u32 cb = first + i;
		struct vmc_block *b;

		mp->entries[i] = 0;
		if (cb >= c->nr_blocks)
			continue;
		b = &c->blocks[cb];
		if ((b->flags & VMC_B_MAPPED) && b->valid) {
			u64 e = vmc_entry_pack(b->oblock, b->valid, b->dirty);

			if (b->flags & VMC_B_NOCRC)
				e |= VMC_ENTRY_NOCRC;
			mp->entries[i] = cpu_to_le64(e);
			b->ddirty &= b->dirty;
			n.valid++;
			n.dirty += !!b->dirty;
		} else {
			b->ddirty = 0;
		}
	}
	c->md_valid = c->md_valid - c->mpage_count[p].valid + n.valid;
	c->md_dirty = c->md_dirty - c->mpage_count[p].dirty + n.dirty;
	c->mpage_count[p] = n;
}

/* for commit_max_hold in sysfs: @pages encoded in one lock hold */
static void note_hold(struct vmcache *c, u32 pages)
{
	u32 entries = pages * VMC_ENTRIES_PER_PAGE;

	if (entries > c->commit_max_hold)
		WRITE_ONCE(c->commit_max_hold, entries);
}

/*
 * The pages of the commit under way, one page per lock hold: a commit
 * that rewrites every page of a big cache must not keep interrupts off
 * (and every I/O out) while it goes through all of its blocks.
 */
static void encode_pages(struct vmcache *c)
{
	u32 p;

	for_each_set_bit(p, c->mpage_writing, c->layout.nr_mpages) {
		spin_lock_irq(&c->lock);
		encode_mpage(c, p);
		spin_unlock_irq(&c->lock);
		note_hold(c, 1);
		cond_resched();
	}
}

/* a commit is durable: the disk now says what its pages say */
static void note_durable(struct vmcache *c)
{
	u32 p, i;

	for_each_set_bit(p, c->mpage_writing, c->layout.nr_mpages) {
		struct vmc_mpage *mp = c->staging + (size_t)p * VMC_PAGE_SIZE;

		spin_lock_irq(&c->lock);
		for (i = 0; i < VMC_ENTRIES_PER_PAGE; i++) {
			u32 cb = p * VMC_ENTRIES_PER_PAGE + i;

			if (cb >= c->nr_blocks)
				break;
			c->blocks[cb].ddirty =
				vmc_entry_dirty(le64_to_cpu(mp->entries[i]));
		}
		spin_unlock_irq(&c->lock);
		cond_resched();
	}
}

static void seal_page(struct vmcache *c, struct vmc_mpage *mp, u32 p, u64 seq)
{
	mp->hdr.index = cpu_to_le32(p);
	mp->hdr.seq = cpu_to_le64(seq);
	mp->hdr.csum = cpu_to_le32(mpage_csum(c, mp));
}

static int vmc_md_alloc_staging(struct vmcache *c, char **error);

static int format_blank(struct vmcache *c, struct vmc_superblock *sb, char **error)
{
	u32 p, n;
	int r;

	get_random_bytes(c->uuid, sizeof(c->uuid));
	c->format_time = ktime_get_real_seconds();

	/* slot 1 first: an old superblock there must never win */
	memset(sb, 0, VMC_PAGE_SIZE);
	r = md_rw(c, REQ_OP_WRITE, sb, VMC_PAGE_SECTORS, 1);
	/*
	 * Every mapping page gets a valid, empty copy in area A and a zeroed
	 * one in B, so that later a copy failing its checksum always means
	 * a torn write or damage, never leftovers.
	 */
	for (p = 0; !r && p < c->layout.nr_mpages; p += n) {
		u32 i;

		n = min(c->layout.nr_mpages - p, VMC_LOAD_CHUNK);
		memset(c->staging, 0, (size_t)n * VMC_PAGE_SIZE);
		r = md_rw(c, REQ_OP_WRITE, c->staging,
			  vmc_mpage_sector(&c->layout, 1, p), n);
		for (i = 0; i < n; i++)
			seal_page(c, c->staging + (size_t)i * VMC_PAGE_SIZE,
				  p + i, 1);
		if (!r)
			r = md_rw(c, REQ_OP_WRITE, c->staging,
				  vmc_mpage_sector(&c->layout, 0, p), n);
	}
	if (!r && c->data_crc)
		r = vmc_crc_format(c);
	if (r) {
		*error = "Cannot format cache device (write error)";
		return r;
	}
	/* magic last: a crash before this leaves a blank-looking device */
	sb_fill(c, sb, 0, 1, 0, 0, 0);
	r = md_rw(c, REQ_OP_WRITE | REQ_PREFLUSH | REQ_FUA, sb, 0, 1);
	if (r) {
		*error = "Cannot write superblock";
		return r;
	}
	c->seq = 1;
	c->sb_slot = 0;
	DMINFO("%s: formatted cache device: %u blocks of %u bytes",
	       c->name, c->nr_blocks, c->tun[VMC_T_BLOCK_SIZE]);
	return 0;
}

static int check_sb(struct vmcache *c, struct vmc_superblock *sb,
		    unsigned int block_size, char **error)
{
	u64 cache_sectors = le64_to_cpu(sb->cache_sectors);
	u32 bs = le32_to_cpu(sb->block_size);
	int r;

	if (block_size && block_size != bs) {
		*error = "Block size differs from the one on the cache device";
		return -EINVAL;
	}
	c->data_crc = le64_to_cpu(sb->incompat) & VMC_FEATURE_INCOMPAT_DATA_CRC;
	if (cache_sectors > bdev_nr_sectors(c->cache_dev->bdev)) {
		*error = "Cache device is smaller than when it was formatted";
		return -EINVAL;
	}
	r = set_geometry(c, bs, cache_sectors, error);
	if (r)
		return r;
	if (c->layout.nr_blocks != le64_to_cpu(sb->nr_blocks) ||
	    c->layout.nr_mpages != le32_to_cpu(sb->nr_mpages) ||
	    c->layout.data_start != le64_to_cpu(sb->data_start)) {
		*error = "Superblock geometry is inconsistent";
		return -EINVAL;
	}
	if (le64_to_cpu(sb->origin_sectors) != c->origin_sectors) {
		*error = le64_to_cpu(sb->nr_dirty) ?
			 "Cache holds dirty data of a different origin (size differs)" :
			 "Cache belongs to a different origin (size differs)";
		return -EINVAL;
	}
	if (le32_to_cpu(sb->flags) & VMC_SB_NEEDS_CHECK) {
		*error = "Metadata needs check (run vmcachectl check)";
		return -EINVAL;
	}
	memcpy(c->uuid, sb->uuid, sizeof(c->uuid));
	c->format_time = le64_to_cpu(sb->format_time);
	c->seq = le64_to_cpu(sb->seq);
	return 0;
}

/*
 * Read both superblock slots into @sb; returns the slot of the valid one
 * with the highest seq, -1 when none is valid (*blank tells whether both
 * are zero, *error why slot 0 or 1 is bad), or a negative errno.
 */
static int read_sbs(struct vmcache *c, struct vmc_superblock **sb,
		    bool *blank, char **error)
{
	enum sb_verdict v[VMC_SB_SLOTS];
	char *why[VMC_SB_SLOTS] = { NULL, NULL };
	int best = -1, i, r;

	for (i = 0; i < VMC_SB_SLOTS; i++) {
		r = md_rw(c, REQ_OP_READ, sb[i], i * VMC_PAGE_SECTORS, 1);
		if (r) {
			*error = "Cannot read superblock";
			return r;
		}
		v[i] = sb_check(sb[i], i, &why[i]);
		if (v[i] == SB_GOOD &&
		    (best < 0 || le64_to_cpu(sb[i]->seq) >
				 le64_to_cpu(sb[best]->seq)))
			best = i;
	}
	*blank = v[0] == SB_ZERO && v[1] == SB_ZERO;
	if (best < 0 && !*blank)
		*error = why[0] ?: why[1];
	return best;
}

static void free_sbs(struct vmc_superblock **sb)
{
	int i;

	for (i = 0; i < VMC_SB_SLOTS; i++)
		vfree(sb[i]);
}

static int alloc_sbs(struct vmc_superblock **sb, char **error)
{
	int i;

	for (i = 0; i < VMC_SB_SLOTS; i++) {
		sb[i] = vmalloc(VMC_PAGE_SIZE);
		if (!sb[i]) {
			*error = "Cannot allocate superblock buffer";
			return -ENOMEM;
		}
	}
	return 0;
}

int vmc_md_open(struct vmcache *c, bool must_exist, unsigned int block_size,
		int data_crc, char **error)
{
	struct vmc_superblock *sb[VMC_SB_SLOTS] = { NULL, NULL };
	bool blank;
	int r, best;

	if (bdev_nr_sectors(c->cache_dev->bdev) <
	    vmc_data_start_for(1) + VMC_MIN_BLOCKS * (VMC_BLOCK_SIZE_MIN >> 9)) {
		*error = "Cache device too small";
		return -EINVAL;
	}
	c->io_client = dm_io_client_create();
	if (IS_ERR(c->io_client)) {
		r = PTR_ERR(c->io_client);
		c->io_client = NULL;
		*error = "Cannot create dm-io client";
		return r;
	}
	r = alloc_sbs(sb, error);
	if (r)
		goto out;
	best = read_sbs(c, sb, &blank, error);
	if (best < -1) {
		r = best;
		goto out;
	}
	if (best < 0 && blank) {
		if (must_exist) {
			*error = "Cache device is blank and must_exist is set";
			r = -ENODEV;
			goto out;
		}
		c->data_crc = data_crc > 0;
		r = set_geometry(c, block_size ?: c->tun[VMC_T_BLOCK_SIZE],
				 bdev_nr_sectors(c->cache_dev->bdev), error);
		if (!r)
			r = vmc_md_alloc_staging(c, error);
		if (!r)
			r = format_blank(c, sb[0], error);
		goto out;
	}
	if (best < 0) {
		r = -EINVAL;
		goto out;
	}
	r = check_sb(c, sb[best], block_size, error);
	/* the format decides; conversion is not supported */
	if (!r && data_crc >= 0 && data_crc != c->data_crc) {
		*error = c->data_crc ?
			 "Cache device was formatted with data_crc 1" :
			 "Cache device was formatted without data_crc";
		r = -EINVAL;
	}
	if (!r)
		r = vmc_md_alloc_staging(c, error);
out:
	free_sbs(sb);
	return r;
}

static int vmc_md_alloc_staging(struct vmcache *c, char **error)
{
	size_t pages = c->layout.nr_mpages;

	c->staging = vmalloc(array_size(max_t(size_t, pages, VMC_LOAD_CHUNK),
					VMC_PAGE_SIZE));
	c->mpage_dirty = bitmap_zalloc(pages, GFP_KERNEL);
	c->mpage_slot = bitmap_zalloc(pages, GFP_KERNEL);
	c->mpage_writing = bitmap_zalloc(pages, GFP_KERNEL);
	c->mpage_count = kvcalloc(pages, sizeof(*c->mpage_count), GFP_KERNEL);
	c->sb_buf = vmalloc(VMC_PAGE_SIZE);
	if (!c->staging || !c->mpage_dirty || !c->mpage_slot ||
	    !c->mpage_writing || !c->mpage_count || !c->sb_buf) {
		*error = "Cannot allocate metadata buffers";
		return -ENOMEM;
	}
	return vmc_crc_init(c, error);
}

/* ------------------------------------------------------------------ */
/* loading */

enum mpage_verdict { MP_BAD, MP_GOOD, MP_LEFTOVER };

/* LEFTOVER: intact, but from a commit whose superblock never landed */
static enum mpage_verdict mpage_check(struct vmcache *c, struct vmc_mpage *mp,
				      u32 p)
{
	if (le32_to_cpu(mp->hdr.csum) != mpage_csum(c, mp) ||
	    le32_to_cpu(mp->hdr.index) != p)
		return MP_BAD;
	return le64_to_cpu(mp->hdr.seq) <= c->seq ? MP_GOOD : MP_LEFTOVER;
}

static int load_page(struct vmcache *c, struct vmc_mpage *mp, u32 p,
		     char **error)
{
	u64 oblocks = c->origin_sectors >> c->block_shift;
	struct vmc_mpage_count n = { 0, 0 };
	u32 i;

	for (i = 0; i < VMC_ENTRIES_PER_PAGE; i++) {
		u64 e = le64_to_cpu(mp->entries[i]);
		u32 cb = p * VMC_ENTRIES_PER_PAGE + i;
		u64 ob = vmc_entry_oblock(e);
		u8 valid = vmc_entry_valid(e), dirty = vmc_entry_dirty(e);

		if (!e)
			continue;
		if (cb >= c->nr_blocks || !valid ||
		    (e & VMC_ENTRY_RESERVED_MASK &
		     ~(c->data_crc ? VMC_ENTRY_NOCRC : 0)) ||
		    (dirty & ~valid) || ob >= oblocks) {
			*error = "Corrupt mapping entry";
			return -EINVAL;
		}
		if (vmc_lookup(c, ob) != VMC_NIL) {
			*error = "Two cache blocks map the same origin block";
			return -EINVAL;
		}
		vmc_policy_load(c, cb, ob, valid, dirty);
		if (e & VMC_ENTRY_NOCRC)
			c->blocks[cb].flags |= VMC_B_NOCRC;
		n.valid++;
		n.dirty += !!dirty;
	}
	c->mpage_count[p] = n;
	c->md_valid += n.valid;
	c->md_dirty += n.dirty;
	return 0;
}

/* the newest superblock, checked against the geometry we run with */
static int reread_sb(struct vmcache *c, char **error)
{
	struct vmc_superblock *sb[VMC_SB_SLOTS] = { NULL, NULL };
	u32 nr_blocks = c->nr_blocks, flags;
	bool blank, data_crc = c->data_crc;
	int r, best;

	r = alloc_sbs(sb, error);
	if (r)
		goto out;
	best = read_sbs(c, sb, &blank, error);
	r = best;
	if (best == -1) {
		*error = "Superblock vanished";
		r = -EINVAL;
	}
	if (r < 0)
		goto out;
	r = check_sb(c, sb[best], c->tun[VMC_T_BLOCK_SIZE], error);
	if (!r && (c->nr_blocks != nr_blocks || c->data_crc != data_crc)) {
		*error = "Cache geometry changed under the table";
		r = -EINVAL;
	}
	if (r)
		goto out;
	c->sb_slot = best;
	c->loaded_dirty = le64_to_cpu(sb[best]->nr_dirty);
	c->loaded_valid = le64_to_cpu(sb[best]->nr_valid);
	flags = le32_to_cpu(sb[best]->flags);
	c->loaded_flux = (flags & (VMC_SB_FLUX | VMC_SB_CLEAN_SHUTDOWN)) ==
			 VMC_SB_FLUX;
	/* recovery makes the blocks dirty: nothing is in flux any more */
	c->flux_ondisk = false;
out:
	free_sbs(sb);
	return r;
}

/*
 * After a power cut with FLUX set, a clean block may hold a different
 * version than the origin: the cache copy wins and is written back.
 */
static u32 recover_flux(struct vmcache *c)
{
	u32 i, n = 0;

	for (i = 0; i < c->nr_blocks; i++) {
		struct vmc_block *b = &c->blocks[i];

		if ((b->flags & VMC_B_MAPPED) && (b->valid & ~b->dirty)) {
			vmc_policy_set_dirty(c, i, b->valid);
			/* no checksum covers the data made dirty here */
			if (c->data_crc)
				b->flags |= VMC_B_NOCRC;
			n++;
		}
		if (!(i % VMC_SCAN_STEP))
			cond_resched();
	}
	return n;
}

int vmc_md_load(struct vmcache *c, char **error)
{
	unsigned long *leftover, *suspect;
	void *b_copy = NULL;
	u32 p, n, i;
	int r;

	r = reread_sb(c, error);
	if (r)
		return r;
	vmc_crc_forget(c);
	b_copy = vmalloc((size_t)VMC_LOAD_CHUNK * VMC_PAGE_SIZE);
	leftover = bitmap_zalloc(c->layout.nr_mpages, GFP_KERNEL);
	suspect = bitmap_zalloc(c->layout.nr_mpages, GFP_KERNEL);
	if (!b_copy || !leftover || !suspect) {
		vfree(b_copy);
		bitmap_free(leftover);
		bitmap_free(suspect);
		*error = "Cannot allocate metadata buffers";
		return -ENOMEM;
	}
	bitmap_zero(c->mpage_slot, c->layout.nr_mpages);
	c->md_valid = 0;
	c->md_dirty = 0;
	for (p = 0; !r && p < c->layout.nr_mpages; p += n) {
		n = min(c->layout.nr_mpages - p, VMC_LOAD_CHUNK);
		r = md_rw(c, REQ_OP_READ, c->staging,
			  vmc_mpage_sector(&c->layout, 0, p), n);
		if (!r)
			r = md_rw(c, REQ_OP_READ, b_copy,
				  vmc_mpage_sector(&c->layout, 1, p), n);
		if (r) {
			*error = "Cannot read mapping pages";
			break;
		}
		for (i = 0; !r && i < n; i++) {
			struct vmc_mpage *a = c->staging + (size_t)i * VMC_PAGE_SIZE;
			struct vmc_mpage *b = b_copy + (size_t)i * VMC_PAGE_SIZE;
			enum mpage_verdict va = mpage_check(c, a, p + i);
			enum mpage_verdict vb = mpage_check(c, b, p + i);

			if (va != MP_GOOD && vb != MP_GOOD) {
				DMERR("%s: mapping page %u: A %llu %s, B %llu %s, sb seq %llu",
				      c->name, p + i, le64_to_cpu(a->hdr.seq),
				      va == MP_BAD ? "bad" : "leftover",
				      le64_to_cpu(b->hdr.seq),
				      vb == MP_BAD ? "bad" : "leftover", c->seq);
				*error = "Mapping page corrupt in both copies";
				r = -EINVAL;
				break;
			}
			if (va == MP_LEFTOVER || vb == MP_LEFTOVER)
				set_bit(p + i, leftover);
			/*
			 * A commit that never finished may have left CRC
			 * pages of these blocks: it wrote (leftover) or tore
			 * (bad, not zero) a copy of this mapping page first.
			 */
			if (va == MP_LEFTOVER || vb == MP_LEFTOVER ||
			    (va == MP_BAD && memchr_inv(a, 0, VMC_PAGE_SIZE)) ||
			    (vb == MP_BAD && memchr_inv(b, 0, VMC_PAGE_SIZE)))
				set_bit(p + i, suspect);
			if (vb == MP_GOOD && (va != MP_GOOD ||
					      le64_to_cpu(b->hdr.seq) >
					      le64_to_cpu(a->hdr.seq))) {
				set_bit(p + i, c->mpage_slot);
				a = b;
			}
			r = load_page(c, a, p + i, error);
		}
		cond_resched();
	}
	vfree(b_copy);
	if (!r && (c->md_dirty != c->loaded_dirty ||
		   c->md_valid != c->loaded_valid)) {
		DMERR("%s: pages map %llu blocks (%llu dirty), sb seq %llu: %llu (%llu)",
		      c->name, c->md_valid, c->md_dirty, c->seq, c->loaded_valid,
		      c->loaded_dirty);
		*error = "Mapping counts do not match the superblock";
		r = -EINVAL;
	}
	/*
	 * The policy marked what it loaded; only these need writing (any
	 * commit writes them: none needs to come sooner for their sake).
	 */
	bitmap_copy(c->mpage_dirty, leftover, c->layout.nr_mpages);
	c->md_needed = false;
	bitmap_free(leftover);
	if (!r)
		r = vmc_crc_load_suspect(c, suspect, error);
	bitmap_free(suspect);
	/*
	 * A reload's constructor: FLUX is the live table's, not a crash's.
	 * live_sibling stays set only when recovery was skipped, so that the
	 * first resume loads again (an unchanged cache is not read twice).
	 */
	if (!c->loaded_flux)
		c->live_sibling = false;
	if (!r && c->loaded_flux && !c->live_sibling) {
		n = recover_flux(c);
		if (n)
			DMWARN("%s: unclean shutdown in flux: %u cached blocks to write back",
			       c->name, n);
	}
	return r;
}

/* sequence number of the newest valid superblock on the device */
static int disk_seq(struct vmcache *c, u64 *seq, char **error)
{
	struct vmc_superblock *sb[VMC_SB_SLOTS] = { NULL, NULL };
	bool blank;
	int r, best;

	r = alloc_sbs(sb, error);
	if (!r) {
		best = read_sbs(c, sb, &blank, error);
		if (best == -1) {
			*error = "Superblock vanished";
			best = -EINVAL;
		}
		r = min(best, 0);
		if (!r)
			*seq = le64_to_cpu(sb[best]->seq);
	}
	free_sbs(sb);
	return r;
}

static int reload(struct vmcache *c, char **error)
{
	vmc_policy_destroy(c);
	if (vmc_policy_create(c)) {
		*error = "Cannot allocate block table";
		return -ENOMEM;
	}
	return vmc_md_load(c, error);
}

/* the disk says what @from's memory says: take its state over */
static void adopt(struct vmcache *c, struct vmcache *from)
{
	vmc_policy_adopt(c, from);
	bitmap_copy(c->mpage_slot, from->mpage_slot, c->layout.nr_mpages);
	memcpy(c->mpage_count, from->mpage_count,
	       array_size(c->layout.nr_mpages, sizeof(*c->mpage_count)));
	c->md_valid = from->md_valid;
	c->md_dirty = from->md_dirty;
	bitmap_zero(c->mpage_dirty, c->layout.nr_mpages);
	c->md_needed = false;
	c->seq = from->seq;
	c->sb_slot = from->sb_slot;
	c->loaded_dirty = c->nr_dirty;
	c->loaded_valid = c->nr_valid_blocks;
	c->loaded_flux = false;
	c->flux_ondisk = false;
	c->md_state = VMC_MD_OK;
	/* the blocks' dirtying times count from its start */
	c->start_time = from->start_time;
}

/*
 * First resume.  Beside a live table the constructor read nothing: take
 * the state of the table this one replaces when nothing was committed
 * since its final commit (a reload of an unchanged cache reads no
 * mapping page), else load.  Without one, load again only if another
 * table committed since the constructor loaded.
 */
int vmc_md_refresh(struct vmcache *c, struct vmcache *from, char **error)
{
	u64 seq;
	int r = disk_seq(c, &seq, error);

	if (r)
		return r;
	/* a table whose metadata failed may know more than its disk says */
	if (c->live_sibling && from && from->md_state == VMC_MD_OK &&
	    seq == from->seq) {
		c->live_sibling = false;
		adopt(c, from);
		return 0;
	}
	if (seq == c->seq && !c->live_sibling && c->blocks)
		return 0;
	c->live_sibling = false;
	return reload(c, error);
}

/* ------------------------------------------------------------------ */
/* commit */

static void set_md_state(struct vmcache *c, enum vmc_md_state s)
{
	if (c->md_state >= s)
		return;
	c->md_state = s;
	DMERR("%s: metadata %s", c->name,
	      s == VMC_MD_FAIL ? "failed: caching stopped" : "needs check");
	dm_table_event(c->ti->table);
}

static int write_pages(struct vmcache *c, u64 seq)
{
	struct vmc_md_io io;
	u32 p;

	vmc_md_io_start(&io);
	for_each_set_bit(p, c->mpage_writing, c->layout.nr_mpages) {
		struct vmc_mpage *mp = c->staging + (size_t)p * VMC_PAGE_SIZE;
		u32 slot = !test_bit(p, c->mpage_slot);

		seal_page(c, mp, p, seq);
		vmc_md_write_page(c, &io, mp,
				  vmc_mpage_sector(&c->layout, slot, p));
	}
	return vmc_md_io_wait(&io);
}

/* a flush must commit: a needed change, a waiter, blocks to free */
static bool md_needed(struct vmcache *c)
{
	lockdep_assert_held(&c->lock);
	return c->md_needed || c->lists[VMC_LIST_PENDING].count ||
	       !bio_list_empty(&c->commit_wait);
}

/* a commit would write something (or clear a stale FLUX) */
static bool md_changed(struct vmcache *c)
{
	lockdep_assert_held(&c->lock);
	return md_needed(c) ||
	       !bitmap_empty(c->mpage_dirty, c->layout.nr_mpages) ||
	       (c->flux_ondisk && !c->flux_recent && !c->flux_inflight);
}

/* @lazy: lazy changes count too (see vmcache.h, md_needed) */
bool vmc_md_changed(struct vmcache *c, bool lazy)
{
	bool changed;

	spin_lock_irq(&c->lock);
	changed = lazy ? md_changed(c) : md_needed(c);
	spin_unlock_irq(&c->lock);
	return changed;
}

/* an origin flush covering every origin write completed so far */
static int flush_origin(struct vmcache *c)
{
	if (!atomic_xchg(&c->origin_unflushed, 0))
		return 0;
	if (!blkdev_issue_flush(c->origin_dev->bdev))
		return 0;
	atomic_set(&c->origin_unflushed, 1);
	vmc_stat_inc(c, VMC_S_ORIGIN_ERRORS);
	return -EIO;
}

/*
 * The commit itself, under commit_lock.  Returns a metadata error (which
 * fails the metadata); *origin_err tells whether the origin flush failed.
 */
static int commit_locked(struct vmcache *c, bool clean, int *origin_err,
			 struct bio_list *waiting)
{
	u32 pending, nr_pages = c->layout.nr_mpages, p, flags;
	u64 seq;
	bool flux;
	int r;

	*origin_err = 0;
	/* suspended after its final commit: a reload may be reading */
	if (c->md_frozen)
		return 0;
	/* room to snapshot every changed CRC page in the same lock hold */
	for (;;) {
		r = vmc_crc_stage_prepare(c);
		spin_lock_irq(&c->lock);
		if (r || vmc_crc_stage_fits(c))
			break;
		spin_unlock_irq(&c->lock);
	}
	bio_list_merge(waiting, &c->commit_wait);
	bio_list_init(&c->commit_wait);
	if (c->md_state != VMC_MD_OK || r) {
		spin_unlock_irq(&c->lock);
		if (r)
			set_md_state(c, VMC_MD_FAIL);
		return -EIO;
	}
	pending = c->lists[VMC_LIST_PENDING].count;
	/*
	 * FLUX stays while writes over clean blocks go on: not aged here, or
	 * the next such write would wait for one more commit to set it again
	 */
	flux = c->flux_recent || c->flux_inflight;
	/* a load ignores FLUX beside CLEAN_SHUTDOWN */
	if (!flux || clean)
		c->flux_ondisk = false;
	bitmap_copy(c->mpage_writing, c->mpage_dirty, nr_pages);
	bitmap_zero(c->mpage_dirty, nr_pages);
	c->md_needed = false;
	/* data_crc: the checksums staged and the entries, one snapshot */
	if (c->data_crc)
		for_each_set_bit(p, c->mpage_writing, nr_pages)
			encode_mpage(c, p);
	vmc_crc_stage(c);
	spin_unlock_irq(&c->lock);
	/* otherwise each page is encoded on its own (step 1 above) */
	if (c->data_crc)
		note_hold(c, bitmap_weight(c->mpage_writing, nr_pages));
	else
		encode_pages(c);

	seq = c->seq + 1;
	r = write_pages(c, seq);
	if (!r)
		r = vmc_crc_write(c, seq);
	/* an origin we cannot flush may hold older data than clean blocks */
	*origin_err = flush_origin(c);
	if (*origin_err)
		flux = true;
	if (!r) {
		u32 slot = !c->sb_slot;

		flags = (clean ? VMC_SB_CLEAN_SHUTDOWN : 0) |
			(flux ? VMC_SB_FLUX : 0);
		sb_fill(c, c->sb_buf, slot, seq, flags, c->md_dirty,
			c->md_valid);
		r = md_rw(c, REQ_OP_WRITE | REQ_PREFLUSH | REQ_FUA, c->sb_buf,
			  (sector_t)slot * VMC_PAGE_SECTORS, 1);
	}
	if (r) {
		/* the pages we did not commit must be written next time */
		spin_lock_irq(&c->lock);
		bitmap_or(c->mpage_dirty, c->mpage_dirty, c->mpage_writing,
			  nr_pages);
		c->md_needed = true;
		spin_unlock_irq(&c->lock);
		vmc_crc_committed(c, false);
		vmc_stat_inc(c, VMC_S_CACHE_ERRORS);
		set_md_state(c, VMC_MD_FAIL);
		return r;
	}
	c->seq = seq;
	c->sb_slot = !c->sb_slot;
	c->md_frozen = clean;
	bitmap_xor(c->mpage_slot, c->mpage_slot, c->mpage_writing, nr_pages);
	vmc_stat_inc(c, VMC_S_COMMITS);

	note_durable(c);
	spin_lock_irq(&c->lock);
	if (flux && !clean)
		c->flux_ondisk = true;
	vmc_policy_release_pending(c, pending);
	spin_unlock_irq(&c->lock);
	vmc_crc_committed(c, true);
	return 0;
}

int vmc_md_commit(struct vmcache *c, bool clean, struct bio_list *waiting)
{
	int r, origin_err;

	mutex_lock(&c->commit_lock);
	r = commit_locked(c, clean, &origin_err, waiting);
	mutex_unlock(&c->commit_lock);
	return r;
}

/*
 * What a REQ_PREFLUSH needs: every write completed before it durable with
 * the mappings that describe it.  Under commit_lock, so a commit already
 * under way (its snapshot maybe older than those writes) is finished first
 * and is never mistaken for one that covers them.
 */
int vmc_md_flush(struct vmcache *c, struct bio_list *waiting)
{
	int r, origin_err = 0;

	mutex_lock(&c->commit_lock);
	/* lazy changes alone need no commit: a flush covers the data */
	if (vmc_md_changed(c, false)) {
		r = commit_locked(c, false, &origin_err, waiting);
	} else if (c->md_state != VMC_MD_OK) {
		r = -EIO;
	} else {
		origin_err = flush_origin(c);
		r = blkdev_issue_flush(c->cache_dev->bdev);
		if (r)
			vmc_stat_inc(c, VMC_S_CACHE_ERRORS);
	}
	mutex_unlock(&c->commit_lock);
	return r ?: origin_err;
}

void vmc_md_close(struct vmcache *c)
{
	vmc_crc_destroy(c);
	vfree(c->staging);
	c->staging = NULL;
	vfree(c->sb_buf);
	c->sb_buf = NULL;
	bitmap_free(c->mpage_dirty);
	bitmap_free(c->mpage_slot);
	bitmap_free(c->mpage_writing);
	c->mpage_dirty = NULL;
	c->mpage_slot = NULL;
	c->mpage_writing = NULL;
	kvfree(c->mpage_count);
	c->mpage_count = NULL;
	if (c->io_client)
		dm_io_client_destroy(c->io_client);
	c->io_client = NULL;
}
