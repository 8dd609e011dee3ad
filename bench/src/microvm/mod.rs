//! Micro-VM benchmarks: our `vmm` against `qemu-system-x86_64 -M microvm`, side by side in one
//! node, booting the same Debian cloud kernel and the same tiny guest initramfs, with the same
//! devices.
//!
//! The host cannot run the guests itself (its `/dev/kvm` is far too slow for Linux), so the
//! benchmark boots a **bench node** under QEMU (TCG, or KVM on bare metal): an initramfs that
//! `nullos-bench microvm` builds ([`image`]) holding `bench-node-init` as PID 1, the static
//! `vmm`, QEMU with its loader and libraries (image-builder's `tools` resolver), its microvm firmware, the kvm
//! modules and the guest kernel and initramfs. The guest initramfs holds `bench-guest-init` and
//! the virtio-mmio, virtio-net and virtio-blk modules. In the node, `bench-node-init` loads kvm,
//! mounts cgroup v2, and runs **our vmm in the node's own jail** (`kernel-init`'s
//! `workloads::jail`: own uid, no capabilities, namespaces, an empty root, its files as
//! descriptors, the cgroup leaf, rlimits; the vmm adds its seccomp filter), printing for each
//! vmm run how the node sees it jailed. Then per round and per monitor, alternating:
//!
//! 1. **boot**: time from spawning the monitor (for ours: entering the jail included) to the
//!    guest's first line, `bench-guest: init`, on the node's monotonic clock; then, while that
//!    guest holds for [`DEFAULT_HOLD_MS`], the monitor's memory overhead: RSS of every mapping
//!    but guest RAM (Firecracker's method) and PSS of the monitor's processes minus guest RAM's;
//! 2. **devices**: the guest with virtio-net on the user-mode network and a [`VOLUME_MIB`] MiB
//!    virtio-blk volume brings eth0 up, reads and writes back its volume's first MiB, then holds
//!    while the PSS overhead is measured again;
//! 3. **tcp**: the guest configures eth0 (10.200.0.2/24 via 10.200.0.1), connects to
//!    [`SINK_ADDR`]:[`SINK_PORT`] (local to the node through a `local` route on `lo`, not an
//!    interface address, which our user-mode network refuses; the node's egress policy opens it
//!    as `--net-allow`) and sends `mib` MiB; the sink in `bench-node-init` times it from accept
//!    to EOF.
//!
//! Every measurement is one console line ([`proto`]); the host collects them and prints medians,
//! the ratios against QEMU and whether each goal is met. Nothing is asserted: a missed goal is
//! a figure.
//!
//! Host modules: [`image`] (the node and guest initramfs), [`run`] (boot the node, collect).
//! What runs inside the bench node and its guests is the `bench-inits` package (its PID 1s
//! depend on `pid1` and the node's jail, not on this crate's host tooling); its protocol module
//! [`proto`] and the constants below are re-exported from there.

pub mod image;
pub mod run;

pub use bench_inits::proto;
pub use bench_inits::{
    node_paths, DEFAULT_HOLD_MS, DEFAULT_MIB, GATEWAY, GUEST_ADDR, GUEST_MEMORY_MIB, GUEST_MODULES,
    GUEST_PREFIX, NODE_MODULES, SINK_ADDR, SINK_PORT, VOLUME_MIB,
};
