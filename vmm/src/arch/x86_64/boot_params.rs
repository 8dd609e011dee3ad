//! The Linux zero page (`struct boot_params`) and its e820 memory map, built as plain values.
//!
//! See the kernel's `Documentation/arch/x86/boot.rst`. Everything here is pure; `boot.rs` writes
//! the result into guest memory.

use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};

use super::layout::{EBDA_START, HIMEM_START};

/// e820 type of usable RAM.
pub const E820_RAM: u32 = 1;
/// `setup_header.boot_flag`.
pub const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
/// `setup_header.header`: "HdrS".
pub const KERNEL_HDR_MAGIC: u32 = 0x5372_6448;
/// `type_of_loader` for a boot loader without an assigned id.
pub const KERNEL_LOADER_OTHER: u8 = 0xff;
/// `kernel_alignment` we claim for an ELF vmlinux (no setup header of its own).
pub const KERNEL_MIN_ALIGNMENT_BYTES: u32 = 0x100_0000;
/// `xloadflags` bit: the kernel has the 64-bit entry point at load address + 0x200.
pub const XLF_KERNEL_64: u16 = 1;
/// The boot protocol's default `initrd_addr_max` for kernels that do not state one.
pub const DEFAULT_INITRD_ADDR_MAX: u32 = 0x37ff_ffff;
/// Entries that fit in the zero page's e820 table.
pub const E820_MAX_ENTRIES: usize = 128;

/// Errors building the zero page.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// More e820 entries than the zero page holds.
    #[error("{0} e820 entries, the zero page holds {E820_MAX_ENTRIES}")]
    TooManyE820Entries(usize),
    /// The initrd or command line would be above 4 GiB, which the 32-bit fields cannot express.
    #[error("boot data at {0:#x} is above 4 GiB")]
    AddressAbove4G(u64),
    /// The initrd does not fit between the kernel's end and the highest address it may use.
    #[error(
        "initrd of {size} bytes does not fit between the kernel end {kernel_end:#x} and {top:#x}"
    )]
    InitrdTooLarge {
        /// Initrd size in bytes.
        size: u64,
        /// First byte after the kernel.
        kernel_end: u64,
        /// End of the space the initrd may occupy.
        top: u64,
    },
}

/// One e820 map entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E820Entry {
    /// Start address.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// Type (`E820_RAM`, ...).
    pub kind: u32,
}

/// The e820 map for guest RAM regions `(start, size)` as laid out by `vstate::memory`: the low
/// region is reported without the EBDA/VGA/BIOS hole between 0x9fc00 and 1 MiB.
pub fn e820_map(ram: &[(u64, u64)]) -> Vec<E820Entry> {
    let mut map = Vec::new();
    for &(start, size) in ram {
        let end = start.saturating_add(size);
        if start < HIMEM_START {
            if start < EBDA_START {
                map.push(ram_entry(start, end.min(EBDA_START) - start));
            }
            if end > HIMEM_START {
                map.push(ram_entry(HIMEM_START, end - HIMEM_START));
            }
        } else {
            map.push(ram_entry(start, size));
        }
    }
    map
}

fn ram_entry(addr: u64, size: u64) -> E820Entry {
    E820Entry {
        addr,
        size,
        kind: E820_RAM,
    }
}

/// Where to put an initrd of `size` bytes: as high as possible (page aligned) below both the end
/// of low RAM and the kernel's `initrd_addr_max`, and above the kernel.
pub fn initrd_address(
    size: u64,
    low_ram_end: u64,
    initrd_addr_max: u32,
    kernel_end: u64,
) -> Result<u64, Error> {
    let max = if initrd_addr_max == 0 {
        DEFAULT_INITRD_ADDR_MAX
    } else {
        initrd_addr_max
    };
    let top = low_ram_end.min(u64::from(max) + 1);
    let too_large = Error::InitrdTooLarge {
        size,
        kernel_end,
        top,
    };
    let start = top.checked_sub(size).ok_or(too_large.clone())? & !0xfff;
    if start < kernel_end {
        return Err(too_large);
    }
    Ok(start)
}

/// What goes into the zero page besides the kernel's own setup header.
#[derive(Debug, Clone)]
pub struct ZeroPage<'a> {
    /// The bzImage's setup header (None for an ELF vmlinux).
    pub setup_header: Option<setup_header>,
    /// Guest address of the NUL-terminated command line.
    pub cmdline_addr: u64,
    /// Command line length without the NUL.
    pub cmdline_len: usize,
    /// Initrd `(address, size)`.
    pub initrd: Option<(u64, u64)>,
    /// The memory map.
    pub e820: &'a [E820Entry],
    /// Where the ACPI RSDP is (boot protocol 2.14's `acpi_rsdp_addr`), if there are tables.
    pub acpi_rsdp_addr: Option<u64>,
}

/// Builds the zero page.
pub fn build_zero_page(input: &ZeroPage<'_>) -> Result<boot_params, Error> {
    let mut params = boot_params::default();
    match input.setup_header {
        Some(hdr) => params.hdr = hdr,
        None => params.hdr.kernel_alignment = KERNEL_MIN_ALIGNMENT_BYTES,
    }
    params.hdr.boot_flag = KERNEL_BOOT_FLAG_MAGIC;
    params.hdr.header = KERNEL_HDR_MAGIC;
    params.hdr.type_of_loader = KERNEL_LOADER_OTHER;
    params.hdr.cmd_line_ptr = low_u32(input.cmdline_addr)?;
    params.hdr.cmdline_size = low_u32(u64::try_from(input.cmdline_len).unwrap_or(u64::MAX))?;
    if let Some((addr, size)) = input.initrd {
        params.hdr.ramdisk_image = low_u32(addr)?;
        params.hdr.ramdisk_size = low_u32(size)?;
    }
    if let Some(rsdp) = input.acpi_rsdp_addr {
        params.acpi_rsdp_addr = rsdp;
    }
    if input.e820.len() > E820_MAX_ENTRIES {
        return Err(Error::TooManyE820Entries(input.e820.len()));
    }
    for (slot, e) in params.e820_table.iter_mut().zip(input.e820) {
        *slot = boot_e820_entry {
            addr: e.addr,
            size: e.size,
            r#type: e.kind,
        };
    }
    // Bounded by E820_MAX_ENTRIES (128) above.
    params.e820_entries = u8::try_from(input.e820.len()).unwrap_or(u8::MAX);
    Ok(params)
}

