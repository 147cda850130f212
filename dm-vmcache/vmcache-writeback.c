// SPDX-License-Identifier: GPL-2.0
/*
 * dm-vmcache background writeback: a pipeline, not a batch.
 *
 *   pick      dirty blocks, least recently written first (the dirty list is
 *             kept in order of last write), sorted by origin offset; those
 *             written in the last second or two only when urgent or idle;
 *   copy      blocks adjacent on the origin form one job, however scattered
 *             they are on the cache: one dm-io read per cache-contiguous
 *             piece into one buffer (pages of the worker's pool), then
 *             one dm-io write to the origin;
 *   flush     jobs whose origin write completed wait for an origin flush,
 *             sent (asynchronously) when 4 MiB are copied, the oldest copy
 *             has waited half a second, or urgent copying has stopped;
 *             copying goes on meanwhile (a flush on a file-backed virtual
 *             disk is a host fsync: few and large);
 *   clean     when the flush completes, the blocks it covers become clean
 *             (a block written meanwhile stays dirty).
 *
 * The window (blocks in the copy stage) is the rate control:
 *
 *   full (writeback_max_inflight)   a flush/drain was asked for, the mode is
 *                                   not writeback, the cache is degraded or
 *                                   dirty >= writeback_high; also when there
 *                                   is work (below) and no foreground I/O
 *                                   for a second;
 *   proportional                    between writeback_low and _high the
 *                                   window grows with the dirty level;
 *   floor                           never less than the window that moves
 *                                   writeback_floor KiB/s at the measured
 *                                   copy latency (Little's law), so dirty
 *                                   data always drains, aged blocks too;
 *   nothing                         below writeback_low with nothing aged.
 *
 * A full window's origin writes are REQ_SYNC | REQ_IDLE, like O_DIRECT
 * writes: the origin's blk-wbt would otherwise hold them to half its queue
 * depth.  The others stay plain async writes, which blk-wbt keeps out of
 * the way of the origin's reads.
 *
 * When the copy latency climbs to four times the best seen recently (a
 * throttled or busy host disk), a non-urgent window is halved; the best
 * creeps up with every sample, so the halving ends when the origin stays
 * slow.  Origin errors keep blocks dirty and back off exponentially; after
 * writeback_retries failures in a row the cache reports degraded.
 *
 * Contexts: dm-io and flush completions may run in hard IRQ context; they
 * only queue the job on wb_done (wb_lock, irqsave) and kick the worker.
 * Everything else runs in wb_work, which the workqueue never runs twice
 * at once, so the stage lists are the worker's own.
 */
#include <linux/blkdev.h>
#include <linux/dm-io.h>
#include <linux/jiffies.h>
#include <linux/slab.h>
#include <linux/sort.h>
#include <linux/vmalloc.h>
#include "vmcache-writeback.h"
#include "vmcache-crc.h"
#include "vmcache-policy.h"
#include "vmcache-io.h"

#define VMC_WB_MAX_ITEMS	1024		/* writeback_max_inflight max */
#define VMC_WB_JOB_BYTES	(512u << 10)	/* one origin write at most */
#define VMC_WB_WINDOW_BYTES	(8u << 20)	/* buffers in flight at most */
#define VMC_WB_FLUSH_BYTES	(4u << 20)	/* copied before a flush */
#define VMC_WB_FLUSH_WAIT	(HZ / 2)	/* or the oldest waited this */
#define VMC_WB_TICK		(HZ / 10)
#define VMC_WB_MAX_BACKOFF	(30 * HZ)
#define VMC_WB_RECENT_SECS	2		/* see recent() */
#define VMC_WB_SEEDS_PER_HOLD	16		/* see pick_blocks() */

enum vmc_job_stage { JOB_READING, JOB_WRITING, JOB_COPIED };

struct vmc_wb_piece {
	sector_t csector;	/* on the cache */
	u32 offset;		/* sectors into the job */
	u32 sectors;
};

struct vmc_wb_job {
	struct list_head node;
	struct vmcache *c;
	sector_t osector;	/* on the origin */
	u32 sectors;
	u16 nr_items, nr_pieces;
	atomic_t reads;		/* pieces still being read */
	u8 stage;		/* enum vmc_job_stage, of the last completion */
	bool read_err, write_err;
	bool sync;		/* its origin write is REQ_SYNC | REQ_IDLE */
	u32 start_us, took_us;	/* its origin write: issued, how long */
	u32 nr_pages;		/* of the buffer; 0 once given back */
	struct page_list *pages;	/* the buffer, chained for dm-io */
	struct vmc_wb_piece *pieces;
	struct vmc_wb_item items[];
};

