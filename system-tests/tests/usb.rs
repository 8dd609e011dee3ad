//! The dev image's USB stick on UEFI firmware (OVMF): firmware finds `EFI/BOOT/BOOTX64.EFI` on
//! the stick's EFI System Partition, the UKI's stub starts the boot kernel with stage 0 (`boot`)
//! as PID 1, and stage 0 verifies the release on the `NULLOS-RELEASE` partition before it
//! kexecs the node.
//!
//! The tamper matrix: copies of the stick with one thing changed (one byte flipped in the
//! kernel, the initramfs, the command line, the manifest body or its signature; a higher
//! version floor; a manifest signed by a key outside the policy; a boot image whose policy
//! wants two signers) are each refused with a line naming what failed, and nothing boots.
//! The version floor on the machine: a data disk (the node's ext4 `NULLOS-DATA`) whose floor is
//! above the release refuses it from a fresh stick; on an empty one the release boots as a
//! trial, is cached, and the node raises the floor once ready.
//! Every case is a VM of its own; cargo's test threads run two at a time.

use std::io::{Cursor, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use image_builder::usb::{self, disk, RELEASE_NAME};
use qemu::{Accel, Boot, Vm, VmConfig};
use system_tests::*;
use trust::{PublicKey, ReleaseManifest, SecretKey, SignedDocument};

/// OVMF, the boot kernel and stage 0 under TCG take about 20 s to a verdict.
const VERDICT_TIMEOUT: Duration = Duration::from_secs(180);

/// The release partition's root folder in a stick being edited.
type ReleaseDir<'fs, 'img> = fatfs::Dir<'fs, Cursor<&'img mut [u8]>>;

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
    let kernel = release_file("kernel");
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

/// A file of the built dev release (the same bytes as on the stick's release partition).
fn release_file(name: &str) -> Vec<u8> {
    std::fs::read(dev_image().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// `bytes` with the byte at `at` XOR 0x01.
fn flipped(bytes: &[u8], at: usize) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[at] ^= 0x01;
    out
}

/// A stick image with `edit` applied to the files of its release partition.
fn edit_release_partition(mut image: Vec<u8>, edit: impl FnOnce(&ReleaseDir<'_, '_>)) -> Vec<u8> {
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
    image
}

/// Writes `image` to a scratch folder (removed when the returned guard drops) as a stick.
fn stick(image: Vec<u8>) -> (tempfile::TempDir, Boot) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path: PathBuf = dir.path().join("usb.img");
    std::fs::write(&path, image).unwrap_or_else(|e| panic!("{e}"));
    (dir, Boot::UsbDisk { image: path })
}

/// A copy of the dev stick with `edit` applied to the files of its release partition.
fn edited_stick(edit: impl FnOnce(&ReleaseDir<'_, '_>)) -> (tempfile::TempDir, Boot) {
    stick(edit_release_partition(release_file("usb.img"), edit))
}

/// Flips (XOR 0x01) the byte at `at` of file `name` in place.
fn flip_byte(root: &ReleaseDir<'_, '_>, name: &str, at: u64) {
    let mut file = root.open_file(name).unwrap_or_else(|e| panic!("{e}"));
    let mut byte = [0u8];
    file.seek(SeekFrom::Start(at)).unwrap();
    file.read_exact(&mut byte).unwrap();
    file.seek(SeekFrom::Start(at)).unwrap();
    file.write_all(&[byte[0] ^ 0x01]).unwrap();
    file.flush().unwrap();
}

/// Replaces file `name` with `bytes`.
fn replace_file(root: &ReleaseDir<'_, '_>, name: &str, bytes: &[u8]) {
    let mut file = root.create_file(name).unwrap_or_else(|e| panic!("{e}"));
    file.truncate().unwrap();
    file.write_all(bytes).unwrap();
    file.flush().unwrap();
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

/// Boots `boot` on OVMF and returns stage 0's refusal line, which must start with `prefix`;
/// nothing may have booted.
fn refusal(boot: Boot, prefix: &str) -> String {
    let vm = start_vm(boot);
    assert_refused(&vm, prefix)
}

/// Boots a copy of the dev stick with one byte of artifact `name` flipped at `at`; the refusal
/// must name the artifact with its signed and its found digest. Returns the VM, still running.
fn assert_artifact_flip_refused(name: &str, at: usize) -> Vm {
    let original = release_file(name);
    let (_dir, boot) = edited_stick(|root| flip_byte(root, name, at as u64));
    let vm = start_vm(boot);
    let line = assert_refused(&vm, &format!("nullos: refused {name}: expected "));
    let size = original.len();
    let expected = trust::Digest::of(&original);
    let found = trust::Digest::of(&flipped(&original, at));
    assert_eq!(
        line,
        format!(
            "nullos: refused {name}: expected {size} bytes, blake3 {expected}, found {size} bytes, blake3 {found}"
        )
    );
    vm
}

/// The refusal of a manifest whose only signature fails against the dev policy.
fn assert_bad_signature_line(line: &str) {
    let dev_key = dev_public_key();
    assert_eq!(
        line,
        format!(
            "nullos: refused release.manifest: release signatures rejected: signature by member \
             'signer' ({}) does not verify; signed weight 0, threshold 1 (policy: threshold 1 of \
             [signer {}])",
            dev_key.short(),
            dev_key.short()
        )
    );
}

fn dev_public_key() -> PublicKey {
    let text =
        std::fs::read_to_string(build_dir().join("keys/dev.pub")).unwrap_or_else(|e| panic!("{e}"));
    PublicKey::from_text(&text).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_stick_with_one_flipped_kernel_byte_is_refused_and_never_boots() {
    let vm = assert_artifact_flip_refused("kernel", 1 << 20);
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
fn a_stick_with_one_flipped_initrd_byte_is_refused() {
    assert_artifact_flip_refused("initrd", 1 << 20);
}

#[test]
fn a_stick_with_one_flipped_cmdline_byte_is_refused() {
    // The first byte: "console=..." becomes "bonsole=...", a command line that would still boot.
    assert_artifact_flip_refused("cmdline", 0);
}

#[test]
fn a_manifest_with_one_flipped_body_byte_is_refused() {
    let manifest = release_file("release.manifest");
    let document = SignedDocument::decode(&manifest).unwrap_or_else(|e| panic!("{e}"));
    let body = document.body();
    let release = ReleaseManifest::decode(body).unwrap_or_else(|e| panic!("{e}"));
    // The byte flipped is in the kernel's digest: the manifest now vouches for another kernel.
    let digest_at = body
        .windows(32)
        .position(|w| w == release.kernel.digest.as_bytes())
        .expect("kernel digest in the body");
    let body_at = manifest
        .windows(body.len())
        .position(|w| w == body)
        .expect("body in the file");
    let at = body_at + digest_at;
    let (_dir, boot) = edited_stick(|root| flip_byte(root, "release.manifest", at as u64));
    let line = refusal(boot, "nullos: refused release.manifest: ");
    // Signatures are checked before the body is read, so the changed digest is never trusted.
    // A changed body and a changed signature look the same to a verifier (the signature does
    // not match the body): both refusals name the member whose signature failed.
    assert_bad_signature_line(&line);
}

#[test]
fn a_manifest_with_one_flipped_signature_byte_is_refused() {
    let manifest = release_file("release.manifest");
    let document = SignedDocument::decode(&manifest).unwrap_or_else(|e| panic!("{e}"));
    // docs/TRUST-FORMATS.md: the file ends with the signatures, 96 bytes each (key, then the
    // 64-byte ed25519 signature), so with one signer the last byte is the signature's last.
    assert_eq!(
        document.signers().count(),
        1,
        "the dev release has one signer"
    );
    assert_eq!(
        document.encode(),
        manifest,
        "the file is the canonical encoding"
    );
    let at = manifest.len() - 1;
    let (_dir, boot) = edited_stick(|root| flip_byte(root, "release.manifest", at as u64));
    let line = refusal(boot, "nullos: refused release.manifest: ");
    assert_bad_signature_line(&line);
}

#[test]
fn a_stick_that_accepted_a_newer_version_refuses_the_older_release() {
    let (_dir, boot) =
        edited_stick(|root| replace_file(root, "nullos-state", b"highest_version = 2\n"));
    let line = refusal(boot, "nullos: refused release.manifest: ");
    assert_eq!(
        line,
        "nullos: refused release.manifest: version 1 is older than version 2 already accepted (rollback refused)"
    );
}

#[test]
fn a_release_signed_by_a_key_outside_the_policy_is_refused() {
    let manifest = release_file("release.manifest");
    let original = SignedDocument::decode(&manifest).unwrap_or_else(|e| panic!("{e}"));
    let mut forged = SignedDocument::new(original.kind(), original.body().to_vec());
    forged.sign(&SecretKey::from_seed([7; 32])).unwrap();
    let forged = forged.encode();
    let (_dir, boot) = edited_stick(|root| replace_file(root, "release.manifest", &forged));
    let line = refusal(boot, "nullos: refused release.manifest: ");
    let dev_key = dev_public_key();
    assert_eq!(
        line,
        format!(
            "nullos: refused release.manifest: release signatures rejected: required member \
             'signer' did not sign (policy: threshold 1 of [signer {}])",
            dev_key.short()
        )
    );
}

#[test]
fn a_release_below_the_policy_threshold_is_refused() {
    // The same stick, but stage 0's policy wants two of two signers and the release has one.
    // The policy is baked into the boot image, so the UKI is rebuilt with one more initramfs
    // segment after the boot initrd: an uncompressed cpio holding a replacement
    // /etc/nullos/release-policy (the kernel unpacks concatenated archives in order, later
    // files replacing earlier ones; the zero padding keeps the cpio 4-byte aligned).
    let dev_key = dev_public_key();
    let second = SecretKey::from_seed([9; 32]).public();
    let policy = format!(
        "nullos-signer-policy v1\nthreshold 2\nmember signer weight=1 {dev_key}\nmember second weight=1 {second}\n"
    );
    trust::SignerPolicy::from_text(&policy).unwrap_or_else(|e| panic!("{e}"));
    let mut tree = image_builder::initrd::InitrdTree::new();
    tree.add_file("/etc/nullos/release-policy", policy.into_bytes(), 0o644)
        .unwrap();
    let mut boot_initrd = std::fs::read(dev_image().join("boot/initrd")).unwrap();
    boot_initrd.resize(boot_initrd.len().next_multiple_of(4), 0);
    boot_initrd.extend(tree.to_cpio(0).unwrap());
    let boot_kernel = std::fs::read(dev_image().join("boot/kernel")).unwrap();
    let boot_cmdline = std::fs::read(dev_image().join("boot/cmdline")).unwrap();
    let stub = usb::read_stub("/usr/lib/systemd/boot/efi/linuxx64.efi.stub".as_ref())
        .unwrap_or_else(|e| panic!("{e}"));
    let (manifest, kernel, initrd, cmdline) = (
        release_file("release.manifest"),
        release_file("kernel"),
        release_file("initrd"),
        release_file("cmdline"),
    );
    let image = usb::build_image(&usb::UsbContents {
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
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let (_dir, boot) = stick(image);
    let line = refusal(boot, "nullos: refused release.manifest: ");
    assert_eq!(
        line,
        format!(
            "nullos: refused release.manifest: release signatures rejected: signed weight 1 is \
             below threshold 2 (valid signers: signer) (policy: threshold 2 of [signer {}, second {}])",
            dev_key.short(),
            second.short()
        )
    );
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

/// A data disk as the node makes it (ext4 labelled `NULLOS-DATA`, by mke2fs as the node runs it)
/// holding `files` at its root, written to `dir`.
fn data_disk(dir: &Path, files: &[(&str, &[u8])]) -> PathBuf {
    let root = dir.join("data-root");
    std::fs::create_dir_all(&root).unwrap();
    for (name, bytes) in files {
        std::fs::write(root.join(name), bytes).unwrap();
    }
    let image = dir.join("data.img");
    std::fs::File::create(&image)
        .and_then(|f| f.set_len(64 << 20))
        .unwrap();
    let out = std::process::Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-L", "NULLOS-DATA", "-d"])
        .arg(&root)
        .arg(&image)
        .output()
        .unwrap_or_else(|e| panic!("mke2fs (e2fsprogs, make deps) is needed: {e}"));
    assert!(out.status.success(), "mke2fs: {out:?}");
    image
}

/// Starts the unmodified dev stick (a fresh copy: no `nullos-state` on it) with `disk` as a
/// virtio disk.
fn fresh_stick_with_disk(disk: &Path) -> (tempfile::TempDir, Vm) {
    let (dir, boot) = stick(release_file("usb.img"));
    let accel = Accel::detect().unwrap_or_else(|e| panic!("{e}"));
    let mut config = VmConfig::new(boot, accel);
    config.extra_args.push("-drive".into());
    config
        .extra_args
        .push(format!("file={},if=virtio,format=raw", disk.display()).into());
    let vm = Vm::start(config).unwrap_or_else(|e| panic!("starting QEMU: {e}"));
    (dir, vm)
}

/// Issue 14: the floor lives on the machine. The stick has never seen version 2, the machine's
/// data disk says 2: version 1 is refused.
#[test]
fn a_data_disk_floor_above_the_release_refuses_it_even_from_a_fresh_stick() {
    let dir = tempfile::tempdir().unwrap();
    let disk = data_disk(
        dir.path(),
        &[("nullos-state", b"highest_version = 2\n".as_slice())],
    );
    let (_stick, vm) = fresh_stick_with_disk(&disk);
    let line = assert_refused(&vm, "nullos: refused release.manifest: ");
    assert_eq!(
        line,
        "nullos: refused release.manifest: version 1 is older than version 2 already accepted (rollback refused)"
    );
    let console = vm.serial_text().unwrap_or_default();
    assert!(
        console.contains(
            "version floor 2 (boot image minimum 1, data disk /dev/vda 2, stick /dev/sda2 0)"
        ),
        "{console}"
    );
}

/// Issue 14 (boot counting): on a data disk without a boot state stage 0 boots the stick's
/// release as a trial and caches it, without raising the floor (a trial must be able to fall
/// back); the node, once ready, marks its release good and raises the data disk's floor to it.
/// Issue 13: the stick pins that data disk, in the same write as its floor.
#[test]
fn the_node_raises_the_floor_on_the_data_disk_once_ready() {
    let dir = tempfile::tempdir().unwrap();
    let disk = data_disk(dir.path(), &[]);
    let (_stick, vm) = fresh_stick_with_disk(&disk);
    firmware_boots_the_stick(&vm);
    let good = "nullos: release version=1 is good; version floor 1 on the data disk /dev/vda";
    vm.wait_for_line(good, READY_TIMEOUT).unwrap_or_else(|e| {
        let console = vm.serial_text().unwrap_or_default();
        panic!("{e}\n{console}")
    });
    let console = vm.serial_text().unwrap_or_default();
    let order = [
        "nullos: verified release version=1",
        "nullos: release version=1 cached on the data disk",
        "nullos: release version=1 on trial (good version=0, tries left after this boot: 1)",
        "nullos: booting release version=1",
        "nullos: ready version=1",
        good,
    ]
    .map(|needle| console.find(needle).unwrap_or(usize::MAX));
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "{order:?}\n{console}"
    );
    assert!(
        !console.contains("highest accepted version is now 1 on the data disk"),
        "stage 0 raised the floor for a trial:\n{console}"
    );
    // The stick saw one data disk and no pin: it pins this one, in the same write as its floor,
    // and tells the node (`nullos.data=`).
    let mut first = vec![0u8; 2048];
    std::io::Read::read_exact(&mut std::fs::File::open(&disk).unwrap(), &mut first).unwrap();
    let uuid = interfaces::data_disk::data_filesystem(&first).expect("the disk mke2fs made");
    assert!(
        console.contains(&format!(
            "nullos: data disk pinned uuid={uuid} on the stick /dev/sda2"
        )),
        "{console}"
    );
    let booting = console
        .lines()
        .find(|l| l.contains("nullos: booting release version=1"))
        .unwrap_or_default();
    assert!(
        booting.contains(&format!(" nullos.data={uuid}\"")),
        "{booting}"
    );
    drop(vm);
    // The node's mount was never unmounted: its last writes may be in the ext4 journal only,
    // which debugfs does not replay; e2fsck on a copy does.
    let checked = dir.path().join("checked.img");
    std::fs::copy(&disk, &checked).unwrap();
    let fsck = std::process::Command::new("e2fsck")
        .args(["-f", "-y"])
        .arg(&checked)
        .output()
        .unwrap_or_else(|e| panic!("e2fsck (e2fsprogs) is needed: {e}"));
    assert!(
        matches!(fsck.status.code(), Some(0 | 1)),
        "e2fsck: {fsck:?}"
    );
    let debugfs = |command: &str| {
        let out = std::process::Command::new("debugfs")
            .args(["-R", command])
            .arg(&checked)
            .output()
            .unwrap_or_else(|e| panic!("debugfs (e2fsprogs) is needed: {e}"));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let floor = debugfs("cat /nullos-state");
    assert!(floor.contains("highest_version = 1\n"), "{floor}");
    let state = debugfs("cat /nullos-boot");
    assert!(state.contains("good_version = 1\n"), "{state}");
    assert!(!state.contains("trial_version"), "{state}");
    let cached = debugfs("ls -l /releases/1");
    for name in ["release.manifest", "kernel", "initrd", "cmdline"] {
        assert!(cached.contains(name), "{name} not cached: {cached}");
    }
}
