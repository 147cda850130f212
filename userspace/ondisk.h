/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vmcachectl: offline access to a cache device's metadata (no
 * device-mapper): CRC-32C, reading and checking it the way the kernel loads
 * it, and formatting.  The format itself is dm-vmcache/vmcache_ondisk.h.
 */
#ifndef VMCACHECTL_ONDISK_H
#define VMCACHECTL_ONDISK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "vmcache_ondisk.h"

/* raw reflected CRC-32C update: no initial or final inversion */
uint32_t vmc_crc32c(uint32_t crc, const void *buf, size_t len);
/* the format's checksums (see vmcache_ondisk.h): a mapping page's covers uuid */
uint32_t vmc_sb_csum(const struct vmc_superblock *sb);
uint32_t vmc_mpage_csum(const uint8_t uuid[16], const struct vmc_mpage *pg);
void vmc_sb_seal(struct vmc_superblock *sb);
void vmc_mpage_seal(const uint8_t uuid[16], struct vmc_mpage *pg);

/* a cache device or an image file */
struct vmc_dev {
	int fd;
	const char *path;
	uint64_t sectors;
	bool is_blk;
	dev_t rdev;
};

#define VMC_DEV_WRITE	1	/* open read-write */
#define VMC_DEV_SHARED	2	/* block device: no O_EXCL */

/* block devices are opened O_DIRECT and, unless shared, O_EXCL */
int vmc_dev_open(struct vmc_dev *d, const char *path, int flags);
void vmc_dev_close(struct vmc_dev *d);
int vmc_dev_read(struct vmc_dev *d, void *buf, uint64_t pages, uint64_t sector);
int vmc_dev_write(struct vmc_dev *d, const void *buf, uint64_t pages,
		  uint64_t sector);
int vmc_dev_sync(struct vmc_dev *d);
/* page-aligned, zeroed; free() it */
void *vmc_pages_alloc(uint64_t pages);

enum vmc_sev { VMC_INFO, VMC_WARNING, VMC_ERROR };

struct vmc_msg {
	enum vmc_sev sev;
	int slot;		/* superblock slot the message is about, or -1 */
	const char *stage;	/* "superblock", "mapping", "entries", "counts" */
	char text[200];
};

#define VMC_MP_NONE	0x7f
#define VMC_MP_FUTURE	0x80

#define VMC_MAX_MSGS 64	/* kept for printing; the counts go on */

struct vmc_meta {
	/* superblock stage */
	bool blank;			/* both superblock slots are zero */
	int slot;			/* chosen slot, -1 when none is valid */
	struct vmc_superblock sb;	/* chosen slot as on disk */
	struct vmc_layout lay;
	bool data_crc;			/* VMC_FEATURE_INCOMPAT_DATA_CRC */
	/* mapping stage */
	uint64_t *entries;		/* nr_blocks chosen entries, host order */
	/*
	 * per mapping page: the copy in use (0 = A, 1 = B; VMC_MP_NONE when
	 * neither validates), plus VMC_MP_FUTURE when a copy is newer than the
	 * superblock (an interrupted commit the next commit must overwrite)
	 */
	uint8_t *mpage_use;
	uint64_t nr_valid, nr_dirty;
	uint64_t nr_unused_bad;		/* unused copies that do not validate */
	/* checksum stage (data_crc): the CRC pages in use, as mpage_use */
	struct vmc_cpage *cpages;
	uint8_t *cpage_use;
	uint8_t *crc_bad;		/* per block: dirty sectors failing (data stage) */
	uint64_t nr_crc_bad;
	/* report */
	struct vmc_msg msgs[VMC_MAX_MSGS];
	size_t nr_msgs;
	size_t count[3];		/* per severity, including unkept ones */
};

/*
 * Stage 1: both superblock slots, in the order location, magic, checksum,
 * version, features, geometry; picks the valid slot with the highest seq.
 * Returns -1 on an I/O error (reported), else 0; m->slot < 0 means no valid
 * superblock.
 */
int vmc_meta_read_sb(struct vmc_dev *d, struct vmc_meta *m);
/*
 * Stage 2 (needs m->slot >= 0): both copies of every mapping page, picking
 * the one the kernel would load, then every entry and the counts.
 */
int vmc_meta_read_mappings(struct vmc_dev *d, struct vmc_meta *m);
/*
 * With data_crc, stage 2 also reads both copies of every CRC page (the
 * kernel's choice in m->cpages).  Stage 4 (data_crc only): read the dirty
 * data and check it against its checksums; a mismatch is a warning (the
 * kernel fails reads of that data and drops it at writeback), counted in
 * m->nr_crc_bad, its sectors in m->crc_bad.  -1 on an I/O error.
 */
int vmc_meta_check_data(struct vmc_dev *d, struct vmc_meta *m);
void vmc_meta_free(struct vmc_meta *m);
/* CHECK_CLEAN, CHECK_WARNINGS or CHECK_CORRUPT from the counts */
int vmc_meta_result(const struct vmc_meta *m);
const char *vmc_sev_name(enum vmc_sev s);

/* superblock fields, in on-disk order, for dump */
enum vmc_sb_fmt { SBF_DEC, SBF_HEX, SBF_UUID };
struct vmc_sb_field {
	const char *name;
	size_t offset, size;
	enum vmc_sb_fmt fmt;
};
extern const struct vmc_sb_field vmc_sb_fields[];
extern const size_t vmc_nr_sb_fields;
uint64_t vmc_sb_get(const struct vmc_superblock *sb,
		    const struct vmc_sb_field *f);
void vmc_uuid_str(const uint8_t uuid[16], char out[37]);

/* a fresh, empty cache as the kernel would write it (see format in .c) */
int vmc_format(struct vmc_dev *d, uint32_t block_size, uint64_t origin_sectors,
	       uint64_t now, const uint8_t uuid[16]);
/* zero both superblock slots, so the kernel formats the device on load */
int vmc_wipe(struct vmc_dev *d);
/* writes the chosen superblock again, without needs_check, to the next slot */
int vmc_clear_needs_check(struct vmc_dev *d, const struct vmc_meta *m);

#endif
