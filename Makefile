# NullOS developer entry points. `make run` boots the dev image; `make test` runs every test.
#
#   make deps                 host packages (qemu, iPXE ROMs, OVMF, osslsigncode, zstd) via apt-get
#   make secureboot-tools     virt-fw-vars (PyPI virt-firmware) in build/venv/, for the Secure Boot test
#   make lock                 pin the current Debian kernel and tool packages in debian.lock
#   make image [PROFILE=dev]  build/$(PROFILE)/: kernel, initrd, cmdline, release.manifest, pxe/, boot/, usb.img
#                             (PROFILE=metal: the farmer's image, signed with build/keys/metal.key)
#   make workloads            build/workloads/<name>/: the example workloads, signed with the dev key
#   make run                  start the dev notary (127.0.0.1:7878) unless one listens, then boot
#                             build/dev in QEMU, console on this terminal (RUN_ARGS=--pxe for PXE)
#   make test                 unit, property and full-system tests (real kernels in real QEMU)
#   make bench                benchmarks, printed as ratios against their baselines
#   make fuzz [FUZZ_SECONDS=60]  every fuzz target for FUZZ_SECONDS each, on stable (docs/FUZZING.md)

SHELL := /bin/bash
PROFILE ?= dev
TARGET := x86_64-unknown-linux-gnu
# One target dir whatever the caller's environment: the profiles name paths inside it.
export CARGO_TARGET_DIR := $(CURDIR)/target
CARGO ?= cargo
# Binaries that go into an image carry no path of the build machine: panic locations and debug
# strings name source files, so the checkout, cargo's home (registry sources), rustup's
# toolchains and HOME are mapped to fixed names. rustc applies the last matching prefix, so the
# more specific folders come later. The flags only change with the checkout's own paths, so
# cargo's cache stays valid from one invocation to the next.
CARGO_HOME_DIR := $(or $(CARGO_HOME),$(HOME)/.cargo)
RUSTUP_HOME_DIR := $(or $(RUSTUP_HOME),$(HOME)/.rustup)
REMAP_RUSTFLAGS := --remap-path-prefix=$(HOME)=/home --remap-path-prefix=$(RUSTUP_HOME_DIR)=/rustup \
	--remap-path-prefix=$(CARGO_HOME_DIR)=/cargo --remap-path-prefix=$(CURDIR)=/nullos
STATIC_RUSTFLAGS := -C target-feature=+crt-static $(REMAP_RUSTFLAGS)
# b3sum: the verify benchmark's yardstick, also run by its test (bench/tests/verify_process.rs).
# dnsmasq-base and iproute2: the DHCP server with short leases the lease-renewal test runs on a
# tap (not the dnsmasq package, which would start a system service).
HOST_PACKAGES := qemu-system-x86 ipxe-qemu ovmf systemd-boot-efi osslsigncode openssl python3-venv zstd cpio e2fsprogs squashfs-tools postgresql chromium dnsmasq-base iproute2 b3sum

INIT_BIN := target/$(TARGET)/release/init
BUILDER := target/release/image-builder
QEMU_RUNNER := target/release/nullos-qemu
BENCH := target/release/nullos-bench
DEV_KEY := build/keys/dev.key
# Metal's release key: the product's own, so a dev release never verifies on a metal boot image.
METAL_KEY := build/keys/metal.key
# The dev notary's checkpoint key (pinned by the dev image) and the dev farm's farmer key.
NOTARY_KEY := build/keys/notary.key
FARMER_KEY := build/keys/farmer.key
# The Secure Boot key that signs usb.img's UKI (profiles' [secure_boot]), and its certificate.
SB_KEY := build/keys/secureboot.key
SB_CERT := build/keys/secureboot.crt
# virt-fw-vars (PyPI virt-firmware, not packaged in Debian 12): the Secure Boot test enrolls
# SB_CERT into a copy of OVMF's variable store with it.
VENV := build/venv
VIRT_FW_VARS := $(VENV)/bin/virt-fw-vars
VIRT_FIRMWARE_VERSION := 26.10

# Profile → kernel folder under build/kernels/ → Debian meta-package `make lock` pins it from.
KERNEL_DIR_dev := build/kernels/cloud
KERNEL_DIR_metal := build/kernels/metal
KERNEL_PACKAGE_cloud := linux-image-cloud-amd64
KERNEL_PACKAGE_metal := linux-image-amd64
# Debian packages of the host tools that travel in images (profiles' [tools]): e2fsprogs, the
# libraries of mke2fs's DT_NEEDED closure, and libc6 (libc and the loader). Pinned in
# debian.lock, unpacked into build/sysroot/.
TOOL_PACKAGES := e2fsprogs libext2fs2 libcom-err2 libblkid1 libuuid1 libc6
LOCK := debian.lock
SYSROOT := build/sysroot


