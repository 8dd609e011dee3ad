//! Policy validation, text and binary formats.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;

use super::*;
use crate::keys::SecretKey;

fn key(n: u8) -> PublicKey {
    SecretKey::from_seed([n; 32]).public()
}

fn sample() -> SignerPolicy {
    SignerPolicy {
        threshold: 2,
        members: vec![
            PolicyMember {
                name: "alice".into(),
                key: key(1),
                weight: 1,
                required: true,
            },
            PolicyMember {
                name: "bob".into(),
                key: key(2),
                weight: 1,
                required: false,
            },
            PolicyMember {
                name: "ci@build-1".into(),
                key: key(3),
                weight: 0,
                required: false,
            },
        ],
    }
}

#[test]
fn text_round_trip_and_exact_shape() {
    let policy = sample();
    let text = policy.to_text();
    assert_eq!(
        text,
        format!(
            "nullos-signer-policy v1\nthreshold 2\nmember alice weight=1 required {}\nmember bob weight=1 {}\nmember ci@build-1 weight=0 {}\n",
            key(1),
            key(2),
            key(3)
        )
    );
    assert_eq!(SignerPolicy::from_text(&text), Ok(policy));
}

#[test]
fn text_is_lenient_where_documented() {
    let text = format!(
        "nullos-signer-policy v1\r\n\r\n# core team\r\n  threshold   1\r\nmember alice required weight=3 {}\r\nmember bob {}\r\n",
        key(1),
        key(2).to_text().to_uppercase().replace("NULLOS-ED25519", "nullos-ed25519")
    );
    let policy = SignerPolicy::from_text(&text).expect("lenient text");
    assert_eq!(policy.threshold, 1);
    assert_eq!(
        (policy.members[0].weight, policy.members[0].required),
        (3, true)
    );
    assert_eq!(
        (policy.members[1].weight, policy.members[1].required),
        (1, false)
    );
    assert_eq!(policy.members[1].key, key(2));
}

#[test]
fn malformed_text_is_refused_with_line_numbers() {
    let k = key(1).to_text();
    let cases: [(String, &str); 12] = [
        (
            String::new(),
            "signer policy must start with 'nullos-signer-policy v1'",
        ),
        (format!("threshold 1\nmember a {k}\n"), "must start with"),
        (
            format!("nullos-signer-policy v1\nmember a {k}\n"),
            "signer policy has no 'threshold' line",
        ),
        (
            format!("nullos-signer-policy v1\nthreshold one\nmember a {k}\n"),
            "signer policy line 2: expected 'threshold <number>'",
        ),
        (
            "nullos-signer-policy v1\nthreshold 1 2\n".to_string(),
            "signer policy line 2: expected 'threshold <number>'",
        ),
        (
            "nullos-signer-policy v1\nthreshold 1\nthreshold 1\n".to_string(),
            "signer policy line 3: threshold given twice",
        ),
        (
            format!("nullos-signer-policy v1\nthreshold 1\nmembre a {k}\n"),
            "signer policy line 3: unknown directive 'membre'",
        ),
        (
            format!("nullos-signer-policy v1\nthreshold 1\nmember {k}\n"),
            "signer policy line 3: expected 'member <name>",
        ),
        (
            format!("nullos-signer-policy v1\nthreshold 1\nmember a weight=x {k}\n"),
            "signer policy line 3: bad member option 'weight=x'",
        ),
        (
            format!("nullos-signer-policy v1\nthreshold 1\nmember a required required {k}\n"),
            "line 3: bad member option 'required'",
        ),
        (
            format!(
                "nullos-signer-policy v1\nthreshold 1\nmember a {}\n",
                &k[..k.len() - 1]
            ),
            "signer policy line 3: member key is invalid",
        ),
        (
            format!("nullos-signer-policy v1\nthreshold 3\nmember a weight=2 {k}\n"),
            "signer policy is invalid",
        ),
    ];
    for (text, message) in cases {
        let err = SignerPolicy::from_text(&text).expect_err(&text);
        assert!(
            err.to_string().contains(message),
            "'{err}' should contain '{message}'"
        );
    }
    let huge = "#".repeat(MAX_POLICY_TEXT_BYTES + 1);
    assert!(matches!(
        SignerPolicy::from_text(&huge),
        Err(PolicyTextError::TooLarge { .. })
    ));
}

