#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# The dm-vmcache benchmark (make bench): boots ONE throwaway QEMU guest
# (selftests/run-in-guest.sh --script bench/guest-bench.sh), which runs
# raw origin, raw fast device, dm-linear over it, dm-cache (smq),
# dm-writecache, dm-vmcache (writethrough and writeback) and bcache on the
# same emulated devices, plus dm-vmcache's writeback throughput and the
# cases of issue 10 (fsync, writes during writeback, sustained writes,
# drains, sequential reads over a mixed cache, reload of a big cache).
# Prints tables of ratios and writes bench/results/latest.txt, latest.dat
# and a plot (latest.png when gnuplot is there; a text bar chart is in
# latest.txt).  See bench/README.md.
#
#   bench/run-bench.sh [--no-deps] [--out DIR] [--parse RAW]
#
# --parse RAW: no guest, build the tables from RAW (a latest.raw).
# Knobs (environment, passed into the guest): BENCH_SECTIONS (comma list:
# rows,fsync,wb,wbactive,pairs,sustained,drain,seqmix,reload,crc), BENCH_RUNTIME (s
# per workload, 10), BENCH_TARGETS, BENCH_PEERS (comma lists), sizes and
# more in bench/README.md; and the harness's VMCACHE_ACCEL,
# VMCACHE_BUILD_DIR, VMCACHE_KO, VMCACHE_MEM (3072 here).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$ROOT/bench/results
deps=1
parse=

while [ $# -gt 0 ]; do
	case $1 in
	--no-deps) deps=0; shift ;;
	--out) OUT=$2; shift 2 ;;
	--parse) parse=$(realpath "$2"); deps=0; shift 2 ;;
	-h | --help) sed -n '3,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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

if [ -z "$parse" ] && [ -z "${VMCACHE_KO:-}" ] && [ ! -f "$ROOT/dm-vmcache/dm-vmcache.ko" ]; then
	log "building the module (make module)"
	make -C "$ROOT" -s module
fi

mkdir -p "$OUT"
raw=$OUT/latest.raw
rc=0
if [ -n "$parse" ]; then
	[ "$parse" = "$(realpath -m "$raw")" ] || cp "$parse" "$raw"
	elapsed=$(sed -n 's/^# total \([0-9]*\) s$/\1/p' "$raw" | tail -n 1)
	elapsed=${elapsed:-?}
else
	env_args=()
	while IFS='=' read -r name value; do
		env_args+=(--env "$name=$value")
	done < <(env | grep -E '^BENCH_[A-Z_]+=[^ ]*$' || true)
	# the reload case's cache holds ~50 MiB of kernel state; the origin
	# and fast device live in guest memory too
	export VMCACHE_MEM=${VMCACHE_MEM:-3072}

	log "booting the benchmark guest (about 15-20 minutes under TCG)"
	start=$(date +%s)
	"$ROOT/selftests/run-in-guest.sh" --timeout "${BENCH_TIMEOUT:-2400}" --bin make-bcache --bin chrt \
		"${env_args[@]}" --script "$ROOT/bench/guest-bench.sh" 2>&1 |
		tr -d '\r' | tee "$raw" | grep --line-buffered -E '^(# |run-in-guest)' || rc=$?
	elapsed=$(($(date +%s) - start))
fi
grep -qE '^(RESULT|FSYNC|WB|WBACT|PAIR|SUSSUM|DRAIN|SEQMIX|RELOAD|CRC) ' "$raw" || { log "no results (see $raw)"; exit 1; }

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
		print "# target randread_iops seqread_mbs randwrite_iops (ratios to the raw origin follow; then randread and randwrite ratios to linear)"
		for (i = 1; i <= n; i++) {
			t = order[i]
			printf "%s %s %s %s", t, rr[t], sr[t], rw[t]
			printf " %s %s %s", ratio(rr[t], rr["origin"]), ratio(sr[t], sr["origin"]), ratio(rw[t], rw["origin"])
			printf " %s %s\n", ratio(rr[t], rr["linear"]), ratio(rw[t], rw["linear"])
		}
	}
	function ratio(a, b) { return (a == "" || b == "" || a == "-" || b == "-" || b + 0 == 0) ? "-" : sprintf("%.2f", a / b) }
