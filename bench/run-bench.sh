#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The dm-vmcache benchmark (make bench): boots ONE throwaway QEMU guest
# (selftests/run-in-guest.sh --script bench/guest-bench.sh), which runs
# raw origin, raw fast device, dm-cache (smq), dm-writecache, dm-vmcache
# (writethrough and writeback) and bcache on the same emulated devices,
# plus dm-vmcache's writeback throughput (sorted vs unsorted vs the
# origin's own write speed).  Prints a table of ratios to the raw origin
# and writes bench/results/latest.txt, latest.dat and a plot (latest.png
# when gnuplot is there; a text bar chart is in latest.txt).
# See bench/README.md.
#
#   bench/run-bench.sh [--no-deps] [--out DIR]
#
# Knobs (environment, passed into the guest): BENCH_RUNTIME (s per
# workload, 10), BENCH_ORIGIN_US (origin latency, 500), BENCH_HOT_MIB (32),
# BENCH_FAST_MIB (256), BENCH_ORIGIN_MIB (1024), BENCH_TARGETS (comma list),
# and the harness's VMCACHE_ACCEL, VMCACHE_BUILD_DIR.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$ROOT/bench/results
deps=1

while [ $# -gt 0 ]; do
	case $1 in
	--no-deps) deps=0; shift ;;
	--out) OUT=$2; shift 2 ;;
	-h | --help) sed -n '3,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "run-bench: unknown option $1" >&2; exit 2 ;;
	esac
done

log() { printf 'run-bench: %s\n' "$*" >&2; }

# bcache-tools (make-bcache, for the guest) and gnuplot (the plot) are
# optional: installed when we can, else bcache is skipped / the chart is
# text.
if [ "$deps" -eq 1 ] && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
	want=()
	command -v make-bcache >/dev/null || want+=(bcache-tools)
	command -v gnuplot >/dev/null || want+=(gnuplot-nox)
	if [ "${#want[@]}" -gt 0 ]; then
		log "installing ${want[*]}"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${want[@]}" >/dev/null 2>&1 ||
			log "could not install ${want[*]} (bcache skipped / text chart)"
	fi
fi

if [ ! -f "$ROOT/dm-vmcache/dm-vmcache.ko" ]; then
	log "building the module (make module)"
	make -C "$ROOT" -s module
fi

mkdir -p "$OUT"
raw=$OUT/latest.raw
env_args=()
while IFS='=' read -r name value; do
	env_args+=(--env "$name=$value")
done < <(env | grep -E '^BENCH_[A-Z_]+=[^ ]*$' || true)

log "booting the benchmark guest (about 6-10 minutes under TCG)"
start=$(date +%s)
rc=0
"$ROOT/selftests/run-in-guest.sh" --timeout "${BENCH_TIMEOUT:-2400}" --bin make-bcache \
	"${env_args[@]}" --script "$ROOT/bench/guest-bench.sh" 2>&1 |
	tr -d '\r' | tee "$raw" | grep --line-buffered -E '^(# |run-in-guest)' || rc=$?
elapsed=$(($(date +%s) - start))
grep -q '^RESULT ' "$raw" || { log "no results (see $raw)"; exit 1; }

# ---------------------------------------------------------------- table

dat=$OUT/latest.dat
txt=$OUT/latest.txt
awk '
	/^RESULT / {
		t = $2; rr[t] = $3; sr[t] = $4; rw[t] = $5
		note = ""; for (i = 6; i <= NF; i++) note = note (i > 6 ? " " : "") $i
		notes[t] = note; order[++n] = t
	}
	END {
		print "# target randread_iops seqread_mbs randwrite_iops (ratios to the raw origin follow)"
		for (i = 1; i <= n; i++) {
			t = order[i]
			printf "%s %s %s %s", t, rr[t], sr[t], rw[t]
			printf " %s %s %s\n", ratio(rr[t], rr["origin"]), ratio(sr[t], sr["origin"]), ratio(rw[t], rw["origin"])
		}
	}
	function ratio(a, b) { return (a == "-" || b == "-" || b + 0 == 0) ? "-" : sprintf("%.2f", a / b) }
' "$raw" >"$dat"

