#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Races and power cuts at awkward moments, each made deterministic:
#
#   dm-vmcache "vc"
#     cache:  dm-delay "dc" (slow writes keep a write or a commit in flight)
#             -> dm-linear "cut_c" -> /dev/ram0
#     origin: dm-linear "cut_o" -> /dev/ram1
#
# power_cut freezes cut_c and cut_o and reloads them to drop every later
# write: /dev/ram0 and /dev/ram1 then hold what a power cut at that instant
# would have left; reboot() puts a new vmcache over them.  Every case here
# failed on the code before the fixes it names (Documentation/vmcache.rst,
# "Guarantees"; the trust issue's items in brackets).
. "$(dirname "$0")/lib.sh"

require_vmcache
require_cmd dd cmp blkdiscard sync
require_module brd dm-delay dm-flakey dm-zero null_blk

NAME=vc
MIB=64
DEV=/dev/mapper/$NAME
TMP=$(mktemp -d)
cleanup_push "rm -rf $TMP"
WB_HELD="mode writeback writeback_low 100 writeback_high 100 max_dirty_age 0"
# I/O held in dm-delay must still be in flight when the next step comes:
# VMCACHE_DELAY_SCALE stretches those delays on slow kernels (the debug
# kernel sets 4)
SLOW=${VMCACHE_DELAY_SCALE:-1}

setup_brd 2 "$MIB" || ktap_exit_fail_msg "brd"
SECTORS=$(dev_sectors /dev/ram0)

# wr <file> <block> [dd flags]: write 4 KiB of <file> at block <block>
wr() {
	dd if="$1" of="$DEV" bs=4096 seek="$2" count=1 \
		oflag=direct"${3:+,$3}" conv=notrunc status=none
}

# rd <dev> <block> <out>: read 4 KiB
rd() {
	dd if="$1" of="$3" bs=4096 skip="$2" count=1 iflag=direct status=none
}

pattern() { # <file> [<KiB>]
	dd if=/dev/urandom of="$1" bs=1K count="${2:-4}" status=none
}

# reboot [<vmcache options>]: after power_cut, the cache comes back over
# what the devices kept (must_exist: it must load, not format)
reboot() {
	stack_down
	stack_up 0 "must_exist 1 ${1:-mode writeback}"
}

# data_start: first sector of cache block 0 (metadata pages, 1 MiB aligned)
data_start() {
	echo $((($(st metadata_total) * 8 + 2047) / 2048 * 2048))
}

# stable_block <block> <expect-file or ->: a read, then the same read after
# every clean copy was dropped and every dirty one written back, agree
stable_block() {
	local b=$1 want=$2
	rd "$DEV" "$b" "$TMP/r1" || return 1
	msg invalidate && drain && msg invalidate || return 1
	rd "$DEV" "$b" "$TMP/r2" || return 1
	rd /dev/ram1 "$b" "$TMP/r3" || return 1
	compare_bytes "$TMP/r1" "$TMP/r2" || {
		ktap_print_msg "block $b read one version, then another"
		return 1
	}
	compare_bytes "$TMP/r2" "$TMP/r3" || return 1
	[ "$want" = - ] || compare_bytes "$TMP/r1" "$want"
}

# VMCACHE_TRUST_SKIP=1,5: case numbers reported as skipped (to run the
# rest against an older module, where case 1 hangs).
VMCACHE_TRUST_SKIP=${VMCACHE_TRUST_SKIP-}
CASE=0
run_case() { # <description> <function>
	CASE=$((CASE + 1))
	if [[ ",${VMCACHE_TRUST_SKIP}," == *",$CASE,"* ]]; then
		ktap_test_skip "$1" "VMCACHE_TRUST_SKIP (case $CASE)"
	else
		ktap_test_result "$1" "$2"
	fi
}

ktap_print_header
ktap_set_plan 16
dmesg_mark

