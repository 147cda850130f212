// SPDX-License-Identifier: GPL-2.0
/*
 * Host unit tests of the monitoring output: the Prometheus text format of a
 * status line (exact), latency histograms (cumulative buckets, _sum,
 * _count), several caches (one family header each), label escaping, keys
 * of a newer kernel, the sysfs histogram reader and the JSON latency object.
 *
 * Included by unit.c: uses its harness, sample_status, json_of() and
 * json_valid().
 */

#include <ctype.h>
#include <inttypes.h>
#include <sys/stat.h>

#include "metrics.h"

/* the output of vmc_prom_write as a string (malloc'ed; not inlined: gcc
 * takes the memstream's buffer for a local that dangles) */
__attribute__((noinline))
static char *prom_of(const struct vmc_prom_cache *c, size_t n)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);

	vmc_prom_write(m, c, n);
	fclose(m);
	return buf;
}

/* sample_status, as the Prometheus text format: the specification */
static const char prom_sample[] =
	"# HELP vmcache_status_version Status line format version.\n"
	"# TYPE vmcache_status_version gauge\n"
	"vmcache_status_version{device=\"c0\"} 1\n"
	"# HELP vmcache_mode_info Cache mode (label mode), always 1.\n"
	"# TYPE vmcache_mode_info gauge\n"
	"vmcache_mode_info{device=\"c0\",mode=\"writeback\"} 1\n"
	"# HELP vmcache_policy_info Replacement policy (label policy), always 1.\n"
	"# TYPE vmcache_policy_info gauge\n"
	"vmcache_policy_info{device=\"c0\",policy=\"2q\"} 1\n"
	"# HELP vmcache_block_size_bytes Cache block size.\n"
	"# TYPE vmcache_block_size_bytes gauge\n"
	"vmcache_block_size_bytes{device=\"c0\"} 4096\n"
	"# HELP vmcache_metadata_info Metadata state (label state: ok, needs_check, fail), always 1.\n"
	"# TYPE vmcache_metadata_info gauge\n"
	"vmcache_metadata_info{device=\"c0\",state=\"ok\"} 1\n"
	"# HELP vmcache_metadata_used_bytes Metadata pages holding mappings, both copies.\n"
	"# TYPE vmcache_metadata_used_bytes gauge\n"
	"vmcache_metadata_used_bytes{device=\"c0\"} 16384\n"
	"# HELP vmcache_metadata_size_bytes Metadata area: superblocks and both mapping areas.\n"
	"# TYPE vmcache_metadata_size_bytes gauge\n"
	"vmcache_metadata_size_bytes{device=\"c0\"} 40960\n"
	"# HELP vmcache_capacity_bytes Cache data area.\n"
	"# TYPE vmcache_capacity_bytes gauge\n"
	"vmcache_capacity_bytes{device=\"c0\"} 4096000\n"
	"# HELP vmcache_used_bytes Cache blocks mapping origin data.\n"
	"# TYPE vmcache_used_bytes gauge\n"
	"vmcache_used_bytes{device=\"c0\"} 2048000\n"
	"# HELP vmcache_dirty_bytes Cache blocks holding data not yet on the origin.\n"
	"# TYPE vmcache_dirty_bytes gauge\n"
	"vmcache_dirty_bytes{device=\"c0\"} 81920\n"
	"# HELP vmcache_read_hits_total Reads served from the cache (block-sized pieces).\n"
	"# TYPE vmcache_read_hits_total counter\n"
	"vmcache_read_hits_total{device=\"c0\"} 900\n"
	"# HELP vmcache_read_misses_total Reads served from the origin (block-sized pieces).\n"
	"# TYPE vmcache_read_misses_total counter\n"
	"vmcache_read_misses_total{device=\"c0\"} 100\n"
	"# HELP vmcache_write_hits_total Writes to blocks already cached (block-sized pieces).\n"
	"# TYPE vmcache_write_hits_total counter\n"
	"vmcache_write_hits_total{device=\"c0\"} 30\n"
	"# HELP vmcache_write_misses_total Writes to blocks not cached (block-sized pieces).\n"
	"# TYPE vmcache_write_misses_total counter\n"
	"vmcache_write_misses_total{device=\"c0\"} 10\n"
	"# HELP vmcache_bypassed_total Pieces sent around the cache.\n"
	"# TYPE vmcache_bypassed_total counter\n"
	"vmcache_bypassed_total{device=\"c0\"} 5\n"
	"# HELP vmcache_promotions_total Blocks or sub-blocks filled from a read miss.\n"
	"# TYPE vmcache_promotions_total counter\n"
	"vmcache_promotions_total{device=\"c0\"} 100\n"
	"# HELP vmcache_demotions_total Blocks evicted.\n"
	"# TYPE vmcache_demotions_total counter\n"
	"vmcache_demotions_total{device=\"c0\"} 2\n"
	"# HELP vmcache_writeback_blocks_total Blocks written back to the origin.\n"
	"# TYPE vmcache_writeback_blocks_total counter\n"
	"vmcache_writeback_blocks_total{device=\"c0\"} 7\n"
	"# HELP vmcache_writeback_inflight_blocks Blocks being written back now.\n"
	"# TYPE vmcache_writeback_inflight_blocks gauge\n"
	"vmcache_writeback_inflight_blocks{device=\"c0\"} 1\n"
	"# HELP vmcache_writeback_errors_total Failed writeback attempts (retried).\n"
	"# TYPE vmcache_writeback_errors_total counter\n"
	"vmcache_writeback_errors_total{device=\"c0\"} 3\n"
	"# HELP vmcache_cache_errors_total I/O errors from the cache device.\n"
	"# TYPE vmcache_cache_errors_total counter\n"
	"vmcache_cache_errors_total{device=\"c0\"} 0\n"
	"# HELP vmcache_origin_errors_total I/O errors from the origin device.\n"
	"# TYPE vmcache_origin_errors_total counter\n"
	"vmcache_origin_errors_total{device=\"c0\"} 4\n"
	"# HELP vmcache_data_loss_blocks_total Dirty blocks whose data could not be read back.\n"
	"# TYPE vmcache_data_loss_blocks_total counter\n"
	"vmcache_data_loss_blocks_total{device=\"c0\"} 0\n"
	"# HELP vmcache_flush_active 1 while a drain (flush message, mode change) runs.\n"
	"# TYPE vmcache_flush_active gauge\n"
	"vmcache_flush_active{device=\"c0\"} 0\n"
	"# HELP vmcache_degraded 1 when new writes go around the cache.\n"
	"# TYPE vmcache_degraded gauge\n"
	"vmcache_degraded{device=\"c0\"} 0\n"
	"# HELP vmcache_metadata_commits_total Metadata commits.\n"
	"# TYPE vmcache_metadata_commits_total counter\n"
	"vmcache_metadata_commits_total{device=\"c0\"} 12\n"
	"# HELP vmcache_metadata_seq Sequence number of the last durable commit.\n"
	"# TYPE vmcache_metadata_seq gauge\n"
	"vmcache_metadata_seq{device=\"c0\"} 13\n";

