//! A simulated node: the node protocol of docs/NOTARY.md without a machine behind it. The
//! grid tests start them in threads; `cargo run --release -p agent --example sim-node` runs one
//! for the walk-through of docs/AGENT.md.
//!
//! - it registers (`NodeRegistration`; its counters start from the clock, so a restarted
//!   node's documents are newer) naming its farm, with its capacity;
//! - it renews a short lease (`Lease`, expiring 5 s ahead) every second on its own thread,
//!   until told
//!   to stop (a node that went silent);
//! - it long-polls `node/<key hex>` for what it must act on; for a `Placement` naming it, it
//!   reads the contract's entries (`contract/<id hex>`), checks what a node checks (the
//!   placement is the owner's on that version, the approvals meet the policy, the workload
//!   manifests are in the blob store, hashing to their names) and reports (`StatusReport`,
//!   its sequence growing per contract): accepted, then running, or refused with the reason,
//!   or a workload that keeps failing (restarting with a growing count, exit code 1);
//! - a `Cancellation` of a contract it runs makes it report the workloads stopped;
//! - like the real node, a report of a workload whose VM ended (restarting, exited, stopped)
//!   carries its console's last lines sealed to the contract's owner (`trust::grid::sealed`,
//!   a fresh ephemeral key from the OS RNG per tail): `<name>: console of version <v>` then
//!   `<name>: <reason>`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use notary_client::Client;
use trust::grid::rules::{approvals_satisfy, placement_by_owner};
use trust::grid::sealed;
use trust::grid::{
    Approval, Cancellation, Capacity, Contract, ContractId, Disk, Lease, NodeRegistration,
    Placement, StatusReport, WorkloadState, WorkloadStatus,
};
use trust::{
    verify_named, Digest, DocumentKind, NamedSigner, PublicKey, SecretKey, SignedDocument,
};

/// What the node does with the workloads it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Runs them.
    Run,
    /// Their VMs keep exiting with code 1 (reports restarting, restarts 1, 2, 3, ...).
    Crash,
}

/// The shape of a node.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub cpus: u32,
    pub memory_mib: u64,
    pub disk_mib: u64,
}

/// A simulated node's thread; stopped on drop.
pub struct SimNode {
    pub key: PublicKey,
    lease: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl SimNode {
    /// Registers node `seed` (its key made from the seed) of farm `farm` and starts its loop.
    pub fn start(
        url: &str,
        notary: &PublicKey,
        seed: u8,
        farm: PublicKey,
        shape: Shape,
        behaviour: Behaviour,
    ) -> SimNode {
        SimNode::start_with_key(
            url,
            notary,
            SecretKey::from_seed([seed; 32]),
            farm,
            shape,
            behaviour,
        )
    }

    /// Registers the node of key `secret` in farm `farm` and starts its loop.
    pub fn start_with_key(
        url: &str,
        notary: &PublicKey,
        secret: SecretKey,
        farm: PublicKey,
        shape: Shape,
        behaviour: Behaviour,
    ) -> SimNode {
        let key = secret.public();
        let client = Client::new(url, notary).unwrap();
        // Counters from the clock (milliseconds), so a restarted node's documents are newer.
        let start = unix_millis();
        let registration = NodeRegistration {
            sequence: start,
            node: key,
            farm,
            capacity: Capacity {
                cpus: shape.cpus,
                memory_mib: shape.memory_mib,
                disks: vec![Disk {
                    name: "vdb".into(),
                    size_mib: shape.disk_mib,
                }],
                nics: vec![],
            },
            release_version: 1,
            release_manifest: Digest::of(b"sim release"),
        };
        if let Err(e) = client.submit(&signed(&registration, &secret)) {
            panic!("the notary refused node {key}'s registration: {e}");
        }
        let lease = Arc::new(AtomicBool::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        let secret = Arc::new(secret);
        // Leases on their own thread and connection, so a slow poll never lets one lapse.
        let mut leaser = Leaser {
            client: client.clone(),
            secret: Arc::clone(&secret),
            sequence: start,
        };
        // The first lease before returning, so a placement can follow at once.
        leaser.renew();
        let (l, st) = (Arc::clone(&lease), Arc::clone(&stop));
        let lease_thread = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_secs(1));
                if l.load(Ordering::SeqCst) {
                    leaser.renew();
                }
            }
        });
        let mut node = Node {
            client,
            secret,
            key,
            behaviour,
            report_sequence: BTreeMap::new(),
            running: BTreeMap::new(),
        };
        let st = Arc::clone(&stop);
        let poll_thread = std::thread::spawn(move || node.run(&st));
        SimNode {
            key,
            lease,
            stop,
            threads: vec![lease_thread, poll_thread],
        }
    }

    /// The node goes silent: no more leases (it keeps its connection otherwise).
    pub fn stop_lease(&self) {
        self.lease.store(false, Ordering::SeqCst);
    }
}

