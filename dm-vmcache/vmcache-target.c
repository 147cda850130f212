// SPDX-License-Identifier: GPL-2.0
/*
 * dm-vmcache: a device-mapper cache target for slow (virtual) disks.
 *
 * This file: tunables, constructor/destructor, status, messages,
 * suspend/resume and module registration.  The data path is in
 * vmcache-io.c, metadata in vmcache-metadata.c, decisions in
 * vmcache-policy.c, cleaning in vmcache-writeback.c.
 */
#include <linux/module.h>
#include <linux/init.h>
#include <linux/vmalloc.h>
#include "vmcache.h"
#include "vmcache-crc.h"
#include "vmcache-io.h"
#include "vmcache-metadata.h"
#include "vmcache-mrc.h"
#include "vmcache-policy.h"
#include "vmcache-writeback.h"

#define VMC_COMMIT_PERIOD	HZ

static const char * const mode_names[] = {
	[VMC_MODE_WRITETHROUGH] = "writethrough",
	[VMC_MODE_WRITEBACK] = "writeback",
	[VMC_MODE_PASSTHROUGH] = "passthrough",
	NULL
};

static const char * const policy_names[] = {
	[VMC_POLICY_2Q] = "2q",
	[VMC_POLICY_LRU] = "lru",
	NULL
};

static const char * const off_on_names[] = { "off", "on", NULL };

/* one table for the constructor, messages, sysfs and module parameters */
const struct vmc_tunable_desc vmc_tunables[VMC_NR_TUNABLES] = {
	[VMC_T_BLOCK_SIZE] = { "block_size", VMC_BLOCK_SIZE_MIN,
		VMC_BLOCK_SIZE_MAX, false, NULL,
		"block_size must be a power of two from 4096 to 65536" },
	[VMC_T_MODE] = { "mode", 0, 2, true, mode_names,
		"mode must be writethrough, writeback or passthrough" },
	[VMC_T_POLICY] = { "policy", 0, 1, true, policy_names,
		"policy must be 2q or lru" },
	[VMC_T_PROMOTE_AFTER] = { "promote_after", 1, 255, true, NULL,
		"promote_after must be 1 to 255" },
	[VMC_T_SEQ_CUTOFF] = { "sequential_cutoff", 0, 1048576, true, NULL,
		"sequential_cutoff must be 0 to 1048576 (KiB)" },
	[VMC_T_WB_LOW] = { "writeback_low", 0, 100, true, NULL,
		"writeback_low must be 0 to 100 and not above writeback_high" },
	[VMC_T_WB_HIGH] = { "writeback_high", 0, 100, true, NULL,
		"writeback_high must be 0 to 100 and not below writeback_low" },
	[VMC_T_MAX_AGE] = { "max_dirty_age", 0, 3600, true, NULL,
		"max_dirty_age must be 0 to 3600 (seconds)" },
	[VMC_T_WB_INFLIGHT] = { "writeback_max_inflight", 1, 1024, true, NULL,
		"writeback_max_inflight must be 1 to 1024" },
	[VMC_T_WB_FLOOR] = { "writeback_floor", 0, 1048576, true, NULL,
		"writeback_floor must be 0 to 1048576 (KiB/s)" },
	[VMC_T_WB_SORT] = { "writeback_sort", 0, 1, true, NULL,
		"writeback_sort must be 0 or 1" },
	[VMC_T_WB_RETRIES] = { "writeback_retries", 1, 64, true, NULL,
		"writeback_retries must be 1 to 64" },
	[VMC_T_MRC] = { "mrc", 0, 1, true, off_on_names,
		"mrc must be on or off" },
	[VMC_T_MUST_EXIST] = { "must_exist", 0, 1, false, NULL,
		"must_exist must be 0 or 1" },
	[VMC_T_DATA_CRC] = { "data_crc", 0, 1, false, NULL,
		"data_crc must be 0 or 1" },
};

unsigned int vmc_defaults[VMC_NR_TUNABLES] = {
	[VMC_T_BLOCK_SIZE] = VMC_BLOCK_SIZE_DEFAULT,
	[VMC_T_MODE] = VMC_MODE_WRITETHROUGH,
	[VMC_T_POLICY] = VMC_POLICY_2Q,
	[VMC_T_PROMOTE_AFTER] = 1,
	[VMC_T_SEQ_CUTOFF] = 4096,
	[VMC_T_WB_LOW] = 10,
	[VMC_T_WB_HIGH] = 50,
	[VMC_T_MAX_AGE] = 30,
	[VMC_T_WB_INFLIGHT] = 256,
	[VMC_T_WB_FLOOR] = 4096,
	[VMC_T_WB_SORT] = 1,
	[VMC_T_WB_RETRIES] = 8,
	[VMC_T_MRC] = 1,
	[VMC_T_MUST_EXIST] = 0,
	[VMC_T_DATA_CRC] = 0,
};

