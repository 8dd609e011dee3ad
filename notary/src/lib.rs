//! nullos-notary: the grid's signed, append-only log, its directory and its blobs.
//!
//! Layering, bottom up:
//! - [`store`] — the [`Store`] trait: entries, index keys, checkpoints, blobs; backends redb
//!   (embedded) and PostgreSQL (shared by several notaries).
//!
//! What a node or agent needs to check the notary (proofs, checkpoints) is in the `tlog` crate,
//! which does not link this one.

#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod store;

pub use store::{BlobError, BlobReader, NewEntry, PostgresStore, RedbStore, Store, StoreError};
