#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# dm-vmcache basics: create/remove, status and table lines, table round
# trip, data integrity through the device and on the origin (passthrough
# and writethrough), malformed tables refused with a precise error, and
# module load/unload cycles.
#
# Devices: cache = brd (/dev/ram0, /dev/ram1 blank, /dev/ram2 for odd
# cases); origin = dm-delay (1 ms) over a memory-backed null_blk.
set -euo pipefail
DIR=$(dirname "$0")
# shellcheck source=lib.sh
. "$DIR/lib.sh"

require_vmcache
require_cmd fio cmp md5sum dd
require_module dm-delay null_blk brd

ORIGIN_MIB=256
CACHE_MIB=64
RELOADS=${VMCACHE_RELOADS:-10}

# Documented interface (Documentation/vmcache.rst).
STATUS_KEYS=(version mode policy block_size metadata metadata_used
	metadata_total blocks_total blocks_used blocks_dirty read_hits
	read_misses write_hits write_misses bypassed promotions demotions
	writeback_done writeback_inflight writeback_errors cache_errors
	origin_errors data_loss flush degraded commits seq)
declare -A TABLE_DEFAULTS=(
	[block_size]=4096 [mode]=writethrough [policy]=2q [promote_after]=1
	[sequential_cutoff]=4096 [writeback_low]=10 [writeback_high]=50
	[max_dirty_age]=30 [writeback_max_inflight]=256 [writeback_floor]=4096
	[writeback_sort]=1 [writeback_retries]=8 [mrc]=on [must_exist]=0
	[data_crc]=0
)

tmp=$(mktemp -d)
cleanup_push "rm -rf $tmp"

# Every vmcache device is removed before the module goes; brd and
# null_blk go after (cleanup runs last pushed first).
setup_devices() {
	setup_brd 3 "$CACHE_MIB" &&
	setup_null_blk vmc_nullb "$ORIGIN_MIB" irqmode=2 completion_nsec=50000 &&
	setup_delay vmc_origin /dev/vmc_nullb 1
}

CACHE=/dev/ram0
BLANK=/dev/ram1
ORIGIN=/dev/mapper/vmc_origin

# ------------------------------------------------------------ helpers

# Fields of "dmsetup status" after "<start> <len> vmcache".
status_fields() {
	dmsetup status "$1" | cut -d' ' -f4-
}

