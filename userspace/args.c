// SPDX-License-Identifier: GPL-2.0
/*
 * vmcachectl: command line parsing shared by every command.
 */
#include "args.h"

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "table.h"

#define MAX_OPTS 16

void print_usage(const struct cmd_spec *spec, bool to_stderr)
{
	fprintf(to_stderr ? stderr : stdout, "Usage: vmcachectl %s\n", spec->usage);
}

static int bad_value(const struct cmd_spec *spec, const struct opt *o,
		     const char *arg, const char *what)
{
	vmc_err("%s: --%s '%s': %s", spec->name, o->name, arg, what);
	return -1;
}

static int set_opt(const struct cmd_spec *spec, const struct opt *o,
		   const char *arg)
{
	char err[200];

	switch (o->type) {
	case OPT_FLAG:
		*(bool *)o->dest = true;
		return 0;
	case OPT_STR:
		*(const char **)o->dest = arg;
		return 0;
	case OPT_U64:
		return parse_u64(arg, o->dest) ?
		       bad_value(spec, o, arg, "not a whole number") : 0;
	case OPT_SECONDS:
		return parse_seconds(arg, o->dest) ?
		       bad_value(spec, o, arg, "not a number of seconds") : 0;
	case OPT_TABLE:
		if (vmc_table_set(o->dest, o->key, arg, err, sizeof(err)))
			return bad_value(spec, o, arg, err);
		return 0;
	case OPT_PAIR:
		if (vmc_table_set_pair(o->dest, arg, err, sizeof(err)))
			return bad_value(spec, o, arg, err);
		return 0;
	}
	return -1;
}

static int usage_error(const struct cmd_spec *spec)
{
	print_usage(spec, true);
	fprintf(stderr, "Try 'vmcachectl %s --help'.\n", spec->name);
	return EXIT_USAGE;
}

int parse_args(int argc, char **argv, const struct cmd_spec *spec)
{
	struct option lo[MAX_OPTS + 2];
	char so[3 * MAX_OPTS + 4] = ":h";
	size_t n = 0, npos;
	int c, idx;

	for (size_t i = 0; i < spec->nr_opts && i < MAX_OPTS; i++, n++) {
		const struct opt *o = &spec->opts[i];
		char s[4] = { o->short_name, ':', 0 };

		lo[n] = (struct option){ o->name,
			o->type == OPT_FLAG ? no_argument : required_argument,
			NULL, 0x100 + (int)i };
		if (o->short_name) {
			if (o->type == OPT_FLAG)
				s[1] = 0;
			strcat(so, s);
		}
	}
	lo[n++] = (struct option){ "help", no_argument, NULL, 'h' };
	lo[n] = (struct option){ NULL, 0, NULL, 0 };

	getopt_reset();
	opterr = 0;	/* our own messages */
	while ((c = getopt_long(argc, argv, so, lo, &idx)) != -1) {
		const struct opt *o = NULL;

		if (c == 'h') {
			print_usage(spec, false);
			if (spec->help_tail)
				spec->help_tail();
			return EXIT_OK;
		}
		if (c == '?' || c == ':') {
			if (optopt && optopt < 0x100)
				vmc_err("%s: %s -%c", spec->name, c == ':' ?
					"missing value for" : "unknown option", optopt);
			else
				vmc_err("%s: %s '%s'", spec->name, c == ':' ?
					"missing value for" : "unknown or ambiguous option",
					argv[optind - 1]);
			return usage_error(spec);
		}
		if (c >= 0x100)
			o = &spec->opts[c - 0x100];
		else
			for (size_t i = 0; i < spec->nr_opts; i++)
				if (spec->opts[i].short_name == c)
					o = &spec->opts[i];
		if (!o || set_opt(spec, o, optarg))
			return usage_error(spec);
	}
	npos = (size_t)(argc - optind);
	if (npos < spec->min_pos || npos > spec->max_pos) {
		vmc_err("%s: %s arguments", spec->name,
			npos < spec->min_pos ? "missing" : "too many");
		return usage_error(spec);
	}
	for (size_t i = 0; i < spec->max_pos; i++)
		spec->pos[i] = i < npos ? argv[optind + (int)i] : NULL;
	return PARSE_RUN;
}
