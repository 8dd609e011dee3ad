//! The build configuration file (`image-builder build <config.toml>`).
//!
//! Relative paths in the file are relative to the file's own folder, so a config means the same
//! thing whatever directory the builder runs from. Unknown keys are errors: a typo must not
//! silently change what goes into a signed image.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::compress::Compression;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the schema.
    #[error("config {path} is malformed: {message}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// The TOML parser's message, with the line and column.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("config {path}: {problem}")]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

/// The whole build configuration, paths resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildConfig {
    /// The release being built.
    pub release: ReleaseSection,
    /// A Debian `linux-image-*.deb` or its unpacked tree (`dpkg-deb -R`/`-x`).
    pub kernel: PathBuf,
    /// Modules wanted in the image.
    pub modules: ModulesSection,
    /// The `init` binary that becomes `/init`.
    pub init: PathBuf,
    /// Extra files copied into the initramfs.
    pub files: Vec<ExtraFile>,
    /// The kernel command line.
    pub cmdline: String,
    /// How the initramfs is compressed.
    pub compression: Compression,
    /// Secret key files that sign the release (at least one).
    pub signing_keys: Vec<PathBuf>,
    /// The node's control endpoint (`host:port`), written into `/etc/nullos/node.toml`.
    pub control: Option<String>,
    /// Non-public destinations the node's workloads may reach (`[node] egress_allow`,
    /// `A.B.C.D[/N][:PORT]` each), written into `/etc/nullos/node.toml`.
    pub egress_allow: Vec<String>,
    /// The grid: the notary's URL (`[node] notary`), the file of its public key
    /// (`notary_key`, pinned by the node) and of the farmer's (`farm`, optional: an image
    /// every farmer gets leaves it out, and the farmer gives it at boot).
    pub grid: Option<GridSection>,
    /// The USB stick image, written only when the config has a `[usb]` section.
    pub usb: Option<UsbSection>,
    /// The boot image (stage 0), built only when the config has a `[stage0]` section.
    pub stage0: Option<Stage0Section>,
    /// The static `vmm` binary that becomes `/bin/vmm` (`[vmm] path`).
    pub vmm: Option<PathBuf>,
    /// The workload signer policy that becomes `/etc/nullos/policy` (`[workloads] policy`): a
    /// public key file or a policy file.
    pub workload_policy: Option<PathBuf>,
    /// Built workload folders (`[[workload]] path`), each holding `workload.manifest` and
    /// `root.img`.
    pub workloads: Vec<PathBuf>,
    /// Host executables that travel with their loader and libraries (`[tools] binaries`),
    /// absolute paths in the tools' tree: `tools_sysroot`, or the build machine's `/`.
    pub tools: Vec<String>,
    /// The tree the tools are taken from (`[tools] sysroot`): the pinned Debian packages
    /// unpacked by `make sysroot`, whose `packages.lock` names them for the release manifest.
    pub tools_sysroot: Option<PathBuf>,
    /// Self-update (`[update]`): the release channel the node watches, how often, and the
    /// release signer policy the node verifies what it downloads against.
    pub update: Option<UpdateSection>,
}

/// `[update]`: where the node looks for newer releases (README, "Updates").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateSection {
    /// A release folder URL, `http://host[:port]/path` (`release.manifest`, `kernel`, ...).
    pub channel: String,
    /// Seconds between two looks (default 300).
    pub poll_seconds: u64,
    /// The release signer policy (a public key file or a policy file), resolved; it becomes
    /// `/etc/nullos/release-policy` in the node image.
    pub policy: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpdate {
    channel: String,
    poll_seconds: Option<u64>,
    policy: PathBuf,
}

