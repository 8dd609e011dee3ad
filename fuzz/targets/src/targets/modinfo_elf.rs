//! A kernel module's ELF `.modinfo` (read by image-builder from kernel packages): never panic.

use modindex::ModuleInfo;

/// One input.
pub fn fuzz_one(data: &[u8]) {
    let _ = ModuleInfo::from_elf(data, "fuzz");
    let _ = ModuleInfo::from_modinfo(data, "fuzz");
}
