//! Helpers shared by the notary's integration tests.

pub mod postgres;
