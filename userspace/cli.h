/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vmcachectl: messages, exit codes, number and size parsing, human units,
 * clocks.  Everything here is free of device-mapper and on-disk knowledge.
 */
#ifndef VMCACHECTL_CLI_H
#define VMCACHECTL_CLI_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VMCACHECTL_VERSION "0.1"

/* Exit codes of every command but check (see vmcachectl.8, EXIT STATUS). */
#define EXIT_OK		0
#define EXIT_FAIL	1	/* the operation failed, nothing was changed */
#define EXIT_USAGE	2	/* bad command line */
#define EXIT_TIMEOUT	3	/* a wait (--timeout) expired */

/* Exit codes of check, like fsck. */
#define CHECK_CLEAN	0
#define CHECK_WARNINGS	1	/* usable; the kernel repairs on next commit */
#define CHECK_CORRUPT	2
#define CHECK_OPERROR	8	/* usage or operational error: nothing checked */

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* "vmcachectl: <message>" on stderr; the text is kept for --json errors. */
void vmc_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void vmc_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *vmc_last_error(void);
void vmc_clear_error(void);
/* print {"error": <last error>} on stdout, for commands run with --json */
void vmc_json_error(void);

/* Parsers return 0 or -1; they accept the whole string or nothing. */
int parse_u64(const char *s, uint64_t *v);
/* bytes with an optional binary suffix: 4096, 4k, 4K, 4KiB, 1m, 2G, 8s (sectors) */
int parse_size(const char *s, uint64_t *bytes);
/* seconds, decimals allowed: 0.5, 2, 1.25 */
int parse_seconds(const char *s, double *secs);

/* "1.50 GiB", "512 B"; returns buf */
const char *fmt_bytes(uint64_t bytes, char *buf, size_t len);
/* "1:02:03" or "2:03"; "?" when unknown (negative) */
const char *fmt_duration(double secs, char *buf, size_t len);

double now_mono(void);
/* sleeps, returns early (true) when a SIGINT/SIGTERM arrived */
bool sleep_or_stop(double secs);
bool stop_requested(void);
/* installs the SIGINT/SIGTERM handler used by sleep_or_stop */
void catch_stop_signals(void);

/* getopt_long helper: resets getopt for a sub-command's argv */
void getopt_reset(void);

#endif
