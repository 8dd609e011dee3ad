//! The two monitors' command lines (pure) and a running monitor inside the bench node: its
//! console (stdout) as timestamped lines, a tail of its output for error messages.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read};
use std::net::Ipv4Addr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use interfaces::egress::Rule;
use interfaces::vm::{Disk, Serial, VmSpec};
use kernel_init::workloads::jail::Jail;

use crate::proto::Devices;
use crate::{
    node_paths, GATEWAY, GUEST_ADDR, GUEST_MEMORY_MIB, GUEST_PREFIX, SINK_ADDR, SINK_PORT,
};

/// The kernel command line both monitors give the guest, before the benchmark's parameters.
pub const GUEST_CMDLINE_BASE: &str = "console=ttyS0 quiet panic=-1";

/// What the guest does after its marker line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestMode {
    /// Stay up this many ms (so the monitor can be measured), then power off.
    Hold {
        /// Milliseconds.
        ms: u64,
    },
    /// Bring eth0 up, read and write its volume, say so, stay up this many ms, power off.
    Devices {
        /// Milliseconds.
        hold_ms: u64,
    },
    /// Configure eth0, send this many MiB to the sink, then power off.
    Send {
        /// MiB to send.
        mib: u64,
    },
}

/// The guest's kernel command line for `mode`.
pub fn guest_cmdline(mode: GuestMode) -> String {
    match mode {
        GuestMode::Hold { ms } => format!("{GUEST_CMDLINE_BASE} bench.mode=hold bench.hold_ms={ms}"),
        GuestMode::Devices { hold_ms } => {
            format!("{GUEST_CMDLINE_BASE} bench.mode=devices bench.hold_ms={hold_ms}")
        }
        GuestMode::Send { mib } => format!(
            "{GUEST_CMDLINE_BASE} bench.mode=send bench.sink={SINK_ADDR}:{SINK_PORT} bench.mib={mib}"
        ),
    }
}

/// The three runs of a round, with what each attaches to the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Run {
    /// Boot time and memory, no device.
    Boot,
    /// Memory with virtio-net (user-mode network) and a virtio-blk volume.
    Devices,
    /// Guest→node throughput over the user-mode network.
    Tcp,
}

impl Run {
    /// The name in `bench: jail` lines.
    pub fn name(self) -> &'static str {
        match self {
            Run::Boot => "boot",
            Run::Devices => "devices",
            Run::Tcp => "tcp",
        }
    }

    /// The devices of its memory figures; `None` for the throughput run, which has none.
    pub fn devices(self) -> Option<Devices> {
        match self {
            Run::Boot => Some(Devices::None),
            Run::Devices => Some(Devices::NetVolume),
            Run::Tcp => None,
        }
    }

    fn net(self) -> bool {
        self != Run::Boot
    }

    fn volume(self) -> bool {
        self == Run::Devices
    }
}

/// The sink, opened to the guest by the node's egress policy as a node opens a named private
/// destination (it is in 10/8, which the user-mode network refuses otherwise).
pub fn sink_rule() -> Rule {
    Rule {
        addr: SINK_ADDR,
        prefix_len: 32,
        port: Some(SINK_PORT),
    }
}

/// What our vmm runs for `run`, its files named by path (the jail hands them over as
/// descriptors, [`crate::jailed`]): 1 vCPU, [`GUEST_MEMORY_MIB`] MiB, the console on stdout.
pub fn vmm_spec(run: Run, cmdline: &str) -> VmSpec {
    let mut spec = VmSpec::new(node_paths::GUEST_KERNEL);
    spec.initrd = Some(node_paths::GUEST_INITRD.into());
    spec.cmdline = cmdline.to_owned();
    spec.memory_mib = GUEST_MEMORY_MIB;
    spec.vcpus = 1;
    spec.net = run.net();
    if run == Run::Tcp {
        spec.net_allow.push(sink_rule());
    }
    if run.volume() {
        spec.disks.push(Disk {
            path: node_paths::VOLUME.into(),
            read_only: false,
        });
    }
    spec.serial = Serial::Stdout;
    spec
}

