//! The notary's decisions, without sockets: verify and order writes, keep the Merkle tree, sign
//! checkpoints, answer proofs and long-polls.
//!
//! Writes go through one committer thread (group commit): each submitter checks its envelope
//! on its own thread, then queues it; the committer takes everything queued (up to
//! [`Config::max_batch`]), runs the replay check and the [`DocumentRules`] on each in order,
//! appends the admitted ones with one signed checkpoint in one durable [`Store::append`], and
//! only then answers each submitter with its index, inclusion proof and that checkpoint. If
//! another notary on the same database appended first, the committer reads what it appended
//! and judges the batch again; nothing is acknowledged that is not stored.
//!
//! Readers see the *published* log: the size of the last checkpoint this notary signed.

use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use thiserror::Error;
use tlog::{leaf_hash, Checkpoint, Hash, MerkleTree, NoteSigner, TreeError};

use crate::admission::{check_envelope, Checked, DocumentRules, LeaseUpdate, LogView, Refusal};
use crate::store::{Store, StoreError, StoredLease};

mod commit;
#[cfg(test)]
mod tests;

use self::commit::commit_loop;

/// How the core runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The most writes committed together.
    pub max_batch: usize,
    /// How often the committer looks for entries other notaries appended to a shared store.
    pub sync_interval: Duration,
    /// How many times a batch is judged again after losing a race to another notary.
    pub max_retries: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_batch: 256,
            sync_interval: Duration::from_secs(1),
            max_retries: 16,
        }
    }
}

/// The most entries one lookup or long-poll answers with.
pub const MAX_LOOKUP: usize = 1000;

