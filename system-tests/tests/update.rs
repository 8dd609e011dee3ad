//! Self-update and boot counting (issue 14 item 4) on the dev stick with a data disk, one
//! machine through its whole story (one VM at a time; QEMU may reboot, on the same disks):
//!
//! 1. The stick holds version 1; the node is ready, marks it good and watches its release
//!    channel (an HTTP folder on the host, polled every few seconds).
//! 2. Version 2 is published: the node fetches and verifies it into the cache on its data disk,
//!    reboots; stage 0 boots it from the cache as a trial; `ready version=2`, marked good.
//! 3. Version 3 is published, a release whose node never reaches ready (its command line names
//!    an init that does not exist: the kernel panics and `panic=10` reboots): after its two
//!    tries stage 0 marks it bad and falls back to version 2 with its line, and the node, ready
//!    again, does not fetch version 3 again.
//! 4. A fresh stick with version 1 only: refused by the floor of 2 on the data disk, and the
//!    cached version 2 boots.
//!
//! The releases are the built dev release with a second initramfs segment (node.toml with the
//! version and the channel, the release policy) and a manifest signed by the dev key, so no
//! image is rebuilt.

use std::path::{Path, PathBuf};
use std::time::Duration;

use image_builder::usb;
use qemu::{Accel, Boot, Vm, VmConfig};
use system_tests::*;
use trust::{ArtifactRef, ReleaseManifest, SignedDocument};

/// The channel's port on the host (not the PXE tests' 8080: this test serves its own folder).
const CHANNEL_PORT: u16 = 8091;
/// The channel as the node sees it (QEMU's user network: the host is 10.0.2.2).
const CHANNEL: &str = "http://10.0.2.2:8091/release";
/// How often the node asks the channel.
const POLL_SECONDS: u64 = 2;
/// A boot from firmware to ready under TCG, with room for a busy machine.
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
/// Two failed boots of version 3 (each to its panic and the 10 s reboot delay) and the fallback.
const FALLBACK_TIMEOUT: Duration = Duration::from_secs(900);

/// A release's four files.
struct Release {
    manifest: Vec<u8>,
    kernel: Vec<u8>,
    initrd: Vec<u8>,
    cmdline: Vec<u8>,
}

