#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# A metadata commit holds the cache lock (interrupts off, every bio of the
# cache waiting at map) for one mapping page at a time, not for every page
# it writes: with random writes over a big cache a commit rewrites all of
# its pages, and one hold over them all (a cache of 1M blocks: 2 M
# entries encoded and noted durable) stalled all I/O for as long.
#   1. 32 MiB written (8192 blocks over 17 mapping pages) and fsync'ed:
#      the commit's longest hold (sysfs commit_max_hold) is one page, 510
#      entries.  Before the change: every changed page in one hold.
#   2. The cache loads again (remove, create with must_exist 1): the
#      superblock's counts match what the pages map, 8192 blocks dirty,
#      the data byte for byte.
#   3. Commits while the blocks on their pages change: fio writes 32 MiB
#      of 4 KiB random blocks (crc32c headers) with an fsync every 16
#      writes while writeback cleans (writeback_high 5: urgent); after a
#      remove and create the cache loads, fio verifies every block through
#      it, a drain ends and the origin read directly verifies too.
#
# Devices: cache = brd (/dev/ram0, 48 MiB); origin = memory-backed
# null_blk (128 MiB).
set -euo pipefail
DIR=$(dirname "$0")
# shellcheck source=lib.sh
. "$DIR/lib.sh"

require_vmcache
require_cmd fio dd cmp
require_module null_blk brd

NAME=vmc_hold
DEV=/dev/mapper/$NAME
CACHE=/dev/ram0
NULLB=vmc_hold_nullb
ORIGIN=/dev/$NULLB
SYSFS=/sys/module/dm_vmcache/caches/$NAME
DATA_MIB=32
ENTRIES_PER_PAGE=510
HELD=(writeback_low 100 writeback_high 100 max_dirty_age 0)

tmp=$(mktemp -d)
cleanup_push "rm -rf $tmp"

st() { status_value "$NAME" "$1"; }

create() { # <must_exist 0|1> <option words...>
	local must=$1
	shift
	set -- mode writeback sequential_cutoff 0 must_exist "$must" "$@"
	dm_create "$NAME" "0 $(dev_sectors "$ORIGIN") vmcache $CACHE $ORIGIN $# $*"
}

remove() {
	dm_remove "$NAME" && cleanup_pop
}

# fio_job <device> <options...>: 4 KiB random writes with crc32c headers
# over the second DATA_MIB, each block once; the same seed replays them
fio_job() {
	local dev=$1
	shift
	fio --name=hold --filename="$dev" --direct=1 --ioengine=libaio \
		--rw=randwrite --bs=4k --iodepth=8 --size="${DATA_MIB}M" \
		--offset="${DATA_MIB}M" --verify=crc32c --randseed=11 "$@"
}

ktap_print_header
PLAN=6
ktap_set_plan "$PLAN"
setup_brd 1 48 && setup_null_blk "$NULLB" 128 ||
	ktap_skip_all "cannot set up brd and null_blk"
wipe_dev "$CACHE"
dmesg_mark

# ----------------------------------------------- 1. one page per hold
make_pattern "$tmp/a" "$DATA_MIB"
hold_case() {
	local hold
	create 0 "${HELD[@]}" || return 1
	[ -r "$SYSFS/commit_max_hold" ] || {
		ktap_print_msg "no $SYSFS/commit_max_hold"
		return 1
	}
	dd if="$tmp/a" of="$DEV" bs=1M oflag=direct conv=fsync status=none || return 1
	hold=$(cat "$SYSFS/commit_max_hold")
	ktap_print_msg "commits=$(st commits) blocks_dirty=$(st blocks_dirty) commit_max_hold=$hold entries"
	[ "$hold" -gt 0 ] && [ "$hold" -le "$ENTRIES_PER_PAGE" ]
}
if hold_case; then
	ktap_test_pass "a commit of 17 mapping pages holds the cache lock for one page at a time"
else
	ktap_test_fail "a commit of 17 mapping pages holds the cache lock for one page at a time"
fi

# ----------------------------------------------- 2. it loads again
reload_case() {
	dm_exists "$NAME" && remove
	create 1 "${HELD[@]}" || return 1
	ktap_print_msg "loaded: metadata=$(st metadata) blocks_used=$(st blocks_used) blocks_dirty=$(st blocks_dirty)"
	[ "$(st metadata)" = ok ] && [ "$(st blocks_dirty)" -eq $((DATA_MIB * 256)) ] &&
		dd if="$DEV" of="$tmp/got" bs=1M count="$DATA_MIB" iflag=direct status=none &&
		compare_bytes "$tmp/a" "$tmp/got"
}
if reload_case; then
	ktap_test_pass "the pages committed one per hold load again: counts match, data byte for byte"
else
	ktap_test_fail "the pages committed one per hold load again: counts match, data byte for byte"
fi

# ----------------------------- 3. commits while their pages change
load_case() {
	dm_exists "$NAME" && remove
	create 1 writeback_low 0 writeback_high 5 max_dirty_age 1 || return 1
	fio_job "$DEV" --fsync=16 --do_verify=0 --output="$tmp/fio-w" ||
		{ cat "$tmp/fio-w" >&2; return 1; }
	ktap_print_msg "under load: commits=$(st commits) writeback_done=$(st writeback_done) blocks_dirty=$(st blocks_dirty) commit_max_hold=$(cat "$SYSFS/commit_max_hold")"
	[ "$(cat "$SYSFS/commit_max_hold")" -le "$ENTRIES_PER_PAGE" ]
}
if load_case; then
	ktap_test_pass "fio writes with fsyncs while writeback cleans: still one page per hold"
else
	ktap_test_fail "fio writes with fsyncs while writeback cleans: still one page per hold"
fi

loaded_verify() {
	dm_exists "$NAME" && remove
	create 1 "${HELD[@]}" || return 1
	ktap_print_msg "loaded: metadata=$(st metadata) blocks_used=$(st blocks_used) blocks_dirty=$(st blocks_dirty)"
	[ "$(st metadata)" = ok ] &&
		fio_job "$DEV" --verify_only --output="$tmp/fio-v" ||
		{ cat "$tmp/fio-v" >&2 2>/dev/null; return 1; }
}
if loaded_verify; then
	ktap_test_pass "after the load every block fio wrote verifies through the cache"
else
	ktap_test_fail "after the load every block fio wrote verifies through the cache"
fi

origin_verify() {
	dmsetup message "$NAME" 0 flush || return 1
	local i
	for ((i = 0; i < 600; i++)); do
		[ "$(st blocks_dirty)" -eq 0 ] && [ "$(st flush)" = idle ] && break
		sleep 0.2
	done
	[ "$(st blocks_dirty)" -eq 0 ] || return 1
	remove || return 1
	fio_job "$ORIGIN" --verify_only --output="$tmp/fio-o" ||
		{ cat "$tmp/fio-o" >&2; return 1; }
	compare_bytes "$tmp/a" "$ORIGIN" $((DATA_MIB << 20))
}
if origin_verify; then
	ktap_test_pass "drained: the origin read directly verifies, and holds case 1's data"
else
	ktap_test_fail "drained: the origin read directly verifies, and holds case 1's data"
fi

if check_dmesg_clean; then
	ktap_test_pass "kernel log clean"
else
	ktap_test_fail "kernel log clean"
fi
ktap_finished "$PLAN"