const char * const vmc_stat_names[VMC_NR_STATS] = {
	[VMC_S_READ_HITS] = "read_hits",
	[VMC_S_READ_MISSES] = "read_misses",
	[VMC_S_WRITE_HITS] = "write_hits",
	[VMC_S_WRITE_MISSES] = "write_misses",
	[VMC_S_BYPASSED] = "bypassed",
	[VMC_S_PROMOTIONS] = "promotions",
	[VMC_S_DEMOTIONS] = "demotions",
	[VMC_S_WB_DONE] = "writeback_done",
	[VMC_S_WB_ERRORS] = "writeback_errors",
	[VMC_S_CACHE_ERRORS] = "cache_errors",
	[VMC_S_ORIGIN_ERRORS] = "origin_errors",
	[VMC_S_DATA_LOSS] = "data_loss",
	[VMC_S_COMMITS] = "commits",
	[VMC_S_CRC_ERRORS] = "crc_errors",
};

/* ------------------------------------------------------------------ */
/* small helpers shared by the other files */

u64 vmc_stat_read(struct vmcache *c, enum vmc_stat s)
{
	u64 sum = 0;
	int cpu;

	for_each_possible_cpu(cpu)
		sum += per_cpu_ptr(c->stats, cpu)->v[s];
	return sum;
}

u16 vmc_now_secs(struct vmcache *c)
{
	return ((jiffies - c->start_time) / HZ) & VMC_SECS_MASK;
}

/* under c->lock: @cblock's entry changed and a flush must commit it */
void vmc_mark_mpage(struct vmcache *c, u32 cblock)
{
	__set_bit(cblock / VMC_ENTRIES_PER_PAGE, c->mpage_dirty);
	c->md_needed = true;
}

/* under c->lock: a lazy change (see md_needed), left to the next commit */
void vmc_mark_mpage_lazy(struct vmcache *c, u32 cblock)
{
	__set_bit(cblock / VMC_ENTRIES_PER_PAGE, c->mpage_dirty);
}

/* dm_table_event takes a mutex: from any context, through the workqueue */
void vmc_raise_event(struct vmcache *c)
{
	queue_work(c->wq, &c->event_work);
}

static void event_work(struct work_struct *ws)
{
	struct vmcache *c = container_of(ws, struct vmcache, event_work);

	dm_table_event(c->ti->table);
}

/* ------------------------------------------------------------------ */
/* tunables */

static int find_tunable(const char *name)
{
	int i;

	for (i = 0; i < VMC_NR_TUNABLES; i++)
		if (!strcmp(name, vmc_tunables[i].name))
			return i;
	return -1;
}

static int parse_tunable(enum vmc_tunable t, const char *val,
			 unsigned int *out)
{
	const struct vmc_tunable_desc *d = &vmc_tunables[t];
	unsigned int v;

	if (d->names) {
		int i = match_string(d->names, -1, val);

		if (i < 0)
			return -EINVAL;
		*out = i;
		return 0;
	}
	if (kstrtouint(val, 10, &v) || v < d->min || v > d->max)
		return -EINVAL;
	if (t == VMC_T_BLOCK_SIZE && !is_power_of_2(v))
		return -EINVAL;
	*out = v;
	return 0;
}

static bool watermarks_ok(const unsigned int *tun)
{
	return tun[VMC_T_WB_LOW] <= tun[VMC_T_WB_HIGH];
}

/* apply an online change to a running cache */
static void tunable_changed(struct vmcache *c, enum vmc_tunable t,
			    unsigned int old)
{
	bool more;

	switch (t) {
	case VMC_T_MODE:
		if (old == VMC_MODE_WRITEBACK && c->nr_dirty) {
			/* leaving writeback: drain what is dirty */
			spin_lock_irq(&c->lock);
			c->flush_active = true;
			spin_unlock_irq(&c->lock);
		}
		DMINFO("%s: mode %s -> %s", c->name, mode_names[old],
		       mode_names[c->tun[t]]);
		dm_table_event(c->ti->table);
		break;
	case VMC_T_POLICY:
		/* in steps: never long with the lock held (IRQs off) */
		do {
			spin_lock_irq(&c->lock);
			more = vmc_policy_switch_step(c, VMC_SCAN_STEP);
			spin_unlock_irq(&c->lock);
			cond_resched();
		} while (more);
		break;
	case VMC_T_MRC:
		vmc_mrc_enable(c->mrc, c->tun[t]);
		break;
	default:
		break;
	}
	vmc_wb_kick(c);
}

/*
 * Set a tunable of a running cache (message, sysfs).  Changes nothing on
 * error; *error says why.
 */
int vmc_set_tunable(struct vmcache *c, enum vmc_tunable t, const char *val,
		    char **error)
{
	unsigned int tun[VMC_NR_TUNABLES], old = c->tun[t];

	if (!vmc_tunables[t].online) {
		*error = "cannot be changed online; reload the table";
		return -EINVAL;
	}
	memcpy(tun, c->tun, sizeof(tun));
	if (parse_tunable(t, val, &tun[t]) || !watermarks_ok(tun)) {
		*error = (char *)vmc_tunables[t].error;
		return -EINVAL;
	}
	if (t == VMC_T_MODE && tun[t] == VMC_MODE_WRITEBACK &&
	    c->md_state != VMC_MD_OK) {
		*error = "metadata is not writable: writeback refused";
		return -EIO;
	}
	WRITE_ONCE(c->tun[t], tun[t]);
	if (old != tun[t])
		tunable_changed(c, t, old);
	return 0;
}

