//! Reading a running monitor's memory and jail from the node's `/proc` (the figures are computed
//! by [`crate::memory`]).

use std::path::Path;
use std::time::{Duration, Instant};

use kernel_init::workloads::jail::observe;

use crate::memory::{
    descendants, overhead, parse_cpu_stat, parse_ppid, parse_rollup, parse_smaps, pss_overhead,
    CpuStat, Overhead, PssOverhead, Rollup,
};

/// A figure that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    /// A `/proc` file could not be read.
    #[error("read {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A `/proc` file did not hold what it should.
    #[error("{path}: no {what}")]
    Parse {
        /// The file.
        path: String,
        /// What was missing.
        what: &'static str,
    },
    /// No anonymous mapping of the guest's size: guest RAM cannot be told apart.
    #[error("no anonymous mapping of {guest_mib} MiB in {path} ({mappings} mappings)")]
    NoGuestRam {
        /// The smaps file.
        path: String,
        /// The guest's memory.
        guest_mib: u64,
        /// How many mappings it had.
        mappings: usize,
    },
    /// The jail's waiting parent has no child (the vmm did not start, or ended).
    #[error("no process below the jail's waiting parent {waiter} after {waited:?}")]
    NoVmm {
        /// The waiting parent.
        waiter: u32,
        /// How long we looked.
        waited: Duration,
    },
}

fn read(path: String) -> Result<(String, String), MeasureError> {
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok((path, text)),
        Err(source) => Err(MeasureError::Read { path, source }),
    }
}

/// Every process of the node as `(pid, parent pid)`; processes that end while being read are
/// left out.
pub fn process_table() -> Vec<(u32, u32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            Some((pid, parse_ppid(&stat)?))
        })
        .collect()
}

/// The vmm a jail's waiting parent `waiter` started: its child (it has exactly one), waited
/// for up to `limit`.
pub fn vmm_of(waiter: u32, limit: Duration) -> Result<u32, MeasureError> {
    let started = Instant::now();
    loop {
        let child = process_table()
            .into_iter()
            .find_map(|(pid, parent)| (parent == waiter).then_some(pid));
        if let Some(pid) = child {
            return Ok(pid);
        }
        if started.elapsed() >= limit {
            return Err(MeasureError::NoVmm {
                waiter,
                waited: limit,
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `/proc/<pid>/smaps_rollup`.
pub fn rollup(pid: u32) -> Result<Rollup, MeasureError> {
    let (path, text) = read(format!("/proc/{pid}/smaps_rollup"))?;
    parse_rollup(&text).ok_or(MeasureError::Parse { path, what: "Pss" })
}

/// The RSS overhead of the monitor process `pid` (Firecracker's method).
pub fn rss(pid: u32, guest_mib: u64) -> Result<Overhead, MeasureError> {
    let (path, text) = read(format!("/proc/{pid}/smaps"))?;
    let mappings = parse_smaps(&text);
    overhead(&mappings, guest_mib).ok_or(MeasureError::NoGuestRam {
        path,
        guest_mib,
        mappings: mappings.len(),
    })
}

/// The PSS overhead of the monitor `pid` and every process below it.
pub fn pss(pid: u32, guest_mib: u64) -> Result<PssOverhead, MeasureError> {
    let (path, text) = read(format!("/proc/{pid}/smaps"))?;
    let mappings = parse_smaps(&text);
    let rollups = descendants(pid, &process_table())
        .into_iter()
        .map(rollup)
        .collect::<Result<Vec<Rollup>, MeasureError>>()?;
    pss_overhead(&rollups, &mappings, guest_mib).ok_or(MeasureError::NoGuestRam {
        path,
        guest_mib,
        mappings: mappings.len(),
    })
}

/// The throttling counters of `cgroup`; `None` when they cannot be read (no cpu controller).
pub fn cpu_stat(cgroup: &Path) -> Option<CpuStat> {
    parse_cpu_stat(&std::fs::read_to_string(cgroup.join("cpu.stat")).ok()?)
}

/// How the node sees the jailed `vmm` (whose waiting parent is `waiter`): with a cgroup, the
/// node's own description ([`observe::describe`], what it logs as `workload <name> jailed`);
/// without, the same fields from `/proc/<vmm>/status`, `cgroup=none`. `None` if the vmm was
/// not seen under its seccomp filter within `limit`.
pub fn jail_view(cgroup: Option<&Path>, waiter: u32, vmm: u32, limit: Duration) -> Option<String> {
    if let Some(cgroup) = cgroup {
        return observe::describe(cgroup, waiter, limit);
    }
    let started = Instant::now();
    loop {
        let status = std::fs::read_to_string(format!("/proc/{vmm}/status")).ok()?;
        let p = observe::parse_status(&status)?;
        if p.seccomp == "2" {
            let ns = own_namespaces(vmm);
            return Some(format!(
                "pid={vmm} uid={} gid={} cap_eff={} no_new_privs={} seccomp={} ns={ns} cgroup=none",
                p.uid, p.gid, p.cap_eff, p.no_new_privs, p.seccomp
            ));
        }
        if started.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The namespaces the jail makes in which `pid` differs from this process.
fn own_namespaces(pid: u32) -> String {
    ["mnt", "pid", "ipc", "uts", "net"]
        .into_iter()
        .filter(|ns| {
            let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).ok();
            let ours = std::fs::read_link(format!("/proc/self/ns/{ns}")).ok();
            theirs.is_some() && theirs != ours
        })
        .collect::<Vec<_>>()
        .join(",")
}
