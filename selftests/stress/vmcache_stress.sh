#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# dm-vmcache concurrency stress (not in TEST_PROGS: long).  For
# STRESS_MINUTES (default 10) a vmcache device over emulated disks takes
# concurrent load while a control loop changes everything that can change
# online, every STRESS_PERIOD seconds (default 2):
#
#   load      two fio random writers (4-32 KiB, fsync every 16 writes,
#             crc32c verify of every iteration, new seed each time) on
#             disjoint 40 MiB regions; a fio sequential writer (1 MiB,
#             a stream that bypasses the cache) with verify on a 48 MiB
#             region; two fio writers with fixed byte patterns (0xaa,
#             0x55) overlapping on the same 16 MiB without
#             serialize_overlap, plus a reader there; reads of a 32 MiB
#             reference region checked against its copy by the control
#             loop;
#   control   mode switches (writethrough, writeback, passthrough), policy
#             switches, flush, invalidate, commit, stats reset, "set" of
#             every online tunable, dmsetup suspend/resume, dmsetup reload
#             + resume of the line "dmsetup table" prints, and of other
#             forms of it (options reordered, only some options, none).
#
# At the end the load stops and: flush (in writeback) completes
# (blocks_dirty=0) within 180 s; the overlapped region holds only the writers' patterns and reads
# the same before and after flush + invalidate (and on the origin); a
# final known write over it reads back; fio verify_only of the last
# iteration of every verified writer and the reference region, through the
# device, after remove + recreate (must_exist 1, with dirty data in the
# cache) and on the origin directly after a drain; the kernel log stays
# clean.  Minutes run and bytes verified are printed as diagnostics.
#
# Run (the default per-program timeout of 600 s is too short):
#   selftests/run-in-guest.sh --test-timeout 1500 stress/vmcache_stress.sh
#   selftests/run-in-guest.sh --test-timeout 600 --env STRESS_MINUTES=3 \
#	stress/vmcache_stress.sh
#
# Devices: cache = brd /dev/ram0 (48 MiB: smaller than the 160 MiB
# touched, so blocks are evicted); origin = memory-backed null_blk
# (192 MiB, 50 us completions).
set -euo pipefail
DIR=$(dirname "$0")
# shellcheck source=../lib.sh
. "$DIR/../lib.sh"

require_vmcache
require_cmd fio dd cmp tr wc
require_module null_blk brd

MINUTES=${STRESS_MINUTES:-10}
PERIOD=${STRESS_PERIOD:-2}
NAME=vmc_stress
DEV=/dev/mapper/$NAME
CACHE=/dev/ram0
ORIGIN=/dev/vmc_snullb
CACHE_MIB=48
ORIGIN_MIB=192

# regions (MiB): verified random writers, sequential writer, overlapped
# writers, reference data
V_OFF=0; V_LEN=40	# two jobs: [0,40) and [40,80)
S_OFF=80; S_LEN=48
O_OFF=128; O_LEN=16
R_OFF=144; R_LEN=32

tmp=$(mktemp -d)
cleanup_push "rm -rf $tmp"

# ------------------------------------------------------------ fio jobs

# The fio command of one iteration of the random writers (seed <n>);
# the same with --verify_only checks what that iteration wrote.
fio_v() { # <filename> <seed> [extra...]
	local f=$1 seed=$2
	shift 2
	fio --name=v --filename="$f" --numjobs=2 --offset=$((V_OFF << 20)) \
		--offset_increment=$((V_LEN << 20)) --size=$((V_LEN << 20)) \
		--io_size=$((8 << 20)) --rw=randwrite --bsrange=4k-32k \
		--ioengine=libaio --iodepth=8 --direct=1 --fsync=16 \
		--verify=crc32c --do_verify=1 --verify_fatal=1 \
		--randseed="$seed" --invalidate=0 --group_reporting \
		--output-format=terse "$@"
}

fio_s() { # <filename> <seed> [extra...]
	local f=$1 seed=$2
	shift 2
	fio --name=s --filename="$f" --offset=$((S_OFF << 20)) \
		--size=$((S_LEN << 20)) --rw=write --bs=1M --ioengine=libaio \
		--iodepth=4 --direct=1 --fsync=8 --verify=crc32c --do_verify=1 \
		--verify_fatal=1 --randseed="$seed" --invalidate=0 \
		--output-format=terse "$@"
}

