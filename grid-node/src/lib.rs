//! The node's part of the grid, for its PID 1 (`kernel-init`): who the node is, what it
//! offers, and the loop that pulls signed contracts from the notary, verifies every document
//! and artifact before anything runs, runs them through a [`Runner`] and reports back.
//!
//! A library of its own, not a module of `kernel-init`: everything here but the thin I/O edges
//! is pure and tested with plain values, and the host-side tests run the whole loop against a
//! real `nullos-notary` with a fake runner, which `kernel-init` (a PID 1 that refuses to run
//! as anything else) could not host. `kernel-init` supplies the console and the runner (its
//! workload supervisor) and links this crate into the static `init`.
//!
//! - [`identity`]: the node key on the data disk (0600), or ephemeral on tmpfs.
//! - [`capacity`]: CPUs, memory, the volume disk, NICs, probed from `/proc` and `/sys`.
//! - [`state`]: the kept checkpoint and the sequence high-water mark.
//! - [`backoff`]: retries with backoff and jitter, one console line per change of state.
//! - [`outbox`]: registration, lease, status reports: everything the node signs and sends.
//! - [`documents`]: log entries opened and verified; a contract's documents gathered.
//! - [`judge`]: the verdict on one contract (pure).
//! - [`reconcile`]: desired against actual (pure).
//! - [`blobs`]: the artifact cache (streamed, bounded, checked while written).
//! - [`pull`]: the loop.
//!
//! The node never listens: every conversation is a request it opens to the notary.

#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod backoff;
pub mod blobs;
pub mod capacity;
pub mod documents;
pub mod identity;
pub mod judge;
pub mod outbox;
pub mod pull;
pub mod reconcile;
pub mod state;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use trust::grid::{Capacity, ContractId, ContractWorkload};
use trust::{Digest, PublicKey, WorkloadManifest};

pub use identity::{Identity, Persistence};
pub use outbox::{ConsoleTail, Outgoing, Reports};

/// The node's grid settings (from `node.toml`'s `[node]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The notary's base URL, `http://host:port`.
    pub notary_url: String,
    /// The notary's checkpoint key, pinned.
    pub notary_key: PublicKey,
    /// The farm the node belongs to (the farmer's key).
    pub farm: PublicKey,
    /// The release version the node runs.
    pub release_version: u64,
    /// BLAKE3 of the signed release manifest's body, zero when the node was not booted from
    /// one (a dev boot straight from kernel and initramfs).
    pub release_manifest: Digest,
    /// How long a lease lasts, in seconds (renewed every third of it).
    pub lease_secs: u64,
    /// How long one long-poll waits, in seconds.
    pub wait_secs: u64,
}

impl Settings {
    /// Settings with the default lease (60 s) and long-poll (25 s).
    pub fn new(notary_url: &str, notary_key: PublicKey, farm: PublicKey) -> Settings {
        Settings {
            notary_url: notary_url.trim_end_matches('/').to_owned(),
            notary_key,
            farm,
            release_version: 0,
            release_manifest: Digest([0; 32]),
            lease_secs: 60,
            wait_secs: 25,
        }
    }
}

/// Where the node's lines go: the console's interface lines and its debug log.
pub trait Console: Send + Sync + 'static {
    /// An interface line (`docs/CONSOLE.md`).
    fn line(&self, text: &str);
    /// A debug line.
    fn debug(&self, text: &str);
}

/// One workload of a deployment, its artifacts checked and on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedWorkload {
    /// The workload as the contract says (name, vCPUs, memory, volumes, egress, env).
    pub spec: ContractWorkload,
    /// Its manifest (fetched by the digest the contract names).
    pub manifest: WorkloadManifest,
    /// The root image, checked against the manifest's size and digest.
    pub root: PathBuf,
}

/// A contract version to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    /// The contract.
    pub contract: ContractId,
    /// Its version.
    pub version: u64,
    /// The contract's owner: the only key its workloads' console tails are sealed to.
    pub owner: PublicKey,
    /// Its workloads.
    pub workloads: Vec<PreparedWorkload>,
}

