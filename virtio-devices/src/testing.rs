//! Helpers shared by the unit tests: guest memory, an interrupt counter, chains in a mock queue.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::split::Descriptor;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::InterruptLine;

/// Size of the test guest memory: queues at 0, data buffers from [`DATA`].
pub(crate) const MEM_SIZE: u64 = 0x10_0000;
/// Where tests put data buffers.
pub(crate) const DATA: u64 = 0x8_0000;

/// 1 MiB of guest memory at 0.
pub(crate) fn memory() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).expect("test guest memory")
}

/// An interrupt line that counts its triggers.
#[derive(Debug, Default)]
pub(crate) struct CountingLine(AtomicUsize);

impl CountingLine {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub(crate) fn count(&self) -> usize {
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
pub(crate) type Buf = (u64, u32, bool);

/// The descriptors of one chain placed at table index `start`, linked in order.
pub(crate) fn chain(start: u16, bufs: &[Buf]) -> Vec<RawDescriptor> {
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
pub(crate) fn offer(mock: &MockSplitQueue<'_, GuestMemoryMmap>, start: u16, bufs: &[Buf]) {
    mock.add_desc_chains(&chain(start, bufs), start)
        .expect("add chain to the mock queue");
}

/// The used ring so far: (descriptor head, length written) per entry.
pub(crate) fn used(mock: &MockSplitQueue<'_, GuestMemoryMmap>) -> Vec<(u32, u32)> {
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
