/* SPDX-License-Identifier: GPL-2.0 */
/*
 * dm-vmcache on-disk format.
 *
 * This header is shared by the kernel module and userspace (vmcachectl), so
 * it uses only <linux/types.h> and plain C.  All multi-byte fields are
 * little endian.  Every structure has its size checked at compile time.
 *
 * Layout of the cache device, in 4 KiB units ("pages"):
 *
 *   page 0, 1         superblock slots 0 and 1 (written alternately)
 *   page 2 ...        mapping area A: nr_mpages pages
 *   ...               mapping area B: nr_mpages pages (shadow copies)
 *   ...               with VMC_FEATURE_INCOMPAT_DATA_CRC only: CRC area A
 *                     (nr_cpages pages), then CRC area B (shadow copies)
 *   data_start ...    nr_blocks cache blocks of block_size bytes
 *
 * Each mapping page holds VMC_ENTRIES_PER_PAGE 8-byte entries, one per
 * cache block.  A commit writes every changed mapping page to the slot (A or
 * B) that does NOT hold its newest committed copy, then writes the next
 * superblock slot with PREFLUSH|FUA.  Loading takes the valid superblock with
 * the highest sequence number and, for each mapping page, the valid copy with
 * the highest sequence number not above the superblock's.  Nothing committed
 * is ever overwritten in place, so a torn write of any size is detected by
 * its checksum and the previous commit is used instead.  A valid page copy
 * with a sequence number above the superblock's was written by a commit
 * that never finished: the loader ignores it and the first commit after
 * loading rewrites that copy, before any superblock can reach its number.
 *
 * Checksums are CRC-32C (Castagnoli) with seed 0xffffffff and a final
 * inversion (the usual CRC-32C, CRC("123456789") == 0xe3069283).  The
 * superblock's covers its whole 4 KiB page with the csum field taken as zero.
 * A mapping page's covers the superblock uuid followed by the whole page
 * (csum as zero), so pages left over from an earlier format never validate.
 *
 * A device is blank (and may be formatted) when both superblock slots, the
 * first 8 KiB, are zero.
 */
#ifndef VMCACHE_ONDISK_H
#define VMCACHE_ONDISK_H

#include <linux/types.h>
#ifdef __KERNEL__
#include <linux/build_bug.h>
#else
#include <assert.h>
/* userspace builds define __packed on the compiler command line */
#endif

#define VMC_MAGIC		0x56434d4341434845ULL	/* "VCMCACHE" */
#define VMC_VERSION_MIN		1
#define VMC_VERSION_MAX		1
#define VMC_VERSION		1

#define VMC_PAGE_SIZE		4096u
#define VMC_PAGE_SECTORS	(VMC_PAGE_SIZE >> 9)
#define VMC_SB_SLOTS		2
#define VMC_CRC_SEED		0xffffffffu

/* Cache block size range, bytes.  A block has VMC_SUBBLOCKS sub-blocks. */
#define VMC_BLOCK_SIZE_MIN	4096u
#define VMC_BLOCK_SIZE_MAX	65536u
#define VMC_BLOCK_SIZE_DEFAULT	4096u
#define VMC_SUBBLOCKS		8

/* Data area starts on a 1 MiB boundary (SSD erase-block friendly). */
#define VMC_DATA_ALIGN_SECTORS	2048u

/* Smallest usable cache: this many blocks. */
#define VMC_MIN_BLOCKS		64u

/* superblock flags */
#define VMC_SB_CLEAN_SHUTDOWN	0x1u	/* last detach committed cleanly */
#define VMC_SB_NEEDS_CHECK	0x2u	/* an I/O error hit the metadata */
/*
 * Clean blocks may have been written on both devices since this commit
 * (writethrough): after a power cut the two copies may differ, so a load
 * that finds FLUX without CLEAN_SHUTDOWN treats every cached block as
 * dirty (the cache copy wins and is written back), which keeps reads
 * stable.
 */
#define VMC_SB_FLUX		0x4u

/*
 * Incompatible feature: a CRC-32C per dirty sub-block of data ("data_crc
 * 1"), in a CRC area after mapping area B, and the NOCRC bit in mapping
 * entries.  Requires 4096-byte blocks (a sub-block is one 512-byte sector).
 */
#define VMC_FEATURE_INCOMPAT_DATA_CRC	0x1ULL

/* feature words; unknown incompat bits refuse to load */
#define VMC_FEATURE_COMPAT_SUPP		0ULL
#define VMC_FEATURE_COMPAT_RO_SUPP	0ULL
#define VMC_FEATURE_INCOMPAT_SUPP	VMC_FEATURE_INCOMPAT_DATA_CRC

/* cache mode recorded in the superblock (informational, the table rules) */
enum vmc_mode {
	VMC_MODE_WRITETHROUGH = 0,
	VMC_MODE_WRITEBACK = 1,
	VMC_MODE_PASSTHROUGH = 2,
};

