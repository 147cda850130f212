#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Run the dm-vmcache selftests in a QEMU guest and bring the KTAP back.
#
#   selftests/run-in-guest.sh [options] [test...]
#
# Boots the Debian kernel the module was built for (vermagic of
# dm-vmcache/dm-vmcache.ko) with an initramfs assembled from host binaries,
# the kernel's modules, the freshly built module and selftests/, runs the
# tests (all of TEST_PROGS, or the ones named) and prints one KTAP document
# ending with "N passed, N failed[, N skipped]".  Exit code 0 only if
# nothing failed and every guest shut down cleanly.
#
# Options:
#   --shell		boot to an interactive shell on this terminal instead
#   --script FILE	run FILE (bash) in the guest instead of the selftests;
#			its output is printed as is and its exit code returned
#   --bin PROG		also copy host program PROG (with its libraries) into
#			the guest, e.g. make-bcache for the benchmark;
#			repeatable; a missing program is only noted
#   --disk FILE[:SIZE]	attach FILE as an extra virtio disk to every boot
#			(created, or grown, to SIZE, e.g. 1G); repeatable; in
#			the guest /dev/disk/by-id/virtio-diskN, N from 0
#   --drive NAME,SPEC	attach a virtio disk from a raw QEMU -drive SPEC
#			(if=none and id are added), after the --disk ones,
#			e.g. NAME,file=o.img,format=raw,cache=none,aio=native,
#			throttling.iops-total=500 (host cache mode, QEMU I/O
#			throttling, nbd: ...); a file it names must exist; in the
#			guest /dev/disk/by-id/virtio-NAME (NAME: at most 20
#			characters); repeatable
#   --kmod DIR		also copy kernel/DIR of the kernel's modules into the
#			guest (e.g. fs/xfs); repeatable
#   --timeout SEC	host-side limit for each boot (default: boot allowance
#			plus the "settings" timeout of each test in the boot)
#   --test-timeout SEC	per-program timeout in the guest (default: "settings")
#   --env NAME=VALUE	export NAME in the guest (no spaces in VALUE);
#			repeatable
#   --list		print the boots that would run and exit
#   -h, --help
#
# Environment:
#   VMCACHE_ACCEL=kvm|tcg	accelerator (default: probe KVM once, else TCG)
#   VMCACHE_MEM, VMCACHE_SMP	guest memory in MiB (2048) and CPUs (2)
#   VMCACHE_KVER		kernel version to boot (default: the module's)
#   VMCACHE_APPEND		more guest kernel parameters (e.g. the
#				benchmark's clocksource=tsc under TCG)
#   VMCACHE_KO			module to load (dm-vmcache/dm-vmcache.ko)
#   VMCACHE_KERNEL_IMAGE	kernel to boot (/boot/vmlinuz-<version>), e.g.
#				the debug kernel of scripts/debug-kernel.sh
#   VMCACHE_MODULES_DIR	its modules (/lib/modules/<version>)
#   VMCACHE_DISKS		extra disks, "FILE[:SIZE] ...", as --disk
#   VMCACHE_BOOT_TIMEOUT	seconds allowed per boot on top of the tests (180)
#   VMCACHE_KEEP_DISKS=1	keep the per-test disk images after a pass
#   VMCACHE_BUILD_DIR		initramfs, logs and disks (build/guest)
#
# Multi-boot tests: a test program whose header has a line
#   # vmcache-harness: phases=2 disks=cache:256M,origin:1G
# gets boots of its own, with fresh sparse disk images attached as
# /dev/disk/by-id/virtio-<name>; the same images are attached to each
# phase, and the program runs once per boot with VMCACHE_PHASE=1..N.
# See selftests/README.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ST=$ROOT/selftests
BUILD=${VMCACHE_BUILD_DIR:-$ROOT/build/guest}
KO=${VMCACHE_KO:-$ROOT/dm-vmcache/dm-vmcache.ko}
CTL=$ROOT/userspace/vmcachectl
MEM=${VMCACHE_MEM:-2048}
SMP=${VMCACHE_SMP:-2}
BOOT_ALLOWANCE=${VMCACHE_BOOT_TIMEOUT:-180}

