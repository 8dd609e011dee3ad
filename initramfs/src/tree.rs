//! [`Tree`]: the file tree of an initramfs, without I/O until it is written.
//!
//! Paths are absolute (`/init`), checked when added, kept sorted (a parent sorts before its
//! children), each path once; parents are added as directories (0755). Written through the
//! [`Writer`], the same tree and mtime give the same bytes: the archive reflects the build
//! description, not the build machine.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use crate::write::{archive_name, Error, Writer, DIR_MODE};

/// What a regular file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contents {
    /// These bytes.
    Bytes(Vec<u8>),
    /// The file at this path on the machine writing the archive, read while writing.
    Disk(PathBuf),
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
        contents: Contents,
        /// Permission bits.
        mode: u32,
    },
    /// A symbolic link.
    Symlink {
        /// Where it points.
        target: String,
    },
    /// A character device (e.g. `/dev/console`: the kernel opens it for PID 1 before `/init`
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
pub struct Tree {
    /// Archive names (no leading `/`) in archive order.
    nodes: BTreeMap<String, Node>,
}

impl Tree {
    /// An empty tree.
    pub fn new() -> Tree {
        Tree::default()
    }

    /// Adds a regular file holding `data` (and its parent directories).
    pub fn add_file(&mut self, path: &str, data: Vec<u8>, mode: u32) -> Result<(), Error> {
        if u32::try_from(data.len()).is_err() {
            return Err(Error::TooLarge(path.to_owned()));
        }
        self.insert(
            path,
            Node::File {
                contents: Contents::Bytes(data),
                mode,
            },
        )
    }

    /// Adds a regular file whose contents are copied from `source` when the tree is written.
    pub fn add_file_from_disk(
        &mut self,
        path: &str,
        source: impl Into<PathBuf>,
        mode: u32,
    ) -> Result<(), Error> {
        let contents = Contents::Disk(source.into());
        self.insert(path, Node::File { contents, mode })
    }

    /// Adds a directory (and its parents). Adding an existing directory is fine.
    pub fn add_dir(&mut self, path: &str) -> Result<(), Error> {
        let name = key(path)?;
        match self.nodes.get(name) {
            Some(Node::Dir { .. }) => Ok(()),
            Some(_) => Err(Error::Duplicate(path.to_owned())),
            None => self.insert(path, Node::Dir { mode: DIR_MODE }),
        }
    }

    /// Adds a symbolic link to `target`.
    pub fn add_symlink(&mut self, path: &str, target: &str) -> Result<(), Error> {
        let target = target.to_owned();
        self.insert(path, Node::Symlink { target })
    }

    /// Adds a character device node.
    pub fn add_char_device(
        &mut self,
        path: &str,
        major: u32,
        minor: u32,
        mode: u32,
    ) -> Result<(), Error> {
        self.insert(path, Node::CharDev { major, minor, mode })
    }

    /// Paths in archive order, without the leading `/`.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.nodes.keys().map(String::as_str)
    }

    /// The node at `path`.
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path.trim_start_matches('/'))
    }

    fn insert(&mut self, path: &str, node: Node) -> Result<(), Error> {
        let name = key(path)?;
        for (end, _) in name.match_indices('/') {
            let parent = name.get(..end).unwrap_or_default();
            match self.nodes.get(parent) {
                Some(Node::Dir { .. }) => {}
                Some(_) => return Err(Error::Duplicate(format!("/{parent}"))),
                None => {
                    self.nodes
                        .insert(parent.to_owned(), Node::Dir { mode: DIR_MODE });
                }
            }
        }
        if self.nodes.contains_key(name) {
            return Err(Error::Duplicate(path.to_owned()));
        }
        self.nodes.insert(name.to_owned(), node);
        Ok(())
    }

    /// Writes the archive (members in path order, then the trailer) to `out`; returns it.
    pub fn write_to<W: Write>(&self, out: W, mtime: u32) -> Result<W, Error> {
        let mut writer = Writer::new(out, mtime);
        for (name, node) in &self.nodes {
            match node {
                Node::Dir { mode } => writer.dir(name, *mode)?,
                Node::File { contents, mode } => match contents {
                    Contents::Bytes(data) => writer.file(name, *mode, data)?,
                    Contents::Disk(source) => writer.file_from_disk(name, *mode, source)?,
                },
                Node::Symlink { target } => writer.symlink(name, target)?,
                Node::CharDev { major, minor, mode } => {
                    writer.char_device(name, *major, *minor, *mode)?
                }
            }
        }
        writer.finish()
    }

    /// The uncompressed newc archive.
    pub fn to_cpio(&self, mtime: u32) -> Result<Vec<u8>, Error> {
        self.write_to(Vec::new(), mtime)
    }
}

