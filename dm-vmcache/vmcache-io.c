// SPDX-License-Identifier: GPL-2.0
/*
 * dm-vmcache data path: map, end_io, promotion copies, flushes, discards.
 *
 * Every bio is cut (dm_accept_partial_bio) so that all sub-blocks it
 * touches are in one state: INVALID, FILLING (a cache write is in flight
 * that will make them valid), CLEAN or DIRTY.  The state and the mode then
 * pick one of a handful of routes.  The lock is only held to decide and to
 * record; never across I/O.
 *
 * Rules that keep a read from ever seeing stale data:
 *  - sub-blocks become valid only when the cache write that fills them
 *    completes, and not if a write touched them meanwhile (cancel mask);
 *  - a write that cannot go to the cache clears the cached copy of what it
 *    touches (clean) or also goes to the cache (dirty);
 *  - a writethrough write racing another write to the same block does not
 *    update the cache copy, it drops it, so cache and origin never differ.
 */
#include <linux/blkdev.h>
#include <linux/hash.h>
#include <linux/jiffies.h>
#include "vmcache-crc.h"
#include "vmcache-io.h"
#include "vmcache-mrc.h"
#include "vmcache-policy.h"
#include "vmcache-metadata.h"
#include "vmcache-writeback.h"

/* cache-device errors in a row before new writes go around the cache */
#define VMC_DEGRADE_AFTER	8

enum vmc_state { ST_INVALID, ST_FILLING, ST_CLEAN, ST_DIRTY };

enum vmc_route {
	R_ORIGIN,	/* remap to the origin, nothing to track */
	R_READ_HIT,	/* remap to the cache */
	R_READ_FILL,	/* read the origin, then copy into the cache */
	R_CACHE_WRITE,	/* write the cache only (writeback) */
	R_BOTH_WRITE,	/* write origin and cache (writethrough) */
};

/* context of our own bios (fill copies, cache clones): bio front pad */
struct vmc_own {
	struct vmcache *c;
	struct bio *parent;
	struct bio *next;	/* overlay reads: the parent's next one */
	u32 cblock;
	u32 offset;		/* overlay reads: bytes into the parent */
	u8 mask;
	struct bio bio;		/* must be last */
};

static struct vmc_own *own_of(struct bio *bio)
{
	return container_of(bio, struct vmc_own, bio);
}

static enum vmc_state sub_state(struct vmc_block *b, unsigned int i)
{
	u8 bit = 1u << i;

	if (b->filling & bit)
		return ST_FILLING;
	if (b->dirty & bit)
		return ST_DIRTY;
	if (b->valid & bit)
		return ST_CLEAN;
	return ST_INVALID;
}

static u8 range_mask(unsigned int first, unsigned int last)
{
	return (u8)(GENMASK(last, first));
}

/* the sub-blocks of block @ob inside sectors [@s, @end) */
static u8 span_mask(struct vmcache *c, sector_t s, sector_t end, u64 ob)
{
	sector_t bstart = ob << c->block_shift;
	unsigned int lo = s > bstart ? (s - bstart) >> c->sub_shift : 0;
	unsigned int hi = min_t(sector_t, end - bstart, vmc_block_sectors(c));

	hi = (hi + (1u << c->sub_shift) - 1) >> c->sub_shift;
	return range_mask(lo, hi - 1);
}

/* the sub-blocks of block @ob wholly inside sectors [@s, @end) */
static u8 covered_mask(struct vmcache *c, sector_t s, sector_t end, u64 ob)
{
	sector_t bstart = ob << c->block_shift;
	sector_t lo = s > bstart ? s - bstart : 0;
	sector_t hi = min_t(sector_t, end - bstart, vmc_block_sectors(c));
	unsigned int ff = (lo + (1u << c->sub_shift) - 1) >> c->sub_shift;
	unsigned int lf = hi >> c->sub_shift;

	return lf > ff ? range_mask(ff, lf - 1) : 0;
}

static atomic_t *owrite_slot(struct vmcache *c, u64 oblock)
{
	return &c->owrites[hash_64(oblock, VMC_OWRITE_BITS)];
}

/*
 * An origin write that bypasses the cache must not be overtaken by a fill
 * that read the origin before it landed: that would cache the old data.
 * Count it per block while in flight; fills avoid counted blocks.
 */
static void owrite_start(struct vmcache *c, struct vmc_bio *pb, u64 first,
			 u32 count)
{
	u32 i;

	for (i = 0; i < count; i++)
		atomic_inc(owrite_slot(c, first + i));
	pb->ob_first = first;
	pb->ob_count = count;
	pb->flags |= VMC_PB_OWRITE;
}

static void owrite_end(struct vmcache *c, struct vmc_bio *pb)
{
	u64 i;

	for (i = 0; i < pb->ob_count; i++)
		atomic_dec(owrite_slot(c, pb->ob_first + i));
	pb->flags &= ~VMC_PB_OWRITE;
}

/* any context: the degrade decision is made under the lock */
void vmc_note_cache_error(struct vmcache *c)
{
	unsigned long flags;
	bool degrade;

	vmc_stat_inc(c, VMC_S_CACHE_ERRORS);
	spin_lock_irqsave(&c->lock, flags);
	degrade = ++c->cache_err_burst >= VMC_DEGRADE_AFTER && !c->degraded;
	if (degrade)
		c->degraded = true;
	spin_unlock_irqrestore(&c->lock, flags);
	if (degrade) {
		DMERR("%s: cache device keeps failing: degraded, new writes go around the cache",
		      c->name);
		vmc_raise_event(c);
		vmc_wb_kick(c);
	}
}

static void remap(struct vmcache *c, struct bio *bio, bool to_cache, u32 cb,
		  sector_t offset)
{
	if (to_cache) {
		bio_set_dev(bio, c->cache_dev->bdev);
		bio->bi_iter.bi_sector = vmc_cblock_sector(c, cb) + offset;
	} else {
		sector_t s = dm_target_offset(c->ti, bio->bi_iter.bi_sector);

		bio_set_dev(bio, c->origin_dev->bdev);
		bio->bi_iter.bi_sector = s;
	}
}

static void clone_endio(struct bio *clone)
{
	struct vmc_own *own = own_of(clone);
	struct bio *parent = own->parent;
	struct vmc_bio *pb = dm_per_bio_data(parent, sizeof(*pb));

	pb->clone_status = clone->bi_status;
	bio_put(clone);
	bio_endio(parent);
}

/*
 * writethrough: a copy of the write (@size bytes from @skip) goes to the
 * cache as well, at @offset sectors into cache block @cb
 */
static void submit_cache_clone(struct vmcache *c, struct bio *bio, u32 cb,
			       sector_t offset, u32 skip, u32 size)
{
	struct vmc_bio *pb = dm_per_bio_data(bio, sizeof(*pb));
	struct bio *clone;

	clone = bio_alloc_clone(c->cache_dev->bdev, bio, GFP_NOIO, &c->bs);
	/* dm polls only the bios it maps, never this one */
	clone->bi_opf &= ~REQ_POLLED;
	bio_advance(clone, skip);
	clone->bi_iter.bi_size = size;
	clone->bi_iter.bi_sector = vmc_cblock_sector(c, cb) + offset;
	clone->bi_end_io = clone_endio;
	own_of(clone)->parent = bio;
	own_of(clone)->c = c;
	pb->flags |= VMC_PB_CLONE;
	bio_inc_remaining(bio);
	submit_bio_noacct(clone);
}

/* ------------------------------------------------------------------ */
/* flushes */

void vmc_defer_flush(struct vmcache *c, struct bio *bio)
{
	unsigned long flags;

	spin_lock_irqsave(&c->defer_lock, flags);
	bio_list_add(&c->flush_bios, bio);
	spin_unlock_irqrestore(&c->defer_lock, flags);
	queue_work(c->wq, &c->commit_work);
}

/*
 * A flush completes once the origin is flushed (writethrough data) and the
 * cache is committed (cached data plus the mappings that describe it).
 * Flushes arriving during a commit wait for the next one: the snapshot of
 * the running commit may predate their writes.
 */
static void submit_through_clone(struct vmcache *c, struct bio *bio);

/*
 * A write to both devices over a block the disk may map: the durable
 * superblock must say FLUX until both are flushed (see vmc_map()).
 * Returns true when the write must wait for the commit that sets it.
 * Called with c->lock held.
 */
static bool flux_write(struct vmcache *c, struct vmc_bio *pb)
{
	c->flux_recent = VMC_FLUX_TICKS;
	c->flux_inflight++;
	pb->flags |= VMC_PB_FLUX;
	return !c->flux_ondisk;
}

/* a mapped write sent on by release_held() after the next commit */
static void hold_for_commit(struct vmcache *c, struct bio *bio)
{
	unsigned long flags;

	spin_lock_irqsave(&c->lock, flags);
	bio_list_add(&c->commit_wait, bio);
	spin_unlock_irqrestore(&c->lock, flags);
	queue_work(c->wq, &c->commit_work);
}

