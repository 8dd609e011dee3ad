//! Every QEMU invocation of NullOS.
//!
//! Layers, bottom up:
//! - [`config`]: a [`VmConfig`] (boot profile, accelerator, machine, NIC) and its pure
//!   translation to QEMU's argv, [`VmConfig::args`];
//! - [`accel`]: [`Accel::detect`] picks KVM only where it can really run Linux, else TCG;
//! - [`image`]: boot profiles from a built image directory (`kernel`/`initrd`/`cmdline`, `pxe/`,
//!   `usb.img` on OVMF);
//! - [`console`] and [`qmp`]: the serial console as lines, and a minimal QMP client;
//! - [`Vm`]: a running QEMU with its console in a file and a QMP socket, for the full-system
//!   tests and benchmarks; killed and reaped on drop.
//!
//! The `nullos-qemu` binary (`make run`) boots an image with the console on the terminal.
//!
//! ```no_run
//! use std::time::Duration;
//! use qemu::{image, Accel, Vm, VmConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let boot = image::direct_boot("build/dev".as_ref())?;
//! let vm = Vm::start(VmConfig::new(boot, Accel::detect()?))?;
//! let ready = vm.wait_for_line("nullos: ready", Duration::from_secs(120))?;
//! assert!(ready.contains("address=10.0.2.15/24"));
//! vm.powerdown()?;
//! vm.wait_for_line("nullos: poweroff", Duration::from_secs(30))?;
//! vm.wait_exit(Duration::from_secs(10))?;
//! # Ok(()) }
//! ```
//!
//! QEMU user networking (slirp) gives the guest 10.0.2.15/24, the host as 10.0.2.2 and DNS at
//! 10.0.2.3; see [`net`].

pub mod accel;
pub mod config;
pub mod console;
mod error;
pub mod image;
pub mod qmp;
mod spawn;
mod vm;

pub use accel::{Accel, ParseAccelError};
pub use config::{
    qemu_program, Boot, ConfigError, Console, Firmware, Machine, NicModel, Uefi, VmConfig,
    OVMF_CODE, OVMF_CODE_SECURE_BOOT, OVMF_VARS, OVMF_VARS_4M,
};
pub use error::QemuError;
pub use image::{DirectImage, ImageError};
pub use serde_json::Value as QmpValue;
pub use vm::Vm;

/// Addresses of QEMU's user-mode network as the guest sees it.
pub mod net {
    use std::net::Ipv4Addr;

    /// The address the guest leases.
    pub const GUEST: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
    /// The host, as seen from the guest (connections to it reach the host's loopback).
    pub const HOST: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
    /// The built-in DNS forwarder.
    pub const DNS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);
    /// The network's prefix length.
    pub const PREFIX: u8 = 24;
}
