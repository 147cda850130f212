#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The guest selftests on a debug kernel: Debian's 6.1 source
# (/usr/src/linux-source-6.1.tar.xz) built with KASAN, lockdep
# (PROVE_LOCKING), DEBUG_ATOMIC_SLEEP, kmemleak and debugobjects.
#
#   scripts/debug-kernel.sh [--build-only] [run-in-guest.sh args...]
#
# 1. builds the kernel once (x86_64 defconfig + kvm_guest.config + the
#    debug options + selftests/config, big unused subsystems off) into
#    build/debug-kernel/, installed there: vmlinuz-<release> and
#    install/lib/modules/<release>; rebuilt only when missing or when the
#    configuration below changes;
# 2. builds dm-vmcache.ko against it (build/debug-kernel/module/);
# 3. runs selftests/run-in-guest.sh with that kernel and module
#    (VMCACHE_KERNEL_IMAGE, VMCACHE_MODULES_DIR, own VMCACHE_BUILD_DIR
#    build/guest-debug; VMCACHE_DELAY_SCALE=4 in the guest: tests that
#    hold I/O in dm-delay stretch those delays), then a kmemleak scan
#    after module use (selftests/guest/kmemleak.sh);
# 4. lists the kernel splats (KASAN, lockdep, sleeping in atomic,
#    kmemleak, WARNING/BUG) found in the guest consoles.
# Exit code: non-zero if a test failed or a splat was found.
#
# Environment: VMCACHE_DEBUG_DIR (build/debug-kernel), VMCACHE_DEBUG_JOBS
# (make -j, default nproc), VMCACHE_DEBUG_TEST_TIMEOUT (per program in
# the guest, 1800: the debug kernel is several times slower under TCG),
# and the harness's variables (VMCACHE_ACCEL, VMCACHE_MEM, ...).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${VMCACHE_DEBUG_DIR:-$ROOT/build/debug-kernel}
TARBALL=/usr/src/linux-source-6.1.tar.xz
SRC=$DIR/linux-source-6.1
INSTALL=$DIR/install
MODOUT=$DIR/module
GUEST_BUILD=$ROOT/build/guest-debug
JOBS=${VMCACHE_DEBUG_JOBS:-$(nproc)}
TEST_TIMEOUT=${VMCACHE_DEBUG_TEST_TIMEOUT:-1800}
LOCALVERSION=-vmcache-debug

build_only=0
if [ "${1:-}" = --build-only ]; then
	build_only=1
	shift
fi

