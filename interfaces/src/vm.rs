//! The vmm's interface to the node: its command line ([`VmSpec`], made into arguments by the
//! node's `init` with [`VmSpec::to_args`] and parsed back by `vmm` with [`VmSpecParser`]), its
//! exit statuses ([`VmmExit`]), the stderr line carrying the guest's own exit code
//! ([`GUEST_EXIT_CODE_PREFIX`]) and the I/O port the guest's `init` writes that code to
//! ([`EXIT_CODE_PORT`]).
//!
//! The command line is parsed with `lexopt`: the vmm's resident size is a goal, and the
//! options are few and fixed. The vmm adds options of its own (`--seccomp`, `--log-level`,
//! `--help`) around [`VmSpecParser`].

use std::ffi::{OsStr, OsString};
use std::os::fd::RawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::egress::Rule;

pub use lexopt;

/// Kernel command line used when none is given: console on COM1, and a panicking kernel reboots
/// at once instead of spinning (the vmm reports the reboot).
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 panic=-1";
/// Guest memory when none is given, in MiB.
pub const DEFAULT_MEMORY_MIB: u64 = 128;
/// vCPUs when none are given.
pub const DEFAULT_VCPUS: u32 = 1;
/// The `--serial` value that sends the guest console to the vmm's standard output.
pub const SERIAL_STDOUT: &str = "stdout";
/// The KVM device the vmm opens when `--kvm` is not given.
pub const DEFAULT_KVM: &str = "/dev/kvm";
/// How a file argument names a descriptor the vmm inherited instead of a path
/// (`/proc/self/fd/N`): the vmm uses descriptor N itself and never opens a path, so the node can
/// hand over a file it has checked (the root image it hashed) and nothing can swap the file
/// between check and use; the jailed vmm has no way to open the node's files anyway. Outside a
/// jail the same spelling still names the file through `/proc`.
pub const FD_PATH_PREFIX: &str = "/proc/self/fd/";

/// The file argument naming inherited descriptor `fd`.
pub fn fd_path(fd: RawFd) -> PathBuf {
    PathBuf::from(format!("{FD_PATH_PREFIX}{fd}"))
}

/// The inherited descriptor a file argument names, if it is [`FD_PATH_PREFIX`] and a decimal
/// number (no sign, no leading zero, within `RawFd`).
pub fn parse_fd_path(path: &Path) -> Option<RawFd> {
    let digits = path.to_str()?.strip_prefix(FD_PATH_PREFIX)?;
    let well_formed = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    well_formed.then(|| digits.parse().ok()).flatten()
}

/// What `vmm` is asked to run: everything on its command line but its own knobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSpec {
    /// `--kernel`: bzImage (64-bit boot protocol) or ELF vmlinux.
    pub kernel: PathBuf,
    /// `--initrd`: initial ramdisk.
    pub initrd: Option<PathBuf>,
    /// `--cmdline`: the guest kernel's command line.
    pub cmdline: String,
    /// `--memory-mib`: guest memory in MiB.
    pub memory_mib: u64,
    /// `--vcpus`: number of vCPUs.
    pub vcpus: u32,
    /// `--disk`, repeated: raw disk images in guest order (/dev/vda, /dev/vdb, ...).
    pub disks: Vec<Disk>,
    /// `--net`: the guest gets the user-mode network.
    pub net: bool,
    /// `--net-allow RULE`, repeated: non-public destinations the node's policy opens.
    pub net_allow: Vec<Rule>,
    /// `--net-deny RULE`, repeated: destinations always refused (the control endpoint).
    pub net_deny: Vec<Rule>,
    /// `--serial`: where the guest console goes.
    pub serial: Serial,
    /// `--kvm`: the KVM device (a path or an inherited descriptor, see [`FD_PATH_PREFIX`]);
    /// [`DEFAULT_KVM`] when `None`.
    pub kvm: Option<PathBuf>,
}

/// One virtio block device: `--disk PATH[,ro]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// Raw image file.
    pub path: PathBuf,
    /// Read-only: the guest is told (VIRTIO_BLK_F_RO) and writes fail.
    pub read_only: bool,
}

/// Where the guest console goes: `--serial stdout|FILE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Serial {
    /// The vmm's standard output.
    Stdout,
    /// A file, created or truncated.
    File(PathBuf),
}