/// QEMU microvm's arguments for `run`: the same guest, size and devices as [`vmm_spec`].
pub fn qemu_args(run: Run, cmdline: &str) -> Vec<OsString> {
    let memory = GUEST_MEMORY_MIB.to_string();
    // microvm with everything legacy off except the ISA serial port the console needs; ACPI on,
    // so the guest finds virtio-mmio devices the way it does on our monitor.
    let mut args: Vec<String> = [
        "-M",
        "microvm,x-option-roms=off,pit=off,pic=off,rtc=off,isa-serial=on,acpi=on",
        "-accel",
        "kvm",
        "-cpu",
        "host",
        "-m",
        &memory,
        "-smp",
        "1",
        "-nodefaults",
        "-no-user-config",
        "-no-reboot",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-L",
        node_paths::QEMU_DATA,
        "-kernel",
        node_paths::GUEST_KERNEL,
        "-initrd",
        node_paths::GUEST_INITRD,
        "-append",
        cmdline,
    ]
    .map(String::from)
    .to_vec();
    if run.net() {
        let net_addr = Ipv4Addr::from(
            u32::from(GUEST_ADDR)
                & u32::MAX
                    .checked_shl(32 - u32::from(GUEST_PREFIX))
                    .unwrap_or(0),
        );
        // slirp refuses dns == host; the benchmark resolves no names.
        args.extend([
            "-netdev".to_string(),
            format!("user,id=n0,net={net_addr}/{GUEST_PREFIX},host={GATEWAY},dns={QEMU_DNS}"),
            "-device".to_string(),
            "virtio-net-device,netdev=n0".to_string(),
        ]);
    }
    if run.volume() {
        args.extend([
            "-drive".to_string(),
            format!("file={},format=raw,if=none,id=d0", node_paths::VOLUME),
            "-device".to_string(),
            "virtio-blk-device,drive=d0".to_string(),
        ]);
    }
    args.into_iter().map(OsString::from).collect()
}

/// QEMU's DNS address on the guest network: slirp wants it distinct from the gateway (ours serves
/// both on 10.200.0.1); unused, the guest resolves no names.
pub const QEMU_DNS: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 3);

/// How many output lines of a monitor are kept for error messages.
const TAIL_LINES: usize = 25;

/// A monitor run that did not go as expected.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// The program could not be started.
    #[error("cannot start {program}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The awaited line did not come in time.
    #[error("no line containing {awaited:?} within {timeout:?}; last output:\n{tail}")]
    Timeout {
        /// What was awaited.
        awaited: String,
        /// How long.
        timeout: Duration,
        /// The monitor's last lines.
        tail: String,
    },
    /// The monitor closed its console before the awaited line.
    #[error("exited ({status}) before a line containing {awaited:?}; last output:\n{tail}")]
    Exited {
        /// What was awaited.
        awaited: String,
        /// Its exit status, or why it is unknown.
        status: String,
        /// The monitor's last lines.
        tail: String,
    },
}

/// A monitor process with its console read by a thread.
#[derive(Debug)]
pub struct Running {
    child: Child,
    started: Instant,
    lines: Receiver<(Instant, String)>,
    tail: Arc<Mutex<VecDeque<String>>>,
}

