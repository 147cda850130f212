#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# vmcachectl writeback-offline: dirty data recovered without the kernel
# module (Documentation/vmcache.rst, "Recovering dirty data without the
# kernel").
#
#   dm-vmcache "vco" (writeback held off: everything written stays dirty)
#     cache:  dm-linear "vco_c" -> /dev/ram0
#     origin: dm-linear "vco_o" -> /dev/ram1
#
# Known data is written (sequential 1 MiB writes, scattered 4 KiB writes,
# sub-block writes, rewrites), flushed, then the power is cut (vco_c and
# vco_o reloaded as dm-flakey drop_writes: the suspend's commit never
# lands), every device removed and dm-vmcache unloaded.  From userspace
# alone: --dry-run, --export (applied to a copy of the origin), the
# writeback itself; the origin read directly must then hold every
# acknowledged write byte for byte.  With 64 KiB blocks the first run is
# killed (SIGKILL, origin writes slowed by dm-delay), the second stopped
# half way (--test-stop-after: nothing more is written, as in a crash)
# with a commit after every MiB (what was committed stays clean), then it
# runs again.  Then the module is loaded again and the cache
# created with must_exist 1: blocks_dirty=0, every write reads back.
# Last, the cache device lost (blank): assemble and writeback-offline tell.
set -euo pipefail
DIR=$(dirname "$0")
# shellcheck source=lib.sh
. "$DIR/lib.sh"

require_vmcache
require_cmd vmcachectl dd cmp sync awk
require_module brd dm-flakey dm-delay

NAME=vco
MIB=64
DEV=/dev/mapper/$NAME
CACHE=/dev/ram0
ORIGIN=/dev/ram1
TMP=$(mktemp -d)
cleanup_push "rm -rf $TMP"
WB_HELD="mode writeback writeback_low 100 writeback_high 100 max_dirty_age 0 sequential_cutoff 0"

setup_brd 2 "$MIB" || ktap_exit_fail_msg "brd"
SECTORS=$(dev_sectors "$ORIGIN")
fast_tools

# the module must not be left unloaded for the tests that follow
cleanup_push "modprobe $VMCACHE_MODULE"

stack_down() {
	local d
	for d in "$NAME" vco_c vco_o; do
		if dm_exists "$d"; then dm_remove "$d" || return 1; fi
	done
	return 0
}
cleanup_push stack_down

# stack_up <block size>
stack_up() {
	local opts
	read -r -a opts <<<"block_size $1 $WB_HELD"
	modprobe "$VMCACHE_MODULE" &&
		dmsetup create vco_c --table "0 $SECTORS linear $CACHE 0" &&
		dmsetup create vco_o --table "0 $SECTORS linear $ORIGIN 0" &&
		dmsetup create "$NAME" --table \
			"0 $SECTORS vmcache /dev/mapper/vco_c /dev/mapper/vco_o ${#opts[@]} ${opts[*]}" &&
		wait_for_dev "$DEV"
}

# power_cut: nothing more reaches the cache or the origin
power_cut() {
	dmsetup suspend --noflush vco_c vco_o &&
		dmsetup load vco_c --table "0 $SECTORS flakey $CACHE 0 0 3600 1 drop_writes" &&
		dmsetup load vco_o --table "0 $SECTORS flakey $ORIGIN 0 0 3600 1 drop_writes" &&
		dmsetup resume vco_c vco_o
}

# w <bs> <seek> <count> <from offset in bs units>: a piece of $TMP/data
# written to the cache and to the reference
w() {
	"${DD[@]}" if="$TMP/data" of="$DEV" bs="$1" skip="$4" seek="$2" count="$3" \
		oflag=direct conv=notrunc 2>/dev/null &&
		"${DD[@]}" if="$TMP/data" of="$TMP/ref" bs="$1" skip="$4" seek="$2" \
			count="$3" conv=notrunc 2>/dev/null
}

# snap <dev> <file>: the device's contents, read around any page cache
snap() {
	dd if="$1" of="$2" bs=1M iflag=direct status=none
}

