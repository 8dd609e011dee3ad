//! Release manifests: what a signed release contains, and the one call that checks a release file.
//!
//! # Body layout
//!
//! The body of a signed release document (kind [`DocumentKind::ReleaseManifest`]) is the
//! postcard encoding of, in order:
//!
//! ```text
//! format          varint u32   = 2 (ReleaseManifest::FORMAT; 1 had no packages); read first, anything else refused
//! version         varint u64   release counter, checked with crate::check_rollback
//! profile         string ≤ 64  e.g. "dev"
//! target          string ≤ 64  e.g. "x86_64-qemu"
//! kernel          artifact     digest (32 raw bytes, BLAKE3) then size (varint u64)
//! initrd          artifact
//! cmdline         artifact
//! kernel_package  string ≤ 128 e.g. "linux-image-6.1.0-56-cloud-amd64"
//! kernel_version  string ≤ 128 e.g. "6.1.0-56-cloud-amd64"
//! packages        varint count ≤ 16, then each: name (string ≤ 64), version (string ≤ 64),
//!                 sha256 (32 raw bytes: SHA-256 of the .deb)
//! ```
//!
//! Strings are a varint byte length then UTF-8. The body is at most 4 KiB and nothing may follow
//! the last field.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use thiserror::Error;

use crate::digest::Digest;
use crate::document::{DocumentKind, SignedDocument, VerifyError};
use crate::limits::{
    DecodeError, Reader, Writer, MAX_BUILD_PACKAGES, MAX_BUILD_STRING_BYTES, MAX_LABEL_BYTES,
    MAX_PACKAGE_STRING_BYTES, MAX_RELEASE_MANIFEST_BYTES,
};
use crate::policy::SignerPolicy;
use crate::signed::{verify_document, DocumentError, SignedBody};

/// A reference to an artifact by content: its BLAKE3 digest and exact size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArtifactRef {
    /// BLAKE3-256 of the artifact bytes.
    pub digest: Digest,
    /// Artifact length in bytes.
    pub size: u64,
}

impl ArtifactRef {
    /// The reference describing `bytes`.
    pub fn of(bytes: &[u8]) -> ArtifactRef {
        ArtifactRef {
            digest: Digest::of(bytes),
            size: bytes.len() as u64,
        }
    }

    /// Checks that `bytes` are the referenced artifact (size and digest); the error names
    /// `artifact_name`, and gives the expected and actual size and digest.
    pub fn check(&self, artifact_name: &str, bytes: &[u8]) -> Result<(), ArtifactMismatch> {
        self.check_found(artifact_name, ArtifactRef::of(bytes))
    }

    /// [`check`](Self::check) for bytes whose size and digest the caller already computed
    /// (stage 0 hashes on all cores, which needs `std`): the same comparison and error.
    pub fn check_found(
        &self,
        artifact_name: &str,
        actual: ArtifactRef,
    ) -> Result<(), ArtifactMismatch> {
        if actual == *self {
            return Ok(());
        }
        Err(ArtifactMismatch {
            artifact: artifact_name.to_string(),
            expected: *self,
            actual,
        })
    }
}

impl fmt::Display for ArtifactRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes, blake3 {}", self.size, self.digest)
    }
}

/// An artifact's bytes are not the ones the release names.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{artifact} does not match the release: expected {expected}, found {actual}")]
pub struct ArtifactMismatch {
    /// Which artifact (e.g. "kernel").
    pub artifact: String,
    /// What the manifest says.
    pub expected: ArtifactRef,
    /// What the bytes are.
    pub actual: ArtifactRef,
}

/// What the release was built from, for people reading a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInputs {
    /// The kernel package, e.g. "linux-image-6.1.0-56-cloud-amd64".
    pub kernel_package: String,
    /// The kernel release string, e.g. "6.1.0-56-cloud-amd64".
    pub kernel_version: String,
    /// The pinned Debian packages whose files travel in the image besides the kernel (the host
    /// tools and their libraries), as the lock file names them.
    pub packages: Vec<BuildPackage>,
}

/// One Debian package a release was built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildPackage {
    /// The package name, e.g. "e2fsprogs".
    pub name: String,
    /// The exact Debian version, e.g. "1.47.0-2+b2".
    pub version: String,
    /// SHA-256 of the `.deb` file.
    pub sha256: [u8; 32],
}

/// The signed description of one release: see the module docs for the byte layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseManifest {
    /// Body format version; [`ReleaseManifest::FORMAT`] for everything this build writes.
    pub format: u32,
    /// Release counter, never decreasing along a release stream.
    pub version: u64,
    /// Build profile, e.g. "dev".
    pub profile: String,
    /// What the release runs on, e.g. "x86_64-qemu".
    pub target: String,
    /// The kernel image.
    pub kernel: ArtifactRef,
    /// The initramfs.
    pub initrd: ArtifactRef,
    /// The kernel command line file.
    pub cmdline: ArtifactRef,
    /// What the release was built from.
    pub build: BuildInputs,
}

