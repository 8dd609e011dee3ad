//! The pure protocol of the micro-VM benchmark: kernel command line parameters, the result lines
//! `bench-node-init` prints, `/proc/<pid>/smaps` accounting, and the summary the host prints.
//!
//! Node console lines (one per measurement; `nullos-bench microvm` parses them):
//! - `bench: boot <vmm|qemu> round=<r> ms=<n>`: monitor spawned → guest's `bench-guest: init` line;
//! - `bench: rss <vmm|qemu> round=<r> overhead_kib=<n> total_kib=<n> guest_kib=<n>`;
//! - `bench: tcp <vmm|qemu> round=<r> bytes=<n> ms=<n> mib_s=<x.x>`;
//! - `bench: error <vmm|qemu|node> <what>: <message>`;
//! - `bench: done` last, before the node powers off.

use std::fmt;

/// The guest init's first console line; boot time ends when the node sees it.
pub const GUEST_MARKER: &str = "bench-guest: init";
/// Prefix of the guest's throughput report line.
pub const GUEST_SENT: &str = "bench-guest: sent";
/// The node's last line.
pub const DONE_LINE: &str = "bench: done";

/// Goal: our monitor reaches the guest's init in at most half QEMU microvm's time.
pub const GOAL_BOOT_RATIO: f64 = 0.5;
/// Goal: our monitor's memory overhead (RSS minus guest RAM) in KiB.
pub const GOAL_OVERHEAD_KIB: u64 = 2048;
/// Goal: our guest→host TCP throughput at least QEMU user networking's.
pub const GOAL_TCP_RATIO: f64 = 1.0;

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

/// One memory mapping of `/proc/<pid>/smaps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// `Size:` in KiB (the mapping's virtual size).
    pub size_kib: u64,
    /// `Rss:` in KiB (resident).
    pub rss_kib: u64,
    /// The backing path or pseudo-name (`[heap]`, ...); empty for an anonymous mapping.
    pub name: String,
}

/// Parses `/proc/<pid>/smaps`: a header line per mapping (`start-end perms offset dev inode
/// [name]`) followed by `Key: value [kB]` lines.
pub fn parse_smaps(text: &str) -> Vec<Mapping> {
    let mut mappings: Vec<Mapping> = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        if let Some(key) = first.strip_suffix(':') {
            let Some(current) = mappings.last_mut() else {
                continue;
            };
            let value = words.next().and_then(|v| v.parse::<u64>().ok());
            match (key, value) {
                ("Size", Some(v)) => current.size_kib = v,
                ("Rss", Some(v)) => current.rss_kib = v,
                _ => {}
            }
        } else if is_address_range(first) {
            let name = header_name(line);
            mappings.push(Mapping {
                size_kib: 0,
                rss_kib: 0,
                name: name.to_string(),
            });
        }
    }
    mappings
}

fn is_address_range(word: &str) -> bool {
    word.split_once('-').is_some_and(|(a, b)| {
        !a.is_empty()
            && !b.is_empty()
            && a.bytes().all(|c| c.is_ascii_hexdigit())
            && b.bytes().all(|c| c.is_ascii_hexdigit())
    })
}

/// The name after the five fixed fields (range, perms, offset, dev, inode); it may contain
/// spaces, and is empty for an anonymous mapping.
fn header_name(line: &str) -> &str {
    let mut rest = line;
    for _ in 0..5 {
        rest = rest.trim_start();
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        rest = &rest[end..];
    }
    rest.trim()
}

/// The memory overhead of a monitor, measured as Firecracker does: the RSS of every mapping
/// except guest RAM, the anonymous mapping whose size equals the guest's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overhead {
    /// RSS of the whole process, KiB.
    pub total_kib: u64,
    /// RSS of the guest RAM mapping(s), KiB.
    pub guest_kib: u64,
    /// `total_kib - guest_kib`.
    pub overhead_kib: u64,
}

/// Computes the [`Overhead`]; `None` when no anonymous mapping has exactly `guest_mib` MiB (then
/// the guest RAM cannot be told apart and a number would be wrong).
pub fn overhead(mappings: &[Mapping], guest_mib: u64) -> Option<Overhead> {
    let guest_size = guest_mib.checked_mul(1024)?;
    let total_kib: u64 = mappings.iter().map(|m| m.rss_kib).sum();
    let guest: Vec<&Mapping> = mappings
        .iter()
        .filter(|m| m.name.is_empty() && m.size_kib == guest_size)
        .collect();
    if guest.is_empty() {
        return None;
    }
    let guest_kib: u64 = guest.iter().map(|m| m.rss_kib).sum();
    Some(Overhead {
        total_kib,
        guest_kib,
        overhead_kib: total_kib.saturating_sub(guest_kib),
    })
}

/// What a result line measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Spawn to the guest's marker line, ms.
    Boot,
    /// Memory overhead, KiB.
    Rss,
    /// Guest→node TCP: bytes and ms.
    Tcp,
}

