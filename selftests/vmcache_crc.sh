#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Checksums of dirty data ("data_crc 1"; Documentation/vmcache.rst, "Data
# checksums"):
#
#   dm-vmcache "vc"
#     cache:  dm-delay "dc" (a slow cache write keeps an overwrite in
#             flight) -> dm-linear "cut_c" -> /dev/ram0
#     origin: dm-linear "cut_o" -> /dev/ram1
#
# power_cut freezes cut_c and cut_o and reloads them to drop every later
# write (as vmcache_trust.sh does); reboot puts a new vmcache over what
# they kept.  Data is compared byte for byte.  The last case replays a
# logged workload at its flush points with data_crc 1
# (vmcache_crash_replay.sh, 4 KiB pass, fewer points:
# VMCACHE_CRC_REPLAY_POINTS=<flushes>,<inside>,<subsets>, default 4,1,1,
# within VMCACHE_CRC_REPLAY_BUDGET seconds, default 35: CI stays short).
. "$(dirname "$0")/lib.sh"

require_vmcache
require_cmd dd cmp grep vmcachectl
require_module brd dm-delay dm-flakey
DIR=$(cd "$(dirname "$0")" && pwd)
UNSTABLE=$DIR/tools/unstable-write
[ -x "$UNSTABLE" ] || ktap_skip_all "$UNSTABLE not built (make -C selftests)"

NAME=vc
MIB=64
DEV=/dev/mapper/$NAME
TMP=$(mktemp -d)
cleanup_push "rm -rf $TMP"
WB_HELD="mode writeback writeback_low 100 writeback_high 100 max_dirty_age 0"
SLOW=${VMCACHE_DELAY_SCALE:-1}

setup_brd 2 "$MIB" || ktap_exit_fail_msg "brd"
SECTORS=$(dev_sectors /dev/ram0)

wr() { # <file> <block>: write 4 KiB of <file> at block <block>
	dd if="$1" of="$DEV" bs=4096 seek="$2" count=1 oflag=direct \
		conv=notrunc status=none
}

rd() { # <dev> <block> <out>: read 4 KiB
	dd if="$1" of="$3" bs=4096 skip="$2" count=1 iflag=direct status=none
}

pattern() { # <file> [<KiB>]
	dd if=/dev/urandom of="$1" bs=1K count="${2:-4}" status=none
}

reboot() { # the cache must load over what the devices kept
	stack_down
	stack_up 0 "must_exist 1 $WB_HELD"
}

# refused <reason> <table>: the table is refused, and says why
refused() {
	local out
	if out=$(dmsetup create "$NAME" --table "$2" 2>&1); then
		ktap_print_msg "accepted: $2"
		dm_remove "$NAME"
		return 1
	fi
	grep -qF -- "$1" <<<"$(dmesg | tail -n 5)" || {
		ktap_print_msg "refused without '$1': $out $(dmesg | tail -n 2)"
		return 1
	}
}

ktap_print_header
ktap_set_plan 10
dmesg_mark
START_MARK=$DMESG_MARK

# ---------------------------------------------------------------------
t_format() {
	stack_up 0 "$WB_HELD data_crc 1" blank || return 1
	expect data_crc=1 crc_errors=0 || return 1
	grep -q ' data_crc 1' <<<"$(dmsetup table "$NAME")" || {
		ktap_print_msg "table: $(dmsetup table "$NAME")"
		return 1
	}
	# the format is the cache's: a table without the option keeps it
	stack_down
	stack_up 0 "must_exist 1 $WB_HELD" && expect data_crc=1
}
ktap_test_result "data_crc 1 formats a blank cache with checksums; a reload keeps them" t_format
stack_down

# ---------------------------------------------------------------------
t_refusals() {
	dm_create cut_c "0 $SECTORS linear /dev/ram0 0" &&
		dm_create cut_o "0 $SECTORS linear /dev/ram1 0" &&
		dm_create dc "0 $SECTORS linear /dev/mapper/cut_c 0" || return 1
	refused 'Cache device was formatted with data_crc 1' \
		"$(table_of "data_crc 0")" || return 1
	wipe_dev /dev/ram0 2
	refused 'data_crc needs block_size 4096' \
		"$(table_of "data_crc 1 block_size 65536")" || return 1
	refused 'data_crc must be 0 or 1' "$(table_of "data_crc 2")" || return 1
	# a cache formatted without checksums
	dm_create "$NAME" "$(table_of "$WB_HELD")" && expect data_crc=0 &&
		dm_remove "$NAME" || return 1
	refused 'Cache device was formatted without data_crc' \
		"$(table_of "data_crc 1")"
}
ktap_test_result "data_crc refused on a cache of the other format and with 64 KiB blocks" t_refusals
stack_down

