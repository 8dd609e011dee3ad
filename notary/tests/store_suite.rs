//! One suite for every [`Store`] backend: the embedded redb store and a real PostgreSQL server
//! started by the test.

mod support;

use std::io::{Cursor, Read};
use std::sync::{Arc, Barrier};

use notary::store::MAX_KEY_BYTES;
use notary::{BlobError, NewEntry, PostgresStore, RedbStore, Store, StoreError, StoredLease};
use trust::Digest;

fn entry(data: &str, keys: &[&str]) -> NewEntry {
    NewEntry {
        data: data.as_bytes().to_vec(),
        keys: keys.iter().map(|k| k.to_string()).collect(),
    }
}

fn read_blob(store: &dyn Store, digest: &Digest) -> Option<Vec<u8>> {
    let mut blob = store.get_blob(digest).unwrap()?;
    let mut out = Vec::new();
    blob.reader.read_to_end(&mut out).unwrap();
    assert_eq!(out.len() as u64, blob.len);
    Some(out)
}

/// A fresh store of the backend under test.
trait Backend {
    fn fresh(&self) -> Box<dyn Store>;
    /// A second handle on the same log, as another notary process would have (or the same
    /// store reopened, for the embedded backend).
    fn again(&self, store: Box<dyn Store>) -> Box<dyn Store>;
    /// Another writer on the newest log, used at the same time as `store`.
    fn again_shared(&self, store: &Arc<dyn Store>) -> Box<dyn Store>;
}

fn empty_store_has_nothing(b: &dyn Backend) {
    let s = b.fresh();
    assert_eq!(s.size().unwrap(), 0);
    assert_eq!(s.checkpoint().unwrap(), None);
    assert_eq!(s.entry(0).unwrap(), None);
    assert!(s.entries(0, 10).unwrap().is_empty());
    assert!(s.lookup("k", None, 10).unwrap().is_empty());
    assert!(s.get_blob(&Digest::of(b"x")).unwrap().is_none());
}

fn appends_are_read_back_in_order(b: &dyn Backend) {
    let s = b.fresh();
    s.append(
        0,
        &[entry("a", &["k/1", "all"]), entry("b", &["all"])],
        "cp2",
    )
    .unwrap();
    s.append(2, &[entry("c", &["k/1", "all", "all"])], "cp3")
        .unwrap();
    assert_eq!(s.size().unwrap(), 3);
    assert_eq!(s.entry(1).unwrap().as_deref(), Some(b"b".as_slice()));
    assert_eq!(s.entry(3).unwrap(), None);
    assert_eq!(
        s.entries(1, 99).unwrap(),
        vec![b"b".to_vec(), b"c".to_vec()]
    );
    assert!(s.entries(2, 1).unwrap().is_empty());
    assert_eq!(s.checkpoint().unwrap().as_deref(), Some("cp3"));
    assert_eq!(s.lookup("all", None, 10).unwrap(), vec![0, 1, 2]);
    assert_eq!(s.lookup("all", Some(0), 10).unwrap(), vec![1, 2]);
    assert_eq!(s.lookup("all", None, 2).unwrap(), vec![0, 1]);
    assert_eq!(s.lookup("k/1", None, 10).unwrap(), vec![0, 2]);
    assert_eq!(s.lookup("k/1", Some(2), 10).unwrap(), Vec::<u64>::new());
    assert_eq!(s.lookup("k", None, 10).unwrap(), Vec::<u64>::new());
    assert_eq!(
        s.lookup("all", Some(u64::MAX), 10).unwrap(),
        Vec::<u64>::new()
    );
    // What was acknowledged is there for the next handle (a restart, or another notary).
    let s = b.again(s);
    assert_eq!(s.size().unwrap(), 3);
    assert_eq!(s.entry(2).unwrap().as_deref(), Some(b"c".as_slice()));
    assert_eq!(s.checkpoint().unwrap().as_deref(), Some("cp3"));
    assert_eq!(s.lookup("k/1", None, 10).unwrap(), vec![0, 2]);
}

fn an_append_at_the_wrong_size_writes_nothing(b: &dyn Backend) {
    let s = b.fresh();
    s.append(0, &[entry("a", &["k"])], "cp1").unwrap();
    for expected in [0, 2] {
        match s.append(expected, &[entry("x", &["k"])], "bad") {
            Err(StoreError::Conflict {
                expected: e,
                actual: 1,
            }) => assert_eq!(e, expected),
            other => panic!("expected a conflict, got {other:?}"),
        }
    }
    assert_eq!(s.size().unwrap(), 1);
    assert_eq!(s.lookup("k", None, 10).unwrap(), vec![0]);
    assert_eq!(s.checkpoint().unwrap().as_deref(), Some("cp1"));
}

