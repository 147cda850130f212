#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# dm-vmcache crash replay at every flush point.
#
# Both devices of a vmcache device sit on ONE dm-log-writes device, so
# that one log orders the writes to both: a dm-linear "combined" device
# over one RAM disk (cache area, then origin area) under a log-writes
# device logging to a second RAM disk, and dm-linear slices of the
# log-writes device as the cache and the origin of the vmcache device.
#
# A workload runs in writeback mode with random 4 KiB writes, each 512-byte
# sector stamped with its offset and the write's generation (so the
# content expected at any point is known): fsync'ed and unflushed batches,
# background writeback (low watermarks), O_DSYNC (FUA) writes, a switch to
# writethrough and back with writes during the drain, a "commit" message,
# a "flush" drain with writes during it, a clean remove.  Marks in the log
# name the points: "sync:G" (generations up to G acknowledged and flushed),
# "issued:G" (no generation above G issued yet), "mode:M" (the table an
# administrator would load after a crash from then on).
#
# tools/replay-log then picks crash points after the format: flush and FUA
# entries, entries between two flushes (inside metadata commits and
# writeback copies), and flush intervals replayed with only a subset of
# their unflushed writes (odd ranks, even ranks, a seeded random half: a
# volatile write cache losing any of them).  For each point the log is
# replayed onto fresh RAM disk areas (zero, as the live devices started),
# and:
#  - the cache loads with must_exist 1 (the mode of the point);
#  - every write acknowledged before the last flush (sync mark) reads back
#    exactly; other blocks hold that version or a later unflushed one;
#  - reads are stable: the whole device read, then "invalidate" (clean
#    blocks dropped) and read again, then a drain ("flush" until
#    blocks_dirty=0), "invalidate" and read again: all three identical (a
#    block never reads one version from the cache and later an older one
#    from the origin);
#  - after the drain and remove, the origin holds what the device returned;
#  - vmcachectl check: the crashed image has no errors; after the remove it
#    is clean.
# Two passes: block_size 4096, then block_size 65536 with the same 4 KiB
# writes (sub-block writes).  Each check is one test case per pass; the
# points that fail it are listed as diagnostics with their evidence.
#
# Environment: VMCACHE_REPLAY_POINTS=<flushes>,<inside>,<subsets> for
# the 4 KiB pass (default 22,8,4; subsets are replayed three ways), the
# 64 KiB pass takes half; VMCACHE_REPLAY_BUDGET: seconds for the whole test
# (default 330; the 4 KiB pass stops replaying at 60 % of it): points left
# when it runs out are reported, not run.  VMCACHE_REPLAY_VERBOSE=1 lists
# every point replayed.  VMCACHE_REPLAY_OPTS: more table options for
# every load (vmcache_crc.sh: "data_crc 1"); VMCACHE_REPLAY_PASSES: the
# passes to run, "4k,64k" by default.
set -euo pipefail
DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$DIR/lib.sh"

require_vmcache
require_cmd dd cmp vmcachectl
require_module dm-log-writes brd
REPLAY=$DIR/tools/replay-log
[ -x "$REPLAY" ] || ktap_skip_all "$REPLAY not built (make -C selftests)"

CACHE_MIB=5
ORIGIN_MIB=4
TOTAL_MIB=$((CACHE_MIB + ORIGIN_MIB))
CACHE_SECT=$((CACHE_MIB * 2048))
ORIGIN_SECT=$((ORIGIN_MIB * 2048))
TOTAL_SECT=$((TOTAL_MIB * 2048))
RAM_MIB=64
LIVE=/dev/ram0		# the live devices, then the replay base
LOGDEV=/dev/ram1	# the log
WORK=/dev/ram2		# one crash point's devices
BASE=$LIVE
NAME=vmr		# the vmcache device (lib.sh: st, msg, drain)
DEV=/dev/mapper/$NAME
RCACHE=/dev/mapper/vmr_rcache
RORIGIN=/dev/mapper/vmr_rorigin
HOLD="writeback_low 100 writeback_high 100 max_dirty_age 0 sequential_cutoff 0${VMCACHE_REPLAY_OPTS:+ $VMCACHE_REPLAY_OPTS}"
PASSES=${VMCACHE_REPLAY_PASSES:-4k,64k}
IFS=, read -r NFLUSH NINSIDE NSUBSET <<<"${VMCACHE_REPLAY_POINTS:-22,8,4}"
BUDGET=${VMCACHE_REPLAY_BUDGET:-330}

