#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Polled I/O through a vmcache device [issue 9, item 12]: io_uring IOPOLL
# (fio --ioengine=io_uring --hipri=1) sends REQ_POLLED bios, and such a bio
# completes only when someone polls its queue.  dm polls the bios it maps
# (its own clones, remapped by the target), nothing else.  A bio the target
# makes itself (the cache copy of a writethrough write, a fill, a writeback
# copy) or holds and sends later (a write waiting for a metadata commit)
# must not go out REQ_POLLED: on a poll queue nobody polls it and it hangs
# until the device's request timeout fails it.
#
# Devices: null_blk "vmpoll_c" (cache, 16 MiB) and "vmpoll_o" (origin,
# 16 MiB), memory backed, each with a poll queue (poll_queues=1) and a
# volatile write cache (cache_size, so that FUA reaches the target) twice
# the device's size: a full null_blk cache makes room in
# null_make_cache_space(), which spins (lock dropped and retaken, no
# resched) while another writer holds the page it needs; a bound kworker
# spinning there on the CPU where that writer waits was a soft lockup in
# case 8 on 6.12 (seen in 4 of 12 runs once writeback and metadata writes
# stopped being throttled by blk-wbt; a cache that never fills never goes
# there),
# request timeout 10 s: a bio stranded on a poll queue fails after 10 s with
# "null_blk: rq ... timed out" in the kernel log, which every case checks
# for, with cache_errors=0 and degraded=0.  vmcache "vmpoll" over both:
# 32 KiB blocks (8 sub-blocks of 4 KiB), promote_after 1, no sequential
# cutoff, writeback held off (only flush writes back).
#
# Origin regions (fio verify=crc32c data, so that every later read can be
# checked byte for byte; each fio run bounded by FIO_LIMIT seconds):
#   R0  0-1 MiB   [1] 32 KiB writes, new blocks   [2] 4 KiB writes over them
#   R1  1-3 MiB   [3] 128 KiB writes (dm splits them per block), new blocks
#   R2  3-4 MiB   origin data (32 KiB), [4] read misses fill, read hits;
#                 [5] writeback 4 KiB writes over the clean copies
#   R3  4-5 MiB   origin data (4 KiB), [4] sub-block fills;
#                 [7] passthrough 4 KiB writes drop the clean copies
#   R4  5-6 MiB   [6] writeback FUA writes, new blocks
#   rest          random origin data, never written
# [8] drains, drops every clean block and checks the whole device.
#
# Where a polled bio also carries REQ_NOWAIT (Debian's 6.1: block/fops.c
# sets both for every io_uring IOPOLL bio; 6.12 does not), dm refuses it
# with EOPNOTSUPP for a target without DM_TARGET_NOWAIT, such as vmcache:
# no polled bio can reach the target, and the whole test is skipped
# (probed: dm-linear first, then the vmcache device; not assumed).
#
# On the module before the fix (0f1fbe9, built for the 6.12 guest) cases
# [1], [2], [3] and [6] fail: the cache copies of writethrough and FUA
# writes inherit REQ_POLLED and time out on the cache's poll queue (8 of
# them degrade the cache), and [9] finds the timeouts.  [4], [5] and [7]
# pass there too: fills were never REQ_POLLED, and a held bio is dm's own
# clone, which dm polls once it is sent.
. "$(dirname "$0")/lib.sh"

require_vmcache
require_cmd fio dd cmp timeout
require_module null_blk

NAME=vmpoll
DEV=/dev/mapper/$NAME
CN=vmpoll_c
ON=vmpoll_o
CDEV=/dev/$CN
ODEV=/dev/$ON
MIB=16
FIO_LIMIT=${VMCACHE_POLL_FIO_LIMIT:-120}
TMP=$(mktemp -d)
cleanup_push "rm -rf $TMP"
OPTS="block_size 32768 mode writethrough promote_after 1 sequential_cutoff 0 writeback_low 100 writeback_high 100 max_dirty_age 0"

# ------------------------------------------------------------- devices

