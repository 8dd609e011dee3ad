//! `/etc/nullos/guest.toml`: what the node tells a guest's `init` about its workload.
//!
//! The node's `init` makes it from the verified workload manifest ([`GuestConfig::from_manifest`],
//! [`GuestConfig::to_toml`]) and appends it to the guest initramfs; the guest's `init` reads it
//! ([`GuestConfig::load`]). It is read strictly (unknown keys are an error, every size is
//! bounded) because a guest that runs something other than what the node meant is worse than
//! one that refuses to start. The checks are the workload manifest's own (`trust::workload`'s
//! functions and limits), plus the mount points the guest keeps for itself; the writer checks
//! too, so a workload the guest would refuse is refused on the node.

use serde::{Deserialize, Serialize};
use trust::limits::{
    MAX_WORKLOAD_ARGS, MAX_WORKLOAD_ENV, MAX_WORKLOAD_NAME_BYTES, MAX_WORKLOAD_STRING_BYTES,
    MAX_WORKLOAD_VOLUMES,
};
use trust::workload::{check_dir, check_env_key, check_name, check_no_nul, check_path};
use trust::WorkloadManifest;

use crate::paths::GUEST_CONFIG;

/// Largest file accepted (and written).
pub const MAX_FILE_BYTES: u64 = 64 * 1024;
/// The API filesystems the guest's init mounts in the new root; volumes may not go at or below
/// them.
pub const RESERVED_MOUNTS: [&str; 5] = ["/proc", "/sys", "/dev", "/run", "/tmp"];
/// The `PATH` a workload gets when its manifest sets none.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// The first line of the file.
#[cfg(feature = "toml")]
const HEADER: &str = "# Written by the node's init for the guest role.\n";

/// Why `guest.toml` cannot be written, read or used.
#[derive(Debug, thiserror::Error)]
pub enum GuestConfigError {
    /// The file could not be read.
    #[error("read {GUEST_CONFIG}")]
    Read(#[source] std::io::Error),
    /// The file is larger than [`MAX_FILE_BYTES`].
    #[error("{GUEST_CONFIG} is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge,
    /// The file is not the expected TOML.
    #[cfg(feature = "toml")]
    #[error("parse {GUEST_CONFIG}")]
    Parse(#[source] toml::de::Error),
    /// The configuration could not be written as TOML.
    #[cfg(feature = "toml")]
    #[error("write {GUEST_CONFIG}")]
    Write(#[source] toml::ser::Error),
    /// A value is out of bounds or malformed.
    #[error("{GUEST_CONFIG}: {0}")]
    Invalid(String),
}

/// One writable volume: an ext4 disk the node made, mounted at `mount` in the new root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    /// The volume's name (for log lines).
    pub name: String,
    /// Absolute mount point inside the workload's root.
    pub mount: String,
}

/// The contents of `guest.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestConfig {
    /// The workload's name, `[a-z0-9-]{1,32}`.
    pub name: String,
    /// argv of the program to run; argv[0] is an absolute path inside the root image.
    pub entrypoint: Vec<String>,
    /// Exactly the environment the program gets (plus a default `PATH` when absent).
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Working directory inside the root image.
    #[serde(default = "default_workdir")]
    pub workdir: String,
    /// Whether to configure eth0 from the `ip=` kernel parameter.
    #[serde(default)]
    pub network: bool,
    /// Volumes in disk order: volume `i` is `/dev/vd(b+i)`.
    #[serde(default, rename = "volume")]
    pub volumes: Vec<Volume>,
}

fn default_workdir() -> String {
    "/".to_owned()
}

impl GuestConfig {
    /// What the guest of a verified workload is told (volumes in the manifest's, disk, order).
    pub fn from_manifest(manifest: &WorkloadManifest) -> GuestConfig {
        GuestConfig {
            name: manifest.name.clone(),
            entrypoint: manifest.entrypoint.clone(),
            env: manifest.env.clone(),
            workdir: manifest.workdir.clone(),
            network: manifest.network,
            volumes: manifest
                .volumes
                .iter()
                .map(|v| Volume {
                    name: v.name.clone(),
                    mount: v.mount.clone(),
                })
                .collect(),
        }
    }

    /// The file's text: a comment naming the writer, then the keys. Refuses a configuration
    /// the guest would refuse.
    #[cfg(feature = "toml")]
    pub fn to_toml(&self) -> Result<String, GuestConfigError> {
        self.validate()?;
        let body = toml::to_string(self).map_err(GuestConfigError::Write)?;
        let text = format!("{HEADER}{body}");
        if text.len() as u64 > MAX_FILE_BYTES {
            return Err(GuestConfigError::TooLarge);
        }
        Ok(text)
    }

    /// Parses and checks the file's text.
    #[cfg(feature = "toml")]
    pub fn parse(text: &str) -> Result<GuestConfig, GuestConfigError> {
        let config: GuestConfig = toml::from_str(text).map_err(GuestConfigError::Parse)?;
        config.validate()?;
        Ok(config)
    }

