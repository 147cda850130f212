// SPDX-License-Identifier: GPL-2.0
/*
 * Host test of the kernel's hit ratio estimate (dm-vmcache/vmcache-mrc.c,
 * built here against tests/kshim): on synthetic traces its est_hit_* keys
 * are compared with an exact LRU simulation of caches of 0.5, 1, 2 and 4
 * times the size.  Loops and small sets (every block sampled) must be
 * exact; sampled traces within a few points.  Also: stats reset keeps the
 * recency, off/on forgets, writes refresh recency without counting,
 * bypassed reads never hit, the curve is 128 rising points.
 *
 * Usage: tests/mrc_model (KTAP-like output, exit status 1 on failure)
 */
#include <math.h>

#include "vmcache-mrc.h"

static int failed, cases;

#define CHECK(cond, ...)                                                   \
	do {                                                               \
		if (!(cond)) {                                             \
			printf("# %s:%d: %s: ", __FILE__, __LINE__, #cond); \
			printf(__VA_ARGS__);                               \
			printf("\n");                                      \
			failed = 1;                                        \
		}                                                          \
	} while (0)

/* ---- an exact LRU over a trace: hits at the four sizes ---- */

struct exact {
	u64 nblocks, t, n, live;
	u64 *last;		/* stamp of each block's last access, 0: never */
	int *fen;		/* ones at the live stamps */
	u64 size[4], hits[4], reads;
};

static void exact_init(struct exact *x, u64 nblocks, u64 accesses, u32 cache)
{
	memset(x, 0, sizeof(*x));
	x->nblocks = nblocks;
	x->n = accesses + 1;
	x->last = calloc(nblocks, sizeof(*x->last));
	x->fen = calloc(x->n + 1, sizeof(*x->fen));
	for (int i = 0; i < 4; i++)
		x->size[i] = (u64)cache * (1u << i) / 2;
}

static void exact_access(struct exact *x, u64 b, bool count)
{
	u64 i;

	x->t++;
	if (count)
		x->reads++;
	if (x->last[b]) {
		u64 s = 0, d;

		for (i = x->last[b]; i; i -= i & -i)
			s += (u64)x->fen[i];
		d = x->live - s;	/* distinct blocks since */
		for (int k = 0; k < 4 && count; k++)
			x->hits[k] += d < x->size[k];
		for (i = x->last[b]; i <= x->n; i += i & -i)
			x->fen[i]--;
		x->live--;
	}
	x->last[b] = x->t;
	for (i = x->t; i <= x->n; i += i & -i)
		x->fen[i]++;
	x->live++;
}

static void exact_free(struct exact *x)
{
	free(x->last);
	free(x->fen);
}

/* ---- traces ---- */

static u64 rng_state;

static u64 rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

enum kind { LOOP, UNIFORM, ZIPF };

struct trace {
	enum kind kind;
	u64 blocks;
	double *cdf;		/* zipf */
	u64 pos;
};

static void trace_init(struct trace *tr, enum kind kind, u64 blocks)
{
	memset(tr, 0, sizeof(*tr));
	tr->kind = kind;
	tr->blocks = blocks;
	if (kind == ZIPF) {
		double sum = 0;

		tr->cdf = malloc(blocks * sizeof(double));
		for (u64 i = 0; i < blocks; i++) {
			sum += 1.0 / pow((double)(i + 1), 0.9);
			tr->cdf[i] = sum;
		}
		for (u64 i = 0; i < blocks; i++)
			tr->cdf[i] /= sum;
	}
}

static u64 trace_next(struct trace *tr)
{
	u64 lo = 0, hi;
	double u;

	switch (tr->kind) {
	case LOOP:
		return tr->pos++ % tr->blocks;
	case UNIFORM:
		return rnd() % tr->blocks;
	case ZIPF:
	default:
		u = (double)(rnd() >> 11) / 9007199254740992.0;
		hi = tr->blocks - 1;
		while (lo < hi) {
			u64 mid = (lo + hi) / 2;

			if (tr->cdf[mid] < u)
				lo = mid + 1;
			else
				hi = mid;
		}
		/* the popular blocks spread over the range */
		return lo * 7919 % tr->blocks;
	}
}

/* ---- reading the kernel's answers ---- */

static long key(const char *status, const char *k)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), " %s=", k);
	p = strstr(status, pat);
	return p ? atol(p + strlen(pat)) : -1;
}

static const char * const est_keys[4] = {
	"est_hit_0_5x", "est_hit_1x", "est_hit_2x", "est_hit_4x",
};

/*
 * A trace through both: warm-up accesses, stats reset, measured ones.
 * Checks every size within tol per mille of the exact LRU.
 */
static void compare(const char *name, enum kind kind, u64 blocks, u32 cache,
		    u64 warm, u64 measured, long tol)
{
	struct vmc_mrc *m = vmc_mrc_create(cache);
	struct trace tr;
	struct exact x;
	char st[512];

	rng_state = 0x9E3779B97F4A7C15ull ^ blocks;
	trace_init(&tr, kind, blocks);
	exact_init(&x, blocks, warm + measured, cache);
	vmc_mrc_enable(m, true);
	for (u64 i = 0; i < warm + measured; i++) {
		u64 b = trace_next(&tr);

		if (i == warm)
			vmc_mrc_reset(m);
		exact_access(&x, b, i >= warm);
		vmc_mrc_access(m, b, false, false);
	}
	vmc_mrc_status(m, st, sizeof(st), " ");
	printf("# %s:%s\n#   exact LRU:", name, st);
	for (int k = 0; k < 4; k++) {
		long e = (long)((x.hits[k] * 1000 + x.reads / 2) / x.reads);
		long got = key(st, est_keys[k]);

		printf(" %ld", e);
		CHECK(labs(got - e) <= tol, "%s: %s=%ld, exact %ld (tolerance %ld)",
		      name, est_keys[k], got, e, tol);
	}
	printf("\n");
	CHECK(key(st, "mrc_reads") == (long)measured, "%s: mrc_reads %ld", name,
	      key(st, "mrc_reads"));
	exact_free(&x);
	free(tr.cdf);
	vmc_mrc_destroy(m);
}