check_status_line() {
	local dev=$1 line kv i=0 keys=()
	line=$(status_fields "$dev")
	ktap_print_msg "status: $line"
	for kv in $line; do
		if [[ ! $kv =~ ^[a-z][a-z0-9_]*=[^=[:space:]]+$ ]]; then
			ktap_print_msg "not a key=value token: $kv"
			return 1
		fi
		keys+=("${kv%%=*}")
	done
	for ((i = 0; i < ${#STATUS_KEYS[@]}; i++)); do
		if [ "${keys[$i]:-}" != "${STATUS_KEYS[$i]}" ]; then
			ktap_print_msg "token $((i + 1)) is '${keys[$i]:-}', documented '${STATUS_KEYS[$i]}'"
			return 1
		fi
	done
	[ "$(status_value "$dev" version)" = 1 ] &&
		[ "$(status_value "$dev" metadata)" = ok ] &&
		[ "$(status_value "$dev" blocks_total)" -gt 0 ]
}

# The table of a freshly created default device names every option once
# with its documented default.
check_table_defaults() {
	local dev=$1 line nopt i key val rc=0
	local -a words
	declare -A seen=()
	line=$(dmsetup table "$dev")
	ktap_print_msg "table: $line"
	read -r -a words <<<"$line"
	if [ "${words[2]}" != vmcache ] || [ "${#words[@]}" -lt 6 ]; then
		ktap_print_msg "not a vmcache table line"
		return 1
	fi
	nopt=${words[5]:-0}
	if [ "$nopt" -ne $((${#words[@]} - 6)) ] || [ $((nopt % 2)) -ne 0 ]; then
		ktap_print_msg "#opt_args $nopt does not match the ${#words[@]} words"
		return 1
	fi
	for ((i = 6; i < ${#words[@]}; i += 2)); do
		key=${words[$i]}
		val=${words[$((i + 1))]}
		if [ -n "${seen[$key]:-}" ]; then
			ktap_print_msg "option $key printed twice"
			rc=1
		fi
		seen[$key]=1
		if [ -z "${TABLE_DEFAULTS[$key]:-}" ]; then
			ktap_print_msg "undocumented option $key"
			rc=1
		elif [ "${TABLE_DEFAULTS[$key]}" != "$val" ]; then
			ktap_print_msg "option $key is $val, documented default ${TABLE_DEFAULTS[$key]}"
			rc=1
		fi
	done
	for key in "${!TABLE_DEFAULTS[@]}"; do
		if [ -z "${seen[$key]:-}" ]; then
			ktap_print_msg "option $key not printed"
			rc=1
		fi
	done
	return "$rc"
}

# table_round_trip <dev>: reload the printed line; the table is identical.
table_round_trip() {
	local dev=$1 before after
	before=$(dmsetup table "$dev")
	dmsetup reload "$dev" --table "$before" || return 1
	dmsetup resume "$dev" || return 1
	after=$(dmsetup table "$dev")
	if [ "$before" != "$after" ]; then
		ktap_print_msg "before: $before"
		ktap_print_msg "after:  $after"
		return 1
	fi
}

# Reload with some options changed; they show in the table and the new
# line round-trips too.
table_reload_options() {
	local dev=$1 line
	dmsetup reload "$dev" --table \
		"0 $OSZ vmcache $CACHE $ORIGIN 8 promote_after 3 writeback_low 5 sequential_cutoff 1024 policy lru" ||
		return 1
	dmsetup resume "$dev" || return 1
	line=$(dmsetup table "$dev")
	ktap_print_msg "table: $line"
	[[ " $line " == *" promote_after 3 "* ]] &&
		[[ " $line " == *" writeback_low 5 "* ]] &&
		[[ " $line " == *" sequential_cutoff 1024 "* ]] &&
		[[ " $line " == *" policy lru "* ]] &&
		[ "$(status_value "$dev" policy)" = lru ] &&
		table_round_trip "$dev"
}

# Both devices are dependencies (iterate_devices) and the device is as
# large as the origin.
check_deps_and_size() {
	local dev=$1 deps
	deps=$(dmsetup deps "$dev")
	ktap_print_msg "deps: $deps"
	[[ $deps == *"2 dependencies"* ]] &&
		[ "$(dev_sectors "/dev/mapper/$dev")" -eq "$OSZ" ]
}

# Logical block size no smaller than either device's.
check_io_limits() {
	local dev=$1 lbs c o
	lbs=$(cat "$(sysfs_block "/dev/mapper/$dev")/queue/logical_block_size")
	c=$(cat "$(sysfs_block "$CACHE")/queue/logical_block_size")
	o=$(cat "$(sysfs_block "$ORIGIN")/queue/logical_block_size")
	ktap_print_msg "logical_block_size: vmcache $lbs, cache $c, origin $o"
	[ "$lbs" -ge "$c" ] && [ "$lbs" -ge "$o" ]
}

run_fio_verify() {
	ktap_log_cmd fio --name=vmcache-verify --filename="/dev/mapper/$1" \
		--rw=randwrite --bs=4k --size=32M --ioengine=libaio --iodepth=8 \
		--direct=1 --verify=crc32c --verify_fatal=1 --do_verify=1 \
		--randrepeat=0 --output-format=terse --output=/dev/null
}

# Read <MiB> at <MiB offset> of a device with O_DIRECT.
read_direct() { # <dev> <offset MiB> <MiB>
	dd if="$1" bs=1M skip="$2" count="$3" iflag=direct status=none
}

write_pattern() { # <dev>: the 16 MiB pattern at 64 MiB
	dd if="$tmp/pattern" of="$1" bs=1M seek=64 oflag=direct conv=fsync status=none
}

pattern_read_back() { # <dev>
	read_direct "$1" 64 16 >"$tmp/back"
	compare_bytes "$tmp/pattern" "$tmp/back"
}

# The fio region (first 32 MiB) is the same on the device and the origin.
fio_region_on_origin() { # <dev>
	read_direct "/dev/mapper/$1" 0 32 >"$tmp/a"
	read_direct "$ORIGIN" 0 32 >"$tmp/b"
	compare_bytes "$tmp/a" "$tmp/b"
}

# ------------------------------------------------- malformed tables

BAD_CASES=()
# bad <expected ti->error (ERE)> <description> <table> [<preparation>]
bad() {
	BAD_CASES+=("$1"$'\t'"$2"$'\t'"$3"$'\t'"${4:--}")
}

# The target's ti->error strings (dm-vmcache/vmcache-target.c,
# vmcache-metadata.c); the kernel logs "<dev>: vmcache: <error>".
define_bad_cases() {
	local o=$ORIGIN s=$OSZ b=$BLANK g=/dev/mapper/vmc_garbage
	local usage='Need <cache_dev> <origin_dev>'
	local nopt='Invalid number of optional arguments'
	local bs='block_size must be a power of two from 4096 to 65536'
	bad "$usage" "no arguments" "0 $s vmcache"
	bad "$usage" "cache device only" "0 $s vmcache $b"
	bad 'Cannot open cache device' "cache device does not exist" "0 $s vmcache /dev/vmc_nonexistent $o"
	bad 'Cannot open origin device' "origin device does not exist" "0 $s vmcache $b /dev/vmc_nonexistent"
	bad 'Cache and origin are the same device' "same device for cache and origin" "0 $CSZ vmcache $b $b"
	bad 'Target length must equal the origin size' "length larger than the origin" "0 $((s + 8)) vmcache $b $o"
	bad 'Target length must equal the origin size' "length smaller than the origin" "0 $((s - 8)) vmcache $b $o"
	bad "$nopt" "#opt_args not a number" "0 $s vmcache $b $o two mode writeback"
	bad "$nopt" "#opt_args larger than the arguments" "0 $s vmcache $b $o 4 mode writeback"
	bad "$nopt" "#opt_args above twice the number of options" "0 $s vmcache $b $o 30 mode writeback"
	bad 'Optional arguments must be key value pairs' "#opt_args odd" "0 $s vmcache $b $o 1 mode"
	bad 'Too many arguments' "extra word after the options" "0 $s vmcache $b $o 2 mode writeback extra"
	bad 'Unknown optional argument' "unknown option" "0 $s vmcache $b $o 2 colour blue"
	bad 'Optional argument given twice' "option given twice" "0 $s vmcache $b $o 4 mode writeback mode writethrough"
	bad "$bs" "block_size not a power of two" "0 $s vmcache $b $o 2 block_size 6144"
	bad "$bs" "block_size below 4096" "0 $s vmcache $b $o 2 block_size 2048"
	bad "$bs" "block_size above 65536" "0 $s vmcache $b $o 2 block_size 131072"
	bad "$bs" "block_size with a unit" "0 $s vmcache $b $o 2 block_size 4k"
	bad "$bs" "block_size overflows 64 bits" "0 $s vmcache $b $o 2 block_size 18446744073709555712"
	bad 'mode must be writethrough, writeback or passthrough' "unknown mode" "0 $s vmcache $b $o 2 mode writearound"
	bad 'policy must be 2q or lru' "unknown policy" "0 $s vmcache $b $o 2 policy fifo"
	bad 'promote_after must be 1 to 255' "promote_after 0" "0 $s vmcache $b $o 2 promote_after 0"
	bad 'promote_after must be 1 to 255' "promote_after 256" "0 $s vmcache $b $o 2 promote_after 256"
	bad 'promote_after must be 1 to 255' "promote_after negative" "0 $s vmcache $b $o 2 promote_after -1"
	bad 'sequential_cutoff must be' "sequential_cutoff not a number" "0 $s vmcache $b $o 2 sequential_cutoff lots"
	bad 'writeback_low must be 0 to 100' "writeback_low 101" "0 $s vmcache $b $o 2 writeback_low 101"
	bad 'writeback_low must not exceed writeback_high' "writeback_high below writeback_low" "0 $s vmcache $b $o 4 writeback_low 60 writeback_high 50"
	bad 'max_dirty_age must be 0 to 3600' "max_dirty_age 3601" "0 $s vmcache $b $o 2 max_dirty_age 3601"
	bad 'writeback_max_inflight must be 1 to 1024' "writeback_max_inflight 0" "0 $s vmcache $b $o 2 writeback_max_inflight 0"
	bad 'writeback_max_inflight must be 1 to 1024' "writeback_max_inflight 1025" "0 $s vmcache $b $o 2 writeback_max_inflight 1025"
	bad 'writeback_floor must be 0 to 1048576' "writeback_floor 1048577" "0 $s vmcache $b $o 2 writeback_floor 1048577"
	bad 'writeback_sort must be 0 or 1' "writeback_sort 2" "0 $s vmcache $b $o 2 writeback_sort 2"
	bad 'writeback_retries must be 1 to 64' "writeback_retries 0" "0 $s vmcache $b $o 2 writeback_retries 0"
	bad 'writeback_retries must be 1 to 64' "writeback_retries 65" "0 $s vmcache $b $o 2 writeback_retries 65"
	bad 'must_exist must be 0 or 1' "must_exist 2" "0 $s vmcache $b $o 2 must_exist 2"
	bad 'Cache device is blank and must_exist is set' "must_exist 1 on a blank cache" "0 $s vmcache $b $o 2 must_exist 1"
	bad 'Cache device too small' "cache device too small (4 KiB)" "0 $s vmcache /dev/mapper/vmc_tiny $o"
	bad 'Superblock location mismatch|Not a vmcache cache device' \
		"cache device full of random data" "0 $s vmcache $g $o" prep_random
	bad 'Not a vmcache cache device \(bad magic\)' \
		"cache device with a foreign superblock (bad magic)" "0 $s vmcache $g $o" prep_foreign
	bad 'Superblock checksum mismatch' \
		"formatted cache, both superblocks corrupted" "0 $s vmcache $g $o" prep_bad_csum
	bad 'Block size differs from the one on the cache device' \
		"formatted cache loaded with another block_size" "0 $s vmcache $g $o 2 block_size 8192" prep_formatted
}

# Devices for the odd cases: an 8-sector cache, and an 8 MiB one.
setup_bad_devices() {
	setup_linear vmc_tiny /dev/ram2 8 0 &&
	setup_linear vmc_garbage /dev/ram2 16384 2048 &&
	wipe_dev "$BLANK"
}

prep_random() {
	dd if=/dev/urandom of=/dev/mapper/vmc_garbage bs=4096 count=4 oflag=direct status=none
}

# Zero except a magic that is not ours where the magic lives (offset 16).
prep_foreign() {
	wipe_dev /dev/mapper/vmc_garbage &&
	printf 'NOTVMCAC' | dd of=/dev/mapper/vmc_garbage bs=1 seek=16 conv=notrunc status=none &&
	sync
}

# A cache formatted by the target (create on a blank device, remove).
prep_formatted() {
	wipe_dev /dev/mapper/vmc_garbage &&
	dmsetup create vmc_fmt --table "0 $OSZ vmcache /dev/mapper/vmc_garbage $ORIGIN" &&
	dm_remove vmc_fmt
}

# Formatted, then one uuid byte flipped in both superblock slots (4 KiB
# pages at 0 and 4096).
prep_bad_csum() {
	prep_formatted || return 1
	local off byte
	for off in 64 $((4096 + 64)); do
		byte=$(dd if=/dev/mapper/vmc_garbage bs=1 skip="$off" count=1 status=none | od -An -tu1 | tr -d ' ')
		printf '%b' "\\0$(printf '%03o' $(((byte ^ 0xff) & 0xff)))" |
			dd of=/dev/mapper/vmc_garbage bs=1 seek="$off" conv=notrunc status=none || return 1
	done
	sync
}

# run_bad_case <expected> <description> <table> <preparation or ->
run_bad_case() {
	local expect=$1 desc=$2 table=$3 prep=$4 err
	if [ "$prep" != - ] && ! "$prep"; then
		ktap_print_msg "preparation $prep failed"
		return 1
	fi
	dmesg_mark
	if dmsetup create vmc_bad --table "$table" 2>"$tmp/err"; then
		ktap_print_msg "accepted: $table"
		dm_remove vmc_bad >/dev/null 2>&1
		return 1
	fi
	if dm_exists vmc_bad; then
		ktap_print_msg "device left behind after the failed create"
		dm_remove vmc_bad >/dev/null 2>&1
		return 1
	fi
	err=$(grep -E 'vmcache: ' <<<"$(dmesg_since_mark)" || true)
	if ! grep -qE -- "vmcache: ($expect)" <<<"$err"; then
		ktap_print_msg "table: $table"
		ktap_print_msg "expected error /$expect/, kernel log: ${err:-(nothing from vmcache)}"
		return 1
	fi
	ktap_print_msg "${err#*vmcache: }"
	check_dmesg_clean
}

# Tables with every option at the ends of its documented range load, and
# print the values back.
GOOD_TABLES=(
	"10 block_size 65536 promote_after 255 sequential_cutoff 0 writeback_low 0 writeback_high 100"
	"10 max_dirty_age 3600 writeback_max_inflight 1024 writeback_floor 1048576 writeback_sort 0 writeback_retries 64"
	"14 block_size 4096 promote_after 1 writeback_low 100 writeback_high 100 max_dirty_age 0 writeback_max_inflight 1 writeback_retries 1"
	"8 mode writeback policy lru mrc off must_exist 0"
)

run_good_case() { # <options>
	local opts=$1 line kv k v
	local -a words
	wipe_dev "$BLANK"
	dmsetup create vmc_good --table "0 $OSZ vmcache $BLANK $ORIGIN $opts" || return 1
	line=$(dmsetup table vmc_good)
	dm_remove vmc_good || return 1
	read -r -a words <<<"${opts#* }"
	for ((kv = 0; kv < ${#words[@]}; kv += 2)); do
		k=${words[$kv]}
		v=${words[$((kv + 1))]}
		if [[ " $line " != *" $k $v "* ]]; then
			ktap_print_msg "table does not say '$k $v': $line"
			return 1
		fi
	done
}

# ------------------------------------------------------- reload cycles

# Unload and load the module with a device created, used and removed
# each time.
reload_cycles() {
	local i
	for ((i = 1; i <= RELOADS; i++)); do
		if module_loaded dm_vmcache && ! rmmod dm_vmcache; then
			ktap_print_msg "cycle $i: rmmod failed"
			return 1
		fi
		if module_loaded dm_vmcache; then
			ktap_print_msg "cycle $i: module still loaded after rmmod"
			return 1
		fi
		modprobe "$VMCACHE_MODULE" || { ktap_print_msg "cycle $i: modprobe failed"; return 1; }
		dmsetup create vmc_cycle --table "0 $OSZ vmcache $BLANK $ORIGIN" ||
			{ ktap_print_msg "cycle $i: create failed"; return 1; }
		if ! dd if="$tmp/pattern" of=/dev/mapper/vmc_cycle bs=1M count=1 seek="$i" oflag=direct status=none ||
		   ! read_direct /dev/mapper/vmc_cycle "$i" 1 >"$tmp/cycle" ||
		   ! compare_bytes "$tmp/cycle" "$tmp/pattern" $((1 << 20)); then
			ktap_print_msg "cycle $i: data mismatch"
			dm_remove vmc_cycle
			return 1
		fi
		dm_remove vmc_cycle || { ktap_print_msg "cycle $i: remove failed"; return 1; }
	done
	rmmod dm_vmcache && ! module_loaded dm_vmcache
}

# ---------------------------------------------------------------- main

DMESG_START="vmcache_basic-start-$$-$RANDOM"
echo "$DMESG_START" >/dev/kmsg

if ! setup_devices; then
	ktap_skip_all "cannot set up brd/null_blk/dm-delay"
fi
OSZ=$(dev_sectors "$ORIGIN")
CSZ=$(dev_sectors "$CACHE")
make_pattern "$tmp/pattern" 16
define_bad_cases

MODES=(passthrough writethrough)
PLAN=$((8 + 7 * ${#MODES[@]} + ${#GOOD_TABLES[@]} + ${#BAD_CASES[@]} + 2))
ktap_print_header
ktap_set_plan "$PLAN"

# --- a default device: status, table, round trips
wipe_dev "$CACHE"
if dm_create vmc_def "0 $OSZ vmcache $CACHE $ORIGIN"; then
	ktap_test_pass "create with default options"
	ktap_test_result "device as large as the origin, both devices are dependencies" \
		check_deps_and_size vmc_def
	ktap_test_result "logical block size no smaller than the devices'" check_io_limits vmc_def
	ktap_test_result "status: documented key=value tokens in order" check_status_line vmc_def
	ktap_test_result "table: every option once, documented defaults" check_table_defaults vmc_def
	ktap_test_result "table round trip: reloading the printed line keeps it" table_round_trip vmc_def
	ktap_test_result "table reload with changed options, round trip" table_reload_options vmc_def
	if dm_remove vmc_def && ! dm_exists vmc_def && holders_empty "$CACHE"; then
		cleanup_pop
		ktap_test_pass "remove: device gone, cache device released"
	else
		ktap_test_fail "remove: device gone, cache device released"
	fi
else
	ktap_test_fail "create with default options"
	for d in "device size and dependencies" "io limits" "status" "table defaults" \
		 "table round trip" "table reload" "remove"; do
		ktap_test_skip "$d" "create failed"
	done
fi

# --- data through the device, and on the origin, in each mode
for mode in "${MODES[@]}"; do
	dev=vmc_$mode
	wipe_dev "$CACHE"
	if ! dm_create "$dev" "0 $OSZ vmcache $CACHE $ORIGIN 2 mode $mode"; then
		ktap_test_fail "$mode: create"
		for d in "fio verify" "fio data on origin" "pattern write" "pattern read back" \
			 "pattern on origin" "remove"; do
			ktap_test_skip "$mode: $d" "create failed"
		done
		continue
	fi
	ktap_test_result "$mode: create, status mode=$mode" \
		test "$(status_value "$dev" mode)" = "$mode"
	ktap_test_result "$mode: fio random write, crc32c verify" run_fio_verify "$dev"
	ktap_test_result "$mode: fio region byte for byte on the origin" fio_region_on_origin "$dev"
	ktap_test_result "$mode: 16 MiB pattern written with O_DIRECT and fsync" write_pattern "/dev/mapper/$dev"
	ktap_test_result "$mode: pattern read back through the device" pattern_read_back "/dev/mapper/$dev"
	ktap_test_result "$mode: pattern byte for byte on the origin" pattern_read_back "$ORIGIN"
	if dm_remove "$dev" && ! dm_exists "$dev" && holders_empty "$CACHE" && holders_empty "$ORIGIN"; then
		cleanup_pop
		ktap_test_pass "$mode: remove, devices released"
	else
		ktap_test_fail "$mode: remove, devices released"
	fi
done

# --- option ranges: the documented limits load
for opts in "${GOOD_TABLES[@]}"; do
	ktap_test_result "accepted: ${opts#* }" run_good_case "$opts"
done

# --- malformed tables
if ! setup_bad_devices; then
	ktap_print_msg "could not set up the devices for the malformed tables"
fi
for c in "${BAD_CASES[@]}"; do
	IFS=$'\t' read -r expect desc table prep <<<"$c"
	ktap_test_result "refused: $desc" run_bad_case "$expect" "$desc" "$table" "$prep"
done

# --- module unload/load cycles
wipe_dev "$BLANK"
ktap_test_result "rmmod/modprobe $RELOADS times, a device created and removed each time" reload_cycles

DMESG_MARK=$DMESG_START
ktap_test_result "kernel log clean for the whole test" check_dmesg_clean

ktap_finished "$PLAN"
