// SPDX-License-Identifier: GPL-2.0
/*
 * Host unit tests of writeback-offline, on image files: a cache image in
 * the kernel's format with dirty entries and known data, an origin image,
 * the command run (whole, dry, exported, stopped after every possible
 * write and run again), then the origin compared byte for byte and the
 * metadata read back as the kernel would load it.
 *
 * Included by unit.c: uses its harness, make_image(), commit() and img.
 */

#define WB_ORIGIN_BYTES (ORIGIN_SECTORS * 512)

static char wb_origin[160], wb_export[160];
static uint8_t *wb_expect;	/* what the origin must hold afterwards */

/* an 8-byte tag per 8 bytes: where the data came from, and its offset */
static void wb_fill(uint8_t *buf, size_t len, uint64_t tag)
{
	for (size_t i = 0; i + 8 <= len; i += 8) {
		uint64_t v = htole64(tag + i);

		memcpy(buf + i, &v, 8);
	}
}

static int wb_pwrite(const char *path, const void *buf, size_t len, uint64_t off)
{
	int fd = open(path, O_RDWR);
	ssize_t n = fd < 0 ? -1 : pwrite(fd, buf, len, (off_t)off);

	if (fd >= 0)
		close(fd);
	return n == (ssize_t)len ? 0 : -1;
}

static uint8_t *wb_slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "r");
	uint8_t *buf = NULL;
	long n;

	if (!f)
		return NULL;
	if (!fseek(f, 0, SEEK_END) && (n = ftell(f)) >= 0 &&
	    !fseek(f, 0, SEEK_SET) && (buf = malloc((size_t)n + 1)) &&
	    fread(buf, 1, (size_t)n, f) == (size_t)n) {
		*len = (size_t)n;
		buf[n] = 0;
	} else {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	return buf;
}

static struct vmc_superblock wb_sb(void)
{
	struct vmc_superblock sb[2];

	memset(sb, 0, sizeof(sb));
	rw_page(&sb[0], 0, false);
	rw_page(&sb[1], 1, false);
	return sb_valid(&sb[1]) && (!sb_valid(&sb[0]) ||
				    le64toh(sb[1].seq) > le64toh(sb[0].seq)) ?
	       sb[1] : sb[0];
}

/*
 * The scenario: mappings with dirty runs (adjacent blocks, holes, a block
 * clean apart from nothing), cache data and origin data that differ
 * everywhere.  With flux, the superblock says FLUX: every valid sub-block
 * is then expected on the origin.
 */
