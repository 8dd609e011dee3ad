use trust::grid::{Constraints, ContractWorkload, Egress};
use trust::{Digest, PolicyMember, SignerPolicy};

use super::*;

fn key(n: u8) -> SecretKey {
    SecretKey::from_seed([n; 32])
}

/// A contract owned by key 1, approved by security (key 2, required), finance (3) and
/// operations (4), 2 of 3.
fn contract() -> Contract {
    let member = |name: &str, n: u8, required: bool| PolicyMember {
        name: name.into(),
        key: key(n).public(),
        weight: 1,
        required,
    };
    Contract {
        version: 1,
        supersedes: None,
        owner: key(1).public(),
        stakeholders: SignerPolicy {
            threshold: 2,
            members: vec![
                member("security", 2, true),
                member("finance", 3, false),
                member("operations", 4, false),
            ],
        },
        workloads: vec![ContractWorkload {
            name: "app".into(),
            manifest: Digest::of(b"manifest"),
            vcpus: 1,
            memory_mib: 128,
            volumes: vec![],
            egress: Egress::None,
            env: vec![],
        }],
        constraints: Constraints {
            farms: vec![],
            min_memory_mib: 0,
            min_cpus: 0,
            copies: 1,
        },
    }
}

fn signed_by(signers: &[u8]) -> ContractFile {
    let mut file = ContractFile::new(contract(), &key(1)).unwrap();
    for &n in signers {
        file.approve(&key(n)).unwrap();
    }
    file
}

#[test]
fn a_file_round_trips_with_its_approvals() {
    let file = signed_by(&[3, 2]);
    let text = file.encode();
    assert!(text.starts_with("nullos-contract v1\ncontract "));
    assert_eq!(text.lines().count(), 4);
    let read = ContractFile::decode(text.as_bytes()).unwrap();
    assert_eq!(read.contract(), &contract());
    assert_eq!(read.encode(), text);
    let names: Vec<PublicKey> = read.approvals().map(|a| a.stakeholder).collect();
    assert_eq!(names, [key(3).public(), key(2).public()]);
}

#[test]
fn two_of_three_is_met_only_with_the_required_member_in_any_order() {
    let cases: &[(&[u8], bool)] = &[
        (&[], false),
        (&[2], false),
        (&[3], false),
        (&[3, 4], false),
        (&[4, 3], false),
        (&[2, 3], true),
        (&[3, 2], true),
        (&[4, 2], true),
        (&[2, 4], true),
        (&[3, 4, 2], true),
        (&[4, 2, 3], true),
    ];
    for (signers, met) in cases {
        let file = ContractFile::decode(signed_by(signers).encode().as_bytes()).unwrap();
        assert_eq!(file.policy().is_ok(), *met, "signers {signers:?}");
    }
    let err = signed_by(&[3, 4]).policy().unwrap_err();
    assert_eq!(
        err.to_string(),
        "required stakeholders security have not approved"
    );
}

#[test]
fn only_stakeholders_approve_and_only_once() {
    let mut file = signed_by(&[2]);
    let err = file.approve(&key(9)).unwrap_err();
    assert!(
        err.to_string().ends_with(
            "is not a stakeholder of this contract (stakeholders: security, finance, operations)"
        ),
        "{err}"
    );
    let err = file.approve(&key(1)).unwrap_err();
    assert!(matches!(err, ContractFileError::NotAStakeholder { .. }));
    let err = file.approve(&key(2)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "stakeholder 'security' has already approved this contract"
    );
    assert_eq!(file.approvals().count(), 1);
}

#[test]
fn a_contract_signed_by_another_key_than_its_owner_is_refused() {
    let err = ContractFile::new(contract(), &key(2)).unwrap_err();
    assert!(matches!(err, ContractFileError::Contract(_)), "{err:?}");
}

#[test]
fn every_flipped_byte_is_refused() {
    let text = signed_by(&[2, 3]).encode().into_bytes();
    for i in 0..text.len() {
        for bit in [0x01u8, 0x20, 0x80] {
            let mut altered = text.clone();
            altered[i] ^= bit;
            assert!(
                ContractFile::decode(&altered).is_err(),
                "byte {i} ^ {bit:#x} ({:?}) was accepted",
                char::from(text[i])
            );
        }
    }
}

#[test]
fn layout_mistakes_name_the_line() {
    let text = signed_by(&[2]).encode();
    let cases = [
        (text.trim_end().to_owned(), "does not end with a newline"),
        (text.replace('\n', "\r\n"), "line 1: not a contract file"),
        (
            text.replacen("\ncontract ", "\ncontract  ", 1),
            "line 2: the contract is not lowercase hex",
        ),
        (format!("{text}\n"), "line 4: expected 'approval <hex>'"),
        (format!("# note\n{text}"), "line 1: not a contract file"),
        (text.to_uppercase(), "line 1: not a contract file"),
    ];
    for (altered, expect) in cases {
        let err = ContractFile::decode(altered.as_bytes()).unwrap_err();
        assert!(err.to_string().contains(expect), "{err} / {expect}");
    }
    let big = vec![b'a'; MAX_FILE_BYTES + 1];
    assert!(matches!(
        ContractFile::decode(&big),
        Err(ContractFileError::TooLarge { .. })
    ));
}

#[test]
fn an_approval_of_another_contract_is_refused() {
    let mut other = contract();
    other.constraints.min_cpus = 2;
    let mut other_file = ContractFile::new(other, &key(1)).unwrap();
    other_file.approve(&key(2)).unwrap();
    let stolen = other_file.encode().lines().nth(2).unwrap().to_owned();
    let text = format!("{}{stolen}\n", signed_by(&[3]).encode());
    let err = ContractFile::decode(text.as_bytes()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "line 4: the approval is of another contract or version"
    );
}

#[test]
fn a_repeated_approval_line_is_refused() {
    let text = signed_by(&[2]).encode();
    let line = text.lines().nth(2).unwrap();
    let doubled = format!("{text}{line}\n");
    let err = ContractFile::decode(doubled.as_bytes()).unwrap_err();
    assert!(
        matches!(err, ContractFileError::AlreadyApproved { .. }),
        "{err:?}"
    );
}
