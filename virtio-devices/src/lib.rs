//! Virtio devices for the NullOS micro-VM monitor: the virtio-mmio transport (version 2, "modern"),
//! virtio-blk on a raw image file and virtio-net on a pluggable frame backend.
//!
//! # Layering
//!
//! This crate knows nothing about KVM, file descriptors for interrupts, threads or event loops;
//! the `vmm` crate wires it to those. Everything here is a state machine driven by method calls:
//!
//! - [`MmioTransport`] is the register file the guest's `virtio_mmio` driver (Linux 6.1, found
//!   through an ACPI `LNRO0005` device) talks to. The vmm forwards every MMIO exit in the device's
//!   [`MMIO_WINDOW_SIZE`] window to [`MmioTransport::read`] / [`MmioTransport::write`]; these take
//!   any offset and any length and never panic (a fuzz target checks that). The transport owns
//!   the guest memory handle, the queue configuration, the status state machine and the
//!   `InterruptStatus` bits, and raises the device's interrupt through an [`InterruptLine`]
//!   (the vmm implements it with a KVM irqfd).
//! - A device implements [`VirtioDevice`]: its type, features, config space, what to do when the
//!   driver sets `DRIVER_OK` (it receives the configured [`Queue`]s and owns them from then on),
//!   what to do on a `QueueNotify` write, and reset. A notification is handled synchronously in the
//!   caller's thread (the vCPU thread that took the MMIO exit); the device returns whether it
//!   added used buffers, and the transport then sets `InterruptStatus` bit 0 and triggers the line.
//! - Work that starts outside the guest (frames arriving for virtio-net) runs through
//!   [`MmioTransport::with_device`]: the vmm's network thread, holding the transport in an
//!   `Arc<Mutex<..>>`, calls it with a closure that gets the device and the guest memory and says
//!   whether used buffers were added; the transport raises the interrupt when they were.
//! - [`VirtioBlock`] and [`VirtioNet`] split each request into a pure parsing step over the
//!   descriptor chain ([`block::Request::parse`], [`net::read_tx_frame`], [`net::write_rx_frame`]),
//!   bounded in the number of descriptors and bytes, and the execution (file I/O, backend calls).
//!   A malformed chain is answered with an error status when it has a usable status byte, or
//!   returned to the driver as used with length 0 and a log line; never a panic.
//!
//! Features offered: `VIRTIO_F_VERSION_1` always (the transport adds it); no event index, no
//! indirect descriptors, no offloads. The devices support exactly what Linux 6.1's `virtio_blk`
//! and `virtio_net` need for a plain disk and a plain NIC.

mod device;

pub mod block;
pub mod log_limit;
pub mod mmio;
pub mod net;

// Test support for dependents, behind the `test-utils` feature (see the module's docs).
#[cfg(any(test, feature = "test-utils"))]
pub mod test_utils;

pub use block::VirtioBlock;
pub use device::{ActivateError, InterruptLine, VirtioDevice};
pub use log_limit::{LogLimit, GUEST_LOG_LIMIT};
pub use mmio::{MmioError, MmioTransport, MMIO_WINDOW_SIZE};
pub use net::{NetBackend, VirtioNet};
pub use virtio_queue::Queue;
pub use vm_memory::GuestMemoryMmap;
