/* SPDX-License-Identifier: GPL-2.0 */
/*
 * dm-vmcache: state shared by the target, metadata, policy, writeback and
 * sysfs code.  One struct vmcache per table; one struct vmc_block per cache
 * block (32 bytes, checked below).
 */
#ifndef DM_VMCACHE_H
#define DM_VMCACHE_H

#include <linux/bio.h>
#include <linux/device-mapper.h>
#include <linux/kobject.h>
#include <linux/percpu.h>
#include <linux/sched/clock.h>
#include <linux/spinlock.h>
#include <linux/workqueue.h>
#include <linux/completion.h>
#include "vmcache_ondisk.h"

#define DM_MSG_PREFIX "vmcache"

#define VMC_NIL			U32_MAX
#define VMC_FULL_MASK		0xffu

/* lists a block can be on (vmc_block.list) */
enum vmc_list_id {
	VMC_LIST_NONE,
	VMC_LIST_FREE,		/* unmapped, reusable now */
	VMC_LIST_PENDING,	/* unmapped, reusable after the next commit */
	VMC_LIST_PROBATION,	/* clean, seen once (2q) or all (lru) */
	VMC_LIST_PROTECTED,	/* clean, hit again (2q only) */
	VMC_LIST_DIRTY,		/* dirty, oldest first */
	VMC_NR_LISTS
};

/* vmc_block.flags */
#define VMC_B_MAPPED	BIT(0)	/* in the hash table */
#define VMC_B_WB	BIT(1)	/* writeback in flight */
#define VMC_B_REDIRTY	BIT(2)	/* written while being written back */
#define VMC_B_ALONE	BIT(3)	/* a merged copy failed to read: copy alone */
#define VMC_B_NOCRC	BIT(4)	/* data_crc: dirty data without checksums */

struct vmc_block {
	u64 oblock;		/* origin block when mapped */
	u32 hnext;		/* hash chain */
	u32 prev, next;		/* list links */
	u8 valid;		/* sub-blocks holding data */
	u8 dirty;		/* sub-blocks newer than the origin */
	u8 filling;		/* sub-blocks with a cache write in flight */
	u8 cancel;		/* filling sub-blocks overwritten meanwhile */
	u16 holders;		/* bios and copies using this block */
	u16 writers;		/* writes to the cache copy in flight */
	u16 dirtied : 15;	/* seconds (mod 2^15) when it became dirty */
	u16 hot : 1;		/* dirty, and hit while cached: protect when clean */
	u8 ddirty;		/* sub-blocks the disk surely records dirty */
	u8 list : 3;		/* enum vmc_list_id */
	u8 flags : 5;		/* VMC_B_* */
};

static_assert(sizeof(struct vmc_block) == 32, "vmc_block must stay 32 bytes");

struct vmc_list {
	u32 head, tail, count;
};

enum vmc_policy {
	VMC_POLICY_2Q,
	VMC_POLICY_LRU,
};

enum vmc_md_state {
	VMC_MD_OK,
	VMC_MD_NEEDS_CHECK,	/* read-only: no new mappings */
	VMC_MD_FAIL,
};

/* tunables: one table (vmcache-target.c) drives ctr, message and sysfs */
enum vmc_tunable {
	VMC_T_BLOCK_SIZE,
	VMC_T_MODE,
	VMC_T_POLICY,
	VMC_T_PROMOTE_AFTER,
	VMC_T_SEQ_CUTOFF,
	VMC_T_WB_LOW,
	VMC_T_WB_HIGH,
	VMC_T_MAX_AGE,
	VMC_T_WB_INFLIGHT,
	VMC_T_WB_FLOOR,
	VMC_T_WB_SORT,
	VMC_T_WB_RETRIES,
	VMC_T_MRC,
	VMC_T_MUST_EXIST,
	VMC_T_DATA_CRC,
	VMC_NR_TUNABLES
};

struct vmc_tunable_desc {
	const char *name;
	unsigned int min, max;
	bool online;
	const char * const *names;	/* for enumerations, else NULL */
	const char *error;		/* what a bad value gets told */
};

extern const struct vmc_tunable_desc vmc_tunables[VMC_NR_TUNABLES];
extern unsigned int vmc_defaults[VMC_NR_TUNABLES];

