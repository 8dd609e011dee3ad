//! The release cache on the data disk: `releases/<version>/` at the root of the node's ext4
//! `NULLOS-DATA`, each a release folder as a release URL serves it (`release.manifest`,
//! `kernel`, `initrd`, `cmdline`).
//!
//! A cached release is a source like any other ([`DirSource`]): stage 0 verifies it in full
//! every time (signatures, profile, target, floor, digests), so a disk someone edited offline
//! can make stage 0 refuse a release but never boot an unsigned one. A release booted from the
//! stick or a URL is written here first ([`store`]: into `releases/.incoming-<version>/`,
//! synced, renamed into place, so a half-written release is never a candidate), and the cache
//! keeps only the good release and the one booting ([`prune`]). The node's `init` writes the
//! releases it downloads the same way.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub use crate::data_disk::Mounted;
use crate::verify::{Source, Verified, CMDLINE_FILE, INITRD_FILE, KERNEL_FILE, MANIFEST_FILE};

/// The cache's folder at the data disk's root.
pub const CACHE_DIR: &str = "releases";
/// Where stage 0 mounts the data disk that holds the cache while it chooses and boots.
pub const MOUNT_POINT: &str = "/run/nullos/cache";
/// The prefix of a release being written.
const INCOMING: &str = ".incoming-";

/// Why the cache could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A file or folder of the cache.
    #[error("{}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError {
    let path = path.to_owned();
    move |source| CacheError::Io { path, source }
}

/// The data disk mounted at [`MOUNT_POINT`] while stage 0 reads and writes the cache and the
/// boot state.
pub fn mount(device: &Path) -> Result<Mounted, crate::data_disk::DataDiskError> {
    Mounted::mount_at(device, Path::new(MOUNT_POINT))
}

/// The cached releases under `root` (the data disk's root): `(version, folder)`, highest first.
/// Only real folders named by a decimal version count; anything else is ignored.
pub fn versions(root: &Path) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(root.join(CACHE_DIR)) else {
        return Vec::new();
    };
    let mut found: Vec<(u64, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let version = parse_version(&name)?;
            Some((version, e.path()))
        })
        .collect();
    found.sort_unstable_by_key(|(v, _)| std::cmp::Reverse(*v));
    found
}

/// A folder name that is a version: decimal digits, no sign, no leading zero.
pub fn parse_version(name: &str) -> Option<u64> {
    let canonical = !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_digit())
        && (name == "0" || !name.starts_with('0'));
    canonical.then(|| name.parse().ok()).flatten()
}

/// A cached release folder as a [`Source`]: regular files only, never through a symbolic link,
/// never more than asked for.
#[derive(Debug)]
pub struct DirSource {
    dir: PathBuf,
}

impl DirSource {
    /// The release in `dir`.
    pub fn new(dir: &Path) -> DirSource {
        DirSource {
            dir: dir.to_owned(),
        }
    }

    fn open_file(&self, name: &str) -> Result<(File, u64), String> {
        let path = self.dir.join(name);
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let meta = file
            .metadata()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if !meta.is_file() {
            return Err(format!("{}: not a regular file", path.display()));
        }
        Ok((file, meta.len()))
    }
}

impl Source for DirSource {
    fn len(&mut self, name: &str, _max: u64) -> Result<u64, String> {
        self.open_file(name).map(|(_, len)| len)
    }

    fn read(&mut self, name: &str, max: u64) -> Result<Vec<u8>, String> {
        let (file, len) = self.open_file(name)?;
        if len > max {
            return Err(format!(
                "{len} bytes, more than the {max} allowed (not read)"
            ));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        file.take(max + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("{}: {e}", self.dir.join(name).display()))?;
        if bytes.len() as u64 > max {
            return Err(format!("more than the {max} bytes allowed"));
        }
        Ok(bytes)
    }

    /// The file itself, streamed into stage 0's buffer as it is hashed (no copy in between);
    /// [`verify`](crate::verify) takes the signed bytes and checks that it ends there.
    fn open(&mut self, name: &str, max: u64) -> Result<Box<dyn Read + '_>, String> {
        let (file, len) = self.open_file(name)?;
        if len > max {
            return Err(format!(
                "{len} bytes, more than the {max} allowed (not read)"
            ));
        }
        Ok(Box::new(file))
    }
}

/// Writes `verified` into the cache under `root`, unless that version is there already.
/// Returns whether it was written.
pub fn store(root: &Path, verified: &Verified) -> Result<bool, CacheError> {
    let version = verified.manifest.version;
    let cache = root.join(CACHE_DIR);
    let target = cache.join(version.to_string());
    if target.symlink_metadata().is_ok() {
        return Ok(false);
    }
    std::fs::create_dir_all(&cache).map_err(io(&cache))?;
    let incoming = cache.join(format!("{INCOMING}{version}"));
    remove(&incoming)?;
    std::fs::create_dir(&incoming).map_err(io(&incoming))?;
    for (name, bytes) in [
        (MANIFEST_FILE, &verified.manifest_file[..]),
        (KERNEL_FILE, &verified.kernel[..]),
        (INITRD_FILE, &verified.initrd[..]),
        (CMDLINE_FILE, &verified.cmdline[..]),
    ] {
        let path = incoming.join(name);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(io(&path))?;
        file.write_all(bytes).map_err(io(&path))?;
        file.sync_all().map_err(io(&path))?;
    }
    sync_dir(&incoming)?;
    std::fs::rename(&incoming, &target).map_err(io(&target))?;
    sync_dir(&cache)?;
    Ok(true)
}

/// Removes every cached release but `keep`, and any half-written one. Returns the versions
/// removed.
pub fn prune(root: &Path, keep: &[u64]) -> Result<Vec<u64>, CacheError> {
    let cache = root.join(CACHE_DIR);
    let Ok(entries) = std::fs::read_dir(&cache) else {
        return Ok(Vec::new());
    };
    let mut removed = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let version = parse_version(&name);
        let stale = name.starts_with(INCOMING) || version.is_some_and(|v| !keep.contains(&v));
        if stale {
            remove(&entry.path())?;
            removed.extend(version);
        }
    }
    removed.sort_unstable();
    if !removed.is_empty() {
        sync_dir(&cache)?;
    }
    Ok(removed)
}

/// Removes the cached release `version` (a copy that no longer verifies).
pub fn discard(root: &Path, version: u64) -> Result<(), CacheError> {
    let cache = root.join(CACHE_DIR);
    remove(&cache.join(version.to_string()))?;
    sync_dir(&cache)
}

/// Removes `path` (a folder, or anything planted in its place), never following a link.
fn remove(path: &Path) -> Result<(), CacheError> {
    match path.symlink_metadata() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(path)(e)),
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path).map_err(io(path)),
        Ok(_) => std::fs::remove_file(path).map_err(io(path)),
    }
}

fn sync_dir(dir: &Path) -> Result<(), CacheError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

#[cfg(test)]
mod tests;
