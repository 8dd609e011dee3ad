//! The real `nullos-notary` binary on 127.0.0.1, driven through the blocking client, on the
//! embedded store and on a real PostgreSQL server: the same scenarios on both.

mod support;

use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use notary_client::{Client, ClientError};
use support::postgres::Postgres;
use support::server::Server;
use tlog::Checkpoint;
use trust::{Digest, DocumentKind, SecretKey, SignedDocument};

fn doc(body: &str, signer: u8) -> Vec<u8> {
    let mut d = SignedDocument::new(DocumentKind::WorkloadManifest, body.as_bytes().to_vec());
    d.sign(&SecretKey::from_seed([signer; 32])).unwrap();
    d.encode()
}

fn signer_key(seed: u8) -> String {
    notary::admission::signer_key(&SecretKey::from_seed([seed; 32]).public())
}

fn client(server: &Server) -> Client {
    Client::new(&server.url, &server.key).unwrap()
}

fn refused(r: Result<impl std::fmt::Debug, ClientError>) -> (u16, String) {
    match r {
        Err(ClientError::Refused { status, reason }) => (status, reason),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Writes, refusals, entries and consistency, as a node or agent sees them.
fn writes_are_proven_and_bad_ones_leave_nothing(server: &Server) {
    let c = client(server);
    let (start, _) = c.checkpoint().unwrap();
    let bytes = doc("first", 7);
    let receipt = c.submit(&bytes).unwrap();
    assert_eq!(receipt.index, start.size);
    assert_eq!(receipt.checkpoint.size, start.size + 1);
    assert_eq!(c.entry(receipt.index, &receipt.checkpoint).unwrap(), bytes);

    let (status, reason) = refused(c.submit(&bytes));
    assert_eq!(status, 400);
    assert!(reason.starts_with("replay"), "{reason}");
    let (status, reason) = refused(c.submit(b"garbage"));
    assert_eq!(status, 400);
    assert!(reason.starts_with("document does not decode"), "{reason}");
    assert!(!reason.contains('\n'));
    let (status, _) = refused(c.submit(&vec![0u8; 200 * 1024]));
    assert_eq!(status, 413);
    let mut forged = doc("forged", 7);
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let (status, reason) = refused(c.submit(&forged));
    assert_eq!(status, 400);
    assert!(reason.starts_with("signature check failed"), "{reason}");

    let (now, _) = c.checkpoint_extending(&receipt.checkpoint).unwrap();
    assert_eq!(now, receipt.checkpoint, "refusals stored nothing");
    let (status, _) = refused(c.entry(now.size, &now));
    assert_eq!(status, 404);
    let (status, reason) = refused(c.inclusion_proof(0, now.size + 1));
    assert_eq!(status, 400);
    assert!(reason.contains("beyond"), "{reason}");

    // A client that kept a checkpoint refuses a log that does not extend it.
    let c2 = c.submit(&doc("second", 7)).unwrap();
    let mut forked = receipt.checkpoint.clone();
    forked.root = tlog::leaf_hash(b"another history");
    assert!(matches!(
        c.checkpoint_extending(&forked),
        Err(ClientError::Checkpoint(_))
    ));
    assert_eq!(
        c.checkpoint_extending(&receipt.checkpoint).unwrap().0,
        c2.checkpoint
    );
}

/// Blobs: streamed up and down, checked both ways, nothing kept on a mismatch.
fn blobs_round_trip_and_mismatches_are_refused(server: &Server) {
    let c = client(server);
    let data: Vec<u8> = (0..1_500_000u32)
        .map(|i| (i * 7).to_le_bytes()[0])
        .collect();
    let digest = Digest::of(&data);
    assert_eq!(
        c.put_blob(&digest, data.len() as u64, &mut Cursor::new(&data))
            .unwrap(),
        data.len() as u64
    );
    let mut back = Vec::new();
    assert_eq!(
        c.get_blob(&digest, 1 << 30, &mut back).unwrap(),
        data.len() as u64
    );
    assert_eq!(back, data);
    let mut short = Vec::new();
    assert!(c.get_blob(&digest, 1000, &mut short).is_err());

    let other = Digest::of(b"other bytes");
    let (status, reason) = refused(c.put_blob(&other, 5, &mut Cursor::new(b"wrong")));
    assert_eq!(status, 400);
    assert!(reason.contains("digest"), "{reason}");
    let (status, _) = refused(c.get_blob(&other, 1 << 20, &mut Vec::new()));
    assert_eq!(status, 404);
}

/// A long-poll returns the entry filed under its key after the index it names.
fn a_long_poll_returns_a_new_matching_entry(server: &Server) {
    let c = client(server);
    let key = signer_key(9);
    let earlier = c.submit(&doc("before the poll", 9)).unwrap();
    assert!(c
        .wait(&key, Some(earlier.index), Duration::from_secs(1))
        .unwrap()
        .is_empty());
    let waiter = {
        let c = c.clone();
        let key = key.clone();
        thread::spawn(move || c.wait(&key, Some(earlier.index), Duration::from_secs(30)))
    };
    c.submit(&doc("someone else's", 8)).unwrap();
    let bytes = doc("for the poller", 9);
    let receipt = c.submit(&bytes).unwrap();
    let got = waiter.join().unwrap().unwrap();
    assert_eq!(got, vec![(receipt.index, bytes)]);
}

fn run_scenarios(data: &Path, database: Option<&str>) {
    let server = Server::start(data, database);
    writes_are_proven_and_bad_ones_leave_nothing(&server);
    blobs_round_trip_and_mismatches_are_refused(&server);
    a_long_poll_returns_a_new_matching_entry(&server);
}

#[test]
fn redb_server_through_the_client() {
    let dir = tempfile::tempdir().unwrap();
    run_scenarios(dir.path(), None);
}

#[test]
fn postgres_server_through_the_client() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    run_scenarios(dir.path(), Some(&pg.fresh_database()));
}

#[test]
fn two_servers_on_one_database_serve_one_log_and_wake_each_others_polls() {
    let pg = Postgres::start();
    let url = pg.fresh_database();
    let dir = tempfile::tempdir().unwrap();
    // Notaries sharing a database share the key file too.
    let a = Server::start(dir.path(), Some(&url));
    let b = Server::start(dir.path(), Some(&url));
    assert_eq!(a.key, b.key);
    let (ca, cb) = (client(&a), client(&b));
    let first = ca.submit(&doc("through a", 7)).unwrap();
    let waiter = {
        let cb = cb.clone();
        thread::spawn(move || cb.wait(&signer_key(5), Some(first.index), Duration::from_secs(30)))
    };
    let second = cb.submit(&doc("through b", 7)).unwrap();
    assert_eq!(
        second.index,
        first.index + 1,
        "b appended after a's entry, not over it"
    );
    let bytes = doc("for the poller on b", 5);
    let third = ca.submit(&bytes).unwrap();
    assert_eq!(waiter.join().unwrap().unwrap(), vec![(third.index, bytes)]);
    let (seen_by_b, _) = cb.checkpoint_extending(&first.checkpoint).unwrap();
    assert!(seen_by_b.size >= 3);
    assert!(matches!(
        cb.submit(&doc("through a", 7)),
        Err(ClientError::Refused { status: 400, .. })
    ));
}

#[test]
fn first_start_prints_one_line_and_a_restart_keeps_key_and_log() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    assert!(server
        .line
        .starts_with("nullos-notary listening on http://127.0.0.1:"));
    let c = client(&server);
    let (empty, note) = c.checkpoint().unwrap();
    assert_eq!(empty.size, 0);
    assert!(note.starts_with(&tlog::notary_origin(server.key.as_bytes())));
    let kept = c.submit(&doc("survives", 7)).unwrap().checkpoint;
    let key = server.key;
    server.kill();

    let server = Server::start(dir.path(), None);
    assert_eq!(server.key, key);
    let c = client(&server);
    let (after, _) = c.checkpoint_extending(&kept).unwrap();
    assert_eq!(after, kept);
    let (status, _) = refused(c.submit(&doc("survives", 7)));
    assert_eq!(status, 400);
}

