//! `/etc/nullos/guest.toml`: what the node tells a guest's init about its workload.
//!
//! The node writes the file per workload (a second cpio appended to the guest initramfs). It is
//! parsed strictly (unknown keys are an error, every size is bounded) because a guest that runs
//! something other than what the node meant is worse than one that refuses to start.

use std::io::Read;

use serde::Deserialize;

/// Where the node puts the file in the guest initramfs.
pub const GUEST_CONFIG_PATH: &str = "/etc/nullos/guest.toml";
/// Largest file accepted.
pub const MAX_FILE_BYTES: u64 = 64 * 1024;
/// Most entrypoint arguments (argv[0] included).
pub const MAX_ARGS: usize = 256;
/// Most environment variables.
pub const MAX_ENV: usize = 256;
/// Longest single argument, variable, path or value.
pub const MAX_STRING: usize = 4096;
/// Most volumes: they are /dev/vdb onwards, and virtio-mmio slots are few.
pub const MAX_VOLUMES: usize = 16;
/// Longest workload or volume name.
pub const MAX_NAME: usize = 32;

/// The API filesystems init mounts in the new root; volumes may not go at or below them.
pub const RESERVED_MOUNTS: [&str; 5] = ["/proc", "/sys", "/dev", "/run", "/tmp"];

/// Why `guest.toml` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum GuestConfigError {
    /// The file could not be read.
    #[error("read {GUEST_CONFIG_PATH}")]
    Read(#[source] std::io::Error),
    /// The file is larger than [`MAX_FILE_BYTES`].
    #[error("{GUEST_CONFIG_PATH} is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge,
    /// The file is not the expected TOML.
    #[error("parse {GUEST_CONFIG_PATH}")]
    Parse(#[source] toml::de::Error),
    /// A value is out of bounds or malformed.
    #[error("{GUEST_CONFIG_PATH}: {0}")]
    Invalid(String),
}

/// One writable volume: an ext4 disk the node made, mounted at `mount` in the new root.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    /// The volume's name (for log lines).
    pub name: String,
    /// Absolute mount point inside the workload's root.
    pub mount: String,
}

/// The parsed `guest.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
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
    /// Parses and validates the file's text.
    pub fn parse(text: &str) -> Result<GuestConfig, GuestConfigError> {
        let config: GuestConfig = toml::from_str(text).map_err(GuestConfigError::Parse)?;
        config.validate().map_err(GuestConfigError::Invalid)?;
        Ok(config)
    }

    /// Reads at most [`MAX_FILE_BYTES`] of `path` and parses it.
    pub fn load(path: &str) -> Result<GuestConfig, GuestConfigError> {
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

    fn validate(&self) -> Result<(), String> {
        check_name("name", &self.name)?;
        if self.entrypoint.is_empty() || self.entrypoint.len() > MAX_ARGS {
            return Err(format!("entrypoint must have 1 to {MAX_ARGS} arguments"));
        }
        for arg in &self.entrypoint {
            check_string("entrypoint argument", arg)?;
        }
        check_path("entrypoint[0]", &self.entrypoint[0])?;
        if self.env.len() > MAX_ENV {
            return Err(format!("more than {MAX_ENV} environment variables"));
        }
        for (key, value) in &self.env {
            check_string("env name", key)?;
            check_string("env value", value)?;
            if key.is_empty() || key.contains('=') {
                return Err(format!("env name {key:?} is empty or contains '='"));
            }
        }
        check_path("workdir", &self.workdir)?;
        if self.volumes.len() > MAX_VOLUMES {
            return Err(format!("more than {MAX_VOLUMES} volumes"));
        }
        for (i, volume) in self.volumes.iter().enumerate() {
            check_name("volume name", &volume.name)?;
            check_path("volume mount", &volume.mount)?;
            if volume.mount == "/" {
                return Err(format!("volume {} cannot be mounted on /", volume.name));
            }
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
            if self.volumes[..i].iter().any(|v| v.mount == volume.mount) {
                return Err(format!("two volumes are mounted on {}", volume.mount));
            }
        }
        Ok(())
    }

    /// The entrypoint's environment: exactly [`GuestConfig::env`], plus
    /// `PATH=/usr/local/bin:/usr/bin:/bin` when it sets no `PATH`.
    pub fn environment(&self) -> Vec<(String, String)> {
        let mut env = self.env.clone();
        if !env.iter().any(|(k, _)| k == "PATH") {
            env.push(("PATH".to_owned(), DEFAULT_PATH.to_owned()));
        }
        env
    }
}

/// The `PATH` a workload gets when its manifest sets none.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

fn check_string(what: &str, value: &str) -> Result<(), String> {
    if value.len() > MAX_STRING {
        return Err(format!("{what} is longer than {MAX_STRING} bytes"));
    }
    if value.contains('\0') {
        return Err(format!("{what} contains a NUL byte"));
    }
    Ok(())
}

fn check_name(what: &str, name: &str) -> Result<(), String> {
    let valid = (1..=MAX_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{what} {name:?} is not 1 to {MAX_NAME} of [a-z0-9-]"
        ))
    }
}

/// An absolute, normalized path: no empty, `.` or `..` components, no trailing slash.
fn check_path(what: &str, path: &str) -> Result<(), String> {
    check_string(what, path)?;
    let normalized = path == "/"
        || (path.starts_with('/')
            && path[1..]
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != ".."));
    if normalized {
        Ok(())
    } else {
        Err(format!("{what} {path:?} is not a normalized absolute path"))
    }
}