/// What runs the workloads: the node's supervisor (micro-VMs under `vmm`), or a fake in tests.
pub trait Runner: Send {
    /// Starts every workload of `deployment`; their state changes go to `reports`
    /// ([`Outgoing::Workload`]). An error is one line: the version is refused.
    fn start(&mut self, deployment: Deployment, reports: Reports) -> Result<(), String>;
    /// Stops the contract's workloads and waits for them to end; with `remove_volumes`, its
    /// volumes are deleted too (cancelled or placed elsewhere; a new version keeps them).
    fn stop(&mut self, contract: &ContractId, remove_volumes: bool) -> Result<(), String>;
}

/// Why the node could not join the grid (it keeps running its baked workloads).
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The identity could not be read or made.
    #[error("node identity")]
    Identity(#[from] identity::IdentityError),
    /// The state folder could not be used.
    #[error("node state")]
    State(#[from] state::StateError),
    /// The blob cache could not be made.
    #[error("blob cache")]
    Blobs(#[from] blobs::BlobError),
    /// The notary client could not be made (the pinned key is unusable).
    #[error("notary client")]
    Client(#[from] notary_client::ClientError),
    /// A thread could not be started.
    #[error("start the {0} thread")]
    Thread(&'static str, #[source] std::io::Error),
}

/// The node's state folder layout under its data root.
pub fn state_dir(data_root: &Path) -> PathBuf {
    data_root.join("grid")
}

/// Everything the pull loop needs, put together; see [`join`].
pub struct Joined {
    /// The node's key.
    pub node: PublicKey,
    /// The pull loop, ready to run on a thread of its own.
    pub pull: pull::PullLoop,
}

impl std::fmt::Debug for Joined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Joined").field("node", &self.node).finish()
    }
}

/// Joins the grid: the identity in `state` (made on first use), the kept checkpoint, the
/// outbox thread (registration, lease, reports) started; returns the pull loop for the caller
/// to run (its own thread on the node, step by step in tests).
pub fn join(
    settings: Settings,
    state: &Path,
    console: Arc<dyn Console>,
    runner: Box<dyn Runner>,
    capacity: Box<dyn FnMut() -> Option<Capacity> + Send>,
) -> Result<Joined, JoinError> {
    let identity = Identity::load_or_create(state)?;
    let node = identity.public;
    let state_dir = state::StateDir::new(state)?;
    let blobs = blobs::BlobCache::new(&state.join("blobs"))?;
    let client = notary_client::Client::new(&settings.notary_url, &settings.notary_key)?;
    let verifier = tlog::notary_verifier(settings.notary_key.as_bytes())
        .map_err(|e| notary_client::ClientError::Checkpoint(tlog::CheckpointError::Note(e)))?;
    let kept = match state_dir.checkpoint(&verifier) {
        Ok(kept) => kept.map(|(c, _)| c),
        Err(e) => {
            // A damaged file is not believed; the next checkpoint starts afresh.
            console.line(&format!(
                "nullos: kept notary checkpoint refused: {}",
                outbox::error_line(&e)
            ));
            None
        }
    };
    let sequencer = state::Sequencer::open(Some(state_dir.clone()), outbox::unix_now())?;
    let (tx, rx) = std::sync::mpsc::channel();
    let outbox = outbox::Outbox::new(
        client.clone(),
        identity,
        settings.clone(),
        console.clone(),
        sequencer,
    );
    std::thread::Builder::new()
        .name("grid-outbox".into())
        .spawn(move || outbox.run(rx))
        .map_err(|e| JoinError::Thread("outbox", e))?;
    let pull = pull::PullLoop::new(
        client,
        node,
        settings,
        console,
        state_dir,
        blobs,
        Reports::new(tx),
        runner,
        capacity,
        kept,
    );
    Ok(Joined { node, pull })
}
