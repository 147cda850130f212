// SPDX-License-Identifier: GPL-2.0
/*
 * dm-vmcache data checksums ("data_crc 1").
 *
 * Each dirty sub-block (one 512-byte sector: data_crc needs 4 KiB blocks)
 * has two CRC-32C slots in a CRC page (vmcache_ondisk.h).  Its data on the
 * cache matches one of them, at every instant a power cut may come:
 *
 *  - a write to sub-blocks that are not valid goes to the cache at once;
 *    the commit that records them dirty comes after it completed, and by
 *    then the page holds its CRC (set at completion);
 *  - a write over valid sub-blocks (an overwrite) first puts its CRC in
 *    slot 1 (slot 0 holding the CRC of the data there now, read from the
 *    cache first for a clean sub-block), marks them dirty and waits for a
 *    commit (c->commit_wait): the disk then accepts the old and the new
 *    data; at completion slot 0 takes the new CRC, slot 1 the old one;
 *  - one such write per sector at a time: a second one waits (parked)
 *    until the first completes.
 *
 * What is written is what was checksummed: writes are copied into pages
 * of our own (bounce) and the CRC is computed over the copy, so a writer
 * changing its buffer while the write is in flight cannot make the two
 * differ.
 *
 * Read hits of dirty data and writeback check the data against the two
 * slots (unless the block is NOCRC: made dirty by the recovery of a power
 * cut in FLUX).  A read that fails is read again once (it may have raced
 * a write); a mismatch fails the read with EIO, is logged with the origin
 * block and counted in crc_errors.  Writeback never copies such data to
 * the origin: the sub-block is dropped, as an unreadable one is
 * (data_loss), and the origin keeps its older copy.
 *
 * CRC pages are read on demand and kept in memory while in use, changed
 * since the last commit, or among the VMC_CRC_CACHE_PAGES most recently
 * used; the others are dropped (clock).  A commit snapshots the changed
 * pages (under c->lock, with the mapping pages) and writes them after the
 * mapping pages covering their blocks and a flush, so that a CRC page copy
 * left by a commit that never finished always comes with a mapping page
 * copy the loader notices (vmc_crc_load_suspect).
 */
#include <linux/blkdev.h>
#include <linux/crc32c.h>
#include <linux/dm-io.h>
#include <linux/highmem.h>
#include <linux/slab.h>
#include <linux/vmalloc.h>
#include "vmcache-crc.h"
#include "vmcache-metadata.h"
#include "vmcache-policy.h"

#define BPP			VMC_CRC_BLOCKS_PER_PAGE
#define VMC_CRC_CACHE_PAGES	1024	/* unused pages kept: 4 MiB, 64512 blocks */
#define VMC_CRC_CHUNK		256	/* pages written per I/O at format */

struct vmc_cpage_mem {
	struct vmc_cpage *img;		/* the page as the next commit writes it */
	u8 busy[BPP];			/* sectors with a write registered */
	u16 pins;			/* users that need it resident */
	u8 slot;			/* copy (A/B) holding the newest on disk */
	bool ref;			/* used since the clock hand passed */
};

/* a write's copy of its data (bi_private of the bounce bio) */
struct vmc_crc_io {
	struct vmcache *c;
	struct bio *orig;
	u32 cblock;	/* block of the first sector */
	u32 first;	/* first sector, inside cblock */
	u32 nsect;
	bool overwrite;
	u32 crc[];
};

static void crc_write_endio(struct bio *bb);

static u32 data_crc(const void *p, unsigned int len)
{
	return ~crc32c(VMC_CRC_SEED, p, len);
}

static u32 page_of(u32 cblock)
{
	return cblock / BPP;
}

static __le32 *slots(struct vmcache *c, u32 cblock, u32 sub)
{
	return c->cpages[page_of(cblock)]->img->crc[cblock % BPP][sub];
}

static u32 cpage_csum(struct vmcache *c, const struct vmc_cpage *p)
{
	return vmc_md_page_csum(c, &p->hdr);
}

static void seal(struct vmcache *c, struct vmc_cpage *p, u32 q, u64 seq)
{
	p->hdr.index = cpu_to_le32(VMC_CPAGE_INDEX_FLAG | q);
	p->hdr.seq = cpu_to_le64(seq);
	p->hdr.csum = cpu_to_le32(cpage_csum(c, p));
}

