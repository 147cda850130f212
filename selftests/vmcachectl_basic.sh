#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# vmcachectl end to end against the real target: create (and its refusals),
# status and status --json against the kernel's status line, set (online
# and by reload), flush, mode with a drain, watch, remove --flush, data on
# the origin, check and dump of kernel-written metadata (clean, dirty,
# corrupted), format read by the kernel, assemble (idempotent, blank cache
# refused).
#
# Devices: caches = brd (/dev/ram0, /dev/ram1, /dev/ram2); origin = dm-delay
# (1 ms) over a memory-backed null_blk; another, smaller null_blk as the
# wrong origin (not stacked on the origin: vmcachectl refuses devices that
# another device-mapper device holds).
set -euo pipefail
DIR=$(dirname "$0")
# shellcheck source=lib.sh
. "$DIR/lib.sh"

require_vmcache
require_cmd vmcachectl cmp md5sum dd od
require_module dm-delay null_blk brd

CACHE=/dev/ram0
CACHE2=/dev/ram1
BLANK=/dev/ram2
ORIGIN=/dev/mapper/vmcc_origin
NAME=vmcc0
# writeback only when asked (flush, mode, remove --flush): dirty data stays
KEEP_DIRTY="--set writeback_low=90 --set writeback_high=100 --set max_dirty_age=0"

tmp=$(mktemp -d)
cleanup_push "rm -rf $tmp"

setup_devices() {
	setup_brd 3 64 &&
	setup_null_blk vmcc_nullb 256 irqmode=2 completion_nsec=50000 &&
	setup_delay vmcc_origin /dev/vmcc_nullb 1 &&
	setup_null_blk vmcc_small 32
}

# ------------------------------------------------------------ helpers

# Test cases run in subshells (ktap_test_result): every device they may
# create is removed here at exit, before the devices below them.
NAMES=(vmcc0 vmcc_a vmcc_b vmcc_fmt vmcc_bad)
remove_caches() {
	local n
	for n in "${NAMES[@]}"; do
		dm_exists "$n" && dm_remove "$n"
	done
	return 0
}

ctl() { # vmcachectl with its output logged; keeps the exit status
	ktap_log_cmd vmcachectl "$@"
}

# expect_rc <status> <vmcachectl args...>
expect_rc() {
	local want=$1 rc=0
	shift
	ktap_log_cmd vmcachectl "$@" || rc=$?
	[ "$rc" -eq "$want" ] || {
		ktap_print_msg "vmcachectl $*: exit $rc, expected $want"
		return 1
	}
}

kernel_status() { # <dev>: the key=value tokens
	dmsetup status "$1" | cut -d' ' -f4-
}

# json_value <file> <key>: the first "key": value, quotes stripped
json_value() {
	awk -v k="\"$2\":" '$1 == k { v = $2; sub(/,$/, "", v); gsub(/"/, "", v); print v; exit }' "$1"
}

status_value() { # <dev> <key>, through vmcachectl (checked against the kernel above)
	vmcachectl status "$1" --json >"$tmp/sv" && json_value "$tmp/sv" "$2"
}

table_has() { # <dev> <key> <value>
	[[ " $(dmsetup table "$1") " == *" $2 $3 "* ]] || {
		ktap_print_msg "table: $(dmsetup table "$1")"
		return 1
	}
}

write_pattern() { # <dev> <MiB offset>: 8 MiB of $tmp/pattern
	dd if="$tmp/pattern" of="$1" bs=1M seek="$2" oflag=direct conv=fsync status=none
}

pattern_at() { # <dev> <MiB offset>
	dd if="$1" bs=1M skip="$2" count=8 iflag=direct status=none >"$tmp/back"
	compare_bytes "$tmp/pattern" "$tmp/back"
}

# XOR one byte of a device with 0xff.
flip_byte() { # <dev> <offset>
	local b
	b=$(dd if="$1" bs=1 skip="$2" count=1 status=none | od -An -tu1 | tr -d ' ')
	printf '%b' "\\0$(printf '%03o' $(((b ^ 0xff) & 0xff)))" |
		dd of="$1" bs=1 seek="$2" conv=notrunc status=none
	sync
}

