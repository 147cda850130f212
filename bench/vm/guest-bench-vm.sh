#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The VM benchmark, guest side (issue 11: "measure what users feel").  Run
# in one throwaway QEMU guest by bench/vm/run-bench-vm.sh (run-in-guest.sh
# --script).  The host attached:
#   /dev/disk/by-id/virtio-origin  the slow disk: an image file on the
#                                  host behind QEMU's I/O throttling (or
#                                  an NBD export), the profile's origin
#   /dev/disk/by-id/virtio-fast    the fast disk: an image in host RAM
#                                  (/dev/shm); slice 1 (BENCHVM_FAST_MIB)
#                                  is the cache, slice 2 dm-cache's metadata
#   /dev/disk/by-id/virtio-disk0   the inputs (read-only ext4): ksrc.tar (a
#                                  kernel source subset), project.tar (the
#                                  C project to build, with its headers)
# Every contender (BENCHVM_TARGETS, in order; bcache last) gets a fresh
# filesystem (BENCHVM_FS) on the same two disks and runs the workloads
# (BENCHVM_WORKLOADS): reread, smallfiles, db (with the backup stream),
# build.  Output lines (the host parses them):
#   R <fs> <target> <metric> <value>
#   TS <fs> <target> <phase> <second> <read hits> <reads> <dirty MiB>
#   INFO <text>        # <text> (progress, raw statistics)
# No "set -e": a step that fails is reported ("# ..." lines, a missing
# figure) and the other contenders still run.
set -uo pipefail

TARGETS=${BENCHVM_TARGETS:-origin,fast,vmcache-wt,vmcache-wb,dm-cache,dm-writecache,bcache}
FSLIST=${BENCHVM_FS:-ext4}
WORKLOADS=${BENCHVM_WORKLOADS:-reread,smallfiles,db,build}
FAST_MIB=${BENCHVM_FAST_MIB:-128}
META_MIB=${BENCHVM_META_MIB:-16}
FILE_MIB=${BENCHVM_FILE_MIB:-$((FAST_MIB / 2))}
DB_SECS=${BENCHVM_DB_SECS:-15}
DB_ROWS=${BENCHVM_DB_ROWS:-50000}
DB_TX=${BENCHVM_DB_TX:-40000}		# transactions generated (more than run)
# walk + read passes after the untar: the first cold for the page cache,
# the re-walk the median of the others (one pass moves 30 % under TCG)
WALK_PASSES=${BENCHVM_WALK_PASSES:-5}
FSMARK_FILES=${BENCHVM_FSMARK_FILES:-500}
FSMARK_SIZE=${BENCHVM_FSMARK_SIZE:-16384}
FSMARK=${BENCHVM_FSMARK:-fsmark-lite}

ORIGIN_LINK=/dev/disk/by-id/virtio-origin
FASTDISK=/dev/disk/by-id/virtio-fast
DATADISK=/dev/disk/by-id/virtio-disk0
FAST=/dev/mapper/vfast
META=/dev/mapper/vmeta
MNT=/mnt/bench
DATA=/data

say() { printf '# %s\n' "$*"; }
res() { printf 'R %s %s %s %s\n' "$FS" "$T" "$1" "$2"; }
in_list() { [[ ",$2," == *",$1,"* ]]; }
now() { printf '%s' "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }'; }
dropc() { sync; echo 3 >/proc/sys/vm/drop_caches; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0) printf "%.3f", a / b; else print "-" }'; }

wait_for_dev() {
	local _
	for _ in $(seq 100); do
		[ -b "$1" ] && return 0
		sleep 0.1
	done
	say "no $1"
	return 1
}

# ------------------------------------------------------------ devices

