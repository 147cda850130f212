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
#   make module-6.12     build/k6.12/dm-vmcache/dm-vmcache.ko (6.12 headers)
#   make test-6.12       the guest selftests booting Debian's 6.12 kernel
#   make test-debug      the guest selftests on a debug 6.1 kernel (KASAN,
#                        lockdep, ...), built once by scripts/debug-kernel.sh
#   make stress          10 minutes of verified concurrent I/O under mode,
#                        policy, flush, suspend and reload churn (not in CI)
#   make demo            throwaway guest: cache over emulated disks, workload
#   make bench           side-by-side benchmark against the peers
#   make bench-vm        what users feel: file copies, small files, a database
#                        with a backup stream and a build on a filesystem over
#                        a throttled virtual disk, against the peers
#                        (bench/vm/README.md; BENCHVM_ARGS=--quick)

PWD_DIR := $(CURDIR)
KDIR_CANDIDATES := $(sort $(wildcard /usr/src/linux-headers-6.1.*-amd64)) \
		   $(wildcard /lib/modules/$(shell uname -r)/build)
KDIR ?= $(firstword $(foreach d,$(KDIR_CANDIDATES),$(if $(wildcard $(d)/Makefile),$(d))))
KDIR_612 ?= $(lastword $(foreach d,$(sort $(wildcard /usr/src/linux-headers-6.12.*-amd64)),$(if $(wildcard $(d)/Makefile),$(d))))
KDIRS_ALL := $(foreach d,$(sort $(wildcard /usr/src/linux-headers-6.*-amd64)),$(if $(wildcard $(d)/Makefile),$(d)))
CHECKPATCH ?= build/checkpatch/checkpatch.pl

.PHONY: all module userspace lint checkpatch sparse shellcheck compat-check deps install \
	test unit-test guest-test demo bench clean check-kdir module-6.12 \
	test-6.12 test-long test-debug module-private stress bench-vm

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

# The same check CI runs on every tracked shell script.
shellcheck:
	git ls-files -z '*.sh' .ci/run | xargs -0 shellcheck

checkpatch:
	CHECKPATCH=$(CHECKPATCH) scripts/lint-checkpatch.sh

sparse: check-kdir
	$(MAKE) -C $(KDIR) M=$(PWD_DIR) C=2 W=1 modules 2>&1 | tee .sparse.log
	@if grep -E 'warning:|error:' .sparse.log; then \
		echo "sparse: findings above" >&2; exit 1; fi
	@echo "sparse: clean"

# private-build <kernel tree> <output dir>: a private copy of the sources
# built there, so the main build (dm-vmcache/dm-vmcache.ko) is left alone.
define private-build
	rm -rf $(2); mkdir -p $(2)/dm-vmcache; \
	cp Kbuild $(2)/; \
	cp dm-vmcache/Kbuild dm-vmcache/*.c dm-vmcache/*.h $(2)/dm-vmcache/; \
	$(MAKE) -C $(1) M=$(2) W=1 KCFLAGS="$(PRIVATE_KCFLAGS)" modules
endef
PRIVATE_KCFLAGS ?= -Werror

compat-check:
	@set -e; [ -n "$(KDIRS_ALL)" ] || { echo "error: no kernel headers installed" >&2; exit 1; }; \
	for d in $(KDIRS_ALL); do \
		out=$(PWD_DIR)/build/compat/$$(basename $$d); \
		echo "== building against $$d"; \
		$(call private-build,$$d,$$out); \
	done

# A private build against any tree: make module-private KDIR=... OUT=...
# (PRIVATE_KCFLAGS= to let warnings through)
module-private:
	@set -e; [ -f "$(KDIR)/Makefile" ] && [ -n "$(OUT)" ] || { echo "error: give KDIR=<kernel tree> OUT=<dir>" >&2; exit 1; }; \
	$(call private-build,$(KDIR),$(abspath $(OUT)))

# The module for Debian's 6.12 kernel, for the guest tests on 6.12.
module-6.12:
	@set -e; [ -n "$(KDIR_612)" ] || { echo "error: no 6.12 headers installed (make deps)" >&2; exit 1; }; \
	$(call private-build,$(KDIR_612),$(PWD_DIR)/build/k6.12)

deps:
	scripts/install-deps.sh

install: module
	$(MAKE) -C $(KDIR) M=$(PWD_DIR) modules_install
	$(MAKE) -C userspace install

unit-test: userspace
	$(MAKE) -C userspace test

guest-test: module userspace
	selftests/run-in-guest.sh

# Own VMCACHE_BUILD_DIR: may run beside a 6.1 guest run.
test-6.12: module-6.12 userspace
	VMCACHE_KO=$(PWD_DIR)/build/k6.12/dm-vmcache/dm-vmcache.ko \
	VMCACHE_BUILD_DIR=$(PWD_DIR)/build/guest-6.12 selftests/run-in-guest.sh

# The long selftests that `make test` leaves out (scripts/run-all-tests.sh)
test-long: module userspace
	selftests/run-in-guest.sh vmcache_hostile.sh vmcache_counters.sh \
		vmcache_offline.sh vmcache_scale.sh vmcache_mrc.sh

# Not part of `make test`: the first kernel build takes long.
test-debug: userspace
	scripts/debug-kernel.sh

# the concurrency stress (not in CI): STRESS_MINUTES=10 by default
STRESS_MINUTES ?= 10
stress: module userspace
	selftests/run-in-guest.sh --test-timeout $$(( $(STRESS_MINUTES) * 60 + 900 )) \
		--env STRESS_MINUTES=$(STRESS_MINUTES) stress/vmcache_stress.sh

test:
	scripts/run-all-tests.sh

demo:
	scripts/demo.sh

bench:
	bench/run-bench.sh

bench-vm:
	bench/vm/run-bench-vm.sh $(BENCHVM_ARGS)

clean:
	-[ -n "$(KDIR)" ] && $(MAKE) -C $(KDIR) M=$(PWD_DIR) clean
	$(MAKE) -C userspace clean
	rm -f .sparse.log