/* a copy of page @q that a commit at or below @seq wrote whole */
static bool good_copy(struct vmcache *c, struct vmc_cpage *p, u32 q, u64 seq)
{
	return le32_to_cpu(p->hdr.csum) == cpage_csum(c, p) &&
	       le32_to_cpu(p->hdr.index) == (VMC_CPAGE_INDEX_FLAG | q) &&
	       le64_to_cpu(p->hdr.seq) <= seq;
}

/* ------------------------------------------------------------------ */
/* the page table */

static void free_cpage(struct vmc_cpage_mem *m)
{
	if (!m)
		return;
	free_page((unsigned long)m->img);
	kfree(m);
}

int vmc_crc_init(struct vmcache *c, char **error)
{
	u32 n = c->layout.nr_cpages;

	if (!c->data_crc)
		return 0;
	c->cpages = kvcalloc(n, sizeof(*c->cpages), GFP_KERNEL);
	c->cpage_dirty = bitmap_zalloc(n, GFP_KERNEL);
	c->cpage_writing = bitmap_zalloc(n, GFP_KERNEL);
	if (!c->cpages || !c->cpage_dirty || !c->cpage_writing) {
		*error = "Cannot allocate checksum tables";
		return -ENOMEM;
	}
	return 0;
}

void vmc_crc_forget(struct vmcache *c)
{
	u32 q;

	if (!c->cpages)
		return;
	for (q = 0; q < c->layout.nr_cpages; q++) {
		free_cpage(c->cpages[q]);
		c->cpages[q] = NULL;
	}
	bitmap_zero(c->cpage_dirty, c->layout.nr_cpages);
	bitmap_zero(c->cpage_writing, c->layout.nr_cpages);
	c->cpages_loaded = 0;
	c->cpages_changed = 0;
}

void vmc_crc_destroy(struct vmcache *c)
{
	vmc_crc_forget(c);
	kvfree(c->cpages);
	c->cpages = NULL;
	bitmap_free(c->cpage_dirty);
	bitmap_free(c->cpage_writing);
	c->cpage_dirty = NULL;
	c->cpage_writing = NULL;
	vfree(c->cstaging);
	c->cstaging = NULL;
	c->cstaging_pages = 0;
}

/* read page @q: the newest whole copy not above the durable commit */
static struct vmc_cpage_mem *read_cpage(struct vmcache *c, u32 q, int *err)
{
	struct vmc_cpage_mem *m = kzalloc(sizeof(*m), GFP_NOIO);
	struct vmc_cpage *b = (void *)__get_free_page(GFP_NOIO);
	u64 seq = READ_ONCE(c->seq);
	bool ga, gb;

	*err = -ENOMEM;
	if (!m || !b)
		goto fail;
	m->img = (void *)__get_free_page(GFP_NOIO);
	if (!m->img)
		goto fail;
	*err = vmc_md_rw(c, REQ_OP_READ, m->img,
			 vmc_cpage_sector(&c->layout, 0, q), VMC_PAGE_SECTORS);
	if (!*err)
		*err = vmc_md_rw(c, REQ_OP_READ, b,
				 vmc_cpage_sector(&c->layout, 1, q),
				 VMC_PAGE_SECTORS);
	if (*err)
		goto fail;
	ga = good_copy(c, m->img, q, seq);
	gb = good_copy(c, b, q, seq);
	if (!ga && !gb) {
		DMERR_LIMIT("%s: CRC page %u: no valid copy", c->name, q);
		*err = -EIO;
		goto fail;
	}
	if (gb && (!ga || le64_to_cpu(b->hdr.seq) > le64_to_cpu(m->img->hdr.seq))) {
		memcpy(m->img, b, VMC_PAGE_SIZE);
		m->slot = 1;
	}
	free_page((unsigned long)b);
	m->ref = true;
	return m;
fail:
	free_page((unsigned long)b);
	free_cpage(m);
	return NULL;
}

