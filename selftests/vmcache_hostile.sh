#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# dm-vmcache hostile input: well over 1,000 generated table lines, messages
# and sysfs writes that must each be refused cleanly, with the device
# still working afterwards.
#
#   table lines   "dmsetup reload" of the live device and "dmsetup create"
#                 of a new one: wrong argument counts, bad #opt_args, odd
#                 key/value counts, unknown and duplicated keys, trailing
#                 words, every tunable with values out of its range or not
#                 numbers at all (wrapping at 2^32 and 2^64, -1, +, 0x,
#                 escaped spaces, units, very long strings), crossed
#                 watermarks, the same device twice, swapped or nonexistent
#                 devices, devices used by the live cache, wrong length or
#                 start, cache devices too small;
#   messages      unknown verbs, wrong argc, "set <tunable> <bad value>" for
#                 every tunable, the table-only tunables, unknown tunables;
#   sysfs         writes to the read-only files, bad values for every
#                 writable tunable, overlong writes, embedded NULs and
#                 newlines.
#
# Each input is checked on its own (the command failed; for messages and
# sysfs the tunables read back unchanged); each group (one KTAP case) then
# checks the table line is identical to the one before, no inactive table
# or stray device is left, the status is sane (metadata ok, not degraded,
# no errors), a read through the device returns the reference data and the
# kernel log has no WARNING/BUG/Oops.  At the end the data written before
# reads back byte for byte through the device, on the origin after a
# flush, and after remove + recreate (must_exist 1).  Last, a rename of the
# live device: the sysfs directory must follow the dm name.
#
# Devices: live cache = brd /dev/ram0 (64 MiB) over a memory-backed
# null_blk origin (128 MiB); creates use /dev/ram1 (blank) over a second
# null_blk (32 MiB); /dev/ram2 holds small dm-linear cache devices.
set -euo pipefail
DIR=$(dirname "$0")
# shellcheck source=lib.sh
. "$DIR/lib.sh"

require_vmcache
require_cmd dd cmp
require_module null_blk brd

NAME=vmc_hostile
BAD=vmc_hbad
DEV=/dev/mapper/$NAME
CACHE=/dev/ram0
BLANK=/dev/ram1
SCRATCH=/dev/ram2
ORIGIN=/dev/vmc_hnullb
ORIGIN2=/dev/vmc_hnullb2
SYS=/sys/module/dm_vmcache/caches

tmp=$(mktemp -d)
cleanup_push "rm -rf $tmp"

# The tunables (dm-vmcache/vmcache-target.c vmc_tunables[]): name, range,
# online, and the non-default value the live table is created with, so
# that a refused input falling back to a default would show.
TUNABLES=(block_size mode policy promote_after sequential_cutoff
	writeback_low writeback_high max_dirty_age writeback_max_inflight
	writeback_floor writeback_sort writeback_retries mrc must_exist)
declare -A TMIN=([block_size]=4096 [promote_after]=1 [sequential_cutoff]=0
	[writeback_low]=0 [writeback_high]=0 [max_dirty_age]=0
	[writeback_max_inflight]=1 [writeback_floor]=0 [writeback_sort]=0
	[writeback_retries]=1 [must_exist]=0)
declare -A TMAX=([block_size]=65536 [promote_after]=255
	[sequential_cutoff]=1048576 [writeback_low]=100 [writeback_high]=100
	[max_dirty_age]=3600 [writeback_max_inflight]=1024
	[writeback_floor]=1048576 [writeback_sort]=1 [writeback_retries]=64
	[must_exist]=1)
declare -A ONLINE=([block_size]=0 [must_exist]=0)
declare -A BASE=([block_size]=4096 [mode]=writeback [policy]=lru
	[promote_after]=3 [sequential_cutoff]=2048 [writeback_low]=20
	[writeback_high]=70 [max_dirty_age]=600 [writeback_max_inflight]=32
	[writeback_floor]=2048 [writeback_sort]=0 [writeback_retries]=5
	[mrc]=off [must_exist]=0)
# a second valid value of each online tunable (for the NUL and accepted
# form cases: a change must be visible)
declare -A OTHER=([mode]=writethrough [policy]=2q [promote_after]=4
	[sequential_cutoff]=1024 [writeback_low]=21 [writeback_high]=71
	[max_dirty_age]=601 [writeback_max_inflight]=33 [writeback_floor]=2049
	[writeback_sort]=1 [writeback_retries]=6 [mrc]=on)
# the read-only files of the sysfs directory (Documentation/vmcache.rst)
RO_FILES=(version block_size metadata metadata_used metadata_total
	blocks_total blocks_used blocks_dirty read_hits read_misses write_hits
	write_misses bypassed promotions demotions writeback_done
	writeback_inflight writeback_errors cache_errors origin_errors
	data_loss flush degraded commits seq mrc_reads mrc_sample_ppm
	est_hit_0_5x est_hit_1x est_hit_2x est_hit_4x mrc_curve)