.PHONY: all deps lock kernel sysroot init boot vmm baseline-init bench-inits tools keys secureboot-tools workloads image run test bench fmt clippy fuzz-check fuzz-runner fuzz fuzz-smoke clean

all: image

deps:
	@missing=$$(for p in $(HOST_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "make deps: installing $$missing"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# The one writer of debian.lock: the current versions of the kernels and tool packages.
lock:
	scripts/debian-lock.sh $(LOCK) cloud=$(KERNEL_PACKAGE_cloud) metal=$(KERNEL_PACKAGE_metal) -- $(TOOL_PACKAGES)

# The kernels debian.lock pins, unpacked under build/kernels/ (nothing to do when they are).
# Stage 0 (the USB stick's boot image) runs the generic kernel whatever the profile: the cloud
# kernel has no USB support.
kernel:
	@scripts/fetch-kernel.sh cloud build/kernels/cloud
	@scripts/fetch-kernel.sh metal build/kernels/metal

# The tool packages debian.lock pins, unpacked into build/sysroot/ (nothing to do when they are).
sysroot:
	@scripts/fetch-tools.sh $(SYSROOT)

# PID 1 must be static: the initramfs has no libc and no loader.
init:
	RUSTFLAGS="$(STATIC_RUSTFLAGS)" $(CARGO) build --release --locked --target $(TARGET) -p kernel-init --bin init

# Stage 0, PID 1 of the boot image: static for the same reason.
boot:
	RUSTFLAGS="$(STATIC_RUSTFLAGS)" $(CARGO) build --release --locked --target $(TARGET) -p boot --bin boot

# The micro-VM monitor, /bin/vmm in the node image: static for the same reason.
vmm:
	RUSTFLAGS="$(STATIC_RUSTFLAGS)" $(CARGO) build --release --locked --target $(TARGET) -p vmm --bin vmm

# The benchmark's yardstick PID 1 (prints one line, powers off), static like init.
baseline-init:
	RUSTFLAGS="$(STATIC_RUSTFLAGS)" $(CARGO) build --release --locked --target $(TARGET) -p bench-inits --bin baseline-init

# The micro-VM benchmark's PID 1s (bench node and guest), static: their initramfs hold no libc.
bench-inits:
	RUSTFLAGS="$(STATIC_RUSTFLAGS)" $(CARGO) build --release --locked --target $(TARGET) -p bench-inits --bin bench-node-init --bin bench-guest-init

tools:
	$(CARGO) build --release --locked -p image-builder -p qemu -p bench

# The development key pair is generated once and never committed (build/ is ignored).
$(DEV_KEY): | tools
	$(BUILDER) keygen --out $(DEV_KEY) --comment "NullOS development key (not for production)"

# Metal's release key, generated the same way (build/keys/metal.key + metal.pub, never committed).
# A farmer's real release key replaces it: keep the .key off the build machine once signed.
$(METAL_KEY): | tools
	$(BUILDER) keygen --out $(METAL_KEY) --comment "NullOS metal release key"

$(NOTARY_KEY): | tools
	$(BUILDER) keygen --out $(NOTARY_KEY) --comment "NullOS development notary key (not for production)"

$(FARMER_KEY): | tools
	$(BUILDER) keygen --out $(FARMER_KEY) --comment "NullOS development farmer key (not for production)"

# The Secure Boot signing key (RSA 2048, what firmware verifies) and its self-signed certificate
# (what is enrolled in the firmware's db), generated once and never committed either.
$(SB_CERT):
	@mkdir -p $(dir $(SB_CERT))
	umask 077 && openssl req -new -x509 -newkey rsa:2048 -nodes -sha256 -days 36500 \
		-subj "/CN=NullOS Secure Boot development key (not for production)/" \
		-keyout $(SB_KEY) -out $(SB_CERT) 2>/dev/null
	chmod 644 $(SB_CERT)

keys: $(DEV_KEY) $(METAL_KEY) $(NOTARY_KEY) $(FARMER_KEY) $(SB_CERT)

$(VIRT_FW_VARS):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q virt-firmware==$(VIRT_FIRMWARE_VERSION)

secureboot-tools: $(VIRT_FW_VARS)

# The example workloads, each built into build/workloads/<name>/ (root.img + the signed
# workload.manifest). Their programs are static: a workload image has no libc unless it brings one.
# jail-probe is the workload system test's memory.max proof (kernel-init/src/bin/jail_probe.rs).
workloads: tools keys
	RUSTFLAGS="$(STATIC_RUSTFLAGS)" $(CARGO) build --release --locked --target $(TARGET) -p hello
	RUSTFLAGS="$(STATIC_RUSTFLAGS)" $(CARGO) build --release --locked --target $(TARGET) -p kernel-init --bin jail-probe
	$(BUILDER) workload examples/hello --out build/workloads/hello --key $(DEV_KEY)

# Everything a profile's image needs; dev bakes the example workload in, metal bakes none (work
# arrives as contracts).
IMAGE_EXTRA_dev := workloads
image: kernel sysroot init boot vmm tools keys $(IMAGE_EXTRA_$(PROFILE))
	$(BUILDER) build profiles/$(PROFILE).toml --out build/$(PROFILE)

run: deps
	@$(MAKE) --no-print-directory image PROFILE=dev
	$(CARGO) build --release --locked -p notary -p agent
	scripts/notary-up.sh
	$(QEMU_RUNNER) run build/dev $(RUN_ARGS)

test: deps secureboot-tools
	@$(MAKE) --no-print-directory image PROFILE=dev
	@$(MAKE) --no-print-directory image PROFILE=metal
	$(CARGO) test --workspace --locked --release
	@$(MAKE) --no-print-directory fuzz-check
	@$(MAKE) --no-print-directory fuzz-smoke

# The fuzz targets (fuzz/): both front ends (cargo-fuzz's, nightly; fuzz-run, stable) keep compiling.
fuzz-check:
	cd fuzz && CARGO_TARGET_DIR=$(CURDIR)/target/fuzz $(CARGO) check --locked --workspace --bins

# fuzz-run, the stable driver (docs/FUZZING.md), built with SanitizerCoverage edge counters and
# comparison tracing (stable rustc flags, as cargo-afl uses) and with debug assertions on, but
# with release arithmetic (no overflow checks: the code is fuzzed as it ships; see FUZZING.md for
# the fatfs overflow this keeps out). --target keeps the flags off build scripts and proc macros.
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 2
FUZZ_TARGETS ?= --all
FUZZ_RUN := target/fuzz/$(TARGET)/release/fuzz-run
FUZZ_RUSTFLAGS := -C passes=sancov-module -C llvm-args=-sanitizer-coverage-level=3 \
	-C llvm-args=-sanitizer-coverage-inline-8bit-counters -C llvm-args=-sanitizer-coverage-trace-compares \
	-C debug-assertions -C overflow-checks=off
fuzz-runner:
	cd fuzz && CARGO_TARGET_DIR=$(CURDIR)/target/fuzz RUSTFLAGS="$(FUZZ_RUSTFLAGS)" \
		$(CARGO) build --locked --release --target $(TARGET) -p nullos-fuzz-targets --bin fuzz-run

# make fuzz: every target for FUZZ_SECONDS each (FUZZ_TARGETS="a b" for some), from the committed
# corpus plus what earlier runs found (target/fuzz-corpus/, grown here, never committed).
fuzz: fuzz-runner
	$(FUZZ_RUN) $(FUZZ_TARGETS) --seconds $(FUZZ_SECONDS) --corpus fuzz/corpus \
		--corpus target/fuzz-corpus --save target/fuzz-corpus

# make test's share: the driver's own tests, then the committed corpus replayed and a short
# mutation run per target.
fuzz-smoke: fuzz-runner
	cd fuzz && CARGO_TARGET_DIR=$(CURDIR)/target/fuzz $(CARGO) test --locked -p nullos-fuzz-targets --lib
	$(FUZZ_RUN) --all --seconds $(FUZZ_SMOKE_SECONDS) --seed 1 --corpus fuzz/corpus

# The verify benchmark's yardstick is b3sum (Debian package b3sum, BLAKE3's reference CLI).
bench: deps baseline-init bench-inits vmm
	@command -v b3sum >/dev/null || { \
		echo "make bench: installing b3sum"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends b3sum; }
	@$(MAKE) --no-print-directory image PROFILE=dev
	$(BENCH) build --config profiles/dev.toml
	$(BENCH) boot --image build/dev
	$(BENCH) verify --image build/dev
	$(BENCH) stage0 --image build/dev
	$(BENCH) microvm --kernel-dir $(KERNEL_DIR_dev)
	$(CARGO) build --release --locked -p notary
	$(BENCH) notary

fmt:
	$(CARGO) fmt --all

# The same gate as .ci/run (release: shares build scripts and proc macros with the tests).
clippy:
	$(CARGO) clippy --workspace --all-targets --locked --release -- -D warnings

clean:
	rm -rf build/dev build/metal
