//! One run of a workload's micro-VM: the `vmm` command line, the console pipes turned into
//! `[<name>] <line>` log lines, and the VM's end in the words of the exit line.

use std::ffi::OsString;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use super::console_limit::{Admit, LineLimit, LINES_PER_SECOND};
use super::console_tail::SharedTail;
use interfaces::egress::Rule;
use interfaces::vm::{Disk, Serial, VmSpec, VmmExit};
use nix::sys::wait::WaitStatus;
use trust::{ArtifactRef, WorkloadManifest};

// The monitor binary and the guest kernel (the node's own, verified with the release) in the
// node image; the guest network on the command line (fixed for every micro-VM; parsed by the
// guest role).
pub use interfaces::net::KERNEL_IP_PARAM as GUEST_IP;
pub use interfaces::paths::{GUEST_KERNEL, VMM};

/// Longest console line kept; longer ones are split.
const MAX_LINE: usize = 4096;

/// Everything one VM run needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmPlan {
    /// Workload name.
    pub name: String,
    /// The guest initramfs for this workload.
    pub initrd: PathBuf,
    /// The verified root image.
    pub root: PathBuf,
    /// The volume images, in the manifest's order.
    pub volumes: Vec<PathBuf>,
    /// vCPUs.
    pub vcpus: u8,
    /// Guest memory.
    pub memory_mib: u32,
    /// Whether the guest gets the network.
    pub network: bool,
    /// The root image's size and digest, checked again on the descriptor the vmm gets.
    pub root_ref: ArtifactRef,
    /// The uid and gid of the vmm's jail ([`super::jail::jail_ids`]).
    pub jail_id: u32,
    /// The node's egress policy for the network: `--net-allow` and `--net-deny` rules.
    pub egress: Egress,
    /// The grid contract the workload belongs to (its id in hex), named in its console lines;
    /// `None` for a workload baked into the image.
    pub contract: Option<String>,
}

/// The node's egress rules for its workloads' user-mode network (from `node.toml`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Egress {
    /// Non-public destinations the node opens (`egress_allow`).
    pub allow: Vec<Rule>,
    /// Destinations always refused (the control endpoint).
    pub deny: Vec<Rule>,
}

impl VmPlan {
    /// The plan for a verified manifest.
    pub fn new(
        manifest: &WorkloadManifest,
        initrd: PathBuf,
        root: PathBuf,
        volumes: Vec<PathBuf>,
    ) -> VmPlan {
        VmPlan {
            name: manifest.name.clone(),
            initrd,
            root,
            volumes,
            vcpus: manifest.vcpus,
            memory_mib: manifest.memory_mib,
            network: manifest.network,
            root_ref: manifest.root,
            // Distinct from the other workloads' once `workloads::run` has seen them all.
            jail_id: super::jail::jail_ids(&[manifest.name.as_str()])
                .first()
                .copied()
                .unwrap_or(super::jail::ID_BASE),
            egress: Egress::default(),
            contract: None,
        }
    }

    /// The guest kernel's command line. The micro-VM has no PCI bus (its devices are virtio-mmio,
    /// described by ACPI), so `pci=off` spares the kernel probing for one.
    pub fn cmdline(&self) -> String {
        let mut cmdline = String::from("console=ttyS0 quiet panic=-1 pci=off nullos.role=guest");
        if self.network {
            cmdline.push(' ');
            cmdline.push_str(GUEST_IP);
        }
        cmdline
    }

    /// What `vmm` runs: the root image first (the guest's /dev/vda), then the volumes.
    pub fn spec(&self) -> VmSpec {
        let disk = |path: &PathBuf, read_only| Disk {
            path: path.clone(),
            read_only,
        };
        let mut disks = vec![disk(&self.root, true)];
        disks.extend(self.volumes.iter().map(|v| disk(v, false)));
        VmSpec {
            kernel: GUEST_KERNEL.into(),
            initrd: Some(self.initrd.clone()),
            cmdline: self.cmdline(),
            memory_mib: u64::from(self.memory_mib),
            vcpus: u32::from(self.vcpus),
            disks,
            net: self.network,
            net_allow: self.egress.allow.clone(),
            net_deny: self.egress.deny.clone(),
            serial: Serial::Stdout,
            kvm: None,
        }
    }

    /// `vmm`'s arguments for [`VmPlan::spec`].
    pub fn args(&self) -> Vec<OsString> {
        self.spec().to_args()
    }
}

/// How a VM run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmExit {
    /// The code the guest reported, if it did.
    pub guest_code: Option<u8>,
    /// The vmm's exit status (128+N when killed by signal N).
    pub vmm_status: i32,
}

impl VmExit {
    /// From the reaped status and the code parsed from stderr.
    pub fn new(status: WaitStatus, guest_code: Option<u8>) -> VmExit {
        let vmm_status = match status {
            WaitStatus::Exited(_, code) => code,
            WaitStatus::Signaled(_, signal, _) => 128 + signal as i32,
            _ => 1,
        };
        VmExit {
            guest_code,
            vmm_status,
        }
    }

