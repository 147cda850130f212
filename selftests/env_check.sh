#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The test environment itself: the device-mapper targets and emulated
# devices the dm-vmcache tests build on work, and the helpers in lib.sh
# compare data correctly.  Needs no dm-vmcache.
set -euo pipefail
DIR=$(dirname "$0")
# shellcheck source=lib.sh
. "$DIR/lib.sh"

require_root
require_cmd dmsetup blockdev cmp md5sum dd
require_module dm-mod

ktap_print_header
ktap_set_plan 9

dmesg_mark
tmp=$(mktemp -d)
cleanup_push "rm -rf $tmp"

if setup_brd 2 64; then
	ktap_test_pass "brd: two 64 MiB ram disks"
else
	ktap_test_fail "brd: two 64 MiB ram disks"
fi

make_pattern "$tmp/pattern" 8
if setup_linear env_lin /dev/ram0 &&
   dd if="$tmp/pattern" of=/dev/mapper/env_lin bs=1M oflag=direct status=none &&
   compare_bytes "$tmp/pattern" /dev/ram0 $((8 << 20)); then
	ktap_test_pass "dm-linear: data written through it is on the device"
else
	ktap_test_fail "dm-linear: data written through it is on the device"
fi

if modprobe dm-delay && setup_delay env_delay /dev/ram1 5 &&
   dd if="$tmp/pattern" of=/dev/mapper/env_delay bs=1M oflag=direct status=none &&
   [ "$(md5_of /dev/ram1 $((8 << 20)))" = "$(md5_of "$tmp/pattern")" ]; then
	ktap_test_pass "dm-delay: slow device over brd"
else
	ktap_test_fail "dm-delay: slow device over brd"
fi

if setup_null_blk env_nullb 128 irqmode=2 completion_nsec=100000 &&
   [ "$(dev_sectors /dev/env_nullb)" -eq $((128 * 2048)) ] &&
   dd if="$tmp/pattern" of=/dev/env_nullb bs=1M oflag=direct status=none &&
   compare_bytes "$tmp/pattern" /dev/env_nullb $((8 << 20)); then
	ktap_test_pass "null_blk: memory backed, timer completions"
else
	ktap_test_fail "null_blk: memory backed, timer completions"
fi

for m in dm-flakey dm-log-writes dm-bufio dm-cache dm-writecache bcache; do
	if modprobe "$m"; then
		ktap_print_msg "module $m loads"
	else
		ktap_print_msg "module $m missing"
		missing=1
	fi
done
if [ -z "${missing:-}" ]; then
	ktap_test_pass "modules: dm-flakey dm-log-writes dm-bufio dm-cache dm-writecache bcache"
else
	ktap_test_fail "modules: dm-flakey dm-log-writes dm-bufio dm-cache dm-writecache bcache"
fi

if ! compare_bytes "$tmp/pattern" /dev/zero $((8 << 20)) >/dev/null; then
	ktap_test_pass "compare_bytes: reports a difference"
else
	ktap_test_fail "compare_bytes: reports a difference"
fi

if command -v fio >/dev/null &&
   ktap_log_cmd fio --name=env --filename=/dev/mapper/env_lin --rw=randwrite \
	--bs=4k --size=16M --direct=1 --ioengine=psync --verify=crc32c \
	--verify_fatal=1 --randrepeat=0 --minimal --output=/dev/null; then
	ktap_test_pass "fio: random write with crc32c verify"
else
	ktap_test_fail "fio: random write with crc32c verify"
fi

dm_remove env_lin
if ! dm_exists env_lin; then
	ktap_test_pass "dmsetup remove: device gone"
else
	ktap_test_fail "dmsetup remove: device gone"
fi

if check_dmesg_clean; then
	ktap_test_pass "kernel log clean"
else
	ktap_test_fail "kernel log clean"
fi

ktap_finished 9
