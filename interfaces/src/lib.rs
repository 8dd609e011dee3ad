//! The contracts between NullOS programs, each written once.
//!
//! Our programs are built apart and meet only at run time: `image-builder` writes files that
//! stage 0 (`boot`) and the node's `init` read, the node's `init` starts `vmm` with a command
//! line and reads its exit status and stderr, and the guest's `init` reads what the node wrote
//! into its initramfs. What one side writes and the other reads is defined here, and both sides
//! import it, so the two can only drift apart by changing this crate (and its round-trip tests).
//!
//! - [`paths`]: where things are in the node image, the boot image, a release folder and the
//!   guest initramfs, and the file names of a release and of a workload folder.
//! - [`boot_image`]: [`BootImageConfig`], what a boot image was built for (profile, target,
//!   lowest release version), written by image-builder, read by `boot`.
//! - [`floor_state`]: `nullos-state`, the highest release version this machine accepted (the
//!   version floor), written by stage 0 and by the node's `init`.
//! - [`boot_state`]: `nullos-boot` on the data disk: the last good release, the one on trial
//!   and its tries left, the ones marked bad (stage 0 and the node's `init`).
//! - [`labels`]: the partition and filesystem labels our programs look for.
//! - [`farmer`]: the farmer's file on the stick (`nullos-node`: farm, notary), read by stage 0.
//! - [`data_disk`]: which disk is the node's data disk (classify a disk's ends, choose among
//!   disks, the pin), for stage 0 and the node's `init`.
//! - [`node`]: [`NodeConfig`], `/etc/nullos/node.toml` (written by image-builder, read by
//!   `init`).
//! - [`guest`]: [`GuestConfig`], `/etc/nullos/guest.toml` (written by the node's `init` from a
//!   verified workload manifest, read by the guest's `init`), checked with `trust`'s workload
//!   rules and limits.
//! - [`vm`]: [`VmSpec`], the vmm's command line (made by the node, parsed by `vmm`), the vmm's
//!   exit statuses ([`VmmExit`]), its `vmm: guest exit code=` line and the guest's exit-code
//!   port.
//! - [`net`]: the micro-VMs' fixed network (10.200.0.0/24; guest .2, gateway and DNS .1).
//!
//! The crate is linked by PID 1 and by stage 0, so it stays light: no I/O beyond reading one
//! bounded file and replacing a state file on the data disk atomically, no panics on what it parses. The TOML text of the two config files is behind
//! the `toml` feature (stage 0 reads neither).

#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(missing_docs, clippy::unwrap_used))]

pub mod boot_image;
pub mod boot_state;
pub mod data_disk;
pub mod egress;
pub mod farmer;
pub mod floor_state;
pub mod guest;
pub mod labels;
pub mod net;
pub mod node;
pub mod paths;
pub mod vm;

pub use boot_image::BootImageConfig;
pub use guest::GuestConfig;
pub use node::NodeConfig;
pub use vm::{VmSpec, VmmExit};
