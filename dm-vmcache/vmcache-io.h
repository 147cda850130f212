/* SPDX-License-Identifier: GPL-2.0 */
/* dm-vmcache data path (vmcache-io.c). */
#ifndef DM_VMCACHE_IO_H
#define DM_VMCACHE_IO_H

#include "vmcache.h"

int vmc_map(struct dm_target *ti, struct bio *bio);
int vmc_end_io(struct dm_target *ti, struct bio *bio, blk_status_t *error);
void vmc_defer_flush(struct vmcache *c, struct bio *bio);
void vmc_commit_work(struct work_struct *ws);
void vmc_bg_commit_work(struct work_struct *ws);
void vmc_commit_soon(struct vmcache *c);
void vmc_discard_work(struct work_struct *ws);

/* commit and send on (or fail) the writes that waited for it */
int vmc_commit(struct vmcache *c, bool clean);
void vmc_fill_work(struct work_struct *ws);
void vmc_note_cache_error(struct vmcache *c);

/* front pad of every bio the target allocates itself */
size_t vmc_own_bio_front_pad(void);

#endif /* DM_VMCACHE_IO_H */