/// `[stage0]`: the boot image that verifies the release before running it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage0Section {
    /// Its kernel (`kernel = "..."`, default the node's `[kernel] path`). It needs the drivers
    /// of the release medium: Debian's cloud kernel has no USB support at all, the generic
    /// one has it as modules.
    pub kernel: PathBuf,
    /// The static `boot` binary that becomes `/init`.
    pub init: PathBuf,
    /// The release signer policy: a public key file or a policy file.
    pub policy: PathBuf,
    /// Modules for the medium (dependencies are added), e.g. `xhci_pci`, `usb_storage`.
    pub modules: Vec<String>,
    /// Whole module folders (`groups = [...]`, as in `[modules]`), e.g. `drivers/net/ethernet`
    /// for the release over HTTP on whatever NIC a machine has.
    pub groups: Vec<String>,
    /// Stage 0's own kernel command line.
    pub cmdline: String,
    /// Release folders on HTTP servers (`release_urls = [...]`), baked into the boot initramfs
    /// at `/etc/nullos/release-urls`: where stage 0 looks after the boot medium. A
    /// `nullos.release=` on stage 0's command line replaces them.
    pub release_urls: Vec<String>,
    /// The release URL the PXE script passes as `nullos.release=` (`pxe_release = "..."`,
    /// default [`crate::pxe::DEFAULT_RELEASE_URL`]); iPXE expands its `${...}` settings.
    pub pxe_release: String,
    /// The lowest release version the boot image accepts (`min_version = N`, default the
    /// `[release] version` built with it; never above it), baked in with the release's profile
    /// and target at `/etc/nullos/boot-image`.
    pub min_version: u64,
}

/// `[usb]`: build `usb.img`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsbSection {
    /// systemd's EFI stub that becomes the UKI's code (`stub = "..."`, default
    /// [`crate::usb::DEFAULT_STUB`]).
    pub stub: PathBuf,
    /// The Secure Boot key that signs the UKI (`[secure_boot]`), or none: an unsigned UKI,
    /// which firmware with Secure Boot enabled refuses.
    pub secure_boot: Option<SecureBootKey>,
}

/// `[secure_boot]`: the key and certificate that sign the UKI (Authenticode), the one a
/// farmer enrolls in the firmware's `db`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecureBootKey {
    /// PEM private key (RSA), `key = "..."`.
    pub key: PathBuf,
    /// PEM X.509 certificate of that key, `cert = "..."`.
    pub cert: PathBuf,
}

/// `[release]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseSection {
    /// Monotonic release version; verifiers refuse lower versions than they have seen.
    pub version: u64,
    /// Profile name (`dev`, `metal`, ...).
    pub profile: String,
    /// Target architecture.
    #[serde(default = "default_target")]
    pub target: String,
}

fn default_target() -> String {
    "x86_64".to_owned()
}

/// `[modules]`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModulesSection {
    /// Modules wanted by name (dependencies are added).
    #[serde(default)]
    pub names: Vec<String>,
    /// Folders under `lib/modules/<release>/kernel/` whose every module is wanted,
    /// e.g. `drivers/net/ethernet`.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Modules `init` loads unconditionally at boot (they must be in the image).
    #[serde(default)]
    pub boot: Vec<String>,
}

