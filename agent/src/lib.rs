//! `nullos`, the user's agent (the "3Bot"): it instantiates the IT expert's contract templates,
//! gathers the stakeholders' approvals, and registers, places, watches and heals the contracts on
//! the grid through the notary.
//!
//! Layering:
//! - [`keys`] — key files on disk, in `trust`'s formats.
//! - [`template`] — contract templates: typed parameters, `${param}` substitution, every
//!   mistake reported ([`template::Template::instantiate`] is pure; file reads are passed in).
//! - [`contract_file`] — the contract file: the owner's signed contract and the approvals
//!   gathered so far, verified on every read.
//! - [`show`] — what `nullos contract show` prints (text or JSON).
//! - [`placement`] — the owner's decisions without I/O: which node ([`placement::choose_node`]),
//!   whether to re-place ([`placement::heal`]), the next placement document.
//! - [`ledger`] — one contract as its log entries describe it, and where it stands.
//! - [`witness`] — the pinned notary key and the last checkpoint verified, kept on disk; a
//!   new checkpoint is accepted only with a consistency proof from it.
//! - [`config`] — the global options every command sees (the notary's URL).
//!
//! The rules (approval counting, placement fit, owner checks) are `trust::grid::rules`, shared
//! with the notary and the node. The binary (`src/main.rs`) parses arguments and maps errors to
//! exit codes: 0 success, 1 failure, 2 bad input.

pub mod config;
pub mod contract_file;
pub mod keys;
pub mod ledger;
pub mod placement;
pub mod show;
pub mod template;
pub mod witness;
