// SPDX-License-Identifier: GPL-2.0
/*
 * vmcachectl mrc, and the estimate line of vmcachectl status.
 */
#include "mrc.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli.h"
#include "cmds.h"
#include "metrics.h"

#define BAR_WIDTH 40

/* the rows of the short table, in 1/16 of the cache size */
static const unsigned int short_rows[] = {
	2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128,
};

int vmc_mrc_curve_parse(const char *text, unsigned int *pm, char *err,
			size_t errlen)
{
	const char *p = text;
	size_t n = 0;

	for (;;) {
		char *end;
		unsigned long v;

		while (*p == ' ')
			p++;
		if (!*p || *p == '\n')
			break;
		if (*p < '0' || *p > '9') {
			snprintf(err, errlen, "point %zu is not a number", n + 1);
			return -1;
		}
		errno = 0;
		v = strtoul(p, &end, 10);
		if (errno || v > 1000 || (*end && *end != ' ' && *end != '\n')) {
			snprintf(err, errlen, "point %zu is not 0..1000", n + 1);
			return -1;
		}
		if (n == VMC_MRC_POINTS) {
			snprintf(err, errlen, "more than %d points", VMC_MRC_POINTS);
			return -1;
		}
		if (n && v < pm[n - 1]) {
			snprintf(err, errlen, "point %zu falls (a larger cache never hits less)",
				 n + 1);
			return -1;
		}
		pm[n++] = (unsigned int)v;
		p = end;
	}
	if (n != VMC_MRC_POINTS) {
		snprintf(err, errlen, "%zu points, expected %d", n, VMC_MRC_POINTS);
		return -1;
	}
	return 0;
}

static const char *pm_pct(uint64_t pm, char *buf, size_t len)
{
	snprintf(buf, len, "%.1f%%", (double)pm / 10);
	return buf;
}

void vmc_mrc_status_line(FILE *f, const struct vmc_status *st)
{
	char p[VMC_EST_SIZES][16];

	if (!st->has_mrc)
		return;
	if (strcmp(st->mrc, "on")) {
		fprintf(f, "  estimate   off ('vmcachectl set NAME mrc on' estimates the hit ratio at other sizes)\n");
		return;
	}
	if (!st->mrc_reads) {
		fprintf(f, "  estimate   no reads yet\n");
		return;
	}
	for (size_t i = 0; i < VMC_EST_SIZES; i++)
		pm_pct(st->est_hit[i], p[i], sizeof(p[i]));
	fprintf(f, "  estimate   read hit ratio %s at 0.5x the size, %s at 1x, %s at 2x, %s at 4x\n"
		"             (LRU model, %" PRIu64 " reads, %.2f%% of blocks sampled; vmcachectl mrc)\n",
		p[0], p[1], p[2], p[3], st->mrc_reads,
		(double)st->mrc_sample_ppm / 1e4);
}

static void size_label(unsigned int k, char *buf, size_t len)
{
	snprintf(buf, len, "%gx", (double)k / VMC_MRC_STEPS);
}

void vmc_mrc_table(FILE *f, const char *name, const struct vmc_status *st,
		   const unsigned int *pm, bool all)
{
	size_t nr = all ? VMC_MRC_POINTS : ARRAY_SIZE(short_rows);
	double measured = vmc_ratio(st->read_hits, st->read_misses);
	char x[16], sz[32], pc[16], bar[BAR_WIDTH + 1];

	fprintf(f, "%s: estimated read hit ratio by cache size (LRU model, %" PRIu64
		" reads, %.2f%% of blocks sampled)\n", name, st->mrc_reads,
		(double)st->mrc_sample_ppm / 1e4);
	fprintf(f, "%8s %12s %8s  %s\n", "size", "bytes", "hit", "0%       25%       50%       75%      100%");
	for (size_t r = 0; r < nr; r++) {
		unsigned int k = all ? (unsigned int)r + 1 : short_rows[r];
		uint64_t blocks = (st->blocks_total * k + VMC_MRC_STEPS / 2) /
				  VMC_MRC_STEPS;
		int w = (int)((pm[k - 1] * BAR_WIDTH + 500) / 1000);

		memset(bar, '#', (size_t)w);
		bar[w] = '\0';
		size_label(k, x, sizeof(x));
		fprintf(f, "%8s %12s %8s  |%-*s|%s\n", x,
			fmt_bytes(blocks * st->block_size, sz, sizeof(sz)),
			pm_pct(pm[k - 1], pc, sizeof(pc)), BAR_WIDTH, bar,
			k == VMC_MRC_STEPS ? "  <- this cache" : "");
	}
	if (!isnan(measured))
		fprintf(f, "measured read hit ratio of this cache: %.1f%% (its policy is %s, promote_after and the sequential cutoff apply)\n",
			100 * measured, st->policy);
}

