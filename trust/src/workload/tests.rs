//! Workload manifests: round trip, every bound, and the whole workload check.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use super::*;
use crate::keys::SecretKey;
use crate::release::ReleaseManifest;

const ROOT: &[u8] = b"fake squashfs root image";

fn manifest() -> WorkloadManifest {
    WorkloadManifest {
        format: WorkloadManifest::FORMAT,
        name: "hello".into(),
        version: 1,
        root: ArtifactRef::of(ROOT),
        kernel: None,
        initrd: Some(ArtifactRef::of(b"initrd")),
        entrypoint: vec!["/bin/hello".into(), "--verbose".into()],
        env: vec![
            ("GREETING".into(), "hi".into()),
            ("EMPTY".into(), String::new()),
        ],
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
    }
}

fn key(n: u8) -> SecretKey {
    SecretKey::from_seed([n; 32])
}

fn signed(m: &WorkloadManifest, signer: u8) -> Vec<u8> {
    let mut doc = m.to_document();
    doc.sign(&key(signer)).expect("sign");
    doc.encode()
}

/// The field named by a decoding error.
fn field_of(err: &DecodeError) -> &'static str {
    match err {
        DecodeError::InvalidValue { field, .. }
        | DecodeError::OverLimit { field, .. }
        | DecodeError::Malformed { field, .. }
        | DecodeError::Truncated { field, .. } => field,
        DecodeError::TooLarge { what, .. }
        | DecodeError::BadMagic { what }
        | DecodeError::UnsupportedFormat { what, .. }
        | DecodeError::Trailing { what, .. } => what,
    }
}

/// Asserts that `change` makes the manifest refused, naming `field`.
#[track_caller]
fn refused(field: &str, change: impl FnOnce(&mut WorkloadManifest)) {
    let mut m = manifest();
    change(&mut m);
    match m.validate() {
        Ok(()) => panic!("accepted a manifest with a bad {field}: {m:?}"),
        Err(e) => assert_eq!(field_of(&e), field, "{e}"),
    }
}

/// Asserts that `change` keeps the manifest valid and round-tripping.
#[track_caller]
fn accepted(change: impl FnOnce(&mut WorkloadManifest)) {
    let mut m = manifest();
    change(&mut m);
    assert_eq!(WorkloadManifest::decode(&m.encode()), Ok(m));
}

#[test]
fn manifest_round_trip() {
    let m = manifest();
    assert_eq!(m.validate(), Ok(()));
    assert_eq!(WorkloadManifest::decode(&m.encode()), Ok(m.clone()));
    assert_eq!(m.encode()[0], 1, "format version first");
    let mut m = m;
    m.kernel = Some(ArtifactRef::of(b"kernel"));
    m.initrd = None;
    m.restart = RestartPolicy::Never;
    m.network = false;
    m.volumes.clear();
    m.env.clear();
    assert_eq!(WorkloadManifest::decode(&m.encode()), Ok(m));
}

#[test]
fn names_are_bounded() {
    accepted(|m| m.name = "a".repeat(32));
    accepted(|m| m.name = "web-2".into());
    refused("workload name", |m| m.name = String::new());
    refused("workload name", |m| m.name = "a".repeat(33));
    refused("workload name", |m| m.name = "Hello".into());
    refused("workload name", |m| m.name = "a_b".into());
    refused("workload name", |m| m.name = "a/b".into());
    refused("volume name", |m| m.volumes[0].name = String::new());
    refused("volume name", |m| m.volumes[0].name = "b".repeat(33));
    refused("volume name", |m| m.volumes[0].name = "Data".into());
}

