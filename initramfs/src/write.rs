//! [`Writer`]: the one newc writer.
//!
//! Reproducible by construction: inode numbers are 1, 2, … in archive order, uid and gid are 0,
//! every member has the writer's one mtime (the trailer has 0), permission bits come from the
//! caller and never from the build machine's files or umask, and nothing else varies. A
//! member's missing parent directories are written (0755) just before it, so any order of
//! calls gives an archive the kernel can unpack; [`Tree`](crate::Tree) calls it in sorted order.
//!
//! File contents are bytes in memory or a file on disk ([`Writer::file_from_disk`]) copied in
//! 64 KiB pieces while writing, so a big file is never held whole. Many small writes go to the
//! output: give it a `BufWriter` when it is a file.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::newc::{self, Header, S_IFCHR, S_IFDIR, S_IFLNK, S_IFREG};

/// Permission bits of the parent directories the writer adds by itself.
pub const DIR_MODE: u32 = 0o755;

/// Bytes copied at a time from a file on disk.
const COPY_CHUNK: usize = 64 * 1024;

/// Why an archive could not be assembled or written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A path is empty, relative (for a [`Tree`](crate::Tree)), has an empty, `.` or `..`
    /// component or a NUL, or is longer than the kernel unpacks.
    #[error("bad initramfs path '{0}'")]
    BadPath(String),
    /// Two things want the same path (or a file is where a directory must be).
    #[error("initramfs path '{0}' is added twice")]
    Duplicate(String),
    /// Permission bits with more than `0o7777` set.
    #[error("initramfs path '{path}' has mode {mode:o}, which is more than permission bits")]
    BadMode {
        /// The path.
        path: String,
        /// The mode given.
        mode: u32,
    },
    /// A symbolic link target that is empty, has a NUL or is longer than `PATH_MAX`.
    #[error("initramfs symlink '{0}' has a bad target")]
    BadTarget(String),
    /// A file is larger than newc's 4 GiB size field.
    #[error("initramfs file '{0}' is larger than 4 GiB")]
    TooLarge(String),
    /// A file to copy from disk cannot be opened or read (or is not a regular file).
    #[error("read {path}")]
    ReadSource {
        /// The file on disk.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A file on disk got shorter between its size being taken and its end being read.
    #[error("{path} got shorter while it was being archived")]
    Changed {
        /// The file on disk.
        path: PathBuf,
    },
    /// More members than newc's inode field can number.
    #[error("more than 4 Gi initramfs members")]
    TooManyMembers,
    /// Writing the archive failed.
    #[error("writing the cpio archive")]
    Write(#[source] io::Error),
}

/// The archive name of `path`: without leading `/`, checked (see [`Error::BadPath`]).
pub(crate) fn archive_name(path: &str) -> Result<&str, Error> {
    let name = path.trim_start_matches('/');
    let bad = name.is_empty()
        || name.len() >= newc::MAX_NAME_SIZE as usize
        || name.contains('\0')
        || name
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        return Err(Error::BadPath(path.to_owned()));
    }
    Ok(name)
}

/// A newc archive being written to `W`; [`finish`](Writer::finish) writes the trailer.
#[derive(Debug)]
pub struct Writer<W: Write> {
    out: W,
    mtime: u32,
    next_ino: u32,
    /// Every name written so far, and whether it is a directory.
    written: BTreeMap<String, bool>,
}

impl<W: Write> Writer<W> {
    /// An empty archive whose members all get `mtime`.
    pub fn new(out: W, mtime: u32) -> Writer<W> {
        Writer {
            out,
            mtime,
            next_ino: 1,
            written: BTreeMap::new(),
        }
    }

    /// Adds directory `path` (and its parents). A directory already written is left as it is.
    pub fn dir(&mut self, path: &str, perm: u32) -> Result<(), Error> {
        let name = archive_name(path.trim_end_matches('/'))?;
        match self.written.get(name) {
            Some(true) => Ok(()),
            Some(false) => Err(Error::Duplicate(format!("/{name}"))),
            None => {
                self.parents(name)?;
                self.member(name, S_IFDIR, perm, 2, 0, (0, 0))
            }
        }
    }

    /// Adds a regular file holding `data`.
    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> Result<(), Error> {
        let name = self.new_name(path)?;
        let size = u32::try_from(data.len()).map_err(|_| Error::TooLarge(format!("/{name}")))?;
        self.member(name, S_IFREG, perm, 1, size, (0, 0))?;
        self.data(data, u64::from(size))
    }

