//! `image-builder inspect`: show what a release, manifest, initramfs or USB image contains (no
//! verification).

use std::fmt::Write as _;
use std::path::Path;

use trust::{DocumentKind, ReleaseManifest, SignedDocument};

use crate::compress::decompress_any;
use crate::initrd::list_entries;
use crate::release::MANIFEST_FILE;

/// Largest file `inspect` reads, and largest initramfs it unpacks.
pub const MAX_INSPECT_BYTES: u64 = 1 << 30;

/// Why something could not be inspected.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The contents are not something we know, or are malformed.
    #[error("{path}: {problem}")]
    Unrecognised {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        problem: String,
    },
}

/// A human-readable description of `path` (a release folder, a `release.manifest`, an
/// initramfs, or a `usb.img`).
pub fn describe(path: &Path) -> Result<String, InspectError> {
    let file = if path.is_dir() {
        path.join(MANIFEST_FILE)
    } else {
        path.to_owned()
    };
    let bytes = std::fs::read(&file).map_err(|source| InspectError::Read {
        path: file.clone(),
        source,
    })?;
    let unrecognised = |problem: String| InspectError::Unrecognised {
        path: file.clone(),
        problem,
    };
    if bytes.len() as u64 > MAX_INSPECT_BYTES {
        return Err(unrecognised("file too large".into()));
    }
    if let Ok(doc) = SignedDocument::decode(&bytes) {
        return describe_document(&doc).map_err(unrecognised);
    }
    if crate::usb::is_gpt_disk(&bytes) {
        return crate::usb::describe(&bytes).map_err(|e| unrecognised(error_chain(&e)));
    }
    let cpio =
        decompress_any(&bytes, MAX_INSPECT_BYTES).map_err(|e| unrecognised(e.to_string()))?;
    let entries = list_entries(&cpio).map_err(|_| {
        unrecognised(
            "neither a signed document nor an initramfs (cpio newc, optionally zstd/gzip/xz)"
                .into(),
        )
    })?;
    let mut out = format!(
        "initramfs: {} entries, {} bytes uncompressed\n",
        entries.len(),
        cpio.len()
    );
    for e in entries {
        let _ = writeln!(out, "{:06o} {:>9} /{}", e.mode, e.size, e.path);
    }
    Ok(out)
}

/// An error and its sources on one line.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

fn describe_document(doc: &SignedDocument) -> Result<String, String> {
    let mut out = String::new();
    match doc.kind() {
        DocumentKind::ReleaseManifest => {
            let m = ReleaseManifest::decode(doc.body()).map_err(|e| e.to_string())?;
            let _ = writeln!(
                out,
                "release manifest (NOT verified; use `image-builder verify`)"
            );
            let _ = writeln!(out, "  version   {}", m.version);
            let _ = writeln!(out, "  profile   {}", m.profile);
            let _ = writeln!(out, "  target    {}", m.target);
            for (name, a) in [
                ("kernel", &m.kernel),
                ("initrd", &m.initrd),
                ("cmdline", &m.cmdline),
            ] {
                let _ = writeln!(out, "  {name:<9} blake3 {} size {}", a.digest, a.size);
            }
            let _ = writeln!(
                out,
                "  built from {} {}",
                m.build.kernel_package, m.build.kernel_version
            );
            for p in &m.build.packages {
                let sha: String = p.sha256.iter().map(|b| format!("{b:02x}")).collect();
                let _ = writeln!(out, "  package   {} {} sha256 {sha}", p.name, p.version);
            }
        }
        other => {
            let _ = writeln!(
                out,
                "{other:?} ({} body bytes; NOT verified)",
                doc.body().len()
            );
        }
    }
    for key in doc.signers() {
        let _ = writeln!(out, "  signed by {key}");
    }
    Ok(out)
}
