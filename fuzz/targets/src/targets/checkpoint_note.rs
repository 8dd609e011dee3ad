//! Signed notes and checkpoints from an untrusted notary: never panic; a checkpoint body that
//! parses survives a text round trip; a note never opens without a signature by the known key.

use tlog::{open_note, Checkpoint, NoteVerifier};

/// One input.
pub fn fuzz_one(data: &[u8]) {
    let Ok(verifier) = NoteVerifier::from_text(
        "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
    ) else {
        return;
    };
    let _ = open_note(data, core::slice::from_ref(&verifier));
    let _ = Checkpoint::open(data, &verifier);
    if let Ok(text) = core::str::from_utf8(data) {
        if let Ok(c) = Checkpoint::parse(text) {
            assert_eq!(Checkpoint::parse(&c.to_text()), Ok(c));
        }
        let _ = NoteVerifier::from_text(text);
    }
}