/* writes that waited for a commit: send them on, or fail them */
static void release_held(struct vmcache *c, struct bio_list *held, int r)
{
	struct bio *bio;

	while ((bio = bio_list_pop(held))) {
		struct vmc_bio *pb;

		/* a checksummed copy (data_crc): ours, not dm's */
		if (vmc_crc_is_bounce(bio)) {
			if (r) {
				bio->bi_status = BLK_STS_IOERR;
				bio_endio(bio);
			} else {
				submit_bio_noacct(bio);
			}
			continue;
		}
		pb = dm_per_bio_data(bio, sizeof(*pb));
		if (r) {
			bio->bi_status = BLK_STS_IOERR;
			bio_endio(bio);
			continue;
		}
		bio->bi_opf &= ~REQ_POLLED;
		if (pb->flags & VMC_PB_LATE_CLONE) {
			sector_t s = bio->bi_iter.bi_sector;

			pb->flags &= ~VMC_PB_LATE_CLONE;
			if (pb->flags & VMC_PB_THROUGH_RUN)
				submit_through_clone(c, bio);
			else
				submit_cache_clone(c, bio, pb->cblock,
						   s & (vmc_block_sectors(c) - 1),
						   0, bio->bi_iter.bi_size);
		}
		dm_submit_bio_remap(bio, NULL);
	}
}

int vmc_commit(struct vmcache *c, bool clean)
{
	struct bio_list held;
	int r;

	bio_list_init(&held);
	r = vmc_md_commit(c, clean, &held);
	release_held(c, &held, r);
	return r;
}

/*
 * Both works run this; concurrent runs (one on each queue) take turns at
 * c->commit_lock inside vmc_md_flush() and vmc_md_commit().
 */
static void commit_work(struct vmcache *c)
{
	struct bio_list bios, held;
	struct bio *bio;
	int r;

	bio_list_init(&held);
	for (;;) {
		spin_lock_irq(&c->defer_lock);
		bios = c->flush_bios;
		bio_list_init(&c->flush_bios);
		spin_unlock_irq(&c->defer_lock);
		if (bio_list_empty(&bios))
			break;
		r = vmc_md_flush(c, &held);
		release_held(c, &held, r);
		while ((bio = bio_list_pop(&bios))) {
			bio->bi_status = errno_to_blk_status(r);
			bio_endio(bio);
		}
	}
	if (vmc_md_changed(c, atomic_xchg(&c->commit_lazy, 0)))
		vmc_commit(c, false);
}

void vmc_commit_work(struct work_struct *ws)
{
	commit_work(container_of(ws, struct vmcache, commit_work));
}

void vmc_bg_commit_work(struct work_struct *ws)
{
	commit_work(container_of(ws, struct vmcache, bg_commit_work));
}

/* a commit no bio waits for (freed blocks to reuse, lazy changes) */
void vmc_commit_soon(struct vmcache *c)
{
	queue_work(c->bg_wq, &c->bg_commit_work);
}

/* commit soon, lazy changes included (see vmcache.h, md_needed) */
void vmc_commit_lazy(struct vmcache *c)
{
	atomic_set(&c->commit_lazy, 1);
	vmc_commit_soon(c);
}

/* ------------------------------------------------------------------ */
/* promotion: copy what a read miss brought in into the cache */

/*
 * A bio of ours to the cache device over @bytes of pages of its own.
 * Without waiting: end_io context, or c->lock held.
 */
static struct bio *alloc_page_bio(struct vmcache *c, unsigned int bytes,
				  blk_opf_t opf)
{
	unsigned int nr = DIV_ROUND_UP(bytes, PAGE_SIZE), i;
	struct bio *bio;

	bio = bio_alloc_bioset(c->cache_dev->bdev, nr, opf, GFP_NOWAIT, &c->bs);
	if (!bio)
		return NULL;
	for (i = 0; i < nr; i++) {
		unsigned int len = min_t(unsigned int, bytes - i * PAGE_SIZE,
					 PAGE_SIZE);
		struct page *page = alloc_page(GFP_NOWAIT | __GFP_NOWARN);

		if (!page || bio_add_page(bio, page, len, 0) != len) {
			if (page)
				__free_page(page);
			vmc_free_page_bio(bio);
			return NULL;
		}
	}
	return bio;
}

static void fill_endio(struct bio *fill)
{
	struct vmc_own *own = own_of(fill);
	struct vmcache *c = own->c;
	struct vmc_block *b = &c->blocks[own->cblock];
	unsigned long flags;

	spin_lock_irqsave(&c->lock, flags);
	if (!fill->bi_status) {
		u8 good = own->mask & ~b->cancel;

		vmc_policy_set_valid(c, own->cblock, b->valid | good);
		vmc_stat_inc(c, VMC_S_PROMOTIONS);
	}
	b->filling &= ~own->mask;
	b->cancel &= ~own->mask;
	b->holders--;
	spin_unlock_irqrestore(&c->lock, flags);
	if (fill->bi_status)
		vmc_note_cache_error(c);

	vmc_free_page_bio(fill);
	if (atomic_dec_and_test(&c->internal_io))
		wake_up_var(&c->internal_io);
}

void vmc_fill_work(struct work_struct *ws)
{
	struct vmcache *c = container_of(ws, struct vmcache, fill_work);
	struct bio_list fills, remaps;
	struct bio *bio;

	spin_lock_irq(&c->defer_lock);
	fills = c->fill_bios;
	remaps = c->remap_bios;
	bio_list_init(&c->fill_bios);
	bio_list_init(&c->remap_bios);
	spin_unlock_irq(&c->defer_lock);
	while ((bio = bio_list_pop(&fills)))
		submit_bio_noacct(bio);
	while ((bio = bio_list_pop(&remaps)))
		dm_submit_bio_remap(bio, NULL);
}

/* submit a bio of dm's that we remapped, later, from process context */
/*
 * A bio that completed once and goes on (a retry, overlays): the block
 * layer may have split it, and each split took and gave back a count of
 * __bi_remaining, leaving it at 0 where a new bio has 1.  Restore the
 * count of an unchained bio (as dm_bio_restore() does), or the next split
 * or bio_inc_remaining() would complete it one completion early.
 */
static void reset_remaining(struct bio *bio)
{
	atomic_set(&bio->__bi_remaining, 1);
}

static void defer_remapped(struct vmcache *c, struct bio *bio)
{
	unsigned long flags;

	reset_remaining(bio);
	bio->bi_opf &= ~REQ_POLLED;
	spin_lock_irqsave(&c->defer_lock, flags);
	bio_list_add(&c->remap_bios, bio);
	spin_unlock_irqrestore(&c->defer_lock, flags);
	queue_work(c->wq, &c->fill_work);
}

/*
 * Copy the data @src of @bio read from the origin into cache block
 * @cblock (sub-blocks @mask).  end_io context: no sleeping, so allocate
 * without waiting.
 */
static bool start_fill(struct vmcache *c, struct bio *bio,
		       struct bvec_iter src, u32 cblock, u8 mask)
{
	struct bvec_iter dst_iter;
	struct bio *fill;
	unsigned long flags;

	fill = alloc_page_bio(c, src.bi_size, REQ_OP_WRITE);
	if (!fill)
		return false;
	dst_iter = fill->bi_iter;
	bio_copy_data_iter(fill, &dst_iter, bio, &src);
	fill->bi_iter.bi_sector = vmc_cblock_sector(c, cblock) +
		((sector_t)__ffs(mask) << c->sub_shift);
	fill->bi_end_io = fill_endio;
	own_of(fill)->c = c;
	own_of(fill)->cblock = cblock;
	own_of(fill)->mask = mask;
	atomic_inc(&c->internal_io);

	spin_lock_irqsave(&c->defer_lock, flags);
	bio_list_add(&c->fill_bios, fill);
	spin_unlock_irqrestore(&c->defer_lock, flags);
	queue_work(c->wq, &c->fill_work);
	return true;
}

/* ------------------------------------------------------------------ */
/* discard: drop idle cached blocks wholly inside the range */

static void discard_block(struct vmcache *c, u32 idx, bool *need_commit)
{
	struct vmc_block *b = &c->blocks[idx];

	if (b->holders || b->filling || (b->flags & VMC_B_WB))
		return;
	vmc_policy_unmap(c, idx);
	*need_commit = true;
}

static void discard_range(struct vmcache *c, u64 first, u64 last,
			  bool *need_commit)
{
	unsigned long flags;
	u64 ob;
	u32 i;

	spin_lock_irqsave(&c->lock, flags);
	for (ob = first; ob < last; ob++) {
		i = vmc_lookup(c, ob);
		if (i != VMC_NIL)
			discard_block(c, i, need_commit);
	}
	spin_unlock_irqrestore(&c->lock, flags);
}

/*
 * A discard wider than one chunk is handled here, in process context: the
 * lock is dropped between chunks, so a discard of a whole 1 TiB cache never
 * holds it (IRQs off) for long.
 */
void vmc_discard_work(struct work_struct *ws)
{
	struct vmcache *c = container_of(ws, struct vmcache, discard_work);
	bool need_commit = false;
	struct bio_list bios;
	struct bio *bio;

	spin_lock_irq(&c->defer_lock);
	bios = c->discard_bios;
	bio_list_init(&c->discard_bios);
	spin_unlock_irq(&c->defer_lock);
	while ((bio = bio_list_pop(&bios))) {
		struct vmc_bio *pb = dm_per_bio_data(bio, sizeof(*pb));
		u64 first = pb->ob_first, last = first + pb->ob_count, ob;
		u32 i, n;

		if (last - first <= c->nr_blocks) {
			for (ob = first; ob < last; ob += n) {
				n = min_t(u64, last - ob, VMC_SCAN_STEP);
				discard_range(c, ob, ob + n, &need_commit);
				cond_resched();
			}
		} else {
			for (i = 0; i < c->nr_blocks; i += n) {
				u32 j;

				n = min(c->nr_blocks - i, VMC_SCAN_STEP);
				spin_lock_irq(&c->lock);
				for (j = i; j < i + n; j++) {
					struct vmc_block *b = &c->blocks[j];

					if ((b->flags & VMC_B_MAPPED) &&
					    b->oblock >= first &&
					    b->oblock < last)
						discard_block(c, j, &need_commit);
				}
				spin_unlock_irq(&c->lock);
				cond_resched();
			}
		}
		pb->ob_count = 0;
		dm_submit_bio_remap(bio, NULL);
	}
	if (need_commit)
		queue_work(c->wq, &c->commit_work);
}

