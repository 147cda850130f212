#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# dm-vmcache hit ratio estimate at other cache sizes (mrc): the status keys
# are appended in order and sane, sysfs has them and mrc_curve; every read
# is counted once (mrc_reads = read_hits + read_misses, also for a bypassed
# sequential stream); loops of a known size give the exact LRU answer:
#   a loop over 3/4 of the cache: 0 at 0.5x, 1000 (per mille) at 1x..4x,
#     and the cache really hits it all;
#   a loop over 1.5x the cache: 0 at 0.5x and 1x, 1000 at 2x and 4x;
#   uniform random reads over 2x the cache: about 250, 500, 1000, 1000;
#   a loop over 6x the cache (sampled: more blocks than the 4096 tracked):
#     near 0 everywhere (within the sampling error), a rate below 100 %;
# stats reset zeroes the estimate but keeps the recency (the next pass of
# a loop that fits is all hits); mrc off stops counting, on starts from
# nothing; bad values are refused; vmcachectl status, --json and mrc show
# it.
#
# Devices: cache = brd (/dev/ram0, 8 MiB); origin = memory-backed null_blk
# (64 MiB).  Reads are 4 KiB O_DIRECT, one bio each; sequential_cutoff 0
# except in the bypass case.
set -euo pipefail
DIR=$(dirname "$0")
# shellcheck source=lib.sh
. "$DIR/lib.sh"

require_vmcache
require_cmd vmcachectl dd awk fio
require_module null_blk brd

NAME=vmc_mrc
DEV=/dev/mapper/$NAME
CACHE=/dev/ram0
NULLB=vmc_mrc_nullb
ORIGIN=/dev/$NULLB
SYS=/sys/module/dm_vmcache/caches/$NAME
MRC_KEYS=(mrc mrc_reads mrc_sample_ppm est_hit_0_5x est_hit_1x est_hit_2x est_hit_4x)

tmp=$(mktemp -d)
cleanup_push "rm -rf $tmp"

# ------------------------------------------------------------ helpers

# loop <blocks> <passes>: read blocks 0..n-1 in order, that many times
loop() {
	local p
	for ((p = 0; p < $2; p++)); do
		dd if="$DEV" of=/dev/null bs=4k count="$1" iflag=direct status=none || return 1
	done
}

# uniform <blocks> <reads> <seed>: independent uniform 4 KiB random reads
uniform() {
	fio --name=u --filename="$DEV" --rw=randread --bs=4k --direct=1 \
		--ioengine=psync --size=$(($1 * 4))k --io_size=$(($2 * 4))k \
		--norandommap --randseed="$3" --output=/dev/null
}

# est_in <key> <min> <max>: a per-mille estimate within bounds
est_in() {
	local v
	v=$(st "$1") || { ktap_print_msg "no $1"; return 1; }
	[ "$v" -ge "$2" ] && [ "$v" -le "$3" ] && return 0
	ktap_print_msg "$1=$v, expected $2..$3"
	return 1
}

# every read counted once, whatever its route
reads_match() {
	local r h m
	r=$(st mrc_reads) && h=$(st read_hits) && m=$(st read_misses) || return 1
	[ "$r" = $((h + m)) ] && return 0
	ktap_print_msg "mrc_reads=$r, read_hits + read_misses = $((h + m))"
	return 1
}

show() {
	ktap_print_msg "$(status_line | tr ' ' '\n' | grep -E '^(read_hits|read_misses|mrc|mrc_.*|est_hit_.*)=' | tr '\n' ' ')"
}

# ------------------------------------------------------------ the steps

step_keys() {
	local line tail want k v f prev=0 n=0 bad=0 curve
	line=$(status_line)
	# the estimate's seven keys, in this order, then the checksum keys
	# (appended later: keys are only ever added at the end)
	tail=$(tr ' ' '\n' <<<"$line" | tail -n 9 | cut -d= -f1 | tr '\n' ' ')
	want="${MRC_KEYS[*]} data_crc crc_errors "
	[ "$tail" = "$want" ] || { ktap_print_msg "status ends with '$tail', expected '$want'"; return 1; }
	expect mrc=on mrc_reads=0 mrc_sample_ppm=1000000 || return 1
	for k in "${MRC_KEYS[@]:1}"; do
		f=$SYS/$k
		[ -r "$f" ] || { ktap_print_msg "no $f"; return 1; }
		[ "$(cat "$f")" = "$(st "$k")" ] || { ktap_print_msg "$f: $(cat "$f") != $(st "$k")"; bad=1; }
	done
	[ "$(cat "$SYS/mrc")" = on ] || { ktap_print_msg "$SYS/mrc: $(cat "$SYS/mrc")"; bad=1; }
	read -r -a curve <"$SYS/mrc_curve"
	for v in "${curve[@]}"; do
		n=$((n + 1))
		[ "$v" -ge "$prev" ] && [ "$v" -le 1000 ] || bad=1
		prev=$v
	done
	[ "$n" = 128 ] || { ktap_print_msg "mrc_curve: $n points"; bad=1; }
	grep -q ' mrc on must_exist 0 data_crc 0$' <<<"$(dmsetup table "$NAME")" ||
		{ ktap_print_msg "table: $(dmsetup table "$NAME")"; bad=1; }
	return "$bad"
}