impl Kind {
    fn parse(word: &str) -> Option<Kind> {
        match word {
            "boot" => Some(Kind::Boot),
            "rss" => Some(Kind::Rss),
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
    /// The figure: ms (boot), overhead KiB (rss), MiB/s (tcp).
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

/// Parses a `bench: boot|rss|tcp ...` line; `None` for anything else (errors, progress, noise).
pub fn parse_result(line: &str) -> Option<Sample> {
    let rest = line.trim().strip_prefix("bench: ")?;
    let mut words = rest.split_whitespace();
    let kind = Kind::parse(words.next()?)?;
    let monitor = Monitor::parse(words.next()?)?;
    let fields: Vec<(&str, &str)> = words.filter_map(|w| w.split_once('=')).collect();
    let field = |key: &str| -> Option<u64> {
        fields
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.parse().ok())
    };
    let round = field("round")?;
    // Exact for any figure here (< 2^53).
    #[allow(clippy::cast_precision_loss)]
    let value = match kind {
        Kind::Boot => field("ms")? as f64,
        Kind::Rss => field("overhead_kib")? as f64,
        Kind::Tcp => mib_per_s(field("bytes")?, field("ms")?)?,
    };
    Some(Sample {
        kind,
        monitor,
        round,
        value,
    })
}

/// Median of the samples of one kind and monitor.
pub fn median_of(samples: &[Sample], kind: Kind, monitor: Monitor) -> Option<f64> {
    // Scaled to integers for median: thousandths keep MiB/s exact enough.
    let scaled: Vec<u64> = samples
        .iter()
        .filter(|s| s.kind == kind && s.monitor == monitor)
        .map(|s| scale(s.value))
        .collect();
    median(&scaled).map(|m| m / 1000.0)
}

#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "non-negative figures far below 2^53 / 1000"
)]
fn scale(value: f64) -> u64 {
    (value * 1000.0).round().max(0.0) as u64
}

fn ratio(ours: f64, theirs: f64) -> String {
    if theirs > 0.0 {
        format!("{:.2}", ours / theirs)
    } else {
        "n/a".to_string()
    }
}

fn figure(value: Option<f64>, decimals: usize, unit: &str) -> String {
    value.map_or_else(|| "n/a".to_string(), |v| format!("{v:.decimals$} {unit}"))
}

/// The three summary lines (medians over the rounds, ratio ours/QEMU, goal); a side without
/// samples shows `n/a`.
pub fn summary(samples: &[Sample]) -> Vec<String> {
    let m = |kind, monitor| median_of(samples, kind, monitor);
    let pair = |kind| (m(kind, Monitor::Vmm), m(kind, Monitor::Qemu));
    let ratio_of = |(ours, theirs): (Option<f64>, Option<f64>)| match (ours, theirs) {
        (Some(o), Some(t)) => ratio(o, t),
        _ => "n/a".to_string(),
    };
    let boot = pair(Kind::Boot);
    let rss = pair(Kind::Rss);
    let tcp = pair(Kind::Tcp);
    vec![
        format!(
            "microvm boot-to-init: vmm {} vs qemu microvm {} => ratio {} (goal <= {GOAL_BOOT_RATIO:.2})",
            figure(boot.0, 0, "ms"),
            figure(boot.1, 0, "ms"),
            ratio_of(boot)
        ),
        format!(
            "microvm memory overhead: vmm {} vs qemu microvm {} => ratio {} (goal: vmm <= {GOAL_OVERHEAD_KIB} KiB)",
            figure(rss.0, 0, "KiB"),
            figure(rss.1, 0, "KiB"),
            ratio_of(rss)
        ),
        format!(
            "microvm guest->host tcp: vmm {} vs qemu user net {} => ratio {} (goal >= {GOAL_TCP_RATIO:.2})",
            figure(tcp.0, 1, "MiB/s"),
            figure(tcp.1, 1, "MiB/s"),
            ratio_of(tcp)
        ),
    ]
}

