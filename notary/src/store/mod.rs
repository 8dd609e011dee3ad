//! Where the log lives: the [`Store`] trait and its two backends.
//!
//! A store keeps the log's entries (the canonical signed document bytes, in order), the index
//! keys each entry is filed under, every signed checkpoint, and content-addressed blobs. It
//! decides nothing: the [`Notary`](crate::Notary) core verifies and orders, the store makes it
//! durable. The one rule a store enforces itself is that the log cannot fork: [`Store::append`]
//! names the size it expects the log to have, and fails with [`StoreError::Conflict`] if another
//! writer (another notary on the same database) got there first.
//!
//! - [`redb`](mod@redb) — embedded, one file in the data directory; blobs as files beside it.
//! - [`postgres`](mod@postgres) — one database shared by any number of notaries.

use std::io::Read;

use thiserror::Error;
use trust::Digest;

pub mod blobfiles;
pub mod postgres;
pub mod redb;

pub use self::postgres::PostgresStore;
pub use self::redb::RedbStore;

/// The longest index key (keys are short strings such as `signer/<64 hex>`).
pub const MAX_KEY_BYTES: usize = 256;

/// A boxed error from a backend library.
pub type BackendError = Box<dyn std::error::Error + Send + Sync>;

/// Why a store operation failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// Another writer appended first: the log has `actual` entries, not the `expected` the
    /// caller built its batch on. Nothing was written; sync and retry.
    #[error("log has {actual} entries, the append expected {expected}")]
    Conflict {
        /// The size the caller expected.
        expected: u64,
        /// The size found.
        actual: u64,
    },
    /// An index key is empty or too long.
    #[error("index key of {len} bytes is empty or over the {MAX_KEY_BYTES}-byte limit")]
    BadKey {
        /// Key length.
        len: usize,
    },
    /// The backend failed while doing `op`.
    #[error("store failed to {op}")]
    Backend {
        /// What the store was doing.
        op: &'static str,
        /// The backend's error.
        #[source]
        source: BackendError,
    },
}

impl StoreError {
    /// Wraps a backend error for operation `op`.
    pub fn backend(op: &'static str, source: impl Into<BackendError>) -> StoreError {
        StoreError::Backend {
            op,
            source: source.into(),
        }
    }
}

/// Why a blob was not stored or read.
#[derive(Debug, Error)]
pub enum BlobError {
    /// The upload is larger than allowed.
    #[error("blob is over the {max}-byte limit")]
    TooLarge {
        /// The cap.
        max: u64,
    },
    /// The bytes do not hash to the digest they were put under.
    #[error("blob digest is {found}, not the {expected} it was put under")]
    DigestMismatch {
        /// The digest in the name.
        expected: Digest,
        /// The digest of the bytes.
        found: Digest,
    },
    /// Reading the upload failed.
    #[error("reading the blob failed")]
    Read(#[source] std::io::Error),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An entry to append: the document bytes and the keys it is filed under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    /// The canonical signed document bytes (the log leaf is `leaf_hash(data)`).
    pub data: Vec<u8>,
    /// Index keys (deduplicated by the store).
    pub keys: Vec<String>,
}

/// A node's latest lease, kept beside the log (leases renew liveness without growing it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLease {
    /// The lease's sequence (grows with every renewal).
    pub sequence: u64,
    /// When it runs out, in seconds since the Unix epoch.
    pub expires: u64,
    /// The signed lease document as received.
    pub document: Vec<u8>,
}

/// The most leases [`Store::leases`] answers with.
pub const MAX_LEASES: usize = 100_000;

/// A readable blob and its length.
pub struct BlobReader {
    /// Length in bytes.
    pub len: u64,
    /// The bytes.
    pub reader: Box<dyn Read + Send>,
}

impl std::fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlobReader({} bytes)", self.len)
    }
}

