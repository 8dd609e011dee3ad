//! Signals for PID 1: blocked and read through a signalfd, plus zombie reaping.
//!
//! PID 1 gets no default signal actions from the kernel; a blocked signal is still queued, so
//! blocking everything we care about and reading a signalfd in the main loop sees them all
//! without asynchronous handlers. With `reboot(RB_DISABLE_CAD)` the kernel turns ctrl-alt-del
//! into SIGINT for PID 1.

use nix::errno::Errno;
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Why signal handling could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    /// sigprocmask(2) failed.
    #[error("block signals")]
    Block(#[source] Errno),
    /// signalfd(2) failed.
    #[error("create signalfd")]
    SignalFd(#[source] Errno),
}

/// The signals init handles.
const HANDLED: [Signal; 8] = [
    Signal::SIGCHLD,
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGPWR,
    Signal::SIGHUP,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGQUIT,
];

/// What a signal asks init to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A child changed state: reap.
    Reap,
    /// Power off, for this reason.
    PowerOff(&'static str),
    /// Nothing (logged).
    Ignore,
}

/// The action for a signal number.
pub fn classify(signo: i32) -> Action {
    match Signal::try_from(signo) {
        Ok(Signal::SIGCHLD) => Action::Reap,
        Ok(Signal::SIGTERM) => Action::PowerOff("SIGTERM"),
        Ok(Signal::SIGINT) => Action::PowerOff("ctrl-alt-del"),
        Ok(Signal::SIGPWR) => Action::PowerOff("SIGPWR"),
        _ => Action::Ignore,
    }
}

/// The blocked signal set and its signalfd.
#[derive(Debug)]
pub struct Signals {
    fd: SignalFd,
}

impl Signals {
    /// Blocks [`HANDLED`] and opens a non-blocking signalfd for them.
    pub fn open() -> Result<Signals, SignalError> {
        let mut set = SigSet::empty();
        for s in HANDLED {
            set.add(s);
        }
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None).map_err(SignalError::Block)?;
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(SignalError::SignalFd)?;
        Ok(Signals { fd })
    }

    /// The fd to poll.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }

    /// Reads every pending signal; returns their numbers in arrival order.
    pub fn drain(&self) -> Vec<i32> {
        let mut out = Vec::new();
        while let Ok(Some(info)) = self.fd.read_signal() {
            out.push(i32::try_from(info.ssi_signo).unwrap_or(0));
        }
        out
    }
}

/// Result of one reaping pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reaped {
    /// Children reaped in this pass.
    pub count: usize,
    /// Whether any child is still alive (every orphan is PID 1's child, so false means no
    /// user process is left).
    pub children_left: bool,
}

/// Reaps every exited child without blocking.
pub fn reap_zombies() -> Reaped {
    let mut count = 0;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {
                return Reaped {
                    count,
                    children_left: true,
                };
            }
            Err(Errno::EINTR) => continue,
            Err(_) => {
                // ECHILD: no children at all.
                return Reaped {
                    count,
                    children_left: false,
                };
            }
            Ok(status) => {
                count += 1;
                crate::debug!("reaped {status:?}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_actions() {
        assert_eq!(classify(libc_signo(Signal::SIGCHLD)), Action::Reap);
        assert_eq!(
            classify(libc_signo(Signal::SIGTERM)),
            Action::PowerOff("SIGTERM")
        );
        assert_eq!(
            classify(libc_signo(Signal::SIGINT)),
            Action::PowerOff("ctrl-alt-del")
        );
        assert_eq!(classify(libc_signo(Signal::SIGHUP)), Action::Ignore);
        assert_eq!(classify(0), Action::Ignore);
        assert_eq!(classify(999), Action::Ignore);
    }

    #[test]
    fn reaps_exited_children() {
        // No other test in this crate spawns processes, so every child here is ours.
        let children: Vec<_> = (0..3)
            .map(|_| std::process::Command::new("true").spawn().unwrap())
            .collect();
        let mut reaped = 0;
        let start = std::time::Instant::now();
        loop {
            let pass = reap_zombies();
            reaped += pass.count;
            if !pass.children_left || start.elapsed() > std::time::Duration::from_secs(10) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(reaped, children.len());
        assert!(!reap_zombies().children_left);
    }

    fn libc_signo(s: Signal) -> i32 {
        s as i32
    }
}