tmp=$(mktemp -d)
cleanup_push "rm -rf $tmp"
if [ -n "${VMCACHE_REPLAY_TRACE:-}" ]; then
	PS4='+ ${EPOCHREALTIME} '
	set -x
fi

# ------------------------------------------------------------ helpers

lmark() { # <name>: a mark in the log
	dmsetup message vmr_log 0 mark "$1"
}

zero_area() { # <device>: the cache and origin areas
	dd if=/dev/zero of="$1" bs=1M count="$TOTAL_MIB" oflag=direct status=none
}

wait_clean() { # <seconds>: blocks_dirty=0 and flush=idle
	local i
	for ((i = 0; i < $1 * 10; i++)); do
		[ "$(st blocks_dirty)" = 0 ] && [ "$(st flush)" = idle ] && return 0
		sleep 0.1
	done
	ktap_print_msg "not clean after $1 s: $(status_line)"
	return 1
}

opts() { # <key> <value>...: "<count> <key> <value>..." for a table line
	echo "$# $*"
}

# the live stack, whatever of it exists, top down
live_down() {
	local d
	for d in "$NAME" vmr_origin vmr_cache vmr_log vmr_comb; do
		if dm_exists "$d"; then
			dm_remove "$d" || return 1
		fi
	done
}

read_dev() { # <device> <file>
	dd if="$1" of="$2" bs=1M count="$ORIGIN_MIB" iflag=direct status=none
}

# ------------------------------------------------------------- workload

GEN=0
SEED=1

# batch <count> [--fsync|--dsync]: random stamped 4 KiB writes through the
# cache, then an "issued" mark
batch() {
	local n=$1 last
	shift
	last=$("$REPLAY" write "$DEV" --journal "$JOURNAL" --first-gen $((GEN + 1)) \
		--count "$n" --seed $((SEED * 100000 + GEN)) "$@") || return 1
	GEN=$last
	lmark "issued:$GEN"
}

wmsg() { # <message...>: to the live cache, the kernel's reason on failure
	msg "$@" || {
		ktap_print_msg "message '$*' failed: $(dmesg | grep -E 'vmcache|device-mapper' | tail -n 2)"
		return 1
	}
}

# the first eighth of the device (where half the writes go) read: cached
# clean blocks for the writes to hit (with 64 KiB blocks a 4 KiB write miss
# goes around the cache)
hot_read() {
	dd if="$DEV" of=/dev/null bs=64k count=$((ORIGIN_MIB * 2)) iflag=direct status=none &&
	sleep 1
}

synced() {
	lmark "sync:$GEN"
}

# the log-writes stack and the cache over it, formatted
# shellcheck disable=SC2086 # HOLD: words
stack_up() { # <block size>
	zero_area "$LIVE" &&
	setup_linear vmr_comb "$LIVE" "$TOTAL_SECT" &&
	dm_create vmr_log "0 $TOTAL_SECT log-writes /dev/mapper/vmr_comb $LOGDEV" &&
	setup_linear vmr_cache /dev/mapper/vmr_log "$CACHE_SECT" 0 &&
	setup_linear vmr_origin /dev/mapper/vmr_log "$ORIGIN_SECT" "$CACHE_SECT" &&
	dm_create "$NAME" "0 $ORIGIN_SECT vmcache /dev/mapper/vmr_cache /dev/mapper/vmr_origin $(opts mode writeback $HOLD block_size "$1")" &&
	lmark formatted
}