# write_set <block size>: the known data; every write acknowledged, then
# flushed (a REQ_PREFLUSH: the commit holding them is durable)
write_set() {
	local bs=$1 sub=$(($1 / 8)) i off
	# sequential 1 MiB writes: 6 MiB at 4 MiB, then 1 MiB at 40 MiB
	w 1M 4 6 0 && w 1M 40 1 7 || return 1
	# scattered 4 KiB writes (with 64 KiB blocks, smaller than a
	# sub-block: they go around the cache unless the block is cached)
	for ((i = 0; i < 96; i++)); do
		off=$(((i * 2731 + 17) % (SECTORS / 8)))
		w 4K "$off" 1 $((2048 + i)) || return 1
	done
	# single sub-blocks
	for ((i = 0; i < 96; i++)); do
		off=$(((i * 7919 + 5) % (SECTORS * 512 / sub)))
		w "$sub" "$off" 1 $((1024 + i)) || return 1
	done
	# rewrites of part of the sequential range, and of some sub-blocks
	w 4K 1500 20 4000 || return 1
	for ((i = 0; i < 24; i++)); do
		off=$(((i * 7919 + 5) % (SECTORS * 512 / sub)))
		w "$sub" "$off" 1 $((3000 + i)) || return 1
	done
	sync "$DEV"
}

# json_num <file> <key>
json_num() {
	awk -v k="\"$2\":" '$1 == k { v = $2; sub(/,$/, "", v); print v; exit }' "$1"
}

# dirty_held <block size>: the scenario up to the power cut, module gone
dirty_held() {
	local bs=$1 dirty
	wipe_dev "$CACHE" 2
	make_pattern "$TMP/base" "$MIB"
	dd if="$TMP/base" of="$ORIGIN" bs=1M oflag=direct status=none || return 1
	cp "$TMP/base" "$TMP/ref"
	make_pattern "$TMP/data" 16
	stack_up "$bs" || return 1
	write_set "$bs" || return 1
	dirty=$(st blocks_dirty)
	ktap_print_msg "$bs: blocks_dirty=$dirty blocks_used=$(st blocks_used) writeback_done=$(st writeback_done) write_misses=$(st write_misses) bypassed=$(st bypassed)"
	[ "$dirty" -gt 100 ] && [ "$(st writeback_done)" = 0 ] || return 1
	# while active: the devices are held, vmcachectl refuses them
	if vmcachectl writeback-offline "$CACHE" "$ORIGIN" 2>"$TMP/err"; then
		ktap_print_msg "a cache in use was not refused"
		return 1
	fi
	ktap_print_msg "while active: $(cat "$TMP/err")"
	power_cut && stack_down || return 1
	rmmod dm_vmcache || return 1
	! module_loaded dm_vmcache || return 1
	# the origin alone does not hold the writes yet (writes that went
	# around the cache are there already): $TMP/o0, the origin now
	snap "$ORIGIN" "$TMP/o0"
	if "${CMP[@]}" -s "$TMP/o0" "$TMP/ref"; then
		ktap_print_msg "the origin already holds every write"
		return 1
	fi
}

# origin_holds_all: the origin, read directly, is the reference
origin_holds_all() {
	snap "$ORIGIN" "$TMP/o" && compare_bytes "$TMP/o" "$TMP/ref"
}

# timed_writeback [extra args]: the run, its time in the log
timed_writeback() {
	local t0 t1 rc=0
	t0=$(now_ms)
	vmcachectl writeback-offline "$CACHE" "$ORIGIN" --progress "$@" \
		>"$TMP/out" 2>"$TMP/err" || rc=$?
	t1=$(now_ms)
	ktap_print_msg "$(cat "$TMP/out")"
	ktap_print_msg "progress: $(tail -n 1 "$TMP/err")"
	ktap_print_msg "writeback-offline $*: exit $rc, $((t1 - t0)) ms"
	return "$rc"
}

