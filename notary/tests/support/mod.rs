//! Helpers shared by the notary's integration tests.

#![allow(dead_code)] // each test binary uses a part

pub mod grid;
pub mod postgres;
pub mod server;
