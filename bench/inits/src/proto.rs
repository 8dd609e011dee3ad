//! The pure protocol of the micro-VM benchmark: kernel command line parameters and the result
//! lines `bench-node-init` prints (the host parses them with [`parse_result`]).
//!
//! Node console lines (one per measurement; `nullos-bench microvm` parses them):
//! - `bench: boot <vmm|qemu> round=<r> ms=<n>`: monitor spawned → guest's `bench-guest: init` line;
//! - `bench: rss <vmm|qemu> round=<r> overhead_kib=<n> total_kib=<n> guest_kib=<n>`;
//! - `bench: pss <vmm|qemu> round=<r> devices=<none|net+volume> overhead_kib=<n> total_kib=<n>
//!   guest_kib=<n> processes=<n>`;
//! - `bench: waiter vmm round=<r> devices=<none|net+volume> pss_kib=<n> private_kib=<n>`: the
//!   jail's waiting parent of the vmm (outside its pid namespace; not the vmm's own);
//! - `bench: jail vmm round=<r> run=<boot|devices|tcp> <what the node sees>`: the vmm of that run
//!   is jailed, as [`kernel_init::workloads::jail::observe`] describes it (`pid=… uid=… gid=…
//!   cap_eff=… no_new_privs=… seccomp=… ns=… cgroup=…`);
//! - `bench: cpu vmm round=<r> run=<boot|devices|tcp> periods=<n> throttled=<n> throttled_ms=<n>`:
//!   how often the jail's `cpu.max` (one CPU per vCPU plus half a CPU for the vmm's own threads) held the vmm
//!   back during that run;
//! - `bench: tcp <vmm|qemu> round=<r> bytes=<n> ms=<n> mib_s=<x.x>`;
//! - `bench: error <vmm|qemu|node> <what>: <message>`;
//! - `bench: done` last, before the node powers off.

use std::fmt;

use crate::memory::{CpuStat, Overhead, PssOverhead, Rollup};

pub use crate::summary::{median, summary};

/// The guest init's first console line; boot time ends when the node sees it.
pub const GUEST_MARKER: &str = "bench-guest: init";
/// The guest's line once its network is up and it has read and written its volume.
pub const GUEST_DEVICES: &str = "bench-guest: devices ready";
/// Prefix of the guest's throughput report line.
pub const GUEST_SENT: &str = "bench-guest: sent";
/// The node's last line.
pub const DONE_LINE: &str = "bench: done";
/// Prefix of the line that shows a vmm run jailed.
pub const JAIL_PREFIX: &str = "bench: jail vmm ";

/// Goal: our monitor reaches the guest's init in at most half QEMU microvm's time.
pub const GOAL_BOOT_RATIO: f64 = 0.5;
/// Goal: our monitor's memory overhead (beyond guest RAM) in KiB, whatever the measure.
pub const GOAL_OVERHEAD_KIB: u64 = 2048;
/// Goal: our guest→host TCP throughput at least QEMU user networking's.
pub const GOAL_TCP_RATIO: f64 = 1.0;

/// The devices of a guest besides its console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Devices {
    /// None: the boot run.
    None,
    /// virtio-net on the user-mode network and a virtio-blk volume.
    NetVolume,
}

impl Devices {
    /// Both, in the order of the summary.
    pub const ALL: [Devices; 2] = [Devices::None, Devices::NetVolume];

    /// The name in result lines.
    pub fn name(self) -> &'static str {
        match self {
            Devices::None => "none",
            Devices::NetVolume => "net+volume",
        }
    }

    fn parse(name: &str) -> Option<Devices> {
        Devices::ALL.into_iter().find(|d| d.name() == name)
    }
}

impl fmt::Display for Devices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which monitor ran the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Monitor {
    /// Our `vmm`.
    Vmm,
    /// `qemu-system-x86_64 -M microvm`.
    Qemu,
}

impl Monitor {
    /// Both, in the order every round runs them.
    pub const ALL: [Monitor; 2] = [Monitor::Vmm, Monitor::Qemu];

    /// The name in result lines.
    pub fn name(self) -> &'static str {
        match self {
            Monitor::Vmm => "vmm",
            Monitor::Qemu => "qemu",
        }
    }

    fn parse(name: &str) -> Option<Monitor> {
        Monitor::ALL.into_iter().find(|m| m.name() == name)
    }
}

impl fmt::Display for Monitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The value of `key=<value>` on a kernel command line (the last one wins, as for the kernel).
pub fn param<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline
        .split_whitespace()
        .filter_map(|word| word.split_once('='))
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| v)
        .next_back()
}