/* make page @q resident and pin it; sleeps */
static int pin_one(struct vmcache *c, u32 q)
{
	struct vmc_cpage_mem *m, *fresh;
	int r = 0;

	spin_lock_irq(&c->lock);
	m = c->cpages[q];
	if (m) {
		m->pins++;
		m->ref = true;
	}
	spin_unlock_irq(&c->lock);
	if (m)
		return 0;

	mutex_lock(&c->crc_load_lock);
	spin_lock_irq(&c->lock);
	m = c->cpages[q];
	if (m)
		m->pins++;
	spin_unlock_irq(&c->lock);
	if (!m) {
		fresh = read_cpage(c, q, &r);
		if (fresh) {
			fresh->pins = 1;
			spin_lock_irq(&c->lock);
			c->cpages[q] = fresh;
			c->cpages_loaded++;
			spin_unlock_irq(&c->lock);
		}
	}
	mutex_unlock(&c->crc_load_lock);
	return r;
}

static void unpin_locked(struct vmcache *c, u32 first_q, u32 last_q)
{
	u32 q;

	for (q = first_q; q <= last_q; q++)
		c->cpages[q]->pins--;
}

static void unpin(struct vmcache *c, u32 first_q, u32 last_q)
{
	unsigned long flags;

	spin_lock_irqsave(&c->lock, flags);
	unpin_locked(c, first_q, last_q);
	spin_unlock_irqrestore(&c->lock, flags);
}

/* pin the pages of blocks [@cb, @last]; all or none */
static int pin_range(struct vmcache *c, u32 cb, u32 last)
{
	u32 q;
	int r;

	for (q = page_of(cb); q <= page_of(last); q++) {
		r = pin_one(c, q);
		if (r) {
			if (q > page_of(cb))
				unpin(c, page_of(cb), q - 1);
			return r;
		}
	}
	return 0;
}

/* under c->lock: page @q changed, and so (for the loader) its mapping pages */
static void mark_changed(struct vmcache *c, u32 q)
{
	u32 b0 = q * BPP, b1 = min(b0 + BPP, c->nr_blocks) - 1;

	if (!__test_and_set_bit(q, c->cpage_dirty))
		c->cpages_changed++;
	vmc_mark_mpage(c, b0);
	vmc_mark_mpage(c, b1);
}

/* drop unused pages beyond the cache size, clock order */
static void shrink(struct vmcache *c)
{
	struct vmc_cpage_mem *victims[16];
	u32 n, steps = 0, i;

	do {
		n = 0;
		spin_lock_irq(&c->lock);
		while (c->cpages_loaded > VMC_CRC_CACHE_PAGES &&
		       n < ARRAY_SIZE(victims) &&
		       steps++ < 2 * c->layout.nr_cpages) {
			u32 q = c->cpage_hand;
			struct vmc_cpage_mem *m = c->cpages[q];

			c->cpage_hand = q + 1 < c->layout.nr_cpages ? q + 1 : 0;
			if (!m || m->pins || test_bit(q, c->cpage_dirty) ||
			    test_bit(q, c->cpage_writing))
				continue;
			if (m->ref) {
				m->ref = false;
				continue;
			}
			c->cpages[q] = NULL;
			c->cpages_loaded--;
			victims[n++] = m;
		}
		spin_unlock_irq(&c->lock);
		for (i = 0; i < n; i++)
			free_cpage(victims[i]);
	} while (n == ARRAY_SIZE(victims));
}

/* ------------------------------------------------------------------ */
/* format, load, commit */

int vmc_crc_format(struct vmcache *c)
{
	u32 q, n, i;
	int r = 0;

	for (q = 0; !r && q < c->layout.nr_cpages; q += n) {
		n = min(c->layout.nr_cpages - q, VMC_CRC_CHUNK);
		memset(c->staging, 0, (size_t)n * VMC_PAGE_SIZE);
		r = vmc_md_rw(c, REQ_OP_WRITE, c->staging,
			      vmc_cpage_sector(&c->layout, 1, q),
			      n * VMC_PAGE_SECTORS);
		for (i = 0; i < n; i++)
			seal(c, c->staging + (size_t)i * VMC_PAGE_SIZE, q + i, 1);
		if (!r)
			r = vmc_md_rw(c, REQ_OP_WRITE, c->staging,
				      vmc_cpage_sector(&c->layout, 0, q),
				      n * VMC_PAGE_SECTORS);
	}
	return r;
}

