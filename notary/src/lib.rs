//! nullos-notary: the grid's signed, append-only log, its directory and its blobs.
//!
//! Layering, bottom up:
//! - [`store`] — the [`Store`] trait: entries, index keys, checkpoints, blobs; backends redb
//!   (embedded) and PostgreSQL (shared by several notaries).
//! - [`admission`] — what may enter the log: envelope checks, and the [`DocumentRules`] seam
//!   where each document kind's rules plug in.
//! - [`core`] — the [`Notary`]: group commit, the Merkle tree, signed checkpoints, proofs,
//!   long-polls. No sockets; tested directly.
//! - [`http`] — the thin axum layer over it.
//! - [`keyfile`] — the checkpoint signing key in the data directory.
//!
//! What a node or agent needs to check the notary (proofs, checkpoints) is in the `tlog` crate,
//! which does not link this one; the blocking client is `notary-client`.

#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod admission;
pub mod core;
pub mod directory;
pub mod explorer;
pub mod grid;
pub mod http;
pub mod keyfile;
pub mod store;
#[cfg(feature = "test-support")]
pub mod test_support;

pub use crate::admission::{Checked, DocumentRules, LeaseUpdate, LogView, OpenRules, Refusal};
pub use crate::core::{
    Accepted, Config, Notary, OpenError, PublishedView, ReadError, Receipt, SubmitError,
};
pub use crate::grid::GridRules;
pub use crate::store::{
    BlobError, BlobReader, NewEntry, PostgresStore, RedbStore, Store, StoreError, StoredLease,
};
