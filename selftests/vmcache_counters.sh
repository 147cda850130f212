#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# dm-vmcache counters, exactly: a scripted sequence of 4 KiB (and 512 B)
# O_DIRECT reads and writes gives the expected read/write hits and misses,
# promotions, blocks_used and blocks_dirty in each mode; sub-block tracking
# (a 4 KiB read miss next to a cached 512 B sector reads only the missing
# part from the origin); promote_after 2 and 3; the sequential stream
# detector (bypassed, hot set kept) and 2q scan resistance, with an lru
# control that shows the scan would evict the hot set; the hit ratio after
# one pass over a hot set; good and bad messages and sysfs writes (bad ones
# fail and change nothing); a second table on a cache device in use is
# refused.  (Suspend/resume of the same table: vmcache_persist.sh, phase 4.)
#
# Devices: cache = brd (/dev/ram0, 16 MiB: 3840 blocks of 4 KiB); origin =
# memory-backed null_blk (128 MiB, 512 B sectors so that sub-block I/O is
# possible).  Every I/O is O_DIRECT and block aligned, so each bio is one
# counted piece.
set -euo pipefail
DIR=$(dirname "$0")
# shellcheck source=lib.sh
. "$DIR/lib.sh"

require_vmcache
require_cmd fio dd cmp
require_module null_blk brd

CACHE_MIB=16
ORIGIN_MIB=128
NAME=vmc_cnt
DEV=/dev/mapper/$NAME
CACHE=/dev/ram0
NULLB=vmc_cnt_nullb
ORIGIN=/dev/$NULLB
SYSFS=/sys/module/dm_vmcache/caches/$NAME

# hot set for the bypass and scan cases: 2 MiB at 100 MiB; scan: 64 MiB at 0
HOT_OFF_MIB=100
HOT_MIB=2
HOT_BLOCKS=$((HOT_MIB * 256))
SCAN_MIB=64
SCAN_BLOCKS=$((SCAN_MIB * 256))
SCAN_CUTOFF_KIB=1024

tmp=$(mktemp -d)
cleanup_push "rm -rf $tmp"

# ------------------------------------------------------------ helpers

reset() {
	msg stats reset
}

# rd <4k block> [count], wr <4k block> [count]: O_DIRECT, one bio per block
rd() {
	dd if="$DEV" of=/dev/null bs=4k skip="$1" count="${2:-1}" iflag=direct status=none
}

wr() {
	dd if="$tmp/pat" of="$DEV" bs=4k seek="$1" count="${2:-1}" oflag=direct status=none
}

# sectors read from the origin so far (/sys/block/<dev>/stat, field 3)
origin_sectors_read() {
	awk '{ print $3 }' "/sys/block/$NULLB/stat"
}

create() { # <options...>
	wipe_dev "$CACHE" 2
	dm_create "$NAME" "0 $OSZ vmcache $CACHE $ORIGIN $*"
}

remove() {
	dm_remove "$NAME" && cleanup_pop
}

# one random-order pass over the hot set, each 4 KiB block read once
hot_pass() {
	fio --name=hot --filename="$DEV" --rw=randread --bs=4k \
		--offset=$((HOT_OFF_MIB << 20)) --size=$((HOT_MIB << 20)) \
		--ioengine=psync --direct=1 --invalidate=0 --randrepeat=0 \
		--output=/dev/null
}

scan() {
	dd if="$DEV" of=/dev/null bs=1M count="$SCAN_MIB" iflag=direct status=none
}

# hit ratio (percent) of the counters since the last reset
hit_ratio() {
	local h m
	h=$(st read_hits)
	m=$(st read_misses)
	[ $((h + m)) -gt 0 ] || { echo 0; return; }
	echo $((h * 100 / (h + m)))
}

# ------------------------------------------------- exact sequence (4 KiB)

step_first_reads() {
	reset && rd 0 16 && wait_promotions 16 &&
	expect read_hits=0 read_misses=16 write_hits=0 write_misses=0 \
		promotions=16 blocks_used=16 blocks_dirty=0 bypassed=0 demotions=0
}

step_second_reads() {
	reset && rd 0 16 && sleep 0.3 &&
	expect read_hits=16 read_misses=0 promotions=0 blocks_used=16
}

