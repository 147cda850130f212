#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# dm-vmcache writeback engine (issue 5):
#  1. dirty data written with fio (crc32c verify) is written back by a
#     "flush" message: blocks_dirty reaches 0, the origin read directly
#     matches the device byte for byte and passes fio's verification;
#  2. writeback under a foreground fio load: it makes progress without a
#     pause, the dirty level stays bounded under a load the origin can
#     sustain, a flush issued under load completes; foreground IOPS with
#     writeback held off and with it running, and the flush time, are
#     printed as diagnostics (figures, not assertions: timings under
#     emulation are no pass criterion);
#  3. max_dirty_age alone (writeback_low 100) cleans aged data within the
#     age plus a margin;
#  3b. a hot set rewritten between the watermarks is not written back
#     while it is hot, and drains once the writes stop;
#  4. origin errors (origin swapped to the "error" target during
#     writeback): blocks stay dirty, writeback_errors and origin_errors
#     grow, degraded=1 after writeback_retries failed batches, the data
#     still reads back through the cache; once the origin is healed the
#     drain completes, degraded=0 and the origin is byte-exact.
#
# Devices: cache = brd (/dev/ram0, 64 MiB); origin = dm-linear "vmc_wbo"
# over a memory-backed null_blk with 100 us completions, so its table can
# be swapped to "error" and back while the cache is live.
set -euo pipefail
DIR=$(dirname "$0")
# shellcheck source=lib.sh
. "$DIR/lib.sh"

require_vmcache
require_cmd fio cmp dd date
require_module dm-delay null_blk brd

CACHE_MIB=64
ORIGIN_MIB=512
CACHE=/dev/ram0
ORIGIN=/dev/mapper/vmc_wbo
DEV=vmc_wb
# Time limits (seconds): generous, for TCG on a loaded 2-core host.
FLUSH_LIMIT=${VMCACHE_WB_FLUSH_LIMIT:-90}
LOAD_FLUSH_LIMIT=${VMCACHE_WB_LOAD_FLUSH_LIMIT:-45}
LOAD_SECS=${VMCACHE_WB_LOAD_SECS:-8}
AGE=3
AGE_MARGIN=20

# Hold everything dirty: no watermark and no age triggers writeback.
HOLD=(writeback_low 100 writeback_high 100 max_dirty_age 0)

tmp=$(mktemp -d)
cleanup_push "rm -rf $tmp"

# ------------------------------------------------------------ helpers

st() { status_value "$DEV" "$1"; }

now_ms() { date +%s%3N; }

# Milliseconds as seconds with one decimal.
secs() { printf '%d.%d' $(($1 / 1000)) $(($1 % 1000 / 100)); }

# wait_until <limit s> <command...>: poll every 0.2 s; the elapsed
# milliseconds in WAITED; fails when the limit passes.
WAITED=0
wait_until() {
	local limit=$1 start
	shift
	start=$(now_ms)
	while ! "$@"; do
		if [ $(($(now_ms) - start)) -gt $((limit * 1000)) ]; then
			WAITED=$(($(now_ms) - start))
			return 1
		fi
		sleep 0.2
	done
	WAITED=$(($(now_ms) - start))
}

is_clean() { [ "$(st blocks_dirty)" -eq 0 ] && [ "$(st flush)" = idle ]; }
no_dirty() { [ "$(st blocks_dirty)" -eq 0 ]; }
flush_idle() { [ "$(st flush)" = idle ]; }

log_status() { ktap_print_msg "status: $(dmsetup status "$DEV" | cut -d' ' -f4-)"; }

# create_cache <options...>: a fresh writeback cache on a zeroed cache
# device, removed at exit.  No sequential cutoff: the patterns written
# with dd (1 MiB requests) must all go through the cache.
create_cache() {
	local opts=(mode writeback sequential_cutoff 0 "$@")
	wipe_dev "$CACHE"
	dm_create "$DEV" "0 $OSZ vmcache $CACHE $ORIGIN ${#opts[@]} ${opts[*]}"
}

remove_cache() {
	dm_remove "$DEV" && cleanup_pop
}

msg() { dmsetup message "$DEV" 0 "$@"; }

# set_watermarks <low> <high>: in the order that keeps low <= high.
set_watermarks() {
	if [ "$1" -gt "$(st_table writeback_high)" ]; then
		msg set writeback_high "$2" && msg set writeback_low "$1"
	else
		msg set writeback_low "$1" && msg set writeback_high "$2"
	fi
}

