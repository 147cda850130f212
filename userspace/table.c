// SPDX-License-Identifier: GPL-2.0
/*
 * vmcachectl: options and the table line.
 */
#include "table.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "vmcache_ondisk.h"

#define NUM(k, lo, hi, on) { k, TUN_NUM, lo, hi, NULL, on }
#define ENUM(k, v) { k, TUN_ENUM, 0, 0, v, true }

/* Documentation/vmcache.rst, the option table */
const struct vmc_tunable vmc_tunables[] = {
	{ "block_size", TUN_BLOCK_SIZE, VMC_BLOCK_SIZE_MIN, VMC_BLOCK_SIZE_MAX,
	  NULL, false },
	ENUM("mode", "writethrough writeback passthrough"),
	ENUM("policy", "2q lru"),
	NUM("promote_after", 1, 255, true),
	NUM("sequential_cutoff", 0, 1048576, true),
	NUM("writeback_low", 0, 100, true),
	NUM("writeback_high", 0, 100, true),
	NUM("max_dirty_age", 0, 3600, true),
	NUM("writeback_max_inflight", 1, 1024, true),
	NUM("writeback_floor", 0, 1048576, true),
	NUM("writeback_sort", 0, 1, true),
	NUM("writeback_retries", 1, 64, true),
	ENUM("mrc", "off on"),
	NUM("must_exist", 0, 1, false),
	NUM("data_crc", 0, 1, false),
};

const size_t vmc_nr_tunables = ARRAY_SIZE(vmc_tunables);

#undef NUM
#undef ENUM

const struct vmc_tunable *vmc_tunable_find(const char *key)
{
	for (size_t i = 0; i < vmc_nr_tunables; i++)
		if (!strcmp(vmc_tunables[i].key, key))
			return &vmc_tunables[i];
	return NULL;
}

void vmc_tunables_help(void)
{
	printf("\nOptions (Documentation/vmcache.rst):\n");
	for (size_t i = 0; i < vmc_nr_tunables; i++) {
		const struct vmc_tunable *t = &vmc_tunables[i];

		if (t->type == TUN_ENUM)
			printf("  %-20s %s\n", t->key, t->values);
		else if (t->type == TUN_BLOCK_SIZE)
			printf("  %-20s 4k..64k, a power of two, fixed at format\n",
			       t->key);
		else
			printf("  %-20s %" PRIu64 "..%" PRIu64 "%s\n", t->key,
			       t->min, t->max,
			       t->online ? "" : ", set through a table reload");
	}
}

static bool word_in(const char *word, const char *list)
{
	size_t n = strlen(word);

	for (const char *p = list; *p;) {
		const char *end = strchr(p, ' ');
		size_t len = end ? (size_t)(end - p) : strlen(p);

		if (n && len == n && !memcmp(p, word, n))
			return true;
		p += len + (end ? 1 : 0);
	}
	return false;
}

int vmc_tunable_check(const char *key, const char *value, char *out,
		      size_t outlen, char *err, size_t errlen)
{
	const struct vmc_tunable *t = vmc_tunable_find(key);
	uint64_t v = 0;

	if (!t) {
		snprintf(err, errlen,
			 "unknown option '%s' (see 'vmcachectl set --help' for the list)",
			 key);
		return -1;
	}
	switch (t->type) {
	case TUN_ENUM:
		if (!word_in(value, t->values)) {
			snprintf(err, errlen, "%s must be one of: %s", key,
				 t->values);
			return -1;
		}
		snprintf(out, outlen, "%s", value);
		return 0;
	case TUN_BLOCK_SIZE:
		if (parse_size(value, &v) || v < t->min || v > t->max ||
		    (v & (v - 1))) {
			snprintf(err, errlen,
				 "%s must be a power of two from 4k to 64k (bytes, or with a k suffix), not '%s'",
				 key, value);
			return -1;
		}
		break;
	case TUN_NUM:
		if (parse_u64(value, &v) || v < t->min || v > t->max) {
			snprintf(err, errlen,
				 "%s must be a whole number from %" PRIu64
				 " to %" PRIu64 ", not '%s'",
				 key, t->min, t->max, value);
			return -1;
		}
		break;
	}
	snprintf(out, outlen, "%" PRIu64, v);
	return 0;
}

