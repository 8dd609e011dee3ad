//! Stage 0's release partition (`boot::medium`): a FAT volume image from the medium, opened and
//! read as stage 0 reads it (every artifact by name, bounded, whole and streamed), and the rollback floor in
//! `nullos-state` parsed from whatever the volume holds. Never panics, never returns more than
//! the bound asked for, and always terminates (the driver's time limit catches cluster loops).

use std::path::Path;

use boot::medium::Medium;
use boot::state::{self, MAX_STATE_BYTES, STATE_FILE};
use boot::verify::Source;

const NAMES: [&str; 4] = ["release.manifest", "kernel", "initrd", "cmdline"];
const MAX: u64 = 1 << 20;

/// One input.
pub fn fuzz_one(data: &[u8]) {
    let Ok(mut medium) = Medium::from_bytes(Path::new("/dev/fuzz"), data.to_vec()) else {
        return;
    };
    for name in NAMES {
        if let Ok(bytes) = medium.read(name, MAX) {
            assert!(bytes.len() as u64 <= MAX);
        }
        // As stage 0 reads an artifact: its length (the signed size) into one buffer, streamed
        // out of the volume, then the check that it ends there.
        let Ok(len) = medium.len(name, MAX) else {
            continue;
        };
        let Ok(mut stream) = medium.open(name, MAX) else {
            continue;
        };
        let len = usize::try_from(len.min(MAX)).unwrap_or(0);
        if let Ok((bytes, _)) = boot::digest::read_and_digest(&mut *stream, len, 0, 64 << 10) {
            assert_eq!(bytes.len(), len);
        }
    }
    let _ = medium.exists("NULLOS-STATE");
    if let Ok(bytes) = medium.read(STATE_FILE, MAX_STATE_BYTES) {
        assert!(bytes.len() as u64 <= MAX_STATE_BYTES);
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let _ = state::parse(text);
        }
    }
}
