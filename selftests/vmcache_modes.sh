#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# dm-vmcache data integrity in each mode (writethrough, writeback,
# passthrough) over a cache smaller than the working set, so that eviction
# (and, in writeback, writeback under pressure and bypass of a cache full of
# dirty data) runs: fio random and sequential writes verified with crc32c
# through the device, a sequential stream that bypasses the cache, a
# re-verify after "invalidate", 3.5 KiB overwrites straddling blocks (in
# writeback racing background writeback); then flush, remove, and the
# origin checked directly (fio verify on the origin itself, the whole
# device byte for byte).  Then stale-data checks: a block cached in
# writethrough or writeback, overwritten in passthrough, reads back the new
# data in every mode; discards (blkdiscard) and invalidate never leave a
# stale copy.  Then fio overwrites verified across online mode switches and
# a live table reload, and an origin whose size is not a multiple of the
# block size (64 KiB blocks) written, reloaded, drained and checked.
#
# Devices: cache = brd (/dev/ram0, 16 MiB); origin = memory-backed null_blk
# (64 MiB, 512 B sectors, discard on); fio working set 40 MiB, pattern
# 8 MiB at 48 MiB.
set -euo pipefail
DIR=$(dirname "$0")
# shellcheck source=lib.sh
. "$DIR/lib.sh"

require_vmcache
require_cmd fio dd cmp md5sum blkdiscard
require_module null_blk brd

CACHE_MIB=16
ORIGIN_MIB=64
WS_MIB=40
PAT_OFF_MIB=48
PAT_MIB=8
NAME=vmc_modes
DEV=/dev/mapper/$NAME
CACHE=/dev/ram0
NULLB=vmc_modes_nullb
ORIGIN=/dev/$NULLB

tmp=$(mktemp -d)
cleanup_push "rm -rf $tmp"

# ------------------------------------------------------------ helpers

create() { # <options...>
	wipe_dev "$CACHE" 2
	dm_create "$NAME" "0 $OSZ vmcache $CACHE $ORIGIN $*"
}

remove() {
	dm_remove "$NAME" && cleanup_pop && ! dm_exists "$NAME" &&
		holders_empty "$CACHE" && holders_empty "$ORIGIN"
}

# fio_job <device> <name> <rw> <bs> [extra fio options]: the working set
# written and verified with crc32c
fio_job() {
	local dev=$1 name=$2 rw=$3 bs=$4
	shift 4
	fio --name="$name" --filename="$dev" --rw="$rw" --bs="$bs" \
		--size=$((WS_MIB << 20)) --ioengine=libaio --iodepth=8 --direct=1 \
		--verify=crc32c --do_verify=1 --verify_fatal=1 --invalidate=0 \
		--output-format=terse --output=/dev/null "$@"
}

log_status() {
	ktap_print_msg "status: $(status_line)"
}

# the cached modes evict (the working set is larger than the cache);
# passthrough caches nothing
check_eviction() { # <mode>
	log_status
	if [ "$1" = passthrough ]; then
		[ "$(st blocks_used)" = 0 ] && [ "$(st promotions)" = 0 ] &&
			[ "$(st demotions)" = 0 ]
	else
		[ "$(st demotions)" -gt 0 ]
	fi
}

pattern_write() {
	dd if="$tmp/pattern" of="$DEV" bs=1M seek="$PAT_OFF_MIB" oflag=direct conv=fsync status=none
}

pattern_check() { # <device>
	dd if="$1" bs=1M skip="$PAT_OFF_MIB" count="$PAT_MIB" iflag=direct status=none >"$tmp/back" &&
	compare_bytes "$tmp/pattern" "$tmp/back"
}

pattern_write_check() {
	pattern_write && pattern_check "$DEV"
}

reverify() { # <mode>
	msg invalidate && fio_job "$DEV" "seqb-$1" write 64k --verify_only
}

# Units of 3.5 KiB (7 sectors: never block aligned, so partial blocks and
# sub-block masks) overwritten at random, in flight 16 at a time (never two
# on the same unit); in writeback, writeback runs all along (low watermark
# 0, age 1 s) and races the overwrites.  fio verifies the last write of
# each unit.
overwrite_race() { # <mode>
	if [ "$1" = writeback ]; then
		msg set writeback_low 0 && msg set max_dirty_age 1 || return 1
	fi
	fio --name="race-$1" --filename="$DEV" --rw=randwrite --bs=3584 \
		--size=$((24 << 20)) --io_size=$((48 << 20)) --norandommap \
		--serialize_overlap=1 --ioengine=libaio --iodepth=16 --direct=1 \
		--verify=crc32c --do_verify=1 --verify_fatal=1 --invalidate=0 \
		--randrepeat=0 --output-format=terse --output=/dev/null || return 1
	if [ "$1" = writeback ]; then
		msg set max_dirty_age 30 && msg set writeback_low 10
	fi
}