/* returns true when the bio was taken to be scanned in process context */
static bool map_discard(struct vmcache *c, struct bio *bio)
{
	sector_t start = dm_target_offset(c->ti, bio->bi_iter.bi_sector);
	sector_t end = start + bio_sectors(bio);
	u64 first = DIV_ROUND_UP_SECTOR_T(start, vmc_block_sectors(c));
	u64 last = end >> c->block_shift;	/* exclusive */
	bool need_commit = false;
	unsigned long flags;

	remap(c, bio, false, 0, 0);
	if (last <= first)
		return false;
	if (last - first > VMC_SCAN_STEP) {
		struct vmc_bio *pb = dm_per_bio_data(bio, sizeof(*pb));

		pb->ob_first = first;
		pb->ob_count = last - first;
		bio->bi_opf &= ~REQ_POLLED;
		spin_lock_irqsave(&c->defer_lock, flags);
		bio_list_add(&c->discard_bios, bio);
		spin_unlock_irqrestore(&c->defer_lock, flags);
		queue_work(c->wq, &c->discard_work);
		return true;
	}
	discard_range(c, first, last, &need_commit);
	if (need_commit)
		queue_work(c->wq, &c->commit_work);
	return false;
}

/* ------------------------------------------------------------------ */
/* map */

struct vmc_req {
	u64 oblock;
	sector_t offset;	/* inside the block */
	unsigned int first, last;	/* sub-blocks touched */
	u8 touched, full;	/* masks: touched, wholly covered */
};

static void describe(struct vmcache *c, struct bio *bio, struct vmc_req *rq)
{
	sector_t s = dm_target_offset(c->ti, bio->bi_iter.bi_sector);
	sector_t len = bio_sectors(bio);

	rq->oblock = s >> c->block_shift;
	rq->offset = s & (vmc_block_sectors(c) - 1);
	rq->first = rq->offset >> c->sub_shift;
	rq->last = (rq->offset + len - 1) >> c->sub_shift;
	rq->touched = range_mask(rq->first, rq->last);
	rq->full = covered_mask(c, s, s + len, rq->oblock);
}

/* cut the bio where the sub-block state changes; returns the state */
static enum vmc_state cut_uniform(struct vmcache *c, struct bio *bio,
				  struct vmc_block *b, struct vmc_req *rq)
{
	enum vmc_state st = sub_state(b, rq->first);
	unsigned int k = rq->first;

	while (k < rq->last && sub_state(b, k + 1) == st)
		k++;
	if (k < rq->last) {
		sector_t end = (sector_t)(k + 1) << c->sub_shift;

		dm_accept_partial_bio(bio, end - rq->offset);
		describe(c, bio, rq);
	}
	return st;
}

static bool may_allocate(struct vmcache *c)
{
	return c->md_state == VMC_MD_OK && !c->degraded &&
	       c->tun[VMC_T_MODE] != VMC_MODE_PASSTHROUGH;
}

/* decide the route of a read; called with c->lock held */
static enum vmc_route route_read(struct vmcache *c, struct vmc_req *rq,
				 u32 *idx, enum vmc_state st, bool seq,
				 bool *need_commit)
{
	bool aligned = rq->touched == rq->full;
	bool pt = c->tun[VMC_T_MODE] == VMC_MODE_PASSTHROUGH;

	if (*idx != VMC_NIL) {
		if (st == ST_DIRTY || (st == ST_CLEAN && !pt)) {
			vmc_policy_hit(c, *idx);
			vmc_stat_inc(c, VMC_S_READ_HITS);
			return R_READ_HIT;
		}
		vmc_stat_inc(c, VMC_S_READ_MISSES);
		if (st == ST_INVALID && aligned && !seq && may_allocate(c) &&
		    !c->blocks[*idx].filling &&
		    !atomic_read(owrite_slot(c, rq->oblock)))
			return R_READ_FILL;
		if (seq)
			vmc_stat_inc(c, VMC_S_BYPASSED);
		return R_ORIGIN;
	}
	vmc_stat_inc(c, VMC_S_READ_MISSES);
	if (seq) {
		vmc_stat_inc(c, VMC_S_BYPASSED);
		return R_ORIGIN;
	}
	if (!aligned || !may_allocate(c) ||
	    atomic_read(owrite_slot(c, rq->oblock)) ||
	    !vmc_policy_should_promote(c, rq->oblock))
		return R_ORIGIN;
	*idx = vmc_policy_alloc(c, rq->oblock, need_commit);
	if (*idx == VMC_NIL) {
		vmc_stat_inc(c, VMC_S_BYPASSED);
		return R_ORIGIN;
	}
	return R_READ_FILL;
}

/*
 * Decide the route of a write; called with c->lock held.  *drop tells that
 * the cached copy of what the write touches was dropped: the drop must be
 * durable before the origin write goes out (a crash must not bring the old
 * copy back in front of the origin's new data).
 */
static enum vmc_route route_write(struct vmcache *c, struct vmc_req *rq,
				  u32 *idx, enum vmc_state st, bool seq,
				  bool fua_through, bool *need_commit,
				  bool *drop)
{
	unsigned int mode = c->tun[VMC_T_MODE];
	bool aligned = rq->touched == rq->full;
	bool md_ok = c->md_state == VMC_MD_OK;
	/* during a drain, writes go through so that the drain converges */
	bool wb = mode == VMC_MODE_WRITEBACK && may_allocate(c) &&
		  !c->flush_active;
	struct vmc_block *b;

	if (*idx == VMC_NIL) {
		vmc_stat_inc(c, VMC_S_WRITE_MISSES);
		if (seq || !aligned || !may_allocate(c)) {
			if (seq)
				vmc_stat_inc(c, VMC_S_BYPASSED);
			return R_ORIGIN;
		}
		*idx = vmc_policy_alloc(c, rq->oblock, need_commit);
		if (*idx == VMC_NIL) {
			vmc_stat_inc(c, VMC_S_BYPASSED);
			return R_ORIGIN;
		}
		st = ST_INVALID;
	} else {
		vmc_stat_inc(c, st >= ST_CLEAN ? VMC_S_WRITE_HITS :
						 VMC_S_WRITE_MISSES);
		/* a second access, as a read hit is (2q) */
		if (st >= ST_CLEAN && mode != VMC_MODE_PASSTHROUGH)
			vmc_policy_hit(c, *idx);
	}
	b = &c->blocks[*idx];

	switch (st) {
	case ST_DIRTY:
		/*
		 * The cache copy is the newest and only it is written: an
		 * origin write could be overtaken by a writeback copy of the
		 * older version in flight.  FUA holds: the disk says dirty.
		 */
		return R_CACHE_WRITE;
	case ST_CLEAN:
		if (wb)
			return R_CACHE_WRITE;
		/* failed metadata cannot record a drop: keep the copy in step */
		if (!md_ok && !b->writers)
			return R_BOTH_WRITE;
		if (mode == VMC_MODE_PASSTHROUGH || b->writers ||
		    !may_allocate(c)) {
			/* drop the copy rather than race another write */
			vmc_policy_set_valid(c, *idx, b->valid & ~rq->touched);
			/* failed metadata cannot record it: memory only */
			*drop = md_ok;
			return R_ORIGIN;
		}
		return R_BOTH_WRITE;
	case ST_FILLING:
		b->cancel |= rq->touched;
		return R_ORIGIN;
	case ST_INVALID:
	default:
		if (!aligned || seq || !may_allocate(c))
			return R_ORIGIN;
		/*
		 * FUA: to the cache, and a commit before it completes (see
		 * VMC_PB_FUA_COMMIT); through both devices when polled (the
		 * poller waits on the device) or checksummed (data_crc).
		 */
		return wb && !fua_through ? R_CACHE_WRITE : R_BOTH_WRITE;
	}
}

/*
 * How many blocks from @first (up to @last) a bypassed stream may take from
 * the origin in one piece: blocks not cached, and for reads also blocks
 * with no dirty data (the origin holds the same bytes).
 */
static u64 origin_run(struct vmcache *c, u64 first, u64 last, bool is_write)
{
	u64 ob;

	for (ob = first; ob <= last; ob++) {
		u32 idx = vmc_lookup(c, ob);

		if (idx == VMC_NIL)
			vmc_policy_stream_seen(c, ob);
		else if (is_write || c->blocks[idx].dirty)
			break;
	}
	return ob - first;
}

/* ------------------------------------------------------------------ */
/*
 * Overlay reads.  A bypassed read over blocks with dirty data reads the
 * whole range from the origin in one piece and, at the same time, the
 * dirty runs from the cache into pages of their own; once all are done
 * the dirty runs are copied over the stale parts of the origin's data.
 * One origin bio however scattered the dirty blocks are, and the cache
 * reads add no wait after the origin's.  Each overlay read holds its
 * block from map until the bio completes, so the block is neither evicted
 * nor reused meanwhile; writeback may clean it, the cache copy is still
 * the newest.
 *
 * pb->overlay_pending counts the origin read plus each overlay read; the
 * one that brings it to zero finishes the bio.  The origin read's end_io
 * sets VMC_PB_OVERLAID first: when an overlay read finishes last, it ends
 * the bio again and end_io, seeing the flag, finishes it.  Both may run
 * in IRQ context: the copy and the frees never sleep.
 */
#define VMC_OVERLAY_MAX	64	/* cache reads per bio; the rest is cut */

