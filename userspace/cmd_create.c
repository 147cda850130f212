// SPDX-License-Identifier: GPL-2.0
/*
 * vmcachectl create, assemble and remove.
 */
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "args.h"
#include "cli.h"
#include "cmds.h"
#include "dm.h"
#include "ondisk.h"

#define DM_NAME_MAX 127
#define VMCACHETAB "/etc/vmcachetab"

int create_parse(int argc, char **argv, struct create_req *r)
{
	const char *pos[1] = { NULL };
	const struct opt opts[] = {
		{ "cache", 'c', OPT_STR, &r->cache, NULL },
		{ "origin", 'o', OPT_STR, &r->origin, NULL },
		{ "mode", 'm', OPT_TABLE, &r->table, "mode" },
		{ "block-size", 'b', OPT_TABLE, &r->table, "block_size" },
		{ "policy", 'p', OPT_TABLE, &r->table, "policy" },
		{ "set", 's', OPT_PAIR, &r->table, NULL },
		{ "must-exist", 0, OPT_FLAG, &r->must_exist, NULL },
		{ "force", 'f', OPT_FLAG, &r->force, NULL },
		{ "dry-run", 'n', OPT_FLAG, &r->dry_run, NULL },
	};
	const struct cmd_spec spec = {
		"create",
		"create NAME --cache DEV --origin DEV [--mode M] [--block-size S]\n"
		"                  [--policy P] [--set key=value]... [--must-exist] [--force] [--dry-run]\n"
		"Check both devices, build the table and create /dev/mapper/NAME.\n"
		"A blank cache device is formatted by the kernel; one holding a cache is loaded.\n"
		"  -c, --cache DEV        the fast device\n"
		"  -o, --origin DEV       the slow device; NAME gets its size\n"
		"  -m, --mode M           writethrough (default), writeback or passthrough\n"
		"  -b, --block-size S     cache block size, 4k..64k (a new cache only)\n"
		"  -p, --policy P         2q (default) or lru\n"
		"  -s, --set key=value    any other option, repeatable\n"
		"      --must-exist       refuse a blank cache device (reassembly)\n"
		"  -f, --force            discard a cache that belongs to another origin,\n"
		"                         or overwrite data that is not a cache\n"
		"  -n, --dry-run          check and print the table, create nothing",
		opts, ARRAY_SIZE(opts), pos, 1, 1, vmc_tunables_help,
	};
	int ret;

	ret = parse_args(argc, argv, &spec);
	r->name = pos[0];
	if (ret != PARSE_RUN)
		return ret;
	if (!r->cache || !r->origin) {
		vmc_err("create: --cache and --origin are required");
		print_usage(&spec, true);
		return EXIT_USAGE;
	}
	return PARSE_RUN;
}

static int check_name(const char *name)
{
	if (!*name || strlen(name) > DM_NAME_MAX || strchr(name, '/') ||
	    !strcmp(name, ".") || !strcmp(name, "..")) {
		vmc_err("'%s' is not a valid device name (1..%d characters, no '/')",
			name, DM_NAME_MAX);
		return -1;
	}
	return 0;
}

static int open_blk(struct vmc_dev *d, const char *path, const char *role,
		    int flags)
{
	if (vmc_dev_open(d, path, flags))
		return -1;
	if (!d->is_blk) {
		vmc_err("%s device %s is not a block device", role, path);
		vmc_dev_close(d);
		return -1;
	}
	if (!d->sectors) {
		vmc_err("%s device %s is empty", role, path);
		vmc_dev_close(d);
		return -1;
	}
	return 0;
}

