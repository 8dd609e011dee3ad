use trust::grid::{Constraints, ContractWorkload, Egress, WorkloadStatus};
use trust::{Digest, NamedSigner, PublicKey, SecretKey, SignedBody, SignerPolicy};

use super::*;

fn sk(n: u8) -> SecretKey {
    SecretKey::from_seed([n; 32])
}

fn key(n: u8) -> PublicKey {
    sk(n).public()
}

fn signed<B: NamedSigner>(body: &B, by: u8) -> Vec<u8> {
    let mut d = body.to_document();
    d.sign(&sk(by)).unwrap();
    d.encode()
}

fn contract() -> Contract {
    Contract {
        version: 1,
        supersedes: None,
        owner: key(1),
        stakeholders: SignerPolicy::single(key(1)),
        workloads: vec![ContractWorkload {
            name: "app".into(),
            manifest: Digest::of(b"m"),
            vcpus: 1,
            memory_mib: 64,
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

fn placement(c: &Contract, sequence: u64, node: u8) -> Placement {
    Placement {
        sequence,
        contract: c.id(),
        version: c.version,
        node: key(node),
        owner: c.owner,
        reason: "test".into(),
    }
}

fn report(
    c: &Contract,
    node: u8,
    sequence: u64,
    state: WorkloadState,
    code: Option<i32>,
) -> StatusReport {
    StatusReport {
        sequence,
        node: key(node),
        contract: c.id(),
        version: c.version,
        workloads: vec![WorkloadStatus {
            name: "app".into(),
            state,
            exit_code: code,
            restarts: 0,
            reason: if state == WorkloadState::Refused {
                "digest mismatch".into()
            } else {
                String::new()
            },
            tail: None,
        }],
    }
}

fn log_of(entries: &[Vec<u8>]) -> ContractLog {
    let id = contract().id();
    let mut log = ContractLog::default();
    for (i, e) in entries.iter().enumerate() {
        log.apply(&id, i as u64, e);
    }
    log
}

#[test]
fn progress_follows_the_placed_nodes_reports() {
    let c = contract();
    let base = vec![signed(&c, 1)];
    assert!(matches!(log_of(&base).progress(), Progress::Waiting(l) if l == "not placed"));
    let mut placed = base.clone();
    placed.push(signed(&placement(&c, 1, 7), 1));
    assert!(
        matches!(log_of(&placed).progress(), Progress::Waiting(l) if l.contains("waiting for its report"))
    );
    let mut fetching = placed.clone();
    fetching.push(signed(&report(&c, 7, 1, WorkloadState::Fetching, None), 7));
    assert!(
        matches!(log_of(&fetching).progress(), Progress::Waiting(l) if l.contains("app fetching"))
    );
    let mut running = fetching.clone();
    running.push(signed(&report(&c, 7, 2, WorkloadState::Running, None), 7));
    assert!(matches!(log_of(&running).progress(), Progress::Done(l) if l.contains("app running")));
    // An older report arriving later changes nothing.
    let mut stale = running.clone();
    stale.push(signed(&report(&c, 7, 1, WorkloadState::Fetching, None), 7));
    assert!(matches!(log_of(&stale).progress(), Progress::Done(_)));
    let mut refused = placed.clone();
    refused.push(signed(&report(&c, 7, 1, WorkloadState::Refused, None), 7));
    assert!(
        matches!(log_of(&refused).progress(), Progress::Failed(l) if l.contains("refused workload app: digest mismatch"))
    );
    let mut failed = placed.clone();
    failed.push(signed(&report(&c, 7, 1, WorkloadState::Exited, Some(3)), 7));
    assert!(
        matches!(log_of(&failed).progress(), Progress::Failed(l) if l.contains("exited with code 3"))
    );
    let mut crashing = placed.clone();
    crashing.push(signed(
        &report(&c, 7, 1, WorkloadState::Restarting, Some(1)),
        7,
    ));
    assert!(
        matches!(log_of(&crashing).progress(), Progress::Failed(l) if l.contains("exited with code 1 and is restarting"))
    );
    let mut done = placed.clone();
    done.push(signed(&report(&c, 7, 1, WorkloadState::Exited, Some(0)), 7));
    assert!(matches!(log_of(&done).progress(), Progress::Done(_)));
}

#[test]
fn a_report_of_a_node_no_longer_placed_does_not_count() {
    let c = contract();
    let entries = vec![
        signed(&c, 1),
        signed(&placement(&c, 1, 7), 1),
        signed(&report(&c, 7, 1, WorkloadState::Running, None), 7),
        signed(&placement(&c, 2, 8), 1),
    ];
    let log = log_of(&entries);
    assert_eq!(log.placement.as_ref().unwrap().node, key(8));
    assert!(matches!(log.progress(), Progress::Waiting(l) if l.contains("waiting for its report")));
}

#[test]
fn documents_of_other_contracts_and_forged_signers_are_skipped() {
    let c = contract();
    let mut other = contract();
    other.workloads[0].memory_mib = 128;
    let mut forged = placement(&c, 5, 9).to_document();
    forged.sign(&sk(9)).unwrap(); // not signed by the owner it names
    let entries = vec![
        signed(&c, 1),
        signed(&other, 1),
        signed(&placement(&other, 1, 7), 1),
        forged.encode(),
        b"garbage".to_vec(),
    ];
    let log = log_of(&entries);
    assert_eq!(log.versions.len(), 1);
    assert!(log.placement.is_none());
    assert_eq!(log.last_index, Some(4));
    assert_eq!(contract_of(&entries[2]), Some(other.id()));
    assert_eq!(contract_of(&entries[4]), None);
}

#[test]
fn cancellation_ends_it() {
    let c = contract();
    let cancel = Cancellation {
        version: 1,
        contract: c.id(),
        owner: c.owner,
        reason: "done".into(),
    };
    let log = log_of(&[
        signed(&c, 1),
        signed(&placement(&c, 1, 7), 1),
        signed(&cancel, 1),
    ]);
    assert!(matches!(log.progress(), Progress::Failed(l) if l.contains("cancelled")));
}

#[test]
fn tails_open_with_the_owners_key_only() {
    let c = contract();
    let id = c.id();
    let mut log = ContractLog::default();
    log.apply(&id, 0, &signed(&c, 1));
    let mut r = report(&c, 7, 3, WorkloadState::Restarting, Some(1));
    let context = r.tail_context("app");
    r.workloads[0].tail =
        Some(trust::grid::sealed::seal(&c.owner, [5; 32], &context, "app: boom").unwrap());
    log.apply(&id, 1, &signed(&r, 7));
    // A report of another node without a tail adds nothing.
    log.apply(
        &id,
        2,
        &signed(&report(&c, 8, 1, WorkloadState::Running, None), 8),
    );

    let tails = log.tails(&sk(1));
    assert_eq!(tails.len(), 1);
    assert_eq!(tails[0].report.node, key(7));
    assert_eq!(tails[0].workload.name, "app");
    assert_eq!(tails[0].text.as_deref(), Ok("app: boom"));

    let other = log.tails(&sk(2));
    assert_eq!(other[0].text, Err(SealError::Open));

    // A node that copies the tail into a later report of its own: it no longer opens.
    let mut copied = report(&c, 7, 4, WorkloadState::Running, None);
    copied.workloads[0].tail = r.workloads[0].tail.clone();
    log.apply(&id, 3, &signed(&copied, 7));
    assert_eq!(log.tails(&sk(1))[0].text, Err(SealError::Open));
}