/* statistics, per CPU; summed when read */
enum vmc_stat {
	VMC_S_READ_HITS,
	VMC_S_READ_MISSES,
	VMC_S_WRITE_HITS,
	VMC_S_WRITE_MISSES,
	VMC_S_BYPASSED,
	VMC_S_PROMOTIONS,
	VMC_S_DEMOTIONS,
	VMC_S_WB_DONE,
	VMC_S_WB_ERRORS,
	VMC_S_CACHE_ERRORS,
	VMC_S_ORIGIN_ERRORS,
	VMC_S_DATA_LOSS,
	VMC_S_COMMITS,
	VMC_S_CRC_ERRORS,
	VMC_NR_STATS
};

extern const char * const vmc_stat_names[VMC_NR_STATS];

/*
 * Latency histograms, per CPU like the counters: log2 buckets of
 * microseconds.  Bucket 0 counts up to 16 us, bucket i (1..20) more than
 * 16 << (i - 1) and up to 16 << i us, the last bucket more than 2^24 us
 * (16.8 s).  Updated on completion, which may run in hard IRQ context:
 * per-CPU adds only.
 */
enum vmc_lat_class {
	VMC_LAT_READ_HIT,	/* reads served from the cache */
	VMC_LAT_READ_MISS,	/* other reads (from the origin) */
	VMC_LAT_WRITE,		/* writes, whatever their route */
	VMC_LAT_WRITEBACK,	/* a block's writeback copy */
	VMC_NR_LAT,
	VMC_LAT_NONE = VMC_NR_LAT,	/* not measured (flush, discard) */
};

#define VMC_LAT_FIRST_SHIFT	4	/* bucket 0: up to 16 us */
#define VMC_LAT_BUCKETS		22

struct vmc_stats {
	u64 v[VMC_NR_STATS];
	u64 lat[VMC_NR_LAT][VMC_LAT_BUCKETS];
	u64 lat_sum[VMC_NR_LAT];	/* microseconds */
};

#define VMC_OWRITE_BITS 10
#define VMC_OWRITE_SLOTS BIT(VMC_OWRITE_BITS)

/* periodic ticks (a second each) a write relying on FLUX keeps it on disk */
#define VMC_FLUX_TICKS	2

/* blocks handled per lock hold by walks over the cache or a range */
#define VMC_SCAN_STEP	1024u

/* sequential stream detector */
#define VMC_STREAMS 8
struct vmc_stream {
	sector_t next;		/* sector the stream continues at */
	u64 bytes;		/* length so far */
	unsigned long last;	/* jiffies of last use */
};

/* writeback item: one block of a copy job */
struct vmc_wb_item {
	u32 cblock;
	u8 mask;	/* dirty sub-blocks copied */
	u8 lost;	/* sub-blocks the cache could not read */
	bool err;	/* origin write or flush failed */
	bool retry;	/* a merged copy failed to read: copy it alone */
	u32 lat_us;	/* job issue to the end of its origin write */
};

/* vmcache.wb_flush_state */
enum { VMC_WB_FLUSH_IDLE, VMC_WB_FLUSH_BUSY, VMC_WB_FLUSH_DONE };

struct vmc_wb_pick;
struct vmc_sysfs_dir;
struct vmc_mrc;
struct vmc_cpage_mem;

/* blocks a mapping page maps, and how many of them are dirty */
struct vmc_mpage_count {
	u16 valid, dirty;
};

struct vmcache {
	struct dm_target *ti;
	struct dm_dev *cache_dev;
	struct dm_dev *origin_dev;
	char *name;			/* dm device name, for logs and sysfs */
	struct list_head all;		/* on the list of tables in use */

	/* geometry */
	struct vmc_layout layout;
	u32 nr_blocks;
	unsigned int block_shift;	/* log2(block size in sectors) */
	unsigned int sub_shift;		/* log2(sub-block size in sectors) */
	sector_t origin_sectors;

	unsigned int tun[VMC_NR_TUNABLES];