/* the bucket bounds as they must be printed, in seconds */
static const char * const prom_le[VMC_LAT_BUCKETS] = {
	"0.000016", "0.000032", "0.000064", "0.000128", "0.000256",
	"0.000512", "0.001024", "0.002048", "0.004096", "0.008192",
	"0.016384", "0.032768", "0.065536", "0.131072", "0.262144",
	"0.524288", "1.048576", "2.097152", "4.194304", "8.388608",
	"16.777216", "+Inf",
};

/*
 * One line of the text format: a comment, or name{labels} value with
 * label values quoted and escaped; the value a decimal number or +Inf.
 */
static bool prom_line_ok(const char *l, size_t len)
{
	size_t i = 0;

	if (len && l[0] == '#')
		return true;
	if (!len || !(isalpha((unsigned char)l[0]) || l[0] == '_' || l[0] == ':'))
		return false;
	while (i < len && (isalnum((unsigned char)l[i]) || l[i] == '_' || l[i] == ':'))
		i++;
	if (i < len && l[i] == '{') {
		i++;
		while (i < len && l[i] != '}') {
			if (!(isalpha((unsigned char)l[i]) || l[i] == '_'))
				return false;
			while (i < len && (isalnum((unsigned char)l[i]) || l[i] == '_'))
				i++;
			if (i + 1 >= len || l[i] != '=' || l[i + 1] != '"')
				return false;
			for (i += 2; i < len && l[i] != '"'; i++)
				if (l[i] == '\\' && ++i < len && !strchr("\\\"n", l[i]))
					return false;
			if (++i > len)
				return false;
			if (i < len && l[i] == ',')
				i++;
		}
		if (i++ >= len)
			return false;
	}
	if (i >= len || l[i++] != ' ' || i >= len)
		return false;
	if (len - i == 4 && !memcmp(l + i, "+Inf", 4))
		return true;
	return strspn(l + i, "0123456789.eE+-") >= len - i &&
	       (isdigit((unsigned char)l[i]) || l[i] == '-');
}

