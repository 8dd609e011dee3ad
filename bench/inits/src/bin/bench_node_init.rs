//! `bench-node-init`: PID 1 of the micro-VM benchmark's node (see `bench::microvm`).
//!
//! Mounts proc, sys, cgroup v2, dev and a tmpfs /tmp, loads kvm, makes the sink address local
//! (a `local` route on `lo`), creates the volume, then per round runs the guest on each monitor
//! (`vmm` in the node's jail, then QEMU microvm): a boot run (boot time, memory without
//! devices), a devices run (memory with virtio-net and a volume) and a throughput run. Prints one
//! `bench: ...` line per measurement, a `bench: jail vmm ...` line per jailed vmm run, an error
//! line for anything that fails (and carries on), `bench: done`, and powers off.
//!
//! Parameters on the node's kernel command line: `bench.rounds=<n>` (3), `bench.mib=<n>` (64),
//! `bench.hold_ms=<n>` (2000), `bench.timeout_s=<n>` (180, per guest run), `bench.only=vmm|qemu`
//! (both), `bench.tcp=0` (skip throughput), `bench.echo=1` (echo the monitors' output).

use std::fs::File;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bench_inits::jailed::{cgroup_v2, jailed_vmm, CGROUP_ROOT};
use bench_inits::measure::{cpu_stat, jail_view, pss, rollup, rss, vmm_of};
use bench_inits::memory::CpuStat;
use bench_inits::monitor::{guest_cmdline, qemu_args, vmm_spec, GuestMode, Run, Running};
use bench_inits::pid1::{add_local_route, insmod, mount_fs, power_off};
use bench_inits::proto::{
    boot_line, cpu_line, jail_line, param, param_u64, pss_line, rss_line, tcp_line, waiter_line,
    Monitor, DONE_LINE, GUEST_DEVICES, GUEST_MARKER, GUEST_SENT,
};
use bench_inits::{
    node_paths, DEFAULT_HOLD_MS, DEFAULT_MIB, GUEST_MEMORY_MIB, NODE_MODULES, SINK_ADDR, SINK_PORT,
    VOLUME_MIB,
};

/// How long a monitor may take to exit after its guest is done.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the jail's waiting parent may take to start the vmm, and the vmm to reach its
/// seccomp filter once its guest runs.
const JAIL_TIMEOUT: Duration = Duration::from_secs(5);

struct Config {
    rounds: u64,
    mib: u64,
    hold_ms: u64,
    timeout: Duration,
    monitors: Vec<Monitor>,
    tcp: bool,
    echo: bool,
    /// Whether the vmm's jail gets its cgroup v2 leaf.
    cgroup: bool,
}

impl Config {
    fn from_cmdline(cmdline: &str, cgroup: bool) -> Config {
        let monitors = match param(cmdline, "bench.only") {
            Some("vmm") => vec![Monitor::Vmm],
            Some("qemu") => vec![Monitor::Qemu],
            _ => Monitor::ALL.to_vec(),
        };
        Config {
            rounds: param_u64(cmdline, "bench.rounds", 3),
            mib: param_u64(cmdline, "bench.mib", DEFAULT_MIB),
            hold_ms: param_u64(cmdline, "bench.hold_ms", DEFAULT_HOLD_MS),
            timeout: Duration::from_secs(param_u64(cmdline, "bench.timeout_s", 180)),
            monitors,
            tcp: param_u64(cmdline, "bench.tcp", 1) != 0,
            echo: param_u64(cmdline, "bench.echo", 0) != 0,
            cgroup,
        }
    }
}

fn main() {
    for (fstype, target) in [
        ("proc", "/proc"),
        ("sysfs", "/sys"),
        ("cgroup2", CGROUP_ROOT),
        ("devtmpfs", "/dev"),
        ("tmpfs", "/tmp"),
    ] {
        if let Err(e) = mount_fs(fstype, target) {
            println!("bench: error node mount: {:#}", anyhow::Error::from(e));
        }
    }
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let config = Config::from_cmdline(&cmdline, cgroup_v2());
    match setup() {
        Ok(sink) => {
            let cgroup = if config.cgroup {
                format!(
                    "cgroup v2 leaf {}",
                    kernel_init::workloads::jail::cgroup_dir(bench_inits::JAIL_NAME).display()
                )
            } else {
                "no cgroup v2 (not mounted)".to_string()
            };
            println!("bench: node jail on for vmm runs ({cgroup})");
            run(&config, &sink);
        }
        Err(e) => println!("bench: error node setup: {e:#}"),
    }
    println!("{DONE_LINE}");
    power_off()
}

