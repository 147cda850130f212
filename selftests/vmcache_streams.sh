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
#  2b. the same over an origin that takes at most 32 KiB per request, so
#     that every origin read is split into chained pieces, with cache
#     reads delayed 20 ms (the overlays used to complete the bio one
#     completion early then: stale data);
#  2c. over that origin swapped for dm-error, with the cache reads still
#     delayed: the read fails, waits for its overlay reads, and lets
#     their blocks go (read right again, and written back in full);
#  3. the same stream with the cache device failing (dm-flakey under the
#     cache, down): the read fails rather than return the origin's stale
#     data;
#  4. fsyncs on a writeback cache whose origin received no write since
#     its last flush send no flush to the origin;
#  6. (run before 5) read misses spanning blocks, outside any stream: one
#     origin read per bio (256 KiB), every block promoted from it, the
#     data the origin's; read again, they are read hits served in runs
#     (at most 64 cache bios for the 16 bios), with the same data;
#  7. (run before 5) writeback writes spanning new blocks: one cache write
#     per bio, every block dirty, the data reads back and is written back;
#  7b. (run before 5) writethrough writes spanning blocks, new ones and
#     then their clean copies: one origin write per bio (not one per
#     block), every block cached clean, the re-read all hits with the new
#     data, which the origin holds too;
#  7c. (run before 5) the same with 64 KiB blocks and writes 4 KiB past
#     a block start (as a filesystem log writes): the partly written
#     first and last blocks join the run, cached or not (the clone leaves
#     an uncached one out); one origin write per bio, the data on the
#     device and on the origin;
#  8. (run before 5) a stream read once is bypassed, read a second time
#     it is cached, and the third pass reads nothing from the origin;
#  8b. (run before 5) the same with 32 MiB, half the cache, in 128 KiB
#     bios (readahead's size) and the default 4 MiB cutoff: after two
#     passes >= 90 % of the blocks are cached;
#  9. (run before 5) writeback caches a stream of O_DIRECT (sync) writes
#     past the cutoff while dirty data is under writeback_high, and
#     writes it back; writethrough still sends it around the cache;
#  9b. (run before 5) past writeback_high (60 % dirty, high 50) that
#     stream still stays in the cache; past the midpoint to a full cache
#     (85 %) it goes around it; the data reads back and is written back;
#  5. a reload of an unchanged cache reads only the superblocks (sectors
#     read from the cache device during load, suspend and resume), and the
#     new table has the same blocks, dirty data included, which reads back
#     and is then written back byte for byte.
#
# Devices: cache = brd (/dev/ram0, 64 MiB) under a dm-linear (swapped to
# flakey in case 3); origin = memory-backed null_blk (256 MiB, 4 KiB
# sectors, requests up to 1 MiB, scheduler none).
set -euo pipefail
DIR=$(dirname "$0")
# shellcheck source=lib.sh
. "$DIR/lib.sh"

require_vmcache
require_cmd fio cmp dd
require_module brd null_blk dm-flakey dm-delay

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

fill_runs_ok() {
	[ "$(($(st promotions) - p0))" -eq 1024 ] &&
		cmp "$tmp/got6" <(dd if="$ORIGIN" bs=256k skip=$((160 * 4)) count=16 iflag=direct status=none)
}

# cache_reads: bios read from the cache device (dm-linear: accounted)
cache_reads() {
	local f
	read -r -a f <"$(sysfs_block "$CACHE")/stat"
	echo $((f[0] + f[1]))
}

cache_writes() {
	local f
	read -r -a f <"$(sysfs_block "$CACHE")/stat"
	echo $((f[4] + f[5]))
}

# 7c: [188 MiB, +4 MiB + 4 KiB) holds a's first 4 KiB, then b
edge_runs_ok() {
	local exp="$tmp/exp7c" off=$((188 * 256))
	{ head -c 4096 "$tmp/a"; head -c $((4 << 20)) "$tmp/b"; } >"$exp"
	cmp <(dd if="$DEV" bs=4k skip="$off" count=1025 iflag=direct status=none) "$exp" &&
		cmp <(dd if="$ORIGIN" bs=4k skip="$off" count=1025 iflag=direct status=none) "$exp"
}

