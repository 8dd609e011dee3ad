//! The node image's micro-VM parts end to end: `[vmm]`, `[workloads]`, `[[workload]]` and
//! `[tools]` put the monitor, the signer policy, verified workloads, the guest kernel and host
//! tools with their libraries into the initramfs; workloads the policy would refuse are refused
//! at build time with one line.

mod common;

use std::collections::BTreeMap;

use common::*;
use image_builder::compress::decompress_any;
use image_builder::initrd::list_entries;
use trust::{ArtifactRef, RestartPolicy, VolumeSpec, WorkloadManifest};

const ROOT: &[u8] = b"hsqs: a stand-in for a squashfs root image";

/// Writes a built workload folder `w/<dir>` signed with `key` (a secret key file of the fixture).
fn workload(f: &Fixture, dir: &str, name: &str, key: &str, root: &[u8]) {
    let manifest = WorkloadManifest {
        format: WorkloadManifest::FORMAT,
        name: name.into(),
        version: 1,
        root: ArtifactRef::of(root),
        kernel: None,
        initrd: None,
        entrypoint: vec!["/bin/hello".into()],
        env: vec![],
        workdir: "/".into(),
        vcpus: 1,
        memory_mib: 128,
        volumes: vec![VolumeSpec {
            name: "data".into(),
            mount: "/data".into(),
            size_mib: 16,
        }],
        network: true,
        restart: RestartPolicy::OnFailure,
    };
    let secret = image_builder::keys::load_secret(&f.path(key)).unwrap();
    let mut document = manifest.to_document();
    document.sign(&secret).unwrap();
    let folder = f.path(&format!("w/{dir}"));
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("workload.manifest"), document.encode()).unwrap();
    std::fs::write(folder.join("root.img"), root).unwrap();
}

fn config(f: &Fixture, workloads: &[&str], tools: &[&str]) -> String {
    let mut text = f.config_text();
    text.push_str("\n[vmm]\npath = \"vmm\"\n\n[workloads]\npolicy = \"keys/dev.pub\"\n");
    for w in workloads {
        text.push_str(&format!("\n[[workload]]\npath = \"w/{w}\"\n"));
    }
    let list: Vec<String> = tools.iter().map(|t| format!("\"{t}\"")).collect();
    text.push_str(&format!("\n[tools]\nbinaries = [{}]\n", list.join(", ")));
    text
}

fn fixture() -> Fixture {
    let f = Fixture::new();
    std::fs::write(f.path("vmm"), static_executable()).unwrap();
    f
}

/// Path → (mode, contents) of the built initramfs.
fn initramfs(f: &Fixture) -> BTreeMap<String, (u32, Vec<u8>)> {
    let compressed = std::fs::read(f.path("out/initrd")).unwrap();
    let cpio = decompress_any(&compressed, 1 << 30).unwrap();
    let mut files = BTreeMap::new();
    for e in initramfs::Reader::new(&cpio) {
        let e = e.unwrap();
        files.insert(
            format!("/{}", e.name),
            (e.header.mode & 0o7777, e.data.to_vec()),
        );
    }
    assert_eq!(list_entries(&cpio).unwrap().len(), files.len());
    files
}

