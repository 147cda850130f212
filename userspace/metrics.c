// SPDX-License-Identifier: GPL-2.0
/*
 * vmcachectl: latency histograms from sysfs, and the Prometheus text
 * format (version 0.0.4, as node_exporter's textfile collector reads it).
 * One table names every metric of the status line; vmcachectl.8 documents
 * the same names.
 */
#include "metrics.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

const char * const vmc_lat_class_names[VMC_LAT_CLASSES] = {
	"read_hit", "read_miss", "write", "writeback",
};

/* bucket 0: up to 16 us; each next bound doubles; the last: the rest */
uint64_t vmc_lat_bound_us(size_t i)
{
	return i + 1 < VMC_LAT_BUCKETS ? (uint64_t)16 << i : 0;
}

/* ---- sysfs ---------------------------------------------------------------- */

int vmc_latency_parse(const char *text, uint64_t *counts, char *err,
		      size_t errlen)
{
	const char *p = text;
	size_t n = 0;

	for (;;) {
		char *end;

		if (!isdigit((unsigned char)*p))
			break;
		if (n == VMC_LAT_BUCKETS) {
			snprintf(err, errlen, "more than %d buckets",
				 VMC_LAT_BUCKETS);
			return -1;
		}
		errno = 0;
		counts[n++] = strtoull(p, &end, 10);
		if (errno) {
			snprintf(err, errlen, "bucket %zu is out of range", n - 1);
			return -1;
		}
		p = end;
		if (*p != ' ')
			break;
		p++;
	}
	if (*p == '\n')
		p++;
	if (*p) {
		snprintf(err, errlen, "bad character '%c' after bucket %zu",
			 *p, n);
		return -1;
	}
	if (n != VMC_LAT_BUCKETS) {
		snprintf(err, errlen, "%zu buckets, expected %d", n,
			 VMC_LAT_BUCKETS);
		return -1;
	}
	return 0;
}

/* a small sysfs file into buf, newline kept; 0 or -1 and err */
static int read_small(const char *path, char *buf, size_t len, char *err,
		      size_t errlen)
{
	FILE *f = fopen(path, "r");
	size_t n;

	if (!f) {
		snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
		return -1;
	}
	n = fread(buf, 1, len - 1, f);
	buf[n] = '\0';
	fclose(f);
	return 0;
}

int vmc_latency_read(const char *dir, struct vmc_latency *lat, char *err,
		     size_t errlen)
{
	char path[512], buf[1024], why[128];

	memset(lat, 0, sizeof(*lat));
	for (size_t k = 0; k < VMC_LAT_CLASSES; k++) {
		snprintf(path, sizeof(path), "%s/latency_%s", dir,
			 vmc_lat_class_names[k]);
		if (read_small(path, buf, sizeof(buf), err, errlen))
			return -1;
		if (vmc_latency_parse(buf, lat->count[k], why, sizeof(why))) {
			snprintf(err, errlen, "%s: %s", path, why);
			return -1;
		}
		snprintf(path, sizeof(path), "%s/latency_%s_sum_us", dir,
			 vmc_lat_class_names[k]);
		if (read_small(path, buf, sizeof(buf), err, errlen))
			return -1;
		buf[strcspn(buf, "\n")] = '\0';
		if (parse_u64(buf, &lat->sum_us[k])) {
			snprintf(err, errlen, "%s: '%s' is not a number", path, buf);
			return -1;
		}
	}
	return 0;
}

void vmc_latency_json(struct json *j, const char *key,
		      const struct vmc_latency *lat)
{
	if (!lat) {
		json_null(j, key);
		return;
	}
	json_begin_object(j, key);
	json_begin_array(j, "le_us");
	for (size_t i = 0; i < VMC_LAT_BUCKETS; i++) {
		if (vmc_lat_bound_us(i))
			json_u64(j, NULL, vmc_lat_bound_us(i));
		else
			json_null(j, NULL);
	}
	json_end_array(j);
	for (size_t k = 0; k < VMC_LAT_CLASSES; k++) {
		uint64_t total = 0;

		for (size_t i = 0; i < VMC_LAT_BUCKETS; i++)
			total += lat->count[k][i];
		json_begin_object(j, vmc_lat_class_names[k]);
		json_u64(j, "count", total);
		json_u64(j, "sum_us", lat->sum_us[k]);
		json_begin_array(j, "buckets");
		for (size_t i = 0; i < VMC_LAT_BUCKETS; i++)
			json_u64(j, NULL, lat->count[k][i]);
		json_end_array(j);
		json_end_object(j);
	}
	json_end_object(j);
}

/* ---- Prometheus ----------------------------------------------------------- */

#define METADATA_PAGE 4096

