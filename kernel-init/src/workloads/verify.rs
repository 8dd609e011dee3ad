//! Verifying a workload before anything of it is used: the signed manifest against the node's
//! signer policy, then each artifact's size and BLAKE3, streamed from disk with a bounded
//! buffer (a root image can be far larger than what PID 1 should hold in memory).

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use trust::{ArtifactRef, Digest, Hasher, PublicKey, SignerPolicy, WorkloadManifest};

// The manifest file and the root image in a workload folder.
pub use interfaces::paths::{
    WORKLOAD_MANIFEST_FILE as MANIFEST_FILE, WORKLOAD_ROOT_FILE as ROOT_FILE,
};
/// Largest manifest file read (the trust crate bounds the body at 64 KiB; signatures add little).
const MAX_MANIFEST_FILE: u64 = 256 * 1024;
/// Read size when hashing an artifact.
const CHUNK: usize = 1 << 20;

/// Why a workload was refused. The `Display` text is the reason in the refusal line.
#[derive(Debug, thiserror::Error)]
pub enum RefusalError {
    /// The signer policy could not be read or parsed.
    #[error("policy {path}: {message}")]
    Policy {
        /// The policy file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The manifest file could not be read.
    #[error("cannot read {MANIFEST_FILE}")]
    ReadManifest(#[source] std::io::Error),
    /// The manifest file is larger than any manifest can be.
    #[error("{MANIFEST_FILE} is {0} bytes, over the {MAX_MANIFEST_FILE}-byte limit")]
    ManifestTooLarge(u64),
    /// The manifest's signatures or contents were rejected.
    #[error("{MANIFEST_FILE}")]
    Manifest(#[source] trust::WorkloadError),
    /// The signed name is not the folder's name.
    #[error("the manifest names workload '{0}'")]
    NameMismatch(String),
    /// The manifest asks for its own kernel or initramfs, which this node does not run yet.
    #[error("the manifest brings its own {0}, which this node does not support")]
    OwnBootArtifact(&'static str),
    /// An artifact could not be read.
    #[error("cannot read {artifact}")]
    ReadArtifact {
        /// Which artifact.
        artifact: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An artifact's size is not the signed one.
    #[error("{artifact}: size {actual} does not match the manifest's {expected}")]
    Size {
        /// Which artifact.
        artifact: &'static str,
        /// The signed size.
        expected: u64,
        /// The file's size.
        actual: u64,
    },
    /// An artifact's digest is not the signed one.
    #[error("{artifact}: blake3 {actual} does not match the manifest's {expected}")]
    Digest {
        /// Which artifact.
        artifact: &'static str,
        /// The signed digest.
        expected: Digest,
        /// The file's digest.
        actual: Digest,
    },
}

impl RefusalError {
    /// The refusal line: `nullos: refused workload <name> <artifact>: ...` for artifact
    /// mismatches, `nullos: refused workload <name>: <reason>` for everything else.
    pub fn line(&self, name: &str) -> String {
        match self {
            RefusalError::Size { .. } | RefusalError::Digest { .. } => {
                format!("nullos: refused workload {name} {self}")
            }
            _ => format!(
                "nullos: refused workload {name}: {}",
                crate::error_chain(self)
            ),
        }
    }
}

/// Parses the node's signer policy: a policy file or a single public key (as stage 0 does).
pub fn parse_policy(text: &str) -> Result<SignerPolicy, String> {
    match SignerPolicy::from_text(text) {
        Ok(policy) => Ok(policy),
        Err(policy_error) => PublicKey::from_text(text.trim())
            .map(SignerPolicy::single)
            .map_err(|_| crate::error_chain(&policy_error)),
    }
}

/// Reads the policy file.
pub fn load_policy(path: &Path) -> Result<SignerPolicy, RefusalError> {
    let refuse = |message: String| RefusalError::Policy {
        path: path.to_owned(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| refuse(e.to_string()))?;
    parse_policy(&text).map_err(refuse)
}

/// Verifies the manifest of the workload in `dir` (named `name`, the folder's name) against
/// `policy`, then its root image. Returns the manifest only when everything matches.
pub fn verify_dir(
    dir: &Path,
    name: &str,
    policy: &SignerPolicy,
) -> Result<WorkloadManifest, RefusalError> {
    let file = File::open(dir.join(MANIFEST_FILE)).map_err(RefusalError::ReadManifest)?;
    let len = file.metadata().map_err(RefusalError::ReadManifest)?.len();
    if len > MAX_MANIFEST_FILE {
        return Err(RefusalError::ManifestTooLarge(len));
    }
    let mut bytes = Vec::new();
    file.take(MAX_MANIFEST_FILE)
        .read_to_end(&mut bytes)
        .map_err(RefusalError::ReadManifest)?;
    let manifest = verify_manifest(&bytes, name, policy)?;
    let root = File::open(dir.join(ROOT_FILE)).map_err(|source| RefusalError::ReadArtifact {
        artifact: ROOT_FILE,
        source,
    })?;
    check_artifact(ROOT_FILE, root, &manifest.root)?;
    Ok(manifest)
}

/// Checks the manifest bytes: signatures (threshold, required members), contents, and that it
/// names this workload and needs nothing this node cannot give it.
pub fn verify_manifest(
    bytes: &[u8],
    name: &str,
    policy: &SignerPolicy,
) -> Result<WorkloadManifest, RefusalError> {
    let manifest = trust::verify_workload(bytes, policy).map_err(RefusalError::Manifest)?;
    if manifest.name != name {
        return Err(RefusalError::NameMismatch(manifest.name));
    }
    if manifest.kernel.is_some() {
        return Err(RefusalError::OwnBootArtifact("kernel"));
    }
    if manifest.initrd.is_some() {
        return Err(RefusalError::OwnBootArtifact("initrd"));
    }
    Ok(manifest)
}

/// Streams `reader` through BLAKE3 and compares size and digest with `expected`. Reads at most
/// one byte past the signed size, so a file that grew is caught without reading all of it.
pub fn check_artifact(
    artifact: &'static str,
    reader: impl Read,
    expected: &ArtifactRef,
) -> Result<(), RefusalError> {
    let mut reader = reader.take(expected.size.saturating_add(1));
    let mut hasher = Hasher::new();
    let mut buffer = vec![0u8; CHUNK];
    let mut total: u64 = 0;
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(RefusalError::ReadArtifact { artifact, source }),
        };
        let chunk = buffer.get(..n).unwrap_or(&[]);
        hasher.update(chunk);
        total += n as u64;
    }
    if total != expected.size {
        return Err(RefusalError::Size {
            artifact,
            expected: expected.size,
            // Past the signed size only "more" is known.
            actual: total,
        });
    }
    let actual = hasher.finalize();
    if actual != expected.digest {
        return Err(RefusalError::Digest {
            artifact,
            expected: expected.digest,
            actual,
        });
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::Cursor;

    use super::*;

    #[test]
    fn a_matching_artifact_passes_and_a_flipped_byte_names_both_digests() {
        let data = vec![7u8; 3 * CHUNK + 5];
        let expected = ArtifactRef::of(&data);
        assert!(check_artifact(ROOT_FILE, Cursor::new(&data), &expected).is_ok());
        let mut bad = data.clone();
        bad[CHUNK + 1] ^= 1;
        let err = check_artifact(ROOT_FILE, Cursor::new(&bad), &expected).unwrap_err();
        let actual = Digest::of(&bad);
        assert_eq!(
            err.line("hello"),
            format!(
                "nullos: refused workload hello root.img: blake3 {} does not match the manifest's {}",
                actual.to_hex(),
                expected.digest.to_hex()
            )
        );
    }

    #[test]
    fn size_mismatches_are_refused_and_reading_stops_past_the_signed_size() {
        let data = b"0123456789".to_vec();
        let expected = ArtifactRef::of(&data[..4]);
        let err = check_artifact(ROOT_FILE, Cursor::new(&data), &expected).unwrap_err();
        assert!(
            matches!(
                err,
                RefusalError::Size {
                    expected: 4,
                    actual: 5,
                    ..
                }
            ),
            "{err:?}"
        );
        let short = ArtifactRef::of(&[0u8; 20]);
        let err = check_artifact(ROOT_FILE, Cursor::new(&data), &short).unwrap_err();
        assert_eq!(
            err.line("w"),
            "nullos: refused workload w root.img: size 10 does not match the manifest's 20"
        );
    }

    pub(crate) fn manifest(name: &str, root: &[u8]) -> WorkloadManifest {
        WorkloadManifest {
            format: WorkloadManifest::FORMAT,
            name: name.into(),
            version: 4,
            root: ArtifactRef::of(root),
            kernel: None,
            initrd: None,
            entrypoint: vec!["/bin/hello".into(), "--loud".into()],
            env: vec![("GREETING".into(), "hi \"there\"".into())],
            workdir: "/".into(),
            vcpus: 2,
            memory_mib: 128,
            volumes: vec![trust::VolumeSpec {
                name: "data".into(),
                mount: "/data".into(),
                size_mib: 16,
            }],
            network: true,
            restart: trust::RestartPolicy::OnFailure,
        }
    }

    fn signed(manifest: &WorkloadManifest, seed: u8) -> Vec<u8> {
        let mut document = manifest.to_document();
        document
            .sign(&trust::SecretKey::from_seed([seed; 32]))
            .unwrap();
        document.encode()
    }

    #[test]
    fn signed_manifests_verify_for_their_folder_and_signer_only() {
        let policy = SignerPolicy::single(trust::SecretKey::from_seed([1; 32]).public());
        let m = manifest("hello", b"root");
        let got = verify_manifest(&signed(&m, 1), "hello", &policy).unwrap();
        assert_eq!(got, m);
        let err = verify_manifest(&signed(&m, 2), "hello", &policy).unwrap_err();
        assert!(matches!(err, RefusalError::Manifest(_)), "{err:?}");
        let err = verify_manifest(&signed(&m, 1), "other", &policy).unwrap_err();
        assert_eq!(
            err.line("other"),
            "nullos: refused workload other: the manifest names workload 'hello'"
        );
        let mut own = m.clone();
        own.kernel = Some(ArtifactRef::of(b"k"));
        let err = verify_manifest(&signed(&own, 1), "hello", &policy).unwrap_err();
        assert!(matches!(err, RefusalError::OwnBootArtifact("kernel")));
    }

    #[test]
    fn garbage_manifests_and_policies_are_refusals_not_panics() {
        let key = trust::SecretKey::from_seed([1; 32]).public();
        let policy = SignerPolicy::single(key);
        for bytes in [&b""[..], b"garbage", &[0xff; 300]] {
            let err = verify_manifest(bytes, "hello", &policy).unwrap_err();
            assert!(
                err.line("hello")
                    .starts_with("nullos: refused workload hello: workload.manifest"),
                "{}",
                err.line("hello")
            );
        }
        assert!(parse_policy("not a policy").is_err());
        assert!(parse_policy(&key.to_text()).is_ok());
    }
}
