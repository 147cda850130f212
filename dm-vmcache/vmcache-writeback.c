// SPDX-License-Identifier: GPL-2.0
/*
 * dm-vmcache background writeback.
 *
 * One batch at a time: pick dirty blocks oldest first, sort them by origin
 * offset, merge neighbours into single copies, copy cache -> origin with
 * dm-kcopyd, flush the origin, and only then mark the blocks clean (a block
 * written meanwhile stays dirty).  The batch size is the rate control:
 *
 *   full speed (max_inflight)       a flush/drain was asked for, the mode
 *                                    is not writeback, the cache is degraded
 *                                    or dirty >= writeback_high; also when
 *                                    there is work (below) and no foreground
 *                                    I/O for a second;
 *   proportional                     between writeback_low and _high the
 *                                    batch grows from the floor rate to
 *                                    full speed with the dirty level;
 *   floor (writeback_floor KiB/s)    blocks older than max_dirty_age, and the
 *                                    minimum under any foreground load, so
 *                                    dirty data always drains;
 *   nothing                          below writeback_low with nothing aged.
 *
 * When the origin's per-block copy latency climbs to four times the best
 * seen, non-urgent batches are halved (a throttled host disk).  Origin
 * errors keep blocks dirty and back off exponentially; after
 * writeback_retries failed batches in a row the cache reports degraded.
 */
#include <linux/blkdev.h>
#include <linux/jiffies.h>
#include <linux/sort.h>
#include <linux/vmalloc.h>
#include "vmcache-writeback.h"
#include "vmcache-policy.h"
#include "vmcache-io.h"

#define VMC_THROTTLE_DESC \
	"Percentage of time the writeback copier may do I/O (default 100)"
DECLARE_DM_KCOPYD_THROTTLE_WITH_MODULE_PARM(vmcache_writeback_throttle,
					    VMC_THROTTLE_DESC);

#define VMC_WB_MAX_ITEMS	1024
#define VMC_WB_MAX_EXTENTS	(VMC_WB_MAX_ITEMS * VMC_SUBBLOCKS / 2)
#define VMC_WB_TICK		(HZ / 10)
#define VMC_WB_MAX_BACKOFF	(30 * HZ)

struct vmc_wb_extent {
	struct vmcache *c;
	struct dm_io_region from, to;
	u32 first, last;	/* items covered */
	u8 mask;		/* sub-blocks of item first (if only one) */
	bool read_err, write_err;
	u32 done_us;		/* vmc_now_us() at completion */
};

void vmc_wb_kick(struct vmcache *c)
{
	if (!READ_ONCE(c->wb_stopping))
		mod_delayed_work(c->wq, &c->wb_work, 0);
}

static void requeue(struct vmcache *c, unsigned long delay)
{
	if (!READ_ONCE(c->wb_stopping))
		queue_delayed_work(c->wq, &c->wb_work, delay);
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
		aged = (u16)(vmc_now_secs(c) - c->blocks[head].dirtied) >=
		       max_age;
	spin_unlock_irq(&c->lock);
	return aged;
}

/* blocks to write back now and when to look again */
static u32 budget(struct vmcache *c, bool *aged_only, unsigned long *next)
{
	u32 full = c->tun[VMC_T_WB_INFLIGHT];
	u32 low = c->tun[VMC_T_WB_LOW], high = c->tun[VMC_T_WB_HIGH];
	u32 floor = div_u64((u64)c->tun[VMC_T_WB_FLOOR] << 10,
			    c->tun[VMC_T_BLOCK_SIZE] * (HZ / VMC_WB_TICK));
	u32 pct = div_u64((u64)READ_ONCE(c->nr_dirty) * 100, c->nr_blocks);
	bool idle = time_after(jiffies, READ_ONCE(c->last_io) + HZ);
	bool above = pct > low;
	u32 n;

	*aged_only = false;
	*next = VMC_WB_TICK;
	if (!READ_ONCE(c->nr_dirty)) {
		*next = HZ;
		return 0;
	}
	if (c->flush_active || c->degraded || pct >= high ||
	    c->tun[VMC_T_MODE] != VMC_MODE_WRITEBACK) {
		*next = 0;
		return full;
	}
	if (!above && !oldest_aged(c)) {
		*next = HZ;
		return 0;
	}
	*aged_only = !above;
	if (idle) {
		*next = 0;
		return full;
	}
	floor = clamp(floor, 1u, full);
	n = floor;
	if (above && high > low)
		n += div_u64((u64)(full - floor) * (pct - low), high - low);
	/* the origin is slowing down: it is busy, go easier */
	if (c->wb_lat_min && c->wb_lat_avg > 4 * c->wb_lat_min)
		n = max(n / 2, 1u);
	return min(n, full);
}