#[test]
fn validate_catches_unusable_policies() {
    let check = |edit: fn(&mut SignerPolicy)| {
        let mut p = sample();
        edit(&mut p);
        p.validate()
    };
    assert_eq!(check(|_| {}), Ok(()));
    assert_eq!(check(|p| p.members.clear()), Err(PolicyError::NoMembers));
    assert_eq!(check(|p| p.threshold = 0), Err(PolicyError::ZeroThreshold));
    assert_eq!(
        check(|p| p.threshold = 3),
        Err(PolicyError::Unreachable {
            threshold: 3,
            total: 2
        })
    );
    assert_eq!(
        check(|p| p.members[1].name = "alice".into()),
        Err(PolicyError::DuplicateName {
            name: "alice".into()
        })
    );
    assert_eq!(
        check(|p| p.members[2].key = p.members[0].key),
        Err(PolicyError::DuplicateKey {
            first: "alice".into(),
            second: "ci@build-1".into(),
            key: key(1).short()
        })
    );
    for bad in ["", "has space", "ünï", &"x".repeat(65)] {
        let mut p = sample();
        p.members[0].name = bad.to_string();
        assert!(
            matches!(p.validate(), Err(PolicyError::BadName { .. })),
            "{bad:?}"
        );
    }
    let mut big = sample();
    big.threshold = 1;
    big.members = (0..=MAX_POLICY_MEMBERS)
        .map(|i| PolicyMember {
            name: format!("m{i}"),
            key: key(u8::try_from(i).expect("small") + 1),
            weight: 1,
            required: false,
        })
        .collect();
    assert_eq!(
        big.validate(),
        Err(PolicyError::TooManyMembers { count: 33, max: 32 })
    );
    // Weights are summed without overflow.
    let mut heavy = sample();
    heavy.members.iter_mut().for_each(|m| m.weight = u32::MAX);
    heavy.threshold = u32::MAX;
    assert_eq!(heavy.validate(), Ok(()));
}

#[test]
fn single_is_one_required_key() {
    let p = SignerPolicy::single(key(1));
    assert_eq!(p.validate(), Ok(()));
    assert_eq!(p.threshold, 1);
    assert!(p.members[0].required);
    assert_eq!(p.member(&key(1)).map(|m| m.name.as_str()), Some("signer"));
    assert!(p.member(&key(2)).is_none());
}

#[test]
fn binary_round_trip_and_refusals() {
    let policy = sample();
    let bytes = policy.encode();
    assert_eq!(SignerPolicy::decode(&bytes), Ok(policy.clone()));
    assert_eq!(bytes[0], 1, "format version first");

    let mut trailing = bytes.clone();
    trailing.push(0);
    assert_eq!(
        SignerPolicy::decode(&trailing),
        Err(PolicyError::Decode(DecodeError::Trailing {
            count: 1,
            what: "signer policy"
        }))
    );
    let mut future = bytes.clone();
    future[0] = 2;
    assert!(matches!(
        SignerPolicy::decode(&future),
        Err(PolicyError::Decode(DecodeError::UnsupportedFormat {
            found: 2,
            ..
        }))
    ));
    // Well-formed but unusable: validated after decoding.
    let mut unusable = policy;
    unusable.threshold = 99;
    assert!(matches!(
        SignerPolicy::decode(&unusable.encode()),
        Err(PolicyError::Unreachable { .. })
    ));
    // A member count over the cap is refused before anything is read.
    assert!(matches!(
        SignerPolicy::decode(&[1, 1, 33]),
        Err(PolicyError::Decode(DecodeError::OverLimit {
            field: "member count",
            len: 33,
            ..
        }))
    ));
}
