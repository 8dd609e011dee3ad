//! `Vm` against a real QEMU: startup failures, QMP, teardown, and a real kernel on the console.
//!
//! Needs `qemu-system-x86_64` and, for the kernel test, the Debian cloud kernel unpacked by
//! `make kernel` under `build/kernels/cloud/` (or `NULLOS_TEST_KERNEL` naming a bzImage).

use std::path::{Path, PathBuf};
use std::time::Duration;

use qemu::{Accel, Boot, QemuError, Vm, VmConfig};

/// A VM that never boots anything: PXE from an empty TFTP root leaves iPXE retrying.
fn idle_vm(tftp_root: &Path) -> VmConfig {
    let mut config = VmConfig::new(
        Boot::Pxe {
            tftp_root: tftp_root.to_path_buf(),
            bootfile: "boot.ipxe".into(),
        },
        Accel::Tcg,
    );
    config.memory_mib = 128;
    config.cpus = 1;
    config
}

fn cloud_kernel() -> PathBuf {
    if let Some(path) = std::env::var_os("NULLOS_TEST_KERNEL") {
        return path.into();
    }
    let boot = Path::new(env!("CARGO_MANIFEST_DIR")).join("../build/kernels/cloud/boot");
    let found = std::fs::read_dir(&boot).ok().and_then(|entries| {
        entries.filter_map(Result::ok).map(|e| e.path()).find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
    });
    match found {
        Some(path) => path,
        None => panic!(
            "no kernel in {}: run `make kernel` (or set NULLOS_TEST_KERNEL)",
            boot.display()
        ),
    }
}

#[test]
fn a_bad_option_fails_at_start_with_qemu_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = idle_vm(dir.path());
    config.extra_args = vec!["-no-such-option".into()];
    let err = Vm::start(config).unwrap_err();
    assert!(matches!(err, QemuError::StartupExited { .. }), "{err:?}");
    assert!(err.to_string().contains("-no-such-option"), "{err:?}");
}

#[test]
fn a_running_vm_answers_qmp_and_dies_with_its_drop() {
    let dir = tempfile::tempdir().unwrap();
    let vm = Vm::start(idle_vm(dir.path())).unwrap();
    let pid = vm.pid();
    let scratch = vm.scratch_dir().to_path_buf();
    assert_eq!(vm.status().unwrap(), "running");
    // Nothing in the guest handles the power button, so QEMU keeps running.
    vm.powerdown().unwrap();
    assert_eq!(vm.try_exit_status().unwrap(), None);
    let err = vm.qmp("no-such-command", None).unwrap_err();
    assert!(format!("{err:?}").contains("CommandNotFound"), "{err:?}");
    let err = vm
        .wait_for_line("never printed", Duration::from_millis(300))
        .unwrap_err();
    assert!(matches!(err, QemuError::LineTimeout { .. }), "{err:?}");
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    drop(vm);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "QEMU {pid} survived the drop of its Vm"
    );
    assert!(
        !scratch.exists(),
        "scratch dir {} left behind",
        scratch.display()
    );
}

#[test]
fn kill_reports_a_signal_exit() {
    let dir = tempfile::tempdir().unwrap();
    let vm = Vm::start(idle_vm(dir.path())).unwrap();
    let status = vm.kill().unwrap();
    assert_eq!(status.code(), None, "{status:?}");
    assert_eq!(vm.wait_exit(Duration::from_secs(1)).unwrap(), status);
}

/// The cloud kernel with an initramfs that holds no init: it prints its banner, panics, and with
/// `panic=-1` + `-no-reboot` QEMU exits. Covers the console path end to end on real output.
#[test]
fn kernel_console_lines_arrive_and_exit_ends_the_wait_early() {
    let dir = tempfile::tempdir().unwrap();
    let initrd = dir.path().join("empty-initrd");
    std::fs::write(&initrd, [0u8; 512]).unwrap();
    let config = VmConfig::new(
        Boot::Direct {
            kernel: cloud_kernel(),
            initrd,
            cmdline: "console=ttyS0 panic=-1".into(),
        },
        Accel::Tcg,
    );
    let vm = Vm::start(config).unwrap();
    let banner = vm
        .wait_for_line("Linux version", Duration::from_secs(60))
        .unwrap();
    assert!(banner.contains("Linux version 6."), "{banner}");
    assert!(!banner.ends_with('\r'));
    let err = vm
        .wait_for_line("nullos: ready", Duration::from_secs(300))
        .unwrap_err();
    let text = format!("{err:?}");
    assert!(matches!(err, QemuError::LineExited { .. }), "{text}");
    assert!(text.contains("Kernel panic"), "{text}");
    assert!(text.contains("containing \"nullos: ready\""), "{text}");
    assert!(vm.serial_text().unwrap().contains("Linux version"));
    assert!(vm.wait_exit(Duration::from_secs(5)).unwrap().success());
}

/// PXE end to end: the NIC's iPXE ROM DHCPs from slirp, TFTP-fetches boot.ipxe, then the kernel
/// and initrd it names, and boots them. The kernel banner on ttyS0 proves the chain worked.
#[test]
fn pxe_boots_the_kernel_through_ipxe_and_tftp() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(cloud_kernel(), dir.path().join("kernel")).unwrap();
    std::fs::write(dir.path().join("initrd"), [0u8; 512]).unwrap();
    std::fs::write(
        dir.path().join("boot.ipxe"),
        "#!ipxe\nkernel kernel console=ttyS0 panic=-1\ninitrd initrd\nboot\n",
    )
    .unwrap();
    let config = VmConfig::new(
        Boot::Pxe {
            tftp_root: dir.path().to_path_buf(),
            bootfile: "boot.ipxe".into(),
        },
        Accel::Tcg,
    );
    let vm = Vm::start(config).unwrap();
    let cmdline = vm
        .wait_for_line("Command line:", Duration::from_secs(120))
        .unwrap();
    assert!(cmdline.contains("console=ttyS0 panic=-1"), "{cmdline}");
    vm.wait_for_line("Kernel panic", Duration::from_secs(120))
        .unwrap();
    assert!(vm.wait_exit(Duration::from_secs(30)).unwrap().success());
}
