#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# A cache of over a million blocks: kernel memory per cache block (checked
# against the 64-byte budget), format and load times (reported, not
# asserted), and the data of a large region intact across a reload.
#
# vmcache-harness: phases=1 disks=cache:4200M,origin:16G
set -euo pipefail
DIR=$(dirname "$0")
# shellcheck source=lib.sh
. "$DIR/lib.sh"

require_vmcache
require_cmd dd cmp blockdev
CACHE=/dev/disk/by-id/virtio-cache
ORIGIN=/dev/disk/by-id/virtio-origin
[ -b "$CACHE" ] && [ -b "$ORIGIN" ] || ktap_skip_all "needs the harness's virtio disks"

ktap_print_header
ktap_set_plan 6
modprobe dm-vmcache
tmp=$(mktemp -d)
cleanup_push "rm -rf $tmp"

S=$(blockdev --getsz "$ORIGIN")
TABLE="0 $S vmcache $CACHE $ORIGIN 10 mode writeback sequential_cutoff 0 writeback_low 100 writeback_high 100 max_dirty_age 0"

# kernel memory now: vmalloc + slab, in bytes
kmem() {
	awk '/^VmallocUsed:|^Slab:/ { s += $2 } END { print s * 1024 }' /proc/meminfo
}

sv() { dmsetup status "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }

before=$(kmem)
cleanup_push "dmsetup remove vmc_big 2>/dev/null || true"
t0=$(date +%s.%N)
if dmsetup create vmc_big --table "$TABLE" && wait_for_dev /dev/mapper/vmc_big; then
	t1=$(date +%s.%N)
	ktap_test_pass "create: format and load of a blank cache"
else
	ktap_exit_fail_msg "cannot create the cache"
fi
after=$(kmem)
blocks=$(sv vmc_big blocks_total)
per=$(( (after - before) / blocks ))
ktap_print_msg "blocks_total=$blocks format+create: $(awk -v a="$t0" -v b="$t1" "BEGIN { printf \"%.2f\", b - a }") s"
ktap_print_msg "kernel memory: $((after - before)) bytes for $blocks blocks = $per bytes per block"
if [ "$blocks" -ge 1000000 ] && [ "$per" -le 64 ]; then
	ktap_test_pass "over a million blocks at no more than 64 bytes each"
else
	ktap_test_fail "over a million blocks at no more than 64 bytes each"
fi

# 256 MiB sequential (65536 blocks) plus one block in every mapping page
make_pattern "$tmp/pat" 256
dd if="$tmp/pat" of=/dev/mapper/vmc_big bs=1M seek=1024 oflag=direct conv=fsync status=none
for ((i = 0; i < blocks; i += 510 * 4)); do
	printf 'block %d\n' "$i" | dd of=/dev/mapper/vmc_big bs=4096 seek=$(( 400000 + i )) \
		conv=sync oflag=direct status=none
done
sync
used=$(sv vmc_big blocks_used)
dirty=$(sv vmc_big blocks_dirty)
ktap_print_msg "blocks_used=$used blocks_dirty=$dirty"
dm_remove vmc_big
t0=$(date +%s.%N)
dmsetup create vmc_big --table "$TABLE" && wait_for_dev /dev/mapper/vmc_big
t1=$(date +%s.%N)
ktap_print_msg "load of $used mapped blocks ($blocks total): $(awk -v a="$t0" -v b="$t1" "BEGIN { printf \"%.2f\", b - a }") s"
if [ "$(sv vmc_big blocks_used)" = "$used" ] && [ "$(sv vmc_big blocks_dirty)" = "$dirty" ]; then
	ktap_test_pass "reload: every mapping and dirty block back"
else
	ktap_test_fail "reload: every mapping and dirty block back"
fi
ktap_test_result "reload: 256 MiB region byte for byte through the cache" \
	cmp <(dd if=/dev/mapper/vmc_big bs=1M skip=1024 count=256 iflag=direct status=none) "$tmp/pat"
dmsetup status vmc_big | tr ' ' '\n' | grep -E '^read_(hits|misses)=' | sed 's/^/# /'
hits=$(sv vmc_big read_hits)
if [ "$hits" -ge 65536 ] && [ "$(sv vmc_big read_misses)" = 0 ]; then
	ktap_test_pass "reload: the region is read from the cache (warm)"
else
	ktap_test_fail "reload: the region is read from the cache (warm)"
fi
dm_remove vmc_big
if check_dmesg_clean; then
	ktap_test_pass "kernel log clean"
else
	ktap_test_fail "kernel log clean"
fi
ktap_finished 6