/* a picked block: what the job builder needs, in origin order */
struct vmc_wb_pick {
	u64 oblock;
	u32 cblock;
	u8 first, last;	/* sub-block run [first, last) written back */
	bool alone;	/* a merged copy failed to read: copy it alone */
};

static void kick_now(struct vmcache *c)
{
	mod_delayed_work(c->bg_wq, &c->wb_work, 0);
}

void vmc_wb_kick(struct vmcache *c)
{
	if (!READ_ONCE(c->wb_stopping))
		kick_now(c);
}

/* finish a drain once nothing is dirty */
static void check_drained(struct vmcache *c)
{
	bool event = false;

	spin_lock_irq(&c->lock);
	if (c->flush_active && !c->nr_dirty) {
		c->flush_active = false;
		event = true;
	}
	spin_unlock_irq(&c->lock);
	if (event) {
		/* a crash after the drain must not copy it all again */
		vmc_commit_lazy(c);
		DMINFO("%s: all dirty data written back", c->name);
		dm_table_event(c->ti->table);
	}
}

/* has the oldest dirty block outlived max_dirty_age? */
static bool oldest_aged(struct vmcache *c)
{
	u16 max_age = c->tun[VMC_T_MAX_AGE];
	bool aged = false;
	u32 head;

	if (!max_age)
		return false;
	spin_lock_irq(&c->lock);
	head = c->lists[VMC_LIST_DIRTY].head;
	if (head != VMC_NIL)
		aged = vmc_secs_since(vmc_now_secs(c),
				      c->blocks[head].dirtied) >= max_age;
	spin_unlock_irq(&c->lock);
	return aged;
}

static u32 window_max(struct vmcache *c)
{
	return clamp_t(u32, VMC_WB_WINDOW_BYTES / c->tun[VMC_T_BLOCK_SIZE], 1,
		       c->tun[VMC_T_WB_INFLIGHT]);
}

/*
 * Blocks per job at most: a quarter of the window, so that a full window
 * is at least four origin writes in flight (one big job alone would leave
 * the origin's queue idle while its cache reads run), and 512 KiB.
 */
static u32 job_blocks(struct vmcache *c)
{
	return clamp_t(u32, window_max(c) / 4, 1,
		       VMC_WB_JOB_BYTES / c->tun[VMC_T_BLOCK_SIZE]);
}

/* the window that moves writeback_floor KiB/s at the copy latency seen */
static u32 floor_window(struct vmcache *c)
{
	u64 bytes_per_s = (u64)c->tun[VMC_T_WB_FLOOR] << 10;
	u32 lat = c->wb_lat_avg ?: 1000;

	if (!bytes_per_s)
		return 1;
	return max_t(u32, 1, div_u64(bytes_per_s * lat + USEC_PER_SEC - 1,
				     (u64)c->tun[VMC_T_BLOCK_SIZE] *
				     USEC_PER_SEC));
}

/* blocks the copy stage may hold now, and when to look again */
static u32 window(struct vmcache *c, bool *aged_only, bool *urgent,
		  bool *sync, unsigned long *next)
{
	u32 full = window_max(c);
	u32 low = c->tun[VMC_T_WB_LOW], high = c->tun[VMC_T_WB_HIGH];
	u32 pct = div_u64((u64)READ_ONCE(c->nr_dirty) * 100, c->nr_blocks);
	bool idle = time_after(jiffies, READ_ONCE(c->last_io) + HZ);
	bool above = pct > low;
	u32 n, least;

	*aged_only = false;
	*urgent = false;
	*sync = false;
	*next = VMC_WB_TICK;
	if (!READ_ONCE(c->nr_dirty)) {
		*next = HZ;
		return 0;
	}
	if (c->flush_active || c->degraded || pct >= high ||
	    c->tun[VMC_T_MODE] != VMC_MODE_WRITEBACK) {
		*urgent = true;
		*sync = true;
		return full;
	}
	if (!above && !oldest_aged(c)) {
		*next = HZ;
		return 0;
	}
	*aged_only = !above;
	if (idle) {
		*sync = true;
		return full;
	}
	least = min(floor_window(c), full);
	n = least;
	if (above && high > low)
		n = max_t(u32, n, div_u64((u64)full * (pct - low), high - low));
	/* the origin is slowing down: it is busy, go easier */
	if (c->wb_lat_min && c->wb_lat_avg > 4 * c->wb_lat_min)
		n = max(n / 2, least);
	return min(n, full);
}