through_runs_ok() {
	local h0
	h0=$(st read_hits)
	cmp <(dd if="$DEV" bs=256k skip=$((184 * 4)) count=16 iflag=direct status=none) \
		<(dd if="$tmp/b" bs=256k count=16 status=none) &&
		[ "$(($(st read_hits) - h0))" -eq 1024 ] &&
		cmp <(dd if="$ORIGIN" bs=256k skip=$((184 * 4)) count=16 iflag=direct status=none) \
			<(dd if="$tmp/b" bs=256k count=16 status=none)
}

write_runs_ok() {
	cmp <(dd if="$DEV" bs=256k skip=$((176 * 4)) count=16 iflag=direct status=none) \
		<(dd if="$tmp/b" bs=256k count=16 status=none) && drain &&
		cmp <(dd if="$ORIGIN" bs=256k skip=$((176 * 4)) count=16 iflag=direct status=none) \
			<(dd if="$tmp/b" bs=256k count=16 status=none)
}

stream_passes_ok() {
	[ $((r1 - r0)) -eq 0 ] && cmp "$tmp/s1" "$tmp/s2" && cmp "$tmp/s1" "$tmp/s3" &&
		cmp "$tmp/s1" <(dd if="$ORIGIN" bs=1M skip=224 count=8 iflag=direct status=none)
}

ktap_print_header
ktap_set_plan 34

setup_brd 1 "$CACHE_MIB" || ktap_exit_fail_msg "brd"
setup_null_blk "$NULLB" "$ORIGIN_MIB" max_sectors=2048 || ktap_exit_fail_msg "null_blk"
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
ktap_test_result "overlay: at most one origin read per 1 MiB bio past the cutoff (<= 144)" \
	test "$reads" -le 144
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

# ----------------- 2b. the same over an origin that splits every read
# An origin taking at most 32 KiB per request splits each 1 MiB read into
# chained pieces: the overlays must still complete before the bio does.
# Cache reads are delayed (dm-delay, 20 ms) so that an overlay is still
# in flight if the bio were completed early.
setup_null_blk vmc_str_o2 64 max_sectors=64 || ktap_exit_fail_msg "null_blk 2"
wipe_dev "$CACHE" 1
dmsetup load vmc_str_c --table "0 $(dev_sectors /dev/ram0) delay /dev/ram0 0 20 /dev/ram0 0 0"
dmsetup resume vmc_str_c
dd if="$tmp/a" of=/dev/vmc_str_o2 bs=1M oflag=direct status=none
# a dm-linear over it, to be swapped for dm-error in 2c
setup_linear vmc_str_o2l /dev/vmc_str_o2 || ktap_exit_fail_msg "dm-linear 2"
cleanup_push "dmsetup remove vmc_str2 2>/dev/null || true"
dmsetup create vmc_str2 --table "0 $(dev_sectors /dev/vmc_str_o2) vmcache $CACHE /dev/mapper/vmc_str_o2l 10 mode writeback ${HOLD[*]} sequential_cutoff 512"
wait_for_dev /dev/mapper/vmc_str2
for ((i = 0; i < REG_MIB * 256; i += 16)); do
	dd if="$tmp/b" of=/dev/mapper/vmc_str2 bs=4k skip=$i seek=$i count=1 \
		oflag=direct status=none
done
[ "$(status_value vmc_str2 blocks_dirty)" = $((REG_MIB * 16)) ] ||
	ktap_print_msg "vmc_str2: $(dmsetup status vmc_str2)"
dd if=/dev/mapper/vmc_str2 of="$tmp/got2" bs=1M count=$REG_MIB iflag=direct status=none
ktap_test_result "overlay: over an origin splitting every read (32 KiB requests), the dirty blocks still come from the cache" \
	cmp "$tmp/got2" "$tmp/expect"