/// A `--disk` value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiskError {
    /// An option other than `ro` or `rw` after the last comma.
    #[error("--disk {0}: unknown option {1:?} (expected PATH or PATH,ro)")]
    Option(String, String),
    /// No path.
    #[error("--disk {0:?}: no path")]
    Path(String),
}

/// A command line that cannot be parsed.
#[derive(Debug, thiserror::Error)]
pub enum ArgError {
    /// A malformed or missing option.
    #[error("{0} (see vmm --help)")]
    Usage(String),
    /// A bad `--disk` value.
    #[error(transparent)]
    Disk(#[from] DiskError),
}

impl From<lexopt::Error> for ArgError {
    fn from(e: lexopt::Error) -> Self {
        ArgError::Usage(e.to_string())
    }
}

impl VmSpec {
    /// A VM of `kernel` with every other option at its default.
    pub fn new(kernel: impl Into<PathBuf>) -> VmSpec {
        VmSpec {
            kernel: kernel.into(),
            initrd: None,
            cmdline: DEFAULT_CMDLINE.to_owned(),
            memory_mib: DEFAULT_MEMORY_MIB,
            vcpus: DEFAULT_VCPUS,
            disks: Vec::new(),
            net: false,
            net_allow: Vec::new(),
            net_deny: Vec::new(),
            serial: Serial::Stdout,
            kvm: None,
        }
    }

    /// The vmm's arguments (after the program name), every option spelled out. They parse back
    /// to this spec, with two spellings chosen for that: a writable disk whose path holds a
    /// comma gets `,rw`, and a console file named `stdout` is written `./stdout`.
    pub fn to_args(&self) -> Vec<OsString> {
        let option = |name: VmOption| OsString::from(format!("--{}", name.name()));
        let mut args = vec![
            option(VmOption::Kernel),
            self.kernel.clone().into_os_string(),
        ];
        if let Some(initrd) = &self.initrd {
            args.push(option(VmOption::Initrd));
            args.push(initrd.clone().into_os_string());
        }
        args.extend([
            option(VmOption::Cmdline),
            self.cmdline.clone().into(),
            option(VmOption::MemoryMib),
            self.memory_mib.to_string().into(),
            option(VmOption::Vcpus),
            self.vcpus.to_string().into(),
        ]);
        for disk in &self.disks {
            args.push(option(VmOption::Disk));
            args.push(disk.to_arg());
        }
        if self.net {
            args.push(option(VmOption::Net));
        }
        for (name, rules) in [
            (VmOption::NetAllow, &self.net_allow),
            (VmOption::NetDeny, &self.net_deny),
        ] {
            for rule in rules {
                args.push(option(name));
                args.push(rule.to_string().into());
            }
        }
        args.push(option(VmOption::Serial));
        args.push(match &self.serial {
            Serial::Stdout => SERIAL_STDOUT.into(),
            Serial::File(path) if path.as_os_str() == SERIAL_STDOUT => {
                PathBuf::from(".").join(path).into_os_string()
            }
            Serial::File(path) => path.clone().into_os_string(),
        });
        if let Some(kvm) = &self.kvm {
            args.push(option(VmOption::Kvm));
            args.push(kvm.clone().into_os_string());
        }
        args
    }

    /// Parses a command line holding only the spec's options (the vmm's own use
    /// [`VmSpecParser`] directly).
    pub fn parse_args<I>(args: I) -> Result<VmSpec, ArgError>
    where
        I: IntoIterator,
        I::Item: Into<OsString>,
    {
        let mut parser = lexopt::Parser::from_args(args);
        let mut spec = VmSpecParser::default();
        while let Some(arg) = parser.next()? {
            if let lexopt::Arg::Long(name) = &arg {
                if let Some(option) = VmOption::named(name) {
                    spec.apply(option, &mut parser)?;
                    continue;
                }
            }
            return Err(arg.unexpected().into());
        }
        spec.finish()
    }
}

impl Disk {
    /// Parses `PATH` or `PATH,ro` (`PATH,rw` is accepted too).
    pub fn parse(arg: impl AsRef<OsStr>) -> Result<Disk, DiskError> {
        let arg = arg.as_ref();
        let bytes = arg.as_bytes();
        let lossy = || arg.to_string_lossy().into_owned();
        let (path, read_only) = match bytes.iter().rposition(|&b| b == b',') {
            Some(comma) => {
                let (path, option) = (&bytes[..comma], &bytes[comma + 1..]);
                match option {
                    b"ro" => (path, true),
                    b"rw" => (path, false),
                    _ => {
                        let option = String::from_utf8_lossy(option).into_owned();
                        return Err(DiskError::Option(lossy(), option));
                    }
                }
            }
            None => (bytes, false),
        };
        if path.is_empty() {
            return Err(DiskError::Path(lossy()));
        }
        Ok(Disk {
            path: PathBuf::from(OsString::from_vec(path.to_vec())),
            read_only,
        })
    }

