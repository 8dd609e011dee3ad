//! Secure Boot on OVMF: Debian's Secure Boot firmware (`OVMF_CODE_4M.secboot.fd`, q35 with
//! SMM) with the project's Secure Boot certificate (`build/keys/secureboot.crt`) enrolled as
//! PK, KEK and db and Secure Boot enabled, by `virt-fw-vars` (PyPI `virt-firmware`, installed
//! by `make secureboot-tools` into build/venv/).
//!
//! - The dev stick as built (its UKI and its release kernel signed by `image-builder` with
//!   `build/keys/secureboot.key`) is run by the firmware, stage 0 verifies the release, and the
//!   locked-down boot kernel kexecs the release kernel (lockdown lets `kexec_file_load` take
//!   only kernels signed by a trusted key; db's certificates are trusted): the node is ready.
//! - On the same firmware with the same enrolled store, the same stick with one byte of the
//!   signed UKI changed on the ESP (its command line), and the same stick with the UKI
//!   unsigned, are refused by the firmware ("Access Denied"): stage 0 never starts. These two
//!   are what show Secure Boot is enforced.

use std::io::{Cursor, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use image_builder::usb::{self, disk, ESP_NAME, UKI_PATH};
use qemu::{Boot, Machine, Uefi, Vm, VmConfig};
use system_tests::*;

/// OVMF's Secure Boot firmware, the boot kernel and stage 0 under TCG: well under this.
const VERDICT_TIMEOUT: Duration = Duration::from_secs(240);
/// Owner GUID of the enrolled certificates (any fixed GUID; it names who added the entry).
const OWNER: &str = "6e756c6c-6f73-4000-8000-736563757265";

fn secureboot_cert() -> PathBuf {
    let cert = build_dir().join("keys/secureboot.crt");
    assert!(
        cert.is_file(),
        "{} missing: run `make keys` (make image makes it)",
        cert.display()
    );
    cert
}

/// `virt-fw-vars`: NULLOS_VIRT_FW_VARS, else build/venv/bin/virt-fw-vars.
fn virt_fw_vars() -> PathBuf {
    let path = std::env::var_os("NULLOS_VIRT_FW_VARS")
        .map(PathBuf::from)
        .unwrap_or_else(|| build_dir().join("venv/bin/virt-fw-vars"));
    assert!(
        path.is_file(),
        "{} not found: run `make secureboot-tools` (PyPI virt-firmware in build/venv) or set \
         NULLOS_VIRT_FW_VARS",
        path.display()
    );
    path
}

/// A 4 MiB OVMF variable store in `dir` with the Secure Boot certificate as PK, KEK and db,
/// and Secure Boot enabled.
fn enrolled_vars(dir: &Path) -> PathBuf {
    let cert = secureboot_cert();
    let out = dir.join("OVMF_VARS_4M.enrolled.fd");
    let result = Command::new(virt_fw_vars())
        .arg("--input")
        .arg(qemu::OVMF_VARS_4M)
        .arg("--output")
        .arg(&out)
        .arg("--set-pk")
        .arg(OWNER)
        .arg(&cert)
        .arg("--add-kek")
        .arg(OWNER)
        .arg(&cert)
        .arg("--add-db")
        .arg(OWNER)
        .arg(&cert)
        .arg("--secure-boot")
        .output()
        .unwrap_or_else(|e| panic!("virt-fw-vars: {e}"));
    assert!(
        result.status.success(),
        "virt-fw-vars failed: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    out
}

/// Boots `image` as a USB stick on Secure Boot OVMF with `vars` (copied for this VM).
fn secure_boot_vm(image: &Path, vars: &Path) -> Vm {
    let accel = qemu::Accel::detect().unwrap_or_else(|e| panic!("{e}"));
    let mut config = VmConfig::new(
        Boot::UsbDisk {
            image: image.to_owned(),
        },
        accel,
    );
    config.machine = Machine::Q35;
    config.uefi = Uefi::secure_boot(vars.to_owned());
    Vm::start(config).unwrap_or_else(|e| panic!("starting QEMU: {e}"))
}

fn built_stick() -> Vec<u8> {
    let path = dev_image().join(usb::USB_FILE);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The stick's ESP as a FAT file system, for `edit`.
fn edit_esp(
    mut image: Vec<u8>,
    edit: impl FnOnce(&mut fatfs::File<'_, Cursor<&mut [u8]>>),
) -> Vec<u8> {
    let (_, partitions) = disk::read(&image).unwrap_or_else(|e| panic!("{e}"));
    let esp = partitions
        .iter()
        .find(|p| p.name == ESP_NAME)
        .unwrap_or_else(|| panic!("no {ESP_NAME} partition"));
    let range = usize::try_from(esp.start).unwrap()..usize::try_from(esp.start + esp.size).unwrap();
    {
        let fs = fatfs::FileSystem::new(Cursor::new(&mut image[range]), fatfs::FsOptions::new())
            .unwrap_or_else(|e| panic!("{e}"));
        let mut file = fs
            .root_dir()
            .open_file(UKI_PATH)
            .unwrap_or_else(|e| panic!("{UKI_PATH}: {e}"));
        edit(&mut file);
        file.flush().unwrap();
        drop(file);
        fs.unmount().unwrap_or_else(|e| panic!("{e}"));
    }
    image
}

/// The UKI on the built stick.
fn built_uki() -> Vec<u8> {
    let mut uki = Vec::new();
    edit_esp(built_stick(), |file| {
        file.read_to_end(&mut uki).unwrap();
    });
    uki
}

/// Writes `image` to a scratch folder (removed when the guard drops).
fn scratch_stick(image: Vec<u8>) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("usb.img");
    std::fs::write(&path, image).unwrap_or_else(|e| panic!("{e}"));
    (dir, path)
}

/// The firmware's line that it booted the stick (OVMF's boot manager names the device).
fn firmware_starts_the_stick(vm: &Vm) {
    let started = vm
        .wait_for_line("BdsDxe: starting", VERDICT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}\n{}", vm.serial_text().unwrap_or_default()));
    assert!(
        started.contains("USB"),
        "firmware booted something else: {started}"
    );
}

/// The firmware refuses the stick's UKI, and neither stage 0 nor any kernel line follows.
fn assert_firmware_refuses(vm: &Vm) {
    let refused = vm
        .wait_for_line("BdsDxe: failed to load", VERDICT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}\n{}", vm.serial_text().unwrap_or_default()));
    assert!(refused.contains("USB"), "{refused}");
    assert!(refused.ends_with("Access Denied"), "{refused}");
    // OVMF goes on to its next boot options (the NIC's PXE): wait for it to give up on the
    // first one, so that a UKI that did start would have printed by now.
    vm.wait_for_line_matching(
        "the firmware moving on to its next boot option",
        |l| l.contains("BdsDxe: failed to load") && !l.contains("USB"),
        VERDICT_TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let console = vm.serial_text().unwrap_or_default();
    for never in ["BdsDxe: starting", "nullos:", "boot: info", "init: info"] {
        assert!(
            !console.contains(never),
            "{never:?} after the firmware refused:\n{console}"
        );
    }
}

#[test]
fn the_signed_stick_boots_under_secure_boot_through_stage0_to_a_ready_node() {
    let uki = built_uki();
    let table = pe_certificate_table(&uki);
    assert!(
        table.1 > 0,
        "the built UKI is not signed: is [secure_boot] in profiles/dev.toml?"
    );
    let keys = tempfile::tempdir().unwrap();
    let vars = enrolled_vars(keys.path());
    let vm = secure_boot_vm(&dev_image().join(usb::USB_FILE), &vars);
    firmware_starts_the_stick(&vm);
    let verified = vm
        .wait_for_line("nullos: verified release", VERDICT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        fields(&verified).get("version").map(String::as_str),
        Some("1"),
        "{verified}"
    );
    // The boot kernel is locked down (Secure Boot): kexec_file_load took the release kernel
    // only because image-builder signed it with the key enrolled in db.
    vm.wait_for_line("nullos: booting release version=1", VERDICT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    let ready = wait_ready(&vm);
    assert_eq!(
        ready.get("profile").map(String::as_str),
        Some("dev"),
        "{ready:?}"
    );
    let console = vm.serial_text().unwrap_or_default();
    assert!(!console.contains("nullos: refused"), "{console}");
}

#[test]
fn a_uki_altered_after_signing_is_refused_by_the_firmware() {
    let uki = built_uki();
    // One byte of the signed UKI's command line: "console=..." becomes "bonsole=...".
    let cmdline = std::fs::read(dev_image().join("boot/cmdline")).unwrap();
    let at = uki
        .windows(cmdline.len())
        .position(|w| w == cmdline)
        .expect("the boot command line in the UKI");
    let altered = edit_esp(built_stick(), |file| {
        let mut byte = [0u8];
        file.seek(SeekFrom::Start(at as u64)).unwrap();
        file.read_exact(&mut byte).unwrap();
        file.seek(SeekFrom::Start(at as u64)).unwrap();
        file.write_all(&[byte[0] ^ 0x01]).unwrap();
    });
    let (_dir, image) = scratch_stick(altered);
    let keys = tempfile::tempdir().unwrap();
    let vm = secure_boot_vm(&image, &enrolled_vars(keys.path()));
    assert_firmware_refuses(&vm);
}

#[test]
fn an_unsigned_uki_is_refused_by_the_firmware() {
    // The same stick with the same UKI, not signed: image-builder's own unsigned build.
    let file = |name: &str| {
        std::fs::read(dev_image().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let stub = usb::read_stub(usb::DEFAULT_STUB.as_ref()).unwrap_or_else(|e| panic!("{e}"));
    let (boot_kernel, boot_initrd, boot_cmdline) = (
        file("boot/kernel"),
        file("boot/initrd"),
        file("boot/cmdline"),
    );
    let (manifest, kernel, initrd, cmdline) = (
        file("release.manifest"),
        file("kernel"),
        file("initrd"),
        file("cmdline"),
    );
    let contents = usb::UsbContents {
        stub: &stub,
        uki: usb::BootTriple {
            kernel: &boot_kernel,
            initrd: &boot_initrd,
            cmdline: &boot_cmdline,
        },
        manifest: &manifest,
        kernel: &kernel,
        initrd: &initrd,
        cmdline: &cmdline,
        version: 1,
        profile: "dev",
    };
    let unsigned = usb::build_uki(&contents).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pe_certificate_table(&unsigned), (0, 0));
    // The signed UKI is exactly this one with a signature added.
    let signed = built_uki();
    assert_eq!(
        signed.len(),
        unsigned.len() + pe_certificate_table(&signed).1 as usize
    );
    let image = usb::build_image_with_uki(&contents, &unsigned).unwrap_or_else(|e| panic!("{e}"));
    let (_dir, image) = scratch_stick(image);
    let keys = tempfile::tempdir().unwrap();
    let vm = secure_boot_vm(&image, &enrolled_vars(keys.path()));
    assert_firmware_refuses(&vm);
}

/// The PE certificate table's data directory entry (file offset, size) of a PE32+ image.
fn pe_certificate_table(pe: &[u8]) -> (u32, u32) {
    let u32_at = |at: usize| u32::from_le_bytes(pe[at..at + 4].try_into().unwrap());
    let header = u32_at(0x3c) as usize;
    // Signature (4), COFF header (20), PE32+ optional header fields (112), then the data
    // directories, 8 bytes each; the certificate table is the fifth.
    let entry = header + 4 + 20 + 112 + 4 * 8;
    (u32_at(entry), u32_at(entry + 4))
}
