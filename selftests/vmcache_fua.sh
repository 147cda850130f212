#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# dm-vmcache: FUA writes (O_DIRECT + O_DSYNC: a journal commit block, a
# database log write) in writeback mode.
#
#  1. To blocks not cached yet they are written to the cache only and
#     complete after a metadata commit (the data and its mapping durable):
#     the blocks are dirty, the origin receives nothing, the commit counter
#     moved, the data reads back byte for byte.  Before this, such writes
#     went to both devices (an origin write and origin flush per journal
#     commit, the slow disk's speed: fs_mark at 0.28x the bare disk).
#  2. Reloaded from its metadata (remove without a drain, create with
#     must_exist 1) the cache still holds them, dirty, same bytes.
#  3. To dirty blocks: the cache only, as before.
#  4. The drain brings every byte to the origin.
#  5. A FUA write over several new blocks (a log write) is one cache
#     write, not one per block, and completes after a commit.
#  6. With data_crc on they still go to both devices (the checksummed path
#     writes through).
#  7. The device asks for 4 KiB physical blocks, so that a filesystem log
#     (mkfs.xfs) does not write 512 bytes at a time.
#
# Devices: memory-backed null_blk with a volatile write cache (cache_size),
# so that the stack has FUA (queue/fua = 1) and the writes reach the target
# with REQ_FUA: cache 32 MiB, origin 64 MiB.
set -euo pipefail
DIR=$(dirname "$0")
# shellcheck source=lib.sh
. "$DIR/lib.sh"

require_vmcache
require_cmd dd cmp
require_module null_blk

NAME=vmc_fua
DEV=/dev/mapper/$NAME
CNAME=vmc_fua_c
ONAME=vmc_fua_o
CACHE=/dev/$CNAME
ORIGIN=/dev/$ONAME
N=64			# 4 KiB blocks per case
OFF_NEW=100		# first block of case 1 (in 4 KiB blocks)
OFF_RUN=2048		# case 5
OFF_CRC=4000		# case 6

tmp=$(mktemp -d)
cleanup_push "rm -rf $tmp"

# sectors written to a device so far (/sys/block/<dev>/stat field 7)
sectors_written() { awk '{ print $7 }' "$(sysfs_block "$1")/stat"; }

# dsync_write <file> <first 4 KiB block>: one FUA write per block
dsync_write() {
	dd if="$1" of="$DEV" bs=4k seek="$2" count="$N" oflag=direct,dsync \
		conv=notrunc status=none
}

read_back() { # <first block> <out file>
	dd if="$DEV" of="$2" bs=4k skip="$1" count="$N" iflag=direct status=none
}

remove() { dm_remove "$NAME" && cleanup_pop; }

create() { # <must_exist> [options...]
	local must=$1
	shift
	dm_create "$NAME" "0 $(dev_sectors "$ORIGIN") vmcache $CACHE $ORIGIN $(($# + 4)) mode writeback must_exist $must $*"
}

ktap_print_header
ktap_set_plan 8
dmesg_mark

setup_null_blk "$CNAME" 32 cache_size=4 >/dev/null &&
	setup_null_blk "$ONAME" 64 cache_size=4 >/dev/null ||
	ktap_skip_all "null_blk with cache_size could not be set up"
wipe_dev "$CACHE" 2
# writeback held off: what is dirty stays dirty until the drain
create 0 writeback_low 100 writeback_high 100 max_dirty_age 0 ||
	ktap_exit_fail_msg "cannot create the cache"
[ "$(cat "$(sysfs_block "$DEV")/queue/fua" 2>/dev/null)" = 1 ] ||
	ktap_skip_all "the stack takes no FUA (queue/fua of $DEV is not 1)"

make_pattern "$tmp/a" 1
head -c $((N * 4096)) "$tmp/a" >"$tmp/new"

