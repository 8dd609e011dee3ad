//! Properties of the built dev image itself: no shell, verifiable, reproducible.

use image_builder::build::{build, Quiet};
use image_builder::compress::decompress_any;
use image_builder::config::BuildConfig;
use image_builder::initrd::list_entries;
use image_builder::{keys, release};
use system_tests::*;

/// The executables a node image may hold: PID 1, the micro-VM monitor, and the host tools of
/// the profiles' `[tools]` with their program interpreter (libraries are not executable).
const NODE_EXECUTABLES: &[&str] = &[
    "init",
    "bin/vmm",
    "sbin/mke2fs",
    "lib64/ld-linux-x86-64.so.2",
];

/// Stage 0's boot image holds one program: itself, as `/init`.
const STAGE0_EXECUTABLES: &[&str] = &["init"];

/// Decompresses the initramfs at `path` (under a built image folder) and checks the no-shell
/// rule (`initramfs::audit`) with `allowed` executables; `/init` must be there.
fn assert_shell_free(path: &std::path::Path, allowed: &[&str]) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run `make image PROFILE=dev` and `PROFILE=metal`; make test does)",
            path.display()
        )
    });
    let cpio = decompress_any(&bytes, 1 << 30).unwrap();
    let entries = list_entries(&cpio).unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e.path == "init" && e.is_executable()),
        "{}: no executable /init",
        path.display()
    );
    let problems = initramfs::audit::shell_problems(&cpio, allowed);
    assert!(problems.is_empty(), "{}: {problems:#?}", path.display());
}

#[test]
fn dev_initramfs_contains_no_shell_and_only_allowed_executables() {
    let dev = dev_image();
    assert_shell_free(&dev.join("initrd"), NODE_EXECUTABLES);
    let initrd = std::fs::read(dev.join("initrd")).unwrap();
    let entries = list_entries(&decompress_any(&initrd, 1 << 30).unwrap()).unwrap();
    assert!(entries.iter().any(|e| e.path == "bin/vmm"), "no /bin/vmm");
}

#[test]
fn metal_initramfs_contains_no_shell_and_only_allowed_executables() {
    let metal = build_dir().join("metal");
    assert_shell_free(&metal.join("initrd"), NODE_EXECUTABLES);
    // Without [stage0], the PXE bundle boots the node directly: its initrd is the node's.
    assert_shell_free(&metal.join("pxe/initrd"), NODE_EXECUTABLES);
}

#[test]
fn stage0_and_pxe_initramfs_hold_only_stage0() {
    let dev = dev_image();
    // The boot image (the USB stick's UKI carries the same archive) and the PXE bundle's.
    assert_shell_free(&dev.join("boot/initrd"), STAGE0_EXECUTABLES);
    assert_shell_free(&dev.join("pxe/initrd"), STAGE0_EXECUTABLES);
}

/// The initramfs archives on a USB stick: the UKI's `.initrd` section on the EFI System
/// Partition and the release partition's `initrd`, as `(where, compressed bytes)`.
fn usb_initramfs(usb: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    use image_builder::usb::{disk, fat, UKI_PATH};
    use object::{Object, ObjectSection};
    let image = std::fs::read(usb).unwrap_or_else(|e| panic!("{}: {e}", usb.display()));
    let (_, partitions) = disk::read(&image).unwrap();
    let mut found = Vec::new();
    for p in partitions {
        let volume = p.contents(&image).unwrap();
        for file in fat::read_files(volume, 1 << 30).unwrap() {
            let place = format!("{} partition {:?} {}", usb.display(), p.name, file.path);
            if file.path.eq_ignore_ascii_case(UKI_PATH) {
                let pe = object::read::pe::PeFile64::parse(&*file.data).unwrap();
                let section = pe.section_by_name(".initrd").expect("a .initrd section");
                found.push((format!("{place} .initrd"), section.data().unwrap().to_vec()));
            } else if file.path.eq_ignore_ascii_case("initrd") {
                found.push((place, file.data));
            }
        }
    }
    found
}