static bool prom_all_lines_ok(const char *s)
{
	while (*s) {
		size_t len = strcspn(s, "\n");

		if (!prom_line_ok(s, len)) {
			printf("# bad line: %.*s\n", (int)len, s);
			return false;
		}
		s += len;
		if (*s)
			s++;
	}
	return true;
}

static size_t count_of(const char *s, const char *needle)
{
	size_t n = 0;

	for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle))
		n++;
	return n;
}

/* dst = src with the first "from" replaced by "to" */
static void subst(char *dst, size_t len, const char *src, const char *from,
		  const char *to)
{
	const char *p = strstr(src, from);

	if (!p) {
		snprintf(dst, len, "%s", src);
		return;
	}
	snprintf(dst, len, "%.*s%s%s", (int)(p - src), src, to, p + strlen(from));
}

static void test_prom_status(void)
{
	struct vmc_prom_cache c = { "c0", sample_status, NULL };
	char line[1024], tmp[1024], *s = prom_of(&c, 1);

	EXPECT(!strcmp(s, prom_sample), "got:\n%s", s);
	EXPECT(prom_all_lines_ok(s), "format");
	free(s);

	subst(tmp, sizeof(tmp), sample_status, "flush=idle", "flush=active");
	subst(line, sizeof(line), tmp, "metadata=ok", "metadata=needs_check");
	c.status = line;
	s = prom_of(&c, 1);
	EXPECT(strstr(s, "\nvmcache_flush_active{device=\"c0\"} 1\n") &&
	       strstr(s, "\nvmcache_metadata_info{device=\"c0\",state=\"needs_check\"} 1\n"),
	       "%s", s);
	free(s);

	s = prom_of(NULL, 0);
	EXPECT(s && !*s, "no cache, no output");
	free(s);
}

/* the histogram lines of one class with every count in bucket b */
static void expect_class(const char *s, const char *dev, const char *cls,
			 size_t b, uint64_t n, const char *sum)
{
	char want[256];

	for (size_t i = 0; i < VMC_LAT_BUCKETS; i++) {
		snprintf(want, sizeof(want),
			 "\nvmcache_latency_seconds_bucket{device=\"%s\",class=\"%s\",le=\"%s\"} %" PRIu64 "\n",
			 dev, cls, prom_le[i], i >= b ? n : 0);
		EXPECT(strstr(s, want), "missing: %s", want + 1);
	}
	snprintf(want, sizeof(want),
		 "\nvmcache_latency_seconds_sum{device=\"%s\",class=\"%s\"} %s\n"
		 "vmcache_latency_seconds_count{device=\"%s\",class=\"%s\"} %" PRIu64 "\n",
		 dev, cls, sum, dev, cls, n);
	EXPECT(strstr(s, want), "missing: %s", want + 1);
}

