//! The grid's admission rules through the notary core (no sockets): a table of writes, each
//! accepted or refused with the reason named, on the embedded store and on a real PostgreSQL.

mod support;

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use notary::grid::{self, node_key, owner_key};
use notary::{Accepted, Config, GridRules, Notary, PostgresStore, RedbStore, Store, SubmitError};
use support::grid::*;
use trust::{DocumentKind, SignedDocument};

fn open(store: Arc<dyn Store>) -> Notary {
    let rules = GridRules::with_clock(|| NOW);
    Notary::open(
        store,
        SigningKey::from_bytes(&[1; 32]),
        Box::new(rules),
        Config::default(),
    )
    .unwrap()
}

enum Want {
    Logged,
    Lease,
    Refused(&'static str),
}
use Want::*;

fn check(n: &Notary, step: &str, bytes: Vec<u8>, want: Want) {
    let size = n.size();
    let got = n.accept(bytes);
    match (&want, &got) {
        (Logged, Ok(Accepted::Logged(r))) => assert_eq!(r.index, size, "{step}"),
        (Lease, Ok(Accepted::Lease(_))) => {
            assert_eq!(n.size(), size, "{step}: a lease grew the log")
        }
        (Refused(why), Err(SubmitError::Refused(reason))) => {
            assert!(
                reason.contains(why),
                "{step}: refused with {reason:?}, wanted {why:?}"
            );
            assert!(!reason.contains('\n'), "{step}: {reason:?}");
            assert_eq!(n.size(), size, "{step}: a refused write grew the log");
        }
        _ => panic!("{step}: got {got:?}"),
    }
}

fn the_table(n: &Notary) {
    let a = contract(2, 4096);
    let b = contract(3, 1024);
    let a2 = next_version(&a);
    let mut stranger_farm = farm(FARMER, 2, "Not mine");
    stranger_farm.farmer = pk(FARMER);
    let mut not_owner = placement(&a, 1, NODE);
    not_owner.owner = pk(STRANGER);
    let mut garbage = SignedDocument::new(DocumentKind::WorkloadManifest, b"x".to_vec());
    garbage.sign(&sk(STRANGER)).unwrap();

    let rows: Vec<(&str, Vec<u8>, Want)> = vec![
        (
            "placement of an unknown contract",
            by_signer(&placement(&a, 1, NODE)),
            Refused("not registered"),
        ),
        ("farm", by_signer(&farm(FARMER, 1, "Ghent")), Logged),
        (
            "farm, same version",
            by_signer(&farm(FARMER, 1, "Gent")),
            Refused("farm 1 is not newer than the held 1"),
        ),
        (
            "farm signed by someone else",
            signed(&stranger_farm, STRANGER),
            Refused("not signed by its farmer"),
        ),
        (
            "not a grid kind",
            garbage.encode(),
            Refused("workload manifest is not a grid document"),
        ),
        ("node", by_signer(&node(NODE, FARMER, 1, 4, 8192)), Logged),
        (
            "lapsed node",
            by_signer(&node(LAPSED, FARMER, 1, 4, 8192)),
            Logged,
        ),
        (
            "node signed by its farmer",
            signed(&node(NODE, FARMER, 2, 4, 8192), FARMER),
            Refused("not signed by its node"),
        ),
        (
            "enrollment without a farm",
            by_signer(&enroll(OTHER_FARMER, NODE, 1, true)),
            Refused("has not registered a farm"),
        ),
        ("contract", by_signer(&a), Logged),
        (
            "version 2 before its contract",
            by_signer(&next_version(&b)),
            Refused("supersedes a contract that is not registered"),
        ),
        (
            "approval by a stranger",
            by_signer(&approval(STRANGER, &a)),
            Refused("is not a stakeholder"),
        ),
        ("approval by legal", by_signer(&approval(LEGAL, &a)), Logged),
        (
            "placement by a stranger",
            by_signer(&not_owner),
            Refused("not by the contract's owner"),
        ),
        (
            "placement on an unenrolled node",
            by_signer(&placement(&a, 1, NODE)),
            Refused("is not enrolled by its farm"),
        ),
        (
            "enrollment",
            by_signer(&enroll(FARMER, NODE, 1, true)),
            Logged,
        ),
        (
            "enrollment of the lapsed node",
            by_signer(&enroll(FARMER, LAPSED, 1, true)),
            Logged,
        ),
        (
            "placement on a node without a lease",
            by_signer(&placement(&a, 1, NODE)),
            Refused("has never sent a lease"),
        ),
        ("lease", by_signer(&lease(NODE, 1, NOW + 30)), Lease),
        (
            "lease replayed",
            by_signer(&lease(NODE, 1, NOW + 30)),
            Refused("lease 1 is not newer than the held 1"),
        ),
        (
            "lease too far ahead",
            by_signer(&lease(NODE, 2, NOW + 100_000)),
            Refused("more than 600 s after"),
        ),
        (
            "lease signed by the farmer",
            signed(&lease(NODE, 3, NOW + 30), FARMER),
            Refused("not signed by its node"),
        ),
        (
            "a lease that ran out",
            by_signer(&lease(LAPSED, 1, NOW - 10)),
            Lease,
        ),
        (
            "placement short of approvals",
            by_signer(&placement(&a, 1, NODE)),
            Refused("approved weight 1 is below threshold 2"),
        ),
        ("approval by it", by_signer(&approval(IT, &a)), Logged),
        (
            "placement on the lapsed node",
            by_signer(&placement(&a, 1, LAPSED)),
            Refused("lease ran out 10 s ago"),
        ),
        (
            "report before placement",
            by_signer(&status(&a, NODE, 1)),
            Refused("is not placed on node"),
        ),
        ("placement", by_signer(&placement(&a, 1, NODE)), Logged),
        (
            "placement replayed",
            by_signer(&placement(&a, 1, NODE)),
            Refused("replay"),
        ),
        ("second contract", by_signer(&b), Logged),
        (
            "its approval by legal",
            by_signer(&approval(LEGAL, &b)),
            Logged,
        ),
        ("its approval by it", by_signer(&approval(IT, &b)), Logged),
        (
            "second contract on the full node",
            by_signer(&placement(&b, 1, NODE)),
            Refused("the node has 2 CPUs free, the contract's workloads need 3"),
        ),
        (
            "report by another node",
            by_signer(&status(&a, LAPSED, 1)),
            Refused("is not placed on node"),
        ),
        ("report", by_signer(&status(&a, NODE, 1)), Logged),
        (
            "older report",
            by_signer(&status(&a, NODE, 1)),
            Refused("replay"),
        ),
        ("contract version 2", by_signer(&a2), Logged),
        (
            "a fork of version 1",
            by_signer(&{
                let mut f = next_version(&a);
                f.workloads[0].vcpus = 1;
                f
            }),
            Refused("contract 2 is not newer than the held 2"),
        ),
        (
            "placement of the old version",
            by_signer(&placement(&a, 2, NODE)),
            Refused("for contract version 1, not 2"),
        ),
        (
            "version 2 unapproved",
            by_signer(&placement(&a2, 2, NODE)),
            Refused("required stakeholders legal have not approved"),
        ),
        (
            "cancellation by a stranger",
            signed(
                &{
                    let mut x = cancellation(&a);
                    x.owner = pk(STRANGER);
                    x
                },
                STRANGER,
            ),
            Refused("not by the contract's owner"),
        ),
        ("cancellation", by_signer(&cancellation(&a)), Logged),
        (
            "a version after cancellation",
            by_signer(&next_version(&a2)),
            Refused("is cancelled"),
        ),
        (
            "placement after cancellation",
            by_signer(&placement(&a2, 2, NODE)),
            Refused("is cancelled"),
        ),
        (
            "second contract fits now",
            by_signer(&placement(&b, 1, NODE)),
            Logged,
        ),
        (
            "enrollment withdrawn",
            by_signer(&enroll(FARMER, NODE, 2, false)),
            Logged,
        ),
        (
            "second contract moved to the withdrawn node",
            by_signer(&placement(&b, 2, NODE)),
            Refused("is not enrolled"),
        ),
    ];
    for (step, bytes, want) in rows {
        check(n, step, bytes, want);
    }

    // The node's feed: its registration and enrollments, the placement, contract version 2,
    // the cancellation, and the second placement; not the other contract's approvals.
    let view = n.view();
    let feed = grid::all::<trust::grid::Placement>(&view, &node_key(&pk(NODE))).unwrap();
    assert_eq!(feed.len(), 2);
    let versions = grid::all::<trust::grid::Contract>(&view, &node_key(&pk(NODE))).unwrap();
    assert_eq!(
        versions.len(),
        1,
        "version 2 of the placed contract reaches its node"
    );
    let cancels = grid::all::<trust::grid::Cancellation>(&view, &node_key(&pk(NODE))).unwrap();
    assert_eq!(cancels.len(), 1);
    let approvals = grid::all::<trust::grid::Approval>(&view, &node_key(&pk(NODE))).unwrap();
    assert!(approvals.is_empty());
    // The owner's feed holds everything about both contracts.
    assert_eq!(
        grid::indexes(&view, &owner_key(&pk(OWNER))).unwrap().len(),
        11
    );
    // Only the second contract is placed now.
    let placed = grid::placed_on(&view, &pk(NODE)).unwrap();
    assert_eq!(placed.len(), 1);
    assert_eq!(placed[0].id(), b.id());
    assert_eq!(grid::used(&view, &pk(NODE), None).unwrap().vcpus, 3);
}

#[test]
fn grid_rules_on_redb() {
    let dir = tempfile::tempdir().unwrap();
    let n = open(Arc::new(RedbStore::open(dir.path()).unwrap()));
    the_table(&n);
    drop(n);
    // The lease table survives a restart beside the log.
    let n = open(Arc::new(RedbStore::open(dir.path()).unwrap()));
    assert_eq!(n.lease(pk(NODE).as_bytes()).unwrap().unwrap().sequence, 1);
    check(
        &n,
        "lease after restart",
        by_signer(&lease(NODE, 2, NOW + 30)),
        Lease,
    );
}

#[test]
fn grid_rules_on_postgres() {
    let pg = support::postgres::Postgres::start();
    let url = pg.fresh_database();
    let n = open(Arc::new(PostgresStore::connect(&url).unwrap()));
    the_table(&n);
    assert_eq!(n.leases().unwrap().len(), 2);
}

/// `GridRules::unchecked` (`serve --rules unchecked`), the misbehaving notary of the threat
/// model: what the grid's rules refuse is admitted, and filed where nodes and owners look.
#[test]
fn unchecked_rules_admit_what_the_grid_refuses_and_file_it_for_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let n = Notary::open(
        Arc::new(RedbStore::open(dir.path()).unwrap()),
        SigningKey::from_bytes(&[1; 32]),
        Box::new(GridRules::unchecked()),
        Config::default(),
    )
    .unwrap();
    let a = contract(2, 4096);
    let mut not_owner = placement(&a, 1, NODE);
    not_owner.owner = pk(STRANGER);
    let mut stranger_farm = farm(FARMER, 2, "Not mine");
    stranger_farm.farmer = pk(FARMER);
    let rows: Vec<(&str, Vec<u8>, Want)> = vec![
        (
            "node without a farm",
            by_signer(&node(NODE, FARMER, 1, 4, 8192)),
            Logged,
        ),
        ("contract", by_signer(&a), Logged),
        (
            "approval by a stranger",
            by_signer(&approval(STRANGER, &a)),
            Logged,
        ),
        ("placement by a stranger", by_signer(&not_owner), Logged),
        (
            "placement by the owner on a node never enrolled, not newer than the stranger's",
            by_signer(&placement(&a, 1, NODE)),
            Logged,
        ),
        // The log itself still refuses a replay.
        (
            "the same placement again",
            by_signer(&not_owner),
            Refused("replay"),
        ),
        // The envelope is still checked: a body must be signed by the key it names.
        (
            "farm signed by someone else",
            signed(&stranger_farm, STRANGER),
            Refused("not signed by its farmer"),
        ),
        (
            "not a grid kind",
            {
                let mut d = SignedDocument::new(DocumentKind::WorkloadManifest, b"x".to_vec());
                d.sign(&sk(STRANGER)).unwrap();
                d.encode()
            },
            Refused("not a grid document"),
        ),
    ];
    for (step, bytes, want) in rows {
        check(&n, step, bytes, want);
    }
    let view = n.view();
    let placements = grid::all::<trust::grid::Placement>(&view, &node_key(&pk(NODE))).unwrap();
    assert_eq!(
        placements.len(),
        2,
        "the node's feed holds the bad placements"
    );
    assert_eq!(
        grid::all::<trust::grid::Contract>(&view, &owner_key(&pk(OWNER)))
            .unwrap()
            .len(),
        1
    );
}
