//! Secure Boot: the UKI signed with Authenticode (a PKCS#7 signature over the PE image's
//! Authenticode SHA-256 digest, in the PE's certificate table), so that UEFI firmware with
//! Secure Boot enabled runs it only when the signer's certificate is in its `db`; and the
//! release kernel signed the same way, because the boot kernel, locked down under Secure Boot,
//! kexecs only kernels signed by a key it trusts (`db`'s certificates among them).
//!
//! No Rust crate signs PE files (the `authenticode` crate hashes and parses, it does not
//! sign), so this runs Debian's `osslsigncode`, chosen over sbsigntool's `sbsign` because it
//! takes the signing time as an argument: with the signing time fixed (the certificate's own
//! `notBefore`, see [`signing_time`]) and RSA PKCS#1 v1.5 being deterministic, the same image,
//! key and certificate give the same signed bytes, and `usb.img` stays reproducible. Firmware
//! does not check the signing time (it has no trusted clock), but Linux does when it verifies a
//! kexec'ed kernel: a time outside the certificate's validity is rejected (EKEYREJECTED).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The signing program (Debian package `osslsigncode`).
pub const SIGNER: &str = "osslsigncode";

/// Why the UKI or the release kernel could not be signed.
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
    /// The certificate's validity start could not be read.
    #[error("cannot read notBefore of certificate {path}: {reason}")]
    Certificate {
        /// The certificate.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The signer ran and failed.
    #[error("{SIGNER} failed to sign with {key}: {stderr}")]
    Failed {
        /// The key.
        key: PathBuf,
        /// What it said (its last lines).
        stderr: String,
    },
}

/// The signing time of everything `cert` signs: its `notBefore` (Unix seconds), read with
/// `openssl x509`. Fixed for a certificate (reproducible) and inside its validity window.
pub fn signing_time(cert: &Path) -> Result<u64, SignError> {
    let problem = |reason: String| SignError::Certificate {
        path: cert.to_owned(),
        reason,
    };
    let output = Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-startdate",
            "-dateopt",
            "iso_8601",
            "-in",
        ])
        .arg(cert)
        .output()
        .map_err(|e| problem(format!("openssl (package openssl): {e}")))?;
    if !output.status.success() {
        return Err(problem(last_lines(&output.stderr)));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    parse_not_before(text.trim()).ok_or_else(|| problem(format!("unexpected {text:?}")))
}

/// `notBefore=YYYY-MM-DD hh:mm:ssZ` → Unix seconds.
fn parse_not_before(line: &str) -> Option<u64> {
    let stamp = line.strip_prefix("notBefore=")?.strip_suffix('Z')?;
    let (date, time) = stamp.split_once(' ')?;
    let mut d = date.splitn(3, '-').map(str::parse::<i64>);
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.splitn(3, ':').map(str::parse::<i64>);
    let (hh, mm, ss) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar (Howard Hinnant's
    // days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

/// `image` (a PE file: the UKI, or a kernel's bzImage, whose existing signature is replaced)
/// signed with `key` and `cert` (PEM files), its signature dated `signing_time` (Unix
/// seconds). The signed image is `image` with the signature appended and the PE header's
/// certificate table and checksum updated.
pub fn sign(
    image: &[u8],
    key: &Path,
    cert: &Path,
    signing_time: u64,
) -> Result<Vec<u8>, SignError> {
    check_files(key, cert)?;
    let scratch = tempfile::tempdir().map_err(SignError::Scratch)?;
    let unsigned = scratch.path().join("image.efi");
    let signed = scratch.path().join("image.signed.efi");
    std::fs::write(&unsigned, image).map_err(SignError::Scratch)?;
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
    fn not_before_is_read_as_unix_seconds() {
        assert_eq!(parse_not_before("notBefore=1970-01-01 00:00:00Z"), Some(0));
        assert_eq!(
            parse_not_before("notBefore=2026-12-05 12:43:56Z"),
            Some(1_796_474_636)
        );
        assert_eq!(
            parse_not_before("notBefore=2000-03-01 00:00:00Z"),
            Some(951_868_800)
        );
        assert_eq!(parse_not_before("notBefore=2026-13-05 12:43:56Z"), None);
        assert_eq!(parse_not_before("notAfter=2026-12-05 12:43:56Z"), None);
        let dir = tempfile::tempdir().unwrap();
        let (_, cert) = test_key(dir.path());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let start = signing_time(&cert).unwrap_or_else(|e| panic!("{e}"));
        assert!(start <= now && start + 3600 > now, "{start} vs {now}");
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
