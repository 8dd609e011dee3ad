//! Starting QEMU so that it cannot outlive the process that started it.
//!
//! [`Vm`](crate::Vm)'s `Drop` kills QEMU on every normal path, including a panicking test. What
//! `Drop` cannot cover is the test process itself dying (SIGKILL from a CI timeout, an abort):
//! for that, QEMU is started with `PR_SET_PDEATHSIG = SIGKILL`. The kernel sends that signal when
//! the *thread* that forked the child exits, not the process, so all QEMUs are forked by one
//! helper thread that lives as long as the process; a `Vm` may then be created on a short-lived
//! test thread and used from others.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::OnceLock;

use nix::sys::prctl;
use nix::sys::signal::Signal;

type Request = (Command, mpsc::Sender<io::Result<Child>>);

/// The forking thread's inbox; `None` if that thread could not be started.
static SPAWNER: OnceLock<Option<mpsc::Sender<Request>>> = OnceLock::new();

/// Spawns `command` from the long-lived spawner thread with a parent-death signal.
pub(crate) fn spawn_tied_to_process(mut command: Command) -> io::Result<Child> {
    // SAFETY: the hook runs in the forked child before exec; it makes one prctl(2) system call,
    // which is async-signal-safe, and neither allocates nor takes locks.
    unsafe {
        command.pre_exec(|| prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from));
    }
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("qemu-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    // The requester may have given up; nothing to do then but let the Child
                    // drop (it is still killed by the death signal at process exit).
                    let _ = reply.send(command.spawn());
                }
            })
            .ok()
            .map(|_| tx)
    });
    let Some(spawner) = spawner else {
        // No helper thread: still tied, but to the calling thread.
        return command.spawn();
    };
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner
        .send((command, reply_tx))
        .map_err(|_| io::Error::other("the QEMU spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("the QEMU spawner thread did not answer"))?
}
