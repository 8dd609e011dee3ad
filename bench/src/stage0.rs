//! What stage 0 adds to a boot: the dev stick (`usb.img` on OVMF: firmware, UKI, boot kernel,
//! `boot` verifying the release, kexec) against booting the node image directly (`-kernel`/
//! `-initrd`), to `nullos: ready`, in the same run and alternating.
//!
//! The measure is host wall time from QEMU's start to each console line (the node's own
//! `uptime_ms` restarts at the kexec, so it cannot span both kernels). The verification share
//! comes from stage 0's own log line, `boot: info: release read from <dev> in <ms> ms, verified
//! in <ms> ms`, timed in the guest (under TCG the guest clock follows the host's).

use std::time::{Duration, Instant};

use qemu::{Accel, Boot, QemuError, Vm, VmConfig};

use crate::boot::{serve_control_endpoint, READY_LINE};

/// The console lines timed on the stick side, in the order they appear, with a short label.
pub const USB_MARKS: [(&str, &str); 4] = [
    ("BdsDxe: starting", "firmware boots the stick"),
    ("nullos boot (stage 0)", "stage 0 starts"),
    ("nullos: verified release", "verified"),
    ("nullos: booting release", "kexec"),
];

/// The log line stage 0 prints after verifying, with the read and verify times.
pub const TIMING_LINE: &str = "boot: info: release read from ";

/// What to run.
#[derive(Debug, Clone)]
pub struct Stage0Bench {
    /// The stick.
    pub usb: Boot,
    /// The same release booted directly.
    pub direct: Boot,
    /// Boots per side.
    pub runs: usize,
    /// Accelerator for both sides.
    pub accel: Accel,
    /// Longest one boot may take to reach ready.
    pub timeout: Duration,
}

/// One pair of boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage0Sample {
    /// Direct boot: QEMU start to ready.
    pub direct_ready: Duration,
    /// Stick: QEMU start to ready.
    pub usb_ready: Duration,
    /// Stick: QEMU start to each of [`USB_MARKS`] (None if the line was not seen).
    pub usb_marks: Vec<Option<Duration>>,
    /// Stage 0's time reading the release off the stick, ms.
    pub read_ms: u64,
    /// Stage 0's time verifying it, ms.
    pub verify_ms: u64,
}

impl Stage0Sample {
    /// Seconds the stick path adds over the direct boot.
    pub fn added(&self) -> f64 {
        self.usb_ready.as_secs_f64() - self.direct_ready.as_secs_f64()
    }
}

/// A stage 0 benchmark that could not finish.
#[derive(Debug, thiserror::Error)]
pub enum Stage0BenchError {
    /// A boot failed or timed out.
    #[error("{side} boot {run} failed")]
    Boot {
        /// "usb" or "direct".
        side: &'static str,
        /// 1-based run number.
        run: usize,
        /// Why (with the console tail).
        #[source]
        source: QemuError,
    },
    /// Stage 0 did not print its timing line before the node was ready.
    #[error("usb boot {run}: no '{TIMING_LINE}... verified in <ms> ms' line before ready")]
    NoTiming {
        /// 1-based run number.
        run: usize,
    },
}

/// `(read_ms, verify_ms)` from `boot: info: release read from /dev/sda2 in 312 ms, verified in
/// 95 ms (...)`.
pub fn read_verify_ms(line: &str) -> Option<(u64, u64)> {
    let rest = &line[line.find(TIMING_LINE)? + TIMING_LINE.len()..];
    let (_, rest) = rest.split_once(" in ")?;
    let (read, rest) = rest.split_once(" ms, verified in ")?;
    let (verify, _) = rest.split_once(" ms")?;
    Some((read.parse().ok()?, verify.parse().ok()?))
}

