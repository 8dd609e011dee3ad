//! The initramfs as a file tree, written as a reproducible cpio (newc) archive.
//!
//! Reproducible means: entries sorted by path (parents first), uid/gid 0, inode numbers assigned
//! in that order, one fixed mtime for everything (`SOURCE_DATE_EPOCH`, else 0), permission bits
//! from the build description rather than from the build machine's files or umask.

use std::collections::BTreeMap;
use std::io::{Cursor, Read, Write};

/// Why the initramfs could not be assembled or read.
#[derive(Debug, thiserror::Error)]
pub enum InitrdError {
    /// A path is not absolute, has `..`, or is empty.
    #[error("bad initramfs path '{0}'")]
    BadPath(String),
    /// Two things want the same path.
    #[error("initramfs path '{0}' is added twice")]
    Duplicate(String),
    /// A file is larger than newc's 4 GiB field.
    #[error("initramfs file '{0}' is larger than 4 GiB")]
    TooLarge(String),
    /// Writing the archive failed.
    #[error("writing the cpio archive")]
    Write(#[source] std::io::Error),
    /// The archive could not be read.
    #[error("reading the cpio archive")]
    Read(#[source] std::io::Error),
}

/// One node of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A directory.
    Dir {
        /// Permission bits.
        mode: u32,
    },
    /// A regular file.
    File {
        /// Contents.
        data: Vec<u8>,
        /// Permission bits.
        mode: u32,
    },
    /// A character device (only `/dev/console`: the kernel opens it for PID 1 before `/init`
    /// runs, before devtmpfs is mounted).
    CharDev {
        /// Device major number.
        major: u32,
        /// Device minor number.
        minor: u32,
        /// Permission bits.
        mode: u32,
    },
}

/// The file tree of an initramfs.
#[derive(Debug, Default, Clone)]
pub struct InitrdTree {
    nodes: BTreeMap<String, Node>,
}

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFCHR: u32 = 0o020_000;

impl InitrdTree {
    /// An empty tree.
    pub fn new() -> InitrdTree {
        InitrdTree::default()
    }

    /// Adds a regular file (and its parent directories).
    pub fn add_file(&mut self, path: &str, data: Vec<u8>, mode: u32) -> Result<(), InitrdError> {
        if u32::try_from(data.len()).is_err() {
            return Err(InitrdError::TooLarge(path.to_owned()));
        }
        self.insert(path, Node::File { data, mode })
    }

    /// Adds a directory (and its parents). Adding an existing directory is fine.
    pub fn add_dir(&mut self, path: &str) -> Result<(), InitrdError> {
        let key = key(path)?;
        match self.nodes.get(&key) {
            Some(Node::Dir { .. }) => Ok(()),
            Some(_) => Err(InitrdError::Duplicate(path.to_owned())),
            None => self.insert(path, Node::Dir { mode: 0o755 }),
        }
    }

    /// Adds a character device node.
    pub fn add_char_device(
        &mut self,
        path: &str,
        major: u32,
        minor: u32,
        mode: u32,
    ) -> Result<(), InitrdError> {
        self.insert(path, Node::CharDev { major, minor, mode })
    }

    /// Paths in archive order, without the leading `/`.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.nodes.keys().map(String::as_str)
    }

    fn insert(&mut self, path: &str, node: Node) -> Result<(), InitrdError> {
        let key = key(path)?;
        let mut parent = String::new();
        let components: Vec<&str> = key.split('/').collect();
        for component in &components[..components.len() - 1] {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(component);
            match self.nodes.get(&parent) {
                Some(Node::Dir { .. }) => {}
                Some(_) => return Err(InitrdError::Duplicate(format!("/{parent}"))),
                None => {
                    self.nodes.insert(parent.clone(), Node::Dir { mode: 0o755 });
                }
            }
        }
        if self.nodes.contains_key(&key) {
            return Err(InitrdError::Duplicate(path.to_owned()));
        }
        self.nodes.insert(key, node);
        Ok(())
    }

    /// The uncompressed newc archive.
    pub fn to_cpio(&self, mtime: u32) -> Result<Vec<u8>, InitrdError> {
        let mut out = Vec::new();
        for (ino, (path, node)) in (1u32..).zip(&self.nodes) {
            let builder = cpio::newc::Builder::new(path)
                .ino(ino)
                .uid(0)
                .gid(0)
                .mtime(mtime);
            let (builder, data): (_, &[u8]) = match node {
                Node::Dir { mode } => (builder.mode(S_IFDIR | mode).nlink(2), &[]),
                Node::File { data, mode } => (builder.mode(S_IFREG | mode).nlink(1), data),
                Node::CharDev { major, minor, mode } => (
                    builder
                        .mode(S_IFCHR | mode)
                        .nlink(1)
                        .rdev_major(*major)
                        .rdev_minor(*minor),
                    &[],
                ),
            };
            let size =
                u32::try_from(data.len()).map_err(|_| InitrdError::TooLarge(path.clone()))?;
            let mut writer = builder.write(&mut out, size);
            writer.write_all(data).map_err(InitrdError::Write)?;
            writer.finish().map_err(InitrdError::Write)?;
        }
        cpio::newc::trailer(&mut out).map_err(InitrdError::Write)?;
        Ok(out)
    }
}