static void note_latency(struct vmcache *c, u32 us)
{
	c->wb_lat_avg = c->wb_lat_avg ? (c->wb_lat_avg * 7 + us) / 8 : us;
	/* the best creeps up, so an origin that stays slow is the norm */
	if (!c->wb_lat_min || us < c->wb_lat_min)
		c->wb_lat_min = max(us, 1u);
	else
		c->wb_lat_min += c->wb_lat_min / 64 + 1;
}

/* ------------------------------------------------------------------ */
/* completions: any context */

static void job_done(struct vmc_wb_job *j, enum vmc_job_stage stage)
{
	struct vmcache *c = j->c;
	unsigned long flags;

	j->stage = stage;
	spin_lock_irqsave(&c->wb_lock, flags);
	list_add_tail(&j->node, &c->wb_done);
	spin_unlock_irqrestore(&c->wb_lock, flags);
	kick_now(c);
}

static void read_done(unsigned long error, void *context)
{
	struct vmc_wb_job *j = context;

	if (error)
		WRITE_ONCE(j->read_err, true);
	if (atomic_dec_and_test(&j->reads))
		job_done(j, JOB_READING);
}

static void write_done(unsigned long error, void *context)
{
	struct vmc_wb_job *j = context;

	/*
	 * origin_unflushed is left alone: these blocks stay dirty until our
	 * own flush, so no commit or REQ_PREFLUSH needs an origin flush.
	 */
	j->write_err = !!error;
	j->took_us = vmc_us_since(j->start_us);
	job_done(j, JOB_WRITING);
}

static void flush_endio(struct bio *bio)
{
	struct vmcache *c = bio->bi_private;

	WRITE_ONCE(c->wb_flush_err, bio->bi_status != BLK_STS_OK);
	bio_put(bio);
	/* publishes wb_flush_err; pairs with flush_stage() */
	smp_store_release(&c->wb_flush_state, VMC_WB_FLUSH_DONE);
	kick_now(c);
}

/* ------------------------------------------------------------------ */
/* the worker's stages */

/* the page holding sector @offset of @j's buffer, and where in it */
static struct page_list *job_page(struct vmc_wb_job *j, u32 offset,
				  u32 *in_page)
{
	*in_page = offset & (PAGE_SECTORS - 1);
	return &j->pages[offset >> PAGE_SECTORS_SHIFT];
}

static void job_io(struct vmcache *c, struct vmc_wb_job *j, blk_opf_t opf,
		   struct dm_io_region *where, u32 offset, io_notify_fn fn)
{
	struct dm_io_request req = {
		.bi_opf = opf,
		.mem.type = DM_IO_PAGE_LIST,
		.notify.fn = fn,
		.notify.context = j,
		.client = c->wb_io_client,
	};
	u32 in_page;

	req.mem.ptr.pl = job_page(j, offset, &in_page);
	req.mem.offset = in_page << SECTOR_SHIFT;
	/* async: errors come back through @fn */
	dm_io(&req, 1, where, NULL, IOPRIO_DEFAULT);
}

static void start_reads(struct vmcache *c, struct vmc_wb_job *j)
{
	u32 i;

	j->start_us = vmc_now_us();
	atomic_set(&j->reads, j->nr_pieces);
	for (i = 0; i < j->nr_pieces; i++) {
		struct dm_io_region from = {
			.bdev = c->cache_dev->bdev,
			.sector = j->pieces[i].csector,
			.count = j->pieces[i].sectors,
		};

		job_io(c, j, REQ_OP_READ, &from, j->pieces[i].offset,
		       read_done);
	}
}

/*
 * An async dm-io write has neither REQ_SYNC nor REQ_IDLE, so the origin's
 * write-back throttling (blk-wbt) lets only half its queue depth of them
 * in flight: right for cleaning beside foreground I/O, a cap on a drain.
 * Writeback that nothing competes with goes out like O_DIRECT writes.
 */
static void start_write(struct vmcache *c, struct vmc_wb_job *j)
{
	struct dm_io_region to = {
		.bdev = c->origin_dev->bdev,
		.sector = j->osector,
		.count = j->sectors,
	};

	job_io(c, j, REQ_OP_WRITE | (j->sync ? REQ_SYNC | REQ_IDLE : 0), &to,
	       0, write_done);
}

static int cmp_picks(const void *a, const void *b)
{
	u64 x = ((const struct vmc_wb_pick *)a)->oblock;
	u64 y = ((const struct vmc_wb_pick *)b)->oblock;

	return x < y ? -1 : x > y;
}

