//! `/etc/nullos/guest.toml`: what the node tells a guest's init about its workload.
//!
//! The node writes the file per workload (a second cpio appended to the guest initramfs). The
//! type, its strict parsing and its checks (the workload manifest's rules and limits, the
//! mount points the guest keeps for itself) are one definition shared with the node's writer:
//! [`interfaces::guest`], where its tests are.

pub use interfaces::guest::{
    is_at_or_below, GuestConfig, GuestConfigError, Volume, DEFAULT_PATH, MAX_FILE_BYTES,
    RESERVED_MOUNTS,
};
pub use interfaces::paths::GUEST_CONFIG as GUEST_CONFIG_PATH;
