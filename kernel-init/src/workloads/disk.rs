//! The data disk and the workloads' volumes.
//!
//! The node claims a whole disk only when it is empty (its first and last MiB are all zero: no
//! partition table, no filesystem signature at either end) or already NullOS's (an ext4
//! superblock labelled [`DATA_LABEL`]). Anything else holds someone's data and is never written.
//! The claimed disk is mounted at [`DATA_ROOT`]; without one, volumes live on a tmpfs there and
//! the log says they are lost at power-off. A volume is an ext4 image file made once with
//! `mke2fs`, which the guest mounts from its virtio disk.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::mount::MsFlags;
use nix::sys::wait::WaitStatus;

/// Where the data disk (or the tmpfs standing in for it) is mounted.
pub const DATA_ROOT: &str = "/var/lib/nullos";
/// The filesystem label that marks a disk as NullOS's.
pub use interfaces::labels::DATA_FILESYSTEM as DATA_LABEL;
/// The host tool that makes ext4 filesystems (travels in the image with its libraries).
pub const MKE2FS: &str = "/sbin/mke2fs";
/// How much of each end of a disk is read to decide whether it is empty.
pub const PROBE_BYTES: usize = 1 << 20;
/// Offset of the ext4 superblock magic (superblock at 1024, `s_magic` at 0x38).
const EXT4_MAGIC_OFFSET: usize = 1024 + 0x38;
/// The ext4 superblock magic.
const EXT4_MAGIC: u16 = 0xEF53;
/// Offset of the ext4 volume label (`s_volume_name`, 16 bytes).
const EXT4_LABEL_OFFSET: usize = 1024 + 0x78;
/// Disks smaller than this are not data disks.
const MIN_DISK_BYTES: u64 = 4 * PROBE_BYTES as u64;

/// Why a disk or volume step failed.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// Reading a disk's ends.
    #[error("read /dev/{disk}")]
    Probe {
        /// The disk.
        disk: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Running a tool.
    #[error("run {tool}")]
    Spawn {
        /// The tool.
        tool: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A tool failed.
    #[error("{tool} failed ({status}): {stderr}")]
    Tool {
        /// The tool.
        tool: String,
        /// How it ended.
        status: String,
        /// What it said.
        stderr: String,
    },
    /// mount(2) failed.
    #[error("mount {what} at {DATA_ROOT}")]
    Mount {
        /// What was mounted.
        what: String,
        /// errno.
        #[source]
        source: nix::errno::Errno,
    },
    /// A folder or file could not be made.
    #[error("create {path}")]
    Create {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// What a disk holds, judged from its first and last MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskState {
    /// All zero at both ends: nothing anyone could miss.
    Empty,
    /// An ext4 filesystem labelled [`DATA_LABEL`]: the node's own.
    Ours,
    /// Anything else: never written.
    Foreign,
}

/// Classifies a disk from the bytes at its start and its end.
pub fn classify(first: &[u8], last: &[u8]) -> DiskState {
    let magic = first
        .get(EXT4_MAGIC_OFFSET..EXT4_MAGIC_OFFSET + 2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]));
    let label = first.get(EXT4_LABEL_OFFSET..EXT4_LABEL_OFFSET + 16);
    if magic == Some(EXT4_MAGIC) && label.is_some_and(is_data_label) {
        return DiskState::Ours;
    }
    if first.iter().chain(last).all(|b| *b == 0) {
        return DiskState::Empty;
    }
    DiskState::Foreign
}

fn is_data_label(field: &[u8]) -> bool {
    let len = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    field.get(..len) == Some(DATA_LABEL.as_bytes())
}

/// Whether a `/sys/block` name is a whole disk the node may use: `vd*`, `sd*` or `nvme<N>n<M>`
/// (not loop, ram, optical, or partitions).
pub fn is_disk_name(name: &str) -> bool {
    let letters = |rest: &str| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_lowercase());
    if let Some(rest) = name.strip_prefix("vd").or_else(|| name.strip_prefix("sd")) {
        return letters(rest);
    }
    if let Some(rest) = name.strip_prefix("nvme") {
        let Some((controller, namespace)) = rest.split_once('n') else {
            return false;
        };
        let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
        return digits(controller) && digits(namespace);
    }
    false
}

/// Where volumes live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataRoot {
    /// The folder ([`DATA_ROOT`]).
    pub path: PathBuf,
    /// The disk it is on, or `None` for tmpfs.
    pub disk: Option<String>,
}

