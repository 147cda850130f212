#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# dm-vmcache fault matrix: I/O errors injected UNDER the cache device and
# the origin (dm-linear tables swapped live to "error" or dm-flakey
# error_writes segments; dm-dust is not in Debian's 6.1 kernel), each
# documented outcome (Documentation/vmcache.rst, "Errors") checked byte
# for byte.  Systematic injection (a device dying after N writes) is
# vmcache_inject.sh.
#
# Devices: cache = dm-linear "vmcf_c" over brd /dev/ram0 (64 MiB); origin =
# dm-linear "vmcf_o" over brd /dev/ram1 (64 MiB); vmcache "vmcf" over both
# (sequential_cutoff 0; writeback held off: writeback_low/high 100,
# max_dirty_age 0).  Origin content: random; every write of the test takes
# the block at the same offset from one of two random files (N1 for the
# set-up, N2 for the writes under a fault), so the expected content of any
# block is known without running a program per block.
#
# The matrix runs in passes: one vmcache device per mode (wt, wb, pt =
# passthrough switched to from writethrough), at rest, and a second wb
# pass under a light load (fio randrw at 50 IOPS over L, errors tolerated;
# VMCACHE_FAULTS_LOAD=all loads every mode).  A pass sets up, on a blank
# cache (a fresh cache allocates cblocks in first-touch order):
#   L         blocks 0..255, written first            cblocks 0..255
#   A  of f   blocks C+0..15, written (fsynced)       cblocks 256+16f..
#   A2 of f   blocks C+16..31, promoted by a read     cblocks 336+16f..
#   B  of f   blocks C+32..47, not cached             new cblocks: >= 416
# for each fault f (OR 0, OW 1, CR 2, CW 3, MW 4; C = 512 + 64f), so each
# cell has regions of its own and the cells of a pass run one after the
# other on one device: inject (one table swap), the operations, heal (swap
# back), read the cell's 48 blocks back.  In wb, A is dirty, A2 clean.
# Faults (only over the cell's own blocks, so the load never fails):
#   OR  origin "error" (reads and writes) over the cell's blocks
#   OW  origin flakey error_writes over the cell's blocks (reads work)
#   CR  cache "error" over the cblocks of A and A2
#   CW  cache "error" over the cblocks of A2 and every cblock not yet
#       allocated (>= 416: where B lands); only written while it lasts
#   MW  cache "error" over the metadata, [0, data_start); last in a pass
#       (metadata=fail is for the life of the table)
# Cache data faults are "error" segments, not dm-flakey: flakey fails
# every flush sent to it (num_flush_bios = 1), which would fail the
# cache's commits (metadata=fail) whenever one ran during the cell; the
# error target gets no flushes.
# Reads and writes under CR/CW touch 3 blocks each, and each cell starts
# with a read hit on L (a success ends a run of cache errors), so a cell
# stays below the 8 cache errors in a row that degrade the cache (checked:
# degraded=0 after each cell; degrade is case 3).
#
# EXPECTED OUTCOMES (ok = succeeds, and a read returns the expected data;
# EIO = fails; the same at rest and under load):
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
#  MW     all   ok       ok       ok       ok         ok        commit message EIO,
#                                                               metadata=fail, write A'
#                                                               ok, fsync EIO
#
# After the heal the cell's 48 blocks read back exactly (a write that
# failed: each 4 KiB block the old or the new data).  At the end of a
# pass: flush; drained (blocks_dirty=0); device = origin over blocks
# 0..831 and = what the cells read back (blocks 512.. under load, where L
# changes); data_loss=0; removed, the cache device passes "vmcachectl
# check" (exit 0 or 1); loaded again (must_exist 1), it returns the same
# data over blocks 0..831 [2].
#  [2] fails in the pt pass on the code of 2026-12-02 (92917b4): in
#      passthrough with metadata=fail a write to a clean cached block
#      drops the copy in memory only (route_write) and goes to the origin;
#      the disk still maps the old copy as clean, so after the removal and
#      a load the device returns the old data of MW's A (blocks 768..783).
#
# 2. Cache read error while writeback copies merged blocks: blocks
#    256..303 dirty (cblocks 0..47, one merged copy), cblock 20 (block 276)
#    unreadable, origin writes delayed 2 s (dm-delay), writeback started by
#    writeback_low/high 0; block 296 rewritten while the copy is in flight.
#    Expected: data_loss=1 and one "data loss" log line, for block 276 (the
#    merged copy is retried per block); block 296 reads the rewrite; after heal and drain the origin
#    holds every other block exactly, 296 the rewrite, 276 its older data
#    (also what the device returns).
# 3. Degrade: writeback, A (blocks 0..15) dirty, A2 (320..335) clean, "error"
#    over A2's cblocks; reading A2 (16 failed hits) returns the origin's
#    data, cache_errors >= 8, degraded=1, the dm event number grows; a new
#    write (B, 336..351, fsynced) succeeds and goes around the cache
#    (blocks_used and cache_errors unchanged, on the origin); reads stay
#    correct; dirty data drains with no flush message and reaches the
#    origin.
# 4. Origin write errors while leaving writeback (mode writethrough; also
#    passthrough with VMCACHE_FAULTS_EXTRA=2): blocks stay dirty,
#    writeback_errors grows, degraded=1 after writeback_retries (2),
#    dirty data reads back from the cache; healed: drained, degraded=0,
#    origin byte-exact.
#
# Cost: under TCG every program started costs 0.1-1 s, so the test starts
# few: status and tunables through sysfs (bash builtins), sleeps with
# "read -t", one dd and one cmp per range, busybox's static dd/cmp.
#
# Environment (run-in-guest.sh --env): VMCACHE_FAULTS_CELLS=MW,CW runs
# only those faults' cells; VMCACHE_FAULTS_LOAD=none|wb|all (default wb):
# the modes with a loaded pass; VMCACHE_FAULTS_EXTRA=0 skips cases 2-4,
# =2 adds case 4 in passthrough.
set -euo pipefail
DIR=$(dirname "$0")
# shellcheck source=lib.sh
. "$DIR/lib.sh"

