//! The signed release: making it, co-signing it, and verifying a release folder.

use std::path::{Path, PathBuf};

use trust::{
    ArtifactRef, BuildInputs, Digest, DocumentKind, ReleaseManifest, SecretKey, SignedDocument,
    SignerPolicy,
};

// The file names of a release folder (the same on the release partition and at a release URL).
pub use interfaces::paths::{
    RELEASE_CMDLINE_FILE as CMDLINE_FILE, RELEASE_INITRD_FILE as INITRD_FILE,
    RELEASE_KERNEL_FILE as KERNEL_FILE, RELEASE_MANIFEST_FILE as MANIFEST_FILE,
};

/// Why a release could not be made, co-signed or verified.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// A file of the release could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `release.manifest` failed verification (decoding, kind, signatures, policy).
    #[error("{MANIFEST_FILE}")]
    Manifest(#[source] trust::ReleaseError),
    /// `release.manifest` could not be decoded for co-signing.
    #[error("{MANIFEST_FILE}")]
    Decode(#[source] trust::DecodeError),
    /// `release.manifest` holds another kind of document.
    #[error("{MANIFEST_FILE} holds a {0}, not a release manifest")]
    NotARelease(&'static str),
    /// An artifact does not match the manifest.
    #[error("artifact does not match the signed manifest")]
    Artifact(#[source] trust::ArtifactMismatch),
    /// Signing failed.
    #[error("signing")]
    Sign(#[source] trust::SignError),
}

/// Builds the manifest for the three boot artifacts.
pub fn manifest(
    version: u64,
    profile: &str,
    target: &str,
    kernel: &[u8],
    initrd: &[u8],
    cmdline: &[u8],
    build: BuildInputs,
) -> ReleaseManifest {
    let artifact = |bytes: &[u8]| ArtifactRef {
        digest: Digest::of(bytes),
        size: bytes.len() as u64,
    };
    ReleaseManifest {
        format: ReleaseManifest::FORMAT,
        version,
        profile: profile.to_owned(),
        target: target.to_owned(),
        kernel: artifact(kernel),
        initrd: artifact(initrd),
        cmdline: artifact(cmdline),
        build,
    }
}

/// Encodes and signs a manifest with every key: the bytes of `release.manifest`.
pub fn sign(manifest: &ReleaseManifest, keys: &[SecretKey]) -> Result<Vec<u8>, ReleaseError> {
    let mut doc = SignedDocument::new(DocumentKind::ReleaseManifest, manifest.encode());
    for key in keys {
        doc.sign(key).map_err(ReleaseError::Sign)?;
    }
    Ok(doc.encode())
}

fn read(path: &Path) -> Result<Vec<u8>, ReleaseError> {
    std::fs::read(path).map_err(|source| ReleaseError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Adds a co-signature to the release in `dir` without rebuilding anything.
pub fn cosign(dir: &Path, key: &SecretKey) -> Result<(), ReleaseError> {
    let path = dir.join(MANIFEST_FILE);
    let bytes = read(&path)?;
    let mut doc = SignedDocument::decode(&bytes).map_err(ReleaseError::Decode)?;
    if doc.kind() != DocumentKind::ReleaseManifest {
        return Err(ReleaseError::NotARelease(doc.kind().name()));
    }
    doc.sign(key).map_err(ReleaseError::Sign)?;
    let bytes = doc.encode();
    // The PXE bundle serves its own copy of the manifest.
    let copy = dir
        .join(crate::pxe::PXE_DIR)
        .join(crate::pxe::RELEASE_DIR)
        .join(MANIFEST_FILE);
    if copy.is_file() {
        std::fs::write(&copy, &bytes).map_err(|source| ReleaseError::Write {
            path: copy.clone(),
            source,
        })?;
    }
    std::fs::write(&path, bytes).map_err(|source| ReleaseError::Write { path, source })
}

/// What a successful verification found.
#[derive(Debug)]
pub struct VerifiedRelease {
    /// The manifest.
    pub manifest: ReleaseManifest,
    /// The public keys whose signatures verified and count under the policy.
    pub signers: Vec<String>,
    /// Every artifact file that was checked against the manifest.
    pub checked: Vec<PathBuf>,
}

/// Verifies the release in `dir`: the manifest's signatures against `policy`, then every
/// artifact (and the PXE bundle's copies, when present) against its digest and size.
pub fn verify_dir(dir: &Path, policy: &SignerPolicy) -> Result<VerifiedRelease, ReleaseError> {
    let bytes = read(&dir.join(MANIFEST_FILE))?;
    let (doc, manifest) = trust::verify_release(&bytes, policy).map_err(ReleaseError::Manifest)?;
    let mut checked = Vec::new();
    let mut artifacts: Vec<(PathBuf, &ArtifactRef)> = vec![
        (dir.join(KERNEL_FILE), &manifest.kernel),
        (dir.join(INITRD_FILE), &manifest.initrd),
        (dir.join(CMDLINE_FILE), &manifest.cmdline),
    ];
    // The PXE bundle's copies: the release under pxe/release/ (stage 0 bundles, whose
    // pxe/kernel and pxe/initrd are the boot image), or the node's kernel and initramfs.
    let pxe = dir.join(crate::pxe::PXE_DIR);
    let pxe_release = pxe.join(crate::pxe::RELEASE_DIR);
    let copies: &[(&str, &ArtifactRef)] = if pxe_release.is_dir() {
        &[
            (KERNEL_FILE, &manifest.kernel),
            (INITRD_FILE, &manifest.initrd),
            (CMDLINE_FILE, &manifest.cmdline),
        ]
    } else {
        &[
            (KERNEL_FILE, &manifest.kernel),
            (INITRD_FILE, &manifest.initrd),
        ]
    };
    let copy_dir = if pxe_release.is_dir() {
        &pxe_release
    } else {
        &pxe
    };
    for (file, artifact) in copies {
        let copy = copy_dir.join(file);
        if copy.exists() {
            artifacts.push((copy, *artifact));
        }
    }
    for (path, artifact) in artifacts {
        let bytes = read(&path)?;
        let name = path
            .strip_prefix(dir)
            .unwrap_or(&path)
            .display()
            .to_string();
        artifact
            .check(&name, &bytes)
            .map_err(ReleaseError::Artifact)?;
        checked.push(path);
    }
    let signers = doc.signers().map(|k| k.to_text()).collect();
    Ok(VerifiedRelease {
        manifest,
        signers,
        checked,
    })
}
