//! BLAKE3 of an artifact on all cores: the same digest as [`trust::Digest::of`], sooner.
//!
//! BLAKE3 is a tree: the input splits at [`left_subtree_len`] into two complete subtrees whose
//! chaining values, merged, give the root hash. [`digest_on_all_cores`] splits the input that
//! way, recursively, into one subtree per core, hashes each on its own thread (each with the
//! crate's SIMD) and merges them ([`blake3::hazmat`], the crate's own tree API; the `trust`
//! crate stays `no_std` and single-threaded for the guests).
//!
//! [`read_on_all_cores`] does the same while the bytes arrive: it reads an artifact of known
//! (signed) size into one buffer allocated once at that size, in pieces of [`PIECE_BYTES`]
//! (each a complete subtree, since the size is a power of two of chunks); each filled piece is
//! queued for worker threads that hash it while the next ones are read, and the reading thread
//! hashes what is still queued when it is done (rather than wait for a worker that a busy
//! machine has not scheduled). The buffer is backed by huge pages
//! where the kernel has them ([`buffer`]). The digest is of the bytes in the returned buffer,
//! which nothing else holds: what is verified is what is booted. The hashing is pure and tested
//! against [`trust::Digest::of`] on plain buffers and readers.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::num::NonZeroUsize;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread;

use blake3::hazmat::{
    left_subtree_len, merge_subtrees_non_root, merge_subtrees_root, ChainingValue, HasherExt, Mode,
};
use blake3::{Hasher, CHUNK_LEN};
use trust::{ArtifactRef, Digest};

use self::buffer::{zeroed, Populate};

mod buffer;

/// Inputs no longer than this are hashed on one thread: below it a thread costs more than it
/// saves (the crate's SIMD already hashes several chunks at once).
pub const MIN_PIECE_BYTES: usize = 128 * 1024;

/// The piece [`read_on_all_cores`] reads before handing it to a hashing thread: a power of two
/// of chunks (so each piece is a complete subtree), large enough that a piece's hashing costs far
/// more than passing it over, small enough that the last piece's hashing, which cannot overlap
/// any reading, is short.
pub const PIECE_BYTES: usize = 1 << 20;

/// Why an artifact could not be read into memory.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// No memory for the artifact.
    #[error("cannot allocate {bytes} bytes")]
    Allocate {
        /// The signed size.
        bytes: usize,
    },
    /// The source failed.
    #[error("read failed after {read} bytes")]
    Read {
        /// Bytes read before.
        read: u64,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The source ended early.
    #[error("ended after {read} of the {expected} bytes signed")]
    Short {
        /// Bytes read.
        read: u64,
        /// The signed size.
        expected: u64,
    },
    /// The source has more bytes than signed (they are not read).
    #[error("longer than the {expected} bytes signed")]
    Longer {
        /// The signed size.
        expected: u64,
    },
}

