//! Checks on the executables that go into an initramfs (no libc, no loader there).

use object::read::elf::{ElfFile64, ProgramHeader};
use object::{elf, Endianness};

/// Ok if `bytes` is a 64-bit x86-64 ELF executable that needs no program interpreter
/// (statically linked, including static-pie).
pub fn check_static_executable(bytes: &[u8]) -> Result<(), String> {
    let file = ElfFile64::<Endianness>::parse(bytes)
        .map_err(|_| "not a 64-bit ELF executable".to_owned())?;
    let endian = file.endian();
    if file.elf_header().e_machine.get(endian) != elf::EM_X86_64 {
        return Err("not an x86-64 executable".into());
    }
    let dynamic = file
        .elf_program_headers()
        .iter()
        .any(|ph| ph.p_type(endian) == elf::PT_INTERP);
    if dynamic {
        return Err("dynamically linked (it needs a program interpreter and libc, which the initramfs does not have); build it with -C target-feature=+crt-static".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn refuses_non_elf() {
        assert!(super::check_static_executable(b"#!/bin/sh\n").is_err());
    }

    #[test]
    fn refuses_dynamic_executables() {
        // The test binary itself is dynamically linked against glibc.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let err = super::check_static_executable(&me).unwrap_err();
        assert!(err.contains("dynamically linked"), "{err}");
    }
}