static void overlay_endio(struct bio *ov)
{
	struct bio *parent = own_of(ov)->parent;
	struct vmc_bio *pb = dm_per_bio_data(parent, sizeof(*pb));

	if (ov->bi_status) {
		pb->clone_status = ov->bi_status;
		vmc_note_cache_error(own_of(ov)->c);
	}
	if (atomic_dec_and_test(&pb->overlay_pending))
		bio_endio(parent);
}

/* the bio is done: lay the dirty runs over it (@ok), free the reads */
static void finish_overlays(struct vmcache *c, struct bio *bio,
			    struct vmc_bio *pb, bool ok)
{
	struct bio *ov, *next;
	unsigned long flags;

	for (ov = pb->overlay; ok && ov; ov = own_of(ov)->next) {
		struct bvec_iter dst = pb->iter, src = { };
		struct bio_vec *bv;
		struct bvec_iter_all all;

		bio_for_each_segment_all(bv, ov, all)
			src.bi_size += bv->bv_len;
		bio_advance_iter(bio, &dst, own_of(ov)->offset);
		bio_copy_data_iter(bio, &dst, ov, &src);
	}
	/* one lock hold for every hold the reads took */
	spin_lock_irqsave(&c->lock, flags);
	for (ov = pb->overlay; ov; ov = own_of(ov)->next)
		c->blocks[own_of(ov)->cblock].holders--;
	spin_unlock_irqrestore(&c->lock, flags);
	for (ov = pb->overlay; ov; ov = next) {
		next = own_of(ov)->next;
		vmc_free_page_bio(ov);
	}
	pb->overlay = NULL;
}

/* map, after c->lock is dropped: the overlay reads go with the origin's */
static void send_overlays(struct vmc_bio *pb)
{
	struct bio *ov = pb->overlay, *next;

	for (; ov; ov = next) {
		next = own_of(ov)->next;
		submit_bio_noacct(ov);
	}
}

/*
 * Plan the overlays of a bypassed read from block @first (sector @s) to
 * @last; called with c->lock held.  Returns how many blocks the bio covers
 * (it is cut there), 0 when the first block cannot be planned.
 */
static u64 plan_overlays(struct vmcache *c, struct bio *bio, sector_t s,
			 u64 first, u64 last, u32 *hits)
{
	struct vmc_bio *pb = dm_per_bio_data(bio, sizeof(*pb));
	sector_t end = s + bio_sectors(bio);
	struct bio *head = NULL, **tail = &head, *blk, **blk_tail;
	u32 n = 0;
	u64 ob;

	*hits = 0;
	for (ob = first; ob <= last; ob++) {
		sector_t bstart = ob << c->block_shift;
		u32 idx = vmc_lookup(c, ob);
		unsigned long dirty;
		unsigned int k, runs = 0;
		struct vmc_block *b;
		struct bio *ov;

		if (idx == VMC_NIL) {
			vmc_policy_stream_seen(c, ob);
			continue;
		}
		b = &c->blocks[idx];
		dirty = b->dirty & span_mask(c, s, end, ob);
		if (!dirty)
			continue;
		if (n + hweight8(dirty) > VMC_OVERLAY_MAX)
			break;
		blk = NULL;
		blk_tail = &blk;
		for (k = find_first_bit(&dirty, VMC_SUBBLOCKS);
		     k < VMC_SUBBLOCKS;
		     k = find_next_bit(&dirty, VMC_SUBBLOCKS, k)) {
			unsigned int e = find_next_zero_bit(&dirty,
							    VMC_SUBBLOCKS, k);
			sector_t from = bstart + ((sector_t)k << c->sub_shift);
			sector_t to = bstart + ((sector_t)e << c->sub_shift);

			from = max(from, s);
			to = min(to, end);
			ov = alloc_page_bio(c, (to - from) << SECTOR_SHIFT,
					    REQ_OP_READ);
			if (!ov)
				break;
			ov->bi_iter.bi_sector = vmc_cblock_sector(c, idx) +
						(from - bstart);
			ov->bi_end_io = overlay_endio;
			own_of(ov)->c = c;
			own_of(ov)->parent = bio;
			own_of(ov)->cblock = idx;
			own_of(ov)->offset = (from - s) << SECTOR_SHIFT;
			own_of(ov)->next = NULL;
			*blk_tail = ov;
			blk_tail = &own_of(ov)->next;
			runs++;
			k = e;
		}
		if (k < VMC_SUBBLOCKS) {
			/* no memory for all of this block: cut before it */
			for (; blk; blk = ov) {
				ov = own_of(blk)->next;
				vmc_free_page_bio(blk);
			}
			break;
		}
		/* each read holds the block until the bio completes */
		b->holders += runs;
		n += runs;
		*tail = blk;
		tail = blk_tail;
		(*hits)++;
	}
	pb->overlay = head;
	if (head) {
		pb->flags |= VMC_PB_OVERLAY;
		/* the origin read and each overlay read */
		atomic_set(&pb->overlay_pending, n + 1);
	}
	return ob - first;
}

/* ------------------------------------------------------------------ */
/*
 * Fill runs.  A read spanning several uncached blocks that are all to be
 * promoted reads them from the origin in one piece; on completion each
 * block's part is copied into its cache block (one fill each).  The
 * blocks are held and filling from map on, so they stay mapped to the
 * same origin blocks and are found again by lookup.
 */
#define VMC_FILL_RUN_MAX	64	/* blocks per origin read */

static u64 plan_fill_run(struct vmcache *c, struct bio *bio, sector_t s,
			 u64 first, u64 last, bool *need_commit)
{
	struct vmc_bio *pb = dm_per_bio_data(bio, sizeof(*pb));
	sector_t end = s + bio_sectors(bio);
	u64 ob = first;
	u32 idx;

	/* whole blocks only; promote_after > 1 decides block by block */
	if ((s & (vmc_block_sectors(c) - 1)) || !may_allocate(c) ||
	    c->tun[VMC_T_PROMOTE_AFTER] > 1)
		return 0;
	for (; ob <= last && ob - first < VMC_FILL_RUN_MAX; ob++) {
		struct vmc_block *b;

		if (((ob + 1) << c->block_shift) > end ||
		    vmc_lookup(c, ob) != VMC_NIL ||
		    atomic_read(owrite_slot(c, ob)))
			break;
		idx = vmc_policy_alloc(c, ob, need_commit);
		if (idx == VMC_NIL)
			break;
		b = &c->blocks[idx];
		b->holders++;
		b->filling = VMC_FULL_MASK;
	}
	if (ob == first)
		return 0;
	pb->ob_first = first;
	pb->ob_count = ob - first;
	pb->flags |= VMC_PB_FILL_RUN;
	return ob - first;
}

/* the origin read of a fill run completed: copy each block into place */
static void fill_run_end_io(struct vmcache *c, struct bio *bio,
			    struct vmc_bio *pb, blk_status_t error)
{
	unsigned int bytes = vmc_block_sectors(c) << SECTOR_SHIFT;
	unsigned long flags;
	u32 i, idx;

	if (error)
		vmc_stat_inc(c, VMC_S_ORIGIN_ERRORS);
	for (i = 0; i < pb->ob_count; i++) {
		struct bvec_iter src = pb->iter;
		struct vmc_block *b;

		spin_lock_irqsave(&c->lock, flags);
		idx = vmc_lookup(c, pb->ob_first + i);
		spin_unlock_irqrestore(&c->lock, flags);
		if (WARN_ON_ONCE(idx == VMC_NIL))
			continue;
		if (!error) {
			bvec_iter_advance(bio->bi_io_vec, &src, i * bytes);
			src.bi_size = bytes;
			/* the hold and the filling bits pass to the fill */
			if (start_fill(c, bio, src, idx, VMC_FULL_MASK))
				continue;
		}
		spin_lock_irqsave(&c->lock, flags);
		b = &c->blocks[idx];
		b->filling = 0;
		b->cancel = 0;
		b->holders--;
		spin_unlock_irqrestore(&c->lock, flags);
	}
	pb->flags = 0;
}

/* ------------------------------------------------------------------ */
/*
 * Write runs.  In writeback mode a write spanning uncached blocks is one
 * cache write when the blocks allocated for it are consecutive on the
 * cache: each is held, a writer and filling (a write meanwhile cancels
 * what it touches), and becomes valid and dirty when the write completes,
 * as a single block written to the cache would.  A FUA run (a filesystem
 * log write) loses its FUA and completes after the next commit, as a
 * single block does (VMC_PB_FUA_COMMIT); polled or checksummed, it is no
 * run (those write FUA through to both devices).
 */
#define VMC_WRITE_RUN_MAX	256	/* blocks per cache write */

static u64 plan_write_run(struct vmcache *c, struct bio *bio, sector_t s,
			  u64 first, u64 last, bool *need_commit, u32 *cblock)
{
	sector_t end = s + bio_sectors(bio);
	u32 idx, prev = VMC_NIL;
	u64 ob = first;

	if ((s & (vmc_block_sectors(c) - 1)) || !may_allocate(c) ||
	    c->tun[VMC_T_MODE] != VMC_MODE_WRITEBACK || c->flush_active ||
	    (bio->bi_opf & REQ_POLLED) ||
	    ((bio->bi_opf & REQ_FUA) && c->data_crc))
		return 0;
	for (; ob <= last && ob - first < VMC_WRITE_RUN_MAX; ob++) {
		struct vmc_block *b;

		if (((ob + 1) << c->block_shift) > end ||
		    vmc_lookup(c, ob) != VMC_NIL)
			break;
		idx = vmc_policy_alloc(c, ob, need_commit);
		if (idx == VMC_NIL)
			break;
		/* not next to the run: mapped, empty, the next piece's */
		if (prev != VMC_NIL && idx != prev + 1)
			break;
		b = &c->blocks[idx];
		b->holders++;
		b->writers++;
		b->filling = VMC_FULL_MASK;
		if (prev == VMC_NIL)
			*cblock = idx;
		prev = idx;
	}
	return ob - first;
}