# The workload; the kernel-side steps (writeback, mode switch, commit,
# drain) are marked in the log for the diagnostics.
workload() {
	local entries
	GEN=0
	: >"$JOURNAL"
	stack_up "$BS" || return 1
	hot_read &&						# clean cached blocks
	batch 32 --fsync && synced &&				# fsync'ed
	batch 32 &&						# unflushed
	lmark writeback && wmsg set writeback_low 1 && wmsg set writeback_high 2 &&
	msg set max_dirty_age 1 &&
	batch 32 --fsync && synced && sleep 1 &&		# under writeback
	batch 16 --dsync && synced &&				# FUA
	lmark mode:writethrough && wmsg mode writethrough &&
	batch 24 && wait_clean 30 &&				# during the drain
	batch 24 --fsync && synced &&
	batch 16 &&
	lmark mode:writeback && wmsg mode writeback &&
	wmsg set writeback_high 100 && wmsg set writeback_low 100 &&
	msg set max_dirty_age 0 && hot_read &&
	batch 32 && wmsg commit && lmark commit &&
	batch 32 --fsync && synced &&
	batch 16 &&
	lmark drain && wmsg flush &&
	batch 16 && wmsg flush && wait_clean 30 && lmark drained &&	# during a drain
	batch 32 --fsync && synced &&
	batch 8 || return 1
	ktap_print_msg "$PASS: $GEN writes; at the end: $(status_line)"
	dm_remove "$NAME" && lmark removed || return 1
	entries=$(dmsetup status vmr_log | awk '{ print $4 }')
	live_down || return 1
	"$REPLAY" list "$LOGDEV" >"$tmp/list.$PASS" || return 1
	ktap_print_msg "$PASS: log of $entries entries: $(awk '$2 ~ /FLUSH/ { f++ } $2 ~ /FUA/ { u++ } $2 == "WRITE" { w++ } END { printf "%d FLUSH, %d FUA, %d plain writes", f, u, w }' "$tmp/list.$PASS")"
}

# ---------------------------------------------------------- crash points

CATS="load durable invalidate flush origin check_crash check"
declare -A NFAIL=()

# failed <category> <point label> <evidence...>
failed() {
	local cat=$1 label=$2
	shift 2
	NFAIL[$cat]=$((${NFAIL[$cat]:-0} + 1))
	if [ "${NFAIL[$cat]}" -le 6 ]; then
		{
			echo "$label:"
			printf '%s\n' "$@" | head -n 6 | sed 's/^/  /'
		} >>"$tmp/ev.$PASS.$cat"
	fi
}

BASE_END=-1

# origin_writes <diff output> <entry>: the log entries that wrote the origin
# copy of the first block a diff reports (4 KiB units of the device), up
# to 40 entries past the crash point: when the origin copy landed
origin_writes() {
	local blk s
	blk=$(sed -n 's/^block \([0-9]*\) .*/\1/p' <<<"$1" | head -n 1)
	[ -n "$blk" ] || return 0
	s=$((CACHE_SECT + blk * 8))
	echo "origin writes to block $blk (sector $s of the log device): $(awk -v s="$s" -v n="$2" '
		$1 ~ /^[0-9]+$/ && $4 > 0 && $3 <= s && s < $3 + $4 && $1 <= n + 40 {
			printf "%s%d %s%s", sep, $1, $2, ($1 > n ? " (after the point)" : ""); sep = ", "
		}' "$tmp/list.$PASS")"
}