# a loop that fits at 1x (and not at 0.5x): exact at sampling rate 1
step_loop_fits() {
	loop "$W1" 1 && wait_promotions "$W1" && msg stats reset &&
	loop "$W1" 2 || return 1
	show
	expect mrc_reads=$((2 * W1)) mrc_sample_ppm=1000000 est_hit_0_5x=0 \
		est_hit_1x=1000 est_hit_2x=1000 est_hit_4x=1000 && reads_match &&
	expect read_hits=$((2 * W1)) read_misses=0
}

step_reset() {
	local v curve
	msg stats reset || return 1
	expect mrc_reads=0 est_hit_0_5x=0 est_hit_1x=0 est_hit_2x=0 est_hit_4x=0 || return 1
	read -r -a curve <"$SYS/mrc_curve"
	for v in "${curve[@]}"; do
		[ "$v" = 0 ] || { ktap_print_msg "mrc_curve after reset: $(cat "$SYS/mrc_curve")"; return 1; }
	done
	# the blocks' recency is kept: the next pass hits at 1x
	loop "$W1" 1 && show && expect mrc_reads="$W1" est_hit_1x=1000 est_hit_0_5x=0
}

# a loop of 1.5x the cache: LRU misses it all at 1x, holds it at 2x
step_loop_big() {
	msg stats reset && loop "$W2" 1 && msg stats reset && loop "$W2" 2 || return 1
	show
	ktap_print_msg "measured by the cache ($(st policy)): $(st read_hits) hits, $(st read_misses) misses"
	expect mrc_reads=$((2 * W2)) mrc_sample_ppm=1000000 est_hit_0_5x=0 \
		est_hit_1x=0 est_hit_2x=1000 est_hit_4x=1000 && reads_match
}

# a loop of 6x the cache, beyond what is tracked: sampled, near 0
step_loop_sampled() {
	msg stats reset && loop "$W3" 1 && msg stats reset && loop "$W3" 1 || return 1
	show
	local ppm
	ppm=$(st mrc_sample_ppm)
	[ "$ppm" -lt 1000000 ] && [ "$ppm" -gt 0 ] ||
		{ ktap_print_msg "mrc_sample_ppm=$ppm with $W3 blocks"; return 1; }
	expect mrc_reads="$W3" && reads_match &&
	est_in est_hit_1x 0 80 && est_in est_hit_4x 0 80
}

# uniform random over 2x the cache: LRU hits size/2x; at rate 1 (fewer
# than 4096 blocks so far), so only fio's randomness makes it inexact
step_uniform() {
	msg stats reset && uniform "$W4" $((4 * W4)) 1 && msg stats reset &&
	uniform "$W4" $((4 * W4)) 2 || return 1
	show
	ktap_print_msg "measured by the cache ($(st policy)): $(st read_hits) hits, $(st read_misses) misses"
	expect mrc_reads=$((4 * W4)) && reads_match &&
	est_in est_hit_0_5x 190 310 && est_in est_hit_1x 440 560 &&
	est_in est_hit_2x 940 1000 && est_in est_hit_4x 940 1000
}

# a sequential stream over the cutoff goes to the origin in runs: still
# counted, as reads no size would hit (never tracked)
step_bypass() {
	local r
	msg set sequential_cutoff 64 && msg stats reset || return 1
	dd if="$DEV" of=/dev/null bs=1M count=16 skip=40 iflag=direct status=none || return 1
	show
	r=$(st mrc_reads)
	[ "$(st bypassed)" -gt 0 ] || { ktap_print_msg "nothing bypassed"; return 1; }
	[ "$r" -ge 4000 ] || { ktap_print_msg "mrc_reads=$r after 4096 blocks"; return 1; }
	reads_match && est_in est_hit_4x 0 20 && msg set sequential_cutoff 0
}

step_off_on() {
	msg set mrc off && expect mrc=off mrc_reads=0 est_hit_1x=0 || return 1
	[ "$(cat "$SYS/mrc")" = off ] || return 1
	loop 64 1 && expect mrc_reads=0 || return 1
	grep -q ' mrc off ' <<<"$(dmsetup table "$NAME")" || return 1
	# on again (through sysfs): starts from nothing, a first pass is cold
	echo on >"$SYS/mrc" && expect mrc=on mrc_reads=0 || return 1
	loop "$W1" 1 && expect mrc_reads="$W1" est_hit_4x=0 || return 1
	loop "$W1" 1 && est_in est_hit_1x 500 500
}

