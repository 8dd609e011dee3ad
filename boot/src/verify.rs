//! What to boot, or which refusal line to print: the pure decision of stage 0.
//!
//! [`verify`] reads a release through a [`Source`] (the medium in `boot`, a map of buffers in
//! the tests) in an order that bounds every read by what is already trusted: first the manifest
//! (capped at the format's own limit), its signatures against the policy, its profile and
//! target against the boot image's, and its version against the floor (the highest accepted on
//! this machine, at least the boot image's minimum); then each artifact, whose size the signed manifest states, so
//! an artifact larger than signed is refused before a byte of it is read; it is read once into a
//! buffer of the signed size and hashed on all cores while it is read ([`crate::digest`]). The
//! bytes returned in [`Verified`] are exactly the ones hashed; the caller boots those and
//! re-reads nothing.

use std::fmt;
use std::io::{Cursor, Read};

use interfaces::BootImageConfig;
use trust::{
    check_rollback, limits::MAX_RELEASE_MANIFEST_BYTES, verify_document, ReleaseError,
    ReleaseManifest, SignerPolicy,
};

// The file names of the release on the medium and at a release URL.
pub use interfaces::paths::{
    RELEASE_CMDLINE_FILE as CMDLINE_FILE, RELEASE_INITRD_FILE as INITRD_FILE,
    RELEASE_KERNEL_FILE as KERNEL_FILE, RELEASE_MANIFEST_FILE as MANIFEST_FILE,
};

/// Largest command line accepted (the x86 boot protocol's limit is 2048 bytes with the NUL).
pub const MAX_CMDLINE_BYTES: u64 = 2047;

/// A release medium, read one whole file at a time.
pub trait Source {
    /// The length of `name`, or why it cannot be known. `max` is the most that will then be
    /// read of it (a network source scales its deadline to it).
    fn len(&mut self, name: &str, max: u64) -> Result<u64, String>;
    /// The whole of `name`, refusing more than `max` bytes.
    fn read(&mut self, name: &str, max: u64) -> Result<Vec<u8>, String>;
    /// `name` as a stream read once from its start, of which [`verify`] takes the `max` bytes
    /// signed and then checks that it ends. The default reads the whole file with
    /// [`Source::read`] first; a source that can hand its bytes over as they come returns a
    /// reader of them, so that they are hashed while the rest is read.
    fn open(&mut self, name: &str, max: u64) -> Result<Box<dyn Read + '_>, String> {
        let bytes = self.read(name, max)?;
        Ok(Box::new(Cursor::new(bytes)))
    }
}

/// Why stage 0 will not boot what it found: one console line,
/// `nullos: refused <artifact>: <reason>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What failed: `medium`, `state`, `release.manifest`, `kernel`, `initrd`, `cmdline`.
    pub artifact: String,
    /// Why, with the expected and actual values.
    pub reason: String,
}

impl Refusal {
    /// A refusal of `artifact` for `reason`.
    pub fn new(artifact: &str, reason: impl Into<String>) -> Refusal {
        Refusal {
            artifact: artifact.to_owned(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "nullos: refused {}: {}", self.artifact, self.reason)
    }
}

/// A release that passed every check, with the verified bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The signed manifest.
    pub manifest: ReleaseManifest,
    /// The manifest file as read (signatures included), for the release cache.
    pub manifest_file: Vec<u8>,
    /// Names of the policy members whose signatures verified, in policy order.
    pub signers: Vec<String>,
    /// The kernel image, as hashed.
    pub kernel: Vec<u8>,
    /// The initramfs, as hashed.
    pub initrd: Vec<u8>,
    /// The command line file, as hashed.
    pub cmdline: Vec<u8>,
}

impl Verified {
    /// The success line: `nullos: verified release version=<v> profile=<p> signers=<names>
    /// kernel=<blake3> initrd=<blake3> cmdline=<blake3>`.
    pub fn line(&self) -> String {
        let m = &self.manifest;
        format!(
            "nullos: verified release version={} profile={} signers={} kernel={} initrd={} cmdline={}",
            m.version,
            m.profile,
            self.signers.join(","),
            m.kernel.digest,
            m.initrd.digest,
            m.cmdline.digest,
        )
    }
}

/// Reads and checks one release from `source` against `policy`, the boot image's profile,
/// target and minimum version (`image`), and the highest version this machine accepted before.
pub fn verify(
    source: &mut dyn Source,
    policy: &SignerPolicy,
    image: &BootImageConfig,
    highest_seen: u64,
) -> Result<Verified, Refusal> {
    let checked = verify_manifest(source, policy, image, highest_seen)?;
    verify_artifacts(source, checked)
}

/// A manifest whose signatures, profile, target and version passed ([`verify_manifest`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedManifest {
    /// The signed manifest.
    pub manifest: ReleaseManifest,
    /// The file as read.
    pub file: Vec<u8>,
    /// Names of the policy members whose signatures verified.
    pub signers: Vec<String>,
}

