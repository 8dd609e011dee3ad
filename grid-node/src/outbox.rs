//! Everything the node signs and sends, on one thread: its registration (at start and whenever
//! its capacity changes), its lease (renewed every third of its length), and a status report
//! per contract on every change of a workload's state. A notary that is down or slow delays
//! these and nothing else: sends are retried with backoff and jitter, and the console gets one
//! line when the notary is lost and one when it is back.
//!
//! A workload's console tail ([`ConsoleTail`]) arrives in clear from its supervisor and is kept
//! here, on the node, until the contract's version changes; every report that carries it seals
//! it anew to the contract's owner for that report's sequence (`trust::grid::sealed`), with a
//! fresh ephemeral key. Only the sealed bytes leave the node.

use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use notary_client::{Client, ClientError};
use trust::grid::{
    sealed, Capacity, ContractId, Lease, NodeRegistration, StatusReport, WorkloadStatus,
};
use trust::{PublicKey, SignedBody, SignedDocument};

use crate::backoff::{random_u64, Backoff, Change};
use crate::identity::Identity;
use crate::state::Sequencer;
use crate::{Console, Settings};

/// What the other threads hand the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// The node's capacity as probed now (re-registered if it changed).
    Capacity(Capacity),
    /// The whole report of a contract (accepted, fetching, refused, stopped).
    Contract {
        /// The contract.
        contract: ContractId,
        /// The version the node runs or judged.
        version: u64,
        /// Every workload's status.
        workloads: Vec<WorkloadStatus>,
    },
    /// One workload's new status (running, exited, restarting), from its supervisor.
    Workload {
        /// The contract.
        contract: ContractId,
        /// The version it runs.
        version: u64,
        /// Its status.
        status: WorkloadStatus,
        /// The last lines of its console, when its VM just ended: replaces the one kept.
        console: Option<ConsoleTail>,
    },
}

/// The last lines of a contract workload's console, in clear, on their way to be sealed.
#[derive(Clone, PartialEq, Eq)]
pub struct ConsoleTail {
    /// The contract's owner, the one key the tail is sealed to.
    pub owner: PublicKey,
    /// The lines, already bounded (`trust::grid::sealed::bounded_tail`).
    pub text: String,
}

impl std::fmt::Debug for ConsoleTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the lines themselves: only the owner reads them.
        f.debug_struct("ConsoleTail")
            .field("owner", &self.owner)
            .field("bytes", &self.text.len())
            .finish()
    }
}

/// Seals each kept tail of `report`'s workloads into it, each with a fresh ephemeral secret
/// from `random`; a tail that cannot be sealed (no randomness, over the bounds) is left out.
pub fn seal_tails(
    report: &mut StatusReport,
    tails: &BTreeMap<String, ConsoleTail>,
    mut random: impl FnMut() -> Option<[u8; 32]>,
) {
    let context = report.clone();
    for status in &mut report.workloads {
        status.tail = tails.get(&status.name).and_then(|tail| {
            let ephemeral = random()?;
            sealed::seal(
                &tail.owner,
                ephemeral,
                &context.tail_context(&status.name),
                &tail.text,
            )
            .ok()
        });
    }
}

/// 32 bytes from the operating system's RNG, if it gives them.
fn random_secret() -> Option<[u8; 32]> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).ok().map(|()| bytes)
}

/// A handle to send status changes to the outbox; cheap to clone, for supervisor threads.
#[derive(Debug, Clone)]
pub struct Reports {
    tx: Sender<Outgoing>,
}

impl Reports {
    /// A handle on `tx`.
    pub fn new(tx: Sender<Outgoing>) -> Reports {
        Reports { tx }
    }

    /// Queues a change; silently dropped once the outbox has ended (the node is going down).
    pub fn send(&self, outgoing: Outgoing) {
        let _ = self.tx.send(outgoing);
    }
}

#[derive(Debug)]
struct ContractReport {
    version: u64,
    workloads: BTreeMap<String, WorkloadStatus>,
    /// The last console tail of each workload of this version, in clear (sealed per report).
    tails: BTreeMap<String, ConsoleTail>,
    dirty: bool,
}

/// The outbox's state.
pub struct Outbox {
    client: Client,
    identity: Identity,
    settings: Settings,
    console: Arc<dyn Console>,
    sequencer: Sequencer,
    capacity: Option<Capacity>,
    registered: Option<Capacity>,
    lease_due: Instant,
    reports: BTreeMap<ContractId, ContractReport>,
    backoff: Backoff,
    retry_at: Option<Instant>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("node", &self.identity.public)
            .finish_non_exhaustive()
    }
}

