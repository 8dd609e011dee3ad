//! The verdict table: every rule the node applies before anything runs, one case each.

use trust::grid::{
    Approval, Cancellation, Capacity, Constraints, Contract, ContractWorkload, Disk, Egress,
    NodeRegistration, Placement, Previous, Resources,
};
use trust::{Digest, PolicyMember, PublicKey, SecretKey, SignerPolicy};

use super::*;
use crate::documents::{self, ContractView, GridDocument};

const OWNER: u8 = 1;
const LEGAL: u8 = 2;
const IT: u8 = 3;
const NODE: u8 = 4;
const OTHER_NODE: u8 = 5;
const FARMER: u8 = 6;
const STRANGER: u8 = 7;

fn pk(seed: u8) -> PublicKey {
    SecretKey::from_seed([seed; 32]).public()
}

fn contract(vcpus: u8) -> Contract {
    Contract {
        version: 1,
        supersedes: None,
        owner: pk(OWNER),
        stakeholders: SignerPolicy {
            threshold: 2,
            members: vec![
                PolicyMember {
                    name: "legal".into(),
                    key: pk(LEGAL),
                    weight: 1,
                    required: true,
                },
                PolicyMember {
                    name: "it".into(),
                    key: pk(IT),
                    weight: 1,
                    required: false,
                },
            ],
        },
        workloads: vec![ContractWorkload {
            name: "web".into(),
            manifest: Digest::of(b"web"),
            vcpus,
            memory_mib: 256,
            volumes: vec![],
            egress: Egress::None,
            env: vec![],
        }],
        constraints: Constraints {
            farms: vec![pk(FARMER)],
            min_memory_mib: 0,
            min_cpus: 0,
            copies: 1,
        },
    }
}

fn next(c: &Contract) -> Contract {
    let mut n = c.clone();
    n.version += 1;
    n.supersedes = Some(Previous {
        contract: c.id(),
        body: c.body_digest(),
    });
    n
}

fn approve(seed: u8, c: &Contract) -> GridDocument {
    GridDocument::Approval(Approval {
        version: c.version,
        contract: c.id(),
        body: c.body_digest(),
        stakeholder: pk(seed),
    })
}

fn place(c: &Contract, sequence: u64, node: u8, signer: u8) -> GridDocument {
    GridDocument::Placement(Placement {
        sequence,
        contract: c.id(),
        version: c.version,
        node: pk(node),
        owner: pk(signer),
        reason: "test".into(),
    })
}

fn registration(cpus: u32) -> NodeRegistration {
    NodeRegistration {
        sequence: 1,
        node: pk(NODE),
        farm: pk(FARMER),
        capacity: Capacity {
            cpus,
            memory_mib: 2048,
            disks: vec![Disk {
                name: "vdb".into(),
                size_mib: 1024,
            }],
            nics: vec![],
        },
        release_version: 1,
        release_manifest: Digest([0; 32]),
    }
}

fn view(docs: Vec<GridDocument>) -> ContractView {
    let mut v = ContractView::new(contract(1).id());
    for d in docs {
        v.add(d);
    }
    v
}

fn verdict(docs: Vec<GridDocument>, running: Option<u64>, others: Resources) -> Verdict {
    let reg = registration(4);
    judge(
        &view(docs),
        &NodeFacts {
            node: &pk(NODE),
            registration: &reg,
            others,
            running,
        },
    )
}

fn reason(v: Verdict) -> String {
    match v {
        Verdict::Refuse { reason, .. } => reason,
        other => panic!("not a refusal: {other:?}"),
    }
}

#[test]
fn an_approved_placement_by_the_owner_runs() {
    let c = contract(1);
    let docs = vec![
        GridDocument::Contract(c.clone()),
        approve(LEGAL, &c),
        approve(IT, &c),
        place(&c, 1, NODE, OWNER),
    ];
    assert!(matches!(
        verdict(docs.clone(), None, Resources::default()),
        Verdict::Run { ref contract, .. } if contract.version == 1
    ));
    assert_eq!(verdict(docs, Some(1), Resources::default()), Verdict::Keep);
}

#[test]
fn one_approval_short_of_the_threshold_is_refused() {
    let c = contract(1);
    let v = verdict(
        vec![
            GridDocument::Contract(c.clone()),
            approve(LEGAL, &c),
            place(&c, 1, NODE, OWNER),
        ],
        None,
        Resources::default(),
    );
    assert_eq!(
        reason(v),
        "stakeholder policy not met: approved weight 1 is below threshold 2"
    );
    let v = verdict(
        vec![
            GridDocument::Contract(c.clone()),
            approve(IT, &c),
            approve(STRANGER, &c),
            place(&c, 1, NODE, OWNER),
        ],
        None,
        Resources::default(),
    );
    assert_eq!(
        reason(v),
        "stakeholder policy not met: required stakeholders legal have not approved"
    );
}