#[test]
fn the_node_image_carries_vmm_policy_workloads_guest_kernel_and_tools() {
    let f = fixture();
    workload(&f, "hello", "hello", "keys/dev.key", ROOT);
    let mke2fs = std::path::Path::new("/sbin/mke2fs");
    let tools: &[&str] = if host_tool("/sbin/mke2fs", "e2fsprogs", mke2fs.is_file()) {
        &["/sbin/mke2fs"]
    } else {
        &[]
    };
    f.write_config(&config(&f, &["hello"], tools));
    let out = f.builder(&["build", "image.toml", "--out", "out"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let files = initramfs(&f);
    let file = |p: &str| {
        files
            .get(p)
            .unwrap_or_else(|| panic!("{p} missing from {:?}", files.keys()))
    };
    assert_eq!(file("/bin/vmm"), &(0o755, static_executable()));
    let policy = String::from_utf8(file("/etc/nullos/policy").1.clone()).unwrap();
    let want = image_builder::keys::load_trust(&f.path("keys/dev.pub")).unwrap();
    assert_eq!(trust::SignerPolicy::from_text(&policy).unwrap(), want);
    let manifest = std::fs::read(f.path("w/hello/workload.manifest")).unwrap();
    assert_eq!(
        file("/lib/nullos/workloads/hello/workload.manifest"),
        &(0o644, manifest)
    );
    assert_eq!(
        file("/lib/nullos/workloads/hello/root.img"),
        &(0o644, ROOT.to_vec())
    );
    let kernel = std::fs::read(f.path("out/kernel")).unwrap();
    assert_eq!(file("/lib/nullos/guest/vmlinuz"), &(0o644, kernel));
    if !tools.is_empty() {
        assert_eq!(file("/sbin/mke2fs").0, 0o755);
        assert_eq!(file("/lib64/ld-linux-x86-64.so.2").0, 0o755);
        assert_eq!(file("/lib/x86_64-linux-gnu/libext2fs.so.2").0, 0o644);
        assert_eq!(file("/lib/x86_64-linux-gnu/libc.so.6").0, 0o644);
    }
    // Reproducible with workloads and tools too.
    let first = std::fs::read(f.path("out/initrd")).unwrap();
    let again = f.builder(&["build", "image.toml", "--out", "out2"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(first == std::fs::read(f.path("out2/initrd")).unwrap());
}

/// The metal image bakes no workload (work arrives as contracts) but must still run them: a vmm
/// brings the guests' kernel with it.
#[test]
fn a_vmm_without_workloads_still_carries_the_guest_kernel() {
    let f = fixture();
    f.write_config(&config(&f, &[], &[]));
    let out = f.builder(&["build", "image.toml", "--out", "out"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let files = initramfs(&f);
    assert!(files.contains_key("/bin/vmm"));
    assert!(!files
        .keys()
        .any(|p| p.starts_with("/lib/nullos/workloads/")));
    let kernel = std::fs::read(f.path("out/kernel")).unwrap();
    assert_eq!(
        files.get("/lib/nullos/guest/vmlinuz"),
        Some(&(0o644, kernel))
    );
}

#[test]
fn workloads_the_node_would_refuse_are_refused_at_build_time() {
    let f = fixture();
    let out = f.builder(&["keygen", "--out", "keys/other.key"]);
    assert!(out.status.success(), "{}", stderr(&out));
    workload(&f, "tampered", "hello", "keys/dev.key", ROOT);
    std::fs::write(f.path("w/tampered/root.img"), b"something else").unwrap();
    workload(&f, "stranger", "hello", "keys/other.key", ROOT);
    workload(&f, "hello", "hello", "keys/dev.key", ROOT);
    workload(&f, "twin", "hello", "keys/dev.key", ROOT);
    let cases: [(&[&str], &[&str]); 3] = [
        (&["tampered"], &["w/tampered", "root.img", "does not match"]),
        (&["stranger"], &["w/stranger", "workload.manifest refused"]),
        (&["hello", "twin"], &["w/twin", "named 'hello'"]),
    ];
    for (workloads, needles) in cases {
        f.write_config(&config(&f, workloads, &[]));
        let out = f.builder(&["build", "image.toml", "--out", "out"]);
        assert_one_error_line(&out, needles);
    }
}

#[test]
fn bad_vmm_and_tools_are_one_error_line() {
    let f = fixture();
    workload(&f, "hello", "hello", "keys/dev.key", ROOT);
    std::fs::write(f.path("vmm"), b"#!/bin/sh\n").unwrap();
    f.write_config(&config(&f, &["hello"], &[]));
    let out = f.builder(&["build", "image.toml", "--out", "out"]);
    assert_one_error_line(&out, &["vmm binary", "not a 64-bit ELF"]);

    std::fs::write(f.path("vmm"), static_executable()).unwrap();
    f.write_config(&config(&f, &["hello"], &["/no/such/tool"]));
    let out = f.builder(&["build", "image.toml", "--out", "out"]);
    assert_one_error_line(&out, &["/no/such/tool"]);
}
