//! The guest's end: stop what is left, flush and unmount, report the exit code, power off.
//!
//! The code goes to I/O port [`EXIT_CODE_PORT`] *after* the volumes are synced and unmounted:
//! our VMM only records it, but QEMU's `isa-debug-exit` device (used to test this path) ends
//! the VM on the write, and nothing written to a volume may be lost then. The node's
//! [`crate::power`] sequence cannot be reused as is because the report must sit between the
//! unmount and reboot(2).

use std::time::{Duration, Instant};

use nix::sys::reboot::{reboot, RebootMode};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::{mounts, signals};

/// The port the guest writes its exit code to (one byte), next to the VMM's ACPI sleep
/// control register at 0x3c0.
pub const EXIT_CODE_PORT: u16 = 0x3c1;
/// How long the remaining processes get between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(2);

/// Stops every other process, syncs, unmounts, reports `code` and powers off.
pub fn finish(code: u8, reason: &str) -> ! {
    crate::info!("powering off ({reason})");
    stop_all_processes();
    nix::unistd::sync();
    let stuck = mounts::unmount_all();
    if !stuck.is_empty() {
        crate::warn!("still mounted read-write: {}", stuck.join(" "));
    }
    nix::unistd::sync();
    crate::log::interface_line("nullos: poweroff");
    report_exit_code(code);
    let Err(e) = reboot(RebootMode::RB_POWER_OFF);
    crate::error!("reboot(2): {e}");
    // reboot(2) does not return on success; if it failed there is nothing left but to idle.
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Writes `code` to [`EXIT_CODE_PORT`]. A failure is logged: the VM then ends without a code.
pub fn report_exit_code(code: u8) {
    // SAFETY: ioperm(2) only changes this process's I/O permission bitmap (PID 1 has
    // CAP_SYS_RAWIO); it touches no memory.
    let granted = unsafe { nix::libc::ioperm(nix::libc::c_ulong::from(EXIT_CODE_PORT), 1, 1) };
    if granted != 0 {
        crate::warn!(
            "report exit code: ioperm({EXIT_CODE_PORT:#x}): {}",
            nix::errno::Errno::last()
        );
        return;
    }
    // SAFETY: ioperm above granted this process exactly this port. An `out` of one byte
    // reads no memory and changes no register but none named here; the device behind the
    // port belongs to the VMM and cannot affect this process's memory.
    unsafe {
        core::arch::asm!(
            "out dx, al",
            in("dx") EXIT_CODE_PORT,
            in("al") code,
            options(nomem, nostack, preserves_flags)
        );
    }
}

/// SIGTERM to all other processes, a grace period while reaping, then SIGKILL.
fn stop_all_processes() {
    let all = Pid::from_raw(-1);
    if !signals::reap_zombies().children_left {
        return;
    }
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
        std::thread::sleep(Duration::from_millis(20));
    }
}
