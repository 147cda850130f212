// SPDX-License-Identifier: GPL-2.0
/*
 * vmcachectl: status line parser.  One table describes every key, so the
 * parser and the JSON writer cannot disagree on names.
 */
#include "status.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

enum field_type { F_U64, F_WORD };

struct status_field {
	const char *key;
	enum field_type type;
	size_t offset;
	bool mrc;		/* an estimate key: all present or none */
};

#define U(name) { #name, F_U64, offsetof(struct vmc_status, name), false }
#define W(name) { #name, F_WORD, offsetof(struct vmc_status, name), false }
#define M(key, type, member) \
	{ key, type, offsetof(struct vmc_status, member), true }

/* Documentation/vmcache.rst, "Status line", in that order */
static const struct status_field fields[] = {
	U(version), W(mode), W(policy), U(block_size), W(metadata),
	U(metadata_used), U(metadata_total), U(blocks_total), U(blocks_used),
	U(blocks_dirty), U(read_hits), U(read_misses), U(write_hits),
	U(write_misses), U(bypassed), U(promotions), U(demotions),
	U(writeback_done), U(writeback_inflight), U(writeback_errors),
	U(cache_errors), U(origin_errors), U(data_loss), W(flush),
	U(degraded), U(commits), U(seq),
	M("mrc", F_WORD, mrc), M("mrc_reads", F_U64, mrc_reads),
	M("mrc_sample_ppm", F_U64, mrc_sample_ppm),
	M("est_hit_0_5x", F_U64, est_hit[0]), M("est_hit_1x", F_U64, est_hit[1]),
	M("est_hit_2x", F_U64, est_hit[2]), M("est_hit_4x", F_U64, est_hit[3]),
};

#undef U
#undef W
#undef M

static int set_field(struct vmc_status *st, const struct status_field *f,
		     const char *val, size_t len, char *err, size_t errlen)
{
	char buf[VMC_STATUS_WORD];
	char *dst = (char *)st + f->offset;

	if (!len || len >= sizeof(buf)) {
		snprintf(err, errlen, "status key %s has a bad value", f->key);
		return -1;
	}
	memcpy(buf, val, len);
	buf[len] = '\0';
	if (f->type == F_WORD) {
		memcpy(dst, buf, len + 1);
		return 0;
	}
	if (parse_u64(buf, (uint64_t *)(void *)dst)) {
		snprintf(err, errlen, "status key %s: '%s' is not a number",
			 f->key, buf);
		return -1;
	}
	return 0;
}

static int add_extra(struct vmc_status *st, const char *key, size_t klen,
		     const char *val, size_t vlen)
{
	if (st->nr_extra >= VMC_STATUS_MAX_EXTRA ||
	    klen >= sizeof(st->extra[0].key) ||
	    vlen >= sizeof(st->extra[0].value))
		return 0;	/* unknown and too big to keep: ignore */
	memcpy(st->extra[st->nr_extra].key, key, klen);
	st->extra[st->nr_extra].key[klen] = '\0';
	memcpy(st->extra[st->nr_extra].value, val, vlen);
	st->extra[st->nr_extra].value[vlen] = '\0';
	st->nr_extra++;
	return 0;
}

int vmc_status_parse(const char *line, struct vmc_status *st, char *err,
		     size_t errlen)
{
	bool seen[ARRAY_SIZE(fields)] = { false };
	const char *p = line;

	memset(st, 0, sizeof(*st));
	while (*p) {
		const char *tok = p, *eq, *end;
		size_t klen, i;

		end = strchr(tok, ' ');
		if (!end)
			end = tok + strlen(tok);
		p = *end ? end + 1 : end;
		if (end == tok)
			continue;
		eq = memchr(tok, '=', (size_t)(end - tok));
		if (!eq) {
			snprintf(err, errlen, "status token '%.*s' is not key=value",
				 (int)(end - tok), tok);
			return -1;
		}
		klen = (size_t)(eq - tok);
		for (i = 0; i < ARRAY_SIZE(fields); i++)
			if (strlen(fields[i].key) == klen &&
			    !memcmp(fields[i].key, tok, klen))
				break;
		if (i == ARRAY_SIZE(fields)) {
			add_extra(st, tok, klen, eq + 1, (size_t)(end - eq - 1));
			continue;
		}
		if (seen[i]) {
			snprintf(err, errlen, "status key %s appears twice",
				 fields[i].key);
			return -1;
		}
		seen[i] = true;
		if (set_field(st, &fields[i], eq + 1, (size_t)(end - eq - 1),
			      err, errlen))
			return -1;
	}
	for (size_t i = 0; i < ARRAY_SIZE(fields); i++)
		if (fields[i].mrc && seen[i])
			st->has_mrc = true;
	for (size_t i = 0; i < ARRAY_SIZE(fields); i++) {
		if (!seen[i] && (!fields[i].mrc || st->has_mrc)) {
			snprintf(err, errlen,
				 "status line lacks key %s (is the dm-vmcache module older than vmcachectl?)",
				 fields[i].key);
			return -1;
		}
	}
	return 0;
}

void vmc_status_json(struct json *j, const struct vmc_status *st)
{
	for (size_t i = 0; i < ARRAY_SIZE(fields); i++) {
		const char *p = (const char *)st + fields[i].offset;

		if (fields[i].mrc && !st->has_mrc)
			continue;
		if (fields[i].type == F_WORD)
			json_str(j, fields[i].key, p);
		else
			json_u64(j, fields[i].key, *(const uint64_t *)(const void *)p);
	}
	for (size_t i = 0; i < st->nr_extra; i++)
		json_str(j, st->extra[i].key, st->extra[i].value);
}

double vmc_est_size(size_t i)
{
	return 0.5 * (double)(1u << i);
}

double vmc_ratio(uint64_t hits, uint64_t misses)
{
	if (!hits && !misses)
		return NAN;
	return (double)hits / ((double)hits + (double)misses);
}