# ---------------------------------------------------------------------
# [2] a write miss overtaken by a second write to the same block: the
# first write's fill is cancelled and must not leave a dirty count behind
t_overtaken_write() {
	local pid i
	stack_up $((3000 * SLOW)) "$WB_HELD" blank || return 1
	pattern "$TMP/a"
	pattern "$TMP/b"
	wr "$TMP/a" 10 &
	pid=$!
	# the first write is mapped (a write miss) and its cache write held
	for ((i = 0; i < 100; i++)); do
		[ "$(st write_misses)" -ge 1 ] && break
		sleep 0.05
	done
	kill -0 "$pid" 2>/dev/null || { ktap_print_msg "first write not in flight"; return 1; }
	wr "$TMP/b" 10 || return 1
	wait "$pid" || return 1
	ktap_print_msg "after both writes: blocks_dirty=$(st blocks_dirty) blocks_used=$(st blocks_used)"
	drain || return 1
	stack_down
	stack_up 0 "must_exist 1 $WB_HELD" || {
		ktap_print_msg "reload failed: $(dmesg | tail -n 3)"
		return 1
	}
	rd "$DEV" 10 "$TMP/r" || return 1
	compare_bytes "$TMP/r" "$TMP/b" || compare_bytes "$TMP/r" "$TMP/a"
}
run_case "overtaken write miss: flush ends, cache reloads [2]" t_overtaken_write
stack_down

# ---------------------------------------------------------------------
# [1] a commit that wrote its pages but not its superblock: the next
# commit reuses its sequence number; its leftover page copies must never
# become valid
t_leftover_pages() {
	stack_up 0 "$WB_HELD" blank || return 1
	pattern "$TMP/p1" 2400
	dd if="$TMP/p1" of="$DEV" bs=1K oflag=direct status=none ||
		return 1
	drain && msg commit || return 1
	# superblock writes fail from now on; mapping pages still land
	dmsetup suspend cut_c &&
		dmsetup load cut_c --table "0 16 error
16 $((SECTORS - 16)) linear /dev/ram0 16" &&
		dmsetup resume cut_c || return 1
	# drops every block: both mapping pages change
	if msg invalidate 2>/dev/null; then
		ktap_print_msg "commit with a failing superblock succeeded"
		return 1
	fi
	expect metadata=fail || return 1
	stack_down
	stack_up 0 "must_exist 1 $WB_HELD" || return 1
	pattern "$TMP/q"
	wr "$TMP/q" 700 || return 1	# a mapping page the lost commit did not write
	msg commit || return 1
	stack_down
	stack_up 0 "must_exist 1 $WB_HELD" || {
		ktap_print_msg "reload failed: $(dmesg | tail -n 2)"
		return 1
	}
	dd if="$DEV" of="$TMP/r" bs=1K count=2400 iflag=direct \
		status=none || return 1
	compare_bytes "$TMP/r" "$TMP/p1" || return 1
	rd "$DEV" 700 "$TMP/r" && compare_bytes "$TMP/r" "$TMP/q"
}
run_case "interrupted commit: leftover pages never validate [1]" t_leftover_pages
stack_down

# ---------------------------------------------------------------------
# [8] a REQ_PREFLUSH arriving while a commit is under way must not
# complete before a commit holding its writes' mappings is durable
t_flush_vs_commit() {
	local i bad=0
	stack_up $((2000 * SLOW)) "$WB_HELD" blank || return 1
	for i in 1 2; do
		pattern "$TMP/w$i"
		wr "$TMP/w$i" $((100 + i)) || bad=1	# 2 s; nothing commits meanwhile
		msg commit &			# snapshot now, durable 4 s later
		sleep 1
		sync "$DEV" || bad=1		# REQ_PREFLUSH
		power_cut || bad=1
		wait
		reboot "$WB_HELD" || return 1
		rd "$DEV" $((100 + i)) "$TMP/r" || return 1
		compare_bytes "$TMP/r" "$TMP/w$i" || {
			ktap_print_msg "round $i: a flushed write is lost"
			bad=1
		}
		stack_down
		stack_up $((2000 * SLOW)) "must_exist 1 $WB_HELD" || return 1
	done
	return "$bad"
}
run_case "flush racing a commit waits for it [8]" t_flush_vs_commit
stack_down

