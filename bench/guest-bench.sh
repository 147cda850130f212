#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The dm-vmcache benchmark, run inside one throwaway QEMU guest by
# bench/run-bench.sh (selftests/run-in-guest.sh --script).  Every target
# is built on the same emulated devices:
#   fast    /dev/mapper/bfast: a dm-linear slice of a ram disk (brd)
#   meta    /dev/mapper/bmeta: another slice (dm-cache metadata)
#   origin  /dev/slow: a memory-backed null_blk completing every request
#           after BENCH_ORIGIN_US microseconds, at most BENCH_ORIGIN_QD
#           at a time, capped at BENCH_ORIGIN_MBPS MiB/s: a slow,
#           host-throttled virtual disk (500 us, 4, 150: 8000 IOPS)
# and measured with the same fio workloads:
#   randread   4 KiB random reads, QD 16, over a BENCH_HOT_MIB hot set,
#              after a warm-up that reads the hot set twice
#   seqread    1 MiB sequential reads, QD 4, over a cold area
#   randwrite  4 KiB random writes, QD 16, over the hot set
# Then the writeback throughput of dm-vmcache (issue 5): random dirty
# blocks written back by "flush" with writeback_sort 1 and 0, against the
# origin's sequential and random write speed.
#
# Output: "# " progress lines, and machine-readable lines for the host:
#   RESULT <target> <randread IOPS> <seqread MB/s> <randwrite IOPS> <note>
#   WB <case> <MiB> <seconds> <MB/s> <note>
#   INFO <text>
set -uo pipefail
# shellcheck source=../selftests/lib.sh
. /selftests/lib.sh
trap - EXIT

FAST_MIB=${BENCH_FAST_MIB:-256}
META_MIB=${BENCH_META_MIB:-16}
ORIGIN_MIB=${BENCH_ORIGIN_MIB:-1024}
ORIGIN_US=${BENCH_ORIGIN_US:-500}
ORIGIN_QD=${BENCH_ORIGIN_QD:-4}		# requests the origin serves at once
ORIGIN_MBPS=${BENCH_ORIGIN_MBPS:-150}	# its bandwidth cap, MiB/s
HOT_MIB=${BENCH_HOT_MIB:-32}
RUNTIME=${BENCH_RUNTIME:-10}
TARGETS=${BENCH_TARGETS:-origin,fast,dm-cache,dm-writecache,vmcache-wt,vmcache-wb,bcache}
WB_DENSE_MIB=${BENCH_WB_DENSE_MIB:-128}	# dirty half of it, 4 KiB blocks
WB_SPARSE_MIB=${BENCH_WB_SPARSE_MIB:-16}	# dirty blocks spread over the origin

FAST=/dev/mapper/bfast
META=/dev/mapper/bmeta
ORIGIN=/dev/slow
SEQ_OFF_MIB=256	# the sequential reads' area: cold, never written

say() { printf '# %s\n' "$*"; }
now_ms() { date +%s%3N; }

# ------------------------------------------------------------ devices

setup() {
	modprobe -q dm-mod
	modprobe -q brd rd_nr=1 rd_size=$(((FAST_MIB + META_MIB) * 1024)) max_part=0 || return 1
	modprobe -q null_blk nr_devices=0 || return 1
	local d=/sys/kernel/config/nullb/slow
	mkdir "$d" || return 1
	echo $((ORIGIN_MIB)) >"$d/size"
	echo 1 >"$d/memory_backed"
	echo 4096 >"$d/blocksize"
	echo 2 >"$d/irqmode"
	echo $((ORIGIN_US * 1000)) >"$d/completion_nsec"
	echo "$ORIGIN_QD" >"$d/hw_queue_depth"
	echo "$ORIGIN_MBPS" >"$d/mbps" || say "null_blk has no mbps: no bandwidth cap"
	echo 1 >"$d/power"
	wait_for_dev /dev/ram0 && wait_for_dev "$ORIGIN" || return 1
	# every target's own ordering is what reaches the origin
	echo none >/sys/block/slow/queue/scheduler 2>/dev/null
	dmsetup create bfast --table "0 $((FAST_MIB * 2048)) linear /dev/ram0 0" &&
	dmsetup create bmeta --table "0 $((META_MIB * 2048)) linear /dev/ram0 $((FAST_MIB * 2048))" ||
		return 1
	wait_for_dev "$FAST" && wait_for_dev "$META"
	OSZ=$(blockdev --getsz "$ORIGIN")
}

