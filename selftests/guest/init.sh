#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# /init of the test guest (see selftests/run-in-guest.sh).  Mounts the
# pseudo filesystems, names the virtio disks, then does what the kernel
# command line asks (vmcache.mode=):
#   test	run /selftests/run_kselftest.sh on vmcache.tests (comma list)
#   script	run vmcache.script (a path inside the guest)
#   shell	an interactive shell on the console
#   probe	print a marker and power off (accelerator probe)
# Test output goes to the second serial port (/dev/ttyS1); the kernel
# console is on the first.  The guest powers off when done.
export PATH=/usr/sbin:/usr/bin:/opt/busybox
export HOME=/root TERM=${TERM:-linux} LANG=C LC_ALL=C
export DM_DISABLE_UDEV=1

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /dev/disk/by-id /tmp /run
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
modprobe -q configfs && mount -t configfs configfs /sys/kernel/config

mode="test"
tests=
script=
phase=1
phases=1
ndisks=0
timeout_s=
read -r -a cmdline </proc/cmdline
for arg in "${cmdline[@]}"; do
	case $arg in
	vmcache.mode=*) mode=${arg#*=} ;;
	vmcache.tests=*) tests=${arg#*=} ;;
	vmcache.script=*) script=${arg#*=} ;;
	vmcache.phase=*) phase=${arg#*=} ;;
	vmcache.phases=*) phases=${arg#*=} ;;
	vmcache.ndisks=*) ndisks=${arg#*=} ;;
	vmcache.timeout=*) timeout_s=${arg#*=} ;;
	vmcache.env.*=*)
		kv=${arg#vmcache.env.}
		export "${kv%%=*}=${kv#*=}"
		;;
	esac
done
export VMCACHE_PHASE=$phase VMCACHE_PHASES=$phases

poweroff_now() {
	sync
	poweroff -f
	echo o >/proc/sysrq-trigger
	sleep 10
}

if [ "$mode" = probe ]; then
	echo "VMCACHE-PROBE-OK" >/dev/console
	poweroff_now
fi

echo 1 >/proc/sys/kernel/sysrq
# Hung tasks are reported (and fail the test) well within its timeout.
echo 120 >/proc/sys/kernel/hung_task_timeout_secs 2>/dev/null
export VMCACHE_GUEST=1

# Virtio disks (attached by the host with serial=<name>): wait for the
# vmcache.ndisks the host attached and give them the names udev would,
# /dev/disk/by-id/virtio-<name>.
if [ "$ndisks" -gt 0 ]; then
	modprobe -q virtio_pci
	modprobe -q virtio_blk
	for _ in $(seq 100); do
		have=$(find /sys/block -maxdepth 1 -name 'vd*' | wc -l)
		[ "$have" -ge "$ndisks" ] && break
		sleep 0.1
	done
fi
VMCACHE_DISKS=
for b in /sys/block/vd*; do
	[ -e "$b" ] || continue
	dev=${b##*/}
	serial=$(cat "$b/serial" 2>/dev/null)
	[ -n "$serial" ] && ln -sf "../../$dev" "/dev/disk/by-id/virtio-$serial"
	VMCACHE_DISKS="$VMCACHE_DISKS /dev/$dev"
done
export VMCACHE_DISKS=${VMCACHE_DISKS# }

out=/dev/ttyS1
[ -c "$out" ] || out=/dev/console
cd /selftests || cd /

case $mode in
test)
	IFS=, read -r -a list <<<"$tests"
	/selftests/run_kselftest.sh ${timeout_s:+-t "$timeout_s"} "${list[@]}" >"$out" 2>&1
	echo "# vmcache-harness: done rc=$?" >"$out"
	;;
script)
	bash "$script" >"$out" 2>&1
	echo "# vmcache-harness: done rc=$?" >"$out"
	;;
shell)
	echo "dm-vmcache test guest: selftests in /selftests, exit to power off"
	setsid cttyhack bash -l
	;;
*)
	echo "init: unknown vmcache.mode=$mode" >/dev/console
	;;
esac
poweroff_now