fn built(name: &str) -> Vec<u8> {
    std::fs::read(dev_image().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The dev release as version `version`, watching [`CHANNEL`], with `extra` appended to its
/// command line.
fn release(version: u64, extra: &str) -> Release {
    let node = interfaces::NodeConfig {
        version,
        profile: "dev".into(),
        control: None,
        egress_allow: Vec::new(),
        notary: None,
        notary_key: None,
        farm: None,
        release_channel: Some(CHANNEL.into()),
        release_poll_seconds: Some(POLL_SECONDS),
    };
    let policy = std::fs::read(repo_root().join("build/keys/dev.pub")).unwrap();
    let mut tree = image_builder::initrd::InitrdTree::new();
    tree.add_file(
        "/etc/nullos/node.toml",
        node.to_toml().unwrap().into_bytes(),
        0o644,
    )
    .unwrap();
    tree.add_file("/etc/nullos/release-policy", policy, 0o644)
        .unwrap();
    // A second initramfs segment: the kernel unpacks both, the later files replacing.
    let mut initrd = built("initrd");
    initrd.resize(initrd.len().next_multiple_of(4), 0);
    initrd.extend(tree.to_cpio(0).unwrap());
    let mut cmdline = String::from_utf8(built("cmdline"))
        .unwrap()
        .trim()
        .to_owned();
    if !extra.is_empty() {
        cmdline = format!("{cmdline} {extra}");
    }
    let kernel = built("kernel");
    let original = SignedDocument::decode(&built("release.manifest")).unwrap();
    let mut manifest = ReleaseManifest::decode(original.body()).unwrap();
    manifest.version = version;
    manifest.initrd = ArtifactRef::of(&initrd);
    manifest.cmdline = ArtifactRef::of(cmdline.as_bytes());
    let mut document = manifest.to_document();
    let key = image_builder::keys::load_secret(&repo_root().join("build/keys/dev.key"))
        .unwrap_or_else(|e| panic!("the dev key (make keys): {e}"));
    document.sign(&key).unwrap();
    Release {
        manifest: document.encode(),
        kernel,
        initrd,
        cmdline: cmdline.into_bytes(),
    }
}

/// Publishes `release` in the channel folder: the artifacts first, the manifest last (renamed
/// into place), so the node never sees a manifest whose files are not there yet.
fn publish(channel: &Path, release: &Release) {
    for (name, bytes) in [
        ("kernel", &release.kernel),
        ("initrd", &release.initrd),
        ("cmdline", &release.cmdline),
    ] {
        std::fs::write(channel.join(name), bytes).unwrap();
    }
    let temp = channel.join("release.manifest.new");
    std::fs::write(&temp, &release.manifest).unwrap();
    std::fs::rename(&temp, channel.join("release.manifest")).unwrap();
}

/// A stick holding `release` (nothing else: no `nullos-state`), written into `dir`.
fn stick(dir: &Path, release: &Release, version: u64) -> Boot {
    let stub = usb::read_stub("/usr/lib/systemd/boot/efi/linuxx64.efi.stub".as_ref())
        .unwrap_or_else(|e| panic!("{e}"));
    let (boot_kernel, boot_initrd, boot_cmdline) = (
        built("boot/kernel"),
        built("boot/initrd"),
        built("boot/cmdline"),
    );
    let image = usb::build_image(&usb::UsbContents {
        stub: &stub,
        uki: usb::BootTriple {
            kernel: &boot_kernel,
            initrd: &boot_initrd,
            cmdline: &boot_cmdline,
        },
        manifest: &release.manifest,
        kernel: &release.kernel,
        initrd: &release.initrd,
        cmdline: &release.cmdline,
        version,
        profile: "dev",
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let path: PathBuf = dir.join("usb.img");
    std::fs::write(&path, image).unwrap();
    Boot::UsbDisk { image: path }
}

/// The machine: the stick, an empty data disk the node formats, allowed to reboot.
fn machine(boot: Boot, data_disk: &Path) -> Vm {
    let accel = Accel::detect().unwrap_or_else(|e| panic!("{e}"));
    let mut config = VmConfig::new(boot, accel);
    config.allow_reboot = true;
    config.extra_args.push("-drive".into());
    config
        .extra_args
        .push(format!("file={},if=virtio,format=raw", data_disk.display()).into());
    Vm::start(config).unwrap_or_else(|e| panic!("starting QEMU: {e}"))
}

/// Waits for the `n`th line (1-based) containing `needle`.
fn wait_nth(vm: &Vm, needle: &str, n: usize, timeout: Duration) -> String {
    let mut seen = 0;
    vm.wait_for_line_matching(
        &format!("occurrence {n} of {needle:?}"),
        |line| {
            if line.contains(needle) {
                seen += 1;
            }
            seen == n && line.contains(needle)
        },
        timeout,
    )
    .unwrap_or_else(|e| {
        let console = vm.serial_text().unwrap_or_default();
        panic!("{e}\n--- console ---\n{console}")
    })
}

fn count(vm: &Vm, needle: &str) -> usize {
    vm.serial_text().unwrap_or_default().matches(needle).count()
}

#[test]
fn the_node_updates_itself_falls_back_from_a_release_that_never_gets_ready_and_keeps_its_floor() {
    let dir = tempfile::tempdir().unwrap();
    let channel = dir.path().join("channel");
    std::fs::create_dir_all(&channel).unwrap();
    let v1 = release(1, "");
    publish(&channel, &v1);
    let _server = ReleaseServer::start_on(&channel, CHANNEL_PORT);
    let data_disk = dir.path().join("data.img");
    std::fs::File::create(&data_disk)
        .and_then(|f| f.set_len(512 << 20))
        .unwrap();

    // 1. Version 1 from the stick, marked good once ready.
    let stick_dir = dir.path().join("stick-1");
    std::fs::create_dir_all(&stick_dir).unwrap();
    let vm = machine(stick(&stick_dir, &v1, 1), &data_disk);
    wait_nth(&vm, "nullos: ready version=1 ", 1, BOOT_TIMEOUT);
    wait_nth(
        &vm,
        "nullos: release version=1 is good; version floor 1 on the data disk /dev/vda",
        1,
        BOOT_TIMEOUT,
    );

    // 2. Version 2 published: fetched, cached, rebooted into, on trial, then good.
    publish(&channel, &release(2, ""));
    wait_nth(
        &vm,
        "nullos: update version=2 found at http://10.0.2.2:8091/release; fetching",
        1,
        BOOT_TIMEOUT,
    );
    wait_nth(
        &vm,
        "nullos: update verified release version=2 profile=dev",
        1,
        BOOT_TIMEOUT,
    );
    wait_nth(
        &vm,
        "nullos: update version=2 cached; rebooting into it",
        1,
        BOOT_TIMEOUT,
    );
    wait_nth(&vm, "nullos: reboot", 1, BOOT_TIMEOUT);
    wait_nth(
        &vm,
        "nullos: release version=2 on trial (good version=1, tries left after this boot: 1)",
        1,
        BOOT_TIMEOUT,
    );
    wait_nth(&vm, "nullos: ready version=2 ", 1, BOOT_TIMEOUT);
    wait_nth(
        &vm,
        "nullos: release version=2 is good; version floor 2 on the data disk /dev/vda",
        1,
        BOOT_TIMEOUT,
    );

    // 3. Version 3 never reaches ready: two tries, then marked bad, and version 2 again.
    publish(&channel, &release(3, "rdinit=/no-such-init"));
    wait_nth(
        &vm,
        "nullos: update version=3 cached; rebooting into it",
        1,
        BOOT_TIMEOUT,
    );
    let fallback = wait_nth(
        &vm,
        "nullos: release version=3 did not reach ready",
        1,
        FALLBACK_TIMEOUT,
    );
    assert_eq!(
        fallback.trim(),
        "nullos: release version=3 did not reach ready; marked bad, falling back to version=2"
    );
    wait_nth(&vm, "nullos: ready version=2 ", 2, BOOT_TIMEOUT);
    // The node sees version 3 on its channel again and leaves it alone.
    wait_nth(
        &vm,
        "release: version 3 at http://10.0.2.2:8091/release is marked bad on this machine; not fetched",
        1,
        BOOT_TIMEOUT,
    );
    assert_eq!(
        count(&vm, "nullos: booting release version=3"),
        2,
        "two tries"
    );
    assert_eq!(count(&vm, "nullos: ready version=3"), 0);
    let console = vm.serial_text().unwrap_or_default();
    let tries = &console[console
        .find("nullos: booting release version=3")
        .unwrap_or(0)..];
    assert_eq!(
        tries.matches("Kernel panic - not syncing").count(),
        2,
        "each try of version 3 panicked:\n{tries}"
    );
    assert_eq!(
        count(&vm, "nullos: update version=3 found"),
        1,
        "version 3 was fetched once"
    );
    drop(vm);

    // 4. A fresh stick with version 1 only: the data disk's floor says 2.
    let stick_dir = dir.path().join("stick-fresh");
    std::fs::create_dir_all(&stick_dir).unwrap();
    let vm = machine(stick(&stick_dir, &v1, 1), &data_disk);
    let refused = wait_nth(&vm, "nullos: refused release.manifest: ", 1, BOOT_TIMEOUT);
    assert_eq!(
        refused.trim(),
        "nullos: refused release.manifest: version 1 is older than version 2 already accepted (rollback refused)"
    );
    wait_nth(&vm, "nullos: ready version=2 ", 1, BOOT_TIMEOUT);
    assert_eq!(count(&vm, "nullos: ready version=1"), 0);
    assert_eq!(
        count(&vm, "nullos: booting release version=3"),
        0,
        "bad stays bad"
    );
}