/// Whether `path` is `base` or inside it (both normalized absolute paths).
pub fn is_at_or_below(path: &str, base: &str) -> bool {
    path == base
        || path
            .strip_prefix(base)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTRACT_EXAMPLE: &str = r#"
name = "hello"
entrypoint = ["/bin/hello"]
env = [["GREETING", "hi"]]
workdir = "/"
network = true
[[volume]]
name = "data"
mount = "/data"
"#;

    #[test]
    fn parses_the_contract_example() {
        let c = GuestConfig::parse(CONTRACT_EXAMPLE).unwrap();
        assert_eq!(c.name, "hello");
        assert_eq!(c.entrypoint, ["/bin/hello"]);
        assert_eq!(c.env, [("GREETING".to_owned(), "hi".to_owned())]);
        assert_eq!(c.workdir, "/");
        assert!(c.network);
        assert_eq!(
            c.volumes,
            [Volume {
                name: "data".into(),
                mount: "/data".into()
            }]
        );
    }

    #[test]
    fn defaults_when_optional_keys_are_absent() {
        let c = GuestConfig::parse("name = \"a\"\nentrypoint = [\"/x\", \"-v\"]\n").unwrap();
        assert_eq!(c.workdir, "/");
        assert!(!c.network && c.env.is_empty() && c.volumes.is_empty());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = GuestConfig::parse("name = \"a\"\nentrypoint = [\"/x\"]\nshell = true\n");
        assert!(matches!(e, Err(GuestConfigError::Parse(_))), "{e:?}");
        let e = GuestConfig::parse(
            "name = \"a\"\nentrypoint = [\"/x\"]\n[[volume]]\nname = \"v\"\nmount = \"/v\"\nsize_mib = 3\n",
        );
        assert!(matches!(e, Err(GuestConfigError::Parse(_))), "{e:?}");
    }

    #[test]
    fn invalid_values_are_refused() {
        let bad = [
            "name = \"Hello\"\nentrypoint = [\"/x\"]",
            "name = \"\"\nentrypoint = [\"/x\"]",
            "name = \"a\"\nentrypoint = []",
            "name = \"a\"\nentrypoint = [\"x\"]",
            "name = \"a\"\nentrypoint = [\"/x/../y\"]",
            "name = \"a\"\nentrypoint = [\"/x\", \"a\\u0000b\"]",
            "name = \"a\"\nentrypoint = [\"/x\"]\nworkdir = \"rel\"",
            "name = \"a\"\nentrypoint = [\"/x\"]\nenv = [[\"A=B\", \"c\"]]",
            "name = \"a\"\nentrypoint = [\"/x\"]\nenv = [[\"\", \"c\"]]",
            "name = \"a\"\nentrypoint = [\"/x\"]\n[[volume]]\nname = \"v\"\nmount = \"/\"",
            "name = \"a\"\nentrypoint = [\"/x\"]\n[[volume]]\nname = \"v\"\nmount = \"/proc/x\"",
            "name = \"a\"\nentrypoint = [\"/x\"]\n[[volume]]\nname = \"v\"\nmount = \"/tmp\"",
            "name = \"a\"\nentrypoint = [\"/x\"]\n[[volume]]\nname = \"v\"\nmount = \"/d/\"",
            "name = \"a\"\nentrypoint = [\"/x\"]\n[[volume]]\nname = \"v\"\nmount = \"/d\"\n[[volume]]\nname = \"w\"\nmount = \"/d\"",
        ];
        for text in bad {
            let e = GuestConfig::parse(text);
            assert!(
                matches!(e, Err(GuestConfigError::Invalid(_))),
                "{text}: {e:?}"
            );
        }
        let many: String = (0..=MAX_VOLUMES)
            .map(|i| format!("[[volume]]\nname = \"v{i}\"\nmount = \"/v{i}\"\n"))
            .collect();
        let text = format!("name = \"a\"\nentrypoint = [\"/x\"]\n{many}");
        assert!(matches!(
            GuestConfig::parse(&text),
            Err(GuestConfigError::Invalid(_))
        ));
    }

    #[test]
    fn load_bounds_the_file_and_reports_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("guest.toml");
        let path_str = path.to_str().unwrap();
        assert!(matches!(
            GuestConfig::load(path_str),
            Err(GuestConfigError::Read(_))
        ));
        let mut text = CONTRACT_EXAMPLE.to_owned();
        text.push_str(&"#".repeat(usize::try_from(MAX_FILE_BYTES).unwrap()));
        std::fs::write(&path, text).unwrap();
        assert!(matches!(
            GuestConfig::load(path_str),
            Err(GuestConfigError::TooLarge)
        ));
        std::fs::write(&path, CONTRACT_EXAMPLE).unwrap();
        assert_eq!(GuestConfig::load(path_str).unwrap().name, "hello");
    }

    #[test]
    fn environment_adds_path_only_when_missing() {
        let c = GuestConfig::parse(CONTRACT_EXAMPLE).unwrap();
        assert_eq!(
            c.environment(),
            [
                ("GREETING".to_owned(), "hi".to_owned()),
                ("PATH".to_owned(), DEFAULT_PATH.to_owned())
            ]
        );
        let c = GuestConfig::parse(
            "name = \"a\"\nentrypoint = [\"/x\"]\nenv = [[\"PATH\", \"/opt/bin\"]]",
        )
        .unwrap();
        assert_eq!(
            c.environment(),
            [("PATH".to_owned(), "/opt/bin".to_owned())]
        );
    }

    #[test]
    fn at_or_below() {
        assert!(is_at_or_below("/tmp", "/tmp"));
        assert!(is_at_or_below("/tmp/x", "/tmp"));
        assert!(!is_at_or_below("/tmpx", "/tmp"));
        assert!(!is_at_or_below("/", "/tmp"));
    }
}