# ------------- 2c. the origin read fails while the overlay reads run
# The cache reads still take 20 ms: the origin's error comes first and
# the bio must wait for its overlay reads, fail, and let their blocks go
# (read again over the restored origin, then written back in full).
swap_origin() { # <target line>
	dmsetup suspend vmc_str_o2l
	dmsetup load vmc_str_o2l --table "$1"
	dmsetup resume vmc_str_o2l
}
swap_origin "0 $(dev_sectors /dev/vmc_str_o2) error"
if dd if=/dev/mapper/vmc_str2 of="$tmp/got2c" bs=1M count=$REG_MIB iflag=direct status=none 2>/dev/null; then
	ktap_test_fail "overlay: an origin error under the overlays fails the read (it returned data)"
else
	ktap_test_pass "overlay: an origin error under the overlays fails the read"
fi
swap_origin "0 $(dev_sectors /dev/vmc_str_o2) linear /dev/vmc_str_o2 0"
overlay_error_then_ok() {
	dd if=/dev/mapper/vmc_str2 of="$tmp/got2c" bs=1M count="$REG_MIB" iflag=direct status=none &&
		cmp "$tmp/got2c" "$tmp/expect" &&
		[ "$(NAME=vmc_str2 st blocks_dirty)" = $((REG_MIB * 16)) ] &&
		NAME=vmc_str2 drain &&
		cmp <(dd if=/dev/vmc_str_o2 bs=1M count="$REG_MIB" iflag=direct status=none) "$tmp/expect"
}
ktap_test_result "overlay: after it the stream reads right again, and every dirty block is written back (none left held)" \
	overlay_error_then_ok
dm_remove vmc_str2
dm_remove vmc_str_o2l
dmsetup load vmc_str_c --table "0 $(dev_sectors /dev/ram0) linear /dev/ram0 0"
dmsetup resume vmc_str_c
wipe_dev "$CACHE" 1

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

# ---------------------------- 6. multi-block read misses: one origin read
# 4 MiB never read before, in 256 KiB bios, the stream detector off: each
# bio is one origin read, and every block is promoted from it.
create mode writeback "${HOLD[@]}" sequential_cutoff 0
p0=$(st promotions)
r0=$(obios reads)
dd if="$DEV" of="$tmp/got6" bs=256k skip=$((160 * 4)) count=16 iflag=direct status=none
r1=$(obios reads)
wait_promotions $((p0 + 1024))
ktap_print_msg "4 MiB in 256 KiB read misses: $((r1 - r0)) origin reads, $(($(st promotions) - p0)) blocks promoted"
ktap_test_result "fill runs: one origin read per multi-block read miss (16 bios: <= 16 reads)" \
	test $((r1 - r0)) -le 16
ktap_test_result "fill runs: every block promoted, the data is the origin's" \
	fill_runs_ok
h0=$(st read_hits)
c0=$(cache_reads)
r0=$(obios reads)
dd if="$DEV" of="$tmp/got6b" bs=256k skip=$((160 * 4)) count=16 iflag=direct status=none
c1=$(cache_reads)
r1=$(obios reads)
ktap_print_msg "re-read: $(($(st read_hits) - h0)) read hits in $((c1 - c0)) cache reads, $((r1 - r0)) origin reads"
ktap_test_result "hit runs: the re-read is 1024 read hits, in at most 64 cache bios, none from the origin, same data" \
	test "$(($(st read_hits) - h0))" -eq 1024 -a $((c1 - c0)) -le 64 -a $((r1 - r0)) -eq 0
ktap_test_result "hit runs: the data read back from the cache is the origin's" \
	cmp "$tmp/got6b" "$tmp/got6"
destroy

# ------------------------------ 7. multi-block writes: one cache write
# 4 MiB of new blocks written in 256 KiB bios (writeback, no stream): each
# bio is one cache write (the blocks are allocated next to each other on a
# cache with free space), all 1024 blocks dirty, then written back.
create mode writeback "${HOLD[@]}" sequential_cutoff 0
d0=$(st blocks_dirty)
w0=$(cache_writes)
dd if="$tmp/b" of="$DEV" bs=256k seek=$((176 * 4)) count=16 oflag=direct status=none
w1=$(cache_writes)
ktap_print_msg "4 MiB in 256 KiB writes: $((w1 - w0)) cache writes (metadata commits included), $(($(st blocks_dirty) - d0)) blocks dirtied"
ktap_test_result "write runs: 16 multi-block writes reach the cache in at most 16 + 16 bios, 1024 blocks dirty" \
	test $((w1 - w0)) -le 32 -a $(($(st blocks_dirty) - d0)) -eq 1024
