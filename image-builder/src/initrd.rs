//! The initramfs as a file tree, written as a reproducible cpio (newc) archive.
//!
//! The tree, the writer and the reader are the `initramfs` crate's (shared with the node's init,
//! which writes guest initramfs archives, and the benchmarks); this module names them for the
//! image builder and its callers, and lists archives for `inspect` and the tests.
//!
//! Reproducible means: entries sorted by path (parents first), uid/gid 0, inode numbers assigned
//! in that order, one fixed mtime for everything (`SOURCE_DATE_EPOCH`, else 0), permission bits
//! from the build description rather than from the build machine's files or umask.

pub use initramfs::{Error as InitrdError, ReadError, Tree as InitrdTree};

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
        self.mode & initramfs::newc::S_IFMT == initramfs::newc::S_IFREG && self.mode & 0o111 != 0
    }
}

/// Lists the entries of an uncompressed newc archive (of each, in order, if several are
/// concatenated).
pub fn list_entries(cpio_bytes: &[u8]) -> Result<Vec<EntryInfo>, ReadError> {
    initramfs::Reader::new(cpio_bytes)
        .map(|entry| {
            entry.map(|e| EntryInfo {
                path: e.name.to_owned(),
                mode: e.header.mode,
                size: e.header.filesize,
                uid: e.header.uid,
                mtime: e.header.mtime,
                magic: e.data.iter().take(4).copied().collect(),
            })
        })
        .collect()
}

/// The regular files of an uncompressed newc archive with their contents, in archive order
/// (for tests that look inside a built initramfs).
pub fn file_contents(cpio_bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, ReadError> {
    initramfs::Reader::new(cpio_bytes)
        .filter_map(|entry| match entry {
            Ok(e) if e.header.mode & initramfs::newc::S_IFMT == initramfs::newc::S_IFREG => {
                Some(Ok((e.name.to_owned(), e.data.to_vec())))
            }
            Ok(_) => None,
            Err(err) => Some(Err(err)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_list_modes_sizes_and_magic() {
        let mut t = InitrdTree::new();
        t.add_file("/init", b"\x7fELFbinary".to_vec(), 0o755)
            .unwrap();
        t.add_file("/etc/motd", b"hi".to_vec(), 0o644).unwrap();
        let entries = list_entries(&t.to_cpio(1234).unwrap()).unwrap();
        let paths: Vec<_> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["etc", "etc/motd", "init"]);
        assert!(entries.iter().all(|e| e.uid == 0 && e.mtime == 1234));
        let init = &entries[2];
        assert!(init.is_executable() && !entries[1].is_executable());
        assert_eq!((init.magic.as_slice(), init.size), (&b"\x7fELF"[..], 10));
        assert_eq!(entries[1].magic, b"hi");
        let files = file_contents(&t.to_cpio(1234).unwrap()).unwrap();
        assert_eq!(
            files,
            [
                ("etc/motd".to_owned(), b"hi".to_vec()),
                ("init".to_owned(), b"\x7fELFbinary".to_vec())
            ]
        );
    }

    #[test]
    fn garbage_archives_are_errors() {
        assert!(list_entries(b"garbage").is_err());
        assert!(list_entries(&[]).is_err());
    }
}
