//! The committer driven directly, for what timing cannot pin down.

use std::sync::mpsc::Receiver;

use super::commit::commit;
use super::*;
use crate::admission::{LogView, Refusal};
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
