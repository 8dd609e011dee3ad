//! The VM's configuration: the command line, parsed with `lexopt`, and its validation into a
//! [`VmConfig`] (pure, so the bounds are unit-tested).
//!
//! `lexopt` rather than clap: the VMM's resident size is a goal (≤ 2 MiB besides guest memory,
//! `make bench`), and clap's parser, help and error machinery was about a fifth of the binary.
//! The options are few and fixed; the help text is below. What the node asks for (kernel,
//! memory, disks, ...) is [`VmSpec`], parsed by `interfaces`, where the node makes it into
//! arguments; the VMM's own knobs (`--seccomp`, `--log-level`) are parsed here.

use std::ffi::OsString;
use std::path::PathBuf;

use interfaces::vm::{text, VmOption, VmSpec, VmSpecParser};

use crate::seccomp::SeccompMode;

// The kernel command line used when none is given, a `--disk`, `--serial` and the command
// line's errors: the node's side of the contract is the same code (`interfaces::vm`).
pub use interfaces::vm::{
    ArgError, Disk as DiskConfig, DiskError, Serial as SerialOutput, DEFAULT_CMDLINE,
};
/// Most virtio devices (disks plus the network): one IOAPIC pin each, from GSI 5 to 23.
pub const MAX_VIRTIO_DEVICES: usize = 19;
/// Smallest guest memory accepted.
pub const MIN_MEMORY_MIB: u64 = 16;
/// Most vCPUs accepted (APIC ids fit a byte, and CPUID leaf 1 counts in a byte).
pub const MAX_VCPUS: u32 = 254;

/// `vmm --help`.
pub const HELP: &str = "\
vmm: run one KVM micro-VM. The exit status says how the guest ended:
0 poweroff, 10 reboot, 11 crash, 12 kernel panic, 1 VMM error, 2 bad input (docs/VMM.md).

Usage: vmm --kernel <FILE> [OPTIONS]

Options:
  --kernel <FILE>        bzImage (64-bit boot protocol) or ELF vmlinux
  --initrd <FILE>        initial ramdisk, loaded at the top of low memory
  --cmdline <TEXT>       kernel command line [default: console=ttyS0 panic=-1]
  --memory-mib <N>       guest memory in MiB [default: 128]
  --vcpus <N>            number of vCPUs [default: 1]
  --disk <PATH[,ro]>     raw disk image as a virtio block device; repeatable, the guest sees
                         them in this order (/dev/vda, /dev/vdb, ...)
  --net                  virtio network on the VMM's user-mode network: the guest is
                         10.200.0.2/24, gateway and DNS 10.200.0.1; outbound only, to
                         the public internet only
  --net-allow <RULE>     A.B.C.D[/N][:PORT] that --net may reach although not public
                         (a private server the node's policy names); repeatable
  --net-deny <RULE>      A.B.C.D[/N][:PORT] that --net never reaches even when public
                         (the node's control endpoint); repeatable
  --serial <FILE|stdout> where the guest console goes [default: stdout]
  --kvm <FILE>           the KVM device [default: /dev/kvm]
                         (every FILE may be /proc/self/fd/N: inherited descriptor N is used
                         as it is, never reopened)
  --seccomp <MODE>       kill, log or off: what a system call outside the allow-list does
                         [default: kill]
  --log-level <LEVEL>    off, error, warn, info, debug, trace [default: warn]
  -h, --help             this text
  -V, --version          the version
";

/// `vmm` command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cli {
    /// The VM: kernel, initrd, command line, memory, vCPUs, disks, network, console.
    pub spec: VmSpec,
    /// What a system call outside the VMM's seccomp allow-list does.
    pub seccomp: SeccompMode,
    /// Log level of the VMM's own messages on stderr.
    pub log_level: log::LevelFilter,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run a VM.
    Run(Box<Cli>),
    /// Print [`HELP`].
    Help,
    /// Print the version.
    Version,
}

impl Cli {
    /// Parses the arguments after the program name.
    pub fn parse_from<I>(args: I) -> Result<Command, ArgError>
    where
        I: IntoIterator,
        I::Item: Into<OsString>,
    {
        use lexopt::prelude::*;
        let mut parser = lexopt::Parser::from_args(args);
        let mut spec = VmSpecParser::default();
        let mut seccomp = SeccompMode::Kill;
        let mut log_level = log::LevelFilter::Warn;
        while let Some(arg) = parser.next()? {
            if let Long(name) = &arg {
                if let Some(option) = VmOption::named(name) {
                    spec.apply(option, &mut parser)?;
                    continue;
                }
            }
            match arg {
                Long("seccomp") => {
                    let v = text(&mut parser, "--seccomp")?;
                    seccomp = v.parse().map_err(|()| {
                        ArgError::Usage(format!("--seccomp {v}: expected kill, log or off"))
                    })?;
                }
                Long("log-level") => {
                    let v = text(&mut parser, "--log-level")?;
                    log_level = v.parse().map_err(|_| {
                        ArgError::Usage(format!(
                            "--log-level {v}: expected off, error, warn, info, debug or trace"
                        ))
                    })?;
                }
                Short('h') | Long("help") => return Ok(Command::Help),
                Short('V') | Long("version") => return Ok(Command::Version),
                _ => return Err(arg.unexpected().into()),
            }
        }
        Ok(Command::Run(Box::new(Cli {
            spec: spec.finish()?,
            seccomp,
            log_level,
        })))
    }
}

/// A validated VM configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    /// Kernel image path.
    pub kernel: PathBuf,
    /// Initrd path.
    pub initrd: Option<PathBuf>,
    /// Kernel command line.
    pub cmdline: String,
    /// Guest memory in bytes.
    pub memory_bytes: u64,
    /// vCPU count, 1..=[`MAX_VCPUS`].
    pub vcpus: u8,
    /// Console output.
    pub serial: SerialOutput,
    /// Virtio block devices, in guest order.
    pub disks: Vec<DiskConfig>,
    /// Whether the guest has the user-mode network.
    pub net: bool,
    /// The node's egress rules for it (`--net-allow`, `--net-deny`).
    pub net_allow: Vec<interfaces::egress::Rule>,
    /// Destinations always refused.
    pub net_deny: Vec<interfaces::egress::Rule>,
    /// Seccomp filter mode.
    pub seccomp: crate::seccomp::SeccompMode,
    /// The KVM device: a path or an inherited descriptor.
    pub kvm: PathBuf,
}