int vmc_crc_load_suspect(struct vmcache *c, const unsigned long *suspect,
			 char **error)
{
	u32 p, q;
	int r;

	if (!c->data_crc)
		return 0;
	for_each_set_bit(p, suspect, c->layout.nr_mpages) {
		u32 b0 = p * VMC_ENTRIES_PER_PAGE;
		u32 b1 = min_t(u32, b0 + VMC_ENTRIES_PER_PAGE, c->nr_blocks) - 1;

		for (q = page_of(b0); q <= page_of(b1); q++) {
			r = pin_one(c, q);
			if (r) {
				*error = "Cannot read CRC pages";
				return r;
			}
			spin_lock_irq(&c->lock);
			mark_changed(c, q);
			c->cpages[q]->pins--;
			spin_unlock_irq(&c->lock);
		}
	}
	return 0;
}

/* room in the staging area for every changed page; may sleep */
int vmc_crc_stage_prepare(struct vmcache *c)
{
	u32 want;
	void *buf;

	if (!c->data_crc)
		return 0;
	spin_lock_irq(&c->lock);
	want = c->cpages_changed + 16;
	spin_unlock_irq(&c->lock);
	if (want <= c->cstaging_pages)
		return 0;
	want = roundup_pow_of_two(want);
	buf = vmalloc(array_size(want, VMC_PAGE_SIZE));
	if (!buf)
		return -ENOMEM;
	vfree(c->cstaging);
	c->cstaging = buf;
	c->cstaging_pages = want;
	return 0;
}

bool vmc_crc_stage_fits(struct vmcache *c)
{
	lockdep_assert_held(&c->lock);
	return !c->data_crc || c->cpages_changed <= c->cstaging_pages;
}

/* under c->lock, with the mapping snapshot: copy every changed page */
u32 vmc_crc_stage(struct vmcache *c)
{
	u32 q, n = 0;

	lockdep_assert_held(&c->lock);
	if (!c->data_crc)
		return 0;
	bitmap_copy(c->cpage_writing, c->cpage_dirty, c->layout.nr_cpages);
	bitmap_zero(c->cpage_dirty, c->layout.nr_cpages);
	c->cpages_changed = 0;
	for_each_set_bit(q, c->cpage_writing, c->layout.nr_cpages) {
		if (WARN_ON_ONCE(!c->cpages[q])) {
			__clear_bit(q, c->cpage_writing);
			continue;
		}
		memcpy(c->cstaging + (size_t)n * VMC_PAGE_SIZE,
		       c->cpages[q]->img, VMC_PAGE_SIZE);
		n++;
	}
	return n;
}

/*
 * After the mapping pages: a flush makes them durable first, so that any
 * CRC page copy of this commit found later comes with mapping page copies
 * of the same commit.  Each page goes to the copy not holding its newest.
 */
int vmc_crc_write(struct vmcache *c, u64 seq)
{
	struct vmc_md_io io;
	u32 q, n = 0;
	int r;

	if (!c->data_crc ||
	    bitmap_empty(c->cpage_writing, c->layout.nr_cpages))
		return 0;
	r = blkdev_issue_flush(c->cache_dev->bdev);
	if (r)
		return r;
	vmc_md_io_start(&io);
	for_each_set_bit(q, c->cpage_writing, c->layout.nr_cpages) {
		struct vmc_cpage *p = c->cstaging + (size_t)n++ * VMC_PAGE_SIZE;
		u32 slot = !c->cpages[q]->slot;

		seal(c, p, q, seq);
		vmc_md_write_page(c, &io, p,
				  vmc_cpage_sector(&c->layout, slot, q));
	}
	return vmc_md_io_wait(&io);
}