# null_blk with poll queues: the module parameter is the upper bound of
# the per-device poll_queues attribute (1 by default on 6.1 and 6.12)
if ! module_loaded null_blk ||
	[ "$(cat /sys/module/null_blk/parameters/poll_queues 2>/dev/null)" = 0 ]; then
	rmmod null_blk 2>/dev/null
	modprobe null_blk nr_devices=0 poll_queues=1 ||
		ktap_skip_all "null_blk does not load with poll_queues=1"
fi
[ -e /sys/kernel/config/nullb/features ] &&
	! grep -qw poll_queues /sys/kernel/config/nullb/features &&
	ktap_skip_all "null_blk has no poll_queues attribute"
for n in "$CN" "$ON"; do
	setup_null_blk "$n" "$MIB" poll_queues=1 cache_size=$((2 * MIB)) >/dev/null ||
		ktap_skip_all "null_blk $n with poll_queues=1 cache_size=$((2 * MIB)) could not be set up"
	[ "$(cat "/sys/block/$n/queue/io_poll")" = 1 ] ||
		ktap_skip_all "null_blk $n has no poll queue (io_poll=0)"
	echo 10000 >"/sys/block/$n/queue/io_timeout"
done
SECTORS=$(dev_sectors "$ODEV")

# pfio <device> <job name> <fio options...>: a polled fio run (io_uring
# IOPOLL, O_DIRECT, 8 in flight), crc32c verify data, bounded in time
pfio() {
	local dev=$1 name=$2 out rc=0 t0
	shift 2
	t0=$(now_ms)
	out=$(timeout -k 10 "$FIO_LIMIT" fio --name="$name" --filename="$dev" \
		--ioengine=io_uring --hipri=1 --direct=1 --iodepth=8 \
		--verify=crc32c --verify_fatal=1 "$@" 2>&1) || rc=$?
	FIO_OUT=$out
	[ "$rc" -eq 124 ] && ktap_print_msg "fio $name: still running after ${FIO_LIMIT} s, killed"
	if [ "$rc" -ne 0 ] || grep -qE 'err= *[1-9]|io_u error|verify: ' <<<"$out"; then
		ktap_print_msg "fio $name $*: exit $rc after $(($(now_ms) - t0)) ms"
		ktap_print_msg "$(grep -E 'err|error|verify|bad|issued' <<<"$out" | head -n 12)"
		return 1
	fi
}

# the jobs: the same options write and, with --verify_only=1, read back
J_WT_NEW=(--offset=0 --size=1M --bs=32k --rw=randwrite)
J_WT_SUB=(--offset=0 --size=1M --bs=4k --rw=randwrite)
J_WT_MULTI=(--offset=1M --size=2M --bs=128k --rw=randwrite)
J_ORIG_R2=(--offset=3M --size=1M --bs=32k --rw=write)
J_ORIG_R3=(--offset=4M --size=1M --bs=4k --rw=write)
J_WB_HELD=(--offset=3M --size=1M --bs=4k --rw=randwrite)
J_WB_FUA=(--offset=5M --size=1M --bs=32k --rw=randwrite --sync=1)
J_PT_DROP=(--offset=4M --size=1M --bs=4k --rw=randwrite)

# origin content: random, then fio data in R2 and R3
dd if=/dev/urandom of="$ODEV" bs=1M count="$MIB" oflag=direct status=none ||
	ktap_exit_fail_msg "origin fill"
pfio "$ODEV" orig_r2 "${J_ORIG_R2[@]}" --do_verify=0 &&
	pfio "$ODEV" orig_r3 "${J_ORIG_R3[@]}" --do_verify=0 ||
	ktap_skip_all "io_uring IOPOLL does not work on a null_blk poll queue here"
dd if="$ODEV" of="$TMP/orig" bs=1M iflag=direct status=none ||
	ktap_exit_fail_msg "origin read"

# io_poll of a device node
io_poll() { cat "$(sysfs_block "$1")/queue/io_poll"; }

# Can a polled bio reach a dm target here?  dm-linear (DM_TARGET_NOWAIT)
# first, then vmcache.
dm_create vmpoll_lin "0 $SECTORS linear $ODEV 0" || ktap_exit_fail_msg "linear"
[ "$(io_poll /dev/mapper/vmpoll_lin)" = 1 ] ||
	ktap_skip_all "dm-linear over a poll-capable null_blk has io_poll=0"