static void test_prom_histograms(void)
{
	struct vmc_latency lat;
	struct vmc_prom_cache c = { "c0", sample_status, &lat };
	const char *h;
	char *s, want[8192];
	size_t n = 0;

	memset(&lat, 0, sizeof(lat));
	lat.count[0][0] = 3;	/* read_hit: 3 at most 16 us, 4 up to 32 us */
	lat.count[0][1] = 4;
	lat.sum_us[0] = 150;
	lat.count[1][21] = 2;	/* read_miss: 2 above 16.777216 s */
	lat.sum_us[1] = 40000000;
	lat.count[3][10] = 5;	/* writeback: 5 in (8.192, 16.384] ms */
	lat.sum_us[3] = 60001;
	s = prom_of(&c, 1);
	EXPECT(prom_all_lines_ok(s), "format");
	EXPECT(!strncmp(s, prom_sample, strlen(prom_sample)),
	       "status metrics first");
	h = s + strlen(prom_sample);

	/* read_hit exactly, line by line */
	n += (size_t)snprintf(want + n, sizeof(want) - n,
		"# HELP vmcache_latency_seconds Latency by class: read_hit, read_miss and write from the target's map to completion, writeback a block's copy to the origin.\n"
		"# TYPE vmcache_latency_seconds histogram\n");
	for (size_t i = 0; i < VMC_LAT_BUCKETS; i++)
		n += (size_t)snprintf(want + n, sizeof(want) - n,
			"vmcache_latency_seconds_bucket{device=\"c0\",class=\"read_hit\",le=\"%s\"} %d\n",
			prom_le[i], i ? 7 : 3);
	snprintf(want + n, sizeof(want) - n,
		 "vmcache_latency_seconds_sum{device=\"c0\",class=\"read_hit\"} 0.00015\n"
		 "vmcache_latency_seconds_count{device=\"c0\",class=\"read_hit\"} 7\n"
		 "vmcache_latency_seconds_bucket{device=\"c0\",class=\"read_miss\",le=\"0.000016\"} 0\n");
	EXPECT(!strncmp(h, want, strlen(want)), "got:\n%s", h);

	expect_class(s, "c0", "read_miss", 21, 2, "40");
	expect_class(s, "c0", "write", 0, 0, "0");
	expect_class(s, "c0", "writeback", 10, 5, "0.060001");
	EXPECT(count_of(s, "vmcache_latency_seconds_bucket{") == 4 * VMC_LAT_BUCKETS &&
	       count_of(s, "# TYPE vmcache_latency_seconds histogram\n") == 1,
	       "one family, 4 classes of %d buckets", VMC_LAT_BUCKETS);
	/* writeback is the last class and the last family */
	EXPECT(strstr(s, "vmcache_latency_seconds_count{device=\"c0\",class=\"writeback\"} 5\n") ==
	       s + strlen(s) - strlen("vmcache_latency_seconds_count{device=\"c0\",class=\"writeback\"} 5\n"),
	       "order");
	free(s);
}