require_vmcache
require_cmd fio dd cmp awk vmcachectl
require_module brd dm-flakey dm-delay

NAME=vmcf
DEV=/dev/mapper/$NAME
CDEV=/dev/mapper/vmcf_c
ODEV=/dev/mapper/vmcf_o
RAMC=/dev/ram0
RAMO=/dev/ram1
BS=4096
NB=1024 # blocks of the data files (4 MiB)
HOLD=(writeback_low 100 writeback_high 100 max_dirty_age 0)
LOAD_IOPS=${VMCACHE_FAULTS_LOAD_IOPS:-50}
SYS=/sys/module/dm_vmcache/caches/$NAME

fast_tools

tmp=$(mktemp -d)
cleanup_push "rm -rf $tmp"

# ------------------------------------------------------------ helpers

# tun <key> <value>: set a tunable through sysfs
tun() { echo "$2" >"$SYS/$1"; }
no_dirty() { local d; stv d blocks_dirty && [ "$d" = 0 ]; }
wb_inflight() { local v; stv v writeback_inflight && [ "$v" -gt 0 ]; }
wb_idle() { local v; stv v writeback_inflight && [ "$v" -eq 0 ]; }
wb_degraded() {
	local d e
	stv d degraded && stv e writeback_errors && [ "$d" = 1 ] && [ "$e" -ge 2 ]
}
promoted() { local v; stv v promotions && [ "$v" -ge "$1" ]; }

# want <key> <value>: a status value, logged when it differs
want() {
	local v
	stv v "$1" || v='(missing)'
	[ "$v" = "$2" ] && return 0
	ktap_print_msg "$1=$v, expected $2"
	return 1
}

log_status() { ktap_print_msg "status: $(status_line)"; }

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
		delay) out+="$s $l delay $dev $s 0 $dev $s 2000"$'\n' ;;
		esac
		pos=$((s + l))
	done
	[ "$pos" -lt "$size" ] && out+="$pos $((size - pos)) linear $dev $pos"$'\n'
	printf '%s' "$out"
}

cache_heal() { table_load vmcf_c "0 $CSZ linear $RAMC 0"; }
origin_heal() { table_load vmcf_o "0 $OSZ linear $RAMO 0"; }
cache_fault() { table_load vmcf_c "$(seg_table "$RAMC" "$CSZ" "$@")"; }
origin_fault() { table_load vmcf_o "$(seg_table "$RAMO" "$OSZ" "$@")"; }

# cbs <kind> <first cblock> <count>: a segment over cache blocks
cbs() { echo "$1:$((DS + $2 * 8)):$(($3 * 8))"; }
# obs <kind> <first block> <count>: a segment over origin blocks
obs() { echo "$1:$(($2 * 8)):$(($3 * 8))"; }

# vmc_create <options...>: vmcache over the two linear devices
vmc_create() {
	local opts=("$@")
	dm_create "$NAME" "0 $OSZ vmcache $CDEV $ODEV ${#opts[@]} ${opts[*]}"
}
vmc_remove() { dm_remove "$NAME" && cleanup_pop; }

