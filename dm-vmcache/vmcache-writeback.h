/* SPDX-License-Identifier: GPL-2.0 */
/* dm-vmcache background writeback (vmcache-writeback.c). */
#ifndef DM_VMCACHE_WRITEBACK_H
#define DM_VMCACHE_WRITEBACK_H

#include "vmcache.h"

int vmc_wb_create(struct vmcache *c);
void vmc_wb_destroy(struct vmcache *c);

/* look at the dirty level now (new dirty data, flush, tunable change) */
void vmc_wb_kick(struct vmcache *c);

/* (re)start after load or resume */
void vmc_wb_start(struct vmcache *c);

/* stop issuing and wait for the batch in flight (suspend) */
void vmc_wb_stop(struct vmcache *c);

#endif /* DM_VMCACHE_WRITEBACK_H */
