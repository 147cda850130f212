#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The VM benchmark (make bench-vm; issue 11, "measure what users feel"):
# file copies, small files, a database with a backup stream and a build on
# a filesystem over a cached slow virtual disk, in throwaway QEMU guests
# (selftests/run-in-guest.sh --script bench/vm/guest-bench-vm.sh).
#
#   bench/vm/run-bench-vm.sh [--quick] [--profiles LIST] [--hostcache LIST]
#                            [--fs LIST] [--rev REV] [--out DIR] [--no-deps]
#
# One guest boot per profile and host cache mode; in each boot every
# contender (uncached origin, dm-vmcache writethrough and writeback,
# dm-cache smq, dm-writecache, bcache) runs every workload on the same two
# disks:
#   origin  virtio-blk over an image file on the host, behind QEMU's own
#           I/O throttling (throttling.iops-total / bps-total), host cache
#           mode cache=none (aio=native) or cache=writeback; or an NBD
#           export (nbdkit, unix socket, delay filter) for "nbd"
#   fast    virtio-blk over an image in host RAM (/dev/shm)
# Profiles (--profiles, default "hdd"):
#   hdd     busy host HDD (a VM's share of a disk other guests seek on):
#           100 IOPS, 10 MB/s
#   cloud   cloud standard disk: 500 IOPS, 60 MB/s (under TCG on a shared
#           2-core host the guest's CPU, not this disk, is the bottleneck)
#   nbd     network disk: nbdkit over a unix socket, 2 ms added to each
#           request, 100 MB/s (one host cache mode: nbdkit's)
# Host cache modes (--hostcache, default "none,writeback").
# --quick: origin, vmcache-wt and vmcache-wb only, small sizes, cache=none.
# The "fast" row (the fast disk alone: the ceiling) runs in the first host
# cache mode of each profile only.
# --rev REV: build the module from git revision REV (git archive, into the
# build directory) instead of using dm-vmcache/dm-vmcache.ko as it is.
#
# Results: bench/vm/results/ (results.md, results.csv, results.json,
# *.png, env.txt, raw/).  Sizes and lists: BENCHVM_* in the environment
# (see bench/vm/README.md); the harness's VMCACHE_ACCEL; the build
# directory is VMCACHE_BUILD_DIR (build/guest-benchvm).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/bench/vm
OUT=$HERE/results
PROFILES=hdd
HOSTCACHE=none,writeback
FS=${BENCHVM_FS:-ext4}
quick=0
deps=1
rev=

while [ $# -gt 0 ]; do
	case $1 in
	--quick) quick=1; shift ;;
	--profiles) PROFILES=$2; shift 2 ;;
	--hostcache) HOSTCACHE=$2; shift 2 ;;
	--fs) FS=$2; shift 2 ;;
	--rev) rev=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	--no-deps) deps=0; shift ;;
	-h | --help) sed -n '3,35p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "run-bench-vm: unknown option $1" >&2; exit 2 ;;
	esac
done