/* can block @idx be written back now?  Then pick it (c->lock held) */
static bool take(struct vmcache *c, u32 idx, struct vmc_wb_pick *p)
{
	struct vmc_block *b = &c->blocks[idx];
	unsigned long mask = b->dirty;

	if (!mask || b->writers || (b->flags & VMC_B_WB))
		return false;
	b->flags |= VMC_B_WB;
	b->holders++;
	p->oblock = b->oblock;
	p->cblock = idx;
	/* one run per copy: the rest stays dirty for later */
	p->first = find_first_bit(&mask, VMC_SUBBLOCKS);
	p->last = find_next_zero_bit(&mask, VMC_SUBBLOCKS, p->first);
	p->alone = b->flags & VMC_B_ALONE;
	return true;
}

/*
 * Written in this second or the one before: still being rewritten, most
 * likely.  Copying it now would only have it copied again after its next
 * write (a hot set between the watermarks would be cleaned over and over
 * at the floor rate, for nothing), so only writeback that is urgent or
 * has the origin to itself takes it.
 */
static bool recent(struct vmc_block *b, u16 now)
{
	return vmc_secs_since(now, b->dirtied) < VMC_WB_RECENT_SECS;
}

/*
 * Dirty neighbours of a picked block on the origin join it, so that they
 * go out in one origin write however they lie on the cache.
 */
static u32 take_neighbours(struct vmcache *c, u64 seed, int dir, u32 n,
			   u32 want, bool take_recent)
{
	u32 span = job_blocks(c);
	u16 now = vmc_now_secs(c);
	u64 ob = seed;
	u32 i;

	for (i = 1; i < span && n < want; i++) {
		u32 idx;

		if (dir < 0 && ob == 0)
			break;
		ob += dir;
		idx = vmc_lookup(c, ob);
		if (idx == VMC_NIL ||
		    (!take_recent && recent(&c->blocks[idx], now)) ||
		    !take(c, idx, &c->wb_picks[n]))
			break;
		/* out of the way of the scans, like the block it joins */
		vmc_list_move(c, idx, VMC_LIST_DIRTY, true);
		n++;
	}
	return n;
}

/*
 * Take up to @want dirty blocks, least recently written first; recently
 * written ones only with @take_recent.
 */
static u32 pick_blocks(struct vmcache *c, u32 want, bool aged_only,
		       bool take_recent)
{
	u16 now = vmc_now_secs(c), max_age = c->tun[VMC_T_MAX_AGE];
	u32 idx, n = 0, scanned = 0, seeds = 0;

	spin_lock_irq(&c->lock);
	idx = c->lists[VMC_LIST_DIRTY].head;
	while (idx != VMC_NIL && n < want && scanned++ < 4 * want + 64) {
		struct vmc_block *b = &c->blocks[idx];

		/* the list is in order of last write: the rest is younger */
		if (aged_only && vmc_secs_since(now, b->dirtied) < max_age)
			break;
		if (!take_recent && recent(b, now))
			break;
		if (!take(c, idx, &c->wb_picks[n])) {
			idx = b->next;
			continue;
		}
		n++;
		/* out of the way of the next scans while in flight */
		vmc_list_move(c, idx, VMC_LIST_DIRTY, true);
		n = take_neighbours(c, b->oblock, 1, n, want, take_recent);
		n = take_neighbours(c, b->oblock, -1, n, want, take_recent);
		/*
		 * A whole window is hundreds of blocks: let the bios waiting
		 * at map in (the walk starts again from the head anyway).
		 */
		if (++seeds % VMC_WB_SEEDS_PER_HOLD == 0) {
			spin_unlock_irq(&c->lock);
			cond_resched();
			spin_lock_irq(&c->lock);
		}
		/* the list changed under the walk: start again from the head */
		idx = c->lists[VMC_LIST_DIRTY].head;
	}
	spin_unlock_irq(&c->lock);
	return n;
}

/* give picks back untouched (no memory for their job) */
static void unpick(struct vmcache *c, u32 from, u32 to)
{
	u32 i;

	spin_lock_irq(&c->lock);
	for (i = from; i < to; i++) {
		struct vmc_block *b = &c->blocks[c->wb_picks[i].cblock];

		b->flags &= ~(VMC_B_WB | VMC_B_REDIRTY);
		b->holders--;
	}
	spin_unlock_irq(&c->lock);
}

