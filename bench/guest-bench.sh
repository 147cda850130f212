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
# origin's sequential and random write speed; and the cases of issue 10
# (see bench/README.md).  BENCH_SECTIONS (comma list) picks what runs:
#   rows       the table above (RESULT), one row per BENCH_TARGETS entry
#   fsync      4 KiB random writes, fsync after each, QD 1 (FSYNC), in the
#              same target loop as rows
#   wb         issue 5's writeback cases, plus a dirty set contiguous on
#              the origin but scattered on the cache (WB)
#   wbactive   vmcache-wb random writes with writeback held off, running
#              between the watermarks, and at full speed (WBACT)
#   sustained  random writes over twice the cache size, per second (SUS,
#              SUSSUM)
#   drain      time to write back a large dirty set, vmcache and peers
#              (DRAIN)
#   seqmix     1 MiB sequential reads over scattered cached blocks (SEQMIX)
#   reload     suspend/reload/resume of an unchanged ~1M-block cache
#              (RELOAD)
#   pairs      the issue 10 ratios measured in alternation, PAIR_ROUNDS
#              rounds of PAIR_SECS each: randwrite and randread on
#              dm-linear against vmcache-wb (both live, the linear on a
#              brd slice of its own), and randwrite on vmcache-wb with
#              writeback held off against running (PAIR)
#   crc        dm-vmcache writeback with data_crc 0 and 1: 4 KiB random
#              writes to new blocks, overwrites of dirty blocks, reads of
#              dirty (checked) and clean blocks (CRC)
#
# Output: "# " progress lines, and machine-readable lines for the host:
#   RESULT <target> <randread IOPS> <seqread MB/s> <randwrite IOPS> <note>
#   FSYNC <target> <IOPS> <fsyncs> <origin flushes> <origin data writes>
#   WB <case> <MiB> <seconds> <MB/s> <note>
#   WBACT <case> <IOPS> <writeback_done during the run> <dirty before> <dirty after> <note>
#   SUS <target> <second> <IOPS> <mean clat us> <dirty MiB>
#   SUSSUM <target> <mean IOPS> <min 1-s IOPS> <p99 clat us> <note>
#   DRAIN <target> <dirty MiB> <seconds> <MB/s> <origin write requests> <note>
#   SEQMIX <target> <MB/s> <origin reads> <MiB read> <note>
#   RELOAD <case> <blocks> <suspend ms> <reload ms> <resume ms> <cache reads at reload> <at resume> <cache KiB read> <note>
#   CRC <case> <IOPS with data_crc 0> <IOPS with data_crc 1> <note>
#   PAIR <case> <round> <IOPS of the reference> <IOPS of dm-vmcache> <note>
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
TARGETS=${BENCH_TARGETS:-origin,fast,linear,dm-cache,dm-writecache,vmcache-wt,vmcache-wb,bcache}
SECTIONS=${BENCH_SECTIONS:-rows,fsync,wb,wbactive,pairs,sustained,drain,seqmix,reload,crc}
PEERS=${BENCH_PEERS:-vmcache-wb,dm-writecache,dm-cache,bcache}	# sustained, drain, seqmix
FSYNC_TARGETS=${BENCH_FSYNC_TARGETS:-origin,linear,dm-cache,dm-writecache,vmcache-wb,bcache}
ORIGIN_WC=${BENCH_ORIGIN_WC:-1}		# origin has a volatile write cache: flushes reach it
ORIGIN_CACHE_MIB=${BENCH_ORIGIN_CACHE_MIB:-16}	# its size (null_blk cache_size)
WB_DENSE_MIB=${BENCH_WB_DENSE_MIB:-128}	# dirty half of it, 4 KiB blocks
WB_SPARSE_MIB=${BENCH_WB_SPARSE_MIB:-16}	# dirty blocks spread over the origin
WB_CONTIG_MIB=${BENCH_WB_CONTIG_MIB:-128}	# contiguous on the origin, random order
FSYNC_RUNTIME=${BENCH_FSYNC_RUNTIME:-$(( (RUNTIME + 1) / 2 ))}
WBA_PREFILL_MIB=${BENCH_WBA_PREFILL_MIB:-56}	# dirty before the run (+ the hot set)
SUS_RUNTIME=${BENCH_SUS_RUNTIME:-$((RUNTIME * 2))}
DRAIN_MIB=${BENCH_DRAIN_MIB:-128}	# dirty set of the drain case (4 KiB blocks)
DRAIN_TIMEOUT=${BENCH_DRAIN_TIMEOUT:-300}	# seconds a drain may take
SEQMIX_PCT=${BENCH_SEQMIX_PCT:-5}	# percent of the origin's blocks written
SEQMIX_WAIT=${BENCH_SEQMIX_WAIT:-5}	# seconds between those writes and the reads
RELOAD_BLOCKS=${BENCH_RELOAD_BLOCKS:-1048576}	# cache blocks of the reload case
RELOAD_FILL=${BENCH_RELOAD_FILL:-4096}	# blocks written before the reloads
CRC_MIB=${BENCH_CRC_MIB:-64}		# area of the crc section's cases
PAIR_ROUNDS=${BENCH_PAIR_ROUNDS:-5}	# alternations of the pairs section
PAIR_SECS=${BENCH_PAIR_SECS:-4}		# seconds per run there

FAST=/dev/mapper/bfast
META=/dev/mapper/bmeta
ORIGIN=/dev/slow
SEQ_OFF_MIB=256	# the sequential reads' area: cold, never written

say() { printf '# %s\n' "$*"; }
now_ms() { date +%s%3N; }
has() { [[ ",$SECTIONS," == *",$1,"* ]]; }
in_list() { [[ ",$2," == *",$1,"* ]]; } # <item> <comma list>
# a comma list in order, bcache last (it writes the origin's first sectors)
bcache_last() {
	local -a l
	IFS=, read -r -a l <<<"$1"
	printf '%s\n' "${l[@]}" | grep -vx bcache
	printf '%s\n' "${l[@]}" | grep -x bcache
}
# /sys/block/<name>/stat fields (0-based): 0 reads, 2 sectors read,
# 4 writes, 5 write merges, 6 sectors written, 15 flushes (iostats.rst:
# "flush requests completed successfully"; 6.1 also counts each empty
# flush bio in field 4: "data writes" below subtract them)
blkstat() { cat "/sys/block/$1/stat"; }
ms2s() { awk -v ms="$1" 'BEGIN { printf "%.2f", ms / 1000 }'; }

