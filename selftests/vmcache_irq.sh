#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Cache errors completed in hard interrupt context.  brd and dm targets
# complete bios in the submitter's context, where sleeping is allowed; a
# real disk completes them from its interrupt.  Here the cache device is a
# null_blk device completing from an hrtimer (irqmode=2), with bad blocks
# over the cached data, so the cache's completion paths (read-hit retry on
# the origin, the failed cache copy of a writethrough write, the degrade
# decision and its dm event) run in hard IRQ context.  On a kernel with
# DEBUG_ATOMIC_SLEEP (scripts/debug-kernel.sh), anything on those paths
# that may sleep (dm_table_event takes a mutex: issue 9, item 4) is
# reported; on any kernel the data must read back byte for byte.
#
# Devices: cache = null_blk "vmirq_c" (64 MiB, memory backed, timer
# completions); origin = brd /dev/ram0 (64 MiB); vmcache "vmirq",
# writethrough, promote_after 1, sequential_cutoff 0.
. "$(dirname "$0")/lib.sh"

require_vmcache
require_cmd dd cmp
require_module brd null_blk

NAME=vmirq
DEV=/dev/mapper/$NAME
CACHE=/dev/vmirq_c
NB=64				# 4 KiB blocks written and read
TMP=$(mktemp -d)
cleanup_push "rm -rf $TMP"

setup_brd 1 64 || ktap_exit_fail_msg "brd"
setup_null_blk vmirq_c 64 irqmode=2 completion_nsec=50000 ||
	ktap_skip_all "null_blk with timer completions not available"
BADBLOCKS=/sys/kernel/config/nullb/vmirq_c/badblocks
[ -w "$BADBLOCKS" ] || ktap_skip_all "null_blk has no badblocks attribute"
OSZ=$(dev_sectors /dev/ram0)

# bad <+|-> <first sector> <count>: add or clear bad sectors on the cache
bad() {
	echo "$1$2-$(($2 + $3 - 1))" >"$BADBLOCKS"
}

events() {
	dmsetup info -c --noheadings -o events "$NAME"
}

ktap_print_header
ktap_set_plan 4
dmesg_mark

wipe_dev "$CACHE" 2
dd if=/dev/urandom of="$TMP/old" bs=4096 count="$NB" status=none
dd if=/dev/urandom of="$TMP/new" bs=4096 count="$NB" status=none
dm_create "$NAME" "0 $OSZ vmcache $CACHE /dev/ram0 6 mode writethrough promote_after 1 sequential_cutoff 0" ||
	ktap_exit_fail_msg "cannot create $NAME"
DS=$((($(st metadata_total) * 8 + 2047) / 2048 * 2048))

# [1] read hits failing in IRQ context: served from the origin, and the
# eighth error in a row degrades the cache (its dm event from a work item)
t_read_hits() {
	local ev0 ev i
	dd if="$TMP/old" of="$DEV" bs=4096 oflag=direct status=none || return 1
	expect blocks_used="$NB" blocks_dirty=0 || return 1
	ev0=$(events)
	bad + "$DS" $((NB * 8))
	dd if="$DEV" of="$TMP/r" bs=4096 count="$NB" iflag=direct status=none ||
		return 1
	compare_bytes "$TMP/r" "$TMP/old" || return 1
	expect degraded=1 || return 1
	[ "$(st cache_errors)" -ge 8 ] || {
		ktap_print_msg "cache_errors=$(st cache_errors), expected >= 8"
		return 1
	}
	# the event is raised by a work item: give it a moment
	for ((i = 0; i < 50; i++)); do
		ev=$(events)
		[ "$ev" -gt "$ev0" ] && return 0
		sleep 0.1
	done
	ktap_print_msg "dm event number stayed at $ev0"
	return 1
}
ktap_test_result "read hits failing in IRQ context: origin data, degraded" t_read_hits

# [2] writes over cached blocks whose cache copy fails in IRQ context:
# acknowledged, on the origin, and never read back from the failed copy
t_writes() {
	dd if="$TMP/new" of="$DEV" bs=4096 oflag=direct status=none || return 1
	dd if="$DEV" of="$TMP/r" bs=4096 count="$NB" iflag=direct status=none &&
		compare_bytes "$TMP/r" "$TMP/new" || return 1
	dd if=/dev/ram0 of="$TMP/r" bs=4096 count="$NB" iflag=direct status=none &&
		compare_bytes "$TMP/r" "$TMP/new"
}
ktap_test_result "writes over failing cache copies reach the origin" t_writes

# [3] healed: every block reads the newest data, a reload loads the cache
t_healed() {
	local tbl
	bad - "$DS" $((NB * 8))
	tbl=$(dmsetup table "$NAME") || return 1
	dmsetup reload "$NAME" --table "$tbl" && dmsetup resume "$NAME" || return 1
	expect degraded=0 || return 1
	dd if="$DEV" of="$TMP/r" bs=4096 count="$NB" iflag=direct status=none &&
		compare_bytes "$TMP/r" "$TMP/new" || return 1
	dd if="$DEV" of="$TMP/r" bs=4096 count="$NB" iflag=direct status=none &&
		compare_bytes "$TMP/r" "$TMP/new"
}
ktap_test_result "after the heal and a reload the newest data reads back" t_healed

dm_remove "$NAME" && cleanup_pop
ktap_test_result "kernel log clean" check_dmesg_clean
ktap_finished 4
