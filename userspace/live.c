// SPDX-License-Identifier: GPL-2.0
/*
 * vmcachectl: reading a live cache's status, and waiting for a drain.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cmds.h"
#include "dm.h"

#define POLL_SECONDS 0.5
#define PLAIN_EVERY 2.0		/* seconds between lines when not on a tty */
#define STALL_POLLS 10		/* flush=idle and no progress this long: stop */
#define BAR_WIDTH 24

int vmc_get_status(const char *name, struct vmc_status *st)
{
	char *params, err[200];
	uint64_t len;
	int ret;

	if (vmc_dm_status(name, &len, &params))
		return -1;
	ret = vmc_status_parse(params, st, err, sizeof(err));
	if (ret)
		vmc_err("%s: cannot read its status: %s (status: '%s')", name,
			err, params);
	free(params);
	return ret;
}

void drain_line(char *buf, size_t len, uint64_t start, uint64_t dirty,
		uint64_t block_size, double rate, bool bar)
{
	double frac = !dirty ? 1.0 :
		      dirty < start ? 1.0 - (double)dirty / (double)start : 0;
	char left[32], speed[32], eta[32], b[BAR_WIDTH + 1];
	int fill = (int)(frac * BAR_WIDTH);

	memset(b, '#', (size_t)fill);
	memset(b + fill, '-', (size_t)(BAR_WIDTH - fill));
	b[BAR_WIDTH] = '\0';
	fmt_bytes(dirty * block_size, left, sizeof(left));
	fmt_bytes((uint64_t)(rate * (double)block_size), speed, sizeof(speed));
	fmt_duration(rate > 0 ? (double)dirty / rate : -1, eta, sizeof(eta));
	snprintf(buf, len, "%s%s%s%5.1f%%  %" PRIu64 " dirty blocks (%s) left, %s/s, ETA %s",
		 bar ? "[" : "", bar ? b : "", bar ? "] " : "", 100 * frac,
		 dirty, left, speed, eta);
}

/* one poll's verdict: 1 go on, 0 done, or an exit status > 0 */
static int drain_verdict(const char *name, const struct vmc_status *st,
			 int *stalled, uint64_t prev_dirty)
{
	if (!st->blocks_dirty)
		return 0;
	if (!strcmp(st->metadata, "fail")) {
		vmc_err("%s: metadata failed, dirty data cannot be written back ('dmesg | grep vmcache')",
			name);
		return EXIT_FAIL;
	}
	if (!strcmp(st->flush, "idle") && st->blocks_dirty >= prev_dirty) {
		if (++*stalled >= STALL_POLLS) {
			vmc_err("%s: writeback stopped with %" PRIu64
				" dirty blocks (writeback_errors=%" PRIu64
				", origin_errors=%" PRIu64 "; 'dmesg | grep vmcache')",
				name, st->blocks_dirty, st->writeback_errors,
				st->origin_errors);
			return EXIT_FAIL;
		}
	} else {
		*stalled = 0;
	}
	return 1;
}

int vmc_drain(const char *name, const char *msg, double timeout)
{
	bool tty = isatty(STDOUT_FILENO);
	double t0 = now_mono(), last_line = -PLAIN_EVERY, rate = 0, el;
	uint64_t start, done0, prev;
	struct vmc_status st;
	char line[200], dur[32];
	int stalled = 0, v;

	if (vmc_get_status(name, &st) || (msg && vmc_dm_message(name, msg)))
		return EXIT_FAIL;
	start = prev = st.blocks_dirty;
	done0 = st.writeback_done;
	catch_stop_signals();
	for (;;) {
		if (vmc_get_status(name, &st))
			return EXIT_FAIL;
		el = now_mono() - t0;
		if (st.writeback_done < done0)	/* stats reset meanwhile */
			done0 = st.writeback_done;
		if (el > 0)
			rate = (double)(st.writeback_done - done0) / el;
		v = drain_verdict(name, &st, &stalled, prev);
		prev = st.blocks_dirty;
		if (v != 1 || tty || el - last_line >= PLAIN_EVERY) {
			drain_line(line, sizeof(line), start, st.blocks_dirty,
				   st.block_size, rate, tty);
			printf(tty ? "\r%s: %s\033[K" : "%s: %s\n", name, line);
			last_line = el;
		}
		if (v != 1)
			break;
		if (timeout > 0 && el >= timeout) {
			if (tty)
				putchar('\n');
			vmc_err("%s: timed out after %s with %" PRIu64
				" dirty blocks; writeback goes on in the background",
				name, fmt_duration(el, dur, sizeof(dur)), st.blocks_dirty);
			return EXIT_TIMEOUT;
		}
		fflush(stdout);
		if (sleep_or_stop(POLL_SECONDS)) {
			if (tty)
				putchar('\n');
			vmc_err("%s: interrupted with %" PRIu64
				" dirty blocks; writeback goes on in the background",
				name, st.blocks_dirty);
			return EXIT_FAIL;
		}
	}
	if (tty)
		printf("\n");
	if (v)
		return v;
	printf("%s: clean, %" PRIu64 " blocks written back in %s\n", name,
	       st.writeback_done - done0, fmt_duration(el, dur, sizeof(dur)));
	return EXIT_OK;
}