# I/O on the device, 4 KiB blocks; a write takes the blocks at the same
# offset of a data file: wr <first> <count> <file> [fsync]
wr() {
	"${DD[@]}" if="$3" of="$DEV" bs=$BS skip="$1" seek="$1" count="$2" \
		oflag=direct conv=notrunc${4:+,fsync} status=none 2>/dev/null
}
# rd <first> <count> [<device>]: into $tmp/r
rd() {
	"${DD[@]}" if="${3:-$DEV}" of="$tmp/r" bs=$BS skip="$1" count="$2" \
		iflag=direct status=none 2>/dev/null
}
# fsync of the device (an empty write with fsync: a REQ_PREFLUSH)
dev_fsync() {
	"${DD[@]}" if=/dev/null of="$DEV" conv=fsync,notrunc status=none 2>/dev/null
}

# same <file> <first> <count> <data file> [<offset in file, blocks>]: the
# file (from its block <offset>, default 0) holds the data file's blocks
# <first>.. exactly
same() {
	"${CMP[@]}" -s -n $(($3 * BS)) "$1" "$4" $((${5:-0} * BS)) $(($2 * BS))
}

# badblocks <file> <first> <count> <data file>...: the blocks of the file
# (holding blocks <first>..) that equal the block in none of the data
# files, as a list of block numbers (diagnostics and old-or-new checks)
badblocks() {
	local f=$1 first=$2 n=$3 d
	shift 3
	for d in "$@"; do
		"${CMP[@]}" -l -n $((n * BS)) "$f" "$d" 0 $((first * BS)) 2>/dev/null |
			awk -v f="$first" '{ b = f + int(($1 - 1) / 4096); if (!(b in s)) { s[b] = 1; print b } }' || true
	done | sort -n | uniq -c | awk -v k=$# '$1 == k { printf "%s ", $2 }'
}

# check_read <want ok|EIO> <what> <first> <count> [<data file> [<dev>]]:
# read blocks (of the vmcache device, or <dev>); an ok read must return
# the data file's blocks
check_read() {
	local want=$1 what=$2 got=ok
	rd "$3" "$4" "${6:-}" || got=EIO
	if [ "$got" != "$want" ]; then
		ktap_print_msg "$what: $got, expected $want"
		return 1
	fi
	if [ "$got" = ok ] && [ -n "${5:-}" ] && ! same "$tmp/r" "$3" "$4" "$5"; then
		ktap_print_msg "$what: wrong data in blocks ( $(badblocks "$tmp/r" "$3" "$4" "$5"))"
		return 1
	fi
}

# check_write <want ok|EIO> <what> <first> <count> <data file>
check_write() {
	local want=$1 what=$2 got=ok
	wr "$3" "$4" "$5" || got=EIO
	[ "$got" = "$want" ] && return 0
	ktap_print_msg "$what: $got, expected $want"
	return 1
}

