//! The dev image's USB stick on UEFI firmware (OVMF): firmware finds `EFI/BOOT/BOOTX64.EFI` on
//! the stick's EFI System Partition, the UKI's stub starts the boot kernel with stage 0 (`boot`)
//! as PID 1, and stage 0 verifies the release on the `NULLOS-RELEASE` partition before it
//! kexecs the node. Copies of the stick with one thing changed in that partition (a flipped
//! kernel byte, a higher version floor, a manifest signed by a key outside the policy) are
//! refused with their own line, and nothing boots.

use std::io::{Cursor, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use image_builder::usb::{disk, RELEASE_NAME};
use qemu::{Boot, Vm};
use system_tests::*;
use trust::{SecretKey, SignedDocument};

/// OVMF, the boot kernel and stage 0 under TCG take about 20 s to a verdict.
const VERDICT_TIMEOUT: Duration = Duration::from_secs(180);

fn firmware_boots_the_stick(vm: &Vm) {
    // OVMF's boot manager names the device it boots from: the stick, not a kernel QEMU loaded.
    let started = vm
        .wait_for_line("BdsDxe: starting", Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        started.contains("USB"),
        "firmware booted something else: {started}"
    );
}

#[test]
fn dev_usb_stick_boots_through_stage0_to_a_ready_node() {
    let boot = qemu::image::usb_boot(&dev_image()).unwrap_or_else(|e| panic!("{e}"));
    let vm = start_vm(boot);
    firmware_boots_the_stick(&vm);
    let verified = vm
        .wait_for_line("nullos: verified release", VERDICT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    let f = fields(&verified);
    let kernel = std::fs::read(dev_image().join("kernel")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        f.get("version").map(String::as_str),
        Some("1"),
        "{verified}"
    );
    assert_eq!(
        f.get("kernel"),
        Some(&trust::Digest::of(&kernel).to_string()),
        "{verified}"
    );
    vm.wait_for_line("nullos: booting release version=1", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_dev_node_lifecycle(&vm);
    let console = vm.serial_text().unwrap_or_default();
    let order = [
        "nullos: verified release",
        "nullos: booting release",
        "nullos: ready",
    ]
    .map(|needle| console.find(needle).unwrap_or(usize::MAX));
    assert!(order[0] < order[1] && order[1] < order[2], "{console}");
    assert!(!console.contains("nullos: refused"), "{console}");
}

/// A copy of the dev stick with `edit` applied to the files of its release partition.
fn edited_stick(
    edit: impl FnOnce(&fatfs::Dir<'_, Cursor<&mut [u8]>>),
) -> (tempfile::TempDir, Boot) {
    let mut image = std::fs::read(dev_image().join("usb.img")).unwrap_or_else(|e| panic!("{e}"));
    let (_, partitions) = disk::read(&image).unwrap_or_else(|e| panic!("{e}"));
    let release = partitions
        .iter()
        .find(|p| p.name == RELEASE_NAME)
        .unwrap_or_else(|| panic!("no {RELEASE_NAME} partition"));
    let range = usize::try_from(release.start).unwrap()
        ..usize::try_from(release.start + release.size).unwrap();
    {
        let volume = Cursor::new(&mut image[range]);
        let fs = fatfs::FileSystem::new(volume, fatfs::FsOptions::new())
            .unwrap_or_else(|e| panic!("{e}"));
        edit(&fs.root_dir());
        fs.unmount().unwrap_or_else(|e| panic!("{e}"));
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path: PathBuf = dir.path().join("usb.img");
    std::fs::write(&path, image).unwrap_or_else(|e| panic!("{e}"));
    (dir, Boot::UsbDisk { image: path })
}

/// Waits for the refusal line, checks it, and that nothing was booted by then.
fn assert_refused(vm: &Vm, prefix: &str) -> String {
    firmware_boots_the_stick(vm);
    let line = vm
        .wait_for_line("nullos: refused", VERDICT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        line.starts_with(prefix),
        "expected {prefix:?}, got {line:?}"
    );
    assert_nothing_booted(vm);
    line
}

fn assert_nothing_booted(vm: &Vm) {
    let console = vm.serial_text().unwrap_or_default();
    for never in [
        "nullos: verified",
        "nullos: booting",
        "init: info: nullos init",
        "nullos: ready",
    ] {
        assert!(
            !console.contains(never),
            "{never:?} after a refusal:\n{console}"
        );
    }
}

#[test]
fn a_stick_with_one_flipped_kernel_byte_is_refused_and_never_boots() {
    let (_dir, boot) = edited_stick(|root| {
        let mut kernel = root.open_file("kernel").unwrap_or_else(|e| panic!("{e}"));
        let mut byte = [0u8];
        kernel.seek(SeekFrom::Start(1 << 20)).unwrap();
        kernel.read_exact(&mut byte).unwrap();
        kernel.seek(SeekFrom::Start(1 << 20)).unwrap();
        kernel.write_all(&[byte[0] ^ 0x01]).unwrap();
        kernel.flush().unwrap();
    });
    let vm = start_vm(boot);
    let line = assert_refused(&vm, "nullos: refused kernel: expected ");
    let kernel = std::fs::read(dev_image().join("kernel")).unwrap_or_else(|e| panic!("{e}"));
    let mut flipped = kernel.clone();
    flipped[1 << 20] ^= 0x01;
    assert!(
        line.contains(&trust::Digest::of(&kernel).to_string()),
        "{line}"
    );
    assert!(
        line.contains(&trust::Digest::of(&flipped).to_string()),
        "{line}"
    );
    // Stage 0 waits and tries the medium again, and refuses again: still nothing boots.
    let start = Instant::now();
    while vm
        .serial_text()
        .unwrap_or_default()
        .matches("nullos: refused kernel")
        .count()
        < 2
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no second attempt"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_nothing_booted(&vm);
}

#[test]
fn a_stick_that_accepted_a_newer_version_refuses_the_older_release() {
    let (_dir, boot) = edited_stick(|root| {
        let mut state = root.create_file("nullos-state").unwrap();
        state.write_all(b"highest_version = 2\n").unwrap();
        state.flush().unwrap();
    });
    let vm = start_vm(boot);
    let line = assert_refused(&vm, "nullos: refused release.manifest: ");
    assert!(
        line.contains("version 1 is older than version 2 already accepted (rollback refused)"),
        "{line}"
    );
}

#[test]
fn a_release_signed_by_a_key_outside_the_policy_is_refused() {
    let manifest = std::fs::read(dev_image().join("release.manifest")).unwrap();
    let original = SignedDocument::decode(&manifest).unwrap_or_else(|e| panic!("{e}"));
    let mut forged = SignedDocument::new(original.kind(), original.body().to_vec());
    forged.sign(&SecretKey::from_seed([7; 32])).unwrap();
    let forged = forged.encode();
    let (_dir, boot) = edited_stick(|root| {
        let mut file = root.create_file("release.manifest").unwrap();
        file.truncate().unwrap();
        file.write_all(&forged).unwrap();
        file.flush().unwrap();
    });
    let vm = start_vm(boot);
    let line = assert_refused(&vm, "nullos: refused release.manifest: ");
    assert!(line.contains("signatures rejected"), "{line}");
    assert!(line.contains("policy: threshold 1 of ["), "{line}");
}