# loop_job <name> <fio function>: iterations until the deadline; the seed
# of the last completed iteration in $tmp/<name>.seed, failures counted in
# $tmp/<name>.fail (first failure's output kept)
loop_job() {
	local name=$1 fn=$2 seed=0 fails=0
	while [ "$(date +%s)" -lt "$DEADLINE" ]; do
		seed=$((seed + 1))
		if "$fn" "$DEV" "$seed" >"$tmp/$name.out" 2>&1; then
			echo "$seed" >"$tmp/$name.seed"
		else
			fails=$((fails + 1))
			[ -f "$tmp/$name.firstfail" ] || cp "$tmp/$name.out" "$tmp/$name.firstfail"
			# a failed iteration leaves unknown data: verify nothing of it
			rm -f "$tmp/$name.seed"
		fi
		echo "$seed $fails" >"$tmp/$name.count"
	done
}

# overlapped writers: fixed patterns, same 16 MiB, time based
overlap_job() {
	fio --filename="$DEV" --offset=$((O_OFF << 20)) --size=$((O_LEN << 20)) \
		--ioengine=libaio --direct=1 --iodepth=8 --time_based \
		--runtime=$((DEADLINE - $(date +%s))) --invalidate=0 \
		--output-format=terse \
		--name=o1 --rw=randwrite --bs=4k --buffer_pattern=0xaa \
		--name=o2 --rw=randwrite --bs=12k --blockalign=4k --buffer_pattern=0x55 \
		--name=o3 --rw=randread --bs=8k >"$tmp/o.out" 2>&1
}

# --------------------------------------------------------- control loop

ACTIONS=0
ACTION_FAILS=0
declare -A ACT_COUNT=()
REF_READS=0

act() { # <label> <command...>
	ACTIONS=$((ACTIONS + 1))
	ACT_COUNT[$1]=$((${ACT_COUNT[$1]:-0} + 1))
	local label=$1
	shift
	if ! "$@" >"$tmp/act.out" 2>&1; then
		ACTION_FAILS=$((ACTION_FAILS + 1))
		[ "$ACTION_FAILS" -le 10 ] &&
			ktap_print_msg "action $label failed: $* ($(tr '\n' ' ' <"$tmp/act.out"))"
	fi
}

reload_with() { # <table>
	dmsetup reload "$NAME" --table "$1" && dmsetup resume "$NAME"
}

# the printed table with its option pairs in reverse order
reversed_table() {
	local -a w
	local i out
	read -r -a w <<<"$(dmsetup table "$NAME")"
	out="${w[*]:0:6}"
	for ((i = ${#w[@]} - 2; i >= 6; i -= 2)); do
		out+=" ${w[$i]} ${w[$((i + 1))]}"
	done
	echo "$out"
}

# the printed table with only some options (the rest from the defaults)
partial_table() {
	local -a w
	read -r -a w <<<"$(dmsetup table "$NAME")"
	echo "${w[*]:0:5} 4 mode ${1:-writeback} policy ${2:-2q}"
}

ref_read() { # a random MiB of the reference region reads back
	local i=$((RANDOM % R_LEN))
	REF_READS=$((REF_READS + 1))
	dd if="$DEV" bs=1M skip=$((R_OFF + i)) count=1 iflag=direct status=none >"$tmp/refpiece" &&
		cmp -s "$tmp/refpiece" <(dd if="$tmp/ref" bs=1M skip="$i" count=1 status=none) || {
		ktap_print_msg "reference MiB $i read back wrong"
		return 1
	}
}

pick() { # <words...>: one at random
	local a=("$@")
	echo "${a[$((RANDOM % ${#a[@]}))]}"
}

control_step() {
	local step=$1 lo
	case $((step % 16)) in
	0) act mode msg mode writeback ;;
	1) act mode msg mode "$(pick writethrough passthrough writeback)" ;;
	2) act policy msg policy "$(pick 2q lru)" ;;
	3) act flush msg flush ;;
	4) act invalidate msg invalidate ;;
	5) act set msg set promote_after "$(pick 1 2 3)"
	   act set msg set sequential_cutoff "$(pick 0 512 4096 65536)" ;;
	6) lo=$(pick 0 5 10 30)
	   act set msg set writeback_high 100
	   act set msg set writeback_low "$lo"
	   act set msg set writeback_high "$(pick "$lo" 50 90 100)" ;;
	7) act set msg set max_dirty_age "$(pick 0 1 5 30)"
	   act set msg set writeback_max_inflight "$(pick 1 8 64 1024)"
	   act set msg set writeback_floor "$(pick 0 64 4096 1048576)"
	   act set msg set writeback_sort "$(pick 0 1)"
	   act set msg set writeback_retries "$(pick 1 8 64)" ;;
	8) act suspend dmsetup suspend "$NAME"
	   sleep 0.3
	   act resume dmsetup resume "$NAME" ;;
	9) act reload reload_with "$(dmsetup table "$NAME")" ;;
	10) act commit msg commit
	    act stats msg stats reset ;;
	11) act reload-reordered reload_with "$(reversed_table)" ;;
	12) act mode msg mode writeback ;;
	13) act reload-partial reload_with "$(partial_table "$(pick writeback writethrough)" "$(pick 2q lru)")" ;;
	14) act reload-minimal reload_with "$(partial_table writeback 2q | cut -d' ' -f1-5)" ;;
	15) act sysfs-set sysfs_set ;;
	esac
}

