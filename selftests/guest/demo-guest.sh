#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The demo, run inside a throwaway guest by scripts/demo.sh:
# a vmcache over emulated disks (cache: brd; origin: a memory-backed
# null_blk that completes each request after DEMO_ORIGIN_MS), a random-read
# workload on the raw origin and on the cached device (one warm-up pass,
# then a measured pass), the cache statistics and the speed-up.
set -euo pipefail
# shellcheck source=../lib.sh
. /selftests/lib.sh
trap - EXIT

ORIGIN_MIB=${DEMO_ORIGIN_MIB:-1024}
CACHE_MIB=${DEMO_CACHE_MIB:-256}
HOT_MIB=${DEMO_HOT_MIB:-64}
ORIGIN_MS=${DEMO_ORIGIN_MS:-2}
RUNTIME=${DEMO_RUNTIME:-10}
IODEPTH=${DEMO_IODEPTH:-4}

say() { printf '%s\n' "$*"; }
die() { say "demo: $*"; exit 1; }

# fio random reads over the hot set; prints "<IOPS> <KiB/s> <mean clat us>".
# (terse format: field 8 read IOPS, 7 read KiB/s, 16 read mean clat usec)
randread() { # <device> [time_based]
	local dev=$1 extra=()
	[ "${2:-}" = time_based ] && extra=(--time_based "--runtime=$RUNTIME")
	fio --name=demo --filename="$dev" --rw=randread --bs=4k --size="${HOT_MIB}M" \
		--ioengine=libaio --iodepth="$IODEPTH" --direct=1 --randrepeat=0 \
		"${extra[@]}" --minimal |
		awk -F';' '{ printf "%d %d %.0f\n", $8, $7, $16 }'
}

show_status() {
	say "  dmsetup status vmc_demo:"
	dmsetup status vmc_demo | cut -d' ' -f4- |
		awk '{ for (i = 1; i <= NF; i++) printf "%s%-26s%s", (i % 4 == 1) ? "    " : "", $i, (i % 4 == 0 || i == NF) ? "\n" : "" }' 
	if command -v vmcachectl >/dev/null 2>&1; then
		say "  vmcachectl status vmc_demo:"
		vmcachectl status vmc_demo 2>&1 | sed 's/^/    /' || true
	fi
}

say "== dm-vmcache demo: $(uname -r), $(nproc) CPUs"
modprobe dm-vmcache || die "dm-vmcache does not load (was it built? make module)"
modprobe brd rd_nr=1 rd_size=$((CACHE_MIB * 1024)) max_part=0
modprobe null_blk nr_devices=0
mkdir /sys/kernel/config/nullb/slow
(
	cd /sys/kernel/config/nullb/slow
	echo "$ORIGIN_MIB" >size
	echo 1 >memory_backed
	echo 4096 >blocksize
	echo 2 >irqmode
	echo $((ORIGIN_MS * 1000000)) >completion_nsec
	echo 1 >power
)
wait_for_dev /dev/slow
wait_for_dev /dev/ram0
ORIGIN=/dev/slow
CACHE=/dev/ram0
say "origin: $ORIGIN, ${ORIGIN_MIB} MiB null_blk, ${ORIGIN_MS} ms per request"
say "cache:  $CACHE, ${CACHE_MIB} MiB ram disk"
say "workload: fio 4 KiB random reads over a ${HOT_MIB} MiB hot set, queue depth $IODEPTH, ${RUNTIME} s"

say ""
say "== 1. uncached: the raw origin"
read -r o_iops o_bw o_lat < <(randread "$ORIGIN" time_based)
say "  origin: $o_iops IOPS, $((o_bw / 1024)) MiB/s, mean latency $o_lat us"

say ""
say "== 2. create the cache"
table="0 $(blockdev --getsz "$ORIGIN") vmcache $CACHE $ORIGIN"
say "  dmsetup create vmc_demo --table \"$table\""
dmsetup create vmc_demo --table "$table"
say "  dmsetup table: $(dmsetup table vmc_demo)"

say ""
say "== 3. write and read back through the cache (fio, crc32c verify)"
if fio --name=verify --filename=/dev/mapper/vmc_demo --rw=randwrite --bs=4k \
	--offset=$((ORIGIN_MIB - 16))M --size=16M --ioengine=libaio --iodepth=8 --direct=1 \
	--verify=crc32c --verify_fatal=1 --eta=never --output=/dev/null; then
	say "  16 MiB written and verified"
else
	die "verify failed"
fi

say ""
say "== 4. cached: warm-up pass (every hot block read once)"
read -r w_iops _ _ < <(randread /dev/mapper/vmc_demo)
say "  warm-up: $w_iops IOPS"
show_status

say ""
say "== 5. cached: measured pass"
dmsetup message vmc_demo 0 stats reset 2>/dev/null || true
read -r c_iops c_bw c_lat < <(randread /dev/mapper/vmc_demo time_based)
say "  cached: $c_iops IOPS, $((c_bw / 1024)) MiB/s, mean latency $c_lat us"
show_status

say ""
say "== result"
say "  origin (uncached): $(printf '%8d' "$o_iops") IOPS   mean latency $o_lat us"
say "  vmcache (warm):    $(printf '%8d' "$c_iops") IOPS   mean latency $c_lat us"
if [ "$o_iops" -gt 0 ]; then
	say "  speed-up: $(awk -v c="$c_iops" -v o="$o_iops" 'BEGIN { printf "%.1fx", c / o }')"
fi

dmsetup remove vmc_demo
say "  (device removed; the guest is thrown away)"