mode="test"
script=
boot_timeout=
test_timeout=
list_only=0
extra_disks=()
raw_drives=()
extra_kmods=()
extra_bins=()
guest_env=()
tests=()

log() { printf 'run-in-guest: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
	sed -n '/^#   selftests\/run-in-guest.sh/,/^# See selftests/p' "${BASH_SOURCE[0]}" |
		sed 's/^# \{0,1\}//'
}

read -r -a env_disks <<<"${VMCACHE_DISKS:-}"
extra_disks+=("${env_disks[@]}")

while [ $# -gt 0 ]; do
	case $1 in
	--shell) mode=shell; shift ;;
	--script) mode=script; script=$2; shift 2 ;;
	--disk) extra_disks+=("$2"); shift 2 ;;
	--bin) extra_bins+=("$2"); shift 2 ;;
	--drive) raw_drives+=("$2"); shift 2 ;;
	--kmod) extra_kmods+=("$2"); shift 2 ;;
	--timeout) boot_timeout=$2; shift 2 ;;
	--test-timeout) test_timeout=$2; shift 2 ;;
	--env) guest_env+=("vmcache.env.$2"); shift 2 ;;
	--list) list_only=1; shift ;;
	-h | --help) usage; exit 0 ;;
	--) shift; tests+=("$@"); break ;;
	-*) usage >&2; die "unknown option $1" ;;
	*) tests+=("$1"); shift ;;
	esac
done

# ------------------------------------------------------------ test plan

settings_timeout() {
	local t
	t=$(awk -F= '$1 == "timeout" { print $2 }' "$ST/settings" 2>/dev/null || true)
	echo "${t:-45}"
}
TEST_TIMEOUT=${test_timeout:-$(settings_timeout)}

# The "# vmcache-harness:" header of a test program, or nothing.
harness_header() {
	sed -n 's/^# vmcache-harness:[[:space:]]*//p' "$ST/$1" | head -n 1
}

header_field() { # <header> <key>
	local kv
	for kv in $1; do
		[ "${kv%%=*}" = "$2" ] && { echo "${kv#*=}"; return 0; }
	done
	return 0
}

# Boots: "shared" runs every test without a header in one guest; each
# headered test gets one boot per phase.  One line per boot:
#   <test,test,...> <phase> <phases> <disks spec or ->
plan_boots() {
	local t hdr phases disks p shared=()
	for t in "${tests[@]}"; do
		hdr=$(harness_header "$t")
		[ -z "$hdr" ] && shared+=("$t")
	done
	if [ "${#shared[@]}" -gt 0 ]; then
		echo "$(IFS=,; echo "${shared[*]}") 1 1 -"
	fi
	for t in "${tests[@]}"; do
		hdr=$(harness_header "$t")
		[ -n "$hdr" ] || continue
		phases=$(header_field "$hdr" phases)
		disks=$(header_field "$hdr" disks)
		for ((p = 1; p <= ${phases:-1}; p++)); do
			echo "$t $p ${phases:-1} ${disks:--}"
		done
	done
}