static int wb_setup(uint32_t bs, bool flux)
{
	static const struct { uint64_t cb, ob; uint8_t valid, dirty; } map[] = {
		{ 0, 5, 0xff, 0x0f },
		{ 1, 6, 0x01, 0x00 },	/* clean: only under FLUX */
		{ 2, 7, 0xff, 0xa5 },	/* holes */
		{ 3, 8, 0xff, 0xff },	/* adjacent to 7: one extent with its tail */
		{ 4, 2, 0xf0, 0xf0 },
		{ 600, 12499, 0xff, 0xff },	/* the last origin block at 4k */
		{ 9, 40, 0x81, 0x81 },
	};
	static const uint8_t uuid[16] = { 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2, 3,
					  4, 5, 6 };
	struct change ch[ARRAY_SIZE(map)];
	uint64_t sub = bs / VMC_SUBBLOCKS, data, oblocks = ORIGIN_SECTORS * 512 / bs;
	size_t n = 0;
	uint8_t *blk = malloc(bs);
	struct vmc_superblock sb;
	struct vmc_dev d;
	int fd, ret = -1;

	snprintf(wb_origin, sizeof(wb_origin), "%s/origin.img", tmpdir);
	snprintf(wb_export, sizeof(wb_export), "%s/export.img", tmpdir);
	free(wb_expect);
	wb_expect = calloc(1, WB_ORIGIN_BYTES);
	unlink(img);
	unlink(wb_origin);
	fd = open(img, O_RDWR | O_CREAT | O_EXCL, 0600);
	if (!blk || !wb_expect || fd < 0 || ftruncate(fd, bs == 4096 ? IMG_BYTES : 48 << 20))
		goto out;
	close(fd);
	fd = -1;
	if (vmc_dev_open(&d, img, VMC_DEV_WRITE))
		goto out;
	ret = vmc_format(&d, bs, ORIGIN_SECTORS, 1700000000, uuid);
	vmc_dev_close(&d);
	if (ret)
		goto out;
	ret = -1;
	fd = open(wb_origin, O_RDWR | O_CREAT | O_EXCL, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)WB_ORIGIN_BYTES))
		goto out;
	close(fd);
	fd = -1;
	sb = wb_sb();
	data = le64toh(sb.data_start) * 512;
	for (size_t i = 0; i < ARRAY_SIZE(map); i++) {
		uint64_t ob = map[i].ob < oblocks ? map[i].ob : oblocks - 1;
		uint8_t mask = flux ? map[i].valid : map[i].dirty;

		/* the origin's older data, and the cache's */
		wb_fill(wb_expect + ob * bs, bs, 0x4f00000000000000ULL + ob * bs);
		if (wb_pwrite(wb_origin, wb_expect + ob * bs, bs, ob * bs))
			goto out;
		wb_fill(blk, bs, 0x4300000000000000ULL + (map[i].cb << 24));
		if (wb_pwrite(img, blk, bs, data + map[i].cb * bs))
			goto out;
		for (unsigned int s = 0; s < VMC_SUBBLOCKS; s++)
			if (mask & (1u << s))
				memcpy(wb_expect + ob * bs + s * sub, blk + s * sub, sub);
		ch[n].cblock = map[i].cb;
		ch[n++].entry = vmc_entry_pack(ob, map[i].valid, map[i].dirty);
	}
	if (commit(ch, n, 0, false))
		goto out;
	if (flux) {
		sb = wb_sb();
		sb.flags = htole32((le32toh(sb.flags) & ~VMC_SB_CLEAN_SHUTDOWN) |
				   VMC_SB_FLUX);
		vmc_sb_seal(&sb);
		if (rw_page(&sb, le64toh(sb.location) / VMC_PAGE_SECTORS, true))
			goto out;
	}
	ret = 0;
out:
	if (fd >= 0)
		close(fd);
	free(blk);
	return ret;
}

static bool wb_origin_ok(void)
{
	size_t len = 0;
	uint8_t *got = wb_slurp(wb_origin, &len);
	bool ok = got && len == WB_ORIGIN_BYTES && !memcmp(got, wb_expect, len);

	if (got && len == WB_ORIGIN_BYTES && !ok) {
		for (size_t i = 0; i < len; i++) {
			if (got[i] != wb_expect[i]) {
				printf("# origin differs first at byte %zu\n", i);
				break;
			}
		}
	}
	free(got);
	return ok;
}

/* the metadata as the kernel loads it: valid, and dirty blocks counted */
static bool wb_meta(uint64_t *dirty, uint64_t *valid, uint64_t *seq,
		    uint32_t *flags)
{
	struct vmc_dev d;
	struct vmc_meta m;
	bool ok;

	if (vmc_dev_open(&d, img, 0))
		return false;
	ok = !vmc_meta_read_sb(&d, &m) && m.slot >= 0 &&
	     !vmc_meta_read_mappings(&d, &m) && !m.count[VMC_ERROR];
	if (ok) {
		*dirty = m.nr_dirty;
		*valid = m.nr_valid;
		*seq = le64toh(m.sb.seq);
		*flags = le32toh(m.sb.flags);
	}
	vmc_meta_free(&m);
	vmc_dev_close(&d);
	return ok;
}

