#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# dm-vmcache: I/O reaches the devices in runs, not block by block (issue 10).
# Counts bios at the origin (/sys/block/<origin>/stat: requests plus the
# bios merged into them), never times:
#  1. writeback merges by origin offset alone: 2048 blocks contiguous on
#     the origin, written in a random order (so scattered on the cache),
#     go back with at most one origin write per 8 blocks; the origin then
#     holds every block (fio crc32c verify on the origin itself);
#  2. a sequential read stream over a region with scattered dirty blocks
#     (one in 16) reads the origin once per 1 MiB bio (past the first
#     512 KiB, read block by block before the stream is detected), and
#     returns the dirty data from the cache byte for byte (cmp against the
#     expected image), with writeback held off so the origin is stale;
#  3. the same stream with the cache device failing (dm-flakey under the
#     cache, down): the read fails rather than return the origin's stale
#     data;
#  4. fsyncs on a writeback cache whose origin received no write since
#     its last flush send no flush to the origin.
#
# Devices: cache = brd (/dev/ram0, 64 MiB) under a dm-linear (swapped to
# flakey in case 3); origin = memory-backed null_blk (256 MiB, 4 KiB
# sectors, scheduler none).
set -euo pipefail
DIR=$(dirname "$0")
# shellcheck source=lib.sh
. "$DIR/lib.sh"

require_vmcache
require_cmd fio cmp dd
require_module brd null_blk dm-flakey

CACHE_MIB=64
ORIGIN_MIB=256
NULLB=vmc_str_o
ORIGIN=/dev/$NULLB
CACHE=/dev/mapper/vmc_str_c
NAME=vmc_str
DEV=/dev/mapper/$NAME
HOLD=(writeback_low 100 writeback_high 100 max_dirty_age 0)

tmp=$(mktemp -d)
cleanup_push "rm -rf $tmp"

# bios that reached the origin: <reads|writes|flushes>
obios() {
	local f
	read -r -a f <"/sys/block/$NULLB/stat"
	case $1 in
	reads) echo $((f[0] + f[1])) ;;
	writes) echo $((f[4] + f[5])) ;;
	flushes) echo "${f[15]:-0}" ;;
	esac
}

create() {
	local opts=("$@")
	dmsetup create "$NAME" --table \
		"0 $(dev_sectors "$ORIGIN") vmcache $CACHE $ORIGIN ${#opts[@]} ${opts[*]}"
	wait_for_dev "$DEV"
}

destroy() {
	dm_remove "$NAME"
}

ktap_print_header
ktap_set_plan 7

setup_brd 1 "$CACHE_MIB" || ktap_exit_fail_msg "brd"
setup_null_blk "$NULLB" "$ORIGIN_MIB" || ktap_exit_fail_msg "null_blk"
echo none >"/sys/block/$NULLB/queue/scheduler" 2>/dev/null || true
setup_linear vmc_str_c /dev/ram0 || ktap_exit_fail_msg "dm-linear"
wipe_dev /dev/ram0 1
cleanup_push "dmsetup remove $NAME 2>/dev/null || true"

# ------------------------------------------------- 1. writeback merges
create mode writeback "${HOLD[@]}" sequential_cutoff 0
fio --name=scatter --filename="$DEV" --direct=1 --rw=randwrite --bs=4k \
	--size=8m --iodepth=1 --ioengine=psync --randrepeat=1 \
	--verify=crc32c --do_verify=0 --output="$tmp/fio1" >/dev/null
dirty=$(st blocks_dirty)
w0=$(obios writes)
drain
w1=$(obios writes)
writes=$((w1 - w0))
ktap_print_msg "2048 blocks written back with $writes origin writes ($dirty were dirty)"
ktap_test_result "writeback: 2048 origin-contiguous blocks scattered on the cache go back in <= 256 origin writes" \
	test "$dirty" -eq 2048 -a "$writes" -le 256