pfio /dev/mapper/vmpoll_lin orig_r2 "${J_ORIG_R2[@]}" --verify_only=1 ||
	ktap_skip_all "io_uring IOPOLL through dm-linear fails here"
dm_remove vmpoll_lin

wipe_dev "$CDEV" 2
dm_create "$NAME" "0 $SECTORS vmcache $CDEV $ODEV 14 $OPTS" ||
	ktap_exit_fail_msg "vmcache device"
[ "$(io_poll "$DEV")" = 1 ] ||
	ktap_skip_all "the vmcache device does not support polling (io_poll=0)"
# a polled 4 KiB read of the last MiB (a read miss: fills, changes no data)
if ! pfio "$DEV" probe --offset=15M --size=4k --bs=4k --rw=read --verify=0; then
	grep -q 'Operation not supported' <<<"$FIO_OUT" &&
		ktap_skip_all "io_uring IOPOLL on the vmcache device: EOPNOTSUPP (dm-linear: works); kernel $(uname -r) sends polled bios REQ_NOWAIT and dm refuses REQ_NOWAIT for a target without DM_TARGET_NOWAIT: no polled bio reaches vmcache here"
	ktap_skip_all "io_uring IOPOLL on the vmcache device fails"
fi

# ------------------------------------------------------------ checks

TMO_RE='null_blk: rq .* timed out|timeout error, dev vmpoll'

# timeouts: requests timed out so far (a stranded polled bio)
timeouts() {
	local n
	n=$(grep -cE "$TMO_RE" <<<"$(dmesg)") || true
	echo "${n:-0}"
}

# healthy <timeouts before>: no request timed out since, the cache never
# failed
healthy() {
	local t
	t=$(timeouts)
	if [ "$t" -ne "$1" ]; then
		ktap_print_msg "$((t - $1)) request(s) timed out (a polled bio nobody polls):"
		ktap_print_msg "$(grep -E "$TMO_RE" <<<"$(dmesg)" | tail -n 4)"
	fi
	expect cache_errors=0 degraded=0 metadata=ok && [ "$t" -eq "$1" ]
}

# ge <key> <before> <at least>: the counter grew by at least that much
ge() {
	local now
	now=$(st "$1")
	[ $((now - $2)) -ge "$3" ] && return 0
	ktap_print_msg "$1: +$((now - $2)), expected at least +$3"
	return 1
}

# A case starts on a healthy device: after a failed case (old module:
# degraded) the device is made again over a blank cache, writethrough.
fresh_if_broken() {
	healthy "$(timeouts)" >/dev/null 2>&1 && return 0
	ktap_print_msg "device unhealthy, made again: $(status_line)"
	msg mode writethrough >/dev/null 2>&1
	drain >/dev/null 2>&1
	dm_remove "$NAME" || return 1
	wipe_dev "$CDEV" 2
	dmsetup create "$NAME" --table "0 $SECTORS vmcache $CDEV $ODEV 14 $OPTS" &&
		wait_for_dev "$DEV"
}

# warm <offset MiB> <MiB> <bs>: cache a region with plain (unpolled) reads
warm() {
	local i
	for i in 1 2; do
		dd if="$DEV" of=/dev/null bs="$3" skip=$(($1 << 20)) count=$(($2 << 20)) \
			iflag=direct,skip_bytes,count_bytes status=none || return 1
		sleep 0.5
	done
}

# set_mode <mode>: switch online, then wait for any drain it started
set_mode() {
	msg mode "$1" || return 1
	[ "$1" = writeback ] || drain
}

ktap_print_header
ktap_set_plan 9
dmesg_mark
ktap_print_msg "kernel $(uname -r); polled I/O reaches the vmcache device (io_poll=1)"

# ---------------------------------------------------------------------
# [1] writethrough writes to new blocks: the origin gets dm's bio (polled
# by dm), the cache a copy made by the target (R_BOTH_WRITE)
t_wt_new() {
	local t m
	fresh_if_broken || return 1
	t=$(timeouts)
	m=$(st write_misses)
	pfio "$DEV" wt_new "${J_WT_NEW[@]}" --do_verify=0 || return 1
	ge write_misses "$m" 32 || return 1
	healthy "$t" || return 1
	pfio "$DEV" wt_new "${J_WT_NEW[@]}" --verify_only=1 && healthy "$t"
}
run_timed "writethrough: polled 32 KiB writes to new blocks complete, cache copies never stranded, verified" t_wt_new

