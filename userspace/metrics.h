/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vmcachectl: monitoring output.  The kernel's latency histograms (sysfs
 * files latency_<class> and latency_<class>_sum_us, Documentation/vmcache.rst,
 * "sysfs") read into a struct, written as JSON, and the status line plus
 * the histograms in the Prometheus text format (node_exporter's textfile
 * collector; metric names in vmcachectl.8).
 */
#ifndef VMCACHECTL_METRICS_H
#define VMCACHECTL_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "json.h"

#define VMC_SYSFS_CACHES "/sys/module/dm_vmcache/caches"

/* as the kernel's enum vmc_lat_class and VMC_LAT_BUCKETS */
#define VMC_LAT_CLASSES 4
#define VMC_LAT_BUCKETS 22

extern const char * const vmc_lat_class_names[VMC_LAT_CLASSES];

/* upper bound of bucket i in microseconds; 0 for the last (unbounded) */
uint64_t vmc_lat_bound_us(size_t i);

struct vmc_latency {
	uint64_t count[VMC_LAT_CLASSES][VMC_LAT_BUCKETS];
	uint64_t sum_us[VMC_LAT_CLASSES];
};

/* one latency_<class> file: VMC_LAT_BUCKETS numbers; 0 or -1 and err */
int vmc_latency_parse(const char *text, uint64_t *counts, char *err,
		      size_t errlen);
/* every histogram from a cache's sysfs directory; 0 or -1 and err */
int vmc_latency_read(const char *dir, struct vmc_latency *lat, char *err,
		     size_t errlen);
/* "latency": the bounds and each class; null when lat is NULL */
void vmc_latency_json(struct json *j, const char *key,
		      const struct vmc_latency *lat);

struct vmc_prom_cache {
	const char *name;		/* the dm name: label device */
	const char *status;		/* its status line (key=value tokens) */
	const struct vmc_latency *lat;	/* NULL: no histograms */
};

/* every metric of the caches, each family once with a line per cache */
void vmc_prom_write(FILE *f, const struct vmc_prom_cache *caches, size_t n);

#endif
