#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# dm-vmcache persistence, crash recovery and bad metadata, over four boots
# with file-backed virtio disks (cache, origin, and a store for the test's
# own reference data):
#  1. writeback cache (nothing written back unless asked): a pattern
#     written with fsync, a hot set read; remove and recreate: data intact,
#     cache warm (hot reads are hits), dirty count the same; more writes
#     with fsync, then unflushed writes, then a power cut;
#  2. a cache with dirty data refused for an origin of another size, a
#     blank device refused with must_exist; then reassembled (must_exist
#     1): the flushed data reads back exactly, from the cache (the origin
#     never saw it), the dirty count is exact (each unflushed block either
#     made it, dirty and readable, or not at all), the hot set is still
#     cached; flush, remove, the origin checked directly;
#  3. superblock and mapping damage: one slot corrupted loads from the
#     other, both refused with a checksum error, an unsupported version,
#     another block size, another origin, a mapping page bad in both copies
#     refused; an older mapping copy damaged is harmless; refused loads
#     write nothing; then writethrough writes with and without fsync; last,
#     clean cached blocks are overwritten (no fsync) in passthrough and in
#     writeback while metadata writes are stalled (dm-delay on the
#     metadata region of the cache disk), then a power cut;
#  4. writethrough after the power cut: nothing dirty (or, with FLUX in
#     the durable superblock, every block dirty, then written back), data
#     and hot set; the
#     overwritten clean blocks either came back dirty or return the
#     origin's data (never data the origin lacks while called clean), and
#     invalidate does not change what the device returns;
#     suspend/resume of the same table keeps the cache warm.
#
# vmcache-harness: phases=4 disks=cache:64M,origin:256M,store:16M
set -euo pipefail
DIR=$(dirname "$0")
# shellcheck source=lib.sh
. "$DIR/lib.sh"

require_vmcache
require_cmd dd cmp md5sum od
CACHE=/dev/disk/by-id/virtio-cache
ORIGIN=/dev/disk/by-id/virtio-origin
STORE=/dev/disk/by-id/virtio-store
for d in "$CACHE" "$ORIGIN" "$STORE"; do
	[ -b "$d" ] || ktap_skip_all "no disk $d (run through run-in-guest.sh)"
done

NAME=vmc_persist
DEV=/dev/mapper/$NAME
WB_OPTS="10 mode writeback writeback_low 100 writeback_high 100 max_dirty_age 0 sequential_cutoff 0"
WT_OPTS="4 mode writethrough sequential_cutoff 0"

# Reference data, MiB offsets: <name> <store MiB> <device MiB> <KiB>
#  P1 2 MiB written in phase 1 (writeback, fsync)
#  H  the hot set, written on the origin before the cache exists
#  P3 over the first half of P1 (fsync)   P2 elsewhere (fsync)
#  P4 256 KiB, not flushed before the power cut
#  P5, P6: the same for writethrough in phase 3
#  Q  64 KiB over the start of the hot set, writeback, not flushed
#  R  the next 64 KiB of the hot set, passthrough, not flushed
declare -A STORE_MIB=([P1]=0 [H]=2 [P2]=3 [P3]=4 [P4]=5 [P5]=6 [P6]=7 [Q]=8 [R]=9)
declare -A DEV_MIB=([P1]=8 [H]=64 [P2]=16 [P3]=8 [P4]=32 [P5]=40 [P6]=48 [Q]=64 [R]=64)
declare -A KIB=([P1]=2048 [H]=1024 [P2]=1024 [P3]=1024 [P4]=256 [P5]=1024 [P6]=256 [Q]=64 [R]=64)
Q_BLOCKS=16	# R follows Q: hot set blocks 16..31
R_SKIP=$((Q_BLOCKS * 4))	# KiB into the hot set
HOT_BLOCKS=256
P1_BLOCKS=512
P4_BLOCKS=64
NOTE_MIB=15	# on the store: a line of notes carried across boots
COMPARE_MIB=80	# device and origin compared over this much

tmp=$(mktemp -d)
cleanup_push "rm -rf $tmp"

# ------------------------------------------------------------ helpers

create() { # <options>
	dm_create "$NAME" "0 $OSZ vmcache $CACHE $ORIGIN $*"
}

remove() {
	dm_remove "$NAME" && cleanup_pop && ! dm_exists "$NAME"
}

# ref <name>: the reference data into $tmp/<name> (from the store disk)
ref() {
	[ -s "$tmp/$1" ] ||
		dd if="$STORE" of="$tmp/$1" bs=1M skip="${STORE_MIB[$1]}" count=$(((${KIB[$1]} + 1023) / 1024)) \
			iflag=direct status=none
	if [ "${KIB[$1]}" -lt 1024 ]; then
		truncate -s $((${KIB[$1]} * 1024)) "$tmp/$1"
	fi
}

# put <name> [dd flags]: write the reference data through the device
put() {
	local n=$1
	shift
	ref "$n" &&
	dd if="$tmp/$n" of="$DEV" bs=64k seek=$((${DEV_MIB[$n]} * 16)) oflag=direct status=none "$@"
}

# region <device> <MiB offset> <KiB> > file
region() {
	dd if="$1" bs=4k skip=$(($2 * 256)) count=$(($3 / 4)) iflag=direct status=none
}

