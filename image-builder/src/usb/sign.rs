//! Secure Boot: the UKI signed with Authenticode (a PKCS#7 signature over the PE image's
//! Authenticode SHA-256 digest, in the PE's certificate table), so that UEFI firmware with
//! Secure Boot enabled runs it only when the signer's certificate is in its `db`.
//!
//! No Rust crate signs PE files (the `authenticode` crate hashes and parses, it does not
//! sign), so this runs Debian's `osslsigncode`, chosen over sbsigntool's `sbsign` because it
//! takes the signing time as an argument: with [`sign`]'s `signing_time` fixed (the build's
//! `SOURCE_DATE_EPOCH`) and RSA PKCS#1 v1.5 being deterministic, the same UKI and key give
//! the same signed bytes, and `usb.img` stays reproducible. Firmware does not check the
//! signing time (it has no trusted clock).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The signing program (Debian package `osslsigncode`).
pub const SIGNER: &str = "osslsigncode";

/// Why the UKI could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The key or certificate file is not there.
    #[error("Secure Boot {what} {path} not found (`make keys` makes build/keys/secureboot.key and .crt)")]
    MissingFile {
        /// "key" or "certificate".
        what: &'static str,
        /// The configured file.
        path: PathBuf,
    },
    /// `osslsigncode` is not installed.
    #[error("{SIGNER} not found: install the osslsigncode package (`make deps`)")]
    MissingSigner,
    /// Scratch files for the signer.
    #[error("scratch file for the signer")]
    Scratch(#[source] std::io::Error),
    /// The signer ran and failed.
    #[error("{SIGNER} failed to sign the UKI with {key}: {stderr}")]
    Failed {
        /// The key.
        key: PathBuf,
        /// What it said (its last lines).
        stderr: String,
    },
}

/// `uki` signed with `key` and `cert` (PEM files), its signature dated `signing_time` (Unix
/// seconds). The signed image is `uki` with the signature appended and the PE header's
/// certificate table and checksum updated.
pub fn sign(uki: &[u8], key: &Path, cert: &Path, signing_time: u64) -> Result<Vec<u8>, SignError> {
    check_files(key, cert)?;
    let scratch = tempfile::tempdir().map_err(SignError::Scratch)?;
    let unsigned = scratch.path().join("uki.efi");
    let signed = scratch.path().join("uki.signed.efi");
    std::fs::write(&unsigned, uki).map_err(SignError::Scratch)?;
    let output = Command::new(SIGNER)
        .arg("sign")
        .args(["-h", "sha256"])
        .arg("-certs")
        .arg(cert)
        .arg("-key")
        .arg(key)
        .args(["-time", &signing_time.to_string()])
        .arg("-in")
        .arg(&unsigned)
        .arg("-out")
        .arg(&signed)
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => SignError::MissingSigner,
            _ => SignError::Scratch(e),
        })?;
    if !output.status.success() {
        return Err(SignError::Failed {
            key: key.to_owned(),
            stderr: last_lines(&output.stderr),
        });
    }
    std::fs::read(&signed).map_err(SignError::Scratch)
}

/// Whether the key and certificate files are there (a cheap check before the slow steps).
pub fn check_files(key: &Path, cert: &Path) -> Result<(), SignError> {
    for (what, path) in [("key", key), ("certificate", cert)] {
        if !path.is_file() {
            return Err(SignError::MissingFile {
                what,
                path: path.to_owned(),
            });
        }
    }
    Ok(())
}

/// The last few non-empty lines of a tool's output, joined into one line.
fn last_lines(output: &[u8]) -> String {
    let text = String::from_utf8_lossy(output);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let from = lines.len().saturating_sub(3);
    lines[from..].join(" / ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A throwaway RSA key and self-signed certificate made with openssl.
    fn test_key(dir: &Path) -> (PathBuf, PathBuf) {
        let (key, cert) = (dir.join("sb.key"), dir.join("sb.crt"));
        let status = Command::new("openssl")
            .args([
                "req", "-new", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
            ])
            .args(["-days", "3650", "-subj", "/CN=NullOS unit test/"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("openssl (package openssl): {e}"));
        assert!(status.success(), "openssl req failed");
        (key, cert)
    }

    /// The PE certificate table's data directory entry (offset, size).
    fn certificate_table(pe: &[u8]) -> (u32, u32) {
        let u32_at = |at: usize| u32::from_le_bytes(pe[at..at + 4].try_into().unwrap());
        let header = u32_at(0x3c) as usize;
        // PE32+: signature (4) + COFF header (20) + optional header fields up to the data
        // directories (112); the certificate table is entry 4 (8 bytes each).
        let entry = header + 4 + 20 + 112 + 4 * 8;
        (u32_at(entry), u32_at(entry + 4))
    }

    #[test]
    fn signing_appends_a_certificate_table_and_is_reproducible() {
        let stub = std::fs::read(crate::usb::DEFAULT_STUB)
            .unwrap_or_else(|e| panic!("{}: {e} (systemd-boot-efi)", crate::usb::DEFAULT_STUB));
        let dir = tempfile::tempdir().unwrap();
        let (key, cert) = test_key(dir.path());
        let signed = sign(&stub, &key, &cert, 0).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(certificate_table(&stub), (0, 0), "the stub is unsigned");
        let (offset, size) = certificate_table(&signed);
        assert!(offset as usize >= stub.len(), "table at {offset}");
        assert_eq!(offset as usize + size as usize, signed.len());
        // WIN_CERTIFICATE: revision 0x0200, type PKCS_SIGNED_DATA (2).
        let at = offset as usize;
        assert_eq!(&signed[at + 4..at + 8], &[0x00, 0x02, 0x02, 0x00]);
        assert_eq!(
            sign(&stub, &key, &cert, 0).unwrap_or_else(|e| panic!("{e}")),
            signed,
            "same input, key and time: same bytes"
        );
        assert_ne!(
            sign(&stub, &key, &cert, 1).unwrap_or_else(|e| panic!("{e}")),
            signed,
            "the signing time is in the signature"
        );
    }

    #[test]
    fn a_missing_key_is_named() {
        let err = sign(b"MZ", Path::new("/nonexistent/sb.key"), Path::new("/x"), 0).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/sb.key"), "{err}");
    }

    #[test]
    fn a_file_that_is_not_a_pe_image_is_refused_with_the_tool_s_words() {
        let dir = tempfile::tempdir().unwrap();
        let (key, cert) = test_key(dir.path());
        let err = sign(b"not a PE image", &key, &cert, 0).unwrap_err();
        assert!(matches!(err, SignError::Failed { .. }), "{err}");
    }
}
