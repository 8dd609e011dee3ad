//! trust (being written).