STATUS_KEYS=(version mode policy block_size metadata metadata_used
	metadata_total blocks_total blocks_used blocks_dirty read_hits
	read_misses write_hits write_misses bypassed promotions demotions
	writeback_done writeback_inflight writeback_errors cache_errors
	origin_errors data_loss flush degraded commits seq mrc mrc_reads
	mrc_sample_ppm est_hit_0_5x est_hit_1x est_hit_2x est_hit_4x data_crc
	crc_errors)

is_online() { [ "${ONLINE[$1]:-1}" = 1 ]; }
is_named() { [ "$1" = mode ] || [ "$1" = policy ] || [ "$1" = mrc ]; }

P32=4294967296
NUL='\0000'	# a NUL byte for printf %b (\0 takes up to 3 octal digits)
P64=18446744073709551616
# p64plus <n>: 2^64 + n as a decimal string (n < 10^6)
p64plus() { echo "1844674407370955$(printf '%04d' $((1616 + $1)))"; }
LONG_DIGITS=$(printf '9%.0s' {1..300})
LONG_ALPHA=$(printf 'a%.0s' {1..4000})
PAD=$(printf '%5000s' '')

# ------------------------------------------------------ bad values

# bad_values <tunable> short|full: into VALS, values that must be refused
# for that tunable.  "short" for table lines and messages (a dmsetup call
# each), "full" for sysfs (cheap).  The escapes "\ " are for dm's argument
# splitting (a space inside one word); sysfs gets raw bytes, printf %b.
bad_values() {
	local t=$1 kind=$2 min max def
	VALS=()
	if is_named "$t"; then
		local other
		[ "$t" = mode ] && other=lru || other=writeback
		VALS=("${BASE[$t]^^}" "${BASE[$t]}x" "${BASE[$t]%?}" 0 1 2 -1
			"$other" "$P32" '%s%n' "$LONG_DIGITS")
		if [ "$kind" = short ]; then
			VALS+=("\\ ${BASE[$t]}" "${BASE[$t]}\\ ")
		else
			VALS+=("${BASE[$t]} ${BASE[$t]}" "${BASE[$t]}\\n${BASE[$t]}"
				"${BASE[$t]}\\tx" "\\n" "$NUL${BASE[$t]}"
				"${BASE[$t]}-" "-${BASE[$t]}" "${BASE[$t]}=" "${OTHER[$t]},"
				"writethrough,writeback" "'${BASE[$t]}'" "\"${OTHER[$t]}\""
				"$(printf 'x%.0s' {1..31})" "${OTHER[$t]}${OTHER[$t]}")
		fi
		return
	fi
	min=${TMIN[$t]}
	max=${TMAX[$t]}
	def=${BASE[$t]}
	[ "$min" -gt 0 ] && VALS+=($((min - 1)))
	VALS+=($((max + 1)) $((P32 + min)) "$(p64plus "$min")" -1
		"+$((max + 1))" "0x$(printf '%x' "$def")" abc)
	case $t in
	block_size) VALS+=(2048 4097 6144 $((P32 + 4096)) -4096 8192 65536) ;;
	writeback_low) VALS+=($((BASE[writeback_high] + 1))) ;;
	writeback_high) VALS+=($((BASE[writeback_low] - 1))) ;;
	must_exist) VALS+=(2 true) ;;
	esac
	if [ "$kind" = short ]; then
		VALS+=("\\ $def" "$def\\ ")
		return
	fi
	VALS+=($((P32 + max)) 18446744073709551615 "${def}k" "$LONG_DIGITS"
		'%s%n' 1.0 -0 "-$max" + ++1 +-1 --1 0x 0X1 00x1 0b1 0o7 1e3 .5 '1,0' 1_0
		1K 1KiB NaN inf true "$P32" $((P32 - 1)) "$P64"
		99999999999999999999999999999 "$((P32 * 2 + min))"
		"$def $def" "$def\\n$def" "$def\\t$def" "$def\\n\\n$def" "\\n"
		"$NUL$def" "$def;" "${def}x" "x$def" "$def.0" "-$def")
}

# ------------------------------------------------- groups and inputs

G_NAME=
G_TRIED=0
G_BAD=0
G_LOG=()
declare -A CAT_COUNT=()
TOTAL=0
EXPECT_TABLE=
EXPECT_TUN=

# the tunables as sysfs shows them (builtin reads: no fork per input)
tun_snapshot() {
	local t v out=
	for t in "${TUNABLES[@]}"; do
		[ -e "$SYS/$NAME/$t" ] || continue
		read -r v <"$SYS/$NAME/$t" || v='(unreadable)'
		out+="$t=$v "
	done
	echo "$out"
}

group_begin() { # <category> <description>
	G_CAT=$1
	G_NAME=$2
	G_TRIED=0
	G_BAD=0
	G_LOG=()
	dmesg_mark
}

