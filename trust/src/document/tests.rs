//! Signing and verification: policy semantics, tampering, replay across kinds.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use super::*;
use crate::policy::PolicyMember;

fn key(n: u8) -> SecretKey {
    SecretKey::from_seed([n; 32])
}

fn member(name: &str, n: u8, weight: u32, required: bool) -> PolicyMember {
    PolicyMember {
        name: name.to_string(),
        key: key(n).public(),
        weight,
        required,
    }
}

fn signed_by(kind: DocumentKind, body: &[u8], signers: &[u8]) -> SignedDocument {
    let mut doc = SignedDocument::new(kind, body.to_vec());
    for &n in signers {
        doc.sign(&key(n)).expect("sign");
    }
    doc
}

fn release_doc(signers: &[u8]) -> SignedDocument {
    signed_by(DocumentKind::ReleaseManifest, b"release body", signers)
}

/// alice(1, weight 1), bob(2, weight 1), carol(3, weight 2), threshold 3, nobody required.
fn team() -> SignerPolicy {
    SignerPolicy {
        threshold: 3,
        members: vec![
            member("alice", 1, 1, false),
            member("bob", 2, 1, false),
            member("carol", 3, 2, false),
        ],
    }
}

#[test]
fn domain_tags_and_codes_are_distinct() {
    let [a, b, ..] = DocumentKind::ALL;
    assert_ne!(a.domain_tag(), b.domain_tag());
    assert_ne!(a.code(), b.code());
    for (i, x) in DocumentKind::ALL.iter().enumerate() {
        for y in &DocumentKind::ALL[..i] {
            assert_ne!(x.domain_tag(), y.domain_tag());
            assert_ne!(x.code(), y.code());
            assert_ne!(x.name(), y.name());
            // No tag is a prefix of another, so tag ‖ digest never reads as another kind's.
            assert!(!x.domain_tag().starts_with(y.domain_tag()));
            assert!(!y.domain_tag().starts_with(x.domain_tag()));
        }
    }
    for kind in DocumentKind::ALL {
        assert_eq!(DocumentKind::from_code(kind.code()), Some(kind));
    }
    assert_eq!(DocumentKind::from_code(0), None);
    assert_eq!(a.signing_message(b"x").len(), a.domain_tag().len() + 32);
}

#[test]
fn single_signer_round_trip() {
    let doc = release_doc(&[1]);
    let back = SignedDocument::decode(&doc.encode()).expect("decode");
    assert_eq!(back, doc);
    assert_eq!(back.signers().collect::<Vec<_>>(), vec![key(1).public()]);
    let verified = back
        .verify(
            DocumentKind::ReleaseManifest,
            &SignerPolicy::single(key(1).public()),
        )
        .expect("verify");
    assert_eq!(verified.signers, vec![String::from("signer")]);
    assert_eq!(verified.weight, 1);
    assert_eq!(verified.body_digest, Digest::of(b"release body"));
    assert!(back.encode().starts_with(b"NULLOSD\x01\x01"));
}

#[test]
fn wrong_key_fails() {
    let doc = release_doc(&[2]);
    let err = doc
        .verify(
            DocumentKind::ReleaseManifest,
            &SignerPolicy::single(key(1).public()),
        )
        .expect_err("wrong key");
    assert_eq!(err.to_string(), "required member 'signer' did not sign");
}

#[test]
fn exactly_threshold_passes_one_below_fails() {
    // carol (2) + alice (1) = 3 = threshold.
    let ok = release_doc(&[3, 1])
        .verify(DocumentKind::ReleaseManifest, &team())
        .expect("= threshold");
    assert_eq!(ok.weight, 3);
    assert_eq!(
        ok.signers,
        vec![String::from("alice"), String::from("carol")]
    );
    // carol alone = 2 < 3.
    let err = release_doc(&[3])
        .verify(DocumentKind::ReleaseManifest, &team())
        .expect_err("below");
    assert_eq!(
        err,
        VerifyError::BelowThreshold {
            weight: 2,
            threshold: 3,
            valid_signers: vec!["carol".to_string()]
        }
    );
    assert_eq!(
        err.to_string(),
        "signed weight 2 is below threshold 3 (valid signers: carol)"
    );
    // Everybody: 4 >= 3.
    assert_eq!(
        release_doc(&[1, 2, 3])
            .verify(DocumentKind::ReleaseManifest, &team())
            .map(|v| v.weight),
        Ok(4)
    );
    let none = release_doc(&[])
        .verify(DocumentKind::ReleaseManifest, &team())
        .expect_err("unsigned");
    assert_eq!(
        none.to_string(),
        "signed weight 0 is below threshold 3 (valid signers: none)"
    );
}

