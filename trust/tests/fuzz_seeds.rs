//! The fuzz seed corpus (`fuzz/corpus/<target>/seed-*`) is generated here from the encoders,
//! so it always matches the current formats.
//!
//! Check: `cargo test -p trust --test fuzz_seeds`. Regenerate after a format change:
//! `NULLOS_WRITE_FUZZ_SEEDS=1 cargo test -p trust --test fuzz_seeds`.

use std::path::PathBuf;

use trust::{
    ArtifactRef, BuildInputs, DocumentKind, PolicyMember, ReleaseManifest, RestartPolicy,
    SecretKey, SignedDocument, SignerPolicy, VolumeSpec, WorkloadManifest,
};

/// (target, file name, bytes). Documents are signed with seed [1; 32], the key the fuzz
/// targets trust, so mutations get as far as signature checks.
fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let key = |n: u8| SecretKey::from_seed([n; 32]);
    let manifest = ReleaseManifest {
        format: ReleaseManifest::FORMAT,
        version: 3,
        profile: "dev".into(),
        target: "x86_64-qemu".into(),
        kernel: ArtifactRef::of(b"kernel"),
        initrd: ArtifactRef::of(b"initrd"),
        cmdline: ArtifactRef::of(b"console=ttyS0"),
        build: BuildInputs {
            kernel_package: "linux-image-6.1.0-56-cloud-amd64".into(),
            kernel_version: "6.1.0-56-cloud-amd64".into(),
            packages: Vec::new(),
        },
    };
    let mut release = manifest.to_document();
    release.sign(&key(1)).expect("sign");
    let mut workload = SignedDocument::new(DocumentKind::WorkloadManifest, b"workload".to_vec());
    workload.sign(&key(1)).expect("sign");
    workload.sign(&key(2)).expect("co-sign");
    let unsigned = SignedDocument::new(DocumentKind::ReleaseManifest, Vec::new());
    let team = SignerPolicy {
        threshold: 2,
        members: vec![
            PolicyMember {
                name: "alice".into(),
                key: key(1).public(),
                weight: 1,
                required: true,
            },
            PolicyMember {
                name: "bob".into(),
                key: key(2).public(),
                weight: 1,
                required: false,
            },
            PolicyMember {
                name: "ci@build".into(),
                key: key(3).public(),
                weight: 0,
                required: false,
            },
        ],
    };
    let single = SignerPolicy::single(key(1).public());
    let hello = WorkloadManifest {
        format: WorkloadManifest::FORMAT,
        name: "hello".into(),
        version: 1,
        root: ArtifactRef::of(b"root.img"),
        kernel: None,
        initrd: Some(ArtifactRef::of(b"initrd")),
        entrypoint: vec!["/bin/hello".into(), "--once".into()],
        env: vec![("GREETING".into(), "hi".into())],
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
    let mut hello_file = hello.to_document();
    hello_file.sign(&key(1)).expect("sign");
    vec![
        ("workload_manifest", "seed-1", hello_file.encode()),
        ("workload_manifest", "seed-body", hello.encode()),
        ("signed_document_decode", "seed-release", release.encode()),
        (
            "signed_document_decode",
            "seed-workload-cosigned",
            workload.encode(),
        ),
        ("signed_document_decode", "seed-unsigned", unsigned.encode()),
        (
            "release_manifest_decode",
            "seed-manifest-body",
            manifest.encode(),
        ),
        (
            "release_manifest_decode",
            "seed-release-file",
            release.encode(),
        ),
        (
            "signer_policy_text",
            "seed-single",
            single.to_text().into_bytes(),
        ),
        (
            "signer_policy_text",
            "seed-team",
            team.to_text().into_bytes(),
        ),
        ("signer_policy_decode", "seed-single", single.encode()),
        ("signer_policy_decode", "seed-team", team.encode()),
        (
            "key_text",
            "seed-public",
            key(1).public().to_text().into_bytes(),
        ),
        (
            "key_text",
            "seed-secret",
            key(1).to_text("fuzz seed key").into_bytes(),
        ),
    ]
}

#[test]
fn fuzz_seed_corpus_is_current() {
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let write = std::env::var_os("NULLOS_WRITE_FUZZ_SEEDS").is_some();
    for (target, name, bytes) in seeds() {
        let path = corpus.join(target).join(name);
        if write {
            std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
            std::fs::write(&path, &bytes).expect("write seed");
        } else {
            let on_disk = std::fs::read(&path).unwrap_or_default();
            assert!(
                on_disk == bytes,
                "{} is missing or stale: NULLOS_WRITE_FUZZ_SEEDS=1 cargo test -p trust --test fuzz_seeds",
                path.display()
            );
        }
    }
}
