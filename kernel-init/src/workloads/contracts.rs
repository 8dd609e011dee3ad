//! Workloads of grid contracts: the `grid-node` loop hands over a verified deployment (the
//! contract's workloads, their manifests fetched by digest and root images checked), and
//! [`ContractRunner`] runs each as a micro-VM under the same supervisor as the image's own
//! workloads, with the contract's resources, volumes and environment.
//!
//! The contract decides what the owner and stakeholders approved: vCPUs, memory, volume sizes,
//! egress, extra environment. The manifest brings what the builder signed: the root image, the
//! entrypoint, the volumes' mount points, the restart policy. They must agree on the volumes'
//! names. Volumes live under `<data root>/contracts/<contract id>/`, kept across versions,
//! removed when the contract is cancelled or placed elsewhere.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use grid_node::{ConsoleTail, Deployment, Outgoing, PreparedWorkload, Reports, Runner};
use trust::grid::{ContractId, Egress, WorkloadState, WorkloadStatus};
use trust::{PublicKey, WorkloadManifest};

use super::console_tail::SharedTail;
use super::supervisor::{self, Control, Event};
use super::{disk, guest_initrd, jail, vm, GUEST_RUN_DIR};

/// A running workload of a contract.
struct Supervised {
    control: Arc<Control>,
    thread: Option<JoinHandle<()>>,
}

/// Runs contract workloads on this node.
#[derive(Default)]
pub struct ContractRunner {
    running: BTreeMap<ContractId, Vec<Supervised>>,
}

impl std::fmt::Debug for ContractRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContractRunner")
            .field("contracts", &self.running.len())
            .finish()
    }
}

/// The folder of a contract's volumes.
pub fn contract_dir(data_root: &Path, contract: &ContractId) -> PathBuf {
    data_root.join("contracts").join(contract.0.to_hex())
}

/// The manifest the VM runs: the signed one with the contract's resources, volume sizes,
/// network and extra environment (the contract's value wins for a key both set).
pub fn effective_manifest(workload: &PreparedWorkload) -> Result<WorkloadManifest, String> {
    let spec = &workload.spec;
    let mut manifest = workload.manifest.clone();
    manifest.name = spec.name.clone();
    manifest.vcpus = spec.vcpus;
    manifest.memory_mib = spec.memory_mib;
    manifest.network = match &spec.egress {
        Egress::None => false,
        Egress::Any => true,
        Egress::Only(_) => {
            return Err("egress to named endpoints only is not supported by this node yet".into())
        }
    };
    if manifest.volumes.len() != spec.volumes.len() {
        return Err(format!(
            "the contract claims {} volumes, the manifest mounts {}",
            spec.volumes.len(),
            manifest.volumes.len()
        ));
    }
    for volume in &mut manifest.volumes {
        let claim = spec
            .volumes
            .iter()
            .find(|c| c.name == volume.name)
            .ok_or_else(|| format!("the contract claims no volume '{}'", volume.name))?;
        volume.size_mib = claim.size_mib;
    }
    for (key, value) in &spec.env {
        manifest.env.retain(|(k, _)| k != key);
        manifest.env.push((key.clone(), value.clone()));
    }
    manifest
        .validate()
        .map_err(|e| format!("the workload as the contract sets it is invalid: {e}"))?;
    Ok(manifest)
}

