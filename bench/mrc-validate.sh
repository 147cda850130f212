#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Validation of dm-vmcache's hit ratio estimate at other cache sizes
# (Documentation/vmcache.rst, "Hit ratio at other cache sizes").
#
# On the host: boots one throwaway QEMU guest running this script
# (selftests/run-in-guest.sh --script) and writes its table to
# bench/results/mrc-validate.txt (--out FILE to change).
#
#   bench/mrc-validate.sh [--out FILE]
#
# In the guest: for each workload, a cache of C0 blocks (the "1x" cache)
# runs it once to warm up (a fresh random sequence), its statistics are
# reset, and it runs again (fio's repeatable sequence): the estimates at
# 0.5x, 1x, 2x and 4x are read then.  Then fresh caches of 0.5x, 1x, 2x and 4x C0 blocks, each with
# policy lru and 2q, run exactly the same two phases, and their measured
# read hit ratio (read_hits / (read_hits + read_misses) of the second
# phase) is printed beside the estimate.  Workloads (fio, 4 KiB O_DIRECT
# reads, queue depth 1, fixed seeds):
#   uniform  random reads, uniform over 2x C0 blocks
#   zipf     random reads, zipf 0.9 over 8x C0 blocks
#   loop     sequential passes over 1.5x C0 blocks (sequential_cutoff 0)
#   mixed    70 % of reads uniform over 0.6x C0 blocks, 30 % uniform over
#            the next 5.4x C0 (a hot set and a wide cold background)
#   wide     random reads, zipf 0.7 over 32x C0 blocks (sampled at about
#            a sixth)
# Devices: caches are dm-linear slices of a RAM disk, sized so that
# blocks_total is the wanted count; the origin is a memory-backed null_blk.
# Knobs (environment, --env in the guest): MRC_C0 (1024 blocks),
# MRC_WORKLOADS (uniform,zipf,loop,mixed,wide), MRC_POLICIES (lru,2q: the
# estimate is taken from the first).  Under TCG on a shared 2-core host the
# whole set takes 30 to 60 minutes; "wide" alone with lru about 10.
set -uo pipefail

if [ ! -r /selftests/lib.sh ]; then
	ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
	OUT=$ROOT/bench/results/mrc-validate.txt
	[ "${1:-}" = --out ] && OUT=$2 && shift 2
	# the knobs below, into the guest
	env_args=()
	for v in MRC_C0 MRC_WORKLOADS MRC_POLICIES; do
		[ -n "${!v:-}" ] && env_args+=(--env "$v=${!v}")
	done
	[ -f "$ROOT/dm-vmcache/dm-vmcache.ko" ] || make -C "$ROOT" -s module
	make -C "$ROOT" -s userspace >/dev/null
	raw=$(mktemp)
	"$ROOT/selftests/run-in-guest.sh" --timeout 2400 --test-timeout 2300 \
		"${env_args[@]}" --script "$ROOT/bench/mrc-validate.sh" 2>&1 | tee "$raw"
	rc=${PIPESTATUS[0]}
	{
		echo "dm-vmcache: estimated vs measured read hit ratio ($(date -u +%Y-%m-%d), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null))"
		echo "bench/mrc-validate.sh: one QEMU guest ($(grep -o 'tcg\|kvm' "$raw" | head -1)), kernel $(modinfo -F vermagic "$ROOT/dm-vmcache/dm-vmcache.ko" | cut -d' ' -f1)"
		sed -n 's/^| \{0,1\}//p' "$raw"
	} >"$OUT"
	rm -f "$raw"
	echo "mrc-validate: wrote $OUT"
	exit "$rc"
fi

# shellcheck source=../selftests/lib.sh
. /selftests/lib.sh
trap - EXIT