/// One `[[file]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraFile {
    /// File on the build machine.
    pub source: PathBuf,
    /// Absolute path inside the initramfs.
    pub dest: String,
    /// Permission bits (the source's own mode is ignored: it depends on the umask).
    pub mode: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    release: ReleaseSection,
    kernel: RawKernel,
    #[serde(default)]
    modules: ModulesSection,
    init: RawInit,
    #[serde(default, rename = "file")]
    files: Vec<RawFile>,
    boot: RawBoot,
    #[serde(default)]
    initrd: RawInitrd,
    signing: RawSigning,
    #[serde(default)]
    node: RawNode,
    usb: Option<RawUsb>,
    secure_boot: Option<SecureBootKey>,
    stage0: Option<RawStage0>,
    vmm: Option<RawVmm>,
    workloads: Option<RawWorkloads>,
    #[serde(default, rename = "workload")]
    workload: Vec<RawWorkload>,
    #[serde(default)]
    tools: RawTools,
    update: Option<RawUpdate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVmm {
    path: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkloads {
    policy: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkload {
    path: PathBuf,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTools {
    #[serde(default)]
    binaries: Vec<String>,
    sysroot: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage0 {
    kernel: Option<PathBuf>,
    init: PathBuf,
    policy: PathBuf,
    #[serde(default)]
    modules: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    cmdline: String,
    #[serde(default)]
    release_urls: Vec<String>,
    pxe_release: Option<String>,
    min_version: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUsb {
    stub: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKernel {
    path: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInit {
    path: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    source: PathBuf,
    dest: String,
    #[serde(default = "default_mode")]
    mode: String,
}

fn default_mode() -> String {
    "0644".to_owned()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBoot {
    cmdline: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawInitrd {
    compression: Option<String>,
    level: Option<i32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSigning {
    keys: Vec<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNode {
    control: Option<String>,
    #[serde(default)]
    egress_allow: Vec<String>,
    notary: Option<String>,
    notary_key: Option<PathBuf>,
    farm: Option<PathBuf>,
}

/// `[node]`'s grid settings: the notary's URL and the public key files, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GridSection {
    /// `http://host[:port]`.
    pub notary: String,
    /// The notary's public key file (`nullos-ed25519 <hex>`).
    pub notary_key: PathBuf,
    /// The farmer's public key file (none: the farmer gives the farm at boot).
    pub farm: Option<PathBuf>,
}

impl BuildConfig {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<BuildConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        BuildConfig::parse(&text, base).map_err(|e| match e {
            ParseProblem::Toml(message) => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            ParseProblem::Invalid(problem) => ConfigError::Invalid {
                path: path.to_owned(),
                problem,
            },
        })
    }

    fn parse(text: &str, base: &Path) -> Result<BuildConfig, ParseProblem> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| ParseProblem::Toml(one_line(&e.to_string())))?;
        let invalid = |s: String| Err(ParseProblem::Invalid(s));
        if raw.release.profile.is_empty() || raw.release.profile.contains(char::is_whitespace) {
            return invalid("release.profile must be a non-empty word".into());
        }
        if raw.signing.keys.is_empty() {
            return invalid(
                "signing.keys is empty: a release needs at least one signing key".into(),
            );
        }
        if raw.boot.cmdline.contains('\n') {
            return invalid("boot.cmdline must be one line".into());
        }
        let compression = Compression::from_config(
            raw.initrd.compression.as_deref().unwrap_or("zstd"),
            raw.initrd.level,
        )
        .map_err(|e| ParseProblem::Invalid(e.to_string()))?;
        let mut files = Vec::new();
        for f in raw.files {
            if !f.dest.starts_with('/') || f.dest.split('/').any(|c| c == "..") {
                return invalid(format!(
                    "file dest '{}' must be an absolute path without '..'",
                    f.dest
                ));
            }
            let mode = u32::from_str_radix(f.mode.trim_start_matches("0o"), 8)
                .ok()
                .filter(|m| *m <= 0o7777);
            let Some(mode) = mode else {
                return invalid(format!(
                    "file mode '{}' is not an octal permission like \"0644\"",
                    f.mode
                ));
            };
            files.push(ExtraFile {
                source: base.join(f.source),
                dest: f.dest,
                mode,
            });
        }
        if let Some(control) = &raw.node.control {
            if control
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .is_none()
            {
                return invalid(format!("node.control '{control}' is not host:port"));
            }
        }
        let grid = match (&raw.node.notary, &raw.node.notary_key, &raw.node.farm) {
            (None, None, None) => None,
            (Some(notary), Some(key), farm) => {
                if !notary.starts_with("http://") || notary.contains(char::is_whitespace) {
                    return invalid(format!(
                        "node.notary '{notary}' is not an http:// URL (the node speaks plain HTTP to its notary)"
                    ));
                }
                Some(GridSection {
                    notary: notary.clone(),
                    notary_key: base.join(key),
                    farm: farm.as_ref().map(|farm| base.join(farm)),
                })
            }
            _ => {
                return invalid(
                    "[node] notary and notary_key go together (farm needs them too)".into(),
                )
            }
        };
        for rule in &raw.node.egress_allow {
            if let Err(e) = rule.parse::<interfaces::egress::Rule>() {
                return invalid(format!("node.egress_allow: {e}"));
            }
        }
        if let Some(stage0) = &raw.stage0 {
            if stage0.cmdline.contains('\n') {
                return invalid("stage0.cmdline must be one line".into());
            }
            if let Some(min) = stage0.min_version.filter(|m| *m > raw.release.version) {
                return invalid(format!(
                    "stage0.min_version {min} is above release.version {}: the boot image would refuse its own release",
                    raw.release.version
                ));
            }
            for url in stage0.release_urls.iter().chain(&stage0.pxe_release) {
                if !is_release_url(url) {
                    return invalid(format!(
                        "stage0 release URL '{url}' is not one http:// or https:// URL without spaces"
                    ));
                }
            }
        }
        if !raw.workload.is_empty() {
            if raw.workloads.is_none() {
                return invalid(
                    "[[workload]] needs [workloads] policy: workloads are verified before they go in"
                        .into(),
                );
            }
            if raw.vmm.is_none() {
                return invalid(
                    "[[workload]] needs [vmm] path: the node runs workloads with it".into(),
                );
            }
        }
        if raw.secure_boot.is_some() && raw.usb.is_none() {
            return invalid(
                "[secure_boot] signs the UKI of usb.img: the config needs a [usb] section".into(),
            );
        }
        if let Some(tool) = raw.tools.binaries.iter().find(|t| !t.starts_with('/')) {
            return invalid(format!("tools binary '{tool}' must be an absolute path"));
        }
        let kernel = base.join(raw.kernel.path);
        let stage0 = raw.stage0.map(|s| Stage0Section {
            kernel: s.kernel.map_or_else(|| kernel.clone(), |k| base.join(k)),
            init: base.join(s.init),
            policy: base.join(s.policy),
            modules: s.modules,
            groups: s.groups,
            cmdline: s.cmdline.trim().to_owned(),
            release_urls: s.release_urls,
            pxe_release: s
                .pxe_release
                .unwrap_or_else(|| crate::pxe::DEFAULT_RELEASE_URL.to_owned()),
            min_version: s.min_version.unwrap_or(raw.release.version),
        });
        Ok(BuildConfig {
            release: raw.release,
            kernel,
            stage0,
            modules: raw.modules,
            init: base.join(raw.init.path),
            files,
            cmdline: raw.boot.cmdline.trim().to_owned(),
            compression,
            signing_keys: raw.signing.keys.into_iter().map(|k| base.join(k)).collect(),
            control: raw.node.control,
            egress_allow: raw.node.egress_allow,
            grid,
            vmm: raw.vmm.map(|v| base.join(v.path)),
            workload_policy: raw.workloads.map(|w| base.join(w.policy)),
            workloads: raw
                .workload
                .into_iter()
                .map(|w| base.join(w.path))
                .collect(),
            tools: raw.tools.binaries,
            tools_sysroot: raw.tools.sysroot.map(|r| base.join(r)),
            update: raw.update.map(|u| UpdateSection {
                channel: u.channel,
                poll_seconds: u
                    .poll_seconds
                    .unwrap_or(interfaces::node::DEFAULT_RELEASE_POLL_SECONDS),
                policy: base.join(u.policy),
            }),
            usb: raw.usb.map(|u| UsbSection {
                stub: base.join(
                    u.stub
                        .unwrap_or_else(|| PathBuf::from(crate::usb::DEFAULT_STUB)),
                ),
                secure_boot: raw.secure_boot.map(|k| SecureBootKey {
                    key: base.join(k.key),
                    cert: base.join(k.cert),
                }),
            }),
        })
    }
}

enum ParseProblem {
    Toml(String),
    Invalid(String),
}

/// TOML errors are multi-line with a source excerpt; a build error is one line.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with('|') && !l.chars().all(|c| c == '^' || c == ' ')
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A release URL stage 0 can fetch from: http(s), one word (it goes on a kernel command line).
fn is_release_url(url: &str) -> bool {
    (url.starts_with("http://") || url.starts_with("https://"))
        && !url.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[release]
version = 3
profile = "dev"

[kernel]
path = "../build/kernels/cloud"

[modules]
names = ["virtio_net"]
groups = ["drivers/net/ethernet"]

[init]
path = "init"

[[file]]
source = "motd"
dest = "/etc/motd"

[boot]
cmdline = "console=ttyS0 quiet"

[initrd]
compression = "gzip"

[signing]
keys = ["dev.key"]

[node]
control = "10.0.2.2:7878"
"#;

    #[test]
    fn parses_and_resolves_paths() {
        let allow = GOOD.replace(
            "control = \"10.0.2.2:7878\"",
            "control = \"10.0.2.2:7878\"\negress_allow = [\"10.0.2.2:8000\"]",
        );
        let c = BuildConfig::parse(&allow, Path::new("/p")).unwrap_or_else(|_| panic!("refused"));
        assert_eq!(c.egress_allow, ["10.0.2.2:8000"]);
        assert_eq!(c.grid, None);
        let grid = GOOD.replace(
            "control = \"10.0.2.2:7878\"",
            "notary = \"http://10.0.2.2:7878\"\nnotary_key = \"keys/notary.pub\"\nfarm = \"keys/farmer.pub\"",
        );
        let c = BuildConfig::parse(&grid, Path::new("/p")).unwrap_or_else(|_| panic!("refused"));
        assert_eq!(
            c.grid,
            Some(GridSection {
                notary: "http://10.0.2.2:7878".into(),
                notary_key: "/p/keys/notary.pub".into(),
                farm: Some("/p/keys/farmer.pub".into()),
            })
        );
        let c = BuildConfig::parse(GOOD, Path::new("/cfg")).unwrap_or_else(|_| panic!("parse"));
        assert_eq!(c.release.version, 3);
        assert_eq!(c.release.target, "x86_64");
        assert_eq!(c.kernel, Path::new("/cfg/../build/kernels/cloud"));
        assert_eq!(c.signing_keys, [PathBuf::from("/cfg/dev.key")]);
        assert_eq!(c.files[0].mode, 0o644);
        assert_eq!(c.compression.name(), "gzip");
        assert_eq!(c.control.as_deref(), Some("10.0.2.2:7878"));
        assert_eq!(c.usb, None);
        assert_eq!(c.stage0, None);
    }

    #[test]
    fn the_update_section_names_the_channel_the_poll_and_the_release_policy() {
        let c = BuildConfig::parse(GOOD, Path::new("/p")).unwrap_or_else(|_| panic!("parse"));
        assert_eq!(c.update, None, "no channel unless the profile names one");
        let text = format!(
            "{GOOD}\n[update]\nchannel = \"http://releases.example:8080/metal\"\npolicy = \"keys/metal.pub\"\n"
        );
        let c = BuildConfig::parse(&text, Path::new("/p")).unwrap_or_else(|_| panic!("parse"));
        assert_eq!(
            c.update,
            Some(UpdateSection {
                channel: "http://releases.example:8080/metal".into(),
                poll_seconds: interfaces::node::DEFAULT_RELEASE_POLL_SECONDS,
                policy: "/p/keys/metal.pub".into(),
            })
        );
        let text = text.replace("[update]\n", "[update]\npoll_seconds = 30\n");
        let c = BuildConfig::parse(&text, Path::new("/p")).unwrap_or_else(|_| panic!("parse"));
        assert_eq!(c.update.map(|u| u.poll_seconds), Some(30));
        let unknown =
            format!("{GOOD}\n[update]\nchannel = \"http://a/b\"\npolicy = \"p\"\nurl = \"x\"\n");
        assert!(BuildConfig::parse(&unknown, Path::new("/p")).is_err());
    }

    #[test]
    fn stage0_section_resolves_paths_and_defaults_the_kernel() {
        let with = format!(
            "{GOOD}\n[stage0]\ninit = \"boot\"\npolicy = \"dev.pub\"\nmodules = [\"usb_storage\"]\ncmdline = \" console=ttyS0 \"\n"
        );
        let c = BuildConfig::parse(&with, Path::new("/cfg")).unwrap_or_else(|_| panic!("parse"));
        let s = c.stage0.unwrap_or_else(|| panic!("no stage0"));
        assert_eq!(s.kernel, Path::new("/cfg/../build/kernels/cloud"));
        assert_eq!(s.init, Path::new("/cfg/boot"));
        assert_eq!(s.policy, Path::new("/cfg/dev.pub"));
        assert_eq!(s.modules, ["usb_storage"]);
        assert!(s.groups.is_empty());
        assert_eq!(s.cmdline, "console=ttyS0");
        let grouped = with.replace(
            "[stage0]\n",
            "[stage0]\ngroups = [\"drivers/net/ethernet\"]\n",
        );
        let c = BuildConfig::parse(&grouped, Path::new("/cfg")).unwrap_or_else(|_| panic!("parse"));
        assert_eq!(
            c.stage0.map(|s| s.groups),
            Some(vec!["drivers/net/ethernet".to_owned()])
        );
        assert_eq!(s.min_version, 3, "defaults to the release's version");
        let lower = with.replace("[stage0]\n", "[stage0]\nmin_version = 2\n");
        let c = BuildConfig::parse(&lower, Path::new("/cfg")).unwrap_or_else(|_| panic!("parse"));
        assert_eq!(c.stage0.map(|s| s.min_version), Some(2));
        let above = with.replace("[stage0]\n", "[stage0]\nmin_version = 4\n");
        assert!(
            problem(&above).contains("stage0.min_version 4 is above release.version 3"),
            "{}",
            problem(&above)
        );
        let other = with.replace("[stage0]\n", "[stage0]\nkernel = \"metal\"\n");
        let c = BuildConfig::parse(&other, Path::new("/cfg")).unwrap_or_else(|_| panic!("parse"));
        assert_eq!(
            c.stage0.map(|s| s.kernel),
            Some(PathBuf::from("/cfg/metal"))
        );
        let nopolicy = with.replace("policy = \"dev.pub\"\n", "");
        assert!(
            problem(&nopolicy).contains("policy"),
            "{}",
            problem(&nopolicy)
        );
    }

    #[test]
    fn stage0_release_urls_are_checked_and_the_pxe_url_defaults() {
        let base = format!(
            "{GOOD}\n[stage0]\ninit = \"boot\"\npolicy = \"dev.pub\"\ncmdline = \"console=ttyS0\"\n"
        );
        let c = BuildConfig::parse(&base, Path::new("/cfg")).unwrap_or_else(|_| panic!("parse"));
        let s = c.stage0.unwrap_or_else(|| panic!("no stage0"));
        assert!(s.release_urls.is_empty());
        assert_eq!(s.pxe_release, crate::pxe::DEFAULT_RELEASE_URL);
        let with = format!(
            "{base}release_urls = [\"http://10.1.2.3/nullos\"]\npxe_release = \"http://boot.farm/r\"\n"
        );
        let c = BuildConfig::parse(&with, Path::new("/cfg")).unwrap_or_else(|_| panic!("parse"));
        let s = c.stage0.unwrap_or_else(|| panic!("no stage0"));
        assert_eq!(s.release_urls, ["http://10.1.2.3/nullos"]);
        assert_eq!(s.pxe_release, "http://boot.farm/r");
        for bad in [
            "release_urls = [\"ftp://x/r\"]",
            "release_urls = [\"http://x/a b\"]",
            "pxe_release = \"/release\"",
        ] {
            assert!(
                problem(&format!("{base}{bad}\n")).contains("release URL"),
                "{bad}"
            );
        }
    }

    #[test]
    fn usb_section_resolves_the_stub_or_defaults_it() {
        let with = format!("{GOOD}\n[usb]\nstub = \"efi/linuxx64.efi.stub\"\n");
        let c = BuildConfig::parse(&with, Path::new("/cfg")).unwrap_or_else(|_| panic!("parse"));
        assert_eq!(
            c.usb.map(|u| u.stub),
            Some(PathBuf::from("/cfg/efi/linuxx64.efi.stub"))
        );
        let empty = format!("{GOOD}\n[usb]\n");
        let c = BuildConfig::parse(&empty, Path::new("/cfg")).unwrap_or_else(|_| panic!("parse"));
        assert_eq!(
            c.usb.map(|u| u.stub),
            Some(PathBuf::from(crate::usb::DEFAULT_STUB))
        );
        let typo = format!("{GOOD}\n[usb]\nstup = \"x\"\n");
        assert!(problem(&typo).contains("stup"), "{}", problem(&typo));
    }

    #[test]
    fn secure_boot_section_resolves_the_key_and_needs_a_usb_section() {
        let with =
            format!("{GOOD}\n[usb]\n[secure_boot]\nkey = \"k/sb.key\"\ncert = \"k/sb.crt\"\n");
        let c = BuildConfig::parse(&with, Path::new("/cfg")).unwrap_or_else(|_| panic!("parse"));
        assert_eq!(
            c.usb.and_then(|u| u.secure_boot),
            Some(SecureBootKey {
                key: PathBuf::from("/cfg/k/sb.key"),
                cert: PathBuf::from("/cfg/k/sb.crt"),
            })
        );
        let unsigned = format!("{GOOD}\n[usb]\n");
        let c =
            BuildConfig::parse(&unsigned, Path::new("/cfg")).unwrap_or_else(|_| panic!("parse"));
        assert_eq!(c.usb.and_then(|u| u.secure_boot), None);
        let no_usb = format!("{GOOD}\n[secure_boot]\nkey = \"a\"\ncert = \"b\"\n");
        assert!(problem(&no_usb).contains("[usb]"), "{}", problem(&no_usb));
        let no_cert = format!("{GOOD}\n[usb]\n[secure_boot]\nkey = \"a\"\n");
        assert!(problem(&no_cert).contains("cert"), "{}", problem(&no_cert));
    }

    #[test]
    fn workload_sections_resolve_paths_and_need_a_policy_and_a_vmm() {
        let with = format!(
            "{GOOD}\n[vmm]\npath = \"vmm\"\n[workloads]\npolicy = \"dev.pub\"\n\
             [[workload]]\npath = \"w/hello\"\n[[workload]]\npath = \"w/other\"\n\
             [tools]\nbinaries = [\"/sbin/mke2fs\"]\n"
        );
        let c = BuildConfig::parse(&with, Path::new("/cfg")).unwrap_or_else(|_| panic!("parse"));
        assert_eq!(c.vmm, Some(PathBuf::from("/cfg/vmm")));
        assert_eq!(c.workload_policy, Some(PathBuf::from("/cfg/dev.pub")));
        assert_eq!(
            c.workloads,
            [PathBuf::from("/cfg/w/hello"), PathBuf::from("/cfg/w/other")]
        );
        assert_eq!(c.tools, ["/sbin/mke2fs"]);
        assert_eq!(c.tools_sysroot, None);
        let rooted = with.replace("[tools]\n", "[tools]\nsysroot = \"../build/sysroot\"\n");
        let c = BuildConfig::parse(&rooted, Path::new("/cfg")).unwrap_or_else(|_| panic!("parse"));
        assert_eq!(
            c.tools_sysroot,
            Some(PathBuf::from("/cfg/../build/sysroot"))
        );
        let plain = BuildConfig::parse(GOOD, Path::new("/")).unwrap_or_else(|_| panic!("parse"));
        assert!(plain.vmm.is_none() && plain.workloads.is_empty() && plain.tools.is_empty());
        let nopolicy = with.replace("[workloads]\npolicy = \"dev.pub\"\n", "");
        assert!(problem(&nopolicy).contains("[workloads] policy"));
        let novmm = with.replace("[vmm]\npath = \"vmm\"\n", "");
        assert!(problem(&novmm).contains("[vmm] path"));
        let relative = with.replace("\"/sbin/mke2fs\"", "\"mke2fs\"");
        assert!(problem(&relative).contains("absolute"));
        let typo = with.replace("[tools]\nbinaries", "[tools]\nbinary");
        assert!(problem(&typo).contains("binary"));
    }

    fn problem(text: &str) -> String {
        match BuildConfig::parse(text, Path::new("/")) {
            Ok(_) => panic!("accepted bad config"),
            Err(ParseProblem::Toml(m) | ParseProblem::Invalid(m)) => m,
        }
    }

    #[test]
    fn rejects_bad_configs_with_one_line() {
        let typo = GOOD.replace("[boot]", "[boot]\ncmdlin = \"x\"");
        assert!(problem(&typo).contains("cmdlin"), "{}", problem(&typo));
        assert!(!problem(&typo).contains('\n'));
        let lz = GOOD.replace("\"gzip\"", "\"lzo\"");
        assert!(problem(&lz).contains("lzo"));
        let nokeys = GOOD.replace("keys = [\"dev.key\"]", "keys = []");
        assert!(problem(&nokeys).contains("signing key"));
        let badport = GOOD.replace("10.0.2.2:7878", "10.0.2.2");
        assert!(problem(&badport).contains("host:port"));
        let badrule = GOOD.replace(
            "control = \"10.0.2.2:7878\"",
            "control = \"10.0.2.2:7878\"\negress_allow = [\"10.0.2.2:0\"]",
        );
        assert_eq!(
            problem(&badrule),
            "node.egress_allow: \"10.0.2.2:0\" is not A.B.C.D[/N][:PORT]"
        );
        let half = GOOD.replace(
            "control = \"10.0.2.2:7878\"",
            "notary = \"http://10.0.2.2:7878\"",
        );
        assert_eq!(
            problem(&half),
            "[node] notary and notary_key go together (farm needs them too)"
        );
        let tls = GOOD.replace(
            "control = \"10.0.2.2:7878\"",
            "notary = \"https://n\"\nnotary_key = \"k\"\nfarm = \"f\"",
        );
        assert!(
            problem(&tls).contains("is not an http:// URL"),
            "{}",
            problem(&tls)
        );
        let mode = GOOD.replace(
            "dest = \"/etc/motd\"",
            "dest = \"/etc/motd\"\nmode = \"rw\"",
        );
        assert!(problem(&mode).contains("octal"));
        // Rejected (problem() panics otherwise), with the parser's message folded to one line.
        let garbage = problem("not toml [");
        assert!(
            !garbage.is_empty() && !garbage.contains('\n'),
            "{garbage:?}"
        );
    }
}