# ------------------------------------------------------------ devices

setup() {
	modprobe -q dm-mod
	# after the two slices: room for the pairs section's dm-linear
	modprobe -q brd rd_nr=1 rd_size=$(((FAST_MIB + META_MIB + HOT_MIB) * 1024)) max_part=0 || return 1
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
	# a volatile write cache, like a virtual disk's: REQ_PREFLUSH reaches
	# the origin (one request, ORIGIN_US) instead of being dropped by the
	# block layer, and stacked dm devices accept flushes (dm takes the
	# flag at table load). null_blk's cache_size (MiB) turns it on.
	[ "$ORIGIN_WC" = 1 ] && echo "$ORIGIN_CACHE_MIB" >"$d/cache_size"
	echo 1 >"$d/power"
	wait_for_dev /dev/ram0 && wait_for_dev "$ORIGIN" || return 1
	# every target's own ordering is what reaches the origin
	echo none >/sys/block/slow/queue/scheduler 2>/dev/null
	if [ "$ORIGIN_WC" = 1 ] && [ "$(cat /sys/block/slow/queue/write_cache)" != "write back" ]; then
		echo "write back" >/sys/block/slow/queue/write_cache
		say "origin write cache: $(cat /sys/block/slow/queue/write_cache)"
	fi
	dmsetup create bfast --table "0 $((FAST_MIB * 2048)) linear /dev/ram0 0" &&
	dmsetup create bmeta --table "0 $((META_MIB * 2048)) linear /dev/ram0 $((FAST_MIB * 2048))" ||
		return 1
	wait_for_dev "$FAST" && wait_for_dev "$META" || return 1
	OSZ=$(blockdev --getsz "$ORIGIN")
	# brd and a memory-backed null_blk allocate (and zero) a page at the
	# first write to it: every page once now, or the first target to
	# write an area pays for it (the sustained section's first target
	# spent 7 % of the guest's CPU in clear_page)
	dd if=/dev/zero of=/dev/ram0 bs=1M count=$((FAST_MIB + META_MIB + HOT_MIB)) \
		oflag=direct status=none &&
	fio_run "$ORIGIN" --rw=write --bs=1M --iodepth=4 >/dev/null
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

create_linear() { # dm-linear over the fast device: the ceiling of a dm target
	dmsetup create b_lin --table "0 $(blockdev --getsz "$FAST") linear $FAST 0" || return 1
	wait_for_dev /dev/mapper/b_lin >/dev/null && echo /dev/mapper/b_lin
}
remove_linear() { dmsetup remove b_lin; }

create_dm-cache() {
	wipe "$META" && wipe "$FAST" || return 1
	# 32 KiB blocks (the smallest), writeback, smq with its defaults
	dmsetup create b_dmcache --table \
		"0 $OSZ cache $META $FAST $ORIGIN 64 1 writeback smq 0" || return 1
	wait_for_dev /dev/mapper/b_dmcache >/dev/null && echo /dev/mapper/b_dmcache
}
remove_dm-cache() { dmsetup remove b_dmcache; }
dmcache_dirty() { dmsetup status b_dmcache | awk '{ print $14 }'; } # 32 KiB blocks

create_dm-writecache() {
	wipe "$FAST" || return 1
	# ssd mode, 4 KiB blocks, default watermarks
	dmsetup create b_wc --table "0 $OSZ writecache s $ORIGIN $FAST 4096 0" || return 1
	wait_for_dev /dev/mapper/b_wc >/dev/null && echo /dev/mapper/b_wc
}
remove_dm-writecache() { dmsetup remove b_wc; }
# status: <errors> <blocks> <free blocks> <blocks under writeback> ...
wc_dirty() { dmsetup status b_wc | awk '{ print $5 - $6 }'; } # 4 KiB blocks

vmcache_create() { # <mode> [<option> <value>...]
	local mode=$1
	shift
	modprobe -q dm-vmcache || return 1
	wipe "$FAST" || return 1
	dmsetup create b_vmc --table "0 $OSZ vmcache $FAST $ORIGIN $(($# + 2)) mode $mode $*" || return 1
	wait_for_dev /dev/mapper/b_vmc >/dev/null && echo /dev/mapper/b_vmc
}
create_vmcache-wt() { vmcache_create writethrough; }
create_vmcache-wb() { vmcache_create writeback; }
# dm-writecache's default watermarks: no cleaning below 45 % dirty
create_vmcache-wb45() { vmcache_create writeback writeback_low 45 writeback_high 50; }
remove_vmcache-wt() { vmcache_status; dmsetup remove b_vmc; }
remove_vmcache-wb() { vmcache_status; dmsetup remove b_vmc; }
remove_vmcache-wb45() { vmcache_status; dmsetup remove b_vmc; }
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
	local s=/sys/block/bcache0/bcache/stats_total set=$BCACHE_SET i
	say "  bcache: cache_hits $(cat $s/cache_hits 2>/dev/null) cache_misses $(cat $s/cache_misses 2>/dev/null)" \
		"bypassed $(cat $s/bypassed 2>/dev/null) dirty $(cat /sys/block/bcache0/bcache/dirty_data 2>/dev/null)"
	# create_bcache may have run in a command substitution: find the set
	[ -n "$set" ] || set=$(basename "$(readlink -f /sys/block/bcache0/bcache/cache)")
	echo 1 >/sys/block/bcache0/bcache/stop 2>/dev/null
	[ -n "$set" ] && [ -e "/sys/fs/bcache/$set/stop" ] && echo 1 >"/sys/fs/bcache/$set/stop"
	# both devices are released asynchronously: wait for the set to go
	for ((i = 0; i < 200; i++)); do
		[ ! -e /sys/block/bcache0 ] && ! bcache_sets >/dev/null && break
		[ $((i % 50)) -eq 49 ] && for s in $(bcache_sets); do echo 1 >"/sys/fs/bcache/$s/stop" 2>/dev/null; done
		sleep 0.1
	done
	{ [ -e /sys/block/bcache0 ] || bcache_sets >/dev/null; } && say "  bcache still registered after stop"
	BCACHE_SET=
	# nothing left for a later registration to find
	wipe "$ORIGIN" 2>/dev/null
	wipe "$FAST" 2>/dev/null
}
bcache_sets() { # the registered cache sets' uuids; 1 when none
	local d r=1
	for d in /sys/fs/bcache/*-*-*-*-*; do
		[ -d "$d" ] && { basename "$d"; r=0; }
	done
	return $r
}
# dirty data in MiB (dirty_data is human-readable: 0.0k, 12.5M, 1.1G)
bcache_dirty_mib() {
	awk '{ v = $1 + 0; u = substr($1, length($1)); if (u == "k") v /= 1024; else if (u == "G") v *= 1024; else if (u != "M") v /= 1048576; printf "%.1f", v }' \
		/sys/block/bcache0/bcache/dirty_data
}

# dirty_mib <target>: its dirty data now, MiB ("-" when it has no such notion)
dirty_mib() {
	case $1 in
	vmcache-wb | vmcache-wt | vmcache-wb45) awk -v n="$(vmc_st blocks_dirty)" 'BEGIN { printf "%.1f", n * 4096 / 1048576 }' ;;
	dm-writecache) awk -v n="$(wc_dirty)" 'BEGIN { printf "%.1f", n * 4096 / 1048576 }' ;;
	dm-cache) awk -v n="$(dmcache_dirty)" 'BEGIN { printf "%.1f", n * 32768 / 1048576 }' ;;
	bcache) bcache_dirty_mib ;;
	*) echo - ;;
	esac
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
	if has rows; then
		case $t in
		origin | fast | linear) note="raw device" ;;
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
	fi
	if has fsync && in_list "$t" "$FSYNC_TARGETS"; then
		fsync_case "$t" "$dev"
	fi
	"remove_$t"
	say "  ($(( ($(now_ms) - t0) / 1000 )) s)"
	if has rows; then
		echo "RESULT $t ${rr:--} ${sr:--} ${rw:--} $note"
	fi
}

# fsync_case <target> <dev>: 4 KiB random writes over the hot set, QD 1,
# fsync after each; counts the flushes and writes completed by the origin
fsync_case() {
	local t=$1 dev=$2 out iops n
	local -a s0 s1
	read -r -a s0 < <(blkstat slow)
	out=$(fio_run "$dev" --rw=randwrite --bs=4k --iodepth=1 --fsync=1 --offset=0 \
		--size="${HOT_MIB}M" --norandommap --randrepeat=0 \
		--time_based --runtime="$FSYNC_RUNTIME")
	read -r -a s1 < <(blkstat slow)
	iops=$(field 49 <<<"$out")
	n=$(($(field 47 <<<"$out") / 4))
	local fl=$((s1[15] - s0[15])) wr=$((s1[4] - s0[4] - s1[15] + s0[15]))
	say "  fsync     ${iops:-?} IOPS, $n writes+fsyncs, origin: $fl flushes, $wr writes"
	echo "FSYNC $t ${iops:--} $n $fl $wr"
}

# ---------------------------------------------------- writeback (issue 5)

vmc_st() { dmsetup status b_vmc | tr ' ' '\n' | sed -n "s/^$1=//p"; }

# vmc_make <option words...>: b_vmc over a wiped fast device and the
# origin; BENCH_VMC_OPTS (words joined by commas) is appended, to compare
# tunables (e.g. writeback_max_inflight,256)
vmc_make() {
	local -a extra
	IFS=, read -r -a extra <<<"${BENCH_VMC_OPTS:-}"
	set -- "$@" "${extra[@]}"
	modprobe -q dm-vmcache || return 1
	wipe "$FAST" || return 1
	dmsetup create b_vmc --table "0 $OSZ vmcache $FAST $ORIGIN $# $*" || return 1
	wait_for_dev /dev/mapper/b_vmc >/dev/null
}
WB_HELD=(writeback_low 100 writeback_high 100 max_dirty_age 0)

# wait_until <seconds> <command...>: poll every 50 ms; 1 on timeout
wait_until() {
	local lim=$(($1 * 1000)) t0
	shift
	t0=$(now_ms)
	until "$@"; do
		[ $(($(now_ms) - t0)) -gt "$lim" ] && return 1
		sleep 0.05
	done
}

# drain_wait <seconds> <drained check...>: wait for a drain; DRAIN_END_MS
# is the time of the origin's last I/O before the check saw it drained.
# The origin's stat line is read every 20 ms with bash builtins; the check
# (a dmsetup status: a fork and exec, 30-80 ms of a TCG guest's CPU) runs
# when the origin has been still for 100 ms, and every second.  Checking
# every 50 ms took most of a CPU from the drain it timed (a 128 MiB
# contiguous drain: 2.4 s against 1.6 s).  1 on timeout.
exec {NAP_FD}<> <(:)	# read -t on it: a sleep without a fork
drain_wait() {
	local lim=$(($1 * 1000000)) now last prev="" cur still=0 chk
	shift
	now=${EPOCHREALTIME/./} last=$now chk=$now
	local t0=$now
	while :; do
		read -r -t 0.02 -u "$NAP_FD" _
		read -r cur </sys/block/slow/stat
		now=${EPOCHREALTIME/./}
		if [ "$cur" != "$prev" ]; then
			prev=$cur last=$now still=0
		else
			still=$((still + 1))
		fi
		if [ "$still" -eq 5 ] || [ $((now - chk)) -ge 1000000 ]; then
			chk=$now
			if "$@"; then
				DRAIN_END_MS=$((last / 1000))
				return 0
			fi
		fi
		[ $((now - t0)) -gt "$lim" ] && { DRAIN_END_MS=$((now / 1000)); return 1; }
	done
}
vmc_drained() {
	local s
	s=$(dmsetup status b_vmc)
	[[ $s == *" blocks_dirty=0 "* && $s == *" flush=idle "* ]]
}
wc_drained() { [ "$(wc_dirty)" -eq 0 ]; }
dmcache_drained() { [ "$(dmcache_dirty)" -eq 0 ]; }
bcache_clean() { local s; read -r s </sys/block/bcache0/bcache/state; [ "$s" = clean ]; }

# wb_case <name> <sort 0|1> <area MiB> <dirty MiB> <offset MiB>: dirty
# <dirty MiB> of distinct random 4 KiB blocks in the area with writeback
# held off, then "flush" and time the drain.  <dirty> = <area>: every block
# of the area, in random order (contiguous on the origin, scattered on
# the cache).
wb_case() {
	local name=$1 sort=$2 area=$3 dirty=$4 off=$5 t0 ms n done_
	vmc_make mode writeback sequential_cutoff 0 "${WB_HELD[@]}" writeback_sort "$sort" || return 1
	# same seed every time: the same blocks for sort 1 and 0
	fio_run /dev/mapper/b_vmc --rw=randwrite --bs=4k --iodepth=16 \
		--offset="${off}M" --size="${area}M" --io_size="${dirty}M" --randseed=7 >/dev/null
	n=$(vmc_st blocks_dirty)
	local -a s0 s1
	read -r -a s0 </sys/block/slow/stat
	t0=$(now_ms)
	dmsetup message b_vmc 0 flush
	drain_wait 300 vmc_drained || say "  $name: not drained after 300 s"
	ms=$((DRAIN_END_MS - t0))
	read -r -a s1 </sys/block/slow/stat
	done_=$(vmc_st writeback_done)
	dmsetup remove b_vmc
	local mbs
	mbs=$(awk -v b="$n" -v ms="$ms" 'BEGIN { printf "%.1f", b * 4096 / 1e6 / (ms / 1000) }')
	# origin write requests and how many bios were merged into them
	# (6.1 counts an empty flush bio as a write too: not a data write)
	local fl=$((s1[15] - s0[15])) merges=$((s1[5] - s0[5]))
	local reqs=$((s1[4] - s0[4] - fl))
	say "  $name: $n dirty blocks over $area MiB, sort $sort: $(ms2s "$ms") s, $mbs MB/s ($done_ written back, $reqs origin write requests, $merges merges, $fl flushes)"
	echo "WB $name $((n * 4096 >> 20)) $(ms2s "$ms") $mbs sort=$sort, $n blocks over $area MiB, $reqs origin write requests ($merges merged), $fl origin flushes"
}

ORIGIN_REFS=0
origin_refs() { # the origin's own write speeds, once
	local kib
	[ "$ORIGIN_REFS" = 1 ] && return 0
	ORIGIN_REFS=1
	kib=$(fio_run "$ORIGIN" --rw=write --bs=1M --iodepth=4 --offset=0 --size=256M \
		--time_based --runtime=$((RUNTIME / 2 + 1)) | field 48)
	say "  origin sequential write 1 MiB QD4: $((kib * 1024 / 1000000)) MB/s"
	echo "WB origin-seq-write - - $((kib * 1024 / 1000000)) fio 1 MiB sequential writes, QD 4"
	# QD 256: writeback_max_inflight's default (blocks in flight)
	kib=$(fio_run "$ORIGIN" --rw=randwrite --bs=4k --iodepth=256 --offset=0 --size=1G \
		--norandommap --randrepeat=0 --time_based --runtime=$((RUNTIME / 2 + 1)) | field 48)
	say "  origin random write 4 KiB QD256: $((kib * 1024 / 1000000)) MB/s"
	echo "WB origin-rand-write - - $((kib * 1024 / 1000000)) fio 4 KiB random writes, QD 256 (= writeback_max_inflight)"
}

writeback_bench() {
	say "== writeback throughput (dm-vmcache, issue 5)"
	origin_refs
	wb_case dense-sorted 1 "$WB_DENSE_MIB" $((WB_DENSE_MIB / 2)) 512
	wb_case dense-unsorted 0 "$WB_DENSE_MIB" $((WB_DENSE_MIB / 2)) 512
	wb_case sparse-sorted 1 "$ORIGIN_MIB" "$WB_SPARSE_MIB" 0
	wb_case sparse-unsorted 0 "$ORIGIN_MIB" "$WB_SPARSE_MIB" 0
	wb_case contig-sorted 1 "$WB_CONTIG_MIB" "$WB_CONTIG_MIB" 768
	wb_case contig-unsorted 0 "$WB_CONTIG_MIB" "$WB_CONTIG_MIB" 768
}

# ------------------------------- random writes while writeback runs (issue 10)

# wbactive_case <name> <option words...>: a dirty set of WBA_PREFILL_MIB
# away from the hot set plus the hot set itself (written once), then the
# randwrite workload over the hot set; writeback_done counted over the run
wbactive_case() {
	local name=$1 iops d0 d1 w0 w1 tot
	shift
	vmc_make mode writeback "$@" || return 1
	local dev=/dev/mapper/b_vmc
	fio_run $dev --rw=randwrite --bs=4k --iodepth=16 --offset=512M --size=256M \
		--io_size="${WBA_PREFILL_MIB}M" --randseed=3 >/dev/null
	fio_run $dev --rw=randwrite --bs=4k --iodepth=16 --offset=0 --size="${HOT_MIB}M" \
		--randseed=5 >/dev/null
	tot=$(vmc_st blocks_total)
	d0=$(vmc_st blocks_dirty)
	w0=$(vmc_st writeback_done)
	iops=$(randwrite $dev)
	d1=$(vmc_st blocks_dirty)
	w1=$(vmc_st writeback_done)
	vmcache_status
	dmsetup remove b_vmc
	local p0 p1
	p0=$(awk -v a="$d0" -v t="$tot" 'BEGIN { printf "%.0f", 100 * a / t }')
	p1=$(awk -v a="$d1" -v t="$tot" 'BEGIN { printf "%.0f", 100 * a / t }')
	say "  $name: ${iops:-?} IOPS, writeback_done +$((w1 - w0)), dirty $d0 ($p0%) -> $d1 ($p1%)"
	echo "WBACT $name ${iops:--} $((w1 - w0)) $d0 $d1 dirty ${p0}% -> ${p1}%; options: $*"
}

wbactive_bench() {
	say "== randwrite with writeback held off / running (dm-vmcache, issue 10)"
	wbactive_case held "${WB_HELD[@]}"
	# the defaults (low 10, high 50): the dirty level (about 35%) is
	# between the watermarks, writeback runs at a proportional rate
	wbactive_case active writeback_low 10 writeback_high 50
	# above writeback_high: full speed
	wbactive_case full writeback_low 10 writeback_high 20
}

# ------------------------------------------ sustained random writes (issue 10)

SUS_LOG=/tmp/sus
sus_target() { # <target>
	local t=$1 out dev spid iops p99 min dirty
	say "== sustained: $t"
	if ! out=$("create_$t" 2>"/tmp/bench-$t.err"); then
		say "  skipped: $(tr '\n' ' ' <"/tmp/bench-$t.err")"
		echo "SUSSUM $t - - - skipped: $(tr '\n' ' ' <"/tmp/bench-$t.err")"
		return 0
	fi
	dev=$(tail -n 1 <<<"$out")
	rm -f "$SUS_LOG"_*.log /tmp/sus-dirty
	# dirty data once a second, next to fio's per-second log
	local st0
	st0=$(now_ms)
	(
		i=0
		while :; do
			i=$((i + 1))
			w=$((st0 + i * 1000 - $(now_ms)))
			[ "$w" -gt 0 ] && sleep "$(ms2s "$w")"
			echo "$i $(dirty_mib "$t")"
		done
	) >/tmp/sus-dirty &
	spid=$!
	# SCHED_IDLE (its children too): the processes it starts every second
	# must not preempt fio or the target's workers (with the sampler at
	# normal priority, dm-vmcache's p99 was 5.0-5.1 ms against 2.7-3.1 ms
	# without it, in one boot)
	command -v chrt >/dev/null && chrt -i -p 0 "$spid" >/dev/null
	out=$(fio_run "$dev" --rw=randwrite --bs=4k --iodepth=16 --offset=0 \
		--size=$((2 * FAST_MIB))M --norandommap --randrepeat=0 \
		--time_based --runtime="$SUS_RUNTIME" --write_iops_log="$SUS_LOG" \
		--write_lat_log="$SUS_LOG" --log_avg_msec=1000)
	kill "$spid" 2>/dev/null
	wait "$spid" 2>/dev/null
	iops=$(field 49 <<<"$out")
	p99=$(awk -F';' '{ for (i = 59; i <= 78; i++) if ($i ~ /^99.000000%=/) { sub(/.*=/, "", $i); print $i } }' <<<"$out")
	# per second: IOPS, mean completion latency (the log is in ns), dirty
	awk -F', *' -v t="$t" -v lim="$SUS_RUNTIME" '
		FILENAME ~ /dirty/ { split($0, a, " "); d[a[1]] = a[2]; next }
		FILENAME ~ /clat/ { lat[int(($1 + 500) / 1000)] = $2 / 1000; next }
		{ s = int(($1 + 500) / 1000); if (s >= 1 && s <= lim) { io[s] = $2; if (s > n) n = s } }
		END {
			# a second without an entry: fio did not run then (the guest
			# stalled); the next entry averages over the whole gap
			for (s = 1; s <= n; s++)
				printf "SUS %s %d %s %s %s\n", t, s, (s in io) ? sprintf("%d", io[s]) : "-",
					(s in lat) ? sprintf("%.0f", lat[s]) : "-", (s in d) ? d[s] : "-"
		}
	' /tmp/sus-dirty "$SUS_LOG"_clat.1.log "$SUS_LOG"_iops.1.log >/tmp/sus.lines
	cat /tmp/sus.lines
	min=$(awk '$4 != "-" && (m == "" || $4 < m) { m = $4 } END { print (m == "" ? "-" : m) }' /tmp/sus.lines)
	dirty=$(dirty_mib "$t")
	say "  $t: mean ${iops:-?} IOPS, min 1-s $min IOPS, p99 ${p99:-?} us, dirty at the end $dirty MiB"
	"remove_$t"
	echo "SUSSUM $t ${iops:--} ${min:--} ${p99:--} $((2 * FAST_MIB)) MiB working set, ${SUS_RUNTIME} s, dirty at the end $dirty MiB"
}

sustained_bench() {
	local t
	say "== sustained random writes over twice the cache (issue 10)"
	for t in $(bcache_last "$PEERS"); do sus_target "$t"; done
	# the same cache cleaning as late as dm-writecache does: what the
	# early cleaning of the defaults costs while the cache fills
	in_list vmcache-wb "$PEERS" && sus_target vmcache-wb45
}

# ------------------------------------------------------ drain (issue 10)

# drain_target <target>: DRAIN_MIB of distinct random 4 KiB blocks over
# twice that area, written with the target's writeback held off where it
# has a knob, then a full drain, timed
drain_target() {
	local t=$1 dev dirty t0 ms note="" passes=1 ok=1
	say "== drain: $t"
	case $t in
	vmcache-wb)
		vmc_make mode writeback sequential_cutoff 0 "${WB_HELD[@]}" || return 1
		dev=/dev/mapper/b_vmc note="flush message"
		;;
	dm-writecache)
		wipe "$FAST"
		dmsetup create b_wc --table "0 $OSZ writecache s $ORIGIN $FAST 4096 4 high_watermark 100 low_watermark 99" ||
			return 1
		wait_for_dev /dev/mapper/b_wc >/dev/null
		dev=/dev/mapper/b_wc note="flush message (watermarks 100/99 while filling)"
		;;
	dm-cache)
		dev=$(create_dm-cache) || return 1
		# writes to uncached blocks go around the cache: three passes
		# over the same blocks so that smq promotes them
		passes=3 note="reload with the cleaner policy (3 write passes to promote)"
		;;
	bcache)
		dev=$(create_bcache | tail -n 1) || return 1
		[ -b "$dev" ] || return 1
		echo 0 >/sys/block/bcache0/bcache/writeback_running
		note="writeback_percent 0, writeback_delay 0, writeback_rate_minimum 1000000 sectors/s, writeback_running 1"
		;;
	esac
	fio_run "$dev" --rw=randwrite --bs=4k --iodepth=16 --offset=0 --size=$((2 * DRAIN_MIB))M \
		--io_size="${DRAIN_MIB}M" --randseed=7 --loops="$passes" >/dev/null
	sleep 1
	dirty=$(dirty_mib "$t")
	local -a s0 s1
	read -r -a s0 < <(blkstat slow)
	t0=$(now_ms)
	case $t in
	vmcache-wb)
		dmsetup message b_vmc 0 flush
		drain_wait "$DRAIN_TIMEOUT" vmc_drained || ok=0
		;;
	dm-writecache)
		dmsetup message b_wc 0 flush
		drain_wait "$DRAIN_TIMEOUT" wc_drained || ok=0
		;;
	dm-cache)
		dmsetup suspend b_dmcache &&
			dmsetup reload b_dmcache --table "0 $OSZ cache $META $FAST $ORIGIN 64 1 writeback cleaner 0" &&
			dmsetup resume b_dmcache || ok=0
		drain_wait "$DRAIN_TIMEOUT" dmcache_drained || ok=0
		;;
	bcache)
		local b=/sys/block/bcache0/bcache
		echo 0 >$b/writeback_percent
		echo 0 >$b/writeback_delay
		echo 1000000 >$b/writeback_rate_minimum 2>/dev/null
		echo 1 >$b/writeback_running
		drain_wait "$DRAIN_TIMEOUT" bcache_clean || ok=0
		;;
	esac
	ms=$((DRAIN_END_MS - t0))
	read -r -a s1 < <(blkstat slow)
	[ "$ok" = 1 ] || note="NOT DRAINED after $DRAIN_TIMEOUT s ($(dirty_mib "$t") MiB left); $note"
	"remove_$t"
	local mbs fl=$((s1[15] - s0[15])) wmib=$(((s1[6] - s0[6]) / 2048))
	local reqs=$((s1[4] - s0[4] - fl))
	mbs=$(awk -v m="$dirty" -v ms="$ms" 'BEGIN { printf "%.1f", m * 1048576 / 1e6 / (ms / 1000) }')
	say "  $t: $dirty MiB dirty drained in $(ms2s "$ms") s, $mbs MB/s, $reqs origin write requests ($wmib MiB), $fl flushes"
	echo "DRAIN $t $dirty $(ms2s "$ms") $mbs $reqs $wmib MiB written to the origin, $fl flushes; $note"
}

drain_bench() {
	local t
	say "== drain of a large dirty set (issue 10)"
	origin_refs
	for t in $(bcache_last "$PEERS"); do
		drain_target "$t" || echo "DRAIN $t - - - - setup failed"
	done
}

# ---------------------------- sequential reads over a mixed cache (issue 10)

seqmix_target() { # <target>
	local t=$1 out dev mib dirty kib rkib
	say "== seqmix: $t"
	if ! out=$("create_$t" 2>"/tmp/bench-$t.err"); then
		echo "SEQMIX $t - - - skipped: $(tr '\n' ' ' <"/tmp/bench-$t.err")"
		return 0
	fi
	dev=$(tail -n 1 <<<"$out")
	mib=$(($(blockdev --getsz "$dev") / 2048))
	# SEQMIX_PCT% of the blocks of the whole disk, 4 KiB random writes
	fio_run "$dev" --rw=randwrite --bs=4k --iodepth=16 --offset=0 --size="${mib}M" \
		--io_size=$((mib * SEQMIX_PCT / 100))M --randseed=11 >/dev/null
	sleep "$SEQMIX_WAIT"
	dirty=$(dirty_mib "$t")
	local -a s0 s1
	read -r -a s0 < <(blkstat slow)
	out=$(fio_run "$dev" --rw=read --bs=1M --iodepth=4 --offset=0 --size="${mib}M" \
		--time_based --runtime="$RUNTIME")
	read -r -a s1 < <(blkstat slow)
	kib=$(field 7 <<<"$out")
	rkib=$(field 6 <<<"$out")
	local reads=$((s1[0] - s0[0]))
	say "  $t: $((kib * 1024 / 1000000)) MB/s, $reads origin reads for $((rkib / 1024)) MiB read (dirty at start $dirty MiB)"
	"remove_$t"
	echo "SEQMIX $t $((kib * 1024 / 1000000)) $reads $((rkib / 1024)) ${SEQMIX_PCT}% of the blocks written ${SEQMIX_WAIT} s before; dirty at start $dirty MiB"
}

seqmix_bench() {
	local t
	say "== 1 MiB sequential reads over scattered clean and dirty blocks (issue 10)"
	for t in origin $(bcache_last "$PEERS"); do seqmix_target "$t"; done
}

# ----------------------------------------- reload of a big cache (issue 10)

nullb_make() { # <name> <MiB>: fast, memory-backed (only written pages stored)
	local d=/sys/kernel/config/nullb/$1
	mkdir "$d" || return 1
	echo "$2" >"$d/size"
	echo 1 >"$d/memory_backed"
	echo 4096 >"$d/blocksize"
	echo 0 >"$d/irqmode"
	echo 1 >"$d/power"
	wait_for_dev "/dev/$1" >/dev/null
}
nullb_remove() {
	echo 0 >"/sys/kernel/config/nullb/$1/power" 2>/dev/null
	rmdir "/sys/kernel/config/nullb/$1"
}

reload_bench() {
	local cmib omib t0 t1 t2 t3 tbl blocks rep log
	say "== reload of an unchanged ${RELOAD_BLOCKS}-block cache (issue 10)"
	# data area plus two 8-byte-per-block mapping copies, and some slack
	cmib=$((RELOAD_BLOCKS * 4096 / 1048576 + RELOAD_BLOCKS * 16 / 1048576 + 2))
	omib=$((RELOAD_BLOCKS * 4096 / 1048576))
	nullb_make bigc "$cmib" && nullb_make bigo "$omib" || {
		echo "RELOAD create - - - - - - - null_blk setup failed"
		return 0
	}
	local -a s0 s1
	read -r -a s0 < <(blkstat bigc)
	t0=$(now_ms)
	dmsetup create b_rl --table "0 $(blockdev --getsz /dev/bigo) vmcache /dev/bigc /dev/bigo 2 mode writeback" || {
		echo "RELOAD create - - - - - - - dmsetup create failed"
		nullb_remove bigc
		nullb_remove bigo
		return 0
	}
	t1=$(now_ms)
	read -r -a s1 < <(blkstat bigc)
	blocks=$(dmsetup status b_rl | tr ' ' '\n' | sed -n 's/^blocks_total=//p')
	say "  created (formatted) in $((t1 - t0)) ms: $blocks blocks, cache writes $((s1[4] - s0[4])) ($(((s1[6] - s0[6]) / 2)) KiB)"
	echo "RELOAD create $blocks - $((t1 - t0)) - $((s1[0] - s0[0])) - $(((s1[2] - s0[2]) / 2)) format and resume: $((s1[4] - s0[4])) cache writes, $(((s1[6] - s0[6]) / 2)) KiB"
	fio_run /dev/mapper/b_rl --rw=randwrite --bs=4k --iodepth=16 --offset=0 \
		--size="${omib}M" --io_size=$((RELOAD_FILL * 4))k --randseed=13 >/dev/null
	dmsetup message b_rl 0 commit
	say "  filled: $(dmsetup status b_rl | tr ' ' '\n' | grep -E '^blocks_(used|dirty)=' | tr '\n' ' ')"
	tbl=$(dmsetup table b_rl)
	for rep in 1 2; do
		sleep 1
		echo "bench-reload-$rep" >/dev/kmsg
		local -a sa sb
		read -r -a s0 < <(blkstat bigc)
		t0=$(now_ms)
		dmsetup suspend b_rl
		t1=$(now_ms)
		read -r -a sa < <(blkstat bigc)
		dmsetup reload b_rl --table "$tbl"
		t2=$(now_ms)
		read -r -a sb < <(blkstat bigc)
		dmsetup resume b_rl
		t3=$(now_ms)
		read -r -a s1 < <(blkstat bigc)
		log=$(dmesg | sed -n "/bench-reload-$rep/,\$p" | grep -i vmcache | sed 's/^\[[^]]*\] *//' | tr '\n' ';')
		local rr=$((sb[0] - sa[0])) rs=$((s1[0] - sb[0])) kib=$(((s1[2] - s0[2]) / 2))
		say "  reload $rep: suspend $((t1 - t0)) ms, reload $((t2 - t1)) ms, resume $((t3 - t2)) ms; cache reads: $rr at reload, $rs at resume ($kib KiB), writes $((s1[4] - s0[4])); log: ${log:-none}"
		echo "RELOAD reload$rep $blocks $((t1 - t0)) $((t2 - t1)) $((t3 - t2)) $rr $rs $kib cache writes $((s1[4] - s0[4])) ($(((s1[6] - s0[6]) / 2)) KiB); log: ${log:-none}"
	done
	dmsetup remove b_rl
	nullb_remove bigc
	nullb_remove bigo
}

