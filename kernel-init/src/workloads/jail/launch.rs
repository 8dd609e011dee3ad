//! A VM plan made into a jailed `vmm`: its files opened by the node (the root image checked
//! against its manifest on the very descriptor that is handed over), the vmm's arguments naming
//! those descriptors, and the [`Jail`] around it.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use interfaces::vm::{fd_path, DEFAULT_KVM};

use super::{cgroup_dir, rlimits, CgroupLimits, Jail, JailError, JailSpec, JAIL_DIR};
use crate::workloads::verify::{self, RefusalError};
use crate::workloads::vm::{VmPlan, GUEST_KERNEL, VMM};

/// The resolver the user-mode network forwards the guest's DNS to, bound read-only into the
/// jail when the node has one.
const RESOLV_CONF: &str = "/etc/resolv.conf";

/// Why a jailed vmm could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// A file of the VM could not be opened.
    #[error("open {}", .0.display())]
    Open(PathBuf, #[source] io::Error),
    /// The root image no longer matches its manifest.
    #[error("root image")]
    Root(#[source] RefusalError),
    /// The jail could not be prepared.
    #[error("jail")]
    Jail(#[source] JailError),
}

/// Everything to start one jailed vmm.
#[derive(Debug)]
pub struct JailedVm {
    /// The jail, to apply to the command.
    pub jail: Jail,
    /// The vmm's arguments, its files named as inherited descriptors.
    pub args: Vec<OsString>,
    /// The VM's cgroup, where the node finds the vmm to observe it.
    pub cgroup: PathBuf,
}

fn open(path: &Path, write: bool) -> Result<File, LaunchError> {
    // std opens with O_CLOEXEC: only the jail's own child keeps these across exec.
    OpenOptions::new()
        .read(true)
        .write(write)
        .open(path)
        .map_err(|e| LaunchError::Open(path.to_path_buf(), e))
}

/// Opens the VM's files, checks the root image on its descriptor, and prepares the jail.
pub fn jailed_vm(plan: &VmPlan) -> Result<JailedVm, LaunchError> {
    let mut spec = plan.spec();
    let mut fds: Vec<OwnedFd> = Vec::new();
    let mut hand_over = |file: File| {
        let path = fd_path(file.as_raw_fd());
        fds.push(file.into());
        path
    };
    spec.kvm = Some(hand_over(open(Path::new(DEFAULT_KVM), true)?));
    spec.kernel = hand_over(open(Path::new(GUEST_KERNEL), false)?);
    if let Some(initrd) = &spec.initrd {
        spec.initrd = Some(hand_over(open(initrd, false)?));
    }
    let mut largest_writable = 0;
    for disk in &mut spec.disks {
        let file = open(&disk.path, !disk.read_only)?;
        if disk.path == plan.root {
            // The bytes the vmm will serve are the bytes checked here: same descriptor.
            verify::check_artifact(verify::ROOT_FILE, &file, &plan.root_ref)
                .map_err(LaunchError::Root)?;
        } else if !disk.read_only {
            let len = file
                .metadata()
                .map_err(|e| LaunchError::Open(disk.path.clone(), e))?
                .len();
            largest_writable = largest_writable.max(len);
        }
        disk.path = hand_over(file);
    }
    let binds = if Path::new(RESOLV_CONF).exists() {
        vec![PathBuf::from(RESOLV_CONF)]
    } else {
        Vec::new()
    };
    let cgroup = cgroup_dir(&plan.name);
    let jail = Jail::prepare(JailSpec {
        id: plan.jail_id,
        root: Path::new(JAIL_DIR).join(&plan.name),
        program: PathBuf::from(VMM),
        binds,
        cgroup: Some((
            cgroup.clone(),
            CgroupLimits::new(plan.memory_mib, plan.vcpus),
        )),
        rlimits: rlimits(largest_writable),
        fds,
    })
    .map_err(LaunchError::Jail)?;
    Ok(JailedVm {
        jail,
        args: spec.to_args(),
        cgroup,
    })
}
