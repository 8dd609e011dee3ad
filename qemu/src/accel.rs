//! KVM or TCG: which accelerator can really run a Linux guest here.
//!
//! The rule ([`Accel::detect`]):
//! 1. `NULLOS_ACCEL=kvm` or `NULLOS_ACCEL=tcg` decides, whatever the host looks like;
//! 2. otherwise KVM only if `/dev/kvm` opens read-write **and** the host CPU is not itself a
//!    virtual CPU (no `hypervisor` flag in `/proc/cpuinfo`);
//! 3. otherwise TCG (`-accel tcg -cpu max`).
//!
//! Why the hypervisor check: inside a VM, `/dev/kvm` is nested KVM, which on the project's
//! machines is software-emulated and runs about a million guest instructions per second --
//! Linux would take hours to boot, while TCG boots it to init in about 3.5 s. A host with
//! fast (hardware-assisted) nested KVM can still opt in with `NULLOS_ACCEL=kvm`.

use std::fmt;
use std::fs::OpenOptions;
use std::str::FromStr;

/// Environment variable that overrides detection: `kvm` or `tcg`.
pub const ACCEL_ENV: &str = "NULLOS_ACCEL";

/// QEMU accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualisation: `-accel kvm -cpu host`.
    Kvm,
    /// Software emulation: `-accel tcg -cpu max` (every CPU feature TCG emulates, including SVM,
    /// so a nested KVM guest can run inside).
    Tcg,
}

/// `NULLOS_ACCEL` (or a `--accel` flag) names no accelerator we know.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown accelerator {value:?} (expected \"kvm\" or \"tcg\")")]
pub struct ParseAccelError {
    /// What was given.
    pub value: String,
}

impl Accel {
    /// Detects the accelerator by the rule in the module docs.
    pub fn detect() -> Result<Accel, ParseAccelError> {
        let env = std::env::var(ACCEL_ENV).ok();
        let kvm_usable = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_ok();
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Accel::decide(env.as_deref(), kvm_usable, &cpuinfo)
    }

    /// The pure decision behind [`Accel::detect`]. An empty override counts as unset.
    pub fn decide(
        override_value: Option<&str>,
        kvm_usable: bool,
        cpuinfo: &str,
    ) -> Result<Accel, ParseAccelError> {
        match override_value.map(str::trim) {
            Some(value) if !value.is_empty() => value.parse(),
            _ if kvm_usable && !cpu_is_virtual(cpuinfo) => Ok(Accel::Kvm),
            _ => Ok(Accel::Tcg),
        }
    }

    /// The QEMU flags selecting this accelerator and its CPU model.
    pub fn args(self) -> [&'static str; 4] {
        match self {
            Accel::Kvm => ["-accel", "kvm", "-cpu", "host"],
            Accel::Tcg => ["-accel", "tcg", "-cpu", "max"],
        }
    }
}

/// Whether any `flags` line of /proc/cpuinfo has the `hypervisor` flag (CPUID.1:ECX bit 31,
/// which hypervisors set for their guests).
fn cpu_is_virtual(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter_map(|line| line.split_once(':'))
        .filter(|(key, _)| key.trim() == "flags")
        .any(|(_, flags)| flags.split_whitespace().any(|f| f == "hypervisor"))
}

impl FromStr for Accel {
    type Err = ParseAccelError;

    fn from_str(s: &str) -> Result<Accel, ParseAccelError> {
        match s.to_ascii_lowercase().as_str() {
            "kvm" => Ok(Accel::Kvm),
            "tcg" => Ok(Accel::Tcg),
            _ => Err(ParseAccelError {
                value: s.to_string(),
            }),
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BARE: &str =
        "processor\t: 0\nflags\t\t: fpu vme svm lm\n\nprocessor\t: 1\nflags\t\t: fpu vme svm lm\n";
    const GUEST: &str = "processor\t: 0\nflags\t\t: fpu vme hypervisor lm\n";

    #[test]
    fn kvm_on_bare_metal_with_usable_dev_kvm() {
        assert_eq!(Accel::decide(None, true, BARE), Ok(Accel::Kvm));
    }

    #[test]
    fn tcg_inside_a_vm_even_with_dev_kvm() {
        assert_eq!(Accel::decide(None, true, GUEST), Ok(Accel::Tcg));
    }

    #[test]
    fn tcg_without_dev_kvm() {
        assert_eq!(Accel::decide(None, false, BARE), Ok(Accel::Tcg));
    }

    #[test]
    fn override_wins_both_ways() {
        assert_eq!(Accel::decide(Some("kvm"), false, GUEST), Ok(Accel::Kvm));
        assert_eq!(Accel::decide(Some("TCG"), true, BARE), Ok(Accel::Tcg));
        assert_eq!(Accel::decide(Some(" "), true, BARE), Ok(Accel::Kvm));
    }

    #[test]
    fn bad_override_is_an_error() {
        assert_eq!(
            Accel::decide(Some("hvf"), true, BARE),
            Err(ParseAccelError {
                value: "hvf".into()
            })
        );
    }

    #[test]
    fn hypervisor_must_be_a_whole_flag_on_a_flags_line() {
        assert!(!cpu_is_virtual(
            "model name\t: hypervisor-free cpu\nflags\t: fpu\n"
        ));
        assert!(!cpu_is_virtual("flags\t: fpu nothypervisor\n"));
        assert!(cpu_is_virtual(GUEST));
    }

    #[test]
    fn flags_match_the_accelerator() {
        assert_eq!(Accel::Tcg.args(), ["-accel", "tcg", "-cpu", "max"]);
        assert_eq!(Accel::Kvm.args(), ["-accel", "kvm", "-cpu", "host"]);
    }
}