ktap_test_result "write runs: the data reads back, and after a drain the origin holds it" \
	write_runs_ok
destroy

# -------------------- 7b. writethrough writes spanning blocks: one origin write
# 4 MiB in 256 KiB bios (writethrough, no stream) over new blocks, then
# again over their clean copies: each bio is one origin write and one
# cache write (the blocks sit next to each other on the cache), where
# every block was one of each; the blocks stay cached, clean.
create mode writethrough sequential_cutoff 0
u0=$(st blocks_used)
o0=$(obios writes)
w0=$(cache_writes)
dd if="$tmp/a" of="$DEV" bs=256k seek=$((184 * 4)) count=16 oflag=direct status=none
o1=$(obios writes)
w1=$(cache_writes)
ktap_print_msg "new blocks: $((o1 - o0)) origin writes, $((w1 - w0)) cache writes (commits included)," \
	"$(($(st blocks_used) - u0)) blocks cached, $(st blocks_dirty) dirty"
ktap_test_result "through runs: 16 writes over new blocks: at most 16 origin writes, 1024 blocks cached clean" \
	test $((o1 - o0)) -le 16 -a $(($(st blocks_used) - u0)) -eq 1024 -a "$(st blocks_dirty)" -eq 0
h0=$(st write_hits)
o0=$(obios writes)
w0=$(cache_writes)
dd if="$tmp/b" of="$DEV" bs=256k seek=$((184 * 4)) count=16 oflag=direct status=none
o1=$(obios writes)
w1=$(cache_writes)
ktap_print_msg "over the clean copies: $((o1 - o0)) origin writes, $((w1 - w0)) cache writes," \
	"$(($(st write_hits) - h0)) write hits"
ktap_test_result "through runs: 16 writes over the clean copies: at most 16 origin writes, 1024 write hits" \
	test $((o1 - o0)) -le 16 -a $(($(st write_hits) - h0)) -eq 1024
ktap_test_result "through runs: the re-read is 1024 read hits of the new data, which the origin holds" \
	through_runs_ok
destroy

# ----------- 7c. writethrough writes starting and ending inside a block
# 64 KiB blocks (a fresh cache): 4 MiB written in 256 KiB bios at 188 MiB
# (64 blocks cached), then again 4 KiB further: each bio starts inside a
# cached block and ends inside the next bio's first block (the last one
# inside an uncached block).  Each bio is one origin write; block by
# block it was five.
wipe_dev /dev/ram0 1
create mode writethrough sequential_cutoff 0 block_size 65536
dd if="$tmp/a" of="$DEV" bs=256k seek=$((188 * 4)) count=16 oflag=direct status=none
u0=$(st blocks_used)
o0=$(obios writes)
dd if="$tmp/b" of="$DEV" bs=256k seek=$(((188 << 20) + 4096)) count=16 \
	oflag=direct,seek_bytes status=none
o1=$(obios writes)
ktap_print_msg "64 KiB blocks, writes 4 KiB into a block: $((o1 - o0)) origin writes for 16 bios," \
	"$u0 then $(st blocks_used) blocks cached, $(st blocks_dirty) dirty"
ktap_test_result "edge runs: 16 writes starting inside a block: at most 16 origin writes, the 64 blocks stay cached clean" \
	test $((o1 - o0)) -le 16 -a "$u0" -eq 64 -a "$(st blocks_used)" -eq 64 -a "$(st blocks_dirty)" -eq 0
ktap_test_result "edge runs: the device and the origin hold the new data byte for byte" \
	edge_runs_ok
destroy
wipe_dev /dev/ram0 1