fn low_u32(v: u64) -> Result<u32, Error> {
    u32::try_from(v).map_err(|_| Error::AddressAbove4G(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn e820_skips_the_legacy_hole_and_keeps_memory_above_4g() {
        let map = e820_map(&[(0, 3072 * MIB), (1 << 32, 1024 * MIB)]);
        assert_eq!(
            map,
            vec![
                ram_entry(0, EBDA_START),
                ram_entry(HIMEM_START, 3072 * MIB - HIMEM_START),
                ram_entry(1 << 32, 1024 * MIB),
            ]
        );
    }

    #[test]
    fn initrd_goes_to_the_top_of_low_ram_page_aligned() {
        let at = initrd_address(0x1234, 128 * MIB, 0x7fff_ffff, 4 * MIB).unwrap();
        assert_eq!(at, (128 * MIB - 0x1234) & !0xfff);
        assert!(at + 0x1234 <= 128 * MIB);
    }

    #[test]
    fn initrd_respects_initrd_addr_max() {
        let at = initrd_address(MIB, 3072 * MIB, DEFAULT_INITRD_ADDR_MAX, 4 * MIB).unwrap();
        assert_eq!(at, 0x3800_0000 - MIB);
        assert_eq!(
            initrd_address(MIB, 3072 * MIB, 0, 4 * MIB).unwrap(),
            at,
            "0 means the protocol's default"
        );
    }

    #[test]
    fn initrd_that_would_overlap_the_kernel_is_refused() {
        let err = initrd_address(60 * MIB, 64 * MIB, 0x7fff_ffff, 8 * MIB).unwrap_err();
        assert!(matches!(err, Error::InitrdTooLarge { .. }));
        assert!(initrd_address(u64::MAX, 64 * MIB, 0x7fff_ffff, 0).is_err());
    }

    #[test]
    fn zero_page_carries_cmdline_initrd_e820_and_loader_fields() {
        let e820 = e820_map(&[(0, 256 * MIB)]);
        let hdr = setup_header {
            version: 0x20f,
            xloadflags: XLF_KERNEL_64,
            ..Default::default()
        };
        let p = build_zero_page(&ZeroPage {
            setup_header: Some(hdr),
            cmdline_addr: 0x2_0000,
            cmdline_len: 17,
            initrd: Some((0x0f00_0000, 0x1000)),
            e820: &e820,
            acpi_rsdp_addr: None,
        })
        .unwrap();
        let h = p.hdr;
        assert_eq!({ h.version }, 0x20f, "the kernel's own header is kept");
        assert_eq!({ h.header }, KERNEL_HDR_MAGIC);
        assert_eq!({ h.boot_flag }, KERNEL_BOOT_FLAG_MAGIC);
        assert_eq!(h.type_of_loader, 0xff);
        assert_eq!({ h.cmd_line_ptr }, 0x2_0000);
        assert_eq!({ h.cmdline_size }, 17);
        assert_eq!(
            ({ h.ramdisk_image }, { h.ramdisk_size }),
            (0x0f00_0000, 0x1000)
        );
        assert_eq!(p.e820_entries, 2);
        assert_eq!({ p.e820_table[1].addr }, HIMEM_START);
        assert_eq!({ p.e820_table[1].size }, 255 * MIB);
        assert_eq!({ p.e820_table[1].r#type }, E820_RAM);
        // The header sits at its ABI offset 0x1f1 in the page.
        use vm_memory::ByteValued;
        assert_eq!(&p.as_slice()[0x202..0x206], b"HdrS");
        assert_eq!(p.as_slice()[0x1e8], 2);
    }

    #[test]
    fn elf_kernels_get_a_synthesized_header() {
        let p = build_zero_page(&ZeroPage {
            setup_header: None,
            cmdline_addr: 0x2_0000,
            cmdline_len: 0,
            initrd: None,
            e820: &[],
            acpi_rsdp_addr: None,
        })
        .unwrap();
        assert_eq!({ p.hdr.kernel_alignment }, KERNEL_MIN_ALIGNMENT_BYTES);
        assert_eq!({ p.hdr.ramdisk_image }, 0);
    }

    #[test]
    fn boot_data_above_4g_and_oversized_maps_are_refused() {
        let input = ZeroPage {
            setup_header: None,
            cmdline_addr: 1 << 32,
            cmdline_len: 0,
            initrd: None,
            e820: &[],
            acpi_rsdp_addr: None,
        };
        assert_eq!(
            build_zero_page(&input).unwrap_err(),
            Error::AddressAbove4G(1 << 32)
        );
        let many = vec![ram_entry(0, 1); 129];
        let input = ZeroPage {
            cmdline_addr: 0,
            e820: &many,
            acpi_rsdp_addr: None,
            ..input
        };
        assert_eq!(
            build_zero_page(&input).unwrap_err(),
            Error::TooManyE820Entries(129)
        );
    }
}
