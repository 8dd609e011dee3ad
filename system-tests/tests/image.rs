//! Properties of the built dev image itself: no shell, verifiable, reproducible.

use image_builder::build::{build, Quiet};
use image_builder::compress::decompress_any;
use image_builder::config::BuildConfig;
use image_builder::initrd::list_entries;
use image_builder::{keys, release};
use system_tests::*;

/// Names of interactive programs and remote-access daemons that must never be in an image.
const FORBIDDEN: &[&str] = &[
    "sh", "bash", "dash", "ash", "zsh", "ksh", "mksh", "csh", "tcsh", "fish", "busybox", "toybox",
    "login", "getty", "agetty", "su", "sudo", "sshd", "dropbear", "telnetd",
];

/// The executables a node image may hold: PID 1, the micro-VM monitor, and the host tools of
/// profiles/dev.toml's `[tools]` with their program interpreter (libraries are not executable).
const EXECUTABLES: &[&str] = &[
    "init",
    "bin/vmm",
    "sbin/mke2fs",
    "lib64/ld-linux-x86-64.so.2",
];

#[test]
fn dev_initramfs_contains_no_shell_and_only_allowed_executables() {
    let initrd = std::fs::read(dev_image().join("initrd")).unwrap();
    let cpio = decompress_any(&initrd, 1 << 30).unwrap();
    let entries = list_entries(&cpio).unwrap();
    for wanted in ["init", "bin/vmm"] {
        assert!(entries.iter().any(|e| e.path == wanted), "no /{wanted}");
    }
    for e in &entries {
        let name = e.path.rsplit('/').next().unwrap_or(&e.path);
        assert!(
            !FORBIDDEN.contains(&name),
            "the initramfs contains /{}",
            e.path
        );
        assert!(
            !e.magic.starts_with(b"#!"),
            "the initramfs contains a script: /{}",
            e.path
        );
        if e.is_executable() {
            assert!(
                EXECUTABLES.contains(&e.path.as_str()),
                "unexpected executable /{}",
                e.path
            );
        }
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
