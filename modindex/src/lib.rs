//! Kernel module metadata for NullOS images.
//!
//! Debian's kernel packages ship no `modules.dep` and the images carry no `depmod`, `modprobe` or
//! `udev`, so the image builder reads every chosen `.ko`'s `.modinfo` section itself, computes the
//! dependency closure and writes a small text index into the initramfs. `init` reads that index,
//! matches `/sys` modaliases against its alias patterns and loads modules in dependency order.
//!
//! Layering, all free of I/O so it is tested with plain buffers:
//! - [`modinfo`]: parse the `.modinfo` section of one module ELF image.
//! - [`glob`]: the `fnmatch(3)`-style matcher the kernel's alias patterns are written for.
//! - [`index`]: the index format (parse / emit, bounded), closure and load order.

pub mod glob;
pub mod index;
pub mod modinfo;

pub use index::{AliasEntry, IndexError, ModuleEntry, ModuleIndex};
pub use modinfo::{ModinfoError, ModuleInfo};

/// Normalizes a module name the way the kernel does: `-` and `_` are the same character.
pub fn normalize_name(name: &str) -> String {
    name.replace('-', "_")
}