# ---------------------------------------------------------------------
# [6] 64 KiB blocks, 4 KiB writes: a sub-block dirtied after a commit's
# snapshot must not be written as if the disk already said dirty
t_subblock_after_snapshot() {
	stack_up 0 "block_size 65536 $WB_HELD" blank || return 1
	pattern "$TMP/x" 64
	dd if="$TMP/x" of="$DEV" bs=64K count=1 oflag=direct \
		status=none || return 1
	drain || return 1
	msg commit || return 1
	# every cache write (data, pages, superblocks) now takes 4 s
	dmsetup suspend dc &&
		dmsetup load dc --table "0 $SECTORS delay /dev/mapper/cut_c 0 0 /dev/mapper/cut_c 0 4000" &&
		dmsetup resume dc || return 1
	pattern "$TMP/a"
	pattern "$TMP/b"
	pattern "$TMP/c"
	local n0 i
	n0=$(st commits)
	wr "$TMP/a" 0 &			# sub-block 0: commit n records it
	local pa=$!
	sleep 2				# n's snapshot taken, its pages in flight
	wr "$TMP/b" 2 &			# sub-block 1, after n's snapshot
	local pb=$!
	# commit n durable, n+1 (with sub-block 1) under way for 8 s
	for ((i = 0; i < 200; i++)); do
		[ "$(st commits)" -gt "$n0" ] && break
		sleep 0.05
	done
	wr "$TMP/c" 2 || return 1	# sub-block 1 again
	power_cut || return 1
	wait "$pa" "$pb"
	reboot "$WB_HELD" || return 1
	# (sub-block 0 keeps the block dirty: invalidate alone drops nothing)
	stable_block 2 "$TMP/c" || {
		ktap_print_msg "acknowledged data was marked clean: gone once the block was written back and dropped"
		return 1
	}
}
run_case "sub-block dirtied after a commit snapshot waits [6]" t_subblock_after_snapshot
stack_down

# ---------------------------------------------------------------------
# [7] writethrough over a clean block, power cut with the origin written
# and the cache copy not: reads must stay stable after recovery
t_writethrough_cut() {
	local pid i ds
	stack_up 0 "mode writethrough" blank || return 1
	pattern "$TMP/old"
	pattern "$TMP/new"
	wr "$TMP/old" 20 || return 1
	msg commit || return 1
	# cache data writes (not metadata) now take 8 s
	ds=$(data_start)
	dmsetup suspend dc &&
		dmsetup load dc --table "0 $ds delay /dev/mapper/cut_c 0 0 /dev/mapper/cut_c 0 0
$ds $((SECTORS - ds)) delay /dev/mapper/cut_c $ds 0 /dev/mapper/cut_c $ds 8000" &&
		dmsetup resume dc || return 1
	wr "$TMP/new" 20 &
	pid=$!
	for ((i = 0; i < 200; i++)); do
		rd /dev/ram1 20 "$TMP/o" && cmp -s "$TMP/o" "$TMP/new" && break
		sleep 0.1
	done
	power_cut || return 1
	wait "$pid"
	[ "$i" -lt 200 ] || { ktap_print_msg "origin never got the write"; return 1; }
	rd /dev/ram0 $((ds / 8)) "$TMP/c"
	cmp -s "$TMP/c" "$TMP/new" && { ktap_print_msg "the cache copy landed before the cut"; return 1; }
	reboot "mode writethrough" || return 1
	stable_block 20 -
}
run_case "writethrough power cut: reads stable after recovery [7]" t_writethrough_cut
stack_down

