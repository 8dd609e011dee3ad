//! Is an executable fit for an initramfs, which has no libc and no dynamic loader?
//!
//! The check reads only the ELF file header and the program header table, with every offset
//! and count bounded by the input, rather than using the `object` crate: it is a few dozen
//! lines, and the node's init links this crate, so it stays small.

/// `e_ident[EI_CLASS]` of a 64-bit ELF.
const ELFCLASS64: u8 = 2;
/// `e_ident[EI_DATA]`: little-endian.
const ELFDATA2LSB: u8 = 1;
/// `e_ident[EI_DATA]`: big-endian.
const ELFDATA2MSB: u8 = 2;
/// `e_type`: executable.
const ET_EXEC: u16 = 2;
/// `e_type`: shared object (how static-pie executables are typed).
const ET_DYN: u16 = 3;
/// `e_machine`: x86-64.
const EM_X86_64: u16 = 62;
/// A program header naming the program interpreter (the dynamic loader).
pub const PT_INTERP: u32 = 3;
/// A loadable segment.
pub const PT_LOAD: u32 = 1;
/// Size of the ELF64 file header.
const EHDR_LEN: usize = 64;
/// Size of one ELF64 program header.
const PHDR_LEN: usize = 56;
/// `e_phnum` that means "the count is in section header 0": never so for our executables.
const PN_XNUM: u16 = 0xffff;

/// Why a file cannot run as-is in an initramfs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElfError {
    /// No ELF magic, not 64-bit, or no known byte order.
    #[error("not a 64-bit ELF executable")]
    NotElf64,
    /// A 64-bit ELF whose headers do not hold together.
    #[error("not a 64-bit ELF executable ({0})")]
    Malformed(&'static str),
    /// An ELF that is not an executable (a relocatable object, a core file).
    #[error("not an executable (ELF type {0})")]
    NotExecutable(u16),
    /// An executable for another machine.
    #[error("not an x86-64 executable")]
    NotX86_64,
    /// It names a program interpreter.
    #[error("dynamically linked (it needs a program interpreter and libc, which the initramfs does not have); build it with -C target-feature=+crt-static")]
    Dynamic,
}

/// Ok if `bytes` is a 64-bit x86-64 ELF executable that needs no program interpreter
/// (statically linked, including static-pie).
pub fn check_static_executable(bytes: &[u8]) -> Result<(), ElfError> {
    let ident = bytes.get(..16).ok_or(ElfError::NotElf64)?;
    if ident.get(..4) != Some(b"\x7fELF".as_slice()) || ident.get(4) != Some(&ELFCLASS64) {
        return Err(ElfError::NotElf64);
    }
    let little = match ident.get(5) {
        Some(&ELFDATA2LSB) => true,
        Some(&ELFDATA2MSB) => false,
        _ => return Err(ElfError::NotElf64),
    };
    let field = Fields { bytes, little };
    if bytes.len() < EHDR_LEN {
        return Err(ElfError::Malformed("truncated file header"));
    }
    let e_type = field
        .u16(16)
        .ok_or(ElfError::Malformed("truncated file header"))?;
    if e_type != ET_EXEC && e_type != ET_DYN {
        return Err(ElfError::NotExecutable(e_type));
    }
    if field.u16(18) != Some(EM_X86_64) {
        return Err(ElfError::NotX86_64);
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (field.u64(32), field.u16(54), field.u16(56))
    else {
        return Err(ElfError::Malformed("truncated file header"));
    };
    if phnum == PN_XNUM {
        return Err(ElfError::Malformed("extended program header count"));
    }
    if phnum > 0 && usize::from(phentsize) != PHDR_LEN {
        return Err(ElfError::Malformed("program header size is not 56"));
    }
    let table = usize::try_from(phoff)
        .ok()
        .and_then(|start| Some((start, start.checked_add(usize::from(phnum) * PHDR_LEN)?)))
        .filter(|&(_, end)| end <= bytes.len())
        .ok_or(ElfError::Malformed(
            "program headers past the end of the file",
        ))?;
    let dynamic = (table.0..table.1)
        .step_by(PHDR_LEN)
        .any(|at| field.u32(at) == Some(PT_INTERP));
    if dynamic {
        return Err(ElfError::Dynamic);
    }
    Ok(())
}

/// Integers at offsets in the file's byte order; `None` past the end.
struct Fields<'a> {
    bytes: &'a [u8],
    little: bool,
}

