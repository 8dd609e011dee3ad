//! Workload manifests: what a signed workload is (its root image, entrypoint, resources), and the
//! one call that checks a workload manifest file.
//!
//! # Body layout
//!
//! The body of a signed workload document (kind [`DocumentKind::WorkloadManifest`]) is the
//! postcard encoding of, in order:
//!
//! ```text
//! format       varint u32    = 1 (WorkloadManifest::FORMAT); read first, anything else refused
//! version      varint u64    workload version counter
//! name         string ≤ 32   [a-z0-9-], at least 1 character
//! root         artifact      digest (32 raw bytes, BLAKE3) then size (varint u64) of root.img
//! kernel       option        0, or 1 then an artifact
//! initrd       option        0, or 1 then an artifact
//! entrypoint   count 1..=64  then each argument as a string ≤ 4096; argv[0] an absolute path
//! env          count ≤ 256   then per variable: key (string ≤ 4096, no '='), value (string ≤ 4096)
//! workdir      string ≤ 4096 absolute path
//! vcpus        u8            1..=32
//! memory_mib   varint u32    32..=65536
//! volumes      count ≤ 8     then per volume: name (as the workload name), mount (absolute
//!                            path, not "/"), size_mib (varint u32, 1..=1048576)
//! network      u8            0 or 1
//! restart      varint u32    0 = on-failure, 1 = never
//! ```
//!
//! Strings are a varint byte length then UTF-8, and never contain NUL (they become argv, env and
//! paths of a process). Paths are absolute and normalized: no empty, `.` or `..` component and
//! no trailing `/`. Env keys and volume names and mount points are unique. The body is at most
//! 64 KiB and nothing may follow the last field.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use thiserror::Error;

use crate::digest::Digest;
use crate::document::{DocumentKind, SignedDocument, VerifyError};
use crate::limits::{
    DecodeError, Reader, Writer, MAX_WORKLOAD_ARGS, MAX_WORKLOAD_ENV, MAX_WORKLOAD_MANIFEST_BYTES,
    MAX_WORKLOAD_NAME_BYTES, MAX_WORKLOAD_STRING_BYTES, MAX_WORKLOAD_VOLUMES,
};
use crate::policy::SignerPolicy;
use crate::release::ArtifactRef;
use crate::signed::{verify_document, DocumentError, SignedBody};

/// Fewest and most vCPUs a workload may ask for.
pub const WORKLOAD_VCPUS: core::ops::RangeInclusive<u8> = 1..=32;
/// Least and most guest memory a workload may ask for, in MiB.
pub const WORKLOAD_MEMORY_MIB: core::ops::RangeInclusive<u32> = 32..=65536;
/// Smallest and largest volume, in MiB (1 MiB to 1 TiB).
pub const VOLUME_SIZE_MIB: core::ops::RangeInclusive<u32> = 1..=1_048_576;

/// What the node does when a workload's VM ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RestartPolicy {
    /// Restart (with backoff) after a non-zero exit; an exit code of 0 means done.
    OnFailure,
    /// Never restart.
    Never,
}

impl RestartPolicy {
    /// The name used in `workload.toml` and in messages: `on-failure` or `never`.
    pub fn name(self) -> &'static str {
        match self {
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Never => "never",
        }
    }

    fn code(self) -> u32 {
        match self {
            RestartPolicy::OnFailure => 0,
            RestartPolicy::Never => 1,
        }
    }
}

/// One writable volume of a workload: a filesystem the node provides, mounted by the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSpec {
    /// Volume name, `[a-z0-9-]`, 1 to 32 characters, unique within the workload.
    pub name: String,
    /// Absolute mount point in the guest (not `/`), unique within the workload.
    pub mount: String,
    /// Size in MiB, 1 to 1048576.
    pub size_mib: u32,
}

