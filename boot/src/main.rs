//! `boot`: PID 1 of the NullOS boot image (stage 0).
//!
//! Like `init`, it must never exit (the kernel would panic): a panic is logged and becomes a
//! `nullos: refused boot: panic` line, then a reboot after a delay. Run as anything but PID 1
//! it refuses (exit status 2) instead of loading modules and kexec'ing a kernel.

use std::process::ExitCode;

fn main() -> ExitCode {
    if nix::unistd::getpid().as_raw() != 1 {
        eprintln!("boot: error: this is NullOS stage 0; it only runs as PID 1");
        return ExitCode::from(2);
    }
    kernel_init::log::install_panic_hook();
    match std::panic::catch_unwind(boot::run) {
        Ok(never) => match never {},
        Err(_) => {
            kernel_init::log::interface_line("nullos: refused boot: stage 0 panicked");
            kernel_init::power::fatal_reboot("stage 0 panicked")
        }
    }
}
