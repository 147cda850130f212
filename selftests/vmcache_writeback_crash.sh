#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Power cut during writeback (issue 5), over two boots with file-backed
# virtio disks:
#   phase 1: a writeback cache over a slow origin (dm-delay, 30 ms per
#            write) holds 32 MiB of dirty data written with O_DIRECT and
#            fsync; a "flush" starts the drain; during it the first 4 MiB
#            are rewritten (fsync again); the guest is reset mid-drain
#            (ktap_crash_now), nothing synced.
#   phase 2: the cache is loaded again from the cache disk (must_exist 1):
#            every fsync'ed write reads back exactly through the cache,
#            the drain completes, the origin disk read directly is
#            byte-exact, and after a reload nothing is dirty.
# The expected data is kept on a third disk ("ref"), written directly.
#
# vmcache-harness: phases=2 disks=cache:128M,origin:256M,ref:64M
set -euo pipefail
DIR=$(dirname "$0")
# shellcheck source=lib.sh
. "$DIR/lib.sh"

require_vmcache
require_cmd cmp dd date
require_module dm-delay

CACHE=/dev/disk/by-id/virtio-cache
ODISK=/dev/disk/by-id/virtio-origin
REF=/dev/disk/by-id/virtio-ref
for d in "$CACHE" "$ODISK" "$REF"; do
	[ -b "$d" ] || ktap_skip_all "no disk $d (run through run-in-guest.sh)"
done
ORIGIN=/dev/mapper/vmc_crorigin
DEV=vmc_cr
DATA_MIB=32	# pattern A at 0
REWRITE_MIB=4	# pattern B over its start, during the drain
NOTE_MIB=60	# on the ref disk: status at the crash
WRITE_DELAY_MS=30
OPTS="14 mode writeback sequential_cutoff 0 writeback_low 100 writeback_high 100 max_dirty_age 0 writeback_max_inflight 16 must_exist"

tmp=$(mktemp -d)
cleanup_push "rm -rf $tmp"

st() { status_value "$DEV" "$1"; }
log_status() { ktap_print_msg "status: $(dmsetup status "$DEV" | cut -d' ' -f4-)"; }
msg() { dmsetup message "$DEV" 0 "$@"; }
now_ms() { date +%s%3N; }

wait_until() { # <limit s> <command...>
	local limit=$1 start
	shift
	start=$(now_ms)
	while ! "$@"; do
		[ $(($(now_ms) - start)) -gt $((limit * 1000)) ] && return 1
		sleep 0.2
	done
}

read_mib() { # <dev> <offset MiB> <MiB> <out>
	dd if="$1" bs=1M skip="$2" count="$3" iflag=direct status=none of="$4"
}

# same_as_ref <dev>: its first DATA_MIB equal the ref disk's.
same_as_ref() {
	read_mib "$REF" 0 "$DATA_MIB" "$tmp/ref.bin" &&
	read_mib "$1" 0 "$DATA_MIB" "$tmp/got.bin" &&
	compare_bytes "$tmp/ref.bin" "$tmp/got.bin"
}

# write_both <file> <offset MiB>: through the cache and on the ref disk,
# O_DIRECT and fsync.
write_both() {
	dd if="$1" of="/dev/mapper/$DEV" bs=1M seek="$2" oflag=direct conv=fsync status=none &&
	dd if="$1" of="$REF" bs=1M seek="$2" oflag=direct conv=fsync status=none
}

# The origin: dm-delay over the origin disk, writes (and flushes) slow.
setup_origin() { # <write delay ms>
	setup_delay vmc_crorigin "$ODISK" 0 "$1"
}

create_cache() { # <must_exist 0|1>
	dm_create "$DEV" "0 $(dev_sectors "$ORIGIN") vmcache $CACHE $ORIGIN $OPTS $1"
}

