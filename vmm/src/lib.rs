//! `vmm`: the NullOS micro-VM monitor, one process per KVM guest, on the rust-vmm crates
//! (`kvm-ioctls`, `vm-memory`, `linux-loader`, `vm-superio`, `vmm-sys-util`).
//!
//! Layers, from the bottom:
//! - [`arch::x86_64`]: the guest memory map and pure builders for boot-time CPU state (GDT,
//!   page tables, registers, CPUID, MSRs, LAPIC) and the Linux zero page.
//! - [`vstate`]: KVM objects: guest memory, the VM (irqchip, PIT, memory slots), vCPUs and their
//!   run loop.
//! - [`devices`]: the PIO/MMIO buses and devices (8250 serial, i8042 reset, ACPI sleep control).
//! - [`boot`]: loading a Linux kernel, initrd and command line.
//! - [`builder`]: putting it together and running the VM; [`exit`] maps the guest's end to the
//!   process exit status; [`config`] is the command line.
//!
//! The binary (`main.rs`) only parses arguments and maps the result to an exit code.

pub mod arch;
pub mod boot;
pub mod builder;
pub mod config;
pub mod devices;
pub mod exit;
pub mod files;
pub mod seccomp;
pub mod vstate;

pub use builder::{run_vm, Error, VmOutcome};
pub use config::{Cli, SerialOutput, VmConfig};
pub use exit::{CrashReason, GuestExit};