# expect_rc <want ok|EIO> <what> <command...>
expect_rc() {
	local want=$1 what=$2 got=ok
	shift 2
	"$@" 2>/dev/null || got=EIO
	[ "$got" = "$want" ] && return 0
	ktap_print_msg "$what: $got, expected $want"
	return 1
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
events() { dmsetup info -c --noheadings -o events "$NAME"; }

# ------------------------------------------------------------ the data

# ORIG: the origin's content; N1: set-up writes; N2: writes under faults.
# BASE: what the device holds after a pass's set-up; NEW: BASE with every
# write of the cells applied.
FAULT_IDX=([0]=OR [1]=OW [2]=CR [3]=CW [4]=MW)
cbase() { echo $((512 + 64 * $1)); } # first block of cell <f>
make_data() {
	local f c
	head -c $((NB * BS)) /dev/urandom >"$tmp/ORIG"
	head -c $((NB * BS)) /dev/urandom >"$tmp/N1"
	head -c $((NB * BS)) /dev/urandom >"$tmp/N2"
	cp "$tmp/ORIG" "$tmp/BASE"
	put "$tmp/BASE" "$tmp/N1" 0 256
	for f in 0 1 2 3 4; do
		put "$tmp/BASE" "$tmp/N1" "$(cbase $f)" 16
	done
	cp "$tmp/BASE" "$tmp/NEW"
	for f in 1 3 4; do
		c=$(cbase $f)
		put "$tmp/NEW" "$tmp/N2" $((c + 16)) 3
		put "$tmp/NEW" "$tmp/N2" $((c + 32)) 3
	done
	put "$tmp/NEW" "$tmp/N2" "$(cbase 4)" 16
}
# put <file> <data file> <first> <count>: blocks from the same offset
put() {
	"${DD[@]}" if="$2" of="$1" bs=$BS skip="$3" seek="$3" count="$4" conv=notrunc status=none
}

# ----------------------------------------------------------- the passes

NEXT_CB=416 # first cblock a pass's set-up leaves unallocated
CELL_PASS=0
CELL_FAIL=0
CELL_FAILED=()

LOAD_PID=
start_load() {
	fio --name=load --filename="$DEV" --rw=randrw --bs=4k --offset=0 --size=1M \
		--ioengine=psync --direct=1 --rate_iops="$LOAD_IOPS" --time_based --runtime=900 \
		--continue_on_error=all --output=/dev/null >/dev/null 2>&1 &
	LOAD_PID=$!
	cleanup_push "kill $LOAD_PID"
}
stop_load() {
	[ -n "$LOAD_PID" ] || return 0
	kill -TERM "$LOAD_PID" 2>/dev/null || true
	wait "$LOAD_PID" 2>/dev/null || true
	cleanup_pop
	LOAD_PID=
}

# pass_setup <wt|wb|pt>: blank cache; L, each cell's A written (fsynced),
# each cell's A2 read; the mode applied
pass_setup() {
	local m=$1 mode=writethrough f c
	wipe_dev "$RAMC" 1
	[ "$m" = wb ] && mode=writeback
	PASS_OPTS=(mode "$mode" sequential_cutoff 0 "${HOLD[@]}" writeback_retries 2)
	vmc_create "${PASS_OPTS[@]}" || return 1
	wr 0 256 "$tmp/N1" || return 1
	for f in 0 1 2 3; do
		wr "$(cbase $f)" 16 "$tmp/N1" || return 1
	done
	wr "$(cbase 4)" 16 "$tmp/N1" fsync || return 1
	if [ -z "${DS:-}" ]; then
		DS=$(od -An -t u8 -j 96 -N 8 "$CDEV")
		DS=${DS// /}
		ktap_print_msg "data_start $DS"
	fi
	for f in 0 1 2 3 4; do
		rd $(($(cbase $f) + 16)) 16 || return 1
	done
	wait_for 20 promoted 80 || { ktap_print_msg "A2 not promoted"; return 1; }
	nap 0.3
	[ "$m" = pt ] && { tun mode passthrough || return 1; }
	cp "$tmp/BASE" "$tmp/CUR"
	return 0
}

# inject <fault> <first block of the cell>
inject() {
	local c=$2 i=$(((($2 - 512) / 64) * 16))
	case $1 in
	OR) origin_fault "$(obs error "$c" 48)" ;;
	OW) origin_fault "$(obs ewrite "$c" 48)" ;;
	CR) cache_fault "$(cbs error $((256 + i)) 16)" "$(cbs error $((336 + i)) 16)" ;;
	CW) cache_fault "$(cbs error $((336 + i)) 16)" \
		"error:$((DS + NEXT_CB * 8)):$((CSZ - DS - NEXT_CB * 8))" ;;
	MW) cache_fault "error:0:$DS" ;;
	esac
}
heal_of() {
	case $1 in
	OR | OW) origin_heal ;;
	*) cache_heal ;;
	esac
}

# cell_actions <fault> <mode> <first block>: the operations under the
# fault and their expected outcome (the table at the top); sets WRITES to
# the outcome of the cell's writes (ok, EIO, or - for none)
cell_actions() {
	local f=$1 m=$2 c=$3 rc=0 e
	WRITES=-
	case $f in
	OR)
		e=ok
		[ "$m" = pt ] && e=EIO
		check_read "$e" "read A" "$c" 16 "$tmp/BASE" || rc=1
		check_read "$e" "read A2" $((c + 16)) 16 "$tmp/BASE" || rc=1
		check_read EIO "read B" $((c + 32)) 16 || rc=1
		;;
	OW)
		e=EIO
		[ "$m" = wb ] && e=ok
		check_write "$e" "write A2'" $((c + 16)) 3 "$tmp/N2" || rc=1
		check_write "$e" "write B'" $((c + 32)) 3 "$tmp/N2" || rc=1
		WRITES=$e
		check_read ok "read A" "$c" 16 "$tmp/BASE" || rc=1
		;;
	CR)
		e=ok
		[ "$m" = wb ] && e=EIO
		check_read "$e" "read A" "$c" 3 "$tmp/BASE" || rc=1
		check_read ok "read B" $((c + 32)) 3 "$tmp/BASE" || rc=1
		check_read ok "read A2" $((c + 16)) 3 "$tmp/BASE" || rc=1
		;;
	CW)
		e=ok
		[ "$m" = wb ] && e=EIO
		check_write "$e" "write A2'" $((c + 16)) 3 "$tmp/N2" || rc=1
		check_write "$e" "write B'" $((c + 32)) 3 "$tmp/N2" || rc=1
		WRITES=$e
		# (A2 and B are read back after the heal: reads of the failing
		# cblocks would add cache errors and degrade the cache)
		check_read ok "read A" "$c" 16 "$tmp/BASE" || rc=1
		;;
	MW)
		expect_rc EIO "commit message" msg commit || rc=1
		want metadata fail || rc=1
		check_write ok "write A' ($([ "$m" = wb ] && echo dirty || echo clean) blocks)" "$c" 16 "$tmp/N2" || rc=1
		check_write ok "write A2' (clean cached blocks)" $((c + 16)) 3 "$tmp/N2" || rc=1
		check_write ok "write B' (not cached)" $((c + 32)) 3 "$tmp/N2" || rc=1
		WRITES=ok
		expect_rc EIO "fsync" dev_fsync || rc=1
		check_read ok "read A', A2', B'" "$c" 48 "$tmp/NEW" || rc=1
		;;
	esac
	return "$rc"
}