#[test]
fn duplicate_signatures_count_once() {
    let mut doc = release_doc(&[3]);
    let sig = doc.raw_signature(0);
    doc.push_raw(key(3).public(), sig);
    doc.push_raw(key(3).public(), sig);
    let doc = SignedDocument::decode(&doc.encode()).expect("duplicates are well-formed");
    let err = doc
        .verify(DocumentKind::ReleaseManifest, &team())
        .expect_err("carol counted once");
    assert!(
        matches!(err, VerifyError::BelowThreshold { weight: 2, .. }),
        "{err}"
    );
    let mut with_bob = doc.clone();
    with_bob.sign(&key(2)).expect("bob co-signs");
    let ok = with_bob
        .verify(DocumentKind::ReleaseManifest, &team())
        .expect("3 with bob");
    assert_eq!((ok.weight, ok.duplicate_signatures), (3, 2));
}

#[test]
fn re_signing_with_the_same_key_is_an_error() {
    let mut doc = release_doc(&[1]);
    assert_eq!(
        doc.sign(&key(1)),
        Err(SignError::AlreadySigned {
            signer: key(1).public()
        })
    );
    assert_eq!(doc.signers().count(), 1);
}

#[test]
fn missing_required_member_fails_even_above_threshold() {
    let mut policy = team();
    policy.members.push(member("release-lead", 4, 0, true));
    let err = release_doc(&[1, 2, 3])
        .verify(DocumentKind::ReleaseManifest, &policy)
        .expect_err("lead");
    assert_eq!(
        err.to_string(),
        "required member 'release-lead' did not sign"
    );
    let ok = release_doc(&[1, 2, 3, 4])
        .verify(DocumentKind::ReleaseManifest, &policy)
        .expect("lead signed");
    assert_eq!(ok.weight, 4);
    policy.members[0].required = true;
    let err = release_doc(&[3])
        .verify(DocumentKind::ReleaseManifest, &policy)
        .expect_err("two missing");
    assert_eq!(
        err.to_string(),
        "required members 'alice', 'release-lead' did not sign"
    );
}

#[test]
fn unknown_signers_add_nothing() {
    let doc = release_doc(&[3, 9, 10, 11]);
    let err = doc
        .verify(DocumentKind::ReleaseManifest, &team())
        .expect_err("unknowns add nothing");
    assert!(
        matches!(err, VerifyError::BelowThreshold { weight: 2, .. }),
        "{err}"
    );
    let ok = release_doc(&[3, 9, 1])
        .verify(DocumentKind::ReleaseManifest, &team())
        .expect("ok");
    assert_eq!(ok.unknown_signers, 1);
}

#[test]
fn bad_signatures_are_all_named() {
    let mut doc = release_doc(&[]);
    doc.push_raw(key(1).public(), [7; 64]);
    doc.push_raw(key(2).public(), release_doc(&[2]).raw_signature(0));
    doc.push_raw(key(3).public(), [9; 64]);
    // bob's signature is valid for the same body, alice's and carol's are junk.
    let err = doc
        .verify(DocumentKind::ReleaseManifest, &team())
        .expect_err("bad sigs");
    let VerifyError::BadSignatures {
        failed,
        weight,
        threshold,
        ..
    } = &err
    else {
        panic!("unexpected {err}");
    };
    assert_eq!(
        failed.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["alice", "carol"]
    );
    assert_eq!((*weight, *threshold), (1, 3));
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "signatures by members 'alice' ({}), 'carol' ({}) do not verify; signed weight 1, threshold 3",
            key(1).public().short(),
            key(3).public().short()
        )),
        "{text}"
    );
    // One bad signature, singular wording; a missing required member is reported too.
    let mut policy = SignerPolicy::single(key(1).public());
    policy.members.push(member("lead", 5, 0, true));
    let mut one = release_doc(&[]);
    one.push_raw(key(1).public(), [7; 64]);
    let text = one
        .verify(DocumentKind::ReleaseManifest, &policy)
        .expect_err("bad")
        .to_string();
    assert_eq!(
        text,
        format!(
            "signature by member 'signer' ({}) does not verify; signed weight 0, threshold 1; required member 'lead' did not sign",
            key(1).public().short()
        )
    );
    assert!(!text.contains('\n'));
}

#[test]
fn a_bad_extra_signature_does_not_spoil_a_met_policy() {
    let mut doc = release_doc(&[1, 3]);
    doc.push_raw(key(2).public(), [5; 64]);
    let ok = doc
        .verify(DocumentKind::ReleaseManifest, &team())
        .expect("policy met");
    assert_eq!(ok.failed.len(), 1);
    assert_eq!(ok.failed[0].name, "bob");
}

