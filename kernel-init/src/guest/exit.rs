//! The guest's end: stop what is left, flush and unmount, report the exit code, power off.
//!
//! The code goes to I/O port [`EXIT_CODE_PORT`] *after* the volumes are synced and unmounted:
//! our VMM only records it, but QEMU's `isa-debug-exit` device (used to test this path) ends
//! the VM on the write, and nothing written to a volume may be lost then.

// The port the guest writes its exit code to (one byte), next to the VMM's ACPI sleep
// control register at 0x3c0.
pub use interfaces::vm::EXIT_CODE_PORT;

/// Stops every other process, syncs, unmounts, reports `code` and powers off (the node's
/// [`crate::power`] sequence with the report as its last step).
pub fn finish(code: u8, reason: &str) -> ! {
    crate::power::power_off_then(reason, &|| report_exit_code(code))
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
