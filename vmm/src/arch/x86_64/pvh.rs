//! The PVH boot ABI's start info: what a kernel entered at its `XEN_ELFNOTE_PHYS32_ENTRY` finds
//! through `ebx` (`hvm_start_info` version 1, the memory map, the initrd as module 0, the command
//! line and the ACPI RSDP).
//!
//! `start_info` is pure and unit-tested; `write_start_info` puts it into guest memory with
//! linux-loader's PVH configurator.

// Counts are bounded (the memory map fits one page, at most one module) before each cast.
#![allow(clippy::cast_possible_truncation)]

use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::boot_params::E820Entry;
use super::layout::{PVH_MEMMAP_START, PVH_MODLIST_START, PVH_START_INFO_START, ZERO_PAGE_START};

/// `hvm_start_info.magic`.
pub const XEN_HVM_START_MAGIC_VALUE: u32 = 0x336e_c578;
/// The start info version we write (1 adds the memory map).
pub const START_INFO_VERSION: u32 = 1;
/// Memory-map entries that fit between [`PVH_MEMMAP_START`] and the zero page.
pub const MAX_MEMMAP_ENTRIES: usize =
    ((ZERO_PAGE_START - PVH_MEMMAP_START) as usize) / std::mem::size_of::<hvm_memmap_table_entry>();

/// Errors building or writing the PVH start info.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The memory map does not fit its page.
    #[error("{0} memory-map entries, PVH start info holds {MAX_MEMMAP_ENTRIES}")]
    TooManyMemmapEntries(usize),
    /// linux-loader could not write the structures.
    #[error("write the PVH start info into guest memory")]
    Write(#[source] linux_loader::configurator::Error),
}

/// What the kernel is told.
#[derive(Debug, Clone, Copy)]
pub struct PvhBoot<'a> {
    /// Command line address (NUL-terminated there).
    pub cmdline_addr: u64,
    /// Initrd `(address, size)`, passed as module 0.
    pub initrd: Option<(u64, u64)>,
    /// Guest RAM.
    pub memmap: &'a [E820Entry],
    /// ACPI RSDP, if tables were placed.
    pub acpi_rsdp_addr: Option<u64>,
}

/// The start info and the tables it points at, ready to be written at their layout addresses.
#[derive(Debug, Clone)]
pub struct StartInfo {
    /// The structure at [`PVH_START_INFO_START`].
    pub info: hvm_start_info,
    /// The memory map at [`PVH_MEMMAP_START`].
    pub memmap: Vec<hvm_memmap_table_entry>,
    /// The module list at [`PVH_MODLIST_START`] (empty without an initrd).
    pub modules: Vec<hvm_modlist_entry>,
}

/// Builds the start info for `boot`.
pub fn start_info(boot: &PvhBoot<'_>) -> Result<StartInfo, Error> {
    if boot.memmap.len() > MAX_MEMMAP_ENTRIES {
        return Err(Error::TooManyMemmapEntries(boot.memmap.len()));
    }
    let memmap: Vec<hvm_memmap_table_entry> = boot
        .memmap
        .iter()
        .map(|e| hvm_memmap_table_entry {
            addr: e.addr,
            size: e.size,
            type_: e.kind,
            reserved: 0,
        })
        .collect();
    let modules: Vec<hvm_modlist_entry> = boot
        .initrd
        .iter()
        .map(|&(paddr, size)| hvm_modlist_entry {
            paddr,
            size,
            cmdline_paddr: 0,
            reserved: 0,
        })
        .collect();
    let info = hvm_start_info {
        magic: XEN_HVM_START_MAGIC_VALUE,
        version: START_INFO_VERSION,
        flags: 0,
        nr_modules: modules.len() as u32,
        modlist_paddr: if modules.is_empty() {
            0
        } else {
            PVH_MODLIST_START
        },
        cmdline_paddr: boot.cmdline_addr,
        rsdp_paddr: boot.acpi_rsdp_addr.unwrap_or(0),
        memmap_paddr: PVH_MEMMAP_START,
        memmap_entries: memmap.len() as u32,
        reserved: 0,
    };
    Ok(StartInfo {
        info,
        memmap,
        modules,
    })
}

