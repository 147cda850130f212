// SPDX-License-Identifier: GPL-2.0
/*
 * vmcachectl host unit tests: no guest, no device-mapper.  Metadata tests
 * run on image files in a temporary directory.  Output is KTAP-like and
 * ends with "N passed, N failed".
 *
 * Usage: tests/unit ./vmcachectl
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "args.h"
#include "cli.h"
#include "cmds.h"
#include "json.h"
#include "ondisk.h"
#include "status.h"
#include "table.h"

/* ---- harness ---------------------------------------------------------- */

static const char *tool;	/* the vmcachectl binary */
static char tmpdir[64];
static int case_failed;
static const char *case_skip;	/* set by a test that cannot run here */

#define EXPECT(cond, ...)                                                  \
	do {                                                               \
		if (!(cond)) {                                             \
			printf("# %s:%d: %s: ", __FILE__, __LINE__, #cond); \
			printf(__VA_ARGS__);                               \
			printf("\n");                                      \
			case_failed = 1;                                   \
		}                                                          \
	} while (0)

/* stderr to /dev/null around calls that are expected to complain */
static int saved_stderr = -1;

static void mute(void)
{
	int fd = open("/dev/null", O_WRONLY);

	fflush(stderr);
	saved_stderr = dup(STDERR_FILENO);
	dup2(fd, STDERR_FILENO);
	close(fd);
}

static void unmute(void)
{
	fflush(stderr);
	dup2(saved_stderr, STDERR_FILENO);
	close(saved_stderr);
}

/* runs "tool ARGS", stdout into out; returns the exit status */
__attribute__((format(printf, 3, 4)))
static int run_tool(char *out, size_t len, const char *fmt, ...)
{
	char args[512], cmd[1024];
	size_t n = 0;
	va_list ap;
	FILE *p;
	int st;

	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	snprintf(cmd, sizeof(cmd), "%s %s 2>/dev/null", tool, args);
	p = popen(cmd, "r");
	if (!p)
		return -1;
	if (out) {
		n = fread(out, 1, len - 1, p);
		out[n] = '\0';
	} else {
		char sink[4096];

		while (fread(sink, 1, sizeof(sink), p) > 0)
			;
	}
	st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ---- a minimal JSON syntax checker ------------------------------------- */

static const char *js_value(const char *p);

static const char *js_ws(const char *p)
{
	while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
		p++;
	return p;
}

static const char *js_string(const char *p)
{
	if (*p++ != '"')
		return NULL;
	for (; *p && *p != '"'; p++) {
		if ((unsigned char)*p < 0x20)
			return NULL;
		if (*p == '\\' && !*++p)
			return NULL;
	}
	return *p == '"' ? p + 1 : NULL;
}

static const char *js_container(const char *p, char close, bool keys)
{
	p = js_ws(p + 1);
	if (*p == close)
		return p + 1;
	for (;;) {
		if (keys) {
			p = js_string(js_ws(p));
			if (!p || *(p = js_ws(p)) != ':')
				return NULL;
			p++;
		}
		p = js_value(p);
		if (!p)
			return NULL;
		p = js_ws(p);
		if (*p == close)
			return p + 1;
		if (*p++ != ',')
			return NULL;
	}
}

static const char *js_value(const char *p)
{
	p = js_ws(p);
	if (*p == '{')
		return js_container(p, '}', true);
	if (*p == '[')
		return js_container(p, ']', false);
	if (*p == '"')
		return js_string(p);
	if (!strncmp(p, "null", 4) || !strncmp(p, "true", 4))
		return p + 4;
	if (!strncmp(p, "false", 5))
		return p + 5;
	if (*p == '-' || (*p >= '0' && *p <= '9')) {
		char *end;

		strtod(p, &end);
		return end;
	}
	return NULL;
}

/* exactly one JSON document, with trailing whitespace only */
static bool json_valid(const char *s)
{
	const char *end = js_value(s);

	return end && !*js_ws(end);
}

/* ---- plain units ------------------------------------------------------- */

static void test_crc32c(void)
{
	static const uint8_t uuid[16] = "0123456789abcdef";
	struct vmc_superblock sb;
	struct vmc_mpage pg;
	uint32_t crc;

	EXPECT((~vmc_crc32c(0xffffffffu, "123456789", 9)) == 0xe3069283u,
	       "CRC-32C(\"123456789\") = 0x%08x",
	       ~vmc_crc32c(0xffffffffu, "123456789", 9));
	memset(&sb, 0xa5, sizeof(sb));
	vmc_sb_seal(&sb);
	crc = ~vmc_crc32c(vmc_crc32c(0xffffffffu, "\0\0\0\0", 4),
			  (uint8_t *)&sb + 4, VMC_PAGE_SIZE - 4);
	EXPECT(le32toh(sb.csum) == crc && vmc_sb_csum(&sb) == crc,
	       "superblock: the whole page, csum as zero");
	memset(&pg, 0x5a, sizeof(pg));
	vmc_mpage_seal(uuid, &pg);
	crc = vmc_crc32c(vmc_crc32c(0xffffffffu, uuid, 16), "\0\0\0\0", 4);
	crc = ~vmc_crc32c(crc, (uint8_t *)&pg + 4, VMC_PAGE_SIZE - 4);
	EXPECT(le32toh(pg.hdr.csum) == crc && vmc_mpage_csum(uuid, &pg) == crc,
	       "mapping page: the uuid, then the page, csum as zero");
	EXPECT(vmc_mpage_csum((const uint8_t *)"0123456789abcdeF", &pg) != crc,
	       "another uuid does not validate");
}

static void test_parse_size(void)
{
	static const struct { const char *s; uint64_t v; } ok[] = {
		{ "4096", 4096 }, { "4k", 4096 }, { "32k", 32768 },
		{ "32K", 32768 }, { "64KiB", 65536 }, { "1M", 1048576 },
		{ "2g", 2ULL << 30 }, { "8s", 4096 }, { "0", 0 }, { "7b", 7 },
	};
	static const char *const bad[] = {
		"", "k", "4x", "-1", "4kk", " 4k", "4 k", "99999999999999999999",
		"17179869184G", "1.5k",
	};
	uint64_t v;

	for (size_t i = 0; i < ARRAY_SIZE(ok); i++)
		EXPECT(!parse_size(ok[i].s, &v) && v == ok[i].v, "%s", ok[i].s);
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		EXPECT(parse_size(bad[i], &v), "'%s' accepted", bad[i]);
}

static void test_parse_numbers(void)
{
	uint64_t v;
	double d;

	EXPECT(!parse_u64("18446744073709551615", &v) && v == UINT64_MAX, "max");
	EXPECT(parse_u64("18446744073709551616", &v), "overflow accepted");
	EXPECT(parse_u64("-1", &v) && parse_u64("", &v) && parse_u64("1x", &v),
	       "junk accepted");
	EXPECT(!parse_seconds("0.5", &d) && d == 0.5, "0.5");
	EXPECT(!parse_seconds("2", &d) && d == 2, "2");
	EXPECT(parse_seconds("-1", &d) && parse_seconds("nan", &d) &&
	       parse_seconds("1s", &d), "junk accepted");
}

static void test_units(void)
{
	char b[32];

	EXPECT(!strcmp(fmt_bytes(0, b, sizeof(b)), "0 B"), "%s", b);
	EXPECT(!strcmp(fmt_bytes(1023, b, sizeof(b)), "1023 B"), "%s", b);
	EXPECT(!strcmp(fmt_bytes(1536, b, sizeof(b)), "1.50 KiB"), "%s", b);
	EXPECT(!strcmp(fmt_bytes(10ULL << 30, b, sizeof(b)), "10.0 GiB"), "%s", b);
	EXPECT(!strcmp(fmt_bytes(300ULL << 20, b, sizeof(b)), "300 MiB"), "%s", b);
	EXPECT(!strcmp(fmt_duration(62, b, sizeof(b)), "1:02"), "%s", b);
	EXPECT(!strcmp(fmt_duration(3723, b, sizeof(b)), "1:02:03"), "%s", b);
	EXPECT(!strcmp(fmt_duration(-1, b, sizeof(b)), "?"), "%s", b);
}

static void test_tunables(void)
{
	static const struct { const char *k, *v, *out; } ok[] = {
		{ "block_size", "32k", "32768" }, { "block_size", "4096", "4096" },
		{ "mode", "writeback", "writeback" }, { "policy", "lru", "lru" },
		{ "promote_after", "255", "255" }, { "must_exist", "1", "1" },
		{ "max_dirty_age", "0", "0" },
	};
	static const struct { const char *k, *v; } bad[] = {
		{ "block_size", "3000" }, { "block_size", "128k" },
		{ "block_size", "2k" }, { "mode", "fast" }, { "mode", "write" },
		{ "promote_after", "0" }, { "promote_after", "256" },
		{ "writeback_low", "101" }, { "bogus", "1" }, { "must_exist", "2" },
	};
	char out[64], err[200];

	for (size_t i = 0; i < ARRAY_SIZE(ok); i++)
		EXPECT(!vmc_tunable_check(ok[i].k, ok[i].v, out, sizeof(out), err,
					  sizeof(err)) && !strcmp(out, ok[i].out),
		       "%s=%s", ok[i].k, ok[i].v);
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		EXPECT(vmc_tunable_check(bad[i].k, bad[i].v, out, sizeof(out), err,
					 sizeof(err)) && err[0],
		       "%s=%s accepted", bad[i].k, bad[i].v);
	EXPECT(vmc_tunable_find("mode")->online, "mode is online");
	EXPECT(!vmc_tunable_find("must_exist")->online, "must_exist is not");
}

static void test_table(void)
{
	struct vmc_table t = { 0 }, u;
	char buf[512], buf2[512], err[200];

	t.len = 2097152;
	strcpy(t.cache, "259:1");
	strcpy(t.origin, "8:16");
	EXPECT(!vmc_table_params(&t, buf, sizeof(buf)) &&
	       !strcmp(buf, "259:1 8:16 0"), "%s", buf);
	EXPECT(!vmc_table_set(&t, "mode", "writeback", err, sizeof(err)), "%s", err);
	EXPECT(!vmc_table_set(&t, "block_size", "32k", err, sizeof(err)), "%s", err);
	EXPECT(!vmc_table_set_pair(&t, "promote_after=3", err, sizeof(err)), "%s", err);
	EXPECT(!vmc_table_set(&t, "mode", "passthrough", err, sizeof(err)), "%s", err);
	EXPECT(vmc_table_set_pair(&t, "promote_after", err, sizeof(err)), "no =");
	EXPECT(vmc_table_set_pair(&t, "=3", err, sizeof(err)), "no key");
	EXPECT(vmc_table_set_pair(&t, "writeback_high=x", err, sizeof(err)), "x");
	EXPECT(!vmc_table_params(&t, buf, sizeof(buf)) &&
	       !strcmp(buf, "259:1 8:16 6 mode passthrough block_size 32768 promote_after 3"),
	       "%s", buf);
	EXPECT(!strcmp(vmc_table_get(&t, "block_size"), "32768"), "get");
	EXPECT(!vmc_table_get(&t, "policy"), "absent");

	/* what the kernel prints parses back into the same line */
	EXPECT(!vmc_table_parse(buf, t.len, &u, err, sizeof(err)), "%s", err);
	EXPECT(!vmc_table_params(&u, buf2, sizeof(buf2)) && !strcmp(buf, buf2),
	       "%s", buf2);
	EXPECT(!vmc_table_parse("253:0 253:1", 8, &u, err, sizeof(err)) &&
	       !u.nr_opts, "no option count");
	EXPECT(!vmc_table_parse("253:0 253:1 2 future_key 7", 8, &u, err,
				sizeof(err)) && !strcmp(vmc_table_get(&u, "future_key"), "7"),
	       "unknown keys from the kernel are kept");
	EXPECT(vmc_table_parse("253:0", 8, &u, err, sizeof(err)), "one device");
	EXPECT(vmc_table_parse("253:0 253:1 3 mode writeback", 8, &u, err,
			       sizeof(err)), "odd count");
	EXPECT(vmc_table_parse("253:0 253:1 4 mode writeback", 8, &u, err,
			       sizeof(err)), "short");
	EXPECT(vmc_table_parse("253:0 253:1 2 mode writeback x", 8, &u, err,
			       sizeof(err)), "extra word");
}

#define ARGV(...) ((char *[]){ __VA_ARGS__, NULL })

static int parse_create(char **argv, struct create_req *r)
{
	int argc = 0, ret;

	while (argv[argc])
		argc++;
	memset(r, 0, sizeof(*r));
	mute();
	ret = create_parse(argc, argv, r);
	unmute();
	return ret;
}

static void test_create_args(void)
{
	char **ok = ARGV("vmcachectl create", "c0", "--cache", "/dev/nvme0n1",
			 "-o", "/dev/vdb", "--mode", "writeback", "-b", "32k",
			 "--set", "promote_after=3", "--must-exist", "-p", "lru");
	char **late = ARGV("vmcachectl create", "--cache=/dev/a", "--origin",
			   "/dev/b", "c1", "--force");
	char **no_origin = ARGV("vmcachectl create", "c0", "--cache", "/dev/a");
	char **bad_mode = ARGV("vmcachectl create", "c0", "-c", "/dev/a", "-o",
			       "/dev/b", "--mode", "fast");
	char **bad_bs = ARGV("vmcachectl create", "c0", "-c", "/dev/a", "-o",
			     "/dev/b", "--block-size", "5k");
	char **unknown = ARGV("vmcachectl create", "c0", "-c", "/dev/a", "-o",
			      "/dev/b", "--frobnicate");
	char **missing = ARGV("vmcachectl create", "c0", "-c");
	char **two = ARGV("vmcachectl create", "c0", "c1", "-c", "/dev/a", "-o",
			  "/dev/b");
	char **help = ARGV("vmcachectl create", "--help");
	struct create_req r;
	char params[256];
	int ret;

	ret = parse_create(ok, &r);
	EXPECT(ret == PARSE_RUN, "ret %d", ret);
	EXPECT(!strcmp(r.name, "c0") && !strcmp(r.cache, "/dev/nvme0n1") &&
	       !strcmp(r.origin, "/dev/vdb") && r.must_exist && !r.force,
	       "fields");
	strcpy(r.table.cache, "C");
	strcpy(r.table.origin, "O");
	EXPECT(!vmc_table_params(&r.table, params, sizeof(params)) &&
	       !strcmp(params, "C O 8 mode writeback block_size 32768 promote_after 3 policy lru"),
	       "%s", params);
	ret = parse_create(late, &r);
	EXPECT(ret == PARSE_RUN && !strcmp(r.name, "c1") && r.force &&
	       !strcmp(r.cache, "/dev/a"), "options after NAME, --opt=value");
	EXPECT(parse_create(no_origin, &r) == EXIT_USAGE, "no origin");
	EXPECT(parse_create(bad_mode, &r) == EXIT_USAGE, "bad mode");
	EXPECT(parse_create(bad_bs, &r) == EXIT_USAGE, "bad block size");
	EXPECT(parse_create(unknown, &r) == EXIT_USAGE, "unknown");
	EXPECT(parse_create(missing, &r) == EXIT_USAGE, "no value");
	EXPECT(parse_create(two, &r) == EXIT_USAGE, "two names");
	fflush(stdout);
	{
		int out = dup(STDOUT_FILENO), null = open("/dev/null", O_WRONLY);

		dup2(null, STDOUT_FILENO);
		ret = parse_create(help, &r);
		fflush(stdout);
		dup2(out, STDOUT_FILENO);
		close(out);
		close(null);
	}
	EXPECT(ret == EXIT_OK, "--help returns %d", ret);
}

static void test_vmcachetab(void)
{
	char l1[] = "cache0 /dev/disk/by-id/nvme-fast /dev/vdb mode=writeback  # main\n";
	char l2[] = "   # just a comment\n", l3[] = "\n", l4[] = "c1 /dev/a\n";
	char l5[] = "c1 /dev/a /dev/b bogus=1\n";
	char l6[] = "c2\t/dev/a\t/dev/b\tmust_exist=0 block_size=64k\n";
	struct create_req r;
	char err[200];

	EXPECT(vmcachetab_parse_line(l1, &r, err, sizeof(err)) == 1, "%s", err);
	EXPECT(!strcmp(r.name, "cache0") &&
	       !strcmp(r.cache, "/dev/disk/by-id/nvme-fast") &&
	       !strcmp(r.origin, "/dev/vdb") && r.must_exist &&
	       !strcmp(vmc_table_get(&r.table, "mode"), "writeback"), "fields");
	EXPECT(vmcachetab_parse_line(l2, &r, err, sizeof(err)) == 0, "comment");
	EXPECT(vmcachetab_parse_line(l3, &r, err, sizeof(err)) == 0, "blank");
	EXPECT(vmcachetab_parse_line(l4, &r, err, sizeof(err)) == -1, "short");
	EXPECT(vmcachetab_parse_line(l5, &r, err, sizeof(err)) == -1 &&
	       strstr(err, "bogus"), "%s", err);
	EXPECT(vmcachetab_parse_line(l6, &r, err, sizeof(err)) == 1 &&
	       !r.must_exist &&
	       !strcmp(vmc_table_get(&r.table, "block_size"), "65536"),
	       "must_exist=0 opts out");
}

/* Documentation/vmcache.rst, "Status line": every key, in order */
static const char sample_status[] =
	"version=1 mode=writeback policy=2q block_size=4096 metadata=ok "
	"metadata_used=4 metadata_total=10 blocks_total=1000 blocks_used=500 "
	"blocks_dirty=20 read_hits=900 read_misses=100 write_hits=30 "
	"write_misses=10 bypassed=5 promotions=100 demotions=2 "
	"writeback_done=7 writeback_inflight=1 writeback_errors=3 "
	"cache_errors=0 origin_errors=4 data_loss=0 flush=idle degraded=0 "
	"commits=12 seq=13";

static void test_status_parse(void)
{
	struct vmc_status st;
	char line[1024], err[200];

	EXPECT(!vmc_status_parse(sample_status, &st, err, sizeof(err)), "%s", err);
	EXPECT(st.version == 1 && !strcmp(st.mode, "writeback") &&
	       !strcmp(st.policy, "2q") && st.block_size == 4096 &&
	       !strcmp(st.metadata, "ok") && st.metadata_used == 4 &&
	       st.metadata_total == 10 && st.blocks_total == 1000 &&
	       st.blocks_used == 500 && st.blocks_dirty == 20 &&
	       st.read_hits == 900 && st.read_misses == 100 &&
	       st.write_hits == 30 && st.write_misses == 10 &&
	       st.bypassed == 5 && st.promotions == 100 && st.demotions == 2 &&
	       st.writeback_done == 7 && st.writeback_inflight == 1 &&
	       st.writeback_errors == 3 && st.cache_errors == 0 &&
	       st.origin_errors == 4 && st.data_loss == 0 &&
	       !strcmp(st.flush, "idle") && st.degraded == 0 &&
	       st.commits == 12 && st.seq == 13 && st.nr_extra == 0, "values");
	EXPECT(fabs(vmc_ratio(st.read_hits, st.read_misses) - 0.9) < 1e-9, "ratio");
	EXPECT(isnan(vmc_ratio(0, 0)), "no I/O is NaN");

	snprintf(line, sizeof(line), "%s future_key=abc other=7", sample_status);
	EXPECT(!vmc_status_parse(line, &st, err, sizeof(err)) &&
	       st.nr_extra == 2 && !strcmp(st.extra[0].key, "future_key") &&
	       !strcmp(st.extra[0].value, "abc"), "appended keys are kept");
	snprintf(line, sizeof(line), "%s seq=14", sample_status);
	EXPECT(vmc_status_parse(line, &st, err, sizeof(err)) &&
	       strstr(err, "twice"), "duplicate: %s", err);
	EXPECT(vmc_status_parse(sample_status + 10, &st, err, sizeof(err)) &&
	       strstr(err, "version"), "missing key: %s", err);
	snprintf(line, sizeof(line), "%s", sample_status);
	memcpy(strstr(line, "read_hits=900"), "read_hits=9x0", 13);
	EXPECT(vmc_status_parse(line, &st, err, sizeof(err)), "not a number");
	snprintf(line, sizeof(line), "%s garbage", sample_status);
	EXPECT(vmc_status_parse(line, &st, err, sizeof(err)), "no =");
	snprintf(line, sizeof(line), "%s", sample_status);
	memcpy(strstr(line, "read_hits=900"), "read_hits=   ", 13);
	EXPECT(vmc_status_parse(line, &st, err, sizeof(err)), "empty value");
}

/* runs f with a JSON writer on a memory stream; returns the text */
static char *json_of(void (*f)(struct json *j, const void *arg), const void *arg)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);
	struct json j;

	json_init(&j, m);
	f(&j, arg);
	json_finish(&j);
	fclose(m);
	return buf;
}