# replay_point <entry> <policy> <kind>
replay_point() {
	local entry=$1 policy=$2 kind=$3 ctx durable issued mode flush label out rc
	ctx=$("$REPLAY" context "$LOGDEV" "$entry") || return 1
	read -r durable issued mode flush <<<"$(sed -E 's/[a-z]+=//g' <<<"$ctx")"
	label="entry $entry ($kind"
	[ "$policy" = all ] || label="$label: $policy of the unflushed writes after flush entry $flush"
	label="$label, $mode, durable gen $durable, issued gen $issued)"
	# the base holds every entry up to the last flush
	if [ "$flush" -gt "$BASE_END" ]; then
		"$REPLAY" replay "$LOGDEV" "$BASE" --from $((BASE_END + 1)) --upto "$flush" >/dev/null || return 1
		BASE_END=$flush
	fi
	dd if="$BASE" of="$WORK" bs=1M count="$TOTAL_MIB" iflag=direct oflag=direct status=none || return 1
	if [ "$entry" -gt "$flush" ]; then
		out=$("$REPLAY" replay "$LOGDEV" "$WORK" --from $((flush + 1)) --upto "$entry" \
			--unflushed "$policy") || return 1
		[ "$policy" != all ] && label="$label [${out#*; }]"
	fi
	NPOINTS=$((NPOINTS + 1))
	KINDS[$kind]=$((${KINDS[$kind]:-0} + 1))
	[ -z "${VMCACHE_REPLAY_VERBOSE:-}" ] || ktap_print_msg "$PASS: $label"

	rc=0
	out=$(vmcachectl check "$RCACHE" 2>&1) || rc=$?
	[ "$rc" -le 1 ] || failed check_crash "$label" "vmcachectl check exit $rc" "$out"

	dmesg_mark
	# shellcheck disable=SC2086 # HOLD: words
	if ! dmsetup create "$NAME" --table "0 $ORIGIN_SECT vmcache $RCACHE $RORIGIN $(opts mode "$mode" $HOLD block_size "$BS" must_exist 1)" 2>"$tmp/err"; then
		failed load "$label" "$(cat "$tmp/err")" "$(dmesg_since_mark | grep vmcache)"
		dm_exists "$NAME" && dm_remove "$NAME"
		return 0
	fi
	cleanup_push "dm_remove $NAME"
	wait_for_dev "$DEV" || return 1
	read_dev "$DEV" "$tmp/r1" || return 1
	if out=$("$REPLAY" verify "$tmp/r1" --journal "$JOURNAL" --durable "$durable" --issued "$issued"); then
		NVERIFIED=$((NVERIFIED + 1))
	else
		failed durable "$label" "$(tail -n 1 <<<"$out")" "$(head -n 4 <<<"$out")"
	fi
	local dirty
	dirty=$(st blocks_dirty)
	msg invalidate && read_dev "$DEV" "$tmp/r2" || return 1
	out=$("$REPLAY" diff "$tmp/r1" "$tmp/r2") ||
		failed invalidate "$label" "blocks_dirty=$dirty at load; first read, then the read after invalidate:" \
			"$(tail -n 1 <<<"$out")" "$(head -n 3 <<<"$out")" "$(origin_writes "$out" "$entry")"
	if msg flush && wait_clean 20 && msg invalidate && read_dev "$DEV" "$tmp/r3"; then
		out=$("$REPLAY" diff "$tmp/r1" "$tmp/r3") ||
			failed flush "$label" "blocks_dirty=$dirty at load; first read, then the read after flush and invalidate:" \
				"$(tail -n 1 <<<"$out")" "$(head -n 3 <<<"$out")" "$(origin_writes "$out" "$entry")"
	else
		failed flush "$label" "the drain did not finish: $(status_line)"
	fi
	dm_remove "$NAME" && cleanup_pop || return 1
	read_dev "$RORIGIN" "$tmp/o" || return 1
	out=$("$REPLAY" diff "$tmp/r1" "$tmp/o") ||
		failed origin "$label" "first read through the cache, then the origin after drain and remove:" \
			"$(tail -n 1 <<<"$out")" "$(head -n 4 <<<"$out")"
	rc=0
	out=$(vmcachectl check "$RCACHE" 2>&1) || rc=$?
	[ "$rc" -eq 0 ] || failed check "$label" "vmcachectl check exit $rc" "$out"
	return 0
}

