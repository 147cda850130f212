/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vmcachectl: the target's options (Documentation/vmcache.rst, "Table
 * line") and the table line built from them:
 *   0 <origin sectors> vmcache <cache_dev> <origin_dev> <#words> <key> <value>...
 */
#ifndef VMCACHECTL_TABLE_H
#define VMCACHECTL_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum vmc_tun_type { TUN_NUM, TUN_ENUM, TUN_BLOCK_SIZE };

struct vmc_tunable {
	const char *key;
	enum vmc_tun_type type;
	uint64_t min, max;	/* TUN_NUM */
	const char *values;	/* TUN_ENUM: space separated */
	bool online;		/* settable with the "set" message */
};

extern const struct vmc_tunable vmc_tunables[];
extern const size_t vmc_nr_tunables;

const struct vmc_tunable *vmc_tunable_find(const char *key);
/* the option list with ranges, for --help */
void vmc_tunables_help(void);

/*
 * Checks value against the documented range; writes the value the kernel
 * expects to out (block_size "32k" becomes "32768").  0 or -1 with err set.
 */
int vmc_tunable_check(const char *key, const char *value, char *out,
		      size_t outlen, char *err, size_t errlen);

#define VMC_TABLE_MAX_OPTS 32
#define VMC_TABLE_WORD 64

struct vmc_table {
	uint64_t len;			/* sectors, the origin's size */
	char cache[VMC_TABLE_WORD];	/* as the kernel takes it: path or maj:min */
	char origin[VMC_TABLE_WORD];
	size_t nr_opts;
	struct {
		char key[VMC_TABLE_WORD];
		char value[VMC_TABLE_WORD];
	} opt[VMC_TABLE_MAX_OPTS];
};

/* validated add or replace */
int vmc_table_set(struct vmc_table *t, const char *key, const char *value,
		  char *err, size_t errlen);
/* "key=value" form of vmc_table_set */
int vmc_table_set_pair(struct vmc_table *t, const char *pair, char *err,
		       size_t errlen);
const char *vmc_table_get(const struct vmc_table *t, const char *key);
/* target parameters: "<cache> <origin> <#words> <key> <value>..." */
int vmc_table_params(const struct vmc_table *t, char *buf, size_t len);
/* parses what the kernel prints (no validation: it may know newer keys) */
int vmc_table_parse(const char *params, uint64_t len, struct vmc_table *t,
		    char *err, size_t errlen);

#endif
