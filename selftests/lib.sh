#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Helpers for the dm-vmcache selftests: KTAP output, prerequisites,
# emulated devices (brd, null_blk, dm-delay, dm-linear), a cleanup stack,
# data comparison and kernel log checks.
#
# Source it from a test script:
#	. "$(dirname "$0")/lib.sh"
#
# The KTAP helpers follow the names of the kernel's
# tools/testing/selftests/kselftest/ktap_helpers.sh so that the tests can
# move into a kernel tree with few changes.

# kselftest exit codes
KSFT_PASS=0
KSFT_FAIL=1
# shellcheck disable=SC2034 # part of the kselftest vocabulary
KSFT_XFAIL=2
# shellcheck disable=SC2034
KSFT_XPASS=3
KSFT_SKIP=4

KTAP_TESTNO=1
KTAP_CNT_PASS=0
KTAP_CNT_FAIL=0
KTAP_CNT_SKIP=0

# Name of the dm-vmcache module and of its target.
VMCACHE_MODULE=${VMCACHE_MODULE:-dm-vmcache}
VMCACHE_TARGET=vmcache

# No udev in the guest: libdevmapper creates the /dev/mapper nodes itself.
export DM_DISABLE_UDEV=1

# ---------------------------------------------------------------- KTAP

ktap_print_header() {
	echo "KTAP version 1"
}

ktap_set_plan() {
	echo "1..$1"
}

ktap_print_msg() {
	local line
	# Every line of a (possibly multi-line) message becomes a diagnostic.
	while IFS= read -r line; do
		echo "# $line"
	done <<<"$*"
}

# Send a command's output (stdout and stderr) to the log as diagnostics.
ktap_log_cmd() {
	local out rc=0
	out=$("$@" 2>&1) || rc=$?
	[ -n "$out" ] && ktap_print_msg "$out"
	return "$rc"
}

ktap_test_pass() {
	echo "ok $KTAP_TESTNO $*"
	KTAP_TESTNO=$((KTAP_TESTNO + 1))
	KTAP_CNT_PASS=$((KTAP_CNT_PASS + 1))
}

ktap_test_fail() {
	echo "not ok $KTAP_TESTNO $*"
	KTAP_TESTNO=$((KTAP_TESTNO + 1))
	KTAP_CNT_FAIL=$((KTAP_CNT_FAIL + 1))
}

# ktap_test_skip <description> [reason]
ktap_test_skip() {
	echo "ok $KTAP_TESTNO $1 # SKIP${2:+ $2}"
	KTAP_TESTNO=$((KTAP_TESTNO + 1))
	KTAP_CNT_SKIP=$((KTAP_CNT_SKIP + 1))
}

# ktap_test_result <description> <command...>: pass if the command succeeds.
# The command's output is logged as diagnostics.
ktap_test_result() {
	local desc=$1
	shift
	if ktap_log_cmd "$@"; then
		ktap_test_pass "$desc"
	else
		ktap_test_fail "$desc"
	fi
}

# The whole test is skipped: empty plan with a reason, exit 4.
ktap_skip_all() {
	echo "1..0 # SKIP $*"
	exit "$KSFT_SKIP"
}

ktap_exit_fail_msg() {
	echo "Bail out! $*"
	ktap_print_totals
	exit "$KSFT_FAIL"
}

ktap_print_totals() {
	echo "# Totals: pass:$KTAP_CNT_PASS fail:$KTAP_CNT_FAIL xfail:0 xpass:0 skip:$KTAP_CNT_SKIP error:0"
}

# Print totals and exit: 1 on any failure or when fewer results than
# planned were printed, 4 when everything was skipped, else 0.
# ktap_finished [planned]
ktap_finished() {
	local planned=${1:-}
	local done=$((KTAP_TESTNO - 1))

	ktap_print_totals
	if [ -n "$planned" ] && [ "$done" -ne "$planned" ]; then
		ktap_print_msg "planned $planned tests but ran $done"
		exit "$KSFT_FAIL"
	fi
	if [ "$KTAP_CNT_FAIL" -gt 0 ]; then
		exit "$KSFT_FAIL"
	fi
	if [ "$KTAP_CNT_SKIP" -gt 0 ] && [ "$KTAP_CNT_PASS" -eq 0 ]; then
		exit "$KSFT_SKIP"
	fi
	exit "$KSFT_PASS"
}

