//! The summary `nullos-bench microvm` prints: medians over the rounds, our monitor against QEMU
//! microvm as a ratio, and whether each goal is met. Pure: samples in, lines out.

use crate::proto::{
    Devices, Kind, Monitor, Sample, GOAL_BOOT_RATIO, GOAL_OVERHEAD_KIB, GOAL_TCP_RATIO,
};

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

/// Ours over theirs; `None` without both figures or when theirs is 0.
pub fn ratio(ours: Option<f64>, theirs: Option<f64>) -> Option<f64> {
    match (ours, theirs) {
        (Some(o), Some(t)) if t > 0.0 => Some(o / t),
        _ => None,
    }
}

/// A goal's verdict: `met`, `missed`, or `n/a` when the figure is missing.
pub fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "missed",
        None => "n/a",
    }
}

fn figure(value: Option<f64>, decimals: usize, unit: &str) -> String {
    value.map_or_else(|| "n/a".to_string(), |v| format!("{v:.decimals$} {unit}"))
}

fn ratio_text(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_string(), |r| format!("{r:.2}"))
}

/// The summary lines. `jailed_runs` is how many `bench: jail` lines the node printed, out of
/// `vmm_runs` runs of our monitor (boot, devices and tcp runs); a side without samples shows
/// `n/a`, and so does the verdict of a goal that needs it.
pub fn summary(samples: &[Sample], jailed_runs: usize, vmm_runs: usize) -> Vec<String> {
    let m = |kind, monitor| median_of(samples, kind, monitor);
    let pair = |kind| (m(kind, Monitor::Vmm), m(kind, Monitor::Qemu));
    let jail = if jailed_runs > 0 && jailed_runs == vmm_runs {
        format!(
            "microvm jail: on, every vmm run ({jailed_runs}) seen jailed by the node (own uid, \
             no capabilities, no_new_privs, seccomp, mount/pid/ipc/uts namespaces, own root, \
             descriptors, cgroup, rlimits)"
        )
    } else {
        format!("microvm jail: NOT confirmed: {jailed_runs} of {vmm_runs} vmm run(s) seen jailed")
    };
    let mut lines = vec![jail];

    let boot = pair(Kind::Boot);
    let boot_ratio = ratio(boot.0, boot.1);
    lines.push(format!(
        "microvm boot-to-init: vmm {} vs qemu microvm {} => ratio {} (goal <= {GOAL_BOOT_RATIO:.2}: {})",
        figure(boot.0, 0, "ms"),
        figure(boot.1, 0, "ms"),
        ratio_text(boot_ratio),
        verdict(boot_ratio.map(|r| r <= GOAL_BOOT_RATIO)),
    ));

    let memory = [
        (Kind::Rss, "RSS, no devices"),
        (Kind::Pss(Devices::None), "PSS, no devices"),
        (Kind::Pss(Devices::NetVolume), "PSS, virtio-net + volume"),
    ];
    for (kind, what) in memory {
        let (ours, theirs) = pair(kind);
        #[allow(clippy::cast_precision_loss, reason = "2048 is exact")]
        let met = ours.map(|o| o <= GOAL_OVERHEAD_KIB as f64);
        lines.push(format!(
            "microvm memory overhead ({what}): vmm {} vs qemu microvm {} => ratio {} (goal: vmm <= {GOAL_OVERHEAD_KIB} KiB: {})",
            figure(ours, 0, "KiB"),
            figure(theirs, 0, "KiB"),
            ratio_text(ratio(ours, theirs)),
            verdict(met),
        ));
    }
    lines.push(format!(
        "microvm jail's waiting parent (outside the vmm's pid namespace, not in the goal): PSS {}",
        figure(m(Kind::Waiter, Monitor::Vmm), 0, "KiB"),
    ));

    let tcp = pair(Kind::Tcp);
    let tcp_ratio = ratio(tcp.0, tcp.1);
    lines.push(format!(
        "microvm guest->host tcp: vmm {} vs qemu user net {} => ratio {} (goal >= {GOAL_TCP_RATIO:.2}: {})",
        figure(tcp.0, 1, "MiB/s"),
        figure(tcp.1, 1, "MiB/s"),
        ratio_text(tcp_ratio),
        verdict(tcp_ratio.map(|r| r >= GOAL_TCP_RATIO)),
    ));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(kind: Kind, monitor: Monitor, round: u64, value: f64) -> Sample {
        Sample {
            kind,
            monitor,
            round,
            value,
        }
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[5]), Some(5.0));
        assert_eq!(median(&[9, 1, 5]), Some(5.0));
        assert_eq!(median(&[4, 1, 3, 2]), Some(2.5));
    }

    #[test]
    fn ratios_and_verdicts() {
        assert_eq!(ratio(Some(1.0), Some(4.0)), Some(0.25));
        assert_eq!(ratio(Some(1.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(4.0)), None);
        assert_eq!(verdict(Some(true)), "met");
        assert_eq!(verdict(Some(false)), "missed");
        assert_eq!(verdict(None), "n/a");
    }

    #[test]
    fn the_summary_has_medians_ratios_and_verdicts() {
        let net = Kind::Pss(Devices::NetVolume);
        let bare = Kind::Pss(Devices::None);
        let samples = vec![
            s(Kind::Boot, Monitor::Vmm, 1, 900.0),
            s(Kind::Boot, Monitor::Vmm, 2, 800.0),
            s(Kind::Boot, Monitor::Vmm, 3, 1000.0),
            s(Kind::Boot, Monitor::Qemu, 1, 1800.0),
            s(Kind::Rss, Monitor::Vmm, 1, 1500.0),
            s(Kind::Rss, Monitor::Qemu, 1, 30000.0),
            s(bare, Monitor::Vmm, 1, 1400.0),
            s(bare, Monitor::Qemu, 1, 28000.0),
            s(net, Monitor::Vmm, 1, 2100.0),
            s(net, Monitor::Vmm, 2, 2300.0),
            s(net, Monitor::Qemu, 1, 44000.0),
            s(Kind::Waiter, Monitor::Vmm, 1, 420.0),
            s(Kind::Tcp, Monitor::Vmm, 1, 120.5),
        ];
        assert_eq!(
            summary(&samples, 9, 9),
            vec![
                "microvm jail: on, every vmm run (9) seen jailed by the node (own uid, no \
                 capabilities, no_new_privs, seccomp, mount/pid/ipc/uts namespaces, own root, \
                 descriptors, cgroup, rlimits)",
                "microvm boot-to-init: vmm 900 ms vs qemu microvm 1800 ms => ratio 0.50 (goal <= 0.50: met)",
                "microvm memory overhead (RSS, no devices): vmm 1500 KiB vs qemu microvm 30000 KiB => ratio 0.05 (goal: vmm <= 2048 KiB: met)",
                "microvm memory overhead (PSS, no devices): vmm 1400 KiB vs qemu microvm 28000 KiB => ratio 0.05 (goal: vmm <= 2048 KiB: met)",
                "microvm memory overhead (PSS, virtio-net + volume): vmm 2200 KiB vs qemu microvm 44000 KiB => ratio 0.05 (goal: vmm <= 2048 KiB: missed)",
                "microvm jail's waiting parent (outside the vmm's pid namespace, not in the goal): PSS 420 KiB",
                "microvm guest->host tcp: vmm 120.5 MiB/s vs qemu user net n/a => ratio n/a (goal >= 1.00: n/a)",
            ]
        );
    }

    #[test]
    fn a_missed_boot_goal_and_an_unconfirmed_jail_are_said() {
        let samples = vec![
            s(Kind::Boot, Monitor::Vmm, 1, 1000.0),
            s(Kind::Boot, Monitor::Qemu, 1, 1500.0),
            s(Kind::Tcp, Monitor::Vmm, 1, 10.0),
            s(Kind::Tcp, Monitor::Qemu, 1, 5.0),
        ];
        let lines = summary(&samples, 2, 3);
        assert_eq!(
            lines[0],
            "microvm jail: NOT confirmed: 2 of 3 vmm run(s) seen jailed"
        );
        assert_eq!(
            lines[1],
            "microvm boot-to-init: vmm 1000 ms vs qemu microvm 1500 ms => ratio 0.67 (goal <= 0.50: missed)"
        );
        assert!(
            lines[2].ends_with("(goal: vmm <= 2048 KiB: n/a)"),
            "{}",
            lines[2]
        );
        assert_eq!(
            lines[6],
            "microvm guest->host tcp: vmm 10.0 MiB/s vs qemu user net 5.0 MiB/s => ratio 2.00 (goal >= 1.00: met)"
        );
        assert_eq!(
            summary(&[], 0, 0)[0],
            "microvm jail: NOT confirmed: 0 of 0 vmm run(s) seen jailed"
        );
    }
}
