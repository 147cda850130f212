// SPDX-License-Identifier: GPL-2.0
/*
 * vmcachectl set, mode and flush: messages to a live cache.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli.h"
#include "cmds.h"
#include "dm.h"

/* an option that is not online: reload the table with the new value */
static int set_by_reload(const char *name, const char *key, const char *value)
{
	struct vmc_table t;
	char *params, err[200], line[2048];
	uint64_t len;
	int ret;

	if (vmc_dm_table(name, &len, &params))
		return EXIT_FAIL;
	ret = vmc_table_parse(params, len, &t, err, sizeof(err));
	free(params);
	if (ret || vmc_table_set(&t, key, value, err, sizeof(err)) ||
	    vmc_table_params(&t, line, sizeof(line))) {
		vmc_err("%s: cannot rebuild its table: %s", name, err);
		return EXIT_FAIL;
	}
	return vmc_dm_reload(name, len, line) ? EXIT_FAIL : EXIT_OK;
}

int cmd_set(int argc, char **argv)
{
	const char *pos[3] = { NULL };
	const struct cmd_spec spec = {
		"set",
		"set NAME KEY VALUE\n"
		"Change an option of an active cache (the 'set KEY VALUE' message).",
		NULL, 0, pos, 3, 3, vmc_tunables_help,
	};
	const struct vmc_tunable *t;
	char value[64], err[200], msg[160];
	int ret = parse_args(argc, argv, &spec);

	if (ret != PARSE_RUN)
		return ret;
	if (vmc_tunable_check(pos[1], pos[2], value, sizeof(value), err,
			      sizeof(err))) {
		vmc_err("set: %s", err);
		return EXIT_USAGE;
	}
	t = vmc_tunable_find(pos[1]);
	if (t->type == TUN_BLOCK_SIZE) {
		vmc_err("block_size is fixed when a cache is formatted: remove the cache and create it again with --force (its contents are lost)");
		return EXIT_FAIL;
	}
	if (!t->online)
		return set_by_reload(pos[0], pos[1], value);
	snprintf(msg, sizeof(msg), "set %s %s", pos[1], value);
	return vmc_dm_message(pos[0], msg) ? EXIT_FAIL : EXIT_OK;
}

/* NAME [MODE] with --no-wait and --timeout: the commands that may drain */
static int parse_wait(int argc, char **argv, const char *name,
		      const char *usage, const char **pos, size_t npos,
		      bool *no_wait, double *timeout)
{
	const struct opt opts[] = {
		{ "no-wait", 'n', OPT_FLAG, no_wait, NULL },
		{ "timeout", 't', OPT_SECONDS, timeout, NULL },
	};
	const struct cmd_spec spec = {
		name, usage, opts, ARRAY_SIZE(opts), pos, npos, npos, NULL,
	};

	return parse_args(argc, argv, &spec);
}

int cmd_mode(int argc, char **argv)
{
	const char *pos[2] = { NULL };
	bool no_wait = false;
	double timeout = 0;
	struct vmc_status st;
	char mode[32], err[200], msg[64];
	int ret = parse_wait(argc, argv, "mode",
		"mode NAME writethrough|writeback|passthrough [--no-wait] [--timeout S]\n"
		"Switch the cache mode online.  Leaving writeback drains the dirty data;\n"
		"the command shows the drain until blocks_dirty=0.\n"
		"  -n, --no-wait       return at once, the drain goes on in the background\n"
		"  -t, --timeout S     stop waiting after S seconds (exit 3)",
		pos, 2, &no_wait, &timeout);

	if (ret != PARSE_RUN)
		return ret;
	if (vmc_tunable_check("mode", pos[1], mode, sizeof(mode), err,
			      sizeof(err))) {
		vmc_err("mode: %s", err);
		return EXIT_USAGE;
	}
	if (vmc_get_status(pos[0], &st))
		return EXIT_FAIL;
	if (!strcmp(st.mode, mode)) {
		printf("%s: already in %s mode\n", pos[0], mode);
		return EXIT_OK;
	}
	snprintf(msg, sizeof(msg), "mode %s", mode);
	if (strcmp(st.mode, "writeback") || no_wait || !st.blocks_dirty) {
		if (vmc_dm_message(pos[0], msg))
			return EXIT_FAIL;
	} else {
		ret = vmc_drain(pos[0], msg, timeout);
		if (ret != EXIT_OK)
			return ret;
	}
	printf("%s: %s mode (was %s)\n", pos[0], mode, st.mode);
	return EXIT_OK;
}

int cmd_flush(int argc, char **argv)
{
	const char *pos[1] = { NULL };
	bool no_wait = false;
	double timeout = 0;
	int ret = parse_wait(argc, argv, "flush",
		"flush NAME [--timeout S] [--no-wait]\n"
		"Write back every dirty block now and wait until blocks_dirty=0, with a\n"
		"progress bar and ETA on a terminal, a line every 2 s otherwise.\n"
		"  -t, --timeout S     stop waiting after S seconds (exit 3)\n"
		"  -n, --no-wait       send the flush and return",
		pos, 1, &no_wait, &timeout);

	if (ret != PARSE_RUN)
		return ret;
	if (no_wait)
		return vmc_dm_message(pos[0], "flush") ? EXIT_FAIL : EXIT_OK;
	return vmc_drain(pos[0], "flush", timeout);
}