sysfs_set() { # a tunable through sysfs
	pick 1 2 >"/sys/module/dm_vmcache/caches/$NAME/promote_after"
}

# ------------------------------------------------------------- checks

# the overlapped region holds only 0x11 (initial), 0xaa and 0x55 bytes
overlap_bytes_ok() { # <file>
	local n
	n=$(tr -d '\021\252\125' <"$1" | wc -c)
	[ "$n" -eq 0 ] || { ktap_print_msg "overlapped region: $n bytes not from any writer"; return 1; }
}

read_region() { # <device> <offset MiB> <MiB> <file>
	dd if="$1" bs=1M skip="$2" count="$3" iflag=direct status=none >"$4"
}

# bytes compared (the checks run in subshells: a file adds them up)
verified() {
	echo "$1" >>"$tmp/verified"
}

verify_all() { # <device>: every region we know the contents of
	local dev=$1 rc=0 seed
	for j in v s; do
		if [ ! -f "$tmp/$j.seed" ]; then
			ktap_print_msg "fio $j: no completed iteration to verify"
			rc=1
			continue
		fi
		seed=$(cat "$tmp/$j.seed")
		if "fio_$j" "$dev" "$seed" --verify_only >"$tmp/verify.out" 2>&1; then
			if [ "$j" = v ]; then verified $((16 << 20)); else verified $((S_LEN << 20)); fi
		else
			ktap_print_msg "fio $j verify_only (seed $seed) on $dev failed:"
			ktap_print_msg "$(grep -iE 'verify|bad|err' "$tmp/verify.out" | head -n 8)"
			rc=1
		fi
	done
	read_region "$dev" "$R_OFF" "$R_LEN" "$tmp/r.back" &&
		compare_bytes "$tmp/r.back" "$tmp/ref" && verified $((R_LEN << 20)) || rc=1
	read_region "$dev" "$O_OFF" "$O_LEN" "$tmp/o.back" &&
		compare_bytes "$tmp/o.back" "$tmp/final" && verified $((O_LEN << 20)) || rc=1
	return "$rc"
}

load_results() {
	local rc=0 j it f
	for j in v s; do
		read -r it f <"$tmp/$j.count" || { it=0; f=0; }
		ktap_print_msg "fio $j: $it iterations, $f failed"
		if [ "$f" -gt 0 ]; then
			ktap_print_msg "$(grep -iE 'verify|bad|err|fio:' "$tmp/$j.firstfail" | head -n 10)"
			rc=1
		fi
		[ "$it" -gt 0 ] || rc=1
	done
	if [ "$O_RC" -ne 0 ]; then
		ktap_print_msg "overlapped writers exited $O_RC: $(grep -iE 'err' "$tmp/o.out" | head -n 5)"
		rc=1
	fi
	return "$rc"
}

controls_ok() {
	local k out=
	for k in "${!ACT_COUNT[@]}"; do
		out+=" $k=${ACT_COUNT[$k]}"
	done
	ktap_print_msg "control actions: $ACTIONS ($out ), $ACTION_FAILS failed; reference reads $REF_READS"
	[ "$ACTION_FAILS" -eq 0 ]
}

overlap_stable() {
	msg mode writeback || return 1
	read_region "$DEV" "$O_OFF" "$O_LEN" "$tmp/o1" || return 1
	overlap_bytes_ok "$tmp/o1" || return 1
	drain || return 1
	msg invalidate || return 1
	read_region "$DEV" "$O_OFF" "$O_LEN" "$tmp/o2" || return 1
	compare_bytes "$tmp/o1" "$tmp/o2" || { ktap_print_msg "changed across flush + invalidate"; return 1; }
	read_region "$ORIGIN" "$O_OFF" "$O_LEN" "$tmp/o3" || return 1
	compare_bytes "$tmp/o1" "$tmp/o3" || { ktap_print_msg "origin differs from the device"; return 1; }
	verified $((3 * (O_LEN << 20)))
}

flush_bounded() {
	local i
	msg flush || return 1
	for ((i = 0; i < 1800; i++)); do
		[ "$(st blocks_dirty)" = 0 ] && [ "$(st flush)" = idle ] && {
			ktap_print_msg "drained in $((i / 10)) s"
			return 0
		}
		sleep 0.1
	done
	ktap_print_msg "not drained after 180 s: $(status_line)"
	return 1
}