static sector_t pick_osector(struct vmcache *c, struct vmc_wb_pick *p)
{
	return (p->oblock << c->block_shift) +
	       ((sector_t)p->first << c->sub_shift);
}

static u32 pick_sectors(struct vmcache *c, struct vmc_wb_pick *p)
{
	return (u32)(p->last - p->first) << c->sub_shift;
}

/*
 * Buffer pages come from the worker's pool, back to it when a job ends,
 * and are freed once writeback is idle.  A fresh page is cleared first
 * (init_on_alloc, on in Debian's kernels): in a drain of 256 KiB jobs that
 * was a third of the worker's CPU time.  The pool never holds more than
 * one window of buffers (VMC_WB_WINDOW_BYTES).  The worker's own: no lock.
 */
static struct page *pool_get(struct vmcache *c)
{
	struct page *p = list_first_entry_or_null(&c->wb_pool, struct page,
						  lru);

	if (!p)
		return alloc_page(GFP_NOIO | __GFP_NOWARN);
	list_del(&p->lru);
	return p;
}

/* give @j's buffer back to the pool */
static void pool_put(struct vmcache *c, struct vmc_wb_job *j)
{
	u32 i;

	for (i = 0; i < j->nr_pages; i++)
		if (j->pages[i].page)
			list_add(&j->pages[i].page->lru, &c->wb_pool);
	j->nr_pages = 0;
}

static void pool_drain(struct vmcache *c)
{
	struct page *p, *tmp;

	list_for_each_entry_safe(p, tmp, &c->wb_pool, lru) {
		list_del(&p->lru);
		__free_page(p);
	}
}

static void free_job(struct vmcache *c, struct vmc_wb_job *j)
{
	pool_put(c, j);
	kfree(j);
}

/* a job of @n items and @sectors, its pieces and page list in one piece */
static struct vmc_wb_job *alloc_job(struct vmcache *c, u32 n, u32 sectors)
{
	u32 i, nr_pages = DIV_ROUND_UP(sectors, PAGE_SECTORS);
	struct vmc_wb_job *j;
	size_t pieces_at = ALIGN(struct_size(j, items, n),
				 __alignof__(struct vmc_wb_piece));
	size_t pages_at = ALIGN(pieces_at + n * sizeof(struct vmc_wb_piece),
				__alignof__(struct page_list));

	j = kzalloc(pages_at + nr_pages * sizeof(struct page_list),
		    GFP_NOIO | __GFP_NOWARN);
	if (!j)
		return NULL;
	j->pieces = (void *)j + pieces_at;
	j->pages = (void *)j + pages_at;
	j->nr_pages = nr_pages;
	for (i = 0; i < nr_pages; i++) {
		j->pages[i].page = pool_get(c);
		if (!j->pages[i].page) {
			free_job(c, j);
			return NULL;
		}
		j->pages[i].next = i + 1 < nr_pages ? &j->pages[i + 1] : NULL;
	}
	return j;
}

/* picks [first, first + n) adjacent on the origin: one job */
static struct vmc_wb_job *make_job(struct vmcache *c, u32 first, u32 n)
{
	struct vmc_wb_pick *p = &c->wb_picks[first];
	struct vmc_wb_job *j;
	u32 i, sectors = 0;

	for (i = 0; i < n; i++)
		sectors += pick_sectors(c, &p[i]);
	j = alloc_job(c, n, sectors);
	if (!j)
		return NULL;
	j->c = c;
	j->osector = pick_osector(c, p);
	j->sectors = sectors;
	j->nr_items = n;
	sectors = 0;
	for (i = 0; i < n; i++) {
		sector_t cs = vmc_cblock_sector(c, p[i].cblock) +
			      ((sector_t)p[i].first << c->sub_shift);
		u32 len = pick_sectors(c, &p[i]);
		struct vmc_wb_piece *x = j->nr_pieces ?
					 &j->pieces[j->nr_pieces - 1] : NULL;

		j->items[i].cblock = p[i].cblock;
		j->items[i].mask = GENMASK(p[i].last - 1, p[i].first);
		if (x && x->csector + x->sectors == cs) {
			x->sectors += len;
		} else {
			x = &j->pieces[j->nr_pieces++];
			x->csector = cs;
			x->offset = sectors;
			x->sectors = len;
		}
		sectors += len;
	}
	return j;
}