#[test]
fn cross_kind_replay_is_refused() {
    let release = release_doc(&[1]);
    let policy = SignerPolicy::single(key(1).public());
    let err = release
        .verify(DocumentKind::WorkloadManifest, &policy)
        .expect_err("kind");
    assert_eq!(
        err.to_string(),
        "document is a release manifest, expected a workload manifest"
    );
    // Relabel the file as a workload manifest: same body, same signature, other domain tag.
    let mut bytes = release.encode();
    bytes[8] = DocumentKind::WorkloadManifest.code();
    let relabeled = SignedDocument::decode(&bytes).expect("well-formed");
    let err = relabeled
        .verify(DocumentKind::WorkloadManifest, &policy)
        .expect_err("replay");
    assert!(matches!(err, VerifyError::BadSignatures { .. }), "{err}");
    let err = signed_by(DocumentKind::WorkloadManifest, b"w", &[1])
        .verify(DocumentKind::ReleaseManifest, &policy)
        .expect_err("kind");
    assert_eq!(
        err.to_string(),
        "document is a workload manifest, expected a release manifest"
    );
}

#[test]
fn every_byte_flip_of_a_co_signed_document_is_rejected() {
    // Both signatures are needed (alice 1 + bob 1 = threshold 2), so a flip anywhere, in the
    // body, either key or either signature, must break verification.
    let mut policy = team();
    policy.threshold = 2;
    policy.members.truncate(2);
    let good = release_doc(&[1, 2]).encode();
    assert!(SignedDocument::decode(&good)
        .is_ok_and(|d| d.verify(DocumentKind::ReleaseManifest, &policy).is_ok()));
    for i in 0..good.len() {
        let mut bytes = good.clone();
        bytes[i] ^= 0xff;
        let accepted = SignedDocument::decode(&bytes)
            .ok()
            .and_then(|d| d.verify(DocumentKind::ReleaseManifest, &policy).ok());
        assert!(accepted.is_none(), "flip of byte {i} was accepted");
    }
}

#[test]
fn invalid_policy_fails_closed() {
    let mut policy = SignerPolicy::single(key(1).public());
    policy.threshold = 0;
    let err = release_doc(&[])
        .verify(DocumentKind::ReleaseManifest, &policy)
        .expect_err("threshold 0");
    assert_eq!(err, VerifyError::InvalidPolicy(PolicyError::ZeroThreshold));
}

#[test]
fn signing_limits() {
    let mut big = SignedDocument::new(DocumentKind::ReleaseManifest, vec![0; MAX_BODY_BYTES + 1]);
    assert_eq!(
        big.sign(&key(1)),
        Err(SignError::BodyTooLarge {
            len: MAX_BODY_BYTES + 1,
            max: MAX_BODY_BYTES
        })
    );
    let mut doc = release_doc(&[]);
    for n in 0..MAX_SIGNATURES {
        doc.sign(&key(u8::try_from(n).expect("small") + 1))
            .expect("room left");
    }
    assert_eq!(
        doc.sign(&key(200)),
        Err(SignError::TooManySignatures {
            max: MAX_SIGNATURES
        })
    );
    let full = SignedDocument::decode(&doc.encode()).expect("a full document decodes");
    assert_eq!(full.signers().count(), MAX_SIGNATURES);
}

#[test]
fn decode_errors_name_the_place() {
    let good = release_doc(&[1]).encode();
    let show = |bytes: &[u8]| SignedDocument::decode(bytes).expect_err("bad").to_string();
    assert_eq!(show(b"NULLO"), "truncated at byte 5 while reading magic");
    assert_eq!(
        show(b"PK\x03\x04zipfile"),
        "not a signed document: bad magic bytes"
    );
    assert_eq!(
        show(&good[..good.len() - 3]),
        format!(
            "truncated at byte {} while reading signature",
            good.len() - 3
        )
    );
    let mut trailing = good.clone();
    trailing.extend_from_slice(&[0, 0, 0]);
    assert_eq!(show(&trailing), "trailing 3 bytes after signed document");
    let mut kind = good.clone();
    kind[8] = 0x7f; // no kind has this code (1 to 10 are taken)
    assert_eq!(show(&kind), "invalid kind at byte 8: unknown document kind");
    let mut count = good.clone();
    let count_at = 8 + 1 + 1 + b"release body".len();
    count[count_at] = 33;
    assert_eq!(
        show(&count),
        format!("signature count at byte {count_at} has length 33, over the limit of 32")
    );
    let mut key_bytes = good.clone();
    key_bytes[count_at + 1..count_at + 33].copy_from_slice(&[0; 32]);
    key_bytes[count_at + 1] = 1; // the identity point: weak
    assert_eq!(
        show(&key_bytes),
        format!(
            "invalid signer key at byte {}: not a usable ed25519 public key",
            count_at + 1
        )
    );
    let huge = vec![0u8; MAX_DOCUMENT_BYTES + 1];
    assert_eq!(
        show(&huge),
        format!(
            "signed document is {} bytes, over the {MAX_DOCUMENT_BYTES}-byte limit",
            MAX_DOCUMENT_BYTES + 1
        )
    );
}