log() { printf 'debug-kernel: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Low priority: the build must not starve guests running beside it.
NICE=(nice -n 19)

# ------------------------------------------------------------ packages

need_pkgs=()
[ -f "$TARBALL" ] || need_pkgs+=(linux-source-6.1)
for p in flex bison bc libelf-dev libssl-dev xz-utils build-essential cpio; do
	[ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = installed ] ||
		need_pkgs+=("$p")
done
if [ "${#need_pkgs[@]}" -gt 0 ]; then
	log "installing ${need_pkgs[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_pkgs[@]}" >&2 ||
		{ DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 &&
		  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_pkgs[@]}" >&2; } ||
		die "cannot install ${need_pkgs[*]}"
fi

# -------------------------------------------------------------- config

# scripts/config arguments on top of defconfig + kvm_guest.config.
CONFIG_ARGS=(
	# debugging
	-e KASAN -e KASAN_GENERIC -e KASAN_INLINE -e STACKTRACE
	-e PROVE_LOCKING -e DEBUG_ATOMIC_SLEEP -e DEBUG_KMEMLEAK
	-e DEBUG_KMEMLEAK_AUTO_SCAN -d DEBUG_KMEMLEAK_DEFAULT_OFF
	--set-val DEBUG_KMEMLEAK_MEM_POOL_SIZE 40000
	-e DEBUG_OBJECTS -e DEBUG_OBJECTS_FREE -e DEBUG_OBJECTS_TIMERS
	-e DEBUG_OBJECTS_WORK -e DEBUG_OBJECTS_RCU_HEAD
	-e DEBUG_OBJECTS_PERCPU_COUNTER
	-e DEBUG_LIST -e DEBUG_FS -e KALLSYMS_ALL -e DETECT_HUNG_TASK
	-e DEBUG_INFO_NONE
	# what the harness and the guest need (selftests/config)
	-e MODULES -e MODULE_UNLOAD -e BLK_DEV_INITRD -e DEVTMPFS -e TMPFS
	-e SERIAL_8250 -e SERIAL_8250_CONSOLE -e VIRTIO_PCI -e VIRTIO_BLK
	-e VIRTIO_CONSOLE -e EXT4_FS -e MAGIC_SYSRQ -e ACPI
	-e MD -m BLK_DEV_DM -m DM_BUFIO -m DM_DELAY -m DM_FLAKEY
	-m DM_LOG_WRITES -m DM_ZERO -m DM_CACHE -m DM_CACHE_SMQ
	-m DM_WRITECACHE -m DM_DUST -m BCACHE -m BLK_DEV_RAM
	-m BLK_DEV_NULL_BLK -m CONFIGFS_FS -m CRYPTO_CRC32C -m LIBCRC32C
	--set-str LOCALVERSION "$LOCALVERSION" -d LOCALVERSION_AUTO
	# unused by the guest and long to build
	-d DRM -d SOUND -d USB_SUPPORT -d WLAN -d WIRELESS -d CFG80211
	-d NETFILTER -d ETHERNET -d AGP -d SCSI -d ATA -d NETWORK_FILESYSTEMS
	-d HIBERNATION -d SUSPEND -d SECURITY_SELINUX -d AUDIT -d XEN
	-d HYPERV -d PCCARD -d MACINTOSH_DRIVERS -d INPUT_JOYSTICK
	-d INPUT_TABLET -d INPUT_TOUCHSCREEN -d IPV6 -d WIRELESS
	-d BT -d NFC -d RFKILL -d VIRTIO_NET -d NET_9P -d 9P_FS
	-d NET -d FTRACE -d KPROBES -d PROFILING -d BPF_SYSCALL -d EFI
	-d VT -d INPUT_KEYBOARD -d INPUT_MOUSE -d HID -d SECURITY -d QUOTA
	-d AUTOFS_FS -d ISO9660_FS -d MSDOS_FS -d VFAT_FS -d FB -d HWMON
	-d MICROCODE -d IA32_EMULATION -d CPU_FREQ -d CGROUPS -d NAMESPACES
	-d I2C -d SERIO -d USB -d INPUT_MISC -d LOGO -d PM_DEBUG
	-d KEXEC -d CRASH_DUMP -d HUGETLBFS -d X86_MCE -d NUMA -d PNP
	-d THERMAL -d WATCHDOG -d NEW_LEDS -d DMADEVICES -d X86_PLATFORM_DEVICES
	-d IOMMU_SUPPORT -d NVMEM -d PROC_KCORE -d VIRTUALIZATION -d PPS
	-d POWER_SUPPLY -d HW_RANDOM -d INPUT_EVDEV -d SCHEDSTATS -d ACPI_VIDEO
	-d ACPI_FAN -d ACPI_THERMAL -d ACPI_BATTERY -d ACPI_AC -d ACPI_DOCK
	-d ACPI_APEI -d ACPI_HOTPLUG_MEMORY -d RTC_CLASS -d BLK_DEV_LOOP
	-d X86_EXTENDED_PLATFORM -d PERF_EVENTS_INTEL_UNCORE -d KVM_INTEL
	-d PHYLIB -d PTP_1588_CLOCK -d MEDIA_SUPPORT -d MMC -d FW_LOADER
)
# Options that must end up as given (olddefconfig may drop unmet ones).
CHECK=(KASAN=y PROVE_LOCKING=y DEBUG_ATOMIC_SLEEP=y DEBUG_KMEMLEAK=y
	DEBUG_OBJECTS=y VIRTIO_BLK=y VIRTIO_PCI=y SERIAL_8250_CONSOLE=y
	BLK_DEV_INITRD=y DEVTMPFS=y EXT4_FS=y BLK_DEV_DM=m DM_CACHE=m
	DM_WRITECACHE=m DM_DELAY=m DM_FLAKEY=m DM_LOG_WRITES=m BCACHE=m
	BLK_DEV_RAM=m BLK_DEV_NULL_BLK=m LIBCRC32C=m MODULE_UNLOAD=y)

stamp_key() {
	{
		stat -c '%s %Y' "$TARBALL"
		printf '%s\n' "${CONFIG_ARGS[@]}"
	} | sha256sum | cut -d' ' -f1
}

# ------------------------------------------------------------- kernel

mkdir -p "$DIR"
key=$(stamp_key)
release=
[ -f "$DIR/release" ] && release=$(cat "$DIR/release")
if [ -n "$release" ] && [ -f "$DIR/stamp" ] && [ "$(cat "$DIR/stamp")" = "$key" ] &&
   [ -f "$DIR/vmlinuz-$release" ] && [ -f "$INSTALL/lib/modules/$release/modules.dep" ] &&
   [ -f "$SRC/Module.symvers" ]; then
	log "kernel $release already built ($DIR)"
else
	t0=$(date +%s)
	if [ ! -f "$SRC/Makefile" ]; then
		log "extracting $TARBALL"
		tar -C "$DIR" -xJf "$TARBALL"
	fi
	log "configuring"
	make -s -C "$SRC" defconfig kvm_guest.config >&2
	"$SRC/scripts/config" --file "$SRC/.config" "${CONFIG_ARGS[@]}"
	make -s -C "$SRC" olddefconfig >&2
	for kv in "${CHECK[@]}"; do
		grep -qx "CONFIG_$kv" "$SRC/.config" || die "CONFIG_$kv did not stick in $SRC/.config"
	done
	log "building with -j$JOBS (nice 19, log $DIR/build.log); the first build takes long"
	"${NICE[@]}" make -C "$SRC" -j"$JOBS" bzImage modules >"$DIR/build.log" 2>&1 ||
		{ tail -n 30 "$DIR/build.log" >&2; die "kernel build failed ($DIR/build.log)"; }
	# Known only once the build ran syncconfig (it has CONFIG_LOCALVERSION).
	release=$(cat "$SRC/include/config/kernel.release")
	rm -rf "$INSTALL"
	"${NICE[@]}" make -s -C "$SRC" INSTALL_MOD_PATH="$INSTALL" INSTALL_MOD_STRIP=1 \
		modules_install >>"$DIR/build.log" 2>&1 ||
		die "modules_install failed ($DIR/build.log)"
	cp "$SRC/arch/x86/boot/bzImage" "$DIR/vmlinuz-$release"
	echo "$release" >"$DIR/release"
	echo "$key" >"$DIR/stamp"
	log "kernel $release built in $(($(date +%s) - t0)) s"
fi

# ------------------------------------------------------------- module

# From the working tree, as `make module`.  Warnings do not stop it here:
# KASAN's larger stack frames are not what this run is about.
log "building dm-vmcache.ko against $release"
"${NICE[@]}" make -s -C "$ROOT" module-private KDIR="$SRC" OUT="$MODOUT" PRIVATE_KCFLAGS= >&2
KO=$MODOUT/dm-vmcache/dm-vmcache.ko
[ "$(modinfo -F vermagic "$KO" | awk '{ print $1 }')" = "$release" ] ||
	die "$KO is not built for $release"
[ -x "$ROOT/userspace/vmcachectl" ] || make -s -C "$ROOT" userspace >&2

[ "$build_only" -eq 1 ] && { log "built: $DIR/vmlinuz-$release, $KO"; exit 0; }

# ---------------------------------------------------------------- tests

export VMCACHE_KERNEL_IMAGE=$DIR/vmlinuz-$release
export VMCACHE_MODULES_DIR=$INSTALL/lib/modules/$release
export VMCACHE_KO=$KO
export VMCACHE_KVER=$release
export VMCACHE_BUILD_DIR=$GUEST_BUILD

rc=0
# Only this run's consoles are scanned for splats below.
rm -rf "$GUEST_BUILD/logs"
mkdir -p "$GUEST_BUILD"
"$ROOT/selftests/run-in-guest.sh" --test-timeout "$TEST_TIMEOUT" \
	--env VMCACHE_DELAY_SCALE=4 "$@" |
	tee "$GUEST_BUILD/suite.log" || rc=$?
summary=$(tail -n 1 "$GUEST_BUILD/suite.log")

# kmemleak only reports leaks in debugfs: a boot of its own that uses the
# module, unloads it and asks for a scan.
log "kmemleak check (selftests/guest/kmemleak.sh)"
"$ROOT/selftests/run-in-guest.sh" --timeout $((TEST_TIMEOUT + 300)) \
	--script "$ROOT/selftests/guest/kmemleak.sh" || rc=1
cp "$GUEST_BUILD/logs/script-output.log" "$GUEST_BUILD/logs/kmemleak.log" 2>/dev/null || true

# Splats in the guest consoles: first line and the top of the stack.
SPLAT_RE='BUG: KASAN|BUG: sleeping function|WARNING: possible|WARNING: inconsistent|WARNING: suspicious RCU|WARNING: bad unlock|WARNING: held lock|WARNING: lock held|WARNING: Nested lock|BUG: key|BUG: MAX_LOCK|ODEBUG:|kmemleak: [1-9][0-9]* new suspected|unreferenced object 0x|WARNING: CPU:|kernel BUG|BUG: unable|general protection|Oops|INFO: task .* blocked|Invalid wait context|BUG: scheduling while atomic'
found=0
for con in "$GUEST_BUILD"/logs/boot*-console.log "$GUEST_BUILD"/logs/script-console.log \
	   "$GUEST_BUILD"/logs/kmemleak.log; do
	[ -f "$con" ] || continue
	if grep -Eq "$SPLAT_RE" "$con"; then
		found=1
		echo "# splats in $con:"
		grep -En -A 12 "$SPLAT_RE" "$con" | sed 's/^/#   /' | head -n 200
	fi
done
[ "$found" -eq 0 ] && echo "# no kernel splats in the guest consoles"
echo "debug kernel $release: ${summary:-no results}"
[ "$found" -eq 0 ] && [ "$rc" -eq 0 ]
