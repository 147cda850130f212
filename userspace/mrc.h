/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vmcachectl: the kernel's estimate of the read hit ratio at other cache
 * sizes (Documentation/vmcache.rst, "Hit ratio at other cache sizes"): the
 * est_hit_* status keys and the sysfs file mrc_curve, printed as a line of
 * vmcachectl status, a table with bars (vmcachectl mrc) or JSON.
 */
#ifndef VMCACHECTL_MRC_H
#define VMCACHECTL_MRC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "json.h"
#include "status.h"

/* as the kernel's VMC_MRC_STEPS and VMC_MRC_POINTS: 1/16 .. 8x */
#define VMC_MRC_STEPS 16
#define VMC_MRC_POINTS 128

/* mrc_curve: VMC_MRC_POINTS per-mille numbers; 0 or -1 and err */
int vmc_mrc_curve_parse(const char *text, unsigned int *pm, char *err,
			size_t errlen);

/* the "estimate" line of vmcachectl status (nothing without the keys) */
void vmc_mrc_status_line(FILE *f, const struct vmc_status *st);

/* the table: selected sizes (all VMC_MRC_POINTS with all), bars */
void vmc_mrc_table(FILE *f, const char *name, const struct vmc_status *st,
		   const unsigned int *pm, bool all);

/* {"name", reads, sampling, measured ratio, "curve": [{size_x, ...}]} */
void vmc_mrc_json(struct json *j, const char *name,
		  const struct vmc_status *st, const unsigned int *pm);

#endif