	/* protects everything below up to 'lock end'; never held across I/O */
	spinlock_t lock;
	struct vmc_block *blocks;
	u32 *hash;
	u8 hash_bits;			/* log2 of the hashed tables' size */
	struct vmc_list lists[VMC_NR_LISTS];
	u32 nr_dirty;			/* blocks with a dirty sub-block */
	u32 nr_mapped;			/* blocks in the hash table */
	u32 nr_valid_blocks;		/* mapped blocks with valid data */
	u8 *promote_count;		/* hashed miss counters */
	u8 *stream_stamp;		/* hashed: epoch a stream touched it */
	u32 stream_touches;		/* in this epoch */
	u8 stream_epoch;		/* 1..255 */
	struct vmc_stream streams[VMC_STREAMS];
	unsigned long *mpage_dirty;	/* mapping pages changed since commit */
	/*
	 * A change since the last commit's snapshot that a flush must make
	 * durable.  Cleanings and new valid data in clean copies alone are
	 * lazy: a crash before the periodic commit only has those blocks
	 * written back again or read from the origin again.
	 */
	bool md_needed;
	/* origin writes in flight, hashed by block: no fill may race them */
	atomic_t owrites[VMC_OWRITE_SLOTS];
	struct bio_list commit_wait;	/* bios held until the next commit */
	bool degraded;
	bool flush_active;		/* drain requested */
	unsigned int cache_err_burst;	/* cache errors in a row */
	/*
	 * Clean blocks written on both devices (writethrough) may disagree
	 * after a power cut until both are flushed, and a writeback write
	 * over a clean block is dirty on disk only once committed.  The
	 * superblock's FLUX flag covers both; such a write waits until a
	 * durable superblock has it.  It goes at the first commit after
	 * VMC_FLUX_TICKS periodic ticks without one (a quiet second).
	 */
	bool flux_ondisk;		/* the durable superblock says FLUX */
	u8 flux_recent;			/* ticks until FLUX may go (below) */
	u32 flux_inflight;		/* such writes in flight */
	u32 promote_cursor;		/* next promotion counter to age */
	/* --- lock end --- */

	atomic_t commit_lazy;		/* next commit_work: lazy changes too */
	unsigned long lazy_due;		/* periodic_work's: next lazy commit */
	enum vmc_md_state md_state;
	unsigned long *mpage_slot;	/* slot holding the newest copy */
	unsigned long *mpage_writing;	/* pages of the commit under way */
	void *staging;			/* encoded mapping pages */
	/* what each mapping page maps, as last encoded; and in all */
	struct vmc_mpage_count *mpage_count;
	u64 md_valid, md_dirty;
	u32 commit_max_hold;		/* entries encoded in one lock hold */
	struct vmc_superblock *sb_buf;	/* superblock being written */
	u64 loaded_dirty, loaded_valid;	/* superblock counts at load */
	bool loaded;			/* first preresume done: ours to touch */
	bool md_frozen;			/* no commit: not loaded, or suspended */
	bool loaded_flux;		/* loaded after a power cut in FLUX */
	bool live_sibling;		/* loaded beside a live table: redo */
	/* an origin write completed since the last origin flush */
	atomic_t origin_unflushed;
	u64 seq;			/* last durable commit */
	u8 uuid[16];
	u64 format_time;
	u32 sb_slot;			/* slot of the last durable superblock */
	struct mutex commit_lock;
	struct dm_io_client *io_client;

	struct vmc_stats __percpu *stats;
	unsigned long last_io;		/* jiffies of the last foreground bio */
	unsigned long start_time;	/* jiffies at load, for dirtied stamps */
	atomic_t internal_io;		/* our own bios in flight */

	/*
	 * wq is bound: what a bio waits for (a flush, a held write) runs on
	 * the CPU that queued it, as soon as the submitter sleeps, without a
	 * cross-CPU wakeup.  bg_wq is unbound: writeback and the commits no
	 * bio waits for run beside the submitter, not behind it (see
	 * Documentation/vmcache.rst, Locks and contexts).
	 */
	struct workqueue_struct *wq;
	struct workqueue_struct *bg_wq;
	struct work_struct commit_work;	/* on wq: a bio waits */
	struct work_struct bg_commit_work;	/* on bg_wq: none does */
	struct delayed_work periodic_work;
	spinlock_t defer_lock;		/* the two bio lists below */
	struct bio_list flush_bios;	/* waiting for a commit */
	struct bio_list fill_bios;	/* cache writes to submit */
	struct bio_list remap_bios;	/* held bios to submit as remapped */
	struct bio_list discard_bios;	/* discards too wide to scan in map */
	struct work_struct fill_work;
	struct work_struct discard_work;
	struct work_struct event_work;	/* dm_table_event from any context */