/// Seconds since the Unix epoch by the node's clock.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Outbox {
    /// The outbox of `identity` for the notary `client` talks to.
    pub fn new(
        client: Client,
        identity: Identity,
        settings: Settings,
        console: Arc<dyn Console>,
        sequencer: Sequencer,
    ) -> Outbox {
        Outbox {
            client,
            identity,
            settings,
            console,
            sequencer,
            capacity: None,
            registered: None,
            lease_due: Instant::now(),
            reports: BTreeMap::new(),
            backoff: Backoff::default(),
            retry_at: None,
        }
    }

    fn apply(&mut self, message: Outgoing) {
        match message {
            Outgoing::Capacity(c) => self.capacity = Some(c),
            Outgoing::Contract {
                contract,
                version,
                workloads,
            } => {
                // The tails of the same version stay (a stopped report keeps the last lines).
                let tails = self
                    .reports
                    .remove(&contract)
                    .filter(|r| r.version == version)
                    .map(|r| r.tails)
                    .unwrap_or_default();
                self.reports.insert(
                    contract,
                    ContractReport {
                        version,
                        workloads: workloads.into_iter().map(|w| (w.name.clone(), w)).collect(),
                        tails,
                        dirty: true,
                    },
                );
            }
            Outgoing::Workload {
                contract,
                version,
                status,
                console,
            } => {
                let report = self.reports.entry(contract).or_insert(ContractReport {
                    version,
                    workloads: BTreeMap::new(),
                    tails: BTreeMap::new(),
                    dirty: true,
                });
                if report.version != version {
                    // A status of a version the node has since replaced: stale.
                    if version < report.version {
                        return;
                    }
                    report.version = version;
                    report.workloads.clear();
                    report.tails.clear();
                }
                if let Some(tail) = console {
                    report.tails.insert(status.name.clone(), tail);
                }
                report.workloads.insert(status.name.clone(), status);
                report.dirty = true;
            }
        }
    }

    /// Runs until every sender is gone.
    pub fn run(mut self, rx: Receiver<Outgoing>) {
        let lease_period = Duration::from_secs((self.settings.lease_secs / 3).max(1));
        loop {
            let now = Instant::now();
            let wake = self.retry_at.unwrap_or(self.lease_due);
            match rx.recv_timeout(wake.saturating_duration_since(now)) {
                Ok(message) => {
                    self.apply(message);
                    while let Ok(message) = rx.try_recv() {
                        self.apply(message);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            if self.retry_at.is_some_and(|at| Instant::now() < at) {
                continue;
            }
            match self.flush(lease_period) {
                Ok(()) => {
                    self.retry_at = None;
                    if self.backoff.succeeded() == Change::Regained {
                        self.console.line(&format!(
                            "nullos: notary {} reachable again",
                            self.settings.notary_url
                        ));
                    }
                }
                Err(e) => {
                    let (delay, change) = self.backoff.failed(random_u64());
                    if change == Change::Lost {
                        self.console.line(&format!(
                            "nullos: notary {} unreachable ({}); retrying with backoff",
                            self.settings.notary_url,
                            error_line(&e)
                        ));
                    }
                    self.retry_at = Some(Instant::now() + delay);
                }
            }
        }
    }

    fn sign<B: SignedBody>(&self, body: &B) -> Option<Vec<u8>> {
        let mut document: SignedDocument = body.to_document();
        match document.sign(self.identity.secret()) {
            Ok(()) => Some(document.encode()),
            Err(e) => {
                self.console.debug(&format!("sign {}: {e}", B::KIND.name()));
                None
            }
        }
    }

    fn sequence(&mut self) -> u64 {
        match self.sequencer.next_sequence() {
            Ok(n) => n,
            Err(e) => {
                self.console.debug(&format!(
                    "node state: {}; sequence from the clock",
                    error_line(&e)
                ));
                unix_now().saturating_mul(1000)
            }
        }
    }

    /// Sends what is due; a transport failure stops the round (it is retried as a whole).
    fn flush(&mut self, lease_period: Duration) -> Result<(), ClientError> {
        if let Some(capacity) = self.capacity.clone() {
            if self.registered.as_ref() != Some(&capacity) {
                self.register(capacity)?;
            }
        }
        if self.registered.is_some() && Instant::now() >= self.lease_due {
            let lease = Lease {
                sequence: self.sequence(),
                node: self.identity.public,
                expires: unix_now().saturating_add(self.settings.lease_secs),
            };
            if let Some(bytes) = self.sign(&lease) {
                match self.client.renew_lease(&bytes) {
                    Ok(_) => {}
                    Err(e @ ClientError::Refused { .. }) => {
                        self.console
                            .debug(&format!("lease refused: {}", error_line(&e)));
                    }
                    Err(e) => return Err(e),
                }
            }
            self.lease_due = Instant::now() + lease_period;
        }
        let dirty: Vec<ContractId> = self
            .reports
            .iter()
            .filter(|(_, r)| r.dirty)
            .map(|(id, _)| *id)
            .collect();
        for contract in dirty {
            let Some((version, workloads, tails)) = self.reports.get(&contract).map(|r| {
                (
                    r.version,
                    r.workloads.values().cloned().collect(),
                    r.tails.clone(),
                )
            }) else {
                continue;
            };
            let mut body = StatusReport {
                sequence: self.sequence(),
                node: self.identity.public,
                contract,
                version,
                workloads,
            };
            seal_tails(&mut body, &tails, random_secret);
            if let Some(bytes) = self.sign(&body) {
                match self.client.submit(&bytes) {
                    Ok(_) => {}
                    Err(e @ ClientError::Refused { .. }) => self.console.debug(&format!(
                        "status report on contract {contract} refused: {}",
                        error_line(&e)
                    )),
                    Err(e) => return Err(e),
                }
            }
            if let Some(report) = self.reports.get_mut(&contract) {
                report.dirty = false;
            }
        }
        Ok(())
    }

    fn register(&mut self, capacity: Capacity) -> Result<(), ClientError> {
        let registration = NodeRegistration {
            sequence: self.sequence(),
            node: self.identity.public,
            farm: self.settings.farm,
            capacity: capacity.clone(),
            release_version: self.settings.release_version,
            release_manifest: self.settings.release_manifest,
        };
        let Some(bytes) = self.sign(&registration) else {
            self.registered = Some(capacity);
            return Ok(());
        };
        match self.client.submit(&bytes) {
            Ok(_) => {
                self.console.line(&format!(
                    "nullos: registered node={} farm={} notary={} cpus={} memory_mib={} disk_mib={}",
                    self.identity.id_hex(),
                    hex::encode(self.settings.farm.as_bytes()),
                    self.settings.notary_url,
                    capacity.cpus,
                    capacity.memory_mib,
                    capacity.disk_mib(),
                ));
                // A new registration: renew the lease now.
                self.lease_due = Instant::now();
            }
            Err(e @ ClientError::Refused { .. }) => {
                self.console.line(&format!(
                    "nullos: registration refused by notary {}: {}",
                    self.settings.notary_url,
                    error_line(&e)
                ));
            }
            Err(e) => return Err(e),
        }
        self.registered = Some(capacity);
        Ok(())
    }
}

/// An error and its causes on one line.
pub fn error_line(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        line.push_str(": ");
        line.push_str(&s.to_string());
        source = s.source();
    }
    line.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use trust::grid::{sealed, WorkloadState};
    use trust::{Digest, SecretKey};

    use super::*;

    fn status(name: &str) -> WorkloadStatus {
        WorkloadStatus {
            name: name.into(),
            state: WorkloadState::Exited,
            exit_code: Some(1),
            restarts: 0,
            reason: String::new(),
            tail: None,
        }
    }

    #[test]
    fn kept_tails_are_sealed_to_the_owner_for_this_report() {
        let owner = SecretKey::from_seed([3; 32]);
        let mut report = StatusReport {
            sequence: 9,
            node: SecretKey::from_seed([1; 32]).public(),
            contract: ContractId(Digest::of(b"c")),
            version: 2,
            workloads: vec![status("a"), status("b")],
        };
        let tails = BTreeMap::from([(
            "b".to_owned(),
            ConsoleTail {
                owner: owner.public(),
                text: "b: bye".into(),
            },
        )]);
        let mut draws = 0u8;
        seal_tails(&mut report, &tails, || {
            draws += 1;
            Some([draws; 32])
        });
        assert_eq!(draws, 1, "one ephemeral key per tail");
        assert_eq!(report.workloads[0].tail, None);
        let sealed_b = report.workloads[1].tail.clone().expect("b has a tail");
        assert_eq!(
            sealed::open(&owner, &report.tail_context("b"), &sealed_b).as_deref(),
            Ok("b: bye")
        );
        // The next report seals it anew, for its own sequence.
        let mut next = report.clone();
        next.sequence = 10;
        seal_tails(&mut next, &tails, || Some([7; 32]));
        let sealed_next = next.workloads[1].tail.clone().expect("tail");
        assert_ne!(sealed_next, sealed_b);
        assert!(sealed::open(&owner, &report.tail_context("b"), &sealed_next).is_err());
        assert!(sealed::open(&owner, &next.tail_context("b"), &sealed_next).is_ok());
        // Without randomness there is no tail rather than a reused key.
        seal_tails(&mut next, &tails, || None);
        assert_eq!(next.workloads[1].tail, None);
    }

    #[test]
    fn a_tail_never_shows_in_debug_output() {
        let tail = ConsoleTail {
            owner: SecretKey::from_seed([3; 32]).public(),
            text: "secret line".into(),
        };
        assert!(!format!("{tail:?}").contains("secret"));
    }
}
