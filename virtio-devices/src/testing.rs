//! Helpers shared by the unit tests: guest memory, an interrupt counter, a queue in memory.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::InterruptLine;

/// 1 MiB of guest memory at 0 (queues at 0, data buffers from 0x8_0000).
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
