//! Property tests: every decoder of untrusted input returns `Err` on garbage, truncations and
//! oversized input, never panics, and accepts only what its encoder would write.

use proptest::prelude::*;
use trust::limits::{
    MAX_DOCUMENT_BYTES, MAX_KEY_TEXT_BYTES, MAX_POLICY_BYTES, MAX_POLICY_TEXT_BYTES,
    MAX_RELEASE_MANIFEST_BYTES,
};
use trust::{
    ArtifactRef, BuildInputs, Digest, DocumentKind, PolicyMember, PublicKey, ReleaseManifest,
    SecretKey, SignedDocument, SignerPolicy, DOCUMENT_MAGIC,
};

fn manifest() -> impl Strategy<Value = ReleaseManifest> {
    (
        any::<u64>(),
        "\\PC{0,16}",
        "[a-z0-9_-]{0,64}",
        any::<([u8; 32], u64, [u8; 32], u64, [u8; 32], u64)>(),
        "\\PC{0,32}",
        "[a-z0-9.+~-]{0,128}",
    )
        .prop_map(
            |(version, profile, target, (kd, ks, id, is, cd, cs), package, kver)| ReleaseManifest {
                format: ReleaseManifest::FORMAT,
                version,
                profile,
                target,
                kernel: ArtifactRef {
                    digest: Digest(kd),
                    size: ks,
                },
                initrd: ArtifactRef {
                    digest: Digest(id),
                    size: is,
                },
                cmdline: ArtifactRef {
                    digest: Digest(cd),
                    size: cs,
                },
                build: BuildInputs {
                    kernel_package: package,
                    kernel_version: kver,
                    packages: Vec::new(),
                },
            },
        )
}

fn policy() -> impl Strategy<Value = SignerPolicy> {
    prop::collection::vec((0u32..5, any::<bool>()), 1..6).prop_flat_map(|members| {
        let total: u32 = members.iter().map(|(w, _)| w).sum::<u32>().max(1);
        let members: Vec<PolicyMember> = members
            .into_iter()
            .enumerate()
            .map(|(i, (weight, required))| PolicyMember {
                name: format!("member-{i}"),
                key: SecretKey::from_seed([u8::try_from(i).unwrap() + 1; 32]).public(),
                // At least one unit of weight overall, so any threshold up to `total` is reachable.
                weight: if i == 0 { weight.max(1) } else { weight },
                required,
            })
            .collect();
        (1..=total, Just(members))
            .prop_map(|(threshold, members)| SignerPolicy { threshold, members })
    })
}