static void status_doc(struct json *j, const void *arg)
{
	json_begin_object(j, NULL);
	vmc_status_json(j, arg);
	json_end_object(j);
}

static void misc_doc(struct json *j, const void *arg)
{
	(void)arg;
	json_begin_object(j, NULL);
	json_str(j, "s", "a\"b\\c\n\x01/");
	json_double(j, "nan", NAN);
	json_double(j, "half", 0.5);
	json_begin_array(j, "empty");
	json_end_array(j);
	json_begin_object(j, "obj");
	json_end_object(j);
	json_begin_array(j, "list");
	json_u64(j, NULL, 1);
	json_bool(j, NULL, false);
	json_null(j, NULL);
	json_end_array(j);
	json_end_object(j);
}

static void test_json(void)
{
	struct vmc_status st;
	char err[200], *s;

	vmc_status_parse(sample_status, &st, err, sizeof(err));
	s = json_of(status_doc, &st);
	EXPECT(json_valid(s), "%s", s);
	EXPECT(strstr(s, "\"read_hits\": 900,") && strstr(s, "\"mode\": \"writeback\"") &&
	       strstr(s, "\"seq\": 13\n"), "%s", s);
	free(s);
	s = json_of(misc_doc, NULL);
	EXPECT(json_valid(s), "%s", s);
	EXPECT(strstr(s, "\"a\\\"b\\\\c\\n\\u0001/\"") && strstr(s, "\"nan\": null") &&
	       strstr(s, "\"half\": 0.5") && strstr(s, "\"empty\": []") &&
	       strstr(s, "\"obj\": {}"), "%s", s);
	free(s);
	EXPECT(!json_valid("{\"a\": 1,}") && !json_valid("{} {}") &&
	       !json_valid("[1 2]"), "the checker itself rejects junk");
}

