use trust::grid::{
    Capacity, Constraints, ContractWorkload, Disk, Egress, VolumeClaim, WorkloadStatus,
};
use trust::{Digest, SecretKey, SignerPolicy};

use super::*;

fn key(n: u8) -> PublicKey {
    SecretKey::from_seed([n; 32]).public()
}

/// A contract needing 2 vCPUs, 1024 MiB and a 100 MiB volume, nodes with 2+ CPUs, farm `farms`.
fn contract(farms: Vec<PublicKey>) -> Contract {
    Contract {
        version: 1,
        supersedes: None,
        owner: key(1),
        stakeholders: SignerPolicy::single(key(1)),
        workloads: vec![ContractWorkload {
            name: "app".into(),
            manifest: Digest::of(b"m"),
            vcpus: 2,
            memory_mib: 1024,
            volumes: vec![VolumeClaim {
                name: "data".into(),
                size_mib: 100,
            }],
            egress: Egress::None,
            env: vec![],
        }],
        constraints: Constraints {
            farms,
            min_memory_mib: 0,
            min_cpus: 2,
            copies: 1,
        },
    }
}

/// Node `n` of farm `farm` with `cpus`, `memory` MiB, 1 GiB of disk, lease until `lease`,
/// and `placed` already used.
fn node(
    n: u8,
    farm: u8,
    cpus: u32,
    memory: u64,
    lease: Option<u64>,
    placed: Resources,
) -> Candidate {
    Candidate {
        registration: NodeRegistration {
            sequence: 1,
            node: key(n),
            farm: key(farm),
            capacity: Capacity {
                cpus,
                memory_mib: memory,
                disks: vec![Disk {
                    name: "vdb".into(),
                    size_mib: 1024,
                }],
                nics: vec![],
            },
            release_version: 1,
            release_manifest: Digest::of(b"r"),
        },
        lease_expires: lease,
        placed,
    }
}

const NOW: u64 = 1_000;

/// (name, contract farms, nodes, node to avoid, the node chosen or the error's text)
type ChooseCase = (
    &'static str,
    Vec<PublicKey>,
    Vec<Candidate>,
    Option<u8>,
    Result<u8, &'static str>,
);

/// (name, what was observed, `None` to keep, else whether the node is avoided and the reason's start)
type HealCase<'a> = (&'static str, Observed<'a>, Option<(bool, &'static str)>);
const NONE: Resources = Resources {
    vcpus: 0,
    memory_mib: 0,
    disk_mib: 0,
};

#[test]
fn choose_node_table() {
    let live = Some(NOW + 30);
    let used = |vcpus, memory_mib, disk_mib| Resources {
        vcpus,
        memory_mib,
        disk_mib,
    };
    // (name, contract farms, nodes, avoid, expected node or error text)
    let cases: Vec<ChooseCase> = vec![
        (
            "empty directory",
            vec![],
            vec![],
            None,
            Err("no live node to place it on (0 registered"),
        ),
        (
            "only dead nodes",
            vec![],
            vec![
                node(10, 50, 8, 8192, Some(NOW), NONE),
                node(11, 50, 8, 8192, None, NONE),
            ],
            None,
            Err("no live node to place it on (2 registered"),
        ),
        (
            "one fitting node",
            vec![],
            vec![node(10, 50, 4, 4096, live, NONE)],
            None,
            Ok(10),
        ),
        (
            "most memory left wins",
            vec![],
            vec![
                node(10, 50, 4, 4096, live, NONE),
                node(11, 50, 4, 8192, live, used(0, 2048, 0)),
                node(12, 50, 4, 2048, live, NONE),
            ],
            None,
            Ok(11),
        ),
        (
            "ties go to the lowest key",
            vec![],
            vec![
                node(12, 50, 4, 4096, live, NONE),
                node(11, 50, 4, 4096, live, NONE),
            ],
            None,
            Ok(if key(11) < key(12) { 11 } else { 12 }),
        ),
        (
            "the failed node is avoided",
            vec![],
            vec![
                node(10, 50, 4, 8192, live, NONE),
                node(11, 50, 4, 4096, live, NONE),
            ],
            Some(10),
            Ok(11),
        ),
        (
            "avoiding the only live node leaves none",
            vec![],
            vec![node(10, 50, 4, 8192, live, NONE)],
            Some(10),
            Err("no live node to place it on"),
        ),
        (
            "farm not allowed",
            vec![key(51)],
            vec![node(10, 50, 4, 8192, live, NONE)],
            None,
            Err("is not one the contract allows"),
        ),
        (
            "allowed farm chosen over a bigger one elsewhere",
            vec![key(51)],
            vec![
                node(10, 50, 8, 65536, live, NONE),
                node(11, 51, 4, 4096, live, NONE),
            ],
            None,
            Ok(11),
        ),
        (
            "too few CPUs",
            vec![],
            vec![node(10, 50, 1, 8192, live, NONE)],
            None,
            Err("the node has 1 CPUs, the contract needs a node with at least 2"),
        ),
        (
            "no memory left",
            vec![],
            vec![node(10, 50, 4, 2048, live, used(0, 1500, 0))],
            None,
            Err("the node has 548 MiB of memory free, the contract's workloads need 1024"),
        ),
        (
            "no disk left",
            vec![],
            vec![node(10, 50, 4, 8192, live, used(0, 0, 1000))],
            None,
            Err("the node has 24 MiB of disk free"),
        ),
    ];
    for (name, farms, nodes, avoid, expected) in cases {
        let c = contract(farms);
        let avoid = avoid.map(key);
        let got = choose_node(&c, &nodes, NOW, avoid.as_ref());
        match (got, expected) {
            (Ok(n), Ok(e)) => assert_eq!(n.registration.node, key(e), "{name}"),
            (Err(err), Err(text)) => {
                assert!(err.to_string().contains(text), "{name}: {err}")
            }
            (got, expected) => panic!("{name}: got {got:?}, expected {expected:?}"),
        }
    }
}

