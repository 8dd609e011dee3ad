//! Guest RAM: anonymous private mappings, split around the 32-bit MMIO gap.

use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::arch::x86_64::layout::{MMIO_GAP_END, MMIO_GAP_START};

/// Errors creating guest memory.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The size does not fit the host's address space.
    #[error("guest memory of {0} bytes does not fit the address space")]
    Size(u64),
    /// mmap of guest memory failed.
    #[error("map guest memory")]
    Map(#[source] vm_memory::mmap::FromRangesError),
}

/// RAM regions `(start, size)` for `size` bytes of guest memory: from 0 up to the MMIO gap,
/// the rest from 4 GiB.
pub fn ram_regions(size: u64) -> Vec<(u64, u64)> {
    if size <= MMIO_GAP_START {
        vec![(0, size)]
    } else {
        vec![(0, MMIO_GAP_START), (MMIO_GAP_END, size - MMIO_GAP_START)]
    }
}

/// Maps `size` bytes of guest RAM as laid out by [`ram_regions`].
pub fn create_guest_memory(size: u64) -> Result<GuestMemoryMmap, Error> {
    let ranges = ram_regions(size)
        .into_iter()
        .map(|(start, len)| {
            usize::try_from(len)
                .map(|len| (GuestAddress(start), len))
                .map_err(|_| Error::Size(size))
        })
        .collect::<Result<Vec<_>, _>>()?;
    GuestMemoryMmap::from_ranges(&ranges).map_err(Error::Map)
}

/// The end of RAM below the MMIO gap.
pub fn low_ram_end(size: u64) -> u64 {
    size.min(MMIO_GAP_START)
}

#[cfg(test)]
mod tests {
    use vm_memory::{Bytes, GuestMemoryBackend};

    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn small_guests_have_one_region() {
        assert_eq!(ram_regions(128 * MIB), vec![(0, 128 * MIB)]);
        assert_eq!(ram_regions(3072 * MIB), vec![(0, 3072 * MIB)]);
        assert_eq!(low_ram_end(128 * MIB), 128 * MIB);
    }

    #[test]
    fn large_guests_continue_above_4g() {
        assert_eq!(
            ram_regions(4096 * MIB),
            vec![(0, MMIO_GAP_START), (1 << 32, 1024 * MIB)]
        );
        assert_eq!(low_ram_end(4096 * MIB), MMIO_GAP_START);
    }

    #[test]
    fn mapped_memory_has_a_hole_at_the_gap() {
        // 3 GiB + 2 MiB: lazily mapped, so cheap.
        let mem = create_guest_memory(3074 * MIB).unwrap();
        assert_eq!(mem.num_regions(), 2);
        assert!(mem.write_obj(1u8, GuestAddress(MMIO_GAP_START - 1)).is_ok());
        assert!(mem.write_obj(1u8, GuestAddress(MMIO_GAP_START)).is_err());
        assert!(mem.write_obj(1u8, GuestAddress(MMIO_GAP_END + MIB)).is_ok());
    }
}