# cell_readback <first block>: healed; the cell's 48 blocks read back
# (a failed write: per block the old or the new data); recorded in CUR
cell_readback() {
	local c=$1 bad
	rd "$c" 48 || { ktap_print_msg "read back after the heal failed"; return 1; }
	if ! same "$tmp/r" "$c" 48 "$tmp/NEW"; then
		if [ "$WRITES" = EIO ]; then
			bad=$(badblocks "$tmp/r" "$c" 48 "$tmp/NEW" "$tmp/BASE")
		else
			bad=$(badblocks "$tmp/r" "$c" 48 "$tmp/NEW")
		fi
		if [ -n "$bad" ]; then
			ktap_print_msg "after the heal, blocks ( $bad) hold wrong data (writes: $WRITES)"
			return 1
		fi
	fi
	"${DD[@]}" if="$tmp/r" of="$tmp/CUR" bs=$BS seek="$c" conv=notrunc status=none
}

# cell <fault> <mode>
cell() {
	local f=$1 m=$2 rc=0 c=0 i t0 t1 t2
	for i in 0 1 2 3 4; do
		if [ "${FAULT_IDX[$i]}" = "$f" ]; then c=$(cbase "$i"); fi
	done
	t0=$(now_ms)
	# a read hit on a healthy block (L) first: the run of cache errors
	# starts at 0 (the blocks a cell's errors hit may be dropped, so its
	# read-back may be all misses, which do not end a run)
	rd 255 1 || { ktap_print_msg "read of block 255 failed"; rc=1; }
	inject "$f" "$c" || { ktap_print_msg "cannot inject $f"; return 1; }
	t1=$(now_ms)
	cell_actions "$f" "$m" "$c" || rc=1
	# fewer than 8 cache errors in a row: the cell did not degrade the cache
	want degraded 0 || rc=1
	t2=$(now_ms)
	heal_of "$f" || { ktap_print_msg "cannot heal"; return 1; }
	cell_readback "$c" || rc=1
	ktap_print_msg "$f $m: inject $((t1 - t0)) ms, actions $((t2 - t1)) ms, heal+check $(($(now_ms) - t2)) ms"
	[ "$rc" -eq 0 ] || log_status
	return "$rc"
}

# pass_end <first block compared with CUR>: drained, device = origin =
# the cells' read-backs, data_loss=0, vmcachectl check
pass_end() {
	local first=$1 rc=0
	msg flush || rc=1
	wait_for 60 is_clean || { ktap_print_msg "not drained 60 s after the flush"; rc=1; }
	want data_loss 0 || rc=1
	[ "$rc" -eq 0 ] || log_status
	rd 0 832 || { ktap_print_msg "read of the device failed"; rc=1; }
	mv "$tmp/r" "$tmp/dev"
	rd 0 832 "$ODEV" || { ktap_print_msg "read of the origin failed"; rc=1; }
	if ! "${CMP[@]}" -s "$tmp/dev" "$tmp/r"; then
		ktap_print_msg "device and origin differ in blocks ( $(badblocks "$tmp/dev" 0 832 "$tmp/r"))"
		rc=1
	fi
	if ! same "$tmp/dev" "$first" $((832 - first)) "$tmp/CUR" "$first"; then
		ktap_print_msg "device differs from the cells' read-backs in blocks ( $("${CMP[@]}" -l "$tmp/dev" "$tmp/CUR" | awk '{ b = int(($1 - 1) / 4096); if (b >= '"$first"' && !(b in s)) { s[b] = 1; printf "%d ", b } }'))"
		rc=1
	fi
	vmc_remove || rc=1
	check_cache_dev || rc=1
	return "$rc"
}

# pass_reload: loaded again (metadata=fail since MW: the disk holds the
# commit before it), the cache returns the same data as before the removal
pass_reload() {
	local rc=0
	[ -s "$tmp/dev" ] || return 1
	if vmc_create "${PASS_OPTS[@]}" must_exist 1; then
		rd 0 832 || { ktap_print_msg "read after the reload failed"; rc=1; }
		if ! "${CMP[@]}" -s "$tmp/dev" "$tmp/r"; then
			ktap_print_msg "after remove and reload, blocks ( $(badblocks "$tmp/r" 0 832 "$tmp/dev")) differ from what the device returned before"
			ktap_print_msg "of these, holding neither that nor the set-up data (BASE; else: a stale cached copy): ( $(badblocks "$tmp/r" 0 832 "$tmp/dev" "$tmp/BASE"))"
			rc=1
		fi
		vmc_remove || rc=1
	else
		ktap_print_msg "reload with must_exist 1 refused"
		rc=1
	fi
	return "$rc"
}

