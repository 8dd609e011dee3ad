//! The `image-builder` binary end to end on a small fake kernel: build, reproducibility, verify,
//! tamper detection, co-signing, inspect, and one clear error line for each kind of bad input.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;

fn read_tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn build_writes_every_output_and_verifies() {
    let f = Fixture::new();
    let out = f.builder(&["build", "image.toml", "--out", "out"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = stdout(&out);
    for name in [
        "kernel",
        "initrd",
        "cmdline",
        "release.manifest",
        "pxe/boot.ipxe",
        "pxe/kernel",
        "pxe/initrd",
    ] {
        assert!(f.path("out").join(name).is_file(), "{name} missing");
        assert!(
            printed.contains(&format!("out/{name} (")),
            "build did not print {name}: {printed}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(f.path("out/cmdline")).unwrap(),
        "console=ttyS0 quiet"
    );

    let out = f.builder(&["verify", "out", "--trust", "keys/dev.pub"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("verified release 7 (test, x86_64)"));
}

#[test]
fn initramfs_holds_init_modules_closure_and_index_and_no_shell() {
    let f = Fixture::new();
    assert!(f
        .builder(&["build", "image.toml", "--out", "out"])
        .status
        .success());
    let out = f.builder(&["inspect", "out/initrd"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listing = stdout(&out);
    let k = format!("/lib/modules/{RELEASE}/kernel");
    for path in [
        "/init".to_owned(),
        "/dev/console".to_owned(),
        "/etc/motd".to_owned(),
        "/etc/nullos/node.toml".to_owned(),
        "/lib/modules/nullos.index".to_owned(),
        // By name, with its dependency closure.
        format!("{k}/drivers/net/virtio_net.ko"),
        format!("{k}/drivers/net/net_failover.ko"),
        format!("{k}/net/core/failover.ko"),
        format!("{k}/drivers/virtio/virtio.ko"),
        // By group, with dependencies outside the group.
        format!("{k}/drivers/net/ethernet/intel/e1000e.ko"),
        format!("{k}/drivers/net/ethernet/realtek/r8169.ko"),
        format!("{k}/drivers/ptp/ptp.ko"),
        format!("{k}/drivers/pps/pps_core.ko"),
    ] {
        assert!(
            listing.contains(&format!(" {path}\n")),
            "{path} missing from:\n{listing}"
        );
    }
    assert!(
        !listing.contains("needs_missing"),
        "unwanted module included"
    );
    for shell in ["/bin/sh", "busybox", "bash"] {
        assert!(!listing.contains(shell));
    }
}

#[test]
fn two_builds_are_identical_whatever_the_folder_clock_umask_or_locale() {
    let f = Fixture::new();
    let a = builder_in(
        f.dir.path(),
        &["build", "image.toml", "--out", "a"],
        &[("TZ", "UTC"), ("LANG", "C")],
    );
    assert!(a.status.success(), "{}", stderr(&a));
    // Another working directory, a relative config path, another time zone, locale and umask.
    std::fs::create_dir_all(f.path("elsewhere")).unwrap();
    let b = builder_with_umask(
        &f.path("elsewhere"),
        &["build", "../image.toml", "--out", "../b"],
        &[
            ("TZ", "Pacific/Kiritimati"),
            ("LANG", "de_DE.UTF-8"),
            ("LC_ALL", "de_DE.UTF-8"),
        ],
        Some("077"),
    );
    assert!(b.status.success(), "{}", stderr(&b));
    let (ta, tb) = (read_tree(&f.path("a")), read_tree(&f.path("b")));
    assert_eq!(ta.keys().collect::<Vec<_>>(), tb.keys().collect::<Vec<_>>());
    for (name, bytes) in &ta {
        assert!(bytes == &tb[name], "{name} differs between two builds");
    }
    // SOURCE_DATE_EPOCH is honoured: it changes the initramfs (every entry's mtime), nothing else.
    let c = builder_in(
        f.dir.path(),
        &["build", "image.toml", "--out", "c"],
        &[("SOURCE_DATE_EPOCH", "1700000000")],
    );
    assert!(c.status.success(), "{}", stderr(&c));
    let tc = read_tree(&f.path("c"));
    assert_ne!(ta["initrd"], tc["initrd"]);
    assert_eq!(ta["kernel"], tc["kernel"]);
}

#[test]
fn every_flipped_byte_of_the_manifest_fails_verification_with_a_reason() {
    let f = Fixture::new();
    assert!(f
        .builder(&["build", "image.toml", "--out", "out"])
        .status
        .success());
    let manifest = f.path("out/release.manifest");
    let original = std::fs::read(&manifest).unwrap();
    for i in 0..original.len() {
        let mut bad = original.clone();
        bad[i] ^= 0x01;
        std::fs::write(&manifest, &bad).unwrap();
        let out = f.builder(&["verify", "out", "--trust", "keys/dev.pub"]);
        assert_eq!(out.status.code(), Some(1), "flip at byte {i} was accepted");
        let err = stderr(&out);
        assert!(
            err.contains("release.manifest"),
            "flip at byte {i}: error does not name the manifest: {err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
    std::fs::write(&manifest, &original).unwrap();
    assert!(f
        .builder(&["verify", "out", "--trust", "keys/dev.pub"])
        .status
        .success());
}

#[test]
fn tampered_artifacts_are_named_with_both_digests() {
    let f = Fixture::new();
    assert!(f
        .builder(&["build", "image.toml", "--out", "out"])
        .status
        .success());
    for artifact in ["kernel", "initrd", "cmdline", "pxe/initrd"] {
        let path = f.path("out").join(artifact);
        let original = std::fs::read(&path).unwrap();
        let mut bad = original.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x80;
        std::fs::write(&path, &bad).unwrap();
        let out = f.builder(&["verify", "out", "--trust", "keys/dev.pub"]);
        let expected = trust::Digest::of(&original).to_hex();
        let actual = trust::Digest::of(&bad).to_hex();
        assert_one_error_line(&out, &[artifact, &expected, &actual]);
        std::fs::write(&path, &original).unwrap();
    }
}

#[test]
fn wrong_key_and_co_signing_under_a_threshold_policy() {
    let f = Fixture::new();
    assert!(f
        .builder(&["build", "image.toml", "--out", "out"])
        .status
        .success());
    assert!(f
        .builder(&["keygen", "--out", "keys/second.key"])
        .status
        .success());
    // Signed by dev only: the second key alone does not trust it.
    let out = f.builder(&["verify", "out", "--trust", "keys/second.pub"]);
    assert_one_error_line(&out, &["release.manifest"]);

    let dev = std::fs::read_to_string(f.path("keys/dev.pub")).unwrap();
    let second = std::fs::read_to_string(f.path("keys/second.pub")).unwrap();
    let policy = format!(
        "nullos-signer-policy v1\nthreshold 2\nmember dev weight=1 required {}\nmember second weight=1 {}\n",
        dev.trim(),
        second.trim()
    );
    std::fs::write(f.path("policy"), policy).unwrap();
    let out = f.builder(&["verify", "out", "--trust", "policy"]);
    assert_one_error_line(&out, &["threshold"]);

    let out = f.builder(&["sign", "out", "--key", "keys/second.key"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = f.builder(&["verify", "out", "--trust", "policy"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).matches("signed by").count(), 2);
}

#[test]
fn bad_inputs_are_one_clear_error_line() {
    let f = Fixture::new();
    let base = f.config_text();
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            base.replace("path = \"kernel\"", "path = \"no-such-kernel\""),
            vec!["no-such-kernel", "does not exist"],
        ),
        (
            base.replace("[\"virtio-net\"]", "[\"virtio_nett\"]"),
            vec!["unknown module 'virtio_nett'"],
        ),
        (
            base.replace("[\"virtio-net\"]", "[\"needs_missing\"]"),
            vec!["needs_missing", "not_shipped"],
        ),
        (
            base.replace("[\"drivers/net/ethernet\"]", "[\"drivers/none\"]"),
            vec!["group 'drivers/none'"],
        ),
        (
            base.replace("keys/dev.key", "keys/absent.key"),
            vec!["absent.key"],
        ),
        (
            base.replace("keys/dev.key", "motd"),
            vec!["motd", "secret key"],
        ),
        (
            base.replace("compression = \"zstd\"", "compression = \"lzo\""),
            vec!["unsupported initrd compression 'lzo'"],
        ),
        (
            base.replace("path = \"init\"", "path = \"motd\""),
            vec!["init binary", "motd"],
        ),
        (
            base.replace("[boot]", "[boot]\ncmdlne = \"x\""),
            vec!["image.toml", "cmdlne"],
        ),
        (
            "this is [ not toml".to_owned(),
            vec!["image.toml", "malformed"],
        ),
    ];
    for (config, needles) in cases {
        f.write_config(&config);
        let out = f.builder(&["build", "image.toml", "--out", "out"]);
        assert_one_error_line(&out, &needles);
    }

    // A kernel whose config cannot unpack zstd.
    kernel_tree(
        &f.path("kernel-nozstd"),
        "CONFIG_RD_GZIP=y\n# CONFIG_RD_ZSTD is not set\n",
    );
    f.write_config(&base.replace("path = \"kernel\"", "path = \"kernel-nozstd\""));
    let out = f.builder(&["build", "image.toml", "--out", "out"]);
    assert_one_error_line(&out, &["CONFIG_RD_ZSTD"]);

    // Keys are never overwritten.
    let out = f.builder(&["keygen", "--out", "keys/dev.key"]);
    assert_one_error_line(&out, &["already exists"]);
    // A missing release.
    let out = f.builder(&["verify", "nowhere", "--trust", "keys/dev.pub"]);
    assert_one_error_line(&out, &["nowhere/release.manifest"]);
}

#[test]
fn a_kernel_deb_builds_the_same_image_as_its_unpacked_tree() {
    let f = Fixture::new();
    pack_deb(&f.path("kernel"), &f.path("linux-image-test.deb"));
    assert!(f
        .builder(&["build", "image.toml", "--out", "from-tree"])
        .status
        .success());
    f.write_config(
        &f.config_text()
            .replace("path = \"kernel\"", "path = \"linux-image-test.deb\""),
    );
    let out = f.builder(&["build", "image.toml", "--out", "from-deb"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        read_tree(&f.path("from-tree")),
        read_tree(&f.path("from-deb"))
    );
    // The package's name and version are the release's build inputs either way.
    let inspect = stdout(&f.builder(&["inspect", "from-deb"]));
    assert!(
        inspect.contains(&format!("built from linux-image-{RELEASE} 6.1.999-1")),
        "{inspect}"
    );

    // A file that is not a package is one clear error.
    std::fs::write(f.path("linux-image-test.deb"), b"not an ar archive").unwrap();
    let out = f.builder(&["build", "image.toml", "--out", "bad"]);
    assert_one_error_line(
        &out,
        &["linux-image-test.deb", "not a readable Debian package"],
    );
}

/// The fixture's config with a `[usb]` section using Debian's stub, and a `[stage0]` boot
/// image (the fixture's static executable standing in for `boot`).
fn usb_config(f: &Fixture) -> String {
    format!(
        "{}\n[usb]\nstub = \"{}\"\n\n[stage0]\ninit = \"init\"\npolicy = \"keys/dev.pub\"\n\
         modules = [\"e1000e\"]\ncmdline = \"console=ttyS0 stage0\"\n",
        f.config_text(),
        image_builder::usb::DEFAULT_STUB
    )
}

/// The boot image's three files.
const BOOT_FILES: [&str; 3] = ["boot/kernel", "boot/initrd", "boot/cmdline"];

#[test]
fn usb_image_is_identical_across_builds_whatever_the_folder_clock_or_umask() {
    let f = Fixture::new();
    f.write_config(&usb_config(&f));
    let a = builder_in(f.dir.path(), &["build", "image.toml", "--out", "a"], &[]);
    assert!(a.status.success(), "{}", stderr(&a));
    assert!(stdout(&a).contains("a/usb.img ("), "{}", stdout(&a));
    std::fs::create_dir_all(f.path("elsewhere")).unwrap();
    let b = builder_with_umask(
        &f.path("elsewhere"),
        &["build", "../image.toml", "--out", "../b"],
        &[
            ("TZ", "Pacific/Kiritimati"),
            ("SOURCE_DATE_EPOCH", "1700000000"),
        ],
        Some("077"),
    );
    assert!(b.status.success(), "{}", stderr(&b));
    let (ia, ib) = (
        std::fs::read(f.path("a/usb.img")).unwrap(),
        std::fs::read(f.path("b/usb.img")).unwrap(),
    );
    // SOURCE_DATE_EPOCH changes the initramfs, hence the stick; the same epoch gives the same
    // stick.
    assert_ne!(ia, ib);
    let c = builder_with_umask(
        &f.path("elsewhere"),
        &["build", "../image.toml", "--out", "../c"],
        &[("TZ", "UTC"), ("LANG", "de_DE.UTF-8")],
        Some("022"),
    );
    assert!(c.status.success(), "{}", stderr(&c));
    assert!(
        ia == std::fs::read(f.path("c/usb.img")).unwrap(),
        "usb.img differs between two builds"
    );
    for name in BOOT_FILES {
        let (a, c) = (f.path("a").join(name), f.path("c").join(name));
        assert!(
            std::fs::read(a).unwrap() == std::fs::read(c).unwrap(),
            "{name} differs between two builds"
        );
    }
}

#[test]
fn the_boot_image_holds_boot_the_medium_drivers_and_the_signer_policy() {
    let f = Fixture::new();
    f.write_config(&usb_config(&f));
    let out = f.builder(&["build", "image.toml", "--out", "out"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(f.path("out/boot/cmdline")).unwrap(),
        b"console=ttyS0 stage0"
    );
    assert_eq!(
        std::fs::read(f.path("out/boot/kernel")).unwrap(),
        std::fs::read(f.path("out/kernel")).unwrap(),
        "the section names no other kernel: the node's is used"
    );
    let listing = stdout(&f.builder(&["inspect", "out/boot/initrd"]));
    for needle in [
        "/init",
        "/etc/nullos/release-policy",
        "/etc/nullos/boot-image",
        "/lib/modules/nullos.index",
        "e1000e.ko",
    ] {
        assert!(listing.contains(needle), "{needle} missing:\n{listing}");
    }
    for absent in ["node.toml", "virtio_net", "motd"] {
        assert!(
            !listing.contains(absent),
            "{absent} in the boot image:\n{listing}"
        );
    }
    // The policy in the boot image is the key the release is signed with.
    let verify = f.builder(&["verify", "out", "--trust", "keys/dev.pub"]);
    assert!(verify.status.success(), "{}", stderr(&verify));
}

#[test]
fn the_pxe_bundle_boots_stage_0_and_carries_the_release_for_http() {
    let f = Fixture::new();
    let config = usb_config(&f).replace(
        "[stage0]\n",
        "[stage0]\nrelease_urls = [\"http://10.9.8.7/r\"]\npxe_release = \"http://10.1.1.1:81/nullos\"\n",
    );
    f.write_config(&config);
    let out = f.builder(&["build", "image.toml", "--out", "out"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let read = |name: &str| std::fs::read(f.path("out").join(name)).unwrap();
    assert_eq!(read("pxe/kernel"), read("boot/kernel"));
    assert_eq!(read("pxe/initrd"), read("boot/initrd"));
    for name in ["release.manifest", "kernel", "initrd", "cmdline"] {
        assert_eq!(read(&format!("pxe/release/{name}")), read(name), "{name}");
    }
    let script = String::from_utf8(read("pxe/boot.ipxe")).unwrap();
    assert!(
        script.contains("set nullos-release http://10.1.1.1:81/nullos\n"),
        "{script}"
    );
    assert!(
        script.contains("console=ttyS0 stage0 nullos.release=${nullos-release}\n"),
        "{script}"
    );
    let listing = stdout(&f.builder(&["inspect", "out/boot/initrd"]));
    assert!(listing.contains("/etc/nullos/release-urls"), "{listing}");
    // A changed copy in the bundle is caught by `verify`, and co-signing keeps the copy current.
    let verify = f.builder(&["verify", "out", "--trust", "keys/dev.pub"]);
    assert!(verify.status.success(), "{}", stderr(&verify));
    let initrd = f.path("out/pxe/release/initrd");
    let mut bad = read("pxe/release/initrd");
    bad[0] ^= 1;
    std::fs::write(&initrd, &bad).unwrap();
    let verify = f.builder(&["verify", "out", "--trust", "keys/dev.pub"]);
    assert!(!verify.status.success());
    assert!(
        stderr(&verify).contains("pxe/release/initrd"),
        "{}",
        stderr(&verify)
    );
}

#[test]
fn usb_image_holds_a_uki_of_the_release_and_the_release_itself() {
    use image_builder::usb::{self, disk, fat};
    use object::{Object, ObjectSection};

    let f = Fixture::new();
    f.write_config(&usb_config(&f));
    let out = f.builder(&["build", "image.toml", "--out", "out"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let image = std::fs::read(f.path("out/usb.img")).unwrap();
    let artifact = |name: &str| std::fs::read(f.path("out").join(name)).unwrap();

    let (_, parts) = disk::read(&image).unwrap();
    let names: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, [usb::ESP_NAME, usb::RELEASE_NAME]);
    assert_eq!(parts[0].kind, gpt::partition_types::EFI.guid);
    let volume = |i: usize| parts[i].contents(&image).unwrap();

    let esp = fat::read_files(volume(0), u64::MAX).unwrap();
    assert_eq!(esp.len(), 1, "{esp:?}");
    assert_eq!(esp[0].path, "EFI/BOOT/BOOTX64.EFI");
    let uki = object::read::pe::PeFile64::parse(&*esp[0].data).unwrap();
    // The UKI boots stage 0; the release partition holds the node.
    for (section, file) in [
        (".linux", "boot/kernel"),
        (".initrd", "boot/initrd"),
        (".cmdline", "boot/cmdline"),
    ] {
        let s = uki
            .section_by_name(section)
            .unwrap_or_else(|| panic!("no {section} in the UKI"));
        assert!(
            s.data().unwrap() == artifact(file),
            "{section} != out/{file}"
        );
    }
    let osrel = uki.section_by_name(".osrel").unwrap();
    assert!(String::from_utf8_lossy(osrel.data().unwrap()).contains("VERSION_ID=7\n"));

    let mut release: Vec<(String, Vec<u8>)> = fat::read_files(volume(1), u64::MAX)
        .unwrap()
        .into_iter()
        .map(|f| (f.path, f.data))
        .collect();
    release.sort();
    let want: Vec<(String, Vec<u8>)> = ["cmdline", "initrd", "kernel", "release.manifest"]
        .iter()
        .map(|n| (n.to_string(), artifact(n)))
        .collect();
    assert!(
        release == want,
        "the release partition does not hold the release"
    );

    let out = f.builder(&["inspect", "out/usb.img"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listing = stdout(&out);
    for needle in [
        "NULLOS-RELEASE",
        "EFI/BOOT/BOOTX64.EFI",
        "section .linux",
        "release.manifest",
    ] {
        assert!(listing.contains(needle), "{needle} missing:\n{listing}");
    }
}

#[test]
fn a_missing_efi_stub_is_one_error_naming_the_package() {
    let f = Fixture::new();
    f.write_config(&format!(
        "{}\n[usb]\nstub = \"no/such.stub\"\n",
        f.config_text()
    ));
    let out = f.builder(&["build", "image.toml", "--out", "out"]);
    assert_one_error_line(&out, &["no/such.stub", "systemd-boot-efi"]);
}