static void result(const char *name)
{
	cases++;
	printf("%sok %d %s\n", failed ? "not " : "", cases, name);
}

static int total_failed;

#define RUN(name, body)                 \
	do {                            \
		failed = 0;             \
		body;                   \
		result(name);           \
		total_failed += failed; \
	} while (0)

static void semantics(void)
{
	struct vmc_mrc *m = vmc_mrc_create(100);
	char st[512], curve[1024];
	long prev = 0;
	int n = 0;

	vmc_mrc_enable(m, true);
	/* 60 blocks read twice: the second pass hits at 1x (100), not 0.5x */
	for (int p = 0; p < 2; p++)
		for (u64 b = 0; b < 60; b++)
			vmc_mrc_access(m, b, false, false);
	vmc_mrc_status(m, st, sizeof(st), " ");
	CHECK(key(st, "est_hit_0_5x") == 0 && key(st, "est_hit_1x") == 500 &&
	      key(st, "mrc_reads") == 120 && key(st, "mrc_sample_ppm") == 1000000,
	      "two passes: %s", st);
	/* reset keeps the recency: a third pass is all hits at 1x */
	vmc_mrc_reset(m);
	for (u64 b = 0; b < 60; b++)
		vmc_mrc_access(m, b, false, false);
	vmc_mrc_status(m, st, sizeof(st), " ");
	CHECK(key(st, "est_hit_1x") == 1000 && key(st, "est_hit_0_5x") == 0 &&
	      key(st, "mrc_reads") == 60,
	      "after reset: %s", st);
	/* writes refresh recency, are not counted */
	vmc_mrc_reset(m);
	for (u64 b = 1000; b < 1060; b++)
		vmc_mrc_access(m, b, true, false);
	for (u64 b = 1000; b < 1060; b++)
		vmc_mrc_access(m, b, false, false);
	vmc_mrc_status(m, st, sizeof(st), " ");
	CHECK(key(st, "est_hit_1x") == 1000 && key(st, "est_hit_0_5x") == 0 &&
	      key(st, "mrc_reads") == 60, "read after write: %s", st);
	/* bypassed reads: counted, never hit, never tracked */
	vmc_mrc_reset(m);
	for (u64 b = 2000; b < 2010; b++)
		vmc_mrc_access(m, b, false, true);
	vmc_mrc_bypassed(m, 30);
	for (u64 b = 2000; b < 2010; b++)
		vmc_mrc_access(m, b, false, false);
	vmc_mrc_status(m, st, sizeof(st), " ");
	CHECK(key(st, "mrc_reads") == 50 && key(st, "est_hit_4x") == 0,
	      "bypass: %s", st);
	/* the curve: 128 rising points */
	vmc_mrc_curve(m, curve, sizeof(curve));
	for (char *p = strtok(curve, " \n"); p; p = strtok(NULL, " \n")) {
		CHECK(atol(p) >= prev && atol(p) <= 1000, "point %d: %s", n, p);
		prev = atol(p);
		n++;
	}
	CHECK(n == VMC_MRC_POINTS, "%d points", n);
	/* off forgets and counts nothing, on starts from nothing */
	vmc_mrc_enable(m, false);
	for (u64 b = 0; b < 50; b++)
		vmc_mrc_access(m, b, false, false);
	vmc_mrc_status(m, st, sizeof(st), " ");
	CHECK(strstr(st, " mrc=off ") && key(st, "mrc_reads") == 0, "off: %s", st);
	vmc_mrc_enable(m, true);
	for (u64 b = 0; b < 50; b++)
		vmc_mrc_access(m, b, false, false);
	vmc_mrc_status(m, st, sizeof(st), " ");
	CHECK(strstr(st, " mrc=on ") && key(st, "mrc_reads") == 50 &&
	      key(st, "est_hit_4x") == 0, "on again: %s", st);
	vmc_mrc_destroy(m);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("KTAP version 1\n1..7\n");
	RUN("semantics: reset, writes, bypass, curve, off/on", semantics());
	RUN("loop over 1500 blocks, cache 2000: exact",
	    compare("loop", LOOP, 1500, 2000, 1500, 3000, 0));
	RUN("loop over 3000 blocks, cache 2000: exact",
	    compare("loop", LOOP, 3000, 2000, 3000, 6000, 0));
	RUN("uniform over 3000 blocks, cache 1000 (all sampled): within 5",
	    compare("uniform", UNIFORM, 3000, 1000, 30000, 60000, 5));
	RUN("uniform over 50000 blocks, cache 10000 (sampled): within 20",
	    compare("uniform", UNIFORM, 50000, 10000, 300000, 600000, 20));
	RUN("zipf 0.9 over 100000 blocks, cache 5000 (sampled): within 25",
	    compare("zipf", ZIPF, 100000, 5000, 300000, 600000, 25));
	RUN("loop over 30000 blocks, cache 10000 (sampled): within 25",
	    compare("loop", LOOP, 30000, 10000, 30000, 60000, 25));
	printf("mrc_model: %d passed, %d failed\n", cases - total_failed,
	       total_failed);
	return total_failed ? 1 : 0;
}
