/* SPDX-License-Identifier: GPL-2.0 */
/*
 * dm-vmcache data checksums ("data_crc 1", vmcache-crc.c): a CRC-32C per
 * dirty sub-block, in CRC pages read on demand and committed with the
 * mapping pages.
 */
#ifndef DM_VMCACHE_CRC_H
#define DM_VMCACHE_CRC_H

#include "vmcache.h"

/* geometry is known: allocate the page table (no page is read) */
int vmc_crc_init(struct vmcache *c, char **error);
void vmc_crc_destroy(struct vmcache *c);
/* drop every loaded page (nothing may be changed or in flight) */
void vmc_crc_forget(struct vmcache *c);

/* format: valid empty pages in area A, zeroes in area B */
int vmc_crc_format(struct vmcache *c);
/*
 * Load: read the CRC pages covering the mapping pages in @suspect (a copy
 * left by a commit that never finished, or torn) and mark them changed,
 * so that the first commit overwrites their leftover copies.
 */
int vmc_crc_load_suspect(struct vmcache *c, const unsigned long *suspect,
			 char **error);

/* commit, under commit_lock: see vmcache-metadata.c */
int vmc_crc_stage_prepare(struct vmcache *c);
bool vmc_crc_stage_fits(struct vmcache *c);
u32 vmc_crc_stage(struct vmcache *c);
int vmc_crc_write(struct vmcache *c, u64 seq);
void vmc_crc_committed(struct vmcache *c, bool ok);

/* data path */
void vmc_crc_defer(struct vmcache *c, struct bio *bio);
bool vmc_crc_is_bounce(struct bio *bio);
bool vmc_crc_read_needs_check(struct vmcache *c, struct bio *bio);
void vmc_crc_work(struct work_struct *ws);
/*
 * writeback: the sub-blocks of @mask whose data fails its CRC; the data
 * starts @sector sectors into the first page of @pl
 */
struct page_list;
u8 vmc_crc_check_pages(struct vmcache *c, u32 cblock, u8 mask,
		       const struct page_list *pl, u32 sector);

#endif /* DM_VMCACHE_CRC_H */
