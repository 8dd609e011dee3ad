//! A monitor's memory overhead from `/proc` texts, pure: `smaps` (per mapping, to find guest
//! RAM), `smaps_rollup` (one process's totals), `stat` (its parent, to find the processes a
//! monitor owns); and, beside it, the CPU throttling of the jail's cgroup (`cpu.stat`). The
//! node reads the files; everything here is plain text in, figures out.
//!
//! Two measures:
//! - **RSS overhead** ([`overhead`], Firecracker's method): the RSS of every mapping of the
//!   monitor except guest RAM, the anonymous mapping whose size is exactly the guest's memory.
//! - **PSS overhead** ([`pss_overhead`]): the proportional set size of the monitor and every
//!   process below it ([`descendants`]; threads share their process's memory, so its rollup
//!   covers them), minus the PSS of guest RAM. A page shared with another process counts for
//!   its share only, so memory the monitor shares with the node is not counted twice.

/// One memory mapping of `/proc/<pid>/smaps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// `Size:` in KiB (the mapping's virtual size).
    pub size_kib: u64,
    /// `Rss:` in KiB (resident).
    pub rss_kib: u64,
    /// `Pss:` in KiB (resident, shared pages divided among their sharers).
    pub pss_kib: u64,
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
                ("Pss", Some(v)) => current.pss_kib = v,
                _ => {}
            }
        } else if is_address_range(first) {
            mappings.push(Mapping {
                size_kib: 0,
                rss_kib: 0,
                pss_kib: 0,
                name: header_name(line).to_string(),
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

/// Guest RAM among `mappings`: the anonymous mappings of exactly `guest_mib`; `None` when there
/// is none (then guest RAM cannot be told apart and any figure would be wrong).
fn guest_ram(mappings: &[Mapping], guest_mib: u64) -> Option<Vec<&Mapping>> {
    let guest_size = guest_mib.checked_mul(1024)?;
    let guest: Vec<&Mapping> = mappings
        .iter()
        .filter(|m| m.name.is_empty() && m.size_kib == guest_size)
        .collect();
    (!guest.is_empty()).then_some(guest)
}

/// The RSS overhead of a monitor, measured as Firecracker does: the RSS of every mapping
/// except guest RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overhead {
    /// RSS of the whole process, KiB.
    pub total_kib: u64,
    /// RSS of the guest RAM mapping(s), KiB.
    pub guest_kib: u64,
    /// `total_kib - guest_kib`.
    pub overhead_kib: u64,
}

/// Computes the [`Overhead`]; `None` when no anonymous mapping has exactly `guest_mib` MiB.
pub fn overhead(mappings: &[Mapping], guest_mib: u64) -> Option<Overhead> {
    let guest_kib = guest_ram(mappings, guest_mib)?
        .iter()
        .map(|m| m.rss_kib)
        .sum();
    let total_kib: u64 = mappings.iter().map(|m| m.rss_kib).sum();
    Some(Overhead {
        total_kib,
        guest_kib,
        overhead_kib: total_kib.saturating_sub(guest_kib),
    })
}

/// One process's totals from `/proc/<pid>/smaps_rollup`, KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rollup {
    /// `Rss:`.
    pub rss_kib: u64,
    /// `Pss:`.
    pub pss_kib: u64,
    /// `Private_Clean:` + `Private_Dirty:` (what only this process maps).
    pub private_kib: u64,
}

/// Parses `/proc/<pid>/smaps_rollup` (a header line, then `Key: value kB` lines); `None` without
/// a `Pss:` line (not a rollup, or a process that has no memory any more).
pub fn parse_rollup(text: &str) -> Option<Rollup> {
    let mut rollup = Rollup::default();
    let mut pss_seen = false;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let (Some(key), Some(value)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(value) = value.parse::<u64>() else {
            continue;
        };
        match key {
            "Rss:" => rollup.rss_kib = value,
            "Pss:" => {
                rollup.pss_kib = value;
                pss_seen = true;
            }
            "Private_Clean:" | "Private_Dirty:" => {
                rollup.private_kib = rollup.private_kib.saturating_add(value);
            }
            _ => {}
        }
    }
    pss_seen.then_some(rollup)
}

/// The parent pid in a `/proc/<pid>/stat` text: the second field after the command name, which
/// is in parentheses and may itself hold spaces and parentheses (hence the last `)`).
pub fn parse_ppid(stat: &str) -> Option<u32> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    let _state = fields.next()?;
    fields.next()?.parse().ok()
}