/* a run's cache write is over: c->lock, taken by the caller, dropped */
static void end_cache_run(struct vmcache *c, struct vmc_bio *pb,
			  bool failed, unsigned long flags)
	__releases(&c->lock)
{
	if (!failed)
		c->cache_err_burst = 0;
	spin_unlock_irqrestore(&c->lock, flags);
	pb->flags = 0;
	if (failed)
		vmc_note_cache_error(c);
}

/* a write run (new blocks) or a writeback hit run (cached ones) completed */
static void write_run_end_io(struct vmcache *c, struct vmc_bio *pb,
			     blk_status_t error)
{
	sector_t s = dm_target_offset(c->ti, pb->iter.bi_sector);
	sector_t end = s + (pb->iter.bi_size >> SECTOR_SHIFT);
	bool hit = pb->flags & VMC_PB_WRITE_HIT_RUN;
	unsigned long flags;
	u32 i;

	spin_lock_irqsave(&c->lock, flags);
	for (i = 0; i < pb->ob_count; i++) {
		u32 idx = pb->cblock + i;
		struct vmc_block *b = &c->blocks[idx];
		u8 good = error ? 0 : VMC_FULL_MASK & ~b->cancel;

		b->writers--;
		if (hit) {
			/* dirty since map: a failed write leaves it so */
			good = span_mask(c, s, end, pb->ob_first + i) &
			       b->valid;
			if (!error && good)
				vmc_policy_set_dirty(c, idx, good);
			b->holders--;
			continue;
		}
		b->filling = 0;
		b->cancel = 0;
		if (good) {
			vmc_policy_set_valid(c, idx, b->valid | good);
			vmc_policy_set_dirty(c, idx, good);
		}
		b->holders--;
	}
	end_cache_run(c, pb, error != BLK_STS_OK, flags);
}

/*
 * Writethrough runs.  A write over blocks, each either not cached
 * (allocated now when wholly written) or cached with no dirty data and no
 * other I/O on it, in consecutive cache blocks, goes to the origin in one
 * piece and to the cache in one clone: one origin write per run, not one
 * per block (on a disk limited in IOPS, a host-backed one, the difference
 * is the write's whole cost).  A partly written first or last block that
 * is not cached goes to the origin alone: the clone leaves it out
 * (pb->mask: VMC_THROUGH_HEAD, VMC_THROUGH_TAIL; a filesystem log writes
 * in 512-byte units, so most of its writes start or end inside a block).
 * Wholly written sub-blocks not yet valid are filling (a concurrent write
 * cancels them, reads go to the origin); valid ones a concurrent write
 * drops, as in route_write(); partly written invalid ones stay invalid.
 * A block the disk may already map is written in both places: *@flux, as
 * in vmc_map().  Called with c->lock held; *@hits counts the blocks whose
 * touched data was cached; returns the run's blocks, *@cached those
 * written to the cache as well.
 */
#define VMC_THROUGH_HEAD	BIT(0)	/* first block: origin only */
#define VMC_THROUGH_TAIL	BIT(1)	/* last block: origin only */

static u64 plan_through_run(struct vmcache *c, struct bio *bio, sector_t s,
			    u64 first, u64 last, bool *need_commit,
			    u32 *cblock, u32 *cached, u32 *hits, bool *flux)
{
	struct vmc_bio *pb = dm_per_bio_data(bio, sizeof(*pb));
	sector_t end = s + bio_sectors(bio);
	u32 idx, prev = VMC_NIL;
	u64 ob = first;

	*cached = 0;
	pb->mask = 0;
	if (!may_allocate(c) || c->tun[VMC_T_MODE] != VMC_MODE_WRITETHROUGH ||
	    c->data_crc || (bio->bi_opf & REQ_POLLED))
		return 0;
	for (; ob <= last && ob - first < VMC_WRITE_RUN_MAX; ob++) {
		u8 covered = covered_mask(c, s, end, ob);
		struct vmc_block *b;
		bool fresh;

		idx = vmc_lookup(c, ob);
		fresh = idx == VMC_NIL;
		if (fresh && covered != VMC_FULL_MASK) {
			/* the head: the clone starts at the next block */
			if (ob == first) {
				pb->mask |= VMC_THROUGH_HEAD;
				continue;
			}
			/* the tail: the clone ends before it */
			if (ob == last) {
				pb->mask |= VMC_THROUGH_TAIL;
				continue;
			}
			break;
		}
		if (fresh)
			idx = vmc_policy_alloc(c, ob, need_commit);
		/* not next to the run: the next piece's (mapped, empty) */
		if (idx == VMC_NIL || (prev != VMC_NIL && idx != prev + 1))
			break;
		b = &c->blocks[idx];
		if (!fresh && (b->dirty || b->filling || b->writers ||
			       (b->flags & VMC_B_WB)))
			break;
		if (!fresh && !(span_mask(c, s, end, ob) & ~b->valid)) {
			vmc_policy_hit(c, idx);
			(*hits)++;
		}
		if (!fresh)
			*flux = true;
		b->holders++;
		b->writers++;
		b->filling = covered & ~b->valid;
		if (prev == VMC_NIL)
			*cblock = idx;
		prev = idx;
		(*cached)++;
	}
	/* a head alone: the block's own path does the same */
	if (!*cached && ob - first < 2)
		return 0;
	return ob - first;
}

/* the cache clone of a writethrough run: its cached blocks only */
static void submit_through_clone(struct vmcache *c, struct bio *bio)
{
	struct vmc_bio *pb = dm_per_bio_data(bio, sizeof(*pb));
	sector_t bs = vmc_block_sectors(c);
	sector_t off = bio->bi_iter.bi_sector & (bs - 1);
	u32 skip = 0, size = bio->bi_iter.bi_size;

	if (pb->mask & VMC_THROUGH_HEAD) {
		skip = (bs - off) << SECTOR_SHIFT;
		off = 0;
	}
	if (pb->mask & VMC_THROUGH_TAIL)
		size -= ((bio->bi_iter.bi_sector + bio_sectors(bio)) &
			 (bs - 1)) << SECTOR_SHIFT;
	submit_cache_clone(c, bio, pb->cblock, off, skip, size - skip);
}

static u32 through_cached(struct vmc_bio *pb)
{
	return pb->ob_count - !!(pb->mask & VMC_THROUGH_HEAD) -
	       !!(pb->mask & VMC_THROUGH_TAIL);
}

/* both writes done: the filled sub-blocks become valid, clean */
static void through_run_end_io(struct vmcache *c, struct vmc_bio *pb,
			       blk_status_t error)
{
	bool cache_err = pb->clone_status;
	u32 i, n = through_cached(pb);
	unsigned long flags;

	if (error)
		vmc_stat_inc(c, VMC_S_ORIGIN_ERRORS);
	spin_lock_irqsave(&c->lock, flags);
	for (i = 0; i < n; i++) {
		u32 idx = pb->cblock + i;
		struct vmc_block *b = &c->blocks[idx];

		b->writers--;
		/* a failed write leaves the cached copy unknown: drop it */
		if (error || cache_err)
			vmc_policy_set_valid(c, idx, 0);
		else if (b->filling & ~b->cancel)
			vmc_policy_set_valid(c, idx,
					     b->valid | (b->filling & ~b->cancel));
		b->filling = 0;
		b->cancel = 0;
		b->holders--;
	}
	if (pb->flags & VMC_PB_FLUX)
		c->flux_inflight--;
	end_cache_run(c, pb, cache_err, flags);
}

/* ------------------------------------------------------------------ */
/*
 * Hit runs.  A read spanning blocks that are all cached (every sub-block
 * it touches valid, none filling) in consecutive cache blocks is one
 * cache bio.  Each block is held until it completes; a failed read of
 * clean data is retried on the origin, one of dirty data fails.
 */
#define VMC_HIT_RUN_MAX		256	/* blocks per cache read */
#define VMC_STREAM_HIT_RUN	16	/* a stream leaves the origin for this */

static u64 hit_run_length(struct vmcache *c, sector_t s, sector_t end,
			  u64 first, u64 last, bool uniform, u32 *cblock)
{
	u64 ob;
	u32 idx, prev = VMC_NIL;

	for (ob = first; ob <= last && ob - first < VMC_HIT_RUN_MAX; ob++) {
		u8 m = span_mask(c, s, end, ob);
		struct vmc_block *b;

		idx = vmc_lookup(c, ob);
		if (idx == VMC_NIL || (prev != VMC_NIL && idx != prev + 1))
			break;
		b = &c->blocks[idx];
		if ((b->valid & m) != m || (b->filling & m) ||
		    (uniform && (b->dirty & m) && (b->dirty & m) != m))
			break;
		if (prev == VMC_NIL)
			*cblock = idx;
		prev = idx;
	}
	return ob - first;
}

static void hold_hit_run(struct vmcache *c, struct bio *bio, u64 first,
			 u64 n, u32 cblock)
{
	struct vmc_bio *pb = dm_per_bio_data(bio, sizeof(*pb));
	u32 i;

	for (i = 0; i < n; i++) {
		c->blocks[cblock + i].holders++;
		vmc_policy_hit(c, cblock + i);
	}
	pb->ob_first = first;
	pb->ob_count = n;
	pb->cblock = cblock;
	pb->flags |= VMC_PB_HIT_RUN;
	pb->lat_class = VMC_LAT_READ_HIT;
}

