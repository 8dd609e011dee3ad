//! What a VM looks like, and the pure translation of that into QEMU's command line.
//!
//! Nothing here touches the host: [`VmConfig::args`] is a function from a config to an argv, so
//! every flag the project passes to QEMU is pinned by unit tests.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::accel::Accel;

/// The QEMU binary used unless `NULLOS_QEMU` names another one.
pub const DEFAULT_QEMU: &str = "qemu-system-x86_64";

/// The id of the one user-mode network backend (`-netdev user,id=n0`).
const NETDEV_ID: &str = "n0";

/// Debian's OVMF (package `ovmf`): the firmware code, mapped read-only.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE.fd";
/// Debian's OVMF variable store template; every VM gets its own writable copy.
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS.fd";
/// Debian's OVMF built with Secure Boot (and SMM, which guards the variable store), 4 MiB
/// flash: its variable store must be a 4 MiB one (`OVMF_VARS_4M.fd` with keys enrolled).
pub const OVMF_CODE_SECURE_BOOT: &str = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd";
/// The empty 4 MiB variable store (no keys: Secure Boot is off until PK, KEK and db are set).
pub const OVMF_VARS_4M: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// How the VM gets its kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// QEMU loads the kernel and initramfs itself (`-kernel`, `-initrd`, `-append`).
    Direct {
        /// bzImage.
        kernel: PathBuf,
        /// Compressed cpio initramfs.
        initrd: PathBuf,
        /// Kernel command line.
        cmdline: String,
    },
    /// The NIC's iPXE option ROM DHCPs from QEMU's user-mode network, fetches `bootfile` from
    /// QEMU's built-in TFTP server rooted at `tftp_root`, and runs it.
    Pxe {
        /// Directory served over TFTP.
        tftp_root: PathBuf,
        /// File name inside `tftp_root` that iPXE fetches first (usually `boot.ipxe`).
        bootfile: String,
    },
    /// UEFI firmware ([`VmConfig::uefi`]) boots a disk image plugged in as a USB stick (xHCI
    /// and usb-storage), through its removable-media path `EFI/BOOT/BOOTX64.EFI`. QEMU writes
    /// to a temporary overlay (`snapshot=on`), never to the image.
    UsbDisk {
        /// Raw disk image (`usb.img`).
        image: PathBuf,
    },
}

impl Boot {
    /// Whether this boot runs UEFI firmware, which needs a private variable store.
    pub fn needs_uefi_vars(&self) -> bool {
        matches!(self, Boot::UsbDisk { .. })
    }
}

/// UEFI firmware: the code (read-only flash) and the variable-store template that each VM
/// copies (UEFI writes boot entries into it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uefi {
    /// `OVMF_CODE.fd`.
    pub code: PathBuf,
    /// `OVMF_VARS.fd`, never written: see [`Uefi::copy_vars`].
    pub vars_template: PathBuf,
    /// Firmware built for Secure Boot: the machine needs SMM (q35 only) and flash that only
    /// SMM code may write, so the OS cannot rewrite the enrolled keys.
    pub secure_boot: bool,
}

impl Default for Uefi {
    /// Debian's OVMF.
    fn default() -> Uefi {
        Uefi {
            code: PathBuf::from(OVMF_CODE),
            vars_template: PathBuf::from(OVMF_VARS),
            secure_boot: false,
        }
    }
}

impl Uefi {
    /// Debian's Secure Boot OVMF with `vars_template`, a 4 MiB variable store whose PK, KEK
    /// and db are enrolled and Secure Boot enabled (e.g. made with `virt-fw-vars`).
    pub fn secure_boot(vars_template: PathBuf) -> Uefi {
        Uefi {
            code: PathBuf::from(OVMF_CODE_SECURE_BOOT),
            vars_template,
            secure_boot: true,
        }
    }

    /// Copies the variable-store template into `dir` (as `OVMF_VARS.fd`, writable) and returns
    /// the copy's path, for [`VmConfig::args`].
    pub fn copy_vars(&self, dir: &Path) -> std::io::Result<PathBuf> {
        let copy = dir.join("OVMF_VARS.fd");
        let bytes = std::fs::read(&self.vars_template).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "{}: {e} (install the ovmf package: `make deps`)",
                    self.vars_template.display()
                ),
            )
        })?;
        std::fs::write(&copy, bytes)?;
        Ok(copy)
    }
}