#[test]
fn every_unfit_node_is_named() {
    let c = contract(vec![]);
    let nodes = [
        node(10, 50, 1, 8192, Some(NOW + 1), NONE),
        node(11, 50, 4, 512, Some(NOW + 1), NONE),
    ];
    let err = choose_node(&c, &nodes, NOW, None).unwrap_err();
    let NoFit::NoneFits(list) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].0, key(10).short());
    assert!(err.to_string().starts_with("no live node fits: "), "{err}");
}

fn placement(c: &Contract, node: u8, version: u64) -> Placement {
    Placement {
        sequence: 3,
        contract: c.id(),
        version,
        node: key(node),
        owner: c.owner,
        reason: String::new(),
    }
}

fn status(
    c: &Contract,
    node: u8,
    state: WorkloadState,
    exit: Option<i32>,
    restarts: u32,
) -> StatusReport {
    StatusReport {
        sequence: 1,
        node: key(node),
        contract: c.id(),
        version: 1,
        workloads: vec![WorkloadStatus {
            name: "app".into(),
            state,
            exit_code: exit,
            restarts,
            reason: "manifest digest mismatch".into(),
            tail: None,
        }],
    }
}

#[test]
fn heal_table() {
    let c = contract(vec![]);
    let policy = HealPolicy {
        grace_secs: 10,
        restart_limit: 3,
    };
    let here = placement(&c, 10, 1);
    let old = placement(&c, 10, 0);
    let running = status(&c, 10, WorkloadState::Running, None, 0);
    let crashing = status(&c, 10, WorkloadState::Restarting, Some(2), 3);
    let crashed_less = status(&c, 10, WorkloadState::Restarting, Some(2), 2);
    let done = status(&c, 10, WorkloadState::Exited, Some(0), 5);
    let refused = status(&c, 10, WorkloadState::Refused, None, 0);
    let elsewhere = status(&c, 11, WorkloadState::Refused, None, 0);
    let seen = |placement, lease_expires, status| Observed {
        cancelled: false,
        placement,
        lease_expires,
        status,
    };
    // (name, observed, expected: None = Keep, Some((avoid the node?, reason start)))
    let cases: Vec<HealCase<'_>> = vec![
        (
            "not placed",
            seen(None, None, None),
            Some((false, "not placed yet")),
        ),
        (
            "old version placed",
            seen(Some(&old), Some(NOW + 5), None),
            Some((false, "version 1 is not placed")),
        ),
        (
            "no lease",
            seen(Some(&here), None, None),
            Some((true, "node ")),
        ),
        (
            "lease current",
            seen(Some(&here), Some(NOW + 5), Some(&running)),
            None,
        ),
        (
            "lease lapsed within grace",
            seen(Some(&here), Some(NOW - 9), Some(&running)),
            None,
        ),
        (
            "lease lapsed past grace",
            seen(Some(&here), Some(NOW - 10), Some(&running)),
            Some((true, "node ")),
        ),
        (
            "no report yet",
            seen(Some(&here), Some(NOW + 5), None),
            None,
        ),
        (
            "failing past the restart limit",
            seen(Some(&here), Some(NOW + 5), Some(&crashing)),
            Some((true, "workload app failed on node ")),
        ),
        (
            "failing within the restart limit",
            seen(Some(&here), Some(NOW + 5), Some(&crashed_less)),
            None,
        ),
        (
            "exited successfully",
            seen(Some(&here), Some(NOW + 5), Some(&done)),
            None,
        ),
        (
            "refused",
            seen(Some(&here), Some(NOW + 5), Some(&refused)),
            Some((true, "node ")),
        ),
        (
            "another node's report",
            seen(Some(&here), Some(NOW + 5), Some(&elsewhere)),
            None,
        ),
    ];
    for (name, observed, expected) in cases {
        let action = heal(&c, &observed, NOW, policy);
        match (action, expected) {
            (Action::Keep, None) => {}
            (Action::Place { avoid, reason }, Some((avoids, start))) => {
                assert_eq!(avoid, avoids.then(|| key(10)), "{name}");
                assert!(reason.starts_with(start), "{name}: {reason}");
            }
            (action, expected) => panic!("{name}: got {action:?}, expected {expected:?}"),
        }
    }
    let lapsed = heal(&c, &seen(Some(&here), Some(NOW - 20), None), NOW, policy);
    assert!(
        matches!(&lapsed, Action::Place { reason, .. } if reason.ends_with("stopped renewing its lease (20 s ago, grace 10 s)")),
        "{lapsed:?}"
    );
    let cancelled = Observed {
        cancelled: true,
        ..seen(None, None, None)
    };
    assert_eq!(heal(&c, &cancelled, NOW, policy), Action::Idle);
}

#[test]
fn next_placement_grows_the_sequence_and_keeps_the_reason_one_line() {
    let c = contract(vec![]);
    let first = next_placement(&c, None, key(10), "first\nline");
    assert_eq!(
        (first.sequence, first.version, first.owner),
        (1, 1, c.owner)
    );
    assert_eq!(first.reason, "first line");
    let second = next_placement(&c, Some(&first), key(11), &"é".repeat(200));
    assert_eq!(second.sequence, 2);
    assert!(second.reason.len() <= MAX_REASON_BYTES);
    trust::SignedBody::validate(&second).unwrap();
    trust::grid::rules::placement_by_owner(&c, &second).unwrap();
}