void vmc_mrc_json(struct json *j, const char *name,
		  const struct vmc_status *st, const unsigned int *pm)
{
	json_begin_object(j, NULL);
	json_str(j, "name", name);
	json_str(j, "mrc", st->mrc);
	json_u64(j, "mrc_reads", st->mrc_reads);
	json_u64(j, "mrc_sample_ppm", st->mrc_sample_ppm);
	json_u64(j, "blocks_total", st->blocks_total);
	json_u64(j, "block_size", st->block_size);
	json_double(j, "read_hit_ratio", vmc_ratio(st->read_hits, st->read_misses));
	json_begin_array(j, "curve");
	for (unsigned int k = 1; k <= VMC_MRC_POINTS; k++) {
		json_begin_object(j, NULL);
		json_double(j, "size_x", (double)k / VMC_MRC_STEPS);
		json_u64(j, "blocks", (st->blocks_total * k + VMC_MRC_STEPS / 2) /
				      VMC_MRC_STEPS);
		json_double(j, "est_hit_ratio", (double)pm[k - 1] / 1000);
		json_end_object(j);
	}
	json_end_array(j);
	json_end_object(j);
}

static int read_curve(const char *name, unsigned int *pm)
{
	char path[PATH_MAX], buf[2048], err[128];
	size_t n;
	FILE *f;

	if (snprintf(path, sizeof(path), "%s/%s/mrc_curve", VMC_SYSFS_CACHES,
		     name) >= (int)sizeof(path)) {
		vmc_err("%s: name too long", name);
		return -1;
	}
	f = fopen(path, "r");
	if (!f) {
		vmc_err("%s: cannot read %s: %s (module without estimates, or the device is suspended)",
			name, path, strerror(errno));
		return -1;
	}
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	if (vmc_mrc_curve_parse(buf, pm, err, sizeof(err))) {
		vmc_err("%s: %s: %s", name, path, err);
		return -1;
	}
	return 0;
}

int cmd_mrc(int argc, char **argv)
{
	const char *pos[1] = { NULL };
	bool json = false, all = false;
	const struct opt opts[] = {
		{ "json", 'j', OPT_FLAG, &json, NULL },
		{ "all", 'a', OPT_FLAG, &all, NULL },
	};
	const struct cmd_spec spec = {
		"mrc",
		"mrc NAME [--all] [--json]\n"
		"The estimated read hit ratio of NAME's workload at other cache sizes\n"
		"(1/8x to 8x), from the kernel's sampled LRU stack distances.\n"
		"  -a, --all   every point of the curve (1/16x steps), not a selection\n"
		"  -j, --json  one JSON document: the curve as {size_x, blocks, est_hit_ratio}",
		opts, ARRAY_SIZE(opts), pos, 1, 1, NULL,
	};
	unsigned int pm[VMC_MRC_POINTS];
	struct vmc_status st;
	struct json j;
	int ret = parse_args(argc, argv, &spec);

	if (ret != PARSE_RUN)
		return ret;
	if (vmc_get_status(pos[0], &st))
		goto fail;
	if (!st.has_mrc) {
		vmc_err("%s: the module gives no estimate (no mrc status keys)", pos[0]);
		goto fail;
	}
	if (strcmp(st.mrc, "on")) {
		vmc_err("%s: estimates are off (vmcachectl set %s mrc on)", pos[0],
			pos[0]);
		goto fail;
	}
	if (read_curve(pos[0], pm))
		goto fail;
	if (json) {
		json_init(&j, stdout);
		vmc_mrc_json(&j, pos[0], &st, pm);
		json_finish(&j);
	} else {
		vmc_mrc_table(stdout, pos[0], &st, pm, all);
	}
	return EXIT_OK;
fail:
	if (json)
		vmc_json_error();
	return EXIT_FAIL;
}