/* the device a cache device will hold, decided from its superblock */
static int judge_cache(struct create_req *r, struct vmc_dev *c,
		       const struct vmc_meta *m, uint64_t origin_sectors,
		       bool *wipe)
{
	const char *bs_opt = vmc_table_get(&r->table, "block_size");
	uint64_t bs = bs_opt ? strtoull(bs_opt, NULL, 10) : VMC_BLOCK_SIZE_DEFAULT;
	char why[200] = "";
	struct vmc_layout l;

	if (m->slot >= 0) {
		uint64_t osz = le64toh(m->sb.origin_sectors);

		if (osz != origin_sectors)
			snprintf(why, sizeof(why),
				 "it caches an origin of %" PRIu64 " sectors, %s has %" PRIu64,
				 osz, r->origin, origin_sectors);
		else if (bs_opt && bs != le32toh(m->sb.block_size))
			snprintf(why, sizeof(why), "its block size is %u, not %" PRIu64,
				 le32toh(m->sb.block_size), bs);
		if (!why[0])
			return 0;	/* the kernel loads it */
		if (!r->force) {
			vmc_err("cache device %s holds another cache (%" PRIu64 " blocks mapped, %" PRIu64
				" dirty): %s; name the right origin, or use --force to discard that cache",
				c->path, le64toh(m->sb.nr_valid),
				le64toh(m->sb.nr_dirty), why);
			return -1;
		}
		vmc_note("--force: %s the cache on %s (%s; %" PRIu64
			 " dirty blocks are lost)", r->dry_run ? "would discard" :
			 "discarding", c->path, why, le64toh(m->sb.nr_dirty));
		*wipe = true;
	} else if (!m->blank) {
		if (r->must_exist) {
			vmc_err("cache device %s holds no valid vmcache superblock ('vmcachectl check %s' says why)",
				c->path, c->path);
			return -1;
		}
		if (!r->force) {
			vmc_err("cache device %s holds data that is not a vmcache cache (a filesystem? 'vmcachectl check %s' says more); use --force to overwrite it",
				c->path, c->path);
			return -1;
		}
		*wipe = true;
	} else if (r->must_exist) {
		vmc_err("cache device %s is blank but --must-exist expects a cache on it: was it replaced or wiped? Any dirty data it held is gone; create the cache without --must-exist to start afresh",
			c->path);
		return -1;
	}
	vmc_compute_layout(c->sectors, (uint32_t)bs, &l);
	if (l.nr_blocks < VMC_MIN_BLOCKS) {
		uint64_t need = vmc_data_start_for(vmc_mpages_for(VMC_MIN_BLOCKS)) +
				VMC_MIN_BLOCKS * (bs >> 9);
		char size[32];

		vmc_err("cache device %s is too small: it holds %" PRIu64
			" blocks of %" PRIu64 " bytes, at least %u are needed (%s)",
			c->path, (uint64_t)l.nr_blocks, bs, VMC_MIN_BLOCKS,
			fmt_bytes(need * 512, size, sizeof(size)));
		return -1;
	}
	return 0;
}

static void dev_word(char *buf, const struct vmc_dev *d)
{
	snprintf(buf, VMC_TABLE_WORD, "%u:%u", major(d->rdev), minor(d->rdev));
}

int create_run(struct create_req *r)
{
	struct vmc_dev cache, origin;
	struct vmc_dm_info info;
	struct vmc_meta m;
	struct stat st;
	char params[2048], err[200];
	bool wipe = false;
	int ret = EXIT_FAIL;

	if (check_name(r->name))
		return EXIT_USAGE;
	if (r->must_exist && r->force) {
		vmc_err("--must-exist and --force contradict each other");
		return EXIT_USAGE;
	}
	if (r->must_exist && vmc_table_set(&r->table, "must_exist", "1", err,
					   sizeof(err)))
		return EXIT_FAIL;
	if (!r->dry_run) {
		if (vmc_dm_info(r->name, &info))
			return EXIT_FAIL;
		if (info.exists) {
			vmc_err("a device-mapper device named %s already exists",
				r->name);
			return EXIT_FAIL;
		}
	}
	if (open_blk(&origin, r->origin, "origin", 0))
		return EXIT_FAIL;
	if (!stat(r->cache, &st) && st.st_rdev == origin.rdev) {
		vmc_err("the cache and the origin are the same device");
		goto out_origin;
	}
	if (open_blk(&cache, r->cache, "cache", VMC_DEV_WRITE))
		goto out_origin;
	if (vmc_meta_read_sb(&cache, &m) ||
	    judge_cache(r, &cache, &m, origin.sectors, &wipe))
		goto out;
	r->table.len = origin.sectors;
	dev_word(r->table.cache, &cache);
	dev_word(r->table.origin, &origin);
	if (vmc_table_params(&r->table, params, sizeof(params))) {
		vmc_err("table too long");
		goto out;
	}
	if (r->dry_run) {
		printf("0 %" PRIu64 " %s %s\n", r->table.len, VMC_TARGET, params);
		ret = EXIT_OK;
		goto out;
	}
	if (wipe && vmc_wipe(&cache))
		goto out;
	/* release our exclusive opens: the kernel claims both devices */
	vmc_dev_close(&cache);
	vmc_dev_close(&origin);
	return vmc_dm_create(r->name, r->table.len, params) ? EXIT_FAIL : EXIT_OK;
out:
	vmc_dev_close(&cache);
out_origin:
	vmc_dev_close(&origin);
	return ret;
}

int cmd_create(int argc, char **argv)
{
	struct create_req r = { 0 };
	int ret = create_parse(argc, argv, &r);

	if (ret != PARSE_RUN)
		return ret;
	ret = create_run(&r);
	if (ret == EXIT_OK && !r.dry_run)
		printf("/dev/mapper/%s\n", r.name);
	return ret;
}

