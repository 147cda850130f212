#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Install every Debian 12 package dm-vmcache needs to build, lint and test,
# and extract checkpatch.pl from the kernel source tarball.
#
# Idempotent and fast when nothing is missing: apt is only touched when
# dpkg-query reports a package as not installed.  Needs root (or sudo).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CHECKPATCH_DIR="$ROOT/build/checkpatch"
SRC_TARBALL=/usr/src/linux-source-6.1.tar.xz

PACKAGES=(
	build-essential linux-headers-amd64 linux-image-amd64
	qemu-system-x86 dmsetup libdevmapper-dev fio busybox-static cpio kmod
	sparse linux-source-6.1 xz-utils bash-completion shellcheck
	diffutils util-linux e2fsprogs
)

log() { printf 'install-deps: %s\n' "$*" >&2; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		SUDO=(sudo)
	else
		log "must run as root (or with sudo available)"
		exit 1
	fi
fi

export DEBIAN_FRONTEND=noninteractive

is_installed() {
	[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

# Installed linux-headers-6.12.*+deb12-amd64 packages, if any.
installed_612_headers() {
	dpkg-query -W -f='${db:Status-Status} ${Package}\n' \
		'linux-headers-6.12.*+deb12-amd64' 2>/dev/null |
		awk '$1 == "installed" { print $2 }'
}

# linux-image-<ver> for every installed 6.1 and 6.12 header tree, so that
# the guest harness finds /boot/vmlinuz-<ver> whatever tree the module is
# built with (the tests run on both).
missing_images() {
	local d ver
	for d in /usr/src/linux-headers-6.1.*-amd64 /usr/src/linux-headers-6.12.*-amd64; do
		[ -f "$d/Makefile" ] || continue
		ver=${d#/usr/src/linux-headers-}
		is_installed "linux-image-$ver" ||
			is_installed "linux-image-$ver-unsigned" ||
			echo "linux-image-$ver"
	done
}

apt_updated=0
apt_update_once() {
	if [ "$apt_updated" -eq 0 ]; then
		log "apt-get update"
		"${SUDO[@]}" apt-get update -q
		apt_updated=1
	fi
}

apt_install() {
	log "apt-get install $*"
	"${SUDO[@]}" apt-get install -y -q --no-install-recommends "$@"
}

missing=()
for p in "${PACKAGES[@]}"; do
	is_installed "$p" || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
	apt_update_once
	apt_install "${missing[@]}"
fi

# Newest 6.12 headers for `make compat-check`.  Anything already installed
# is good enough: a repeated run must not hit the network.
if [ -z "$(installed_612_headers)" ]; then
	apt_update_once
	newest=$(apt-cache search --names-only '^linux-headers-6\.12\..*\+deb12-amd64$' |
		awk '{ print $1 }' | sort -V | tail -n 1)
	if [ -n "$newest" ]; then
		apt_install "$newest"
	else
		log "warning: no linux-headers-6.12.*+deb12-amd64 in the apt lists" \
			"(bookworm-backports or a 6.12 point release); compat-check will" \
			"only build against 6.1"
	fi
fi

# After the 6.12 headers: their image is needed too.
mapfile -t images < <(missing_images)
if [ "${#images[@]}" -gt 0 ]; then
	apt_update_once
	apt_install "${images[@]}"
fi

# checkpatch.pl with its data files, from the Debian kernel source tarball.
if [ ! -f "$CHECKPATCH_DIR/checkpatch.pl" ] ||
   [ ! -f "$CHECKPATCH_DIR/spelling.txt" ] ||
   [ ! -f "$CHECKPATCH_DIR/const_structs.checkpatch" ]; then
	if [ ! -f "$SRC_TARBALL" ]; then
		log "$SRC_TARBALL missing (package linux-source-6.1)"
		exit 1
	fi
	log "extracting checkpatch.pl into build/checkpatch/"
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	tar -xJf "$SRC_TARBALL" -C "$tmp" \
		linux-source-6.1/scripts/checkpatch.pl \
		linux-source-6.1/scripts/spelling.txt \
		linux-source-6.1/scripts/const_structs.checkpatch
	mkdir -p "$CHECKPATCH_DIR"
	cp "$tmp"/linux-source-6.1/scripts/{checkpatch.pl,spelling.txt,const_structs.checkpatch} \
		"$CHECKPATCH_DIR/"
	chmod +x "$CHECKPATCH_DIR/checkpatch.pl"
fi

log "all dependencies present"