log() { printf 'run-bench-vm: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

export VMCACHE_BUILD_DIR=${VMCACHE_BUILD_DIR:-$ROOT/build/guest-benchvm}
B=$VMCACHE_BUILD_DIR
mkdir -p "$B/prep" "$B/disks" "$OUT/raw"

if [ "$quick" -eq 1 ]; then
	: "${BENCHVM_TARGETS:=origin,vmcache-wt,vmcache-wb}"
	: "${BENCHVM_FAST_MIB:=64}"
	: "${BENCHVM_ORIGIN_MIB:=256}"
	: "${BENCHVM_DB_SECS:=8}"
	: "${BENCHVM_DB_ROWS:=20000}"
	: "${BENCHVM_FSMARK_FILES:=300}"
	: "${BENCHVM_SRC_DIRS:=fs/ext4 fs/jbd2 block}"
	[ "$HOSTCACHE" = none,writeback ] && HOSTCACHE=none
	export BENCHVM_TARGETS BENCHVM_DB_SECS BENCHVM_DB_ROWS BENCHVM_FSMARK_FILES
fi
ORIGIN_MIB=${BENCHVM_ORIGIN_MIB:-512}
FAST_MIB=${BENCHVM_FAST_MIB:-128}
META_MIB=${BENCHVM_META_MIB:-16}
SRC_DIRS=${BENCHVM_SRC_DIRS:-fs/ext4 fs/xfs fs/jbd2 mm block drivers/md}
export BENCHVM_FAST_MIB=$FAST_MIB BENCHVM_META_MIB=$META_MIB BENCHVM_FS=$FS BENCHVM_ORIGIN_MIB=$ORIGIN_MIB

# ------------------------------------------------------------- packages

need=(qemu-system-x86_64:qemu-system-x86 make-bcache:bcache-tools gnuplot:gnuplot-nox
	sqlite3:sqlite3 tcc:tcc mkfs.xfs:xfsprogs nbdkit:nbdkit mke2fs:e2fsprogs gcc:gcc python3:python3)
want=()
for n in "${need[@]}"; do
	command -v "${n%%:*}" >/dev/null || want+=("${n#*:}")
done
if [ "${#want[@]}" -gt 0 ]; then
	if [ "$deps" -eq 1 ] && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
		log "installing ${want[*]}"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${want[@]}" >/dev/null 2>&1 ||
			log "could not install ${want[*]}"
	else
		log "missing: ${want[*]} (the rows or workloads needing them are skipped)"
	fi
fi
if [ -n "$rev" ]; then
	src=$B/module-src
	rm -rf "$src"
	mkdir -p "$src"
	git -C "$ROOT" archive "$rev" Kbuild dm-vmcache | tar -x -C "$src"
	kdir=${KDIR:-$(find /usr/src -maxdepth 1 -name 'linux-headers-6.1.*-amd64' | sort -V | tail -n 1)}
	log "building the module of $rev against $kdir"
	make -s -C "$kdir" M="$src" modules >/dev/null
	export VMCACHE_KO=$src/dm-vmcache/dm-vmcache.ko
	MODULE_DESC="built from $(git -C "$ROOT" rev-parse --short "$rev") ($rev)"
elif [ -n "${VMCACHE_KO:-}" ]; then
	MODULE_DESC="$VMCACHE_KO as given"
else
	if [ ! -f "$ROOT/dm-vmcache/dm-vmcache.ko" ]; then
		log "building the module (make module)"
		make -C "$ROOT" -s module
	fi
	MODULE_DESC="dm-vmcache/dm-vmcache.ko of the work tree ($(git -C "$ROOT" describe --always --dirty 2>/dev/null))"
fi
KO=${VMCACHE_KO:-$ROOT/dm-vmcache/dm-vmcache.ko}
MODULE_DESC="$MODULE_DESC, srcversion $(modinfo -F srcversion "$KO")"

# --------------------------------------------------------------- inputs

# fsmark-lite (copied into the guest at the same path)
FSMARK=$B/prep/fsmark-lite
gcc -O2 -Wall -o "$FSMARK" "$HERE/fsmark-lite.c"

# ksrc.tar: a subset of the kernel source (linux-source-6.1)
KSRC_TARBALL=${BENCHVM_KSRC_TARBALL:-/usr/src/linux-source-6.1.tar.xz}
prep_ksrc() {
	local key stamp=$B/prep/ksrc.key d args=()
	key="$KSRC_TARBALL $SRC_DIRS"
	if [ -s "$B/prep/data/ksrc.tar" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$key" ]; then
		return 0
	fi
	[ -r "$KSRC_TARBALL" ] || die "$KSRC_TARBALL missing (apt-get install linux-source-6.1)"
	local top
	top=$({ tar -tJf "$KSRC_TARBALL" 2>/dev/null || true; } | head -n 1)
	top=${top%%/*}
	for d in $SRC_DIRS; do args+=("$top/$d"); done
	rm -rf "$B/prep/ksrc"
	mkdir -p "$B/prep/ksrc" "$B/prep/data"
	log "extracting $SRC_DIRS from $KSRC_TARBALL"
	tar -xJf "$KSRC_TARBALL" -C "$B/prep/ksrc" "${args[@]}"
	tar -cf "$B/prep/data/ksrc.tar" -C "$B/prep/ksrc" "$top"
	rm -rf "$B/prep/ksrc"
	echo "$key" >"$stamp"
}

# project.tar: vmcachectl and replay-log (C, 13 files) with every system
# header they include (a sysroot: nothing comes from the guest's /usr),
# built by build.sh with tcc, compile only (-c: no linker in the guest)
prep_project() {
	local p=$B/prep/project/proj f h tccinc=/usr/lib/x86_64-linux-gnu/tcc/include
	rm -rf "$B/prep/project"
	mkdir -p "$p/src" "$p/sysroot/tcc" "$B/prep/data"
	for f in "$ROOT"/userspace/*.c "$ROOT"/userspace/*.h "$ROOT/dm-vmcache/vmcache_ondisk.h" \
		"$ROOT/selftests/tools/replay-log.c"; do
		# stdatomic.h: not in tcc 0.9.27
		[ "$(basename "$f")" = cmd_writeback.c ] && continue
		cp "$f" "$p/src/"
	done
	local flags=(-nostdinc -Isysroot/tcc -Isysroot/usr/include/x86_64-linux-gnu -Isysroot/usr/include
		-std=c11 -D_GNU_SOURCE "-D__packed=__attribute__((__packed__))" -Isrc)
	# the headers: tcc's dependency lists on the host
	for f in "$p"/src/*.c; do
		tcc -nostdinc -I"$tccinc" -I/usr/include/x86_64-linux-gnu -I/usr/include -std=c11 -D_GNU_SOURCE \
			"-D__packed=__attribute__((__packed__))" -I"$p/src" -MD -MF "$p/dep.d" -c -o /dev/null "$f" 2>/dev/null ||
			die "tcc cannot compile $f on the host"
		tr -s "[:space:]" "\n" <"$p/dep.d" | grep -E "^/usr/" >>"$p/headers.txt" || true
	done
	sort -u "$p/headers.txt" | while read -r h; do
		case $h in
		"$tccinc"/*) install -D -m 0644 "$h" "$p/sysroot/tcc/${h#"$tccinc"/}" ;;
		*) install -D -m 0644 "$h" "$p/sysroot$h" ;;
		esac
	done
	{
		echo '#!/bin/bash'
		echo '# generated by bench/vm/run-bench-vm.sh: compile every source (tcc -c)'
		echo 'set -euo pipefail'
		echo 'mkdir -p obj'
		printf 'for f in src/*.c; do tcc'
		printf ' %q' "${flags[@]}"
		# shellcheck disable=SC2016 # written into build.sh as is
		printf ' -c -o "obj/$(basename "$f" .c).o" "$f"; done\n'
	} >"$p/build.sh"
	chmod +x "$p/build.sh"
	rm -f "$p/dep.d" "$p/headers.txt"
	tar -cf "$B/prep/data/project.tar" -C "$B/prep/project" proj
	log "project: $(find "$p/src" -name '*.c' | wc -l) C files, $(cat "$p"/src/*.[ch] | wc -l) lines," \
		"$(find "$p/sysroot" -type f | wc -l) headers"
}

prep_ksrc
prep_project
DATA_IMG=$B/disks/data.img
rm -f "$DATA_IMG"
mke2fs -q -t ext4 -d "$B/prep/data" "$DATA_IMG" \
	$(($(du -sm "$B/prep/data" | cut -f1) + 64))M
KSRC_FILES=$(tar -tf "$B/prep/data/ksrc.tar" | grep -vc '/$' || true)

# ----------------------------------------------------------------- runs

profile_spec() { # <profile> <hostcache> -> origin drive spec (after NAME,)
	local img=$1 p=$2 c=$3 thr
	case $p in
	cloud) thr="throttling.iops-total=500,throttling.bps-total=60000000" ;;
	hdd) thr="throttling.iops-total=100,throttling.bps-total=10000000" ;;
	nbd) echo "driver=raw,file.driver=nbd,file.server.type=unix,file.server.path=$B/nbd.sock,cache=writeback,throttling.bps-total=100000000"; return ;;
	*) die "unknown profile $p" ;;
	esac
	case $c in
	none) echo "file=$img,format=raw,cache=none,aio=native,$thr" ;;
	writeback) echo "file=$img,format=raw,cache=writeback,aio=threads,$thr" ;;
	*) die "unknown host cache mode $c" ;;
	esac
}

NBD_PID=
stop_nbd() {
	if [ -n "$NBD_PID" ]; then
		kill "$NBD_PID" 2>/dev/null || true
		wait "$NBD_PID" 2>/dev/null || true
		NBD_PID=
	fi
}
FAST_IMG=/dev/shm/benchvm-fast-$$.img
SAMPLER_PID=
cleanup() {
	stop_nbd
	rm -f "$FAST_IMG"
	[ -z "$SAMPLER_PID" ] || kill "$SAMPLER_PID" 2>/dev/null || true
}
trap cleanup EXIT

env_args=()
while IFS='=' read -r name value; do
	env_args+=(--env "$name=$value")
done < <(env | grep -E '^BENCHVM_[A-Z_]+=[^ ]*$' | grep -vE '^BENCHVM_(SRC_DIRS|TARGETS)=' || true)
env_args+=(--env "BENCHVM_FSMARK=$FSMARK")

runs=()
for p in ${PROFILES//,/ }; do
	if [ "$p" = nbd ]; then
		runs+=("$p:nbdkit")
		continue
	fi
	for c in ${HOSTCACHE//,/ }; do runs+=("$p:$c"); done
done

rm -f "$OUT"/raw/*.log
# what else ran on the host meanwhile (the report quotes it)
(
	while :; do
		echo "$(date +%T) qemu=$(pgrep -c qemu-system || true) load=$(cut -d' ' -f1-3 /proc/loadavg)"
		sleep 30
	done
) >"$OUT/raw/host-load.txt" &
SAMPLER_PID=$!
for r in "${runs[@]}"; do
	p=${r%%:*}
	c=${r#*:}
	img=$B/disks/origin.img
	rm -f "$img" "$FAST_IMG"
	truncate -s "${ORIGIN_MIB}M" "$img"
	truncate -s "$((FAST_MIB + META_MIB))M" "$FAST_IMG"
	if [ "$p" = nbd ]; then
		rm -f "$B/nbd.sock"
		nbdkit -f -U "$B/nbd.sock" --filter=delay file "$img" rdelay=2ms wdelay=2ms &
		NBD_PID=$!
		for _ in $(seq 50); do [ -S "$B/nbd.sock" ] && break; sleep 0.1; done
	fi
	spec=$(profile_spec "$img" "$p" "$c")
	# the fast row (the ceiling) once per profile
	targets=${BENCHVM_TARGETS:-origin,fast,vmcache-wt,vmcache-wb,dm-cache,dm-writecache,bcache}
	first=${HOSTCACHE%%,*}
	if [ "$c" != "$first" ] && [ "$c" != nbdkit ]; then
		targets=$(tr ',' '\n' <<<"$targets" | grep -vx fast | paste -sd,)
	fi
	raw=$OUT/raw/$p-$c.log
	log "profile $p, host cache $c: booting (concurrent QEMU guests now: $(pgrep -c qemu-system || true))"
	start=$(date +%s)
	{
		echo "INFO profile $p hostcache $c origin-drive $spec"
		echo "INFO concurrent-qemu-at-start $(pgrep -c qemu-system || true)"
	} >"$raw"
	rc=0
	"$ROOT/selftests/run-in-guest.sh" --timeout "${BENCHVM_TIMEOUT:-3600}" \
		--bin make-bcache --bin mkfs.xfs --bin sqlite3 --bin tcc --bin "$FSMARK" --kmod fs/xfs \
		--disk "$DATA_IMG" --drive "origin,$spec" \
		--drive "fast,file=$FAST_IMG,format=raw,cache=writeback,aio=threads" \
		"${env_args[@]}" --env "BENCHVM_TARGETS=$targets" --script "$HERE/guest-bench-vm.sh" 2>&1 |
		tr -d '\r' | tee -a "$raw" | grep --line-buffered -E '^(# |run-in-guest)' || rc=$?
	echo "INFO guest-run-seconds $(($(date +%s) - start)) rc $rc" >>"$raw"
	stop_nbd
	rm -f "$FAST_IMG" "$img"
done

# --------------------------------------------------------------- report

{
	echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "commit: $(git -C "$ROOT" describe --always --dirty 2>/dev/null)"
	echo "host: $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/ { print int($2 / 1024) }' /proc/meminfo) MiB, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
	echo "qemu: $(qemu-system-x86_64 --version | head -n 1)"
	echo "accelerator: ${VMCACHE_ACCEL:-$(sed -n 2p "$B/accel.cache" 2>/dev/null || echo tcg)}"
	echo "kernel (guest): $(modinfo -F vermagic "$KO" | awk '{ print $1 }')"
	echo "dm-vmcache module: $MODULE_DESC"
	echo "nbdkit: $(nbdkit --version 2>/dev/null || echo none); tcc: $(tcc -v 2>/dev/null | head -n 1); sqlite3: $(sqlite3 --version | cut -d' ' -f1)"
	echo "sizes: origin ${ORIGIN_MIB} MiB, fast ${FAST_MIB} MiB (+${META_MIB} MiB dm-cache metadata), source subset: $SRC_DIRS ($KSRC_FILES files)"
	env | grep -E '^BENCHVM_' | sort || true
	grep -h '^INFO' "$OUT"/raw/*.log | sort -u
} >"$OUT/env.txt"

python3 "$HERE/report-bench-vm.py" "$OUT"
log "results: $OUT/results.md"