    /// The `--disk` value that [`Disk::parse`] reads back as this disk.
    pub fn to_arg(&self) -> OsString {
        let mut arg = self.path.clone().into_os_string();
        if self.read_only {
            arg.push(",ro");
        } else if arg.as_bytes().contains(&b',') {
            arg.push(",rw");
        }
        arg
    }
}

/// The options of [`VmSpec`] on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmOption {
    /// `--kernel FILE`.
    Kernel,
    /// `--initrd FILE`.
    Initrd,
    /// `--cmdline TEXT`.
    Cmdline,
    /// `--memory-mib N`.
    MemoryMib,
    /// `--vcpus N`.
    Vcpus,
    /// `--disk PATH[,ro]`.
    Disk,
    /// `--net`.
    Net,
    /// `--net-allow A.B.C.D[/N][:PORT]`.
    NetAllow,
    /// `--net-deny A.B.C.D[/N][:PORT]`.
    NetDeny,
    /// `--serial FILE|stdout`.
    Serial,
    /// `--kvm FILE`.
    Kvm,
}

impl VmOption {
    /// Every option.
    pub const ALL: [VmOption; 11] = [
        VmOption::Kernel,
        VmOption::Initrd,
        VmOption::Cmdline,
        VmOption::MemoryMib,
        VmOption::Vcpus,
        VmOption::Disk,
        VmOption::Net,
        VmOption::NetAllow,
        VmOption::NetDeny,
        VmOption::Serial,
        VmOption::Kvm,
    ];

    /// The long option's name, without `--`.
    pub const fn name(self) -> &'static str {
        match self {
            VmOption::Kernel => "kernel",
            VmOption::Initrd => "initrd",
            VmOption::Cmdline => "cmdline",
            VmOption::MemoryMib => "memory-mib",
            VmOption::Vcpus => "vcpus",
            VmOption::Disk => "disk",
            VmOption::Net => "net",
            VmOption::NetAllow => "net-allow",
            VmOption::NetDeny => "net-deny",
            VmOption::Serial => "serial",
            VmOption::Kvm => "kvm",
        }
    }

    /// The option called `name` (without `--`), if it is one of the spec's.
    pub fn named(name: &str) -> Option<VmOption> {
        VmOption::ALL.into_iter().find(|o| o.name() == name)
    }
}

/// Builds a [`VmSpec`] from the options of a command line, one at a time, so that the vmm can
/// parse its own options in the same loop.
#[derive(Debug)]
pub struct VmSpecParser {
    kernel: Option<PathBuf>,
    spec: VmSpec,
}

impl Default for VmSpecParser {
    fn default() -> Self {
        VmSpecParser {
            kernel: None,
            spec: VmSpec::new(PathBuf::new()),
        }
    }
}

impl VmSpecParser {
    /// Applies `option`, which `parser` has just returned, reading its value from `parser`.
    pub fn apply(&mut self, option: VmOption, parser: &mut lexopt::Parser) -> Result<(), ArgError> {
        let spec = &mut self.spec;
        match option {
            VmOption::Kernel => self.kernel = Some(parser.value()?.into()),
            VmOption::Initrd => spec.initrd = Some(parser.value()?.into()),
            VmOption::Cmdline => spec.cmdline = text(parser, "--cmdline")?,
            VmOption::MemoryMib => spec.memory_mib = number(parser, "--memory-mib")?,
            VmOption::Vcpus => spec.vcpus = number(parser, "--vcpus")?,
            VmOption::Disk => spec.disks.push(Disk::parse(parser.value()?)?),
            VmOption::Net => spec.net = true,
            VmOption::Kvm => spec.kvm = Some(parser.value()?.into()),
            VmOption::NetAllow => spec.net_allow.push(rule(parser, "--net-allow")?),
            VmOption::NetDeny => spec.net_deny.push(rule(parser, "--net-deny")?),
            VmOption::Serial => {
                let value = parser.value()?;
                spec.serial = if value == SERIAL_STDOUT {
                    Serial::Stdout
                } else {
                    Serial::File(value.into())
                };
            }
        }
        Ok(())
    }

