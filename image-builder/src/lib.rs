//! image-builder (being written).