# ------------------ 7d. writeback writes over cached blocks: one cache write
# 4 MiB at 200 MiB written in 256 KiB bios over new blocks (write runs),
# then twice more: over the dirty copies, and after a drain over the clean
# ones (FLUX covers them).  Each bio is one cache write; block by block it
# was 64.  Every pass reads back byte for byte, the drain brings the last
# to the origin.
hit_pass() { # <data file> <label>: rewrite the area, count and check
	local w0 w1
	w0=$(cache_writes)
	dd if="$1" of="$DEV" bs=256k seek=$((200 * 4)) count=16 oflag=direct status=none || return 1
	w1=$(cache_writes)
	ktap_print_msg "$2: $((w1 - w0)) cache writes for 16 bios of 256 KiB (commits included)," \
		"$(st blocks_dirty) blocks dirty"
	[ $((w1 - w0)) -le 32 ] && [ "$(st blocks_dirty)" -eq 1024 ] &&
		cmp "$1" <(dd if="$DEV" bs=256k skip=$((200 * 4)) count=16 iflag=direct status=none)
}
hit_drained_ok() {
	drain && [ "$(st blocks_dirty)" -eq 0 ] &&
		cmp "$tmp/d" <(dd if="$ORIGIN" bs=256k skip=$((200 * 4)) count=16 iflag=direct status=none)
}
head -c $((4 << 20)) /dev/urandom >"$tmp/c"
head -c $((4 << 20)) /dev/urandom >"$tmp/d"
create mode writeback "${HOLD[@]}" sequential_cutoff 0
dd if="$tmp/a" of="$DEV" bs=256k seek=$((200 * 4)) count=16 oflag=direct status=none
ktap_test_result "hit runs (writeback): 16 writes over 1024 dirty blocks: at most 32 cache writes, same data back" \
	hit_pass "$tmp/c" "over dirty blocks"
drain
ktap_test_result "hit runs (writeback): 16 writes over the 1024 clean copies: at most 32 cache writes, dirty, same data back" \
	hit_pass "$tmp/d" "over clean blocks"
ktap_test_result "hit runs (writeback): after a drain the origin holds the last data" \
	hit_drained_ok
destroy
wipe_dev /dev/ram0 1

# ------------------------ 8. a stream read again is cached, once is not
# 8 MiB never touched, read three times in 1 MiB bios (stream detector at
# 512 KiB): the first pass bypasses (only its first 512 KiB is promoted),
# the second caches what the first bypassed, the third comes from the
# cache alone.
dd if="$tmp/a" of="$ORIGIN" bs=1M seek=224 count=8 oflag=direct status=none
create mode writethrough sequential_cutoff 512
p0=$(st promotions)
dd if="$DEV" of="$tmp/s1" bs=1M skip=224 count=8 iflag=direct status=none
wait_promotions 0
p1=$(st promotions)
dd if="$DEV" of="$tmp/s2" bs=1M skip=224 count=8 iflag=direct status=none
wait_promotions $((p0 + 2048))
p2=$(st promotions)
r0=$(obios reads)
dd if="$DEV" of="$tmp/s3" bs=1M skip=224 count=8 iflag=direct status=none
r1=$(obios reads)
ktap_print_msg "stream passes: promoted $((p1 - p0)) then $((p2 - p1)) blocks; third pass $((r1 - r0)) origin reads"
ktap_test_result "streams: one pass is bypassed (<= 128 blocks promoted), a second caches the rest (2048 in all)" \
	test $((p1 - p0)) -le 128 -a $((p2 - p0)) -eq 2048
ktap_test_result "streams: the third pass reads nothing from the origin, and every pass returns the origin's data" \
	stream_passes_ok
destroy