impl Drop for SimNode {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

pub fn signed<B: NamedSigner>(body: &B, key: &SecretKey) -> Vec<u8> {
    let mut d = body.to_document();
    d.sign(key).unwrap();
    d.encode()
}

fn unix_millis() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Seconds a lease runs past its renewal (renewed every second).
const LEASE_SECS: u64 = 5;

/// The lease side of a node.
struct Leaser {
    client: Client,
    secret: Arc<SecretKey>,
    sequence: u64,
}

impl Leaser {
    fn renew(&mut self) {
        self.sequence += 1;
        let lease = Lease {
            sequence: self.sequence,
            node: self.secret.public(),
            expires: unix_now() + LEASE_SECS,
        };
        // A refused renewal is retried with the next sequence.
        let _ = self.client.renew_lease(&signed(&lease, &self.secret));
    }
}

struct Node {
    client: Client,
    secret: Arc<SecretKey>,
    key: PublicKey,
    behaviour: Behaviour,
    report_sequence: BTreeMap<ContractId, u64>,
    /// Contracts it runs, with the restarts counted so far (Crash).
    running: BTreeMap<ContractId, (Contract, u32)>,
}

impl Node {
    fn run(&mut self, stop: &AtomicBool) {
        let feed = format!("node/{}", hex::encode(self.key.as_bytes()));
        let mut after: Option<u64> = None;
        let mut next_crash = Instant::now() + Duration::from_secs(1);
        while !stop.load(Ordering::SeqCst) {
            if Instant::now() >= next_crash {
                // A crashing workload crashes again every second.
                self.crash_again();
                next_crash = Instant::now() + Duration::from_secs(1);
            }
            let Ok(entries) = self.client.wait(&feed, after, Duration::from_secs(1)) else {
                std::thread::sleep(Duration::from_millis(200));
                continue;
            };
            for (index, data) in entries {
                after = Some(index);
                self.act(&data);
            }
        }
    }

    fn act(&mut self, data: &[u8]) {
        let Ok(d) = SignedDocument::decode(data) else {
            return;
        };
        match d.kind() {
            DocumentKind::Placement => {
                let Ok(p) = verify_named::<Placement>(data) else {
                    return;
                };
                let p = p.body;
                if p.node == self.key {
                    self.placed(&p);
                } else {
                    // Moved away: the old node stops it (its reports are no longer taken).
                    self.running.remove(&p.contract);
                }
            }
            DocumentKind::Cancellation => {
                let Ok(c) = verify_named::<Cancellation>(data) else {
                    return;
                };
                if let Some((contract, _)) = self.running.remove(&c.body.contract) {
                    self.report(
                        &contract,
                        WorkloadState::Stopped,
                        None,
                        0,
                        "cancelled by its owner",
                    );
                }
            }
            _ => {}
        }
    }

