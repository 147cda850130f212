// SPDX-License-Identifier: GPL-2.0
/*
 * vmcachectl status and watch.
 */
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "cli.h"
#include "cmds.h"
#include "dm.h"
#include "json.h"
#include "metrics.h"
#include "mrc.h"

/* "253:1" -> "/dev/dm-1" through sysfs, else unchanged */
static void dev_path(const char *majmin, char *out, size_t len)
{
	char link[64], target[PATH_MAX];
	const char *base;
	ssize_t n;

	snprintf(out, len, "%s", majmin);
	snprintf(link, sizeof(link), "/sys/dev/block/%s", majmin);
	n = readlink(link, target, sizeof(target) - 1);
	if (n <= 0)
		return;
	target[n] = '\0';
	base = strrchr(target, '/');
	if (snprintf(out, len, "/dev/%s", base ? base + 1 : target) >= (int)len)
		snprintf(out, len, "%s", majmin);
}

static int get_table(const char *name, struct vmc_table *t)
{
	char *params, err[200];
	uint64_t len;
	int ret;

	if (vmc_dm_table(name, &len, &params))
		return -1;
	ret = vmc_table_parse(params, len, t, err, sizeof(err));
	if (ret)
		vmc_err("%s: %s", name, err);
	free(params);
	return ret;
}

static const char *pct(double ratio, char *buf, size_t len)
{
	if (isnan(ratio))
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, "%.1f%%", 100 * ratio);
	return buf;
}

static void print_status(const char *name, const struct vmc_status *st,
			 const struct vmc_table *t)
{
	uint64_t bs = st->block_size;
	char a[32], b[32], c[32], d[32], p1[16], p2[16];
	char cdev[80], odev[80];

	printf("%s: %s mode, policy %s, block size %s, metadata %s%s\n", name,
	       st->mode, st->policy, fmt_bytes(bs, a, sizeof(a)), st->metadata,
	       st->degraded ? ", DEGRADED (writes go around the cache)" : "");
	if (t) {
		dev_path(t->cache, cdev, sizeof(cdev));
		dev_path(t->origin, odev, sizeof(odev));
		printf("  devices    cache %s, origin %s (%s)\n", cdev, odev,
		       fmt_bytes(t->len * 512, a, sizeof(a)));
	}
	printf("  cache      %s used of %s (%s), %s dirty (%s), %s free\n",
	       fmt_bytes(st->blocks_used * bs, a, sizeof(a)),
	       fmt_bytes(st->blocks_total * bs, b, sizeof(b)),
	       pct(vmc_ratio(st->blocks_used, st->blocks_total - st->blocks_used),
		   p1, sizeof(p1)),
	       fmt_bytes(st->blocks_dirty * bs, c, sizeof(c)),
	       pct(vmc_ratio(st->blocks_dirty, st->blocks_total - st->blocks_dirty),
		   p2, sizeof(p2)),
	       fmt_bytes((st->blocks_total - st->blocks_used) * bs, d, sizeof(d)));
	printf("  reads      %" PRIu64 " hits, %" PRIu64 " misses, hit ratio %s\n",
	       st->read_hits, st->read_misses,
	       pct(vmc_ratio(st->read_hits, st->read_misses), p1, sizeof(p1)));
	printf("  writes     %" PRIu64 " hits, %" PRIu64 " misses, hit ratio %s\n",
	       st->write_hits, st->write_misses,
	       pct(vmc_ratio(st->write_hits, st->write_misses), p1, sizeof(p1)));
	vmc_mrc_status_line(stdout, st);
	printf("  traffic    %" PRIu64 " bypassed, %" PRIu64 " promotions, %" PRIu64
	       " demotions\n", st->bypassed, st->promotions, st->demotions);
	printf("  writeback  %" PRIu64 " blocks done (%s), %" PRIu64
	       " in flight, %" PRIu64 " errors, flush %s\n",
	       st->writeback_done, fmt_bytes(st->writeback_done * bs, a, sizeof(a)),
	       st->writeback_inflight, st->writeback_errors, st->flush);
	printf("  errors     cache %" PRIu64 ", origin %" PRIu64 ", data loss %" PRIu64
	       "\n", st->cache_errors, st->origin_errors, st->data_loss);
	printf("  metadata   %" PRIu64 " of %" PRIu64 " pages, %" PRIu64
	       " commits, seq %" PRIu64 "\n", st->metadata_used,
	       st->metadata_total, st->commits, st->seq);
	if (t && t->nr_opts) {
		printf("  options   ");
		for (size_t i = 0; i < t->nr_opts; i++)
			printf(" %s=%s", t->opt[i].key, t->opt[i].value);
		printf("\n");
	}
}