# run_pass <mode> <rest|load>
run_pass() {
	local m=$1 l=$2 f t0 first=0
	t0=$(now_ms)
	if ! pass_setup "$m"; then
		ktap_test_fail "$m $l: set-up"
		dm_exists "$NAME" && vmc_remove
		for f in "${FAULTS[@]}"; do
			ktap_test_skip "matrix $f $m $l" "set-up failed"
		done
		return
	fi
	if [ "$l" = load ]; then
		start_load
		first=512
	fi
	ktap_test_pass "$m $l: set-up ($(($(now_ms) - t0)) ms)"
	if [ "$CHECKED_ORDER" = 0 ]; then
		run_timed "a fresh cache allocates cblocks in first-touch order (the cblocks the faults cover)" cblock_order
		CHECKED_ORDER=1
	fi
	for f in "${FAULTS[@]}"; do
		t0=$(now_ms)
		if cell "$f" "$m"; then
			CELL_PASS=$((CELL_PASS + 1))
			ktap_test_pass "matrix $f $m $l ($(($(now_ms) - t0)) ms)"
		else
			CELL_FAIL=$((CELL_FAIL + 1))
			CELL_FAILED+=("$f/$m/$l")
			ktap_test_fail "matrix $f $m $l ($(($(now_ms) - t0)) ms)"
		fi
	done
	stop_load
	rm -f "$tmp/dev"
	run_timed "$m $l: drained, device = origin = read-backs, data_loss=0, vmcachectl check" pass_end "$first"
	if dm_exists "$NAME"; then vmc_remove || true; fi
	run_timed "$m $l: loaded again (must_exist 1), it returns the same data" pass_reload
	dm_exists "$NAME" && vmc_remove
	origin_heal && cache_heal || true
}

# -------------- 2. cache read error while writeback copies merged blocks

# blocks 256..303 (cblocks 0..47) dirty with N2; cblock 20 (block 276)
# unreadable; block 296 rewritten with N1 during the copy
wb_read_error() {
	local rc=0 v
	cp "$tmp/N2" "$tmp/E"
	put "$tmp/E" "$tmp/ORIG" 276 1
	put "$tmp/E" "$tmp/N1" 296 1
	wipe_dev "$RAMC" 1
	vmc_create mode writeback sequential_cutoff 0 "${HOLD[@]}" || return 1
	wr 256 48 "$tmp/N2" fsync || return 1
	rd $((DS / 8)) 48 "$RAMC" && same "$tmp/r" 256 48 "$tmp/N2" ||
		{ ktap_print_msg "cblocks 0..47 do not hold blocks 256..303"; return 1; }
	cache_fault "$(cbs error 20 1)" || return 1
	origin_fault "$(obs delay 0 $((OSZ / 8)))" || return 1
	dmesg_mark
	tun writeback_low 0 && tun writeback_high 0 || return 1
	wait_for 10 wb_inflight || { ktap_print_msg "writeback did not start"; rc=1; }
	expect_rc ok "rewrite of block 296 during the copy" wr 296 1 "$tmp/N1" || rc=1
	stv v writeback_inflight
	[ "$v" -gt 0 ] || { ktap_print_msg "no copy in flight after the rewrite: inconclusive"; rc=1; }
	wait_for 30 wb_idle || ktap_print_msg "copy still in flight after 30 s"
	tun writeback_high 100 && tun writeback_low 100 || rc=1
	origin_heal && cache_heal || rc=1
	nap 0.5
	log_status
	want data_loss 1 || rc=1
	v=$(grep -o 'cannot read dirty origin block [0-9]*' <<<"$(dmesg_since_mark)" | awk '{ printf "%s ", $NF }') || true
	[ "$v" = "276 " ] || { ktap_print_msg "data loss logged for origin blocks ( $v), expected ( 276 )"; rc=1; }
	check_read ok "device blocks 256..303 (276: the origin's older data, 296: the rewrite)" 256 48 "$tmp/E" || rc=1
	return "$rc"
}
wb_read_error_drain() {
	local rc=0
	dm_exists "$NAME" || return 1
	msg flush || rc=1
	wait_for 60 is_clean || { ktap_print_msg "not drained"; log_status; rc=1; }
	check_read ok "origin blocks 256..303" 256 48 "$tmp/E" "$ODEV" || rc=1
	vmc_remove || rc=1
	check_cache_dev || rc=1
	return "$rc"
}

