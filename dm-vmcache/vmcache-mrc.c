// SPDX-License-Identifier: GPL-2.0
/*
 * dm-vmcache: miss-ratio curve estimation (Documentation/vmcache.rst,
 * "Hit ratio at other cache sizes").
 *
 * Sampling (fixed-size SHARDS): an origin block is sampled when the top 32
 * bits of a 64-bit bijective hash of its number are at most 'limit'.  The
 * limit starts at U32_MAX (every block) and falls each time more than
 * VMC_MRC_SAMPLES blocks would be tracked: the block of the largest hash
 * is dropped and the limit set just below its hash.  The sampling rate is
 * (limit + 1) / 2^32.
 *
 * Reuse distance: each sampled access gets a stamp (a counter of sampled
 * accesses); a Fenwick tree over the stamps holds a 1 at the latest stamp
 * of each tracked block, so the number of distinct sampled blocks touched
 * since a block's previous access is the count of ones after its stamp:
 * O(log n).  When the stamps run out (VMC_MRC_SLOTS, twice the tracked
 * blocks), the live ones are renumbered in order (compaction: O(slots),
 * at most once per VMC_MRC_SAMPLES accesses).
 *
 * Histogram: a read's distance, divided by the sampling rate, is in cache
 * blocks; bucket i counts distances d with i <= 16 d / cache_blocks < i + 1,
 * the last bucket distances of 8x the cache or more and first accesses.
 * Each read adds its weight, 2^16 / rate, so that counts taken at
 * different rates add up (in 1/65536 of an access).  An LRU cache of
 * k/16 of this one's size hits the reads of the first k buckets.
 *
 * Every read is also counted exactly (per CPU, no lock).  As in SHARDS_adj,
 * the difference between that count and the weighted count of the sampled
 * reads is added to the shortest distances: a hot block that happens to be
 * sampled (or not) would otherwise tilt a skewed workload's estimate.
 */
#include <linux/hash.h>
#include <linux/kernel.h>
#include <linux/math64.h>
#include <linux/mm.h>
#include <linux/percpu.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include "vmcache-mrc.h"

#define VMC_MRC_SLOTS	(2 * VMC_MRC_SAMPLES)	/* stamps between compactions */
#define VMC_MRC_NIL	U16_MAX
#define VMC_MRC_NEVER	VMC_MRC_POINTS		/* bucket: beyond the curve */
#define VMC_MRC_WSHIFT	16			/* weight of a read at rate 1 */

static_assert(VMC_MRC_SLOTS < VMC_MRC_NIL, "u16 indexes");
static_assert((VMC_MRC_SAMPLES & (VMC_MRC_SAMPLES - 1)) == 0,
	      "hash heads are masked");

struct vmc_mrc_entry {
	u64 hash;		/* of the origin block: unique (a bijection) */
	u16 stamp;		/* latest access */
	u16 next;		/* hash chain */
	u16 heap_pos;		/* in the max-heap of hashes */
	u16 pad;
};

static_assert(sizeof(struct vmc_mrc_entry) == 16, "16-byte entries");

struct vmc_mrc {
	spinlock_t lock;	/* everything below; a leaf lock */
	bool on;		/* read without the lock to skip quickly */
	u32 limit;		/* sample hashes whose top half is <= limit */
	u64 weight;		/* 2^16 / sampling rate */
	u32 cache_blocks;
	u32 nr;			/* blocks tracked */
	u32 clock;		/* next stamp */
	u64 hist[VMC_MRC_POINTS + 1];
	u64 __percpu *reads;	/* every read counted, sampled or not */
	u16 head[VMC_MRC_SAMPLES];
	u16 heap[VMC_MRC_SAMPLES];	/* entries, largest hash first */
	u16 slot[VMC_MRC_SLOTS];	/* stamp -> entry */
	u16 fen[VMC_MRC_SLOTS + 1];	/* Fenwick tree, 1-based */
	struct vmc_mrc_entry e[VMC_MRC_SAMPLES];
};

/* a bijection on 64 bits: distinct blocks never share a hash */
static u64 mix64(u64 x)
{
	x *= GOLDEN_RATIO_64;
	x ^= x >> 31;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 29;
	return x;
}

