//! Boot-to-ready: a built NullOS image against the same kernel booting only `baseline-init`.
//!
//! Both boot directly (`-kernel`/`-initrd`) with the image's own command line and identical QEMU
//! settings (one [`VmConfig`] with only the initrd swapped), alternating run by run so drift on
//! the host hits both sides. The measure is the guest's own clock (`CLOCK_BOOTTIME` at the
//! ready line / baseline line), so QEMU start-up and host scheduling around it do not count;
//! host wall time is printed alongside for information.

use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use qemu::{Accel, Boot, DirectImage, ImageError, QemuError, Vm, VmConfig};

use crate::baseline::{write_baseline_initrd, BaselineError, BASELINE_LINE};
use crate::stats;

/// The line NullOS's init prints when it is ready (see the shared console contract).
pub const READY_LINE: &str = "nullos: ready";

/// The goal: NullOS reaches ready within 5 % of a do-nothing init.
pub const GOAL_RATIO: f64 = 1.05;

/// What to run.
#[derive(Debug, Clone)]
pub struct BootBench {
    /// Built image directory (`kernel`, `initrd`, `cmdline`).
    pub image_dir: PathBuf,
    /// The static `baseline-init` binary.
    pub baseline_init: PathBuf,
    /// Boots per side.
    pub runs: usize,
    /// Accelerator for both sides.
    pub accel: Accel,
    /// Longest one boot may take to print its line.
    pub timeout: Duration,
}

/// Which side of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The NullOS image.
    Nullos,
    /// The same kernel with `baseline-init`.
    Baseline,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Nullos => "nullos",
            Side::Baseline => "baseline",
        })
    }
}

/// One boot's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Guest `CLOCK_BOOTTIME` at the line, in ms.
    pub uptime_ms: u64,
    /// Host time from QEMU start to the line being seen.
    pub wall: Duration,
}

/// The results, one sample per run and side.
#[derive(Debug, Clone, Default)]
pub struct BootReport {
    /// NullOS samples, in run order.
    pub nullos: Vec<Sample>,
    /// Baseline samples, in run order.
    pub baseline: Vec<Sample>,
}

impl BootReport {
    /// `boot-to-ready: nullos <ms> ms vs baseline <ms> ms => ratio <x.xx> (goal <= 1.05)`
    /// over the medians of guest uptimes; `None` before any run.
    pub fn summary(&self) -> Option<String> {
        let ours: Vec<u64> = self.nullos.iter().map(|s| s.uptime_ms).collect();
        let base: Vec<u64> = self.baseline.iter().map(|s| s.uptime_ms).collect();
        stats::comparison_line("boot-to-ready", &ours, &base, GOAL_RATIO)
    }
}

/// A boot benchmark that could not finish.
#[derive(Debug, thiserror::Error)]
pub enum BootBenchError {
    /// The image directory is incomplete.
    #[error("cannot use the image")]
    Image(#[from] ImageError),
    /// The baseline initramfs could not be made.
    #[error("cannot build the baseline initramfs")]
    Baseline(#[from] BaselineError),
    /// No scratch directory for the baseline initramfs.
    #[error("cannot create a scratch directory")]
    ScratchDir(#[source] io::Error),
    /// A boot failed or timed out.
    #[error("{side} boot {run} failed")]
    Boot {
        /// Which side.
        side: Side,
        /// 1-based run number.
        run: usize,
        /// Why (with the console tail).
        #[source]
        source: QemuError,
    },
    /// The awaited line had no `uptime_ms=` field.
    #[error("{side} line has no uptime_ms field: {line:?}")]
    NoUptime {
        /// Which side.
        side: Side,
        /// The line.
        line: String,
    },
}

/// Runs the benchmark; `on_sample` sees every boot as it completes (for progress output).
pub fn run(
    bench: &BootBench,
    mut on_sample: impl FnMut(usize, Side, &Sample),
) -> Result<BootReport, BootBenchError> {
    let image = DirectImage::load(&bench.image_dir)?;
    let nullos_boot = image.boot();
    let scratch = tempfile::Builder::new()
        .prefix("nullos-bench-")
        .tempdir()
        .map_err(BootBenchError::ScratchDir)?;
    let baseline_initrd = scratch.path().join("baseline-initrd");
    write_baseline_initrd(&bench.baseline_init, &baseline_initrd)?;
    let baseline_boot = Boot::Direct {
        kernel: image.kernel.clone(),
        initrd: baseline_initrd,
        cmdline: image.cmdline.clone(),
    };

    // The node's ready line waits for its control-endpoint check; with nothing listening, that
    // check's retries would be measured instead of the boot.
    serve_control_endpoint();

    let mut report = BootReport::default();
    for run in 1..=bench.runs {
        for (side, boot, line) in [
            (Side::Nullos, &nullos_boot, READY_LINE),
            (Side::Baseline, &baseline_boot, BASELINE_LINE),
        ] {
            let config = VmConfig::new(boot.clone(), bench.accel);
            let sample = boot_once(config, line, bench.timeout)
                .map_err(|e| e.into_bench_error(side, run))?;
            on_sample(run, side, &sample);
            match side {
                Side::Nullos => report.nullos.push(sample),
                Side::Baseline => report.baseline.push(sample),
            }
        }
    }
    Ok(report)
}

enum OnceError {
    Vm(QemuError),
    NoUptime(String),
}

impl OnceError {
    fn into_bench_error(self, side: Side, run: usize) -> BootBenchError {
        match self {
            OnceError::Vm(source) => BootBenchError::Boot { side, run, source },
            OnceError::NoUptime(line) => BootBenchError::NoUptime { side, line },
        }
    }
}

/// Boots once, waits for `line`, and returns the guest uptime it carries. The VM is killed
/// when it goes out of scope (the baseline powers itself off anyway).
fn boot_once(config: VmConfig, line: &str, timeout: Duration) -> Result<Sample, OnceError> {
    let started = Instant::now();
    let vm = Vm::start(config).map_err(OnceError::Vm)?;
    let seen = vm.wait_for_line(line, timeout).map_err(OnceError::Vm)?;
    let wall = started.elapsed();
    let uptime_ms = stats::uptime_ms(&seen).ok_or(OnceError::NoUptime(seen))?;
    Ok(Sample { uptime_ms, wall })
}

/// The dev image's control endpoint (`10.0.2.2:7878` in QEMU's user network is this host's
/// `127.0.0.1:7878`).
pub const CONTROL_ENDPOINT: &str = "127.0.0.1:7878";

/// Accepts (and drops) connections on [`CONTROL_ENDPOINT`] for the rest of the process, so the
/// node finds its control endpoint reachable. If the port is taken, whatever holds it answers.
pub fn serve_control_endpoint() {
    match std::net::TcpListener::bind(CONTROL_ENDPOINT) {
        Ok(listener) => {
            std::thread::spawn(move || for _ in listener.incoming() {});
        }
        Err(e) => {
            eprintln!("boot bench: not serving {CONTROL_ENDPOINT} ({e}); using whatever holds it")
        }
    }
}