final_write() { # a known write over the overlapped region, dirty in the cache
	msg mode writeback &&
	msg set max_dirty_age 0 && msg set writeback_high 100 && msg set writeback_low 100 &&
	dd if="$tmp/final" of="$DEV" bs=1M seek="$O_OFF" oflag=direct conv=fsync status=none &&
	read_region "$DEV" "$O_OFF" "$O_LEN" "$tmp/o4" && compare_bytes "$tmp/o4" "$tmp/final" &&
	ktap_print_msg "dirty blocks before the remove: $(st blocks_dirty)"
}

recreate() {
	local table
	table=$(dmsetup table "$NAME") || return 1
	dm_remove "$NAME" || return 1
	dmsetup create "$NAME" --table "${table/ must_exist 0/ must_exist 1}" || return 1
	wait_for_dev "$DEV" && verify_all "$DEV"
}

on_origin() {
	drain && verify_all "$ORIGIN"
}

# ---------------------------------------------------------------- main

DMESG_START="vmcache_stress-start-$$-$RANDOM"
echo "$DMESG_START" >/dev/kmsg
PLAN=10
ktap_print_header
ktap_set_plan "$PLAN"

if ! setup_brd 1 "$CACHE_MIB" ||
   ! setup_null_blk vmc_snullb "$ORIGIN_MIB" irqmode=2 completion_nsec=50000; then
	ktap_skip_all "cannot set up brd/null_blk"
fi
OSZ=$(dev_sectors "$ORIGIN")
make_pattern "$tmp/ref" "$R_LEN"
make_pattern "$tmp/final" "$O_LEN"
head -c $((O_LEN << 20)) /dev/zero | tr '\0' '\021' >"$tmp/o.init"
wipe_dev "$CACHE" 2
if dm_create "$NAME" "0 $OSZ vmcache $CACHE $ORIGIN 2 mode writeback" &&
   dd if="$tmp/ref" of="$DEV" bs=1M seek="$R_OFF" oflag=direct conv=fsync status=none &&
   dd if="$tmp/o.init" of="$DEV" bs=1M seek="$O_OFF" oflag=direct conv=fsync status=none; then
	ktap_test_pass "setup: writeback cache ${CACHE_MIB} MiB over a ${ORIGIN_MIB} MiB origin, reference data written"
else
	ktap_test_fail "setup: writeback cache ${CACHE_MIB} MiB over a ${ORIGIN_MIB} MiB origin, reference data written"
	ktap_exit_fail_msg "cannot set up the device"
fi

T0=$(date +%s)
DEADLINE=$((T0 + MINUTES * 60))
ktap_print_msg "load for $MINUTES min, control step every $PERIOD s"
loop_job v fio_v &
V_PID=$!
loop_job s fio_s &
S_PID=$!
overlap_job &
O_PID=$!
# stop the load if the test dies early
cleanup_push "kill $V_PID $S_PID $O_PID 2>/dev/null; wait"

step=0
while [ "$(date +%s)" -lt "$DEADLINE" ]; do
	control_step "$step"
	act ref-read ref_read
	step=$((step + 1))
	sleep "$PERIOD"
done
# the last control step may have left passthrough or a suspended device
act mode msg mode writeback
if [[ $(dmsetup info "$NAME") == *SUSPENDED* ]]; then
	act resume dmsetup resume "$NAME"
fi
wait "$V_PID" || true
wait "$S_PID" || true
O_RC=0
wait "$O_PID" || O_RC=$?
ELAPSED=$(($(date +%s) - T0))
ktap_print_msg "load ran $((ELAPSED / 60)) min $((ELAPSED % 60)) s; status: $(status_line)"

ktap_test_result "fio: every iteration of every writer verified (crc32c) under load" load_results
ktap_test_result "control loop: every mode/policy/flush/invalidate/set/suspend/reload succeeded" controls_ok
ktap_test_result "flush completes: blocks_dirty=0 within 180 s" flush_bounded
ktap_test_result "overlapped writes: only writers' bytes, same before and after flush + invalidate and on the origin" overlap_stable
ktap_test_result "final known write over the overlapped region reads back (dirty)" final_write
ktap_test_result "all regions verified through the device" verify_all "$DEV"
ktap_test_result "remove with dirty data, recreate with must_exist 1: all regions verified" recreate
ktap_test_result "drained: all regions verified on the origin directly" on_origin
DMESG_MARK=$DMESG_START
ktap_test_result "kernel log clean" check_dmesg_clean
ktap_print_msg "minutes run: $((ELAPSED / 60)).$(((ELAPSED % 60) * 10 / 60)); bytes verified: $(awk '{ s += $1 } END { print s + 0 }' "$tmp/verified" 2>/dev/null || echo 0); total runtime $(($(date +%s) - T0)) s"

ktap_finished "$PLAN"
