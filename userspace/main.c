// SPDX-License-Identifier: GPL-2.0
/*
 * vmcachectl: create, tune, watch, flush and check dm-vmcache caches.
 * Sub-commands are a { name, handler } table; each parses its own options.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cmds.h"
#include "dm.h"
#include "vmcache_ondisk.h"

static int cmd_version(int argc, char **argv);
static int cmd_help(int argc, char **argv);

static const struct cmd {
	const char *name;
	int (*handler)(int argc, char **argv);
	const char *summary;
} cmds[] = {
	{ "create", cmd_create, "check two devices and create a cache over them" },
	{ "remove", cmd_remove, "remove a cache, optionally flushing it first" },
	{ "status", cmd_status, "statistics of one or all caches (--json, --prometheus)" },
	{ "set", cmd_set, "change an option of an active cache" },
	{ "mode", cmd_mode, "switch writethrough/writeback/passthrough online" },
	{ "flush", cmd_flush, "write back all dirty data, with progress" },
	{ "watch", cmd_watch, "live rates: IOPS, hit ratio, writeback" },
	{ "mrc", cmd_mrc, "estimated hit ratio at other cache sizes" },
	{ "check", cmd_check, "check a cache device's metadata offline" },
	{ "dump", cmd_dump, "print a cache device's superblock and mappings" },
	{ "format", cmd_format, "write an empty cache to a device" },
	{ "writeback-offline", cmd_writeback_offline,
	  "write dirty data back without the kernel module" },
	{ "assemble", cmd_assemble, "create the caches listed in /etc/vmcachetab" },
	{ "version", cmd_version, "versions of this tool, the format and the kernel" },
	{ "help", cmd_help, "this list" },
};

static int cmd_help(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	printf("Usage: vmcachectl COMMAND [ARGS] (vmcachectl COMMAND --help for details)\n\n");
	for (size_t i = 0; i < ARRAY_SIZE(cmds); i++)
		printf("  %-10s %s\n", cmds[i].name, cmds[i].summary);
	printf("\nSee vmcachectl(8).\n");
	return EXIT_OK;
}

static int cmd_version(int argc, char **argv)
{
	char lib[64], drv[64], tgt[64];

	(void)argc;
	(void)argv;
	vmc_dm_versions(lib, drv, tgt, sizeof(lib));
	printf("vmcachectl %s\n", VMCACHECTL_VERSION);
	printf("on-disk format %d..%d\n", VMC_VERSION_MIN, VMC_VERSION_MAX);
	printf("libdevmapper %s\n", lib);
	printf("device-mapper driver %s\n", drv);
	printf("vmcache target %s\n", tgt);
	return EXIT_OK;
}

int main(int argc, char **argv)
{
	char argv0[64];
	int ret;

	if (argc < 2)
		return cmd_help(argc, argv) ? EXIT_FAIL : EXIT_USAGE;
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
		return cmd_help(argc, argv);
	if (!strcmp(argv[1], "--version"))
		return cmd_version(argc, argv);
	for (size_t i = 0; i < ARRAY_SIZE(cmds); i++) {
		if (strcmp(argv[1], cmds[i].name))
			continue;
		snprintf(argv0, sizeof(argv0), "vmcachectl %s", cmds[i].name);
		argv[1] = argv0;
		vmc_dm_init();
		ret = cmds[i].handler(argc - 1, argv + 1);
		vmc_dm_exit();
		return ret;
	}
	vmc_err("unknown command '%s' ('vmcachectl help' lists them)", argv[1]);
	return EXIT_USAGE;
}
