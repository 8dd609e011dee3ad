//! Every kind: round trip, bounded and canonical decoding, verification, value checks.

use alloc::string::ToString;
use alloc::vec;
use core::fmt::Debug;

use super::*;
use crate::document::{DocumentKind, VerifyError};
use crate::limits::DecodeError;
use crate::signed::{verify_named, DocumentError, NamedSigner};

/// Round trip, validate, every truncation and a trailing byte refused, another format refused.
#[track_caller]
fn round_trips<B: SignedBody + Debug + PartialEq + Clone>(body: &B) {
    let bytes = body.encode();
    assert_eq!(B::decode(&bytes).as_ref(), Ok(body));
    assert_eq!(body.validate(), Ok(()));
    assert!(bytes.len() <= B::MAX_BYTES);
    assert_eq!(u32::from(bytes[0]), FORMAT, "format first");
    for cut in 0..bytes.len() {
        assert!(
            B::decode(&bytes[..cut]).is_err(),
            "{:?} cut at {cut}",
            B::KIND
        );
    }
    let mut trailing = bytes.clone();
    trailing.push(0);
    if B::KIND == DocumentKind::StatusReport {
        // A status report's optional console tails section follows its workloads.
        assert!(B::decode(&trailing).is_err());
    } else {
        assert!(matches!(
            B::decode(&trailing),
            Err(DecodeError::Trailing { count: 1, .. })
        ));
    }
    let mut future = bytes.clone();
    future[0] = 2;
    assert_eq!(
        B::decode(&future),
        Err(DecodeError::UnsupportedFormat {
            what: B::KIND.name(),
            found: 2,
            supported: 1
        })
    );
    assert!(matches!(
        B::decode(&vec![1u8; B::MAX_BYTES + 1]),
        Err(DecodeError::TooLarge { .. })
    ));
}

