//! The notary core, without sockets: admission, group commit, proofs, restarts, long-polls,
//! and two notaries sharing one PostgreSQL database.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use notary::admission::{signer_key, Checked, DocumentRules, LogView, OpenRules, Refusal};
use notary::{Config, Notary, OpenError, PostgresStore, Receipt, RedbStore, Store, SubmitError};
use tlog::{leaf_hash, notary_verifier, verify_inclusion, Checkpoint};
use trust::{DocumentKind, SecretKey, SignedDocument};

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn doc(body: &str, signer: u8) -> Vec<u8> {
    let mut d = SignedDocument::new(DocumentKind::WorkloadManifest, body.as_bytes().to_vec());
    d.sign(&SecretKey::from_seed([signer; 32])).unwrap();
    d.encode()
}

fn open_redb(dir: &Path, rules: Box<dyn DocumentRules>) -> Notary {
    let store: Arc<dyn Store> = Arc::new(RedbStore::open(dir).unwrap());
    Notary::open(store, key(1), rules, Config::default()).unwrap()
}

/// Checks a receipt the way a node would: the checkpoint verifies against the pinned key and
/// the proof places exactly these bytes at the index.
fn check_receipt(receipt: &Receipt, bytes: &[u8]) -> Checkpoint {
    let verifier = notary_verifier(key(1).verifying_key().as_bytes()).unwrap();
    let cp = Checkpoint::open(receipt.checkpoint.as_bytes(), &verifier).unwrap();
    assert_eq!(cp.size, receipt.size);
    verify_inclusion(
        receipt.index,
        cp.size,
        &leaf_hash(bytes),
        &receipt.proof,
        &cp.root,
    )
    .unwrap();
    cp
}

fn refused(r: Result<Receipt, SubmitError>) -> String {
    match r {
        Err(SubmitError::Refused(reason)) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn an_accepted_write_is_proven_in_a_signed_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let n = open_redb(dir.path(), Box::new(OpenRules));
    assert_eq!(n.size(), 0);
    let verifier = notary_verifier(key(1).verifying_key().as_bytes()).unwrap();
    let empty = Checkpoint::open(n.checkpoint().as_bytes(), &verifier).unwrap();
    assert_eq!((empty.size, empty.root), (0, tlog::Hash::empty()));

    let bytes = doc("hello", 7);
    let receipt = n.submit(bytes.clone()).unwrap();
    assert_eq!((receipt.index, receipt.size), (0, 1));
    check_receipt(&receipt, &bytes);
    assert_eq!(n.checkpoint(), receipt.checkpoint);
    assert_eq!(n.entry(0).unwrap(), Some(bytes.clone()));
    assert_eq!(n.entry(1).unwrap(), None);
    let signer = signer_key(&SecretKey::from_seed([7; 32]).public());
    assert_eq!(n.lookup(&signer, None, 10).unwrap(), vec![(0, bytes)]);
    assert_eq!(n.lookup("kind/2", None, 10).unwrap().len(), 1);
}

#[test]
fn bad_writes_are_refused_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let n = open_redb(dir.path(), Box::new(OpenRules));
    n.submit(doc("once", 7)).unwrap();
    let before = n.checkpoint();
    assert!(refused(n.submit(b"garbage".to_vec())).starts_with("document does not decode"));
    assert!(refused(n.submit(doc("once", 7))).starts_with("replay"));
    // The same body signed by someone else is still the same document body: a replay.
    assert!(refused(n.submit(doc("once", 8))).starts_with("replay"));
    let mut forged = doc("other", 7);
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert!(refused(n.submit(forged)).starts_with("signature check failed"));
    let unsigned = SignedDocument::new(DocumentKind::WorkloadManifest, b"x".to_vec()).encode();
    assert_eq!(refused(n.submit(unsigned)), "document is not signed");
    assert_eq!(n.size(), 1);
    assert_eq!(n.checkpoint(), before);
}

/// A test-only rule: bodies are `<name> <text>`; a name may be claimed once; bodies starting
/// with `no` are refused. Files each entry under `name/<name>`.
struct ClaimOnce;

impl DocumentRules for ClaimOnce {
    fn admit(&self, document: &Checked, log: &dyn LogView) -> Result<Vec<String>, Refusal> {
        let body = std::str::from_utf8(document.document.body())
            .map_err(|_| Refusal::refused("body is not text"))?;
        let name = body.split(' ').next().unwrap_or_default();
        if name == "no" {
            return Err(Refusal::refused("the rule says no"));
        }
        let key = format!("name/{name}");
        if !log.lookup(&key, None, 1)?.is_empty() {
            return Err(Refusal::refused(format!("name {name} is taken")));
        }
        Ok(vec![key])
    }
}