/* the commit is durable (@ok) or failed: its pages are written or changed */
void vmc_crc_committed(struct vmcache *c, bool ok)
{
	u32 q;

	if (!c->data_crc)
		return;
	spin_lock_irq(&c->lock);
	if (ok) {
		for_each_set_bit(q, c->cpage_writing, c->layout.nr_cpages)
			c->cpages[q]->slot ^= 1;
	} else {
		bitmap_or(c->cpage_dirty, c->cpage_dirty, c->cpage_writing,
			  c->layout.nr_cpages);
		c->cpages_changed = bitmap_weight(c->cpage_dirty,
						  c->layout.nr_cpages);
	}
	bitmap_zero(c->cpage_writing, c->layout.nr_cpages);
	spin_unlock_irq(&c->lock);
	shrink(c);
}

/* ------------------------------------------------------------------ */
/* writes */

static void locate(struct vmc_crc_io *x, u32 k, u32 *cb, u32 *sub)
{
	*cb = x->cblock + (x->first + k) / VMC_SUBBLOCKS;
	*sub = (x->first + k) % VMC_SUBBLOCKS;
}

static u32 last_block(struct vmc_crc_io *x)
{
	return x->cblock + (x->first + x->nsect - 1) / VMC_SUBBLOCKS;
}

bool vmc_crc_is_bounce(struct bio *bio)
{
	return bio->bi_end_io == crc_write_endio;
}

void vmc_crc_defer(struct vmcache *c, struct bio *bio)
{
	unsigned long flags;

	bio->bi_opf &= ~REQ_POLLED;
	spin_lock_irqsave(&c->defer_lock, flags);
	bio_list_add(&c->crc_bios, bio);
	spin_unlock_irqrestore(&c->defer_lock, flags);
	queue_work(c->wq, &c->crc_work);
}

/*
 * Register a write's CRCs (its pages are pinned) and send it, now or
 * after the commit that lets the disk accept them.
 */
static void register_write(struct vmcache *c, struct bio *bb)
{
	struct vmc_crc_io *x = bb->bi_private;
	u32 k, cb, sub, old[VMC_SUBBLOCKS];
	bool wait = false;
	u8 clean = 0, mask = 0;
	void *buf;
	int r = -EIO;

	spin_lock_irq(&c->lock);
	for (k = 0; k < x->nsect; k++) {
		locate(x, k, &cb, &sub);
		if (c->cpages[page_of(cb)]->busy[cb % BPP] & BIT(sub)) {
			/* one write per sector at a time: wait for the other */
			bio_list_add(&c->crc_parked, bb);
			spin_unlock_irq(&c->lock);
			return;
		}
	}
	for (k = 0; k < x->nsect; k++) {
		locate(x, k, &cb, &sub);
		c->cpages[page_of(cb)]->busy[cb % BPP] |= BIT(sub);
		slots(c, cb, sub)[1] = cpu_to_le32(x->crc[k]);
	}
	if (x->overwrite) {
		/* one block: map cuts overwrites at block ends */
		mask = GENMASK(x->first + x->nsect - 1, x->first);
		clean = mask & ~c->blocks[x->cblock].dirty;
	}
	spin_unlock_irq(&c->lock);
	if (!x->overwrite) {
		submit_bio_noacct(bb);
		return;
	}

	/* a clean sub-block's slot 0 must hold the CRC of what is there */
	if (clean) {
		buf = kmalloc((size_t)x->nsect << SECTOR_SHIFT, GFP_NOIO);
		if (buf)
			r = vmc_md_rw(c, REQ_OP_READ, buf,
				      vmc_cblock_sector(c, x->cblock) + x->first,
				      x->nsect);
		for (k = 0; !r && k < x->nsect; k++)
			old[k] = data_crc(buf + ((size_t)k << SECTOR_SHIFT),
					  SECTOR_SIZE);
		kfree(buf);
	}
	spin_lock_irq(&c->lock);
	for (k = 0; k < x->nsect; k++) {
		sub = x->first + k;
		/* unreadable: only the new data will be accepted */
		if (clean & BIT(sub))
			slots(c, x->cblock, sub)[0] =
				cpu_to_le32(r ? x->crc[k] : old[k]);
	}
	mark_changed(c, page_of(x->cblock));
	vmc_policy_set_dirty(c, x->cblock, mask);
	/* failed metadata: no commit comes (nothing durable is promised) */
	if (c->md_state == VMC_MD_OK) {
		bio_list_add(&c->commit_wait, bb);
		wait = true;
	}
	spin_unlock_irq(&c->lock);
	if (wait)
		queue_work(c->wq, &c->commit_work);
	else
		submit_bio_noacct(bb);
}

