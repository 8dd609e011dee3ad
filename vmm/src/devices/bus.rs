//! A small address bus (one for port I/O, one for MMIO): devices own address ranges, vCPU exits
//! are routed to the device covering the address, with the offset into its range.
//!
//! Written here rather than taken from a crate because it is ~100 lines and we want the device
//! write path to return the guest's power requests synchronously to the vCPU that made them.

use std::sync::{Arc, Mutex};

use crate::exit::GuestExit;

/// A device on a bus.
pub trait BusDevice: Send {
    /// Guest reads `data.len()` bytes at `offset` into the device's range.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// Guest writes `data` at `offset`; a device may answer with a request to end the VM.
    fn write(&mut self, offset: u64, data: &[u8]) -> Option<GuestExit>;
}

/// A device shared between vCPU threads.
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

/// Errors registering devices.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The new range overlaps one already registered.
    #[error("range {base:#x}+{len:#x} overlaps a registered device")]
    Overlap {
        /// Base of the refused range.
        base: u64,
        /// Its length.
        len: u64,
    },
    /// Zero-length or wrapping range.
    #[error("invalid range {base:#x}+{len:#x}")]
    InvalidRange {
        /// Base of the refused range.
        base: u64,
        /// Its length.
        len: u64,
    },
}

/// The result of a write.
#[derive(Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// A device took the write; it may ask to end the VM.
    Handled(Option<GuestExit>),
    /// No device covers the address.
    Unmapped,
}

#[derive(Clone)]
struct Entry {
    base: u64,
    len: u64,
    device: SharedDevice,
}

/// Address ranges and their devices.
#[derive(Clone, Default)]
pub struct Bus {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| (e.base, e.len)))
            .finish()
    }
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Gives `device` the range `base..base+len`.
    pub fn insert(&mut self, base: u64, len: u64, device: SharedDevice) -> Result<(), Error> {
        let end = base
            .checked_add(len)
            .filter(|_| len > 0)
            .ok_or(Error::InvalidRange { base, len })?;
        if self
            .entries
            .iter()
            .any(|e| base < e.base + e.len && e.base < end)
        {
            return Err(Error::Overlap { base, len });
        }
        let at = self.entries.partition_point(|e| e.base < base);
        self.entries.insert(at, Entry { base, len, device });
        Ok(())
    }

    /// The device covering the whole access `addr..addr+size`, and the offset into its range.
    fn resolve(&self, addr: u64, size: usize) -> Option<(&SharedDevice, u64)> {
        let idx = self
            .entries
            .partition_point(|e| e.base <= addr)
            .checked_sub(1)?;
        let e = &self.entries[idx];
        let offset = addr - e.base;
        let size = u64::try_from(size).ok()?;
        (offset.checked_add(size)? <= e.len).then_some((&e.device, offset))
    }

    /// Routes a read; returns false (and leaves `data` alone) when nothing is mapped there.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.resolve(addr, data.len()) {
            Some((dev, offset)) => {
                lock(dev).read(offset, data);
                true
            }
            None => false,
        }
    }

    /// Routes a write.
    pub fn write(&self, addr: u64, data: &[u8]) -> WriteOutcome {
        match self.resolve(addr, data.len()) {
            Some((dev, offset)) => WriteOutcome::Handled(lock(dev).write(offset, data)),
            None => WriteOutcome::Unmapped,
        }
    }
}

/// Locks a device; a device whose holder panicked is still usable (its state is plain data).
fn lock(dev: &SharedDevice) -> std::sync::MutexGuard<'_, dyn BusDevice + 'static> {
    dev.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records accesses; writing 0xff asks for a poweroff.
    #[derive(Default)]
    struct Recorder {
        writes: Vec<(u64, Vec<u8>)>,
    }

    impl BusDevice for Recorder {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(u8::try_from(offset).unwrap_or(0xee));
        }
        fn write(&mut self, offset: u64, data: &[u8]) -> Option<GuestExit> {
            self.writes.push((offset, data.to_vec()));
            (data == [0xff]).then_some(GuestExit::Poweroff)
        }
    }

    fn recorder() -> Arc<Mutex<Recorder>> {
        Arc::new(Mutex::new(Recorder::default()))
    }

    #[test]
    fn accesses_reach_the_device_with_offsets() {
        let mut bus = Bus::new();
        let a = recorder();
        bus.insert(0x3f8, 8, a.clone()).unwrap();
        let mut buf = [0u8; 1];
        assert!(bus.read(0x3fd, &mut buf));
        assert_eq!(buf, [5]);
        assert_eq!(bus.write(0x3f8, b"h"), WriteOutcome::Handled(None));
        assert_eq!(
            bus.write(0x3ff, &[0xff]),
            WriteOutcome::Handled(Some(GuestExit::Poweroff))
        );
        assert_eq!(
            a.lock().unwrap().writes,
            vec![(0, b"h".to_vec()), (7, vec![0xff])]
        );
    }

    #[test]
    fn unmapped_and_straddling_accesses_are_reported() {
        let mut bus = Bus::new();
        bus.insert(0x1000, 0x10, recorder()).unwrap();
        bus.insert(0x2000, 0x10, recorder()).unwrap();
        let mut buf = [7u8; 4];
        assert!(!bus.read(0xfff, &mut buf));
        assert!(!bus.read(0x100e, &mut buf), "runs past the range end");
        assert!(!bus.read(0x1010, &mut buf));
        assert_eq!(buf, [7; 4], "an unmapped read leaves the buffer alone");
        assert_eq!(bus.write(0x1800, &[1]), WriteOutcome::Unmapped);
        assert!(bus.read(0x200c, &mut buf));
        assert_eq!(bus.write(u64::MAX, &[1]), WriteOutcome::Unmapped);
    }

    #[test]
    fn overlapping_or_empty_ranges_are_refused() {
        let mut bus = Bus::new();
        bus.insert(0x100, 0x10, recorder()).unwrap();
        for (base, len) in [(0x100, 1), (0xf8, 0x9), (0x10f, 4), (0x0, 0x1000)] {
            assert_eq!(
                bus.insert(base, len, recorder()),
                Err(Error::Overlap { base, len })
            );
        }
        assert!(bus.insert(0xf8, 8, recorder()).is_ok(), "adjacent is fine");
        assert!(bus.insert(0x110, 8, recorder()).is_ok());
        assert!(matches!(
            bus.insert(0x500, 0, recorder()),
            Err(Error::InvalidRange { .. })
        ));
        assert!(matches!(
            bus.insert(u64::MAX, 2, recorder()),
            Err(Error::InvalidRange { .. })
        ));
    }
}