/// QEMU machine type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Machine {
    /// i440FX + PIIX. Measured under TCG with the cloud kernel and a minimal init (4 runs each,
    /// host wall time): pc 2.41–2.61 s, q35 2.46–2.65 s; the difference is within noise but never
    /// in q35's favour, and pc has fewer devices, so it is the default.
    #[default]
    Pc,
    /// Q35 + ICH9 (PCIe). Use it where a test needs PCIe or a UEFI setup closer to real hardware.
    Q35,
}

impl Machine {
    fn name(self) -> &'static str {
        match self {
            Machine::Pc => "pc",
            Machine::Q35 => "q35",
        }
    }
}

/// Network card model on QEMU's user-mode network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NicModel {
    /// `virtio-net-pci`: the fast paravirtual NIC of cloud VMs.
    #[default]
    VirtioNetPci,
    /// `e1000`: Intel 82540EM, a NIC that bare-metal drivers (e1000) handle; for bare-metal-like
    /// profiles.
    E1000,
    /// `e1000e`: Intel 82574L (PCIe).
    E1000e,
}

impl NicModel {
    /// QEMU's device name.
    pub fn device(self) -> &'static str {
        match self {
            NicModel::VirtioNetPci => "virtio-net-pci",
            NicModel::E1000 => "e1000",
            NicModel::E1000e => "e1000e",
        }
    }
}

/// Where the guest's first serial port (ttyS0) goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Console {
    /// Appended to a file that tests poll.
    File(PathBuf),
    /// The terminal, multiplexed with the HMP monitor (`-serial mon:stdio`; Ctrl-A X quits).
    Stdio,
}

/// A whole VM, independent of where its console and control socket go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    /// Kernel source.
    pub boot: Boot,
    /// KVM or TCG.
    pub accel: Accel,
    /// Machine type.
    pub machine: Machine,
    /// Guest RAM in MiB.
    pub memory_mib: u32,
    /// Virtual CPUs.
    pub cpus: u32,
    /// NIC on QEMU user-mode networking (guest 10.0.2.15, host alias 10.0.2.2, DNS 10.0.2.3), or
    /// no network at all. PXE needs one.
    pub nic: Option<NicModel>,
    /// Appended verbatim after everything else, for one-off experiments.
    pub extra_args: Vec<OsString>,
    /// UEFI firmware, for boots that need it ([`Boot::UsbDisk`]) or ask for it
    /// ([`VmConfig::firmware`]).
    pub uefi: Uefi,
    /// The firmware: SeaBIOS (QEMU's default) or [`VmConfig::uefi`]. A USB-stick boot runs UEFI
    /// whatever this says.
    pub firmware: Firmware,
    /// Let the guest reboot (no `-no-reboot`): a reboot or a panic with `panic=N` restarts the
    /// machine on the same disks instead of ending QEMU (self-update, boot counting). Off by
    /// default: every other test wants QEMU to end with the guest.
    pub allow_reboot: bool,
}

/// The machine's firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Firmware {
    /// QEMU's SeaBIOS; PXE runs the NIC's legacy iPXE ROM.
    #[default]
    Bios,
    /// OVMF ([`Uefi`]); PXE runs the NIC's iPXE EFI driver.
    Uefi,
}

/// A config that cannot be turned into a QEMU command line.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// PXE boots over the network, so there must be a NIC.
    #[error("PXE boot needs a NIC, but the config has none")]
    PxeWithoutNic,
    /// A UEFI boot was asked for without a private copy of the variable store.
    #[error("UEFI boot needs a writable copy of the variable store (Uefi::copy_vars)")]
    UefiVarsMissing,
    /// Secure Boot firmware needs SMM, which QEMU has on q35 only.
    #[error("Secure Boot firmware needs the q35 machine (SMM)")]
    SecureBootNeedsQ35,
    /// QEMU cannot boot a machine without memory or CPUs.
    #[error("memory ({memory_mib} MiB) and CPU count ({cpus}) must both be at least 1")]
    EmptyMachine {
        /// Configured memory.
        memory_mib: u32,
        /// Configured CPUs.
        cpus: u32,
    },
}

