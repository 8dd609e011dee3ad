//! The jail of each micro-VM's `vmm` (docs/VMM.md, "The jail"): the decisions, pure and
//! unit-tested here; the system calls that carry them out between fork and exec in [`enter`].
//!
//! A `vmm` runs under its own unprivileged uid/gid ([`jail_ids`]), with no capabilities and
//! `no_new_privs`, in new mount, pid, ipc and uts namespaces, inside an empty read-only tmpfs
//! root holding only its own binary and `/etc/resolv.conf` ([`mount_ops`]), with its files
//! handed over as open descriptors, in a cgroup v2 leaf ([`CgroupLimits`]) and under rlimits
//! ([`rlimits`]). It keeps the node's network namespace: the user-mode network proxies the
//! guest's connections through the node's own sockets.

pub mod enter;
pub mod launch;
pub mod observe;

use std::path::{Component, Path, PathBuf};

pub use enter::{Jail, JailError, JailSpec};

/// The first uid/gid of the jails.
pub const ID_BASE: u32 = 100_000;
/// How many uids/gids the jails use, from [`ID_BASE`].
pub const ID_RANGE: u32 = 65_536;
/// Where the per-VM cgroups go (cgroup v2, mounted by `init`).
pub const CGROUP_PARENT: &str = "/sys/fs/cgroup/nullos";
/// Where the jails' root directories are mounted (each an empty tmpfs in the VM's own mount
/// namespace; the directory itself stays empty for the node).
pub const JAIL_DIR: &str = "/run/nullos/jail";
/// Memory a VM's cgroup may use beyond guest RAM: the vmm itself (≤ 2 MiB resident, `make
/// bench`), the user-mode network's buffers (bounded separately), page tables and the page cache
/// of disk I/O (reclaimable), with room to spare: exceeding `memory.max` kills the VM.
pub const MEMORY_OVERHEAD_MIB: u64 = 160;
/// Tasks a VM's cgroup may hold beyond one per vCPU: the vmm's main and network threads, the
/// jail's waiting parent, and spare.
pub const PIDS_OVERHEAD: u32 = 16;
/// The `cpu.max` period, in microseconds.
pub const CPU_PERIOD_US: u64 = 100_000;
/// CPU time per period a VM's cgroup may use beyond one CPU per vCPU: the vmm's own threads (the
/// main thread's devices and the network thread's user-mode TCP/IP) run beside the vCPUs and
/// share the cgroup. Without it a busy 1-vCPU guest starves its own network and disk service
/// (`make bench` saw the vmm throttled in most periods of a TCP run); half a CPU bounds what a
/// VM can take beyond what it asked for.
pub const VMM_THREADS_CPU_US: u64 = CPU_PERIOD_US / 2;
/// The vmm's open descriptor limit (KVM objects, eventfds, disks, the guest's connections).
pub const NOFILE: u64 = 4096;

/// The jail's uid/gid for each of `names` (the verified workloads, in any order): FNV-1a of
/// the name within [`ID_RANGE`] above [`ID_BASE`], never 0, stable across boots; two names that
/// collide are separated by taking the next free id, in name order, so every VM of a node runs
/// under an id of its own.
pub fn jail_ids(names: &[&str]) -> Vec<u32> {
    let mut sorted: Vec<(usize, &str)> = names.iter().copied().enumerate().collect();
    sorted.sort_by(|a, b| a.1.cmp(b.1).then(a.0.cmp(&b.0)));
    let mut taken = std::collections::BTreeSet::new();
    let mut ids = vec![0; names.len()];
    for (index, name) in sorted {
        let mut offset = fnv1a(name.as_bytes()) % ID_RANGE;
        while !taken.insert(offset) {
            offset = (offset + 1) % ID_RANGE;
        }
        if let Some(id) = ids.get_mut(index) {
            *id = ID_BASE + offset;
        }
    }
    ids
}

