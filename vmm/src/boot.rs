//! Linux direct boot: kernel (bzImage or ELF vmlinux) and initrd into guest memory, the command
//! line, the zero page or PVH start info and the boot-time tables; the result is the entry point.
//!
//! A bzImage is entered through the 64-bit boot protocol (long mode, `rsi` = zero page) at
//! `startup_64` = load address + 0x200. An ELF vmlinux with a `XEN_ELFNOTE_PHYS32_ENTRY` note
//! (Linux built with `CONFIG_PVH`, as Debian's kernels are) is entered through PVH: 32-bit
//! protected mode at the note's address, `ebx` = `hvm_start_info`. An ELF without the note falls
//! back to the 64-bit protocol at its ELF entry.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use linux_loader::cmdline::Cmdline;
use linux_loader::loader::bootparam::setup_header;
use linux_loader::loader::elf::PvhBootCapability;
use linux_loader::loader::{load_cmdline, BzImage, Elf, KernelLoader};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::arch::x86_64::acpi::AcpiTables;
use crate::arch::x86_64::boot_params::{self, ZeroPage, XLF_KERNEL_64};
use crate::arch::x86_64::layout::{CMDLINE_MAX_SIZE, CMDLINE_START, HIMEM_START, ZERO_PAGE_START};
use crate::arch::x86_64::pvh::{self, PvhBoot};
use crate::arch::x86_64::regs;
use crate::vstate::memory;

/// Offset of `startup_64` from a bzImage's protected-mode load address.
pub const STARTUP_64_OFFSET: u64 = 0x200;
/// Oldest boot protocol with the 64-bit entry and `xloadflags` (2.12).
pub const MIN_BOOT_PROTOCOL: u16 = 0x20c;
/// `initrd_addr_max` assumed for an ELF vmlinux (what x86_64 kernels declare).
const ELF_INITRD_ADDR_MAX: u32 = 0x7fff_ffff;

