#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# dm-vmcache systematic write-failure injection: the cache device dies for
# metadata writes after the first N writes of an operation, for N = 0, 1,
# 2, ... until the operation completes without reaching the fault (the
# fault-free control); after each point the cache must load again and hold
# what was acknowledged before the last successful flush.
#
# Devices: cache = dm-linear "vmci_c" over brd /dev/ram0 (16 MiB); origin
# = dm-linear "vmci_o" over brd /dev/ram1 (16 MiB); vmcache "vmci"
# (writeback, writeback held off, sequential_cutoff 0).
#
# The writes of an operation, in order, are learnt from a fault-free dry
# run (deterministic, unlike counting writes while they happen): the 4 KiB
# metadata pages it changed, ordered by the commit sequence number stamped
# in them (a commit writes its mapping pages, concurrently, then its
# superblock slot; so: pages of commit s, superblock s, pages of s+1, ...;
# concurrent pages in ascending order).  The number of write bios the
# dry run sent to the cache device (/sys/block/<dm-N>/stat, writes
# completed) is logged with them.  Format's writes are fixed by the code:
# slot 1, area B, area A, slot 0 (the magic) last.
#
# Injection point N: the cache device's table lets the first N of those
# writes through (dm-linear) and fails every other write to the metadata
# area, and every flush (dm-flakey error_writes; flakey also fails the
# flushes sent to it: a dead device); reads and the data area work.  The
# fault is in place before the changes the operation commits are made
# (so a periodic commit that runs first is the one that meets it).
#
# Operations (prep: blank cache, A = blocks 0..15 written and fsynced):
#   format      dmsetup create on a blank device (no prep)
#   commit      C = blocks 32..47 written under the fault, no flush; the
#               "commit" message
#   writeback   C written and committed (dirty) before the fault; the
#               "flush" message, waited for (its commits mark A, C clean)
#   modeswitch  as writeback, with writeback -> writethrough (the drain)
#   reload      C written under the fault; the same table loaded, resumed
# After each point: remove, heal, load again with "must_exist 1" (a failed
# format must leave a device that must_exist refuses and that formats
# again); A reads back exactly, C per block the old or the new data (new
# exactly where it was committed before the operation),
# blocks 16..31 the origin's; removed, "vmcachectl check" exits 0 or 1;
# loaded once more, the same data (stable: a page copy left by the
# failed commit must not become valid with the next commit's number).
# The number of injection points run is printed as a diagnostic.
set -euo pipefail
DIR=$(dirname "$0")
# shellcheck source=lib.sh
. "$DIR/lib.sh"

require_vmcache
require_cmd dd cmp awk od vmcachectl
require_module brd dm-flakey

NAME=vmci
DEV=/dev/mapper/$NAME
CDEV=/dev/mapper/vmci_c
ODEV=/dev/mapper/vmci_o
RAMC=/dev/ram0
RAMO=/dev/ram1
BS=4096
SYS=/sys/module/dm_vmcache/caches/$NAME
OPTS=(mode writeback sequential_cutoff 0 writeback_low 100 writeback_high 100 max_dirty_age 0)

fast_tools

tmp=$(mktemp -d)
cleanup_push "rm -rf $tmp"

# done_or_failed: drained, or the metadata failed (nothing more to wait for)
done_or_failed() {
	local m
	is_clean && return 0
	stv m metadata && [ "$m" = fail ]
}

# settle: wait until the commit sequence number has stood still for 2.5 s
# (at most 20 s): the periodic commits that follow an operation are done
settle() {
	local s0 s i still=0
	stv s0 seq || return 0
	for ((i = 0; i < 200 && still < 25; i++)); do
		nap 0.1
		stv s seq || return 0
		if [ "$s" = "$s0" ]; then
			still=$((still + 1))
		else
			s0=$s
			still=0
		fi
	done
}

cache_heal() { table_load vmci_c "0 $CSZ linear $RAMC 0"; }

