//! Running the entrypoint: a child chrooted into the new root, and PID 1 reaping until it ends.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::config::GuestConfig;
use super::plan::NEW_ROOT;
use super::GuestError;
use crate::signals::{self, Action, Signals};

/// How long the entrypoint gets between a forwarded SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The exit code reported for a process that ended: its status, or 128+N for signal N.
/// `None` for states that are not an end (stopped, continued).
pub fn exit_code(status: WaitStatus) -> Option<u8> {
    match status {
        // The kernel keeps only the low 8 bits of an exit status.
        WaitStatus::Exited(_, code) => Some(u8::try_from(code & 0xff).unwrap_or(u8::MAX)),
        WaitStatus::Signaled(_, signal, _) => {
            Some(u8::try_from(128 + signal as i32).unwrap_or(u8::MAX))
        }
        _ => None,
    }
}

/// Starts the entrypoint: chroot into [`NEW_ROOT`], chdir to the workdir, exec argv with
/// exactly `env`; stdin is `/dev/null`, stdout and stderr the console. Returns its pid.
///
/// Exec failures (no such file, not executable, bad workdir) come back as the error here,
/// through the pipe std uses to report a failed exec.
pub fn spawn(config: &GuestConfig, env: &[(String, String)]) -> Result<Pid, GuestError> {
    let program = config.entrypoint[0].clone();
    let failed = |source| GuestError::Spawn {
        program: program.clone(),
        workdir: config.workdir.clone(),
        source,
    };
    let console = open_console().map_err(failed)?;
    let console_err = console.try_clone().map_err(failed)?;
    // Allocated before fork: the pre_exec hook only makes system calls.
    let root = CString::new(NEW_ROOT).map_err(|e| failed(e.into()))?;
    let workdir = CString::new(config.workdir.as_str()).map_err(|e| failed(e.into()))?;
    let mut command = Command::new(&program);
    command
        .args(&config.entrypoint[1..])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(console)
        .stderr(console_err);
    // SAFETY: the hook runs in the forked child before exec and only makes the chroot(2),
    // chdir(2) and setsid(2) system calls on CStrings allocated before the fork; it neither
    // allocates nor takes locks. (std resets the child's signal mask, which PID 1 blocks.)
    unsafe {
        command.pre_exec(move || {
            nix::unistd::chroot(root.as_c_str())?;
            nix::unistd::chdir(workdir.as_c_str())?;
            nix::unistd::setsid()?;
            Ok(())
        });
    }
    let child = command.spawn().map_err(failed)?;
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(0));
    // `child` is dropped without waiting: PID 1 reaps every process itself.
    Ok(pid)
}

fn open_console() -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .custom_flags(nix::libc::O_NOCTTY)
        .open("/dev/console")
}

/// Reaps every child until `pid` ends and returns its wait status. SIGTERM, SIGINT or SIGPWR
/// to PID 1 is forwarded to the entrypoint as SIGTERM, followed by SIGKILL after a grace
/// period.
pub fn wait_for(pid: Pid, signals: &Signals) -> Result<WaitStatus, GuestError> {
    let mut term_sent: Option<Instant> = None;
    loop {
        if let Some(status) = reap_until(pid) {
            return Ok(status);
        }
        let timeout = PollTimeout::try_from(Duration::from_secs(1)).unwrap_or(PollTimeout::NONE);
        let mut fds = [PollFd::new(signals.fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(GuestError::Wait(e)),
        }
        for signo in signals.drain() {
            match signals::classify(signo) {
                Action::Reap => {}
                Action::PowerOff(reason) if term_sent.is_none() => {
                    crate::info!("guest: {reason}: stopping the workload");
                    let _ = kill(pid, Signal::SIGTERM);
                    term_sent = Some(Instant::now());
                }
                Action::PowerOff(_) => {}
                Action::Ignore => crate::debug!("guest: ignoring signal {signo}"),
            }
        }
        if term_sent.is_some_and(|t| t.elapsed() >= STOP_GRACE) {
            let _ = kill(pid, Signal::SIGKILL);
        }
    }
}

/// Reaps without blocking; returns `pid`'s status once it has ended.
fn reap_until(pid: Pid) -> Option<WaitStatus> {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => return None,
            Ok(status) if status.pid() == Some(pid) && exit_code(status).is_some() => {
                return Some(status)
            }
            Ok(status) => crate::debug!("reaped {status:?}"),
            Err(Errno::EINTR) => {}
            // ECHILD: the entrypoint is gone without a status we saw; cannot happen while
            // PID 1 is the only reaper, but never wait forever for it.
            Err(_) => return Some(WaitStatus::Exited(pid, i32::from(super::SETUP_FAILED))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_and_signals_map_to_one_byte() {
        let pid = Pid::from_raw(7);
        assert_eq!(exit_code(WaitStatus::Exited(pid, 0)), Some(0));
        assert_eq!(exit_code(WaitStatus::Exited(pid, 42)), Some(42));
        assert_eq!(exit_code(WaitStatus::Exited(pid, 255)), Some(255));
        assert_eq!(exit_code(WaitStatus::Exited(pid, 256 + 3)), Some(3));
        assert_eq!(
            exit_code(WaitStatus::Signaled(pid, Signal::SIGKILL, false)),
            Some(137)
        );
        assert_eq!(
            exit_code(WaitStatus::Signaled(pid, Signal::SIGSEGV, true)),
            Some(139)
        );
        assert_eq!(exit_code(WaitStatus::Stopped(pid, Signal::SIGSTOP)), None);
        assert_eq!(exit_code(WaitStatus::StillAlive), None);
    }
}
