//! The node's part of the grid, at PID 1's edge: the `grid-node` library with this node's
//! console, data root, capacity probe and workload runner.
//!
//! Before the ready line ([`prepare`]): the data root (data disk, or tmpfs), the node's key in
//! `<data root>/grid/` (its id goes into the ready line), and the outbox thread (registration,
//! lease, reports). After it ([`start`]): the pull loop on a thread of its own. Nothing here
//! blocks boot or the running workloads on the notary: every conversation is on those threads,
//! retried with backoff. The node opens connections to the notary and never listens.

use std::path::Path;
use std::sync::Arc;

use grid_node::{capacity, Console, Joined, Settings};
use trust::grid::Disk;

use crate::node_config::NodeConfig;
use crate::workloads::{contracts::ContractRunner, disk};

/// The console of PID 1.
struct Pid1Console;

impl Console for Pid1Console {
    fn line(&self, text: &str) {
        crate::log::interface_line(text);
    }

    fn debug(&self, text: &str) {
        crate::debug!("grid: {text}");
    }
}

/// The disk volumes live on: the data disk by name and size, or the tmpfs by its size.
fn volume_disk(data: &disk::DataRoot) -> Disk {
    if let Some(name) = &data.disk {
        let sectors: u64 = std::fs::read_to_string(Path::new("/sys/block").join(name).join("size"))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        return Disk {
            name: name.clone(),
            size_mib: (sectors.saturating_mul(512) >> 20).max(1),
        };
    }
    let size_mib = nix::sys::statvfs::statvfs(&data.path)
        .map(|s| s.blocks().saturating_mul(s.fragment_size()) >> 20)
        .unwrap_or(1);
    Disk {
        name: "tmpfs".into(),
        size_mib: size_mib.max(1),
    }
}

/// Sets up the node's grid identity and outbox; `None` (with one line saying why) when the node
/// has no grid configured or cannot join.
pub fn prepare(node: Option<&NodeConfig>) -> Option<Joined> {
    let config = node?;
    let grid = match config.grid() {
        Ok(Some(grid)) => grid,
        Ok(None) => {
            crate::info!("grid: no notary configured; only the image's workloads run");
            return None;
        }
        Err(e) => {
            crate::error!("grid: {}", crate::error_chain(&e));
            return None;
        }
    };
    let Some(farm) = grid.farm else {
        crate::log::interface_line(
            "nullos: no farm given (nullos.farm= on the kernel command line, or the stick's nullos-node file); not joining the grid",
        );
        return None;
    };
    // Room for contract volumes and cached artifacts when there is no data disk: the tmpfs
    // is capped at half the RAM.
    let ram_mib = nix::sys::sysinfo::sysinfo()
        .map(|info| info.ram_total() >> 20)
        .unwrap_or(0);
    let data = disk::data_root(ram_mib, 0);
    if data.disk.is_none() {
        crate::log::interface_line(
            "nullos: node identity is ephemeral (no data disk): a new node id every boot",
        );
    }
    let mut settings = Settings::new(&grid.notary, grid.notary_key, farm);
    settings.release_version = config.version;
    let probe_data = data.clone();
    let probe = move || match capacity::probe(Path::new("/"), volume_disk(&probe_data)) {
        Ok(capacity) => Some(capacity),
        Err(e) => {
            crate::warn!("grid: capacity: {}", crate::error_chain(&e));
            None
        }
    };
    match grid_node::join(
        settings,
        &grid_node::state_dir(&data.path),
        Arc::new(Pid1Console),
        Box::new(ContractRunner::default()),
        Box::new(probe),
    ) {
        Ok(joined) => Some(joined),
        Err(e) => {
            crate::error!("grid: {}", crate::error_chain(&e));
            None
        }
    }
}

/// Runs the pull loop on a thread of its own.
pub fn start(joined: Joined) {
    let pull = joined.pull;
    let spawned = std::thread::Builder::new()
        .name("grid-pull".into())
        .spawn(move || pull.run());
    if let Err(e) = spawned {
        crate::error!("grid: cannot start the pull thread: {e}");
    }
}