	/* writeback (vmcache-writeback.c) */
	struct dm_io_client *wb_io_client;
	struct delayed_work wb_work;	/* on bg_wq */
	spinlock_t wb_lock;		/* wb_done: jobs whose I/O completed */
	struct list_head wb_done;
	/* the worker's own from here to wb_retry_at */
	struct list_head wb_copied_jobs;	/* written, await a flush */
	struct list_head wb_flushing_jobs;	/* covered by the flush */
	struct vmc_wb_pick *wb_picks;
	struct list_head wb_pool;	/* free buffer pages, see pool_get() */
	u32 wb_copying;			/* blocks being read or written */
	u32 wb_copied;			/* blocks on wb_copied_jobs */
	unsigned long wb_copied_at;	/* jiffies: the oldest of them */
	u8 wb_flush_state;		/* VMC_WB_FLUSH_* */
	bool wb_flush_err;
	bool wb_backoff;		/* no new copies before wb_retry_at */
	unsigned long wb_retry_at;
	atomic_t wb_inflight_blocks;	/* picked, not yet finished */
	u32 wb_lat_avg, wb_lat_min;	/* usecs per copy job */
	unsigned int wb_fail_streak;
	bool wb_busy;			/* stopping: in flight still */
	bool wb_stopping;
	bool origin_failing;

	struct bio_set bs;

	/*
	 * Data checksums (vmcache-crc.c), data_crc caches only: CRC pages
	 * are read on demand; the pointers, the counts and the page
	 * contents are under c->lock, the bitmaps as their mapping twins.
	 */
	bool data_crc;
	struct vmc_cpage_mem **cpages;	/* loaded CRC pages, or NULL */
	unsigned long *cpage_dirty;	/* changed since the last commit */
	unsigned long *cpage_writing;	/* in the commit under way */
	u32 cpages_loaded, cpages_changed, cpage_hand;
	void *cstaging;			/* encoded CRC pages of a commit */
	u32 cstaging_pages;
	struct mutex crc_load_lock;	/* one page read at a time */
	struct bio_list crc_bios;	/* for crc_work (defer_lock) */
	struct bio_list crc_parked;	/* writes waiting for a busy sector */
	struct work_struct crc_work;

	/* sysfs: a directory from resume to suspend */
	struct vmc_sysfs_dir *sysfs;
	struct vmc_mrc *mrc;		/* hit ratio at other sizes (leaf lock) */
};

/* per-bio state (ti->per_io_data_size) */
struct vmc_bio {
	union {
		u64 ob_first;	/* origin writes: blocks counted in owrites */
		struct bio *overlay;	/* reads: cache reads to lay over */
	};
	union {
		u32 ob_count;	/* (discards: the range of blocks to drop) */
		atomic_t overlay_pending;	/* reads: see plan_overlays */
	};
	u32 lat_start;		/* vmc_now_us() at map */
	u32 cblock;
	u8 mask;		/* sub-blocks this bio touches */
	u8 lat_class;		/* enum vmc_lat_class */
	blk_status_t clone_status;
	u32 flags;		/* VMC_PB_* */
	struct bvec_iter iter;	/* as mapped: to copy or resubmit */
};

/*
 * The latency fields took ob_count's upper half (a bio is under 4 GiB, so
 * under 2^20 blocks) and a hole: no growth.
 */
static_assert(sizeof(struct vmc_bio) <= 48, "vmc_bio must stay 48 bytes");

#define VMC_PB_HOLD	BIT(0)	/* holds cblock */
#define VMC_PB_WRITER	BIT(1)	/* counted in writers */
#define VMC_PB_FILL	BIT(2)	/* validates mask on completion */
#define VMC_PB_DIRTY	BIT(3)	/* dirties mask on completion */
#define VMC_PB_PROMOTE	BIT(4)	/* read miss: copy into the cache */
#define VMC_PB_CLONE	BIT(5)	/* a cache clone was chained */
#define VMC_PB_RETRY	BIT(6)	/* read hit: retry on the origin */
#define VMC_PB_OWRITE	BIT(7)	/* origin write counted in owrites */
#define VMC_PB_FLUX	BIT(8)	/* counted in flux_inflight */
#define VMC_PB_LATE_CLONE BIT(9) /* held: its cache clone goes out with it */
#define VMC_PB_OVERLAY	BIT(10)	/* origin read, dirty runs read from the cache beside it */
#define VMC_PB_OVERLAID	BIT(11)	/* ... the origin read completed */
#define VMC_PB_FILL_RUN	BIT(12)	/* read miss of blocks ob_first.. to fill */
#define VMC_PB_HIT_RUN	BIT(13)	/* read of blocks ob_first.. at cblock.. */
#define VMC_PB_WRITE_RUN BIT(14) /* write of new blocks ob_first.. at cblock.. */
/*
 * data_crc: a cache write over valid sub-blocks; a read hit whose data was
 * checked (completed with BLK_STS_PROTECTION when it did not match)
 */
