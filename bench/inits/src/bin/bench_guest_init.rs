//! `bench-guest-init`: PID 1 of the micro-VM benchmark's guest, the same on both monitors.
//!
//! Its first act is the console line `bench-guest: init` (the end of the boot measurement).
//! Then, per the kernel command line:
//! - `bench.mode=hold bench.hold_ms=<n>`: waits n ms (the node measures the monitor meanwhile);
//! - `bench.mode=devices bench.hold_ms=<n>`: loads the virtio modules, gives eth0 its address
//!   and default route, reads the first MiB of its volume (`/dev/vda`) and writes it back
//!   (synced), prints `bench-guest: devices ready` (or `bench-guest: error <why>`), and waits n
//!   ms (the node measures the monitor meanwhile);
//! - `bench.mode=send bench.sink=<ip:port> bench.mib=<n>`: loads the virtio-mmio and virtio-net
//!   modules from `/lib/modules/<name>.ko`, gives eth0 10.200.0.2/24 with a default route via
//!   10.200.0.1, connects to the sink, sends n MiB, waits for the sink to close, and prints
//!   `bench-guest: sent bytes=<n> ms=<n>` (or `bench-guest: error <why>`);
//!
//! and powers off. Built static: the guest initramfs has nothing else.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use bench_inits::pid1::{configure_interface, insmod, mount_fs, power_off};
use bench_inits::proto::{param, param_u64, GUEST_DEVICES, GUEST_MARKER, GUEST_SENT};
use bench_inits::{
    DEFAULT_HOLD_MS, DEFAULT_MIB, GATEWAY, GUEST_ADDR, GUEST_MODULES, GUEST_PREFIX, VOLUME_IO_KIB,
};

/// Longest wait for eth0 to appear after virtio_net is loaded.
const LINK_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the volume's block device after virtio_blk is loaded.
const VOLUME_TIMEOUT: Duration = Duration::from_secs(10);
/// The volume, the guest's only disk.
const VOLUME: &str = "/dev/vda";
/// Longest time to get a connection to the sink (each attempt, and all of them).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes per write.
const CHUNK: usize = 256 * 1024;

fn main() {
    println!("{GUEST_MARKER}");
    let cmdline = match mount_fs("proc", "/proc") {
        Ok(()) => std::fs::read_to_string("/proc/cmdline").unwrap_or_default(),
        Err(e) => {
            println!("bench-guest: error {:#}", anyhow::Error::from(e));
            String::new()
        }
    };
    let hold = Duration::from_millis(param_u64(&cmdline, "bench.hold_ms", DEFAULT_HOLD_MS));
    match param(&cmdline, "bench.mode") {
        Some("send") => match send(&cmdline) {
            Ok((bytes, ms)) => println!("{GUEST_SENT} bytes={bytes} ms={ms}"),
            Err(e) => println!("bench-guest: error {e:#}"),
        },
        Some("devices") => match devices() {
            Ok(()) => {
                println!("{GUEST_DEVICES}");
                std::thread::sleep(hold);
            }
            Err(e) => println!("bench-guest: error {e:#}"),
        },
        _ => std::thread::sleep(hold),
    }
    let _ = std::io::stdout().flush();
    power_off()
}

/// Loads the virtio modules and configures eth0.
fn network() -> anyhow::Result<()> {
    for (name, _) in GUEST_MODULES {
        insmod(&Path::new("/lib/modules").join(format!("{name}.ko")))?;
    }
    configure_interface(
        "eth0",
        GUEST_ADDR,
        GUEST_PREFIX,
        Some(GATEWAY),
        LINK_TIMEOUT,
    )
    .context("configure eth0")
}

/// Brings both devices into use: the network up, the volume read and written back.
fn devices() -> anyhow::Result<()> {
    network()?;
    mount_fs("devtmpfs", "/dev")?;
    let started = Instant::now();
    while !Path::new(VOLUME).exists() {
        if started.elapsed() > VOLUME_TIMEOUT {
            anyhow::bail!("no {VOLUME} after {VOLUME_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut volume = OpenOptions::new()
        .read(true)
        .write(true)
        .open(VOLUME)
        .with_context(|| format!("open {VOLUME}"))?;
    let mut bytes = vec![0u8; usize::try_from(VOLUME_IO_KIB * 1024)?];
    volume.read_exact(&mut bytes).context("read the volume")?;
    volume.seek(SeekFrom::Start(0)).context("seek the volume")?;
    volume.write_all(&bytes).context("write the volume")?;
    volume.sync_all().context("sync the volume")
}

/// Sets up the network, sends the payload; returns bytes sent and ms from connect to the sink's
/// close.
fn send(cmdline: &str) -> anyhow::Result<(u64, u128)> {
    network()?;
    let sink: SocketAddr = param(cmdline, "bench.sink")
        .context("no bench.sink= on the command line")?
        .parse()
        .context("bench.sink")?;
    let mib = param_u64(cmdline, "bench.mib", DEFAULT_MIB);
    let started = Instant::now();
    let mut stream = connect(sink)?;
    let chunk = vec![0x5a_u8; CHUNK];
    let chunks = mib.saturating_mul(1024 * 1024) / CHUNK as u64;
    for _ in 0..chunks {
        stream.write_all(&chunk).context("send")?;
    }
    stream.shutdown(Shutdown::Write).context("shutdown")?;
    // The sink closes once it has counted everything: only then is the transfer done.
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).context("wait for the sink")?;
    Ok((chunks * CHUNK as u64, started.elapsed().as_millis()))
}

fn connect(sink: SocketAddr) -> anyhow::Result<TcpStream> {
    let started = Instant::now();
    loop {
        match TcpStream::connect_timeout(&sink, CONNECT_TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(e) if started.elapsed() >= CONNECT_TIMEOUT => {
                return Err(e).with_context(|| format!("connect {sink}"))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}
