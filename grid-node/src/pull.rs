//! The pull loop (outbound only): long-poll the notary for what concerns this node, verify,
//! judge, reconcile, act.
//!
//! Every round: wait on `node/<key hex>` after the last index seen; take the notary's latest
//! checkpoint and check it against the pinned key and, with a consistency proof, against the
//! checkpoint the node kept (persisted, so this holds across reboots); read every new document
//! of each contract concerned from `contract/<id hex>`, each checked into that checkpoint with
//! an inclusion proof and verified against its signer; then judge every known contract
//! ([`crate::judge`]), reconcile ([`crate::reconcile`]) and act: fetch the artifacts, start,
//! replace, or stop and remove. A notary that is down or lying stops progress, never what runs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use notary_client::{Client, ClientError};
use tlog::{leaf_hash, verify_inclusion, Checkpoint};
use trust::grid::{
    Capacity, Contract, ContractId, NodeRegistration, Resources, WorkloadState, WorkloadStatus,
};
use trust::{DocumentKind, PublicKey, SignedDocument, WorkloadManifest};

use crate::backoff::{random_u64, Backoff};
use crate::blobs::{BlobCache, BlobError};
use crate::documents::{self, ContractView};
use crate::judge::{judge, NodeFacts, Verdict};
use crate::outbox::{error_line, Outgoing, Reports};
use crate::reconcile::{reconcile, Action, Want};
use crate::state::StateDir;
use crate::{Console, Deployment, PreparedWorkload, Runner, Settings};

/// The largest workload manifest blob fetched.
pub const MAX_MANIFEST_BLOB: u64 = 256 * 1024;

/// The node's side of the log: the kept checkpoint, cursors and views.
pub struct PullLoop {
    client: Client,
    node: PublicKey,
    settings: Settings,
    console: Arc<dyn Console>,
    state: StateDir,
    blobs: BlobCache,
    reports: Reports,
    runner: Box<dyn Runner>,
    capacity: Box<dyn FnMut() -> Option<Capacity> + Send>,
    checkpoint: Option<Checkpoint>,
    cursor: Option<u64>,
    views: BTreeMap<ContractId, (ContractView, Option<u64>)>,
    running: BTreeMap<ContractId, Contract>,
    /// Versions refused for good (a bad artifact): not tried again.
    refused: BTreeMap<ContractId, (u64, String)>,
    /// The last verdict line said per contract, so each is said once.
    said: BTreeMap<ContractId, String>,
    /// Non-owner placements already reported.
    rejected_seen: BTreeSet<(ContractId, u64)>,
    /// The last checkpoint refusal said.
    checkpoint_said: Option<String>,
    registration: Option<NodeRegistration>,
    backoff: Backoff,
}

impl std::fmt::Debug for PullLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullLoop")
            .field("node", &self.node)
            .field("cursor", &self.cursor)
            .finish_non_exhaustive()
    }
}

