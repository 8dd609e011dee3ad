//! A full data directory: the notary refuses writes with one line naming the cause, keeps
//! serving checkpoints, entries and proofs, and once space is freed accepts writes on a log that
//! extends every checkpoint it handed out before.
//!
//! (A read-only remount of the running server's directory is not tested: the kernel refuses to
//! remount a file system read-only while a file on it is open for writing, as the store is.)
//!
//! The data directory is a small tmpfs mounted in a private mount namespace (`unshare -m`, which
//! needs root or CAP_SYS_ADMIN); the test reaches it through `/proc/<server>/root`, which resolves
//! paths in the server's namespace. If the mount cannot be set up the test fails: it is never
//! skipped.

mod support;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use notary_client::{Client, ClientError, Receipt};
use support::server::{binary, Server};
use trust::grid::{Capacity, Disk, Farm, Nic, NodeRegistration};
use trust::{Digest, SecretKey, SignedBody as _};

const FARMER: [u8; 32] = [21; 32];
const NODE: [u8; 32] = [22; 32];

fn farm() -> Vec<u8> {
    let farmer = SecretKey::from_seed(FARMER);
    let body = Farm {
        version: 1,
        farmer: farmer.public(),
        name: "Disk-full test farm".into(),
    };
    let mut d = body.to_document();
    d.sign(&farmer).unwrap();
    d.encode()
}

/// The node's registration number `sequence` (each one supersedes the one before).
fn registration(sequence: u64) -> Vec<u8> {
    let node = SecretKey::from_seed(NODE);
    let body = NodeRegistration {
        sequence,
        node: node.public(),
        farm: SecretKey::from_seed(FARMER).public(),
        capacity: Capacity {
            cpus: 4,
            memory_mib: 8192,
            disks: vec![Disk {
                name: "vdb".into(),
                size_mib: 20 * 1024,
            }],
            nics: vec![Nic {
                name: "eth0".into(),
                mac: [0x52, 0x54, 0, 0, 0, 1],
            }],
        },
        release_version: 1,
        release_manifest: Digest::of(b"release"),
    };
    let mut d = body.to_document();
    d.sign(&node).unwrap();
    d.encode()
}

/// A server whose data directory `dir` is a `size` tmpfs in its own mount namespace.
fn server_on_tmpfs(dir: &Path, size: &str) -> Server {
    let mut command = Command::new("unshare");
    command
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(
            "mount -t tmpfs -o size=\"$2\",mode=0700 nullos-notary-test \"$0\" || exit 1; \
             exec \"$1\" serve --data \"$0\" --listen 127.0.0.1:0",
        )
        .arg(dir)
        .arg(binary())
        .arg(size);
    let server = Server::spawn(command);
    // The server must really run on the tmpfs, not on the directory underneath it.
    let mountinfo = std::fs::read_to_string(format!("/proc/{}/mountinfo", server.pid()))
        .expect("read the server's mountinfo");
    let dir_text = dir.to_string_lossy();
    assert!(
        mountinfo.lines().any(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            f.get(4) == Some(&dir_text.as_ref()) && l.contains(" - tmpfs ")
        }),
        "the server's data directory {dir_text} is not a tmpfs in its namespace:\n{mountinfo}"
    );
    server
}

/// `path` as the server sees it.
fn in_server(server: &Server, path: &Path) -> PathBuf {
    PathBuf::from(format!("/proc/{}/root", server.pid())).join(path.strip_prefix("/").unwrap())
}

/// Writes zeros to `path` until the file system is full; returns how many bytes fit.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).expect("create the filler file");
    let chunk = vec![0u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    let _ = f.sync_all();
    written
}

/// errno ENOSPC on Linux.
const ENOSPC: i32 = 28;