# ---------------------------------------------------------------------
# [7] the same power cut after a quiet period: nothing was in flux, so
# the warm clean set is kept as it is (nothing to write back)
t_writethrough_quiet() {
	stack_up 0 "mode writethrough" blank || return 1
	pattern "$TMP/old" 256
	dd if="$TMP/old" of="$DEV" bs=4096 oflag=direct status=none ||
		return 1
	dd if="$DEV" of=/dev/null bs=4096 count=64 iflag=direct status=none
	sleep 3				# two commit periods: FLUX cleared
	power_cut || return 1
	reboot "mode writethrough" || return 1
	expect blocks_used=64 blocks_dirty=0 || return 1
	stable_block 5 -
}
run_case "writethrough power cut after a quiet period keeps the clean set [7]" t_writethrough_quiet
stack_down

# ---------------------------------------------------------------------
# [issue 10] writeback writes over clean blocks: they wait for the one
# commit that sets FLUX, not for a commit each; a power cut before any
# commit recorded them dirty keeps every completed write (the cache copy
# wins at recovery) and reads stay stable
t_clean_overwrite_cut() {
	local n0 n
	stack_up 0 "$WB_HELD" blank || return 1
	pattern "$TMP/old" 256
	pattern "$TMP/new" 256
	dd if="$TMP/old" of="$DEV" bs=4096 oflag=direct status=none ||
		return 1
	drain && msg commit || return 1
	expect blocks_used=64 blocks_dirty=0 || return 1
	# 64 writes of 4 KiB, one at a time (a short stream: all cache hits)
	n0=$(st commits)
	dd if="$TMP/new" of="$DEV" bs=4096 oflag=direct conv=notrunc \
		status=none || return 1
	n=$(($(st commits) - n0))
	power_cut || return 1
	ktap_print_msg "64 writes over clean blocks: $n commits"
	# one for FLUX, one a second while the writes go on
	[ "$n" -le 8 ] || {
		ktap_print_msg "the writes waited for a commit each"
		return 1
	}
	reboot "$WB_HELD" || return 1
	dd if="$DEV" of="$TMP/r1" bs=4096 count=64 iflag=direct status=none &&
		msg invalidate && drain && msg invalidate &&
		dd if="$DEV" of="$TMP/r2" bs=4096 count=64 iflag=direct status=none &&
		dd if=/dev/ram1 of="$TMP/r3" bs=4096 count=64 iflag=direct status=none ||
		return 1
	compare_bytes "$TMP/r1" "$TMP/new" && compare_bytes "$TMP/r2" "$TMP/new" &&
		compare_bytes "$TMP/r3" "$TMP/new"
}
run_case "writeback writes over clean blocks share one commit; power cut keeps them [issue 10]" t_clean_overwrite_cut
stack_down

# ---------------------------------------------------------------------
# clean_set32: a writeback cache (writeback held) whose blocks 0-31 are
# clean copies of $TMP/old; $TMP/new is the next version of them
clean_set32() {
	stack_up 0 "$WB_HELD" blank || return 1
	pattern "$TMP/old" 128
	pattern "$TMP/new" 128
	dd if="$TMP/old" of="$DEV" bs=4096 oflag=direct status=none &&
		drain && msg commit &&
		expect blocks_used=32 blocks_dirty=0
}

# new_after_reboot32: after power_cut, blocks 0-31 read $TMP/new, and
# block 9 reads it again once the cache is dropped and written back
new_after_reboot32() {
	reboot "$WB_HELD" &&
		dd if="$DEV" of="$TMP/r1" bs=4096 count=32 iflag=direct status=none &&
		dd if="$TMP/new" of="$TMP/new9" bs=4096 skip=9 count=1 status=none &&
		compare_bytes "$TMP/r1" "$TMP/new" &&
		stable_block 9 "$TMP/new9"
}