/* the cache read of a hit run completed; true: retry it on the origin */
static bool hit_run_end_io(struct vmcache *c, struct bio *bio,
			   struct vmc_bio *pb, blk_status_t error)
{
	sector_t s = dm_target_offset(c->ti, pb->iter.bi_sector);
	sector_t end = s + (pb->iter.bi_size >> SECTOR_SHIFT);
	unsigned long flags;
	bool dirty = false;
	u32 i;

	spin_lock_irqsave(&c->lock, flags);
	for (i = 0; i < pb->ob_count; i++) {
		struct vmc_block *b = &c->blocks[pb->cblock + i];

		b->holders--;
		dirty |= b->dirty & span_mask(c, s, end, pb->ob_first + i);
	}
	if (error && !dirty) {
		/* clean data: drop the copies, the origin has the same */
		for (i = 0; i < pb->ob_count; i++) {
			struct vmc_block *b = &c->blocks[pb->cblock + i];
			u8 m = span_mask(c, s, end, pb->ob_first + i);

			vmc_policy_set_valid(c, pb->cblock + i, b->valid & ~m);
		}
	} else if (!error) {
		c->cache_err_burst = 0;
	}
	spin_unlock_irqrestore(&c->lock, flags);
	pb->flags = 0;
	if (!error)
		return false;
	vmc_note_cache_error(c);
	if (dirty)
		return false;
	bio->bi_iter = pb->iter;
	bio->bi_iter.bi_sector = s;
	bio->bi_status = BLK_STS_OK;
	bio_set_dev(bio, c->origin_dev->bdev);
	return true;
}

/*
 * Writeback hit runs.  A write over blocks all cached, consecutive on the
 * cache, is one cache write (a journal or log rewritten in place, a
 * database writing several pages at once).  Each block is what
 * route_write() makes of a single one: what the write touches is either
 * all dirty or all valid and clean (a mix ends the run), nothing of it is
 * filling; clean data becomes dirty at map, covered by FLUX where the disk
 * does not record it dirty (the run waits for the commit that sets FLUX
 * when the disk lacks it, as a single block does), and every touched
 * sub-block is dirty again at completion.  FUA stays: the disk maps these
 * blocks.  The blocks are held and writers (writeback sees REDIRTY).  Not
 * with data_crc (its writes are checksummed block by block), not polled,
 * not during a drain (route_write() writes through then).
 */
static u64 plan_write_hit_run(struct vmcache *c, struct bio *bio, sector_t s,
			      u64 first, u64 last, u32 *cblock,
			      bool *wait_commit)
{
	sector_t end = s + bio_sectors(bio);
	sector_t sub = 1u << c->sub_shift;
	u64 ob, n;
	u32 idx;

	if (c->tun[VMC_T_MODE] != VMC_MODE_WRITEBACK || !may_allocate(c) ||
	    c->flush_active || c->data_crc || (bio->bi_opf & REQ_POLLED) ||
	    ((s | end) & (sub - 1)))
		return 0;
	/* look first: nothing changes unless two blocks or more qualify */
	n = hit_run_length(c, s, end, first, last, true, cblock);
	if (n < 2)
		return 0;
	for (ob = first; ob < first + n; ob++) {
		u8 m = span_mask(c, s, end, ob);
		struct vmc_block *b;

		idx = *cblock + (u32)(ob - first);
		b = &c->blocks[idx];
		vmc_policy_hit(c, idx);
		b->holders++;
		b->writers++;
		if (b->flags & VMC_B_WB)
			b->flags |= VMC_B_REDIRTY;
		if (b->dirty & m)
			continue;
		if (m & ~b->ddirty) {
			vmc_policy_set_dirty_covered(c, idx, m);
			c->flux_recent = VMC_FLUX_TICKS;
			if (!c->flux_ondisk)
				*wait_commit = true;
		} else {
			vmc_policy_set_dirty(c, idx, m);
		}
	}
	return n;
}

enum vmc_run {
	RUN_NONE, RUN_ORIGIN, RUN_HIT, RUN_WRITE, RUN_WRITE_HIT, RUN_THROUGH
};

/*
 * Writeback: a stream of sync writes (a journal, O_DIRECT, data being
 * fsynced) waits on every write, so it stays on the fast device instead
 * of going around it, until dirty data reaches the midpoint between
 * writeback_high and a full cache; past it the stream bypasses again so
 * that random writers keep room while writeback catches up.  Not at
 * writeback_high itself: a big file's writeback often leaves the cache
 * there for minutes, and then every fsync of small files or of a journal
 * waited for the slow disk.  Background writeback of the page cache (no
 * REQ_SYNC) still bypasses.  Called with c->lock held.
 */
static bool bypass_stream(struct vmcache *c, struct bio *bio, bool seq)
{
	if (!seq || !op_is_write(bio_op(bio)) || !(bio->bi_opf & REQ_SYNC) ||
	    c->tun[VMC_T_MODE] != VMC_MODE_WRITEBACK)
		return seq;
	return (u64)c->nr_dirty * 200 >=
	       (u64)(c->tun[VMC_T_WB_HIGH] + 100) * c->nr_blocks;
}

/*
 * A bio spanning blocks is split only where the place of its data changes:
 *  - a hit run (hit_run_length) goes to the cache in one piece; a stream
 *    past the cutoff takes it when it is long or ends the bio;
 *  - a stream past the cutoff otherwise goes to the origin: a write for
 *    the longest prefix of blocks that are not cached (origin_run), a
 *    read whole, the dirty runs read from the cache over the origin's
 *    data (plan_overlays);
 *  - outside a stream, a read miss over blocks to promote is one origin
 *    read (plan_fill_run), a writeback write over new blocks one cache
 *    write (plan_write_run), a writethrough write over blocks not
 *    cached or cached clean one origin write and one cache clone
 *    (plan_through_run);
 *  - anything else is cut at the block end and mapped block by block.
 * The rest comes back here either way.  Counters count blocks.  Returns
 * true when (a prefix of) the bio was remapped (*@taken: and taken to be
 * sent later, a write run to checksum).
 */
static bool map_across_blocks(struct vmcache *c, struct bio *bio,
			      bool is_write, bool *taken)
{
	struct vmc_bio *pb = dm_per_bio_data(bio, sizeof(*pb));
	sector_t s = dm_target_offset(c->ti, bio->bi_iter.bi_sector);
	sector_t bs = vmc_block_sectors(c), len = bio_sectors(bio);
	sector_t to_end = bs - (s & (bs - 1));
	u64 first = s >> c->block_shift;
	u64 last = (s + len - 1) >> c->block_shift;
	bool polled = bio->bi_opf & REQ_POLLED, need_commit = false, seq;
	bool flux = false, wait_commit = false;
	enum vmc_run kind = RUN_NONE;
	u32 hits = 0, cb = VMC_NIL, cached = 0;
	unsigned long flags;
	u64 n = 0;

	if (len <= to_end)
		return false;
	spin_lock_irqsave(&c->lock, flags);
	seq = bypass_stream(c, bio,
			    vmc_policy_sequential(c, bio->bi_iter.bi_sector,
						  bio->bi_iter.bi_size, false));
	if (!is_write && !polled &&
	    c->tun[VMC_T_MODE] != VMC_MODE_PASSTHROUGH)
		n = hit_run_length(c, s, s + len, first, last, false, &cb);
	if (n >= 2 && (!seq || n >= VMC_STREAM_HIT_RUN || first + n > last)) {
		kind = RUN_HIT;
		hold_hit_run(c, bio, first, n, cb);
	} else if (seq) {
		n = 0;
		/* read again by a stream: cache it (one pass is bypassed) */
		/* two blocks in a row: one may alias in the hashed stamps */
		if (!is_write && !polled && first < last &&
		    vmc_lookup(c, first) == VMC_NIL &&
		    vmc_lookup(c, first + 1) == VMC_NIL &&
		    vmc_policy_stream_seen(c, first) &&
		    vmc_policy_stream_seen(c, first + 1))
			n = plan_fill_run(c, bio, s, first, last, &need_commit);
		if (n)
			seq = false;	/* counted as misses, not bypassed */
		/*
		 * A polled bio must complete where dm polls: no overlays.
		 * With data_crc dirty data is read (and checked) as hits.
		 */
		else if (is_write || polled || c->data_crc)
			n = origin_run(c, first, last, is_write);
		else
			n = plan_overlays(c, bio, s, first, last, &hits);
		kind = n ? RUN_ORIGIN : RUN_NONE;
	} else if (!is_write && !polled) {
		n = plan_fill_run(c, bio, s, first, last, &need_commit);
		kind = n ? RUN_ORIGIN : RUN_NONE;
	} else if (is_write) {
		n = plan_write_run(c, bio, s, first, last, &need_commit, &cb);
		kind = n ? RUN_WRITE : RUN_NONE;
		if (!n) {
			n = plan_write_hit_run(c, bio, s, first, last, &cb,
					       &wait_commit);
			kind = n ? RUN_WRITE_HIT : RUN_NONE;
			hits = n;
		}
		if (!n) {
			n = plan_through_run(c, bio, s, first, last,
					     &need_commit, &cb, &cached,
					     &hits, &flux);
			/* a head and a tail, neither cached: the origin's */
			kind = !n ? RUN_NONE : cached ? RUN_THROUGH :
							RUN_ORIGIN;
		}
	}
	if (kind != RUN_NONE) {
		if (first + n <= last)
			dm_accept_partial_bio(bio, ((first + n) <<
						    c->block_shift) - s);
		/* after the cut: a retry or a fill uses exactly this */
		pb->iter = bio->bi_iter;
		/* no fill may cache what the origin holds before this lands */
		if ((kind == RUN_ORIGIN && is_write) || kind == RUN_THROUGH)
			owrite_start(c, pb, first, n);
		if (kind == RUN_WRITE || kind == RUN_WRITE_HIT ||
		    kind == RUN_THROUGH) {
			pb->ob_first = first;
			pb->ob_count = n;
			pb->cblock = cb;
			pb->flags |= kind == RUN_WRITE ? VMC_PB_WRITE_RUN :
				     kind == RUN_WRITE_HIT ?
				     VMC_PB_WRITE_HIT_RUN : VMC_PB_THROUGH_RUN;
		}
		/* the commit after it makes the data durable (see vmc_map()) */
		if (kind == RUN_WRITE && (bio->bi_opf & REQ_FUA)) {
			pb->flags |= VMC_PB_FUA_COMMIT;
			bio->bi_opf &= ~REQ_FUA;
		}
		if (flux)
			wait_commit = flux_write(c, pb);
		vmc_policy_sequential(c, bio->bi_iter.bi_sector,
				      bio->bi_iter.bi_size, true);
		if (kind == RUN_HIT)
			hits = n;
		vmc_stat_add(c, is_write ? VMC_S_WRITE_HITS : VMC_S_READ_HITS,
			     hits);
		vmc_stat_add(c, is_write ? VMC_S_WRITE_MISSES :
			     VMC_S_READ_MISSES, n - hits);
		if (kind == RUN_ORIGIN && seq)
			vmc_stat_add(c, VMC_S_BYPASSED, n - hits);
	}
	spin_unlock_irqrestore(&c->lock, flags);
	/* per block, as the counters count them; a stream's reads never hit */
	if (kind == RUN_ORIGIN && seq && !is_write)
		vmc_mrc_bypassed(c->mrc, n);
	else if (kind != RUN_NONE && !(kind == RUN_ORIGIN && seq))
		vmc_mrc_run(c->mrc, first, n, is_write, false);
	if (need_commit)
		vmc_commit_soon(c);
	if (pb->flags & VMC_PB_OVERLAY)
		send_overlays(pb);

	switch (kind) {
	case RUN_NONE:
		dm_accept_partial_bio(bio, to_end);
		return false;
	case RUN_ORIGIN:
	case RUN_THROUGH:
		remap(c, bio, false, 0, 0);
		break;
	case RUN_HIT:
	case RUN_WRITE:
	case RUN_WRITE_HIT:
		remap(c, bio, true, cb, s & (bs - 1));
		break;
	}
	if (kind == RUN_WRITE && c->data_crc) {
		vmc_crc_defer(c, bio);
		*taken = true;
	} else if (wait_commit) {
		/* sent on (with its clone) after the commit that sets FLUX */
		if (kind == RUN_THROUGH)
			pb->flags |= VMC_PB_LATE_CLONE;
		hold_for_commit(c, bio);
		*taken = true;
	} else if (kind == RUN_THROUGH) {
		submit_through_clone(c, bio);
	}
	return true;
}