step_writethrough_writes() {
	reset && wr 0 8 && wr 100 8 &&
	expect write_hits=8 write_misses=8 read_hits=0 read_misses=0 \
		blocks_used=24 blocks_dirty=0
}

step_written_read_back() {
	reset && rd 100 8 && sleep 0.3 &&
	expect read_hits=8 read_misses=0 promotions=0 &&
	dd if="$DEV" bs=4k skip=100 count=8 iflag=direct status=none >"$tmp/back" &&
	compare_bytes "$tmp/back" "$tmp/pat" $((8 * 4096))
}

# 512 B write to an uncached block caches that sector only; a 4 KiB read
# of the block is one hit (the sector) and one miss that reads only the
# other 7 sectors from the origin; the block is then fully cached.
step_subblock() {
	local before after
	reset &&
	dd if="$tmp/pat" of="$DEV" bs=512 seek=$((200 * 8)) count=1 oflag=direct status=none &&
	expect write_misses=1 write_hits=0 blocks_used=25 || return 1
	before=$(origin_sectors_read)
	reset && rd 200 && wait_promotions 1 &&
	expect read_hits=1 read_misses=1 promotions=1 blocks_used=25 || return 1
	after=$(origin_sectors_read)
	if [ $((after - before)) -ne 7 ]; then
		ktap_print_msg "origin sectors read for the miss: $((after - before)), expected 7"
		return 1
	fi
	reset && rd 200 && sleep 0.3 && expect read_hits=1 read_misses=0
}

step_writeback() {
	msg set writeback_high 100 && msg set writeback_low 100 &&
	msg set max_dirty_age 0 && msg mode writeback || return 1
	# 10 new blocks, 4 clean cached ones, 2 of the new ones again
	reset && wr 300 10 && wr 0 4 && wr 300 2 &&
	expect write_misses=10 write_hits=6 blocks_used=35 blocks_dirty=14 \
		writeback_done=0
}

# dirty data is in the cache only: the origin still has zeros
step_writeback_not_on_origin() {
	reset && rd 300 10 && sleep 0.3 &&
	expect read_hits=10 read_misses=0 blocks_dirty=14 || return 1
	dd if="$ORIGIN" bs=4k skip=300 count=10 iflag=direct status=none >"$tmp/o" &&
	compare_bytes "$tmp/o" /dev/zero $((10 * 4096))
}

step_flush() {
	reset && msg flush && wait_clean &&
	expect writeback_done=14 blocks_dirty=0 blocks_used=35 || return 1
	# blocks 300..309 and 0..3 hold the first blocks of the pattern
	dd if="$ORIGIN" bs=4k skip=300 count=10 iflag=direct status=none >"$tmp/o" &&
	compare_bytes "$tmp/o" "$tmp/pat" $((10 * 4096)) &&
	dd if="$ORIGIN" bs=4k count=4 iflag=direct status=none >"$tmp/o" &&
	compare_bytes "$tmp/o" "$tmp/pat" $((4 * 4096)) &&
	msg set writeback_low 10 && msg set writeback_high 50 &&
	msg set max_dirty_age 30
}

# passthrough: clean cached blocks are not served; a write drops the
# cached copy of what it touches; nothing new is cached.
step_passthrough() {
	msg mode passthrough || return 1
	reset && rd 0 && rd 500 && wr 1 && wr 600 && sleep 0.3 &&
	expect read_hits=0 read_misses=2 write_hits=1 write_misses=1 \
		promotions=0 blocks_used=34 blocks_dirty=0
}

step_back_to_writethrough() {
	msg mode writethrough || return 1
	# block 1 was dropped: a miss (promoted again); block 0 still a hit
	reset && rd 0 && rd 1 && wait_promotions 1 &&
	expect read_hits=1 read_misses=1 promotions=1 blocks_used=35
}

# promote_after N: N misses of a block, the Nth promotes, then hits
step_promote_after() { # <N> <first block>
	local n=$1 b=$2 i used
	msg set promote_after "$n" || return 1
	used=$(st blocks_used)
	for ((i = 1; i < n; i++)); do
		reset && rd "$b" 8 && sleep 0.5 &&
		expect read_misses=8 read_hits=0 promotions=0 blocks_used="$used" ||
			{ ktap_print_msg "pass $i"; return 1; }
	done
	reset && rd "$b" 8 && wait_promotions 8 &&
	expect read_misses=8 read_hits=0 promotions=8 blocks_used=$((used + 8)) ||
		{ ktap_print_msg "pass $n"; return 1; }
	reset && rd "$b" 8 && sleep 0.3 &&
	expect read_hits=8 read_misses=0 promotions=0 ||
		{ ktap_print_msg "pass $((n + 1))"; return 1; }
	msg set promote_after 1
}