# same <device> <name> [<KiB> [<skip KiB>]]: the device holds the data of
# <name> (or its first <KiB>, or <KiB> from <skip KiB> into it)
same() {
	local dev=$1 n=$2 kib=${3:-${KIB[$2]}} skip=${4:-0}
	ref "$n" || return 1
	dd if="$dev" bs=4k skip=$((${DEV_MIB[$n]} * 256 + skip / 4)) count=$((kib / 4)) \
		iflag=direct status=none >"$tmp/got" &&
	dd if="$tmp/$n" bs=4k skip=$((skip / 4)) count=$((kib / 4)) status=none >"$tmp/want" &&
	compare_bytes "$tmp/got" "$tmp/want"
}

zeros() { # <device> <MiB offset> <KiB>
	region "$1" "$2" "$3" >"$tmp/got" &&
	compare_bytes "$tmp/got" /dev/zero $(($3 * 1024))
}

# the hot set read once through the device, in 4 KiB reads
read_hot() {
	region "$DEV" "${DEV_MIB[H]}" "${KIB[H]}" >"$tmp/hot" &&
	ref H && compare_bytes "$tmp/hot" "$tmp/H"
}

hot_is_cached() {
	msg stats reset && read_hot &&
	expect read_hits="$HOT_BLOCKS" read_misses=0
}

# the hot set past the first 2 * Q_BLOCKS (which phase 3 overwrites): hits
HOT_TAIL=$((HOT_BLOCKS - 2 * Q_BLOCKS))
read_hot_tail() {
	# shellcheck disable=SC2004 # DEV_MIB is associative: keep the ${}
	dd if="$DEV" bs=4k skip=$((${DEV_MIB[H]} * 256 + 2 * Q_BLOCKS)) count="$HOT_TAIL" \
		iflag=direct status=none >"$tmp/hot" &&
	ref H && dd if="$tmp/H" bs=4k skip=$((2 * Q_BLOCKS)) status=none >"$tmp/htail" &&
	compare_bytes "$tmp/hot" "$tmp/htail"
}

hot_tail_cached() {
	msg stats reset && read_hot_tail &&
	expect read_hits="$HOT_TAIL" read_misses=0
}

note_write() { # <text>
	printf '%s\n' "$*" | dd of="$STORE" bs=4096 seek=$((NOTE_MIB * 256)) conv=sync oflag=direct status=none
}

note_read() {
	dd if="$STORE" bs=4096 skip=$((NOTE_MIB * 256)) count=1 iflag=direct status=none | tr -d '\0'
}

# refused <expected error> <table>: the load fails with that ti->error,
# leaves no device behind and writes nothing to the cache's metadata
refused() {
	local expect=$1 table=$2 err re before after
	before=$(meta_md5)
	dmesg_mark
	if dmsetup create vmc_refused --table "$table" 2>/dev/null; then
		ktap_print_msg "accepted: $table"
		dm_remove vmc_refused
		return 1
	fi
	if dm_exists vmc_refused; then
		ktap_print_msg "device left behind"
		dm_remove vmc_refused
		return 1
	fi
	# a ti->error ("table: <dev>: vmcache: <error>") or, for the mapping
	# pages (read at the first resume), "vmcache: <dev>: cannot load
	# metadata: <error>"
	err=$(grep -E 'vmcache: ' <<<"$(dmesg_since_mark)" || true)
	# shellcheck disable=SC2001,SC2016 # escape regex metacharacters
	re=$(sed 's/[][\.*^$()+?{}|]/\\&/g' <<<"$expect")
	if ! grep -qE -- "vmcache: (vmc_refused: cannot load metadata: )?$re" <<<"$err"; then
		ktap_print_msg "expected '$expect', kernel log: ${err:-(nothing from vmcache)}"
		return 1
	fi
	ktap_print_msg "$(head -n 1 <<<"$err" | sed 's/.*vmcache: //')"
	after=$(meta_md5)
	if [ "$before" != "$after" ]; then
		ktap_print_msg "the refused load changed the cache's metadata"
		return 1
	fi
}

# ------------------------------------------------ on-disk metadata tools

# Layout (vmcache_ondisk.h): superblock slots at bytes 0 and 4096; mapping
# area A from page 2, area B after it, nr_mpages pages each.
SB_SEQ=56	# le64
SB_VERSION=24	# le32
SB_UUID=64	# 16 bytes
SB_NR_MPAGES=84	# le32

page_get() { # <page> <file>
	dd if="$CACHE" of="$2" bs=4096 skip="$1" count=1 iflag=direct status=none
}

page_put() { # <page> <file>
	dd if="$2" of="$CACHE" bs=4096 seek="$1" count=1 oflag=direct status=none
}

u32_at() { # <file> <offset>
	od -An -tu4 -j "$2" -N 4 "$1" | tr -d ' '
}

u64_at() {
	od -An -tu8 -j "$2" -N 8 "$1" | tr -d ' '
}

# put_le32 <file> <offset> <value>
put_le32() {
	local v=$3
	# shellcheck disable=SC2059 # the format is the binary data
	printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $((v & 255)) $(((v >> 8) & 255)) \
		$(((v >> 16) & 255)) $(((v >> 24) & 255)))" |
		dd of="$1" bs=1 seek="$2" count=4 conv=notrunc status=none
}

