//! The machine's data disk, where the version floor lives on the machine itself: the node's
//! `init` claims a whole disk and makes it an ext4 filesystem labelled `NULLOS-DATA`
//! (`kernel-init/src/workloads/disk.rs`); stage 0 finds the disks that carry that label, mounts
//! each for a moment (ext4 from the boot image's modules) and reads or raises the state file
//! at its root ([`crate::state::read_in`], [`crate::state::raise_in`]).
//!
//! Which disks: the whole disks the node considers (`vd*`, `sd*`, `nvme<N>n<M>`), not
//! removable, with the ext4 magic and the label in the superblock. The probe reads the first
//! [`PROBE_BYTES`] only; which of them is the data disk is the node's own rule
//! ([`interfaces::data_disk::choose`], with the UUID pinned on the stick), pure.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use interfaces::data_disk::{data_filesystem, is_disk_name, Candidate, DiskState};
use nix::mount::{MntFlags, MsFlags};

pub use interfaces::labels::DATA_FILESYSTEM as DATA_LABEL;

/// Where disks are listed.
pub const SYS_BLOCK: &str = "/sys/block";
/// Where a data disk is mounted while its floor is read or raised.
pub const MOUNT_POINT: &str = "/run/nullos/data";
/// How much of a disk is read to recognise it: the ext4 superblock ends at 2048.
pub const PROBE_BYTES: usize = 2048;

/// Why a data disk could not be read, mounted or written.
#[derive(Debug, thiserror::Error)]
pub enum DataDiskError {
    /// Reading its superblock.
    #[error("read {}", device.display())]
    Probe {
        /// The disk.
        device: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Making the mount point.
    #[error("create {}", point.display())]
    MountPoint {
        /// The mount point.
        point: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// mount(2).
    #[error("mount {} (ext4) at {}", device.display(), point.display())]
    Mount {
        /// The disk.
        device: PathBuf,
        /// Where.
        point: PathBuf,
        /// errno.
        #[source]
        source: nix::errno::Errno,
    },
    /// umount(2).
    #[error("unmount {}", point.display())]
    Unmount {
        /// Where it was mounted.
        point: PathBuf,
        /// errno.
        #[source]
        source: nix::errno::Errno,
    },
}

/// The disks under `sys_block` labelled like a data disk, in name order, with their filesystem
/// UUIDs. A disk whose superblock cannot be read is an error: it may be the data disk.
pub fn find(sys_block: &Path) -> Result<Vec<Candidate>, DataDiskError> {
    let Ok(entries) = std::fs::read_dir(sys_block) else {
        return Ok(Vec::new());
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| is_disk_name(n))
        .collect();
    names.sort();
    let mut found = Vec::new();
    for name in names {
        let removable = std::fs::read_to_string(sys_block.join(&name).join("removable"))
            .is_ok_and(|t| t.trim() == "1");
        if removable {
            continue;
        }
        let device = Path::new("/dev").join(&name);
        let mut first = vec![0u8; PROBE_BYTES];
        let read = File::open(&device).and_then(|mut f| f.read_exact(&mut first));
        match read {
            Ok(()) => {}
            // Smaller than a superblock: not a data disk.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => continue,
            Err(source) => return Err(DataDiskError::Probe { device, source }),
        }
        if let Some(uuid) = data_filesystem(&first) {
            found.push(Candidate {
                name,
                state: DiskState::Ours(uuid),
            });
        }
    }
    Ok(found)
}

/// A data disk mounted (ext4; no devices, no set-uid, no execution) until
/// [`Mounted::unmount`].
#[derive(Debug)]
pub struct Mounted {
    /// The disk.
    pub device: PathBuf,
    point: PathBuf,
}

impl Mounted {
    /// Mounts `device` at `point` (made if missing).
    pub fn mount_at(device: &Path, point: &Path) -> Result<Mounted, DataDiskError> {
        std::fs::create_dir_all(point).map_err(|source| DataDiskError::MountPoint {
            point: point.to_owned(),
            source,
        })?;
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        nix::mount::mount(Some(device), point, Some("ext4"), flags, None::<&str>).map_err(
            |source| DataDiskError::Mount {
                device: device.to_owned(),
                point: point.to_owned(),
                source,
            },
        )?;
        Ok(Mounted {
            device: device.to_owned(),
            point: point.to_owned(),
        })
    }

    /// The mounted root.
    pub fn root(&self) -> &Path {
        &self.point
    }

    /// Unmounts it (so everything written is on the disk before a kexec).
    pub fn unmount(self) -> Result<(), DataDiskError> {
        nix::mount::umount2(&self.point, MntFlags::empty()).map_err(|source| {
            DataDiskError::Unmount {
                point: self.point.clone(),
                source,
            }
        })
    }
}

/// Mounts `device` at [`MOUNT_POINT`], runs `work` on the mounted root, and unmounts it.
pub fn with_mounted<T>(device: &Path, work: impl FnOnce(&Path) -> T) -> Result<T, DataDiskError> {
    let mounted = Mounted::mount_at(device, Path::new(MOUNT_POINT))?;
    let out = work(mounted.root());
    mounted.unmount()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real ext4 filesystem made by mke2fs (a file standing in for the disk) is recognised
    /// by its superblock, with the UUID mke2fs gave it.
    #[test]
    fn a_filesystem_made_by_mke2fs_is_recognised() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("disk.img");
        std::fs::write(&image, vec![0u8; 8 << 20]).unwrap();
        let uuid = "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9";
        let status = std::process::Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext4", "-L", DATA_LABEL, "-U", uuid])
            .arg(&image)
            .status()
            .unwrap_or_else(|e| panic!("mke2fs (e2fsprogs) is needed for this test: {e}"));
        assert!(status.success());
        let mut first = vec![0u8; PROBE_BYTES];
        File::open(&image).unwrap().read_exact(&mut first).unwrap();
        assert_eq!(
            data_filesystem(&first).map(|u| u.to_string()).as_deref(),
            Some(uuid)
        );
    }
}
