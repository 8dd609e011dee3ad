//! kernel-init (being written).