/// Why a release file was refused by [`verify_release`]: the steps of [`DocumentError`], with
/// the messages stage 0 and the image builder have always printed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReleaseError {
    /// The signed document envelope could not be decoded.
    #[error("release envelope could not be decoded")]
    DecodeEnvelope(#[source] DecodeError),
    /// The document is not a release, or its signatures do not satisfy the policy.
    #[error("release signatures rejected")]
    Verify(#[source] VerifyError),
    /// The signed body is not a readable release manifest.
    #[error("release manifest could not be decoded")]
    DecodeManifest(#[source] DecodeError),
}

impl ReleaseManifest {
    /// The body format version this build writes and reads.
    pub const FORMAT: u32 = 2;

    /// The canonical body bytes (postcard; see the module docs).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.put(&self.format);
        w.put(&self.version);
        w.text(&self.profile);
        w.text(&self.target);
        for artifact in [&self.kernel, &self.initrd, &self.cmdline] {
            w.array(artifact.digest.as_bytes());
            w.put(&artifact.size);
        }
        w.text(&self.build.kernel_package);
        w.text(&self.build.kernel_version);
        w.count(self.build.packages.len());
        for package in &self.build.packages {
            w.text(&package.name);
            w.text(&package.version);
            w.array(&package.sha256);
        }
        w.finish()
    }

    /// Reads body bytes, with bounded sizes; refuses other format versions and trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<ReleaseManifest, DecodeError> {
        const WHAT: &str = "release manifest";
        let mut r = Reader::new(WHAT, bytes, MAX_RELEASE_MANIFEST_BYTES, 0)?;
        let format: u32 = r.take("manifest format")?;
        if format != Self::FORMAT {
            return Err(DecodeError::UnsupportedFormat {
                what: WHAT,
                found: format,
                supported: Self::FORMAT,
            });
        }
        let version: u64 = r.take("version")?;
        let profile = r.text("profile", MAX_LABEL_BYTES)?.to_string();
        let target = r.text("target", MAX_LABEL_BYTES)?.to_string();
        let kernel = artifact(&mut r, "kernel digest", "kernel size")?;
        let initrd = artifact(&mut r, "initrd digest", "initrd size")?;
        let cmdline = artifact(&mut r, "cmdline digest", "cmdline size")?;
        let kernel_package = r
            .text("kernel package", MAX_BUILD_STRING_BYTES)?
            .to_string();
        let kernel_version = r
            .text("kernel version", MAX_BUILD_STRING_BYTES)?
            .to_string();
        let count = r.count("package count", MAX_BUILD_PACKAGES)?;
        let mut packages = Vec::with_capacity(count);
        for _ in 0..count {
            let name = r
                .text("package name", MAX_PACKAGE_STRING_BYTES)?
                .to_string();
            let version = r
                .text("package version", MAX_PACKAGE_STRING_BYTES)?
                .to_string();
            let sha256 = r.array::<32>("package sha256")?;
            packages.push(BuildPackage {
                name,
                version,
                sha256,
            });
        }
        r.finish(WHAT)?;
        Ok(ReleaseManifest {
            format,
            version,
            profile,
            target,
            kernel,
            initrd,
            cmdline,
            build: BuildInputs {
                kernel_package,
                kernel_version,
                packages,
            },
        })
    }

    /// Checks that this manifest would decode (format, string limits), before signing it.
    pub fn validate(&self) -> Result<(), DecodeError> {
        ReleaseManifest::decode(&self.encode()).map(|_| ())
    }

    /// An unsigned release document holding this manifest, ready for
    /// [`SignedDocument::sign`].
    pub fn to_document(&self) -> SignedDocument {
        SignedDocument::new(DocumentKind::ReleaseManifest, self.encode())
    }

    /// Checks the three boot artifacts against the manifest, naming the first that differs.
    pub fn check_artifacts(
        &self,
        kernel: &[u8],
        initrd: &[u8],
        cmdline: &[u8],
    ) -> Result<(), ArtifactMismatch> {
        self.kernel.check("kernel", kernel)?;
        self.initrd.check("initrd", initrd)?;
        self.cmdline.check("cmdline", cmdline)
    }
}

fn artifact(
    r: &mut Reader<'_>,
    digest_field: &'static str,
    size_field: &'static str,
) -> Result<ArtifactRef, DecodeError> {
    let digest = Digest(r.array::<32>(digest_field)?);
    let size: u64 = r.take(size_field)?;
    Ok(ArtifactRef { digest, size })
}

impl SignedBody for ReleaseManifest {
    const KIND: DocumentKind = DocumentKind::ReleaseManifest;
    const MAX_BYTES: usize = MAX_RELEASE_MANIFEST_BYTES;

    // The inherent methods of the same names (kept for callers that do not import the trait).
    fn encode(&self) -> Vec<u8> {
        ReleaseManifest::encode(self)
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        ReleaseManifest::decode(bytes)
    }
}

impl From<DocumentError> for ReleaseError {
    fn from(e: DocumentError) -> Self {
        match e {
            DocumentError::DecodeEnvelope { source, .. } => ReleaseError::DecodeEnvelope(source),
            DocumentError::Verify { source, .. } => ReleaseError::Verify(source),
            DocumentError::DecodeBody { source, .. } => ReleaseError::DecodeManifest(source),
        }
    }
}

/// Checks a release file: decodes the envelope, requires a release manifest, verifies the
/// signatures against `policy`, and decodes the signed body ([`verify_document`], with the
/// release's own error messages). Artifacts and rollback are the caller's next steps
/// ([`ReleaseManifest::check_artifacts`], [`crate::check_rollback`]).
pub fn verify_release(
    file_bytes: &[u8],
    policy: &SignerPolicy,
) -> Result<(SignedDocument, ReleaseManifest), ReleaseError> {
    let opened = verify_document::<ReleaseManifest>(file_bytes, policy)?;
    Ok((opened.document, opened.body))
}

#[cfg(test)]
mod tests;