/* copy the write into our own pages, checksum the copy, register it */
static void start_write(struct vmcache *c, struct bio *bio)
{
	struct vmc_bio *pb = dm_per_bio_data(bio, sizeof(*pb));
	u32 nsect = bio_sectors(bio), npages, i, k = 0, s;
	struct bvec_iter src = bio->bi_iter, dst;
	struct vmc_crc_io *x;
	struct bio *bb = NULL;

	npages = DIV_ROUND_UP(nsect, PAGE_SECTORS);
	x = kmalloc(struct_size(x, crc, nsect), GFP_NOIO);
	if (!x)
		goto fail;
	x->c = c;
	x->orig = bio;
	x->cblock = pb->cblock;
	x->first = bio->bi_iter.bi_sector - vmc_cblock_sector(c, pb->cblock);
	x->nsect = nsect;
	x->overwrite = pb->flags & VMC_PB_CRC;
	if (pin_range(c, x->cblock, last_block(x)))
		goto fail;
	bb = bio_alloc_bioset(c->cache_dev->bdev, npages,
			      REQ_OP_WRITE | (bio->bi_opf & (REQ_FUA | REQ_SYNC)),
			      GFP_NOIO, &c->bs);
	for (i = 0; i < npages; i++) {
		unsigned int len = min_t(unsigned int,
					 (nsect - i * PAGE_SECTORS) << SECTOR_SHIFT,
					 PAGE_SIZE);
		struct page *page = alloc_page(GFP_NOIO);

		if (!page || bio_add_page(bb, page, len, 0) != len) {
			if (page)
				__free_page(page);
			unpin(c, page_of(x->cblock), page_of(last_block(x)));
			goto fail;
		}
		/* filled below; checksummed once copied */
	}
	dst = bb->bi_iter;
	bio_copy_data_iter(bb, &dst, bio, &src);
	for (i = 0; i < npages; i++) {
		const u8 *p = page_address(bb->bi_io_vec[i].bv_page);

		for (s = 0; s < bb->bi_io_vec[i].bv_len; s += SECTOR_SIZE)
			x->crc[k++] = data_crc(p + s, SECTOR_SIZE);
	}
	bb->bi_iter.bi_sector = bio->bi_iter.bi_sector;
	bb->bi_end_io = crc_write_endio;
	bb->bi_private = x;
	register_write(c, bb);
	return;
fail:
	if (bb)
		vmc_free_page_bio(bb);
	kfree(x);
	bio->bi_status = BLK_STS_IOERR;
	bio_endio(bio);
}

/* any context: the bounce write completed */
static void crc_write_endio(struct bio *bb)
{
	struct vmc_crc_io *x = bb->bi_private;
	struct vmcache *c = x->c;
	struct bio *orig = x->orig;
	bool ok = !bb->bi_status;
	struct bio_list parked;
	unsigned long flags;
	u32 k, cb, sub, q;

	bio_list_init(&parked);
	spin_lock_irqsave(&c->lock, flags);
	for (k = 0; k < x->nsect; k++) {
		__le32 *e;

		locate(x, k, &cb, &sub);
		e = slots(c, cb, sub);
		/* failed: the sector holds either, keep accepting both */
		if (ok) {
			__le32 prev = e[0];

			e[0] = cpu_to_le32(x->crc[k]);
			e[1] = x->overwrite ? prev : e[0];
		}
		c->cpages[page_of(cb)]->busy[cb % BPP] &= ~BIT(sub);
	}
	for (q = page_of(x->cblock); q <= page_of(last_block(x)); q++)
		mark_changed(c, q);
	unpin_locked(c, page_of(x->cblock), page_of(last_block(x)));
	bio_list_merge(&parked, &c->crc_parked);
	bio_list_init(&c->crc_parked);
	spin_unlock_irqrestore(&c->lock, flags);

	orig->bi_status = bb->bi_status;
	vmc_free_page_bio(bb);
	kfree(x);
	if (!bio_list_empty(&parked)) {
		spin_lock_irqsave(&c->defer_lock, flags);
		bio_list_merge(&c->crc_bios, &parked);
		spin_unlock_irqrestore(&c->defer_lock, flags);
		queue_work(c->wq, &c->crc_work);
	}
	bio_endio(orig);
}

