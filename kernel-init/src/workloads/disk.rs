//! The data disk and the workloads' volumes.
//!
//! The node claims a whole disk only when it is empty (its first and last MiB are all zero: no
//! partition table, no filesystem signature at either end) or already NullOS's (an ext4
//! superblock labelled [`DATA_LABEL`]). Anything else holds someone's data and is never written.
//! Which one, among several, is the rule stage 0 uses too ([`interfaces::data_disk::choose`]):
//! with `nullos.data=<uuid>` (the disk pinned on the farmer's stick) only that disk, and an
//! empty disk is never formatted in its place; without, the one disk of ours, none when there
//! are two or more (one line names them), and an empty disk only when none is ours.
//! The claimed disk is mounted at [`DATA_ROOT`]; without one, volumes live on a tmpfs there and
//! the log says they are lost at power-off. A volume is an ext4 image file made once with
//! `mke2fs`, which the guest mounts from its virtio disk.
//!
//! Nothing on the data disk is followed: a disk that looks like ours may have been prepared by
//! someone else, so the folders to a volume must be real folders, and the volume and its
//! `.partial` file are opened with `O_NOFOLLOW` (the `.partial` created with `O_EXCL`) and
//! `fstat`-checked to be regular files. A symlink planted where a volume goes refuses the
//! volume and leaves its target untouched. A new volume larger than the free space of the
//! filesystem (statvfs) is refused at deploy time with one line; the tmpfs used without a data
//! disk is sized for the workloads' volumes (at most half the RAM, tmpfs's default).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use interfaces::data_disk::{choose, Candidate, Take};
use nix::mount::MsFlags;
use nix::sys::wait::WaitStatus;

/// Where the data disk (or the tmpfs standing in for it) is mounted.
pub const DATA_ROOT: &str = "/var/lib/nullos";
/// The filesystem label that marks a disk as NullOS's.
pub use interfaces::labels::DATA_FILESYSTEM as DATA_LABEL;
/// The host tool that makes ext4 filesystems (travels in the image with its libraries).
pub const MKE2FS: &str = "/sbin/mke2fs";
/// How much of each end of a disk is read to decide whether it is empty.
pub use interfaces::data_disk::PROBE_BYTES;
/// The data-disk rule, shared with stage 0.
pub use interfaces::data_disk::{classify, is_disk_name, DiskState, FsUuid};
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
    /// A path on the way to a volume, or the volume itself, is not what the node made (a
    /// symlink, a device, a folder where the file goes).
    #[error("{path} is not a {expected} (a symlink or something planted there?); refused")]
    NotRegular {
        /// The path.
        path: PathBuf,
        /// What it must be.
        expected: &'static str,
    },
    /// The volume does not fit the free space.
    #[error("{size_mib} MiB does not fit the {free_mib} MiB free on {dir}")]
    NoSpace {
        /// The volume's size.
        size_mib: u64,
        /// Free space for unprivileged files.
        free_mib: u64,
        /// The folder.
        dir: PathBuf,
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

/// Where volumes live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataRoot {
    /// The folder ([`DATA_ROOT`]).
    pub path: PathBuf,
    /// The disk it is on, or `None` for tmpfs.
    pub disk: Option<String>,
}

/// The `size=` of the tmpfs that stands in for a data disk: the workloads' volumes, plus 1 MiB
/// each for ext4's slack, at most half the RAM (`None`: RAM unknown, tmpfs's own default).
pub fn tmpfs_size_mib(volumes_mib: u64, volume_count: u64, ram_mib: Option<u64>) -> u64 {
    let wanted = volumes_mib.saturating_add(volume_count).max(1);
    ram_mib.map_or(wanted, |ram| wanted.min((ram / 2).max(1)))
}

/// The data root of this boot, set up by the first caller (`set_up_data_root` with its
/// sizes) and shared by every later one: the grid (before the ready line, for the node's
/// identity) and the workloads of the image.
pub fn data_root(volumes_mib: u64, volume_count: u64) -> DataRoot {
    static DATA: std::sync::OnceLock<DataRoot> = std::sync::OnceLock::new();
    DATA.get_or_init(|| set_up_data_root(volumes_mib, volume_count))
        .clone()
}