/* pick, group by origin adjacency, start the reads; returns blocks started */
static u32 issue(struct vmcache *c, u32 want, bool aged_only, bool sync)
{
	u32 n = pick_blocks(c, want, aged_only, sync), i = 0, started = 0;
	u32 max_sectors = job_blocks(c) << c->block_shift;

	if (c->tun[VMC_T_WB_SORT])
		sort(c->wb_picks, n, sizeof(*c->wb_picks), cmp_picks, NULL);
	while (i < n) {
		struct vmc_wb_pick *p = c->wb_picks;
		sector_t end = pick_osector(c, &p[i]) + pick_sectors(c, &p[i]);
		u32 k = i + 1, sectors = pick_sectors(c, &p[i]);
		struct vmc_wb_job *j;

		while (!p[i].alone && k < n && !p[k].alone &&
		       pick_osector(c, &p[k]) == end &&
		       sectors + pick_sectors(c, &p[k]) <= max_sectors) {
			sectors += pick_sectors(c, &p[k]);
			end += pick_sectors(c, &p[k]);
			k++;
		}
		j = make_job(c, i, k - i);
		if (!j) {
			unpick(c, i, n);
			break;
		}
		j->sync = sync;
		c->wb_copying += k - i;
		atomic_add(k - i, &c->wb_inflight_blocks);
		start_reads(c, j);
		started += k - i;
		i = k;
	}
	return started;
}

/* which of a job's blocks become clean, stay dirty or lost data */
static void finish_item(struct vmcache *c, struct vmc_wb_item *it)
{
	struct vmc_block *b = &c->blocks[it->cblock];
	bool redirty = b->flags & VMC_B_REDIRTY;

	b->flags &= ~(VMC_B_WB | VMC_B_REDIRTY);
	b->holders--;
	if (it->retry) {
		b->flags |= VMC_B_ALONE;
		return;
	}
	if (it->err)
		return;
	b->flags &= ~VMC_B_ALONE;
	if (redirty)
		return;		/* rewritten meanwhile: still dirty */
	if (it->lost) {
		/* unreadable on the cache: the origin keeps its older copy */
		DMERR_LIMIT("%s: data loss: cannot read dirty origin block %llu from the cache",
			    c->name, (unsigned long long)b->oblock);
		vmc_stat_inc(c, VMC_S_DATA_LOSS);
		vmc_policy_clear_dirty(c, it->cblock, it->lost);
		vmc_policy_set_valid(c, it->cblock, b->valid & ~it->lost);
		return;
	}
	vmc_policy_clear_dirty(c, it->cblock, it->mask);
	vmc_stat_inc(c, VMC_S_WB_DONE);
	vmc_lat_add(c, VMC_LAT_WRITEBACK, it->lat_us, 1);
}

/*
 * Release each job's blocks, a job per lock hold (a flush may cover a
 * thousand blocks).
 */
static void end_jobs(struct vmcache *c, struct list_head *jobs)
{
	struct vmc_wb_job *j, *tmp;
	u32 i;

	list_for_each_entry_safe(j, tmp, jobs, node) {
		list_del(&j->node);
		spin_lock_irq(&c->lock);
		for (i = 0; i < j->nr_items; i++)
			finish_item(c, &j->items[i]);
		spin_unlock_irq(&c->lock);
		atomic_sub(j->nr_items, &c->wb_inflight_blocks);
		free_job(c, j);
	}
}

/* an origin write or flush failed: back off, maybe degrade */
static void note_failure(struct vmcache *c)
{
	vmc_stat_inc(c, VMC_S_WB_ERRORS);
	vmc_stat_inc(c, VMC_S_ORIGIN_ERRORS);
	/* the jobs in flight when it failed share one attempt */
	if (c->wb_backoff)
		return;
	c->wb_fail_streak++;
	DMERR_LIMIT("%s: writeback failed (attempt %u), blocks stay dirty",
		    c->name, c->wb_fail_streak);
	if (c->wb_fail_streak == c->tun[VMC_T_WB_RETRIES]) {
		c->origin_failing = true;
		DMERR("%s: origin keeps failing writeback: degraded", c->name);
		dm_table_event(c->ti->table);
	}
	c->wb_backoff = true;
	c->wb_retry_at = jiffies +
		min_t(unsigned long, VMC_WB_TICK << min(c->wb_fail_streak, 16u),
		      VMC_WB_MAX_BACKOFF);
}

static void note_success(struct vmcache *c)
{
	if (!c->wb_fail_streak)
		return;
	c->wb_fail_streak = 0;
	if (c->origin_failing) {
		c->origin_failing = false;
		DMINFO("%s: origin writeback recovered", c->name);
		dm_table_event(c->ti->table);
	}
}