static void test_drain_line(void)
{
	char b[200];

	drain_line(b, sizeof(b), 100, 50, 4096, 10, true);
	EXPECT(!strncmp(b, "[############------------]  50.0%  50 dirty blocks (200 KiB) left, 40.0 KiB/s, ETA 0:05",
			strlen(b)), "%s", b);
	drain_line(b, sizeof(b), 100, 120, 4096, 0, false);
	EXPECT(strstr(b, "  0.0%") && strstr(b, "ETA ?") && b[0] != '[', "%s", b);
}

/* ---- metadata on image files ------------------------------------------- */

#define IMG_BYTES (4u << 20)		/* 768 blocks of 4 KiB, 2 mapping pages */
#define ORIGIN_SECTORS 100000ULL	/* 12500 blocks */
#define EPP VMC_ENTRIES_PER_PAGE

static char img[128];

static int page_io(int fd, void *buf, uint64_t page, bool write)
{
	off_t off = (off_t)(page * VMC_PAGE_SIZE);
	ssize_t n = write ? pwrite(fd, buf, VMC_PAGE_SIZE, off) :
			    pread(fd, buf, VMC_PAGE_SIZE, off);

	return n == VMC_PAGE_SIZE ? 0 : -1;
}

static int rw_page(void *buf, uint64_t page, bool write)
{
	int fd = open(img, write ? O_RDWR : O_RDONLY);
	int ret;

	if (fd < 0)
		return -1;
	ret = page_io(fd, buf, page, write);
	close(fd);
	return ret;
}