# ---------------------------------------------------------------------
# [2] writethrough sub-block writes over cached clean blocks: both devices
# (the first waits for the FLUX commit: its cache copy goes out with it
# from the commit worker), or a drop when another write is in the block
# (held for the drop's commit)
t_wt_cached() {
	local t h c
	fresh_if_broken || return 1
	set_mode writethrough || return 1
	warm 0 1 32k || return 1
	t=$(timeouts)
	h=$(st write_hits)
	c=$(st commits)
	pfio "$DEV" wt_sub "${J_WT_SUB[@]}" --do_verify=0 || return 1
	ktap_print_msg "write_hits +$(($(st write_hits) - h)), commits +$(($(st commits) - c))"
	ge write_hits "$h" 1 && ge commits "$c" 1 || return 1
	healthy "$t" || return 1
	pfio "$DEV" wt_sub "${J_WT_SUB[@]}" --verify_only=1 && healthy "$t"
}
run_timed "writethrough: polled 4 KiB writes over cached blocks (FLUX wait, late cache copies, drops) complete, verified" t_wt_cached

# ---------------------------------------------------------------------
# [3] bios spanning blocks: dm splits them (dm_accept_partial_bio), each
# piece with a cache copy
t_wt_multi() {
	local t m
	fresh_if_broken || return 1
	t=$(timeouts)
	m=$(st write_misses)
	pfio "$DEV" wt_multi "${J_WT_MULTI[@]}" --do_verify=0 || return 1
	ge write_misses "$m" 64 && healthy "$t" || return 1
	pfio "$DEV" wt_multi "${J_WT_MULTI[@]}" --verify_only=1 && healthy "$t"
}
run_timed "writethrough: polled 128 KiB writes split per block complete, verified" t_wt_multi

# ---------------------------------------------------------------------
# [4] read misses fill (the fill is the target's own write), then hits
t_fill() {
	local t p r
	fresh_if_broken || return 1
	t=$(timeouts)
	p=$(st promotions)
	pfio "$DEV" orig_r2 "${J_ORIG_R2[@]}" --verify_only=1 &&
		pfio "$DEV" orig_r3 "${J_ORIG_R3[@]}" --verify_only=1 || return 1
	wait_promotions $((p + 32))
	ge promotions "$p" 33 || return 1
	r=$(st read_hits)
	pfio "$DEV" orig_r2 "${J_ORIG_R2[@]}" --verify_only=1 &&
		pfio "$DEV" orig_r3 "${J_ORIG_R3[@]}" --verify_only=1 || return 1
	ge read_hits "$r" 32 && healthy "$t"
}
run_timed "read misses: polled reads fill (32 KiB and sub-block), polled hits return the same data" t_fill

# ---------------------------------------------------------------------
# [5] writeback writes over clean copies wait for the commit that marks
# them dirty: held, then sent by the commit worker
t_wb_held() {
	local t h c
	fresh_if_broken || return 1
	warm 3 1 32k || return 1
	set_mode writeback || return 1
	t=$(timeouts)
	h=$(st write_hits)
	c=$(st commits)
	pfio "$DEV" wb_held "${J_WB_HELD[@]}" --do_verify=0 || return 1
	ktap_print_msg "write_hits +$(($(st write_hits) - h)), commits +$(($(st commits) - c)), blocks_dirty=$(st blocks_dirty)"
	ge write_hits "$h" 128 && ge commits "$c" 1 && ge blocks_dirty 0 1 ||
		return 1
	healthy "$t" || return 1
	pfio "$DEV" wb_held "${J_WB_HELD[@]}" --verify_only=1 && healthy "$t"
}
run_timed "writeback: polled writes over clean blocks, held for a commit, complete, verified" t_wb_held