/// Errors loading the kernel, initrd and boot data.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel file could not be opened or read.
    #[error("open kernel {}", .0.display())]
    OpenKernel(PathBuf, #[source] std::io::Error),
    /// The kernel is not a loadable bzImage/ELF (or does not fit guest memory).
    #[error("load kernel {}: not a bzImage or ELF kernel that fits guest memory", .0.display())]
    LoadKernel(PathBuf, #[source] linux_loader::loader::Error),
    /// A bzImage without the 64-bit entry point.
    #[error("kernel {}: boot protocol {:#x}, no 64-bit entry point (needs 2.12+ and XLF_KERNEL_64)", .0.display(), .1)]
    Not64Bit(PathBuf, u16),
    /// The initrd could not be opened or read.
    #[error("open initrd {}", .0.display())]
    OpenInitrd(PathBuf, #[source] std::io::Error),
    /// The initrd could not be placed.
    #[error("place initrd {}", .0.display())]
    PlaceInitrd(PathBuf, #[source] boot_params::Error),
    /// Copying the initrd into guest memory failed.
    #[error("read initrd {} into guest memory", .0.display())]
    ReadInitrd(PathBuf, #[source] vm_memory::GuestMemoryError),
    /// The command line is invalid or too long for this kernel.
    #[error("kernel command line (at most {1} bytes for this kernel)")]
    Cmdline(#[source] linux_loader::cmdline::Error, usize),
    /// Writing the command line failed.
    #[error("write the command line into guest memory")]
    WriteCmdline(#[source] linux_loader::loader::Error),
    /// The zero page could not be built.
    #[error("build the zero page")]
    ZeroPage(#[source] boot_params::Error),
    /// Writing the zero page failed.
    #[error("write the zero page into guest memory")]
    WriteZeroPage(#[source] vm_memory::GuestMemoryError),
    /// The PVH start info could not be built or written.
    #[error("PVH start info")]
    PvhStartInfo(#[source] pvh::Error),
    /// Writing the ACPI tables failed.
    #[error("write the ACPI tables into guest memory")]
    WriteAcpi(#[source] vm_memory::GuestMemoryError),
    /// Writing GDT/IDT/page tables failed.
    #[error("write boot tables")]
    Tables(#[source] regs::Error),
}

impl Error {
    /// Whether the error is the caller's input (exit code 2) rather than the VMM failing.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Error::OpenKernel(..)
                | Error::LoadKernel(..)
                | Error::Not64Bit(..)
                | Error::OpenInitrd(..)
                | Error::PlaceInitrd(..)
                | Error::Cmdline(..)
        )
    }
}

/// What to boot.
#[derive(Debug, Clone)]
pub struct BootConfig<'a> {
    /// Kernel image.
    pub kernel: &'a Path,
    /// Optional initrd.
    pub initrd: Option<&'a Path>,
    /// Kernel command line.
    pub cmdline: &'a str,
    /// ACPI tables to place (their RSDP goes into the zero page).
    pub acpi: Option<&'a AcpiTables>,
}

/// Where and how the boot vCPU starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryPoint {
    /// The 64-bit boot protocol: long mode at `entry`, `rsi` = zero page.
    LongMode {
        /// 64-bit entry address (`rip`).
        entry: u64,
        /// Zero page address (`rsi`).
        zero_page: u64,
    },
    /// PVH: 32-bit protected mode, paging off, at `entry`, `ebx` = `hvm_start_info`.
    Pvh {
        /// 32-bit entry address (`rip`).
        entry: u64,
        /// `hvm_start_info` address (`rbx`).
        start_info: u64,
    },
}

impl std::fmt::Display for EntryPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EntryPoint::LongMode { entry, zero_page } => {
                write!(f, "64-bit entry {entry:#x}, zero page {zero_page:#x}")
            }
            EntryPoint::Pvh { entry, start_info } => {
                write!(f, "PVH entry {entry:#x}, start info {start_info:#x}")
            }
        }
    }
}

struct LoadedKernel {
    entry: u64,
    end: u64,
    header: Option<setup_header>,
    /// The PVH entry of an ELF that has one.
    pvh_entry: Option<u64>,
}

fn load_kernel(mem: &GuestMemoryMmap, path: &Path) -> Result<LoadedKernel, Error> {
    let open_err = |e| Error::OpenKernel(path.to_path_buf(), e);
    let mut file = crate::files::open(path, false).map_err(open_err)?;
    let mut magic = [0u8; 4];
    let is_elf = match file.read_exact(&mut magic) {
        Ok(()) => magic == *b"\x7fELF",
        Err(_) => false, // too short to be ELF; BzImage::load reports it
    };
    file.seek(SeekFrom::Start(0)).map_err(open_err)?;
    let himem = Some(GuestAddress(HIMEM_START));
    let load_err = |e| Error::LoadKernel(path.to_path_buf(), e);
    if is_elf {
        let r = Elf::load(mem, None, &mut file, himem).map_err(load_err)?;
        let pvh_entry = match r.pvh_boot_cap {
            PvhBootCapability::PvhEntryPresent(addr) => Some(addr.0),
            _ => None,
        };
        return Ok(LoadedKernel {
            entry: r.kernel_load.0,
            end: r.kernel_end,
            header: None,
            pvh_entry,
        });
    }
    let r = BzImage::load(mem, None, &mut file, himem).map_err(load_err)?;
    let hdr = r.setup_header.unwrap_or_default();
    let (version, xloadflags) = (hdr.version, hdr.xloadflags);
    if version < MIN_BOOT_PROTOCOL || xloadflags & XLF_KERNEL_64 == 0 {
        return Err(Error::Not64Bit(path.to_path_buf(), version));
    }
    Ok(LoadedKernel {
        entry: r.kernel_load.0 + STARTUP_64_OFFSET,
        end: r.kernel_end,
        header: Some(hdr),
        pvh_entry: None,
    })
}

/// Largest command line (with its NUL) the kernel accepts.
fn cmdline_capacity(header: Option<&setup_header>) -> usize {
    let kernel_max = match header {
        // `cmdline_size` (protocol 2.06+) excludes the NUL.
        Some(h) if { h.version } >= 0x206 => usize::try_from(h.cmdline_size)
            .unwrap_or(usize::MAX)
            .saturating_add(1),
        Some(_) => 256,
        None => CMDLINE_MAX_SIZE,
    };
    kernel_max.min(CMDLINE_MAX_SIZE)
}

/// Loads everything the kernel needs and returns where to enter it.
pub fn load_linux(
    mem: &GuestMemoryMmap,
    mem_size: u64,
    cfg: &BootConfig<'_>,
) -> Result<EntryPoint, Error> {
    let kernel = load_kernel(mem, cfg.kernel)?;

    let capacity = cmdline_capacity(kernel.header.as_ref());
    let cmdline =
        Cmdline::try_from(cfg.cmdline, capacity).map_err(|e| Error::Cmdline(e, capacity - 1))?;
    let cmdline_len = cmdline
        .as_cstring()
        .map_err(|e| Error::Cmdline(e, capacity - 1))?
        .as_bytes()
        .len();
    load_cmdline(mem, GuestAddress(CMDLINE_START), &cmdline).map_err(Error::WriteCmdline)?;

    let initrd = match cfg.initrd {
        Some(path) => Some(load_initrd(mem, mem_size, path, &kernel)?),
        None => None,
    };

    let e820 = boot_params::e820_map(&memory::ram_regions(mem_size));
    let acpi_rsdp_addr = cfg.acpi.map(|t| t.rsdp_addr);
    regs::write_boot_tables(mem).map_err(Error::Tables)?;
    for (addr, bytes) in cfg.acpi.iter().flat_map(|t| t.blobs.iter()) {
        mem.write_slice(bytes, GuestAddress(*addr))
            .map_err(Error::WriteAcpi)?;
    }

    if let Some(entry) = kernel.pvh_entry {
        let info = pvh::start_info(&PvhBoot {
            cmdline_addr: CMDLINE_START,
            initrd,
            memmap: &e820,
            acpi_rsdp_addr,
        })
        .map_err(Error::PvhStartInfo)?;
        let start_info = pvh::write_start_info(mem, &info).map_err(Error::PvhStartInfo)?;
        return Ok(EntryPoint::Pvh { entry, start_info });
    }

    let zero_page = boot_params::build_zero_page(&ZeroPage {
        setup_header: kernel.header,
        cmdline_addr: CMDLINE_START,
        cmdline_len,
        initrd,
        e820: &e820,
        acpi_rsdp_addr,
    })
    .map_err(Error::ZeroPage)?;
    mem.write_obj(zero_page, GuestAddress(ZERO_PAGE_START))
        .map_err(Error::WriteZeroPage)?;
    Ok(EntryPoint::LongMode {
        entry: kernel.entry,
        zero_page: ZERO_PAGE_START,
    })
}

fn load_initrd(
    mem: &GuestMemoryMmap,
    mem_size: u64,
    path: &Path,
    kernel: &LoadedKernel,
) -> Result<(u64, u64), Error> {
    let open_err = |e| Error::OpenInitrd(path.to_path_buf(), e);
    let mut file = crate::files::open(path, false).map_err(open_err)?;
    let size = file.metadata().map_err(open_err)?.len();
    let addr_max = match kernel.header {
        Some(h) => h.initrd_addr_max,
        None => ELF_INITRD_ADDR_MAX,
    };
    let addr =
        boot_params::initrd_address(size, memory::low_ram_end(mem_size), addr_max, kernel.end)
            .map_err(|e| Error::PlaceInitrd(path.to_path_buf(), e))?;
    let len = usize::try_from(size).map_err(|_| {
        Error::PlaceInitrd(path.to_path_buf(), boot_params::Error::AddressAbove4G(size))
    })?;
    mem.read_exact_volatile_from(GuestAddress(addr), &mut file, len)
        .map_err(|e| Error::ReadInitrd(path.to_path_buf(), e))?;
    Ok((addr, size))
}

#[cfg(test)]
mod tests {
    use vm_memory::{ByteValued, GuestMemoryBackend};

    use super::*;
    use crate::arch::x86_64::layout::PML4_START;

    /// The Debian cloud kernel the project boots (unpacked by `make kernel`).
    fn debian_kernel() -> std::path::PathBuf {
        let boot = Path::new(env!("CARGO_MANIFEST_DIR")).join("../build/kernels/cloud/boot");
        std::fs::read_dir(&boot)
            .ok()
            .and_then(|entries| {
                entries.filter_map(Result::ok).map(|e| e.path()).find(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
                })
            })
            .unwrap_or_else(|| panic!("no kernel in {}: run `make kernel`", boot.display()))
    }

    #[test]
    fn debian_bzimage_loads_with_64_bit_entry_initrd_and_zero_page() {
        let kernel = debian_kernel();
        let kernel = kernel.as_path();
        let dir = tempfile::tempdir().unwrap();
        let initrd = dir.path().join("initrd");
        std::fs::write(&initrd, vec![0x5a; 10_000]).unwrap();
        let size = 256u64 << 20;
        let mem = memory::create_guest_memory(size).unwrap();
        let ep = load_linux(
            &mem,
            size,
            &BootConfig {
                kernel,
                initrd: Some(&initrd),
                cmdline: "console=ttyS0 panic=-1",
                acpi: None,
            },
        )
        .unwrap();
        let EntryPoint::LongMode { entry, zero_page } = ep else {
            panic!("a bzImage is entered in long mode: {ep}");
        };
        assert_eq!(entry, HIMEM_START + STARTUP_64_OFFSET);
        let zp: linux_loader::loader::bootparam::boot_params =
            mem.read_obj(GuestAddress(zero_page)).unwrap();
        let hdr = zp.hdr;
        assert_ne!({ hdr.xloadflags } & XLF_KERNEL_64, 0);
        assert!({ hdr.version } >= MIN_BOOT_PROTOCOL);
        assert_eq!(hdr.type_of_loader, 0xff);
        assert_eq!({ hdr.code32_start }, 0x10_0000);
        let (rd, rd_size) = ({ hdr.ramdisk_image }, { hdr.ramdisk_size });
        assert_eq!(rd_size, 10_000);
        assert_eq!(u64::from(rd) % 4096, 0);
        assert!(u64::from(rd) + 10_000 <= size, "initrd inside RAM");
        assert!(rd <= { hdr.initrd_addr_max });
        let mut rd_bytes = vec![0u8; 10_000];
        mem.read_slice(&mut rd_bytes, GuestAddress(u64::from(rd)))
            .unwrap();
        assert!(rd_bytes.iter().all(|b| *b == 0x5a));
        let mut cmdline = [0u8; 23];
        let cmdline_ptr = hdr.cmd_line_ptr;
        mem.read_slice(&mut cmdline, GuestAddress(u64::from(cmdline_ptr)))
            .unwrap();
        assert_eq!(&cmdline, b"console=ttyS0 panic=-1\0");
        assert_eq!(zp.e820_entries, 2);
        // The page tables are in place too.
        let pml4: u64 = mem.read_obj(GuestAddress(PML4_START)).unwrap();
        assert_eq!(pml4 & 1, 1);
        assert!(mem.last_addr().0 < size);
        assert_eq!(zp.as_slice().len(), 4096);
    }

    #[test]
    fn non_kernels_and_missing_files_are_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let mem = memory::create_guest_memory(16 << 20).unwrap();
        let text = dir.path().join("text");
        std::fs::write(&text, vec![b'x'; 4096]).unwrap();
        for path in [text.as_path(), &dir.path().join("missing")] {
            let err = load_linux(
                &mem,
                16 << 20,
                &BootConfig {
                    kernel: path,
                    initrd: None,
                    cmdline: "",
                    acpi: None,
                },
            )
            .unwrap_err();
            assert!(err.is_bad_input(), "{err}");
        }
    }

    #[test]
    fn command_line_capacity_follows_the_kernel_header() {
        let h = setup_header {
            version: 0x20f,
            cmdline_size: 2047,
            ..Default::default()
        };
        assert_eq!(cmdline_capacity(Some(&h)), 2048);
        let old = setup_header {
            version: 0x205,
            ..Default::default()
        };
        assert_eq!(cmdline_capacity(Some(&old)), 256);
        assert_eq!(cmdline_capacity(None), CMDLINE_MAX_SIZE);
    }
}