/// The archive name of an absolute path.
fn key(path: &str) -> Result<&str, Error> {
    if !path.starts_with('/') || path.ends_with('/') {
        return Err(Error::BadPath(path.to_owned()));
    }
    archive_name(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Reader;

    #[test]
    fn archive_is_sorted_reproducible_and_readable() {
        let mut t = Tree::new();
        t.add_file("/init", b"\x7fELFbinary".to_vec(), 0o755)
            .unwrap();
        t.add_file("/lib/modules/k/a.ko", vec![1, 2, 3], 0o644)
            .unwrap();
        t.add_file("/etc/nullos/node.toml", b"version = 1\n".to_vec(), 0o644)
            .unwrap();
        t.add_char_device("/dev/console", 5, 1, 0o600).unwrap();
        t.add_dir("/proc").unwrap();
        t.add_symlink("/bin", "usr/bin").unwrap();
        let a = t.to_cpio(1234).unwrap();
        assert_eq!(a, t.to_cpio(1234).unwrap());
        let entries: Vec<_> = Reader::new(&a).collect::<Result<_, _>>().unwrap();
        let paths: Vec<_> = entries.iter().map(|e| e.name).collect();
        assert_eq!(
            paths,
            [
                "bin",
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
        assert_eq!(paths, t.paths().collect::<Vec<_>>());
        assert!(entries
            .iter()
            .all(|e| e.header.uid == 0 && e.header.gid == 0 && e.header.mtime == 1234));
        let inos: Vec<u32> = entries.iter().map(|e| e.header.ino).collect();
        assert_eq!(inos, (1..=12).collect::<Vec<u32>>());
        let init = entries.iter().find(|e| e.name == "init").unwrap();
        assert_eq!(init.header.mode, 0o100_755);
        assert_eq!(init.data, b"\x7fELFbinary");
        let bin = entries.iter().find(|e| e.name == "bin").unwrap();
        assert_eq!((bin.header.mode, bin.data), (0o120_777, &b"usr/bin"[..]));
        let console = entries.iter().find(|e| e.name == "dev/console").unwrap();
        assert_eq!(
            (
                console.header.mode,
                console.header.rdev_major,
                console.header.rdev_minor
            ),
            (0o020_600, 5, 1)
        );
        let proc = entries.iter().find(|e| e.name == "proc").unwrap();
        assert_eq!((proc.header.mode, proc.header.nlink), (0o040_755, 2));
        assert_eq!(a.len() % 4, 0);
    }

    #[test]
    fn refuses_bad_and_duplicate_paths() {
        let mut t = Tree::new();
        for bad in [
            "relative", "/a/../b", "/", "/a//b", "/a/", "/a/./b", "/nul\0",
        ] {
            assert!(
                matches!(t.add_file(bad, vec![], 0o644), Err(Error::BadPath(_))),
                "{bad:?}"
            );
        }
        t.add_file("/a", vec![], 0o644).unwrap();
        assert!(matches!(
            t.add_file("/a", vec![], 0o644),
            Err(Error::Duplicate(_))
        ));
        assert!(matches!(
            t.add_file("/a/b", vec![], 0o644),
            Err(Error::Duplicate(_))
        ));
        assert!(matches!(t.add_dir("/a"), Err(Error::Duplicate(_))));
        t.add_dir("/d/e").unwrap();
        t.add_dir("/d").unwrap();
        assert!(matches!(t.get("/d"), Some(Node::Dir { mode: 0o755 })));
    }

    #[test]
    fn bad_modes_and_missing_sources_fail_the_write() {
        let mut t = Tree::new();
        t.add_file("/x", vec![], 0o100_644).unwrap();
        assert!(matches!(t.to_cpio(0), Err(Error::BadMode { .. })));
        let mut t = Tree::new();
        t.add_file_from_disk("/y", "/nonexistent/nullos-initramfs-test", 0o644)
            .unwrap();
        let err = t.to_cpio(0).unwrap_err();
        assert!(matches!(err, Error::ReadSource { .. }), "{err}");
    }
}
