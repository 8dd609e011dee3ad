//! x86_64 specifics: the guest memory map, boot-time CPU state (registers, GDT, page tables,
//! CPUID, MSRs, local APIC), the Linux zero page and the PVH start info.

pub mod acpi;
pub mod boot_params;
pub mod cpuid;
pub mod gdt;
pub mod lapic;
pub mod layout;
pub mod msr;
pub mod pvh;
pub mod regs;
