//! The node's probe of a disk it finds (`interfaces::data_disk::classify`, shared with stage 0): a foreign
//! disk must never be taken for the node's own or for an empty one. Any bytes never panic; a
//! disk judged empty is all zero, and one judged ours carries the ext4 magic and our label.
//!
//! Input: the disk's first bytes, then (after the first half) its last bytes.

use interfaces::data_disk::{classify, DiskState};
use interfaces::labels::DATA_FILESYSTEM as DATA_LABEL;

/// One input.
pub fn fuzz_one(data: &[u8]) {
    let (first, last) = data.split_at(data.len() / 2);
    match classify(first, last) {
        DiskState::Empty => assert!(data.iter().all(|b| *b == 0), "data judged empty"),
        DiskState::Ours(_) => {
            assert_eq!(first.get(1024 + 0x38..1024 + 0x3a), Some(&[0x53, 0xef][..]));
            let label = &first[1024 + 0x78..1024 + 0x78 + 16];
            assert!(label.starts_with(DATA_LABEL.as_bytes()));
        }
        DiskState::Foreign => {}
    }
}
