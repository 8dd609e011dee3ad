//! `boot`: PID 1 of the NullOS boot image (stage 0).
//!
//! Like `init`, it must never exit (the kernel would panic): a panic is logged and becomes a
//! `nullos: refused boot: panic` line, then a reboot after a delay. Run as anything but PID 1
//! it refuses (exit status 2) instead of loading modules and kexec'ing a kernel.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

use std::process::ExitCode;

fn main() -> ExitCode {
    if nix::unistd::getpid().as_raw() != 1 {
        eprintln!("boot: error: this is NullOS stage 0; it only runs as PID 1");
        return ExitCode::from(2);
    }
    pid1::log::install_panic_hook();
    match std::panic::catch_unwind(boot::run) {
        Ok(never) => match never {},
        Err(_) => {
            pid1::log::interface_line("nullos: refused boot: stage 0 panicked");
            pid1::power::fatal_reboot("stage 0 panicked")
        }
    }
}
