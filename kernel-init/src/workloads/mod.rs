//! Workloads in the node role: the signed micro-VMs that travel in the node image at
//! `/lib/nullos/workloads/<name>/{workload.manifest,root.img}`.
//!
//! After the ready line, [`start`] runs on a thread of its own (PID 1's main loop keeps
//! reaping, which delivers the statuses of the children started here):
//! 1. [`verify`]: each manifest against the signer policy at [`POLICY_PATH`], and the root
//!    image's size and BLAKE3, before anything of the workload is used. A refusal is one
//!    `nullos: refused workload ...` line; the node and the other workloads go on.
//! 2. [`disk`]: the data disk (claimed only if empty or already NullOS's) or a tmpfs, and each
//!    workload's volumes as ext4 image files.
//! 3. [`guest_initrd`]: the guest initramfs, built once from the node's own `/init` and modules,
//!    plus a per-workload archive with `guest.toml`.
//! 4. [`supervisor`] (one thread per workload) runs [`vm`]s: one `vmm` process per run, its
//!    console relayed as `[<name>] <line>`, restarts with backoff.

pub mod console_limit;
pub mod console_tail;
pub mod contracts;
pub mod disk;
pub mod guest_initrd;
pub mod jail;
pub mod supervisor;
pub mod verify;
pub mod vm;

use std::path::{Path, PathBuf};

use modindex::ModuleIndex;
use trust::{SignerPolicy, WorkloadManifest};

// Where the image builder puts workloads, and the signer policy they are verified against.
pub use interfaces::paths::{WORKLOADS_DIR, WORKLOAD_POLICY as POLICY_PATH};
/// Where the per-workload guest initramfs files go.
pub const GUEST_RUN_DIR: &str = "/run/nullos/guest";

/// Starts the workloads of the image on a background thread. Never fatal. (Workloads of grid
/// contracts are started by [`contracts::ContractRunner`], driven by the `grid-node` loop.)
pub fn start() {
    let spawned = std::thread::Builder::new()
        .name("workloads".into())
        .spawn(run);
    if let Err(e) = spawned {
        crate::error!("workloads: cannot start a thread: {e}");
    }
}

/// The workload folders in the image, by name.
fn workload_dirs() -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(WORKLOADS_DIR) else {
        return Vec::new();
    };
    let mut dirs: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
        .collect();
    dirs.sort();
    dirs
}

fn run() {
    let dirs = workload_dirs();
    if dirs.is_empty() {
        crate::debug!("workloads: none in the image");
        // The data disk is the node's, not one workload's: claim it now (formatted while the
        // node is idle) so the work that arrives later as contracts finds it ready. Through the
        // one shared claim: the grid may have claimed it already, and a second mount would fail
        // and put a tmpfs over it.
        crate::update::after_ready(&disk::data_root(0, 0));
        return;
    }
    let policy = verify::load_policy(Path::new(POLICY_PATH));
    let verified = verify_all(&dirs, policy.as_ref());
    if verified.is_empty() {
        crate::update::after_ready(&disk::data_root(0, 0));
        return;
    }
    let egress = node_egress();
    let volumes = verified.iter().flat_map(|(_, m)| &m.volumes);
    let volumes_mib = volumes.clone().map(|v| u64::from(v.size_mib)).sum();
    let data = disk::data_root(
        volumes_mib,
        u64::try_from(volumes.count()).unwrap_or(u64::MAX),
    );
    crate::update::after_ready(&data);
    let base = match guest_base() {
        Ok(base) => base,
        Err(e) => {
            crate::error!("guest initramfs: {}", crate::error_chain(&e));
            return;
        }
    };
    let names: Vec<&str> = verified.iter().map(|(_, m)| m.name.as_str()).collect();
    let jail_ids = jail::jail_ids(&names);
    for ((dir, manifest), jail_id) in verified.iter().zip(jail_ids) {
        let name = manifest.name.clone();
        let plan = match prepare(dir, manifest, &base, &data.path) {
            Ok(plan) => vm::VmPlan {
                jail_id,
                egress: egress.clone(),
                ..plan
            },
            Err(e) => {
                crate::error!("workload {name}: {e}");
                continue;
            }
        };
        let restart = manifest.restart;
        let spawned = std::thread::Builder::new()
            .name(format!("workload-{name}"))
            .spawn(move || supervisor::supervise(&plan, restart));
        if let Err(e) = spawned {
            crate::error!("workload {name}: cannot start its supervisor: {e}");
        }
    }
}