/*
 * data_crc: the sub-blocks whose copy fails its checksum are never written
 * to the origin; they lose their dirty data (lost).  Returns false when
 * any did: the job writes nothing, its other blocks are copied alone.
 */
static bool crc_ok(struct vmcache *c, struct vmc_wb_job *j)
{
	u32 i, off = 0;
	bool ok = true;

	for (i = 0; c->data_crc && i < j->nr_items; i++) {
		struct vmc_wb_item *it = &j->items[i];
		u32 in_page;
		struct page_list *pl = job_page(j, off, &in_page);

		it->lost = vmc_crc_check_pages(c, it->cblock, it->mask, pl,
					       in_page);
		ok &= !it->lost;
		off += hweight8(it->mask) << c->sub_shift;
	}
	if (ok)
		return true;
	c->wb_copying -= j->nr_items;
	for (i = 0; i < j->nr_items; i++)
		j->items[i].retry = !j->items[i].lost;
	return false;
}

/* a job's read or write completed */
static void reap_job(struct vmcache *c, struct vmc_wb_job *j,
		     struct list_head *ended)
{
	u32 i;

	if (j->stage == JOB_READING && !j->read_err) {
		if (crc_ok(c, j))
			start_write(c, j);
		else
			list_add_tail(&j->node, ended);
		return;
	}
	c->wb_copying -= j->nr_items;
	if (j->read_err) {
		vmc_note_cache_error(c);
		for (i = 0; i < j->nr_items; i++) {
			/* which block failed?  Copy each alone */
			if (j->nr_items > 1)
				j->items[i].retry = true;
			else
				j->items[i].lost = j->items[i].mask;
		}
		list_add_tail(&j->node, ended);
		return;
	}
	if (j->write_err) {
		for (i = 0; i < j->nr_items; i++)
			j->items[i].err = true;
		note_failure(c);
		list_add_tail(&j->node, ended);
		return;
	}
	note_latency(c, j->took_us);
	for (i = 0; i < j->nr_items; i++)
		j->items[i].lat_us = j->took_us;
	/* the data is in the origin's cache: the buffer can go now */
	pool_put(c, j);
	j->stage = JOB_COPIED;
	if (!c->wb_copied)
		c->wb_copied_at = jiffies;
	c->wb_copied += j->nr_items;
	list_add_tail(&j->node, &c->wb_copied_jobs);
}

static void reap(struct vmcache *c)
{
	struct vmc_wb_job *j, *tmp;
	LIST_HEAD(done);
	LIST_HEAD(ended);

	spin_lock_irq(&c->wb_lock);
	list_splice_init(&c->wb_done, &done);
	spin_unlock_irq(&c->wb_lock);
	list_for_each_entry_safe(j, tmp, &done, node) {
		list_del(&j->node);
		reap_job(c, j, &ended);
	}
	end_jobs(c, &ended);
}

/*
 * The origin flush that makes copied jobs durable.  @now: copying has
 * stopped and nobody should wait (urgent writeback, stopping); otherwise a
 * copy stage that runs empty between rate-limited windows waits for more.
 */
static void flush_stage(struct vmcache *c, bool now)
{
	/* pairs with flush_endio(): wb_flush_err is valid once DONE */
	u8 state = smp_load_acquire(&c->wb_flush_state);
	struct bio *bio;

	if (state == VMC_WB_FLUSH_DONE) {
		bool failed = READ_ONCE(c->wb_flush_err);
		struct vmc_wb_job *j;

		if (failed) {
			list_for_each_entry(j, &c->wb_flushing_jobs, node) {
				u32 i;

				for (i = 0; i < j->nr_items; i++)
					j->items[i].err = true;
			}
			note_failure(c);
		} else {
			note_success(c);
		}
		end_jobs(c, &c->wb_flushing_jobs);
		c->wb_flush_state = VMC_WB_FLUSH_IDLE;
		state = VMC_WB_FLUSH_IDLE;
	}
	if (state != VMC_WB_FLUSH_IDLE || !c->wb_copied)
		return;
	/* 4 MiB copied, the oldest waited long enough, or copying stopped */
	if ((c->wb_copying || !now) &&
	    c->wb_copied < max(VMC_WB_FLUSH_BYTES / c->tun[VMC_T_BLOCK_SIZE], 1u) &&
	    time_before(jiffies, c->wb_copied_at + VMC_WB_FLUSH_WAIT))
		return;
	bio = bio_alloc_bioset(c->origin_dev->bdev, 0,
			       REQ_OP_WRITE | REQ_PREFLUSH, GFP_NOIO, &c->bs);
	bio->bi_end_io = flush_endio;
	bio->bi_private = c;
	list_splice_tail_init(&c->wb_copied_jobs, &c->wb_flushing_jobs);
	c->wb_copied = 0;
	c->wb_flush_state = VMC_WB_FLUSH_BUSY;
	/* covers every copy completed so far */
	submit_bio(bio);
}