int vmcachetab_parse_line(char *line, struct create_req *r, char *err,
			  size_t errlen)
{
	char *save = NULL, *w[3], *tok;

	memset(r, 0, sizeof(*r));
	line[strcspn(line, "#\n")] = '\0';
	for (int i = 0; i < 3; i++) {
		w[i] = strtok_r(i ? NULL : line, " \t", &save);
		if (!w[i]) {
			if (!i)
				return 0;
			snprintf(err, errlen, "expected NAME CACHE_DEV ORIGIN_DEV [key=value]...");
			return -1;
		}
	}
	r->name = w[0];
	r->cache = w[1];
	r->origin = w[2];
	while ((tok = strtok_r(NULL, " \t", &save)))
		if (vmc_table_set_pair(&r->table, tok, err, errlen))
			return -1;
	/* a blank cache device at boot is refused unless the line says otherwise */
	r->must_exist = !vmc_table_get(&r->table, "must_exist");
	return 1;
}

static int assemble_one(struct create_req *r)
{
	struct vmc_dm_info info;
	uint64_t len;
	char *params;
	int ret;

	if (vmc_dm_info(r->name, &info))
		return EXIT_FAIL;
	if (info.exists) {
		if (vmc_dm_table(r->name, &len, &params))
			return EXIT_FAIL;
		free(params);
		printf("%s: already active, skipped\n", r->name);
		return EXIT_OK;
	}
	ret = create_run(r);
	if (ret == EXIT_OK)
		printf("%s: %s /dev/mapper/%s\n", r->name,
		       r->dry_run ? "would create" : "created", r->name);
	return ret;
}

int cmd_assemble(int argc, char **argv)
{
	const char *config = VMCACHETAB;
	bool dry_run = false;
	const struct opt opts[] = {
		{ "config", 'c', OPT_STR, &config, NULL },
		{ "dry-run", 'n', OPT_FLAG, &dry_run, NULL },
	};
	const struct cmd_spec spec = {
		"assemble",
		"assemble [--config FILE] [--dry-run]\n"
		"Create every cache listed in " VMCACHETAB " that is not active yet.\n"
		"Lines: NAME CACHE_DEV ORIGIN_DEV [key=value]...; '#' starts a comment.\n"
		"Caches are created with must_exist=1 (a blank cache device is refused)\n"
		"unless the line sets must_exist=0.\n"
		"  -c, --config FILE   read FILE instead of " VMCACHETAB "\n"
		"  -n, --dry-run       check and print what would be created",
		opts, ARRAY_SIZE(opts), NULL, 0, 0, NULL,
	};
	char line[1024], err[200];
	int ret = parse_args(argc, argv, &spec), failed = 0, lineno = 0;
	FILE *f;

	if (ret != PARSE_RUN)
		return ret;
	f = fopen(config, "r");
	if (!f) {
		vmc_err("cannot read %s: %s", config, strerror(errno));
		return EXIT_FAIL;
	}
	while (fgets(line, sizeof(line), f)) {
		struct create_req r;
		int n;

		lineno++;
		n = vmcachetab_parse_line(line, &r, err, sizeof(err));
		if (n < 0) {
			vmc_err("%s:%d: %s", config, lineno, err);
			failed++;
			continue;
		}
		r.dry_run = dry_run;
		if (n && assemble_one(&r) != EXIT_OK) {
			vmc_err("%s: not assembled (%s line %d)", r.name, config, lineno);
			failed++;
		}
	}
	fclose(f);
	return failed ? EXIT_FAIL : EXIT_OK;
}

int cmd_remove(int argc, char **argv)
{
	const char *pos[1] = { NULL };
	bool flush = false;
	double timeout = 0;
	const struct opt opts[] = {
		{ "flush", 'f', OPT_FLAG, &flush, NULL },
		{ "timeout", 't', OPT_SECONDS, &timeout, NULL },
	};
	const struct cmd_spec spec = {
		"remove",
		"remove NAME [--flush [--timeout SECONDS]]\n"
		"Remove a cache.  Dirty data stays on the cache device and is written back\n"
		"when the cache is created again with the same origin.\n"
		"  -f, --flush           write back all dirty data first, with progress\n"
		"  -t, --timeout S       give up the flush after S seconds (exit 3)",
		opts, ARRAY_SIZE(opts), pos, 1, 1, NULL,
	};
	struct vmc_dm_info info;
	struct vmc_status st;
	int ret = parse_args(argc, argv, &spec);

	if (ret != PARSE_RUN)
		return ret;
	if (vmc_get_status(pos[0], &st) || vmc_dm_info(pos[0], &info))
		return EXIT_FAIL;
	if (info.open_count) {
		vmc_err("%s is in use (open count %d): unmount or close it first",
			pos[0], info.open_count);
		return EXIT_FAIL;
	}
	if (flush) {
		ret = vmc_drain(pos[0], "flush", timeout);
		if (ret != EXIT_OK)
			return ret;
	} else if (st.blocks_dirty) {
		vmc_note("%s: %" PRIu64 " dirty blocks stay on the cache device; create the cache again with the same origin to write them back",
			 pos[0], st.blocks_dirty);
	}
	return vmc_dm_remove(pos[0]) ? EXIT_FAIL : EXIT_OK;
}
