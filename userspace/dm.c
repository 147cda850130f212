// SPDX-License-Identifier: GPL-2.0
/*
 * vmcachectl: libdevmapper wrapper.  Creation, removal and resume carry a
 * udev cookie and wait for udev, so /dev/mapper/NAME exists on return (when
 * udev is not running, libdevmapper creates the node itself).
 */
#include "dm.h"

#include <errno.h>
#include <libdevmapper.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define LOG_LEVEL_MASK 7	/* libdevmapper ORs flags above the level */
#define LOG_ERR_LEVEL 3

static bool quiet;

static void dm_log(int level, const char *file, int line, int dm_errno,
		   const char *fmt, ...)
{
	char buf[400];
	va_list ap;

	(void)file;
	(void)line;
	(void)dm_errno;
	if (quiet || (level & LOG_LEVEL_MASK) > LOG_ERR_LEVEL)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	vmc_note("device-mapper: %s", buf);
}

void vmc_dm_init(void)
{
	dm_log_with_errno_init(dm_log);
}

void vmc_dm_exit(void)
{
	dm_lib_release();
}

static struct dm_task *task(int type, const char *name)
{
	struct dm_task *dmt = dm_task_create(type);

	if (!dmt) {
		vmc_err("cannot talk to device-mapper (is dm_mod loaded, are you root?)");
		return NULL;
	}
	if (name && !dm_task_set_name(dmt, name)) {
		vmc_err("bad device name '%s'", name);
		dm_task_destroy(dmt);
		return NULL;
	}
	return dmt;
}

/* runs and destroys dmt; with a udev cookie for node-changing tasks */
static int run(struct dm_task *dmt, const char *what, const char *name,
	       bool udev)
{
	uint32_t cookie = 0;
	int ok;

	if (udev && !dm_task_set_cookie(dmt, &cookie, 0)) {
		dm_task_destroy(dmt);
		vmc_err("%s %s: cannot set up udev synchronisation", what, name);
		return -1;
	}
	ok = dm_task_run(dmt);
	if (udev)
		dm_udev_wait(cookie);
	dm_task_destroy(dmt);
	if (!ok) {
		vmc_err("%s %s failed", what, name);
		return -1;
	}
	return 0;
}

int vmc_dm_info(const char *name, struct vmc_dm_info *info)
{
	struct dm_task *dmt = task(DM_DEVICE_INFO, name);
	struct dm_info di;

	memset(info, 0, sizeof(*info));
	if (!dmt)
		return -1;
	if (!dm_task_run(dmt) || !dm_task_get_info(dmt, &di)) {
		dm_task_destroy(dmt);
		vmc_err("cannot query device-mapper device %s", name);
		return -1;
	}
	info->exists = di.exists;
	info->suspended = di.suspended;
	info->open_count = di.open_count;
	info->major = di.major;
	info->minor = di.minor;
	dm_task_destroy(dmt);
	return 0;
}

static int load(int type, const char *name, uint64_t len, const char *params,
		const char *what)
{
	struct dm_task *dmt = task(type, name);

	if (!dmt)
		return -1;
	if (!dm_task_add_target(dmt, 0, len, VMC_TARGET, params)) {
		dm_task_destroy(dmt);
		vmc_err("%s %s: cannot add the table", what, name);
		return -1;
	}
	if (run(dmt, what, name, type == DM_DEVICE_CREATE)) {
		vmc_note("the kernel refused the table '0 %llu %s %s'; 'dmesg | grep vmcache' says why",
			 (unsigned long long)len, VMC_TARGET, params);
		return -1;
	}
	return 0;
}

int vmc_dm_create(const char *name, uint64_t len, const char *params)
{
	return load(DM_DEVICE_CREATE, name, len, params, "creating");
}

int vmc_dm_remove(const char *name)
{
	struct dm_task *dmt = task(DM_DEVICE_REMOVE, name);

	if (!dmt)
		return -1;
	dm_task_retry_remove(dmt);	/* udev may hold it open briefly */
	return run(dmt, "removing", name, true);
}

static int simple(int type, const char *name, const char *what)
{
	struct dm_task *dmt = task(type, name);

	return dmt ? run(dmt, what, name, type == DM_DEVICE_RESUME) : -1;
}

int vmc_dm_reload(const char *name, uint64_t len, const char *params)
{
	if (load(DM_DEVICE_RELOAD, name, len, params, "reloading"))
		return -1;
	if (simple(DM_DEVICE_SUSPEND, name, "suspending")) {
		simple(DM_DEVICE_CLEAR, name, "clearing the new table of");
		return -1;
	}
	return simple(DM_DEVICE_RESUME, name, "resuming");
}