ktap_print_header
dmesg_mark
case ${VMCACHE_PHASE:-1} in
1)
	ktap_set_plan 5
	if setup_origin "$WRITE_DELAY_MS" && create_cache 0; then
		ktap_test_pass "phase 1: writeback cache over dm-delay ($WRITE_DELAY_MS ms writes), writeback held off"
	else
		ktap_exit_fail_msg "cannot set up the devices"
	fi

	make_pattern "$tmp/a" "$DATA_MIB"
	held() {
		write_both "$tmp/a" 0 || return 1
		ktap_print_msg "blocks_dirty=$(st blocks_dirty) after $DATA_MIB MiB with O_DIRECT + fsync"
		[ "$(st blocks_dirty)" -eq $((DATA_MIB * 256)) ] || return 1
		read_mib "$ODISK" 0 1 "$tmp/o.bin"
		if cmp -s -n 1048576 "$tmp/o.bin" "$tmp/a"; then
			ktap_print_msg "the origin already has the data"
			return 1
		fi
	}
	if held; then
		ktap_test_pass "phase 1: $DATA_MIB MiB written and fsync'ed, all dirty, not on the origin"
	else
		ktap_test_fail "phase 1: $DATA_MIB MiB written and fsync'ed, all dirty, not on the origin"
	fi

	progressing() { [ "$(st writeback_done)" -ge 512 ]; }
	drain_started() {
		msg flush || return 1
		if ! wait_until 60 progressing; then
			log_status
			return 1
		fi
		log_status
		[ "$(st flush)" = active ]
	}
	if drain_started; then
		ktap_test_pass "phase 1: flush started, the drain is in progress"
	else
		ktap_test_fail "phase 1: flush started, the drain is in progress"
	fi

	make_pattern "$tmp/b" "$REWRITE_MIB"
	rewrite() {
		write_both "$tmp/b" 0 || return 1
		read_mib "/dev/mapper/$DEV" 0 "$REWRITE_MIB" "$tmp/bb"
		compare_bytes "$tmp/b" "$tmp/bb"
	}
	if rewrite; then
		ktap_test_pass "phase 1: first $REWRITE_MIB MiB rewritten during the drain (fsync), read back"
	else
		ktap_test_fail "phase 1: first $REWRITE_MIB MiB rewritten during the drain (fsync), read back"
	fi

	sleep 1
	dirty=$(st blocks_dirty)
	done_=$(st writeback_done)
	# for phase 2's diagnostics
	printf 'dirty=%s done=%s\n' "$dirty" "$done_" |
		dd of="$REF" bs=1M seek="$NOTE_MIB" conv=sync oflag=direct status=none
	log_status
	if [ "$dirty" -gt 0 ] && [ "$(st flush)" = active ]; then
		ktap_test_pass "phase 1: crash point mid-drain ($dirty blocks dirty, $done_ written back)"
	else
		ktap_test_fail "phase 1: crash point mid-drain ($dirty blocks dirty, $done_ written back)"
	fi
	[ "$KTAP_CNT_FAIL" -eq 0 ] || ktap_finished 5
	ktap_crash_now
	;;
2)
	ktap_set_plan 6
	note=$(dd if="$REF" bs=1M skip="$NOTE_MIB" count=1 status=none | tr -d '\0' | head -n 1)
	ktap_print_msg "at the crash: $note"
	at_crash=$(sed -n 's/.*dirty=\([0-9]*\).*/\1/p' <<<"$note")
	reloaded() {
		setup_origin 0 && create_cache 1 || return 1
		log_status
		local d
		d=$(st blocks_dirty)
		[ "$(st metadata)" = ok ] && [ "$d" -gt 0 ] && [ "$d" -le $((DATA_MIB * 256)) ] ||
			return 1
		ktap_print_msg "dirty after the reload: $d (at the crash: ${at_crash:-?}; blocks cleaned after the last commit count again)"
	}
	if reloaded; then
		ktap_test_pass "phase 2: cache loaded from the cache disk (must_exist 1), metadata ok, dirty blocks kept"
	else
		ktap_exit_fail_msg "cache did not load from the cache disk"
	fi

	if same_as_ref "/dev/mapper/$DEV"; then
		ktap_test_pass "phase 2: every fsync'ed write reads back exactly through the cache"
	else
		ktap_test_fail "phase 2: every fsync'ed write reads back exactly through the cache"
	fi

	clean() { [ "$(st blocks_dirty)" -eq 0 ] && [ "$(st flush)" = idle ]; }
	drained() {
		msg flush || return 1
		if ! wait_until 90 clean; then
			log_status
			return 1
		fi
		log_status
		[ "$(st writeback_errors)" -eq 0 ] && [ "$(st data_loss)" -eq 0 ]
	}
	if drained; then
		ktap_test_pass "phase 2: the drain completes: blocks_dirty=0, no errors, no data loss"
	else
		ktap_test_fail "phase 2: the drain completes: blocks_dirty=0, no errors, no data loss"
	fi

	if same_as_ref "$ODISK"; then
		ktap_test_pass "phase 2: the origin disk read directly is byte-exact"
	else
		ktap_test_fail "phase 2: the origin disk read directly is byte-exact"
	fi

	reload_clean() {
		dm_remove "$DEV" && cleanup_pop && create_cache 1 || return 1
		log_status
		[ "$(st blocks_dirty)" -eq 0 ] && same_as_ref "/dev/mapper/$DEV"
	}
	if reload_clean; then
		ktap_test_pass "phase 2: after remove and reload nothing is dirty and the data is intact"
	else
		ktap_test_fail "phase 2: after remove and reload nothing is dirty and the data is intact"
	fi
	ktap_test_result "phase 2: kernel log clean" check_dmesg_clean
	ktap_finished 6
	;;
esac
