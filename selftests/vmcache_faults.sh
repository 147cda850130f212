#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# dm-vmcache fault matrix: I/O errors injected UNDER the cache device and
# the origin (dm-linear tables swapped to "error" or dm-flakey segments
# while the cache is live; dm-dust is not in Debian's 6.1 kernel), each
# documented outcome checked byte for byte.
#
# Devices: cache = dm-linear "vmcf_c" over brd /dev/ram0 (64 MiB, data
# area from data_start, read from the superblock); origin = dm-linear
# "vmcf_o" over brd /dev/ram1 (64 MiB); vmcache "vmcf" over both.
# Regions (4 KiB origin blocks; on a fresh cache blocks are allocated in
# the order first touched, checked once in case 1):
#   A   blocks 0..15     written and fsynced before the fault (cblocks 0..15)
#   A2  blocks 16..31    promoted clean by a read (cblocks 16..31)
#   L   blocks 256..511  written at setup (cblocks 32..287), the light load
#                        (fio randrw 50 IOPS, errors tolerated) runs there
#   B   blocks 64..79    not cached before the fault; a write miss lands in
#                        cblocks 288..303
# Cache data faults cover only the cblocks of A, A2 and B, so the load
# never touches a failing block.  Faults:
#   OR  origin read (and write) error: origin table -> "error"
#   OW  origin write error: origin -> flakey error_writes (reads work)
#   CR  cache read error: "error" over the cblocks of A, A2, B
#   CW  cache write error: flakey error_writes over the cblocks of A, A2, B
#   MW  metadata write error: flakey error_writes over [0, data_start),
#       then the "commit" message (which must fail: metadata=fail)
# Modes: WT writethrough; WB writeback, writeback held off
# (writeback_low/high 100, max_dirty_age 0): A dirty, A2 clean; PT
# passthrough, switched to from writethrough (A, A2 clean cached).
#
# EXPECTED OUTCOMES (ok = succeeds and reads back the new data exactly,
# EIO = fails; same at rest and under load).  After each cell the fault is
# healed, the cache drained, and: A reads back exactly; a region whose
# write failed holds, per 4 KiB block, either the old or the new data; the
# first 2 MiB of the device equal the origin's; data_loss=0; the removed
# cache device passes "vmcachectl check" (0 errors).
#
#  fault  mode  read A   read A2  read B   write A2'  write B'  other
#  -----  ----  -------  -------  -------  ---------  --------  ----------------------
#  OR     WT    ok hit   ok hit   EIO      -          -
#  OR     WB    ok hit   ok hit   EIO      -          -
#  OR     PT    EIO      EIO      EIO      -          -         (reads go to origin)
#  OW     WT    ok       -        -        EIO        EIO
#  OW     WB    ok       -        -        ok         ok        origin gets them after heal
#  OW     PT    ok       -        -        EIO        EIO
#  CR     WT    ok       ok       ok       -          -         read hits retried on origin
#  CR     WB    EIO      ok       ok       -          -         A dirty: no other copy
#  CR     PT    ok       ok       ok       -          -
#  CW     WT    ok       -        -        ok         ok        cached copy dropped
#  CW     WB    ok       -        -        EIO        EIO       "fails the bio"
#  CW     PT    ok       -        -        ok         ok
#  MW     WT    ok       -        -        ok [1]     ok        fsync EIO, commit msg EIO
#  MW     WB    ok       -        -        ok [1]     ok        + write A' ok, fsync EIO;
#                                                               dirty data drains
#  MW     PT    ok       -        -        ok [1]     ok        fsync EIO, commit msg EIO
#  [1] required: after metadata=fail, writes to clean cached blocks
#      succeed (only flushes fail).  Fails on the code of 2025-12 (EIO).
#
# 2. Cache read error while writeback copies: 48 adjacent dirty blocks
#    (blocks 256..303, cblocks 0..47, one merged copy), cblock 20
#    unreadable ("error" segment), origin writes delayed 4 s (dm-delay),
#    writeback started by watermarks (low/high 0, no drain so writes stay
#    cache-only); block 40 rewritten while the copy is in flight.
#    Expected: data_loss=1 (only block 276); block 296 reads the rewrite
#    and stays dirty; after heal and drain the origin holds every block but
#    276 exactly, 276 keeps the origin's older data (also what the device
#    returns).
# 3. Degrade: writeback, A dirty, A2 clean, "error" over A2's cblocks;
#    reading A2 (16 failed hits) returns correct data (origin fallback),
#    cache_errors >= 8, degraded=1, the dm event number grows; a new write
#    (B) then succeeds and goes around the cache (blocks_used unchanged,
#    no cache error); reads stay correct; the dirty blocks drain with no
#    flush message (degraded drains at full speed) and reach the origin.
# 4. Origin write errors while leaving writeback (mode writethrough and
#    mode passthrough start a drain; vmcache_writeback.sh covers the
#    flush message in writeback): blocks stay dirty, writeback_errors
#    grows, degraded=1 after writeback_retries (2), dirty data reads back
#    from the cache; heal: drained, degraded=0, origin byte-exact.
# 5. Systematic injection: the cache device dies for writes (flakey
#    error_writes everywhere else, reads work) after the first N writes of
#    an operation, N = 0 .. writes-1, plus the fault-free control N = all.
#    The writes of each operation are learnt from a fault-free dry run
#    (the 4 KiB metadata pages it changed; mapping pages are written
#    concurrently, then the superblock last); format's are fixed by the
#    format (slot 1, area B, area A, slot 0).  Operations: format (dmsetup
#    create on a blank device), commit message (A dirty and committed, C
#    written without flush), writeback (flush message), mode switch
#    writeback -> writethrough, table reload.  After each: remove, heal,
#    reload (must_exist 1 if formatted; a failed format must leave a
#    device that must_exist refuses and that formats again); A (fsynced
#    before the operation) reads back exactly, C holds old or new data per
#    block, "vmcachectl check" reports no error.
set -euo pipefail
DIR=$(dirname "$0")
# shellcheck source=lib.sh
. "$DIR/lib.sh"

