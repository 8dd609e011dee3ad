//! PID 1 of the NullOS node (node role) and of every micro-VM guest (guest role, selected by
//! `nullos.role=guest` on the kernel command line).
//!
//! What every PID 1 of ours does (logging, mounts, the command line, modules and coldplug,
//! network bring-up, signals and reaping, power-off) is the `pid1` crate; this crate is the
//! roles on top of it. Pure logic (config and `/proc/net` parsers, the ready line, the
//! supervisor's restart policy) is kept apart from the thin I/O edges.
//!
//! - [`node_config`]: `/etc/nullos/node.toml` and which control endpoint to check.
//! - [`control`]: the control endpoint reachability check.
//! - [`sockets`]: counting sockets open to inbound traffic (`/proc/net`).
//! - [`ready`]: the `nullos: ready` line.
//! - [`node`]: the node role's boot sequence and main loop.
//! - [`grid`]: the node's part of the grid (the `grid-node` library at PID 1's edge).
//! - [`guest`]: the guest role: mount the workload's root, run its entrypoint, report its exit.
//! - [`update`]: marking the release good on the data disk once ready (boot counting).
//! - [`workloads`]: verified micro-VM workloads: data disk, volumes, guest initramfs, `vmm`
//!   supervision.
//!
//! Outside tests, `unwrap`, `expect` and `panic!` are denied: PID 1 must not die.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod control;
pub mod grid;
pub mod guest;
pub mod node;
pub mod node_config;
pub mod ready;
pub mod sockets;
pub mod update;
pub mod workloads;

// The `pid1` modules and macros, named at the root so the roles' modules reach them as
// `crate::log`, `crate::info!` and so on, as they did when these modules lived here.
use pid1::{coldplug, error_chain, input, log, modules, mounts, net, power, signals};
use pid1::{debug, error, info, warn};

use std::convert::Infallible;

use pid1::cmdline::{self, Cmdline, Role};

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

/// Runs PID 1: mounts, logging, signals, then the role. Returns only on a fatal error.
pub fn run() -> Result<Infallible, InitError> {
    let mounted = mounts::mount_all();
    let cmdline = Cmdline::parse(cmdline::read());
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