/// Invalid configuration.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// vCPU count out of range.
    #[error("--vcpus {0}: must be between 1 and {MAX_VCPUS}")]
    VcpuCount(u32),
    /// Memory below the minimum.
    #[error("--memory-mib {0}: must be at least {MIN_MEMORY_MIB}")]
    MemoryTooSmall(u64),
    /// More virtio devices than interrupt pins.
    #[error("{0} virtio devices (disks and network): at most {MAX_VIRTIO_DEVICES}")]
    TooManyDevices(usize),
    /// Memory above what the host has.
    #[error("--memory-mib {requested}: the host has only {host} MiB")]
    MemoryExceedsHost {
        /// Requested MiB.
        requested: u64,
        /// Host RAM in MiB.
        host: u64,
    },
}

impl VmConfig {
    /// Validates `cli` against the host's RAM (`None` if unknown: then only the lower bound).
    pub fn from_cli(cli: &Cli, host_mem_mib: Option<u64>) -> Result<Self, Error> {
        let spec = &cli.spec;
        let vcpus = u8::try_from(spec.vcpus)
            .ok()
            .filter(|n| (1..=MAX_VCPUS).contains(&u32::from(*n)))
            .ok_or(Error::VcpuCount(spec.vcpus))?;
        if spec.memory_mib < MIN_MEMORY_MIB {
            return Err(Error::MemoryTooSmall(spec.memory_mib));
        }
        if let Some(host) = host_mem_mib {
            if spec.memory_mib > host {
                return Err(Error::MemoryExceedsHost {
                    requested: spec.memory_mib,
                    host,
                });
            }
        }
        let devices = spec.disks.len() + usize::from(spec.net);
        if devices > MAX_VIRTIO_DEVICES {
            return Err(Error::TooManyDevices(devices));
        }
        Ok(VmConfig {
            kernel: spec.kernel.clone(),
            initrd: spec.initrd.clone(),
            cmdline: spec.cmdline.clone(),
            // Bounded by the host's RAM or, without it, u64 MiB fits u64 bytes only below 2^44.
            memory_bytes: spec
                .memory_mib
                .checked_mul(1 << 20)
                .ok_or(Error::MemoryExceedsHost {
                    requested: spec.memory_mib,
                    host: u64::MAX >> 20,
                })?,
            vcpus,
            serial: spec.serial.clone(),
            disks: spec.disks.clone(),
            net: spec.net,
            net_allow: spec.net_allow.clone(),
            net_deny: spec.net_deny.clone(),
            seccomp: cli.seccomp,
            kvm: spec
                .kvm
                .clone()
                .unwrap_or_else(|| PathBuf::from(interfaces::vm::DEFAULT_KVM)),
        })
    }
}

/// `MemTotal` from `/proc/meminfo` text, in MiB.
pub fn parse_mem_total_mib(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut words = line.split_whitespace().skip(1);
    let kib: u64 = words.next()?.parse().ok()?;
    (words.next() == Some("kB")).then_some(kib / 1024)
}