/// Submits registrations from `next` on until one is refused (at most `bound`); returns the
/// refusal and the receipts of those accepted before it.
fn write_until_refused(
    client: &Client,
    next: &mut u64,
    bound: u64,
) -> (Vec<(Receipt, Vec<u8>)>, ClientError) {
    let mut accepted = Vec::new();
    for _ in 0..bound {
        let bytes = registration(*next);
        *next += 1;
        match client.submit(&bytes) {
            Ok(r) => accepted.push((r, bytes)),
            Err(e) => return (accepted, e),
        }
    }
    panic!("{bound} writes were all accepted on a full or read-only data directory");
}

/// The refusal is an HTTP error with one line naming `cause`.
fn assert_refused_for(e: &ClientError, cause: &str) {
    match e {
        ClientError::Refused { status, reason } => {
            assert!(*status >= 400, "status {status}");
            assert!(
                !reason.trim_end().contains('\n'),
                "more than one line: {reason:?}"
            );
            assert!(
                reason.contains(cause),
                "the refusal {reason:?} does not name {cause:?}"
            );
        }
        other => panic!("expected an HTTP refusal, got {other:?}"),
    }
}

/// Reads keep working: the checkpoint verifies and extends `kept`, every acknowledged entry is
/// there under a verified inclusion proof.
fn assert_reads_work(client: &Client, kept: &tlog::Checkpoint, acked: &[(Receipt, Vec<u8>)]) {
    let (latest, _) = client
        .checkpoint_extending(kept)
        .expect("the checkpoint still verifies and extends the one kept");
    for (receipt, bytes) in acked {
        let data = client
            .entry(receipt.index, &latest)
            .expect("acknowledged entries are still served");
        assert_eq!(&data, bytes, "entry {}", receipt.index);
    }
}

#[test]
fn full_data_directory_refuses_writes_and_keeps_serving_reads() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_on_tmpfs(dir.path(), "16m");
    let client = Client::new(&server.url, &server.key).unwrap();

    let mut acked = vec![(client.submit(&farm()).unwrap(), farm())];
    let mut next = 1;
    for _ in 0..20 {
        let bytes = registration(next);
        next += 1;
        acked.push((client.submit(&bytes).unwrap(), bytes));
    }
    let (before, _) = client.checkpoint().unwrap();

    let filler = in_server(&server, &dir.path().join("filler"));
    let filled = fill(&filler);
    assert!(filled > 0, "nothing fit in the tmpfs");
    let (more, refusal) = write_until_refused(&client, &mut next, 2000);
    assert_refused_for(&refusal, "No space left on device");
    acked.extend(more);
    // A blob upload is refused too, and leaves nothing behind. (Small enough that the client
    // has sent it all before the refusal arrives.)
    let blob = vec![7u8; 32 * 1024];
    let digest = Digest::of(&blob);
    match client.put_blob(&digest, blob.len() as u64, &mut blob.as_slice()) {
        Err(e) => assert_refused_for(&e, "No space left on device"),
        Ok(_) => panic!("a blob was stored on a full file system"),
    }
    let blobs = in_server(&server, &dir.path().join("blobs"));
    let left: Vec<_> = std::fs::read_dir(&blobs)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "files left in the blob store: {left:?}");
    // Still refused, still serving.
    let again = client.submit(&registration(next)).unwrap_err();
    assert_refused_for(&again, "No space left on device");
    assert_reads_work(&client, &before, &acked);
    let (during, _) = client.checkpoint().unwrap();

    std::fs::remove_file(&filler).expect("free the space");
    for _ in 0..5 {
        let bytes = registration(next);
        next += 1;
        let receipt = client
            .submit(&bytes)
            .expect("writes succeed once space is freed");
        acked.push((receipt, bytes));
    }
    assert_reads_work(&client, &before, &acked);
    assert_reads_work(&client, &during, &acked);
    // Indices are dense and in order: nothing was half-written while the disk was full.
    for (i, (receipt, _)) in acked.iter().enumerate() {
        assert_eq!(receipt.index, i as u64);
    }
}