    /// Reads at most [`MAX_FILE_BYTES`] of `path` and parses it.
    #[cfg(feature = "toml")]
    pub fn load(path: &str) -> Result<GuestConfig, GuestConfigError> {
        use std::io::Read;
        let file = std::fs::File::open(path).map_err(GuestConfigError::Read)?;
        let mut text = String::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(GuestConfigError::Read)?;
        if text.len() as u64 > MAX_FILE_BYTES {
            return Err(GuestConfigError::TooLarge);
        }
        GuestConfig::parse(&text)
    }

    /// Checks every value with the workload manifest's rules and limits (`trust::workload`),
    /// and the volumes' mount points against [`RESERVED_MOUNTS`].
    pub fn validate(&self) -> Result<(), GuestConfigError> {
        self.check().map_err(GuestConfigError::Invalid)
    }

    fn check(&self) -> Result<(), String> {
        name("name", &self.name)?;
        if self.entrypoint.is_empty() || self.entrypoint.len() > MAX_WORKLOAD_ARGS {
            return Err(format!(
                "entrypoint must have 1 to {MAX_WORKLOAD_ARGS} arguments"
            ));
        }
        for arg in &self.entrypoint {
            string("entrypoint argument", arg)?;
        }
        if let Some(program) = self.entrypoint.first() {
            path("entrypoint[0]", program, check_path)?;
        }
        if self.env.len() > MAX_WORKLOAD_ENV {
            return Err(format!(
                "more than {MAX_WORKLOAD_ENV} environment variables"
            ));
        }
        for (i, (key, value)) in self.env.iter().enumerate() {
            string("env name", key)?;
            string("env value", value)?;
            if check_env_key(key).is_err() {
                return Err(format!("env name {key:?} is empty or contains '='"));
            }
            if self.env[..i].iter().any(|(k, _)| k == key) {
                return Err(format!("env name {key:?} is given twice"));
            }
        }
        path("workdir", &self.workdir, check_dir)?;
        if self.volumes.len() > MAX_WORKLOAD_VOLUMES {
            return Err(format!("more than {MAX_WORKLOAD_VOLUMES} volumes"));
        }
        for (i, volume) in self.volumes.iter().enumerate() {
            name("volume name", &volume.name)?;
            if volume.mount == "/" {
                return Err(format!("volume {} cannot be mounted on /", volume.name));
            }
            path("volume mount", &volume.mount, check_path)?;
            if RESERVED_MOUNTS
                .iter()
                .any(|r| is_at_or_below(&volume.mount, r))
            {
                return Err(format!(
                    "volume {} mount {} is at or below one of {}",
                    volume.name,
                    volume.mount,
                    RESERVED_MOUNTS.join(" ")
                ));
            }
            let earlier = self.volumes.get(..i).unwrap_or_default();
            if earlier.iter().any(|v| v.name == volume.name) {
                return Err(format!("two volumes are named {}", volume.name));
            }
            if earlier.iter().any(|v| v.mount == volume.mount) {
                return Err(format!("two volumes are mounted on {}", volume.mount));
            }
        }
        Ok(())
    }

    /// The entrypoint's environment: exactly [`GuestConfig::env`], plus
    /// `PATH=`[`DEFAULT_PATH`] when it sets no `PATH`.
    pub fn environment(&self) -> Vec<(String, String)> {
        let mut env = self.env.clone();
        if !env.iter().any(|(k, _)| k == "PATH") {
            env.push(("PATH".to_owned(), DEFAULT_PATH.to_owned()));
        }
        env
    }
}

/// Any string: at most the manifest's string length, no NUL.
fn string(what: &str, value: &str) -> Result<(), String> {
    if value.len() > MAX_WORKLOAD_STRING_BYTES {
        return Err(format!(
            "{what} is longer than {MAX_WORKLOAD_STRING_BYTES} bytes"
        ));
    }
    check_no_nul(value).map_err(|reason| format!("{what} {reason}"))
}

/// A workload or volume name.
fn name(what: &str, value: &str) -> Result<(), String> {
    check_name(value)
        .map_err(|_| format!("{what} {value:?} is not 1 to {MAX_WORKLOAD_NAME_BYTES} of [a-z0-9-]"))
}

/// An absolute, normalized path, then the stricter `check` of its field.
fn path(
    what: &str,
    value: &str,
    check: fn(&str) -> Result<(), &'static str>,
) -> Result<(), String> {
    string(what, value)?;
    if check_dir(value).is_err() {
        return Err(format!(
            "{what} {value:?} is not a normalized absolute path"
        ));
    }
    check(value).map_err(|reason| format!("{what} {value:?} {reason}"))
}

/// Whether `path` is `base` or inside it (both normalized absolute paths).
pub fn is_at_or_below(path: &str, base: &str) -> bool {
    path == base
        || path
            .strip_prefix(base)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(all(test, feature = "toml"))]
mod tests;