/// The signed description of one workload: see the module docs for the byte layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadManifest {
    /// Body format version; [`WorkloadManifest::FORMAT`] for everything this build writes.
    pub format: u32,
    /// Workload name, `[a-z0-9-]`, 1 to 32 characters.
    pub name: String,
    /// Workload version counter.
    pub version: u64,
    /// The root filesystem image (squashfs) `root.img`.
    pub root: ArtifactRef,
    /// The workload's own guest kernel, if it brings one (otherwise the node's).
    pub kernel: Option<ArtifactRef>,
    /// The workload's own guest initramfs, if it brings one (otherwise the node's).
    pub initrd: Option<ArtifactRef>,
    /// argv of the process the guest runs; `entrypoint[0]` is an absolute path in the root image.
    pub entrypoint: Vec<String>,
    /// The entrypoint's environment, in order.
    pub env: Vec<(String, String)>,
    /// The entrypoint's working directory (absolute).
    pub workdir: String,
    /// Virtual CPUs, 1 to 32.
    pub vcpus: u8,
    /// Guest memory in MiB, 32 to 65536.
    pub memory_mib: u32,
    /// Writable volumes, in disk order (volume i is the guest's /dev/vd(b+i)).
    pub volumes: Vec<VolumeSpec>,
    /// Whether the guest gets the user-mode network.
    pub network: bool,
    /// What to do when the VM ends.
    pub restart: RestartPolicy,
}