int vmc_format_tunable(struct vmcache *c, enum vmc_tunable t, char *buf,
		       size_t len)
{
	unsigned int v = READ_ONCE(c->tun[t]);

	if (vmc_tunables[t].names)
		return scnprintf(buf, len, "%s", vmc_tunables[t].names[v]);
	return scnprintf(buf, len, "%u", v);
}

/* module parameters: the defaults for tables that do not name an option */
static int param_set_default(const char *val, const struct kernel_param *kp)
{
	enum vmc_tunable t = (unsigned int *)kp->arg - vmc_defaults;
	unsigned int tun[VMC_NR_TUNABLES];
	char buf[32];

	strscpy(buf, val, sizeof(buf));
	strim(buf);
	memcpy(tun, vmc_defaults, sizeof(tun));
	if (parse_tunable(t, buf, &tun[t]) || !watermarks_ok(tun))
		return -EINVAL;
	vmc_defaults[t] = tun[t];
	return 0;
}

static int param_get_default(char *buf, const struct kernel_param *kp)
{
	enum vmc_tunable t = (unsigned int *)kp->arg - vmc_defaults;

	if (vmc_tunables[t].names)
		return sysfs_emit(buf, "%s\n",
				  vmc_tunables[t].names[vmc_defaults[t]]);
	return sysfs_emit(buf, "%u\n", vmc_defaults[t]);
}

/*
 * How long cleanings and new clean copies may wait for a commit (a flush
 * does not commit them; see vmcache.h, md_needed).  Not per cache: tests
 * stretch it to hold such changes across a crash.
 */
static unsigned int vmc_lazy_commit_ms = 1000;
module_param_named(lazy_commit_ms, vmc_lazy_commit_ms, uint, 0644);
MODULE_PARM_DESC(lazy_commit_ms, "Longest wait of lazy metadata changes for a commit, in ms (1000)");

static unsigned long lazy_period(void)
{
	return msecs_to_jiffies(READ_ONCE(vmc_lazy_commit_ms));
}

static const struct kernel_param_ops vmc_default_ops = {
	.set = param_set_default,
	.get = param_get_default,
};

module_param_cb(block_size, &vmc_default_ops, &vmc_defaults[VMC_T_BLOCK_SIZE], 0644);
MODULE_PARM_DESC(block_size, "Default cache block size in bytes (4096)");
module_param_cb(mode, &vmc_default_ops, &vmc_defaults[VMC_T_MODE], 0644);
MODULE_PARM_DESC(mode, "Default cache mode (writethrough)");
module_param_cb(policy, &vmc_default_ops, &vmc_defaults[VMC_T_POLICY], 0644);
MODULE_PARM_DESC(policy, "Default policy (2q)");
module_param_cb(promote_after, &vmc_default_ops, &vmc_defaults[VMC_T_PROMOTE_AFTER], 0644);
MODULE_PARM_DESC(promote_after, "Default misses before promotion (1)");
module_param_cb(sequential_cutoff, &vmc_default_ops, &vmc_defaults[VMC_T_SEQ_CUTOFF], 0644);
MODULE_PARM_DESC(sequential_cutoff, "Default sequential cutoff in KiB, 0 = off (4096)");
module_param_cb(writeback_low, &vmc_default_ops, &vmc_defaults[VMC_T_WB_LOW], 0644);
MODULE_PARM_DESC(writeback_low, "Default low dirty watermark, percent (10)");
module_param_cb(writeback_high, &vmc_default_ops, &vmc_defaults[VMC_T_WB_HIGH], 0644);
MODULE_PARM_DESC(writeback_high, "Default high dirty watermark, percent (50)");
module_param_cb(max_dirty_age, &vmc_default_ops, &vmc_defaults[VMC_T_MAX_AGE], 0644);
MODULE_PARM_DESC(max_dirty_age, "Default maximum age of dirty data in seconds (30)");
module_param_cb(writeback_max_inflight, &vmc_default_ops, &vmc_defaults[VMC_T_WB_INFLIGHT], 0644);
MODULE_PARM_DESC(writeback_max_inflight, "Default writeback blocks in flight (256)");
module_param_cb(writeback_floor, &vmc_default_ops, &vmc_defaults[VMC_T_WB_FLOOR], 0644);
MODULE_PARM_DESC(writeback_floor, "Default writeback floor rate in KiB/s (4096)");
module_param_cb(mrc, &vmc_default_ops, &vmc_defaults[VMC_T_MRC], 0644);
MODULE_PARM_DESC(mrc, "Default for estimating the hit ratio at other sizes (on)");