impl VmConfig {
    /// The project's defaults around `boot`: pc machine, 1024 MiB, 2 CPUs, virtio-net-pci.
    pub fn new(boot: Boot, accel: Accel) -> VmConfig {
        VmConfig {
            boot,
            accel,
            machine: Machine::default(),
            memory_mib: 1024,
            cpus: 2,
            nic: Some(NicModel::default()),
            extra_args: Vec::new(),
            uefi: Uefi::default(),
            firmware: Firmware::default(),
            allow_reboot: false,
        }
    }

    /// Whether this VM runs UEFI, which needs a private variable store ([`Uefi::copy_vars`]).
    pub fn needs_uefi_vars(&self) -> bool {
        self.boot.needs_uefi_vars() || self.firmware == Firmware::Uefi
    }

    /// QEMU's argv (without the program name).
    ///
    /// `qmp_socket`, if given, is a unix socket path where QEMU listens for one QMP client.
    /// `uefi_vars` is this VM's own writable copy of the UEFI variable store
    /// ([`Uefi::copy_vars`]); boots that run UEFI need it.
    /// The machine has no default devices (`-nodefaults`), no display, and exits instead of
    /// rebooting (`-no-reboot`, unless [`VmConfig::allow_reboot`]), so a guest poweroff, reboot
    /// or panic (with `panic=-1`) all end the QEMU process.
    pub fn args(
        &self,
        console: &Console,
        qmp_socket: Option<&Path>,
        uefi_vars: Option<&Path>,
    ) -> Result<Vec<OsString>, ConfigError> {
        if self.memory_mib == 0 || self.cpus == 0 {
            return Err(ConfigError::EmptyMachine {
                memory_mib: self.memory_mib,
                cpus: self.cpus,
            });
        }
        let mut a = Args::default();
        a.push_all(["-nodefaults", "-no-user-config"]);
        if !self.allow_reboot {
            a.push_all(["-no-reboot"]);
        }
        let secure_boot = self.uefi.secure_boot && self.boot.needs_uefi_vars();
        if secure_boot {
            if self.machine != Machine::Q35 {
                return Err(ConfigError::SecureBootNeedsQ35);
            }
            a.push_pair("-machine", format!("{},smm=on", self.machine.name()));
            // The variable store is writable only from SMM: the OS cannot replace the keys.
            a.push_all(["-global", "driver=cfi.pflash01,property=secure,value=on"]);
        } else {
            a.push_all(["-machine", self.machine.name()]);
        }
        a.push_all(self.accel.args());
        a.push_pair("-m", self.memory_mib.to_string());
        a.push_pair("-smp", self.cpus.to_string());
        a.push_all(["-display", "none"]);

        match console {
            Console::File(path) => {
                let mut chardev = OsString::from("file,id=serial0,path=");
                chardev.push(escape_option_value(path.as_os_str()));
                a.push_pair("-chardev", chardev);
                a.push_all(["-serial", "chardev:serial0"]);
            }
            Console::Stdio => a.push_all(["-serial", "mon:stdio"]),
        }
        if let Some(socket) = qmp_socket {
            let mut qmp = OsString::from("unix:");
            qmp.push(escape_option_value(socket.as_os_str()));
            qmp.push(",server=on,wait=off");
            a.push_pair("-qmp", qmp);
        }

        if self.needs_uefi_vars() {
            let vars = uefi_vars.ok_or(ConfigError::UefiVarsMissing)?;
            let mut code = OsString::from("if=pflash,format=raw,readonly=on,file=");
            code.push(escape_option_value(self.uefi.code.as_os_str()));
            a.push_pair("-drive", code);
            let mut store = OsString::from("if=pflash,format=raw,file=");
            store.push(escape_option_value(vars.as_os_str()));
            a.push_pair("-drive", store);
        }

        let mut netdev = OsString::from(format!("user,id={NETDEV_ID}"));
        match &self.boot {
            Boot::Direct {
                kernel,
                initrd,
                cmdline,
            } => {
                a.push_pair("-kernel", kernel.as_os_str());
                a.push_pair("-initrd", initrd.as_os_str());
                a.push_pair("-append", cmdline.as_str());
            }
            Boot::Pxe {
                tftp_root,
                bootfile,
            } => {
                if self.nic.is_none() {
                    return Err(ConfigError::PxeWithoutNic);
                }
                netdev.push(",tftp=");
                netdev.push(escape_option_value(tftp_root.as_os_str()));
                netdev.push(",bootfile=");
                netdev.push(escape_option_value(OsStr::new(bootfile)));
                a.push_all(["-boot", "n"]);
            }
            Boot::UsbDisk { image } => {
                a.push_all(["-device", "qemu-xhci,id=xhci"]);
                let mut stick = OsString::from("if=none,id=stick,format=raw,snapshot=on,file=");
                stick.push(escape_option_value(image.as_os_str()));
                a.push_pair("-drive", stick);
                a.push_all(["-device", "usb-storage,bus=xhci.0,drive=stick"]);
            }
        }
        if let Some(nic) = self.nic {
            a.push_pair("-netdev", netdev);
            a.push_pair("-device", format!("{},netdev={NETDEV_ID}", nic.device()));
        }
        a.0.extend(self.extra_args.iter().cloned());
        Ok(a.0)
    }
}