flip_byte() { # <file> <offset>
	local b
	b=$(od -An -tu1 -j "$2" -N 1 "$1" | tr -d ' ')
	# shellcheck disable=SC2059 # the format is the binary data
	printf "$(printf '\\x%02x' $(((b ^ 0xff) & 255)))" |
		dd of="$1" bs=1 seek="$2" count=1 conv=notrunc status=none
}

CRC_TABLE=()
crc_init() {
	local i j c
	for ((i = 0; i < 256; i++)); do
		c=$i
		for ((j = 0; j < 8; j++)); do
			if ((c & 1)); then
				c=$(((c >> 1) ^ 0x82F63B78))
			else
				c=$((c >> 1))
			fi
		done
		CRC_TABLE[i]=$c
	done
}

# CRC-32C of a file (seed ~0, final inversion), decimal
crc32c_of() {
	local c=0xFFFFFFFF b
	[ "${#CRC_TABLE[@]}" -eq 256 ] || crc_init
	for b in $(od -An -v -tu1 "$1"); do
		c=$((CRC_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)))
	done
	echo $((c ^ 0xFFFFFFFF))
}

# the checksum a superblock page should carry (csum field counted as zero)
sb_csum_of() { # <page file>
	cp "$1" "$tmp/csum_page" && put_le32 "$tmp/csum_page" 0 0 &&
	crc32c_of "$tmp/csum_page"
}

sb_resum() { # <page file>: fix the checksum after an edit
	put_le32 "$1" 0 "$(sb_csum_of "$1")"
}

sb_valid() { # <page file>
	[ "$(u32_at "$1" 0)" = "$(sb_csum_of "$1")" ]
}

# mapping pages per area, from superblock slot 0 (set in the main shell:
# the cases run in subshells)
NR_MPAGES=
read_geometry() {
	page_get 0 "$tmp/sb0" && NR_MPAGES=$(u32_at "$tmp/sb0" $SB_NR_MPAGES) &&
		[ "$NR_MPAGES" -gt 0 ]
}

meta_pages() { # superblocks and both mapping areas
	echo $((2 + 2 * NR_MPAGES))
}

meta_md5() {
	dd if="$CACHE" bs=4096 count="$(meta_pages)" iflag=direct status=none | md5sum | cut -d' ' -f1
}

meta_backup() {
	dd if="$CACHE" of="$tmp/meta.bak" bs=4096 count="$(meta_pages)" iflag=direct status=none
}

meta_restore() {
	dd if="$tmp/meta.bak" of="$CACHE" bs=4096 oflag=direct status=none
}

# ------------------------------------------------------------- phase 1

phase1_prepare() {
	local n
	# fresh images are zero; the reference data goes to the store, the
	# hot set onto the origin
	zeros "$CACHE" 0 8 || return 1
	for n in P1 H P2 P3 P4 P5 P6 Q R; do
		make_pattern "$tmp/$n" $(((${KIB[$n]} + 1023) / 1024)) &&
		truncate -s $((${KIB[$n]} * 1024)) "$tmp/$n" &&
		dd if="$tmp/$n" of="$STORE" bs=64k seek=$((${STORE_MIB[$n]} * 16)) \
			oflag=direct conv=fsync status=none || return 1
	done
	# shellcheck disable=SC2004 # DEV_MIB is associative: keep the ${}
	dd if="$tmp/H" of="$ORIGIN" bs=64k seek=$((${DEV_MIB[H]} * 16)) oflag=direct conv=fsync status=none
}

phase1_create() {
	dmesg_mark
	create "$WB_OPTS" || return 1
	dmesg_contains "vmcache: $NAME: formatted cache device" ||
		{ ktap_print_msg "no 'formatted cache device' line"; return 1; }
}

# P1 only in the cache: dirty, the origin still zero
phase1_p1() {
	put P1 conv=fsync &&
	expect blocks_dirty="$P1_BLOCKS" blocks_used="$P1_BLOCKS" write_misses="$P1_BLOCKS" &&
	same "$DEV" P1 && zeros "$ORIGIN" "${DEV_MIB[P1]}" "${KIB[P1]}"
}

phase1_hot() {
	msg stats reset && read_hot && wait_promotions "$HOT_BLOCKS" &&
	expect read_misses="$HOT_BLOCKS" promotions="$HOT_BLOCKS" \
		blocks_used=$((P1_BLOCKS + HOT_BLOCKS)) blocks_dirty="$P1_BLOCKS"
}

phase1_reload() {
	remove || return 1
	dmesg_mark
	create "$WB_OPTS" || return 1
	expect blocks_used=$((P1_BLOCKS + HOT_BLOCKS)) blocks_dirty="$P1_BLOCKS" || return 1
	dmesg_contains "vmcache: $NAME: loaded $((P1_BLOCKS + HOT_BLOCKS)) cached blocks, $P1_BLOCKS dirty" || {
		ktap_print_msg "no 'loaded ... cached blocks' line: $(dmesg_since_mark | grep vmcache)"
		return 1
	}
}

phase1_after_reload() {
	msg stats reset && same "$DEV" P1 &&
	expect read_hits="$P1_BLOCKS" read_misses=0 &&
	zeros "$ORIGIN" "${DEV_MIB[P1]}" "${KIB[P1]}"
}

