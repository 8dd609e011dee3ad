//! PID 1 of the NullOS node (node role) and of every micro-VM guest (guest role, selected by
//! `nullos.role=guest` on the kernel command line).
//!
//! Layering: pure logic (parsers, the DHCP state machine, coldplug decisions, line formats) is
//! kept apart from the thin I/O edges so it is unit-tested with plain buffers.
//!
//! - [`config`]: kernel command line and `/etc/nullos/node.toml`.
//! - [`log`]: leveled logging to `/dev/kmsg` and the console.
//! - [`mounts`]: API filesystems, and unmounting at power-off.
//! - [`modules`], [`coldplug`], [`uevent`]: `finit_module` in dependency order; modalias
//!   matching of the devices present at boot and of those added (kernel uevents).
//! - [`net`]: rtnetlink links/addresses/routes, DHCPv4, resolver files.
//! - [`control`]: the control endpoint reachability check.
//! - [`sockets`]: counting sockets open to inbound traffic (`/proc/net`).
//! - [`ready`]: the `nullos: ready` line.
//! - [`signals`], [`input`], [`power`]: signalfd and reaping, the power button, power-off.
//! - [`node`]: the node role's boot sequence and main loop.
//! - [`guest`]: the guest role: mount the workload's root, run its entrypoint, report its exit.
//! - [`workloads`]: verified micro-VM workloads: data disk, volumes, guest initramfs, `vmm`
//!   supervision.
//!
//! Syscalls go through `nix` rather than `rustix`: PID 1 needs signalfd, `kill(-1)`,
//! `finit_module`, `reboot(RB_DISABLE_CAD)` and `SO_BINDTODEVICE`, which nix wraps and rustix
//! (at 1.x) partly does not (no signalfd, no kill of pid -1).

pub mod coldplug;
pub mod config;
pub mod control;
pub mod guest;
pub mod input;
pub mod log;
pub mod modules;
pub mod mounts;
pub mod net;
pub mod node;
pub mod power;
pub mod ready;
pub mod signals;
pub mod sockets;
pub mod uevent;
pub mod workloads;

use std::convert::Infallible;
use std::error::Error;
use std::fmt::Write as _;

use config::{Cmdline, Role};

/// Why init gave up (which leads to a logged fatal error and a delayed reboot).
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// Signal handling could not be set up.
    #[error("set up signals")]
    Signals(#[source] signals::SignalError),
    /// The main loop's poll(2) failed.
    #[error("main loop poll")]
    Poll(#[source] nix::errno::Errno),
}

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

/// Runs PID 1: mounts, logging, signals, then the role. Returns only on a fatal error.
pub fn run() -> Result<Infallible, InitError> {
    let mounted = mounts::mount_all();
    let cmdline = Cmdline::parse(&std::fs::read_to_string("/proc/cmdline").unwrap_or_default());
    log::init(cmdline.loglevel);
    info!(
        "nullos init {} starting (role {}, loglevel {})",
        env!("CARGO_PKG_VERSION"),
        cmdline.role.as_str(),
        cmdline.loglevel
    );
    debug!("mounts and logging up at uptime {} ms", ready::uptime_ms());
    for outcome in mounted {
        match outcome {
            mounts::MountOutcome::Mounted(target) => debug!("mounted {target}"),
            mounts::MountOutcome::AlreadyMounted(target) => debug!("{target} was already mounted"),
            mounts::MountOutcome::Failed(e) => error!("{}", error_chain(&e)),
        }
    }
    for warning in &cmdline.warnings {
        warn!("cmdline: {warning}");
    }
    // Ctrl-alt-del becomes SIGINT to PID 1 instead of an immediate reboot.
    if let Err(e) = nix::sys::reboot::set_cad_enabled(false) {
        warn!("disable ctrl-alt-del reboot: {e}");
    }
    let signals = signals::Signals::open().map_err(InitError::Signals)?;
    match cmdline.role {
        Role::Node => node::run(&cmdline, &signals),
        Role::Guest => guest::run(&signals),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chain_joins_sources() {
        let e = InitError::Signals(signals::SignalError::Block(nix::errno::Errno::EPERM));
        assert_eq!(
            error_chain(&e),
            "set up signals: block signals: EPERM: Operation not permitted"
        );
    }
}
