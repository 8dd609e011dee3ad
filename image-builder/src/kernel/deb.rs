//! A Debian kernel package read directly: `ar` archive → `control.tar.*` and `data.tar.*`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use super::{is_module_file, parse_control, single_release, KernelError, KernelSource, ModuleFile};

pub(super) fn open(path: &Path) -> Result<KernelSource, KernelError> {
    let deb_err = |problem: String| KernelError::Deb {
        path: path.to_owned(),
        problem,
    };
    let file = std::fs::File::open(path).map_err(|source| KernelError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut archive = ar::Archive::new(file);
    let mut control = None;
    let mut boot: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut modules_by_full_path: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    while let Some(member) = archive.next_entry() {
        let member = member.map_err(|e| deb_err(format!("bad ar member: {e}")))?;
        let name = String::from_utf8_lossy(member.header().identifier()).into_owned();
        let is_control = name.starts_with("control.tar");
        let is_data = name.starts_with("data.tar");
        if !is_control && !is_data {
            continue;
        }
        let reader = decompressor(&name, member).map_err(deb_err)?;
        let mut tar = tar::Archive::new(reader);
        let entries = tar.entries().map_err(|e| deb_err(format!("{name}: {e}")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| deb_err(format!("{name}: {e}")))?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let entry_path = entry
                .path()
                .map_err(|e| deb_err(format!("{name}: {e}")))?
                .to_string_lossy()
                .trim_start_matches("./")
                .to_owned();
            let wanted = if is_control {
                entry_path == "control"
            } else {
                entry_path.starts_with("boot/vmlinuz-")
                    || entry_path.starts_with("boot/config-")
                    || (entry_path.contains("lib/modules/") && is_module_file(&entry_path))
            };
            if !wanted {
                continue;
            }
            let mut bytes = Vec::new();
            entry
                .read_to_end(&mut bytes)
                .map_err(|e| deb_err(format!("{name}: {entry_path}: {e}")))?;
            if is_control {
                control = Some(String::from_utf8_lossy(&bytes).into_owned());
            } else if let Some(b) = entry_path.strip_prefix("boot/") {
                boot.insert(b.to_owned(), bytes);
            } else {
                modules_by_full_path.insert(entry_path, bytes);
            }
        }
    }
    let release = single_release(boot.keys().map(String::as_str)).map_err(deb_err)?;
    let bzimage = boot
        .remove(&format!("vmlinuz-{release}"))
        .ok_or_else(|| deb_err("no bzImage".into()))?;
    let config = boot
        .remove(&format!("config-{release}"))
        .map(|c| String::from_utf8_lossy(&c).into_owned())
        .ok_or_else(|| deb_err(format!("no boot/config-{release}")))?;
    let prefixes = [
        format!("lib/modules/{release}/kernel/"),
        format!("usr/lib/modules/{release}/kernel/"),
    ];
    let modules = modules_by_full_path
        .into_iter()
        .filter_map(|(full, bytes)| {
            prefixes
                .iter()
                .find_map(|p| full.strip_prefix(p.as_str()))
                .map(|rel| (rel.to_owned(), ModuleFile::InMemory(bytes)))
        })
        .collect();
    let (package, version) = control
        .as_deref()
        .map(parse_control)
        .unwrap_or((None, None));
    Ok(KernelSource {
        release,
        package: package.unwrap_or_else(|| "unknown".into()),
        version: version.unwrap_or_else(|| "unknown".into()),
        bzimage,
        config,
        modules,
    })
}

fn decompressor<'a>(name: &str, r: impl Read + 'a) -> Result<Box<dyn Read + 'a>, String> {
    Ok(match name.rsplit('.').next() {
        Some("xz") => Box::new(xz2::read::XzDecoder::new(r)),
        Some("gz") => Box::new(flate2::read::GzDecoder::new(r)),
        Some("zst") => Box::new(zstd::stream::Decoder::new(r).map_err(|e| format!("{name}: {e}"))?),
        Some("tar") => Box::new(r),
        _ => return Err(format!("unsupported member compression: {name}")),
    })
}