impl Running {
    /// Spawns `program args`, in `jail` if given (`program` must then be the jail's); the clock
    /// starts just before the spawn, so it includes entering the jail. With `echo`, every output
    /// line is also printed on this process's stdout prefixed with `[<label>] `.
    pub fn spawn(
        program: &str,
        args: &[impl AsRef<OsStr>],
        label: &'static str,
        echo: bool,
        jail: Option<Jail>,
    ) -> Result<Running, MonitorError> {
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(jail) = jail {
            // As the node starts a jailed vmm: nothing of this process's environment.
            command.env_clear();
            jail.apply(&mut command);
        }
        let started = Instant::now();
        let mut child = command.spawn().map_err(|source| MonitorError::Spawn {
            program: program.to_string(),
            source,
        })?;
        // The jail's descriptors are this process's no longer.
        drop(command);
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, lines) = mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            let tail = Arc::clone(&tail);
            std::thread::spawn(move || {
                read_lines(stdout, &tail, label, echo, |line| {
                    // The receiver is gone once the run is over; later lines only feed the tail.
                    let _ = tx.send((Instant::now(), line.to_string()));
                });
            });
        }
        if let Some(stderr) = child.stderr.take() {
            let tail = Arc::clone(&tail);
            std::thread::spawn(move || read_lines(stderr, &tail, label, echo, |_| {}));
        }
        Ok(Running {
            child,
            started,
            lines,
            tail,
        })
    }

    /// The process id: the monitor's, or for a jailed one the jail's waiting parent's.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// When the monitor was spawned.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Waits for a console line containing `needle`; returns when it was read, and the line.
    pub fn wait_for(
        &mut self,
        needle: &str,
        timeout: Duration,
    ) -> Result<(Instant, String), MonitorError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((at, line)) if line.contains(needle) => return Ok((at, line)),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    return Err(MonitorError::Timeout {
                        awaited: needle.to_string(),
                        timeout,
                        tail: self.tail(),
                    })
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = match self.child.wait() {
                        Ok(status) => status.to_string(),
                        Err(e) => format!("wait failed: {e}"),
                    };
                    return Err(MonitorError::Exited {
                        awaited: needle.to_string(),
                        status,
                        tail: self.tail(),
                    });
                }
            }
        }
    }

    /// The monitor's exit status if it has exited (reaping it).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits up to `timeout` for the monitor to exit by itself, else kills it; returns the exit
    /// status and whether it had to be killed.
    pub fn finish(mut self, timeout: Duration) -> (Option<ExitStatus>, bool) {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return (Some(status), false),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => {
                    // Already gone if kill fails; wait() reaps it either way.
                    let _ = self.child.kill();
                    return (self.child.wait().ok(), true);
                }
            }
        }
    }

    /// The last lines the monitor wrote (stdout and stderr), newline separated.
    pub fn tail(&self) -> String {
        let tail = match self.tail.lock() {
            Ok(tail) => tail,
            Err(poisoned) => poisoned.into_inner(),
        };
        tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // Errors mean it is already gone; wait() below reaps it either way.
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn read_lines(
    from: impl Read,
    tail: &Mutex<VecDeque<String>>,
    label: &str,
    echo: bool,
    mut each: impl FnMut(&str),
) {
    let mut reader = BufReader::new(from);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&buf);
        let line = text.trim_end_matches(['\r', '\n']);
        if echo {
            println!("[{label}] {line}");
        }
        each(line);
        let mut tail = match tail.lock() {
            Ok(tail) => tail,
            Err(poisoned) => poisoned.into_inner(),
        };
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(args: &[OsString]) -> String {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn both_monitors_get_the_same_guest_and_size() {
        let cmdline = guest_cmdline(GuestMode::Hold { ms: 2000 });
        assert_eq!(
            cmdline,
            "console=ttyS0 quiet panic=-1 bench.mode=hold bench.hold_ms=2000"
        );
        assert_eq!(
            joined(&vmm_spec(Run::Boot, &cmdline).to_args()),
            format!("--kernel /guest/vmlinuz --initrd /guest/initrd --cmdline {cmdline} --memory-mib 128 --vcpus 1 --serial stdout")
        );
        let qemu = joined(&qemu_args(Run::Boot, &cmdline));
        assert!(qemu.starts_with("-M microvm,"), "{qemu}");
        assert!(
            qemu.contains("-accel kvm -cpu host -m 128 -smp 1"),
            "{qemu}"
        );
        assert!(
            qemu.ends_with(&format!(
                "-kernel /guest/vmlinuz -initrd /guest/initrd -append {cmdline}"
            )),
            "{qemu}"
        );
        assert!(!qemu.contains("-netdev"), "{qemu}");
        assert!(!qemu.contains("-drive"), "{qemu}");
    }

    #[test]
    fn the_devices_run_attaches_the_network_and_the_volume_to_both() {
        let cmdline = guest_cmdline(GuestMode::Devices { hold_ms: 3000 });
        assert!(cmdline.ends_with("bench.mode=devices bench.hold_ms=3000"));
        let vmm = joined(&vmm_spec(Run::Devices, &cmdline).to_args());
        assert!(
            vmm.ends_with("--disk /tmp/bench-volume.img --net --serial stdout"),
            "{vmm}"
        );
        let qemu = joined(&qemu_args(Run::Devices, &cmdline));
        assert!(
            qemu.ends_with(
                "-device virtio-net-device,netdev=n0 \
                 -drive file=/tmp/bench-volume.img,format=raw,if=none,id=d0 \
                 -device virtio-blk-device,drive=d0"
            ),
            "{qemu}"
        );
        assert_eq!(Run::Devices.devices(), Some(Devices::NetVolume));
        assert_eq!(Run::Boot.devices(), Some(Devices::None));
        assert_eq!(Run::Tcp.devices(), None);
    }

    #[test]
    fn the_throughput_run_puts_both_guests_on_the_same_addresses() {
        let cmdline = guest_cmdline(GuestMode::Send { mib: 64 });
        assert!(cmdline.ends_with("bench.mode=send bench.sink=10.99.0.1:5001 bench.mib=64"));
        let vmm = joined(&vmm_spec(Run::Tcp, &cmdline).to_args());
        assert!(
            vmm.ends_with("--net --net-allow 10.99.0.1/32:5001 --serial stdout"),
            "{vmm}"
        );
        assert!(!vmm.contains("--disk"), "{vmm}");
        let qemu = joined(&qemu_args(Run::Tcp, &cmdline));
        assert!(qemu.ends_with(
            "-netdev user,id=n0,net=10.200.0.0/24,host=10.200.0.1,dns=10.200.0.3 \
             -device virtio-net-device,netdev=n0"
        ));
    }
}