new_blocks() {
	local o0 c0
	o0=$(sectors_written "$ORIGIN")
	c0=$(st commits)
	dsync_write "$tmp/new" "$OFF_NEW" || return 1
	ktap_print_msg "after $N FUA writes to new blocks: blocks_dirty=$(st blocks_dirty)" \
		"commits $c0 -> $(st commits), origin sectors written +$(($(sectors_written "$ORIGIN") - o0))"
	[ "$(st blocks_dirty)" = "$N" ] || return 1
	[ "$(sectors_written "$ORIGIN")" = "$o0" ] || return 1
	[ "$(st commits)" -gt "$c0" ] || return 1
	read_back "$OFF_NEW" "$tmp/got" && compare_bytes "$tmp/new" "$tmp/got"
}
ktap_test_result "writeback: FUA writes to new blocks: cache only, dirty, committed, read back" new_blocks

reloaded() {
	remove && create 1 writeback_low 100 writeback_high 100 max_dirty_age 0 || return 1
	ktap_print_msg "reloaded: blocks_dirty=$(st blocks_dirty)"
	[ "$(st blocks_dirty)" = "$N" ] &&
		read_back "$OFF_NEW" "$tmp/got" && compare_bytes "$tmp/new" "$tmp/got"
}
ktap_test_result "reload (must_exist 1): the FUA-written blocks are there, dirty, same bytes" reloaded

dirty_again() {
	local o0
	o0=$(sectors_written "$ORIGIN")
	tail -c $((N * 4096)) "$tmp/a" >"$tmp/new"
	dsync_write "$tmp/new" "$OFF_NEW" || return 1
	[ "$(st blocks_dirty)" = "$N" ] && [ "$(sectors_written "$ORIGIN")" = "$o0" ] &&
		read_back "$OFF_NEW" "$tmp/got" && compare_bytes "$tmp/new" "$tmp/got"
}
ktap_test_result "writeback: FUA rewrites of dirty blocks: cache only, read back" dirty_again

drained() {
	drain && remove || return 1
	dd if="$ORIGIN" of="$tmp/o" bs=4k skip="$OFF_NEW" count="$N" iflag=direct status=none &&
		compare_bytes "$tmp/new" "$tmp/o"
}
ktap_test_result "drain: the origin holds every FUA-written byte" drained

# writes the target has completed so far: one per piece it maps (a bio
# cut at a block end is two), from its write latency histogram
pieces_done() {
	tr ' ' '\n' <"/sys/module/dm_vmcache/caches/$NAME/latency_write" |
		awk '{ n += $1 } END { print n + 0 }'
}

# A FUA write over several new blocks (a filesystem log write) is one
# cache write, not one per block; it still completes after a commit.
fua_runs() {
	local p0 o0 c0 d0 p
	wipe_dev "$CACHE" 2 &&
		create 0 writeback_low 100 writeback_high 100 max_dirty_age 0 || return 1
	head -c $((16 * 65536)) "$tmp/a" >"$tmp/run"
	p0=$(pieces_done)
	o0=$(sectors_written "$ORIGIN")
	c0=$(st commits)
	d0=$(st blocks_dirty)
	dd if="$tmp/run" of="$DEV" bs=64k seek=$((OFF_RUN / 16)) count=16 \
		oflag=direct,dsync conv=notrunc status=none || return 1
	p=$(($(pieces_done) - p0))
	ktap_print_msg "16 FUA writes of 64 KiB over new blocks: $p pieces mapped," \
		"commits $c0 -> $(st commits), blocks_dirty $d0 -> $(st blocks_dirty)"
	# one piece per block was 256 (checked last: the device goes away)
	[ "$(st blocks_dirty)" = $((d0 + 256)) ] &&
		[ "$(st commits)" -ge $((c0 + 1)) ] &&
		[ "$(sectors_written "$ORIGIN")" = "$o0" ] || return 1
	dd if="$DEV" of="$tmp/got" bs=64k skip=$((OFF_RUN / 16)) count=16 \
		iflag=direct status=none && compare_bytes "$tmp/run" "$tmp/got" || return 1
	# reloaded from its metadata: mapped, dirty, the same bytes
	remove && create 1 writeback_low 100 writeback_high 100 max_dirty_age 0 || return 1
	[ "$(st blocks_dirty)" = 256 ] &&
		dd if="$DEV" of="$tmp/got" bs=64k skip=$((OFF_RUN / 16)) count=16 \
			iflag=direct status=none && compare_bytes "$tmp/run" "$tmp/got" &&
		drain && remove &&
		dd if="$ORIGIN" of="$tmp/o" bs=64k skip=$((OFF_RUN / 16)) count=16 \
			iflag=direct status=none && compare_bytes "$tmp/run" "$tmp/o" &&
		[ "$p" = 16 ]
}
ktap_test_result "writeback: a FUA write over 16 new blocks is one cache write, committed, reloaded, drained" fua_runs