ktap_test_result "writeback: the origin itself holds every block (fio crc32c verify)" \
	fio --name=scatter --filename="$ORIGIN" --direct=1 --rw=randwrite \
	--bs=4k --size=8m --iodepth=1 --ioengine=psync --randrepeat=1 \
	--verify=crc32c --verify_only=1 --output="$tmp/fio1v"
destroy

# --------------------------------------------- 2. overlay read stream
# 16 MiB at 64 MiB: the origin holds pattern A; every 16th block is then
# rewritten through the cache (pattern B) and held dirty.
REG_MIB=16
REG_OFF=$((64 * 256))	# in 4 KiB blocks
make_pattern "$tmp/a" "$REG_MIB"
make_pattern "$tmp/b" "$REG_MIB"
dd if="$tmp/a" of="$ORIGIN" bs=1M seek=64 oflag=direct status=none
cp "$tmp/a" "$tmp/expect"
create mode writeback "${HOLD[@]}" sequential_cutoff 512
for ((i = 0; i < REG_MIB * 256; i += 16)); do
	dd if="$tmp/b" of="$DEV" bs=4k skip=$i seek=$((REG_OFF + i)) count=1 \
		oflag=direct status=none
	dd if="$tmp/b" of="$tmp/expect" bs=4k skip=$i seek=$i count=1 \
		conv=notrunc status=none
done
expect blocks_dirty=$((REG_MIB * 16)) || true
# warm the stream detector with 1 MiB, then 15 MiB in 1 MiB bios
r0=$(obios reads)
dd if="$DEV" of="$tmp/got" bs=1M skip=64 count=$REG_MIB iflag=direct status=none
r1=$(obios reads)
reads=$((r1 - r0))
ktap_print_msg "16 MiB stream in 1 MiB bios: $reads origin reads"
ktap_test_result "overlay: the stream returns the dirty blocks from the cache, the rest from the origin, byte for byte" \
	cmp "$tmp/got" "$tmp/expect"
# the first 512 KiB go block by block (128), then one read per bio
ktap_test_result "overlay: at most one origin read per 1 MiB bio past the cutoff (<= 160)" \
	test "$reads" -le 160
ktap_test_result "overlay: the origin still holds the old data (writeback was held)" \
	cmp <(dd if="$ORIGIN" bs=1M skip=64 count=$REG_MIB iflag=direct status=none) "$tmp/a"

# ------------------------------------- 3. unreadable dirty copy: error
dmsetup suspend "$NAME"
dmsetup load vmc_str_c --table "0 $(dev_sectors /dev/ram0) flakey /dev/ram0 0 0 5"
dmsetup resume vmc_str_c
dmsetup resume "$NAME"
if dd if="$DEV" of="$tmp/got3" bs=1M skip=72 count=1 iflag=direct status=none 2>/dev/null; then
	ktap_test_fail "overlay: a dirty copy the cache cannot read fails the read (it returned data)"
else
	ktap_test_pass "overlay: a dirty copy the cache cannot read fails the read, never returns stale data"
fi
dmsetup suspend "$NAME"
dmsetup load vmc_str_c --table "0 $(dev_sectors /dev/ram0) linear /dev/ram0 0"
dmsetup resume vmc_str_c
dmsetup resume "$NAME"
destroy

# ------------------------------------- 4. no origin flush without writes
create mode writeback "${HOLD[@]}"
dd if="$tmp/b" of="$DEV" bs=4k count=64 oflag=direct status=none
fio --name=fs --filename="$DEV" --direct=1 --rw=randwrite --bs=4k \
	--size=256k --fsync=1 --number_ios=1 --output=/dev/null >/dev/null
f0=$(obios flushes)
fio --name=fs --filename="$DEV" --direct=1 --rw=randwrite --bs=4k \
	--size=256k --fsync=1 --number_ios=64 --output="$tmp/fio4" >/dev/null
f1=$(obios flushes)
ktap_print_msg "64 writes each followed by fsync: $((f1 - f0)) origin flushes"
ktap_test_result "flush: fsyncs on a writeback cache send no flush to an origin that got no write" \
	test $((f1 - f0)) -eq 0
destroy

ktap_finished