require_vmcache
require_cmd fio dd cmp od awk vmcachectl
require_module brd dm-flakey dm-delay

CACHE_MIB=64
NAME=vmcf
DEV=/dev/mapper/$NAME
CDEV=/dev/mapper/vmcf_c
ODEV=/dev/mapper/vmcf_o
RAMC=/dev/ram0
RAMO=/dev/ram1
BS=4096
HOLD=(writeback_low 100 writeback_high 100 max_dirty_age 0)
LOAD_IOPS=${VMCACHE_FAULTS_LOAD_IOPS:-50}

tmp=$(mktemp -d)
cleanup_push "rm -rf $tmp"

# ------------------------------------------------------------ helpers

now_ms() { date +%s%3N; }

# wait_for <limit s> <command...>: poll every 0.1 s
wait_for() {
	local limit=$1 i
	shift
	for ((i = 0; i < limit * 10; i++)); do
		"$@" && return 0
		sleep 0.1
	done
	return 1
}

is_clean() { [ "$(st blocks_dirty)" = 0 ] && [ "$(st flush)" = idle ]; }
no_dirty() { [ "$(st blocks_dirty)" = 0 ]; }
wb_inflight() { [ "$(st writeback_inflight)" -gt 0 ]; }
wb_idle() { [ "$(st writeback_inflight)" -eq 0 ]; }
wb_degraded() { [ "$(st degraded)" = 1 ] && [ "$(st writeback_errors)" -ge 2 ]; }

log_status() { ktap_print_msg "status: $(status_line)"; }

# table_load <dm name> <table lines>: replace a live table
table_load() {
	printf '%s\n' "$2" | dmsetup load "$1" && dmsetup resume "$1"
}

# seg_table <dev> <size> <kind:start:len>...: the ranges given (sorted,
# not overlapping) get kind "error" or "ewrite" (flakey, writes fail,
# reads work); the gaps are linear
seg_table() {
	local dev=$1 size=$2 pos=0 kind s l seg out=
	shift 2
	for seg in "$@"; do
		IFS=: read -r kind s l <<<"$seg"
		[ "$s" -gt "$pos" ] && out+="$pos $((s - pos)) linear $dev $pos"$'\n'
		case $kind in
		error) out+="$s $l error"$'\n' ;;
		ewrite) out+="$s $l flakey $dev $s 0 3600 1 error_writes"$'\n' ;;
		esac
		pos=$((s + l))
	done
	[ "$pos" -lt "$size" ] && out+="$pos $((size - pos)) linear $dev $pos"$'\n'
	printf '%s' "$out"
}

cache_heal() { table_load vmcf_c "0 $CSZ linear $RAMC 0"; }
origin_heal() { table_load vmcf_o "0 $OSZ linear $RAMO 0"; }
# cache_fault <kind:start:len>...
cache_fault() { table_load vmcf_c "$(seg_table "$RAMC" "$CSZ" "$@")"; }

# cblocks <kind> <first cblock> <count>: a segment over cache blocks
cblocks() { echo "$1:$((DS + $2 * 8)):$(($3 * 8))"; }

# vmc_create <options...>: vmcache over the two linear devices
vmc_create() {
	local opts=("$@")
	dm_create "$NAME" "0 $OSZ vmcache $CDEV $ODEV ${#opts[@]} ${opts[*]}"
}

vmc_remove() {
	dm_remove "$NAME" && cleanup_pop
}

# blocks I/O through the device: <first block> <count> <file>
wr() { dd if="$3" of="$DEV" bs="$BS" seek="$1" count="$2" oflag=direct status=none 2>/dev/null; }
wr_sync() { dd if="$3" of="$DEV" bs="$BS" seek="$1" count="$2" oflag=direct conv=fsync status=none 2>/dev/null; }
rd() { dd if="$DEV" of="$3" bs="$BS" skip="$1" count="$2" iflag=direct status=none 2>/dev/null; }
# rd_dev <dev> <first block> <count> <file>
rd_dev() { dd if="$1" of="$4" bs="$BS" skip="$2" count="$3" iflag=direct status=none; }

# same <file> <file>: quiet byte comparison
same() { cmp -s "$1" "$2"; }

# old_or_new <dev> <first block> <count> <old file> <new file> (files
# start at the first block): every block holds the old or the new data
# (few processes: each one costs ~0.1 s under TCG)
old_or_new() {
	local dev=$1 first=$2 n=$3 bad
	rd_dev "$dev" "$first" "$n" "$tmp/oon" || return 1
	bad=$(comm -12 <(cmp -l "$tmp/oon" "$4" | awk '{ print int(($1 - 1) / 4096) }' | sort -u) \
		<(cmp -l "$tmp/oon" "$5" | awk '{ print int(($1 - 1) / 4096) }' | sort -u) | tr '\n' ' ')
	[ -z "$bad" ] && return 0
	ktap_print_msg "blocks $first + ( $bad) hold neither the old nor the new data"
	return 1
}

# exact <dev> <first block> <count> <file> <what>
exact() {
	rd_dev "$1" "$2" "$3" "$tmp/ex" || { ktap_print_msg "$5: read failed"; return 1; }
	same "$tmp/ex" "$4" && return 0
	ktap_print_msg "$5: differs in blocks $2 + ( $(cmp -l "$tmp/ex" "$4" | awk '{ print int(($1 - 1) / 4096) }' | uniq | tr '\n' ' '))"
	return 1
}

