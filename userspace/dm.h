/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vmcachectl: every device-mapper call, through libdevmapper.  Functions
 * return 0 on success and -1 after reporting the problem with vmc_err().
 */
#ifndef VMCACHECTL_DM_H
#define VMCACHECTL_DM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VMC_TARGET "vmcache"

struct vmc_dm_info {
	bool exists;
	bool suspended;
	int open_count;
	uint32_t major, minor;
};

void vmc_dm_init(void);
void vmc_dm_exit(void);

int vmc_dm_info(const char *name, struct vmc_dm_info *info);
/* create, load the single vmcache target and resume; waits for udev */
int vmc_dm_create(const char *name, uint64_t len, const char *params);
int vmc_dm_remove(const char *name);
/* load a new table, suspend (commits metadata), resume */
int vmc_dm_reload(const char *name, uint64_t len, const char *params);
int vmc_dm_message(const char *name, const char *msg);

/*
 * Status or table of a device that must be a single vmcache target.
 * *params is malloc'ed.  Returns -1 with a message when the device does not
 * exist or is something else.
 */
int vmc_dm_status(const char *name, uint64_t *len, char **params);
int vmc_dm_table(const char *name, uint64_t *len, char **params);

/* names of all devices whose table is a vmcache target, sorted; malloc'ed */
int vmc_dm_list(char ***names, size_t *nr);
void vmc_dm_free_list(char **names, size_t nr);

/* library, driver ("4.47.0") and vmcache target versions, each len bytes */
void vmc_dm_versions(char *lib, char *driver, char *target, size_t len);

#endif