wipe() { dd if=/dev/zero of="$1" bs=1M count="${2:-4}" oflag=direct status=none; }

# ---------------------------------------------------------------- fio

# fio_run <dev> <fio options...>: terse output on stdout
fio_run() {
	local dev=$1
	shift
	fio --name=bench --filename="$dev" --ioengine=libaio --direct=1 \
		--output-format=terse "$@" 2>/dev/null
}

# terse fields: 7 read KiB/s, 8 read IOPS, 48 write KiB/s, 49 write IOPS
field() { awk -F';' -v f="$1" '{ print $f }'; }

warmup() { # <dev>: the hot set read twice, every block once per pass
	fio_run "$1" --rw=randread --bs=4k --iodepth=16 --offset=0 \
		--size="${HOT_MIB}M" --loops=2 >/dev/null
}

randread() { # <dev>: IOPS
	fio_run "$1" --rw=randread --bs=4k --iodepth=16 --offset=0 \
		--size="${HOT_MIB}M" --norandommap --randrepeat=0 \
		--time_based --runtime="$RUNTIME" | field 8
}

seqread() { # <dev>: MB/s (10^6 bytes)
	local kib off=$SEQ_OFF_MIB size=512
	# the raw fast device is smaller than the origin
	if [ $(($(blockdev --getsz "$1") / 2048)) -lt $((off + size)) ]; then
		off=0
		size=$(($(blockdev --getsz "$1") / 2048))
	fi
	kib=$(fio_run "$1" --rw=read --bs=1M --iodepth=4 --offset="${off}M" \
		--size="${size}M" --time_based --runtime="$RUNTIME" | field 7)
	echo $((kib * 1024 / 1000000))
}

randwrite() { # <dev>: IOPS
	fio_run "$1" --rw=randwrite --bs=4k --iodepth=16 --offset=0 \
		--size="${HOT_MIB}M" --norandommap --randrepeat=0 \
		--time_based --runtime="$RUNTIME" | field 49
}

# ------------------------------------------------------------ targets

# create_<target>: prints the device to measure; remove_<target>.
create_origin() { echo "$ORIGIN"; }
remove_origin() { :; }
create_fast() { echo "$FAST"; }
remove_fast() { :; }

create_dm-cache() {
	wipe "$META" && wipe "$FAST" || return 1
	# 32 KiB blocks (the smallest), writeback, smq with its defaults
	dmsetup create b_dmcache --table \
		"0 $OSZ cache $META $FAST $ORIGIN 64 1 writeback smq 0" || return 1
	wait_for_dev /dev/mapper/b_dmcache >/dev/null && echo /dev/mapper/b_dmcache
}
remove_dm-cache() { dmsetup remove b_dmcache; }

create_dm-writecache() {
	wipe "$FAST" || return 1
	# ssd mode, 4 KiB blocks, default watermarks
	dmsetup create b_wc --table "0 $OSZ writecache s $ORIGIN $FAST 4096 0" || return 1
	wait_for_dev /dev/mapper/b_wc >/dev/null && echo /dev/mapper/b_wc
}
remove_dm-writecache() { dmsetup remove b_wc; }

vmcache_create() { # <mode>
	modprobe -q dm-vmcache || return 1
	wipe "$FAST" || return 1
	dmsetup create b_vmc --table "0 $OSZ vmcache $FAST $ORIGIN 2 mode $1" || return 1
	wait_for_dev /dev/mapper/b_vmc >/dev/null && echo /dev/mapper/b_vmc
}
create_vmcache-wt() { vmcache_create writethrough; }
create_vmcache-wb() { vmcache_create writeback; }
remove_vmcache-wt() { vmcache_status; dmsetup remove b_vmc; }
remove_vmcache-wb() { vmcache_status; dmsetup remove b_vmc; }
vmcache_status() {
	say "  vmcache status: $(dmsetup status b_vmc | cut -d' ' -f4-)"
}

