//! The root image's file tree: what goes where, with which mode, before any byte is written.
//!
//! Modes are normalized the way git records them, so the image does not depend on the umask of
//! the checkout or the build: directories 0755, files 0755 when the source's owner-execute bit is
//! set and 0644 otherwise, symlinks 0777, `/tmp` 01777. Owners are always 0:0 (the squashfs
//! writer sets them).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Directories every root image has: the guest init mounts proc, sys, dev, tmp and run there,
/// and writes /etc/resolv.conf and /etc/hosts (in the overlay).
pub const SYSTEM_DIRS: [&str; 6] = ["/dev", "/etc", "/proc", "/run", "/sys", "/tmp"];

/// Most symlinks followed while resolving one path (Linux's own limit).
const MAX_SYMLINK_HOPS: usize = 40;

/// One entry of the tree (the root directory `/` is implicit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A directory.
    Dir,
    /// A regular file, read from `source` when the image is written.
    File {
        /// Where the bytes come from.
        source: PathBuf,
        /// Whether the file is executable (mode 0755 rather than 0644).
        executable: bool,
    },
    /// A symbolic link.
    Symlink {
        /// The link target, as stored.
        target: String,
    },
}

impl Node {
    /// The permission bits written for this node at `path`.
    pub fn mode(&self, path: &str) -> u16 {
        match self {
            Node::Dir if path == "/tmp" => 0o1777,
            Node::Dir => 0o755,
            Node::File {
                executable: true, ..
            } => 0o755,
            Node::File { .. } => 0o644,
            Node::Symlink { .. } => 0o777,
        }
    }
}

/// Why the tree could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// A source file or folder could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Two sources claim one path in incompatible ways (a file where a directory must be).
    #[error("{path} is both a directory and a file in the image")]
    Conflict {
        /// The path in the image.
        path: String,
    },
    /// A source is of a kind the image does not carry.
    #[error("{path}: only regular files, directories and symlinks go into a workload image")]
    UnsupportedKind {
        /// The source.
        path: PathBuf,
    },
    /// A file name is not UTF-8.
    #[error("{path}: file names in a workload image must be UTF-8")]
    NotUtf8 {
        /// The source.
        path: PathBuf,
    },
    /// A `[files]` source is not a regular file.
    #[error("[files] source {path} is not a regular file")]
    NotAFile {
        /// The source.
        path: PathBuf,
    },
}

/// The image's files by absolute path, sorted (so parents come before their children).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RootTree {
    entries: BTreeMap<String, Node>,
}

impl RootTree {
    /// An empty tree (just `/`).
    pub fn new() -> RootTree {
        RootTree::default()
    }