# st_table <option>: its value in the table line
st_table() {
	local -a w
	local i
	read -r -a w <<<"$(dmsetup table "$DEV")"
	for ((i = 6; i < ${#w[@]}; i += 2)); do
		[ "${w[$i]}" = "$1" ] && { echo "${w[$((i + 1))]}"; return 0; }
	done
	return 1
}

# Read <MiB> at <MiB offset> with O_DIRECT.
read_direct() { # <dev> <offset MiB> <MiB> <out>
	dd if="$1" bs=1M skip="$2" count="$3" iflag=direct status=none of="$4"
}

# same_on_origin <offset MiB> <MiB>: the device and the origin hold the
# same bytes there.
same_on_origin() {
	read_direct "/dev/mapper/$DEV" "$1" "$2" "$tmp/dev.bin" &&
	read_direct "$ORIGIN" "$1" "$2" "$tmp/origin.bin" &&
	compare_bytes "$tmp/dev.bin" "$tmp/origin.bin"
}

# matches_file <dev> <offset MiB> <file>
matches_file() {
	local mib=$(($(stat -c %s "$3") >> 20))
	read_direct "$1" "$2" "$mib" "$tmp/back.bin" &&
	compare_bytes "$3" "$tmp/back.bin"
}

# fio job used for the verified write and for verifying on the origin:
# 4 KiB random writes over 16 MiB, every block once (random map), crc32c
# headers, fixed seed so that --verify_only replays the same offsets.
FIO_VERIFY=(--rw=randwrite --bs=4k --size=16M --offset=32M --ioengine=libaio
	--iodepth=8 --direct=1 --verify=crc32c --verify_fatal=1 --randseed=4242
	--output-format=terse)

# terse format: field 49 is the write IOPS
fio_write_iops() { awk -F';' '{ printf "%d\n", $49 }' "$1"; }

# foreground <seconds> <out> <MiB> [extra fio options]: 4 KiB random
# writes, QD 8, over <MiB> from 128 MiB on.
foreground() {
	local t=$1 out=$2 mib=$3
	shift 3
	fio --name=fg --filename="/dev/mapper/$DEV" --rw=randwrite --bs=4k \
		--offset=128M --size="${mib}M" --ioengine=libaio --iodepth=8 --direct=1 \
		--randrepeat=0 --norandommap --time_based --runtime="$t" \
		--output-format=terse --output="$out" "$@"
}

# sample_dirty <pid> <writeback_done at the start>: until <pid> exits,
# the largest blocks_dirty in DIRTY_MAX, a sample every 2 s in SAMPLES.
sample_dirty() {
	local pid=$1 done0=$2 d i=0
	DIRTY_MAX=0
	SAMPLES=()
	while kill -0 "$pid" 2>/dev/null; do
		d=$(st blocks_dirty)
		[ "$d" -gt "$DIRTY_MAX" ] && DIRTY_MAX=$d
		if [ $((i % 4)) -eq 0 ]; then
			SAMPLES+=("$((i / 2))s:dirty=$d,done=$(($(st writeback_done) - done0))")
		fi
		i=$((i + 1))
		sleep 0.5
	done
}

# ---------------------------------------------------------------- main

DMESG_START="vmcache_writeback-start-$$-$RANDOM"
echo "$DMESG_START" >/dev/kmsg

setup_brd 1 "$CACHE_MIB" ||
	ktap_skip_all "cannot set up brd"
setup_null_blk vmc_wbnull "$ORIGIN_MIB" irqmode=2 completion_nsec=100000 ||
	ktap_skip_all "cannot set up null_blk"
setup_linear vmc_wbo /dev/vmc_wbnull || ktap_skip_all "cannot set up dm-linear"
OSZ=$(dev_sectors "$ORIGIN")
LINEAR_TABLE="0 $OSZ linear /dev/vmc_wbnull 0"

PLAN=24
ktap_print_header
ktap_set_plan "$PLAN"

# ------------------------------- 1. flush writes back fio-verified data

flush_case() {
	local dirty before done0
	dirty=$(st blocks_dirty)
	done0=$(st writeback_done)
	msg flush || return 1
	ktap_print_msg "flush with $dirty dirty blocks: right after the message flush=$(st flush)"
	if ! wait_until "$FLUSH_LIMIT" is_clean; then
		ktap_print_msg "not drained after $(secs "$WAITED") s"
		log_status
		return 1
	fi
	before=$(st writeback_done)
	ktap_print_msg "drained in $(secs "$WAITED") s: $((before - done0)) blocks written back, $(((before - done0) * 4096 * 1000 / (WAITED + 1) >> 10)) KiB/s"
}

if create_cache "${HOLD[@]}"; then
	ktap_test_pass "create: writeback mode, writeback held off (${HOLD[*]})"
else
	ktap_exit_fail_msg "cannot create the cache"
fi

if ktap_log_cmd fio --name=wbverify --filename="/dev/mapper/$DEV" "${FIO_VERIFY[@]}" \
	--do_verify=1 --output=/dev/null; then
	ktap_test_pass "fio: 16 MiB of 4 KiB random writes, crc32c verified through the device"
else
	ktap_test_fail "fio: 16 MiB of 4 KiB random writes, crc32c verified through the device"
fi

held_dirty() {
	local d
	d=$(st blocks_dirty)
	ktap_print_msg "blocks_dirty=$d writeback_done=$(st writeback_done)"
	[ "$d" -ge 4096 ] || return 1
	if same_on_origin 32 16 >/dev/null; then
		ktap_print_msg "the origin already has the data: it was not held dirty"
		return 1
	fi
}
if held_dirty; then
	ktap_test_pass "data held dirty: >= 4096 dirty blocks, the origin does not have it yet"
else
	ktap_test_fail "data held dirty: >= 4096 dirty blocks, the origin does not have it yet"
fi

if flush_case; then
	ktap_test_pass "flush: blocks_dirty=0 and flush=idle within ${FLUSH_LIMIT} s"
else
	ktap_test_fail "flush: blocks_dirty=0 and flush=idle within ${FLUSH_LIMIT} s"
fi

counters_ok() {
	log_status
	[ "$(st writeback_done)" -ge 4096 ] && [ "$(st writeback_errors)" -eq 0 ] &&
		[ "$(st origin_errors)" -eq 0 ] && [ "$(st data_loss)" -eq 0 ] &&
		[ "$(st degraded)" -eq 0 ]
}
if counters_ok; then
	ktap_test_pass "counters: writeback_done >= 4096, no errors, not degraded"
else
	ktap_test_fail "counters: writeback_done >= 4096, no errors, not degraded"
fi

if same_on_origin 32 16; then
	ktap_test_pass "origin read directly matches the device byte for byte"
else
	ktap_test_fail "origin read directly matches the device byte for byte"
fi

if ktap_log_cmd fio --name=wbverify --filename="$ORIGIN" "${FIO_VERIFY[@]}" \
	--verify_only --output=/dev/null; then
	ktap_test_pass "fio --verify_only on the origin itself: every block verified"
else
	ktap_test_fail "fio --verify_only on the origin itself: every block verified"
fi

# ------------------------------------ 2. writeback under foreground load

# Foreground IOPS: 4 KiB random writes (QD 8, unthrottled, over 48 MiB,
# three quarters of the cache) with writeback held off (nothing written
# back during the run), then the same load with watermarks 10/30 %.
# Bounded dirty level: a load the origin can sustain (2000 IOPS) over
# 96 MiB, more than the cache: without writeback the cache would fill
# with dirty data; with it the dirty level must stay near the high
# watermark.  (An unthrottled load faster than the origin cannot be
# written back by any cache; there bypassing is what keeps it usable.)
LOW=10
HIGH=30
RATE=2000
WIDE_MIB=96
IOPS_HELD=0
IOPS_WB=0
DIRTY_MAX=0
DIRTY_HELD=0
SAMPLES=()
TOTAL=$(st blocks_total)

baseline() {
	set_watermarks 100 100 && msg set max_dirty_age 0 || return 1
	msg stats reset
	foreground "$LOAD_SECS" "$tmp/fio-held" 48 || return 1
	IOPS_HELD=$(fio_write_iops "$tmp/fio-held")
	DIRTY_HELD=$(st blocks_dirty)
	ktap_print_msg "foreground 4 KiB random write QD8, writeback held off: $IOPS_HELD IOPS;" \
		"dirty at the end $DIRTY_HELD of $TOTAL blocks ($((DIRTY_HELD * 100 / TOTAL)) %)"
	if [ "$(st writeback_done)" -ne 0 ]; then
		ktap_print_msg "writeback ran while held off: writeback_done=$(st writeback_done)"
		return 1
	fi
	# back to clean for the next run
	msg flush && wait_until "$FLUSH_LIMIT" is_clean
}

under_load() {
	local pid done0
	set_watermarks "$LOW" "$HIGH" && msg set max_dirty_age 30 || return 1
	done0=$(st writeback_done)
	foreground "$LOAD_SECS" "$tmp/fio-wb" 48 &
	pid=$!
	sample_dirty "$pid" "$done0"
	wait "$pid" || return 1
	IOPS_WB=$(fio_write_iops "$tmp/fio-wb")
	WB_DURING=$(($(st writeback_done) - done0))
	ktap_print_msg "samples ${SAMPLES[*]}"
	ktap_print_msg "foreground with writeback running (low $LOW %, high $HIGH %): $IOPS_WB IOPS" \
		"($((IOPS_WB * 100 / (IOPS_HELD + 1))) % of $IOPS_HELD with writeback held off);" \
		"$WB_DURING blocks written back during the run; dirty max $DIRTY_MAX" \
		"($((DIRTY_MAX * 100 / TOTAL)) %), held-off run reached $DIRTY_HELD"
}

bounded_load() {
	local pid done0
	done0=$(st writeback_done)
	foreground $((LOAD_SECS + 2)) "$tmp/fio-rate" "$WIDE_MIB" --rate_iops="$RATE" &
	pid=$!
	sample_dirty "$pid" "$done0"
	wait "$pid" || return 1
	ktap_print_msg "samples ${SAMPLES[*]}"
	ktap_print_msg "$RATE IOPS over $WIDE_MIB MiB: $(fio_write_iops "$tmp/fio-rate") IOPS done," \
		"$(($(st writeback_done) - done0)) blocks written back, dirty max $DIRTY_MAX ($((DIRTY_MAX * 100 / TOTAL)) %)"
}

if baseline; then
	ktap_test_pass "load: baseline run with writeback held off, then drained"
else
	ktap_test_fail "load: baseline run with writeback held off, then drained"
fi
WB_DURING=0
if under_load; then
	ktap_test_pass "load: foreground fio completes with writeback running"
else
	ktap_test_fail "load: foreground fio completes with writeback running"
fi
if [ "$WB_DURING" -gt 0 ]; then
	ktap_test_pass "load: writeback makes progress under load ($WB_DURING blocks)"
else
	ktap_test_fail "load: writeback makes progress under load ($WB_DURING blocks)"
fi
# Generous bound: high + 30 points.
BOUND=$(((HIGH + 30) * TOTAL / 100))
if bounded_load && [ "$DIRTY_MAX" -gt 0 ] && [ "$DIRTY_MAX" -lt "$BOUND" ]; then
	ktap_test_pass "load: $RATE IOPS over $WIDE_MIB MiB: dirty stays bounded (max $DIRTY_MAX < $BOUND blocks, high + 30 %)"
else
	ktap_test_fail "load: $RATE IOPS over $WIDE_MIB MiB: dirty stays bounded (max $DIRTY_MAX < $BOUND blocks, high + 30 %)"
fi

# A flush under the unthrottled load of the IOPS figures: issued 2 s into
# a long foreground run, it must report flush=idle (everything dirty
# written back) before the run ends.
flush_under_load() {
	local pid t0 rc=0
	foreground $((LOAD_FLUSH_LIMIT + 10)) "$tmp/fio-flush" 48 &
	pid=$!
	cleanup_push "kill $pid"
	sleep 2
	t0=$(now_ms)
	msg flush || rc=1
	if [ "$rc" -eq 0 ] && wait_until "$LOAD_FLUSH_LIMIT" flush_idle; then
		ktap_print_msg "flush under load: flush=idle after $(secs "$WAITED") s"
	else
		ktap_print_msg "flush under load: still $(st flush) after $(secs $(($(now_ms) - t0))) s"
		log_status
		rc=1
	fi
	kill -INT "$pid" 2>/dev/null
	wait "$pid" || true
	cleanup_pop
	ktap_print_msg "foreground during the flush: $(fio_write_iops "$tmp/fio-flush") IOPS"
	return "$rc"
}
if flush_under_load; then
	ktap_test_pass "load: flush issued under load completes within ${LOAD_FLUSH_LIMIT} s"
else
	ktap_test_fail "load: flush issued under load completes within ${LOAD_FLUSH_LIMIT} s"
fi

drained_and_same() {
	if ! msg flush || ! wait_until "$FLUSH_LIMIT" is_clean; then
		log_status
		return 1
	fi
	same_on_origin 128 "$WIDE_MIB"
}
if drained_and_same; then
	ktap_test_pass "load: after the loads drained, the $WIDE_MIB MiB region is byte-exact on the origin"
else
	ktap_test_fail "load: after the loads drained, the $WIDE_MIB MiB region is byte-exact on the origin"
fi
remove_cache || true

# ------------------------------------------------------- 3. max dirty age

age_case() {
	local t0 d
	create_cache writeback_low 100 writeback_high 100 max_dirty_age "$AGE" || return 1
	make_pattern "$tmp/age" 4
	t0=$(now_ms)
	dd if="$tmp/age" of="/dev/mapper/$DEV" bs=1M seek=256 oflag=direct conv=fsync status=none ||
		return 1
	d=$(st blocks_dirty)
	ktap_print_msg "written in $(secs $(($(now_ms) - t0))) s, blocks_dirty=$d"
	[ "$d" -gt 0 ] || { ktap_print_msg "nothing dirty after the write"; return 1; }
	if ! wait_until $((AGE + AGE_MARGIN)) no_dirty; then
		ktap_print_msg "still dirty after $((AGE + AGE_MARGIN)) s"
		log_status
		return 1
	fi
	ktap_print_msg "aged data clean $(secs $(($(now_ms) - t0))) s after the write began (limit $AGE s + $AGE_MARGIN s margin)"
}
if age_case; then
	ktap_test_pass "max_dirty_age $AGE alone (writeback_low 100): dirty data cleaned within $AGE s + ${AGE_MARGIN} s"
else
	ktap_test_fail "max_dirty_age $AGE alone (writeback_low 100): dirty data cleaned within $AGE s + ${AGE_MARGIN} s"
fi
if matches_file "$ORIGIN" 256 "$tmp/age"; then
	ktap_test_pass "max_dirty_age: the origin holds the aged data byte for byte"
else
	ktap_test_fail "max_dirty_age: the origin holds the aged data byte for byte"
fi
dm_exists "$DEV" && remove_cache

# ------------------------------------- 3b. a hot set between the watermarks

# 4 MiB (6 % of the cache) rewritten every 0.2 s for HOT_SECS, dirty
# between writeback_low 1 and writeback_high 100: writeback must not copy
# blocks that are being rewritten (each copy would be undone by the next
# write).  Before the rule, the writeback_floor rate (4 MiB/s) copied the
# hot set over and over.  Fewer copies than the hot set has blocks
# tolerates a stall of the guest; once the writes stop (idle for a
# second) it drains and the origin holds the last pass byte for byte.
HOT_SECS=6
hot_case() {
	local t0 done0 d pass=0
	create_cache writeback_low 1 writeback_high 100 max_dirty_age 0 || return 1
	done0=$(st writeback_done)
	t0=$(now_ms)
	while [ $(($(now_ms) - t0)) -lt $((HOT_SECS * 1000)) ]; do
		make_pattern "$tmp/hot" 4
		dd if="$tmp/hot" of="/dev/mapper/$DEV" bs=1M seek=64 oflag=direct status=none ||
			return 1
		pass=$((pass + 1))
		sleep 0.2
	done
	d=$(($(st writeback_done) - done0))
	HOT_COPIES=$d
	ktap_print_msg "hot set: $pass passes in $(secs $(($(now_ms) - t0))) s, $d blocks written back meanwhile, blocks_dirty=$(st blocks_dirty)"
	[ "$d" -lt 1024 ] || return 1
}
if hot_case; then
	ktap_test_pass "hot set between the watermarks: not written back while rewritten ($HOT_COPIES copies < 1024 blocks)"
else
	ktap_test_fail "hot set between the watermarks: not written back while rewritten (${HOT_COPIES:-?} copies < 1024 blocks)"
fi
hot_t0=$(now_ms)
if dm_exists "$DEV" && wait_until "$FLUSH_LIMIT" no_dirty && wait_until "$FLUSH_LIMIT" flush_idle &&
	matches_file "$ORIGIN" 64 "$tmp/hot"; then
	ktap_print_msg "hot set drained and checked $(secs $(($(now_ms) - hot_t0))) s after the last pass"
	ktap_test_pass "hot set: drained once idle, the origin holds the last pass byte for byte"
else
	dm_exists "$DEV" && log_status
	ktap_test_fail "hot set: drained once idle, the origin holds the last pass byte for byte"
fi
dm_exists "$DEV" && remove_cache

# --------------------------------------------------------- 4. origin errors

origin_to_error() {
	dmsetup load vmc_wbo --table "0 $OSZ error" && dmsetup resume vmc_wbo
}
origin_heal() {
	dmsetup load vmc_wbo --table "$LINEAR_TABLE" && dmsetup resume vmc_wbo
}
# if the test dies with the origin failing, heal it before the removals
cleanup_push "dmsetup load vmc_wbo --table '$LINEAR_TABLE'; dmsetup resume vmc_wbo"

ERR_DIRTY=0
errors_setup() {
	create_cache "${HOLD[@]}" writeback_retries 2 || return 1
	make_pattern "$tmp/err" 8
	dd if="$tmp/err" of="/dev/mapper/$DEV" bs=1M seek=300 oflag=direct conv=fsync status=none ||
		return 1
	ERR_DIRTY=$(st blocks_dirty)
	ktap_print_msg "blocks_dirty=$ERR_DIRTY"
	[ "$ERR_DIRTY" -ge 2048 ] && origin_to_error && msg flush
}
# marked first: writeback may fail (and log it) before errors_setup returns
dmesg_mark
if errors_setup; then
	ktap_test_pass "errors: 8 MiB held dirty, origin swapped to the error target, flush"
else
	ktap_test_fail "errors: 8 MiB held dirty, origin swapped to the error target, flush"
fi

degraded_now() {
	[ "$(st degraded)" = 1 ] && [ "$(st writeback_errors)" -ge 2 ]
}
errors_seen() {
	if ! wait_until 30 degraded_now; then
		ktap_print_msg "not degraded after 30 s"
		log_status
		return 1
	fi
	ktap_print_msg "degraded after $(secs "$WAITED") s"
	log_status
	[ "$(st origin_errors)" -ge 2 ] && [ "$(st blocks_dirty)" -eq "$ERR_DIRTY" ] &&
		[ "$(st flush)" = active ] && [ "$(st data_loss)" -eq 0 ]
}
if errors_seen; then
	ktap_test_pass "errors: writeback_errors, origin_errors >= 2, degraded=1, all $ERR_DIRTY blocks still dirty, flush active"
else
	ktap_test_fail "errors: writeback_errors, origin_errors >= 2, degraded=1, all $ERR_DIRTY blocks still dirty, flush active"
fi

if matches_file "/dev/mapper/$DEV" 300 "$tmp/err"; then
	ktap_test_pass "errors: the data reads back exactly through the cache while the origin fails"
else
	ktap_test_fail "errors: the data reads back exactly through the cache while the origin fails"
fi

errors_logged() {
	local log
	log=$(dmesg_since_mark)
	grep -E 'vmcache' <<<"$log" | tail -n 4 | while IFS= read -r l; do ktap_print_msg "$l"; done
	grep -qE 'writeback failed' <<<"$log" && grep -qE 'degraded' <<<"$log"
}
if errors_logged; then
	ktap_test_pass "errors: the kernel log reports the failed writeback and the degraded state"
else
	ktap_test_fail "errors: the kernel log reports the failed writeback and the degraded state"
fi

heal_case() {
	local e0
	e0=$(st writeback_errors)
	# a little longer in the failing state: the backoff grows, then heal
	sleep 2
	origin_heal || return 1
	ktap_print_msg "origin healed after $(($(st writeback_errors))) failed batches (at degraded: $e0)"
	if ! wait_until 60 is_clean; then
		ktap_print_msg "not drained 60 s after the origin healed"
		log_status
		return 1
	fi
	ktap_print_msg "drained $(secs "$WAITED") s after the origin healed"
	log_status
	[ "$(st degraded)" -eq 0 ] && [ "$(st data_loss)" -eq 0 ]
}
if heal_case; then
	ktap_test_pass "errors: origin healed: drained, degraded=0, no data loss"
else
	ktap_test_fail "errors: origin healed: drained, degraded=0, no data loss"
fi

if matches_file "$ORIGIN" 300 "$tmp/err"; then
	ktap_test_pass "errors: the origin holds the data byte for byte"
else
	ktap_test_fail "errors: the origin holds the data byte for byte"
fi
dm_exists "$DEV" && remove_cache

DMESG_MARK=$DMESG_START
ktap_test_result "kernel log clean for the whole test" check_dmesg_clean

ktap_finished "$PLAN"