with_crc() {
	local o0
	wipe_dev "$CACHE" 2 && create 0 data_crc 1 || return 1
	o0=$(sectors_written "$ORIGIN")
	head -c $((N * 4096)) "$tmp/a" >"$tmp/crc"
	dsync_write "$tmp/crc" "$OFF_CRC" || return 1
	ktap_print_msg "data_crc: blocks_dirty=$(st blocks_dirty), origin sectors written +$(($(sectors_written "$ORIGIN") - o0))"
	[ "$(st blocks_dirty)" = 0 ] &&
		[ "$(sectors_written "$ORIGIN")" -ge $((o0 + N * 8)) ] &&
		read_back "$OFF_CRC" "$tmp/got" && compare_bytes "$tmp/crc" "$tmp/got" &&
		remove &&
		dd if="$ORIGIN" of="$tmp/o" bs=4k skip="$OFF_CRC" count="$N" iflag=direct status=none &&
		compare_bytes "$tmp/crc" "$tmp/o"
}
ktap_test_result "writeback, data_crc: FUA writes to new blocks go to both devices; on the origin" with_crc

# A first sub-block write into a block the disk does not map is a mapping
# change: FUA, it waits for a commit.  A filesystem log writing 512 bytes
# at a time (XFS with 512-byte log sectors) would commit per write; the
# cache asks for 4 KiB physical blocks, as a 512e disk does, and mkfs then
# picks 4 KiB log sectors.  Devices of 512-byte sectors here.
limits() {
	local bs got q
	setup_null_blk "${CNAME}5" 32 blocksize=512 >/dev/null &&
		setup_null_blk "${ONAME}5" 64 blocksize=512 >/dev/null || return 1
	wipe_dev "/dev/${CNAME}5" 2
	for bs in 4096 65536; do
		dm_create "${NAME}5" "0 $(dev_sectors "/dev/${ONAME}5") vmcache /dev/${CNAME}5 /dev/${ONAME}5 2 block_size $bs" ||
			return 1
		q=$(sysfs_block "/dev/mapper/${NAME}5")/queue
		got="$(cat "$q/logical_block_size" "$q/physical_block_size" "$q/minimum_io_size" "$q/optimal_io_size" | paste -sd' ')"
		ktap_print_msg "block_size $bs: logical, physical, minimum, optimal I/O: $got"
		dm_remove "${NAME}5" && cleanup_pop || return 1
		# minimum I/O: a sub-block (an eighth of a block) when larger
		[ "$got" = "512 4096 $((bs / 8 > 4096 ? bs / 8 : 4096)) $bs" ] || return 1
		wipe_dev "/dev/${CNAME}5" 2
	done
}
ktap_test_result "limits: 512-byte logical, 4 KiB physical, minimum I/O 4 KiB or a sub-block, optimal one block" limits

ktap_test_result "kernel log clean" check_dmesg_clean
ktap_finished 8