static void wb_expect_clean(uint64_t want_seq, const char *when)
{
	uint64_t dirty = 1, valid = 0, seq = 0;
	uint32_t flags = 0;

	EXPECT(wb_origin_ok(), "%s: the origin holds every dirty sub-block", when);
	EXPECT(wb_meta(&dirty, &valid, &seq, &flags) && !dirty && valid == 7 &&
	       (!want_seq || seq == want_seq) &&
	       (flags & (VMC_SB_FLUX | VMC_SB_CLEAN_SHUTDOWN)) ==
	       VMC_SB_CLEAN_SHUTDOWN,
	       "%s: dirty %llu valid %llu seq %llu flags 0x%x", when,
	       (unsigned long long)dirty, (unsigned long long)valid,
	       (unsigned long long)seq, flags);
	EXPECT(check_img() == CHECK_CLEAN, "%s: check is clean", when);
}

static void test_wb_whole(void)
{
	static const uint32_t sizes[] = { 4096, 65536 };
	char out[8192];

	for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
		EXPECT(!wb_setup(sizes[i], false), "setup %u", sizes[i]);
		/* one copy at a time, then the default: the same result */
		EXPECT(run_tool(out, sizeof(out), "writeback-offline %s %s %s", img,
				wb_origin, i ? "--jobs 1" : "") == 0 &&
		       strstr(out, "6 dirty blocks, 9 extents") &&
		       strstr(out, "recorded clean at seq 3: 0 dirty blocks"),
		       "%u: %s", sizes[i], out);
		wb_expect_clean(3, "written back");
		/* again: nothing to do, nothing written */
		EXPECT(run_tool(out, sizeof(out), "writeback-offline --json %s %s",
				img, wb_origin) == 0 && json_valid(out) &&
		       strstr(out, "\"result\": \"nothing\""), "%s", out);
		wb_expect_clean(3, "second run");
	}
}

static void test_wb_flux(void)
{
	char out[8192];

	EXPECT(!wb_setup(4096, true), "setup");
	EXPECT(run_tool(out, sizeof(out), "writeback-offline %s %s --json", img,
			wb_origin) == 0 && json_valid(out) &&
	       strstr(out, "\"flux\": true") && strstr(out, "\"blocks\": 7"),
	       "%s", out);
	wb_expect_clean(3, "after FLUX");
}

static void test_wb_dry_run(void)
{
	size_t l0 = 0, l1 = 0, o0 = 0, o1 = 0;
	uint8_t *c0, *c1, *g0, *g1;
	char out[16384];

	EXPECT(!wb_setup(4096, false), "setup");
	c0 = wb_slurp(img, &l0);
	g0 = wb_slurp(wb_origin, &o0);
	EXPECT(run_tool(out, sizeof(out), "writeback-offline --dry-run %s %s",
			img, wb_origin) == 0 &&
	       strstr(out, "6 dirty blocks, 9 extents, 15360 bytes") &&
	       /* blocks 7 (0xa5: sub-blocks 0, 2, 5, 7) and 8 merge at 7's tail */
	       strstr(out, "28672          512  7-7") &&
	       strstr(out, "32256         4608  7-8") &&
	       strstr(out, "51195904         4096  12499-12499"), "%s", out);
	EXPECT(run_tool(out, sizeof(out), "writeback-offline -n --json %s", img) == 0 &&
	       json_valid(out) && strstr(out, "\"extent_count\": 9") &&
	       strstr(out, "\"offset\": 32256,\n      \"length\": 4608"), "%s", out);
	c1 = wb_slurp(img, &l1);
	g1 = wb_slurp(wb_origin, &o1);
	EXPECT(c0 && c1 && g0 && g1 && l0 == l1 && o0 == o1 && !memcmp(c0, c1, l0) &&
	       !memcmp(g0, g1, o0), "a dry run changes nothing");
	free(c0);
	free(c1);
	free(g0);
	free(g1);
}

