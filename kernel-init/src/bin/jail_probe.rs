//! `jail-probe`: proves, wherever it runs, that a jailed process cannot exceed its cgroup's
//! `memory.max`. Not part of any node image: the tests build it.
//!
//! `jail-probe memory-max` starts itself through the node's own jail set-up
//! (`kernel_init::workloads::jail`, the code path of every `vmm`) in a cgroup v2 leaf with a
//! small `memory.max`, as `jail-probe touch <MiB>`, which fills twice that much memory a MiB at a
//! time. The proof holds when the jailed toucher was killed by SIGKILL before it touched it all
//! and the cgroup's `memory.events` counted the OOM kill. It prints one line and exits 0 when the
//! proof holds, 1 when it does not, 2 when it cannot be made here (no cgroup v2 memory
//! controller, not root):
//!
//! ```text
//! jail-probe: memory.max=16777216 held: the jailed process was killed by SIGKILL after 13 of 32 MiB (oom_kill 1)
//! ```
//!
//! Where `/sys/fs/cgroup` is an empty directory (sysfs's mount point, in a micro-VM guest), it
//! mounts cgroup v2 there first.
//! `kernel-init/tests/jail.rs` runs it on the host; `system-tests/tests/workloads.rs` runs it as
//! a workload inside a node under QEMU, whose kernel binds the memory controller to cgroup v2.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use kernel_init::workloads::jail::{self, CgroupLimits, Jail, JailSpec};

/// The limit the proof sets.
const MEMORY_MAX_MIB: u64 = 16;
/// What the jailed process tries to fill: twice the limit.
const TOUCH_MIB: u64 = 2 * MEMORY_MAX_MIB;
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["memory-max"] => match prove_memory_max() {
            Ok(Proof::Held(line)) => {
                println!("jail-probe: {line}");
                ExitCode::SUCCESS
            }
            Ok(Proof::Broken(line)) => {
                println!("jail-probe: memory.max NOT enforced: {line}");
                ExitCode::from(1)
            }
            Err(why) => {
                println!("jail-probe: cannot prove memory.max here: {why}");
                ExitCode::from(2)
            }
        },
        ["touch", mib] => match mib.parse() {
            Ok(mib) => touch(mib),
            Err(_) => usage(),
        },
        _ => usage(),
    }
}

fn usage() -> ExitCode {
    eprintln!("usage: jail-probe memory-max");
    ExitCode::from(2)
}

/// The jailed side: fills `mib` MiB, one MiB at a time, saying how far it got.
fn touch(mib: u64) -> ExitCode {
    let mut blocks = Vec::new();
    let mut out = std::io::stdout();
    for i in 1..=mib {
        // Filled, so every page is charged to the cgroup.
        blocks.push(vec![1u8; 1 << 20]);
        if writeln!(out, "touched {i}")
            .and_then(|()| out.flush())
            .is_err()
        {
            return ExitCode::from(3);
        }
    }
    let _ = writeln!(out, "touched all {}", blocks.len());
    ExitCode::SUCCESS
}

enum Proof {
    Held(String),
    Broken(String),
}

/// A cgroup v2 hierarchy with the memory controller at [`CGROUP_ROOT`], mounted if there is
/// none.
fn cgroup_v2_memory() -> Result<(), String> {
    let controllers = Path::new(CGROUP_ROOT).join("cgroup.controllers");
    // Only on an empty mount point (sysfs's own, in a guest): a host's cgroup v1 tree is left
    // as it is.
    let empty = std::fs::read_dir(CGROUP_ROOT).is_ok_and(|mut d| d.next().is_none());
    if empty {
        let status = nix::mount::mount(
            Some("cgroup2"),
            CGROUP_ROOT,
            Some("cgroup2"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        );
        status.map_err(|e| format!("no cgroup v2 at {CGROUP_ROOT} and mounting one: {e}"))?;
    }
    if !controllers.exists() {
        return Err(format!(
            "no cgroup v2 hierarchy at {CGROUP_ROOT} (this kernel's controllers are on cgroup v1 \
             there)"
        ));
    }
    let text = std::fs::read_to_string(&controllers)
        .map_err(|e| format!("{}: {e}", controllers.display()))?;
    if text.split_whitespace().any(|c| c == "memory") {
        Ok(())
    } else {
        Err(format!(
            "no memory controller in cgroup v2 ({}: {:?}): the kernel binds it to cgroup v1",
            controllers.display(),
            text.trim()
        ))
    }
}

/// The library directories a dynamically linked build of this program needs in its jail (a
/// static build, as in a workload, needs none).
fn library_dirs() -> Vec<PathBuf> {
    ["/lib", "/lib64", "/usr/lib", "/usr/lib64"]
        .into_iter()
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .collect()
}

/// `oom_kill <n>` of a cgroup's `memory.events`.
fn oom_kills(cgroup: &Path) -> Result<u64, String> {
    let path = cgroup.join("memory.events");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| format!("{}: no oom_kill count in {text:?}", path.display()))
}

fn prove_memory_max() -> Result<Proof, String> {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        return Err("not root (the node's init, which sets up jails, is)".into());
    }
    cgroup_v2_memory()?;
    let pid = std::process::id();
    let cgroup = Path::new(CGROUP_ROOT)
        .join("nullos-probe")
        .join(format!("memory-{pid}"));
    let root = std::env::temp_dir().join(format!("jail-probe-{pid}"));
    let program = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let limits = CgroupLimits {
        memory_max: MEMORY_MAX_MIB << 20,
        pids_max: 16,
        cpu_quota_us: jail::CPU_PERIOD_US,
    };
    let spec = JailSpec {
        id: jail::jail_ids(&["jail-probe"])[0],
        root: root.clone(),
        program: program.clone(),
        binds: library_dirs(),
        cgroup: Some((cgroup.clone(), limits)),
        rlimits: jail::rlimits(1 << 20),
        fds: Vec::new(),
    };
    let jail = Jail::prepare(spec).map_err(|e| format!("prepare the jail: {e}"))?;
    let mut command = Command::new(&program);
    command
        .args(["touch", &TOUCH_MIB.to_string()])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    jail.apply(&mut command);
    let mut child = command
        .spawn()
        .map_err(|e| format!("start the jailed process: {e}"))?;
    let mut touched = 0;
    let mut all = false;
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("touched all") {
                all = true;
            } else if let Some(n) = line.strip_prefix("touched ") {
                touched = n.parse().unwrap_or(touched);
            }
        }
    }
    let status = child.wait().map_err(|e| format!("wait: {e}"))?;
    let kills = oom_kills(&cgroup);
    let _ = std::fs::remove_dir(&cgroup);
    let _ = std::fs::remove_dir(&root);
    let kills = kills?;
    // The jail's waiting parent exits with 128 + N when its child is killed by signal N.
    let killed = status.code() == Some(128 + libc::SIGKILL);
    let limit = format!("memory.max={}", limits.memory_max);
    let ended = if killed {
        "was killed by SIGKILL".to_owned()
    } else {
        format!("ended with {status}")
    };
    let detail =
        format!("the jailed process {ended} after {touched} of {TOUCH_MIB} MiB (oom_kill {kills})");
    if killed && !all && touched < TOUCH_MIB && kills >= 1 {
        Ok(Proof::Held(format!("{limit} held: {detail}")))
    } else {
        Ok(Proof::Broken(format!("{limit}: {detail}")))
    }
}
