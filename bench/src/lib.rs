//! Side-by-side benchmarks for NullOS (`make bench`). They compare, in one run and with the same
//! QEMU settings, NullOS against a yardstick, and print ratios; they are not tests.
//!
//! - [`boot`]: boot-to-ready of a built image against the same kernel booting
//!   [`baseline-init`](baseline), a PID 1 that only prints one line and powers off;
//! - [`build`]: `image-builder build` against `find | cpio -o -H newc | zstd` over the same tree;
//! - [`verify`]: stage 0's release verification (`boot::verify::verify`) against `b3sum` on the
//!   same files;
//! - [`stage0`]: boot-to-ready through the USB stick and stage 0 against booting the node directly;
//! - [`microvm`]: our `vmm` against `qemu-system-x86_64 -M microvm` inside a bench node booted
//!   under QEMU: boot to the guest's init, memory overhead, guest→host TCP throughput;
//! - [`stats`]: pure helpers (console line parsing, medians, report lines).
//!
//! Add a benchmark as a module here plus a subcommand in `src/main.rs`.

pub mod baseline;
pub mod boot;
pub mod build;
pub mod microvm;
pub mod notary;
pub mod stage0;
pub mod stats;
pub mod verify;
