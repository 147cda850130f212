// SPDX-License-Identifier: GPL-2.0
/*
 * dm-vmcache policy.
 *
 * Blocks live on index-linked lists (32-bit links inside struct vmc_block,
 * no pointers) so the whole per-block cost stays at 32 bytes plus one hash
 * bucket.  Clean blocks sit on PROBATION (seen once) and PROTECTED (hit
 * again): a one-pass scan only churns PROBATION, so the hot set survives
 * (2q).  With the lru policy every clean block is on PROBATION.  Dirty
 * blocks are never eviction candidates; they sit on DIRTY in the order they
 * became dirty, which is the order writeback and max_dirty_age want, and
 * a dirty block hit while cached returns to PROTECTED when it is cleaned.
 */
#include <linux/hash.h>
#include <linux/jiffies.h>
#include <linux/log2.h>
#include <linux/vmalloc.h>
#include "vmcache-policy.h"

/* protected blocks may fill at most this share of the cache (2q) */
#define VMC_PROTECTED_PCT	75
/* victims looked at per allocation before giving up */
#define VMC_VICTIM_SCAN		32
/*
 * Evicted ahead of need, so allocation rarely waits for a commit: at least
 * this many, and a quarter of the reserve (each batch costs a commit).
 */
#define VMC_EVICT_BATCH		32
/* promotion counters cleared per miss (buckets >= nr_blocks: 2 suffice) */
#define VMC_PROMOTE_AGE_STEP	2
/* a stream not continued within this time is forgotten */
#define VMC_STREAM_TIMEOUT	(HZ * 2)

static inline struct vmc_block *blk(struct vmcache *c, u32 idx)
{
	return &c->blocks[idx];
}

/*
 * Multiplicative hashing mixes well only into the product's top bits: the
 * low bits of a 32-bit hash_64() put 16384 consecutive blocks into about
 * 7100 of 32768 buckets.  Every table here is indexed by the top bits.
 */
static u32 hash_of(struct vmcache *c, u64 oblock)
{
	return hash_64(oblock, c->hash_bits);
}

/* the hashed counters' slot of @oblock, and 4 more bits of it as a tag */
static u32 counter_slot(struct vmcache *c, u64 oblock, u8 *tag)
{
	u64 h = (oblock ^ 0x5bd1e995) * GOLDEN_RATIO_64;

	if (tag)
		*tag = (h >> (60 - c->hash_bits)) & 0xf;
	return h >> (64 - c->hash_bits);
}

static void list_unlink(struct vmcache *c, u32 idx)
{
	struct vmc_block *b = blk(c, idx);
	struct vmc_list *l = &c->lists[b->list];

	if (b->list == VMC_LIST_NONE)
		return;
	if (b->prev != VMC_NIL)
		blk(c, b->prev)->next = b->next;
	else
		l->head = b->next;
	if (b->next != VMC_NIL)
		blk(c, b->next)->prev = b->prev;
	else
		l->tail = b->prev;
	l->count--;
	b->prev = VMC_NIL;
	b->next = VMC_NIL;
	b->list = VMC_LIST_NONE;
}

void vmc_list_move(struct vmcache *c, u32 idx, enum vmc_list_id to, bool tail)
{
	struct vmc_block *b = blk(c, idx);
	struct vmc_list *l = &c->lists[to];

	list_unlink(c, idx);
	b->list = to;
	if (tail) {
		b->prev = l->tail;
		b->next = VMC_NIL;
		if (l->tail != VMC_NIL)
			blk(c, l->tail)->next = idx;
		else
			l->head = idx;
		l->tail = idx;
	} else {
		b->next = l->head;
		b->prev = VMC_NIL;
		if (l->head != VMC_NIL)
			blk(c, l->head)->prev = idx;
		else
			l->tail = idx;
		l->head = idx;
	}
	l->count++;
}

