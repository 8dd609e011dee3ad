//! The baseline initramfs: `/dev/console` and a static `/init` (the `baseline-init` binary of this
//! crate), nothing else.
//!
//! `/dev/console` must be in the archive: the kernel opens it as PID 1's stdin/stdout/stderr
//! before running `/init`, and devtmpfs is not mounted for an initramfs root.
//!
//! The cpio is written with the `initramfs` crate (as NullOS images are) and compressed with
//! zstd, so both sides of the comparison pay the same kind of decompression.

use std::io;
use std::path::{Path, PathBuf};

use initramfs::{ElfError, Writer};

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
    /// The binary is not a 64-bit x86-64 ELF executable.
    #[error("{path} is not a 64-bit ELF executable")]
    NotElf {
        /// The binary.
        path: PathBuf,
        /// Why.
        #[source]
        source: ElfError,
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
    /// Compressing or writing the archive failed.
    #[error("cannot write the baseline initramfs {path}")]
    WriteInitrd {
        /// The output file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Assembling the archive failed.
    #[error("cannot write the baseline initramfs {path}")]
    Archive {
        /// The output file.
        path: PathBuf,
        /// Why.
        #[source]
        source: initramfs::Error,
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

/// The uncompressed newc archive: `/dev`, `/dev/console`, `/init` = `init_binary`.
pub fn baseline_cpio(init_binary: &[u8]) -> Result<Vec<u8>, initramfs::Error> {
    let mut archive = Writer::new(Vec::with_capacity(init_binary.len() + 1024), 0);
    archive.char_device("dev/console", CONSOLE_DEV.0, CONSOLE_DEV.1, 0o600)?;
    archive.file("init", 0o755, init_binary)?;
    archive.finish()
}

/// Writes the zstd-compressed baseline initramfs for the static binary at `init_path` to `out`.
pub fn write_baseline_initrd(init_path: &Path, out: &Path) -> Result<(), BaselineError> {
    let init = std::fs::read(init_path).map_err(|source| BaselineError::ReadInit {
        path: init_path.to_path_buf(),
        source,
    })?;
    match initramfs::check_static_executable(&init) {
        Ok(()) => {}
        Err(ElfError::Dynamic) => {
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
    let cpio = baseline_cpio(&init).map_err(|source| BaselineError::Archive {
        path: out.to_path_buf(),
        source,
    })?;
    let compressed = zstd::stream::encode_all(cpio.as_slice(), ZSTD_LEVEL).map_err(write_err)?;
    std::fs::write(out, compressed).map_err(write_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_archive_holds_dev_console_and_init() {
        let cpio = baseline_cpio(b"\x7fELF fake").unwrap();
        let mut seen = Vec::new();
        for e in initramfs::Reader::new(&cpio) {
            let e = e.unwrap();
            let h = e.header;
            let entry = (
                e.name.to_string(),
                h.mode,
                h.rdev_major,
                h.rdev_minor,
                h.uid,
                h.filesize,
            );
            seen.push((entry, e.data.to_vec()));
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
