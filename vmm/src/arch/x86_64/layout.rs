//! Guest physical memory map of a NullOS micro-VM (x86_64).
//!
//! ```text
//! 0x0000_0500  GDT (5 entries)            0x0000_0520  IDT (empty, limit 0)
//! 0x0000_6000  PVH hvm_start_info, 0x6040 its module list (initrd), 0x6080 its memory map
//! 0x0000_7000  zero page (boot_params)    0x0000_8ff0  boot stack top
//! 0x0000_9000  PML4, 0xa000 PDPT, 0xb000..0xf000 four page directories (identity map 0..4 GiB)
//! 0x0002_0000  kernel command line (up to CMDLINE_MAX_SIZE)
//! 0x0009_fc00  EBDA: not RAM from here up to 1 MiB (legacy VGA/BIOS hole)
//! 0x0010_0000  bzImage protected-mode kernel (its code32_start); initrd at the top of low RAM
//! 0xc000_0000  MMIO gap up to 4 GiB (devices, LAPIC 0xfee0_0000, IOAPIC 0xfec0_0000, KVM TSS)
//! 0x1_0000_0000  RAM above the gap when the guest has more than 3 GiB
//! ```

/// Global descriptor table.
pub const GDT_START: u64 = 0x500;
/// Interrupt descriptor table (empty: the kernel installs its own before enabling interrupts).
pub const IDT_START: u64 = 0x520;
/// PVH `hvm_start_info` handed to the kernel in `ebx` (56 bytes).
pub const PVH_START_INFO_START: u64 = 0x6000;
/// PVH module list (one `hvm_modlist_entry`, the initrd).
pub const PVH_MODLIST_START: u64 = 0x6040;
/// PVH memory map (`hvm_memmap_table_entry`s, 24 bytes each, up to the zero page).
pub const PVH_MEMMAP_START: u64 = 0x6080;
/// The zero page (`struct boot_params`) handed to the kernel in `rsi`.
pub const ZERO_PAGE_START: u64 = 0x7000;
/// Initial stack pointer.
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// Level-4 page map; the PDPT and page directories follow it page by page.
pub const PML4_START: u64 = 0x9000;
/// Page-directory-pointer table.
pub const PDPTE_START: u64 = 0xa000;
/// First of the page directories (one per identity-mapped GiB).
pub const PDE_START: u64 = 0xb000;
/// GiBs identity-mapped with 2 MiB pages before the kernel runs (all of the 32-bit space).
pub const IDENTITY_MAPPED_GIB: u64 = 4;
/// Kernel command line.
pub const CMDLINE_START: u64 = 0x2_0000;
/// Largest command line we place (the kernel's own limit, `cmdline_size`, may be smaller).
pub const CMDLINE_MAX_SIZE: usize = 0x1_0000;
/// Start of the extended BIOS data area: RAM in the e820 map stops here below 1 MiB.
pub const EBDA_START: u64 = 0x9_fc00;
/// First byte of "high" memory, where protected-mode kernels load.
pub const HIMEM_START: u64 = 0x10_0000;
/// Start of the 32-bit MMIO gap (no RAM from here to 4 GiB).
pub const MMIO_GAP_START: u64 = 0xc000_0000;
/// End of the 32-bit MMIO gap.
pub const MMIO_GAP_END: u64 = 1 << 32;
/// KVM's three-page TSS region for real-mode emulation on Intel (inside the MMIO gap).
pub const KVM_TSS_ADDRESS: u64 = 0xfffb_d000;
/// KVM's identity-map page for real-mode emulation on Intel (just below the TSS).
pub const KVM_IDENTITY_MAP_ADDRESS: u64 = 0xfffb_c000;
/// ACPI tables (RSDP first): in the BIOS area below 1 MiB, which is not RAM in the e820 map and
/// where Linux also scans for the RSDP.
pub const ACPI_START: u64 = 0xe_0000;
/// End of the ACPI table region.
pub const ACPI_END: u64 = HIMEM_START;
/// Local APIC base (the architectural default).
pub const LAPIC_ADDRESS: u32 = 0xfee0_0000;
/// The in-kernel IOAPIC's base.
pub const IOAPIC_ADDRESS: u32 = 0xfec0_0000;
/// First virtio-mmio register window; device `i` is at `VIRTIO_MMIO_BASE + i * VIRTIO_MMIO_SIZE`.
pub const VIRTIO_MMIO_BASE: u64 = 0xd000_0000;
/// Size of one virtio-mmio window.
pub const VIRTIO_MMIO_SIZE: u64 = 0x1000;
/// GSI (IOAPIC pin) of the first virtio-mmio device; device `i` uses `VIRTIO_GSI_BASE + i`.
pub const VIRTIO_GSI_BASE: u32 = 5;
/// Highest IOAPIC pin (KVM's IOAPIC has 24).
pub const MAX_GSI: u32 = 23;