static u32 select_blocks(struct vmcache *c, u32 want, bool aged_only)
{
	u16 now = vmc_now_secs(c), max_age = c->tun[VMC_T_MAX_AGE];
	u32 idx, n = 0, scanned = 0;

	spin_lock_irq(&c->lock);
	idx = c->lists[VMC_LIST_DIRTY].head;
	while (idx != VMC_NIL && n < want && scanned++ < 4 * want + 64) {
		struct vmc_block *b = &c->blocks[idx];

		/* the list is in dirtying order: the rest is younger */
		if (aged_only && (u16)(now - b->dirtied) < max_age)
			break;
		if (!b->writers && !(b->flags & VMC_B_WB)) {
			b->flags |= VMC_B_WB;
			b->holders++;
			c->wb_items[n].cblock = idx;
			c->wb_items[n].mask = b->dirty;
			c->wb_items[n].err = false;
			c->wb_items[n].lost = 0;
			c->wb_items[n].retry = false;
			c->wb_items[n].lat_us = 0;
			n++;
		}
		idx = b->next;
	}
	spin_unlock_irq(&c->lock);
	return n;
}

static int cmp_items(const void *a, const void *b, const void *priv)
{
	const struct vmcache *c = priv;
	u64 x = c->blocks[((const struct vmc_wb_item *)a)->cblock].oblock;
	u64 y = c->blocks[((const struct vmc_wb_item *)b)->cblock].oblock;

	return x < y ? -1 : x > y;
}

static void copy_done(int read_err, unsigned long write_err, void *context)
{
	struct vmc_wb_extent *e = context;
	struct vmcache *c = e->c;

	e->read_err = read_err;
	e->write_err = !!write_err;
	e->done_us = vmc_now_us();
	atomic_set(&c->origin_unflushed, 1);
	if (atomic_dec_and_test(&c->wb_pending))
		queue_work(c->wq, &c->wb_done_work);
}

/*
 * Build merged extents for the batch; returns how many.  After a merged
 * copy failed to read, the next batch copies every block on its own so
 * that a bad block condemns no neighbour.
 */
static u32 build_extents(struct vmcache *c, u32 n, bool merge)
{
	u32 i, ne = 0;

	for (i = 0; i < n; i++) {
		struct vmc_wb_item *it = &c->wb_items[i];
		u64 ob = c->blocks[it->cblock].oblock;
		unsigned long mask = it->mask;
		unsigned int s = 0, e;

		while ((s = find_next_bit(&mask, VMC_SUBBLOCKS, s)) <
		       VMC_SUBBLOCKS) {
			sector_t cs, os, len;
			struct vmc_wb_extent *x;

			e = find_next_zero_bit(&mask, VMC_SUBBLOCKS, s);
			cs = vmc_cblock_sector(c, it->cblock) +
			     ((sector_t)s << c->sub_shift);
			os = (ob << c->block_shift) +
			     ((sector_t)s << c->sub_shift);
			len = (sector_t)(e - s) << c->sub_shift;
			x = ne ? &c->wb_ext[ne - 1] : NULL;
			if (x && (merge || x->first == i) &&
			    x->from.sector + x->from.count == cs &&
			    x->to.sector + x->to.count == os) {
				x->from.count += len;
				x->to.count += len;
				x->mask |= GENMASK(e - 1, s);
				x->last = i;
			} else {
				x = &c->wb_ext[ne++];
				x->c = c;
				x->from.bdev = c->cache_dev->bdev;
				x->from.sector = cs;
				x->from.count = len;
				x->to.bdev = c->origin_dev->bdev;
				x->to.sector = os;
				x->to.count = len;
				x->first = i;
				x->last = i;
				x->mask = GENMASK(e - 1, s);
				x->read_err = false;
				x->write_err = false;
			}
			s = e;
		}
	}
	return ne;
}