BCACHE_SET=
create_bcache() {
	command -v make-bcache >/dev/null || {
		echo "make-bcache not in the guest (bcache-tools)" >&2
		return 1
	}
	modprobe -q bcache || { echo "no bcache module" >&2; return 1; }
	wipe "$FAST" && wipe "$ORIGIN" || return 1
	# 128 KiB buckets: 2048 of them (bcache refuses fewer than 1024)
	make-bcache --bucket 128k --writeback -C "$FAST" -B "$ORIGIN" >/dev/null 2>&1 || {
		echo "make-bcache failed" >&2
		return 1
	}
	echo "$FAST" >/sys/fs/bcache/register 2>/dev/null
	echo "$ORIGIN" >/sys/fs/bcache/register 2>/dev/null
	wait_for_dev /dev/bcache0 >/dev/null || return 1
	local i
	for ((i = 0; i < 50; i++)); do
		[ "$(cat /sys/block/bcache0/bcache/state 2>/dev/null)" != "no cache" ] && break
		sleep 0.1
	done
	BCACHE_SET=$(basename "$(readlink -f /sys/block/bcache0/bcache/cache)")
	# no latency-based bypass: it misfires on an emulated machine
	echo 0 >"/sys/fs/bcache/$BCACHE_SET/congested_read_threshold_us" 2>/dev/null
	echo 0 >"/sys/fs/bcache/$BCACHE_SET/congested_write_threshold_us" 2>/dev/null
	say "  bcache: state $(cat /sys/block/bcache0/bcache/state), mode $(cat /sys/block/bcache0/bcache/cache_mode)"
	echo /dev/bcache0
}
remove_bcache() {
	local s=/sys/block/bcache0/bcache/stats_total
	say "  bcache: cache_hits $(cat $s/cache_hits 2>/dev/null) cache_misses $(cat $s/cache_misses 2>/dev/null)" \
		"bypassed $(cat $s/bypassed 2>/dev/null) dirty $(cat /sys/block/bcache0/bcache/dirty_data 2>/dev/null)"
	echo 1 >/sys/block/bcache0/bcache/stop 2>/dev/null
	[ -n "$BCACHE_SET" ] && echo 1 >"/sys/fs/bcache/$BCACHE_SET/unregister" 2>/dev/null
	sleep 1
}

run_target() { # <target>
	local t=$1 out dev rr sr rw note="" t0 err
	t0=$(now_ms)
	say "== $t"
	if ! out=$("create_$t" 2>"/tmp/bench-$t.err"); then
		err=$(tr '\n' ' ' <"/tmp/bench-$t.err")
		say "  skipped: ${err:-create failed}"
		echo "RESULT $t - - - skipped: ${err:-create failed}"
		return 0
	fi
	# the last line is the device, lines before it are progress
	dev=$(tail -n 1 <<<"$out")
	head -n -1 <<<"$out"
	case $t in
	origin | fast) note="raw device" ;;
	*)
		warmup "$dev"
		note="after warm-up"
		;;
	esac
	rr=$(randread "$dev")
	say "  randread  ${rr:-?} IOPS"
	sr=$(seqread "$dev")
	say "  seqread   ${sr:-?} MB/s"
	rw=$(randwrite "$dev")
	say "  randwrite ${rw:-?} IOPS"
	"remove_$t"
	say "  ($(( ($(now_ms) - t0) / 1000 )) s)"
	echo "RESULT $t ${rr:--} ${sr:--} ${rw:--} $note"
}

# ---------------------------------------------------- writeback (issue 5)

vmc_st() { dmsetup status b_vmc | tr ' ' '\n' | sed -n "s/^$1=//p"; }