/// Why a workload manifest file was refused by [`verify_workload`]: the steps of
/// [`DocumentError`], with the messages the node and the image builder have always printed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WorkloadError {
    /// The signed document envelope could not be decoded.
    #[error("workload envelope could not be decoded")]
    DecodeEnvelope(#[source] DecodeError),
    /// The document is not a workload manifest, or its signatures do not satisfy the policy.
    #[error("workload signatures rejected")]
    Verify(#[source] VerifyError),
    /// The signed body is not a readable, valid workload manifest.
    #[error("workload manifest could not be decoded")]
    DecodeManifest(#[source] DecodeError),
}

impl WorkloadManifest {
    /// The body format version this build writes and reads.
    pub const FORMAT: u32 = 1;

    /// The canonical body bytes (postcard; see the module docs).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.put(&self.format);
        w.put(&self.version);
        w.text(&self.name);
        put_artifact(&mut w, &self.root);
        for optional in [&self.kernel, &self.initrd] {
            w.put(&optional.is_some());
            if let Some(artifact) = optional {
                put_artifact(&mut w, artifact);
            }
        }
        w.count(self.entrypoint.len());
        for arg in &self.entrypoint {
            w.text(arg);
        }
        w.count(self.env.len());
        for (key, value) in &self.env {
            w.text(key);
            w.text(value);
        }
        w.text(&self.workdir);
        w.put(&self.vcpus);
        w.put(&self.memory_mib);
        w.count(self.volumes.len());
        for v in &self.volumes {
            w.text(&v.name);
            w.text(&v.mount);
            w.put(&v.size_mib);
        }
        w.put(&self.network);
        w.put(&self.restart.code());
        w.finish()
    }

    /// Reads body bytes with bounded sizes, and checks every value (names, paths, ranges,
    /// uniqueness); refuses other format versions and trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<WorkloadManifest, DecodeError> {
        const WHAT: &str = "workload manifest";
        let mut r = Reader::new(WHAT, bytes, MAX_WORKLOAD_MANIFEST_BYTES, 0)?;
        let format: u32 = r.take("manifest format")?;
        if format != Self::FORMAT {
            return Err(DecodeError::UnsupportedFormat {
                what: WHAT,
                found: format,
                supported: Self::FORMAT,
            });
        }
        let version: u64 = r.take("version")?;
        let name = checked_text(&mut r, "workload name", MAX_WORKLOAD_NAME_BYTES, check_name)?;
        let root = artifact(&mut r, "root digest", "root size")?;
        let kernel = optional_artifact(&mut r, "kernel", "kernel digest", "kernel size")?;
        let initrd = optional_artifact(&mut r, "initrd", "initrd digest", "initrd size")?;

        let at = r.position();
        let argc = r.count("entrypoint count", MAX_WORKLOAD_ARGS)?;
        if argc == 0 {
            return Err(invalid("entrypoint count", at, "the entrypoint is empty"));
        }
        let mut entrypoint = Vec::with_capacity(argc);
        entrypoint.push(checked_text(
            &mut r,
            "entrypoint path",
            MAX_WORKLOAD_STRING_BYTES,
            check_path,
        )?);
        for _ in 1..argc {
            entrypoint.push(checked_text(
                &mut r,
                "entrypoint argument",
                MAX_WORKLOAD_STRING_BYTES,
                check_no_nul,
            )?);
        }

        let count = r.count("env count", MAX_WORKLOAD_ENV)?;
        let mut env: Vec<(String, String)> = Vec::with_capacity(count);
        for _ in 0..count {
            let at = r.position();
            let key = checked_text(&mut r, "env key", MAX_WORKLOAD_STRING_BYTES, check_env_key)?;
            if env.iter().any(|(k, _)| *k == key) {
                return Err(invalid("env key", at, "the same key is given twice"));
            }
            let value = checked_text(&mut r, "env value", MAX_WORKLOAD_STRING_BYTES, check_no_nul)?;
            env.push((key, value));
        }
        let workdir = checked_text(&mut r, "workdir", MAX_WORKLOAD_STRING_BYTES, check_dir)?;

        let (vcpus, memory_mib) = read_resources(&mut r)?;

        let count = r.count("volume count", MAX_WORKLOAD_VOLUMES)?;
        let mut volumes: Vec<VolumeSpec> = Vec::with_capacity(count);
        for _ in 0..count {
            let at = r.position();
            let name = checked_text(&mut r, "volume name", MAX_WORKLOAD_NAME_BYTES, check_name)?;
            if volumes.iter().any(|v| v.name == name) {
                return Err(invalid("volume name", at, "two volumes have the same name"));
            }
            let at = r.position();
            let mount = checked_text(
                &mut r,
                "volume mount",
                MAX_WORKLOAD_STRING_BYTES,
                check_path,
            )?;
            if volumes.iter().any(|v| v.mount == mount) {
                return Err(invalid(
                    "volume mount",
                    at,
                    "two volumes have the same mount point",
                ));
            }
            let at = r.position();
            let size_mib: u32 = r.take("volume size_mib")?;
            if !VOLUME_SIZE_MIB.contains(&size_mib) {
                return Err(invalid("volume size_mib", at, "must be 1 to 1048576"));
            }
            volumes.push(VolumeSpec {
                name,
                mount,
                size_mib,
            });
        }

        let network: bool = r.take("network")?;
        let at = r.position();
        let restart = match r.take::<u32>("restart")? {
            0 => RestartPolicy::OnFailure,
            1 => RestartPolicy::Never,
            _ => {
                return Err(invalid(
                    "restart",
                    at,
                    "must be 0 (on-failure) or 1 (never)",
                ))
            }
        };
        r.finish(WHAT)?;
        Ok(WorkloadManifest {
            format,
            name,
            version,
            root,
            kernel,
            initrd,
            entrypoint,
            env,
            workdir,
            vcpus,
            memory_mib,
            volumes,
            network,
            restart,
        })
    }

    /// Checks that this manifest would decode (format, limits, names, paths, ranges), before
    /// signing it.
    pub fn validate(&self) -> Result<(), DecodeError> {
        WorkloadManifest::decode(&self.encode()).map(|_| ())
    }

    /// An unsigned workload document holding this manifest, ready for
    /// [`SignedDocument::sign`].
    pub fn to_document(&self) -> SignedDocument {
        SignedDocument::new(DocumentKind::WorkloadManifest, self.encode())
    }
}

/// Checks a workload manifest file: decodes the envelope, requires a workload manifest,
/// verifies the signatures against `policy`, and decodes (and checks) the signed body
/// ([`verify_document`], with the workload's own error messages). The artifacts are the caller's
/// next step ([`ArtifactRef::check`] on `root.img` and friends).
pub fn verify_workload(
    file_bytes: &[u8],
    policy: &SignerPolicy,
) -> Result<WorkloadManifest, WorkloadError> {
    Ok(verify_document::<WorkloadManifest>(file_bytes, policy)?.body)
}

impl SignedBody for WorkloadManifest {
    const KIND: DocumentKind = DocumentKind::WorkloadManifest;
    const MAX_BYTES: usize = MAX_WORKLOAD_MANIFEST_BYTES;