/* ---- Fenwick tree over stamps ---- */

static void fen_add(struct vmc_mrc *m, unsigned int stamp, int v)
{
	unsigned int i;

	for (i = stamp + 1; i <= VMC_MRC_SLOTS; i += i & -i)
		m->fen[i] += v;
}

/* ones at stamps 0 .. stamp */
static unsigned int fen_prefix(struct vmc_mrc *m, unsigned int stamp)
{
	unsigned int i, sum = 0;

	for (i = stamp + 1; i; i -= i & -i)
		sum += m->fen[i];
	return sum;
}

/* renumber the live stamps 0 .. nr - 1, in order */
static void compact(struct vmc_mrc *m)
{
	unsigned int s, n = 0, i;

	for (s = 0; s < m->clock; s++) {
		u16 idx = m->slot[s];

		if (idx == VMC_MRC_NIL)
			continue;
		m->slot[n] = idx;
		m->e[idx].stamp = n;
		n++;
	}
	for (s = n; s < VMC_MRC_SLOTS; s++)
		m->slot[s] = VMC_MRC_NIL;
	/* ones at 1-based positions 1..n: node i covers (i - lowbit, i] */
	for (i = 1; i <= VMC_MRC_SLOTS; i++)
		m->fen[i] = min(i, n) - min(i - (i & -i), n);
	m->clock = n;
}

static void stamp_new(struct vmc_mrc *m, u16 idx)
{
	if (m->clock == VMC_MRC_SLOTS)
		compact(m);
	m->e[idx].stamp = m->clock;
	m->slot[m->clock] = idx;
	fen_add(m, m->clock, 1);
	m->clock++;
}

static void stamp_drop(struct vmc_mrc *m, u16 idx)
{
	unsigned int s = m->e[idx].stamp;

	fen_add(m, s, -1);
	m->slot[s] = VMC_MRC_NIL;
}

/* ---- max-heap of hashes: which block to drop when full ---- */

static void heap_set(struct vmc_mrc *m, unsigned int pos, u16 idx)
{
	m->heap[pos] = idx;
	m->e[idx].heap_pos = pos;
}

static void heap_up(struct vmc_mrc *m, unsigned int pos)
{
	u16 idx = m->heap[pos];

	while (pos) {
		unsigned int up = (pos - 1) / 2;

		if (m->e[m->heap[up]].hash >= m->e[idx].hash)
			break;
		heap_set(m, pos, m->heap[up]);
		pos = up;
	}
	heap_set(m, pos, idx);
}

static void heap_down(struct vmc_mrc *m, unsigned int pos)
{
	u16 idx = m->heap[pos];

	for (;;) {
		unsigned int c = 2 * pos + 1;

		if (c >= m->nr)
			break;
		if (c + 1 < m->nr &&
		    m->e[m->heap[c + 1]].hash > m->e[m->heap[c]].hash)
			c++;
		if (m->e[m->heap[c]].hash <= m->e[idx].hash)
			break;
		heap_set(m, pos, m->heap[c]);
		pos = c;
	}
	heap_set(m, pos, idx);
}

/* ---- the tracked blocks ---- */

static u16 *chain_of(struct vmc_mrc *m, u64 hash)
{
	return &m->head[hash & (VMC_MRC_SAMPLES - 1)];
}

static u16 lookup(struct vmc_mrc *m, u64 hash)
{
	u16 idx = *chain_of(m, hash);

	while (idx != VMC_MRC_NIL && m->e[idx].hash != hash)
		idx = m->e[idx].next;
	return idx;
}

/* the largest limit that leaves a block of this hash out */
static u32 limit_below(u64 hash)
{
	return hash >> 32 ? (u32)(hash >> 32) - 1 : 0;
}

static void set_limit(struct vmc_mrc *m, u32 limit)
{
	WRITE_ONCE(m->limit, limit);
	m->weight = div64_u64(1ULL << (32 + VMC_MRC_WSHIFT), (u64)limit + 1);
}