/// Why a round ended early.
#[derive(Debug, thiserror::Error)]
pub enum RoundError {
    /// The notary could not be reached or answered nonsense.
    #[error("notary")]
    Notary(#[source] ClientError),
    /// The notary's checkpoint does not verify or does not extend the kept one.
    #[error("the notary's checkpoint is refused")]
    Checkpoint(#[source] ClientError),
    /// A proof of an entry did not verify.
    #[error("entry {index} is not proven in the checkpoint")]
    Inclusion {
        /// The entry.
        index: u64,
        /// Why.
        #[source]
        source: tlog::ProofError,
    },
    /// The kept checkpoint could not be written.
    #[error("keep the checkpoint")]
    State(#[source] crate::state::StateError),
}

impl PullLoop {
    /// A loop for `node`; `capacity` probes the node's capacity each round.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: Client,
        node: PublicKey,
        settings: Settings,
        console: Arc<dyn Console>,
        state: StateDir,
        blobs: BlobCache,
        reports: Reports,
        runner: Box<dyn Runner>,
        capacity: Box<dyn FnMut() -> Option<Capacity> + Send>,
        checkpoint: Option<Checkpoint>,
    ) -> PullLoop {
        PullLoop {
            client,
            node,
            settings,
            console,
            state,
            blobs,
            reports,
            runner,
            capacity,
            checkpoint,
            cursor: None,
            views: BTreeMap::new(),
            running: BTreeMap::new(),
            refused: BTreeMap::new(),
            said: BTreeMap::new(),
            rejected_seen: BTreeSet::new(),
            checkpoint_said: None,
            registration: None,
            backoff: Backoff::default(),
        }
    }

    /// Runs rounds forever, backing off after a failed one.
    pub fn run(mut self) {
        loop {
            let wait = Duration::from_secs(self.settings.wait_secs);
            match self.round(wait) {
                Ok(()) => {
                    self.backoff.succeeded();
                }
                Err(e) => {
                    self.console.debug(&format!("pull: {}", error_line(&e)));
                    let (delay, _) = self.backoff.failed(random_u64());
                    std::thread::sleep(delay);
                }
            }
        }
    }

    /// One round: wait for news (up to `wait`), verify, judge, reconcile, act.
    pub fn round(&mut self, wait: Duration) -> Result<(), RoundError> {
        if let Some(capacity) = (self.capacity)() {
            self.registration = Some(NodeRegistration {
                sequence: 1,
                node: self.node,
                farm: self.settings.farm,
                capacity: capacity.clone(),
                release_version: self.settings.release_version,
                release_manifest: self.settings.release_manifest,
            });
            self.reports.send(Outgoing::Capacity(capacity));
        }
        let key = format!("node/{}", hex::encode(self.node.as_bytes()));
        let entries = self
            .client
            .wait(&key, self.cursor, wait)
            .map_err(RoundError::Notary)?;
        let checkpoint = self.verified_checkpoint()?;
        let mut touched = BTreeSet::new();
        for (index, data) in &entries {
            if *index >= checkpoint.size {
                break;
            }
            self.cursor = Some(self.cursor.map_or(*index, |c| c.max(*index)));
            match documents::open(data) {
                Ok(document) => {
                    if let Some(id) = document.contract() {
                        touched.insert(id);
                    }
                }
                Err(e) => self
                    .console
                    .debug(&format!("entry {index}: {}", error_line(&e))),
            }
        }
        for id in touched {
            self.refresh(id, &checkpoint)?;
        }
        self.act();
        Ok(())
    }

    /// The latest checkpoint, verified and consistent with the kept one; kept in turn.
    fn verified_checkpoint(&mut self) -> Result<Checkpoint, RoundError> {
        let fetched = match &self.checkpoint {
            Some(kept) => self.client.checkpoint_extending(kept),
            None => self.client.checkpoint(),
        };
        let (checkpoint, note) = match fetched {
            Ok(fetched) => fetched,
            Err(e @ ClientError::Transport { .. }) => return Err(RoundError::Notary(e)),
            Err(e) => {
                let why = match &e {
                    ClientError::Checkpoint(inner) => error_line(inner),
                    other => error_line(other),
                };
                let line =
                    format!("nullos: notary checkpoint refused: {why}; nothing new is acted on");
                if self.checkpoint_said.as_deref() != Some(line.as_str()) {
                    self.console.line(&line);
                    self.checkpoint_said = Some(line);
                }
                return Err(RoundError::Checkpoint(e));
            }
        };
        self.checkpoint_said = None;
        if self.checkpoint.as_ref() != Some(&checkpoint) {
            self.state
                .keep_checkpoint(&note)
                .map_err(RoundError::State)?;
        }
        self.checkpoint = Some(checkpoint.clone());
        Ok(checkpoint)
    }

    /// Reads the contract's new documents, each proven into `checkpoint`.
    fn refresh(&mut self, id: ContractId, checkpoint: &Checkpoint) -> Result<(), RoundError> {
        let key = format!("contract/{}", id.0.to_hex());
        let (mut view, mut cursor) = self
            .views
            .remove(&id)
            .unwrap_or_else(|| (ContractView::new(id), None));
        let result = loop {
            let page = match self.client.wait(&key, cursor, Duration::ZERO) {
                Ok(page) => page,
                Err(e) => break Err(RoundError::Notary(e)),
            };
            let mut progressed = false;
            let mut failed = None;
            for (index, data) in page {
                if index >= checkpoint.size {
                    break;
                }
                let proof = match self.client.inclusion_proof(index, checkpoint.size) {
                    Ok(proof) => proof,
                    Err(e) => {
                        failed = Some(RoundError::Notary(e));
                        break;
                    }
                };
                if let Err(source) = verify_inclusion(
                    index,
                    checkpoint.size,
                    &leaf_hash(&data),
                    &proof,
                    &checkpoint.root,
                ) {
                    failed = Some(RoundError::Inclusion { index, source });
                    break;
                }
                match documents::open(&data) {
                    Ok(document) => view.add(document),
                    Err(e) => self
                        .console
                        .debug(&format!("contract {id} entry {index}: {}", error_line(&e))),
                }
                cursor = Some(index);
                progressed = true;
            }
            if let Some(e) = failed {
                break Err(e);
            }
            if !progressed {
                break Ok(());
            }
        };
        for why in view.ignored.drain(..) {
            self.console.debug(&format!("contract {id}: ignored {why}"));
        }
        self.views.insert(id, (view, cursor));
        result
    }

    fn resources_except(&self, id: &ContractId) -> Resources {
        self.running
            .iter()
            .filter(|(other, _)| *other != id)
            .fold(Resources::default(), |sum, (_, c)| sum.plus(c.resources()))
    }

    /// Judges every known contract, reconciles, and acts.
    fn act(&mut self) {
        let Some(registration) = self.registration.clone() else {
            return;
        };
        let mut wanted = BTreeMap::new();
        let mut to_run = BTreeMap::new();
        let ids: Vec<ContractId> = self.views.keys().copied().collect();
        for id in ids {
            let Some(view) = self.views.get(&id).map(|(view, _)| view.clone()) else {
                continue;
            };
            self.report_rejected(view.clone());
            let facts = NodeFacts {
                node: &self.node,
                registration: &registration,
                others: self.resources_except(&id),
                running: self.running.get(&id).map(|c| c.version),
            };
            let verdict = judge(&view, &facts);
            let want = match verdict {
                Verdict::NotHere | Verdict::Cancelled => Want::Gone,
                Verdict::Keep => Want::Keep,
                Verdict::Refuse { version, reason } => {
                    let workloads = workload_names(&view, version);
                    self.refuse(id, version, workloads, &reason);
                    Want::Keep
                }
                Verdict::Run { contract, .. } => match self.refused.get(&id) {
                    Some((v, _)) if *v == contract.version => Want::Keep,
                    _ => {
                        let version = contract.version;
                        to_run.insert(id, *contract);
                        Want::Run(version)
                    }
                },
            };
            wanted.insert(id, want);
        }
        let running: BTreeMap<ContractId, u64> = self
            .running
            .iter()
            .map(|(id, c)| (*id, c.version))
            .collect();
        for action in reconcile(&wanted, &running) {
            match action {
                Action::Start { contract, .. } | Action::Replace { contract, .. } => {
                    if let Some(c) = to_run.remove(&contract) {
                        self.deploy(contract, c);
                    }
                }
                Action::Remove { contract, version } => self.remove(contract, version),
            }
        }
    }

    fn say_once(&mut self, id: ContractId, line: String) {
        if self.said.get(&id) != Some(&line) {
            self.console.line(&line);
            self.said.insert(id, line);
        }
    }

    fn refuse(&mut self, id: ContractId, version: u64, workloads: Vec<String>, reason: &str) {
        let line = format!("nullos: contract {id} version {version} refused {reason}");
        if self.said.get(&id) == Some(&line) {
            return;
        }
        self.say_once(id, line);
        self.reports.send(Outgoing::Contract {
            contract: id,
            version,
            workloads: statuses(&workloads, WorkloadState::Refused, reason),
        });
    }

    fn report_rejected(&mut self, view: ContractView) {
        let Some((placement, reason)) = view.rejected.clone() else {
            return;
        };
        if placement.node != self.node
            || !self
                .rejected_seen
                .insert((placement.contract, placement.sequence))
        {
            return;
        }
        let workloads = workload_names(&view, placement.version);
        let line = format!(
            "nullos: contract {} version {} refused {reason}",
            placement.contract, placement.version
        );
        self.console.line(&line);
        self.reports.send(Outgoing::Contract {
            contract: placement.contract,
            version: placement.version,
            workloads: statuses(&workloads, WorkloadState::Refused, &reason),
        });
    }

    /// Accepts, fetches, checks and starts (or replaces) a version.
    fn deploy(&mut self, id: ContractId, contract: Contract) {
        let version = contract.version;
        let names: Vec<String> = contract.workloads.iter().map(|w| w.name.clone()).collect();
        self.say_once(
            id,
            format!("nullos: contract {id} version {version} accepted"),
        );
        self.reports.send(Outgoing::Contract {
            contract: id,
            version,
            workloads: statuses(&names, WorkloadState::Fetching, ""),
        });
        let mut prepared = Vec::new();
        for workload in &contract.workloads {
            match self.fetch(workload) {
                Ok(p) => prepared.push(p),
                Err(Fetch::Later(reason)) => {
                    self.console.debug(&format!(
                        "contract {id} version {version}: {reason}; trying again next round"
                    ));
                    return;
                }
                Err(Fetch::Refused(reason)) => {
                    let reason = format!("workload {}: {reason}", workload.name);
                    self.refused.insert(id, (version, reason.clone()));
                    self.refuse(id, version, names, &reason);
                    return;
                }
            }
        }
        if let Some(old) = self.running.remove(&id) {
            if let Err(e) = self.runner.stop(&id, false) {
                self.console
                    .debug(&format!("contract {id} version {}: stop: {e}", old.version));
            }
        }
        let deployment = Deployment {
            contract: id,
            version,
            owner: contract.owner,
            workloads: prepared,
        };
        match self.runner.start(deployment, self.reports.clone()) {
            Ok(()) => {
                self.running.insert(id, contract);
            }
            Err(reason) => {
                self.refused.insert(id, (version, reason.clone()));
                self.refuse(id, version, names, &reason);
            }
        }
    }

    /// Stops a contract for good and removes its volumes.
    fn remove(&mut self, id: ContractId, version: u64) {
        let names: Vec<String> = self
            .running
            .remove(&id)
            .map(|c| c.workloads.iter().map(|w| w.name.clone()).collect())
            .unwrap_or_default();
        if let Err(e) = self.runner.stop(&id, true) {
            self.console.debug(&format!("contract {id}: stop: {e}"));
        }
        self.say_once(
            id,
            format!("nullos: contract {id} version {version} stopped"),
        );
        self.reports.send(Outgoing::Contract {
            contract: id,
            version,
            workloads: statuses(
                &names,
                WorkloadState::Stopped,
                "cancelled or placed elsewhere",
            ),
        });
    }

    /// The manifest and root image of one workload, from the cache or the notary.
    fn fetch(&self, workload: &trust::grid::ContractWorkload) -> Result<PreparedWorkload, Fetch> {
        let blob_error = |e: BlobError| {
            if e.is_transient() {
                Fetch::Later(error_line(&e))
            } else {
                Fetch::Refused(error_line(&e))
            }
        };
        let (manifest_path, _) = self
            .blobs
            .get(&self.client, &workload.manifest, MAX_MANIFEST_BLOB)
            .map_err(blob_error)?;
        let bytes = std::fs::read(&manifest_path)
            .map_err(|e| Fetch::Later(format!("read {}: {e}", manifest_path.display())))?;
        let manifest = manifest_of(&bytes).map_err(Fetch::Refused)?;
        let (root, fetched) = self
            .blobs
            .get(&self.client, &manifest.root.digest, manifest.root.size)
            .map_err(blob_error)?;
        let size = std::fs::metadata(&root).map(|m| m.len()).unwrap_or(0);
        if size != manifest.root.size {
            return Err(Fetch::Refused(format!(
                "root image is {size} bytes, the manifest says {}",
                manifest.root.size
            )));
        }
        if fetched {
            self.console.debug(&format!(
                "workload {}: root image {} fetched ({size} bytes)",
                workload.name, manifest.root.digest
            ));
        }
        Ok(PreparedWorkload {
            spec: workload.clone(),
            manifest,
            root,
        })
    }
}

enum Fetch {
    /// Try again next round (the notary was unreachable).
    Later(String),
    /// Never: the bytes are wrong.
    Refused(String),
}

/// Reads a workload manifest blob. Its bytes are pinned by the digest in the contract the
/// stakeholders approved, so its own signatures add nothing the node relies on; the body must
/// still decode (bounded) and ask for nothing this node cannot give (its own kernel).
pub fn manifest_of(bytes: &[u8]) -> Result<WorkloadManifest, String> {
    let document = SignedDocument::decode(bytes).map_err(|e| format!("manifest envelope: {e}"))?;
    if document.kind() != DocumentKind::WorkloadManifest {
        return Err(format!(
            "the manifest blob is a {}, not a workload manifest",
            document.kind().name()
        ));
    }
    let manifest =
        WorkloadManifest::decode(document.body()).map_err(|e| format!("manifest: {e}"))?;
    if manifest.kernel.is_some() || manifest.initrd.is_some() {
        return Err(
            "the manifest brings its own kernel or initramfs, which this node does not support"
                .into(),
        );
    }
    Ok(manifest)
}

/// The names of the workloads of `version` (or of the latest version known).
fn workload_names(view: &ContractView, version: u64) -> Vec<String> {
    view.versions
        .get(&version)
        .or(view.latest())
        .map(|c| c.workloads.iter().map(|w| w.name.clone()).collect())
        .unwrap_or_default()
}

fn statuses(names: &[String], state: WorkloadState, reason: &str) -> Vec<WorkloadStatus> {
    // One line of at most 256 bytes (the report's bound), cut on a character boundary.
    let mut line = String::new();
    for c in reason.chars().filter(|c| !c.is_control()) {
        if line.len() + c.len_utf8() > 256 {
            break;
        }
        line.push(c);
    }
    let reason = line;
    names
        .iter()
        .map(|name| WorkloadStatus {
            name: name.clone(),
            state,
            exit_code: None,
            restarts: 0,
            reason: reason.clone(),
            tail: None,
        })
        .collect()
}
