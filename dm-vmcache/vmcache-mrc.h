/* SPDX-License-Identifier: GPL-2.0 */
/*
 * dm-vmcache: online miss-ratio curve (hit ratio at other cache sizes).
 *
 * Fixed-size SHARDS: origin blocks are sampled by a hash of their number,
 * the sampling threshold falling so that at most VMC_MRC_SAMPLES blocks
 * are tracked; the LRU stack distance of each sampled access, scaled by
 * the sampling rate, goes into a histogram in units of the cache's size.
 * The state is a fixed size, independent of the cache's.  A leaf: it
 * knows nothing of the target and takes no other lock than its own.
 */
#ifndef DM_VMCACHE_MRC_H
#define DM_VMCACHE_MRC_H

#include <linux/types.h>

#define VMC_MRC_SAMPLES		4096	/* blocks tracked at most */
#define VMC_MRC_STEPS		16	/* histogram buckets per cache size */
#define VMC_MRC_MAX_X		8	/* the curve goes up to 8x the cache */
#define VMC_MRC_POINTS		(VMC_MRC_STEPS * VMC_MRC_MAX_X)

struct vmc_mrc;

struct vmc_mrc *vmc_mrc_create(u32 cache_blocks);
void vmc_mrc_destroy(struct vmc_mrc *m);
/* off forgets everything; on starts from nothing */
void vmc_mrc_enable(struct vmc_mrc *m, bool on);
/* zero the histogram, keep the recency of the blocks tracked */
void vmc_mrc_reset(struct vmc_mrc *m);

/*
 * One access to an origin block (any context).  Reads are counted in the
 * histogram; writes only refresh recency.  A bypassed access (a sequential
 * stream) is never added to the tracked blocks.
 */
void vmc_mrc_access(struct vmc_mrc *m, u64 oblock, bool is_write,
		    bool bypass);
/* reads of blocks a bypassed stream took whole from the origin */
void vmc_mrc_bypassed(struct vmc_mrc *m, u64 blocks);
/* a run of blocks mapped in one piece: an access to each */
void vmc_mrc_run(struct vmc_mrc *m, u64 first, u64 n, bool is_write,
		 bool bypass);

/* status keys, appended to the status line: mrc=... est_hit_4x=... */
unsigned int vmc_mrc_status(struct vmc_mrc *m, char *buf, size_t len,
			    const char *sep);
/* VMC_MRC_POINTS per-mille hit ratios at 1/16 .. 8x the cache size */
unsigned int vmc_mrc_curve(struct vmc_mrc *m, char *buf, size_t len);

#endif /* DM_VMCACHE_MRC_H */