# dev_eq_origin: the first 2 MiB of the device and of the origin agree
dev_eq_origin() {
	rd_dev "$DEV" 0 512 "$tmp/d6" && rd_dev "$ODEV" 0 512 "$tmp/o6" &&
		compare_bytes "$tmp/d6" "$tmp/o6"
}

# check_cache_dev: vmcachectl check on the (inactive) cache device: 0
# (clean) or 1 (warnings only)
check_cache_dev() {
	local out rc=0
	out=$(vmcachectl check "$CDEV" 2>&1) || rc=$?
	if [ "$rc" -gt 1 ]; then
		ktap_print_msg "vmcachectl check: exit $rc"
		ktap_print_msg "$out"
		return 1
	fi
}

# dm event number of the vmcache device
events() { dmsetup info -c --noheadings -o events "$NAME" | tr -d ' '; }

# writes completed on a block device (field 5 of its stat)
writes_of() { awk '{ print $5 }' "$(sysfs_block "$1")/stat"; }

# run_case <description> <function...>: in this shell (the function keeps
# its variables and cleanup entries, unlike ktap_test_result's subshell)
run_case() {
	local d=$1
	shift
	if "$@"; then
		ktap_test_pass "$d"
	else
		ktap_test_fail "$d"
	fi
}

# data files: origin content, new data for A, A2', B', C, L
make_data() {
	make_pattern "$tmp/orig" 2
	head -c 65536 /dev/urandom >"$tmp/A"
	head -c 65536 /dev/urandom >"$tmp/A2n"
	head -c 65536 /dev/urandom >"$tmp/Bn"
	head -c 65536 /dev/urandom >"$tmp/Cn"
	head -c 65536 /dev/urandom >"$tmp/An"
	head -c $((256 * BS)) /dev/urandom >"$tmp/L"
	# the old data of A2, B and C on the origin
	dd if="$tmp/orig" of="$tmp/A2o" bs="$BS" skip=16 count=16 status=none
	dd if="$tmp/orig" of="$tmp/Bo" bs="$BS" skip=64 count=16 status=none
	dd if="$tmp/orig" of="$tmp/Co" bs="$BS" skip=96 count=16 status=none
	dd if="$tmp/orig" of="$tmp/Ao" bs="$BS" skip=0 count=16 status=none
	# the matrix writes 3 blocks of A2' and B' (fewer than the 8 cache
	# errors that degrade the cache): A2x, Bx are the 16-block regions after
	cp "$tmp/A2o" "$tmp/A2x"
	dd if="$tmp/A2n" of="$tmp/A2x" bs="$BS" count=3 conv=notrunc status=none
	cp "$tmp/Bo" "$tmp/Bx"
	dd if="$tmp/Bn" of="$tmp/Bx" bs="$BS" count=3 conv=notrunc status=none
}

reset_origin() {
	dd if="$tmp/orig" of="$ODEV" bs=1M oflag=direct status=none
}

# ------------------------------------------------------- cell set-up

# tick <label>: phase timings of the current cell (diagnostics)
TICKS=
TICK0=0
tick() {
	local t
	t=$(now_ms)
	TICKS+=" $1=$((t - TICK0))"
	TICK0=$t
}

LOAD_PID=
start_load() {
	fio --name=load --filename="$DEV" --rw=randrw --bs=4k --offset=1M --size=1M \
		--ioengine=psync --direct=1 --rate_iops="$LOAD_IOPS" --time_based --runtime=300 \
		--continue_on_error=all --output=/dev/null >/dev/null 2>&1 &
	LOAD_PID=$!
	cleanup_push "kill $LOAD_PID"
	sleep 0.5
}

stop_load() {
	[ -n "$LOAD_PID" ] || return 0
	kill -TERM "$LOAD_PID" 2>/dev/null || true
	wait "$LOAD_PID" 2>/dev/null || true
	cleanup_pop
	LOAD_PID=
}

# setup_mode <wt|wb|pt>: fresh cache; A written and fsynced, A2 promoted
# by a read, L written (fsynced), mode applied
setup_mode() {
	local m=$1 mode=writethrough
	wipe_dev "$RAMC" 1
	reset_origin
	[ "$m" = wb ] && mode=writeback
	vmc_create mode "$mode" sequential_cutoff 0 "${HOLD[@]}" writeback_retries 2 || return 1
	tick create
	wr_sync 0 16 "$tmp/A" || return 1
	rd 16 16 "$tmp/rd" || return 1
	wait_promotions 16
	tick promote
	wr_sync 256 256 "$tmp/L" || return 1
	tick L
	[ "$m" = pt ] && { msg mode passthrough || return 1; }
	return 0
}

# ---------------------------------------------------- the fault matrix

CELL_PASS=0
CELL_FAIL=0
CELL_FAILED=()

# io_expect <ok|EIO> <what> <command...>: the command's outcome
io_expect() {
	local want=$1 what=$2 got=ok
	shift 2
	"$@" || got=EIO
	if [ "$got" != "$want" ]; then
		ktap_print_msg "$what: $got, expected $want"
		return 1
	fi
}

# inject <fault>
inject() {
	case $1 in
	OR) table_load vmcf_o "0 $OSZ error" ;;
	OW) table_load vmcf_o "$(seg_table "$RAMO" "$OSZ" "ewrite:0:$OSZ")" ;;
	CR) cache_fault "$(cblocks error 0 32)" "$(cblocks error 288 16)" ;;
	CW) cache_fault "$(cblocks ewrite 0 32)" "$(cblocks ewrite 288 16)" ;;
	MW) cache_fault "ewrite:0:$DS" ;;
	esac
}

heal() { origin_heal && cache_heal; }

