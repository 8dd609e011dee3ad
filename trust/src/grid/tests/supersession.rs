//! Streams, counters, and the contract chain.

use alloc::vec;

use super::*;
use crate::document::DocumentKind;

fn all_supersessions() -> Vec<Supersession> {
    vec![
        farm().supersession(),
        node().supersession(),
        contract().supersession(),
        approval(10, &contract()).supersession(),
        placement().supersession(),
        cancellation().supersession(),
        status().supersession(),
        lease().supersession(),
        Enrollment {
            sequence: 1,
            farmer: pk(FARMER),
            node: pk(NODE),
            enrolled: true,
        }
        .supersession(),
    ]
}

#[test]
fn each_kind_has_its_own_stream() {
    let kinds: Vec<DocumentKind> = all_supersessions()
        .iter()
        .map(|s| s.stream.kind())
        .collect();
    assert_eq!(kinds, DocumentKind::ALL[2..].to_vec());
    let keys: Vec<Vec<u8>> = all_supersessions()
        .iter()
        .map(|s| s.stream.key_bytes())
        .collect();
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(k[0], kinds[i].code());
        assert!(!keys[..i].contains(k), "stream key {i} repeats");
    }
    assert_eq!(
        contract().supersession().stream,
        contract_v2().supersession().stream
    );
}

#[test]
fn only_a_greater_counter_in_the_same_stream_is_newer() {
    for s in all_supersessions() {
        let newer = Supersession {
            version: s.version + 1,
            ..s
        };
        assert!(is_newer(&s, &newer));
        assert!(!is_newer(&newer, &s));
        assert!(!is_newer(&s, &s), "an equal counter is a replay");
    }
    let a = lease().supersession();
    let mut other = lease();
    other.node = pk(77);
    other.sequence += 1;
    assert!(!is_newer(&a, &other.supersession()), "another node's lease");
    let farm_stream = Supersession {
        stream: Stream::Farm(pk(NODE)),
        version: a.version + 1,
    };
    assert!(!is_newer(&a, &farm_stream), "same key, another kind");
}

#[test]
fn a_contract_version_follows_the_one_it_supersedes() {
    let v1 = contract();
    let v2 = contract_v2();
    assert_eq!(check_successor(&v1, &v2), Ok(()));
    assert!(is_newer(&v1.supersession(), &v2.supersession()));
    assert!(matches!(
        check_successor(&v2, &v1),
        Err(SupersedeError::NotNewer { .. })
    ));
    assert!(matches!(
        check_successor(&v2, &v2),
        Err(SupersedeError::NotNewer { .. })
    ));

    // Version 3 built on v2; a fork built on v1 instead is refused against v2.
    let mut v3 = v2.clone();
    v3.version = 3;
    v3.supersedes = Some(Previous {
        contract: v1.id(),
        body: v2.body_digest(),
    });
    assert_eq!(check_successor(&v2, &v3), Ok(()));
    let mut fork = v3.clone();
    fork.supersedes = Some(Previous {
        contract: v1.id(),
        body: v1.body_digest(),
    });
    assert!(matches!(
        check_successor(&v2, &fork),
        Err(SupersedeError::Fork { .. })
    ));

    let mut hijack = v2.clone();
    hijack.owner = pk(66);
    assert!(matches!(
        check_successor(&v1, &hijack),
        Err(SupersedeError::OtherOwner { .. })
    ));

    let mut unrelated = contract();
    unrelated.workloads.truncate(1);
    assert!(matches!(
        check_successor(&unrelated, &v2),
        Err(SupersedeError::OtherContract { .. })
    ));
}