    /// The spec, once every option is read; `--kernel` is required.
    pub fn finish(self) -> Result<VmSpec, ArgError> {
        let kernel = self
            .kernel
            .ok_or_else(|| ArgError::Usage("--kernel is required".to_owned()))?;
        Ok(VmSpec {
            kernel,
            ..self.spec
        })
    }
}

/// The value of `option` as a number.
fn number<T: std::str::FromStr>(parser: &mut lexopt::Parser, option: &str) -> Result<T, ArgError> {
    let value = parser.value()?;
    value.to_str().and_then(|v| v.parse().ok()).ok_or_else(|| {
        ArgError::Usage(format!(
            "{option} {}: not a number",
            value.to_string_lossy()
        ))
    })
}

/// The value of `option` as an egress rule.
fn rule(parser: &mut lexopt::Parser, option: &str) -> Result<Rule, ArgError> {
    text(parser, option)?
        .parse()
        .map_err(|e| ArgError::Usage(format!("{option}: {e}")))
}

/// The value of `option` as UTF-8 text.
pub fn text(parser: &mut lexopt::Parser, option: &str) -> Result<String, ArgError> {
    parser
        .value()?
        .into_string()
        .map_err(|v| ArgError::Usage(format!("{option} {}: not UTF-8", v.to_string_lossy())))
}

/// How `vmm` exits: its process exit status says how the guest ended (or why it never ran).
/// The node restarts workloads on anything but [`VmmExit::Poweroff`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmmExit {
    /// 0: the guest powered off (ACPI S5).
    Poweroff,
    /// 1: the vmm failed (KVM or host error).
    VmmError,
    /// 2: bad input: missing or invalid kernel/initrd, bad command line, sizes out of range.
    BadInput,
    /// 10: the guest rebooted.
    Reboot,
    /// 11: the guest crashed (triple fault, failed entry, unemulated instruction, halted for
    /// ever).
    Crash,
    /// 12: the guest kernel panicked (it said so on the pvpanic port).
    Panic,
}

impl VmmExit {
    /// Every status.
    pub const ALL: [VmmExit; 6] = [
        VmmExit::Poweroff,
        VmmExit::VmmError,
        VmmExit::BadInput,
        VmmExit::Reboot,
        VmmExit::Crash,
        VmmExit::Panic,
    ];

    /// The process exit status.
    pub const fn code(self) -> u8 {
        match self {
            VmmExit::Poweroff => 0,
            VmmExit::VmmError => 1,
            VmmExit::BadInput => 2,
            VmmExit::Reboot => 10,
            VmmExit::Crash => 11,
            VmmExit::Panic => 12,
        }
    }

    /// The status an exit code stands for, if it is a documented one.
    pub fn from_code(code: i32) -> Option<VmmExit> {
        VmmExit::ALL
            .into_iter()
            .find(|e| i32::from(e.code()) == code)
    }

    /// The word for it in the node's exit lines (`vm=<word>`).
    pub const fn word(self) -> &'static str {
        match self {
            VmmExit::Poweroff => "poweroff",
            VmmExit::VmmError => "vmm-error",
            VmmExit::BadInput => "bad-input",
            VmmExit::Reboot => "reboot",
            VmmExit::Crash => "crash",
            VmmExit::Panic => "panic",
        }
    }
}

/// The vmm's stderr line carrying the guest's own exit code: this prefix, then the code
/// (`vmm: guest exit code=3`). Printed whatever the log level.
pub const GUEST_EXIT_CODE_PREFIX: &str = "vmm: guest exit code=";
/// The I/O port the guest's `init` writes its workload's exit code to (one byte), before it
/// powers off.
pub const EXIT_CODE_PORT: u16 = 0x3c1;

/// The exit code line for `code`.
pub fn guest_exit_code_line(code: u8) -> String {
    format!("{GUEST_EXIT_CODE_PREFIX}{code}")
}

/// The guest code in a vmm stderr line, if it is the exit code line.
pub fn parse_guest_exit_code(line: &str) -> Option<u8> {
    line.trim()
        .strip_prefix(GUEST_EXIT_CODE_PREFIX)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests;
