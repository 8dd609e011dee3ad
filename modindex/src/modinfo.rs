//! The `.modinfo` section of a kernel module: NUL-separated `key=value` strings.

use object::read::elf::ElfFile64;
use object::{Endianness, Object, ObjectSection};

/// Most bytes of `.modinfo` we read; real modules have a few KiB at most.
pub const MAX_MODINFO_BYTES: usize = 1 << 20;

/// Why a module's metadata could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ModinfoError {
    /// The bytes are not a 64-bit ELF object.
    #[error("not a 64-bit ELF kernel module")]
    ParseElf(#[source] object::Error),
    /// The ELF has no `.modinfo` section.
    #[error("no .modinfo section (not a kernel module?)")]
    MissingModinfo,
    /// The section's data could not be read or is too large.
    #[error("unreadable .modinfo section")]
    ReadModinfo(#[source] object::Error),
    /// The section is larger than [`MAX_MODINFO_BYTES`].
    #[error(".modinfo section is {0} bytes, more than the {MAX_MODINFO_BYTES} allowed")]
    TooLarge(usize),
    /// The module names itself nothing and no file name was given.
    #[error("module has no name= entry")]
    MissingName,
}

/// What the image builder needs to know about one module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleInfo {
    /// Normalized name (`-` as `_`).
    pub name: String,
    /// Modules this one needs loaded first (`depends=`), normalized.
    pub depends: Vec<String>,
    /// Modules to load before this one if present (`softdep=pre:`), normalized.
    pub softdeps_pre: Vec<String>,
    /// Alias patterns (`alias=`), matched against device modaliases.
    pub aliases: Vec<String>,
}

impl ModuleInfo {
    /// Reads the metadata of an ELF module image. `fallback_name` (the file stem) is used when
    /// `.modinfo` carries no `name=`.
    pub fn from_elf(bytes: &[u8], fallback_name: &str) -> Result<ModuleInfo, ModinfoError> {
        let elf = ElfFile64::<Endianness>::parse(bytes).map_err(ModinfoError::ParseElf)?;
        let section = elf
            .section_by_name(".modinfo")
            .ok_or(ModinfoError::MissingModinfo)?;
        let size = usize::try_from(section.size()).unwrap_or(usize::MAX);
        if size > MAX_MODINFO_BYTES {
            return Err(ModinfoError::TooLarge(size));
        }
        let data = section.data().map_err(ModinfoError::ReadModinfo)?;
        ModuleInfo::from_modinfo(data, fallback_name)
    }

    /// Parses the raw `.modinfo` section contents.
    pub fn from_modinfo(data: &[u8], fallback_name: &str) -> Result<ModuleInfo, ModinfoError> {
        if data.len() > MAX_MODINFO_BYTES {
            return Err(ModinfoError::TooLarge(data.len()));
        }
        let mut name = None;
        let mut info = ModuleInfo {
            name: String::new(),
            depends: Vec::new(),
            softdeps_pre: Vec::new(),
            aliases: Vec::new(),
        };
        for entry in data.split(|&b| b == 0) {
            let Ok(entry) = std::str::from_utf8(entry) else {
                continue; // Non-UTF-8 values (descriptions, authors) do not matter here.
            };
            let Some((key, value)) = entry.split_once('=') else {
                continue;
            };
            match key {
                "name" if !value.is_empty() => name = Some(crate::normalize_name(value)),
                "depends" => info.depends.extend(
                    value
                        .split(',')
                        .filter(|d| !d.is_empty())
                        .map(crate::normalize_name),
                ),
                "alias" if !value.is_empty() => info.aliases.push(value.to_owned()),
                "softdep" => info.softdeps_pre.extend(parse_softdep_pre(value)),
                _ => {}
            }
        }
        info.name = match name {
            Some(name) => name,
            None if !fallback_name.is_empty() => crate::normalize_name(fallback_name),
            None => return Err(ModinfoError::MissingName),
        };
        info.depends.sort();
        info.depends.dedup();
        info.softdeps_pre.sort();
        info.softdeps_pre.dedup();
        Ok(info)
    }
}

/// `softdep=pre: a b post: c` → `[a, b]`.
fn parse_softdep_pre(value: &str) -> Vec<String> {
    let mut pre = Vec::new();
    let mut in_pre = false;
    for word in value.split_whitespace() {
        match word {
            "pre:" => in_pre = true,
            "post:" => in_pre = false,
            module if in_pre => pre.push(crate::normalize_name(module)),
            _ => {}
        }
    }
    pre
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_modinfo_entries() {
        let data = b"alias=virtio:d00000001v*\0depends=net_failover,virtio\0softdep=pre: crc32c-intel post: x\0\0name=virtio_net\0vermagic=6.1\0license=GPL\0";
        let info = ModuleInfo::from_modinfo(data, "ignored").unwrap();
        assert_eq!(info.name, "virtio_net");
        assert_eq!(info.depends, ["net_failover", "virtio"]);
        assert_eq!(info.softdeps_pre, ["crc32c_intel"]);
        assert_eq!(info.aliases, ["virtio:d00000001v*"]);
    }

    #[test]
    fn empty_depends_and_fallback_name() {
        let info = ModuleInfo::from_modinfo(b"depends=\0license=GPL", "my-mod").unwrap();
        assert_eq!(info.name, "my_mod");
        assert!(info.depends.is_empty());
        assert!(matches!(
            ModuleInfo::from_modinfo(b"license=GPL", ""),
            Err(ModinfoError::MissingName)
        ));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(matches!(
            ModuleInfo::from_elf(b"\x7fELF garbage", "x"),
            Err(ModinfoError::ParseElf(_))
        ));
        assert!(ModuleInfo::from_elf(&[], "x").is_err());
    }
}