/// A log's durable state. See the module docs. Every method may block on I/O.
pub trait Store: Send + Sync {
    /// Appends `entries` at index `expected_size` onward, with the checkpoint note signed for
    /// the resulting size, atomically: either all of it is durable when this returns `Ok`, or
    /// nothing was written. Fails with [`StoreError::Conflict`] if the log is not at
    /// `expected_size`. An empty `entries` records only the checkpoint (the size-0 one of a new
    /// log); repeating it is harmless.
    fn append(
        &self,
        expected_size: u64,
        entries: &[NewEntry],
        checkpoint: &str,
    ) -> Result<(), StoreError>;

    /// Number of entries.
    fn size(&self) -> Result<u64, StoreError>;

    /// Entries `from..to` (clamped to the log), in order.
    fn entries(&self, from: u64, to: u64) -> Result<Vec<Vec<u8>>, StoreError>;

    /// The entry at `index`.
    fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.entries(index, index.saturating_add(1))?.pop())
    }

    /// The latest signed checkpoint note, if any entry was ever appended.
    fn checkpoint(&self) -> Result<Option<String>, StoreError>;

    /// Indexes of entries filed under `key`, above `after` (all when `None`), ascending, at
    /// most `limit`.
    fn lookup(&self, key: &str, after: Option<u64>, limit: usize) -> Result<Vec<u64>, StoreError>;

    /// Streams `reader` into the blob store under `digest`, hashing while writing; stores
    /// nothing unless the bytes hash to `digest` and are at most `max` long. Returns the length.
    /// Putting a blob that exists checks the bytes all the same and keeps the stored copy.
    fn put_blob(&self, digest: &Digest, reader: &mut dyn Read, max: u64) -> Result<u64, BlobError>;

    /// The blob stored under `digest`.
    fn get_blob(&self, digest: &Digest) -> Result<Option<BlobReader>, StoreError>;

    /// Durably keeps `lease` as `node`'s lease if its sequence is greater than the one held
    /// (atomically: two notaries on one database cannot both win). Returns whether it was kept.
    fn put_lease(&self, node: &[u8; 32], lease: &StoredLease) -> Result<bool, StoreError>;

    /// `node`'s latest lease.
    fn lease(&self, node: &[u8; 32]) -> Result<Option<StoredLease>, StoreError>;

    /// Every node's latest lease, by node key (at most [`MAX_LEASES`]).
    fn leases(&self) -> Result<Vec<([u8; 32], StoredLease)>, StoreError>;
}

/// Refuses empty or oversized index keys before they reach a backend.
pub(crate) fn check_keys(entries: &[NewEntry]) -> Result<(), StoreError> {
    for key in entries.iter().flat_map(|e| &e.keys) {
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(StoreError::BadKey { len: key.len() });
        }
    }
    Ok(())
}

/// Reads `reader` to the end in chunks, passing each to `sink`, hashing as it goes; fails
/// once more than `max` bytes arrive. Returns the digest and length.
pub(crate) fn stream_hashed(
    reader: &mut dyn Read,
    max: u64,
    mut sink: impl FnMut(&[u8]) -> Result<(), BlobError>,
) -> Result<(Digest, u64), BlobError> {
    let mut hasher = trust::Hasher::new();
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut len: u64 = 0;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(BlobError::Read(e)),
        };
        len += n as u64;
        if len > max {
            return Err(BlobError::TooLarge { max });
        }
        hasher.update(&buf[..n]);
        sink(&buf[..n])?;
    }
    Ok((hasher.finalize(), len))
}

/// Checks a streamed digest against the name the blob was put under.
pub(crate) fn check_digest(expected: &Digest, found: Digest) -> Result<(), BlobError> {
    if *expected != found {
        return Err(BlobError::DigestMismatch {
            expected: *expected,
            found,
        });
    }
    Ok(())
}

/// The unit blobs are read, hashed and (in PostgreSQL) stored in.
pub const CHUNK_BYTES: usize = 256 * 1024;