/// Signed by its named signer it verifies; by anyone else, or as another kind, it does not.
#[track_caller]
fn verifies<B: NamedSigner + Debug + PartialEq + Clone>(body: &B, signer: u8) {
    assert_eq!(body.signer(), pk(signer));
    let opened = verify_named::<B>(&signed(body, signer)).expect("verifies");
    assert_eq!(&opened.body, body);
    assert_eq!(opened.verified.signers, vec![B::SIGNER_ROLE.to_string()]);

    let err = verify_named::<B>(&signed(body, 99)).expect_err("wrong signer");
    assert!(
        matches!(
            &err,
            DocumentError::Verify {
                source: VerifyError::MissingRequired { missing },
                ..
            } if missing == &vec![B::SIGNER_ROLE.to_string()]
        ),
        "{err:?}"
    );
    // The same body bytes and signature relabelled as another kind never verify.
    for kind in DocumentKind::ALL.into_iter().filter(|&k| k != B::KIND) {
        let mut doc = crate::SignedDocument::new(kind, body.encode());
        doc.sign(&key(signer)).expect("sign");
        let err = verify_named::<B>(&doc.encode()).expect_err("other kind");
        assert!(matches!(
            err,
            DocumentError::Verify {
                source: VerifyError::WrongKind { .. },
                ..
            }
        ));
    }
    // Every bit flip of the signed file is refused.
    let file = signed(body, signer);
    for i in 0..file.len() {
        let mut bad = file.clone();
        bad[i] ^= 0x10;
        assert!(verify_named::<B>(&bad).is_err(), "flip at {i} accepted");
    }
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

/// Asserts that `change` makes `base` refused, naming `field`.
#[track_caller]
fn refused<B: SignedBody + Debug + Clone>(base: &B, field: &str, change: impl FnOnce(&mut B)) {
    let mut b = base.clone();
    change(&mut b);
    match b.validate() {
        Ok(()) => panic!("accepted a bad {field}: {b:?}"),
        Err(e) => assert_eq!(field_of(&e), field, "{e}"),
    }
}

#[test]
fn farm() {
    let f = super::farm();
    round_trips(&f);
    verifies(&f, FARMER);
    refused(&f, "name", |f| f.name.clear());
    refused(&f, "name", |f| f.name = " padded".into());
    refused(&f, "name", |f| f.name = "two\nlines".into());
    refused(&f, "name", |f| f.name = "n".repeat(65));
    refused(&f, "version", |f| f.version = 0);
}

#[test]
fn node_registration() {
    let n = node();
    round_trips(&n);
    verifies(&n, NODE);
    refused(&n, "cpus", |n| n.capacity.cpus = 0);
    refused(&n, "cpus", |n| n.capacity.cpus = 4097);
    refused(&n, "memory_mib", |n| n.capacity.memory_mib = 0);
    refused(&n, "disk name", |n| n.capacity.disks[1].name = "vdb".into());
    refused(&n, "disk name", |n| {
        n.capacity.disks[0].name = "sd a".into()
    });
    refused(&n, "disk name", |n| {
        n.capacity.disks[0].name = "d".repeat(16)
    });
    refused(&n, "disk size_mib", |n| n.capacity.disks[0].size_mib = 0);
    refused(&n, "nic name", |n| {
        let nic = n.capacity.nics[0].clone();
        n.capacity.nics.push(nic);
    });
    refused(&n, "disk count", |n| {
        n.capacity.disks = (0..17)
            .map(|i| Disk {
                name: alloc::format!("d{i}"),
                size_mib: 1,
            })
            .collect();
    });
    refused(&n, "sequence", |n| n.sequence = 0);
    assert_eq!(n.capacity.disk_mib(), 110 * 1024);
}

#[test]
fn contract_kind() {
    let c = contract();
    round_trips(&c);
    verifies(&c, OWNER);
    round_trips(&contract_v2());
    refused(&c, "supersedes", |c| {
        c.supersedes = contract_v2().supersedes
    });
    refused(&c, "supersedes", |c| c.version = 2);
    refused(&contract_v2(), "supersedes", |c| {
        c.supersedes = Some(Previous {
            contract: c.id(),
            body: Digest::of(b"not version 1"),
        });
    });
    refused(&c, "version", |c| c.version = 0);
    refused(&c, "workload count", |c| c.workloads.clear());
    refused(&c, "workload name", |c| c.workloads[1].name = "web".into());
    refused(&c, "workload name", |c| c.workloads[1].name = "Web".into());
    refused(&c, "vcpus", |c| c.workloads[0].vcpus = 0);
    refused(&c, "memory_mib", |c| c.workloads[0].memory_mib = 16);
    refused(&c, "volume size_mib", |c| {
        c.workloads[0].volumes[0].size_mib = 0
    });
    refused(&c, "volume name", |c| {
        let v = c.workloads[0].volumes[0].clone();
        c.workloads[0].volumes.push(v);
    });
    refused(&c, "endpoint host", |c| {
        c.workloads[0].egress = Egress::Only(vec![Endpoint {
            host: "Example.org".into(),
            port: 80,
        }]);
    });
    refused(&c, "endpoint", |c| {
        let e = Endpoint {
            host: "a".into(),
            port: 1,
        };
        c.workloads[0].egress = Egress::Only(vec![e.clone(), e]);
    });
    refused(&c, "env key", |c| c.workloads[0].env[0].0 = "A=B".into());
    refused(&c, "env key", |c| {
        c.workloads[0].env.push(("MODE".into(), "again".into()));
    });
    refused(&c, "env value", |c| {
        c.workloads[0].env[0].1 = "nul\0".into()
    });
    refused(&c, "farm", |c| c.constraints.farms.push(pk(FARMER)));
    refused(&c, "copies", |c| c.constraints.copies = 2);
    refused(&c, "copies", |c| c.constraints.copies = 0);
    refused(&c, "stakeholders", |c| c.stakeholders.threshold = 0);
    refused(&c, "stakeholders", |c| c.stakeholders.threshold = 4);
    refused(&c, "stakeholders", |c| c.stakeholders.members.clear());
    refused(&c, "member count", |c| {
        c.stakeholders.members = (0..33)
            .map(|i| member(&alloc::format!("m{i}"), i + 20, 1, false))
            .collect();
    });

    let mut any = c.clone();
    any.workloads[0].egress = Egress::Any;
    any.constraints.farms.clear();
    round_trips(&any);
}

#[test]
fn contract_ids() {
    let v1 = contract();
    assert_eq!(v1.id(), ContractId::of_first_version(&v1.encode()));
    assert_eq!(v1.id().0, v1.body_digest());
    let v2 = contract_v2();
    assert_eq!(v2.id(), v1.id(), "the id survives new versions");
    assert_ne!(v2.body_digest(), v1.body_digest());
    let mut other = contract();
    other.workloads[0].env.clear();
    assert_ne!(other.id(), v1.id());
    assert_eq!(
        alloc::format!("{:?}", v1.id()),
        alloc::format!("ContractId({})", v1.body_digest())
    );
}

#[test]
fn approval_kind() {
    let a = approval(10, &contract());
    round_trips(&a);
    verifies(&a, 10);
    refused(&a, "version", |a| a.version = 0);
}

#[test]
fn placement_kind() {
    let p = placement();
    round_trips(&p);
    verifies(&p, OWNER);
    refused(&p, "reason", |p| p.reason = "two\nlines".into());
    refused(&p, "reason", |p| p.reason = "r".repeat(257));
    refused(&p, "version", |p| p.version = 0);
    refused(&p, "sequence", |p| p.sequence = 0);
    let mut long = p.clone();
    long.reason = "r".repeat(256);
    round_trips(&long);
}

#[test]
fn cancellation_kind() {
    let c = cancellation();
    round_trips(&c);
    verifies(&c, OWNER);
    refused(&c, "reason", |c| c.reason = "\u{1b}[31m".into());
}

#[test]
fn status_report_kind() {
    let s = status();
    round_trips(&s);
    verifies(&s, NODE);
    refused(&s, "workload name", |s| s.workloads[1].name = "web".into());
    refused(&s, "reason", |s| s.workloads[0].reason = "a\rb".into());
    refused(&s, "workload count", |s| {
        s.workloads = (0..17)
            .map(|i| WorkloadStatus {
                name: alloc::format!("w{i}"),
                state: WorkloadState::Running,
                exit_code: None,
                restarts: 0,
                reason: String::new(),
                tail: None,
            })
            .collect();
    });
    for state in WorkloadState::ALL {
        let mut each = s.clone();
        each.workloads[0].state = state;
        each.workloads[0].exit_code = Some(i32::MIN);
        round_trips(&each);
        assert_eq!(WorkloadState::from_code(state.code()), Some(state));
    }
    assert_eq!(WorkloadState::from_code(7), None);
    assert_eq!(WorkloadState::Restarting.name(), "restarting");
    // An unknown state code is refused by the decoder.
    let mut one = s.clone();
    one.workloads.truncate(1);
    let mut none = s.clone();
    none.workloads.clear();
    let mut bytes = one.encode();
    let state_at = none.encode().len() + 1 + one.workloads[0].name.len();
    assert_eq!(u32::from(bytes[state_at]), WorkloadState::Running.code());
    bytes[state_at] = 7;
    assert!(matches!(
        StatusReport::decode(&bytes),
        Err(DecodeError::InvalidValue { field: "state", .. })
    ));
}

#[test]
fn status_report_console_tails() {
    use crate::grid::limits::{MAX_CONTRACT_WORKLOADS, MAX_REASON_BYTES, MAX_STATUS_REPORT_BYTES};
    use crate::grid::sealed::{self, MAX_TAIL_BYTES, SEAL_OVERHEAD};
    use crate::limits::MAX_WORKLOAD_NAME_BYTES;

    let plain = status();
    let without = plain.encode();
    // A report with a tail round-trips, the tail opens for the owner only, and the part before the
    // tails is the report as it was encoded before tails existed.
    let owner = crate::SecretKey::from_seed([0x51; 32]);
    let mut with = plain.clone();
    let context = with.tail_context("worker");
    with.workloads[1].tail =
        Some(sealed::seal(&owner.public(), [3; 32], &context, "worker: bye").expect("seal"));
    verifies(&with, NODE);
    let bytes = with.encode();
    assert_eq!(StatusReport::decode(&bytes).as_ref(), Ok(&with));
    // The part before the tails is the report as encoded before tails existed: cut there it
    // decodes as the report without tails (whose signature is another one), cut anywhere else
    // it is refused.
    assert_eq!(&bytes[..without.len()], &without[..]);
    for cut in 0..bytes.len() {
        let decoded = StatusReport::decode(&bytes[..cut]);
        if cut == without.len() {
            assert_eq!(decoded.as_ref(), Ok(&plain));
        } else {
            assert!(decoded.is_err(), "cut at {cut}");
        }
    }
    let decoded = StatusReport::decode(&bytes).expect("decodes");
    let tail = decoded.workloads[1].tail.as_deref().expect("tail");
    assert_eq!(
        sealed::open(&owner, &decoded.tail_context("worker"), tail).as_deref(),
        Ok("worker: bye")
    );
    assert!(sealed::open(&owner, &decoded.tail_context("web"), tail).is_err());

    // A tails section with no tail (two encodings of one report) is refused.
    let mut empty_section = without.clone();
    empty_section.extend_from_slice(&[0, 0]);
    assert!(matches!(
        StatusReport::decode(&empty_section),
        Err(DecodeError::InvalidValue {
            field: "console tails",
            ..
        })
    ));
    // A tail shorter than a sealed tail's overhead, and one over the bound, are refused.
    refused(&with, "console tail", |s| {
        s.workloads[1].tail = Some(vec![0; SEAL_OVERHEAD - 1])
    });
    let mut over = without.clone();
    over.extend_from_slice(&[0, 1]);
    let mut long = crate::limits::Writer::default();
    long.bytes(&vec![0; MAX_TAIL_BYTES + SEAL_OVERHEAD + 1]);
    over.extend_from_slice(&long.finish());
    assert!(matches!(
        StatusReport::decode(&over),
        Err(DecodeError::OverLimit {
            field: "console tail",
            ..
        })
    ));

    // The largest report (every field at its cap, a full tail per workload) fits the cap.
    let largest = StatusReport {
        workloads: (0..MAX_CONTRACT_WORKLOADS)
            .map(|i| WorkloadStatus {
                name: alloc::format!("{i:x}{}", "n".repeat(MAX_WORKLOAD_NAME_BYTES - 1)),
                state: WorkloadState::Restarting,
                exit_code: Some(i32::MIN),
                restarts: u32::MAX,
                reason: "r".repeat(MAX_REASON_BYTES),
                tail: Some(vec![0xee; MAX_TAIL_BYTES + SEAL_OVERHEAD]),
            })
            .collect(),
        sequence: u64::MAX,
        version: u64::MAX,
        ..plain
    };
    let encoded = largest.encode();
    assert!(
        encoded.len() <= MAX_STATUS_REPORT_BYTES,
        "{}",
        encoded.len()
    );
    assert_eq!(StatusReport::decode(&encoded), Ok(largest));
}

#[test]
fn lease_kind() {
    let l = lease();
    round_trips(&l);
    verifies(&l, NODE);
    refused(&l, "sequence", |l| l.sequence = 0);
    let mut never = l.clone();
    never.expires = u64::MAX;
    round_trips(&never);
}

#[test]
fn weak_keys_are_refused() {
    // The identity point (a small-order key) in the farmer field.
    let mut bytes = super::farm().encode();
    bytes[2..34].copy_from_slice(&{
        let mut identity = [0u8; 32];
        identity[0] = 1;
        identity
    });
    assert!(matches!(
        Farm::decode(&bytes),
        Err(DecodeError::InvalidValue {
            field: "farmer",
            ..
        })
    ));
}

#[test]
fn overlong_varints_are_refused() {
    // Version 1 written as 0x81 0x00 instead of 0x01.
    let bytes = lease().encode();
    let mut overlong = vec![bytes[0], 0x81 | bytes[1], 0x00];
    overlong.extend_from_slice(&bytes[2..]);
    assert!(Lease::decode(&overlong).is_err());
}

#[test]
fn enrollment_kind() {
    let e = Enrollment {
        sequence: 4,
        farmer: pk(FARMER),
        node: pk(NODE),
        enrolled: true,
    };
    round_trips(&e);
    verifies(&e, FARMER);
    refused(&e, "sequence", |e| e.sequence = 0);
    let withdrawn = Enrollment {
        enrolled: false,
        ..e.clone()
    };
    round_trips(&withdrawn);
    // The flag is one byte, 0 or 1: anything else is refused, so the body stays canonical.
    let mut bytes = e.encode();
    let last = bytes.len() - 1;
    bytes[last] = 2;
    assert!(matches!(
        Enrollment::decode(&bytes),
        Err(DecodeError::InvalidValue {
            field: "enrolled",
            ..
        })
    ));
    // One stream per (farmer, node) pair.
    assert_ne!(
        e.supersession().stream,
        Enrollment {
            node: pk(OWNER),
            ..e.clone()
        }
        .supersession()
        .stream
    );
}