# cell_actions <fault> <mode>: the operations under the fault and their
# expected outcome (the table at the top); sets A2_NEW/B_NEW/A_NEW to
# ok|EIO|- for the checks after healing
cell_actions() {
	local f=$1 m=$2 rc=0 e
	A2_NEW=-
	B_NEW=-
	A_NEW=-
	case $f in
	OR)
		e=ok
		[ "$m" = pt ] && e=EIO
		io_expect "$e" "read A" rd 0 16 "$tmp/r" || rc=1
		[ "$e" = ok ] && ! same "$tmp/r" "$tmp/A" && { ktap_print_msg "read A: wrong data"; rc=1; }
		io_expect "$e" "read A2" rd 16 16 "$tmp/r" || rc=1
		[ "$e" = ok ] && ! same "$tmp/r" "$tmp/A2o" && { ktap_print_msg "read A2: wrong data"; rc=1; }
		io_expect EIO "read B" rd 64 16 "$tmp/r" || rc=1
		;;
	OW)
		e=EIO
		[ "$m" = wb ] && e=ok
		io_expect "$e" "write A2'" wr 16 3 "$tmp/A2n" || rc=1
		io_expect "$e" "write B'" wr 64 3 "$tmp/Bn" || rc=1
		A2_NEW=$e
		B_NEW=$e
		io_expect ok "read A" rd 0 16 "$tmp/r" || rc=1
		same "$tmp/r" "$tmp/A" || { ktap_print_msg "read A: wrong data"; rc=1; }
		;;
	CR)
		e=ok
		[ "$m" = wb ] && e=EIO
		io_expect "$e" "read A" rd 0 16 "$tmp/r" || rc=1
		[ "$e" = ok ] && ! same "$tmp/r" "$tmp/A" && { ktap_print_msg "read A: wrong data"; rc=1; }
		io_expect ok "read A2" rd 16 16 "$tmp/r" || rc=1
		same "$tmp/r" "$tmp/A2o" || { ktap_print_msg "read A2: wrong data"; rc=1; }
		io_expect ok "read B" rd 64 16 "$tmp/r" || rc=1
		same "$tmp/r" "$tmp/Bo" || { ktap_print_msg "read B: wrong data"; rc=1; }
		;;
	CW)
		e=ok
		[ "$m" = wb ] && e=EIO
		io_expect "$e" "write A2'" wr 16 3 "$tmp/A2n" || rc=1
		io_expect "$e" "write B'" wr 64 3 "$tmp/Bn" || rc=1
		A2_NEW=$e
		B_NEW=$e
		io_expect ok "read A" rd 0 16 "$tmp/r" || rc=1
		same "$tmp/r" "$tmp/A" || { ktap_print_msg "read A: wrong data"; rc=1; }
		if [ "$e" = ok ]; then
			io_expect ok "read A2'" rd 16 16 "$tmp/r" || rc=1
			same "$tmp/r" "$tmp/A2x" || { ktap_print_msg "read A2': wrong data"; rc=1; }
		fi
		;;
	MW)
		io_expect EIO "commit message" msg commit || rc=1
		[ "$(st metadata)" = fail ] || { ktap_print_msg "metadata=$(st metadata), expected fail"; rc=1; }
		if [ "$m" = wb ]; then
			io_expect ok "write A' (dirty blocks)" wr 0 16 "$tmp/An" || rc=1
			A_NEW=ok
		fi
		io_expect ok "write A2' (clean cached blocks)" wr 16 3 "$tmp/A2n" || rc=1
		io_expect ok "write B' (not cached)" wr 64 3 "$tmp/Bn" || rc=1
		A2_NEW=ok
		B_NEW=ok
		io_expect EIO "fsync" dd if=/dev/null of="$DEV" conv=fsync,notrunc status=none || rc=1
		rd 0 32 "$tmp/r" || { ktap_print_msg "read A, A2 failed"; rc=1; }
		if [ "$m" = wb ]; then
			same <(head -c 65536 "$tmp/r") "$tmp/An" || { ktap_print_msg "read A': wrong data"; rc=1; }
		else
			same <(head -c 65536 "$tmp/r") "$tmp/A" || { ktap_print_msg "read A: wrong data"; rc=1; }
		fi
		same <(tail -c 65536 "$tmp/r") "$tmp/A2x" || { ktap_print_msg "read A2': wrong data"; rc=1; }
		rd 64 16 "$tmp/r" && same "$tmp/r" "$tmp/Bx" || { ktap_print_msg "read B': wrong data"; rc=1; }
		;;
	esac
	return "$rc"
}

# region_ok <dev> <first> <old> <new> <outcome ok|EIO|->
region_ok() {
	case $5 in
	ok) exact "$1" "$2" 16 "$4" "block $2.. (new data)" ;;
	EIO) old_or_new "$1" "$2" 16 "$3" "$4" ;;
	*) exact "$1" "$2" 16 "$3" "block $2.. (old data)" ;;
	esac
}

# cell_after: healed; drain and compare
cell_after() {
	local rc=0 a=$tmp/A
	[ "$A_NEW" = ok ] && a=$tmp/An
	msg flush || true
	if ! wait_for 60 is_clean; then
		ktap_print_msg "not drained 60 s after the heal"
		rc=1
	fi
	tick drain
	exact "$DEV" 0 16 "$a" "A after heal" || rc=1
	region_ok "$DEV" 16 "$tmp/A2o" "$tmp/A2x" "$A2_NEW" || rc=1
	region_ok "$DEV" 64 "$tmp/Bo" "$tmp/Bx" "$B_NEW" || rc=1
	dev_eq_origin || rc=1
	[ "$(st data_loss)" = 0 ] || { ktap_print_msg "data_loss=$(st data_loss)"; rc=1; }
	tick compare
	[ "$rc" -eq 0 ] || log_status
	vmc_remove || rc=1
	tick remove
	# the origin alone holds what the device returned
	exact "$ODEV" 0 16 "$a" "origin A" || rc=1
	check_cache_dev || rc=1
	tick check
	return "$rc"
}