# ---------------------------------------------------------------------
# new blocks (write runs), overwrites of dirty and of clean data
t_roundtrip() {
	local i b
	stack_up 0 "$WB_HELD data_crc 1" blank || return 1
	pattern "$TMP/all" 4096
	dd if="$TMP/all" of="$DEV" bs=64K oflag=direct status=none || return 1
	for i in $(seq 1 32); do
		b=$(((i * 37) % 1024))
		pattern "$TMP/p"
		wr "$TMP/p" "$b" || return 1
		dd if="$TMP/p" of="$TMP/all" bs=4096 seek="$b" conv=notrunc \
			status=none
	done
	drain || return 1
	# overwrites of clean cached blocks, then of dirty ones
	for i in $(seq 1 16); do
		b=$(((i * 61) % 1024))
		pattern "$TMP/p"
		wr "$TMP/p" "$b" && wr "$TMP/p" "$b" || return 1
		dd if="$TMP/p" of="$TMP/all" bs=4096 seek="$b" conv=notrunc \
			status=none
	done
	dd if="$DEV" of="$TMP/r" bs=64K count=64 iflag=direct status=none &&
		compare_bytes "$TMP/r" "$TMP/all" || return 1
	ktap_print_msg "$(status_line)"
	stack_down
	stack_up 0 "must_exist 1 $WB_HELD" || return 1
	dd if="$DEV" of="$TMP/r" bs=64K count=64 iflag=direct status=none &&
		compare_bytes "$TMP/r" "$TMP/all" || return 1
	drain && expect crc_errors=0 data_loss=0 || return 1
	dd if=/dev/mapper/cut_o of="$TMP/r" bs=64K count=64 iflag=direct \
		status=none && compare_bytes "$TMP/r" "$TMP/all"
}
ktap_test_result "writes read back byte for byte, across a reload and on the origin after a drain" t_roundtrip
stack_down

# ---------------------------------------------------------------------
t_unstable() {
	stack_up 0 "$WB_HELD data_crc 1" blank || return 1
	ktap_log_cmd "$UNSTABLE" "$DEV" 2000 32 20 || return 1
	expect crc_errors=0 || return 1
	dd if="$DEV" of="$TMP/r" bs=4096 skip=2000 count=32 iflag=direct \
		status=none || return 1
	drain && expect crc_errors=0 data_loss=0 || return 1
	dd if=/dev/mapper/cut_o of="$TMP/o" bs=4096 skip=2000 count=32 \
		iflag=direct status=none && compare_bytes "$TMP/r" "$TMP/o"
}
ktap_test_result "a writer changing its buffer during the write: no EIO, data is what it held" t_unstable
stack_down

# ---------------------------------------------------------------------
# a dirty block whose data on the cache device is damaged
MARK=vmcache-crc-test-mark-0123456789
t_mismatch_read() {
	local off
	stack_up 0 "$WB_HELD data_crc 1" blank || return 1
	pattern "$TMP/old"
	wr "$TMP/old" 20 && drain || return 1
	pattern "$TMP/new"
	printf '%s' "$MARK" | dd of="$TMP/new" conv=notrunc status=none
	wr "$TMP/new" 20 && msg commit || return 1
	dd if=/dev/ram0 of="$TMP/img" bs=1M iflag=direct status=none
	off=$(grep -obaF "$MARK" "$TMP/img" | head -n 1 | cut -d: -f1)
	[ -n "$off" ] && [ $((off % 4096)) = 0 ] || {
		ktap_print_msg "cached copy not found (offset '$off')"
		return 1
	}
	# sector 3 of the cached block is damaged
	dd if=/dev/zero of=/dev/ram0 bs=512 seek=$((off / 512 + 3)) count=1 \
		oflag=direct conv=notrunc status=none || return 1
	dmesg_mark
	if rd "$DEV" 20 "$TMP/r" 2>/dev/null; then
		ktap_print_msg "the read of the damaged block succeeded"
		return 1
	fi
	[ "$(st crc_errors)" -ge 1 ] || { ktap_print_msg "$(status_line)"; return 1; }
	dmesg_contains "checksum mismatch: origin block 20 " || return 1
	# the sectors that are intact still read
	dd if="$DEV" of="$TMP/s0" bs=512 skip=160 count=3 iflag=direct \
		status=none && compare_bytes "$TMP/s0" "$TMP/new" 1536
}
ktap_test_result "damaged dirty sector: the read fails (EIO), counted, logged with the origin block" t_mismatch_read