static int make_image(uint64_t bytes)
{
	static const uint8_t uuid[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
					  13, 14, 15, 16 };
	struct vmc_dev d;
	int fd, ret;

	unlink(img);	/* not O_TRUNC: ext4 then flushes on every close */
	fd = open(img, O_RDWR | O_CREAT | O_EXCL, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)bytes))
		return -1;
	close(fd);
	if (vmc_dev_open(&d, img, VMC_DEV_WRITE))
		return -1;
	ret = vmc_format(&d, 4096, ORIGIN_SECTORS, 1700000000, uuid);
	vmc_dev_close(&d);
	return ret;
}

static int check_img(void)
{
	return check_run(img, true, false, false);
}

static bool sb_valid(const struct vmc_superblock *sb)
{
	return le64toh(sb->magic) == VMC_MAGIC &&
	       le32toh(sb->csum) == vmc_sb_csum(sb);
}

static uint64_t mpage_loc(uint32_t nr_mpages, int area, uint64_t p)
{
	return VMC_SB_SLOTS + (uint64_t)area * nr_mpages + p;
}

struct change {
	uint64_t cblock, entry;
};

/*
 * A commit as the kernel does it: changed mapping pages go to the copy
 * that does not hold their newest committed version, with seq + 1, then
 * the other superblock slot with seq + 1 and recounted totals.
 * sb_skew is added to nr_dirty (to test count checks); with torn set, the
 * superblock is not written (a crash before it).
 */
static int commit(const struct change *ch, size_t n, int sb_skew, bool torn)
{
	struct vmc_superblock sb[2], *cur;
	struct vmc_mpage pg[2];
	uint64_t seq, nr_valid = 0, nr_dirty = 0;
	uint32_t nr_mpages;
	int fd = open(img, O_RDWR), s, ret = -1;

	if (fd < 0 || page_io(fd, &sb[0], 0, false) || page_io(fd, &sb[1], 1, false))
		goto out;
	s = sb_valid(&sb[1]) && (!sb_valid(&sb[0]) ||
				 le64toh(sb[1].seq) > le64toh(sb[0].seq));
	cur = &sb[s];
	seq = le64toh(cur->seq);
	nr_mpages = le32toh(cur->nr_mpages);
	for (uint64_t p = 0; p < nr_mpages; p++) {
		bool ok[2], changed = false;
		int use;

		for (int c = 0; c < 2; c++) {
			if (page_io(fd, &pg[c], mpage_loc(nr_mpages, c, p), false))
				goto out;
			ok[c] = le32toh(pg[c].hdr.csum) == vmc_mpage_csum(cur->uuid, &pg[c]) &&
				le64toh(pg[c].hdr.seq) <= seq;
		}
		use = ok[1] && (!ok[0] || le64toh(pg[1].hdr.seq) > le64toh(pg[0].hdr.seq));
		for (size_t i = 0; i < n; i++) {
			if (ch[i].cblock / EPP == p) {
				pg[use].entries[ch[i].cblock % EPP] = htole64(ch[i].entry);
				changed = true;
			}
		}
		for (size_t i = 0; i < EPP; i++) {
			uint64_t e = le64toh(pg[use].entries[i]);

			nr_valid += vmc_entry_valid(e) != 0;
			nr_dirty += vmc_entry_dirty(e) != 0;
		}
		if (!changed)
			continue;
		pg[use].hdr.seq = htole64(seq + 1);
		vmc_mpage_seal(cur->uuid, &pg[use]);
		if (page_io(fd, &pg[use], mpage_loc(nr_mpages, !use, p), true))
			goto out;
	}
	if (torn) {
		ret = 0;
		goto out;
	}
	cur->seq = htole64(seq + 1);
	cur->location = htole64((uint64_t)!s * VMC_PAGE_SECTORS);
	cur->nr_valid = htole64(nr_valid);
	cur->nr_dirty = htole64(nr_dirty + (uint64_t)sb_skew);
	cur->commit_time = htole64(le64toh(cur->commit_time) + 1);
	vmc_sb_seal(cur);
	ret = page_io(fd, cur, (uint64_t)!s, true);
out:
	if (fd >= 0)
		close(fd);
	return ret;
}

static const struct change mappings[] = {
	{ 0, 0 }, { 1, 0 }, { 600, 0 },	/* entries filled in below */
};

static int add_mappings(void)
{
	struct change ch[ARRAY_SIZE(mappings)];

	memcpy(ch, mappings, sizeof(ch));
	ch[0].entry = vmc_entry_pack(5, 0xff, 0x0f);
	ch[1].entry = vmc_entry_pack(6, 0x01, 0);
	ch[2].entry = vmc_entry_pack(12499, 0xff, 0xff);	/* last origin block */
	return commit(ch, ARRAY_SIZE(ch), 0, false);
}

/* a page edited by f, resealed (a mapping page with slot 0's uuid), written back */
static int edit_page(uint64_t page, void (*f)(void *pg))
{
	struct vmc_superblock sb;
	uint8_t buf[VMC_PAGE_SIZE];

	if (rw_page(&sb, 0, false) || rw_page(buf, page, false))
		return -1;
	f(buf);
	if (page < VMC_SB_SLOTS)
		vmc_sb_seal((void *)buf);
	else
		vmc_mpage_seal(sb.uuid, (void *)buf);
	return rw_page(buf, page, true);
}

/* exit statuses of check with each byte of a page flipped, one at a time */
static void flip_every_byte(uint64_t page, int want_min, int want_max)
{
	static const uint8_t masks[] = { 0xff, 0x01, 0x80 };
	uint8_t buf[VMC_PAGE_SIZE];
	int bad = 0, rc, fd = open(img, O_RDWR);

	if (fd < 0 || page_io(fd, buf, page, false)) {
		EXPECT(0, "cannot read page %llu", (unsigned long long)page);
		return;
	}
	for (size_t m = 0; m < ARRAY_SIZE(masks); m++) {
		for (size_t off = 0; off < VMC_PAGE_SIZE; off++) {
			buf[off] ^= masks[m];
			page_io(fd, buf, page, true);
			rc = check_img();
			buf[off] ^= masks[m];
			if ((rc < want_min || rc > want_max) && bad++ < 5)
				printf("# page %llu byte %zu ^ 0x%02x: check exit %d\n",
				       (unsigned long long)page, off, masks[m], rc);
		}
	}
	page_io(fd, buf, page, true);
	close(fd);
	EXPECT(!bad, "%d flips not detected as %d..%d", bad, want_min, want_max);
	EXPECT(check_img() == CHECK_CLEAN, "restored image is clean");
}

