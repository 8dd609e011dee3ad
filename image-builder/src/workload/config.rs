//! The workload source description, `<dir>/workload.toml`.
//!
//! ```toml
//! name = "hello"
//! version = 1
//! entrypoint = ["/bin/hello"]
//! env = { GREETING = "hi" }      # optional
//! workdir = "/"                   # optional, default "/"
//! vcpus = 1
//! memory_mib = 128
//! network = true
//! restart = "on-failure"          # or "never"
//! [[volume]]
//! name = "data"
//! mount = "/data"
//! size_mib = 16
//! [files]                         # optional: path in the image = source, relative to workload.toml
//! "/bin/hello" = "../../target/x86_64-unknown-linux-gnu/release/hello"
//! ```
//!
//! Unknown keys are refused. The environment is written to the manifest sorted by key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use trust::workload::{check_dir, check_name, check_path, VOLUME_SIZE_MIB};
use trust::workload::{WORKLOAD_MEMORY_MIB, WORKLOAD_VCPUS};
use trust::{RestartPolicy, VolumeSpec};

/// The file name of the description inside a workload folder.
pub const CONFIG_FILE: &str = "workload.toml";

/// Why `workload.toml` could not be used. Every message is one line.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadConfigError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not TOML of the expected shape.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, on one line.
        message: String,
    },
    /// A value is out of range or malformed.
    #[error("{path}: {problem}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the key.
        problem: String,
    },
}

impl WorkloadConfigError {
    /// Whether the fault is in the user's input (the CLI's "bad input" exit status 2), as
    /// opposed to an I/O failure.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            WorkloadConfigError::Parse { .. } | WorkloadConfigError::Invalid { .. }
        )
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    name: String,
    version: u64,
    entrypoint: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default = "root_dir")]
    workdir: String,
    vcpus: u8,
    memory_mib: u32,
    network: bool,
    restart: RawRestart,
    #[serde(default)]
    volume: Vec<RawVolume>,
    #[serde(default)]
    files: BTreeMap<String, PathBuf>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
enum RawRestart {
    OnFailure,
    Never,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVolume {
    name: String,
    mount: String,
    size_mib: u32,
}

fn root_dir() -> String {
    "/".into()
}

/// A checked `workload.toml`: everything the manifest says except the artifacts, and where the
/// image's files come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadConfig {
    /// Workload name.
    pub name: String,
    /// Workload version counter.
    pub version: u64,
    /// argv; `entrypoint[0]` is an absolute path in the image.
    pub entrypoint: Vec<String>,
    /// Environment, sorted by key.
    pub env: Vec<(String, String)>,
    /// Working directory of the entrypoint.
    pub workdir: String,
    /// Virtual CPUs.
    pub vcpus: u8,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Volumes, in file order (= disk order).
    pub volumes: Vec<VolumeSpec>,
    /// Whether the guest gets the network.
    pub network: bool,
    /// Restart policy.
    pub restart: RestartPolicy,
    /// `[files]`: path in the image → source file (resolved against the folder).
    pub files: Vec<(String, PathBuf)>,
}

impl WorkloadConfig {
    /// Reads and checks `<dir>/workload.toml`; `[files]` sources are resolved against `dir`.
    pub fn load(dir: &Path) -> Result<WorkloadConfig, WorkloadConfigError> {
        let path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| WorkloadConfigError::Read {
            path: path.clone(),
            source,
        })?;
        WorkloadConfig::parse(&text, dir).map_err(|e| match e {
            Problem::Toml(message) => WorkloadConfigError::Parse { path, message },
            Problem::Invalid(problem) => WorkloadConfigError::Invalid { path, problem },
        })
    }

    fn parse(text: &str, base: &Path) -> Result<WorkloadConfig, Problem> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| Problem::Toml(one_line(text, &e)))?;
        let bad = |key: &str, value: &str, reason: &str| {
            Problem::Invalid(format!("{key} {value:?} {reason}"))
        };
        check_name(&raw.name).map_err(|r| bad("name", &raw.name, r))?;
        let Some(argv0) = raw.entrypoint.first() else {
            return Err(Problem::Invalid(
                "entrypoint is empty: give at least the program's absolute path".into(),
            ));
        };
        check_path(argv0).map_err(|r| bad("entrypoint[0]", argv0, r))?;
        check_dir(&raw.workdir).map_err(|r| bad("workdir", &raw.workdir, r))?;
        if let Some(key) = raw.env.keys().find(|k| k.is_empty() || k.contains('=')) {
            return Err(bad("env key", key, "must be non-empty and without '='"));
        }
        if !WORKLOAD_VCPUS.contains(&raw.vcpus) {
            return Err(Problem::Invalid(format!(
                "vcpus = {} is out of range 1..=32",
                raw.vcpus
            )));
        }
        if !WORKLOAD_MEMORY_MIB.contains(&raw.memory_mib) {
            return Err(Problem::Invalid(format!(
                "memory_mib = {} is out of range 32..=65536",
                raw.memory_mib
            )));
        }
        let mut volumes: Vec<VolumeSpec> = Vec::new();
        for v in raw.volume {
            check_name(&v.name).map_err(|r| bad("volume name", &v.name, r))?;
            check_path(&v.mount).map_err(|r| bad("volume mount", &v.mount, r))?;
            if !VOLUME_SIZE_MIB.contains(&v.size_mib) {
                return Err(Problem::Invalid(format!(
                    "volume {:?}: size_mib = {} is out of range 1..=1048576",
                    v.name, v.size_mib
                )));
            }
            if volumes
                .iter()
                .any(|o| o.name == v.name || o.mount == v.mount)
            {
                return Err(bad(
                    "volume",
                    &v.name,
                    "repeats another volume's name or mount point",
                ));
            }
            volumes.push(VolumeSpec {
                name: v.name,
                mount: v.mount,
                size_mib: v.size_mib,
            });
        }
        let mut files = Vec::new();
        for (dest, source) in raw.files {
            check_path(&dest).map_err(|r| bad("[files] destination", &dest, r))?;
            files.push((dest, base.join(source)));
        }
        Ok(WorkloadConfig {
            name: raw.name,
            version: raw.version,
            entrypoint: raw.entrypoint,
            env: raw.env.into_iter().collect(),
            workdir: raw.workdir,
            vcpus: raw.vcpus,
            memory_mib: raw.memory_mib,
            volumes,
            network: raw.network,
            restart: match raw.restart {
                RawRestart::OnFailure => RestartPolicy::OnFailure,
                RawRestart::Never => RestartPolicy::Never,
            },
            files,
        })
    }
}