vmc_create() {
	local opts=("$@")
	dmsetup create "$NAME" --table "0 $OSZ vmcache $CDEV $ODEV ${#opts[@]} ${opts[*]}" 2>"$tmp/create.err" || return 1
	cleanup_push "dm_remove $NAME"
	wait_for_dev "$DEV"
}
vmc_remove() { dm_remove "$NAME" && cleanup_pop; }

# writes completed on the cache device (dm-linear: I/O accounted)
writes_of() {
	local a
	read -r -a a <"$CSTAT"
	echo "${a[4]}"
}

# wr <first> <count> <data file> [fsync]: blocks from the same offset
wr() {
	"${DD[@]}" if="$3" of="$DEV" bs="$BS" skip="$1" seek="$1" count="$2" \
		oflag=direct conv=notrunc${4:+,fsync} status=none 2>/dev/null
}

# inj_fault <allowed start:len>...: the metadata area [0, data_start)
# fails writes (and flushes) except in the given sector ranges
inj_fault() {
	local pos=0 u s l out=
	while read -r u; do
		[ -n "$u" ] || continue
		s=${u%%:*}
		l=${u#*:}
		[ "$s" -gt "$pos" ] && out+="$pos $((s - pos)) flakey $RAMC $pos 0 3600 1 error_writes"$'\n'
		out+="$s $l linear $RAMC $s"$'\n'
		pos=$((s + l))
	done < <(printf '%s\n' "$@" | sort -t: -k1,1n)
	[ "$pos" -lt "$DS" ] && out+="$pos $((DS - pos)) flakey $RAMC $pos 0 3600 1 error_writes"$'\n'
	out+="$DS $((CSZ - DS)) linear $RAMC $DS"$'\n'
	table_load vmci_c "$out"
}

snap_md() { "${DD[@]}" if="$RAMC" of="$1" bs="$BS" count=$((DS / 8)) iflag=direct status=none; }

# units_between <before> <after>: the changed metadata pages as
# start:len (sectors), in the order written: by the sequence number stamped
# in them, a commit's mapping pages before its superblock
units_between() {
	local p seq
	cmp -l "$1" "$2" | awk '{ p = int(($1 - 1) / 4096); if (!(p in s)) { s[p] = 1; print p } }' >"$tmp/pages" || true
	while read -r p; do
		if [ "$p" -lt 2 ]; then
			seq=$(od -An -t u8 -j $((p * 4096 + 56)) -N 8 "$2")
			echo "${seq// /} 1 $p"
		else
			seq=$(od -An -t u8 -j $((p * 4096 + 8)) -N 8 "$2")
			echo "${seq// /} 0 $p"
		fi
	done <"$tmp/pages" | sort -n -k1,1 -k2,2 -k3,3 | while read -r _ _ p; do echo "$((p * 8)):8"; done
}

# check_data: A exact, 16..31 the origin's, C old or new per block (new
# when C was committed before the operation: C_DURABLE=1)
check_data() {
	local bad
	"${DD[@]}" if="$DEV" of="$tmp/r" bs="$BS" count=48 iflag=direct status=none 2>/dev/null ||
		{ ktap_print_msg "read of blocks 0..47 failed"; return 1; }
	"${CMP[@]}" -s -n $((48 * BS)) "$tmp/r" "$tmp/EXP_NEW" && return 0
	if [ "$C_DURABLE" = 1 ]; then
		ktap_print_msg "blocks ( $("${CMP[@]}" -l "$tmp/r" "$tmp/EXP_NEW" | awk '{ b = int(($1 - 1) / 4096); if (!(b in s)) { s[b] = 1; printf "%d ", b } }')) differ (C was committed before the operation)"
		return 1
	fi
	"${CMP[@]}" -s -n $((48 * BS)) "$tmp/r" "$tmp/EXP_OLD" && return 0
	bad=$(for f in EXP_NEW EXP_OLD; do
		"${CMP[@]}" -l -n $((48 * BS)) "$tmp/r" "$tmp/$f" 2>/dev/null |
			awk '{ b = int(($1 - 1) / 4096); if (!(b in s)) { s[b] = 1; print b } }' || true
	done | sort -n | uniq -d | tr '\n' ' ')
	[ -z "$bad" ] && return 0
	ktap_print_msg "blocks ( $bad) hold neither the expected old nor new data"
	return 1
}

check_cache_dev() {
	local out rc=0
	out=$(vmcachectl check "$CDEV" 2>&1) || rc=$?
	if [ "$rc" -gt 1 ]; then
		ktap_print_msg "vmcachectl check: exit $rc"
		ktap_print_msg "$out"
		return 1
	fi
}

# prep <op>: blank cache, origin blocks 0..47 reset, A written and
# fsynced; for writeback and modeswitch also C, committed (dirty): the
# operation's own commits (marking blocks clean) are what meets the fault
prep() {
	wipe_dev "$RAMC" 1
	"${DD[@]}" if="$tmp/ORIG" of="$ODEV" bs="$BS" count=48 oflag=direct status=none || return 1
	vmc_create "${OPTS[@]}" || return 1
	wr 0 16 "$tmp/N1" fsync || return 1
	case $1 in
	writeback | modeswitch)
		wr 32 16 "$tmp/N2" && dmsetup message "$NAME" 0 commit ;;
	esac
}