# ------------------------------------------------------- cleanup stack

VMCACHE_CLEANUP=()

# cleanup_push <shell command>: run at exit, last pushed first.
cleanup_push() {
	VMCACHE_CLEANUP+=("$*")
}

# Drop the most recent entry (the resource was released by the test).
cleanup_pop() {
	local n=${#VMCACHE_CLEANUP[@]}
	[ "$n" -gt 0 ] && unset "VMCACHE_CLEANUP[$((n - 1))]"
	return 0
}

cleanup_run() {
	local i
	for ((i = ${#VMCACHE_CLEANUP[@]} - 1; i >= 0; i--)); do
		eval "${VMCACHE_CLEANUP[$i]}" >/dev/null 2>&1 || true
	done
	VMCACHE_CLEANUP=()
}

trap cleanup_run EXIT

# ------------------------------------------------------- prerequisites

require_root() {
	[ "$(id -u)" -eq 0 ] || ktap_skip_all "must be run as root"
}

require_cmd() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || ktap_skip_all "command $c not found"
	done
}

# require_module <module>...: load each module or skip the whole test.
require_module() {
	local m
	for m in "$@"; do
		modprobe -q "$m" 2>/dev/null || ktap_skip_all "module $m not available"
	done
}

# dm-vmcache itself: skip when the module is not built or installed.
require_vmcache() {
	require_root
	require_cmd dmsetup blockdev
	modinfo "$VMCACHE_MODULE" >/dev/null 2>&1 ||
		ktap_skip_all "module $VMCACHE_MODULE not installed"
	modprobe "$VMCACHE_MODULE" 2>/dev/null ||
		ktap_skip_all "module $VMCACHE_MODULE does not load"
	grep -q "^$VMCACHE_TARGET " <<<"$(dmsetup targets)" ||
		ktap_skip_all "target $VMCACHE_TARGET not registered"
}

module_loaded() {
	[ -d "/sys/module/${1//-/_}" ]
}

# ------------------------------------------------------------- devices

dev_sectors() {
	blockdev --getsz "$1"
}

# sysfs_block <device node>: its /sys/dev/block/<major>:<minor> directory
# (/dev/mapper nodes are not symlinks to dm-N without udev).
sysfs_block() {
	local mm
	mm=$(stat -L -c '%t %T' "$1") || return 1
	printf '/sys/dev/block/%d:%d\n' "0x${mm% *}" "0x${mm#* }"
}

# holders_empty <device node>: nothing (dm device, md, ...) stacked on it.
holders_empty() {
	local d
	d=$(sysfs_block "$1") || return 1
	[ -z "$(ls "$d/holders")" ]
}

# setup_brd <count> <size MiB>: /dev/ram0../dev/ram<count-1>.
setup_brd() {
	local n=$1 mib=$2
	if module_loaded brd; then
		rmmod brd 2>/dev/null || {
			ktap_print_msg "brd is loaded and busy"
			return 1
		}
	fi
	modprobe brd rd_nr="$n" rd_size=$((mib * 1024)) max_part=0 || return 1
	cleanup_push "rmmod brd"
	local i
	for ((i = 0; i < n; i++)); do
		wait_for_dev "/dev/ram$i" || return 1
	done
}

# setup_null_blk <name> <size MiB> [<attr>=<value>...]: a memory-backed
# null_blk device /dev/<name> through configfs; extra attributes such as
# irqmode=2 completion_nsec=2000000 make it slow.
setup_null_blk() {
	local name=$1 mib=$2 kv dir
	shift 2
	modprobe null_blk nr_devices=0 || return 1
	[ -d /sys/kernel/config/nullb ] || {
		ktap_print_msg "null_blk configfs not available"
		return 1
	}
	dir=/sys/kernel/config/nullb/$name
	mkdir "$dir" || return 1
	cleanup_push "rmdir $dir"
	echo "$mib" >"$dir/size"
	echo 1 >"$dir/memory_backed"
	echo 4096 >"$dir/blocksize"
	for kv in "$@"; do
		echo "${kv#*=}" >"$dir/${kv%%=*}" || {
			ktap_print_msg "null_blk: cannot set $kv"
			return 1
		}
	done
	echo 1 >"$dir/power" || return 1
	cleanup_pop
	cleanup_push "echo 0 > $dir/power; rmdir $dir"
	wait_for_dev "/dev/$name"
}

wait_for_dev() {
	local i
	for ((i = 0; i < 50; i++)); do
		[ -b "$1" ] && return 0
		sleep 0.1
	done
	ktap_print_msg "device $1 did not appear"
	return 1
}

# dm_create <name> <table line>: create, register its removal at exit.
dm_create() {
	local name=$1
	shift
	dmsetup create "$name" --table "$*" || return 1
	cleanup_push "dm_remove $name"
	wait_for_dev "/dev/mapper/$name"
}

# dm_remove <name>: remove with retries (a just-closed device may be busy).
dm_remove() {
	dmsetup remove --retry "$1" 2>/dev/null || {
		sleep 1
		dmsetup remove --retry "$1"
	}
}

dm_exists() {
	dmsetup info "$1" >/dev/null 2>&1
}

# setup_delay <name> <dev> <read ms> [<write ms>]: a slow device.
setup_delay() {
	local name=$1 dev=$2 rd=$3 wr=${4:-$3}
	dm_create "$name" "0 $(dev_sectors "$dev") delay $dev 0 $rd $dev 0 $wr"
}

# setup_linear <name> <dev> [<sectors> [<offset>]]
setup_linear() {
	local name=$1 dev=$2 len=${3:-} off=${4:-0}
	[ -n "$len" ] || len=$(($(dev_sectors "$dev") - off))
	dm_create "$name" "0 $len linear $dev $off"
}

# Zero the first <MiB> of a device (a blank cache for vmcache).
wipe_dev() {
	dd if=/dev/zero of="$1" bs=1M count="${2:-1}" oflag=direct status=none
}

# --------------------------------------------------------- comparisons

# compare_bytes <a> <b> [<bytes>]: byte-for-byte, first <bytes> only if
# given; a difference is reported as a diagnostic.
compare_bytes() {
	local a=$1 b=$2 n=${3:-} out
	if [ -n "$n" ]; then
		out=$(cmp -n "$n" "$a" "$b" 2>&1)
	else
		out=$(cmp "$a" "$b" 2>&1)
	fi || {
		ktap_print_msg "cmp $a $b${n:+ (first $n bytes)}: $out"
		return 1
	}
}

# md5_of <file or device> [<bytes>]
md5_of() {
	if [ -n "${2:-}" ]; then
		head -c "$2" "$1" | md5sum | cut -d' ' -f1
	else
		md5sum <"$1" | cut -d' ' -f1
	fi
}

# make_pattern <file> <MiB>: a random file to write and compare.
make_pattern() {
	dd if=/dev/urandom of="$1" bs=1M count="$2" status=none
}

# ---------------------------------------------------------- kernel log

# Lines that mean the kernel is unhappy, whatever the test expected.
DMESG_BAD_RE='\bBUG\b|WARNING:|Oops|\bhung task\b|blocked for more than|Call Trace|general protection fault|Kernel panic|UBSAN|KASAN|kernel BUG|list_(add|del) corruption|refcount_t:|INFO: rcu_|soft lockup|hard LOCKUP'

DMESG_MARK=

# dmesg_mark: write a unique marker into the kernel log; later
# dmesg_since_mark / check_dmesg_clean only look at what follows it.
dmesg_mark() {
	DMESG_MARK="vmcache-selftest-mark-$$-$RANDOM-$(date +%s%N)"
	echo "$DMESG_MARK" >/dev/kmsg
}

# (No "cmd | grep -q" pipelines here: with pipefail, grep quitting early
# can fail the pipeline through SIGPIPE.)
dmesg_since_mark() {
	local mark=$DMESG_MARK log
	log=$(dmesg)
	if [ -n "$mark" ] && grep -qF -- "$mark" <<<"$log"; then
		awk -v m="$mark" 'found { print } index($0, m) { found = 1 }' <<<"$log"
	else
		printf '%s\n' "$log"
	fi
}

# dmesg_contains <extended regex>: since the mark.
dmesg_contains() {
	grep -qE -- "$1" <<<"$(dmesg_since_mark)"
}

# check_dmesg_clean: fail (and log the lines) if the kernel log since the
# mark (the whole log without one) has a BUG, WARNING, Oops, hung task or
# call trace.
check_dmesg_clean() {
	local bad
	bad=$(grep -E -- "$DMESG_BAD_RE" <<<"$(dmesg_since_mark)") || return 0
	ktap_print_msg "kernel log:"
	ktap_print_msg "$bad"
	return 1
}

# ------------------------------------------------- the cache under test
# For tests that keep the vmcache device's name in $NAME.

# status_line: the key=value tokens of its status
# shellcheck disable=SC2153 # $NAME is set by the test that sources this
status_line() {
	dmsetup status "$NAME" | cut -d' ' -f4-
}

# status_value <dm name> <key>: one value of a vmcache device's status
status_value() {
	local kv
	for kv in $(dmsetup status "$1" | cut -d' ' -f4-); do
		[ "${kv%%=*}" = "$2" ] && { echo "${kv#*=}"; return 0; }
	done
	return 1
}

# st <key>: one value of the status line
st() {
	status_value "$NAME" "$1"
}

# expect <key>=<value>...: each status key has exactly that value
expect() {
	local kv got rc=0
	for kv in "$@"; do
		got=$(st "${kv%%=*}") || got='(missing)'
		if [ "$got" != "${kv#*=}" ]; then
			ktap_print_msg "${kv%%=*}=$got, expected ${kv#*=}"
			rc=1
		fi
	done
	[ "$rc" -eq 0 ] || ktap_print_msg "status: $(status_line)"
	return "$rc"
}

msg() {
	dmsetup message "$NAME" 0 "$@"
}

# wait_clean: nothing dirty and no flush under way, within 30 s (status
# through dmsetup, $NAME)
wait_clean() {
	local i
	for ((i = 0; i < 300; i++)); do
		[ "$(st blocks_dirty)" = 0 ] && [ "$(st flush)" = idle ] && return 0
		sleep 0.1
	done
	ktap_print_msg "not clean after 30 s: $(status_line)"
	return 1
}

# drain: write back every dirty block; wait (at most 60 s) for
# blocks_dirty=0 and flush=idle
drain() {
	local i dirty
	msg flush || return 1
	for ((i = 0; i < 600; i++)); do
		dirty=$(st blocks_dirty)
		[ "$dirty" = 0 ] && [ "$(st flush)" = idle ] && return 0
		# a flush ends when what was dirty at its start is clean: data
		# dirtied by a write still in flight then needs another
		if [ "$dirty" != 0 ] && [ "$(st flush)" = idle ]; then
			msg flush || return 1
		fi
		sleep 0.1
	done
	ktap_print_msg "not drained after 60 s: $(status_line)"
	return 1
}

# Read fills are written to the cache after the read completes: wait (at
# most 10 s) until promotions reaches <n>, then let stragglers land.
wait_promotions() {
	local i
	for ((i = 0; i < 100; i++)); do
		[ "$(st promotions)" -ge "$1" ] && break
		sleep 0.1
	done
	sleep 0.3
}

# ------------------------------------------------------ crash support

# ktap_crash_now: for a test phase that ends in a simulated power cut.
# Prints the totals and the marker the host harness looks for, then
# resets the guest without syncing anything.  Only in the guest harness.
ktap_crash_now() {
	ktap_print_totals
	echo "# vmcache-harness: crash requested"
	sleep 1
	echo 1 >/proc/sys/kernel/sysrq
	echo b >/proc/sysrq-trigger
	sleep 60
}

# ------------------------------------------------------------------
# Helpers for tests that poll the status often: under TCG every program
# started costs tens of ms, so these start none.  fast_tools first; the
# status helpers read $SYS (/sys/module/dm_vmcache/caches/<name>).

# fast_tools: DD and CMP arrays (busybox's applets when the guest has
# them: static, they start much faster than coreutils'), and nap's pipe
# shellcheck disable=SC2034 # DD and CMP are for the callers
fast_tools() {
	local bb=/opt/busybox/busybox
	if [ -x "$bb" ]; then
		DD=("$bb" dd)
		CMP=("$bb" cmp)
	else
		DD=(dd)
		CMP=(cmp)
	fi
	exec {NAPFD}<> <(:)
}

# nap <seconds>: sleep without starting a program (a read that times out
# on a pipe nobody writes to)
nap() { read -r -t "$1" -u "$NAPFD" _ || true; }

# stv <variable> <key>: a status value, from sysfs
stv() { read -r "$1" <"${SYS:?}/$2"; }

now_ms() { echo $((${EPOCHREALTIME/./} / 1000)); }

# wait_for <limit s> <command...>: poll every 0.1 s
wait_for() {
	local limit=$1 i
	shift
	for ((i = 0; i < limit * 10; i++)); do
		"$@" && return 0
		nap 0.1
	done
	return 1
}

# is_clean: nothing dirty and no flush under way
is_clean() {
	local d f
	stv d blocks_dirty && stv f flush && [ "$d" = 0 ] && [ "$f" = idle ]
}

# table_load <dm name> <table lines>: replace a live table
table_load() { dmsetup load "$1" <<<"$2" && dmsetup resume "$1"; }

# run_timed <description> <command...>: a KTAP result with the command's
# run time, run in this shell (unlike ktap_test_result's subshell, the
# command keeps its variables and cleanup entries)
run_timed() {
	local d=$1 t0
	shift
	t0=$(now_ms)
	if "$@"; then
		ktap_test_pass "$d ($(($(now_ms) - t0)) ms)"
	else
		ktap_test_fail "$d ($(($(now_ms) - t0)) ms)"
	fi
}

# ----------------------------------------------------- power-cut stack
# For tests that cut the power (vmcache_trust.sh, vmcache_crc.sh), over
# /dev/ram0 (cache) and /dev/ram1 (origin), with $NAME, $SECTORS, $MIB:
#
#   $NAME: vmcache over dc (dm-delay: slow cache writes) -> cut_c -> ram0
#                       and cut_o -> ram1
#
# power_cut reloads cut_c and cut_o to drop every later write: ram0 and
# ram1 then hold what a power cut at that instant would have left.

# table_of <opts>: the vmcache line over dc and cut_o
table_of() {
	local -a table_words
	read -r -a table_words <<<"$1"
	echo "0 $SECTORS vmcache /dev/mapper/dc /dev/mapper/cut_o ${#table_words[@]} $1"
}

# stack_up <cache write delay ms> <vmcache options> [blank]
stack_up() {
	[ "${3:-}" = blank ] && wipe_dev /dev/ram0 2
	[ "${3:-}" = blank ] && wipe_dev /dev/ram1 "$MIB"
	dm_create cut_c "0 $SECTORS linear /dev/ram0 0" &&
		dm_create cut_o "0 $SECTORS linear /dev/ram1 0" &&
		dm_create dc "0 $SECTORS delay /dev/mapper/cut_c 0 0 /dev/mapper/cut_c 0 $1" &&
		dm_create "$NAME" "$(table_of "$2")"
}

stack_down() {
	local d
	for d in "$NAME" dc cut_c cut_o; do
		dm_exists "$d" && dm_remove "$d"
	done
	return 0
}

# power_cut: from now on nothing more reaches /dev/ram0 or /dev/ram1
power_cut() {
	dmsetup suspend --noflush cut_c cut_o || return 1
	dmsetup load cut_c --table \
		"0 $SECTORS flakey /dev/ram0 0 0 3600 1 drop_writes" &&
		dmsetup load cut_o --table \
			"0 $SECTORS flakey /dev/ram1 0 0 3600 1 drop_writes" &&
		dmsetup resume cut_c cut_o
}
