/* SPDX-License-Identifier: GPL-2.0 */
/*
 * dm-vmcache policy: the index (origin block -> cache block), the block
 * lists and every caching decision.  Pure in-memory bookkeeping: each
 * function runs in O(1) (bounded walks) with c->lock held and never sleeps.
 */
#ifndef DM_VMCACHE_POLICY_H
#define DM_VMCACHE_POLICY_H

#include "vmcache.h"

int vmc_policy_create(struct vmcache *c);
void vmc_policy_destroy(struct vmcache *c);

/*
 * Take over @from's block table (the table this one replaces, suspended
 * and idle); @from is left with none.
 */
void vmc_policy_adopt(struct vmcache *c, struct vmcache *from);

u32 vmc_lookup(struct vmcache *c, u64 oblock);
void vmc_list_move(struct vmcache *c, u32 idx, enum vmc_list_id to, bool tail);

/* a block found by vmc_lookup was used; keeps 2q/lru order */
void vmc_policy_hit(struct vmcache *c, u32 idx);

/*
 * Map @oblock to a free cache block; VMC_NIL when none is free.  Sets
 * *need_commit when blocks were evicted and wait for a commit to be reused.
 */
u32 vmc_policy_alloc(struct vmcache *c, u64 oblock, bool *need_commit);

/* forget a mapping; the block is reusable after the next commit */
void vmc_policy_unmap(struct vmcache *c, u32 idx);

/* dirty state changes keep the dirty list (oldest first) exact */
void vmc_policy_set_dirty(struct vmcache *c, u32 idx, u8 mask);
void vmc_policy_set_dirty_covered(struct vmcache *c, u32 idx, u8 mask);
void vmc_policy_clear_dirty(struct vmcache *c, u32 idx, u8 mask);

/* enough misses on @oblock to promote it? */
bool vmc_policy_should_promote(struct vmcache *c, u64 oblock);

/*
 * A bypassed stream touches @oblock (not cached): was it touched before,
 * recently (within about nr_blocks touches)?  Then a stream reading it
 * again is worth caching: a file written or read once, read again.
 */
bool vmc_policy_stream_seen(struct vmcache *c, u64 oblock);

/*
 * Does this I/O continue a stream longer than the sequential cutoff?
 * @update false only asks, without recording the I/O.
 */
bool vmc_policy_sequential(struct vmcache *c, sector_t sector,
			   unsigned int bytes, bool update);

/* set a block's valid mask, keeping counts and metadata in step */
void vmc_policy_set_valid(struct vmcache *c, u32 idx, u8 valid);

/* metadata load: cache block @idx holds @oblock */
void vmc_policy_load(struct vmcache *c, u32 idx, u64 oblock, u8 valid,
		     u8 dirty);

/* re-sort up to @max clean blocks after a policy switch; true: more to do */
bool vmc_policy_switch_step(struct vmcache *c, u32 max);

/* after a commit: the first @n pending blocks become free */
void vmc_policy_release_pending(struct vmcache *c, u32 n);

/* drop the clean, idle blocks among @count from @first; returns how many */
u32 vmc_policy_invalidate_clean(struct vmcache *c, u32 first, u32 count);

#endif /* DM_VMCACHE_POLICY_H */