# [issue 11] the same writes over clean blocks, each followed by a FUA
# write to a new block (a filesystem journal cleaned by writeback: a
# rewritten journal block, then the commit record): FLUX stays on disk
# while they go on.  Each FUA write commits its new block; a commit must
# not also drop FLUX, or the next write over a clean block waits for one
# more commit to set it again (2 commits per pair instead of 1).
t_clean_overwrite_fua() {
	local n0 n i
	clean_set32 || return 1
	pattern "$TMP/fua" 128
	n0=$(st commits)
	for ((i = 0; i < 32; i++)); do
		dd if="$TMP/new" of="$DEV" bs=4096 skip="$i" seek="$i" count=1 \
			oflag=direct conv=notrunc status=none &&
			dd if="$TMP/fua" of="$DEV" bs=4096 skip="$i" \
				seek=$((1000 + i)) count=1 oflag=direct,dsync \
				conv=notrunc status=none || return 1
	done
	n=$(($(st commits) - n0))
	power_cut || return 1
	ktap_print_msg "32 writes over clean blocks, each then a FUA write to a new block: $n commits"
	# one per FUA write, one to set FLUX, one a second at most besides
	[ "$n" -le 40 ] || {
		ktap_print_msg "FLUX went and came back between the pairs"
		return 1
	}
	new_after_reboot32 &&
		dd if="$DEV" of="$TMP/r2" bs=4096 skip=1000 count=32 \
			iflag=direct status=none &&
		compare_bytes "$TMP/r2" "$TMP/fua"
}
run_case "writes over clean blocks between FUA commits keep FLUX: no commit each [issue 11]" t_clean_overwrite_fua
stack_down

# [issue 11] a flush after writes over clean blocks: FLUX on disk already
# covers them until a commit records them dirty (recovery trusts no clean
# mark), so the flush flushes and does not commit; a power cut keeps them
t_clean_overwrite_fsync() {
	local n0 n i
	clean_set32 || return 1
	n0=$(st commits)
	for ((i = 0; i < 32; i++)); do
		dd if="$TMP/new" of="$DEV" bs=4096 skip="$i" seek="$i" count=1 \
			oflag=direct conv=notrunc,fsync status=none || return 1
	done
	n=$(($(st commits) - n0))
	power_cut || return 1
	ktap_print_msg "32 writes over clean blocks, an fsync after each: $n commits"
	# one to set FLUX, one a second at most besides
	[ "$n" -le 8 ] || {
		ktap_print_msg "each flush committed what FLUX covers"
		return 1
	}
	new_after_reboot32
}
run_case "flushes after writes over clean blocks need no commit under FLUX [issue 11]" t_clean_overwrite_fsync
stack_down

# ---------------------------------------------------------------------
# [0] table reloads while the live table commits all the time
t_reload_under_commits() {
	local i bad=0 tbl
	stack_up 5 "$WB_HELD" blank || return 1
	pattern "$TMP/p" 1024
	dd if="$TMP/p" of="$DEV" bs=4096 oflag=direct status=none ||
		return 1
	(while dm_exists "$NAME"; do
		dd if="$TMP/p" of="$DEV" bs=4096 count=16 \
			seek=$((RANDOM % 256)) oflag=direct,sync status=none 2>/dev/null
		msg commit 2>/dev/null
	done) &
	local loop=$!
	for ((i = 0; i < 12; i++)); do
		tbl=$(dmsetup table "$NAME") || bad=1
		if ! dmsetup reload "$NAME" --table "$tbl" 2>"$TMP/err"; then
			ktap_print_msg "reload $i: $(cat "$TMP/err"); $(dmesg | grep vmcache | tail -n 1)"
			bad=1
		fi
		dmsetup resume "$NAME" || bad=1
	done
	kill "$loop"
	wait "$loop" 2>/dev/null
	sleep 1				# its last dd may outlive it
	[ "$bad" = 0 ] || return 1
	ktap_print_msg "12 reloads"
	drain
}
run_case "reload under constant commits never reads a torn state [0]" t_reload_under_commits
stack_down