/// Finds and mounts the data disk, or a tmpfs instead; logs which.
pub fn set_up_data_root() -> DataRoot {
    let path = PathBuf::from(DATA_ROOT);
    if let Err(e) = std::fs::create_dir_all(&path) {
        crate::error!("create {DATA_ROOT}: {e}");
    }
    match claim_data_disk() {
        Some(disk) => {
            crate::info!("data disk /dev/{disk} mounted at {DATA_ROOT}");
            return DataRoot {
                path,
                disk: Some(disk),
            };
        }
        None => {
            crate::warn!("no data disk: volumes are on tmpfs and are lost at power-off");
        }
    }
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if let Err(source) = nix::mount::mount(
        Some("tmpfs"),
        DATA_ROOT,
        Some("tmpfs"),
        flags,
        Some("mode=0700"),
    ) {
        let e = DiskError::Mount {
            what: "tmpfs".into(),
            source,
        };
        crate::error!("{}", crate::error_chain(&e));
    }
    DataRoot { path, disk: None }
}

/// The first disk that is empty (formatted now) or ours, mounted at [`DATA_ROOT`].
fn claim_data_disk() -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/block")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| is_disk_name(n))
        .collect();
    names.sort();
    for disk in names {
        let sys = Path::new("/sys/block").join(&disk);
        let flag =
            |file: &str| std::fs::read_to_string(sys.join(file)).is_ok_and(|t| t.trim() == "1");
        if flag("removable") || flag("ro") {
            crate::debug!("disk /dev/{disk}: removable or read-only; skipped");
            continue;
        }
        let sectors: u64 = std::fs::read_to_string(sys.join("size"))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        let size = sectors.saturating_mul(512);
        if size < MIN_DISK_BYTES {
            crate::debug!("disk /dev/{disk}: {size} bytes; too small");
            continue;
        }
        let state = match probe(&disk, size) {
            Ok(state) => state,
            Err(e) => {
                crate::warn!("{}; not claimed", crate::error_chain(&e));
                continue;
            }
        };
        let device = format!("/dev/{disk}");
        match state {
            DiskState::Foreign => {
                crate::warn!("disk {device} holds foreign data; not claimed");
                continue;
            }
            DiskState::Empty => {
                crate::info!(
                    "disk {device} is empty; making an ext4 filesystem labelled {DATA_LABEL}"
                );
                if let Err(e) = run_tool(
                    MKE2FS,
                    &["-t", "ext4", "-q", "-L", DATA_LABEL, device.as_str()],
                ) {
                    crate::error!("data disk {device}: {}", crate::error_chain(&e));
                    continue;
                }
            }
            DiskState::Ours => {}
        }
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        match nix::mount::mount(
            Some(device.as_str()),
            DATA_ROOT,
            Some("ext4"),
            flags,
            None::<&str>,
        ) {
            Ok(()) => return Some(disk),
            Err(source) => {
                let e = DiskError::Mount {
                    what: device,
                    source,
                };
                crate::error!("{}", crate::error_chain(&e));
            }
        }
    }
    None
}

/// Reads the first and last [`PROBE_BYTES`] of a disk of `size` bytes and classifies it.
/// Disks with partitions are foreign whatever their ends hold.
fn probe(disk: &str, size: u64) -> Result<DiskState, DiskError> {
    let err = |source| DiskError::Probe {
        disk: disk.to_owned(),
        source,
    };
    let partitioned = std::fs::read_dir(Path::new("/sys/block").join(disk))
        .map_err(err)?
        .filter_map(Result::ok)
        .any(|e| e.path().join("partition").exists());
    if partitioned {
        return Ok(DiskState::Foreign);
    }
    let mut file = File::open(format!("/dev/{disk}")).map_err(err)?;
    let mut first = vec![0u8; PROBE_BYTES];
    file.read_exact(&mut first).map_err(err)?;
    let mut last = vec![0u8; PROBE_BYTES];
    file.seek(SeekFrom::Start(size - PROBE_BYTES as u64))
        .map_err(err)?;
    file.read_exact(&mut last).map_err(err)?;
    Ok(classify(&first, &last))
}

/// The image file of a workload's volume.
pub fn volume_path(root: &Path, workload: &str, volume: &str) -> PathBuf {
    root.join("volumes")
        .join(workload)
        .join(format!("{volume}.img"))
}

/// Makes the volume's ext4 image unless it exists (a volume is made once and kept).
pub fn ensure_volume(path: &Path, label: &str, size_mib: u32) -> Result<bool, DiskError> {
    if path.exists() {
        return Ok(false);
    }
    let create = |source| DiskError::Create {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(create)?;
    }
    let partial = path.with_extension("img.partial");
    let file = File::create(&partial).map_err(create)?;
    file.set_len(u64::from(size_mib) << 20).map_err(create)?;
    drop(file);
    let size = format!("{size_mib}M");
    let partial_text = partial.to_string_lossy().into_owned();
    run_tool(
        MKE2FS,
        &["-t", "ext4", "-q", "-F", "-L", label, &partial_text, &size],
    )?;
    std::fs::rename(&partial, path).map_err(create)?;
    Ok(true)
}

