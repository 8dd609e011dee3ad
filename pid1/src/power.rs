//! Clean power-off, the clean reboot of a self-update, and the fatal-error reboot. None returns: PID 1 must never exit (the
//! kernel would panic).
//!
//! Sequence: log why, SIGTERM to every other process, a bounded wait while reaping, SIGKILL,
//! sync, unmount (or remount read-only) what can be, the final console line, an optional last
//! step (the guest role reports its workload's exit code there), reboot(2).

use std::time::{Duration, Instant};

use nix::sys::reboot::{reboot, RebootMode};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::{mounts, signals};

/// How long processes get between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(3);
/// Delay between a fatal error and the reboot, so the error can be read.
pub const FATAL_REBOOT_DELAY: Duration = Duration::from_secs(10);

/// Powers the machine off cleanly. `reason` goes into the `powering off (<reason>)` line.
pub fn power_off(reason: &str) -> ! {
    power_off_then(reason, &|| {})
}

/// Like [`power_off`], running `last` after everything is synced and unmounted and the final
/// console line is out, just before reboot(2).
pub fn power_off_then(reason: &str, last: &dyn Fn()) -> ! {
    crate::info!("powering off ({reason})");
    shutdown(RebootMode::RB_POWER_OFF, "nullos: poweroff", last)
}

/// Reboots the machine cleanly (the same sequence as [`power_off`], then reboot(2) with
/// `RB_AUTOBOOT`): the node's self-update, into stage 0, which boots the new release.
/// `reason` goes into the `rebooting (<reason>)` line.
pub fn reboot_cleanly(reason: &str) -> ! {
    crate::info!("rebooting ({reason})");
    shutdown(RebootMode::RB_AUTOBOOT, "nullos: reboot", &|| {})
}

/// Logs a fatal error, waits [`FATAL_REBOOT_DELAY`], and reboots.
pub fn fatal_reboot(message: &str) -> ! {
    crate::error!("fatal: {message}");
    crate::info!("rebooting in {} s", FATAL_REBOOT_DELAY.as_secs());
    std::thread::sleep(FATAL_REBOOT_DELAY);
    shutdown(RebootMode::RB_AUTOBOOT, "nullos: reboot", &|| {})
}

fn shutdown(mode: RebootMode, final_line: &str, last: &dyn Fn()) -> ! {
    stop_all_processes();
    nix::unistd::sync();
    let stuck = mounts::unmount_all();
    if !stuck.is_empty() {
        crate::debug!("still mounted read-write: {}", stuck.join(" "));
    }
    nix::unistd::sync();
    crate::log::interface_line(final_line);
    last();
    let Err(e) = reboot(mode);
    crate::error!("reboot(2): {e}");
    // reboot(2) does not return on success; if it failed there is nothing left but to idle.
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// SIGTERM to all other processes, a grace period, then SIGKILL. kill(-1) spares PID 1; it
/// also "succeeds" on kernel threads, so whether user processes remain is judged by
/// waitpid(2): every process left is a descendant of PID 1.
fn stop_all_processes() {
    let all = Pid::from_raw(-1);
    let _ = kill(all, Signal::SIGTERM);
    if wait_for_children(TERM_GRACE) {
        return;
    }
    let _ = kill(all, Signal::SIGKILL);
    wait_for_children(Duration::from_secs(1));
}

/// Reaps until no child is left or `limit` passes; true if none is left.
fn wait_for_children(limit: Duration) -> bool {
    let start = Instant::now();
    loop {
        if !signals::reap_zombies().children_left {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
