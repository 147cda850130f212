// SPDX-License-Identifier: GPL-2.0
/*
 * Host unit tests of the hit ratio estimate's userspace side: the mrc
 * status keys (all or none), their JSON, the sysfs curve parser, the
 * status line and the vmcachectl mrc table.
 *
 * Included by unit.c: uses its harness, sample_status, json_of() and
 * json_valid().
 */

#include "mrc.h"

static const char mrc_keys[] =
	" mrc=on mrc_reads=5000 mrc_sample_ppm=250000 est_hit_0_5x=412"
	" est_hit_1x=600 est_hit_2x=875 est_hit_4x=1000";

/* fills a valid curve: rising from 0 by step per point, capped at 1000 */
static char *curve_text(char *buf, size_t len, unsigned int points,
			unsigned int step)
{
	size_t n = 0;

	buf[0] = '\0';
	for (unsigned int i = 0; i < points && n < len; i++)
		n += (size_t)snprintf(buf + n, len - n, "%s%u", i ? " " : "",
				      (i + 1) * step > 1000 ? 1000 : (i + 1) * step);
	if (n < len)
		snprintf(buf + n, len - n, "\n");
	return buf;
}

static void test_mrc_status(void)
{
	struct vmc_status st;
	char line[1024], err[200], *s;

	EXPECT(!vmc_status_parse(sample_status, &st, err, sizeof(err)) &&
	       !st.has_mrc, "a module without the keys: %s", err);
	snprintf(line, sizeof(line), "%s%s", sample_status, mrc_keys);
	EXPECT(!vmc_status_parse(line, &st, err, sizeof(err)), "%s", err);
	EXPECT(st.has_mrc && !strcmp(st.mrc, "on") && st.mrc_reads == 5000 &&
	       st.mrc_sample_ppm == 250000 && st.est_hit[0] == 412 &&
	       st.est_hit[1] == 600 && st.est_hit[2] == 875 &&
	       st.est_hit[3] == 1000 && st.nr_extra == 0, "values");
	EXPECT(vmc_est_size(0) == 0.5 && vmc_est_size(3) == 4, "sizes");
	s = json_of(status_doc, &st);
	EXPECT(json_valid(s) && strstr(s, "\"mrc\": \"on\"") &&
	       strstr(s, "\"est_hit_0_5x\": 412") &&
	       strstr(s, "\"est_hit_4x\": 1000\n"), "%s", s);
	free(s);
	/* without the keys, the JSON has none of them */
	vmc_status_parse(sample_status, &st, err, sizeof(err));
	s = json_of(status_doc, &st);
	EXPECT(json_valid(s) && !strstr(s, "est_hit") && !strstr(s, "mrc"),
	       "%s", s);
	free(s);
	/* some of them only: refused */
	snprintf(line, sizeof(line), "%s mrc=on mrc_reads=1", sample_status);
	EXPECT(vmc_status_parse(line, &st, err, sizeof(err)) &&
	       strstr(err, "mrc_sample_ppm"), "partial: %s", err);
	snprintf(line, sizeof(line), "%s%s", sample_status, mrc_keys);
	memcpy(strstr(line, "est_hit_1x=600"), "est_hit_1x=6x0", 14);
	EXPECT(vmc_status_parse(line, &st, err, sizeof(err)), "not a number");
}