/// The number of threads this process may run on, asked once (the standard library reads the
/// cgroup files on every call).
fn cores() -> usize {
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

/// Reads exactly `len` bytes from `reader`, which must end there, into one buffer of `len`
/// bytes; hashes them on as many threads as this process may run on while they are read.
/// Returns the bytes and their digest.
pub fn read_on_all_cores(
    reader: &mut dyn Read,
    len: usize,
) -> Result<(Vec<u8>, Digest), ReadError> {
    read_and_digest(reader, len, cores(), PIECE_BYTES)
}

/// [`read_on_all_cores`] with `workers` hashing threads (none: read, then hash on this one) and
/// pieces of `piece` bytes (a power of two of chunks).
pub fn read_and_digest(
    reader: &mut dyn Read,
    len: usize,
    workers: usize,
    piece: usize,
) -> Result<(Vec<u8>, Digest), ReadError> {
    let piece = piece
        .max(CHUNK_LEN)
        .checked_next_power_of_two()
        .unwrap_or(PIECE_BYTES);
    let mut bytes = zeroed(len).ok_or(ReadError::Allocate { bytes: len })?;
    let digest = if workers == 0 || len <= piece {
        fill(reader, &mut bytes, 0, len)?;
        digest_on(&bytes, workers.max(1), MIN_PIECE_BYTES)
    } else {
        let mut cvs = vec![None; len.div_ceil(piece)];
        for (index, cv) in read_pieces(reader, &mut bytes, workers, piece)? {
            if let Some(slot) = cvs.get_mut(index) {
                *slot = Some(cv);
            }
        }
        // A worker that could not start, or that died, costs time, never the digest.
        let cvs: Vec<ChainingValue> = cvs
            .into_iter()
            .zip(bytes.chunks(piece))
            .enumerate()
            .map(|(index, (cv, bytes))| cv.unwrap_or_else(|| piece_cv(bytes, index, piece)))
            .collect();
        Digest(merge_pieces(&cvs, len as u64, piece as u64, true))
    };
    ensure_end(reader, len)?;
    Ok((bytes, digest))
}

/// Fills `bytes` from `reader` piece after piece, each filled piece queued for `workers`
/// hashing threads; once all are read, this thread hashes what the workers have not taken yet.
/// Returns the chaining values computed, by piece index.
fn read_pieces(
    reader: &mut dyn Read,
    bytes: &mut [u8],
    workers: usize,
    piece: usize,
) -> Result<Vec<(usize, ChainingValue)>, ReadError> {
    let len = bytes.len();
    let back_half = Populate::back_half(bytes);
    let queue = Queue::default();
    thread::scope(|scope| {
        // The pages the reader reaches last are mapped (and cleared) on another thread while it
        // fills the first ones; if that thread cannot start, the reader's writes map them.
        let _ = thread::Builder::new().spawn_scoped(scope, move || back_half.run());
        let queue = &queue;
        let hash_queued = move || {
            let mut cvs = Vec::new();
            while let Some((index, bytes)) = queue.next() {
                cvs.push((index, piece_cv(bytes, index, piece)));
            }
            cvs
        };
        // A worker that cannot start costs time, never the digest: the queue waits for this
        // thread.
        let handles: Vec<_> = (0..workers)
            .filter_map(|_| thread::Builder::new().spawn_scoped(scope, hash_queued).ok())
            .collect();
        let mut filled = Ok(());
        let mut read = 0;
        for (index, slot) in bytes.chunks_mut(piece).enumerate() {
            let end = read + slot.len();
            filled = fill(reader, slot, read, len);
            if filled.is_err() {
                break;
            }
            read = end;
            queue.push(index, slot);
        }
        queue.close(filled.is_err());
        // This thread takes its share of the last pieces rather than waiting for a worker
        // that may not be running.
        let mut cvs = hash_queued();
        // Every worker is joined here, on failure too: a scope left with a panicked thread
        // unjoined would panic itself.
        cvs.extend(
            handles
                .into_iter()
                .filter_map(|handle| handle.join().ok())
                .flatten(),
        );
        filled.map(|()| cvs)
    })
}

/// Filled pieces waiting for a hashing thread.
#[derive(Default)]
struct Queue<'a> {
    state: Mutex<QueueState<'a>>,
    changed: Condvar,
}

#[derive(Default)]
struct QueueState<'a> {
    pieces: VecDeque<(usize, &'a [u8])>,
    /// No more pieces will come.
    closed: bool,
}