# ----------- 8b. a file of half the cache, read again in readahead-sized bios
# 32 MiB (half the cache) in 128 KiB bios, the table's defaults (a 4 MiB
# cutoff): the second pass must cache what the first bypassed.  Every
# block of the first pass is remembered (hashed stamps); a hash that put
# consecutive blocks into a fraction of its buckets forgot most of them.
dd if=/dev/urandom of="$tmp/big" bs=1M count=32 status=none
dd if="$tmp/big" of="$ORIGIN" bs=1M seek=128 oflag=direct status=none
create mode writethrough
p0=$(st promotions)
r0=$(obios reads)
dd if="$DEV" of=/dev/null bs=128k skip=1024 count=256 iflag=direct status=none
wait_promotions 0
r1=$(obios reads)
dd if="$DEV" of=/dev/null bs=128k skip=1024 count=256 iflag=direct status=none
wait_promotions $((p0 + 8192))
p2=$(st promotions)
r2=$(obios reads)
dd if="$DEV" of="$tmp/big3" bs=128k skip=1024 count=256 iflag=direct status=none
r3=$(obios reads)
ktap_print_msg "32 MiB in 128 KiB bios: $((p2 - p0)) of 8192 blocks promoted after two passes; origin reads per pass $((r1 - r0)), $((r2 - r1)), $((r3 - r2))"
reread_ok() {
	[ $((p2 - p0)) -ge 7372 ] && [ $((r3 - r2)) -le $(((r1 - r0) / 10)) ] &&
		cmp "$tmp/big3" "$tmp/big"
}
ktap_test_result "streams: a region of half the cache read twice is cached (>= 90 % of its blocks), the third pass reads <= 10 % from the origin, same data" \
	reread_ok
destroy

# ---------------- 9. writeback keeps a stream of sync writes in the cache
# 8 MiB of O_DIRECT (REQ_SYNC) 1 MiB writes past a 512 KiB cutoff, with
# writeback held: every block is cached dirty and nothing reaches the
# origin until the drain, which then writes it all back.
create mode writeback "${HOLD[@]}" sequential_cutoff 512
w0=$(obios writes)
dd if="$tmp/a" of="$DEV" bs=1M seek=192 count=8 oflag=direct status=none
w1=$(obios writes)
sync_dirty=$(st blocks_dirty)
ktap_print_msg "8 MiB of sync sequential writes: $sync_dirty blocks dirty, $((w1 - w0)) origin writes"
sync_stream_ok() {
	[ "$sync_dirty" -eq 2048 ] && [ $((w1 - w0)) -eq 0 ] && drain &&
		cmp <(dd if="$ORIGIN" bs=1M skip=192 count=8 iflag=direct status=none) \
			<(dd if="$tmp/a" bs=1M count=8 status=none)
}
ktap_test_result "streams: writeback caches a sync write stream past the cutoff (2048 blocks dirty, no origin write), then writes it back" \
	sync_stream_ok
destroy
create mode writethrough sequential_cutoff 512
u0=$(st blocks_used)
dd if="$tmp/a" of="$DEV" bs=1M seek=192 count=8 oflag=direct status=none
ktap_test_result "streams: writethrough still sends that stream around the cache (<= 128 blocks cached)" \
	test $(($(st blocks_used) - u0)) -le 128
destroy

# ------- 9b. a sync write stream while dirty data is past writeback_high
# (fsync-heavy small files, a filesystem journal on a cache that a big
# file left half dirty): it stays in the cache up to the midpoint between
# writeback_high and a full cache, and goes around it past that.  The
# origin is delayed (1 s per write) and writeback takes one block at a
# time, so the dirty level stays where the case put it.
setup_delay vmc_str_od "$ORIGIN" 0 1000 ||
	ktap_exit_fail_msg "dm-delay"