int vmc_policy_create(struct vmcache *c)
{
	u32 i, buckets;

	c->blocks = vzalloc(array_size(c->nr_blocks, sizeof(*c->blocks)));
	/* a power of two that fits in 32 bits: 2^31 buckets at most */
	buckets = c->nr_blocks > (1u << 31) ? 1u << 31 :
		  roundup_pow_of_two(max(c->nr_blocks, 2u));
	c->hash = vmalloc(array_size(buckets, sizeof(*c->hash)));
	c->promote_count = vzalloc(buckets);
	c->stream_stamp = vzalloc(buckets);
	if (!c->blocks || !c->hash || !c->promote_count || !c->stream_stamp)
		return -ENOMEM;
	c->stream_epoch = 1;
	c->stream_touches = 0;
	c->nr_dirty = 0;
	c->nr_mapped = 0;
	c->nr_valid_blocks = 0;
	c->promote_cursor = 0;
	c->hash_bits = ilog2(buckets);
	for (i = 0; i < buckets; i++)
		c->hash[i] = VMC_NIL;
	for (i = 0; i < VMC_NR_LISTS; i++) {
		c->lists[i].head = VMC_NIL;
		c->lists[i].tail = VMC_NIL;
		c->lists[i].count = 0;
	}
	for (i = 0; i < c->nr_blocks; i++) {
		c->blocks[i].hnext = VMC_NIL;
		c->blocks[i].list = VMC_LIST_NONE;
		vmc_list_move(c, i, VMC_LIST_FREE, true);
	}
	return 0;
}

void vmc_policy_destroy(struct vmcache *c)
{
	vfree(c->blocks);
	vfree(c->hash);
	vfree(c->promote_count);
	vfree(c->stream_stamp);
	c->blocks = NULL;
	c->hash = NULL;
	c->promote_count = NULL;
	c->stream_stamp = NULL;
}

void vmc_policy_adopt(struct vmcache *c, struct vmcache *from)
{
	vmc_policy_destroy(c);
	swap(c->blocks, from->blocks);
	swap(c->hash, from->hash);
	swap(c->promote_count, from->promote_count);
	swap(c->stream_stamp, from->stream_stamp);
	c->stream_epoch = from->stream_epoch;
	c->stream_touches = from->stream_touches;
	c->hash_bits = from->hash_bits;
	c->promote_cursor = from->promote_cursor;
	memcpy(c->lists, from->lists, sizeof(c->lists));
	c->nr_dirty = from->nr_dirty;
	c->nr_mapped = from->nr_mapped;
	c->nr_valid_blocks = from->nr_valid_blocks;
}

u32 vmc_lookup(struct vmcache *c, u64 oblock)
{
	u32 idx = c->hash[hash_of(c, oblock)];

	while (idx != VMC_NIL && blk(c, idx)->oblock != oblock)
		idx = blk(c, idx)->hnext;
	return idx;
}

static void hash_remove(struct vmcache *c, u32 idx)
{
	u32 *p = &c->hash[hash_of(c, blk(c, idx)->oblock)];

	while (*p != VMC_NIL && *p != idx)
		p = &blk(c, *p)->hnext;
	if (*p == idx)
		*p = blk(c, idx)->hnext;
	blk(c, idx)->hnext = VMC_NIL;
}

static void protect(struct vmcache *c, u32 idx)
{
	u32 cap = div_u64((u64)c->nr_blocks * VMC_PROTECTED_PCT, 100);

	vmc_list_move(c, idx, VMC_LIST_PROTECTED, false);
	/* overflow falls back to probation, where it can be evicted */
	while (c->lists[VMC_LIST_PROTECTED].count > cap)
		vmc_list_move(c, c->lists[VMC_LIST_PROTECTED].tail,
			      VMC_LIST_PROBATION, false);
}

/* a read or a write found @idx cached */
void vmc_policy_hit(struct vmcache *c, u32 idx)
{
	struct vmc_block *b = blk(c, idx);
	bool two_q = c->tun[VMC_T_POLICY] == VMC_POLICY_2Q;

	if (b->list == VMC_LIST_PROBATION && two_q)
		protect(c, idx);
	else if (b->list == VMC_LIST_PROBATION ||
		 b->list == VMC_LIST_PROTECTED)
		vmc_list_move(c, idx, b->list, false);
	else if (b->list == VMC_LIST_DIRTY && two_q)
		b->hot = 1;	/* DIRTY keeps write order: remember it */
}