fn bad_keys_write_nothing(b: &dyn Backend) {
    let s = b.fresh();
    let long = "k".repeat(MAX_KEY_BYTES + 1);
    for key in ["", long.as_str()] {
        assert!(matches!(
            s.append(0, &[entry("a", &["fine"]), entry("b", &[key])], "cp"),
            Err(StoreError::BadKey { .. })
        ));
    }
    assert_eq!(s.size().unwrap(), 0);
    assert!(s.lookup("fine", None, 10).unwrap().is_empty());
    assert_eq!(s.checkpoint().unwrap(), None);
}

fn the_empty_logs_checkpoint_may_be_written_by_every_starter(b: &dyn Backend) {
    let s: Arc<dyn Store> = Arc::from(b.fresh());
    let other = b.again_shared(&s);
    s.append(0, &[], "cp0").unwrap();
    other.append(0, &[], "cp0").unwrap();
    assert_eq!(other.size().unwrap(), 0);
    assert_eq!(other.checkpoint().unwrap().as_deref(), Some("cp0"));
    other.append(0, &[entry("a", &[])], "cp1").unwrap();
    assert_eq!(s.checkpoint().unwrap().as_deref(), Some("cp1"));
}

fn racing_writers_never_fork_the_log(b: &dyn Backend) {
    // Several handles append at the same size at once: exactly one wins each round.
    let first = b.fresh();
    let first: Arc<dyn Store> = Arc::from(first);
    let others: Vec<Arc<dyn Store>> = (0..3).map(|_| Arc::from(b.again_shared(&first))).collect();
    let mut all = vec![Arc::clone(&first)];
    all.extend(others);
    for round in 0..3u64 {
        let barrier = Arc::new(Barrier::new(all.len()));
        let handles: Vec<_> = all
            .iter()
            .enumerate()
            .map(|(w, s)| {
                let s = Arc::clone(s);
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    barrier.wait();
                    s.append(round, &[entry(&format!("r{round}w{w}"), &["race"])], "cp")
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let wins = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {results:?}");
        for r in results.iter().filter(|r| r.is_err()) {
            assert!(matches!(r, Err(StoreError::Conflict { .. })), "{r:?}");
        }
    }
    assert_eq!(first.size().unwrap(), 3);
    assert_eq!(first.lookup("race", None, 10).unwrap(), vec![0, 1, 2]);
}

fn blobs_are_checked_while_written(b: &dyn Backend) {
    let s = b.fresh();
    // Over one chunk, so the chunked backend is exercised across chunk boundaries.
    let data: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
    let digest = Digest::of(&data);
    assert_eq!(
        s.put_blob(&digest, &mut Cursor::new(&data), 1 << 20)
            .unwrap(),
        data.len() as u64
    );
    assert_eq!(read_blob(&*s, &digest), Some(data.clone()));
    // Again (same bytes, read in odd pieces): accepted, the stored copy unchanged.
    let mut slow = Cursor::new(&data).take(u64::MAX);
    let mut odd = OddReader(&mut slow);
    assert!(s.put_blob(&digest, &mut odd, 1 << 20).is_ok());
    assert_eq!(read_blob(&*s, &digest), Some(data.clone()));

    // Wrong bytes for a name: refused, nothing stored.
    let other = Digest::of(b"other");
    assert!(matches!(
        s.put_blob(&other, &mut Cursor::new(b"not other"), 1 << 20),
        Err(BlobError::DigestMismatch { .. })
    ));
    assert!(s.get_blob(&other).unwrap().is_none());
    // Too large: refused, nothing stored.
    let big = vec![7u8; 5000];
    let big_digest = Digest::of(&big);
    assert!(matches!(
        s.put_blob(&big_digest, &mut Cursor::new(&big), 4096),
        Err(BlobError::TooLarge { max: 4096 })
    ));
    assert!(s.get_blob(&big_digest).unwrap().is_none());
    // The empty blob is a blob.
    let empty = Digest::of(b"");
    assert_eq!(s.put_blob(&empty, &mut Cursor::new(b""), 10).unwrap(), 0);
    assert_eq!(read_blob(&*s, &empty), Some(Vec::new()));
    // A failed upload does not disturb a good blob of the same name.
    assert!(s
        .put_blob(&digest, &mut Cursor::new(b"junk"), 1 << 20)
        .is_err());
    assert_eq!(read_blob(&*s, &digest), Some(data));
}

/// Hands out at most 1000 bytes a read, so chunking cannot depend on read sizes.
struct OddReader<'a>(&'a mut dyn Read);

impl Read for OddReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(1000);
        self.0.read(&mut buf[..n])
    }
}