/// The QEMU program: `NULLOS_QEMU` if set, else [`DEFAULT_QEMU`] from `PATH`.
pub fn qemu_program() -> OsString {
    std::env::var_os("NULLOS_QEMU").unwrap_or_else(|| OsString::from(DEFAULT_QEMU))
}

/// QEMU's option parser splits on commas; a literal comma in a value is written twice.
fn escape_option_value(value: &OsStr) -> OsString {
    let mut out = Vec::with_capacity(value.len());
    for &b in value.as_bytes() {
        out.push(b);
        if b == b',' {
            out.push(b',');
        }
    }
    OsString::from_vec(out)
}

#[derive(Default)]
struct Args(Vec<OsString>);

impl Args {
    fn push_all<const N: usize>(&mut self, items: [&str; N]) {
        self.0.extend(items.iter().map(OsString::from));
    }

    fn push_pair(&mut self, flag: &str, value: impl Into<OsString>) {
        self.0.push(OsString::from(flag));
        self.0.push(value.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(config: &VmConfig, console: &Console, qmp: Option<&Path>) -> Vec<String> {
        config
            .args(console, qmp, None)
            .unwrap()
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect()
    }

    fn direct() -> Boot {
        Boot::Direct {
            kernel: "/img/kernel".into(),
            initrd: "/img/initrd".into(),
            cmdline: "console=ttyS0 quiet panic=-1".into(),
        }
    }

    #[test]
    fn a_vm_allowed_to_reboot_has_no_no_reboot() {
        let mut config = VmConfig::new(direct(), Accel::Tcg);
        let console = Console::File("/tmp/vm/serial.log".into());
        assert!(argv(&config, &console, None).contains(&"-no-reboot".to_owned()));
        config.allow_reboot = true;
        assert!(!argv(&config, &console, None).contains(&"-no-reboot".to_owned()));
    }

    #[test]
    fn direct_boot_tcg_with_file_console_and_qmp() {
        let config = VmConfig::new(direct(), Accel::Tcg);
        let got = argv(
            &config,
            &Console::File("/tmp/vm/serial.log".into()),
            Some(Path::new("/tmp/vm/qmp.sock")),
        );
        let want = [
            "-nodefaults",
            "-no-user-config",
            "-no-reboot",
            "-machine",
            "pc",
            "-accel",
            "tcg",
            "-cpu",
            "max",
            "-m",
            "1024",
            "-smp",
            "2",
            "-display",
            "none",
            "-chardev",
            "file,id=serial0,path=/tmp/vm/serial.log",
            "-serial",
            "chardev:serial0",
            "-qmp",
            "unix:/tmp/vm/qmp.sock,server=on,wait=off",
            "-kernel",
            "/img/kernel",
            "-initrd",
            "/img/initrd",
            "-append",
            "console=ttyS0 quiet panic=-1",
            "-netdev",
            "user,id=n0",
            "-device",
            "virtio-net-pci,netdev=n0",
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn pxe_boot_serves_tftp_from_the_netdev_and_boots_from_the_nic() {
        let mut config = VmConfig::new(
            Boot::Pxe {
                tftp_root: "/img/pxe".into(),
                bootfile: "boot.ipxe".into(),
            },
            Accel::Kvm,
        );
        config.nic = Some(NicModel::E1000);
        config.machine = Machine::Q35;
        let got = argv(&config, &Console::Stdio, None);
        let joined = got.join(" ");
        assert!(
            joined.contains("-machine q35 -accel kvm -cpu host"),
            "{joined}"
        );
        assert!(joined.contains("-serial mon:stdio"), "{joined}");
        assert!(!joined.contains("-qmp"), "{joined}");
        assert!(!joined.contains("-kernel"), "{joined}");
        assert!(
            joined.ends_with(
                "-boot n -netdev user,id=n0,tftp=/img/pxe,bootfile=boot.ipxe -device e1000,netdev=n0"
            ),
            "{joined}"
        );
    }

    #[test]
    fn pxe_without_nic_is_refused() {
        let mut config = VmConfig::new(
            Boot::Pxe {
                tftp_root: "/img/pxe".into(),
                bootfile: "boot.ipxe".into(),
            },
            Accel::Tcg,
        );
        config.nic = None;
        assert_eq!(
            config.args(&Console::Stdio, None, None),
            Err(ConfigError::PxeWithoutNic)
        );
    }

    #[test]
    fn no_nic_means_no_netdev() {
        let mut config = VmConfig::new(direct(), Accel::Tcg);
        config.nic = None;
        let got = argv(&config, &Console::Stdio, None);
        assert!(!got.iter().any(|a| a == "-netdev" || a == "-device"));
    }

    #[test]
    fn commas_in_paths_are_doubled() {
        let config = VmConfig::new(
            Boot::Pxe {
                tftp_root: "/a,b/pxe".into(),
                bootfile: "boot.ipxe".into(),
            },
            Accel::Tcg,
        );
        let got = argv(&config, &Console::File("/x,y/serial".into()), None);
        assert!(got.contains(&"file,id=serial0,path=/x,,y/serial".to_string()));
        assert!(got.contains(&"user,id=n0,tftp=/a,,b/pxe,bootfile=boot.ipxe".to_string()));
    }

    #[test]
    fn extra_args_come_last_and_sizes_are_configurable() {
        let mut config = VmConfig::new(direct(), Accel::Tcg);
        config.memory_mib = 512;
        config.cpus = 1;
        config.extra_args = vec!["-d".into(), "guest_errors".into()];
        let got = argv(&config, &Console::Stdio, None);
        assert_eq!(&got[got.len() - 2..], ["-d", "guest_errors"]);
        let joined = got.join(" ");
        assert!(joined.contains("-m 512 -smp 1"), "{joined}");
    }

    #[test]
    fn usb_disk_boots_ovmf_with_a_private_vars_copy_and_an_xhci_stick() {
        let config = VmConfig::new(
            Boot::UsbDisk {
                image: "/img/usb.img".into(),
            },
            Accel::Tcg,
        );
        let got: Vec<String> = config
            .args(
                &Console::Stdio,
                None,
                Some(Path::new("/scratch,1/OVMF_VARS.fd")),
            )
            .unwrap()
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        let joined = got.join(" ");
        let want = "-drive if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE.fd \
                    -drive if=pflash,format=raw,file=/scratch,,1/OVMF_VARS.fd \
                    -device qemu-xhci,id=xhci \
                    -drive if=none,id=stick,format=raw,snapshot=on,file=/img/usb.img \
                    -device usb-storage,bus=xhci.0,drive=stick \
                    -netdev user,id=n0 -device virtio-net-pci,netdev=n0";
        assert!(joined.ends_with(want), "{joined}");
        assert!(!joined.contains("-kernel"), "{joined}");
        // The template itself is never handed to QEMU writable.
        assert!(!joined.contains(OVMF_VARS), "{joined}");
        assert_eq!(
            config.args(&Console::Stdio, None, None),
            Err(ConfigError::UefiVarsMissing)
        );
    }

    /// PXE on UEFI (a farmer's server): OVMF runs the NIC's iPXE EFI driver.
    #[test]
    fn pxe_boot_on_uefi_firmware_maps_ovmf() {
        let mut config = VmConfig::new(
            Boot::Pxe {
                tftp_root: "/img/pxe".into(),
                bootfile: "boot.ipxe".into(),
            },
            Accel::Tcg,
        );
        config.nic = Some(NicModel::E1000e);
        assert!(!config.needs_uefi_vars(), "SeaBIOS by default");
        config.firmware = Firmware::Uefi;
        assert!(config.needs_uefi_vars());
        assert_eq!(
            config.args(&Console::Stdio, None, None),
            Err(ConfigError::UefiVarsMissing)
        );
        let joined = config
            .args(&Console::Stdio, None, Some(Path::new("/vm/OVMF_VARS.fd")))
            .unwrap()
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            joined.ends_with(
                "-drive if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE.fd \
                 -drive if=pflash,format=raw,file=/vm/OVMF_VARS.fd \
                 -boot n -netdev user,id=n0,tftp=/img/pxe,bootfile=boot.ipxe -device e1000e,netdev=n0"
            ),
            "{joined}"
        );
    }

    #[test]
    fn uefi_vars_are_copied_not_shared() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("template.fd"), b"vars").unwrap();
        let scratch = dir.path().join("vm");
        std::fs::create_dir(&scratch).unwrap();
        let uefi = Uefi {
            code: "/x/code.fd".into(),
            vars_template: dir.path().join("template.fd"),
            secure_boot: false,
        };
        let copy = uefi.copy_vars(&scratch).unwrap();
        assert_eq!(copy, scratch.join("OVMF_VARS.fd"));
        assert_eq!(std::fs::read(&copy).unwrap(), b"vars");
        let missing = Uefi {
            code: "/x/code.fd".into(),
            vars_template: dir.path().join("absent.fd"),
            secure_boot: false,
        };
        let err = missing.copy_vars(&scratch).unwrap_err();
        assert!(err.to_string().contains("ovmf"), "{err}");
        assert!(Boot::UsbDisk { image: "/a".into() }.needs_uefi_vars());
        assert!(!direct().needs_uefi_vars());
    }

    #[test]
    fn secure_boot_firmware_runs_on_q35_with_smm_and_guarded_flash() {
        let stick = Boot::UsbDisk { image: "/a".into() };
        let mut config = VmConfig::new(stick, Accel::Tcg);
        config.uefi = Uefi::secure_boot("/k/vars.fd".into());
        assert_eq!(
            config.args(&Console::Stdio, None, Some(Path::new("/v/OVMF_VARS.fd"))),
            Err(ConfigError::SecureBootNeedsQ35)
        );
        config.machine = Machine::Q35;
        let args = config
            .args(&Console::Stdio, None, Some(Path::new("/v/OVMF_VARS.fd")))
            .unwrap();
        let joined = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(joined.contains("-machine q35,smm=on "), "{joined}");
        assert!(
            joined.contains("-global driver=cfi.pflash01,property=secure,value=on"),
            "{joined}"
        );
        assert!(
            joined.contains(&format!("readonly=on,file={OVMF_CODE_SECURE_BOOT}")),
            "{joined}"
        );
        // A direct boot runs no firmware: the Secure Boot setting does not apply.
        config.boot = direct();
        let args = config.args(&Console::Stdio, None, None).unwrap();
        assert!(args.iter().any(|a| a == "q35"), "{args:?}");
    }

    #[test]
    fn empty_machine_is_refused() {
        let mut config = VmConfig::new(direct(), Accel::Tcg);
        config.cpus = 0;
        assert!(matches!(
            config.args(&Console::Stdio, None, None),
            Err(ConfigError::EmptyMachine { cpus: 0, .. })
        ));
    }
}