/* the histograms from sysfs; false when there are none (older module, suspended) */
static bool get_latency(const char *name, struct vmc_latency *lat)
{
	char dir[PATH_MAX], err[256];

	if (snprintf(dir, sizeof(dir), "%s/%s", VMC_SYSFS_CACHES, name) >=
	    (int)sizeof(dir))
		return false;
	return !vmc_latency_read(dir, lat, err, sizeof(err));
}

static void json_cache(struct json *j, const char *name,
		       const struct vmc_status *st, const struct vmc_table *t)
{
	struct vmc_latency lat;
	char path[80];
	uint64_t v;

	json_begin_object(j, NULL);
	json_str(j, "name", name);
	vmc_status_json(j, st);
	json_double(j, "read_hit_ratio", vmc_ratio(st->read_hits, st->read_misses));
	json_double(j, "write_hit_ratio",
		    vmc_ratio(st->write_hits, st->write_misses));
	if (t) {
		json_begin_object(j, "table");
		dev_path(t->cache, path, sizeof(path));
		json_str(j, "cache", path);
		dev_path(t->origin, path, sizeof(path));
		json_str(j, "origin", path);
		json_u64(j, "origin_sectors", t->len);
		for (size_t i = 0; i < t->nr_opts; i++) {
			if (parse_u64(t->opt[i].value, &v))
				json_str(j, t->opt[i].key, t->opt[i].value);
			else
				json_u64(j, t->opt[i].key, v);
		}
		json_end_object(j);
	}
	vmc_latency_json(j, "latency", get_latency(name, &lat) ? &lat : NULL);
	json_end_object(j);
}

static void show(struct json *j, const char *name, const struct vmc_status *st)
{
	struct vmc_table t;
	bool have_table = !get_table(name, &t);

	if (j)
		json_cache(j, name, st, have_table ? &t : NULL);
	else
		print_status(name, st, have_table ? &t : NULL);
}

/* one of all caches: a failure is an element with an error key */
static int show_listed(struct json *j, const char *name)
{
	struct vmc_status st;

	vmc_clear_error();
	if (vmc_get_status(name, &st)) {
		if (j) {
			json_begin_object(j, NULL);
			json_str(j, "name", name);
			json_str(j, "error", vmc_last_error());
			json_end_object(j);
		}
		return -1;
	}
	show(j, name, &st);
	return 0;
}

/* the status line of a vmcache device, checked like vmc_get_status's */
static char *status_line(const char *name)
{
	struct vmc_status st;
	char *params, err[200];
	uint64_t len;

	if (vmc_dm_status(name, &len, &params))
		return NULL;
	if (vmc_status_parse(params, &st, err, sizeof(err))) {
		vmc_err("%s: cannot read its status: %s (status: '%s')", name,
			err, params);
		free(params);
		return NULL;
	}
	return params;
}

/* --prometheus: NAME, or every vmcache device (those that can be read) */
static int prometheus(const char *only)
{
	struct vmc_prom_cache *pc;
	struct vmc_latency *lat;
	char **names, *one[1];
	size_t nr, n = 0;
	int failed = 0;

	if (only) {
		one[0] = (char *)only;
		names = one;
		nr = 1;
	} else if (vmc_dm_list(&names, &nr)) {
		return EXIT_FAIL;
	}
	pc = calloc(nr ? nr : 1, sizeof(*pc));
	lat = calloc(nr ? nr : 1, sizeof(*lat));
	if (!pc || !lat) {
		vmc_err("out of memory");
		failed = 1;
		goto out;
	}
	for (size_t i = 0; i < nr; i++) {
		char *line = status_line(names[i]);

		if (!line) {
			failed++;
			continue;
		}
		pc[n].name = names[i];
		pc[n].status = line;
		pc[n].lat = get_latency(names[i], &lat[n]) ? &lat[n] : NULL;
		n++;
	}
	vmc_prom_write(stdout, pc, n);
	fflush(stdout);
out:
	for (size_t i = 0; pc && i < n; i++)
		free((char *)pc[i].status);
	free(pc);
	free(lat);
	if (!only)
		vmc_dm_free_list(names, nr);
	return failed ? EXIT_FAIL : EXIT_OK;
}