whole_md5() { # <device>
	dd if="$1" bs=1M iflag=direct status=none | md5sum | cut -d' ' -f1
}

# --------------------------------------------------- per-mode sequence

run_mode() {
	local mode=$1 sum opts
	opts="4 mode $mode sequential_cutoff 1024"
	local d
	if ! create "$opts"; then
		ktap_test_fail "$mode: create"
		for d in "fio random write" "fio sequential write" "fio sequential bypass" \
			 "re-verify after invalidate" "overwrites" "eviction" "pattern" "drain" "remove" \
			 "origin verify" "origin pattern" "origin whole" "kernel log"; do
			ktap_test_skip "$mode: $d" "create failed"
		done
		return
	fi
	dmesg_mark
	ktap_test_pass "$mode: create over a blank ${CACHE_MIB} MiB cache"
	ktap_test_result "$mode: fio random 4 KiB writes over $WS_MIB MiB, crc32c verify" \
		fio_job "$DEV" "rand-$mode" randwrite 4k --randrepeat=0
	msg set sequential_cutoff 0
	ktap_test_result "$mode: fio sequential 64 KiB writes, cutoff 0 (all through the cache), verify" \
		fio_job "$DEV" "seq-$mode" write 64k --randrepeat=0
	ktap_test_result "$mode: fio overwrites: random 3.5 KiB writes straddling blocks, each unit ~2 times, iodepth 16, verify" \
		overwrite_race "$mode"
	msg set sequential_cutoff 1024
	ktap_test_result "$mode: fio sequential writes, cutoff 1 MiB (stream bypasses), verify" \
		fio_job "$DEV" "seqb-$mode" write 64k
	ktap_test_result "$mode: invalidate, then the sequential data verified again" \
		reverify "$mode"
	ktap_test_result "$mode: counters: $( [ "$mode" = passthrough ] && echo "nothing cached" || echo "blocks evicted (demotions > 0)")" \
		check_eviction "$mode"
	ktap_test_result "$mode: $PAT_MIB MiB pattern written (fsync) and read back" \
		pattern_write_check
	if [ "$mode" = writeback ]; then
		ktap_test_result "$mode: flush message drains every dirty block" drain
	else
		ktap_test_result "$mode: nothing dirty" test "$(st blocks_dirty)" = 0
	fi
	sum=$(whole_md5 "$DEV")
	log_status
	ktap_test_result "$mode: remove, devices released" remove
	ktap_test_result "$mode: origin: fio crc32c verify of the sequential data directly on the origin" \
		fio_job "$ORIGIN" "seqb-$mode" write 64k --verify_only
	ktap_test_result "$mode: origin: pattern byte for byte" pattern_check "$ORIGIN"
	ktap_test_result "$mode: origin: all $ORIGIN_MIB MiB identical to what the device returned" \
		test "$(whole_md5 "$ORIGIN")" = "$sum"
	ktap_test_result "$mode: kernel log clean" check_dmesg_clean
}

# ------------------------------------------------------------ stale data

# 16 blocks of 4 KiB at block <b>, data <file>
put() { # <block> <file> [count]
	dd if="$2" of="$DEV" bs=4k seek="$1" count="${3:-16}" oflag=direct status=none
}

# get <device> <block> [count]: to stdout
get() {
	dd if="$1" bs=4k skip="$2" count="${3:-16}" iflag=direct status=none
}

same() { # <block> <file> [count] [device]: the device returns the file
	get "${4:-$DEV}" "$1" "${3:-16}" >"$tmp/got" &&
	compare_bytes "$tmp/got" "$2" $((${3:-16} * 4096))
}

# A cached (and read: a hit), switch to passthrough, write B: B reads back
stale_passthrough() { # <mode>
	put 1000 "$tmp/A" && same 1000 "$tmp/A" || return 1
	[ "$(st blocks_used)" -ge 16 ] || { ktap_print_msg "A not cached: $(status_line)"; return 1; }
	msg mode passthrough && put 1000 "$tmp/B" && same 1000 "$tmp/B"
}

# back to the starting mode: still B, in the cache and (drained) on origin
stale_back() { # <mode>
	msg mode "$1" && same 1000 "$tmp/B" && get "$DEV" 1000 >/dev/null &&
	same 1000 "$tmp/B" || return 1
	[ "$1" = writeback ] && { drain || return 1; }
	same 1000 "$tmp/B" 16 "$ORIGIN"
}