    /// The code that decides restarts: the guest's, else the vmm's status.
    pub fn code(&self) -> i32 {
        self.guest_code.map_or(self.vmm_status, i32::from)
    }

    /// The exit line's tail after `code=`: `<n>`, or `<status> vm=<what>` without a guest code.
    pub fn describe(&self) -> String {
        match self.guest_code {
            Some(code) => code.to_string(),
            None => {
                // 1, killed by a signal, anything undocumented: vmm-error.
                let what = VmmExit::from_code(self.vmm_status)
                    .map_or(VmmExit::VmmError.word(), VmmExit::word);
                format!("{} vm={what}", self.vmm_status)
            }
        }
    }
}

// The guest code in a vmm stderr line, if it is the exit code line.
pub use interfaces::vm::parse_guest_exit_code as parse_exit_code;

/// Splits a byte stream into bounded lines (`\r` dropped, invalid UTF-8 replaced).
#[derive(Debug, Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Adds bytes; returns the lines they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        for &b in bytes {
            if b == b'\n' {
                lines.push(self.take());
            } else if b != b'\r' {
                self.pending.push(b);
                if self.pending.len() >= MAX_LINE {
                    lines.push(self.take());
                }
            }
        }
        lines
    }

    /// The last, unterminated line, if any.
    pub fn finish(mut self) -> Option<String> {
        (!self.pending.is_empty()).then(|| self.take())
    }

    fn take(&mut self) -> String {
        let line = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        line
    }
}

/// A running VM.
#[derive(Debug)]
pub struct RunningVm {
    /// The vmm's pid.
    pub pid: u32,
    status: Receiver<WaitStatus>,
    stdout: Option<JoinHandle<()>>,
    stderr: Option<JoinHandle<Option<u8>>>,
}

impl RunningVm {
    /// Starts `vmm` for the plan in its jail (`super::jail`), its console and stderr relayed
    /// to the log; the console's lines also go to `tail` (a contract workload's, for its owner).
    pub fn start(plan: &VmPlan, tail: Option<Arc<SharedTail>>) -> std::io::Result<RunningVm> {
        let jailed = super::jail::launch::jailed_vm(plan)
            .map_err(|e| std::io::Error::other(crate::error_chain(&e)))?;
        let mut command = Command::new(VMM);
        command
            .args(&jailed.args)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        jailed.jail.apply(&mut command);
        let (mut child, status) = crate::signals::spawn_watched(&mut command)?;
        // The jail's descriptors are the node's no longer.
        drop(command);
        let pid = child.id();
        observe_jail(&plan.name, jailed.cgroup, pid);
        let stdout = child.stdout.take().and_then(|pipe| {
            let name = plan.name.clone();
            // The console is capped (console_limit); the vmm's stderr below is not: the vmm
            // caps the warnings a guest can cause, and its exit code line must not be lost.
            let mut limit = LineLimit::new(LINES_PER_SECOND);
            relay(&plan.name, "console", pipe, move |line| match line {
                Some(line) => {
                    if let Some(tail) = &tail {
                        tail.push(&line);
                    }
                    if let Admit::Print { notice } = limit.admit(Instant::now()) {
                        if let Some(notice) = notice {
                            crate::log::interface_line(&format!("[{name}] {notice}"));
                        }
                        crate::log::interface_line(&format!("[{name}] {line}"));
                    }
                }
                None => {
                    if let Some(notice) = limit.finish() {
                        crate::log::interface_line(&format!("[{name}] {notice}"));
                    }
                }
            })
        });
        let stderr = child.stderr.take().and_then(|pipe| {
            let name = plan.name.clone();
            let mut code = None;
            let handle = std::thread::Builder::new()
                .name(format!("{}-vmm", plan.name))
                .spawn(move || {
                    for_each_line(pipe, |line| {
                        if let Some(c) = parse_exit_code(&line) {
                            code = Some(c);
                        }
                        crate::log::interface_line(&format!("[{name}] {line}"));
                    });
                    code
                });
            handle.ok()
        });
        Ok(RunningVm {
            pid,
            status,
            stdout,
            stderr,
        })
    }

    /// Waits for the VM to end and for its pipes to drain.
    pub fn wait(mut self) -> VmExit {
        // The reaper sends exactly one status; a closed channel cannot happen while init runs.
        let status = self
            .status
            .recv()
            .unwrap_or(WaitStatus::Exited(nix::unistd::Pid::from_raw(0), 1));
        if let Some(handle) = self.stdout.take() {
            let _ = handle.join();
        }
        let guest_code = self
            .stderr
            .take()
            .and_then(|handle| handle.join().ok().flatten());
        VmExit::new(status, guest_code)
    }
}

/// How long the node waits to see a started vmm under its seccomp filter.
const OBSERVE_LIMIT: std::time::Duration = std::time::Duration::from_secs(20);

/// Logs, from the node's own view of the process, how the vmm in `cgroup` is jailed (`waiter`
/// is the jail's waiting parent), on a thread of its own: the vmm reaches its filter only once
/// the VM is built.
fn observe_jail(name: &str, cgroup: PathBuf, waiter: u32) {
    let owned = name.to_owned();
    let spawned = std::thread::Builder::new()
        .name(format!("{name}-jail"))
        .spawn(move || {
            let observed = super::jail::observe::describe(&cgroup, waiter, OBSERVE_LIMIT);
            crate::info!("{}", super::jail::jailed_line(&owned, observed.as_deref()));
        });
    if let Err(e) = spawned {
        crate::debug!("workload {name}: cannot observe its jail: {e}");
    }
}

