//! A kernel module's ELF `.modinfo` (read by image-builder from kernel packages): never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modindex::ModuleInfo;

fuzz_target!(|data: &[u8]| {
    let _ = ModuleInfo::from_elf(data, "fuzz");
    let _ = ModuleInfo::from_modinfo(data, "fuzz");
});