replay_points() {
	local entry policy kind start left=0
	declare -g -A KINDS=()
	NPOINTS=0
	NVERIFIED=0
	BASE_END=-1
	NFAIL=()
	zero_area "$BASE" || return 1
	"$REPLAY" points "$LOGDEV" --after-mark formatted --flushes "$1" --inside "$2" \
		--subsets "$3" --seed "$SEED" >"$tmp/points" || return 1
	ktap_print_msg "$PASS: $(head -n 1 "$tmp/points" | sed 's/^# //')"
	start=$(date +%s)
	while read -r entry policy kind <&3; do
		[ "$entry" = "#" ] && continue
		if [ "$(date +%s)" -ge "$DEADLINE" ]; then
			left=$((left + 1))
			continue
		fi
		replay_point "$entry" "$policy" "$kind" || {
			ktap_print_msg "$PASS: replay of entry $entry failed"
			return 1
		}
	done 3<"$tmp/points"
	ktap_print_msg "$PASS: replayed $NPOINTS crash points ($(for k in "${!KINDS[@]}"; do printf '%s %s, ' "${KINDS[$k]}" "$k"; done | sed 's/, $//')) in $(($(date +%s) - start)) s; data verified at $NVERIFIED"
	[ "$left" -eq 0 ] || ktap_print_msg "$PASS: time budget used up: $left points not replayed"
	TOTAL_POINTS=$((TOTAL_POINTS + NPOINTS))
}

# case_for <category> <description>
case_for() {
	local n=${NFAIL[$1]:-0}
	if [ "$NPOINTS" -eq 0 ]; then
		ktap_test_fail "$PASS: $2 # no crash point replayed"
	elif [ "$n" -eq 0 ]; then
		ktap_test_pass "$PASS: $2 ($NPOINTS points)"
	else
		ktap_print_msg "$PASS: $2: failed at $n of $NPOINTS points; first ones:"
		ktap_print_msg "$(cat "$tmp/ev.$PASS.$1")"
		ktap_test_fail "$PASS: $2 ($n of $NPOINTS points failed)"
	fi
}

run_pass() { # <label> <block size> <flushes> <inside> <subsets>
	PASS=$1
	BS=$2
	JOURNAL=$tmp/journal.$PASS
	SEED=$((SEED + 1))
	local c fails=$KTAP_CNT_FAIL
	ktap_test_result "$PASS: workload logged under one dm-log-writes over both devices" workload
	if [ "$KTAP_CNT_FAIL" -ne "$fails" ]; then
		live_down
		for c in $CATS; do
			ktap_test_skip "$PASS: $c" "no log"
		done
		return 0
	fi
	if ! replay_points "$3" "$4" "$5"; then
		NPOINTS=0
	fi
	case_for load "the cache loads at every crash point (must_exist 1)"
	case_for durable "writes acknowledged before the last flush read back exactly"
	case_for invalidate "reads stable across invalidate (clean blocks dropped)"
	case_for flush "reads stable across a drain and invalidate"
	case_for origin "after the drain and remove the origin holds what the device returned"
	case_for check_crash "vmcachectl check: no errors on the crashed cache image"
	case_for check "vmcachectl check: clean after load, drain and remove"
}

# ---------------------------------------------------------------- main

# each pass: the workload and seven checks
PLAN=$((1 + 8 * $(tr , '\n' <<<"$PASSES" | grep -c .)))
dmesg_mark
DMESG_START=$DMESG_MARK
ktap_print_header
ktap_set_plan "$PLAN"
setup_brd 3 "$RAM_MIB" || ktap_exit_fail_msg "cannot set up brd"
setup_linear vmr_rcache "$WORK" "$CACHE_SECT" 0 &&
setup_linear vmr_rorigin "$WORK" "$ORIGIN_SECT" "$CACHE_SECT" ||
	ktap_exit_fail_msg "cannot set up the replay devices"
T0=$(date +%s)
TOTAL_POINTS=0
DEADLINE=$((T0 + BUDGET * 6 / 10))
[[ ",$PASSES," == *,64k,* ]] || DEADLINE=$((T0 + BUDGET))
[[ ",$PASSES," != *,4k,* ]] ||
	run_pass 4k 4096 "$NFLUSH" "$NINSIDE" "$NSUBSET"
DEADLINE=$((T0 + BUDGET))
[[ ",$PASSES," != *,64k,* ]] ||
	run_pass 64k 65536 $(((NFLUSH + 1) / 2)) $(((NINSIDE + 1) / 2)) $(((NSUBSET + 1) / 2))
ktap_print_msg "$TOTAL_POINTS crash points replayed and checked in all, $(($(date +%s) - T0)) s"
DMESG_MARK=$DMESG_START
ktap_test_result "kernel log clean" check_dmesg_clean
ktap_finished "$PLAN"
