//! Reading an artifact of known (signed) size while hashing it: one buffer allocated once at
//! that size (module `buffer`), filled in pieces of [`PIECE_BYTES`] (each a complete BLAKE3
//! subtree, since the size is a power of two of chunks); each filled piece is queued for worker
//! threads that hash it while the next ones are read, and the reading thread hashes what is
//! still queued when it is done (rather than wait for a worker that a busy machine has not
//! scheduled). The chaining values merge as [`super::digest_on`]'s do. The digest is of the
//! bytes in the returned buffer, which nothing else holds: what is verified is what is booted.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;

use blake3::hazmat::{
    left_subtree_len, merge_subtrees_non_root, merge_subtrees_root, ChainingValue, HasherExt, Mode,
};
use blake3::{Hasher, CHUNK_LEN};
use trust::Digest;

use super::buffer::{zeroed, Populate};
use super::{cores, digest_on, MIN_PIECE_BYTES};

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
    use super::super::tests::input;
    use super::*;

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
