#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Every test of the project, from a fresh Debian 12 machine (needs root):
#   1. install the dependencies (scripts/install-deps.sh)
#   2. build the module and vmcachectl (counted as one test)
#   3. host unit tests (make -C userspace test; its "N passed, N failed")
#   4. the selftests in a QEMU guest (selftests/run-in-guest.sh), on
#      Debian's 6.1 kernel (all but the long ones: make test-long), then
#      the core programs again on its 6.12
#      kernel with the module built against the 6.12 headers (make
#      module-6.12, build/k6.12/; VMCACHE_612_TESTS=all: every program)
#   5. shellcheck of the project's scripts, make lint, make compat-check
#      (one test each)
# and print one summary line, the last line of the output:
#   N passed, N failed[, N skipped]
# Exit code 0 only if nothing failed.  Logs: build/logs/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOGS=$ROOT/build/logs
cd "$ROOT"
mkdir -p "$LOGS"

passed=0
failed=0
skipped=0
results=()
t_start=$(date +%s)

note() { printf '\n==== %s\n' "$*"; }

record() { # <ok|fail|skip> <name> [detail]
	case $1 in
	ok) passed=$((passed + 1)); results+=("ok      $2${3:+ ($3)}") ;;
	fail) failed=$((failed + 1)); results+=("FAILED  $2${3:+ ($3)}") ;;
	skip) skipped=$((skipped + 1)); results+=("skipped $2${3:+ ($3)}") ;;
	esac
}

# run_logged <log name> <command...>: output to the terminal and the log.
run_logged() {
	local log=$LOGS/$1.log
	shift
	"$@" 2>&1 | tee "$log"
}

# The last "N passed, N failed[, N skipped]" line of a log.
summary_of() {
	grep -E '^([A-Za-z_-]+: )?[0-9]+ passed, [0-9]+ failed(, [0-9]+ skipped)?$' "$1" |
		tail -n 1 | sed -E 's/^[A-Za-z_-]+: //'
}

# add_counts <summary line> <name>: add a runner's counts to the totals.
add_counts() {
	local p f s=0
	read -r p _ f _ <<<"${1//,/}"
	if [[ $1 =~ ([0-9]+)\ skipped ]]; then s=${BASH_REMATCH[1]}; fi
	passed=$((passed + p))
	failed=$((failed + f))
	skipped=$((skipped + s))
	results+=("$(printf '%-7s %s (%s)' "$([ "$f" -eq 0 ] && echo ok || echo FAILED)" "$2" "$1")")
}

elapsed() { echo "$(($(date +%s) - $1)) s"; }

# ---------------------------------------------------------------- deps
note "dependencies (scripts/install-deps.sh)"
t=$(date +%s)
if run_logged deps scripts/install-deps.sh; then
	deps_ok=1
else
	deps_ok=0
	record fail "install dependencies"
fi
echo "deps: $(elapsed "$t")"

# --------------------------------------------------------------- build
note "build: make module userspace"
t=$(date +%s)
build_ok=0
if [ "$deps_ok" -eq 1 ] && run_logged build make module userspace; then
	build_ok=1
	record ok "build module and vmcachectl" "$(elapsed "$t")"
else
	record fail "build module and vmcachectl"
fi

# ---------------------------------------------------------- unit tests
note "host unit tests: make -C userspace test"
t=$(date +%s)
if [ "$deps_ok" -eq 1 ] && make -C userspace -n test >/dev/null 2>&1; then
	rc=0
	run_logged unit make -C userspace test || rc=$?
	line=$(summary_of "$LOGS/unit.log" || true)
	if [ -n "$line" ]; then
		add_counts "$line" "host unit tests, $(elapsed "$t")"
		if [ "$rc" -ne 0 ] && [[ $line == *" 0 failed"* ]]; then
			record fail "host unit tests exit code $rc"
		fi
	elif [ "$rc" -eq 0 ]; then
		record ok "host unit tests" "no summary line"
	else
		record fail "host unit tests" "exit $rc"
	fi
else
	record skip "host unit tests" "no userspace test target"
fi

# ------------------------------------------------------- guest selftests