/* ------------------------------------------------------------------ */
/* status */

static const char *md_state_name(struct vmcache *c)
{
	static const char * const names[] = {
		[VMC_MD_OK] = "ok",
		[VMC_MD_NEEDS_CHECK] = "needs_check",
		[VMC_MD_FAIL] = "fail",
	};

	return names[c->md_state];
}

/* metadata pages holding at least one mapping, both copies counted */
static u32 mpages_used(struct vmcache *c)
{
	return 2 * min_t(u32, c->layout.nr_mpages,
			 DIV_ROUND_UP(c->nr_mapped, VMC_ENTRIES_PER_PAGE));
}

/*
 * Status grammar (Documentation/vmcache.rst, "Status line"): key=value
 * tokens in a fixed order, new keys only appended.  The same keys name the
 * sysfs files.
 */
unsigned int vmc_status_pairs(struct vmcache *c, char *buf, size_t len,
			      const char *sep)
{
	unsigned int sz = 0, i;

#define EMIT(fmt, ...) (sz += scnprintf(buf + sz, len - sz, fmt, ##__VA_ARGS__))
	EMIT("version=1%smode=%s%spolicy=%s%sblock_size=%u%smetadata=%s",
	     sep, mode_names[c->tun[VMC_T_MODE]],
	     sep, policy_names[c->tun[VMC_T_POLICY]],
	     sep, c->tun[VMC_T_BLOCK_SIZE], sep, md_state_name(c));
	EMIT("%smetadata_used=%u%smetadata_total=%u", sep,
	     VMC_SB_SLOTS + mpages_used(c), sep,
	     VMC_SB_SLOTS + 2 * c->layout.nr_mpages + 2 * c->layout.nr_cpages);
	EMIT("%sblocks_total=%u%sblocks_used=%u%sblocks_dirty=%u", sep,
	     c->nr_blocks, sep, READ_ONCE(c->nr_valid_blocks), sep,
	     READ_ONCE(c->nr_dirty));
	for (i = 0; i <= VMC_S_WB_DONE; i++)
		EMIT("%s%s=%llu", sep, vmc_stat_names[i], vmc_stat_read(c, i));
	EMIT("%swriteback_inflight=%d", sep,
	     atomic_read(&c->wb_inflight_blocks));
	for (i = VMC_S_WB_ERRORS; i <= VMC_S_DATA_LOSS; i++)
		EMIT("%s%s=%llu", sep, vmc_stat_names[i], vmc_stat_read(c, i));
	EMIT("%sflush=%s%sdegraded=%d%scommits=%llu%sseq=%llu", sep,
	     READ_ONCE(c->flush_active) ? "active" : "idle", sep,
	     c->degraded || c->origin_failing, sep,
	     vmc_stat_read(c, VMC_S_COMMITS), sep, c->seq);
	sz += vmc_mrc_status(c->mrc, buf + sz, len - sz, sep);
	EMIT("%sdata_crc=%d%scrc_errors=%llu", sep, c->data_crc, sep,
	     vmc_stat_read(c, VMC_S_CRC_ERRORS));
#undef EMIT
	return sz;
}

static void vmc_status(struct dm_target *ti, status_type_t type,
		       unsigned int status_flags, char *result,
		       unsigned int maxlen)
{
	struct vmcache *c = ti->private;
	unsigned int sz = 0, i;

	switch (type) {
	case STATUSTYPE_INFO:
		vmc_status_pairs(c, result, maxlen, " ");
		break;
	case STATUSTYPE_TABLE:
		DMEMIT("%s %s %u", c->cache_dev->name, c->origin_dev->name,
		       2 * VMC_NR_TUNABLES);
		for (i = 0; i < VMC_NR_TUNABLES; i++) {
			DMEMIT(" %s ", vmc_tunables[i].name);
			sz += vmc_format_tunable(c, i, result + sz,
						 maxlen - sz);
		}
		break;
	default:
		break;
	}
}

/* ------------------------------------------------------------------ */
/* messages */