# op_run <op> [dry]: C written, then the operation (its result is not
# checked: the state after it is); a dry run then waits for the commits
# that follow (an injected run needs not: what it did not commit yet,
# the removal commits under the same fault)
op_run() {
	case $1 in
	commit | reload)
		wr 32 16 "$tmp/N2" || ktap_print_msg "$1: write of C failed" ;;
	esac
	case $1 in
	commit)
		dmsetup message "$NAME" 0 commit 2>/dev/null || true ;;
	writeback)
		dmsetup message "$NAME" 0 flush 2>/dev/null || true
		wait_for 20 done_or_failed || true ;;
	modeswitch)
		echo writethrough >"$SYS/mode" 2>/dev/null || true
		wait_for 20 done_or_failed || true ;;
	reload)
		dmsetup table "$NAME" >"$tmp/table" &&
			dmsetup load "$NAME" "$tmp/table" 2>/dev/null &&
			dmsetup resume "$NAME" 2>/dev/null || true ;;
	esac
	if [ -n "${2:-}" ]; then settle; fi
	return 0
}

# inj_check: remove, heal, load again with must_exist 1, check the data,
# remove, vmcachectl check; then load once more: the same data (the
# check's reads promote nothing, promote_after 255, so the removal's
# commit changes no mapping: a page copy left by the failed commit, with
# the sequence number this commit takes, must not come to life)
inj_check() {
	local rc=0
	if dm_exists "$NAME"; then vmc_remove || { ktap_print_msg "remove failed"; rc=1; }; fi
	cache_heal || return 1
	if ! vmc_create "${OPTS[@]}" promote_after 255 must_exist 1; then
		ktap_print_msg "load with must_exist 1 refused: $(cat "$tmp/create.err")"
		return 1
	fi
	check_data || rc=1
	mv "$tmp/r" "$tmp/r1"
	vmc_remove || rc=1
	check_cache_dev || rc=1
	if ! vmc_create "${OPTS[@]}" promote_after 255 must_exist 1; then
		ktap_print_msg "second load refused: $(cat "$tmp/create.err")"
		return 1
	fi
	if ! "${DD[@]}" if="$DEV" of="$tmp/r" bs="$BS" count=48 iflag=direct status=none 2>/dev/null ||
		! "${CMP[@]}" -s "$tmp/r" "$tmp/r1"; then
		ktap_print_msg "second load: blocks 0..47 differ from the first load's"
		rc=1
	fi
	vmc_remove || rc=1
	return "$rc"
}

INJ_TOTAL=0
C_DURABLE=0
INJ_PASS=0
INJ_FAILED=()