    /// Every entry but `/`, sorted by path.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.entries.iter().map(|(p, n)| (p.as_str(), n))
    }

    /// The entry at `path` itself (no symlinks followed).
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.entries.get(path)
    }

    /// Adds directory `path` (absolute, normalized) and its missing parents; fine if it exists.
    pub fn add_dir(&mut self, path: &str) -> Result<(), TreeError> {
        self.add_parents(path)?;
        self.insert_dir(path)
    }

    /// Adds (or replaces) the file `path`, and its missing parents.
    pub fn add_file(
        &mut self,
        path: &str,
        source: PathBuf,
        executable: bool,
    ) -> Result<(), TreeError> {
        self.add_parents(path)?;
        if let Some(Node::Dir) = self.entries.get(path) {
            return Err(TreeError::Conflict { path: path.into() });
        }
        self.entries
            .insert(path.into(), Node::File { source, executable });
        Ok(())
    }

    /// Adds (or replaces) the symlink `path` → `target`, and its missing parents.
    pub fn add_symlink(&mut self, path: &str, target: String) -> Result<(), TreeError> {
        self.add_parents(path)?;
        if let Some(Node::Dir) = self.entries.get(path) {
            return Err(TreeError::Conflict { path: path.into() });
        }
        self.entries.insert(path.into(), Node::Symlink { target });
        Ok(())
    }

    fn insert_dir(&mut self, path: &str) -> Result<(), TreeError> {
        match self.entries.get(path) {
            None => {
                self.entries.insert(path.into(), Node::Dir);
                Ok(())
            }
            Some(Node::Dir) => Ok(()),
            Some(_) => Err(TreeError::Conflict { path: path.into() }),
        }
    }

    fn add_parents(&mut self, path: &str) -> Result<(), TreeError> {
        let mut end = 0;
        while let Some(next) = path[end + 1..].find('/') {
            end += 1 + next;
            self.insert_dir(&path[..end])?;
        }
        Ok(())
    }

    /// Copies the tree under `dir` (a workload's `rootfs/`) into the image.
    pub fn add_host_tree(&mut self, dir: &Path) -> Result<(), TreeError> {
        self.walk(dir, "")
    }

    fn walk(&mut self, dir: &Path, prefix: &str) -> Result<(), TreeError> {
        let read_err = |source| TreeError::Read {
            path: dir.to_owned(),
            source,
        };
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(read_err)? {
            names.push(entry.map_err(read_err)?.file_name());
        }
        names.sort();
        for name in names {
            let source = dir.join(&name);
            let Some(name) = name.to_str() else {
                return Err(TreeError::NotUtf8 { path: source });
            };
            let path = format!("{prefix}/{name}");
            let meta = std::fs::symlink_metadata(&source).map_err(|e| TreeError::Read {
                path: source.clone(),
                source: e,
            })?;
            let kind = meta.file_type();
            if kind.is_dir() {
                self.add_dir(&path)?;
                self.walk(&source, &path)?;
            } else if kind.is_file() {
                let executable = meta.permissions().mode() & 0o100 != 0;
                self.add_file(&path, source, executable)?;
            } else if kind.is_symlink() {
                let target = std::fs::read_link(&source).map_err(|e| TreeError::Read {
                    path: source.clone(),
                    source: e,
                })?;
                let Some(target) = target.to_str() else {
                    return Err(TreeError::NotUtf8 { path: source });
                };
                self.add_symlink(&path, target.to_owned())?;
            } else {
                return Err(TreeError::UnsupportedKind { path: source });
            }
        }
        Ok(())
    }

    /// Adds one `[files]` entry: the regular file `source` (symlinks followed) at `path`.
    pub fn add_host_file(&mut self, path: &str, source: &Path) -> Result<(), TreeError> {
        let meta = std::fs::metadata(source).map_err(|e| TreeError::Read {
            path: source.to_owned(),
            source: e,
        })?;
        if !meta.is_file() {
            return Err(TreeError::NotAFile {
                path: source.to_owned(),
            });
        }
        let executable = meta.permissions().mode() & 0o100 != 0;
        self.add_file(path, source.to_owned(), executable)
    }

    /// Resolves `path` inside the image the way the guest kernel would (absolute and relative
    /// symlinks followed, in every component). Returns the final path and its node, or the first
    /// path that does not exist.
    pub fn resolve(&self, path: &str) -> Result<(String, &Node), String> {
        let mut pending: Vec<String> = path.rsplit('/').map(str::to_owned).collect();
        let mut current: Vec<String> = Vec::new();
        let mut hops = 0;
        let join = |parts: &[String]| format!("/{}", parts.join("/"));
        while let Some(component) = pending.pop() {
            match component.as_str() {
                "" | "." => continue,
                ".." => {
                    current.pop();
                    continue;
                }
                _ => {}
            }
            current.push(component);
            let here = join(&current);
            match self.entries.get(&here) {
                None => return Err(here),
                Some(Node::Symlink { target }) => {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Err(here);
                    }
                    current.pop();
                    if target.starts_with('/') {
                        current.clear();
                    }
                    pending.extend(target.rsplit('/').map(str::to_owned));
                }
                Some(_) => {}
            }
        }
        if current.is_empty() {
            return Err("/".into());
        }
        let here = join(&current);
        match self.entries.get_key_value(&here) {
            Some((p, node)) => Ok((p.clone(), node)),
            None => Err(here),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_are_added_and_sorted_first() {
        let mut t = RootTree::new();
        t.add_file("/usr/bin/app", "x".into(), true).unwrap();
        t.add_dir("/usr-local").unwrap();
        let paths: Vec<&str> = t.entries().map(|(p, _)| p).collect();
        assert_eq!(paths, ["/usr", "/usr-local", "/usr/bin", "/usr/bin/app"]);
        assert_eq!(t.get("/usr/bin/app").unwrap().mode("/usr/bin/app"), 0o755);
    }

    #[test]
    fn a_file_cannot_be_a_directory() {
        let mut t = RootTree::new();
        t.add_file("/data", "x".into(), false).unwrap();
        assert!(matches!(
            t.add_dir("/data"),
            Err(TreeError::Conflict { .. })
        ));
        assert!(matches!(
            t.add_file("/data/x", "y".into(), false),
            Err(TreeError::Conflict { .. })
        ));
        t.add_dir("/etc").unwrap();
        assert!(matches!(
            t.add_file("/etc", "y".into(), false),
            Err(TreeError::Conflict { .. })
        ));
    }

    #[test]
    fn resolve_follows_symlinks_in_every_component() {
        let mut t = RootTree::new();
        t.add_file("/usr/lib64/ld.so", "ld".into(), true).unwrap();
        t.add_symlink("/lib64", "usr/lib64".into()).unwrap();
        t.add_symlink("/usr/bin/loader", "../lib64/ld.so".into())
            .unwrap();
        t.add_symlink("/loop", "/loop".into()).unwrap();
        assert_eq!(t.resolve("/lib64/ld.so").unwrap().0, "/usr/lib64/ld.so");
        assert_eq!(t.resolve("/usr/bin/loader").unwrap().0, "/usr/lib64/ld.so");
        assert_eq!(
            t.resolve("/lib64/missing").unwrap_err(),
            "/usr/lib64/missing"
        );
        assert!(t.resolve("/loop").is_err());
        assert!(t.resolve("/").is_err());
    }

    #[test]
    fn tmp_is_sticky() {
        assert_eq!(Node::Dir.mode("/tmp"), 0o1777);
        assert_eq!(Node::Dir.mode("/srv"), 0o755);
    }
}