    // The inherent methods of the same names (kept for callers that do not import the trait).
    fn encode(&self) -> Vec<u8> {
        WorkloadManifest::encode(self)
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        WorkloadManifest::decode(bytes)
    }
}

impl From<DocumentError> for WorkloadError {
    fn from(e: DocumentError) -> Self {
        match e {
            DocumentError::DecodeEnvelope { source, .. } => WorkloadError::DecodeEnvelope(source),
            DocumentError::Verify { source, .. } => WorkloadError::Verify(source),
            DocumentError::DecodeBody { source, .. } => WorkloadError::DecodeManifest(source),
        }
    }
}

fn put_artifact(w: &mut Writer, artifact: &ArtifactRef) {
    w.array(artifact.digest.as_bytes());
    w.put(&artifact.size);
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

fn optional_artifact(
    r: &mut Reader<'_>,
    flag_field: &'static str,
    digest_field: &'static str,
    size_field: &'static str,
) -> Result<Option<ArtifactRef>, DecodeError> {
    // postcard's Option tag is one byte, 0 or 1: the encoding of a bool.
    if r.take::<bool>(flag_field)? {
        Ok(Some(artifact(r, digest_field, size_field)?))
    } else {
        Ok(None)
    }
}

/// Reads a workload's vCPUs and memory (MiB), each within the workload limits; shared with the
/// contract's workloads, which carry the same resources.
pub(crate) fn read_resources(r: &mut Reader<'_>) -> Result<(u8, u32), DecodeError> {
    let at = r.position();
    let vcpus: u8 = r.take("vcpus")?;
    if !WORKLOAD_VCPUS.contains(&vcpus) {
        return Err(invalid("vcpus", at, "must be 1 to 32"));
    }
    let at = r.position();
    let memory_mib: u32 = r.take("memory_mib")?;
    if !WORKLOAD_MEMORY_MIB.contains(&memory_mib) {
        return Err(invalid("memory_mib", at, "must be 32 to 65536"));
    }
    Ok((vcpus, memory_mib))
}

pub(crate) fn invalid(field: &'static str, at: usize, reason: &'static str) -> DecodeError {
    DecodeError::InvalidValue { field, at, reason }
}

/// Reads text of at most `max` bytes and checks it with `check`, whose message becomes the
/// error's reason.
pub(crate) fn checked_text(
    r: &mut Reader<'_>,
    field: &'static str,
    max: usize,
    check: fn(&str) -> Result<(), &'static str>,
) -> Result<String, DecodeError> {
    let at = r.position();
    let text = r.text(field, max)?;
    check(text).map_err(|reason| invalid(field, at, reason))?;
    Ok(text.to_string())
}

/// Workload and volume names: 1 to 32 characters from `a-z 0-9 -`.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > MAX_WORKLOAD_NAME_BYTES {
        return Err("must be 1 to 32 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("may only contain a-z, 0-9 and -");
    }
    Ok(())
}

/// Any string of a workload (argument, env value): no NUL, since it becomes a C string.
pub fn check_no_nul(text: &str) -> Result<(), &'static str> {
    if text.contains('\0') {
        return Err("contains a NUL byte");
    }
    Ok(())
}

/// An environment variable name: not empty, no `=`, no NUL.
pub fn check_env_key(key: &str) -> Result<(), &'static str> {
    if key.is_empty() {
        return Err("is empty");
    }
    if key.contains('=') {
        return Err("contains '='");
    }
    check_no_nul(key)
}

/// An absolute, normalized path other than `/`: a file or a mount point.
pub fn check_path(path: &str) -> Result<(), &'static str> {
    if path == "/" {
        return Err("must name something below /");
    }
    check_dir(path)
}

/// An absolute, normalized path (`/` allowed): no empty, `.` or `..` component, no trailing
/// `/`, no NUL.
pub fn check_dir(path: &str) -> Result<(), &'static str> {
    check_no_nul(path)?;
    let Some(rest) = path.strip_prefix('/') else {
        return Err("must be an absolute path");
    };
    if rest.is_empty() {
        return Ok(());
    }
    for component in rest.split('/') {
        match component {
            "" => return Err("has an empty component or a trailing /"),
            "." | ".." => return Err("has a . or .. component"),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
