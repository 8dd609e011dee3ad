//! The machine's data disk, where the version floor lives on the machine itself: the node's
//! `init` claims a whole disk and makes it an ext4 filesystem labelled `NULLOS-DATA`
//! (`kernel-init/src/workloads/disk.rs`); stage 0 finds the disks that carry that label, mounts
//! each for a moment (ext4 from the boot image's modules) and reads or raises the state file
//! at its root ([`crate::state::read_in`], [`crate::state::raise_in`]).
//!
//! Which disks: the whole disks the node considers (`vd*`, `sd*`, `nvme<N>n<M>`), not
//! removable, with the ext4 magic and the label in the superblock. The probe reads the first
//! [`PROBE_BYTES`] only; the decision is [`is_data_filesystem`], pure.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

pub use interfaces::labels::DATA_FILESYSTEM as DATA_LABEL;

/// Where disks are listed.
pub const SYS_BLOCK: &str = "/sys/block";
/// Where a data disk is mounted while its floor is read or raised.
pub const MOUNT_POINT: &str = "/run/nullos/data";
/// How much of a disk is read to recognise it: the ext4 superblock ends at 2048.
pub const PROBE_BYTES: usize = 2048;
/// Offset of the ext4 superblock magic (superblock at 1024, `s_magic` at 0x38).
const EXT4_MAGIC_OFFSET: usize = 1024 + 0x38;
/// The ext4 superblock magic.
const EXT4_MAGIC: [u8; 2] = 0xEF53u16.to_le_bytes();
/// Offset of the ext4 volume label (`s_volume_name`, 16 bytes, NUL-padded).
const EXT4_LABEL_OFFSET: usize = 1024 + 0x78;

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
    #[error("create {MOUNT_POINT}")]
    MountPoint(#[source] std::io::Error),
    /// mount(2).
    #[error("mount {} (ext4) at {MOUNT_POINT}", device.display())]
    Mount {
        /// The disk.
        device: PathBuf,
        /// errno.
        #[source]
        source: nix::errno::Errno,
    },
    /// umount(2).
    #[error("unmount {MOUNT_POINT}")]
    Unmount(#[source] nix::errno::Errno),
}

/// Whether the first bytes of a disk are an ext4 superblock labelled [`DATA_LABEL`].
pub fn is_data_filesystem(first: &[u8]) -> bool {
    let magic = first.get(EXT4_MAGIC_OFFSET..EXT4_MAGIC_OFFSET + 2);
    let Some(label) = first.get(EXT4_LABEL_OFFSET..EXT4_LABEL_OFFSET + 16) else {
        return false;
    };
    let len = label.iter().position(|b| *b == 0).unwrap_or(label.len());
    magic == Some(&EXT4_MAGIC[..]) && &label[..len] == DATA_LABEL.as_bytes()
}

/// Whether a `/sys/block` name is a whole disk the node may claim: `vd*`, `sd*` or
/// `nvme<N>n<M>` (not loop, ram, optical, or partitions).
pub fn is_disk_name(name: &str) -> bool {
    let letters = |rest: &str| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_lowercase());
    if let Some(rest) = name.strip_prefix("vd").or_else(|| name.strip_prefix("sd")) {
        return letters(rest);
    }
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    name.strip_prefix("nvme")
        .and_then(|rest| rest.split_once('n'))
        .is_some_and(|(controller, namespace)| digits(controller) && digits(namespace))
}

/// The data disks under `sys_block` (device nodes, in name order). A disk whose superblock
/// cannot be read is an error: it may be the data disk.
pub fn find(sys_block: &Path) -> Result<Vec<PathBuf>, DataDiskError> {
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
        if is_data_filesystem(&first) {
            found.push(device);
        }
    }
    Ok(found)
}

/// Mounts `device` at [`MOUNT_POINT`] (no devices, no set-uid, no execution), runs `work` on
/// the mounted root, and unmounts it (so everything written is on the disk before a kexec).
pub fn with_mounted<T>(device: &Path, work: impl FnOnce(&Path) -> T) -> Result<T, DataDiskError> {
    std::fs::create_dir_all(MOUNT_POINT).map_err(DataDiskError::MountPoint)?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    nix::mount::mount(Some(device), MOUNT_POINT, Some("ext4"), flags, None::<&str>).map_err(
        |source| DataDiskError::Mount {
            device: device.to_owned(),
            source,
        },
    )?;
    let out = work(Path::new(MOUNT_POINT));
    nix::mount::umount2(MOUNT_POINT, MntFlags::empty()).map_err(DataDiskError::Unmount)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn superblock(magic: [u8; 2], label: &[u8]) -> Vec<u8> {
        let mut first = vec![0u8; PROBE_BYTES];
        first[EXT4_MAGIC_OFFSET..EXT4_MAGIC_OFFSET + 2].copy_from_slice(&magic);
        first[EXT4_LABEL_OFFSET..EXT4_LABEL_OFFSET + label.len()].copy_from_slice(label);
        first
    }

    #[test]
    fn recognises_the_nodes_filesystem_only() {
        assert!(is_data_filesystem(&superblock(EXT4_MAGIC, b"NULLOS-DATA")));
        assert!(!is_data_filesystem(&superblock(
            EXT4_MAGIC,
            b"NULLOS-DATA-2"
        )));
        assert!(!is_data_filesystem(&superblock([0, 0], b"NULLOS-DATA")));
        assert!(!is_data_filesystem(&superblock(EXT4_MAGIC, b"OTHER")));
        assert!(!is_data_filesystem(&[0u8; 100]));
    }

    #[test]
    fn whole_disks_only() {
        for name in ["vda", "sdb", "nvme0n1", "nvme10n2"] {
            assert!(is_disk_name(name), "{name}");
        }
        for name in ["vda1", "sr0", "loop0", "nvme0n1p1", "nvme0", "ram0", "sd"] {
            assert!(!is_disk_name(name), "{name}");
        }
    }

    /// A real ext4 filesystem made by mke2fs (a file standing in for the disk) is recognised
    /// by its superblock.
    #[test]
    fn a_filesystem_made_by_mke2fs_is_recognised() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("disk.img");
        std::fs::write(&image, vec![0u8; 8 << 20]).unwrap();
        let status = std::process::Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext4", "-L", DATA_LABEL])
            .arg(&image)
            .status()
            .unwrap_or_else(|e| panic!("mke2fs (e2fsprogs) is needed for this test: {e}"));
        assert!(status.success());
        let mut first = vec![0u8; PROBE_BYTES];
        File::open(&image).unwrap().read_exact(&mut first).unwrap();
        assert!(is_data_filesystem(&first));
    }
}