# ------------------------------------------------------------ 3. degrade

degrade_setup() {
	wipe_dev "$RAMC" 1
	vmc_create mode writeback sequential_cutoff 0 "${HOLD[@]}" || return 1
	wr 0 16 "$tmp/N2" fsync || return 1
	rd 320 16 || return 1
	wait_for 10 promoted 16 || return 1
	nap 0.3
	EV0=$(events)
	stv CE0 cache_errors
	cache_fault "$(cbs error 16 16)" || return 1
	check_read ok "read A2 (clean, cache failing)" 320 16 "$tmp/ORIG"
}
degraded_state() {
	local ce ev
	stv ce cache_errors
	ev=$(events)
	ktap_print_msg "cache_errors +$((ce - CE0)), events $EV0 -> $ev"
	want degraded 1 && [ $((ce - CE0)) -ge 8 ] && [ "$ev" -gt "$EV0" ]
}
around_cache() {
	local used ce rc=0
	stv used blocks_used
	stv ce cache_errors
	check_write ok "write B (336..351) while degraded" 336 16 "$tmp/N2" || rc=1
	expect_rc ok "fsync" dev_fsync || rc=1
	want blocks_used "$used" || rc=1
	want cache_errors "$ce" || rc=1
	check_read ok "origin B" 336 16 "$tmp/N2" "$ODEV" || rc=1
	check_read ok "A (dirty)" 0 16 "$tmp/N2" || rc=1
	if check_read ok "A2, B" 320 32; then
		same "$tmp/r" 320 16 "$tmp/ORIG" || { ktap_print_msg "A2: wrong data"; rc=1; }
		same "$tmp/r" 336 16 "$tmp/N2" 16 || { ktap_print_msg "B: wrong data"; rc=1; }
	else
		rc=1
	fi
	return "$rc"
}
degraded_drain() {
	local rc=0
	if ! wait_for 30 no_dirty; then
		ktap_print_msg "dirty data not drained 30 s after degrading (no flush message)"
		log_status
		rc=1
	fi
	check_read ok "origin A" 0 16 "$tmp/N2" "$ODEV" || rc=1
	cache_heal || rc=1
	vmc_remove || rc=1
	check_cache_dev || rc=1
	return "$rc"
}

# ------------- 4. origin write errors while leaving writeback (wt and pt)

leave_wb_errors() { # <mode> <data file>
	local rc=0
	LWB_DATA=$2
	wipe_dev "$RAMC" 1
	vmc_create mode writeback sequential_cutoff 0 "${HOLD[@]}" writeback_retries 2 || return 1
	wr 0 16 "$LWB_DATA" fsync || return 1
	origin_fault "$(obs ewrite 0 $((OSZ / 8)))" || return 1
	msg mode "$1" || return 1
	wait_for 30 wb_degraded || { ktap_print_msg "not degraded 30 s after the switch"; rc=1; }
	want blocks_dirty 16 || rc=1
	want data_loss 0 || rc=1
	want flush active || rc=1
	check_read ok "A read back through the cache" 0 16 "$LWB_DATA" || rc=1
	[ "$rc" -eq 0 ] || log_status
	return "$rc"
}
leave_wb_heal() {
	local rc=0
	dm_exists "$NAME" || return 1
	origin_heal || rc=1
	wait_for 60 is_clean || { ktap_print_msg "not drained 60 s after the heal"; rc=1; }
	want degraded 0 || rc=1
	want data_loss 0 || rc=1
	[ "$rc" -eq 0 ] || log_status
	check_read ok "origin A" 0 16 "$LWB_DATA" "$ODEV" || rc=1
	vmc_remove || rc=1
	check_cache_dev || rc=1
	return "$rc"
}

# ---------------------------------------------------------------- main

T_START=$(now_ms)
DMESG_START="vmcache_faults-start-$$-$RANDOM"
echo "$DMESG_START" >/dev/kmsg

IFS=, read -r -a FAULTS <<<"${VMCACHE_FAULTS_CELLS:-OR,OW,CR,CW,MW}"
for f in "${FAULTS[@]}"; do
	case $f in
	OR | OW | CR | CW | MW) ;;
	*) ktap_exit_fail_msg "VMCACHE_FAULTS_CELLS: unknown fault $f" ;;
	esac
