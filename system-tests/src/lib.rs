//! Shared helpers for the full-system tests.