#[test]
fn usb_stick_initramfs_contain_no_shell() {
    // dev: the UKI boots stage 0, the release partition holds the node's initramfs.
    let dev = usb_initramfs(&dev_image().join("usb.img"));
    // metal (no [stage0]): the UKI boots the node directly.
    let metal = usb_initramfs(&build_dir().join("metal/usb.img"));
    assert_eq!(
        dev.len(),
        2,
        "{:?}",
        dev.iter().map(|d| &d.0).collect::<Vec<_>>()
    );
    assert_eq!(
        metal.len(),
        2,
        "{:?}",
        metal.iter().map(|d| &d.0).collect::<Vec<_>>()
    );
    for (place, bytes, allowed) in [
        (&dev[0].0, &dev[0].1, STAGE0_EXECUTABLES),
        (&dev[1].0, &dev[1].1, NODE_EXECUTABLES),
        (&metal[0].0, &metal[0].1, NODE_EXECUTABLES),
        (&metal[1].0, &metal[1].1, NODE_EXECUTABLES),
    ] {
        let cpio = decompress_any(bytes, 1 << 30).unwrap_or_else(|e| panic!("{place}: {e}"));
        let problems = initramfs::audit::shell_problems(&cpio, allowed);
        assert!(problems.is_empty(), "{place}: {problems:#?}");
    }
}

#[test]
fn dev_release_verifies_and_every_flipped_manifest_byte_is_refused() {
    let dev = dev_image();
    let policy = keys::load_trust(&build_dir().join("keys/dev.pub")).unwrap();
    let verified = release::verify_dir(&dev, &policy).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(verified.manifest.profile, "dev");
    assert!(verified
        .manifest
        .build
        .kernel_package
        .starts_with("linux-image-"));

    let copy = tempfile::tempdir().unwrap();
    for f in ["kernel", "initrd", "cmdline"] {
        std::fs::copy(dev.join(f), copy.path().join(f)).unwrap();
    }
    let manifest = std::fs::read(dev.join("release.manifest")).unwrap();
    for i in 0..manifest.len() {
        let mut bad = manifest.clone();
        bad[i] ^= 0xff;
        std::fs::write(copy.path().join("release.manifest"), &bad).unwrap();
        assert!(
            release::verify_dir(copy.path(), &policy).is_err(),
            "flipping byte {i} of release.manifest was not detected"
        );
    }
}

#[test]
fn rebuilding_the_dev_image_gives_identical_bytes() {
    // `make image` built build/dev with the CLI; build the same config twice more here, into other
    // folders, and compare every output byte for byte.
    let config = BuildConfig::load(&repo_root().join("profiles/dev.toml")).unwrap();
    let reference = dev_image();
    // The same timestamp `image-builder` used (it reads SOURCE_DATE_EPOCH, default 0).
    let mtime = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    for _ in 0..2 {
        let out = tempfile::tempdir().unwrap();
        let report = build(&config, out.path(), mtime, &Quiet).unwrap_or_else(|e| panic!("{e}"));
        // kernel, initrd, cmdline, release.manifest, pxe/{boot.ipxe,kernel,initrd},
        // pxe/release/{kernel,initrd,cmdline,release.manifest}, boot/{kernel,initrd,cmdline},
        // usb.img.
        assert_eq!(report.written.len(), 15, "{:?}", report.written);
        for written in &report.written {
            let name = written.path.strip_prefix(out.path()).unwrap();
            let bytes = std::fs::read(&written.path).unwrap();
            let expected = std::fs::read(reference.join(name)).unwrap();
            assert!(
                bytes == expected,
                "{} differs from build/dev/{}",
                name.display(),
                name.display()
            );
        }
    }
}

#[test]
fn dev_release_names_the_pinned_tool_packages() {
    let dev = dev_image();
    let policy = keys::load_trust(&build_dir().join("keys/dev.pub")).unwrap();
    let verified = release::verify_dir(&dev, &policy).unwrap_or_else(|e| panic!("{e}"));
    let lock_path = repo_root().join("debian.lock");
    let lock = std::fs::read_to_string(&lock_path).unwrap();
    let pinned: Vec<_> = image_builder::lock::parse(&lock, &lock_path)
        .unwrap()
        .into_iter()
        .filter(|p| p.role == "tools")
        .map(|p| p.package)
        .collect();
    assert!(pinned.iter().any(|p| p.name == "e2fsprogs"), "{pinned:?}");
    assert_eq!(verified.manifest.build.packages, pinned);
}