/// [`param`] as a number, `default` when absent or not a number.
pub fn param_u64(cmdline: &str, key: &str, default: u64) -> u64 {
    param(cmdline, key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What a result line measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Spawn to the guest's marker line, ms.
    Boot,
    /// RSS overhead of the monitor process (no devices), KiB.
    Rss,
    /// PSS overhead of the monitor's processes with these devices, KiB.
    Pss(Devices),
    /// PSS of the jail's waiting parent, KiB.
    Waiter,
    /// Guest→node TCP: bytes and ms.
    Tcp,
}

impl Kind {
    fn parse(word: &str) -> Option<Kind> {
        match word {
            "boot" => Some(Kind::Boot),
            "rss" => Some(Kind::Rss),
            // The devices come from the line's `devices=` field.
            "pss" => Some(Kind::Pss(Devices::None)),
            "waiter" => Some(Kind::Waiter),
            "tcp" => Some(Kind::Tcp),
            _ => None,
        }
    }
}

/// One parsed result line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// What was measured.
    pub kind: Kind,
    /// On which monitor.
    pub monitor: Monitor,
    /// 1-based round.
    pub round: u64,
    /// The figure: ms (boot), overhead KiB (rss, pss), PSS KiB (waiter), MiB/s (tcp).
    pub value: f64,
}

/// `bench: boot vmm round=1 ms=850`
pub fn boot_line(monitor: Monitor, round: u64, ms: u64) -> String {
    format!("bench: boot {monitor} round={round} ms={ms}")
}

/// `bench: rss vmm round=1 overhead_kib=1800 total_kib=3000 guest_kib=1200`
pub fn rss_line(monitor: Monitor, round: u64, o: &Overhead) -> String {
    format!(
        "bench: rss {monitor} round={round} overhead_kib={} total_kib={} guest_kib={}",
        o.overhead_kib, o.total_kib, o.guest_kib
    )
}

/// `bench: pss vmm round=1 devices=net+volume overhead_kib=1900 total_kib=3100 guest_kib=1200
/// processes=1`
pub fn pss_line(monitor: Monitor, round: u64, devices: Devices, o: &PssOverhead) -> String {
    format!(
        "bench: pss {monitor} round={round} devices={devices} overhead_kib={} total_kib={} guest_kib={} processes={}",
        o.overhead_kib, o.total_kib, o.guest_kib, o.processes
    )
}

/// `bench: waiter vmm round=1 devices=none pss_kib=400 private_kib=60`
pub fn waiter_line(round: u64, devices: Devices, waiter: &Rollup) -> String {
    format!(
        "bench: waiter vmm round={round} devices={devices} pss_kib={} private_kib={}",
        waiter.pss_kib, waiter.private_kib
    )
}

/// `bench: jail vmm round=1 run=boot pid=… uid=…`: `observed` as the node describes the vmm.
pub fn jail_line(round: u64, run: &str, observed: &str) -> String {
    format!("{JAIL_PREFIX}round={round} run={run} {observed}")
}

/// Whether `line` is a [`jail_line`] (the host counts them: the jail was on for that run).
pub fn is_jail_line(line: &str) -> bool {
    line.trim().starts_with(JAIL_PREFIX)
}

/// `bench: cpu vmm round=1 run=tcp periods=900 throttled=120 throttled_ms=3400`
pub fn cpu_line(round: u64, run: &str, cpu: &CpuStat) -> String {
    format!(
        "bench: cpu vmm round={round} run={run} periods={} throttled={} throttled_ms={}",
        cpu.periods,
        cpu.throttled,
        cpu.throttled_usec / 1000
    )
}

/// `bench: tcp vmm round=1 bytes=67108864 ms=800 mib_s=80.0`
pub fn tcp_line(monitor: Monitor, round: u64, bytes: u64, ms: u64) -> String {
    let rate = mib_per_s(bytes, ms).map_or_else(|| "n/a".to_string(), |r| format!("{r:.1}"));
    format!("bench: tcp {monitor} round={round} bytes={bytes} ms={ms} mib_s={rate}")
}

/// MiB/s for `bytes` in `ms`; `None` for 0 ms.
pub fn mib_per_s(bytes: u64, ms: u64) -> Option<f64> {
    if ms == 0 {
        return None;
    }
    // Exact for any transfer this benchmark makes (< 2^53 bytes).
    #[allow(clippy::cast_precision_loss)]
    Some(bytes as f64 / (1024.0 * 1024.0) / (ms as f64 / 1000.0))
}