/// Finds and mounts the data disk, or a tmpfs instead (of [`tmpfs_size_mib`] for `volumes_mib`
/// over `volume_count` volumes); logs which. Once per boot, only through [`data_root`]: a
/// second mount would fail and put a tmpfs over the first.
fn set_up_data_root(volumes_mib: u64, volume_count: u64) -> DataRoot {
    let path = PathBuf::from(DATA_ROOT);
    if let Err(e) = std::fs::create_dir_all(&path) {
        crate::error!("create {DATA_ROOT}: {e}");
    }
    let pin = pinned_data_disk(&pid1::cmdline::Cmdline::parse(pid1::cmdline::read()));
    match claim_data_disk(pin) {
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
    let ram_mib = nix::sys::sysinfo::sysinfo()
        .ok()
        .map(|info| info.ram_total() >> 20);
    let options = format!(
        "mode=0700,size={}m",
        tmpfs_size_mib(volumes_mib, volume_count, ram_mib)
    );
    if let Err(source) = nix::mount::mount(
        Some("tmpfs"),
        DATA_ROOT,
        Some("tmpfs"),
        flags,
        Some(options.as_str()),
    ) {
        let e = DiskError::Mount {
            what: "tmpfs".into(),
            source,
        };
        crate::error!("{}", crate::error_chain(&e));
    }
    DataRoot { path, disk: None }
}

/// The pinned data disk of `nullos.data=`, if any: a value that is not a UUID is a warning and
/// pins no disk (then the rule without a pin applies).
pub fn pinned_data_disk(cmdline: &pid1::cmdline::Cmdline) -> Option<FsUuid> {
    let text = cmdline.data.as_deref()?;
    let uuid = FsUuid::parse(text);
    if uuid.is_none() {
        crate::warn!("nullos.data={text} is not a filesystem UUID; no data disk is pinned");
    }
    uuid
}

/// The data disk by the shared rule (`pin`: the UUID of `nullos.data=`), formatted first when
/// it is an empty disk, mounted at [`DATA_ROOT`].
fn claim_data_disk(pin: Option<FsUuid>) -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/block")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| is_disk_name(n))
        .collect();
    names.sort();
    let mut candidates = Vec::new();
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
        if state == DiskState::Foreign {
            crate::warn!("disk /dev/{disk} holds foreign data; not claimed");
        }
        candidates.push(Candidate { name: disk, state });
    }
    let choice = choose(&candidates, pin);
    if let Some(line) = &choice.refused {
        crate::warn!("{line}");
    }
    let (index, empty) = match choice.take {
        Take::Ours(i) => (i, false),
        Take::Format(i) => (i, true),
        Take::Nothing => {
            if let Some(pin) = pin {
                crate::warn!("pinned data disk {pin} not found; no other disk is taken");
            }
            return None;
        }
    };
    let disk = candidates.get(index)?.name.clone();
    let device = format!("/dev/{disk}");
    if empty {
        crate::info!("disk {device} is empty; making an ext4 filesystem labelled {DATA_LABEL}");
        if let Err(e) = run_tool(
            MKE2FS,
            &["-t", "ext4", "-q", "-L", DATA_LABEL, device.as_str()],
        ) {
            crate::error!("data disk {device}: {}", crate::error_chain(&e));
            return None;
        }
    }
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    match nix::mount::mount(
        Some(device.as_str()),
        DATA_ROOT,
        Some("ext4"),
        flags,
        None::<&str>,
    ) {
        Ok(()) => Some(disk),
        Err(source) => {
            let e = DiskError::Mount {
                what: device,
                source,
            };
            crate::error!("{}", crate::error_chain(&e));
            None
        }
    }
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

/// Makes the volume's ext4 image unless it exists (a volume is made once and kept). Returns
/// whether it was made. Refuses anything but a regular file (or real folders on the way) where
/// the volume goes, and a new volume larger than the free space.
pub fn ensure_volume(path: &Path, label: &str, size_mib: u32) -> Result<bool, DiskError> {
    ensure_volume_with(path, size_mib, |partial| {
        let size = format!("{size_mib}M");
        let partial_text = partial.to_string_lossy().into_owned();
        run_tool(
            MKE2FS,
            &["-t", "ext4", "-q", "-F", "-L", label, &partial_text, &size],
        )
    })
}