fn leases_keep_the_newest_beside_the_log(b: &dyn Backend) {
    let s = b.fresh();
    let lease = |sequence, expires| StoredLease {
        sequence,
        expires,
        document: format!("lease {sequence}").into_bytes(),
    };
    let (n1, n2) = ([1u8; 32], [2u8; 32]);
    assert_eq!(s.lease(&n1).unwrap(), None);
    assert!(s.put_lease(&n1, &lease(5, 100)).unwrap());
    assert!(s.put_lease(&n2, &lease(1, 50)).unwrap());
    // Not newer: an equal or lower sequence is refused and changes nothing.
    assert!(!s.put_lease(&n1, &lease(5, 999)).unwrap());
    assert!(!s.put_lease(&n1, &lease(4, 999)).unwrap());
    assert!(s.put_lease(&n1, &lease(6, 130)).unwrap());
    // Leases do not grow the log.
    assert_eq!(s.size().unwrap(), 0);
    let s = b.again(s);
    assert_eq!(s.lease(&n1).unwrap(), Some(lease(6, 130)));
    let all = s.leases().unwrap();
    assert_eq!(all, vec![(n1, lease(6, 130)), (n2, lease(1, 50))]);
}

fn run_suite(b: &dyn Backend) {
    leases_keep_the_newest_beside_the_log(b);
    empty_store_has_nothing(b);
    appends_are_read_back_in_order(b);
    an_append_at_the_wrong_size_writes_nothing(b);
    bad_keys_write_nothing(b);
    the_empty_logs_checkpoint_may_be_written_by_every_starter(b);
    racing_writers_never_fork_the_log(b);
    blobs_are_checked_while_written(b);
}

struct Redb {
    dirs: std::sync::Mutex<Vec<tempfile::TempDir>>,
}

impl Backend for Redb {
    fn fresh(&self) -> Box<dyn Store> {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
        self.dirs.lock().unwrap().push(dir);
        Box::new(store)
    }

    fn again(&self, store: Box<dyn Store>) -> Box<dyn Store> {
        // Close and reopen the newest directory: a restart.
        drop(store);
        let dirs = self.dirs.lock().unwrap();
        Box::new(RedbStore::open(dirs.last().unwrap().path()).unwrap())
    }

    fn again_shared(&self, store: &Arc<dyn Store>) -> Box<dyn Store> {
        // One process holds a redb file; "another writer" is the same handle from another
        // thread, which redb serialises.
        Box::new(SharedHandle(Arc::clone(store)))
    }
}

struct SharedHandle(Arc<dyn Store>);

impl Store for SharedHandle {
    fn append(&self, expected: u64, entries: &[NewEntry], cp: &str) -> Result<(), StoreError> {
        self.0.append(expected, entries, cp)
    }
    fn size(&self) -> Result<u64, StoreError> {
        self.0.size()
    }
    fn entries(&self, from: u64, to: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        self.0.entries(from, to)
    }
    fn checkpoint(&self) -> Result<Option<String>, StoreError> {
        self.0.checkpoint()
    }
    fn lookup(&self, key: &str, after: Option<u64>, limit: usize) -> Result<Vec<u64>, StoreError> {
        self.0.lookup(key, after, limit)
    }
    fn put_blob(&self, d: &Digest, r: &mut dyn Read, max: u64) -> Result<u64, BlobError> {
        self.0.put_blob(d, r, max)
    }
    fn get_blob(&self, d: &Digest) -> Result<Option<notary::BlobReader>, StoreError> {
        self.0.get_blob(d)
    }
    fn put_lease(&self, node: &[u8; 32], lease: &StoredLease) -> Result<bool, StoreError> {
        self.0.put_lease(node, lease)
    }
    fn lease(&self, node: &[u8; 32]) -> Result<Option<StoredLease>, StoreError> {
        self.0.lease(node)
    }
    fn leases(&self) -> Result<Vec<([u8; 32], StoredLease)>, StoreError> {
        self.0.leases()
    }
}

struct Pg {
    server: support::postgres::Postgres,
    urls: std::sync::Mutex<Vec<String>>,
}

impl Backend for Pg {
    fn fresh(&self) -> Box<dyn Store> {
        let url = self.server.fresh_database();
        self.urls.lock().unwrap().push(url.clone());
        Box::new(PostgresStore::connect(&url).unwrap())
    }

    fn again(&self, store: Box<dyn Store>) -> Box<dyn Store> {
        drop(store);
        let urls = self.urls.lock().unwrap();
        Box::new(PostgresStore::connect(urls.last().unwrap()).unwrap())
    }

    fn again_shared(&self, _store: &Arc<dyn Store>) -> Box<dyn Store> {
        // Another notary: its own connections to the same database.
        let urls = self.urls.lock().unwrap();
        Box::new(PostgresStore::connect(urls.last().unwrap()).unwrap())
    }
}

#[test]
fn redb_backend_passes_the_suite() {
    run_suite(&Redb {
        dirs: Default::default(),
    });
}

#[test]
fn redb_file_is_held_by_one_process_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let _first = RedbStore::open(dir.path()).unwrap();
    assert!(RedbStore::open(dir.path()).is_err());
}

#[test]
fn postgres_backend_passes_the_suite() {
    run_suite(&Pg {
        server: support::postgres::Postgres::start(),
        urls: Default::default(),
    });
}