static void test_format_layout(void)
{
	uint8_t buf[VMC_PAGE_SIZE];
	struct vmc_superblock *sb = (void *)buf;
	struct vmc_mpage *pg = (void *)buf;
	struct vmc_layout l;
	uint8_t uuid[16];

	EXPECT(!make_image(IMG_BYTES), "format");
	vmc_compute_layout(IMG_BYTES >> 9, 4096, &l);
	EXPECT(!rw_page(buf, 0, false) && sb_valid(sb) && le64toh(sb->seq) == 1 &&
	       le64toh(sb->location) == 0 && le32toh(sb->version) == VMC_VERSION &&
	       le64toh(sb->nr_blocks) == l.nr_blocks &&
	       le32toh(sb->nr_mpages) == l.nr_mpages && l.nr_mpages == 2 &&
	       le64toh(sb->data_start) == l.data_start &&
	       le64toh(sb->cache_sectors) == l.data_start + l.nr_blocks * 8 &&
	       le64toh(sb->origin_sectors) == ORIGIN_SECTORS &&
	       !sb->nr_valid && !sb->nr_dirty && !sb->flags && !sb->mode,
	       "slot 0");
	memcpy(uuid, sb->uuid, sizeof(uuid));
	EXPECT(!rw_page(buf, 1, false) && !buf[0] && !memcmp(buf, buf + 1, sizeof(buf) - 1),
	       "slot 1 is zero");
	for (uint64_t p = 0; p < l.nr_mpages; p++) {
		EXPECT(!rw_page(buf, mpage_loc(l.nr_mpages, 0, p), false) &&
		       le32toh(pg->hdr.csum) == vmc_mpage_csum(uuid, pg) &&
		       le32toh(pg->hdr.index) == p && le64toh(pg->hdr.seq) == 1,
		       "area A page %llu", (unsigned long long)p);
		for (size_t i = 0; i < EPP; i++)
			EXPECT(!pg->entries[i], "entry %zu", i);
		EXPECT(!rw_page(buf, mpage_loc(l.nr_mpages, 1, p), false) && !buf[0] &&
		       !memcmp(buf, buf + 1, sizeof(buf) - 1), "area B is zero");
	}
	EXPECT(check_img() == CHECK_CLEAN, "fresh format is clean");
}

static void test_check_mappings(void)
{
	char out[16384];

	EXPECT(!make_image(IMG_BYTES) && !add_mappings(), "setup");
	EXPECT(check_img() == CHECK_CLEAN, "committed mappings are clean");
	EXPECT(run_tool(out, sizeof(out), "dump --json %s", img) == 0 &&
	       json_valid(out), "dump --json: %s", out);
	EXPECT(strstr(out, "\"cblock\": 600,\n      \"oblock\": 12499,\n      \"valid\": 255,\n      \"dirty\": 255"),
	       "%s", out);
	EXPECT(strstr(out, "\"nr_valid\": 3") && strstr(out, "\"nr_dirty\": 2") &&
	       strstr(out, "\"seq\": 2"), "%s", out);
	EXPECT(run_tool(out, sizeof(out), "check --json %s", img) == 0 &&
	       json_valid(out) && strstr(out, "\"result\": \"clean\"") &&
	       strstr(out, "\"superblock_slot\": 1"), "%s", out);
	EXPECT(run_tool(out, sizeof(out), "dump %s", img) == 0 &&
	       strstr(out, "mappings: 3 of 768 blocks, 2 dirty"), "%s", out);
}

static void test_flip_fresh(void)
{
	EXPECT(!make_image(IMG_BYTES), "setup");
	/* the only superblock, the only copy of a page: corrupt */
	flip_every_byte(0, CHECK_CORRUPT, CHECK_CORRUPT);
	flip_every_byte(mpage_loc(2, 0, 0), CHECK_CORRUPT, CHECK_CORRUPT);
	flip_every_byte(mpage_loc(2, 0, 1), CHECK_CORRUPT, CHECK_CORRUPT);
}

static void test_flip_committed(void)
{
	EXPECT(!make_image(IMG_BYTES) && !add_mappings(), "setup");
	/*
	 * Slot 1 (seq 2) is in use and slot 0 holds seq 1; page 0 and 1 have
	 * seq 2 copies in area B and seq 1 copies in area A.  Damage to the
	 * newest copy falls back to the older one: at least a warning.
	 */
	flip_every_byte(1, CHECK_WARNINGS, CHECK_CORRUPT);
	flip_every_byte(0, CHECK_WARNINGS, CHECK_CORRUPT);
	flip_every_byte(mpage_loc(2, 1, 0), CHECK_WARNINGS, CHECK_CORRUPT);
	flip_every_byte(mpage_loc(2, 1, 1), CHECK_WARNINGS, CHECK_CORRUPT);
	/* the copies from before that commit can no longer matter: info */
	flip_every_byte(mpage_loc(2, 0, 0), CHECK_CLEAN, CHECK_CLEAN);
}

static void test_torn_commit(void)
{
	struct change ch = { 7, 0 };
	char out[8192];

	EXPECT(!make_image(IMG_BYTES) && !add_mappings(), "setup");
	ch.entry = vmc_entry_pack(100, 0xff, 0xff);
	EXPECT(!commit(&ch, 1, 0, true), "torn commit");
	EXPECT(check_img() == CHECK_CLEAN, "a page newer than the superblock is ignored");
	EXPECT(run_tool(out, sizeof(out), "check %s", img) == 0 &&
	       strstr(out, "interrupted commit") &&
	       strstr(out, "3 of 768 blocks mapped, 2 dirty"), "%s", out);
}

static void test_torn_superblock(void)
{
	uint8_t buf[VMC_PAGE_SIZE];
	char out[8192];

	EXPECT(!make_image(IMG_BYTES) && !add_mappings(), "setup");
	/* half of slot 1 (seq 2) reached the disk */
	EXPECT(!rw_page(buf, 1, false), "read");
	memset(buf + VMC_PAGE_SIZE / 2, 0xee, VMC_PAGE_SIZE / 2);
	EXPECT(!rw_page(buf, 1, true), "write");
	EXPECT(run_tool(out, sizeof(out), "check %s", img) == CHECK_WARNINGS &&
	       strstr(out, "slot 1 is damaged") && strstr(out, "superblock slot 0, seq 1") &&
	       strstr(out, "0 of 768 blocks mapped"), "%s", out);
}

