// SPDX-License-Identifier: GPL-2.0
/*
 * vmcachectl check, dump and format: a cache device's metadata, offline.
 * check and dump never write.
 */
#include <endian.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "args.h"
#include "cli.h"
#include "cmds.h"
#include "json.h"
#include "ondisk.h"

static const char *const result_name[] = {
	[CHECK_CLEAN] = "clean",
	[CHECK_WARNINGS] = "warnings",
	[CHECK_CORRUPT] = "corrupt",
};

/* both stages on an open device; -1 on an operational error, else 0 */
static int read_dev(struct vmc_dev *d, struct vmc_meta *m)
{
	vmc_meta_free(m);
	if (vmc_meta_read_sb(d, m))
		return -1;
	if (m->slot < 0)
		return 0;
	if (vmc_meta_read_mappings(d, m))
		return -1;
	/* data_crc: the dirty data against its checksums */
	return m->count[VMC_ERROR] ? 0 : vmc_meta_check_data(d, m);
}

static int read_meta(const char *path, struct vmc_meta *m, int flags,
		     struct vmc_dev *keep)
{
	struct vmc_dev d;
	int ret;

	memset(m, 0, sizeof(*m));
	m->slot = -1;
	if (vmc_dev_open(&d, path, flags))
		return -1;
	ret = read_dev(&d, m);
	if (keep && !ret)
		*keep = d;
	else
		vmc_dev_close(&d);
	return ret;
}

/* habit of fsck tools: write only when asked, and only after a pass without errors */
static int clear_needs_check(struct vmc_dev *d, struct vmc_meta *m)
{
	if (m->slot < 0 || m->count[VMC_ERROR]) {
		vmc_note("%s: not clearing needs_check: the check found errors",
			 d->path);
		return 0;
	}
	if (!(le32toh(m->sb.flags) & VMC_SB_NEEDS_CHECK)) {
		vmc_note("%s: needs_check is not set, nothing to clear", d->path);
		return 0;
	}
	if (vmc_clear_needs_check(d, m) || read_dev(d, m))
		return -1;
	vmc_note("%s: needs_check cleared (superblock slot %d, seq %" PRIu64 ")",
		 d->path, m->slot, le64toh(m->sb.seq));
	return 0;
}

static size_t unshown(const struct vmc_meta *m)
{
	return m->count[VMC_INFO] + m->count[VMC_WARNING] +
	       m->count[VMC_ERROR] - m->nr_msgs;
}

static void check_json(const char *dev, const struct vmc_meta *m, int rc)
{
	struct json j;

	json_init(&j, stdout);
	json_begin_object(&j, NULL);
	json_str(&j, "device", dev);
	json_str(&j, "result", result_name[rc]);
	json_u64(&j, "exit_code", (uint64_t)rc);
	json_u64(&j, "errors", m->count[VMC_ERROR]);
	json_u64(&j, "warnings", m->count[VMC_WARNING]);
	json_u64(&j, "infos", m->count[VMC_INFO]);
	if (m->slot >= 0) {
		json_u64(&j, "superblock_slot", (uint64_t)m->slot);
		json_u64(&j, "seq", le64toh(m->sb.seq));
		json_u64(&j, "nr_blocks", m->lay.nr_blocks);
		json_u64(&j, "nr_valid", m->nr_valid);
		json_u64(&j, "nr_dirty", m->nr_dirty);
	} else {
		json_null(&j, "superblock_slot");
	}
	json_begin_array(&j, "messages");
	for (size_t i = 0; i < m->nr_msgs; i++) {
		json_begin_object(&j, NULL);
		json_str(&j, "severity", vmc_sev_name(m->msgs[i].sev));
		json_str(&j, "stage", m->msgs[i].stage);
		json_str(&j, "text", m->msgs[i].text);
		json_end_object(&j);
	}
	json_end_array(&j);
	json_u64(&j, "messages_not_shown", unshown(m));
	json_end_object(&j);
	json_finish(&j);
}

static void check_text(const char *dev, const struct vmc_meta *m, int rc)
{
	for (size_t i = 0; i < m->nr_msgs; i++)
		printf("%s: %s: %s\n", m->msgs[i].stage,
		       vmc_sev_name(m->msgs[i].sev), m->msgs[i].text);
	if (unshown(m))
		printf("(%zu more messages not shown)\n", unshown(m));
	printf("%s: %s: %zu errors, %zu warnings", dev, result_name[rc],
	       m->count[VMC_ERROR], m->count[VMC_WARNING]);
	if (m->slot >= 0)
		printf("; superblock slot %d, seq %" PRIu64 ", %" PRIu64 " of %"
		       PRIu64 " blocks mapped, %" PRIu64 " dirty", m->slot,
		       le64toh(m->sb.seq), m->nr_valid, (uint64_t)m->lay.nr_blocks,
		       m->nr_dirty);
	printf("\n");
}