static int table_put(struct vmc_table *t, const char *key, const char *value,
		     char *err, size_t errlen)
{
	size_t i;

	if (strlen(key) >= VMC_TABLE_WORD || strlen(value) >= VMC_TABLE_WORD ||
	    !*value || strpbrk(value, " \t\n")) {
		snprintf(err, errlen, "bad value for %s: '%s'", key, value);
		return -1;
	}
	for (i = 0; i < t->nr_opts; i++)
		if (!strcmp(t->opt[i].key, key))
			break;
	if (i == t->nr_opts) {
		if (t->nr_opts == VMC_TABLE_MAX_OPTS) {
			snprintf(err, errlen, "too many options");
			return -1;
		}
		t->nr_opts++;
	}
	snprintf(t->opt[i].key, VMC_TABLE_WORD, "%s", key);
	snprintf(t->opt[i].value, VMC_TABLE_WORD, "%s", value);
	return 0;
}

int vmc_table_set(struct vmc_table *t, const char *key, const char *value,
		  char *err, size_t errlen)
{
	char norm[VMC_TABLE_WORD];

	if (vmc_tunable_check(key, value, norm, sizeof(norm), err, errlen))
		return -1;
	return table_put(t, key, norm, err, errlen);
}

int vmc_table_set_pair(struct vmc_table *t, const char *pair, char *err,
		       size_t errlen)
{
	const char *eq = strchr(pair, '=');
	char key[VMC_TABLE_WORD];

	if (!eq || eq == pair || (size_t)(eq - pair) >= sizeof(key)) {
		snprintf(err, errlen, "'%s' is not key=value", pair);
		return -1;
	}
	memcpy(key, pair, (size_t)(eq - pair));
	key[eq - pair] = '\0';
	return vmc_table_set(t, key, eq + 1, err, errlen);
}

const char *vmc_table_get(const struct vmc_table *t, const char *key)
{
	for (size_t i = 0; i < t->nr_opts; i++)
		if (!strcmp(t->opt[i].key, key))
			return t->opt[i].value;
	return NULL;
}

int vmc_table_params(const struct vmc_table *t, char *buf, size_t len)
{
	size_t off;
	int n;

	n = snprintf(buf, len, "%s %s %zu", t->cache, t->origin,
		     2 * t->nr_opts);
	for (size_t i = 0; n >= 0 && (size_t)n < len && i < t->nr_opts; i++) {
		off = (size_t)n;
		n += snprintf(buf + off, len - off, " %s %s", t->opt[i].key,
			      t->opt[i].value);
	}
	return n >= 0 && (size_t)n < len ? 0 : -1;
}

/* next space-separated word of *p into w */
static int next_word(const char **p, char *w, size_t len)
{
	const char *s = *p + strspn(*p, " ");
	size_t n = strcspn(s, " ");

	if (!n || n >= len)
		return -1;
	memcpy(w, s, n);
	w[n] = '\0';
	*p = s + n;
	return 0;
}

int vmc_table_parse(const char *params, uint64_t len, struct vmc_table *t,
		    char *err, size_t errlen)
{
	char key[VMC_TABLE_WORD], value[VMC_TABLE_WORD], num[VMC_TABLE_WORD];
	const char *p = params;
	uint64_t words = 0;

	memset(t, 0, sizeof(*t));
	t->len = len;
	if (next_word(&p, t->cache, sizeof(t->cache)) ||
	    next_word(&p, t->origin, sizeof(t->origin))) {
		snprintf(err, errlen, "table '%s' lacks the two devices", params);
		return -1;
	}
	if (!next_word(&p, num, sizeof(num)) &&
	    (parse_u64(num, &words) || words % 2)) {
		snprintf(err, errlen, "table '%s': bad option count", params);
		return -1;
	}
	for (uint64_t i = 0; i < words / 2; i++) {
		if (next_word(&p, key, sizeof(key)) ||
		    next_word(&p, value, sizeof(value)) ||
		    table_put(t, key, value, err, errlen)) {
			snprintf(err, errlen, "table '%s': bad options", params);
			return -1;
		}
	}
	if (p[strspn(p, " ")]) {
		snprintf(err, errlen, "table '%s': extra words", params);
		return -1;
	}
	return 0;
}