static void test_bad_entries(void)
{
	static const struct { const char *what; uint64_t cblock, entry; } cases[] = {
		{ "dirty mask 0x03 is not a subset", 3, 0 },
		{ "beyond the origin", 4, 0 },
		{ "reserved bits", 5, 0 },
		{ "but the cache has only 768 blocks", 768 + 5, 0 },
		{ "mapped by 2 cache blocks", 9, 0 },
		{ "its valid mask is empty", 10, 0 },
	};
	char out[8192];

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct change ch = { cases[i].cblock, 0 };

		switch (i) {
		case 0: ch.entry = vmc_entry_pack(1, 0x01, 0x03); break;
		case 1: ch.entry = vmc_entry_pack(12500, 0x01, 0); break;
		case 2: ch.entry = vmc_entry_pack(1, 0x01, 0) | (1ULL << 60); break;
		case 3: ch.entry = vmc_entry_pack(1, 0x01, 0); break;
		case 4: ch.entry = vmc_entry_pack(5, 0x01, 0); break;	/* as cblock 0 */
		default: ch.entry = vmc_entry_pack(8, 0, 0); break;
		}
		EXPECT(!make_image(IMG_BYTES) && !add_mappings() &&
		       !commit(&ch, 1, 0, false), "setup %zu", i);
		EXPECT(run_tool(out, sizeof(out), "check %s", img) == CHECK_CORRUPT &&
		       strstr(out, cases[i].what), "%s: %s", cases[i].what, out);
	}
}

static void test_counts(void)
{
	char out[8192];

	EXPECT(!make_image(IMG_BYTES) && !add_mappings(), "setup");
	EXPECT(!commit(NULL, 0, 1, false), "commit with a wrong count");
	EXPECT(run_tool(out, sizeof(out), "check %s", img) == CHECK_CORRUPT &&
	       strstr(out, "counts 3 dirty blocks, the mappings hold 2"), "%s", out);
}

static void set_needs_check(void *pg)
{
	struct vmc_superblock *sb = pg;

	sb->flags |= htole32(VMC_SB_NEEDS_CHECK);
}

static void set_version(void *pg)
{
	((struct vmc_superblock *)pg)->version = htole32(VMC_VERSION_MAX + 1);
}

/* bit 0 is data_crc (known); bit 1 is not defined */
static void set_incompat(void *pg)
{
	((struct vmc_superblock *)pg)->incompat = htole64(2);
}

static void set_compat_ro(void *pg)
{
	((struct vmc_superblock *)pg)->compat_ro = htole64(4);
}

static void set_nr_blocks(void *pg)
{
	struct vmc_superblock *sb = pg;

	sb->nr_blocks = htole64(le64toh(sb->nr_blocks) + 1);
}

static void set_index(void *pg)
{
	((struct vmc_mpage *)pg)->hdr.index = htole32(1);
}

static void set_location(void *pg)
{
	((struct vmc_superblock *)pg)->location = htole64(8);
}

/* a resealed field edit: the checksum passes, the field check must not */
static void test_superblock_fields(void)
{
	static const struct {
		void (*f)(void *pg);
		uint64_t page;
		int want;
		const char *what;
	} cases[] = {
		{ set_needs_check, 0, CHECK_WARNINGS, "needing a check" },
		{ set_version, 0, CHECK_CORRUPT, "version 2 is not supported" },
		{ set_incompat, 0, CHECK_CORRUPT, "unknown incompatible features 0x2" },
		{ set_compat_ro, 0, CHECK_WARNINGS, "unknown read-only features 0x4" },
		{ set_nr_blocks, 0, CHECK_CORRUPT, "nr_blocks is 769" },
		{ set_location, 0, CHECK_CORRUPT, "location is sector 8, expected 0" },
		{ set_index, 2, CHECK_CORRUPT, "index field is 1" },
	};
	char out[8192];

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		EXPECT(!make_image(IMG_BYTES) && !edit_page(cases[i].page, cases[i].f),
		       "setup");
		EXPECT(run_tool(out, sizeof(out), "check %s", img) == cases[i].want &&
		       strstr(out, cases[i].what), "%s: %s", cases[i].what, out);
	}
}

static void set_uuid(void *pg)
{
	((struct vmc_superblock *)pg)->uuid[0] ^= 1;
}

/* unsealed garbage over a page */
static int garbage(uint64_t page)
{
	uint8_t buf[VMC_PAGE_SIZE];

	memset(buf, 0x77, sizeof(buf));
	return rw_page(buf, page, true);
}

static void test_page_copies(void)
{
	char out[8192];

	/* every mapping checksum covers the uuid: another cache's pages fail */
	EXPECT(!make_image(IMG_BYTES) && !edit_page(0, set_uuid), "setup");
	EXPECT(run_tool(out, sizeof(out), "check %s", img) == CHECK_CORRUPT &&
	       strstr(out, "mapping page 0: no valid copy"), "%s", out);
	/* stale area B left by an earlier format (as the kernel leaves it) */
	EXPECT(!make_image(IMG_BYTES) && !garbage(mpage_loc(2, 1, 0)) &&
	       !garbage(mpage_loc(2, 1, 1)), "setup");
	EXPECT(run_tool(out, sizeof(out), "check %s", img) == CHECK_CLEAN &&
	       strstr(out, "2 unused mapping page copies do not validate"), "%s", out);
	/* a bad newest copy while the other is older than the last commit */
	EXPECT(!make_image(IMG_BYTES) && !add_mappings() && !commit(NULL, 0, 0, false) &&
	       !garbage(mpage_loc(2, 0, 0)), "setup");
	EXPECT(run_tool(out, sizeof(out), "check %s", img) == CHECK_WARNINGS &&
	       strstr(out, "copy A has a checksum mismatch; the other copy (seq 2) is older than the last commit (3)"),
	       "%s", out);
}

static void test_clear_needs_check(void)
{
	struct change ch = { 3, 0 };
	char out[8192];

	EXPECT(!make_image(IMG_BYTES) && !add_mappings() &&
	       !edit_page(1, set_needs_check), "setup");
	EXPECT(check_img() == CHECK_WARNINGS, "flagged");
	EXPECT(run_tool(out, sizeof(out), "check --clear-needs-check %s", img) ==
	       CHECK_CLEAN && strstr(out, "superblock slot 0, seq 3"), "%s", out);
	EXPECT(check_img() == CHECK_CLEAN, "cleared for good");
	/* with errors the flag stays */
	ch.entry = vmc_entry_pack(1, 0x01, 0x03);
	EXPECT(!commit(&ch, 1, 0, false) && !edit_page(1, set_needs_check), "setup");
	EXPECT(run_tool(out, sizeof(out), "check --clear-needs-check %s", img) ==
	       CHECK_CORRUPT && strstr(out, "needing a check"), "%s", out);
	EXPECT(run_tool(out, sizeof(out), "check %s", img) == CHECK_CORRUPT &&
	       strstr(out, "needing a check"), "still flagged: %s", out);
}

static void test_slots(void)
{
	uint8_t buf[VMC_PAGE_SIZE];
	char out[8192];

	/* slot 0 copied into slot 1: a misdirected write, slot 0 still good */
	EXPECT(!make_image(IMG_BYTES) && !rw_page(buf, 0, false) &&
	       !rw_page(buf, 1, true), "setup");
	EXPECT(run_tool(out, sizeof(out), "check %s", img) == CHECK_WARNINGS &&
	       strstr(out, "slot 1: location is sector 0, expected 8"), "%s", out);
	/* both slots valid with the same seq */
	EXPECT(!make_image(IMG_BYTES) && !rw_page(buf, 0, false), "setup");
	((struct vmc_superblock *)(void *)buf)->location = htole64(8);
	vmc_sb_seal((void *)buf);
	EXPECT(!rw_page(buf, 1, true), "write");
	EXPECT(run_tool(out, sizeof(out), "check %s", img) == CHECK_WARNINGS &&
	       strstr(out, "both have seq 1"), "%s", out);
	/* slot 0 zero: slot 1 alone is used, as by the kernel */
	memset(buf, 0, sizeof(buf));
	EXPECT(!rw_page(buf, 0, true), "wipe slot 0");
	EXPECT(run_tool(out, sizeof(out), "check %s", img) == CHECK_CLEAN &&
	       strstr(out, "superblock slot 1, seq 1"), "%s", out);
	/* both zero: blank */
	EXPECT(!rw_page(buf, 1, true), "wipe slot 1");
	EXPECT(run_tool(out, sizeof(out), "check %s", img) == CHECK_CORRUPT &&
	       strstr(out, "the device is blank"), "%s", out);
	/* the device shrank below its superblock's size */
	EXPECT(!make_image(IMG_BYTES) && !truncate(img, IMG_BYTES - 65536), "setup");
	EXPECT(run_tool(out, sizeof(out), "check %s", img) == CHECK_CORRUPT &&
	       strstr(out, "it shrank"), "%s", out);
	/* grew: fine, noted */
	EXPECT(!make_image(IMG_BYTES) && !truncate(img, IMG_BYTES + 65536), "setup");
	EXPECT(run_tool(out, sizeof(out), "check %s", img) == CHECK_CLEAN &&
	       strstr(out, "the device grew"), "%s", out);
}