fn key(path: &str) -> Result<String, InitrdError> {
    let trimmed = path.trim_start_matches('/');
    let bad = !path.starts_with('/')
        || trimmed.is_empty()
        || trimmed.ends_with('/')
        || trimmed
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        return Err(InitrdError::BadPath(path.to_owned()));
    }
    Ok(trimmed.to_owned())
}

/// One entry of an archive, as listed by `inspect` and the tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    /// Path without the leading `/`.
    pub path: String,
    /// Full mode (type and permission bits).
    pub mode: u32,
    /// Size in bytes.
    pub size: u32,
    /// uid.
    pub uid: u32,
    /// mtime.
    pub mtime: u32,
    /// The first bytes of the file (up to 4), to recognise ELF executables and scripts.
    pub magic: Vec<u8>,
}

impl EntryInfo {
    /// A regular file with an execute bit.
    pub fn is_executable(&self) -> bool {
        self.mode & 0o170_000 == S_IFREG && self.mode & 0o111 != 0
    }
}

/// Lists the entries of an uncompressed newc archive.
pub fn list_entries(cpio_bytes: &[u8]) -> Result<Vec<EntryInfo>, InitrdError> {
    let mut cursor = Cursor::new(cpio_bytes);
    let mut entries = Vec::new();
    loop {
        let mut reader = cpio::NewcReader::new(cursor).map_err(InitrdError::Read)?;
        if reader.entry().is_trailer() {
            return Ok(entries);
        }
        let e = reader.entry();
        let mut info = EntryInfo {
            path: e.name().to_owned(),
            mode: e.mode(),
            size: e.file_size(),
            uid: e.uid(),
            mtime: e.mtime(),
            magic: Vec::new(),
        };
        let mut magic = [0u8; 4];
        let n = reader.read(&mut magic).map_err(InitrdError::Read)?;
        info.magic = magic[..n].to_vec();
        entries.push(info);
        cursor = reader.skip().map_err(InitrdError::Read)?;
    }
}

/// The regular files of an uncompressed newc archive with their contents, in archive order
/// (for tests that look inside a built initramfs).
pub fn file_contents(cpio_bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, InitrdError> {
    let mut cursor = Cursor::new(cpio_bytes);
    let mut files = Vec::new();
    loop {
        let mut reader = cpio::NewcReader::new(cursor).map_err(InitrdError::Read)?;
        let e = reader.entry();
        if e.is_trailer() {
            return Ok(files);
        }
        if e.mode() & 0o170_000 == S_IFREG {
            let path = e.name().to_owned();
            // The archive is in memory: no entry can be larger than it.
            let mut data = Vec::with_capacity((e.file_size() as usize).min(cpio_bytes.len()));
            reader.read_to_end(&mut data).map_err(InitrdError::Read)?;
            files.push((path, data));
        }
        cursor = reader.finish().map_err(InitrdError::Read)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_is_sorted_reproducible_and_readable() {
        let mut t = InitrdTree::new();
        t.add_file("/init", b"\x7fELFbinary".to_vec(), 0o755)
            .unwrap();
        t.add_file("/lib/modules/k/a.ko", vec![1, 2, 3], 0o644)
            .unwrap();
        t.add_file("/etc/nullos/node.toml", b"version = 1\n".to_vec(), 0o644)
            .unwrap();
        t.add_char_device("/dev/console", 5, 1, 0o600).unwrap();
        t.add_dir("/proc").unwrap();
        let a = t.to_cpio(1234).unwrap();
        assert_eq!(a, t.to_cpio(1234).unwrap());
        let entries = list_entries(&a).unwrap();
        let paths: Vec<_> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "dev",
                "dev/console",
                "etc",
                "etc/nullos",
                "etc/nullos/node.toml",
                "init",
                "lib",
                "lib/modules",
                "lib/modules/k",
                "lib/modules/k/a.ko",
                "proc"
            ]
        );
        assert!(entries.iter().all(|e| e.uid == 0 && e.mtime == 1234));
        let files = file_contents(&a).unwrap();
        assert_eq!(files.len(), 3);
        assert_eq!(files[1], ("init".to_owned(), b"\x7fELFbinary".to_vec()));
        let init = entries.iter().find(|e| e.path == "init").unwrap();
        assert!(init.is_executable());
        assert_eq!(init.magic, b"\x7fELF");
        assert_eq!(a.len() % 4, 0);
    }

    #[test]
    fn refuses_bad_and_duplicate_paths() {
        let mut t = InitrdTree::new();
        assert!(matches!(
            t.add_file("relative", vec![], 0o644),
            Err(InitrdError::BadPath(_))
        ));
        assert!(matches!(
            t.add_file("/a/../b", vec![], 0o644),
            Err(InitrdError::BadPath(_))
        ));
        t.add_file("/a", vec![], 0o644).unwrap();
        assert!(matches!(
            t.add_file("/a", vec![], 0o644),
            Err(InitrdError::Duplicate(_))
        ));
        assert!(matches!(
            t.add_file("/a/b", vec![], 0o644),
            Err(InitrdError::Duplicate(_))
        ));
    }

    #[test]
    fn garbage_archives_are_errors() {
        assert!(list_entries(b"garbage").is_err());
        assert!(list_entries(&[]).is_err());
    }
}