static bool wb_idle(struct vmcache *c)
{
	return !c->wb_copying && !c->wb_copied &&
	       c->wb_flush_state == VMC_WB_FLUSH_IDLE;
}

static void wb_work(struct work_struct *ws)
{
	struct vmcache *c = container_of(to_delayed_work(ws), struct vmcache,
					 wb_work);
	bool stopping = READ_ONCE(c->wb_stopping), aged_only, urgent, sync;
	unsigned long next = VMC_WB_TICK;
	u32 want;

	reap(c);
	flush_stage(c, stopping);
	if (c->wb_backoff && !time_before(jiffies, c->wb_retry_at))
		c->wb_backoff = false;
	/* runs with failed metadata too: the origin still gets the data */
	if (!stopping && !c->wb_backoff) {
		want = window(c, &aged_only, &urgent, &sync, &next);
		if (want > c->wb_copying &&
		    issue(c, want - c->wb_copying, aged_only, sync) == 0 &&
		    !c->wb_copying)
			next = max_t(unsigned long, next, VMC_WB_TICK);
		/* nothing more to copy: the last copies need their flush */
		flush_stage(c, urgent);
	} else if (!stopping) {
		next = c->wb_retry_at - jiffies;
	}
	/* copies waiting for a flush: look again when it is due */
	if (c->wb_copied && c->wb_flush_state == VMC_WB_FLUSH_IDLE &&
	    time_after(jiffies + next, c->wb_copied_at + VMC_WB_FLUSH_WAIT))
		next = max_t(long, c->wb_copied_at + VMC_WB_FLUSH_WAIT - jiffies,
			     1);
	if (wb_idle(c)) {
		pool_drain(c);
		check_drained(c);
		if (stopping) {
			WRITE_ONCE(c->wb_busy, false);
			wake_up_var(&c->wb_busy);
			return;
		}
	}
	/* completions kick us; the timer is for the rate and the ages */
	if (!stopping)
		queue_delayed_work(c->bg_wq, &c->wb_work, next);
}

int vmc_wb_create(struct vmcache *c)
{
	INIT_DELAYED_WORK(&c->wb_work, wb_work);
	spin_lock_init(&c->wb_lock);
	INIT_LIST_HEAD(&c->wb_done);
	INIT_LIST_HEAD(&c->wb_copied_jobs);
	INIT_LIST_HEAD(&c->wb_flushing_jobs);
	INIT_LIST_HEAD(&c->wb_pool);
	c->wb_stopping = true;
	c->wb_picks = vmalloc(array_size(VMC_WB_MAX_ITEMS,
					 sizeof(*c->wb_picks)));
	if (!c->wb_picks)
		return -ENOMEM;
	/* its own mempools: metadata I/O never waits behind copies */
	c->wb_io_client = dm_io_client_create();
	if (IS_ERR(c->wb_io_client)) {
		int r = PTR_ERR(c->wb_io_client);

		c->wb_io_client = NULL;
		return r;
	}
	return 0;
}

void vmc_wb_stop(struct vmcache *c)
{
	WRITE_ONCE(c->wb_stopping, true);
	cancel_delayed_work_sync(&c->wb_work);
	/*
	 * The worker finishes what is in flight (completions kick it) and
	 * clears wb_busy once nothing is left.
	 */
	WRITE_ONCE(c->wb_busy, true);
	kick_now(c);
	wait_var_event(&c->wb_busy, !READ_ONCE(c->wb_busy));
	cancel_delayed_work_sync(&c->wb_work);
}

void vmc_wb_start(struct vmcache *c)
{
	WRITE_ONCE(c->wb_stopping, false);
	vmc_wb_kick(c);
}

void vmc_wb_destroy(struct vmcache *c)
{
	if (c->wb_io_client)
		dm_io_client_destroy(c->wb_io_client);
	c->wb_io_client = NULL;
	/* vmc_wb_stop() leaves the pool empty; wb_picks: it was initialised */
	if (c->wb_picks)
		pool_drain(c);
	vfree(c->wb_picks);
	c->wb_picks = NULL;
}
