// SPDX-License-Identifier: GPL-2.0
/*
 * dm-vmcache sysfs: /sys/module/dm_vmcache/caches/<dm-name>/ holds one file
 * per status key (read-only), per online tunable (read-write) and per
 * latency histogram (read-only), so tools need not parse the status line.
 * The directory lives from resume to suspend, so a table reload never meets
 * its predecessor's name.  Each resume gets a new kobject (a kobject is
 * initialised once and freed by its release); removing it waits for
 * readers, so it never outlives the cache.
 */
#include <linux/module.h>
#include <linux/slab.h>
#include "vmcache.h"
#include "vmcache-mrc.h"

struct vmc_sysfs_dir {
	struct kobject kobj;
	struct vmcache *c;
};

static struct vmcache *cache_of(struct kobject *kobj)
{
	return container_of(kobj, struct vmc_sysfs_dir, kobj)->c;
}

/* status keys that are not tunables; tunables come from vmc_tunables */
static const char * const status_keys[] = {
	"version", "block_size", "metadata", "metadata_used", "metadata_total",
	"blocks_total", "blocks_used", "blocks_dirty", "read_hits",
	"read_misses", "write_hits", "write_misses", "bypassed", "promotions",
	"demotions", "writeback_done", "writeback_inflight",
	"writeback_errors", "cache_errors", "origin_errors", "data_loss",
	"flush", "degraded", "commits", "seq", "mrc_reads", "mrc_sample_ppm",
	"est_hit_0_5x", "est_hit_1x", "est_hit_2x", "est_hit_4x",
	"data_crc", "crc_errors",
};

/* the estimated hit ratio curve (vmcache-mrc.c) */
#define VMC_MRC_CURVE "mrc_curve"
/* the most mapping entries a commit encoded in one cache-lock hold */
#define VMC_COMMIT_HOLD "commit_max_hold"

/*
 * latency_<class>: the bucket counts of one histogram, space-separated;
 * latency_<class>_sum_us: the microseconds they add up to
 */
static const char * const lat_files[2 * VMC_NR_LAT] = {
	"latency_read_hit", "latency_read_miss", "latency_write",
	"latency_writeback", "latency_read_hit_sum_us",
	"latency_read_miss_sum_us", "latency_write_sum_us",
	"latency_writeback_sum_us",
};

#define VMC_NR_ATTRS (ARRAY_SIZE(status_keys) + VMC_NR_TUNABLES + \
		      ARRAY_SIZE(lat_files) + 2)

static struct kset *caches_kset;
static struct attribute vmc_attr_store[VMC_NR_ATTRS];
static struct attribute *vmc_attrs[VMC_NR_ATTRS + 1];
ATTRIBUTE_GROUPS(vmc);

static int tunable_of(const struct attribute *attr)
{
	int i;

	/* other tunables fixed at format time show as status keys */
	for (i = 0; i < VMC_NR_TUNABLES; i++)
		if (!strcmp(attr->name, vmc_tunables[i].name))
			return vmc_tunables[i].online || i == VMC_T_BLOCK_SIZE ?
			       i : -1;
	return -1;
}

static int lat_file_of(const struct attribute *attr)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(lat_files); i++)
		if (!strcmp(attr->name, lat_files[i]))
			return i;
	return -1;
}

/* summed over the CPUs; not a snapshot: counts may move while summed */
static ssize_t show_latency(struct vmcache *c, int f, char *buf)
{
	enum vmc_lat_class k = f % VMC_NR_LAT;
	u64 sum = 0;
	int cpu, i, n = 0;

	if (f >= VMC_NR_LAT) {
		for_each_possible_cpu(cpu)
			sum += per_cpu_ptr(c->stats, cpu)->lat_sum[k];
		return sysfs_emit(buf, "%llu\n", sum);
	}
	for (i = 0; i < VMC_LAT_BUCKETS; i++) {
		sum = 0;
		for_each_possible_cpu(cpu)
			sum += per_cpu_ptr(c->stats, cpu)->lat[k][i];
		n += sysfs_emit_at(buf, n, "%s%llu", i ? " " : "", sum);
	}
	n += sysfs_emit_at(buf, n, "\n");
	return n;
}

static ssize_t vmc_attr_show(struct kobject *kobj, struct attribute *attr,
			     char *buf)
{
	struct vmcache *c = cache_of(kobj);
	size_t klen = strlen(attr->name);
	char *all, *line;
	ssize_t n = -ENOENT;
	int t = tunable_of(attr);

	if (t >= 0) {
		n = vmc_format_tunable(c, t, buf, PAGE_SIZE - 1);
		buf[n++] = '\n';
		return n;
	}
	t = lat_file_of(attr);
	if (t >= 0)
		return show_latency(c, t, buf);
	if (!strcmp(attr->name, VMC_MRC_CURVE))
		return vmc_mrc_curve(c->mrc, buf, PAGE_SIZE);
	if (!strcmp(attr->name, VMC_COMMIT_HOLD))
		return sysfs_emit(buf, "%u\n", READ_ONCE(c->commit_max_hold));
	/* one formatter for the status line and these files */
	all = kmalloc(PAGE_SIZE, GFP_KERNEL);
	if (!all)
		return -ENOMEM;
	vmc_status_pairs(c, all, PAGE_SIZE, "\n");
	for (line = all; line && *line; line = strchr(line, '\n'),
	     line = line ? line + 1 : NULL) {
		if (!strncmp(line, attr->name, klen) && line[klen] == '=') {
			char *end = strchrnul(line, '\n');

			n = sysfs_emit(buf, "%.*s\n",
				       (int)(end - line - klen - 1),
				       line + klen + 1);
			break;
		}
	}
	kfree(all);
	return n;
}