int check_run(const char *dev, bool quiet, bool json, bool clear)
{
	struct vmc_dev d = { .fd = -1 };
	struct vmc_meta m;
	int rc;

	vmc_clear_error();
	if (read_meta(dev, &m, clear ? VMC_DEV_WRITE : 0, &d) ||
	    (clear && clear_needs_check(&d, &m))) {
		vmc_dev_close(&d);
		vmc_meta_free(&m);
		if (json)
			vmc_json_error();
		return CHECK_OPERROR;
	}
	vmc_dev_close(&d);
	rc = vmc_meta_result(&m);
	if (json)
		check_json(dev, &m, rc);
	else if (!quiet)
		check_text(dev, &m, rc);
	vmc_meta_free(&m);
	return rc;
}

int cmd_check(int argc, char **argv)
{
	const char *pos[1] = { NULL };
	bool quiet = false, json = false, clear = false;
	const struct opt opts[] = {
		{ "quiet", 'q', OPT_FLAG, &quiet, NULL },
		{ "json", 'j', OPT_FLAG, &json, NULL },
		{ "clear-needs-check", 0, OPT_FLAG, &clear, NULL },
	};
	const struct cmd_spec spec = {
		"check",
		"check DEV [--quiet] [--json] [--clear-needs-check]\n"
		"Check a cache device's metadata offline (the cache must not be active):\n"
		"superblock slots, then both copies of every mapping page, then entries\n"
		"and counts.  Writes nothing unless --clear-needs-check.  Exit status:\n"
		"0 clean, 1 warnings (repairable), 2 corrupt, 8 usage or operational\n"
		"error (nothing checked).\n"
		"  -q, --quiet              print nothing, only set the exit status\n"
		"  -j, --json               one JSON document with every message\n"
		"      --clear-needs-check  after a pass without errors, commit the\n"
		"                           superblock again without the needs_check flag\n"
		"                           (the kernel refuses to load a flagged cache)",
		opts, ARRAY_SIZE(opts), pos, 1, 1, NULL,
	};
	int ret = parse_args(argc, argv, &spec);

	if (ret != PARSE_RUN)
		return ret == EXIT_OK ? EXIT_OK : CHECK_OPERROR;
	return check_run(pos[0], quiet, json, clear);
}

/* ---- dump ------------------------------------------------------------------ */

static void sb_field_str(const struct vmc_superblock *sb,
			 const struct vmc_sb_field *f, char *buf, size_t len)
{
	char uuid[37];

	if (f->fmt == SBF_UUID) {
		vmc_uuid_str(sb->uuid, uuid);
		snprintf(buf, len, "%s", uuid);
	} else if (f->fmt == SBF_HEX) {
		snprintf(buf, len, "0x%0*" PRIx64, (int)(2 * f->size),
			 vmc_sb_get(sb, f));
	} else {
		snprintf(buf, len, "%" PRIu64, vmc_sb_get(sb, f));
	}
}

static void dump_json(const char *dev, const struct vmc_meta *m)
{
	char buf[64];
	struct json j;

	json_init(&j, stdout);
	json_begin_object(&j, NULL);
	json_str(&j, "device", dev);
	json_u64(&j, "superblock_slot", (uint64_t)m->slot);
	json_begin_object(&j, "superblock");
	for (size_t i = 0; i < vmc_nr_sb_fields; i++) {
		const struct vmc_sb_field *f = &vmc_sb_fields[i];

		if (f->fmt == SBF_DEC) {
			json_u64(&j, f->name, vmc_sb_get(&m->sb, f));
		} else {	/* hex as strings: magic exceeds 2^53 */
			sb_field_str(&m->sb, f, buf, sizeof(buf));
			json_str(&j, f->name, buf);
		}
	}
	json_end_object(&j);
	json_begin_array(&j, "mappings");
	for (uint64_t cb = 0; cb < m->lay.nr_blocks; cb++) {
		uint64_t e = m->entries[cb];

		if (!vmc_entry_valid(e))
			continue;
		json_begin_object(&j, NULL);
		json_u64(&j, "cblock", cb);
		json_u64(&j, "oblock", vmc_entry_oblock(e));
		json_u64(&j, "valid", vmc_entry_valid(e));
		json_u64(&j, "dirty", vmc_entry_dirty(e));
		json_end_object(&j);
	}
	json_end_array(&j);
	json_end_object(&j);
	json_finish(&j);
}

static void dump_text(const struct vmc_meta *m)
{
	char buf[64];

	printf("superblock (slot %d)\n", m->slot);
	for (size_t i = 0; i < vmc_nr_sb_fields; i++) {
		sb_field_str(&m->sb, &vmc_sb_fields[i], buf, sizeof(buf));
		printf("  %-16s %s\n", vmc_sb_fields[i].name, buf);
	}
	printf("mappings: %" PRIu64 " of %" PRIu64 " blocks, %" PRIu64 " dirty\n",
	       m->nr_valid, (uint64_t)m->lay.nr_blocks, m->nr_dirty);
	printf("%12s %14s %6s %6s\n", "cblock", "oblock", "valid", "dirty");
	for (uint64_t cb = 0; cb < m->lay.nr_blocks; cb++) {
		uint64_t e = m->entries[cb];

		if (vmc_entry_valid(e))
			printf("%12" PRIu64 " %14" PRIu64 "   0x%02x   0x%02x\n", cb,
			       (uint64_t)vmc_entry_oblock(e), vmc_entry_valid(e),
			       vmc_entry_dirty(e));
	}
}