static void test_cli(void)
{
	char out[8192];

	EXPECT(run_tool(NULL, 0, "frobnicate") == EXIT_USAGE, "unknown command");
	EXPECT(run_tool(NULL, 0, "check") == CHECK_OPERROR, "check without DEV");
	EXPECT(run_tool(NULL, 0, "check --bogus x") == CHECK_OPERROR, "bad option");
	EXPECT(run_tool(out, sizeof(out), "check --json %s/missing", tmpdir) ==
	       CHECK_OPERROR && json_valid(out) && strstr(out, "\"error\": "),
	       "%s", out);
	EXPECT(run_tool(out, sizeof(out), "dump --json %s/missing", tmpdir) ==
	       EXIT_FAIL && json_valid(out) && strstr(out, "\"error\": "),
	       "%s", out);
	EXPECT(run_tool(out, sizeof(out), "check --help") == 0 &&
	       strstr(out, "Usage: vmcachectl check"), "%s", out);
	EXPECT(run_tool(out, sizeof(out), "version") == 0 &&
	       strstr(out, "vmcachectl " VMCACHECTL_VERSION), "%s", out);
	/* too small to check: an operational error, not corruption */
	EXPECT(!truncate(img, 4096), "truncate");
	EXPECT(run_tool(NULL, 0, "check -q %s", img) == CHECK_OPERROR, "tiny");

	/* format: refuses an existing cache, needs the origin size */
	EXPECT(!make_image(IMG_BYTES), "setup");
	EXPECT(run_tool(NULL, 0, "format %s --origin-size 5000", img) == EXIT_FAIL,
	       "format over a cache");
	EXPECT(run_tool(NULL, 0, "format %s", img) == EXIT_USAGE, "no origin size");
	EXPECT(run_tool(NULL, 0, "format %s -s 5000 -b 3k", img) == EXIT_USAGE,
	       "bad block size");
	EXPECT(run_tool(out, sizeof(out), "format %s -s 5000 --block-size 16k --force",
			img) == 0, "format --force");
	EXPECT(run_tool(out, sizeof(out), "dump --json %s", img) == 0 &&
	       strstr(out, "\"block_size\": 16384") &&
	       strstr(out, "\"origin_sectors\": 5000"), "%s", out);
	EXPECT(!truncate(img, 1 << 20), "shrink");
	EXPECT(run_tool(NULL, 0, "format %s -s 5000 --force", img) == EXIT_FAIL,
	       "too small to format");
	EXPECT(run_tool(out, sizeof(out), "set --help") == 0 &&
	       strstr(out, "writeback_max_inflight"), "%s", out);
	EXPECT(run_tool(NULL, 0, "set a b") == EXIT_USAGE, "set arity");
}

/* ---- create's checks on loop devices (root only, --dry-run) ------------- */

#define NR_LOOPS 3	/* cache 64 MiB, origin 32 MiB, tiny 1 MiB */

static char loops[NR_LOOPS][32];

static int loop_attach(int i, uint64_t bytes)
{
	char path[160], cmd[256];
	FILE *p;
	int fd;

	snprintf(path, sizeof(path), "%s/loop%d.img", tmpdir, i);
	fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)bytes))
		return -1;
	close(fd);
	snprintf(cmd, sizeof(cmd), "losetup -f --show %s 2>/dev/null", path);
	p = popen(cmd, "r");
	if (!p)
		return -1;
	if (!fgets(loops[i], sizeof(loops[i]), p))
		loops[i][0] = '\0';
	pclose(p);
	loops[i][strcspn(loops[i], "\n")] = '\0';
	unlink(path);	/* the loop device keeps it */
	return loops[i][0] ? 0 : -1;
}

static void loops_detach(void)
{
	char cmd[128];

	for (int i = 0; i < NR_LOOPS; i++) {
		if (!loops[i][0])
			continue;
		snprintf(cmd, sizeof(cmd), "losetup -d %s", loops[i]);
		if (system(cmd))
			printf("# cannot detach %s\n", loops[i]);
		loops[i][0] = '\0';
	}
}

static int write_garbage(const char *dev)
{
	char junk[512];
	int fd = open(dev, O_WRONLY), ret;

	memset(junk, 'x', sizeof(junk));
	ret = fd >= 0 && pwrite(fd, junk, sizeof(junk), 0) == sizeof(junk) &&
	      !fsync(fd) ? 0 : -1;
	if (fd >= 0)
		close(fd);
	return ret;
}

static void test_create_checks(void)
{
	const char *c, *o, *tiny;
	char out[1024];
	int fd;

	if (geteuid()) {
		case_skip = "needs root for loop devices";
		return;
	}
	if (loop_attach(0, 64 << 20) || loop_attach(1, 32 << 20) ||
	    loop_attach(2, 1 << 20)) {
		loops_detach();
		case_skip = "no loop devices";
		return;
	}
	c = loops[0];
	o = loops[1];
	tiny = loops[2];

	/* blank cache: the kernel formats it */
	EXPECT(run_tool(out, sizeof(out), "create t0 -n --cache %s --origin %s --mode writeback",
			c, o) == 0 && !strncmp(out, "0 65536 vmcache ", 16) &&
	       strstr(out, " 2 mode writeback\n"), "%s", out);
	EXPECT(run_tool(NULL, 0, "create t0 -n -c %s -o %s --must-exist", c, o) ==
	       EXIT_FAIL, "blank with --must-exist");
	EXPECT(run_tool(NULL, 0, "create t0 -n -c %s -o %s --must-exist --force",
			c, o) == EXIT_USAGE, "--must-exist --force");
	EXPECT(run_tool(NULL, 0, "create a/b -n -c %s -o %s", c, o) == EXIT_USAGE,
	       "bad name");

	/* a cache for this origin loads; for another origin it is refused */
	EXPECT(run_tool(NULL, 0, "format %s --origin %s", c, o) == 0, "format");
	EXPECT(run_tool(NULL, 0, "check -q %s", c) == 0, "check over O_DIRECT");
	EXPECT(run_tool(out, sizeof(out), "create t0 -n -c %s -o %s --must-exist",
			c, o) == 0 && strstr(out, " 2 must_exist 1\n"), "%s", out);
	EXPECT(run_tool(NULL, 0, "create t0 -n -c %s -o %s -b 32k", c, o) ==
	       EXIT_FAIL, "another block size");
	EXPECT(run_tool(NULL, 0, "format %s --origin-size 5 --force", c) == 0,
	       "format for another origin");
	EXPECT(run_tool(NULL, 0, "create t0 -n -c %s -o %s", c, o) == EXIT_FAIL,
	       "another origin");
	EXPECT(run_tool(NULL, 0, "create t0 -n -c %s -o %s --force", c, o) == 0,
	       "another origin, --force");

	/* not a cache */
	EXPECT(!write_garbage(c), "garbage");
	EXPECT(run_tool(NULL, 0, "create t0 -n -c %s -o %s", c, o) == EXIT_FAIL,
	       "foreign data");
	EXPECT(run_tool(NULL, 0, "create t0 -n -c %s -o %s --must-exist", c, o) ==
	       EXIT_FAIL, "foreign data, --must-exist");
	EXPECT(run_tool(NULL, 0, "create t0 -n -c %s -o %s -f", c, o) == 0,
	       "foreign data, --force");

	/* device problems */
	EXPECT(run_tool(NULL, 0, "create t0 -n -c %s -o %s", c, c) == EXIT_FAIL,
	       "same device");
	EXPECT(run_tool(NULL, 0, "create t0 -n -c %s -o %s", img, o) == EXIT_FAIL,
	       "an image file");
	EXPECT(run_tool(NULL, 0, "create t0 -n -c %s -o %s", tiny, o) == EXIT_FAIL,
	       "too small");
	fd = open(o, O_RDONLY | O_EXCL);
	EXPECT(fd >= 0 && run_tool(NULL, 0, "create t0 -n -c %s -o %s", c, o) ==
	       EXIT_FAIL, "origin in use");
	if (fd >= 0)
		close(fd);
	fd = open(c, O_RDONLY | O_EXCL);
	mute();
	EXPECT(fd >= 0 && run_tool(NULL, 0, "check %s", c) == CHECK_OPERROR,
	       "check refuses a device in use");
	unmute();
	if (fd >= 0)
		close(fd);
	loops_detach();
}

