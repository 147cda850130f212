#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# checkpatch --strict over the module sources; any finding fails.
# CHECKPATCH=/path/to/checkpatch.pl overrides the copy that
# scripts/install-deps.sh extracts into build/checkpatch/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CHECKPATCH=${CHECKPATCH:-$ROOT/build/checkpatch/checkpatch.pl}

if [ ! -f "$CHECKPATCH" ]; then
	echo "lint-checkpatch: $CHECKPATCH not found; run scripts/install-deps.sh" >&2
	exit 1
fi

cd "$ROOT"
shopt -s nullglob
files=(dm-vmcache/vmcache*.c dm-vmcache/vmcache*.h)
if [ "${#files[@]}" -eq 0 ]; then
	echo "lint-checkpatch: no sources in dm-vmcache/" >&2
	exit 1
fi

# checkpatch exits non-zero on errors only; --terse prints one line per
# finding, so any "FILE:LINE: TYPE:" line is a failure (checks included).
out=$(perl "$CHECKPATCH" --no-tree --strict --terse --show-types -f "${files[@]}" 2>&1) || true
findings=$(printf '%s\n' "$out" | grep -E '^[^:]+:[0-9]+: (ERROR|WARNING|CHECK):' || true)
if [ -n "$findings" ]; then
	printf '%s\n' "$findings"
	echo "checkpatch: $(printf '%s\n' "$findings" | wc -l) finding(s) in ${#files[@]} file(s)" >&2
	exit 1
fi
if printf '%s\n' "$out" | grep -qE '^(ERROR|WARNING|CHECK):'; then
	# Findings without a file:line prefix (e.g. a missing SPDX tag).
	printf '%s\n' "$out"
	exit 1
fi
echo "checkpatch: clean (${#files[@]} files)"