#[test]
fn entrypoint_is_bounded() {
    accepted(|m| m.entrypoint = vec!["/bin/x".into(); 64]);
    accepted(|m| m.entrypoint[1] = "a".repeat(4096));
    refused("entrypoint count", |m| m.entrypoint.clear());
    refused("entrypoint count", |m| {
        m.entrypoint = vec!["/bin/x".into(); 65]
    });
    refused("entrypoint path", |m| m.entrypoint[0] = "hello".into());
    refused("entrypoint path", |m| m.entrypoint[0] = "/bin/../x".into());
    refused("entrypoint path", |m| m.entrypoint[0] = "/".into());
    refused("entrypoint path", |m| m.entrypoint[0] = "/bin/".into());
    refused("entrypoint argument", |m| {
        m.entrypoint[1] = "a".repeat(4097)
    });
    refused("entrypoint argument", |m| m.entrypoint[1] = "a\0b".into());
}

#[test]
fn env_is_bounded() {
    accepted(|m| {
        m.env = (0..256).map(|i| (format!("K{i}"), "v".into())).collect();
    });
    accepted(|m| m.env[0].1 = "v".repeat(4096));
    refused("env count", |m| {
        m.env = (0..257).map(|i| (format!("K{i}"), "v".into())).collect();
    });
    refused("env key", |m| m.env[0].0 = String::new());
    refused("env key", |m| m.env[0].0 = "A=B".into());
    refused("env key", |m| m.env[0].0 = "K".repeat(4097));
    refused("env key", |m| m.env[1].0 = m.env[0].0.clone());
    refused("env value", |m| m.env[0].1 = "v".repeat(4097));
    refused("env value", |m| m.env[0].1 = "\0".into());
}

#[test]
fn workdir_is_an_absolute_path() {
    accepted(|m| m.workdir = "/srv/app".into());
    refused("workdir", |m| m.workdir = "srv".into());
    refused("workdir", |m| m.workdir = String::new());
    refused("workdir", |m| m.workdir = "/srv/./app".into());
    refused("workdir", |m| m.workdir = format!("/{}", "a".repeat(4096)));
}

#[test]
fn resources_are_bounded() {
    accepted(|m| m.vcpus = 32);
    accepted(|m| m.memory_mib = 32);
    accepted(|m| m.memory_mib = 65536);
    refused("vcpus", |m| m.vcpus = 0);
    refused("vcpus", |m| m.vcpus = 33);
    refused("memory_mib", |m| m.memory_mib = 31);
    refused("memory_mib", |m| m.memory_mib = 65537);
}

#[test]
fn volumes_are_bounded() {
    let volume = |i: usize| VolumeSpec {
        name: format!("v{i}"),
        mount: format!("/mnt/v{i}"),
        size_mib: 1,
    };
    accepted(|m| m.volumes = (0..8).map(volume).collect());
    accepted(|m| m.volumes[0].size_mib = 1_048_576);
    refused("volume count", |m| m.volumes = (0..9).map(volume).collect());
    refused("volume mount", |m| m.volumes[0].mount = "data".into());
    refused("volume mount", |m| m.volumes[0].mount = "/".into());
    refused("volume mount", |m| {
        m.volumes[0].mount = "/data/../etc".into()
    });
    refused("volume mount", |m| m.volumes[0].mount = "/data//x".into());
    refused("volume mount", |m| m.volumes[0].mount = "a".repeat(4097));
    refused("volume size_mib", |m| m.volumes[0].size_mib = 0);
    refused("volume size_mib", |m| m.volumes[0].size_mib = 1_048_577);
    refused("volume name", |m| {
        m.volumes.push(VolumeSpec {
            mount: "/other".into(),
            ..m.volumes[0].clone()
        })
    });
    refused("volume mount", |m| {
        m.volumes.push(VolumeSpec {
            name: "other".into(),
            ..m.volumes[0].clone()
        })
    });
}