# ------------------------------------------------ hot set, scan, bypass

HOT_RATIO=

# invalidate, then one pass over the hot set (fills), then the measured one
step_one_pass_ratio() {
	msg invalidate && reset && hot_pass && wait_promotions "$HOT_BLOCKS" &&
	expect read_misses="$HOT_BLOCKS" promotions="$HOT_BLOCKS" \
		blocks_used="$HOT_BLOCKS" || return 1
	reset && hot_pass || return 1
	HOT_RATIO=$(hit_ratio)
	echo "$HOT_RATIO" >"$tmp/hot_ratio"
	ktap_print_msg "hit ratio of the second pass over a $HOT_MIB MiB hot set: $HOT_RATIO% ($(st read_hits) hits, $(st read_misses) misses)"
	expect read_hits="$HOT_BLOCKS" read_misses=0
}

# scan_case <policy> <cutoff KiB>: hot set read twice, a 64 MiB sequential
# scan, hot set again; prints the ratio, sets SCAN_RATIO and SCAN_BYPASSED
scan_case() {
	local policy=$1 cutoff=$2
	msg policy "$policy" && msg set sequential_cutoff 4096 &&
	msg invalidate && reset && hot_pass && wait_promotions "$HOT_BLOCKS" &&
	hot_pass &&
	msg set sequential_cutoff "$cutoff" || return 1
	reset && scan || return 1
	SCAN_BYPASSED=$(st bypassed)
	ktap_print_msg "scan ($policy, cutoff $cutoff KiB): read_misses=$(st read_misses) bypassed=$SCAN_BYPASSED promotions=$(st promotions) demotions=$(st demotions)"
	sleep 0.5
	reset && hot_pass || return 1
	SCAN_RATIO=$(hit_ratio)
	ktap_print_msg "hot set after the scan: hit ratio $SCAN_RATIO% ($(st read_hits) hits, $(st read_misses) misses)"
}

# A 1 MiB read stream with 9 random 4 KiB reads between two of its reads
# (more than the 8 stream slots): still a stream, so after the cutoff's
# worth every block of it bypasses.  Least-recently-used slots lost it to
# the random reads: nothing bypassed, every stream read promoted.
step_interleaved_stream() {
	local i j
	msg policy 2q && msg set sequential_cutoff "$SCAN_CUTOFF_KIB" &&
		msg invalidate && reset || return 1
	for ((i = 0; i < 8; i++)); do
		dd if="$DEV" of=/dev/null bs=1M skip=$((64 + i)) count=1 iflag=direct status=none ||
			return 1
		for ((j = 0; j < 9; j++)); do
			rd $((30000 + i * 128 + j * 13)) || return 1
		done
	done
	ktap_print_msg "stream among random reads: bypassed=$(st bypassed) read_misses=$(st read_misses) promotions=$(st promotions)"
	[ "$(st bypassed)" -eq $((7 * 256)) ]
}

step_bypass_2q() {
	scan_case 2q "$SCAN_CUTOFF_KIB" || return 1
	# the first cutoff's worth of the stream is cached, the rest bypasses
	[ "$SCAN_BYPASSED" -eq $((SCAN_BLOCKS - SCAN_CUTOFF_KIB / 4)) ] &&
		[ "$SCAN_RATIO" -ge 90 ]
}

step_bypass_lru() {
	scan_case lru "$SCAN_CUTOFF_KIB" || return 1
	[ "$SCAN_BYPASSED" -eq $((SCAN_BLOCKS - SCAN_CUTOFF_KIB / 4)) ] &&
		[ "$SCAN_RATIO" -ge 90 ]
}

# (bypassed need not be 0 here: a miss finding no free block, evicted ones
# waiting for a commit, goes around the cache too)
step_scan_resistance_2q() {
	scan_case 2q 0 || return 1
	[ "$SCAN_RATIO" -ge 90 ]
}