# cell <fault> <mode> <rest|load>
cell() {
	local f=$1 m=$2 l=$3 rc=0 t0
	t0=$(now_ms)
	TICKS=
	TICK0=$t0
	if ! setup_mode "$m"; then
		ktap_print_msg "set-up failed"
		dm_exists "$NAME" && vmc_remove
		return 1
	fi
	T_SETUP=$(($(now_ms) - t0))
	tick setup
	[ "$l" = load ] && start_load
	tick load
	inject "$f" || { ktap_print_msg "cannot inject $f"; rc=1; }
	tick inject
	[ "$rc" -eq 0 ] && { cell_actions "$f" "$m" || rc=1; }
	tick actions
	stop_load
	tick stopload
	heal || { ktap_print_msg "cannot heal"; rc=1; }
	tick heal
	cell_after || rc=1
	ktap_print_msg "$f $m $l ms:$TICKS"
	return "$rc"
}

# ---------------------------------------------------------------- main

DMESG_START="vmcache_faults-start-$$-$RANDOM"
echo "$DMESG_START" >/dev/kmsg

# brd devices all have the same size: cache and origin are 64 MiB each
setup_brd 2 "$CACHE_MIB" || ktap_skip_all "cannot set up brd"
CSZ=$(dev_sectors "$RAMC")
OSZ=$(dev_sectors "$RAMO")
setup_linear vmcf_c "$RAMC" || ktap_skip_all "cannot set up dm-linear"
setup_linear vmcf_o "$RAMO" || ktap_skip_all "cannot set up dm-linear"
# if the test dies with a fault in place, heal before the removals
cleanup_push "printf '0 $OSZ linear $RAMO 0\n' | dmsetup load vmcf_o; dmsetup resume vmcf_o; printf '0 $CSZ linear $RAMC 0\n' | dmsetup load vmcf_c; dmsetup resume vmcf_c"
make_data

# data_start and nr_mpages: format once and read the superblock
wipe_dev "$RAMC" 1
vmc_create || ktap_exit_fail_msg "cannot create the cache"
vmc_remove
DS=$(od -An -t u8 -j 96 -N 8 "$CDEV" | tr -d ' ')
NMP=$(od -An -t u4 -j 84 -N 4 "$CDEV" | tr -d ' ')

# Every cell costs ~25 s under TCG (process start-up dominates), so by
# default the loaded variant runs in writeback only (the mode with the
# most state); VMCACHE_FAULTS_FULL=1 runs all 30 cells.
# VMCACHE_FAULTS_CELLS=MW,CW (say) runs only those faults' cells.
MODES=(wt wb pt)
IFS=, read -r -a FAULTS <<<"${VMCACHE_FAULTS_CELLS:-OR,OW,CR,CW,MW}"
FULL=${VMCACHE_FAULTS_FULL:-0}
# cell_runs <mode>: rest, and load where it runs
cell_runs() {
	if [ "$FULL" = 1 ] || [ "$1" = wb ]; then
		echo rest load
	else
		echo rest
	fi
}
NCELLS=0
for m in "${MODES[@]}"; do
	read -r -a LOADS <<<"$(cell_runs "$m")"
	NCELLS=$((NCELLS + ${#FAULTS[@]} * ${#LOADS[@]}))
done
PLAN=$((NCELLS + 1 + 3 + 4 + 4 + 5 + 1))
ktap_print_header
ktap_set_plan "$PLAN"
ktap_print_msg "cache $((CSZ / 2048)) MiB (data_start $DS, $NMP mapping pages per area), origin $((OSZ / 2048)) MiB"

# ------------------------------------- 1. the cblock order assumption

# On a fresh cache, A (written first) is in cblocks 0..15, A2 (read
# next) in 16..31, L in 32..1055: the raw data area says so.
cblock_order() {
	local rc=0
	setup_mode wt || return 1
	exact "$RAMC" $((DS / 8)) 16 "$tmp/A" "cblocks 0..15 = A" || rc=1
	exact "$RAMC" $((DS / 8 + 16)) 16 "$tmp/A2o" "cblocks 16..31 = A2" || rc=1
	exact "$RAMC" $((DS / 8 + 32)) 256 "$tmp/L" "cblocks 32..287 = L" || rc=1
	wr 64 3 "$tmp/Bn" || rc=1
	exact "$RAMC" $((DS / 8 + 288)) 16 "$tmp/Bn" "cblocks 288..303 = B" || rc=1
	vmc_remove || rc=1
	return "$rc"
}
run_case "fresh cache allocates cblocks in first-touch order (A 0..15, A2 16..31, L 32..287, B 288..303)" cblock_order

for f in "${FAULTS[@]}"; do
	for m in "${MODES[@]}"; do
		read -r -a LOADS <<<"$(cell_runs "$m")"
		for l in "${LOADS[@]}"; do
			t0=$(now_ms)
			if cell "$f" "$m" "$l"; then
				CELL_PASS=$((CELL_PASS + 1))
				ktap_test_pass "matrix $f $m $l ($(($(now_ms) - t0)) ms, set-up $T_SETUP)"
			else
				CELL_FAIL=$((CELL_FAIL + 1))
				CELL_FAILED+=("$f/$m/$l")
				ktap_test_fail "matrix $f $m $l ($(($(now_ms) - t0)) ms)"
			fi
		done
	done
done
ktap_print_msg "fault matrix: $CELL_PASS of $NCELLS cells passed${CELL_FAILED[*]:+; failed: ${CELL_FAILED[*]}}"

# ---------------- 2. cache read error while writeback copies merged blocks

# 48 adjacent dirty blocks (256..303 -> cblocks 0..47, one merged copy),
# cblock 20 (block 276) unreadable, origin writes delayed 4 s; block 296
# rewritten (cache only) while the copy is in flight.
wb_read_error() {
	local rc=0 i e
	head -c $((48 * BS)) /dev/urandom >"$tmp/P"
	head -c "$BS" /dev/urandom >"$tmp/R"
	# expected: P, but block 276 keeps the origin's data, 296 is R
	cp "$tmp/P" "$tmp/E"
	dd if="$tmp/orig" of="$tmp/E" bs="$BS" skip=276 seek=20 count=1 conv=notrunc status=none
	dd if="$tmp/R" of="$tmp/E" bs="$BS" seek=40 count=1 conv=notrunc status=none
	wipe_dev "$RAMC" 1
	reset_origin
	vmc_create mode writeback sequential_cutoff 0 "${HOLD[@]}" || return 1
	wr_sync 256 48 "$tmp/P" || return 1
	exact "$RAMC" $((DS / 8)) 48 "$tmp/P" "cblocks 0..47 = blocks 256..303" || return 1
	cache_fault "$(cblocks error 20 1)" || return 1
	table_load vmcf_o "0 $OSZ delay $RAMO 0 0 $RAMO 0 4000" || return 1
	msg set writeback_low 0 && msg set writeback_high 0 || return 1
	if ! wait_for 10 wb_inflight; then
		ktap_print_msg "writeback did not start"
		rc=1
	fi
	io_expect ok "rewrite of block 296 during the copy" wr 296 1 "$tmp/R" || rc=1
	e=$(st writeback_inflight)
	if [ "$e" -eq 0 ]; then
		ktap_print_msg "the copy had finished before the rewrite completed: inconclusive"
		rc=1
	fi
	wait_for 30 wb_idle || ktap_print_msg "copy still in flight after 30 s"
	msg set writeback_high 100 && msg set writeback_low 100 || rc=1
	origin_heal && cache_heal || rc=1
	sleep 0.5
	log_status
	[ "$(st data_loss)" = 1 ] || { ktap_print_msg "data_loss=$(st data_loss), expected 1 (only block 276)"; rc=1; }
	rd 256 48 "$tmp/got" || { ktap_print_msg "read back failed"; rc=1; }
	for ((i = 0; i < 48; i++)); do
		if ! cmp -s -i "$((i * BS)):$((i * BS))" -n "$BS" "$tmp/got" "$tmp/E"; then
			case $i in
			20) ktap_print_msg "device block 276 is not the origin's old copy" ;;
			40) ktap_print_msg "device block 296 is not the rewrite" ;;
			*) ktap_print_msg "device block $((256 + i)) is not the data written" ;;
			esac
			rc=1
		fi
	done
	return "$rc"
}
run_case "writeback cache read error: only the unreadable block is lost, the block rewritten during the copy keeps its new data" wb_read_error

