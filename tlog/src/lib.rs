//! Verifying what a transparency log says, and the pure parts of keeping one.
//!
//! The notary's log is an RFC 6962 Merkle tree (SHA-256, leaf prefix `0x00`, node prefix `0x01`),
//! so that standard tooling and test vectors apply, and its tree heads are C2SP
//! `tlog-checkpoint` notes signed in the C2SP `signed-note` format with ed25519. The documents
//! in the log are named by BLAKE3 elsewhere; only the tree uses SHA-256.
//!
//! This crate is what a node's PID 1 and the agent link to check the notary: it is `no_std` +
//! `alloc`, has no I/O and never panics on untrusted bytes. Layering, bottom up:
//! - [`hash`] — [`Hash`], [`leaf_hash`], [`node_hash`].
//! - [`proof`] — [`verify_inclusion`] and [`verify_consistency`] (RFC 9162 §2.1.3.2, §2.1.4.2).
//! - [`tree`] — [`MerkleTree`], an in-memory tree that answers roots and proofs at any past size
//!   (the server's side; pure, so it lives here beside the verifier it must agree with).
//! - [`note`] — C2SP signed notes: [`NoteSigner`], [`NoteVerifier`], [`open_note`].
//! - [`checkpoint`] — [`Checkpoint`]: origin, size, root; signed and verified as a note.

#![no_std]
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(missing_docs, clippy::unwrap_used))]

extern crate alloc;

pub mod checkpoint;
pub mod hash;
pub mod note;
pub mod proof;
pub mod tree;

pub use checkpoint::{Checkpoint, CheckpointError};
pub use hash::{leaf_hash, node_hash, Hash, HashError};
pub use note::{open_note, NoteError, NoteSigner, NoteVerifier};
pub use proof::{verify_consistency, verify_inclusion, ProofError};
pub use tree::{MerkleTree, TreeError};

/// The origin (and note key name) of the NullOS notary whose ed25519 key is `public`:
/// `nullos-notary/<first 8 key bytes in hex>`. Deriving it from the key lets a node that pins
/// only the key check the origin too.
pub fn notary_origin(public: &[u8; 32]) -> alloc::string::String {
    let mut out = alloc::string::String::from("nullos-notary/");
    for b in &public[..8] {
        out.push_str(&alloc::format!("{b:02x}"));
    }
    out
}

/// The checkpoint verifier for the NullOS notary whose key is `public`.
pub fn notary_verifier(public: &[u8; 32]) -> Result<NoteVerifier, NoteError> {
    NoteVerifier::new(&notary_origin(public), public)
}