/// [`ensure_volume`] with the formatting step given (the tests use no `mke2fs`).
fn ensure_volume_with(
    path: &Path,
    size_mib: u32,
    format: impl FnOnce(&Path) -> Result<(), DiskError>,
) -> Result<bool, DiskError> {
    let create = |source| DiskError::Create {
        path: path.to_owned(),
        source,
    };
    match open_nofollow(path, false) {
        Ok(file) => {
            check_regular(&file, path)?;
            return Ok(false);
        }
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            return Err(DiskError::NotRegular {
                path: path.to_owned(),
                expected: "regular file",
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(create(source)),
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(create)?;
        real_dirs(dir)?;
        check_free(dir, size_mib)?;
    }
    let partial = path.with_extension("img.partial");
    // A `.partial` left by an interrupted run (or planted): unlink it, never follow it.
    match std::fs::remove_file(&partial) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(create(source)),
    }
    let file = open_nofollow(&partial, true).map_err(create)?;
    let made = check_regular(&file, &partial)?;
    file.set_len(u64::from(size_mib) << 20).map_err(create)?;
    drop(file);
    format(&partial)?;
    // Still the file made above (nothing swapped it while the tool ran): then rename(2), which
    // replaces whatever is at `path` without following it.
    let after = open_nofollow(&partial, false).map_err(create)?;
    let now = check_regular(&after, &partial)?;
    if (now.dev(), now.ino()) != (made.dev(), made.ino()) {
        return Err(DiskError::NotRegular {
            path: partial,
            expected: "file the node made",
        });
    }
    std::fs::rename(&partial, path).map_err(create)?;
    Ok(true)
}

/// Opens `path` read-write without following a final symlink (`ELOOP` then); `create`: a new
/// file only (`O_EXCL`, which does not follow symlinks either).
fn open_nofollow(path: &Path, create: bool) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .mode(0o600);
    if create {
        options.create_new(true);
    }
    options.open(path)
}

/// `fstat` of an open volume file: a regular file, or refused.
fn check_regular(file: &File, path: &Path) -> Result<std::fs::Metadata, DiskError> {
    let meta = file.metadata().map_err(|source| DiskError::Create {
        path: path.to_owned(),
        source,
    })?;
    let t = meta.file_type();
    if !t.is_file() || t.is_block_device() || t.is_char_device() {
        return Err(DiskError::NotRegular {
            path: path.to_owned(),
            expected: "regular file",
        });
    }
    Ok(meta)
}

/// The volume folder and its parent (`volumes/<workload>`, `volumes`) are real folders, not
/// symlinks to elsewhere on the node.
fn real_dirs(dir: &Path) -> Result<(), DiskError> {
    for d in [Some(dir), dir.parent()].into_iter().flatten() {
        let meta = std::fs::symlink_metadata(d).map_err(|source| DiskError::Create {
            path: d.to_owned(),
            source,
        })?;
        if !meta.file_type().is_dir() {
            return Err(DiskError::NotRegular {
                path: d.to_owned(),
                expected: "folder",
            });
        }
    }
    Ok(())
}

/// Refuses a volume of `size_mib` that does not fit the free space of `dir`'s filesystem.
fn check_free(dir: &Path, size_mib: u32) -> Result<(), DiskError> {
    let stat = nix::sys::statvfs::statvfs(dir).map_err(|e| DiskError::Create {
        path: dir.to_owned(),
        source: e.into(),
    })?;
    #[allow(clippy::useless_conversion)] // the field types differ between targets
    let free = u64::from(stat.blocks_available()).saturating_mul(u64::from(stat.fragment_size()));
    fits(size_mib, free, dir)
}