# ---------------------------------------------------------------- main

start=$(now_ms)
setup || { say "device setup failed"; exit 1; }
# ---------------------------------------- ratios in alternation (issue 10)

# One 10 s run per target in the rows section leaves each ratio at the
# mercy of the host (two runs of the same target in one TCG boot differ
# by up to 15 %).  Here the two sides run one after the other, short runs,
# several rounds: drift of the host weighs on both alike, and the median
# of the per-round ratios is the figure.

# pair_io <dev> <randwrite|randread>: IOPS of PAIR_SECS over the hot set
pair_io() {
	local f=49
	[ "$2" = randread ] && f=8
	fio_run "$1" --rw="$2" --bs=4k --iodepth=16 --offset=0 --size="${HOT_MIB}M" \
		--norandommap --randrepeat=0 --time_based --runtime="$PAIR_SECS" | field "$f"
}

pairs_bench() {
	local i lin=/dev/mapper/b_ceil dev=/dev/mapper/b_vmc a b
	say "== ratios in alternation: dm-linear / vmcache-wb, held / active writeback (issue 10)"
	# two dm-linear layers, as the rows' linear (over bfast over ram0)
	# and dm-vmcache (over bfast) have
	dmsetup create b_ceil0 --table "0 $((HOT_MIB * 2048)) linear /dev/ram0 $(((FAST_MIB + META_MIB) * 2048))" &&
	wait_for_dev /dev/mapper/b_ceil0 >/dev/null &&
	dmsetup create b_ceil --table "0 $((HOT_MIB * 2048)) linear /dev/mapper/b_ceil0 0" || return 1
	wait_for_dev $lin >/dev/null || return 1
	# brd allocates a page at its first write: not inside a timed run
	fio_run $lin --rw=write --bs=1M --iodepth=4 --offset=0 --size="${HOT_MIB}M" >/dev/null
	# the rows section's vmcache-wb: defaults, hot set read twice
	vmc_make mode writeback || return 1
	warmup $dev
	for i in $(seq "$PAIR_ROUNDS"); do
		a=$(pair_io $lin randwrite)
		b=$(pair_io $dev randwrite)
		say "  randwrite round $i: linear ${a:-?}, vmcache-wb ${b:-?} IOPS"
		echo "PAIR randwrite $i ${a:--} ${b:--} dm-linear / vmcache-wb (defaults), 4 KiB QD 16 over the hot set"
		a=$(pair_io $lin randread)
		b=$(pair_io $dev randread)
		say "  randread round $i: linear ${a:-?}, vmcache-wb ${b:-?} IOPS"
		echo "PAIR randread $i ${a:--} ${b:--} dm-linear / vmcache-wb (defaults), 4 KiB QD 16 over the hot set"
	done
	vmcache_status
	dmsetup remove b_vmc
	dmsetup remove b_ceil
	dmsetup remove b_ceil0
	# the wbactive section's dirty set, written again before each run:
	# held (writeback_low 100) against the defaults (low 10, high 50)
	vmc_make mode writeback "${WB_HELD[@]}" || return 1
	fio_run $dev --rw=randwrite --bs=4k --iodepth=16 --offset=0 --size="${HOT_MIB}M" \
		--randseed=5 >/dev/null
	local d0 w0 w1 side iops
	for i in $(seq "$PAIR_ROUNDS"); do
		for side in held active; do
			dmsetup message b_vmc 0 set writeback_high 100
			dmsetup message b_vmc 0 set writeback_low 100
			dmsetup message b_vmc 0 set max_dirty_age 0
			fio_run $dev --rw=randwrite --bs=4k --iodepth=16 --offset=512M --size=256M \
				--io_size="${WBA_PREFILL_MIB}M" --randseed=3 >/dev/null
			# as in wbactive: the dirty set is not among the blocks
			# written in the last two seconds, which writeback leaves
			sleep 3
			if [ $side = active ]; then
				dmsetup message b_vmc 0 set writeback_low 10
				dmsetup message b_vmc 0 set writeback_high 50
				dmsetup message b_vmc 0 set max_dirty_age 30
			fi
			d0=$(vmc_st blocks_dirty)
			w0=$(vmc_st writeback_done)
			iops=$(pair_io $dev randwrite)
			if [ $side = held ]; then a=$iops; else b=$iops; fi
			w1=$(vmc_st writeback_done)
			say "  $side round $i: ${iops:-?} IOPS, dirty $d0 before, $((w1 - w0)) written back"
		done
		echo "PAIR wbactive $i ${a:--} ${b:--} vmcache-wb writeback held / running (low 10, high 50): dirty $d0 blocks, $((w1 - w0)) written back"
	done
	vmcache_status
	dmsetup remove b_vmc
}