void vmc_policy_unmap(struct vmcache *c, u32 idx)
{
	struct vmc_block *b = blk(c, idx);

	if (!(b->flags & VMC_B_MAPPED))
		return;
	hash_remove(c, idx);
	if (b->dirty)
		c->nr_dirty--;
	if (b->valid)
		c->nr_valid_blocks--;
	b->valid = 0;
	b->dirty = 0;
	b->flags &= ~(VMC_B_MAPPED | VMC_B_REDIRTY | VMC_B_NOCRC);
	c->nr_mapped--;
	vmc_list_move(c, idx, VMC_LIST_PENDING, true);
	vmc_mark_mpage(c, idx);
}

static bool evictable(struct vmc_block *b)
{
	return !b->dirty && !b->holders && !b->filling &&
	       !(b->flags & VMC_B_WB);
}

/* unmap up to @want idle clean blocks, coldest first */
static u32 evict(struct vmcache *c, u32 want)
{
	static const enum vmc_list_id order[] = {
		VMC_LIST_PROBATION, VMC_LIST_PROTECTED
	};
	u32 done = 0, i;

	for (i = 0; i < ARRAY_SIZE(order) && done < want; i++) {
		u32 idx = c->lists[order[i]].tail;
		u32 scanned = 0;

		while (idx != VMC_NIL && done < want &&
		       scanned++ < VMC_VICTIM_SCAN + want) {
			u32 prev = blk(c, idx)->prev;

			if (evictable(blk(c, idx))) {
				vmc_policy_unmap(c, idx);
				vmc_stat_inc(c, VMC_S_DEMOTIONS);
				done++;
			}
			idx = prev;
		}
	}
	return done;
}

static void map_block(struct vmcache *c, u32 idx, u64 oblock)
{
	struct vmc_block *b = blk(c, idx);
	u32 *bucket = &c->hash[hash_of(c, oblock)];

	b->oblock = oblock;
	b->valid = 0;
	b->dirty = 0;
	b->filling = 0;
	b->cancel = 0;
	b->ddirty = 0;		/* the commit that freed it says unmapped */
	b->flags = VMC_B_MAPPED;
	b->hot = 0;
	b->hnext = *bucket;
	*bucket = idx;
	c->nr_mapped++;
	vmc_list_move(c, idx, VMC_LIST_PROBATION, false);
}

void vmc_policy_load(struct vmcache *c, u32 idx, u64 oblock, u8 valid,
		     u8 dirty)
{
	map_block(c, idx, oblock);
	vmc_policy_set_valid(c, idx, valid);
	if (dirty)
		vmc_policy_set_dirty(c, idx, dirty);
	c->blocks[idx].ddirty = dirty;
}

void vmc_policy_set_valid(struct vmcache *c, u32 idx, u8 valid)
{
	struct vmc_block *b = blk(c, idx);

	if (b->valid == valid)
		return;
	if (!b->valid)
		c->nr_valid_blocks++;
	else if (!valid)
		c->nr_valid_blocks--;
	/* more valid clean data is lazy; a drop must reach the disk */
	if (b->valid & ~valid)
		vmc_mark_mpage(c, idx);
	else
		vmc_mark_mpage_lazy(c, idx);
	b->valid = valid;
}

u32 vmc_policy_alloc(struct vmcache *c, u64 oblock, bool *need_commit)
{
	u32 reserve = clamp_t(u32, c->nr_blocks / 64, 8, 1024);
	u32 idx;

	if (c->lists[VMC_LIST_FREE].count + c->lists[VMC_LIST_PENDING].count <
	    reserve && evict(c, max_t(u32, VMC_EVICT_BATCH, reserve / 4)))
		*need_commit = true;
	idx = c->lists[VMC_LIST_FREE].head;
	if (idx == VMC_NIL) {
		if (c->lists[VMC_LIST_PENDING].count)
			*need_commit = true;
		return VMC_NIL;
	}
	map_block(c, idx, oblock);
	return idx;
}