/// Median of `values` (seconds), `None` when empty.
fn median_secs(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// `stage0: ready via usb.img <s> s vs direct <s> s => +<s> s added; verifying <ms> ms =
/// <p> % of it (reading the release <ms> ms)`, over medians; `None` before any run.
pub fn summary(samples: &[Stage0Sample]) -> Option<String> {
    let usb = median_secs(samples.iter().map(|s| s.usb_ready.as_secs_f64()))?;
    let direct = median_secs(samples.iter().map(|s| s.direct_ready.as_secs_f64()))?;
    let added = median_secs(samples.iter().map(Stage0Sample::added))?;
    // Milliseconds of a boot are far below 2^53: exact as f64.
    #[allow(clippy::cast_precision_loss)]
    let verify_s = median_secs(samples.iter().map(|s| s.verify_ms as f64 / 1000.0))?;
    #[allow(clippy::cast_precision_loss)]
    let read_s = median_secs(samples.iter().map(|s| s.read_ms as f64 / 1000.0))?;
    let share = if added > 0.0 {
        format!("{:.1} %", 100.0 * verify_s / added)
    } else {
        "n/a".to_owned()
    };
    Some(format!(
        "stage0: ready via usb.img {usb:.1} s vs direct {direct:.1} s => +{added:.1} s added; \
         verifying {:.0} ms = {share} of it (reading the release {:.0} ms)",
        verify_s * 1000.0,
        read_s * 1000.0
    ))
}

/// Runs the benchmark; `on_sample` sees each pair as it completes.
pub fn run(
    bench: &Stage0Bench,
    mut on_sample: impl FnMut(usize, &Stage0Sample),
) -> Result<Vec<Stage0Sample>, Stage0BenchError> {
    // The ready line waits for the control-endpoint check on both sides.
    serve_control_endpoint();
    let mut samples = Vec::with_capacity(bench.runs);
    for run in 1..=bench.runs {
        let boot_err = |side| move |source| Stage0BenchError::Boot { side, run, source };
        let direct = VmConfig::new(bench.direct.clone(), bench.accel);
        let direct_ready = boot_to_ready(direct, bench.timeout, |_| {})
            .map_err(boot_err("direct"))?
            .0;
        let mut timing = None;
        let usb = VmConfig::new(bench.usb.clone(), bench.accel);
        let (usb_ready, usb_marks) = boot_to_ready(usb, bench.timeout, |line| {
            if timing.is_none() {
                timing = read_verify_ms(line);
            }
        })
        .map_err(boot_err("usb"))?;
        let (read_ms, verify_ms) = timing.ok_or(Stage0BenchError::NoTiming { run })?;
        let sample = Stage0Sample {
            direct_ready,
            usb_ready,
            usb_marks,
            read_ms,
            verify_ms,
        };
        on_sample(run, &sample);
        samples.push(sample);
    }
    Ok(samples)
}

/// Boots once and returns the wall time to ready and to each of [`USB_MARKS`]; `each_line` sees
/// every console line. The VM is killed when it goes out of scope.
fn boot_to_ready(
    config: VmConfig,
    timeout: Duration,
    mut each_line: impl FnMut(&str),
) -> Result<(Duration, Vec<Option<Duration>>), QemuError> {
    let started = Instant::now();
    let vm = Vm::start(config)?;
    let mut marks = vec![None; USB_MARKS.len()];
    vm.wait_for_line_matching(
        &format!("containing {READY_LINE:?}"),
        |line| {
            each_line(line);
            for (mark, (needle, _)) in marks.iter_mut().zip(USB_MARKS) {
                if mark.is_none() && line.contains(needle) {
                    *mark = Some(started.elapsed());
                }
            }
            line.contains(READY_LINE)
        },
        timeout,
    )?;
    Ok((started.elapsed(), marks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_and_verify_times_come_from_stage0s_log_line() {
        let line = "boot: info: release read from /dev/sda2 in 312 ms, verified in 95 ms (highest version accepted before: 0)";
        assert_eq!(read_verify_ms(line), Some((312, 95)));
        assert_eq!(
            read_verify_ms(&format!("[    4.2] {line}")),
            Some((312, 95))
        );
        assert_eq!(
            read_verify_ms("boot: info: release read from /dev/sda2 in x ms, verified in 95 ms"),
            None
        );
        assert_eq!(read_verify_ms("nullos: verified release version=1"), None);
    }

    #[test]
    fn the_summary_line_has_medians_added_time_and_verify_share() {
        let sample = |direct: u64, usb: u64, verify_ms: u64| Stage0Sample {
            direct_ready: Duration::from_millis(direct),
            usb_ready: Duration::from_millis(usb),
            usb_marks: Vec::new(),
            read_ms: 300,
            verify_ms,
        };
        let samples = [
            sample(5000, 25000, 100),
            sample(6000, 26000, 300),
            sample(5500, 30000, 200),
        ];
        assert_eq!(
            summary(&samples).as_deref(),
            Some(
                "stage0: ready via usb.img 26.0 s vs direct 5.5 s => +20.0 s added; \
                 verifying 200 ms = 1.0 % of it (reading the release 300 ms)"
            )
        );
        assert_eq!(summary(&[]), None);
    }
}
