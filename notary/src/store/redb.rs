//! The embedded backend: one redb file, `<data dir>/notary.redb`, and blob files in
//! `<data dir>/blobs/`.
//!
//! Each [`append`](Store::append) is one redb write transaction committed with redb's default
//! durability (fsync before `commit` returns), so an acknowledged batch survives a crash; the
//! notary batches concurrent writes into one append (group commit). redb allows one writer at a
//! time, and its file is locked by one process, which is what keeps the log from forking here.
//!
//! A failed commit (a full disk, say) leaves a redb handle refusing every further read and write
//! until it is reopened; the store reopens the file right away (and, if that fails, before the
//! next read or append), so reads go on and writes resume once the cause is gone.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

use redb::{Database, ReadTransaction, ReadableTable, ReadableTableMetadata, TableDefinition};
use trust::Digest;

use super::blobfiles::BlobFiles;
use super::{
    check_keys, BlobError, BlobReader, NewEntry, Store, StoreError, StoredLease, MAX_LEASES,
};

const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("entries");
const KEYS: TableDefinition<(&str, u64), ()> = TableDefinition::new("keys");
const CHECKPOINTS: TableDefinition<u64, &str> = TableDefinition::new("checkpoints");
/// Node key → (sequence, expires, lease document).
const LEASES: TableDefinition<&[u8; 32], (u64, u64, &[u8])> = TableDefinition::new("leases");

/// The embedded store. See the module docs.
#[derive(Debug)]
pub struct RedbStore {
    /// `None` only while a reopen is failing (the old handle is gone, the new one not there).
    db: RwLock<Option<Database>>,
    path: PathBuf,
    /// A commit failed: reopen before the next append.
    poisoned: AtomicBool,
    blobs: BlobFiles,
}

fn err<E: Into<redb::Error>>(op: &'static str) -> impl FnOnce(E) -> StoreError {
    move |e| StoreError::backend(op, e.into())
}

impl RedbStore {
    /// Opens (creating) the store in `dir`.
    pub fn open(dir: &Path) -> Result<RedbStore, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::backend("create the data directory", e))?;
        let path = dir.join("notary.redb");
        let db = Database::create(&path).map_err(err("open the redb file"))?;
        let txn = db.begin_write().map_err(err("begin a write"))?;
        {
            txn.open_table(ENTRIES).map_err(err("create tables"))?;
            txn.open_table(KEYS).map_err(err("create tables"))?;
            txn.open_table(CHECKPOINTS).map_err(err("create tables"))?;
            txn.open_table(LEASES).map_err(err("create tables"))?;
        }
        txn.commit().map_err(err("create tables"))?;
        Ok(RedbStore {
            db: RwLock::new(Some(db)),
            path,
            poisoned: AtomicBool::new(false),
            blobs: BlobFiles::open(&dir.join("blobs"))?,
        })
    }

    /// The open database, for reads: reopens first if an earlier reopen failed.
    fn db(&self) -> Result<RwLockReadGuard<'_, Option<Database>>, StoreError> {
        {
            let guard = self.db.read().unwrap_or_else(|e| e.into_inner());
            if guard.is_some() {
                return Ok(guard);
            }
        }
        self.reopen()?;
        Ok(self.db.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// A read transaction, with the read lock held as long as the caller keeps the guard (a
    /// reopen waits for it).
    fn read(&self) -> Result<(RwLockReadGuard<'_, Option<Database>>, ReadTransaction), StoreError> {
        let guard = self.db()?;
        let txn = guard
            .as_ref()
            .ok_or_else(closed)?
            .begin_read()
            .map_err(err("begin a read"))?;
        Ok((guard, txn))
    }

    /// Drops the handle and opens the file again (redb checks and repairs it on open).
    fn reopen(&self) -> Result<(), StoreError> {
        let mut guard = self.db.write().unwrap_or_else(|e| e.into_inner());
        // Readers hold the read lock for their whole transaction, so none is running now and
        // dropping the handle releases the file lock.
        drop(guard.take());
        let db = Database::create(&self.path)
            .map_err(err("reopen the redb file after a failed commit"))?;
        *guard = Some(db);
        self.poisoned.store(false, Ordering::Release);
        Ok(())
    }

    fn append_to(
        db: &Database,
        expected_size: u64,
        entries: &[NewEntry],
        checkpoint: &str,
    ) -> Result<(), StoreError> {
        let txn = db.begin_write().map_err(err("begin an append"))?;
        {
            let mut table = txn.open_table(ENTRIES).map_err(err("open entries"))?;
            let actual = table.len().map_err(err("count entries"))?;
            if actual != expected_size {
                return Err(StoreError::Conflict {
                    expected: expected_size,
                    actual,
                });
            }
            let mut keys = txn.open_table(KEYS).map_err(err("open keys"))?;
            for (i, entry) in (expected_size..).zip(entries) {
                table
                    .insert(i, entry.data.as_slice())
                    .map_err(err("insert an entry"))?;
                for key in &entry.keys {
                    keys.insert((key.as_str(), i), ())
                        .map_err(err("insert a key"))?;
                }
            }
            let mut checkpoints = txn
                .open_table(CHECKPOINTS)
                .map_err(err("open checkpoints"))?;
            checkpoints
                .insert(expected_size + entries.len() as u64, checkpoint)
                .map_err(err("insert a checkpoint"))?;
        }
        // Dropping `txn` on an error above aborts it: nothing of the batch is written.
        txn.commit().map_err(err("commit an append"))
    }
    fn put_lease_to(
        db: &Database,
        node: &[u8; 32],
        lease: &StoredLease,
    ) -> Result<bool, StoreError> {
        let txn = db.begin_write().map_err(err("begin a lease write"))?;
        {
            let mut table = txn.open_table(LEASES).map_err(err("open leases"))?;
            let held = table
                .get(node)
                .map_err(err("read a lease"))?
                .map(|v| v.value().0);
            if held.is_some_and(|held| held >= lease.sequence) {
                return Ok(false);
            }
            table
                .insert(
                    node,
                    (lease.sequence, lease.expires, lease.document.as_slice()),
                )
                .map_err(err("write a lease"))?;
        }
        txn.commit().map_err(err("commit a lease"))?;
        Ok(true)
    }
}