static void test_mrc_curve(void)
{
	unsigned int pm[VMC_MRC_POINTS];
	char buf[2048], err[200];

	EXPECT(!vmc_mrc_curve_parse(curve_text(buf, sizeof(buf), 128, 8), pm,
				    err, sizeof(err)) &&
	       pm[0] == 8 && pm[15] == 128 && pm[127] == 1000, "%s", err);
	EXPECT(vmc_mrc_curve_parse(curve_text(buf, sizeof(buf), 127, 8), pm,
				   err, sizeof(err)) && strstr(err, "127 points"),
	       "short: %s", err);
	EXPECT(vmc_mrc_curve_parse(curve_text(buf, sizeof(buf), 129, 8), pm,
				   err, sizeof(err)) && strstr(err, "more than"),
	       "long: %s", err);
	curve_text(buf, sizeof(buf), 128, 8);
	memcpy(strstr(buf, " 16 "), " 1x ", 4);
	EXPECT(vmc_mrc_curve_parse(buf, pm, err, sizeof(err)), "junk");
	EXPECT(vmc_mrc_curve_parse("10 5", pm, err, sizeof(err)) &&
	       strstr(err, "falls"), "falling: %s", err);
	EXPECT(vmc_mrc_curve_parse("1001", pm, err, sizeof(err)) &&
	       strstr(err, "0..1000"), "range: %s", err);
	EXPECT(vmc_mrc_curve_parse("-1", pm, err, sizeof(err)), "negative");
	EXPECT(vmc_mrc_curve_parse("", pm, err, sizeof(err)), "empty");
}

/* what f prints on a memory stream (malloc'ed) */
__attribute__((noinline))
static char *mrc_print(const struct vmc_status *st, const unsigned int *pm,
		       int what)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);

	if (what == 0)
		vmc_mrc_status_line(m, st);
	else
		vmc_mrc_table(m, "c0", st, pm, what == 2);
	fclose(m);
	return buf;
}

static void test_mrc_output(void)
{
	unsigned int pm[VMC_MRC_POINTS];
	char line[1024], buf[2048], err[200], *s;
	struct vmc_status st;

	snprintf(line, sizeof(line), "%s%s", sample_status, mrc_keys);
	vmc_status_parse(line, &st, err, sizeof(err));
	s = mrc_print(&st, NULL, 0);
	EXPECT(strstr(s, "41.2% at 0.5x the size, 60.0% at 1x, 87.5% at 2x, 100.0% at 4x") &&
	       strstr(s, "5000 reads, 25.00% of blocks sampled"), "%s", s);
	free(s);
	strcpy(st.mrc, "off");
	s = mrc_print(&st, NULL, 0);
	EXPECT(strstr(s, "estimate   off"), "%s", s);
	free(s);
	strcpy(st.mrc, "on");

	vmc_mrc_curve_parse(curve_text(buf, sizeof(buf), 128, 8), pm, err,
			    sizeof(err));
	s = mrc_print(&st, pm, 1);
	/* 1000 blocks of 4 KiB: 1x is 3.91 MiB, 12.8% of 40 columns: 5 */
	EXPECT(strstr(s, "      1x     3.91 MiB    12.8%  |#####") &&
	       strstr(s, "<- this cache") && strstr(s, "     8x") &&
	       strstr(s, "measured read hit ratio of this cache: 90.0%"),
	       "%s", s);
	EXPECT(!strstr(s, "0.0625x"), "short table: %s", s);
	free(s);
	s = mrc_print(&st, pm, 2);
	EXPECT(strstr(s, "0.0625x") && strstr(s, "0.1875x"), "all points: %s", s);
	free(s);
}

static void test_mrc_prometheus(void)
{
	char line[1024], *s;
	struct vmc_prom_cache c = { "c0", line, NULL };

	snprintf(line, sizeof(line), "%s%s", sample_status, mrc_keys);
	s = prom_of(&c, 1);
	EXPECT(strstr(s, "# TYPE vmcache_mrc_enabled gauge\nvmcache_mrc_enabled{device=\"c0\"} 1\n") &&
	       strstr(s, "vmcache_mrc_reads_total{device=\"c0\"} 5000\n") &&
	       strstr(s, "vmcache_mrc_sample_ppm{device=\"c0\"} 250000\n") &&
	       strstr(s, "vmcache_mrc_hit_permille_0_5x{device=\"c0\"} 412\n") &&
	       strstr(s, "vmcache_mrc_hit_permille_4x{device=\"c0\"} 1000\n") &&
	       !strstr(s, "vmcache_status_est") && !strstr(s, "vmcache_status_mrc"),
	       "%s", s);
	free(s);
	/* an older module: none of them */
	snprintf(line, sizeof(line), "%s", sample_status);
	s = prom_of(&c, 1);
	EXPECT(!strstr(s, "mrc"), "%s", s);
	free(s);
}
