//! How a VM ends, and the process exit status that reports it.
//!
//! | code | meaning |
//! |---|---|
//! | 0  | the guest powered off (ACPI S5 through the sleep control port) |
//! | 10 | the guest rebooted (i8042 reset, or KVM's reset system event) |
//! | 11 | the guest crashed: triple fault (`KVM_EXIT_SHUTDOWN`), failed entry, an instruction KVM could not emulate, or every vCPU halted with interrupts off |
//! | 12 | the guest kernel panicked (it said so on the pvpanic port) |
//! | 1  | the VMM failed (KVM or host error) |
//! | 2  | bad input: missing or invalid kernel/initrd, bad command line, memory or vCPU count out of range |
//!
//! `init` restarts workloads on anything but 0 (and 10 means "the guest asked for a restart").

use std::fmt;

use interfaces::vm::VmmExit;

/// Exit status: the guest powered off.
pub const EXIT_POWEROFF: u8 = VmmExit::Poweroff.code();
/// Exit status: the VMM failed.
pub const EXIT_VMM_ERROR: u8 = VmmExit::VmmError.code();
/// Exit status: the VMM's input was invalid.
pub const EXIT_BAD_INPUT: u8 = VmmExit::BadInput.code();
/// Exit status: the guest rebooted.
pub const EXIT_REBOOT: u8 = VmmExit::Reboot.code();
/// Exit status: the guest crashed.
pub const EXIT_CRASH: u8 = VmmExit::Crash.code();
/// Exit status: the guest kernel panicked.
pub const EXIT_PANIC: u8 = VmmExit::Panic.code();

/// Why the guest stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestExit {
    /// The guest powered off.
    Poweroff,
    /// The guest asked for a reset.
    Reboot,
    /// The guest cannot continue.
    Crash(CrashReason),
    /// The guest kernel panicked and said so on the pvpanic port.
    Panic,
}

/// What kind of crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrashReason {
    /// `KVM_EXIT_SHUTDOWN`: a triple fault.
    TripleFault,
    /// Every vCPU is halted with interrupts disabled (or never started): nothing can wake it.
    HaltedForever,
    /// `KVM_EXIT_FAIL_ENTRY` with the hardware reason.
    FailEntry(u64),
    /// `KVM_EXIT_INTERNAL_ERROR` (typically an instruction KVM could not emulate).
    InternalError,
    /// `KVM_SYSTEM_EVENT_CRASH`.
    SystemEvent,
}

impl GuestExit {
    /// The process exit status for this exit.
    pub fn exit_code(&self) -> u8 {
        match self {
            GuestExit::Poweroff => EXIT_POWEROFF,
            GuestExit::Reboot => EXIT_REBOOT,
            GuestExit::Crash(_) => EXIT_CRASH,
            GuestExit::Panic => EXIT_PANIC,
        }
    }
}

impl fmt::Display for GuestExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuestExit::Poweroff => write!(f, "poweroff"),
            GuestExit::Reboot => write!(f, "reboot"),
            GuestExit::Crash(r) => write!(f, "crash ({r})"),
            GuestExit::Panic => write!(f, "kernel panic"),
        }
    }
}

impl fmt::Display for CrashReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CrashReason::TripleFault => write!(f, "triple fault"),
            CrashReason::HaltedForever => write!(f, "all vCPUs halted with interrupts disabled"),
            CrashReason::FailEntry(r) => write!(f, "VM entry failed, hardware reason {r:#x}"),
            CrashReason::InternalError => write!(f, "KVM internal error"),
            CrashReason::SystemEvent => write!(f, "guest reported a crash"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_distinct_and_documented_values() {
        assert_eq!(GuestExit::Poweroff.exit_code(), 0);
        assert_eq!(GuestExit::Reboot.exit_code(), 10);
        assert_eq!(GuestExit::Crash(CrashReason::TripleFault).exit_code(), 11);
        assert_eq!(GuestExit::Panic.exit_code(), 12);
        let all = [
            EXIT_POWEROFF,
            EXIT_VMM_ERROR,
            EXIT_BAD_INPUT,
            EXIT_REBOOT,
            EXIT_CRASH,
            EXIT_PANIC,
        ];
        for (i, a) in all.iter().enumerate() {
            assert!(all[i + 1..].iter().all(|b| a != b));
        }
    }
}