wb_read_error_drain() {
	local rc=0 i
	dm_exists "$NAME" || return 1
	msg flush || rc=1
	wait_for 60 is_clean || { ktap_print_msg "not drained"; log_status; rc=1; }
	vmc_remove || rc=1
	rd_dev "$ODEV" 256 48 "$tmp/got" || return 1
	for ((i = 0; i < 48; i++)); do
		cmp -s -i "$((i * BS)):$((i * BS))" -n "$BS" "$tmp/got" "$tmp/E" ||
			{ ktap_print_msg "origin block $((256 + i)) is not the expected data"; rc=1; }
	done
	return "$rc"
}
run_case "writeback cache read error: after heal and drain the origin holds every other block exactly" wb_read_error_drain
dm_exists "$NAME" && vmc_remove
heal || true

# Two blocks of separate copies: one unreadable, the other must reach the
# origin (no merge, so no retry needed: a control for the case above).
wb_read_error_single() {
	local rc=0
	wipe_dev "$RAMC" 1
	reset_origin
	vmc_create mode writeback sequential_cutoff 0 "${HOLD[@]}" || return 1
	wr_sync 400 1 "$tmp/R" && wr_sync 500 1 "$tmp/R" || return 1
	cache_fault "$(cblocks error 0 1)" || return 1
	msg flush || rc=1
	wait_for 30 is_clean || { ktap_print_msg "not drained"; rc=1; }
	cache_heal || rc=1
	log_status
	[ "$(st data_loss)" = 1 ] || { ktap_print_msg "data_loss=$(st data_loss), expected 1"; rc=1; }
	exact "$DEV" 400 1 <(dd if="$tmp/orig" bs="$BS" skip=400 count=1 status=none) "block 400 (lost: origin's old data)" || rc=1
	exact "$ODEV" 500 1 "$tmp/R" "origin block 500" || rc=1
	vmc_remove || rc=1
	check_cache_dev || rc=1
	return "$rc"
}
run_case "writeback cache read error on a lone block: data_loss=1, the origin's copy is served, other blocks written back" wb_read_error_single

# ------------------------------------------------------------ 3. degrade

degrade_setup() {
	wipe_dev "$RAMC" 1
	reset_origin
	vmc_create mode writeback sequential_cutoff 0 "${HOLD[@]}" || return 1
	wr_sync 0 16 "$tmp/A" || return 1
	rd 16 16 "$tmp/r" || return 1
	wait_promotions 16
	EV0=$(events)
	CE0=$(st cache_errors)
	cache_fault "$(cblocks error 16 16)" || return 1
	io_expect ok "read A2 (clean, cache failing)" rd 16 16 "$tmp/r" || return 1
	same "$tmp/r" "$tmp/A2o" || { ktap_print_msg "read A2: wrong data"; return 1; }
}
run_case "degrade: read hits on failing clean cache blocks return the origin's data" degrade_setup

degraded_state() {
	local ce
	ce=$(($(st cache_errors) - CE0))
	ktap_print_msg "cache_errors +$ce, events $EV0 -> $(events)"
	log_status
	[ "$ce" -ge 8 ] && [ "$(st degraded)" = 1 ] && [ "$(events)" -gt "$EV0" ]
}
run_case "degrade: >= 8 cache errors in a row: degraded=1 and a dm event" degraded_state