enum conv {
	C_NUM,		/* the value */
	C_BLOCKS,	/* cache blocks, as bytes */
	C_PAGES,	/* metadata pages, as bytes */
	C_INFO,		/* a word: label <arg>="<word>", value 1 */
	C_IS,		/* a word: 1 when it is <arg>, else 0 */
};

struct metric {
	const char *key;	/* status key */
	const char *name;
	const char *type;
	enum conv conv;
	const char *arg;
	const char *help;
};

/* in status line order; vmcachectl.8, "PROMETHEUS METRICS" */
static const struct metric metrics[] = {
	{ "version", "vmcache_status_version", "gauge", C_NUM, NULL,
	  "Status line format version." },
	{ "mode", "vmcache_mode_info", "gauge", C_INFO, "mode",
	  "Cache mode (label mode), always 1." },
	{ "policy", "vmcache_policy_info", "gauge", C_INFO, "policy",
	  "Replacement policy (label policy), always 1." },
	{ "block_size", "vmcache_block_size_bytes", "gauge", C_NUM, NULL,
	  "Cache block size." },
	{ "metadata", "vmcache_metadata_info", "gauge", C_INFO, "state",
	  "Metadata state (label state: ok, needs_check, fail), always 1." },
	{ "metadata_used", "vmcache_metadata_used_bytes", "gauge", C_PAGES,
	  NULL, "Metadata pages holding mappings, both copies." },
	{ "metadata_total", "vmcache_metadata_size_bytes", "gauge", C_PAGES,
	  NULL, "Metadata area: superblocks and both mapping areas." },
	{ "blocks_total", "vmcache_capacity_bytes", "gauge", C_BLOCKS, NULL,
	  "Cache data area." },
	{ "blocks_used", "vmcache_used_bytes", "gauge", C_BLOCKS, NULL,
	  "Cache blocks mapping origin data." },
	{ "blocks_dirty", "vmcache_dirty_bytes", "gauge", C_BLOCKS, NULL,
	  "Cache blocks holding data not yet on the origin." },
	{ "read_hits", "vmcache_read_hits_total", "counter", C_NUM, NULL,
	  "Reads served from the cache (block-sized pieces)." },
	{ "read_misses", "vmcache_read_misses_total", "counter", C_NUM, NULL,
	  "Reads served from the origin (block-sized pieces)." },
	{ "write_hits", "vmcache_write_hits_total", "counter", C_NUM, NULL,
	  "Writes to blocks already cached (block-sized pieces)." },
	{ "write_misses", "vmcache_write_misses_total", "counter", C_NUM, NULL,
	  "Writes to blocks not cached (block-sized pieces)." },
	{ "bypassed", "vmcache_bypassed_total", "counter", C_NUM, NULL,
	  "Pieces sent around the cache." },
	{ "promotions", "vmcache_promotions_total", "counter", C_NUM, NULL,
	  "Blocks or sub-blocks filled from a read miss." },
	{ "demotions", "vmcache_demotions_total", "counter", C_NUM, NULL,
	  "Blocks evicted." },
	{ "writeback_done", "vmcache_writeback_blocks_total", "counter", C_NUM,
	  NULL, "Blocks written back to the origin." },
	{ "writeback_inflight", "vmcache_writeback_inflight_blocks", "gauge",
	  C_NUM, NULL, "Blocks being written back now." },
	{ "writeback_errors", "vmcache_writeback_errors_total", "counter", C_NUM,
	  NULL, "Failed writeback attempts (retried)." },
	{ "cache_errors", "vmcache_cache_errors_total", "counter", C_NUM, NULL,
	  "I/O errors from the cache device." },
	{ "origin_errors", "vmcache_origin_errors_total", "counter", C_NUM,
	  NULL, "I/O errors from the origin device." },
	{ "data_loss", "vmcache_data_loss_blocks_total", "counter", C_NUM, NULL,
	  "Dirty blocks whose data could not be read back." },
	{ "flush", "vmcache_flush_active", "gauge", C_IS, "active",
	  "1 while a drain (flush message, mode change) runs." },
	{ "degraded", "vmcache_degraded", "gauge", C_NUM, NULL,
	  "1 when new writes go around the cache." },
	{ "commits", "vmcache_metadata_commits_total", "counter", C_NUM, NULL,
	  "Metadata commits." },
	{ "seq", "vmcache_metadata_seq", "gauge", C_NUM, NULL,
	  "Sequence number of the last durable commit." },
	{ "mrc", "vmcache_mrc_enabled", "gauge", C_IS, "on",
	  "1 while the hit ratio at other cache sizes is estimated (option mrc)." },
	{ "mrc_reads", "vmcache_mrc_reads_total", "counter", C_NUM, NULL,
	  "Reads counted by the hit ratio estimate." },
	{ "mrc_sample_ppm", "vmcache_mrc_sample_ppm", "gauge", C_NUM, NULL,
	  "Blocks the estimate samples, per million." },
	{ "est_hit_0_5x", "vmcache_mrc_hit_permille_0_5x", "gauge", C_NUM,
	  NULL, "Estimated read hit ratio, per mille, at half the cache size." },
	{ "est_hit_1x", "vmcache_mrc_hit_permille_1x", "gauge", C_NUM,
	  NULL, "Estimated read hit ratio, per mille, at the cache size." },
	{ "est_hit_2x", "vmcache_mrc_hit_permille_2x", "gauge", C_NUM,
	  NULL, "Estimated read hit ratio, per mille, at twice the cache size." },
	{ "est_hit_4x", "vmcache_mrc_hit_permille_4x", "gauge", C_NUM,
	  NULL, "Estimated read hit ratio, per mille, at four times the cache size." },
	{ "data_crc", "vmcache_data_crc", "gauge", C_NUM, NULL,
	  "1 when the cache checksums its dirty data (option data_crc)." },
	{ "crc_errors", "vmcache_crc_errors_total", "counter", C_NUM, NULL,
	  "Dirty sectors whose data failed its checksum." },
};