int cmd_dump(int argc, char **argv)
{
	const char *pos[1] = { NULL };
	bool json = false;
	const struct opt opts[] = {
		{ "json", 'j', OPT_FLAG, &json, NULL },
	};
	const struct cmd_spec spec = {
		"dump",
		"dump DEV [--json]\n"
		"Print the superblock and every mapped cache block (cblock, oblock, valid\n"
		"and dirty sub-block masks) as the kernel would load them.  Never writes.\n"
		"  -j, --json    one JSON document",
		opts, ARRAY_SIZE(opts), pos, 1, 1, NULL,
	};
	struct vmc_meta m;
	int ret = parse_args(argc, argv, &spec);

	if (ret != PARSE_RUN)
		return ret;
	vmc_clear_error();
	ret = read_meta(pos[0], &m, 0, NULL);
	if (!ret && m.slot < 0) {
		vmc_err("%s: no valid superblock ('vmcachectl check %s' says why)",
			pos[0], pos[0]);
		ret = -1;
	}
	if (ret) {
		vmc_meta_free(&m);
		if (json)
			vmc_json_error();
		return EXIT_FAIL;
	}
	if (m.count[VMC_ERROR])
		vmc_note("%s: the metadata has errors; 'vmcachectl check %s' lists them",
			 pos[0], pos[0]);
	if (json)
		dump_json(pos[0], &m);
	else
		dump_text(&m);
	vmc_meta_free(&m);
	return EXIT_OK;
}

/* ---- format ---------------------------------------------------------------- */

int cmd_format(int argc, char **argv)
{
	const char *pos[1] = { NULL }, *bs_arg = "4096", *origin = NULL;
	uint64_t origin_sectors = 0;
	bool force = false;
	const struct opt opts[] = {
		{ "block-size", 'b', OPT_STR, &bs_arg, NULL },
		{ "origin-size", 's', OPT_U64, &origin_sectors, NULL },
		{ "origin", 'o', OPT_STR, &origin, NULL },
		{ "force", 'f', OPT_FLAG, &force, NULL },
	};
	const struct cmd_spec spec = {
		"format",
		"format DEV (--origin DEV | --origin-size SECTORS) [--block-size S] [--force]\n"
		"Write an empty cache: mapping pages, then the superblock.  The kernel also\n"
		"formats a blank device itself on first load; format is for doing it ahead.\n"
		"  -o, --origin DEV          the origin this cache will serve (its size is recorded)\n"
		"  -s, --origin-size N       the origin's size in 512-byte sectors\n"
		"  -b, --block-size S        4k..64k, a power of two (default 4k)\n"
		"  -f, --force               format over an existing cache (its contents are lost)",
		opts, ARRAY_SIZE(opts), pos, 1, 1, NULL,
	};
	char bs_str[32], err[200], uuid_s[37];
	uint8_t uuid[16];
	struct vmc_dev d, o;
	struct vmc_meta m;
	int ret = parse_args(argc, argv, &spec);

	if (ret != PARSE_RUN)
		return ret;
	if (vmc_tunable_check("block_size", bs_arg, bs_str, sizeof(bs_str), err,
			      sizeof(err))) {
		vmc_err("format: %s", err);
		return EXIT_USAGE;
	}
	if (!origin == !origin_sectors) {
		vmc_err("format: give exactly one of --origin DEV and --origin-size SECTORS");
		return EXIT_USAGE;
	}
	if (origin) {
		if (vmc_dev_open(&o, origin, VMC_DEV_SHARED))
			return EXIT_FAIL;
		origin_sectors = o.sectors;
		vmc_dev_close(&o);
	}
	if (getrandom(uuid, sizeof(uuid), 0) != sizeof(uuid)) {
		vmc_err("cannot get random bytes for the uuid");
		return EXIT_FAIL;
	}
	if (vmc_dev_open(&d, pos[0], VMC_DEV_WRITE))
		return EXIT_FAIL;
	ret = EXIT_FAIL;
	if (vmc_meta_read_sb(&d, &m))
		goto out;
	if (m.slot >= 0 && !force) {
		vmc_err("%s holds a cache (%" PRIu64 " blocks mapped, %" PRIu64
			" dirty); use --force to format it anyway (its contents are lost)",
			pos[0], le64toh(m.sb.nr_valid), le64toh(m.sb.nr_dirty));
		goto out;
	}
	if (vmc_format(&d, (uint32_t)strtoul(bs_str, NULL, 10), origin_sectors,
		       (uint64_t)time(NULL), uuid))
		goto out;
	vmc_uuid_str(uuid, uuid_s);
	printf("%s: formatted, block size %s, origin %" PRIu64 " sectors, uuid %s\n",
	       pos[0], bs_str, origin_sectors, uuid_s);
	ret = EXIT_OK;
out:
	vmc_dev_close(&d);
	return ret;
}