static void test_prom_caches(void)
{
	static const char weird[] = "a\"b\\c\nd";
	struct vmc_latency lat;
	char line[1024], tmp[1024], *s;
	struct vmc_prom_cache c[3] = {
		{ "c0", sample_status, NULL },
		{ weird, line, &lat },
		{ "c2", sample_status, &lat },
	};
	const char *a, *b;

	memset(&lat, 0, sizeof(lat));
	lat.count[2][3] = 9;
	subst(tmp, sizeof(tmp), sample_status, "read_hits=900", "read_hits=901");
	subst(line, sizeof(line), tmp, "seq=13",
	      "seq=13 zap_errors=3 future=abc est_hit_ratio_2x=0.53 neg=-1 big=18446744073709551615");
	s = prom_of(c, 3);
	EXPECT(prom_all_lines_ok(s), "format");

	/* each family once; its lines together, in cache order */
	EXPECT(count_of(s, "# TYPE vmcache_read_hits_total counter\n") == 1 &&
	       count_of(s, "# HELP vmcache_read_hits_total ") == 1, "one header");
	EXPECT(strstr(s, "# TYPE vmcache_read_hits_total counter\n"
		      "vmcache_read_hits_total{device=\"c0\"} 900\n"
		      "vmcache_read_hits_total{device=\"a\\\"b\\\\c\\nd\"} 901\n"
		      "vmcache_read_hits_total{device=\"c2\"} 900\n"
		      "# HELP "), "%s", s);
	EXPECT(count_of(s, "# TYPE") == 27 + 4 + 1, "27 status families, 4 new keys, the histograms");

	/* keys of a newer kernel: numbers untyped, words left out */
	EXPECT(strstr(s, "# HELP vmcache_status_zap_errors Status key zap_errors (not known to this vmcachectl).\n"
		      "# TYPE vmcache_status_zap_errors untyped\n"
		      "vmcache_status_zap_errors{device=\"a\\\"b\\\\c\\nd\"} 3\n") &&
	       strstr(s, "vmcache_status_est_hit_ratio_2x{device=\"a\\\"b\\\\c\\nd\"} 0.53\n") &&
	       strstr(s, "vmcache_status_neg{device=\"a\\\"b\\\\c\\nd\"} -1\n") &&
	       strstr(s, "vmcache_status_big{device=\"a\\\"b\\\\c\\nd\"} 18446744073709551615\n") &&
	       !strstr(s, "future") && !strstr(s, "vmcache_status_zap_errors{device=\"c2\""),
	       "%s", s);

	/* histograms for the caches that have them only */
	EXPECT(!strstr(s, "vmcache_latency_seconds_bucket{device=\"c0\""), "c0 has none");
	expect_class(s, "a\\\"b\\\\c\\nd", "write", 3, 9, "0");
	expect_class(s, "c2", "write", 3, 9, "0");
	a = strstr(s, "vmcache_latency_seconds_count{device=\"a");
	b = strstr(s, "vmcache_latency_seconds_bucket{device=\"c2\"");
	EXPECT(a && b && a < b, "caches in order");
	free(s);
}

static void test_latency_parse(void)
{
	uint64_t v[VMC_LAT_BUCKETS];
	char line[512], err[200];
	size_t n = 0;

	for (size_t i = 0; i < VMC_LAT_BUCKETS; i++)
		n += (size_t)snprintf(line + n, sizeof(line) - n, "%s%zu",
				      i ? " " : "", i * 1000);
	EXPECT(!vmc_latency_parse(line, v, err, sizeof(err)) && v[0] == 0 &&
	       v[1] == 1000 && v[21] == 21000, "%s", err);
	strcat(line, "\n");
	EXPECT(!vmc_latency_parse(line, v, err, sizeof(err)), "newline: %s", err);
	EXPECT(vmc_latency_parse("1 2 3\n", v, err, sizeof(err)) &&
	       strstr(err, "3 buckets"), "too few: %s", err);
	line[strlen(line) - 1] = '\0';
	strcat(line, " 7");
	EXPECT(vmc_latency_parse(line, v, err, sizeof(err)) &&
	       strstr(err, "more than"), "too many: %s", err);
	EXPECT(vmc_latency_parse("1 x 3", v, err, sizeof(err)), "garbage");
	EXPECT(vmc_latency_parse("", v, err, sizeof(err)), "empty");
	EXPECT(vmc_latency_parse("1  2", v, err, sizeof(err)), "two spaces");
	EXPECT(vmc_latency_parse("99999999999999999999 0", v, err, sizeof(err)),
	       "overflow");
	EXPECT(vmc_lat_bound_us(0) == 16 && vmc_lat_bound_us(20) == 16777216 &&
	       vmc_lat_bound_us(21) == 0, "bounds");
}

