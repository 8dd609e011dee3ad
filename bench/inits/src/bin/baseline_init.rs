//! `baseline-init`: the smallest useful PID 1, the yardstick for boot benchmarks.
//!
//! It does only what every init must do before it can say anything: make sure a console exists,
//! read the boot clock, print one line and power the machine off. Whatever NullOS's `init` takes
//! beyond this is the cost of NullOS itself; `nullos-bench boot` compares the two.
//!
//! Console line (stable, `nullos-bench` parses it):
//! `baseline: init reached uptime_ms=<CLOCK_BOOTTIME in ms>`
//!
//! Built static (`-C target-feature=+crt-static`) because the baseline initramfs holds nothing else.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use nix::mount::{mount, MsFlags};
use nix::sys::reboot::{reboot, RebootMode};
use nix::sys::time::TimeSpec;
use nix::time::{clock_gettime, ClockId};

fn main() {
    // Read the clock first, so the number measures the kernel and not this program.
    let uptime_ms = clock_gettime(ClockId::CLOCK_BOOTTIME)
        .map(timespec_ms)
        .unwrap_or(0);
    let console = Path::new("/dev/console");
    if !console.exists() {
        // The initramfs normally ships /dev/console; without it, devtmpfs provides one. If this
        // fails too there is nowhere to report it, so carry on and power off regardless.
        let _ = std::fs::create_dir_all("/dev");
        let _ = mount(
            Some("devtmpfs"),
            "/dev",
            Some("devtmpfs"),
            MsFlags::empty(),
            None::<&str>,
        );
    }
    if let Ok(mut out) = OpenOptions::new().write(true).open(console) {
        let _ = writeln!(out, "baseline: init reached uptime_ms={uptime_ms}");
        let _ = out.flush();
    }
    // PID 1 must never return; reboot(2) only returns on error, so retry rather than exit (an
    // exiting PID 1 panics the kernel, which would also end the benchmark, but less clearly).
    loop {
        let _ = reboot(RebootMode::RB_POWER_OFF);
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn timespec_ms(t: TimeSpec) -> u64 {
    let secs = u64::try_from(t.tv_sec()).unwrap_or(0);
    let ms = u64::try_from(t.tv_nsec() / 1_000_000).unwrap_or(0);
    secs.saturating_mul(1000).saturating_add(ms)
}