# C cached (dirty in writeback), discarded: the device returns what the
# origin holds; D over the first half reads back, the rest still matches
# the origin, also after a drain
stale_discard() { # <mode>
	local out
	put 2000 "$tmp/C" && same 2000 "$tmp/C" || return 1
	out=$(blkdiscard -o $((2000 * 4096)) -l $((16 * 4096)) "$DEV" 2>&1) || {
		ktap_print_msg "blkdiscard: $out"
		ktap_print_msg "discard limits: $(cat "$(sysfs_block "$DEV")/queue/discard_max_bytes") bytes (origin $(cat "/sys/block/$NULLB/queue/discard_max_bytes"))"
		return 1
	}
	get "$ORIGIN" 2000 >"$tmp/o" && same 2000 "$tmp/o" || {
		ktap_print_msg "after the discard the device and the origin differ"
		return 1
	}
	put 2000 "$tmp/D" 8 && same 2000 "$tmp/D" 8 || return 1
	[ "$1" = writeback ] && { drain || return 1; }
	get "$ORIGIN" 2000 >"$tmp/o" && same 2000 "$tmp/o" &&
		same 2000 "$tmp/D" 8 "$ORIGIN"
}

# E cached, invalidate: only dirty blocks stay; E reads back
stale_invalidate() { # <mode>
	put 3000 "$tmp/E" && same 3000 "$tmp/E" && msg invalidate || return 1
	if [ "$(st blocks_used)" != "$(st blocks_dirty)" ]; then
		ktap_print_msg "after invalidate: $(status_line)"
		return 1
	fi
	same 3000 "$tmp/E" && get "$DEV" 3000 >/dev/null && same 3000 "$tmp/E"
}

stale_origin() {
	same 1000 "$tmp/B" 16 "$ORIGIN" && same 2000 "$tmp/D" 8 "$ORIGIN" &&
		same 3000 "$tmp/E" 16 "$ORIGIN" && check_dmesg_clean
}

run_stale() {
	local mode=$1 opts d
	opts="2 mode $mode"
	[ "$mode" = writeback ] && opts="8 mode writeback writeback_low 100 writeback_high 100 max_dirty_age 0"
	if ! create "$opts"; then
		ktap_test_fail "stale ($mode): create"
		for d in passthrough back discard invalidate remove origin; do
			ktap_test_skip "stale ($mode): $d" "create failed"
		done
		return
	fi
	dmesg_mark
	ktap_test_pass "stale ($mode): create"
	ktap_test_result "stale ($mode): A cached, mode passthrough, B written: B reads back" stale_passthrough "$mode"
	ktap_test_result "stale ($mode): back to $mode: B on the device and the origin" stale_back "$mode"
	ktap_test_result "stale ($mode): discard of cached blocks, partial rewrite: device agrees with the origin" stale_discard "$mode"
	ktap_test_result "stale ($mode): invalidate keeps only dirty blocks, data reads back" stale_invalidate "$mode"
	[ "$mode" = writeback ] && drain >/dev/null
	ktap_test_result "stale ($mode): remove" remove
	ktap_test_result "stale ($mode): origin holds B, D and E; kernel log clean" stale_origin
}

# ------------------------------------------- live changes under load

# fio overwrites 3.5 KiB units of 8 MiB for 6 s (verify at the end) while the mode
# goes writethrough, passthrough, writeback, and the table is reloaded live
# (dmsetup reload of the printed line + resume)
live_changes() {
	local pid rc=0 m t
	fio --name=live --filename="$DEV" --rw=randwrite --bs=3584 \
		--size=$((8 << 20)) --time_based --runtime=6 --norandommap \
		--serialize_overlap=1 --ioengine=libaio --iodepth=16 --direct=1 \
		--verify=crc32c --do_verify=1 --verify_fatal=1 --invalidate=0 \
		--randrepeat=0 --output="$tmp/live.out" &
	pid=$!
	for m in writethrough passthrough writeback reload; do
		sleep 1
		if [ "$m" = reload ]; then
			t=$(dmsetup table "$NAME")
			dmsetup reload "$NAME" --table "$t" && dmsetup resume "$NAME" ||
				{ ktap_print_msg "live reload failed"; rc=1; }
		else
			msg mode "$m" || { ktap_print_msg "mode $m refused"; rc=1; }
		fi
		ktap_print_msg "$m: $(st blocks_dirty) dirty, flush=$(st flush)"
	done
	sleep 0.5
	ktap_print_msg "at the end: $(st blocks_dirty) dirty, flush=$(st flush)"
	wait "$pid" || { ktap_print_msg "fio: $(grep -iE 'verify|err' "$tmp/live.out" | head -n 5)"; rc=1; }
	return "$rc"
}

expect_md_ok() {
	[ "$(st metadata)" = ok ] && [ "$(st degraded)" = 0 ] ||
		{ log_status; return 1; }
}

