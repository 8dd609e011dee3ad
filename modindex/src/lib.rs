//! modindex (being written).
