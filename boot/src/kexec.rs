//! Booting the verified release: `kexec_file_load(2)` from sealed in-memory files, then
//! `reboot(RB_KEXEC)`.
//!
//! The kernel and initramfs are copied from the verified buffers into `memfd`s that are then
//! sealed against every change (write, grow, shrink, further seals), so the file descriptors
//! the kernel reads hold exactly the bytes that were hashed; nothing is read from the medium
//! again. nix has no `kexec_file_load` wrapper, so the syscall is made through `libc`.

use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::reboot::{reboot, RebootMode};

/// Why the verified release could not be loaded or started.
#[derive(Debug, thiserror::Error)]
pub enum KexecError {
    /// A memfd could not be created, filled or sealed.
    #[error("in-memory copy of the {what}")]
    Memfd {
        /// Which artifact.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The command line has a NUL byte.
    #[error("command line contains a NUL byte")]
    Cmdline,
    /// The kernel refused the images.
    #[error("kexec_file_load")]
    Load(#[source] Errno),
    /// The kernel found no trusted key for the release kernel's signature: under Secure Boot
    /// the boot kernel is locked down and `kexec_file_load` only takes kernels signed by a key
    /// in its own keyrings or the firmware's `db` (docs/ARCHITECTURE.md, Secure Boot).
    #[error(
        "kexec_file_load: the boot kernel is locked down (Secure Boot) and trusts no key the \
         release kernel is signed with"
    )]
    UntrustedKernel(#[source] Errno),
    /// reboot(RB_KEXEC) returned.
    #[error("reboot(RB_KEXEC)")]
    Reboot(#[source] Errno),
}

/// A sealed, read-only in-memory file holding `bytes`.
fn sealed(what: &'static str, bytes: &[u8]) -> Result<OwnedFd, KexecError> {
    let err = |source: std::io::Error| KexecError::Memfd { what, source };
    let fd = memfd_create(what, MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)
        .map_err(|e| err(e.into()))?;
    let mut file = File::from(fd);
    file.write_all(bytes).map_err(err)?;
    let seals = SealFlag::F_SEAL_SEAL
        | SealFlag::F_SEAL_SHRINK
        | SealFlag::F_SEAL_GROW
        | SealFlag::F_SEAL_WRITE;
    fcntl(&file, FcntlArg::F_ADD_SEALS(seals)).map_err(|e| err(e.into()))?;
    Ok(OwnedFd::from(file))
}

/// Loads `kernel` and `initrd` with `cmdline` as the next kernel (does not start it).
pub fn load(kernel: &[u8], initrd: &[u8], cmdline: &str) -> Result<(), KexecError> {
    let kernel_fd = sealed("kernel", kernel)?;
    let initrd_fd = sealed("initrd", initrd)?;
    let cmdline = CString::new(cmdline).map_err(|_| KexecError::Cmdline)?;
    let cmdline_len = cmdline.as_bytes_with_nul().len();
    let flags: libc::c_ulong = 0;
    // SAFETY: kexec_file_load(kernel_fd, initrd_fd, cmdline_len, cmdline, flags) reads only:
    // both fds are open for the duration of the call, and `cmdline` points to `cmdline_len`
    // bytes including the terminating NUL, alive until the call returns.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_kexec_file_load,
            kernel_fd.as_raw_fd(),
            initrd_fd.as_raw_fd(),
            cmdline_len,
            cmdline.as_ptr(),
            flags,
        )
    };
    if rc != 0 {
        return Err(load_error(Errno::last()));
    }
    Ok(())
}

/// What a failed `kexec_file_load` means: ENOKEY and EKEYREJECTED come only from the
/// signature check a locked-down kernel makes.
fn load_error(errno: Errno) -> KexecError {
    match errno {
        Errno::ENOKEY | Errno::EKEYREJECTED => KexecError::UntrustedKernel(errno),
        other => KexecError::Load(other),
    }
}

/// Starts the loaded kernel. Returns only if the reboot call failed.
pub fn start() -> KexecError {
    nix::unistd::sync();
    match reboot(RebootMode::RB_KEXEC) {
        Err(e) => KexecError::Reboot(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom};

    #[test]
    fn sealed_memfd_holds_the_bytes_and_refuses_writes() {
        let fd = sealed("kernel", b"verified bytes").unwrap();
        let mut file = File::from(fd);
        file.seek(SeekFrom::Start(0)).unwrap();
        let mut back = Vec::new();
        file.read_to_end(&mut back).unwrap();
        assert_eq!(back, b"verified bytes");
        assert!(file.write_all(b"x").is_err(), "a sealed memfd took a write");
        assert!(file.set_len(1).is_err(), "a sealed memfd shrank");
    }

    #[test]
    fn signature_refusals_are_told_apart_from_other_failures() {
        for errno in [Errno::ENOKEY, Errno::EKEYREJECTED] {
            let line = pid1::error_chain(&load_error(errno));
            assert!(line.contains("locked down (Secure Boot)"), "{line}");
            assert!(line.contains(errno.desc()), "{line}");
        }
        assert!(matches!(
            load_error(Errno::ENOMEM),
            KexecError::Load(Errno::ENOMEM)
        ));
    }

    #[test]
    fn a_nul_in_the_command_line_is_refused_before_any_syscall() {
        assert!(matches!(load(b"k", b"i", "a\0b"), Err(KexecError::Cmdline)));
    }
}