if [ "$mode" = test ]; then
	if [ "${#tests[@]}" -eq 0 ]; then
		mapfile -t tests < <("$ST/run_kselftest.sh" --list)
	fi
	for t in "${tests[@]}"; do
		t=${t#selftests/}
		[ -f "$ST/$t" ] || die "no test program selftests/$t"
	done
	tests=("${tests[@]#selftests/}")
	mapfile -t BOOTS < <(plan_boots)
	if [ "$list_only" -eq 1 ]; then
		printf '%s\n' "${BOOTS[@]}"
		exit 0
	fi
fi

# --------------------------------------------------------- kernel choice

if [ -n "${VMCACHE_KVER:-}" ]; then
	KVER=$VMCACHE_KVER
elif [ -f "$KO" ]; then
	KVER=$(modinfo -F vermagic "$KO" | awk '{ print $1 }')
else
	log "warning: $KO not built; the tests that need it will be skipped"
	KVER=
	for d in $(find /usr/src -maxdepth 1 -name 'linux-headers-6.1.*-amd64' | sort -V -r); do
		v=${d#/usr/src/linux-headers-}
		if [ -f "/boot/vmlinuz-$v" ]; then KVER=$v; break; fi
	done
	# A modules directory given is named after its kernel.
	[ -n "${VMCACHE_MODULES_DIR:-}" ] && KVER=$(basename "$VMCACHE_MODULES_DIR")
	[ -n "$KVER" ] || KVER=$(uname -r)
fi
# A kernel not installed in /boot (a debug build) comes with its own
# modules directory; the guest gets its modules as /lib/modules/$KVER.
KERNEL=${VMCACHE_KERNEL_IMAGE:-/boot/vmlinuz-$KVER}
MODDIR=${VMCACHE_MODULES_DIR:-/lib/modules/$KVER}
if [ -n "${VMCACHE_KERNEL_IMAGE:-}" ]; then
	[ -r "$KERNEL" ] || die "VMCACHE_KERNEL_IMAGE=$KERNEL not found"
else
	[ -r "$KERNEL" ] || die "$KERNEL not found: the module was built for $KVER; install linux-image-$KVER (scripts/install-deps.sh does)"
fi
[ -f "$MODDIR/modules.dep" ] || die "$MODDIR/modules.dep not found (linux-image-$KVER, or VMCACHE_MODULES_DIR)"

# ----------------------------------------------------------- initramfs

RFS=$BUILD/root
INITRAMFS=$BUILD/initramfs.cpio

# Host programs for the guest.  Required ones fail the build if missing.
REQUIRED_BINS=(bash dmsetup kmod modprobe insmod rmmod lsmod modinfo depmod)
OPTIONAL_BINS=(
	fio blockdev losetup dmesg mount umount blkdiscard blkid setsid
	dd cmp md5sum sha256sum timeout grep sed awk stat head tail od cut sort
	uniq sync truncate wc tr seq date sleep env cat ls cp mv rm mkdir ln
	chmod tee find xargs nproc uname basename dirname readlink realpath
	mktemp hexdump mke2fs mkfs.ext4 e2fsck fsck.ext4 dumpe2fs jq
)
# Module directories under kernel/ copied into the guest.
MODULE_DIRS=(
	drivers/md drivers/block drivers/virtio lib crypto arch/x86/crypto
	fs/configfs fs/9p net/9p fs/ext4 fs/jbd2 fs/mbcache.ko
)

declare -A copied=()

copy_file() { # <host path>: same path in the guest, symlinks resolved
	local src=$1
	[ -n "${copied[$src]:-}" ] && return 0
	copied[$src]=1
	mkdir -p "$RFS$(dirname "$src")"
	cp -L "$src" "$RFS$src"
}

copy_bin() { # <command> <required 0|1>
	local path lib
	path=$(command -v "$1" 2>/dev/null || true)
	if [ -z "$path" ] || [ ! -x "$path" ]; then
		[ "$2" -eq 1 ] && die "host program $1 not found (scripts/install-deps.sh)"
		log "note: $1 not on the host, not in the guest"
		return 0
	fi
	copy_file "$path"
	while read -r lib; do
		copy_file "$lib"
	done < <(ldd "$path" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
}

build_initramfs() {
	local b d applet
	rm -rf "$RFS"
	mkdir -p "$RFS"/{usr/bin,usr/sbin,usr/lib,usr/lib64,etc,root,proc,sys,dev,tmp,run,mnt,opt/busybox}
	ln -s usr/bin "$RFS/bin"
	ln -s usr/sbin "$RFS/sbin"
	ln -s usr/lib "$RFS/lib"
	ln -s usr/lib64 "$RFS/lib64"

	for b in "${REQUIRED_BINS[@]}"; do copy_bin "$b" 1; done
	for b in "${OPTIONAL_BINS[@]}" "${extra_bins[@]}"; do copy_bin "$b" 0; done
	[ -x "$CTL" ] && { copy_file "$CTL"; cp "$CTL" "$RFS/usr/sbin/vmcachectl"; copy_bin "$CTL" 0; }

	# busybox fills in the rest (cttyhack, poweroff, ...), last in PATH.
	[ -x /bin/busybox ] || die "/bin/busybox missing (busybox-static)"
	cp /bin/busybox "$RFS/opt/busybox/busybox"
	for applet in $(/bin/busybox --list); do
		[ "$applet" = busybox ] || ln -s busybox "$RFS/opt/busybox/$applet"
	done

	printf 'root:x:0:0:root:/root:/bin/bash\n' >"$RFS/etc/passwd"
	printf 'root:x:0:\n' >"$RFS/etc/group"
	printf 'PS1='\''vmcache-guest:\\w# '\''\ncd /selftests\n' >"$RFS/root/.bash_profile"

	# Kernel modules: whole directories, then depmod over the guest tree.
	local mroot=$RFS/lib/modules/$KVER
	mkdir -p "$mroot/kernel" "$mroot/extra"
	for d in "${MODULE_DIRS[@]}" "${extra_kmods[@]}"; do
		if [ -e "$MODDIR/kernel/$d" ]; then
			mkdir -p "$mroot/kernel/$(dirname "$d")"
			cp -a "$MODDIR/kernel/$d" "$mroot/kernel/$d"
		fi
	done
	for f in modules.builtin modules.builtin.modinfo modules.order; do
		[ -f "$MODDIR/$f" ] && cp "$MODDIR/$f" "$mroot/"
	done
	if [ -f "$KO" ]; then
		cp "$KO" "$mroot/extra/"
	fi
	depmod -b "$RFS" "$KVER"

	# helper programs of the tests (TEST_GEN_FILES), run in the guest
	make -s -C "$ST" all >&2 || die "cannot build the selftests' helpers (make -C selftests)"
	cp -a "$ST" "$RFS/selftests"
	if [ "$mode" = script ]; then
		mkdir -p "$RFS/opt/script"
		cp "$script" "$RFS/opt/script/$(basename "$script")"
	fi
	install -m 0755 "$ST/guest/init.sh" "$RFS/init"

	(cd "$RFS" && find . -print0 | LC_ALL=C sort -z |
		cpio --null -o -H newc -R 0:0 --quiet) >"$INITRAMFS.tmp"
	mv "$INITRAMFS.tmp" "$INITRAMFS"
}

# ----------------------------------------------------------------- qemu

# qemu_cmd <accel> <append> <console> <ktap> [disk args...]: into QEMU_CMD.
qemu_cmd() {
	local accel=$1 append=$2 console=$3 ktap=$4 cpu=max
	shift 4
	[ "$accel" = kvm ] && cpu=host
	QEMU_CMD=(qemu-system-x86_64 -nodefaults -no-user-config -display none
		-no-reboot -machine pc -accel "$accel" -cpu "$cpu"
		-smp "$SMP" -m "$MEM"
		-kernel "$KERNEL" -initrd "$INITRAMFS"
		-append "console=ttyS0,115200 panic=-1 mitigations=off ${VMCACHE_APPEND:-} ${guest_env[*]} $append"
		-serial "$console" -serial "$ktap" "$@")
}

# The accelerator: VMCACHE_ACCEL, else a bounded KVM boot looking for the
# probe marker on the console, remembered until the host reboots.
choose_accel() {
	if [ -n "${VMCACHE_ACCEL:-}" ]; then
		case $VMCACHE_ACCEL in
		kvm | tcg) echo "$VMCACHE_ACCEL"; return ;;
		*) die "VMCACHE_ACCEL must be kvm or tcg" ;;
		esac
	fi
	if [ ! -w /dev/kvm ]; then
		echo tcg
		return
	fi
	local cache=$BUILD/accel.cache key
	key="$(cat /proc/sys/kernel/random/boot_id) $KVER"
	if [ -f "$cache" ] && [ "$(head -n 1 "$cache")" = "$key" ]; then
		sed -n 2p "$cache"
		return
	fi
	log "probing KVM (up to 30 s)"
	local con=$BUILD/probe-console.log accel=tcg
	rm -f "$con"
	qemu_cmd kvm "vmcache.mode=probe" "file:$con" null
	timeout -k 5 30 "${QEMU_CMD[@]}" </dev/null >/dev/null 2>&1 || true
	if grep -q VMCACHE-PROBE-OK "$con" 2>/dev/null; then
		accel=kvm
	fi
	log "KVM probe: using $accel"
	printf '%s\n%s\n' "$key" "$accel" >"$cache"
	echo "$accel"
}

# --disk FILE[:SIZE] -> qemu arguments in DISK_ARGS, count in NDISKS.
DISK_ARGS=()
NDISKS=0
add_disk() { # <file> <size or empty> <serial>
	local file=$1 size=$2 serial=$3
	mkdir -p "$(dirname "$file")"
	if [ -n "$size" ]; then
		if [ ! -e "$file" ] || [ "$(stat -c %s "$file")" -lt "$(numfmt --from=iec "$size")" ]; then
			truncate -s "$size" "$file"
		fi
	fi
	[ -f "$file" ] || die "disk image $file does not exist (give a size: $file:1G)"
	DISK_ARGS+=(-drive "file=$file,format=raw,if=none,id=d$NDISKS,cache=writeback,aio=threads"
		-device "virtio-blk-pci,drive=d$NDISKS,serial=$serial")
	NDISKS=$((NDISKS + 1))
}

add_extra_disks() {
	local i=0 spec
	for spec in "${extra_disks[@]}"; do
		if [[ $spec == *:* ]]; then
			add_disk "${spec%:*}" "${spec##*:}" "disk$i"
		else
			add_disk "$spec" "" "disk$i"
		fi
		i=$((i + 1))
	done
	# --drive NAME,SPEC: the spec as given (cache mode, throttling, ...)
	for spec in "${raw_drives[@]}"; do
		[[ $spec == *,* ]] || die "--drive wants NAME,SPEC (got $spec)"
		DISK_ARGS+=(-drive "if=none,id=r$NDISKS,${spec#*,}"
			-device "virtio-blk-pci,drive=r$NDISKS,serial=${spec%%,*}")
		NDISKS=$((NDISKS + 1))
	done
}

# -------------------------------------------------------------- results

TOP_NUM=0	# top-level results printed so far
RESULTS=$BUILD/results.ktap
EXTRA_FAIL=0

emit() { # a KTAP line to stdout and the combined log
	printf '%s\n' "$1"
	printf '%s\n' "$1" >>"$RESULTS"
}

# Renumber a guest's KTAP stream into the combined document: drop its
# version, plan and totals lines, offset its top-level test numbers.
relay() { # <offset>
	local off=$1 line n rest
	while IFS= read -r line; do
		line=${line%$'\r'}
		case $line in
		"KTAP version"* | "TAP version"* | "# Totals:"* | "# vmcache-harness: done"*) continue ;;
		esac
		if [[ $line =~ ^1\.\.[0-9]+ ]]; then
			continue
		elif [[ $line =~ ^(not\ ok|ok)\ ([0-9]+)(.*)$ ]]; then
			n=$((off + BASH_REMATCH[2]))
			rest=${BASH_REMATCH[3]}
			emit "${BASH_REMATCH[1]} $n$rest"
		else
			emit "$line"
		fi
	done
}

