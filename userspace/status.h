/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vmcachectl: the target's status line (Documentation/vmcache.rst, "Status
 * line") parsed into a struct.  Grammar: key=value tokens separated by
 * single spaces; every documented key must be present (the estimate keys,
 * mrc to est_hit_4x, may all be absent: a module without them); keys this
 * tool does not know (appended by a newer kernel) are kept as strings.
 */
#ifndef VMCACHECTL_STATUS_H
#define VMCACHECTL_STATUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "json.h"

#define VMC_STATUS_WORD 24
#define VMC_STATUS_MAX_EXTRA 16
#define VMC_EST_SIZES 4		/* est_hit_0_5x, _1x, _2x, _4x */

struct vmc_status {
	uint64_t version;
	char mode[VMC_STATUS_WORD];
	char policy[VMC_STATUS_WORD];
	uint64_t block_size;
	char metadata[VMC_STATUS_WORD];
	uint64_t metadata_used, metadata_total;
	uint64_t blocks_total, blocks_used, blocks_dirty;
	uint64_t read_hits, read_misses, write_hits, write_misses;
	uint64_t bypassed, promotions, demotions;
	uint64_t writeback_done, writeback_inflight, writeback_errors;
	uint64_t cache_errors, origin_errors, data_loss;
	char flush[VMC_STATUS_WORD];
	uint64_t degraded, commits, seq;

	/* hit ratio at other sizes (has_mrc: the module has the keys) */
	bool has_mrc;
	char mrc[VMC_STATUS_WORD];
	uint64_t mrc_reads, mrc_sample_ppm;
	uint64_t est_hit[VMC_EST_SIZES];	/* per mille */

	size_t nr_extra;
	struct {
		char key[VMC_STATUS_WORD];
		char value[VMC_STATUS_WORD * 2];
	} extra[VMC_STATUS_MAX_EXTRA];
};

/* 0 on success; on error -1 and a sentence in err */
int vmc_status_parse(const char *line, struct vmc_status *st, char *err,
		     size_t errlen);

/* every status key, in the documented order, then the extra keys */
void vmc_status_json(struct json *j, const struct vmc_status *st);

/* the sizes of est_hit[i] relative to the cache: 0.5, 1, 2, 4 */
double vmc_est_size(size_t i);

/* hits / (hits + misses); NaN when there was no I/O */
double vmc_ratio(uint64_t hits, uint64_t misses);

#endif