#[test]
fn malformed_bodies_are_refused() {
    let good = manifest().encode();

    let mut other_format = good.clone();
    other_format[0] = 2;
    assert_eq!(
        WorkloadManifest::decode(&other_format),
        Err(DecodeError::UnsupportedFormat {
            what: "workload manifest",
            found: 2,
            supported: 1
        })
    );

    let mut trailing = good.clone();
    trailing.push(0);
    assert!(matches!(
        WorkloadManifest::decode(&trailing),
        Err(DecodeError::Trailing { count: 1, .. })
    ));

    // The restart policy is the last byte; 2 is no policy.
    let mut restart = good.clone();
    *restart.last_mut().expect("not empty") = 2;
    assert!(matches!(
        WorkloadManifest::decode(&restart),
        Err(DecodeError::InvalidValue {
            field: "restart",
            ..
        })
    ));

    for len in 0..good.len() {
        assert!(
            WorkloadManifest::decode(&good[..len]).is_err(),
            "a {len}-byte prefix was accepted"
        );
    }

    let too_large = vec![0u8; MAX_WORKLOAD_MANIFEST_BYTES + 1];
    assert!(matches!(
        WorkloadManifest::decode(&too_large),
        Err(DecodeError::TooLarge { .. })
    ));
}

#[test]
fn verify_workload_accepts_a_good_manifest() {
    let file = signed(&manifest(), 1);
    let policy = SignerPolicy::single(key(1).public());
    assert_eq!(verify_workload(&file, &policy), Ok(manifest()));
    assert_eq!(manifest().root.check("root.img", ROOT), Ok(()));
    assert!(manifest().root.check("root.img", b"tampered").is_err());
}

#[test]
fn verify_workload_refuses_the_wrong_signer() {
    let file = signed(&manifest(), 2);
    let policy = SignerPolicy::single(key(1).public());
    assert!(matches!(
        verify_workload(&file, &policy),
        Err(WorkloadError::Verify(_))
    ));
}

#[test]
fn verify_workload_refuses_a_release_manifest() {
    // A release document signed by the trusted key must not pass as a workload.
    let release = ReleaseManifest {
        format: ReleaseManifest::FORMAT,
        version: 1,
        profile: "dev".into(),
        target: "x86_64-qemu".into(),
        kernel: ArtifactRef::of(b"k"),
        initrd: ArtifactRef::of(b"i"),
        cmdline: ArtifactRef::of(b"c"),
        build: crate::release::BuildInputs {
            kernel_package: "p".into(),
            kernel_version: "v".into(),
            packages: Vec::new(),
        },
    };
    let mut doc = release.to_document();
    doc.sign(&key(1)).expect("sign");
    let policy = SignerPolicy::single(key(1).public());
    assert_eq!(
        verify_workload(&doc.encode(), &policy),
        Err(WorkloadError::Verify(VerifyError::WrongKind {
            found: DocumentKind::ReleaseManifest,
            expected: DocumentKind::WorkloadManifest,
        }))
    );
}

#[test]
fn verify_workload_refuses_tampering_and_garbage() {
    let policy = SignerPolicy::single(key(1).public());
    let file = signed(&manifest(), 1);
    // Flip one bit in every byte position: nothing is accepted, nothing panics.
    for i in 0..file.len() {
        let mut bad = file.clone();
        bad[i] ^= 0x01;
        assert!(
            verify_workload(&bad, &policy).is_err(),
            "flip at byte {i} accepted"
        );
    }
    assert!(matches!(
        verify_workload(b"not a document", &policy),
        Err(WorkloadError::DecodeEnvelope(_))
    ));
}

#[test]
fn verify_workload_refuses_a_signed_invalid_body() {
    // A signer that signs nonsense does not get it past the body checks.
    let mut m = manifest();
    m.vcpus = 0;
    let file = signed(&m, 1);
    let policy = SignerPolicy::single(key(1).public());
    let err = verify_workload(&file, &policy).expect_err("vcpus 0 accepted");
    assert!(matches!(err, WorkloadError::DecodeManifest(_)), "{err:?}");
    assert!(err.to_string().contains("workload manifest"));
}

#[test]
fn restart_policy_names() {
    assert_eq!(RestartPolicy::OnFailure.name(), "on-failure");
    assert_eq!(RestartPolicy::Never.name(), "never");
}
