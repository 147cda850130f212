/* SPDX-License-Identifier: GPL-2.0 */
/*
 * dm-vmcache metadata: the only code that reads or writes the superblocks
 * and mapping pages.  See vmcache_ondisk.h for the format and the commit
 * protocol.
 */
#ifndef DM_VMCACHE_METADATA_H
#define DM_VMCACHE_METADATA_H

#include "vmcache.h"

/*
 * Read the superblocks; format a blank device unless @must_exist.  Sets the
 * geometry in @c.  @block_size is the table's request (0: none), @data_crc
 * too (-1: none; a blank device is formatted with it).  On failure
 * *error names the reason.
 */
int vmc_md_open(struct vmcache *c, bool must_exist, unsigned int block_size,
		int data_crc, char **error);

/* Rebuild the in-memory mappings from the newest commit. */
int vmc_md_load(struct vmcache *c, char **error);

/*
 * First resume: take over the state of @from (the table this one
 * replaces, suspended after a clean commit; may be NULL) if the disk still
 * says what it committed, else load if another table committed since
 * vmc_md_load or the constructor loaded nothing.
 */
int vmc_md_refresh(struct vmcache *c, struct vmcache *from, char **error);

/*
 * Make every completed write durable together with the mappings that
 * describe it.  @clean marks a clean shutdown.  The bios that waited for
 * this commit (c->commit_wait at its snapshot) are moved to @waiting for
 * the caller to send on (0) or fail.  Sleeps.
 */
int vmc_md_commit(struct vmcache *c, bool clean, struct bio_list *waiting);

/*
 * REQ_PREFLUSH: make every completed write durable, origin included;
 * commits only if something changed.  Sleeps.
 */
int vmc_md_flush(struct vmcache *c, struct bio_list *waiting);

/* metadata I/O, also used by vmcache-crc.c */
struct vmc_md_io {
	atomic_t pending;
	int error;
	struct completion done;
};

int vmc_md_rw(struct vmcache *c, blk_opf_t opf, void *buf, sector_t sector,
	      unsigned int sectors);
void vmc_md_io_start(struct vmc_md_io *io);
void vmc_md_write_page(struct vmcache *c, struct vmc_md_io *io, void *page,
		       sector_t sector);
int vmc_md_io_wait(struct vmc_md_io *io);
u32 vmc_md_page_csum(struct vmcache *c, const struct vmc_mpage_header *hdr);

/* is there anything a commit would write? */
bool vmc_md_changed(struct vmcache *c, bool lazy);

void vmc_md_close(struct vmcache *c);

#endif /* DM_VMCACHE_METADATA_H */
