//! The committer: batches, judges, appends and publishes; and picks up what other notaries
//! appended to a shared store.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::PoisonError;

use tlog::{leaf_hash, Checkpoint, Hash};

use super::{extend_from_store, read, write, Pending, Receipt, Shared, SubmitError};
use crate::admission::{body_key, Checked, LogView};
use crate::store::{NewEntry, Store, StoreError, StoredLease};

pub(super) fn commit_loop(shared: &Shared, inbox: &Receiver<Pending>) {
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
    // The keys of another notary's entries are not read here: wake every listener.
    ring(shared, None);
    Ok(())
}

/// Wakes long-polls after a publish; `keys` are the index keys of the new entries, when known.
fn ring(shared: &Shared, keys: Option<&[String]>) {
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
        listener(size, keys);
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

    fn lease(&self, node: &[u8; 32]) -> Result<Option<StoredLease>, StoreError> {
        self.store.lease(node)
    }
}

pub(super) fn commit(shared: &Shared, mut batch: Vec<Pending>) {
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
                let msg = with_causes(&e);
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
                    let touched: Vec<String> = keys.into_keys().collect();
                    ring(shared, Some(&touched));
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

/// `e` and its sources on one line, so the answer names the cause (a full disk, a read-only
/// file system, a lost database connection) and not only the failed step.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn fail_all(batch: Vec<Pending>, e: &StoreError) {
    for p in batch {
        let _ = p.reply.send(Err(SubmitError::Store(StoreError::backend(
            "sync",
            with_causes(e),
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
