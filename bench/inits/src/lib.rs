//! What runs inside the micro-VM benchmark's bench node and its guests (see `bench::microvm`),
//! and the boot benchmark's yardstick PID 1, as a package of its own: these PID 1s depend on
//! the `pid1` crate, the node's jail (`kernel-init`'s `workloads::jail`, so the vmm is measured
//! as a node runs it) and nothing of the host's tooling (image builder, QEMU runner, stage 0).
//!
//! Binaries (built static; the Makefile's `baseline-init` and `bench-inits` targets):
//! `baseline-init`, `bench-node-init`, `bench-guest-init`.
//!
//! Modules, pure: [`proto`] (lines and parameters; the host parses with it too), [`memory`]
//! (`smaps`, `smaps_rollup`, `stat` and `cpu.stat` texts into figures), [`summary`] (medians,
//! ratios, goals), the command lines in [`monitor`]. With I/O: [`monitor`]'s running monitor in
//! the node, [`jailed`] (our vmm in the node's own jail), [`measure`] (a monitor's memory and
//! jail from `/proc`), [`pid1`] (syscalls of the two micro-VM PID 1s).

pub mod jailed;
pub mod measure;
pub mod memory;
pub mod monitor;
pub mod pid1;
pub mod proto;
pub mod summary;

use std::net::Ipv4Addr;

/// Guest memory for both monitors, MiB (issue 3: 1 vCPU, 128 MiB).
pub const GUEST_MEMORY_MIB: u64 = 128;
/// The guest's address on both user-mode networks (the micro-VM network contract).
pub const GUEST_ADDR: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);
/// The guest network's prefix length.
pub const GUEST_PREFIX: u8 = 24;
/// The gateway (our smoltcp stack; QEMU's slirp is configured with the same address).
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
/// The sink's address: an extra /32 on the node's loopback interface.
pub const SINK_ADDR: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
/// The sink's TCP port.
pub const SINK_PORT: u16 = 5001;
/// How long the guest of a boot run stays up after its marker, so its monitor can be measured.
pub const DEFAULT_HOLD_MS: u64 = 2000;
/// MiB the guest sends in a throughput run.
pub const DEFAULT_MIB: u64 = 64;
/// Size of the volume of the devices run, MiB (a sparse file on the node's tmpfs).
pub const VOLUME_MIB: u64 = 16;
/// KiB the guest reads from its volume, then writes back, in the devices run.
pub const VOLUME_IO_KIB: u64 = 1024;
/// The workload name of the benchmark's jail (its uid, root directory and cgroup derive from it).
pub const JAIL_NAME: &str = "bench";

/// Guest modules, in load order (virtio_net depends on net_failover → failover; virtio_mmio on
/// virtio → virtio_ring; virtio_blk on virtio), as `(name, path under the kernel's
/// lib/modules/<kver>/kernel/)`. The guest image holds them as `/lib/modules/<name>.ko`.
pub const GUEST_MODULES: [(&str, &str); 7] = [
    ("virtio_ring", "drivers/virtio/virtio_ring.ko"),
    ("virtio", "drivers/virtio/virtio.ko"),
    ("virtio_mmio", "drivers/virtio/virtio_mmio.ko"),
    ("failover", "net/core/failover.ko"),
    ("net_failover", "drivers/net/net_failover.ko"),
    ("virtio_net", "drivers/net/virtio_net.ko"),
    ("virtio_blk", "drivers/block/virtio_blk.ko"),
];

/// Node modules for `/dev/kvm`, as `(name, path under kernel/)`; the node loads the first two,
/// then `kvm-amd` (QEMU TCG emulates SVM) or, failing that, `kvm-intel`. Held as `/lib/kvm/<name>.ko`.
pub const NODE_MODULES: [(&str, &str); 4] = [
    ("irqbypass", "virt/lib/irqbypass.ko"),
    ("kvm", "arch/x86/kvm/kvm.ko"),
    ("kvm-amd", "arch/x86/kvm/kvm-amd.ko"),
    ("kvm-intel", "arch/x86/kvm/kvm-intel.ko"),
];

/// Paths inside the node image.
pub mod node_paths {
    /// Our monitor.
    pub const VMM: &str = "/bin/vmm";
    /// QEMU, at its host path so its loader and libraries sit where it expects them.
    pub const QEMU: &str = "/usr/bin/qemu-system-x86_64";
    /// QEMU's data directory (microvm's firmware).
    pub const QEMU_DATA: &str = "/usr/share/qemu";
    /// The guest kernel.
    pub const GUEST_KERNEL: &str = "/guest/vmlinuz";
    /// The guest initramfs.
    pub const GUEST_INITRD: &str = "/guest/initrd";
    /// The kvm modules' directory.
    pub const KVM_MODULES: &str = "/lib/kvm";
    /// The volume of the devices run (on the node's tmpfs `/tmp`).
    pub const VOLUME: &str = "/tmp/bench-volume.img";
}
