//! The guest role: PID 1 of a micro-VM (`nullos.role=guest` on the kernel command line).
//!
//! Sequence (every step bounded; any failure is one `init: error: guest: ...` line, exit code
//! [`SETUP_FAILED`] and power-off, never a hang):
//! 1. [`config`]: `/etc/nullos/guest.toml`, written by the node per workload;
//! 2. [`setup`]: the virtio-mmio, block, (network,) squashfs and overlay modules from the
//!    image's index; the disks (`vda` = root image, `vdb`... = volumes, see [`plan`]);
//! 3. [`plan`]: the root image read-only under a tmpfs overlay at [`plan::NEW_ROOT`], the API
//!    filesystems inside it, the volumes (ext4) at their mount points;
//! 4. [`ip`]: with `network = true`, eth0 from the kernel's `ip=` parameter, and the resolver
//!    files in the new root;
//! 5. [`workload`]: the entrypoint as a child chrooted into the new root with exactly its
//!    environment; PID 1 reaps every process until the entrypoint ends;
//! 6. [`exit`]: `init: info: workload <name> exited code=<n>`, stop the rest, sync, unmount,
//!    the code on I/O port 0x3c1, power off.

pub mod config;
pub mod exit;
pub mod ip;
pub mod plan;
pub mod setup;
pub mod workload;

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use self::config::{GuestConfig, GuestConfigError, GUEST_CONFIG_PATH};
use self::ip::{IpConfig, IpParamError};
use crate::modules::LoadError;
use crate::net::netlink::NetlinkError;
use crate::signals::Signals;

/// The exit code reported when the workload could not be started (set-up or exec failed).
pub const SETUP_FAILED: u8 = 127;

/// Why the guest could not run its workload.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// `guest.toml` is missing or bad.
    #[error("workload config")]
    Config(#[source] GuestConfigError),
    /// A module the guest needs is in the index but did not load.
    #[error("load module {name}")]
    Module {
        /// Module name.
        name: String,
        /// Why.
        #[source]
        source: LoadError,
    },
    /// A disk did not appear.
    #[error("{what} /dev/{disk} did not appear within {} s", waited.as_secs())]
    NoDisk {
        /// "root disk" or "volume disk N".
        what: String,
        /// Disk name (`vda`).
        disk: String,
        /// How long init waited.
        waited: Duration,
    },
    /// A directory could not be created.
    #[error("create {path}")]
    CreateDir {
        /// The directory.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// mount(2) failed.
    #[error("mount {what} {source_path} ({fstype}) on {target}")]
    Mount {
        /// What the mount is for.
        what: String,
        /// Filesystem type.
        fstype: &'static str,
        /// Device or source name.
        source_path: String,
        /// Mount point.
        target: String,
        /// Why.
        #[source]
        source: nix::errno::Errno,
    },
    /// `network = true` but `ip=` is missing or bad.
    #[error("network")]
    IpParam(#[source] IpParamError),
    /// The network interface did not appear.
    #[error("network interface {device} did not appear within {} s", waited.as_secs())]
    NoInterface {
        /// Interface name.
        device: String,
        /// How long init waited.
        waited: Duration,
    },
    /// An rtnetlink step failed.
    #[error("network {device}: {step}")]
    Network {
        /// The step.
        step: &'static str,
        /// Interface name.
        device: String,
        /// Why.
        #[source]
        source: NetlinkError,
    },
    /// A file in the new root could not be written.
    #[error("write {path}")]
    WriteFile {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The entrypoint could not be started.
    #[error("start {program} (workdir {workdir})")]
    Spawn {
        /// argv[0].
        program: String,
        /// Working directory.
        workdir: String,
        /// Why (the errno of chroot, chdir or execve in the child).
        #[source]
        source: std::io::Error,
    },
    /// Waiting for signals failed.
    #[error("wait for the workload")]
    Wait(#[source] nix::errno::Errno),
}

/// Runs the guest role to its end: the workload's exit (or a set-up failure) powers the VM
/// off. Never returns; a panic on the way is caught and reported as [`SETUP_FAILED`].
pub fn run(signals: &Signals) -> ! {
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| run_workload(signals)));
    match outcome {
        Ok(Ok((name, code))) => {
            crate::info!("workload {name} exited code={code}");
            exit::finish(code, "workload exited")
        }
        Ok(Err(e)) => {
            crate::error!("guest: {}", crate::error_chain(&e));
            exit::finish(SETUP_FAILED, "workload not started")
        }
        // The panic hook has logged it.
        Err(_) => exit::finish(SETUP_FAILED, "panic"),
    }
}

/// Sets up and runs the workload; returns its name and exit code.
fn run_workload(signals: &Signals) -> Result<(String, u8), GuestError> {
    let config = GuestConfig::load(GUEST_CONFIG_PATH).map_err(GuestError::Config)?;
    crate::info!(
        "guest: workload {}: entrypoint {}, {} volume(s), network {}",
        config.name,
        config.entrypoint[0],
        config.volumes.len(),
        if config.network { "on" } else { "off" }
    );
    // Check ip= before anything slow, so a bad command line fails at once.
    let ip = if config.network {
        let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
        Some(IpConfig::from_cmdline(&cmdline).map_err(GuestError::IpParam)?)
    } else {
        None
    };
    setup::load_modules(&setup::wanted_modules(&config))?;
    setup::wait_for_disks(&plan::required_disks(&config))?;
    for planned in plan::plan(&config) {
        setup::mount(&planned)?;
    }
    let hostname = ip
        .as_ref()
        .and_then(|ip| ip.hostname.clone())
        .unwrap_or_else(|| config.name.clone());
    if let Err(e) = nix::unistd::sethostname(&hostname) {
        crate::warn!("guest: set host name {hostname}: {e}");
    }
    if let Some(ip) = &ip {
        setup::configure_network(ip)?;
        setup::write_network_files(&hostname, ip)?;
    }
    let pid = workload::spawn(&config, &config.environment())?;
    crate::info!(
        "guest: started {} (pid {pid}, workdir {})",
        config.entrypoint.join(" "),
        config.workdir
    );
    let status = workload::wait_for(pid, signals)?;
    if let nix::sys::wait::WaitStatus::Signaled(_, signal, _) = status {
        crate::info!(
            "guest: workload {} killed by {}",
            config.name,
            signal.as_str()
        );
    }
    Ok((
        config.name,
        workload::exit_code(status).unwrap_or(SETUP_FAILED),
    ))
}