static void test_wb_export(void)
{
	size_t li = 0, ll = 0, l0 = 0, l1 = 0, lines = 0;
	uint8_t *im, *list, *c0, *c1;
	char path[200], out[8192];
	bool ok = true;

	EXPECT(!wb_setup(4096, false), "setup");
	snprintf(path, sizeof(path), "%s.list", wb_export);
	unlink(wb_export);
	unlink(path);
	c0 = wb_slurp(img, &l0);
	EXPECT(run_tool(out, sizeof(out), "writeback-offline --export %s %s %s",
			wb_export, img, wb_origin) == 0 &&
	       strstr(out, "exported to"), "%s", out);
	im = wb_slurp(wb_export, &li);
	list = wb_slurp(path, &ll);
	EXPECT(im && list && li == 15360, "image of %zu bytes", li);
	for (char *s = (char *)list, *e; list && s && *s; s = e ? e + 1 : NULL) {
		unsigned long long o, n, at;

		e = strchr(s, '\n');
		if (*s == '#')
			continue;
		if (sscanf(s, "%llu %llu %llu", &o, &n, &at) != 3 || at + n > li ||
		    o + n > WB_ORIGIN_BYTES || memcmp(im + at, wb_expect + o, n))
			ok = false;
		lines++;
	}
	EXPECT(ok && lines == 9, "every listed extent holds the dirty data (%zu lines)",
	       lines);
	c1 = wb_slurp(img, &l1);
	EXPECT(c0 && c1 && l0 == l1 && !memcmp(c0, c1, l0), "the cache is unchanged");
	EXPECT(run_tool(out, sizeof(out), "writeback-offline --export %s %s",
			wb_export, img) == 1, "an export never overwrites a file");
	unlink(wb_export);
	unlink(path);
	free(im);
	free(list);
	free(c0);
	free(c1);
}

/*
 * A run stopped after its n-th write (data, mapping pages, superblock),
 * as a crash would, then run again: always the same end.  The stop leaves
 * a cache the kernel loads, either still dirty or already clean.  With
 * tiny batches (--test-commit-every) a commit follows every few writes,
 * and a stop keeps what the commits before it recorded; under FLUX the
 * commits before the last keep the flag.
 */
static void wb_interrupted(const char *batches, unsigned int writes,
			   int stops_min)
{
	char out[8192];
	int stopped = 0, partial = 0;

	for (unsigned int n = 1; n <= writes; n++) {
		uint64_t dirty = 0, valid = 0, seq = 0, dirty_before;
		bool flux = n % 3 == 0;
		uint32_t flags = 0;
		int rc;

		EXPECT(!wb_setup(n % 2 ? 4096 : 65536, flux), "setup");
		dirty_before = 6;
		rc = run_tool(out, sizeof(out),
			      "writeback-offline --test-stop-after %u %s %s %s", n,
			      batches, img, wb_origin);
		if (rc == 0) {	/* fewer writes than n in this variant */
			wb_expect_clean(0, "not stopped");
			continue;
		}
		stopped++;
		EXPECT(rc == 1 && wb_meta(&dirty, &valid, &seq, &flags) &&
		       dirty <= dirty_before && seq >= 2 && valid == 7 &&
		       (dirty == dirty_before || seq > 2) &&
		       check_img() <= CHECK_WARNINGS,
		       "%s stopped at write %u: rc %d dirty %llu seq %llu", batches,
		       n, rc, (unsigned long long)dirty, (unsigned long long)seq);
		partial += dirty && dirty < dirty_before;
		if (flux)
			EXPECT((flags & VMC_SB_FLUX) || !dirty,
			       "FLUX kept until the last commit (flags 0x%x)", flags);
		EXPECT(run_tool(out, sizeof(out), "writeback-offline %s %s", img,
				wb_origin) == 0, "rerun after %u: %s", n, out);
		wb_expect_clean(0, "rerun");
	}
	EXPECT(stopped >= stops_min, "%d stops", stopped);
	EXPECT(*batches ? partial > 0 : !partial,
	       "%d stops kept part of the work committed", partial);
}

static void test_wb_interrupted(void)
{
	/* 9 data writes, 1 of both mapping pages, the superblock */
	wb_interrupted("", 12, 9);
	/* about a commit (pages, superblock) per data write */
	wb_interrupted("--test-commit-every 512", 30, 15);
}