ORIGIN=$(readlink -f "$ORIGIN_LINK")
ODEV=${ORIGIN#/dev/}
OSZ=$(blockdev --getsz "$ORIGIN")

setup() {
	modprobe -q dm-mod
	modprobe -q dm-vmcache || say "no dm-vmcache module"
	modprobe -q dm-cache-smq 2>/dev/null
	modprobe -q dm-writecache 2>/dev/null
	modprobe -q ext4
	modprobe -q xfs 2>/dev/null
	wait_for_dev "$FASTDISK" && wait_for_dev "$ORIGIN_LINK" && wait_for_dev "$DATADISK" || return 1
	local fd
	fd=$(readlink -f "$FASTDISK")
	FDEV=${fd#/dev/}
	dmsetup create vfast --table "0 $((FAST_MIB * 2048)) linear $fd 0" &&
		dmsetup create vmeta --table "0 $((META_MIB * 2048)) linear $fd $((FAST_MIB * 2048))" || return 1
	wait_for_dev "$FAST" && wait_for_dev "$META" || return 1
	mkdir -p "$DATA" "$MNT"
	mount -o ro "$DATADISK" "$DATA" || return 1
	say "origin $ORIGIN ($((OSZ / 2048)) MiB, scheduler $(cat "/sys/block/$ODEV/queue/scheduler")," \
		"write cache: $(cat "/sys/block/$ODEV/queue/write_cache")), fast $fd"
}

wipe() { dd if=/dev/zero of="$1" bs=1M count="${2:-4}" oflag=direct status=none; }

# origin sectors written / read so far (block layer counters of the disk)
origin_wr_sect() { awk '{ print $7 }' "/sys/block/$ODEV/stat"; }
# "<write requests> <flush requests>" of a disk so far (iostats.rst fields 5, 16)
disk_wf() { awk '{ print $5, $16 }' "/sys/block/$1/stat"; }

create_target() { # <target>: prints the device to use
	case $1 in
	origin) echo "$ORIGIN" ;;
	fast) echo "$FAST" ;;
	vmcache-wt | vmcache-wb | vmcache-wt-seq0 | vmcache-wb-seq0 | vmcache-wb-held)
		# for diagnosis: -seq0, sequential_cutoff 0 (no stream bypass);
		# -held, no background writeback (as if the dirty data were old)
		local mode=writethrough opts='' n=2
		[[ $1 == vmcache-wb* ]] && mode=writeback
		[[ $1 == *-seq0 ]] && { opts=" sequential_cutoff 0"; n=4; }
		[[ $1 == *-held ]] && { opts=" writeback_low 100 writeback_high 100 max_dirty_age 0"; n=8; }
		dmsetup create vmc --table "0 $OSZ vmcache $FAST $ORIGIN $n mode $mode$opts" || return 1
		wait_for_dev /dev/mapper/vmc >/dev/null && echo /dev/mapper/vmc ;;
	dm-cache)
		# 32 KiB blocks (64 sectors), writeback, smq with its defaults
		dmsetup create vdmc --table "0 $OSZ cache $META $FAST $ORIGIN 64 1 writeback smq 0" || return 1
		wait_for_dev /dev/mapper/vdmc >/dev/null && echo /dev/mapper/vdmc ;;
	dm-writecache)
		dmsetup create vwc --table "0 $OSZ writecache s $ORIGIN $FAST 4096 0" || return 1
		wait_for_dev /dev/mapper/vwc >/dev/null && echo /dev/mapper/vwc ;;
	bcache)
		command -v make-bcache >/dev/null || { say "make-bcache not in the guest"; return 1; }
		modprobe -q bcache || { say "no bcache module"; return 1; }
		make-bcache --bucket 128k --writeback -C "$FAST" -B "$ORIGIN" >/dev/null 2>&1 || return 1
		echo "$FAST" >/sys/fs/bcache/register 2>/dev/null
		echo "$ORIGIN" >/sys/fs/bcache/register 2>/dev/null
		wait_for_dev /dev/bcache0 >/dev/null || return 1
		for _ in $(seq 50); do
			[ "$(cat /sys/block/bcache0/bcache/state 2>/dev/null)" != "no cache" ] && break
			sleep 0.1
		done
		# defaults otherwise (sequential_cutoff 4M): what users get
		local set
		set=$(readlink -f /sys/block/bcache0/bcache/cache)
		echo 0 >"$set/congested_read_threshold_us" 2>/dev/null
		echo 0 >"$set/congested_write_threshold_us" 2>/dev/null
		echo /dev/bcache0 ;;
	*) say "unknown target $1"; return 1 ;;
	esac
}