#define LAT_METRIC "vmcache_latency_seconds"
#define MAX_EXTRA 64
#define KEY_LEN 64

/* the value of key in a status line, or NULL; *len its length */
static const char *status_get(const char *line, const char *key, size_t *len)
{
	size_t klen = strlen(key);
	const char *p = line;

	while (*p) {
		const char *end = p + strcspn(p, " ");

		if ((size_t)(end - p) > klen && !memcmp(p, key, klen) &&
		    p[klen] == '=') {
			*len = (size_t)(end - p) - klen - 1;
			return p + klen + 1;
		}
		p = *end ? end + 1 : end;
	}
	return NULL;
}

static bool get_u64(const char *line, const char *key, uint64_t *v)
{
	char buf[32];
	size_t len;
	const char *s = status_get(line, key, &len);

	if (!s || !len || len >= sizeof(buf))
		return false;
	memcpy(buf, s, len);
	buf[len] = '\0';
	return !parse_u64(buf, v);
}

/* a plain decimal number as Prometheus reads it (no inf, nan, hex) */
static bool is_number(const char *s, size_t len)
{
	char buf[64], *end;

	if (!len || len >= sizeof(buf) || strspn(s, "0123456789.eE+-") < len ||
	    !(isdigit((unsigned char)s[0]) || s[0] == '-'))
		return false;
	memcpy(buf, s, len);
	buf[len] = '\0';
	strtod(buf, &end);
	return !*end;
}

static void put_label_value(FILE *f, const char *v, size_t len)
{
	fputc('"', f);
	for (size_t i = 0; i < len; i++) {
		if (v[i] == '\\' || v[i] == '"')
			fputc('\\', f);
		if (v[i] == '\n')
			fputs("\\n", f);
		else
			fputc(v[i], f);
	}
	fputc('"', f);
}

/* NAME{device="..." (, extra labels follow, then the caller's "} value") */
static void begin_sample(FILE *f, const char *name, const char *suffix,
			 const char *device)
{
	fprintf(f, "%s%s{device=", name, suffix);
	put_label_value(f, device, strlen(device));
}