/*
 * A commit interrupted before this run (a page copy stamped seq + 1, its
 * superblock never written): the run must overwrite it, or its own
 * superblock, seq + 1, would bring that page to life.
 */
static void test_wb_leftover_page(void)
{
	struct change ch = { 600, 0 };
	uint64_t dirty = 1, valid = 0, seq = 0;
	uint32_t flags = 0;
	char out[8192];

	/* page 1 (cache blocks 510..) clean, so only its leftover changes it */
	EXPECT(!wb_setup(4096, false), "setup");
	ch.entry = vmc_entry_pack(12499, 0xff, 0);
	EXPECT(!commit(&ch, 1, 0, false), "clean block 600");
	wb_fill(wb_expect + 12499ULL * 4096, 4096, 0x4f00000000000000ULL + 12499ULL * 4096);
	ch.cblock = 700;
	ch.entry = vmc_entry_pack(3000, 0xff, 0xff);
	EXPECT(!commit(&ch, 1, 0, true), "torn commit");
	EXPECT(run_tool(out, sizeof(out), "writeback-offline %s %s", img,
			wb_origin) == 0 && strstr(out, "5 dirty blocks"), "%s", out);
	EXPECT(wb_meta(&dirty, &valid, &seq, &flags) && valid == 7 && !dirty,
	       "the leftover page stays dead: valid %llu dirty %llu",
	       (unsigned long long)valid, (unsigned long long)dirty);
	wb_expect_clean(4, "leftover");
}

static void wb_set_needs_check(void *pg)
{
	((struct vmc_superblock *)pg)->flags |= htole32(VMC_SB_NEEDS_CHECK);
}

static bool wb_same(const uint8_t *a, size_t la, const char *path)
{
	size_t lb = 0;
	uint8_t *b = wb_slurp(path, &lb);
	bool same = a && b && la == lb && !memcmp(a, b, la);

	free(b);
	return same;
}

static void test_wb_refusals(void)
{
	uint8_t zero[2 * VMC_PAGE_SIZE];
	size_t l0 = 0, o0 = 0;
	uint8_t *c0, *g0;
	char out[8192];

	EXPECT(!wb_setup(4096, false), "setup");
	EXPECT(!truncate(wb_origin, WB_ORIGIN_BYTES - 4096), "shrink the origin");
	c0 = wb_slurp(img, &l0);
	g0 = wb_slurp(wb_origin, &o0);
	EXPECT(run_tool(out, sizeof(out), "writeback-offline %s %s", img,
			wb_origin) == 1, "another origin size is refused");
	EXPECT(wb_same(c0, l0, img) && wb_same(g0, o0, wb_origin),
	       "a refusal changes nothing");
	free(c0);
	free(g0);
	EXPECT(!truncate(wb_origin, WB_ORIGIN_BYTES), "restore");
	EXPECT(run_tool(out, sizeof(out), "writeback-offline %s", img) == 2,
	       "the origin is needed");
	EXPECT(run_tool(out, sizeof(out), "writeback-offline -n --export x %s", img) == 2,
	       "--dry-run and --export");
	EXPECT(!commit(NULL, 0, 1, false), "a count mismatch");
	EXPECT(run_tool(out, sizeof(out), "writeback-offline %s %s", img,
			wb_origin) == 1, "metadata the kernel refuses is refused");
	EXPECT(!wb_setup(4096, false) && !edit_page(1, wb_set_needs_check), "setup");
	EXPECT(run_tool(out, sizeof(out), "writeback-offline %s %s --json", img,
			wb_origin) == 1 && json_valid(out) && strstr(out, "needs_check"),
	       "needs_check is refused: %s", out);
	/* a blank device: nothing there */
	memset(zero, 0, sizeof(zero));
	EXPECT(!wb_pwrite(img, zero, sizeof(zero), 0), "wipe");
	EXPECT(run_tool(out, sizeof(out), "writeback-offline -n %s", img) == 1,
	       "blank");
}
