//! The baseline initramfs: `/dev/console` and a static `/init` (the `baseline-init` binary of this
//! crate), nothing else.
//!
//! `/dev/console` must be in the archive: the kernel opens it as PID 1's stdin/stdout/stderr
//! before running `/init`, and devtmpfs is not mounted for an initramfs root.
//!
//! The cpio is written with the `cpio` crate and compressed with zstd, as NullOS images are, so
//! both sides of the comparison pay the same kind of decompression.

use std::io;
use std::path::{Path, PathBuf};

use cpio::newc::{trailer, Builder};
use object::read::elf::{ElfFile64, FileHeader as _, ProgramHeader as _};

/// Console major/minor (`/dev/console` is character device 5:1).
const CONSOLE_DEV: (u32, u32) = (5, 1);

/// zstd level: small archive; decompression speed barely depends on the level.
const ZSTD_LEVEL: i32 = 19;

/// The line `baseline-init` prints (followed by ` uptime_ms=<n>`).
pub const BASELINE_LINE: &str = "baseline: init reached";

/// How the baseline-init binary is built (for error messages).
pub const BUILD_HINT: &str = "RUSTFLAGS=\"-C target-feature=+crt-static\" cargo build --release \
     --target x86_64-unknown-linux-gnu -p bench-inits --bin baseline-init";

/// A baseline initramfs that cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// No `baseline-init` where we looked.
    #[error("baseline-init not found (looked at: {looked}); build it with `{BUILD_HINT}` or pass --baseline-init")]
    NotFound {
        /// The paths tried, comma separated.
        looked: String,
    },
    /// The binary cannot be read.
    #[error("cannot read {path}")]
    ReadInit {
        /// The binary.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The binary is not a 64-bit ELF executable.
    #[error("{path} is not a 64-bit ELF executable")]
    NotElf {
        /// The binary.
        path: PathBuf,
        /// Why.
        #[source]
        source: object::Error,
    },
    /// The binary needs a dynamic loader, which the initramfs does not have.
    #[error("{path} is dynamically linked; build it static with `{BUILD_HINT}`")]
    NotStatic {
        /// The binary.
        path: PathBuf,
    },
    /// The binary is larger than a newc archive member can be (4 GiB).
    #[error("{path} is too large for a cpio archive")]
    TooLarge {
        /// The binary.
        path: PathBuf,
    },
    /// Writing or compressing the archive failed.
    #[error("cannot write the baseline initramfs {path}")]
    WriteInitrd {
        /// The output file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Finds `baseline-init`: `NULLOS_BASELINE_INIT`, else the static release build next to this
/// executable's target directory (`<target>/x86_64-unknown-linux-gnu/release/baseline-init`).
pub fn find_baseline_init() -> Result<PathBuf, BaselineError> {
    if let Some(path) = std::env::var_os("NULLOS_BASELINE_INIT") {
        return Ok(path.into());
    }
    let mut looked = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        // <target>/release/nullos-bench or <target>/debug/nullos-bench
        if let Some(target) = exe.parent().and_then(Path::parent) {
            let candidate = target.join("x86_64-unknown-linux-gnu/release/baseline-init");
            if candidate.is_file() {
                return Ok(candidate);
            }
            looked.push(candidate.display().to_string());
        }
    }
    looked.push("$NULLOS_BASELINE_INIT".to_string());
    Err(BaselineError::NotFound {
        looked: looked.join(", "),
    })
}

/// Whether an ELF64 image is statically linked (no `PT_INTERP` program header).
pub fn is_static_elf(image: &[u8]) -> Result<bool, object::Error> {
    let elf = ElfFile64::<object::Endianness>::parse(image)?;
    let endian = elf.endian();
    let headers = elf.elf_header().program_headers(endian, image)?;
    Ok(!headers
        .iter()
        .any(|ph| ph.p_type(endian) == object::elf::PT_INTERP))
}

/// The uncompressed newc archive: `/dev`, `/dev/console`, `/init` = `init_binary`.
pub fn baseline_cpio(init_binary: &[u8]) -> io::Result<Vec<u8>> {
    let size = u32::try_from(init_binary.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "init binary over 4 GiB"))?;
    let mut out = Vec::with_capacity(init_binary.len() + 1024);
    let dir = Builder::new("dev").ino(1).mode(0o040_755).nlink(2);
    out = dir.write(out, 0).finish()?;
    let console = Builder::new("dev/console")
        .ino(2)
        .mode(0o020_600)
        .rdev_major(CONSOLE_DEV.0)
        .rdev_minor(CONSOLE_DEV.1);
    out = console.write(out, 0).finish()?;
    let mut init = Builder::new("init").ino(3).mode(0o100_755).write(out, size);
    io::Write::write_all(&mut init, init_binary)?;
    out = init.finish()?;
    trailer(out)
}