done
case ${VMCACHE_FAULTS_LOAD:-wb} in
none) LOADED=() ;;
all) LOADED=(wt wb pt) ;;
*) LOADED=(wb) ;;
esac
EXTRA=${VMCACHE_FAULTS_EXTRA:-1}
[ "$EXTRA" = 2 ] && PLAN_LWB=4 || PLAN_LWB=2
[ "$EXTRA" = 0 ] || EXTRA=1
PASSES=()
for m in wt wb pt; do PASSES+=("$m:rest"); done
for m in "${LOADED[@]}"; do PASSES+=("$m:load"); done
PLAN=$((${#PASSES[@]} * (${#FAULTS[@]} + 3) + 1 + 1))
[ "$EXTRA" = 1 ] && PLAN=$((PLAN + 2 + 4 + PLAN_LWB))
ktap_print_header
ktap_set_plan "$PLAN"

# brd devices all have the same size: cache and origin are 64 MiB each
setup_brd 2 64 || ktap_skip_all "cannot set up brd"
CSZ=$(dev_sectors "$RAMC")
OSZ=$(dev_sectors "$RAMO")
setup_linear vmcf_c "$RAMC" || ktap_skip_all "cannot set up dm-linear"
setup_linear vmcf_o "$RAMO" || ktap_skip_all "cannot set up dm-linear"
# if the test dies with a fault in place, heal before the removals
cleanup_push "dmsetup load vmcf_o --table '0 $OSZ linear $RAMO 0'; dmsetup resume vmcf_o; dmsetup load vmcf_c --table '0 $CSZ linear $RAMC 0'; dmsetup resume vmcf_c"
make_data
"${DD[@]}" if="$tmp/ORIG" of="$ODEV" bs=1M oflag=direct status=none

# (data_start: read from the superblock by the first pass)
DS=
ktap_print_msg "cache $((CSZ / 2048)) MiB, origin $((OSZ / 2048)) MiB; set-up $(($(now_ms) - T_START)) ms"

# the cblock layout the cache faults rely on (a fresh cache allocates in
# first-touch order), checked on the first pass's set-up: A of cell 0 in
# cblocks 256..271, A2 of cell 4 in 400..415
cblock_order() {
	local rc=0
	rd $((DS / 8 + 256)) 160 "$RAMC" || return 1
	same "$tmp/r" 512 16 "$tmp/BASE" 0 || { ktap_print_msg "cblocks 256..271 are not A of cell 0"; rc=1; }
	same "$tmp/r" $((768 + 16)) 16 "$tmp/BASE" 144 || { ktap_print_msg "cblocks 400..415 are not A2 of cell 4"; rc=1; }
	return "$rc"
}
CHECKED_ORDER=0

for p in "${PASSES[@]}"; do
	run_pass "${p%:*}" "${p#*:}"
done
ktap_print_msg "fault matrix: $CELL_PASS of $((CELL_PASS + CELL_FAIL)) cells passed${CELL_FAILED[*]:+; failed: ${CELL_FAILED[*]}}"

if [ "$EXTRA" = 1 ]; then
	run_timed "writeback cache read error in a merged copy: data_loss=1, block 276 serves the origin's data, the block rewritten during the copy keeps its rewrite" wb_read_error
	run_timed "writeback cache read error in a merged copy: after heal and drain the origin holds every other block exactly" wb_read_error_drain
	dm_exists "$NAME" && vmc_remove
	origin_heal && cache_heal || true

	run_timed "degrade: read hits on failing clean cache blocks return the origin's data" degrade_setup
	run_timed "degrade: >= 8 cache errors in a row: degraded=1 and a dm event" degraded_state
	run_timed "degrade: new writes go around the cache, reads stay correct" around_cache
	run_timed "degrade: dirty data keeps draining to the origin (no flush message)" degraded_drain
	dm_exists "$NAME" && vmc_remove
	cache_heal || true

	# (the origin's blocks 0..15 hold N2 after case 3, so N1 differs;
	# "mode passthrough" takes the same path: VMCACHE_FAULTS_EXTRA=2)
	LWB=(writethrough:N1)
	[ "${VMCACHE_FAULTS_EXTRA:-1}" = 2 ] && LWB+=(passthrough:N2)
	for m in "${LWB[@]}"; do
		run_timed "origin write errors on leaving writeback (mode ${m%:*}): dirty kept, retried, degraded=1, data readable" leave_wb_errors "${m%:*}" "$tmp/${m#*:}"
		run_timed "origin write errors on leaving writeback (mode ${m%:*}): healed: drained, degraded=0, origin byte-exact" leave_wb_heal
		dm_exists "$NAME" && vmc_remove
		origin_heal || true
	done
fi

DMESG_MARK=$DMESG_START
ktap_test_result "kernel log clean for the whole test" check_dmesg_clean
ktap_print_msg "fault matrix: $CELL_PASS of $((CELL_PASS + CELL_FAIL)) cells passed${CELL_FAILED[*]:+; failed: ${CELL_FAILED[*]}}; total $(($(now_ms) - T_START)) ms"
ktap_finished "$PLAN"