/// Why the notary could not start.
#[derive(Debug, Error)]
pub enum OpenError {
    /// The store failed.
    #[error("reading the log from the store failed")]
    Store(#[from] StoreError),
    /// The stored checkpoint does not match the stored entries: the store was altered or
    /// belongs to another key.
    #[error("the stored checkpoint does not match the stored entries: {0}")]
    Mismatch(String),
    /// Signing the checkpoint failed.
    #[error("signing a checkpoint failed")]
    Sign(#[source] tlog::CheckpointError),
}

/// Why a write was not acknowledged.
#[derive(Debug, Error)]
pub enum SubmitError {
    /// The write is bad (a 4xx); nothing was stored.
    #[error("{0}")]
    Refused(String),
    /// The store failed (a 5xx); nothing was stored.
    #[error("the log could not be written")]
    Store(#[source] StoreError),
    /// The notary is shutting down or its committer stopped.
    #[error("the notary is not accepting writes")]
    Closed,
    /// Lost the race to other notaries too many times in a row.
    #[error("the log is busy; try again")]
    Busy,
}

impl From<Refusal> for SubmitError {
    fn from(r: Refusal) -> SubmitError {
        match r {
            Refusal::Refused(reason) => SubmitError::Refused(reason),
            Refusal::Store(e) => SubmitError::Store(e),
        }
    }
}

/// Why a read could not be answered.
#[derive(Debug, Error)]
pub enum ReadError {
    /// The question is outside the published log (a 4xx).
    #[error(transparent)]
    Tree(#[from] TreeError),
    /// The store failed (a 5xx).
    #[error("the log could not be read")]
    Store(#[source] StoreError),
}

/// What a write's answer carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The entry's index in the log.
    pub index: u64,
    /// The size of the checkpoint the proof is for.
    pub size: u64,
    /// The RFC 6962 inclusion proof of the entry in the tree of `size` entries.
    pub proof: Vec<Hash>,
    /// The signed checkpoint note for `size`.
    pub checkpoint: String,
}

/// What an accepted write became.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Appended to the log.
    Logged(Receipt),
    /// Kept as the node's lease, beside the log (the log did not grow).
    Lease(LeaseUpdate),
}

struct Published {
    tree: MerkleTree,
    /// Entries readers may see (the tree may hold a batch being committed beyond it).
    size: u64,
    checkpoint: String,
}

struct Shared {
    store: Arc<dyn Store>,
    rules: Box<dyn DocumentRules>,
    signer: NoteSigner,
    state: RwLock<Published>,
    /// Bumped and notified after every publish; long-polls wait on it.
    appended: (Mutex<u64>, Condvar),
    /// Called with the new published size after every publish (the HTTP layer's async wake-up).
    listeners: Mutex<Vec<Listener>>,
    config: Config,
}

type Listener = Box<dyn Fn(u64, Option<&[String]>) + Send + Sync>;

struct Pending {
    checked: Checked,
    reply: SyncSender<Result<Receipt, SubmitError>>,
}

/// The notary core. Dropping it stops the committer after the batch in hand.
pub struct Notary {
    shared: Arc<Shared>,
    queue: Option<SyncSender<Pending>>,
    committer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Notary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Notary({})", self.shared.signer.name())
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

impl Notary {
    /// Loads the log from `store` (checking its latest checkpoint against the entries) and
    /// starts the committer. `key` signs checkpoints; the origin is derived from it
    /// ([`tlog::notary_origin`]).
    pub fn open(
        store: Arc<dyn Store>,
        key: SigningKey,
        rules: Box<dyn DocumentRules>,
        config: Config,
    ) -> Result<Notary, OpenError> {
        let origin = tlog::notary_origin(key.verifying_key().as_bytes());
        let signer = NoteSigner::new(&origin, key)
            .map_err(|e| OpenError::Sign(tlog::CheckpointError::Note(e)))?;
        let mut tree = MerkleTree::new();
        extend_from_store(&*store, &mut tree)?;
        let size = tree.size();
        let root = tree
            .root(size)
            .map_err(|e| OpenError::Mismatch(e.to_string()))?;
        if let Some(note) = store.checkpoint()? {
            let stored = Checkpoint::open(note.as_bytes(), &signer.verifier())
                .map_err(|e| OpenError::Mismatch(e.to_string()))?;
            let at = tree
                .root(stored.size)
                .map_err(|e| OpenError::Mismatch(e.to_string()))?;
            if at != stored.root {
                return Err(OpenError::Mismatch(format!(
                    "root at size {} is {}, the checkpoint says {}",
                    stored.size, at, stored.root
                )));
            }
        }
        let checkpoint = Checkpoint::new(&origin, size, root)
            .sign(&signer)
            .map_err(OpenError::Sign)?;
        if size == 0 && store.checkpoint()?.is_none() {
            // The empty log's checkpoint, so that clients can pin the log from the start.
            match store.append(0, &[], &checkpoint) {
                Ok(()) | Err(StoreError::Conflict { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let shared = Arc::new(Shared {
            store,
            rules,
            signer,
            state: RwLock::new(Published {
                tree,
                size,
                checkpoint,
            }),
            appended: (Mutex::new(0), Condvar::new()),
            listeners: Mutex::new(Vec::new()),
            config,
        });
        let (queue, inbox) = mpsc::sync_channel(shared.config.max_batch.max(1) * 4);
        let committer = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("notary-commit".into())
                .spawn(move || commit_loop(&shared, &inbox))
                .map_err(|e| OpenError::Store(StoreError::backend("start the committer", e)))?
        };
        Ok(Notary {
            shared,
            queue: Some(queue),
            committer: Some(committer),
        })
    }

    /// The log's verifier key text (`<origin>+<id>+<key>`), for operators.
    pub fn verifier_key(&self) -> String {
        self.shared.signer.verifier().to_text()
    }

    /// The origin line of the checkpoints.
    pub fn origin(&self) -> &str {
        self.shared.signer.name()
    }

    /// Checks, judges and durably appends one document (canonical signed bytes); blocks until
    /// it is stored or refused.
    /// A lease is refused here (it is not logged): see [`accept`](Self::accept).
    pub fn submit(&self, bytes: Vec<u8>) -> Result<Receipt, SubmitError> {
        match self.accept(bytes)? {
            Accepted::Logged(receipt) => Ok(receipt),
            Accepted::Lease(_) => Err(SubmitError::Refused(
                "a lease is kept beside the log, not appended to it".into(),
            )),
        }
    }

    /// Checks and judges one document: a lease is kept as its node's lease (durably, beside
    /// the log), anything else is appended as by [`submit`](Self::submit).
    pub fn accept(&self, bytes: Vec<u8>) -> Result<Accepted, SubmitError> {
        let checked = check_envelope(bytes)?;
        if let Some(update) = self.shared.rules.lease(&checked, None)? {
            return self.renew(&checked, update).map(Accepted::Lease);
        }
        self.append(checked).map(Accepted::Logged)
    }

    fn renew(&self, checked: &Checked, update: LeaseUpdate) -> Result<LeaseUpdate, SubmitError> {
        let store = &self.shared.store;
        let held = store.lease(&update.node).map_err(SubmitError::Store)?;
        self.shared.rules.lease(checked, held.map(|l| l.sequence))?;
        let lease = StoredLease {
            sequence: update.sequence,
            expires: update.expires,
            document: checked.bytes.clone(),
        };
        if !store
            .put_lease(&update.node, &lease)
            .map_err(SubmitError::Store)?
        {
            // Another write of the same node's lease got there first.
            return Err(SubmitError::Refused(format!(
                "lease {} is not newer than the held one",
                update.sequence
            )));
        }
        Ok(update)
    }

    /// The node's latest lease.
    pub fn lease(&self, node: &[u8; 32]) -> Result<Option<StoredLease>, ReadError> {
        self.shared.store.lease(node).map_err(ReadError::Store)
    }

    /// Every node's latest lease.
    pub fn leases(&self) -> Result<Vec<([u8; 32], StoredLease)>, ReadError> {
        self.shared.store.leases().map_err(ReadError::Store)
    }

    /// The published log as the rules see it, for directory reads.
    pub fn view(&self) -> PublishedView<'_> {
        PublishedView {
            notary: self,
            size: self.size(),
        }
    }

    fn append(&self, checked: Checked) -> Result<Receipt, SubmitError> {
        let queue = self.queue.as_ref().ok_or(SubmitError::Closed)?;
        let (reply, answer) = mpsc::sync_channel(1);
        queue
            .send(Pending { checked, reply })
            .map_err(|_| SubmitError::Closed)?;
        answer.recv().map_err(|_| SubmitError::Closed)?
    }

    /// The latest signed checkpoint note.
    pub fn checkpoint(&self) -> String {
        read(&self.shared.state).checkpoint.clone()
    }

    /// The published size.
    pub fn size(&self) -> u64 {
        read(&self.shared.state).size
    }

    /// The entry at `index`, if published.
    pub fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, ReadError> {
        if index >= self.size() {
            return Ok(None);
        }
        self.shared.store.entry(index).map_err(ReadError::Store)
    }

    /// The inclusion proof of entry `index` in the tree of `size` entries (`size` at most the
    /// published size).
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ReadError> {
        let state = read(&self.shared.state);
        check_published(size, state.size)?;
        Ok(state.tree.inclusion_proof(index, size)?)
    }

    /// The consistency proof from the tree of `from` entries to the tree of `to` entries.
    pub fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, ReadError> {
        let state = read(&self.shared.state);
        check_published(to, state.size)?;
        Ok(state.tree.consistency_proof(from, to)?)
    }

    /// Published entries filed under `key` above `after`, at most `limit` (capped at
    /// [`MAX_LOOKUP`]).
    pub fn lookup(
        &self,
        key: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, ReadError> {
        let size = self.size();
        let found = self
            .shared
            .store
            .lookup(key, after, limit.min(MAX_LOOKUP))
            .map_err(ReadError::Store)?;
        let mut out = Vec::new();
        for index in found.into_iter().take_while(|&i| i < size) {
            if let Some(data) = self.shared.store.entry(index).map_err(ReadError::Store)? {
                out.push((index, data));
            }
        }
        Ok(out)
    }

    /// Like [`lookup`](Self::lookup), but when nothing matches yet, waits up to `timeout` for
    /// an append that files something under `key`. Returns as soon as one is published.
    pub fn wait(
        &self,
        key: &str,
        after: Option<u64>,
        timeout: Duration,
    ) -> Result<Vec<(u64, Vec<u8>)>, ReadError> {
        let deadline = Instant::now() + timeout;
        let (lock, bell) = &self.shared.appended;
        loop {
            let seen = *lock.lock().unwrap_or_else(PoisonError::into_inner);
            let found = self.lookup(key, after, MAX_LOOKUP)?;
            let now = Instant::now();
            if !found.is_empty() || now >= deadline {
                return Ok(found);
            }
            let guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
            // Sleep only if nothing was published since the lookup started.
            let _ = bell
                .wait_timeout_while(guard, deadline - now, |n| *n == seen)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Calls `listener` after every publish with the new published size and the index keys the
    /// new entries are filed under (`None` when unknown: entries another notary appended). It
    /// runs on the committer thread and must not block.
    pub fn on_publish(&self, listener: impl Fn(u64, Option<&[String]>) + Send + Sync + 'static) {
        self.shared
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Box::new(listener));
    }

    /// The store, for blobs.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.shared.store
    }
}

/// The published log at one size, read through the store (see [`Notary::view`]).
#[derive(Debug)]
pub struct PublishedView<'a> {
    notary: &'a Notary,
    size: u64,
}

impl LogView for PublishedView<'_> {
    fn size(&self) -> u64 {
        self.size
    }

    fn lookup(&self, key: &str, after: Option<u64>, limit: usize) -> Result<Vec<u64>, StoreError> {
        let found = self.notary.shared.store.lookup(key, after, limit)?;
        Ok(found.into_iter().take_while(|&i| i < self.size).collect())
    }

    fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        if index >= self.size {
            return Ok(None);
        }
        self.notary.shared.store.entry(index)
    }

    fn lease(&self, node: &[u8; 32]) -> Result<Option<StoredLease>, StoreError> {
        self.notary.shared.store.lease(node)
    }
}

impl Drop for Notary {
    fn drop(&mut self) {
        self.queue = None;
        if let Some(handle) = self.committer.take() {
            let _ = handle.join();
        }
    }
}

fn check_published(asked: u64, size: u64) -> Result<(), TreeError> {
    if asked > size {
        return Err(TreeError::BeyondSize { asked, size });
    }
    Ok(())
}

/// Appends to `tree` the leaves of every stored entry beyond it.
fn extend_from_store(store: &dyn Store, tree: &mut MerkleTree) -> Result<(), StoreError> {
    const CHUNK: u64 = 4096;
    let size = store.size()?;
    while tree.size() < size {
        let from = tree.size();
        let entries = store.entries(from, (from + CHUNK).min(size))?;
        if entries.is_empty() {
            return Err(StoreError::backend(
                "read entries",
                format!("entry {from} is missing below size {size}"),
            ));
        }
        for data in entries {
            tree.push(leaf_hash(&data));
        }
    }
    Ok(())
}