# ------------------------------------------------------------- cases

create_default() {
	wipe_dev "$CACHE" 2
	# shellcheck disable=SC2086 # KEEP_DIRTY is a list of options
	vmcachectl create "$NAME" --cache "$CACHE" --origin "$ORIGIN" \
		--mode writeback --set promote_after=2 $KEEP_DIRTY >"$tmp/out" || return 1
	ktap_print_msg "$(cat "$tmp/out")"
	[ "$(cat "$tmp/out")" = "/dev/mapper/$NAME" ] &&
		[ -b "/dev/mapper/$NAME" ] &&
		[ "$(dev_sectors "/dev/mapper/$NAME")" -eq "$(dev_sectors "$ORIGIN")" ] &&
		table_has "$NAME" mode writeback && table_has "$NAME" promote_after 2
}

# status --json equals the kernel's status line, key by key, taken while
# two reads of the kernel's line agree (the counters may move).
json_matches_kernel() {
	local kv k before after
	for _ in 1 2 3 4 5; do
		before=$(kernel_status "$NAME")
		vmcachectl status "$NAME" --json >"$tmp/json" || return 1
		after=$(kernel_status "$NAME")
		[ "$before" = "$after" ] || { sleep 0.2; continue; }
		for kv in $after; do
			k=${kv%%=*}
			if [ "$(json_value "$tmp/json" "$k")" != "${kv#*=}" ]; then
				ktap_print_msg "$k: kernel ${kv#*=}, json $(json_value "$tmp/json" "$k")"
				return 1
			fi
		done
		[ "$(json_value "$tmp/json" name)" = "$NAME" ] &&
			[ -n "$(json_value "$tmp/json" read_hit_ratio)" ] &&
			[ "$(json_value "$tmp/json" origin_sectors)" = "$(dev_sectors "$ORIGIN")" ]
		return
	done
	ktap_print_msg "the status never held still"
	return 1
}

status_lists_all() {
	vmcachectl status --json >"$tmp/all" &&
		grep -q "\"name\": \"$NAME\"" "$tmp/all" &&
		grep -q '^  "caches": \[' "$tmp/all" &&
		ctl status
}

dirty_after_write() {
	write_pattern "/dev/mapper/$NAME" 8 &&
		[ "$(status_value "$NAME" blocks_dirty)" -gt 0 ]
}

set_online() {
	ctl set "$NAME" sequential_cutoff 1024 &&
		table_has "$NAME" sequential_cutoff 1024 &&
		expect_rc 2 set "$NAME" promote_after 0 &&
		expect_rc 2 set "$NAME" no_such_option 1 &&
		table_has "$NAME" promote_after 2
}

set_by_reload() {
	ctl set "$NAME" must_exist 1 && table_has "$NAME" must_exist 1 &&
		table_has "$NAME" mode writeback && pattern_at "/dev/mapper/$NAME" 8
}

flush_to_clean() {
	vmcachectl flush "$NAME" --timeout 120 >"$tmp/out" || return 1
	ktap_print_msg "$(tail -n 2 "$tmp/out")"
	grep -q "^$NAME: clean" "$tmp/out" &&
		[ "$(status_value "$NAME" blocks_dirty)" -eq 0 ] &&
		pattern_at "$ORIGIN" 8
}

mode_drains() {
	write_pattern "/dev/mapper/$NAME" 24 || return 1
	[ "$(status_value "$NAME" blocks_dirty)" -gt 0 ] || {
		ktap_print_msg "no dirty data to drain"
		return 1
	}
	ctl mode "$NAME" writethrough --timeout 120 &&
		[ "$(status_value "$NAME" mode)" = writethrough ] &&
		[ "$(status_value "$NAME" blocks_dirty)" -eq 0 ] &&
		pattern_at "$ORIGIN" 24 &&
		ctl mode "$NAME" writeback
}