/* ------------------------------------------------------------------ */
/* checks */

/*
 * Under c->lock: how many of the @n sectors from sector @first of block
 * @cb (pages pinned) are dirty, checked and match neither slot.
 */
static u32 mismatches(struct vmcache *c, u32 cb0, u32 first, u32 n,
		      const u32 *crc, u64 *oblock)
{
	u32 k, bad = 0;

	for (k = 0; k < n; k++) {
		u32 cb = cb0 + (first + k) / VMC_SUBBLOCKS;
		u32 sub = (first + k) % VMC_SUBBLOCKS;
		struct vmc_block *b = &c->blocks[cb];
		__le32 v = cpu_to_le32(crc[k]), *e;

		if (!(b->dirty & BIT(sub)) || (b->flags & VMC_B_NOCRC))
			continue;
		e = slots(c, cb, sub);
		if (v != e[0] && v != e[1]) {
			if (!bad)
				*oblock = b->oblock;
			bad++;
		}
	}
	return bad;
}

bool vmc_crc_read_needs_check(struct vmcache *c, struct bio *bio)
{
	struct vmc_bio *pb = dm_per_bio_data(bio, sizeof(*pb));
	unsigned long flags;
	bool dirty = false;
	u32 i;

	if (!c->data_crc || (pb->flags & VMC_PB_CRC) ||
	    op_is_write(bio_op(bio)))
		return false;
	spin_lock_irqsave(&c->lock, flags);
	if (pb->flags & VMC_PB_HIT_RUN) {
		for (i = 0; i < pb->ob_count; i++)
			dirty |= c->blocks[pb->cblock + i].dirty;
	} else if ((pb->flags & (VMC_PB_HOLD | VMC_PB_RETRY)) ==
		   (VMC_PB_HOLD | VMC_PB_RETRY)) {
		dirty = c->blocks[pb->cblock].dirty & pb->mask;
	}
	spin_unlock_irqrestore(&c->lock, flags);
	return dirty;
}

/* CRCs of the sectors of @bio's data in @iter */
static void bio_crcs(struct bio *bio, struct bvec_iter iter, u32 *crc)
{
	u32 run = VMC_CRC_SEED, fill = 0, k = 0;
	struct bvec_iter it;
	struct bio_vec bv;

	__bio_for_each_segment(bv, bio, it, iter) {
		u8 *p = bvec_kmap_local(&bv);
		u32 off = 0;

		while (off < bv.bv_len) {
			u32 len = min(bv.bv_len - off, SECTOR_SIZE - fill);

			run = crc32c(run, p + off, len);
			fill += len;
			off += len;
			if (fill == SECTOR_SIZE) {
				crc[k++] = ~run;
				run = VMC_CRC_SEED;
				fill = 0;
			}
		}
		kunmap_local(p);
	}
}

/*
 * A read hit of dirty data completed: check it.  A mismatch is read again
 * from the cache once (the read may have raced a write whose CRC took the
 * slot); if that copy matches it is what the read returns.
 */