# P3 over the first half of P1 (hits, dirty count unchanged), P2 new
phase1_more() {
	msg stats reset && put P3 conv=fsync &&
	expect write_hits=256 write_misses=0 blocks_dirty="$P1_BLOCKS" &&
	put P2 conv=fsync &&
	expect write_misses=256 blocks_dirty=$((P1_BLOCKS + 256)) \
		blocks_used=$((P1_BLOCKS + HOT_BLOCKS + 256))
}

# ------------------------------------------------------------- phase 2

D_FLUSHED=$((P1_BLOCKS + 256))
U_FLUSHED=$((P1_BLOCKS + HOT_BLOCKS + 256))

phase2_wrong_origin() {
	dm_exists vmc_small || return 1
	refused "Cache holds dirty data of a different origin (size differs)" \
		"0 $((OSZ - 8192)) vmcache $CACHE /dev/mapper/vmc_small $WB_OPTS"
}

phase2_must_exist_blank() {
	[ -b /dev/ram0 ] || return 1
	dmesg_mark
	if dmsetup create vmc_blank --table "0 $OSZ vmcache /dev/ram0 $ORIGIN 2 must_exist 1" 2>/dev/null; then
		ktap_print_msg "blank device accepted with must_exist 1"
		dm_remove vmc_blank
		return 1
	fi
	dmesg_contains "vmcache: Cache device is blank and must_exist is set" || {
		ktap_print_msg "kernel log: $(dmesg_since_mark | grep vmcache)"
		return 1
	}
	zeros /dev/ram0 0 1024 || { ktap_print_msg "the blank device was written"; return 1; }
}

# the unflushed P4 blocks: each reads back as P4 (then it is dirty) or as
# zeros (it never reached the metadata); $tmp/k4 = how many made it
phase2_counts() {
	local i k=0 bad=0 used dirty
	ref P4 || return 1
	region "$DEV" "${DEV_MIB[P4]}" "${KIB[P4]}" >"$tmp/p4" || return 1
	for ((i = 0; i < P4_BLOCKS; i++)); do
		dd if="$tmp/p4" bs=4k skip="$i" count=1 status=none >"$tmp/b"
		if cmp -s "$tmp/b" <(dd if="$tmp/P4" bs=4k skip="$i" count=1 status=none); then
			k=$((k + 1))
		elif ! cmp -s "$tmp/b" <(head -c 4096 /dev/zero); then
			ktap_print_msg "unflushed block $i is neither the old nor the new data"
			bad=1
		fi
	done
	echo "$k" >"$tmp/k4"
	used=$(st blocks_used)
	dirty=$(st blocks_dirty)
	ktap_print_msg "after the power cut: $k of $P4_BLOCKS unflushed blocks made it; blocks_dirty=$dirty blocks_used=$used (flushed: $D_FLUSHED dirty, $U_FLUSHED used)"
	[ "$bad" -eq 0 ] && [ "$dirty" -eq $((D_FLUSHED + k)) ] &&
		[ "$used" -eq $((U_FLUSHED + k)) ]
}

phase2_flushed_data() {
	same "$DEV" P3 && same "$DEV" P1 1024 1024 && same "$DEV" P2
}

# the flushed data came from the cache: nothing was written back
phase2_origin_untouched() {
	zeros "$ORIGIN" "${DEV_MIB[P1]}" "${KIB[P1]}" && zeros "$ORIGIN" "${DEV_MIB[P2]}" "${KIB[P2]}"
}

phase2_drain() {
	local dirty
	dirty=$(st blocks_dirty)
	msg stats reset && drain && expect writeback_done="$dirty" blocks_dirty=0
}

device_equals_origin() { # into $tmp/dev.md5 before remove
	region "$DEV" 0 $((COMPARE_MIB * 1024)) | md5sum | cut -d' ' -f1 >"$tmp/dev.md5"
}

origin_check() {
	local k
	same "$ORIGIN" P3 && same "$ORIGIN" P1 1024 1024 && same "$ORIGIN" P2 &&
	same "$ORIGIN" H || return 1
	[ "$(region "$ORIGIN" 0 $((COMPARE_MIB * 1024)) | md5sum | cut -d' ' -f1)" = "$(cat "$tmp/dev.md5")" ] ||
		{ ktap_print_msg "origin differs from what the device returned"; return 1; }
	k=$(cat "$tmp/k4" 2>/dev/null || echo '?')
	ktap_print_msg "origin: flushed data, hot set and $k unflushed blocks exact"
}

# ------------------------------------------------------------- phase 3

# try_load <what to check once loaded>: create, check, remove
try_load() {
	create "$WT_OPTS" || return 1
	eval "$1" || { remove; return 1; }
	remove
}

loaded_intact() {
	expect blocks_dirty=0 blocks_used="$(cat "$tmp/used")" metadata=ok &&
	hot_is_cached && phase2_flushed_data
}

sb_self_check() {
	local s
	for s in 0 1; do
		page_get "$s" "$tmp/sb$s" || return 1
		if ! sb_valid "$tmp/sb$s"; then
			ktap_print_msg "slot $s: stored csum $(u32_at "$tmp/sb$s" 0), computed $(sb_csum_of "$tmp/sb$s")"
			return 1
		fi
		ktap_print_msg "slot $s: seq $(u64_at "$tmp/sb$s" $SB_SEQ), csum ok"
	done
}