watch_lines() {
	vmcachectl watch "$NAME" --interval 0.2 --count 3 >"$tmp/watch" &&
		[ "$(wc -l <"$tmp/watch")" -eq 4 ] &&
		ktap_print_msg "$(cat "$tmp/watch")"
}

remove_flush() {
	write_pattern "/dev/mapper/$NAME" 40 &&
		ctl remove "$NAME" --flush --timeout 120 || return 1
	! dm_exists "$NAME" && pattern_at "$ORIGIN" 40
}

check_clean() {
	vmcachectl check "$CACHE" --json >"$tmp/check" || return 1
	[ "$(json_value "$tmp/check" result)" = clean ] &&
		[ "$(json_value "$tmp/check" nr_dirty)" = 0 ] &&
		[ "$(json_value "$tmp/check" nr_valid)" -gt 0 ]
}

# Created again over the same cache, warm, then removed with dirty data:
# check and dump see exactly the kernel's dirty count.
reload_warm_and_dirty() {
	local used dirty
	# shellcheck disable=SC2086 # KEEP_DIRTY is a list of options
	ctl create "$NAME" -c "$CACHE" -o "$ORIGIN" --must-exist --mode writeback $KEEP_DIRTY ||
		return 1
	used=$(status_value "$NAME" blocks_used)
	[ "$used" -gt 0 ] || { ktap_print_msg "not warm: blocks_used=$used"; return 1; }
	write_pattern "/dev/mapper/$NAME" 56 || return 1
	ctl remove "$NAME" || return 1
	vmcachectl check "$CACHE" --json >"$tmp/check" || return 1
	dirty=$(json_value "$tmp/check" nr_dirty)
	vmcachectl dump "$CACHE" --json >"$tmp/dump" || return 1
	ktap_print_msg "dirty blocks on the cache: $dirty"
	[ "$dirty" -gt 0 ] &&
		[ "$(grep -c '"dirty": [1-9]' "$tmp/dump")" -eq "$dirty" ]
}

refuse_other_origin() {
	expect_rc 1 create vmcc_bad -c "$CACHE" -o /dev/vmcc_small &&
		! dm_exists vmcc_bad &&
		expect_rc 1 create vmcc_bad -c "$BLANK" -o "$ORIGIN" --must-exist &&
		expect_rc 1 create "$NAME" -c "$CACHE" -o "$CACHE" &&
		vmcachectl create vmcc_bad -c "$CACHE" -o /dev/vmcc_small --dry-run --force >/dev/null
}

# the dirty data left above is written back when the cache comes back
dirty_data_comes_back() {
	ctl create "$NAME" -c "$CACHE" -o "$ORIGIN" --must-exist || return 1
	pattern_at "/dev/mapper/$NAME" 56 &&
		ctl remove "$NAME" --flush --timeout 120 &&
		pattern_at "$ORIGIN" 56
}

exists_refused() {
	ctl create "$NAME" -c "$CACHE" -o "$ORIGIN" --must-exist || return 1
	expect_rc 1 create "$NAME" -c "$CACHE2" -o "$ORIGIN"
}

check_in_use() {
	expect_rc 8 check "$CACHE" && ctl remove "$NAME"
}

corrupt_superblock() {
	dd if="$CACHE" of="$tmp/good.img" bs=1M count=1 iflag=direct status=none || return 1
	flip_byte "$CACHE" 16 && flip_byte "$CACHE" $((4096 + 16)) &&
		expect_rc 2 check "$CACHE" &&
		expect_rc 1 create vmcc_bad -c "$CACHE" -o "$ORIGIN" --must-exist &&
		! dm_exists vmcc_bad
}

corrupt_mapping() {
	dd if="$tmp/good.img" of="$CACHE" bs=1M oflag=direct status=none &&
		expect_rc 0 check -q "$CACHE" || return 1
	# every page copy in use: the first mapping page of both areas
	local nr
	nr=$(vmcachectl dump "$CACHE" --json | awk '$1 == "\"nr_mpages\":" { sub(/,/, "", $2); print $2 }')
	flip_byte "$CACHE" $((2 * 4096 + 100)) &&
		flip_byte "$CACHE" $(((2 + nr) * 4096 + 100)) &&
		expect_rc 2 check "$CACHE" || return 1
	vmcachectl check "$CACHE" >"$tmp/out" || true
	grep -q "mapping page 0: no valid copy" "$tmp/out"
}

