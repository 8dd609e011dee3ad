//! `kill -9` of the notary under write load: after a restart every acknowledged write is in the
//! log at the index its receipt named, and the new checkpoint extends every checkpoint handed
//! out before the crash.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use notary_client::{Client, Receipt};
use support::server::Server;
use trust::{DocumentKind, SecretKey, SignedDocument};

fn doc(body: &str) -> Vec<u8> {
    let mut d = SignedDocument::new(DocumentKind::WorkloadManifest, body.as_bytes().to_vec());
    d.sign(&SecretKey::from_seed([7; 32])).unwrap();
    d.encode()
}

/// A receipt and the bytes it acknowledged.
type Acked = (Receipt, Vec<u8>);

#[test]
fn kill_9_under_write_load_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    let client = Client::new(&server.url, &server.key).unwrap();
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let count = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (client, acked, count) = (client.clone(), Arc::clone(&acked), Arc::clone(&count));
            thread::spawn(move || {
                for i in 0..500 {
                    let bytes = doc(&format!("writer {w} write {i}"));
                    // The first failure is the crash; whatever was acknowledged before counts.
                    let Ok(receipt) = client.submit(&bytes) else {
                        return;
                    };
                    acked.lock().unwrap().push((receipt, bytes));
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // Kill once writes are flowing (the deadline only guards against a hang).
    let deadline = Instant::now() + Duration::from_secs(120);
    while count.load(Ordering::Relaxed) < 40 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    server.kill();
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap();
    assert!(
        acked.len() >= 40,
        "only {} writes were acknowledged",
        acked.len()
    );

    let server = Server::start(dir.path(), None);
    let client = Client::new(&server.url, &server.key).unwrap();
    let (latest, _) = client.checkpoint().unwrap();
    eprintln!(
        "{} writes acknowledged before the kill, {} in the log after it",
        acked.len(),
        latest.size
    );
    for (receipt, bytes) in acked.iter() {
        assert_eq!(&client.entry(receipt.index, &latest).unwrap(), bytes);
        client.checkpoint_extending(&receipt.checkpoint).unwrap();
    }
    // And the log takes writes again.
    client.submit(&doc("after the crash")).unwrap();
}
