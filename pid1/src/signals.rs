//! Signals for PID 1: blocked and read through a signalfd, plus zombie reaping.
//!
//! PID 1 gets no default signal actions from the kernel; a blocked signal is still queued, so
//! blocking everything we care about and reading a signalfd in the main loop sees them all
//! without asynchronous handlers. With `reboot(RB_DISABLE_CAD)` the kernel turns ctrl-alt-del
//! into SIGINT for PID 1.
//!
//! Reaping and supervised children: PID 1 reaps every child with `waitpid(-1)`, which would
//! steal the exit status of a child someone is waiting for (a workload's `vmm`, `mke2fs`). Such
//! children are started with [`spawn_watched`], which registers the pid in a registry under the
//! same lock the reaper holds while it reaps: the child cannot be reaped between `fork` and
//! registration, and the reaper hands the status of a registered pid to its waiter through a
//! channel instead of dropping it. (`std::process::Child::wait` is not used for them.)

use std::collections::BTreeMap;
use std::process::{Child, Command};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Mutex, MutexGuard};

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

/// Children whose exit status someone waits for: pid → where the status goes.
#[derive(Debug, Default)]
pub struct ChildRegistry {
    waiting: BTreeMap<i32, Sender<WaitStatus>>,
}

/// What became of one reaped status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// A waiter was registered for the pid (it gets the status if it still listens).
    Delivered,
    /// Nobody waits for this pid: an orphan or an unsupervised child.
    Unwatched,
}

impl ChildRegistry {
    /// Registers `pid`; its status will arrive on the returned receiver exactly once.
    pub fn register(&mut self, pid: i32) -> Receiver<WaitStatus> {
        let (tx, rx) = mpsc::channel();
        self.waiting.insert(pid, tx);
        rx
    }

    /// Hands a reaped status to the pid's waiter, if any, and forgets the pid.
    pub fn deliver(&mut self, status: WaitStatus) -> Delivery {
        let Some(pid) = status.pid() else {
            return Delivery::Unwatched;
        };
        match self.waiting.remove(&pid.as_raw()) {
            Some(tx) => {
                // A waiter that stopped listening has nothing left to learn.
                let _ = tx.send(status);
                Delivery::Delivered
            }
            None => Delivery::Unwatched,
        }
    }

    /// How many pids are waited for.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether nobody waits for any pid.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

static CHILDREN: Mutex<ChildRegistry> = Mutex::new(ChildRegistry {
    waiting: BTreeMap::new(),
});

fn children() -> MutexGuard<'static, ChildRegistry> {
    // The registry stays consistent whatever a panicking holder was doing (each operation is
    // one map insert or remove), so a poisoned lock is still usable.
    CHILDREN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Spawns `command` as a watched child: the reaper delivers its exit status on the returned
/// receiver (see the module docs). Never call `wait` on the returned [`Child`].
pub fn spawn_watched(command: &mut Command) -> std::io::Result<(Child, Receiver<WaitStatus>)> {
    // Held across spawn and registration: the reaper cannot take the status in between.
    let mut registry = children();
    let child = command.spawn()?;
    let pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
    let rx = registry.register(pid);
    Ok((child, rx))
}

/// Reaps every exited child without blocking; statuses of watched children go to their waiters.
pub fn reap_zombies() -> Reaped {
    let mut count = 0;
    let mut registry = children();
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
                if registry.deliver(status) == Delivery::Unwatched {
                    crate::debug!("reaped {status:?}");
                }
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

    #[test]
    fn registry_delivers_only_registered_pids_once() {
        let mut registry = ChildRegistry::default();
        let rx = registry.register(42);
        let _other = registry.register(43);
        assert_eq!(registry.len(), 2);
        let exited = WaitStatus::Exited(Pid::from_raw(42), 3);
        assert_eq!(registry.deliver(exited), Delivery::Delivered);
        assert_eq!(rx.try_recv(), Ok(exited));
        // Delivered once: the pid is forgotten (pids are reused).
        assert_eq!(registry.deliver(exited), Delivery::Unwatched);
        assert!(rx.try_recv().is_err());
        let orphan = WaitStatus::Signaled(Pid::from_raw(7), Signal::SIGKILL, false);
        assert_eq!(registry.deliver(orphan), Delivery::Unwatched);
        assert_eq!(
            registry.deliver(WaitStatus::StillAlive),
            Delivery::Unwatched
        );
        assert_eq!(registry.len(), 1);
    }

    #[test]
    fn registry_survives_a_waiter_that_gave_up() {
        let mut registry = ChildRegistry::default();
        drop(registry.register(9));
        let status = WaitStatus::Exited(Pid::from_raw(9), 0);
        assert_eq!(registry.deliver(status), Delivery::Delivered);
        assert!(registry.is_empty());
    }

    fn libc_signo(s: Signal) -> i32 {
        s as i32
    }
}
