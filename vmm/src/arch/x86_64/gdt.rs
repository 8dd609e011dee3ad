//! Global descriptor table entries and the KVM segment registers made from them.
//!
//! The Linux 64-bit boot protocol wants `__BOOT_CS` (selector 0x10) and `__BOOT_DS` (0x18); PVH
//! wants a flat 32-bit code segment (any selector). So the table is: null, 32-bit code, 64-bit
//! code, data, TSS.

// Descriptor fields are masked to their width before each narrowing cast.
#![allow(clippy::cast_possible_truncation)]

use kvm_bindings::kvm_segment;

/// 32-bit code segment selector index (0x08), for the PVH entry.
pub const PVH_CS_INDEX: u16 = 1;
/// Code segment selector index (`__BOOT_CS` = 0x10).
pub const BOOT_CS_INDEX: u16 = 2;
/// Data segment selector index (`__BOOT_DS` = 0x18).
pub const BOOT_DS_INDEX: u16 = 3;
/// Task state segment selector index.
pub const BOOT_TSS_INDEX: u16 = 4;

/// Builds a descriptor from its access/flags word (`0xF0FF` bits used), base and 20-bit limit.
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    let base = base as u64;
    let limit = limit as u64;
    ((base & 0xff00_0000) << (56 - 24))
        | (((flags as u64) & 0x0000_f0ff) << 40)
        | ((limit & 0x000f_0000) << (48 - 16))
        | ((base & 0x00ff_ffff) << 16)
        | (limit & 0x0000_ffff)
}

/// The boot GDT: null, 32-bit code (D=1), 64-bit code (L=1), flat data, 32-bit busy TSS.
pub const fn boot_gdt() -> [u64; 5] {
    [
        0,
        gdt_entry(0xc09b, 0, 0xfffff), // code: G, D, present, DPL0, execute/read, accessed
        gdt_entry(0xa09b, 0, 0xfffff), // code: G, L, present, DPL0, execute/read, accessed
        gdt_entry(0xc093, 0, 0xfffff), // data: G, D/B, present, DPL0, read/write, accessed
        gdt_entry(0x808b, 0, 0xfffff), // TSS: G, present, 32-bit busy TSS (VMX wants a usable TR)
    ]
}

fn base(entry: u64) -> u64 {
    ((entry & 0xff00_0000_0000_0000) >> 32) | ((entry & 0x0000_00ff_ffff_0000) >> 16)
}

fn limit(entry: u64) -> u32 {
    let limit = (((entry >> 32) & 0x000f_0000) | (entry & 0x0000_ffff)) as u32;
    if granularity(entry) == 1 {
        // Page granular: KVM takes the byte limit.
        (limit << 12) | 0xfff
    } else {
        limit
    }
}

fn granularity(entry: u64) -> u8 {
    ((entry >> 55) & 1) as u8
}

/// The KVM segment register for descriptor `entry` at GDT slot `index`.
pub fn segment_from_entry(entry: u64, index: u16) -> kvm_segment {
    let present = ((entry >> 47) & 1) as u8;
    kvm_segment {
        base: base(entry),
        limit: limit(entry),
        selector: index * 8,
        type_: ((entry >> 40) & 0xf) as u8,
        present,
        dpl: ((entry >> 45) & 0x3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g: granularity(entry),
        avl: ((entry >> 52) & 1) as u8,
        unusable: u8::from(present == 0),
        padding: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_match_the_well_known_encodings() {
        let gdt = boot_gdt();
        assert_eq!(gdt[1], 0x00cf_9b00_0000_ffff);
        assert_eq!(gdt[2], 0x00af_9b00_0000_ffff);
        assert_eq!(gdt[3], 0x00cf_9300_0000_ffff);
        assert_eq!(gdt[4], 0x008f_8b00_0000_ffff);
    }

    #[test]
    fn code_segment_is_64_bit_ring_0_with_byte_limit() {
        let cs = segment_from_entry(boot_gdt()[2], BOOT_CS_INDEX);
        assert_eq!(cs.selector, 0x10);
        assert_eq!(
            (cs.l, cs.db, cs.dpl, cs.present, cs.s, cs.g),
            (1, 0, 0, 1, 1, 1)
        );
        assert_eq!(cs.type_, 0xb);
        assert_eq!(cs.limit, 0xffff_ffff);
        assert_eq!(cs.unusable, 0);
    }

    #[test]
    fn pvh_code_segment_is_flat_32_bit() {
        let cs = segment_from_entry(boot_gdt()[1], PVH_CS_INDEX);
        assert_eq!(cs.selector, 0x08);
        assert_eq!((cs.l, cs.db, cs.base, cs.limit), (0, 1, 0, 0xffff_ffff));
        assert_eq!(cs.type_, 0xb);
    }

    #[test]
    fn base_and_limit_round_trip_through_the_encoding() {
        let entry = gdt_entry(0x0093, 0x1234_5678, 0xabcde);
        let seg = segment_from_entry(entry, 3);
        assert_eq!(seg.base, 0x1234_5678);
        assert_eq!(seg.limit, 0xabcde, "byte granular limit is kept as is");
        assert_eq!(seg.selector, 0x18);
    }

    #[test]
    fn null_descriptor_is_unusable() {
        assert_eq!(segment_from_entry(0, 0).unusable, 1);
    }
}