/// `root` and every process below it, `root` first, from `(pid, parent pid)` pairs; each pid
/// once whatever the pairs say.
pub fn descendants(root: u32, parents: &[(u32, u32)]) -> Vec<u32> {
    let mut tree = vec![root];
    let mut next = 0;
    while let Some(&pid) = tree.get(next) {
        for &(child, parent) in parents {
            if parent == pid && !tree.contains(&child) {
                tree.push(child);
            }
        }
        next += 1;
    }
    tree
}

/// The PSS overhead of a monitor's processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PssOverhead {
    /// PSS of every process, KiB.
    pub total_kib: u64,
    /// PSS of guest RAM, KiB.
    pub guest_kib: u64,
    /// `total_kib - guest_kib`.
    pub overhead_kib: u64,
    /// How many processes were summed.
    pub processes: usize,
}

/// Sums the PSS of `rollups` (the monitor and the processes below it) and takes away the PSS of
/// guest RAM, found in the monitor's own `smaps`; `None` when guest RAM is not there or no
/// process was read.
pub fn pss_overhead(
    rollups: &[Rollup],
    monitor: &[Mapping],
    guest_mib: u64,
) -> Option<PssOverhead> {
    if rollups.is_empty() {
        return None;
    }
    let guest_kib = guest_ram(monitor, guest_mib)?
        .iter()
        .map(|m| m.pss_kib)
        .sum();
    let total_kib: u64 = rollups.iter().map(|r| r.pss_kib).sum();
    Some(PssOverhead {
        total_kib,
        guest_kib,
        overhead_kib: total_kib.saturating_sub(guest_kib),
        processes: rollups.len(),
    })
}

/// The throttling counters of a cgroup's `cpu.stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuStat {
    /// `nr_periods`: enforcement periods that had runnable tasks.
    pub periods: u64,
    /// `nr_throttled`: periods in which the cgroup ran out of its `cpu.max` quota.
    pub throttled: u64,
    /// `throttled_usec`: how long its tasks waited for the next period.
    pub throttled_usec: u64,
}

impl CpuStat {
    /// What happened between `earlier` and `self` (the counters only grow; a reset gives 0).
    pub fn since(&self, earlier: &CpuStat) -> CpuStat {
        CpuStat {
            periods: self.periods.saturating_sub(earlier.periods),
            throttled: self.throttled.saturating_sub(earlier.throttled),
            throttled_usec: self.throttled_usec.saturating_sub(earlier.throttled_usec),
        }
    }
}