/// Median of the samples (mean of the middle two for an even count); `None` when empty.
pub fn median(samples: &[u64]) -> Option<f64> {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    // u64 -> f64 is exact for any boot time in milliseconds we will ever see (< 2^53).
    #[allow(clippy::cast_precision_loss)]
    let at = |i: usize| sorted[i] as f64;
    Some(if n % 2 == 1 {
        at(n / 2)
    } else {
        (at(n / 2 - 1) + at(n / 2)) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0c8a00000-55d0c8a80000 r-xp 00000000 fd:01 1234                       /usr/bin/qemu-system-x86_64
Size:                512 kB
KernelPageSize:        4 kB
Rss:                 300 kB
Pss:                 300 kB
VmFlags: rd ex mr mw me dw
55d0c9000000-55d0c9100000 rw-p 00000000 00:00 0                          [heap]
Size:               1024 kB
Rss:                 700 kB
7f0000000000-7f0008000000 rw-p 00000000 00:00 0 
Size:             131072 kB
Rss:               20000 kB
7f0008000000-7f0008001000 ---p 00000000 00:00 0 
Size:                  4 kB
Rss:                   0 kB
7f0009000000-7f0009200000 rw-p 00000000 00:00 0
Size:               2048 kB
Rss:                 150 kB
7f000a000000-7f000a001000 r--p 00000000 fd:01 99                         /tmp/a file with spaces
Size:                  4 kB
Rss:                   4 kB
";

    #[test]
    fn smaps_mappings_are_read_with_their_names() {
        let maps = parse_smaps(SMAPS);
        let got: Vec<(u64, u64, &str)> = maps
            .iter()
            .map(|m| (m.size_kib, m.rss_kib, m.name.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (512, 300, "/usr/bin/qemu-system-x86_64"),
                (1024, 700, "[heap]"),
                (131_072, 20_000, ""),
                (4, 0, ""),
                (2048, 150, ""),
                (4, 4, "/tmp/a file with spaces"),
            ]
        );
    }

    #[test]
    fn overhead_excludes_only_the_anonymous_guest_ram_mapping() {
        let maps = parse_smaps(SMAPS);
        assert_eq!(
            overhead(&maps, 128),
            Some(Overhead {
                total_kib: 21_154,
                guest_kib: 20_000,
                overhead_kib: 1_154,
            })
        );
        // No mapping of 256 MiB: refuse rather than report the whole RSS as overhead.
        assert_eq!(overhead(&maps, 256), None);
        // A file mapping of the guest's size is not guest RAM.
        let file_backed = vec![Mapping {
            size_kib: 2048,
            rss_kib: 10,
            name: "/x".into(),
        }];
        assert_eq!(overhead(&file_backed, 2), None);
    }

    #[test]
    fn params_are_read_from_the_command_line() {
        let cmdline = "console=ttyS0 bench.mode=hold bench.hold_ms=2000 quiet bench.mode=send\n";
        assert_eq!(param(cmdline, "bench.mode"), Some("send"));
        assert_eq!(param_u64(cmdline, "bench.hold_ms", 5), 2000);
        assert_eq!(param_u64(cmdline, "bench.mib", 64), 64);
        assert_eq!(param_u64("bench.mib=x", "bench.mib", 64), 64);
        assert_eq!(param(cmdline, "quiet"), None);
    }

    #[test]
    fn result_lines_round_trip_through_the_parser() {
        let o = Overhead {
            total_kib: 3000,
            guest_kib: 1200,
            overhead_kib: 1800,
        };
        let lines = [
            boot_line(Monitor::Vmm, 1, 850),
            rss_line(Monitor::Qemu, 2, &o),
            tcp_line(Monitor::Vmm, 3, 64 << 20, 2000),
        ];
        assert_eq!(
            lines[2],
            "bench: tcp vmm round=3 bytes=67108864 ms=2000 mib_s=32.0"
        );
        let parsed: Vec<Sample> = lines.iter().filter_map(|l| parse_result(l)).collect();
        assert_eq!(
            parsed,
            vec![
                Sample {
                    kind: Kind::Boot,
                    monitor: Monitor::Vmm,
                    round: 1,
                    value: 850.0
                },
                Sample {
                    kind: Kind::Rss,
                    monitor: Monitor::Qemu,
                    round: 2,
                    value: 1800.0
                },
                Sample {
                    kind: Kind::Tcp,
                    monitor: Monitor::Vmm,
                    round: 3,
                    value: 32.0
                },
            ]
        );
        assert_eq!(parse_result("bench: error vmm boot: timed out"), None);
        assert_eq!(parse_result("bench: boot firecracker round=1 ms=5"), None);
        assert_eq!(parse_result("bench: tcp vmm round=1 bytes=5 ms=0"), None);
        assert_eq!(parse_result("[vmm] bench: boot vmm round=1 ms=5"), None);
    }

    #[test]
    fn the_summary_has_medians_ratios_and_goals() {
        let s = |kind, monitor, round, value| Sample {
            kind,
            monitor,
            round,
            value,
        };
        let samples = vec![
            s(Kind::Boot, Monitor::Vmm, 1, 900.0),
            s(Kind::Boot, Monitor::Vmm, 2, 800.0),
            s(Kind::Boot, Monitor::Vmm, 3, 1000.0),
            s(Kind::Boot, Monitor::Qemu, 1, 1800.0),
            s(Kind::Rss, Monitor::Vmm, 1, 1500.0),
            s(Kind::Rss, Monitor::Qemu, 1, 30000.0),
            s(Kind::Tcp, Monitor::Vmm, 1, 120.5),
        ];
        assert_eq!(
            summary(&samples),
            vec![
                "microvm boot-to-init: vmm 900 ms vs qemu microvm 1800 ms => ratio 0.50 (goal <= 0.50)",
                "microvm memory overhead: vmm 1500 KiB vs qemu microvm 30000 KiB => ratio 0.05 (goal: vmm <= 2048 KiB)",
                "microvm guest->host tcp: vmm 120.5 MiB/s vs qemu user net n/a => ratio n/a (goal >= 1.00)",
            ]
        );
    }
}
