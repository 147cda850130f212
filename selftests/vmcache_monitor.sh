#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# dm-vmcache monitoring: the latency histograms count exactly the I/O that
# was done (N read misses, M read hits, K writes, a flush writing back W
# blocks; writes through every route), stats reset zeroes them, sysfs
# refuses writes to them; vmcachectl status --prometheus is valid text
# format (every line, TYPE before samples, counters named _total and
# monotonic, histogram buckets cumulative with +Inf equal to _count, values
# equal to the status line), for one cache and for all; status --json is
# valid and carries the same counts.
#
# Devices: cache = brd (/dev/ram0, 16 MiB); origin = memory-backed null_blk
# (64 MiB).  Every I/O is 4 KiB O_DIRECT and block aligned: one bio, one
# sample.  sequential_cutoff 0: no stream detection; writeback only when
# flushed.
set -euo pipefail
DIR=$(dirname "$0")
# shellcheck source=lib.sh
. "$DIR/lib.sh"

require_vmcache
require_cmd vmcachectl dd awk
require_module null_blk brd

NAME=vmc_mon
DEV=/dev/mapper/$NAME
CACHE=/dev/ram0
NULLB=vmc_mon_nullb
ORIGIN=/dev/$NULLB
SYS=/sys/module/dm_vmcache/caches/$NAME
CLASSES=(read_hit read_miss write writeback)
BUCKETS=22

# the I/O done, and what each histogram must then count
N=40	# read misses: blocks 0..39, promoted
M=24	# read hits: blocks 0..23 again
K=16	# writes (writeback mode, new blocks 1000..1015)
W=16	# blocks the flush writes back

tmp=$(mktemp -d)
cleanup_push "rm -rf $tmp"

# ------------------------------------------------------------ helpers

rd() { dd if="$DEV" of=/dev/null bs=4k skip="$1" count="$2" iflag=direct status=none; }
wr() { dd if=/dev/urandom of="$DEV" bs=4k seek="$1" count="$2" oflag=direct status=none; }

# lat_count <class>: the sum of the class's bucket counts
lat_count() {
	awk '{ s = 0; for (i = 1; i <= NF; i++) s += $i; print s }' "$SYS/latency_$1"
}

# expect_lat <class>=<count>...: each histogram holds exactly that many
expect_lat() {
	local kv got rc=0
	for kv in "$@"; do
		got=$(lat_count "${kv%%=*}")
		if [ "$got" != "${kv#*=}" ]; then
			ktap_print_msg "latency_${kv%%=*}: $got samples, expected ${kv#*=} ($(cat "$SYS/latency_${kv%%=*}"))"
			rc=1
		fi
	done
	return "$rc"
}

show_lat() {
	local k
	for k in "${CLASSES[@]}"; do
		ktap_print_msg "latency_$k: $(cat "$SYS/latency_$k") (sum $(cat "$SYS/latency_${k}_sum_us") us)"
	done
}

# ------------------------------------------------------------ the steps

step_files() {
	local k f n rc=0
	msg stats reset || return 1
	for k in "${CLASSES[@]}"; do
		f=$SYS/latency_$k
		[ -r "$f" ] && [ -r "${f}_sum_us" ] || {
			ktap_print_msg "no $f or ${f}_sum_us"
			return 1
		}
		n=$(awk '{ print NF }' "$f")
		[ "$n" = "$BUCKETS" ] || { ktap_print_msg "$f: $n fields"; rc=1; }
		[ "$(lat_count "$k")" = 0 ] && [ "$(cat "${f}_sum_us")" = 0 ] ||
			{ ktap_print_msg "$f not zero after stats reset"; rc=1; }
	done
	return "$rc"
}

step_read_misses() {
	rd 0 "$N" && wait_promotions "$N" &&
	expect read_misses="$N" read_hits=0 promotions="$N" &&
	expect_lat read_miss="$N" read_hit=0 write=0 writeback=0
}

step_read_hits() {
	rd 0 "$M" && expect read_hits="$M" read_misses="$N" &&
	expect_lat read_hit="$M" read_miss="$N" write=0 writeback=0
}

step_writes() {
	wr 1000 "$K" && expect write_misses="$K" write_hits=0 blocks_dirty="$K" &&
	expect_lat write="$K" read_hit="$M" read_miss="$N" writeback=0
}

