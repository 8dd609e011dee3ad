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
    let mut seeds = vec![
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
    ];
    seeds.extend(grid_seeds());
    seeds
}

/// For `grid_documents`: per control-plane kind, its code byte then a signed file, and its code
/// byte then the bare body. Farmer seed [1; 32], node [2; 32], owner [3; 32], stakeholder [4; 32].
fn grid_seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    use trust::grid::*;
    use trust::{Digest, NamedSigner};

    let key = |n: u8| SecretKey::from_seed([n; 32]);
    let farm = Farm {
        version: 1,
        farmer: key(1).public(),
        name: "seed farm".into(),
    };
    let node = NodeRegistration {
        sequence: 1,
        node: key(2).public(),
        farm: key(1).public(),
        capacity: Capacity {
            cpus: 4,
            memory_mib: 8192,
            disks: vec![Disk {
                name: "vdb".into(),
                size_mib: 4096,
            }],
            nics: vec![Nic {
                name: "eth0".into(),
                mac: [0x52, 0x54, 0, 0, 0, 1],
            }],
        },
        release_version: 3,
        release_manifest: Digest::of(b"release body"),
    };
    let contract = Contract {
        version: 1,
        supersedes: None,
        owner: key(3).public(),
        stakeholders: SignerPolicy::single(key(4).public()),
        workloads: vec![ContractWorkload {
            name: "hello".into(),
            manifest: Digest::of(b"workload.manifest"),
            vcpus: 1,
            memory_mib: 128,
            volumes: vec![VolumeClaim {
                name: "data".into(),
                size_mib: 16,
            }],
            egress: Egress::Only(vec![Endpoint {
                host: "example.org".into(),
                port: 443,
            }]),
            env: vec![("GREETING".into(), "hi".into())],
        }],
        constraints: Constraints {
            farms: vec![key(1).public()],
            min_memory_mib: 1024,
            min_cpus: 1,
            copies: 1,
        },
    };
    let id = contract.id();
    let approval = Approval {
        version: 1,
        contract: id,
        body: contract.body_digest(),
        stakeholder: key(4).public(),
    };
    let placement = Placement {
        sequence: 1,
        contract: id,
        version: 1,
        node: key(2).public(),
        owner: key(3).public(),
        reason: "seed".into(),
    };
    let cancellation = Cancellation {
        version: 1,
        contract: id,
        owner: key(3).public(),
        reason: "seed".into(),
    };
    let status = StatusReport {
        sequence: 1,
        node: key(2).public(),
        contract: id,
        version: 1,
        workloads: vec![WorkloadStatus {
            name: "hello".into(),
            state: WorkloadState::Exited,
            exit_code: Some(1),
            restarts: 2,
            reason: "exit 1".into(),
            tail: None,
        }],
    };
    let mut status_tail = status.clone();
    status_tail.sequence = 2;
    let context = status_tail.tail_context("hello");
    status_tail.workloads[0].tail = Some(
        trust::grid::sealed::seal(&key(3).public(), [0x77; 32], &context, "hello: counter=1")
            .expect("seal"),
    );
    let lease = Lease {
        sequence: 1,
        node: key(2).public(),
        expires: 1_790_000_000,
    };
    let enrollment = Enrollment {
        sequence: 1,
        farmer: key(1).public(),
        node: key(2).public(),
        enrolled: true,
    };

    fn pair<B: NamedSigner>(
        body: &B,
        signer: &SecretKey,
        names: [&'static str; 2],
    ) -> [(&'static str, &'static str, Vec<u8>); 2] {
        let code = B::KIND.code();
        let mut doc = body.to_document();
        doc.sign(signer).expect("sign");
        let with_code = |bytes: Vec<u8>| [vec![code], bytes].concat();
        [
            ("grid_documents", names[0], with_code(doc.encode())),
            ("grid_documents", names[1], with_code(body.encode())),
        ]
    }
    [
        pair(&farm, &key(1), ["seed-farm", "seed-farm-body"]),
        pair(&node, &key(2), ["seed-node", "seed-node-body"]),
        pair(&contract, &key(3), ["seed-contract", "seed-contract-body"]),
        pair(&approval, &key(4), ["seed-approval", "seed-approval-body"]),
        pair(
            &placement,
            &key(3),
            ["seed-placement", "seed-placement-body"],
        ),
        pair(
            &cancellation,
            &key(3),
            ["seed-cancellation", "seed-cancellation-body"],
        ),
        pair(&status, &key(2), ["seed-status", "seed-status-body"]),
        pair(
            &status_tail,
            &key(2),
            ["seed-status-tail", "seed-status-tail-body"],
        ),
        pair(&lease, &key(2), ["seed-lease", "seed-lease-body"]),
        pair(
            &enrollment,
            &key(1),
            ["seed-enrollment", "seed-enrollment-body"],
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
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