C0=${MRC_C0:-1024}
WORKLOADS=${MRC_WORKLOADS:-uniform,zipf,loop,mixed,wide}
POLICIES=${MRC_POLICIES:-lru,2q}
ORIGIN_MIB=256
RAM_MIB=$((C0 * 4 * 4 / 1024 + 16))	# room for the 4x cache
ORIGIN=/dev/mrcorigin
NAME=mrcv
DEV=/dev/mapper/$NAME

say() { printf '# %s\n' "$*"; }
out() { printf '| %s\n' "$*"; }

setup() {
	modprobe -q dm-mod
	modprobe -q brd rd_nr=1 rd_size=$((RAM_MIB * 1024)) max_part=0 || return 1
	modprobe -q null_blk nr_devices=0 || return 1
	local d=/sys/kernel/config/nullb/mrcorigin
	mkdir "$d" || return 1
	echo "$ORIGIN_MIB" >"$d/size"
	echo 1 >"$d/memory_backed"
	echo 4096 >"$d/blocksize"
	echo 1 >"$d/power"
	wait_for_dev /dev/ram0 && wait_for_dev "$ORIGIN" || return 1
	OSZ=$(blockdev --getsz "$ORIGIN")
}

# make_cache <blocks> <policy>: $NAME over a slice of the RAM disk holding
# that many blocks; prints blocks_total
make_cache() {
	local want=$1 pol=$2 sectors bt i
	sectors=$((want * 8 + 2048))
	for i in 1 2 3; do
		dmsetup remove "$NAME" 2>/dev/null
		dmsetup remove mrcslice 2>/dev/null
		dmsetup create mrcslice --table "0 $sectors linear /dev/ram0 0" || return 1
		dd if=/dev/zero of=/dev/mapper/mrcslice bs=64k count=1 oflag=direct status=none
		dmsetup create "$NAME" --table "0 $OSZ vmcache /dev/mapper/mrcslice $ORIGIN 4 policy $pol sequential_cutoff 0" ||
			return 1
		bt=$(status_value "$NAME" blocks_total)
		[ "$bt" = "$want" ] && break
		sectors=$((sectors + (want - bt) * 8))
	done
	echo "$bt"
}

drop_cache() {
	dmsetup remove "$NAME" && dmsetup remove mrcslice
}

# fio_reads <phase> <fio options...>: fio 3.33 ignores --randseed for
# these offsets, so the warm-up (phase 1) takes a fresh random sequence
# (randrepeat=0) and the measured phase fio's repeatable one: the same for
# every cache size, and not a replay of the warm-up
fio_reads() {
	local rr=1
	[ "$1" = 1 ] && rr=0
	shift
	fio --name=w --filename="$DEV" --bs=4k --direct=1 --ioengine=psync \
		--randrepeat="$rr" --eta=never --output=/dev/null "$@"
}

# phase <workload> <1 warm-up | 2 measured>
phase() {
	local w=$1 p=$2 n
	case $w in
	uniform)
		n=$((2 * C0))
		fio_reads "$p" --rw=randread --norandommap --size=$((n * 4))k \
			--io_size=$((6 * n * 4))k ;;
	zipf)
		n=$((8 * C0))
		fio_reads "$p" --rw=randread --norandommap --size=$((n * 4))k \
			--random_distribution=zipf:0.9 --io_size=$((3 * n * 4))k ;;
	loop)
		n=$((3 * C0 / 2))
		fio_reads "$p" --rw=read --size=$((n * 4))k --loops=3 ;;
	wide)
		n=$((32 * C0))
		fio_reads "$p" --rw=randread --norandommap --size=$((n * 4))k \
			--random_distribution=zipf:0.7 --io_size=$((n * 4))k ;;
	mixed)
		n=$((6 * C0))
		fio_reads "$p" --rw=randread --norandommap --size=$((n * 4))k \
			--random_distribution=zoned:70/10:30/90 --io_size=$((3 * n * 4))k ;;
	esac
}