/// Relays `pipe` line by line to `each` on a thread of its own; `None` once it ended.
fn relay(
    name: &str,
    what: &str,
    pipe: impl Read + Send + 'static,
    mut each: impl FnMut(Option<String>) + Send + 'static,
) -> Option<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("{name}-{what}"))
        .spawn(move || {
            for_each_line(pipe, |line| each(Some(line)));
            each(None);
        })
        .ok()
}

fn for_each_line(mut pipe: impl Read, mut each: impl FnMut(String)) {
    let mut splitter = LineSplitter::default();
    let mut buffer = [0u8; 4096];
    loop {
        match pipe.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                for line in splitter.feed(buffer.get(..n).unwrap_or(&[])) {
                    each(line);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if let Some(line) = splitter.finish() {
        each(line);
    }
}

#[cfg(test)]
mod tests {
    use nix::sys::signal::Signal;
    use nix::unistd::Pid;

    use super::*;
    use crate::workloads::verify::tests::manifest;

    fn plan(network: bool) -> VmPlan {
        let mut m = manifest("hello", b"root");
        m.network = network;
        VmPlan::new(
            &m,
            "/run/nullos/guest/hello.initrd".into(),
            "/lib/nullos/workloads/hello/root.img".into(),
            vec!["/var/lib/nullos/volumes/hello/data.img".into()],
        )
    }

    #[test]
    fn vmm_command_line_with_and_without_network() {
        assert_eq!(
            plan(true).args(),
            [
                "--kernel",
                "/lib/nullos/guest/vmlinuz",
                "--initrd",
                "/run/nullos/guest/hello.initrd",
                "--cmdline",
                "console=ttyS0 quiet panic=-1 pci=off nullos.role=guest \
                 ip=10.200.0.2::10.200.0.1:255.255.255.0::eth0:off:10.200.0.1",
                "--memory-mib",
                "128",
                "--vcpus",
                "2",
                "--disk",
                "/lib/nullos/workloads/hello/root.img,ro",
                "--disk",
                "/var/lib/nullos/volumes/hello/data.img",
                "--net",
                "--serial",
                "stdout"
            ]
        );
        let offline = plan(false).args();
        assert!(!offline.iter().any(|a| a == "--net"));
        assert!(offline
            .iter()
            .any(|a| a == "console=ttyS0 quiet panic=-1 pci=off nullos.role=guest"));
    }

    #[test]
    fn exits_in_the_words_of_the_exit_line() {
        let pid = Pid::from_raw(9);
        let reported = VmExit::new(WaitStatus::Exited(pid, 0), Some(3));
        assert_eq!((reported.code(), reported.describe()), (3, "3".into()));
        let cases = [
            (WaitStatus::Exited(pid, 0), 0, "0 vm=poweroff"),
            (WaitStatus::Exited(pid, 10), 10, "10 vm=reboot"),
            (WaitStatus::Exited(pid, 11), 11, "11 vm=crash"),
            (WaitStatus::Exited(pid, 12), 12, "12 vm=panic"),
            (WaitStatus::Exited(pid, 1), 1, "1 vm=vmm-error"),
            (WaitStatus::Exited(pid, 2), 2, "2 vm=bad-input"),
            (
                WaitStatus::Signaled(pid, Signal::SIGKILL, false),
                137,
                "137 vm=vmm-error",
            ),
        ];
        for (status, code, text) in cases {
            let exit = VmExit::new(status, None);
            assert_eq!((exit.code(), exit.describe().as_str()), (code, text));
        }
    }

    #[test]
    fn the_exit_code_line_is_recognised_exactly() {
        assert_eq!(parse_exit_code("vmm: guest exit code=0"), Some(0));
        assert_eq!(parse_exit_code("vmm: guest exit code=255\n"), Some(255));
        assert_eq!(parse_exit_code("vmm: guest exit code=256"), None);
        assert_eq!(parse_exit_code("vmm: info: guest exit code=1"), None);
        assert_eq!(parse_exit_code("[x] vmm: guest exit code=1"), None);
    }

    #[test]
    fn lines_are_split_bounded_and_lossy() {
        let mut s = LineSplitter::default();
        assert_eq!(s.feed(b"hel"), Vec::<String>::new());
        assert_eq!(s.feed(b"lo\r\nwor"), ["hello"]);
        assert_eq!(s.feed(b"ld\n\n\xff\n"), ["world", "", "\u{fffd}"]);
        let long = vec![b'a'; MAX_LINE + 10];
        let lines = s.feed(&long);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].len(), MAX_LINE);
        assert_eq!(s.finish().as_deref(), Some("aaaaaaaaaa"));
        let mut collected = Vec::new();
        for_each_line(&b"a\nb"[..], |l| collected.push(l));
        assert_eq!(collected, ["a", "b"]);
    }
}