struct vmc_superblock {
	__le32 csum;		/* CRC-32C of the page, this field as 0 */
	__le32 flags;		/* VMC_SB_* */
	__le64 location;	/* sector of this slot */
	__le64 magic;		/* VMC_MAGIC, written last at format */
	__le32 version;		/* format version of the writer */
	__le32 mode;		/* enum vmc_mode at last commit */
	__le64 compat;
	__le64 compat_ro;
	__le64 incompat;
	__le64 seq;		/* commit sequence number, starts at 1 */
	__u8 uuid[16];		/* random, identifies this cache */
	__le32 block_size;	/* bytes, power of two */
	__le32 nr_mpages;	/* mapping pages per area */
	__le64 nr_blocks;	/* cache blocks in the data area */
	__le64 data_start;	/* sector of cache block 0 */
	__le64 cache_sectors;	/* size of the cache device at format */
	__le64 origin_sectors;	/* size of the origin it caches */
	__le64 nr_dirty;	/* dirty blocks at this commit (checked at load) */
	__le64 nr_valid;	/* mapped blocks at this commit */
	__le64 format_time;	/* seconds since the epoch */
	__le64 commit_time;	/* seconds since the epoch */
	__u8 pad[VMC_PAGE_SIZE - 152];
} __packed;

/*
 * Mapping page header.  seq is the commit that wrote it, index the page
 * number inside its area (so a misdirected write is caught).
 */
struct vmc_mpage_header {
	__le32 csum;
	__le32 index;
	__le64 seq;
} __packed;

/*
 * One mapping entry, 8 bytes:
 *   bits  0..39  origin block number
 *   bits 40..47  valid sub-block mask
 *   bits 48..55  dirty sub-block mask (always a subset of valid)
 *   bit  56      NOCRC (data_crc caches only, else zero): the block's
 *                dirty data has no checksum (made dirty by the recovery
 *                of a power cut in FLUX); cleared when it is clean again
 *   bits 57..63  reserved, zero
 * An entry with a zero valid mask maps nothing.
 */
#define VMC_ENTRY_OBLOCK_BITS	40
#define VMC_ENTRY_OBLOCK_MASK	((1ULL << VMC_ENTRY_OBLOCK_BITS) - 1)
#define VMC_ENTRY_VALID_SHIFT	40
#define VMC_ENTRY_DIRTY_SHIFT	48
#define VMC_ENTRY_RESERVED_MASK	0xff00000000000000ULL
#define VMC_ENTRY_NOCRC		0x0100000000000000ULL

#define VMC_ENTRIES_PER_PAGE \
	((VMC_PAGE_SIZE - sizeof(struct vmc_mpage_header)) / sizeof(__le64))

struct vmc_mpage {
	struct vmc_mpage_header hdr;
	__le64 entries[VMC_ENTRIES_PER_PAGE];
} __packed;

static_assert(sizeof(struct vmc_superblock) == VMC_PAGE_SIZE,
	      "superblock must fill one page");
static_assert(sizeof(struct vmc_mpage_header) == 16, "mpage header size");
static_assert(VMC_ENTRIES_PER_PAGE == 510, "entries per page");
static_assert(sizeof(struct vmc_mpage) == VMC_PAGE_SIZE,
	      "mapping page must fill one page");

/*
 * CRC page (data_crc caches): the same header as a mapping page, with
 * index VMC_CPAGE_INDEX_FLAG | page number and the checksum covering the
 * uuid and the page; then two CRC-32C slots per sub-block for
 * VMC_CRC_BLOCKS_PER_PAGE cache blocks.  A dirty sub-block's data matches
 * one of its two slots: the data is checked on read hits and writeback
 * (unless the entry says NOCRC).  crc[b][s][0] is the CRC of the data on
 * the cache; crc[b][s][1] the previous one, or the one of a write in flight
 * (an overwrite waits until a commit recorded it there).  Pages are
 * committed like mapping pages (A/B copies, sequence number); a commit
 * that writes CRC page q also writes the mapping pages covering its blocks,
 * before it and with a flush in between.  Data CRCs: CRC-32C, seed
 * 0xffffffff, final inversion, over the 512 bytes of the sub-block.
 */
#define VMC_CRC_BLOCKS_PER_PAGE	63
#define VMC_CPAGE_INDEX_FLAG	0x80000000u

struct vmc_cpage {
	struct vmc_mpage_header hdr;
	__le32 crc[VMC_CRC_BLOCKS_PER_PAGE][VMC_SUBBLOCKS][2];
	__u8 pad[48];
} __packed;

static_assert(sizeof(struct vmc_cpage) == VMC_PAGE_SIZE,
	      "CRC page must fill one page");

static inline __u64 vmc_entry_pack(__u64 oblock, __u8 valid, __u8 dirty)
{
	return (oblock & VMC_ENTRY_OBLOCK_MASK) |
	       ((__u64)valid << VMC_ENTRY_VALID_SHIFT) |
	       ((__u64)dirty << VMC_ENTRY_DIRTY_SHIFT);
}