impl<'a> Queue<'a> {
    fn lock(&self) -> MutexGuard<'_, QueueState<'a>> {
        // The state is a queue of slices: whatever a panicking holder left is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues piece `index`, filled.
    fn push(&self, index: usize, bytes: &'a [u8]) {
        self.lock().pieces.push_back((index, bytes));
        self.changed.notify_one();
    }

    /// No more pieces; with `drop_queued`, the queued ones are not wanted either.
    fn close(&self, drop_queued: bool) {
        let mut state = self.lock();
        state.closed = true;
        if drop_queued {
            state.pieces.clear();
        }
        drop(state);
        self.changed.notify_all();
    }

    /// The next queued piece, waiting for one; `None` once the queue is closed and empty.
    fn next(&self) -> Option<(usize, &'a [u8])> {
        let mut state = self.lock();
        loop {
            if let Some(piece) = state.pieces.pop_front() {
                return Some(piece);
            }
            if state.closed {
                return None;
            }
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// The chaining value of piece number `index` (of `piece` bytes each; the last may be shorter).
fn piece_cv(bytes: &[u8], index: usize, piece: usize) -> ChainingValue {
    Hasher::new()
        .set_input_offset((index as u64).saturating_mul(piece as u64))
        .update(bytes)
        .finalize_non_root()
}

/// Merges the chaining values `cvs` of consecutive pieces of `piece` bytes covering `len` bytes
/// as BLAKE3's tree does: the root hash's bytes when `root`, else the subtree's chaining value.
/// The tree splits at [`left_subtree_len`], a multiple of `piece` (a power of two of chunks)
/// whenever `len` is over `piece`, so every split falls between two pieces.
fn merge_pieces(cvs: &[ChainingValue], len: u64, piece: u64, root: bool) -> [u8; 32] {
    let (first, rest) = match cvs {
        // One piece: its chaining value (never the root: a single piece is hashed whole, as a
        // root, by the caller).
        [cv] => return *cv,
        [] => return [0; 32],
        [first, rest @ ..] => (first, rest),
    };
    // Two pieces or more: `len` is over one piece, so over one chunk, as the split needs.
    let left_len = left_subtree_len(len).min(len);
    let left_pieces = usize::try_from(left_len / piece).map_or(cvs.len(), |n| n.max(1));
    let (left, right) = cvs
        .split_at_checked(left_pieces)
        .filter(|(_, right)| !right.is_empty())
        .unwrap_or((std::slice::from_ref(first), rest));
    let left_cv = merge_pieces(left, left_len, piece, false);
    let right_cv = merge_pieces(right, len - left_len, piece, false);
    if root {
        *merge_subtrees_root(&left_cv, &right_cv, Mode::Hash).as_bytes()
    } else {
        merge_subtrees_non_root(&left_cv, &right_cv, Mode::Hash)
    }
}

/// Fills `slot` from `reader`; `read` bytes of `expected` came before it.
fn fill(
    reader: &mut dyn Read,
    slot: &mut [u8],
    read: usize,
    expected: usize,
) -> Result<(), ReadError> {
    let mut done = 0;
    while let Some(rest) = slot.get_mut(done..).filter(|rest| !rest.is_empty()) {
        match reader.read(rest) {
            Ok(0) => {
                return Err(ReadError::Short {
                    read: (read + done) as u64,
                    expected: expected as u64,
                })
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(ReadError::Read {
                    read: (read + done) as u64,
                    source,
                })
            }
        }
    }
    Ok(())
}

/// Checks that `reader`, after the `len` bytes signed, has nothing more (it reads one byte).
fn ensure_end(reader: &mut dyn Read, len: usize) -> Result<(), ReadError> {
    let mut probe = [0u8; 1];
    loop {
        return match reader.read(&mut probe) {
            Ok(0) => Ok(()),
            Ok(_) => Err(ReadError::Longer {
                expected: len as u64,
            }),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => Err(ReadError::Read {
                read: len as u64,
                source,
            }),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes that differ from chunk to chunk, so a misplaced subtree changes the digest.
    fn input(len: usize) -> Vec<u8> {
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

    /// A reader handing out at most `step` bytes a call, then failing after `fail_at` bytes.
    struct Trickle<'a> {
        bytes: &'a [u8],
        step: usize,
        fail_at: Option<usize>,
        given: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.fail_at.is_some_and(|at| self.given >= at) {
                return Err(io::Error::other("the medium went away"));
            }
            let n = buf.len().min(self.step).min(self.bytes.len());
            let (now, rest) = self.bytes.split_at(n);
            buf[..n].copy_from_slice(now);
            self.bytes = rest;
            self.given += n;
            Ok(n)
        }
    }

    fn trickle(bytes: &[u8], step: usize) -> Trickle<'_> {
        Trickle {
            bytes,
            step,
            fail_at: None,
            given: 0,
        }
    }

    #[test]
    fn reading_while_hashing_gives_the_bytes_and_the_one_thread_digest() {
        let sizes = [
            0,
            1,
            CHUNK_LEN,
            4 * CHUNK_LEN - 1,
            4 * CHUNK_LEN,
            4 * CHUNK_LEN + 1,
            9 * CHUNK_LEN + 5,
            64 * CHUNK_LEN + 3,
            PIECE_BYTES + 1,
            3 * PIECE_BYTES + CHUNK_LEN - 1,
        ];
        for len in sizes {
            let bytes = input(len);
            let expected = Digest::of(&bytes);
            for workers in [0, 1, 2, 3] {
                // Pieces of one, four and 1024 chunks: trees of every shape, pieces filled by
                // many reads or by one.
                for piece in [CHUNK_LEN, 4 * CHUNK_LEN, PIECE_BYTES] {
                    for step in [1000, usize::MAX] {
                        let mut reader = trickle(&bytes, step);
                        let (read, digest) =
                            read_and_digest(&mut reader, len, workers, piece).unwrap();
                        let case = format!(
                            "{len} bytes, {workers} workers, pieces of {piece}, reads of {step}"
                        );
                        assert_eq!(digest, expected, "{case}");
                        assert!(read == bytes, "{case}");
                    }
                }
            }
            let (read, digest) = read_on_all_cores(&mut bytes.as_slice(), len).unwrap();
            assert_eq!((digest, read == bytes), (expected, true), "{len} bytes");
        }
    }

    #[test]
    fn a_source_shorter_or_longer_than_signed_or_failing_is_an_error() {
        let bytes = input(10 * CHUNK_LEN);
        for workers in [0, 2] {
            let mut short = &bytes[..7 * CHUNK_LEN];
            let err = read_and_digest(&mut short, bytes.len(), workers, CHUNK_LEN).unwrap_err();
            assert_eq!(
                err.to_string(),
                "ended after 7168 of the 10240 bytes signed",
                "{workers} workers"
            );
            let err = read_and_digest(&mut bytes.as_slice(), bytes.len() - 1, workers, CHUNK_LEN)
                .unwrap_err();
            assert_eq!(err.to_string(), "longer than the 10239 bytes signed");
            let mut failing = Trickle {
                fail_at: Some(5000),
                ..trickle(&bytes, 1000)
            };
            let err = read_and_digest(&mut failing, bytes.len(), workers, CHUNK_LEN).unwrap_err();
            // The count is what the source gave before it failed (reads end at piece ends).
            assert!((5000..5000 + CHUNK_LEN).contains(&failing.given));
            assert_eq!(
                pid1::error_chain(&err),
                format!(
                    "read failed after {} bytes: the medium went away",
                    failing.given
                )
            );
        }
    }
}