/// 32-bit FNV-1a: small, stable, and spreads short names well.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |hash, &b| {
        (hash ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// What a VM's cgroup allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupLimits {
    /// `memory.max`, bytes: guest RAM plus [`MEMORY_OVERHEAD_MIB`].
    pub memory_max: u64,
    /// `pids.max`: one task per vCPU plus [`PIDS_OVERHEAD`].
    pub pids_max: u32,
    /// `cpu.max` quota per [`CPU_PERIOD_US`], microseconds: one CPU per vCPU plus
    /// [`VMM_THREADS_CPU_US`].
    pub cpu_quota_us: u64,
}

impl CgroupLimits {
    /// The limits of a VM with `memory_mib` of guest RAM and `vcpus` vCPUs.
    pub fn new(memory_mib: u32, vcpus: u8) -> CgroupLimits {
        CgroupLimits {
            memory_max: (u64::from(memory_mib) + MEMORY_OVERHEAD_MIB) << 20,
            pids_max: u32::from(vcpus) + PIDS_OVERHEAD,
            cpu_quota_us: u64::from(vcpus.max(1)) * CPU_PERIOD_US + VMM_THREADS_CPU_US,
        }
    }

    /// The control files and what is written to them, in order.
    pub fn files(&self) -> [(&'static str, String); 3] {
        [
            ("memory.max", self.memory_max.to_string()),
            ("pids.max", self.pids_max.to_string()),
            ("cpu.max", format!("{} {CPU_PERIOD_US}", self.cpu_quota_us)),
        ]
    }
}

/// The cgroup directory of the workload `name`.
pub fn cgroup_dir(name: &str) -> PathBuf {
    Path::new(CGROUP_PARENT).join(name)
}

/// The resource limits of a jailed vmm: `(resource, limit)`, soft and hard alike. `CORE` 0 (a
/// crashing vmm leaves no image of guest memory), `NOFILE` [`NOFILE`], `FSIZE` the largest disk
/// it writes (a write past it fails instead of growing a file on the node).
pub fn rlimits(largest_writable_disk: u64) -> [(Rlimit, u64); 3] {
    [
        (Rlimit::Core, 0),
        (Rlimit::Nofile, NOFILE),
        (Rlimit::Fsize, largest_writable_disk),
    ]
}

/// The limits [`rlimits`] sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rlimit {
    /// `RLIMIT_CORE`.
    Core,
    /// `RLIMIT_NOFILE`.
    Nofile,
    /// `RLIMIT_FSIZE`.
    Fsize,
}

/// One step of building a jail's root, on paths under the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountOp {
    /// Create a directory.
    Dir(PathBuf),
    /// Create an empty file (a mount point for a file).
    File(PathBuf),
    /// Bind `source` read-only (and nosuid, nodev) onto `target`.
    BindReadOnly {
        /// The node's file or directory.
        source: PathBuf,
        /// Its place under the root.
        target: PathBuf,
    },
}

/// A path that cannot be placed in a jail: not absolute, or with `..`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}: not a plain absolute path")]
pub struct BadPath(pub PathBuf);

/// The steps that give the jail's `root` the node's `binds` (each `(path, is_dir)`) at the same
/// paths, read-only: the parent directories, then a mount point, then the bind.
pub fn mount_ops(root: &Path, binds: &[(PathBuf, bool)]) -> Result<Vec<MountOp>, BadPath> {
    let mut ops = Vec::new();
    for (source, is_dir) in binds {
        let mut target = root.to_path_buf();
        let mut components = source.components().peekable();
        if components.next() != Some(Component::RootDir) {
            return Err(BadPath(source.clone()));
        }
        while let Some(component) = components.next() {
            let Component::Normal(part) = component else {
                return Err(BadPath(source.clone()));
            };
            target.push(part);
            let last = components.peek().is_none();
            let op = if !last || *is_dir {
                MountOp::Dir(target.clone())
            } else {
                MountOp::File(target.clone())
            };
            if !ops.contains(&op) {
                ops.push(op);
            }
        }
        if target == root {
            return Err(BadPath(source.clone()));
        }
        ops.push(MountOp::BindReadOnly {
            source: source.clone(),
            target,
        });
    }
    Ok(ops)
}