static void check_read(struct vmcache *c, struct bio *bio)
{
	struct vmc_bio *pb = dm_per_bio_data(bio, sizeof(*pb));
	sector_t s0 = dm_target_offset(c->ti, pb->iter.bi_sector);
	u32 first = s0 & (vmc_block_sectors(c) - 1);
	u32 nsect = pb->iter.bi_size >> SECTOR_SHIFT, k, bad = nsect;
	u32 cb = pb->cblock;
	u32 last = cb + (first + nsect - 1) / VMC_SUBBLOCKS;
	u64 oblock = s0 >> c->block_shift;
	u32 *crc = kmalloc_array(nsect, sizeof(*crc), GFP_NOIO);
	u8 *buf = NULL;

	if (!crc || pin_range(c, cb, last))
		goto out;
	bio_crcs(bio, pb->iter, crc);
	spin_lock_irq(&c->lock);
	bad = mismatches(c, cb, first, nsect, crc, &oblock);
	spin_unlock_irq(&c->lock);
	if (bad) {
		buf = kvmalloc((size_t)nsect << SECTOR_SHIFT, GFP_NOIO);
		if (buf && !vmc_md_rw(c, REQ_OP_READ, buf,
				      vmc_cblock_sector(c, cb) + first, nsect)) {
			for (k = 0; k < nsect; k++)
				crc[k] = data_crc(buf + ((size_t)k << SECTOR_SHIFT),
						  SECTOR_SIZE);
			spin_lock_irq(&c->lock);
			bad = mismatches(c, cb, first, nsect, crc, &oblock);
			spin_unlock_irq(&c->lock);
			if (!bad) {
				struct bvec_iter it;
				struct bio_vec bv;
				size_t off = 0;

				__bio_for_each_segment(bv, bio, it, pb->iter) {
					memcpy_to_bvec(&bv, buf + off);
					off += bv.bv_len;
				}
			}
		}
		kvfree(buf);
	}
	unpin(c, page_of(cb), page_of(last));
out:
	kfree(crc);
	if (bad) {
		DMERR_LIMIT("%s: checksum mismatch: origin block %llu (%u sectors): read fails",
			    c->name, (unsigned long long)oblock, bad);
		vmc_stat_add(c, VMC_S_CRC_ERRORS, bad);
		bio->bi_status = BLK_STS_PROTECTION;
	}
	pb->flags |= VMC_PB_CRC;
	/* end_io runs again; the block layer may have used up the count */
	atomic_set(&bio->__bi_remaining, 1);
	bio_endio(bio);
}

/* writeback, process context: the sub-blocks whose copy in @buf is bad */
u8 vmc_crc_check_pages(struct vmcache *c, u32 cblock, u8 mask,
		       const struct page_list *pl, u32 sector)
{
	u32 first = __ffs(mask), n = fls(mask) - first, k, crc[VMC_SUBBLOCKS];
	struct vmc_block *b = &c->blocks[cblock];
	u8 bad = 0;

	if (!c->data_crc)
		return 0;
	if (pin_one(c, page_of(cblock))) {
		DMERR_LIMIT("%s: cannot read the CRC page of cache block %u",
			    c->name, cblock);
		return mask;
	}
	/* a sector never straddles two pages */
	for (k = 0; k < n; k++, sector++) {
		void *p;

		for (; sector >= PAGE_SECTORS; sector -= PAGE_SECTORS)
			pl = pl->next;
		p = kmap_local_page(pl->page);
		crc[k] = data_crc(p + (sector << SECTOR_SHIFT), SECTOR_SIZE);
		kunmap_local(p);
	}
	spin_lock_irq(&c->lock);
	for (k = 0; k < n; k++) {
		u32 sub = first + k;
		__le32 v = cpu_to_le32(crc[k]), *e = slots(c, cblock, sub);

		if ((mask & BIT(sub)) && (b->dirty & BIT(sub)) &&
		    !(b->flags & VMC_B_NOCRC) && v != e[0] && v != e[1])
			bad |= BIT(sub);
	}
	c->cpages[page_of(cblock)]->pins--;
	spin_unlock_irq(&c->lock);
	if (bad) {
		DMERR_LIMIT("%s: checksum mismatch: origin block %llu (0x%02x): origin copy kept",
			    c->name, (unsigned long long)b->oblock, bad);
		vmc_stat_add(c, VMC_S_CRC_ERRORS, hweight8(bad));
	}
	return bad;
}

void vmc_crc_work(struct work_struct *ws)
{
	struct vmcache *c = container_of(ws, struct vmcache, crc_work);
	struct bio_list bios;
	struct bio *bio;

	spin_lock_irq(&c->defer_lock);
	bios = c->crc_bios;
	bio_list_init(&c->crc_bios);
	spin_unlock_irq(&c->defer_lock);
	while ((bio = bio_list_pop(&bios))) {
		if (vmc_crc_is_bounce(bio))
			register_write(c, bio);
		else if (op_is_write(bio_op(bio)))
			start_write(c, bio);
		else
			check_read(c, bio);
	}
	shrink(c);
}