/* drop the tracked block of the largest hash; its slot is reused */
static u16 drop_top(struct vmc_mrc *m)
{
	u16 idx = m->heap[0], *p;

	for (p = chain_of(m, m->e[idx].hash); *p != idx; p = &m->e[*p].next)
		;
	*p = m->e[idx].next;
	stamp_drop(m, idx);
	m->nr--;
	if (m->nr) {
		heap_set(m, 0, m->heap[m->nr]);
		heap_down(m, 0);
	}
	return idx;
}

static void insert(struct vmc_mrc *m, u64 hash)
{
	u16 idx, *head;

	if (m->nr == VMC_MRC_SAMPLES) {
		u64 top = m->e[m->heap[0]].hash;

		if (hash > top) {
			/* this block is the one to leave out */
			set_limit(m, limit_below(hash));
			return;
		}
		idx = drop_top(m);
		set_limit(m, limit_below(top));
	} else {
		idx = m->nr;
	}
	head = chain_of(m, hash);
	m->e[idx].hash = hash;
	m->e[idx].next = *head;
	*head = idx;
	stamp_new(m, idx);
	heap_set(m, m->nr, idx);
	m->nr++;
	heap_up(m, m->nr - 1);
}

/* a read at distance d (distinct sampled blocks since its last access) */
static void count_read(struct vmc_mrc *m, u32 d)
{
	u64 blocks = div64_u64((u64)d << 32, (u64)m->limit + 1);
	u64 b = div64_u64(blocks * VMC_MRC_STEPS, m->cache_blocks);

	m->hist[min_t(u64, b, VMC_MRC_NEVER)] += m->weight;
}

static void zero_reads(struct vmc_mrc *m)
{
	int cpu;

	for_each_possible_cpu(cpu)
		memset(per_cpu_ptr(m->reads, cpu), 0, sizeof(u64));
}

static void forget(struct vmc_mrc *m)
{
	unsigned int i;

	zero_reads(m);
	m->nr = 0;
	m->clock = 0;
	memset(m->hist, 0, sizeof(m->hist));
	memset(m->fen, 0, sizeof(m->fen));
	for (i = 0; i < VMC_MRC_SAMPLES; i++)
		m->head[i] = VMC_MRC_NIL;
	for (i = 0; i < VMC_MRC_SLOTS; i++)
		m->slot[i] = VMC_MRC_NIL;
	set_limit(m, U32_MAX);
}

void vmc_mrc_access(struct vmc_mrc *m, u64 oblock, bool is_write,
		    bool bypass)
{
	u64 hash = mix64(oblock);
	unsigned long flags;
	u16 idx;

	if (!READ_ONCE(m->on))
		return;
	if (!is_write)
		this_cpu_inc(*m->reads);
	/* unsampled: a hash, a compare and the count above, no lock */
	if ((u32)(hash >> 32) > READ_ONCE(m->limit))
		return;
	spin_lock_irqsave(&m->lock, flags);
	if (!m->on || (u32)(hash >> 32) > m->limit)
		goto out;
	idx = lookup(m, hash);
	if (idx != VMC_MRC_NIL) {
		if (!is_write)
			count_read(m, m->nr - fen_prefix(m, m->e[idx].stamp));
		stamp_drop(m, idx);
		stamp_new(m, idx);
	} else {
		if (!is_write)
			m->hist[VMC_MRC_NEVER] += m->weight;
		if (!bypass)
			insert(m, hash);
	}
out:
	spin_unlock_irqrestore(&m->lock, flags);
}

void vmc_mrc_bypassed(struct vmc_mrc *m, u64 blocks)
{
	unsigned long flags;

	if (!READ_ONCE(m->on))
		return;
	this_cpu_add(*m->reads, blocks);
	spin_lock_irqsave(&m->lock, flags);
	if (m->on)
		m->hist[VMC_MRC_NEVER] += blocks << VMC_MRC_WSHIFT;
	spin_unlock_irqrestore(&m->lock, flags);
}

void vmc_mrc_run(struct vmc_mrc *m, u64 first, u64 n, bool is_write,
		 bool bypass)
{
	u64 b;

	for (b = first; b < first + n; b++)
		vmc_mrc_access(m, b, is_write, bypass);
}