{
	echo "dm-vmcache benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(git -C "$ROOT" describe --always --dirty 2>/dev/null)"
	sed -n 's/^INFO /  /p' "$raw"
	echo "  guest run: ${elapsed} s"
	echo
	printf '%-15s %12s %7s  %12s %7s  %12s %7s\n' target "randread" "x orig" "seqread" "x orig" "randwrite" "x orig"
	printf '%-15s %12s %7s  %12s %7s  %12s %7s\n' "" "4k QD16 IOPS" "" "1M QD4 MB/s" "" "4k QD16 IOPS" ""
	awk '!/^#/ { printf "%-15s %12s %7s  %12s %7s  %12s %7s\n", $1, $2, $5, $3, $6, $4, $7 }' "$dat"
	echo
	awk '/^RESULT / && $3 == "-" { $1 = ""; print "  note:" $0 }' "$raw"
	echo "Writeback throughput (dm-vmcache, flush of random dirty 4 KiB blocks):"
	printf '  %-20s %8s %9s %9s  %s\n' case MiB seconds "MB/s" ""
	awk '/^WB / { n = ""; for (i = 6; i <= NF; i++) n = n " " $i; printf "  %-20s %8s %9s %9s %s\n", $2, $3, $4, $5, n }' "$raw"
	awk '/^WB / { v[$2] = $5 }
		function r(a, b) { return (b + 0 > 0) ? sprintf("%.2f", a / b) : "-" }
		END {
			if (v["dense-sorted"] == "") exit
			printf "  writeback / origin sequential write: dense sorted %s, unsorted %s; sparse sorted %s, unsorted %s\n",
				r(v["dense-sorted"], v["origin-seq-write"]), r(v["dense-unsorted"], v["origin-seq-write"]),
				r(v["sparse-sorted"], v["origin-seq-write"]), r(v["sparse-unsorted"], v["origin-seq-write"])
			printf "  writeback / origin random 4 KiB write: dense sorted %s, unsorted %s; sparse sorted %s, unsorted %s\n",
				r(v["dense-sorted"], v["origin-rand-write"]), r(v["dense-unsorted"], v["origin-rand-write"]),
				r(v["sparse-sorted"], v["origin-rand-write"]), r(v["sparse-unsorted"], v["origin-rand-write"])
			printf "  sorted / unsorted: dense %s, sparse %s\n",
				r(v["dense-sorted"], v["dense-unsorted"]), r(v["sparse-sorted"], v["sparse-unsorted"])
		}' "$raw"
	echo
	# per-target details (cache statistics) from the guest
	grep -E '^#   (vmcache|bcache)' "$raw" | sed 's/^# /  /' || true
} >"$txt"

# ----------------------------------------------------------------- plot

png=$OUT/latest.png
if command -v gnuplot >/dev/null; then
	plot_cmds() { # <terminal>
		cat <<-EOF
		set terminal $1
		set title "Ratio to the raw origin (log scale; higher is better)"
		set style data histogram
		set style histogram cluster gap 1
		set style fill solid 0.8 border -1
		set logscale y
		set yrange [0.01:*]
		set ytics nomirror
		set xtics rotate by -30
		set key top left
		set grid ytics
		plot "$dat" using 5:xtic(1) title "randread 4k", '' using 6 title "seqread 1M", '' using 7 title "randwrite 4k"
		EOF
	}
	plot_cmds "pngcairo size 1000,560 noenhanced" | gnuplot >"$png" 2>/dev/null ||
		plot_cmds "png size 1000,560 noenhanced" | gnuplot >"$png" 2>/dev/null || rm -f "$png"
fi
# text bar chart: one # per doubling over the origin, one - per halving
{
	echo "Chart (ratio to the raw origin: one # per doubling, one - per halving):"
	awk '!/^#/ {
		for (c = 5; c <= 7; c++) {
			name = (c == 5) ? "randread" : (c == 6) ? "seqread" : "randwrite"
			bar = ""
			if ($c != "-" && $c > 0) {
				n = log($c) / log(2)
				for (i = 0.5; i < n; i++) bar = bar "#"
				for (i = -0.5; i > n; i--) bar = bar "-"
				if (bar == "") bar = "|"
			}
			printf "  %-15s %-9s %7s %s\n", (c == 5) ? $1 : "", name, $c, bar
		}
	}' "$dat"
} >>"$txt"

cat "$txt"
[ -f "$png" ] || png=
log "results: $txt${png:+ and $png} ($elapsed s)"
[ "$rc" -eq 0 ] || log "the guest run reported a failure (see $raw)"
exit "$rc"