static inline __u64 vmc_entry_oblock(__u64 e)
{
	return e & VMC_ENTRY_OBLOCK_MASK;
}

static inline __u8 vmc_entry_valid(__u64 e)
{
	return (__u8)(e >> VMC_ENTRY_VALID_SHIFT);
}

static inline __u8 vmc_entry_dirty(__u64 e)
{
	return (__u8)(e >> VMC_ENTRY_DIRTY_SHIFT);
}

/* Layout derived from the cache size; kernel and userspace share it. */
struct vmc_layout {
	__u64 nr_blocks;
	__u32 nr_mpages;
	__u32 nr_cpages;	/* CRC pages per area, 0 without data_crc */
	__u64 mapping_start;	/* sector of area A; area B follows */
	__u64 crc_start;	/* sector of CRC area A; area B follows */
	__u64 data_start;	/* sector */
};

static inline __u64 vmc_mpages_for(__u64 nr_blocks)
{
	return (nr_blocks + VMC_ENTRIES_PER_PAGE - 1) / VMC_ENTRIES_PER_PAGE;
}

static inline __u64 vmc_cpages_for(__u64 nr_blocks, int data_crc)
{
	return data_crc ? (nr_blocks + VMC_CRC_BLOCKS_PER_PAGE - 1) /
			  VMC_CRC_BLOCKS_PER_PAGE : 0;
}

static inline __u64 vmc_data_start_crc(__u64 nr_mpages, __u64 nr_cpages)
{
	__u64 s = (VMC_SB_SLOTS + 2 * nr_mpages + 2 * nr_cpages) *
		  VMC_PAGE_SECTORS;

	return (s + VMC_DATA_ALIGN_SECTORS - 1) / VMC_DATA_ALIGN_SECTORS *
	       VMC_DATA_ALIGN_SECTORS;
}

static inline __u64 vmc_data_start_for(__u64 nr_mpages)
{
	return vmc_data_start_crc(nr_mpages, 0);
}

/* metadata sectors in front of the data for @n blocks */
static inline __u64 vmc_meta_for(__u64 n, int data_crc)
{
	return vmc_data_start_crc(vmc_mpages_for(n), vmc_cpages_for(n, data_crc));
}

/*
 * Largest number of blocks that fits a cache device of @sectors sectors.
 * Returns 0 in *l->nr_blocks when the device is too small.
 */
static inline void vmc_compute_layout_crc(__u64 sectors, __u32 block_size,
					  int data_crc, struct vmc_layout *l)
{
	__u64 bs = block_size >> 9;
	__u64 n = sectors / bs;

	/* start from an upper bound and shrink until the metadata fits */
	while (n && vmc_meta_for(n, data_crc) + n * bs > sectors) {
		__u64 over = vmc_meta_for(n, data_crc) + n * bs - sectors;
		__u64 drop = (over + bs - 1) / bs;

		n = drop < n ? n - drop : 0;
	}
	/*
	 * The step above may overshoot (the metadata of the upper bound is
	 * larger, by whole 1 MiB alignment steps): take the largest count
	 * that fits, so that the size recorded at format (data_start plus
	 * the blocks) gives the same count back when the cache is loaded.
	 */
	while (vmc_meta_for(n + 1, data_crc) + (n + 1) * bs <= sectors)
		n++;
	if (n > VMC_ENTRY_OBLOCK_MASK)
		n = VMC_ENTRY_OBLOCK_MASK;
	l->nr_blocks = n;
	l->nr_mpages = (__u32)vmc_mpages_for(n);
	l->nr_cpages = (__u32)vmc_cpages_for(n, data_crc);
	l->mapping_start = VMC_SB_SLOTS * VMC_PAGE_SECTORS;
	l->crc_start = l->mapping_start +
		       2ULL * l->nr_mpages * VMC_PAGE_SECTORS;
	l->data_start = vmc_data_start_crc(l->nr_mpages, l->nr_cpages);
}

static inline void vmc_compute_layout(__u64 sectors, __u32 block_size,
				      struct vmc_layout *l)
{
	vmc_compute_layout_crc(sectors, block_size, 0, l);
}

/* sector of mapping page @index in area @slot (0 = A, 1 = B) */
static inline __u64 vmc_mpage_sector(const struct vmc_layout *l,
				     unsigned int slot, __u64 index)
{
	return l->mapping_start +
	       ((__u64)slot * l->nr_mpages + index) * VMC_PAGE_SECTORS;
}

/* sector of CRC page @index in area @slot (0 = A, 1 = B) */
static inline __u64 vmc_cpage_sector(const struct vmc_layout *l,
				     unsigned int slot, __u64 index)
{
	return l->crc_start +
	       ((__u64)slot * l->nr_cpages + index) * VMC_PAGE_SECTORS;
}

#endif /* VMCACHE_ONDISK_H */