remove_target() {
	case $1 in
	origin | fast) ;;
	vmcache-*) say "vmcache status: $(dmsetup status vmc | cut -d' ' -f4-)"; dmsetup remove vmc ;;
	dm-cache) say "dm-cache status: $(dmsetup status vdmc | cut -d' ' -f4-)"; dmsetup remove vdmc ;;
	dm-writecache) say "dm-writecache status: $(dmsetup status vwc | cut -d' ' -f4-)"; dmsetup remove vwc ;;
	bcache)
		local s=/sys/block/bcache0/bcache/stats_total
		say "bcache: hits $(cat $s/cache_hits) misses $(cat $s/cache_misses) bypass_hits" \
			"$(cat $s/cache_bypass_hits) bypass_misses $(cat $s/cache_bypass_misses) dirty $(cat /sys/block/bcache0/bcache/dirty_data)"
		echo 1 >/sys/block/bcache0/bcache/stop 2>/dev/null
		# every cache set (this runs outside the subshell that made it)
		local set
		for set in /sys/fs/bcache/*-*; do
			[ -e "$set/unregister" ] && echo 1 >"$set/unregister" 2>/dev/null
		done
		# the cache set lets go of the fast disk some time after
		# bcache0 goes: until then the next contender cannot open it
		for _ in $(seq 300); do
			[ "$(dmsetup info -c --noheadings -o open vfast)" -eq 0 ] && break
			sleep 0.1
		done
		[ "$(dmsetup info -c --noheadings -o open vfast)" -eq 0 ] ||
			say "bcache: the fast disk is still open"
		sleep 1 ;;
	esac
	wipe "$FAST"
	wipe "$META"
	wipe "$ORIGIN"
}

# stats: "<read hits> <reads> <dirty MiB>" of the current target (the
# target's own counters; "0 0 0" for the bare origin)
stats() {
	case $T in
	vmcache-*)
		local d=/sys/module/dm_vmcache/caches/vmc h m bd bs
		if [ -r "$d/read_hits" ]; then
			h=$(<"$d/read_hits"); m=$(<"$d/read_misses"); bd=$(<"$d/blocks_dirty"); bs=$(<"$d/block_size")
			echo "$h $((h + m)) $((bd * bs / 1048576))"
		else
			dmsetup status vmc | tr ' ' '\n' | awk -F= '{ v[$1] = $2 }
				END { print v["read_hits"], v["read_hits"] + v["read_misses"], int(v["blocks_dirty"] * v["block_size"] / 1048576) }'
		fi ;;
	dm-cache)
		# <meta bs> <used/total> <cache bs> <used/total> <read hits> <read misses> <write hits> <write misses> <demotions> <promotions> <dirty>
		dmsetup status vdmc | awk '{ print $8, $8 + $9, int($14 * $6 * 512 / 1048576) }' ;;
	dm-writecache)
		# <error> <blocks> <free blocks> <under writeback> <reads> <read hits> ...:
		# used blocks (written, not yet freed by writeback) as "dirty"
		dmsetup status vwc | awk '{ print ($9 == "" ? 0 : $9), ($8 == "" ? 0 : $8), int(($5 - $6) * 4096 / 1048576) }' ;;
	bcache)
		local s=/sys/block/bcache0/bcache/stats_total
		echo "$(<$s/cache_hits) $(($(<$s/cache_hits) + $(<$s/cache_misses))) $(awk '{
			v = $1; u = substr(v, length(v)); n = v + 0
			if (u == "k") n /= 1024; else if (u == "G") n *= 1024; else if (u != "M") n /= 1048576
			print int(n) }' /sys/block/bcache0/bcache/dirty_data)" ;;
	*) echo "0 0 0" ;;
	esac
}

# hit ratio between two stats snapshots
# a vmcache's metadata commits so far (nothing for the other targets)
commits() {
	case $T in
	vmcache-*) dmsetup status vmc | tr ' ' '\n' | sed -n 's/^commits=//p' ;;
	esac
}

hitr() { # <before> <after>
	local -a a b
	read -r -a a <<<"$1"
	read -r -a b <<<"$2"
	[ "$T" = origin ] && { echo "-"; return; }
	ratio $((b[0] - a[0])) $((b[1] - a[1]))
}

sampler_start() { # <phase>
	local phase=$1 t0=$EPOCHREALTIME
	: >/tmp/sampling
	(
		while [ -e /tmp/sampling ]; do
			printf 'TS %s %s %s %s %s\n' "$FS" "$T" "$phase" "$(since "$t0")" "$(stats)"
			sleep 1
		done
	) &
	SAMPLER=$!
}
sampler_stop() { rm -f /tmp/sampling; wait "$SAMPLER" 2>/dev/null; }

mkfs_mount() { # <dev>
	case $FS in
	ext4) mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$1" >/dev/null || return 1 ;;
	# the fast disk (the "fast" row) is below mkfs.xfs's 300 MB floor,
	# which it waives only for fstests (these three variables)
	xfs) TEST_DIR=$MNT TEST_DEV=$1 QA_CHECK_FS=1 mkfs.xfs -q -f "$1" >/dev/null || return 1 ;;
	esac
	mount -t "$FS" "$1" "$MNT"
}

# ---------------------------------------------------------- workloads

w_reread() {
	local t s0 s1 w0
	w0=$(origin_wr_sect)
	t=$(now)
	dd if=/dev/zero of="$MNT/big" bs=1M count="$FILE_MIB" conv=fsync status=none
	res reread_write_mbs "$(awk -v m="$FILE_MIB" -v s="$(since "$t")" 'BEGIN { printf "%.1f", m * 1.048576 / s }')"
	local pass
	for pass in 1 2 3; do
		dropc
		s0=$(stats)
		t=$(now)
		dd if="$MNT/big" of=/dev/null bs=1M status=none
		s1=$(stats)
		res "reread${pass}_mbs" "$(awk -v m="$FILE_MIB" -v s="$(since "$t")" 'BEGIN { printf "%.1f", m * 1.048576 / s }')"
		res "reread${pass}_hit" "$(hitr "$s0" "$s1")"
	done
	res reread_origin_wr_mib $((($(origin_wr_sect) - w0) / 2048))
	rm -f "$MNT/big"
	sync
}

w_smallfiles() {
	local t s0 s1 w0 n
	w0=$(origin_wr_sect)
	mkdir -p "$MNT/src"
	t=$(now)
	tar -xf "$DATA/ksrc.tar" -C "$MNT/src"
	sync
	res untar_s "$(since "$t")"
	local pass
	for pass in $(seq "$WALK_PASSES"); do
		dropc
		s0=$(stats)
		t=$(now)
		n=$(find "$MNT/src" -printf '%s %m %T@\n' | wc -l)
		res "walk${pass}_s" "$(since "$t")"
		find "$MNT/src" -type f -print0 | xargs -0 cat >/dev/null
		res "walkread${pass}_s" "$(since "$t")"
		s1=$(stats)
		res "walkread${pass}_hit" "$(hitr "$s0" "$s1")"
	done
	res walk_entries "$n"
	mkdir -p "$MNT/fsm"
	dropc
	t=$(now)
	local out
	out=$("$FSMARK" "$MNT/fsm" "$FSMARK_FILES" "$FSMARK_SIZE" 16) || say "fsmark-lite failed"
	res fsmark_fps "$(awk '{ print $6 }' <<<"$out")"
	res smallfiles_origin_wr_mib $((($(origin_wr_sect) - w0) / 2048))
	rm -rf "$MNT/fsm"
	sync
}

# pgbench-like TPC-B transactions (the same ones for every contender)
gen_tx() {
	[ -s /tmp/tx.sql ] && return 0
	awk -v n="$DB_TX" -v rows="$DB_ROWS" 'BEGIN {
		srand(11)
		nb = int(rows / 10000); if (nb < 1) nb = 1
		print ".timer on"
		for (i = 0; i < n; i++) {
			a = 1 + int(rand() * rows); t = 1 + int(rand() * nb * 10)
			b = 1 + int(rand() * nb); d = int(rand() * 10001) - 5000
			print "BEGIN;"
			printf "UPDATE accounts SET abalance = abalance + %d WHERE aid = %d;\n", d, a
			printf "SELECT abalance FROM accounts WHERE aid = %d;\n", a
			printf "UPDATE tellers SET tbalance = tbalance + %d WHERE tid = %d;\n", d, t
			printf "UPDATE branches SET bbalance = bbalance + %d WHERE bid = %d;\n", d, b
			printf "INSERT INTO history VALUES (%d, %d, %d, %d, %d, \"x\");\n", t, b, a, d, i
			print "COMMIT;"
		}
	}' >/tmp/tx.sql
}

db_prep() {
	mkdir -p "$MNT/db"
	local nb=$((DB_ROWS / 10000))
	[ "$nb" -lt 1 ] && nb=1
	sqlite3 "$MNT/db/bench.db" >/dev/null <<-EOF
	PRAGMA journal_mode = DELETE;
	PRAGMA synchronous = FULL;
	CREATE TABLE branches (bid INTEGER PRIMARY KEY, bbalance INT, filler TEXT);
	CREATE TABLE tellers (tid INTEGER PRIMARY KEY, bid INT, tbalance INT, filler TEXT);
	CREATE TABLE accounts (aid INTEGER PRIMARY KEY, bid INT, abalance INT, filler TEXT);
	CREATE TABLE history (tid INT, bid INT, aid INT, delta INT, mtime INT, filler TEXT);
	BEGIN;
	WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < $nb)
		INSERT INTO branches SELECT x, 0, printf('%088d', 0) FROM c;
	WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < $((nb * 10)))
		INSERT INTO tellers SELECT x, 1 + (x - 1) / 10, 0, printf('%084d', 0) FROM c;
	WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < $DB_ROWS)
		INSERT INTO accounts SELECT x, 1 + (x - 1) / 10000, 0, printf('%084d', 0) FROM c;
	COMMIT;
	EOF
	sync
}

# db_run <phase> <seconds>: R db_<phase>_tps, db_<phase>_p99_ms
db_run() {
	local phase=$1 secs=$2 t el o0 f0 o1 f1 k0 k1
	sampler_start "$phase"
	o0=$(disk_wf "$ODEV")
	f0=$(disk_wf "$FDEV")
	k0=$(commits)
	t=$(now)
	# SIGINT: the shell stops reading its input and exits cleanly
	timeout -s INT "$secs" sqlite3 -cmd 'PRAGMA synchronous = FULL' "$MNT/db/bench.db" \
		</tmp/tx.sql >/tmp/db.out 2>/tmp/db.err
	el=$(since "$t")
	o1=$(disk_wf "$ODEV")
	f1=$(disk_wf "$FDEV")
	k1=$(commits)
	sampler_stop
	# 7 timed statements per transaction: BEGIN ... COMMIT
	awk -v el="$el" '
		/^Run Time:/ { s += $4; k++; if (k == 7) { lat[n++] = s * 1000; s = 0; k = 0 } }
		END {
			if (n == 0) { print "0 -"; exit }
			for (i = 0; i < n; i++) for (j = i; j > 0 && lat[j - 1] > lat[j]; j--) { x = lat[j]; lat[j] = lat[j - 1]; lat[j - 1] = x }
			p = int(n * 0.99); if (p >= n) p = n - 1
			printf "%.1f %.1f %d\n", n / el, lat[p], n
		}' /tmp/db.out >/tmp/db.res
	local tps p99 n
	read -r tps p99 n </tmp/db.res
	res "db_${phase}_tps" "$tps"
	res "db_${phase}_p99_ms" "$p99"
	res "db_${phase}_tx" "${n:-0}"
	# what each transaction cost the disks: write and flush requests
	local -a a b c d
	read -r -a a <<<"$o0"; read -r -a b <<<"$o1"; read -r -a c <<<"$f0"; read -r -a d <<<"$f1"
	res "db_${phase}_origin_writes_per_tx" "$(ratio $((b[0] - a[0])) "${n:-0}")"
	res "db_${phase}_origin_flushes_per_tx" "$(ratio $((b[1] - a[1])) "${n:-0}")"
	res "db_${phase}_fast_writes_per_tx" "$(ratio $((d[0] - c[0])) "${n:-0}")"
	res "db_${phase}_fast_flushes_per_tx" "$(ratio $((d[1] - c[1])) "${n:-0}")"
	[ -n "$k0" ] && res "db_${phase}_commits_per_tx" "$(ratio $((k1 - k0)) "${n:-0}")"
	grep -v -i interrupt /tmp/db.err | head -n 3 | sed 's/^/# sqlite3: /'
}

# the hot set (the database file) read once at random, O_DIRECT: hit ratio
hot_read() { # <label>
	local s0 s1 sz out
	sync
	sz=$(stat -c %s "$MNT/db/bench.db")
	s0=$(stats)
	out=$(fio --name=hot --filename="$MNT/db/bench.db" --rw=randread --bs=4k --direct=1 \
		--ioengine=psync --size="$sz" --randrepeat=1 --minimal 2>/dev/null)
	s1=$(stats)
	res "hot_$1_iops" "$(awk -F';' '{ print $8 }' <<<"$out")"
	res "hot_$1_hit" "$(hitr "$s0" "$s1")"
}

w_db() {
	local w0 t bpid
	w0=$(origin_wr_sect)
	gen_tx
	t=$(now)
	db_prep
	res db_prep_s "$(since "$t")"
	res db_size_mib "$(($(stat -c %s "$MNT/db/bench.db") / 1048576))"
	db_run db "$DB_SECS"
	hot_read before
	# the backup: a sequential read of the whole disk, during a DB run
	t=$(now)
	dd if="$DEV" of=/dev/null bs=1M iflag=direct status=none &
	bpid=$!
	db_run backup "$DB_SECS"
	wait "$bpid"
	res backup_mbs "$(awk -v s="$OSZ" -v e="$(since "$t")" 'BEGIN { printf "%.1f", s * 512 / 1e6 / e }')"
	hot_read after
	res db_origin_wr_mib $((($(origin_wr_sect) - w0) / 2048))
}

w_build() {
	local w0 t s0 s1 pass
	w0=$(origin_wr_sect)
	mkdir -p "$MNT/build"
	tar -xf "$DATA/project.tar" -C "$MNT/build"
	sync
	for pass in cold warm; do
		rm -rf "$MNT/build/proj/obj"
		dropc
		s0=$(stats)
		t=$(now)
		(cd "$MNT/build/proj" && bash ./build.sh) >/tmp/build.log 2>&1 || say "build failed: $(tail -n 2 /tmp/build.log)"
		sync
		res "build_${pass}_s" "$(since "$t")"
		s1=$(stats)
		res "build_${pass}_hit" "$(hitr "$s0" "$s1")"
	done
	res build_objs "$(find "$MNT/build/proj/obj" -name '*.o' | wc -l)"
	res build_origin_wr_mib $((($(origin_wr_sect) - w0) / 2048))
}

# --------------------------------------------------------------- main

setup || { say "setup failed"; exit 1; }
echo "INFO guest: $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/ { print int($2 / 1024) }' /proc/meminfo) MiB"
echo "INFO fast ${FAST_MIB} MiB, origin $((OSZ / 2048)) MiB, file ${FILE_MIB} MiB, db ${DB_ROWS} rows ${DB_SECS} s, fsmark ${FSMARK_FILES}x${FSMARK_SIZE}"
for FS in ${FSLIST//,/ }; do
	IFS=, read -r -a tl <<<"$TARGETS"
	order=()
	for T in "${tl[@]}"; do [ "$T" = bcache ] || order+=("$T"); done
	in_list bcache "$TARGETS" && order+=(bcache)
	for T in "${order[@]}"; do
		tstart=$EPOCHREALTIME
		say "== $FS $T"
		if ! DEV=$(create_target "$T"); then
			say "$T: cannot create"
			res skipped 1
			continue
		fi
		if ! mkfs_mount "$DEV"; then
			say "$T: mkfs/mount $FS failed"
			res skipped 1
			remove_target "$T"
			continue
		fi
		for W in ${WORKLOADS//,/ }; do
			say "$FS $T: $W"
			"w_$W"
		done
		umount "$MNT"
		res total_s "$(since "$tstart")"
		remove_target "$T"
	done
done
say "done"