# ------------------------------------------------- data checksums (issue 12)

# crc_run <0|1>: "<new> <overwrite> <read dirty> <read clean>" IOPS on a
# fresh writeback cache (writeback held off) with data_crc 0 or 1
crc_run() {
	local dev=/dev/mapper/b_vmc new over rd rc
	vmc_make mode writeback "${WB_HELD[@]}" data_crc "$1" || return 1
	# every block of the area once: new blocks
	new=$(fio_run $dev --rw=randwrite --bs=4k --iodepth=16 --offset=0 \
		--size="${CRC_MIB}M" --randseed=7 | field 49)
	over=$(fio_run $dev --rw=randwrite --bs=4k --iodepth=16 --offset=0 \
		--size="${CRC_MIB}M" --norandommap --randrepeat=0 \
		--time_based --runtime="$RUNTIME" | field 49)
	rd=$(fio_run $dev --rw=randread --bs=4k --iodepth=16 --offset=0 \
		--size="${CRC_MIB}M" --norandommap --randrepeat=0 \
		--time_based --runtime="$RUNTIME" | field 8)
	dmsetup message b_vmc 0 flush
	wait_until 300 vmc_drained || say "  data_crc $1: drain did not finish" >&2
	rc=$(fio_run $dev --rw=randread --bs=4k --iodepth=16 --offset=0 \
		--size="${CRC_MIB}M" --norandommap --randrepeat=0 \
		--time_based --runtime="$RUNTIME" | field 8)
	vmcache_status >&2
	dmsetup remove b_vmc
	echo "${new:--} ${over:--} ${rd:--} ${rc:--}"
}