int vmc_map(struct dm_target *ti, struct bio *bio)
{
	struct vmcache *c = ti->private;
	struct vmc_bio *pb = dm_per_bio_data(bio, sizeof(*pb));
	bool need_commit = false, wait_commit = false, is_write, seq, fresh;
	bool fua = bio->bi_opf & REQ_FUA;
	bool taken = false;
	enum vmc_state st = ST_INVALID;
	enum vmc_route route;
	struct vmc_req rq;
	unsigned long flags;
	struct vmc_block *b;
	unsigned long now;
	u32 idx;

	pb->flags = 0;
	pb->cblock = VMC_NIL;
	pb->clone_status = BLK_STS_OK;
	pb->lat_class = VMC_LAT_NONE;

	if (bio->bi_opf & REQ_PREFLUSH) {
		vmc_defer_flush(c, bio);
		return DM_MAPIO_SUBMITTED;
	}
	if (bio_op(bio) == REQ_OP_DISCARD)
		return map_discard(c, bio) ? DM_MAPIO_SUBMITTED :
					     DM_MAPIO_REMAPPED;
	if (!bio_sectors(bio)) {
		remap(c, bio, false, 0, 0);
		return DM_MAPIO_REMAPPED;
	}
	now = jiffies;
	if (READ_ONCE(c->last_io) != now)
		WRITE_ONCE(c->last_io, now);

	is_write = op_is_write(bio_op(bio));
	/* a read hit says so below; everything else is known here */
	pb->lat_class = is_write ? VMC_LAT_WRITE : VMC_LAT_READ_MISS;
	pb->lat_start = vmc_now_us();
	if (map_across_blocks(c, bio, is_write, &taken))
		return taken ? DM_MAPIO_SUBMITTED : DM_MAPIO_REMAPPED;
	describe(c, bio, &rq);
	/* a partial block at the end of the origin is never cached */
	if (rq.oblock >= c->origin_sectors >> c->block_shift) {
		remap(c, bio, false, 0, 0);
		return DM_MAPIO_REMAPPED;
	}

	spin_lock_irqsave(&c->lock, flags);
	idx = vmc_lookup(c, rq.oblock);
	if (idx != VMC_NIL)
		st = cut_uniform(c, bio, &c->blocks[idx], &rq);
	/* after the cut: the rest comes back and continues the stream */
	seq = bypass_stream(c, bio,
			    vmc_policy_sequential(c, bio->bi_iter.bi_sector,
						  bio->bi_iter.bi_size, true));
	fresh = idx == VMC_NIL;
	if (is_write)
		route = route_write(c, &rq, &idx, st, seq,
				    fua && (c->data_crc ||
					    (bio->bi_opf & REQ_POLLED)),
				    &need_commit, &wait_commit);
	else
		route = route_read(c, &rq, &idx, st, seq, &need_commit);

	/* no fill may cache what the origin holds before this lands */
	if (is_write && (route == R_ORIGIN || route == R_BOTH_WRITE))
		owrite_start(c, pb, rq.oblock, 1);
	if (route != R_ORIGIN) {
		b = &c->blocks[idx];
		b->holders++;
		pb->flags |= VMC_PB_HOLD;
		pb->cblock = idx;
		pb->mask = rq.touched;
		if (is_write) {
			b->writers++;
			pb->flags |= VMC_PB_WRITER;
			if (b->flags & VMC_B_WB)
				b->flags |= VMC_B_REDIRTY;
		}
		/* sub-blocks not yet valid become valid on completion */
		if (!(b->valid & rq.touched) || route == R_READ_FILL) {
			b->filling |= rq.touched;
			pb->flags |= VMC_PB_FILL;
		}
		if (route == R_CACHE_WRITE)
			pb->flags |= VMC_PB_DIRTY;
		/*
		 * The commit after it flushes the cache device first: that
		 * makes the data durable, no FUA needed on its way there.
		 */
		if (route == R_CACHE_WRITE && fua && st < ST_CLEAN) {
			pb->flags |= VMC_PB_FUA_COMMIT;
			bio->bi_opf &= ~REQ_FUA;
		}
		/*
		 * Overwriting valid data in the cache only: a crash must not
		 * find the new data under a clean mark (served now, lost at
		 * eviction).  It is marked dirty now and the next commit
		 * records it; until then the durable superblock must say
		 * FLUX, so that a crash makes the clean copies dirty (the
		 * cache copy wins).  Only the first such write after a quiet
		 * second waits, for the commit that sets FLUX.
		 */
		if (route == R_CACHE_WRITE && c->data_crc) {
			/*
			 * data_crc: vmcache-crc.c records it dirty with its
			 * checksums and waits for a commit (FLUX recovery
			 * would leave the block without checksums).
			 */
			if (st >= ST_CLEAN)
				pb->flags |= VMC_PB_CRC;
		} else if (route == R_CACHE_WRITE && st >= ST_CLEAN) {
			/* (failed metadata: no commit will come, flushes fail) */
			if ((rq.touched & ~b->ddirty) &&
			    c->md_state == VMC_MD_OK) {
				/* FLUX covers it: a flush need not commit it */
				vmc_policy_set_dirty_covered(c, idx, rq.touched);
				c->flux_recent = VMC_FLUX_TICKS;
				if (!c->flux_ondisk)
					wait_commit = true;
			} else {
				vmc_policy_set_dirty(c, idx, rq.touched);
			}
		}
		/*
		 * Both devices over a block the disk may map (a clean copy,
		 * or one whose dropped sub-blocks are not yet committed):
		 * until both are flushed a power cut may keep one version on
		 * each.  The durable superblock must say FLUX (the cache copy
		 * wins at recovery).  Only a block allocated just now is
		 * surely unmapped on disk.
		 */
		if (route == R_BOTH_WRITE && !fresh &&
		    c->md_state == VMC_MD_OK && flux_write(c, pb))
			wait_commit = true;
		if (route == R_READ_FILL) {
			pb->flags |= VMC_PB_PROMOTE;
			pb->iter = bio->bi_iter;
		}
		if (route == R_READ_HIT) {
			pb->flags |= VMC_PB_RETRY;
			pb->iter = bio->bi_iter;
			pb->lat_class = VMC_LAT_READ_HIT;
		}
	}
	spin_unlock_irqrestore(&c->lock, flags);
	vmc_mrc_access(c->mrc, rq.oblock, is_write, seq);
	if (need_commit)
		vmc_commit_soon(c);

	switch (route) {
	case R_READ_HIT:
	case R_CACHE_WRITE:
		remap(c, bio, true, idx, rq.offset);
		break;
	case R_BOTH_WRITE:
	case R_READ_FILL:
	case R_ORIGIN:
		remap(c, bio, false, 0, 0);
		break;
	}
	if (route == R_CACHE_WRITE && c->data_crc) {
		vmc_crc_defer(c, bio);
		return DM_MAPIO_SUBMITTED;
	}
	if (wait_commit) {
		if (route == R_BOTH_WRITE)
			pb->flags |= VMC_PB_LATE_CLONE;
		hold_for_commit(c, bio);
		return DM_MAPIO_SUBMITTED;
	}
	if (route == R_BOTH_WRITE)
		submit_cache_clone(c, bio, idx, rq.offset, 0,
				   bio->bi_iter.bi_size);
	return DM_MAPIO_REMAPPED;
}

