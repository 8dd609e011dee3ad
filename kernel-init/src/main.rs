//! `init`: PID 1 of NullOS.
//!
//! Unlike other binaries, PID 1 has no exit code to return: if it exits, the kernel panics. So
//! `main` runs the library's `run` under `catch_unwind`, and any error or panic becomes a logged
//! `init: error: fatal: ...` line followed by a reboot after a delay. Run as anything but PID 1
//! it refuses (exit status 2) instead of mounting filesystems and rebooting the machine.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

use std::process::ExitCode;

fn main() -> ExitCode {
    if nix::unistd::getpid().as_raw() != 1 {
        eprintln!("init: error: this is the NullOS init; it only runs as PID 1");
        return ExitCode::from(2);
    }
    pid1::log::install_panic_hook();
    let reason = match std::panic::catch_unwind(kernel_init::run) {
        Ok(Ok(never)) => match never {},
        Ok(Err(e)) => pid1::error_chain(&e),
        // The panic hook has logged the message and location.
        Err(_) => "panic".to_owned(),
    };
    pid1::power::fatal_reboot(&reason)
}