static int vmc_message(struct dm_target *ti, unsigned int argc, char **argv,
		       char *result, unsigned int maxlen)
{
	struct vmcache *c = ti->private;
	char *error = "unknown message";
	int t, r = -EINVAL;

	/*
	 * A reloaded table is the live one from the table swap on, before
	 * its first preresume has read the metadata again: until then a
	 * message could walk a block table being rebuilt, or commit it.
	 */
	if (!smp_load_acquire(&c->loaded)) {
		DMERR("%s: message '%s' refused: table not resumed yet",
		      c->name, argv[0]);
		return -EBUSY;
	}

	if (argc == 3 && !strcmp(argv[0], "set")) {
		t = find_tunable(argv[1]);
		error = "unknown tunable";
		if (t >= 0)
			r = vmc_set_tunable(c, t, argv[2], &error);
	} else if (argc == 2 && (!strcmp(argv[0], "mode") ||
				 !strcmp(argv[0], "policy"))) {
		r = vmc_set_tunable(c, find_tunable(argv[0]), argv[1], &error);
	} else if (argc == 1 && !strcmp(argv[0], "flush")) {
		spin_lock_irq(&c->lock);
		c->flush_active = c->nr_dirty != 0;
		spin_unlock_irq(&c->lock);
		vmc_wb_kick(c);
		r = 0;
	} else if (argc == 1 && !strcmp(argv[0], "invalidate")) {
		u32 i;

		for (i = 0; i < c->nr_blocks; i += VMC_SCAN_STEP) {
			spin_lock_irq(&c->lock);
			vmc_policy_invalidate_clean(c, i, VMC_SCAN_STEP);
			spin_unlock_irq(&c->lock);
			cond_resched();
		}
		r = vmc_commit(c, false);
		error = "metadata commit failed";
	} else if (argc == 2 && !strcmp(argv[0], "stats") &&
		   !strcmp(argv[1], "reset")) {
		int cpu;

		for_each_possible_cpu(cpu)
			memset(per_cpu_ptr(c->stats, cpu), 0,
			       sizeof(struct vmc_stats));
		vmc_mrc_reset(c->mrc);
		r = 0;
	} else if (argc == 1 && !strcmp(argv[0], "commit")) {
		r = vmc_commit(c, false);
		error = "metadata commit failed";
	}
	if (r)
		DMERR("%s: message '%s%s%s': %s", c->name, argv[0],
		      argc > 1 ? " " : "", argc > 1 ? argv[1] : "", error);
	return r;
}

/* ------------------------------------------------------------------ */
/* construction and teardown */

/*
 * Devices in use by vmcache tables.  Two mapped devices sharing a cache or
 * an origin would each write metadata or data the other does not know of;
 * a reload (new table, same mapped device) is allowed.
 */
static LIST_HEAD(vmc_all);
static DEFINE_MUTEX(vmc_all_lock);

static int claim_devices(struct vmcache *c, char **error)
{
	struct mapped_device *md = dm_table_get_md(c->ti->table);
	dev_t cd = c->cache_dev->bdev->bd_dev, od = c->origin_dev->bdev->bd_dev;
	struct vmcache *o;
	int r = 0;

	mutex_lock(&vmc_all_lock);
	list_for_each_entry(o, &vmc_all, all) {
		dev_t ocd = o->cache_dev->bdev->bd_dev;
		dev_t ood = o->origin_dev->bdev->bd_dev;

		if (dm_table_get_md(o->ti->table) == md) {
			/* a reload must not turn the live origin into a cache */
			if (ood == cd || ocd == od) {
				*error = "Cache and origin swapped against the live table";
				r = -EINVAL;
				break;
			}
			continue;
		}
		if (ocd == cd || ood == cd || ocd == od || ood == od) {
			*error = "Device already used by another vmcache device";
			r = -EBUSY;
			break;
		}
	}
	if (!r)
		list_add(&c->all, &vmc_all);
	mutex_unlock(&vmc_all_lock);
	return r;
}

/* a mapping entry holds 40 bits of origin block number */
static int origin_fits(struct vmcache *c, unsigned int block_shift,
		       char **error)
{
	if ((c->origin_sectors >> block_shift) <= VMC_ENTRY_OBLOCK_MASK + 1)
		return 0;
	*error = "Origin too large for this block size (2^40 blocks at most)";
	return -EINVAL;
}

/*
 * Read the metadata for the constructor.  A reload's live table (same
 * mapped device) may be committing: its commits are held off meanwhile, so
 * the read is never torn by them and never mistaken for damage.  Holding
 * vmc_all_lock keeps that table from being destroyed under us.
 */
static int load_metadata(struct vmcache *c, const bool *given, char **error)
{
	struct mapped_device *md = dm_table_get_md(c->ti->table);
	struct vmcache *o, *live = NULL;
	int r;

	mutex_lock(&vmc_all_lock);
	/* live, or suspended with its final commit made: its state is ours */
	list_for_each_entry(o, &vmc_all, all)
		if (o != c && dm_table_get_md(o->ti->table) == md &&
		    READ_ONCE(o->loaded))
			live = o;
	if (live)
		mutex_lock(&live->commit_lock);
	c->live_sibling = live;
	/* before a blank cache is formatted, then with the real block size */
	r = origin_fits(c, ilog2(c->tun[VMC_T_BLOCK_SIZE] >> SECTOR_SHIFT),
			error);
	if (!r)
		r = vmc_md_open(c, c->tun[VMC_T_MUST_EXIST],
				given[VMC_T_BLOCK_SIZE] ?
				c->tun[VMC_T_BLOCK_SIZE] : 0,
				given[VMC_T_DATA_CRC] ?
				(int)c->tun[VMC_T_DATA_CRC] : -1, error);
	if (!r)
		r = origin_fits(c, c->block_shift, error);
	/*
	 * Beside a live table the mappings are read at the first resume,
	 * taken over from that table if it is unchanged (vmc_preresume).
	 */
	if (!r && !live) {
		r = vmc_policy_create(c);
		if (r)
			*error = "Cannot allocate block table";
	}
	if (!r && !live)
		r = vmc_md_load(c, error);
	if (live)
		mutex_unlock(&live->commit_lock);
	mutex_unlock(&vmc_all_lock);
	return r;
}