around_cache() {
	local used ce rc=0
	used=$(st blocks_used)
	ce=$(st cache_errors)
	io_expect ok "write B' while degraded" wr_sync 64 16 "$tmp/Bn" || rc=1
	[ "$(st blocks_used)" = "$used" ] || { ktap_print_msg "blocks_used $used -> $(st blocks_used): the write was cached"; rc=1; }
	[ "$(st cache_errors)" = "$ce" ] || { ktap_print_msg "cache_errors $ce -> $(st cache_errors)"; rc=1; }
	exact "$ODEV" 64 16 "$tmp/Bn" "origin B'" || rc=1
	exact "$DEV" 64 16 "$tmp/Bn" "B'" || rc=1
	exact "$DEV" 0 16 "$tmp/A" "A (dirty)" || rc=1
	exact "$DEV" 16 16 "$tmp/A2o" "A2" || rc=1
	return "$rc"
}
run_case "degrade: new writes go around the cache, reads stay correct" around_cache

degraded_drain() {
	local rc=0
	if ! wait_for 30 no_dirty; then
		ktap_print_msg "dirty data not drained 30 s after degrading (no flush message)"
		log_status
		rc=1
	fi
	exact "$ODEV" 0 16 "$tmp/A" "origin A" || rc=1
	cache_heal || rc=1
	vmc_remove || rc=1
	return "$rc"
}
run_case "degrade: dirty data keeps draining to the origin" degraded_drain
dm_exists "$NAME" && vmc_remove
heal || true

# ------------- 4. origin write errors while leaving writeback (wt and pt)

leave_wb_errors() { # <mode>
	local rc=0
	wipe_dev "$RAMC" 1
	reset_origin
	vmc_create mode writeback sequential_cutoff 0 "${HOLD[@]}" writeback_retries 2 || return 1
	wr_sync 0 16 "$tmp/A" || return 1
	inject OW || return 1
	msg mode "$1" || return 1
	if ! wait_for 30 wb_degraded; then
		ktap_print_msg "not degraded 30 s after the switch"
		rc=1
	fi
	log_status
	[ "$(st blocks_dirty)" = 16 ] || { ktap_print_msg "blocks_dirty=$(st blocks_dirty), expected 16"; rc=1; }
	[ "$(st data_loss)" = 0 ] || rc=1
	[ "$(st flush)" = active ] || { ktap_print_msg "flush=$(st flush), expected active"; rc=1; }
	exact "$DEV" 0 16 "$tmp/A" "A read back through the cache" || rc=1
	return "$rc"
}
leave_wb_heal() {
	local rc=0
	dm_exists "$NAME" || return 1
	origin_heal || rc=1
	wait_for 60 is_clean || { ktap_print_msg "not drained 60 s after the heal"; rc=1; }
	log_status
	[ "$(st degraded)" = 0 ] || rc=1
	[ "$(st data_loss)" = 0 ] || rc=1
	exact "$ODEV" 0 16 "$tmp/A" "origin A" || rc=1
	vmc_remove || rc=1
	check_cache_dev || rc=1
	return "$rc"
}
for m in writethrough passthrough; do
	run_case "origin write errors on leaving writeback (mode $m): dirty kept, retried, degraded=1, data readable" leave_wb_errors "$m"
	run_case "origin write errors on leaving writeback (mode $m): healed: drained, degraded=0, origin byte-exact" leave_wb_heal
	dm_exists "$NAME" && vmc_remove
	heal || true
done

# ------------------------------------------------ 5. systematic injection

INJ_TOTAL=0
INJ_PASS=0

# inj_fault <allowed start:len>...: writes to the metadata area of the
# cache device, [0, data_start), fail but in the given units (reads work;
# the data area is untouched)
inj_fault() {
	local pos=0 u s l segs=()
	while read -r u; do
		[ -n "$u" ] || continue
		s=${u%%:*}
		l=${u#*:}
		[ "$s" -gt "$pos" ] && segs+=("ewrite:$pos:$((s - pos))")
		pos=$((s + l))
	done < <(printf '%s\n' "$@" | sort -t: -k1,1n)
	[ "$pos" -lt "$DS" ] && segs+=("ewrite:$pos:$((DS - pos))")
	cache_fault "${segs[@]}"
}

snap_md() { rd_dev "$RAMC" 0 $((DS / 8)) "$1"; }

# units_between <before> <after>: changed metadata pages as start:len,
# mapping pages first (written concurrently), then the superblock slots
# in the order written (lower sequence number first)
units_between() {
	local p
	local -a pages
	mapfile -t pages < <(cmp -l "$1" "$2" | awk '{ p = int(($1 - 1) / 4096); if (!(p in s)) { s[p] = 1; print p } }' || true)
	for p in "${pages[@]}"; do
		[ "$p" -ge 2 ] && echo "$((p * 8)):8"
	done
	for p in "${pages[@]}"; do
		[ "$p" -lt 2 ] && echo "$(od -An -t u8 -j $((p * 4096 + 56)) -N 8 "$2" | tr -d ' ') $p"
	done | sort -n | while read -r _ p; do echo "$((p * 8)):8"; done
}

# the operations: prep (fresh cache, A dirty and fsynced), then under
# the fault C is written without a flush (its mappings are what the
# operation commits, with whatever else it changes) and the operation
# runs (its result is not checked: the state after it is)
WB_OPTS=(mode writeback sequential_cutoff 0 "${HOLD[@]}")
op_prep() {
	wipe_dev "$RAMC" 1
	reset_origin
	vmc_create "${WB_OPTS[@]}" || return 1
	wr_sync 0 16 "$tmp/A" || return 1
	msg commit
}
op_run() {
	wr 96 16 "$tmp/Cn" || ktap_print_msg "$1: write of C failed"
	case $1 in
	commit)
		msg commit ;;
	writeback)
		msg flush
		wait_for 20 is_clean ;;
	modeswitch)
		msg mode writethrough
		wait_for 20 is_clean ;;
	reload)
		dmsetup table "$NAME" | dmsetup load "$NAME" && dmsetup resume "$NAME" ;;
	esac
	sleep 1.5
}

