//! The generic path: steps in order, errors naming the kind, the same result for every kind.

use alloc::string::ToString;
use alloc::vec;

use super::*;
use crate::keys::SecretKey;
use crate::release::{ArtifactRef, ReleaseManifest};
use crate::workload::{RestartPolicy, WorkloadManifest};

fn key(n: u8) -> SecretKey {
    SecretKey::from_seed([n; 32])
}

/// A release document holding a workload body: enough to test kinds without naming every
/// field of a release manifest.
fn release_kind_file(signer: u8) -> Vec<u8> {
    let mut doc = SignedDocument::new(DocumentKind::ReleaseManifest, workload().encode());
    doc.sign(&key(signer)).expect("sign");
    doc.encode()
}

fn workload() -> WorkloadManifest {
    WorkloadManifest {
        format: WorkloadManifest::FORMAT,
        name: "hello".into(),
        version: 1,
        root: ArtifactRef::of(b"root"),
        kernel: None,
        initrd: None,
        entrypoint: vec!["/bin/hello".into()],
        env: vec![],
        workdir: "/".into(),
        vcpus: 1,
        memory_mib: 64,
        volumes: vec![],
        network: false,
        restart: RestartPolicy::Never,
    }
}

fn signed<B: SignedBody>(body: &B, signer: u8) -> Vec<u8> {
    let mut doc = body.to_document();
    doc.sign(&key(signer)).expect("sign");
    doc.encode()
}

#[test]
fn a_good_document_opens_with_what_verification_saw() {
    let policy = SignerPolicy::single(key(1).public());
    let opened = verify_document::<WorkloadManifest>(&signed(&workload(), 1), &policy).expect("ok");
    assert_eq!(opened.body, workload());
    assert_eq!(opened.document.kind(), DocumentKind::WorkloadManifest);
    assert_eq!(opened.verified.signers, vec!["signer".to_string()]);
    assert_eq!(
        opened.verified.body_digest,
        crate::Digest::of(&workload().encode())
    );
}

#[test]
fn the_trait_and_the_inherent_methods_agree() {
    let w = workload();
    assert_eq!(SignedBody::encode(&w), w.encode());
    assert_eq!(
        <WorkloadManifest as SignedBody>::decode(&w.encode()),
        Ok(w.clone())
    );
    assert_eq!(SignedBody::validate(&w), Ok(()));
    assert_eq!(SignedBody::to_document(&w), w.to_document());
    // A release body is refused by the trait's decoder as by the inherent one.
    assert_eq!(
        <ReleaseManifest as SignedBody>::decode(b"\x01\x2a"),
        ReleaseManifest::decode(b"\x01\x2a")
    );
    assert!(<ReleaseManifest as SignedBody>::decode(b"\x01\x2a").is_err());
}

#[test]
fn each_step_names_the_expected_kind() {
    let policy = SignerPolicy::single(key(1).public());
    let err = verify_document::<ReleaseManifest>(b"garbage", &policy).expect_err("envelope");
    assert!(matches!(err, DocumentError::DecodeEnvelope { .. }));
    assert_eq!(
        err.to_string(),
        "release manifest envelope could not be decoded"
    );

    let err =
        verify_document::<ReleaseManifest>(&signed(&workload(), 1), &policy).expect_err("kind");
    assert_eq!(
        err,
        DocumentError::Verify {
            expected: DocumentKind::ReleaseManifest,
            source: VerifyError::WrongKind {
                found: DocumentKind::WorkloadManifest,
                expected: DocumentKind::ReleaseManifest,
            },
        }
    );
    assert_eq!(err.to_string(), "release manifest signatures rejected");

    let mut bad = workload();
    bad.vcpus = 0;
    let err = verify_document::<WorkloadManifest>(&signed(&bad, 1), &policy).expect_err("body");
    assert!(matches!(
        err,
        DocumentError::DecodeBody {
            kind: DocumentKind::WorkloadManifest,
            source: DecodeError::InvalidValue { field: "vcpus", .. }
        }
    ));
    assert_eq!(err.to_string(), "workload manifest could not be decoded");
}

#[test]
fn signatures_are_checked_before_the_body_is_read() {
    // A body that would not decode, signed by the wrong key: the signature step refuses it, so
    // untrusted bodies never reach the body decoder.
    let mut doc = SignedDocument::new(DocumentKind::ReleaseManifest, b"\x01".to_vec());
    doc.sign(&key(2)).expect("sign");
    let err =
        verify_document::<ReleaseManifest>(&doc.encode(), &SignerPolicy::single(key(1).public()))
            .expect_err("wrong signer");
    assert!(matches!(
        err,
        DocumentError::Verify {
            source: VerifyError::MissingRequired { .. },
            ..
        }
    ));
}

#[test]
fn the_legacy_errors_keep_their_messages() {
    use crate::release::{verify_release, ReleaseError};
    use crate::workload::{verify_workload, WorkloadError};
    let policy = SignerPolicy::single(key(1).public());
    let err = verify_release(b"x", &policy).expect_err("envelope");
    assert!(matches!(err, ReleaseError::DecodeEnvelope(_)));
    assert_eq!(err.to_string(), "release envelope could not be decoded");
    let err = verify_workload(&release_kind_file(1), &policy).expect_err("kind");
    assert!(matches!(
        err,
        WorkloadError::Verify(VerifyError::WrongKind { .. })
    ));
    assert_eq!(err.to_string(), "workload signatures rejected");
}