/// Runs a tool to completion as a watched child (see [`crate::signals::spawn_watched`]).
fn run_tool(tool: &str, args: &[&str]) -> Result<(), DiskError> {
    let spawn = |source| DiskError::Spawn {
        tool: tool.to_owned(),
        source,
    };
    let mut command = Command::new(tool);
    command
        .args(args)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let (mut child, status) = crate::signals::spawn_watched(&mut command).map_err(spawn)?;
    let mut stderr = Vec::new();
    if let Some(pipe) = child.stderr.take() {
        let mut pipe = pipe;
        let _ = (&mut pipe).take(4096).read_to_end(&mut stderr);
        // Drain the rest so the tool never blocks on a full pipe.
        let _ = std::io::copy(&mut pipe, &mut std::io::sink());
    }
    let status = status
        .recv()
        .map_err(|_| spawn(std::io::Error::other("the reaper dropped the status")))?;
    match status {
        WaitStatus::Exited(_, 0) => Ok(()),
        other => Err(DiskError::Tool {
            tool: tool.to_owned(),
            status: describe(other),
            stderr: String::from_utf8_lossy(&stderr).trim().to_owned(),
        }),
    }
}

/// A wait status in words.
pub fn describe(status: WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("exit status {code}"),
        WaitStatus::Signaled(_, signal, _) => format!("killed by {signal}"),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext4(label: &[u8]) -> Vec<u8> {
        let mut first = vec![0u8; PROBE_BYTES];
        first[EXT4_MAGIC_OFFSET..EXT4_MAGIC_OFFSET + 2].copy_from_slice(&EXT4_MAGIC.to_le_bytes());
        first[EXT4_LABEL_OFFSET..EXT4_LABEL_OFFSET + label.len()].copy_from_slice(label);
        first
    }

    #[test]
    fn empty_ours_and_foreign_disks() {
        let zero = vec![0u8; PROBE_BYTES];
        assert_eq!(classify(&zero, &zero), DiskState::Empty);
        assert_eq!(classify(&ext4(b"NULLOS-DATA"), &zero), DiskState::Ours);
        // Ours whatever the end holds (ext4 uses the whole disk).
        assert_eq!(classify(&ext4(b"NULLOS-DATA"), &[1u8; 16]), DiskState::Ours);
        // Another label, a longer label, no magic: someone else's.
        assert_eq!(classify(&ext4(b"data"), &zero), DiskState::Foreign);
        assert_eq!(classify(&ext4(b"NULLOS-DATA-2"), &zero), DiskState::Foreign);
        let mut no_magic = ext4(b"NULLOS-DATA");
        no_magic[EXT4_MAGIC_OFFSET] = 0;
        assert_eq!(classify(&no_magic, &zero), DiskState::Foreign);
        // A GPT at the start, or only its backup at the end: foreign.
        let mut mbr = zero.clone();
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        assert_eq!(classify(&mbr, &zero), DiskState::Foreign);
        let mut backup = zero.clone();
        backup[PROBE_BYTES - 512..PROBE_BYTES - 504].copy_from_slice(b"EFI PART");
        assert_eq!(classify(&zero, &backup), DiskState::Foreign);
        // Truncated reads never panic.
        assert_eq!(classify(&[], &[]), DiskState::Empty);
        assert_eq!(classify(&[1], &[]), DiskState::Foreign);
    }

    #[test]
    fn whole_disk_names() {
        for yes in ["vda", "vdb", "sda", "sdaa", "nvme0n1", "nvme12n3"] {
            assert!(is_disk_name(yes), "{yes}");
        }
        for no in [
            "vda1",
            "sda2",
            "nvme0n1p1",
            "nvme0",
            "loop0",
            "ram0",
            "sr0",
            "vd",
            "nvmen1",
            "md0",
        ] {
            assert!(!is_disk_name(no), "{no}");
        }
    }

    #[test]
    fn volumes_live_under_the_workload() {
        assert_eq!(
            volume_path(Path::new("/var/lib/nullos"), "hello", "data"),
            Path::new("/var/lib/nullos/volumes/hello/data.img")
        );
    }

    #[test]
    fn wait_statuses_in_words() {
        let pid = nix::unistd::Pid::from_raw(5);
        assert_eq!(describe(WaitStatus::Exited(pid, 1)), "exit status 1");
        assert_eq!(
            describe(WaitStatus::Signaled(
                pid,
                nix::sys::signal::Signal::SIGKILL,
                false
            )),
            "killed by SIGKILL"
        );
    }
}
