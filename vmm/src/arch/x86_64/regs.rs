//! Register state for entering a Linux kernel: long mode with paging and flat segments for the
//! 64-bit boot protocol, or 32-bit protected mode without paging for PVH.
//!
//! The pure builders (`boot_regs`, `pvh_regs`, `long_mode_sregs`, `protected_mode_sregs`,
//! `identity_page_tables`, `boot_fpu`) are unit-tested; `setup_*` apply them to a vCPU and write
//! the tables into guest memory.

use kvm_bindings::{kvm_fpu, kvm_regs, kvm_sregs};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::gdt::{self, BOOT_CS_INDEX, BOOT_DS_INDEX, BOOT_TSS_INDEX, PVH_CS_INDEX};
use super::layout::{
    BOOT_STACK_POINTER, GDT_START, IDENTITY_MAPPED_GIB, IDT_START, PDE_START, PDPTE_START,
    PML4_START,
};

/// Errors while setting up boot registers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `KVM_GET_SREGS` failed.
    #[error("get special registers")]
    GetSregs(#[source] kvm_ioctls::Error),
    /// `KVM_SET_SREGS` failed.
    #[error("set special registers")]
    SetSregs(#[source] kvm_ioctls::Error),
    /// `KVM_SET_REGS` failed.
    #[error("set general registers")]
    SetRegs(#[source] kvm_ioctls::Error),
    /// `KVM_SET_FPU` failed.
    #[error("set FPU state")]
    SetFpu(#[source] kvm_ioctls::Error),
    /// Writing the GDT, IDT or page tables into guest memory failed.
    #[error("write boot tables into guest memory")]
    WriteTables(#[source] vm_memory::GuestMemoryError),
}

const X86_CR0_PE: u64 = 1 << 0;
const X86_CR0_ET: u64 = 1 << 4;
const X86_CR0_PG: u64 = 1 << 31;
const X86_CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
/// Page table entry bits: present, writable, and (in a page directory) 2 MiB page.
const PTE_PRESENT_RW: u64 = 0x3;
const PDE_2M_PAGE: u64 = 0x80;

/// General registers at the 64-bit entry: `rip` = entry, `rsi` = zero page, a small stack.
pub fn boot_regs(entry: u64, zero_page: u64) -> kvm_regs {
    kvm_regs {
        rflags: 0x2, // reserved bit 1; interrupts off
        rip: entry,
        rsp: BOOT_STACK_POINTER,
        rbp: BOOT_STACK_POINTER,
        rsi: zero_page,
        ..Default::default()
    }
}

/// General registers at a PVH entry: `rip` = 32-bit entry, `rbx` = `hvm_start_info`.
pub fn pvh_regs(entry: u64, start_info: u64) -> kvm_regs {
    kvm_regs {
        rflags: 0x2,
        rip: entry,
        rbx: start_info,
        ..Default::default()
    }
}

/// FPU at its reset values (x87 control word, SSE control/status).
pub fn boot_fpu() -> kvm_fpu {
    kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    }
}

/// Turns `sregs` into long mode: the boot GDT's segments, an empty IDT, PAE paging from
/// [`PML4_START`], `EFER.LME|LMA`.
pub fn long_mode_sregs(sregs: &mut kvm_sregs) {
    flat_segments(sregs, BOOT_CS_INDEX);
    sregs.cr3 = PML4_START;
    sregs.cr4 |= X86_CR4_PAE;
    sregs.cr0 |= X86_CR0_PE | X86_CR0_ET | X86_CR0_PG;
    sregs.efer |= EFER_LME | EFER_LMA;
}

/// Turns `sregs` into what the PVH boot ABI specifies: 32-bit protected mode, paging off, flat
/// 4 GiB code and data segments, a usable TR, CR4 and EFER clear.
pub fn protected_mode_sregs(sregs: &mut kvm_sregs) {
    flat_segments(sregs, PVH_CS_INDEX);
    sregs.cr0 = (sregs.cr0 | X86_CR0_PE | X86_CR0_ET) & !X86_CR0_PG;
    sregs.cr3 = 0;
    sregs.cr4 = 0;
    sregs.efer = 0;
}

/// The boot GDT and an empty IDT; CS from GDT slot `code_index`, the data segments and TR from
/// theirs.
fn flat_segments(sregs: &mut kvm_sregs, code_index: u16) {
    let table = gdt::boot_gdt();
    let code = gdt::segment_from_entry(table[usize::from(code_index)], code_index);
    let data = gdt::segment_from_entry(table[usize::from(BOOT_DS_INDEX)], BOOT_DS_INDEX);
    let tss = gdt::segment_from_entry(table[usize::from(BOOT_TSS_INDEX)], BOOT_TSS_INDEX);

    sregs.gdt.base = GDT_START;
    sregs.gdt.limit = gdt_limit();
    sregs.idt.base = IDT_START;
    sregs.idt.limit = 0;
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = tss;
}

fn gdt_limit() -> u16 {
    // 5 entries of 8 bytes, minus one: 39.
    5 * 8 - 1
}

/// The PML4, PDPT and page directories identity-mapping the first [`IDENTITY_MAPPED_GIB`] GiB
/// with 2 MiB pages, as one contiguous byte image to be written at [`PML4_START`].
pub fn identity_page_tables() -> Vec<u8> {
    let pages = 2 + IDENTITY_MAPPED_GIB;
    let mut entries = vec![0u64; usize::try_from(pages * 512).unwrap_or(0)];
    entries[0] = PDPTE_START | PTE_PRESENT_RW;
    for gib in 0..IDENTITY_MAPPED_GIB {
        let pdpt_slot = 512 + gib;
        entries[slot(pdpt_slot)] = (PDE_START + gib * 0x1000) | PTE_PRESENT_RW;
        for i in 0..512u64 {
            let pde_slot = 1024 + gib * 512 + i;
            let phys = ((gib * 512 + i) << 21) | PTE_PRESENT_RW | PDE_2M_PAGE;
            entries[slot(pde_slot)] = phys;
        }
    }
    entries.iter().flat_map(|e| e.to_le_bytes()).collect()
}

fn slot(i: u64) -> usize {
    // Page-table slots are below 6 * 512: always fit.
    usize::try_from(i).unwrap_or(usize::MAX)
}

/// Writes the GDT, the (empty) IDT and the identity page tables into guest memory.
pub fn write_boot_tables(mem: &GuestMemoryMmap) -> Result<(), Error> {
    let gdt: Vec<u8> = gdt::boot_gdt()
        .iter()
        .flat_map(|e| e.to_le_bytes())
        .collect();
    mem.write_slice(&gdt, GuestAddress(GDT_START))
        .map_err(Error::WriteTables)?;
    mem.write_obj(0u64, GuestAddress(IDT_START))
        .map_err(Error::WriteTables)?;
    mem.write_slice(&identity_page_tables(), GuestAddress(PML4_START))
        .map_err(Error::WriteTables)
}

/// Puts `vcpu` in 64-bit mode at `entry` with `rsi` pointing at the zero page.
pub fn setup_long_mode(vcpu: &VcpuFd, entry: u64, zero_page: u64) -> Result<(), Error> {
    let mut sregs = vcpu.get_sregs().map_err(Error::GetSregs)?;
    long_mode_sregs(&mut sregs);
    vcpu.set_sregs(&sregs).map_err(Error::SetSregs)?;
    vcpu.set_regs(&boot_regs(entry, zero_page))
        .map_err(Error::SetRegs)?;
    vcpu.set_fpu(&boot_fpu()).map_err(Error::SetFpu)
}

/// Puts `vcpu` in 32-bit protected mode at the PVH `entry` with `ebx` pointing at
/// `hvm_start_info`.
pub fn setup_pvh(vcpu: &VcpuFd, entry: u64, start_info: u64) -> Result<(), Error> {
    let mut sregs = vcpu.get_sregs().map_err(Error::GetSregs)?;
    protected_mode_sregs(&mut sregs);
    vcpu.set_sregs(&sregs).map_err(Error::SetSregs)?;
    vcpu.set_regs(&pvh_regs(entry, start_info))
        .map_err(Error::SetRegs)?;
    vcpu.set_fpu(&boot_fpu()).map_err(Error::SetFpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(tables: &[u8], index: usize) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&tables[index * 8..index * 8 + 8]);
        u64::from_le_bytes(b)
    }

    #[test]
    fn page_tables_identity_map_four_gib_with_2m_pages() {
        let t = identity_page_tables();
        assert_eq!(t.len(), 6 * 4096);
        assert_eq!(entry(&t, 0), PDPTE_START | 3);
        assert_eq!(entry(&t, 1), 0, "only the first 512 GiB slot is used");
        for gib in 0..4 {
            assert_eq!(entry(&t, 512 + gib), (PDE_START + gib as u64 * 0x1000) | 3);
        }
        assert_eq!(entry(&t, 512 + 4), 0);
        assert_eq!(entry(&t, 1024), 0x83, "first 2 MiB page at 0");
        assert_eq!(entry(&t, 1025), 0x20_0000 | 0x83);
        // The LAPIC page (0xfee0_0000) lies in the last directory.
        let lapic_slot = 1024 + (0xfee0_0000u64 >> 21) as usize;
        assert_eq!(entry(&t, lapic_slot), 0xfee0_0000 | 0x83);
    }

    #[test]
    fn page_tables_fit_below_the_command_line() {
        let end = PML4_START + identity_page_tables().len() as u64;
        assert!(end <= super::super::layout::CMDLINE_START);
        assert_eq!(PDPTE_START, PML4_START + 0x1000);
        assert_eq!(PDE_START, PDPTE_START + 0x1000);
    }

    #[test]
    fn long_mode_sregs_enable_paging_and_64_bit_code() {
        let mut s = kvm_sregs::default();
        long_mode_sregs(&mut s);
        assert_eq!(s.cr0 & (X86_CR0_PE | X86_CR0_PG), X86_CR0_PE | X86_CR0_PG);
        assert_eq!(s.cr4 & X86_CR4_PAE, X86_CR4_PAE);
        assert_eq!(s.efer & (EFER_LME | EFER_LMA), EFER_LME | EFER_LMA);
        assert_eq!(s.cr3, PML4_START);
        assert_eq!((s.cs.selector, s.cs.l), (0x10, 1));
        assert_eq!((s.ds.selector, s.ss.selector), (0x18, 0x18));
        assert_eq!(s.gdt.limit, 39);
        assert_eq!(s.tr.type_, 0xb);
    }

    #[test]
    fn protected_mode_sregs_are_32_bit_without_paging() {
        let mut s = kvm_sregs::default();
        long_mode_sregs(&mut s); // whatever came before is undone
        protected_mode_sregs(&mut s);
        assert_eq!(s.cr0 & (X86_CR0_PE | X86_CR0_PG), X86_CR0_PE);
        assert_eq!((s.cr3, s.cr4, s.efer), (0, 0, 0));
        assert_eq!((s.cs.selector, s.cs.l, s.cs.db), (0x08, 0, 1));
        assert_eq!((s.cs.base, s.cs.limit), (0, 0xffff_ffff));
        assert_eq!((s.ds.selector, s.ds.db, s.ds.limit), (0x18, 1, 0xffff_ffff));
        assert_eq!(s.tr.type_, 0xb);
        let r = pvh_regs(0x100_0000, 0x6000);
        assert_eq!((r.rip, r.rbx, r.rflags), (0x100_0000, 0x6000, 2));
    }

    #[test]
    fn boot_regs_point_rsi_at_the_zero_page_with_interrupts_off() {
        let r = boot_regs(0x10_0200, 0x7000);
        assert_eq!((r.rip, r.rsi, r.rflags), (0x10_0200, 0x7000, 2));
    }
}