/// Whether a volume of `size_mib` fits `free` bytes (pure).
fn fits(size_mib: u32, free: u64, dir: &Path) -> Result<(), DiskError> {
    if u64::from(size_mib) << 20 > free {
        return Err(DiskError::NoSpace {
            size_mib: u64::from(size_mib),
            free_mib: free >> 20,
            dir: dir.to_owned(),
        });
    }
    Ok(())
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

    #[test]
    fn nullos_data_pins_a_disk_by_uuid() {
        let uuid = "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9";
        let cmdline = pid1::cmdline::Cmdline::parse(format!("quiet nullos.data={uuid}"));
        assert_eq!(
            pinned_data_disk(&cmdline).map(|u| u.to_string()).as_deref(),
            Some(uuid)
        );
        let cmdline = pid1::cmdline::Cmdline::parse("nullos.data=/dev/vdb");
        assert_eq!(pinned_data_disk(&cmdline), None, "not a UUID: no pin");
        assert_eq!(
            pinned_data_disk(&pid1::cmdline::Cmdline::parse("quiet")),
            None
        );
    }

    #[test]
    fn volumes_live_under_the_workload() {
        assert_eq!(
            volume_path(Path::new("/var/lib/nullos"), "hello", "data"),
            Path::new("/var/lib/nullos/volumes/hello/data.img")
        );
    }

    /// A formatting step that writes a marker, as mke2fs would write a filesystem.
    fn fake_format(partial: &Path) -> Result<(), DiskError> {
        std::fs::write(partial, b"ext4").map_err(|source| DiskError::Create {
            path: partial.to_owned(),
            source,
        })
    }

    #[test]
    fn a_volume_is_made_once_then_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let path = volume_path(tmp.path(), "hello", "data");
        assert!(ensure_volume_with(&path, 1, fake_format).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"ext4");
        assert!(!path.with_extension("img.partial").exists());
        assert!(!ensure_volume_with(&path, 1, |_| panic!("formatted again")).unwrap());
    }

    #[test]
    fn a_symlink_where_the_volume_goes_is_refused_and_its_target_untouched() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("precious");
        std::fs::write(&target, b"keep me").unwrap();
        let path = volume_path(tmp.path(), "hello", "data");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let err = ensure_volume_with(&path, 1, |_| panic!("formatted")).unwrap_err();
        assert!(matches!(err, DiskError::NotRegular { .. }), "{err}");
        assert_eq!(std::fs::read(&target).unwrap(), b"keep me");
        // A dangling symlink too: nothing is created at its target.
        std::fs::remove_file(&path).unwrap();
        let absent = tmp.path().join("absent");
        std::os::unix::fs::symlink(&absent, &path).unwrap();
        assert!(ensure_volume_with(&path, 1, fake_format).is_err());
        assert!(!absent.exists());
    }

    #[test]
    fn a_planted_partial_symlink_is_removed_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("precious");
        std::fs::write(&target, b"keep me").unwrap();
        let path = volume_path(tmp.path(), "hello", "data");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&target, path.with_extension("img.partial")).unwrap();
        assert!(ensure_volume_with(&path, 1, fake_format).unwrap());
        assert_eq!(std::fs::read(&target).unwrap(), b"keep me");
        assert_eq!(std::fs::read(&path).unwrap(), b"ext4");
        assert!(!std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn a_symlinked_folder_on_the_way_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::create_dir(tmp.path().join("volumes")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, tmp.path().join("volumes/hello")).unwrap();
        let path = volume_path(tmp.path(), "hello", "data");
        let err = ensure_volume_with(&path, 1, fake_format).unwrap_err();
        assert!(
            matches!(
                err,
                DiskError::NotRegular {
                    expected: "folder",
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    }

    #[test]
    fn a_directory_where_the_volume_goes_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let path = volume_path(tmp.path(), "hello", "data");
        std::fs::create_dir_all(&path).unwrap();
        assert!(ensure_volume_with(&path, 1, fake_format).is_err());
    }

    #[test]
    fn a_volume_larger_than_the_free_space_is_refused_in_one_line() {
        let dir = Path::new("/var/lib/nullos/volumes/hello");
        assert!(fits(16, 16 << 20, dir).is_ok());
        let err = fits(512, 100 << 20, dir).unwrap_err();
        assert_eq!(
            err.to_string(),
            "512 MiB does not fit the 100 MiB free on /var/lib/nullos/volumes/hello"
        );
        // Through the real statvfs: more than any test machine has free.
        let tmp = tempfile::tempdir().unwrap();
        let path = volume_path(tmp.path(), "hello", "data");
        let err = ensure_volume_with(&path, u32::MAX, |_| panic!("formatted")).unwrap_err();
        assert!(matches!(err, DiskError::NoSpace { .. }), "{err}");
        assert!(!path.exists());
    }

    #[test]
    fn tmpfs_is_sized_for_the_volumes_within_half_the_ram() {
        assert_eq!(tmpfs_size_mib(48, 3, Some(4096)), 51);
        assert_eq!(tmpfs_size_mib(0, 0, Some(4096)), 1);
        assert_eq!(tmpfs_size_mib(10_000, 1, Some(4096)), 2048);
        assert_eq!(tmpfs_size_mib(10_000, 1, None), 10_001);
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
