//! Opening the VMM's input files: a path, or a descriptor the VMM inherited, named
//! `/proc/self/fd/N` ([`interfaces::vm::FD_PATH_PREFIX`]).
//!
//! The jailed VMM gets every file as an open descriptor from the node (docs/VMM.md, "The
//! jail"): it has no `/proc` and no view of the node's files, so an inherited descriptor is used
//! as it is, never reopened through a path. That is also what makes the node's check of the root
//! image hold: the node hashed the very descriptor the VMM reads.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::fd::{FromRawFd, RawFd};
use std::path::Path;

use interfaces::vm::parse_fd_path;

/// Opens `path` for reading (and writing if `write`), or takes the descriptor it names.
pub fn open(path: &Path, write: bool) -> io::Result<File> {
    match parse_fd_path(path) {
        Some(fd) => inherited(fd, write),
        None => OpenOptions::new().read(true).write(write).open(path),
    }
}

/// A descriptor of our own for inherited descriptor `fd`, rewound, checked to be open for
/// writing if `write`.
fn inherited(fd: RawFd, write: bool) -> io::Result<File> {
    // SAFETY: F_DUPFD_CLOEXEC takes no pointers; an `fd` that is not open fails with EBADF.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if dup < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `dup` was just created by fcntl and nothing else owns it.
    let mut file = unsafe { File::from_raw_fd(dup) };
    // SAFETY: F_GETFL takes no pointers; `dup` is open.
    let flags = unsafe { libc::fcntl(dup, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    if write && flags & libc::O_ACCMODE != libc::O_RDWR {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("inherited descriptor {fd} is not open for reading and writing"),
        ));
    }
    // The node may have read it (the root image it hashed); the offset is shared.
    if file.seek(SeekFrom::Start(0)).is_err() {
        // Not seekable (a pipe, a device): nothing to rewind.
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;

    use interfaces::vm::fd_path;

    use super::*;

    #[test]
    fn an_inherited_descriptor_is_used_rewound_and_checked_for_writing() {
        let mut tmp = tempfile::tempfile().unwrap();
        tmp.write_all(b"kernel").unwrap();
        let mut file = open(&fd_path(tmp.as_raw_fd()), true).unwrap();
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        assert_eq!(text, "kernel");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ro");
        std::fs::write(&path, b"x").unwrap();
        let read_only = File::open(&path).unwrap();
        let named = fd_path(read_only.as_raw_fd());
        assert!(open(&named, false).is_ok());
        let err = open(&named, true).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert!(err.to_string().contains("not open for reading and writing"));

        let closed = fd_path(987_654);
        assert_eq!(
            open(&closed, false).unwrap_err().raw_os_error(),
            Some(libc::EBADF)
        );
        assert!(open(&path, false).is_ok());
    }
}