#[test]
fn a_placement_by_someone_else_than_the_owner_does_not_count_and_is_named() {
    let c = contract(1);
    let v = view(vec![
        GridDocument::Contract(c.clone()),
        approve(LEGAL, &c),
        approve(IT, &c),
        place(&c, 1, NODE, STRANGER),
    ]);
    assert_eq!(v.placement, None);
    let (p, why) = v.rejected.clone().unwrap();
    assert_eq!(p.owner, pk(STRANGER));
    assert!(why.starts_with("placement is by nullos-ed25519 "), "{why}");
    assert!(why.contains("not by the contract's owner"), "{why}");
    let reg = registration(4);
    let facts = NodeFacts {
        node: &pk(NODE),
        registration: &reg,
        others: Resources::default(),
        running: None,
    };
    assert_eq!(judge(&v, &facts), Verdict::NotHere);
}

#[test]
fn elsewhere_cancelled_older_and_too_big_each_have_their_verdict() {
    let c1 = contract(1);
    let c2 = next(&c1);
    let approved = |c: &Contract| vec![approve(LEGAL, c), approve(IT, c)];
    let mut docs = vec![GridDocument::Contract(c1.clone())];
    docs.extend(approved(&c1));
    docs.push(GridDocument::Contract(c2.clone()));
    docs.extend(approved(&c2));

    let mut moved = docs.clone();
    moved.push(place(&c2, 1, NODE, OWNER));
    moved.push(place(&c2, 2, OTHER_NODE, OWNER));
    assert_eq!(
        verdict(moved, Some(2), Resources::default()),
        Verdict::NotHere
    );

    let mut cancelled = docs.clone();
    cancelled.push(place(&c2, 1, NODE, OWNER));
    cancelled.push(GridDocument::Cancellation(Cancellation {
        version: 2,
        contract: c1.id(),
        owner: pk(OWNER),
        reason: "done".into(),
    }));
    assert_eq!(
        verdict(cancelled, Some(2), Resources::default()),
        Verdict::Cancelled
    );

    let mut older = docs.clone();
    older.push(place(&c1, 3, NODE, OWNER));
    assert_eq!(
        reason(verdict(older, Some(2), Resources::default())),
        "version 1 is older than the running version 2"
    );

    let mut newer = docs.clone();
    newer.push(place(&c2, 4, NODE, OWNER));
    assert!(matches!(
        verdict(newer.clone(), Some(1), Resources::default()),
        Verdict::Run { ref contract, .. } if contract.version == 2
    ));
    let busy = Resources {
        vcpus: 4,
        memory_mib: 0,
        disk_mib: 0,
    };
    assert_eq!(
        reason(verdict(newer, None, busy)),
        "the node has 0 CPUs free, the contract's workloads need 1"
    );
}

#[test]
fn versions_that_do_not_chain_and_foreign_cancellations_are_ignored() {
    let c1 = contract(1);
    let mut forged = next(&c1);
    forged.owner = pk(STRANGER);
    let v = view(vec![
        GridDocument::Contract(c1.clone()),
        GridDocument::Contract(forged),
        GridDocument::Cancellation(Cancellation {
            version: 1,
            contract: c1.id(),
            owner: pk(STRANGER),
            reason: "mine now".into(),
        }),
    ]);
    assert_eq!(v.versions.len(), 1);
    assert_eq!(v.cancellation, None);
    assert_eq!(v.ignored.len(), 2, "{:?}", v.ignored);
}

#[test]
fn entries_open_only_with_the_signature_of_the_key_they_name() {
    use trust::{NamedSigner, SignedBody};
    let c = contract(1);
    let p = Placement {
        sequence: 1,
        contract: c.id(),
        version: 1,
        node: pk(NODE),
        owner: pk(OWNER),
        reason: "r".into(),
    };
    let mut good = p.to_document();
    good.sign(&SecretKey::from_seed([OWNER; 32])).unwrap();
    assert_eq!(
        documents::open(&good.encode()).unwrap(),
        GridDocument::Placement(p.clone())
    );
    let mut forged = p.to_document();
    forged.sign(&SecretKey::from_seed([STRANGER; 32])).unwrap();
    assert!(documents::open(&forged.encode()).is_err());
    assert_eq!(p.signer(), pk(OWNER));
    for garbage in [&b""[..], b"nullos", &[0xff; 64]] {
        assert!(documents::open(garbage).is_err());
    }
}