int cmd_status(int argc, char **argv)
{
	const char *pos[1] = { NULL };
	bool json = false, prom = false;
	const struct opt opts[] = {
		{ "json", 'j', OPT_FLAG, &json, NULL },
		{ "prometheus", 'p', OPT_FLAG, &prom, NULL },
	};
	const struct cmd_spec spec = {
		"status",
		"status [NAME] [--json | --prometheus]\n"
		"Statistics of one cache, or of every vmcache device.\n"
		"  -j, --json        one JSON document: an object for NAME, else {\"caches\": [...]};\n"
		"                    keys are the status keys plus read_hit_ratio and\n"
		"                    write_hit_ratio (null before any I/O), and latency:\n"
		"                    the latency histograms (null when sysfs has none)\n"
		"  -p, --prometheus  the Prometheus text format (node_exporter's textfile\n"
		"                    collector); metric names in vmcachectl(8)",
		opts, ARRAY_SIZE(opts), pos, 0, 1, NULL,
	};
	int ret = parse_args(argc, argv, &spec), failed = 0;
	struct json j;
	char **names;
	size_t nr;

	if (ret != PARSE_RUN)
		return ret;
	if (json && prom) {
		vmc_err("status: --json and --prometheus exclude each other");
		return EXIT_USAGE;
	}
	if (prom)
		return prometheus(pos[0]);
	json_init(&j, stdout);
	if (pos[0]) {
		struct vmc_status st;

		if (vmc_get_status(pos[0], &st)) {
			if (json)
				vmc_json_error();
			return EXIT_FAIL;
		}
		show(json ? &j : NULL, pos[0], &st);
		if (json)
			json_finish(&j);
		return EXIT_OK;
	}
	if (vmc_dm_list(&names, &nr)) {
		if (json)
			vmc_json_error();
		return EXIT_FAIL;
	}
	if (json) {
		json_begin_object(&j, NULL);
		json_begin_array(&j, "caches");
	} else if (!nr) {
		printf("no vmcache devices\n");
	}
	for (size_t i = 0; i < nr; i++)
		failed += show_listed(json ? &j : NULL, names[i]) ? 1 : 0;
	if (json) {
		json_end_array(&j);
		json_end_object(&j);
		json_finish(&j);
	}
	vmc_dm_free_list(names, nr);
	return failed ? EXIT_FAIL : EXIT_OK;
}

/* ---- watch ----------------------------------------------------------------- */

struct rates {
	double reads, writes, rd_ratio, wr_ratio, bypassed, wb_blocks;
	double promotions, demotions;
};

/* counters may have been reset (stats reset) between two samples */
static double per_sec(uint64_t before, uint64_t after, double dt)
{
	return (double)(after >= before ? after - before : after) / dt;
}

static void rates(const struct vmc_status *a, const struct vmc_status *b,
		  double dt, struct rates *r)
{
	double rh = per_sec(a->read_hits, b->read_hits, dt);
	double rm = per_sec(a->read_misses, b->read_misses, dt);
	double wh = per_sec(a->write_hits, b->write_hits, dt);
	double wm = per_sec(a->write_misses, b->write_misses, dt);

	r->reads = rh + rm;
	r->writes = wh + wm;
	r->rd_ratio = r->reads > 0 ? rh / r->reads : NAN;
	r->wr_ratio = r->writes > 0 ? wh / r->writes : NAN;
	r->bypassed = per_sec(a->bypassed, b->bypassed, dt);
	r->wb_blocks = per_sec(a->writeback_done, b->writeback_done, dt);
	r->promotions = per_sec(a->promotions, b->promotions, dt);
	r->demotions = per_sec(a->demotions, b->demotions, dt);
}