sync_past_high() { # <dirty percent>: prints "<bypassed> <dirty added>"
	local total fill b0 d0
	local opts=(mode writeback "${HOLD[@]}" sequential_cutoff 512)
	wipe_dev "$CACHE" 1
	dmsetup create "$NAME" --table "0 $(dev_sectors "$ORIGIN") vmcache $CACHE /dev/mapper/vmc_str_od ${#opts[@]} ${opts[*]}" &&
		wait_for_dev "$DEV" || return 1
	total=$(st blocks_total)
	fill=$((total * $1 / 100 / 256))	# MiB
	dd if=/dev/zero of="$DEV" bs=1M count="$fill" oflag=direct status=none &&
		msg set writeback_max_inflight 1 && msg set writeback_low 40 &&
		msg set writeback_high 50 || return 1
	b0=$(st bypassed)
	d0=$(st blocks_dirty)
	dd if="$tmp/a" of="$DEV" bs=1M seek=192 count=4 oflag=direct status=none &&
		cmp <(dd if="$DEV" bs=1M skip=192 count=4 iflag=direct status=none) \
			<(dd if="$tmp/a" bs=1M count=4 status=none) || return 1
	echo "$(($(st bypassed) - b0)) $(($(st blocks_dirty) - d0))"
	dmsetup suspend vmc_str_od &&
		dmsetup load vmc_str_od --table "0 $(dev_sectors "$ORIGIN") linear $ORIGIN 0" &&
		dmsetup resume vmc_str_od && drain &&
		cmp <(dd if="$ORIGIN" bs=1M skip=192 count=4 iflag=direct status=none) \
			<(dd if="$tmp/a" bs=1M count=4 status=none) || return 1
	destroy
	dmsetup suspend vmc_str_od &&
		dmsetup load vmc_str_od --table "0 $(dev_sectors "$ORIGIN") delay $ORIGIN 0 0 $ORIGIN 0 1000" &&
		dmsetup resume vmc_str_od
}
sync_past_high 60 >"$tmp/sp60" || {
	echo "x x" >"$tmp/sp60"
	dm_exists "$NAME" && dm_remove "$NAME"
}
read -r by60 add60 <"$tmp/sp60"
ktap_print_msg "dirty at 60 % (writeback_high 50): 4 MiB sync stream, $by60 blocks bypassed, $add60 blocks made dirty"
ktap_test_result "streams: a sync write stream at 60 % dirty (past writeback_high 50, under 75) stays in the cache, data intact" \
	test "$by60" = 0
sync_past_high 85 >"$tmp/sp85" || {
	echo "x x" >"$tmp/sp85"
	dm_exists "$NAME" && dm_remove "$NAME"
}
read -r by85 add85 <"$tmp/sp85"
ktap_print_msg "dirty at 85 %: 4 MiB sync stream, $by85 blocks bypassed, $add85 blocks made dirty"
ktap_test_result "streams: past 75 % dirty the sync stream goes around the cache, data intact" \
	test "$by85" != x -a "${by85:-0}" != 0
dm_remove vmc_str_od

# ------------------------- 5. a reload of an unchanged cache reads nothing
# but superblocks: the new table takes the replaced table's state over.
create mode writeback "${HOLD[@]}"
dd if="$tmp/b" of="$DEV" bs=4k seek=4096 count=1024 oflag=direct status=none
dirty=$(st blocks_dirty)
used=$(st blocks_used)
table=$(dmsetup table "$NAME")
cstat=$(sysfs_block "$CACHE")/stat
read -r -a c0 <"$cstat"
dmsetup load "$NAME" --table "$table"
dmsetup suspend "$NAME"
dmsetup resume "$NAME"
read -r -a c1 <"$cstat"
sectors=$((c1[2] - c0[2]))
ktap_print_msg "reload: $sectors sectors read from the cache device ($used blocks cached, $dirty dirty)"
# the other order: suspended first, then the new table loaded
read -r -a c0 <"$cstat"
dmsetup suspend "$NAME"
dmsetup load "$NAME" --table "$table"
dmsetup resume "$NAME"
read -r -a c1 <"$cstat"
sectors2=$((c1[2] - c0[2]))
ktap_print_msg "suspend, load, resume: $sectors2 sectors read"
ktap_test_result "reload: an unchanged cache reads only its superblocks, loaded live or suspended (<= 64 sectors each)" \
	test "$sectors" -le 64 -a "$sectors2" -le 64
same_state() {
	[ "$(st blocks_dirty)" = "$dirty" ] && [ "$(st blocks_used)" = "$used" ] &&
		cmp <(dd if="$DEV" bs=4k skip=4096 count=1024 iflag=direct status=none) \
			<(dd if="$tmp/b" bs=4k count=1024 status=none)
}
ktap_test_result "reload: the same blocks cached and dirty, the dirty data reads back byte for byte" \
	same_state
drain
ktap_test_result "reload: the adopted dirty blocks are written back, the origin holds them" \
	cmp <(dd if="$ORIGIN" bs=4k skip=4096 count=1024 iflag=direct status=none) \
	<(dd if="$tmp/b" bs=4k count=1024 status=none)
destroy

ktap_finished 34
