//! Release manifests and the whole release check.

use alloc::format;
use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

use super::*;
use crate::keys::SecretKey;
use crate::policy::PolicyMember;

const KERNEL: &[u8] = b"fake bzImage";
const INITRD: &[u8] = b"fake initramfs";
const CMDLINE: &[u8] = b"console=ttyS0 nullos.loglevel=info";

fn manifest() -> ReleaseManifest {
    ReleaseManifest {
        format: ReleaseManifest::FORMAT,
        version: 42,
        profile: "dev".into(),
        target: "x86_64-qemu".into(),
        kernel: ArtifactRef::of(KERNEL),
        initrd: ArtifactRef::of(INITRD),
        cmdline: ArtifactRef::of(CMDLINE),
        build: BuildInputs {
            kernel_package: "linux-image-6.1.0-56-cloud-amd64".into(),
            kernel_version: "6.1.0-56-cloud-amd64".into(),
            packages: vec![BuildPackage {
                name: "e2fsprogs".into(),
                version: "1.47.0-2+b2".into(),
                sha256: [0xfe; 32],
            }],
        },
    }
}

fn key(n: u8) -> SecretKey {
    SecretKey::from_seed([n; 32])
}

fn signed_release(signers: &[u8]) -> Vec<u8> {
    let mut doc = manifest().to_document();
    for &n in signers {
        doc.sign(&key(n)).expect("sign");
    }
    doc.encode()
}

#[test]
fn manifest_round_trip() {
    let m = manifest();
    assert_eq!(m.validate(), Ok(()));
    assert_eq!(ReleaseManifest::decode(&m.encode()), Ok(m.clone()));
    assert_eq!(m.encode()[0], 2, "format version first");
    assert_eq!(m.check_artifacts(KERNEL, INITRD, CMDLINE), Ok(()));
}

#[test]
fn build_packages_are_bounded() {
    let mut m = manifest();
    let package = m.build.packages[0].clone();
    m.build.packages = vec![package.clone(); MAX_BUILD_PACKAGES];
    assert_eq!(ReleaseManifest::decode(&m.encode()), Ok(m.clone()));
    m.build.packages.push(package.clone());
    assert!(matches!(
        m.validate(),
        Err(DecodeError::OverLimit {
            field: "package count",
            ..
        })
    ));
    m.build.packages = vec![BuildPackage {
        version: "1".repeat(MAX_PACKAGE_STRING_BYTES + 1),
        ..package
    }];
    assert!(matches!(
        m.validate(),
        Err(DecodeError::OverLimit {
            field: "package version",
            ..
        })
    ));
}

#[test]
fn verify_release_accepts_a_good_release() {
    let file = signed_release(&[1]);
    let (doc, release) = verify_release(&file, &SignerPolicy::single(key(1).public())).expect("ok");
    assert_eq!(release, manifest());
    assert_eq!(doc.kind(), DocumentKind::ReleaseManifest);
}

#[test]
fn verify_release_with_co_signers() {
    let policy = SignerPolicy {
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
        ],
    };
    // Co-signing a decoded file, as a second person would.
    let first = signed_release(&[1]);
    let mut doc = SignedDocument::decode(&first).expect("decode");
    let err = verify_release(&doc.encode(), &policy).expect_err("one of two");
    assert!(matches!(
        err,
        ReleaseError::Verify(VerifyError::BelowThreshold { weight: 1, .. })
    ));
    doc.sign(&key(2)).expect("co-sign");
    assert!(verify_release(&doc.encode(), &policy).is_ok());
}

#[test]
fn every_single_byte_change_of_a_signed_release_is_rejected() {
    let policy = SignerPolicy::single(key(1).public());
    let good = signed_release(&[1]);
    assert!(verify_release(&good, &policy).is_ok());
    for i in 0..good.len() {
        // Two patterns per byte keep this quick in debug builds (each try is an ed25519 verify).
        for pattern in [0x01u8, 0xa4] {
            let mut bytes = good.clone();
            bytes[i] ^= pattern;
            assert!(
                verify_release(&bytes, &policy).is_err(),
                "byte {i} ^ {pattern:#x} was accepted"
            );
        }
    }
}