/*
 * The table this one replaces, if its in-memory state may be taken over:
 * suspended after a clean final commit, same cache, origin, geometry and
 * policy.  Called with vmc_all_lock held, which keeps it alive.
 */
static struct vmcache *replaced_table(struct vmcache *c)
{
	struct mapped_device *md = dm_table_get_md(c->ti->table);
	struct vmcache *o;

	list_for_each_entry(o, &vmc_all, all) {
		if (o == c || dm_table_get_md(o->ti->table) != md)
			continue;
		if (READ_ONCE(o->loaded) && o->md_frozen && o->blocks &&
		    o->md_state == VMC_MD_OK &&
		    o->cache_dev->bdev == c->cache_dev->bdev &&
		    o->origin_dev->bdev == c->origin_dev->bdev &&
		    o->origin_sectors == c->origin_sectors &&
		    o->nr_blocks == c->nr_blocks &&
		    o->block_shift == c->block_shift &&
		    o->layout.data_start == c->layout.data_start &&
		    o->tun[VMC_T_POLICY] == c->tun[VMC_T_POLICY] &&
		    !memcmp(o->uuid, c->uuid, sizeof(c->uuid)))
			return o;
	}
	return NULL;
}

static void release_devices(struct vmcache *c)
{
	mutex_lock(&vmc_all_lock);
	if (!list_empty(&c->all))
		list_del_init(&c->all);
	mutex_unlock(&vmc_all_lock);
}

static void periodic_work(struct work_struct *ws)
{
	struct vmcache *c = container_of(to_delayed_work(ws), struct vmcache,
					 periodic_work);

	/*
	 * FLUX is cleared by the first commit after a quiet second (no
	 * write over clean blocks for a whole tick); this ages it.
	 */
	spin_lock_irq(&c->lock);
	if (c->flux_recent)
		c->flux_recent--;
	spin_unlock_irq(&c->lock);
	vmc_sysfs_refresh(c);
	/* bounds the time evictions and lazy changes wait for a commit */
	if (time_after_eq(jiffies, c->lazy_due)) {
		c->lazy_due = jiffies + lazy_period();
		vmc_commit_lazy(c);
	} else {
		vmc_commit_soon(c);
	}
	queue_delayed_work(c->wq, &c->periodic_work, VMC_COMMIT_PERIOD);
}

/* stop background work and wait for our own I/O */
static void quiesce(struct vmcache *c)
{
	vmc_wb_stop(c);
	cancel_delayed_work_sync(&c->periodic_work);
	flush_workqueue(c->wq);
	flush_workqueue(c->bg_wq);
	wait_var_event(&c->internal_io, !atomic_read(&c->internal_io));
}

/* idempotent: copes with a half-built cache (constructor error path) */
static void vmc_destroy(struct vmcache *c)
{
	/* postsuspend committed; a table never resumed must not write */
	if (c->wq && c->bg_wq)
		quiesce(c);
	if (c->bg_wq)
		destroy_workqueue(c->bg_wq);
	if (c->wq)
		destroy_workqueue(c->wq);
	vmc_sysfs_del(c);
	release_devices(c);
	vmc_wb_destroy(c);
	bioset_exit(&c->bs);
	vmc_policy_destroy(c);
	vmc_md_close(c);
	free_percpu(c->stats);
	vmc_mrc_destroy(c->mrc);
	if (c->cache_dev)
		dm_put_device(c->ti, c->cache_dev);
	if (c->origin_dev)
		dm_put_device(c->ti, c->origin_dev);
	kfree(c->name);
	kfree(c);
}

static int parse_options(struct vmcache *c, struct dm_arg_set *as,
			 bool *given, char **error)
{
	static const struct dm_arg _args[] = {
		{0, 2 * VMC_NR_TUNABLES, "Invalid number of optional arguments"},
	};
	unsigned int argc;
	int r, t;

	if (!as->argc)
		return 0;
	/* dm_read_arg_group's sscanf would wrap 2^32 + 2 to 2 */
	if (kstrtouint(as->argv[0], 10, &argc)) {
		*error = "Invalid number of optional arguments";
		return -EINVAL;
	}
	r = dm_read_arg_group(_args, as, &argc, error);
	if (r)
		return r;
	if (argc % 2) {
		*error = "Optional arguments must be key value pairs";
		return -EINVAL;
	}
	while (argc) {
		const char *key = dm_shift_arg(as), *val = dm_shift_arg(as);

		argc -= 2;
		t = find_tunable(key);
		if (t < 0) {
			*error = "Unknown optional argument";
			return -EINVAL;
		}
		if (given[t]) {
			*error = "Optional argument given twice";
			return -EINVAL;
		}
		given[t] = true;
		if (parse_tunable(t, val, &c->tun[t])) {
			*error = (char *)vmc_tunables[t].error;
			return -EINVAL;
		}
	}
	if (as->argc) {
		*error = "Too many arguments";
		return -EINVAL;
	}
	if (!watermarks_ok(c->tun)) {
		*error = "writeback_low must not exceed writeback_high";
		return -EINVAL;
	}
	return 0;
}