/// The node's egress policy for its workloads, from `node.toml`: `egress_allow` opens named
/// non-public destinations, and the control endpoint is always refused. Without a readable
/// `node.toml`, no rule: the workloads reach the public internet only.
pub(crate) fn node_egress() -> vm::Egress {
    match crate::node_config::NodeConfig::load() {
        Ok(node) => vm::Egress {
            // `load` validated the rules.
            allow: node.egress_allow_rules().unwrap_or_default(),
            deny: node
                .control_rule()
                .into_iter()
                .chain(node.notary_rule())
                .collect(),
        },
        Err(e) => {
            crate::debug!("workloads: node config: {}", crate::error_chain(&e));
            vm::Egress::default()
        }
    }
}

/// Verifies every workload; logs one line each; returns the good ones.
fn verify_all(
    dirs: &[(String, PathBuf)],
    policy: Result<&SignerPolicy, &verify::RefusalError>,
) -> Vec<(PathBuf, WorkloadManifest)> {
    let mut good = Vec::new();
    for (name, dir) in dirs {
        let result = match policy {
            Ok(policy) => verify::verify_dir(dir, name, policy),
            Err(e) => Err(verify::RefusalError::Policy {
                path: POLICY_PATH.into(),
                message: crate::error_chain(e),
            }),
        };
        match result {
            Ok(manifest) => {
                crate::log::interface_line(&format!(
                    "nullos: workload {name} verified root={} version={}",
                    manifest.root.digest.to_hex(),
                    manifest.version
                ));
                good.push((dir.clone(), manifest));
            }
            Err(e) => crate::log::interface_line(&e.line(name)),
        }
    }
    good
}

/// Builds the base guest initramfs once per boot.
pub(crate) fn guest_base() -> Result<PathBuf, guest_initrd::GuestInitrdError> {
    let base = PathBuf::from(guest_initrd::BASE_PATH);
    if base.exists() {
        return Ok(base);
    }
    let create = |source| guest_initrd::GuestInitrdError::Write {
        path: PathBuf::from(GUEST_RUN_DIR),
        source,
    };
    std::fs::create_dir_all(GUEST_RUN_DIR).map_err(create)?;
    let text = std::fs::read_to_string(crate::modules::INDEX_PATH).map_err(|source| {
        guest_initrd::GuestInitrdError::Read {
            path: crate::modules::INDEX_PATH.into(),
            source,
        }
    })?;
    let node_index = ModuleIndex::parse(&text).map_err(guest_initrd::GuestInitrdError::Index)?;
    let index = guest_initrd::guest_index(&node_index)?;
    let started = std::time::Instant::now();
    guest_initrd::write_base(&base, Path::new("/init"), &index)?;
    crate::info!(
        "guest initramfs: /init and {} modules in {} ms",
        index.modules.len(),
        started.elapsed().as_millis()
    );
    Ok(base)
}

/// Volumes and the initramfs of one workload; the plan of its VM runs.
fn prepare(
    dir: &Path,
    manifest: &WorkloadManifest,
    base: &Path,
    data_root: &Path,
) -> Result<vm::VmPlan, String> {
    let name = &manifest.name;
    let mut volumes = Vec::with_capacity(manifest.volumes.len());
    for volume in &manifest.volumes {
        let path = disk::volume_path(data_root, name, &volume.name);
        match disk::ensure_volume(&path, &volume.name, volume.size_mib) {
            Ok(true) => crate::info!(
                "workload {name}: volume {} created ({} MiB)",
                volume.name,
                volume.size_mib
            ),
            Ok(false) => crate::debug!("workload {name}: volume {} kept", volume.name),
            Err(e) => {
                return Err(format!(
                    "volume {}: {}",
                    volume.name,
                    crate::error_chain(&e)
                ))
            }
        }
        volumes.push(path);
    }
    let initrd = Path::new(GUEST_RUN_DIR).join(format!("{name}.initrd"));
    let guest_toml = guest_initrd::guest_toml(manifest)
        .map_err(|e| format!("guest initramfs: {}", crate::error_chain(&e)))?;
    guest_initrd::write_workload(&initrd, base, &guest_toml)
        .map_err(|e| format!("guest initramfs: {}", crate::error_chain(&e)))?;
    Ok(vm::VmPlan::new(
        manifest,
        initrd,
        dir.join(verify::ROOT_FILE),
        volumes,
    ))
}
