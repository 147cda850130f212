/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vmcachectl: table-driven command line parsing with getopt_long.  Each
 * command describes its options and positional arguments once; --help is
 * added to every command.
 */
#ifndef VMCACHECTL_ARGS_H
#define VMCACHECTL_ARGS_H

#include <stdbool.h>
#include <stddef.h>

enum opt_type {
	OPT_FLAG,	/* bool */
	OPT_STR,	/* const char * */
	OPT_U64,	/* uint64_t */
	OPT_SECONDS,	/* double */
	OPT_TABLE,	/* struct vmc_table: the value of option key */
	OPT_PAIR,	/* struct vmc_table: key=value, repeatable */
};

struct opt {
	const char *name;
	char short_name;	/* 0: long only */
	enum opt_type type;
	void *dest;
	const char *key;	/* OPT_TABLE */
};

struct cmd_spec {
	const char *name;
	const char *usage;	/* "create NAME --cache DEV ..." plus option lines */
	const struct opt *opts;
	size_t nr_opts;
	const char **pos;	/* positional arguments, in order */
	size_t min_pos, max_pos;
	void (*help_tail)(void);	/* more --help text, or NULL */
};

#define PARSE_RUN (-1)	/* parsed: run the command */

/* PARSE_RUN, EXIT_OK after --help, or EXIT_USAGE after a message */
int parse_args(int argc, char **argv, const struct cmd_spec *spec);
void print_usage(const struct cmd_spec *spec, bool to_stderr);

#endif