fn document() -> impl Strategy<Value = SignedDocument> {
    (
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..300),
        0u8..4,
    )
        .prop_map(|(release, body, signers)| {
            let kind = if release {
                DocumentKind::ReleaseManifest
            } else {
                DocumentKind::WorkloadManifest
            };
            let mut doc = SignedDocument::new(kind, body);
            for n in 0..signers {
                doc.sign(&SecretKey::from_seed([n; 32])).unwrap();
            }
            doc
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_and_only_canonical_input_decodes(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(doc) = SignedDocument::decode(&bytes) {
            prop_assert_eq!(doc.encode(), bytes.clone());
        }
        if let Ok(m) = ReleaseManifest::decode(&bytes) {
            prop_assert_eq!(m.encode(), bytes.clone());
        }
        if let Ok(p) = SignerPolicy::decode(&bytes) {
            prop_assert_eq!(p.encode(), bytes.clone());
        }
        let text = String::from_utf8_lossy(&bytes);
        let _ = SignerPolicy::from_text(&text);
        let _ = PublicKey::from_text(&text);
        let _ = SecretKey::from_text(&text);
        let _ = Digest::from_hex(&text);
    }

    #[test]
    fn arbitrary_bytes_after_the_magic_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let mut file = DOCUMENT_MAGIC.to_vec();
        file.extend_from_slice(&bytes);
        if let Ok(doc) = SignedDocument::decode(&file) {
            prop_assert_eq!(doc.encode(), file);
        }
    }

    #[test]
    fn arbitrary_text_lines_never_panic(lines in prop::collection::vec("(threshold|member|nullos-ed25519|weight=|required|#| |[0-9a-f]{1,64}|\\PC{0,8})*", 0..8)) {
        let policy = format!("nullos-signer-policy v1\n{}", lines.join("\n"));
        let _ = SignerPolicy::from_text(&policy);
        let secret = format!("nullos-ed25519-secret v1\n{}", lines.join("\n"));
        let _ = SecretKey::from_text(&secret);
        for line in &lines {
            let _ = PublicKey::from_text(line);
        }
    }

    #[test]
    fn manifests_round_trip_and_every_truncation_fails(m in manifest()) {
        let bytes = m.encode();
        prop_assert_eq!(ReleaseManifest::decode(&bytes), Ok(m));
        for cut in 0..bytes.len() {
            prop_assert!(ReleaseManifest::decode(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn policies_round_trip_and_every_truncation_fails(p in policy()) {
        let bytes = p.encode();
        prop_assert_eq!(SignerPolicy::decode(&bytes), Ok(p.clone()));
        prop_assert_eq!(SignerPolicy::from_text(&p.to_text()), Ok(p.clone()));
        for cut in 0..bytes.len() {
            prop_assert!(SignerPolicy::decode(&bytes[..cut]).is_err());
        }
        let text = p.to_text();
        // Cutting the text inside a line breaks it (every member line ends in its key); cutting
        // at a line boundary may leave a shorter valid policy, which is fine for a text format.
        let inside_a_line =
            |c: usize| !text[..c].ends_with('\n') && !text[c..].starts_with('\n');
        for cut in (0..text.len()).filter(|&c| text.is_char_boundary(c) && inside_a_line(c)) {
            if let Ok(shorter) = SignerPolicy::from_text(&text[..cut]) {
                prop_assert!(shorter.members.len() < p.members.len(), "cut at {} accepted", cut);
            }
        }
    }

    #[test]
    fn documents_round_trip_and_every_truncation_fails(doc in document()) {
        let bytes = doc.encode();
        prop_assert_eq!(SignedDocument::decode(&bytes), Ok(doc));
        for cut in 0..bytes.len() {
            prop_assert!(SignedDocument::decode(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn oversized_inputs_are_refused(extra in 1usize..4096, fill in any::<u8>()) {
        let doc = vec![fill; MAX_DOCUMENT_BYTES + extra];
        prop_assert!(SignedDocument::decode(&doc).is_err());
        let mut magic_doc = DOCUMENT_MAGIC.to_vec();
        magic_doc.resize(MAX_DOCUMENT_BYTES + extra, fill);
        prop_assert!(SignedDocument::decode(&magic_doc).is_err());
        prop_assert!(ReleaseManifest::decode(&vec![fill; MAX_RELEASE_MANIFEST_BYTES + extra]).is_err());
        prop_assert!(SignerPolicy::decode(&vec![fill; MAX_POLICY_BYTES + extra]).is_err());
        let text = "# padding\n".repeat((MAX_POLICY_TEXT_BYTES + extra) / 10 + 1);
        let policy_text = format!("nullos-signer-policy v1\n{text}");
        prop_assert!(SignerPolicy::from_text(&policy_text).is_err());
        let key_text = " ".repeat(MAX_KEY_TEXT_BYTES + extra);
        prop_assert!(PublicKey::from_text(&key_text).is_err());
        let secret_text = format!("nullos-ed25519-secret v1\n{key_text}");
        prop_assert!(SecretKey::from_text(&secret_text).is_err());
    }

    #[test]
    fn oversized_fields_are_refused(len in 65usize..300) {
        let mut m = ReleaseManifest::decode(&valid_manifest_bytes()).unwrap();
        m.target = "t".repeat(len);
        prop_assert!(ReleaseManifest::decode(&m.encode()).is_err());
        let mut p = SignerPolicy::single(SecretKey::from_seed([1; 32]).public());
        p.members[0].name = "n".repeat(len);
        prop_assert!(SignerPolicy::decode(&p.encode()).is_err());
        let doc = SignedDocument::new(DocumentKind::ReleaseManifest, vec![0; 64 * 1024 + len]);
        prop_assert!(SignedDocument::decode(&doc.encode()).is_err());
    }
}

fn valid_manifest_bytes() -> Vec<u8> {
    ReleaseManifest {
        format: ReleaseManifest::FORMAT,
        version: 1,
        profile: "dev".into(),
        target: "x86_64-qemu".into(),
        kernel: ArtifactRef::of(b"k"),
        initrd: ArtifactRef::of(b"i"),
        cmdline: ArtifactRef::of(b"c"),
        build: BuildInputs {
            kernel_package: "p".into(),
            kernel_version: "v".into(),
            packages: Vec::new(),
        },
    }
    .encode()
}

/// Overlong (non-canonical) varints are not a second spelling of the same document.
#[test]
fn non_canonical_varints_are_refused() {
    let good = valid_manifest_bytes();
    // The format version 1 written as a two-byte varint.
    let mut overlong = vec![0x81, 0x00];
    overlong.extend_from_slice(&good[1..]);
    assert!(ReleaseManifest::decode(&overlong).is_err());
}