static void family(FILE *f, const char *name, const char *type,
		   const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* microseconds as seconds, exact, no trailing zeros: 16 -> 0.000016 */
static void put_seconds(FILE *f, uint64_t us)
{
	char buf[48];
	size_t n = (size_t)snprintf(buf, sizeof(buf), "%" PRIu64 ".%06" PRIu64,
				    us / 1000000, us % 1000000);

	while (buf[n - 1] == '0')
		n--;
	if (buf[n - 1] == '.')
		n--;
	fwrite(buf, 1, n, f);
}

static void write_metric(FILE *f, const struct metric *m,
			 const struct vmc_prom_cache *caches, size_t n)
{
	bool header = false;

	for (size_t i = 0; i < n; i++) {
		const char *line = caches[i].status;
		uint64_t v, scale = 1;
		size_t len;
		const char *s = status_get(line, m->key, &len);

		if (!s)
			continue;
		switch (m->conv) {
		case C_NUM:
		case C_BLOCKS:
		case C_PAGES:
			if (!get_u64(line, m->key, &v))
				continue;
			if (m->conv == C_PAGES)
				scale = METADATA_PAGE;
			if (m->conv == C_BLOCKS &&
			    !get_u64(line, "block_size", &scale))
				continue;
			break;
		case C_INFO:
			v = 1;
			break;
		case C_IS:
			v = strlen(m->arg) == len && !memcmp(s, m->arg, len);
			break;
		}
		if (!header) {
			family(f, m->name, m->type, m->help);
			header = true;
		}
		begin_sample(f, m->name, "", caches[i].name);
		if (m->conv == C_INFO) {
			fprintf(f, ",%s=", m->arg);
			put_label_value(f, s, len);
		}
		fprintf(f, "} %" PRIu64 "\n", v * scale);
	}
}

static bool known_key(const char *key, size_t len)
{
	for (size_t i = 0; i < ARRAY_SIZE(metrics); i++)
		if (strlen(metrics[i].key) == len &&
		    !memcmp(metrics[i].key, key, len))
			return true;
	return false;
}

/*
 * Keys a newer kernel appended, with a numeric value in some cache: each
 * becomes vmcache_status_<key>, untyped.
 */
static void write_extra(FILE *f, const struct vmc_prom_cache *caches,
			size_t n)
{
	char keys[MAX_EXTRA][KEY_LEN];
	size_t nk = 0;

	for (size_t i = 0; i < n; i++) {
		const char *p = caches[i].status;

		while (*p) {
			const char *end = p + strcspn(p, " ");
			const char *eq = memchr(p, '=', (size_t)(end - p));
			size_t klen = eq ? (size_t)(eq - p) : 0, k;

			if (eq && klen && klen < KEY_LEN && !known_key(p, klen) &&
			    is_number(eq + 1, (size_t)(end - eq - 1))) {
				for (k = 0; k < nk; k++)
					if (strlen(keys[k]) == klen &&
					    !memcmp(keys[k], p, klen))
						break;
				if (k == nk && nk < MAX_EXTRA) {
					memcpy(keys[nk], p, klen);
					keys[nk++][klen] = '\0';
				}
			}
			p = *end ? end + 1 : end;
		}
	}
	for (size_t k = 0; k < nk; k++) {
		char name[KEY_LEN + 32], help[KEY_LEN + 64];
		size_t base = (size_t)snprintf(name, sizeof(name),
					       "vmcache_status_");

		for (size_t c = 0; keys[k][c]; c++)
			name[base + c] = isalnum((unsigned char)keys[k][c]) ?
					 keys[k][c] : '_';
		name[base + strlen(keys[k])] = '\0';
		snprintf(help, sizeof(help),
			 "Status key %s (not known to this vmcachectl).", keys[k]);
		family(f, name, "untyped", help);
		for (size_t i = 0; i < n; i++) {
			size_t len;
			const char *s = status_get(caches[i].status, keys[k], &len);

			if (!s || !is_number(s, len))
				continue;
			begin_sample(f, name, "", caches[i].name);
			fprintf(f, "} %.*s\n", (int)len, s);
		}
	}
}

static void write_histograms(FILE *f, const struct vmc_prom_cache *caches,
			     size_t n)
{
	bool header = false;

	for (size_t i = 0; i < n; i++) {
		const struct vmc_latency *lat = caches[i].lat;

		if (!lat)
			continue;
		if (!header) {
			family(f, LAT_METRIC, "histogram",
			       "Latency by class: read_hit, read_miss and write from the target's map to completion, writeback a block's copy to the origin.");
			header = true;
		}
		for (size_t k = 0; k < VMC_LAT_CLASSES; k++) {
			uint64_t cum = 0;

			for (size_t b = 0; b < VMC_LAT_BUCKETS; b++) {
				cum += lat->count[k][b];
				begin_sample(f, LAT_METRIC, "_bucket",
					     caches[i].name);
				fprintf(f, ",class=\"%s\",le=\"",
					vmc_lat_class_names[k]);
				if (vmc_lat_bound_us(b))
					put_seconds(f, vmc_lat_bound_us(b));
				else
					fputs("+Inf", f);
				fprintf(f, "\"} %" PRIu64 "\n", cum);
			}
			begin_sample(f, LAT_METRIC, "_sum", caches[i].name);
			fprintf(f, ",class=\"%s\"} ", vmc_lat_class_names[k]);
			put_seconds(f, lat->sum_us[k]);
			fputc('\n', f);
			begin_sample(f, LAT_METRIC, "_count", caches[i].name);
			fprintf(f, ",class=\"%s\"} %" PRIu64 "\n",
				vmc_lat_class_names[k], cum);
		}
	}
}

void vmc_prom_write(FILE *f, const struct vmc_prom_cache *caches, size_t n)
{
	for (size_t i = 0; i < ARRAY_SIZE(metrics); i++)
		write_metric(f, &metrics[i], caches, n);
	write_extra(f, caches, n);
	write_histograms(f, caches, n);
}