    /// Adds a regular file copied from `source` while writing. Its size is the open file's
    /// size; a file that ends early is an error ([`Error::Changed`]), bytes past that size
    /// (appended meanwhile) are not archived.
    pub fn file_from_disk(&mut self, path: &str, perm: u32, source: &Path) -> Result<(), Error> {
        let name = self.new_name(path)?;
        let read_err = |e| Error::ReadSource {
            path: source.to_owned(),
            source: e,
        };
        let file = File::open(source).map_err(read_err)?;
        let meta = file.metadata().map_err(read_err)?;
        if !meta.is_file() {
            return Err(read_err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            )));
        }
        let size = u32::try_from(meta.len()).map_err(|_| Error::TooLarge(format!("/{name}")))?;
        self.member(name, S_IFREG, perm, 1, size, (0, 0))?;
        let mut left = u64::from(size);
        let mut chunk = vec![0u8; COPY_CHUNK];
        let mut file = file.take(left);
        while left > 0 {
            let n = match file.read(&mut chunk) {
                Ok(0) => {
                    return Err(Error::Changed {
                        path: source.to_owned(),
                    })
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_err(e)),
            };
            let piece = chunk.get(..n).unwrap_or_default();
            self.out.write_all(piece).map_err(Error::Write)?;
            left = left.saturating_sub(n as u64);
        }
        self.pad(u64::from(size))
    }

    /// Adds a symbolic link to `target` (mode 0777, as links have).
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<(), Error> {
        let name = self.new_name(path)?;
        let bad = target.is_empty()
            || target.contains('\0')
            || target.len() >= newc::MAX_NAME_SIZE as usize;
        if bad {
            return Err(Error::BadTarget(format!("/{name}")));
        }
        // Shorter than MAX_NAME_SIZE, so it fits.
        let size = u32::try_from(target.len()).map_err(|_| Error::BadTarget(path.to_owned()))?;
        self.member(name, S_IFLNK, 0o777, 1, size, (0, 0))?;
        self.data(target.as_bytes(), u64::from(size))
    }

    /// Adds a character device node `major:minor`.
    pub fn char_device(
        &mut self,
        path: &str,
        major: u32,
        minor: u32,
        perm: u32,
    ) -> Result<(), Error> {
        let name = self.new_name(path)?;
        self.member(name, S_IFCHR, perm, 1, 0, (major, minor))
    }

    /// Writes the trailer and flushes; returns the output.
    pub fn finish(mut self) -> Result<W, Error> {
        let header = Header {
            nlink: 1,
            namesize: name_size(newc::TRAILER)?,
            ..Header::default()
        };
        self.header(&header, newc::TRAILER)?;
        self.out.flush().map_err(Error::Write)?;
        Ok(self.out)
    }

    /// Checks `path`, refuses one already written, and writes its missing parents.
    fn new_name<'p>(&mut self, path: &'p str) -> Result<&'p str, Error> {
        let name = archive_name(path)?;
        if self.written.contains_key(name) {
            return Err(Error::Duplicate(format!("/{name}")));
        }
        self.parents(name)?;
        Ok(name)
    }

    fn parents(&mut self, name: &str) -> Result<(), Error> {
        for (end, _) in name.match_indices('/') {
            let parent = name.get(..end).unwrap_or_default();
            match self.written.get(parent) {
                Some(true) => {}
                Some(false) => return Err(Error::Duplicate(format!("/{parent}"))),
                None => self.member(parent, S_IFDIR, DIR_MODE, 2, 0, (0, 0))?,
            }
        }
        Ok(())
    }

    /// Writes a member's header and name, and records the name.
    fn member(
        &mut self,
        name: &str,
        kind: u32,
        perm: u32,
        nlink: u32,
        size: u32,
        (rdev_major, rdev_minor): (u32, u32),
    ) -> Result<(), Error> {
        if perm & !0o7777 != 0 {
            return Err(Error::BadMode {
                path: format!("/{name}"),
                mode: perm,
            });
        }
        let ino = self.next_ino;
        self.next_ino = ino.checked_add(1).ok_or(Error::TooManyMembers)?;
        let header = Header {
            ino,
            mode: kind | perm,
            nlink,
            mtime: self.mtime,
            filesize: size,
            rdev_major,
            rdev_minor,
            namesize: name_size(name)?,
            ..Header::default()
        };
        self.header(&header, name)?;
        self.written.insert(name.to_owned(), kind == S_IFDIR);
        Ok(())
    }

    fn header(&mut self, header: &Header, name: &str) -> Result<(), Error> {
        let w = &mut self.out;
        w.write_all(&header.emit()).map_err(Error::Write)?;
        w.write_all(name.as_bytes()).map_err(Error::Write)?;
        w.write_all(&[0]).map_err(Error::Write)?;
        let len = newc::HEADER_LEN as u64 + u64::from(header.namesize);
        w.write_all(&[0; 3][..newc::padding(len)])
            .map_err(Error::Write)
    }

    fn data(&mut self, data: &[u8], size: u64) -> Result<(), Error> {
        self.out.write_all(data).map_err(Error::Write)?;
        self.pad(size)
    }

    fn pad(&mut self, size: u64) -> Result<(), Error> {
        self.out
            .write_all(&[0; 3][..newc::padding(size)])
            .map_err(Error::Write)
    }
}

/// The namesize field: the name's length and its NUL.
fn name_size(name: &str) -> Result<u32, Error> {
    // archive_name bounds names below MAX_NAME_SIZE, so this never fails for a checked name.
    u32::try_from(name.len() + 1).map_err(|_| Error::BadPath(name.to_owned()))
}

#[cfg(test)]
mod tests;