step_refused() {
	local bad=0 v
	for v in 2 yes ON 1 -1 ''; do
		if msg set mrc "$v" 2>/dev/null; then
			ktap_print_msg "set mrc '$v' accepted"
			bad=1
		fi
		if (echo "$v" >"$SYS/mrc") 2>/dev/null; then
			ktap_print_msg "sysfs mrc '$v' accepted"
			bad=1
		fi
	done
	for v in mrc_reads est_hit_1x mrc_curve; do
		if (echo 0 >"$SYS/$v") 2>/dev/null; then
			ktap_print_msg "$v accepted a write"
			bad=1
		fi
	done
	if dmsetup create vmc_mrc_bad --table "0 $(dev_sectors /dev/ram2) vmcache /dev/ram1 /dev/ram2 2 mrc 2" 2>/dev/null; then
		dmsetup remove vmc_mrc_bad
		ktap_print_msg "table option mrc 2 accepted"
		bad=1
	elif ! dmesg_contains 'mrc must be on or off'; then
		ktap_print_msg "table option mrc 2 refused, but not for its value"
		bad=1
	fi
	expect mrc=on && return "$bad"
}

step_tool() {
	local rc=0
	vmcachectl status "$NAME" >"$tmp/s" || return 1
	grep -q '^  estimate   read hit ratio .* at 0.5x the size, .* at 1x, .* at 2x, .* at 4x' "$tmp/s" ||
		{ ktap_print_msg "status: $(cat "$tmp/s")"; rc=1; }
	vmcachectl status "$NAME" --json >"$tmp/j" || return 1
	vmcachectl mrc "$NAME" >"$tmp/m" || return 1
	grep -q '^      1x .*<- this cache$' "$tmp/m" ||
		{ ktap_print_msg "mrc: $(cat "$tmp/m")"; rc=1; }
	[ "$(vmcachectl mrc "$NAME" --all | grep -c '|')" = 128 ] ||
		{ ktap_print_msg "mrc --all: $(vmcachectl mrc "$NAME" --all | head -5)"; rc=1; }
	vmcachectl mrc "$NAME" --json >"$tmp/mj" || return 1
	if command -v jq >/dev/null 2>&1; then
		jq -e --argjson e "$(st est_hit_1x)" '.["est_hit_1x"] == $e and .mrc == "on" and (.["est_hit_0_5x"] | type) == "number"' "$tmp/j" >/dev/null ||
			{ ktap_print_msg "status --json: $(head -c 800 "$tmp/j")"; rc=1; }
		jq -e --argjson e "$(st est_hit_1x)" '(.curve | length) == 128 and .curve[15].size_x == 1 and ((.curve[15].est_hit_ratio * 1000 + 0.5) | floor) == $e' "$tmp/mj" >/dev/null ||
			{ ktap_print_msg "mrc --json: $(head -c 800 "$tmp/mj")"; rc=1; }
	else
		grep -q "\"est_hit_1x\": $(st est_hit_1x)," "$tmp/j" || rc=1
	fi
	while read -r l; do ktap_print_msg "$l"; done <"$tmp/m"
	return "$rc"
}

# ---------------------------------------------------------------- main

PLAN=13
ktap_print_header
ktap_set_plan "$PLAN"
dmesg_mark

setup_brd 3 8 && setup_null_blk "$NULLB" 64 ||
	ktap_skip_all "cannot set up brd/null_blk"
wipe_dev "$CACHE" 2
OSZ=$(dev_sectors "$ORIGIN")
T0=$(date +%s)
if ! dm_create "$NAME" "0 $OSZ vmcache $CACHE $ORIGIN 4 sequential_cutoff 0 policy lru"; then
	ktap_exit_fail_msg "cannot create the cache"
fi
BT=$(st blocks_total)
W1=$((BT * 3 / 4))	# fits at 1x, not at 0.5x
W2=$((BT * 3 / 2))	# fits at 2x, not at 1x
W3=$((BT * 6))		# fits nowhere up to 4x; more than 4096 blocks
W4=$((BT * 2))		# uniform random set
ktap_test_pass "create: $BT blocks, lru, sequential_cutoff 0"
ktap_test_result "status ends with the estimate keys (then the checksum keys), sysfs files and mrc_curve agree, table says mrc on" step_keys
ktap_test_result "loop over $W1 blocks (3/4 of the cache): 0 at 0.5x, 1000 at 1x..4x, all hits measured" step_loop_fits
ktap_test_result "stats reset zeroes the estimate and keeps recency" step_reset
ktap_test_result "loop over $W2 blocks (1.5x): 0 at 0.5x and 1x, 1000 at 2x and 4x" step_loop_big
ktap_test_result "uniform random reads over $W4 blocks (2x): about 250/500/1000/1000" step_uniform
ktap_test_result "loop over $W3 blocks (6x, sampled): rate below 1, near 0 everywhere" step_loop_sampled
ktap_test_result "a bypassed sequential stream is counted, never hits" step_bypass
ktap_test_result "mrc off stops counting, on (sysfs) starts from nothing" step_off_on
ktap_test_result "bad mrc values refused (message, sysfs, table); estimate files read-only" step_refused
ktap_test_result "vmcachectl status, status --json, mrc (--all, --json)" step_tool
ktap_test_result "kernel log clean" check_dmesg_clean
ktap_print_msg "run time $(($(date +%s) - T0)) s"
dm_remove "$NAME"
ktap_test_pass "removed"
ktap_finished "$PLAN"