/// Writes `s` into guest memory; returns the start info's address (for `ebx`).
pub fn write_start_info(mem: &GuestMemoryMmap, s: &StartInfo) -> Result<u64, Error> {
    let mut params = BootParams::new(&s.info, GuestAddress(PVH_START_INFO_START));
    params.set_sections(&s.memmap, GuestAddress(PVH_MEMMAP_START));
    if !s.modules.is_empty() {
        params.set_modules(&s.modules, GuestAddress(PVH_MODLIST_START));
    }
    PvhBootConfigurator::write_bootparams::<GuestMemoryMmap>(&params, mem).map_err(Error::Write)?;
    Ok(PVH_START_INFO_START)
}

#[cfg(test)]
mod tests {
    use vm_memory::Bytes;

    use super::*;
    use crate::arch::x86_64::boot_params::E820_RAM;
    use crate::arch::x86_64::layout::PVH_MODLIST_START;

    fn ram(addr: u64, size: u64) -> E820Entry {
        E820Entry {
            addr,
            size,
            kind: E820_RAM,
        }
    }

    #[test]
    fn start_info_points_at_memmap_initrd_cmdline_and_rsdp() {
        let map = [ram(0, 0x9_fc00), ram(0x10_0000, 0x7f0_0000)];
        let s = start_info(&PvhBoot {
            cmdline_addr: 0x2_0000,
            initrd: Some((0x700_0000, 12_345)),
            memmap: &map,
            acpi_rsdp_addr: Some(0xe_0000),
        })
        .unwrap();
        let i = s.info;
        assert_eq!((i.magic, i.version, i.flags), (0x336e_c578, 1, 0));
        assert_eq!((i.nr_modules, i.modlist_paddr), (1, PVH_MODLIST_START));
        assert_eq!(
            (
                i.cmdline_paddr,
                i.rsdp_paddr,
                i.memmap_paddr,
                i.memmap_entries
            ),
            (0x2_0000, 0xe_0000, PVH_MEMMAP_START, 2)
        );
        assert_eq!(
            (s.modules[0].paddr, s.modules[0].size),
            (0x700_0000, 12_345)
        );
        assert_eq!(
            (s.memmap[1].addr, s.memmap[1].size, s.memmap[1].type_),
            (0x10_0000, 0x7f0_0000, E820_RAM)
        );
    }

    #[test]
    fn no_initrd_means_no_module_list_and_too_big_a_map_is_refused() {
        let map = [ram(0, 0x9_fc00)];
        let s = start_info(&PvhBoot {
            cmdline_addr: 0x2_0000,
            initrd: None,
            memmap: &map,
            acpi_rsdp_addr: None,
        })
        .unwrap();
        assert_eq!((s.info.nr_modules, s.info.modlist_paddr), (0, 0));
        assert_eq!(s.info.rsdp_paddr, 0);
        assert!(s.modules.is_empty());

        let big = vec![ram(0, 4096); MAX_MEMMAP_ENTRIES + 1];
        let err = start_info(&PvhBoot {
            cmdline_addr: 0,
            initrd: None,
            memmap: &big,
            acpi_rsdp_addr: None,
        })
        .unwrap_err();
        assert!(matches!(err, Error::TooManyMemmapEntries(n) if n == MAX_MEMMAP_ENTRIES + 1));
    }

    #[test]
    fn written_start_info_is_read_back_at_its_layout_addresses() {
        let mem = crate::vstate::memory::create_guest_memory(16 << 20).unwrap();
        let map = [ram(0, 0x9_fc00), ram(0x10_0000, 0xf0_0000)];
        let s = start_info(&PvhBoot {
            cmdline_addr: 0x2_0000,
            initrd: Some((0x80_0000, 4096)),
            memmap: &map,
            acpi_rsdp_addr: Some(0xe_0000),
        })
        .unwrap();
        let at = write_start_info(&mem, &s).unwrap();
        assert_eq!(at, PVH_START_INFO_START);
        let magic: u32 = mem.read_obj(GuestAddress(at)).unwrap();
        assert_eq!(magic, XEN_HVM_START_MAGIC_VALUE);
        let e1: hvm_memmap_table_entry = mem.read_obj(GuestAddress(PVH_MEMMAP_START + 24)).unwrap();
        assert_eq!((e1.addr, e1.size), (0x10_0000, 0xf0_0000));
        let m: hvm_modlist_entry = mem.read_obj(GuestAddress(PVH_MODLIST_START)).unwrap();
        assert_eq!((m.paddr, m.size), (0x80_0000, 4096));
    }
}