/// Parses a `bench: boot|rss|pss|waiter|tcp ...` line; `None` for anything else (errors,
/// jail lines, progress, noise).
pub fn parse_result(line: &str) -> Option<Sample> {
    let rest = line.trim().strip_prefix("bench: ")?;
    let mut words = rest.split_whitespace();
    let mut kind = Kind::parse(words.next()?)?;
    let monitor = Monitor::parse(words.next()?)?;
    let fields: Vec<(&str, &str)> = words.filter_map(|w| w.split_once('=')).collect();
    let text = |key: &str| fields.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    let field = |key: &str| -> Option<u64> { text(key).and_then(|v| v.parse().ok()) };
    let round = field("round")?;
    if let Kind::Pss(_) = kind {
        kind = Kind::Pss(Devices::parse(text("devices")?)?);
    }
    // Exact for any figure here (< 2^53).
    #[allow(clippy::cast_precision_loss)]
    let value = match kind {
        Kind::Boot => field("ms")? as f64,
        Kind::Rss | Kind::Pss(_) => field("overhead_kib")? as f64,
        Kind::Waiter => field("pss_kib")? as f64,
        Kind::Tcp => mib_per_s(field("bytes")?, field("ms")?)?,
    };
    Some(Sample {
        kind,
        monitor,
        round,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_read_from_the_command_line() {
        let cmdline = "console=ttyS0 bench.mode=hold bench.hold_ms=2000 quiet bench.mode=send\n";
        assert_eq!(param(cmdline, "bench.mode"), Some("send"));
        assert_eq!(param_u64(cmdline, "bench.hold_ms", 5), 2000);
        assert_eq!(param_u64(cmdline, "bench.mib", 64), 64);
        assert_eq!(param_u64("bench.mib=x", "bench.mib", 64), 64);
        assert_eq!(param(cmdline, "quiet"), None);
    }

    fn sample(kind: Kind, monitor: Monitor, round: u64, value: f64) -> Sample {
        Sample {
            kind,
            monitor,
            round,
            value,
        }
    }

    #[test]
    fn result_lines_round_trip_through_the_parser() {
        let rss = Overhead {
            total_kib: 3000,
            guest_kib: 1200,
            overhead_kib: 1800,
        };
        let pss = PssOverhead {
            total_kib: 3100,
            guest_kib: 1200,
            overhead_kib: 1900,
            processes: 1,
        };
        let waiter = Rollup {
            rss_kib: 900,
            pss_kib: 400,
            private_kib: 60,
        };
        let lines = [
            boot_line(Monitor::Vmm, 1, 850),
            rss_line(Monitor::Qemu, 2, &rss),
            pss_line(Monitor::Vmm, 2, Devices::NetVolume, &pss),
            pss_line(Monitor::Qemu, 2, Devices::None, &pss),
            waiter_line(3, Devices::None, &waiter),
            tcp_line(Monitor::Vmm, 3, 64 << 20, 2000),
        ];
        assert_eq!(
            lines[2],
            "bench: pss vmm round=2 devices=net+volume overhead_kib=1900 total_kib=3100 \
             guest_kib=1200 processes=1"
        );
        assert_eq!(
            lines[4],
            "bench: waiter vmm round=3 devices=none pss_kib=400 private_kib=60"
        );
        assert_eq!(
            lines[5],
            "bench: tcp vmm round=3 bytes=67108864 ms=2000 mib_s=32.0"
        );
        let parsed: Vec<Sample> = lines.iter().filter_map(|l| parse_result(l)).collect();
        assert_eq!(
            parsed,
            vec![
                sample(Kind::Boot, Monitor::Vmm, 1, 850.0),
                sample(Kind::Rss, Monitor::Qemu, 2, 1800.0),
                sample(Kind::Pss(Devices::NetVolume), Monitor::Vmm, 2, 1900.0),
                sample(Kind::Pss(Devices::None), Monitor::Qemu, 2, 1900.0),
                sample(Kind::Waiter, Monitor::Vmm, 3, 400.0),
                sample(Kind::Tcp, Monitor::Vmm, 3, 32.0),
            ]
        );
        assert_eq!(parse_result("bench: error vmm boot: timed out"), None);
        assert_eq!(parse_result("bench: boot firecracker round=1 ms=5"), None);
        assert_eq!(parse_result("bench: tcp vmm round=1 bytes=5 ms=0"), None);
        assert_eq!(parse_result("[vmm] bench: boot vmm round=1 ms=5"), None);
        // A pss line must say which devices it had.
        assert_eq!(parse_result("bench: pss vmm round=1 overhead_kib=5"), None);
        assert_eq!(
            parse_result("bench: pss vmm round=1 devices=gpu overhead_kib=5"),
            None
        );
    }

    #[test]
    fn jail_lines_are_told_apart_from_results() {
        let line = jail_line(
            2,
            "devices",
            "pid=71 uid=100042 gid=100042 cap_eff=0000000000000000 no_new_privs=1 seccomp=2 \
             ns=mnt,pid,ipc,uts cgroup=/nullos/bench",
        );
        assert!(line.starts_with("bench: jail vmm round=2 run=devices pid=71 uid=100042"));
        assert!(is_jail_line(&line));
        assert_eq!(parse_result(&line), None);
        assert!(!is_jail_line("bench: error vmm jail: not observed"));
        let cpu = CpuStat {
            periods: 900,
            throttled: 120,
            throttled_usec: 3_400_999,
        };
        let line = cpu_line(1, "tcp", &cpu);
        assert_eq!(
            line,
            "bench: cpu vmm round=1 run=tcp periods=900 throttled=120 throttled_ms=3400"
        );
        assert_eq!(parse_result(&line), None);
        assert!(!is_jail_line("[vmm] bench: jail vmm round=1"));
    }
}
