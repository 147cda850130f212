#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# kmemleak check, run in a guest booting a kernel with DEBUG_KMEMLEAK by
# scripts/debug-kernel.sh (run-in-guest.sh --script).  kmemleak reports
# its findings only in debugfs, so: use the module (writeback cache over
# brd + null_blk: writes, reads, messages, suspend/resume, reload, remove),
# unload it, scan twice (an object is reported once it stays unreferenced
# across scans) and print the report, the vmcache ones first.
set -uo pipefail
# shellcheck source=../lib.sh
. /selftests/lib.sh
trap - EXIT

KL=/sys/kernel/debug/kmemleak
say() { printf '%s\n' "$*"; }

[ -w "$KL" ] || { say "kmemleak: $KL missing (kernel without DEBUG_KMEMLEAK?)"; exit 2; }
# Forget what boot and module loading left behind: only new leaks count.
echo scan >"$KL"
echo clear >"$KL"

modprobe dm-vmcache || { say "kmemleak: modprobe dm-vmcache failed"; exit 1; }
setup_brd 1 64 || exit 1
setup_null_blk kl_origin 256 || exit 1
CACHE=/dev/ram0
ORIGIN=/dev/kl_origin
OSZ=$(dev_sectors "$ORIGIN")
wipe_dev "$CACHE"

rc=0
for round in 1 2; do
	dmsetup create kl_vmc --table "0 $OSZ vmcache $CACHE $ORIGIN 2 mode writeback" || { rc=1; break; }
	fio --name=kl --filename=/dev/mapper/kl_vmc --rw=randrw --bs=4k --size=32M \
		--ioengine=libaio --iodepth=8 --direct=1 --runtime=15 --time_based \
		--eta=never --output=/dev/null || rc=1
	dmsetup message kl_vmc 0 commit || rc=1
	dmsetup message kl_vmc 0 "stats reset" || rc=1
	dmsetup suspend kl_vmc && dmsetup resume kl_vmc || rc=1
	dmsetup message kl_vmc 0 flush || rc=1
	for _ in $(seq 120); do
		[ "$(status_value kl_vmc blocks_dirty 2>/dev/null)" = 0 ] && break
		sleep 1
	done
	dmsetup message kl_vmc 0 invalidate || rc=1
	dmsetup status kl_vmc >/dev/null || rc=1
	dmsetup remove kl_vmc || rc=1
	say "kmemleak: round $round done (rc so far $rc)"
done
rmmod dm_vmcache || { say "kmemleak: rmmod dm_vmcache failed"; rc=1; }

echo scan >"$KL"
sleep 6
echo scan >"$KL"
report=$(cat "$KL")
n=$(grep -c '^unreferenced object' <<<"$report")
nv=$(awk '/^unreferenced object/ { if (v) c++; v = 0; obj = 1; next }
	obj && /vmcache/ { v = 1 } END { if (v) c++; print c + 0 }' <<<"$report")
say "kmemleak: $n unreferenced objects, $nv with vmcache in their backtrace"
[ -n "$report" ] && printf '%s\n' "$report"
[ "$nv" -eq 0 ] || rc=1
exit "$rc"
