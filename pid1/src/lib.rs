//! What every PID 1 of NullOS needs: the node's and the guests' `init` (`kernel-init`), stage 0
//! (`boot`) and the benchmark's PID 1s build on it. Nothing role-specific lives here.
//!
//! Layering: pure logic (parsers, the DHCP state machine, coldplug decisions, line formats) is
//! kept apart from the thin I/O edges so it is unit-tested with plain buffers.
//!
//! - [`cmdline`]: the kernel command line's `nullos.*` parameters.
//! - [`log`]: leveled logging to `/dev/kmsg` and the console.
//! - [`mounts`]: API filesystems, and unmounting at power-off.
//! - [`modules`], [`coldplug`], [`uevent`]: `finit_module` in dependency order; modalias
//!   matching of the devices present at boot and of those added (kernel uevents).
//! - [`net`]: rtnetlink links/addresses/routes, DHCPv4, resolver files.
//! - [`signals`], [`input`], [`power`]: signalfd and reaping, the power button, power-off and
//!   the fatal-error reboot.
//! - [`error_chain`]: an error and its sources as one log line.
//!
//! Syscalls go through `nix` rather than `rustix`: PID 1 needs signalfd, `kill(-1)`,
//! `finit_module`, `reboot(RB_DISABLE_CAD)` and `SO_BINDTODEVICE`, which nix wraps and rustix
//! (at 1.x) partly does not (no signalfd, no kill of pid -1).
//!
//! A PID 1 that panics or exits takes the kernel down with it, so outside tests this crate
//! denies `unwrap`, `expect` and `panic!`: every failure is an error value or a logged line.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod cmdline;
pub mod coldplug;
pub mod input;
pub mod log;
pub mod modules;
pub mod mounts;
pub mod net;
pub mod power;
pub mod signals;
pub mod uevent;

use std::error::Error;
use std::fmt::Write as _;

/// An error and its sources, joined by `": "`, for one log line.
pub fn error_chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let _ = write!(text, ": {e}");
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chain_joins_sources() {
        let e = mounts::MountError::Mount {
            fstype: "proc",
            target: "/proc",
            source: nix::errno::Errno::EPERM,
        };
        assert_eq!(
            error_chain(&e),
            "mount proc on /proc: EPERM: Operation not permitted"
        );
        let plain = signals::SignalError::Block(nix::errno::Errno::EINVAL);
        assert_eq!(
            error_chain(&plain),
            "block signals: EINVAL: Invalid argument"
        );
    }
}