/// The host's RAM in MiB, if `/proc/meminfo` says.
pub fn host_mem_mib() -> Option<u64> {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .as_deref()
        .and_then(parse_mem_total_mib)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        let mut v = vec!["--kernel", "k"];
        v.extend_from_slice(args);
        match Cli::parse_from(v).unwrap() {
            Command::Run(cli) => *cli,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parse_errors_name_the_option_and_help_and_version_are_commands() {
        let err = |args: &[&str]| {
            Cli::parse_from(args.iter().copied())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(err(&[]), "--kernel is required (see vmm --help)");
        assert_eq!(
            err(&["--kernel", "k", "--vcpus", "two"]),
            "--vcpus two: not a number (see vmm --help)"
        );
        assert!(err(&["--kernel", "k", "--frobnicate"]).contains("--frobnicate"));
        assert!(err(&["--kernel"]).contains("--kernel"));
        assert_eq!(
            err(&["--kernel", "k", "--seccomp", "maybe"]),
            "--seccomp maybe: expected kill, log or off (see vmm --help)"
        );
        assert!(matches!(Cli::parse_from(["--help"]), Ok(Command::Help)));
        assert!(matches!(Cli::parse_from(["-V"]), Ok(Command::Version)));
        let c = cli(&["--seccomp", "log", "--log-level", "debug", "--initrd", "i"]);
        assert_eq!(c.seccomp, SeccompMode::Log);
        assert_eq!(c.log_level, log::LevelFilter::Debug);
        assert_eq!(c.spec.initrd, Some(PathBuf::from("i")));
    }

    #[test]
    fn defaults_are_one_vcpu_128_mib_console_on_stdout() {
        let c = VmConfig::from_cli(&cli(&[]), Some(4096)).unwrap();
        assert_eq!(c.vcpus, 1);
        assert_eq!(c.memory_bytes, 128 << 20);
        assert_eq!(c.serial, SerialOutput::Stdout);
        assert_eq!(c.cmdline, DEFAULT_CMDLINE);
    }

    #[test]
    fn serial_to_a_file() {
        let c = VmConfig::from_cli(&cli(&["--serial", "/tmp/x"]), None).unwrap();
        assert_eq!(c.serial, SerialOutput::File("/tmp/x".into()));
    }

    #[test]
    fn vcpu_and_memory_bounds() {
        let check = |args: &[&str], host| VmConfig::from_cli(&cli(args), host);
        assert_eq!(check(&["--vcpus", "0"], None), Err(Error::VcpuCount(0)));
        assert_eq!(check(&["--vcpus", "255"], None), Err(Error::VcpuCount(255)));
        assert_eq!(check(&["--vcpus", "300"], None), Err(Error::VcpuCount(300)));
        assert_eq!(check(&["--vcpus", "254"], None).unwrap().vcpus, 254);
        assert_eq!(
            check(&["--memory-mib", "8"], None),
            Err(Error::MemoryTooSmall(8))
        );
        assert_eq!(
            check(&["--memory-mib", "9000"], Some(8000)),
            Err(Error::MemoryExceedsHost {
                requested: 9000,
                host: 8000
            })
        );
        assert!(check(&["--memory-mib", "8000"], Some(8000)).is_ok());
        assert!(check(&["--memory-mib", &u64::MAX.to_string()], None).is_err());
    }

    #[test]
    fn disks_keep_their_order_and_read_only_flag() {
        let c = VmConfig::from_cli(
            &cli(&[
                "--disk",
                "/r.img,ro",
                "--disk",
                "/v.img",
                "--disk",
                "/w.img,rw",
                "--net",
            ]),
            None,
        )
        .unwrap();
        let got: Vec<_> = c
            .disks
            .iter()
            .map(|d| (d.path.to_str().unwrap(), d.read_only))
            .collect();
        assert_eq!(
            got,
            vec![("/r.img", true), ("/v.img", false), ("/w.img", false)]
        );
        assert!(c.net);
        assert_eq!(
            DiskConfig::parse("/x.img,rx"),
            Err(DiskError::Option("/x.img,rx".into(), "rx".into()))
        );
        assert_eq!(DiskConfig::parse(",ro"), Err(DiskError::Path(",ro".into())));
        let many: Vec<String> = (0..19)
            .flat_map(|i| ["--disk".into(), format!("/d{i}")])
            .collect();
        let mut args: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(VmConfig::from_cli(&cli(&args), None).is_ok());
        args.push("--net");
        assert_eq!(
            VmConfig::from_cli(&cli(&args), None),
            Err(Error::TooManyDevices(20))
        );
    }

    #[test]
    fn meminfo_parsing() {
        let text = "MemTotal:       16303428 kB\nMemFree:         1000 kB\n";
        assert_eq!(parse_mem_total_mib(text), Some(15921));
        assert_eq!(parse_mem_total_mib("MemFree: 1 kB\n"), None);
        assert_eq!(parse_mem_total_mib("MemTotal: x kB\n"), None);
    }
}