static ssize_t vmc_attr_store_fn(struct kobject *kobj, struct attribute *attr,
				 const char *buf, size_t len)
{
	struct vmcache *c = cache_of(kobj);
	int t = tunable_of(attr);
	char *error = "", val[32];
	int r;

	if (t < 0)
		return -EACCES;
	if (len >= sizeof(val) || memchr(buf, 0, len))
		return -EINVAL;
	memcpy(val, buf, len);
	val[len] = 0;
	r = vmc_set_tunable(c, t, strim(val), &error);
	if (r) {
		DMERR("%s: sysfs %s: %s", c->name, attr->name, error);
		return r;
	}
	return len;
}

static const struct sysfs_ops vmc_sysfs_ops = {
	.show = vmc_attr_show,
	.store = vmc_attr_store_fn,
};

static void vmc_kobj_release(struct kobject *kobj)
{
	kfree(container_of(kobj, struct vmc_sysfs_dir, kobj));
}

static const struct kobj_type vmc_ktype = {
	.sysfs_ops = &vmc_sysfs_ops,
	.default_groups = vmc_groups,
	.release = vmc_kobj_release,
};

/* adds and removals, and renames of other caches' directories */
static DEFINE_MUTEX(vmc_sysfs_lock);

/* the dm name now (dmsetup rename changes it under a live table) */
static void refresh_name(struct vmcache *c)
{
	struct mapped_device *md = dm_table_get_md(c->ti->table);
	char name[DM_NAME_LEN];

	if (dm_copy_name_and_uuid(md, name, NULL))
		return;
	if (strcmp(name, c->name))
		strscpy(c->name, name, DM_NAME_LEN);
}

/*
 * A directory of this name may belong to a cache renamed since its resume:
 * move it to its cache's new name first.
 */
static void rename_stale(const char *name)
{
	struct kobject *k = kset_find_obj(caches_kset, name);
	struct vmc_sysfs_dir *d;

	if (!k)
		return;
	d = container_of(k, struct vmc_sysfs_dir, kobj);
	refresh_name(d->c);
	if (strcmp(d->c->name, name) && kobject_rename(k, d->c->name))
		DMWARN("%s: cannot rename sysfs directory", d->c->name);
	kobject_put(k);
}

static int sysfs_add_locked(struct vmcache *c)
{
	struct vmc_sysfs_dir *d;
	int r;

	if (c->sysfs)
		return 0;
	refresh_name(c);
	rename_stale(c->name);
	d = kzalloc(sizeof(*d), GFP_KERNEL);
	if (!d)
		return -ENOMEM;
	d->c = c;
	r = kobject_init_and_add(&d->kobj, (struct kobj_type *)&vmc_ktype,
				 &caches_kset->kobj, "%s", c->name);
	if (r) {
		kobject_put(&d->kobj);
		return r;
	}
	c->sysfs = d;
	return 0;
}

int vmc_sysfs_add(struct vmcache *c)
{
	int r;

	mutex_lock(&vmc_sysfs_lock);
	r = sysfs_add_locked(c);
	mutex_unlock(&vmc_sysfs_lock);
	return r;
}

/* periodic: follow a dmsetup rename (dm tells targets nothing of it) */
void vmc_sysfs_refresh(struct vmcache *c)
{
	char old[DM_NAME_LEN];

	mutex_lock(&vmc_sysfs_lock);
	if (c->sysfs) {
		strscpy(old, c->name, sizeof(old));
		refresh_name(c);
		if (strcmp(old, c->name)) {
			rename_stale(c->name);
			if (kobject_rename(&c->sysfs->kobj, c->name))
				DMWARN("%s: cannot rename sysfs directory",
				       c->name);
		}
	}
	mutex_unlock(&vmc_sysfs_lock);
}

void vmc_sysfs_del(struct vmcache *c)
{
	mutex_lock(&vmc_sysfs_lock);
	if (c->sysfs) {
		/* kobject_del waits until no show/store runs on it */
		kobject_del(&c->sysfs->kobj);
		kobject_put(&c->sysfs->kobj);
		c->sysfs = NULL;
	}
	mutex_unlock(&vmc_sysfs_lock);
}

int vmc_sysfs_init(void)
{
	unsigned int i, n = 0;

	for (i = 0; i < VMC_NR_TUNABLES; i++) {
		if (!vmc_tunables[i].online &&
		    strcmp(vmc_tunables[i].name, "block_size"))
			continue;
		vmc_attr_store[n].name = vmc_tunables[i].name;
		vmc_attr_store[n].mode = vmc_tunables[i].online ? 0644 : 0444;
		n++;
	}
	for (i = 0; i < ARRAY_SIZE(status_keys); i++) {
		if (!strcmp(status_keys[i], "block_size"))
			continue;
		vmc_attr_store[n].name = status_keys[i];
		vmc_attr_store[n].mode = 0444;
		n++;
	}
	for (i = 0; i < ARRAY_SIZE(lat_files); i++) {
		vmc_attr_store[n].name = lat_files[i];
		vmc_attr_store[n].mode = 0444;
		n++;
	}
	vmc_attr_store[n].name = VMC_MRC_CURVE;
	vmc_attr_store[n++].mode = 0444;
	vmc_attr_store[n].name = VMC_COMMIT_HOLD;
	vmc_attr_store[n++].mode = 0444;
	for (i = 0; i < n; i++)
		vmc_attrs[i] = &vmc_attr_store[i];
	vmc_attrs[n] = NULL;

	caches_kset = kset_create_and_add("caches", NULL,
					  &THIS_MODULE->mkobj.kobj);
	return caches_kset ? 0 : -ENOMEM;
}

void vmc_sysfs_exit(void)
{
	kset_unregister(caches_kset);
}
