//! Test support, behind the `test-utils` feature (and always in this crate's own unit tests): the
//! guest's side of the devices, for the tests of this crate, of the vmm and for the fuzz targets.
//!
//! - Guest memory, an interrupt line that counts, descriptor chains in virtio-queue's
//!   `MockSplitQueue` ([`chain`], [`offer`], [`used`]), a [`scratch_image`] for virtio-blk and a
//!   [`FakeBackend`] for virtio-net: what a test of one device method needs.
//! - [`driver`]: a guest virtio-net driver that does what Linux's `virtio_mmio` and `virtio_net`
//!   do, through the register window only ([`driver::GuestBus`]), with its rings in guest memory
//!   and an interrupt line ([`driver::RecordingLine`]) that records how far each ring was used
//!   whenever it fired. Its [`smoltcp::phy::Device`] implementation puts a smoltcp guest on it.
//! - [`frames`]: Ethernet, ARP and TCP frames as a guest on a static link sends them, and their
//!   parsers.
//!
//! Nothing here is built into the vmm: the feature is only enabled by dev-dependencies and by
//! the fuzz crate. It panics on any surprise, as a test should.

use std::collections::VecDeque;
use std::fs::File;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::split::Descriptor;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::{InterruptLine, NetBackend};

pub mod driver;
pub mod frames;
mod phy;

/// Size of the test guest memory: queues at 0, data buffers from [`DATA`].
pub const MEM_SIZE: u64 = 0x10_0000;
/// Where tests put data buffers.
pub const DATA: u64 = 0x8_0000;

/// 1 MiB of guest memory at 0.
pub fn memory() -> GuestMemoryMmap {
    let size = usize::try_from(MEM_SIZE).expect("fits usize");
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), size)]).expect("test guest memory")
}

/// A zero-filled scratch disk image of `len` bytes: an unlinked temporary file.
pub fn scratch_image(len: u64) -> File {
    let file = tempfile::tempfile().expect("scratch image");
    file.set_len(len).expect("size the scratch image");
    file
}

/// An interrupt line that counts its triggers.
#[derive(Debug, Default)]
pub struct CountingLine(AtomicUsize);

impl CountingLine {
    /// A line that has not fired yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// How often the line fired.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl InterruptLine for CountingLine {
    fn trigger(&self) -> std::io::Result<()> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// One buffer of a chain: guest address, length, device-writable.
pub type Buf = (u64, u32, bool);

/// The descriptors of one chain placed at table index `start`, linked in order.
pub fn chain(start: u16, bufs: &[Buf]) -> Vec<RawDescriptor> {
    let last = bufs.len().saturating_sub(1);
    bufs.iter()
        .enumerate()
        .map(|(i, &(addr, len, writable))| {
            let mut flags = if writable { VRING_DESC_F_WRITE } else { 0 };
            if i < last {
                flags |= VRING_DESC_F_NEXT;
            }
            let index = start + u16::try_from(i).expect("short chain");
            let flags = u16::try_from(flags).expect("flags fit");
            RawDescriptor::from(Descriptor::new(addr, len, flags, index + 1))
        })
        .collect()
}

/// Makes one chain available in `mock` with its descriptors from table index `start`.
pub fn offer(mock: &MockSplitQueue<'_, GuestMemoryMmap>, start: u16, bufs: &[Buf]) {
    mock.add_desc_chains(&chain(start, bufs), start)
        .expect("add chain to the mock queue");
}

/// The used ring so far: (descriptor head, length written) per entry.
pub fn used(mock: &MockSplitQueue<'_, GuestMemoryMmap>) -> Vec<(u32, u32)> {
    let used = mock.used();
    let n = used.idx().load();
    (0..n)
        .map(|i| {
            let elem = used
                .ring()
                .ref_at(usize::from(i))
                .expect("used ring entry")
                .load();
            (elem.id(), elem.len())
        })
        .collect()
}

/// A virtio-net backend that records what the guest sent and hands out queued frames.
#[derive(Debug, Default)]
pub struct FakeBackend {
    /// Every frame the device transmitted, in order.
    pub sent: Vec<Vec<u8>>,
    /// Frames waiting for the guest.
    pub inbox: VecDeque<Vec<u8>>,
    /// Answer every transmitted frame with its reverse (so that receiving runs too).
    pub echo: bool,
}

impl NetBackend for FakeBackend {
    fn transmit(&mut self, frame: &[u8]) {
        self.sent.push(frame.to_vec());
        if self.echo {
            self.inbox.push_back(frame.iter().rev().copied().collect());
        }
    }

    fn receive(&mut self) -> Option<Vec<u8>> {
        self.inbox.pop_front()
    }

    fn has_pending(&self) -> bool {
        !self.inbox.is_empty()
    }
}