/// kvm modules, `/dev/kvm`, the sink address and listener, the volume.
fn setup() -> anyhow::Result<TcpListener> {
    let module = |name: &str| Path::new(node_paths::KVM_MODULES).join(format!("{name}.ko"));
    for (name, _) in &NODE_MODULES[..2] {
        insmod(&module(name))?;
    }
    let vendor = match insmod(&module("kvm-amd")) {
        Ok(()) => "kvm-amd",
        Err(amd) => {
            insmod(&module("kvm-intel")).with_context(|| format!("kvm-amd failed too: {amd:#}"))?;
            "kvm-intel"
        }
    };
    let started = Instant::now();
    while !Path::new("/dev/kvm").exists() {
        if started.elapsed() > Duration::from_secs(5) {
            bail!("{vendor} loaded but /dev/kvm did not appear");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("bench: node kvm ready ({vendor})");
    // Not an address of lo: the vmm's user-mode network never lets a guest reach the node's own
    // addresses, and the sink stands for a host elsewhere.
    add_local_route("lo", SINK_ADDR, Duration::from_secs(2)).context("route the sink to lo")?;
    let sink = TcpListener::bind((SINK_ADDR, SINK_PORT))
        .with_context(|| format!("bind the sink {SINK_ADDR}:{SINK_PORT}"))?;
    sink.set_nonblocking(true).context("sink non-blocking")?;
    File::create(node_paths::VOLUME)
        .and_then(|f| f.set_len(VOLUME_MIB << 20))
        .with_context(|| format!("create the volume {}", node_paths::VOLUME))?;
    Ok(sink)
}

fn run(config: &Config, sink: &TcpListener) {
    for round in 1..=config.rounds {
        for &monitor in &config.monitors {
            if let Err(e) = boot_run(config, monitor, round) {
                println!("bench: error {monitor} boot: {e:#}");
            }
        }
        for &monitor in &config.monitors {
            if let Err(e) = devices_run(config, monitor, round) {
                println!("bench: error {monitor} devices: {e:#}");
            }
        }
        if !config.tcp {
            continue;
        }
        for &monitor in &config.monitors {
            if let Err(e) = tcp_run(config, monitor, round, sink) {
                println!("bench: error {monitor} tcp: {e:#}");
            }
        }
    }
}

/// A started monitor, and for the jailed vmm its cgroup with its CPU counters at the start.
struct Started {
    running: Running,
    cgroup: Option<PathBuf>,
    cpu_before: Option<CpuStat>,
}

/// Starts the guest of `run` on `monitor`: ours in the node's jail, QEMU as it is.
fn start(config: &Config, monitor: Monitor, run: Run, cmdline: &str) -> anyhow::Result<Started> {
    match monitor {
        Monitor::Vmm => {
            let jailed = jailed_vmm(vmm_spec(run, cmdline), config.cgroup)?;
            let cpu_before = jailed.cgroup.as_deref().and_then(cpu_stat);
            let running = Running::spawn(
                node_paths::VMM,
                &jailed.args,
                monitor.name(),
                config.echo,
                Some(jailed.jail),
            )?;
            Ok(Started {
                running,
                cgroup: jailed.cgroup,
                cpu_before,
            })
        }
        Monitor::Qemu => {
            let args = qemu_args(run, cmdline);
            let running =
                Running::spawn(node_paths::QEMU, &args, monitor.name(), config.echo, None)?;
            Ok(Started {
                running,
                cgroup: None,
                cpu_before: None,
            })
        }
    }
}

/// The monitor's own process: QEMU, or the vmm below its jail's waiting parent. For the vmm,
/// also prints how the node sees it jailed (or an error line when it does not).
fn monitor_pid(started: &Started, monitor: Monitor, run: Run, round: u64) -> anyhow::Result<u32> {
    let spawned = started.running.pid();
    if monitor == Monitor::Qemu {
        return Ok(spawned);
    }
    let vmm = vmm_of(spawned, JAIL_TIMEOUT)?;
    match jail_view(started.cgroup.as_deref(), spawned, vmm, JAIL_TIMEOUT) {
        Some(view) => println!("{}", jail_line(round, run.name(), &view)),
        None => println!(
            "bench: error vmm jail: the vmm (pid {vmm}) was not seen under its seccomp filter"
        ),
    }
    Ok(vmm)
}

/// The memory figures of `run` (PSS of the monitor's processes; RSS too without devices), and
/// for the vmm its jail's waiting parent.
fn memory(started: &Started, monitor: Monitor, run: Run, round: u64, pid: u32) {
    let Some(devices) = run.devices() else {
        return;
    };
    if run == Run::Boot {
        match rss(pid, GUEST_MEMORY_MIB) {
            Ok(o) => println!("{}", rss_line(monitor, round, &o)),
            Err(e) => println!("bench: error {monitor} rss: {e:#}"),
        }
    }
    match pss(pid, GUEST_MEMORY_MIB) {
        Ok(o) => println!("{}", pss_line(monitor, round, devices, &o)),
        Err(e) => println!("bench: error {monitor} pss: {e:#}"),
    }
    if monitor == Monitor::Vmm {
        match rollup(started.running.pid()) {
            Ok(w) => println!("{}", waiter_line(round, devices, &w)),
            Err(e) => println!("bench: error vmm waiter: {e:#}"),
        }
    }
}

/// Prints how much the jail's `cpu.max` held the vmm back so far in this run.
fn throttling(started: &Started, run: Run, round: u64) {
    let (Some(cgroup), Some(before)) = (&started.cgroup, &started.cpu_before) else {
        return;
    };
    match cpu_stat(cgroup) {
        Some(now) => println!("{}", cpu_line(round, run.name(), &now.since(before))),
        None => println!(
            "bench: error vmm cpu: cannot read {}/cpu.stat",
            cgroup.display()
        ),
    }
}

fn finish(started: Started, monitor: Monitor, what: &str, timeout: Duration) {
    let (status, killed) = started.running.finish(timeout);
    if killed {
        println!("bench: error {monitor} {what}: the guest did not power off; killed");
    } else if let Some(status) = status.filter(|s| !s.success()) {
        println!("bench: error {monitor} {what}: monitor exited {status}");
    }
}

/// Boot time to the guest's marker, then the monitor's memory while the guest holds.
fn boot_run(config: &Config, monitor: Monitor, round: u64) -> anyhow::Result<()> {
    let cmdline = guest_cmdline(GuestMode::Hold { ms: config.hold_ms });
    let mut started = start(config, monitor, Run::Boot, &cmdline)?;
    let (seen, _) = started.running.wait_for(GUEST_MARKER, config.timeout)?;
    let ms = seen.duration_since(started.running.started()).as_millis();
    println!("{}", boot_line(monitor, round, u64::try_from(ms)?));
    let pid = monitor_pid(&started, monitor, Run::Boot, round)?;
    memory(&started, monitor, Run::Boot, round, pid);
    throttling(&started, Run::Boot, round);
    let hold = Duration::from_millis(config.hold_ms);
    finish(started, monitor, "boot", hold + EXIT_TIMEOUT);
    Ok(())
}

/// The monitor's memory once its guest has its network up and has read and written its
/// volume, while the guest holds.
fn devices_run(config: &Config, monitor: Monitor, round: u64) -> anyhow::Result<()> {
    let cmdline = guest_cmdline(GuestMode::Devices {
        hold_ms: config.hold_ms,
    });
    let mut started = start(config, monitor, Run::Devices, &cmdline)?;
    started.running.wait_for(GUEST_DEVICES, config.timeout)?;
    let pid = monitor_pid(&started, monitor, Run::Devices, round)?;
    memory(&started, monitor, Run::Devices, round, pid);
    throttling(&started, Run::Devices, round);
    let hold = Duration::from_millis(config.hold_ms);
    finish(started, monitor, "devices", hold + EXIT_TIMEOUT);
    Ok(())
}

/// The guest sends `mib` MiB to the sink; the sink times it from accept to EOF.
fn tcp_run(
    config: &Config,
    monitor: Monitor,
    round: u64,
    sink: &TcpListener,
) -> anyhow::Result<()> {
    let cmdline = guest_cmdline(GuestMode::Send { mib: config.mib });
    let mut started = start(config, monitor, Run::Tcp, &cmdline)?;
    let deadline = Instant::now() + config.timeout;
    // The guest connects only after its marker: the jail is observed before the transfer.
    started.running.wait_for(GUEST_MARKER, config.timeout)?;
    monitor_pid(&started, monitor, Run::Tcp, round)?;
    let (mut stream, peer) = loop {
        match sink.accept() {
            Ok(accepted) => break accepted,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if let Some(status) = started.running.exited() {
                    // Let the reader threads drain what it wrote last.
                    std::thread::sleep(Duration::from_millis(100));
                    bail!(
                        "monitor exited ({status}) before connecting; last output:\n{}",
                        started.running.tail()
                    );
                }
                if Instant::now() >= deadline {
                    bail!(
                        "no connection to the sink within {:?}; last output:\n{}",
                        config.timeout,
                        started.running.tail()
                    );
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e).context("accept"),
        }
    };
    let accepted = Instant::now();
    stream
        .set_nonblocking(false)
        .context("sink stream blocking")?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .context("sink read timeout")?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut bytes: u64 = 0;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => bytes += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(e).with_context(|| format!("receive from {peer} after {bytes} bytes"))
            }
        }
    }
    let ms = accepted.elapsed().as_millis();
    drop(stream);
    throttling(&started, Run::Tcp, round);
    println!("{}", tcp_line(monitor, round, bytes, u64::try_from(ms)?));
    let (_, line) = started.running.wait_for(GUEST_SENT, config.timeout)?;
    if config.echo {
        println!("bench: {monitor} guest reported: {line}");
    }
    finish(started, monitor, "tcp", EXIT_TIMEOUT);
    Ok(())
}
