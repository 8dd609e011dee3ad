//! Our vmm in the node's own jail (`kernel_init::workloads::jail`, docs/VMM.md "The jail"), so
//! the benchmark measures it as a node runs it: its own uid, no capabilities, `no_new_privs`,
//! new mount/pid/ipc/uts namespaces, an empty read-only root (`pivot_root`, or move + `chroot`
//! on the initramfs root, as here), its files handed over as descriptors, the cgroup v2 leaf
//! with the node's limits when cgroup v2 is mounted, the rlimits, and the vmm's own seccomp
//! filter.
//!
//! The jail is [`Jail::prepare`] and [`Jail::apply`], the node's own code; opening the files
//! and naming them `/proc/self/fd/N` on the command line follows the node's
//! `workloads::jail::launch::jailed_vm`, which is tied to a verified workload (its root image,
//! its guest command line) and so cannot run this guest.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use interfaces::vm::{fd_path, VmSpec, DEFAULT_KVM};
use kernel_init::workloads::jail::{
    cgroup_dir, jail_ids, rlimits, CgroupLimits, Jail, JailError, JailSpec, ID_BASE, JAIL_DIR,
};

use crate::{node_paths, JAIL_NAME};

/// Where the node mounts cgroup v2; the jail's leaf goes below it.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Why a jailed vmm could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum JailedError {
    /// A file of the VM could not be opened.
    #[error("open {}", .0.display())]
    Open(PathBuf, #[source] io::Error),
    /// The guest's size does not fit the cgroup's limits.
    #[error("guest of {memory_mib} MiB and {vcpus} vCPU(s) is out of the node's range")]
    Size {
        /// Guest memory.
        memory_mib: u64,
        /// vCPUs.
        vcpus: u32,
    },
    /// The jail could not be prepared.
    #[error("jail")]
    Jail(#[source] JailError),
}

/// Everything to start one jailed vmm.
#[derive(Debug)]
pub struct JailedVmm {
    /// The jail, for [`crate::monitor::Running::spawn`].
    pub jail: Jail,
    /// The vmm's arguments, its files named as inherited descriptors.
    pub args: Vec<OsString>,
    /// The jail's cgroup, when cgroup v2 is there.
    pub cgroup: Option<PathBuf>,
}

/// Whether cgroup v2 is mounted at [`CGROUP_ROOT`].
pub fn cgroup_v2() -> bool {
    Path::new(CGROUP_ROOT).join("cgroup.controllers").exists()
}

fn open(path: &Path, write: bool) -> Result<File, JailedError> {
    // std opens with O_CLOEXEC: only the jail's own child keeps these across exec.
    OpenOptions::new()
        .read(true)
        .write(write)
        .open(path)
        .map_err(|e| JailedError::Open(path.to_path_buf(), e))
}

/// Opens the files of `spec` (`/dev/kvm` and the volumes read-write, the rest read-only),
/// names them by descriptor, and prepares the jail; with `cgroup`, in the jail's cgroup leaf
/// under the node's limits for the guest's size.
pub fn jailed_vmm(mut spec: VmSpec, cgroup: bool) -> Result<JailedVmm, JailedError> {
    let too_big = || JailedError::Size {
        memory_mib: spec.memory_mib,
        vcpus: spec.vcpus,
    };
    let memory_mib = u32::try_from(spec.memory_mib).map_err(|_| too_big())?;
    let vcpus = u8::try_from(spec.vcpus).map_err(|_| too_big())?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    let mut hand_over = |file: File| {
        let path = fd_path(file.as_raw_fd());
        fds.push(file.into());
        path
    };
    spec.kvm = Some(hand_over(open(Path::new(DEFAULT_KVM), true)?));
    spec.kernel = hand_over(open(&spec.kernel, false)?);
    if let Some(initrd) = &spec.initrd {
        spec.initrd = Some(hand_over(open(initrd, false)?));
    }
    let mut largest_writable = 0;
    for disk in &mut spec.disks {
        let file = open(&disk.path, !disk.read_only)?;
        if !disk.read_only {
            let len = file
                .metadata()
                .map_err(|e| JailedError::Open(disk.path.clone(), e))?
                .len();
            largest_writable = largest_writable.max(len);
        }
        disk.path = hand_over(file);
    }
    let cgroup = cgroup.then(|| cgroup_dir(JAIL_NAME));
    let jail = Jail::prepare(JailSpec {
        id: jail_ids(&[JAIL_NAME]).first().copied().unwrap_or(ID_BASE),
        root: Path::new(JAIL_DIR).join(JAIL_NAME),
        program: PathBuf::from(node_paths::VMM),
        // The node binds /etc/resolv.conf when it has one; the bench node has none.
        binds: Vec::new(),
        cgroup: cgroup
            .clone()
            .map(|dir| (dir, CgroupLimits::new(memory_mib, vcpus))),
        rlimits: rlimits(largest_writable),
        fds,
    })
    .map_err(JailedError::Jail)?;
    Ok(JailedVmm {
        jail,
        args: spec.to_args(),
        cgroup,
    })
}