# corrupt_slots <slot...>: one uuid byte flipped (checksum no longer holds)
corrupt_slots() {
	local s
	for s in "$@"; do
		page_get "$s" "$tmp/p" && flip_byte "$tmp/p" $((SB_UUID + 3)) && page_put "$s" "$tmp/p" || return 1
	done
}

one_slot_case() { # <slot>
	meta_backup && corrupt_slots "$1" || return 1
	try_load loaded_intact || return 1
	# the commits of that load rewrote the bad slot
	page_get "$1" "$tmp/p" && sb_valid "$tmp/p" ||
		{ ktap_print_msg "slot $1 still bad after a load and remove"; return 1; }
}

both_slots_case() {
	meta_backup && corrupt_slots 0 1 || return 1
	refused "Superblock checksum mismatch" "0 $OSZ vmcache $CACHE $ORIGIN $WT_OPTS"
	local rc=$?
	meta_restore
	return "$rc"
}

version_case() {
	local s rc
	meta_backup || return 1
	for s in 0 1; do
		page_get "$s" "$tmp/p" && put_le32 "$tmp/p" $SB_VERSION 2 && sb_resum "$tmp/p" &&
			page_put "$s" "$tmp/p" || return 1
	done
	refused "Unsupported metadata version" "0 $OSZ vmcache $CACHE $ORIGIN $WT_OPTS"
	rc=$?
	meta_restore
	return "$rc"
}

# mapping page 0 in area A (page 2) and in area B (page 2 + nr_mpages)
mpage_slots() {
	echo 2 $((2 + NR_MPAGES))
}

mpage_both_case() {
	local p rc
	meta_backup || return 1
	for p in $(mpage_slots); do
		page_get "$p" "$tmp/p" && flip_byte "$tmp/p" 100 && page_put "$p" "$tmp/p" || return 1
	done
	refused "Mapping page corrupt in both copies" "0 $OSZ vmcache $CACHE $ORIGIN $WT_OPTS"
	rc=$?
	meta_restore
	return "$rc"
}

# the copy of mapping page 0 with the lower seq is not the one in use
mpage_older_case() {
	local a b old
	read -r a b <<<"$(mpage_slots)"
	page_get "$a" "$tmp/pa" && page_get "$b" "$tmp/pb" || return 1
	old=$a
	[ "$(u64_at "$tmp/pb" 8)" -lt "$(u64_at "$tmp/pa" 8)" ] && old=$b
	ktap_print_msg "mapping page 0: seq $(u64_at "$tmp/pa" 8) in area A, $(u64_at "$tmp/pb" 8) in area B; damaging page $old"
	meta_backup && page_get "$old" "$tmp/p" && flip_byte "$tmp/p" 100 && page_put "$old" "$tmp/p" || return 1
	try_load loaded_intact && return 0
	meta_restore
	return 1
}

# ------------------------------------------------------------- phase 4

# the writethrough part left nothing dirty (the Q blocks: see below)
# The newest valid superblock says FLUX: 1 or 0 (before the cache loads)
SB_FLAGS=4	# le32
SB_FLUX=4
flux_on_disk() {
	local sl best=-1 seq=0
	for sl in 0 1; do
		page_get "$sl" "$tmp/cut$sl" && sb_valid "$tmp/cut$sl" || continue
		if [ "$best" -lt 0 ] || [ "$(u64_at "$tmp/cut$sl" $SB_SEQ)" -gt "$seq" ]; then
			best=$sl
			seq=$(u64_at "$tmp/cut$sl" $SB_SEQ)
		fi
	done
	[ "$best" -ge 0 ] || return 1
	echo $((($(u32_at "$tmp/cut$best" $SB_FLAGS) & SB_FLUX) ? 1 : 0))
}

# Without FLUX on disk at the cut nothing is dirty, or only the Q blocks
# (their dirty bits committed).  With it (the commit that set FLUX for the
# Q writes was durable, the one clearing it a quiet second later was not)
# every cached block is dirty at load, the cache copy winning: each is
# dirty or already written back.
phase4_counts() {
	local d kv used=0 wbdone=0 dirty=0
	if [ "$FLUX_AT_CUT" = 1 ]; then
		for kv in $(dmsetup status "$NAME" | cut -d' ' -f4-); do
			case $kv in
			blocks_used=*) used=${kv#*=} ;;
			blocks_dirty=*) dirty=${kv#*=} ;;
			writeback_done=*) wbdone=${kv#*=} ;;
			esac
		done
		ktap_print_msg "FLUX at the cut: $used blocks cached, $dirty dirty, $wbdone written back"
		[ "$used" -gt 0 ] && [ $((dirty + wbdone)) -eq "$used" ] || return 1
	else
		d=$(st blocks_dirty)
		[ "$d" = 0 ] || [ "$d" = "$Q_BLOCKS" ] || { expect blocks_dirty=0; return 1; }
	fi
	expect metadata=ok
}

phase4_data() {
	local i
	same "$DEV" P5 || return 1
	# unflushed writethrough data: the device agrees with the origin,
	# block by block old (zero) or new
	region "$DEV" "${DEV_MIB[P6]}" "${KIB[P6]}" >"$tmp/d6" &&
	region "$ORIGIN" "${DEV_MIB[P6]}" "${KIB[P6]}" >"$tmp/o6" &&
	compare_bytes "$tmp/d6" "$tmp/o6" || return 1
	ref P6
	# shellcheck disable=SC2004 # KIB is associative: keep the ${}
	for ((i = 0; i < ${KIB[P6]} / 4; i++)); do
		dd if="$tmp/d6" bs=4k skip="$i" count=1 status=none >"$tmp/b"
		cmp -s "$tmp/b" <(dd if="$tmp/P6" bs=4k skip="$i" count=1 status=none) ||
			cmp -s "$tmp/b" <(head -c 4096 /dev/zero) ||
			{ ktap_print_msg "P6 block $i is neither old nor new"; return 1; }
	done
}