#define VMC_PB_CRC	BIT(15)
/*
 * writeback: a FUA write of sub-blocks the disk does not map, to the cache
 * only (its FUA dropped); it completes after the next commit, which makes
 * both the data and its mapping durable
 */
#define VMC_PB_FUA_COMMIT BIT(16)
#define VMC_PB_FUA_DONE	BIT(17)	/* ... ended again by the commit worker */
/* writethrough: blocks ob_first.. at cblock.., origin bio and cache clone */
#define VMC_PB_THROUGH_RUN BIT(18)
/* writeback: a write of cached blocks ob_first.. at cblock.. (iter: its range) */
#define VMC_PB_WRITE_HIT_RUN BIT(19)

/* helpers used across files */
static inline sector_t vmc_block_sectors(struct vmcache *c)
{
	return (sector_t)1 << c->block_shift;
}

static inline sector_t vmc_cblock_sector(struct vmcache *c, u32 cblock)
{
	return c->layout.data_start + ((sector_t)cblock << c->block_shift);
}

static inline void vmc_stat_add(struct vmcache *c, enum vmc_stat s, u64 n)
{
	this_cpu_add(c->stats->v[s], n);
}

static inline void vmc_stat_inc(struct vmcache *c, enum vmc_stat s)
{
	vmc_stat_add(c, s, 1);
}

/* put a bio of ours whose pages are its own (fills, overlays, bounces) */
static inline void vmc_free_page_bio(struct bio *bio)
{
	struct bio_vec *bv;
	struct bvec_iter_all all;

	bio_for_each_segment_all(bv, bio, all)
		__free_page(bv->bv_page);
	bio_put(bio);
}

/*
 * Microseconds, wrapping every 71 minutes: differences stay right.  Read
 * twice per bio, so it is local_clock() (the TSC where there is one), not
 * ktime_get(): a guest whose clocksource is an emulated HPET pays a device
 * exit for each of those.  Across CPUs it may step back a little: see
 * vmc_us_since().
 */
static inline u32 vmc_now_us(void)
{
	return (u32)div_u64(local_clock(), NSEC_PER_USEC);
}

/* microseconds since @start, from vmc_now_us(); 0 if the clock stepped back */
static inline u32 vmc_us_since(u32 start)
{
	u32 d = vmc_now_us() - start;

	return (s32)d < 0 ? 0 : d;
}

static inline unsigned int vmc_lat_bucket(u32 us)
{
	if (us <= 1u << VMC_LAT_FIRST_SHIFT)
		return 0;
	return min_t(unsigned int, fls(us - 1) - VMC_LAT_FIRST_SHIFT,
		     VMC_LAT_BUCKETS - 1);
}

/* any context: two per-CPU adds, no lock */
static inline void vmc_lat_add(struct vmcache *c, enum vmc_lat_class k,
			       u32 us, u32 n)
{
	this_cpu_add(c->stats->lat[k][vmc_lat_bucket(us)], n);
	this_cpu_add(c->stats->lat_sum[k], (u64)us * n);
}

u64 vmc_stat_read(struct vmcache *c, enum vmc_stat s);
u16 vmc_now_secs(struct vmcache *c);

/* dirty stamps wrap every 2^15 s (9 hours): ages are taken modulo that */
#define VMC_SECS_MASK	0x7fff

static inline u16 vmc_secs_since(u16 now, u16 then)
{
	return (now - then) & VMC_SECS_MASK;
}

void vmc_mark_mpage(struct vmcache *c, u32 cblock);
void vmc_mark_mpage_lazy(struct vmcache *c, u32 cblock);
void vmc_commit_lazy(struct vmcache *c);
void vmc_raise_event(struct vmcache *c);

/* vmcache-target.c */
int vmc_set_tunable(struct vmcache *c, enum vmc_tunable t, const char *val,
		    char **error);
int vmc_format_tunable(struct vmcache *c, enum vmc_tunable t, char *buf,
		       size_t len);
unsigned int vmc_status_pairs(struct vmcache *c, char *buf, size_t len,
			      const char *sep);

/* vmcache-sysfs.c */
int vmc_sysfs_init(void);
void vmc_sysfs_exit(void);
int vmc_sysfs_add(struct vmcache *c);
void vmc_sysfs_del(struct vmcache *c);
void vmc_sysfs_refresh(struct vmcache *c);

#endif /* DM_VMCACHE_H */