crc_bench() {
	local -a off on
	local i
	local -a names=(write-new overwrite-dirty read-dirty read-clean)
	local -a notes=("every block of ${CRC_MIB} MiB written once, QD 16"
		"random 4 KiB writes over those dirty blocks, QD 16, ${RUNTIME} s"
		"random 4 KiB reads of the dirty blocks (checked), QD 16, ${RUNTIME} s"
		"the same after a drain (clean: not checked)")
	say "== data checksums: dm-vmcache writeback, data_crc 0 against 1 (issue 12)"
	# 0, 1, 1, 0: a host getting slower or faster during the run
	# weighs on both alike; each figure is the mean of its two runs
	local -a r0a r1a r1b r0b
	read -r -a r0a <<<"$(crc_run 0)"
	read -r -a r1a <<<"$(crc_run 1)"
	read -r -a r1b <<<"$(crc_run 1)"
	read -r -a r0b <<<"$(crc_run 0)"
	for i in 0 1 2 3; do
		off[i]=$(((${r0a[$i]:-0} + ${r0b[$i]:-0}) / 2))
		on[i]=$(((${r1a[$i]:-0} + ${r1b[$i]:-0}) / 2))
		say "  ${names[$i]}: ${off[$i]} IOPS without (${r0a[$i]:-?}, ${r0b[$i]:-?}), ${on[$i]} with checksums (${r1a[$i]:-?}, ${r1b[$i]:-?})"
		echo "CRC ${names[$i]} ${off[$i]} ${on[$i]} ${notes[$i]}; runs ${r0a[$i]:-?} ${r0b[$i]:-?} / ${r1a[$i]:-?} ${r1b[$i]:-?}"
	done
}