enum Problem {
    Toml(String),
    Invalid(String),
}

/// toml's message with its line number, on one line (its Display draws a multi-line snippet).
fn one_line(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
    match e.span() {
        Some(span) => {
            let line = text
                .get(..span.start)
                .map_or(0, |t| t.matches('\n').count())
                + 1;
            format!("line {line}: {message}")
        }
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "hello"
version = 1
entrypoint = ["/bin/hello", "--once"]
env = { GREETING = "hi", A = "b" }
vcpus = 1
memory_mib = 128
network = true
restart = "on-failure"
[[volume]]
name = "data"
mount = "/data"
size_mib = 16
[files]
"/bin/hello" = "../../target/hello"
"#;

    fn parse(text: &str) -> Result<WorkloadConfig, String> {
        WorkloadConfig::parse(text, Path::new("/src/hello")).map_err(|e| match e {
            Problem::Toml(m) | Problem::Invalid(m) => m,
        })
    }

    #[test]
    fn reads_the_documented_example() {
        let c = parse(GOOD).expect("valid");
        assert_eq!(c.name, "hello");
        assert_eq!(c.entrypoint, ["/bin/hello", "--once"]);
        assert_eq!(
            c.env,
            [("A".into(), "b".into()), ("GREETING".into(), "hi".into())]
        );
        assert_eq!(c.workdir, "/");
        assert_eq!(c.restart, RestartPolicy::OnFailure);
        assert_eq!(c.volumes[0].mount, "/data");
        assert_eq!(
            c.files,
            [(
                "/bin/hello".to_string(),
                PathBuf::from("/src/hello/../../target/hello")
            )]
        );
    }

    #[test]
    fn unknown_keys_are_refused_on_one_line() {
        let err = parse(&format!("{GOOD}\n[extra]\nx = 1\n")).unwrap_err();
        assert!(
            err.contains("unknown field") && err.contains("files"),
            "{err}"
        );
        let err = parse(&GOOD.replace("size_mib = 16", "size_mib = 16\nsize = 2")).unwrap_err();
        assert!(err.starts_with("line 14: unknown field `size`"), "{err}");
        assert!(!err.contains('\n'));
        let err = parse("name = ").unwrap_err();
        assert!(!err.contains('\n') && err.starts_with("line 1:"), "{err}");
    }

    #[test]
    fn values_are_checked() {
        let cases = [
            ("name = \"hello\"", "name = \"Hello\"", "name \"Hello\""),
            (
                "entrypoint = [\"/bin/hello\", \"--once\"]",
                "entrypoint = []",
                "entrypoint is empty",
            ),
            (
                "entrypoint = [\"/bin/hello\", \"--once\"]",
                "entrypoint = [\"hello\"]",
                "entrypoint[0]",
            ),
            ("vcpus = 1", "vcpus = 33", "vcpus = 33"),
            ("memory_mib = 128", "memory_mib = 16", "memory_mib = 16"),
            ("mount = \"/data\"", "mount = \"/a/../b\"", "volume mount"),
            ("size_mib = 16", "size_mib = 0", "size_mib = 0"),
            (
                "restart = \"on-failure\"",
                "restart = \"always\"",
                "unknown variant",
            ),
            ("\"/bin/hello\" =", "\"bin/hello\" =", "[files] destination"),
        ];
        for (from, to, expected) in cases {
            let text = GOOD.replace(from, to);
            assert_ne!(text, GOOD, "{from} not in the example");
            let err = parse(&text).expect_err(to);
            assert!(err.contains(expected), "{to}: {err}");
        }
        let two = format!("{GOOD}[[volume]]\nname = \"data\"\nmount = \"/x\"\nsize_mib = 1\n");
        // [[volume]] after [files] belongs to the root again, so this is a second volume.
        assert!(parse(&two).unwrap_err().contains("repeats"));
    }
}