/* ------------------------------------------------------------------ */
/* end_io */

/* a read hit failed on the cache: clean data is read from the origin */
static bool retry_on_origin(struct vmcache *c, struct bio *bio,
			    struct vmc_bio *pb)
{
	struct vmc_block *b = &c->blocks[pb->cblock];
	sector_t s;

	if (b->dirty & pb->mask)
		return false;
	s = dm_target_offset(c->ti, pb->iter.bi_sector);
	vmc_policy_set_valid(c, pb->cblock, b->valid & ~pb->mask);
	bio->bi_iter = pb->iter;
	bio->bi_iter.bi_sector = s;
	bio->bi_status = BLK_STS_OK;
	bio_set_dev(bio, c->origin_dev->bdev);
	return true;
}

/*
 * The bio is done for its submitter (not for a retry that goes on): its
 * latency from map, retries and commit waits included.
 */
static void lat_done(struct vmcache *c, struct vmc_bio *pb)
{
	if (pb->lat_class < VMC_NR_LAT)
		vmc_lat_add(c, pb->lat_class, vmc_us_since(pb->lat_start), 1);
}

/*
 * An overlay read: the origin read completed (first call), or the last
 * overlay read did after it (VMC_PB_OVERLAID).  Dirty data the cache
 * cannot give back fails the bio: never stale data.
 */
static int overlay_end_io(struct vmcache *c, struct bio *bio,
			  struct vmc_bio *pb, blk_status_t *error)
{
	if (!(pb->flags & VMC_PB_OVERLAID)) {
		if (*error)
			vmc_stat_inc(c, VMC_S_ORIGIN_ERRORS);
		pb->flags |= VMC_PB_OVERLAID;
		/* ended again by the last overlay read: one reference */
		reset_remaining(bio);
		if (!atomic_dec_and_test(&pb->overlay_pending))
			return DM_ENDIO_INCOMPLETE;
	}
	if (!*error && pb->clone_status)
		*error = pb->clone_status;
	finish_overlays(c, bio, pb, !*error);
	pb->flags = 0;
	lat_done(c, pb);
	return DM_ENDIO_DONE;
}

/*
 * A write that lost its FUA is on the cache device: it ends like a flush
 * that came after it, after the next commit (vmc_commit_work() ends it
 * again, VMC_PB_FUA_DONE).  Any context: it only queues the bio.
 */
static int fua_commit_after(struct vmcache *c, struct bio *bio,
			    struct vmc_bio *pb)
{
	pb->flags = VMC_PB_FUA_DONE;
	reset_remaining(bio);
	vmc_defer_flush(c, bio);
	return DM_ENDIO_INCOMPLETE;
}

static int end_io(struct vmcache *c, struct bio *bio, blk_status_t *error)
{
	struct vmc_bio *pb = dm_per_bio_data(bio, sizeof(*pb));
	bool cache_err = false, retry = false, fua_commit, ok;
	struct vmc_block *b;
	unsigned long flags;

	/* the next commit flushes the origin first (vmcache-metadata.c) */
	if (op_is_write(bio_op(bio)) && bio->bi_bdev == c->origin_dev->bdev)
		atomic_set(&c->origin_unflushed, 1);
	if (pb->flags & VMC_PB_FUA_DONE) {
		/* the commit's status, set by vmc_commit_work() */
		lat_done(c, pb);
		return DM_ENDIO_DONE;
	}
	if (pb->flags & VMC_PB_OWRITE)
		owrite_end(c, pb);
	if (pb->flags & VMC_PB_OVERLAY)
		return overlay_end_io(c, bio, pb, error);
	if (pb->flags & VMC_PB_FILL_RUN) {
		fill_run_end_io(c, bio, pb, *error);
		lat_done(c, pb);
		return DM_ENDIO_DONE;
	}
	if (pb->flags & (VMC_PB_WRITE_RUN | VMC_PB_WRITE_HIT_RUN)) {
		fua_commit = !*error && (pb->flags & VMC_PB_FUA_COMMIT);
		write_run_end_io(c, pb, *error);
		if (fua_commit)
			return fua_commit_after(c, bio, pb);
		lat_done(c, pb);
		return DM_ENDIO_DONE;
	}
	if (pb->flags & VMC_PB_THROUGH_RUN) {
		through_run_end_io(c, pb, *error);
		lat_done(c, pb);
		return DM_ENDIO_DONE;
	}
	if (pb->flags & VMC_PB_HIT_RUN) {
		if (hit_run_end_io(c, bio, pb, *error)) {
			*error = BLK_STS_OK;
			defer_remapped(c, bio);
			return DM_ENDIO_INCOMPLETE;
		}
		lat_done(c, pb);
		return DM_ENDIO_DONE;
	}
	if (!(pb->flags & VMC_PB_HOLD)) {
		lat_done(c, pb);
		if (*error && bio_op(bio) != REQ_OP_DISCARD &&
		    !(bio->bi_opf & REQ_PREFLUSH))
			vmc_stat_inc(c, VMC_S_ORIGIN_ERRORS);
		return DM_ENDIO_DONE;
	}

	spin_lock_irqsave(&c->lock, flags);
	b = &c->blocks[pb->cblock];
	ok = !*error && !pb->clone_status;
	if (pb->clone_status || (*error && (pb->flags & VMC_PB_RETRY)) ||
	    (*error && (pb->flags & VMC_PB_DIRTY)))
		cache_err = true;
	else if (*error)
		vmc_stat_inc(c, VMC_S_ORIGIN_ERRORS);

	if (pb->flags & VMC_PB_WRITER)
		b->writers--;
	if (pb->flags & VMC_PB_FLUX)
		c->flux_inflight--;

	if ((pb->flags & VMC_PB_PROMOTE) && ok) {
		/* the holder and filling bits pass on to the fill copy */
		pb->flags &= ~VMC_PB_HOLD;
		spin_unlock_irqrestore(&c->lock, flags);
		if (start_fill(c, bio, pb->iter, pb->cblock, pb->mask)) {
			lat_done(c, pb);
			return DM_ENDIO_DONE;
		}
		spin_lock_irqsave(&c->lock, flags);
		ok = false;
		pb->flags |= VMC_PB_HOLD;
	}
	if (pb->flags & VMC_PB_FILL) {
		u8 good = ok ? pb->mask & ~b->cancel : 0;

		b->filling &= ~pb->mask;
		b->cancel &= ~pb->mask;
		if (good)
			vmc_policy_set_valid(c, pb->cblock, b->valid | good);
	} else if (!ok && !(b->dirty & pb->mask) &&
		   (pb->flags & VMC_PB_WRITER)) {
		/* a failed write leaves the cached copy unknown: drop it */
		vmc_policy_set_valid(c, pb->cblock, b->valid & ~pb->mask);
	}
	/* overtaken writes left nothing valid: nothing becomes dirty */
	if (ok && (pb->flags & VMC_PB_DIRTY) && (pb->mask & b->valid))
		vmc_policy_set_dirty(c, pb->cblock, pb->mask & b->valid);
	if (*error && (pb->flags & VMC_PB_RETRY))
		retry = retry_on_origin(c, bio, pb);
	if (ok && (pb->flags & (VMC_PB_RETRY | VMC_PB_DIRTY)))
		c->cache_err_burst = 0;
	b->holders--;
	fua_commit = ok && (pb->flags & VMC_PB_FUA_COMMIT);
	pb->flags = 0;
	spin_unlock_irqrestore(&c->lock, flags);

	if (cache_err)
		vmc_note_cache_error(c);
	if (retry) {
		*error = BLK_STS_OK;
		defer_remapped(c, bio);
		return DM_ENDIO_INCOMPLETE;
	}
	if (fua_commit)
		return fua_commit_after(c, bio, pb);
	lat_done(c, pb);
	return DM_ENDIO_DONE;
}

/*
 * data_crc: a read hit of dirty data is checked (vmcache-crc.c) before it
 * completes; one that fails its checksum fails with EIO.
 */
int vmc_end_io(struct dm_target *ti, struct bio *bio, blk_status_t *error)
{
	struct vmcache *c = ti->private;
	struct vmc_bio *pb = dm_per_bio_data(bio, sizeof(*pb));
	bool bad = false;
	int r;

	if (!*error && vmc_crc_read_needs_check(c, bio)) {
		vmc_crc_defer(c, bio);
		return DM_ENDIO_INCOMPLETE;
	}
	/* the cache read itself went well: complete it as such, then fail */
	if (*error == BLK_STS_PROTECTION && (pb->flags & VMC_PB_CRC) &&
	    !op_is_write(bio_op(bio))) {
		*error = BLK_STS_OK;
		bad = true;
	}
	r = end_io(c, bio, error);
	if (r == DM_ENDIO_DONE && bad)
		*error = BLK_STS_IOERR;
	return r;
}

size_t vmc_own_bio_front_pad(void)
{
	return offsetof(struct vmc_own, bio);
}