# wb_case <name> <sort 0|1> <area MiB> <dirty MiB> <offset MiB>: dirty
# <dirty MiB> of distinct random 4 KiB blocks in the area with writeback
# held off, then "flush" and time the drain.
wb_case() {
	local name=$1 sort=$2 area=$3 dirty=$4 off=$5 t0 ms n done_
	modprobe -q dm-vmcache || return 1
	wipe "$FAST"
	dmsetup create b_vmc --table "0 $OSZ vmcache $FAST $ORIGIN 12 mode writeback sequential_cutoff 0 writeback_low 100 writeback_high 100 max_dirty_age 0 writeback_sort $sort" ||
		return 1
	wait_for_dev /dev/mapper/b_vmc >/dev/null
	# same seed every time: the same blocks for sort 1 and 0
	fio_run /dev/mapper/b_vmc --rw=randwrite --bs=4k --iodepth=16 \
		--offset="${off}M" --size="${area}M" --io_size="${dirty}M" --randseed=7 >/dev/null
	n=$(vmc_st blocks_dirty)
	local -a s0 s1
	read -r -a s0 </sys/block/slow/stat
	t0=$(now_ms)
	dmsetup message b_vmc 0 flush
	while [ "$(vmc_st blocks_dirty)" -ne 0 ] || [ "$(vmc_st flush)" != idle ]; do
		sleep 0.05
		if [ $(($(now_ms) - t0)) -gt 300000 ]; then
			say "  $name: not drained after 300 s"
			break
		fi
	done
	ms=$(($(now_ms) - t0))
	read -r -a s1 </sys/block/slow/stat
	done_=$(vmc_st writeback_done)
	dmsetup remove b_vmc
	local mbs
	mbs=$(awk -v b="$n" -v ms="$ms" 'BEGIN { printf "%.1f", b * 4096 / 1e6 / (ms / 1000) }')
	# origin write requests and how many bios were merged into them
	local reqs=$((s1[4] - s0[4])) merges=$((s1[5] - s0[5]))
	say "  $name: $n dirty blocks over $area MiB, sort $sort: $(awk -v ms="$ms" 'BEGIN { printf "%.2f", ms / 1000 }') s, $mbs MB/s ($done_ written back, $reqs origin write requests, $merges merges)"
	echo "WB $name $((n * 4096 >> 20)) $(awk -v ms="$ms" 'BEGIN { printf "%.2f", ms / 1000 }') $mbs sort=$sort, $n blocks over $area MiB, $reqs origin write requests ($merges merged)"
}

writeback_bench() {
	local kib
	say "== writeback throughput (dm-vmcache, issue 5)"
	kib=$(fio_run "$ORIGIN" --rw=write --bs=1M --iodepth=4 --offset=0 --size=256M \
		--time_based --runtime=$((RUNTIME / 2 + 1)) | field 48)
	say "  origin sequential write 1 MiB QD4: $((kib * 1024 / 1000000)) MB/s"
	echo "WB origin-seq-write - - $((kib * 1024 / 1000000)) fio 1 MiB sequential writes, QD 4"
	kib=$(fio_run "$ORIGIN" --rw=randwrite --bs=4k --iodepth=64 --offset=0 --size=1G \
		--norandommap --randrepeat=0 --time_based --runtime=$((RUNTIME / 2 + 1)) | field 48)
	say "  origin random write 4 KiB QD64: $((kib * 1024 / 1000000)) MB/s"
	echo "WB origin-rand-write - - $((kib * 1024 / 1000000)) fio 4 KiB random writes, QD 64"
	wb_case dense-sorted 1 "$WB_DENSE_MIB" $((WB_DENSE_MIB / 2)) 512
	wb_case dense-unsorted 0 "$WB_DENSE_MIB" $((WB_DENSE_MIB / 2)) 512
	wb_case sparse-sorted 1 "$ORIGIN_MIB" "$WB_SPARSE_MIB" 0
	wb_case sparse-unsorted 0 "$ORIGIN_MIB" "$WB_SPARSE_MIB" 0
}

# ---------------------------------------------------------------- main

start=$(now_ms)
setup || { say "device setup failed"; exit 1; }
echo "INFO kernel $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/ { print int($2 / 1024) }' /proc/meminfo) MiB"
echo "INFO origin: null_blk ${ORIGIN_MIB} MiB, memory-backed, ${ORIGIN_US} us per request (irqmode=2), queue depth $ORIGIN_QD, $ORIGIN_MBPS MiB/s cap, scheduler none"
echo "INFO fast: brd slice ${FAST_MIB} MiB; dm-cache metadata: brd slice ${META_MIB} MiB"
echo "INFO workloads: fio libaio O_DIRECT, ${RUNTIME} s each; hot set ${HOT_MIB} MiB (warm-up: read twice)"
modprobe -q dm-vmcache
echo "INFO dm-vmcache srcversion $(cat /sys/module/dm_vmcache/srcversion 2>/dev/null || echo '?')"

IFS=, read -r -a list <<<"$TARGETS"
# bcache rewrites the origin's first sectors: keep it last, after the
# writeback measurement
for t in "${list[@]}"; do
	[ "$t" = bcache ] && continue
	run_target "$t"
done
writeback_bench
for t in "${list[@]}"; do
	[ "$t" = bcache ] && run_target bcache
done
say "total $(( ($(now_ms) - start) / 1000 )) s"