#[test]
fn the_rules_seam_decides_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let n = Arc::new(open_redb(dir.path(), Box::new(ClaimOnce)));
    assert_eq!(refused(n.submit(doc("no thanks", 7))), "the rule says no");
    assert_eq!(n.size(), 0);
    // Ten different documents claim one name at once; whatever the batching (the rules see
    // earlier writes of their own batch), exactly one gets it.
    let handles: Vec<_> = (0..10)
        .map(|i| {
            let n = Arc::clone(&n);
            thread::spawn(move || n.submit(doc(&format!("alice attempt-{i}"), 7)))
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    for r in results.into_iter().filter(Result::is_err) {
        assert_eq!(refused(r), "name alice is taken");
    }
    assert_eq!(n.size(), 1);
    assert_eq!(n.lookup("name/alice", None, 10).unwrap().len(), 1);
}

#[test]
fn concurrent_writes_commit_in_batches_with_consistent_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let n = Arc::new(open_redb(dir.path(), Box::new(OpenRules)));
    let handles: Vec<_> = (0..40)
        .map(|i| {
            let n = Arc::clone(&n);
            thread::spawn(move || {
                let bytes = doc(&format!("doc {i}"), 7);
                (n.submit(bytes.clone()).unwrap(), bytes)
            })
        })
        .collect();
    let receipts: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut indexes: Vec<u64> = receipts.iter().map(|(r, _)| r.index).collect();
    indexes.sort();
    assert_eq!(indexes, (0..40).collect::<Vec<_>>());
    let last = Checkpoint::parse(
        tlog::open_note(
            n.checkpoint().as_bytes(),
            &[notary_verifier(key(1).verifying_key().as_bytes()).unwrap()],
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(last.size, 40);
    for (receipt, bytes) in &receipts {
        let cp = check_receipt(receipt, bytes);
        // Every checkpoint handed out is a prefix of the latest.
        let proof = n.consistency_proof(cp.size, last.size).unwrap();
        last.check_extends(&cp, &proof).unwrap();
    }
}

#[test]
fn a_restart_keeps_the_log_and_extends_it_consistently() {
    let dir = tempfile::tempdir().unwrap();
    let first = {
        let n = open_redb(dir.path(), Box::new(OpenRules));
        for i in 0..5 {
            n.submit(doc(&format!("before {i}"), 7)).unwrap();
        }
        n.checkpoint()
    };
    let n = open_redb(dir.path(), Box::new(OpenRules));
    assert_eq!(n.checkpoint(), first);
    assert!(refused(n.submit(doc("before 3", 7))).starts_with("replay"));
    n.submit(doc("after", 7)).unwrap();
    let verifier = notary_verifier(key(1).verifying_key().as_bytes()).unwrap();
    let old = Checkpoint::open(first.as_bytes(), &verifier).unwrap();
    let new = Checkpoint::open(n.checkpoint().as_bytes(), &verifier).unwrap();
    new.check_extends(&old, &n.consistency_proof(5, 6).unwrap())
        .unwrap();
}

#[test]
fn a_log_signed_by_another_key_is_not_opened() {
    let dir = tempfile::tempdir().unwrap();
    open_redb(dir.path(), Box::new(OpenRules))
        .submit(doc("x", 7))
        .unwrap();
    let store: Arc<dyn Store> = Arc::new(RedbStore::open(dir.path()).unwrap());
    assert!(matches!(
        Notary::open(store, key(2), Box::new(OpenRules), Config::default()),
        Err(OpenError::Mismatch(_))
    ));
}

#[test]
fn a_long_poll_wakes_on_a_matching_append() {
    let dir = tempfile::tempdir().unwrap();
    let n = Arc::new(open_redb(dir.path(), Box::new(OpenRules)));
    n.submit(doc("earlier", 9)).unwrap();
    let key9 = signer_key(&SecretKey::from_seed([9; 32]).public());
    // Nothing new after index 0: the poll times out empty.
    assert!(n
        .wait(&key9, Some(0), Duration::from_millis(50))
        .unwrap()
        .is_empty());
    let waiter = {
        let n = Arc::clone(&n);
        let key9 = key9.clone();
        thread::spawn(move || n.wait(&key9, Some(0), Duration::from_secs(60)).unwrap())
    };
    // Another signer's write does not answer it; the matching one does.
    n.submit(doc("unrelated", 8)).unwrap();
    let bytes = doc("for nine", 9);
    n.submit(bytes.clone()).unwrap();
    assert_eq!(waiter.join().unwrap(), vec![(2, bytes)]);
}

#[test]
fn two_notaries_on_one_postgres_database_keep_one_log() {
    let pg = support::postgres::Postgres::start();
    let url = pg.fresh_database();
    let open = || {
        let store: Arc<dyn Store> = Arc::new(PostgresStore::connect(&url).unwrap());
        let config = Config {
            sync_interval: Duration::from_millis(100),
            ..Config::default()
        };
        Arc::new(Notary::open(store, key(1), Box::new(OpenRules), config).unwrap())
    };
    let (a, b) = (open(), open());
    let handles: Vec<_> = (0..20)
        .map(|i| {
            let n = Arc::clone(if i % 2 == 0 { &a } else { &b });
            thread::spawn(move || {
                let bytes = doc(&format!("shared {i}"), 7);
                (n.submit(bytes.clone()).unwrap(), bytes)
            })
        })
        .collect();
    let receipts: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut indexes: Vec<u64> = receipts.iter().map(|(r, _)| r.index).collect();
    indexes.sort();
    assert_eq!(indexes, (0..20).collect::<Vec<_>>());
    for (r, bytes) in &receipts {
        check_receipt(r, bytes);
    }
    // A replay through the other notary is refused too.
    let (first_receipt, first_bytes) = &receipts[0];
    assert!(refused(b.submit(first_bytes.clone())).starts_with("replay"));
    // Both notaries converge on the same signed tree head: one log, not two.
    let c = open();
    assert_eq!(c.size(), 20);
    a.submit(doc("final", 7)).unwrap();
    let final_from_a = a.checkpoint();
    let d = open();
    assert_eq!(d.checkpoint(), final_from_a);
    assert_eq!(
        d.entry(first_receipt.index).unwrap().as_ref(),
        Some(first_bytes)
    );
}