impl ContractRunner {
    fn start_workload(
        &self,
        contract: &ContractId,
        version: u64,
        owner: PublicKey,
        workload: &PreparedWorkload,
        reports: &Reports,
    ) -> Result<Supervised, String> {
        let manifest = effective_manifest(workload)?;
        let name = manifest.name.clone();
        let data = disk::data_root(0, 0);
        let dir = contract_dir(&data.path, contract);
        let mut volumes = Vec::with_capacity(manifest.volumes.len());
        for volume in &manifest.volumes {
            let path = disk::volume_path(&dir, &name, &volume.name);
            match disk::ensure_volume(&path, &volume.name, volume.size_mib) {
                Ok(true) => crate::info!(
                    "workload {name}: volume {} created ({} MiB) for contract {contract}",
                    volume.name,
                    volume.size_mib
                ),
                Ok(false) => {}
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
        let base = super::guest_base().map_err(|e| crate::error_chain(&e))?;
        let tag = contract.0.to_hex();
        let short = tag.get(..16).unwrap_or(&tag);
        let initrd = Path::new(GUEST_RUN_DIR).join(format!("{short}-{name}.initrd"));
        let guest_toml = guest_initrd::guest_toml(&manifest)
            .map_err(|e| format!("guest initramfs: {}", crate::error_chain(&e)))?;
        guest_initrd::write_workload(&initrd, &base, &guest_toml)
            .map_err(|e| format!("guest initramfs: {}", crate::error_chain(&e)))?;
        let unique = format!("{short}-{name}");
        let plan = vm::VmPlan {
            jail_id: jail::jail_ids(&[unique.as_str()])
                .first()
                .copied()
                .unwrap_or(jail::ID_BASE),
            egress: super::node_egress(),
            contract: Some(tag.clone()),
            ..vm::VmPlan::new(&manifest, initrd, workload.root.clone(), volumes)
        };
        let events = reports.clone();
        let (id, status_name) = (*contract, name.clone());
        let tail = Arc::new(SharedTail::default());
        let event_tail = tail.clone();
        let control = Control::new(move |event| {
            // When the VM has ended, its console's last lines go along, for the owner only.
            let console = match event {
                Event::Running { .. } => None,
                Event::Exited { .. } | Event::Restarting { .. } => Some(ConsoleTail {
                    owner,
                    text: event_tail.text(),
                }),
            };
            let (state, exit_code, restarts) = match event {
                Event::Running { attempt } => {
                    (WorkloadState::Running, None, attempt.saturating_sub(1))
                }
                Event::Exited { code, restarts } => (WorkloadState::Exited, Some(code), restarts),
                Event::Restarting { code, attempt } => (
                    WorkloadState::Restarting,
                    Some(code),
                    attempt.saturating_sub(1),
                ),
            };
            events.send(Outgoing::Workload {
                contract: id,
                version,
                status: WorkloadStatus {
                    name: status_name.clone(),
                    state,
                    exit_code,
                    restarts,
                    reason: String::new(),
                    tail: None,
                },
                console,
            });
        })
        .with_tail(tail);
        let control = Arc::new(control);
        let restart = manifest.restart;
        let thread_control = control.clone();
        let thread = std::thread::Builder::new()
            .name(format!("workload-{name}"))
            .spawn(move || supervisor::supervise_controlled(&plan, restart, &thread_control))
            .map_err(|e| format!("cannot start its supervisor: {e}"))?;
        Ok(Supervised {
            control,
            thread: Some(thread),
        })
    }
}

impl Runner for ContractRunner {
    fn start(&mut self, deployment: Deployment, reports: Reports) -> Result<(), String> {
        let mut started = Vec::new();
        for workload in &deployment.workloads {
            match self.start_workload(
                &deployment.contract,
                deployment.version,
                deployment.owner,
                workload,
                &reports,
            ) {
                Ok(s) => started.push(s),
                Err(e) => {
                    for mut s in started {
                        s.control.stop();
                        if let Some(t) = s.thread.take() {
                            let _ = t.join();
                        }
                    }
                    return Err(format!("workload {}: {e}", workload.spec.name));
                }
            }
        }
        self.running.insert(deployment.contract, started);
        Ok(())
    }

    fn stop(&mut self, contract: &ContractId, remove_volumes: bool) -> Result<(), String> {
        for mut s in self.running.remove(contract).unwrap_or_default() {
            s.control.stop();
            if let Some(t) = s.thread.take() {
                let _ = t.join();
            }
        }
        if remove_volumes {
            let dir = contract_dir(&disk::data_root(0, 0).path, contract);
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => crate::info!("contract {contract}: volumes removed"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("remove {}: {e}", dir.display())),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workloads::verify::tests::manifest;
    use trust::grid::{ContractWorkload, VolumeClaim};

    fn prepared(egress: Egress, volumes: Vec<VolumeClaim>) -> PreparedWorkload {
        PreparedWorkload {
            spec: ContractWorkload {
                name: "web".into(),
                manifest: trust::Digest([0; 32]),
                vcpus: 1,
                memory_mib: 256,
                volumes,
                egress,
                env: vec![
                    ("GREETING".into(), "contract".into()),
                    ("X".into(), "1".into()),
                ],
            },
            manifest: manifest("hello", b"root"),
            root: "/r".into(),
        }
    }

    fn data(size_mib: u32) -> Vec<VolumeClaim> {
        vec![VolumeClaim {
            name: "data".into(),
            size_mib,
        }]
    }

    #[test]
    fn the_contract_sets_resources_volumes_network_and_env() {
        let m = effective_manifest(&prepared(Egress::None, data(64))).unwrap();
        assert_eq!((m.name.as_str(), m.vcpus, m.memory_mib), ("web", 1, 256));
        assert_eq!(m.volumes[0].size_mib, 64);
        assert_eq!(m.volumes[0].mount, "/data");
        assert!(!m.network);
        assert_eq!(
            m.env,
            [
                ("GREETING".to_owned(), "contract".to_owned()),
                ("X".to_owned(), "1".to_owned())
            ]
        );
        assert!(
            effective_manifest(&prepared(Egress::Any, data(1)))
                .unwrap()
                .network
        );
    }

    #[test]
    fn disagreements_are_one_line_refusals() {
        assert_eq!(
            effective_manifest(&prepared(Egress::None, vec![])).unwrap_err(),
            "the contract claims 0 volumes, the manifest mounts 1"
        );
        let other = vec![VolumeClaim {
            name: "logs".into(),
            size_mib: 1,
        }];
        assert_eq!(
            effective_manifest(&prepared(Egress::None, other)).unwrap_err(),
            "the contract claims no volume 'data'"
        );
        assert!(effective_manifest(&prepared(Egress::Only(vec![]), data(1)))
            .unwrap_err()
            .contains("not supported"));
        let dir = contract_dir(
            Path::new("/var/lib/nullos"),
            &ContractId(trust::Digest([0xab; 32])),
        );
        assert_eq!(
            dir,
            Path::new("/var/lib/nullos/contracts").join("ab".repeat(32))
        );
    }
}
