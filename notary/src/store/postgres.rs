//! The PostgreSQL backend, for operators who outgrow one machine: any number of notaries may
//! share one database.
//!
//! The log cannot fork because every append runs in one transaction that first takes a
//! transaction-scoped advisory lock, then checks that the log still has the size the notary
//! built its batch on (else [`StoreError::Conflict`]: the notary syncs and retries), and the
//! entry index is the table's primary key besides. A commit returns after PostgreSQL's WAL
//! flush (`synchronous_commit` on, its default), so an acknowledged batch is durable.
//!
//! Blobs are stored in fixed 256 KiB chunks inside a transaction that commits only once the
//! streamed bytes hash to the digest; a mismatch rolls back and leaves nothing.

use std::io::Read;
use std::sync::{Arc, Mutex, PoisonError};

use postgres::{Client, NoTls};
use trust::Digest;

use super::{
    check_digest, check_keys, stream_hashed, BlobError, BlobReader, NewEntry, Store, StoreError,
    StoredLease, CHUNK_BYTES, MAX_LEASES,
};

/// The advisory lock key appends take ("nullos-n" in ASCII).
const APPEND_LOCK: i64 = 0x6e75_6c6c_6f73_2d6e;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS notary_entries (idx BIGINT PRIMARY KEY, data BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS notary_keys (key TEXT NOT NULL, idx BIGINT NOT NULL, PRIMARY KEY (key, idx));
CREATE TABLE IF NOT EXISTS notary_checkpoints (size BIGINT PRIMARY KEY, note TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS notary_leases (node BYTEA PRIMARY KEY, sequence BIGINT NOT NULL, expires BIGINT NOT NULL, data BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS notary_blobs (digest BYTEA PRIMARY KEY, len BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS notary_blob_chunks (digest BYTEA NOT NULL, seq INT NOT NULL, data BYTEA NOT NULL, PRIMARY KEY (digest, seq));
";

type Pool = Arc<Mutex<Vec<Client>>>;

/// A store in a PostgreSQL database. See the module docs.
pub struct PostgresStore {
    config: postgres::Config,
    pool: Pool,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostgresStore({:?})", self.config.get_dbname())
    }
}

/// A pooled connection, returned to the pool when dropped (unless it broke).
struct Pooled {
    client: Option<Client>,
    pool: Pool,
}

impl Pooled {
    /// The connection (`None` only inside `drop`).
    fn get(&mut self) -> Result<&mut Client, StoreError> {
        self.client
            .as_mut()
            .ok_or_else(|| StoreError::backend("use a connection", "connection was returned"))
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            if !client.is_closed() {
                let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
                if pool.len() < MAX_IDLE {
                    pool.push(client);
                }
            }
        }
    }
}

/// Idle connections kept.
const MAX_IDLE: usize = 8;

fn err(op: &'static str) -> impl FnOnce(postgres::Error) -> StoreError {
    move |e| StoreError::backend(op, e)
}

fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|e| StoreError::backend("convert an index", e))
}

fn to_u64(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|e| StoreError::backend("convert an index", e))
}

impl PostgresStore {
    /// Connects to `url` (a `postgres://` URL or `key=value` settings) and creates the tables
    /// if they are missing.
    pub fn connect(url: &str) -> Result<PostgresStore, StoreError> {
        let config: postgres::Config = url.parse().map_err(err("parse the database URL"))?;
        let store = PostgresStore {
            config,
            pool: Arc::new(Mutex::new(Vec::new())),
        };
        let mut conn = store.conn()?;
        let mut tx = conn
            .get()?
            .transaction()
            .map_err(err("begin a transaction"))?;
        // Two notaries starting at once would race on CREATE TABLE; the lock orders them.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&APPEND_LOCK])
            .map_err(err("lock the schema"))?;
        tx.batch_execute(SCHEMA).map_err(err("create tables"))?;
        tx.commit().map_err(err("create tables"))?;
        drop(conn);
        Ok(store)
    }

    fn conn(&self) -> Result<Pooled, StoreError> {
        let idle = self
            .pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let client = match idle {
            Some(c) => c,
            None => self.config.connect(NoTls).map_err(err("connect"))?,
        };
        Ok(Pooled {
            client: Some(client),
            pool: Arc::clone(&self.pool),
        })
    }
}