# The cache disk under a two-segment table: the metadata region (up to
# data_start) and the data region, both linear; "stall" delays writes to
# the metadata region by 5 s.  Data writes that need no commit go through
# at once; those that do (a clean block turned dirty, a clean copy
# dropped) wait for it, so the power cut finds them committed.
SB_DATA_START=96	# le64, sectors
cstack_table() { # linear|stall
	local ds csz head
	ds=$(u64_at "$tmp/sb0" $SB_DATA_START)
	csz=$(dev_sectors "$CACHE")
	head="0 $ds linear $CACHE 0"
	[ "$1" = stall ] && head="0 $ds delay $CACHE 0 0 $CACHE 0 5000"
	printf '%s\n%s\n' "$head" "$ds $((csz - ds)) linear $CACHE $ds"
}

cstack_create() {
	modprobe dm-delay && page_get 0 "$tmp/sb0" &&
	cstack_table linear | dmsetup create vmc_cstack && wait_for_dev /dev/mapper/vmc_cstack
}

create_on_stack() {
	dm_create "$NAME" "0 $OSZ vmcache /dev/mapper/vmc_cstack $ORIGIN $WT_OPTS"
}

# commits stall; R over clean cached blocks in passthrough (to the origin,
# the cached copy dropped), Q over others in writeback (cache only)
# shellcheck disable=SC2004 # DEV_MIB is associative: keep the ${}
overwrite_clean_stalled() {
	msg commit && cstack_table stall | dmsetup reload vmc_cstack &&
	dmsetup resume vmc_cstack && msg stats reset || return 1
	ktap_print_msg "commits stalled from seq $(st seq)"
	ref R && msg mode passthrough &&
	dd if="$tmp/R" of="$DEV" bs=64k seek=$((${DEV_MIB[H]} * 16 + 1)) oflag=direct status=none &&
	expect write_hits="$Q_BLOCKS" blocks_dirty=0 || return 1
	# hold writeback off: the overwrites wait for commits (stalled), and
	# idle-time writeback would clean them before the checks
	msg set writeback_high 100 && msg set writeback_low 100 &&
	msg set max_dirty_age 0 &&
	msg mode writeback && msg stats reset && put Q &&
	expect write_hits="$Q_BLOCKS" write_misses=0 blocks_dirty="$Q_BLOCKS"
}

# After the power cut the Q blocks are either dirty with Q (the dirty bits
# were durable before the data was overwritten) or, if the metadata still
# calls them clean, the device returns what the origin holds.  The R blocks
# went to the origin: the device returns what the origin holds.  A clean
# block never returns data the origin does not have.
phase4_clean_means_clean() {
	local dirty rc=0
	# FLUX made every block dirty at load: checked once written back
	if [ "$FLUX_AT_CUT" = 1 ]; then
		drain || return 1
	fi
	dirty=$(st blocks_dirty)
	region "$DEV" "${DEV_MIB[Q]}" 128 >"$tmp/d" &&
	region "$ORIGIN" "${DEV_MIB[Q]}" 128 >"$tmp/o" && ref Q && ref R && ref H || return 1
	dd if="$tmp/d" bs=4k count="$Q_BLOCKS" status=none >"$tmp/dq"
	dd if="$tmp/o" bs=4k count="$Q_BLOCKS" status=none >"$tmp/oq"
	dd if="$tmp/d" bs=4k skip="$Q_BLOCKS" status=none >"$tmp/dr"
	dd if="$tmp/o" bs=4k skip="$Q_BLOCKS" status=none >"$tmp/or"
	ktap_print_msg "blocks_dirty=$dirty"
	ktap_print_msg "writeback Q blocks: device $(what "$tmp/dq" "$tmp/Q" "$tmp/H"), origin $(what "$tmp/oq" "$tmp/Q" "$tmp/H")"
	ktap_print_msg "passthrough R blocks: device $(what "$tmp/dr" "$tmp/R" "$tmp/H" $R_SKIP), origin $(what "$tmp/or" "$tmp/R" "$tmp/H" $R_SKIP)"
	if [ "$dirty" = 0 ] && ! cmp -s "$tmp/dq" "$tmp/oq"; then
		ktap_print_msg "Q: nothing is dirty, yet the cache serves data the origin does not have"
		rc=1
	elif [ "$dirty" != 0 ] && { [ "$dirty" != "$Q_BLOCKS" ] || ! cmp -s "$tmp/dq" "$tmp/Q"; }; then
		ktap_print_msg "Q: $dirty blocks dirty: only the $Q_BLOCKS Q blocks, holding Q, may be"
		rc=1
	fi
	if ! cmp -s "$tmp/dr" "$tmp/or"; then
		ktap_print_msg "R: the device does not return what the origin holds"
		rc=1
	fi
	return "$rc"
}

