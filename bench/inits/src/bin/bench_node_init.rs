//! `bench-node-init`: PID 1 of the micro-VM benchmark's node (see `bench::microvm`).
//!
//! Mounts proc, sys, dev and a tmpfs /tmp, loads kvm, puts the sink address on `lo`, then per
//! round runs the guest on each monitor (`vmm`, then QEMU microvm): a boot run (boot time and
//! memory overhead) and a throughput run. Prints one `bench: ...` line per measurement, an
//! error line for anything that fails (and carries on), `bench: done`, and powers off.
//!
//! Parameters on the node's kernel command line: `bench.rounds=<n>` (3), `bench.mib=<n>` (64),
//! `bench.hold_ms=<n>` (2000), `bench.timeout_s=<n>` (180, per guest run), `bench.only=vmm|qemu`
//! (both), `bench.tcp=0` (skip throughput), `bench.echo=1` (echo the monitors' output).

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bench_inits::monitor::{command_line, guest_cmdline, GuestMode, Running};
use bench_inits::pid1::{configure_interface, insmod, mount_fs, power_off};
use bench_inits::proto::{
    boot_line, overhead, param, param_u64, parse_smaps, rss_line, tcp_line, Monitor, DONE_LINE,
    GUEST_MARKER, GUEST_SENT,
};
use bench_inits::{
    node_paths, DEFAULT_HOLD_MS, DEFAULT_MIB, GUEST_MEMORY_MIB, NODE_MODULES, SINK_ADDR, SINK_PORT,
};

/// How long a monitor may take to exit after its guest is done.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

struct Config {
    rounds: u64,
    mib: u64,
    hold_ms: u64,
    timeout: Duration,
    monitors: Vec<Monitor>,
    tcp: bool,
    echo: bool,
}

impl Config {
    fn from_cmdline(cmdline: &str) -> Config {
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
        }
    }
}

fn main() {
    for (fstype, target) in [
        ("proc", "/proc"),
        ("sysfs", "/sys"),
        ("devtmpfs", "/dev"),
        ("tmpfs", "/tmp"),
    ] {
        if let Err(e) = mount_fs(fstype, target) {
            println!("bench: error node mount: {:#}", anyhow::Error::from(e));
        }
    }
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let config = Config::from_cmdline(&cmdline);
    match setup() {
        Ok(sink) => run(&config, &sink),
        Err(e) => println!("bench: error node setup: {e:#}"),
    }
    println!("{DONE_LINE}");
    power_off()
}

/// kvm modules, `/dev/kvm`, the sink address and listener.
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
    configure_interface("lo", SINK_ADDR, 32, None, Duration::from_secs(2))
        .context("configure lo")?;
    let sink = TcpListener::bind((SINK_ADDR, SINK_PORT))
        .with_context(|| format!("bind the sink {SINK_ADDR}:{SINK_PORT}"))?;
    sink.set_nonblocking(true).context("sink non-blocking")?;
    Ok(sink)
}

fn run(config: &Config, sink: &TcpListener) {
    for round in 1..=config.rounds {
        for &monitor in &config.monitors {
            if let Err(e) = boot_run(config, monitor, round) {
                println!("bench: error {monitor} boot: {e:#}");
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

/// Boot time to the guest's marker, then the monitor's memory overhead while the guest holds.
fn boot_run(config: &Config, monitor: Monitor, round: u64) -> anyhow::Result<()> {
    let cmdline = guest_cmdline(GuestMode::Hold { ms: config.hold_ms });
    let (program, args) = command_line(monitor, &cmdline, false);
    let mut running = Running::spawn(program, &args, monitor.name(), config.echo)?;
    let (seen, _) = running.wait_for(GUEST_MARKER, config.timeout)?;
    let ms = seen.duration_since(running.started()).as_millis();
    println!("{}", boot_line(monitor, round, u64::try_from(ms)?));
    let smaps_path = format!("/proc/{}/smaps", running.pid());
    let smaps =
        std::fs::read_to_string(&smaps_path).with_context(|| format!("read {smaps_path}"))?;
    let mappings = parse_smaps(&smaps);
    match overhead(&mappings, GUEST_MEMORY_MIB) {
        Some(o) => println!("{}", rss_line(monitor, round, &o)),
        None => println!(
            "bench: error {monitor} rss: no anonymous mapping of {GUEST_MEMORY_MIB} MiB in {smaps_path} ({} mappings)",
            mappings.len()
        ),
    }
    let hold = Duration::from_millis(config.hold_ms);
    let (status, killed) = running.finish(hold + EXIT_TIMEOUT);
    if killed {
        println!("bench: error {monitor} boot: the guest did not power off; killed");
    } else if let Some(status) = status.filter(|s| !s.success()) {
        println!("bench: error {monitor} boot: monitor exited {status}");
    }
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
    let (program, args) = command_line(monitor, &cmdline, true);
    let mut running = Running::spawn(program, &args, monitor.name(), config.echo)?;
    let deadline = Instant::now() + config.timeout;
    let (mut stream, peer) = loop {
        match sink.accept() {
            Ok(accepted) => break accepted,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if let Some(status) = running.exited() {
                    // Let the reader threads drain what it wrote last.
                    std::thread::sleep(Duration::from_millis(100));
                    bail!(
                        "monitor exited ({status}) before connecting; last output:\n{}",
                        running.tail()
                    );
                }
                if Instant::now() >= deadline {
                    bail!(
                        "no connection to the sink within {:?}; last output:\n{}",
                        config.timeout,
                        running.tail()
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
    println!("{}", tcp_line(monitor, round, bytes, u64::try_from(ms)?));
    let (_, line) = running.wait_for(GUEST_SENT, config.timeout)?;
    if config.echo {
        println!("bench: {monitor} guest reported: {line}");
    }
    let (status, killed) = running.finish(EXIT_TIMEOUT);
    if killed {
        println!("bench: error {monitor} tcp: the guest did not power off; killed");
    } else if let Some(status) = status.filter(|s| !s.success()) {
        println!("bench: error {monitor} tcp: monitor exited {status}");
    }
    Ok(())
}