impl Fields<'_> {
    fn array<const N: usize>(&self, at: usize) -> Option<[u8; N]> {
        self.bytes.get(at..at.checked_add(N)?)?.try_into().ok()
    }

    fn u16(&self, at: usize) -> Option<u16> {
        let a = self.array(at)?;
        Some(if self.little {
            u16::from_le_bytes(a)
        } else {
            u16::from_be_bytes(a)
        })
    }

    fn u32(&self, at: usize) -> Option<u32> {
        let a = self.array(at)?;
        Some(if self.little {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        })
    }

    fn u64(&self, at: usize) -> Option<u64> {
        let a = self.array(at)?;
        Some(if self.little {
            u64::from_le_bytes(a)
        } else {
            u64::from_be_bytes(a)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal little-endian ELF64 x86-64 executable header followed by program headers of
    /// the given types.
    fn fake_elf(p_types: &[u32]) -> Vec<u8> {
        let mut elf = vec![0u8; 64];
        elf[..8].copy_from_slice(b"\x7fELF\x02\x01\x01\x00");
        elf[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
        elf[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        elf[20..24].copy_from_slice(&1u32.to_le_bytes()); // e_version
        elf[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        elf[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
        elf[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        let phnum = u16::try_from(p_types.len()).unwrap();
        elf[56..58].copy_from_slice(&phnum.to_le_bytes());
        elf[58..60].copy_from_slice(&64u16.to_le_bytes()); // e_shentsize
        for &p_type in p_types {
            let mut ph = vec![0u8; 56];
            ph[..4].copy_from_slice(&p_type.to_le_bytes());
            elf.extend(ph);
        }
        elf
    }

    #[test]
    fn static_and_dynamic_executables_are_told_apart() {
        assert_eq!(
            check_static_executable(&fake_elf(&[PT_LOAD, PT_LOAD])),
            Ok(())
        );
        assert_eq!(
            check_static_executable(&fake_elf(&[PT_LOAD, PT_INTERP, PT_LOAD])),
            Err(ElfError::Dynamic)
        );
        // This test binary itself is dynamically linked (tests are not built crt-static).
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let err = check_static_executable(&me).unwrap_err();
        assert!(err.to_string().contains("dynamically linked"), "{err}");
        assert_eq!(
            check_static_executable(b"#!/bin/sh\n"),
            Err(ElfError::NotElf64)
        );
    }

    #[test]
    fn other_machines_types_and_broken_headers_are_refused() {
        let mut arm = fake_elf(&[PT_LOAD]);
        arm[18..20].copy_from_slice(&183u16.to_le_bytes());
        assert_eq!(check_static_executable(&arm), Err(ElfError::NotX86_64));
        let mut object = fake_elf(&[]);
        object[16..18].copy_from_slice(&1u16.to_le_bytes());
        assert_eq!(
            check_static_executable(&object),
            Err(ElfError::NotExecutable(1))
        );
        let mut elf32 = fake_elf(&[PT_LOAD]);
        elf32[4] = 1;
        assert_eq!(check_static_executable(&elf32), Err(ElfError::NotElf64));
        let full = fake_elf(&[PT_LOAD, PT_INTERP]);
        for len in [0, 15, 40, 64 + 56 + 10] {
            assert!(check_static_executable(&full[..len]).is_err(), "{len}");
        }
        let mut far = fake_elf(&[PT_LOAD]);
        far[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            check_static_executable(&far),
            Err(ElfError::Malformed(_))
        ));
        let mut many = fake_elf(&[PT_LOAD]);
        many[56..58].copy_from_slice(&PN_XNUM.to_le_bytes());
        assert!(matches!(
            check_static_executable(&many),
            Err(ElfError::Malformed(_))
        ));
    }
}