# loads_clean: the kernel loads the cache with nothing dirty, every write
# reads back through it
loads_clean() {
	vmcachectl check "$CACHE" >"$TMP/chk" || {
		ktap_print_msg "$(cat "$TMP/chk")"
		return 1
	}
	modprobe "$VMCACHE_MODULE" || return 1
	dmsetup create "$NAME" --table \
		"0 $SECTORS vmcache $CACHE $ORIGIN 2 must_exist 1" || return 1
	wait_for_dev "$DEV" || return 1
	expect blocks_dirty=0 metadata=ok || return 1
	[ "$(st blocks_used)" -gt 0 ] || return 1
	snap "$DEV" "$TMP/c" && compare_bytes "$TMP/c" "$TMP/ref" || return 1
	dm_remove "$NAME"
}

ktap_print_header
ktap_set_plan 12
dmesg_mark

# --------------------------------------------------------------- 4 KiB
t_4k_held() { dirty_held 4096; }
ktap_test_result "4k: writes held dirty in the cache, power cut, module unloaded" t_4k_held

t_4k_dry() {
	local md5a md5b
	md5a=$(md5_of "$CACHE")
	vmcachectl writeback-offline --dry-run --json "$CACHE" "$ORIGIN" >"$TMP/dry" || return 1
	ktap_print_msg "dry run: $(json_num "$TMP/dry" blocks) blocks, $(json_num "$TMP/dry" extent_count) extents, $(json_num "$TMP/dry" bytes) bytes"
	vmcachectl writeback-offline -n "$CACHE" >"$TMP/dryt" || return 1
	ktap_print_msg "$(head -n 3 "$TMP/dryt")"
	md5b=$(md5_of "$CACHE")
	[ "$md5a" = "$md5b" ] || return 1
	[ "$(json_num "$TMP/dry" bytes)" -gt $((6 << 20)) ] || return 1
	snap "$ORIGIN" "$TMP/o" && compare_bytes "$TMP/o" "$TMP/o0"
}
ktap_test_result "4k: --dry-run lists the dirty extents, writes nothing" t_4k_dry

t_4k_export() {
	local o l at n=0
	rm -f "$TMP/exp" "$TMP/exp.list"
	vmcachectl writeback-offline "$CACHE" --export "$TMP/exp" >"$TMP/out" || return 1
	ktap_print_msg "$(cat "$TMP/out")"
	cp "$TMP/o0" "$TMP/applied"
	while read -r o l at; do
		[ "${o:0:1}" = "#" ] && continue
		"${DD[@]}" if="$TMP/exp" of="$TMP/applied" bs=512 skip=$((at / 512)) \
			seek=$((o / 512)) count=$((l / 512)) conv=notrunc 2>/dev/null || return 1
		n=$((n + 1))
	done <"$TMP/exp.list"
	ktap_print_msg "$n extents applied to a copy of the origin"
	compare_bytes "$TMP/applied" "$TMP/ref" || return 1
	rm -f "$TMP/applied" "$TMP/exp"
	# the origin is untouched
	snap "$ORIGIN" "$TMP/o" && compare_bytes "$TMP/o" "$TMP/o0"
}
ktap_test_result "4k: --export image and list reproduce every write on a copy" t_4k_export

t_4k_writeback() {
	timed_writeback && origin_holds_all || return 1
	vmcachectl check --json "$CACHE" >"$TMP/chk" || return 1
	[ "$(json_num "$TMP/chk" nr_dirty)" = 0 ]
}
ktap_test_result "4k: offline writeback: the origin alone holds every write" t_4k_writeback

t_4k_again() {
	timed_writeback --json && grep -q '"result": "nothing"' "$TMP/out" &&
		origin_holds_all
}
ktap_test_result "4k: a second run has nothing to do" t_4k_again

ktap_test_result "4k: the kernel loads it with must_exist 1, nothing dirty, data right" loads_clean

# -------------------------------------------------------------- 64 KiB
t_64k_held() { dirty_held 65536; }
ktap_test_result "64k: sub-block writes held dirty, power cut, module unloaded" t_64k_held

t_64k_wrong_origin() {
	local rc=0
	dmsetup create vco_o --table "0 $((SECTORS - 8)) linear $ORIGIN 0" || return 1
	vmcachectl writeback-offline "$CACHE" /dev/mapper/vco_o 2>"$TMP/err" || rc=$?
	dm_remove vco_o
	ktap_print_msg "$(cat "$TMP/err")"
	[ "$rc" = 1 ] && grep -q "the wrong origin" "$TMP/err"
}
ktap_test_result "64k: an origin of another size is refused" t_64k_wrong_origin