bad_input() {
	G_BAD=$((G_BAD + 1))
	if [ "${#G_LOG[@]}" -lt 6 ]; then
		local m="$*"
		[ "${#m}" -gt 240 ] && m="${m:0:240}..."
		G_LOG+=("$m")
	fi
}

tried() {
	G_TRIED=$((G_TRIED + 1))
}

# try_reload <table>: a reload of the live device must fail
try_reload() {
	tried
	if dmsetup reload "$NAME" --table "$1" >/dev/null 2>&1; then
		bad_input "reload accepted: $1"
		dmsetup clear "$NAME" >/dev/null 2>&1 || true
	fi
}

# try_create <table>: creating a new device must fail and leave nothing
try_create() {
	tried
	if dmsetup create "$BAD" --table "$1" >/dev/null 2>&1; then
		bad_input "create accepted: $1"
		dm_remove "$BAD" >/dev/null 2>&1 || true
		wipe_dev "$BLANK" 2
	fi
}

# try_msg <words...>: the message must fail and change no tunable
try_msg() {
	local after
	tried
	if dmsetup message "$NAME" 0 "$@" >/dev/null 2>&1; then
		bad_input "message accepted: $*"
		restore_tunables
		return
	fi
	after=$(tun_snapshot)
	if [ "$after" != "$EXPECT_TUN" ]; then
		bad_input "message '$*' refused but tunables changed: $after"
		restore_tunables
	fi
}

# try_sysfs <file> <printf %b string>: the write must fail, a tunable's
# file read back unchanged (counters may move on their own)
try_sysfs() {
	local f=$SYS/$NAME/$1 before after
	tried
	read -r before <"$f" || before='(unreadable)'
	if sysfs_write "$f" "$2"; then
		bad_input "sysfs $1 accepted '$2' (now: $(tr -d '\n' <"$f"))"
		restore_tunables
		return
	fi
	[ -n "${BASE[$1]:-}" ] || return 0
	read -r after <"$f" || after='(unreadable)'
	if [ "$before" != "$after" ]; then
		bad_input "sysfs $1 '$2' refused but changed $before -> $after"
		restore_tunables
	fi
}

# sysfs_write <file> <printf %b string>: in one write() call (the shell's
# printf would write a line at a time: "5\n6" would be two writes)
sysfs_write() {
	if [[ $2 == *'\n'* ]] || [ "${#2}" -gt 200 ]; then
		printf '%b' "$2" >"$tmp/val"
		dd if="$tmp/val" of="$1" bs=64k count=1 status=none 2>/dev/null
	else
		printf '%b' "$2" 2>/dev/null >"$1"
	fi
}

restore_tunables() {
	local t
	for t in "${TUNABLES[@]}"; do
		is_online "$t" || continue
		dmsetup message "$NAME" 0 set "$t" "${BASE[$t]}" >/dev/null 2>&1 || true
	done
}

# the status as sysfs and "dmsetup status" show it: all keys in order, no
# errors, the base mode and policy
status_sane() {
	local line kv i v keys=()
	line=$(status_line)
	for kv in $line; do
		keys+=("${kv%%=*}")
	done
	if [ "${keys[*]}" != "${STATUS_KEYS[*]}" ]; then
		ktap_print_msg "status keys differ: $line"
		return 1
	fi
	for kv in mode=writeback policy=lru metadata=ok degraded=0 \
		cache_errors=0 origin_errors=0 data_loss=0 writeback_errors=0; do
		i=${kv%%=*}
		if ! read -r v <"$SYS/$NAME/$i" || [ "$v" != "${kv#*=}" ]; then
			ktap_print_msg "sysfs $i is '${v:-}', expected ${kv#*=}: $line"
			return 1
		fi
	done
	for i in "${RO_FILES[@]}"; do
		read -r v <"$SYS/$NAME/$i" || { ktap_print_msg "$SYS/$NAME/$i unreadable"; return 1; }
	done
}

# the reference data dirty in the cache reads back through the device
quick_read_ok() {
	dd if="$DEV" bs=1M skip=$((B_OFF >> 20)) count=1 iflag=direct status=none |
		cmp -s -n $((1 << 20)) - "$tmp/refB"
}