# Which of the boot's <count> programs reported a top-level result, and
# whether the last one asked for a crash (and passed its cases).
# Prints: "<space separated reported numbers>|<crash requested 0/1>|<nested fails after last result>"
scan_boot_log() { # <raw ktap log>
	awk '
		/^(not )?ok [0-9]+/ {
			n = ($1 == "not") ? $3 : $2
			seen = seen " " n
			crash = 0; nfail = 0
			next
		}
		/vmcache-harness: crash requested/ { crash = 1 }
		/^# not ok [0-9]+/ { nfail++ }
		END { printf "%s|%d|%d\n", seen, crash, nfail }
	' "$1"
}

console_tail() { # <console log>
	local line
	[ -f "$1" ] || return 0
	emit "# --- last lines of the guest console ($1) ---"
	while IFS= read -r line; do
		emit "# console: ${line%$'\r'}"
	done < <(tail -n 40 "$1")
}

# run_boot <tests,comma> <phase> <phases> <disk spec or -> <index>
run_boot() {
	local list=$1 phase=$2 phases=$3 dspec=$4 idx=$5
	local -a names
	IFS=, read -r -a names <<<"$list"
	local count=${#names[@]}
	local con=$BUILD/logs/boot$idx-console.log raw=$BUILD/logs/boot$idx-ktap.log
	rm -f "$con" "$raw"
	: >"$raw"

	DISK_ARGS=()
	NDISKS=0
	add_extra_disks
	if [ "$dspec" != - ]; then
		local t=${names[0]} ddir spec dname dsize
		ddir=$BUILD/disks/${t%.sh}
		[ "$phase" -eq 1 ] && rm -rf "$ddir"
		IFS=, read -r -a specs <<<"$dspec"
		for spec in "${specs[@]}"; do
			dname=${spec%%:*}
			dsize=${spec#*:}
			[ "$dsize" = "$spec" ] && dsize=1G
			add_disk "$ddir/$dname.img" "$dsize" "$dname"
		done
	fi

	local limit=$boot_timeout
	[ -n "$limit" ] || limit=$((BOOT_ALLOWANCE + count * TEST_TIMEOUT))
	local append="vmcache.mode=test vmcache.tests=$list vmcache.phase=$phase vmcache.phases=$phases vmcache.ndisks=$NDISKS vmcache.timeout=$TEST_TIMEOUT"
	qemu_cmd "$ACCEL" "$append" "file:$con" "file:$raw" "${DISK_ARGS[@]}"

	local what=${list//,/ }
	[ "$phases" -gt 1 ] && what="$what phase $phase/$phases"
	log "boot $idx: $what ($ACCEL, limit ${limit}s)"
	local start rc=0
	start=$(date +%s)
	timeout -k 10 "$limit" "${QEMU_CMD[@]}" </dev/null >"$BUILD/logs/boot$idx-qemu.log" 2>&1 &
	local qpid=$!
	relay "$TOP_NUM" < <(tail -n +1 -s 0.5 -f --pid="$qpid" "$raw")
	wait "$qpid" || rc=$?
	log "boot $idx: guest ran $(($(date +%s) - start)) s, qemu exit $rc"

	local scan seen crash nfail i reason=
	scan=$(scan_boot_log "$raw")
	seen=" ${scan%%|*} "
	crash=$(cut -d'|' -f2 <<<"$scan")
	nfail=$(cut -d'|' -f3 <<<"$scan")
	local done_ok=0
	grep -q '^# vmcache-harness: done' "$raw" && done_ok=1

	if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
		reason="TIMEOUT guest killed after $limit s"
	elif [ "$done_ok" -eq 0 ]; then
		reason="guest died (qemu exit $rc)"
	elif [ "$rc" -ne 0 ]; then
		reason="qemu exit $rc"
	fi

	local first_missing=1 suffix=
	[ "$phases" -gt 1 ] && suffix=" phase $phase/$phases"
	for ((i = 1; i <= count; i++)); do
		[[ $seen == *" $i "* ]] && continue
		local name="selftests: vmcache: ${names[$((i - 1))]}$suffix"
		if [ "$first_missing" -eq 1 ] && [ "$crash" -eq 1 ] && [ "$nfail" -eq 0 ] &&
		   [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ]; then
			emit "ok $((TOP_NUM + i)) $name # guest reset as the test asked"
			reason=
		elif [ "$first_missing" -eq 1 ]; then
			emit "not ok $((TOP_NUM + i)) $name # ${reason:-no result}"
			console_tail "$con"
		else
			emit "not ok $((TOP_NUM + i)) $name # not run: ${reason:-guest stopped}"
		fi
		first_missing=0
	done
	if [ "$first_missing" -eq 1 ] && [ -n "$reason" ]; then
		# Every program reported, but the guest did not shut down cleanly.
		emit "# boot $idx: $reason after the last test"
		console_tail "$con"
		EXTRA_FAIL=$((EXTRA_FAIL + 1))
	fi
	TOP_NUM=$((TOP_NUM + count))
	if [ "$phase" -eq "$phases" ] && [ "$dspec" != - ] && [ "${VMCACHE_KEEP_DISKS:-0}" != 1 ] &&
	   ! grep -q '^not ok' "$raw"; then
		rm -rf "$BUILD/disks/${names[0]%.sh}"
	fi
}

# Count leaf results: each program's nested cases, or the program itself
# when it has none; a failed program with no failed case counts as one
# failure; a program skipped as a whole counts as one skip.
summarize() {
	awk -v extra="$EXTRA_FAIL" '
		function lower(s) { return tolower(s) }
		/^# (not )?ok [0-9]+/ {
			if ($2 == "not") np_fail++
			else if (lower($0) ~ /# skip/) np_skip++
			else np_pass++
			next
		}
		/^(not )?ok [0-9]+/ {
			nested = np_pass + np_fail + np_skip
			if ($1 == "not") {
				pass += np_pass; skip += np_skip
				fail += (np_fail > 0) ? np_fail : 1
			} else if (nested == 0) {
				if (lower($0) ~ /# skip/) skip++
				else pass++
			} else {
				pass += np_pass; fail += np_fail; skip += np_skip
			}
			np_pass = np_fail = np_skip = 0
		}
		END {
			fail += extra
			printf "%d %d %d\n", pass, fail, skip
		}
	' "$RESULTS"
}

# ----------------------------------------------------------------- main

mkdir -p "$BUILD/logs"
build_start=$(date +%s)
build_initramfs
log "initramfs: $(du -h "$INITRAMFS" | cut -f1) for $KVER in $(($(date +%s) - build_start)) s"
ACCEL=$(choose_accel)

if [ "$mode" = shell ]; then
	DISK_ARGS=()
	NDISKS=0
	add_extra_disks
	qemu_cmd "$ACCEL" "vmcache.mode=shell vmcache.ndisks=$NDISKS" mon:stdio "file:$BUILD/logs/shell-ktap.log" "${DISK_ARGS[@]}"
	log "shell: exit the shell to power off (Ctrl-A X kills QEMU)"
	exec "${QEMU_CMD[@]}"
fi

if [ "$mode" = script ]; then
	DISK_ARGS=()
	NDISKS=0
	add_extra_disks
	con=$BUILD/logs/script-console.log
	out=$BUILD/logs/script-output.log
	rm -f "$con" "$out"
	: >"$out"
	limit=${boot_timeout:-$((BOOT_ALLOWANCE + TEST_TIMEOUT))}
	qemu_cmd "$ACCEL" "vmcache.mode=script vmcache.script=/opt/script/$(basename "$script") vmcache.ndisks=$NDISKS" \
		"file:$con" "file:$out" "${DISK_ARGS[@]}"
	log "running $(basename "$script") in the guest ($ACCEL, limit ${limit}s)"
	rc=0
	timeout -k 10 "$limit" "${QEMU_CMD[@]}" </dev/null >"$BUILD/logs/script-qemu.log" 2>&1 &
	qpid=$!
	tail -n +1 -s 0.5 -f --pid="$qpid" "$out" | grep -v '^# vmcache-harness: done' || true
	wait "$qpid" || rc=$?
	status=$(sed -n 's/^# vmcache-harness: done rc=\([0-9]*\).*/\1/p' "$out")
	if [ -z "$status" ]; then
		log "guest did not finish (qemu exit $rc); console: $con"
		tail -n 40 "$con" >&2 || true
		exit 1
	fi
	exit "$status"
fi

: >"$RESULTS"
total=0
for b in "${BOOTS[@]}"; do
	read -r list _ <<<"$b"
	IFS=, read -r -a n <<<"$list"
	total=$((total + ${#n[@]}))
done
emit "KTAP version 1"
emit "1..$total"
idx=0
for b in "${BOOTS[@]}"; do
	idx=$((idx + 1))
	# shellcheck disable=SC2086 # fields of a plan line
	run_boot $b "$idx"
done

read -r passed failed skipped < <(summarize)
emit "# Totals: pass:$passed fail:$failed xfail:0 xpass:0 skip:$skipped error:0"
summary="$passed passed, $failed failed"
[ "$skipped" -gt 0 ] && summary="$summary, $skipped skipped"
echo "$summary"
[ "$failed" -eq 0 ]