/// The node's console line for a jailed VM (docs/CONSOLE.md), with what the node saw of the
/// vmm process ([`observe::describe`]).
pub fn jailed_line(name: &str, observed: Option<&str>) -> String {
    match observed {
        Some(observed) => format!("workload {name} jailed {observed}"),
        None => format!("workload {name} jailed; ended before the node could observe it"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unprivileged_stable_in_range_and_distinct() {
        let ids = jail_ids(&["hello", "panic", "fail"]);
        assert_eq!(ids, jail_ids(&["hello", "panic", "fail"]));
        assert_eq!(ids[0], jail_ids(&["hello"])[0], "one name, one id");
        for id in &ids {
            assert!((ID_BASE..ID_BASE + ID_RANGE).contains(id), "{id}");
        }
        assert_ne!(ids[0], ids[1]);
        assert_ne!(ids[1], ids[2]);
        // The same name twice (cannot happen: names are folder names) still gets two ids, and a
        // collision is resolved the same way whatever the input order.
        let twice = jail_ids(&["a", "a"]);
        assert_eq!(twice[1], twice[0] + 1);
        let many: Vec<String> = (0..2000).map(|i| format!("w{i}")).collect();
        let names: Vec<&str> = many.iter().map(String::as_str).collect();
        let mut ids = jail_ids(&names);
        let mut reversed_names = names.clone();
        reversed_names.reverse();
        let mut reversed = jail_ids(&reversed_names);
        reversed.reverse();
        assert_eq!(ids, reversed);
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 2000);
        // FNV-1a known answers.
        assert_eq!(fnv1a(b""), 0x811c_9dc5);
        assert_eq!(fnv1a(b"a"), 0xe40c_292c);
    }

    #[test]
    fn cgroup_limits_follow_the_manifest() {
        let limits = CgroupLimits::new(128, 2);
        assert_eq!(limits.memory_max, (128 + 160) << 20);
        assert_eq!(
            limits.files(),
            [
                ("memory.max", "301989888".to_owned()),
                ("pids.max", "18".to_owned()),
                ("cpu.max", "250000 100000".to_owned()),
            ]
        );
        assert_eq!(
            CgroupLimits::new(16, 0).cpu_quota_us,
            CPU_PERIOD_US + VMM_THREADS_CPU_US
        );
        assert_eq!(
            cgroup_dir("hello"),
            Path::new("/sys/fs/cgroup/nullos/hello")
        );
    }

    #[test]
    fn rlimits_forbid_cores_and_growing_files() {
        assert_eq!(
            rlimits(64 << 20),
            [
                (Rlimit::Core, 0),
                (Rlimit::Nofile, NOFILE),
                (Rlimit::Fsize, 64 << 20)
            ]
        );
    }

    #[test]
    fn the_root_gets_parents_mount_points_and_read_only_binds() {
        let root = Path::new("/run/nullos/jail/hello");
        let ops = mount_ops(
            root,
            &[
                ("/bin/vmm".into(), false),
                ("/etc/resolv.conf".into(), false),
                ("/usr/lib".into(), true),
                ("/usr/lib64".into(), true),
            ],
        )
        .unwrap();
        let dir = |p: &str| MountOp::Dir(root.join(p));
        let bind = |p: &str| MountOp::BindReadOnly {
            source: Path::new("/").join(p),
            target: root.join(p),
        };
        assert_eq!(
            ops,
            [
                dir("bin"),
                MountOp::File(root.join("bin/vmm")),
                bind("bin/vmm"),
                dir("etc"),
                MountOp::File(root.join("etc/resolv.conf")),
                bind("etc/resolv.conf"),
                dir("usr"),
                dir("usr/lib"),
                bind("usr/lib"),
                dir("usr/lib64"),
                bind("usr/lib64"),
            ]
        );
        for bad in ["relative", "/a/../etc", "/"] {
            assert_eq!(
                mount_ops(root, &[(bad.into(), false)]),
                Err(BadPath(bad.into()))
            );
        }
    }

    #[test]
    fn the_jailed_line() {
        assert_eq!(
            jailed_line("hello", Some("pid=7 uid=100001")),
            "workload hello jailed pid=7 uid=100001"
        );
        assert_eq!(
            jailed_line("hello", None),
            "workload hello jailed; ended before the node could observe it"
        );
    }
}
