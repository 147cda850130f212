#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# vmcachectl assemble after a power cut: phase 1 creates a writeback cache
# with vmcachectl over two virtio disks, writes and flushes a pattern that
# stays dirty in the cache, and resets the guest without syncing.  Phase 2
# checks the cache device offline, brings the cache back with
# "vmcachectl assemble" from a vmcachetab naming /dev/disk/by-id paths,
# reads the pattern back, runs assemble again (skipped), then
# "remove --flush" puts the pattern on the origin and check finds the
# metadata clean.
#
# vmcache-harness: phases=2 disks=cache:64M,origin:128M
set -euo pipefail
DIR=$(dirname "$0")
# shellcheck source=lib.sh
. "$DIR/lib.sh"

require_vmcache
require_cmd vmcachectl md5sum dd

CACHE=/dev/disk/by-id/virtio-cache
ORIGIN=/dev/disk/by-id/virtio-origin
NAME=vmccr
if [ ! -b "$CACHE" ] || [ ! -b "$ORIGIN" ]; then
	ktap_skip_all "no disks $CACHE $ORIGIN (run through run-in-guest.sh)"
fi

tmp=$(mktemp -d)
cleanup_push "rm -rf $tmp"
cleanup_push "dm_exists $NAME && dm_remove $NAME"

# json_value <file> <key>: the first "key": value, quotes stripped
json_value() {
	awk -v k="\"$2\":" '$1 == k { v = $2; sub(/,$/, "", v); gsub(/"/, "", v); print v; exit }' "$1"
}

# The pattern: 8 MiB at 8 MiB; its md5 in the first sector.
pattern_sum() { # <dev>
	dd if="$1" bs=1M skip=8 count=8 iflag=direct status=none | md5sum | cut -d' ' -f1
}

stored_sum() { # <dev>
	dd if="$1" bs=512 count=1 iflag=direct status=none | head -c 32
}

# ------------------------------------------------------------- phase 1

phase1() {
	ktap_set_plan 3
	ktap_test_result "create a writeback cache over virtio disks" \
		vmcachectl create "$NAME" --cache "$CACHE" --origin "$ORIGIN" --mode writeback \
		--set writeback_low=90 --set writeback_high=100 --set max_dirty_age=0
	make_pattern "$tmp/pattern" 8
	if dd if="$tmp/pattern" of="/dev/mapper/$NAME" bs=1M seek=8 oflag=direct conv=fsync status=none &&
	   md5_of "$tmp/pattern" | dd of="/dev/mapper/$NAME" bs=512 conv=sync oflag=direct,sync status=none; then
		ktap_test_pass "pattern and its checksum written and flushed"
	else
		ktap_test_fail "pattern and its checksum written and flushed"
	fi
	vmcachectl status "$NAME" --json >"$tmp/st"
	ktap_print_msg "blocks_dirty=$(json_value "$tmp/st" blocks_dirty)"
	ktap_test_result "dirty data in the cache before the power cut" \
		test "$(json_value "$tmp/st" blocks_dirty)" -gt 0
	[ "$KTAP_CNT_FAIL" -eq 0 ] || ktap_finished 3
	ktap_crash_now
}

# ------------------------------------------------------------- phase 2

offline_check() {
	local rc=0
	vmcachectl check "$CACHE" --json >"$tmp/check" || rc=$?
	ktap_print_msg "check exit $rc, $(json_value "$tmp/check" result), nr_dirty $(json_value "$tmp/check" nr_dirty)"
	[ "$rc" -le 1 ] && [ "$(json_value "$tmp/check" nr_dirty)" -gt 0 ]
}

assemble_tab() {
	cat >"$tmp/vmcachetab" <<-EOF
		# written by vmcachectl_reboot.sh
		$NAME  $CACHE  $ORIGIN  mode=writeback
	EOF
	vmcachectl assemble --config "$tmp/vmcachetab" >"$tmp/out" 2>&1 || {
		ktap_print_msg "$(cat "$tmp/out")"
		return 1
	}
	ktap_print_msg "$(cat "$tmp/out")"
	grep -q "$NAME: created /dev/mapper/$NAME" "$tmp/out" &&
		[[ " $(dmsetup table "$NAME") " == *" must_exist 1 "* ]]
}

pattern_through_cache() {
	local want got
	want=$(stored_sum "/dev/mapper/$NAME")
	got=$(pattern_sum "/dev/mapper/$NAME")
	ktap_print_msg "stored $want, read $got"
	[ -n "$want" ] && [ "$want" = "$got" ]
}

still_dirty() {
	vmcachectl status "$NAME" --json >"$tmp/st" &&
		[ "$(json_value "$tmp/st" blocks_dirty)" -gt 0 ]
}

assemble_again() {
	vmcachectl assemble --config "$tmp/vmcachetab" >"$tmp/out" 2>&1 &&
		grep -q "$NAME: already active, skipped" "$tmp/out"
}

flush_and_remove() {
	local want
	want=$(stored_sum "/dev/mapper/$NAME")
	ktap_log_cmd vmcachectl remove "$NAME" --flush --timeout 300 &&
		! dm_exists "$NAME" &&
		[ "$(stored_sum "$ORIGIN")" = "$want" ] &&
		[ "$(pattern_sum "$ORIGIN")" = "$want" ]
}

clean_after() {
	vmcachectl check "$CACHE" --json >"$tmp/check" &&
		[ "$(json_value "$tmp/check" result)" = clean ] &&
		[ "$(json_value "$tmp/check" nr_dirty)" = 0 ]
}

phase2() {
	local plan=8
	ktap_set_plan "$plan"
	dmesg_mark
	ktap_test_result "check after the power cut: usable, dirty blocks recorded" offline_check
	ktap_test_result "assemble from a vmcachetab with by-id paths, must_exist 1" assemble_tab
	ktap_test_result "the flushed pattern reads back through the cache" pattern_through_cache
	ktap_test_result "the dirty data survived the power cut" still_dirty
	ktap_test_result "assemble again: already active, skipped" assemble_again
	ktap_test_result "remove --flush: the pattern is on the origin" flush_and_remove
	ktap_test_result "check after remove --flush: clean, nothing dirty" clean_after
	ktap_test_result "kernel log clean" check_dmesg_clean
	ktap_finished "$plan"
}

ktap_print_header
case ${VMCACHE_PHASE:-1} in
1) phase1 ;;
*) phase2 ;;
esac