# ---------------------------------------------------------------------
# [6] FUA writes in writeback go to both devices (cache copy by the target)
t_wb_fua() {
	local t m d
	fresh_if_broken || return 1
	if [ "$(cat "$(sysfs_block "$DEV")/queue/fua" 2>/dev/null)" != 1 ]; then
		ktap_print_msg "the vmcache device takes no FUA (queue/fua != 1)"
		return 1
	fi
	set_mode writeback || return 1
	t=$(timeouts)
	m=$(st write_misses)
	d=$(st blocks_dirty)
	pfio "$DEV" wb_fua "${J_WB_FUA[@]}" --do_verify=0 || return 1
	ge write_misses "$m" 32 || return 1
	# written through: nothing new is dirty
	[ "$(st blocks_dirty)" -le "$d" ] || {
		ktap_print_msg "blocks_dirty $d -> $(st blocks_dirty): the FUA writes were not written through"
		return 1
	}
	healthy "$t" || return 1
	pfio "$DEV" wb_fua "${J_WB_FUA[@]}" --verify_only=1 && healthy "$t"
}
run_timed "writeback: polled FUA writes to new blocks (both devices) complete, verified" t_wb_fua

# ---------------------------------------------------------------------
# [7] passthrough writes over clean copies drop them and wait for the
# drop's commit before going to the origin: held
t_pt_drop() {
	local t u c
	fresh_if_broken || return 1
	set_mode writethrough || return 1
	warm 4 1 4k || return 1
	set_mode passthrough || return 1
	t=$(timeouts)
	u=$(st blocks_used)
	c=$(st commits)
	pfio "$DEV" pt_drop "${J_PT_DROP[@]}" --do_verify=0 || return 1
	ktap_print_msg "commits +$(($(st commits) - c)), blocks_used $u -> $(st blocks_used)"
	ge commits "$c" 1 || return 1
	[ "$(st blocks_used)" -lt "$u" ] || {
		ktap_print_msg "blocks_used $u -> $(st blocks_used): nothing dropped"
		return 1
	}
	healthy "$t" || return 1
	pfio "$DEV" pt_drop "${J_PT_DROP[@]}" --verify_only=1 && healthy "$t"
}
run_timed "passthrough: polled writes over clean blocks, held for the drop's commit, complete, verified" t_pt_drop

# ---------------------------------------------------------------------
# [8] the whole device, byte for byte: drained and after dropping every
# clean block it reads what it read before, the origin holds the same,
# every region fio wrote verifies (polled reads again), the rest is the
# origin's data from the start
t_whole() {
	local t
	t=$(timeouts)
	set_mode writethrough || return 1
	expect blocks_dirty=0 || return 1
	dd if="$DEV" of="$TMP/before" bs=1M iflag=direct status=none &&
		msg invalidate &&
		dd if="$DEV" of="$TMP/after" bs=1M iflag=direct status=none &&
		dd if="$ODEV" of="$TMP/origin" bs=1M iflag=direct status=none ||
		return 1
	compare_bytes "$TMP/before" "$TMP/after" &&
		compare_bytes "$TMP/after" "$TMP/origin" || return 1
	cmp -i $((6 << 20)) -n $(((MIB - 6) << 20)) "$TMP/after" "$TMP/orig" || {
		ktap_print_msg "6-${MIB} MiB, never written, differs from the origin's data"
		return 1
	}
	pfio "$DEV" wt_sub "${J_WT_SUB[@]}" --verify_only=1 &&
		pfio "$DEV" wt_multi "${J_WT_MULTI[@]}" --verify_only=1 &&
		pfio "$DEV" wb_held "${J_WB_HELD[@]}" --verify_only=1 &&
		pfio "$DEV" pt_drop "${J_PT_DROP[@]}" --verify_only=1 &&
		pfio "$DEV" wb_fua "${J_WB_FUA[@]}" --verify_only=1 || return 1
	healthy "$t"
}
run_timed "drain, invalidate: the whole device = origin = what was written, byte for byte" t_whole

# ---------------------------------------------------------------------
t_log() {
	local bad
	ktap_print_msg "status: $(status_line)"
	bad=$(grep -E "$TMO_RE|vmcache.*(degraded|keeps failing)" <<<"$(dmesg_since_mark)") && {
		ktap_print_msg "kernel log:"
		ktap_print_msg "$(head -n 10 <<<"$bad")"
		return 1
	}
	check_dmesg_clean
}
run_timed "kernel log: no request timed out, no hung task, WARN or BUG" t_log

ktap_finished 9