static void frame(const char *name, const struct vmc_status *st,
		  const struct rates *r, double interval)
{
	uint64_t bs = st->block_size;
	char a[32], b[32], p1[16], p2[16];

	printf("\033[H\033[J");
	printf("vmcachectl watch %s, every %.1f s (Ctrl-C quits)\n\n", name, interval);
	printf("mode %s   policy %s   metadata %s   flush %s%s\n\n", st->mode,
	       st->policy, st->metadata, st->flush,
	       st->degraded ? "   DEGRADED" : "");
	printf("            IOPS   hit ratio\n");
	printf("reads   %8.0f   %9s\n", r->reads, pct(r->rd_ratio, p1, sizeof(p1)));
	printf("writes  %8.0f   %9s\n", r->writes, pct(r->wr_ratio, p2, sizeof(p2)));
	printf("bypass  %8.0f\n\n", r->bypassed);
	printf("writeback   %s/s (%.0f blocks/s), %" PRIu64 " in flight, %" PRIu64
	       " errors\n", fmt_bytes((uint64_t)(r->wb_blocks * (double)bs), a, sizeof(a)),
	       r->wb_blocks, st->writeback_inflight, st->writeback_errors);
	printf("promotions  %.0f/s   demotions %.0f/s\n", r->promotions, r->demotions);
	printf("cache       %s used, %s dirty of %" PRIu64 " blocks\n",
	       fmt_bytes(st->blocks_used * bs, a, sizeof(a)),
	       fmt_bytes(st->blocks_dirty * bs, b, sizeof(b)), st->blocks_total);
	printf("errors      cache %" PRIu64 ", origin %" PRIu64 ", data loss %" PRIu64
	       "\n", st->cache_errors, st->origin_errors, st->data_loss);
}

static void plain_line(const struct vmc_status *st, const struct rates *r)
{
	char p1[16], p2[16];

	printf("%9.0f %9.0f %8s %8s %9.0f %10.1f %12" PRIu64 " %12" PRIu64 "\n",
	       r->reads, r->writes, pct(r->rd_ratio, p1, sizeof(p1)),
	       pct(r->wr_ratio, p2, sizeof(p2)), r->bypassed,
	       r->wb_blocks * (double)st->block_size / 1048576.0,
	       st->blocks_used, st->blocks_dirty);
}

int cmd_watch(int argc, char **argv)
{
	const char *pos[1] = { NULL };
	double interval = 1;
	uint64_t count = 0;
	const struct opt opts[] = {
		{ "interval", 'i', OPT_SECONDS, &interval, NULL },
		{ "count", 'c', OPT_U64, &count, NULL },
	};
	const struct cmd_spec spec = {
		"watch",
		"watch NAME [--interval S] [--count N]\n"
		"Live rates from counter deltas: IOPS, hit ratios, writeback rate.\n"
		"Redraws in place on a terminal, prints one line per sample otherwise.\n"
		"  -i, --interval S    seconds between samples (default 1)\n"
		"  -c, --count N       stop after N samples (default: until Ctrl-C)",
		opts, ARRAY_SIZE(opts), pos, 1, 1, NULL,
	};
	bool tty = isatty(STDOUT_FILENO);
	struct vmc_status prev, cur;
	struct rates r;
	double t_prev, t;
	int ret = parse_args(argc, argv, &spec);

	if (ret != PARSE_RUN)
		return ret;
	if (interval < 0.1) {
		vmc_err("watch: --interval must be at least 0.1 seconds");
		return EXIT_USAGE;
	}
	if (vmc_get_status(pos[0], &prev))
		return EXIT_FAIL;
	t_prev = now_mono();
	catch_stop_signals();
	if (!tty)
		printf("%9s %9s %8s %8s %9s %10s %12s %12s\n", "reads/s",
		       "writes/s", "rd_hit", "wr_hit", "bypass/s", "wb_MiB/s",
		       "blocks_used", "blocks_dirty");
	for (uint64_t n = 0; !count || n < count; n++) {
		if (sleep_or_stop(interval))
			break;
		if (vmc_get_status(pos[0], &cur))
			return EXIT_FAIL;
		t = now_mono();
		rates(&prev, &cur, t - t_prev, &r);
		if (tty)
			frame(pos[0], &cur, &r, interval);
		else
			plain_line(&cur, &r);
		fflush(stdout);
		prev = cur;
		t_prev = t;
	}
	return EXIT_OK;
}