# control: the same scan without bypass under lru evicts the hot set, so
# the two cases above measure something
step_control_lru() {
	scan_case lru 0 || return 1
	[ "$SCAN_RATIO" -lt 50 ]
}

# hot_write <MiB offset>: one random-order pass of 4 KiB writes over a
# hot-set-sized region
hot_write() {
	fio --name=hotw --filename="$DEV" --rw=randwrite --bs=4k \
		--offset=$(($1 << 20)) --size=$((HOT_MIB << 20)) \
		--ioengine=psync --direct=1 --randrepeat=0 --output=/dev/null
}

# 2q in writeback: blocks hit while cached keep their place when
# writeback cleans them.  Hot set A is read twice (protected) then
# written; hot set B, never read, is written twice (rewritten while
# dirty).  After the flush a scan with no bypass churns the cache: both
# must still hit (a cleaned block put back on probation is evicted).
step_cleaned_hot_2q() {
	local b_off=$((HOT_OFF_MIB + HOT_MIB)) ratio
	msg policy 2q && msg mode writethrough && msg set sequential_cutoff 4096 &&
	msg invalidate && reset && hot_pass && wait_promotions "$HOT_BLOCKS" &&
	hot_pass || return 1
	msg set writeback_high 100 && msg set writeback_low 100 &&
	msg set max_dirty_age 0 && msg mode writeback &&
	hot_write "$HOT_OFF_MIB" && hot_write "$b_off" && hot_write "$b_off" &&
	expect blocks_dirty=$((2 * HOT_BLOCKS)) &&
	msg flush && wait_clean && msg mode writethrough &&
	msg set writeback_low 10 && msg set writeback_high 50 &&
	msg set max_dirty_age 30 && msg set sequential_cutoff 0 || return 1
	reset && scan && sleep 0.5 || return 1
	ktap_print_msg "scan: read_misses=$(st read_misses) promotions=$(st promotions) demotions=$(st demotions)"
	reset && hot_pass && ratio=$(hit_ratio) || return 1
	ktap_print_msg "hot set A (read, then written) after the scan: hit ratio $ratio%"
	[ "$ratio" -ge 90 ] || return 1
	reset && fio --name=hotb --filename="$DEV" --rw=randread --bs=4k \
		--offset=$((b_off << 20)) --size=$((HOT_MIB << 20)) \
		--ioengine=psync --direct=1 --randrepeat=0 --output=/dev/null &&
	ratio=$(hit_ratio) || return 1
	ktap_print_msg "hot set B (written twice) after the scan: hit ratio $ratio%"
	[ "$ratio" -ge 90 ] || return 1
	# the written data reached the origin and reads back the same
	msg set sequential_cutoff 4096 &&
	cmp <(dd if="$DEV" bs=1M skip="$HOT_OFF_MIB" count=$((2 * HOT_MIB)) iflag=direct status=none) \
		<(dd if="$ORIGIN" bs=1M skip="$HOT_OFF_MIB" count=$((2 * HOT_MIB)) iflag=direct status=none)
}

# ------------------------------------------------------------ messages

# what must not change when a message or sysfs write is refused: the
# table and the status line without the commit counters (a commit runs
# every second)
snapshot() {
	dmsetup table "$NAME"
	status_line | tr ' ' '\n' | grep -vE '^(commits|seq)='
}

# good_msg <check> <message...>: accepted, and <check> (a command) holds
good_msg() {
	local check=$1
	shift
	msg "$@" || { ktap_print_msg "message '$*' refused"; return 1; }
	eval "$check" || { ktap_print_msg "after '$*': check failed: $check"; return 1; }
}

# bad_msg <message...>: refused with a kernel log line, nothing changed
bad_msg() {
	local before after
	before=$(snapshot)
	dmesg_mark
	if msg "$@" 2>/dev/null; then
		ktap_print_msg "message accepted"
		return 1
	fi
	after=$(snapshot)
	if [ "$before" != "$after" ]; then
		ktap_print_msg "changed: $(diff <(echo "$before") <(echo "$after") | grep '^[<>]' | tr '\n' ' ')"
		return 1
	fi
	if ! dmesg_contains "vmcache: $NAME: message"; then
		ktap_print_msg "no kernel log line for the refused message"
		return 1
	fi
	ktap_print_msg "$(dmesg_since_mark | grep -E "vmcache: $NAME" | head -n 1 | sed 's/.*vmcache: //')"
}