t_mismatch_wb() {
	local out rc=0
	# offline first: check names it, writeback-offline refuses it
	stack_down
	out=$(vmcachectl check /dev/ram0 2>&1) || rc=$?
	ktap_print_msg "$out"
	[ "$rc" = 1 ] && grep -q "origin block 20).*fail their checksum" <<<"$out" ||
		return 1
	if out=$(vmcachectl writeback-offline /dev/ram0 /dev/ram1 2>&1); then
		ktap_print_msg "writeback-offline copied damaged data: $out"
		return 1
	fi
	grep -q "fail their checksum" <<<"$out" || { ktap_print_msg "$out"; return 1; }
	rd /dev/ram1 20 "$TMP/o" && compare_bytes "$TMP/o" "$TMP/old" || return 1
	stack_up 0 "must_exist 1 $WB_HELD" || return 1
	# expected on the origin: the new data but sector 3, which keeps the
	# origin's older copy
	cp "$TMP/new" "$TMP/want"
	dd if="$TMP/old" of="$TMP/want" bs=512 skip=3 seek=3 count=1 \
		conv=notrunc status=none
	drain || return 1
	expect blocks_dirty=0 data_loss=1 || return 1
	rd /dev/mapper/cut_o 20 "$TMP/o" && compare_bytes "$TMP/o" "$TMP/want" ||
		return 1
	rd "$DEV" 20 "$TMP/r" && compare_bytes "$TMP/r" "$TMP/want"
}
ktap_test_result "damaged dirty sector: check names it, offline writeback refuses it, writeback ends keeping the origin's older copy" t_mismatch_wb
stack_down

# ---------------------------------------------------------------------
# an overwrite of committed dirty data, cut by a power cut: after the
# commit that records its checksum, before its data lands; and after its
# data landed, before the next commit.  Either version reads back, never
# an error.
t_overwrite_cut() {
	local seq i pid
	stack_up $((2000 * SLOW)) "$WB_HELD data_crc 1" blank || return 1
	pattern "$TMP/a"
	pattern "$TMP/b"
	wr "$TMP/a" 7 && msg commit || return 1
	seq=$(st seq)
	wr "$TMP/b" 7 &
	pid=$!
	# the commit that lets the disk accept b lands, b's data is held
	for ((i = 0; i < 400; i++)); do
		[ "$(st seq)" -gt "$seq" ] && break
		sleep 0.05
	done
	kill -0 "$pid" 2>/dev/null || { ktap_print_msg "overwrite not in flight"; return 1; }
	power_cut || return 1
	wait "$pid"
	reboot || return 1
	rd "$DEV" 7 "$TMP/r" || { ktap_print_msg "read after the cut failed"; return 1; }
	compare_bytes "$TMP/r" "$TMP/a" 2>/dev/null ||
		compare_bytes "$TMP/r" "$TMP/b" || return 1
	expect crc_errors=0 || return 1
	# second cut: the next version's data lands, no commit after it
	pattern "$TMP/c"
	wr "$TMP/c" 7 && power_cut || return 1
	reboot || return 1
	rd "$DEV" 7 "$TMP/r" || { ktap_print_msg "read after the second cut failed"; return 1; }
	compare_bytes "$TMP/r" "$TMP/c" 2>/dev/null ||
		compare_bytes "$TMP/r" "$TMP/a" 2>/dev/null ||
		compare_bytes "$TMP/r" "$TMP/b" || return 1
	expect crc_errors=0 && drain && expect crc_errors=0 data_loss=0
}
ktap_test_result "overwrite of dirty data cut by a power cut: a version reads back, no error" t_overwrite_cut
stack_down

# ---------------------------------------------------------------------
t_check() {
	stack_up 0 "$WB_HELD data_crc 1" blank || return 1
	pattern "$TMP/p" 1024
	dd if="$TMP/p" of="$DEV" bs=4K oflag=direct status=none || return 1
	stack_down
	ktap_log_cmd vmcachectl check /dev/ram0
}
ktap_test_result "vmcachectl check: a data_crc cache with dirty data is clean" t_check
stack_down

# ---------------------------------------------------------------------
# the crash replay machinery with data_crc 1: at every crash point the
# cache loads, reads (checked) never fail and return the flushed data
t_replay() {
	local out rc=0
	rmmod brd 2>/dev/null
	out=$(VMCACHE_REPLAY_OPTS="data_crc 1" VMCACHE_REPLAY_PASSES=4k \
		VMCACHE_REPLAY_POINTS=${VMCACHE_CRC_REPLAY_POINTS:-4,1,1} \
		VMCACHE_REPLAY_BUDGET=${VMCACHE_CRC_REPLAY_BUDGET:-35} \
		"$DIR/vmcache_crash_replay.sh" 2>&1) || rc=$?
	ktap_print_msg "$(grep -v '^KTAP' <<<"$out")"
	[ "$rc" = 0 ]
}
ktap_test_result "crash replay at flush points with data_crc 1" t_replay

DMESG_MARK=$START_MARK
ktap_test_result "kernel log clean" check_dmesg_clean
ktap_finished 10
