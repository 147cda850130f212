#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Run the dm-vmcache selftests and print KTAP, in the shape of the kernel's
# kselftest runner: one top-level result per test program, the program's own
# KTAP nested under it with a "# " prefix.
#
#   run_kselftest.sh [options] [test...]
#	-t, --timeout SEC	per-program timeout (default: "settings" file)
#	-n, --no-dmesg-check	do not scan the kernel log after each program
#	-l, --list		print the test programs and exit
#	-h, --help
#
# Without test names, runs TEST_PROGS from the Makefile beside this script.
# After each program the kernel log written since it started is scanned for
# BUG/WARNING/Oops/hung task/call trace lines; any fails that program.
# Exit code: 0 all passed, 1 any failed, 4 all skipped.
#
# Environment passed to the programs: VMCACHE_PHASE and VMCACHE_PHASES
# (multi-boot tests, see README); a program name with " phase P/M"
# appended when VMCACHE_PHASES > 1.
set -uo pipefail

BASE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SUITE=vmcache
KSFT_SKIP=4
KSFT_TIMEOUT=124

timeout_s=
dmesg_check=1
list_only=0

usage() {
	sed -n '/^#   run_kselftest.sh/,/^# Exit code/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

# TEST_PROGS from the Makefile, without needing make (the guest has none).
# Handles ":=", "=" and "+=" and backslash continuations.
test_progs() {
	awk '
		function add(s,    n, i, w) {
			n = split(s, w, /[ \t]+/)
			for (i = 1; i <= n; i++)
				if (w[i] != "" && w[i] != "\\") print w[i]
		}
		cont { line = $0; cont = sub(/\\$/, "", line); add(line); next }
		/^TEST_PROGS[ \t]*(:|\+)?=/ {
			line = $0
			sub(/^TEST_PROGS[ \t]*(:|\+)?=[ \t]*/, "", line)
			cont = sub(/\\$/, "", line)
			add(line)
		}
	' "$BASE_DIR/Makefile"
}

settings_timeout() {
	local t=45
	if [ -r "$BASE_DIR/settings" ]; then
		t=$(awk -F= '$1 == "timeout" { print $2 }' "$BASE_DIR/settings")
		[ -n "$t" ] || t=45
	fi
	echo "$t"
}

while [ $# -gt 0 ]; do
	case $1 in
	-t | --timeout) timeout_s=$2; shift 2 ;;
	-n | --no-dmesg-check) dmesg_check=0; shift ;;
	-l | --list) list_only=1; shift ;;
	-h | --help) usage; exit 0 ;;
	--) shift; break ;;
	-*) echo "run_kselftest.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
	*) break ;;
	esac
done

if [ $# -gt 0 ]; then
	tests=("$@")
else
	mapfile -t tests < <(test_progs)
fi
if [ "$list_only" -eq 1 ]; then
	printf '%s\n' "${tests[@]}"
	exit 0
fi
[ -n "$timeout_s" ] || timeout_s=$(settings_timeout)
if [ ! -w /dev/kmsg ]; then
	dmesg_check=0
fi

# shellcheck source=lib.sh
. "$BASE_DIR/lib.sh"
trap - EXIT

phase_suffix=
if [ "${VMCACHE_PHASES:-1}" -gt 1 ]; then
	phase_suffix=" phase ${VMCACHE_PHASE:-1}/$VMCACHE_PHASES"
fi

prefix() {
	local line
	while IFS= read -r line; do
		printf '# %s\n' "$line"
	done
}

n_pass=0
n_fail=0
n_skip=0

echo "KTAP version 1"
echo "1..${#tests[@]}"
num=0
for t in "${tests[@]}"; do
	num=$((num + 1))
	name="selftests: $SUITE: $(basename "$t")$phase_suffix"
	case $t in
	/*) path=$t ;;
	*) path=$BASE_DIR/$t ;;
	esac
	echo "# $name"
	if [ ! -e "$path" ]; then
		echo "# Warning: file $t is missing!"
		echo "not ok $num $name"
		n_fail=$((n_fail + 1))
		continue
	fi
	cmd=("$path")
	[ -x "$path" ] || cmd=(bash "$path")

	if [ "$dmesg_check" -eq 1 ]; then
		DMESG_MARK="vmcache-selftest: start $num $(basename "$t") $$-$RANDOM"
		echo "$DMESG_MARK" >/dev/kmsg
	fi

	t0=$SECONDS
	(cd "$(dirname "$path")" && timeout -k 10 "$timeout_s" "${cmd[@]}") 2>&1 | prefix
	rc=${PIPESTATUS[0]}
	echo "# $(basename "$t"): $((SECONDS - t0)) s"

	dmesg_bad=0
	if [ "$dmesg_check" -eq 1 ]; then
		echo "vmcache-selftest: end $num $(basename "$t")" >/dev/kmsg
		if ! check_dmesg_clean; then
			dmesg_bad=1
		fi
	fi

	# In the throwaway guest, devices a failed program left behind would
	# only make the next ones fail too: report and remove them.
	if [ -n "${VMCACHE_GUEST:-}" ] && left=$(dmsetup ls 2>/dev/null) &&
	   [ -n "$left" ] && [ "$left" != "No devices found" ]; then
		echo "# $(basename "$t") left device-mapper devices behind, removing:"
		prefix <<<"$left"
		dmsetup remove_all --force >/dev/null 2>&1 || true
	fi

	if [ "$rc" -eq "$KSFT_TIMEOUT" ]; then
		echo "not ok $num $name # TIMEOUT $timeout_s seconds"
		n_fail=$((n_fail + 1))
	elif [ "$dmesg_bad" -eq 1 ]; then
		echo "not ok $num $name # exit=$rc, kernel log has BUG/WARNING/Oops/hung task/call trace"
		n_fail=$((n_fail + 1))
	elif [ "$rc" -eq 0 ]; then
		echo "ok $num $name"
		n_pass=$((n_pass + 1))
	elif [ "$rc" -eq "$KSFT_SKIP" ]; then
		echo "ok $num $name # SKIP"
		n_skip=$((n_skip + 1))
	else
		echo "not ok $num $name # exit=$rc"
		n_fail=$((n_fail + 1))
	fi
done
echo "# Totals: pass:$n_pass fail:$n_fail xfail:0 xpass:0 skip:$n_skip error:0"

if [ "$n_fail" -gt 0 ]; then
	exit 1
fi
if [ "$n_pass" -eq 0 ] && [ "$n_skip" -gt 0 ]; then
	exit "$KSFT_SKIP"
fi
exit 0
