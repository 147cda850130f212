#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# A flush commits only what it needs (issues 10 and 11: a database's fsync
# paid a full metadata commit, two cache flushes, because writeback had
# cleaned blocks since the last one), and a power cut before the lazy
# commit loses nothing.  Over two boots with file-backed virtio disks:
#   phase 1: lazy_commit_ms is stretched to 10 minutes; 8 MiB written
#            through a writeback cache with O_DIRECT and fsync; writeback
#            then cleans all of it (watermark 0, no drain); a flush of the
#            cache device (fsync of the block device) must then make no
#            metadata commit and one cache flush.  The guest is reset.
#   phase 2: the cache loads with all 8 MiB dirty again (the cleanings
#            were never committed), every fsync'ed byte reads back, the
#            drain ends, and the origin read directly is byte-exact.
# Before the change the flush committed (commits +1): phase 1 fails.
#
# vmcache-harness: phases=2 disks=cache:64M,origin:128M,ref:16M
set -euo pipefail
DIR=$(dirname "$0")
# shellcheck source=lib.sh
. "$DIR/lib.sh"

require_vmcache
require_cmd cmp dd

CACHE=/dev/disk/by-id/virtio-cache
ODISK=/dev/disk/by-id/virtio-origin
REF=/dev/disk/by-id/virtio-ref
for d in "$CACHE" "$ODISK" "$REF"; do
	[ -b "$d" ] || ktap_skip_all "no disk $d (run through run-in-guest.sh)"
done
NAME=vmc_lazy
DEV=/dev/mapper/$NAME
DATA_MIB=8
BLOCKS=$((DATA_MIB * 256))
PARAM=/sys/module/dm_vmcache/parameters/lazy_commit_ms
OPTS="12 mode writeback sequential_cutoff 0 writeback_low 100 writeback_high 100 max_dirty_age 0 must_exist"

tmp=$(mktemp -d)
cleanup_push "rm -rf $tmp"

read_mib() { # <dev> <MiB> <out>
	dd if="$1" bs=1M count="$2" iflag=direct status=none of="$3"
}

# same_as_ref <dev>: its first DATA_MIB equal the ref disk's
same_as_ref() {
	read_mib "$REF" "$DATA_MIB" "$tmp/ref.bin" &&
	read_mib "$1" "$DATA_MIB" "$tmp/got.bin" &&
	compare_bytes "$tmp/ref.bin" "$tmp/got.bin"
}

# flushes the cache disk has completed (iostats field 16)
cache_flushes() {
	local dev
	dev=$(basename "$(readlink -f "$CACHE")")
	awk '{ print $16 }' "/sys/block/$dev/stat"
}

create_cache() { # <must_exist 0|1>
	dm_create "$NAME" "0 $(dev_sectors "$ODISK") vmcache $CACHE $ODISK $OPTS $1"
}

ktap_print_header
dmesg_mark
case ${VMCACHE_PHASE:-1} in
1)
	ktap_set_plan 3
	if [ -w "$PARAM" ]; then
		echo 600000 >"$PARAM"
	else
		ktap_print_msg "no parameter lazy_commit_ms: the periodic commit may record the cleanings"
	fi
	make_pattern "$tmp/a" "$DATA_MIB"
	written() {
		create_cache 0 || return 1
		dd if="$tmp/a" of="$DEV" bs=1M oflag=direct conv=fsync status=none &&
			dd if="$tmp/a" of="$REF" bs=1M oflag=direct conv=fsync status=none &&
			expect blocks_dirty="$BLOCKS"
	}
	if written; then
		ktap_test_pass "phase 1: $DATA_MIB MiB written and fsync'ed, all dirty"
	else
		ktap_exit_fail_msg "phase 1: $DATA_MIB MiB written and fsync'ed, all dirty"
	fi

	# cleaning by the background writeback, not a drain (whose end commits)
	cleaned() {
		local i
		msg set writeback_low 0 || return 1
		for ((i = 0; i < 600; i++)); do
			[ "$(st blocks_dirty)" = 0 ] && return 0
			sleep 0.1
		done
		ktap_print_msg "still dirty after 60 s: $(status_line)"
		return 1
	}
	if cleaned; then
		ktap_test_pass "phase 1: writeback cleaned every block (no drain)"
	else
		ktap_exit_fail_msg "phase 1: writeback cleaned every block (no drain)"
	fi

	c0=$(st commits)
	f0=$(cache_flushes)
	dd if=/dev/null of="$DEV" conv=fsync,notrunc status=none
	c1=$(st commits)
	f1=$(cache_flushes)
	ktap_print_msg "the flush: commits $c0 -> $c1, cache disk flushes $f0 -> $f1"
	if [ "$c1" -eq "$c0" ] && [ "$f1" -gt "$f0" ] && expect metadata=ok; then
		ktap_test_pass "phase 1: a flush with only cleanings to record commits nothing, flushes the cache disk"
	else
		ktap_test_fail "phase 1: a flush with only cleanings to record commits nothing, flushes the cache disk"
	fi
	[ "$KTAP_CNT_FAIL" -eq 0 ] || ktap_finished 3
	ktap_crash_now
	;;
2)
	ktap_set_plan 5
	reloaded() {
		create_cache 1 || return 1
		ktap_print_msg "status: $(status_line)"
		expect metadata=ok blocks_dirty="$BLOCKS"
	}
	if reloaded; then
		ktap_test_pass "phase 2: loaded after the power cut with all $BLOCKS blocks dirty (cleanings never committed)"
	else
		ktap_exit_fail_msg "phase 2: loaded after the power cut with all $BLOCKS blocks dirty (cleanings never committed)"
	fi

	if same_as_ref "$DEV"; then
		ktap_test_pass "phase 2: every fsync'ed byte reads back through the cache"
	else
		ktap_test_fail "phase 2: every fsync'ed byte reads back through the cache"
	fi

	if drain && expect writeback_errors=0 data_loss=0; then
		ktap_test_pass "phase 2: the drain completes, no errors, no data loss"
	else
		ktap_test_fail "phase 2: the drain completes, no errors, no data loss"
	fi

	if dm_remove "$NAME" && cleanup_pop && same_as_ref "$ODISK"; then
		ktap_test_pass "phase 2: the origin disk read directly is byte-exact"
	else
		ktap_test_fail "phase 2: the origin disk read directly is byte-exact"
	fi
	ktap_test_result "phase 2: kernel log clean" check_dmesg_clean
	ktap_finished 5
	;;
esac
