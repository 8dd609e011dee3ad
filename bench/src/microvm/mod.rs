//! Micro-VM benchmarks: our `vmm` against `qemu-system-x86_64 -M microvm`, side by side in one
//! node, booting the same Debian cloud kernel and the same tiny guest initramfs.
//!
//! The host cannot run the guests itself (its `/dev/kvm` is far too slow for Linux), so the
//! benchmark boots a **bench node** under QEMU (TCG, or KVM on bare metal): an initramfs that
//! `nullos-bench microvm` builds ([`image`]) holding `bench-node-init` as PID 1, the static
//! `vmm`, QEMU with its loader and libraries (image-builder's `tools` resolver), its microvm firmware, the kvm
//! modules and the guest kernel and initramfs. The guest initramfs holds `bench-guest-init` and
//! the virtio-mmio and virtio-net modules. In the node, `bench-node-init` loads kvm, then per
//! round and per monitor, alternating:
//!
//! 1. **boot**: time from spawning the monitor to the guest's first line, `bench-guest: init`
//!    (the guest init prints it before anything else), on the node's monotonic clock;
//! 2. **rss**: while that guest holds for [`DEFAULT_HOLD_MS`], the monitor's memory overhead from
//!    `/proc/<pid>/smaps`: the RSS of every mapping except guest RAM, the anonymous mapping of
//!    exactly the guest's memory size (Firecracker's method);
//! 3. **tcp**: the guest configures eth0 (10.200.0.2/24 via 10.200.0.1), connects to
//!    [`SINK_ADDR`]:[`SINK_PORT`] (an extra address on the node's `lo`, which both user-mode
//!    networks reach by proxying the connection through a node socket) and sends `mib` MiB;
//!    the sink in `bench-node-init` times it from accept to EOF.
//!
//! Every measurement is one console line ([`proto`]); the host collects them and prints medians
//! and the ratios against the goals of issue 3. Nothing is asserted: a missed goal is a figure.
//!
//! Host modules: [`image`] (the node and guest initramfs), [`run`] (boot the node, collect).
//! What runs inside the bench node and its guests is the `bench-inits` package (its PID 1s
//! depend on `pid1`, not on this crate's host tooling); its protocol module [`proto`] and the
//! constants below are re-exported from there.

pub mod image;
pub mod run;

pub use bench_inits::proto;
pub use bench_inits::{
    node_paths, DEFAULT_HOLD_MS, DEFAULT_MIB, GATEWAY, GUEST_ADDR, GUEST_MEMORY_MIB, GUEST_MODULES,
    GUEST_PREFIX, NODE_MODULES, SINK_ADDR, SINK_PORT,
};