impl Store for PostgresStore {
    fn append(
        &self,
        expected_size: u64,
        entries: &[NewEntry],
        checkpoint: &str,
    ) -> Result<(), StoreError> {
        check_keys(entries)?;
        let mut conn = self.conn()?;
        let mut tx = conn.get()?.transaction().map_err(err("begin an append"))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&APPEND_LOCK])
            .map_err(err("take the append lock"))?;
        let actual: i64 = tx
            .query_one("SELECT COALESCE(MAX(idx) + 1, 0) FROM notary_entries", &[])
            .map_err(err("read the log size"))?
            .get(0);
        let actual = to_u64(actual)?;
        if actual != expected_size {
            return Err(StoreError::Conflict {
                expected: expected_size,
                actual,
            });
        }
        let insert_entry = tx
            .prepare("INSERT INTO notary_entries (idx, data) VALUES ($1, $2)")
            .map_err(err("prepare an insert"))?;
        let insert_key = tx
            .prepare("INSERT INTO notary_keys (key, idx) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .map_err(err("prepare an insert"))?;
        for (i, entry) in (expected_size..).zip(entries) {
            let i = to_i64(i)?;
            tx.execute(&insert_entry, &[&i, &entry.data])
                .map_err(err("insert an entry"))?;
            for key in &entry.keys {
                tx.execute(&insert_key, &[key, &i])
                    .map_err(err("insert a key"))?;
            }
        }
        let size = to_i64(expected_size + entries.len() as u64)?;
        // Only an empty append (the size-0 checkpoint, written by every notary that starts on
        // an empty log) can meet an existing row; the first one stays.
        tx.execute(
            "INSERT INTO notary_checkpoints (size, note) VALUES ($1, $2) ON CONFLICT (size) DO NOTHING",
            &[&size, &checkpoint],
        )
        .map_err(err("insert a checkpoint"))?;
        tx.commit().map_err(err("commit an append"))
    }

    fn size(&self) -> Result<u64, StoreError> {
        let mut conn = self.conn()?;
        let n: i64 = conn
            .get()?
            .query_one("SELECT COALESCE(MAX(idx) + 1, 0) FROM notary_entries", &[])
            .map_err(err("read the log size"))?
            .get(0);
        to_u64(n)
    }

    fn entries(&self, from: u64, to: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        if from >= to {
            return Ok(Vec::new());
        }
        let (from, to) = (to_i64(from)?, to_i64(to.min(i64::MAX as u64))?);
        let mut conn = self.conn()?;
        let rows = conn
            .get()?
            .query(
                "SELECT data FROM notary_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx",
                &[&from, &to],
            )
            .map_err(err("read entries"))?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }

    fn checkpoint(&self) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn()?;
        let row = conn
            .get()?
            .query_opt(
                "SELECT note FROM notary_checkpoints ORDER BY size DESC LIMIT 1",
                &[],
            )
            .map_err(err("read the checkpoint"))?;
        Ok(row.map(|r| r.get(0)))
    }

    fn lookup(&self, key: &str, after: Option<u64>, limit: usize) -> Result<Vec<u64>, StoreError> {
        let after = match after {
            None => -1,
            Some(a) if a >= i64::MAX as u64 => return Ok(Vec::new()),
            Some(a) => to_i64(a)?,
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut conn = self.conn()?;
        let rows = conn
            .get()?
            .query(
                "SELECT idx FROM notary_keys WHERE key = $1 AND idx > $2 ORDER BY idx LIMIT $3",
                &[&key, &after, &limit],
            )
            .map_err(err("look up a key"))?;
        rows.into_iter().map(|r| to_u64(r.get(0))).collect()
    }

    fn put_blob(&self, digest: &Digest, reader: &mut dyn Read, max: u64) -> Result<u64, BlobError> {
        let name = digest.as_bytes().as_slice();
        let mut conn = self.conn()?;
        let mut tx = conn
            .get()?
            .transaction()
            .map_err(err("begin a blob upload"))?;
        let exists = tx
            .query_opt("SELECT 1 FROM notary_blobs WHERE digest = $1", &[&name])
            .map_err(err("look up a blob"))?
            .is_some();
        let insert = tx
            .prepare(
                "INSERT INTO notary_blob_chunks (digest, seq, data) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
            )
            .map_err(err("prepare an insert"))?;
        // Fixed-size chunks, so two uploads of the same bytes write the same rows.
        let mut pending: Vec<u8> = Vec::with_capacity(CHUNK_BYTES);
        let mut seq: i32 = 0;
        let mut flush = |tx: &mut postgres::Transaction<'_>, data: &[u8]| {
            tx.execute(&insert, &[&name, &seq, &data])
                .map_err(err("write a blob chunk"))?;
            seq += 1;
            Ok::<(), StoreError>(())
        };
        let (found, len) = stream_hashed(reader, max, |mut chunk| {
            if exists {
                return Ok(());
            }
            while !chunk.is_empty() {
                let take = (CHUNK_BYTES - pending.len()).min(chunk.len());
                pending.extend_from_slice(&chunk[..take]);
                chunk = &chunk[take..];
                if pending.len() == CHUNK_BYTES {
                    flush(&mut tx, &pending)?;
                    pending.clear();
                }
            }
            Ok(())
        })?;
        // On a mismatch `tx` is dropped unfinished: PostgreSQL rolls the chunks back.
        check_digest(digest, found)?;
        if exists {
            return Ok(len);
        }
        if !pending.is_empty() {
            flush(&mut tx, &pending)?;
        }
        let len_i64 = to_i64(len)?;
        tx.execute(
            "INSERT INTO notary_blobs (digest, len) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&name, &len_i64],
        )
        .map_err(err("record a blob"))?;
        tx.commit().map_err(err("commit a blob"))?;
        Ok(len)
    }

    fn get_blob(&self, digest: &Digest) -> Result<Option<BlobReader>, StoreError> {
        let mut conn = self.conn()?;
        let name = digest.as_bytes().to_vec();
        let row = conn
            .get()?
            .query_opt("SELECT len FROM notary_blobs WHERE digest = $1", &[&name])
            .map_err(err("look up a blob"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let len = to_u64(row.get(0))?;
        Ok(Some(BlobReader {
            len,
            reader: Box::new(ChunkReader {
                conn,
                digest: name,
                seq: 0,
                buf: Vec::new(),
                pos: 0,
                left: len,
            }),
        }))
    }

    fn put_lease(&self, node: &[u8; 32], lease: &StoredLease) -> Result<bool, StoreError> {
        let (sequence, expires) = (to_i64(lease.sequence)?, to_i64(lease.expires)?);
        let mut conn = self.conn()?;
        let written = conn
            .get()?
            .execute(
                "INSERT INTO notary_leases (node, sequence, expires, data) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (node) DO UPDATE SET sequence = EXCLUDED.sequence, \
                 expires = EXCLUDED.expires, data = EXCLUDED.data \
                 WHERE notary_leases.sequence < EXCLUDED.sequence",
                &[&node.as_slice(), &sequence, &expires, &lease.document],
            )
            .map_err(err("write a lease"))?;
        Ok(written == 1)
    }

    fn lease(&self, node: &[u8; 32]) -> Result<Option<StoredLease>, StoreError> {
        let mut conn = self.conn()?;
        let row = conn
            .get()?
            .query_opt(
                "SELECT sequence, expires, data FROM notary_leases WHERE node = $1",
                &[&node.as_slice()],
            )
            .map_err(err("read a lease"))?;
        row.map(|r| {
            Ok(StoredLease {
                sequence: to_u64(r.get(0))?,
                expires: to_u64(r.get(1))?,
                document: r.get(2),
            })
        })
        .transpose()
    }

    fn leases(&self) -> Result<Vec<([u8; 32], StoredLease)>, StoreError> {
        let limit = i64::try_from(MAX_LEASES).unwrap_or(i64::MAX);
        let mut conn = self.conn()?;
        let rows = conn
            .get()?
            .query(
                "SELECT node, sequence, expires, data FROM notary_leases ORDER BY node LIMIT $1",
                &[&limit],
            )
            .map_err(err("read leases"))?;
        let mut out = Vec::new();
        for r in rows {
            let node: Vec<u8> = r.get(0);
            let node: [u8; 32] = node
                .try_into()
                .map_err(|_| StoreError::backend("read leases", "a node key is not 32 bytes"))?;
            out.push((
                node,
                StoredLease {
                    sequence: to_u64(r.get(1))?,
                    expires: to_u64(r.get(2))?,
                    document: r.get(3),
                },
            ));
        }
        Ok(out)
    }
}

/// Reads a blob chunk by chunk, holding one pooled connection.
struct ChunkReader {
    conn: Pooled,
    digest: Vec<u8>,
    seq: i32,
    buf: Vec<u8>,
    pos: usize,
    left: u64,
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.buf.len() {
            if self.left == 0 {
                return Ok(0);
            }
            let row = self
                .conn
                .get()
                .map_err(std::io::Error::other)?
                .query_opt(
                    "SELECT data FROM notary_blob_chunks WHERE digest = $1 AND seq = $2",
                    &[&self.digest, &self.seq],
                )
                .map_err(std::io::Error::other)?
                .ok_or_else(|| std::io::Error::other("blob chunk is missing"))?;
            self.buf = row.get(0);
            self.pos = 0;
            self.seq += 1;
            if self.buf.is_empty() {
                return Err(std::io::Error::other("blob chunk is empty"));
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        self.left = self.left.saturating_sub(n as u64);
        Ok(n)
    }
}