# inj_op <op>
inj_op() {
	local op=$1 n nu rc=0 w0 w t0
	local -a units
	t0=$(now_ms)
	C_DURABLE=0
	case $op in writeback | modeswitch) C_DURABLE=1 ;; esac
	# dry run: the writes it makes, and the control
	prep "$op" || { ktap_print_msg "$op: prep failed"; return 1; }
	snap_md "$tmp/md0"
	w0=$(writes_of)
	op_run "$op" dry
	w=$(($(writes_of) - w0))
	snap_md "$tmp/md1"
	mapfile -t units < <(units_between "$tmp/md0" "$tmp/md1")
	nu=${#units[@]}
	ktap_print_msg "$op: dry run: $w writes to the cache device, $nu metadata pages changed (sectors, in order): ${units[*]}"
	INJ_TOTAL=$((INJ_TOTAL + 1))
	if inj_check; then
		INJ_PASS=$((INJ_PASS + 1))
	else
		ktap_print_msg "$op: the fault-free control fails"
		INJ_FAILED+=("$op/control")
		rc=1
	fi
	for ((n = 0; n < nu; n++)); do
		INJ_TOTAL=$((INJ_TOTAL + 1))
		if ! prep "$op"; then
			ktap_print_msg "$op N=$n: prep failed"
			INJ_FAILED+=("$op/$n")
			rc=1
			if dm_exists "$NAME"; then vmc_remove || true; fi
			continue
		fi
		if ! inj_fault "${units[@]:0:n}"; then
			ktap_print_msg "$op N=$n: cannot inject"
			INJ_FAILED+=("$op/$n")
			rc=1
			continue
		fi
		op_run "$op"
		local md="" cm=""
		if dm_exists "$NAME"; then stv md metadata; stv cm commits; fi
		if inj_check; then
			INJ_PASS=$((INJ_PASS + 1))
		else
			ktap_print_msg "$op N=$n (metadata=$md commits=$cm after the operation): FAILED"
			INJ_FAILED+=("$op/$n")
			rc=1
		fi
	done
	ktap_print_msg "$op: $((nu + 1)) points in $(($(now_ms) - t0)) ms"
	return "$rc"
}