fn closed() -> StoreError {
    StoreError::backend(
        "use the redb file",
        std::io::Error::other("the store is closed after a failed reopen"),
    )
}

impl Store for RedbStore {
    fn append(
        &self,
        expected_size: u64,
        entries: &[NewEntry],
        checkpoint: &str,
    ) -> Result<(), StoreError> {
        check_keys(entries)?;
        if self.poisoned.load(Ordering::Acquire) {
            self.reopen()?;
        }
        let guard = self.db()?;
        let db = guard.as_ref().ok_or_else(closed)?;
        let result = RedbStore::append_to(db, expected_size, entries, checkpoint);
        drop(guard);
        if matches!(result, Err(StoreError::Backend { .. })) {
            // Reopen now, so reads go on with a working handle; if that fails too, the next
            // append or read tries again.
            self.poisoned.store(true, Ordering::Release);
            let _ = self.reopen();
        }
        result
    }

    fn size(&self) -> Result<u64, StoreError> {
        let (_guard, txn) = self.read()?;
        let table = txn.open_table(ENTRIES).map_err(err("open entries"))?;
        table.len().map_err(err("count entries"))
    }

    fn entries(&self, from: u64, to: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        let (_guard, txn) = self.read()?;
        let table = txn.open_table(ENTRIES).map_err(err("open entries"))?;
        let mut out = Vec::new();
        if from >= to {
            return Ok(out);
        }
        for row in table.range(from..to).map_err(err("read entries"))? {
            let (_, v) = row.map_err(err("read an entry"))?;
            out.push(v.value().to_vec());
        }
        Ok(out)
    }

    fn checkpoint(&self) -> Result<Option<String>, StoreError> {
        let (_guard, txn) = self.read()?;
        let table = txn
            .open_table(CHECKPOINTS)
            .map_err(err("open checkpoints"))?;
        let last = table.last().map_err(err("read the checkpoint"))?;
        Ok(last.map(|(_, v)| v.value().to_string()))
    }

    fn lookup(&self, key: &str, after: Option<u64>, limit: usize) -> Result<Vec<u64>, StoreError> {
        let start = match after {
            None => 0,
            Some(u64::MAX) => return Ok(Vec::new()),
            Some(a) => a + 1,
        };
        let (_guard, txn) = self.read()?;
        let table = txn.open_table(KEYS).map_err(err("open keys"))?;
        let mut out = Vec::new();
        for row in table
            .range((key, start)..=(key, u64::MAX))
            .map_err(err("look up a key"))?
            .take(limit)
        {
            let (k, _) = row.map_err(err("read a key"))?;
            out.push(k.value().1);
        }
        Ok(out)
    }

    fn put_blob(&self, digest: &Digest, reader: &mut dyn Read, max: u64) -> Result<u64, BlobError> {
        self.blobs.put(digest, reader, max)
    }

    fn get_blob(&self, digest: &Digest) -> Result<Option<BlobReader>, StoreError> {
        self.blobs.get(digest)
    }

    fn put_lease(&self, node: &[u8; 32], lease: &StoredLease) -> Result<bool, StoreError> {
        if self.poisoned.load(Ordering::Acquire) {
            self.reopen()?;
        }
        let guard = self.db()?;
        let db = guard.as_ref().ok_or_else(closed)?;
        let result = RedbStore::put_lease_to(db, node, lease);
        drop(guard);
        if matches!(result, Err(StoreError::Backend { .. })) {
            // As after a failed append: the handle is unusable until reopened.
            self.poisoned.store(true, Ordering::Release);
            let _ = self.reopen();
        }
        result
    }

    fn lease(&self, node: &[u8; 32]) -> Result<Option<StoredLease>, StoreError> {
        let (_guard, txn) = self.read()?;
        let table = txn.open_table(LEASES).map_err(err("open leases"))?;
        let row = table.get(node).map_err(err("read a lease"))?;
        Ok(row.map(|v| {
            let (sequence, expires, document) = v.value();
            StoredLease {
                sequence,
                expires,
                document: document.to_vec(),
            }
        }))
    }

    fn leases(&self) -> Result<Vec<([u8; 32], StoredLease)>, StoreError> {
        let (_guard, txn) = self.read()?;
        let table = txn.open_table(LEASES).map_err(err("open leases"))?;
        let mut out = Vec::new();
        for row in table.iter().map_err(err("read leases"))?.take(MAX_LEASES) {
            let (k, v) = row.map_err(err("read a lease"))?;
            let (sequence, expires, document) = v.value();
            out.push((
                *k.value(),
                StoredLease {
                    sequence,
                    expires,
                    document: document.to_vec(),
                },
            ));
        }
        Ok(out)
    }
}