int vmc_dm_message(const char *name, const char *msg)
{
	struct dm_task *dmt = task(DM_DEVICE_TARGET_MSG, name);

	if (!dmt)
		return -1;
	if (!dm_task_set_sector(dmt, 0) || !dm_task_set_message(dmt, msg)) {
		dm_task_destroy(dmt);
		vmc_err("cannot prepare message '%s'", msg);
		return -1;
	}
	if (!dm_task_run(dmt)) {
		dm_task_destroy(dmt);
		vmc_err("%s refused message '%s'; 'dmesg | grep vmcache' says why",
			name, msg);
		return -1;
	}
	dm_task_destroy(dmt);
	return 0;
}

/* the single target of a STATUS or TABLE task, which must be vmcache */
static int query(int type, const char *name, uint64_t *len, char **params)
{
	struct dm_task *dmt;
	struct dm_info di;
	uint64_t start, length;
	char *ttype = NULL, *p = NULL;
	void *next;
	int ret = -1;

	dmt = task(type, name);
	if (!dmt)
		return -1;
	if (!dm_task_run(dmt) || !dm_task_get_info(dmt, &di)) {
		vmc_err("cannot query device-mapper device %s", name);
		goto out;
	}
	if (!di.exists) {
		vmc_err("no device-mapper device named %s ('vmcachectl status' lists the caches)",
			name);
		goto out;
	}
	next = dm_get_next_target(dmt, NULL, &start, &length, &ttype, &p);
	if (!ttype || strcmp(ttype, VMC_TARGET) || next || start) {
		vmc_err("%s is not a vmcache device (its table is %s)", name,
			ttype ? ttype : "empty");
		goto out;
	}
	*params = strdup(p ? p : "");
	if (!*params) {
		vmc_err("out of memory");
		goto out;
	}
	*len = length;
	ret = 0;
out:
	dm_task_destroy(dmt);
	return ret;
}

int vmc_dm_status(const char *name, uint64_t *len, char **params)
{
	return query(DM_DEVICE_STATUS, name, len, params);
}

int vmc_dm_table(const char *name, uint64_t *len, char **params)
{
	return query(DM_DEVICE_TABLE, name, len, params);
}

/* true when the device's live table is exactly one vmcache target */
static bool is_vmcache(const char *name)
{
	struct dm_task *dmt = dm_task_create(DM_DEVICE_STATUS);
	uint64_t start, length;
	char *ttype = NULL, *params;
	bool yes = false;

	if (!dmt)
		return false;
	if (dm_task_set_name(dmt, name) && dm_task_run(dmt))
		yes = !dm_get_next_target(dmt, NULL, &start, &length, &ttype,
					  &params) &&
		      ttype && !strcmp(ttype, VMC_TARGET);
	dm_task_destroy(dmt);
	return yes;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int vmc_dm_list(char ***names, size_t *nr)
{
	struct dm_task *dmt = task(DM_DEVICE_LIST, NULL);
	struct dm_names *n;
	size_t count = 0;
	char **v = NULL;

	*names = NULL;
	*nr = 0;
	if (!dmt)
		return -1;
	if (!dm_task_run(dmt) || !(n = dm_task_get_names(dmt))) {
		dm_task_destroy(dmt);
		vmc_err("cannot list device-mapper devices");
		return -1;
	}
	for (; n->dev; n = (struct dm_names *)((char *)n + n->next)) {
		if (is_vmcache(n->name)) {
			char **nv = realloc(v, (count + 1) * sizeof(*v));

			if (!nv)
				break;
			v = nv;
			v[count] = strdup(n->name);
			if (!v[count])
				break;
			count++;
		}
		if (!n->next)
			break;
	}
	dm_task_destroy(dmt);
	if (v)
		qsort(v, count, sizeof(*v), cmp_names);
	*names = v;
	*nr = count;
	return 0;
}

void vmc_dm_free_list(char **names, size_t nr)
{
	for (size_t i = 0; i < nr; i++)
		free(names[i]);
	free(names);
}

void vmc_dm_versions(char *lib, char *driver, char *target, size_t len)
{
	struct dm_task *dmt;
	struct dm_versions *v;

	snprintf(lib, len, "unknown");
	snprintf(driver, len, "not available");
	snprintf(target, len, "not loaded");
	dm_get_library_version(lib, len);
	quiet = true;	/* a host without device-mapper is not an error here */
	if (!dm_driver_version(driver, len))
		snprintf(driver, len, "not available");
	dmt = dm_task_create(DM_DEVICE_LIST_VERSIONS);
	if (dmt && dm_task_run(dmt) && (v = dm_task_get_versions(dmt))) {
		for (;; v = (struct dm_versions *)((char *)v + v->next)) {
			if (!strcmp(v->name, VMC_TARGET))
				snprintf(target, len, "%u.%u.%u", v->version[0],
					 v->version[1], v->version[2]);
			if (!v->next)
				break;
		}
	}
	if (dmt)
		dm_task_destroy(dmt);
	quiet = false;
}
