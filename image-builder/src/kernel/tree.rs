//! An unpacked kernel package (`dpkg-deb -R pkg.deb dir`, or `-x`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{is_module_file, parse_control, single_release, KernelError, KernelSource, ModuleFile};

pub(super) fn open(root: &Path) -> Result<KernelSource, KernelError> {
    let layout = |problem: String| KernelError::Layout {
        path: root.to_owned(),
        problem,
    };
    let boot = root.join("boot");
    let release =
        single_release(read_dir_names(&boot)?.iter().map(String::as_str)).map_err(layout)?;
    let read =
        |p: PathBuf| std::fs::read(&p).map_err(|source| KernelError::Read { path: p, source });
    let bzimage = read(boot.join(format!("vmlinuz-{release}")))?;
    let config =
        String::from_utf8_lossy(&read(boot.join(format!("config-{release}")))?).into_owned();
    let (package, version) = match std::fs::read_to_string(root.join("DEBIAN/control")) {
        Ok(text) => parse_control(&text),
        Err(_) => (None, None),
    };
    let modules_root = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|m| root.join(m).join(&release).join("kernel"))
        .find(|p| p.is_dir())
        .ok_or_else(|| layout(format!("no lib/modules/{release}/kernel folder")))?;
    let mut modules = BTreeMap::new();
    walk(&modules_root, &modules_root, &mut modules)?;
    Ok(KernelSource {
        release,
        package: package.unwrap_or_else(|| "unknown".into()),
        version: version.unwrap_or_else(|| "unknown".into()),
        bzimage,
        config,
        modules,
    })
}

fn read_dir_names(dir: &Path) -> Result<Vec<String>, KernelError> {
    let entries = std::fs::read_dir(dir).map_err(|source| KernelError::Read {
        path: dir.to_owned(),
        source,
    })?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| KernelError::Read {
            path: dir.to_owned(),
            source,
        })?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    Ok(names)
}

fn walk(
    base: &Path,
    dir: &Path,
    out: &mut BTreeMap<String, ModuleFile>,
) -> Result<(), KernelError> {
    for name in read_dir_names(dir)? {
        let path = dir.join(&name);
        if path.is_dir() {
            walk(base, &path, out)?;
        } else if is_module_file(&name) {
            if let Ok(rel) = path.strip_prefix(base) {
                out.insert(rel.to_string_lossy().into_owned(), ModuleFile::OnDisk(path));
            }
        }
    }
    Ok(())
}