t_64k_interrupted() {
	local extents half
	vmcachectl writeback-offline -n --json "$CACHE" "$ORIGIN" >"$TMP/dry" || return 1
	extents=$(json_num "$TMP/dry" extent_count)
	half=$((extents / 2))
	# a real kill mid-run: origin writes slowed down (dm-delay), one copy
	# in flight, SIGKILL after a second
	dmsetup create vco_o --table "0 $SECTORS delay $ORIGIN 0 0 $ORIGIN 0 50" || return 1
	vmcachectl writeback-offline --jobs 1 "$CACHE" /dev/mapper/vco_o 2>/dev/null &
	local pid=$!
	sleep 1
	kill -KILL "$pid"
	wait "$pid" && return 1
	dm_remove vco_o || return 1
	vmcachectl writeback-offline -n --json "$CACHE" >"$TMP/dry2" || return 1
	[ "$(json_num "$TMP/dry2" extent_count)" = "$extents" ] || return 1
	snap "$ORIGIN" "$TMP/o"
	if "${CMP[@]}" -s "$TMP/o" "$TMP/o0"; then
		ktap_print_msg "the killed run wrote nothing"
		return 1
	fi
	ktap_print_msg "killed after 1 s: still $extents extents dirty, part of them on the origin"
	# then the hook: a stop right after a given write, as in a crash,
	# with a commit after every MiB copied: what was committed stays clean
	ktap_print_msg "$extents extents, stopping after $half writes"
	if timed_writeback --test-stop-after "$half" --test-commit-every 1048576; then
		return 1
	fi
	vmcachectl writeback-offline -n --json "$CACHE" >"$TMP/dry2" || return 1
	local left
	left=$(json_num "$TMP/dry2" extent_count)
	ktap_print_msg "$left of $extents extents left dirty"
	[ "$left" -gt 0 ] && [ "$left" -lt "$extents" ] || return 1
	snap "$ORIGIN" "$TMP/o"
	if "${CMP[@]}" -s "$TMP/o" "$TMP/ref"; then
		ktap_print_msg "the stopped run wrote everything"
		return 1
	fi
	timed_writeback && origin_holds_all
}
ktap_test_result "64k: killed, then stopped half way, run again: the origin holds every write" t_64k_interrupted

ktap_test_result "64k: the kernel loads it with must_exist 1, nothing dirty, data right" loads_clean

# ------------------------------------------- the cache device lost for good
# (replaced by a blank one, or gone): refused with a message naming the
# lost dirty data; the origin is used alone
t_cache_lost() {
	local rc=0
	wipe_dev "$CACHE" 1
	echo "$NAME $CACHE $ORIGIN mode=writeback" >"$TMP/tab"
	echo "vco_gone /dev/disk/by-id/vco-no-such-disk $ORIGIN" >>"$TMP/tab"
	vmcachectl assemble --config "$TMP/tab" >"$TMP/out" 2>"$TMP/err" || rc=$?
	ktap_print_msg "assemble: exit $rc: $(cat "$TMP/err")"
	[ "$rc" = 1 ] && ! dm_exists "$NAME" || return 1
	grep -q "is blank but --must-exist expects a cache on it" "$TMP/err" &&
		grep -q "Any dirty data it held is gone" "$TMP/err" &&
		grep -q "vco-no-such-disk: No such file" "$TMP/err" || return 1
	rc=0
	vmcachectl writeback-offline "$CACHE" "$ORIGIN" 2>"$TMP/err" || rc=$?
	ktap_print_msg "writeback-offline: exit $rc: $(cat "$TMP/err")"
	[ "$rc" = 1 ] && grep -q "is blank: it holds no cache" "$TMP/err" || return 1
	# the origin alone: what was written back is there
	origin_holds_all
}
ktap_test_result "cache device lost: assemble and writeback-offline say so, the origin stands alone" t_cache_lost

ktap_test_result "kernel log clean" check_dmesg_clean
ktap_finished 12
