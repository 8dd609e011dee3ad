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

use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use thiserror::Error;
use tlog::{leaf_hash, Checkpoint, Hash, MerkleTree, NoteSigner, TreeError};

use crate::admission::{body_key, check_envelope, Checked, DocumentRules, LogView, Refusal};
use crate::store::{NewEntry, Store, StoreError};

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

type Listener = Box<dyn Fn(u64) + Send + Sync>;

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
    pub fn submit(&self, bytes: Vec<u8>) -> Result<Receipt, SubmitError> {
        let checked = check_envelope(bytes)?;
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

    /// Calls `listener` with the new published size after every publish (from the committer
    /// thread: it must not block).
    pub fn on_publish(&self, listener: impl Fn(u64) + Send + Sync + 'static) {
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

fn commit_loop(shared: &Shared, inbox: &Receiver<Pending>) {
    loop {
        let first = match inbox.recv_timeout(shared.config.sync_interval) {
            Ok(p) => p,
            Err(RecvTimeoutError::Timeout) => {
                // Entries other notaries appended; failures are retried next time.
                let _ = sync(shared);
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut batch = vec![first];
        while batch.len() < shared.config.max_batch {
            match inbox.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        commit(shared, batch);
    }
}

/// Publishes entries that another notary appended to a shared store.
fn sync(shared: &Shared) -> Result<(), StoreError> {
    let size = read(&shared.state).size;
    if shared.store.size()? <= size {
        return Ok(());
    }
    let mut state = write(&shared.state);
    extend_from_store(&*shared.store, &mut state.tree)?;
    let size = state.tree.size();
    let root = state.tree.root(size).unwrap_or_else(|_| Hash::empty());
    if let Ok(note) = Checkpoint::new(shared.signer.name(), size, root).sign(&shared.signer) {
        state.checkpoint = note;
        state.size = size;
    }
    drop(state);
    ring(shared);
    Ok(())
}

fn ring(shared: &Shared) {
    let (lock, bell) = &shared.appended;
    *lock.lock().unwrap_or_else(PoisonError::into_inner) += 1;
    bell.notify_all();
    let size = read(&shared.state).size;
    for listener in shared
        .listeners
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
    {
        listener(size);
    }
}

/// The log seen by the rules: the store up to `base`, then the batch so far.
struct BatchView<'a> {
    store: &'a dyn Store,
    base: u64,
    added: &'a [(NewEntry, usize)],
    keys: &'a HashMap<String, Vec<u64>>,
}

impl LogView for BatchView<'_> {
    fn size(&self) -> u64 {
        self.base + self.added.len() as u64
    }

    fn lookup(&self, key: &str, after: Option<u64>, limit: usize) -> Result<Vec<u64>, StoreError> {
        let mut out: Vec<u64> = self
            .store
            .lookup(key, after, limit)?
            .into_iter()
            .filter(|&i| i < self.base)
            .collect();
        if let Some(batch) = self.keys.get(key) {
            out.extend(batch.iter().filter(|&&i| after.is_none_or(|a| i > a)));
        }
        out.truncate(limit);
        Ok(out)
    }

    fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        if index < self.base {
            return self.store.entry(index);
        }
        let at = usize::try_from(index - self.base).unwrap_or(usize::MAX);
        Ok(self.added.get(at).map(|(e, _)| e.data.clone()))
    }
}

fn commit(shared: &Shared, mut batch: Vec<Pending>) {
    for _attempt in 0..=shared.config.max_retries {
        if let Err(e) = sync(shared) {
            fail_all(batch, &e);
            return;
        }
        let base = read(&shared.state).size;
        // Judge each write against the log plus the writes admitted before it.
        let mut admitted: Vec<(NewEntry, usize)> = Vec::new();
        let mut keys: HashMap<String, Vec<u64>> = HashMap::new();
        let mut refused: Vec<(usize, SubmitError)> = Vec::new();
        for (at, p) in batch.iter().enumerate() {
            let view = BatchView {
                store: &*shared.store,
                base,
                added: &admitted,
                keys: &keys,
            };
            match judge(shared, &p.checked, &view) {
                Ok(entry) => {
                    let index = view.size();
                    for key in &entry.keys {
                        keys.entry(key.clone()).or_default().push(index);
                    }
                    admitted.push((entry, at));
                }
                Err(e) => refused.push((at, e)),
            }
        }
        let entries: Vec<NewEntry> = admitted.iter().map(|(e, _)| e.clone()).collect();
        let outcome = if entries.is_empty() {
            Ok(None)
        } else {
            append(shared, base, &entries).map(Some)
        };
        match outcome {
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => {
                let msg = e.to_string();
                for (_, p) in admitted.iter().map(|(_, at)| (at, &batch[*at])) {
                    let _ = p.reply.send(Err(SubmitError::Store(StoreError::backend(
                        "append",
                        msg.clone(),
                    ))));
                }
                answer_refused(&mut batch, refused);
                return;
            }
            Ok(published) => {
                if let Some(checkpoint) = published {
                    let state = read(&shared.state);
                    for (i, (_, at)) in admitted.iter().enumerate() {
                        let index = base + i as u64;
                        let receipt = state
                            .tree
                            .inclusion_proof(index, state.size)
                            .map(|proof| Receipt {
                                index,
                                size: state.size,
                                proof,
                                checkpoint: checkpoint.clone(),
                            })
                            .map_err(|e| SubmitError::Store(StoreError::backend("prove", e)));
                        let _ = batch[*at].reply.send(receipt);
                    }
                    drop(state);
                    ring(shared);
                }
                answer_refused(&mut batch, refused);
                return;
            }
        }
    }
    for p in batch {
        let _ = p.reply.send(Err(SubmitError::Busy));
    }
}

fn answer_refused(batch: &mut [Pending], refused: Vec<(usize, SubmitError)>) {
    for (at, e) in refused {
        let _ = batch[at].reply.send(Err(e));
    }
}

fn fail_all(batch: Vec<Pending>, e: &StoreError) {
    for p in batch {
        let _ = p.reply.send(Err(SubmitError::Store(StoreError::backend(
            "sync",
            e.to_string(),
        ))));
    }
}

/// Replay check, then the kind's rules.
fn judge(
    shared: &Shared,
    checked: &Checked,
    view: &BatchView<'_>,
) -> Result<NewEntry, SubmitError> {
    let body = body_key(&checked.document);
    if !view
        .lookup(&body, None, 1)
        .map_err(SubmitError::Store)?
        .is_empty()
    {
        return Err(SubmitError::Refused(format!(
            "replay: this {} is already in the log",
            checked.document.kind()
        )));
    }
    let mut keys = shared.rules.admit(checked, view)?;
    keys.insert(0, body);
    keys.sort();
    keys.dedup();
    Ok(NewEntry {
        data: checked.bytes.clone(),
        keys,
    })
}

/// Extends the tree with `entries`, signs the new checkpoint, stores both; on failure the
/// tree is cut back. Returns the checkpoint note.
fn append(shared: &Shared, base: u64, entries: &[NewEntry]) -> Result<String, StoreError> {
    let mut state = write(&shared.state);
    for e in entries {
        state.tree.push(leaf_hash(&e.data));
    }
    let size = state.tree.size();
    let note = state
        .tree
        .root(size)
        .map_err(|e| StoreError::backend("compute the root", e))
        .and_then(|root| {
            Checkpoint::new(shared.signer.name(), size, root)
                .sign(&shared.signer)
                .map_err(|e| StoreError::backend("sign the checkpoint", e))
        });
    // Readers keep seeing the published size while the batch is being made durable.
    drop(state);
    let result = note.and_then(|note| shared.store.append(base, entries, &note).map(|()| note));
    let mut state = write(&shared.state);
    match result {
        Ok(note) => {
            state.size = size;
            state.checkpoint = note.clone();
            Ok(note)
        }
        Err(e) => {
            state.tree.truncate(base);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::Refusal;
    use crate::store::RedbStore;
    use trust::{DocumentKind, SecretKey, SignedDocument};

    /// Files a body under its length and refuses a second body of the same length, whether the
    /// first is in the log or earlier in the batch.
    struct OncePerText;

    impl DocumentRules for OncePerText {
        fn admit(&self, d: &Checked, log: &dyn LogView) -> Result<Vec<String>, Refusal> {
            let key = format!("text/{}", String::from_utf8_lossy(d.document.body()).len());
            if !log.lookup(&key, None, 1)?.is_empty() {
                return Err(Refusal::refused("same length is taken"));
            }
            Ok(vec![key])
        }
    }

    fn pending(body: &str) -> (Pending, Receiver<Result<Receipt, SubmitError>>) {
        let mut d = SignedDocument::new(DocumentKind::WorkloadManifest, body.as_bytes().to_vec());
        d.sign(&SecretKey::from_seed([3; 32])).unwrap();
        let checked = check_envelope(d.encode()).unwrap();
        let (reply, answer) = mpsc::sync_channel(1);
        (Pending { checked, reply }, answer)
    }

    #[test]
    fn rules_and_replays_see_earlier_writes_of_the_same_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(RedbStore::open(dir.path()).unwrap());
        let key = SigningKey::from_bytes(&[1; 32]);
        let n = Notary::open(store, key, Box::new(OncePerText), Config::default()).unwrap();
        // One batch, committed directly: a replay of its own first write, and a write the
        // rules refuse only because of the first.
        let (a, a_answer) = pending("aaa");
        let (replay, replay_answer) = pending("aaa");
        let (b, b_answer) = pending("bbb");
        let (c, c_answer) = pending("cccc");
        commit(&n.shared, vec![a, replay, b, c]);
        assert_eq!(a_answer.recv().unwrap().unwrap().index, 0);
        assert!(
            matches!(replay_answer.recv().unwrap(), Err(SubmitError::Refused(r)) if r.starts_with("replay"))
        );
        assert!(
            matches!(b_answer.recv().unwrap(), Err(SubmitError::Refused(r)) if r == "same length is taken")
        );
        let c = c_answer.recv().unwrap().unwrap();
        assert_eq!((c.index, c.size), (1, 2));
        assert_eq!(n.size(), 2);
    }
}