/// Writes the zstd-compressed baseline initramfs for the static binary at `init_path` to `out`.
pub fn write_baseline_initrd(init_path: &Path, out: &Path) -> Result<(), BaselineError> {
    let init = std::fs::read(init_path).map_err(|source| BaselineError::ReadInit {
        path: init_path.to_path_buf(),
        source,
    })?;
    match is_static_elf(&init) {
        Ok(true) => {}
        Ok(false) => {
            return Err(BaselineError::NotStatic {
                path: init_path.to_path_buf(),
            })
        }
        Err(source) => {
            return Err(BaselineError::NotElf {
                path: init_path.to_path_buf(),
                source,
            })
        }
    }
    if u32::try_from(init.len()).is_err() {
        return Err(BaselineError::TooLarge {
            path: init_path.to_path_buf(),
        });
    }
    let write_err = |source| BaselineError::WriteInitrd {
        path: out.to_path_buf(),
        source,
    };
    let cpio = baseline_cpio(&init).map_err(write_err)?;
    let compressed = zstd::stream::encode_all(cpio.as_slice(), ZSTD_LEVEL).map_err(write_err)?;
    std::fs::write(out, compressed).map_err(write_err)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn the_archive_holds_dev_console_and_init() {
        let cpio = baseline_cpio(b"\x7fELF fake").unwrap();
        let mut rest: &[u8] = &cpio;
        let mut seen = Vec::new();
        loop {
            let mut reader = cpio::NewcReader::new(rest).unwrap();
            let e = reader.entry();
            if e.is_trailer() {
                break;
            }
            let entry = (
                e.name().to_string(),
                e.mode(),
                e.rdev_major(),
                e.rdev_minor(),
                e.uid(),
                e.file_size(),
            );
            let mut data = Vec::new();
            reader.read_to_end(&mut data).unwrap();
            seen.push((entry, data));
            rest = reader.finish().unwrap();
        }
        assert_eq!(
            seen,
            vec![
                (("dev".into(), 0o040_755, 0, 0, 0, 0), vec![]),
                (("dev/console".into(), 0o020_600, 5, 1, 0, 0), vec![]),
                (
                    ("init".into(), 0o100_755, 0, 0, 0, 9),
                    b"\x7fELF fake".to_vec()
                ),
            ]
        );
    }

    /// A minimal little-endian ELF64 executable header followed by program headers of the
    /// given types.
    fn fake_elf(p_types: &[u32]) -> Vec<u8> {
        let mut elf = vec![0u8; 64];
        elf[..8].copy_from_slice(b"\x7fELF\x02\x01\x01\x00");
        elf[16..18].copy_from_slice(&2u16.to_le_bytes()); // e_type = ET_EXEC
        elf[18..20].copy_from_slice(&62u16.to_le_bytes()); // e_machine = x86_64
        elf[20..24].copy_from_slice(&1u32.to_le_bytes()); // e_version
        elf[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        elf[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
        elf[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        let phnum = u16::try_from(p_types.len()).unwrap();
        elf[56..58].copy_from_slice(&phnum.to_le_bytes());
        elf[58..60].copy_from_slice(&64u16.to_le_bytes()); // e_shentsize
        for &p_type in p_types {
            let mut ph = vec![0u8; 56];
            ph[..4].copy_from_slice(&p_type.to_le_bytes());
            elf.extend(ph);
        }
        elf
    }

    #[test]
    fn static_and_dynamic_executables_are_told_apart() {
        let (load, interp) = (object::elf::PT_LOAD, object::elf::PT_INTERP);
        assert!(is_static_elf(&fake_elf(&[load, load])).unwrap());
        assert!(!is_static_elf(&fake_elf(&[load, interp, load])).unwrap());
        // This test binary itself is dynamically linked (tests are not built crt-static).
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(!is_static_elf(&me).unwrap());
        assert!(is_static_elf(b"#!/bin/sh\n").is_err());
    }

    #[test]
    fn a_dynamic_init_is_refused_with_the_build_hint() {
        let dir = tempfile::tempdir().unwrap();
        let me = std::env::current_exe().unwrap();
        let err = write_baseline_initrd(&me, &dir.path().join("initrd")).unwrap_err();
        assert!(matches!(err, BaselineError::NotStatic { .. }), "{err}");
        assert!(err.to_string().contains("crt-static"));
        assert!(!dir.path().join("initrd").exists());
    }
}