/// Parses a cgroup v2 `cpu.stat` (`key value` lines); `None` without the throttling counters
/// (the cpu controller is not enabled there).
pub fn parse_cpu_stat(text: &str) -> Option<CpuStat> {
    let value = |key: &str| {
        text.lines().find_map(|line| {
            let (k, v) = line.split_once(' ')?;
            (k == key).then(|| v.trim().parse::<u64>().ok()).flatten()
        })
    };
    Some(CpuStat {
        periods: value("nr_periods")?,
        throttled: value("nr_throttled")?,
        throttled_usec: value("throttled_usec")?,
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
Pss:                 150 kB
VmFlags: rd ex mr mw me dw
55d0c9000000-55d0c9100000 rw-p 00000000 00:00 0                          [heap]
Size:               1024 kB
Rss:                 700 kB
Pss:                 700 kB
7f0000000000-7f0008000000 rw-p 00000000 00:00 0 
Size:             131072 kB
Rss:               20000 kB
Pss:               19998 kB
7f0008000000-7f0008001000 ---p 00000000 00:00 0 
Size:                  4 kB
Rss:                   0 kB
7f0009000000-7f0009200000 rw-p 00000000 00:00 0
Size:               2048 kB
Rss:                 150 kB
Pss:                 150 kB
7f000a000000-7f000a001000 r--p 00000000 fd:01 99                         /tmp/a file with spaces
Size:                  4 kB
Rss:                   4 kB
Pss:                   1 kB
";

    /// A real `smaps_rollup` (of `cat`, on this project's development host, Linux 6.18).
    const ROLLUP: &str = "\
55e06ee79000-7ffe30a4f000 ---p 00000000 00:00 0                          [rollup]
Rss:                1692 kB
Pss:                 296 kB
Pss_Dirty:           112 kB
Pss_Anon:            112 kB
Pss_File:            184 kB
Pss_Shmem:             0 kB
Shared_Clean:       1524 kB
Shared_Dirty:          0 kB
Private_Clean:        56 kB
Private_Dirty:       112 kB
Referenced:         1692 kB
Anonymous:           112 kB
KSM:                   0 kB
LazyFree:              0 kB
AnonHugePages:         0 kB
ShmemPmdMapped:        0 kB
FilePmdMapped:         0 kB
Shared_Hugetlb:        0 kB
Private_Hugetlb:       0 kB
Swap:                  0 kB
SwapPss:               0 kB
Locked:                0 kB
";

    #[test]
    fn smaps_mappings_are_read_with_their_names() {
        let maps = parse_smaps(SMAPS);
        let got: Vec<(u64, u64, u64, &str)> = maps
            .iter()
            .map(|m| (m.size_kib, m.rss_kib, m.pss_kib, m.name.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (512, 300, 150, "/usr/bin/qemu-system-x86_64"),
                (1024, 700, 700, "[heap]"),
                (131_072, 20_000, 19_998, ""),
                (4, 0, 0, ""),
                (2048, 150, 150, ""),
                (4, 4, 1, "/tmp/a file with spaces"),
            ]
        );
    }

    #[test]
    fn rss_overhead_excludes_only_the_anonymous_guest_ram_mapping() {
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
            pss_kib: 10,
            name: "/x".into(),
        }];
        assert_eq!(overhead(&file_backed, 2), None);
    }

    #[test]
    fn rollups_give_rss_pss_and_private() {
        assert_eq!(
            parse_rollup(ROLLUP),
            Some(Rollup {
                rss_kib: 1692,
                pss_kib: 296,
                private_kib: 168,
            })
        );
        // Pss_Anon and the like are not Pss; without Pss there is no figure.
        assert_eq!(parse_rollup("Rss: 5 kB\nPss_Anon: 5 kB\n"), None);
        assert_eq!(parse_rollup(""), None);
        assert_eq!(
            parse_rollup("Pss: 7 kB\nPss: x kB\n"),
            Some(Rollup {
                rss_kib: 0,
                pss_kib: 7,
                private_kib: 0
            })
        );
    }

    #[test]
    fn pss_overhead_sums_every_process_and_takes_away_guest_ram() {
        let maps = parse_smaps(SMAPS);
        let monitor = Rollup {
            rss_kib: 21_154,
            pss_kib: 20_999,
            private_kib: 20_850,
        };
        let helper = Rollup {
            rss_kib: 800,
            pss_kib: 300,
            private_kib: 100,
        };
        assert_eq!(
            pss_overhead(&[monitor, helper], &maps, 128),
            Some(PssOverhead {
                total_kib: 21_299,
                guest_kib: 19_998,
                overhead_kib: 1_301,
                processes: 2,
            })
        );
        assert_eq!(pss_overhead(&[monitor], &maps, 64), None);
        assert_eq!(pss_overhead(&[], &maps, 128), None);
    }

    #[test]
    fn the_parent_is_read_past_any_command_name() {
        assert_eq!(
            parse_ppid("412 (vmm) S 411 412 1 0 -1 4194560 90 0 0 0"),
            Some(411)
        );
        assert_eq!(parse_ppid("7 (a) b (c) R 3 7 1"), Some(3));
        assert_eq!(parse_ppid("7 (vmm) S"), None);
        assert_eq!(parse_ppid("garbage"), None);
    }

    #[test]
    fn cpu_throttling_is_read_and_differenced() {
        let before = "usage_usec 1000\nuser_usec 600\nsystem_usec 400\nnr_periods 10\n\
                      nr_throttled 2\nthrottled_usec 5000\nnr_bursts 0\nburst_usec 0\n";
        let after = before
            .replace("nr_periods 10", "nr_periods 50")
            .replace("nr_throttled 2", "nr_throttled 12")
            .replace("throttled_usec 5000", "throttled_usec 905000");
        let before = parse_cpu_stat(before).unwrap();
        assert_eq!(
            before,
            CpuStat {
                periods: 10,
                throttled: 2,
                throttled_usec: 5000
            }
        );
        assert_eq!(
            parse_cpu_stat(&after).unwrap().since(&before),
            CpuStat {
                periods: 40,
                throttled: 10,
                throttled_usec: 900_000
            }
        );
        assert_eq!(
            before.since(&parse_cpu_stat(&after).unwrap()),
            CpuStat::default()
        );
        // Without the cpu controller, cpu.stat has only the usage lines.
        assert_eq!(parse_cpu_stat("usage_usec 1000\nuser_usec 600\n"), None);
    }

    #[test]
    fn descendants_are_the_whole_subtree_once() {
        let parents = [(2, 1), (3, 2), (4, 1), (5, 9), (6, 3), (3, 2)];
        assert_eq!(descendants(2, &parents), vec![2, 3, 6]);
        assert_eq!(descendants(1, &parents), vec![1, 2, 4, 3, 6]);
        assert_eq!(descendants(8, &parents), vec![8]);
        // A cycle (pids reused between two reads) ends.
        assert_eq!(descendants(1, &[(2, 1), (1, 2)]), vec![1, 2]);
    }
}