static int open_devices(struct vmcache *c, struct dm_arg_set *as,
			char **error)
{
	struct dm_target *ti = c->ti;
	int r;

	r = dm_get_device(ti, dm_shift_arg(as), dm_table_get_mode(ti->table),
			  &c->cache_dev);
	if (r) {
		*error = "Cannot open cache device";
		return r;
	}
	r = dm_get_device(ti, dm_shift_arg(as), dm_table_get_mode(ti->table),
			  &c->origin_dev);
	if (r) {
		*error = "Cannot open origin device";
		return r;
	}
	if (c->cache_dev->bdev == c->origin_dev->bdev) {
		*error = "Cache and origin are the same device";
		return -EINVAL;
	}
	c->origin_sectors = bdev_nr_sectors(c->origin_dev->bdev);
	if (ti->len != c->origin_sectors) {
		*error = "Target length must equal the origin size";
		return -EINVAL;
	}
	if (ti->begin) {
		*error = "Target must start at sector 0";
		return -EINVAL;
	}
	return 0;
}

static int vmc_ctr(struct dm_target *ti, unsigned int argc, char **argv)
{
	bool given[VMC_NR_TUNABLES] = { };
	struct dm_arg_set as = { .argc = argc, .argv = argv };
	struct vmcache *c;
	int r;

	if (argc < 2) {
		ti->error = "Need <cache_dev> <origin_dev> [<#opts> <key> <value>...]";
		return -EINVAL;
	}
	c = kzalloc(sizeof(*c), GFP_KERNEL);
	if (!c) {
		ti->error = "Cannot allocate cache";
		return -ENOMEM;
	}
	c->ti = ti;
	ti->private = c;
	INIT_LIST_HEAD(&c->all);
	memcpy(c->tun, vmc_defaults, sizeof(c->tun));
	spin_lock_init(&c->lock);
	spin_lock_init(&c->defer_lock);
	mutex_init(&c->commit_lock);
	mutex_init(&c->crc_load_lock);
	bio_list_init(&c->crc_bios);
	bio_list_init(&c->crc_parked);
	INIT_WORK(&c->crc_work, vmc_crc_work);
	bio_list_init(&c->flush_bios);
	bio_list_init(&c->fill_bios);
	bio_list_init(&c->commit_wait);
	bio_list_init(&c->remap_bios);
	bio_list_init(&c->discard_bios);
	INIT_WORK(&c->commit_work, vmc_commit_work);
	INIT_WORK(&c->bg_commit_work, vmc_bg_commit_work);
	INIT_WORK(&c->fill_work, vmc_fill_work);
	INIT_WORK(&c->discard_work, vmc_discard_work);
	INIT_WORK(&c->event_work, event_work);
	INIT_DELAYED_WORK(&c->periodic_work, periodic_work);
	c->lazy_due = jiffies + lazy_period();
	atomic_set(&c->internal_io, 0);
	atomic_set(&c->origin_unflushed, 0);
	c->start_time = jiffies;
	c->last_io = jiffies;
	/* nothing of ours reaches the disk before the first preresume */
	c->md_frozen = true;
	c->name = kzalloc(DM_NAME_LEN, GFP_KERNEL);
	r = c->name ? 0 : -ENOMEM;
	if (!r && dm_copy_name_and_uuid(dm_table_get_md(ti->table), c->name,
					NULL))
		strscpy(c->name, dm_device_name(dm_table_get_md(ti->table)),
			DM_NAME_LEN);
	ti->error = "Cannot allocate cache";

	if (!r)
		r = open_devices(c, &as, &ti->error);
	if (!r)
		r = claim_devices(c, &ti->error);
	if (!r)
		r = parse_options(c, &as, given, &ti->error);
	/* loaded here for precise errors, refreshed at the first resume */
	if (!r)
		r = load_metadata(c, given, &ti->error);
	if (r)
		goto bad;

	r = -ENOMEM;
	ti->error = "Cannot allocate cache resources";
	/* bound and unbound: see struct vmcache */
	c->wq = alloc_workqueue("vmcache-%s", WQ_MEM_RECLAIM, 0, c->name);
	c->bg_wq = alloc_workqueue("vmcache-bg-%s", WQ_MEM_RECLAIM | WQ_UNBOUND,
				   0, c->name);
	if (!c->wq || !c->bg_wq)
		goto bad;
	/* first: it initialises the works that teardown cancels */
	r = vmc_wb_create(c);
	if (!r)
		r = bioset_init(&c->bs, BIO_POOL_SIZE,
				vmc_own_bio_front_pad(), BIOSET_NEED_BVECS);
	c->stats = alloc_percpu(struct vmc_stats);
	if (!r && !c->stats)
		r = -ENOMEM;
	/* a fixed size, whatever the cache's */
	c->mrc = r ? NULL : vmc_mrc_create(c->nr_blocks);
	if (!r && !c->mrc)
		r = -ENOMEM;
	if (!r)
		vmc_mrc_enable(c->mrc, c->tun[VMC_T_MRC]);
	if (r)
		goto bad;

	ti->per_io_data_size = sizeof(struct vmc_bio);
	ti->num_flush_bios = 1;
	ti->flush_supported = true;
	ti->num_discard_bios = 1;
	ti->discards_supported = true;
	return 0;
bad:
	vmc_destroy(c);
	ti->private = NULL;
	return r;
}