# inj_check <op> <N>: after the injected run: remove, heal, reload with
# must_exist 1, check A and C, vmcachectl check
inj_check() {
	local rc=0
	dm_exists "$NAME" && { vmc_remove || { ktap_print_msg "remove failed"; rc=1; }; }
	cache_heal || return 1
	if ! vmc_create "${WB_OPTS[@]}" must_exist 1; then
		ktap_print_msg "reload with must_exist 1 refused"
		return 1
	fi
	exact "$DEV" 0 16 "$tmp/A" "A (fsynced before the operation)" || rc=1
	old_or_new "$DEV" 96 16 "$tmp/Co" "$tmp/Cn" || rc=1
	vmc_remove || rc=1
	check_cache_dev || rc=1
	return "$rc"
}

inj_op() { # <op>
	local op=$1 n nu rc=0 w0 w
	local -a units
	# dry run: the control, and the writes it makes
	op_prep || return 1
	snap_md "$tmp/md0"
	w0=$(writes_of "$RAMC")
	op_run "$op" 2>/dev/null || true
	w=$(($(writes_of "$RAMC") - w0))
	snap_md "$tmp/md1"
	mapfile -t units < <(units_between "$tmp/md0" "$tmp/md1")
	nu=${#units[@]}
	ktap_print_msg "$op: dry run: $w writes to the cache device, $nu metadata pages changed: ${units[*]}"
	inj_check "$op" ctl || { ktap_print_msg "$op: the fault-free control fails"; rc=1; }
	INJ_TOTAL=$((INJ_TOTAL + 1))
	[ "$rc" -eq 0 ] && INJ_PASS=$((INJ_PASS + 1))
	for ((n = 0; n < nu; n++)); do
		INJ_TOTAL=$((INJ_TOTAL + 1))
		if ! op_prep; then
			ktap_print_msg "$op N=$n: set-up failed"
			rc=1
			dm_exists "$NAME" && vmc_remove
			continue
		fi
		inj_fault "${units[@]:0:n}" || { rc=1; continue; }
		op_run "$op" 2>/dev/null || true
		ktap_print_msg "$op N=$n: metadata=$(st metadata) commits=$(st commits)"
		if inj_check "$op" "$n"; then
			INJ_PASS=$((INJ_PASS + 1))
		else
			ktap_print_msg "$op: write $n failing (device dead for writes from there): FAILED"
			rc=1
		fi
	done
	return "$rc"
}

# format: slot 1, area B, area A, slot 0 (vmcache-metadata.c)
inj_format() {
	local n rc=0 created
	local -a units=("8:8" "$((16 + NMP * 8)):$((NMP * 8))" "16:$((NMP * 8))" "0:8")
	for ((n = 0; n <= ${#units[@]}; n++)); do
		INJ_TOTAL=$((INJ_TOTAL + 1))
		wipe_dev "$RAMC" 1
		reset_origin
		[ "$n" -lt ${#units[@]} ] && { inj_fault "${units[@]:0:n}" || return 1; }
		created=0
		vmc_create "${WB_OPTS[@]}" 2>/dev/null && created=1
		local ok=1
		if [ "$n" -lt ${#units[@]} ]; then
			[ "$created" -eq 0 ] || { ktap_print_msg "format N=$n: create succeeded with writes failing"; ok=0; }
			dm_exists "$NAME" && { dmsetup remove "$NAME" 2>/dev/null || true; }
			[ "$created" -eq 1 ] && cleanup_pop
			cache_heal || return 1
			# never formatted: blank, refused with must_exist, formatted again
			if vmc_create "${WB_OPTS[@]}" must_exist 1 2>/dev/null; then
				ktap_print_msg "format N=$n: must_exist 1 accepted a device whose format failed"
				vmc_remove
				ok=0
			fi
			vmc_create "${WB_OPTS[@]}" || { ktap_print_msg "format N=$n: healed device does not format"; ok=0; }
		else
			[ "$created" -eq 1 ] || { ktap_print_msg "format control: create failed"; ok=0; }
		fi
		if dm_exists "$NAME"; then
			wr_sync 0 16 "$tmp/A" || ok=0
			vmc_remove || ok=0
			if vmc_create "${WB_OPTS[@]}" must_exist 1; then
				exact "$DEV" 0 16 "$tmp/A" "format N=$n: A after reload" || ok=0
				vmc_remove || ok=0
			else
				ok=0
			fi
			check_cache_dev || ok=0
		fi
		if [ "$ok" -eq 1 ]; then
			INJ_PASS=$((INJ_PASS + 1))
		else
			rc=1
		fi
	done
	return "$rc"
}
run_case "injection: format dies after write N (N = 0..3, control 4)" inj_format
for op in commit writeback modeswitch reload; do
	run_case "injection: $op dies after metadata write N (N = 0..all)" inj_op "$op"
	dm_exists "$NAME" && vmc_remove
	cache_heal || true
done
ktap_print_msg "injection points run: $INJ_TOTAL, passed $INJ_PASS"
ktap_print_msg "fault matrix: $CELL_PASS of $NCELLS cells passed${CELL_FAILED[*]:+; failed: ${CELL_FAILED[*]}}"

DMESG_MARK=$DMESG_START
ktap_test_result "kernel log clean for the whole test" check_dmesg_clean

ktap_finished "$PLAN"