    /// The contract's entries: its versions and approvals.
    fn contract_entries(&self, id: &ContractId) -> (Vec<Contract>, Vec<Approval>) {
        let key = format!("contract/{}", id.0.to_hex());
        let (mut versions, mut approvals) = (Vec::new(), Vec::new());
        let mut after = None;
        while let Ok(page) = self.client.wait(&key, after, Duration::ZERO) {
            let Some(&(last, _)) = page.last() else { break };
            after = Some(last);
            for (_, data) in page {
                if let Ok(c) = verify_named::<Contract>(&data) {
                    versions.push(c.body);
                } else if let Ok(a) = verify_named::<Approval>(&data) {
                    approvals.push(a.body);
                }
            }
        }
        (versions, approvals)
    }

    fn placed(&mut self, p: &Placement) {
        let (versions, approvals) = self.contract_entries(&p.contract);
        let Some(contract) = versions.into_iter().find(|c| c.version == p.version) else {
            return;
        };
        if placement_by_owner(&contract, p).is_err() {
            return;
        }
        self.report(&contract, WorkloadState::Accepted, None, 0, "");
        if let Err(e) = approvals_satisfy(&contract, &approvals) {
            self.report(&contract, WorkloadState::Refused, None, 0, &e.to_string());
            return;
        }
        for w in &contract.workloads {
            let mut sink = std::io::sink();
            if let Err(e) = self.client.get_blob(&w.manifest, 1 << 20, &mut sink) {
                let reason = format!("workload manifest {} cannot be fetched: {e}", w.manifest);
                self.report(&contract, WorkloadState::Refused, None, 0, &reason);
                return;
            }
        }
        self.report(&contract, WorkloadState::Fetching, None, 0, "");
        match self.behaviour {
            Behaviour::Run => self.report(&contract, WorkloadState::Running, None, 0, ""),
            Behaviour::Crash => self.report(
                &contract,
                WorkloadState::Restarting,
                Some(1),
                1,
                "exited with code 1",
            ),
        }
        let restarts = u32::from(self.behaviour == Behaviour::Crash);
        self.running.insert(contract.id(), (contract, restarts));
    }

    fn crash_again(&mut self) {
        if self.behaviour != Behaviour::Crash {
            return;
        }
        let running: Vec<(Contract, u32)> = self.running.values().cloned().collect();
        for (contract, restarts) in running {
            let restarts = restarts + 1;
            self.running
                .insert(contract.id(), (contract.clone(), restarts));
            self.report(
                &contract,
                WorkloadState::Restarting,
                Some(1),
                restarts,
                "exited with code 1",
            );
        }
    }

    fn report(
        &mut self,
        contract: &Contract,
        state: WorkloadState,
        exit_code: Option<i32>,
        restarts: u32,
        reason: &str,
    ) {
        let id = contract.id();
        let sequence = self.report_sequence.entry(id).or_insert(0);
        *sequence += 1;
        let mut report = StatusReport {
            sequence: *sequence,
            node: self.key,
            contract: id,
            version: contract.version,
            workloads: contract
                .workloads
                .iter()
                .map(|w| WorkloadStatus {
                    name: w.name.clone(),
                    state,
                    exit_code,
                    restarts,
                    reason: reason.chars().take(200).collect(),
                    tail: None,
                })
                .collect(),
        };
        let ended = matches!(
            state,
            WorkloadState::Restarting | WorkloadState::Exited | WorkloadState::Stopped
        );
        if ended {
            let context = report.clone();
            for w in &mut report.workloads {
                let text = format!(
                    "{0}: console of version {1}\n{0}: {2}",
                    w.name,
                    contract.version,
                    if reason.is_empty() {
                        state.name()
                    } else {
                        reason
                    }
                );
                let mut ephemeral = [0u8; 32];
                getrandom::getrandom(&mut ephemeral).expect("the OS RNG");
                let tail = sealed::seal(
                    &contract.owner,
                    ephemeral,
                    &context.tail_context(&w.name),
                    &sealed::bounded_tail(&text.lines().collect::<Vec<_>>()),
                );
                w.tail = Some(tail.expect("a bounded tail seals"));
            }
        }
        // Refused when the contract was moved away meanwhile: the node then stops reporting.
        let _ = self.client.submit(&signed(&report, &self.secret));
    }
}