#[test]
fn wrong_kind_and_wrong_key_are_named() {
    let workload = {
        let mut d = SignedDocument::new(DocumentKind::WorkloadManifest, manifest().encode());
        d.sign(&key(1)).expect("sign");
        d.encode()
    };
    let err = verify_release(&workload, &SignerPolicy::single(key(1).public())).expect_err("kind");
    assert_eq!(
        err,
        ReleaseError::Verify(VerifyError::WrongKind {
            found: DocumentKind::WorkloadManifest,
            expected: DocumentKind::ReleaseManifest
        })
    );
    let err = verify_release(
        &signed_release(&[2]),
        &SignerPolicy::single(key(1).public()),
    )
    .expect_err("key");
    assert!(matches!(
        err,
        ReleaseError::Verify(VerifyError::MissingRequired { .. })
    ));
}

#[test]
fn a_signed_body_that_is_not_a_manifest_is_refused() {
    let mut doc = SignedDocument::new(DocumentKind::ReleaseManifest, b"\x02\x2a".to_vec());
    doc.sign(&key(1)).expect("sign");
    let err =
        verify_release(&doc.encode(), &SignerPolicy::single(key(1).public())).expect_err("body");
    assert_eq!(
        err,
        ReleaseError::DecodeManifest(DecodeError::Truncated {
            at: 2,
            field: "profile"
        })
    );
    assert_eq!(err.to_string(), "release manifest could not be decoded");
}

#[test]
fn manifest_decode_refusals() {
    let good = manifest().encode();
    for cut in 0..good.len() {
        assert!(
            ReleaseManifest::decode(&good[..cut]).is_err(),
            "truncated at {cut} accepted"
        );
    }
    let mut trailing = good.clone();
    trailing.push(7);
    assert_eq!(
        ReleaseManifest::decode(&trailing).map_err(|e| e.to_string()),
        Err("trailing 1 bytes after release manifest".to_string())
    );
    // Format 1 had no `packages`: an old manifest is refused by its version, not misread.
    let mut old = good.clone();
    old[0] = 1;
    assert_eq!(
        ReleaseManifest::decode(&old).map_err(|e| e.to_string()),
        Err(
            "release manifest format version 1 is not supported (this build reads version 2)"
                .to_string()
        )
    );
    let mut future = good.clone();
    future[0] = 3;
    assert_eq!(
        ReleaseManifest::decode(&future).map_err(|e| e.to_string()),
        Err(
            "release manifest format version 3 is not supported (this build reads version 2)"
                .to_string()
        )
    );
    let mut long = manifest();
    long.profile = "p".repeat(65);
    assert_eq!(
        long.validate().map_err(|e| e.to_string()),
        Err("profile at byte 2 has length 65, over the limit of 64".to_string())
    );
    let mut bad_utf8 = manifest();
    bad_utf8.target = "ab".into();
    let mut bytes = bad_utf8.encode();
    let at = bytes.iter().position(|&b| b == b'a').expect("target text");
    bytes[at] = 0xff;
    assert!(matches!(
        ReleaseManifest::decode(&bytes),
        Err(DecodeError::Malformed {
            field: "target",
            reason: "text is not valid UTF-8",
            ..
        })
    ));
}

#[test]
fn artifact_mismatch_names_everything() {
    let m = manifest();
    let err = m
        .check_artifacts(KERNEL, b"other initrd", CMDLINE)
        .expect_err("initrd differs");
    assert_eq!(err.artifact, "initrd");
    assert_eq!(err.expected, ArtifactRef::of(INITRD));
    assert_eq!(err.actual, ArtifactRef::of(b"other initrd"));
    assert_eq!(
        err.to_string(),
        format!(
            "initrd does not match the release: expected 14 bytes, blake3 {}, found 12 bytes, blake3 {}",
            Digest::of(INITRD),
            Digest::of(b"other initrd")
        )
    );
    assert!(m.kernel.check("kernel", b"").is_err());
}