#[test]
fn the_explorer_page_and_the_check_command_show_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    let c = client(&server);
    c.submit(&doc("one", 7)).unwrap();
    let (_, note) = c.submit(&doc("two", 7)).map(|r| (r.index, r.note)).unwrap();
    let page = ureq::get(&format!("{}/", server.url))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(page.contains("<strong id=\"size\">2</strong>"), "{page}");
    let root_line = note.lines().nth(2).unwrap();
    assert!(page.contains(root_line), "{page}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nullos-notary"))
        .args([
            "check",
            "--url",
            &server.url,
            "--key",
            &server.key.to_text(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("checkpoint verified: nullos-notary/"),
        "{text}"
    );
    assert!(text.contains(" size 2 "), "{text}");
    // Under another key the same checkpoint does not verify.
    let other = SecretKey::from_seed([42; 32]).public().to_text();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nullos-notary"))
        .args(["check", "--url", &server.url, "--key", &other])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let (status, reason) = refused(c.wait("", None, Duration::from_secs(1)));
    assert_eq!(status, 400);
    assert!(reason.contains("'key'"), "{reason}");
}

#[test]
fn concurrent_clients_all_get_verified_receipts() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    let c = Arc::new(client(&server));
    let handles: Vec<_> = (0..16)
        .map(|i| {
            let c = Arc::clone(&c);
            thread::spawn(move || c.submit(&doc(&format!("parallel {i}"), 7)).unwrap())
        })
        .collect();
    let receipts: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let (latest, _) = c.checkpoint().unwrap();
    assert_eq!(latest.size, 16);
    for r in receipts {
        let proof = c.consistency_proof(r.checkpoint.size, latest.size).unwrap();
        latest.check_extends(&r.checkpoint, &proof).unwrap();
    }
    let _: Checkpoint = latest;
}

/// `--rules unchecked` (a notary that does not enforce the grid's rules) needs its explicit
/// flag, and says what it is before it listens.
#[test]
fn unchecked_rules_need_their_flag_and_print_a_warning() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let serve = |extra: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_nullos-notary"));
        c.args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(dir.path())
            .args(["--rules", "unchecked"])
            .args(extra);
        c
    };
    let out = serve(&[]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8(out.stderr.clone()).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("nullos-notary: --rules unchecked admits grid documents without judging them; give --allow-unchecked"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "it must not listen: {out:?}");

    let mut child = serve(&["--allow-unchecked"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut listening = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut listening)
        .unwrap();
    let mut warning = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut warning)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        listening.starts_with("nullos-notary listening on http://127.0.0.1:"),
        "{listening}"
    );
    assert_eq!(
        warning.trim_end(),
        "nullos-notary: warning: rules unchecked: grid documents are admitted without the grid's rules (a misbehaving notary); never for a real grid"
    );
}
