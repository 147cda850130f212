#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The dm-vmcache demo (needs root): installs the dependencies, builds the
# module, and boots a throwaway QEMU guest that puts a vmcache over
# emulated disks, runs a random-read workload uncached and cached, and
# prints the cache statistics and the speed-up (selftests/guest/demo-guest.sh).
# Knobs (environment): DEMO_ORIGIN_MS, DEMO_HOT_MIB, DEMO_RUNTIME, and the
# harness's VMCACHE_ACCEL=kvm|tcg.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

echo "== installing dependencies (scripts/install-deps.sh)"
scripts/install-deps.sh
echo "== building (make module userspace)"
make -s module userspace
echo "== booting the demo guest"
env_args=()
while IFS='=' read -r name value; do
	env_args+=(--env "$name=$value")
done < <(env | grep -E '^DEMO_[A-Z_]+=[^ ]*$' || true)
exec selftests/run-in-guest.sh "${env_args[@]}" --script selftests/guest/demo-guest.sh