# group_end [extra check command...]: group-level checks, one KTAP result
group_end() {
	local ok=1 table info left m
	table=$(dmsetup table "$NAME" 2>&1) || true
	if [ "$table" != "$EXPECT_TABLE" ]; then
		ktap_print_msg "table changed: $table"
		ktap_print_msg "expected:      $EXPECT_TABLE"
		ok=0
		dmsetup reload "$NAME" --table "$EXPECT_TABLE" >/dev/null 2>&1 &&
			dmsetup resume "$NAME" >/dev/null 2>&1 || true
	fi
	# (each dmsetup call costs ~0.2 s under TCG: only where a table loads)
	if [ "$G_CAT" = reload ] || [ "$G_CAT" = create ]; then
		info=$(dmsetup info "$NAME" 2>&1) || true
		if [[ $info == *INACTIVE* ]] || [[ $info != *ACTIVE* ]]; then
			ktap_print_msg "dmsetup info: $info"
			dmsetup clear "$NAME" >/dev/null 2>&1 || true
			ok=0
		fi
		left=$(dmsetup ls 2>&1) || true
		if [[ $left == *"$BAD"* ]]; then
			ktap_print_msg "device $BAD left behind"
			dm_remove "$BAD" >/dev/null 2>&1 || true
			ok=0
		fi
	fi
	if [ "$(tun_snapshot)" != "$EXPECT_TUN" ]; then
		ktap_print_msg "tunables: $(tun_snapshot)"
		ktap_print_msg "expected: $EXPECT_TUN"
		ok=0
	fi
	status_sane || ok=0
	quick_read_ok || { ktap_print_msg "reference data does not read back"; ok=0; }
	if [ $# -gt 0 ] && ! "$@"; then
		ok=0
	fi
	check_dmesg_clean || ok=0
	for m in "${G_LOG[@]}"; do
		ktap_print_msg "$m"
	done
	[ "$G_BAD" -gt 0 ] && ok=0
	ktap_print_msg "$G_NAME: $G_TRIED inputs, $G_BAD not refused cleanly"
	CAT_COUNT[$G_CAT]=$((${CAT_COUNT[$G_CAT]:-0} + G_TRIED))
	TOTAL=$((TOTAL + G_TRIED))
	if [ "$ok" -eq 1 ]; then
		ktap_test_pass "$G_NAME"
	else
		ktap_test_fail "$G_NAME"
	fi
}

# ------------------------------------------------------- table lines

# opts_with [<key> <value>]...: the 28 option words of the live table
# with the given keys' values replaced
opts_with() {
	local -A over=()
	local t out=
	while [ $# -gt 1 ]; do
		over[$1]=$2
		shift 2
	done
	for t in "${TUNABLES[@]}"; do
		out+=" $t ${over[$t]:-${BASE[$t]}}"
	done
	echo "${out# }"
}

LIVE_HEAD=
ALL_OPTS=

table_argc_cases() { # <runner> <head without options>
	local run=$1 h=$2 n
	$run "${h% * *}"
	$run "${h% *}"
	$run "$h $CACHE"
	$run "$h 0 extra"
	$run "$h 2 mode writeback extra"
	$run "$h 2 mode writeback extra extra2"
	$run "$h 1 mode"
	$run "$h 3 mode writeback policy"
	$run "$h 4 mode writeback"
	$run "$h 28 $ALL_OPTS extra"
	$run "$h 28 $(opts_with | cut -d' ' -f1-26)"
	$run "$h 29 $ALL_OPTS"
	$run "$h 30 $ALL_OPTS mode writeback"
	$run "$h 27 $ALL_OPTS"
	for n in -1 -2 +30 0x2 2.0 two "\\ 2" "2\\ " "$LONG_DIGITS" "$LONG_ALPHA"; do
		$run "$h $n mode writeback"
	done
}

UNKNOWN_KEYS=(blocksize Block_size MODE Mode mode_ _mode modes writeback
	wb_low promote-after must-exist read_hits blocks_dirty version set
	flush 0 - '%s%n' "mode\\ " "\\ mode" "mode=writeback" "$LONG_ALPHA")

table_unknown_cases() { # <runner> <head>
	local run=$1 h=$2 k
	for k in "${UNKNOWN_KEYS[@]}"; do
		$run "$h 28 ${ALL_OPTS% must_exist 0} $k 1"
	done
	for k in "${UNKNOWN_KEYS[@]:0:4}"; do
		$run "$h 2 $k 1"
	done
}

table_dup_cases() { # <runner> <head>
	local run=$1 h=$2 t
	for t in "${TUNABLES[@]}"; do
		$run "$h 4 $t ${BASE[$t]} $t ${BASE[$t]}"
		if [ "$t" = must_exist ]; then
			$run "$h 28 ${ALL_OPTS#block_size 4096 } $t ${BASE[$t]}"
		else
			$run "$h 28 ${ALL_OPTS% must_exist 0} $t ${BASE[$t]}"
		fi
	done
}

# ----------------------------------------------------------- devices

# small cache devices on /dev/ram2: 8 sectors, 1 MiB, 1 MiB + 63 blocks
# (metadata needs 1 MiB, 64 blocks at least), and 1 MiB + 64 blocks of
# 4 KiB (enough for 4 KiB blocks, too small for 64 KiB ones)
setup_small() {
	setup_linear vmc_h8s "$SCRATCH" 8 0 &&
	setup_linear vmc_h1m "$SCRATCH" 2048 16 &&
	setup_linear vmc_h63 "$SCRATCH" $((2048 + 63 * 8)) 4096 &&
	setup_linear vmc_h64 "$SCRATCH" $((2048 + 64 * 8)) 8192
}

NONEXISTENT=(/dev/vmc_nonexistent /dev/ /dev/null /nonexistent/x "$tmp/file"
	250:250 0:0 -1:-1 99999999999:1 a:b "/dev/$LONG_ALPHA")

create_device_cases() {
	local h="0 $OSZ2 vmcache" d
	for d in "${NONEXISTENT[@]}"; do
		try_create "$h $d $ORIGIN2"
		try_create "0 $OSZ2 vmcache $BLANK $d"
	done
	try_create "0 $BSZ vmcache $BLANK $BLANK"
	try_create "0 $OSZ2 vmcache $ORIGIN2 $ORIGIN2"
	# devices of the live cache, by path and by major:minor
	try_create "$h $CACHE $ORIGIN2"
	try_create "$h $(devno "$CACHE") $ORIGIN2"
	try_create "$h $ORIGIN $ORIGIN2"
	try_create "0 $OSZ vmcache $BLANK $ORIGIN"
	try_create "0 $OSZ vmcache $BLANK $(devno "$ORIGIN")"
	try_create "0 $CSZ vmcache $BLANK $CACHE"
	try_create "0 $CSZ vmcache $ORIGIN $CACHE"
	# length and start
	try_create "0 $((OSZ2 + 8)) vmcache $BLANK $ORIGIN2"
	try_create "0 $((OSZ2 - 8)) vmcache $BLANK $ORIGIN2"
	try_create "0 $((OSZ2 + 1)) vmcache $BLANK $ORIGIN2"
	try_create "0 $((OSZ2 - 1)) vmcache $BLANK $ORIGIN2"
	try_create "0 1 vmcache $BLANK $ORIGIN2"
	try_create "0 0 vmcache $BLANK $ORIGIN2"
	try_create "8 $OSZ2 vmcache $BLANK $ORIGIN2"
	try_create "0 18446744073709551615 vmcache $BLANK $ORIGIN2"
	try_create "0 8 linear $SCRATCH 0"$'\n'"8 $OSZ2 vmcache $BLANK $ORIGIN2"
	# too small
	for d in vmc_h8s vmc_h1m vmc_h63; do
		try_create "$h /dev/mapper/$d $ORIGIN2"
	done
	try_create "$h /dev/mapper/vmc_h64 $ORIGIN2 2 block_size 65536"
	try_create "$h /dev/mapper/vmc_h64 $ORIGIN2 2 block_size 8192"
	# a blank cache with must_exist 1
	try_create "$h $BLANK $ORIGIN2 2 must_exist 1"
}

reload_device_cases() {
	local d h="0 $OSZ vmcache"
	for d in "${NONEXISTENT[@]}"; do
		try_reload "$h $d $ORIGIN 28 $ALL_OPTS"
		try_reload "$h $CACHE $d 28 $ALL_OPTS"
	done
	try_reload "$h $ORIGIN $ORIGIN 28 $ALL_OPTS"
	try_reload "0 $CSZ vmcache $CACHE $CACHE 28 $ALL_OPTS"
	# cache and origin swapped: the live origin named as the cache
	try_reload "0 $CSZ vmcache $ORIGIN $CACHE 28 $ALL_OPTS"
	try_reload "0 $CSZ vmcache $ORIGIN $CACHE"
	# the live cache over another origin (recorded origin size differs)
	try_reload "0 $OSZ2 vmcache $CACHE $ORIGIN2 28 $ALL_OPTS"
	for d in $((OSZ + 8)) $((OSZ - 8)) $((OSZ + 1)) $((OSZ - 1)) 1 $((OSZ * 2)) 18446744073709551615; do
		try_reload "0 $d vmcache $CACHE $ORIGIN 28 $ALL_OPTS"
	done
	try_reload "8 $OSZ vmcache $CACHE $ORIGIN 28 $ALL_OPTS"
	try_reload "0 8 linear $SCRATCH 0"$'\n'"8 $OSZ vmcache $CACHE $ORIGIN 28 $ALL_OPTS"
}

devno() { # <block device>: major:minor
	local mm
	mm=$(stat -L -c '%t %T' "$1")
	printf '%d:%d\n' "0x${mm% *}" "0x${mm#* }"
}

# nothing refused may have written to the blank cache of the creates or
# the origin data on the live origin
blank_still_blank() {
	dd if="$BLANK" bs=8192 count=1 iflag=direct status=none | cmp -s -n 8192 - /dev/zero || {
		ktap_print_msg "$BLANK is no longer blank: a refused create wrote to it"
		return 1
	}
}

origin_intact() {
	dd if="$ORIGIN" bs=1M skip=$((A_OFF >> 20)) count=$((A_LEN >> 20)) iflag=direct status=none >"$tmp/o" &&
		compare_bytes "$tmp/o" "$tmp/refA" || {
		ktap_print_msg "reference data A on the origin was overwritten"
		return 1
	}
	dd if="$ORIGIN" bs=64K count=1 iflag=direct status=none | cmp -s -n 65536 - /dev/zero || {
		ktap_print_msg "the first 64 KiB of the origin (zero) were written to"
		# zero again, so that the next groups are judged on their own
		dd if=/dev/zero of="$ORIGIN" bs=64K count=1 oflag=direct status=none
		return 1
	}
}

# ---------------------------------------------------------- accepted

# Forms the kernel's number parsing accepts on purpose (kstrtouint: a
# leading +, leading zeros; sysfs: surrounding whitespace).  They must be
# stored canonically: the table prints the plain value.
accepted_forms() {
	local rc=0 v
	msg set promote_after +4 || rc=1
	[[ " $(dmsetup table "$NAME") " == *" promote_after 4 "* ]] || { ktap_print_msg "set promote_after +4 not stored as 4"; rc=1; }
	msg set promote_after 0003 || rc=1
	printf ' 4\n' >"$SYS/$NAME/promote_after" || rc=1
	read -r v <"$SYS/$NAME/promote_after"
	[ "$v" = 4 ] || { ktap_print_msg "sysfs ' 4\\n' read back as '$v'"; rc=1; }
	printf 'lru\n' >"$SYS/$NAME/policy" || rc=1
	msg set promote_after "${BASE[promote_after]}" || rc=1
	[ "$(dmsetup table "$NAME")" = "$EXPECT_TABLE" ] || { ktap_print_msg "table not restored"; rc=1; }
	return "$rc"
}

# ------------------------------------------------------------ rename

# The sysfs directory is named after the dm device
# (caches/<dm-name>/): after "dmsetup rename" it must follow the new name
# (within the cache's one-second housekeeping: dm tells a target nothing
# of a rename), and a new device created under the old name, even at once,
# must get its own.
renamed_dir() {
	[ -d "$SYS/vmc_hrenamed" ] && [ ! -d "$SYS/$NAME" ]
}
rename_case() {
	local rc=0 i
	dmsetup rename "$NAME" vmc_hrenamed || return 1
	cleanup_push "dmsetup rename vmc_hrenamed $NAME"
	for ((i = 0; i < 30; i++)); do
		renamed_dir && break
		sleep 0.1
	done
	if ! renamed_dir; then
		ktap_print_msg "after rename $NAME -> vmc_hrenamed: $(cd "$SYS" && echo *)"
		rc=1
	fi
	wipe_dev "$BLANK" 2
	dmesg_mark
	if dmsetup create "$NAME" --table "0 $OSZ2 vmcache $BLANK $ORIGIN2"; then
		# the new device is in writethrough, the renamed one in writeback
		if [ "$(cat "$SYS/$NAME/mode" 2>/dev/null)" != writethrough ]; then
			ktap_print_msg "new $NAME: its sysfs directory is missing or is the renamed device's"
			rc=1
		fi
		check_dmesg_clean || rc=1
		dm_remove "$NAME" || rc=1
	else
		ktap_print_msg "cannot create a new $NAME"
		rc=1
	fi
	dmsetup rename vmc_hrenamed "$NAME" || rc=1
	cleanup_pop
	for ((i = 0; i < 30; i++)); do
		[ -d "$SYS/$NAME" ] && break
		sleep 0.1
	done
	[ -d "$SYS/$NAME" ] || { ktap_print_msg "$SYS/$NAME gone after renaming back"; rc=1; }
	return "$rc"
}

# ------------------------------------------------------------- data

A_OFF=$((1 << 20))	# on the origin only (written, flushed, invalidated)
A_LEN=$((2 << 20))
B_OFF=$((16 << 20))	# dirty in the cache during the inputs
B_LEN=$((1 << 20))	# below sequential_cutoff: cached, not bypassed

write_ref() { # <ref file> <offset>
	dd if="$1" of="$DEV" bs=1M seek=$(($2 >> 20)) oflag=direct conv=fsync status=none
}

read_cmp() { # <device> <ref file> <offset> <len>
	dd if="$1" bs=1M skip=$(($3 >> 20)) count=$(($4 >> 20)) iflag=direct status=none >"$tmp/rd" &&
		compare_bytes "$tmp/rd" "$2"
}

data_through_device() {
	read_cmp "$DEV" "$tmp/refA" "$A_OFF" "$A_LEN" &&
		read_cmp "$DEV" "$tmp/refB" "$B_OFF" "$B_LEN"
}

data_on_origin() {
	drain || return 1
	read_cmp "$ORIGIN" "$tmp/refA" "$A_OFF" "$A_LEN" &&
		read_cmp "$ORIGIN" "$tmp/refB" "$B_OFF" "$B_LEN"
}

recreate_and_compare() {
	local table
	table=$(dmsetup table "$NAME") || return 1
	dm_remove "$NAME" || return 1
	table=${table/ must_exist 0/ must_exist 1}
	dmsetup create "$NAME" --table "$table" || return 1
	wait_for_dev "$DEV" && data_through_device
}

# ---------------------------------------------------------------- main

DMESG_START="vmcache_hostile-start-$$-$RANDOM"
echo "$DMESG_START" >/dev/kmsg
T0=$(date +%s)

if ! { setup_brd 3 64 &&
	setup_null_blk vmc_hnullb 128 &&
	setup_null_blk vmc_hnullb2 32 &&
	setup_small; }; then
	ktap_skip_all "cannot set up brd/null_blk/dm-linear"
fi
: >"$tmp/file"
OSZ=$(dev_sectors "$ORIGIN")
OSZ2=$(dev_sectors "$ORIGIN2")
CSZ=$(dev_sectors "$CACHE")
BSZ=$(dev_sectors "$BLANK")
ALL_OPTS=$(opts_with)
LIVE_HEAD="0 $OSZ vmcache $CACHE $ORIGIN"
make_pattern "$tmp/refA" $((A_LEN >> 20))
make_pattern "$tmp/refB" $((B_LEN >> 20))

NUM_TUN=${#TUNABLES[@]}
NUM_ONLINE=0
for t in "${TUNABLES[@]}"; do
	is_online "$t" && NUM_ONLINE=$((NUM_ONLINE + 1))
done
# setup; reload: argc, unknown, dup, per tunable, devices; create: options,
# devices; message: verbs, per tunable, unknown tunables; sysfs: read-only,
# per online tunable, overlong, NUL; accepted forms; data x3; rename; log
PLAN=$((1 + (3 + NUM_TUN + 3) + 3 + (1 + NUM_TUN + 1) + (1 + NUM_ONLINE + 2) + 1 + 3 + 1 + 1))
ktap_print_header
ktap_set_plan "$PLAN"

wipe_dev "$CACHE" 2
if dm_create "$NAME" "$LIVE_HEAD 24 $(opts_with | cut -d' ' -f3-26)" &&
   write_ref "$tmp/refA" "$A_OFF" && drain && msg invalidate &&
   write_ref "$tmp/refB" "$B_OFF" && [ "$(st blocks_dirty)" -gt 0 ]; then
	ktap_test_pass "setup: writeback cache, reference data on the origin and dirty in the cache"
else
	ktap_test_fail "setup: writeback cache, reference data on the origin and dirty in the cache"
	ktap_exit_fail_msg "cannot set up the live device"
fi
EXPECT_TABLE=$(dmsetup table "$NAME")
EXPECT_TUN=$(tun_snapshot)
ktap_print_msg "table: $EXPECT_TABLE"
ktap_print_msg "status: $(status_line)"

# --- table reloads of the live device
group_begin reload "table reload: argument counts, #opt_args, trailing words"
table_argc_cases try_reload "$LIVE_HEAD"
group_end

group_begin reload "table reload: unknown keys"
table_unknown_cases try_reload "$LIVE_HEAD"
group_end

group_begin reload "table reload: duplicated keys"
table_dup_cases try_reload "$LIVE_HEAD"
group_end

for t in "${TUNABLES[@]}"; do
	group_begin reload "table reload: bad $t values"
	bad_values "$t" short
	for v in "${VALS[@]}"; do
		try_reload "$LIVE_HEAD 28 $(opts_with "$t" "$v")"
	done
	for v in "${VALS[@]:0:2}"; do
		try_reload "$LIVE_HEAD 2 $t $v"
	done
	group_end
done

# dm_read_arg_group() reads #opt_args with sscanf("%u"), which wraps:
# "4294967298" would be taken for 2
group_begin reload "table reload and create: #opt_args wrapping at 2^32 and 2^64"
for n in $((P32 + 2)) $((P32 + 4)) "$(p64plus 2)" 36893488147419103234; do
	try_reload "$LIVE_HEAD $n mode writeback"
	try_reload "$LIVE_HEAD $n mode writeback policy lru"
	try_create "0 $OSZ2 vmcache $BLANK $ORIGIN2 $n mode writeback"
done
group_end

group_begin reload "table reload: crossed watermarks"
for lo in 1 50 99 100; do
	try_reload "$LIVE_HEAD 28 $(opts_with writeback_low "$lo" writeback_high $((lo - 1)))"
	try_reload "$LIVE_HEAD 4 writeback_high $((lo - 1)) writeback_low $lo"
done
try_reload "$LIVE_HEAD 2 writeback_high 9"
try_reload "$LIVE_HEAD 2 writeback_low 51"
group_end

group_begin reload "table reload: nonexistent, same, swapped, busy devices; wrong length or start"
reload_device_cases
group_end origin_intact

# --- creates of a new device (blank cache /dev/ram1, origin null_blk 2)
wipe_dev "$BLANK" 2
C_HEAD="0 $OSZ2 vmcache $BLANK $ORIGIN2"
group_begin create "table create: argument counts, unknown and duplicated keys"
table_argc_cases try_create "$C_HEAD"
try_create "$C_HEAD 2 colour blue"
try_create "$C_HEAD 28 ${ALL_OPTS% must_exist 0} colour 1"
try_create "$C_HEAD 4 mode writeback mode writeback"
try_create "$C_HEAD 28 ${ALL_OPTS% must_exist 0} mode writeback"
group_end blank_still_blank

group_begin create "table create: bad values of every tunable"
for t in "${TUNABLES[@]}"; do
	bad_values "$t" short
	for v in "${VALS[@]:0:3}"; do
		try_create "$C_HEAD 2 $t $v"
	done
done
group_end blank_still_blank

group_begin create "table create: nonexistent, same, busy, too small devices; wrong length or start"
create_device_cases
group_end origin_intact

# --- messages
group_begin message "message: unknown verbs, wrong argc"
MSGS=(Flush FLUSH flushh "flush now" "flush 0" "invalidate all"
	"invalidate 1" "commit now" "commit 0" stats "stats reset now"
	"stats clear" "stats Reset" set "set mode" "set mode writeback extra"
	"set 1 2" mode "mode writeback now" policy "policy lru x" get
	"get mode" status help '%s%n%s' "$LONG_ALPHA" "set_mode writeback"
	"mode=writeback" writeback lru reset resume suspend remove drain
	clean 0 -1 "$P32")
for m in "${MSGS[@]}"; do
	read -r -a words <<<"$m"
	try_msg "${words[@]}"
done
# a space inside a word (dm splits messages like tables: "\ " escapes it)
try_msg '\ flush'
try_msg 'flush\ '
try_msg 'set\ mode' writeback
try_msg set 'mode\ writeback'
try_msg set mode 'writeback\ '
try_msg 'stats\ reset'
tried
dmsetup message "$NAME" "$OSZ" flush >/dev/null 2>&1 && bad_input "message at sector $OSZ accepted"
tried
dmsetup message "$NAME" 18446744073709551616 flush >/dev/null 2>&1 && bad_input "message at sector 2^64 accepted"
group_end

for t in "${TUNABLES[@]}"; do
	group_begin message "message: set $t <bad value>"
	bad_values "$t" short
	if ! is_online "$t"; then
		VALS+=("${BASE[$t]}" "${TMIN[$t]}" "${TMAX[$t]}")
	fi
	for v in "${VALS[@]}"; do
		try_msg set "$t" "$v"
		is_named "$t" && try_msg "$t" "$v"
	done
	group_end
done

group_begin message "message: set of unknown tunables and status keys"
for k in "${UNKNOWN_KEYS[@]}" version read_hits blocks_dirty flush seq; do
	try_msg set "$k" 0
done
group_end

# --- sysfs
group_begin sysfs "sysfs: read-only files refuse writes"
for f in "${RO_FILES[@]}"; do
	read -r cur <"$SYS/$NAME/$f"
	try_sysfs "$f" 0
	try_sysfs "$f" "$cur"
	try_sysfs "$f" "$cur\\n"
done
group_end

for t in "${TUNABLES[@]}"; do
	is_online "$t" || continue
	group_begin sysfs "sysfs: bad $t values"
	bad_values "$t" full
	for v in "${VALS[@]}"; do
		try_sysfs "$t" "$v"
	done
	group_end
done

group_begin sysfs "sysfs: overlong writes"
for t in "${TUNABLES[@]}"; do
	is_online "$t" || continue
	v=${OTHER[$t]}
	for n in 32 33 100 4095 4096 5000; do
		pad=${PAD:0:$((n - ${#v}))}
		if is_named "$t"; then
			try_sysfs "$t" "$v$pad"
		else
			try_sysfs "$t" "${pad// /0}$v"
		fi
	done
done
group_end

# A NUL ends the string the kernel parses: "5<NUL>junk" must not be taken
# for "5" (the write is len bytes, not a C string).
group_begin sysfs "sysfs: embedded NUL bytes"
for t in "${TUNABLES[@]}"; do
	is_online "$t" || continue
	try_sysfs "$t" "${OTHER[$t]}${NUL}junk"
	try_sysfs "$t" "${OTHER[$t]}$NUL"
	try_sysfs "$t" "${OTHER[$t]}$NUL${OTHER[$t]}"
	try_sysfs "$t" "$NUL${OTHER[$t]}"
done
group_end

ktap_test_result "accepted forms stored canonically (+4, 0003, ' 4\\n' in sysfs)" accepted_forms

ktap_print_msg "inputs refused: table reload ${CAT_COUNT[reload]:-0}, table create ${CAT_COUNT[create]:-0}, message ${CAT_COUNT[message]:-0}, sysfs ${CAT_COUNT[sysfs]:-0}; total $TOTAL in $(($(date +%s) - T0)) s"

# --- data
ktap_test_result "reference data reads back through the device byte for byte" data_through_device
ktap_test_result "flush drains; the origin holds the reference data byte for byte" data_on_origin
ktap_test_result "remove, recreate with must_exist 1: data byte for byte" recreate_and_compare

ktap_test_result "rename: the sysfs directory follows the dm name" rename_case

DMESG_MARK=$DMESG_START
ktap_test_result "kernel log clean for the whole test" check_dmesg_clean
ktap_print_msg "runtime $(($(date +%s) - T0)) s"

ktap_finished "$PLAN"
