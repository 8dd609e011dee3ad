//! qemu (being written).