static void vmc_dtr(struct dm_target *ti)
{
	vmc_destroy(ti->private);
}

/*
 * Every table goes through here before its destructor (dm suspends a
 * device before removing it), so this is where the final state is
 * committed, marked as a clean shutdown.
 */
static void vmc_postsuspend(struct dm_target *ti)
{
	struct vmcache *c = ti->private;

	vmc_sysfs_del(c);
	quiesce(c);
	if (c->loaded && c->md_state == VMC_MD_OK && vmc_commit(c, true))
		DMERR("%s: metadata commit at suspend failed", c->name);
}

static int vmc_preresume(struct dm_target *ti)
{
	struct vmcache *c = ti->private;
	char *error;
	int r;

	if (c->loaded) {
		WRITE_ONCE(c->md_frozen, false);
		return 0;
	}
	mutex_lock(&vmc_all_lock);
	r = vmc_md_refresh(c, replaced_table(c), &error);
	mutex_unlock(&vmc_all_lock);
	if (r) {
		DMERR("%s: cannot load metadata: %s", c->name, error);
		return r;
	}
	WRITE_ONCE(c->md_frozen, false);
	/* pairs with vmc_message(): the block table is whole from now on */
	smp_store_release(&c->loaded, true);
	if (c->nr_valid_blocks)
		DMINFO("%s: loaded %u cached blocks, %u dirty", c->name,
		       c->nr_valid_blocks, c->nr_dirty);
	return 0;
}

static void vmc_resume(struct dm_target *ti)
{
	struct vmcache *c = ti->private;

	if (vmc_sysfs_add(c))
		DMWARN("%s: cannot create sysfs directory", c->name);
	queue_delayed_work(c->wq, &c->periodic_work, VMC_COMMIT_PERIOD);
	vmc_wb_start(c);
}

static int vmc_iterate_devices(struct dm_target *ti,
			       iterate_devices_callout_fn fn, void *data)
{
	struct vmcache *c = ti->private;
	int r;

	r = fn(ti, c->cache_dev, 0, bdev_nr_sectors(c->cache_dev->bdev), data);
	if (!r)
		r = fn(ti, c->origin_dev, 0, ti->len, data);
	return r;
}

static void vmc_io_hints(struct dm_target *ti, struct queue_limits *limits)
{
	struct vmcache *c = ti->private;

	/*
	 * Sub-block writes are cached, but the first one into a block the
	 * disk does not map costs a commit when it is FUA (a filesystem log
	 * writing 512 bytes at a time): ask for 4 KiB (a block at least),
	 * as a 512e disk does, so mkfs picks 4 KiB log sectors.
	 */
	limits->physical_block_size = max_t(unsigned int,
					    limits->physical_block_size, SZ_4K);
	/* I/O smaller than a sub-block is never cached */
	limits->io_min = max3(limits->io_min, limits->physical_block_size,
			      (unsigned int)SECTOR_SIZE << c->sub_shift);
	limits->io_opt = max_t(unsigned int, limits->io_opt,
			       c->tun[VMC_T_BLOCK_SIZE]);
}

static struct target_type vmcache_target = {
	.name = "vmcache",
	.version = {1, 0, 0},
	.module = THIS_MODULE,
	.ctr = vmc_ctr,
	.dtr = vmc_dtr,
	.map = vmc_map,
	.end_io = vmc_end_io,
	.status = vmc_status,
	.message = vmc_message,
	.postsuspend = vmc_postsuspend,
	.preresume = vmc_preresume,
	.resume = vmc_resume,
	.iterate_devices = vmc_iterate_devices,
	.io_hints = vmc_io_hints,
};

static int __init dm_vmcache_init(void)
{
	int r = vmc_sysfs_init();

	if (r)
		return r;
	r = dm_register_target(&vmcache_target);
	if (r) {
		DMERR("register failed %d", r);
		vmc_sysfs_exit();
	}
	return r;
}

static void __exit dm_vmcache_exit(void)
{
	dm_unregister_target(&vmcache_target);
	vmc_sysfs_exit();
}

module_init(dm_vmcache_init);
module_exit(dm_vmcache_exit);

MODULE_DESCRIPTION(DM_NAME " cache target for slow virtual disks");
MODULE_AUTHOR("dm-vmcache developers");
MODULE_LICENSE("GPL");
