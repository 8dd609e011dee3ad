//! The guest's mounts as data: which disk goes where, in which order.
//!
//! Disk order is the contract with the node: the root image is `/dev/vda`, volume `i` is
//! `/dev/vd(b+i)`. The root image (squashfs) is mounted read-only as the lower layer of an
//! overlay whose upper layer is a tmpfs, so the workload sees a writable root that starts
//! fresh on every boot; only its volumes persist.

use nix::mount::MsFlags;

use super::config::GuestConfig;

/// Where the workload's root is assembled (and what the entrypoint is chrooted into).
pub const NEW_ROOT: &str = "/newroot";
/// The read-only root image.
pub const LOWER: &str = "/run/guest/lower";
/// The tmpfs holding the overlay's upper and work directories.
pub const SCRATCH: &str = "/run/guest/rw";
/// The root image's disk.
pub const ROOT_DISK: &str = "vda";

/// What a mount is for (it decides the wording of errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    /// The workload's root image.
    RootImage,
    /// The overlay's writable layer.
    Scratch,
    /// The overlay that becomes the workload's root.
    Overlay,
    /// An API filesystem inside the new root.
    Api,
    /// A volume, by name.
    Volume(String),
}

/// One mount(2) call, with the directories to create first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedMount {
    /// Why.
    pub purpose: Purpose,
    /// Source (a device path or a name).
    pub source: String,
    /// Mount point.
    pub target: String,
    /// Filesystem type.
    pub fstype: &'static str,
    /// mount(2) flags.
    pub flags: MsFlags,
    /// Filesystem options.
    pub data: Option<String>,
    /// Directories created (with parents) before mounting; the target is always among them.
    pub create: Vec<String>,
}

/// The disk name (`vda`, `vdb`, ...) of virtio disk number `index` (0 = the root image).
pub fn disk_name(index: usize) -> String {
    let letter = u8::try_from(index)
        .ok()
        .and_then(|i| b'a'.checked_add(i))
        .filter(u8::is_ascii_lowercase)
        .map_or('?', char::from);
    format!("vd{letter}")
}

/// Every disk the guest needs, in disk order.
pub fn required_disks(config: &GuestConfig) -> Vec<String> {
    (0..=config.volumes.len()).map(disk_name).collect()
}

