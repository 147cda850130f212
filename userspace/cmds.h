/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vmcachectl: the sub-commands, and the pieces of them the unit tests call.
 */
#ifndef VMCACHECTL_CMDS_H
#define VMCACHECTL_CMDS_H

#include <stdbool.h>
#include <stdint.h>

#include "status.h"
#include "table.h"

/* each returns the process exit status; argv[0] is "vmcachectl NAME" */
int cmd_create(int argc, char **argv);
int cmd_remove(int argc, char **argv);
int cmd_assemble(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_mrc(int argc, char **argv);
int cmd_watch(int argc, char **argv);
int cmd_set(int argc, char **argv);
int cmd_mode(int argc, char **argv);
int cmd_flush(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_dump(int argc, char **argv);
int cmd_format(int argc, char **argv);
int cmd_writeback_offline(int argc, char **argv);

/* create and assemble */
struct create_req {
	const char *name, *cache, *origin;
	struct vmc_table table;		/* options; devices filled at run */
	bool must_exist, force, dry_run;
};

/* PARSE_RUN or an exit status */
int create_parse(int argc, char **argv, struct create_req *r);
/* checks both devices and creates; prints nothing on success */
int create_run(struct create_req *r);
/* one vmcachetab line: 1 parsed, 0 blank or comment, -1 error in err */
int vmcachetab_parse_line(char *line, struct create_req *r, char *err,
			  size_t errlen);

/* live caches (live.c) */
int vmc_get_status(const char *name, struct vmc_status *st);
/* sends msg (if any), then waits for blocks_dirty=0 with progress */
int vmc_drain(const char *name, const char *msg, double timeout);
/* "[#####-----]  50.0% ..." for a drain; used by vmc_drain */
void drain_line(char *buf, size_t len, uint64_t start, uint64_t dirty,
		uint64_t block_size, double rate, bool bar);

/* offline (cmd_offline.c) */
/* check exit status; with clear, drops needs_check after a pass without errors */
int check_run(const char *dev, bool quiet, bool json, bool clear);

/* writeback-offline (cmd_writeback.c) */
struct wb_req {
	const char *cache, *origin, *export;	/* origin NULL: dry run, export */
	bool dry_run, json, progress, no_progress;
	uint64_t jobs;		/* copies in flight, 0: the default */
	uint64_t commit_every;	/* bytes between commits, 0: the default */
	uint64_t stop_after;	/* test hook: stop (as a crash) after this many writes */
};

int writeback_offline_run(const struct wb_req *r);

#endif