table_has() { # <key> <value>
	[[ " $(dmsetup table "$NAME") " == *" $1 $2 "* ]]
}

sysfs_is() { # <key> <value>
	[ "$(cat "$SYSFS/$1")" = "$2" ]
}

# every status key has a sysfs file holding the same value
sysfs_matches_status() {
	local kv k v f rc=0 n=0
	for kv in $(status_line); do
		k=${kv%%=*}
		v=${kv#*=}
		f=$SYSFS/$k
		[ "$k" = commits ] || [ "$k" = seq ] && { [ -r "$f" ] || { ktap_print_msg "no $f"; rc=1; }; continue; }
		if [ ! -r "$f" ]; then
			ktap_print_msg "no sysfs file for status key $k"
			rc=1
		elif [ "$(cat "$f")" != "$v" ]; then
			ktap_print_msg "$k: status $v, sysfs $(cat "$f")"
			rc=1
		fi
		n=$((n + 1))
	done
	ktap_print_msg "$n status keys compared"
	return "$rc"
}

# every online tunable is a writable file with the table's value
sysfs_tunables() {
	local -a w
	local i rc=0
	read -r -a w <<<"$(dmsetup table "$NAME")"
	for ((i = 6; i < ${#w[@]}; i += 2)); do
		case ${w[$i]} in
		must_exist) continue ;;
		esac
		if [ ! -r "$SYSFS/${w[$i]}" ]; then
			ktap_print_msg "no sysfs file ${w[$i]}"
			rc=1
		elif [ "$(cat "$SYSFS/${w[$i]}")" != "${w[$((i + 1))]}" ]; then
			ktap_print_msg "${w[$i]}: table ${w[$((i + 1))]}, sysfs $(cat "$SYSFS/${w[$i]}")"
			rc=1
		fi
	done
	return "$rc"
}

sysfs_good() { # <key> <value>
	echo "$2" >"$SYSFS/$1" || { ktap_print_msg "write $2 to $1 failed"; return 1; }
	sysfs_is "$1" "$2" && table_has "$1" "$2"
}

# sysfs_bad <key> <value>: the write fails, nothing changed
sysfs_bad() {
	local before after
	before=$(snapshot)
	if (echo "$2" >"$SYSFS/$1") 2>/dev/null; then
		ktap_print_msg "write of '$2' to $1 accepted"
		return 1
	fi
	after=$(snapshot)
	if [ "$before" != "$after" ]; then
		ktap_print_msg "changed: $(diff <(echo "$before") <(echo "$after") | grep '^[<>]' | tr '\n' ' ')"
		return 1
	fi
}

# a cache device in use by one vmcache table must not be taken by another
# (two writers of one metadata region corrupt it)
second_table_refused() {
	local before after
	before=$(snapshot)
	dmesg_mark
	if dmsetup create vmc_cnt2 --table "0 $OSZ vmcache $CACHE $ORIGIN" 2>/dev/null; then
		ktap_print_msg "accepted: a second table on $CACHE: $(dmsetup status vmc_cnt2 | cut -d' ' -f4-9)"
		dmsetup remove vmc_cnt2
		return 1
	fi
	dm_exists vmc_cnt2 && { dmsetup remove vmc_cnt2; return 1; }
	ktap_print_msg "$(dmesg_since_mark | grep -E 'vmcache' | head -n 1 | sed 's/.*vmcache: //')"
	after=$(snapshot)
	[ "$before" = "$after" ]
}

step_commit() {
	local s0
	s0=$(st seq)
	msg commit && [ "$(st seq)" -gt "$s0" ]
}

# ---------------------------------------------------------------- main

setup_brd 1 "$CACHE_MIB" && setup_null_blk "$NULLB" "$ORIGIN_MIB" blocksize=512 ||
	ktap_skip_all "cannot set up brd/null_blk"
OSZ=$(dev_sectors "$ORIGIN")
make_pattern "$tmp/pat" 1

BAD_MSGS=(
	"set promote_after 0"
	"set promote_after 256"
	"set promote_after 4294967297"
	"set promote_after 5x"
	"set promote_after"
	"set promote_after 5 6"
	"set sequential_cutoff 1048577"
	"set sequential_cutoff lots"
	"set writeback_low 60"
	"set writeback_high 5"
	"set block_size 8192"
	"set must_exist 1"
	"set colour blue"
	"mode writearound"
	"mode"
	"policy fifo"
	"stats"
	"stats clear"
	"flush now"
	"invalidate all"
	"commit now"
	"bogus"
)
BAD_SYSFS=(
	"promote_after 0"
	"promote_after 256"
	"promote_after abc"
	"sequential_cutoff 1048577"
	"writeback_low 90"
	"writeback_high 60"
	"mode writearound"
	"policy fifo"
	"max_dirty_age 3601"
	"promote_after 0000000000000000000000000000000000000000007"
	"block_size 8192"
	"read_hits 0"
	"blocks_dirty 0"
)

PLAN=$((1 + 14 + 1 + 6 + 1 + 1 + 11 + ${#BAD_MSGS[@]} + 4 + 2 + ${#BAD_SYSFS[@]} + 2))
ktap_print_header
ktap_set_plan "$PLAN"
DMESG_START="vmcache_counters-start-$$-$RANDOM"
echo "$DMESG_START" >/dev/kmsg

# --- 1 + 14: the exact sequence (writethrough, then writeback,
# passthrough, promote_after)
if create "2 mode writethrough"; then
	ktap_test_pass "create: writethrough, 2q, promote_after 1"
	ktap_test_result "16 reads of uncached blocks: 16 misses, 16 promotions, 16 blocks used" step_first_reads
	ktap_test_result "the same 16 reads again: 16 hits, no promotion" step_second_reads
	ktap_test_result "writethrough: 8 writes to cached blocks are hits, 8 to new blocks misses, nothing dirty" step_writethrough_writes
	ktap_test_result "the 8 written blocks read back: 8 hits, data exact" step_written_read_back
	ktap_test_result "512 B write caches one sector; 4 KiB read: 1 hit, 1 miss reading 7 sectors from the origin" step_subblock
	ktap_test_result "writeback: 10 new blocks, 4 cached, 2 rewritten: 10 misses, 6 hits, 14 dirty" step_writeback
	ktap_test_result "writeback: dirty blocks read back as hits, origin not yet written" step_writeback_not_on_origin
	ktap_test_result "flush message: 14 blocks written back, 0 dirty, origin holds the data" step_flush
	ktap_test_result "passthrough: cached blocks not served, a write drops its block, nothing promoted" step_passthrough
	ktap_test_result "writethrough again: the dropped block misses and is promoted, the other hits" step_back_to_writethrough
	ktap_test_result "promote_after 2: promoted on the 2nd miss, hit on the 3rd read" step_promote_after 2 1000
	ktap_test_result "promote_after 3: promoted on the 3rd miss, hit on the 4th read" step_promote_after 3 1100
	ktap_test_result "data of every touched block identical on the device and the origin" \
		bash -c "cmp <(dd if=$DEV bs=4k count=1200 iflag=direct status=none) <(dd if=$ORIGIN bs=4k count=1200 iflag=direct status=none)"
	ktap_test_result "kernel log clean" check_dmesg_clean
else
	ktap_test_fail "create: writethrough, 2q, promote_after 1"
	for ((i = 0; i < 14; i++)); do
		ktap_test_skip "exact sequence step $((i + 1))" "create failed"
	done
fi

# --- 1 + 6 + 1: hot set, bypass, scan resistance, cleaned hot set
ktap_test_result "hit ratio after one pass over a $HOT_MIB MiB hot set is 100% ($HOT_BLOCKS hits)" step_one_pass_ratio
ktap_test_result "2q, cutoff $SCAN_CUTOFF_KIB KiB: $SCAN_MIB MiB stream bypasses after the cutoff, hot set hit ratio >= 90%" step_bypass_2q
ktap_test_result "lru, cutoff $SCAN_CUTOFF_KIB KiB: stream bypasses, hot set hit ratio >= 90%" step_bypass_lru
ktap_test_result "2q, cutoff $SCAN_CUTOFF_KIB KiB: a stream among random reads (9 between two of its reads) still bypasses after the cutoff" step_interleaved_stream
ktap_test_result "2q, sequential_cutoff 0: scan resistance, hot set hit ratio >= 90%" step_scan_resistance_2q
ktap_test_result "control: lru, sequential_cutoff 0: the scan evicts the hot set (hit ratio < 50%)" step_control_lru
ktap_test_result "2q, writeback: hot blocks cleaned by writeback survive a scan (hit ratio >= 90%), data exact" step_cleaned_hot_2q
ktap_test_result "kernel log clean" check_dmesg_clean

# --- 1 + 10 + bad: messages
msg policy 2q >/dev/null 2>&1 || true
msg set sequential_cutoff 4096 >/dev/null 2>&1 || true
ktap_test_result "sysfs: every status key has a file with the status value" sysfs_matches_status
ktap_test_result "message set promote_after 4: table and sysfs show it" \
	good_msg "table_has promote_after 4 && sysfs_is promote_after 4" set promote_after 4
ktap_test_result "message set sequential_cutoff 2048" \
	good_msg "table_has sequential_cutoff 2048" set sequential_cutoff 2048
ktap_test_result "message set mode writeback (set form of the mode switch)" \
	good_msg "[ \$(st mode) = writeback ] && table_has mode writeback" set mode writeback
ktap_test_result "message mode writethrough" \
	good_msg "[ \$(st mode) = writethrough ]" mode writethrough
ktap_test_result "message policy lru, then policy 2q" \
	good_msg "[ \$(st policy) = lru ] && msg policy 2q && [ \$(st policy) = 2q ]" policy lru
ktap_test_result "message commit: seq advances" step_commit
ktap_test_result "a second vmcache table on the cache device in use is refused" second_table_refused
ktap_test_result "message flush on a clean cache: flush=idle" \
	good_msg "[ \$(st flush) = idle ] && [ \$(st blocks_dirty) = 0 ]" flush
rd 0 4 || true
ktap_test_result "message stats reset: counters zero" \
	good_msg "expect read_hits=0 read_misses=0 write_hits=0 write_misses=0 bypassed=0 promotions=0 demotions=0" stats reset
ktap_test_result "message invalidate: every clean block dropped" \
	good_msg "expect blocks_used=0 blocks_dirty=0" invalidate
ktap_test_result "message with a table's worth of changes round-trips: reload the printed line" \
	bash -c "t=\$(dmsetup table $NAME) && dmsetup reload $NAME --table \"\$t\" && dmsetup resume $NAME && [ \"\$(dmsetup table $NAME)\" = \"\$t\" ]"
for m in "${BAD_MSGS[@]}"; do
	read -r -a words <<<"$m"
	ktap_test_result "refused message '$m', nothing changed" bad_msg "${words[@]}"
done

# --- 4 + 2 + bad: sysfs (suspend/resume of the same table: vmcache_persist.sh)
ktap_test_result "sysfs: each online tunable is a file with the table's value" sysfs_tunables
ktap_test_result "sysfs: write promote_after 7" sysfs_good promote_after 7
ktap_test_result "sysfs: write policy lru" sysfs_good policy lru
ktap_test_result "sysfs: write mode writeback" sysfs_good mode writeback
ktap_test_result "sysfs: write mode writethrough" sysfs_good mode writethrough
ktap_test_result "sysfs: write writeback_high 80 then writeback_low 70" \
	bash -c "echo 80 > $SYSFS/writeback_high && echo 70 > $SYSFS/writeback_low && [ \$(cat $SYSFS/writeback_low) = 70 ]"
for s in "${BAD_SYSFS[@]}"; do
	ktap_test_result "sysfs: write '${s#* }' to ${s%% *} refused, nothing changed" sysfs_bad "${s%% *}" "${s#* }"
done

if remove && ! dm_exists "$NAME" && [ ! -e "$SYSFS" ]; then
	ktap_test_pass "remove: device and sysfs directory gone"
else
	ktap_test_fail "remove: device and sysfs directory gone"
fi
DMESG_MARK=$DMESG_START
ktap_test_result "kernel log clean for the whole test" check_dmesg_clean

[ -s "$tmp/hot_ratio" ] &&
	ktap_print_msg "hit ratio after one pass over the hot set: $(cat "$tmp/hot_ratio")%"
ktap_finished "$PLAN"