static void wb_work(struct work_struct *ws)
{
	struct vmcache *c = container_of(to_delayed_work(ws), struct vmcache,
					 wb_work);
	unsigned long next;
	bool aged_only;
	u32 want, n, i;

	/* runs with failed metadata too: the origin still gets the data */
	if (READ_ONCE(c->wb_stopping) || c->wb_running)
		return;
	want = budget(c, &aged_only, &next);
	if (!want) {
		check_drained(c);
		requeue(c, next);
		return;
	}
	n = select_blocks(c, want, aged_only);
	if (!n) {
		requeue(c, max_t(unsigned long, next, VMC_WB_TICK));
		return;
	}
	if (c->tun[VMC_T_WB_SORT])
		sort_r(c->wb_items, n, sizeof(*c->wb_items), cmp_items, NULL,
		       c);
	c->wb_nr = n;
	c->wb_ext_nr = build_extents(c, n, !c->wb_nomerge);
	c->wb_nomerge = false;
	c->wb_next = next;
	c->wb_start = jiffies;
	c->wb_start_us = vmc_now_us();
	WRITE_ONCE(c->wb_running, true);
	atomic_set(&c->wb_inflight_blocks, n);
	atomic_set(&c->wb_pending, c->wb_ext_nr + 1);
	for (i = 0; i < c->wb_ext_nr; i++)
		dm_kcopyd_copy(c->kcopyd, &c->wb_ext[i].from, 1,
			       &c->wb_ext[i].to, 0, copy_done, &c->wb_ext[i]);
	/* drop the reference that kept the batch open while issuing */
	if (atomic_dec_and_test(&c->wb_pending))
		queue_work(c->wq, &c->wb_done_work);
}

static void note_latency(struct vmcache *c, u32 n)
{
	u32 per_block = jiffies_to_usecs(jiffies - c->wb_start) / n;

	c->wb_lat_avg = c->wb_lat_avg ? (c->wb_lat_avg * 7 + per_block) / 8 :
					per_block;
	if (!c->wb_lat_min || per_block < c->wb_lat_min)
		c->wb_lat_min = per_block;
}

static void finish_item(struct vmcache *c, struct vmc_wb_item *it)
{
	struct vmc_block *b = &c->blocks[it->cblock];
	bool redirty = b->flags & VMC_B_REDIRTY;

	b->flags &= ~(VMC_B_WB | VMC_B_REDIRTY);
	b->holders--;
	if (it->err || it->retry)
		return;
	if (redirty) {
		/* rewritten meanwhile: still dirty, now the youngest */
		b->dirtied = vmc_now_secs(c);
		vmc_list_move(c, it->cblock, VMC_LIST_DIRTY, true);
		return;
	}
	if (it->lost) {
		/* unreadable on the cache: the origin keeps its older copy */
		DMERR_LIMIT("%s: data loss: cannot read dirty origin block %llu from the cache",
			    c->name, (unsigned long long)b->oblock);
		vmc_stat_inc(c, VMC_S_DATA_LOSS);
		vmc_policy_clear_dirty(c, it->cblock, it->lost);
		vmc_policy_set_valid(c, it->cblock, b->valid & ~it->lost);
	}
	vmc_policy_clear_dirty(c, it->cblock, it->mask);
	vmc_stat_inc(c, VMC_S_WB_DONE);
	vmc_lat_add(c, VMC_LAT_WRITEBACK, it->lat_us, 1);
}