# ---------------------------------------------------------------------
# [0] the cause of the race above, made deterministic: between the table
# swap and the end of its first preresume, a reloaded table is the live
# one, so messages reach it while it reloads the metadata.  Slow cache
# reads (dm-delay) stretch that refresh to seconds; a commit message sent
# meanwhile must not write what a half-loaded table holds.
set_dc_read_delay() { # <ms>
	dmsetup suspend dc &&
		dmsetup load dc --table \
			"0 $SECTORS delay /dev/mapper/cut_c 0 $1 /dev/mapper/cut_c 0 0" &&
		dmsetup resume dc
}

t_message_during_first_resume() {
	local i rpid tbl sent=0
	stack_up 0 "$WB_HELD" blank || return 1
	pattern "$TMP/p" 1024
	dd if="$TMP/p" of="$DEV" bs=4096 oflag=direct status=none ||
		return 1
	expect blocks_dirty=256 || return 1
	tbl=$(dmsetup table "$NAME") || return 1
	set_dc_read_delay 300 || return 1
	dmsetup reload "$NAME" --table "$tbl" || return 1
	dmsetup resume "$NAME" &
	rpid=$!
	# a commit every 0.2 s until the resume is over (refused or done)
	for ((i = 0; i < 50; i++)); do
		kill -0 "$rpid" 2>/dev/null || break
		msg commit 2>/dev/null && sent=$((sent + 1))
		sleep 0.2
	done
	wait "$rpid" || { ktap_print_msg "resume failed: $(dmesg | grep vmcache | tail -n 2)"; return 1; }
	set_dc_read_delay 0 || return 1
	ktap_print_msg "$i commit messages during the resume, $sent accepted"
	# the metadata on disk is whole: a reload and a power cut both load it
	dmsetup reload "$NAME" --table "$tbl" || {
		ktap_print_msg "reload: $(dmesg | grep vmcache | tail -n 2)"
		return 1
	}
	dmsetup resume "$NAME" || return 1
	expect blocks_used=256 blocks_dirty=256 || return 1
	power_cut || return 1
	reboot "$WB_HELD" || {
		ktap_print_msg "load after power cut: $(dmesg | grep vmcache | tail -n 2)"
		return 1
	}
	expect blocks_used=256 blocks_dirty=256 || return 1
	dd if="$DEV" of="$TMP/r" bs=4096 count=256 iflag=direct status=none &&
		compare_bytes "$TMP/r" "$TMP/p" || return 1
	drain && msg invalidate || return 1
	dd if="$DEV" of="$TMP/r" bs=4096 count=256 iflag=direct status=none &&
		compare_bytes "$TMP/r" "$TMP/p"
}
run_case "a message to a reloaded table during its first resume [0]" t_message_during_first_resume
stack_down

# ---------------------------------------------------------------------
# [9] FUA writes to dirty blocks while writeback copies them: the origin
# ends with the newest data
t_fua_vs_writeback() {
	local i
	stack_up 0 "$WB_HELD" blank || return 1
	dm_remove "$NAME"
	cleanup_pop
	dmsetup suspend cut_o &&
		dmsetup load cut_o --table "0 $SECTORS delay /dev/ram1 0 0 /dev/ram1 0 300" &&
		dmsetup resume cut_o || return 1
	dm_create "$NAME" "$(table_of "$WB_HELD")" || return 1
	pattern "$TMP/v1" 256
	pattern "$TMP/v2" 256
	dd if="$TMP/v1" of="$DEV" bs=4096 oflag=direct status=none ||
		return 1
	msg flush || return 1
	for ((i = 0; i < 64; i++)); do
		dd if="$TMP/v2" of="$DEV" bs=4096 skip="$i" seek="$i" \
			count=1 oflag=direct,dsync conv=notrunc status=none || return 1
	done
	drain || return 1
	dd if=/dev/ram1 of="$TMP/o" bs=4096 count=64 iflag=direct status=none
	compare_bytes "$TMP/o" "$TMP/v2"
}
run_case "FUA writes racing writeback: origin holds the newest [9]" t_fua_vs_writeback
stack_down