/*
 * @covered: the write relies on FLUX (vmcache.h), which keeps recovery
 * from trusting the clean mark until a commit has recorded the block
 * dirty: that commit may be a lazy one, a flush need not make it.
 */
static void set_dirty(struct vmcache *c, u32 idx, u8 mask, bool covered)
{
	struct vmc_block *b = blk(c, idx);

	if (WARN_ON_ONCE(!mask))
		return;
	if (!b->dirty)
		c->nr_dirty++;
	/*
	 * Dirty blocks are kept in order of last write: writeback takes the
	 * coldest first and leaves a block being rewritten alone (cleaning
	 * it would only have it copied again after the next write).
	 */
	b->dirtied = vmc_now_secs(c);
	/* protected before it was written: protected again once clean */
	if (b->list == VMC_LIST_PROTECTED)
		b->hot = 1;
	if (b->list != VMC_LIST_DIRTY || c->lists[VMC_LIST_DIRTY].tail != idx)
		vmc_list_move(c, idx, VMC_LIST_DIRTY, true);
	if ((b->dirty | mask) != b->dirty) {
		b->dirty |= mask;
		/* dirty again where the disk still says dirty: lazy */
		if ((mask & ~b->ddirty) && !covered)
			vmc_mark_mpage(c, idx);
		else
			vmc_mark_mpage_lazy(c, idx);
	}
	if (b->flags & VMC_B_WB)
		b->flags |= VMC_B_REDIRTY;
}

void vmc_policy_set_dirty(struct vmcache *c, u32 idx, u8 mask)
{
	set_dirty(c, idx, mask, false);
}

void vmc_policy_set_dirty_covered(struct vmcache *c, u32 idx, u8 mask)
{
	set_dirty(c, idx, mask, true);
}

void vmc_policy_clear_dirty(struct vmcache *c, u32 idx, u8 mask)
{
	struct vmc_block *b = blk(c, idx);

	if (!(b->dirty & mask))
		return;
	b->dirty &= ~mask;
	/* the disk saying dirty a while longer costs a second copy at most */
	vmc_mark_mpage_lazy(c, idx);
	if (b->dirty)
		return;
	/* clean again: its next dirty data is checksummed (data_crc) */
	b->flags &= ~VMC_B_NOCRC;
	c->nr_dirty--;
	/*
	 * A block hit while cached goes back to PROTECTED: on PROBATION
	 * the next scan would evict a hot set that writeback just cleaned.
	 */
	if (b->hot && c->tun[VMC_T_POLICY] == VMC_POLICY_2Q)
		protect(c, idx);
	else
		vmc_list_move(c, idx, VMC_LIST_PROBATION, false);
	b->hot = 0;
}

bool vmc_policy_should_promote(struct vmcache *c, u64 oblock)
{
	unsigned int need = c->tun[VMC_T_PROMOTE_AFTER], i;
	u8 *ctr;

	if (need <= 1)
		return true;
	/*
	 * Age the counters: each miss clears the next few, so every counter
	 * is forgotten about every 2 * nr_blocks misses, in O(1) per miss.
	 */
	for (i = 0; i < VMC_PROMOTE_AGE_STEP; i++) {
		c->promote_count[c->promote_cursor] = 0;
		c->promote_cursor = (c->promote_cursor + 1) &
				    (BIT(c->hash_bits) - 1);
	}
	ctr = &c->promote_count[counter_slot(c, oblock, NULL)];
	if (*ctr + 1u >= need) {
		*ctr = 0;
		return true;
	}
	(*ctr)++;
	return false;
}

