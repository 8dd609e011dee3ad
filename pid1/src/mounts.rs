//! The API filesystems PID 1 mounts, and unmounting them again at power-off.
//!
//! Mounting is idempotent: a target already listed in `/proc/self/mounts` is skipped (mounting
//! proc or tmpfs twice would otherwise stack a second mount), and `EBUSY` counts as mounted.

use std::fs;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};

/// Why one mount failed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The mount point could not be created.
    #[error("create mount point {target}")]
    CreateTarget {
        /// Mount point.
        target: &'static str,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// mount(2) failed.
    #[error("mount {fstype} on {target}")]
    Mount {
        /// Filesystem type.
        fstype: &'static str,
        /// Mount point.
        target: &'static str,
        /// Underlying error.
        #[source]
        source: Errno,
    },
}

/// One filesystem to mount.
#[derive(Debug, Clone, Copy)]
pub struct MountSpec {
    /// Source shown in the mount table.
    pub source: &'static str,
    /// Mount point.
    pub target: &'static str,
    /// Filesystem type.
    pub fstype: &'static str,
    /// mount(2) flags.
    pub flags: MsFlags,
    /// Filesystem options.
    pub data: Option<&'static str>,
}

const NOSUID_NODEV_NOEXEC: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

/// The mounts, in order (a parent before what is mounted below it).
pub const API_MOUNTS: &[MountSpec] = &[
    MountSpec {
        source: "proc",
        target: "/proc",
        fstype: "proc",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
    },
    MountSpec {
        source: "sysfs",
        target: "/sys",
        fstype: "sysfs",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
    },
    MountSpec {
        source: "devtmpfs",
        target: "/dev",
        fstype: "devtmpfs",
        flags: MsFlags::MS_NOSUID,
        data: Some("mode=0755"),
    },
    MountSpec {
        source: "devpts",
        target: "/dev/pts",
        fstype: "devpts",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
        data: Some("mode=0620,ptmxmode=0666"),
    },
    MountSpec {
        source: "tmpfs",
        target: "/dev/shm",
        fstype: "tmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=1777"),
    },
    MountSpec {
        source: "tmpfs",
        target: "/run",
        fstype: "tmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=0755"),
    },
    MountSpec {
        source: "tmpfs",
        target: "/tmp",
        fstype: "tmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=1777"),
    },
    MountSpec {
        source: "cgroup2",
        target: "/sys/fs/cgroup",
        fstype: "cgroup2",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
    },
];

/// What happened to one mount.
#[derive(Debug)]
pub enum MountOutcome {
    /// Newly mounted.
    Mounted(&'static str),
    /// It was mounted already.
    AlreadyMounted(&'static str),
    /// It failed.
    Failed(MountError),
}

/// Mounts [`API_MOUNTS`]. Never stops early: every failure is returned for logging (logging
/// itself needs `/proc` and `/dev`, so it cannot happen here).
pub fn mount_all() -> Vec<MountOutcome> {
    API_MOUNTS.iter().map(mount_one).collect()
}

fn mount_one(spec: &MountSpec) -> MountOutcome {
    let table = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    if parse_mounts(&table).iter().any(|m| m.target == spec.target) {
        return MountOutcome::AlreadyMounted(spec.target);
    }
    if let Err(source) = fs::create_dir_all(spec.target) {
        return MountOutcome::Failed(MountError::CreateTarget {
            target: spec.target,
            source,
        });
    }
    match nix::mount::mount(
        Some(spec.source),
        spec.target,
        Some(spec.fstype),
        spec.flags,
        spec.data,
    ) {
        Ok(()) => MountOutcome::Mounted(spec.target),
        Err(Errno::EBUSY) => MountOutcome::AlreadyMounted(spec.target),
        Err(source) => MountOutcome::Failed(MountError::Mount {
            fstype: spec.fstype,
            target: spec.target,
            source,
        }),
    }
}

/// One line of `/proc/self/mounts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Device or source.
    pub source: String,
    /// Mount point (octal escapes decoded).
    pub target: String,
    /// Filesystem type.
    pub fstype: String,
}

/// Parses `/proc/self/mounts` (fstab format with `\040`-style octal escapes). Lines that are
/// too short are skipped.
pub fn parse_mounts(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (source, target, fstype) = (f.next()?, f.next()?, f.next()?);
            Some(MountEntry {
                source: unescape_octal(source),
                target: unescape_octal(target),
                fstype: unescape_octal(fstype),
            })
        })
        .collect()
}

fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match escape {
            Some(d) => {
                let value = d.iter().fold(0u16, |acc, b| acc * 8 + u16::from(b - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points to take down at power-off: everything but `/`, innermost (last mounted) first.
pub fn unmount_order(entries: &[MountEntry]) -> Vec<String> {
    entries
        .iter()
        .rev()
        .map(|e| e.target.clone())
        .filter(|t| t != "/")
        .collect()
}

/// Unmounts what can be unmounted and remounts the rest read-only. Returns the mount points
/// that stayed writable (for a log line).
pub fn unmount_all() -> Vec<String> {
    let table = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut stuck = Vec::new();
    for target in unmount_order(&parse_mounts(&table)) {
        if !Path::new(&target).is_dir() {
            continue;
        }
        if nix::mount::umount2(target.as_str(), MntFlags::empty()).is_ok() {
            continue;
        }
        let remount = MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        if nix::mount::mount(
            None::<&str>,
            target.as_str(),
            None::<&str>,
            remount,
            None::<&str>,
        )
        .is_err()
        {
            stuck.push(target);
        }
    }
    stuck
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "rootfs / rootfs rw,size=492k 0 0\n\
        proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0\n\
        sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0\n\
        devtmpfs /dev devtmpfs rw,nosuid,size=4k,mode=755 0 0\n\
        tmpfs /run/with\\040space tmpfs rw 0 0\n\
        cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n\
        short line\n";

    #[test]
    fn parses_mount_table_with_escapes() {
        let m = parse_mounts(SAMPLE);
        assert_eq!(m.len(), 6);
        assert_eq!(m[1].target, "/proc");
        assert_eq!(m[1].fstype, "proc");
        assert_eq!(m[4].target, "/run/with space");
        assert_eq!(unescape_octal("a\\011b\\\\"), "a\tb\\\\");
        assert_eq!(unescape_octal("trailing\\04"), "trailing\\04");
    }

    #[test]
    fn unmount_order_is_reverse_without_root() {
        let order = unmount_order(&parse_mounts(SAMPLE));
        assert_eq!(
            order,
            vec!["/sys/fs/cgroup", "/run/with space", "/dev", "/sys", "/proc"]
        );
    }

    #[test]
    fn api_mounts_put_parents_first() {
        for (i, m) in API_MOUNTS.iter().enumerate() {
            for later in &API_MOUNTS[i + 1..] {
                assert!(
                    !m.target.starts_with(&format!("{}/", later.target)),
                    "{} is mounted before its parent {}",
                    m.target,
                    later.target
                );
            }
        }
    }
}