' "$raw" >"$dat"

# awk helpers shared by the tables below (awk code: no shell expansion)
# shellcheck disable=SC2016
AWKLIB='
	function r(a, b) { return (a == "" || b == "" || a == "-" || b == "-" || b + 0 == 0) ? "-" : sprintf("%.2f", a / b) }
	function rest(from,   i, s) { s = ""; for (i = from; i <= NF; i++) s = s (i > from ? " " : "") $i; return s }
'

{
	echo "dm-vmcache benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(git -C "$ROOT" describe --always --dirty 2>/dev/null)"
	sed -n 's/^INFO /  /p' "$raw"
	echo "  guest run: ${elapsed} s"
	if grep -q '^RESULT ' "$raw"; then
		echo
		printf '%-15s %12s %7s %6s  %12s %7s  %12s %7s %6s\n' target "randread" "x orig" "x lin" "seqread" "x orig" "randwrite" "x orig" "x lin"
		printf '%-15s %12s %7s %6s  %12s %7s  %12s %7s %6s\n' "" "4k QD16 IOPS" "" "" "1M QD4 MB/s" "" "4k QD16 IOPS" "" ""
		awk '!/^#/ { printf "%-15s %12s %7s %6s  %12s %7s  %12s %7s %6s\n", $1, $2, $5, $8, $3, $6, $4, $7, $9 }' "$dat"
		echo "  (x lin: ratio to dm-linear over the fast device, the ceiling of a dm target; issue 10 targets randwrite and randread >= 0.9 for vmcache-wb)"
		awk '/^RESULT / && $3 == "-" { $1 = ""; print "  note:" $0 }' "$raw"
	fi
	if grep -q '^FSYNC ' "$raw"; then
		echo
		echo "fsync-heavy writes (4 KiB random writes over the hot set, fsync after each, QD 1):"
		printf '  %-15s %8s %7s %6s  %8s %14s %11s %14s\n' target IOPS "x orig" "x lin" fsyncs "origin flushes" "per fsync" "origin data wr"
		awk "$AWKLIB"'/^FSYNC / { t[++n] = $2; io[$2] = $3; fs[$2] = $4; fl[$2] = $5; wr[$2] = $6 }
			END { for (i = 1; i <= n; i++) { x = t[i]
				printf "  %-15s %8s %7s %6s  %8s %14s %11s %14s\n", x, io[x], r(io[x], io["origin"]), r(io[x], io["linear"]), fs[x], fl[x], r(fl[x], fs[x]), wr[x] } }' "$raw"
	fi
	if grep -q '^WB ' "$raw"; then
		echo
		echo "Writeback throughput (dm-vmcache, flush of dirty 4 KiB blocks; contig: every block of the area, written in random order):"
		printf '  %-20s %8s %9s %9s %8s  %s\n' case MiB seconds "MB/s" "req/blk" ""
		awk '/^WB / { n = ""; b = ""; q = ""
			for (i = 6; i <= NF; i++) { n = n " " $i; if ($i ~ /^blocks/) b = $(i - 1); if ($i == "origin" && $(i + 1) == "write") q = $(i - 1) }
			printf "  %-20s %8s %9s %9s %8s %s\n", $2, $3, $4, $5, (b + 0 > 0 ? sprintf("%.2f", q / b) : "-"), n }' "$raw"
		awk "$AWKLIB"'/^WB / { v[$2] = $5 }
			END {
				if (v["dense-sorted"] == "") exit
				printf "  writeback / origin sequential write: dense sorted %s, unsorted %s; sparse sorted %s, unsorted %s; contig sorted %s, unsorted %s\n",
					r(v["dense-sorted"], v["origin-seq-write"]), r(v["dense-unsorted"], v["origin-seq-write"]),
					r(v["sparse-sorted"], v["origin-seq-write"]), r(v["sparse-unsorted"], v["origin-seq-write"]),
					r(v["contig-sorted"], v["origin-seq-write"]), r(v["contig-unsorted"], v["origin-seq-write"])
				printf "  writeback / origin random 4 KiB write (QD 256): dense sorted %s, unsorted %s; sparse sorted %s, unsorted %s\n",
					r(v["dense-sorted"], v["origin-rand-write"]), r(v["dense-unsorted"], v["origin-rand-write"]),
					r(v["sparse-sorted"], v["origin-rand-write"]), r(v["sparse-unsorted"], v["origin-rand-write"])
				printf "  sorted / unsorted: dense %s, sparse %s, contig %s\n",
					r(v["dense-sorted"], v["dense-unsorted"]), r(v["sparse-sorted"], v["sparse-unsorted"]),
					r(v["contig-sorted"], v["contig-unsorted"])
			}' "$raw"
	fi
	if grep -q '^WBACT ' "$raw"; then
		echo
		echo "Random writes while writeback runs (vmcache-wb, 4 KiB QD 16 over the hot set, same dirty set; issue 10 target: active >= 0.8 x held):"
		printf '  %-8s %8s %7s %15s %13s %13s  %s\n' case IOPS "x held" "written back" "dirty before" "dirty after" ""
		awk "$AWKLIB"'/^WBACT / { c[++n] = $2; io[$2] = $3; w[$2] = $4; d0[$2] = $5; d1[$2] = $6; no[$2] = rest(7) }
			END { for (i = 1; i <= n; i++) { x = c[i]
				printf "  %-8s %8s %7s %15s %13s %13s  %s\n", x, io[x], r(io[x], io["held"]), w[x], d0[x], d1[x], no[x] } }' "$raw"
	fi
	if grep -q '^DRAIN ' "$raw"; then
		echo
		echo "Drain of a large dirty set (random 4 KiB blocks; time from the drain request to the origin's last I/O, nothing dirty then):"
		printf '  %-15s %9s %9s %8s %8s %8s %10s %8s  %s\n' target "dirty MiB" seconds "MB/s" "x oseq" "x orand" "orig reqs" "req/4k" ""
		awk "$AWKLIB"'/^WB origin-seq-write/ { os = $5 } /^WB origin-rand-write/ { orr = $5 }
			/^DRAIN / { t[++n] = $2; d[$2] = $3; s[$2] = $4; m[$2] = $5; q[$2] = $6; no[$2] = rest(7) }
			END { for (i = 1; i <= n; i++) { x = t[i]
				printf "  %-15s %9s %9s %8s %8s %8s %10s %8s  %s\n", x, d[x], s[x], m[x], r(m[x], os), r(m[x], orr), q[x],
					(d[x] + 0 > 0 ? sprintf("%.2f", q[x] / (d[x] * 256)) : "-"), no[x] } }' "$raw"
	fi
	if grep -q '^SUSSUM ' "$raw"; then
		echo
		echo "Sustained 4 KiB random writes, QD 16, over twice the cache size (per second: IOPS, mean completion latency us, dirty MiB):"
		awk '/^SUS / { if (!($2 in seen)) { seen[$2] = 1; t[++n] = $2 } io[$2, $3] = $4; la[$2, $3] = $5; d[$2, $3] = $6; if ($3 > m) m = $3 }
			END {
				if (!n) exit
				printf "  %4s", "s"; for (i = 1; i <= n; i++) printf "  %-26s", t[i]; printf "\n"
				for (s = 1; s <= m; s++) {
					printf "  %4d", s
					for (i = 1; i <= n; i++) printf "  %7s %9s %8s ", io[t[i], s], la[t[i], s], d[t[i], s]
					printf "\n"
				}
			}' "$raw"
		printf '  %-15s %10s %10s %9s %10s  %s\n' target "mean IOPS" "min 1-s" "min/mean" "p99 us" ""
		awk "$AWKLIB"'/^SUSSUM / { printf "  %-15s %10s %10s %9s %10s  %s\n", $2, $3, $4, r($4, $3), $5, rest(6) }' "$raw"
		grep -q '^SUSSUM vmcache-wb45 ' "$raw" &&
			echo "  (vmcache-wb45: dm-vmcache with dm-writecache's default watermarks, writeback_low 45 writeback_high 50)"
	fi
	if grep -q '^SEQMIX ' "$raw"; then
		echo
		echo "1 MiB sequential reads, QD 4, over a cache holding scattered clean and dirty blocks (issue 10 target: >= 0.95 x origin):"
		printf '  %-15s %8s %7s %12s %9s %9s  %s\n' target "MB/s" "x orig" "origin reads" "MiB read" "reads/MiB" ""
		awk "$AWKLIB"'/^SEQMIX / { t[++n] = $2; m[$2] = $3; rd[$2] = $4; mb[$2] = $5; no[$2] = rest(6) }
			END { for (i = 1; i <= n; i++) { x = t[i]
				printf "  %-15s %8s %7s %12s %9s %9s  %s\n", x, m[x], r(m[x], m["origin"]), rd[x], mb[x], r(rd[x], mb[x]), no[x] } }' "$raw"
	fi
	if grep -q '^RELOAD ' "$raw"; then
		echo
		echo "Reload of an unchanged cache (dmsetup suspend; reload with the same table; resume; cache device reads per step):"
		printf '  %-8s %9s %8s %8s %8s %8s %10s %10s %9s  %s\n' case blocks "susp ms" "load ms" "res ms" "total ms" "rd@load" "rd@resume" "KiB read" ""
		awk "$AWKLIB"'/^RELOAD / { printf "  %-8s %9s %8s %8s %8s %8s %10s %10s %9s  %s\n", $2, $3, $4, $5, $6,
			($4 ~ /^[0-9]+$/ ? $4 + $5 + $6 : $5), $7, $8, $9, rest(10) }' "$raw"
		echo "  (create: the first load of the blank cache, formatting it; its time is in load ms)"
	fi
	if grep -q '^PAIR ' "$raw"; then
		echo
		echo "Ratios in alternation (the two sides run one after the other, $(grep -c '^PAIR randwrite ' "$raw") rounds; median of the per-round ratios; issue 10 targets: randwrite and randread >= 0.9 x linear, active >= 0.8 x held):"
		printf '  %-10s %14s %14s %8s %8s %8s  %s\n' case "reference IOPS" "vmcache IOPS" "median" "min" "max" "per round"
		awk "$AWKLIB"'
			function med(a, n,   i, j, t) {
				for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
				return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
			}
			/^PAIR / && $4 != "-" && $5 != "-" && $4 + 0 > 0 {
				c = $2; if (!(c in k)) { order[++m] = c; no[c] = rest(6) }
				k[c]++; ra[c, k[c]] = $5 / $4; ia[c, k[c]] = $4; ib[c, k[c]] = $5
				lst[c] = lst[c] sprintf(" %.2f", $5 / $4)
			}
			END { for (x = 1; x <= m; x++) { c = order[x]; n = k[c]
				delete q; for (i = 1; i <= n; i++) q[i] = ra[c, i]; mr = med(q, n); lo = q[1]; hi = q[n]
				delete q; for (i = 1; i <= n; i++) q[i] = ia[c, i]; ma = med(q, n)
				delete q; for (i = 1; i <= n; i++) q[i] = ib[c, i]; mb = med(q, n)
				printf "  %-10s %14d %14d %8.2f %8.2f %8.2f %s\n", c, ma, mb, mr, lo, hi, lst[c]
				printf "  %-10s %s\n", "", no[c] } }' "$raw"
	fi
	if grep -q '^CRC ' "$raw"; then
		echo
		echo "Data checksums (dm-vmcache writeback, writeback held off, same boot; IOPS):"
		printf '  %-16s %12s %12s %7s  %s\n' case "data_crc 0" "data_crc 1" "1 / 0" ""
		awk "$AWKLIB"'/^CRC / { printf "  %-16s %12s %12s %7s  %s\n", $2, $3, $4, r($4, $3), rest(5) }' "$raw"
	fi
	echo
	# per-target details (cache statistics) from the guest
	grep -E '^#   (vmcache status|bcache: (state|cache_hits))' "$raw" | sed 's/^# /  /' || true
} >"$txt"

# ----------------------------------------------------------------- plot

png=$OUT/latest.png
rm -f "$png"
if grep -q '^RESULT ' "$raw" && command -v gnuplot >/dev/null; then
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
grep -q '^RESULT ' "$raw" && {
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
