# SPDX-License-Identifier: GPL-2.0
#
# dm-vmcache top-level Makefile.
#   make                 build dm-vmcache.ko against KDIR (first existing
#                        6.1 build tree unless KDIR is given)
#   make userspace       build vmcachectl
#   make lint            checkpatch --strict and sparse, fail on findings
#   make compat-check    build against every installed kernel tree (6.1, 6.12)
#   make deps            install the Debian packages the project needs
#   make test            run every test (host unit tests + guest selftests)
#   make demo            throwaway guest: cache over emulated disks, workload
#   make bench           side-by-side benchmark against the peers

PWD_DIR := $(CURDIR)
KDIR_CANDIDATES := $(sort $(wildcard /usr/src/linux-headers-6.1.*-amd64)) \
		   $(wildcard /lib/modules/$(shell uname -r)/build)
KDIR ?= $(firstword $(foreach d,$(KDIR_CANDIDATES),$(if $(wildcard $(d)/Makefile),$(d))))
KDIRS_ALL := $(foreach d,$(sort $(wildcard /usr/src/linux-headers-6.*-amd64)),$(if $(wildcard $(d)/Makefile),$(d)))
CHECKPATCH ?= build/checkpatch/checkpatch.pl

.PHONY: all module userspace lint checkpatch sparse compat-check deps install \
	test unit-test guest-test demo bench clean check-kdir

all: module

check-kdir:
	@if [ -z "$(KDIR)" ] || [ ! -f "$(KDIR)/Makefile" ]; then \
		echo "error: no kernel build tree found; install linux-headers-amd64 (make deps) or pass KDIR=/path/to/build" >&2; \
		exit 1; fi

module: check-kdir
	$(MAKE) -C $(KDIR) M=$(PWD_DIR) W=1 KCFLAGS=-Werror modules

userspace:
	$(MAKE) -C userspace

lint: checkpatch sparse

checkpatch:
	CHECKPATCH=$(CHECKPATCH) scripts/lint-checkpatch.sh

sparse: check-kdir
	$(MAKE) -C $(KDIR) M=$(PWD_DIR) C=2 W=1 modules 2>&1 | tee .sparse.log
	@if grep -E 'warning:|error:' .sparse.log; then \
		echo "sparse: findings above" >&2; exit 1; fi
	@echo "sparse: clean"

# each kernel builds a private copy, so the main build is left alone
compat-check:
	@set -e; [ -n "$(KDIRS_ALL)" ] || { echo "error: no kernel headers installed" >&2; exit 1; }; \
	for d in $(KDIRS_ALL); do \
		out=$(PWD_DIR)/build/compat/$$(basename $$d); \
		echo "== building against $$d"; \
		rm -rf $$out; mkdir -p $$out/dm-vmcache; \
		cp Kbuild $$out/; \
		cp dm-vmcache/Kbuild dm-vmcache/*.c dm-vmcache/*.h $$out/dm-vmcache/; \
		$(MAKE) -C $$d M=$$out W=1 KCFLAGS=-Werror modules; \
	done

deps:
	scripts/install-deps.sh

install: module
	$(MAKE) -C $(KDIR) M=$(PWD_DIR) modules_install
	$(MAKE) -C userspace install

unit-test: userspace
	$(MAKE) -C userspace test

guest-test: module userspace
	selftests/run-in-guest.sh

test:
	scripts/run-all-tests.sh

demo:
	scripts/demo.sh

bench:
	bench/run-bench.sh

clean:
	-[ -n "$(KDIR)" ] && $(MAKE) -C $(KDIR) M=$(PWD_DIR) clean
	$(MAKE) -C userspace clean
	rm -f .sparse.log
