//! The node's own view of a jailed vmm, for its console line: read from `/proc` of the vmm
//! process (found in its cgroup), not taken from the jail's intent.

use std::path::Path;
use std::time::{Duration, Instant};

/// What `/proc/<pid>/status` says of a process's privileges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Privileges {
    /// Real uid.
    pub uid: String,
    /// Real gid.
    pub gid: String,
    /// `CapEff`, hex.
    pub cap_eff: String,
    /// `NoNewPrivs`.
    pub no_new_privs: String,
    /// `Seccomp` mode (2: filter).
    pub seccomp: String,
}

/// Parses the fields of [`Privileges`] from a `/proc/<pid>/status` text.
pub fn parse_status(text: &str) -> Option<Privileges> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next())
            .map(str::to_owned)
    };
    Some(Privileges {
        uid: field("Uid")?,
        gid: field("Gid")?,
        cap_eff: field("CapEff")?,
        no_new_privs: field("NoNewPrivs")?,
        seccomp: field("Seccomp")?,
    })
}

/// The cgroup v2 path in a `/proc/<pid>/cgroup` text (`0::<path>`).
pub fn parse_cgroup(text: &str) -> Option<&str> {
    text.lines().find_map(|l| l.strip_prefix("0::"))
}

/// The namespaces, of those the jail makes, in which `pid` differs from the node.
fn own_namespaces(pid: &str) -> Vec<&'static str> {
    ["mnt", "pid", "ipc", "uts", "net"]
        .into_iter()
        .filter(|ns| {
            let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).ok();
            let ours = std::fs::read_link(format!("/proc/self/ns/{ns}")).ok();
            theirs.is_some() && theirs != ours
        })
        .collect()
}

/// Waits (up to `limit`) for the vmm in `cgroup` (any process there but `waiter`, the jail's
/// waiting parent) to be under its seccomp filter, then describes it:
/// `pid=<n> uid=<u> gid=<g> cap_eff=<hex> no_new_privs=<0|1> seccomp=<mode> ns=<list>
/// cgroup=<path>`. `None` if it was not seen (it ended first).
pub fn describe(cgroup: &Path, waiter: u32, limit: Duration) -> Option<String> {
    let started = Instant::now();
    loop {
        if let Some(text) = describe_once(cgroup, waiter) {
            return Some(text);
        }
        if started.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn describe_once(cgroup: &Path, waiter: u32) -> Option<String> {
    let procs = std::fs::read_to_string(cgroup.join("cgroup.procs")).ok()?;
    let waiter = waiter.to_string();
    let pid = procs.lines().find(|p| *p != waiter)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let p = parse_status(&status)?;
    if p.seccomp != "2" {
        return None;
    }
    let cgroup_text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let in_cgroup = parse_cgroup(&cgroup_text)?;
    Some(format!(
        "pid={pid} uid={} gid={} cap_eff={} no_new_privs={} seccomp={} ns={} cgroup={in_cgroup}",
        p.uid,
        p.gid,
        p.cap_eff,
        p.no_new_privs,
        p.seccomp,
        own_namespaces(pid).join(","),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_cgroup_are_read_from_proc_texts() {
        let status = "Name:\tvmm\nUid:\t100123\t100123\t100123\t100123\n\
                      Gid:\t100123\t100123\t100123\t100123\nCapEff:\t0000000000000000\n\
                      NoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t2\n";
        assert_eq!(
            parse_status(status),
            Some(Privileges {
                uid: "100123".into(),
                gid: "100123".into(),
                cap_eff: "0000000000000000".into(),
                no_new_privs: "1".into(),
                seccomp: "2".into(),
            })
        );
        assert_eq!(parse_status("Uid:\t0\n"), None);
        assert_eq!(parse_cgroup("0::/nullos/hello\n"), Some("/nullos/hello"));
        assert_eq!(parse_cgroup("1:name=systemd:/\n"), None);
    }

    #[test]
    fn this_process_is_described_from_proc() {
        // Not under seccomp: never described, and the wait is bounded.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("cgroup.procs"),
            format!("1\n{}\n", std::process::id()),
        )
        .unwrap();
        let started = Instant::now();
        assert_eq!(describe(dir.path(), 1, Duration::from_millis(120)), None);
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