/// The mounts, in order: root image, scratch tmpfs, overlay, API filesystems in the new root,
/// then the volumes (parents before what lies below them).
pub fn plan(config: &GuestConfig) -> Vec<PlannedMount> {
    let upper = format!("{SCRATCH}/upper");
    let work = format!("{SCRATCH}/work");
    let nosuid_nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    let mut mounts = vec![
        PlannedMount {
            purpose: Purpose::RootImage,
            source: format!("/dev/{ROOT_DISK}"),
            target: LOWER.to_owned(),
            fstype: "squashfs",
            flags: MsFlags::MS_RDONLY,
            data: None,
            create: vec![LOWER.to_owned()],
        },
        PlannedMount {
            purpose: Purpose::Scratch,
            source: "tmpfs".to_owned(),
            target: SCRATCH.to_owned(),
            fstype: "tmpfs",
            flags: MsFlags::empty(),
            data: Some("mode=0755".to_owned()),
            create: vec![SCRATCH.to_owned()],
        },
        PlannedMount {
            purpose: Purpose::Overlay,
            source: "overlay".to_owned(),
            target: NEW_ROOT.to_owned(),
            fstype: "overlay",
            flags: MsFlags::empty(),
            data: Some(format!("lowerdir={LOWER},upperdir={upper},workdir={work}")),
            create: vec![upper, work, NEW_ROOT.to_owned()],
        },
    ];
    let api: [(&str, &str, &'static str, MsFlags, Option<&str>); 5] = [
        (
            "proc",
            "/proc",
            "proc",
            nosuid_nodev | MsFlags::MS_NOEXEC,
            None,
        ),
        (
            "sysfs",
            "/sys",
            "sysfs",
            nosuid_nodev | MsFlags::MS_NOEXEC,
            None,
        ),
        (
            "devtmpfs",
            "/dev",
            "devtmpfs",
            MsFlags::MS_NOSUID,
            Some("mode=0755"),
        ),
        ("tmpfs", "/run", "tmpfs", nosuid_nodev, Some("mode=0755")),
        ("tmpfs", "/tmp", "tmpfs", nosuid_nodev, Some("mode=1777")),
    ];
    for (source, path, fstype, flags, data) in api {
        let target = format!("{NEW_ROOT}{path}");
        mounts.push(PlannedMount {
            purpose: Purpose::Api,
            source: source.to_owned(),
            target: target.clone(),
            fstype,
            flags,
            data: data.map(str::to_owned),
            create: vec![target],
        });
    }
    let mut volumes: Vec<(usize, &super::config::Volume)> =
        config.volumes.iter().enumerate().collect();
    // A volume mounted below another one must come after it; the sort is stable, so volumes
    // at the same depth keep the manifest's order.
    volumes.sort_by_key(|(_, v)| v.mount.matches('/').count());
    for (i, volume) in volumes {
        let target = format!("{NEW_ROOT}{}", volume.mount);
        mounts.push(PlannedMount {
            purpose: Purpose::Volume(volume.name.clone()),
            source: format!("/dev/{}", disk_name(i + 1)),
            target: target.clone(),
            fstype: "ext4",
            flags: nosuid_nodev,
            data: None,
            create: vec![target],
        });
    }
    mounts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(volumes: &[(&str, &str)]) -> GuestConfig {
        let mut text = String::from("name = \"w\"\nentrypoint = [\"/bin/w\"]\n");
        for (name, mount) in volumes {
            text.push_str(&format!(
                "[[volume]]\nname = \"{name}\"\nmount = \"{mount}\"\n"
            ));
        }
        GuestConfig::parse(&text).unwrap()
    }

    #[test]
    fn disk_names_follow_the_contract() {
        assert_eq!(disk_name(0), "vda");
        assert_eq!(disk_name(1), "vdb");
        assert_eq!(disk_name(25), "vdz");
        assert_eq!(disk_name(26), "vd?");
        assert_eq!(
            required_disks(&config(&[("a", "/a"), ("b", "/b")])),
            ["vda", "vdb", "vdc"]
        );
    }

    #[test]
    fn root_is_a_read_only_squashfs_under_a_tmpfs_overlay() {
        let plan = plan(&config(&[]));
        let targets: Vec<&str> = plan.iter().map(|m| m.target.as_str()).collect();
        assert_eq!(
            targets,
            [
                LOWER,
                SCRATCH,
                NEW_ROOT,
                "/newroot/proc",
                "/newroot/sys",
                "/newroot/dev",
                "/newroot/run",
                "/newroot/tmp"
            ]
        );
        assert_eq!(plan[0].source, "/dev/vda");
        assert_eq!(plan[0].fstype, "squashfs");
        assert!(plan[0].flags.contains(MsFlags::MS_RDONLY));
        assert_eq!(plan[1].fstype, "tmpfs");
        assert_eq!(
            plan[2].data.as_deref(),
            Some(
                "lowerdir=/run/guest/lower,upperdir=/run/guest/rw/upper,workdir=/run/guest/rw/work"
            )
        );
        assert!(plan[2].create.contains(&"/run/guest/rw/upper".to_owned()));
        for m in &plan {
            assert!(m.create.contains(&m.target), "{m:?}");
        }
    }

    #[test]
    fn volumes_keep_their_disks_and_mount_parents_first() {
        let plan = plan(&config(&[
            ("logs", "/data/logs"),
            ("data", "/data"),
            ("cache", "/cache"),
        ]));
        let volumes: Vec<(&str, &str, &str)> = plan
            .iter()
            .filter_map(|m| match &m.purpose {
                Purpose::Volume(name) => {
                    Some((name.as_str(), m.source.as_str(), m.target.as_str()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            volumes,
            [
                ("data", "/dev/vdc", "/newroot/data"),
                ("cache", "/dev/vdd", "/newroot/cache"),
                ("logs", "/dev/vdb", "/newroot/data/logs"),
            ]
        );
        assert!(plan
            .iter()
            .filter(|m| matches!(m.purpose, Purpose::Volume(_)))
            .all(|m| m.fstype == "ext4"));
        // Volumes come after every API mount.
        let last_api = plan
            .iter()
            .rposition(|m| m.purpose == Purpose::Api)
            .unwrap();
        let first_volume = plan
            .iter()
            .position(|m| matches!(m.purpose, Purpose::Volume(_)))
            .unwrap();
        assert!(last_api < first_volume);
    }
}