/*
 * Stream touches are stamped with an epoch (1..15, in the high nibble)
 * that advances every nr_blocks / 4 touches, and 4 more bits of the
 * block's hash (the low nibble: a table sized for the cache aliases the
 * blocks of a larger scan).  A stamp at most 3 epochs old with the same
 * tag (about one cache's worth of touches) means seen.  No sweep:
 * nothing is forgotten early.
 */
#define VMC_STREAM_EPOCHS	4

bool vmc_policy_stream_seen(struct vmcache *c, u64 oblock)
{
	u8 tag, *stamp = &c->stream_stamp[counter_slot(c, oblock, &tag)];
	u8 epoch = *stamp >> 4;
	bool seen;

	if (++c->stream_touches >= max(c->nr_blocks / VMC_STREAM_EPOCHS, 1u)) {
		c->stream_touches = 0;
		c->stream_epoch = c->stream_epoch % 15 + 1;
	}
	seen = epoch && (*stamp & 0xf) == tag &&
	       (c->stream_epoch + 15 - epoch) % 15 < VMC_STREAM_EPOCHS;
	*stamp = c->stream_epoch << 4 | tag;
	return seen;
}

/*
 * The slot a new request takes: an expired one, else the one with the
 * fewest bytes (the oldest of those).  Least recently used alone let a
 * database's random requests (a hundred between two reads of a backup)
 * evict the backup's stream before it reached the cutoff, and every
 * backup read was then promoted.
 */
static bool weaker(struct vmc_stream *a, struct vmc_stream *b,
		   unsigned long now)
{
	bool a_live = time_before(now, a->last + VMC_STREAM_TIMEOUT);
	bool b_live = time_before(now, b->last + VMC_STREAM_TIMEOUT);

	if (a_live != b_live)
		return !a_live;
	if (a->bytes != b->bytes)
		return a->bytes < b->bytes;
	return time_before(a->last, b->last);
}

bool vmc_policy_sequential(struct vmcache *c, sector_t sector,
			   unsigned int bytes, bool update)
{
	u64 cutoff = (u64)c->tun[VMC_T_SEQ_CUTOFF] << 10;
	struct vmc_stream *s, *oldest = &c->streams[0];
	unsigned long now = jiffies;
	int i;

	if (!cutoff)
		return false;
	for (i = 0; i < VMC_STREAMS; i++) {
		s = &c->streams[i];
		if (s->next == sector && s->bytes &&
		    time_before(now, s->last + VMC_STREAM_TIMEOUT)) {
			if (!update)
				return s->bytes + bytes > cutoff;
			s->bytes += bytes;
			s->next = sector + (bytes >> SECTOR_SHIFT);
			s->last = now;
			return s->bytes > cutoff;
		}
		if (weaker(s, oldest, now))
			oldest = s;
	}
	if (!update)
		return false;
	oldest->next = sector + (bytes >> SECTOR_SHIFT);
	oldest->bytes = bytes;
	oldest->last = now;
	return false;
}

bool vmc_policy_switch_step(struct vmcache *c, u32 max)
{
	/* lru keeps one list: fold protected into probation, hottest first */
	if (c->tun[VMC_T_POLICY] != VMC_POLICY_LRU)
		return false;
	while (max-- && c->lists[VMC_LIST_PROTECTED].count)
		vmc_list_move(c, c->lists[VMC_LIST_PROTECTED].tail,
			      VMC_LIST_PROBATION, false);
	return c->lists[VMC_LIST_PROTECTED].count;
}

void vmc_policy_release_pending(struct vmcache *c, u32 n)
{
	while (n-- && c->lists[VMC_LIST_PENDING].count)
		vmc_list_move(c, c->lists[VMC_LIST_PENDING].head,
			      VMC_LIST_FREE, true);
}

u32 vmc_policy_invalidate_clean(struct vmcache *c, u32 first, u32 count)
{
	u32 i, n = 0;

	for (i = first; i < first + count && i < c->nr_blocks; i++) {
		struct vmc_block *b = blk(c, i);

		if ((b->flags & VMC_B_MAPPED) && evictable(b)) {
			vmc_policy_unmap(c, i);
			n++;
		}
	}
	return n;
}