run_live() {
	local sum=
	if ! create "8 mode writeback writeback_low 100 writeback_high 100 max_dirty_age 0"; then
		ktap_test_fail "live: create"
		ktap_test_skip "live: fio across mode switches and a live reload" "create failed"
		ktap_test_skip "live: drained, origin identical" "create failed"
		return
	fi
	dmesg_mark
	ktap_test_pass "live: create (writeback)"
	ktap_test_result "live: fio overwrites verified across writethrough, passthrough, writeback and a live reload" live_changes
	if expect_md_ok && drain >/dev/null; then
		sum=$(whole_md5 "$DEV")
	fi
	if [ -n "$sum" ] && remove && [ "$(whole_md5 "$ORIGIN")" = "$sum" ] && check_dmesg_clean; then
		ktap_test_pass "live: metadata ok, drained, removed: origin identical to the device; kernel log clean"
	else
		ktap_test_fail "live: metadata ok, drained, removed: origin identical to the device; kernel log clean"
		dm_exists "$NAME" && remove
	fi
}

# ------------------------------------------------ origin not block aligned

# 8 MiB + 1.5 KiB: 129 blocks, about half of the 240-block cache.  Not
# more than the cache: at 100 % dirty writeback runs even with the
# watermarks at 100, and the recreated cache would clean blocks while
# the test reads its counts.
ODD_SECTORS=$((8 * 2048 + 3))

odd_write() {
	dd if="$tmp/odd" of="$DEV" bs=64k oflag=direct conv=fsync status=none &&
	odd_same "$DEV"
}

odd_same() { # <device>
	dd if="$1" bs=64k iflag=direct status=none >"$tmp/odd.back" &&
	compare_bytes "$tmp/odd.back" "$tmp/odd"
}

ODD_OPTS="10 block_size 65536 mode writeback writeback_low 100 writeback_high 100 max_dirty_age 0"

run_odd() {
	local o=/dev/mapper/vmc_odd_origin used dirty d
	if ! setup_linear vmc_odd_origin "$ORIGIN" "$ODD_SECTORS" ||
	   ! wipe_dev "$CACHE" 2 ||
	   ! dm_create "$NAME" "0 $ODD_SECTORS vmcache $CACHE $o $ODD_OPTS"; then
		ktap_test_fail "odd origin: create"
		for d in write reload origin; do
			ktap_test_skip "odd origin: $d" "create failed"
		done
		return
	fi
	dmesg_mark
	ktap_test_pass "odd origin ($ODD_SECTORS sectors, 64 KiB blocks): create"
	head -c $((ODD_SECTORS * 512)) /dev/urandom >"$tmp/odd"
	ktap_test_result "odd origin: the whole device written (writeback, fsync) and read back" odd_write
	used=$(st blocks_used)
	dirty=$(st blocks_dirty)
	if dm_remove "$NAME" && cleanup_pop && dm_create "$NAME" "0 $ODD_SECTORS vmcache $CACHE $o $ODD_OPTS" &&
	   [ "$(st blocks_used)" = "$used" ] && [ "$(st blocks_dirty)" = "$dirty" ] &&
	   odd_same "$DEV"; then
		ktap_test_pass "odd origin: remove and recreate: same counts ($used used, $dirty dirty), same data"
	else
		ktap_print_msg "before: $used used, $dirty dirty; after: $(dm_exists "$NAME" && status_line)"
		ktap_test_fail "odd origin: remove and recreate: same counts ($used used, $dirty dirty), same data"
	fi
	if dm_exists "$NAME" && drain >/dev/null && dm_remove "$NAME" && cleanup_pop && odd_same "$o" && check_dmesg_clean; then
		ktap_test_pass "odd origin: drained and removed: the origin holds every byte; kernel log clean"
	else
		ktap_test_fail "odd origin: drained and removed: the origin holds every byte; kernel log clean"
		dm_exists "$NAME" && dm_remove "$NAME" && cleanup_pop
	fi
	dm_remove vmc_odd_origin && cleanup_pop
}

# ---------------------------------------------------------------- main

setup_brd 1 "$CACHE_MIB" && setup_null_blk "$NULLB" "$ORIGIN_MIB" blocksize=512 discard=1 ||
	ktap_skip_all "cannot set up brd/null_blk"
OSZ=$(dev_sectors "$ORIGIN")
make_pattern "$tmp/pattern" "$PAT_MIB"
for f in A B C D E; do
	dd if=/dev/urandom of="$tmp/$f" bs=4k count=16 status=none
done

MODES=(writethrough writeback passthrough)
STALE=(writethrough writeback)
PLAN=$((14 * ${#MODES[@]} + 7 * ${#STALE[@]} + 3 + 4))
ktap_print_header
ktap_set_plan "$PLAN"

for mode in "${MODES[@]}"; do
	t0=$(date +%s)
	run_mode "$mode"
	ktap_print_msg "$mode: $(($(date +%s) - t0)) s"
done
for mode in "${STALE[@]}"; do
	run_stale "$mode"
done
run_live
run_odd

ktap_finished "$PLAN"