static int put_file(const char *dir, const char *name, const char *text)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	if (!f)
		return -1;
	fputs(text, f);
	return fclose(f);
}

static void latency_doc(struct json *j, const void *arg)
{
	json_begin_object(j, NULL);
	vmc_latency_json(j, "latency", arg);
	json_end_object(j);
}

static void test_latency_sysfs_json(void)
{
	static const char zeros[] = "0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n";
	struct vmc_latency lat;
	char dir[128], err[300], path[256], *s;

	snprintf(dir, sizeof(dir), "%s/sysfs", tmpdir);
	EXPECT(!mkdir(dir, 0700), "mkdir");
	EXPECT(vmc_latency_read(dir, &lat, err, sizeof(err)) &&
	       strstr(err, "latency_read_hit"), "no files: %s", err);
	for (size_t k = 0; k < VMC_LAT_CLASSES; k++) {
		char name[64];

		snprintf(name, sizeof(name), "latency_%s", vmc_lat_class_names[k]);
		put_file(dir, name, k == 1 ? "1 2 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 3\n" : zeros);
		snprintf(name, sizeof(name), "latency_%s_sum_us", vmc_lat_class_names[k]);
		put_file(dir, name, k == 1 ? "50000123\n" : "0\n");
	}
	EXPECT(!vmc_latency_read(dir, &lat, err, sizeof(err)), "%s", err);
	EXPECT(lat.count[1][0] == 1 && lat.count[1][1] == 2 &&
	       lat.count[1][21] == 3 && lat.sum_us[1] == 50000123 &&
	       !lat.count[0][0] && !lat.sum_us[3], "values");

	s = json_of(latency_doc, &lat);
	EXPECT(json_valid(s), "%s", s);
	EXPECT(strstr(s, "\"le_us\": [\n      16,\n      32,") &&
	       strstr(s, "      16777216,\n      null\n    ]") &&
	       strstr(s, "\"read_miss\": {\n      \"count\": 6,\n      \"sum_us\": 50000123,\n      \"buckets\": [\n        1,\n        2,\n        0,") &&
	       strstr(s, "\"writeback\": {\n      \"count\": 0,"), "%s", s);
	free(s);
	s = json_of(latency_doc, NULL);
	EXPECT(json_valid(s) && strstr(s, "\"latency\": null"), "%s", s);
	free(s);

	put_file(dir, "latency_write_sum_us", "12x\n");
	EXPECT(vmc_latency_read(dir, &lat, err, sizeof(err)) &&
	       strstr(err, "latency_write_sum_us"), "bad sum: %s", err);
	put_file(dir, "latency_write_sum_us", "0\n");
	put_file(dir, "latency_writeback", "0 0 0\n");
	EXPECT(vmc_latency_read(dir, &lat, err, sizeof(err)) &&
	       strstr(err, "latency_writeback: 3 buckets"), "short: %s", err);

	for (size_t k = 0; k < VMC_LAT_CLASSES; k++) {
		snprintf(path, sizeof(path), "%s/latency_%s", dir, vmc_lat_class_names[k]);
		unlink(path);
		snprintf(path, sizeof(path), "%s/latency_%s_sum_us", dir, vmc_lat_class_names[k]);
		unlink(path);
	}
	rmdir(dir);
}

static void test_prom_cli(void)
{
	char out[4096];

	EXPECT(run_tool(out, sizeof(out), "status --json --prometheus") == EXIT_USAGE,
	       "--json with --prometheus");
	EXPECT(run_tool(out, sizeof(out), "status --help") == 0 &&
	       strstr(out, "--prometheus"), "help: %s", out);
}