echo "INFO kernel $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/ { print int($2 / 1024) }' /proc/meminfo) MiB"
echo "INFO origin: null_blk ${ORIGIN_MIB} MiB, memory-backed, ${ORIGIN_US} us per request (irqmode=2), queue depth $ORIGIN_QD, $ORIGIN_MBPS MiB/s cap, scheduler none, write cache: $(cat /sys/block/slow/queue/write_cache) ($([ "$ORIGIN_WC" = 1 ] && echo "null_blk cache_size $ORIGIN_CACHE_MIB MiB" || echo none))"
echo "INFO fast: brd slice ${FAST_MIB} MiB; dm-cache metadata: brd slice ${META_MIB} MiB"
echo "INFO workloads: fio libaio O_DIRECT, ${RUNTIME} s each; hot set ${HOT_MIB} MiB (warm-up: read twice)"
echo "INFO sections: $SECTIONS${BENCH_VMC_OPTS:+; extra vmcache options: ${BENCH_VMC_OPTS//,/ }}"
modprobe -q dm-vmcache
echo "INFO dm-vmcache srcversion $(cat /sys/module/dm_vmcache/srcversion 2>/dev/null || echo '?')"

IFS=, read -r -a list <<<"$TARGETS"
# bcache rewrites the origin's first sectors: keep it last, after the
# other sections
if has rows || has fsync; then
	for t in "${list[@]}"; do
		[ "$t" = bcache ] && continue
		run_target "$t"
	done
fi
has wb && writeback_bench
has wbactive && wbactive_bench
has drain && drain_bench
has sustained && sustained_bench
has seqmix && seqmix_bench
has reload && reload_bench
has crc && crc_bench
has pairs && pairs_bench
if has rows || has fsync; then
	for t in "${list[@]}"; do
		[ "$t" = bcache ] && run_target bcache
	done
fi
say "total $(( ($(now_ms) - start) / 1000 )) s"
