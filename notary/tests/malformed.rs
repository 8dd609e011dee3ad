//! 10,000 malformed bodies to each write route of the real binary: every one refused with a
//! 4xx and a one-line reason, nothing stored, the server still answering.

mod support;

use std::io::Cursor;

use notary_client::{Client, ClientError};
use support::server::Server;
use trust::{Digest, DocumentKind, SecretKey, SignedDocument};

/// xorshift64*: a fixed, dependency-free stream of test bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap()
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next().to_le_bytes()[0]).collect()
    }
}

/// A malformed variant of `good`: flipped bits, a cut, spliced garbage, or pure noise.
fn mangle(rng: &mut Rng, good: &[u8]) -> Vec<u8> {
    let mut out = good.to_vec();
    match rng.below(4) {
        0 => {
            for _ in 0..=rng.below(4) {
                let at = rng.below(out.len());
                out[at] ^= 1 << rng.below(8);
            }
        }
        1 => out.truncate(rng.below(out.len())),
        2 => {
            let at = rng.below(out.len());
            let len = 1 + rng.below(64);
            let junk = rng.bytes(len);
            out.splice(at..at, junk);
        }
        _ => {
            let len = rng.below(512);
            out = rng.bytes(len);
        }
    }
    out
}

fn expect_4xx(r: Result<impl std::fmt::Debug, ClientError>) {
    match r {
        Err(ClientError::Refused { status, reason }) => {
            assert!((400..500).contains(&status), "{status} {reason}");
            assert!(!reason.is_empty() && !reason.contains('\n'), "{reason:?}");
        }
        other => panic!("expected a 4xx refusal, got {other:?}"),
    }
}

#[test]
fn ten_thousand_malformed_writes_are_all_refused_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    let client = Client::new(&server.url, &server.key).unwrap();
    let mut good = SignedDocument::new(DocumentKind::WorkloadManifest, b"a valid body".to_vec());
    good.sign(&SecretKey::from_seed([7; 32])).unwrap();
    good.sign(&SecretKey::from_seed([8; 32])).unwrap();
    let good = good.encode();
    let (before, note) = client.checkpoint().unwrap();

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..10_000 {
        let bad = mangle(&mut rng, &good);
        if bad == good {
            continue;
        }
        expect_4xx(client.submit(&bad));
    }
    for i in 0..10_000u32 {
        let len = rng.below(256);
        let body = rng.bytes(len);
        // Named after other bytes (or after nothing at all): refused, never stored.
        let name = Digest::of(&i.to_le_bytes());
        expect_4xx(client.put_blob(&name, body.len() as u64, &mut Cursor::new(&body)));
        if i % 1000 == 0 {
            expect_4xx(client.get_blob(&name, 1 << 20, &mut Vec::new()));
        }
    }

    let (after, after_note) = client.checkpoint().unwrap();
    assert_eq!(
        (after.size, &after_note),
        (before.size, &note),
        "nothing was stored"
    );
    let blobs = std::fs::read_dir(dir.path().join("blobs")).unwrap().count();
    assert_eq!(blobs, 0, "no blob or upload file was left behind");
    // The valid document is still accepted: the refusals broke nothing.
    assert_eq!(client.submit(&good).unwrap().index, before.size);
}