static void wb_done_work(struct work_struct *ws)
{
	struct vmcache *c = container_of(ws, struct vmcache, wb_done_work);
	bool flush_failed = false, any_err = false;
	unsigned long delay = c->wb_next;
	u32 i, j;

	for (i = 0; i < c->wb_ext_nr; i++)
		any_err |= c->wb_ext[i].write_err;
	/* clean only once the origin copy is durable */
	atomic_set(&c->origin_unflushed, 0);
	if (blkdev_issue_flush(c->origin_dev->bdev)) {
		atomic_set(&c->origin_unflushed, 1);
		flush_failed = true;
	}
	note_latency(c, c->wb_nr);

	/* an item split over several extents fails if any of them did */
	for (i = 0; i < c->wb_ext_nr; i++) {
		struct vmc_wb_extent *e = &c->wb_ext[i];

		for (j = e->first; j <= e->last; j++) {
			struct vmc_wb_item *it = &c->wb_items[j];

			/* a block split over extents took until its last */
			it->lat_us = max(it->lat_us, e->done_us - c->wb_start_us);
			it->err |= e->write_err || flush_failed;
			if (!e->read_err || e->write_err)
				continue;
			if (j == e->first)
				vmc_note_cache_error(c);
			if (e->first != e->last) {
				/* which block failed?  Copy each alone */
				it->retry = true;
				c->wb_nomerge = true;
			} else {
				it->lost |= e->mask;
			}
		}
	}
	spin_lock_irq(&c->lock);
	for (i = 0; i < c->wb_nr; i++)
		finish_item(c, &c->wb_items[i]);
	spin_unlock_irq(&c->lock);
	if (c->wb_nomerge)
		delay = 0;

	if (any_err || flush_failed) {
		vmc_stat_inc(c, VMC_S_WB_ERRORS);
		vmc_stat_inc(c, VMC_S_ORIGIN_ERRORS);
		c->wb_fail_streak++;
		DMERR_LIMIT("%s: writeback failed (attempt %u), blocks stay dirty",
			    c->name, c->wb_fail_streak);
		if (c->wb_fail_streak == c->tun[VMC_T_WB_RETRIES]) {
			c->origin_failing = true;
			DMERR("%s: origin keeps failing writeback: degraded",
			      c->name);
			dm_table_event(c->ti->table);
		}
		delay = min_t(unsigned long,
			      VMC_WB_TICK << min(c->wb_fail_streak, 16u),
			      VMC_WB_MAX_BACKOFF);
	} else if (c->wb_fail_streak) {
		c->wb_fail_streak = 0;
		if (c->origin_failing) {
			c->origin_failing = false;
			DMINFO("%s: origin writeback recovered", c->name);
			dm_table_event(c->ti->table);
		}
	}

	atomic_set(&c->wb_inflight_blocks, 0);
	check_drained(c);
	WRITE_ONCE(c->wb_running, false);
	wake_up_var(&c->wb_running);
	requeue(c, delay);
}

int vmc_wb_create(struct vmcache *c)
{
	INIT_DELAYED_WORK(&c->wb_work, wb_work);
	INIT_WORK(&c->wb_done_work, wb_done_work);
	c->wb_stopping = true;
	c->wb_items = vmalloc(array_size(VMC_WB_MAX_ITEMS,
					 sizeof(*c->wb_items)));
	c->wb_ext = vmalloc(array_size(VMC_WB_MAX_EXTENTS,
				       sizeof(*c->wb_ext)));
	if (!c->wb_items || !c->wb_ext)
		return -ENOMEM;
	c->kcopyd = dm_kcopyd_client_create(&dm_kcopyd_throttle);
	if (IS_ERR(c->kcopyd)) {
		int r = PTR_ERR(c->kcopyd);

		c->kcopyd = NULL;
		return r;
	}
	return 0;
}

void vmc_wb_stop(struct vmcache *c)
{
	WRITE_ONCE(c->wb_stopping, true);
	cancel_delayed_work_sync(&c->wb_work);
	wait_var_event(&c->wb_running, !READ_ONCE(c->wb_running));
	cancel_delayed_work_sync(&c->wb_work);
}

void vmc_wb_start(struct vmcache *c)
{
	WRITE_ONCE(c->wb_stopping, false);
	vmc_wb_kick(c);
}

void vmc_wb_destroy(struct vmcache *c)
{
	if (c->kcopyd)
		dm_kcopyd_client_destroy(c->kcopyd);
	c->kcopyd = NULL;
	vfree(c->wb_items);
	vfree(c->wb_ext);
	c->wb_items = NULL;
	c->wb_ext = NULL;
}