step_flush() {
	msg flush && wait_clean && expect writeback_done="$W" &&
	expect_lat writeback="$W" write="$K" read_hit="$M" read_miss="$N"
}

step_sums() {
	local k rc=0
	for k in "${CLASSES[@]}"; do
		[ "$(cat "$SYS/latency_${k}_sum_us")" -gt 0 ] ||
			{ ktap_print_msg "latency_${k}_sum_us is 0"; rc=1; }
	done
	show_lat
	return "$rc"
}

# ---- Prometheus

# prom_valid <file>: every line is a HELP/TYPE comment or a sample of a
# family whose TYPE came first; counters end in _total; histogram samples
# are _bucket (with le), _sum or _count
prom_valid() {
	awk '
	function fail(why) { printf "line %d: %s: %s\n", NR, why, $0; bad = 1 }
	/^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* / { next }
	/^# TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|histogram|summary|untyped)$/ {
		if ($3 in type) fail("TYPE twice")
		type[$3] = $4
		if ($4 == "counter" && $3 !~ /_total$/) fail("counter without _total")
		next
	}
	/^#/ { fail("bad comment"); next }
	!/^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*"(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*")*\})? (-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?|\+Inf|-Inf|NaN)$/ {
		fail("not a sample"); next
	}
	{
		name = $0; sub(/[{ ].*/, "", name)
		fam = name
		if (!(fam in type)) { fam = name; sub(/_(bucket|sum|count)$/, "", fam) }
		if (!(fam in type)) { fail("no TYPE before it"); next }
		if (type[fam] == "histogram") {
			if (name == fam) fail("histogram sample without suffix")
			if (name ~ /_bucket$/ && $0 !~ /le="/) fail("bucket without le")
		}
		n++
	}
	END { if (!n) { print "no samples"; bad = 1 } ; printf "%d samples\n", n; exit bad }
	' "$1"
}

# prom_value <file> <metric{labels}>: the value of that exact sample
prom_value() {
	awk -v k="$2" 'substr($0, 1, length(k) + 1) == k " " { print $NF; f = 1; exit } END { exit !f }' "$1"
}

# histograms: per device and class, buckets non-decreasing in order, le
# ascending and ending with +Inf, +Inf equal to _count, <BUCKETS> buckets
prom_histograms_ok() {
	awk -v nb="$BUCKETS" '
	/^vmcache_latency_seconds_bucket\{/ {
		k = $0; sub(/,le=.*/, "", k); sub(/^[^{]*\{/, "", k)
		le = $0; sub(/.*le="/, "", le); sub(/".*/, "", le)
		v = $NF + 0
		if ((k in last) && v < last[k]) { printf "%s: bucket le=%s %d below %d\n", k, le, v, last[k]; bad = 1 }
		if ((k in lastle) && lastle[k] != "+Inf" && le != "+Inf" && le + 0 <= lastle[k] + 0) { printf "%s: le %s after %s\n", k, le, lastle[k]; bad = 1 }
		last[k] = v; lastle[k] = le; nbk[k]++
		if (le == "+Inf") inf[k] = v
		next
	}
	/^vmcache_latency_seconds_count\{/ {
		k = $0; sub(/\}.*/, "", k); sub(/^[^{]*\{/, "", k)
		cnt[k] = $NF + 0
	}
	END {
		for (k in nbk) {
			if (nbk[k] != nb) { printf "%s: %d buckets\n", k, nbk[k]; bad = 1 }
			if (lastle[k] != "+Inf") { printf "%s: last bucket le=%s\n", k, lastle[k]; bad = 1 }
			if (!(k in cnt) || cnt[k] != inf[k]) { printf "%s: _count %s, +Inf bucket %s\n", k, cnt[k], inf[k]; bad = 1 }
			n++
		}
		if (n != 4) { printf "%d histograms, expected 4\n", n; bad = 1 }
		exit bad
	}' "$1"
}

# prom_expect <file> <metric{labels}>=<value>...
prom_expect() {
	local f=$1 kv got rc=0
	shift
	for kv in "$@"; do
		got=$(prom_value "$f" "${kv%=*}") || got='(missing)'
		[ "$got" = "${kv##*=}" ] || {
			ktap_print_msg "${kv%=*}: $got, expected ${kv##*=}"
			rc=1
		}
	done
	return "$rc"
}

L="device=\"$NAME\""

step_prom_format() {
	vmcachectl status "$NAME" --prometheus >"$tmp/p1" || return 1
	ktap_print_msg "$(wc -l <"$tmp/p1") lines"
	ktap_log_cmd prom_valid "$tmp/p1"
}

step_prom_values() {
	prom_histograms_ok "$tmp/p1" || return 1
	prom_expect "$tmp/p1" \
		"vmcache_latency_seconds_count{$L,class=\"read_miss\"}=$N" \
		"vmcache_latency_seconds_count{$L,class=\"read_hit\"}=$M" \
		"vmcache_latency_seconds_count{$L,class=\"write\"}=$K" \
		"vmcache_latency_seconds_count{$L,class=\"writeback\"}=$W" \
		"vmcache_read_hits_total{$L}=$(st read_hits)" \
		"vmcache_read_misses_total{$L}=$(st read_misses)" \
		"vmcache_write_misses_total{$L}=$(st write_misses)" \
		"vmcache_writeback_blocks_total{$L}=$(st writeback_done)" \
		"vmcache_used_bytes{$L}=$(($(st blocks_used) * 4096))" \
		"vmcache_dirty_bytes{$L}=0" \
		"vmcache_block_size_bytes{$L}=4096" \
		"vmcache_mode_info{$L,mode=\"writeback\"}=1" \
		"vmcache_metadata_info{$L,state=\"ok\"}=1" \
		"vmcache_flush_active{$L}=0"
}

# without a name: every cache; this one's samples are the same
step_prom_all() {
	vmcachectl status --prometheus >"$tmp/pall" || return 1
	ktap_log_cmd prom_valid "$tmp/pall" || return 1
	diff <(grep -F "{$L" "$tmp/p1" | grep -vE '^vmcache_metadata_(seq|commits_total)') \
		<(grep -F "{$L" "$tmp/pall" | grep -vE '^vmcache_metadata_(seq|commits_total)')
}

# counters (and histogram buckets, sums and counts) never go down
step_prom_monotonic() {
	rd 0 8 && rd 2000 4 && wr 3000 4 || return 1
	vmcachectl status "$NAME" --prometheus >"$tmp/p2" || return 1
	awk '
	FNR == NR { if ($0 !~ /^#/) { k = $0; sub(/ [^ ]*$/, "", k); v[k] = $NF + 0 }; next }
	/^#/ { next }
	{
		k = $0; sub(/ [^ ]*$/, "", k); name = k; sub(/\{.*/, "", name)
		if (name !~ /_(total|bucket|sum|count)$/) next
		n++
		if (!(k in v)) { print "new sample " k; bad = 1 }
		else if ($NF + 0 < v[k]) { print k ": " v[k] " -> " $NF; bad = 1 }
		else if ($NF + 0 > v[k]) up++
	}
	END { printf "%d counter samples, %d went up\n", n, up; exit bad || !up }
	' "$tmp/p1" "$tmp/p2"
}

step_json() {
	vmcachectl status "$NAME" --json >"$tmp/j" || return 1
	if command -v jq >/dev/null 2>&1; then
		jq -e --argjson n "$N" --argjson m "$((M + 8))" --argjson k "$((K + 4))" \
			--argjson w "$W" --argjson b "$BUCKETS" '
			.latency.read_miss.count == $n + 4 and
			.latency.read_hit.count == $m and
			.latency.write.count == $k and
			.latency.writeback.count == $w and
			(.latency.le_us | length) == $b and
			.latency.le_us[0] == 16 and .latency.le_us[$b - 1] == null and
			(.latency.write.buckets | add) == .latency.write.count and
			.read_hits == $m' "$tmp/j" >/dev/null || {
			ktap_print_msg "jq: $(jq -c .latency "$tmp/j" 2>&1 | head -c 600)"
			return 1
		}
		ktap_print_msg "valid JSON (jq), latency counts as expected"
	else
		# no jq in the guest: the structure, by its lines
		grep -q '"latency": {' "$tmp/j" &&
		awk '/"read_miss": \{/ { getline; print }' "$tmp/j" | grep -q "\"count\": $((N + 4))," &&
		[ "$(head -c 1 "$tmp/j")" = "{" ] && [ "$(tail -n 1 "$tmp/j")" = "}" ] ||
			return 1
		ktap_print_msg "no jq: latency counts checked by line"
	fi
}

step_reset() {
	local k rc=0
	msg stats reset || return 1
	for k in "${CLASSES[@]}"; do
		[ "$(lat_count "$k")" = 0 ] && [ "$(cat "$SYS/latency_${k}_sum_us")" = 0 ] ||
			{ ktap_print_msg "latency_$k after reset: $(cat "$SYS/latency_$k")"; rc=1; }
	done
	vmcachectl status "$NAME" --prometheus >"$tmp/p3" &&
	prom_expect "$tmp/p3" \
		"vmcache_latency_seconds_count{$L,class=\"read_hit\"}=0" \
		"vmcache_latency_seconds_bucket{$L,class=\"write\",le=\"+Inf\"}=0" \
		"vmcache_latency_seconds_sum{$L,class=\"writeback\"}=0" || rc=1
	return "$rc"
}

# a write is one sample whatever its route: cache only (writeback), both
# devices (writethrough), origin only (passthrough, a cached block dropped)
step_write_routes() {
	msg flush && wait_clean &&
	msg stats reset && msg mode writethrough && wr 4000 4 &&
	msg mode passthrough && wr 4100 4 && wr 4000 2 &&
	msg mode writeback && wr 4200 4 || return 1
	expect_lat write=14 read_hit=0 read_miss=0 writeback=0 &&
	expect write_misses=12 write_hits=2
}

step_readonly() {
	local k
	for k in "${CLASSES[@]}"; do
		if (echo 0 >"$SYS/latency_$k") 2>/dev/null ||
			(echo 0 >"$SYS/latency_${k}_sum_us") 2>/dev/null; then
			ktap_print_msg "latency_$k accepted a write"
			return 1
		fi
	done
}

# ---------------------------------------------------------------- main

PLAN=16
ktap_print_header
ktap_set_plan "$PLAN"
dmesg_mark

setup_brd 1 16 && setup_null_blk "$NULLB" 64 ||
	ktap_skip_all "cannot set up brd/null_blk"
wipe_dev "$CACHE" 2
OSZ=$(dev_sectors "$ORIGIN")
T0=$(date +%s)
if ! dm_create "$NAME" "0 $OSZ vmcache $CACHE $ORIGIN 10 mode writeback sequential_cutoff 0 writeback_low 100 writeback_high 100 max_dirty_age 0"; then
	ktap_exit_fail_msg "cannot create the cache"
fi
ktap_test_pass "create: writeback, sequential_cutoff 0, writeback on flush only"
ktap_test_result "sysfs: 4 histograms of $BUCKETS buckets and their sums, zero after stats reset" step_files
ktap_test_result "$N read misses: latency_read_miss counts $N, nothing else" step_read_misses
ktap_test_result "$M read hits: latency_read_hit counts $M" step_read_hits
ktap_test_result "$K writes: latency_write counts $K" step_writes
ktap_test_result "flush writes back $W blocks: latency_writeback counts $W" step_flush
ktap_test_result "every class has a non-zero sum of microseconds" step_sums
ktap_test_result "status --prometheus: every line valid text format, TYPE before samples, counters _total" step_prom_format
ktap_test_result "status --prometheus: buckets cumulative, +Inf = _count = $N, $M, $K, $W; values as the status line" step_prom_values
ktap_test_result "status --prometheus without a name: valid, same samples for this cache" step_prom_all
ktap_test_result "status --prometheus: counters monotonic across more I/O" step_prom_monotonic
ktap_test_result "status --json: valid, latency object with the counts" step_json
ktap_test_result "stats reset zeroes the histograms (sysfs and --prometheus)" step_reset
ktap_test_result "writes counted once whatever the route (cache, both, origin)" step_write_routes
ktap_test_result "latency files are read-only" step_readonly
ktap_test_result "kernel log clean" check_dmesg_clean
ktap_print_msg "run time $(($(date +%s) - T0)) s"
ktap_finished "$PLAN"