# what <data> <new> <old> [<KiB into old>]: "new", "old" or "other"
what() {
	local n
	n=$(stat -c %s "$1")
	if cmp -s "$1" "$2"; then
		echo "new"
	elif cmp -s "$1" <(dd if="$3" bs=1k skip="${4:-0}" count=$((n / 1024)) status=none); then
		echo "old (hot set)"
	else
		echo "other"
	fi
}

# invalidate drops clean blocks: what the device returns must not change
invalidate_changes_nothing() {
	region "$DEV" "${DEV_MIB[H]}" "${KIB[H]}" | md5sum >"$tmp/before" &&
	msg invalidate &&
	region "$DEV" "${DEV_MIB[H]}" "${KIB[H]}" | md5sum >"$tmp/after" || return 1
	cmp -s "$tmp/before" "$tmp/after" || {
		ktap_print_msg "the hot set region reads differently after invalidate"
		return 1
	}
}

# Suspend and resume the same table (no reload), twice: the sysfs
# directory goes and comes back, metadata is committed, the cache stays
# warm.  Last in the last phase: a kernel BUG here leaves the device
# hanging any later dm call, so the test then resets the guest.
SYSFS=/sys/module/dm_vmcache/caches/$NAME
suspend_resume() {
	local i seq rc=0
	read_hot_tail && wait_promotions 0 || return 1
	for i in 1 2; do
		seq=$(st seq)
		dmsetup suspend "$NAME" || return 1
		[ -e "$SYSFS" ] && { ktap_print_msg "$SYSFS still there while suspended"; rc=1; }
		dmesg_mark
		dmsetup resume "$NAME" || { ktap_print_msg "resume $i failed"; rc=1; }
		if dmesg_contains 'kernel BUG|Oops|general protection|Call Trace'; then
			ktap_print_msg "kernel log after resume $i:"
			ktap_print_msg "$(dmesg_since_mark | grep -E 'BUG|Oops|kobject|RIP:|vmc_' | head -n 12)"
			touch "$tmp/kernel_broken"
			return 1
		fi
		[ -d "$SYSFS" ] || { ktap_print_msg "$SYSFS missing after resume $i"; rc=1; }
		[ "$(st seq)" -gt "$seq" ] || { ktap_print_msg "no commit at suspend $i"; rc=1; }
		hot_tail_cached && same "$DEV" P5 || rc=1
	done
	return "$rc"
}

# ---------------------------------------------------------------- main

OSZ=$(dev_sectors "$ORIGIN")
PHASE=${VMCACHE_PHASE:-1}
DMESG_START="vmcache_persist-$PHASE-start-$$-$RANDOM"
echo "$DMESG_START" >/dev/kmsg
ktap_print_header

case $PHASE in
1)
	PLAN=9
	ktap_set_plan "$PLAN"
	ktap_test_result "phase 1: fresh disks, reference data stored, hot set on the origin" phase1_prepare
	ktap_test_result "writeback cache created on the blank cache disk (formatted)" phase1_create
	ktap_test_result "2 MiB written with fsync: $P1_BLOCKS dirty blocks, data in the cache only" phase1_p1
	ktap_test_result "hot set read: $HOT_BLOCKS misses, all promoted" phase1_hot
	ktap_test_result "remove and recreate with the same table: same used and dirty counts" phase1_reload
	ktap_test_result "after the reload: the data reads back from the cache (hits), origin untouched" phase1_after_reload
	ktap_test_result "after the reload: hot set reads are all hits" hot_is_cached
	ktap_test_result "more writes with fsync: rewrites are hits, $D_FLUSHED dirty" phase1_more
	ktap_test_result "kernel log clean" check_dmesg_clean
	note_write "phase1: $(status_line)"
	[ "$KTAP_CNT_FAIL" -eq 0 ] || ktap_finished "$PLAN"
	# unflushed writes, then the power cut with the device still active
	put P4
	VMCACHE_CLEANUP=()
	ktap_crash_now
	;;
2)
	PLAN=12
	ktap_set_plan "$PLAN"
	ktap_print_msg "before the power cut: $(note_read)"
	read_geometry || ktap_exit_fail_msg "cannot read the superblock"
	setup_linear vmc_small "$ORIGIN" $((OSZ - 8192)) || true
	ktap_test_result "a cache with dirty data refused for an origin of another size, metadata untouched" phase2_wrong_origin
	dm_remove vmc_small && cleanup_pop
	setup_brd 1 16 || true
	ktap_test_result "must_exist 1 refuses a blank cache device and does not write it" phase2_must_exist_blank
	if create "${WB_OPTS/#10 /12 } must_exist 1"; then
		ktap_test_pass "reassembled after the power cut with must_exist 1"
	else
		ktap_test_fail "reassembled after the power cut with must_exist 1"
	fi
	ktap_test_result "dirty count exact: the flushed dirty blocks plus the unflushed ones that made it" phase2_counts
	ktap_test_result "the flushed data reads back exactly" phase2_flushed_data
	ktap_test_result "the origin never saw it: it came from the cache" phase2_origin_untouched
	ktap_test_result "the hot set is still cached: all hits" hot_is_cached
	ktap_test_result "flush: every dirty block written back" phase2_drain
	ktap_test_result "device read over the first $COMPARE_MIB MiB" device_equals_origin
	st blocks_used >"$tmp/used" || true
	note_write "used=$(cat "$tmp/used") k4=$(cat "$tmp/k4" 2>/dev/null)"
	ktap_test_result "remove" remove
	ktap_test_result "origin: the flushed data, the hot set, and all of the first $COMPARE_MIB MiB as the device returned it" origin_check
	DMESG_MARK=$DMESG_START
	ktap_test_result "kernel log clean" check_dmesg_clean
	ktap_finished "$PLAN"
	;;