# run <workload> <blocks> <policy>: sets BT, HITS, MISSES and EST (the
# status's est_hit_0_5x..4x)
run() {
	local w=$1 want=$2 pol=$3
	BT=$(make_cache "$want" "$pol") || return 1
	phase "$w" 1 || return 1
	sleep 1		# the last fills land
	dmsetup message "$NAME" 0 stats reset || return 1
	phase "$w" 2 || return 1
	HITS=$(status_value "$NAME" read_hits)
	MISSES=$(status_value "$NAME" read_misses)
	EST=()
	local k
	for k in 0_5x 1x 2x 4x; do
		EST+=("$(status_value "$NAME" "est_hit_$k")")
	done
	MRC_READS=$(status_value "$NAME" mrc_reads)
	PPM=$(status_value "$NAME" mrc_sample_ppm)
	drop_cache
}

pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + b) printf "%.1f%%", 100 * a / (a + b); else printf "-" }'; }
pm() { awk -v v="$1" 'BEGIN { printf "%.1f%%", v / 10 }'; }

setup || { say "cannot set up the devices"; exit 1; }
say "C0 = $C0 blocks of 4 KiB; workloads $WORKLOADS"
out ""
out "Estimated: dm-vmcache's est_hit_<k>x keys on the 1x cache (LRU stack"
out "distance model, policy lru run; the 2q run's estimate in brackets)."
out "Measured: read hit ratio of a cache of that size, same workload."
out ""
out "$(printf '%-8s %5s %6s %16s %9s %9s %9s' workload size blocks estimated "lru" "2q" "sampling")"
IFS=, read -r -a wl <<<"$WORKLOADS"
for w in "${wl[@]}"; do
	say "workload $w"
	declare -A M=() B=()
	est_lru=() est_2q=()
	IFS=, read -r -a pols <<<"$POLICIES"
	for pol in "${pols[@]}"; do
		for i in 0 1 2 3; do
			want=$((C0 * (1 << i) / 2))
			t0=$(date +%s)
			run "$w" "$want" "$pol" || { say "run $w $want $pol failed"; exit 1; }
			M[$pol,$i]=$(pct "$HITS" "$MISSES")
			B[$i]=$BT
			say "$w $pol $BT blocks: $HITS hits $MISSES misses, mrc_reads=$MRC_READS, est ${EST[*]} ($(($(date +%s) - t0)) s)"
			if [ "$i" = 1 ]; then
				[ "$pol" = "${pols[0]}" ] && est_lru=("${EST[@]}") && SAMP=$PPM
				[ "$pol" = "${pols[-1]}" ] && est_2q=("${EST[@]}")
			fi
		done
	done
	labels=(0.5x 1x 2x 4x)
	for i in 0 1 2 3; do
		out "$(printf '%-8s %5s %6s %16s %9s %9s %9s' "$w" "${labels[$i]}" "${B[$i]}" \
			"$(pm "${est_lru[$i]}") [$(pm "${est_2q[$i]}")]" "${M[lru,$i]:--}" "${M[2q,$i]:--}" \
			"$(awk -v p="$SAMP" 'BEGIN { printf "%.1f%%", p / 1e4 }')")"
	done
	unset M B
done
out ""
out "Workloads (fio psync, 4 KiB O_DIRECT reads; a warm-up phase with a fresh"
out "random sequence, stats reset, then the measured phase, fio's repeatable"
out "sequence, the same for every cache):"
out "  uniform  random, uniform over $((2 * C0)) blocks, 6 reads per block per phase"
out "  zipf     random, zipf 0.9 over $((8 * C0)) blocks, 3 reads per block per phase"
out "  loop     3 sequential passes over $((3 * C0 / 2)) blocks per phase (sequential_cutoff 0)"
out "  mixed    random: 70 % over the first $((6 * C0 / 10)) blocks, 30 % over the next $((6 * C0 * 9 / 10)), 3 reads per block per phase"
out "  wide     random, zipf 0.7 over $((32 * C0)) blocks, 1 read per block per phase"