# run_guest_suite <results name> <log name> [VAR=value...] [-- test...]:
# the selftests (all, or the ones named) in a guest, the harness's
# environment given; its counts added.
run_guest_suite() {
	local name=$1 logname=$2 rc=0 line t envs=()
	shift 2
	while [ $# -gt 0 ] && [ "$1" != -- ]; do
		envs+=("$1")
		shift
	done
	[ $# -gt 0 ] && shift
	t=$(date +%s)
	run_logged "$logname" env "${envs[@]}" selftests/run-in-guest.sh "$@" || rc=$?
	line=$(summary_of "$LOGS/$logname.log" || true)
	if [ -n "$line" ]; then
		add_counts "$line" "$name, $(elapsed "$t")"
		if [ "$rc" -ne 0 ] && [[ $line == *" 0 failed"* ]]; then
			record fail "$name: harness exit code $rc"
		fi
	else
		record fail "$name" "harness exit $rc, no summary"
	fi
}

# The long programs (each minutes under TCG, on code that changes
# rarely: generated hostile input, the counters' matrix, the offline
# tool, the 4 GiB scale case, the hit-ratio estimator) run with `make
# test-long`, not here, so the whole run stays under 40 minutes on a
# 2-core TCG host; VMCACHE_LONG_TESTS= (empty) runs everything here.
read -r -a long_tests <<<"${VMCACHE_LONG_TESTS-vmcache_hostile.sh vmcache_counters.sh vmcache_offline.sh vmcache_scale.sh vmcache_mrc.sh}"
tests_61=()
while read -r t; do
	[[ " ${long_tests[*]} " == *" $t "* ]] || tests_61+=("$t")
done < <(selftests/run_kselftest.sh --list)
note "guest selftests: selftests/run-in-guest.sh (${#long_tests[@]} long ones left to make test-long)"
if [ "$build_ok" -eq 1 ]; then
	run_guest_suite "guest selftests" guest -- "${tests_61[@]}"
else
	record fail "guest selftests" "not run: the build failed"
fi

# The same tests booting Debian's 6.12 kernel: the module built against
# its headers in a private copy, the guest in its own build directory (so
# a 6.1 run may go on beside it).
note "guest selftests (6.12): make module-6.12, selftests/run-in-guest.sh"
# CI runs the core programs there (the whole list would double the run
# time: all of them took 39 minutes on a busy 2-core host), vmcache_irq.sh (its
# completion contexts differ by kernel) and vmcache_poll.sh, which only
# 6.12 can run (on 6.1 no polled bio reaches a vmcache target: it skips),
# vmcache_streams.sh (bios split, cloned and completed twice: the dm
# core's side of that differs by kernel), vmcache_fua.sh (FUA writes
# completed a second time after a commit) and vmcache_writeback_crash.sh
# (a short power cut with writeback running). The long power-cut program
# vmcache_trust.sh runs on 6.1 only here: its protocol is the module's,
# not the kernel's, and it costs five minutes; VMCACHE_612_TESTS=all, or
# `make test-6.12`, runs every one.
read -r -a tests_612 <<<"${VMCACHE_612_TESTS:-env_check.sh vmcache_basic.sh vmcache_writeback_crash.sh vmcache_irq.sh vmcache_poll.sh vmcache_streams.sh vmcache_fua.sh}"
[ "${tests_612[*]}" = all ] && tests_612=()
if [ "$deps_ok" -eq 1 ] && [ "$build_ok" -eq 1 ] && run_logged build-6.12 make module-6.12; then
	run_guest_suite "guest selftests (6.12)" guest-6.12 \
		VMCACHE_KO="$ROOT/build/k6.12/dm-vmcache/dm-vmcache.ko" \
		VMCACHE_BUILD_DIR="$ROOT/build/guest-6.12" -- "${tests_612[@]}"
else
	record fail "guest selftests (6.12)" "not run: build for 6.12 failed"
fi

# ------------------------------------------------------------------ lint
note "shellcheck"
t=$(date +%s)
mapfile -t scripts < <(git ls-files '*.sh' .ci/run 2>/dev/null || true)
if [ "${#scripts[@]}" -eq 0 ]; then
	mapfile -t scripts < <(find scripts selftests -name '*.sh')
fi
if command -v shellcheck >/dev/null 2>&1; then
	if run_logged shellcheck shellcheck "${scripts[@]}"; then
		record ok "shellcheck (${#scripts[@]} scripts)" "$(elapsed "$t")"
	else
		record fail "shellcheck"
	fi
else
	record fail "shellcheck" "not installed"
fi

note "make lint (checkpatch --strict, sparse)"
t=$(date +%s)
if [ "$deps_ok" -eq 1 ] && run_logged lint make lint; then
	record ok "make lint" "$(elapsed "$t")"
else
	record fail "make lint"
fi

note "make compat-check (every installed kernel tree)"
t=$(date +%s)
if [ "$deps_ok" -eq 1 ] && run_logged compat make compat-check; then
	record ok "make compat-check" "$(elapsed "$t")"
else
	record fail "make compat-check"
fi

# --------------------------------------------------------------- summary
note "results ($(elapsed "$t_start") in all; logs in build/logs/)"
printf '%s\n' "${results[@]}"
summary="$passed passed, $failed failed"
[ "$skipped" -gt 0 ] && summary="$summary, $skipped skipped"
echo "$summary"
[ "$failed" -eq 0 ]
