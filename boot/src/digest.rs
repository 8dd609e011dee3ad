//! BLAKE3 of an artifact on all cores: the same digest as [`trust::Digest::of`], sooner.
//!
//! BLAKE3 is a tree: the input splits at [`left_subtree_len`] into two complete subtrees whose
//! chaining values, merged, give the root hash. [`digest_on_all_cores`] splits the input that
//! way, recursively, into one subtree per core, hashes each on its own thread (each with the
//! crate's SIMD) and merges them ([`blake3::hazmat`], the crate's own tree API; the `trust`
//! crate stays `no_std` and single-threaded for the guests).
//!
//! [`read_on_all_cores`] (module `read`) does the same while the bytes arrive, into one buffer per
//! artifact (module `buffer`). Pure but for the buffer's allocation: tested against
//! [`trust::Digest::of`] on plain buffers and readers.

use std::num::NonZeroUsize;
use std::sync::OnceLock;
use std::thread;

use blake3::hazmat::{
    left_subtree_len, merge_subtrees_non_root, merge_subtrees_root, ChainingValue, HasherExt, Mode,
};
use blake3::{Hasher, CHUNK_LEN};
use trust::{ArtifactRef, Digest};

pub use self::read::{read_and_digest, read_on_all_cores, ReadError, PIECE_BYTES};

mod buffer;
mod read;

/// Inputs no longer than this are hashed on one thread: below it a thread costs more than it
/// saves (the crate's SIMD already hashes several chunks at once).
pub const MIN_PIECE_BYTES: usize = 128 * 1024;

/// The number of threads this process may run on, asked once (the standard library reads the
/// cgroup files on every call).
pub(super) fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| thread::available_parallelism().map_or(1, NonZeroUsize::get))
}

/// The [`ArtifactRef`] of `bytes` (size and digest), hashed on all cores.
pub fn artifact_on_all_cores(bytes: &[u8]) -> ArtifactRef {
    ArtifactRef {
        digest: digest_on_all_cores(bytes),
        size: bytes.len() as u64,
    }
}

/// BLAKE3-256 of `bytes` on as many threads as this process may run on.
pub fn digest_on_all_cores(bytes: &[u8]) -> Digest {
    digest_on(bytes, cores(), MIN_PIECE_BYTES)
}
/// BLAKE3-256 of `bytes` on up to `threads` threads (the calling one included), never giving a
/// thread a piece of `min_piece` bytes or less.
pub fn digest_on(bytes: &[u8], threads: usize, min_piece: usize) -> Digest {
    let Some((left, right)) = split(bytes, threads, min_piece) else {
        return Digest::of(bytes);
    };
    let (left_cv, right_cv) = both(left, right, 0, threads, min_piece);
    Digest(*merge_subtrees_root(&left_cv, &right_cv, Mode::Hash).as_bytes())
}

/// Where to split `bytes` in two subtrees, when it is worth a thread.
fn split(bytes: &[u8], threads: usize, min_piece: usize) -> Option<(&[u8], &[u8])> {
    if threads < 2 || bytes.len() <= min_piece.max(CHUNK_LEN) {
        return None;
    }
    // More than one chunk: the left subtree is a power of two of chunks, the right is not empty.
    let left_len = usize::try_from(left_subtree_len(bytes.len() as u64)).ok()?;
    (left_len < bytes.len()).then(|| bytes.split_at(left_len))
}

/// The chaining values of the subtrees `left` (at input offset `offset`) and `right` (right
/// after it): `right` on a new thread, `left` on this one, `threads` shared between them.
fn both(
    left: &[u8],
    right: &[u8],
    offset: u64,
    threads: usize,
    min_piece: usize,
) -> (ChainingValue, ChainingValue) {
    let right_offset = offset + left.len() as u64;
    let right_threads = threads / 2;
    let left_threads = threads - right_threads;
    thread::scope(|scope| {
        let spawned = thread::Builder::new().spawn_scoped(scope, || {
            subtree(right, right_offset, right_threads, min_piece)
        });
        let left_cv = subtree(left, offset, left_threads, min_piece);
        // A thread that cannot start, or that died, costs time, never the digest.
        let right_cv = match spawned.map(|handle| handle.join()) {
            Ok(Ok(cv)) => cv,
            _ => subtree(right, right_offset, 1, min_piece),
        };
        (left_cv, right_cv)
    })
}

/// The chaining value of the non-empty subtree `bytes` starting at input offset `offset` (a
/// multiple of the chunk length).
fn subtree(bytes: &[u8], offset: u64, threads: usize, min_piece: usize) -> ChainingValue {
    match split(bytes, threads, min_piece) {
        Some((left, right)) => {
            let (left_cv, right_cv) = both(left, right, offset, threads, min_piece);
            merge_subtrees_non_root(&left_cv, &right_cv, Mode::Hash)
        }
        None => Hasher::new()
            .set_input_offset(offset)
            .update(bytes)
            .finalize_non_root(),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Bytes that differ from chunk to chunk, so a misplaced subtree changes the digest.
    pub(super) fn input(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| u8::try_from((i * 31 + i / 1024) % 251).unwrap())
            .collect()
    }

    #[test]
    fn the_digest_on_several_threads_is_the_one_thread_digest() {
        let mib = 1024 * 1024;
        let sizes = [
            0,
            1,
            CHUNK_LEN - 1,
            CHUNK_LEN,
            CHUNK_LEN + 1,
            2 * CHUNK_LEN - 1,
            2 * CHUNK_LEN,
            2 * CHUNK_LEN + 1,
            3 * CHUNK_LEN,
            5 * CHUNK_LEN + 7,
            MIN_PIECE_BYTES - 1,
            MIN_PIECE_BYTES,
            MIN_PIECE_BYTES + 1,
            mib,
            3 * mib + 1,
            5 * mib + CHUNK_LEN - 1,
        ];
        for len in sizes {
            let bytes = input(len);
            let expected = Digest::of(&bytes);
            for threads in [1, 2, 3, 4, 7] {
                // Pieces as small as one chunk: every split the tree allows is taken.
                for min_piece in [1, CHUNK_LEN, MIN_PIECE_BYTES] {
                    assert_eq!(
                        digest_on(&bytes, threads, min_piece),
                        expected,
                        "{len} bytes on {threads} threads, pieces over {min_piece}"
                    );
                }
            }
            assert_eq!(digest_on_all_cores(&bytes), expected, "{len} bytes");
            assert_eq!(artifact_on_all_cores(&bytes), ArtifactRef::of(&bytes));
        }
    }

    #[test]
    fn a_flipped_byte_in_any_piece_changes_the_digest() {
        let bytes = input(4 * CHUNK_LEN + 3);
        let original = digest_on(&bytes, 4, 1);
        for at in [0, CHUNK_LEN, 2 * CHUNK_LEN + 5, bytes.len() - 1] {
            let mut flipped = bytes.clone();
            flipped[at] ^= 1;
            let digest = digest_on(&flipped, 4, 1);
            assert_ne!(digest, original, "byte {at}");
            assert_eq!(digest, Digest::of(&flipped), "byte {at}");
        }
    }
}