void vmc_mrc_enable(struct vmc_mrc *m, bool on)
{
	unsigned long flags;

	spin_lock_irqsave(&m->lock, flags);
	if (on != m->on)
		forget(m);
	WRITE_ONCE(m->on, on);
	spin_unlock_irqrestore(&m->lock, flags);
}

void vmc_mrc_reset(struct vmc_mrc *m)
{
	unsigned long flags;

	spin_lock_irqsave(&m->lock, flags);
	zero_reads(m);
	memset(m->hist, 0, sizeof(m->hist));
	spin_unlock_irqrestore(&m->lock, flags);
}

/* per mille of part in total, rounded; 0 when total is */
static unsigned int permille(u64 part, u64 total)
{
	while (total >> 50) {
		part >>= 1;
		total >>= 1;
	}
	return total ? div64_u64(part * 1000 + total / 2, total) : 0;
}

/*
 * Reads an LRU cache would hit at every point, adjusted to the exact read
 * count (which is returned), all in 1/65536 of a read
 */
static u64 snapshot(struct vmc_mrc *m, u64 *cum, bool *on, u32 *limit)
{
	unsigned long flags;
	u64 sum = 0, exact = 0;
	unsigned int i;
	int cpu;

	spin_lock_irqsave(&m->lock, flags);
	for_each_possible_cpu(cpu)
		exact += *per_cpu_ptr(m->reads, cpu);
	for (i = 0; i < VMC_MRC_POINTS; i++) {
		sum += m->hist[i];
		cum[i] = sum;
	}
	sum += m->hist[VMC_MRC_NEVER];
	*on = m->on;
	*limit = m->limit;
	spin_unlock_irqrestore(&m->lock, flags);
	exact <<= VMC_MRC_WSHIFT;
	for (i = 0; i < VMC_MRC_POINTS; i++) {
		if (exact >= sum)
			cum[i] = min(cum[i] + (exact - sum), exact);
		else
			cum[i] -= min(cum[i], sum - exact);
	}
	return exact;
}

unsigned int vmc_mrc_status(struct vmc_mrc *m, char *buf, size_t len,
			    const char *sep)
{
	static const char * const x[] = { "0_5", "1", "2", "4" };
	u64 cum[VMC_MRC_POINTS], total;
	unsigned int sz, i;
	u32 limit;
	bool on;

	total = snapshot(m, cum, &on, &limit);
	sz = scnprintf(buf, len, "%smrc=%s%smrc_reads=%llu%smrc_sample_ppm=%llu",
		       sep, on ? "on" : "off", sep, total >> VMC_MRC_WSHIFT,
		       sep, (((u64)limit + 1) * 1000000) >> 32);
	for (i = 0; i < ARRAY_SIZE(x); i++)
		sz += scnprintf(buf + sz, len - sz, "%sest_hit_%sx=%u", sep,
				x[i], permille(cum[(VMC_MRC_STEPS << i) / 2 - 1],
					       total));
	return sz;
}

unsigned int vmc_mrc_curve(struct vmc_mrc *m, char *buf, size_t len)
{
	u64 cum[VMC_MRC_POINTS], total;
	unsigned int sz = 0, i;
	u32 limit;
	bool on;

	total = snapshot(m, cum, &on, &limit);
	for (i = 0; i < VMC_MRC_POINTS; i++)
		sz += scnprintf(buf + sz, len - sz, "%s%u", i ? " " : "",
				permille(cum[i], total));
	sz += scnprintf(buf + sz, len - sz, "\n");
	return sz;
}

struct vmc_mrc *vmc_mrc_create(u32 cache_blocks)
{
	struct vmc_mrc *m = kvzalloc(sizeof(*m), GFP_KERNEL);

	if (!m)
		return NULL;
	m->reads = alloc_percpu(u64);
	if (!m->reads) {
		kvfree(m);
		return NULL;
	}
	spin_lock_init(&m->lock);
	m->cache_blocks = max(cache_blocks, 1u);
	forget(m);
	return m;
}

void vmc_mrc_destroy(struct vmc_mrc *m)
{
	if (!m)
		return;
	free_percpu(m->reads);
	kvfree(m);
}