#include "unit_writeback.c"
#include "unit_metrics.c"

/* data_crc: the CRC area between mapping area B and the data, and nothing else moves */
static void test_crc_layout(void)
{
	static const uint64_t sizes[] = { 20480, 1 << 21, 123456789, 1ULL << 31 };
	struct vmc_cpage pg;

	EXPECT(sizeof(pg) == VMC_PAGE_SIZE && VMC_CRC_BLOCKS_PER_PAGE * 64 + 16 <= VMC_PAGE_SIZE,
	       "a CRC page holds 63 blocks of 2 x 8 slots");
	for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
		struct vmc_layout a, b;

		vmc_compute_layout(sizes[i], 4096, &a);
		vmc_compute_layout_crc(sizes[i], 4096, 1, &b);
		EXPECT(!a.nr_cpages && a.data_start == vmc_data_start_for(a.nr_mpages),
		       "size %zu: without data_crc the layout is the old one", i);
		EXPECT(b.nr_cpages == (b.nr_blocks + 62) / 63 &&
		       b.crc_start == b.mapping_start + 2ULL * b.nr_mpages * VMC_PAGE_SECTORS &&
		       vmc_cpage_sector(&b, 1, b.nr_cpages - 1) + VMC_PAGE_SECTORS <= b.data_start &&
		       b.data_start % VMC_DATA_ALIGN_SECTORS == 0 &&
		       b.data_start + b.nr_blocks * 8 <= sizes[i] && b.nr_blocks <= a.nr_blocks,
		       "size %zu: CRC area after mapping area B, before the data, all inside", i);
	}
	/* the size recorded at format (data_start + blocks) gives the layout back */
	for (uint64_t mib = 1; mib <= 4096; mib++) {
		for (int crc = 0; crc < 2; crc++) {
			struct vmc_layout a, b;

			vmc_compute_layout_crc(mib * 2048, 4096, crc, &a);
			if (a.nr_blocks < VMC_MIN_BLOCKS)
				continue;
			vmc_compute_layout_crc(a.data_start + a.nr_blocks * 8, 4096, crc, &b);
			EXPECT(a.nr_blocks == b.nr_blocks && a.data_start == b.data_start,
			       "%" PRIu64 " MiB, data_crc %d: %" PRIu64 " blocks at format, %" PRIu64
			       " from the recorded size", mib, crc, (uint64_t)a.nr_blocks,
			       (uint64_t)b.nr_blocks);
		}
	}
}
#include "unit_mrc.c"

/* ---- runner ------------------------------------------------------------ */

static const struct {
	const char *name;
	void (*fn)(void);
} tests[] = {
	{ "crc32c_known_answer", test_crc32c },
	{ "parse_size", test_parse_size },
	{ "parse_numbers", test_parse_numbers },
	{ "human_units", test_units },
	{ "tunable_ranges", test_tunables },
	{ "table_build_and_parse", test_table },
	{ "create_arguments", test_create_args },
	{ "vmcachetab_lines", test_vmcachetab },
	{ "status_parse", test_status_parse },
	{ "mrc_status", test_mrc_status },
	{ "mrc_curve", test_mrc_curve },
	{ "mrc_output", test_mrc_output },
	{ "mrc_prometheus", test_mrc_prometheus },
	{ "json_writer", test_json },
	{ "prometheus_status_exact", test_prom_status },
	{ "prometheus_histograms", test_prom_histograms },
	{ "prometheus_caches_labels_new_keys", test_prom_caches },
	{ "latency_line_parse", test_latency_parse },
	{ "latency_sysfs_and_json", test_latency_sysfs_json },
	{ "prometheus_cli", test_prom_cli },
	{ "drain_progress_line", test_drain_line },
	{ "format_layout", test_format_layout },
	{ "crc_layout", test_crc_layout },
	{ "check_committed_mappings", test_check_mappings },
	{ "byte_flips_fresh_image", test_flip_fresh },
	{ "byte_flips_after_commit", test_flip_committed },
	{ "torn_commit_ignored", test_torn_commit },
	{ "torn_superblock_falls_back", test_torn_superblock },
	{ "bad_entries", test_bad_entries },
	{ "count_mismatch", test_counts },
	{ "superblock_fields", test_superblock_fields },
	{ "superblock_slots", test_slots },
	{ "mapping_page_copies", test_page_copies },
	{ "clear_needs_check", test_clear_needs_check },
	{ "cli_exit_codes", test_cli },
	{ "create_checks_on_loop_devices", test_create_checks },
	{ "writeback_offline_whole", test_wb_whole },
	{ "writeback_offline_flux", test_wb_flux },
	{ "writeback_offline_dry_run", test_wb_dry_run },
	{ "writeback_offline_export", test_wb_export },
	{ "writeback_offline_interrupted", test_wb_interrupted },
	{ "writeback_offline_leftover_page", test_wb_leftover_page },
	{ "writeback_offline_refusals", test_wb_refusals },
};

int main(int argc, char **argv)
{
	int passed = 0, failed = 0, skipped = 0;

	tool = argc > 1 ? argv[1] : "./vmcachectl";
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/vmcachectl-unit.XXXXXX");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(img, sizeof(img), "%s/cache.img", tmpdir);
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("KTAP version 1\n1..%zu\n", ARRAY_SIZE(tests));
	for (size_t i = 0; i < ARRAY_SIZE(tests); i++) {
		case_failed = 0;
		case_skip = NULL;
		tests[i].fn();
		if (case_skip && !case_failed) {
			printf("ok %zu %s # SKIP %s\n", i + 1, tests[i].name,
			       case_skip);
			skipped++;
			continue;
		}
		printf("%sok %zu %s\n", case_failed ? "not " : "", i + 1,
		       tests[i].name);
		if (case_failed)
			failed++;
		else
			passed++;
	}
	unlink(img);
	rmdir(tmpdir);
	if (skipped)
		printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
	else
		printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