/// The first half of [`verify`]: the manifest of `source`, its signatures, profile, target
/// and version checked; with the names of the signers that verified. Stage 0 reads this much of
/// every source to choose which release to boot before it reads any artifact.
pub fn verify_manifest(
    source: &mut dyn Source,
    policy: &SignerPolicy,
    image: &BootImageConfig,
    highest_seen: u64,
) -> Result<CheckedManifest, Refusal> {
    let file = source
        .read(MANIFEST_FILE, MAX_RELEASE_MANIFEST_BYTES as u64)
        .map_err(|e| Refusal::new(MANIFEST_FILE, e))?;
    let opened = verify_document::<ReleaseManifest>(&file, policy).map_err(|e| {
        Refusal::new(
            MANIFEST_FILE,
            format!(
                "{} ({})",
                chain(&ReleaseError::from(e)),
                policy_summary(policy)
            ),
        )
    })?;
    let manifest = opened.body;
    if (manifest.profile.as_str(), manifest.target.as_str())
        != (image.profile.as_str(), image.target.as_str())
    {
        return Err(Refusal::new(
            MANIFEST_FILE,
            format!(
                "a release for profile {} target {}; this boot image boots profile {} target {}",
                manifest.profile, manifest.target, image.profile, image.target
            ),
        ));
    }
    if manifest.version < image.min_version {
        return Err(Refusal::new(
            MANIFEST_FILE,
            format!(
                "version {} is below this boot image's minimum version {} (rollback refused)",
                manifest.version, image.min_version
            ),
        ));
    }
    check_rollback(manifest.version, highest_seen)
        .map_err(|e| Refusal::new(MANIFEST_FILE, e.to_string()))?;
    Ok(CheckedManifest {
        manifest,
        file,
        signers: opened.verified.signers,
    })
}

/// The second half of [`verify`]: each artifact the checked manifest names, read from
/// `source` within its signed size and hashed.
pub fn verify_artifacts(
    source: &mut dyn Source,
    checked: CheckedManifest,
) -> Result<Verified, Refusal> {
    let CheckedManifest {
        manifest,
        file: manifest_file,
        signers,
    } = checked;
    let mut artifact = |name: &str, expected: &trust::ArtifactRef| -> Result<Vec<u8>, Refusal> {
        let found = source
            .len(name, expected.size)
            .map_err(|e| Refusal::new(name, e))?;
        if found != expected.size {
            return Err(Refusal::new(
                name,
                format!("expected {expected}, found {found} bytes (not read)"),
            ));
        }
        let size = usize::try_from(expected.size).map_err(|_| {
            Refusal::new(
                name,
                format!("{} bytes do not fit in memory", expected.size),
            )
        })?;
        let mut reader = source
            .open(name, expected.size)
            .map_err(|e| Refusal::new(name, e))?;
        // Read into one buffer of the signed size, hashed on all cores as it fills; the buffer
        // is returned, so the bytes booted are the bytes hashed.
        let (bytes, digest) = crate::digest::read_on_all_cores(&mut *reader, size)
            .map_err(|e| Refusal::new(name, pid1::error_chain(&e)))?;
        let found = trust::ArtifactRef {
            digest,
            size: expected.size,
        };
        expected.check_found(name, found).map_err(|e| {
            Refusal::new(name, format!("expected {}, found {}", e.expected, e.actual))
        })?;
        Ok(bytes)
    };
    if manifest.cmdline.size > MAX_CMDLINE_BYTES {
        return Err(Refusal::new(
            CMDLINE_FILE,
            format!(
                "{} bytes is longer than the {MAX_CMDLINE_BYTES} a kernel takes",
                manifest.cmdline.size
            ),
        ));
    }
    let cmdline = artifact(CMDLINE_FILE, &manifest.cmdline)?;
    let kernel = artifact(KERNEL_FILE, &manifest.kernel)?;
    let initrd = artifact(INITRD_FILE, &manifest.initrd)?;
    Ok(Verified {
        manifest,
        manifest_file,
        signers,
        kernel,
        initrd,
        cmdline,
    })
}

/// `policy /etc/nullos/release-policy: threshold 1 of dev`-style summary for refusal lines.
fn policy_summary(policy: &SignerPolicy) -> String {
    let names: Vec<String> = policy
        .members
        .iter()
        .map(|m| format!("{} {}", m.name, m.key.short()))
        .collect();
    format!(
        "policy: threshold {} of [{}]",
        policy.threshold,
        names.join(", ")
    )
}

/// An error and its sources joined by `": "`.
fn chain(error: &dyn std::error::Error) -> String {
    pid1::error_chain(error)
}

#[cfg(test)]
pub(crate) mod tests;