format_loads() {
	ctl format "$CACHE2" --origin "$ORIGIN" &&
		expect_rc 1 format "$CACHE2" --origin "$ORIGIN" &&
		ctl create vmcc_fmt -c "$CACHE2" -o "$ORIGIN" --must-exist || return 1
	write_pattern /dev/mapper/vmcc_fmt 0 && pattern_at /dev/mapper/vmcc_fmt 0 &&
		ctl remove vmcc_fmt && expect_rc 0 check "$CACHE2"
}

assemble_idempotent() {
	wipe_dev "$BLANK" 2
	cat >"$tmp/tab" <<-EOF
		# test table
		vmcc_a $CACHE2 $ORIGIN mode=writeback      # formatted above
		vmcc_b $BLANK /dev/vmcc_small              # blank: refused
	EOF
	local rc=0
	vmcachectl assemble --config "$tmp/tab" >"$tmp/out" 2>&1 || rc=$?
	ktap_print_msg "$(cat "$tmp/out")"
	[ "$rc" -eq 1 ] && grep -q "$BLANK is blank but --must-exist" "$tmp/out" &&
		dm_exists vmcc_a && ! dm_exists vmcc_b && table_has vmcc_a must_exist 1 &&
		table_has vmcc_a mode writeback || return 1
	sed -i '/vmcc_b/d' "$tmp/tab"
	vmcachectl assemble --config "$tmp/tab" >"$tmp/out" &&
		grep -q "vmcc_a: already active, skipped" "$tmp/out" &&
		ctl remove vmcc_a
}

# ---------------------------------------------------------------- main

DMESG_START="vmcachectl_basic-start-$$-$RANDOM"
echo "$DMESG_START" >/dev/kmsg
setup_devices || ktap_skip_all "cannot set up brd/null_blk/dm-delay"
cleanup_push remove_caches
make_pattern "$tmp/pattern" 8

CASES=(
	"create: blank cache, options in the table|create_default"
	"status --json: every key equals the kernel's status line|json_matches_kernel"
	"status: all caches, text and {\"caches\": [...]}|status_lists_all"
	"writeback write leaves dirty blocks|dirty_after_write"
	"set: online option; bad value and unknown key refused (exit 2)|set_online"
	"set: must_exist through a table reload, data intact|set_by_reload"
	"flush: until blocks_dirty=0, data on the origin|flush_to_clean"
	"mode writethrough drains dirty data, data on the origin|mode_drains"
	"watch: header and one line per sample off a terminal|watch_lines"
	"remove --flush: device gone, data on the origin|remove_flush"
	"check: kernel-written metadata after a flush is clean|check_clean"
	"create --must-exist loads warm; check/dump agree on dirty blocks|reload_warm_and_dirty"
	"create refuses another origin, a blank --must-exist cache, same device|refuse_other_origin"
	"dirty data left on the cache comes back and is written back|dirty_data_comes_back"
	"create refuses an existing name|exists_refused"
	"check refuses an active cache device (exit 8)|check_in_use"
	"check: both superblocks corrupted is corrupt (2), create refused|corrupt_superblock"
	"check: a mapping page corrupted in both copies is corrupt (2)|corrupt_mapping"
	"format: the kernel loads it, refuses to format twice|format_loads"
	"assemble: must_exist, a blank cache refused, second run skips|assemble_idempotent"
)
PLAN=$((${#CASES[@]} + 1))
ktap_print_header
ktap_set_plan "$PLAN"
for c in "${CASES[@]}"; do
	ktap_test_result "${c%|*}" "${c##*|}"
done
DMESG_MARK=$DMESG_START
ktap_test_result "kernel log clean for the whole test" check_dmesg_clean
ktap_finished "$PLAN"