3)
	PLAN=14
	ktap_set_plan "$PLAN"
	notes=$(note_read)
	ktap_print_msg "phase 2 left: $notes"
	used=${notes#used=}
	echo "${used%% *}" >"$tmp/used"
	k=${notes##*k4=}
	echo "$k" >"$tmp/k4"
	read_geometry || ktap_exit_fail_msg "cannot read the superblock"
	ktap_print_msg "cache: $NR_MPAGES mapping pages per area"
	ktap_test_result "crc32c of both superblocks recomputed by the test matches" sb_self_check
	ktap_test_result "clean cache loads (writethrough), data and hot set intact" try_load loaded_intact
	ktap_test_result "superblock slot 0 corrupted: loads from slot 1, intact; slot 0 rewritten" one_slot_case 0
	ktap_test_result "superblock slot 1 corrupted: loads from slot 0, intact; slot 1 rewritten" one_slot_case 1
	ktap_test_result "both superblock slots corrupted: refused (checksum), nothing written" both_slots_case
	ktap_test_result "metadata version 2 (valid checksums): refused, nothing written" version_case
	ktap_test_result "block_size 8192 against a 4096 cache: refused" \
		refused "Block size differs from the one on the cache device" "0 $OSZ vmcache $CACHE $ORIGIN 6 block_size 8192 mode writethrough sequential_cutoff 0"
	if setup_linear vmc_small "$ORIGIN" $((OSZ - 8192)); then
		ktap_test_result "clean cache, origin of another size: refused" \
			refused "Cache belongs to a different origin (size differs)" "0 $((OSZ - 8192)) vmcache $CACHE /dev/mapper/vmc_small $WT_OPTS"
		dm_remove vmc_small && cleanup_pop
	else
		ktap_test_fail "clean cache, origin of another size: refused"
	fi
	ktap_test_result "mapping page 0 corrupt in both copies: refused, nothing written" mpage_both_case
	ktap_test_result "the older copy of mapping page 0 damaged: loads, intact" mpage_older_case
	ktap_test_result "after all that the cache still loads, intact" try_load loaded_intact
	DMESG_MARK=$DMESG_START
	ktap_test_result "kernel log clean" check_dmesg_clean
	# writethrough, flushed and unflushed writes, hot set read, over a
	# cache stack whose metadata region can be stalled
	if cstack_create && create_on_stack && put P5 conv=fsync && read_hot && put P6 &&
	   expect blocks_dirty=0; then
		ktap_test_pass "writethrough: data written (with and without fsync), hot set read"
	else
		ktap_test_fail "writethrough: data written (with and without fsync), hot set read"
	fi
	# writeback over clean cached blocks while no commit can complete
	ktap_test_result "clean cached blocks overwritten (no fsync) in passthrough and writeback while metadata writes stall" \
		overwrite_clean_stalled
	[ "$KTAP_CNT_FAIL" -eq 0 ] || ktap_finished "$PLAN"
	VMCACHE_CLEANUP=()
	ktap_crash_now
	;;
4)
	PLAN=9
	ktap_set_plan "$PLAN"
	FLUX_AT_CUT=$(flux_on_disk) || FLUX_AT_CUT=unknown
	ktap_print_msg "FLUX in the durable superblock at the cut: $FLUX_AT_CUT"
	if create "$WT_OPTS"; then
		ktap_test_pass "writethrough cache reassembled after the power cut"
	else
		ktap_test_fail "writethrough cache reassembled after the power cut"
	fi
	ktap_test_result "after a power cut in writethrough: nothing dirty, the committed Q blocks, or (FLUX) every block" phase4_counts
	ktap_test_result "flushed data exact; unflushed data the same on device and origin" phase4_data
	ktap_test_result "clean blocks overwritten (passthrough, writeback) before the cut: clean data is the origin's" \
		phase4_clean_means_clean
	ktap_test_result "the hot set is still cached: all hits" hot_tail_cached
	ktap_test_result "invalidate: the device returns the same data before and after" invalidate_changes_nothing
	ktap_test_result "suspend and resume the same table twice: sysfs directory gone and back, committed, cache warm" \
		suspend_resume
	if [ -e "$tmp/kernel_broken" ]; then
		# any further dm call on the device would hang: reset instead
		VMCACHE_CLEANUP=()
		ktap_crash_now
	fi
	if device_equals_origin && remove && [ "$(region "$ORIGIN" 0 $((COMPARE_MIB * 1024)) | md5sum | cut -d' ' -f1)" = "$(cat "$tmp/dev.md5")" ]; then
		ktap_test_pass "remove; device and origin agree over the first $COMPARE_MIB MiB"
	else
		ktap_test_fail "remove; device and origin agree over the first $COMPARE_MIB MiB"
	fi
	DMESG_MARK=$DMESG_START
	ktap_test_result "kernel log clean" check_dmesg_clean
	ktap_finished "$PLAN"
	;;
esac