# format: slot 1, area B, area A, slot 0 (vmcache-metadata.c, format_blank;
# one write per area while nr_mpages <= 256)
inj_format() {
	local n rc=0 ok created nu t0
	local -a units=("8:8" "$((16 + NMP * 8)):$((NMP * 8))" "16:$((NMP * 8))" "0:8")
	nu=${#units[@]}
	t0=$(now_ms)
	for ((n = 0; n <= nu; n++)); do
		INJ_TOTAL=$((INJ_TOTAL + 1))
		ok=1
		wipe_dev "$RAMC" 1
		if [ "$n" -lt "$nu" ]; then
			inj_fault "${units[@]:0:n}" || return 1
		fi
		created=0
		vmc_create "${OPTS[@]}" && created=1
		if [ "$n" -lt "$nu" ]; then
			if [ "$created" = 1 ]; then
				ktap_print_msg "format N=$n: create succeeded with writes failing"
				ok=0
				vmc_remove || true
			fi
			cache_heal || return 1
			# never formatted: refused with must_exist, formats again
			if vmc_create "${OPTS[@]}" must_exist 1; then
				ktap_print_msg "format N=$n: must_exist 1 accepted a device whose format failed"
				vmc_remove || true
				ok=0
			fi
			if ! vmc_create "${OPTS[@]}"; then
				ktap_print_msg "format N=$n: the healed device does not format: $(cat "$tmp/create.err")"
				ok=0
			fi
		elif [ "$created" = 0 ]; then
			ktap_print_msg "format control: create failed: $(cat "$tmp/create.err")"
			ok=0
		fi
		if dm_exists "$NAME"; then
			wr 0 16 "$tmp/N1" fsync || ok=0
			vmc_remove || ok=0
			if vmc_create "${OPTS[@]}" must_exist 1; then
				"${DD[@]}" if="$DEV" of="$tmp/r" bs="$BS" count=16 iflag=direct status=none &&
					"${CMP[@]}" -s -n $((16 * BS)) "$tmp/r" "$tmp/N1" ||
					{ ktap_print_msg "format N=$n: A differs after the reload"; ok=0; }
				vmc_remove || ok=0
			else
				ktap_print_msg "format N=$n: reload with must_exist 1 refused: $(cat "$tmp/create.err")"
				ok=0
			fi
			check_cache_dev || ok=0
		fi
		if [ "$ok" = 1 ]; then
			INJ_PASS=$((INJ_PASS + 1))
		else
			INJ_FAILED+=("format/$n")
			rc=1
		fi
	done
	ktap_print_msg "format: $((nu + 1)) points in $(($(now_ms) - t0)) ms"
	return "$rc"
}

# ---------------------------------------------------------------- main

T_START=$(now_ms)
DMESG_START="vmcache_inject-start-$$-$RANDOM"
echo "$DMESG_START" >/dev/kmsg
IFS=, read -r -a OPS <<<"${VMCACHE_INJECT_OPS:-format,commit,writeback,modeswitch,reload}"
PLAN=$((${#OPS[@]} + 1))
ktap_print_header
ktap_set_plan "$PLAN"

setup_brd 2 16 || ktap_skip_all "cannot set up brd"
CSZ=$(dev_sectors "$RAMC")
OSZ=$(dev_sectors "$RAMO")
setup_linear vmci_c "$RAMC" || ktap_skip_all "cannot set up dm-linear"
setup_linear vmci_o "$RAMO" || ktap_skip_all "cannot set up dm-linear"
cleanup_push "dmsetup load vmci_c --table '0 $CSZ linear $RAMC 0'; dmsetup resume vmci_c"
CSTAT=$(sysfs_block "$CDEV")/stat

head -c $((64 * BS)) /dev/urandom >"$tmp/ORIG"
head -c $((64 * BS)) /dev/urandom >"$tmp/N1"
head -c $((64 * BS)) /dev/urandom >"$tmp/N2"
# expected blocks 0..47: A = N1, 16..31 the origin's, C = old or new
cp "$tmp/ORIG" "$tmp/EXP_OLD"
"${DD[@]}" if="$tmp/N1" of="$tmp/EXP_OLD" bs="$BS" count=16 conv=notrunc status=none
cp "$tmp/EXP_OLD" "$tmp/EXP_NEW"
"${DD[@]}" if="$tmp/N2" of="$tmp/EXP_NEW" bs="$BS" skip=32 seek=32 count=16 conv=notrunc status=none

wipe_dev "$RAMC" 1
vmc_create || ktap_exit_fail_msg "cannot create the cache: $(cat "$tmp/create.err")"
vmc_remove
DS=$(od -An -t u8 -j 96 -N 8 "$CDEV")
DS=${DS// /}
NMP=$(od -An -t u4 -j 84 -N 4 "$CDEV")
NMP=${NMP// /}
ktap_print_msg "cache $((CSZ / 2048)) MiB: data_start $DS, $NMP mapping pages per area"

for op in "${OPS[@]}"; do
	case $op in
	format) run_timed "injection: format dies after write N (N = 0..3, control 4)" inj_format ;;
	*) run_timed "injection: $op dies after metadata write N (N = 0..all)" inj_op "$op" ;;
	esac
	if dm_exists "$NAME"; then vmc_remove || true; fi
	cache_heal || true
done
ktap_print_msg "injection points run: $INJ_TOTAL, passed $INJ_PASS${INJ_FAILED[*]:+; failed: ${INJ_FAILED[*]}}; $(($(now_ms) - T_START)) ms"

DMESG_MARK=$DMESG_START
ktap_test_result "kernel log clean for the whole test" check_dmesg_clean
ktap_finished "$PLAN"
