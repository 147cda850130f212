#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The harness's multi-boot support: data written to a file-backed virtio
# disk in phase 1, which ends in a simulated power cut (guest reset without
# sync), is there in phase 2.  Template for the reboot and crash tests.
#
# vmcache-harness: phases=2 disks=data:64M
set -euo pipefail
DIR=$(dirname "$0")
# shellcheck source=lib.sh
. "$DIR/lib.sh"

require_root
DISK=/dev/disk/by-id/virtio-data
[ -b "$DISK" ] || ktap_skip_all "no disk $DISK (run through run-in-guest.sh)"

ktap_print_header
case ${VMCACHE_PHASE:-1} in
1)
	ktap_set_plan 2
	if [ "$(md5_of "$DISK")" = "$(md5_of /dev/zero $((64 << 20)))" ]; then
		ktap_test_pass "phase 1: fresh disk is zero"
	else
		ktap_test_fail "phase 1: fresh disk is zero"
	fi
	# 4 MiB of random data at 1 MiB, its checksum in the first sector.
	make_pattern /tmp/pattern 4
	sum=$(md5_of /tmp/pattern)
	if dd if=/tmp/pattern of="$DISK" bs=1M seek=1 oflag=direct conv=fsync status=none &&
	   printf '%s\n' "$sum" | dd of="$DISK" oflag=direct,sync conv=sync bs=512 status=none; then
		ktap_test_pass "phase 1: pattern written and flushed"
	else
		ktap_test_fail "phase 1: pattern written and flushed"
	fi
	[ "$KTAP_CNT_FAIL" -eq 0 ] || ktap_finished 2
	ktap_crash_now
	;;
2)
	ktap_set_plan 1
	sum=$(head -c 32 "$DISK")
	got=$(dd if="$DISK" bs=1M skip=1 count=4 iflag=direct status=none | md5sum | cut -d' ' -f1)
	if [ "$sum" = "$got" ]; then
		ktap_test_pass "phase 2: pattern survived the reset"
	else
		ktap_print_msg "expected $sum, read $got"
		ktap_test_fail "phase 2: pattern survived the reset"
	fi
	ktap_finished 1
	;;
esac
