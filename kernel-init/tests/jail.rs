//! The jail, proven from inside: this binary starts itself through the same [`Jail`] set-up the
//! node uses for `vmm` (only the program and the read-only library directories a test binary
//! needs differ) and, as the probe, reports what it can see and do; the assertions run outside.
//!
//! Needs root (the node's PID 1 is root). The memory test runs `jail-probe memory-max`, which
//! needs the memory controller on cgroup v2; on a host that binds it to cgroup v1 that test is
//! reported ignored, with the reason and where the proof runs instead (the workload system test).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use kernel_init::workloads::jail::{self, Jail, JailSpec};

/// Set in the probe's environment: what to probe.
const PROBE: &str = "NULLOS_JAIL_PROBE";

/// A test either ran (and passed: a failure panics) or was ignored, saying why.
type Test = (&'static str, fn() -> Result<(), String>);

fn main() {
    match std::env::var(PROBE).as_deref() {
        Ok("identity") => probe_identity(),
        Ok(other) => panic!("unknown probe {other}"),
        Err(_) => {
            let filter: Vec<String> = std::env::args()
                .skip(1)
                .filter(|a| !a.starts_with('-'))
                .collect();
            let tests: [Test; 2] = [
                (
                    "the_probe_is_unprivileged_alone_and_sees_only_its_root",
                    identity,
                ),
                ("the_probe_cannot_exceed_memory_max", memory),
            ];
            let (mut passed, mut ignored) = (0, 0);
            for (name, test) in tests {
                if filter.iter().all(|f| name.contains(f.as_str())) {
                    println!("test {name} ...");
                    match test() {
                        Ok(()) => {
                            passed += 1;
                            println!("test {name} ... ok");
                        }
                        Err(why) => {
                            ignored += 1;
                            println!("test {name} ... ignored: {why}");
                        }
                    }
                }
            }
            println!("{passed} passed, 0 failed, {ignored} skipped");
        }
    }
}

fn require_root() {
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    assert_eq!(
        uid, 0,
        "the jail tests need root, as the node's init is: run them as root"
    );
}

/// The library directories a dynamically linked test binary needs (the vmm is static).
fn library_dirs() -> Vec<PathBuf> {
    ["/lib", "/lib64", "/usr/lib", "/usr/lib64"]
        .into_iter()
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .collect()
}

/// The first component of an absolute path.
fn top(path: &Path) -> String {
    path.components()
        .nth(1)
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Runs this binary as the probe `what` in a jail (no cgroup) with the descriptors `fds`.
fn run_probe(what: &str, root: &Path, fds: Vec<OwnedFd>, env: &[(&str, String)]) -> Output {
    let program = std::env::current_exe().unwrap();
    let spec = JailSpec {
        id: jail::jail_ids(&["probe"])[0],
        root: root.to_path_buf(),
        program: program.clone(),
        binds: library_dirs(),
        cgroup: None,
        rlimits: jail::rlimits(1 << 20),
        fds,
    };
    let jail = Jail::prepare(spec).unwrap();
    let mut command = Command::new(&program);
    command
        .env_clear()
        .env(PROBE, what)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    jail.apply(&mut command);
    command.output().unwrap()
}

fn report(output: &Output) -> BTreeMap<String, String> {
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "probe failed: {:?}\nstdout: {text}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn identity() -> Result<(), String> {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    // A file of the host's the probe must not see, one it gets as a descriptor, one it must not.
    let secret = dir.path().join("secret");
    std::fs::write(&secret, b"node").unwrap();
    let handed = dir.path().join("handed");
    std::fs::write(&handed, b"handed over").unwrap();
    let handed: OwnedFd = File::open(&handed).unwrap().into();
    let kept = File::open(&secret).unwrap();
    // Another process of the host's, which the probe must not be able to signal.
    let mut other = Command::new("sleep").arg("30").spawn().unwrap();
    let env = [
        ("SECRET", secret.display().to_string()),
        ("HANDED_FD", handed.as_raw_fd().to_string()),
        ("KEPT_FD", kept.as_raw_fd().to_string()),
        ("OTHER_PID", other.id().to_string()),
        ("PARENT_PID", std::process::id().to_string()),
    ];
    let output = run_probe("identity", &root, vec![handed], &env);
    let still_running = other.try_wait().unwrap().is_none();
    let _ = other.kill();
    let _ = other.wait();
    let r = report(&output);
    let get = |k: &str| r.get(k).map_or("<missing>", String::as_str);
    let id = jail::jail_ids(&["probe"])[0].to_string();
    assert_eq!(get("uid"), id);
    assert_eq!(get("gid"), id);
    assert_eq!(get("groups"), "0");
    assert_ne!(get("uid"), "0");
    for set in [
        "effective",
        "permitted",
        "inheritable",
        "bounding",
        "ambient",
    ] {
        assert_eq!(get(set), "0", "capability set {set}: {r:?}");
    }
    assert_eq!(get("no_new_privs"), "1");
    assert_eq!(get("pid"), "1", "PID 1 of its own pid namespace");
    let enoent = libc::ENOENT.to_string();
    let esrch = libc::ESRCH.to_string();
    assert_eq!(get("secret"), enoent, "the host's file is out of sight");
    assert_eq!(get("proc"), enoent, "no /proc");
    assert_eq!(get("write_root"), libc::EROFS.to_string());
    let program = std::env::current_exe().unwrap();
    let mut expected: Vec<String> = library_dirs()
        .iter()
        .chain([&program])
        .map(|p| top(p))
        .collect();
    expected.sort();
    expected.dedup();
    assert_eq!(get("root"), expected.join(","), "only the binds in /");
    assert_eq!(get("handed"), "handed over");
    assert_eq!(
        get("kept"),
        libc::EBADF.to_string(),
        "close-on-exec descriptors stay behind"
    );
    assert_eq!(
        get("kill_other"),
        esrch,
        "another process cannot be signalled"
    );
    assert_eq!(get("kill_parent"), esrch, "the node cannot be signalled");
    assert!(still_running, "the other process survived");
    assert_eq!(get("hostname_set"), libc::EPERM.to_string());
    assert_eq!(get("fsize"), (1u64 << 20).to_string());
    assert_eq!(get("core"), "0");
    assert_eq!(get("nofile"), jail::NOFILE.to_string());
    Ok(())
}

/// The memory.max proof is `jail-probe memory-max` (src/bin/jail_probe.rs: the same jail
/// set-up, a cgroup v2 leaf, a process filling twice its limit). It needs the memory controller
/// on cgroup v2; a host that binds it to cgroup v1 cannot run it, and the test says so (ignored,
/// not passed). The proof then runs inside a node under QEMU, whose kernel has it on cgroup v2:
/// system-tests/tests/workloads.rs, workload `jail`.
fn memory() -> Result<(), String> {
    require_root();
    let output = Command::new(env!("CARGO_BIN_EXE_jail-probe"))
        .arg("memory-max")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stdout.trim();
    match output.status.code() {
        Some(0) => {
            assert!(
                line.starts_with(
                    "jail-probe: memory.max=16777216 held: the jailed process was killed by SIGKILL"
                ),
                "{line}"
            );
            Ok(())
        }
        Some(2)
            if line.contains(": no cgroup v2 hierarchy at")
                || line.contains(": no memory controller in cgroup v2") =>
        {
            Err(format!(
                "{line}; proven instead inside a node under QEMU (system-tests/tests/workloads.rs, \
                 workload `jail`)"
            ))
        }
        _ => panic!("{:?}: {line}\n{stderr}", output.status),
    }
}

fn errno_of(r: i64) -> i64 {
    if r < 0 {
        std::io::Error::last_os_error()
            .raw_os_error()
            .map_or(-1, i64::from)
    } else {
        0
    }
}

fn env_number(name: &str) -> i32 {
    std::env::var(name).unwrap().parse().unwrap()
}

fn probe_identity() {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k}={v}\n"));
    // SAFETY: plain system calls on valid buffers throughout.
    unsafe {
        line("uid", libc::getuid().to_string());
        line("gid", libc::getgid().to_string());
        line(
            "groups",
            libc::getgroups(0, std::ptr::null_mut()).to_string(),
        );
        line("pid", libc::getpid().to_string());
        let header = [0x2008_0522u32, 0];
        let mut data = [0u32; 6];
        libc::syscall(libc::SYS_capget, header.as_ptr(), data.as_mut_ptr());
        line("effective", (data[0] | data[3]).to_string());
        line("permitted", (data[1] | data[4]).to_string());
        line("inheritable", (data[2] | data[5]).to_string());
        let bounding = (0..64).filter(|&c| libc::prctl(libc::PR_CAPBSET_READ, c, 0, 0, 0) == 1);
        line("bounding", bounding.count().to_string());
        let is_set = libc::PR_CAP_AMBIENT_IS_SET;
        let ambient = (0..64).filter(|&c| libc::prctl(libc::PR_CAP_AMBIENT, is_set, c, 0, 0) == 1);
        line("ambient", ambient.count().to_string());
        let nnp = libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0);
        line("no_new_privs", nnp.to_string());
        let other = env_number("OTHER_PID");
        let r = libc::kill(other, libc::SIGTERM);
        line("kill_other", errno_of(r.into()).to_string());
        let parent = env_number("PARENT_PID");
        line(
            "kill_parent",
            errno_of(libc::kill(parent, 0).into()).to_string(),
        );
        let r = libc::sethostname(b"jail".as_ptr().cast(), 4);
        line("hostname_set", errno_of(r.into()).to_string());
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        for (key, resource) in [
            ("fsize", libc::RLIMIT_FSIZE),
            ("core", libc::RLIMIT_CORE),
            ("nofile", libc::RLIMIT_NOFILE),
        ] {
            libc::getrlimit(resource, &mut limit);
            line(key, limit.rlim_cur.to_string());
        }
        let kept = env_number("KEPT_FD");
        let r = libc::fcntl(kept, libc::F_GETFD);
        line("kept", errno_of(r.into()).to_string());
    }
    let os_errno = |r: std::io::Result<()>| {
        r.err()
            .and_then(|e| e.raw_os_error())
            .unwrap_or(0)
            .to_string()
    };
    let secret = std::env::var("SECRET").unwrap();
    line("secret", os_errno(std::fs::metadata(secret).map(drop)));
    line("proc", os_errno(std::fs::metadata("/proc/1").map(drop)));
    line("write_root", os_errno(std::fs::write("/x", b"x")));
    let mut root: Vec<String> = std::fs::read_dir("/")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    root.sort();
    line("root", root.join(","));
    // SAFETY: the descriptor was handed over for this probe and is taken once.
    let mut file = File::from(unsafe { OwnedFd::from_raw_fd(env_number("HANDED_FD")) });
    let mut text = String::new();
    file.read_to_string(&mut text).unwrap();
    line("handed", text);
    std::io::stdout().write_all(out.as_bytes()).unwrap();
}