# ---------------------------------------------------------------------
# [10] a read miss must not fill the cache from the origin while a
# writethrough write to that block is still on its way there: the cached
# copy would be older than the origin's once it lands
t_fill_vs_writethrough() {
	local ds pid
	stack_up 0 "mode writethrough" blank || return 1
	pattern "$TMP/old"
	pattern "$TMP/new"
	wr "$TMP/old" 0 || return 1		# cache block 0
	msg commit || return 1
	ds=$(data_start)
	dmsetup suspend cut_o &&
		dmsetup load cut_o --table "0 $SECTORS delay /dev/ram1 0 0 /dev/ram1 0 10000" &&
		dmsetup resume cut_o || return 1
	wr "$TMP/new" 0 &			# origin write held 10 s
	pid=$!
	sleep 0.5
	# a read hit fails on the cache: the copy is dropped, the read retried
	dmsetup suspend cut_c &&
		dmsetup load cut_c --table "0 $ds linear /dev/ram0 0
$ds 8 error
$((ds + 8)) $((SECTORS - ds - 8)) linear /dev/ram0 $((ds + 8))" &&
		dmsetup resume cut_c || return 1
	rd "$DEV" 0 "$TMP/r0" || return 1
	dmsetup suspend cut_c &&
		dmsetup load cut_c --table "0 $SECTORS linear /dev/ram0 0" &&
		dmsetup resume cut_c || return 1
	rd "$DEV" 0 "$TMP/r1" || return 1	# a miss now: no fill may start
	wait "$pid" || return 1
	sleep 0.5
	rd "$DEV" 0 "$TMP/r2" || return 1
	ktap_print_msg "promotions=$(st promotions) cache_errors=$(st cache_errors)"
	compare_bytes "$TMP/r2" "$TMP/new" || {
		ktap_print_msg "the cache serves data older than the completed write"
		return 1
	}
}
run_case "read miss never fills over a writethrough write in flight [10]" t_fill_vs_writethrough
stack_down

# ---------------------------------------------------------------------
# [11] an origin with more blocks than the 40-bit mapping entry holds is
# refused, not truncated
t_origin_too_large() {
	local big=$(((1 << 40) * 8 + 8)) out
	wipe_dev /dev/ram0 2
	dm_create zero_o "0 $big zero" || return 1
	if out=$(dmsetup create vbig --table \
		"0 $big vmcache /dev/ram0 /dev/mapper/zero_o" 2>&1); then
		dm_remove vbig
		ktap_print_msg "an origin of 2^40 + 1 blocks was accepted"
		return 1
	fi
	dmesg_contains "Origin too large" || { ktap_print_msg "$out"; return 1; }
}
run_case "origin above 2^40 blocks refused [11]" t_origin_too_large
dm_exists zero_o && dm_remove zero_o

# ---------------------------------------------------------------------
# [11] a discard of the whole device is scanned in process context, in
# steps, and drops exactly what it covers
t_wide_discard() {
	wipe_dev /dev/ram0 2
	setup_null_blk vmc_nullt 64 discard=1 || return 1
	dm_create "$NAME" "0 $SECTORS vmcache /dev/ram0 /dev/vmc_nullt 2 mode writethrough" ||
		return 1
	pattern "$TMP/p" 4096
	dd if="$TMP/p" of="$DEV" bs=1M oflag=direct status=none ||
		return 1
	expect blocks_used=1024 || return 1
	blkdiscard "$DEV" || return 1
	sleep 1.5
	expect blocks_used=0 || return 1
	dd if="$TMP/p" of="$DEV" bs=1M oflag=direct status=none &&
		dd if="$DEV" of="$TMP/r" bs=1M count=4 iflag=direct \
			status=none && compare_bytes "$TMP/r" "$TMP/p"
}
run_case "whole-device discard drops every block, data intact after [11]" t_wide_discard
stack_down

ktap_test_result "kernel log clean" check_dmesg_clean
ktap_finished 16
